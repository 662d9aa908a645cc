/* stream.c - logical replication over libpq's CopyBoth, following pg_recvlogical's StreamLogicalLog(). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <libpq-fe.h>

#include "walcast/log.h"
#include "walcast/pgconn.h"
#include "walcast/stream.h"

/* Microseconds between the Unix epoch and PostgreSQL's, 2000-01-01. */
#define PG_EPOCH_OFFSET_US INT64_C(946684800000000)
/* A server that sends nothing for this long is asked for a reply; one that stays silent twice as long
 * is gone (stopped, or the network dropped it without a reset): the connection is given up. */
#define SILENCE_PING_US INT64_C(15000000)
#define SILENCE_DEAD_US INT64_C(30000000)
/* How long START_REPLICATION may take to answer. */
#define START_TIMEOUT_MS 30000

struct wc_stream {
    PGconn *conn;
    char *copybuf;
    char *slot;
    wc_lsn received;   /* end of the newest XLogData */
    wc_lsn wal_end;    /* newest server WAL end */
    wc_lsn idle_lsn;   /* wal_end of the last keepalive that arrived with nothing before it undelivered */
    wc_lsn confirmed;  /* what status updates report as flushed */
    wc_lsn sent_flush; /* the flush LSN of the last update sent */
    int64_t last_status_us;
    int64_t last_recv_us; /* when the server last sent something */
    int pinged;           /* a reply was asked for since then */
    int status_interval_ms;
    int wake_fd; /* wc_stream_next() also returns when it is readable; -1 for none */
};

static int64_t now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static void put64(char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (char)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t get64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | (unsigned char)p[i];
    return v;
}

/* Quote s as an SQL string literal into buf. */
static void quote_literal(char *buf, size_t size, const char *s)
{
    size_t o = 0;
    if (size < 3)
        return;
    buf[o++] = '\'';
    for (; *s && o + 3 < size; s++) {
        if (*s == '\'')
            buf[o++] = '\'';
        buf[o++] = *s;
    }
    buf[o++] = '\'';
    buf[o] = '\0';
}

/* Classify a failed START_REPLICATION by SQLSTATE: slot problems are not worth a retry. */
static int start_error_code(const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    if (state == NULL)
        return WC_ERR_IO;
    if (strcmp(state, "55006") == 0)
        return WC_ERR_SLOT_ACTIVE;
    if (strcmp(state, "42704") == 0 || strcmp(state, "55006") == 0 || strcmp(state, "55000") == 0 ||
        strcmp(state, "42P01") == 0)
        return WC_ERR_SLOT;
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "57", 2) == 0 || strcmp(state, "53300") == 0)
        return WC_ERR_IO;
    /* wal2json missing on the server (58P01), no privilege (42501), authorization (28): a fault
     * someone must fix. */
    int kind = wc_pg_error_kind(state, PQresultErrorMessage(res), NULL);
    if (kind != 0)
        return kind;
    return WC_ERR_PROTOCOL;
}

/* A START_REPLICATION failure (res), with what to do about it where the slot or a fault someone must
 * fix is the cause. */
