/*
 * rebuild.c - the start of a session: take the slot's lease, check the outbox and the slot, open the sinks
 * and claim them, read their cursors, and rebuild a sink that lost data (or has none yet and may be
 * built) from a snapshot of the outbox table.
 */
#include <stdio.h>
#include <string.h>

#include "engine_int.h"
#include "metrics.h"
#include "shadow.h"
#include "walcast/lease.h"
#include "walcast/log.h"
#include "walcast/slot.h"
#include "walcast/snapshot.h"

int wc_engine_outbox(const struct wc_config *cfg, struct wc_outbox *ob)
{
    int replay = 0;

    *ob = (struct wc_outbox){cfg->outbox_schema, cfg->outbox_table, (const char *const *)cfg->columns,
                             cfg->outbox_order_by};
    for (int i = 0; i < cfg->nsink; i++)
        replay |= cfg->sinks[i].rebuild != NULL;
    return replay;
}

/*
 * Rebuild one sink from the outbox table (invariant 4): wipe it with its configured rebuild action,
 * then apply every outbox row visible in a snapshot exported by a temporary slot, and set its cursor to
 * that slot's consistent point. Transactions committed before that point are exactly the rows in the
 * snapshot; the stream brings everything after it. A crash midway leaves a cursor at 0/0, which the
 * next start finds behind the slot again: the rebuild starts over from the wipe.
 */
