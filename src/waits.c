/*
 * waits.c - GET /wait?lsn=X/Y&sink=NAME&timeout_ms=N on the metrics endpoint: long-polls until the sink
 * has applied every transaction up to the LSN (read your writes).
 *
 * A waiter costs no thread: its connection is suspended in libmicrohttpd (MHD_suspend_connection) and
 * kept in its sink's list, sorted by LSN. When a sink's applied position moves (its commit returned, or
 * it opened with a cursor read: wc_metrics_applied, on the sink's worker thread as soon as its commit
 * returns, once per commit and never per event) the waiters it reached are resumed from the front of the
 * list, and the thread that resumed them writes their answers (wc__http_kick: no hop through the
 * endpoint's thread); one thread of this file resumes those whose timeout passed. The applied position is the
 * sink's durable cursor's LSN, the same the sink publishes on its server (walcast:applied:<slot>,
 * walcast_cursor), or further while the sink has nothing queued and no commit in flight: up to where the
 * stream has delivered every transaction (engine.c, visible_through).
 *
 * Locking: every list and position is under one mutex; suspending and resuming happen under it, so a
 * waiter is never resumed before it is suspended. Answers are written after it is released (the
 * endpoint's loop may read a new request, whose handler takes it).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "metrics.h"
#include "walcast/buf.h"
#include "walcast/clock.h"
#include "walcast/log.h"

#define DEFAULT_TIMEOUT_MS 10000
#define MAX_TIMEOUT_MS 3600000

enum { WAITING, REACHED, TIMED_OUT, STOPPING };

struct waiter {
    struct MHD_Connection *c;
    wc_lsn lsn;
    int64_t deadline_ms; /* monotonic */
    int sink;
    int outcome;    /* WAITING until resumed */
    wc_lsn applied; /* the sink's position when it was resumed */
};

struct sink_waits {
    wc_lsn applied;    /* the sink's durable cursor's LSN; 0 until known */
    struct waiter **v; /* sorted by lsn, lowest first */
    int n, cap;
};

struct wc_waits {
    struct wc_http *http; /* the endpoint's loop, to run again after a timeout's resumes */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t timer;
    int timer_started;
    int stop;
    int nsink;
    struct sink_waits *sinks;
    int64_t next_deadline; /* the earliest waiter's, INT64_MAX when none */
    uint64_t wanted;       /* atomic: the lowest LSN waited for, UINT64_MAX when none */
};

/* The lowest LSN waited for, after the lists changed. Under the lock. */
static void update_wanted(struct wc_waits *ws)
{
    uint64_t min = UINT64_MAX;

    for (int i = 0; i < ws->nsink; i++)
        if (ws->sinks[i].n > 0 && ws->sinks[i].v[0]->lsn < min)
            min = ws->sinks[i].v[0]->lsn;
    __atomic_store_n(&ws->wanted, min, __ATOMIC_RELAXED);
}

int wc_metrics_wanted(wc_lsn lsn)
{
    struct wc_metrics *m = wc__metrics;
    struct wc_waits *ws = m ? m->waits : NULL;

    return ws != NULL && __atomic_load_n(&ws->wanted, __ATOMIC_RELAXED) <= lsn;
}

static void resume(struct waiter *w, int outcome, wc_lsn applied)
{
    w->outcome = outcome;
    w->applied = applied;
    MHD_resume_connection(w->c);
}

/* Resume the waiters of every sink whose timeout passed; the next deadline. Under the lock. */
static int64_t expire(struct wc_waits *ws, int64_t now)
{
    int64_t next = INT64_MAX;

    for (int i = 0; i < ws->nsink; i++) {
        struct sink_waits *sw = &ws->sinks[i];
        int k = 0;
        for (int j = 0; j < sw->n; j++) {
            struct waiter *w = sw->v[j];
            if (w->deadline_ms <= now) {
                resume(w, TIMED_OUT, sw->applied);
                continue;
            }
            if (w->deadline_ms < next)
                next = w->deadline_ms;
            sw->v[k++] = w;
        }
        sw->n = k;
    }
    update_wanted(ws);
    return next;
}

static void *timer_main(void *arg)
{
    struct wc_waits *ws = arg;

    pthread_mutex_lock(&ws->mu);
    while (!ws->stop) {
        int64_t now = wc_now_ms();
        if (ws->next_deadline <= now) {
            ws->next_deadline = expire(ws, now);
            wc__http_wake(ws->http);
        }
        if (ws->next_deadline == INT64_MAX) {
            pthread_cond_wait(&ws->cv, &ws->mu);
            continue;
        }
        struct timespec ts = wc_realtime_after_ms(ws->next_deadline - now);
        pthread_cond_timedwait(&ws->cv, &ws->mu, &ts);
    }
    pthread_mutex_unlock(&ws->mu);
    return NULL;
}

