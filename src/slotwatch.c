/*
 * slotwatch.c - the slot's WAL retention, read on a timer on a connection of its own, never on the
 * per-event path: retained WAL, safe_wal_size, wal_status, the server's WAL rate over a window, and the
 * forecast of when the slot is invalidated at that rate; the retention warnings (log lines repeated at
 * most once a minute while they hold, an info line when they clear); each sink's dead letters and
 * events per second; whether the confirmed position is stalled while the WAL moves (/readyz).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "metrics.h"
#include "walcast/clock.h"
#include "walcast/log.h"
#include "walcast/pgconn.h"

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define REPEAT_MS 60000 /* a warning that holds is logged again this often */

int wc__slot_sample(void *conn, const char *slot, struct wc_slot_sample *out, struct wc_err *err)
{
    PGconn *c = conn;
    const char *params[] = {slot};
    PGresult *r = PQexecParams(
        c,
        "SELECT s.slot_name IS NOT NULL, s.wal_status, s.active_pid, pg_current_wal_lsn(), s.restart_lsn, "
        "s.confirmed_flush_lsn, pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint, "
        "pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint, s.safe_wal_size, "
        "pg_size_bytes(current_setting('max_slot_wal_keep_size')) "
        "FROM (SELECT 1) one LEFT JOIN pg_replication_slots s ON s.slot_name = $1",
        1, NULL, params, NULL, NULL, 0);

    memset(out, 0, sizeof(*out));
    out->retained_bytes = out->lag_bytes = out->safe_wal_size = out->max_keep_bytes = -1;
    out->at_ms = wc_now_ms();
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        wc_err_set(err, st && strncmp(st, "08", 2) != 0 ? WC_ERR_CONFIG : WC_ERR_IO,
                   "could not read replication slot \"%s\": %s", slot, PQerrorMessage(c));
        PQclear(r);
        return -1;
    }
#define NUM(col, dflt) (PQgetisnull(r, 0, col) ? (dflt) : strtoll(PQgetvalue(r, 0, col), NULL, 10))
    out->found = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    snprintf(out->wal_status, sizeof(out->wal_status), "%s", PQgetvalue(r, 0, 1));
    out->active_pid = (int)NUM(2, 0);
    wc_lsn_parse(PQgetvalue(r, 0, 3), &out->current_lsn);
    if (!PQgetisnull(r, 0, 4))
        wc_lsn_parse(PQgetvalue(r, 0, 4), &out->restart_lsn);
    if (!PQgetisnull(r, 0, 5))
        wc_lsn_parse(PQgetvalue(r, 0, 5), &out->confirmed_lsn);
    out->retained_bytes = NUM(6, -1);
    out->lag_bytes = NUM(7, -1);
    out->safe_wal_size = NUM(8, -1);
    out->max_keep_bytes = NUM(9, -1);
#undef NUM
    /* safe_wal_size is NULL when unlimited (and for a lost slot); below zero it is past the limit. */
    if (PQgetisnull(r, 0, 8) && out->max_keep_bytes >= 0 && strcmp(out->wal_status, "lost") != 0)
        out->safe_wal_size = 0;
    PQclear(r);
    return 0;
}

void wc__slot_trend(const struct wc_slot_sample *old, const struct wc_slot_sample *cur,
                    struct wc_slot_trend *t)
{
    double secs = old ? (double)(cur->at_ms - old->at_ms) / 1000.0 : 0;

    t->wal_rate = t->retained_growth = t->forecast_s = -1;
    t->growth_known = 0;
    if (old == NULL || secs < 0.2)
        return; /* readings too close together say nothing about a rate */
    if (cur->current_lsn >= old->current_lsn)
        t->wal_rate = (double)(cur->current_lsn - old->current_lsn) / secs;
    if (cur->found && old->found && cur->retained_bytes >= 0 && old->retained_bytes >= 0) {
        t->retained_growth = (double)(cur->retained_bytes - old->retained_bytes) / secs;
        t->growth_known = 1;
    }
    /* Absent when the server keeps WAL for the slot without a limit, or the retained WAL is not growing. */
    if (cur->found && cur->max_keep_bytes >= 0 && cur->safe_wal_size >= 0 && t->retained_growth > 0)
        t->forecast_s = (double)cur->safe_wal_size / t->retained_growth;
}

