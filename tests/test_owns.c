/* test_owns.c - what projections declare they own (tables, key patterns) and the loader's checks. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "walcast/config.h"

#define HEAD                                                                                                 \
    "sinks:\n"                                                                                               \
    "  db: {type: postgres, dsn: \"\"}\n"                                                                    \
    "  kv: {type: redis, dsn: \"redis://127.0.0.1:6379/0\"}\n"                                               \
    "projections:\n"

Test(owns, declarations_are_loaded)
{
    char path[128];
    struct wc_err err = {0};
    struct wc_config *cfg =
        wct_config_string(HEAD "  a:\n    sink: db\n    tables: [order_summary, read.totals]\n"
                               "    on: {X: [{sql: \"SELECT 1\"}]}\n"
                               "  b:\n    sink: kv\n    keys: [\"order:*\", \"ltv:leaderboard\"]\n"
                               "    on: {X: [[DEL, \"order:1\"]]}\n"
                               "  c:\n    sink: db\n    on: {Y: [{sql: \"SELECT 1\"}]}\n",
                          &err, path, sizeof(path));
    cr_assert_not_null(cfg, "%s", err.msg);
    cr_assert_eq(cfg->nprojection, 3);
    const struct wc_projection *a = wc_config_projection(cfg, "a"), *b = wc_config_projection(cfg, "b");
    cr_assert_not_null(a);
    cr_expect_eq(a->ntables, 2);
    cr_expect_str_eq(a->tables[1], "read.totals");
    cr_expect_str_eq(cfg->sinks[a->sink].name, "db");
    cr_assert_not_null(b);
    cr_expect_eq(b->nkeys, 2);
    cr_expect_str_eq(b->keys[0], "order:*");
    cr_expect_eq(wc_config_projection(cfg, "c")->ntables, 0);
    cr_expect_null(wc_config_projection(cfg, "d"));
    wc_config_free(cfg);
}

Test(owns, two_projections_never_own_one_table_or_key)
{
    wct_expect_config_error(
        HEAD "  a:\n    sink: db\n    tables: [order_summary]\n    on: {X: [{sql: \"SELECT 1\"}]}\n"
             "  b:\n    sink: db\n    tables: [totals, public.order_summary]\n"
             "    on: {Y: [{sql: \"SELECT 1\"}]}\n",
        "9: key \"projections.b.tables\": table \"public.order_summary\" is already owned by "
        "projection \"a\" (line 5): a table belongs to one projection");
    wct_expect_config_error(
        HEAD "  a:\n    sink: kv\n    keys: [\"order:*\"]\n    on: {X: [[DEL, k]]}\n"
             "  b:\n    sink: kv\n    keys: [\"ltv\", \"*:42\"]\n    on: {Y: [[DEL, k]]}\n",
        "9: key \"projections.b.keys\": key pattern \"*:42\" overlaps \"order:*\" of projection \"a\" "
        "(line 5): a key belongs to one projection");
}

Test(owns, declarations_are_checked)
{
    wct_expect_config_error(
        HEAD "  a:\n    sink: kv\n    tables: [t]\n    on: {X: [[DEL, k]]}\n",
        "7: key \"projections.a.tables\": sink \"kv\" is not a PostgreSQL sink: a Redis projection "
        "declares keys");
    wct_expect_config_error(
        HEAD "  a:\n    sink: db\n    keys: [t]\n    on: {X: [{sql: \"SELECT 1\"}]}\n",
        "7: key \"projections.a.keys\": sink \"db\" is not a Redis sink: a PostgreSQL projection "
        "declares tables");
    wct_expect_config_error(
        HEAD "  a:\n    sink: db\n    tables: [\"x;y\"]\n    on: {X: [{sql: \"SELECT 1\"}]}\n",
        "7: key \"projections.a.tables[0]\": expected a table name (table or schema.table, plain "
        "identifiers)");
    wct_expect_config_error(
        HEAD "  a:\n    sink: kv\n    keys: [\"walcast:x\"]\n    on: {X: [[DEL, k]]}\n",
        "7: key \"projections.a.keys[0]\": keys starting with \"walcast:\" are walcast's own");
    wct_expect_config_error(
        HEAD "  a:\n    sink: kv\n    keys: [\"a[bc]\"]\n    on: {X: [[DEL, k]]}\n",
        "7: key \"projections.a.keys[0]\": \"*\" and \"?\" are the only wildcards of a key pattern "
        "(no \"[\", \"]\" or \"\\\")");
    wct_expect_config_error(
        HEAD "  a:\n    sink: db\n    tables: order_summary\n    on: {X: [{sql: \"SELECT 1\"}]}\n",
        "7: key \"projections.a.tables\": expected a list, got a scalar");
}

Test(owns, rebuild_auto)
{
    char path[128];
    struct wc_err err = {0};
    struct wc_config *cfg =
        wct_config_string(HEAD "  a:\n    sink: db\n    tables: [t]\n    rebuild: auto\n"
                               "    on: {X: [{sql: \"SELECT 1\"}]}\n"
                               "  b:\n    sink: db\n    tables: [u]\n    rebuild: manual\n"
                               "    on: {X: [{sql: \"SELECT 2\"}]}\n",
                          &err, path, sizeof(path));
    cr_assert_not_null(cfg, "%s", err.msg);
    cr_expect_eq(wc_config_projection(cfg, "a")->rebuild_auto, 1);
    cr_expect_eq(wc_config_projection(cfg, "b")->rebuild_auto, 0);
    char fa[17], fb[17];
    wc_projection_fingerprint(cfg, wc_config_projection(cfg, "a"), fa);
    wc_projection_fingerprint(cfg, wc_config_projection(cfg, "b"), fb);
    cr_expect_eq(strlen(fa), 16);
    cr_expect_str_neq(fa, fb);
    wc_config_free(cfg);
    wct_expect_config_error(
        HEAD "  a:\n    sink: db\n    rebuild: auto\n    on: {X: [{sql: \"SELECT 1\"}]}\n",
        "7: key \"projections.a.rebuild\": rebuild: auto needs projections.a.tables (what the rebuild swaps "
        "in)");
    /* A Redis projection (one server or a cluster): with the keys it owns. */
    cfg = wct_config_string(HEAD
                            "  a:\n    sink: kv\n    keys: [k]\n    rebuild: auto\n    on: {X: [[DEL, k]]}\n",
                            &err, path, sizeof(path));
    cr_assert_not_null(cfg, "%s", err.msg);
    cr_expect_eq(wc_config_projection(cfg, "a")->rebuild_auto, 1);
    wc_config_free(cfg);
    wct_expect_config_error(HEAD "  a:\n    sink: kv\n    rebuild: auto\n    on: {X: [[DEL, k]]}\n",
                            "7: key \"projections.a.rebuild\": rebuild: auto needs projections.a.keys (what "
                            "the rebuild swaps in)");
    cfg = wct_config_string("sinks:\n  kc: {type: redis, cluster: true, dsn: \"redis://127.0.0.1:7000\"}\n"
                            "projections:\n  a:\n    sink: kc\n    keys: [k]\n    rebuild: auto\n"
                            "    on: {X: [[DEL, k]]}\n",
                            &err, path, sizeof(path));
    cr_assert_not_null(cfg, "%s", err.msg);
    cr_expect_eq(wc_config_projection(cfg, "a")->rebuild_auto, 1);
    wc_config_free(cfg);
    wct_expect_config_error(
        HEAD "  a:\n    sink: db\n    tables: [t]\n    rebuild: always\n    on: {X: [{sql: \"SELECT 1\"}]}\n",
        "8: key \"projections.a.rebuild\": expected auto or manual, got always");
}

Test(owns, key_pattern_overlap)
{
    cr_expect(wc_key_patterns_overlap("order:*", "order:42"));
    cr_expect(wc_key_patterns_overlap("order:*", "*:42"));
    cr_expect(wc_key_patterns_overlap("*", "x"));
    cr_expect(wc_key_patterns_overlap("a?c", "ab*"));
    cr_expect(wc_key_patterns_overlap("customer:{*}:orders", "customer:*"));
    cr_expect_not(wc_key_patterns_overlap("customer:*:orders", "customer:*:ltv"));
    cr_expect_not(wc_key_patterns_overlap("order:*", "orders:status:*"));
    cr_expect_not(wc_key_patterns_overlap("ltv:leaderboard", "ltv:leaderboards"));
    cr_expect_not(wc_key_patterns_overlap("a?", "a"));
    cr_expect_not(wc_key_patterns_overlap("*a", "*b"));
}
