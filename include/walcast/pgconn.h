/* pgconn.h - the one way walcast opens and uses a PostgreSQL connection (stream, slots, heartbeats,
 * snapshots, the PostgreSQL sink): connect timeout, TCP keepalives, the session settings that decide how
 * values are rendered, waits with a deadline, and what an error means (retry, or fix something). */
#ifndef WALCAST_PGCONN_H
#define WALCAST_PGCONN_H

#include <stddef.h>

#include "walcast/err.h"

struct pg_conn;
struct pg_result;

/*
 * The settings every connection pins, after the DSN's own options= (or PGOPTIONS), so that they win:
 * DateStyle ISO with MDY input order, TimeZone UTC, IntervalStyle iso_8601, extra_float_digits 3,
 * bytea_output hex. Values are rendered by the session (the stream's walsender, a sink's $1::timestamptz),
 * and the Redis side assumes UTC and ISO.
 */
#define WC_PG_PINNED_OPTIONS                                                                                 \
    "-c datestyle=ISO,MDY -c timezone=UTC -c intervalstyle=iso_8601 -c extra_float_digits=3 "                \
    "-c bytea_output=hex"

struct wc_pgconn_opts {
    const char *dsn;         /* conninfo or URI; NULL or "" = libpq's PG* environment variables */
    const char *replication; /* "database" for the replication protocol, NULL for plain SQL */
    /* More settings, "-c name=value ..." after the pinned ones (a sink's statement and lock timeouts);
     * NULL for none. */
    const char *options;
    /* Who connects, for messages: with it "WHO: could not connect: MSG", without it "could not connect
     * to server \"H:P\" database \"D\" user \"U\": MSG". Never the password. */
    const char *who;
};

/*
 * Connect with connect_timeout 10 s, TCP keepalives (idle 10 s, interval 5 s, 3 probes) and
 * tcp_user_timeout 30 s unless the DSN sets them, the DSN's options= kept and WC_PG_PINNED_OPTIONS then
 * opts->options after them, application_name "walcast" unless the DSN names one. NULL with err:
 * WC_ERR_CONFIG when someone must fix something (a password, a role, a database, pg_hba.conf, the
 * REPLICATION attribute: the message says what), WC_ERR_IO when it may pass (refused, reset, timed
 * out, too many connections, the server starting or stopping), WC_ERR_INTERNAL when out of memory.
 */
struct pg_conn *wc_pgconn_open(const struct wc_pgconn_opts *o, struct wc_err *err);
/* wc_pgconn_open without extra options or a name. replication: "database" or NULL. */
struct pg_conn *wc_pg_connect(const char *dsn, const char *replication, struct wc_err *err);
/* server "host:port" database "db" user "u", never the password, for messages. */
void wc_pg_describe(struct pg_conn *conn, char *buf, size_t size);

/*
 * What a PostgreSQL error means for walcast. sqlstate may be NULL (an error libpq made itself, or a
 * failed connection: then msg decides). Returns WC_ERR_CONFIG for faults that do not pass by themselves
 * (authentication and authorization: SQLSTATE class 28 and 42501; a missing database, schema, table,
 * column, function or plugin: 3D000, 3F000, the rest of class 42, 58P01), WC_ERR_IO for those that may
 * (connection, resources, the server shutting down, cancelled or timed-out statements, lock timeouts,
 * serialization failures, a read-only server) and 0 for the rest (the caller decides: an event's data).
 * *hint (when hint is not NULL) gets what to do about a WC_ERR_CONFIG fault, else "".
 */
int wc_pg_error_kind(const char *sqlstate, const char *msg, const char **hint);

/*
 * Wait until a result can be read without blocking, reading what the server sends; give up after
 * timeout_ms without a byte from it. Returns 0, or -1 with err (WC_ERR_IO) when the connection failed
 * or the server stayed silent: the statement is then cancelled (wc_pg_cancel) and the connection must
 * be closed.
 */
int wc_pg_wait(struct pg_conn *c, int timeout_ms, struct wc_err *err);
/* Send what libpq holds on a non-blocking connection, reading meanwhile; as wc_pg_wait otherwise. */
int wc_pg_flush(struct pg_conn *c, int timeout_ms, struct wc_err *err);
/*
 * Collect the results of a query sent with PQsend*(): the first failed one, or else the last (as
 * PQexec). NULL with err as wc_pg_wait when it timed out or the connection failed.
 */
struct pg_result *wc_pg_collect(struct pg_conn *c, int timeout_ms, struct wc_err *err);
/* PQexec (nparams 0: several statements allowed) or PQexecParams, with the deadline of wc_pg_wait. */
struct pg_result *wc_pg_exec(struct pg_conn *c, const char *sql, int nparams, const char *const *params,
                             int timeout_ms, struct wc_err *err);
/* Ask the server to cancel the running statement, on a thread of its own: a server that does not answer
 * (stopped) cannot block the caller. */
void wc_pg_cancel(struct pg_conn *c);
/* PQfinish that cannot block on a full socket buffer (a server that stopped reading). NULL is fine. */
void wc_pg_close(struct pg_conn *c);

#endif
