/* test_sink_redis.c - the Redis sink against the private Redis server (scripts/services.sh). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "walcast/config.h"
#include "walcast/log.h"
#include "walcast/sink.h"

/* ---- helpers ---- */

struct fixture {
    int db;
    char *slot;
    char *dir;
    char *path;
    struct wc_config *cfg;
    struct wc_sink *sink;
    redisContext *rc; /* the test's own connection, on db */
};

/*
 * Write a configuration with one redis sink "cache" on db and the given projections (YAML text
 * indented under "projections:"), load it and open the sink. on_error: dead_letter, skip or halt.
 */
static void setup(struct fixture *f, int db, const char *on_error, const char *projections)
{
    FILE *fp;
    struct wc_err err = {0};
    redisReply *r;

    memset(f, 0, sizeof(*f));
    f->db = db;
    f->slot = wct_unique("slot");
    f->dir = wct_tmpdir();
    if (asprintf(&f->path, "%s/walcast.yaml", f->dir) < 0)
        abort();
    fp = fopen(f->path, "w");
    cr_assert_not_null(fp);
    fprintf(fp,
            "source:\n"
            "  dsn: \"\"\n"
            "  slot: %s\n"
            "engine:\n"
            "  on_error: %s\n"
            "  log_level: error\n"
            "sinks:\n"
            "  cache:\n"
            "    type: redis\n"
            "    dsn: \"redis://127.0.0.1:%d/%d\"\n"
            "projections:\n"
            "%s",
            f->slot, on_error, wct_redis_port(), db, projections);
    fclose(fp);
    f->cfg = wc_config_load(f->path, &err);
    cr_assert_not_null(f->cfg, "config: %s", err.msg);

    f->rc = wct_redis(db);
    r = redisCommand(f->rc, "FLUSHDB");
    cr_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);

    f->sink = wc_sink_new(f->cfg, &f->cfg->sinks[0], &err);
    cr_assert_not_null(f->sink, "%s", err.msg);
    cr_assert_eq(f->sink->ops, &wc_sink_redis_ops);
    cr_assert_eq(f->sink->ops->open(f->sink, &err), 0, "open: %s", err.msg);
}

static void teardown(struct fixture *f)
{
    wc_sink_free(f->sink);
    wc_config_free(f->cfg);
    redisFree(f->rc);
    unlink(f->path);
    rmdir(f->dir);
    free(f->path);
    free(f->dir);
    free(f->slot);
}

/* Apply one hand-made event (payload: JSON text, NULL for SQL NULL). */
static int apply(struct wc_sink *s, wc_lsn lsn, int64_t idx, const char *type, const char *payload,
                 struct wc_err *err)
{
    struct wc_event ev;
    char id[64];
    int rc;

    memset(&ev, 0, sizeof(ev));
    snprintf(id, sizeof(id), "evt-%" PRIx64 "-%" PRId64, (uint64_t)lsn, idx);
    ev.pos.lsn = lsn;
    ev.pos.index = idx;
    ev.end_lsn = lsn + 0x30;
    ev.commit_time = "2026-11-27T10:39:53.655523Z";
    ev.col[WC_COL_EVENT_ID] = (struct wc_val){WC_VAL_STRING, id, strlen(id)};
    ev.col[WC_COL_AGGREGATE_TYPE] = (struct wc_val){WC_VAL_STRING, "order", 5};
    ev.col[WC_COL_AGGREGATE_ID] = (struct wc_val){WC_VAL_NUMBER, "42", 2};
    ev.col[WC_COL_EVENT_TYPE] = (struct wc_val){WC_VAL_STRING, type, strlen(type)};
    if (payload)
        ev.col[WC_COL_PAYLOAD] = (struct wc_val){WC_VAL_STRING, payload, strlen(payload)};
    ev.col[WC_COL_OCCURRED_AT] = (struct wc_val){WC_VAL_STRING, "2026-11-27 10:39:53.6+00", 24};
    ev.size = 200;
    rc = s->ops->apply(s, &ev, err);
    if (ev.payload_json)
        json_decref(ev.payload_json);
    return rc;
}

static struct wc_pos pos(wc_lsn lsn, int64_t idx)
{
    return (struct wc_pos){lsn, idx};
}

static void commit(struct fixture *f, struct wc_pos cursor)
{
    struct wc_err err = {0};

    cr_assert_eq(f->sink->ops->commit(f->sink, cursor, &err), 0, "commit: %s", err.msg);
}

/* A reply as a string (new; "(nil)" for nil, the number for an integer). */
static char *cmd_str(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;
    char *out;

    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    cr_assert_not_null(r, "redis: %s", c->errstr);
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR)
        out = strdup(r->str);
    else if (r->type == REDIS_REPLY_INTEGER) {
        if (asprintf(&out, "%lld", r->integer) < 0)
            abort();
    } else if (r->type == REDIS_REPLY_NIL)
        out = strdup("(nil)");
    else if (r->type == REDIS_REPLY_ARRAY) {
        if (asprintf(&out, "[%zu]", r->elements) < 0)
            abort();
    } else
        out = strdup("?");
    freeReplyObject(r);
    return out;
}

static void expect(redisContext *c, const char *want, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;
    char got[512];

    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    cr_assert_not_null(r, "redis: %s", c->errstr);
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR)
        snprintf(got, sizeof(got), "%s", r->str);
    else if (r->type == REDIS_REPLY_INTEGER)
        snprintf(got, sizeof(got), "%lld", r->integer);
    else if (r->type == REDIS_REPLY_NIL)
        snprintf(got, sizeof(got), "(nil)");
    else
        snprintf(got, sizeof(got), "[%zu]", r->elements);
    freeReplyObject(r);
    cr_assert_str_eq(got, want, "%s: got \"%s\", want \"%s\"", fmt, got, want);
}

static void expect_cursor(struct fixture *f, struct wc_pos want)
{
    char text[40];

    expect(f->rc, wc_pos_format(want, text), "HGET walcast:cursor:%s cache", f->slot);
}

/* The dead-letter stream's entries as (field -> value) arrays; returns the XRANGE reply (caller frees). */
static redisReply *dead_letters(struct fixture *f)
{
    redisReply *r = redisCommand(f->rc, "XRANGE walcast:dead_letters:%s - +", f->slot);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    return r;
}

/* Field of a stream entry (entry = [id, [f1, v1, ...]]); NULL when absent. */
static const char *entry_field(const redisReply *entry, const char *name)
{
    const redisReply *kv = entry->element[1];

    for (size_t i = 0; i + 1 < kv->elements; i += 2)
        if (strcmp(kv->element[i]->str, name) == 0)
            return kv->element[i + 1]->str;
    return NULL;
}

#define ORDER_PLACED                                                                                         \
    "{\"order_id\": 7, \"customer_id\": 3, \"total\": \"19.99\", \"placed_at\": "                            \
    "\"2026-11-27T10:39:53.655Z\"}"

