/* test_sink_postgres.c - the PostgreSQL sink against the private test server. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "walcast/config.h"
#include "walcast/sink.h"

/* One test's world: a fresh database, a configuration loaded from YAML, the sink opened on it. */
struct fx {
    char *dsn;
    char *dir;
    struct wc_config *cfg;
    struct wc_sink *s;
};

static const char orders_yaml[] =
    "  orders:\n"
    "    sink: readdb\n"
    "    on:\n"
    "      OrderPlaced:\n"
    "        - sql: >-\n"
    "            INSERT INTO orders (order_id, customer_id, total, placed_at, note)\n"
    "            VALUES ($1::bigint, $2::bigint, $3::numeric, $4::timestamptz, $5)\n"
    "          params: [payload.order_id, payload.customer_id, payload.total, payload.placed_at, "
    "payload.note]\n"
    "      OrderShipped:\n"
    "        - sql: \"UPDATE orders SET shipped = true WHERE order_id = $1::bigint\"\n"
    "          params: [payload.order_id]\n"
    "  docs:\n"
    "    sink: readdb\n"
    "    on:\n"
    "      OrderPlaced:\n"
    "        - sql: \"INSERT INTO docs (event_id, body, lsn) VALUES ($1, $2::jsonb, $3)\"\n"
    "          params: [event_id, payload, lsn]\n";

static const char orders_sql[] =
    "CREATE TABLE orders (order_id bigint PRIMARY KEY, customer_id bigint NOT NULL, total numeric(12,2),"
    " placed_at timestamptz, note text, shipped boolean NOT NULL DEFAULT false);"
    "CREATE TABLE docs (event_id text PRIMARY KEY, body jsonb NOT NULL, lsn text)";

static struct wc_config *load_yaml(const char *dir, const char *dsn, const char *on_error,
                                   const char *projections)
{
    char path[512];
    struct wc_err err = {0};
    struct wc_config *cfg;
    FILE *f;

    snprintf(path, sizeof(path), "%s/walcast.yaml", dir);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "source:\n"
            "  dsn: \"\"\n"
            "  slot: testslot\n"
            "engine:\n"
            "  on_error: %s\n"
            "sinks:\n"
            "  readdb:\n"
            "    type: postgres\n"
            "    dsn: \"%s\"\n"
            "projections:\n"
            "%s",
            on_error, dsn, projections);
    fclose(f);
    cfg = wc_config_load(path, &err);
    cr_assert_not_null(cfg, "config: %s", err.msg);
    return cfg;
}

static struct wc_sink *open_sink(struct wc_config *cfg)
{
    struct wc_err err = {0};
    struct wc_sink *s;

    cr_assert_eq(cfg->nsink, 1);
    s = wc_sink_new(cfg, &cfg->sinks[0], &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_assert_str_eq(s->ops->type, "postgres");
    cr_assert_eq(s->ops->open(s, &err), 0, "open: %s", err.msg);
    return s;
}

static void fx_init(struct fx *f, const char *on_error, const char *projections, const char *setup_sql)
{
    memset(f, 0, sizeof(*f));
    f->dsn = wct_create_db("pgsink");
    f->dir = wct_tmpdir();
    if (setup_sql)
        wct_sql(f->dsn, setup_sql);
    f->cfg = load_yaml(f->dir, f->dsn, on_error, projections);
    f->s = open_sink(f->cfg);
}

static void fx_fini(struct fx *f)
{
    char cmd[600];

    wc_sink_free(f->s);
    wc_config_free(f->cfg);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    wct_run(cmd, NULL);
    free(f->dir);
    free(f->dsn);
}

/* Build an event the way the decoder would (borrowed strings), apply it, free the parsed payload. */
static int apply_full(struct wc_sink *s, wc_lsn lsn, int64_t idx, const char *type, const char *payload,
                      struct wc_err *err)
{
    struct wc_event ev;
    char event_id[64], agg_id[32];
    int rc;