int wc__retention_level(const struct wc_config *cfg, const struct wc_slot_sample *s)
{
    if (!s->found || s->retained_bytes < 0)
        return WC_RETAIN_OK;
    if (strcmp(s->wal_status, "unreserved") == 0 || strcmp(s->wal_status, "lost") == 0)
        return WC_RETAIN_CRITICAL;
    if (s->max_keep_bytes > 0) {
        double pct = 100.0 * (double)s->retained_bytes / (double)s->max_keep_bytes;
        return pct >= cfg->retention_critical_percent ? WC_RETAIN_CRITICAL
               : pct >= cfg->retention_warn_percent   ? WC_RETAIN_WARN
                                                      : WC_RETAIN_OK;
    }
    if (s->max_keep_bytes < 0)
        return (size_t)s->retained_bytes >= cfg->retention_critical_bytes ? WC_RETAIN_CRITICAL
               : (size_t)s->retained_bytes >= cfg->retention_warn_bytes   ? WC_RETAIN_WARN
                                                                          : WC_RETAIN_OK;
    return WC_RETAIN_OK;
}

static void retention_text(const struct wc_config *cfg, const struct wc_slot_sample *s, char *buf,
                           size_t size)
{
    char a[32], b[32];

    wc__fmt_size(s->retained_bytes, a, sizeof(a));
    if (s->max_keep_bytes > 0)
        snprintf(
            buf, size,
            "replication slot \"%s\" retains %s of WAL (%lld bytes), %.0f%% of max_slot_wal_keep_size (%s): "
            "the server invalidates the slot at 100%%; find out why walcast does not confirm (walcast "
            "status, the log) or raise max_slot_wal_keep_size",
            cfg->slot, a, (long long)s->retained_bytes,
            100.0 * (double)s->retained_bytes / (double)s->max_keep_bytes,
            wc__fmt_size(s->max_keep_bytes, b, sizeof(b)));
    else
        snprintf(
            buf, size,
            "replication slot \"%s\" retains %s of WAL (%lld bytes) and the server has no "
            "max_slot_wal_keep_size: the WAL grows until the disk is full; find out why walcast does not "
            "confirm (walcast status, the log)",
            cfg->slot, a, (long long)s->retained_bytes);
}

static void forecast_text(const struct wc_config *cfg, const struct wc_slot_sample *s,
                          const struct wc_slot_trend *t, char *buf, size_t size)
{
    char a[32], b[32], c[32];

    snprintf(buf, size,
             "replication slot \"%s\" will be invalidated in about %s at the current rate: its retained WAL "
             "grows %s/s and safe_wal_size is %s (%lld bytes)",
             cfg->slot, wc__fmt_duration(t->forecast_s, a, sizeof(a)),
             wc__fmt_size((int64_t)t->retained_growth, b, sizeof(b)),
             wc__fmt_size(s->safe_wal_size, c, sizeof(c)), (long long)s->safe_wal_size);
}

static int forecast_warns(const struct wc_config *cfg, const struct wc_slot_trend *t)
{
    return cfg->forecast_warn_seconds > 0 && t->forecast_s >= 0 && t->forecast_s < cfg->forecast_warn_seconds;
}

void wc__retention_warnings(const struct wc_config *cfg, const struct wc_slot_sample *s,
                            const struct wc_slot_trend *t, json_t *arr)
{
    char buf[600];

    if (!s->found) {
        snprintf(buf, sizeof(buf),
                 "replication slot \"%s\" does not exist: create it with \"walcast slot create\"", cfg->slot);
        json_array_append_new(arr, json_string(buf));
        return;
    }
    if (strcmp(s->wal_status, "lost") == 0) {
        snprintf(buf, sizeof(buf),
                 "replication slot \"%s\" is lost: the server removed WAL it needed; drop and recreate it "
                 "(walcast slot drop, walcast slot create) and rebuild the projections",
                 cfg->slot);
        json_array_append_new(arr, json_string(buf));
        return;
    }
    if (strcmp(s->wal_status, "unreserved") == 0) {
        snprintf(
            buf, sizeof(buf),
            "replication slot \"%s\" has wal_status \"unreserved\": the next checkpoint removes WAL it needs "
            "unless walcast confirms first",
            cfg->slot);
        json_array_append_new(arr, json_string(buf));
    }
    if (wc__retention_level(cfg, s) != WC_RETAIN_OK) {
        retention_text(cfg, s, buf, sizeof(buf));
        json_array_append_new(arr, json_string(buf));
    }
    if (t && forecast_warns(cfg, t)) {
        forecast_text(cfg, s, t, buf, sizeof(buf));
        json_array_append_new(arr, json_string(buf));
    }
}

/* ---- the poller ---- */

/* Log a condition when it starts, at most once a minute while it holds, and once when it clears. */
static void announce(int64_t now, int level, int *last_level, int64_t *logged, const char *text,
                     const char *cleared)
{
    if (level > 0) {
        if (level != *last_level || *logged < 0 || now - *logged >= REPEAT_MS) {
            wc_warning("%s", text);
            *logged = now;
        }
    } else if (*last_level > 0) {
        wc_info("%s", cleared);
        *logged = -1;
    }
    *last_level = level;
}