static void slot_error(struct wc_err *err, int code, const char *slot, const PGresult *res)
{
    char server_msg[768];
    const char *hint = "";
    size_t n;

    snprintf(server_msg, sizeof(server_msg), "%s", PQresultErrorMessage(res));
    n = strlen(server_msg);
    while (n > 0 && (server_msg[n - 1] == '\n' || server_msg[n - 1] == ' '))
        server_msg[--n] = '\0';
    for (char *c = server_msg; *c; c++)
        if (*c == '\n')
            *c = ' ';
    if (code == WC_ERR_SLOT && strstr(server_msg, "does not exist"))
        wc_err_set(
            err, code,
            "replication slot \"%s\" does not exist (dropped?): create it with \"walcast slot create\"; "
            "events committed while it was missing are not in it, so rebuild the projections",
            slot);
    else if (code == WC_ERR_SLOT && (strstr(server_msg, "no longer") || strstr(server_msg, "invalidated")))
        wc_err_set(
            err, code,
            "replication slot \"%s\" is lost: the server removed WAL it still needed "
            "(max_slot_wal_keep_size); recover with \"walcast slot drop\" and \"walcast slot create\", "
            "then rebuild the projections: %s",
            slot, server_msg);
    else if (code == WC_ERR_SLOT_ACTIVE)
        wc_err_set(err, code, "replication slot \"%s\" is in use by another process: %s", slot, server_msg);
    else {
        if (code == WC_ERR_CONFIG)
            wc_pg_error_kind(PQresultErrorField(res, PG_DIAG_SQLSTATE), server_msg, &hint);
        wc_err_set(err, code, "could not start streaming from slot \"%s\": %s%s%s", slot, server_msg,
                   *hint ? ": " : "", hint);
    }
}

/* wal2json's add-tables takes schema.table with "," "." and "\" escaped by a backslash. */
static void escape_table_name(char *buf, size_t size, const char *name)
{
    size_t o = 0;
    for (; *name && o + 2 < size; name++) {
        if (*name == ',' || *name == '.' || *name == '\\' || *name == '*')
            buf[o++] = '\\';
        buf[o++] = *name;
    }
    buf[o] = '\0';
}

