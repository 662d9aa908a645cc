/*
 * test_outbox.c - the outbox is checked before anything streams (a misspelled table or column, a type
 * walcast cannot use, a role that may not read it: refused, nothing confirmed), and poison rows (a null
 * event type, a null or non-JSON payload, a column renamed away) are dead letters, not the end of the
 * stream.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orders_env.h"
#include "run_env.h"

#define REDIS_DB 5

static const char config_fmt[] =
    "source:\n"
    "  slot: placeholder\n"
    "  outbox:\n"
    "    table: %s\n"
    "    columns:\n"
    "      occurred_at: %s\n"
    "      event_type: %s\n"
    "engine:\n"
    "  dead_letter_sink: readdb\n"
    "  heartbeat_interval_ms: 0\n"
    "  retry_base_ms: 50\n"
    "  retry_max_ms: 500\n"
    "sinks:\n"
    "  readdb:\n"
    "    type: postgres\n"
    "  cache:\n"
    "    type: redis\n"
    "projections:\n"
    "  pg:\n"
    "    sink: readdb\n"
    "    on:\n"
    "      OrderPlaced:\n"
    "        - sql: INSERT INTO seen (order_id, total) VALUES ($1::bigint, $2::numeric)\n"
    "          params: [payload.order_id, payload.total]\n"
    "  r:\n"
    "    sink: cache\n"
    "    on:\n"
    "      OrderPlaced:\n"
    "        - [ZINCRBY, totals, \"{payload.total}\", all]\n";

static void setup(struct renv *e, const char *outbox_sql)
{
    renv_setup(e, REDIS_DB, outbox_sql);
    wct_sql(e->read, "CREATE TABLE seen (order_id bigint PRIMARY KEY, total numeric NOT NULL)");
}

static void put(struct renv *e, int id, const char *total)
{
    renv_src(e,
             "INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) VALUES ('order', "
             "'%d', "
             "'OrderPlaced', '{\"order_id\": %d, \"total\": %s}')",
             id, id, total);
}

static char *confirmed(struct renv *e)
{
    char *sql =
        xprintf("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '%s'", e->slot);
    char *v = wct_sql_value(e->src, sql);
    free(sql);
    return v;
}

/* walcast run with the configuration as it is: must exit 2 at once, with every piece of want in its
 * message, and must have confirmed nothing. */
static void expect_refused(struct renv *e, const char *const *want, int nwant)
{
    char *before = confirmed(e);
    /* (timeout: a walcast that does not refuse streams on; the status is then 124) */
    char *cmd = xprintf("timeout 10 %s run -c %s 2>&1", wct_walcast(), e->config), *out;
    int st = wct_run(cmd, &out);
    free(cmd);
    cr_assert_eq(st, 2, "refused with exit 2 (configuration), not streamed:\n%s", out);
    for (int i = 0; i < nwant; i++)
        cr_assert(strstr(out, want[i]), "the error says \"%s\":\n%s", want[i], out);
    char *after = confirmed(e);
    cr_assert_str_eq(after, before, "the slot was not confirmed past anything");
    char *n = renv_redis(e, "EXISTS walcast:cursor:%s", e->slot);
    cr_assert_str_eq(n, "0", "no sink was written to");
    free(n);
    free(out);
    free(before);
    free(after);
}

Test(outbox, misspelled_table_or_column_is_refused_before_anything_is_confirmed, .timeout = 120)
{
    struct renv e;
    setup(&e, NULL);
    put(&e, 1, "10");
    put(&e, 2, "20");

    renv_config(&e, config_fmt, "public.domain_evnts", "occurred_at", "event_type");
    const char *table[] = {"outbox table \"public.domain_evnts\" does not exist", "source.outbox.table",
                           "did you mean \"public.domain_events\"", "confirm the slot past"};
    expect_refused(&e, table, 4);

    renv_config(&e, config_fmt, "public.domain_events", "when", "event_type");
    const char *column[] = {"has no column \"when\"", "source.outbox.columns.occurred_at",
                            "did you mean \"occurred_at\"", "set the key to \"\""};
    expect_refused(&e, column, 4);

    /* A type walcast cannot route by. */
    renv_src(&e, "ALTER TABLE domain_events ADD COLUMN kind_code int");
    renv_config(&e, config_fmt, "public.domain_events", "occurred_at", "kind_code");
    const char *type[] = {"column \"kind_code\"", "is of type integer", "the event type must be text"};
    expect_refused(&e, type, 3);

    /* Right names: the events that were there all along are applied. */
    renv_config(&e, config_fmt, "public.domain_events", "occurred_at", "event_type");
    pid_t pid = renv_start(&e, NULL);
    put(&e, 3, "30");
    cr_assert(renv_wait_applied(&e, "readdb", 20000), "%s", renv_log(&e));
    char *n = wct_sql_value(e.read, "SELECT count(*) FROM seen");
    cr_assert_str_eq(n, "3", "nothing was lost to the refused starts");
    free(n);
    cr_assert_eq(renv_stop(pid, SIGTERM, 5000), 0);
    renv_drop_slot(&e, e.slot);
}

Test(outbox, a_role_that_cannot_read_the_outbox_is_refused, .timeout = 60)
{
    struct renv e;
    setup(&e, NULL);
    char *role = wct_unique("eo_noread");
    renv_src(&e, "CREATE ROLE %s LOGIN REPLICATION", role);
    char *dsn = xprintf("%s user=%s", e.src, role);
    setenv("WALCAST_SOURCE_DSN", dsn, 1);
    renv_config(&e, config_fmt, "public.domain_events", "occurred_at", "event_type");
    char *grant = xprintf("GRANT SELECT ON public.domain_events TO %s", role);
    const char *want[] = {"may not read the outbox table \"public.domain_events\"", grant};
    expect_refused(&e, want, 2);
    free(grant);
    setenv("WALCAST_SOURCE_DSN", e.src, 1);
    renv_drop_slot(&e, e.slot);
    renv_src(&e, "DROP ROLE %s", role);
    free(dsn);
    free(role);
}

