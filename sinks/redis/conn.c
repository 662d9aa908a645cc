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
    char timed_out[160];

    if (p->c && p->c->err == REDIS_ERR_EOF)
        why = "server closed the connection";
    /* The socket's receive timeout (redisSetTimeout) ends a read with EAGAIN: a server that does not
     * answer (CLIENT PAUSE, stopped, a dropped network). The connection is given up. */
    if (p->c && p->c->err == REDIS_ERR_IO &&
        (strstr(p->c->errstr, "temporarily unavailable") || strstr(p->c->errstr, "timed out"))) {
        snprintf(timed_out, sizeof(timed_out), "no reply within %d ms (sinks.%s.statement_timeout_ms)",
                 p->timeout_ms, s->name);
        why = timed_out;
    }
    wc_err_set(err, WC_ERR_IO, "sink \"%s\": lost connection to redis at %s:%d: %s", s->name, p->host,
               p->port, why);
    return -1;
}

/* Replies that say the DSN's credentials are wrong or missing: a fault someone must fix. */
static int auth_error(const char *msg)
{
    return strncmp(msg, "NOAUTH", 6) == 0 || strncmp(msg, "WRONGPASS", 9) == 0 ||
           strncmp(msg, "NOPERM", 6) == 0 || strstr(msg, "invalid password") != NULL ||
           strstr(msg, "invalid username-password") != NULL;
}

/* err for an error reply while connecting: authentication faults are WC_ERR_CONFIG, with what to do. */
static int open_reply_error(struct wc_sink *s, struct redis_sink *p, redisReply *r, const char *what,
                            struct wc_err *err)
{
    const char *hint = NULL;

    if (strncmp(r->str, "NOAUTH", 6) == 0)
        hint = "the server requires a password: put it in the DSN (redis://:PASSWORD@host:port/db, or "
               "redis://USER:PASSWORD@... with an ACL user)";
    else if (auth_error(r->str))
        hint = strncmp(r->str, "NOPERM", 6) == 0 ? "give the DSN's user the permission (ACL SETUSER)"
                                                 : "check the user and password in the DSN";
    if (hint == NULL)
        return redis_reply_error(s, p, r, WC_ERR_CONFIG, what, err);
    wc_err_set(err, WC_ERR_CONFIG, "sink \"%s\": %s at %s:%d: %s: %s", s->name, what, p->host, p->port,
               r->str, hint);
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
 * The sink's one writer: name this connection after the slot and sink, and end every other connection
 * of that name before the cursor is read. Such a connection is one walcast gave up after a timeout (a
 * paused or stopped server) or one a killed walcast left: a MULTI/EXEC it had sent in full could still
 * run after the cursor was read, and its events be applied twice. Redis runs one command at a time, so
 * once CLIENT KILL returned, whatever it had queued has run or never will. A user without the right to
 * list or kill clients (ACL) skips this, with a warning once per connection.
 */
static int end_earlier_sessions(struct wc_sink *s, struct redis_sink *p, struct wc_err *err)
{
    const char *slot = s->cfg && s->cfg->slot ? s->cfg->slot : "walcast";
    char *name = redis_xasprintf("walcast:%s:%s", slot, s->name),
         *needle = redis_xasprintf(" name=%s ", name);
    const char *setname[3] = {"CLIENT", "SETNAME", name}, *myid[2] = {"CLIENT", "ID"};
    const char *list[4] = {"CLIENT", "LIST", "TYPE", "normal"};
    long long me = -1;
    char *text = NULL;
    redisReply *r;
    int rc = -1;

    if ((r = redis_command(s, p, 3, setname, NULL, err)) == NULL)
        goto done;
    int named = r->type != REDIS_REPLY_ERROR;
    freeReplyObject(r);
    if ((r = redis_command(s, p, 2, myid, NULL, err)) == NULL)
        goto done;
    if (r->type == REDIS_REPLY_INTEGER)
        me = r->integer;
    freeReplyObject(r);
    if ((r = redis_command(s, p, 4, list, NULL, err)) == NULL)
        goto done;
    if (named && me >= 0 && r->type == REDIS_REPLY_STRING)
        text = strndup(r->str, r->len);
    freeReplyObject(r);
    if (text == NULL) {
        wc_warning(
            "sink \"%s\": could not name or list redis clients (CLIENT SETNAME, CLIENT ID, CLIENT LIST): "
            "an earlier connection given up after a timeout cannot be ended before the cursor is read",
            s->name);
        rc = 0;
        goto done;
    }
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char id[32];
        /* "id=7 addr=... name=walcast:slot:sink age=..." */
        if (strncmp(line, "id=", 3) != 0 || strstr(line, needle) == NULL)
            continue;
        snprintf(id, sizeof(id), "%.*s", (int)strcspn(line + 3, " "), line + 3);
        if (atoll(id) == me)
            continue;
        const char *kill[4] = {"CLIENT", "KILL", "ID", id};
        if ((r = redis_command(s, p, 4, kill, NULL, err)) == NULL)
            goto done;
        if (r->type == REDIS_REPLY_INTEGER && r->integer > 0)
            wc_warning("sink \"%s\": ended an earlier connection of this sink (client %s) before reading the "
                       "cursor: a connection given up after a timeout, or left by a stopped walcast",
                       s->name, id);
        else if (r->type == REDIS_REPLY_ERROR)
            wc_warning("sink \"%s\": could not end an earlier connection of this sink (client %s): %s",
                       s->name, id, r->str);
        freeReplyObject(r);
    }
    rc = 0;
done:
    free(text);
    free(name);
    free(needle);
    return rc;
}

