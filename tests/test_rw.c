/* test_rw.c - read your writes: a service waits until its own write is visible in a projection
 * (`walcast wait-lsn`), against the order example on the private servers. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "orders_env.h"

TestSuite(rw, .timeout = 120);

/* The writer's consistency token: pg_current_wal_insert_lsn() in its own session, right after COMMIT. */
static char *token(struct orders_env *e)
{
    char *lsn = qv(e->w, "SELECT pg_current_wal_insert_lsn()");
    cr_assert_not_null(lsn);
    return lsn;
}

/* `walcast wait-lsn LSN --sink SINK --timeout MS` (stdout and stderr into *out): its exit code, and how
 * long it took in *ms. */
static int wait_lsn(struct orders_env *e, const char *lsn, const char *sink, int timeout_ms, char **out,
                    long long *ms)
{
    char *cmd = xprintf("'%s' wait-lsn '%s' -c '%s' --sink %s --timeout %d 2>&1", wct_walcast(), lsn,
                        e->config, sink, timeout_ms);
    long long t0 = now_ms();
    int rc = wct_run(cmd, out);
    if (ms)
        *ms = now_ms() - t0;
    free(cmd);
    return rc;
}

static long long customer(struct orders_env *e, const char *email)
{
    char *sql = xprintf("INSERT INTO shop.customers (email, name) VALUES ('%s', 'RW')", email);
    command(e, sql);
    free(sql);
    char *id = qv(e->w, "SELECT id FROM shop.customers WHERE email = '%s'", email);
    long long v = atoll(id);
    free(id);
    return v;
}

/* A write then a wait: when the wait returns, a separate reader (a fresh connection, role reader on the
 * read database) already sees the write, in Redis and in PostgreSQL. */
Test(rw, write_then_wait_then_a_reader_sees_it)
{
    struct orders_env e;
    setup_env(&e, 13);
    long long cust = customer(&e, "rw1@example.com");
    char *out = NULL;

    for (int round = 0; round < 5; round++) {
        long long id = place(&e, cust, "[{\"sku\": \"A\", \"qty\": 1, \"unit_price\": 2.50}]");
        char *lsn = token(&e);

        cr_assert_eq(wait_lsn(&e, lsn, "cache", 20000, &out, NULL), 0, "wait-lsn cache: %s", out);
        cr_assert(strstr(out, "sink \"cache\": applied through ") != NULL, "%s", out);
        free(out);
        redisContext *rc = wct_redis(e.db);
        redisReply *r = redisCommand(rc, "HGET order:%lld status", id);
        cr_assert(r && r->type == REDIS_REPLY_STRING, "order %lld not in redis right after the wait", id);
        cr_expect_str_eq(r->str, "placed");
        freeReplyObject(r);
        redisFree(rc);

        cr_assert_eq(wait_lsn(&e, lsn, "readdb", 20000, &out, NULL), 0, "wait-lsn readdb: %s", out);
        free(out);
        char *rd = xprintf("%s user=reader", e.read_dsn);
        PGconn *reader = wct_pg_connect(rd);
        char *status = qv(reader, "SELECT status FROM order_summary WHERE order_id = %lld", id);
        cr_assert_not_null(status, "order %lld not in the read database right after the wait", id);
        cr_expect_str_eq(status, "placed");
        /* The reader may read the applied position itself (the recipe for a PostgreSQL-only service). */
        char *applied =
            qv(reader, "SELECT lsn >= '%s'::pg_lsn FROM walcast_cursor WHERE sink = 'readdb'", lsn);
        cr_expect_str_eq(applied, "t");
        free(applied);
        free(status);
        PQfinish(reader);
        free(rd);
        free(lsn);
    }
    /* A wait for a position already applied returns at once. */
    char *old = xprintf("0/1");
    long long ms;
    cr_assert_eq(wait_lsn(&e, old, "cache", 5000, &out, &ms), 0, "%s", out);
    free(out);
    cr_expect_lt(ms, 1000, "a wait for an applied position took %lld ms", ms);
    free(old);
    teardown_env(&e);
}

/* A commit that writes no outbox row produces no event: the stream's empty transactions and keepalives
 * move the applied position past it, within the status interval (source.status_interval_ms, 1 s). */
