/*
 * test_doctor.c - `walcast doctor` against servers set up to fail each check: wal_level = replica, a role
 * without REPLICATION, a projection statement naming a missing column, Redis with allkeys-lru, Redis
 * without AOF, a misspelled event type, an event type no projection names; and a setup that passes.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsutil.h"
#include "orders_env.h"

struct denv {
    char *src, *read, *slot, *dir, *cfg;
    struct ops_redis redis;
};

static const char *yaml = "source:\n"
                          "  dsn: \"%s\"\n"
                          "  slot: %s\n"
                          "engine:\n"
                          "  on_unknown_event: %s\n"
                          "sinks:\n"
                          "  readdb:\n"
                          "    type: postgres\n"
                          "    dsn: \"%s\"\n"
                          "  cache:\n"
                          "    type: redis\n"
                          "    dsn: \"redis://127.0.0.1:%d/0\"\n"
                          "projections:\n"
                          "  seen:\n"
                          "    sink: readdb\n"
                          "    on:\n"
                          "      OrderPlaced:\n"
                          "        - sql: %s\n"
                          "          params: [payload.id, payload.total]\n"
                          "      OrderShipped:\n"
                          "        - sql: UPDATE seen SET shipped = true WHERE id = $1::bigint\n"
                          "          params: [payload.id]\n"
                          "  cached:\n"
                          "    sink: cache\n"
                          "    on:\n"
                          "      OrderPlaced:\n"
                          "        - [SET, \"order:{payload.id}\", placed]\n"
                          "      %s:\n"
                          "        - [SET, \"order:{payload.id}\", shipped]\n"
                          "      OrderViewed: []\n";

#define GOOD_SQL "INSERT INTO seen (id, total) VALUES ($1::bigint, $2::numeric)"

/* Databases, a slot, a Redis (redis_args), and events of the types given. */
static void setup(struct denv *e, const char *redis_args, const char *event_types)
{
    memset(e, 0, sizeof(*e));
    e->src = wct_create_db("docsrc");
    e->read = create_read_db("docread");
    e->slot = wct_unique("doc");
    e->dir = ops_dir("walcast-doctor");
    e->cfg = xprintf("%s/walcast.yaml", e->dir);
    ops_redis_start(&e->redis, redis_args);
    wct_sql(e->src,
            "CREATE TABLE domain_events (event_id bigserial PRIMARY KEY, aggregate_type text NOT NULL, "
            "aggregate_id text NOT NULL, event_type text NOT NULL, payload jsonb NOT NULL, "
            "occurred_at timestamptz NOT NULL DEFAULT now())");
    char *sql = xprintf(
        "INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) "
        "SELECT 'order', '1', t, '{\"id\": 1, \"total\": 2}' FROM unnest(string_to_array('%s', ',')) t",
        event_types);
    wct_sql(e->src, sql);
    free(sql);
    sql = xprintf("SELECT pg_create_logical_replication_slot('%s', 'wal2json')", e->slot);
    wct_sql(e->src, sql);
    free(sql);
    wct_sql(e->read, "CREATE TABLE seen (id bigint PRIMARY KEY, total numeric, shipped bool)");
}

static void write_config(struct denv *e, const char *src_dsn, const char *on_unknown, const char *sql,
                         const char *cache_type)
{
    char *text =
        xprintf(yaml, src_dsn ? src_dsn : e->src, e->slot, on_unknown ? on_unknown : "dead_letter", e->read,
                e->redis.port, sql ? sql : GOOD_SQL, cache_type ? cache_type : "OrderShipped");
    ops_write(e->cfg, text);
    free(text);
}

static void teardown(struct denv *e)
{
    char *sql = xprintf("SELECT pg_drop_replication_slot('%s')", e->slot),
         *cmd = xprintf("rm -rf %s", e->dir);
    wct_sql(e->src, sql);
    wct_run(cmd, NULL);
    ops_redis_free(&e->redis);
    free(sql);
    free(cmd);
    free(e->src);
    free(e->read);
    free(e->slot);
    free(e->dir);
    free(e->cfg);
}

/* Run the doctor: its exit code, the text and the JSON document (new; caller decrefs). */
static json_t *doctor(struct denv *e, int *rc, char **text)
{
    char *cmd = xprintf("%s doctor -c %s 2>&1", wct_walcast(), e->cfg), *out = NULL;
    *rc = wct_run(cmd, text);
    cr_log_info("walcast doctor (exit %d):\n%s", *rc, *text);
    free(cmd);
    cmd = xprintf("%s doctor --json -c %s 2>/dev/null", wct_walcast(), e->cfg);
    int jrc = wct_run(cmd, &out);
    cr_assert_eq(jrc, *rc, "--json exits as the text does");
    json_error_t jerr;
    json_t *doc = json_loads(out, 0, &jerr);
    cr_assert_not_null(doc, "doctor --json: %s\n%s", jerr.text, out);
    free(out);
    free(cmd);
    return doc;
}

