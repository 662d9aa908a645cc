/*
 * committer.c - commit every sink with its cursor, each on a thread of its own, while the engine's thread
 * decodes and queues the next batch; move a sink's cursor and confirm the slot only once its commit
 * returned.
 *
 * Sinks commit independently: a commit round starts a commit on every sink in the stream that is idle,
 * and one that is still busy commits what it queued meanwhile as soon as it returns. The engine's thread
 * never waits for a sink: a job that returns writes a byte to the session's wake pipe, which the
 * stream's wait watches. It stops reading the stream only while a sink has a full batch queued behind a
 * commit in flight (the next batch would have nowhere to go), and only for so long: a commit that takes
 * far longer than usual while other sinks wait for events takes its sink out of the stream (FROZEN),
 * and the others go on.
 *
 * Each commit gets an explicit context (struct wc_commit): the cursor it stores and, for the sink, the
 * place where dead letters found while committing go. A sink never has to guess (from thread-local
 * state) whether a dead letter belongs to the batch being committed or to the one being queued.
 */
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine_int.h"
#include "metrics.h"
#include "walcast/buf.h"
#include "walcast/clock.h"
#include "walcast/log.h"

wc_lsn wc__safe_confirm_lsn(const struct session *s)
{
    wc_lsn lsn = 0;
    for (int i = 0; i < s->nsink; i++) {
        /* A cursor inside a transaction confirms only up to that transaction's commit record, which the
         * server then sends again: its covered events are skipped. A sink that is down counts with the
         * last cursor it made durable (or, never opened, the slot's position it cannot be behind). */
        wc_lsn l = s->sinks[i]->cursor.lsn;
        if (i == 0 || l < lsn)
            lsn = l;
    }
    return lsn;
}

/* Confirm what every sink has made durable: the slowest sink's cursor (DESIGN.md invariant 3). */
void wc__confirm(struct session *s)
{
    wc_lsn lsn = wc__safe_confirm_lsn(s);
    if (lsn > s->stats->confirmed)
        s->stats->confirmed = lsn;
    if (s->stream)
        wc_stream_confirm(s->stream, lsn);
}

static void job_main(struct sink_job *j)
{
    struct wc_sink *k = j->sink;
    char b = 1;

    if (j->kind == JOB_COMMIT) {
        wc_tally_commit_start(k->tally);
        j->rc = k->ops->commit_detached(k, &j->commit, &j->err);
        wc_tally_commit_end(k->tally, j->rc);
        /* Visible now: answer the waiters here rather than after a hop through the engine's thread (not
         * when the engine stopped without this job: it may be tearing the endpoint down). */
        if (j->rc == 0 && !__atomic_load_n(&k->abandoned, __ATOMIC_ACQUIRE))
            wc_metrics_applied(k, j->commit.cursor.lsn);
    } else {
        j->rc = wc__open_sink(k, &j->owner, &j->cursor, &j->found, &j->err);
    }
    /* The byte goes first: once the engine sees done, it is in the pipe, and taking the job in reads it
     * (exactly one per job, so a byte of a job not yet done is never consumed). */
    if (j->wake_fd >= 0 && write(j->wake_fd, &b, 1) < 0) {
        /* The pipe is full: the engine is awake anyway. */
    }
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
}

/* A sink's worker: waits for a job, runs it, and so on until told to quit. A thread per sink for the
 * engine's lifetime rather than one per commit: handing a job over costs a wake-up, not a thread. */
static void *worker_main(void *arg)
{
    struct sink_worker *w = arg;

    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (w->job == NULL && !w->quit)
            pthread_cond_wait(&w->cv, &w->mu);
        struct sink_job *j = w->job;
        w->job = NULL;
        pthread_mutex_unlock(&w->mu);
        if (j == NULL)
            return NULL;
        job_main(j);
    }
}

void wc__workers_end(struct session *s)
{
    for (int i = 0; i < s->nsink; i++) {
        struct sink_worker *w = s->rt[i].worker;
        if (w == NULL || __atomic_load_n(&s->rt[i].k->abandoned, __ATOMIC_ACQUIRE))
            continue;
        pthread_mutex_lock(&w->mu);
        w->quit = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
        s->rt[i].worker = NULL;
    }
}

