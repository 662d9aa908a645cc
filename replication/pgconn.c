/* pgconn.c - every libpq connection walcast opens: timeouts, keepalives, pinned session settings, waits
 * with a deadline, cancellation that cannot hang, and what an error means. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "walcast/log.h"
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

/* A failed connection's message, matched against what the server (or libpq) says: there is no
 * SQLSTATE for it in libpq's API. Servers with translated messages (lc_messages) fall back to IO. */
static const struct {
    const char *text;
    const char *hint;
} connect_faults[] = {
    {"password authentication failed",
     "check the user's password (in the DSN, PGPASSWORD or the password file ~/.pgpass)"},
    {"no password supplied",
     "the server asks for a password: put it in the DSN, PGPASSWORD or the password file ~/.pgpass"},
    {"authentication failed", "check the user and its credentials in the DSN"},
    {"no pg_hba.conf entry", "allow this user, database and host in the server's pg_hba.conf"},
    {"role \"", "create the role on the server or fix the user in the DSN"},
    {"database \"", "create the database or fix dbname in the DSN"},
    {"must be superuser or replication role",
     "give the role the REPLICATION attribute (ALTER ROLE ... REPLICATION)"},
    {"permission denied", "grant the role what it needs on the server (see the message)"},
    {"not permitted to log in", "allow the role to log in (ALTER ROLE ... LOGIN)"},
};

int wc_pg_error_kind(const char *st, const char *msg, const char **hint)
{
    const char *h = "";
    int kind = 0;

    if (st != NULL && strlen(st) == 5) {
        if (strncmp(st, "28", 2) == 0) {
            kind = WC_ERR_CONFIG;
            h = "check the user and its credentials in the DSN";
        } else if (strcmp(st, "42501") == 0) {
            kind = WC_ERR_CONFIG;
            h = "grant the role the privilege the message names";
        } else if (strcmp(st, "58P01") == 0) {
            kind = WC_ERR_CONFIG;
            h = msg && strstr(msg, "wal2json") ? "install wal2json on the source server (the Debian package "
                                                 "postgresql-15-wal2json, for PostgreSQL 15)"
                                               : "install what the message names on the server";
        } else if (strncmp(st, "42", 2) == 0 || strcmp(st, "3D000") == 0 || strcmp(st, "3F000") == 0) {
            kind = WC_ERR_CONFIG;
            h = "create what the message names, or fix the configuration that uses it";
        } else if (strncmp(st, "08", 2) == 0 || strncmp(st, "40", 2) == 0 || strncmp(st, "53", 2) == 0 ||
                   strncmp(st, "57", 2) == 0 || strncmp(st, "58", 2) == 0 || strcmp(st, "55P03") == 0 ||
                   strcmp(st, "25006") == 0) {
            kind = WC_ERR_IO;
        }
    } else if (msg != NULL) {
        kind = WC_ERR_IO;
        for (size_t i = 0; i < sizeof(connect_faults) / sizeof(connect_faults[0]); i++) {
            const char *at = strstr(msg, connect_faults[i].text);
            /* "role "x" does not exist", "database "x" does not exist" */
            if (at && (connect_faults[i].text[strlen(connect_faults[i].text) - 1] != '"' ||
                       strstr(at, "does not exist"))) {
                kind = WC_ERR_CONFIG;
                h = connect_faults[i].hint;
                break;
            }
        }
    }
    if (hint)
        *hint = h;
    return kind;
}

/* The user's own options= (from the DSN, else PGOPTIONS), then the pinned settings, then extra. */
static char *merged_options(const char *dsn, const char *extra, struct wc_err *err)
{
    char *msg = NULL, *out = NULL;
    const char *user = NULL;
    PQconninfoOption *parsed = PQconninfoParse(dsn, &msg);

    if (parsed == NULL) {
        char text[512];
        one_line(text, sizeof(text), msg ? msg : "out of memory");
        wc_err_set(err, msg ? WC_ERR_CONFIG : WC_ERR_INTERNAL, "invalid connection string: %s", text);
        PQfreemem(msg);
        return NULL;
    }
    for (PQconninfoOption *o = parsed; o->keyword; o++)
        if (strcmp(o->keyword, "options") == 0 && o->val && *o->val)
            user = o->val;
    if (user == NULL && getenv("PGOPTIONS") && *getenv("PGOPTIONS"))
        user = getenv("PGOPTIONS");
    if (asprintf(&out, "%s%s%s%s%s", user ? user : "", user ? " " : "", WC_PG_PINNED_OPTIONS,
                 extra && *extra ? " " : "", extra && *extra ? extra : "") < 0) {
        out = NULL;
        wc_err_set(err, WC_ERR_INTERNAL, "out of memory");
    }
    PQconninfoFree(parsed);
    return out;
}

