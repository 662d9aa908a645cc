/*
 * metrics_text.c - what the endpoint serves: /metrics in Prometheus's text format (names prefixed
 * walcast_, base units, _total for counters), the /status document `walcast status` prints, and the
 * readiness and health decisions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include "metrics.h"
#include "walcast/clock.h"

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

static const char *const outcome_names[WC_OUT_N] = {"applied", "dead_lettered", "skipped"};
static const char *const wal_statuses[] = {"reserved", "extended", "unreserved", "lost"};

static void family(struct wc_buf *b, const char *name, const char *type, const char *help)
{
    wc_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The shortest text that reads back as v. */
static void put_num(struct wc_buf *b, double v)
{
    char t[40];
    snprintf(t, sizeof(t), "%.15g", v);
    if (strtod(t, NULL) != v)
        snprintf(t, sizeof(t), "%.17g", v);
    wc_buf_puts(b, t);
}

/* A gauge without labels: its family, and its sample when there is one. */
static void gauge(struct wc_buf *b, const char *name, const char *help, int has, double v)
{
    family(b, name, "gauge", help);
    if (!has)
        return;
    wc_buf_printf(b, "%s ", name);
    put_num(b, v);
    wc_buf_puts(b, "\n");
}

/* A label value, escaped as the text format wants (backslash, double quote, newline). */
static void label_value(struct wc_buf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            wc_buf_printf(b, "\\%c", *v);
        else if (*v == '\n')
            wc_buf_puts(b, "\\n");
        else
            wc_buf_append(b, v, 1);
    }
}

static void sample_sink(struct wc_buf *b, const char *name, const char *sink, double v)
{
    wc_buf_printf(b, "%s{sink=\"", name);
    label_value(b, sink);
    wc_buf_puts(b, "\"} ");
    put_num(b, v);
    wc_buf_puts(b, "\n");
}

