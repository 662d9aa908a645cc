/*
 * test_metrics.c - operating walcast: /metrics during a load (counts equal the events written, promtool
 * accepts it, every dashboard query names an exported metric), /readyz while Redis is down and after,
 * the shipped alert rules, and the slot's retention warning and forecast before the slot is lost.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <jansson.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "opsutil.h"
#include "orders_env.h"
#include "walcast/buf.h"

static int sanitized(void)
{
    return getenv("WALCAST_TEST_SANITIZED") != NULL;
}

/* promtool check metrics on text: its exit code, its complaints in *out. */
static int promtool_check(const char *text, const char *dir, char **out)
{
    char *path = xprintf("%s/scrape.txt", dir), *cmd = xprintf("promtool check metrics < %s 2>&1", path);
    ops_write(path, text);
    int rc = wct_run(cmd, out);
    free(cmd);
    free(path);
    return rc;
}

/* Wait until GET path answers with status want (or, want < 0, anything but -want); its body. */
static char *wait_http(const char *listen, const char *path, int want, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    int st = 0;
    char *body = NULL;
    for (;;) {
        free(body);
        body = ops_http(listen, path, 2000, &st);
        if (want >= 0 ? st == want : (st != 0 && st != -want))
            return body;
        cr_assert(now_ms() < deadline, "%s: HTTP %d after %d ms (wanted %s%d): %s", path, st, timeout_ms,
                  want < 0 ? "not " : "", want < 0 ? -want : want, body ? body : "");
        sleep_ms(100);
    }
}

/* Every metric a query of the shipped dashboard names is one walcast exports. */
static void check_dashboard(const char *scrape)
{
    char *path = xprintf("%s/examples/monitoring/dashboard.json", wct_source_dir());
    json_error_t jerr;
    json_t *d = json_load_file(path, 0, &jerr), *p, *t;
    size_t i, k;
    regex_t re;
    int names = 0;

    cr_assert_not_null(d, "%s: %s", path, jerr.text);
    cr_assert_eq(regcomp(&re, "(walcast|process)_[a-z_]+", REG_EXTENDED), 0);
    json_array_foreach(json_object_get(d, "panels"), i, p)
        json_array_foreach(json_object_get(p, "targets"), k, t)
    {
        const char *expr = json_string_value(json_object_get(t, "expr"));
        cr_assert_not_null(expr);
        regmatch_t m;
        for (const char *s = expr; regexec(&re, s, 1, &m, 0) == 0; s += m.rm_eo) {
            char *name = strndup(s + m.rm_so, (size_t)(m.rm_eo - m.rm_so));
            size_t n = strlen(name);
            /* A histogram's series are its family's name plus _bucket, _sum or _count. */
            const char *suffixes[] = {"_bucket", "_sum", "_count"};
            for (int j = 0; j < 3 && !ops_has_family(scrape, name); j++) {
                size_t sl = strlen(suffixes[j]);
                if (n > sl && strcmp(name + n - sl, suffixes[j]) == 0)
                    name[n - sl] = '\0';
            }
            cr_expect(ops_has_family(scrape, name),
                      "the dashboard queries \"%s\", which walcast does not export", name);
            names++;
            free(name);
        }
    }
    cr_assert_geq(names, 20, "the dashboard names %d metrics", names);
    regfree(&re);
    json_decref(d);
    free(path);
}

