/* commit.c - the PostgreSQL sink's commit: the batch and the cursor in one pipelined transaction, and
 * when the server rejects a statement, again event by event with a savepoint each; the rebuild's wipe. */
#include <stdio.h>
#include <string.h>

#include "pg.h"
#include "walcast/log.h"

/* The fast path: the whole batch and the cursor in one pipelined transaction. *rejected is set when a
 * statement failed for a reason the slow path can sort out. */
static int commit_fast(struct wc_sink *s, const struct pg_batch *b, struct wc_pos cursor, int *rejected,
                       struct pipe_res *res, struct wc_err *err)
{
    struct pg *p = s->priv;

    *rejected = 0;
    if (pg_pipe_begin(s, err) < 0)
        return -1;
    if (pg_pipe_sql(s, "BEGIN", err) < 0)
        goto send_failed;
    for (int i = 0; i < b->nops; i++)
        if (pg_pipe_op(s, b, &b->ops[i], err) < 0)
            goto send_failed;
    if (pg_dlq_pipe_prune(s, err) < 0)
        goto send_failed;
    if (pg_pipe_cursor(s, cursor, err) < 0 || pg_pipe_sql(s, "COMMIT", err) < 0)
        goto send_failed;
    if (pg_pipe_end(s, res, err) < 0)
        return -1;
    if (res->failed_at >= 0) {
        /* In a failed explicit transaction the session is left aborted at the sync. */
        pg_rollback_quietly(p);
        *rejected = 1;
    }
    return 0;

send_failed:
    pg_pipe_end(s, res, err);
    err->code = WC_ERR_IO;
    return -1;
}

/*
 * The slow path, after the fast one was rejected: one transaction again, each event in a savepoint
 * (its statements pipelined). An event whose statements fail is rolled back to its savepoint and handed
 * to the on_error policy; its dead letter is written in the same transaction. Deferred constraints are
 * made immediate so that they, too, fail inside the event's savepoint rather than at COMMIT.
 */
static int commit_slow(struct wc_sink *s, const struct pg_batch *b, struct wc_commit *c, struct wc_err *err)
{
    struct pg *p = s->priv;
    struct pipe_res res;
    struct wc_event ev;
    char why[700];
    int i;

    if (pg_exec_simple(s, "BEGIN; SET CONSTRAINTS ALL IMMEDIATE", "could not begin", err) < 0)
        goto failed;
    for (i = 0; i < b->recs.n; i++) {
        const struct wc_rec *e = &b->recs.v[i];
        if (e->n == 0)
            continue;
        if (pg_pipe_begin(s, err) < 0)
            goto failed;
        int ok = pg_pipe_sql(s, "SAVEPOINT walcast_event", err) == 0;
        for (int k = 0; ok && k < e->n; k++)
            ok = pg_pipe_op(s, b, &b->ops[e->first + k], err) == 0;
        ok = ok && pg_pipe_sql(s, "RELEASE SAVEPOINT walcast_event", err) == 0;
        if (pg_pipe_end(s, &res, err) < 0 || !ok) {
            if (ok || err->code != WC_ERR_CONFIG)
                err->code = WC_ERR_IO;
            goto failed;
        }
        if (res.failed_at < 0)
            continue;
        if (res.failed_at == 0 || res.failed_at > e->n) {
            /* SAVEPOINT or RELEASE itself: not the event's fault. */
            wc_err_set(err, WC_ERR_DATA, "sink \"%s\": savepoint failed: %s", s->name, res.msg);
            goto failed;
        }
        if (pg_exec_simple(s, "ROLLBACK TO SAVEPOINT walcast_event; RELEASE SAVEPOINT walcast_event",
                           "could not roll back to savepoint", err) < 0)
            goto failed;
        const struct pg_prep *pp = &p->prep[b->ops[e->first + res.failed_at - 1].prep];
        if (pp->projection)
            snprintf(why, sizeof(why), "projection \"%s\" (line %d): %s", pp->projection, pp->line, res.msg);
        else
            snprintf(why, sizeof(why), "%s", res.msg);
        wc_recs_event(&b->recs, e, &ev);
        if (e->counted)
            wc_sink_count_applied(s, 1, &ev, -1);
        if (wc_sink_handle_error(s, c, &ev, s->cfg->on_error, why, err) < 0)
            goto failed;
    }
    if (pg_pipe_begin(s, err) < 0)
        goto failed;
    if (pg_pipe_cursor(s, c->cursor, err) < 0 || pg_pipe_sql(s, "COMMIT", err) < 0) {
        pg_pipe_end(s, &res, err);
        err->code = WC_ERR_IO;
        goto failed;
    }
    if (pg_pipe_end(s, &res, err) < 0)
        goto failed;
    if (res.failed_at >= 0) {
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\": could not commit: %s", s->name, res.msg);
        goto failed;
    }
    return 0;