    memset(&ev, 0, sizeof(ev));
    ev.pos.lsn = lsn;
    ev.pos.index = idx;
    ev.end_lsn = lsn + 0x30;
    ev.commit_time = "2026-11-27T10:39:53.655523Z";
    snprintf(event_id, sizeof(event_id), "ev-%" PRIX64 "-%" PRId64, lsn, idx);
    snprintf(agg_id, sizeof(agg_id), "%" PRId64, idx);
    const char *vals[WC_COL_COUNT] = {event_id, "order", agg_id, type, payload, "2026-11-27T10:39:50Z"};
    for (int c = 0; c < WC_COL_COUNT; c++) {
        ev.col[c].kind = vals[c] ? WC_VAL_STRING : WC_VAL_NULL;
        ev.col[c].text = vals[c];
        ev.col[c].len = vals[c] ? strlen(vals[c]) : 0;
    }
    ev.size = payload ? strlen(payload) + 200 : 200;
    rc = s->ops->apply(s, &ev, err);
    if (ev.payload_json)
        json_decref(ev.payload_json);
    /* Scribble over the borrowed memory: the sink must have copied what it keeps. */
    memset(event_id, 'X', sizeof(event_id) - 1);
    memset(agg_id, 'Y', sizeof(agg_id) - 1);
    return rc;
}

static void apply_ok(struct wc_sink *s, wc_lsn lsn, int64_t idx, const char *type, const char *payload)
{
    struct wc_err err = {0};
    /* A heap copy of the payload, destroyed right after the call like the decoder's buffer. */
    char *copy = payload ? strdup(payload) : NULL;

    cr_assert_eq(apply_full(s, lsn, idx, type, copy, &err), 0, "apply: %s", err.msg);
    if (copy)
        memset(copy, '#', strlen(copy));
    free(copy);
}

static void commit_ok(struct wc_sink *s, wc_lsn lsn, int64_t idx)
{
    struct wc_err err = {0};

    cr_assert_eq(s->ops->commit(s, (struct wc_pos){lsn, idx}, &err), 0, "commit: %s", err.msg);
}

static void assert_cursor(struct wc_sink *s, wc_lsn lsn, int64_t idx)
{
    struct wc_err err = {0};
    struct wc_pos pos;
    int found = -1;

    cr_assert_eq(s->ops->read_cursor(s, &pos, &found, &err), 0, "read_cursor: %s", err.msg);
    cr_assert_eq(found, 1);
    cr_assert_eq(pos.lsn, lsn, "cursor lsn %" PRIX64 ", expected %" PRIX64, pos.lsn, lsn);
    cr_assert_eq(pos.index, idx, "cursor index %" PRId64 ", expected %" PRId64, pos.index, idx);
}

static void assert_value(const char *dsn, const char *sql, const char *expected)
{
    char *v = wct_sql_value(dsn, sql);

    if (expected == NULL)
        cr_assert_null(v, "%s: expected NULL, got \"%s\"", sql, v);
    else
        cr_assert(v != NULL && strcmp(v, expected) == 0, "%s: expected \"%s\", got \"%s\"", sql, expected,
                  v ? v : "(null)");
    free(v);
}

static char *order_payload(long id, long customer)
{
    char *p;
    cr_assert(
        asprintf(
            &p,
            "{\"order_id\": %ld, \"customer_id\": %ld, \"total\": 1234567890.25,"
            " \"placed_at\": \"2026-11-27T10:39:50.5Z\", \"note\": \"n%ld\", \"items\": [{\"sku\": \"a\"}]}",
            id, customer, id) > 0);
    return p;
}

static void apply_order(struct wc_sink *s, wc_lsn lsn, int64_t idx, long id, long customer)
{
    char *p = order_payload(id, customer);
    apply_ok(s, lsn, idx, "OrderPlaced", p);
    free(p);
}

Test(sink_postgres, creates_tables_and_has_no_cursor)
{
    struct fx f;
    struct wc_err err = {0};
    struct wc_pos pos;
    int found = -1;

    fx_init(&f, "dead_letter", orders_yaml, orders_sql);
    cr_assert_eq(f.s->ops->read_cursor(f.s, &pos, &found, &err), 0, "%s", err.msg);
    cr_assert_eq(found, 0);
    cr_assert_eq(wc_pos_cmp(pos, WC_POS_NONE), 0);
    assert_value(f.dsn, "SELECT count(*) FROM walcast_dead_letters", "0");
    assert_value(f.dsn,
                 "SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attnum)"
                 " FROM pg_attribute WHERE attrelid = 'walcast_cursor'::regclass AND attnum > 0",
                 "slot:text,sink:text,lsn:pg_lsn,idx:bigint,updated_at:timestamp with time zone");
    /* Opening again (a reconnect) finds the tables and prepares again on the new connection. */
    f.s->ops->close(f.s);
    cr_assert_eq(f.s->ops->open(f.s, &err), 0, "%s", err.msg);
    assert_value(f.dsn,
                 "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'walcast'"
                 " AND datname = current_database()",
                 "1");
    fx_fini(&f);
}

Test(sink_postgres, insert_with_typed_casts)
{
    struct fx f;

    fx_init(&f, "dead_letter", orders_yaml, orders_sql);
    apply_order(f.s, 0x16B374D848ULL, 0, 42, 7);
    cr_assert_eq(f.s->applied, 1);
    commit_ok(f.s, 0x16B374D848ULL, 0);
    assert_value(f.dsn,
                 "SELECT customer_id || '|' || total || '|' || note || '|' || shipped FROM orders"
                 " WHERE order_id = 42",
                 "7|1234567890.25|n42|false");
    assert_value(f.dsn, "SELECT placed_at = '2026-11-27 10:39:50.5+00' FROM orders", "t");
    /* Several rules for one type run in configuration order, all in the same commit. */
    assert_value(f.dsn, "SELECT lsn FROM docs WHERE event_id = 'ev-16B374D848-0'", "16/B374D848");
    apply_ok(f.s, 0x16B374D900ULL, 0, "OrderShipped", "{\"order_id\": 42}");
    commit_ok(f.s, 0x16B374D900ULL, 0);
    assert_value(f.dsn, "SELECT shipped FROM orders WHERE order_id = 42", "t");
    assert_cursor(f.s, 0x16B374D900ULL, 0);
    fx_fini(&f);
}

Test(sink_postgres, whole_payload_as_jsonb)
{
    struct fx f;

    fx_init(&f, "dead_letter", orders_yaml, orders_sql);
    apply_ok(f.s, 0x100, 0, "OrderPlaced",
             "{\"order_id\": 1, \"customer_id\": 2, \"total\": 3, \"placed_at\": \"2026-01-01T00:00:00Z\","
             " \"note\": \"caf\\u00e9 \\\"quoted\\\"\", \"nested\": {\"a\": [1, 2, {\"b\": null}]}}");
    commit_ok(f.s, 0x100, 0);
    assert_value(f.dsn, "SELECT body->'nested'->'a'->2 FROM docs", "{\"b\": null}");
    assert_value(f.dsn, "SELECT body->>'note' FROM docs", "café \"quoted\"");
    assert_value(f.dsn, "SELECT note FROM orders", "café \"quoted\"");
    fx_fini(&f);
}

Test(sink_postgres, null_params)
{
    struct fx f;

    fx_init(&f, "dead_letter", orders_yaml, orders_sql);
    apply_ok(f.s, 0x200, 0, "OrderPlaced",
             "{\"order_id\": 5, \"customer_id\": 6, \"total\": null, \"placed_at\": null, \"note\": null}");
    commit_ok(f.s, 0x200, 0);
    assert_value(f.dsn,
                 "SELECT count(*) FROM orders WHERE order_id = 5 AND total IS NULL AND placed_at IS NULL"
                 " AND note IS NULL",
                 "1");
    assert_value(f.dsn, "SELECT count(*) FROM walcast_dead_letters", "0");
    fx_fini(&f);
}

Test(sink_postgres, cursor_round_trip)
{
    struct fx f;
    struct wc_err err = {0};

    fx_init(&f, "dead_letter", orders_yaml, orders_sql);
    apply_order(f.s, 0xFFFFFFFF00000010ULL, 3, 1, 1);
    commit_ok(f.s, 0xFFFFFFFF00000010ULL, 3);
    assert_cursor(f.s, 0xFFFFFFFF00000010ULL, 3);
    assert_value(f.dsn, "SELECT slot || ' ' || sink || ' ' || lsn || ' ' || idx FROM walcast_cursor",
                 "testslot readdb FFFFFFFF/10 3");
    /* A finished transaction: (end LSN, -1). */
    commit_ok(f.s, 0xFFFFFFFF00000040ULL, -1);
    assert_cursor(f.s, 0xFFFFFFFF00000040ULL, -1);
    /* A new connection reads the same. */
    f.s->ops->close(f.s);
    cr_assert_eq(f.s->ops->open(f.s, &err), 0, "%s", err.msg);
    assert_cursor(f.s, 0xFFFFFFFF00000040ULL, -1);
    assert_value(f.dsn, "SELECT count(*) FROM walcast_cursor", "1");
    fx_fini(&f);
}

/* The applied-through position: NOTIFY walcast_applied '<slot> <sink> <lsn>' when a commit (with events or
 * the cursor alone) commits, and walcast_cursor.lsn is what a listener then reads. */
static void expect_notify(PGconn *c, const char *want)
{
    PGnotify *n = NULL;

    for (int i = 0; i < 500 && n == NULL; i++) {
        cr_assert_eq(PQconsumeInput(c), 1, "%s", PQerrorMessage(c));
        if ((n = PQnotifies(c)) == NULL)
            usleep(10000);
    }
    cr_assert_not_null(n, "no notification \"%s\"", want);
    cr_assert_str_eq(n->relname, "walcast_applied");
    cr_assert_str_eq(n->extra, want);
    PQfreemem(n);
}

Test(sink_postgres, applied_position_notified_with_the_cursor)
{
    struct fx f;

    fx_init(&f, "dead_letter", orders_yaml, orders_sql);
    PGconn *l = wct_pg_connect(f.dsn);
    PQclear(PQexec(l, "LISTEN walcast_applied"));
    apply_order(f.s, 0x3000, 0, 1, 1);
    commit_ok(f.s, 0x3040, -1);
    expect_notify(l, "testslot readdb 0/3040");
    assert_value(f.dsn, "SELECT count(*) FROM orders", "1");
    commit_ok(f.s, 0x4000, -1);
    expect_notify(l, "testslot readdb 0/4000");
    assert_value(f.dsn, "SELECT lsn FROM walcast_cursor WHERE slot = 'testslot' AND sink = 'readdb'",
                 "0/4000");
    PQfinish(l);
    fx_fini(&f);
}

Test(sink_postgres, empty_commit_moves_cursor)
{
    struct fx f;

    fx_init(&f, "dead_letter", orders_yaml, orders_sql);
    commit_ok(f.s, 0x1000, -1);
    assert_cursor(f.s, 0x1000, -1);
    commit_ok(f.s, 0x2000, -1);
    assert_cursor(f.s, 0x2000, -1);
    assert_value(f.dsn, "SELECT count(*) FROM orders", "0");
    fx_fini(&f);
}

Test(sink_postgres, no_rules_is_not_queued)
{
    struct fx f;

    fx_init(&f, "dead_letter", orders_yaml, orders_sql);
    apply_ok(f.s, 0x300, 0, "SomethingElse", "{}");
    cr_assert_eq(f.s->applied, 0);
    cr_assert_eq(f.s->dead_lettered, 0);
    commit_ok(f.s, 0x300, 0);
    assert_value(f.dsn, "SELECT count(*) FROM walcast_dead_letters", "0");
    assert_cursor(f.s, 0x300, 0);
    fx_fini(&f);
}

Test(sink_postgres, unique_violation_goes_to_dead_letters)
{
    struct fx f;

    fx_init(&f, "dead_letter", orders_yaml, orders_sql);
    apply_order(f.s, 0x5000, 0, 1, 10);
    apply_order(f.s, 0x5000, 1, 2, 10);
    apply_order(f.s, 0x5000, 2, 1, 11); /* order 1 again */
    apply_order(f.s, 0x5100, 0, 3, 10);
    apply_ok(f.s, 0x5100, 1, "OrderShipped", "{\"order_id\": 2}");
    cr_assert_eq(f.s->applied, 5);
    commit_ok(f.s, 0x5100, 1);
    assert_value(f.dsn,
                 "SELECT string_agg(order_id || ':' || customer_id || ':' || shipped, ',' ORDER BY order_id)"
                 " FROM orders",
                 "1:10:false,2:10:true,3:10:false");
    assert_value(f.dsn, "SELECT count(*) FROM walcast_dead_letters", "1");
    assert_value(f.dsn,
                 "SELECT slot || ' ' || sink || ' ' || lsn || ' ' || idx || ' ' || event_id || ' ' ||"
                 " event_type || ' ' || aggregate_type || ' ' || aggregate_id FROM walcast_dead_letters",
                 "testslot readdb 0/5000 2 ev-5000-2 OrderPlaced order 2");
    assert_value(f.dsn, "SELECT (payload::jsonb)->>'customer_id' FROM walcast_dead_letters", "11");
    assert_value(f.dsn,
                 "SELECT error LIKE '%projection \"orders\"%duplicate key value violates unique"
                 " constraint \"orders_pkey\"%' FROM walcast_dead_letters",
                 "t");
    /* The bad event's docs row went with it: an event is applied whole or not at all. */
    assert_value(f.dsn, "SELECT string_agg(event_id, ',' ORDER BY event_id) FROM docs",
                 "ev-5000-0,ev-5000-1,ev-5100-0");
    assert_cursor(f.s, 0x5100, 1);
    cr_assert_eq(f.s->dead_lettered, 1);
    cr_assert_eq(f.s->applied, 4);
    /* The batch was cleared: the next commit does not apply it again. */
    commit_ok(f.s, 0x5200, -1);
    assert_value(f.dsn, "SELECT count(*) FROM walcast_dead_letters", "1");
    assert_cursor(f.s, 0x5200, -1);
    fx_fini(&f);
}

Test(sink_postgres, missing_payload_field_goes_to_dead_letters)
{
    struct fx f;

    fx_init(&f, "dead_letter", orders_yaml, orders_sql);
    apply_order(f.s, 0x6000, 0, 1, 10);
    apply_ok(f.s, 0x6000, 1, "OrderPlaced", "{\"order_id\": 2, \"total\": 1}"); /* no customer_id */
    apply_order(f.s, 0x6000, 2, 3, 10);
    cr_assert_eq(f.s->applied, 2);
    cr_assert_eq(f.s->dead_lettered, 1);
    commit_ok(f.s, 0x6000, 2);
    assert_value(f.dsn, "SELECT string_agg(order_id::text, ',' ORDER BY order_id) FROM orders", "1,3");
    assert_value(f.dsn, "SELECT lsn || ' ' || idx || ' ' || payload FROM walcast_dead_letters",
                 "0/6000 1 {\"order_id\": 2, \"total\": 1}");
    assert_value(f.dsn, "SELECT error LIKE '%customer_id%' FROM walcast_dead_letters", "t");
    assert_value(f.dsn, "SELECT count(*) FROM docs", "2");
    assert_cursor(f.s, 0x6000, 2);
    fx_fini(&f);
}

Test(sink_postgres, engine_dead_letter_for_unknown_event)
{
    struct fx f;
    struct wc_err err = {0};
    struct wc_event ev;

    fx_init(&f, "dead_letter", orders_yaml, orders_sql);
    memset(&ev, 0, sizeof(ev));
    ev.pos = (struct wc_pos){0x7000, 4};
    ev.col[WC_COL_EVENT_ID] = (struct wc_val){WC_VAL_STRING, "e1", 2};
    ev.col[WC_COL_EVENT_TYPE] = (struct wc_val){WC_VAL_STRING, "Mystery", 7};
    ev.col[WC_COL_AGGREGATE_ID] = (struct wc_val){WC_VAL_NUMBER, "99", 2};
    ev.col[WC_COL_PAYLOAD] = (struct wc_val){WC_VAL_NULL, NULL, 0};
    cr_assert_eq(f.s->ops->dead_letter(f.s, NULL, &ev, "no projection for event type \"Mystery\"", &err), 0,
                 "%s", err.msg);
    commit_ok(f.s, 0x7000, 4);
    assert_value(f.dsn,
                 "SELECT lsn || ' ' || idx || ' ' || event_id || ' ' || event_type || ' ' || aggregate_id"
                 " || ' ' || (aggregate_type IS NULL) || ' ' || (payload IS NULL) || ' ' || error"
                 " FROM walcast_dead_letters",
                 "0/7000 4 e1 Mystery 99 true true no projection for event type \"Mystery\"");
    fx_fini(&f);
}

Test(sink_postgres, skip_policy)
{
    struct fx f;

    fx_init(&f, "skip", orders_yaml, orders_sql);
    apply_order(f.s, 0x8000, 0, 1, 10);
    apply_ok(f.s, 0x8000, 1, "OrderPlaced", "{\"order_id\": 2}"); /* render failure */
    apply_order(f.s, 0x8000, 2, 1, 10);                           /* SQL failure */
    apply_order(f.s, 0x8000, 3, 4, 10);
    commit_ok(f.s, 0x8000, 3);
    cr_assert_eq(f.s->skipped, 2);
    cr_assert_eq(f.s->dead_lettered, 0);
    assert_value(f.dsn, "SELECT string_agg(order_id::text, ',' ORDER BY order_id) FROM orders", "1,4");
    assert_value(f.dsn, "SELECT count(*) FROM walcast_dead_letters", "0");
    assert_cursor(f.s, 0x8000, 3);
    fx_fini(&f);
}

Test(sink_postgres, halt_policy_on_missing_field)
{
    struct fx f;
    struct wc_err err = {0};

    fx_init(&f, "halt", orders_yaml, orders_sql);
    commit_ok(f.s, 0x8F00, -1);
    apply_order(f.s, 0x9000, 0, 1, 10);
    cr_assert_eq(apply_full(f.s, 0x9000, 1, "OrderPlaced", "{\"order_id\": 2}", &err), -1);
    cr_assert_eq(err.code, WC_ERR_DATA);
    cr_assert(strstr(err.msg, "sink \"readdb\"") && strstr(err.msg, "customer_id"), "%s", err.msg);
    fx_fini(&f);
}

Test(sink_postgres, halt_policy_on_statement_failure)
{
    struct fx f;
    struct wc_err err = {0};

    fx_init(&f, "halt", orders_yaml, orders_sql);
    commit_ok(f.s, 0x8F00, -1);
    apply_order(f.s, 0x9000, 0, 1, 10);
    apply_order(f.s, 0x9000, 1, 1, 10);
    cr_assert_eq(f.s->ops->commit(f.s, (struct wc_pos){0x9000, 1}, &err), -1);
    cr_assert_eq(err.code, WC_ERR_DATA);
    cr_assert(strstr(err.msg, "duplicate key"), "%s", err.msg);
    assert_value(f.dsn, "SELECT count(*) FROM orders", "0");
    assert_value(f.dsn, "SELECT count(*) FROM walcast_dead_letters", "0");
    assert_cursor(f.s, 0x8F00, -1);
    fx_fini(&f);
}

Test(sink_postgres, close_without_commit_is_atomic)
{
    struct fx f;
    struct wc_err err = {0};

    fx_init(&f, "dead_letter", orders_yaml, orders_sql);
    apply_order(f.s, 0xA000, 0, 1, 10);
    commit_ok(f.s, 0xA000, 0);
    apply_order(f.s, 0xA100, 0, 2, 10);
    apply_ok(f.s, 0xA100, 1, "OrderPlaced", "{}"); /* a queued dead letter */
    f.s->ops->close(f.s);
    assert_value(f.dsn, "SELECT string_agg(order_id::text, ',') FROM orders", "1");
    assert_value(f.dsn, "SELECT count(*) FROM walcast_dead_letters", "0");
    cr_assert_eq(f.s->ops->open(f.s, &err), 0, "%s", err.msg);
    assert_cursor(f.s, 0xA000, 0);
    fx_fini(&f);
}

Test(sink_postgres, connection_loss_is_io)
{
    struct fx f;
    struct wc_err err = {0};

    fx_init(&f, "dead_letter", orders_yaml, orders_sql);
    commit_ok(f.s, 0xB000, -1);
    apply_order(f.s, 0xB100, 0, 1, 10);
    wct_sql(f.dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'walcast'"
                   " AND datname = current_database()");
    cr_assert_eq(f.s->ops->commit(f.s, (struct wc_pos){0xB100, 0}, &err), -1);
    cr_assert_eq(err.code, WC_ERR_IO, "%s", err.msg);
    cr_assert(strstr(err.msg, "sink \"readdb\"") != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "password") == NULL && strstr(err.msg, "user=") == NULL, "%s", err.msg);
    /* The engine closes and opens again, then replays from the durable cursor. */
    f.s->ops->close(f.s);
    cr_assert_eq(f.s->ops->open(f.s, &err), 0, "%s", err.msg);
    assert_cursor(f.s, 0xB000, -1);
    apply_order(f.s, 0xB100, 0, 1, 10);
    commit_ok(f.s, 0xB100, 0);
    assert_value(f.dsn, "SELECT count(*) FROM orders", "1");
    fx_fini(&f);
}