Test(metrics, during_a_load_and_a_redis_outage, .timeout = 300)
{
    struct orders_env e;
    struct ops_redis redis = {0};
    char port[16], *listen;

    ops_redis_start(&redis, "");
    snprintf(port, sizeof(port), "%d", redis.port);
    setenv("WALCAST_TEST_REDIS_PORT", port, 1); /* the fixture's Redis is this one, which the test stops */
    listen = xprintf("127.0.0.1:%d", ops_free_port());
    setenv("WALCAST_METRICS_LISTEN", listen, 1);
    setenv("WALCAST_METRICS_SLOT_POLL_INTERVAL_MS", "300", 1);
    setenv("WALCAST_ENGINE_RETRY_MAX_MS", "500", 1);
    setup_env(&e, 0);
    free(wait_http(listen, "/readyz", 200, 20000));
    free(wait_http(listen, "/healthz", 200, 1000));

    /* A load, scraped while it runs. */
    pid_t wl = start_workload(&e, sanitized() ? 300 : 1000, 0.25);
    int scrapes = 0, st;
    char *mid = NULL;
    while (waitpid(wl, &st, WNOHANG) != wl) {
        char *s = ops_http(listen, "/metrics", 2000, &st);
        cr_assert_eq(st, 200);
        if (ops_metric(s, "walcast_events_applied_total", "") > 0) {
            free(mid);
            mid = s;
            scrapes++;
        } else
            free(s);
        ensure_running(&e);
        sleep_ms(100);
    }
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "workload failed");
    cr_assert_geq(scrapes, 1, "no scrape during the load");
    char *out = NULL;
    cr_assert_eq(promtool_check(mid, e.dir, &out), 0, "promtool check metrics (during the load):\n%s", out);
    free(out);
    free(mid);
    wait_caught_up(&e, 30000);

    /* The counts are the events written, per sink and event type. */
    PGresult *res = PQexec(e.w, "SELECT event_type, count(*) FROM public.domain_events GROUP BY 1");
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    long long total = outbox_events(&e);
    char *scrape = NULL;
    long long deadline = now_ms() + 10000;
    for (;;) {
        free(scrape);
        scrape = ops_http(listen, "/metrics", 2000, &st);
        if (ops_metric(scrape, "walcast_events_applied_total", "sink=\"readdb\"") == (double)total &&
            ops_metric(scrape, "walcast_events_applied_total", "sink=\"cache\"") == (double)total)
            break;
        cr_assert(now_ms() < deadline, "applied %g and %g, written %lld:\n%s",
                  ops_metric(scrape, "walcast_events_applied_total", "sink=\"readdb\""),
                  ops_metric(scrape, "walcast_events_applied_total", "sink=\"cache\""), total, scrape);
        sleep_ms(100);
    }
    for (int i = 0; i < PQntuples(res); i++) {
        const char *type = PQgetvalue(res, i, 0);
        double want = atof(PQgetvalue(res, i, 1));
        for (int s = 0; s < 2; s++) {
            char *m = xprintf("sink=\"%s\",event_type=\"%s\"", s ? "cache" : "readdb", type);
            cr_expect_eq(ops_metric(scrape, "walcast_events_applied_total", m), want, "%s", m);
            free(m);
        }
    }
    PQclear(res);
    cr_expect_eq(ops_metric(scrape, "walcast_events_dead_lettered_total", ""), 0);
    cr_expect_eq(ops_metric(scrape, "walcast_sink_batch_events_sum", "sink=\"readdb\""), (double)total);
    cr_expect_eq(ops_metric(scrape, "walcast_sink_commit_to_visible_seconds_count", "sink=\"cache\""),
                 (double)total);
    cr_expect_gt(ops_metric(scrape, "walcast_sink_commits_total", "sink=\"readdb\""), 0);
    cr_expect_eq(ops_metric(scrape, "walcast_sink_up", ""), 2);
    cr_expect_gt(ops_metric(scrape, "process_resident_memory_bytes", ""), 0);
    cr_expect_eq(ops_metric(scrape, "walcast_slot_wal_status", "status=\"reserved\""), 1);
    cr_assert_eq(promtool_check(scrape, e.dir, &out), 0, "promtool check metrics:\n%s", out);
    free(out);
    check_dashboard(scrape);
    free(scrape);

    /* Redis stops: not ready (a commit to it fails); ready again once it is back. */
    ops_redis_stop(&redis);
    long long order = place(&e, 7, "[{\"sku\": \"OUTAGE\", \"qty\": 1, \"unit_price\": 2.00}]");
    char *why = wait_http(listen, "/readyz", -200, 20000);
    cr_log_info("readyz while Redis is down: %s", why);
    cr_assert(strstr(why, "cache") || strstr(why, "not streaming"), "%s", why);
    free(why);
    ops_redis_restart(&redis);
    reconnect_env(&e, 10000);
    free(wait_http(listen, "/readyz", 200, 30000));
    wait_order(&e, order, "placed", 30000);
    scrape = ops_http(listen, "/metrics", 2000, &st);
    cr_expect_geq(ops_metric(scrape, "walcast_reconnects_total", ""), 1, "%s", scrape);
    free(scrape);
    run_check(&e, 1);
    teardown_env(&e);
    ops_redis_free(&redis);
    free(listen);
}

