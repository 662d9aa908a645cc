/* unit.c - one atomic unit on the wire: MULTI, the SCRIPT LOADs, the events' scripts, the cursor, EXEC,
 * and every reply read back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"
#include "walcast/log.h"

/* Errors by which Redis refuses every write, with what they mean and what to do. */
const char *redis_refusal_hint(const char *msg)
{
    static const struct {
        const char *prefix;
        const char *hint;
    } hints[] = {
        {"OOM",
         "redis is out of memory (maxmemory reached) and refuses writes: raise maxmemory or free memory "
         "in that server (walcast keeps at most engine.dead_letter_max dead letters per sink)"},
        {"MISCONF",
         "redis cannot save to disk and refuses writes (stop-writes-on-bgsave-error): fix its disk "
         "or its persistence settings"},
        {"READONLY", "the server is a read-only replica: point the sink's dsn at the primary"},
        {"NOAUTH", "redis wants a password: put it in the sink's dsn (redis://:password@host:port/db)"},
        {"NOPERM", "the dsn's user may not run walcast's commands: grant it the data commands of the "
                   "projections and MULTI, EXEC, EVALSHA, SCRIPT, HSET, XADD, PUBLISH (ACL SETUSER)"},
        {"CROSSSLOT",
         "the server is a redis cluster node: set the sink's cluster: true and list the cluster's "
         "nodes in its dsn"},
        {"MOVED", "the server is a redis cluster node: set the sink's cluster: true and list the cluster's "
                  "nodes in its dsn"},
    };

    for (size_t i = 0; i < sizeof(hints) / sizeof(hints[0]); i++) {
        size_t n = strlen(hints[i].prefix);
        if (strncmp(msg, hints[i].prefix, n) == 0 && (msg[n] == ' ' || msg[n] == '\0'))
            return hints[i].hint;
    }
    return "";
}

/* Append SCRIPT LOAD src. */
static int append_load(struct redisContext *c, const char *src)
{
    const char *argv[3] = {"SCRIPT", "LOAD", src};
    size_t len[3] = {6, 4, strlen(src)};

    return redisAppendCommandArgv(c, 3, argv, len);
}

/*
 * Write one atomic unit: MULTI, SCRIPT LOAD of every script b uses (inside the transaction, so that an
 * EVALSHA of it cannot meet a script cache flushed in between), b's commands, the cursor, EXEC; then
 * read every reply. With on_error: halt the cursor is stored by a script that leaves it alone when an
 * event of the unit halted (that event's script stored the one before it). Returns 0 with u filled
 * (u->exec owned by the caller when not aborted), or -1 with err: WC_ERR_IO when the connection is gone.
 */
int redis_send_unit(struct wc_sink *s, struct redis_sink *p, const struct batch *b, struct wc_pos cursor,
                    struct unit *u, struct wc_err *err)
{
    char pos[40], lsn[WC_LSN_STRLEN];
    /* dlq retry must not move the cursor a running engine owns: HSETNX leaves an existing one alone. */
    const char *set = s->retrying ? "HSETNX" : "HSET";
    int halt = !s->retrying && s->cfg && s->cfg->on_error == WC_POLICY_HALT;
    int nload = 0, npub = 0, nreply, rc = 0;

    memset(u, 0, sizeof(*u));
    if (p->c == NULL || p->c->err)
        return redis_io_error(s, p, err);
    if (redisAppendCommand(p->c, "MULTI") != REDIS_OK)
        return redis_io_error(s, p, err);
    for (int i = 0; i < p->ngen; i++) {
        if (!(b->scripts & script_bit(i)))
            continue;
        if (append_load(p->c, p->gens[i].src) != REDIS_OK)
            return redis_io_error(s, p, err);
        nload++;
    }
    for (int i = 0; i < NFIXED; i++) {
        if (!(b->fixed & (1 << i)) && !(i == FIXED_CURSOR && halt))
            continue;
        if (append_load(p->c, redis_fixed_script(i)) != REDIS_OK)
            return redis_io_error(s, p, err);
        nload++;
    }
    if (b->pending.len > 0 && redisAppendFormattedCommand(p->c, b->pending.data, b->pending.len) != REDIS_OK)
        return redis_io_error(s, p, err);
    wc_pos_format(cursor, pos);
    /* The applied-through position (the cursor's LSN: every transaction that ended at or before it is
     * applied) and its announcement, in the same unit: a reader that sees it sees the writes. dlq retry
     * does not move the cursor, so it does not publish. With halt, the cursor's script publishes it only
     * when it stores the cursor. */
    wc_lsn_format(cursor.lsn, lsn);
    if (halt) {
        const char *argv[10] = {"EVALSHA",   p->fixed_sha[FIXED_CURSOR],
                                "3",         p->cursor_key,
                                p->halt_key, p->applied_key,
                                set,         s->name,
                                pos,         lsn};
        rc = redisAppendCommandArgv(p->c, 10, argv, NULL);
    } else {
        if (!s->retrying) {
            char msg[300];
            snprintf(msg, sizeof(msg), "%s %s", s->name, lsn);
            const char *hset[4] = {"HSET", p->applied_key, s->name, lsn};
            const char *pub[3] = {"PUBLISH", p->applied_key, msg};
            if (redisAppendCommandArgv(p->c, 4, hset, NULL) != REDIS_OK ||
                redisAppendCommandArgv(p->c, 3, pub, NULL) != REDIS_OK)
                return redis_io_error(s, p, err);
            npub = 2;
        }
        const char *argv[4] = {set, p->cursor_key, s->name, pos};
        rc = redisAppendCommandArgv(p->c, 4, argv, NULL);
    }
    if (rc != REDIS_OK || redisAppendCommand(p->c, "EXEC") != REDIS_OK)
        return redis_io_error(s, p, err);

    /* Every reply is read, errors or not, so that the connection stays in step. */
    nreply = 1 + nload + b->ncmd + npub + 1 + 1;
    rc = 0;
    for (int i = 0; i < nreply; i++) {
        redisReply *r = NULL;

        if (redisGetReply(p->c, (void **)&r) != REDIS_OK || r == NULL) {
            if (u->exec)
                freeReplyObject(u->exec);
            u->exec = NULL;
            return redis_io_error(s, p, err);
        }
        if (i == 0) {
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
            /* A command refused while queueing (OOM, a script the server would not load...). */
            u->transient |= redis_transient_error(r->str);
            snprintf(u->why, sizeof(u->why), "%s", r->str);
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
    if (rc == 0 && u->exec && u->exec->elements != (size_t)(nload + b->ncmd + npub + 1)) {
        wc_err_set(err, WC_ERR_PROTOCOL, "sink \"%s\": EXEC returned %zu replies, expected %d", s->name,
                   u->exec->elements, nload + b->ncmd + npub + 1);
        freeReplyObject(u->exec);
        u->exec = NULL;
        rc = -1;
    }
    u->nload = nload;
    return rc;
}