int wc__waits_start(struct wc_metrics *m, struct wc_err *err)
{
    struct wc_waits *ws = calloc(1, sizeof(*ws));

    if (ws == NULL ||
        (ws->sinks = calloc((size_t)(m->nsink > 0 ? m->nsink : 1), sizeof(*ws->sinks))) == NULL) {
        free(ws);
        wc_err_set(err, WC_ERR_INTERNAL, "out of memory");
        return -1;
    }
    ws->nsink = m->nsink;
    ws->http = m->http;
    ws->next_deadline = INT64_MAX;
    ws->wanted = UINT64_MAX;
    pthread_mutex_init(&ws->mu, NULL);
    pthread_cond_init(&ws->cv, NULL);
    if (pthread_create(&ws->timer, NULL, timer_main, ws) != 0) {
        pthread_mutex_destroy(&ws->mu);
        pthread_cond_destroy(&ws->cv);
        free(ws->sinks);
        free(ws);
        wc_err_set(err, WC_ERR_INTERNAL, "could not start the thread of /wait's timeouts");
        return -1;
    }
    ws->timer_started = 1;
    m->waits = ws;
    return 0;
}

/* Resume every waiter (the endpoint stops: 503) so that libmicrohttpd can stop. */
void wc__waits_release(struct wc_metrics *m)
{
    struct wc_waits *ws = m->waits;

    if (ws == NULL)
        return;
    pthread_mutex_lock(&ws->mu);
    ws->stop = 1;
    for (int i = 0; i < ws->nsink; i++) {
        for (int j = 0; j < ws->sinks[i].n; j++)
            resume(ws->sinks[i].v[j], STOPPING, ws->sinks[i].applied);
        ws->sinks[i].n = 0;
    }
    update_wanted(ws);
    pthread_cond_signal(&ws->cv);
    pthread_mutex_unlock(&ws->mu);
}

void wc__waits_free(struct wc_metrics *m)
{
    struct wc_waits *ws = m->waits;

    if (ws == NULL)
        return;
    wc__waits_release(m);
    if (ws->timer_started)
        pthread_join(ws->timer, NULL);
    for (int i = 0; i < ws->nsink; i++)
        free(ws->sinks[i].v);
    free(ws->sinks);
    pthread_mutex_destroy(&ws->mu);
    pthread_cond_destroy(&ws->cv);
    free(ws);
    m->waits = NULL;
}

/* wc_metrics_applied runs on the sinks' worker threads too, and one the engine left running at shutdown
 * may still call it: the endpoint goes only once none is inside (wc__waits_detach, the writer, preferred).
 * Each announcement takes a read lock, so that one writing its waiters' answers (a turn of the endpoint's
 * loop) holds up neither the engine nor another sink announcing theirs. */
static pthread_rwlock_t applied_mu = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;

void wc__waits_detach(void)
{
    pthread_rwlock_wrlock(&applied_mu);
    wc__metrics = NULL;
    pthread_rwlock_unlock(&applied_mu);
}

static void applied(struct wc_sink *k, wc_lsn lsn);

void wc_metrics_applied(struct wc_sink *k, wc_lsn lsn)
{
    pthread_rwlock_rdlock(&applied_mu);
    applied(k, lsn);
    pthread_rwlock_unlock(&applied_mu);
}

static void applied(struct wc_sink *k, wc_lsn lsn)
{
    struct wc_metrics *m = wc__metrics;
    struct wc_waits *ws = m ? m->waits : NULL;

    if (ws == NULL)
        return;
    for (int i = 0; i < m->nsink; i++) {
        if (m->sinks[i].sink != k)
            continue;
        struct sink_waits *sw = &ws->sinks[i];
        int j = 0;
        pthread_mutex_lock(&ws->mu);
        if (lsn > sw->applied) {
            sw->applied = lsn;
            while (j < sw->n && sw->v[j]->lsn <= lsn)
                resume(sw->v[j++], REACHED, lsn);
            if (j > 0) {
                memmove(sw->v, sw->v + j, (size_t)(sw->n - j) * sizeof(*sw->v));
                sw->n -= j;
                update_wanted(ws);
            }
        }
        pthread_mutex_unlock(&ws->mu);
        /* Their answers from this thread, awake already (the lock is released: a new request the loop
         * reads takes it). */
        if (j > 0)
            wc__http_kick(m->http);
        return;
    }
}

/* Insert w into its sink's list, keeping it sorted by LSN (after those of the same LSN). Under the lock. */
static void insert(struct sink_waits *sw, struct waiter *w)
{
    if (sw->n == sw->cap) {
        sw->cap = sw->cap ? sw->cap * 2 : 64;
        sw->v = wc_xrealloc(sw->v, (size_t)sw->cap * sizeof(*sw->v));
    }
    int lo = 0, hi = sw->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (sw->v[mid]->lsn <= w->lsn)
            lo = mid + 1;
        else
            hi = mid;
    }
    memmove(sw->v + lo + 1, sw->v + lo, (size_t)(sw->n - lo) * sizeof(*sw->v));
    sw->v[lo] = w;
    sw->n++;
}