/* The check area/name with status (the first one that has it); asserts it is there. */
static json_t *find(json_t *doc, const char *area, const char *check, const char *status)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(doc, "checks"), i, c)
    {
        if (strcmp(json_string_value(json_object_get(c, "area")), area) == 0 &&
            strcmp(json_string_value(json_object_get(c, "check")), check) == 0 &&
            strcmp(json_string_value(json_object_get(c, "status")), status) == 0)
            return c;
    }
    char *all = json_dumps(doc, JSON_INDENT(1));
    cr_assert_fail("no %s check %s/%s in:\n%s", status, area, check, all);
    return NULL;
}

static const char *detail(json_t *c)
{
    return json_string_value(json_object_get(c, "detail"));
}

static const char *fix(json_t *c)
{
    const char *f = json_string_value(json_object_get(c, "fix"));
    return f ? f : "";
}

Test(doctor, a_good_setup_passes, .timeout = 60)
{
    struct denv e;
    setup(&e, "", "OrderPlaced,OrderShipped,OrderViewed");
    write_config(&e, NULL, NULL, NULL, NULL);
    int rc;
    char *text;
    json_t *doc = doctor(&e, &rc, &text);
    cr_assert_eq(rc, 0, "%s", text);
    cr_assert_eq(json_integer_value(json_object_get(doc, "fail")), 0, "%s", text);
    const char *ok[][2] = {{"source", "wal_level"},
                           {"source", "replication_privilege"},
                           {"source", "wal2json"},
                           {"source", "slot"},
                           {"outbox", "columns"},
                           {"outbox", "select"},
                           {"events", "outbox_types"},
                           {"sink:readdb", "statements"},
                           {"sink:readdb", "walcast_tables"},
                           {"sink:cache", "maxmemory_policy"},
                           {"sink:cache", "persistence"},
                           {"sink:cache", "cluster"}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        find(doc, ok[i][0], ok[i][1], "OK");
    cr_assert(strstr(text, "OK    source") && strstr(text, " 0 FAIL"), "%s", text);
    json_decref(doc);
    free(text);
    teardown(&e);
}

Test(doctor, wal_level_replica, .timeout = 60)
{
    struct denv e;
    struct ops_pg pg = {0};
    setup(&e, "", "OrderPlaced");
    ops_pg_start(&pg, "wal_level=replica");
    write_config(&e, pg.dsn, NULL, NULL, NULL);
    int rc;
    char *text;
    json_t *doc = doctor(&e, &rc, &text);
    cr_assert_eq(rc, 1, "a FAIL: exit 1\n%s", text);
    json_t *c = find(doc, "source", "wal_level", "FAIL");
    cr_assert(strstr(fix(c), "ALTER SYSTEM SET wal_level = logical") && strstr(fix(c), "restart"), "%s",
              fix(c));
    cr_assert(strstr(text, "FAIL  source         wal_level"), "%s", text);
    json_decref(doc);
    free(text);
    ops_pg_free(&pg);
    teardown(&e);
}

Test(doctor, role_without_replication, .timeout = 60)
{
    struct denv e;
    setup(&e, "", "OrderPlaced");
    char *role = wct_unique("norepl"),
         *sql = xprintf("CREATE ROLE %s LOGIN; GRANT SELECT ON domain_events TO %s", role, role);
    wct_sql(e.src, sql);
    free(sql);
    char *dsn = xprintf("%s user=%s", e.src, role);
    write_config(&e, dsn, NULL, NULL, NULL);
    int rc;
    char *text;
    json_t *doc = doctor(&e, &rc, &text);
    cr_assert_eq(rc, 1, "%s", text);
    json_t *c = find(doc, "source", "replication_privilege", "FAIL");
    char *want = xprintf("ALTER ROLE \"%s\" REPLICATION", role);
    cr_assert(strstr(fix(c), want), "%s", fix(c));
    free(want);
    json_decref(doc);
    free(text);
    sql = xprintf("DROP OWNED BY %s", role);
    wct_sql(e.src, sql);
    free(sql);
    sql = xprintf("DROP ROLE %s", role);
    wct_sql(wct_pg_dsn(), sql);
    free(sql);
    teardown(&e);
    free(dsn);
    free(role);
}

Test(doctor, statement_naming_a_missing_column, .timeout = 60)
{
    struct denv e;
    setup(&e, "", "OrderPlaced,OrderShipped");
    write_config(&e, NULL, NULL, "INSERT INTO seen (id, totl) VALUES ($1::bigint, $2::numeric)", NULL);
    int rc;
    char *text;
    json_t *doc = doctor(&e, &rc, &text);
    cr_assert_eq(rc, 1, "%s", text);
    json_t *c = find(doc, "sink:readdb", "statement", "FAIL");
    cr_assert(strstr(detail(c), "projection \"seen\"") && strstr(detail(c), "\"OrderPlaced\"") &&
                  strstr(detail(c), "\"totl\"") && strstr(detail(c), "does not exist"),
              "%s", detail(c));
    cr_assert(strstr(fix(c), "line 18"), "the fix names the statement's line: %s", fix(c));
    json_decref(doc);
    free(text);
    teardown(&e);
}

/* The outbox as walcast run checks it before streaming: a renamed column is a FAIL with the fix. */
Test(doctor, outbox_column_renamed, .timeout = 60)
{
    struct denv e;
    setup(&e, "", "OrderPlaced,OrderShipped");
    wct_sql(e.src, "ALTER TABLE domain_events RENAME COLUMN occurred_at TO created_at");
    write_config(&e, NULL, NULL, NULL, NULL);
    int rc;
    char *text;
    json_t *doc = doctor(&e, &rc, &text);
    cr_assert_eq(rc, 1, "%s", text);
    json_t *c = find(doc, "outbox", "check", "FAIL");
    cr_assert(strstr(detail(c), "occurred_at") && strstr(detail(c), "created_at"),
              "names the missing column and the likely one: %s", detail(c));
    json_decref(doc);
    free(text);
    teardown(&e);
}

Test(doctor, redis_allkeys_lru, .timeout = 60)
{
    struct denv e;
    setup(&e, "--maxmemory-policy allkeys-lru --maxmemory 64mb", "OrderPlaced,OrderShipped");
    write_config(&e, NULL, NULL, NULL, NULL);
    int rc;
    char *text;
    json_t *doc = doctor(&e, &rc, &text);
    cr_assert_eq(rc, 1, "%s", text);
    json_t *c = find(doc, "sink:cache", "maxmemory_policy", "FAIL");
    cr_assert(strstr(detail(c), "allkeys-lru") && strstr(fix(c), "CONFIG SET maxmemory-policy noeviction"),
              "%s", fix(c));
    json_decref(doc);
    free(text);
    teardown(&e);
}

Test(doctor, redis_without_aof, .timeout = 60)
{
    struct denv e;
    setup(&e, "--appendonly no", "OrderPlaced,OrderShipped");
    write_config(&e, NULL, NULL, NULL, NULL);
    int rc;
    char *text;
    json_t *doc = doctor(&e, &rc, &text);
    cr_assert_eq(rc, 0, "a WARN alone does not fail:\n%s", text);
    json_t *c = find(doc, "sink:cache", "persistence", "WARN");
    cr_assert(strstr(detail(c), "appendonly no") && strstr(fix(c), "CONFIG SET appendonly yes") &&
                  strstr(fix(c), "appendfsync always"),
              "%s / %s", detail(c), fix(c));
    json_decref(doc);
    free(text);
    teardown(&e);
    /* appendfsync everysec: a crash can lose the last second, cursor included. */
    setup(&e, "--appendfsync everysec", "OrderPlaced,OrderShipped");
    write_config(&e, NULL, NULL, NULL, NULL);
    doc = doctor(&e, &rc, &text);
    c = find(doc, "sink:cache", "persistence", "WARN");
    cr_assert(strstr(detail(c), "appendfsync everysec"), "%s", detail(c));
    json_decref(doc);
    free(text);
    teardown(&e);
}

/* Tried as a new user would: a misspelled OrderShiped is accepted by the configuration, and the shipped
 * updates never reach Redis because another projection knows the type. The doctor names it. */
Test(doctor, misspelled_and_unnamed_event_types, .timeout = 60)
{
    struct denv e;
    setup(&e, "", "OrderPlaced,OrderShipped,OrderRefunded");
    write_config(&e, NULL, NULL, NULL, "OrderShiped");
    int rc;
    char *text;
    json_t *doc = doctor(&e, &rc, &text);
    cr_assert_eq(rc, 0, "WARNs only:\n%s", text);
    json_t *c = find(doc, "events", "named_types", "WARN");
    cr_assert(strstr(detail(c), "\"OrderShiped\"") && strstr(detail(c), "never occurred") &&
                  strstr(detail(c), "did you mean \"OrderShipped\"?"),
              "%s", detail(c));
    c = find(doc, "events", "outbox_types", "WARN");
    cr_assert(strstr(detail(c), "\"OrderRefunded\"") && strstr(fix(c), "OrderRefunded: []"), "%s", detail(c));
    json_decref(doc);
    free(text);
    /* With on_unknown_event: halt the engine would stop on it: a FAIL. */
    write_config(&e, NULL, "halt", NULL, NULL);
    doc = doctor(&e, &rc, &text);
    cr_assert_eq(rc, 1, "%s", text);
    find(doc, "events", "outbox_types", "FAIL");
    json_decref(doc);
    free(text);
    teardown(&e);
}
