/* sink_redis.c - the Redis sink: projection commands and Lua scripts plus the cursor in one MULTI/EXEC. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* vasprintf */
#endif
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "walcast/buf.h"
#include "walcast/config.h"
#include "walcast/log.h"
#include "walcast/sink.h"
#include "walcast/template.h"

/*
 * How a batch travels. apply() renders each event's commands and formats them (RESP) into one growing
 * buffer, remembering where each event starts, how many commands it has and a copy of the event's
 * columns (for a dead letter written later). commit() then writes, in one pipeline and so one round trip:
 *
 *     SCRIPT LOAD <each script the batch uses>    (cheap when cached; survives a SCRIPT FLUSH)
 *     MULTI
 *     <every queued command>
 *     HSET walcast:cursor:<slot> <sink> <cursor>
 *     EXEC
 *
 * Redis queues the commands and runs them all at EXEC, or runs none when one failed to queue (unknown
 * command, wrong number of arguments: EXECABORT). Then the batch is redone event by event, each event in
 * its own MULTI/EXEC with the cursor at that event, and an event that still fails to queue goes through
 * the on_error policy in a unit of its own (its dead letter written with the cursor at that event).
 *
 * Limitation: an error while EXEC runs a command (WRONGTYPE, a failing script) does not roll the
 * transaction back; Redis has no rollback. The other commands and the cursor are applied. Such an event is
 * reported with a warning naming the command and its key, and its dead letter (per on_error) is written
 * right after the EXEC, best effort, outside the atomic unit. With on_error: halt the engine stops there,
 * but the cursor is already past the event: the next start does not meet it again (the warning and the
 * error name it).
 */

#define CONNECT_TIMEOUT_S 10
#define IO_TIMEOUT_S 120
#define DEFAULT_PORT 6379

/* A Lua script of the configuration, with its SHA1 as SCRIPT LOAD returned it. */
struct script {
    const char *src; /* borrowed from the configuration */
    char sha[41];
};

/* One event of the batch: its commands are pending.data[off...] (ncmd of them). */
struct rec {
    struct wc_pos pos;
    size_t off;
    int ncmd;
    int counted;            /* counted in s->applied */
    int kind[WC_COL_COUNT]; /* the event's columns, copied into meta */
    size_t moff[WC_COL_COUNT];
    size_t mlen[WC_COL_COUNT];
};

struct batch {
    struct wc_buf pending; /* formatted commands */
    struct wc_buf meta;    /* copies of the events' columns, NUL-terminated */
    struct rec *recs;
    int nrec, caprec;
    int ncmd;
    uint64_t scripts; /* the scripts its commands use (script_bit): loaded again before its MULTI */
};

/* A script's bit in batch.scripts; the 64th stands for every script from there on. */
static uint64_t script_bit(int i)
{
    return (uint64_t)1 << (i < 63 ? i : 63);
}

struct redis_sink {
    redisContext *c;
    char *host;
    int port;
    int db;
    char *user;     /* NULL for AUTH password */
    char *password; /* never logged */
    char *cursor_key;
    char *dead_key;
    struct script *scripts;
    int nscript;
    /* Two batches: apply() queues into b while commit_detached() sends cb on the engine's commit thread.
     * Dead letters written by a commit (after the fact, outside its unit) go into loose. */
    struct batch bufs[2];
    struct batch *b, *cb;
    struct batch loose;
    /* scratch for rendering one command */
    struct wc_buf arg;
    size_t *argoff;
    size_t *arglen;
    const char **argv;
    int argcap;
};

/* The result of one MULTI/EXEC unit. */
struct unit {
    int aborted;      /* EXEC refused: a command failed to queue */
    int transient;    /* ... for a reason that passes (OOM, LOADING...): retry later, do not dead-letter */
    char why[512];    /* the first queueing error (or EXEC's own error) */
    redisReply *exec; /* the EXEC array (owned) when not aborted */
};

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    return s;
}

static void batch_reset(struct batch *b)
{
    wc_buf_reset(&b->pending);
    wc_buf_reset(&b->meta);
    b->nrec = 0;
    b->ncmd = 0;
    b->scripts = 0;
}

/* Cut the batch back to an earlier state. */
static void batch_truncate(struct batch *b, int nrec, size_t meta_len, size_t pending_len, int ncmd)
{
    b->nrec = nrec;
    b->ncmd = ncmd;
    b->meta.len = meta_len;
    if (b->meta.data)
        b->meta.data[meta_len] = '\0';
    b->pending.len = pending_len;
    if (b->pending.data)
        b->pending.data[pending_len] = '\0';
}

static void batch_free(struct batch *b)
{
    wc_buf_free(&b->pending);
    wc_buf_free(&b->meta);
    free(b->recs);
    memset(b, 0, sizeof(*b));
}

/* ---- the connection string ---- */

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20;
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* A new string: s[0..len) with %XX decoded; NULL when an escape is malformed. */
static char *percent_decode(const char *s, size_t len)
{
    char *out = wc_xcalloc(1, len + 1), *o = out;

    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= len) {
                free(out);
                return NULL;
            }
            hi = hexval((unsigned char)s[i + 1]);
            lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0) {
                free(out);
                return NULL;
            }
            *o++ = (char)(hi * 16 + lo);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