struct sink_job *wc__job_reap(struct session *s, struct sink_rt *r)
{
    struct sink_job *j = r->job;
    char b;

    if (j == NULL || !__atomic_load_n(&j->done, __ATOMIC_ACQUIRE))
        return NULL;
    if (j->wake_fd >= 0 && read(s->wake[0], &b, 1) < 0) {
        /* Already read (the pipe was full when it wrote): nothing to take. */
    }
    r->job = NULL;
    s->jobs_running--;
    return j;
}

/* Run kind on r's sink on its worker thread (here and now when no thread can be made). */
int wc__job_start(struct session *s, struct sink_rt *r, int kind, struct wc_pos cursor)
{
    struct sink_job *j = wc_xcalloc(1, sizeof(*j));

    j->kind = kind;
    j->sink = r->k;
    j->owner = s->me;
    j->wake_fd = s->wake[1];
    j->commit.cursor = cursor;
    j->start_ms = wc_now_ms();
    r->job = j;
    s->jobs_running++;
    if (r->worker == NULL) {
        struct sink_worker *w = wc_xcalloc(1, sizeof(*w));
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            pthread_mutex_destroy(&w->mu);
            pthread_cond_destroy(&w->cv);
            free(w);
            job_main(j);
            return 0;
        }
        r->worker = w;
    }
    pthread_mutex_lock(&r->worker->mu);
    r->worker->job = j;
    pthread_cond_signal(&r->worker->cv);
    pthread_mutex_unlock(&r->worker->mu);
    return 0;
}

/* Set aside what r's sink queued and commit it at cursor on its thread. */
static void start_commit(struct session *s, struct sink_rt *r, struct wc_pos cursor)
{
    wc_tally_detach(r->k->tally);
    r->k->ops->detach(r->k);
    r->queued = 0;
    r->queued_bytes = 0;
    r->due = 0;
    wc__job_start(s, r, JOB_COMMIT, cursor);
}

/* Where a sink in the stream commits: the stream's position, or its floor while the stream replays
 * what it already has. */
static struct wc_pos commit_point(const struct session *s, const struct sink_rt *r)
{
    if (r->state != SINK_UP || wc_pos_cmp(r->floor, s->pos) > 0)
        return r->floor;
    return s->pos;
}

/*
 * A commit round at pos: every sink in the stream that is behind pos and idle starts a commit; one still
 * busy commits when it returns (due). Sinks without the two halves (the tail's file) commit here and
 * now. Returns -1 with err only when such a sink failed.
 */
int wc__commit_round(struct session *s, struct wc_pos pos, struct wc_err *err)
{
    int any = 0;

    for (int i = 0; i < s->nsink; i++) {
        struct sink_rt *r = &s->rt[i];
        struct wc_sink *k = r->k;
        struct wc_pos at = wc_pos_cmp(pos, r->floor) >= 0 ? pos : r->floor;

        if (r->state != SINK_UP)
            continue;
        if (r->job) {
            r->due = 1;
            r->queued += s->pending;
            r->queued_bytes += s->pending_bytes;
            s->any_due = 1;
            continue;
        }
        if (wc_pos_cmp(k->cursor, at) >= 0)
            continue;
        any = 1;
        if (r->inline_commit) {
            wc_tally_detach(k->tally);
            wc_tally_commit_start(k->tally);
            int rc = k->ops->commit(k, at, err);
            wc_tally_commit_end(k->tally, rc);
            if (rc < 0) {
                wc_metrics_commit_failed(k);
                return -1; /* sinks name themselves in their messages */
            }
            k->cursor = at;
            k->has_cursor = 1;
            wc_tally_publish(k->tally, at.lsn);
            wc_metrics_applied(k, k->cursor.lsn);
            continue;
        }
        start_commit(s, r, at);
    }
    s->pending = 0;
    s->pending_bytes = 0;
    if (any)
        s->stats->commits++;
    wc__confirm(s);
    return 0;
}

/* Faults the engine retries (the sink goes down and is opened again): all others stop it. */
static int retryable(int code)
{
    return code == WC_ERR_IO || code == WC_ERR_CONFIG;
}

