/*
 * sinkstate.c - one sink down does not stop the others. A sink whose connection fails, or whose commit
 * fails or times out, is closed and opened again on its own backoff while the others keep applying;
 * the slot is confirmed only up to its durable cursor meanwhile (committer.c). Once it is open again it
 * reads its cursor, which settles whether its last commit went through, and the stream restarts at that
 * cursor (the sinks that have those events skip them). A sink that comes back without its data (its
 * cursor gone, or behind what was confirmed) needs the rebuild rules of rebuild.c: every sink is opened
 * again in a new session.
 *
 * Failures are reported per wc_backoff: at once, then once a minute while they last; faults someone must
 * fix (a password, a privilege, a missing table: WC_ERR_CONFIG) as errors with what to do, transient ones
 * (refused, reset, timed out) as a warning first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "metrics.h"
#include "walcast/clock.h"
#include "walcast/log.h"

/* A message on one line: libpq's span several ("server closed the connection unexpectedly\n\tThis
 * probably means..."). */
static void one_line(char *dst, size_t size, const char *msg)
{
    size_t o = 0;
    int space = 0;

    for (const char *c = msg; *c && o + 1 < size; c++) {
        if (*c == '\n' || *c == '\t' || *c == ' ') {
            space = 1;
            continue;
        }
        if (space && o > 0)
            dst[o++] = ' ';
        space = 0;
        if (o + 1 < size)
            dst[o++] = *c;
    }
    dst[o] = '\0';
}

void wc__report(struct wc_backoff *b, int64_t now, const struct wc_err *err, int *delay_ms)
{
    enum wc_backoff_report rep;
    int delay = wc_backoff_fail(b, now, &rep);
    char msg[sizeof(err->msg)];

    one_line(msg, sizeof(msg), err->msg);
    if (delay_ms)
        *delay_ms = delay;
    /* The fault changed its nature within the outage (the server came back, and now refuses the
     * password): that is news. */
    if (rep == WC_BACKOFF_QUIET && err->code != b->kind) {
        rep = WC_BACKOFF_FIRST;
        b->reported_ms = now;
    }
    b->kind = err->code;
    if (rep == WC_BACKOFF_QUIET)
        wc_debug("%s (attempt %d, next in %d ms)", msg, b->attempt, delay);
    else if (err->code == WC_ERR_CONFIG && rep == WC_BACKOFF_FIRST)
        wc_error("%s; reconnecting until this is fixed", msg);
    else if (rep == WC_BACKOFF_FIRST)
        wc_warning("%s; reconnecting", msg);
    else
        wc_error("%s; still failing after %lld s and %d attempts, reconnecting%s", msg,
                 (long long)((now - b->since_ms) / 1000), b->attempt,
                 err->code == WC_ERR_CONFIG ? " until this is fixed" : "");
}

/* Per outage, engine.retry_max_attempts (0: for ever). */
static int gave_up(const struct session *s, const struct wc_backoff *b)
{
    return s->opts->max_retries > 0 && b->attempt > s->opts->max_retries;
}

void wc__sink_down(struct session *s, struct sink_rt *r, const struct wc_err *err)
{
    struct wc_sink *k = r->k;
    int64_t now = wc_now_ms();
    int delay;

    __atomic_store_n(&k->connected, 0, __ATOMIC_RELEASE);
    if (k->ops->close)
        k->ops->close(k); /* drops what it had queued: the stream brings it again */
    wc_tally_reset(k->tally);
    wc_metrics_reconnect(err);
    r->state = SINK_DOWN;
    r->due = 0;
    r->queued = 0;
    r->queued_bytes = 0;
    s->any_down = 1;
    wc__report(&r->retry, now, err, &delay);
    if (r->retry.attempt == 1)
        wc_info("sink \"%s\": the other sinks go on; the slot is confirmed no further than this sink's "
                "cursor until "
                "it is back",
                k->name);
    r->retry_at_ms = now + delay;
    s->stats->reconnects++;
}

void wc__sink_fail(struct session *s, struct sink_rt *r, const struct wc_err *err)
{
    if (r->job == NULL) {
        wc__sink_down(s, r, err);
        return;
    }
    /* Its commit in flight uses the sink: it is closed when the commit returns (committed()). Meanwhile
     * it takes no events, and it is not opened again. */
    __atomic_store_n(&r->k->connected, 0, __ATOMIC_RELEASE);
    r->state = SINK_DOWN;
    r->due = 0;
    r->leaving = 1;
    r->leave_err = *err;
}

/*
 * An open job returned. Failed: down again (or, for a fault that stops the engine, -1 with err). Opened:
 * it has its cursor; if that is behind the stream, the stream restarts there.
 */
