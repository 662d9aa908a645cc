/* test_orders.c - the order example (examples/orders) end to end through the walcast binary:
 * each event type field by field on both sinks, a 10k-command random workload, and the same workload
 * with `kill -9` of walcast at five random moments. check.sh is the oracle for the workloads. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define WORKLOAD 10000

struct orders_env {
    char *write_dsn; /* as postgres: write side and outbox */
    char *read_dsn;  /* as postgres: projections */
    char *config;
    char *dir;
    char *log;
    char *slot;
    int db; /* Redis database number */
    pid_t pid;
    int supervise; /* restart walcast when it exits (the kill -9 test); otherwise an exit fails */
    int restarts;
    PGconn *w, *r;
    redisContext *redis;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    va_end(ap);
    return s;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert(fread(s, 1, (size_t)n, f) == (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

static void load_sql(const char *dsn, const char *file)
{
    char *path = xprintf("%s/examples/orders/%s", wct_source_dir(), file);
    char *sql = read_text(path);
    wct_sql(dsn, sql);
    free(sql);
    free(path);
}

/* First column of the first row on an open connection (new string; NULL for NULL or no row). */
static char *qv(PGconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *qv(PGconn *c, const char *fmt, ...)
{
    va_list ap;
    char *sql;
    va_start(ap, fmt);
    if (vasprintf(&sql, fmt, ap) < 0)
        abort();
    va_end(ap);
    PGresult *res = PQexec(c, sql);
    cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "query failed: %s\n%s", sql, PQerrorMessage(c));
    char *v = PQntuples(res) > 0 && !PQgetisnull(res, 0, 0) ? strdup(PQgetvalue(res, 0, 0)) : NULL;
    PQclear(res);
    free(sql);
    return v;
}

static long long qll(PGconn *c, const char *sql)
{
    char *v = qv(c, "%s", sql);
    long long n = v ? atoll(v) : 0;
    free(v);
    return n;
}

/* A Redis reply as a string (NULL for nil). */
static char *rv(struct orders_env *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(e->redis, fmt, ap);
    va_end(ap);
    cr_assert(rep != NULL, "redis: %s", e->redis->errstr);
    char *s = NULL;
    if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS)
        s = strndup(rep->str, rep->len);
    else if (rep->type == REDIS_REPLY_INTEGER)
        s = xprintf("%lld", rep->integer);
    else
        cr_assert(rep->type == REDIS_REPLY_NIL, "unexpected redis reply type %d (%s)", rep->type,
                  rep->type == REDIS_REPLY_ERROR ? rep->str : "");
    freeReplyObject(rep);
    return s;
}

static void start_walcast(struct orders_env *e)
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        /* A failed assertion ends the test process without teardown: take walcast with it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(e->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl(wct_walcast(), "walcast", "run", "-c", e->config, (char *)NULL);
        _exit(127);
    }
    e->pid = pid;
}

static void dump_log(struct orders_env *e)
{
    char *cmd = xprintf("tail -n 30 '%s' 2>/dev/null", e->log), *out = NULL;
    wct_run(cmd, &out);
    cr_log_error("walcast log (%s):\n%s", e->log, out ? out : "");
    free(out);
    free(cmd);
}

/* Is walcast still running? Restarts it when supervising, fails the test otherwise. */
static void ensure_running(struct orders_env *e)
{
    int st;
    if (e->pid <= 0 || waitpid(e->pid, &st, WNOHANG) != e->pid)
        return;
    e->pid = 0;
    if (!e->supervise) {
        dump_log(e);
        cr_assert_fail("walcast run exited (status 0x%x)", st);
    }
    cr_assert(++e->restarts < 100, "walcast keeps exiting (last status 0x%x)", st);
    sleep_ms(100);
    start_walcast(e);
}

static void stop_walcast(struct orders_env *e, int sig)
{
    if (e->pid <= 0)
        return;
    kill(e->pid, sig);
    for (int i = 0; i < 100; i++) {
        if (waitpid(e->pid, NULL, WNOHANG) == e->pid) {
            e->pid = 0;
            return;
        }
        sleep_ms(50);
    }
    kill(e->pid, SIGKILL);
    waitpid(e->pid, NULL, 0);
    e->pid = 0;
}

static void setup_env(struct orders_env *e, int db)
{
    memset(e, 0, sizeof(*e));
    e->db = db;
    e->write_dsn = wct_create_db("orders_w");
    e->read_dsn = wct_create_db("orders_r");
    load_sql(e->write_dsn, "write.sql");
    load_sql(e->read_dsn, "read.sql");
    e->config = xprintf("%s/examples/orders/walcast.yaml", wct_source_dir());
    e->dir = wct_tmpdir();
    e->log = xprintf("%s/walcast.log", e->dir);
    e->slot = wct_unique("orders_slot");
    e->redis = wct_redis(db);
    freeReplyObject(redisCommand(e->redis, "FLUSHDB"));
    e->w = wct_pg_connect(e->write_dsn);
    e->r = wct_pg_connect(e->read_dsn);

    /* walcast connects with its own least-privilege role; check.sh reads as postgres. */
    char *src = xprintf("%s user=walcast", e->write_dsn), *rd = xprintf("%s user=walcast", e->read_dsn);
    char *url = xprintf("redis://127.0.0.1:%d/%d", wct_redis_port(), db);
    setenv("WALCAST_SOURCE_DSN", src, 1);
    setenv("WALCAST_SOURCE_SLOT", e->slot, 1);
    setenv("WALCAST_SINKS_READDB_DSN", rd, 1);
    setenv("WALCAST_SINKS_CACHE_DSN", url, 1);
    setenv("CHECK_WRITE_DSN", e->write_dsn, 1);
    setenv("CHECK_READ_DSN", e->read_dsn, 1);
    setenv("CHECK_REDIS_URL", url, 1);
    free(src);
    free(rd);
    free(url);

    char *cmd = xprintf("'%s' slot create -c '%s' 2>&1", wct_walcast(), e->config), *out = NULL;
    int rc = wct_run(cmd, &out);
    cr_assert_eq(rc, 0, "walcast slot create failed (%d): %s", rc, out);
    free(out);
    free(cmd);
    start_walcast(e);
}

static void teardown_env(struct orders_env *e)
{
    stop_walcast(e, SIGTERM);
    /* Drop the slot so it does not pin WAL; the walsender may take a moment to let go of it. */
    for (int i = 0; i < 100; i++) {
        char *left = qv(e->w,
                        "SELECT count(*) FROM (SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                        " WHERE slot_name = '%s' AND NOT active) d",
                        e->slot);
        char *still = qv(e->w, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '%s'", e->slot);
        int gone = still && strcmp(still, "0") == 0;
        free(left);
        free(still);
        if (gone)
            break;
        sleep_ms(50);
    }
    PQfinish(e->w);
    PQfinish(e->r);
    redisFree(e->redis);
    char *cmd = xprintf("rm -rf '%s'", e->dir);
    wct_run(cmd, NULL);
    free(cmd);
    free(e->write_dsn);
    free(e->read_dsn);
    free(e->config);
    free(e->dir);
    free(e->log);
    free(e->slot);
}

/* Wait until order id shows status in order_summary and in Redis order:<id>, supervising walcast. */
static void wait_order(struct orders_env *e, long long id, const char *status, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        char *pg = qv(e->r, "SELECT status FROM order_summary WHERE order_id = %lld", id);
        char *rs = rv(e, "HGET order:%lld status", id);
        int ok = pg && rs && strcmp(pg, status) == 0 && strcmp(rs, status) == 0;
        if (!ok && now_ms() > deadline) {
            dump_log(e);
            cr_assert_fail("order %lld did not become %s in both sinks within %d ms (order_summary: %s, redis: %s)",
                           id, status, timeout_ms, pg ? pg : "none", rs ? rs : "none");
        }
        free(pg);
        free(rs);
        if (ok)
            return;
        ensure_running(e);
        sleep_ms(20);
    }
}