Test(metrics, alert_rules)
{
    char *cmd = xprintf("cd %s/examples/monitoring && promtool check rules alerts.yml 2>&1 && "
                        "promtool test rules alerts_test.yml 2>&1",
                        wct_source_dir()),
         *out = NULL;
    int rc = wct_run(cmd, &out);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "SUCCESS"), "%s", out);
    free(out);
    free(cmd);
}

/* Write about kb kilobytes of WAL on the source through another table. */
static void write_wal(PGconn *c, int kb)
{
    char sql[160];
    snprintf(sql, sizeof(sql),
             "INSERT INTO other SELECT repeat(md5(i::text), 31) FROM generate_series(1, %d) i", kb);
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
    PQclear(r);
}

static char *sql1(PGconn *c, const char *sql)
{
    return qv(c, "%s", sql);
}

static void command_sql(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql,
              PQerrorMessage(c));
    PQclear(r);
}

/* A child that writes kb_per_100ms of WAL every 100 ms until killed. */
static pid_t start_writer(const char *dsn, int kb_per_100ms)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        PGconn *c = PQconnectdb(dsn);
        char sql[160];
        snprintf(sql, sizeof(sql),
                 "INSERT INTO other SELECT repeat(md5(i::text), 31) FROM generate_series(1, %d) i",
                 kb_per_100ms);
        for (;;) {
            PQclear(PQexec(c, sql));
            usleep(100000);
        }
    }
    return pid;
}

static const char *retention_yaml = "source:\n"
                                    "  dsn: \"%s dbname=src\"\n"
                                    "  slot: retained\n"
                                    "engine:\n"
                                    "  heartbeat_interval_ms: 1000\n"
                                    "  retry_base_ms: 50\n"
                                    "  retry_max_ms: 500\n"
                                    "sinks:\n"
                                    "  readdb:\n"
                                    "    type: postgres\n"
                                    "    dsn: \"%s dbname=readdb\"\n"
                                    "metrics:\n"
                                    "  listen: %s\n"
                                    "  slot_poll_interval_ms: 300\n"
                                    "projections:\n"
                                    "  seen:\n"
                                    "    sink: readdb\n"
                                    "    on:\n"
                                    "      OrderPlaced:\n"
                                    "        - sql: INSERT INTO seen (id) VALUES ($1::bigint)\n"
                                    "          params: [payload.id]\n";

/*
 * A server with a small max_slot_wal_keep_size (64 MB) while another table takes writes. First walcast's
 * commits hang on a lock: its own poller warns (log and metric), forecasts, /readyz says it is stalled,
 * and `walcast status` shows it from the endpoint; the warning clears once walcast confirms again. Then
 * walcast is stopped (SIGSTOP): `walcast status` reads the servers and shows the warning and the forecast
 * before the slot is lost.
 */
