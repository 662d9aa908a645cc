/* orders_env.c - the order example as a test fixture (see orders_env.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../sinks/redis/cluster.h"
#include "opsutil.h"
#include "orders_env.h"

long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

char *xprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    va_end(ap);
    return s;
}

char *read_text(const char *path)
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

void load_sql(const char *dsn, const char *file)
{
    char *path = xprintf("%s/examples/orders/%s", wct_source_dir(), file);
    char *sql = read_text(path);
    wct_sql(dsn, sql);
    free(sql);
    free(path);
}

char *qv(PGconn *c, const char *fmt, ...)
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

long long qll(PGconn *c, const char *sql)
{
    char *v = qv(c, "%s", sql);
    long long n = v ? atoll(v) : 0;
    free(v);
    return n;
}

/* A Redis reply as a string (NULL for nil). */
/* The second argument (the key) of a RESP command, for routing: a pointer into cmd and its length. */
static const char *resp_key(const char *cmd, size_t *len)
{
    const char *p = strchr(cmd, '\n'); /* *N */
    for (int i = 0; i < 2 && p != NULL; i++) {
        long n = strtol(p + 2, NULL, 10); /* $len */
        const char *data = strchr(p + 1, '\n') + 1;
        if (i == 1) {
            *len = (size_t)n;
            return data;
        }
        p = data + n + 1;
    }
    *len = 0;
    return "";
}