static long long place(struct orders_env *e, long long customer, const char *items)
{
    char *v = qv(e->w, "SELECT shop.place_order(%lld, '%s')", customer, items);
    cr_assert(v != NULL);
    long long id = atoll(v);
    free(v);
    return id;
}

static void command(struct orders_env *e, const char *sql)
{
    PGresult *res = PQexec(e->w, sql);
    cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK,
              "%s: %s", sql, PQerrorMessage(e->w));
    PQclear(res);
}

/* The error of a command that must fail (new string). */
static char *command_error(struct orders_env *e, const char *sql)
{
    PGresult *res = PQexec(e->w, sql);
    cr_assert(PQresultStatus(res) == PGRES_FATAL_ERROR, "%s should have failed", sql);
    char *msg = strdup(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
    PQclear(res);
    return msg;
}

static void expect_str(const char *what, char *got, const char *want)
{
    cr_expect(got != NULL && strcmp(got, want) == 0, "%s: expected %s, got %s", what, want ? want : "(nil)",
              got ? got : "(nil)");
    free(got);
}

static void expect_nil(const char *what, char *got)
{
    cr_expect(got == NULL, "%s: expected nothing, got %s", what, got);
    free(got);
}

static void expect_num(const char *what, char *got, double want)
{
    cr_expect(got != NULL && fabs(strtod(got, NULL) - want) < 0.005, "%s: expected %.2f, got %s", what, want,
              got ? got : "(nil)");
    free(got);
}

/* A write-side timestamp of order id as the events carry it (ISO 8601 ms 'Z') or as epoch ms. */
static char *w_iso(struct orders_env *e, long long id, const char *col)
{
    return qv(e->w, "SELECT shop.iso_ms(%s) FROM shop.orders WHERE id = %lld", col, id);
}

static char *w_ms(struct orders_env *e, long long id, const char *col)
{
    return qv(e->w, "SELECT (extract(epoch FROM %s) * 1000)::bigint FROM shop.orders WHERE id = %lld", col, id);
}

static char *r_iso(struct orders_env *e, long long id, const char *col)
{
    return qv(e->r,
              "SELECT to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM order_summary"
              " WHERE order_id = %lld",
              col, id);
}

/* Both sinks hold order id exactly as the write side has it (status-dependent Redis sets included). */
static void expect_order(struct orders_env *e, long long id)
{
    char *cust = qv(e->w, "SELECT customer_id FROM shop.orders WHERE id = %lld", id);
    char *status = qv(e->w, "SELECT status FROM shop.orders WHERE id = %lld", id);
    char *total = qv(e->w, "SELECT total FROM shop.orders WHERE id = %lld", id);
    char *items = qv(e->w, "SELECT count(*) FROM shop.order_items WHERE order_id = %lld", id);
    char *placed = w_iso(e, id, "placed_at"), *updated = w_iso(e, id, "updated_at");
    char *placed_ms = w_ms(e, id, "placed_at"), *updated_ms = w_ms(e, id, "updated_at");
    char what[128];

#define ROW(col) qv(e->r, "SELECT " col " FROM order_summary WHERE order_id = %lld", id)
    snprintf(what, sizeof(what), "order_summary %lld", id);
    expect_str("order_summary.customer_id", ROW("customer_id"), cust);
    expect_str("order_summary.status", ROW("status"), status);
    expect_str("order_summary.total", ROW("total"), total);
    expect_str("order_summary.item_count", ROW("item_count"), items);
    expect_str("order_summary.placed_at", r_iso(e, id, "placed_at"), placed);
    expect_str("order_summary.updated_at", r_iso(e, id, "updated_at"), updated);
#undef ROW

    expect_str("customer orders score", rv(e, "ZSCORE customer:%s:orders %lld", cust, id), placed_ms);
    expect_str("order hash status", rv(e, "HGET order:%lld status", id), status);
    expect_num("order hash total", rv(e, "HGET order:%lld total", id), strtod(total, NULL));
    expect_str("order hash customer_id", rv(e, "HGET order:%lld customer_id", id), cust);
    expect_str("order hash placed_at", rv(e, "HGET order:%lld placed_at", id), placed);
    expect_str("order hash updated", rv(e, "HGET order:%lld updated", id), updated);
    const char *statuses[] = {"placed", "confirmed", "shipped", "cancelled"};
    for (int i = 0; i < 4; i++) {
        snprintf(what, sizeof(what), "orders:status:%s score of %lld", statuses[i], id);
        char *score = rv(e, "ZSCORE orders:status:%s %lld", statuses[i], id);
        if (strcmp(statuses[i], status) == 0)
            expect_str(what, score, updated_ms);
        else
            expect_nil(what, score);
    }
    free(cust);
    free(status);
    free(total);
    free(items);
    free(placed);
    free(updated);
    free(placed_ms);
    free(updated_ms);
}

static void expect_ltv(struct orders_env *e, long long customer, const char *value, const char *orders)
{
    expect_str("customer_ltv.lifetime_value",
               qv(e->r, "SELECT lifetime_value FROM customer_ltv WHERE customer_id = %lld", customer), value);
    expect_str("customer_ltv.orders", qv(e->r, "SELECT orders FROM customer_ltv WHERE customer_id = %lld", customer),
               orders);
    expect_num("ltv:leaderboard score", rv(e, "ZSCORE ltv:leaderboard %lld", customer), strtod(value, NULL));
}

static void run_check(struct orders_env *e, long long min_orders)
{
    char *cmd = xprintf("'%s/examples/orders/check.sh' 2>&1", wct_source_dir()), *out = NULL;
    long long t0 = now_ms();
    int rc = wct_run(cmd, &out);
    cr_log_info("check.sh (%lld ms): %s", now_ms() - t0, out);
    cr_assert_eq(rc, 0, "check.sh failed (%d):\n%s", rc, out);
    const char *line = strstr(out, "check: orders=");
    cr_assert(line != NULL, "no summary line from check.sh:\n%s", out);
    long long n = atoll(line + strlen("check: orders="));
    cr_assert(n >= min_orders, "only %lld orders checked", n);
    cr_assert(strstr(line, "mismatches=0") != NULL, "%s", line);
    free(out);
    free(cmd);
}

/* Place a marker order after everything else and wait until both sinks hold it: each sink applies
 * events in commit order, so then everything before it has been applied too. */
static void wait_caught_up(struct orders_env *e, int timeout_ms)
{
    long long t0 = now_ms();
    long long marker = place(e, 1, "[{\"sku\": \"MARKER\", \"qty\": 1, \"unit_price\": 1.00}]");
    wait_order(e, marker, "placed", timeout_ms);
    cr_log_info("caught up with marker order %lld in %lld ms", marker, now_ms() - t0);
}

static pid_t start_workload(struct orders_env *e, int n, double seed)
{
    char *call = xprintf("CALL shop.run_workload(%d, %.6f)", n, seed);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execlp("psql", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", e->write_dsn, "-c", call, (char *)NULL);
        _exit(127);
    }
    free(call);
    return pid;
}

/* Wait for the workload; supervise walcast meanwhile. */
static void finish_workload(struct orders_env *e, pid_t wl, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    int st;
    while (waitpid(wl, &st, WNOHANG) != wl) {
        if (now_ms() > deadline) {
            kill(wl, SIGKILL);
            waitpid(wl, NULL, 0);
            cr_assert_fail("workload did not finish within %d ms", timeout_ms);
        }
        ensure_running(e);
        sleep_ms(20);
    }
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "workload failed (status 0x%x)", st);
}