Test(metrics, retention_warning_and_forecast_before_the_slot_is_lost, .timeout = 300)
{
    struct ops_pg pg = {0};
    char *dir = ops_dir("walcast-retain"), *listen = xprintf("127.0.0.1:%d", ops_free_port());
    char *cfg = xprintf("%s/walcast.yaml", dir), *log = xprintf("%s/walcast.log", dir);

    ops_pg_start(&pg,
                 "max_slot_wal_keep_size=64MB max_wal_size=32MB min_wal_size=32MB checkpoint_timeout=1h");
    wct_sql(pg.dsn, "CREATE DATABASE src");
    wct_sql(pg.dsn, "CREATE DATABASE readdb");
    char *src = xprintf("%s dbname=src", pg.dsn), *rdb = xprintf("%s dbname=readdb", pg.dsn);
    wct_sql(src, "CREATE TABLE domain_events (event_id bigserial PRIMARY KEY, aggregate_type text NOT NULL, "
                 "aggregate_id text NOT NULL, event_type text NOT NULL, payload jsonb NOT NULL, "
                 "occurred_at timestamptz NOT NULL DEFAULT now()); CREATE TABLE other (x text)");
    wct_sql(src, "SELECT pg_create_logical_replication_slot('retained', 'wal2json')");
    wct_sql(rdb, "CREATE TABLE seen (id bigint PRIMARY KEY)");
    char *yaml = xprintf(retention_yaml, pg.dsn, pg.dsn, listen);
    ops_write(cfg, yaml);
    free(yaml);
    char *args = xprintf("run -c %s", cfg);
    pid_t pid = ops_spawn(args, log);
    free(args);
    free(wait_http(listen, "/readyz", 200, 20000));

    /* 1. A reader holds a lock on the projection table: walcast's commit waits, nothing is confirmed. */
    PGconn *w = wct_pg_connect(src), *lock = wct_pg_connect(rdb);
    PQclear(PQexec(lock, "BEGIN; LOCK TABLE seen IN ACCESS EXCLUSIVE MODE"));
    command_sql(w, "INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) "
                   "VALUES ('o', '1', 'OrderPlaced', '{\"id\": 1}')");
    long long deadline = now_ms() + 60000;
    char *scrape = NULL;
    int st;
    for (;;) {
        write_wal(w, 500);
        free(scrape);
        scrape = ops_http(listen, "/metrics", 2000, &st);
        if (ops_metric(scrape, "walcast_slot_retention_warning", "") >= 1 &&
            ops_metric(scrape, "walcast_slot_invalidation_forecast_seconds", "") >= 0)
            break;
        cr_assert(now_ms() < deadline, "no retention warning and forecast in the metrics:\n%s", scrape);
        cr_assert_neq(ops_metric(scrape, "walcast_slot_wal_status", "status=\"lost\""), 1, "lost first");
        sleep_ms(60);
    }
    double forecast = ops_metric(scrape, "walcast_slot_invalidation_forecast_seconds", "");
    cr_assert(forecast > 0 && forecast < 3600, "forecast %g s", forecast);
    cr_assert_eq(ops_metric(scrape, "walcast_slot_forecast_warning", ""), 1);
    free(scrape);
    /* The endpoint's status shows them, while the WAL still grows. */
    write_wal(w, 500);
    char *cmd = xprintf("%s status -c %s 2>&1", wct_walcast(), cfg), *out = NULL;
    int rc = wct_run(cmd, &out);
    cr_log_info("walcast status (engine, commits hanging on a lock):\n%s", out);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "from the running engine") &&
                  strstr(out, "WARNING: replication slot \"retained\" retains") &&
                  strstr(out, "forecast         invalidated in"),
              "%s", out);
    free(out);
    char *why = wait_http(listen, "/readyz", -200, 15000);
    cr_assert(strstr(why, "does not move"), "%s", why);
    free(why);
    char *text = read_text(log);
    cr_assert(strstr(text, "walcast warning: replication slot \"retained\" retains") &&
                  strstr(text, "will be invalidated in about"),
              "the engine's log has no retention warning:\n%s", text);
    free(text);

    /* Released: walcast confirms again, and once the slot's restart_lsn follows, the warning clears. */
    PQclear(PQexec(lock, "ROLLBACK"));
    free(wait_http(listen, "/readyz", 200, 20000));
    deadline = now_ms() + 30000;
    for (;;) {
        PQclear(PQexec(w, "CHECKPOINT"));
        text = read_text(log);
        int cleared = strstr(text, "retained WAL is back under the warning threshold") != NULL;
        free(text);
        if (cleared)
            break;
        cr_assert(now_ms() < deadline, "the retention warning did not clear");
        sleep_ms(300);
    }

    /* 2. walcast stopped: status reads the servers, and shows the warning and the forecast in time. */
    kill(pid, SIGSTOP);
    pid_t writer = start_writer(src, 400);
    cmd = xprintf("%s status -c %s --json 2>/dev/null", wct_walcast(), cfg);
    deadline = now_ms() + 90000;
    int seen = 0;
    while (!seen) {
        cr_assert(now_ms() < deadline, "status never showed the retention warning and a forecast");
        rc = wct_run(cmd, &out);
        json_error_t jerr;
        json_t *doc = json_loads(out, 0, &jerr);
        cr_assert_not_null(doc, "status --json: %s", out);
        json_t *slot = json_object_get(doc, "slot");
        cr_assert_str_eq(json_string_value(json_object_get(doc, "source")), "servers");
        cr_assert_str_neq(json_string_value(json_object_get(slot, "wal_status")), "lost",
                          "the slot was lost before status warned:\n%s", out);
        char *warn = json_dumps(json_object_get(doc, "warnings"), 0);
        seen = strstr(warn, "retains") && json_is_number(json_object_get(slot, "forecast_seconds"));
        free(warn);
        json_decref(doc);
        if (!seen)
            free(out);
    }
    cr_log_info("walcast status --json (engine stopped):\n%s", out);
    free(out);
    free(cmd);
    cmd = xprintf("%s status -c %s 2>&1", wct_walcast(), cfg);
    wct_run(cmd, &out);
    cr_log_info("walcast status (engine stopped):\n%s", out);
    cr_assert(strstr(out, "from the servers") && strstr(out, "WARNING:") && strstr(out, "retains"), "%s",
              out);
    free(out);
    free(cmd);
    kill(writer, SIGKILL);
    waitpid(writer, NULL, 0);

    /* ... before the slot is lost: more WAL and a checkpoint invalidate it. */
    deadline = now_ms() + 60000;
    for (;;) {
        write_wal(w, 16000);
        PQclear(PQexec(w, "SELECT pg_switch_wal(); CHECKPOINT"));
        char *ws = sql1(w, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'retained'");
        int lost = ws && strcmp(ws, "lost") == 0;
        free(ws);
        if (lost)
            break;
        cr_assert(now_ms() < deadline, "the slot was not lost");
    }
    cmd = xprintf("%s status -c %s 2>&1", wct_walcast(), cfg);
    rc = wct_run(cmd, &out);
    cr_assert_eq(rc, 3, "status of a lost slot exits 3, as run does:\n%s", out);
    cr_assert(strstr(out, "wal_status lost") && strstr(out, "none: the slot is lost") &&
                  strstr(out, "WARNING: replication slot \"retained\" is lost") &&
                  strstr(out, "walcast slot drop"),
              "%s", out);
    free(out);
    free(cmd);
    kill(pid, SIGKILL);
    ops_wait(pid, 5000);
    PQfinish(w);
    PQfinish(lock);
    ops_pg_free(&pg);
    cmd = xprintf("rm -rf %s", dir);
    wct_run(cmd, NULL);
    free(cmd);
    free(src);
    free(rdb);
    free(cfg);
    free(log);
    free(listen);
    free(dir);
}

