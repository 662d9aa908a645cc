/* test_stream.c - slots, streaming and `walcast tail` against the private PostgreSQL with wal2json. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"
#include "walcast/lsn.h"

#define OUTBOX_DDL                                                                                           \
    "CREATE TABLE domain_events (event_id bigserial PRIMARY KEY, aggregate_type text NOT NULL, "             \
    "aggregate_id text NOT NULL, event_type text NOT NULL, payload jsonb NOT NULL, "                         \
    "occurred_at timestamptz NOT NULL DEFAULT now()); CREATE TABLE other (x int);"

static char *run_walcast(const char *dsn, const char *slot, const char *args, int *status)
{
    char *cmd, *out;
    if (asprintf(&cmd, "%s %s --source '%s' --slot %s 2>&1", wct_walcast(), args, dsn, slot) < 0)
        abort();
    *status = wct_run(cmd, &out);
    free(cmd);
    return out;
}

static char *current_lsn(const char *dsn)
{
    return wct_sql_value(dsn, "SELECT pg_current_wal_lsn()");
}

/* A database with the outbox and a wal2json slot; returns the DSN. */
static char *outbox_db(const char *slot)
{
    char *dsn = wct_create_db("stream"), *sql;
    wct_sql(dsn, OUTBOX_DDL);
    if (asprintf(&sql, "SELECT pg_create_logical_replication_slot('%s', 'wal2json')", slot) < 0)
        abort();
    wct_sql(dsn, sql);
    free(sql);
    return dsn;
}

/* Drop a test's slot when done so that slots (and the WAL they hold) do not pile up. */
static void drop_slot(const char *dsn, const char *slot)
{
    char *sql;
    if (asprintf(&sql,
                 "DO $$ BEGIN FOR i IN 1..100 LOOP BEGIN PERFORM pg_drop_replication_slot(slot_name) "
                 "FROM pg_replication_slots WHERE slot_name = '%s'; RETURN; "
                 "EXCEPTION WHEN object_in_use THEN PERFORM pg_sleep(0.05); END; END LOOP; END $$",
                 slot) < 0)
        abort();
    wct_sql(dsn, sql);
    free(sql);
}

Test(slot, create_status_drop)
{
    char *dsn = wct_create_db("slot"), *slot = wct_unique("s");
    int st;
    char *out = run_walcast(dsn, slot, "slot create", &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "created"), "%s", out);
    free(out);

    out = run_walcast(dsn, slot, "slot create", &st);
    cr_assert_eq(st, 0, "create is idempotent: %s", out);
    cr_assert(strstr(out, "already exists"), "%s", out);
    free(out);

    out = run_walcast(dsn, slot, "slot status --json", &st);
    cr_assert_eq(st, 0, "%s", out);
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    cr_assert_not_null(j, "status --json is JSON: %s", out);
    cr_assert_str_eq(json_string_value(json_object_get(j, "plugin")), "wal2json");
    cr_assert(json_is_false(json_object_get(j, "active")));
    cr_assert(json_is_null(json_object_get(j, "active_pid")));
    wc_lsn l;
    cr_assert_eq(wc_lsn_parse(json_string_value(json_object_get(j, "confirmed_flush_lsn")), &l), 0);
    cr_assert_eq(wc_lsn_parse(json_string_value(json_object_get(j, "restart_lsn")), &l), 0);
    cr_assert(json_integer_value(json_object_get(j, "retained_wal_bytes")) >= 0);
    cr_assert(json_integer_value(json_object_get(j, "lag_bytes")) >= 0);
    cr_assert_str_eq(json_string_value(json_object_get(j, "wal_status")), "reserved");
    cr_assert(json_is_integer(json_object_get(j, "safe_wal_size")),
              "max_slot_wal_keep_size is set by services.sh");
    json_decref(j);
    free(out);

    out = run_walcast(dsn, slot, "slot status", &st);
    cr_assert_eq(st, 0);
    cr_assert(strstr(out, "restart_lsn:") && strstr(out, "wal_status:") && strstr(out, "retained WAL:"), "%s",
              out);
    free(out);

    out = run_walcast(dsn, slot, "slot drop", &st);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
    out = run_walcast(dsn, slot, "slot status", &st);
    cr_assert_eq(st, 3, "status of a dropped slot: exit 3, as run gives for a missing slot");
    cr_assert(strstr(out, "does not exist"), "%s", out);
    free(out);
    free(slot);
    free(dsn);
}