/* Parse digits s[0..len) into [min, max]; -1 when not a number in range. */
static int parse_int(const char *s, size_t len, long min, long max, long *out)
{
    long v = 0;

    if (len == 0 || len > 9)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/*
 * Parse "redis://[[user]:password@]host[:port][/db]" or "host[:port][/db]" into p. The message never
 * quotes the string: it may hold a password.
 */
static int parse_dsn(struct wc_sink *s, struct redis_sink *p, const char *dsn, struct wc_err *err)
{
    const char *rest = dsn, *at, *slash, *hend, *q;
    const char *why = NULL;
    long v;

    if (dsn == NULL || *dsn == '\0') {
        why = "it is empty";
        goto bad;
    }
    if (strncmp(dsn, "rediss://", 9) == 0) {
        why = "TLS (rediss://) is not supported";
        goto bad;
    }
    if (strncmp(dsn, "redis://", 8) == 0)
        rest = dsn + 8;
    else if (strstr(dsn, "://") != NULL) {
        why = "the scheme is not redis://";
        goto bad;
    }
    if (strpbrk(rest, "?#") != NULL) {
        why = "query parameters are not supported";
        goto bad;
    }
    slash = strchr(rest, '/');
    if (slash == NULL)
        slash = rest + strlen(rest);

    /* user info: the last '@' before the path */
    at = NULL;
    for (q = rest; q < slash; q++)
        if (*q == '@')
            at = q;
    if (at != NULL) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        const char *pw = rest;
        if (colon != NULL) {
            if (colon > rest) {
                p->user = percent_decode(rest, (size_t)(colon - rest));
                if (p->user == NULL) {
                    why = "bad %-escape in the user name";
                    goto bad;
                }
            }
            pw = colon + 1;
        }
        p->password = percent_decode(pw, (size_t)(at - pw));
        if (p->password == NULL) {
            why = "bad %-escape in the password";
            goto bad;
        }
        rest = at + 1;
    }

    /* host, "[v6]" allowed */
    if (*rest == '[') {
        hend = memchr(rest, ']', (size_t)(slash - rest));
        if (hend == NULL) {
            why = "unterminated [ in the host";
            goto bad;
        }
        p->host = wc_xcalloc(1, (size_t)(hend - rest));
        memcpy(p->host, rest + 1, (size_t)(hend - rest - 1));
        q = hend + 1;
    } else {
        hend = rest;
        while (hend < slash && *hend != ':')
            hend++;
        p->host = wc_xcalloc(1, (size_t)(hend - rest) + 1);
        memcpy(p->host, rest, (size_t)(hend - rest));
        q = hend;
    }
    if (*p->host == '\0') {
        why = "the host is missing";
        goto bad;
    }
    p->port = DEFAULT_PORT;
    if (q < slash) {
        if (*q != ':' || parse_int(q + 1, (size_t)(slash - q - 1), 1, 65535, &v) < 0) {
            why = "the port is not a number from 1 to 65535";
            goto bad;
        }
        p->port = (int)v;
    }
    p->db = 0;
    if (*slash == '/' && slash[1] != '\0') {
        if (parse_int(slash + 1, strlen(slash + 1), 0, 1000000, &v) < 0) {
            why = "the database is not a number";
            goto bad;
        }
        p->db = (int)v;
    }
    return 0;

bad:
    wc_err_set(err, WC_ERR_CONFIG,
               "sink \"%s\": invalid redis dsn (redis://[:password@]host[:port][/db]): %s", s->name, why);
    return -1;
}

/* ---- talking to the server ---- */

/* Errors that say "try again later" rather than "this command is wrong". */
static int transient_error(const char *msg)
{
    static const char *const prefixes[] = {"OOM",        "LOADING",  "BUSY",        "MASTERDOWN", "READONLY",
                                           "NOREPLICAS", "TRYAGAIN", "CLUSTERDOWN", "MISCONF",    "NOAUTH"};

    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t n = strlen(prefixes[i]);
        if (strncmp(msg, prefixes[i], n) == 0 && (msg[n] == ' ' || msg[n] == '\0'))
            return 1;
    }
    return 0;
}

static int io_error(struct wc_sink *s, struct redis_sink *p, struct wc_err *err)
{
    const char *why = p->c && p->c->err ? p->c->errstr : "connection closed";

    if (p->c && p->c->err == REDIS_ERR_EOF)
        why = "server closed the connection";
    wc_err_set(err, WC_ERR_IO, "sink \"%s\": lost connection to redis at %s:%d: %s", s->name, p->host,
               p->port, why);
    return -1;
}

/* Run one command and return its reply (NULL with err set on a lost connection). */
static redisReply *command(struct wc_sink *s, struct redis_sink *p, int argc, const char **argv,
                           const size_t *len, struct wc_err *err)
{
    redisReply *r;

    if (p->c == NULL || p->c->err) {
        io_error(s, p, err);
        return NULL;
    }
    r = redisCommandArgv(p->c, argc, argv, len);
    if (r == NULL)
        io_error(s, p, err);
    return r;
}

/* err for an error reply of a one-off command: WC_ERR_IO when transient, else code. */
static int reply_error(struct wc_sink *s, struct redis_sink *p, redisReply *r, int code, const char *what,
                       struct wc_err *err)
{
    wc_err_set(err, transient_error(r->str) ? WC_ERR_IO : code, "sink \"%s\": %s at %s:%d: %s", s->name, what,
               p->host, p->port, r->str);
    return -1;
}

static struct script *find_script(struct redis_sink *p, const char *src)
{
    for (int i = 0; i < p->nscript; i++)
        if (p->scripts[i].src == src)
            return &p->scripts[i];
    return NULL;
}

