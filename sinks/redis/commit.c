/* commit.c - the Redis sink's commit: the batch and the cursor in one MULTI/EXEC; event by event when
 * Redis refuses the batch; the dead letters of commands that fail while EXEC runs; the rebuild's FLUSHDB. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "redis.h"
#include "walcast/log.h"

/*
 * After an EXEC: the commands that failed while running (Redis applied the others). Warn for each one,
 * then apply the on_error policy to each failed event, its dead letter written outside the unit.
 * recs[0..nrec) are the unit's events, their commands at cmds. Returns 0, or -1 (halt, or connection).
 */
static int runtime_errors(struct wc_sink *s, struct redis_sink *p, struct wc_commit *c,
                          const struct batch *from, const struct wc_rec *recs, int nrec, const char *cmds,
                          const redisReply *exec, int dead_letter_them, struct wc_err *err)
{
    size_t k = 0, off = 0;
    int rc = 0;
    struct wc_err herr = {0};

    if (exec->elements > 0 && exec->element[exec->elements - 1]->type == REDIS_REPLY_ERROR) {
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\": could not store the cursor in \"%s\": %s", s->name,
                   p->cursor_key, exec->element[exec->elements - 1]->str);
        return -1;
    }
    /* The common case: no command failed, and describing each one would cost more than the batch. */
    int any = 0;
    for (size_t i = 0; i < exec->elements && !any; i++)
        any = exec->element[i]->type == REDIS_REPLY_ERROR;
    for (int i = 0; i < nrec && any; i++) {
        char first[1024] = "";
        char lsn[WC_LSN_STRLEN];
        const char *type;
        struct wc_event ev;

        for (int j = 0; j < recs[i].n; j++, k++) {
            const redisReply *r = exec->element[k];
            char what[300];

            redis_describe_cmd(cmds, &off, what, sizeof(what));
            if (r->type != REDIS_REPLY_ERROR)
                continue;
            wc_recs_event(&from->recs, &recs[i], &ev);
            type = ev.col[WC_COL_EVENT_TYPE].text ? ev.col[WC_COL_EVENT_TYPE].text : "";
            wc_warning("sink \"%s\": %s failed for event \"%s\" at %s:%" PRId64
                       " (its other commands were applied): %s",
                       s->name, what, type, wc_lsn_format(recs[i].pos.lsn, lsn), recs[i].pos.index, r->str);
            if (first[0] == '\0')
                snprintf(first, sizeof(first), "%s: %s", what, r->str);
        }
        if (first[0] == '\0' || !dead_letter_them)
            continue;
        wc_recs_event(&from->recs, &recs[i], &ev);
        if (rc == 0 && wc_sink_handle_error(s, c, &ev, s->cfg->on_error, first, &herr) < 0) {
            *err = herr;
            rc = -1;
        }
    }
    if (!dead_letter_them)
        return rc;
    if (redis_send_loose(s, p, rc < 0 ? &herr : err) < 0 && rc == 0)
        rc = -1;
    return rc;
}

/*
 * EXEC refused the batch: redo it event by event, each in its own unit with the cursor at that event
 * (the last one with the commit's cursor). An event that still fails to queue goes through on_error.
 */
static int commit_slow(struct wc_sink *s, struct redis_sink *p, struct batch *b, struct wc_commit *c,
                       struct wc_err *err)
{
    struct wc_pos cursor = c->cursor;