Test(rw, commit_to_another_table_returns_within_the_status_interval)
{
    struct orders_env e;
    setup_env(&e, 13);
    char *out = NULL;
    long long cust = customer(&e, "rw2@example.com");
    long long id = place(&e, cust, "[{\"sku\": \"A\", \"qty\": 1, \"unit_price\": 2.50}]");
    char *lsn = token(&e);
    cr_assert_eq(wait_lsn(&e, lsn, "cache", 20000, &out, NULL), 0, "%s", out);
    free(out);
    free(lsn);
    (void)id;

    for (int round = 0; round < 3; round++) {
        char *email = xprintf("other%d@example.com", round);
        customer(&e, email); /* shop.customers: no event */
        free(email);
        lsn = token(&e);
        long long ms_cache, ms_read;
        cr_assert_eq(wait_lsn(&e, lsn, "cache", 10000, &out, &ms_cache), 0, "cache: %s", out);
        free(out);
        cr_assert_eq(wait_lsn(&e, lsn, "readdb", 10000, &out, &ms_read), 0, "readdb: %s", out);
        free(out);
        cr_log_info("no-event commit %s: cache after %lld ms, readdb after %lld ms", lsn, ms_cache, ms_read);
        /* The status interval, and the time the command takes to start and connect. */
        cr_expect_lt(ms_cache, 1000 + 500, "cache: %lld ms", ms_cache);
        cr_expect_lt(ms_read, 1000 + 500, "readdb: %lld ms", ms_read);
        free(lsn);
    }
    teardown_env(&e);
}

/* walcast stopped: a wait times out (exit 1) and says how far the sink has applied; once walcast is back
 * the same wait returns. */
Test(rw, walcast_stopped_then_the_wait_times_out)
{
    struct orders_env e;
    setup_env(&e, 13);
    char *out = NULL;
    long long cust = customer(&e, "rw3@example.com");
    place(&e, cust, "[{\"sku\": \"A\", \"qty\": 1, \"unit_price\": 2.50}]");
    char *first = token(&e);
    cr_assert_eq(wait_lsn(&e, first, "cache", 20000, &out, NULL), 0, "%s", out);
    free(out);
    cr_assert_eq(wait_lsn(&e, first, "readdb", 20000, &out, NULL), 0, "%s", out);
    free(out);
    stop_walcast(&e, SIGTERM);

    long long id = place(&e, cust, "[{\"sku\": \"B\", \"qty\": 1, \"unit_price\": 1.00}]");
    char *lsn = token(&e);
    const char *sinks[] = {"cache", "readdb"};
    for (int i = 0; i < 2; i++) {
        long long ms;
        cr_assert_eq(wait_lsn(&e, lsn, sinks[i], 700, &out, &ms), 1, "%s: %s", sinks[i], out);
        cr_expect(strstr(out, "timed out after 700 ms") != NULL, "%s", out);
        cr_expect(strstr(out, "applied through ") != NULL, "%s", out);
        cr_expect(ms >= 700 && ms < 5000, "%s: timed out after %lld ms", sinks[i], ms);
        free(out);
    }
    redisContext *rc = wct_redis(e.db);
    redisReply *r = redisCommand(rc, "EXISTS order:%lld", id);
    cr_expect_eq(r->integer, 0, "walcast was stopped: the order cannot be there");
    freeReplyObject(r);
    redisFree(rc);

    start_walcast(&e);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(wait_lsn(&e, lsn, sinks[i], 30000, &out, NULL), 0, "%s: %s", sinks[i], out);
        free(out);
    }
    free(lsn);
    free(first);
    teardown_env(&e);
}