Test(slot, other_plugin_is_refused)
{
    char *dsn = wct_create_db("slot"), *slot = wct_unique("s"), *sql;
    if (asprintf(&sql, "SELECT pg_create_logical_replication_slot('%s', 'test_decoding')", slot) < 0)
        abort();
    wct_sql(dsn, sql);
    int st;
    char *out = run_walcast(dsn, slot, "slot create", &st);
    cr_assert_eq(st, 1, "exit 1 for a slot with another plugin: %s", out);
    cr_assert(strstr(out, "\"test_decoding\"") && strstr(out, slot), "the error names slot and plugin: %s",
              out);
    free(out);
    if (asprintf(&sql, "SELECT pg_drop_replication_slot('%s')", slot) < 0)
        abort();
    wct_sql(dsn, sql);
    free(slot);
    free(dsn);
}

/* Start a command in the background; returns its pid. */
/* sh -c cmd in a child that dies with the test process (an assertion that ends the test early must not
 * leave it holding ctest's output pipe). */
static pid_t spawn(const char *cmd)
{
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int wait_active(const char *dsn, const char *slot, int want)
{
    char *sql;
    if (asprintf(&sql, "SELECT active FROM pg_replication_slots WHERE slot_name = '%s'", slot) < 0)
        abort();
    for (int i = 0; i < 200; i++) {
        char *v = wct_sql_value(dsn, sql);
        int active = v && strcmp(v, "t") == 0;
        free(v);
        if (active == want) {
            free(sql);
            return 1;
        }
        usleep(50000);
    }
    free(sql);
    return 0;
}

Test(slot, drop_refuses_active_unless_forced)
{
    char *slot = wct_unique("s"), *dsn = outbox_db(slot), *cmd, *dir = wct_tmpdir();
    if (asprintf(&cmd, "exec %s tail --source '%s' --slot %s -o %s/out.jsonl 2>/dev/null", wct_walcast(), dsn,
                 slot, dir) < 0)
        abort();
    pid_t pid = spawn(cmd);
    cr_assert(wait_active(dsn, slot, 1), "tail made the slot active");
    int st;
    char *out = run_walcast(dsn, slot, "slot drop", &st);
    cr_assert_eq(st, 4, "exit 4 for a slot in use by another process, as in run: %s", out);
    cr_assert(strstr(out, "is active for PID") && strstr(out, "--force"), "%s", out);
    free(out);
    out = run_walcast(dsn, slot, "slot drop --force", &st);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    free(cmd);
    free(slot);
    free(dsn);
}

/* Parse tail output: check JSON, order and positions; return the number of lines. */
static long check_tail_output(const char *path, long expect_first_id)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    long n = 0, last_id = expect_first_id - 1;
    wc_lsn last_lsn = 0;
    cr_assert_not_null(f, "output %s exists", path);
    while (getline(&line, &cap, f) > 0) {
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        cr_assert_not_null(j, "line %ld is JSON: %s", n + 1, jerr.text);
        long id = (long)json_integer_value(json_object_get(j, "event_id"));
        cr_assert_eq(id, last_id + 1,
                     "line %ld: event_id %ld follows %ld: no gap, no duplicate, commit order", n + 1, id,
                     last_id);
        wc_lsn lsn;
        cr_assert_eq(wc_lsn_parse(json_string_value(json_object_get(j, "lsn")), &lsn), 0);
        cr_assert_geq(lsn, last_lsn, "commit LSNs never go back");
        cr_assert(json_is_object(json_object_get(j, "payload")) ||
                      json_is_array(json_object_get(j, "payload")),
                  "payload is JSON, not a string");
        cr_assert(json_is_string(json_object_get(j, "commit_time")));
        cr_assert(json_is_string(json_object_get(j, "event_type")));
        last_lsn = lsn;
        last_id = id;
        json_decref(j);
        n++;
    }
    free(line);
    fclose(f);
    return n;
}