/* SCRIPT LOAD every script of the sink's rules; keep their SHA1s. */
static int load_scripts(struct wc_sink *s, struct redis_sink *p, struct wc_err *err)
{
    const struct wc_sink_conf *conf = s->conf;
    int n = 0;

    for (int i = 0; i < conf->nrule; i++)
        for (int j = 0; j < conf->rules[i].ncmd; j++)
            if (conf->rules[i].cmds[j].script != NULL)
                n++;
    free(p->scripts);
    p->scripts = n ? wc_xcalloc((size_t)n, sizeof(*p->scripts)) : NULL;
    p->nscript = 0;
    for (int i = 0; i < conf->nrule; i++) {
        const struct wc_rule *rule = &conf->rules[i];
        for (int j = 0; j < rule->ncmd; j++) {
            const struct wc_redis_cmd *cmd = &rule->cmds[j];
            const char *argv[3] = {"SCRIPT", "LOAD", cmd->script};
            size_t len[3] = {6, 4, 0};
            struct script *sc;
            redisReply *r;

            if (cmd->script == NULL || find_script(p, cmd->script) != NULL)
                continue;
            len[2] = strlen(cmd->script);
            r = command(s, p, 3, argv, len, err);
            if (r == NULL)
                return -1;
            if (r->type == REDIS_REPLY_ERROR) {
                wc_err_set(err, transient_error(r->str) ? WC_ERR_IO : WC_ERR_CONFIG,
                           "sink \"%s\": projection \"%s\": script at line %d: could not load it: %s",
                           s->name, rule->projection, cmd->line, r->str);
                freeReplyObject(r);
                return -1;
            }
            if (r->type != REDIS_REPLY_STRING || r->len != 40) {
                freeReplyObject(r);
                wc_err_set(err, WC_ERR_PROTOCOL, "sink \"%s\": unexpected reply to SCRIPT LOAD", s->name);
                return -1;
            }
            sc = &p->scripts[p->nscript++];
            sc->src = cmd->script;
            memcpy(sc->sha, r->str, 40);
            sc->sha[40] = '\0';
            freeReplyObject(r);
        }
    }
    return 0;
}

static void redis_close(struct wc_sink *s);

/*
 * Connect, AUTH when the dsn has a password, SELECT the database and load the scripts. A refused or
 * timed-out connection is WC_ERR_IO (retryable); a bad password, database or script is WC_ERR_CONFIG.
 */
static int redis_open(struct wc_sink *s, struct wc_err *err)
{
    struct redis_sink *p;
    struct timeval ctv = {CONNECT_TIMEOUT_S, 0}, iotv = {IO_TIMEOUT_S, 0};
    const char *slot = s->cfg && s->cfg->slot ? s->cfg->slot : "walcast";
    redisReply *r;

    if (s->priv != NULL)
        redis_close(s);
    p = wc_xcalloc(1, sizeof(*p));
    p->b = &p->bufs[0];
    p->cb = &p->bufs[1];
    s->priv = p;
    if (parse_dsn(s, p, s->conf ? s->conf->dsn : NULL, err) < 0)
        goto fail;
    p->cursor_key = xasprintf("walcast:cursor:%s", slot);
    p->dead_key = xasprintf("walcast:dead_letters:%s", slot);

    p->c = redisConnectWithTimeout(p->host, p->port, ctv);
    if (p->c == NULL) {
        wc_err_set(err, WC_ERR_INTERNAL, "sink \"%s\": out of memory", s->name);
        goto fail;
    }
    if (p->c->err) {
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": could not connect to redis at %s:%d: %s", s->name, p->host,
                   p->port, p->c->errstr);
        goto fail;
    }
    if (redisSetTimeout(p->c, iotv) != REDIS_OK || redisEnableKeepAlive(p->c) != REDIS_OK) {
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": could not set up the connection to redis at %s:%d: %s",
                   s->name, p->host, p->port, p->c->errstr);
        goto fail;
    }

    if (p->password != NULL) {
        const char *argv[3] = {"AUTH", p->user, p->password};
        size_t len[3] = {4, p->user ? strlen(p->user) : 0, strlen(p->password)};
        int argc = 3;
        if (p->user == NULL) {
            argv[1] = p->password;
            len[1] = len[2];
            argc = 2;
        }
        if ((r = command(s, p, argc, argv, len, err)) == NULL)
            goto fail;
        if (r->type == REDIS_REPLY_ERROR) {
            reply_error(s, p, r, WC_ERR_CONFIG, "could not authenticate to redis", err);
            freeReplyObject(r);
            goto fail;
        }
        freeReplyObject(r);
    }

    {
        char dbtext[16];
        const char *argv[2] = {"SELECT", dbtext};
        size_t len[2] = {6, 0};

        len[1] = (size_t)snprintf(dbtext, sizeof(dbtext), "%d", p->db);
        if ((r = command(s, p, 2, argv, len, err)) == NULL)
            goto fail;
        if (r->type == REDIS_REPLY_ERROR) {
            char what[64];
            snprintf(what, sizeof(what), "could not select database %d", p->db);
            reply_error(s, p, r, WC_ERR_CONFIG, what, err);
            freeReplyObject(r);
            goto fail;
        }
        freeReplyObject(r);
    }

    if (s->conf && load_scripts(s, p, err) < 0)
        goto fail;
    wc_debug("sink \"%s\": connected to redis at %s:%d, database %d", s->name, p->host, p->port, p->db);
    return 0;

fail:
    redis_close(s);
    return -1;
}

/* An operation on a sink that is not open (open failed, or closed): retryable, open it again. */
static int not_open(struct wc_sink *s, struct wc_err *err)
{
    wc_err_set(err, WC_ERR_IO, "sink \"%s\": not connected to redis", s->name);
    return -1;
}

static int redis_read_cursor(struct wc_sink *s, struct wc_pos *out, int *found, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    const char *argv[3];
    size_t len[3];
    redisReply *r;
    int rc = 0;

    *out = WC_POS_NONE;
    *found = 0;
    if (p == NULL)
        return not_open(s, err);
    argv[0] = "HGET";
    argv[1] = p->cursor_key;
    argv[2] = s->name;
    len[0] = 4;
    len[1] = strlen(p->cursor_key);
    len[2] = strlen(s->name);
    if ((r = command(s, p, 3, argv, len, err)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_NIL) {
        rc = 0;
    } else if (r->type == REDIS_REPLY_ERROR) {
        char what[256];
        snprintf(what, sizeof(what), "could not read the cursor from \"%s\"", p->cursor_key);
        rc = reply_error(s, p, r, WC_ERR_DATA, what, err);
    } else if (r->type != REDIS_REPLY_STRING || wc_pos_parse(r->str, out) < 0) {
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\": invalid cursor \"%.64s\" in hash \"%s\"", s->name,
                   r->type == REDIS_REPLY_STRING ? r->str : "?", p->cursor_key);
        *out = WC_POS_NONE;
        rc = -1;
    } else {
        *found = 1;
    }
    freeReplyObject(r);
    return rc;
}