/* Server notices (a WARNING as the server shuts down, "relation ... already exists, skipping") are worth
 * a debug line, not raw text on stderr. */
static void notice_processor(void *arg, const char *message)
{
    char text[512];

    (void)arg;
    one_line(text, sizeof(text), message);
    wc_debug("server notice: %s", text);
}

PGconn *wc_pgconn_open(const struct wc_pgconn_opts *o, struct wc_err *err)
{
    const char *dsn = o->dsn && *o->dsn ? o->dsn : "";
    char *options = merged_options(dsn, o->options, err);
    PGconn *conn;

    if (options == NULL)
        return NULL;
    /* Timeouts and TCP keepalives come first so that the DSN can override them: a black-holed server must
     * not hang walcast until the kernel gives up on the connection. The DSN is expanded in place of
     * dbname; what follows it wins over what it says. */
    const char *keys[] = {"connect_timeout",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "tcp_user_timeout",
                          "dbname",
                          "replication",
                          "options",
                          "fallback_application_name",
                          NULL};
    const char *vals[] = {"10", "10", "5", "3", "30000", dsn, o->replication, options, "walcast", NULL};
    conn = PQconnectdbParams(keys, vals, 1);
    free(options);
    if (conn == NULL) {
        wc_err_set(err, WC_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        char where[256], msg[512];
        const char *hint;
        one_line(msg, sizeof(msg), PQerrorMessage(conn));
        int kind = wc_pg_error_kind(NULL, msg, &hint);
        if (o->who)
            snprintf(where, sizeof(where), "%s: could not connect", o->who);
        else {
            char server[200];
            wc_pg_describe(conn, server, sizeof(server));
            snprintf(where, sizeof(where), "could not connect to %s", server);
        }
        wc_err_set(err, kind, "%s: %s%s%s", where, msg, *hint ? ": " : "", hint);
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeProcessor(conn, notice_processor, NULL);
    return conn;
}

PGconn *wc_pg_connect(const char *dsn, const char *replication, struct wc_err *err)
{
    struct wc_pgconn_opts o = {.dsn = dsn, .replication = replication};

    return wc_pgconn_open(&o, err);
}

void wc_pg_describe(PGconn *conn, char *buf, size_t size)
{
    const char *host = PQhost(conn), *port = PQport(conn), *db = PQdb(conn), *user = PQuser(conn);

    snprintf(buf, size, "server \"%s:%s\" database \"%s\" user \"%s\"", host && *host ? host : "localhost",
             port && *port ? port : "5432", db ? db : "", user ? user : "");
}

/* ---- waiting with a deadline ---- */

static void *cancel_thread(void *arg)
{
    PGcancel *c = arg;
    char buf[256];

    PQcancel(c, buf, sizeof(buf));
    PQfreeCancel(c);
    return NULL;
}

void wc_pg_cancel(PGconn *c)
{
    PGcancel *cancel = c ? PQgetCancel(c) : NULL;
    pthread_attr_t attr;
    pthread_t t;

    if (cancel == NULL)
        return;
    /* PQcancel connects to the server and waits for it to close that connection: a stopped server makes
     * it wait until it runs again. Nobody waits for this thread. */
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, cancel_thread, cancel) != 0)
        PQfreeCancel(cancel);
    pthread_attr_destroy(&attr);
}

void wc_pg_close(PGconn *c)
{
    if (c == NULL)
        return;
    /* PQfinish sends a Terminate message: on a blocking connection whose server stopped reading, that
     * write would wait for ever. */
    PQsetnonblocking(c, 1);
    PQfinish(c);
}

