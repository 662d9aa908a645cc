/* test_redis_units.c - `walcast run` into Redis end to end: an event's writes all or nothing across
 * kill -9, dead letters bounded, a Redis that refuses writes (maxmemory) said clearly. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "walcast/lsn.h"

struct env {
    char *src;
    char *slot;
    char *dir;
    char *config;
    char *log;
    int port; /* redis */
    int db;
    redisContext *r;
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

/* Sanitizer runs hold faults for a fraction of the time (scripts/test.sh sets the variable). */
static int sanitized(void)
{
    return getenv("WALCAST_TEST_SANITIZED") != NULL;
}

/* A source database with an outbox and a slot; a configuration with one redis sink at port/db and the
 * given engine lines and projections (YAML under "projections:"). */
static void setup(struct env *e, int port, int db, const char *engine, const char *projections)
{
    memset(e, 0, sizeof(*e));
    e->slot = wct_unique("units");
    e->src = wct_create_db("unitsrc");
    e->dir = wct_tmpdir();
    e->port = port;
    e->db = db;
    wct_sql(e->src,
            "CREATE TABLE domain_events (event_id bigserial PRIMARY KEY, aggregate_type text NOT NULL, "
            "aggregate_id text NOT NULL, event_type text NOT NULL, payload jsonb NOT NULL, "
            "occurred_at timestamptz NOT NULL DEFAULT now())");
    char *sql = fmt("SELECT pg_create_logical_replication_slot('%s', 'wal2json')", e->slot);
    wct_sql(e->src, sql);
    free(sql);
    e->config = fmt("%s/walcast.yaml", e->dir);
    e->log = fmt("%s/walcast.log", e->dir);
    FILE *f = fopen(e->config, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "source:\n"
            "  dsn: \"%s\"\n"
            "  slot: %s\n"
            "engine:\n"
            "  batch_max_events: 50\n"
            "  retry_base_ms: 50\n"
            "  retry_max_ms: 200\n"
            "%s"
            "sinks:\n"
            "  cache:\n"
            "    type: redis\n"
            "    dsn: \"redis://127.0.0.1:%d/%d\"\n"
            "projections:\n"
            "%s",
            e->src, e->slot, engine, port, db, projections);
    fclose(f);
    e->r = redisConnect("127.0.0.1", port);
    cr_assert(e->r && !e->r->err);
    freeReplyObject(redisCommand(e->r, "SELECT %d", db));
    freeReplyObject(redisCommand(e->r, "FLUSHDB"));
}

static void teardown(struct env *e)
{
    char *sql = fmt("SELECT pg_drop_replication_slot('%s')", e->slot);
    wct_sql(e->src, sql);
    free(sql);
    redisFree(e->r);
    sql = fmt("rm -rf '%s'", e->dir);
    wct_run(sql, NULL);
    free(sql);
    free(e->src);
    free(e->slot);
    free(e->dir);
    free(e->config);
    free(e->log);
}

static pid_t start_run(struct env *e)
{
    char *cmd = fmt("exec %s run -c %s 2>>%s", wct_walcast(), e->config, e->log);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    free(cmd);
    return pid;
}

