/* pgconn.c - every libpq connection walcast opens: timeouts, keepalives, pinned session settings. */
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "walcast/pgconn.h"

/* Make a libpq message one line without the trailing newline. */
static void one_line(char *dst, size_t size, const char *msg)
{
    size_t n;

    snprintf(dst, size, "%s", msg ? msg : "");
    n = strlen(dst);
    while (n > 0 && (dst[n - 1] == '\n' || dst[n - 1] == ' '))
        dst[--n] = '\0';
    for (char *c = dst; *c; c++)
        if (*c == '\n')
            *c = ' ';
}

PGconn *wc_pgconn_open(const struct wc_pgconn_opts *o, struct wc_err *err)
{
    const char *dsn = o->dsn && *o->dsn ? o->dsn : "";
    PGconn *conn;

    if (o->pinned) {
        /* Values are rendered by the server session: pin what changes their text. Timeouts and TCP
         * keepalives come first so that the DSN can override them: a black-holed server must not hang
         * the engine until the kernel gives up on the connection. */
        const char *keys[] = {"connect_timeout",
                              "keepalives_idle",
                              "keepalives_interval",
                              "keepalives_count",
                              "dbname",
                              "replication",
                              "options",
                              "fallback_application_name",
                              NULL};
        const char *vals[] = {"10",
                              "10",
                              "5",
                              "3",
                              dsn,
                              o->replication,
                              "-c datestyle=ISO -c timezone=UTC -c intervalstyle=iso_8601 "
                              "-c extra_float_digits=3 -c bytea_output=hex",
                              "walcast",
                              NULL};
        conn = PQconnectdbParams(keys, vals, 1);
    } else {
        /* The DSN is expanded as a conninfo or URI; application_name after it wins over one inside it. */
        const char *keys[] = {"dbname", "application_name", NULL};
        const char *vals[] = {dsn, "walcast", NULL};
        conn = PQconnectdbParams(keys, vals, 1);
    }
    if (conn == NULL) {
        wc_err_set(err, WC_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        char where[256], msg[512];
        one_line(msg, sizeof(msg), PQerrorMessage(conn));
        if (o->who) {
            wc_err_set(err, WC_ERR_IO, "%s: could not connect: %s", o->who, msg);
        } else {
            wc_pg_describe(conn, where, sizeof(where));
            wc_err_set(err, WC_ERR_IO, "could not connect to %s: %s", where, msg);
        }
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

PGconn *wc_pg_connect(const char *dsn, const char *replication, struct wc_err *err)
{
    struct wc_pgconn_opts o = {.dsn = dsn, .replication = replication, .pinned = 1};

    return wc_pgconn_open(&o, err);
}

void wc_pg_describe(PGconn *conn, char *buf, size_t size)
{
    const char *host = PQhost(conn), *port = PQport(conn), *db = PQdb(conn), *user = PQuser(conn);

    snprintf(buf, size, "server \"%s:%s\" database \"%s\" user \"%s\"", host && *host ? host : "localhost",
             port && *port ? port : "5432", db ? db : "", user ? user : "");
}