char *rv(struct orders_env *e, const char *fmt, ...)
{
    va_list ap;
    redisReply *rep = NULL;
    va_start(ap, fmt);
    if (e->cl != NULL) {
        char *cmd;
        int n = redisvFormatCommand(&cmd, fmt, ap);
        size_t klen;
        const char *key = resp_key(cmd, &klen);
        struct wc_err err = {0};
        cr_assert(n > 0);
        cr_assert_eq(
            redis_cluster_pipeline(e->cl, redis_cluster_keyslot(key, klen), cmd, (size_t)n, 1, &rep, &err), 0,
            "redis cluster: %s", err.msg);
        free(cmd);
    } else {
        rep = redisvCommand(e->redis, fmt, ap);
    }
    va_end(ap);
    cr_assert(rep != NULL, "redis: %s", e->redis ? e->redis->errstr : "?");
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

void start_walcast(struct orders_env *e)
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

void dump_log(struct orders_env *e)
{
    char *cmd = xprintf("tail -n 30 '%s' 2>/dev/null", e->log), *out = NULL;
    wct_run(cmd, &out);
    cr_log_error("walcast log (%s):\n%s", e->log, out ? out : "");
    free(out);
    free(cmd);
}

/* Is walcast still running? Restarts it when supervising, fails the test otherwise. */
void ensure_running(struct orders_env *e)
{
    int st;
    if (e->pid <= 0 || waitpid(e->pid, &st, WNOHANG) != e->pid)
        return;
    e->pid = 0;
    if (!e->supervise) {
        dump_log(e);
        cr_assert_fail("walcast run exited (status 0x%x)", st);
    }
    if (++e->restarts >= 100) {
        dump_log(e);
        cr_assert_fail("walcast keeps exiting (last status 0x%x)", st);
    }
    sleep_ms(100);
    start_walcast(e);
}

/* Server notices on the test's own connections ("terminating connection due to immediate shutdown"
 * when a test restarts a server) are expected: keep them out of the test output. */
static void ignore_notice(void *arg, const char *message) {}

static void quiet(PGconn *c)
{
    PQsetNoticeProcessor(c, ignore_notice, NULL);
}

int stop_walcast(struct orders_env *e, int sig)
{
    int st;
    if (e->pid <= 0)
        return -1;
    kill(e->pid, sig);
    for (int i = 0; i < 100; i++) {
        if (waitpid(e->pid, &st, WNOHANG) == e->pid) {
            e->pid = 0;
            return st;
        }
        sleep_ms(50);
    }
    kill(e->pid, SIGKILL);
    waitpid(e->pid, NULL, 0);
    e->pid = 0;
    return -1;
}

char *create_read_db(const char *prefix)
{
    const char *server = getenv("WALCAST_TEST_READ_PG_DSN");
    if (server == NULL || *server == '\0') {
        cr_log_warn("WALCAST_TEST_READ_PG_DSN is not set (services.sh from before the read instance?): "
                    "the read database goes to the source instance");
        return wct_create_db(prefix);
    }
    char *name = wct_unique(prefix), *sql = xprintf("CREATE DATABASE %s", name);
    wct_sql(server, sql);
    char *dsn = xprintf("%s dbname=%s", server, name);
    free(sql);
    free(name);
    return dsn;
}

static struct redis_cluster *test_cluster(void)
{
    const char *seeds = getenv("WALCAST_TEST_REDIS_CLUSTER");
    struct wc_err err = {0};
    cr_assert(seeds != NULL && *seeds,
              "WALCAST_TEST_REDIS_CLUSTER is not set: these tests need the Redis Cluster "
              "of scripts/services.sh start DIR --cluster");
    char *dsn = xprintf("redis://%s", seeds);
    struct redis_cluster *cl = redis_cluster_new("test", dsn, &err);
    cr_assert_not_null(cl, "%s", err.msg);
    free(dsn);
    return cl;
}

void flush_cluster(void)
{
    struct redis_cluster *cl = test_cluster();
    struct wc_err err = {0};
    const char *argv[1] = {"FLUSHALL"};
    cr_assert_eq(redis_cluster_refresh(cl, &err), 0, "%s", err.msg);
    for (int i = 0; i < cl->map.nnode; i++) {
        redisReply *r = redis_cluster_node_command(cl, i, 1, argv, NULL, &err);
        cr_assert(r != NULL && r->type == REDIS_REPLY_STATUS, "FLUSHALL: %s", r ? r->str : err.msg);
        freeReplyObject(r);
    }
    redis_cluster_free(cl);
}

static void setup_common(struct orders_env *e, const char *config, const char *url);

void setup_env_cluster(struct orders_env *e)
{
    memset(e, 0, sizeof(*e));
    flush_cluster();
    e->cl = test_cluster();
    char *url = xprintf("redis://%s", getenv("WALCAST_TEST_REDIS_CLUSTER"));
    setup_common(e, "walcast-cluster.yaml", url);
    free(url);
    start_walcast(e);
}

void setup_env_unstarted(struct orders_env *e, int db)
{
    memset(e, 0, sizeof(*e));
    e->db = db;
    e->redis = wct_redis(db);
    freeReplyObject(redisCommand(e->redis, "FLUSHDB"));
    char *url = xprintf("redis://127.0.0.1:%d/%d", wct_redis_port(), db);
    setup_common(e, "walcast.yaml", url);
    free(url);
}

void setup_env(struct orders_env *e, int db)
{
    setup_env_unstarted(e, db);
    start_walcast(e);
}

static void setup_common(struct orders_env *e, const char *config, const char *url)
{
    e->write_dsn = wct_create_db("orders_w");
    /* Write and read databases on different servers, as in production (and so that either can be
     * restarted alone). */
    e->read_dsn = create_read_db("orders_r");
    load_sql(e->write_dsn, "write.sql");
    load_sql(e->read_dsn, "read.sql");
    e->config = xprintf("%s/examples/orders/%s", wct_source_dir(), config);
    e->dir = wct_tmpdir();
    e->log = xprintf("%s/walcast.log", e->dir);
    e->slot = wct_unique("orders_slot");
    e->w = wct_pg_connect(e->write_dsn);
    e->r = wct_pg_connect(e->read_dsn);
    quiet(e->w);
    quiet(e->r);

    /* walcast connects with its own least-privilege role; check.sh reads as postgres. */
    char *src = xprintf("%s user=walcast", e->write_dsn), *rd = xprintf("%s user=walcast", e->read_dsn);
    setenv("WALCAST_SOURCE_DSN", src, 1);
    setenv("WALCAST_SOURCE_SLOT", e->slot, 1);
    setenv("WALCAST_SINKS_READDB_DSN", rd, 1);
    setenv("WALCAST_SINKS_CACHE_DSN", url, 1);
    /* The example serves metrics on 127.0.0.1:9187: each fixture on a port of its own (unless the test
     * chose one). */
    if (getenv("WALCAST_METRICS_LISTEN") == NULL) {
        char *listen = xprintf("127.0.0.1:%d", ops_free_port());
        setenv("WALCAST_METRICS_LISTEN", listen, 1);
        free(listen);
    }
    setenv("CHECK_WRITE_DSN", e->write_dsn, 1);
    setenv("CHECK_READ_DSN", e->read_dsn, 1);
    setenv("CHECK_REDIS_URL", url, 1);
    free(src);
    free(rd);

    char *cmd = xprintf("'%s' slot create -c '%s' 2>&1", wct_walcast(), e->config), *out = NULL;
    int rc = wct_run(cmd, &out);
    cr_assert_eq(rc, 0, "walcast slot create failed (%d): %s", rc, out);
    free(out);
    free(cmd);
}

void teardown_env(struct orders_env *e)
{
    stop_walcast(e, SIGTERM);
    /* WALCAST_TEST_SHOW_LOG=1: print walcast's whole log (to see what it said through a fault). */
    if (getenv("WALCAST_TEST_SHOW_LOG")) {
        char *log = read_text(e->log);
        cr_log_info("walcast log:\n%s", log);
        free(log);
    }
    /* Drop the slot so it does not pin WAL; the walsender may take a moment to let go of it. */
    for (int i = 0; i < 100; i++) {
        char *left =
            qv(e->w,
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
    if (e->redis)
        redisFree(e->redis);
    redis_cluster_free(e->cl);
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
void wait_order(struct orders_env *e, long long id, const char *status, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        char *pg = qv(e->r, "SELECT status FROM order_summary WHERE order_id = %lld", id);
        char *rs;
        if (e->cl != NULL) { /* walcast-cluster.yaml: order:{<customer>}:<id> */
            char *cust = qv(e->w, "SELECT customer_id FROM shop.orders WHERE id = %lld", id);
            rs = rv(e, "HGET order:{%s}:%lld status", cust ? cust : "?", id);
            free(cust);
        } else {
            rs = rv(e, "HGET order:%lld status", id);
        }
        int ok = pg && rs && strcmp(pg, status) == 0 && strcmp(rs, status) == 0;
        if (!ok && now_ms() > deadline) {
            dump_log(e);
            cr_assert_fail(
                "order %lld did not become %s in both sinks within %d ms (order_summary: %s, redis: %s)", id,
                status, timeout_ms, pg ? pg : "none", rs ? rs : "none");
        }
        free(pg);
        free(rs);
        if (ok)
            return;
        ensure_running(e);
        sleep_ms(20);
    }
}

long long place(struct orders_env *e, long long customer, const char *items)
{
    char *v = qv(e->w, "SELECT shop.place_order(%lld, '%s')", customer, items);
    cr_assert(v != NULL);
    long long id = atoll(v);
    free(v);
    return id;
}

void command(struct orders_env *e, const char *sql)
{
    PGresult *res = PQexec(e->w, sql);
    cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s",
              sql, PQerrorMessage(e->w));
    PQclear(res);
}

/* The error of a command that must fail (new string). */
char *command_error(struct orders_env *e, const char *sql)
{
    PGresult *res = PQexec(e->w, sql);
    cr_assert(PQresultStatus(res) == PGRES_FATAL_ERROR, "%s should have failed", sql);
    char *msg = strdup(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
    PQclear(res);
    return msg;
}

void expect_str(const char *what, char *got, const char *want)
{
    cr_expect(got != NULL && strcmp(got, want) == 0, "%s: expected %s, got %s", what, want ? want : "(nil)",
              got ? got : "(nil)");
    free(got);
}

void expect_nil(const char *what, char *got)
{
    cr_expect(got == NULL, "%s: expected nothing, got %s", what, got);
    free(got);
}

void expect_num(const char *what, char *got, double want)
{
    cr_expect(got != NULL && fabs(strtod(got, NULL) - want) < 0.005, "%s: expected %.2f, got %s", what, want,
              got ? got : "(nil)");
    free(got);
}

/* A write-side timestamp of order id as the events carry it (ISO 8601 ms 'Z') or as epoch ms. */
char *w_iso(struct orders_env *e, long long id, const char *col)
{
    return qv(e->w, "SELECT shop.iso_ms(%s) FROM shop.orders WHERE id = %lld", col, id);
}

char *w_ms(struct orders_env *e, long long id, const char *col)
{
    return qv(e->w, "SELECT (extract(epoch FROM %s) * 1000)::bigint FROM shop.orders WHERE id = %lld", col,
              id);
}

char *r_iso(struct orders_env *e, long long id, const char *col)
{
    return qv(e->r,
              "SELECT to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM order_summary"
              " WHERE order_id = %lld",
              col, id);
}

/* Both sinks hold order id exactly as the write side has it (status-dependent Redis sets included). */
void expect_order(struct orders_env *e, long long id)
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

void expect_ltv(struct orders_env *e, long long customer, const char *value, const char *orders)
{
    expect_str("customer_ltv.lifetime_value",
               qv(e->r, "SELECT lifetime_value FROM customer_ltv WHERE customer_id = %lld", customer), value);
    expect_str("customer_ltv.orders",
               qv(e->r, "SELECT orders FROM customer_ltv WHERE customer_id = %lld", customer), orders);
    /* The leaderboard keeps cents: exactly the decimal's digits, no double in between. */
    char cents[64];
    const char *dot = strchr(value, '.');
    long long whole = atoll(value), frac = dot ? atoll(dot + 1) * (dot[1] && !dot[2] ? 10 : 1) : 0;
    snprintf(cents, sizeof(cents), "%lld", whole * 100 + (value[0] == '-' ? -frac : frac));
    expect_str("ltv:leaderboard score (cents)", rv(e, "ZSCORE ltv:leaderboard %lld", customer), cents);
}

void run_check(struct orders_env *e, long long min_orders)
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
void wait_caught_up(struct orders_env *e, int timeout_ms)
{
    long long t0 = now_ms();
    long long marker = place(e, 1, "[{\"sku\": \"MARKER\", \"qty\": 1, \"unit_price\": 1.00}]");
    wait_order(e, marker, "placed", timeout_ms);
    cr_log_info("caught up with marker order %lld in %lld ms", marker, now_ms() - t0);
}

pid_t start_workload(struct orders_env *e, int n, double seed)
{
    char *call = xprintf("CALL shop.run_workload(%d, %.6f)", n, seed);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execlp("psql", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", e->write_dsn, "-c", call,
               (char *)NULL);
        _exit(127);
    }
    free(call);
    return pid;
}

/* Wait for the workload; supervise walcast meanwhile. */
void finish_workload(struct orders_env *e, pid_t wl, int timeout_ms)
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

/* Connect, retrying until timeout_ms has passed (a server that is restarting); NULL then. */
PGconn *connect_retry(const char *dsn, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        PGconn *c = PQconnectdb(dsn);
        if (PQstatus(c) == CONNECTION_OK) {
            quiet(c);
            return c;
        }
        PQfinish(c);
        if (now_ms() > deadline)
            return NULL;
        sleep_ms(100);
    }
}

void reconnect_env(struct orders_env *e, int timeout_ms)
{
    /* A cheap round trip tells whether a connection survived a restart. */
    PGresult *res = PQexec(e->r, "SELECT 1");
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    if (!ok) {
        PQfinish(e->r);
        e->r = connect_retry(e->read_dsn, timeout_ms);
        cr_assert(e->r != NULL, "the read database did not come back within %d ms", timeout_ms);
    }
    res = PQexec(e->w, "SELECT 1");
    ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    if (!ok) {
        PQfinish(e->w);
        e->w = connect_retry(e->write_dsn, timeout_ms);
        cr_assert(e->w != NULL, "the write database did not come back within %d ms", timeout_ms);
    }
    if (e->cl != NULL)
        return; /* the cluster's connections come back by themselves */
    redisReply *rep = e->redis ? redisCommand(e->redis, "PING") : NULL;
    ok = rep != NULL && rep->type == REDIS_REPLY_STATUS;
    if (rep)
        freeReplyObject(rep);
    if (!ok) {
        if (e->redis)
            redisFree(e->redis);
        e->redis = NULL;
        long long deadline = now_ms() + timeout_ms;
        for (;;) {
            redisContext *c = redisConnect("127.0.0.1", wct_redis_port());
            if (c && !c->err) {
                redisReply *sel = redisCommand(c, "SELECT %d", e->db);
                int good = sel && sel->type == REDIS_REPLY_STATUS;
                if (sel)
                    freeReplyObject(sel);
                if (good) {
                    e->redis = c;
                    break;
                }
            }
            if (c)
                redisFree(c);
            cr_assert(now_ms() < deadline, "redis did not come back within %d ms", timeout_ms);
            sleep_ms(100);
        }
    }
}

long long outbox_events(struct orders_env *e)
{
    PGresult *res = PQexec(e->w, "SELECT count(*) FROM public.domain_events");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        PQclear(res);
        reconnect_env(e, 60000);
        res = PQexec(e->w, "SELECT count(*) FROM public.domain_events");
    }
    cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "outbox count: %s", PQerrorMessage(e->w));
    long long n = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    return n;
}