static void hist(struct wc_buf *b, const char *name, const char *sink, const struct wc_hist *h)
{
    uint64_t cum = 0;

    for (int i = 0; i <= h->nbounds; i++) {
        cum += LOAD(h->bucket[i]);
        wc_buf_printf(b, "%s_bucket{sink=\"", name);
        label_value(b, sink);
        if (i < h->nbounds) {
            wc_buf_puts(b, "\",le=\"");
            put_num(b, (double)h->bounds[i] / (double)h->scale);
            wc_buf_printf(b, "\"} %llu\n", (unsigned long long)cum);
        } else
            wc_buf_printf(b, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    wc_buf_printf(b, "%s_sum{sink=\"", name);
    label_value(b, sink);
    wc_buf_puts(b, "\"} ");
    put_num(b, (double)LOAD(h->sum) / (double)h->scale);
    wc_buf_puts(b, "\n");
    wc_buf_printf(b, "%s_count{sink=\"", name);
    label_value(b, sink);
    wc_buf_printf(b, "\"} %llu\n", (unsigned long long)cum);
}

/* The process's own figures, named as Prometheus's client libraries name them. */
static void process_metrics(struct wc_metrics *m, struct wc_buf *b)
{
    long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    unsigned long long utime = 0, stime = 0, vsize = 0;
    long long rss = 0;
    char line[1024];
    FILE *f = fopen("/proc/self/stat", "r");

    if (f && fgets(line, sizeof(line), f)) {
        /* Fields after the command name (which may hold spaces, so start after its closing paren). */
        const char *p = strrchr(line, ')');
        if (p && sscanf(p + 2,
                        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
                        "%*u %llu %lld",
                        &utime, &stime, &vsize, &rss) != 4)
            utime = stime = vsize = 0, rss = 0;
    }
    if (f)
        fclose(f);
    family(b, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
    wc_buf_printf(b, "process_cpu_seconds_total %.17g\n", (double)(utime + stime) / (double)ticks);
    family(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    wc_buf_printf(b, "process_resident_memory_bytes %lld\n", rss * page);
    family(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    wc_buf_printf(b, "process_virtual_memory_bytes %llu\n", vsize);
    family(b, "process_start_time_seconds", "gauge",
           "Start time of the process since unix epoch in seconds.");
    wc_buf_printf(b, "process_start_time_seconds %.3f\n", (double)m->start_us / 1e6);
    int fds = -1; /* less the directory's own descriptor, counted while it is read */
    DIR *dir = opendir("/proc/self/fd");
    struct dirent *de;
    while (dir && (de = readdir(dir)) != NULL)
        fds += de->d_name[0] != '.';
    if (dir)
        closedir(dir);
    struct rlimit rl;
    family(b, "process_open_fds", "gauge", "Number of open file descriptors.");
    wc_buf_printf(b, "process_open_fds %d\n", fds);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        family(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        wc_buf_printf(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
    }
}

/* The newest position the server is known to have: the stream's WAL end, or the poller's reading. */
static int64_t head_lsn(struct wc_metrics *m)
{
    int64_t h = LOAD(m->wal_end), r = LOAD(m->received);
    pthread_mutex_lock(&m->lock);
    if (m->slot_ok && (int64_t)m->slot.current_lsn > h)
        h = (int64_t)m->slot.current_lsn;
    pthread_mutex_unlock(&m->lock);
    return h > r ? h : r;
}

/* How far behind a sink is in seconds: 0 once it has applied everything received; otherwise the age of
 * the newest event it has made visible, or the time since it was last caught up, whichever is younger. */
static double sink_lag_seconds(struct wc_metrics *m, struct wc_metrics_sink *ms, int64_t now_us)
{
    int64_t cursor = LOAD(ms->tally->cursor_lsn), received = LOAD(m->received);
    int64_t newest = LOAD(ms->tally->newest_commit_us), caught = LOAD(ms->caught_up_us);

    if (cursor >= received && received > 0)
        return 0;
    int64_t since = newest > caught ? newest : caught;
    if (since <= 0)
        return -1;
    return now_us > since ? (double)(now_us - since) / 1e6 : 0;
}

int wc__metrics_ready(struct wc_metrics *m, char *why, size_t size)
{
    if (LOAD(m->standby)) {
        snprintf(why, size, "standby: another process streams the slot");
        return 0;
    }
    if (!LOAD(m->streaming)) {
        snprintf(why, size, "not streaming (starting or reconnecting)");
        return 0;
    }
    for (int i = 0; i < m->nsink; i++)
        if (!__atomic_load_n(&m->sinks[i].sink->connected, __ATOMIC_ACQUIRE)) {
            snprintf(why, size, "sink \"%s\" is not connected", m->sinks[i].sink->name);
            return 0;
        }
    pthread_mutex_lock(&m->lock);
    int stalled = m->stalled;
    pthread_mutex_unlock(&m->lock);
    if (stalled) {
        snprintf(why, size, "the confirmed position does not move while the server's WAL does");
        return 0;
    }
    snprintf(why, size, "streaming");
    return 1;
}

int wc__metrics_healthy(struct wc_metrics *m, char *why, size_t size)
{
    int64_t idle = wc_now_ms() - LOAD(m->loop_ms);
    int64_t limit = 60000;

    if (LOAD(m->streaming) && idle > limit) {
        snprintf(why, size, "the engine's loop has not run for %lld s", (long long)(idle / 1000));
        return 0;
    }
    snprintf(why, size, "running");
    return 1;
}

/* Rebuilds and verifies of this engine's projections, by their slots (rebuildwatch.c). */
static void rebuild_metrics(struct wc_metrics *m, struct wc_buf *b)
{
    static const struct {
        const char *name, *help;
    } fam[] = {
        {"walcast_rebuild_active",
         "1 while a walcast rebuild or verify process holds its slot; 0 for one stopped or killed, whose "
         "slot retains WAL until the same command resumes it or --discard drops it."},
        {"walcast_rebuild_retained_wal_bytes",
         "WAL the rebuild's slot holds back (current WAL - restart_lsn)."},
        {"walcast_rebuild_behind_bytes", "Current WAL - the rebuild's slot's confirmed_flush_lsn."},
        {"walcast_rebuild_replayed_rows", "Outbox rows in the rebuild's shadow while it replays the outbox."},
    };
    struct wc_rebuild_seen seen[WC_REBUILDS_MAX];

    pthread_mutex_lock(&m->lock);
    int n = m->rebuilds_ok ? m->nrebuild : 0;
    memcpy(seen, m->rebuilds, (size_t)n * sizeof(seen[0]));
    pthread_mutex_unlock(&m->lock);
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        family(b, fam[f].name, "gauge", fam[f].help);
        for (int i = 0; i < n; i++) {
            const struct wc_rebuild_seen *s = &seen[i];
            double v = f == 0   ? s->active
                       : f == 1 ? (double)s->retained_bytes
                       : f == 2 ? (double)s->behind_bytes
                                : (double)s->replayed;
            if (f == 3 && s->replayed < 0)
                continue;
            wc_buf_printf(b, "%s{unit=\"", fam[f].name);
            label_value(b, s->unit);
            wc_buf_printf(b, "\",command=\"%s\"} ", s->verify ? "verify" : "rebuild");
            put_num(b, v);
            wc_buf_puts(b, "\n");
        }
    }
}

void wc__metrics_text(struct wc_metrics *m, struct wc_buf *b)
{
    const struct wc_config *cfg = m->cfg;
    char why[256];
    int64_t now_us = wc_wall_us(), head = head_lsn(m);

    family(b, "walcast_build_info", "gauge",
           "Version of walcast and the replication slot it streams; always 1.");
    wc_buf_printf(b, "walcast_build_info{version=\"%s\",slot=\"", WC_VERSION);
    label_value(b, cfg->slot);
    wc_buf_puts(b, "\"} 1\n");
    family(b, "walcast_up", "gauge", "1 while the engine's loop runs (/healthz is 200).");
    wc_buf_printf(b, "walcast_up %d\n", wc__metrics_healthy(m, why, sizeof(why)));
    family(b, "walcast_ready", "gauge",
           "1 while streaming with every sink connected and the confirmed position keeping up (/readyz is "
           "200).");
    wc_buf_printf(b, "walcast_ready %d\n", wc__metrics_ready(m, why, sizeof(why)));
    family(b, "walcast_streaming", "gauge", "1 while a replication session streams the slot.");
    wc_buf_printf(b, "walcast_streaming %d\n", (int)LOAD(m->streaming));
    family(b, "walcast_standby", "gauge",
           "1 while waiting as a standby for another engine to release the slot.");
    wc_buf_printf(b, "walcast_standby %d\n", (int)LOAD(m->standby));
    family(b, "walcast_received_events_total", "counter", "Outbox events received from the slot.");
    wc_buf_printf(b, "walcast_received_events_total %llu\n", (unsigned long long)LOAD(m->events));
    family(b, "walcast_received_transactions_total", "counter", "Transactions received from the slot.");
    wc_buf_printf(b, "walcast_received_transactions_total %llu\n", (unsigned long long)LOAD(m->txns));
    family(b, "walcast_received_lsn_bytes", "gauge",
           "WAL position (LSN as a number) of the last message handled.");
    wc_buf_printf(b, "walcast_received_lsn_bytes %lld\n", (long long)LOAD(m->received));
    family(b, "walcast_confirmed_lsn_bytes", "gauge",
           "WAL position (LSN as a number) confirmed to the slot.");
    wc_buf_printf(b, "walcast_confirmed_lsn_bytes %lld\n", (long long)LOAD(m->confirmed));
    family(b, "walcast_server_wal_lsn_bytes", "gauge",
           "Newest WAL position of the source server walcast knows of (stream or slot reading).");
    wc_buf_printf(b, "walcast_server_wal_lsn_bytes %lld\n", (long long)head);
    family(b, "walcast_heartbeat_lag_seconds", "gauge",
           "End-to-end lag: round trip of the last heartbeat from the source through the stream.");
    int64_t lag = LOAD(m->lag_ms);
    if (lag >= 0)
        wc_buf_printf(b, "walcast_heartbeat_lag_seconds %.3f\n", (double)lag / 1000.0);
    family(b, "walcast_reconnects_total", "counter",
           "Reconnections after a transient failure, by what failed.");
    wc_buf_printf(b, "walcast_reconnects_total{target=\"source\"} %llu\n",
                  (unsigned long long)LOAD(m->source_reconnects));
    for (int i = 0; i < m->nsink; i++) {
        wc_buf_puts(b, "walcast_reconnects_total{target=\"sink:");
        label_value(b, m->sinks[i].sink->name);
        wc_buf_printf(b, "\"} %llu\n", (unsigned long long)LOAD(m->sinks[i].reconnects));
    }

    /* per sink, per event type */
    static const char *const event_help[WC_OUT_N] = {
        "Events applied to the sink's projections (committed), by event type.",
        "Events sent to the sink's dead-letter store (committed), by event type.",
        "Events dropped by the skip policy, by event type."};
    for (int o = 0; o < WC_OUT_N; o++) {
        char name[64];
        snprintf(name, sizeof(name), "walcast_events_%s_total", outcome_names[o]);
        family(b, name, "counter", event_help[o]);
        for (int i = 0; i < m->nsink; i++)
            for (int t = 0; t <= WC_TALLY_TYPES; t++) {
                const char *type = wc_tally_type_name(t);
                uint64_t n = LOAD(m->sinks[i].tally->total[t][o]);
                int n_rules = 0;
                if (type == NULL ||
                    (n == 0 && (t == WC_TALLY_OTHER || m->sinks[i].sink->conf == NULL ||
                                wc_config_rules(m->sinks[i].sink->conf, type, &n_rules) == NULL)))
                    continue;
                wc_buf_printf(b, "%s{sink=\"", name);
                label_value(b, m->sinks[i].sink->name);
                wc_buf_puts(b, "\",event_type=\"");
                label_value(b, type);
                wc_buf_printf(b, "\"} %llu\n", (unsigned long long)n);
            }
    }
#define PER_SINK(NAME_, TYPE_, HELP_, expr)                                                                  \
    do {                                                                                                     \
        family(b, NAME_, TYPE_, HELP_);                                                                      \
        for (int i = 0; i < m->nsink; i++) {                                                                 \
            struct wc_metrics_sink *ms = &m->sinks[i];                                                       \
            (void)ms;                                                                                        \
            sample_sink(b, NAME_, ms->sink->name, (double)(expr));                                           \
        }                                                                                                    \
    } while (0)
    PER_SINK("walcast_sink_up", "gauge",
             "1 while the sink is connected (open, cursor read, last commit good).",
             __atomic_load_n(&ms->sink->connected, __ATOMIC_ACQUIRE));
    PER_SINK("walcast_sink_commits_total", "counter", "Commits of the sink that returned.",
             LOAD(ms->tally->commits));
    PER_SINK("walcast_sink_commit_failures_total", "counter", "Commits of the sink that failed.",
             LOAD(ms->tally->failures));
    PER_SINK("walcast_sink_cursor_lsn_bytes", "gauge",
             "WAL position (LSN as a number) of the sink's durable cursor.", LOAD(ms->tally->cursor_lsn));
    PER_SINK("walcast_sink_lag_bytes", "gauge",
             "WAL between the server's newest position and the sink's cursor.",
             head > LOAD(ms->tally->cursor_lsn) ? head - LOAD(ms->tally->cursor_lsn) : 0);
    family(
        b, "walcast_sink_lag_seconds", "gauge",
        "How far behind the sink is: 0 when it has applied everything received, else the age of its newest "
        "visible event.");
    for (int i = 0; i < m->nsink; i++) {
        double s = sink_lag_seconds(m, &m->sinks[i], now_us);
        if (s >= 0)
            sample_sink(b, "walcast_sink_lag_seconds", m->sinks[i].sink->name, s);
    }
    family(b, "walcast_sink_dead_letters", "gauge", "Dead letters stored in the sink's dead-letter store.");
    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < m->nsink; i++)
        if (m->sinks[i].dead_letters >= 0)
            sample_sink(b, "walcast_sink_dead_letters", m->sinks[i].sink->name,
                        (double)m->sinks[i].dead_letters);
    pthread_mutex_unlock(&m->lock);
    family(b, "walcast_sink_batch_events", "histogram", "Events per committed batch.");
    for (int i = 0; i < m->nsink; i++)
        hist(b, "walcast_sink_batch_events", m->sinks[i].sink->name, &m->sinks[i].tally->batch_events);
    family(b, "walcast_sink_commit_duration_seconds", "histogram", "Time a sink's commit took.");
    for (int i = 0; i < m->nsink; i++)
        hist(b, "walcast_sink_commit_duration_seconds", m->sinks[i].sink->name,
             &m->sinks[i].tally->commit_seconds);
    family(b, "walcast_sink_commit_to_visible_seconds", "histogram",
           "Per event: the sink's commit returned minus the event's commit time on the source.");
    for (int i = 0; i < m->nsink; i++)
        hist(b, "walcast_sink_commit_to_visible_seconds", m->sinks[i].sink->name,
             &m->sinks[i].tally->visible_seconds);
#undef PER_SINK

    /* the slot, from the poller's last reading */
    pthread_mutex_lock(&m->lock);
    struct wc_slot_sample s = m->slot;
    struct wc_slot_trend t = m->trend;
    int ok = m->slot_ok;
    int64_t polled = m->slot_polled_us;
    int level = m->retain_level, fw = m->forecast_warn;
    pthread_mutex_unlock(&m->lock);
    gauge(b, "walcast_slot_poll_timestamp_seconds", "When the slot was last read (unix time).", ok,
          (double)polled / 1e6);
    int had = ok; /* a reading, of a slot that may be missing */
    ok = ok && s.found;
    gauge(b, "walcast_slot_exists", "1 when the replication slot exists.", had, s.found);
    gauge(b, "walcast_slot_active", "1 when a process streams the slot.", ok, s.active_pid != 0);
    gauge(b, "walcast_slot_retained_wal_bytes", "WAL the slot holds back (current WAL - restart_lsn).", ok,
          (double)s.retained_bytes);
    gauge(b, "walcast_slot_lag_bytes", "Current WAL - the slot's confirmed_flush_lsn.", ok,
          (double)s.lag_bytes);
    gauge(b, "walcast_slot_safe_wal_size_bytes",
          "WAL that can still be written before the slot is invalidated (absent when unlimited).",
          ok && s.max_keep_bytes >= 0 && s.safe_wal_size != -1, (double)s.safe_wal_size);
    gauge(b, "walcast_slot_max_wal_keep_size_bytes", "The server's max_slot_wal_keep_size (absent when -1).",
          had && s.max_keep_bytes >= 0, (double)s.max_keep_bytes);
    family(b, "walcast_slot_wal_status", "gauge", "The slot's wal_status: 1 for the current one.");
    for (size_t i = 0; ok && i < sizeof(wal_statuses) / sizeof(wal_statuses[0]); i++)
        wc_buf_printf(b, "walcast_slot_wal_status{status=\"%s\"} %d\n", wal_statuses[i],
                      strcmp(s.wal_status, wal_statuses[i]) == 0);
    gauge(b, "walcast_server_wal_rate_bytes_per_second", "WAL the source writes per second, over a window.",
          had && t.wal_rate >= 0, t.wal_rate);
    gauge(b, "walcast_slot_retained_wal_growth_bytes_per_second",
          "How fast the slot's retained WAL grows, over the same window.", ok && t.growth_known,
          t.retained_growth);
    gauge(b, "walcast_slot_invalidation_forecast_seconds",
          "Seconds until the slot is invalidated at the current growth of its retained WAL (absent when the "
          "server has no limit or it does not grow).",
          ok && t.forecast_s >= 0, t.forecast_s);
    gauge(b, "walcast_slot_retention_warning",
          "0 fine, 1 retained WAL over the warning threshold, 2 over the critical one (or wal_status "
          "unreserved).",
          ok, level);
    gauge(b, "walcast_slot_forecast_warning", "1 while the invalidation forecast is under the threshold.", ok,
          fw);
    rebuild_metrics(m, b);
    process_metrics(m, b);
}

static json_t *lsn_json(int64_t lsn)
{
    char buf[WC_LSN_STRLEN];
    return lsn > 0 ? json_string(wc_lsn_format((wc_lsn)lsn, buf)) : json_null();
}

static json_t *num_or_null(double v, int known)
{
    return known ? json_real(v) : json_null();
}

/* The slot part of a status document, from a reading and its trend (shared with `walcast status`). */
json_t *wc__status_slot(const struct wc_config *cfg, const struct wc_slot_sample *s,
                        const struct wc_slot_trend *t)
{
    static const char *const levels[] = {"ok", "warning", "critical"};
    json_t *o = json_object();

    json_object_set_new(o, "name", json_string(cfg->slot));
    json_object_set_new(o, "exists", json_boolean(s->found));
    if (!s->found) {
        json_object_set_new(o, "current_wal_lsn", lsn_json((int64_t)s->current_lsn));
        return o;
    }
    json_object_set_new(o, "wal_status", json_string(s->wal_status));
    json_object_set_new(o, "active_pid", s->active_pid ? json_integer(s->active_pid) : json_null());
    json_object_set_new(o, "restart_lsn", lsn_json((int64_t)s->restart_lsn));
    json_object_set_new(o, "confirmed_flush_lsn", lsn_json((int64_t)s->confirmed_lsn));
    json_object_set_new(o, "current_wal_lsn", lsn_json((int64_t)s->current_lsn));
    json_object_set_new(o, "retained_wal_bytes",
                        s->retained_bytes >= 0 ? json_integer(s->retained_bytes) : json_null());
    json_object_set_new(o, "lag_bytes", s->lag_bytes >= 0 ? json_integer(s->lag_bytes) : json_null());
    json_object_set_new(o, "safe_wal_size",
                        s->max_keep_bytes >= 0 && s->safe_wal_size != -1 ? json_integer(s->safe_wal_size)
                                                                         : json_null());
    json_object_set_new(o, "max_slot_wal_keep_size",
                        s->max_keep_bytes >= 0 ? json_integer(s->max_keep_bytes) : json_null());
    json_object_set_new(o, "wal_rate_bytes_per_second", num_or_null(t->wal_rate, t->wal_rate >= 0));
    json_object_set_new(o, "retained_growth_bytes_per_second",
                        num_or_null(t->retained_growth, t->growth_known));
    json_object_set_new(o, "forecast_seconds", num_or_null(t->forecast_s, t->forecast_s >= 0));
    json_object_set_new(o, "retention", json_string(levels[wc__retention_level(cfg, s)]));
    return o;
}

json_t *wc__metrics_status(struct wc_metrics *m)
{
    const struct wc_config *cfg = m->cfg;
    json_t *doc = json_object(), *eng = json_object(), *sinks = json_array(), *warn = json_array();
    int64_t now_us = wc_wall_us(), head = head_lsn(m);
    char why[256];

    json_object_set_new(doc, "source", json_string("engine"));
    json_object_set_new(eng, "pid", json_integer(m->pid));
    json_object_set_new(eng, "version", json_string(WC_VERSION));
    json_object_set_new(eng, "uptime_seconds", json_real((double)(now_us - m->start_us) / 1e6));
    json_object_set_new(eng, "streaming", json_boolean(LOAD(m->streaming)));
    json_object_set_new(eng, "standby", json_boolean(LOAD(m->standby)));
    int ready = wc__metrics_ready(m, why, sizeof(why));
    json_object_set_new(eng, "ready", json_boolean(ready));
    json_object_set_new(eng, "ready_reason", json_string(why));
    json_object_set_new(eng, "received_lsn", lsn_json(LOAD(m->received)));
    json_object_set_new(eng, "confirmed_lsn", lsn_json(LOAD(m->confirmed)));
    json_object_set_new(eng, "server_wal_lsn", lsn_json(head));
    int64_t lag = LOAD(m->lag_ms);
    json_object_set_new(eng, "heartbeat_lag_seconds", num_or_null((double)lag / 1000.0, lag >= 0));
    json_object_set_new(eng, "events_received", json_integer((json_int_t)LOAD(m->events)));
    json_object_set_new(doc, "engine", eng);

    pthread_mutex_lock(&m->lock);
    struct wc_slot_sample s = m->slot;
    struct wc_slot_trend t = m->trend;
    int ok = m->slot_ok;
    char err[1024];
    snprintf(err, sizeof(err), "%s", m->slot_error);
    pthread_mutex_unlock(&m->lock);
    if (ok) {
        json_t *slot = wc__status_slot(cfg, &s, &t);
        if (err[0])
            json_object_set_new(slot, "error", json_string(err));
        json_object_set_new(doc, "slot", slot);
        wc__retention_warnings(cfg, &s, &t, warn);
    } else {
        json_t *slot = json_object();
        json_object_set_new(slot, "name", json_string(cfg->slot));
        json_object_set_new(slot, "error", json_string(err[0] ? err : "not read yet"));
        json_object_set_new(doc, "slot", slot);
    }

    for (int i = 0; i < m->nsink; i++) {
        struct wc_metrics_sink *ms = &m->sinks[i];
        json_t *o = json_object();
        char pos[48];
        int64_t cursor = LOAD(ms->tally->cursor_lsn);
        double ls = sink_lag_seconds(m, ms, now_us);
        json_object_set_new(o, "name", json_string(ms->sink->name));
        json_object_set_new(o, "type", json_string(ms->sink->ops->type));
        json_object_set_new(o, "connected",
                            json_boolean(__atomic_load_n(&ms->sink->connected, __ATOMIC_ACQUIRE)));
        snprintf(pos, sizeof(pos), "%X/%X", (unsigned)((uint64_t)cursor >> 32), (unsigned)cursor);
        json_object_set_new(o, "cursor_lsn", cursor > 0 ? json_string(pos) : json_null());
        json_object_set_new(o, "lag_bytes", json_integer(head > cursor && cursor > 0 ? head - cursor : 0));
        json_object_set_new(o, "lag_seconds", num_or_null(ls, ls >= 0));
        pthread_mutex_lock(&m->lock);
        json_object_set_new(o, "events_per_second", json_real(ms->events_rate));
        json_object_set_new(o, "dead_letters",
                            ms->dead_letters >= 0 ? json_integer(ms->dead_letters) : json_null());
        pthread_mutex_unlock(&m->lock);
        for (int k = 0; k < WC_OUT_N; k++)
            json_object_set_new(o, outcome_names[k], json_integer((json_int_t)wc_tally_sum(ms->tally, k)));
        json_array_append_new(sinks, o);
    }
    json_object_set_new(doc, "sinks", sinks);
    if (!ready) {
        char line[300];
        snprintf(line, sizeof(line), "not ready: %s", why);
        json_array_append_new(warn, json_string(line));
    }
    json_object_set_new(doc, "warnings", warn);
    return doc;
}
