/* commit.c - the Redis sink's commit: the batch and the cursor in one MULTI/EXEC; what each event's
 * script answered (applied, dead-lettered, skipped, halted); refusals of every write; the rebuild's
 * FLUSHDB. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "redis.h"
#include "walcast/clock.h"
#include "walcast/log.h"

/* The event type and position of a record, for messages. */
static const char *rec_type(const struct wc_recs *recs, const struct wc_rec *r)
{
    const char *t = wc_recs_str(recs, r->col[WC_COL_EVENT_TYPE]);

    return t ? t : "";
}

/*
 * An event its script did not apply: {applied, error}. By the mode it ran in, the script has written its
 * dead letter (counted here), done nothing (skip), or stored the cursor before it (halt: -1 with err,
 * the engine stops before the cursor passes the event); in dlq retry it is an error for the driver.
 */
int redis_not_applied(struct wc_sink *s, struct redis_sink *p, const struct wc_recs *recs, struct wc_rec *r,
                      const redisReply *rep, struct wc_err *err)
{
    long long done =
        rep->elements > 0 && rep->element[0]->type == REDIS_REPLY_INTEGER ? rep->element[0]->integer : 0;
    const char *why = rep->elements > 1 && rep->element[1]->str ? rep->element[1]->str : "?";
    char lsn[WC_LSN_STRLEN], part[160] = "";
    struct wc_event ev;

    wc_lsn_format(r->pos.lsn, lsn);
    wc_recs_event(recs, r, &ev); /* for the tally by event type */
    if (done > 0)
        snprintf(part, sizeof(part),
                 " (its first %lld action%s took effect and redis cannot undo them: the dead letter records "
                 "it, and dlq retry will not run them again)",
                 done, done == 1 ? "" : "s");
    if (r->counted)
        wc_sink_count_applied(s, 1, &ev, -1);
    r->counted = 0; /* a second part of it (a cluster's) that fails does not count it again */
    if (s->retrying) {
        if (done > 0)
            p->retry_replaced = 1;
        wc_err_set(err, WC_ERR_DATA, "%s%s", why, part);
        return -1;
    }
    switch (s->cfg ? s->cfg->on_error : WC_POLICY_DEAD_LETTER) {
    case WC_POLICY_SKIP:
        wc_warning("sink \"%s\": skipping event \"%s\" at %s:%" PRId64 ": %s%s", s->name, rec_type(recs, r),
                   lsn, r->pos.index, why, part);
        WC_COUNT_ADD(s->skipped, 1);
        wc_tally_count(s->tally, 1, &ev, WC_OUT_SKIPPED, 1);
        return 0;
    case WC_POLICY_HALT:
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\": event \"%s\" at %s:%" PRId64 ": %s%s", s->name,
                   rec_type(recs, r), lsn, r->pos.index, why, part);
        return -1;
    default:
        wc_warning("sink \"%s\": dead-lettering event \"%s\" at %s:%" PRId64 ": %s%s", s->name,
                   rec_type(recs, r), lsn, r->pos.index, why, part);
        WC_COUNT_ADD(s->dead_lettered, 1);
        wc_tally_count(s->tally, 1, &ev, WC_OUT_DEAD_LETTERED, 1);
        return 0;
    }
}

/* Go through the EXEC's replies: one per queued command after the SCRIPT LOADs, then the cursor's. */
static int results(struct wc_sink *s, struct redis_sink *p, struct batch *b, const struct unit *u,
                   struct wc_err *err)
{
    const redisReply *exec = u->exec;
    size_t k = (size_t)u->nload;
    int rc = 0;
    char lsn[WC_LSN_STRLEN];

