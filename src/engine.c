/* engine.c - the loop: stream, decode, route each event to the sinks, batch, commit, confirm; reconnect. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_int.h"
#include "metrics.h"
#include "walcast/clock.h"
#include "walcast/log.h"

volatile sig_atomic_t wc_engine_stop;

/* Hand one event to one sink: its projections, or the unknown-event policy. */
int wc__route_one(struct session *s, struct wc_sink *k, struct wc_event *ev, int known, struct wc_err *err)
{
    if (ev->poison)
        return wc__route_poison(s, k, ev, err);
    if (known)
        return k->ops->apply(k, ev, err);
    if (k != s->dead_letter_sink)
        return 0;
    char msg[256];
    snprintf(msg, sizeof(msg), "no projection handles event type \"%.200s\"",
             ev->col[WC_COL_EVENT_TYPE].text);
    return wc_sink_handle_error(k, NULL, ev, s->cfg->on_unknown_event, msg, err);
}

int wc__event_known(const struct session *s, const struct wc_event *ev)
{
    return s->opts->unknown_ok || wc_config_knows_event(s->cfg, ev->col[WC_COL_EVENT_TYPE].text);
}

/* Hand one event to every sink that has not applied it yet. */
static int route_event(struct session *s, struct wc_event *ev, struct wc_err *err)
{
    int known = wc__event_known(s, ev);

    s->stats->events++;
    for (int i = 0; i < s->nsink; i++) {
        struct wc_sink *k = s->sinks[i];
        if (k->has_cursor && wc_pos_covered(k->cursor, ev->pos))
            continue;
        if (wc__route_one(s, k, ev, known, err) < 0)
            return -1;
    }
    if (s->pending++ == 0)
        s->batch_start_ms = wc_now_ms();
    s->pending_bytes += ev->size;
    return 0;
}

static int handle_message(struct session *s, const char *msg, size_t len, wc_lsn wal_start, int *done,
                          struct wc_err *err)
{
    struct wc_decoded d;

    if (wc_decode_message(s->dec, msg, len, wal_start, &d, err) < 0)
        return -1;
    switch (d.kind) {
    case WC_DECODED_BEGIN:
        s->in_txn = 1;
        s->stats->transactions++;
        break;
    case WC_DECODED_EVENT:
        if (route_event(s, &d.event, err) < 0)
            return -1;
        s->pos = d.event.pos;
        if (s->pending >= s->cfg->batch_max_events || s->pending_bytes >= s->cfg->batch_max_bytes)
            return wc__commit_all(s, s->pos, 1, err);
        break;
    case WC_DECODED_MESSAGE:
        wc__heartbeat_seen(s, d.content);
        break;
    case WC_DECODED_COMMIT:
        s->in_txn = 0;
        s->pos = (struct wc_pos){d.event.end_lsn, -1};
        if (s->opts->endpos && d.event.end_lsn >= s->opts->endpos)
            *done = 1;
        break;
    default:
        break;
    }
    return 0;
}

static void close_session(struct session *s)
{
    wc__commit_abandon(s);
    wc__heartbeat_close(s);
    wc_stream_close(s->stream);
    s->stream = NULL;
    wc_decoder_free(s->dec);
    s->dec = NULL;
    for (int i = 0; i < s->nsink; i++)
        if (s->sinks[i]->ops->close)
            s->sinks[i]->ops->close(s->sinks[i]);
    wc__lease_end(s);
    wc_metrics_streaming(s->sinks, s->nsink, 0);
}