int wc__sink_opened(struct session *s, struct sink_rt *r, struct sink_job *j, struct wc_err *err)
{
    struct wc_sink *k = r->k;
    char p[40], c[WC_LSN_STRLEN];

    if (j->rc < 0) {
        if (j->err.code != WC_ERR_IO && j->err.code != WC_ERR_CONFIG) {
            *err = j->err;
            return -1;
        }
        wc__sink_down(s, r, &j->err);
        if (gave_up(s, &r->retry)) {
            *err = j->err;
            s->gave_up = 1;
            return -1;
        }
        return 0;
    }
    /* Lost: no cursor while another sink has one (unless it missed nothing: wc__fresh_start), or one
     * behind what the slot was confirmed to. */
    wc_lsn confirmed = s->slot_confirmed > s->stats->confirmed ? s->slot_confirmed : s->stats->confirmed;
    int others = 0;
    for (int i = 0; i < s->nsink; i++)
        others |= s->sinks[i] != k && s->sinks[i]->has_cursor;
    if (j->found ? j->cursor.lsn < confirmed : others && !wc__fresh_start(s, k, confirmed)) {
        wc_warning(
            "sink \"%s\" came back without its data: its cursor (%s) is behind replication slot \"%s\" (%s); "
            "opening every sink again to rebuild it",
            k->name, j->found ? wc_pos_format(j->cursor, p) : "none", s->cfg->slot,
            wc_lsn_format(confirmed, c));
        r->state = SINK_BEHIND;
        s->lost = 1;
        return 0;
    }
    k->cursor = j->found ? j->cursor : WC_POS_NONE;
    k->has_cursor = j->found;
    r->known = 1;
    wc_metrics_applied(k, k->cursor.lsn);
    r->floor = k->cursor;
    __atomic_store_n(&k->connected, 1, __ATOMIC_RELEASE);
    if (wc_pos_cmp(k->cursor, s->pos) >= 0) {
        r->state = SINK_UP;
        return 0;
    }
    if (!j->found && s->fresh_at != 0)
        /* Unreachable since the first start (wc__fresh_start): the slot was held for it. */
        wc_info(
            "sink \"%s\": connected for the first time since the pipeline began at %s: applying from there",
            k->name, wc_lsn_format(s->fresh_at, c));
    else
        wc_info("sink \"%s\": connected again, catching up from its cursor %s", k->name,
                wc_pos_format(k->cursor, p));
    r->state = SINK_BEHIND;
    s->restart = 1;
    return 0;
}

/* Open the sinks that are down once their delay has passed. */
int wc__sinks_tick(struct session *s, struct wc_err *err)
{
    int64_t now = 0;
    int down = 0;

    (void)err;
    if (s->stopping || !s->any_down)
        return 0;
    for (int i = 0; i < s->nsink; i++) {
        struct sink_rt *r = &s->rt[i];
        if (r->state != SINK_DOWN || r->job != NULL)
            continue;
        down = 1;
        if (now == 0)
            now = wc_now_ms(); /* only with a sink down: this runs for every message of the stream */
        if (now < r->retry_at_ms)
            continue;
        r->state = SINK_OPENING;
        r->k->writer = 1;
        wc__job_start(s, r, JOB_OPEN, WC_POS_NONE);
    }
    s->any_down = down;
    return 0;
}

int wc__open_sink(struct wc_sink *k, const struct wc_owner *owner, struct wc_pos *cursor, int *found,
                  struct wc_err *err)
{
    if (k->ops->open(k, err) < 0 || wc_sink_claim(k, owner, err) < 0 ||
        k->ops->read_cursor(k, cursor, found, err) < 0)
        return -1;
    return 0;
}

/* Open a sink without the two halves (the tail's file) here and now, as a finished job. */
static void open_inline(struct session *s, struct sink_rt *r, struct sink_job *j)
{
    j->kind = JOB_OPEN;
    j->sink = r->k;
    j->rc = wc__open_sink(r->k, &s->me, &j->cursor, &j->found, &j->err);
    j->done = 1;
}

/*
 * Open every sink, side by side on their threads, and read their cursors. A sink that cannot be opened
 * for a reason that may pass (or, once walcast has streamed, one someone must fix) is left down and
 * retried while the others stream; so is one still connecting OPEN_WAIT_MS after another opened (a server
 * that does not answer), whose open goes on meanwhile. Before the first stream a fault someone must fix
 * is returned (the configuration is wrong: exit 2), as is a fault that stops the engine, and a failure of
 * every sink. SIGTERM meanwhile abandons the opens after SHUTDOWN_GRACE_MS.
 */