struct wc_stream *wc_stream_open(const struct wc_stream_opts *opts, struct wc_err *err)
{
    struct wc_stream *s;
    char sql[2048], tables[600], tq[700], sch[300], tab[300], prefix[300];
    PGresult *res;

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        wc_err_set(err, WC_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    s->status_interval_ms = opts->status_interval_ms > 0 ? opts->status_interval_ms : 1000;
    s->wake_fd = -1;
    s->slot = strdup(opts->slot);
    s->conn = wc_pg_connect(opts->dsn, "database", err);
    if (s->conn == NULL)
        goto error;

    escape_table_name(sch, sizeof(sch), opts->schema);
    escape_table_name(tab, sizeof(tab), opts->table);
    snprintf(tables, sizeof(tables), "%s.%s", sch, tab);
    quote_literal(tq, sizeof(tq), tables);
    if (opts->msg_prefix && *opts->msg_prefix)
        quote_literal(prefix, sizeof(prefix), opts->msg_prefix);
    else
        /* wal2json needs some filter to drop other prefixes: one nobody emits. */
        quote_literal(prefix, sizeof(prefix), "walcast-none");
    snprintf(sql, sizeof(sql),
             "START_REPLICATION SLOT \"%s\" LOGICAL " WC_LSN_FMT " (\"format-version\" '2', "
             "\"include-transaction\" 'true', \"include-lsn\" 'true', \"include-timestamp\" 'true', "
             "\"add-tables\" %s, \"actions\" 'insert', \"add-msg-prefixes\" %s)",
             opts->slot, WC_LSN_ARGS(opts->start), tq, prefix);
    res = wc_pg_exec(s->conn, sql, 0, NULL, START_TIMEOUT_MS, err);
    if (res == NULL) {
        wc_err_prefix(err, "could not start streaming from slot \"%s\"", opts->slot);
        goto error;
    }
    if (PQresultStatus(res) != PGRES_COPY_BOTH) {
        slot_error(err, start_error_code(res), opts->slot, res);
        PQclear(res);
        goto error;
    }
    PQclear(res);
    s->confirmed = s->sent_flush =
        opts->confirmed && opts->confirmed < opts->start ? opts->confirmed : opts->start;
    s->last_status_us = s->last_recv_us = now_us();
    wc_debug("streaming from slot \"%s\" at " WC_LSN_FMT, opts->slot, WC_LSN_ARGS(opts->start));
    return s;

error:
    wc_pg_close(s->conn);
    free(s->slot);
    free(s);
    return NULL;
}

void wc_stream_wake_on(struct wc_stream *s, int fd)
{
    s->wake_fd = fd;
}

static int send_status(struct wc_stream *s, int reply_requested, struct wc_err *err)
{
    char buf[1 + 8 * 4 + 1];
    int64_t now = now_us();

    buf[0] = 'r';
    put64(buf + 1, s->received > s->confirmed ? s->received : s->confirmed); /* written */
    put64(buf + 9, s->confirmed);                                            /* flushed */
    put64(buf + 17, s->confirmed);                                           /* applied */
    put64(buf + 25, (uint64_t)(now - PG_EPOCH_OFFSET_US));
    buf[33] = reply_requested ? 1 : 0;
    if (PQputCopyData(s->conn, buf, sizeof(buf)) <= 0 || PQflush(s->conn) != 0) {
        wc_err_set(err, WC_ERR_IO, "could not send standby status update: %s", PQerrorMessage(s->conn));
        return -1;
    }
    s->last_status_us = now;
    s->sent_flush = s->confirmed;
    return 0;
}

int wc_stream_feedback(struct wc_stream *s, int force, struct wc_err *err)
{
    if (force || now_us() - s->last_status_us >= (int64_t)s->status_interval_ms * 1000)
        return send_status(s, 0, err);
    return 0;
}

void wc_stream_confirm(struct wc_stream *s, wc_lsn lsn)
{
    if (lsn > s->confirmed)
        s->confirmed = lsn;
}

wc_lsn wc_stream_wal_end(const struct wc_stream *s)
{
    return s->wal_end;
}

wc_lsn wc_stream_idle_lsn(const struct wc_stream *s)
{
    return s->idle_lsn;
}

wc_lsn wc_stream_confirmed(const struct wc_stream *s)
{
    return s->confirmed;
}

int wc_stream_backend_pid(const struct wc_stream *s)
{
    return PQbackendPID(s->conn);
}

/* The server ended the COPY: read why. */
static int stream_ended(struct wc_stream *s, struct wc_err *err)
{
    PGresult *res = PQgetResult(s->conn);
    int code = WC_ERR_IO;
    const char *msg = PQerrorMessage(s->conn);

    if (res && PQresultStatus(res) == PGRES_FATAL_ERROR) {
        code = start_error_code(res);
        if (code == WC_ERR_PROTOCOL)
            code = WC_ERR_IO;
        msg = PQresultErrorMessage(res);
        if (code != WC_ERR_IO) {
            slot_error(err, code, s->slot, res);
            PQclear(res);
            return -1;
        }
    } else if (res && PQresultStatus(res) == PGRES_COMMAND_OK) {
        msg = "the server ended the stream";
    }
    wc_err_set(err, code, "replication stream from slot \"%s\" ended: %s", s->slot, msg);
    PQclear(res);
    return -1;
}

int wc_stream_next(struct wc_stream *s, int timeout_ms, const char **msg, size_t *len, wc_lsn *wal_start,
                   struct wc_err *err)
{
    int64_t deadline = now_us() + (int64_t)timeout_ms * 1000;
    int read_socket = 0; /* the socket was read at least once in this call */

