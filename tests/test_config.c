/* test_config.c - loading, defaults, validation errors (file:line: key) and environment overrides. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "walcast/config.h"

extern char **environ;

#define FIXTURES WC_SOURCE_DIR "/tests/fixtures/config"

/* Criterion forks per test, so clearing the environment here only affects the test at hand. */
static void clear_walcast_env(void)
{
    char *names[256];
    int n = 0;

    for (char **e = environ; *e && n < 256; e++)
        if (strncmp(*e, "WALCAST_", 8) == 0)
            names[n++] = strndup(*e, strcspn(*e, "="));
    for (int i = 0; i < n; i++) {
        unsetenv(names[i]);
        free(names[i]);
    }
}

TestSuite(config, .init = clear_walcast_env);

static const char *tmpl_src(const struct wc_tmpl *t)
{
    return wc_tmpl_source(t);
}

Test(config, defaults_without_a_file)
{
    struct wc_err err = {0};
    struct wc_config *cfg = wc_config_load(NULL, &err);

    cr_assert_not_null(cfg, "%s", err.msg);
    cr_expect_null(cfg->path);
    cr_expect_str_eq(cfg->source_dsn, "");
    cr_expect_str_eq(cfg->slot, "walcast");
    cr_expect_str_eq(cfg->outbox_schema, "public");
    cr_expect_str_eq(cfg->outbox_table, "domain_events");
    for (int i = 0; i < WC_COL_COUNT; i++)
        cr_expect_str_eq(cfg->columns[i], wc_col_names[i]);
    cr_expect_str_eq(cfg->columns[WC_COL_PAYLOAD], "payload");
    cr_expect_str_eq(cfg->msg_prefix, "walcast");
    cr_expect_eq(cfg->status_interval_ms, 1000);
    cr_expect_eq(cfg->batch_max_events, 1000);
    cr_expect_eq(cfg->batch_max_bytes, (size_t)4194304);
    cr_expect_eq(cfg->batch_max_delay_ms, 5);
    cr_expect_eq(cfg->on_unknown_event, WC_POLICY_DEAD_LETTER);
    cr_expect_eq(cfg->on_error, WC_POLICY_DEAD_LETTER);
    cr_expect_null(cfg->dead_letter_sink);
    cr_expect_str_eq(cfg->log_level, "info");
    cr_expect_eq(cfg->heartbeat_interval_ms, 10000);
    cr_expect_eq(cfg->retry_base_ms, 100);
    cr_expect_eq(cfg->retry_max_ms, 10000);
    cr_expect_eq(cfg->retry_max_attempts, 0);
    cr_expect_eq(cfg->nsink, 0);
    cr_expect(!wc_config_knows_event(cfg, "OrderPlaced"));
    wc_config_free(cfg);
    wc_config_free(NULL);
}

Test(config, empty_file_is_all_defaults)
{
    struct wc_err err = {0};
    struct wc_config *cfg = wc_config_load(FIXTURES "/empty.yaml", &err);

    cr_assert_not_null(cfg, "%s", err.msg);
    cr_expect_str_eq(cfg->path, FIXTURES "/empty.yaml");
    cr_expect_str_eq(cfg->slot, "walcast");
    cr_expect_eq(cfg->nsink, 0);
    wc_config_free(cfg);
}

Test(config, minimal_file)
{
    struct wc_err err = {0};
    struct wc_config *cfg = wc_config_load(FIXTURES "/minimal.yaml", &err);

    cr_assert_not_null(cfg, "%s", err.msg);
    cr_assert_eq(cfg->nsink, 1);
    cr_expect_str_eq(cfg->sinks[0].name, "readdb");
    cr_expect_eq(cfg->sinks[0].type, WC_SINK_POSTGRES);
    cr_expect_str_eq(cfg->sinks[0].dsn, "", "postgres dsn defaults to the PG* variables");
    cr_expect_eq(cfg->sinks[0].line, 3);
    cr_expect_str_eq(cfg->dead_letter_sink, "readdb", "the first sink takes dead letters by default");
    cr_expect_eq(cfg->sinks[0].nrule, 0);
    wc_config_free(cfg);
}