static void init(void)
{
    /* WCT_VERBOSE=1 shows the sink's warnings */
    wc_log_level = getenv("WCT_VERBOSE") ? WC_LOG_DEBUG : WC_LOG_ERROR;
}

TestSuite(sink_redis, .init = init, .timeout = 120);

/* ---- projection commands ---- */

Test(sink_redis, zadd_with_epoch_ms_score)
{
    struct fixture f;

    setup(&f, 1, "dead_letter",
          "  customer_orders:\n"
          "    sink: cache\n"
          "    on:\n"
          "      OrderPlaced:\n"
          "        - [ZADD, \"customer:{payload.customer_id}:orders\", \"{payload.placed_at|epoch_ms}\", "
          "\"{payload.order_id}\"]\n");
    struct wc_err err = {0};
    cr_assert_eq(apply(f.sink, 0x16B3748, 0, "OrderPlaced", ORDER_PLACED, &err), 0, "%s", err.msg);
    cr_assert_eq(f.sink->applied, 1);
    commit(&f, pos(0x16B3748, 0));
    expect(f.rc, "1795775993655", "ZSCORE customer:3:orders 7");
    expect(f.rc, "1", "ZCARD customer:3:orders");
    expect_cursor(&f, pos(0x16B3748, 0));
    teardown(&f);
}

Test(sink_redis, hset_fields)
{
    struct fixture f;

    setup(&f, 2, "dead_letter",
          "  orders:\n"
          "    sink: cache\n"
          "    on:\n"
          "      OrderPlaced:\n"
          "        - [HSET, \"order:{payload.order_id}\", status, placed, total, \"{payload.total}\", "
          "customer, \"{payload.customer_id}\", agg, \"{aggregate_type}:{aggregate_id}\"]\n"
          "      OrderShipped:\n"
          "        - [HSET, \"order:{payload.order_id}\", status, shipped]\n");
    struct wc_err err = {0};
    cr_assert_eq(apply(f.sink, 0x100, 0, "OrderPlaced", ORDER_PLACED, &err), 0, "%s", err.msg);
    cr_assert_eq(apply(f.sink, 0x100, 1, "Ignored", "{}", &err), 0, "%s", err.msg);
    cr_assert_eq(apply(f.sink, 0x200, 0, "OrderShipped", "{\"order_id\": 7}", &err), 0, "%s", err.msg);
    cr_assert_eq(f.sink->applied, 2);
    commit(&f, pos(0x200, 0));
    expect(f.rc, "shipped", "HGET order:7 status");
    expect(f.rc, "19.99", "HGET order:7 total");
    expect(f.rc, "3", "HGET order:7 customer");
    expect(f.rc, "order:42", "HGET order:7 agg");
    teardown(&f);
}

Test(sink_redis, zincrby_decimal_amounts)
{
    struct fixture f;
    const char *totals[] = {"12.5", "0.25", "7.75", "19.99", "0.01"};
    char payload[128], *score;

    setup(&f, 3, "dead_letter",
          "  ltv:\n"
          "    sink: cache\n"
          "    on:\n"
          "      OrderPlaced:\n"
          "        - [ZINCRBY, ltv, \"{payload.total|number}\", \"{payload.customer_id}\"]\n");
    struct wc_err err = {0};
    for (int i = 0; i < 3; i++) {
        snprintf(payload, sizeof(payload), "{\"customer_id\": 3, \"total\": %s}", totals[i]);
        cr_assert_eq(apply(f.sink, 0x300, i, "OrderPlaced", payload, &err), 0, "%s", err.msg);
    }
    commit(&f, pos(0x300, 2));
    expect(f.rc, "20.5", "ZSCORE ltv 3");
    for (int i = 3; i < 5; i++) {
        snprintf(payload, sizeof(payload), "{\"customer_id\": 3, \"total\": \"%s\"}", totals[i]);
        cr_assert_eq(apply(f.sink, 0x400, i, "OrderPlaced", payload, &err), 0, "%s", err.msg);
    }
    commit(&f, pos(0x400, 4));
    score = cmd_str(f.rc, "ZSCORE ltv 3");
    cr_assert_float_eq(strtod(score, NULL), 40.5, 1e-9, "score %s", score);
    free(score);
    teardown(&f);
}

Test(sink_redis, lua_script_action)
{
    struct fixture f;

    setup(&f, 4, "dead_letter",
          "  ltv:\n"
          "    sink: cache\n"
          "    on:\n"
          "      OrderPlaced:\n"
          "        - script: \"return redis.call('ZINCRBY', KEYS[1], ARGV[1], ARGV[2])\"\n"
          "          keys: [\"ltv\"]\n"
          "          args: [\"{payload.total}\", \"{payload.customer_id}\"]\n"
          "        - script: \"redis.call('SET', KEYS[2], ARGV[1]); return redis.call('INCR', KEYS[1])\"\n"
          "          keys: [\"count:{payload.customer_id}\", \"last:{payload.customer_id}\"]\n"
          "          args: [\"{payload.order_id}\"]\n");
    struct wc_err err = {0};
    cr_assert_eq(apply(f.sink, 0x500, 0, "OrderPlaced",
                       "{\"order_id\": 1, \"customer_id\": 9, \"total\": \"2.5\"}", &err),
                 0, "%s", err.msg);
    cr_assert_eq(apply(f.sink, 0x500, 1, "OrderPlaced",
                       "{\"order_id\": 2, \"customer_id\": 9, \"total\": \"4\"}", &err),
                 0, "%s", err.msg);
    commit(&f, pos(0x500, 1));
    expect(f.rc, "6.5", "ZSCORE ltv 9");
    expect(f.rc, "2", "GET count:9");
    expect(f.rc, "2", "GET last:9");
    teardown(&f);
}

Test(sink_redis, script_reloaded_after_flush)
{
    struct fixture f;

    setup(&f, 5, "dead_letter",
          "  counter:\n"
          "    sink: cache\n"
          "    on:\n"
          "      Tick:\n"
          "        - script: \"return redis.call('INCRBY', KEYS[1], ARGV[1])\"\n"
          "          keys: [\"ticks\"]\n"
          "          args: [\"{payload.n}\"]\n");
    struct wc_err err = {0};
    /* The script cache is emptied behind the sink's back (a restart without persistence, a failover):
     * the commit loads the scripts it uses again before its MULTI. */
    expect(f.rc, "OK", "SCRIPT FLUSH");
    cr_assert_eq(apply(f.sink, 0x600, 0, "Tick", "{\"n\": 5}", &err), 0, "%s", err.msg);
    commit(&f, pos(0x600, 0));
    expect(f.rc, "5", "GET ticks");
    redisReply *dl = dead_letters(&f);
    cr_assert_eq(dl->elements, 0);
    freeReplyObject(dl);
    teardown(&f);
}