    for (size_t i = 0; i < k; i++)
        if (exec->element[i]->type == REDIS_REPLY_ERROR)
            wc_warning("sink \"%s\": could not load a script: %s", s->name, exec->element[i]->str);
    for (int i = 0; i < b->recs.n; i++) {
        struct wc_rec *r = &b->recs.v[i];
        if (r->n == 0)
            continue;
        const redisReply *rep = exec->element[k++];
        if (r->first == REC_DEAD_LETTER) {
            if (rep->type == REDIS_REPLY_ERROR && rc == 0) {
                wc_err_set(err, WC_ERR_DATA, "sink \"%s\": could not write a dead letter to \"%s\": %s",
                           s->name, p->dead_key, rep->str);
                rc = -1;
            }
            continue;
        }
        if (rep->type == REDIS_REPLY_INTEGER)
            continue; /* applied */
        if (rep->type == REDIS_REPLY_ARRAY) {
            struct wc_err e2 = {0};
            if (redis_not_applied(s, p, &b->recs, r, rep, &e2) < 0 && rc == 0) {
                *err = e2;
                rc = -1;
            }
        } else if (rep->type == REDIS_REPLY_STATUS || rep->type == REDIS_REPLY_STRING) {
            if (r->counted) { /* "halted": an earlier event of the unit stopped it; it comes again */
                struct wc_event ev;
                wc_recs_event(&b->recs, r, &ev);
                wc_sink_count_applied(s, 1, &ev, -1);
            }
        } else if (rc == 0) {
            /* The script itself failed: nothing a check foresaw, so its writes may be partial. */
            wc_err_set(err, WC_ERR_DATA,
                       "sink \"%s\": the script of event \"%s\" at %s:%" PRId64
                       " failed and may have applied part of its actions: %s",
                       s->name, rec_type(&b->recs, r), wc_lsn_format(r->pos.lsn, lsn), r->pos.index,
                       rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
            rc = -1;
        }
    }
    const redisReply *cur = exec->element[exec->elements - 1];
    if (cur->type == REDIS_REPLY_ERROR && rc == 0) {
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\": could not store the cursor in \"%s\": %s", s->name,
                   p->cursor_key, cur->str);
        rc = -1;
    }
    return rc;
}

/*
 * Redis refused the whole unit. A refusal that passes (OOM, MISCONF, READONLY, LOADING...) is retried
 * from the durable cursor (WC_ERR_IO); one that means every write is refused until someone acts is also
 * logged as an error naming the cause and the fix, at most once a minute per sink, so that it does not
 * pass for an ordinary reconnect.
 */
static int refused(struct wc_sink *s, struct redis_sink *p, const struct unit *u, struct wc_err *err)
{
    static pthread_mutex_t said_lock = PTHREAD_MUTEX_INITIALIZER;
    static struct {
        const struct wc_sink *s;
        int64_t at;
    } said[8];
    const char *hint = redis_refusal_hint(u->why);
    int say = 0;

    wc_err_set(err, u->transient ? WC_ERR_IO : WC_ERR_DATA,
               "sink \"%s\": redis at %s:%d refused the transaction: %s%s%s", s->name, p->host, p->port,
               u->why, *hint ? ": " : "", hint);
    if (!u->transient || !*hint)
        return -1;
    /* The sinks commit on threads of their own. */
    int64_t now = wc_now_ms();
    int slot = 0;
    pthread_mutex_lock(&said_lock);
    for (int i = 0; i < 8; i++)
        if (said[i].s == s || said[i].s == NULL) {
            slot = i;
            break;
        }
    if (said[slot].s != s || now - said[slot].at >= 60000) {
        said[slot].s = s;
        said[slot].at = now;
        say = 1;
    }
    pthread_mutex_unlock(&said_lock);
    if (say)
        wc_error("%s; retrying (this is said once a minute while it lasts)", err->msg);
    return -1;
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
    struct batch *b;
    struct unit u;
    int rc;

    if (p == NULL)
        return redis_not_open(s, err);
    b = p->cb;
    rc = redis_send_unit(s, p, b, c->cursor, &u, err);
    if (rc == 0 && u.aborted)
        rc = refused(s, p, &u, err);
    else if (rc == 0) {
        rc = results(s, p, b, &u, err);
        freeReplyObject(u.exec);
    }
    if (rc == 0)
        redis_batch_reset(b);
    return rc;
}

/* Commit what is queued, here and now: both halves in a row. */
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