Test(config, full_file)
{
    struct wc_err err = {0};
    struct wc_config *cfg = wc_config_load(FIXTURES "/full.yaml", &err);

    cr_assert_not_null(cfg, "%s", err.msg);
    cr_expect_str_eq(cfg->source_dsn, "host=127.0.0.1 port=5432 dbname=shop user=walcast");
    cr_expect_str_eq(cfg->slot, "shop_slot");
    cr_expect_str_eq(cfg->outbox_schema, "sales");
    cr_expect_str_eq(cfg->outbox_table, "domain_events");
    cr_expect_str_eq(cfg->columns[WC_COL_EVENT_ID], "id");
    cr_expect_str_eq(cfg->columns[WC_COL_AGGREGATE_TYPE], "agg_type");
    cr_expect_str_eq(cfg->columns[WC_COL_AGGREGATE_ID], "agg_id");
    cr_expect_str_eq(cfg->columns[WC_COL_EVENT_TYPE], "type");
    cr_expect_str_eq(cfg->columns[WC_COL_PAYLOAD], "body");
    cr_expect_str_eq(cfg->columns[WC_COL_OCCURRED_AT], "created_at");
    cr_expect_str_eq(cfg->msg_prefix, "walcast_hb");
    cr_expect_eq(cfg->status_interval_ms, 2000);
    cr_expect_eq(cfg->batch_max_events, 500);
    cr_expect_eq(cfg->batch_max_bytes, (size_t)1048576);
    cr_expect_eq(cfg->batch_max_delay_ms, 20);
    cr_expect_eq(cfg->on_unknown_event, WC_POLICY_SKIP);
    cr_expect_eq(cfg->on_error, WC_POLICY_HALT);
    cr_expect_str_eq(cfg->dead_letter_sink, "cache");
    cr_expect_str_eq(cfg->log_level, "debug");
    cr_expect_eq(cfg->heartbeat_interval_ms, 0);
    cr_expect_eq(cfg->retry_base_ms, 250);
    cr_expect_eq(cfg->retry_max_ms, 30000);
    cr_expect_eq(cfg->retry_max_attempts, 12);

    cr_assert_eq(cfg->nsink, 2);
    struct wc_sink_conf *pg = &cfg->sinks[0], *redis = &cfg->sinks[1];
    cr_expect_str_eq(pg->name, "readdb");
    cr_expect_eq(pg->type, WC_SINK_POSTGRES);
    cr_expect_str_eq(pg->dsn, "host=127.0.0.1 dbname=read user=walcast");
    cr_expect_str_eq(redis->name, "cache");
    cr_expect_eq(redis->type, WC_SINK_REDIS);
    cr_expect_str_eq(redis->dsn, "redis://127.0.0.1:6379/0");
    cr_expect_eq(pg->statement_timeout_ms, 5000);
    cr_expect_eq(pg->lock_timeout_ms, 0);
    cr_expect_eq(redis->statement_timeout_ms, 30000, "the default");
    cr_expect_eq(redis->lock_timeout_ms, 10000, "the default");

    /* readdb: OrderPlaced from two projections, in configuration order. */
    int n;
    struct wc_rule *const *r = wc_config_rules(pg, "OrderPlaced", &n);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(r[0]->projection, "order_summary");
    cr_expect_str_eq(r[1]->projection, "order_audit");
    cr_expect_str_eq(r[0]->event_type, "OrderPlaced");
    cr_expect_eq(r[0]->line, 44);
    cr_assert_eq(r[0]->nstmt, 1);
    cr_expect_eq(r[0]->ncmd, 0);
    struct wc_pg_stmt *st = &r[0]->stmts[0];
    cr_expect_str_eq(st->sql, "INSERT INTO order_summary (order_id, customer_id, status, total, placed_at) "
                              "VALUES ($1::bigint, $2::bigint, 'placed', $3::numeric, $4::timestamptz)");
    cr_assert_eq(st->nparams, 4);
    cr_expect_str_eq(tmpl_src(st->params[0]), "payload.order_id");
    cr_expect_str_eq(tmpl_src(st->params[3]), "payload.placed_at");
    cr_expect_eq(st->line, 45);
    cr_expect_str_eq(r[1]->stmts[0].sql, "INSERT INTO audit (event_id, kind) VALUES ($1::uuid, $2)");
    cr_expect_str_eq(tmpl_src(r[1]->stmts[0].params[1]), "event_type");

    r = wc_config_rules(pg, "OrderShipped", &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(r[0]->nstmt, 2);
    cr_expect(wc_tmpl_is_whole_payload(r[0]->stmts[1].params[0]));

    /* cache: commands and a script. */
    r = wc_config_rules(redis, "OrderPlaced", &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(r[0]->ncmd, 3);
    cr_expect_eq(r[0]->nstmt, 0);
    struct wc_redis_cmd *c = r[0]->cmds;
    cr_assert_eq(c[0].argc, 4);
    cr_expect_null(c[0].script);
    cr_expect_str_eq(tmpl_src(c[0].argv[0]), "ZADD");
    cr_expect_str_eq(tmpl_src(c[0].argv[1]), "customer:{payload.customer_id}:orders");
    cr_expect_str_eq(tmpl_src(c[0].argv[2]), "{payload.placed_at|epoch_ms}");
    cr_expect_eq(c[0].line, 58);
    cr_assert_eq(c[1].argc, 6);
    cr_expect_str_eq(tmpl_src(c[1].argv[2]), "status");
    cr_expect_str_eq(c[2].script, "return redis.call('ZINCRBY', KEYS[1], ARGV[1], ARGV[2])");
    cr_assert_eq(c[2].argc, 3);
    cr_expect_eq(c[2].nkeys, 1);
    cr_expect_str_eq(tmpl_src(c[2].argv[0]), "ltv");
    cr_expect_str_eq(tmpl_src(c[2].argv[1]), "{payload.total}");

    /* An empty action list still makes the event type known (deliberately ignored). */
    r = wc_config_rules(redis, "OrderCancelled", &n);
    cr_assert_eq(n, 1);
    cr_expect_eq(r[0]->ncmd, 0);
    cr_expect_null(wc_config_rules(pg, "OrderCancelled", &n));
    cr_expect_eq(n, 0);
    cr_expect_null(wc_config_rules(pg, "NoSuchEvent", &n));
    cr_expect_eq(n, 0);

    cr_expect(wc_config_knows_event(cfg, "OrderPlaced"));
    cr_expect(wc_config_knows_event(cfg, "OrderShipped"));
    cr_expect(wc_config_knows_event(cfg, "OrderCancelled"));
    cr_expect(!wc_config_knows_event(cfg, "orderplaced"), "event types are case-sensitive");
    cr_expect(!wc_config_knows_event(cfg, "Order"));
    wc_config_free(cfg);
}

Test(config, rules_keep_configuration_order_per_event_type)
{
    char path[128];
    struct wc_err err = {0};
    struct wc_config *cfg = wct_config_string("sinks:\n"
                                              "  db:\n"
                                              "    type: postgres\n"
                                              "projections:\n"
                                              "  zeta:\n"
                                              "    sink: db\n"
                                              "    on:\n"
                                              "      Zed: [{sql: SELECT 1}]\n"
                                              "      Alpha: [{sql: SELECT 2}]\n"
                                              "  beta:\n"
                                              "    sink: db\n"
                                              "    on:\n"
                                              "      Alpha: [{sql: SELECT 3}]\n"
                                              "  alpha:\n"
                                              "    sink: db\n"
                                              "    on:\n"
                                              "      Alpha: [{sql: SELECT 4}]\n"
                                              "      Mid: []\n",
                                              &err, path, sizeof(path));
    int n;

    cr_assert_not_null(cfg, "%s", err.msg);
    struct wc_rule *const *r = wc_config_rules(&cfg->sinks[0], "Alpha", &n);
    cr_assert_eq(n, 3);
    cr_expect_str_eq(r[0]->projection, "zeta");
    cr_expect_str_eq(r[1]->projection, "beta");
    cr_expect_str_eq(r[2]->projection, "alpha");
    cr_expect_str_eq(r[2]->stmts[0].sql, "SELECT 4");
    r = wc_config_rules(&cfg->sinks[0], "Zed", &n);
    cr_assert_eq(n, 1);
    cr_expect_str_eq(r[0]->stmts[0].sql, "SELECT 1");
    r = wc_config_rules(&cfg->sinks[0], "Mid", &n);
    cr_expect_eq(n, 1);
    cr_expect_null(wc_config_rules(&cfg->sinks[0], "Beta", &n));
    wc_config_free(cfg);
}

/* The requirement: unknown field and unknown sink, each with file, line and key. */
Test(config, rejects_template_naming_unknown_field)
{
    struct wc_err err = {0};
    struct wc_config *cfg = wc_config_load(FIXTURES "/invalid/unknown_field.yaml", &err);

    cr_assert_null(cfg);
    cr_expect_eq(err.code, WC_ERR_CONFIG);
    cr_expect_str_eq(err.msg, FIXTURES
                     "/invalid/unknown_field.yaml:11: key "
                     "\"projections.order_summary.on.OrderPlaced[0].params[1]\": unknown field \"paylod.x\"");
}

Test(config, rejects_unknown_sink)
{
    struct wc_err err = {0};
    struct wc_config *cfg = wc_config_load(FIXTURES "/invalid/unknown_sink.yaml", &err);

    cr_assert_null(cfg);
    cr_expect_eq(err.code, WC_ERR_CONFIG);
    cr_expect_str_eq(
        err.msg, FIXTURES
        "/invalid/unknown_sink.yaml:7: key \"projections.order_summary.sink\": unknown sink \"readbd\"");
}

/*
 * Every file in fixtures/config/invalid starts with "# expect: LINE: key ...": loading it must fail with
 * exactly "PATH:LINE: key ...".
 */
Test(config, invalid_fixtures)
{
    DIR *d = opendir(FIXTURES "/invalid");
    struct dirent *de;
    int count = 0;

    cr_assert_not_null(d);
    while ((de = readdir(d)) != NULL) {
        char path[1024], line[1024], want[2100];
        size_t len = strlen(de->d_name);
        if (len < 6 || strcmp(de->d_name + len - 5, ".yaml") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/invalid/%s", FIXTURES, de->d_name);
        FILE *f = fopen(path, "r");
        cr_assert_not_null(f);
        cr_assert_not_null(fgets(line, sizeof(line), f));
        fclose(f);
        line[strcspn(line, "\n")] = '\0';
        cr_assert(strncmp(line, "# expect: ", 10) == 0, "%s has no expect line", path);
        snprintf(want, sizeof(want), "%s:%s", path, line + 10);

        struct wc_err err = {0};
        struct wc_config *cfg = wc_config_load(path, &err);
        cr_expect_null(cfg, "%s loaded", de->d_name);
        wc_config_free(cfg);
        cr_expect_eq(err.code, WC_ERR_CONFIG, "%s", de->d_name);
        cr_expect_str_eq(err.msg, want, "%s", de->d_name);
        count++;
    }
    closedir(d);
    cr_expect_geq(count, 40, "only %d fixtures found", count);
}

Test(config, missing_file)
{
    struct wc_err err = {0};
    struct wc_config *cfg = wc_config_load("/nonexistent/walcast.yaml", &err);

    cr_assert_null(cfg);
    cr_expect_eq(err.code, WC_ERR_CONFIG);
    cr_expect_str_eq(
        err.msg,
        "could not open configuration file \"/nonexistent/walcast.yaml\": No such file or directory");
}

Test(config, more_errors)
{
    wct_expect_config_error("engine:\n  batch_max_events: 1.5\n",
                            "2: key \"engine.batch_max_events\": expected an integer, got \"1.5\"");
    wct_expect_config_error("engine:\n  batch_max_bytes: 4MiB\n",
                            "2: key \"engine.batch_max_bytes\": expected an integer, got \"4MiB\"");
    wct_expect_config_error("source:\n  status_interval_ms: 0\n",
                            "2: key \"source.status_interval_ms\": value 0 is out of range (1..3600000)");
    wct_expect_config_error("source:\n  message_prefix: \"\"\n",
                            "2: key \"source.message_prefix\": must not be empty");
    wct_expect_config_error(
        "source:\n  outbox:\n    table: \"public.\"\n",
        "3: key \"source.outbox.table\": invalid table \"public.\" (expected table or schema.table)");
    wct_expect_config_error("source:\n  outbox:\n    columns:\n      payload: \"\"\n",
                            "4: key \"source.outbox.columns.payload\": must not be empty");
    wct_expect_config_error("sinks:\n  c:\n    type: redis\n    extra: 1\n",
                            "4: key \"sinks.c.extra\": unknown key (expected type, dsn, rebuild, cluster, "
                            "statement_timeout_ms or "
                            "lock_timeout_ms)");
    /* A Redis Cluster: only for a redis sink, a boolean; a list of nodes only in cluster mode. */
    wct_expect_config_error(
        "sinks:\n  c:\n    type: postgres\n    cluster: true\n",
        "2: key \"sinks.c.cluster\": cluster needs a redis sink, but sink \"c\" is postgres");
    wct_expect_config_error("sinks:\n  c:\n    type: redis\n    cluster: yes\n",
                            "4: key \"sinks.c.cluster\": expected true or false, got \"yes\"");
    wct_expect_config_error(
        "sinks:\n  c:\n    type: redis\n    dsn: \"redis://a:1,b:2\"\n",
        "4: key \"sinks.c.dsn\": several redis servers: for the seed nodes of a redis cluster set "
        "sinks.c.cluster: true");
    wct_expect_config_error("sinks: [a]\n", "1: key \"sinks\": expected a mapping of sink names, got a list");
    wct_expect_config_error(
        "sinks:\n  c:\n    type: redis\n    statement_timeout_ms: 0\n",
        "4: key \"sinks.c.statement_timeout_ms\": value 0 is out of range (100..3600000)");
    wct_expect_config_error("sinks:\n  c:\n    type: postgres\n    lock_timeout_ms: soon\n",
                            "4: key \"sinks.c.lock_timeout_ms\": expected an integer, got \"soon\"");
    wct_expect_config_error(
        "sinks:\n  c:\n    type: redis\nprojections:\n  p:\n    sink: c\n    on:\n      E:\n        - x\n",
        "9: key \"projections.p.on.E[0]\": expected a command list [COMMAND, ARG, ...] or a mapping with "
        "script, keys and args, got a scalar");
    wct_expect_config_error(
        "sinks:\n  c:\n    type: redis\nprojections:\n  p:\n    sink: c\n    on:\n      E:\n"
        "        - script: \"return 1\"\n          keys: \"{payload.k}\"\n",
        "10: key \"projections.p.on.E[0].keys\": expected a list, got a scalar");
    wct_expect_config_error(
        "sinks:\n  c:\n    type: redis\nprojections:\n  p:\n    sink: c\n    on:\n      E:\n"
        "        - [SET, {a: b}]\n",
        "9: key \"projections.p.on.E[0][1]\": expected a template, got a mapping");
    wct_expect_config_error(
        "sinks:\n  c:\n    type: redis\nprojections:\n  p:\n    sink: c\n    on:\n      E:\n"
        "        - [SET, \"k:{payload.a\"]\n",
        "9: key \"projections.p.on.E[0][1]\": unterminated \"{\" in template (write \"{{\" for a literal "
        "brace)");
    wct_expect_config_error(
        "sinks:\n  d:\n    type: postgres\nprojections:\n  p:\n    sink: d\n    on:\n      E:\n"
        "        - sql: SELECT $1\n          params: [payload.a|upper|nope]\n",
        "10: key \"projections.p.on.E[0].params[0]\": unknown filter \"nope\"");
    wct_expect_config_error(
        "sinks:\n  d:\n    type: postgres\nprojections:\n  p:\n    sink: d\n    on:\n      E:\n"
        "        - sql: \"\"\n",
        "9: key \"projections.p.on.E[0].sql\": expected an SQL statement, got an empty string");
    wct_expect_config_error(
        "sinks:\n  d:\n    type: postgres\nprojections:\n  p:\n    sink: d\n    on:\n      E:\n"
        "        - sql: SELECT 1\n          params: [event_id]\n",
        "10: key \"projections.p.on.E[0].params\": params has 1 entry but the sql has no parameters");
    wct_expect_config_error(
        "sinks:\n  d:\n    type: postgres\nprojections:\n  p:\n    sink: d\n    on: [E]\n",
        "7: key \"projections.p.on\": expected a mapping of event types to actions, got a list");
    wct_expect_config_error(
        "sinks:\n  d:\n    type: postgres\nprojections:\n  p:\n    sink: d\n    extra: 1\n    on: {}\n",
        "7: key \"projections.p.extra\": unknown key (expected sink, on, tables, keys or rebuild)");
}

/* $n inside literals, quoted identifiers, comments and dollar-quoted bodies are not parameters. */
Test(config, sql_parameter_counting)
{
    static const struct {
        const char *sql;
        int nparams;
    } ok[] = {
        {"SELECT $1, '$2', E'it\\'s $3', \"col$4\", x$5 -- $6\n /* $7 /* $8 */ */", 1},
        {"DO $$ BEGIN PERFORM $9; END $$; SELECT $2, $1", 2},
        {"SELECT $body$ $5 $body$, $1", 1},
        {"SELECT 'a''$3''b', $1", 1},
        {"SELECT 1", 0},
        {"INSERT INTO t VALUES ($1, $2, $3, $1)", 3},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char yaml[1024], params[256] = "", path[128];
        struct wc_err err = {0};
        int o;
        for (int p = 0; p < ok[i].nparams; p++)
            strcat(params, p ? ", event_id" : "event_id");
        /* A literal block scalar takes the SQL as it is; continuation lines get the block's indent. */
        o = snprintf(yaml, sizeof(yaml),
                     "sinks:\n  d:\n    type: postgres\nprojections:\n  p:\n    sink: d\n    on:\n      E:\n"
                     "        - sql: |-\n            ");
        for (const char *c = ok[i].sql; *c; c++)
            o += snprintf(yaml + o, sizeof(yaml) - (size_t)o, *c == '\n' ? "\n            " : "%c", *c);
        snprintf(yaml + o, sizeof(yaml) - (size_t)o, "\n          params: [%s]\n", params);
        struct wc_config *cfg = wct_config_string(yaml, &err, path, sizeof(path));
        cr_expect_not_null(cfg, "%s: %s", ok[i].sql, err.msg);
        if (cfg)
            cr_expect_str_eq(cfg->sinks[0].rules[0].stmts[0].sql, ok[i].sql);
        wc_config_free(cfg);
    }
}

Test(config, yaml_features)
{
    char path[128];
    struct wc_err err = {0};
    struct wc_config *cfg = wct_config_string("# anchors, aliases, block scalars and flow style\n"
                                              "sinks: {db: {type: postgres, dsn: &d \"dbname=x\"}}\n"
                                              "source:\n"
                                              "  dsn: *d\n"
                                              "projections:\n"
                                              "  p:\n"
                                              "    sink: db\n"
                                              "    on:\n"
                                              "      E:\n"
                                              "        - sql: |\n"
                                              "            SELECT $1\n"
                                              "          params:\n"
                                              "            - payload.a\n",
                                              &err, path, sizeof(path));

    cr_assert_not_null(cfg, "%s", err.msg);
    cr_expect_str_eq(cfg->source_dsn, "dbname=x");
    cr_expect_str_eq(cfg->sinks[0].rules[0].stmts[0].sql, "SELECT $1\n");
    cr_expect_eq(cfg->sinks[0].rules[0].line, 9);
    wc_config_free(cfg);
}

Test(config, environment_overrides_file)
{
    struct wc_err err = {0};

    setenv("WALCAST_SOURCE_DSN", "host=env dbname=shop", 1);
    setenv("WALCAST_SOURCE_SLOT", "env_slot", 1);
    setenv("WALCAST_SOURCE_OUTBOX_TABLE", "outbox", 1);
    setenv("WALCAST_SOURCE_OUTBOX_COLUMNS_PAYLOAD", "data", 1);
    setenv("WALCAST_SOURCE_MESSAGE_PREFIX", "hb", 1);
    setenv("WALCAST_SOURCE_STATUS_INTERVAL_MS", "250", 1);
    setenv("WALCAST_ENGINE_BATCH_MAX_EVENTS", "7", 1);
    setenv("WALCAST_ENGINE_BATCH_MAX_BYTES", "2048", 1);
    setenv("WALCAST_ENGINE_BATCH_MAX_DELAY_MS", "0", 1);
    setenv("WALCAST_ENGINE_ON_UNKNOWN_EVENT", "halt", 1);
    setenv("WALCAST_ENGINE_ON_ERROR", "skip", 1);
    setenv("WALCAST_ENGINE_DEAD_LETTER_SINK", "readdb", 1);
    setenv("WALCAST_ENGINE_LOG_LEVEL", "warning", 1);
    setenv("WALCAST_ENGINE_RETRY_MAX_ATTEMPTS", "3", 1);
    setenv("WALCAST_SINKS_READDB_DSN", "postgresql://walcast:secret@db/read", 1);
    setenv("WALCAST_SINKS_CACHE_DSN", "redis://:pw@cache:6380/2", 1);
    setenv("WALCAST_SINKS_CACHE_STATEMENT_TIMEOUT_MS", "1500", 1);
    struct wc_config *cfg = wc_config_load(FIXTURES "/full.yaml", &err);

    cr_assert_not_null(cfg, "%s", err.msg);
    cr_expect_str_eq(cfg->source_dsn, "host=env dbname=shop");
    cr_expect_str_eq(cfg->slot, "env_slot");
    cr_expect_str_eq(cfg->outbox_schema, "public");
    cr_expect_str_eq(cfg->outbox_table, "outbox");
    cr_expect_str_eq(cfg->columns[WC_COL_PAYLOAD], "data");
    cr_expect_str_eq(cfg->columns[WC_COL_EVENT_ID], "id", "the file still applies where no variable is set");
    cr_expect_str_eq(cfg->msg_prefix, "hb");
    cr_expect_eq(cfg->status_interval_ms, 250);
    cr_expect_eq(cfg->batch_max_events, 7);
    cr_expect_eq(cfg->batch_max_bytes, (size_t)2048);
    cr_expect_eq(cfg->batch_max_delay_ms, 0);
    cr_expect_eq(cfg->on_unknown_event, WC_POLICY_HALT);
    cr_expect_eq(cfg->on_error, WC_POLICY_SKIP);
    cr_expect_str_eq(cfg->dead_letter_sink, "readdb");
    cr_expect_str_eq(cfg->log_level, "warning");
    cr_expect_eq(cfg->retry_max_attempts, 3);
    cr_expect_eq(cfg->retry_base_ms, 250, "file value kept");
    cr_expect_str_eq(cfg->sinks[0].dsn, "postgresql://walcast:secret@db/read");
    cr_expect_str_eq(cfg->sinks[1].dsn, "redis://:pw@cache:6380/2");
    cr_expect_eq(cfg->sinks[1].statement_timeout_ms, 1500);
    cr_expect_eq(cfg->sinks[0].statement_timeout_ms, 5000, "file value kept");
    wc_config_free(cfg);
}

Test(config, environment_only)
{
    struct wc_err err = {0};

    setenv("WALCAST_SOURCE_DSN", "", 1);
    setenv("WALCAST_SOURCE_SLOT", "from_env", 1);
    setenv("WALCAST_ENGINE_BATCH_MAX_EVENTS", "100000", 1);
    struct wc_config *cfg = wc_config_load(NULL, &err);

    cr_assert_not_null(cfg, "%s", err.msg);
    cr_expect_str_eq(cfg->source_dsn, "");
    cr_expect_str_eq(cfg->slot, "from_env");
    cr_expect_eq(cfg->batch_max_events, 100000);
    cr_expect_eq(cfg->batch_max_delay_ms, 5);
    wc_config_free(cfg);
}

Test(config, environment_sink_type)
{
    struct wc_err err = {0};

    /* A sink's type may come from the environment alone; a wrong one names the variable. */
    setenv("WALCAST_SINKS_READDB_TYPE", "redis", 1);
    struct wc_config *cfg = wc_config_load(FIXTURES "/minimal.yaml", &err);
    cr_assert_not_null(cfg, "%s", err.msg);
    cr_expect_eq(cfg->sinks[0].type, WC_SINK_REDIS);
    cr_expect_str_eq(cfg->sinks[0].dsn, "redis://127.0.0.1:6379/0");
    wc_config_free(cfg);

    setenv("WALCAST_SINKS_READDB_TYPE", "mongo", 1);
    cfg = wc_config_load(FIXTURES "/minimal.yaml", &err);
    cr_assert_null(cfg);
    cr_expect_str_eq(
        err.msg, "environment variable WALCAST_SINKS_READDB_TYPE: key \"sinks.readdb.type\": invalid sink "
                 "type \"mongo\" (expected postgres or redis)");
}

Test(config, environment_errors_name_the_variable)
{
    static const struct {
        const char *var, *value, *msg;
    } cases[] = {
        {"WALCAST_ENGINE_BATCH_MAX_EVENTS", "0",
         "environment variable WALCAST_ENGINE_BATCH_MAX_EVENTS: key \"engine.batch_max_events\": value 0 is "
         "out of "
         "range (1..100000)"},
        {"WALCAST_ENGINE_BATCH_MAX_BYTES", "big",
         "environment variable WALCAST_ENGINE_BATCH_MAX_BYTES: key \"engine.batch_max_bytes\": expected an "
         "integer, "
         "got \"big\""},
        {"WALCAST_SOURCE_SLOT", "Bad Slot",
         "environment variable WALCAST_SOURCE_SLOT: key \"source.slot\": invalid slot name \"Bad Slot\" (use "
         "1 to 63 "
         "of a-z, 0-9 and _)"},
        {"WALCAST_ENGINE_ON_ERROR", "retry",
         "environment variable WALCAST_ENGINE_ON_ERROR: key \"engine.on_error\": invalid value \"retry\" "
         "(expected "
         "dead_letter, skip or halt)"},
        {"WALCAST_ENGINE_RETRY_BASE_MS", "60000",
         "environment variable WALCAST_ENGINE_RETRY_BASE_MS: key \"engine.retry_base_ms\": value 60000 is "
         "above "
         "engine.retry_max_ms (30000)"},
        {"WALCAST_ENGINE_DEAD_LETTER_SINK", "nope",
         "environment variable WALCAST_ENGINE_DEAD_LETTER_SINK: key \"engine.dead_letter_sink\": unknown "
         "sink \"nope\""},
        {"WALCAST_SINKS_CACHE_DSN", "tcp://x",
         "environment variable WALCAST_SINKS_CACHE_DSN: key \"sinks.cache.dsn\": invalid redis address "
         "(expected "
         "redis://[:password@]host[:port][/db])"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct wc_err err = {0};
        setenv(cases[i].var, cases[i].value, 1);
        struct wc_config *cfg = wc_config_load(FIXTURES "/full.yaml", &err);
        unsetenv(cases[i].var);
        cr_expect_null(cfg, "%s accepted", cases[i].var);
        wc_config_free(cfg);
        cr_expect_eq(err.code, WC_ERR_CONFIG);
        cr_expect_str_eq(err.msg, cases[i].msg);
    }

    /* Without a file the same checks apply. */
    struct wc_err err = {0};
    setenv("WALCAST_ENGINE_LOG_LEVEL", "loud", 1);
    cr_expect_null(wc_config_load(NULL, &err));
    cr_expect_str_eq(err.msg,
                     "environment variable WALCAST_ENGINE_LOG_LEVEL: key \"engine.log_level\": invalid value "
                     "\"loud\" (expected debug, info, warning or error)");
}

Test(config, policy_names)
{
    cr_expect_str_eq(wc_policy_name(WC_POLICY_DEAD_LETTER), "dead_letter");
    cr_expect_str_eq(wc_policy_name(WC_POLICY_SKIP), "skip");
    cr_expect_str_eq(wc_policy_name(WC_POLICY_HALT), "halt");
    cr_expect_str_eq(wc_policy_name(17), "unknown");
}

/* Found by fuzz_config: libfyaml 0.7.12 dies on this input; walcast reports it instead of crashing. */
Test(config, yaml_the_parser_crashes_on_is_an_error)
{
    char path[] = "/tmp/walcast_test_config_crashXXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "? e:\t?\n", 7), 7);
    close(fd);
    struct wc_err err = {0};
    struct wc_config *cfg = wc_config_load(path, &err);
    cr_assert_null(cfg);
    cr_assert_eq(err.code, WC_ERR_CONFIG);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "YAML parser failed"), "%s", err.msg);
    unlink(path);
}

/* A redis projection with one action, written one argument per line (line 9 is the first). */
#define REDIS_ACTION(args)                                                                                   \
    "sinks:\n  c:\n    type: redis\nprojections:\n  p:\n    sink: c\n    on:\n      E:\n        -\n" args

/* Safe Redis actions: a literal command from the allow-list, in the shape Redis expects, with keys
 * outside walcast's own names. Each refusal names file, line and key. */
Test(config, redis_actions_allow_list)
{
    wct_expect_config_error(
        REDIS_ACTION("          - \"{payload.cmd}\"\n          - k\n"),
        "10: key \"projections.p.on.E[0][0]\": the redis command must be written out, not a template "
        "(\"{payload.cmd}\"): a payload must not choose the command");
    wct_expect_config_error(
        REDIS_ACTION("          - EXEC\n"),
        "10: key \"projections.p.on.E[0][0]\": redis command \"EXEC\" is not allowed in a projection: "
        "it is a transaction command (walcast wraps each batch in its own MULTI/EXEC)");
    wct_expect_config_error(
        REDIS_ACTION("          - MULTI\n"),
        "10: key \"projections.p.on.E[0][0]\": redis command \"MULTI\" is not allowed in a projection: "
        "it is a transaction command (walcast wraps each batch in its own MULTI/EXEC)");
    wct_expect_config_error(
        REDIS_ACTION("          - SELECT\n          - \"3\"\n"),
        "10: key \"projections.p.on.E[0][0]\": redis command \"SELECT\" is not allowed in a projection: "
        "it is a database command (the sink's database is its dsn's)");
    wct_expect_config_error(
        REDIS_ACTION("          - flushall\n"),
        "10: key \"projections.p.on.E[0][0]\": redis command \"flushall\" is not allowed in a "
        "projection: it is a key-space-wide command");
    wct_expect_config_error(
        REDIS_ACTION("          - SCRIPT\n          - FLUSH\n"),
        "10: key \"projections.p.on.E[0][0]\": redis command \"SCRIPT\" is not allowed in a "
        "projection: it is a script-management command (write a script action instead: {script, "
        "keys, args})");
    wct_expect_config_error(
        REDIS_ACTION("          - CONFIG\n          - SET\n"),
        "10: key \"projections.p.on.E[0][0]\": redis command \"CONFIG\" is not allowed in a "
        "projection: it is a server command");
    wct_expect_config_error(
        REDIS_ACTION("          - ZADD\n          - \"walcast:cursor:walcast\"\n          - 1\n"
                     "          - m\n"),
        "11: key \"projections.p.on.E[0][1]\": key \"walcast:cursor:walcast\" could fall into "
        "walcast's own names (\"walcast:...\": cursor, dead letters): choose another prefix");
    wct_expect_config_error(
        REDIS_ACTION("          - DEL\n          - a\n          - \"walcast{payload.x}\"\n"),
        "12: key \"projections.p.on.E[0][2]\": key \"walcast{payload.x}\" could fall into walcast's "
        "own names (\"walcast:...\": cursor, dead letters): choose another prefix");
    wct_expect_config_error(
        REDIS_ACTION("          - ZADD\n          - z\n          - abc\n          - m\n"),
        "12: key \"projections.p.on.E[0][2]\": argument 2 of ZADD must be a number, got \"abc\"");
    wct_expect_config_error(
        REDIS_ACTION("          - HSET\n          - h\n          - f\n"),
        "10: key \"projections.p.on.E[0]\": wrong number of arguments for HSET (expected HSET key "
        "field value [field value ...])");
    wct_expect_config_error(
        REDIS_ACTION("          - ZADD\n          - z\n          - NX\n          - XX\n          - 1\n"
                     "          - m\n"),
        "10: key \"projections.p.on.E[0]\": ZADD options NX and XX exclude each other");
    wct_expect_config_error(
        REDIS_ACTION("          - SET\n          - k\n          - v\n          - EX\n          - \"0\"\n"),
        "14: key \"projections.p.on.E[0][4]\": argument 4 of SET must be an integer above 0, got \"0\"");
    wct_expect_config_error(
        REDIS_ACTION("          - SET\n          - k\n          - v\n          - KEEP\n"),
        "13: key \"projections.p.on.E[0][3]\": unknown option \"KEEP\" for SET (expected SET key value "
        "[EX|PX|EXAT|PXAT n] [NX|XX] [KEEPTTL])");
    wct_expect_config_error(
        REDIS_ACTION("          - XADD\n          - s\n          - \"1-1\"\n          - f\n          - v\n"),
        "12: key \"projections.p.on.E[0][2]\": XADD takes \"*\" here (walcast lets redis choose the id): "
        "XADD key [NOMKSTREAM] [MAXLEN [~|=] n] * field value [field value ...]");
    wct_expect_config_error(
        "sinks:\n  c:\n    type: redis\nprojections:\n  p:\n    sink: c\n    on:\n      E:\n        "
        "- script: "
        "\"return 1\"\n          keys: [\"walcast:dead_letters:x\"]\n",
        "10: key \"projections.p.on.E[0].keys[0]\": key \"walcast:dead_letters:x\" could fall into "
        "walcast's own "
        "names (\"walcast:...\": cursor, dead letters): choose another prefix");

    /* Allowed: commands in any case, options, templated values of the right kinds. */
    char path[128];
    struct wc_err err = {0};
    struct wc_config *cfg = wct_config_string(
        "sinks:\n  c:\n    type: redis\nprojections:\n  p:\n    sink: c\n    on:\n      E:\n"
        "        - [zadd, \"k:{payload.a}\", GT, CH, \"{payload.s|cents}\", m, 2.5, n]\n"
        "        - [SET, \"s:{payload.a}\", v, EX, 60, NX]\n"
        "        - [XADD, \"log\", MAXLEN, \"~\", 1000, \"*\", a, \"{payload.a}\"]\n"
        "        - [HINCRBY, h, \"{payload.a}\", \"{payload.n}\"]\n"
        "        - [ZREMRANGEBYSCORE, z, \"-inf\", \"({payload.cut}\"]\n"
        "        - [DEL, a, b, \"{payload.k}\"]\n",
        &err, path, sizeof(path));
    cr_assert_not_null(cfg, "%s", err.msg);
    const struct wc_redis_cmd *c = cfg->sinks[0].rules[0].cmds;
    cr_expect_str_eq(c[0].name, "ZADD");
    cr_expect_str_eq(c[0].type, "zset");
    cr_expect_str_eq(c[0].kinds, "CKOOFVFV");
    cr_expect_str_eq(c[1].kinds, "CKVOP"
                                 "O");
    cr_expect_str_eq(c[2].kinds, "CKOONOVV");
    cr_expect_eq(c[3].check, WC_RC_HINCR);
    cr_expect_str_eq(c[4].kinds, "CKRR");
    cr_expect_str_eq(c[5].kinds, "CKKK");
    cr_expect_eq(c[5].effect, WC_RE_DELETE);
    wc_config_free(cfg);
}

/* engine.dead_letter_max: 0 keeps all; a negative bound is refused. */
Test(config, dead_letter_max)
{
    char path[128];
    struct wc_err err = {0};
    struct wc_config *cfg = wct_config_string("engine:\n  dead_letter_max: 0\n", &err, path, sizeof(path));
    cr_assert_not_null(cfg, "%s", err.msg);
    cr_expect_eq(cfg->dead_letter_max, 0);
    wc_config_free(cfg);
    cfg = wct_config_string("", &err, path, sizeof(path));
    cr_assert_not_null(cfg, "%s", err.msg);
    cr_expect_eq(cfg->dead_letter_max, 100000);
    wc_config_free(cfg);
    wct_expect_config_error("engine:\n  dead_letter_max: -1\n",
                            "2: key \"engine.dead_letter_max\": value -1 is out of range (0..1000000000)");
}
