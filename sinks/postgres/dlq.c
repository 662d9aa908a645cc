/* dlq.c - the PostgreSQL sink's dead-letter table for `walcast dlq list|retry` (sinks/dlq.c drives). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg.h"

#define DLQ_SELECT                                                                                           \
    "SELECT id::text, lsn::text, idx::text, event_id, event_type, aggregate_type, aggregate_id, payload, "   \
    "error, created_at::text FROM walcast_dead_letters WHERE slot = $1 AND sink = $2 "                       \
    "AND ($3::bigint IS NULL OR id = $3::bigint) ORDER BY id"

static const char *field(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static int dlq_fetch(struct wc_sink *s, const char *id, struct wc_dead_letter **out, int *n, void **hold,
                     struct wc_err *err)
{
    struct pg *p = s->priv;
    const char *params[3] = {pg_slot_name(s), s->name, id};
    PGresult *r = PQexecParams(p->conn, DLQ_SELECT, 3, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_fail_result(s, r, WC_ERR_DATA, "could not read the dead letters", err);
        PQclear(r);
        return -1;
    }
    *n = PQntuples(r);
    *out = wc_xcalloc((size_t)*n, sizeof(**out));
    for (int i = 0; i < *n; i++) {
        struct wc_dead_letter *dl = &(*out)[i];
        dl->id = PQgetvalue(r, i, 0);
        dl->lsn = PQgetvalue(r, i, 1);
        dl->idx = PQgetvalue(r, i, 2);
        for (int c = 0; c < DL_NCOLS; c++)
            dl->col[c] = field(r, i, 3 + c);
        dl->error = PQgetvalue(r, i, 8);
        dl->created = PQgetvalue(r, i, 9);
    }
    *hold = r;
    return 0;
}

static void dlq_release(struct wc_dead_letter *dl, void *hold)
{
    free(dl);
    PQclear(hold);
}

static void dlq_discard(struct wc_sink *s)
{
    struct pg *p = s->priv;

    pg_batch_reset(p->b);
    pg_rollback_quietly(p);
}

static void dlq_queue_removal(struct wc_sink *s, const struct wc_dead_letter *dl)
{
    struct pg *p = s->priv;
    struct pg_op *op = pg_op_add(p->b, p->b->recs.n - 1, PREP_DL_DELETE, 1);

    p->b->offs[op->first] = wc_recs_put(&p->b->recs, dl->id, strlen(dl->id));
}

static int dlq_still_failing(struct wc_sink *s, const struct wc_dead_letter *dl, const char *msg,
                             struct wc_err *err)
{
    struct pg *p = s->priv;
    const char *up[2] = {msg, dl->id};

    PQclear(PQexecParams(p->conn, "UPDATE walcast_dead_letters SET error = $1 WHERE id = $2::bigint", 2, NULL,
                         up, NULL, NULL, 0));
    return 0;
}

/*
 * Keep at most engine.dead_letter_max dead letters of this sink: the oldest go, in the transaction of a
 * batch, once a tenth of the bound (at least one) were written since the last time, so that the cost (an
 * index scan of the bound's length) is spread over that many dead letters. The slot and sink names are
 * [a-z0-9_] (checked at load), so they go into the statement as literals.
 */
int pg_dlq_pipe_prune(struct wc_sink *s, struct wc_err *err)
{
    struct pg *p = s->priv;
    int max = s->cfg ? s->cfg->dead_letter_max : 0;
    uint64_t n = __atomic_load_n(&s->dead_lettered, __ATOMIC_RELAXED);
    uint64_t step = max >= 10 ? (uint64_t)max / 10 : 1;
    char sql[512];

    if (max <= 0 || n - p->dl_pruned_at < step)
        return 0;
    p->dl_pruned_at = n;
    snprintf(sql, sizeof(sql),
             "DELETE FROM walcast_dead_letters WHERE slot = '%s' AND sink = '%s' AND id <= (SELECT id FROM "
             "walcast_dead_letters WHERE slot = '%s' AND sink = '%s' ORDER BY id DESC OFFSET %d LIMIT 1)",
             pg_slot_name(s), s->name, pg_slot_name(s), s->name, max);
    return pg_pipe_sql(s, sql, err);
}

const struct wc_dlq_ops pg_dlq_ops = {
    .action = "statement",
    .fetch = dlq_fetch,
    .release = dlq_release,
    .discard = dlq_discard,
    .queue_removal = dlq_queue_removal,
    .still_failing = dlq_still_failing,
};
