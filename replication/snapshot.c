/*
 * snapshot.c - read the outbox table from a snapshot exported by a temporary slot, rows as events.
 *
 * A rebuilt event must be the event the stream delivered: a projection that reads a boolean, a number or
 * a timestamp must not change after a rebuild. So each row is rendered as the message wal2json would have
 * sent for it -- every value by its column's type, with the very rules of wal2json's
 * pg_decode_write_value() -- and handed to the stream's decoder. The values come from the same output
 * functions under the same pinned session settings (replication/pgconn.c) as in the walsender.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "walcast/buf.h"
#include "walcast/decode.h"
#include "walcast/log.h"
#include "walcast/pgconn.h"
#include "walcast/snapshot.h"

struct wc_snapshot {
    PGconn *repl; /* holds the temporary slot (dropped with the connection) */
    PGconn *conn; /* reads the outbox inside the exported snapshot */
    PGresult *res;
    int row;
    int64_t index;
    wc_lsn point;
    char point_text[WC_LSN_STRLEN];
    struct wc_outbox_info info;
    int cols[WC_COL_COUNT]; /* the result column of each configured column, -1 when absent */
    int ts_col;             /* the commit timestamp's result column, -1 when not tracked */
    char *schema, *table;
    const char *names[WC_COL_COUNT];
    struct wc_decoder *dec;
    struct wc_buf msg;
};

/* err from a failed result: a fault someone must fix (wal2json missing, no privilege, a missing table or
 * column: WC_ERR_CONFIG, with what to do) or one that may pass (WC_ERR_IO). */
static void result_error(struct wc_err *err, const char *what, const PGresult *res)
{
    const char *hint;
    const char *msg = PQresultErrorMessage(res);
    int kind = wc_pg_error_kind(PQresultErrorField(res, PG_DIAG_SQLSTATE), msg, &hint);
    char text[700];
    size_t n;

    snprintf(text, sizeof(text), "%s", msg);
    n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
        text[--n] = '\0';
    wc_err_set(err, kind == WC_ERR_CONFIG ? WC_ERR_CONFIG : WC_ERR_IO, "%s: %s%s%s", what, text,
               kind == WC_ERR_CONFIG && *hint ? ": " : "", kind == WC_ERR_CONFIG ? hint : "");
}

void wc_snapshot_close(struct wc_snapshot *s)
{
    if (s == NULL)
        return;
    PQclear(s->res);
    if (s->conn)
        PQfinish(s->conn);
    if (s->repl)
        PQfinish(s->repl);
    wc_decoder_free(s->dec);
    wc_buf_free(&s->msg);
    free(s->schema);
    free(s->table);
    free(s);
}

static int exec_ok(PGconn *c, const char *sql, const char *what, struct wc_err *err)
{
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        result_error(err, what, r);
    PQclear(r);
    return ok ? 0 : -1;
}

struct wc_snapshot *wc_snapshot_open(const char *dsn, const struct wc_outbox *ob, wc_lsn *point,
                                     struct wc_err *err)
{
    return wc_snapshot_open_slot(dsn, ob, NULL, point, err);
}

/* Snapshots this process has taken: part of their temporary slots' names. */
static unsigned snapshots;