/* Bad input is exit 2 with a message that says what is wrong; no server is asked. */
Test(rw, bad_input_is_exit_2)
{
    char *config = xprintf("%s/examples/orders/walcast.yaml", wct_source_dir());
    struct {
        const char *args;
        const char *says;
    } cases[] = {
        {"wait-lsn 16B3748 --sink cache", "invalid LSN \"16B3748\": expected two hexadecimal numbers"},
        {"wait-lsn 0/XYZ --sink cache", "invalid LSN \"0/XYZ\""},
        {"wait-lsn '' --sink cache", "invalid LSN \"\""},
        {"wait-lsn 0/1/2 --sink cache", "invalid LSN"},
        {"wait-lsn --sink cache", "wait-lsn needs the LSN to wait for"},
        {"wait-lsn 0/1", "wait-lsn needs --sink NAME: the configuration has sinks \"readdb\", \"cache\""},
        {"wait-lsn 0/1 --sink nope", "unknown sink \"nope\""},
        {"wait-lsn 0/1 --sink cache --timeout soon", "invalid --timeout \"soon\""},
        {"wait-lsn 0/1 --sink cache --timeout -5", "invalid --timeout \"-5\""},
        {"wait-lsn 0/1 0/2 --sink cache", "unexpected argument \"0/2\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *cmd = xprintf("'%s' %s -c '%s' 2>&1", wct_walcast(), cases[i].args, config), *out = NULL;
        int rc = wct_run(cmd, &out);
        cr_expect_eq(rc, 2, "%s: exit %d: %s", cases[i].args, rc, out);
        cr_expect(strstr(out, cases[i].says) != NULL, "%s: want \"%s\" in: %s", cases[i].args, cases[i].says,
                  out);
        free(out);
        free(cmd);
    }
    free(config);
}

/* ---- GET /wait on the metrics endpoint ---- */

/* A connection to walcast's endpoint (WALCAST_METRICS_LISTEN, 127.0.0.1:PORT) with the request sent. */
static int http_send(const char *path)
{
    const char *listen = getenv("WALCAST_METRICS_LISTEN");
    cr_assert_not_null(listen);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(strchr(listen, ':') + 1))};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int fd = -1, rc = -1;
    /* walcast may still be starting: its endpoint listens within a few seconds. */
    for (int i = 0; i < 200 && rc < 0; i++) {
        if (fd >= 0) {
            close(fd);
            sleep_ms(50);
        }
        fd = socket(AF_INET, SOCK_STREAM, 0);
        cr_assert(fd >= 0, "socket: %s", strerror(errno));
        rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
        if (rc < 0 && errno != ECONNREFUSED)
            break;
    }
    cr_assert_eq(rc, 0, "connect to %s: %s", listen, strerror(errno));
    char *req = xprintf("GET %s HTTP/1.1\r\nHost: walcast\r\nConnection: close\r\n\r\n", path);
    cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    free(req);
    return fd;
}

/* Read the whole answer (the server closes): a new string. */
static char *http_read(int fd)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    ssize_t n;
    while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)n;
        if (cap - len < 2)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    close(fd);
    return buf;
}

static int http_status(const char *resp)
{
    int st = 0;
    sscanf(resp, "HTTP/1.%*d %d", &st);
    return st;
}

static char *http(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *http(const char *fmt, ...)
{
    va_list ap;
    char *path;
    va_start(ap, fmt);
    cr_assert(vasprintf(&path, fmt, ap) >= 0);
    va_end(ap);
    char *resp = http_read(http_send(path));
    free(path);
    return resp;
}

static int threads_of(pid_t pid)
{
    char *path = xprintf("/proc/%d/status", (int)pid), line[256];
    FILE *f = fopen(path, "r");
    int n = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "Threads:", 8) == 0)
            n = atoi(line + 8);
    if (f)
        fclose(f);
    free(path);
    return n;
}

/* The answers: 200 once applied (JSON with the position), 408 at the timeout with the position applied
 * through, 400 for bad input, 404 for an unknown sink. */