/* ---- queueing ---- */

/* The batch record for ev: the last one when it is ev's (a dead letter after a failed apply), else new. */
static struct rec *rec_for(struct batch *b, const struct wc_event *ev)
{
    struct rec *r;

    if (b->nrec > 0 && wc_pos_cmp(b->recs[b->nrec - 1].pos, ev->pos) == 0)
        return &b->recs[b->nrec - 1];
    if (b->nrec == b->caprec) {
        b->caprec = b->caprec ? b->caprec * 2 : 64;
        b->recs = wc_xrealloc(b->recs, (size_t)b->caprec * sizeof(*b->recs));
    }
    r = &b->recs[b->nrec++];
    memset(r, 0, sizeof(*r));
    r->pos = ev->pos;
    r->off = b->pending.len;
    for (int i = 0; i < WC_COL_COUNT; i++) {
        const struct wc_val *v = &ev->col[i];
        r->kind[i] = v->text ? v->kind : WC_VAL_NULL;
        r->moff[i] = b->meta.len;
        r->mlen[i] = v->text ? v->len : 0;
        if (v->text)
            wc_buf_append(&b->meta, v->text, v->len);
        wc_buf_append(&b->meta, "", 1); /* keep the NUL: the copies are read as C strings */
    }
    return r;
}

/* An event rebuilt from a record's copies (valid until the batch changes). */
static void rec_event(const struct batch *b, const struct rec *r, struct wc_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->pos = r->pos;
    for (int i = 0; i < WC_COL_COUNT; i++) {
        ev->col[i].kind = r->kind[i];
        ev->col[i].text = r->kind[i] == WC_VAL_NULL ? NULL : b->meta.data + r->moff[i];
        ev->col[i].len = r->mlen[i];
    }
}

/* Format argv as one RESP command at the end of the batch. */
static void queue_argv(struct batch *b, struct rec *r, int argc, const char **argv, const size_t *len)
{
    /* RESP written straight into the batch: hiredis' formatter allocates and sprintf()s every length. */
    wc_buf_append(&b->pending, "*", 1);
    wc_buf_put_int(&b->pending, argc);
    wc_buf_append(&b->pending, "\r\n", 2);
    for (int i = 0; i < argc; i++) {
        size_t n = len ? len[i] : strlen(argv[i]);
        wc_buf_append(&b->pending, "$", 1);
        wc_buf_put_int(&b->pending, (long long)n);
        wc_buf_append(&b->pending, "\r\n", 2);
        wc_buf_append(&b->pending, argv[i], n);
        wc_buf_append(&b->pending, "\r\n", 2);
    }
    r->ncmd++;
    b->ncmd++;
}

static void arg_reserve(struct redis_sink *p, int n)
{
    if (n <= p->argcap)
        return;
    p->argcap = n + 8;
    p->argoff = wc_xrealloc(p->argoff, (size_t)p->argcap * sizeof(*p->argoff));
    p->arglen = wc_xrealloc(p->arglen, (size_t)p->argcap * sizeof(*p->arglen));
    p->argv = wc_xrealloc(p->argv, (size_t)p->argcap * sizeof(*p->argv));
}

static void arg_push(struct redis_sink *p, int i, const char *s, size_t len)
{
    p->argoff[i] = p->arg.len;
    wc_buf_append(&p->arg, s, len);
    p->arglen[i] = len;
}

/*
 * Render one command of a rule for ev and queue it. Returns 0, or -1 with msg filled (the event cannot be
 * applied: a missing or null value, a filter that does not apply).
 */
static int queue_cmd(struct wc_sink *s, struct redis_sink *p, const struct wc_rule *rule,
                     const struct wc_redis_cmd *cmd, struct wc_event *ev, struct rec *r, char *msg,
                     size_t msgsize)
{
    struct script *sc = NULL;
    int argc = 0, total = cmd->argc + (cmd->script ? 3 : 0);
    const char *what = "script";

    arg_reserve(p, total);
    wc_buf_reset(&p->arg);
    if (cmd->script != NULL) {
        char nkeys[16];
        int n = snprintf(nkeys, sizeof(nkeys), "%d", cmd->nkeys);

        sc = find_script(p, cmd->script);
        if (sc == NULL) {
            snprintf(msg, msgsize, "projection \"%s\": script at line %d was not loaded", rule->projection,
                     cmd->line);
            return -1;
        }
        arg_push(p, argc++, "EVALSHA", 7);
        arg_push(p, argc++, sc->sha, 40);
        arg_push(p, argc++, nkeys, (size_t)n);
    } else if (cmd->argc > 0) {
        what = wc_tmpl_source(cmd->argv[0]);
    }
    for (int i = 0; i < cmd->argc; i++) {
        struct wc_err terr = {0};
        size_t off = p->arg.len;
        int rc = wc_tmpl_render(cmd->argv[i], ev, &p->arg, &terr);

        if (rc != 0) {
            snprintf(msg, msgsize, "projection \"%s\": %.64s at line %d: argument %d \"%.200s\": %.500s",
                     rule->projection, what, cmd->line, i + 1, wc_tmpl_source(cmd->argv[i]),
                     rc > 0 ? "value is null" : terr.msg);
            return -1;
        }
        p->argoff[argc] = off;
        p->arglen[argc] = p->arg.len - off;
        argc++;
    }
    if (argc == 0)
        return 0;
    /* pointers only now: rendering may have moved the buffer */
    for (int i = 0; i < argc; i++)
        p->argv[i] = p->arg.data + p->argoff[i];
    queue_argv(p->b, r, argc, p->argv, p->arglen);
    if (sc != NULL)
        p->b->scripts |= script_bit((int)(sc - p->scripts));
    return 0;
}