TestSuite(orders, .timeout = 170);

Test(orders, commands_enforce_transitions)
{
    char *dsn = wct_create_db("orders_cmd");
    load_sql(dsn, "write.sql");
    PGconn *c = wct_pg_connect(dsn);
    struct orders_env e = {.w = c};
    command(&e, "INSERT INTO shop.customers (email, name) VALUES ('t@example.com', 'T')");
    long long id = place(&e, 1, "[{\"sku\": \"A\", \"qty\": 3, \"unit_price\": 0.10}]");
    char *payload = qv(c, "SELECT payload::text FROM domain_events WHERE event_type = 'OrderPlaced'");
    cr_log_info("OrderPlaced payload: %s", payload);
    char *total = qv(c, "SELECT jsonb_typeof(payload->'total') || ' ' || (payload->'total')::text FROM domain_events");
    expect_str("total is a JSON number with 2 decimals", total, "number 0.30");
    char *iso = qv(c, "SELECT payload->>'placed_at' ~ '^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$' "
                      "FROM domain_events");
    expect_str("placed_at is ISO 8601 UTC with ms", iso, "t");
    free(payload);

    char *sql = xprintf("SELECT shop.ship_order(%lld)", id), *err = command_error(&e, sql);
    cr_expect(strstr(err, "cannot be shipped") != NULL, "%s", err);
    free(err);
    free(sql);
    sql = xprintf("SELECT shop.confirm_order(%lld)", id);
    command(&e, sql);
    err = command_error(&e, sql);
    cr_expect(strstr(err, "cannot be confirmed") != NULL, "%s", err);
    free(err);
    free(sql);
    sql = xprintf("SELECT shop.cancel_order(%lld, 'no')", id);
    command(&e, sql);
    err = command_error(&e, sql);
    cr_expect(strstr(err, "cannot be cancelled") != NULL, "%s", err);
    free(err);
    free(sql);
    err = command_error(&e, "SELECT shop.place_order(1, '[]')");
    cr_expect(strstr(err, "non-empty") != NULL, "%s", err);
    free(err);
    err = command_error(&e, "SELECT shop.place_order(1, '[{\"sku\": \"A\", \"qty\": 0, \"unit_price\": 1}]')");
    free(err);
    err = command_error(&e, "SELECT shop.confirm_order(424242)");
    cr_expect(strstr(err, "does not exist") != NULL, "%s", err);
    free(err);
    /* Failed commands left no events: placed, confirmed, cancelled. */
    char *n = qv(c, "SELECT string_agg(event_type, ',' ORDER BY event_id) FROM domain_events");
    expect_str("events", n, "OrderPlaced,OrderConfirmed,OrderCancelled");
    PQfinish(c);
    free(dsn);
}