Test(rw, http_wait_answers)
{
    struct orders_env e;
    setup_env(&e, 13);
    long long cust = customer(&e, "rw4@example.com");
    place(&e, cust, "[{\"sku\": \"A\", \"qty\": 1, \"unit_price\": 2.50}]");
    char *lsn = token(&e), *r;

    r = http("/wait?lsn=%s&sink=cache&timeout_ms=20000", lsn);
    cr_assert_eq(http_status(r), 200, "%s", r);
    cr_expect(strstr(r, "\"reached\":true") && strstr(r, "\"applied\":\""), "%s", r);
    free(r);
    r = http("/wait?lsn=%s&sink=readdb&timeout_ms=20000", lsn);
    cr_assert_eq(http_status(r), 200, "%s", r);
    free(r);
    /* Already applied: at once. */
    long long t0 = now_ms();
    r = http("/wait?lsn=0/1&sink=cache");
    cr_expect_eq(http_status(r), 200, "%s", r);
    cr_expect_lt(now_ms() - t0, 500);
    free(r);
    /* Not yet (nothing writes meanwhile): 408 after the timeout, with the position. */
    t0 = now_ms();
    r = http("/wait?lsn=FFFF/0&sink=readdb&timeout_ms=300");
    long long took = now_ms() - t0;
    cr_expect_eq(http_status(r), 408, "%s", r);
    cr_expect(strstr(r, "\"reached\":false") && strstr(r, "\"applied\":\""), "%s", r);
    cr_expect(took >= 300 && took < 3000, "408 after %lld ms", took);
    free(r);
    const char *bad[] = {"/wait?lsn=16B3748&sink=cache", "/wait?sink=cache", "/wait?lsn=0/1",
                         "/wait?lsn=0/1&sink=cache&timeout_ms=soon",
                         "/wait?lsn=0/1&sink=cache&timeout_ms=-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = http("%s", bad[i]);
        cr_expect_eq(http_status(r), 400, "%s: %s", bad[i], r);
        cr_expect(strstr(r, "\"error\":\"") != NULL, "%s: %s", bad[i], r);
        free(r);
    }
    /* A commit without events: the engine moves the sinks over it as soon as a waiter needs it, not at the
     * next status interval (1 s). */
    for (int i = 0; i < 3; i++) {
        char *email = xprintf("noevent%d@example.com", i);
        customer(&e, email);
        free(email);
        char *other = token(&e);
        t0 = now_ms();
        r = http("/wait?lsn=%s&sink=%s&timeout_ms=5000", other, i % 2 ? "readdb" : "cache");
        took = now_ms() - t0;
        cr_expect_eq(http_status(r), 200, "%s", r);
        cr_expect_lt(took, 300, "a wait for a commit without events took %lld ms", took);
        free(r);
        free(other);
    }
    r = http("/wait?lsn=0/1&sink=nope");
    cr_expect_eq(http_status(r), 404, "%s", r);
    cr_expect(strstr(r, "unknown sink \\\"nope\\\"") != NULL, "%s", r);
    free(r);
    /* walcast stops while waiters wait: each is told so (503) as it stops, not left to its timeout. */
    int fd[2] = {http_send("/wait?lsn=FFFF/0&sink=cache&timeout_ms=30000"),
                 http_send("/wait?lsn=FFFF/0&sink=readdb&timeout_ms=30000")};
    sleep_ms(200);
    t0 = now_ms();
    stop_walcast(&e, SIGTERM);
    for (int i = 0; i < 2; i++) {
        r = http_read(fd[i]);
        cr_expect_eq(http_status(r), 503, "%s", r);
        cr_expect(strstr(r, "\"error\":\"walcast is stopping\"") && strstr(r, "\"reached\":false"), "%s", r);
        free(r);
    }
    took = now_ms() - t0;
    cr_expect_lt(took, 5000, "the waiters heard of the stop after %lld ms", took);
    free(lsn);
    teardown_env(&e);
}

/* A thousand waiters at once hold no thread each (the process's thread count stays), and every one gets
 * its 200 once the write they wait for is applied. */