/*
 * Queue the commands of every rule for ev's type. All of an event's commands or none: a failure rolls
 * the event back out of the batch, then the on_error policy decides.
 */
static int redis_apply(struct wc_sink *s, struct wc_event *ev, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    const char *type = ev->col[WC_COL_EVENT_TYPE].text;
    struct wc_rule *const *rules;
    struct batch *b;
    size_t pending_len, meta_len;
    int nrec, ncmd, n = 0;
    struct rec *r;
    char msg[1024];

    if (p == NULL)
        return not_open(s, err);
    if (type == NULL)
        return 0;
    b = p->b;
    pending_len = b->pending.len;
    meta_len = b->meta.len;
    nrec = b->nrec;
    ncmd = b->ncmd;
    rules = wc_config_rules(s->conf, type, &n);
    if (rules == NULL || n == 0)
        return 0;
    r = rec_for(b, ev);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < rules[i]->ncmd; j++) {
            if (queue_cmd(s, p, rules[i], &rules[i]->cmds[j], ev, r, msg, sizeof(msg)) < 0)
                goto failed;
        }
    }
    if (r->ncmd > 0) {
        WC_COUNT_ADD(s->applied, 1);
        r->counted = 1;
    } else
        batch_truncate(b, nrec, meta_len, pending_len, ncmd); /* nothing to remember */
    return 0;

failed:
    /* Drop the event's commands but keep its record: a dead letter goes there. */
    batch_truncate(b, b->nrec, b->meta.len, pending_len, ncmd);
    r->ncmd = 0;
    if (wc_sink_handle_error(s, NULL, ev, s->cfg->on_error, msg, err) < 0) {
        batch_truncate(b, nrec, meta_len, pending_len, ncmd);
        return -1;
    }
    if (b->nrec > nrec && b->recs[b->nrec - 1].ncmd == 0)
        batch_truncate(b, nrec, meta_len, pending_len, ncmd); /* skipped: the cursor alone passes it */
    return 0;
}

/* Queue an XADD to the dead-letter stream for ev: into the batch being queued, or, found by a commit
 * (in), into that commit's unit (the loose batch its commit sends after the EXEC). */