static const char *secrets_yaml = "source:\n"
                                  "  dsn: \"%s password=SrcPw-5f1c9a\"\n"
                                  "  slot: %s\n"
                                  "engine:\n"
                                  "  log_level: debug\n"
                                  "  heartbeat_interval_ms: 500\n"
                                  "  retry_base_ms: 50\n"
                                  "  retry_max_ms: 300\n"
                                  "sinks:\n"
                                  "  readdb:\n"
                                  "    type: postgres\n"
                                  "    dsn: \"%s password=ReadPw-8e2d7b\"\n"
                                  "  cache:\n"
                                  "    type: redis\n"
                                  "    dsn: \"redis://:RedisPw-3a9c4e@127.0.0.1:%d/0\"\n"
                                  "metrics:\n"
                                  "  listen: %s\n"
                                  "  slot_poll_interval_ms: 300\n"
                                  "projections:\n"
                                  "  seen:\n"
                                  "    sink: readdb\n"
                                  "    on:\n"
                                  "      OrderPlaced:\n"
                                  "        - sql: INSERT INTO seen (id) VALUES ($1::bigint)\n"
                                  "          params: [payload.id]\n"
                                  "  cached:\n"
                                  "    sink: cache\n"
                                  "    on:\n"
                                  "      OrderPlaced:\n"
                                  "        - [SET, \"order:{payload.id}\", \"{payload.id}\"]\n";