Test(orders, each_event_updates_both_sinks)
{
    struct orders_env e;
    setup_env(&e, 13);
    command(&e, "INSERT INTO shop.customers (email, name) VALUES ('ada@example.com', 'Ada')");
    long long cust = qll(e.w, "SELECT id FROM shop.customers WHERE email = 'ada@example.com'");

    /* Order 1: placed -> confirmed -> shipped. 2 x 10.25 + 1 x 5.55 = 26.05 */
    long long o1 = place(&e, cust, "[{\"sku\": \"A-1\", \"qty\": 2, \"unit_price\": 10.25},"
                                   " {\"sku\": \"B-2\", \"qty\": 1, \"unit_price\": 5.55}]");
    wait_order(&e, o1, "placed", 30000);
    expect_order(&e, o1);
    expect_str("item_count", qv(e.r, "SELECT item_count FROM order_summary WHERE order_id = %lld", o1), "2");
    expect_str("total", qv(e.r, "SELECT total FROM order_summary WHERE order_id = %lld", o1), "26.05");
    expect_ltv(&e, cust, "26.05", "1");

    char *sql = xprintf("SELECT shop.confirm_order(%lld)", o1);
    command(&e, sql);
    free(sql);
    wait_order(&e, o1, "confirmed", 30000);
    expect_order(&e, o1);
    expect_ltv(&e, cust, "26.05", "1");

    sql = xprintf("SELECT shop.ship_order(%lld)", o1);
    command(&e, sql);
    free(sql);
    wait_order(&e, o1, "shipped", 30000);
    expect_order(&e, o1);
    expect_ltv(&e, cust, "26.05", "1");

    /* Order 2: placed -> confirmed -> cancelled; its total comes off the lifetime value. 3 x 7.10 */
    long long o2 = place(&e, cust, "[{\"sku\": \"C-3\", \"qty\": 3, \"unit_price\": 7.10}]");
    wait_order(&e, o2, "placed", 30000);
    expect_ltv(&e, cust, "47.35", "2");
    sql = xprintf("SELECT shop.confirm_order(%lld)", o2);
    command(&e, sql);
    free(sql);
    sql = xprintf("SELECT shop.cancel_order(%lld, 'changed my mind')", o2);
    command(&e, sql);
    free(sql);
    wait_order(&e, o2, "cancelled", 30000);
    expect_order(&e, o2);
    expect_order(&e, o1);
    expect_ltv(&e, cust, "26.05", "1");
    expect_str("customer orders", rv(&e, "ZCARD customer:%lld:orders", cust), "2");

    /* The newest-first read both sinks serve. */
    char *newest = xprintf("%lld", o2);
    expect_str("newest order (PostgreSQL)",
               qv(e.r, "SELECT order_id FROM order_summary WHERE customer_id = %lld"
                       " ORDER BY placed_at DESC, order_id DESC LIMIT 1", cust),
               newest);
    free(newest);
    redisReply *rep = redisCommand(e.redis, "ZREVRANGE customer:%lld:orders 0 0", cust);
    cr_assert(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1);
    cr_expect_eq(atoll(rep->element[0]->str), o2);
    freeReplyObject(rep);
    /* Nothing went to the dead letters. */
    expect_str("dead letters", qv(e.r, "SELECT count(*) FROM walcast_dead_letters"), "0");

    run_check(&e, 2);

    /* The oracle is not vacuous: an event applied twice on each sink is two mismatches. */
    wct_sql(e.read_dsn, "UPDATE customer_ltv SET lifetime_value = lifetime_value + 21.30");
    freeReplyObject(redisCommand(e.redis, "ZINCRBY ltv:leaderboard 21.30 %lld", cust));
    char *cmd = xprintf("'%s/examples/orders/check.sh' 2>&1", wct_source_dir()), *out = NULL;
    cr_expect_eq(wct_run(cmd, &out), 1, "check.sh should fail on planted mismatches:\n%s", out);
    cr_expect(strstr(out, "mismatches=2") != NULL, "%s", out);
    free(out);
    free(cmd);
    teardown_env(&e);
}