static int redis_dead_letter(struct wc_sink *s, struct wc_commit *in, struct wc_event *ev, const char *error,
                             struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    struct batch *into;
    struct rec *r;
    char lsn[WC_LSN_STRLEN], idx[24];
    const char *argv[21];
    size_t len[21];
    int argc = 0;

    if (p == NULL)
        return not_open(s, err);
    into = in != NULL ? in->unit : p->b;
    r = rec_for(into, ev);

    wc_lsn_format(ev->pos.lsn, lsn);
    snprintf(idx, sizeof(idx), "%" PRId64, ev->pos.index);
#define ARG(str, n) (argv[argc] = (str), len[argc] = (n), argc++)
#define ARGS(str) ARG((str), strlen(str))
#define ARGC(i) ARG(ev->col[i].text ? ev->col[i].text : "", ev->col[i].text ? ev->col[i].len : 0)
    ARGS("XADD");
    ARGS(p->dead_key);
    ARGS("*");
    ARGS("sink");
    ARGS(s->name);
    ARGS("lsn");
    ARGS(lsn);
    ARGS("idx");
    ARGS(idx);
    ARGS("event_id");
    ARGC(WC_COL_EVENT_ID);
    ARGS("event_type");
    ARGC(WC_COL_EVENT_TYPE);
    ARGS("aggregate_type");
    ARGC(WC_COL_AGGREGATE_TYPE);
    ARGS("aggregate_id");
    ARGC(WC_COL_AGGREGATE_ID);
    ARGS("payload");
    ARGC(WC_COL_PAYLOAD);
    ARGS("error");
    ARGS(error ? error : "");
#undef ARGC
#undef ARGS
#undef ARG
    queue_argv(into, r, argc, argv, len);
    return 0;
}

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
static void describe_cmd(const char *buf, size_t *off, char *out, size_t outsize)
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
static int send_unit(struct wc_sink *s, struct redis_sink *p, const char *cmds, size_t len, int ncmd,
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
        return io_error(s, p, err);
    for (int i = 0; i < p->nscript; i++) {
        if (!(scripts & script_bit(i)))
            continue;
        const char *argv[3] = {"SCRIPT", "LOAD", p->scripts[i].src};
        size_t alen[3] = {6, 4, strlen(p->scripts[i].src)};
        if (redisAppendCommandArgv(p->c, 3, argv, alen) != REDIS_OK)
            return io_error(s, p, err);
        nload++;
    }
    hlen[3] = strlen(wc_pos_format(cursor, pos));
    if (redisAppendCommand(p->c, "MULTI") != REDIS_OK ||
        (len > 0 && redisAppendFormattedCommand(p->c, cmds, len) != REDIS_OK) ||
        (n = redisFormatCommandArgv(&f, 4, hset, hlen)) < 0)
        return io_error(s, p, err);
    rc = redisAppendFormattedCommand(p->c, f, (size_t)n);
    redisFreeCommand(f);
    if (rc != REDIS_OK || redisAppendCommand(p->c, "EXEC") != REDIS_OK)
        return io_error(s, p, err);

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
            return io_error(s, p, err);
        }
        if (i < nload) {
            if (r->type == REDIS_REPLY_ERROR)
                wc_warning("sink \"%s\": could not reload a script: %s", s->name, r->str);
        } else if (k == -1) {
            if (r->type == REDIS_REPLY_ERROR && rc == 0) {
                wc_err_set(err, transient_error(r->str) ? WC_ERR_IO : WC_ERR_PROTOCOL,
                           "sink \"%s\": MULTI failed at %s:%d: %s", s->name, p->host, p->port, r->str);
                rc = -1;
            }
        } else if (i == nreply - 1) {
            if (r->type == REDIS_REPLY_ARRAY) {
                u->exec = r;
                r = NULL;
            } else if (r->type == REDIS_REPLY_ERROR) {
                u->aborted = 1;
                u->transient |= transient_error(r->str);
                if (u->why[0] == '\0')
                    snprintf(u->why, sizeof(u->why), "%s", r->str);
            } else if (rc == 0) {
                wc_err_set(err, WC_ERR_PROTOCOL, "sink \"%s\": unexpected reply to EXEC", s->name);
                rc = -1;
            }
        } else if (r->type == REDIS_REPLY_ERROR && u->why[0] == '\0') {
            u->transient |= transient_error(r->str);
            char what[300];
            size_t off = 0;
            const char *desc_buf = cmds;

            if (k < ncmd) {
                /* find the k-th command to name it */
                for (int m = 0; m < k; m++) {
                    char dummy[8];
                    describe_cmd(desc_buf, &off, dummy, sizeof(dummy));
                }
                describe_cmd(desc_buf, &off, what, sizeof(what));
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
static int send_loose(struct wc_sink *s, struct redis_sink *p, struct wc_err *err)
{
    struct batch *b = &p->loose;
    int rc = 0;

    if (b->ncmd == 0)
        return 0;
    if (p->c == NULL || p->c->err ||
        redisAppendFormattedCommand(p->c, b->pending.data, b->pending.len) != REDIS_OK) {
        batch_reset(b);
        return io_error(s, p, err);
    }
    for (int i = 0; i < b->ncmd; i++) {
        redisReply *r = NULL;
        if (redisGetReply(p->c, (void **)&r) != REDIS_OK || r == NULL) {
            rc = io_error(s, p, err);
            break;
        }
        if (r->type == REDIS_REPLY_ERROR)
            wc_warning("sink \"%s\": could not write a dead letter to \"%s\": %s", s->name, p->dead_key,
                       r->str);
        freeReplyObject(r);
    }
    batch_reset(b);
    return rc;
}

/*
 * After an EXEC: the commands that failed while running (Redis applied the others). Warn for each one,
 * then apply the on_error policy to each failed event, its dead letter written outside the unit.
 * recs[0..nrec) are the unit's events, their commands at cmds. Returns 0, or -1 (halt, or connection).
 */
static int runtime_errors(struct wc_sink *s, struct redis_sink *p, struct wc_commit *c,
                          const struct batch *from, const struct rec *recs, int nrec, const char *cmds,
                          const redisReply *exec, int dead_letter_them, struct wc_err *err)
{
    size_t k = 0, off = 0;
    int rc = 0;
    struct wc_err herr = {0};

    if (exec->elements > 0 && exec->element[exec->elements - 1]->type == REDIS_REPLY_ERROR) {
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\": could not store the cursor in \"%s\": %s", s->name,
                   p->cursor_key, exec->element[exec->elements - 1]->str);
        return -1;
    }
    /* The common case: no command failed, and describing each one would cost more than the batch. */
    int any = 0;
    for (size_t i = 0; i < exec->elements && !any; i++)
        any = exec->element[i]->type == REDIS_REPLY_ERROR;
    for (int i = 0; i < nrec && any; i++) {
        char first[1024] = "";
        char lsn[WC_LSN_STRLEN];
        const char *type;
        struct wc_event ev;

        for (int j = 0; j < recs[i].ncmd; j++, k++) {
            const redisReply *r = exec->element[k];
            char what[300];

            describe_cmd(cmds, &off, what, sizeof(what));
            if (r->type != REDIS_REPLY_ERROR)
                continue;
            rec_event(from, &recs[i], &ev);
            type = ev.col[WC_COL_EVENT_TYPE].text ? ev.col[WC_COL_EVENT_TYPE].text : "";
            wc_warning("sink \"%s\": %s failed for event \"%s\" at %s:%" PRId64
                       " (its other commands were applied): %s",
                       s->name, what, type, wc_lsn_format(recs[i].pos.lsn, lsn), recs[i].pos.index, r->str);
            if (first[0] == '\0')
                snprintf(first, sizeof(first), "%s: %s", what, r->str);
        }
        if (first[0] == '\0' || !dead_letter_them)
            continue;
        rec_event(from, &recs[i], &ev);
        if (rc == 0 && wc_sink_handle_error(s, c, &ev, s->cfg->on_error, first, &herr) < 0) {
            *err = herr;
            rc = -1;
        }
    }
    if (!dead_letter_them)
        return rc;
    if (send_loose(s, p, rc < 0 ? &herr : err) < 0 && rc == 0)
        rc = -1;
    return rc;
}

/*
 * EXEC refused the batch: redo it event by event, each in its own unit with the cursor at that event
 * (the last one with the commit's cursor). An event that still fails to queue goes through on_error.
 */
static int commit_slow(struct wc_sink *s, struct redis_sink *p, struct batch *b, struct wc_commit *c,
                       struct wc_err *err)
{
    struct wc_pos cursor = c->cursor;

    for (int i = 0; i < b->nrec; i++) {
        const struct rec *r = &b->recs[i];
        size_t end = i + 1 < b->nrec ? b->recs[i + 1].off : b->pending.len;
        struct wc_pos at = i + 1 < b->nrec ? r->pos : cursor;
        struct unit u;
        struct wc_event ev;
        char msg[600];

        if (i + 1 < b->nrec && wc_pos_cmp(at, cursor) > 0)
            at = cursor;
        if (send_unit(s, p, b->pending.data + r->off, end - r->off, r->ncmd, b->scripts, at, &u, err) < 0)
            return -1;
        if (!u.aborted) {
            int rc = runtime_errors(s, p, c, b, r, 1, b->pending.data + r->off, u.exec, 1, err);
            freeReplyObject(u.exec);
            if (rc < 0)
                return -1;
            continue;
        }
        if (u.transient) {
            wc_err_set(err, WC_ERR_IO, "sink \"%s\": redis at %s:%d refused the transaction: %s", s->name,
                       p->host, p->port, u.why);
            return -1;
        }
        /* This event cannot be queued: its dead letter (or nothing) with the cursor at it. */
        snprintf(msg, sizeof(msg), "%s", u.why);
        if (r->counted)
            WC_COUNT_ADD(s->applied, -1);
        rec_event(b, r, &ev);
        batch_reset(&p->loose);
        if (wc_sink_handle_error(s, c, &ev, s->cfg->on_error, msg, err) < 0)
            return -1;
        if (send_unit(s, p, p->loose.pending.data, p->loose.pending.len, p->loose.ncmd, 0, at, &u, err) < 0)
            return -1;
        if (u.aborted) {
            wc_err_set(err, WC_ERR_DATA, "sink \"%s\": could not write the dead letter to \"%s\": %s",
                       s->name, p->dead_key, u.why);
            return -1;
        }
        runtime_errors(s, p, c, &p->loose, p->loose.recs, p->loose.nrec, p->loose.pending.data, u.exec, 0,
                       err);
        freeReplyObject(u.exec);
        batch_reset(&p->loose);
    }
    if (b->nrec == 0) {
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\": redis refused to store the cursor: %s", s->name,
                   "EXECABORT");
        return -1;
    }
    return 0;
}

