/*
 * cmd_wait.c - `walcast wait-lsn LSN --sink NAME [--timeout MS]`: wait until a sink has applied every
 * transaction up to LSN (read your writes), by asking the sink's own server, not the engine.
 *
 * Each commit of a sink publishes the position it has applied through (its cursor's LSN) with its
 * writes: Redis HSET walcast:applied:<slot> <sink> <lsn> and PUBLISH on the channel of that name;
 * PostgreSQL the cursor row in walcast_cursor and NOTIFY walcast_applied '<slot> <sink> <lsn>'. So the
 * wait subscribes first, then reads the position (nothing published in between is missed), and then
 * only listens: no polling, and it returns as soon as the commit that covers LSN is visible.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "cli.h"
#include "walcast/clock.h"
#include "walcast/lsn.h"
#include "walcast/pgconn.h"
#include "walcast/probe.h"

#define DEFAULT_TIMEOUT_MS 10000

/* What a wait found: the newest applied position seen (0 = none yet). */
struct waited {
    wc_lsn applied;
};

/* "<sink> <lsn>" (Redis) or "<slot> <sink> <lsn>" (PostgreSQL) for this sink: 0 with *lsn. */
static int parse_announce(const char *msg, const char *slot, const char *sink, wc_lsn *lsn)
{
    size_t n;

    if (slot) {
        n = strlen(slot);
        if (strncmp(msg, slot, n) != 0 || msg[n] != ' ')
            return -1;
        msg += n + 1;
    }
    n = strlen(sink);
    if (strncmp(msg, sink, n) != 0 || msg[n] != ' ')
        return -1;
    return wc_lsn_parse(msg + n + 1, lsn);
}

static int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - wc_now_ms();
    return left < 0 ? 0 : left > 3600000 ? 3600000 : (int)left;
}

/* Returns 1 reached, 0 timed out, -1 with err. */
static int wait_redis(const struct wc_config *cfg, const struct wc_sink_conf *conf, wc_lsn want,
                      int64_t deadline, struct waited *w, struct wc_err *err)
{
    redisContext *sub = NULL, *get = NULL;
    redisReply *r = NULL;
    char key[128];
    int rc = -1;

    snprintf(key, sizeof(key), "walcast:applied:%s", cfg->slot);
    if ((sub = wc_redis_reader(conf, err)) == NULL || (get = wc_redis_reader(conf, err)) == NULL)
        goto done;
    /* SUBSCRIBE first: a position published after it is heard, one published before it is read. */
    r = redisCommand(sub, "SUBSCRIBE %s", key);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": could not subscribe to \"%s\": %s", conf->name, key,
                   r && r->type == REDIS_REPLY_ERROR ? r->str : sub->errstr);
        goto done;
    }
    freeReplyObject(r);
    r = redisCommand(get, "HGET %s %s", key, conf->name);
    if (r == NULL || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)) {
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": could not read \"%s\": %s", conf->name, key,
                   r && r->type == REDIS_REPLY_ERROR ? r->str : get->errstr);
        goto done;
    }
    if (r->type == REDIS_REPLY_STRING)
        wc_lsn_parse(r->str, &w->applied);
    freeReplyObject(r);
    r = NULL;
    while (w->applied < want) {
        int left = remaining_ms(deadline);
        if (left == 0) {
            rc = 0;
            goto done;
        }
        struct timeval tv = {left / 1000, (left % 1000) * 1000};
        redisSetTimeout(sub, tv);
        if (redisGetReply(sub, (void **)&r) != REDIS_OK) {
            if (sub->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                rc = 0;
                goto done;
            }
            wc_err_set(err, WC_ERR_IO, "sink \"%s\": lost the subscription to \"%s\": %s", conf->name, key,
                       sub->errstr);
            goto done;
        }
        wc_lsn l;
        if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
            r->element[2]->type == REDIS_REPLY_STRING &&
            parse_announce(r->element[2]->str, NULL, conf->name, &l) == 0 && l > w->applied)
            w->applied = l;
        freeReplyObject(r);
        r = NULL;
    }
    rc = 1;
done:
    if (r)
        freeReplyObject(r);
    if (sub)
        redisFree(sub);
    if (get)
        redisFree(get);
    return rc;
}