/* ---- cursor ---- */

Test(sink_redis, cursor_round_trip)
{
    struct fixture f;
    struct wc_pos got;
    int found = -1;

    setup(&f, 6, "dead_letter",
          "  p:\n"
          "    sink: cache\n"
          "    on:\n"
          "      E:\n"
          "        - [INCR, n]\n");
    struct wc_err err = {0};
    cr_assert_eq(f.sink->ops->read_cursor(f.sink, &got, &found, &err), 0, "%s", err.msg);
    cr_assert_eq(found, 0);
    cr_assert_eq(wc_pos_cmp(got, WC_POS_NONE), 0);

    cr_assert_eq(apply(f.sink, 0x1234ABCD00ULL, 0, "E", "{}", &err), 0, "%s", err.msg);
    commit(&f, pos(0x1234ABCD00ULL, 0));
    expect_cursor(&f, pos(0x1234ABCD00ULL, 0));

    /* read back through a fresh connection, as after a restart */
    f.sink->ops->close(f.sink);
    cr_assert_eq(f.sink->ops->open(f.sink, &err), 0, "%s", err.msg);
    cr_assert_eq(f.sink->ops->read_cursor(f.sink, &got, &found, &err), 0, "%s", err.msg);
    cr_assert_eq(found, 1);
    cr_assert_eq(got.lsn, 0x1234ABCD00ULL);
    cr_assert_eq(got.index, 0);
    teardown(&f);
}

Test(sink_redis, commit_with_nothing_pending_moves_cursor)
{
    struct fixture f;
    struct wc_pos got;
    int found;

    setup(&f, 7, "dead_letter",
          "  p:\n"
          "    sink: cache\n"
          "    on:\n"
          "      E:\n"
          "        - [INCR, n]\n");
    struct wc_err err = {0};
    commit(&f, pos(0x700, -1));
    expect_cursor(&f, pos(0x700, -1));
    cr_assert_eq(apply(f.sink, 0x800, 0, "Unrouted", "{}", &err), 0, "%s", err.msg);
    commit(&f, pos(0x900, -1));
    cr_assert_eq(f.sink->ops->read_cursor(f.sink, &got, &found, &err), 0, "%s", err.msg);
    cr_assert_eq(found, 1);
    cr_assert_eq(wc_pos_cmp(got, pos(0x900, -1)), 0);
    expect(f.rc, "0", "EXISTS n");
    teardown(&f);
}

/* The applied-through position (the cursor's LSN) goes into walcast:applied:<slot> and is announced on
 * the channel of that name in the unit that stores the cursor: a reader told "cache 0/A00" sees the
 * event's writes. A unit that halts publishes nothing; dlq retry never does. */
static void applied_published(const char *on_error, int db)
{
    struct fixture f;
    struct wc_err err = {0};
    redisReply *r;

    setup(&f, db, on_error,
          "  p:\n"
          "    sink: cache\n"
          "    on:\n"
          "      E:\n"
          "        - [INCR, n]\n");
    redisContext *sub = wct_redis(db);
    r = redisCommand(sub, "SUBSCRIBE walcast:applied:%s", f.slot);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    freeReplyObject(r);
    expect(f.rc, "(nil)", "HGET walcast:applied:%s cache", f.slot);
    cr_assert_eq(apply(f.sink, 0x900, 0, "E", "{}", &err), 0, "%s", err.msg);
    commit(&f, pos(0xA00, -1));
    expect(f.rc, "1", "GET n");
    expect(f.rc, "0/A00", "HGET walcast:applied:%s cache", f.slot);
    cr_assert_eq(redisGetReply(sub, (void **)&r), REDIS_OK);
    cr_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 3);
    cr_assert_str_eq(r->element[2]->str, "cache 0/A00");
    freeReplyObject(r);
    /* Nothing queued: the cursor alone moves, and the position with it (an idle advance). */
    commit(&f, pos(0xB00, -1));
    expect(f.rc, "0/B00", "HGET walcast:applied:%s cache", f.slot);
    cr_assert_eq(redisGetReply(sub, (void **)&r), REDIS_OK);
    cr_assert_str_eq(r->element[2]->str, "cache 0/B00");
    freeReplyObject(r);
    /* Inside a transaction: its commit LSN, which no waiter for that transaction (its end or later) takes
     * for applied. */
    cr_assert_eq(apply(f.sink, 0xC00, 0, "E", "{}", &err), 0, "%s", err.msg);
    commit(&f, pos(0xC00, 0));
    expect(f.rc, "0/C00", "HGET walcast:applied:%s cache", f.slot);
    redisFree(sub);
    teardown(&f);
}

Test(sink_redis, applied_position_published_with_the_cursor)
{
    applied_published("dead_letter", 5);
}

Test(sink_redis, applied_position_published_with_the_cursor_under_halt)
{
    applied_published("halt", 6);
}

/* ---- the error policies ---- */

#define TWO_ACTIONS                                                                                          \
    "  orders:\n"                                                                                            \
    "    sink: cache\n"                                                                                      \
    "    on:\n"                                                                                              \
    "      OrderPlaced:\n"                                                                                   \
    "        - [INCR, \"placed\"]\n"                                                                         \
    "        - [ZADD, \"customer:{payload.customer_id}:orders\", \"{payload.placed_at|epoch_ms}\", "         \
    "\"{payload.order_id}\"]\n"

Test(sink_redis, missing_field_is_dead_lettered)
{
    struct fixture f;
    const char *bad = "{\"order_id\": 8, \"placed_at\": \"2026-11-27T10:39:53.655Z\"}";

    setup(&f, 8, "dead_letter", TWO_ACTIONS);
    struct wc_err err = {0};
    cr_assert_eq(apply(f.sink, 0x16B3748, 0, "OrderPlaced", ORDER_PLACED, &err), 0, "%s", err.msg);
    cr_assert_eq(apply(f.sink, 0x16B3748, 1, "OrderPlaced", bad, &err), 0, "%s", err.msg);
    cr_assert_eq(apply(f.sink, 0x16B3748, 2, "OrderPlaced", ORDER_PLACED, &err), 0, "%s", err.msg);
    cr_assert_eq(f.sink->applied, 2);
    cr_assert_eq(f.sink->dead_lettered, 1);
    commit(&f, pos(0x16B3748, 2));

    /* the bad event's first action (INCR) was rolled back with it */
    expect(f.rc, "2", "GET placed");
    expect_cursor(&f, pos(0x16B3748, 2));
    redisReply *dl = dead_letters(&f);
    cr_assert_eq(dl->elements, 1);
    const redisReply *e = dl->element[0];
    cr_assert_str_eq(entry_field(e, "sink"), "cache");
    cr_assert_str_eq(entry_field(e, "lsn"), "0/16B3748");
    cr_assert_str_eq(entry_field(e, "idx"), "1");
    cr_assert_str_eq(entry_field(e, "event_id"), "evt-16b3748-1");
    cr_assert_str_eq(entry_field(e, "event_type"), "OrderPlaced");
    cr_assert_str_eq(entry_field(e, "aggregate_type"), "order");
    cr_assert_str_eq(entry_field(e, "aggregate_id"), "42");
    cr_assert_str_eq(entry_field(e, "payload"), bad);
    cr_assert_not_null(strstr(entry_field(e, "error"), "customer_id"), "error: %s", entry_field(e, "error"));
    cr_assert_not_null(strstr(entry_field(e, "error"), "orders"), "error: %s", entry_field(e, "error"));
    freeReplyObject(dl);
    teardown(&f);
}

