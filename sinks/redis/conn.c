/* conn.c - the Redis sink's connection: AUTH, SELECT, the scripts, the cursor; errors and their kinds. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "../owner.h"
#include "redis.h"
#include "walcast/log.h"

char *redis_xasprintf(const char *fmt, ...)
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

/* Errors that say "try again later" rather than "this command is wrong". */
int redis_transient_error(const char *msg)
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

int redis_io_error(struct wc_sink *s, struct redis_sink *p, struct wc_err *err)
{
    const char *why = p->c && p->c->err ? p->c->errstr : "connection closed";

    if (p->c && p->c->err == REDIS_ERR_EOF)
        why = "server closed the connection";
    wc_err_set(err, WC_ERR_IO, "sink \"%s\": lost connection to redis at %s:%d: %s", s->name, p->host,
               p->port, why);
    return -1;
}

/* Run one command and return its reply (NULL with err set on a lost connection). */
redisReply *redis_command(struct wc_sink *s, struct redis_sink *p, int argc, const char **argv,
                          const size_t *len, struct wc_err *err)
{
    redisReply *r;

    if (p->c == NULL || p->c->err) {
        redis_io_error(s, p, err);
        return NULL;
    }
    r = redisCommandArgv(p->c, argc, argv, len);
    if (r == NULL)
        redis_io_error(s, p, err);
    return r;
}

/* err for an error reply of a one-off command: WC_ERR_IO when transient, else code. */
int redis_reply_error(struct wc_sink *s, struct redis_sink *p, redisReply *r, int code, const char *what,
                      struct wc_err *err)
{
    wc_err_set(err, redis_transient_error(r->str) ? WC_ERR_IO : code, "sink \"%s\": %s at %s:%d: %s", s->name,
               what, p->host, p->port, r->str);
    return -1;
}

struct script *redis_find_script(struct redis_sink *p, const char *src)
{
    for (int i = 0; i < p->nscript; i++)
        if (p->scripts[i].src == src)
            return &p->scripts[i];
    return NULL;
}

/* SCRIPT LOAD every script of the sink's rules (to check them; they run inside the generated scripts),
 * then generate and load each event type's script (script.c). */
int redis_load_scripts(struct wc_sink *s, struct redis_sink *p, struct wc_err *err)
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

            if (cmd->script == NULL || redis_find_script(p, cmd->script) != NULL)
                continue;
            len[2] = strlen(cmd->script);
            r = redis_command(s, p, 3, argv, len, err);
            if (r == NULL)
                return -1;
            if (r->type == REDIS_REPLY_ERROR) {
                wc_err_set(err, redis_transient_error(r->str) ? WC_ERR_IO : WC_ERR_CONFIG,
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
    return redis_gen_scripts(s, p, err);
}

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
    if (redis_parse_dsn(s, p, s->conf ? s->conf->dsn : NULL, err) < 0)
        goto fail;
    p->cursor_key = redis_xasprintf("walcast:cursor:%s", slot);
    p->dead_key = redis_xasprintf("walcast:dead_letters:%s", slot);
    p->halt_key = redis_xasprintf("walcast:halt:%s:%s", slot, s->name);

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
        if ((r = redis_command(s, p, argc, argv, len, err)) == NULL)
            goto fail;
        if (r->type == REDIS_REPLY_ERROR) {
            redis_reply_error(s, p, r, WC_ERR_CONFIG, "could not authenticate to redis", err);
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
        if ((r = redis_command(s, p, 2, argv, len, err)) == NULL)
            goto fail;
        if (r->type == REDIS_REPLY_ERROR) {
            char what[64];
            snprintf(what, sizeof(what), "could not select database %d", p->db);
            redis_reply_error(s, p, r, WC_ERR_CONFIG, what, err);
            freeReplyObject(r);
            goto fail;
        }
        freeReplyObject(r);
    }

    if (s->conf && redis_load_scripts(s, p, err) < 0)
        goto fail;
    wc_debug("sink \"%s\": connected to redis at %s:%d, database %d", s->name, p->host, p->port, p->db);
    return 0;

fail:
    redis_close(s);
    return -1;
}

/* An operation on a sink that is not open (open failed, or closed): retryable, open it again. */
int redis_not_open(struct wc_sink *s, struct wc_err *err)
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
        return redis_not_open(s, err);
    argv[0] = "HGET";
    argv[1] = p->cursor_key;
    argv[2] = s->name;
    len[0] = 4;
    len[1] = strlen(p->cursor_key);
    len[2] = strlen(s->name);
    if ((r = redis_command(s, p, 3, argv, len, err)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_NIL) {
        rc = 0;
    } else if (r->type == REDIS_REPLY_ERROR) {
        char what[256];
        snprintf(what, sizeof(what), "could not read the cursor from \"%s\"", p->cursor_key);
        rc = redis_reply_error(s, p, r, WC_ERR_DATA, what, err);
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

void redis_close(struct wc_sink *s)
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
    free(p->halt_key);
    free(p->scripts);
    redis_gen_free(p);
    redis_batch_free(&p->bufs[0]);
    redis_batch_free(&p->bufs[1]);
    wc_buf_free(&p->arg);
    free(p->argoff);
    free(p->arglen);
    free(p->argv);
    free(p);
    s->priv = NULL;
}

const struct wc_sink_ops wc_sink_redis_ops = {
    .type = "redis",
    .open = redis_open,
    .read_cursor = redis_read_cursor,
    .apply = redis_apply,
    .dead_letter = redis_dead_letter,
    .commit = redis_commit,
    .detach = redis_detach,
    .commit_detached = redis_commit_detached,
    .close = redis_close,
    .reset = redis_reset,
    .dlq = &redis_dlq_ops,
    .owner = &wc_redis_owner_ops,
};
