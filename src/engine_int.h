/* engine_int.h - the engine's parts (loop, committer, sink states, rebuild, heartbeat) and the session
 * they share. Private to src/: nothing outside the engine includes it. */
#ifndef WALCAST_ENGINE_INT_H
#define WALCAST_ENGINE_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "walcast/backoff.h"
#include "walcast/decode.h"
#include "walcast/engine.h"
#include "walcast/stream.h"

struct pg_conn;
struct wc_lease;

/* A commit that has run this long while the other sinks wait for events (its next batch is full) takes
 * its sink out of the stream: the others go on, it catches up once the commit returns. Four times the
 * sink's usual commit time when that is longer. */
#define STALL_MS 1000
/* At the start of a session, how long the sinks that opened wait for one still connecting. */
#define OPEN_WAIT_MS 2000
/* At shutdown, how long commits in flight are waited for before they are abandoned (their outcome is
 * then unknown: the next start resumes from the durable cursors). */
#define SHUTDOWN_GRACE_MS 3000

/*
 * What a sink is doing, as the engine sees it. One sink down does not stop the others: while it is
 * retried, the others apply events; the slot is confirmed only up to the lowest durable cursor, so the
 * server keeps what the lagging sink needs, and when it is back the stream restarts at its cursor (the
 * others skip what they have, cheaply). Memory stays bounded: a sink out of the stream holds at most the
 * batch it had queued.
 */
enum sink_state {
    SINK_UP,      /* in the stream: gets every event after its floor, commits on its thread */
    SINK_FROZEN,  /* out of the stream: a commit took too long while others waited; the batch it had
                     queued commits once that commit returns, then it is BEHIND */
    SINK_BEHIND,  /* open and idle, behind the stream: the stream restarts at its cursor */
    SINK_DOWN,    /* closed: opened again once its backoff delay has passed */
    SINK_OPENING, /* its open job runs */
};

enum job_kind { JOB_COMMIT = 1, JOB_OPEN };

/*
 * Work on a sink's connection, on the sink's worker thread, so that the engine's thread never waits for a
 * server: it keeps streaming, answering keepalives and sending status updates. Heap-allocated: one the
 * engine abandons at shutdown (a hung server) is left to its thread.
 */
struct sink_job {
    int kind;
    struct wc_sink *sink;
    struct wc_owner
        owner; /* JOB_OPEN: claim the sink for this owner (a copy: the job may outlive the engine) */
    int done;  /* set (atomically) when it has returned; then a byte goes to wake_fd */
    int wake_fd;
    int rc;
    struct wc_err err;
    struct wc_commit commit; /* JOB_COMMIT: the cursor it stores */
    struct wc_pos cursor;    /* JOB_OPEN: the cursor it read */
    int found;
    int64_t start_ms;
};

/* A sink's worker thread: it runs the sink's jobs one at a time, for the engine's lifetime. Heap-allocated
 * and left to itself when abandoned at shutdown (its job hangs). */
struct sink_worker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sink_job *job; /* handed over, not yet taken */
    int quit;
};

/* The engine's view of one sink; outlives sessions. */
struct sink_rt {
    struct wc_sink *k;
    int state;
    int inline_commit; /* no detach/commit_detached (the tail's file): commits on the engine's thread */
    /* Every event at or below floor has been handed to the sink (queued, committing or durable): the
     * stream's events up to it are skipped. Set from the cursor when it opens, to the stream's position
     * when the stream restarts below it or the sink leaves the stream. */
    struct wc_pos floor;
    int known;            /* k->cursor was read from the sink in this process, not assumed */
    int queued;           /* events queued since its commit in flight started (counted at commit rounds) */
    size_t queued_bytes;  /* their bytes */
    int due;              /* commit once the job in flight returns */
    int avg_commit_ms;    /* its usual commit time */
    struct sink_job *job; /* the job in flight, or NULL */
    wc_lsn visible_lsn;   /* the last position GET /wait was told the sink shows (visible_through) */
    struct sink_worker *worker; /* its thread, started with its first job */
    struct wc_backoff retry;
    int64_t retry_at_ms; /* DOWN: when to open it again */
    int leaving;         /* DOWN while its commit in flight runs: closed once it returns (wc__sink_fail) */
    struct wc_err leave_err;
};

/* State of one session (the sinks opened, a stream) and what outlives it across sessions. */
struct session {
    const struct wc_config *cfg;
    const struct wc_engine_opts *opts;
    struct wc_sink **sinks;
    int nsink;
    struct sink_rt *rt; /* one per sink */
    struct wc_sink *dead_letter_sink;
    struct wc_stream *stream;
    struct wc_decoder *dec;
    struct wc_engine_stats *stats;
    int wake[2]; /* jobs write a byte to wake[1] when they return; the stream's wait watches wake[0] */

    int in_txn;
    struct wc_pos pos; /* where the stream is: the last event handled, or (end, -1) between transactions */
    int pending;       /* events queued in the sinks since the last commit round */
    size_t pending_bytes;
    int64_t batch_start_ms;
    int64_t last_idle_commit_ms;