failed:
    if (PQstatus(p->conn) == CONNECTION_BAD)
        err->code = WC_ERR_IO;
    if (PQpipelineStatus(p->conn) == PQ_PIPELINE_OFF)
        pg_rollback_quietly(p);
    return -1;
}

/* Set the queued batch aside for commit_detached(); apply() queues into the other one meanwhile. A batch
 * still set aside after a failed commit is dropped: the engine starts again from the durable cursor. */
void pg_detach(struct wc_sink *s)
{
    struct pg *p = s->priv;

    if (p != NULL)
        WC_DETACH(p->b, p->cb, pg_batch_reset);
}

/*
 * Apply the batch set aside and the cursor in one transaction: pipelined in one round trip, and only
 * when the server rejects something, again event by event. The batch is cleared once it is committed;
 * after a failure it stays set aside until the next detach().
 */
int pg_commit_detached(struct wc_sink *s, struct wc_commit *c, struct wc_err *err)
{
    struct wc_pos cursor = c->cursor;
    struct pg *p = s->priv;
    struct pipe_res res;
    int rejected;

    if (p == NULL || p->conn == NULL) {
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": not connected", s->name);
        return -1;
    }
    if (PQstatus(p->conn) != CONNECTION_OK)
        return pg_fail_result(s, NULL, WC_ERR_IO, "connection lost", err);
    if (p->cb->nops == 0) {
        /* Nothing queued: the upsert alone is its own transaction. */
        if (pg_pipe_begin(s, err) < 0)
            return -1;
        if (pg_pipe_cursor(s, cursor, err) < 0) {
            pg_pipe_end(s, &res, err);
            err->code = WC_ERR_IO;
            return -1;
        }
        if (pg_pipe_end(s, &res, err) < 0)
            return -1;
        if (res.failed_at >= 0) {
            wc_err_set(err, WC_ERR_DATA, "sink \"%s\": could not store the cursor: %s", s->name, res.msg);
            return -1;
        }
        pg_batch_reset(p->cb);
        return 0;
    }
    if (commit_fast(s, p->cb, cursor, &rejected, &res, err) < 0)
        return -1;
    if (rejected) {
        wc_debug("sink \"%s\": batch of %d events rejected (%s), applying event by event", s->name,
                 p->cb->recs.n, res.msg);
        if (commit_slow(s, p->cb, c, err) < 0)
            return -1;
    }
    pg_batch_reset(p->cb);
    return 0;
}

/* Commit what is queued, here and now: both halves in a row. After a failure the outcome may be unknown
 * (the connection dropped after COMMIT was sent): the sink is opened again and the stream resumed from
 * its cursor, never committed again. */
int pg_commit(struct wc_sink *s, struct wc_pos cursor, struct wc_err *err)
{
    struct wc_commit c = {.cursor = cursor};

    pg_detach(s);
    return pg_commit_detached(s, &c, err);
}

/* Wipe the projections with the configured SQL and drop the cursor, in one transaction. */
int pg_reset(struct wc_sink *s, struct wc_err *err)
{
    struct pg *p = s->priv;
    char sql[512];
    const char *params[2] = {pg_slot_name(s), s->name};

    if (s->conf == NULL || s->conf->rebuild == NULL) {
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\": no rebuild action configured (sinks.%s.rebuild)", s->name,
                   s->name);
        return -1;
    }
    pg_batch_reset(p->b);
    pg_batch_reset(p->cb);
    if (pg_exec_simple(s, "BEGIN", "could not begin the rebuild", err) < 0)
        return -1;
    if (pg_exec_simple(s, s->conf->rebuild, "rebuild statement failed", err) < 0) {
        pg_rollback_quietly(p);
        return -1;
    }
    /* The dead letters go too: the rebuild meets the same bad events again and stores them anew. */
    PGresult *r =
        pg_exec(s, NULL, "DELETE FROM walcast_dead_letters WHERE slot = $1 AND sink = $2", 2, params, err);
    if (r == NULL)
        return -1;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        pg_fail_result(s, r, WC_ERR_DATA, "could not remove the dead letters", err);
        PQclear(r);
        pg_rollback_quietly(p);
        return -1;
    }
    PQclear(r);
    snprintf(sql, sizeof(sql), "DELETE FROM walcast_cursor WHERE slot = $1 AND sink = $2");
    r = pg_exec(s, NULL, sql, 2, params, err);
    if (r == NULL)
        return -1;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        pg_fail_result(s, r, WC_ERR_DATA, "could not remove the cursor", err);
        PQclear(r);
        pg_rollback_quietly(p);
        return -1;
    }
    PQclear(r);
    return pg_exec_simple(s, "COMMIT", "could not commit the rebuild", err);
}