/* Template semantics (template.c): inside a template a JSON null renders as nothing; only a missing field
 * is an error. */
Test(sink_redis, null_value_renders_empty)
{
    struct fixture f;

    setup(&f, 9, "dead_letter",
          "  p:\n"
          "    sink: cache\n"
          "    on:\n"
          "      E:\n"
          "        - [SET, \"k:{payload.id}\", \"{payload.v}\"]\n");
    struct wc_err err = {0};
    cr_assert_eq(apply(f.sink, 0x900, 0, "E", "{\"id\": 1, \"v\": null}", &err), 0, "%s", err.msg);
    cr_assert_eq(apply(f.sink, 0x900, 1, "E", "{\"id\": 2, \"v\": \"x\"}", &err), 0, "%s", err.msg);
    commit(&f, pos(0x900, 1));
    expect(f.rc, "", "GET k:1");
    expect(f.rc, "x", "GET k:2");
    expect(f.rc, "0", "EXISTS walcast:dead_letters:%s", f.slot);
    teardown(&f);
}

Test(sink_redis, skip_policy)
{
    struct fixture f;

    setup(&f, 10, "skip", TWO_ACTIONS);
    struct wc_err err = {0};
    cr_assert_eq(apply(f.sink, 0xA00, 0, "OrderPlaced", "{\"order_id\": 1}", &err), 0, "%s", err.msg);
    cr_assert_eq(apply(f.sink, 0xA00, 1, "OrderPlaced", ORDER_PLACED, &err), 0, "%s", err.msg);
    cr_assert_eq(f.sink->skipped, 1);
    cr_assert_eq(f.sink->dead_lettered, 0);
    commit(&f, pos(0xA00, 1));
    expect(f.rc, "1", "GET placed");
    expect(f.rc, "0", "EXISTS walcast:dead_letters:%s", f.slot);
    expect_cursor(&f, pos(0xA00, 1));
    teardown(&f);
}

Test(sink_redis, halt_policy)
{
    struct fixture f;

    setup(&f, 11, "halt", TWO_ACTIONS);
    struct wc_err err = {0};
    cr_assert_eq(apply(f.sink, 0xB00, 0, "OrderPlaced", ORDER_PLACED, &err), 0, "%s", err.msg);
    cr_assert_eq(apply(f.sink, 0xB00, 1, "OrderPlaced", "{\"order_id\": 1}", &err), -1);
    cr_assert_eq(err.code, WC_ERR_DATA);
    cr_assert_not_null(strstr(err.msg, "customer_id"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "0/B00:1"), "%s", err.msg);
    /* the engine stops without committing: nothing reaches Redis */
    f.sink->ops->close(f.sink);
    expect(f.rc, "0", "EXISTS placed");
    expect(f.rc, "0", "EXISTS walcast:cursor:%s", f.slot);
    teardown(&f);
}

Test(sink_redis, close_without_commit_writes_nothing)
{
    struct fixture f;

    setup(&f, 12, "dead_letter", TWO_ACTIONS);
    struct wc_err err = {0};
    for (int i = 0; i < 10; i++)
        cr_assert_eq(apply(f.sink, 0xC00, i, "OrderPlaced", ORDER_PLACED, &err), 0, "%s", err.msg);
    cr_assert_eq(apply(f.sink, 0xC00, 10, "OrderPlaced", "{}", &err), 0, "%s", err.msg); /* dead letter */
    f.sink->ops->close(f.sink);
    expect(f.rc, "0", "DBSIZE");
    teardown(&f);
}

Test(sink_redis, unknown_event_dead_letter)
{
    struct fixture f;
    struct wc_event ev;

    setup(&f, 13, "dead_letter", TWO_ACTIONS);
    struct wc_err err = {0};
    memset(&ev, 0, sizeof(ev));
    ev.pos = pos(0xD00, 3);
    ev.col[WC_COL_EVENT_TYPE] = (struct wc_val){WC_VAL_STRING, "Mystery", 7};
    ev.col[WC_COL_EVENT_ID] = (struct wc_val){WC_VAL_STRING, "m1", 2};
    cr_assert_eq(
        f.sink->ops->dead_letter(f.sink, NULL, &ev, "no projection handles event type \"Mystery\"", &err), 0);
    commit(&f, pos(0xD00, 3));
    redisReply *dl = dead_letters(&f);
    cr_assert_eq(dl->elements, 1);
    cr_assert_str_eq(entry_field(dl->element[0], "event_type"), "Mystery");
    cr_assert_str_eq(entry_field(dl->element[0], "idx"), "3");
    cr_assert_str_eq(entry_field(dl->element[0], "payload"), "");
    cr_assert_str_eq(entry_field(dl->element[0], "error"), "no projection handles event type \"Mystery\"");
    freeReplyObject(dl);
    expect_cursor(&f, pos(0xD00, 3));
    teardown(&f);
}

/* A value Redis would refuse while EXEC runs (a score that is no number) is found while the event is
 * queued: the event is dead-lettered whole and the others apply. */
Test(sink_redis, value_redis_would_refuse_is_dead_lettered_whole)
{
    struct fixture f;

    setup(&f, 14, "dead_letter",
          "  p:\n"
          "    sink: cache\n"
          "    on:\n"
          "      Good:\n"
          "        - [INCR, good]\n"
          "        - [ZADD, scores, \"{payload.score}\", \"{payload.n}\"]\n");
    struct wc_err err = {0};
    cr_assert_eq(apply(f.sink, 0xE00, 0, "Good", "{\"n\": 1, \"score\": 1.5}", &err), 0, "%s", err.msg);
    cr_assert_eq(apply(f.sink, 0xE00, 1, "Good", "{\"n\": 2, \"score\": \"abc\"}", &err), 0, "%s", err.msg);
    cr_assert_eq(apply(f.sink, 0xF00, 0, "Good", "{\"n\": 3, \"score\": \"-inf\"}", &err), 0, "%s", err.msg);
    commit(&f, pos(0x1000, -1));
    expect(f.rc, "2", "GET good");
    expect(f.rc, "2", "ZCARD scores");
    expect(f.rc, "-inf", "ZSCORE scores 3");
    expect_cursor(&f, pos(0x1000, -1));
    redisReply *dl = dead_letters(&f);
    cr_assert_eq(dl->elements, 1);
    cr_assert_str_eq(entry_field(dl->element[0], "idx"), "1");
    cr_assert_str_eq(entry_field(dl->element[0], "lsn"), "0/E00");
    cr_assert_not_null(
        strstr(entry_field(dl->element[0], "error"), "is not a number as redis reads one: \"abc\""), "%s",
        entry_field(dl->element[0], "error"));
    freeReplyObject(dl);
    cr_assert_eq(f.sink->dead_lettered, 1);
    cr_assert_eq(f.sink->applied, 2);
    teardown(&f);
}