Test(sink_postgres, connect_failure_is_io_and_hides_dsn)
{
    char *dir = wct_tmpdir();
    struct wc_config *cfg = load_yaml(dir, "host=127.0.0.1 port=1 user=someone password=sekrit dbname=nope",
                                      "dead_letter", orders_yaml);
    struct wc_err err = {0};
    struct wc_sink *s = wc_sink_new(cfg, &cfg->sinks[0], &err);
    char cmd[600];

    cr_assert_not_null(s);
    cr_assert_eq(s->ops->open(s, &err), -1);
    cr_assert_eq(err.code, WC_ERR_IO);
    cr_assert(strncmp(err.msg, "sink \"readdb\": could not connect: ", 34) == 0, "%s", err.msg);
    cr_assert(strstr(err.msg, "sekrit") == NULL, "%s", err.msg);
    wc_sink_free(s);
    wc_config_free(cfg);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    wct_run(cmd, NULL);
    free(dir);
}

Test(sink_postgres, bad_statement_is_a_config_error)
{
    char *dsn = wct_create_db("pgsink");
    char *dir = wct_tmpdir();
    struct wc_config *cfg = load_yaml(dir, dsn, "dead_letter",
                                      "  p:\n    sink: readdb\n    on:\n      E:\n"
                                      "        - sql: \"INSERT INTO no_such_table VALUES ($1)\"\n"
                                      "          params: [event_id]\n");
    struct wc_err err = {0};
    struct wc_sink *s = wc_sink_new(cfg, &cfg->sinks[0], &err);
    char cmd[600];

    cr_assert_eq(s->ops->open(s, &err), -1);
    cr_assert_eq(err.code, WC_ERR_CONFIG, "%s", err.msg);
    cr_assert(strstr(err.msg, "projection \"p\"") && strstr(err.msg, "no_such_table"), "%s", err.msg);
    wc_sink_free(s);
    wc_config_free(cfg);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    wct_run(cmd, NULL);
    free(dir);
    free(dsn);
}