Test(tail, events_exactly_once_in_commit_order, .timeout = 300)
{
    char *slot = wct_unique("t"), *dsn = outbox_db(slot), *dir = wct_tmpdir();
    /* 500 single-event transactions, 50 of 20 events, one of 100,000, interleaved with other tables. */
    wct_sql(
        dsn,
        "CREATE PROCEDURE load() LANGUAGE plpgsql AS $$ BEGIN "
        "FOR i IN 1..500 LOOP INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) "
        "VALUES ('order', i::text, 'OrderPlaced', jsonb_build_object('order_id', i, 'total', 10.5)); "
        "INSERT INTO other VALUES (i); COMMIT; END LOOP; "
        "FOR t IN 1..50 LOOP INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) "
        "SELECT 'order', g::text, 'OrderConfirmed', jsonb_build_object('order_id', g) FROM "
        "generate_series(1, 20) g; "
        "COMMIT; END LOOP; END $$");
    wct_sql(dsn, "CALL load()");
    wct_sql(
        dsn,
        "INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) "
        "SELECT 'order', g::text, 'OrderShipped', jsonb_build_object('order_id', g, 's', repeat('x', 50)) "
        "FROM generate_series(1, 100000) g");
    char *end = current_lsn(dsn), *args;
    if (asprintf(&args, "tail --endpos %s -o %s/out.jsonl", end, dir) < 0)
        abort();
    int st;
    char *out = run_walcast(dsn, slot, args, &st);
    cr_assert_eq(st, 0, "%s", out);
    char path[512];
    snprintf(path, sizeof(path), "%s/out.jsonl", dir);
    cr_assert_eq(check_tail_output(path, 1), 500 + 50 * 20 + 100000);
    /* Run again: the cursor says everything was printed. */
    free(out);
    out = run_walcast(dsn, slot, args, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_eq(check_tail_output(path, 1), 500 + 50 * 20 + 100000, "a rerun prints nothing twice");
    free(out);
    free(args);
    free(end);
    drop_slot(dsn, slot);
}

Test(tail, kill_9_and_restart_loses_and_repeats_nothing, .timeout = 300)
{
    char *slot = wct_unique("k"), *dsn = outbox_db(slot), *dir = wct_tmpdir();
    wct_sql(
        dsn,
        "CREATE PROCEDURE load() LANGUAGE plpgsql AS $$ BEGIN "
        "FOR t IN 1..3000 LOOP INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) "
        "SELECT 'order', g::text, 'OrderPlaced', jsonb_build_object('order_id', g, 'pad', repeat('p', 200)) "
        "FROM generate_series(1, 1 + t % 50) g; COMMIT; END LOOP; END $$");
    wct_sql(dsn, "CALL load()");
    char *total = wct_sql_value(dsn, "SELECT count(*) FROM domain_events");
    char *end = current_lsn(dsn), *cmd;
    if (asprintf(&cmd, "exec %s tail --source '%s' --slot %s --endpos %s -o %s/out.jsonl 2>>%s/log",
                 wct_walcast(), dsn, slot, end, dir, dir) < 0)
        abort();
    srand((unsigned)getpid());
    int kills = 0;
    for (int round = 0; round < 8; round++) {
        pid_t pid = spawn(cmd);
        usleep((useconds_t)(50000 + rand() % 250000));
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "tail finished cleanly");
            break;
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        kills++;
        wait_active(dsn, slot, 0);
    }
    cr_assert_geq(kills, 1, "tail was killed at least once mid-stream");
    char *args;
    if (asprintf(&args, "tail --endpos %s -o %s/out.jsonl", end, dir) < 0)
        abort();
    int st;
    char *out = run_walcast(dsn, slot, args, &st);
    cr_assert_eq(st, 0, "%s", out);
    char path[512];
    snprintf(path, sizeof(path), "%s/out.jsonl", dir);
    cr_assert_eq(check_tail_output(path, 1), atol(total), "after %d kills: every event exactly once", kills);
    free(out);
    free(args);
    free(cmd);
    free(end);
    free(total);
    drop_slot(dsn, slot);
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The slot's confirmed_flush_lsn and restart_lsn (0 when the query fails). */
static void slot_lsns(const char *dsn, const char *slot, wc_lsn *confirmed, wc_lsn *restart)
{
    char *sql;
    if (asprintf(&sql,
                 "SELECT confirmed_flush_lsn, restart_lsn FROM pg_replication_slots WHERE slot_name = '%s'",
                 slot) < 0)
        abort();
    PGconn *c = wct_pg_connect(dsn);
    PGresult *r = PQexec(c, sql);
    *confirmed = *restart = 0;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        wc_lsn_parse(PQgetvalue(r, 0, 0), confirmed);
        wc_lsn_parse(PQgetvalue(r, 0, 1), restart);
    }
    PQclear(r);
    PQfinish(c);
    free(sql);
}

