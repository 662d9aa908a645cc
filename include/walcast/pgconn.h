/* pgconn.h - the one way walcast opens a PostgreSQL connection (stream, slots, heartbeats, snapshots,
 * the PostgreSQL sink): connect timeout, TCP keepalives and, for connections that read values, the
 * session settings that decide how values are rendered. */
#ifndef WALCAST_PGCONN_H
#define WALCAST_PGCONN_H

#include <stddef.h>

#include "walcast/err.h"

struct pg_conn;

struct wc_pgconn_opts {
    const char *dsn;         /* conninfo or URI; NULL or "" = libpq's PG* environment variables */
    const char *replication; /* "database" for the replication protocol, NULL for plain SQL */
    /* Pin DateStyle ISO, TimeZone UTC, IntervalStyle, extra_float_digits 3 and bytea_output hex, and
     * set the timeouts (source connections). 0: the DSN as given, with application_name "walcast"
     * (the PostgreSQL sink). */
    int pinned;
    /* Who connects, for messages: with it "WHO: could not connect: MSG", without it "could not connect
     * to server \"H:P\" database \"D\" user \"U\": MSG". Never the password. */
    const char *who;
};

/* Connect. NULL with err (WC_ERR_IO; WC_ERR_INTERNAL when out of memory). */
struct pg_conn *wc_pgconn_open(const struct wc_pgconn_opts *o, struct wc_err *err);
/* A source connection with the settings pinned: wc_pgconn_open with pinned = 1. replication:
 * "database" or NULL. */
struct pg_conn *wc_pg_connect(const char *dsn, const char *replication, struct wc_err *err);
/* server "host:port" database "db" user "u", never the password, for messages. */
void wc_pg_describe(struct pg_conn *conn, char *buf, size_t size);

#endif
