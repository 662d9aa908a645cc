/* pipe.c - the PostgreSQL sink's pipelines: statements sent without waiting, then every result read. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pg.h"
#include "walcast/pgconn.h"

/*
 * Write out everything libpq holds, reading whatever the server sends meanwhile: with a long pipeline
 * the server's replies fill the socket while we still send, and a blocking write would deadlock. A
 * server that neither reads nor answers for the sink's wait gets the statement cancelled.
 */
static int pipe_flush(struct wc_sink *s, struct wc_err *err)
{
    struct pg *p = s->priv;

    if (wc_pg_flush(p->conn, p->wait_ms, err) < 0) {
        wc_err_prefix(err, "sink \"%s\"", s->name);
        return -1;
    }
    return 0;
}

int pg_pipe_begin(struct wc_sink *s, struct wc_err *err)
{
    struct pg *p = s->priv;

    p->nsent = 0;
    if (PQsetnonblocking(p->conn, 1) < 0 || !PQenterPipelineMode(p->conn)) {
        PQsetnonblocking(p->conn, 0);
        return pg_fail_result(s, NULL, WC_ERR_IO, "could not start a pipeline", err);
    }
    return 0;
}

static int pipe_sent(struct wc_sink *s, int ok, struct wc_err *err)
{
    struct pg *p = s->priv;

    if (!ok)
        return pg_fail_result(s, NULL, WC_ERR_IO, "could not send", err);
    /* Keep libpq's output buffer small (and the server's replies moving) in long batches. */
    if (++p->nsent % 128 == 0)
        return pipe_flush(s, err);
    return 0;
}

int pg_pipe_sql(struct wc_sink *s, const char *sql, struct wc_err *err)
{
    struct pg *p = s->priv;

    return pipe_sent(s, PQsendQueryParams(p->conn, sql, 0, NULL, NULL, NULL, NULL, 0), err);
}

/* Parameter values of op, pointing into the arena. */
static const char **op_values(struct wc_sink *s, const struct pg_batch *b, const struct pg_op *op,
                              int *nvalues)
{
    struct pg *p = s->priv;
    int n = 0;

    p->values = pg_grow(p->values, &p->capvalues, op->nparams + 2, sizeof(*p->values));
    if (op->prep == PREP_DEAD) {
        p->values[n++] = pg_slot_name(s);
        p->values[n++] = s->name;
    }
    for (int j = 0; j < op->nparams; j++)
        p->values[n++] = wc_recs_str(&b->recs, b->offs[op->first + (size_t)j]);
    *nvalues = n;
    return p->values;
}

int pg_pipe_op(struct wc_sink *s, const struct pg_batch *b, const struct pg_op *op, struct wc_err *err)
{
    struct pg *p = s->priv;
    int n;
    const char **v = op_values(s, b, op, &n);

    return pipe_sent(s, PQsendQueryPrepared(p->conn, p->prep[op->prep].name, n, v, NULL, NULL, 0), err);
}

int pg_pipe_cursor(struct wc_sink *s, struct wc_pos cursor, struct wc_err *err)
{
    struct pg *p = s->priv;
    char lsn[WC_LSN_STRLEN], idx[24];
    const char *v[4] = {pg_slot_name(s), s->name, wc_lsn_format(cursor.lsn, lsn), idx};

    /* dlq retry applies old events while an engine may be moving the cursor: it must not write it. */
    if (s->retrying)
        return pg_pipe_sql(s, "SELECT 1", err);
    snprintf(idx, sizeof(idx), "%" PRId64, cursor.index);
    return pipe_sent(s, PQsendQueryPrepared(p->conn, p->prep[PREP_CURSOR].name, 4, v, NULL, NULL, 0), err);
}

/*
 * Sync, flush and read every result. Returns 0 with res->failed_at = the first command the server
 * rejected (-1 when none), or -1 with err (WC_ERR_IO) when the connection failed or a rejection was
 * transient. The pipeline is left in every case.
 */
int pg_pipe_end(struct wc_sink *s, struct pipe_res *res, struct wc_err *err)
{
    struct pg *p = s->priv;
    PGresult *r;
    int kind = 0, synced = 0;

    res->failed_at = -1;
    res->sqlstate[0] = res->msg[0] = '\0';
    if (!PQpipelineSync(p->conn)) {
        pg_fail_result(s, NULL, WC_ERR_IO, "could not send", err);
        goto bad;
    }
    if (pipe_flush(s, err) < 0)
        goto bad;
    /* Everything is sent. Each result is waited for with the sink's deadline: a server that stops
     * answering (stopped, a dropped network) gets the statement cancelled, the connection given up. */
    for (int i = 0; i < p->nsent; i++) {
        for (;;) {
            if (wc_pg_wait(p->conn, p->wait_ms, err) < 0) {
                wc_err_prefix(err, "sink \"%s\"", s->name);
                goto bad;
            }
            if ((r = PQgetResult(p->conn)) == NULL)
                break;
            if (PQresultStatus(r) == PGRES_FATAL_ERROR && res->failed_at < 0) {
                const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
                res->failed_at = i;
                snprintf(res->sqlstate, sizeof(res->sqlstate), "%s", st ? st : "");
                pg_result_msg(r, res->msg, sizeof(res->msg));
                kind = pg_sqlstate_kind(st);
            }
            PQclear(r);
            if (PQstatus(p->conn) == CONNECTION_BAD)
                break;
        }
        if (PQstatus(p->conn) == CONNECTION_BAD)
            break;
    }
    if (PQstatus(p->conn) == CONNECTION_OK) {
        if (wc_pg_wait(p->conn, p->wait_ms, err) < 0) {
            wc_err_prefix(err, "sink \"%s\"", s->name);
            goto bad;
        }
        r = PQgetResult(p->conn);
        synced = r != NULL && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
    }
    if (!synced || !PQexitPipelineMode(p->conn)) {
        if (res->failed_at >= 0)
            wc_err_set(err, WC_ERR_IO, "sink \"%s\": connection lost: %s", s->name, res->msg);
        else
            pg_fail_result(s, NULL, WC_ERR_IO, "connection lost", err);
        goto bad;
    }
    PQsetnonblocking(p->conn, 0);
    if (res->failed_at >= 0 && kind != 0) {
        /* Not the event's fault: a timeout, a lock, the server going away (IO), or a table, column or
         * privilege missing (CONFIG). The whole batch waits for it to pass or be fixed. */
        const char *hint = "";
        if (kind == WC_ERR_CONFIG)
            wc_pg_error_kind(res->sqlstate, res->msg, &hint);
        wc_err_set(err, kind, "sink \"%s\": %s%s%s", s->name, res->msg, *hint ? ": " : "", hint);
        pg_rollback_quietly(p);
        return -1;
    }
    return 0;

bad:
    err->code = WC_ERR_IO;
    if (PQpipelineStatus(p->conn) != PQ_PIPELINE_OFF && !PQexitPipelineMode(p->conn)) {
        /* Results still pending (a broken connection, a server that stopped answering): nothing more can go
         * through it; the engine closes it. It stays non-blocking, so closing cannot hang. */
        return -1;
    }
    PQsetnonblocking(p->conn, 0);
    pg_rollback_quietly(p);
    return -1;
}