    int started;   /* streamed once: faults to fix are retried from now on, not fatal */
    int stopping;  /* shutting down: no sink is opened again, the stream is not restarted */
    int restart;   /* restart the stream (a sink is behind it) */
    int lost;      /* a sink came back without its data: every sink is opened again (rebuild) */
    int failed;    /* the session failed: what the sinks queued is dropped, never committed (next_step) */
    int abandoned; /* a job was left running at shutdown: wake[] stays open */
    int gave_up;   /* engine.retry_max_attempts ran out: the error stops the engine */
    /* Hints that spare the loop work on every message of the stream: set when there may be something
     * to do, cleared by whoever finds nothing. */
    int jobs_running;      /* jobs in flight */
    int any_down;          /* a sink may be down, waiting for its next attempt */
    int any_due;           /* a sink in the stream may have a batch queued behind a commit in flight */
    wc_lsn slot_confirmed; /* the slot's confirmed position when the session began */
    struct wc_backoff session_retry; /* sessions that could not start */
    struct wc_backoff stream_retry;  /* the stream, once started */
    int64_t stream_retry_at_ms;
    int last_walsender;      /* PID of the walsender of our last stream */
    struct wc_lease *lease;  /* the slot's lease on the source, held from the start of a session to its end */
    int last_lease_pid;      /* the source backend that held our previous session's lease */
    int lease_again;         /* the stream failed: take the lease anew before streaming again */
    struct wc_owner me;      /* who the sinks belong to: this source and slot (from the lease) */
    int own_walsender_waits; /* restarts that found that walsender still holding the slot */
    struct pg_conn *hb_conn; /* plain connection to the source for heartbeats */
    int64_t last_hb_ms;
    struct wc_backoff hb_retry;
    int projections_checked; /* new and changed projections were reported (projrec.c): once per run */
    /* The slot's position where this process found a new pipeline (no sink it reached at its first session
     * had a cursor), 0 when it did not; set once, by that session (rebuild.c). */
    wc_lsn fresh_at;
    int fresh_known;
};

/* Nonzero when a job in flight has returned (no system call: the loop asks for every message). */
static inline int wc__jobs_returned(const struct session *s)
{
    for (int i = 0; s->jobs_running && i < s->nsink; i++)
        if (s->rt[i].job != NULL && __atomic_load_n(&s->rt[i].job->done, __ATOMIC_ACQUIRE))
            return 1;
    return 0;
}

/* committer.c: commit rounds, the jobs on their threads, stalls, confirm. */
int wc__commit_round(struct session *s, struct wc_pos pos, struct wc_err *err);
int wc__jobs_poll(struct session *s, struct wc_err *err);
int wc__job_start(struct session *s, struct sink_rt *r, int kind, struct wc_pos cursor);
/* r's job when it has returned (joined, its wake byte read, r->job cleared; the caller frees it), else
 * NULL. */
struct sink_job *wc__job_reap(struct session *s, struct sink_rt *r);
int wc__busy(const struct session *s);
/* End the sinks' workers (not those a job was abandoned on). */
void wc__workers_end(struct session *s);
int wc__stall(struct session *s);
void wc__wait_wake(struct session *s, int timeout_ms);
void wc__drain(struct session *s, int grace_ms);
wc_lsn wc__safe_confirm_lsn(const struct session *s);
void wc__confirm(struct session *s);

/* sinkstate.c: a sink down, retried, opened again, caught up. */
/* Open k, claim it for owner and read its cursor (what an open job does). */
int wc__open_sink(struct wc_sink *k, const struct wc_owner *owner, struct wc_pos *cursor, int *found,
                  struct wc_err *err);
void wc__sink_down(struct session *s, struct sink_rt *r, const struct wc_err *err);
/* A sink in the stream failed on the engine's thread (queueing an event): down, now or once its job
 * returns; the other sinks go on. */
void wc__sink_fail(struct session *s, struct sink_rt *r, const struct wc_err *err);
int wc__sink_opened(struct session *s, struct sink_rt *r, struct sink_job *j, struct wc_err *err);
int wc__sinks_tick(struct session *s, struct wc_err *err);
int wc__open_all(struct session *s, struct wc_err *err);
void wc__close_all(struct session *s);
/* Log a failure per its backoff report; what: the retry's wording ("reconnecting"). */
void wc__report(struct wc_backoff *b, int64_t now, const struct wc_err *err, int *delay_ms);

/* engine.c: hand one event to one sink (its projections, or the unknown-event policy). */
int wc__route_one(struct session *s, struct wc_sink *k, struct wc_event *ev, int known, struct wc_err *err);
int wc__event_known(const struct session *s, const struct wc_event *ev);

/* rebuild.c: take the slot's lease, check the outbox and the slot, open and claim the sinks, rebuild those
 * that lost data; *start = where to stream from. wc__lease_end gives the lease back (end of a session);
 * wc__lease_again takes it anew (the stream reconnects: the source may have restarted, the lease with it). */
int wc__open_sinks(struct session *s, wc_lsn *start, struct wc_err *err);
/* Nonzero when a sink without a cursor and without a rebuild action has missed nothing: this process found
 * a new pipeline and the slot has been confirmed (confirmed) no further than where it began. Such a sink
 * starts where the pipeline began, as it would have at the first start. */
int wc__fresh_start(const struct session *s, const struct wc_sink *k, wc_lsn confirmed);
void wc__lease_end(struct session *s);
int wc__lease_again(struct session *s, struct wc_err *err);

/* poison.c: an outbox row no projection can be given (ev->poison) goes to the dead-letter sink. */
int wc__route_poison(struct session *s, struct wc_sink *k, struct wc_event *ev, struct wc_err *err);

/* heartbeat.c */
void wc__heartbeat(struct session *s);
void wc__heartbeat_seen(struct session *s, const char *content);
void wc__heartbeat_close(struct session *s);

#endif
