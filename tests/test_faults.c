/* test_faults.c - the order example under faults: the source PostgreSQL restarted (fast and immediate),
 * the read database restarted, Redis restarted (AOF, appendfsync always), a 3 s source outage (logged
 * once, not once per retry), SIGTERM during the workload and during an outage. Every test runs the
 * order workload through the fault with a driver that itself survives the restarts, lets walcast (which
 * must never exit on its own: transient errors are its reconnect loop's business) catch up, and requires
 * examples/orders/check.sh to find every projection equal to its recomputation from the write side: no
 * lost event, no event applied twice (lifetime values and counters are additive), nothing dead-lettered.
 *
 * Needs the servers of scripts/services.sh (WALCAST_TEST_DIR names them: the tests restart them). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "orders_env.h"

#define EVENTS                                                                                               \
    3000 /* commands (= outbox rows) per test: enough that walcast applies before, during and after each     \
            fault */
#define CHUNK 100   /* commands per CALL of the resilient workload */
#define PAUSE_MS 40 /* after each chunk: a steady ~1500 commands/s */

static long long applied_orders(struct orders_env *e)
{
    return qll(e->r, "SELECT count(*) FROM order_summary");
}

/* The workload's child must not have failed (it only exits early when the source stayed away). */
static void workload_alive(pid_t wl, int *done)
{
    int st;
    if (*done || waitpid(wl, &st, WNOHANG) != wl)
        return;
    *done = 1;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the workload failed (status 0x%x): see workload.log",
              st);
}

typedef void (*inject_fn)(struct orders_env *e, int i);

/*
 * Every wait of a test comes out of one budget that ends before the suite's timeout (120 s), so that a test
 * that runs long fails saying what it was waiting for, with the time each phase took (where the time went),
 * instead of a bare "Timed out".
 */
#define BUDGET_MS 100000
static long long test_start, budget_end;
static char phases[1024];

static void start_budget(void)
{
    test_start = now_ms();
    budget_end = test_start + BUDGET_MS;
    phases[0] = '\0';
}

/* want ms, or what is left of the budget (at least 1 s) when that is less. */
static int left(int want)
{
    long long l = budget_end - now_ms();
    return l < want ? (int)(l > 1000 ? l : 1000) : want;
}

/* Note that a phase ended now (for the messages and the log). */
static void phase(const char *fmt, ...)
{
    va_list ap;
    size_t n = strlen(phases);
    char what[200];
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(phases + n, sizeof(phases) - n, "%s%s at %lld ms", n ? "; " : "", what, now_ms() - test_start);
    cr_log_info("%s at %lld ms", what, now_ms() - test_start);
}

/*
 * Run EVENTS commands with nfaults faults spread over them (at outbox rows k * EVENTS / (nfaults + 1)),
 * each while walcast is applying (it has applied orders since the previous fault), then let it catch
 * up and check every projection. walcast must survive every fault on its own.
 */