/* A commit job returned: move the cursor, or take the sink down. */
static int committed(struct session *s, struct sink_rt *r, struct sink_job *j, struct wc_err *err)
{
    struct wc_sink *k = r->k;
    int64_t now = wc_now_ms();

    if (j->rc < 0) {
        if (!retryable(j->err.code)) {
            wc_metrics_commit_failed(k);
            *err = j->err;
            return -1;
        }
        /* The outcome is unknown (it may have committed before the connection broke): the sink reads its
         * cursor when it is opened again, and resumes from there. */
        wc_metrics_commit_failed(k);
        r->leaving = 0;
        wc__sink_down(s, r, &j->err);
        return 0;
    }
    r->avg_commit_ms = (int)((r->avg_commit_ms * 7 + (now - j->start_ms)) / 8);
    k->cursor = j->commit.cursor;
    k->has_cursor = 1;
    wc_tally_publish(k->tally, j->commit.cursor.lsn);
    wc_metrics_applied(k, k->cursor.lsn);
    if (r->retry.attempt > 0) {
        int attempts = r->retry.attempt;
        int64_t lasted = wc_backoff_ok(&r->retry, now);
        wc_info("sink \"%s\": back after %d attempts in %lld s; applying from its cursor on", k->name,
                attempts, (long long)(lasted / 1000));
    }
    if (r->leaving) {
        /* It failed in the stream meanwhile (wc__sink_fail): what it queued since goes with it. A new
         * outage, counted afresh. */
        r->leaving = 0;
        wc__sink_down(s, r, &r->leave_err);
    }
    return 0;
}

/*
 * The next step of a sink whose job returned, or that has a commit due. Not once the session failed: an
 * event that failed in one sink may already be queued in the sinks before it, past s->pos, and a commit
 * at s->pos would store it with a cursor short of it (the next session would apply it again). What is
 * queued is dropped with the session, and the stream brings it again.
 */
static void next_step(struct session *s, struct sink_rt *r)
{
    if (r->job != NULL)
        return;
    if (s->failed) {
        r->due = 0;
        return;
    }
    if (r->state == SINK_UP && r->due) {
        struct wc_pos at = commit_point(s, r);
        if (wc_pos_cmp(r->k->cursor, at) < 0)
            start_commit(s, r, at);
        else
            r->due = 0;
    } else if (r->state == SINK_FROZEN) {
        /* What it had queued when it left the stream goes first; then it catches up. */
        if (r->due && wc_pos_cmp(r->k->cursor, r->floor) < 0) {
            start_commit(s, r, r->floor);
        } else {
            r->due = 0;
            r->state = SINK_BEHIND;
            s->restart = 1;
        }
    }
}

/*
 * Take in what the jobs that returned did: commits move cursors (or take their sink down), opens bring a
 * sink back. Then start the commits that were due, and confirm. -1 with err when a sink failed in a way
 * that stops the engine (the halt policy, a protocol error).
 */
int wc__jobs_poll(struct session *s, struct wc_err *err)
{
    int any = 0;

    /* No system call unless a job returned: this runs for every message of the stream. */
    for (int i = 0; i < s->nsink; i++) {
        struct sink_rt *r = &s->rt[i];
        struct sink_job *j = wc__job_reap(s, r);
        int rc;

        if (j == NULL)
            continue;
        any = 1;
        rc = j->kind == JOB_COMMIT ? committed(s, r, j, err) : wc__sink_opened(s, r, j, err);
        free(j);
        if (rc < 0)
            return -1;
    }
    if (!any)
        return 0;
    for (int i = 0; i < s->nsink; i++)
        next_step(s, &s->rt[i]);
    wc__confirm(s);
    return 0;
}

/* Nonzero while a sink in the stream has a commit in flight. */
int wc__busy(const struct session *s)
{
    for (int i = 0; i < s->nsink; i++)
        if (s->rt[i].state == SINK_UP && s->rt[i].job != NULL)
            return 1;
    return 0;
}