Test(sink_postgres, many_events_in_one_commit, .timeout = 120)
{
    struct fx f;
    const int n = 5000;

    fx_init(&f, "dead_letter", orders_yaml, orders_sql);
    for (int i = 0; i < n; i++)
        apply_order(f.s, 0xC000 + (wc_lsn)(i / 10) * 0x100, i % 10, i + 1, i % 17);
    cr_assert_eq(f.s->applied, (uint64_t)n);
    commit_ok(f.s, 0xC000 + (wc_lsn)((n - 1) / 10) * 0x100, (n - 1) % 10);
    assert_value(f.dsn, "SELECT count(*) || ' ' || sum(order_id) FROM orders", "5000 12502500");
    assert_value(f.dsn, "SELECT count(*) FROM docs", "5000");
    assert_cursor(f.s, 0xC000 + (wc_lsn)((n - 1) / 10) * 0x100, (n - 1) % 10);

    /* The same size again with one bad event in the middle: the slow path, still one transaction. */
    for (int i = 0; i < n; i++)
        apply_order(f.s, 0x100000 + (wc_lsn)i * 0x10, 0, i == n / 2 ? 7 : n + i + 1, 1);
    commit_ok(f.s, 0x100000 + (wc_lsn)(n - 1) * 0x10, 0);
    assert_value(f.dsn, "SELECT count(*) FROM orders", "9999");
    assert_value(f.dsn, "SELECT lsn FROM walcast_dead_letters", "0/109C40");
    fx_fini(&f);
}