static void workload_with_faults(struct orders_env *e, int nfaults, inject_fn inject)
{
    /* The workload goes on until the last fault is over and EVENTS commands have committed: a workload
     * that ended first would leave nothing to apply through the later faults. */
    pid_t wl = start_resilient_workload(e, 1000000000, CHUNK, PAUSE_MS);
    int wl_done = 0;
    long long t0 = now_ms(), applied_before = 0;
    for (int i = 0; i < nfaults; i++) {
        long long at = (long long)EVENTS * (i + 1) / (nfaults + 1);
        int wait = left(60000);
        long long deadline = now_ms() + wait;
        for (;;) {
            workload_alive(wl, &wl_done);
            ensure_running(e);
            long long events = outbox_events(e);
            long long applied = applied_orders(e);
            if (events >= at && applied > applied_before) {
                phase("fault %d at outbox row %lld, %lld orders applied", i + 1, events, applied);
                break;
            }
            cr_assert(now_ms() < deadline,
                      "fault %d: waited %d ms for the outbox to reach %lld rows (it has %lld) and walcast to "
                      "apply orders (%lld applied, %lld before); so far: %s",
                      i + 1, wait, at, events, applied, applied_before, phases);
            sleep_ms(10);
        }
        inject(e, i);
        phase("fault %d injected", i + 1);
        reconnect_env(e, left(60000));
        applied_before = applied_orders(e);
    }
    int wait = left(120000);
    long long events;
    for (long long deadline = now_ms() + wait; (events = outbox_events(e)) < EVENTS; sleep_ms(20)) {
        workload_alive(wl, &wl_done);
        ensure_running(e);
        cr_assert(now_ms() < deadline,
                  "waited %d ms for the workload to commit %d commands after the faults (it has %lld); so "
                  "far: %s",
                  wait, EVENTS, events, phases);
    }
    workload_alive(wl, &wl_done);
    cr_assert(!wl_done, "the workload ended by itself");
    kill(wl, SIGKILL); /* what it committed is in the outbox; the command cut short rolls back */
    waitpid(wl, NULL, 0);
    wait_workload_ended(e);
    events = outbox_events(e);
    phase("workload of %lld outbox rows stopped after %lld ms", events, now_ms() - t0);
    wait = left(60000);
    long long marker = place(e, 1, "[{\"sku\": \"MARKER\", \"qty\": 1, \"unit_price\": 1.00}]");
    for (long long deadline = now_ms() + wait;;) {
        char *pg = qv(e->r, "SELECT status FROM order_summary WHERE order_id = %lld", marker);
        char *rs = rv(e, "HGET order:%lld status", marker);
        int ok = pg && rs && strcmp(pg, "placed") == 0 && strcmp(rs, "placed") == 0;
        free(pg);
        free(rs);
        if (ok)
            break;
        if (now_ms() > deadline)
            dump_log(e);
        cr_assert(now_ms() <= deadline,
                  "walcast did not catch up: the marker order %lld placed after the workload was not in both "
                  "sinks within %d ms (%lld orders applied); so far: %s",
                  marker, wait, applied_orders(e), phases);
        ensure_running(e);
        sleep_ms(20);
    }
    phase("caught up (marker order %lld)", marker);
    run_check(e, EVENTS / 3);
    phase("check.sh done");
    /* A fault is not the event's fault: nothing may have gone to the dead letters. */
    expect_str("dead letters (PostgreSQL)", qv(e->r, "SELECT count(*) FROM walcast_dead_letters"), "0");
    expect_str("dead letters (Redis)", rv(e, "XLEN walcast:dead_letters:%s", e->slot), "0");
    cr_log_info("applied: %lld orders in order_summary; walcast logged %d reconnects", applied_orders(e),
                log_count(e, "reconnecting"));
}

static void restart_source_fast(struct orders_env *e, int i)
{
    cr_log_info("pg_ctl restart -m fast (source): %lld ms", services_run("restart-pg", "fast"));
}

static void restart_source_immediate(struct orders_env *e, int i)
{
    cr_log_info("pg_ctl restart -m immediate (source): %lld ms", services_run("restart-pg", "immediate"));
}

static void restart_read_db(struct orders_env *e, int i)
{
    /* fast first, then immediate: a crash of the read side must not lose a committed cursor either. */
    const char *mode = i == 0 ? "fast" : "immediate";
    cr_log_info("pg_ctl restart -m %s (read database): %lld ms", mode, services_run("restart-read-pg", mode));
}

static void restart_redis(struct orders_env *e, int i)
{
    /* SHUTDOWN NOSAVE skips the RDB snapshot only: with appendonly the AOF is what Redis reloads. */
    char *key = xprintf("faults:sentinel:%d", i);
    freeReplyObject(redisCommand(e->redis, "SET %s kept", key));
    cr_log_info("redis SHUTDOWN NOSAVE + start: %lld ms", services_run("restart-redis", NULL));
    reconnect_env(e, 30000);
    expect_str("a key written before SHUTDOWN NOSAVE", rv(e, "GET %s", key), "kept");
    freeReplyObject(redisCommand(e->redis, "DEL %s", key));
    free(key);
}

static void expect_redis_config(struct orders_env *e, const char *name, const char *want)
{
    redisReply *rep = redisCommand(e->redis, "CONFIG GET %s", name);
    cr_assert(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2, "CONFIG GET %s", name);
    cr_assert_str_eq(rep->element[1]->str, want,
                     "redis %s is %s: the Redis sink is exactly once only with %s", name,
                     rep->element[1]->str, want);
    freeReplyObject(rep);
}

TestSuite(faults, .timeout = 120, .init = start_budget);

Test(faults, source_restart_fast)
{
    struct orders_env e;
    setup_env(&e, 7);
    workload_with_faults(&e, 2, restart_source_fast);
    cr_expect(log_count(&e, "reconnecting") >= 1, "walcast never noticed the restarts");
    teardown_env(&e);
}

