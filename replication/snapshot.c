/* snapshot.c - read the outbox table from a snapshot exported by a temporary slot, rows as events. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "walcast/clock.h"
#include "walcast/pgconn.h"
#include "walcast/snapshot.h"

struct wc_snapshot {
    PGconn *repl; /* holds the temporary slot (dropped with the connection) */
    PGconn *conn; /* reads the outbox inside the exported snapshot */
    PGresult *res;
    int row;
    int64_t index;
    char iso[WC_COL_COUNT][48];
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
    free(s);
}

struct wc_snapshot *wc_snapshot_open(const char *dsn, const struct wc_outbox *ob, wc_lsn *point,
                                     struct wc_err *err)
{
    struct wc_snapshot *s = calloc(1, sizeof(*s));
    char sql[256], snapshot[128], q[WC_COL_COUNT][200], query[2048];
    PGresult *res;

    if (s == NULL) {
        wc_err_set(err, WC_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    s->repl = wc_pg_connect(dsn, "database", err);
    s->conn = s->repl ? wc_pg_connect(dsn, NULL, err) : NULL;
    if (s->conn == NULL)
        goto error;
    snprintf(sql, sizeof(sql),
             "CREATE_REPLICATION_SLOT \"walcast_rebuild_%d\" TEMPORARY LOGICAL wal2json (SNAPSHOT 'export')",
             (int)getpid());
    res = PQexec(s->repl, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || wc_lsn_parse(PQgetvalue(res, 0, 1), point) < 0) {
        result_error(err, "could not create a snapshot slot", res);
        PQclear(res);
        goto error;
    }
    snprintf(snapshot, sizeof(snapshot), "%s", PQgetvalue(res, 0, 2));
    PQclear(res);

    for (int c = 0; c < WC_COL_COUNT; c++) {
        char *id = PQescapeIdentifier(s->conn, ob->columns[c], strlen(ob->columns[c]));
        snprintf(q[c], sizeof(q[c]), "%s", id);
        PQfreemem(id);
    }
    char *schema = PQescapeIdentifier(s->conn, ob->schema, strlen(ob->schema));
    char *table = PQescapeIdentifier(s->conn, ob->table, strlen(ob->table));
    char *lit = PQescapeLiteral(s->conn, snapshot, strlen(snapshot));
    snprintf(
        query, sizeof(query),
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT %s; "
        "DECLARE walcast_rebuild NO SCROLL CURSOR FOR SELECT %s, %s, %s, %s, %s, %s FROM %s.%s ORDER BY %s",
        lit, q[0], q[1], q[2], q[3], q[4], q[5], schema, table, q[0]);
    PQfreemem(schema);
    PQfreemem(table);
    PQfreemem(lit);
    res = PQexec(s->conn, query);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        result_error(err, "could not read the outbox", res);
        PQclear(res);
        goto error;
    }
    PQclear(res);
    return s;

error:
    wc_snapshot_close(s);
    return NULL;
}

int wc_snapshot_next(struct wc_snapshot *s, struct wc_event *ev, struct wc_err *err)
{
    const char *text[WC_COL_COUNT];
    int kind[WC_COL_COUNT];

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
    for (int k = 0; k < WC_COL_COUNT; k++) {
        kind[k] = WC_VAL_STRING;
        if (PQgetisnull(s->res, s->row, k)) {
            text[k] = NULL;
            continue;
        }
        text[k] = PQgetvalue(s->res, s->row, k);
        Oid type = PQftype(s->res, k);
        /* int2, int4, int8, numeric render as JSON numbers in wal2json too. */
        if (type == 20 || type == 21 || type == 23 || type == 1700)
            kind[k] = WC_VAL_NUMBER;
        if (type == 1184 || type == 1114) { /* timestamptz, timestamp */
            wc_timestamp_iso(text[k], s->iso[k], sizeof(s->iso[k]));
            text[k] = s->iso[k];
        }
    }
    wc_event_from_texts(ev, (struct wc_pos){0, s->index++}, text, NULL, kind);
    s->row++;
    return 1;
}
