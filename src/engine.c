/* engine.c - the loop: stream, decode, route to the sinks, batch, commit with cursors, confirm. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "walcast/clock.h"
#include "walcast/decode.h"
#include "walcast/engine.h"
#include "walcast/log.h"
#include "walcast/pgconn.h"
#include "walcast/slot.h"
#include "walcast/snapshot.h"
#include "walcast/stream.h"

volatile sig_atomic_t wc_engine_stop;

#define MAX_JOBS 16

/* One sink's commit, run on its own thread. */
struct commit_job {
    struct wc_sink *sink;
    struct wc_pos pos;
    int rc;
    struct wc_err err;
    int done; /* set (atomically) when the commit has returned */
};

/* State of one streaming session (one replication connection). */
struct session {
    const struct wc_config *cfg;
    const struct wc_engine_opts *opts;
    struct wc_sink **sinks;
    int nsink;
    struct wc_sink *dead_letter_sink;
    struct wc_stream *stream;
    struct wc_decoder *dec;
    struct wc_engine_stats *stats;

    int in_txn;
    struct wc_pos pos; /* where the stream is: the last event handled, or (end, -1) between transactions */
    int pending;       /* events queued in the sinks since the last commit */
    size_t pending_bytes;
    int64_t batch_start_ms;
    int64_t last_idle_commit_ms;

    int outage;         /* a transient failure is being retried: logged once, cleared when streaming again */
    int attempt;        /* reconnect attempts in this outage */
    int last_walsender; /* PID of the walsender of our last session */
    PGconn *hb_conn;    /* plain connection to the source for heartbeats */
    int64_t last_hb_ms;
    int64_t hb_pending_since_us; /* a heartbeat was sent and has not come back (0 = none) */

    /* A commit in flight: its jobs run on threads while the next batch is decoded and queued. */
    int inflight;
    int njob;
    struct commit_job jobs[MAX_JOBS];
    pthread_t threads[MAX_JOBS];
    int started[MAX_JOBS];
};

/*
 * Heartbeat: a transactional logical message with walcast's prefix. It gives wal2json a transaction to
 * send on a server whose outbox is idle (so the slot advances even where empty transactions are not
 * sent), and its round trip through the stream is the end-to-end lag. Failures are logged, not fatal:
 * the stream itself decides whether the source is down.
 */
static void heartbeat(struct session *s)
{
    char content[64], prefix_buf[128];
    struct wc_err err;

    if (s->opts->heartbeat_ms <= 0 || wc_now_ms() - s->last_hb_ms < s->opts->heartbeat_ms)
        return;
    s->last_hb_ms = wc_now_ms();
    if (s->hb_conn == NULL) {
        s->hb_conn = wc_pg_connect(s->cfg->source_dsn, NULL, &err);
        if (s->hb_conn == NULL) {
            wc_debug("heartbeat: %s", err.msg);
            return;
        }
    }
    snprintf(content, sizeof(content), "{\"heartbeat_us\":%lld}", (long long)wc_wall_us());
    snprintf(prefix_buf, sizeof(prefix_buf), "%s", s->cfg->msg_prefix ? s->cfg->msg_prefix : "walcast");
    const char *params[] = {prefix_buf, content};
    PGresult *r = PQexecParams(s->hb_conn, "SELECT pg_logical_emit_message(true, $1, $2)", 2, NULL, params,
                               NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        wc_debug("heartbeat failed: %s", PQerrorMessage(s->hb_conn));
        PQfinish(s->hb_conn);
        s->hb_conn = NULL;
    }
    PQclear(r);
}

/* A heartbeat came back through the stream: its age is the end-to-end lag. */
static void heartbeat_seen(struct session *s, const char *content)
{
    const char *p = content ? strstr(content, "\"heartbeat_us\":") : NULL;
    if (p == NULL)
        return;
    long long sent = atoll(p + strlen("\"heartbeat_us\":"));
    s->stats->lag_ms = (wc_wall_us() - sent) / 1000;
    wc_debug("heartbeat round trip %lld ms", (long long)s->stats->lag_ms);
}

