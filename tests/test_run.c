/* test_run.c - `walcast run` end to end: dead letters, slot ownership and loss, shutdown, heartbeats. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "walcast/lsn.h"

struct env {
    char *src;  /* source DSN */
    char *read; /* read database DSN */
    char *slot;
    int redis_db;
    char *dir;
    char *config;
    char *log;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s;
    va_start(ap, f);
    if (vasprintf(&s, f, ap) < 0)
        abort();
    va_end(ap);
    return s;
}

static const char *config_yaml =
    "source:\n"
    "  slot: placeholder\n"
    "engine:\n"
    "  on_unknown_event: dead_letter\n"
    "  on_error: dead_letter\n"
    "  dead_letter_sink: readdb\n"
    "  heartbeat_interval_ms: %d\n"
    "  retry_base_ms: 50\n"
    "  retry_max_ms: 500\n"
    "sinks:\n"
    "  readdb:\n"
    "    type: postgres\n"
    "  cache:\n"
    "    type: redis\n"
    "%s"
    "projections:\n"
    "  orders_pg:\n"
    "    sink: readdb\n"
    "    on:\n"
    "      OrderPlaced:\n"
    "        - sql: INSERT INTO orders_seen (order_id, total) VALUES ($1::bigint, $2::numeric)\n"
    "          params: [payload.order_id, payload.total]\n"
    "  orders_redis:\n"
    "    sink: cache\n"
    "    on:\n"
    "      OrderPlaced:\n"
    "        - [HSET, \"order:{payload.order_id}\", total, \"{payload.total}\"]\n"
    "        - [ZINCRBY, totals, \"{payload.total}\", all]\n";

static void setup_env_rebuild(struct env *e, int heartbeat_ms, const char *cache_extra);

static void setup_env(struct env *e, int heartbeat_ms)
{
    setup_env_rebuild(e, heartbeat_ms, "");
}

static void setup_env_rebuild(struct env *e, int heartbeat_ms, const char *cache_extra)
{
    e->slot = wct_unique("run");
    e->src = wct_create_db("runsrc");
    e->read = wct_create_db("runread");
    e->redis_db = 12;
    e->dir = wct_tmpdir();
    wct_sql(e->src,
            "CREATE TABLE domain_events (event_id bigserial PRIMARY KEY, aggregate_type text NOT NULL, "
            "aggregate_id text NOT NULL, event_type text NOT NULL, payload jsonb NOT NULL, "
            "occurred_at timestamptz NOT NULL DEFAULT now()); CREATE TABLE other (x int)");
    wct_sql(e->read, "CREATE TABLE orders_seen (order_id bigint PRIMARY KEY, total numeric NOT NULL)");
    char *sql = fmt("SELECT pg_create_logical_replication_slot('%s', 'wal2json')", e->slot);
    wct_sql(e->src, sql);
    free(sql);
    e->config = fmt("%s/walcast.yaml", e->dir);
    e->log = fmt("%s/walcast.log", e->dir);
    FILE *f = fopen(e->config, "w");
    fprintf(f, config_yaml, heartbeat_ms, cache_extra);
    fclose(f);
    setenv("WALCAST_SOURCE_DSN", e->src, 1);
    setenv("WALCAST_SOURCE_SLOT", e->slot, 1);
    setenv("WALCAST_SINKS_READDB_DSN", e->read, 1);
    char *url = fmt("redis://127.0.0.1:%d/%d", wct_redis_port(), e->redis_db);
    setenv("WALCAST_SINKS_CACHE_DSN", url, 1);
    free(url);
    redisContext *r = wct_redis(e->redis_db);
    freeReplyObject(redisCommand(r, "FLUSHDB"));
    redisFree(r);
}

/* Drop the test's slot (if any is left), so slots do not pile up across tests. */
static void drop_slot(struct env *e)
{
    char *sql =
        fmt("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '%s' "
            "AND active_pid IS NOT NULL",
            e->slot);
    wct_sql(e->src, sql);
    free(sql);
    sql = fmt("DO $$ BEGIN FOR i IN 1..100 LOOP BEGIN PERFORM pg_drop_replication_slot(slot_name) "
              "FROM pg_replication_slots WHERE slot_name = '%s'; RETURN; "
              "EXCEPTION WHEN object_in_use THEN PERFORM pg_sleep(0.02); END; END LOOP; END $$",
              e->slot);
    wct_sql(e->src, sql);
    free(sql);
}

static pid_t start_run(struct env *e, const char *extra)
{
    char *cmd = fmt("exec %s run -c %s %s 2>>%s", wct_walcast(), e->config, extra ? extra : "", e->log);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    free(cmd);
    return pid;
}

