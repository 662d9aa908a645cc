/*
 * metrics.c - the running engine's figures: set up and torn down around `walcast run`, the engine's
 * hooks (a few relaxed atomic stores per loop pass), and the progress lines while a backlog drains (the
 * poller thread writes them: it knows the server's WAL position, the engine's thread does not).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "metrics.h"
#include "walcast/clock.h"
#include "walcast/log.h"

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define ADD(x, v) __atomic_fetch_add(&(x), (v), __ATOMIC_RELAXED)

#define PROGRESS_MS 5000 /* a progress line this often while behind */

struct wc_metrics *wc__metrics;
int64_t wc__metrics_loop_ms;

int wc_metrics_start(const struct wc_config *cfg, struct wc_sink **sinks, int nsink, struct wc_err *err)
{
    struct wc_metrics *m = calloc(1, sizeof(*m));
    struct timeval tv;

    if (m == NULL) {
        wc_err_set(err, WC_ERR_INTERNAL, "out of memory");
        return -1;
    }
    gettimeofday(&tv, NULL);
    m->cfg = cfg;
    m->pid = getpid();
    m->start_us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
    m->lag_ms = -1;
    m->nsink = nsink;
    m->sinks = calloc((size_t)(nsink > 0 ? nsink : 1), sizeof(*m->sinks));
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->wake, NULL);
    m->retain_logged_ms = m->forecast_logged_ms = -1;
    /* Every type a projection names gets its row before any event comes (the others when they come). */
    for (int i = 0; i < cfg->nsink; i++)
        for (int r = 0; r < cfg->sinks[i].nrule; r++)
            wc_tally_type(cfg->sinks[i].rules[r].event_type);
    for (int i = 0; i < nsink; i++) {
        m->sinks[i].sink = sinks[i];
        m->sinks[i].tally = wc_tally_new();
        m->sinks[i].dead_letters = -1;
        sinks[i]->tally = m->sinks[i].tally;
    }
    wc__metrics = m;
    if (cfg->metrics_listen && cfg->metrics_listen[0] && wc__http_start(m, cfg->metrics_listen, err) < 0) {
        wc_metrics_stop();
        return -1;
    }
    if (wc__poller_start(m, err) < 0) {
        wc_metrics_stop();
        return -1;
    }
    return 0;
}

void wc_metrics_stop(void)
{
    struct wc_metrics *m = wc__metrics;

    if (m == NULL)
        return;
    wc__waits_detach(); /* wc__metrics = NULL, once no sink's thread is announcing a commit */
    wc__http_stop(m);
    wc__poller_stop(m);
    if (m->poller_leaked)
        return;
    for (int i = 0; i < m->nsink; i++) {
        if (m->sinks[i].sink)
            m->sinks[i].sink->tally = NULL;
        wc_tally_free(m->sinks[i].tally);
    }
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->wake);
    free(m->sinks);
    free(m);
}

/* ---- progress while a backlog drains ---- */

static int64_t wall_us(void)
{
    return wc_wall_us();
}

/*
 * Called by the poller every engine.progress_interval_ms (5 s) with the server's current WAL position: is
 * the engine behind (WAL still to come, and either events received in the interval while the newest event
 * committed is older than the interval, or a heartbeat that took longer than that to come through)? Then
 * one line with how far behind, how fast and when it will have caught up; one more when it has. An idle
 * engine receives no events and its heartbeats come back at once: it is never "behind", however old its
 * last event.
 */