Test(rw, a_thousand_http_waiters_without_a_thread_each)
{
    enum { N = 1000 };
    struct orders_env e;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < N + 200 && rl.rlim_max >= N + 200) {
        rl.rlim_cur = N + 200;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* No heartbeat (a WAL record of its own) may move the applied position while the waiters wait. */
    setenv("WALCAST_ENGINE_HEARTBEAT_INTERVAL_MS", "3600000", 1);
    setup_env(&e, 13);
    unsetenv("WALCAST_ENGINE_HEARTBEAT_INTERVAL_MS");
    long long cust = customer(&e, "rw5@example.com");
    place(&e, cust, "[{\"sku\": \"A\", \"qty\": 1, \"unit_price\": 2.50}]");
    char *lsn = token(&e);
    char *r = http("/wait?lsn=%s&sink=cache&timeout_ms=20000", lsn);
    cr_assert_eq(http_status(r), 200, "%s", r);
    free(r);
    r = http("/wait?lsn=%s&sink=readdb&timeout_ms=20000", lsn);
    cr_assert_eq(http_status(r), 200, "%s", r);
    free(r);
    int before = threads_of(e.pid);
    cr_assert_gt(before, 0);

    /* A position 200 kB past everything written so far: the server's own records meanwhile (a running-xacts
     * record every 15 s) cannot reach it, the write below does. */
    char *next = qv(e.w, "SELECT pg_current_wal_insert_lsn() + 200000");
    int *fd = calloc(N, sizeof(int));
    for (int i = 0; i < N; i++) {
        char *path = xprintf("/wait?lsn=%s&sink=%s&timeout_ms=30000", next, i % 2 ? "cache" : "readdb");
        fd[i] = http_send(path);
        free(path);
    }
    sleep_ms(300);
    int during = threads_of(e.pid);
    struct pollfd *pfd = calloc(N, sizeof(*pfd));
    for (int i = 0; i < N; i++)
        pfd[i] = (struct pollfd){.fd = fd[i], .events = POLLIN};
    cr_expect_eq(poll(pfd, N, 0), 0, "waiters were answered before the write");
    cr_expect_eq(during, before, "threads: %d before the waiters, %d with %d waiting", before, during, N);

    /* The write: 300 kB of WAL no projection sees (a logical message of another prefix), then an order. */
    free(qv(e.w, "SELECT pg_logical_emit_message(false, 'rw-test', repeat('x', 300000))"));
    long long id = place(&e, cust, "[{\"sku\": \"B\", \"qty\": 1, \"unit_price\": 1.00}]");
    long long t0 = now_ms();
    int ok = 0;
    for (int i = 0; i < N; i++) {
        r = http_read(fd[i]);
        ok += http_status(r) == 200;
        if (http_status(r) != 200)
            cr_log_error("waiter %d: %s", i, r);
        free(r);
    }
    long long took = now_ms() - t0;
    cr_expect_eq(ok, N, "%d of %d waiters got 200", ok, N);
    cr_log_info("%d waiters answered within %lld ms of the write", N, took);
    /* And the write is there for each of them. */
    redisContext *rc = wct_redis(e.db);
    redisReply *rep = redisCommand(rc, "HGET order:%lld status", id);
    cr_expect(rep && rep->type == REDIS_REPLY_STRING, "order %lld not in redis", id);
    freeReplyObject(rep);
    redisFree(rc);
    cr_expect_eq(threads_of(e.pid), before);
    free(pfd);
    free(fd);
    free(next);
    free(lsn);
    teardown_env(&e);
}

/*
 * Under a load of other writers (1,000 events/s), a wait returns only once its own write is visible: right
 * after each 200 a separate reader finds the order in Redis or in the read database. The engine answers
 * as early as it can (from a sink's worker as its commit returns; at the next transaction's commit record
 * when nothing is queued and the sink has no commit in flight); none of those may come before the write.
 */
Test(rw, waits_under_load_are_never_early)
{
    struct orders_env e;
    setup_env(&e, 13);
    long long cust = customer(&e, "rw7@example.com");
    pid_t wl = start_paced_workload(&e, 1000);
    redisContext *rc = wct_redis(e.db);
    char *rd = xprintf("%s user=reader", e.read_dsn);
    PGconn *reader = wct_pg_connect(rd);
    int n = sanitized_pass() ? 60 : 300, early = 0;

    for (int i = 0; i < n; i++) {
        long long id = place(&e, cust, "[{\"sku\": \"W\", \"qty\": 1, \"unit_price\": 1.25}]");
        char *lsn = token(&e);
        const char *sink = i % 2 ? "cache" : "readdb";
        char *r = http("/wait?lsn=%s&sink=%s&timeout_ms=20000", lsn, sink);
        cr_assert_eq(http_status(r), 200, "wait %d: %s", i, r);
        int seen;
        if (i % 2) {
            redisReply *h = redisCommand(rc, "HGET order:%lld status", id);
            seen = h && h->type == REDIS_REPLY_STRING;
            freeReplyObject(h);
        } else {
            char *v = qv(reader, "SELECT status FROM order_summary WHERE order_id = %lld", id);
            seen = v != NULL;
            free(v);
        }
        if (!seen && early++ == 0)
            cr_log_error("order %lld was not in %s when its wait for %s returned: %s", id, sink, lsn, r);
        free(r);
        free(lsn);
    }
    stop_workload(wl);
    wait_workload_ended(&e);
    cr_expect_eq(early, 0, "%d of %d waits returned before their write was visible", early, n);
    PQfinish(reader);
    free(rd);
    redisFree(rc);
    teardown_env(&e);
}

/* ---- the example clients (examples/read-your-writes), run against the order example ---- */

static int example(const char *cmd, char **out)
{
    char *full = xprintf("%s 2>&1", cmd);
    int rc = wct_run(full, out);
    free(full);
    return rc;
}