static int stop_run(pid_t pid, int sig)
{
    int status;
    kill(pid, sig);
    long long deadline = now_ms() + 10000;
    while (now_ms() < deadline) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

static char *redis_str(struct env *e, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    redisReply *r = redisvCommand(e->r, f, ap);
    va_end(ap);
    cr_assert_not_null(r, "redis: %s", e->r->errstr);
    char *out = r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR
                    ? strdup(r->str)
                : r->type == REDIS_REPLY_INTEGER ? fmt("%lld", r->integer)
                                                 : strdup("(nil)");
    freeReplyObject(r);
    return out;
}

static long long redis_int(struct env *e, const char *f, const char *arg)
{
    char *v = redis_str(e, f, arg);
    long long n = atoll(v);
    free(v);
    return n;
}

/* Wait until the sink's cursor reaches the source's current WAL position. */
static int wait_applied(struct env *e, int timeout_ms)
{
    char *end = wct_sql_value(e->src, "SELECT pg_current_wal_lsn()");
    wc_lsn target;
    wc_lsn_parse(end, &target);
    free(end);
    long long deadline = now_ms() + timeout_ms;
    while (now_ms() < deadline) {
        char *c = redis_str(e, "HGET walcast:cursor:%s cache", e->slot);
        struct wc_pos p;
        int ok = wc_pos_parse(c, &p) == 0 && p.lsn >= target;
        free(c);
        if (ok)
            return 1;
        usleep(20000);
    }
    return 0;
}

static char *log_text(struct env *e)
{
    char *cmd = fmt("cat %s", e->log), *out;
    wct_run(cmd, &out);
    free(cmd);
    return out;
}

static int count_of(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

TestSuite(redis_units, .timeout = 240);

/*
 * Every 10th event meets a key of the wrong type on its second command. walcast is killed (-9) again and
 * again while batches commit, so that kills land before, during and after EXECs. Whatever the timing:
 * the good events are applied exactly once, the bad ones not at all, each bad one has exactly one dead
 * letter; once the key is fixed, dlq retry applies each bad event once and removes its dead letter.
 */
Test(redis_units, wrongtype_mid_event_across_kill_9_and_retry)
{
    struct env e;
    setup(&e, wct_redis_port(), 13, "",
          "  p:\n"
          "    sink: cache\n"
          "    on:\n"
          "      E:\n"
          "        - [HINCRBY, totals, all, \"{payload.n}\"]\n"
          "        - [ZADD, \"{payload.key}\", \"{payload.n}\", \"{payload.id}\"]\n"
          "        - [INCR, count]\n");
    freeReplyObject(redisCommand(e.r, "SET str notazset"));
    const int txns = sanitized() ? 10 : 30, per = 50;
    long long good_sum = 0, all_sum = 0, good = 0, bad = 0;
    pid_t pid = start_run(&e);
    int kills = 0;
    for (int t = 0; t < txns; t++) {
        /* n = id % 7 + 1; every 10th event aims at the string key */
        char *sql = fmt("INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) "
                        "SELECT 'o', i::text, 'E', jsonb_build_object('id', i, 'n', i %% 7 + 1, 'key', "
                        "CASE WHEN i %% 10 = 0 THEN 'str' ELSE 'z' END) FROM generate_series(%d, %d) i",
                        t * per + 1, (t + 1) * per);
        wct_sql(e.src, sql);
        free(sql);
        for (int i = t * per + 1; i <= (t + 1) * per; i++) {
            all_sum += i % 7 + 1;
            if (i % 10 == 0)
                bad++;
            else
                good++, good_sum += i % 7 + 1;
        }
        if (t % 3 == 1) {
            usleep((useconds_t)(rand() % 40000));
            cr_assert_eq(stop_run(pid, SIGKILL), 128 + SIGKILL);
            kills++;
            pid = start_run(&e);
        }
    }
    cr_assert(wait_applied(&e, 60000), "walcast caught up:\n%s", log_text(&e));
    cr_assert_eq(stop_run(pid, SIGTERM), 0);
    cr_assert_geq(kills, 3);

    cr_assert_eq(redis_int(&e, "HGET totals %s", "all"), good_sum, "each good event applied exactly once");
    cr_assert_eq(redis_int(&e, "GET %s", "count"), good, "no command of a bad event applied");
    cr_assert_eq(redis_int(&e, "ZCARD %s", "z"), good);
    char *key = fmt("walcast:dead_letters:%s", e.slot);
    cr_assert_eq(redis_int(&e, "XLEN %s", key), bad, "one dead letter per bad event, none lost or doubled");

    /* Fixed by hand, retried: every bad event applied once, its dead letter gone with it. */
    freeReplyObject(redisCommand(e.r, "DEL str"));
    char *cmd = fmt("%s dlq retry -c %s 2>&1", wct_walcast(), e.config), *out = NULL;
    int rc = wct_run(cmd, &out);
    cr_assert_eq(rc, 0, "dlq retry: %s", out);
    free(out);
    free(cmd);
    cr_assert_eq(redis_int(&e, "HGET totals %s", "all"), all_sum, "sums exact after the retry");
    cr_assert_eq(redis_int(&e, "GET %s", "count"), good + bad);
    cr_assert_eq(redis_int(&e, "ZCARD %s", "str"), bad);
    cr_assert_eq(redis_int(&e, "XLEN %s", key), 0);
    free(key);
    teardown(&e);
}

/* A free loopback port for a redis-server of the test's own. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static pid_t start_redis(int port, const char *dir)
{
    pid_t pid = fork();
    if (pid == 0) {
        char p[16];
        snprintf(p, sizeof(p), "%d", port);
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--maxmemory", "4mb",
               "--maxmemory-policy", "noeviction", "--save", "", "--appendonly", "no", "--dir", dir,
               (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        redisContext *c = redisConnect("127.0.0.1", port);
        int ok = c && !c->err;
        redisFree(c);
        if (ok)
            return pid;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    cr_fatal("redis-server on port %d did not start", port);
    return -1;
}

/*
 * A Redis at a small maxmemory and a projection that fails on every other event: the dead letters stay
 * within engine.dead_letter_max (without it they would fill the 4 MB). Then Redis is filled by someone
 * else: every unit is refused (OOM), and walcast says so as an error naming the cause and the fix, once
 * (not once per retry), without moving on; memory freed, it catches up with nothing lost or doubled.
 */
Test(redis_units, dead_letters_bounded_and_oom_said_clearly)
{
    struct env e;
    int port = free_port();
    char *dir = wct_tmpdir();
    pid_t redis = start_redis(port, dir);
    setup(&e, port, 0, "  dead_letter_max: 50\n",
          "  p:\n"
          "    sink: cache\n"
          "    on:\n"
          "      Good:\n"
          "        - [INCR, good]\n"
          "      Bad:\n"
          "        - [HSET, \"h:{payload.missing}\", a, b]\n");
    pid_t pid = start_run(&e);
    /* 2,000 bad events of ~4 KB: 8 MB of dead letters if nothing trimmed them. */
    wct_sql(e.src, "INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) "
                   "SELECT 'o', i::text, CASE WHEN i % 2 = 0 THEN 'Good' ELSE 'Bad' END, "
                   "jsonb_build_object('pad', repeat('x', 4000)) FROM generate_series(1, 4000) i");
    cr_assert(wait_applied(&e, 60000), "walcast caught up:\n%s", log_text(&e));
    char *key = fmt("walcast:dead_letters:%s", e.slot);
    long long xlen = redis_int(&e, "XLEN %s", key);
    cr_assert(xlen >= 50 && xlen <= 200, "dead letters bounded: %lld", xlen);
    cr_assert_eq(redis_int(&e, "GET %s", "good"), 2000);

    /* Someone fills Redis: walcast's units are refused. */
    redisReply *r = redisCommand(e.r, "SETRANGE filler %d x", 4 * 1024 * 1024);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER, "%s", r && r->str ? r->str : "");
    freeReplyObject(r);
    wct_sql(e.src, "INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) "
                   "SELECT 'o', i::text, 'Good', '{}' FROM generate_series(1, 100) i");
    long long t0 = now_ms();
    char *log = NULL;
    while (now_ms() - t0 < 10000) {
        free(log);
        log = log_text(&e);
        if (strstr(log, "out of memory"))
            break;
        usleep(50000);
    }
    usleep(sanitized() ? 500000 : 2000000); /* retries go on meanwhile */
    free(log);
    log = log_text(&e);
    cr_assert_eq(count_of(log, "error: sink \"cache\": redis at"), 1,
                 "one error line, not one per retry:\n%s", log);
    cr_assert(strstr(log, "OOM command not allowed") && strstr(log, "raise maxmemory"), "cause and fix:\n%s",
              log);
    cr_assert_eq(redis_int(&e, "GET %s", "good"), 2000, "nothing applied while Redis refuses writes");
    free(log);

    freeReplyObject(redisCommand(e.r, "DEL filler"));
    cr_assert(wait_applied(&e, 30000), "walcast caught up after memory was freed:\n%s", log_text(&e));
    cr_assert_eq(redis_int(&e, "GET %s", "good"), 2100, "every event once");
    cr_assert_eq(stop_run(pid, SIGTERM), 0);
    free(key);
    teardown(&e);
    kill(redis, SIGTERM);
    waitpid(redis, NULL, 0);
    char *rm = fmt("rm -rf '%s'", dir);
    wct_run(rm, NULL);
    free(rm);
    free(dir);
}
