/*
 * reshadow.c - `walcast rebuild` and `walcast verify` (shadow.h): fill a shadow from the outbox while the
 * live projection keeps streaming, catch it up with the live sink, and swap it in (or, for verify, compare
 * it with the live one) at exactly the live sink's position. PostgreSQL projections as below; Redis ones
 * (one server) the same way but for the swap, which shadow_redis.c tells.
 *
 * 1. A permanent slot walcast_rb_<unit> is created with an exported snapshot; the outbox rows of that
 *    snapshot are replayed into the empty shadow in source.outbox.order_by order. Until the replay
 *    ends the shadow's cursor is (0/0, n): a rebuild killed here starts again from an empty shadow.
 * 2. Its cursor then is the slot's consistent point, and the shadow streams its own slot from there. It
 *    never applies an event the live sink has not committed yet: an event past the live cursor waits.
 *    Killed here, the next run resumes from the shadow's cursor (the slot kept everything after it).
 * 3. Caught up (an event waits for the live sink, or the stream is idle), the swap locks the live tables
 *    and then the live cursor row (wc_shadow_swap_begin): the live sink's next commit waits, its cursor
 *    L is frozen. The shadow applies what it still lacks up to exactly L, commits with cursor L, and the
 *    same transaction that holds the locks renames the shadow tables in. Killed before that commit, the
 *    live tables are untouched (the transaction rolls back with the connection).
 * A whole sink whose cursor is missing or behind the slot (it lost data; no live sink to wait for)
 * streams until idle and is swapped in with the shadow's position stored as its cursor.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shadow.h"
#include "walcast/clock.h"
#include "walcast/decode.h"
#include "walcast/engine.h"
#include "walcast/log.h"
#include "walcast/pgconn.h"
#include "walcast/sink.h"
#include "walcast/slot.h"
#include "walcast/snapshot.h"
#include "walcast/stream.h"

struct rb {
    const struct wc_config *cfg;
    const struct wc_rebuild_opts *o;
    struct wc_shadow sh;
    struct wc_sink_conf *conf;
    struct wc_sink *k;
    struct wc_stream *st;
    struct wc_decoder *dec;
    struct wc_pos cursor; /* the shadow's durable cursor */
    struct wc_pos last;   /* the last event queued (pending > 0) */
    struct wc_pos seen;   /* everything up to here was received */
    struct wc_pos live;   /* the live cursor, as last read */
    int pending;
    int lost; /* the live sink lost data: swap at the stream's head, not at the live cursor */
    struct wc_decoded held;
    int has_held;
    int64_t applied, progress_at, started;
    int tries; /* Redis: swaps tried */
};

void wc_rebuild_failpoint(const char *name)
{
    const char *f = getenv("WALCAST_REBUILD_FAILPOINT");
    if (f != NULL && strcmp(f, name) == 0) {
        wc_warning("rebuild: failpoint \"%s\": killing myself", name);
        raise(SIGKILL);
    }
}

/* Commit what is queued with cursor at (at least the last event queued). */
static int flush(struct rb *b, struct wc_pos at, struct wc_err *err)
{
    if (b->pending > 0 && wc_pos_cmp(at, b->last) < 0)
        at = b->last;
    if (b->pending == 0 && wc_pos_cmp(at, b->cursor) <= 0)
        return 0;
    if (b->k->ops->commit(b->k, at, err) < 0)
        return -1;
    b->cursor = at;
    b->pending = 0;
    if (b->st != NULL)
        wc_stream_confirm(b->st, at.lsn);
    return 0;
}

static int apply(struct rb *b, struct wc_event *ev, struct wc_err *err)
{
    if (wc_pos_covered(b->cursor, ev->pos) || ev->poison) /* poison rows are the live engine's to report */
        return 0;
    if (b->k->ops->apply(b->k, ev, err) < 0)
        return -1;
    b->last = ev->pos;
    b->applied++;
    if (++b->pending >= b->cfg->batch_max_events)
        return flush(b, b->last, err);
    return 0;
}

