/* engine.h - the loop: stream, decode, route to sinks, batch, commit with cursors, confirm to the slot. */
#ifndef WALCAST_ENGINE_H
#define WALCAST_ENGINE_H

#include <signal.h>
#include <stdint.h>

#include "walcast/config.h"
#include "walcast/err.h"
#include "walcast/lsn.h"
#include "walcast/sink.h"

/* Set from a signal handler: the engine commits what it has, confirms and returns 0. */
extern volatile sig_atomic_t wc_engine_stop;

struct wc_engine_opts {
    wc_lsn endpos;     /* stop once the stream reaches this LSN (0 = run until stopped) */
    int unknown_ok;    /* events no projection names are not "unknown" (tail prints everything) */
    int max_retries;   /* reconnect attempts per outage before giving up (0 = forever) */
    int retry_base_ms; /* first backoff (default 100) */
    int retry_max_ms;  /* backoff ceiling (default 10000) */
    int standby;       /* the slot is in use elsewhere: wait and take over when it is released */
    int heartbeat_ms;  /* emit a transactional logical message this often (0 = off) */
};

struct wc_engine_stats {
    uint64_t events;       /* outbox events decoded (including replays skipped by every sink) */
    uint64_t transactions; /* B..C pairs seen */
    uint64_t commits;      /* sink commit rounds */
    uint64_t reconnects;
    wc_lsn confirmed; /* the last flush LSN confirmed to the slot */
    int64_t lag_ms;   /* commit-to-applied of the last heartbeat (or -1) */
};

/*
 * Run until stopped, endpos, or a fatal error. sinks: opened and closed here (not freed). Transient
 * failures (WC_ERR_IO) reconnect with exponential backoff and jitter, resuming from the durable sink
 * cursors. Returns 0 when stopped cleanly, -1 with err otherwise (err->code tells why).
 */
int wc_engine_run(const struct wc_config *cfg, struct wc_sink **sinks, int nsink,
                  const struct wc_engine_opts *opts, struct wc_engine_stats *stats, struct wc_err *err);

/*
 * The outbox as the source side is given it (outbox.h), from the configuration (borrowed from cfg).
 * Returns nonzero when a sink has a rebuild action: then the outbox needs a replay order.
 */
struct wc_outbox;
int wc_engine_outbox(const struct wc_config *cfg, struct wc_outbox *ob);

/*
 * Decode a captured pg_recvlogical wal2json v2 stream (one message per line) from path ("-" = stdin)
 * into sink, without a server. Returns 0 or -1 with err naming the line.
 */
int wc_engine_replay_file(const struct wc_config *cfg, struct wc_sink *sink, const char *path,
                          struct wc_err *err);

#endif