static void poll_slot(struct wc_metrics *m, int64_t now)
{
    const struct wc_config *cfg = m->cfg;
    struct wc_slot_sample cur;
    struct wc_slot_trend t;
    struct wc_err err = {0};
    char text[600], cleared[256];

    if (m->src && PQstatus(m->src) != CONNECTION_OK) {
        PQfinish(m->src);
        m->src = NULL;
    }
    if (m->src == NULL)
        m->src = wc_pg_connect(cfg->source_dsn, NULL, &err);
    if (m->src == NULL || wc__slot_sample(m->src, cfg->slot, &cur, &err) < 0) {
        /* The engine reports an unreachable source itself; this is only why the figures are old. */
        wc_debug("metrics: %s", err.msg);
        pthread_mutex_lock(&m->lock);
        snprintf(m->slot_error, sizeof(m->slot_error), "%s", err.msg);
        pthread_mutex_unlock(&m->lock);
        if (m->src && PQstatus(m->src) != CONNECTION_OK) {
            PQfinish(m->src);
            m->src = NULL;
        }
        return;
    }
    pthread_mutex_lock(&m->lock);
    if (m->nring == (int)(sizeof(m->ring) / sizeof(m->ring[0]))) {
        memmove(m->ring, m->ring + 1, sizeof(m->ring) - sizeof(m->ring[0]));
        m->nring--;
    }
    m->ring[m->nring++] = cur;
    wc__slot_trend(m->nring > 1 ? &m->ring[0] : NULL, &cur, &t);
    m->slot = cur;
    m->trend = t;
    m->slot_ok = 1;
    m->slot_error[0] = '\0';
    m->slot_polled_us = wc_wall_us();

    /* Stalled: the server's WAL is past the confirmed position, which has not moved for a while. The
     * while covers the heartbeat and the status interval that move it on an idle outbox. */
    int64_t confirmed = LOAD(m->confirmed);
    if (confirmed != m->confirmed_seen || m->confirmed_moved_ms == 0) {
        m->confirmed_seen = confirmed;
        m->confirmed_moved_ms = now;
    }
    int64_t window = 3 * (int64_t)cfg->slot_poll_interval_ms;
    int64_t idle = 2 * ((int64_t)cfg->heartbeat_interval_ms + cfg->status_interval_ms);
    if (idle > window)
        window = idle;
    m->stalled =
        LOAD(m->streaming) && (int64_t)cur.current_lsn > confirmed && now - m->confirmed_moved_ms > window;
    pthread_mutex_unlock(&m->lock);

    if (!cur.found)
        return; /* the engine stops with the recovery steps */
    retention_text(cfg, &cur, text, sizeof(text));
    snprintf(cleared, sizeof(cleared),
             "replication slot \"%s\": retained WAL is back under the warning threshold", cfg->slot);
    announce(now, wc__retention_level(cfg, &cur), &m->retain_level, &m->retain_logged_ms, text, cleared);
    if (forecast_warns(cfg, &t))
        forecast_text(cfg, &cur, &t, text, sizeof(text));
    snprintf(cleared, sizeof(cleared),
             "replication slot \"%s\": no invalidation forecast within %d s any more", cfg->slot,
             cfg->forecast_warn_seconds);
    announce(now, forecast_warns(cfg, &t), &m->forecast_warn, &m->forecast_logged_ms, text, cleared);
}

/* Each sink's dead letters, read from its store. */
static void poll_sinks(struct wc_metrics *m)
{
    for (int i = 0; i < m->nsink; i++) {
        struct wc_metrics_sink *ms = &m->sinks[i];
        struct wc_peek pk;
        if (ms->sink->conf == NULL)
            continue;
        wc__peek(m->cfg, ms->sink->conf, &ms->peek, &pk);
        if (!pk.ok)
            wc_debug("metrics: %s", pk.error);
        pthread_mutex_lock(&m->lock);
        ms->dead_letters = pk.ok ? pk.dead_letters : -1;
        pthread_mutex_unlock(&m->lock);
    }
}

/* The progress lines need the server's WAL position: the last slot reading when it is recent enough,
 * else a query of it alone. */
static void progress_tick(struct wc_metrics *m, int64_t now)
{
    wc_lsn server = 0;
    struct wc_err err = {0};

    pthread_mutex_lock(&m->lock);
    if (m->slot_ok && now - m->slot.at_ms < m->cfg->progress_interval_ms / 2)
        server = m->slot.current_lsn;
    pthread_mutex_unlock(&m->lock);
    if (server == 0 && __atomic_load_n(&m->streaming, __ATOMIC_RELAXED)) {
        if (m->src == NULL)
            m->src = wc_pg_connect(m->cfg->source_dsn, NULL, &err);
        PGresult *r = m->src ? PQexec(m->src, "SELECT pg_current_wal_lsn()") : NULL;
        if (r && PQresultStatus(r) == PGRES_TUPLES_OK)
            wc_lsn_parse(PQgetvalue(r, 0, 0), &server);
        PQclear(r);
        if (m->src && PQstatus(m->src) != CONNECTION_OK) {
            PQfinish(m->src);
            m->src = NULL;
        }
    }
    wc__metrics_progress(m, now, server);
}

