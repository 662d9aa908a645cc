/* engine_int.h - the engine's parts (loop, committer, rebuild, heartbeat) and the session they share.
 * Private to src/: nothing outside the engine includes it. */
#ifndef WALCAST_ENGINE_INT_H
#define WALCAST_ENGINE_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "walcast/decode.h"
#include "walcast/engine.h"
#include "walcast/stream.h"

struct pg_conn;
struct wc_lease;

#define MAX_JOBS 16

/* One sink's commit, run on its own thread. */
struct commit_job {
    struct wc_sink *sink;
    struct wc_commit commit; /* handed to the sink: the cursor it stores and its dead letters' unit */
    int rc;
    struct wc_err err;
    int done; /* set (atomically) when the commit has returned */
};

/* The commit in flight: its jobs run on threads while the next batch is decoded and queued. */
struct committer {
    int inflight;
    int njob;
    struct commit_job jobs[MAX_JOBS];
    pthread_t threads[MAX_JOBS];
    int started[MAX_JOBS];
};

/* State of one streaming session (one replication connection) and what outlives it across reconnects. */
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

    int outage;              /* a transient failure is being retried: logged once, cleared when streaming */
    int attempt;             /* reconnect attempts in this outage */
    int last_walsender;      /* PID of the walsender of our last session */
    struct wc_lease *lease;  /* the slot's lease on the source, held from the start of a session to its end */
    int last_lease_pid;      /* the source backend that held our previous session's lease */
    struct pg_conn *hb_conn; /* plain connection to the source for heartbeats */
    int64_t last_hb_ms;

    struct committer com;
};

/* committer.c: commit the sinks, on their threads, while the next batch is queued; confirm. */
int wc__commit_all(struct session *s, struct wc_pos pos, int overlap, struct wc_err *err);
int wc__commit_wait(struct session *s, struct wc_err *err);
int wc__commit_done(const struct session *s);
void wc__commit_abandon(struct session *s);
wc_lsn wc__safe_confirm_lsn(const struct session *s);

/* engine.c: hand one event to one sink (its projections, or the unknown-event policy). */
int wc__route_one(struct session *s, struct wc_sink *k, struct wc_event *ev, int known, struct wc_err *err);
int wc__event_known(const struct session *s, const struct wc_event *ev);

/* rebuild.c: take the slot's lease, check the outbox and the slot, open and claim the sinks, rebuild those
 * that lost data; *start = where to stream from. wc__lease_end gives the lease back (end of a session). */
int wc__open_sinks(struct session *s, wc_lsn *start, struct wc_err *err);
void wc__lease_end(struct session *s);

/* poison.c: an outbox row no projection can be given (ev->poison) goes to the dead-letter sink. */
int wc__route_poison(struct session *s, struct wc_sink *k, struct wc_event *ev, struct wc_err *err);

/* heartbeat.c */
void wc__heartbeat(struct session *s);
void wc__heartbeat_seen(struct session *s, const char *content);
void wc__heartbeat_close(struct session *s);

#endif
