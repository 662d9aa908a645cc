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

#include "orders_env.h"

#define WORKLOAD 10000

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
    char *total =
        qv(c, "SELECT jsonb_typeof(payload->'total') || ' ' || (payload->'total')::text FROM domain_events");
    expect_str("total is a JSON number with 2 decimals", total, "number 0.30");
    char *iso =
        qv(c, "SELECT payload->>'placed_at' ~ '^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$' "
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
    err =
        command_error(&e, "SELECT shop.place_order(1, '[{\"sku\": \"A\", \"qty\": 0, \"unit_price\": 1}]')");
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
    long long o1 = place(&e, cust,
                         "[{\"sku\": \"A-1\", \"qty\": 2, \"unit_price\": 10.25},"
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
               qv(e.r,
                  "SELECT order_id FROM order_summary WHERE customer_id = %lld"
                  " ORDER BY placed_at DESC, order_id DESC LIMIT 1",
                  cust),
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
    freeReplyObject(redisCommand(e.redis, "ZINCRBY ltv:leaderboard 2130 %lld", cust));
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
    cr_log_info("kill -9 seed %u at outbox events %lld %lld %lld %lld %lld", seed, at[0], at[1], at[2], at[3],
                at[4]);

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
            cr_log_info("kill -9 #%d at outbox event %lld (order_summary rows %lld)%s", kills + 1, events,
                        applied, done ? " after the workload" : "");
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

/* The error of sql run as the connection c, or NULL when it succeeded. */
static char *try_sql(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    char *msg = NULL;
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        msg = strdup(PQresultErrorMessage(r));
    PQclear(r);
    return msg;
}

/* Least privilege in the example: walcast runs on the read side with neither REPLICATION nor CREATE,
 * can rebuild (TRUNCATE), and role reader reads the projections and nothing else. */
Test(orders, least_privilege_roles)
{
    struct orders_env e;
    setup_env(&e, 12);
    long long customer = 1;
    command(&e, "INSERT INTO shop.customers (email, name) VALUES ('lp@example.com', 'LP')");
    long long id = place(&e, customer, "[{\"sku\": \"A\", \"qty\": 1, \"unit_price\": 5.00}]");
    wait_order(&e, id, "placed", 20000); /* walcast (user walcast) applied it and kept its cursor */

    char *rights =
        qv(e.r, "SELECT r.rolreplication::text || ' ' || has_schema_privilege('walcast', 'public', "
                "'CREATE')::text || ' ' || has_table_privilege('walcast', 'order_summary', "
                "'TRUNCATE')::text FROM pg_roles r WHERE r.rolname = 'walcast'");
    /* CREATE on public: an online rebuild moves its new tables in (docs/operations.md, "Rebuilding a
     * projection"); the only privilege beyond applying events, with CREATE on the database for the shadow. */
    expect_str(
        "walcast on the read side: no REPLICATION, CREATE for an online rebuild, TRUNCATE for a rebuild",
        rights, "false true true");

    char *rd = xprintf("%s user=reader", e.read_dsn);
    PGconn *reader = wct_pg_connect(rd);
    char *err = try_sql(reader, "SELECT count(*) FROM order_summary");
    cr_expect_null(err, "reader reads the projections: %s", err);
    free(err);
    err = try_sql(reader, "SELECT count(*) FROM customer_ltv");
    cr_expect_null(err, "reader reads the projections: %s", err);
    free(err);
    const char *denied[] = {
        "SELECT * FROM walcast_cursor",
        "SELECT * FROM walcast_owner",
        "SELECT * FROM walcast_dead_letters",
        "UPDATE order_summary SET status = 'x'",
        "INSERT INTO customer_ltv VALUES (99, 1, 1, now())",
        "DELETE FROM order_summary",
        "CREATE TABLE reader_junk (a int)",
    };
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
        err = try_sql(reader, denied[i]);
        cr_expect(err != NULL && strstr(err, "permission denied"), "reader: \"%s\" should be denied, got: %s",
                  denied[i], err ? err : "success");
        free(err);
    }
    PQfinish(reader);
    free(rd);

    /* Not the write side: reader may not even connect there. */
    char *wd = xprintf("%s user=reader", e.write_dsn);
    PGconn *w = PQconnectdb(wd);
    cr_expect_neq(PQstatus(w), CONNECTION_OK, "reader connected to the write database");
    cr_expect(strstr(PQerrorMessage(w), "permission denied"), "%s", PQerrorMessage(w));
    PQfinish(w);
    free(wd);

    /* The documented rebuild runs as walcast. */
    char *wr = xprintf("%s user=walcast", e.read_dsn);
    PGconn *wc = wct_pg_connect(wr);
    err = try_sql(wc, "BEGIN; TRUNCATE order_summary, customer_ltv; ROLLBACK");
    cr_expect_null(err, "walcast can TRUNCATE for a rebuild: %s", err);
    free(err);
    PQfinish(wc);
    free(wr);
    teardown_env(&e);
}