static int rebuild_sink(struct session *s, struct wc_sink *k, const struct wc_owner *me, struct wc_err *err)
{
    struct wc_outbox ob;
    struct wc_snapshot *snap;
    struct wc_event ev;
    wc_lsn point = 0;
    int64_t n = 0, pending = 0;
    int rc = -1, r;

    wc_engine_outbox(s->cfg, &ob);
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
     * one at 0/0: a start after a crash finds it and rebuilds again. A FLUSHDB takes the owner record
     * with it: claim the sink again before writing to it. */
    if (k->ops->reset(k, err) < 0 || wc_sink_claim(k, me, err) < 0)
        goto done;
    wc_warning("sink \"%s\": rebuilding its projections from the outbox table up to " WC_LSN_FMT, k->name,
               WC_LSN_ARGS(point));
    while ((r = wc_snapshot_next(snap, &ev, err)) > 0) {
        n++;
        /* The snapshot's decoder owns the event (its payload included), as the stream's does. */
        if (wc__route_one(s, k, &ev, wc__event_known(s, &ev), err) < 0)
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
    wc_metrics_applied(k, k->cursor.lsn);
    wc_warning("sink \"%s\": rebuilt from %lld outbox rows", k->name, (long long)n);
    if (k->conf != NULL) {
        /* Every projection of the sink was built by its current definition (projrec.c). */
        struct wc_err e2 = {0};
        if (wc_projections_record_sink(s->cfg, k->conf, &e2) < 0)
            wc_warning("%s", e2.msg);
    }
    rc = 0;
done:
    wc_snapshot_close(snap); /* drops the temporary slot */
    return rc;
}

/*
 * Take the slot's lease before anything else (lease.h): a second engine on the slot, or one that starts
 * together with this one, stops here rather than open, claim or rebuild the sinks this one is about to.
 */
static int take_lease(struct session *s, struct wc_err *err)
{
    int holder = 0, r;

    if (s->lease == NULL && (s->lease = wc_lease_open(s->cfg->source_dsn, err)) == NULL)
        return -1;
    r = wc_lease_take(s->lease, s->cfg->slot, &holder, err);
    if (r > 0)
        return 0;
    if (r == 0) {
        struct wc_slot_status st;
        struct wc_err e2 = {0};
        int found = 0;
        if (holder == s->last_lease_pid) {
            /* Our previous session's backend, not gone yet: transient. */
            err->code = WC_ERR_IO;
        } else if (wc_slot_status_conn(wc_lease_conn(s->lease), s->cfg->slot, &st, &found, &e2) == 0 &&
                   found && st.active && st.active_walsender) {
            /* The other engine streams: name its walsender, as `walcast slot status` shows it. */
            wc_err_set(err, WC_ERR_SLOT_ACTIVE, "replication slot \"%s\" is active for PID %d", s->cfg->slot,
                       st.active_pid);
        }
    }
    wc_lease_close(s->lease);
    s->lease = NULL;
    return -1;
}

void wc__lease_end(struct session *s)
{
    if (s->lease == NULL)
        return;
    s->last_lease_pid = wc_lease_pid(s->lease);
    wc_lease_close(s->lease);
    s->lease = NULL;
}

int wc__lease_again(struct session *s, struct wc_err *err)
{
    wc__lease_end(s);
    return take_lease(s, err);
}

/* The outbox must be there, with its columns, readable, before the stream may confirm anything; and
 * with a replay order when a sink may be rebuilt. */
static int check_outbox(struct session *s, struct wc_err *err)
{
    struct wc_outbox ob;
    struct wc_outbox_info info;
    int replay = wc_engine_outbox(s->cfg, &ob);

    if (wc_outbox_check(wc_lease_conn(s->lease), &ob, &info, err) < 0)
        return -1;
    if (replay && info.order[0] == '\0') {
        wc_err_set(err, WC_ERR_CONFIG, "%s", info.order_problem);
        return -1;
    }
    return 0;
}

int wc__fresh_start(const struct session *s, const struct wc_sink *k, wc_lsn confirmed)
{
    return s->fresh_at != 0 && confirmed <= s->fresh_at && k->conf != NULL && k->conf->rebuild == NULL;
}

/*
 * Each open sink without a cursor that starts where the pipeline began (wc__fresh_start) says so in a
 * cursor of its own, before any other sink is built or streamed to. Without it, a first start cut short
 * after another sink got its cursor (its build, its first commit) left this one with none while another
 * had one: the next start took it for a sink that lost its data and stopped, though the slot, confirmed no
 * further, still held everything it needs.
 */
static int start_sinks_at_slot(struct session *s, wc_lsn confirmed, struct wc_err *err)
{
    struct wc_pos at = {s->fresh_at, -1};

    for (int i = 0; i < s->nsink; i++) {
        struct wc_sink *k = s->sinks[i];
        if (s->rt[i].state != SINK_UP || k->has_cursor || !wc__fresh_start(s, k, confirmed))
            continue;
        if (k->ops->commit(k, at, err) < 0) {
            wc_err_prefix(err, "could not store the first cursor of sink \"%s\"", k->name);
            return -1;
        }
        k->cursor = at;
        k->has_cursor = 1;
        wc_metrics_applied(k, at.lsn);
    }
    return 0;
}

/*
 * Open every sink, claim it and read its cursor; returns the LSN to stream from. A sink whose cursor is
 * behind the slot's confirmed position, or that has none while others do, lost writes the slot will not send
 * again (Redis restarted without persistence, a restored backup): it is rebuilt, or the engine stops.
 */
int wc__open_sinks(struct session *s, wc_lsn *start, struct wc_err *err)
{
    struct wc_slot_status st;
    int found = 0, any_cursor = 0;
    char p[40], c[WC_LSN_STRLEN];

    *start = 0;
    if (take_lease(s, err) < 0 || check_outbox(s, err) < 0)
        return -1;
    memset(&s->me, 0, sizeof(s->me));
    snprintf(s->me.system_id, sizeof(s->me.system_id), "%s", wc_lease_system_id(s->lease));
    snprintf(s->me.database, sizeof(s->me.database), "%s", wc_lease_database(s->lease));
    snprintf(s->me.slot, sizeof(s->me.slot), "%s", s->cfg->slot);
    /* The slot first: its confirmed position only ever trails the sinks' cursors, so read before them it
     * cannot make a cursor look lost; and a slot another engine streams must not have its sinks touched
     * (a standby waits here). */
    if (wc_slot_status_conn(wc_lease_conn(s->lease), s->cfg->slot, &st, &found, err) < 0) {
        /* No privilege to read pg_replication_slots: a fault to fix (WC_ERR_CONFIG); anything else may
         * pass. */
        if (err->code != WC_ERR_CONFIG)
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
        /* Our own previous walsender may take a moment to exit after a reconnect, and a backend that is
         * not a walsender holds a slot only while it drops or advances it: both are transient (a dropped
         * slot is then reported as missing, exit 3, not as in use). */
        wc_err_set(
            err, st.active_pid == s->last_walsender || !st.active_walsender ? WC_ERR_IO : WC_ERR_SLOT_ACTIVE,
            "replication slot \"%s\" is active for PID %d", s->cfg->slot, st.active_pid);
        return -1;
    }
    s->slot_confirmed = st.confirmed_flush_lsn;
    /* Every sink side by side on its thread (open, claim, read the cursor); one that cannot be opened now
     * is retried while the others stream (a sink that never opened counts as being at the slot's position
     * meanwhile). */
    if (wc__open_all(s, err) < 0)
        return -1;
    for (int i = 0; i < s->nsink; i++) {
        struct wc_sink *k = s->sinks[i];
        if (s->rt[i].state != SINK_UP && !(s->rt[i].known && k->has_cursor))
            continue;
        any_cursor |= k->has_cursor;
        wc_debug("sink \"%s\": cursor %s", k->name, k->has_cursor ? wc_pos_format(k->cursor, p) : "none");
    }
    if (!s->fresh_known) {
        s->fresh_known = 1;
        s->fresh_at = any_cursor ? 0 : st.confirmed_flush_lsn;
    }
    if (start_sinks_at_slot(s, st.confirmed_flush_lsn, err) < 0)
        return -1;
    for (int i = 0; i < s->nsink; i++) {
        struct wc_sink *k = s->sinks[i];
        int rebuildable = k->conf != NULL && k->conf->rebuild != NULL;
        if (s->rt[i].state != SINK_UP)
            continue;
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
                       "set sinks.%s.rebuild to rebuild it from the outbox table%s%s%s, or restore it",
                       k->name, k->has_cursor ? wc_pos_format(k->cursor, p) : "none", s->cfg->slot, c,
                       k->name,
                       k->conf->type == WC_SINK_POSTGRES ? ", run \"walcast rebuild -c FILE --sink " : "",
                       k->conf->type == WC_SINK_POSTGRES ? k->name : "",
                       k->conf->type == WC_SINK_POSTGRES ? "\" to rebuild it beside the old tables" : "");
            return -1;
        } else if (lost || (!k->has_cursor && rebuildable)) {
            if (lost)
                wc_warning(
                    "sink \"%s\" has lost data: its cursor (%s) is behind replication slot \"%s\" (%s)",
                    k->name, k->has_cursor ? wc_pos_format(k->cursor, p) : "none", s->cfg->slot, c);
            else
                wc_info("sink \"%s\" has no cursor: building it from the outbox table", k->name);
            if (rebuild_sink(s, k, &s->me, err) < 0)
                return -1;
        }
    }
    /* New and changed projections, once per process (projrec.c). */
    for (int i = 0; i < s->nsink && !s->projections_checked; i++) {
        struct wc_err e2 = {0};
        const struct wc_sink_conf *sc = s->sinks[i]->conf;
        if (s->rt[i].state == SINK_UP && sc != NULL && wc_projections_check(s->cfg, sc, &e2) < 0)
            wc_warning("%s", e2.msg);
    }
    s->projections_checked = 1;
    *start = 0;
    for (int i = 0, first = 1; i < s->nsink; i++) {
        if (s->rt[i].state != SINK_UP)
            continue;
        s->rt[i].floor = s->sinks[i]->cursor;
        if (first || s->sinks[i]->cursor.lsn < *start)
            *start = s->sinks[i]->cursor.lsn;
        first = 0;
    }
    return 0;
}