Test(outbox, slot_check_reports_the_outbox, .timeout = 60)
{
    struct renv e;
    setup(&e, NULL);
    renv_config(&e, config_fmt, "public.domain_evnts", "occurred_at", "event_type");
    char *cmd = xprintf("%s slot check -c %s 2>&1", wct_walcast(), e.config), *out;
    int st = wct_run(cmd, &out);
    free(cmd);
    cr_assert_eq(st, 1, "%s", out);
    cr_assert(strstr(out, "outbox") && strstr(out, "FAIL") &&
                  strstr(out, "\"public.domain_evnts\" does not exist"),
              "%s", out);
    free(out);
    renv_config(&e, config_fmt, "public.domain_events", "occurred_at", "event_type");
    cmd = xprintf("%s slot check -c %s 2>&1", wct_walcast(), e.config);
    st = wct_run(cmd, &out);
    free(cmd);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "event_type text") && strstr(out, "payload jsonb") && strstr(out, "readable"), "%s",
              out);
    cr_assert(strstr(out, "replay_order") && strstr(out, "event_id (bigint)"), "%s", out);
    free(out);
    renv_drop_slot(&e, e.slot);
}

/*
 * Each kind of poison row between good events while walcast runs: a null event type and a row without
 * the event-type column (renamed away and back) go to the dead-letter sink with their position and why;
 * a null and a non-JSON payload are dead letters of each projection that reads the payload. The good
 * events around them are applied and walcast keeps running.
 */
Test(poison, each_kind_is_a_dead_letter_and_the_stream_goes_on, .timeout = 120)
{
    struct renv e;
    setup(
        &e,
        "CREATE TABLE domain_events (event_id bigserial PRIMARY KEY, aggregate_type text, aggregate_id text, "
        "event_type text, payload text, occurred_at timestamptz NOT NULL DEFAULT now())");
    renv_config(&e, config_fmt, "public.domain_events", "occurred_at", "event_type");
    pid_t pid = renv_start(&e, NULL);
    cr_assert(renv_wait_log(&e, "streaming slot", 10000), "%s", renv_log(&e));

    put(&e, 1, "1");
    renv_src(&e,
             "INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) VALUES ('order', "
             "'x', NULL, '{\"order_id\": 100, \"total\": 100}')");
    put(&e, 2, "2");
    renv_src(&e,
             "INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) VALUES ('order', "
             "'x', 'OrderPlaced', NULL)");
    put(&e, 3, "4");
    renv_src(&e,
             "INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) VALUES ('order', "
             "'x', 'OrderPlaced', 'not json at all')");
    put(&e, 4, "8");
    renv_src(&e, "ALTER TABLE domain_events RENAME COLUMN event_type TO kind");
    renv_src(&e,
             "INSERT INTO domain_events (aggregate_type, aggregate_id, kind, payload) VALUES ('order', 'x', "
             "'OrderPlaced', '{\"order_id\": 101, \"total\": 100}')");
    renv_src(&e, "ALTER TABLE domain_events RENAME COLUMN kind TO event_type");
    put(&e, 5, "16");
    cr_assert(renv_wait_applied(&e, "readdb", 20000), "walcast caught up:\n%s", renv_log(&e));
    cr_assert(renv_wait_applied(&e, "cache", 20000), "%s", renv_log(&e));
    cr_assert(renv_running(pid), "walcast is still running:\n%s", renv_log(&e));

    char *v = wct_sql_value(e.read, "SELECT string_agg(order_id::text, ',' ORDER BY order_id) FROM seen");
    cr_assert_str_eq(v, "1,2,3,4,5", "every good event applied, no poison row applied");
    free(v);
    v = renv_redis(&e, "ZSCORE totals all");
    cr_assert_str_eq(v, "31", "1+2+4+8+16 in Redis");
    free(v);

    v = wct_sql_value(
        e.read,
        "SELECT string_agg(coalesce(event_type, '-') || ' ' || (lsn IS NOT NULL AND idx IS NOT NULL) || ' ' "
        "|| error, E'\\n' ORDER BY lsn, idx) FROM walcast_dead_letters");
    cr_assert_not_null(v, "dead letters in readdb");
    cr_assert(strstr(v, "- true the event type (column \"event_type\") is null"), "null event type:\n%s", v);
    cr_assert(strstr(v, "OrderPlaced true projection \"pg\": payload field \"order_id\" is missing (the "
                        "payload is null)"),
              "null payload:\n%s", v);
    cr_assert(strstr(v, "payload is not valid JSON"), "non-JSON payload:\n%s", v);
    cr_assert(strstr(v, "- true the outbox row has no column \"event_type\"") &&
                  strstr(v, "renamed or dropped"),
              "a row without the event-type column:\n%s", v);
    free(v);
    v = wct_sql_value(e.read, "SELECT count(*) FROM walcast_dead_letters");
    cr_assert_str_eq(v, "4", "one dead letter per poison row in the dead-letter sink");
    free(v);
    v = renv_redis(&e, "XLEN walcast:dead_letters:%s", e.slot);
    cr_assert_str_eq(v, "2", "the payload problems are dead letters of the Redis projection too");
    free(v);
    cr_assert_eq(renv_stop(pid, SIGTERM, 5000), 0);
    renv_drop_slot(&e, e.slot);
}