/* Is another sink in the stream waiting for new events (not replaying what it has)? */
static int others_fed(const struct session *s, const struct sink_rt *r)
{
    for (int i = 0; i < s->nsink; i++) {
        const struct sink_rt *o = &s->rt[i];
        if (o != r && o->state == SINK_UP && wc_pos_cmp(o->floor, s->pos) <= 0)
            return 1;
    }
    return 0;
}

/*
 * Nonzero when the engine must not read more now: a sink in the stream is still committing and its next
 * batch is full. Backpressure, as long as the commit is within its usual time; past it (STALL_MS, or four
 * times its usual commit) and with another sink waiting, the slow sink leaves the stream instead.
 */
int wc__stall(struct session *s)
{
    int stall = 0, due = 0;

    for (int i = 0; s->any_due && i < s->nsink; i++) {
        struct sink_rt *r = &s->rt[i];
        if (r->state != SINK_UP || r->job == NULL || !r->due)
            continue;
        due = 1;
        if (r->queued + s->pending < s->cfg->batch_max_events &&
            r->queued_bytes + s->pending_bytes < s->cfg->batch_max_bytes)
            continue;
        int64_t now = wc_now_ms();
        int limit = r->avg_commit_ms * 4 > STALL_MS ? r->avg_commit_ms * 4 : STALL_MS;
        if (now - r->job->start_ms >= limit && others_fed(s, r)) {
            r->state = SINK_FROZEN;
            if (wc_pos_cmp(s->pos, r->floor) > 0)
                r->floor = s->pos;
            r->due = 1;
            wc_warning(
                "sink \"%s\": a commit has run for %lld ms with the next batch waiting: the other sinks go "
                "on, this one catches up once it returns",
                r->k->name, (long long)(now - r->job->start_ms));
            continue;
        }
        stall = 1;
    }
    s->any_due = due;
    return stall;
}

/* Wait until a job returns (the wake pipe) or timeout_ms. */
void wc__wait_wake(struct session *s, int timeout_ms)
{
    struct pollfd pfd = {.fd = s->wake[0], .events = POLLIN};

    poll(&pfd, 1, timeout_ms < 0 ? 0 : timeout_ms);
}

static int any_job(const struct session *s)
{
    for (int i = 0; i < s->nsink; i++)
        if (s->rt[i].job != NULL)
            return 1;
    return 0;
}

/*
 * Wait for the jobs in flight, taking in what they did, for at most grace_ms; grace_ms < 0: as long as
 * they take (each has its own deadline), unless wc_engine_stop is set meanwhile, which leaves them
 * SHUTDOWN_GRACE_MS. Jobs still running then are abandoned: their sink is left alone (neither closed nor
 * freed), and the outcome of a commit among them is unknown; the next start resumes from the cursors.
 */
void wc__drain(struct session *s, int grace_ms)
{
    int64_t deadline = grace_ms >= 0 ? wc_now_ms() + grace_ms : INT64_MAX;
    struct wc_err err;

    while (any_job(s)) {
        if (wc__jobs_poll(s, &err) < 0)
            wc_warning("%s", err.msg);
        if (!any_job(s))
            break;
        int64_t now = wc_now_ms();
        if (deadline == INT64_MAX && wc_engine_stop)
            deadline = now + SHUTDOWN_GRACE_MS;
        if (now >= deadline) {
            for (int i = 0; i < s->nsink; i++) {
                struct sink_rt *r = &s->rt[i];
                if (r->job == NULL)
                    continue;
                wc_warning(
                    "sink \"%s\": stopping without waiting for its %s (running for %lld ms): its outcome is "
                    "unknown, the next start resumes from the sink's cursor",
                    r->k->name, r->job->kind == JOB_COMMIT ? "commit" : "connection",
                    (long long)(now - r->job->start_ms));
                __atomic_store_n(&r->k->abandoned, 1, __ATOMIC_RELEASE);
                if (r->worker)
                    pthread_detach(r->worker->thread);
                r->worker = NULL; /* left to itself, with its job */
                r->job = NULL;
                s->jobs_running--;
                s->abandoned = 1;
            }
            break;
        }
        wc__wait_wake(s, (int)(deadline - now < 100 ? deadline - now : 100));
    }
}
