/*
 * lease.c - the lease of a slot on the source: a session-level advisory lock on a connection of its own.
 *
 * The slot itself says who streams it only once START_REPLICATION runs, and an engine opens, checks and
 * may rebuild its sinks before that: two engines starting together (a standby and a recovering primary)
 * both found the slot free and both rebuilt the same sink. The lease is taken before any sink is touched
 * and held until the session ends; the server drops it with the connection, so a crashed engine never
 * keeps it. Advisory locks live in a database, as logical slots do: the key is the slot's name.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "walcast/lease.h"
#include "walcast/pgconn.h"

/* The first key of walcast's advisory locks ("wcas"); the second is hashtext(slot). */
#define LEASE_CLASS "2003001715"

struct wc_lease {
    PGconn *conn;
    int pid;
    int held;
    char system_id[32];
    char database[128];
    char slot[64];
};

static int failed(PGconn *c, PGresult *r, const char *what, struct wc_err *err)
{
    char where[256], msg[512];
    size_t n;

    wc_pg_describe(c, where, sizeof(where));
    snprintf(msg, sizeof(msg), "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    wc_err_set(err, WC_ERR_IO, "%s on %s: %s", what, where, msg);
    PQclear(r);
    return -1;
}

/* The system identifier: pg_control_system() when the role may call it, else IDENTIFY_SYSTEM. */
static int identify(struct wc_lease *l, const char *dsn, struct wc_err *err)
{
    PGresult *r = PQexec(l->conn, "SELECT system_identifier::text FROM pg_control_system()");

    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        snprintf(l->system_id, sizeof(l->system_id), "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        return 0;
    }
    PQclear(r);
    PGconn *repl = wc_pg_connect(dsn, "database", err);
    if (repl == NULL)
        return -1;
    r = PQexec(repl, "IDENTIFY_SYSTEM");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        failed(repl, r, "could not identify the source system", err);
        PQfinish(repl);
        return -1;
    }
    snprintf(l->system_id, sizeof(l->system_id), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(repl);
    return 0;
}

struct wc_lease *wc_lease_open(const char *dsn, struct wc_err *err)
{
    struct wc_lease *l = calloc(1, sizeof(*l));
    PGresult *r;

    if (l == NULL) {
        wc_err_set(err, WC_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    l->conn = wc_pg_connect(dsn, NULL, err);
    if (l->conn == NULL)
        goto error;
    r = PQexec(l->conn, "SELECT pg_backend_pid(), current_database()");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        failed(l->conn, r, "could not open the slot's lease", err);
        goto error;
    }
    l->pid = atoi(PQgetvalue(r, 0, 0));
    snprintf(l->database, sizeof(l->database), "%s", PQgetvalue(r, 0, 1));
    PQclear(r);
    if (identify(l, dsn, err) < 0)
        goto error;
    return l;

error:
    wc_lease_close(l);
    return NULL;
}

int wc_lease_take(struct wc_lease *l, const char *slot, int *holder, struct wc_err *err)
{
    const char *params[1] = {slot};
    PGresult *r;

    *holder = 0;
    r = PQexecParams(l->conn, "SELECT pg_try_advisory_lock(" LEASE_CLASS ", hashtext($1))", 1, NULL, params,
                     NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return failed(l->conn, r, "could not take the lease of the replication slot", err);
    int got = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (got) {
        l->held = 1;
        snprintf(l->slot, sizeof(l->slot), "%s", slot);
        return 1;
    }
    /* Who holds it: its backend and where it connects from, for the message. */
    r = PQexecParams(
        l->conn,
        "SELECT l.pid, coalesce(host(a.client_addr), 'a local socket'), "
        "coalesce(a.application_name, '') FROM pg_catalog.pg_locks l "
        "LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
        "AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) "
        "AND l.classid = " LEASE_CLASS " AND l.objid = (hashtext($1)::bigint & 4294967295)::oid",
        1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return failed(l->conn, r, "could not find the holder of the replication slot's lease", err);
    if (PQntuples(r) == 0) {
        /* Released between the two queries: try again later. */
        PQclear(r);
        wc_err_set(err, WC_ERR_IO, "the lease of replication slot \"%s\" changed hands: trying again", slot);
        return -1;
    }
    *holder = atoi(PQgetvalue(r, 0, 0));
    wc_err_set(
        err, WC_ERR_SLOT_ACTIVE,
        "replication slot \"%s\" is in use by another engine (\"%s\" from %s, PID %d on the source, holds "
        "its lease: it is opening, rebuilding or streaming its sinks)",
        slot, PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 1), *holder);
    PQclear(r);
    return 0;
}

const char *wc_lease_system_id(const struct wc_lease *l)
{
    return l->system_id;
}

const char *wc_lease_database(const struct wc_lease *l)
{
    return l->database;
}

int wc_lease_pid(const struct wc_lease *l)
{
    return l->pid;
}

struct pg_conn *wc_lease_conn(struct wc_lease *l)
{
    return l->conn;
}

/*
 * pg_advisory_unlock, waiting at most a second for its answer: a source that went away (the reason the
 * session may be ending) must not hold up the reconnect. If it does not answer, closing the connection
 * releases the lease as soon as the server notices.
 */
static void unlock_briefly(struct wc_lease *l)
{
    const char *params[1] = {l->slot};
    PGresult *r;

    if (!PQsendQueryParams(l->conn, "SELECT pg_advisory_unlock(" LEASE_CLASS ", hashtext($1))", 1, NULL,
                           params, NULL, NULL, 0))
        return;
    for (int waited = 0; PQisBusy(l->conn) && waited < 1000; waited += 50) {
        struct pollfd p = {.fd = PQsocket(l->conn), .events = POLLIN};
        if (poll(&p, 1, 50) < 0 || !PQconsumeInput(l->conn))
            return;
    }
    while (!PQisBusy(l->conn) && (r = PQgetResult(l->conn)) != NULL)
        PQclear(r);
}

void wc_lease_close(struct wc_lease *l)
{
    if (l == NULL)
        return;
    if (l->conn) {
        /* Unlock before leaving: the backend may take a moment to exit after the connection closes, and
         * the next session (ours, after a reconnect, or a standby's) must not find the lease still held. */
        if (l->held && PQstatus(l->conn) == CONNECTION_OK)
            unlock_briefly(l);
        PQfinish(l->conn);
    }
    free(l);
}
