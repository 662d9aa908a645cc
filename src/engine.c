/*
 * engine.c - the loop: stream, decode, route each event to the sinks, batch, commit, confirm; restart the
 * stream where a sink that was away needs it, reconnect it when it fails; sessions.
 *
 * A session opens the sinks (rebuild.c) and streams from the lowest cursor among them. Within it, the
 * stream and every sink fail and come back on their own: the loop never waits for a server (sink work
 * runs on threads, committer.c), so it keeps answering keepalives and sending status updates whatever a
 * sink does. Only a sink that came back without its data (rebuild) or a fault that cannot be retried
 * ends a session; a new one starts with backoff, unless the fault is one someone must fix and walcast
 * has not streamed yet (a wrong password at start: exit 2).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_int.h"
#include "metrics.h"
#include "walcast/clock.h"
#include "walcast/log.h"
#include "walcast/slot.h"

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

/* Hand one event to every sink in the stream that does not have it yet. */
static int route_event(struct session *s, struct wc_event *ev, struct wc_err *err)
{
    int known = wc__event_known(s, ev);

    s->stats->events++;
    for (int i = 0; i < s->nsink; i++) {
        struct sink_rt *r = &s->rt[i];
        if (r->state != SINK_UP || wc_pos_covered(r->floor, ev->pos))
            continue;
        if (wc__route_one(s, r->k, ev, known, err) < 0) {
            /* A connection lost (a cluster node gone): that sink goes down, the others go on. */
            if (err->code != WC_ERR_IO)
                return -1;
            wc__sink_fail(s, r, err);
        }
    }
    if (s->pending++ == 0)
        s->batch_start_ms = wc_now_ms();
    s->pending_bytes += ev->size;
    return 0;
}

/*
 * Nothing queued, and a sink with no commit in flight: it shows all it was given, so what it shows is
 * current up to lsn, a position before which the stream has delivered every transaction (the end of the
 * last one, the quiet WAL a keepalive reported, or the commit record of the transaction that just began:
 * it commits after every one before it). GET /wait's waiters up to there are answered at once, without
 * waiting for an idle commit or for the next transaction to be applied (another sink may still be
 * committing: each is answered for itself).
 */