/* Set the queued batch aside for commit_detached(); apply() queues into the other one meanwhile. */
static void redis_detach(struct wc_sink *s)
{
    struct redis_sink *p = s->priv;
    struct batch *t;

    if (p == NULL)
        return;
    batch_reset(p->cb);
    t = p->cb;
    p->cb = p->b;
    p->b = t;
}

static int redis_commit_detached(struct wc_sink *s, struct wc_commit *c, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    struct wc_pos cursor = c->cursor;
    struct batch *b;
    struct unit u;
    int rc;

    if (p == NULL)
        return not_open(s, err);
    b = p->cb;
    c->unit = &p->loose; /* dead letters of this commit go there, not into the batch apply() fills */
    batch_reset(&p->loose);
    rc = send_unit(s, p, b->pending.data, b->pending.len, b->ncmd, b->scripts, cursor, &u, err);
    if (rc == 0 && !u.aborted) {
        rc = runtime_errors(s, p, c, b, b->recs, b->nrec, b->pending.data, u.exec, 1, err);
        freeReplyObject(u.exec);
    } else if (rc == 0) {
        if (u.transient) {
            wc_err_set(err, WC_ERR_IO, "sink \"%s\": redis at %s:%d refused the transaction: %s", s->name,
                       p->host, p->port, u.why);
            rc = -1;
        } else {
            wc_warning("sink \"%s\": redis refused a batch of %d events (%s), applying them one by one",
                       s->name, b->nrec, u.why);
            rc = commit_slow(s, p, b, c, err);
        }
    }
    if (rc == 0)
        batch_reset(b);
    return rc;
}

/* Commit what is queued, here and now: both halves in a row. After a failure parts of the batch may be
 * applied (Redis has no rollback): the sink is opened again and the stream resumed from its cursor,
 * never committed again (the failed batch is dropped at the next detach). */
static int redis_commit(struct wc_sink *s, struct wc_pos cursor, struct wc_err *err)
{
    struct wc_commit c = {.cursor = cursor};

    redis_detach(s);
    return redis_commit_detached(s, &c, err);
}

static void redis_close(struct wc_sink *s)
{
    struct redis_sink *p = s->priv;

    if (p == NULL)
        return;
    if (p->c)
        redisFree(p->c);
    free(p->host);
    free(p->user);
    if (p->password) {
        memset(p->password, 0, strlen(p->password));
        free(p->password);
    }
    free(p->cursor_key);
    free(p->dead_key);
    free(p->scripts);
    batch_free(&p->bufs[0]);
    batch_free(&p->bufs[1]);
    batch_free(&p->loose);
    wc_buf_free(&p->arg);
    free(p->argoff);
    free(p->arglen);
    free(p->argv);
    free(p);
    s->priv = NULL;
}

/* The sink's dead letters: XRANGE of the slot's stream, entries of this sink (id NULL = all). */
static redisReply *dlq_range(struct wc_sink *s, struct redis_sink *p, const char *id, struct wc_err *err)
{
    const char *argv[] = {"XRANGE", p->dead_key, id ? id : "-", id ? id : "+"};
    redisReply *r = command(s, p, 4, argv, NULL, err);

    if (r && r->type == REDIS_REPLY_ERROR) {
        reply_error(s, p, r, WC_ERR_DATA, "could not read the dead letters", err);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* Fields of one XRANGE entry: sink, lsn, idx, cols (event_id ... payload) and error; 0 when it is ours. */
static int dlq_fields(struct wc_sink *s, redisReply *entry, const char **lsn, const char **idx,
                      const char **cols, const char **error)
{
    static const char *const names[] = {"event_id", "event_type", "aggregate_type", "aggregate_id",
                                        "payload"};
    const char *sink = NULL;

    *lsn = *idx = *error = NULL;
    for (int c = 0; c < 5; c++)
        cols[c] = NULL;
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
        entry->element[1]->type != REDIS_REPLY_ARRAY)
        return -1;
    redisReply *f = entry->element[1];
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const char *k = f->element[i]->str, *v = f->element[i + 1]->str;
        if (k == NULL || v == NULL)
            continue;
        if (strcmp(k, "sink") == 0)
            sink = v;
        else if (strcmp(k, "lsn") == 0)
            *lsn = v;
        else if (strcmp(k, "idx") == 0)
            *idx = v;
        else if (strcmp(k, "error") == 0)
            *error = v;
        else
            for (int c = 0; c < 5; c++)
                if (strcmp(k, names[c]) == 0)
                    cols[c] = *v ? v : NULL;
    }
    return sink && strcmp(sink, s->name) == 0 ? 0 : -1;
}