Test(sink_postgres, deferred_constraint_fails_inside_the_event)
{
    struct fx f;

    fx_init(&f, "dead_letter",
            "  keys:\n    sink: readdb\n    on:\n      KeySet:\n"
            "        - sql: \"INSERT INTO keys (k, event_id) VALUES ($1::int, $2)\"\n"
            "          params: [payload.k, event_id]\n",
            "CREATE TABLE keys (k int, event_id text, CONSTRAINT keys_k UNIQUE (k) DEFERRABLE INITIALLY "
            "DEFERRED)");
    apply_ok(f.s, 0xD000, 0, "KeySet", "{\"k\": 1}");
    apply_ok(f.s, 0xD000, 1, "KeySet", "{\"k\": 2}");
    apply_ok(f.s, 0xD000, 2, "KeySet", "{\"k\": 1}");
    commit_ok(f.s, 0xD000, 2);
    assert_value(f.dsn, "SELECT string_agg(event_id, ',' ORDER BY k) FROM keys", "ev-D000-0,ev-D000-1");
    assert_value(f.dsn, "SELECT idx || ' ' || (error LIKE '%keys_k%') FROM walcast_dead_letters", "2 true");
    assert_cursor(f.s, 0xD000, 2);
    fx_fini(&f);
}

Test(sink_postgres, every_event_bad)
{
    struct fx f;

    fx_init(&f, "dead_letter", orders_yaml, orders_sql);
    apply_ok(f.s, 0xE000, 0, "OrderShipped", "{\"order_id\": \"not a number\"}");
    apply_ok(f.s, 0xE000, 1, "OrderShipped", "{\"order_id\": [1]}");
    commit_ok(f.s, 0xE000, 1);
    assert_value(f.dsn,
                 "SELECT string_agg(idx || ':' || (error LIKE 'projection \"orders\"%: invalid input syntax"
                 " for type bigint%22P02%'), ',' ORDER BY idx) FROM walcast_dead_letters",
                 "0:true,1:true");
    cr_assert_eq(f.s->applied, 0);
    cr_assert_eq(f.s->dead_lettered, 2);
    assert_cursor(f.s, 0xE000, 1);
    fx_fini(&f);
}