static enum MHD_Result json_reply(struct MHD_Connection *c, unsigned status, json_t *doc)
{
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (body == NULL)
        return MHD_NO;
    size_t n = strlen(body);
    struct MHD_Response *r = MHD_create_response_from_buffer(n, body, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result error_reply(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result error_reply(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return json_reply(c, status, json_pack("{s:s}", "error", msg));
}

/* The answer: 200 reached, 408 timed out, 503 the endpoint stops; the position applied through in each. */
static enum MHD_Result outcome_reply(struct wc_metrics *m, struct MHD_Connection *c, const struct waiter *w)
{
    char want[WC_LSN_STRLEN], got[WC_LSN_STRLEN];
    unsigned status = w->outcome == REACHED     ? MHD_HTTP_OK
                      : w->outcome == TIMED_OUT ? MHD_HTTP_REQUEST_TIMEOUT
                                                : MHD_HTTP_SERVICE_UNAVAILABLE;
    json_t *doc = json_pack("{s:s,s:s,s:o,s:b}", "sink", m->sinks[w->sink].sink->name, "lsn",
                            wc_lsn_format(w->lsn, want), "applied",
                            w->applied ? json_string(wc_lsn_format(w->applied, got)) : json_null(), "reached",
                            w->outcome == REACHED);
    if (w->outcome == STOPPING)
        json_object_set_new(doc, "error", json_string("walcast is stopping"));
    return json_reply(c, status, doc);
}

int wc__waits_handle(struct wc_metrics *m, struct MHD_Connection *c, void **state)
{
    struct wc_waits *ws = m->waits;
    struct waiter *w = *state;

    if (w != NULL) /* resumed */
        return outcome_reply(m, c, w);
    if (ws == NULL)
        return error_reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "waits are not served");

    const char *lsn_text = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "lsn");
    const char *sink = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "sink");
    const char *timeout = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "timeout_ms");
    wc_lsn lsn;
    long tmo = DEFAULT_TIMEOUT_MS;
    int idx = -1;

    if (lsn_text == NULL)
        return error_reply(c, MHD_HTTP_BAD_REQUEST, "lsn is missing: /wait?lsn=X/Y&sink=NAME&timeout_ms=N");
    if (wc_lsn_parse(lsn_text, &lsn) < 0)
        return error_reply(c, MHD_HTTP_BAD_REQUEST,
                           "invalid lsn \"%.64s\": expected two hexadecimal numbers separated by a slash, as "
                           "pg_current_wal_insert_lsn() returns it (e.g. 0/16B3748)",
                           lsn_text);
    if (timeout != NULL) {
        char *end;
        errno = 0;
        tmo = strtol(timeout, &end, 10);
        if (errno || end == timeout || *end || tmo < 0 || tmo > MAX_TIMEOUT_MS)
            return error_reply(c, MHD_HTTP_BAD_REQUEST,
                               "invalid timeout_ms \"%.64s\": expected milliseconds from 0 to %d", timeout,
                               MAX_TIMEOUT_MS);
    }
    for (int i = 0; i < m->nsink; i++)
        if ((sink && strcmp(sink, m->sinks[i].sink->name) == 0) || (sink == NULL && m->nsink == 1))
            idx = i;
    if (idx < 0) {
        char names[512] = "";
        size_t n = 0;
        for (int i = 0; i < m->nsink; i++)
            n += (size_t)snprintf(names + n, n < sizeof(names) ? sizeof(names) - n : 0, "%s\"%s\"",
                                  i ? ", " : "", m->sinks[i].sink->name);
        if (sink == NULL)
            return error_reply(c, MHD_HTTP_BAD_REQUEST, "sink is missing: the sinks are %s", names);
        return error_reply(c, MHD_HTTP_NOT_FOUND, "unknown sink \"%.64s\": the sinks are %s", sink, names);
    }

    w = wc_xcalloc(1, sizeof(*w));
    w->c = c;
    w->lsn = lsn;
    w->sink = idx;
    w->deadline_ms = wc_now_ms() + tmo;
    pthread_mutex_lock(&ws->mu);
    struct sink_waits *sw = &ws->sinks[idx];
    if (sw->applied >= lsn || tmo == 0 || ws->stop) {
        w->outcome = sw->applied >= lsn ? REACHED : ws->stop ? STOPPING : TIMED_OUT;
        w->applied = sw->applied;
        pthread_mutex_unlock(&ws->mu);
        enum MHD_Result rc = outcome_reply(m, c, w);
        free(w);
        return rc;
    }
    *state = w; /* freed when the request completes (wc__waits_completed) */
    MHD_suspend_connection(c);
    insert(sw, w);
    update_wanted(ws);
    if (w->deadline_ms < ws->next_deadline) {
        ws->next_deadline = w->deadline_ms;
        pthread_cond_signal(&ws->cv);
    }
    pthread_mutex_unlock(&ws->mu);
    return MHD_YES;
}

void wc__waits_completed(void **state)
{
    free(*state);
    *state = NULL;
}