/* The flush LSN that is safe to confirm: every sink has durably applied everything before it. */
static wc_lsn safe_confirm_lsn(struct session *s)
{
    wc_lsn lsn = 0;
    for (int i = 0; i < s->nsink; i++) {
        /* A cursor inside a transaction confirms only up to that transaction's commit record, which the
         * server then sends again: its covered events are skipped. */
        wc_lsn l = s->sinks[i]->cursor.lsn;
        if (i == 0 || l < lsn)
            lsn = l;
    }
    return lsn;
}

static void *commit_job_run(void *arg)
{
    struct commit_job *j = arg;
    const struct wc_sink_ops *ops = j->sink->ops;

    j->rc = ops->commit_detached ? ops->commit_detached(j->sink, j->pos, &j->err)
                                 : ops->commit(j->sink, j->pos, &j->err);
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Nonzero when every job of the commit in flight has returned: joining it will not block. */
static int commit_done(const struct session *s)
{
    for (int i = 0; i < s->njob; i++)
        if (!__atomic_load_n(&s->jobs[i].done, __ATOMIC_ACQUIRE))
            return 0;
    return 1;
}

/* Confirm what every sink has made durable. */
static void confirm(struct session *s)
{
    wc_lsn lsn = safe_confirm_lsn(s);
    if (lsn > s->stats->confirmed)
        s->stats->confirmed = lsn;
    wc_stream_confirm(s->stream, lsn);
}

/*
 * Wait for the commit in flight, if any: move the cursors of the sinks that committed, then confirm.
 * Returns -1 with err when a sink failed (an I/O failure only when no sink failed otherwise).
 */
static int commit_wait(struct session *s, struct wc_err *err)
{
    int rc = 0;

    if (!s->inflight)
        return 0;
    for (int i = 0; i < s->njob; i++)
        if (s->started[i])
            pthread_join(s->threads[i], NULL);
    s->inflight = 0;
    for (int i = 0; i < s->njob; i++) {
        struct commit_job *j = &s->jobs[i];
        if (j->rc < 0) {
            if (rc == 0 || j->err.code != WC_ERR_IO)
                *err = j->err;
            rc = -1;
            continue;
        }
        j->sink->cursor = j->pos;
        j->sink->has_cursor = 1;
    }
    if (rc < 0)
        return -1;
    s->stats->commits++;
    confirm(s);
    return 0;
}

/*
 * Commit every sink that is behind pos. A sink that can commit in two halves (detach, then
 * commit_detached) commits on a thread of its own; with overlap, this thread goes on decoding and
 * queueing the next batch meanwhile: the sink servers execute one batch while walcast prepares the
 * next, and several sinks commit side by side. The next commit_all() or commit_wait() waits for it; the
 * cursors move, and the slot is confirmed, only then. Without overlap (the stream is drained: nothing to
 * decode meanwhile) the first sink commits on this thread and the call returns when all have. Sinks
 * without the two halves, and any beyond MAX_JOBS, commit here and now, before the others start (if one
 * of them fails, the batches already set aside are dropped uncommitted: the session ends and starts again
 * from the durable cursors).
 */
static int commit_all(struct session *s, struct wc_pos pos, int overlap, struct wc_err *err)
{
    int n = 0;

    if (commit_wait(s, err) < 0)
        return -1;
    for (int i = 0; i < s->nsink; i++) {
        struct wc_sink *k = s->sinks[i];
        if (wc_pos_cmp(k->cursor, pos) >= 0)
            continue;
        if (k->ops->detach && k->ops->commit_detached && n < MAX_JOBS) {
            k->ops->detach(k);
            s->jobs[n++] = (struct commit_job){.sink = k, .pos = pos};
            continue;
        }
        if (k->ops->commit(k, pos, err) < 0)
            return -1; /* sinks name themselves in their messages */
        k->cursor = pos;
        k->has_cursor = 1;
    }
    s->pending = 0;
    s->pending_bytes = 0;
    if (n == 0) {
        s->stats->commits++;
        confirm(s);
        return 0;
    }
    s->njob = n;
    s->inflight = 1;
    for (int i = overlap ? 0 : 1; i < n; i++) {
        s->started[i] = pthread_create(&s->threads[i], NULL, commit_job_run, &s->jobs[i]) == 0;
        if (!s->started[i])
            commit_job_run(&s->jobs[i]); /* no thread: commit here */
    }
    if (overlap)
        return 0;
    s->started[0] = 0;
    commit_job_run(&s->jobs[0]);
    return commit_wait(s, err);
}

/* Leave a session with a commit in flight: wait for its threads, whatever they did (the next session
 * starts from the durable cursors). */
static void commit_abandon(struct session *s)
{
    struct wc_err ignored;

    if (s->inflight && commit_wait(s, &ignored) < 0)
        wc_debug("abandoned commit: %s", ignored.msg);
}

/* Hand one event to one sink: its projections, or the unknown-event policy. */
static int route_one(struct session *s, struct wc_sink *k, struct wc_event *ev, int known, struct wc_err *err)
{
    if (known)
        return k->ops->apply(k, ev, err);
    if (k != s->dead_letter_sink)
        return 0;
    char msg[256];
    snprintf(msg, sizeof(msg), "no projection handles event type \"%.200s\"",
             ev->col[WC_COL_EVENT_TYPE].text);
    return wc_sink_handle_error(k, ev, s->cfg->on_unknown_event, msg, err);
}

static int event_known(struct session *s, const struct wc_event *ev)
{
    return s->opts->unknown_ok || wc_config_knows_event(s->cfg, ev->col[WC_COL_EVENT_TYPE].text);
}

/* Hand one event to every sink that has not applied it yet. */
static int route_event(struct session *s, struct wc_event *ev, struct wc_err *err)
{
    int known = event_known(s, ev);

    s->stats->events++;
    for (int i = 0; i < s->nsink; i++) {
        struct wc_sink *k = s->sinks[i];
        if (k->has_cursor && wc_pos_covered(k->cursor, ev->pos))
            continue;
        if (route_one(s, k, ev, known, err) < 0)
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
            return commit_all(s, s->pos, 1, err);
        break;
    case WC_DECODED_MESSAGE:
        heartbeat_seen(s, d.content);
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

/*
 * Rebuild one sink from the outbox table (invariant 4): wipe it with its configured rebuild action,
 * then apply every outbox row visible in a snapshot exported by a temporary slot, and set its cursor to
 * that slot's consistent point. Transactions committed before that point are exactly the rows in the
 * snapshot; the stream brings everything after it. A crash midway leaves a cursor at 0/0, which the
 * next start finds behind the slot again: the rebuild starts over from the wipe.
 */
static int rebuild_sink(struct session *s, struct wc_sink *k, struct wc_err *err)
{
    struct wc_outbox ob = {s->cfg->outbox_schema, s->cfg->outbox_table, (const char *const *)s->cfg->columns};
    struct wc_snapshot *snap;
    struct wc_event ev;
    wc_lsn point = 0;
    int64_t n = 0, pending = 0;
    int rc = -1, r;

    if (k->ops->reset == NULL) {
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\" cannot be rebuilt", k->name);
        return -1;
    }
    snap = wc_snapshot_open(s->cfg->source_dsn, &ob, &point, err);
    if (snap == NULL) {
        wc_err_prefix(err, "could not rebuild sink \"%s\"", k->name);
        return -1;
    }
    /* Wipe only once the snapshot exists. From here until the final cursor, the sink has no cursor or
     * one at 0/0: a start after a crash finds it and rebuilds again. */
    if (k->ops->reset(k, err) < 0)
        goto done;
    wc_warning("sink \"%s\": rebuilding its projections from the outbox table up to " WC_LSN_FMT, k->name,
               WC_LSN_ARGS(point));
    while ((r = wc_snapshot_next(snap, &ev, err)) > 0) {
        n++;
        if (ev.col[WC_COL_EVENT_TYPE].kind == WC_VAL_NULL)
            continue;
        int known = event_known(s, &ev);
        int rr = route_one(s, k, &ev, known, err);
        json_decref(ev.payload_json);
        if (rr < 0)
            goto done;
        if (++pending >= s->cfg->batch_max_events) {
            /* Not a stream position: a crash here makes the next start rebuild again. */
            if (k->ops->commit(k, (struct wc_pos){0, n}, err) < 0)
                goto done;
            pending = 0;
        }
    }
    if (r < 0) {
        wc_err_prefix(err, "could not rebuild sink \"%s\"", k->name);
        goto done;
    }
    if (k->ops->commit(k, (struct wc_pos){point, -1}, err) < 0)
        goto done;
    k->cursor = (struct wc_pos){point, -1};
    k->has_cursor = 1;
    wc_warning("sink \"%s\": rebuilt from %lld outbox rows", k->name, (long long)n);
    rc = 0;
done:
    wc_snapshot_close(snap); /* drops the temporary slot */
    return rc;
}

/*
 * Open every sink and read its cursor; returns the LSN to stream from. A sink whose cursor is behind
 * the slot's confirmed position, or that has none while others do, lost writes the slot will not send
 * again (Redis restarted without persistence, a restored backup): it is rebuilt, or the engine stops.
 */
static int open_sinks(struct session *s, wc_lsn *start, struct wc_err *err)
{
    struct wc_slot_status st;
    int found = 0, any_cursor = 0;
    char p[40], c[WC_LSN_STRLEN];

    *start = 0;
    /* The slot first: its confirmed position only ever trails the sinks' cursors, so read before them it
     * cannot make a cursor look lost; and a slot another engine streams must not have its sinks touched
     * (a standby waits here). */
    if (wc_slot_status(s->cfg->source_dsn, s->cfg->slot, &st, &found, err) < 0) {
        if (err->code == WC_ERR_SLOT && strstr(err->msg, "permission denied"))
            return -1;
        err->code = WC_ERR_IO;
        return -1;
    }
    if (!found) {
        wc_err_set(err, WC_ERR_SLOT,
                   "replication slot \"%s\" does not exist: create it with \"walcast slot create\"",
                   s->cfg->slot);
        return -1;
    }
    if (st.active && st.active_pid != 0) {
        /* Our own previous walsender may take a moment to exit after a reconnect: that is transient. */
        wc_err_set(err, st.active_pid == s->last_walsender ? WC_ERR_IO : WC_ERR_SLOT_ACTIVE,
                   "replication slot \"%s\" is active for PID %d", s->cfg->slot, st.active_pid);
        return -1;
    }
    for (int i = 0; i < s->nsink; i++) {
        struct wc_sink *k = s->sinks[i];
        if (k->ops->open(k, err) < 0 || k->ops->read_cursor(k, &k->cursor, &found, err) < 0)
            return -1;
        k->has_cursor = found;
        if (!found)
            k->cursor = WC_POS_NONE;
        any_cursor |= found;
        wc_debug("sink \"%s\": cursor %s", k->name, found ? wc_pos_format(k->cursor, p) : "none");
    }
    for (int i = 0; i < s->nsink; i++) {
        struct wc_sink *k = s->sinks[i];
        int rebuildable = k->conf != NULL && k->conf->rebuild != NULL;
        /* Lost: a cursor behind the slot, or none while other sinks have one. A sink that can be rebuilt
         * and has no cursor is built from the outbox either way: on a first start that is its initial
         * snapshot, after a loss (Redis restarted empty) it is the only way to know it is whole. */
        int lost = k->has_cursor ? k->cursor.lsn < st.confirmed_flush_lsn : any_cursor;
        wc_lsn_format(st.confirmed_flush_lsn, c);
        if (lost && k->conf == NULL) {
            /* tail: someone else consumed the slot since; say so and go on from the slot. */
            wc_warning(
                "cursor %s is behind replication slot \"%s\": events in between were consumed elsewhere",
                wc_pos_format(k->cursor, p), s->cfg->slot);
        } else if (lost && !rebuildable) {
            wc_err_set(err, WC_ERR_DATA,
                       "sink \"%s\" has lost data: its cursor (%s) is behind replication slot \"%s\" (%s); "
                       "set sinks.%s.rebuild to rebuild it from the outbox table, or restore it",
                       k->name, k->has_cursor ? wc_pos_format(k->cursor, p) : "none", s->cfg->slot, c,
                       k->name);
            return -1;
        } else if (lost || (!k->has_cursor && rebuildable)) {
            if (lost)
                wc_warning(
                    "sink \"%s\" has lost data: its cursor (%s) is behind replication slot \"%s\" (%s)",
                    k->name, k->has_cursor ? wc_pos_format(k->cursor, p) : "none", s->cfg->slot, c);
            else
                wc_info("sink \"%s\" has no cursor: building it from the outbox table", k->name);
            if (rebuild_sink(s, k, err) < 0)
                return -1;
        }
    }
    for (int i = 0; i < s->nsink; i++)
        if (i == 0 || s->sinks[i]->cursor.lsn < *start)
            *start = s->sinks[i]->cursor.lsn;
    return 0;
}

static void close_session(struct session *s)
{
    commit_abandon(s);
    if (s->hb_conn) {
        PQfinish(s->hb_conn);
        s->hb_conn = NULL;
    }
    wc_stream_close(s->stream);
    s->stream = NULL;
    wc_decoder_free(s->dec);
    s->dec = NULL;
    for (int i = 0; i < s->nsink; i++)
        if (s->sinks[i]->ops->close)
            s->sinks[i]->ops->close(s->sinks[i]);
}

/* One session: returns 0 when stopped or at endpos, -1 with err. */
static int run_session(struct session *s, struct wc_err *err)
{
    wc_lsn start;
    int done = 0;

    if (open_sinks(s, &start, err) < 0)
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
        if (s->pending > 0 || s->inflight)
            timeout = 0;
        int r = wc_stream_next(s->stream, timeout, &msg, &len, &wal_start, err);
        if (r < 0)
            return -1;
        if (r > 0 && handle_message(s, msg, len, wal_start, &done, err) < 0)
            return -1;
        int64_t now = wc_now_ms();
        if (s->pending > 0 && (done || r == 0 || now - s->batch_start_ms >= s->cfg->batch_max_delay_ms) &&
            commit_all(s, s->pos, r > 0 && !done, err) < 0)
            return -1;
        /* Join a commit in flight as soon as it has returned (cursors and the confirmed position move
         * on even while only other tables' transactions arrive), or when there is nothing else to do. */
        if (s->inflight && ((r == 0 && s->pending == 0) || commit_done(s)) && commit_wait(s, err) < 0)
            return -1;
        heartbeat(s);
        if (s->in_txn || s->pending > 0 || s->inflight)
            continue;
        /* Nothing in flight: let the slot advance over transactions that had no outbox rows, and over
         * quiet WAL the keepalives report, so that an idle outbox does not pin WAL. Sink cursors move
         * first (invariant 4), once per status interval. */
        wc_lsn idle = wc_stream_idle_lsn(s->stream);
        if (idle > s->pos.lsn)
            s->pos = (struct wc_pos){idle, -1};
        if (s->opts->endpos && s->pos.lsn >= s->opts->endpos)
            done = 1;
        if (wc_pos_cmp(s->pos, (struct wc_pos){safe_confirm_lsn(s), -1}) > 0 &&
            (done || now - s->last_idle_commit_ms >= s->cfg->status_interval_ms)) {
            if (commit_all(s, s->pos, 0, err) < 0)
                return -1;
            s->last_idle_commit_ms = now;
        }
    }
    if (commit_wait(s, err) < 0)
        return -1;
    if (s->pending > 0 || (!s->in_txn && wc_pos_cmp(s->pos, (struct wc_pos){safe_confirm_lsn(s), -1}) > 0)) {
        if (commit_all(s, s->pos, 0, err) < 0)
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

int wc_engine_replay_file(const struct wc_config *cfg, struct wc_sink *sink, const char *path,
                          struct wc_err *err)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    struct wc_decoder *dec;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = -1;
    struct wc_pos pos = WC_POS_NONE;

    if (f == NULL) {
        wc_err_set(err, WC_ERR_IO, "could not open file \"%s\": %s", path, strerror(errno));
        return -1;
    }
    dec = wc_decoder_new(cfg->outbox_schema, cfg->outbox_table, (const char *const *)cfg->columns,
                         cfg->msg_prefix);
    if (sink->ops->open(sink, err) < 0)
        goto done;
    int pending = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        struct wc_decoded d;
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;
        if (wc_decode_message(dec, line, (size_t)n, 0, &d, err) < 0) {
            wc_err_prefix(err, "%s:%ld", path, lineno);
            goto done;
        }
        if (d.kind == WC_DECODED_EVENT) {
            if (sink->ops->apply(sink, &d.event, err) < 0)
                goto done;
            pos = d.event.pos;
            if (++pending >= cfg->batch_max_events) {
                if (sink->ops->commit(sink, pos, err) < 0)
                    goto done;
                pending = 0;
            }
        }
    }
    if (sink->ops->commit(sink, pos, err) < 0)
        goto done;
    rc = 0;
done:
    free(line);
    wc_decoder_free(dec);
    if (sink->ops->close)
        sink->ops->close(sink);
    if (f != stdin)
        fclose(f);
    return rc;
}
