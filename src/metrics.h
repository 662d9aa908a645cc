/*
 * metrics.h - the running engine's figures: what /metrics, /healthz, /readyz and /status serve (http.c,
 * metrics_text.c), the slot's WAL retention read on a timer (slotwatch.c), the retention warnings and the
 * progress lines while a backlog is caught up. Private to src/.
 *
 * Threads: the engine's thread calls the hooks below (cheap: relaxed atomic stores, a clock it already
 * read); the sinks count into their tallies (walcast/tally.h); a poller thread reads the slot and the
 * dead-letter stores every metrics.slot_poll_interval_ms on connections of its own; libmicrohttpd's
 * thread answers requests from atomics and from the poller's snapshot (under a mutex neither the engine
 * nor the sinks ever take).
 */
#ifndef WALCAST_SRC_METRICS_H
#define WALCAST_SRC_METRICS_H

#include <pthread.h>
#include <stdint.h>

#include <jansson.h>

#include "walcast/buf.h"
#include "walcast/config.h"
#include "walcast/engine.h"
#include "walcast/sink.h"
#include "walcast/stream.h"

#define WC_VERSION "0.1.0"

/* One reading of the slot and the server's WAL. */
struct wc_slot_sample {
    int found;           /* the slot exists */
    char wal_status[16]; /* reserved, extended, unreserved, lost ("" when missing) */
    int active_pid;      /* 0 when no process streams it */
    wc_lsn current_lsn;  /* pg_current_wal_lsn() */
    wc_lsn restart_lsn, confirmed_lsn;
    int64_t retained_bytes; /* current - restart_lsn (-1 unknown) */
    int64_t lag_bytes;      /* current - confirmed_flush_lsn (-1 unknown) */
    int64_t safe_wal_size;  /* -1 when NULL (unlimited, or lost) */
    int64_t max_keep_bytes; /* max_slot_wal_keep_size in bytes, -1 when unlimited */
    int64_t at_ms;          /* monotonic time of the reading */
};

/* Rates over a window of samples, and what they mean for the slot. */
struct wc_slot_trend {
    double wal_rate;        /* the server's WAL, bytes/s (-1 unknown) */
    double retained_growth; /* retained WAL, bytes/s (negative when it shrinks) */
    int growth_known;       /* retained_growth was measured */
    double forecast_s;      /* seconds until the slot is invalidated at that rate; -1 when none */
};

/* Retention levels. */
enum { WC_RETAIN_OK, WC_RETAIN_WARN, WC_RETAIN_CRITICAL };

/* ---- peek.c: one sink as its server shows it, without the engine ---- */

struct wc_peek {
    int ok;                 /* the server answered */
    int found;              /* the sink has a cursor */
    struct wc_pos cursor;   /* its durable cursor */
    long long dead_letters; /* in its store; -1 unknown */
    char error[1024];       /* why not ok (never a password) */
};
/* Connections kept across peeks (the poller's); zero it first, close it with wc__peek_close. */
struct wc_peek_conn {
    struct wc_sink *redis; /* an opened instance of a redis sink */
    void *pg;              /* PGconn of a postgres sink */
};
void wc__peek(const struct wc_config *cfg, const struct wc_sink_conf *conf, struct wc_peek_conn *pc,
              struct wc_peek *out);
void wc__peek_close(struct wc_peek_conn *pc);

/* ---- rebuildwatch.c: rebuilds and verifies as the source and the sinks show them ---- */

/* One rebuild (or verify) of this engine's slot, found by its slot. */
struct wc_rebuild_seen {
    char unit[64];
    int verify;
    int active;             /* a process holds its slot */
    int64_t retained_bytes; /* WAL its slot holds back */
    int64_t behind_bytes;   /* current WAL - its slot's confirmed position */
    long long replayed;     /* rows in its shadow while it replays the outbox; -1 after */
};
#define WC_REBUILDS_MAX 16
struct wc_metrics;
/* The poller, after a good slot reading: find them (on its source connection) and their shadows' rows. */
void wc__poll_rebuilds(struct wc_metrics *m);

struct wc_metrics_sink {
    struct wc_sink *sink;
    struct wc_tally *tally;
    struct wc_peek_conn peek; /* the poller's own connections to the sink's server */
    /* poller snapshot (under lock) */
    int64_t dead_letters; /* -1 unknown */
    double events_rate;   /* applied per second over the last seconds */
    uint64_t rate_n[11];  /* applied totals one second apart (ring) */
    int64_t rate_at[11];
    int rate_i;
    uint64_t reconnects;  /* atomic */
    int64_t caught_up_us; /* atomic: wall clock when its cursor last covered everything received */
};

