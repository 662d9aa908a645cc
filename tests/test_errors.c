/* test_errors.c - mistakes that cannot fix themselves are said loudly (issue 11, item 3), tried as a new
 * user would: a wrong PostgreSQL password, a Redis that wants a password the DSN lacks (NOAUTH) or gets a
 * wrong one, a refused port, wal2json missing while a sink is rebuilt. One rule for every connection: a
 * fault someone must fix ends `walcast run` with exit 2 at start, naming the cause and the fix (never the
 * password); once walcast has streamed it is retried, with an error line at once and every minute, while
 * the other sink goes on. A refused connection may pass: retried with backoff, one warning (then a line a
 * minute), never an exit. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "orders_env.h"

/* Start walcast (a fresh log) and wait up to timeout_ms for it to exit on its own: its exit code, or -1
 * when it was still running (then it is stopped). */
static int exit_code_within(struct orders_env *e, int timeout_ms)
{
    unlink(e->log);
    start_walcast(e);
    long long deadline = now_ms() + timeout_ms;
    int st;
    while (now_ms() < deadline) {
        if (waitpid(e->pid, &st, WNOHANG) == e->pid) {
            e->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        sleep_ms(50);
    }
    stop_walcast(e, SIGTERM);
    return -1;
}

static void expect_log(struct orders_env *e, const char *a, const char *b, const char *what)
{
    if (log_has_line(e, a, b) == 0) {
        dump_log(e);
        cr_assert_fail("walcast's log has no line with \"%s\"%s%s%s: %s", a, b ? " and \"" : "", b ? b : "",
                       b ? "\"" : "", what);
    }
}

static void expect_no_secret(struct orders_env *e, const char *secret)
{
    char *log = read_text(e->log);
    cr_assert(strstr(log, secret) == NULL, "the password \"%s\" is in walcast's log", secret);
    free(log);
}

/* Wait until walcast's log has a line with a and b, supervising it. */
static void wait_log(struct orders_env *e, const char *a, const char *b, int timeout_ms, const char *what)
{
    long long deadline = now_ms() + timeout_ms;
    while (log_has_line(e, a, b) == 0) {
        ensure_running(e);
        if (now_ms() > deadline)
            expect_log(e, a, b, what);
        sleep_ms(50);
    }
}

/* Wait until order id is in order_summary (the read database only). */
static void wait_pg_order(struct orders_env *e, long long id, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        char *v = qv(e->r, "SELECT status FROM order_summary WHERE order_id = %lld", id);
        free(v);
        if (v)
            return;
        ensure_running(e);
        if (now_ms() > deadline) {
            dump_log(e);
            cr_assert_fail("order %lld did not reach order_summary within %d ms", id, timeout_ms);
        }
        sleep_ms(20);
    }
}

static long long new_order(struct orders_env *e)
{
    return place(e, 1, "[{\"sku\": \"ERR\", \"qty\": 1, \"unit_price\": 2.50}]");
}

/* The orders fixture, walcast stopped after it applied a first order, and customer 1 created. */
static void setup_stopped(struct orders_env *e)
{
    /* No metrics endpoint: its port, chosen once, could meanwhile go to the private Redis of a test. */
    setenv("WALCAST_METRICS_LISTEN", "", 1);
    setup_env(e, 13);
    pid_t wl = start_workload(e, 20, 0.5);
    finish_workload(e, wl, 60000);
    wait_order(e, new_order(e), "placed", 60000);
    cr_assert_eq(stop_walcast(e, SIGTERM), 0);
}

TestSuite(errors, .timeout = 180);