static void progress(struct rb *b, const char *what, int64_t total)
{
    int64_t now = wc_now_ms(), ms = now - b->started;
    if (now < b->progress_at)
        return;
    b->progress_at = now + (b->cfg->progress_interval_ms > 0 ? b->cfg->progress_interval_ms : 5000);
    double rate = ms > 0 ? (double)b->applied * 1000.0 / (double)ms : 0;
    if (total > b->applied && rate > 0)
        wc_info("rebuild \"%s\": %s: %" PRId64 " outbox rows (%.0f rows/s), about %" PRId64
                " to go (ETA %.0f s)",
                b->sh.unit, what, b->applied, rate, total - b->applied, (double)(total - b->applied) / rate);
    else
        wc_info("rebuild \"%s\": %s: %" PRId64 " outbox rows (%.0f rows/s)", b->sh.unit, what, b->applied,
                rate);
}

/* The outbox's size as the planner estimates it, for an ETA; 0 when unknown. */
static int64_t outbox_estimate(const struct wc_config *cfg)
{
    struct wc_err e = {0};
    char name[300];
    PGconn *c = wc_pg_connect(cfg->source_dsn, NULL, &e);
    int64_t n = 0;

    if (c == NULL)
        return 0;
    snprintf(name, sizeof(name), "%s.%s", cfg->outbox_schema, cfg->outbox_table);
    const char *params[1] = {name};
    PGresult *r =
        PQexecParams(c, "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass($1)", 1,
                     NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    wc_pg_close(c);
    return n;
}

/* The shadow sink of a PostgreSQL unit, opened only once its schema exists: its statements are prepared
 * on a search path that must find the shadow tables, never the live ones. */
static int open_pg_sink(struct rb *b, struct wc_err *err)
{
    b->conf = wc_sink_conf_subset(b->sh.live, b->sh.sink_name, b->sh.projections, b->sh.nprojection);
    if ((b->k = wc_sink_new(b->cfg, b->conf, err)) == NULL)
        return -1;
    b->k->search_path = b->sh.schema;
    return b->k->ops->open(b->k, err);
}

/* Step 1: a fresh shadow from the snapshot of a new slot. */
static int replay(struct rb *b, struct wc_err *err)
{
    struct wc_outbox ob = {b->cfg->outbox_schema, b->cfg->outbox_table, (const char *const *)b->cfg->columns,
                           b->cfg->outbox_order_by};
    struct wc_snapshot *snap;
    struct wc_event ev;
    wc_lsn point = 0;
    int64_t total = outbox_estimate(b->cfg);
    int r;

    if (wc_shadow_prepare(&b->sh, err) < 0 || (!b->sh.redis && open_pg_sink(b, err) < 0))
        return -1;
    snap = wc_snapshot_open_slot(b->cfg->source_dsn, &ob, b->sh.slot, &point, err);
    if (snap == NULL) {
        wc_err_prefix(err, "could not start the rebuild of \"%s\"", b->sh.unit);
        return -1;
    }
    wc_info("rebuild \"%s\": replaying the outbox up to " WC_LSN_FMT " into \"%s\"", b->sh.unit,
            WC_LSN_ARGS(point), b->sh.redis ? b->sh.prefix : b->sh.schema);
    b->cursor = (struct wc_pos){0, -1};
    while ((r = wc_snapshot_next(snap, &ev, err)) > 0) {
        /* Not a stream position: (0/0, n) until the replay is whole. */
        ev.pos = (struct wc_pos){0, b->applied};
        if (apply(b, &ev, err) < 0)
            break;
        progress(b, "replayed", total);
        if (b->applied == 1000)
            wc_rebuild_failpoint("replay");
        if (wc_engine_stop) {
            wc_err_set(err, WC_ERR_IO,
                       "rebuild \"%s\": stopped during the replay (the next run starts it again)",
                       b->sh.unit);
            r = -1;
            break;
        }
    }
    wc_snapshot_close(snap);
    if (r < 0)
        return -1;
    b->cursor = (struct wc_pos){0, -1}; /* the replay's positions were no stream positions */
    b->last = (struct wc_pos){point, -1};
    b->pending = b->pending > 0 ? b->pending : 0;
    if (b->k->ops->commit(b->k, (struct wc_pos){point, -1}, err) < 0)
        return -1;
    b->pending = 0;
    b->cursor = (struct wc_pos){point, -1};
    wc_info("rebuild \"%s\": replayed %" PRId64 " outbox rows; catching up with the stream", b->sh.unit,
            b->applied);
    return 0;
}

/* The next message: the held event first. 1 event (in b->held), 2 something else, 0 timeout, -1. */
static int next(struct rb *b, int timeout_ms, struct wc_err *err)
{
    const char *msg;
    size_t len;
    wc_lsn wal;

    if (b->has_held)
        return 1;
    int r = wc_stream_next(b->st, timeout_ms, &msg, &len, &wal, err);
    if (r <= 0) {
        wc_lsn idle = wc_stream_idle_lsn(b->st);
        if (r == 0 && idle && wc_pos_cmp((struct wc_pos){idle, -1}, b->seen) > 0)
            b->seen = (struct wc_pos){idle, -1};
        return r;
    }
    if (wc_decode_message(b->dec, msg, len, wal, &b->held, err) < 0)
        return -1;
    if (b->held.kind == WC_DECODED_EVENT) {
        b->seen = b->held.event.pos;
        b->has_held = 1;
        return 1;
    }
    if (b->held.kind == WC_DECODED_COMMIT)
        b->seen = (struct wc_pos){b->held.event.end_lsn, -1};
    return 2;
}

static int read_live(struct rb *b, struct wc_err *err)
{
    int found;
    if (wc_shadow_live_cursor(&b->sh, &b->live, &found, err) < 0)
        return -1;
    if (!found)
        b->live = WC_POS_NONE;
    return 0;
}

/* Apply everything up to at (lost: everything received), nothing after it. 1 there, 0 the stream did not
 * bring it by the deadline (try again later), -1 with err. */
static int reach(struct rb *b, struct wc_pos at, int64_t deadline, struct wc_err *err)
{
    for (;;) {
        if (b->has_held) {
            if (!b->lost && wc_pos_cmp(b->held.event.pos, at) > 0)
                return 1;
            b->has_held = 0;
            if (apply(b, &b->held.event, err) < 0)
                return -1;
            continue;
        }
        if (b->lost || wc_pos_cmp(b->seen, at) >= 0)
            return 1; /* lost: no live position to reach, everything received is applied */
        if (wc_now_ms() > deadline) {
            wc_info("rebuild \"%s\": the stream did not reach the live position in time; trying again later",
                    b->sh.unit);
            return 0;
        }
        if (next(b, 50, err) < 0)
            return -1;
    }
}

/*
 * Step 3 of a Redis projection. Nothing can hold the live sink back (its commits are MULTI/EXECs), so the
 * shadow reaches the live cursor as last read and commits there, and one script swaps the keys if the live
 * cursor is still that one (shadow_redis.c). If the live sink committed meanwhile, the next try goes on
 * from there: each try costs a few round trips against the live sink's commit interval.
 */
static int rswap(struct rb *b, struct wc_err *err)
{
    struct wc_pos at;
    int found, r;
    long long keys;
    char p[40];

    if (wc_rshadow_cursor(&b->sh, b->sh.live->name, &at, &found, err) < 0)
        return -1;
    if (!found) {
        wc_err_set(err, WC_ERR_CONFIG, "sink \"%s\": its cursor disappeared during the rebuild",
                   b->sh.live->name);
        return -1;
    }
    if (wc_pos_cmp(at, b->cursor) < 0)
        return 0; /* the live sink is behind the shadow: wait for it */
    if ((r = reach(b, at, wc_now_ms() + 3000, err)) <= 0)
        return r;
    if (flush(b, at, err) < 0)
        return -1;
    wc_rebuild_failpoint("swap");
    b->tries++;
    b->sh.at = at; /* a cluster swaps the slots whose live cursor is at or before it */
    if ((r = wc_rshadow_swap(&b->sh, &keys, err)) <= 0)
        return r;
    wc_info("rebuild \"%s\": swapped in at %s (%lld keys, at try %d; %" PRId64
            " outbox rows and events applied)",
            b->sh.unit, wc_pos_format(at, p), keys, b->tries, b->applied);
    return 1;
}

/*
 * Step 3. Returns 1 when swapped (or, for verify, compared: *drift set), 0 when not now (a lock not had in
 * time, the stream slow): go on streaming and try again later, -1 with err.
 */
static int swap(struct rb *b, long long *drift, struct wc_err *err)
{
    struct wc_pos at;
    int found, r;

    if (b->sh.redis && !b->o->verify)
        return rswap(b, err);
    if ((r = wc_shadow_swap_begin(&b->sh, b->o->verify, &at, &found, err)) <= 0)
        return r;
    if (b->lost) {
        if (found && wc_pos_cmp(at, b->live) != 0) {
            wc_err_set(
                err, WC_ERR_CONFIG,
                "sink \"%s\": its cursor moved during the rebuild: is an engine applying events to it?",
                b->sh.live->name);
            goto fail;
        }
    } else if (!found) {
        wc_err_set(err, WC_ERR_CONFIG, "sink \"%s\": its cursor disappeared during the rebuild",
                   b->sh.live->name);
        goto fail;
    }
    if (b->sh.redis) {
        /* Writes are paused, the shadow's too: it must have applied exactly what the live cursor covers
         * already (level with the live sink, nothing queued), else try again later. */
        int level = b->has_held ? wc_pos_cmp(b->held.event.pos, at) > 0 : wc_pos_cmp(b->seen, at) >= 0;
        if (!level || b->pending > 0 || wc_pos_cmp(b->cursor, at) > 0) {
            wc_shadow_swap_abort(&b->sh);
            return 0;
        }
        b->sh.at = at;
        r = wc_shadow_compare(&b->sh, 5, drift, err);
        wc_shadow_swap_abort(&b->sh);
        return r < 0 ? -1 : r == 2 ? 0 : 1; /* 2: a cluster's slots not level with its floor yet */
    }
    /* Everything up to the live cursor (or the stream's head), nothing after it. */
    if ((r = reach(b, at, wc_now_ms() + 3000, err)) < 0)
        goto fail;
    if (r == 0) {
        wc_shadow_swap_abort(&b->sh);
        return 0;
    }
    if (b->lost)
        at = b->seen; /* every event received was applied: its cursor may be what it received */
    if (wc_pos_cmp(at, b->cursor) < 0) {
        /* The live sink is behind the shadow (behind the snapshot, a sink that was down): swapping in now
         * would make the live engine apply again what the shadow has. Wait for it. */
        wc_shadow_swap_abort(&b->sh);
        return 0;
    }
    if (flush(b, at, err) < 0)
        goto fail;
    if (b->o->verify) {
        r = wc_shadow_compare(&b->sh, 5, drift, err);
        wc_shadow_swap_abort(&b->sh);
        return r < 0 ? -1 : 1;
    }
    char p[40];
    if (wc_shadow_swap_end(&b->sh, b->lost ? &at : NULL, err) < 0)
        return -1;
    wc_info("rebuild \"%s\": swapped in at %s (%" PRId64 " outbox rows and events applied)", b->sh.unit,
            wc_pos_format(at, p), b->applied);
    return 1;
fail:
    wc_shadow_swap_abort(&b->sh);
    return -1;
}

/* Step 2, and 3 when caught up. */
static int catch_up(struct rb *b, long long *drift, struct wc_err *err)
{
    int64_t retry_at = 0, streamed_since = wc_now_ms();
    struct wc_stream_opts so = {.dsn = b->cfg->source_dsn,
                                .slot = b->sh.slot,
                                .start = b->cursor.lsn,
                                .confirmed = b->cursor.lsn,
                                .schema = b->cfg->outbox_schema,
                                .table = b->cfg->outbox_table,
                                .msg_prefix = b->cfg->msg_prefix,
                                .status_interval_ms = b->cfg->status_interval_ms};

    b->seen = b->cursor;
    if ((b->st = wc_stream_open(&so, err)) == NULL)
        return -1;
    if (read_live(b, err) < 0)
        return -1;
    for (;;) {
        int caught_up = 0, r;
        if (wc_engine_stop) {
            if (flush(b, b->last, err) < 0)
                return -1;
            wc_err_set(err, WC_ERR_IO, "rebuild \"%s\": stopped (the next run resumes it)", b->sh.unit);
            return -1;
        }
        r = next(b, 100, err);
        if (r < 0)
            return -1;
        if (r == 1 && !b->lost && wc_pos_cmp(b->held.event.pos, b->live) > 0 && read_live(b, err) < 0)
            return -1;
        if (r == 1 && (b->lost || wc_pos_cmp(b->held.event.pos, b->live) <= 0)) {
            b->has_held = 0;
            if (apply(b, &b->held.event, err) < 0)
                return -1;
        } else if (r == 1 || r == 0) {
            /* Level with the live sink (its next event waits for it), or the stream is idle. */
            if (flush(b, b->pending ? b->last : b->cursor, err) < 0)
                return -1;
            caught_up = 1;
            wc_rebuild_failpoint("catchup");
        }
        /* A sink that lost data has no live position to wait for: under a steady load the stream may never
         * go idle, so after a while whatever was received is enough. */
        if (b->lost && wc_now_ms() - streamed_since > 2000)
            caught_up = 1;
        progress(b, "caught up with the stream", 0);
        if (caught_up && wc_now_ms() >= retry_at) {
            r = swap(b, drift, err);
            if (r != 0)
                return r < 0 ? -1 : 0;
            retry_at = wc_now_ms() + (b->sh.redis ? 20 : 200);
        } else if (caught_up && r == 1) {
            wc_sleep_ms(2, &wc_engine_stop);
        }
    }
}

int wc_rebuild_run(const struct wc_config *cfg, const struct wc_rebuild_opts *o, struct wc_err *err)
{
    struct rb b = {.cfg = cfg, .o = o};
    struct wc_slot_status st;
    struct wc_pos sc;
    long long drift = 0;
    int found = 0, exists = 0, slot_found = 0, rc = -1, live_found;
    const char *what = o->verify ? "verify" : "rebuild";

    b.started = wc_now_ms();
    b.progress_at = b.started + (cfg->progress_interval_ms > 0 ? cfg->progress_interval_ms : 5000);
    struct wc_config vcfg = *cfg;
    if (wc_shadow_open(&b.sh, cfg, o->projection, o->sink, o->verify, err) < 0)
        goto done;
    if (b.sh.redis) {
        /* Redis: the shadow sink's connection serves the whole rebuild or check; an event that fails is
         * skipped (the live sink dead-lettered it: it did not apply there either). */
        vcfg.on_error = WC_POLICY_SKIP;
        b.conf = wc_sink_conf_subset(b.sh.live, b.sh.sink_name, b.sh.projections, b.sh.nprojection);
        b.conf->rebuild = NULL; /* a shadow is never wiped by the sink itself (FLUSHDB) */
        if ((b.k = wc_sink_new(&vcfg, b.conf, err)) == NULL)
            goto done;
        b.k->key_prefix = b.sh.prefix;
        b.k->key_prefix_tagged = b.sh.cluster; /* each shadow key in the slot of the key it stands for */
        if (b.k->ops->open(b.k, err) < 0)
            goto done;
        b.sh.rk = b.k;
    }
    if (wc_slot_status(cfg->source_dsn, b.sh.slot, &st, &slot_found, err) < 0)
        goto done;
    if (o->discard) {
        if ((slot_found && wc_slot_drop(cfg->source_dsn, b.sh.slot, 1, err) < 0) ||
            wc_shadow_drop(&b.sh, err) < 0)
            goto done;
        wc_info("rebuild \"%s\": discarded (shadow %s \"%s\" and slot \"%s\" dropped)", b.sh.unit,
                b.sh.redis ? "keys" : "schema", b.sh.redis ? b.sh.prefix : b.sh.schema, b.sh.slot);
        rc = 0;
        goto done;
    }
    /* Has the live sink lost data? Then only the whole sink can be rebuilt, at the stream's head. */
    struct wc_slot_status main;
    int main_found = 0;
    /* The slot first: the engine confirms only what every sink has made durable, so a cursor read after
     * the slot's confirmed position is at or past it unless the sink lost data. Read the other way round,
     * a live engine could commit and confirm in between, and its sink look as if it lost data. */
    if (wc_slot_status(cfg->source_dsn, cfg->slot, &main, &main_found, err) < 0 ||
        wc_shadow_live_cursor(&b.sh, &b.live, &live_found, err) < 0)
        goto done;
    b.lost = !live_found || (main_found && b.live.lsn < main.confirmed_flush_lsn);
    if (!live_found)
        b.live = WC_POS_NONE;
    if (b.lost && b.sh.redis) {
        wc_err_set(err, WC_ERR_DATA,
                   "sink \"%s\" has lost data (its cursor is %s replication slot \"%s\"): a Redis sink that "
                   "lost data is rebuilt by \"walcast run\" at start, with sinks.%s.rebuild set "
                   "(docs/operations.md)",
                   b.sh.live->name, live_found ? "behind" : "missing, or no engine has streamed", cfg->slot,
                   b.sh.live->name);
        goto done;
    }
    if (b.lost && (!b.sh.whole || o->verify)) {
        wc_err_set(
            err, WC_ERR_DATA,
            "sink \"%s\" has lost data (its cursor is %s replication slot \"%s\"): rebuild the whole sink "
            "with \"walcast rebuild -c %s --sink %s\"",
            b.sh.live->name, live_found ? "behind" : "missing, or no engine has streamed", cfg->slot,
            cfg->path ? cfg->path : "FILE", b.sh.live->name);
        goto done;
    }
    if (wc_shadow_state(&b.sh, &sc, &found, &exists, err) < 0)
        goto done;
    b.dec = wc_decoder_new(cfg->outbox_schema, cfg->outbox_table, (const char *const *)cfg->columns,
                           cfg->msg_prefix);
    if (!o->verify && found && exists && slot_found && sc.lsn != 0) {
        char p[40];
        wc_info("rebuild \"%s\": resuming from %s", b.sh.unit, wc_pos_format(sc, p));
        b.cursor = sc;
        /* A cluster shadow's slots may be ahead of its floor (a commit that failed part way): its sink
         * must know each slot's cursor before it applies anything, or it applies those events again. */
        struct wc_pos floor;
        int has;
        if (b.sh.cluster && b.k->ops->read_cursor(b.k, &floor, &has, err) < 0) {
            wc_err_prefix(err,
                          "rebuild \"%s\": its shadow cannot be resumed (run it with --discard, then "
                          "again)",
                          b.sh.unit);
            goto done;
        }
        if (!b.sh.redis && open_pg_sink(&b, err) < 0)
            goto done;
    } else {
        if (slot_found && wc_slot_drop(cfg->source_dsn, b.sh.slot, 1, err) < 0)
            goto done;
        if (found || exists)
            wc_info("rebuild \"%s\": an earlier one stopped during its replay: starting again", b.sh.unit);
        if (replay(&b, err) < 0)
            goto done;
    }
    if (catch_up(&b, &drift, err) < 0)
        goto done;
    rc = o->verify ? drift > 0 : 0;
done:
    if (b.st)
        wc_stream_close(b.st);
    if (rc >= 0 || o->verify) {
        /* Done (or verify, which keeps nothing): the slot and the shadow go. */
        struct wc_err e2 = {0};
        if ((b.sh.conn != NULL || b.sh.rk != NULL) && !o->discard) {
            if (wc_slot_drop(cfg->source_dsn, b.sh.slot, 1, &e2) < 0 && !strstr(e2.msg, "does not exist"))
                wc_warning("%s \"%s\": could not drop slot \"%s\": %s", what, b.sh.unit, b.sh.slot, e2.msg);
            if (o->verify && wc_shadow_drop(&b.sh, &e2) < 0)
                wc_warning("verify \"%s\": could not drop the shadow: %s", b.sh.unit, e2.msg);
        }
    }
    wc_decoder_free(b.dec);
    wc_sink_free(b.k);
    wc_sink_conf_subset_free(b.conf);
    wc_shadow_close(&b.sh);
    return rc;
}