static void visible_through(struct session *s, wc_lsn lsn)
{
    if (s->pending > 0 || !wc_metrics_wanted(lsn))
        return; /* (nobody waits for it: a waiter that comes later is answered by the next commit) */
    for (int i = 0; i < s->nsink; i++) {
        struct sink_rt *r = &s->rt[i];
        if (r->state == SINK_UP && r->job == NULL && lsn > r->visible_lsn) {
            r->visible_lsn = lsn;
            wc_metrics_applied(r->k, lsn);
        }
    }
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
        visible_through(s, d.event.pos.lsn);
        break;
    case WC_DECODED_EVENT:
        if (route_event(s, &d.event, err) < 0)
            return -1;
        s->pos = d.event.pos;
        if (s->pending >= s->cfg->batch_max_events || s->pending_bytes >= s->cfg->batch_max_bytes)
            return wc__commit_round(s, s->pos, err);
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

/* Leave the stream where it is: the sinks in it have everything up to here queued or applied, and skip
 * it when the stream brings it again. */
static void stream_close(struct session *s)
{
    for (int i = 0; i < s->nsink; i++)
        if (s->rt[i].state == SINK_UP && wc_pos_cmp(s->pos, s->rt[i].floor) > 0)
            s->rt[i].floor = s->pos;
    wc_stream_close(s->stream);
    s->stream = NULL;
    wc_decoder_free(s->dec);
    s->dec = NULL;
}

/*
 * Start streaming at the lowest floor of the sinks that take events (those behind join them), or at
 * *start when given. The status updates report the lowest durable cursor of every sink, down or not.
 */
static int stream_open(struct session *s, const wc_lsn *given, struct wc_err *err)
{
    wc_lsn start = given ? *given : 0;
    int any = 0;

    if (given == NULL) {
        for (int i = 0; i < s->nsink; i++) {
            struct sink_rt *r = &s->rt[i];
            if (r->state != SINK_UP && r->state != SINK_BEHIND)
                continue;
            if (!any || r->floor.lsn < start)
                start = r->floor.lsn;
            any = 1;
        }
        if (!any)
            start = s->pos.lsn; /* no sink takes events now: keep the connection, skip everything */
    }
    s->dec = wc_decoder_new(s->cfg->outbox_schema, s->cfg->outbox_table, (const char *const *)s->cfg->columns,
                            s->cfg->msg_prefix);
    struct wc_stream_opts so = {
        .dsn = s->cfg->source_dsn,
        .slot = s->cfg->slot,
        .start = start,
        .confirmed = wc__safe_confirm_lsn(s),
        .schema = s->cfg->outbox_schema,
        .table = s->cfg->outbox_table,
        .msg_prefix = s->cfg->msg_prefix,
        .status_interval_ms = s->cfg->status_interval_ms,
    };
    s->stream = wc_stream_open(&so, err);
    if (s->stream == NULL) {
        wc_decoder_free(s->dec);
        s->dec = NULL;
        return -1;
    }
    wc_stream_wake_on(s->stream, s->wake[0]);
    if (s->stream_retry.attempt > 0 || s->session_retry.attempt > 0) {
        int attempts = s->stream_retry.attempt + s->session_retry.attempt;
        wc_backoff_ok(&s->stream_retry, wc_now_ms());
        wc_backoff_ok(&s->session_retry, wc_now_ms());
        wc_info("reconnected after %d attempts: streaming slot \"%s\" from " WC_LSN_FMT, attempts,
                s->cfg->slot, WC_LSN_ARGS(start));
    } else if (!s->started) {
        wc_info("streaming slot \"%s\" from " WC_LSN_FMT " (walsender pid %d)", s->cfg->slot,
                WC_LSN_ARGS(start), wc_stream_backend_pid(s->stream));
    } else {
        wc_debug("streaming slot \"%s\" again from " WC_LSN_FMT, s->cfg->slot, WC_LSN_ARGS(start));
    }
    s->last_walsender = wc_stream_backend_pid(s->stream);
    s->own_walsender_waits = 0;
    s->in_txn = 0;
    s->pos = (struct wc_pos){start, -1};
    s->last_idle_commit_ms = wc_now_ms();
    for (int i = 0; i < s->nsink; i++)
        if (s->rt[i].state == SINK_BEHIND)
            s->rt[i].state = SINK_UP;
    s->restart = 0;
    return 0;
}

/* The stream failed once walcast was streaming: retry it with backoff (the sinks go on with what they
 * have), or -1 when the fault is not one to retry (the slot is gone, another process took it). */
static int stream_failed(struct session *s, struct wc_err *err)
{
    int64_t now = wc_now_ms();
    int delay;

    if (s->stream)
        stream_close(s);
    if (err->code == WC_ERR_SLOT_ACTIVE) {
        /* Our own walsender may take a moment to let go of the slot after we closed its connection (a
         * restart for a sink that is back) or lost it: try again shortly, without an outage. */
        struct wc_slot_status st;
        struct wc_err e2;
        int found = 0;
        if (wc_slot_status(s->cfg->source_dsn, s->cfg->slot, &st, &found, &e2) == 0 && found &&
            (!st.active || st.active_pid == s->last_walsender)) {
            err->code = WC_ERR_IO;
            if (s->own_walsender_waits++ < 40) {
                wc_debug("%s: our previous walsender, trying again", err->msg);
                s->stream_retry_at_ms = now + 50;
                return 0;
            }
        }
    }
    if (err->code != WC_ERR_IO && err->code != WC_ERR_CONFIG)
        return -1;
    if (wc_engine_stop)
        return 0;
    s->lease_again = 1;
    wc__report(&s->stream_retry, now, err, &delay);
    s->stats->reconnects++;
    wc_metrics_reconnect(err);
    if (s->opts->max_retries > 0 && s->stream_retry.attempt > s->opts->max_retries) {
        s->gave_up = 1;
        return -1;
    }
    s->stream_retry_at_ms = now + delay;
    return 0;
}

/* Commit what the sinks in the stream queued, wait (a little) for the commits in flight, confirm. */
static int finish(struct session *s, struct wc_err *err)
{
    int rc = 0;

    s->stopping = 1;
    if (s->pending > 0 ||
        (!s->in_txn && wc_pos_cmp(s->pos, (struct wc_pos){wc__safe_confirm_lsn(s), -1}) > 0))
        rc = wc__commit_round(s, s->pos, err);
    wc__drain(s, wc_engine_stop ? SHUTDOWN_GRACE_MS : -1);
    wc__confirm(s);
    if (s->stream && rc == 0)
        rc = wc_stream_feedback(s->stream, 1, err);
    return rc;
}

/* One session: returns 0 when stopped or at endpos, -1 with err. */
static int run_session(struct session *s, struct wc_err *err)
{
    wc_lsn start;
    int done = 0;

    if (wc__open_sinks(s, &start, err) < 0)
        return -1;
    if (stream_open(s, &start, err) < 0)
        return -1;
    s->started = 1;
    wc_metrics_streaming(s->sinks, s->nsink, 1);
    /* ... but a sink that is not open is not connected. */
    for (int i = 0; i < s->nsink; i++)
        __atomic_store_n(&s->sinks[i]->connected, s->rt[i].state == SINK_UP, __ATOMIC_RELEASE);
    s->pending = 0;
    s->pending_bytes = 0;

    while (!wc_engine_stop && !done) {
        if ((wc__jobs_returned(s) && wc__jobs_poll(s, err) < 0) ||
            (s->any_down && wc__sinks_tick(s, err) < 0))
            return -1;
        if (s->lost) {
            wc_err_set(err, WC_ERR_IO, "a sink came back without its data");
            return -1;
        }
        if (s->stream == NULL || s->restart) {
            /* Down: reconnect once its delay has passed. Behind: restart at once. */
            int64_t now = wc_now_ms();
            if (s->stream != NULL)
                stream_close(s);
            else if (now < s->stream_retry_at_ms) {
                wc__wait_wake(s,
                              (int)(s->stream_retry_at_ms - now < 100 ? s->stream_retry_at_ms - now : 100));
                continue;
            }
            /* After a failure the source may have restarted, and the slot's lease (a session on it) with it:
             * take it again first; another engine holding it now ends this session. */
            if (s->lease_again) {
                if (wc__lease_again(s, err) < 0) {
                    if (err->code == WC_ERR_SLOT_ACTIVE || stream_failed(s, err) < 0)
                        return -1;
                    continue;
                }
                s->lease_again = 0;
            }
            if (stream_open(s, NULL, err) < 0 && stream_failed(s, err) < 0)
                return -1;
            continue;
        }
        if (s->any_due && wc__stall(s)) {
            /* A full batch waits behind a commit in flight: wait for it, keeping the status updates going. */
            if (wc_stream_feedback(s->stream, 0, err) < 0 && stream_failed(s, err) < 0)
                return -1;
            wc__wait_wake(s, 50);
            continue;
        }

        const char *msg;
        size_t len;
        wc_lsn wal_start;
        /* With events queued, take only what has already arrived: when the stream is drained the batch
         * commits at once (latency at low load), and while it keeps coming the batch grows up to its
         * count, bytes or delay bound (throughput under load). A sink's job returning wakes the wait. */
        int r = wc_stream_next(s->stream, s->pending > 0 ? 0 : 100, &msg, &len, &wal_start, err);
        if (r < 0) {
            if (stream_failed(s, err) < 0)
                return -1;
            continue;
        }
        if (r > 0 && handle_message(s, msg, len, wal_start, &done, err) < 0)
            return -1;
        int64_t now = wc_now_ms();
        wc_metrics_loop(now, s->pos.lsn, s->stream, s->stats);
        if (s->pending > 0 && (done || r == 0 || now - s->batch_start_ms >= s->cfg->batch_max_delay_ms) &&
            wc__commit_round(s, s->pos, err) < 0)
            return -1;
        wc__heartbeat(s);
        if (s->in_txn || s->pending > 0 || wc__busy(s))
            continue;
        /* Nothing in flight: let the slot advance over transactions that had no outbox rows, and over
         * quiet WAL the keepalives report, so that an idle outbox does not pin WAL. Sink cursors move
         * first (invariant 4), once per status interval. */
        wc_lsn idle = wc_stream_idle_lsn(s->stream);
        if (idle > s->pos.lsn)
            s->pos = (struct wc_pos){idle, -1};
        if (s->opts->endpos && s->pos.lsn >= s->opts->endpos)
            done = 1;
        if (s->pos.index == -1)
            visible_through(s, s->pos.lsn);
        /* ... and at once when a GET /wait waits for a position the stream is past (read your writes). */
        if (wc_pos_cmp(s->pos, (struct wc_pos){wc__safe_confirm_lsn(s), -1}) > 0 &&
            (done || now - s->last_idle_commit_ms >= s->cfg->status_interval_ms ||
             wc_metrics_wanted(s->pos.lsn))) {
            if (wc__commit_round(s, s->pos, err) < 0)
                return -1;
            s->last_idle_commit_ms = now;
        }
    }
    return finish(s, err);
}

/* End a session: wait for (or, when stopping, abandon) the sinks' jobs, close the stream and the sinks. */
static void close_session(struct session *s)
{
    wc__drain(s, wc_engine_stop ? SHUTDOWN_GRACE_MS : -1);
    wc__heartbeat_close(s);
    if (s->stream)
        stream_close(s);
    wc__close_all(s);
    wc__lease_end(s);
    wc_metrics_streaming(s->sinks, s->nsink, 0);
    s->lost = 0;
    s->restart = 0;
    s->stopping = 0;
    s->failed = 0;
}

int wc_engine_run(const struct wc_config *cfg, struct wc_sink **sinks, int nsink,
                  const struct wc_engine_opts *opts, struct wc_engine_stats *stats, struct wc_err *err)
{
    struct wc_engine_stats local;
    struct session s = {.cfg = cfg, .opts = opts, .sinks = sinks, .nsink = nsink};
    int rc = -1;

    memset(&local, 0, sizeof(local));
    s.stats = stats ? stats : &local;
    s.stats->lag_ms = -1;
    s.dead_letter_sink = nsink > 0 ? sinks[0] : NULL;
    for (int i = 0; i < nsink && cfg->dead_letter_sink; i++)
        if (strcmp(sinks[i]->name, cfg->dead_letter_sink) == 0)
            s.dead_letter_sink = sinks[i];
    s.rt = calloc((size_t)(nsink > 0 ? nsink : 1), sizeof(*s.rt));
    if (s.rt == NULL || pipe2(s.wake, O_NONBLOCK | O_CLOEXEC) < 0) {
        wc_err_set(err, WC_ERR_INTERNAL, "could not set up the engine: out of memory or file descriptors");
        free(s.rt);
        return -1;
    }
    for (int i = 0; i < nsink; i++) {
        struct sink_rt *r = &s.rt[i];
        r->k = sinks[i];
        r->state = SINK_DOWN;
        r->floor = WC_POS_NONE;
        r->inline_commit = !(sinks[i]->ops->detach && sinks[i]->ops->commit_detached);
        r->retry = (struct wc_backoff){.base_ms = opts->retry_base_ms, .max_ms = opts->retry_max_ms};
    }
    s.session_retry = (struct wc_backoff){.base_ms = opts->retry_base_ms, .max_ms = opts->retry_max_ms};
    s.stream_retry = s.session_retry;
    s.hb_retry = s.session_retry;
    srand((unsigned)getpid() ^ (unsigned)wc_now_ms());

    for (;;) {
        int r = run_session(&s, err);
        s.failed = r < 0;
        close_session(&s);
        if (r == 0 || wc_engine_stop) {
            if (r < 0 && err->code == WC_ERR_IO)
                /* Asked to stop while a server was away: nothing is lost (the cursors did not move past
                 * what is durable); the next start applies the rest. */
                wc_warning("%s; stopping: the next start applies what is left", err->msg);
            rc = r == 0 || err->code == WC_ERR_IO ? 0 : -1;
            break;
        }
        if (err->code == WC_ERR_SLOT_ACTIVE && opts->standby) {
            /* Another engine streams this slot: wait for the server to release it, then take over. */
            if (s.session_retry.attempt++ == 0)
                wc_info("standby: %s; waiting to take over", err->msg);
            wc_metrics_standby();
            wc_sleep_ms(500, &wc_engine_stop);
            continue;
        }
        /* A fault someone must fix stops walcast before it has streamed (exit 2: the configuration is
         * wrong); once it has, it is retried like a transient one, and said loudly once a minute. */
        if (s.gave_up || (err->code != WC_ERR_IO && !(err->code == WC_ERR_CONFIG && s.started)))
            break;
        int delay;
        wc__report(&s.session_retry, wc_now_ms(), err, &delay);
        if (opts->max_retries > 0 && s.session_retry.attempt > opts->max_retries)
            break;
        s.stats->reconnects++;
        wc_metrics_reconnect(err);
        wc_sleep_ms(delay, &wc_engine_stop);
    }
    wc__workers_end(&s);
    if (!s.abandoned) {
        close(s.wake[0]);
        close(s.wake[1]);
    }
    free(s.rt);
    return rc;
}