static void insert_event(struct env *e, const char *type, const char *payload)
{
    char *sql = fmt("INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) "
                    "VALUES ('order', '1', '%s', '%s')",
                    type, payload);
    wct_sql(e->src, sql);
    free(sql);
}

/* Wait until the read database's cursor for sink readdb reaches the current WAL position. */
static int wait_applied(struct env *e, int timeout_ms)
{
    char *end = wct_sql_value(e->src, "SELECT pg_current_wal_lsn()");
    wc_lsn target, cur;
    wc_lsn_parse(end, &target);
    free(end);
    char *sql = fmt("SELECT lsn FROM walcast_cursor WHERE slot = '%s' AND sink = 'readdb'", e->slot);
    long long deadline = now_ms() + timeout_ms;
    int ok = 0;
    while (now_ms() < deadline) {
        char *v = wct_sql_value(e->read, "SELECT to_regclass('walcast_cursor')::text");
        if (v) {
            free(v);
            char *l = wct_sql_value(e->read, sql);
            if (l && wc_lsn_parse(l, &cur) == 0 && cur >= target)
                ok = 1;
            free(l);
            if (ok)
                break;
        }
        usleep(20000);
    }
    free(sql);
    return ok;
}

static int stop_run(pid_t pid, int sig, int timeout_ms)
{
    int status;
    kill(pid, sig);
    long long deadline = now_ms() + timeout_ms;
    while (now_ms() < deadline) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* Wait for walcast to exit by itself: its exit code, or -1 (then it is killed) after timeout_ms. */
static int wait_exit(pid_t pid, int timeout_ms)
{
    int status;
    long long deadline = now_ms() + timeout_ms;
    while (now_ms() < deadline) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        usleep(50000);
    }
    stop_run(pid, SIGKILL, 1000);
    return -1;
}

static char *log_text(struct env *e)
{
    char *cmd = fmt("cat %s", e->log), *out;
    wct_run(cmd, &out);
    free(cmd);
    return out;
}