void wc__metrics_progress(struct wc_metrics *m, int64_t now, wc_lsn server)
{
    char sz[32], eta[32];
    int64_t pos = LOAD(m->received), session = LOAD(m->sessions);
    uint64_t events = LOAD(m->events);

    if (!LOAD(m->streaming) || pos == 0 || server == 0)
        return;
    if (m->prog_at_ms == 0 || session != m->prog_session) {
        /* The first reading of a session: the next one has something to compare with. */
        m->prog_at_ms = now;
        m->prog_session = session;
        m->prog_pos = pos;
        m->prog_server = (int64_t)server;
        m->prog_events = events;
        return;
    }
    double secs = (double)(now - m->prog_at_ms) / 1000.0;
    if (secs <= 0)
        return;
    int64_t behind = (int64_t)server > pos ? (int64_t)server - pos : 0;
    int64_t newest = 0;
    for (int i = 0; i < m->nsink; i++) {
        int64_t t = LOAD(m->sinks[i].tally->newest_commit_us);
        if (t > newest)
            newest = t;
    }
    double age = newest > 0 ? (double)(wall_us() - newest) / 1e6 : 0;
    double limit = m->cfg->progress_interval_ms / 1000.0, lag = (double)LOAD(m->lag_ms) / 1000.0;
    int is_behind = behind > 0 && ((events > m->prog_events && age > limit) || lag > limit);
    double rate = (double)(events - m->prog_events) / secs;
    if (is_behind) {
        /* How fast the distance shrinks: what was consumed minus what the server wrote meanwhile. */
        double consumed = (double)(pos - m->prog_pos) / secs;
        double written = (double)((int64_t)server - m->prog_server) / secs;
        if (consumed - written > 0)
            wc__fmt_duration((double)behind / (consumed - written), eta, sizeof(eta));
        else
            snprintf(eta, sizeof(eta), "unknown (falling behind)");
        wc_info("catching up: %s of WAL behind (%lld bytes), %.0f events/s, the projections %.0f s behind, "
                "ETA %s",
                wc__fmt_size(behind, sz, sizeof(sz)), (long long)behind, rate, age, eta);
        m->prog_behind = 1;
    } else if (m->prog_behind) {
        wc_info("caught up: %lld bytes of WAL behind, %.0f events/s", (long long)behind, rate);
        m->prog_behind = 0;
    }
    m->prog_at_ms = now;
    m->prog_pos = pos;
    m->prog_server = (int64_t)server;
    m->prog_events = events;
}

void wc__metrics_loop(int64_t now_ms, wc_lsn pos, const struct wc_stream *stream,
                      const struct wc_engine_stats *stats)
{
    struct wc_metrics *m = wc__metrics;

    if (m == NULL)
        return;
    wc_lsn wal_end = stream ? wc_stream_wal_end(stream) : 0;
    STORE(m->loop_ms, now_ms);
    STORE(m->received, (int64_t)pos);
    if (wal_end)
        STORE(m->wal_end, (int64_t)wal_end);
    STORE(m->confirmed, (int64_t)stats->confirmed);
    STORE(m->lag_ms, stats->lag_ms);
    STORE(m->events, stats->events);
    STORE(m->txns, stats->transactions);
}

void wc_metrics_streaming(struct wc_sink **sinks, int nsink, int on)
{
    struct wc_metrics *m = wc__metrics;

    for (int i = 0; i < nsink; i++) {
        __atomic_store_n(&sinks[i]->connected, on, __ATOMIC_RELEASE);
        if (on)
            wc_tally_flush(sinks[i]->tally, sinks[i]->cursor.lsn);
        else
            wc_tally_reset(sinks[i]->tally);
    }
    if (m == NULL)
        return;
    STORE(m->streaming, on);
    if (on) {
        STORE(m->standby, 0);
        ADD(m->sessions, 1);
        /* Read the slot now: it has just become active, and /readyz and /status should say so. */
        pthread_mutex_lock(&m->lock);
        m->poll_now = 1;
        pthread_cond_signal(&m->wake);
        pthread_mutex_unlock(&m->lock);
    }
}

void wc_metrics_standby(void)
{
    if (wc__metrics)
        STORE(wc__metrics->standby, 1);
}

void wc_metrics_commit_failed(struct wc_sink *k)
{
    __atomic_store_n(&k->connected, 0, __ATOMIC_RELEASE);
    wc_tally_drop_inflight(k->tally);
}

void wc_metrics_reconnect(const struct wc_err *err)
{
    struct wc_metrics *m = wc__metrics;
    char name[80];

    if (m == NULL)
        return;
    /* Sinks name themselves in their messages ("sink \"NAME\": ..."); anything else is the source. */
    for (int i = 0; i < m->nsink; i++) {
        snprintf(name, sizeof(name), "sink \"%s\"", m->sinks[i].sink->name);
        if (strstr(err->msg, name) != NULL) {
            ADD(m->sinks[i].reconnects, 1);
            return;
        }
    }
    ADD(m->source_reconnects, 1);
}