    for (int i = 0; i < b->recs.n; i++) {
        const struct wc_rec *r = &b->recs.v[i];
        size_t end = i + 1 < b->recs.n ? b->recs.v[i + 1].off : b->pending.len;
        struct wc_pos at = i + 1 < b->recs.n ? r->pos : cursor;
        struct unit u;
        struct wc_event ev;
        char msg[600];

        if (i + 1 < b->recs.n && wc_pos_cmp(at, cursor) > 0)
            at = cursor;
        if (redis_send_unit(s, p, b->pending.data + r->off, end - r->off, r->n, b->scripts, at, &u, err) < 0)
            return -1;
        if (!u.aborted) {
            int rc = runtime_errors(s, p, c, b, r, 1, b->pending.data + r->off, u.exec, 1, err);
            freeReplyObject(u.exec);
            if (rc < 0)
                return -1;
            continue;
        }
        if (u.transient) {
            wc_err_set(err, WC_ERR_IO, "sink \"%s\": redis at %s:%d refused the transaction: %s", s->name,
                       p->host, p->port, u.why);
            return -1;
        }
        /* This event cannot be queued: its dead letter (or nothing) with the cursor at it. */
        snprintf(msg, sizeof(msg), "%s", u.why);
        wc_recs_event(&b->recs, r, &ev);
        if (r->counted)
            wc_sink_count_applied(s, 1, &ev, -1);
        redis_batch_reset(&p->loose);
        if (wc_sink_handle_error(s, c, &ev, s->cfg->on_error, msg, err) < 0)
            return -1;
        if (redis_send_unit(s, p, p->loose.pending.data, p->loose.pending.len, p->loose.ncmd, 0, at, &u,
                            err) < 0)
            return -1;
        if (u.aborted) {
            wc_err_set(err, WC_ERR_DATA, "sink \"%s\": could not write the dead letter to \"%s\": %s",
                       s->name, p->dead_key, u.why);
            return -1;
        }
        runtime_errors(s, p, c, &p->loose, p->loose.recs.v, p->loose.recs.n, p->loose.pending.data, u.exec, 0,
                       err);
        freeReplyObject(u.exec);
        redis_batch_reset(&p->loose);
    }
    if (b->recs.n == 0) {
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\": redis refused to store the cursor: %s", s->name,
                   "EXECABORT");
        return -1;
    }
    return 0;
}

/* Set the queued batch aside for commit_detached(); apply() queues into the other one meanwhile. */
void redis_detach(struct wc_sink *s)
{
    struct redis_sink *p = s->priv;

    if (p != NULL)
        WC_DETACH(p->b, p->cb, redis_batch_reset);
}

int redis_commit_detached(struct wc_sink *s, struct wc_commit *c, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    struct wc_pos cursor = c->cursor;
    struct batch *b;
    struct unit u;
    int rc;

    if (p == NULL)
        return redis_not_open(s, err);
    b = p->cb;
    c->unit = &p->loose; /* dead letters of this commit go there, not into the batch apply() fills */
    redis_batch_reset(&p->loose);
    rc = redis_send_unit(s, p, b->pending.data, b->pending.len, b->ncmd, b->scripts, cursor, &u, err);
    if (rc == 0 && !u.aborted) {
        rc = runtime_errors(s, p, c, b, b->recs.v, b->recs.n, b->pending.data, u.exec, 1, err);
        freeReplyObject(u.exec);
    } else if (rc == 0) {
        if (u.transient) {
            wc_err_set(err, WC_ERR_IO, "sink \"%s\": redis at %s:%d refused the transaction: %s", s->name,
                       p->host, p->port, u.why);
            rc = -1;
        } else {
            wc_warning("sink \"%s\": redis refused a batch of %d events (%s), applying them one by one",
                       s->name, b->recs.n, u.why);
            rc = commit_slow(s, p, b, c, err);
        }
    }
    if (rc == 0)
        redis_batch_reset(b);
    return rc;
}

/* Commit what is queued, here and now: both halves in a row. After a failure parts of the batch may be
 * applied (Redis has no rollback): the sink is opened again and the stream resumed from its cursor,
 * never committed again (the failed batch is dropped at the next detach). */
int redis_commit(struct wc_sink *s, struct wc_pos cursor, struct wc_err *err)
{
    struct wc_commit c = {.cursor = cursor};

    redis_detach(s);
    return redis_commit_detached(s, &c, err);
}

/* FLUSHDB: the projections and the cursor hash live in the sink's database, so both go at once. */
int redis_reset(struct wc_sink *s, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    const char *argv[] = {"FLUSHDB"};

    if (s->conf == NULL || s->conf->rebuild == NULL) {
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\": no rebuild action configured (sinks.%s.rebuild: flushdb)",
                   s->name, s->name);
        return -1;
    }
    if (p == NULL)
        return redis_not_open(s, err);
    redis_batch_reset(p->b);
    redis_batch_reset(p->cb);
    redisReply *r = redis_command(s, p, 1, argv, NULL, err);
    if (r == NULL)
        return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR)
        rc = redis_reply_error(s, p, r, WC_ERR_DATA, "FLUSHDB failed", err);
    freeReplyObject(r);
    if (rc == 0)
        rc = redis_load_scripts(s, p, err);
    return rc;
}
