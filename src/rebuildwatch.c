/*
 * rebuildwatch.c - rebuilds and verifies of this engine's projections as the engine can see them, for
 * /metrics. They run in processes of their own (`walcast rebuild`, or the engine's child with `rebuild:
 * auto`), so the poller reads what they leave on the servers: their slots on the source
 * (walcast_rb_<unit>_<hash of the engine's slot>, walcast_vf_ for verify: reshadow.c), whether a process
 * holds each, the WAL each keeps and how far behind it is, and, while one replays the outbox, the rows its
 * shadow holds (its cursor, the sink's walcast_cursor row or cursor hash field "<sink>:rebuild:<unit>", is
 * (0/0, n) until the replay is whole). What an operator alerts on: a rebuild killed and neither resumed nor
 * discarded keeps its slot, and its slot keeps WAL.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "metrics.h"
#include "shadow.h"
#include "walcast/log.h"
#include "walcast/probe.h"

static struct wc_rebuild_seen *find(struct wc_rebuild_seen *seen, int n, const char *kind_unit)
{
    const char *colon = strchr(kind_unit, ':');
    if (colon == NULL)
        return NULL;
    int verify = strncmp(kind_unit, "verify:", 7) == 0;
    for (int i = 0; i < n; i++)
        if (seen[i].verify == verify && strcmp(seen[i].unit, colon + 1) == 0)
            return &seen[i];
    return NULL;
}

/* The shadows of a PostgreSQL sink that are replaying: "rebuild:<unit>" or "verify:<unit>", rows. */
static void replaying_pg(struct wc_metrics *m, struct wc_metrics_sink *ms, struct wc_rebuild_seen *seen,
                         int n)
{
    const char *params[2] = {m->cfg->slot, ms->sink->conf->name};
    PGresult *r =
        PQexecParams(ms->peek.pg,
                     "SELECT substr(sink, length($2) + 2), idx + 1 FROM walcast_cursor WHERE slot = $1 "
                     "AND lsn = '0/0' AND starts_with(sink, $2 || ':')",
                     2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        for (int i = 0; i < PQntuples(r); i++) {
            struct wc_rebuild_seen *s = find(seen, n, PQgetvalue(r, i, 0));
            if (s != NULL)
                s->replayed = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        }
    PQclear(r);
}

static void replaying_redis(struct wc_metrics *m, struct wc_metrics_sink *ms, struct wc_rebuild_seen *seen,
                            int n)
{
    char key[300];
    struct wc_err err = {0};
    redisReply *r;
    /* One server: the shadows' cursors in walcast:cursor:<slot>. A cluster: their floors in the sink's
     * directory ("<sink>:rebuild:<unit>:floor"). */
    int cluster = ms->sink->conf->cluster;
    if (cluster) {
        wc_sink_redis_cluster_key(ms->peek.redis, "directory", -1, key, sizeof(key));
        const char *argv[2] = {"HGETALL", key};
        int master = wc_sink_redis_masters(ms->peek.redis, &err) > 0
                         ? wc_sink_redis_key_master(ms->peek.redis, key, strlen(key))
                         : -1;
        r = master < 0 ? NULL : wc_sink_redis_master_command(ms->peek.redis, master, 2, argv, NULL, &err);
    } else {
        snprintf(key, sizeof(key), "walcast:cursor:%s", m->cfg->slot);
        const char *argv[2] = {"HGETALL", key};
        r = wc_sink_redis_command(ms->peek.redis, 2, argv, NULL, &err);
    }
    size_t len = strlen(ms->sink->conf->name);
    if (r != NULL && r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const char *f = r->element[i]->str, *v = r->element[i + 1]->str;
            char unit[200];
            if (f == NULL || v == NULL || strncmp(f, ms->sink->conf->name, len) != 0 || f[len] != ':' ||
                strncmp(v, "0/0:", 4) != 0)
                continue;
            snprintf(unit, sizeof(unit), "%s", f + len + 1);
            if (cluster) {
                /* "rebuild:<unit>:floor" */
                size_t ul = strlen(unit);
                if (ul < 6 || strcmp(unit + ul - 6, ":floor") != 0)
                    continue;
                unit[ul - 6] = '\0';
            }
            struct wc_rebuild_seen *s = find(seen, n, unit);
            if (s != NULL)
                s->replayed = strtoll(v + 4, NULL, 10) + 1;
        }
    freeReplyObject(r);
}

void wc__poll_rebuilds(struct wc_metrics *m)
{
    struct wc_rebuild_seen seen[WC_REBUILDS_MAX];
    char re[160];
    int n = 0;

    if (m->src == NULL || !m->slot_ok)
        return;
    snprintf(re, sizeof(re), "^walcast_(rb|vf)_(.+)_%08x$", wc_shadow_slot_hash(m->cfg->slot));
    const char *params[1] = {re};
    PGresult *r =
        PQexecParams(m->src,
                     "SELECT substr(slot_name, 9, 2) = 'vf', regexp_replace(slot_name, $1, '\\2'), "
                     "active, coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint, "
                     "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint "
                     "FROM pg_replication_slots WHERE slot_name ~ $1 ORDER BY slot_name",
                     1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        wc_debug("metrics: could not list the rebuilds' slots: %s", PQerrorMessage(m->src));
        PQclear(r);
        pthread_mutex_lock(&m->lock);
        m->rebuilds_ok = 0;
        pthread_mutex_unlock(&m->lock);
        return;
    }
    for (int i = 0; i < PQntuples(r) && n < WC_REBUILDS_MAX; i++, n++) {
        struct wc_rebuild_seen *s = &seen[n];
        s->verify = PQgetvalue(r, i, 0)[0] == 't';
        snprintf(s->unit, sizeof(s->unit), "%s", PQgetvalue(r, i, 1));
        s->active = PQgetvalue(r, i, 2)[0] == 't';
        s->retained_bytes = strtoll(PQgetvalue(r, i, 3), NULL, 10);
        s->behind_bytes = strtoll(PQgetvalue(r, i, 4), NULL, 10);
        s->replayed = -1;
    }
    PQclear(r);
    /* The poller's own connections to the sinks, opened by the dead-letter reading just before. */
    for (int i = 0; n > 0 && i < m->nsink; i++) {
        struct wc_metrics_sink *ms = &m->sinks[i];
        if (ms->sink->conf == NULL)
            continue;
        if (ms->sink->conf->type == WC_SINK_POSTGRES && ms->peek.pg != NULL)
            replaying_pg(m, ms, seen, n);
        else if (ms->sink->conf->type == WC_SINK_REDIS && ms->peek.redis != NULL)
            replaying_redis(m, ms, seen, n);
    }
    pthread_mutex_lock(&m->lock);
    memcpy(m->rebuilds, seen, (size_t)n * sizeof(seen[0]));
    m->nrebuild = n;
    m->rebuilds_ok = 1;
    pthread_mutex_unlock(&m->lock);
}