/*
 * The engine commits a batch on a thread while it queues the next one. The batch set aside commits
 * alone, with its own dead letters (a duplicate key found by the server, on the commit thread); the
 * next batch, with a dead letter of its own (a missing field, on this thread), stays queued until its
 * own commit.
 */
Test(sink_postgres, detached_commit_while_the_next_batch_is_queued)
{
    struct fx f;
    struct wct_detached d;

    fx_init(&f, "dead_letter", orders_yaml, orders_sql);
    apply_order(f.s, 0x7000, 0, 1, 10);
    apply_order(f.s, 0x7000, 1, 1, 11); /* order 1 again: the server rejects it at commit */
    apply_order(f.s, 0x7000, 2, 2, 10);
    wct_detached_start(&d, f.s, (struct wc_pos){0x7000, 2});
    for (int i = 0; i < 200; i++)
        apply_order(f.s, 0x7100, i, 100 + i, 12);
    apply_ok(f.s, 0x7100, 200, "OrderPlaced", "{\"order_id\": 999, \"total\": 1}"); /* no customer_id */
    wct_detached_join(&d);
    cr_assert_eq(d.rc, 0, "commit_detached: %s", d.err.msg);
    assert_value(f.dsn,
                 "SELECT string_agg(order_id || ':' || customer_id, ',' ORDER BY order_id) FROM orders",
                 "1:10,2:10");
    assert_value(f.dsn, "SELECT string_agg(lsn || '/' || idx, ',' ORDER BY id) FROM walcast_dead_letters",
                 "0/7000/1");
    assert_cursor(f.s, 0x7000, 2);

    commit_ok(f.s, 0x7100, 200);
    assert_value(f.dsn, "SELECT count(*) || ' ' || min(order_id) || ' ' || max(order_id) FROM orders",
                 "202 1 299");
    assert_value(f.dsn, "SELECT string_agg(lsn || '/' || idx, ',' ORDER BY id) FROM walcast_dead_letters",
                 "0/7000/1,0/7100/200");
    assert_cursor(f.s, 0x7100, 200);
    cr_assert_eq(f.s->dead_lettered, 2);
    cr_assert_eq(f.s->applied, 202);
    fx_fini(&f);
}