struct wc_metrics {
    const struct wc_config *cfg;
    int nsink;
    struct wc_metrics_sink *sinks;
    int64_t start_us; /* wall clock */
    pid_t pid;

    /* the engine's state: atomics written by the engine's thread */
    int streaming;     /* a replication session is streaming */
    int standby;       /* waiting for another engine to release the slot */
    int64_t loop_ms;   /* monotonic time of the engine loop's last pass */
    int64_t received;  /* position handled last (LSN) */
    int64_t wal_end;   /* newest WAL position the walsender reported (data, keepalives) */
    int64_t confirmed; /* confirmed to the slot */
    int64_t lag_ms;    /* heartbeat round trip; -1 none */
    uint64_t events;   /* outbox events received */
    uint64_t txns;     /* transactions received */
    uint64_t source_reconnects;

    int64_t sessions; /* sessions that streamed */

    /* progress lines (the poller thread's) */
    int64_t prog_at_ms, prog_session, prog_pos, prog_server;
    uint64_t prog_events;
    int prog_behind;

    /* the poller: its thread, its connection, its snapshot (under lock) */
    pthread_t poller;
    int poller_started;
    int poller_stop;   /* atomic */
    int poll_now;      /* under lock: read the slot at once */
    int poller_leaked; /* it did not stop in time: the state stays allocated until the process exits */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    void *src;                     /* PGconn */
    struct wc_slot_sample ring[7]; /* the last readings, for rates over up to 6 intervals */
    int nring;
    struct wc_slot_sample slot; /* the last good reading */
    int slot_ok;                /* 0 until one reading succeeded */
    char slot_error[1024];      /* why the last reading failed ("" when it did not) */
    int64_t slot_polled_us;     /* wall clock of the last good reading */
    struct wc_slot_trend trend;
    int retain_level, forecast_warn;
    int64_t retain_logged_ms, forecast_logged_ms;
    int64_t confirmed_seen, confirmed_moved_ms; /* stall detection */
    int stalled;

    struct wc_rebuild_seen rebuilds[WC_REBUILDS_MAX]; /* rebuildwatch.c's last reading */
    int nrebuild;
    int rebuilds_ok;

    struct wc_http *http;   /* the endpoint (http.c); NULL without it */
    struct wc_waits *waits; /* GET /wait's waiters (waits.c); NULL without the endpoint */
};

extern struct wc_metrics *wc__metrics;
extern int64_t wc__metrics_loop_ms;

/*
 * Start for a `walcast run`: tallies for the sinks, the poller thread and, when metrics.listen is set,
 * the HTTP endpoint. Returns 0, or -1 with err (WC_ERR_CONFIG: the address cannot be bound).
 */
int wc_metrics_start(const struct wc_config *cfg, struct wc_sink **sinks, int nsink, struct wc_err *err);
/* Stop the endpoint and the poller, free everything (the sinks' tally pointers are cleared). */
void wc_metrics_stop(void);

/* ---- hooks of the engine (no-ops unless started) ---- */

void wc__metrics_loop(int64_t now_ms, wc_lsn pos, const struct wc_stream *stream,
                      const struct wc_engine_stats *stats);
/*
 * Every pass of the engine's loop: now (monotonic ms, already read), the position handled, the stream and
 * the counters. Does its work at most once per millisecond.
 */
static inline void wc_metrics_loop(int64_t now_ms, wc_lsn pos, const struct wc_stream *stream,
                                   const struct wc_engine_stats *stats)
{
    if (now_ms != wc__metrics_loop_ms) {
        wc__metrics_loop_ms = now_ms;
        wc__metrics_loop(now_ms, pos, stream, stats);
    }
}
/* The poller, every engine.progress_interval_ms with the server's WAL position: the progress lines. */
void wc__metrics_progress(struct wc_metrics *m, int64_t now_ms, wc_lsn server);
/* A session streams (on = 1: every sink is open with its cursor read) or has ended (0: sinks closed). */
void wc_metrics_streaming(struct wc_sink **sinks, int nsink, int on);
/* Waiting as a standby. */
void wc_metrics_standby(void);
/* A transient failure: the engine reconnects (err names what failed: a sink, or the source). */
void wc_metrics_reconnect(const struct wc_err *err);
/* A sink's commit failed. */
void wc_metrics_commit_failed(struct wc_sink *k);
/* A sink's durable cursor moved to lsn (a commit returned) or was read (it opened): GET /wait's waiters
 * it reached are answered. Once per commit, never per event: on the sink's worker thread as soon as its
 * commit returns (the engine's thread may be busy with the next batch), again on the engine's thread
 * when it takes the commit in (then a no-op), and there for inline commits and opens (waits.c). */