Test(run, bad_events_are_dead_lettered_and_the_stream_keeps_flowing, .timeout = 120)
{
    struct env e;
    setup_env(&e, 0);
    pid_t pid = start_run(&e, NULL);
    insert_event(&e, "OrderPlaced", "{\"order_id\": 1, \"total\": 10.5}");
    insert_event(&e, "Mystery", "{\"order_id\": 2}");                      /* unknown event type */
    insert_event(&e, "OrderPlaced", "{\"total\": 3}");                     /* missing payload field */
    insert_event(&e, "OrderPlaced", "{\"order_id\": 1, \"total\": 99}");   /* primary key violation */
    insert_event(&e, "OrderPlaced", "{\"order_id\": 3, \"total\": 0.25}"); /* good again */
    cr_assert(wait_applied(&e, 20000), "walcast caught up:\n%s", log_text(&e));

    char *n = wct_sql_value(e.read, "SELECT count(*) FROM orders_seen");
    cr_assert_str_eq(n, "2", "the two good events are projected");
    free(n);
    char *t = wct_sql_value(e.read, "SELECT total::text FROM orders_seen WHERE order_id = 1");
    cr_assert_str_eq(t, "10.5", "the duplicate did not overwrite the first");
    free(t);

    char *dl =
        wct_sql_value(e.read, "SELECT string_agg(event_type || ':' || error, E'\\n' ORDER BY lsn, idx) "
                              "FROM walcast_dead_letters");
    cr_assert_not_null(dl);
    cr_assert(strstr(dl, "Mystery:") && strstr(dl, "no projection handles event type \"Mystery\""), "%s", dl);
    cr_assert(strstr(dl, "\"order_id\" is missing"), "missing field dead-lettered in PostgreSQL: %s", dl);
    cr_assert(strstr(dl, "duplicate key value violates unique constraint"), "constraint failure: %s", dl);
    free(dl);
    char *lsn =
        wct_sql_value(e.read, "SELECT count(*) FROM walcast_dead_letters WHERE lsn IS NULL OR idx IS NULL");
    cr_assert_str_eq(lsn, "0", "every dead letter has its position");
    free(lsn);

    redisContext *r = wct_redis(e.redis_db);
    redisReply *x = redisCommand(r, "XRANGE walcast:dead_letters:%s - +", e.slot);
    cr_assert_eq(x->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(x->elements, 1,
                 "Redis dead-lettered only the event missing a field (the unknown type went to readdb)");
    freeReplyObject(x);
    x = redisCommand(r, "ZSCORE totals all");
    cr_assert_str_eq(x->str, "109.75", "10.5 + 99 + 0.25: Redis applied the event PostgreSQL refused");
    freeReplyObject(x);
    redisFree(r);
    cr_assert_eq(stop_run(pid, SIGTERM, 5000), 0, "SIGTERM stops walcast with exit 0");
    drop_slot(&e);
}

Test(run, sigterm_commits_and_exits_quickly, .timeout = 120)
{
    struct env e;
    setup_env(&e, 0);
    pid_t pid = start_run(&e, NULL);
    for (int i = 0; i < 200; i++) {
        char *p = fmt("{\"order_id\": %d, \"total\": 1}", 100 + i);
        insert_event(&e, "OrderPlaced", p);
        free(p);
    }
    cr_assert(wait_applied(&e, 20000));
    long long t0 = now_ms();
    cr_assert_eq(stop_run(pid, SIGTERM, 5000), 0);
    cr_assert_lt(now_ms() - t0, 3000, "stopped within a few seconds");
    char *sql = fmt("SELECT active FROM pg_replication_slots WHERE slot_name = '%s'", e.slot);
    char *active = wct_sql_value(e.src, sql);
    cr_assert_str_eq(active, "f", "the slot was released");
    free(active);
    free(sql);
    /* A restart applies nothing twice. */
    pid = start_run(&e, NULL);
    insert_event(&e, "OrderPlaced", "{\"order_id\": 1000, \"total\": 1}");
    cr_assert(wait_applied(&e, 20000));
    char *n = wct_sql_value(e.read, "SELECT count(*) FROM orders_seen");
    cr_assert_str_eq(n, "201");
    free(n);
    redisContext *r = wct_redis(e.redis_db);
    redisReply *x = redisCommand(r, "ZSCORE totals all");
    cr_assert_str_eq(x->str, "201", "no event applied twice in Redis across the restart");
    freeReplyObject(x);
    redisFree(r);
    stop_run(pid, SIGTERM, 5000);
    drop_slot(&e);
}

static int wait_slot_pid(struct env *e, int not_pid, int timeout_ms)
{
    char *sql =
        fmt("SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = '%s'", e->slot);
    long long deadline = now_ms() + timeout_ms;
    int pid = 0;
    while (now_ms() < deadline) {
        char *v = wct_sql_value(e->src, sql);
        pid = v ? atoi(v) : 0;
        free(v);
        if (pid != 0 && pid != not_pid)
            break;
        pid = 0;
        usleep(20000);
    }
    free(sql);
    return pid;
}

Test(run, second_engine_reports_the_active_pid_and_standby_takes_over, .timeout = 120)
{
    struct env e;
    setup_env(&e, 0);
    pid_t first = start_run(&e, NULL);
    int walsender = wait_slot_pid(&e, 0, 10000);
    cr_assert_neq(walsender, 0, "the first engine streams");

    char *cmd = fmt("%s run -c %s 2>&1", wct_walcast(), e.config), *out;
    int st = wct_run(cmd, &out);
    free(cmd);
    cr_assert_eq(st, 4, "exit code 4 for a slot in use: %s", out);
    char pidtext[32];
    snprintf(pidtext, sizeof(pidtext), "PID %d", walsender);
    cr_assert(strstr(out, pidtext) && strstr(out, e.slot), "names slot and active pid: %s", out);
    free(out);

    pid_t standby = start_run(&e, "--standby");
    usleep(500000);
    int status;
    cr_assert_eq(waitpid(standby, &status, WNOHANG), 0, "the standby waits");
    kill(first, SIGKILL);
    waitpid(first, NULL, 0);
    long long t0 = now_ms();
    int taken = wait_slot_pid(&e, walsender, 10000);
    cr_assert_neq(taken, 0, "the standby took the slot");
    cr_assert_lt(now_ms() - t0, 5000, "within a few seconds");
    insert_event(&e, "OrderPlaced", "{\"order_id\": 77, \"total\": 7}");
    cr_assert(wait_applied(&e, 10000), "the standby applies events");
    char *n = wct_sql_value(e.read, "SELECT count(*) FROM orders_seen WHERE order_id = 77");
    cr_assert_str_eq(n, "1");
    free(n);
    cr_assert_eq(stop_run(standby, SIGTERM, 5000), 0);
    drop_slot(&e);
}

Test(run, dropped_slot_is_a_clear_error_with_exit_3, .timeout = 120)
{
    struct env e;
    setup_env(&e, 0);
    pid_t pid = start_run(&e, NULL);
    int walsender = wait_slot_pid(&e, 0, 10000);
    cr_assert_neq(walsender, 0);
    char *sql = fmt("SELECT pg_terminate_backend(%d)", walsender);
    wct_sql(e.src, sql);
    free(sql);
    sql = fmt("DO $$ BEGIN FOR i IN 1..100 LOOP BEGIN PERFORM pg_drop_replication_slot('%s'); RETURN; "
              "EXCEPTION WHEN object_in_use THEN PERFORM pg_sleep(0.02); END; END LOOP; END $$",
              e.slot);
    wct_sql(e.src, sql);
    free(sql);
    int rc = wait_exit(pid, 15000);
    char *log = log_text(&e);
    cr_assert_eq(rc, 3, "exit 3 when the slot is gone:\n%s", log);
    cr_assert(strstr(log, e.slot) && strstr(log, "does not exist") && strstr(log, "walcast slot create"),
              "names the slot and the recovery command:\n%s", log);
    free(log);
    drop_slot(&e);
}

Test(run, lost_slot_is_a_clear_error_with_exit_3, .timeout = 180)
{
    struct env e;
    setup_env(&e, 0);
    /* Invalidate the slot: a tiny max_slot_wal_keep_size, WAL segments switched, a checkpoint. */
    wct_sql(e.src, "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'");
    wct_sql(e.src, "SELECT pg_reload_conf()");
    char *sql = fmt("SELECT wal_status FROM pg_replication_slots WHERE slot_name = '%s'", e.slot);
    char *ws = NULL;
    for (int i = 0; i < 10; i++) {
        wct_sql(e.src, "INSERT INTO other SELECT generate_series(1, 1000); SELECT pg_switch_wal()");
        wct_sql(e.src,
                "INSERT INTO other SELECT generate_series(1, 1000); SELECT pg_switch_wal(); CHECKPOINT");
        free(ws);
        ws = wct_sql_value(e.src, sql);
        if (ws && strcmp(ws, "lost") == 0)
            break;
    }
    wct_sql(e.src, "ALTER SYSTEM RESET max_slot_wal_keep_size");
    wct_sql(e.src, "SELECT pg_reload_conf()");
    cr_assert_str_eq(ws, "lost", "the slot was invalidated");
    free(ws);
    free(sql);

    char *cmd = fmt("%s slot status --source '%s' --slot %s 2>&1", wct_walcast(), e.src, e.slot), *out;
    int st = wct_run(cmd, &out);
    free(cmd);
    cr_assert_neq(st, 0);
    cr_assert(strstr(out, "wal_status:           lost") && strstr(out, "is lost"), "%s", out);
    free(out);

    cmd = fmt("%s run -c %s 2>&1", wct_walcast(), e.config);
    st = wct_run(cmd, &out);
    free(cmd);
    cr_assert_eq(st, 3, "exit 3 for a lost slot: %s", out);
    cr_assert(strstr(out, e.slot) && strstr(out, "is lost") && strstr(out, "walcast slot drop"), "%s", out);
    free(out);
    drop_slot(&e);
}

Test(run, heartbeat_measures_lag, .timeout = 60)
{
    struct env e;
    setup_env(&e, 200);
    pid_t pid = start_run(&e, "--log-level debug");
    usleep(1500000);
    cr_assert_eq(stop_run(pid, SIGTERM, 5000), 0);
    char *log = log_text(&e);
    cr_assert(strstr(log, "heartbeat round trip"), "heartbeats come back through the stream:\n%s", log);
    free(log);
    drop_slot(&e);
}

Test(run, check_config_names_file_line_and_key)
{
    char *dir = wct_tmpdir();
    char *path = fmt("%s/bad.yaml", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "sinks:\n  readdb:\n    type: postgres\nprojections:\n  p:\n    sink: nosuch\n    on:\n      "
               "X: []\n");
    fclose(f);
    char *cmd = fmt("%s check-config -c %s 2>&1", wct_walcast(), path), *out;
    int st = wct_run(cmd, &out);
    cr_assert_eq(st, 2, "%s", out);
    char *want = fmt("%s:6:", path);
    cr_assert(strstr(out, want) && strstr(out, "projections.p.sink") && strstr(out, "nosuch"), "%s", out);
    free(out);
    free(cmd);
    f = fopen(path, "w");
    fprintf(f, "sinks:\n  cache:\n    type: redis\nprojections:\n  p:\n    sink: cache\n    on:\n      X:\n"
               "        - [SET, \"k:{payload.id}\", \"{evnt_type}\"]\n");
    fclose(f);
    cmd = fmt("%s check-config -c %s 2>&1", wct_walcast(), path);
    st = wct_run(cmd, &out);
    cr_assert_eq(st, 2, "%s", out);
    free(want);
    want = fmt("%s:9:", path);
    cr_assert(strstr(out, want) && strstr(out, "evnt_type"), "unknown field named with file and line: %s",
              out);
    free(out);
    free(cmd);
    cmd = fmt("%s check-config -c %s/examples/orders/walcast.yaml 2>&1", wct_walcast(), wct_source_dir());
    st = wct_run(cmd, &out);
    cr_assert_eq(st, 0, "the example configuration is valid: %s", out);
    free(out);
    free(cmd);
}

static char *redis_str(struct env *e, const char *cmd)
{
    redisContext *r = wct_redis(e->redis_db);
    redisReply *x = redisCommand(r, cmd);
    char *v = x && x->type == REDIS_REPLY_STRING ? strdup(x->str) : NULL;
    freeReplyObject(x);
    redisFree(r);
    return v;
}

Test(run, redis_that_lost_its_data_is_rebuilt_from_the_outbox, .timeout = 120)
{
    struct env e;
    setup_env_rebuild(&e, 0, "    rebuild: flushdb\n");
    pid_t pid = start_run(&e, NULL);
    for (int i = 1; i <= 50; i++) {
        char *p = fmt("{\"order_id\": %d, \"total\": 2}", i);
        insert_event(&e, "OrderPlaced", p);
        free(p);
    }
    cr_assert(wait_applied(&e, 20000));
    cr_assert_eq(stop_run(pid, SIGTERM, 5000), 0);
    char *v = redis_str(&e, "ZSCORE totals all");
    cr_assert_str_eq(v, "100");
    free(v);

    /* Redis loses everything (a restart without persistence), and events keep coming meanwhile. */
    redisContext *r = wct_redis(e.redis_db);
    freeReplyObject(redisCommand(r, "FLUSHDB"));
    freeReplyObject(redisCommand(r, "SET stale junk"));
    redisFree(r);
    for (int i = 51; i <= 60; i++) {
        char *p = fmt("{\"order_id\": %d, \"total\": 2}", i);
        insert_event(&e, "OrderPlaced", p);
        free(p);
    }
    pid = start_run(&e, NULL);
    cr_assert(wait_applied(&e, 20000));
    insert_event(&e, "OrderPlaced", "{\"order_id\": 61, \"total\": 2}");
    cr_assert(wait_applied(&e, 20000));
    usleep(200000);
    v = redis_str(&e, "ZSCORE totals all");
    cr_assert_str_eq(v, "122", "61 events of 2 each, every one applied exactly once after the rebuild");
    free(v);
    v = redis_str(&e, "HGET order:1 total");
    cr_assert_str_eq(v, "2", "history before the loss is back");
    free(v);
    v = redis_str(&e, "GET stale");
    cr_assert_null(v, "the rebuild started from an empty database");
    char *n = wct_sql_value(e.read, "SELECT count(*) FROM orders_seen");
    cr_assert_str_eq(n, "61", "the PostgreSQL sink was not touched and applied nothing twice");
    free(n);
    cr_assert_eq(stop_run(pid, SIGTERM, 5000), 0);
    char *log = log_text(&e);
    cr_assert(strstr(log, "sink \"cache\" has lost data") && strstr(log, "rebuilt from 60 outbox rows"), "%s",
              log);
    free(log);
    drop_slot(&e);
}

Test(run, lost_data_without_a_rebuild_action_stops_with_a_clear_error, .timeout = 120)
{
    struct env e;
    setup_env(&e, 0);
    pid_t pid = start_run(&e, NULL);
    insert_event(&e, "OrderPlaced", "{\"order_id\": 1, \"total\": 2}");
    cr_assert(wait_applied(&e, 20000));
    cr_assert_eq(stop_run(pid, SIGTERM, 5000), 0);
    redisContext *r = wct_redis(e.redis_db);
    freeReplyObject(redisCommand(r, "FLUSHDB"));
    redisFree(r);
    char *cmd = fmt("%s run -c %s 2>&1", wct_walcast(), e.config), *out;
    int st = wct_run(cmd, &out);
    free(cmd);
    cr_assert_eq(st, 1, "%s", out);
    cr_assert(strstr(out, "sink \"cache\" has lost data") && strstr(out, "sinks.cache.rebuild"), "%s", out);
    free(out);
    drop_slot(&e);
}

/* Poll cmd until it returns want (or timeout_ms passes); returns the last value (caller frees). */
static char *wait_redis(struct env *e, const char *cmd, const char *want, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    char *v = NULL;
    while (now_ms() < deadline) {
        free(v);
        v = redis_str(e, cmd);
        if (v && strcmp(v, want) == 0)
            break;
        usleep(50000);
    }
    return v;
}

/* Wait until cmd returns want, let more time pass (in case anything is applied twice), then its value. */
static char *settled_redis(struct env *e, const char *cmd, const char *want)
{
    free(wait_redis(e, cmd, want, 10000));
    usleep(300000);
    return redis_str(e, cmd);
}

/* Wait until walcast's log has needle: 1, or 0 after timeout_ms. */
static int wait_log(struct env *e, const char *needle, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    int found = 0;
    while (!found && now_ms() < deadline) {
        char *log = log_text(e);
        found = log != NULL && strstr(log, needle) != NULL;
        free(log);
        if (!found)
            usleep(20000);
    }
    return found;
}

/*
 * The first start of a pipeline is cut short: the Redis sink has been built from the outbox (it has a
 * cursor), the PostgreSQL sink has had nothing to apply yet, and walcast is killed. The next start must
 * not take the PostgreSQL sink for one that lost its data: it is where the first start put it, at the
 * slot's position, and the stream still holds everything after that.
 */
Test(run, a_first_start_cut_short_is_not_taken_for_lost_data, .timeout = 120)
{
    struct env e;
    setup_env_rebuild(&e, 0, "    rebuild: flushdb\n");
    for (int i = 1; i <= 5; i++) {
        char *p = fmt("{\"order_id\": %d, \"total\": 2}", i);
        insert_event(&e, "OrderPlaced", p);
        free(p);
    }
    /* The slot again, after those events: the Redis sink's initial build has them, the stream does not,
     * so the PostgreSQL sink has nothing to commit before it is killed. */
    drop_slot(&e);
    char *sql = fmt("SELECT pg_create_logical_replication_slot('%s', 'wal2json')", e.slot);
    wct_sql(e.src, sql);
    free(sql);

    pid_t pid = start_run(&e, NULL);
    cr_assert(wait_log(&e, "streaming slot", 20000), "walcast streamed:\n%s", log_text(&e));
    usleep(200000);
    cr_assert_eq(stop_run(pid, SIGKILL, 5000), 128 + SIGKILL);

    pid = start_run(&e, NULL);
    for (int i = 6; i <= 10; i++) {
        char *p = fmt("{\"order_id\": %d, \"total\": 2}", i);
        insert_event(&e, "OrderPlaced", p);
        free(p);
    }
    int applied = wait_applied(&e, 20000);
    char *log = log_text(&e);
    cr_assert(applied, "walcast applied the events after the restart:\n%s", log);
    cr_assert_null(strstr(log, "has lost data"), "%s", log);
    free(log);
    char *v = wct_sql_value(e.read, "SELECT count(*) || ' ' || min(order_id) FROM orders_seen");
    cr_assert_str_eq(v, "5 6", "the PostgreSQL sink has the events after the slot, each once");
    free(v);
    v = settled_redis(&e, "ZSCORE totals all", "20");
    cr_assert_str_eq(v, "20", "the Redis sink has the 5 events of its build and the 5 after, each once");
    free(v);
    cr_assert_eq(stop_run(pid, SIGTERM, 5000), 0);
    drop_slot(&e);
}

Test(run, dlq_list_and_retry, .timeout = 120)
{
    struct env e;
    setup_env(&e, 0);
    pid_t pid = start_run(&e, NULL);
    insert_event(&e, "OrderPlaced", "{\"order_id\": 1, \"total\": 10}");
    insert_event(&e, "OrderPlaced", "{\"order_id\": 1, \"total\": 20}"); /* duplicate key in PostgreSQL */
    insert_event(&e, "OrderPlaced", "{\"total\": 3}");                   /* missing field in both sinks */
    cr_assert(wait_applied(&e, 20000));
    cr_assert_eq(stop_run(pid, SIGTERM, 5000), 0);

    char *cmd = fmt("%s dlq list -c %s --json 2>/dev/null", wct_walcast(), e.config), *out;
    int st = wct_run(cmd, &out);
    free(cmd);
    cr_assert_eq(st, 0, "%s", out);
    int lines = 0;
    for (char *p = out; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    cr_assert_eq(lines, 3, "two dead letters in readdb, one in cache:\n%s", out);
    cr_assert(strstr(out, "\"sink\":\"readdb\"") && strstr(out, "\"sink\":\"cache\"") &&
                  strstr(out, "duplicate key value") && strstr(out, "\"event_type\":\"OrderPlaced\""),
              "%s", out);
    free(out);

    /* The operator fixes the cause of the duplicate, then retries: it applies and leaves the store. */
    wct_sql(e.read, "DELETE FROM orders_seen WHERE order_id = 1");
    char *touched = wct_sql_value(e.read, "SELECT updated_at FROM walcast_cursor WHERE sink = 'readdb'");
    cmd = fmt("%s dlq retry -c %s --sink readdb 2>&1", wct_walcast(), e.config);
    st = wct_run(cmd, &out);
    free(cmd);
    cr_assert_eq(st, 1, "one dead letter still fails: %s", out);
    cr_assert(strstr(out, "1 dead letters applied and removed, 1 still failing"), "%s", out);
    free(out);
    char *t = wct_sql_value(e.read, "SELECT total::text FROM orders_seen WHERE order_id = 1");
    cr_assert_str_eq(t, "20", "the retried event was applied");
    free(t);
    char *n = wct_sql_value(e.read, "SELECT count(*) FROM walcast_dead_letters");
    cr_assert_str_eq(n, "1", "the applied dead letter was removed, the failing one kept");
    free(n);
    char *touched2 = wct_sql_value(e.read, "SELECT updated_at FROM walcast_cursor WHERE sink = 'readdb'");
    cr_assert_str_eq(touched, touched2, "a retry never writes the cursor (a running engine owns it)");
    free(touched);
    free(touched2);
    char *cur1 =
        wct_sql_value(e.read, "SELECT lsn::text || ':' || idx FROM walcast_cursor WHERE sink = 'readdb'");

    cmd = fmt("%s dlq retry -c %s --sink cache 2>&1", wct_walcast(), e.config);
    st = wct_run(cmd, &out);
    free(cmd);
    cr_assert_eq(st, 1, "%s", out);
    cr_assert(strstr(out, "0 dead letters applied and removed, 1 still failing"), "%s", out);
    free(out);
    char *cur2 =
        wct_sql_value(e.read, "SELECT lsn::text || ':' || idx FROM walcast_cursor WHERE sink = 'readdb'");
    cr_assert_str_eq(cur1, cur2, "retry does not move the cursor");
    free(cur1);
    free(cur2);
    drop_slot(&e);
}

/* A single Redis sink that comes back empty has no other sink to compare with: with a rebuild action,
 * no cursor means "build from the outbox", so the loss cannot go unnoticed. */
Test(run, single_redis_sink_rebuilt_after_a_flush, .timeout = 120)
{
    struct env e;
    setup_env(&e, 0);
    FILE *f = fopen(e.config, "w");
    fprintf(f, "source:\n  slot: placeholder\nsinks:\n  cache:\n    type: redis\n    rebuild: flushdb\n"
               "projections:\n  p:\n    sink: cache\n    on:\n      Hit:\n        - [INCRBY, hits, "
               "\"{payload.n}\"]\n");
    fclose(f);
    for (int i = 0; i < 3; i++)
        insert_event(&e, "Hit", "{\"n\": 1}"); /* before the first start: the initial build picks them up */
    pid_t pid = start_run(&e, NULL);
    for (int i = 0; i < 7; i++)
        insert_event(&e, "Hit", "{\"n\": 1}");
    char *v = wait_redis(&e, "GET hits", "10", 10000);
    cr_assert_str_eq(v, "10", "events from before the first start and after it");
    free(v);
    cr_assert_eq(stop_run(pid, SIGTERM, 5000), 0);
    redisContext *r = wct_redis(e.redis_db);
    freeReplyObject(redisCommand(r, "FLUSHDB"));
    redisFree(r);
    for (int i = 0; i < 5; i++)
        insert_event(&e, "Hit", "{\"n\": 1}");
    pid = start_run(&e, NULL);
    v = settled_redis(&e, "GET hits", "15");
    cr_assert_str_eq(v, "15", "rebuilt from the outbox after the flush, nothing doubled");
    free(v);
    cr_assert_eq(stop_run(pid, SIGTERM, 5000), 0);
    drop_slot(&e);
}

Test(run, payloads_of_the_wrong_shape_or_type_are_dead_lettered, .timeout = 120)
{
    struct env e;
    setup_env(&e, 0);
    pid_t pid = start_run(&e, NULL);
    insert_event(&e, "OrderPlaced", "[1, 2]");                                   /* not an object */
    insert_event(&e, "OrderPlaced", "\"just a string\"");                        /* not an object */
    insert_event(&e, "OrderPlaced", "{\"order_id\": \"seven\", \"total\": 1}");  /* not a bigint */
    insert_event(&e, "OrderPlaced", "{\"order_id\": 8, \"total\": {\"a\": 1}}"); /* not a number */
    insert_event(&e, "OrderPlaced", "{\"order_id\": 9, \"total\": 2}");          /* good */
    cr_assert(wait_applied(&e, 20000), "walcast caught up:\n%s", log_text(&e));
    char *n = wct_sql_value(e.read, "SELECT string_agg(order_id::text, ',') FROM orders_seen");
    cr_assert_str_eq(n, "9", "only the good event is projected");
    free(n);
    char *dl = wct_sql_value(e.read, "SELECT count(*) FROM walcast_dead_letters");
    cr_assert_str_eq(dl, "4", "each bad one is a dead letter in PostgreSQL, and the stream went on");
    free(dl);
    char *why =
        wct_sql_value(e.read, "SELECT string_agg(error, E'\\n' ORDER BY id) FROM walcast_dead_letters");
    cr_assert(strstr(why, "invalid input syntax for type bigint") && strstr(why, "is missing"), "%s", why);
    free(why);
    cr_assert_eq(stop_run(pid, SIGTERM, 5000), 0);
    drop_slot(&e);
}

/* A projection that adds up each Tick's n in the read database, and a Redis one that needs its tag. */
static const char *ticks_yaml =
    "source:\n"
    "  slot: placeholder\n"
    "engine:\n"
    "  on_error: %s\n"
    "  dead_letter_sink: readdb\n"
    "sinks:\n"
    "  readdb:\n"
    "    type: postgres\n"
    "  cache:\n"
    "    type: redis\n"
    "projections:\n"
    "  ticks_pg:\n"
    "    sink: readdb\n"
    "    on:\n"
    "      Tick:\n"
    "        - sql: INSERT INTO ticks (k, n) VALUES ('all', $1::int) ON CONFLICT (k) "
    "DO UPDATE SET n = ticks.n + EXCLUDED.n\n"
    "          params: [payload.n]\n"
    "  ticks_redis:\n"
    "    sink: cache\n"
    "    on:\n"
    "      Tick:\n"
    "        - [HSET, \"tick:{payload.n}\", tag, \"{payload.tag}\"]\n";

static void write_ticks_config(struct env *e, const char *on_error)
{
    FILE *f = fopen(e->config, "w");
    fprintf(f, ticks_yaml, on_error);
    fclose(f);
}

/*
 * An event the second sink cannot take (on_error: halt) ends the session after the first sink queued it.
 * The first sink's commit in flight returns meanwhile, with more of its events waiting behind it: they
 * must not be committed with a cursor that stops short of the halting event, or the next start applies
 * that event again. The read database's commit is held on a row lock so that it is in flight then.
 */
Test(run, an_event_that_halts_one_sink_is_not_applied_twice_by_another, .timeout = 120)
{
    struct env e;
    setup_env(&e, 0);
    wct_sql(e.read, "CREATE TABLE ticks (k text PRIMARY KEY, n int NOT NULL)");
    write_ticks_config(&e, "halt");

    pid_t pid = start_run(&e, NULL);
    insert_event(&e, "Tick", "{\"n\": 1, \"tag\": \"a\"}");
    cr_assert(wait_applied(&e, 20000), "walcast applied the first event:\n%s", log_text(&e));

    PGconn *lock = wct_pg_connect(e.read);
    PQclear(PQexec(lock, "BEGIN"));
    PGresult *r = PQexec(lock, "SELECT n FROM ticks WHERE k = 'all' FOR UPDATE");
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(lock));
    PQclear(r);
    insert_event(&e, "Tick", "{\"n\": 2, \"tag\": \"b\"}"); /* its commit waits for the lock */
    char *waiting = NULL;
    for (int i = 0; i < 200; i++) {
        free(waiting);
        waiting = wct_sql_value(e.read, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                        "current_database() AND wait_event_type = 'Lock'");
        if (waiting && strcmp(waiting, "1") == 0)
            break;
        usleep(50000);
    }
    cr_assert_str_eq(waiting, "1", "readdb's commit waits for the lock:\n%s", log_text(&e));
    free(waiting);
    insert_event(&e, "Tick", "{\"n\": 4, \"tag\": \"c\"}"); /* queued behind that commit */
    usleep(300000);
    insert_event(&e, "Tick", "{\"n\": 8}"); /* queued in readdb, then the halt in cache */
    usleep(500000);
    cr_assert(waitpid(pid, NULL, WNOHANG) == 0, "walcast waits for the commit in flight:\n%s", log_text(&e));
    PQclear(PQexec(lock, "COMMIT"));
    PQfinish(lock);

    int rc = wait_exit(pid, 20000);
    char *log = log_text(&e);
    cr_assert(rc > 0, "walcast stopped on the halt (exit %d):\n%s", rc, log);
    cr_assert(strstr(log, "sink \"cache\": event \"Tick\"") != NULL, "the halt names the sink:\n%s", log);
    free(log);

    /* Past the bad event now: every event in the read database once, 1 + 2 + 4 + 8. */
    write_ticks_config(&e, "skip");
    pid = start_run(&e, NULL);
    cr_assert(wait_applied(&e, 20000), "walcast applied the rest:\n%s", log_text(&e));
    char *n = wct_sql_value(e.read, "SELECT n FROM ticks WHERE k = 'all'");
    cr_assert_str_eq(n, "15", "each event applied once in the read database: %s (8 twice makes 23):\n%s", n,
                     log_text(&e));
    free(n);
    cr_assert_eq(stop_run(pid, SIGTERM, 5000), 0);
    drop_slot(&e);
}