Test(faults, source_restart_immediate)
{
    struct orders_env e;
    setup_env(&e, 8);
    workload_with_faults(&e, 2, restart_source_immediate);
    cr_expect(log_count(&e, "reconnecting") >= 1, "walcast never noticed the crashes");
    teardown_env(&e);
}

Test(faults, read_db_restart)
{
    struct orders_env e;
    setup_env(&e, 9);
    workload_with_faults(&e, 2, restart_read_db);
    cr_expect(log_count(&e, "reconnecting") >= 1, "walcast never noticed the restarts");
    teardown_env(&e);
}

Test(faults, redis_restart_with_aof)
{
    struct orders_env e;
    setup_env(&e, 10);
    expect_redis_config(&e, "appendonly", "yes");
    expect_redis_config(&e, "appendfsync", "always");
    workload_with_faults(&e, 2, restart_redis);
    cr_expect(log_count(&e, "reconnecting") >= 1, "walcast never noticed the restarts");
    teardown_env(&e);
}

static void source_outage_3s(struct orders_env *e, int i)
{
    int before = log_count(e, "reconnecting");
    services_run("stop-pg", "fast");
    long long t0 = now_ms();
    /* Down for 3 s: with the default backoff (100 ms doubling) that is five or six attempts. */
    while (now_ms() - t0 < 3000) {
        ensure_running(e);
        sleep_ms(50);
    }
    services_run("start-pg", NULL);
    cr_log_info("source down for %lld ms; %d reconnecting warning(s) so far", now_ms() - t0,
                log_count(e, "reconnecting") - before);
}

Test(faults, outage_logged_once)
{
    struct orders_env e;
    setup_env(&e, 11);
    workload_with_faults(&e, 1, source_outage_3s);
    /* The engine's warning is "<error>; reconnecting": one for the outage, none for each retry. */
    int n = log_count(&e, "reconnecting");
    if (n != 1) {
        char *cmd = xprintf("grep -n 'warning\\|error' '%s'", e.log), *out = NULL;
        wct_run(cmd, &out);
        cr_log_error("walcast warnings:\n%s", out);
        free(out);
        free(cmd);
    }
    cr_expect_eq(n, 1, "one outage of the source: expected exactly one \"reconnecting\" warning, got %d", n);
    cr_expect(log_count(&e, "reconnect attempt") == 0, "retries are debug lines, not at log level info");
    teardown_env(&e);
}

static void sigterm(struct orders_env *e, int i)
{
    long long t0 = now_ms();
    int st = stop_walcast(e, SIGTERM);
    long long took = now_ms() - t0;
    cr_log_info("SIGTERM: walcast exited in %lld ms (status 0x%x)", took, st);
    cr_assert(st != -1, "walcast did not exit within 5 s of SIGTERM");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "walcast exited with status 0x%x after SIGTERM", st);
    cr_assert(took < 5000);
    sleep_ms(200);
    start_walcast(e);
}

Test(faults, sigterm_during_workload)
{
    struct orders_env e;
    setup_env(&e, 12);
    workload_with_faults(&e, 1, sigterm);
    teardown_env(&e);
}

/* SIGTERM while the source is down and walcast is backing off: it still exits 0 at once. */
Test(faults, sigterm_during_outage)
{
    struct orders_env e;
    setup_env(&e, 6);
    pid_t wl = start_resilient_workload(&e, 1000, CHUNK, PAUSE_MS);
    finish_workload(&e, wl, left(60000));
    wait_caught_up(&e, left(60000));
    services_run("stop-pg", "fast");
    sleep_ms(1500);
    long long t0 = now_ms();
    int st = stop_walcast(&e, SIGTERM);
    long long took = now_ms() - t0;
    services_run("start-pg", NULL);
    cr_log_info("SIGTERM during the outage: exited in %lld ms (status 0x%x)", took, st);
    cr_assert(st != -1, "walcast did not exit within 5 s of SIGTERM");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "walcast exited with status 0x%x", st);
    reconnect_env(&e, left(60000));
    start_walcast(&e);
    wl = start_resilient_workload(&e, 2000, CHUNK, PAUSE_MS);
    finish_workload(&e, wl, left(60000));
    wait_caught_up(&e, left(60000));
    run_check(&e, 600);
    teardown_env(&e);
}