    for (;;) {
        if (s->copybuf) {
            PQfreemem(s->copybuf);
            s->copybuf = NULL;
        }
        int r = PQgetCopyData(s->conn, &s->copybuf, 1);
        if (r == 0) {
            int64_t now = now_us();
            int64_t status_due = s->last_status_us + (int64_t)s->status_interval_ms * 1000;
            if (now >= status_due && send_status(s, 0, err) < 0)
                return -1;
            /* A silent server is asked for a reply (a keepalive comes back at once from a live one), and
             * given up when that does not come either: TCP keepalives do not fire while our status
             * updates are unacknowledged, and a stopped server acknowledges at the TCP level. */
            if (now - s->last_recv_us >= SILENCE_DEAD_US) {
                wc_err_set(err, WC_ERR_IO,
                           "replication connection lost: no message from the server for %d s, not even an "
                           "answer to a request for one",
                           (int)(SILENCE_DEAD_US / 1000000));
                return -1;
            }
            if (!s->pinged && now - s->last_recv_us >= SILENCE_PING_US) {
                if (send_status(s, 1, err) < 0)
                    return -1;
                s->pinged = 1;
            }
            /* Past the deadline, still read what the socket already holds once: a zero timeout means
             * "whatever has arrived", not "nothing". */
            if (now >= deadline && read_socket)
                return 0;
            int64_t until = deadline < status_due ? deadline : status_due;
            int64_t silence_due = s->last_recv_us + (s->pinged ? SILENCE_DEAD_US : SILENCE_PING_US);
            if (silence_due < until)
                until = silence_due;
            int wait_ms = now >= deadline ? 0 : (int)((until - now + 999) / 1000);
            struct pollfd pfd[2] = {{.fd = PQsocket(s->conn), .events = POLLIN},
                                    {.fd = s->wake_fd, .events = POLLIN}};
            if (pfd[0].fd < 0) {
                wc_err_set(err, WC_ERR_IO, "replication connection lost: invalid socket");
                return -1;
            }
            if (poll(pfd, s->wake_fd >= 0 ? 2 : 1, wait_ms < 0 ? 0 : wait_ms) < 0 && errno != EINTR) {
                wc_err_set(err, WC_ERR_IO, "poll failed: %s", strerror(errno));
                return -1;
            }
            if (PQconsumeInput(s->conn) == 0) {
                wc_err_set(err, WC_ERR_IO, "replication connection lost: %s", PQerrorMessage(s->conn));
                return -1;
            }
            /* Woken: hand back what has arrived, then return. */
            if (s->wake_fd >= 0 && (pfd[1].revents & POLLIN))
                deadline = now;
            read_socket = 1;
            continue;
        }
        if (r == -1)
            return stream_ended(s, err);
        if (r < -1) {
            wc_err_set(err, WC_ERR_IO, "replication connection lost: %s", PQerrorMessage(s->conn));
            return -1;
        }
        s->last_recv_us = now_us();
        s->pinged = 0;
        if (s->copybuf[0] == 'k') {
            if (r < 18) {
                wc_err_set(err, WC_ERR_PROTOCOL, "streaming header too small: %d", r);
                return -1;
            }
            wc_lsn end = get64(s->copybuf + 1);
            if (end > s->wal_end)
                s->wal_end = end;
            /* A keepalive with no data buffered behind it: every transaction that committed before end
             * has been delivered. */
            if (end > s->idle_lsn)
                s->idle_lsn = end;
            if (s->copybuf[17] && send_status(s, 0, err) < 0)
                return -1;
            continue;
        }
        if (s->copybuf[0] == 'w') {
            if (r < 25) {
                wc_err_set(err, WC_ERR_PROTOCOL, "streaming header too small: %d", r);
                return -1;
            }
            wc_lsn start = get64(s->copybuf + 1), end = get64(s->copybuf + 9);
            if (end > s->wal_end)
                s->wal_end = end;
            if (start > s->received)
                s->received = start;
            *wal_start = start;
            *msg = s->copybuf + 25;
            *len = (size_t)r - 25;
            return 1;
        }
        wc_err_set(err, WC_ERR_PROTOCOL, "unrecognized streaming header: \"%c\"", s->copybuf[0]);
        return -1;
    }
}

void wc_stream_close(struct wc_stream *s)
{
    struct wc_err err;

    if (s == NULL)
        return;
    if (s->copybuf)
        PQfreemem(s->copybuf);
    if (s->conn) {
        /* Best effort and never blocking: a server that stopped reading must not hold up a restart. */
        PQsetnonblocking(s->conn, 1);
        if (PQstatus(s->conn) == CONNECTION_OK && send_status(s, 0, &err) == 0) {
            PQputCopyEnd(s->conn, NULL);
            PQflush(s->conn);
        }
        wc_pg_close(s->conn);
    }
    free(s->slot);
    free(s);
}