/* Events applied per second by each sink, over the last ten seconds. */
static void sample_rates(struct wc_metrics *m, int64_t now)
{
    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < m->nsink; i++) {
        struct wc_metrics_sink *ms = &m->sinks[i];
        int n = (int)(sizeof(ms->rate_n) / sizeof(ms->rate_n[0]));
        uint64_t v = wc_tally_sum(ms->tally, WC_OUT_APPLIED) + wc_tally_sum(ms->tally, WC_OUT_DEAD_LETTERED) +
                     wc_tally_sum(ms->tally, WC_OUT_SKIPPED);
        int oldest = (ms->rate_i + 1) % n;
        int64_t received = LOAD(m->received);
        if (received > 0 && LOAD(ms->tally->cursor_lsn) >= received)
            __atomic_store_n(&ms->caught_up_us, wc_wall_us(), __ATOMIC_RELAXED);
        ms->rate_n[ms->rate_i] = v;
        ms->rate_at[ms->rate_i] = now;
        if (ms->rate_at[oldest] > 0 && now > ms->rate_at[oldest])
            ms->events_rate = (double)(v - ms->rate_n[oldest]) * 1000.0 / (double)(now - ms->rate_at[oldest]);
        else if (ms->rate_at[0] > 0 && now > ms->rate_at[0])
            ms->events_rate = (double)(v - ms->rate_n[0]) * 1000.0 / (double)(now - ms->rate_at[0]);
        ms->rate_i = (ms->rate_i + 1) % n;
    }
    pthread_mutex_unlock(&m->lock);
}

static void *poller_main(void *arg)
{
    struct wc_metrics *m = arg;
    int64_t next_poll = 0, next_rate = 0, next_progress = 0;

    while (!__atomic_load_n(&m->poller_stop, __ATOMIC_ACQUIRE)) {
        int64_t now = wc_now_ms();
        if (now >= next_rate) {
            sample_rates(m, now);
            next_rate = now + 1000;
        }
        pthread_mutex_lock(&m->lock);
        int asked = m->poll_now;
        m->poll_now = 0;
        pthread_mutex_unlock(&m->lock);
        if (now >= next_poll || asked) {
            poll_slot(m, now);
            poll_sinks(m);
            wc__poll_rebuilds(m);
            next_poll = wc_now_ms() + m->cfg->slot_poll_interval_ms;
        }
        if (now >= next_progress) {
            progress_tick(m, wc_now_ms());
            next_progress = wc_now_ms() + m->cfg->progress_interval_ms;
        }
        int64_t until = next_poll < next_rate ? next_poll : next_rate;
        if (next_progress < until)
            until = next_progress;
        int64_t wait = until - wc_now_ms();
        if (wait <= 0)
            continue;
        struct timespec ts = wc_realtime_after_ms(wait);
        pthread_mutex_lock(&m->lock);
        if (!__atomic_load_n(&m->poller_stop, __ATOMIC_ACQUIRE) && !m->poll_now)
            pthread_cond_timedwait(&m->wake, &m->lock, &ts);
        pthread_mutex_unlock(&m->lock);
    }
    if (m->src)
        PQfinish(m->src);
    m->src = NULL;
    for (int i = 0; i < m->nsink; i++)
        wc__peek_close(&m->sinks[i].peek);
    return NULL;
}

int wc__poller_start(struct wc_metrics *m, struct wc_err *err)
{
    if (pthread_create(&m->poller, NULL, poller_main, m) != 0) {
        wc_err_set(err, WC_ERR_INTERNAL, "could not start the metrics thread");
        return -1;
    }
    m->poller_started = 1;
    return 0;
}

void wc__poller_stop(struct wc_metrics *m)
{
    if (!m->poller_started)
        return;
    pthread_mutex_lock(&m->lock);
    __atomic_store_n(&m->poller_stop, 1, __ATOMIC_RELEASE);
    pthread_cond_signal(&m->wake);
    pthread_mutex_unlock(&m->lock);
    /* A query to a server that hangs holds the thread until its timeout: do not hold up the exit for it. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 3;
    if (pthread_timedjoin_np(m->poller, NULL, &ts) != 0) {
        wc_debug("metrics: the poller is still waiting for a server; leaving it behind");
        m->poller_leaked = 1;
        return;
    }
    m->poller_started = 0;
}
