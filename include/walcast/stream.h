/* stream.h - the logical replication connection: START_REPLICATION with wal2json, keepalives, feedback. */
#ifndef WALCAST_STREAM_H
#define WALCAST_STREAM_H

#include <stddef.h>

#include "walcast/err.h"
#include "walcast/lsn.h"

struct wc_stream;

struct wc_stream_opts {
    const char *dsn; /* conninfo or URI; "" = the PG environment variables */
    const char *slot;
    wc_lsn start; /* passed to START_REPLICATION (the server takes the larger of it and the slot's) */
    /* What status updates report as flushed until wc_stream_confirm() says more: the lowest durable
     * cursor, which may be below start (a sink that is down); 0 = start. Never more than is durable. */
    wc_lsn confirmed;
    const char *schema; /* outbox schema.table for add-tables */
    const char *table;
    const char *msg_prefix; /* add-msg-prefixes; NULL = none */
    int status_interval_ms; /* send a standby status update at least this often */
};

/* Connect and start streaming. NULL with err: WC_ERR_IO (cannot connect, or a transient refusal),
 * WC_ERR_CONFIG (a fault someone must fix: authentication, the REPLICATION attribute, wal2json missing on
 * the server), WC_ERR_SLOT (slot missing or invalidated), WC_ERR_SLOT_ACTIVE (in use by another process),
 * WC_ERR_PROTOCOL. */
struct wc_stream *wc_stream_open(const struct wc_stream_opts *opts, struct wc_err *err);
/* Send a final status update (best effort) and close. NULL is fine. */
void wc_stream_close(struct wc_stream *s);

/*
 * Wait up to timeout_ms for the next XLogData message. Keepalives are answered inside, and status
 * updates go out on the timer. Returns 1 with msg and len set (valid until the next call) and *wal_start;
 * 0 on timeout (or once the wake fd is readable); -1 with err (WC_ERR_IO: connection lost, or the server
 * stayed silent for 30 s even when asked for a reply; WC_ERR_SLOT: the server ended the stream because
 * of the slot).
 */
int wc_stream_next(struct wc_stream *s, int timeout_ms, const char **msg, size_t *len, wc_lsn *wal_start,
                   struct wc_err *err);

/* Make wc_stream_next() return early (0) while fd is readable (the engine's wake-up: a sink finished
 * something); -1 for none (the default). The stream never reads fd. */
void wc_stream_wake_on(struct wc_stream *s, int fd);
/* Everything below lsn is durably handled: the next status updates confirm it (never moves back). */
void wc_stream_confirm(struct wc_stream *s, wc_lsn lsn);
/* Send a status update now (force) or only when the timer is due. */
int wc_stream_feedback(struct wc_stream *s, int force, struct wc_err *err);
/* The newest server WAL end seen in a keepalive or XLogData header. */
wc_lsn wc_stream_wal_end(const struct wc_stream *s);
/* Nonzero once a keepalive arrived with no data pending after it: everything before wal_end was sent. */
wc_lsn wc_stream_idle_lsn(const struct wc_stream *s);
wc_lsn wc_stream_confirmed(const struct wc_stream *s);
/* The PID of the walsender, for messages. */
int wc_stream_backend_pid(const struct wc_stream *s);

#endif