void wc_metrics_applied(struct wc_sink *k, wc_lsn lsn);
/* Stopping: wc__metrics becomes NULL once no thread is inside wc_metrics_applied (waits.c). */
void wc__waits_detach(void);
/* Nonzero when a GET /wait waits for a position at or below lsn: the engine's loop, idle, then moves
 * the sinks' cursors over the stream's position now rather than at the next status interval. An atomic
 * load (waits.c). */
int wc_metrics_wanted(wc_lsn lsn);

/* ---- waits.c: GET /wait, long-polling on the sinks' applied positions ---- */

struct wc_waits;
struct MHD_Connection;
int wc__waits_start(struct wc_metrics *m, struct wc_err *err);
/* Answer every waiter (503: stopping) before the endpoint stops. */
void wc__waits_release(struct wc_metrics *m);
void wc__waits_free(struct wc_metrics *m);
/* GET /wait (an enum MHD_Result); *state is the request's (freed by wc__waits_completed). */
int wc__waits_handle(struct wc_metrics *m, struct MHD_Connection *c, void **state);
void wc__waits_completed(void **state);

/* ---- what the endpoint serves (metrics_text.c) ---- */

/* /metrics in Prometheus's text format, into b. */
void wc__metrics_text(struct wc_metrics *m, struct wc_buf *b);
/* /status: a new JSON object (the same shape `walcast status` builds from the servers). */
json_t *wc__metrics_status(struct wc_metrics *m);
/* The "slot" object of a status document, from a reading and its trend. */
json_t *wc__status_slot(const struct wc_config *cfg, const struct wc_slot_sample *s,
                        const struct wc_slot_trend *t);
/* Ready: streaming, every sink connected, the confirmed position not stalled while the WAL moves.
 * Returns 1 or 0 with why (a short reason) filled. */
int wc__metrics_ready(struct wc_metrics *m, char *why, size_t size);
/* Healthy: the engine's loop ran recently, or it is not streaming (reconnecting, standby, rebuilding). */
int wc__metrics_healthy(struct wc_metrics *m, char *why, size_t size);

/* ---- slotwatch.c ---- */

/* One reading on an open connection (PGconn *). 0, or -1 with err. */
int wc__slot_sample(void *conn, const char *slot, struct wc_slot_sample *out, struct wc_err *err);
/* Rates between two readings (older first) and the forecast of the newer. */
void wc__slot_trend(const struct wc_slot_sample *old, const struct wc_slot_sample *cur,
                    struct wc_slot_trend *t);
/* The retention level of a reading under cfg's thresholds. */
int wc__retention_level(const struct wc_config *cfg, const struct wc_slot_sample *s);
/* The warnings a reading and its trend call for, one line each (no level prefix), appended to arr. */
void wc__retention_warnings(const struct wc_config *cfg, const struct wc_slot_sample *s,
                            const struct wc_slot_trend *t, json_t *arr);
int wc__poller_start(struct wc_metrics *m, struct wc_err *err);
void wc__poller_stop(struct wc_metrics *m);

/* ---- http.c ---- */

int wc__http_start(struct wc_metrics *m, const char *listen, struct wc_err *err);
void wc__http_stop(struct wc_metrics *m);
/* After resuming waiters: write their answers on this thread when no other is inside libmicrohttpd,
 * else have that one run its loop again. */
void wc__http_kick(struct wc_http *h);
/* Have the endpoint's thread run its loop again (e.g. after resuming waiters under a lock). */
void wc__http_wake(struct wc_http *h);

/* ---- fmt.c: sizes and durations for people ---- */

/* "118 MB" (as pg_size_pretty: kB, MB, GB, TB at 1024, rounded) into buf. */
const char *wc__fmt_size(int64_t bytes, char *buf, size_t size);
/* "42 s", "12 min", "3 h 20 min", "2 d 4 h" into buf. */
const char *wc__fmt_duration(double seconds, char *buf, size_t size);

#endif