/* Returns 1 reached, 0 timed out, -1 with err. */
static int wait_pg(const struct wc_config *cfg, const struct wc_sink_conf *conf, wc_lsn want,
                   int64_t deadline, struct waited *w, struct wc_err *err)
{
    char who[128];
    struct wc_pgconn_opts o = {.dsn = conf->dsn, .who = who};
    const char *params[2] = {cfg->slot, conf->name};
    PGconn *c;
    PGresult *r;
    int rc = -1;

    snprintf(who, sizeof(who), "sink \"%s\"", conf->name);
    if ((c = (PGconn *)wc_pgconn_open(&o, err)) == NULL)
        return -1;
    /* LISTEN first: a commit after it is heard, one before it is read. */
    r = PQexec(c, "LISTEN walcast_applied");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": could not listen on \"walcast_applied\": %s", conf->name,
                   PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
                       ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
                       : PQerrorMessage(c));
        PQclear(r);
        goto done;
    }
    PQclear(r);
    r = PQexecParams(c, "SELECT lsn::text FROM walcast_cursor WHERE slot = $1 AND sink = $2", 2, NULL, params,
                     NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        wc_err_set(err, st && strcmp(st, "42501") == 0 ? WC_ERR_CONFIG : WC_ERR_IO,
                   "sink \"%s\": could not read its position from walcast_cursor: %s%s", conf->name,
                   m ? m : PQerrorMessage(c),
                   st && strcmp(st, "42501") == 0 ? " (grant the reader SELECT (slot, sink, lsn) ON "
                                                    "walcast_cursor, as examples/orders/read.sql does)"
                                                  : "");
        PQclear(r);
        goto done;
    }
    if (PQntuples(r) == 1)
        wc_lsn_parse(PQgetvalue(r, 0, 0), &w->applied);
    PQclear(r);
    while (w->applied < want) {
        PGnotify *n;
        while ((n = PQnotifies(c)) != NULL) {
            wc_lsn l;
            if (parse_announce(n->extra, cfg->slot, conf->name, &l) == 0 && l > w->applied)
                w->applied = l;
            PQfreemem(n);
        }
        if (w->applied >= want)
            break;
        int left = remaining_ms(deadline);
        if (left == 0) {
            rc = 0;
            goto done;
        }
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
        if (poll(&pfd, 1, left) < 0 && errno != EINTR) {
            wc_err_set(err, WC_ERR_IO, "sink \"%s\": poll: %s", conf->name, strerror(errno));
            goto done;
        }
        if (!PQconsumeInput(c)) {
            wc_err_set(err, WC_ERR_IO, "sink \"%s\": lost the connection while waiting: %s", conf->name,
                       PQerrorMessage(c));
            goto done;
        }
    }
    rc = 1;
done:
    PQfinish(c);
    return rc;
}

/* The sink named (or the only one); NULL after saying why. */
static const struct wc_sink_conf *find_sink(const struct wc_config *cfg, const char *name)
{
    char names[512] = "";
    size_t n = 0;

    for (int i = 0; i < cfg->nsink; i++) {
        if (name && strcmp(cfg->sinks[i].name, name) == 0)
            return &cfg->sinks[i];
        n += (size_t)snprintf(names + n, n < sizeof(names) ? sizeof(names) - n : 0, "%s\"%s\"", i ? ", " : "",
                              cfg->sinks[i].name);
    }
    if (name == NULL && cfg->nsink == 1)
        return &cfg->sinks[0];
    if (name == NULL)
        fprintf(stderr, "%s: error: wait-lsn needs --sink NAME: the configuration has sinks %s\n",
                wc__cli_progname, names);
    else
        fprintf(stderr, "%s: error: unknown sink \"%s\": the configuration has %s\n", wc__cli_progname, name,
                names);
    return NULL;
}

int wc__cmd_wait_lsn(const char *lsn_text, const struct options *o)
{
    struct wc_err err = {0};
    struct waited w = {0};
    wc_lsn want;
    long timeout = DEFAULT_TIMEOUT_MS;
    char a[WC_LSN_STRLEN], l[WC_LSN_STRLEN];
    int rc;

    if (wc_lsn_parse(lsn_text, &want) < 0) {
        fprintf(stderr,
                "%s: error: invalid LSN \"%.64s\": expected two hexadecimal numbers separated by a slash, as "
                "pg_current_wal_insert_lsn() returns it (e.g. 0/16B3748)\n",
                wc__cli_progname, lsn_text);
        return EXIT_CONFIG;
    }
    if (o->timeout) {
        char *end;
        errno = 0;
        timeout = strtol(o->timeout, &end, 10);
        if (errno || end == o->timeout || *end || timeout < 0 || timeout > 86400000) {
            fprintf(stderr,
                    "%s: error: invalid --timeout \"%.64s\": expected milliseconds from 0 to 86400000\n",
                    wc__cli_progname, o->timeout);
            return EXIT_CONFIG;
        }
    }
    struct wc_config *cfg = wc__cli_load_config(o, &err);
    if (cfg == NULL)
        return wc__cli_fail(&err);
    const struct wc_sink_conf *conf = find_sink(cfg, o->sink);
    if (conf == NULL) {
        wc_config_free(cfg);
        return EXIT_CONFIG;
    }
    if (conf->type == WC_SINK_REDIS && conf->cluster) {
        fprintf(
            stderr,
            "%s: error: sink \"%s\" is a redis cluster: its applied position is not published there; wait "
            "with GET /wait on walcast's metrics endpoint instead\n",
            wc__cli_progname, conf->name);
        wc_config_free(cfg);
        return EXIT_CONFIG;
    }
    int64_t deadline = wc_now_ms() + timeout;
    rc = conf->type == WC_SINK_REDIS ? wait_redis(cfg, conf, want, deadline, &w, &err)
                                     : wait_pg(cfg, conf, want, deadline, &w, &err);
    wc_lsn_format(w.applied, a);
    wc_lsn_format(want, l);
    if (rc < 0) {
        rc = wc__cli_fail(&err);
    } else if (rc == 0) {
        printf("sink \"%s\": applied through %s\n", conf->name, w.applied ? a : "nothing yet");
        fprintf(
            stderr,
            "%s: error: sink \"%s\": timed out after %ld ms waiting for %s (applied through %s): is walcast "
            "running and streaming?\n",
            wc__cli_progname, conf->name, timeout, l, w.applied ? a : "nothing yet");
        rc = EXIT_ERROR;
    } else {
        printf("sink \"%s\": applied through %s\n", conf->name, a);
        rc = EXIT_OK;
    }
    wc_config_free(cfg);
    return rc;
}