/*
 * Connect, AUTH when the dsn has a password, SELECT the database and load the scripts. A refused or
 * timed-out connection is WC_ERR_IO (retryable); a bad or missing password (NOAUTH, WRONGPASS), a bad
 * database or script is WC_ERR_CONFIG, with what to do.
 */
static int redis_open(struct wc_sink *s, struct wc_err *err)
{
    struct redis_sink *p;
    struct timeval ctv = {CONNECT_TIMEOUT_S, 0}, iotv;
    int timeout_ms = s->conf && s->conf->statement_timeout_ms > 0 ? s->conf->statement_timeout_ms : 30000;
    const char *slot = s->cfg && s->cfg->slot ? s->cfg->slot : "walcast";
    redisReply *r;

    if (s->priv != NULL)
        redis_close(s);
    p = wc_xcalloc(1, sizeof(*p));
    p->b = &p->bufs[0];
    p->cb = &p->bufs[1];
    p->timeout_ms = timeout_ms;
    iotv.tv_sec = timeout_ms / 1000;
    iotv.tv_usec = (timeout_ms % 1000) * 1000;
    s->priv = p;
    if (redis_parse_dsn(s, p, s->conf ? s->conf->dsn : NULL, err) < 0)
        goto fail;
    p->cursor_key = redis_xasprintf("walcast:cursor:%s", slot);
    p->dead_key = redis_xasprintf("walcast:dead_letters:%s", slot);
    p->halt_key = redis_xasprintf("walcast:halt:%s:%s", slot, s->name);
    p->applied_key = redis_xasprintf("walcast:applied:%s", slot);

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
            open_reply_error(s, p, r, "could not authenticate to redis", err);
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
            open_reply_error(s, p, r, what, err);
            freeReplyObject(r);
            goto fail;
        }
        freeReplyObject(r);
    }

    if (s->writer && end_earlier_sessions(s, p, err) < 0)
        goto fail;

    /* A reader's connection (wc_redis_reader: no configuration) runs no scripts. */
    if (s->conf && s->cfg && redis_load_scripts(s, p, err) < 0)
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
    free(p->applied_key);
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
