/* unit.c - one atomic unit on the wire: SCRIPT LOADs, MULTI, the commands, the cursor's HSET, EXEC, and
 * every reply read back; and the loose dead letters a commit writes after its EXEC. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "redis.h"
#include "walcast/log.h"

/* ---- committing ---- */

/* Read one RESP bulk argument at buf[*off] ("$len\r\ndata\r\n"); advances *off. */
static const char *resp_arg(const char *buf, size_t *off, size_t *len)
{
    const char *q = buf + *off;
    char *end;
    unsigned long long n;

    if (*q != '$')
        return NULL;
    n = strtoull(q + 1, &end, 10);
    q = end + 2;
    *len = (size_t)n;
    *off = (size_t)(q - buf) + n + 2;
    return q;
}

/*
 * Describe the command at buf[*off] for a message ("ZADD on key \"k\"") and advance *off past it. For
 * EVALSHA the key is the first key of the script.
 */
void redis_describe_cmd(const char *buf, size_t *off, char *out, size_t outsize)
{
    char *end;
    long argc = strtol(buf + *off + 1, &end, 10);
    const char *a[4] = {0};
    size_t l[4] = {0};

    *off = (size_t)(end - buf) + 2;
    for (long i = 0; i < argc; i++) {
        size_t len = 0;
        const char *arg = resp_arg(buf, off, &len);
        if (i < 4) {
            a[i] = arg;
            l[i] = len;
        }
    }
    if (a[0] == NULL) {
        snprintf(out, outsize, "?");
    } else if (l[0] == 7 && strncasecmp(a[0], "EVALSHA", 7) == 0) {
        if (a[3] != NULL && !(l[2] == 1 && a[2][0] == '0'))
            snprintf(out, outsize, "script %.8s on key \"%.*s\"", a[1] ? a[1] : "",
                     (int)(l[3] > 200 ? 200 : l[3]), a[3]);
        else
            snprintf(out, outsize, "script %.8s", a[1] ? a[1] : "");
    } else if (a[1] != NULL) {
        snprintf(out, outsize, "%.*s on key \"%.*s\"", (int)(l[0] > 64 ? 64 : l[0]), a[0],
                 (int)(l[1] > 200 ? 200 : l[1]), a[1]);
    } else {
        snprintf(out, outsize, "%.*s", (int)(l[0] > 64 ? 64 : l[0]), a[0]);
    }
}

/*
 * Write one atomic unit: SCRIPT LOAD of the scripts in the scripts mask, MULTI, cmds[0..len) (ncmd commands),
 * HSET of the cursor, EXEC; then read every reply. Returns 0 with u filled (u->exec owned by the caller when
 * not aborted), or -1 with err: WC_ERR_IO when the connection is gone or the server is busy.
 */