/* Wait for events (POLLIN, POLLOUT) on c's socket, at most timeout_ms. 1 ready, 0 silent, -1 error. */
static int wait_socket(PGconn *c, short events, int timeout_ms, struct wc_err *err)
{
    struct pollfd pfd = {.fd = PQsocket(c), .events = events};
    int n;

    if (pfd.fd < 0) {
        wc_err_set(err, WC_ERR_IO, "connection lost: %s", PQerrorMessage(c));
        return -1;
    }
    do
        n = poll(&pfd, 1, timeout_ms);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        wc_err_set(err, WC_ERR_IO, "poll failed: %s", strerror(errno));
        return -1;
    }
    return n > 0;
}

static int silent(PGconn *c, int timeout_ms, struct wc_err *err)
{
    wc_pg_cancel(c);
    wc_err_set(err, WC_ERR_IO, "no reply from the server within %d ms: statement cancelled", timeout_ms);
    return -1;
}

static int consume(PGconn *c, struct wc_err *err)
{
    char msg[512];

    if (PQconsumeInput(c))
        return 0;
    one_line(msg, sizeof(msg), PQerrorMessage(c));
    wc_err_set(err, WC_ERR_IO, "connection lost: %s", msg);
    return -1;
}

int wc_pg_wait(PGconn *c, int timeout_ms, struct wc_err *err)
{
    while (PQisBusy(c)) {
        int r = wait_socket(c, POLLIN, timeout_ms, err);
        if (r < 0)
            return -1;
        if (r == 0)
            return silent(c, timeout_ms, err);
        if (consume(c, err) < 0)
            return -1;
    }
    return 0;
}

int wc_pg_flush(PGconn *c, int timeout_ms, struct wc_err *err)
{
    for (;;) {
        int rc = PQflush(c);
        if (rc == 0)
            return 0;
        if (rc < 0) {
            char msg[512];
            one_line(msg, sizeof(msg), PQerrorMessage(c));
            wc_err_set(err, WC_ERR_IO, "could not send: %s", msg);
            return -1;
        }
        /* The server's replies may fill the socket while we still send: read them meanwhile, or both
         * sides wait for each other. */
        int r = wait_socket(c, POLLIN | POLLOUT, timeout_ms, err);
        if (r < 0)
            return -1;
        if (r == 0)
            return silent(c, timeout_ms, err);
        if (consume(c, err) < 0)
            return -1;
    }
}

PGresult *wc_pg_collect(PGconn *c, int timeout_ms, struct wc_err *err)
{
    PGresult *keep = NULL, *r;

    if (PQisnonblocking(c) && wc_pg_flush(c, timeout_ms, err) < 0)
        return NULL;
    for (;;) {
        if (wc_pg_wait(c, timeout_ms, err) < 0) {
            PQclear(keep);
            return NULL;
        }
        if ((r = PQgetResult(c)) == NULL)
            break;
        if (keep == NULL || PQresultStatus(keep) != PGRES_FATAL_ERROR) {
            PQclear(keep);
            keep = r;
        } else {
            PQclear(r);
        }
        /* COPY or a broken connection: nothing more comes as results. */
        if (PQresultStatus(keep) == PGRES_COPY_BOTH || PQresultStatus(keep) == PGRES_COPY_IN ||
            PQresultStatus(keep) == PGRES_COPY_OUT || PQstatus(c) == CONNECTION_BAD)
            break;
    }
    if (keep == NULL) {
        char msg[512];
        one_line(msg, sizeof(msg), PQerrorMessage(c));
        wc_err_set(err, WC_ERR_IO, "no result: %s", msg);
    }
    return keep;
}

PGresult *wc_pg_exec(PGconn *c, const char *sql, int nparams, const char *const *params, int timeout_ms,
                     struct wc_err *err)
{
    int ok =
        nparams == 0 ? PQsendQuery(c, sql) : PQsendQueryParams(c, sql, nparams, NULL, params, NULL, NULL, 0);

    if (!ok) {
        char msg[512];
        one_line(msg, sizeof(msg), PQerrorMessage(c));
        wc_err_set(err, WC_ERR_IO, "could not send: %s", msg);
        return NULL;
    }
    return wc_pg_collect(c, timeout_ms, err);
}