#define WRONGTYPE_MID_EVENT                                                                                  \
    "  p:\n"                                                                                                 \
    "    sink: cache\n"                                                                                      \
    "    on:\n"                                                                                              \
    "      E:\n"                                                                                             \
    "        - [INCR, count]\n"                                                                              \
    "        - [HINCRBY, totals, \"{payload.who}\", \"{payload.n}\"]\n"                                      \
    "        - [ZADD, \"{payload.key}\", 1, member]\n"                                                       \
    "        - [SADD, seen, \"{payload.who}\"]\n"

/*
 * A command that would fail while EXEC runs (WRONGTYPE on the third of four commands) used to leave the
 * event's other commands applied and its dead letter written after EXEC. Now the event's script checks
 * every key before its first write: nothing of the event is applied, its dead letter is written by the
 * script in the same EXEC as the cursor, and a retry after the key is fixed applies it once.
 */
Test(sink_redis, wrongtype_mid_event_applies_nothing_and_retry_is_exact)
{
    struct fixture f;

    setup(&f, 15, "dead_letter", WRONGTYPE_MID_EVENT);
    struct wc_err err = {0};
    expect(f.rc, "OK", "SET str value");
    cr_assert_eq(apply(f.sink, 0x1100, 0, "E", "{\"key\": \"z\", \"who\": \"a\", \"n\": 5}", &err), 0, "%s",
                 err.msg);
    cr_assert_eq(apply(f.sink, 0x1100, 1, "E", "{\"key\": \"str\", \"who\": \"b\", \"n\": 7}", &err), 0, "%s",
                 err.msg);
    cr_assert_eq(apply(f.sink, 0x1100, 2, "E", "{\"key\": \"z\", \"who\": \"c\", \"n\": 1}", &err), 0, "%s",
                 err.msg);
    commit(&f, pos(0x1100, 2));
    expect(f.rc, "2", "GET count");
    expect(f.rc, "(nil)", "HGET totals b");
    expect(f.rc, "0", "SISMEMBER seen b");
    expect(f.rc, "2", "SCARD seen");
    expect_cursor(&f, pos(0x1100, 2));
    cr_assert_eq(f.sink->applied, 2);
    cr_assert_eq(f.sink->dead_lettered, 1);
    redisReply *dl = dead_letters(&f);
    cr_assert_eq(dl->elements, 1);
    cr_assert_str_eq(entry_field(dl->element[0], "idx"), "1");
    cr_assert_str_eq(entry_field(dl->element[0], "event_type"), "E");
    cr_assert_str_eq(entry_field(dl->element[0], "sink"), "cache");
    cr_assert_null(entry_field(dl->element[0], "applied"), "nothing of the event took effect");
    cr_assert_not_null(strstr(entry_field(dl->element[0], "error"), "ZADD on key \"str\": WRONGTYPE"), "%s",
                       entry_field(dl->element[0], "error"));
    freeReplyObject(dl);

    /* Still the wrong type: the retry fails, applies nothing and keeps the dead letter. */
    int retried = 0, failed = 0;
    cr_assert_eq(wc_sink_dlq_retry(f.sink, NULL, &retried, &failed, &err), 0, "%s", err.msg);
    cr_assert_eq(retried, 0);
    cr_assert_eq(failed, 1);
    expect(f.rc, "2", "GET count");
    expect(f.rc, "(nil)", "HGET totals b");
    dl = dead_letters(&f);
    cr_assert_eq(dl->elements, 1);
    freeReplyObject(dl);

    /* Fixed: applied once, every command, and the dead letter goes in the same unit. */
    expect(f.rc, "1", "DEL str");
    cr_assert_eq(wc_sink_dlq_retry(f.sink, NULL, &retried, &failed, &err), 0, "%s", err.msg);
    cr_assert_eq(retried, 1);
    expect(f.rc, "3", "GET count");
    expect(f.rc, "7", "HGET totals b");
    expect(f.rc, "5", "HGET totals a");
    expect(f.rc, "1", "HGET totals c");
    expect(f.rc, "1", "ZCARD str");
    expect(f.rc, "3", "SCARD seen");
    dl = dead_letters(&f);
    cr_assert_eq(dl->elements, 0);
    freeReplyObject(dl);
    expect_cursor(&f, pos(0x1100, 2));
    teardown(&f);
}

/* With on_error: skip the failing event writes nothing, leaves no dead letter, and the others apply. */
Test(sink_redis, wrongtype_with_skip_applies_nothing_of_the_event)
{
    struct fixture f;

    setup(&f, 10, "skip", WRONGTYPE_MID_EVENT);
    struct wc_err err = {0};
    expect(f.rc, "OK", "SET str value");
    cr_assert_eq(apply(f.sink, 0x1100, 0, "E", "{\"key\": \"str\", \"who\": \"b\", \"n\": 7}", &err), 0, "%s",
                 err.msg);
    cr_assert_eq(apply(f.sink, 0x1100, 1, "E", "{\"key\": \"z\", \"who\": \"c\", \"n\": 1}", &err), 0, "%s",
                 err.msg);
    commit(&f, pos(0x1100, 1));
    expect(f.rc, "1", "GET count");
    expect(f.rc, "(nil)", "HGET totals b");
    expect(f.rc, "0", "EXISTS walcast:dead_letters:%s", f.slot);
    cr_assert_eq(f.sink->skipped, 1);
    cr_assert_eq(f.sink->applied, 1);
    expect_cursor(&f, pos(0x1100, 1));
    teardown(&f);
}

/*
 * With on_error: halt the engine stops BEFORE the cursor passes the failed event: the unit stores the
 * cursor at the event before it, and the events after it in the same unit are not applied (they come
 * again with the failed one after a restart).
 */