int redis_send_unit(struct wc_sink *s, struct redis_sink *p, const char *cmds, size_t len, int ncmd,
                    uint64_t scripts, struct wc_pos cursor, struct unit *u, struct wc_err *err)
{
    char pos[40];
    /* dlq retry must not move the cursor a running engine owns: HSETNX leaves an existing one alone. */
    const char *hset[4] = {s->retrying ? "HSETNX" : "HSET", p->cursor_key, s->name, pos};
    size_t hlen[4] = {s->retrying ? 6u : 4u, strlen(p->cursor_key), strlen(s->name), 0};
    int nload = 0, nreply, rc = 0;
    char *f;
    int n;

    memset(u, 0, sizeof(*u));
    if (p->c == NULL || p->c->err)
        return redis_io_error(s, p, err);
    for (int i = 0; i < p->nscript; i++) {
        if (!(scripts & script_bit(i)))
            continue;
        const char *argv[3] = {"SCRIPT", "LOAD", p->scripts[i].src};
        size_t alen[3] = {6, 4, strlen(p->scripts[i].src)};
        if (redisAppendCommandArgv(p->c, 3, argv, alen) != REDIS_OK)
            return redis_io_error(s, p, err);
        nload++;
    }
    hlen[3] = strlen(wc_pos_format(cursor, pos));
    if (redisAppendCommand(p->c, "MULTI") != REDIS_OK ||
        (len > 0 && redisAppendFormattedCommand(p->c, cmds, len) != REDIS_OK) ||
        (n = redisFormatCommandArgv(&f, 4, hset, hlen)) < 0)
        return redis_io_error(s, p, err);
    rc = redisAppendFormattedCommand(p->c, f, (size_t)n);
    redisFreeCommand(f);
    if (rc != REDIS_OK || redisAppendCommand(p->c, "EXEC") != REDIS_OK)
        return redis_io_error(s, p, err);

    /* Every reply is read, errors or not, so that the connection stays in step. */
    nreply = nload + 1 + ncmd + 1 + 1;
    rc = 0;
    for (int i = 0; i < nreply; i++) {
        redisReply *r = NULL;
        int k = i - nload - 1; /* index among the queued commands; ncmd is the HSET */

        if (redisGetReply(p->c, (void **)&r) != REDIS_OK || r == NULL) {
            if (u->exec)
                freeReplyObject(u->exec);
            u->exec = NULL;
            return redis_io_error(s, p, err);
        }
        if (i < nload) {
            if (r->type == REDIS_REPLY_ERROR)
                wc_warning("sink \"%s\": could not reload a script: %s", s->name, r->str);
        } else if (k == -1) {
            if (r->type == REDIS_REPLY_ERROR && rc == 0) {
                wc_err_set(err, redis_transient_error(r->str) ? WC_ERR_IO : WC_ERR_PROTOCOL,
                           "sink \"%s\": MULTI failed at %s:%d: %s", s->name, p->host, p->port, r->str);
                rc = -1;
            }
        } else if (i == nreply - 1) {
            if (r->type == REDIS_REPLY_ARRAY) {
                u->exec = r;
                r = NULL;
            } else if (r->type == REDIS_REPLY_ERROR) {
                u->aborted = 1;
                u->transient |= redis_transient_error(r->str);
                if (u->why[0] == '\0')
                    snprintf(u->why, sizeof(u->why), "%s", r->str);
            } else if (rc == 0) {
                wc_err_set(err, WC_ERR_PROTOCOL, "sink \"%s\": unexpected reply to EXEC", s->name);
                rc = -1;
            }
        } else if (r->type == REDIS_REPLY_ERROR && u->why[0] == '\0') {
            u->transient |= redis_transient_error(r->str);
            char what[300];
            size_t off = 0;
            const char *desc_buf = cmds;

            if (k < ncmd) {
                /* find the k-th command to name it */
                for (int m = 0; m < k; m++) {
                    char dummy[8];
                    redis_describe_cmd(desc_buf, &off, dummy, sizeof(dummy));
                }
                redis_describe_cmd(desc_buf, &off, what, sizeof(what));
            } else {
                snprintf(what, sizeof(what), "HSET on key \"%s\"", p->cursor_key);
            }
            snprintf(u->why, sizeof(u->why), "%s: %s", what, r->str);
        }
        if (r)
            freeReplyObject(r);
    }
    if (rc < 0 && u->exec) {
        freeReplyObject(u->exec);
        u->exec = NULL;
    }
    if (rc == 0 && u->exec == NULL && !u->aborted) {
        wc_err_set(err, WC_ERR_PROTOCOL, "sink \"%s\": unexpected reply to EXEC", s->name);
        rc = -1;
    }
    if (rc == 0 && u->exec && u->exec->elements != (size_t)ncmd + 1) {
        wc_err_set(err, WC_ERR_PROTOCOL, "sink \"%s\": EXEC returned %zu replies, expected %d", s->name,
                   u->exec->elements, ncmd + 1);
        freeReplyObject(u->exec);
        u->exec = NULL;
        rc = -1;
    }
    return rc;
}

/* Send what p->loose holds (dead letters written after the fact) without MULTI or cursor, best effort. */
int redis_send_loose(struct wc_sink *s, struct redis_sink *p, struct wc_err *err)
{
    struct batch *b = &p->loose;
    int rc = 0;

    if (b->ncmd == 0)
        return 0;
    if (p->c == NULL || p->c->err ||
        redisAppendFormattedCommand(p->c, b->pending.data, b->pending.len) != REDIS_OK) {
        redis_batch_reset(b);
        return redis_io_error(s, p, err);
    }
    for (int i = 0; i < b->ncmd; i++) {
        redisReply *r = NULL;
        if (redisGetReply(p->c, (void **)&r) != REDIS_OK || r == NULL) {
            rc = redis_io_error(s, p, err);
            break;
        }
        if (r->type == REDIS_REPLY_ERROR)
            wc_warning("sink \"%s\": could not write a dead letter to \"%s\": %s", s->name, p->dead_key,
                       r->str);
        freeReplyObject(r);
    }
    redis_batch_reset(b);
    return rc;
}
