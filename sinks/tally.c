/* tally.c - what each sink did, counted per batch and published when the batch's commit returned. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "walcast/buf.h"
#include "walcast/tally.h"

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define ADD(x, v) __atomic_fetch_add(&(x), (v), __ATOMIC_RELAXED)

/* Upper bounds of the histograms: seconds in microseconds, batch sizes in events. */
static const uint64_t commit_bounds[] = {1000,   2500,   5000,    10000,   25000,   50000,   100000,
                                         250000, 500000, 1000000, 2500000, 5000000, 10000000};
static const uint64_t visible_bounds[] = {1000,    2500,    5000,     10000,    25000,
                                          50000,   100000,  250000,   500000,   1000000,
                                          2500000, 5000000, 10000000, 30000000, 60000000};
static const uint64_t batch_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};

/* ---- event types: a table shared by every tally, filled once per new type ---- */

#define TYPE_SLOTS 128 /* open addressing, at least twice WC_TALLY_TYPES */

static const char *type_names[WC_TALLY_TYPES];
static int type_slot[TYPE_SLOTS]; /* 0 = empty, else index + 1; written under type_lock, read without */
static int ntypes;
static pthread_mutex_t type_lock = PTHREAD_MUTEX_INITIALIZER;

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* The index of type, or -1 (and *free_slot: where it would go) when it is not in the table. */
static int lookup(const char *type, uint32_t h, int *free_slot)
{
    for (int i = 0; i < TYPE_SLOTS; i++) {
        int slot = (int)((h + (uint32_t)i) & (TYPE_SLOTS - 1));
        int v = __atomic_load_n(&type_slot[slot], __ATOMIC_ACQUIRE);
        if (v == 0) {
            *free_slot = slot;
            return -1;
        }
        if (strcmp(type_names[v - 1], type) == 0)
            return v - 1;
    }
    *free_slot = -1;
    return -1;
}

int wc_tally_type(const char *type)
{
    int idx, slot;
    uint32_t h;

    if (type == NULL)
        type = "";
    h = hash(type);
    if ((idx = lookup(type, h, &slot)) >= 0)
        return idx;
    /* First sight of this type: another thread may be adding it (or another) right now. */
    pthread_mutex_lock(&type_lock);
    idx = lookup(type, h, &slot);
    if (idx < 0 && slot >= 0 && ntypes < WC_TALLY_TYPES) {
        idx = ntypes;
        type_names[idx] = wc_xstrdup(type);
        /* The name is written before what publishes it: the count (readers by index), the slot (by name). */
        __atomic_store_n(&ntypes, idx + 1, __ATOMIC_RELEASE);
        __atomic_store_n(&type_slot[slot], idx + 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&type_lock);
    return idx >= 0 ? idx : WC_TALLY_OTHER;
}

const char *wc_tally_type_name(int index)
{
    if (index == WC_TALLY_OTHER)
        return "(other)";
    if (index < 0 || index >= __atomic_load_n(&ntypes, __ATOMIC_ACQUIRE))
        return NULL;
    return type_names[index];
}

/* ---- histograms ---- */

static void hist_init(struct wc_hist *h, const uint64_t *bounds, int n, uint64_t scale)
{
    h->bounds = bounds;
    h->nbounds = n;
    h->scale = scale;
}

void wc_hist_observe(struct wc_hist *h, uint64_t value, uint64_t n)
{
    int i = 0;

    while (i < h->nbounds && value > h->bounds[i])
        i++;
    ADD(h->bucket[i], n);
    ADD(h->count, n);
    ADD(h->sum, value * n);
}

/* ---- time ---- */

static int64_t wall_us(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int64_t)era * 146097 + doe - 719468;
}

int64_t wc_iso_to_us(const char *s)
{
    int y, mo, d, h, mi, se, us = 0;

    if (s == NULL || strlen(s) < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':')
        return -1;
    if (digits(s, 4, &y) < 0 || digits(s + 5, 2, &mo) < 0 || digits(s + 8, 2, &d) < 0 ||
        digits(s + 11, 2, &h) < 0 || digits(s + 14, 2, &mi) < 0 || digits(s + 17, 2, &se) < 0)
        return -1;
    const char *p = s + 19;
    if (*p == '.') {
        int scale = 100000;
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
            us += (*p - '0') * scale;
    }
    if (*p != 'Z' || mo < 1 || mo > 12 || d < 1 || d > 31)
        return -1;
    return ((days_from_civil(y, mo, d) * 86400) + h * 3600 + mi * 60 + se) * 1000000 + us;
}

/* ---- the tally ---- */

struct wc_tally *wc_tally_new(void)
{
    struct wc_tally *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    hist_init(&t->batch_events, batch_bounds, (int)(sizeof(batch_bounds) / sizeof(batch_bounds[0])), 1);
    hist_init(&t->commit_seconds, commit_bounds, (int)(sizeof(commit_bounds) / sizeof(commit_bounds[0])),
              1000000);
    hist_init(&t->visible_seconds, visible_bounds, (int)(sizeof(visible_bounds) / sizeof(visible_bounds[0])),
              1000000);
    return t;
}

void wc_tally_free(struct wc_tally *t)
{
    if (t == NULL)
        return;
    free(t->stage[0].times);
    free(t->stage[1].times);
    free(t);
}