Test(sink_redis, wrongtype_with_halt_stops_before_the_event)
{
    struct fixture f;

    setup(&f, 11, "halt", WRONGTYPE_MID_EVENT);
    struct wc_err err = {0};
    expect(f.rc, "OK", "SET str value");
    cr_assert_eq(apply(f.sink, 0x1100, 0, "E", "{\"key\": \"z\", \"who\": \"a\", \"n\": 5}", &err), 0, "%s",
                 err.msg);
    cr_assert_eq(apply(f.sink, 0x1100, 1, "E", "{\"key\": \"str\", \"who\": \"b\", \"n\": 7}", &err), 0, "%s",
                 err.msg);
    cr_assert_eq(apply(f.sink, 0x1100, 2, "E", "{\"key\": \"z\", \"who\": \"c\", \"n\": 1}", &err), 0, "%s",
                 err.msg);
    cr_assert_eq(f.sink->ops->commit(f.sink, pos(0x1200, -1), &err), -1);
    cr_assert_eq(err.code, WC_ERR_DATA);
    cr_assert_not_null(strstr(err.msg, "event \"E\" at 0/1100:1"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "WRONGTYPE"), "%s", err.msg);
    expect(f.rc, "1", "GET count");
    expect(f.rc, "5", "HGET totals a");
    expect(f.rc, "(nil)", "HGET totals b");
    expect(f.rc, "(nil)", "HGET totals c");
    expect_cursor(&f, pos(0x1100, 0));
    /* The unit halted: the applied position is not published past what was stored before it. */
    expect(f.rc, "(nil)", "HGET walcast:applied:%s cache", f.slot);
    expect(f.rc, "0", "EXISTS walcast:halt:%s:cache", f.slot);
    expect(f.rc, "0", "EXISTS walcast:dead_letters:%s", f.slot);

    /* The first event of a unit halting leaves the stored cursor as it was. */
    cr_assert_eq(apply(f.sink, 0x1100, 1, "E", "{\"key\": \"str\", \"who\": \"b\", \"n\": 7}", &err), 0, "%s",
                 err.msg);
    cr_assert_eq(f.sink->ops->commit(f.sink, pos(0x1200, -1), &err), -1);
    expect_cursor(&f, pos(0x1100, 0));
    expect(f.rc, "1", "GET count");
    teardown(&f);
}

/* Counters: a stored value INCRBY or HINCRBY cannot add to fails the event before any write, as does an
 * overflow; the event's own earlier writes count (SET then INCR). */
Test(sink_redis, counter_checks_before_the_first_write)
{
    struct fixture f;

    setup(&f, 1, "dead_letter",
          "  p:\n"
          "    sink: cache\n"
          "    on:\n"
          "      E:\n"
          "        - [SADD, seen, \"{payload.n}\"]\n"
          "        - [INCRBY, \"{payload.k}\", \"{payload.by}\"]\n"
          "        - [HINCRBY, h, \"{payload.f}\", 1]\n"
          "      S:\n"
          "        - [SET, \"{payload.k}\", \"{payload.v}\"]\n"
          "        - [INCR, \"{payload.k}\"]\n");
    struct wc_err err = {0};
    expect(f.rc, "OK", "SET text abc");
    expect(f.rc, "OK", "SET big 9223372036854775800");
    expect(f.rc, "1", "HSET h x notanumber");
    cr_assert_eq(apply(f.sink, 0x100, 0, "E", "{\"n\": 1, \"k\": \"text\", \"by\": 1, \"f\": \"y\"}", &err),
                 0);
    cr_assert_eq(apply(f.sink, 0x100, 1, "E", "{\"n\": 2, \"k\": \"big\", \"by\": 100, \"f\": \"y\"}", &err),
                 0);
    cr_assert_eq(apply(f.sink, 0x100, 2, "E", "{\"n\": 3, \"k\": \"c\", \"by\": 2, \"f\": \"x\"}", &err), 0);
    cr_assert_eq(apply(f.sink, 0x100, 3, "E", "{\"n\": 4, \"k\": \"c\", \"by\": 3, \"f\": \"y\"}", &err), 0);
    cr_assert_eq(apply(f.sink, 0x100, 4, "S", "{\"k\": \"s1\", \"v\": \"41\"}", &err), 0);
    cr_assert_eq(apply(f.sink, 0x100, 5, "S", "{\"k\": \"s2\", \"v\": \"x\"}", &err), 0);
    commit(&f, pos(0x100, 5));
    expect(f.rc, "1", "SCARD seen");
    expect(f.rc, "1", "SISMEMBER seen 4");
    expect(f.rc, "3", "GET c");
    expect(f.rc, "abc", "GET text");
    expect(f.rc, "9223372036854775800", "GET big");
    expect(f.rc, "1", "HGET h y");
    expect(f.rc, "42", "GET s1");
    expect(f.rc, "(nil)", "GET s2");
    redisReply *dl = dead_letters(&f);
    cr_assert_eq(dl->elements, 4);
    cr_assert_not_null(
        strstr(entry_field(dl->element[0], "error"), "INCRBY on key \"text\": ERR value is not an integer"));
    cr_assert_not_null(strstr(entry_field(dl->element[1], "error"), "would overflow"));
    cr_assert_not_null(strstr(entry_field(dl->element[2], "error"), "HINCRBY on key \"h\" field \"x\""));
    cr_assert_not_null(strstr(entry_field(dl->element[3], "error"), "INCR on key \"s2\""));
    freeReplyObject(dl);
    teardown(&f);
}

/*
 * A failure no check foresees (a script action raising an error after the event's first command wrote):
 * the dead letter is still written in the unit and records how many actions took effect, and dlq retry
 * refuses it rather than apply them twice.
 */
Test(sink_redis, failure_after_a_write_is_recorded_and_not_retried)
{
    struct fixture f;

    setup(&f, 2, "dead_letter",
          "  p:\n"
          "    sink: cache\n"
          "    on:\n"
          "      E:\n"
          "        - [INCR, count]\n"
          "        - script: \"if ARGV[1] == 'bad' then error('refused by the script') end\n"
          "            return redis.call('SET', KEYS[1], ARGV[1])\"\n"
          "          keys: [last]\n"
          "          args: [\"{payload.v}\"]\n");
    struct wc_err err = {0};
    cr_assert_eq(apply(f.sink, 0x100, 0, "E", "{\"v\": \"ok\"}", &err), 0);
    cr_assert_eq(apply(f.sink, 0x100, 1, "E", "{\"v\": \"bad\"}", &err), 0);
    commit(&f, pos(0x100, 1));
    expect(f.rc, "2", "GET count");
    expect(f.rc, "ok", "GET last");
    redisReply *dl = dead_letters(&f);
    cr_assert_eq(dl->elements, 1);
    cr_assert_str_eq(entry_field(dl->element[0], "applied"), "1");
    cr_assert_not_null(strstr(entry_field(dl->element[0], "error"), "refused by the script"), "%s",
                       entry_field(dl->element[0], "error"));
    freeReplyObject(dl);
    int retried = 0, failed = 0;
    cr_assert_eq(wc_sink_dlq_retry(f.sink, NULL, &retried, &failed, &err), 0, "%s", err.msg);
    cr_assert_eq(failed, 1);
    expect(f.rc, "2", "GET count");
    teardown(&f);
}