/* engine.dead_letter_max: the oldest of the sink's dead letters go, in the batch's transaction; other
 * slots' and sinks' dead letters stay. */
Test(sink_postgres, dead_letters_are_pruned)
{
    struct fx f;

    fx_init(&f, "dead_letter\n  dead_letter_max: 20", orders_yaml, orders_sql);
    wct_sql(f.dsn, "INSERT INTO walcast_dead_letters (slot, sink, error) VALUES ('otherslot', 'readdb', 'x'),"
                   " ('testslot', 'othersink', 'y')");
    for (int b = 0; b < 10; b++) {
        for (int i = 0; i < 10; i++)
            apply_ok(f.s, 0x7000 + (wc_lsn)b * 0x100, i, "OrderPlaced", "{\"order_id\": 2, \"total\": 1}");
        commit_ok(f.s, 0x7000 + (wc_lsn)b * 0x100, 9);
        assert_value(f.dsn,
                     "SELECT count(*) FROM walcast_dead_letters WHERE slot = 'testslot' AND sink = 'readdb'",
                     b == 0 ? "10" : "20");
    }
    assert_value(
        f.dsn, "SELECT min(lsn)::text FROM walcast_dead_letters WHERE slot = 'testslot' AND sink = 'readdb'",
        "0/7800");
    assert_value(
        f.dsn, "SELECT count(*) FROM walcast_dead_letters WHERE slot <> 'testslot' OR sink <> 'readdb'", "2");
    cr_assert_eq(f.s->dead_lettered, 100);
    fx_fini(&f);
}