Test(orders, random_workload_then_check)
{
    struct orders_env e;
    setup_env(&e, 14);
    long long t0 = now_ms();
    pid_t wl = start_workload(&e, WORKLOAD, 0.25);
    finish_workload(&e, wl, 90000);
    cr_log_info("%d commands in %lld ms", WORKLOAD, now_ms() - t0);
    wait_caught_up(&e, 60000);
    run_check(&e, WORKLOAD / 3);
    teardown_env(&e);
}

Test(orders, kill_9_during_workload_then_check)
{
    struct orders_env e;
    setup_env(&e, 15);
    e.supervise = 1;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    /* Five kill points, as outbox positions spread over the workload (sorted). */
    long long at[5];
    for (int i = 0; i < 5; i++)
        at[i] = WORKLOAD / 20 + rand() % (WORKLOAD * 17 / 20);
    for (int i = 1; i < 5; i++)
        for (int j = i; j > 0 && at[j] < at[j - 1]; j--) {
            long long t = at[j];
            at[j] = at[j - 1];
            at[j - 1] = t;
        }
    cr_log_info("kill -9 seed %u at outbox events %lld %lld %lld %lld %lld", seed, at[0], at[1], at[2], at[3], at[4]);

    pid_t wl = start_workload(&e, WORKLOAD, -0.5);
    int kills = 0, st, done = 0;
    long long started = now_ms(), applied_at_start = 0;
    long long deadline = now_ms() + 90000;
    while (kills < 5) {
        cr_assert(now_ms() < deadline, "only %d kills in time", kills);
        if (!done && waitpid(wl, &st, WNOHANG) == wl) {
            done = 1;
            cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "workload failed (status 0x%x)", st);
        }
        long long events = qll(e.w, "SELECT coalesce(max(event_id), 0) FROM public.domain_events");
        /* Kill a walcast that is applying, not one still starting: wait until it has applied something
         * since its restart (or 2 s passed). After the workload the remaining kills land while walcast
         * is still catching up. */
        long long applied_now = qll(e.r, "SELECT count(*) FROM order_summary");
        int working = applied_now > applied_at_start || now_ms() - started > 2000;
        if ((events >= at[kills] || done) && working) {
            if (e.pid > 0) {
                kill(e.pid, SIGKILL);
                waitpid(e.pid, NULL, 0);
                e.pid = 0;
            }
            long long applied = qll(e.r, "SELECT count(*) FROM order_summary");
            cr_log_info("kill -9 #%d at outbox event %lld (order_summary rows %lld)%s", kills + 1, events, applied,
                        done ? " after the workload" : "");
            kills++;
            sleep_ms(rand() % 300);
            start_walcast(&e);
            started = now_ms();
            applied_at_start = applied;
            if (done)
                sleep_ms(200 + rand() % 500);
        }
        ensure_running(&e);
        sleep_ms(10);
    }
    if (!done)
        finish_workload(&e, wl, 90000);
    cr_log_info("workload done; %d kills, %d unexpected restarts", kills, e.restarts);
    wait_caught_up(&e, 60000);
    run_check(&e, WORKLOAD / 3);
    teardown_env(&e);
}