struct wc_snapshot *wc_snapshot_open_slot(const char *dsn, const struct wc_outbox *ob, const char *slot,
                                          wc_lsn *point, struct wc_err *err)
{
    struct wc_snapshot *s = calloc(1, sizeof(*s));
    char sql[256], snapshot[128];
    struct wc_buf q = WC_BUF_INIT;
    PGresult *res;

    if (s == NULL) {
        wc_err_set(err, WC_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    s->repl = wc_pg_connect(dsn, "database", err);
    s->conn = s->repl ? wc_pg_connect(dsn, NULL, err) : NULL;
    if (s->conn == NULL)
        goto error;
    if (slot != NULL)
        snprintf(sql, sizeof(sql), "CREATE_REPLICATION_SLOT \"%s\" LOGICAL wal2json (SNAPSHOT 'export')",
                 slot);
    else
        /* A name of its own each time: the temporary slot of this process's previous snapshot is dropped
         * only once its walsender has exited, which the server does after PQfinish returns. */
        snprintf(sql, sizeof(sql),
                 "CREATE_REPLICATION_SLOT \"walcast_rebuild_%d_%u\" TEMPORARY LOGICAL wal2json (SNAPSHOT "
                 "'export')",
                 (int)getpid(), __atomic_add_fetch(&snapshots, 1, __ATOMIC_RELAXED));
    res = PQexec(s->repl, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || wc_lsn_parse(PQgetvalue(res, 0, 1), point) < 0) {
        result_error(err, "could not create a snapshot slot", res);
        PQclear(res);
        goto error;
    }
    snprintf(snapshot, sizeof(snapshot), "%s", PQgetvalue(res, 0, 2));
    PQclear(res);
    s->point = *point;
    wc_lsn_format(*point, s->point_text);

    char *lit = PQescapeLiteral(s->conn, snapshot, strlen(snapshot));
    wc_buf_printf(&q, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT %s", lit);
    PQfreemem(lit);
    if (exec_ok(s->conn, q.data, "could not read the outbox", err) < 0)
        goto error;

    /* The outbox as the snapshot sees it: its columns' types, and the order to replay it in. */
    if (wc_outbox_check(s->conn, ob, &s->info, err) < 0)
        goto error;
    if (s->info.order[0] == '\0') {
        wc_err_set(err, WC_ERR_CONFIG, "%s", s->info.order_problem);
        goto error;
    }
    if (s->info.order_caveat[0])
        wc_warning("%s", s->info.order_caveat);
    res = PQexec(s->conn, "SELECT current_setting('track_commit_timestamp')::bool");
    int track = PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);

    wc_buf_reset(&q);
    wc_buf_puts(&q, "DECLARE walcast_rebuild NO SCROLL CURSOR FOR SELECT ");
    int ncol = 0;
    for (int c = 0; c < WC_COL_COUNT; c++) {
        s->cols[c] = -1;
        s->names[c] = ob->columns[c];
        if (ob->columns[c] == NULL || *ob->columns[c] == '\0')
            continue;
        char *id = PQescapeIdentifier(s->conn, ob->columns[c], strlen(ob->columns[c]));
        wc_buf_printf(&q, "%s%s", ncol ? ", " : "", id);
        PQfreemem(id);
        s->cols[c] = ncol++;
    }
    s->ts_col = -1;
    if (track) {
        /* The commit time the stream would have given the row (NULL once its transaction is frozen). */
        wc_buf_printf(&q, ", pg_xact_commit_timestamp(xmin)");
        s->ts_col = ncol++;
    }
    char *schema = PQescapeIdentifier(s->conn, ob->schema, strlen(ob->schema));
    char *table = PQescapeIdentifier(s->conn, ob->table, strlen(ob->table));
    wc_buf_printf(&q, " FROM %s.%s ORDER BY %s", schema, table, s->info.order);
    PQfreemem(schema);
    PQfreemem(table);
    if (exec_ok(s->conn, q.data, "could not read the outbox", err) < 0)
        goto error;
    wc_buf_free(&q);
    wc_info("rebuilds replay the outbox in %s order", s->info.order_desc);

    s->schema = strdup(ob->schema);
    s->table = strdup(ob->table);
    s->dec = wc_decoder_new(ob->schema, ob->table, ob->columns, NULL);
    if (s->schema == NULL || s->table == NULL || s->dec == NULL) {
        wc_err_set(err, WC_ERR_INTERNAL, "out of memory");
        goto error;
    }
    return s;

error:
    wc_buf_free(&q);
    wc_snapshot_close(s);
    return NULL;
}

/* OIDs of the types wal2json writes other than as a JSON string (pg_type.h). */
enum {
    T_BOOL = 16,
    T_BYTEA = 17,
    T_INT8 = 20,
    T_INT2 = 21,
    T_INT4 = 23,
    T_OID = 26,
    T_FLOAT4 = 700,
    T_FLOAT8 = 701,
    T_NUMERIC = 1700
};

/* A value as wal2json 2.x writes it (pg_decode_write_value): by the column's type, from its output text. */
static void put_value(struct wc_buf *b, unsigned typid, const char *text)
{
    switch (typid) {
    case T_INT2:
    case T_INT4:
    case T_INT8:
    case T_OID:
    case T_FLOAT4:
    case T_FLOAT8:
    case T_NUMERIC:
        /* NaN and infinities are no JSON numbers: null. Anything else verbatim. */
        if (strncasecmp(text, "NaN", 3) == 0 || strncasecmp(text, "Infinity", 8) == 0 ||
            strncasecmp(text, "-Infinity", 9) == 0)
            wc_buf_puts(b, "null");
        else
            wc_buf_puts(b, text);
        break;
    case T_BOOL:
        wc_buf_puts(b, strcmp(text, "t") == 0 ? "true" : "false");
        break;
    case T_BYTEA:
        /* "\x5461": the hex digits after the \x. */
        text += strncmp(text, "\\x", 2) == 0 ? 2 : 0;
        wc_buf_json_string(b, text, strlen(text));
        break;
    default:
        wc_buf_json_string(b, text, strlen(text));
        break;
    }
}

int wc_snapshot_next(struct wc_snapshot *s, struct wc_event *ev, struct wc_err *err)
{
    struct wc_decoded d;

    if (s->res == NULL || s->row >= PQntuples(s->res)) {
        PQclear(s->res);
        s->res = PQexec(s->conn, "FETCH FORWARD 1000 FROM walcast_rebuild");
        s->row = 0;
        if (PQresultStatus(s->res) != PGRES_TUPLES_OK) {
            result_error(err, "could not read the outbox", s->res);
            return -1;
        }
        if (PQntuples(s->res) == 0)
            return 0;
    }
    struct wc_buf *b = &s->msg;
    wc_buf_reset(b);
    wc_buf_puts(b, "{\"action\":\"I\"");
    if (s->ts_col >= 0 && !PQgetisnull(s->res, s->row, s->ts_col)) {
        wc_buf_puts(b, ",\"timestamp\":");
        const char *ts = PQgetvalue(s->res, s->row, s->ts_col);
        wc_buf_json_string(b, ts, strlen(ts));
    }
    wc_buf_printf(b, ",\"lsn\":\"%s\",\"schema\":", s->point_text);
    wc_buf_json_string(b, s->schema, strlen(s->schema));
    wc_buf_puts(b, ",\"table\":");
    wc_buf_json_string(b, s->table, strlen(s->table));
    wc_buf_puts(b, ",\"columns\":[");
    int first = 1;
    for (int c = 0; c < WC_COL_COUNT; c++) {
        int k = s->cols[c];
        if (k < 0)
            continue;
        wc_buf_puts(b, first ? "{\"name\":" : ",{\"name\":");
        first = 0;
        wc_buf_json_string(b, s->names[c], strlen(s->names[c]));
        wc_buf_puts(b, ",\"type\":");
        wc_buf_json_string(b, s->info.type[c], strlen(s->info.type[c]));
        wc_buf_puts(b, ",\"value\":");
        if (PQgetisnull(s->res, s->row, k))
            wc_buf_puts(b, "null");
        else
            put_value(b, s->info.typid[c], PQgetvalue(s->res, s->row, k));
        wc_buf_puts(b, "}");
    }
    wc_buf_puts(b, "]}");
    s->row++;
    if (wc_decode_message(s->dec, b->data, b->len, s->point, &d, err) < 0)
        return -1;
    if (d.kind != WC_DECODED_EVENT) {
        wc_err_set(err, WC_ERR_INTERNAL, "a rebuilt outbox row did not decode as an event");
        return -1;
    }
    *ev = d.event;
    ev->pos = (struct wc_pos){s->point, s->index++};
    ev->end_lsn = s->point;
    return 1;
}