Test(rw, example_clients_python_and_go, .timeout = 180)
{
    struct orders_env e;
    setup_env(&e, 13);
    long long cust = customer(&e, "rw6@example.com");
    const char *dir = wct_source_dir();
    char *reader = xprintf("%s user=reader", e.read_dsn);
    char *url = xprintf("redis://127.0.0.1:%d/%d", wct_redis_port(), e.db);
    char *py =
        xprintf("/usr/bin/python3 '%s/examples/read-your-writes/rw.py' --write-dsn '%s' --read-dsn '%s' "
                "--redis-url '%s' --slot %s --customer %lld --http %s",
                dir, e.write_dsn, reader, url, e.slot, cust, getenv("WALCAST_METRICS_LISTEN"));
    char *bin = xprintf("%s/rw-go", e.dir);
    char *build = xprintf("cd '%s/examples/read-your-writes/go' && GO111MODULE=off GOPATH=/usr/share/gocode "
                          "GOCACHE='%s/gocache' go build -o '%s' main.go",
                          dir, e.dir, bin);
    char *out = NULL;
    cr_assert_eq(example(build, &out), 0, "go build: %s", out);
    free(out);
    /* lib/pq asks for TLS unless told (libpq prefers it and falls back): the private servers have none. */
    char *go = xprintf(
        "'%s' -write-dsn '%s sslmode=disable' -read-dsn '%s sslmode=disable' -redis-addr 127.0.0.1:%d "
        "-redis-db %d -slot %s -customer %lld",
        bin, e.write_dsn, reader, wct_redis_port(), e.db, e.slot, cust);
    const char *via[] = {"redis", "postgres", "http"};
    for (int i = 0; i < 3; i++) {
        char *cmd = xprintf("%s --via %s --timeout-ms 20000", py, via[i]);
        cr_expect_eq(example(cmd, &out), 0, "rw.py --via %s: %s", via[i], out);
        cr_expect(strstr(out, "\"reached\": true") && strstr(out, "\"status\": \"placed\""), "%s", out);
        free(out);
        free(cmd);
        if (i < 2) {
            cmd = xprintf("%s -via %s -timeout-ms 20000", go, via[i]);
            cr_expect_eq(example(cmd, &out), 0, "go rw -via %s: %s", via[i], out);
            cr_expect(strstr(out, "\"reached\":true") && strstr(out, "\"status\":\"placed\""), "%s", out);
            free(out);
            free(cmd);
        }
    }

    /* walcast stopped: the endpoint is unreachable (the client falls back to Redis), the waits time out. */
    stop_walcast(&e, SIGTERM);
    char *cmd = xprintf("%s --via http --timeout-ms 700", py);
    cr_expect_eq(example(cmd, &out), 1, "%s", out);
    cr_expect(strstr(out, "unreachable") && strstr(out, "\"reached\": false"), "%s", out);
    free(out);
    free(cmd);
    cmd = xprintf("%s -via postgres -timeout-ms 700", go);
    cr_expect_eq(example(cmd, &out), 1, "%s", out);
    cr_expect(strstr(out, "\"reached\":false") != NULL, "%s", out);
    free(out);
    free(cmd);
    start_walcast(&e); /* teardown stops it */
    free(go);
    free(build);
    free(bin);
    free(py);
    free(url);
    free(reader);
    teardown_env(&e);
}

/* A Redis Cluster sink publishes no position in the cluster: GET /wait answers from the engine's durable
 * cursor, and walcast wait-lsn refuses the sink, naming /wait. */
Test(rw, http_wait_on_a_redis_cluster_sink)
{
    struct orders_env e;
    setup_env_cluster(&e);
    long long cust = customer(&e, "rw7@example.com");
    long long id = place(&e, cust, "[{\"sku\": \"A\", \"qty\": 1, \"unit_price\": 2.50}]");
    char *lsn = token(&e), *out = NULL;
    char *r = http("/wait?lsn=%s&sink=cache&timeout_ms=20000", lsn);
    cr_assert_eq(http_status(r), 200, "%s", r);
    free(r);
    char *status = rv(&e, "HGET order:{%lld}:%lld status", cust, id);
    cr_expect(status && strcmp(status, "placed") == 0, "order %lld in the cluster right after the wait: %s",
              id, status ? status : "(nil)");
    free(status);
    cr_expect_eq(wait_lsn(&e, lsn, "cache", 1000, &out, NULL), 2, "%s", out);
    cr_expect(strstr(out, "is a redis cluster") && strstr(out, "GET /wait"), "%s", out);
    free(out);
    free(lsn);
    teardown_env(&e);
}