/* The resilient workload's child: no Criterion assertions here (they would end the child silently). */
static int resilient_workload(const char *dsn, long long events, int chunk, int pause_ms)
{
    PGconn *c = NULL;
    long long done = -1;
    srandom((unsigned)getpid() ^ (unsigned)now_ms());
    for (;;) {
        if (c == NULL || PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = connect_retry(dsn, 60000);
            if (c == NULL) {
                fprintf(stderr, "resilient workload: the source stayed away for 60 s\n");
                return 1;
            }
            done = -1;
        }
        if (done < 0) {
            /* What committed is what the outbox holds: one row per committed command. */
            PGresult *res = PQexec(c, "SELECT count(*) FROM public.domain_events");
            if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                PQclear(res);
                PQfinish(c);
                c = NULL;
                sleep_ms(100);
                continue;
            }
            done = atoll(PQgetvalue(res, 0, 0));
            PQclear(res);
        }
        if (done >= events)
            break;
        long long n = events - done < chunk ? events - done : chunk;
        char sql[128];
        snprintf(sql, sizeof(sql), "CALL shop.run_workload(%lld, NULL)", n);
        PGresult *res = PQexec(c, sql);
        if (PQresultStatus(res) == PGRES_COMMAND_OK) {
            done += n;
            if (pause_ms > 0)
                sleep_ms(pause_ms);
        } else {
            /* Lost mid-chunk (or refused while the server shuts down): count again after a reconnect. */
            fprintf(stderr, "resilient workload: chunk failed, retrying: %s", PQerrorMessage(c));
            PQfinish(c);
            c = NULL;
            sleep_ms(100);
        }
        PQclear(res);
    }
    PQfinish(c);
    return 0;
}