/* One session: returns 0 when stopped or at endpos, -1 with err. */
static int run_session(struct session *s, struct wc_err *err)
{
    wc_lsn start;
    int done = 0;

    if (wc__open_sinks(s, &start, err) < 0)
        return -1;
    s->dec = wc_decoder_new(s->cfg->outbox_schema, s->cfg->outbox_table, (const char *const *)s->cfg->columns,
                            s->cfg->msg_prefix);
    struct wc_stream_opts so = {
        .dsn = s->cfg->source_dsn,
        .slot = s->cfg->slot,
        .start = start,
        .schema = s->cfg->outbox_schema,
        .table = s->cfg->outbox_table,
        .msg_prefix = s->cfg->msg_prefix,
        .status_interval_ms = s->cfg->status_interval_ms,
    };
    s->stream = wc_stream_open(&so, err);
    if (s->stream == NULL)
        return -1;
    if (s->outage)
        wc_info("reconnected after %d attempts: streaming slot \"%s\" from " WC_LSN_FMT, s->attempt,
                s->cfg->slot, WC_LSN_ARGS(start));
    else
        wc_info("streaming slot \"%s\" from " WC_LSN_FMT " (walsender pid %d)", s->cfg->slot,
                WC_LSN_ARGS(start), wc_stream_backend_pid(s->stream));
    wc_metrics_streaming(s->sinks, s->nsink, 1);
    s->outage = 0;
    s->attempt = 0;
    s->last_walsender = wc_stream_backend_pid(s->stream);
    s->in_txn = 0;
    s->pending = 0;
    s->pending_bytes = 0;
    s->pos = (struct wc_pos){start, -1};
    s->last_idle_commit_ms = wc_now_ms();

    while (!wc_engine_stop && !done) {
        const char *msg;
        size_t len;
        wc_lsn wal_start;
        int timeout = 100;

        /* With events queued, take only what has already arrived: when the stream is drained the batch
         * commits at once (latency at low load), and while it keeps coming the batch grows up to its
         * count, bytes or delay bound (throughput under load). With a commit in flight, a drained stream
         * is the moment to wait for it. */
        if (s->pending > 0 || s->com.inflight)
            timeout = 0;
        int r = wc_stream_next(s->stream, timeout, &msg, &len, &wal_start, err);
        if (r < 0)
            return -1;
        if (r > 0 && handle_message(s, msg, len, wal_start, &done, err) < 0)
            return -1;
        int64_t now = wc_now_ms();
        wc_metrics_loop(now, s->pos.lsn, s->stream, s->stats);
        if (s->pending > 0 && (done || r == 0 || now - s->batch_start_ms >= s->cfg->batch_max_delay_ms) &&
            wc__commit_all(s, s->pos, r > 0 && !done, err) < 0)
            return -1;
        /* Join a commit in flight as soon as it has returned (cursors and the confirmed position move
         * on even while only other tables' transactions arrive), or when there is nothing else to do. */
        if (s->com.inflight && ((r == 0 && s->pending == 0) || wc__commit_done(s)) &&
            wc__commit_wait(s, err) < 0)
            return -1;
        wc__heartbeat(s);
        if (s->in_txn || s->pending > 0 || s->com.inflight)
            continue;
        /* Nothing in flight: let the slot advance over transactions that had no outbox rows, and over
         * quiet WAL the keepalives report, so that an idle outbox does not pin WAL. Sink cursors move
         * first (invariant 4), once per status interval. */
        wc_lsn idle = wc_stream_idle_lsn(s->stream);
        if (idle > s->pos.lsn)
            s->pos = (struct wc_pos){idle, -1};
        if (s->opts->endpos && s->pos.lsn >= s->opts->endpos)
            done = 1;
        if (wc_pos_cmp(s->pos, (struct wc_pos){wc__safe_confirm_lsn(s), -1}) > 0 &&
            (done || now - s->last_idle_commit_ms >= s->cfg->status_interval_ms)) {
            if (wc__commit_all(s, s->pos, 0, err) < 0)
                return -1;
            s->last_idle_commit_ms = now;
        }
    }
    if (wc__commit_wait(s, err) < 0)
        return -1;
    if (s->pending > 0 ||
        (!s->in_txn && wc_pos_cmp(s->pos, (struct wc_pos){wc__safe_confirm_lsn(s), -1}) > 0)) {
        if (wc__commit_all(s, s->pos, 0, err) < 0)
            return -1;
    }
    if (wc_stream_feedback(s->stream, 1, err) < 0)
        return -1;
    return 0;
}

int wc_engine_run(const struct wc_config *cfg, struct wc_sink **sinks, int nsink,
                  const struct wc_engine_opts *opts, struct wc_engine_stats *stats, struct wc_err *err)
{
    struct wc_engine_stats local;
    struct session s = {.cfg = cfg, .opts = opts, .sinks = sinks, .nsink = nsink};
    int base = opts->retry_base_ms > 0 ? opts->retry_base_ms : 100;
    int ceiling = opts->retry_max_ms > 0 ? opts->retry_max_ms : 10000;
    memset(&local, 0, sizeof(local));
    s.stats = stats ? stats : &local;
    s.stats->lag_ms = -1;
    s.dead_letter_sink = nsink > 0 ? sinks[0] : NULL;
    for (int i = 0; i < nsink && cfg->dead_letter_sink; i++)
        if (strcmp(sinks[i]->name, cfg->dead_letter_sink) == 0)
            s.dead_letter_sink = sinks[i];
    srand((unsigned)getpid() ^ (unsigned)wc_now_ms());

    for (;;) {
        int rc = run_session(&s, err);
        close_session(&s);
        if (rc == 0)
            return 0;
        if (err->code == WC_ERR_SLOT_ACTIVE && opts->standby && !wc_engine_stop) {
            /* Another engine streams this slot: wait for the server to release it, then take over. */
            if (!s.outage)
                wc_info("standby: %s; waiting to take over", err->msg);
            wc_metrics_standby();
            s.outage = 1;
            wc_sleep_ms(500, &wc_engine_stop);
            if (wc_engine_stop)
                return 0;
            continue;
        }
        if (err->code == WC_ERR_IO && wc_engine_stop) {
            /* Asked to stop while a server was away: nothing is lost (the cursors did not move past what
             * is durable); the next start applies the rest. */
            wc_warning("%s; stopping without committing the last batch: the next start applies it", err->msg);
            return 0;
        }
        if (err->code != WC_ERR_IO)
            return -1;
        /* Transient: log once per outage, back off exponentially with jitter, resume from the cursors. */
        if (!s.outage)
            wc_warning("%s; reconnecting", err->msg);
        else
            wc_debug("%s", err->msg);
        s.outage = 1;
        s.attempt++;
        if (opts->max_retries > 0 && s.attempt > opts->max_retries)
            return -1;
        s.stats->reconnects++;
        wc_metrics_reconnect(err);
        int delay = base;
        for (int i = 1; i < s.attempt && delay < ceiling; i++)
            delay *= 2;
        if (delay > ceiling)
            delay = ceiling;
        delay = delay / 2 + rand() % (delay / 2 + 1);
        wc_debug("reconnect attempt %d in %d ms", s.attempt, delay);
        wc_sleep_ms(delay, &wc_engine_stop);
        if (wc_engine_stop)
            return 0;
    }
}