Test(errors, wrong_postgres_password)
{
    struct orders_env e;
    const char *server = getenv("WALCAST_TEST_READ_PG_DSN");
    cr_assert(server && getenv("WALCAST_TEST_PASSWORD_ROLE"),
              "start the servers with scripts/services.sh (a role that needs a password)");
    setup_stopped(&e);
    /* walcast_pw must give its password (services.sh's pg_hba.conf); it may do what walcast does. */
    wct_sql(server,
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'walcast_pw') THEN "
            "CREATE ROLE walcast_pw LOGIN; END IF; END $$; ALTER ROLE walcast_pw PASSWORD 'right-pw'; "
            "GRANT walcast TO walcast_pw");

    /* At start: exit 2, naming the cause and the fix, never the password. */
    char *dsn = xprintf("%s user=walcast_pw password=wrong-pw", e.read_dsn);
    setenv("WALCAST_SINKS_READDB_DSN", dsn, 1);
    free(dsn);
    int rc = exit_code_within(&e, 30000);
    cr_assert_eq(rc, 2, "walcast run with a wrong password: exit %d, expected 2", rc);
    expect_log(&e, "password authentication failed", "check the user's password", "the cause and the fix");
    expect_no_secret(&e, "wrong-pw");

    /* Running: the password changes under it. An error line at once, Redis goes on, and the read
     * database catches up once the password is right again. */
    dsn = xprintf("%s user=walcast_pw password=right-pw", e.read_dsn);
    setenv("WALCAST_SINKS_READDB_DSN", dsn, 1);
    free(dsn);
    unlink(e.log);
    start_walcast(&e);
    wait_order(&e, new_order(&e), "placed", 60000);
    wct_sql(server, "ALTER ROLE walcast_pw PASSWORD 'changed-pw'");
    wct_sql(server, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'walcast_pw'");
    long long id = new_order(&e);
    for (long long deadline = now_ms() + 30000;; sleep_ms(50)) {
        char *v = rv(&e, "HGET order:%lld status", id);
        free(v);
        if (v)
            break;
        ensure_running(&e);
        cr_assert(now_ms() < deadline, "Redis did not get order %lld while the read database refused walcast",
                  id);
    }
    wait_log(&e, "error: sink \"readdb\"", "password authentication failed", 30000,
             "an error line once running");
    expect_log(&e, "password authentication failed", "reconnecting until this is fixed", "that it retries");
    wct_sql(server, "ALTER ROLE walcast_pw PASSWORD 'right-pw'");
    wait_order(&e, id, "placed", 60000);
    expect_no_secret(&e, "right-pw");
    wait_caught_up(&e, 60000);
    run_check(&e, 2);
    teardown_env(&e);
}

/* A free TCP port on the loopback interface: bound, then closed (nothing listens there). */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* The private Redis's pid file: its .fini stops it even when an assertion ended the test early. */
static char private_pidfile[512];

static void stop_private_redis(void)
{
    if (private_pidfile[0] == '\0')
        return;
    FILE *f = fopen(private_pidfile, "r");
    int pid = 0;
    if (f && fscanf(f, "%d", &pid) == 1 && pid > 0)
        kill((pid_t)pid, SIGTERM);
    if (f)
        fclose(f);
    private_pidfile[0] = '\0';
}

/* A Redis of the test's own that wants a password. */
static int start_private_redis(struct orders_env *e, const char *password)
{
    int port = closed_port();
    char *cmd = xprintf("redis-server --port %d --bind 127.0.0.1 --requirepass %s --save '' --appendonly no "
                        "--daemonize yes --dir '%s' --pidfile '%s/redis-pw.pid' --logfile '%s/redis-pw.log'",
                        port, password, e->dir, e->dir, e->dir);
    cr_assert_eq(wct_run(cmd, NULL), 0, "could not start a redis with requirepass");
    free(cmd);
    snprintf(private_pidfile, sizeof(private_pidfile), "%s/redis-pw.pid", e->dir);
    for (int i = 0; i < 100; i++) {
        redisContext *c = redisConnect("127.0.0.1", port);
        int up = c && !c->err;
        redisFree(c);
        if (up)
            return port;
        sleep_ms(50);
    }
    cr_assert_fail("the private redis did not start");
    return 0;
}

Test(errors, redis_wants_a_password, .fini = stop_private_redis)
{
    struct orders_env e;
    setup_stopped(&e);
    int port = start_private_redis(&e, "secret-pw");

    /* No password in the DSN: NOAUTH. Exit 2 at start, with what to do. */
    char *url = xprintf("redis://127.0.0.1:%d/0", port);
    setenv("WALCAST_SINKS_CACHE_DSN", url, 1);
    free(url);
    int rc = exit_code_within(&e, 30000);
    cr_assert_eq(rc, 2, "walcast run without the password redis wants: exit %d, expected 2", rc);
    expect_log(&e, "NOAUTH", "put it in the DSN", "the cause and the fix");

    /* A wrong one: WRONGPASS, the same rule; the password is not in the log. */
    url = xprintf("redis://:wrong-pw@127.0.0.1:%d/0", port);
    setenv("WALCAST_SINKS_CACHE_DSN", url, 1);
    free(url);
    rc = exit_code_within(&e, 30000);
    cr_assert_eq(rc, 2, "walcast run with a wrong redis password: exit %d, expected 2", rc);
    expect_log(&e, "WRONGPASS", "check the user and password in the DSN", "the cause and the fix");
    expect_no_secret(&e, "wrong-pw");

    /* Running: the password changes under it. An error line, PostgreSQL goes on; back once it is right. */
    url = xprintf("redis://:secret-pw@127.0.0.1:%d/0", port);
    setenv("WALCAST_SINKS_CACHE_DSN", url, 1);
    free(url);
    /* redis-cli -u (check.sh) takes the password with a user name */
    url = xprintf("redis://default:secret-pw@127.0.0.1:%d/0", port);
    setenv("CHECK_REDIS_URL", url, 1);
    free(url);
    redisFree(e.redis);
    e.redis = redisConnect("127.0.0.1", port);
    freeReplyObject(redisCommand(e.redis, "AUTH secret-pw"));
    /* This Redis is empty: the sink is built again from the outbox table (its rebuild action). */
    setenv("WALCAST_SINKS_CACHE_REBUILD", "flushdb", 1);
    unlink(e.log);
    start_walcast(&e);
    wait_order(&e, new_order(&e), "placed", 60000);
    freeReplyObject(redisCommand(e.redis, "CONFIG SET requirepass changed-pw"));
    freeReplyObject(redisCommand(e.redis, "CLIENT KILL TYPE normal SKIPME yes"));
    long long id = new_order(&e);
    wait_pg_order(&e, id, 30000);
    wait_log(&e, "error: sink \"cache\"", "WRONGPASS", 30000, "an error line once running");
    expect_log(&e, "WRONGPASS", "reconnecting until this is fixed", "that it retries");
    freeReplyObject(redisCommand(e.redis, "CONFIG SET requirepass secret-pw"));
    wait_order(&e, id, "placed", 60000);
    expect_no_secret(&e, "secret-pw");
    wait_caught_up(&e, 60000);
    run_check(&e, 2);
    stop_walcast(&e, SIGTERM);
    stop_private_redis();
    redisFree(e.redis);
    e.redis = wct_redis(13);
    teardown_env(&e);
}