pid_t start_resilient_workload(struct orders_env *e, long long events, int chunk, int pause_ms)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char *log = xprintf("%s/workload.log", e->dir);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        _exit(resilient_workload(e->write_dsn, events, chunk, pause_ms));
    }
    return pid;
}

long long services_run(const char *cmd, const char *arg)
{
    const char *dir = getenv("WALCAST_TEST_DIR");
    cr_assert(dir != NULL && *dir, "WALCAST_TEST_DIR is not set: start the servers with scripts/services.sh");
    char *sh =
             xprintf("'%s/scripts/services.sh' %s '%s' %s 2>&1", wct_source_dir(), cmd, dir, arg ? arg : ""),
         *out = NULL;
    long long t0 = now_ms();
    int rc = wct_run(sh, &out);
    cr_assert_eq(rc, 0, "services.sh %s %s failed (%d): %s", cmd, arg ? arg : "", rc, out);
    free(out);
    free(sh);
    return now_ms() - t0;
}

int log_count(struct orders_env *e, const char *text)
{
    FILE *f = fopen(e->log, "r");
    if (f == NULL)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (getline(&line, &cap, f) >= 0)
        if (strstr(line, text))
            n++;
    free(line);
    fclose(f);
    return n;
}

int log_has_line(struct orders_env *e, const char *a, const char *b)
{
    FILE *f = fopen(e->log, "r");
    if (f == NULL)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (getline(&line, &cap, f) >= 0)
        if (strstr(line, a) && (b == NULL || strstr(line, b)))
            n++;
    free(line);
    fclose(f);
    return n;
}