/*
 * The read server's TimeZone, DateStyle and extra_float_digits must not change what a projection stores:
 * walcast pins them on its connection (TimeZone UTC, so that a time without a zone is the instant the
 * Redis side's epoch_ms reads; DateStyle ISO; extra_float_digits 3), after the DSN's own options=, which
 * are kept (here the search_path the projection's table is found by).
 */
Test(sink_postgres, session_settings_are_pinned_whatever_the_server_says)
{
    static const char projection[] = "  seen:\n"
                                     "    sink: readdb\n"
                                     "    on:\n"
                                     "      OrderPlaced:\n"
                                     "        - sql: \"INSERT INTO seen (order_id, at, at_text, tripled) "
                                     "VALUES ($1::bigint, $2::timestamptz, "
                                     "$2::timestamptz::text, ($3::float8 * 3)::text)\"\n"
                                     "          params: [payload.order_id, payload.at, payload.ratio]\n";
    struct fx f;
    char *db, *sql, *dsn;

    memset(&f, 0, sizeof(f));
    f.dsn = wct_create_db("pgpin");
    f.dir = wct_tmpdir();
    db = wct_sql_value(f.dsn, "SELECT current_database()");
    cr_assert(
        asprintf(
            &sql,
            "ALTER DATABASE %s SET timezone = 'Asia/Tokyo'; ALTER DATABASE %s SET datestyle = 'SQL, DMY';"
            "ALTER DATABASE %s SET extra_float_digits = 0",
            db, db, db) > 0);
    wct_sql(f.dsn, sql);
    wct_sql(f.dsn, "CREATE SCHEMA proj; CREATE TABLE proj.seen (order_id bigint PRIMARY KEY, at timestamptz, "
                   "at_text text, tripled text)");
    assert_value(f.dsn, "SELECT current_setting('TimeZone')", "Asia/Tokyo");
    cr_assert(asprintf(&dsn, "%s options='-c search_path=proj'", f.dsn) > 0);
    f.cfg = load_yaml(f.dir, dsn, "halt", projection);
    f.s = open_sink(f.cfg);

    apply_ok(f.s, 0x1000, 0, "OrderPlaced",
             "{\"order_id\": 1, \"at\": \"2026-03-10 23:30:00\", \"ratio\": 0.1}");
    commit_ok(f.s, 0x1000, 0);
    /* 2026-03-10 23:30:00 UTC, as epoch_ms reads it: not 9 hours earlier (Tokyo). */
    assert_value(f.dsn, "SELECT (extract(epoch FROM at) * 1000)::bigint FROM proj.seen", "1773185400000");
    assert_value(f.dsn, "SELECT at_text FROM proj.seen", "2026-03-10 23:30:00+00");
    assert_value(f.dsn, "SELECT tripled FROM proj.seen", "0.30000000000000004");
    free(sql);
    free(db);
    free(dsn);
    fx_fini(&f);
}