/* A password in each DSN (source, read database, Redis) never shows: not in a log line at any level, not
 * in /metrics or /status, not in what status, doctor, slot status, dlq list or check-config print. */
Test(metrics, passwords_never_shown, .timeout = 180)
{
    const char *pw[] = {"SrcPw-5f1c9a", "ReadPw-8e2d7b", "RedisPw-3a9c4e"};
    struct ops_redis redis = {0};
    char *dir = ops_dir("walcast-secrets"), *listen = xprintf("127.0.0.1:%d", ops_free_port());
    char *cfg = xprintf("%s/walcast.yaml", dir), *log = xprintf("%s/walcast.log", dir);
    char *src = wct_create_db("pwsrc"), *rdb = create_read_db("pwread"), *slot = wct_unique("pw");
    struct wc_buf all = WC_BUF_INIT;

    ops_redis_start(&redis, "--requirepass RedisPw-3a9c4e");
    wct_sql(src, "CREATE TABLE domain_events (event_id bigserial PRIMARY KEY, aggregate_type text NOT NULL, "
                 "aggregate_id text NOT NULL, event_type text NOT NULL, payload jsonb NOT NULL, "
                 "occurred_at timestamptz NOT NULL DEFAULT now())");
    char *sql = xprintf("SELECT pg_create_logical_replication_slot('%s', 'wal2json')", slot);
    wct_sql(src, sql);
    free(sql);
    wct_sql(rdb, "CREATE TABLE seen (id bigint PRIMARY KEY)");
    char *yaml = xprintf(secrets_yaml, src, slot, rdb, redis.port, listen);
    ops_write(cfg, yaml);
    free(yaml);
    char *args = xprintf("run -c %s", cfg);
    pid_t pid = ops_spawn(args, log);
    free(args);
    free(wait_http(listen, "/readyz", 200, 20000));

    /* Events that apply, one no projection names, one the read database rejects. */
    PGconn *w = wct_pg_connect(src);
    PQclear(PQexec(w, "INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) VALUES "
                      "('o', '1', 'OrderPlaced', '{\"id\": 1}'), ('o', '2', 'Unknown', '{}'), "
                      "('o', '3', 'OrderPlaced', '{\"id\": \"not a number\"}')"));
    /* Redis away for a moment: connection errors, reconnects. */
    sleep_ms(500);
    ops_redis_stop(&redis);
    PQclear(PQexec(w, "INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) VALUES "
                      "('o', '4', 'OrderPlaced', '{\"id\": 4}')"));
    free(wait_http(listen, "/readyz", -200, 20000));
    ops_redis_restart(&redis);
    free(wait_http(listen, "/readyz", 200, 30000));

    const char *paths[] = {"/metrics", "/status", "/readyz", "/healthz"};
    for (int i = 0; i < 4; i++) {
        int st;
        char *body = ops_http(listen, paths[i], 2000, &st);
        cr_assert_not_null(body, "%s", paths[i]);
        wc_buf_puts(&all, body);
        free(body);
    }
    const char *cmds[] = {"status -c %s",        "status --json -c %s", "doctor -c %s",
                          "doctor --json -c %s", "slot status -c %s",   "dlq list -c %s",
                          "check-config -c %s",  "slot check -c %s"};
    for (int phase = 0; phase < 2; phase++) {
        for (int i = 0; i < 8; i++) {
            char *c = xprintf(cmds[i], cfg), *cmd = xprintf("%s %s 2>&1", wct_walcast(), c), *out = NULL;
            wct_run(cmd, &out);
            wc_buf_printf(&all, "\n== walcast %s\n%s", c, out);
            free(out);
            free(cmd);
            free(c);
        }
        if (phase == 0) {
            /* --watch refreshes every second until interrupted, and an interrupt is no error. */
            char *cmd = xprintf("timeout --preserve-status -s INT 2.5 %s status --watch -c %s 2>&1",
                                wct_walcast(), cfg),
                 *out = NULL;
            int rc = wct_run(cmd, &out);
            int screens = 0;
            for (const char *p = out; (p = strstr(p, "\033[H\033[2J")) != NULL; p++)
                screens++;
            cr_assert(rc == 0 && screens >= 2, "status --watch: exit %d, %d screens:\n%s", rc, screens, out);
            wc_buf_puts(&all, out);
            free(out);
            free(cmd);
            cr_assert_eq(ops_wait((kill(pid, SIGTERM), pid), 10000), 0, "walcast run stops with 0");
        }
    }
    char *text = read_text(log);
    cr_assert(strstr(text, "walcast debug:") && strstr(text, "dead-lettering") && strstr(text, "\"cache\""),
              "the log has debug lines, dead letters and the outage:\n%s", text);
    wc_buf_puts(&all, text);
    free(text);
    for (int i = 0; i < 3; i++) {
        const char *at = strstr(all.data, pw[i]);
        cr_assert_null(at, "password %s shows:\n%.400s", pw[i],
                       at && at - all.data > 200 ? at - 200 : all.data);
    }
    cr_log_info("checked %zu bytes of logs, endpoint answers and command output", all.len);

    wc_buf_free(&all);
    PQfinish(w);
    sql = xprintf("SELECT pg_drop_replication_slot('%s')", slot);
    wct_sql(src, sql);
    free(sql);
    ops_redis_free(&redis);
    char *cmd = xprintf("rm -rf %s", dir);
    wct_run(cmd, NULL);
    free(cmd);
    free(src);
    free(rdb);
    free(slot);
    free(cfg);
    free(log);
    free(listen);
    free(dir);
}

