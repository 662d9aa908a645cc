/*
 * committer.c - commit every sink with its cursor, each on a thread of its own, while the engine's thread
 * decodes and queues the next batch; move the cursors and confirm the slot only once a commit returned.
 *
 * Each commit gets an explicit context (struct wc_commit): the cursor it stores and, for the sink, the
 * place where dead letters found while committing go. A sink never has to guess (from thread-local
 * state) whether a dead letter belongs to the batch being committed or to the one being queued.
 */
#include <pthread.h>

#include "engine_int.h"
#include "metrics.h"
#include "walcast/log.h"

wc_lsn wc__safe_confirm_lsn(const struct session *s)
{
    wc_lsn lsn = 0;
    for (int i = 0; i < s->nsink; i++) {
        /* A cursor inside a transaction confirms only up to that transaction's commit record, which the
         * server then sends again: its covered events are skipped. */
        wc_lsn l = s->sinks[i]->cursor.lsn;
        if (i == 0 || l < lsn)
            lsn = l;
    }
    return lsn;
}

static void *commit_job_run(void *arg)
{
    struct commit_job *j = arg;
    const struct wc_sink_ops *ops = j->sink->ops;

    wc_tally_commit_start(j->sink->tally);
    j->rc = ops->commit_detached ? ops->commit_detached(j->sink, &j->commit, &j->err)
                                 : ops->commit(j->sink, j->commit.cursor, &j->err);
    wc_tally_commit_end(j->sink->tally, j->rc);
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Nonzero when every job of the commit in flight has returned: joining it will not block. */
int wc__commit_done(const struct session *s)
{
    for (int i = 0; i < s->com.njob; i++)
        if (!__atomic_load_n(&s->com.jobs[i].done, __ATOMIC_ACQUIRE))
            return 0;
    return 1;
}

/* Confirm what every sink has made durable. */
static void confirm(struct session *s)
{
    wc_lsn lsn = wc__safe_confirm_lsn(s);
    if (lsn > s->stats->confirmed)
        s->stats->confirmed = lsn;
    wc_stream_confirm(s->stream, lsn);
}

/*
 * Wait for the commit in flight, if any: move the cursors of the sinks that committed, then confirm.
 * Returns -1 with err when a sink failed (an I/O failure only when no sink failed otherwise).
 */
int wc__commit_wait(struct session *s, struct wc_err *err)
{
    struct committer *c = &s->com;
    int rc = 0;

    if (!c->inflight)
        return 0;
    for (int i = 0; i < c->njob; i++)
        if (c->started[i])
            pthread_join(c->threads[i], NULL);
    c->inflight = 0;
    for (int i = 0; i < c->njob; i++) {
        struct commit_job *j = &c->jobs[i];
        if (j->rc < 0) {
            if (rc == 0 || j->err.code != WC_ERR_IO)
                *err = j->err;
            rc = -1;
            wc_metrics_commit_failed(j->sink);
            continue;
        }
        j->sink->cursor = j->commit.cursor;
        j->sink->has_cursor = 1;
        wc_tally_publish(j->sink->tally, j->commit.cursor.lsn);
    }
    if (rc < 0)
        return -1;
    s->stats->commits++;
    confirm(s);
    return 0;
}

/*
 * Commit every sink that is behind pos. A sink that can commit in two halves (detach, then
 * commit_detached) commits on a thread of its own; with overlap, this thread goes on decoding and
 * queueing the next batch meanwhile: the sink servers execute one batch while walcast prepares the
 * next, and several sinks commit side by side. The next wc__commit_all() or wc__commit_wait() waits for
 * it; the cursors move, and the slot is confirmed, only then. Without overlap (the stream is drained:
 * nothing to decode meanwhile) the first sink commits on this thread and the call returns when all
 * have. Sinks without the two halves, and any beyond MAX_JOBS, commit here and now, before the others
 * start (if one of them fails, the batches already set aside are dropped uncommitted: the session ends
 * and starts again from the durable cursors).
 */
int wc__commit_all(struct session *s, struct wc_pos pos, int overlap, struct wc_err *err)
{
    struct committer *c = &s->com;
    int n = 0;

    if (wc__commit_wait(s, err) < 0)
        return -1;
    for (int i = 0; i < s->nsink; i++) {
        struct wc_sink *k = s->sinks[i];
        if (wc_pos_cmp(k->cursor, pos) >= 0)
            continue;
        wc_tally_detach(k->tally);
        if (k->ops->detach && k->ops->commit_detached && n < MAX_JOBS) {
            k->ops->detach(k);
            c->jobs[n++] = (struct commit_job){.sink = k, .commit = {.cursor = pos}};
            continue;
        }
        wc_tally_commit_start(k->tally);
        int rc = k->ops->commit(k, pos, err);
        wc_tally_commit_end(k->tally, rc);
        if (rc < 0) {
            wc_metrics_commit_failed(k);
            return -1; /* sinks name themselves in their messages */
        }
        k->cursor = pos;
        k->has_cursor = 1;
        wc_tally_publish(k->tally, pos.lsn);
    }
    s->pending = 0;
    s->pending_bytes = 0;
    if (n == 0) {
        s->stats->commits++;
        confirm(s);
        return 0;
    }
    c->njob = n;
    c->inflight = 1;
    for (int i = overlap ? 0 : 1; i < n; i++) {
        c->started[i] = pthread_create(&c->threads[i], NULL, commit_job_run, &c->jobs[i]) == 0;
        if (!c->started[i])
            commit_job_run(&c->jobs[i]); /* no thread: commit here */
    }
    if (overlap)
        return 0;
    c->started[0] = 0;
    commit_job_run(&c->jobs[0]);
    return wc__commit_wait(s, err);
}

/* Leave a session with a commit in flight: wait for its threads, whatever they did (the next session
 * starts from the durable cursors). */
void wc__commit_abandon(struct session *s)
{
    struct wc_err ignored;

    if (s->com.inflight && wc__commit_wait(s, &ignored) < 0)
        wc_debug("abandoned commit: %s", ignored.msg);
}