/*
 * An outbox that stays idle while the rest of the database writes (10,000 transactions, no outbox row): the
 * slot's confirmed_flush_lsn follows the WAL past all of it, and its restart_lsn too (the WAL is not
 * retained), without an event printed. The condition is the LSNs themselves, not a lag against a WAL
 * position that keeps moving; the tail process is killed and reaped before any assertion.
 */
Test(tail, idle_outbox_does_not_pin_wal, .timeout = 300)
{
    char *slot = wct_unique("i"), *dsn = outbox_db(slot), *dir = wct_tmpdir(), *cmd;
    if (asprintf(&cmd, "exec %s tail --source '%s' --slot %s -o %s/out.jsonl 2>/dev/null", wct_walcast(), dsn,
                 slot, dir) < 0)
        abort();
    pid_t pid = spawn(cmd);
    int active = wait_active(dsn, slot, 1);
    wc_lsn s0 = 0, e0 = 0, confirmed = 0, restart = 0;
    if (active) {
        wct_sql(dsn, "CREATE PROCEDURE busy() LANGUAGE plpgsql AS $$ BEGIN "
                     "FOR i IN 1..10000 LOOP INSERT INTO other VALUES (i); COMMIT; END LOOP; END $$");
        char *start_lsn = current_lsn(dsn);
        wct_sql(dsn, "CALL busy()");
        char *end = current_lsn(dsn);
        wc_lsn_parse(start_lsn, &s0);
        wc_lsn_parse(end, &e0);
        free(start_lsn);
        free(end);
        /* restart_lsn moves at a running-transactions record the slot has passed: a checkpoint writes one. */
        for (long long deadline = mono_ms() + 60000; mono_ms() < deadline;) {
            wct_sql(dsn, "CHECKPOINT");
            slot_lsns(dsn, slot, &confirmed, &restart);
            if (confirmed >= e0 && restart >= e0)
                break;
            usleep(200000);
        }
    }
    kill(pid, SIGTERM);
    int status = -1;
    waitpid(pid, &status, 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/out.jsonl", dir);
    int printed = check_tail_output(path, 1);
    drop_slot(dsn, slot);
    free(cmd);
    if (asprintf(&cmd, "rm -rf '%s'", dir) >= 0) {
        wct_run(cmd, NULL);
        free(cmd);
    }
    free(dir);
    free(dsn);
    free(slot);
    cr_assert(active, "walcast tail did not start streaming its slot");
    cr_assert_gt(e0 - s0, 500000, "the busy workload wrote WAL (%llu bytes)", (unsigned long long)(e0 - s0));
    cr_assert_geq(confirmed, e0,
                  "confirmed_flush_lsn did not follow the WAL past the busy workload within 60 s: " WC_LSN_FMT
                  ", the workload ended at " WC_LSN_FMT,
                  WC_LSN_ARGS(confirmed), WC_LSN_ARGS(e0));
    cr_assert_geq(restart, e0,
                  "the slot still retains the busy workload's WAL after 60 s: restart_lsn " WC_LSN_FMT
                  ", the workload ran from " WC_LSN_FMT " to " WC_LSN_FMT,
                  WC_LSN_ARGS(restart), WC_LSN_ARGS(s0), WC_LSN_ARGS(e0));
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "SIGTERM stops tail cleanly (status 0x%x)",
              status);
    cr_assert_eq(printed, 0, "no outbox events were printed");
}