/* A backlog (events written while walcast was not running) drains with progress lines: WAL behind,
 * events/s, ETA; then one that says it caught up. A trigger on the projection table sleeps a millisecond
 * per row, so the drain takes seconds (many progress intervals) however fast the machine is. */
Test(metrics, progress_lines_while_a_backlog_drains, .timeout = 120)
{
    char *dir = ops_dir("walcast-progress"), *cfg = xprintf("%s/walcast.yaml", dir),
         *log = xprintf("%s/walcast.log", dir);
    char *src = wct_create_db("progsrc"), *rdb = create_read_db("progread"), *slot = wct_unique("prog");
    wct_sql(src, "CREATE TABLE domain_events (event_id bigserial PRIMARY KEY, aggregate_type text NOT NULL, "
                 "aggregate_id text NOT NULL, event_type text NOT NULL, payload jsonb NOT NULL, "
                 "occurred_at timestamptz NOT NULL DEFAULT now())");
    char *sql = xprintf("SELECT pg_create_logical_replication_slot('%s', 'wal2json')", slot);
    wct_sql(src, sql);
    free(sql);
    wct_sql(rdb, "CREATE TABLE seen (id bigint PRIMARY KEY)");
    wct_sql(rdb, "CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS "
                 "$$ BEGIN PERFORM pg_sleep(0.001); RETURN NULL; END $$");
    wct_sql(rdb, "CREATE TRIGGER slow_row AFTER INSERT ON seen FOR EACH ROW EXECUTE FUNCTION slow_row()");
    /* Many transactions, as a backlog is: the position moves per transaction. At least 1.5 s to apply. */
    const int n = 1500;
    sql = xprintf("DO $$ BEGIN FOR t IN 0..%d LOOP "
                  "INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) "
                  "SELECT 'o', i::text, 'OrderPlaced', jsonb_build_object('id', i) "
                  "FROM generate_series(t * 10 + 1, t * 10 + 10) i; COMMIT; END LOOP; END $$",
                  n / 10 - 1);
    wct_sql(src, sql);
    free(sql);

    char *yaml =
        xprintf("source:\n  dsn: \"%s\"\n  slot: %s\n"
                "engine:\n  batch_max_events: 50\n  progress_interval_ms: 100\n"
                "sinks:\n  readdb:\n    type: postgres\n    dsn: \"%s\"\n"
                "projections:\n  seen:\n    sink: readdb\n    on:\n      OrderPlaced:\n"
                "        - sql: INSERT INTO seen (id) VALUES ($1::bigint)\n          params: [payload.id]\n",
                src, slot, rdb);
    ops_write(cfg, yaml);
    free(yaml);
    sleep_ms(300); /* the backlog is older than a progress interval */
    char *args = xprintf("run -c %s", cfg);
    long long t0 = now_ms();
    pid_t pid = ops_spawn(args, log);
    free(args);
    long long deadline = now_ms() + 60000;
    int drained = 0;
    while (!drained && now_ms() < deadline) {
        char *v = wct_sql_value(rdb, "SELECT count(*) FROM seen");
        drained = v && atoi(v) == n;
        free(v);
        if (!drained)
            sleep_ms(50);
    }
    long long took = now_ms() - t0;
    /* The line that says it caught up comes at the next progress interval after the drain. */
    char *text = NULL;
    int caught_up = 0;
    for (deadline = now_ms() + 10000; drained && !caught_up && now_ms() < deadline;) {
        free(text);
        text = read_text(log);
        caught_up = text && strstr(text, "walcast info: caught up: ") != NULL;
        if (!caught_up)
            sleep_ms(50);
    }
    int rc = ops_wait((kill(pid, SIGTERM), pid), 10000);
    free(text);
    text = read_text(log);
    cr_log_info("%d events drained in %lld ms:\n%s", n, took, text);
    regex_t re;
    int progress = -1;
    if (regcomp(&re,
                "walcast info: catching up: [0-9]+ (bytes|kB|MB) of WAL behind \\([0-9]+ bytes\\), [0-9]+ "
                "events/s, the projections [0-9]+ s behind, ETA [0-9]+ s",
                REG_EXTENDED) == 0) {
        progress = regexec(&re, text, 0, NULL, 0);
        regfree(&re);
    }
    sql = xprintf("SELECT pg_drop_replication_slot('%s')", slot);
    wct_sql(src, sql);
    free(sql);
    sql = xprintf("rm -rf %s", dir);
    wct_run(sql, NULL);
    free(sql);
    free(src);
    free(rdb);
    free(slot);
    free(cfg);
    free(log);
    free(dir);
    if (!drained || progress != 0 || !caught_up)
        cr_log_error("walcast's log:\n%s", text);
    free(text);
    cr_assert(drained, "the backlog of %d events did not drain within 60 s", n);
    cr_assert_eq(rc, 0, "walcast run stops with 0 on SIGTERM");
    cr_assert_eq(progress, 0, "no progress line (\"catching up: ...\") while %d events drained in %lld ms", n,
                 took);
    cr_assert(caught_up, "no \"caught up\" line within 10 s of the drain");
}