Test(errors, refused_ports_are_retried)
{
    struct orders_env e;
    setup_stopped(&e);
    int port = closed_port();

    /* Redis refuses: walcast runs on, the read database gets the events, one warning for the outage. */
    char *url = xprintf("redis://127.0.0.1:%d/0", port);
    setenv("WALCAST_SINKS_CACHE_DSN", url, 1);
    free(url);
    unlink(e.log);
    start_walcast(&e);
    wait_pg_order(&e, new_order(&e), 30000);
    sleep_ms(2000);
    ensure_running(&e);
    int n = log_has_line(&e, "Connection refused", "reconnecting");
    cr_expect_eq(n, 1, "a refused redis: expected one warning, got %d lines", n);
    cr_expect_eq(log_count(&e, "error:"), 0, "a refused port is not an error before a minute has passed");
    int st = stop_walcast(&e, SIGTERM);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGTERM: status 0x%x", st);

    /* The source refuses: walcast waits for it, without exiting. */
    char *src = xprintf("host=127.0.0.1 port=%d dbname=postgres user=walcast", port);
    setenv("WALCAST_SOURCE_DSN", src, 1);
    free(src);
    int rc = exit_code_within(&e, 3000);
    cr_assert_eq(rc, -1, "walcast exited (%d) when the source refused: it must retry", rc);
    n = log_has_line(&e, "Connection refused", "reconnecting");
    cr_expect_eq(n, 1, "a refused source: expected one warning, got %d lines", n);
    teardown_env(&e);
}

Test(errors, missing_wal2json_during_a_rebuild)
{
    struct orders_env e;
    setup_stopped(&e);
    /* An honest "wal2json is not installed" from the real server: a role whose library path holds no
     * wal2json. Creating the rebuild's snapshot slot loads the plugin, and fails as on a server without
     * the package. */
    wct_sql(e.write_dsn,
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'walcast_nolib') THEN "
            "CREATE ROLE walcast_nolib LOGIN REPLICATION; END IF; END $$; "
            "ALTER ROLE walcast_nolib SET dynamic_library_path = '/nonexistent'; "
            "GRANT walcast TO walcast_nolib");
    char *src = xprintf("%s user=walcast_nolib", e.write_dsn);
    setenv("WALCAST_SOURCE_DSN", src, 1);
    free(src);
    setenv("WALCAST_SINKS_CACHE_REBUILD", "flushdb", 1);
    /* Redis lost its data: the cache sink must be rebuilt from the outbox table. */
    freeReplyObject(redisCommand(e.redis, "FLUSHDB"));
    int rc = exit_code_within(&e, 30000);
    cr_assert_eq(rc, 2, "a rebuild without wal2json: exit %d, expected 2", rc);
    expect_log(&e, "could not access file \"wal2json\"", "install wal2json", "the cause and the fix");

    /* With wal2json there, the same start rebuilds the sink. */
    src = xprintf("%s user=walcast", e.write_dsn);
    setenv("WALCAST_SOURCE_DSN", src, 1);
    free(src);
    start_walcast(&e);
    wait_caught_up(&e, 60000);
    run_check(&e, 2);
    teardown_env(&e);
}