/* A key rendered into walcast's own names is refused with the event (the configuration could not tell). */
Test(sink_redis, rendered_key_in_walcast_names_is_refused)
{
    struct fixture f;

    setup(&f, 3, "dead_letter",
          "  p:\n"
          "    sink: cache\n"
          "    on:\n"
          "      E:\n"
          "        - [HSET, \"{payload.k}\", a, b]\n");
    struct wc_err err = {0};
    char payload[200];
    snprintf(payload, sizeof(payload), "{\"k\": \"walcast:cursor:%s\"}", f.slot);
    cr_assert_eq(apply(f.sink, 0x100, 0, "E", payload, &err), 0);
    commit(&f, pos(0x100, 0));
    expect(f.rc, "(nil)", "HGET walcast:cursor:%s a", f.slot);
    redisReply *dl = dead_letters(&f);
    cr_assert_eq(dl->elements, 1);
    cr_assert_not_null(strstr(entry_field(dl->element[0], "error"), "walcast's own names"));
    freeReplyObject(dl);
    teardown(&f);
}

/* engine.dead_letter_max bounds the stream (XADD MAXLEN ~: whole stream nodes go, so a little more stays). */
Test(sink_redis, dead_letters_are_bounded)
{
    struct fixture f;

    setup(&f, 4, "dead_letter\n  dead_letter_max: 10",
          "  p:\n"
          "    sink: cache\n"
          "    on:\n"
          "      E:\n"
          "        - [ZADD, z, \"{payload.score}\", m]\n"
          "        - [INCR, n]\n");
    struct wc_err err = {0};
    expect(f.rc, "OK", "SET z string");
    for (int i = 0; i < 300; i++) {
        cr_assert_eq(apply(f.sink, 0x100, i, "E", i % 2 ? "{\"score\": 1}" : "{}", &err), 0);
        if (i % 100 == 99)
            commit(&f, pos(0x100, i));
    }
    char *n = cmd_str(f.rc, "XLEN walcast:dead_letters:%s", f.slot);
    cr_assert(atoi(n) >= 10 && atoi(n) <= 110, "XLEN %s", n);
    free(n);
    expect(f.rc, "0", "EXISTS n");
    cr_assert_eq(f.sink->dead_lettered, 300);
    teardown(&f);
}

/*
 * The engine commits a batch on a thread while it queues the next one. The batch set aside commits
 * alone: its event with a key of the wrong type is dead-lettered by its script, inside the EXEC, and its
 * script is loaded again (the cache was flushed); the next batch, with a dead letter of its own queued on
 * this thread, stays queued until its own commit.
 */