int sanitized_pass(void)
{
    const char *v = getenv("WALCAST_TEST_SANITIZED");
    return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

/* The paced workload's child: CALL shop.run_workload in small steps so that the outbox grows at rate
 * commands per second, until killed; reconnects when the source goes away. One connection (the workload's
 * commands are not made to run side by side): on a small, busy machine it may fall short of rate. */
struct pacer {
    const char *dsn;
    int rate;
};

static void *paced_workload(void *arg)
{
    const struct pacer *p = arg;
    PGconn *c = NULL;
    long long t0 = now_ms(), done = 0;
    for (;;) {
        if (c == NULL || PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = connect_retry(p->dsn, 60000);
            if (c == NULL) {
                fprintf(stderr, "paced workload: the source stayed away for 60 s\n");
                _exit(1);
            }
        }
        long long due = (now_ms() - t0) * p->rate / 1000 - done;
        if (due < 10) {
            sleep_ms(10);
            continue;
        }
        if (due > 200)
            due = 200;
        char sql[96];
        snprintf(sql, sizeof(sql), "CALL shop.run_workload(%lld, NULL)", due);
        PGresult *res = PQexec(c, sql);
        if (PQresultStatus(res) == PGRES_COMMAND_OK) {
            done += due;
        } else {
            fprintf(stderr, "paced workload: call failed, retrying: %s", PQerrorMessage(c));
            PQfinish(c);
            c = NULL;
            sleep_ms(100);
        }
        PQclear(res);
    }
    return NULL;
}

#define PACERS 1

pid_t start_paced_workload(struct orders_env *e, int rate)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char *log = xprintf("%s/workload.log", e->dir);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        struct pacer p = {e->write_dsn, rate / PACERS > 0 ? rate / PACERS : 1};
        pthread_t t[PACERS];
        for (int i = 0; i < PACERS; i++)
            pthread_create(&t[i], NULL, paced_workload, &p);
        for (int i = 0; i < PACERS; i++)
            pthread_join(t[i], NULL);
        _exit(0);
    }
    return pid;
}

void stop_workload(pid_t wl)
{
    int st;
    kill(wl, SIGTERM);
    waitpid(wl, &st, 0);
}

void wait_workload_ended(struct orders_env *e)
{
    for (int i = 0; i < 3000; i++) {
        if (qll(e->w, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CALL shop.run_workload%' AND "
                      "pid <> pg_backend_pid() AND state = 'active'") == 0)
            return;
        sleep_ms(10);
    }
    cr_assert_fail("the workload's last CALL did not end on the server within 30 s of its client");
}

char *sink_cursor(struct orders_env *e, const char *sink)
{
    if (strcmp(sink, "cache") == 0)
        return rv(e, "HGET walcast:cursor:%s cache", e->slot);
    return qv(e->r, "SELECT lsn::text || ':' || idx FROM walcast_cursor WHERE slot = '%s' AND sink = '%s'",
              e->slot, sink);
}