int wc__open_all(struct session *s, struct wc_err *err)
{
    struct sink_job inl[s->nsink > 0 ? s->nsink : 1];
    struct sink_job *got[s->nsink > 0 ? s->nsink : 1];
    struct wc_err first = {0}, fatal = {0}, errs[s->nsink > 0 ? s->nsink : 1];
    int64_t t0 = wc_now_ms();
    int opened = 0;

    memset(inl, 0, sizeof(inl));
    memset(errs, 0, sizeof(errs));
    memset(got, 0, sizeof(got));
    for (int i = 0; i < s->nsink; i++) {
        struct sink_rt *r = &s->rt[i];
        r->state = SINK_OPENING;
        r->k->writer = 1;
        if (r->inline_commit)
            open_inline(s, r, &inl[i]);
        else
            wc__job_start(s, r, JOB_OPEN, WC_POS_NONE);
    }
    /* Take each open in as it returns (its wake byte with it, or the wait below would not wait), until
     * all have, or one has opened and the others had OPEN_WAIT_MS. */
    for (;;) {
        int running = 0, ok = 0;
        for (int i = 0; i < s->nsink; i++) {
            if (got[i] == NULL)
                got[i] = s->rt[i].inline_commit ? &inl[i] : wc__job_reap(s, &s->rt[i]);
            if (got[i] == NULL)
                running++;
            else if (got[i]->rc == 0)
                ok++;
        }
        if (running == 0 || (ok > 0 && wc_now_ms() - t0 >= OPEN_WAIT_MS))
            break;
        if (wc_engine_stop) {
            for (int i = 0; i < s->nsink; i++)
                if (got[i] != NULL && !s->rt[i].inline_commit)
                    free(got[i]);
            s->stopping = 1;
            wc__drain(s, SHUTDOWN_GRACE_MS);
            wc_err_set(err, WC_ERR_IO, "stopped while connecting to the sinks");
            return -1;
        }
        wc__wait_wake(s, 100);
    }
    for (int i = 0; i < s->nsink; i++) {
        struct sink_rt *r = &s->rt[i];
        struct sink_job *j = got[i];
        if (j == NULL)
            continue; /* still connecting: taken in by wc__jobs_poll() when it returns */
        errs[i] = j->err;
        if (j->rc == 0) {
            r->k->cursor = j->found ? j->cursor : WC_POS_NONE;
            r->k->has_cursor = j->found;
            r->known = 1;
            wc_metrics_applied(r->k, r->k->cursor.lsn);
            r->floor = r->k->cursor;
            r->state = SINK_UP;
            __atomic_store_n(&r->k->connected, 1, __ATOMIC_RELEASE);
            opened++;
        } else if (j->err.code == WC_ERR_IO || (j->err.code == WC_ERR_CONFIG && s->started)) {
            if (first.code == 0)
                first = j->err;
            r->state = SINK_DOWN;
        } else if (fatal.code == 0) {
            fatal = j->err;
            r->state = SINK_DOWN;
        }
        if (!r->inline_commit)
            free(j);
    }
    if (fatal.code != 0 || opened == 0) {
        wc__drain(s, -1);
        wc__close_all(s);
        *err = fatal.code != 0 ? fatal : first;
        return -1;
    }
    for (int i = 0; i < s->nsink; i++) {
        struct sink_rt *r = &s->rt[i];
        if (r->state == SINK_UP)
            continue;
        /* Never read in this process: it cannot be behind the slot's position unless it lost data, which
         * shows when it is back. Until then the slot is confirmed no further. */
        if (!r->known)
            r->k->cursor = (struct wc_pos){s->slot_confirmed, -1};
        if (r->state == SINK_DOWN)
            wc__sink_down(s, r, &errs[i]);
        else
            wc_warning("sink \"%s\": still connecting after %d ms: the other sinks start without it",
                       r->k->name, OPEN_WAIT_MS);
    }
    return 0;
}

/* Close every sink (not one a thread was left running on). */
void wc__close_all(struct session *s)
{
    for (int i = 0; i < s->nsink; i++) {
        struct sink_rt *r = &s->rt[i];
        r->leaving = 0;
        if (__atomic_load_n(&r->k->abandoned, __ATOMIC_ACQUIRE))
            continue;
        __atomic_store_n(&r->k->connected, 0, __ATOMIC_RELEASE);
        if (r->k->ops->close)
            r->k->ops->close(r->k);
        r->state = SINK_DOWN;
        r->retry_at_ms = 0;
        r->due = 0;
        r->queued = 0;
        r->queued_bytes = 0;
    }
}
