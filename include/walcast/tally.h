/*
 * tally.h - what a sink did, for the metrics endpoint and `walcast status`: events applied, dead-lettered
 * and skipped per event type, commits, histograms of batch sizes, commit durations and of the time from
 * an event's commit on the source to its commit in the sink ("commit to visible").
 *
 * Events are counted when the commit that holds them has returned, never before, so that a counter only
 * says what is durable and never goes down: a sink counts into the stage of the batch being queued
 * (engine thread) or, for what a commit finds (an event the server rejects goes to the dead letters),
 * into the stage of the batch in flight (its commit thread). The engine's committer moves the queued
 * stage to in flight when it sets the batch aside, publishes it into the totals when the commit
 * returned, and drops it when the commit failed (those events come again). On the per-event path this is
 * a lookup of the event type and plain increments; the totals are atomic, read by the HTTP thread.
 */
#ifndef WALCAST_TALLY_H
#define WALCAST_TALLY_H

#include <stdint.h>

#include "walcast/event.h"
#include "walcast/lsn.h"

#define WC_TALLY_TYPES 64 /* event types counted by name; the rest are counted as one type "(other)" */
#define WC_TALLY_OTHER WC_TALLY_TYPES
#define WC_HIST_MAX 16

enum wc_outcome { WC_OUT_APPLIED, WC_OUT_DEAD_LETTERED, WC_OUT_SKIPPED, WC_OUT_N };

/* A histogram with fixed upper bounds (in integer units: microseconds, events); atomic counts. */
struct wc_hist {
    const uint64_t *bounds; /* ascending; +Inf after the last */
    int nbounds;
    uint64_t scale;                   /* units per exported unit (1000000 for seconds in microseconds) */
    uint64_t bucket[WC_HIST_MAX + 1]; /* not cumulative; the last is +Inf */
    uint64_t count;
    uint64_t sum; /* in units */
};

/* Events of one transaction in a batch: they share the transaction's commit time. */
struct wc_txn_time {
    wc_lsn lsn;
    int64_t commit_us; /* wall clock, microseconds since the epoch */
    int64_t n;
};

/* The counts of one batch. */
struct wc_tally_stage {
    int32_t n[WC_TALLY_TYPES + 1][WC_OUT_N];
    int64_t events; /* events counted in it (all outcomes) */
    struct wc_txn_time *times;
    int ntimes, cap;
};

struct wc_tally {
    struct wc_tally_stage stage[2];
    int q; /* stage[q] is queued into; stage[!q] is in flight */
    /* the totals: atomic */
    uint64_t total[WC_TALLY_TYPES + 1][WC_OUT_N];
    uint64_t commits;  /* commits that returned (a batch, or the cursor alone) */
    uint64_t failures; /* commits that failed */
    struct wc_hist batch_events, commit_seconds, visible_seconds;
    int64_t cursor_lsn;       /* the durable cursor's LSN */
    int64_t newest_commit_us; /* source commit time of the newest event committed (0: none yet) */
    int64_t last_commit_us;   /* wall clock of the last commit that returned */
    /* the commit in flight (its thread only, then the engine's) */
    int64_t commit_start_us;
    int64_t commit_end_us;
};

/* New tally (zeroed, histograms set up). NULL only when out of memory. */
struct wc_tally *wc_tally_new(void);
void wc_tally_free(struct wc_tally *t);

/*
 * The index of an event type (0 .. WC_TALLY_TYPES-1, or WC_TALLY_OTHER once the table is full). Types are
 * shared by every tally; a new type takes a lock once, known types none. NULL counts as "".
 */
int wc_tally_type(const char *type);
/* The name of a type index (NULL for a free one; "(other)" for WC_TALLY_OTHER). */
const char *wc_tally_type_name(int index);

/*
 * Count one event ev with outcome (enum wc_outcome), delta +1 or -1 (an event counted applied when queued
 * that its commit then could not apply). in_commit: 0 when queueing (the engine's thread), 1 for what a
 * commit finds (its thread). NULL t: nothing.
 */
void wc_tally_count(struct wc_tally *t, int in_commit, const struct wc_event *ev, int outcome, int delta);

/* The committer: the queued stage goes in flight (before the sink's detach or commit). */
void wc_tally_detach(struct wc_tally *t);
/* The commit thread, around the sink's commit. */
void wc_tally_commit_start(struct wc_tally *t);
void wc_tally_commit_end(struct wc_tally *t, int rc);
/* The engine's thread, once the commit has been joined: the stage in flight joins the totals (cursor: the
 * sink's new cursor), or is dropped. */
void wc_tally_publish(struct wc_tally *t, wc_lsn cursor);
void wc_tally_drop_inflight(struct wc_tally *t);
/* A session ends (the sinks are closed): everything staged is dropped; the stream sends it again. */
void wc_tally_reset(struct wc_tally *t);
/* A session starts streaming: what the sink committed outside the committer (a rebuild) is published. */
void wc_tally_flush(struct wc_tally *t, wc_lsn cursor);

/* Sum of the totals of one outcome over every type. */
uint64_t wc_tally_sum(const struct wc_tally *t, int outcome);
/* Observe value (in h's units) n times. */
void wc_hist_observe(struct wc_hist *h, uint64_t value, uint64_t n);
/* "2026-11-27T10:39:53.655523Z" into microseconds since the epoch; -1 when it is not that form. */
int64_t wc_iso_to_us(const char *iso);

#endif