Test(sink_redis, detached_commit_while_the_next_batch_is_queued)
{
    struct fixture f;
    struct wct_detached d;

    setup(&f, 14, "dead_letter",
          "  p:\n"
          "    sink: cache\n"
          "    on:\n"
          "      E:\n"
          "        - [INCR, count]\n"
          "        - [ZADD, \"{payload.key}\", \"{payload.score}\", member]\n"
          "      T:\n"
          "        - script: \"return redis.call('INCRBY', KEYS[1], ARGV[1])\"\n"
          "          keys: [\"ticks\"]\n"
          "          args: [\"{payload.n}\"]\n");
    struct wc_err err = {0};
    expect(f.rc, "OK", "SET str value");
    expect(f.rc, "OK", "SCRIPT FLUSH");
    cr_assert_eq(apply(f.sink, 0x1200, 0, "E", "{\"key\": \"z\", \"score\": 1}", &err), 0, "%s", err.msg);
    cr_assert_eq(apply(f.sink, 0x1200, 1, "E", "{\"key\": \"str\", \"score\": 1}", &err), 0, "%s", err.msg);
    cr_assert_eq(apply(f.sink, 0x1200, 2, "T", "{\"n\": 5}", &err), 0, "%s", err.msg);
    wct_detached_start(&d, f.sink, pos(0x1200, 2));
    for (int i = 0; i < 500; i++) {
        char payload[64];
        snprintf(payload, sizeof(payload), "{\"key\": \"y\", \"score\": %d}", i);
        cr_assert_eq(apply(f.sink, 0x1300, i, "E", payload, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(apply(f.sink, 0x1300, 500, "E", "{\"key\": \"y\"}", &err), 0, "%s", err.msg); /* no score */
    wct_detached_join(&d);
    cr_assert_eq(d.rc, 0, "commit_detached: %s", d.err.msg);
    expect(f.rc, "1", "GET count"); /* the event with the wrong type applied nothing */
    expect(f.rc, "1", "ZCARD z");
    expect(f.rc, "0", "EXISTS y");
    expect(f.rc, "5", "GET ticks");
    expect_cursor(&f, pos(0x1200, 2));
    redisReply *dl = dead_letters(&f);
    cr_assert_eq(dl->elements, 1);
    cr_assert_str_eq(entry_field(dl->element[0], "lsn"), "0/1200");
    cr_assert_str_eq(entry_field(dl->element[0], "idx"), "1");
    freeReplyObject(dl);

    commit(&f, pos(0x1300, 500));
    expect(f.rc, "501", "GET count");
    expect(f.rc, "499", "ZSCORE y member"); /* the last score: applied in order */
    expect_cursor(&f, pos(0x1300, 500));
    dl = dead_letters(&f);
    cr_assert_eq(dl->elements, 2);
    cr_assert_str_eq(entry_field(dl->element[1], "lsn"), "0/1300");
    cr_assert_str_eq(entry_field(dl->element[1], "idx"), "500");
    cr_assert_not_null(strstr(entry_field(dl->element[1], "error"), "score"), "%s",
                       entry_field(dl->element[1], "error"));
    freeReplyObject(dl);
    cr_assert_eq(f.sink->dead_lettered, 2);
    teardown(&f);
}

Test(sink_redis, five_thousand_events_in_one_commit)
{
    struct fixture f;
    char payload[160];

    setup(&f, 0, "dead_letter",
          "  orders:\n"
          "    sink: cache\n"
          "    on:\n"
          "      OrderPlaced:\n"
          "        - [ZADD, \"orders\", \"{payload.placed_at|epoch_ms}\", \"{payload.order_id}\"]\n"
          "        - [HSET, \"order:{payload.order_id}\", total, \"{payload.total}\"]\n"
          "        - [ZINCRBY, ltv, \"{payload.total}\", \"{payload.customer_id}\"]\n");
    struct wc_err err = {0};
    for (int i = 0; i < 5000; i++) {
        snprintf(payload, sizeof(payload),
                 "{\"order_id\": %d, \"customer_id\": %d, \"total\": \"0.5\", \"placed_at\": "
                 "\"2026-11-27T10:%02d:%02d.000Z\"}",
                 i, i % 10, (i / 60) % 60, i % 60);
        cr_assert_eq(
            apply(f.sink, 0x2000000 + (wc_lsn)(i / 100) * 0x100, i % 100, "OrderPlaced", payload, &err), 0,
            "%s", err.msg);
    }
    cr_assert_eq(f.sink->applied, 5000);
    commit(&f, pos(0x2000000 + 49 * 0x100, 99));
    expect(f.rc, "5000", "ZCARD orders");
    expect(f.rc, "250", "ZSCORE ltv 3");
    expect(f.rc, "0.5", "HGET order:4999 total");
    expect(f.rc, "5004", "DBSIZE"); /* orders, ltv, 5000 order hashes, the cursor and applied hashes */
    expect_cursor(&f, pos(0x2000000 + 49 * 0x100, 99));
    teardown(&f);
}

/* ---- connections ---- */

Test(sink_redis, lost_connection_is_io_error)
{
    struct fixture f;

    setup(&f, 1, "dead_letter", TWO_ACTIONS);
    struct wc_err err = {0};
    cr_assert_eq(apply(f.sink, 0x1200, 0, "OrderPlaced", ORDER_PLACED, &err), 0, "%s", err.msg);
    /* Kill the sink's connection (and any other normal client a previous test left behind). */
    redisReply *kr = redisCommand(f.rc, "CLIENT KILL TYPE normal SKIPME yes");
    cr_assert(kr && kr->type == REDIS_REPLY_INTEGER && kr->integer >= 1, "the sink's connection was killed");
    freeReplyObject(kr);
    cr_assert_eq(f.sink->ops->commit(f.sink, pos(0x1200, 0), &err), -1);
    cr_assert_eq(err.code, WC_ERR_IO, "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "sink \"cache\""), "%s", err.msg);
    expect(f.rc, "0", "EXISTS placed");
    /* closed, every operation says so (retryable) */
    f.sink->ops->close(f.sink);
    struct wc_pos got;
    int found;
    cr_assert_eq(f.sink->ops->read_cursor(f.sink, &got, &found, &err), -1);
    cr_assert_eq(err.code, WC_ERR_IO);
    cr_assert_eq(apply(f.sink, 0x1200, 0, "OrderPlaced", ORDER_PLACED, &err), -1);
    cr_assert_eq(f.sink->ops->commit(f.sink, pos(0x1200, 0), &err), -1);
    cr_assert_eq(err.code, WC_ERR_IO);
    /* reopened, it works again */
    cr_assert_eq(f.sink->ops->open(f.sink, &err), 0, "%s", err.msg);
    cr_assert_eq(apply(f.sink, 0x1200, 0, "OrderPlaced", ORDER_PLACED, &err), 0, "%s", err.msg);
    commit(&f, pos(0x1200, 0));
    expect(f.rc, "1", "GET placed");
    teardown(&f);
}

/* Open a sink on dsn alone; returns open's result. */
static int open_dsn(const char *dsn, struct wc_err *err)
{
    struct wc_sink_conf conf;
    struct wc_config cfg;
    struct wc_sink s;
    int rc;

    memset(&conf, 0, sizeof(conf));
    memset(&cfg, 0, sizeof(cfg));
    memset(&s, 0, sizeof(s));
    conf.name = "cache";
    conf.type = WC_SINK_REDIS;
    conf.dsn = (char *)dsn;
    cfg.slot = "walcast";
    s.ops = &wc_sink_redis_ops;
    s.conf = &conf;
    s.cfg = &cfg;
    s.name = conf.name;
    rc = s.ops->open(&s, err);
    if (rc == 0) {
        struct wc_pos p;
        int found;
        rc = s.ops->read_cursor(&s, &p, &found, err);
    }
    s.ops->close(&s);
    cr_assert_null(s.priv);
    return rc;
}

Test(sink_redis, connection_strings)
{
    struct wc_err err = {0};
    char dsn[256];
    redisContext *c = wct_redis(0);

    snprintf(dsn, sizeof(dsn), "127.0.0.1:%d", wct_redis_port());
    cr_assert_eq(open_dsn(dsn, &err), 0, "%s", err.msg);
    snprintf(dsn, sizeof(dsn), "redis://localhost:%d", wct_redis_port());
    cr_assert_eq(open_dsn(dsn, &err), 0, "%s", err.msg);
    snprintf(dsn, sizeof(dsn), "redis://127.0.0.1:%d/", wct_redis_port());
    cr_assert_eq(open_dsn(dsn, &err), 0, "%s", err.msg);

    /* an ACL user, and a password with an escaped character */
    expect(c, "OK", "ACL SETUSER wctest on >s3cr@t ~* +@all");
    snprintf(dsn, sizeof(dsn), "redis://wctest:s3cr%%40t@127.0.0.1:%d/4", wct_redis_port());
    cr_assert_eq(open_dsn(dsn, &err), 0, "%s", err.msg);
    snprintf(dsn, sizeof(dsn), "redis://wctest:hunter2@127.0.0.1:%d/4", wct_redis_port());
    cr_assert_eq(open_dsn(dsn, &err), -1);
    cr_assert_eq(err.code, WC_ERR_CONFIG, "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "could not authenticate"), "%s", err.msg);
    cr_assert_null(strstr(err.msg, "hunter2"), "%s", err.msg);
    expect(c, "1", "ACL DELUSER wctest");

    /* the default user has no password: AUTH with one fails */
    snprintf(dsn, sizeof(dsn), "redis://:hunter2@127.0.0.1:%d", wct_redis_port());
    cr_assert_eq(open_dsn(dsn, &err), -1);
    cr_assert_null(strstr(err.msg, "hunter2"), "%s", err.msg);

    snprintf(dsn, sizeof(dsn), "redis://127.0.0.1:%d/999999", wct_redis_port());
    cr_assert_eq(open_dsn(dsn, &err), -1);
    cr_assert_eq(err.code, WC_ERR_CONFIG, "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "could not select database 999999"), "%s", err.msg);

    cr_assert_eq(open_dsn("redis://:pw@127.0.0.1:notaport/0", &err), -1);
    cr_assert_eq(err.code, WC_ERR_CONFIG);
    cr_assert_null(strstr(err.msg, "pw"), "%s", err.msg);
    cr_assert_eq(open_dsn("rediss://127.0.0.1", &err), -1);
    cr_assert_eq(err.code, WC_ERR_CONFIG);
    cr_assert_eq(open_dsn("redis://127.0.0.1/x", &err), -1);
    cr_assert_eq(err.code, WC_ERR_CONFIG);
    cr_assert_eq(open_dsn("", &err), -1);
    cr_assert_eq(err.code, WC_ERR_CONFIG);

    cr_assert_eq(open_dsn("redis://127.0.0.1:1/0", &err), -1);
    cr_assert_eq(err.code, WC_ERR_IO);
    cr_assert_str_eq(err.msg,
                     "sink \"cache\": could not connect to redis at 127.0.0.1:1: Connection refused");
    redisFree(c);
}