static void stage_clear(struct wc_tally_stage *st)
{
    if (st->events == 0 && st->ntimes == 0)
        return;
    memset(st->n, 0, sizeof(st->n));
    st->events = 0;
    st->ntimes = 0;
}

void wc_tally_count(struct wc_tally *t, int in_commit, const struct wc_event *ev, int outcome, int delta)
{
    struct wc_tally_stage *st;
    int type;

    if (t == NULL)
        return;
    st = &t->stage[in_commit ? !t->q : t->q];
    /* Consecutive events (and the sinks of one event) mostly share a type: one comparison, not a lookup. */
    static __thread const char *last_name;
    static __thread int last_type = -1;
    const char *text = ev->col[WC_COL_EVENT_TYPE].text ? ev->col[WC_COL_EVENT_TYPE].text : "";
    if (last_type >= 0 && strcmp(last_name, text) == 0)
        type = last_type;
    else {
        type = last_type = wc_tally_type(text);
        last_name = type == WC_TALLY_OTHER ? "\x01" : type_names[type];
    }
    st->n[type][outcome] += delta;
    st->events += delta;
    if (in_commit || delta <= 0)
        return;
    /* Its transaction's commit time, once per transaction (events of one transaction come together). */
    if (st->ntimes > 0 && st->times[st->ntimes - 1].lsn == ev->pos.lsn) {
        st->times[st->ntimes - 1].n++;
        return;
    }
    /* The sinks of one event parse its transaction's commit time once. */
    static __thread wc_lsn last_lsn;
    static __thread int64_t last_us = -1;
    int64_t us = last_lsn == ev->pos.lsn && last_us >= 0 ? last_us : wc_iso_to_us(ev->commit_time);
    last_lsn = ev->pos.lsn;
    last_us = us;
    if (us < 0)
        return; /* a rebuild's rows and dead-letter retries have no commit time */
    if (st->ntimes == st->cap) {
        st->cap = st->cap ? st->cap * 2 : 256;
        st->times = wc_xrealloc(st->times, (size_t)st->cap * sizeof(*st->times));
    }
    st->times[st->ntimes++] = (struct wc_txn_time){ev->pos.lsn, us, 1};
}

void wc_tally_detach(struct wc_tally *t)
{
    if (t == NULL)
        return;
    t->q = !t->q;
    stage_clear(&t->stage[t->q]); /* the stage published (or dropped) last time */
}

void wc_tally_commit_start(struct wc_tally *t)
{
    if (t)
        t->commit_start_us = wall_us();
}

void wc_tally_commit_end(struct wc_tally *t, int rc)
{
    if (t == NULL)
        return;
    t->commit_end_us = wall_us();
    if (rc < 0) {
        ADD(t->failures, 1);
        return;
    }
    uint64_t took =
        t->commit_end_us > t->commit_start_us ? (uint64_t)(t->commit_end_us - t->commit_start_us) : 0;
    wc_hist_observe(&t->commit_seconds, took, 1);
}

/* Move stage st into the totals; its events became visible at visible_us. */
static void publish(struct wc_tally *t, struct wc_tally_stage *st, wc_lsn cursor, int64_t visible_us)
{
    int64_t newest = 0;

    if (st->events > 0) {
        for (int i = 0; i <= WC_TALLY_TYPES; i++)
            for (int o = 0; o < WC_OUT_N; o++)
                if (st->n[i][o] > 0)
                    ADD(t->total[i][o], (uint64_t)st->n[i][o]);
        wc_hist_observe(&t->batch_events, (uint64_t)st->events, 1);
    }
    for (int i = 0; i < st->ntimes; i++) {
        const struct wc_txn_time *tt = &st->times[i];
        uint64_t lag = visible_us > tt->commit_us ? (uint64_t)(visible_us - tt->commit_us) : 0;
        wc_hist_observe(&t->visible_seconds, lag, (uint64_t)tt->n);
        if (tt->commit_us > newest)
            newest = tt->commit_us;
    }
    if (newest > LOAD(t->newest_commit_us))
        STORE(t->newest_commit_us, newest);
    STORE(t->cursor_lsn, (int64_t)cursor);
    STORE(t->last_commit_us, visible_us);
    ADD(t->commits, 1);
    stage_clear(st);
}

void wc_tally_publish(struct wc_tally *t, wc_lsn cursor)
{
    if (t)
        publish(t, &t->stage[!t->q], cursor, t->commit_end_us ? t->commit_end_us : wall_us());
}

void wc_tally_drop_inflight(struct wc_tally *t)
{
    if (t)
        stage_clear(&t->stage[!t->q]);
}

void wc_tally_reset(struct wc_tally *t)
{
    if (t == NULL)
        return;
    stage_clear(&t->stage[0]);
    stage_clear(&t->stage[1]);
}

void wc_tally_flush(struct wc_tally *t, wc_lsn cursor)
{
    if (t == NULL)
        return;
    int64_t now = wall_us();
    for (int i = 0; i < 2; i++)
        if (t->stage[i].events != 0)
            publish(t, &t->stage[i], cursor, now);
    STORE(t->cursor_lsn, (int64_t)cursor);
}

uint64_t wc_tally_sum(const struct wc_tally *t, int outcome)
{
    uint64_t n = 0;
    for (int i = 0; i <= WC_TALLY_TYPES; i++)
        n += __atomic_load_n(&t->total[i][outcome], __ATOMIC_RELAXED);
    return n;
}
