/* peek.c - one sink as its server shows it, without the engine: its cursor and its dead letters, read
 * on connections of their own (`walcast status` without a running engine, the metrics poller). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "metrics.h"
#include "walcast/pgconn.h"
#include "walcast/probe.h"

static void peek_pg(const struct wc_config *cfg, const struct wc_sink_conf *conf, struct wc_peek_conn *pc,
                    struct wc_peek *out)
{
    char who[128];
    struct wc_err err = {0};
    struct wc_pgconn_opts o = {.dsn = conf->dsn, .who = who};
    const char *params[] = {cfg->slot, conf->name};
    PGresult *r;

    snprintf(who, sizeof(who), "sink \"%s\"", conf->name);
    if (pc->pg && PQstatus(pc->pg) != CONNECTION_OK) {
        PQfinish(pc->pg);
        pc->pg = NULL;
    }
    if (pc->pg == NULL && (pc->pg = wc_pgconn_open(&o, &err)) == NULL) {
        snprintf(out->error, sizeof(out->error), "%s", err.msg);
        return;
    }
    /* walcast's tables exist once the sink has run: without them, no cursor and no dead letters yet. */
    r = PQexecParams(
        pc->pg,
        "SELECT (SELECT lsn::text || ' ' || idx FROM walcast_cursor WHERE slot = $1 AND sink = $2),"
        "       to_regclass('walcast_dead_letters') IS NOT NULL",
        2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        /* walcast_cursor missing fails the whole statement: say "none yet" rather than an error. */
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (st && strcmp(st, "42P01") == 0) {
            out->ok = 1;
            out->dead_letters = 0;
        } else
            snprintf(out->error, sizeof(out->error), "sink \"%s\": %s", conf->name,
                     PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
                         ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
                         : "query failed");
        PQclear(r);
        return;
    }
    out->ok = 1;
    if (!PQgetisnull(r, 0, 0)) {
        char lsn[32];
        long long idx;
        if (sscanf(PQgetvalue(r, 0, 0), "%31s %lld", lsn, &idx) == 2 &&
            wc_lsn_parse(lsn, &out->cursor.lsn) == 0) {
            out->cursor.index = idx;
            out->found = 1;
        }
    }
    int has_dl = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    PQclear(r);
    out->dead_letters = 0;
    if (has_dl) {
        r = PQexecParams(pc->pg, "SELECT count(*) FROM walcast_dead_letters WHERE slot = $1 AND sink = $2", 2,
                         NULL, params, NULL, NULL, 0);
        out->dead_letters = PQresultStatus(r) == PGRES_TUPLES_OK ? atoll(PQgetvalue(r, 0, 0)) : -1;
        PQclear(r);
    }
}

static void peek_redis(const struct wc_config *cfg, const struct wc_sink_conf *conf, struct wc_peek_conn *pc,
                       struct wc_peek *out)
{
    struct wc_err err = {0};
    struct wc_redis_info info;
    int found = 0;

    if (pc->redis == NULL) {
        pc->redis = wc_sink_new(cfg, conf, &err);
        if (pc->redis == NULL || pc->redis->ops->open(pc->redis, &err) < 0) {
            snprintf(out->error, sizeof(out->error), "%s", err.msg);
            wc_sink_free(pc->redis);
            pc->redis = NULL;
            return;
        }
    }
    if (pc->redis->ops->read_cursor(pc->redis, &out->cursor, &found, &err) < 0 ||
        wc_sink_redis_info(pc->redis, &info, &err) < 0) {
        snprintf(out->error, sizeof(out->error), "%s", err.msg);
        wc_sink_free(pc->redis); /* open again next time */
        pc->redis = NULL;
        return;
    }
    out->ok = 1;
    out->found = found;
    out->dead_letters = info.dead_letters;
}

void wc__peek(const struct wc_config *cfg, const struct wc_sink_conf *conf, struct wc_peek_conn *pc,
              struct wc_peek *out)
{
    memset(out, 0, sizeof(*out));
    out->cursor = WC_POS_NONE;
    out->dead_letters = -1;
    if (conf->type == WC_SINK_POSTGRES)
        peek_pg(cfg, conf, pc, out);
    else if (conf->type == WC_SINK_REDIS)
        peek_redis(cfg, conf, pc, out);
}

void wc__peek_close(struct wc_peek_conn *pc)
{
    if (pc->pg)
        PQfinish(pc->pg);
    pc->pg = NULL;
    wc_sink_free(pc->redis);
    pc->redis = NULL;
}