static int redis_dlq_list(struct wc_sink *s, const char *id, int json, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    const char *lsn, *idx, *cols[5], *error;

    if (p == NULL)
        return not_open(s, err);
    redisReply *r = dlq_range(s, p, id, err);
    if (r == NULL)
        return -1;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        if (dlq_fields(s, r->element[i], &lsn, &idx, cols, &error) == 0)
            wc_dlq_print(s, json, r->element[i]->element[0]->str, lsn, idx, cols, error, NULL);
    freeReplyObject(r);
    return 0;
}

static int redis_dlq_retry(struct wc_sink *s, const char *id, int *retried, int *failed, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    const char *lsn, *idx, *cols[5], *error;
    int rc = 0;

    if (p == NULL)
        return not_open(s, err);
    redisReply *r = dlq_range(s, p, id, err);
    if (r == NULL)
        return -1;
    s->retrying = 1;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements && rc == 0; i++) {
        struct wc_event ev;
        struct wc_err e2 = {0};
        int n = 0;
        if (dlq_fields(s, r->element[i], &lsn, &idx, cols, &error) < 0)
            continue;
        const char *dl_id = r->element[i]->element[0]->str;
        wc_dlq_event(&ev, lsn, idx, cols);
        batch_reset(p->b);
        if (cols[1] == NULL || !wc_config_rules(s->conf, cols[1], &n) || n == 0) {
            wc_err_set(&e2, WC_ERR_DATA, "no projection of sink \"%s\" handles event type \"%s\"", s->name,
                       cols[1] ? cols[1] : "");
        } else if (redis_apply(s, &ev, &e2) == 0 && p->b->nrec == 0) {
            wc_err_set(&e2, WC_ERR_DATA, "no command of sink \"%s\" applies to this event", s->name);
        } else if (e2.code == 0 && p->b->nrec > 0) {
            /* The removal rides in the event's own MULTI/EXEC. */
            const char *argv[] = {"XDEL", p->dead_key, dl_id};
            queue_argv(p->b, &p->b->recs[p->b->nrec - 1], 3, argv, NULL);
            if (redis_commit(s, s->cursor, &e2) == 0) {
                (*retried)++;
                json_decref(ev.payload_json);
                continue;
            }
        }
        json_decref(ev.payload_json);
        batch_reset(p->b);
        if (e2.code != WC_ERR_DATA) {
            *err = e2;
            rc = -1;
            break;
        }
        (*failed)++;
        wc_warning("sink \"%s\": dead letter %s still fails: %s", s->name, dl_id, e2.msg);
        /* An error while EXEC ran does not undo the unit's XDEL: put the dead letter back. */
        const char *chk[] = {"XRANGE", p->dead_key, dl_id, dl_id};
        redisReply *c = command(s, p, 4, chk, NULL, err);
        if (c == NULL) {
            rc = -1;
            break;
        }
        int gone = c->type == REDIS_REPLY_ARRAY && c->elements == 0;
        freeReplyObject(c);
        if (gone) {
            const char *add[] = {"XADD",
                                 p->dead_key,
                                 "*",
                                 "sink",
                                 s->name,
                                 "lsn",
                                 lsn ? lsn : "",
                                 "idx",
                                 idx ? idx : "",
                                 "event_id",
                                 cols[0] ? cols[0] : "",
                                 "event_type",
                                 cols[1] ? cols[1] : "",
                                 "aggregate_type",
                                 cols[2] ? cols[2] : "",
                                 "aggregate_id",
                                 cols[3] ? cols[3] : "",
                                 "payload",
                                 cols[4] ? cols[4] : "",
                                 "error",
                                 e2.msg};
            c = command(s, p, (int)(sizeof(add) / sizeof(add[0])), add, NULL, err);
            if (c == NULL) {
                rc = -1;
                break;
            }
            freeReplyObject(c);
        }
    }
    s->retrying = 0;
    freeReplyObject(r);
    return rc;
}

/* FLUSHDB: the projections and the cursor hash live in the sink's database, so both go at once. */
static int redis_reset(struct wc_sink *s, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    const char *argv[] = {"FLUSHDB"};

    if (s->conf == NULL || s->conf->rebuild == NULL) {
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\": no rebuild action configured (sinks.%s.rebuild: flushdb)",
                   s->name, s->name);
        return -1;
    }
    if (p == NULL)
        return not_open(s, err);
    batch_reset(p->b);
    batch_reset(p->cb);
    redisReply *r = command(s, p, 1, argv, NULL, err);
    if (r == NULL)
        return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR)
        rc = reply_error(s, p, r, WC_ERR_DATA, "FLUSHDB failed", err);
    freeReplyObject(r);
    if (rc == 0)
        rc = load_scripts(s, p, err);
    return rc;
}

const struct wc_sink_ops wc_sink_redis_ops = {
    .dlq_list = redis_dlq_list,
    .dlq_retry = redis_dlq_retry,
    .reset = redis_reset,
    .type = "redis",
    .open = redis_open,
    .read_cursor = redis_read_cursor,
    .apply = redis_apply,
    .dead_letter = redis_dead_letter,
    .commit = redis_commit,
    .detach = redis_detach,
    .commit_detached = redis_commit_detached,
    .close = redis_close,
};
