/*
 * test_redis_csink.c - the Redis sink in cluster mode (sinks/redis/csink.h) through the sink interface,
 * against the Redis Cluster of scripts/services.sh (start DIR --cluster): the checks at load, an event's
 * parts per hash slot and the per-slot skip on replay, a planted loss caught by the guard and at the next
 * open, a flushed script cache, an action whose rendered keys are in two slots, a dead letter's part
 * retried alone (and not again after a crash), the rebuild's reset and the owner's release.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../sinks/redis/cluster.h"
#include "testutil.h"
#include "walcast/config.h"
#include "walcast/keyslot.h"
#include "walcast/sink.h"

/* ---- helpers ---- */

struct fixture {
    char *slot; /* the replication slot: in walcast's key names */
    char *pre;  /* a prefix unique to the test for projection keys */
    char *dir, *path;
    struct wc_config *cfg;
    struct wc_sink *sink;
    struct redis_cluster *cl; /* the test's own routing */
};

static const char *seeds(void)
{
    const char *s = getenv("WALCAST_TEST_REDIS_CLUSTER");
    if (s == NULL || *s == '\0')
        cr_fatal("WALCAST_TEST_REDIS_CLUSTER is not set: these tests need the Redis Cluster of "
                 "scripts/services.sh start DIR --cluster (scripts/test.sh starts it)");
    return s;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s;
    va_start(ap, f);
    if (vasprintf(&s, f, ap) < 0)
        abort();
    va_end(ap);
    return s;
}

/* More of the engine's keys for the next load (on_error: halt). */
static const char *engine_extra = "";

/* Write and load a configuration: sink "cache" in cluster mode (extra: more of its keys), the projections
 * (YAML under "projections:", "%1$s" there is the test's key prefix). NULL with the error when it does not
 * load. */
static struct wc_config *load(struct fixture *f, const char *extra, const char *projections,
                              struct wc_err *err)
{
    FILE *fp = fopen(f->path, "w");
    cr_assert_not_null(fp);
    fprintf(fp,
            "source:\n"
            "  dsn: \"\"\n"
            "  slot: %s\n"
            "engine:\n"
            "  log_level: error\n"
            "%s"
            "sinks:\n"
            "  cache:\n"
            "    type: redis\n"
            "    cluster: true\n"
            "    dsn: \"redis://%s\"\n"
            "%s"
            "projections:\n",
            f->slot, engine_extra, seeds(), extra);
    fprintf(fp, projections, f->pre);
    fclose(fp);
    return wc_config_load(f->path, err);
}

static void setup(struct fixture *f, const char *extra, const char *projections)
{
    struct wc_err err = {0};
    char *dsn;

    memset(f, 0, sizeof(*f));
    f->slot = wct_unique("cs");
    f->pre = wct_unique("t");
    f->dir = wct_tmpdir();
    f->path = fmt("%s/walcast.yaml", f->dir);
    f->cfg = load(f, extra, projections, &err);
    cr_assert_not_null(f->cfg, "config: %s", err.msg);
    f->sink = wc_sink_new(f->cfg, &f->cfg->sinks[0], &err);
    cr_assert_not_null(f->sink, "%s", err.msg);
    cr_assert_eq(f->sink->ops, &wc_sink_redis_cluster_ops);
    cr_assert_eq(f->sink->ops->open(f->sink, &err), 0, "open: %s", err.msg);
    dsn = fmt("redis://%s", seeds());
    f->cl = redis_cluster_new("test", dsn, &err);
    cr_assert_not_null(f->cl, "%s", err.msg);
    free(dsn);
}

static void teardown(struct fixture *f)
{
    wc_sink_free(f->sink);
    wc_config_free(f->cfg);
    redis_cluster_free(f->cl);
    unlink(f->path);
    rmdir(f->dir);
    free(f->path);
    free(f->dir);
    free(f->slot);
    free(f->pre);
}

/* A new sink of the fixture's configuration, opened (as a restarted engine has it). */
static struct wc_sink *reopen(struct fixture *f)
{
    struct wc_err err = {0};
    struct wc_sink *s = wc_sink_new(f->cfg, &f->cfg->sinks[0], &err);
    cr_assert_not_null(s, "%s", err.msg);
    cr_assert_eq(s->ops->open(s, &err), 0, "open: %s", err.msg);
    return s;
}

/* Apply one hand-made event (payload JSON text). */
static int apply(struct wc_sink *s, wc_lsn lsn, int64_t idx, const char *type, const char *payload,
                 struct wc_err *err)
{
    struct wc_event ev;
    char id[64];

    memset(&ev, 0, sizeof(ev));
    snprintf(id, sizeof(id), "evt-%" PRIx64 "-%" PRId64, (uint64_t)lsn, idx);
    ev.pos = (struct wc_pos){lsn, idx};
    ev.end_lsn = lsn + 0x30;
    ev.commit_time = "2026-11-27T10:39:53.655523Z";
    ev.col[WC_COL_EVENT_ID] = (struct wc_val){WC_VAL_STRING, id, strlen(id)};
    ev.col[WC_COL_AGGREGATE_TYPE] = (struct wc_val){WC_VAL_STRING, "order", 5};
    ev.col[WC_COL_AGGREGATE_ID] = (struct wc_val){WC_VAL_NUMBER, "42", 2};
    ev.col[WC_COL_EVENT_TYPE] = (struct wc_val){WC_VAL_STRING, type, strlen(type)};
    ev.col[WC_COL_PAYLOAD] = (struct wc_val){WC_VAL_STRING, payload, strlen(payload)};
    ev.size = 200;
    int rc = s->ops->apply(s, &ev, err);
    if (ev.payload_json)
        json_decref(ev.payload_json);
    return rc;
}

static void must_apply(struct wc_sink *s, wc_lsn lsn, int64_t idx, const char *type, const char *payload)
{
    struct wc_err err = {0};
    cr_assert_eq(apply(s, lsn, idx, type, payload, &err), 0, "apply: %s", err.msg);
}

static int commit(struct wc_sink *s, struct wc_pos cursor, struct wc_err *err)
{
    return s->ops->commit(s, cursor, err);
}

static void must_commit(struct wc_sink *s, struct wc_pos cursor)
{
    struct wc_err err = {0};
    cr_assert_eq(commit(s, cursor, &err), 0, "commit: %s", err.msg);
}

/* One command (printf-style, as redisCommand) routed by its key (its second word): the reply as a string
 * (new; NULL for nil, the number for an integer, "ERR..." for an error). */
static char *cmd(struct fixture *f, const char *fmtstr, ...)
{
    va_list ap;
    char *c, *out = NULL;
    redisReply *r = NULL;
    struct wc_err err = {0};

    va_start(ap, fmtstr);
    int n = redisvFormatCommand(&c, fmtstr, ap);
    va_end(ap);
    cr_assert_gt(n, 0);
    /* the key: the second bulk string */
    const char *p = strchr(c, '\n') + 1;
    long l1 = strtol(p + 1, NULL, 10);
    p = strchr(p, '\n') + 1 + l1 + 2;
    long l2 = strtol(p + 1, NULL, 10);
    p = strchr(p, '\n') + 1;
    cr_assert_eq(redis_cluster_pipeline(f->cl, wc_keyslot(p, (size_t)l2), c, (size_t)n, 1, &r, &err), 0, "%s",
                 err.msg);
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR)
        out = strndup(r->str, r->len);
    else if (r->type == REDIS_REPLY_INTEGER)
        out = fmt("%lld", r->integer);
    freeReplyObject(r);
    free(c);
    return out;
}

static void expect(char *got, const char *want, const char *what)
{
    if (want == NULL)
        cr_expect_null(got, "%s: expected nil, got \"%s\"", what, got);
    else
        cr_expect(got != NULL && strcmp(got, want) == 0, "%s: expected \"%s\", got \"%s\"", what, want,
                  got ? got : "(nil)");
    free(got);
}

/* walcast's key of a hash slot, as csink.h names them. */
static char *wkey(struct fixture *f, const char *what, int slot)
{
    const char *tag = redis_cluster_slot_tag(slot);
    return fmt("walcast:%s:{%s}:%s", what, tag, f->slot);
}

/* The slot of a tag "{x}". */
static int tag_slot(const char *tag)
{
    return wc_keyslot(tag, strlen(tag));
}

/* ---- the configuration ---- */

static void expect_load_error(const char *extra, const char *projections, const char *want)
{
    struct fixture f;
    struct wc_err err = {0};

    memset(&f, 0, sizeof(f));
    f.slot = wct_unique("cs");
    f.pre = wct_unique("t");
    f.dir = wct_tmpdir();
    f.path = fmt("%s/walcast.yaml", f.dir);
    struct wc_config *cfg = load(&f, extra, projections, &err);
    cr_expect_null(cfg, "loaded, expected an error with \"%s\"", want);
    cr_expect(strstr(err.msg, want) != NULL, "expected \"%s\" in: %s", want, err.msg);
    wc_config_free(cfg);
    unlink(f.path);
    rmdir(f.dir);
    free(f.path);
    free(f.dir);
    free(f.slot);
    free(f.pre);
}

Test(csink, checks_at_load)
{
    /* Literal keys of one action in two slots: "a" is in 15495, "b" in 3300. */
    expect_load_error(
        "", "  p:\n    sink: cache\n    on:\n      E:\n        - [DEL, a, b]\n",
        "DEL keys \"a\" and \"b\" are in hash slots 15495 and 3300: a redis cluster runs an action "
        "in one hash slot; give the keys a common {hash tag}");
    expect_load_error("",
                      "  p:\n    sink: cache\n    on:\n      E:\n        - script: \"return 1\"\n"
                      "          keys: [\"x\", \"y\"]\n",
                      "script keys \"x\" and \"y\" are in hash slots");
    expect_load_error("    rebuild: nope\n", "", "invalid rebuild");
    /* A common tag is fine, and templated keys are checked as they are rendered. */
    struct fixture f;
    struct wc_err err = {0};
    memset(&f, 0, sizeof(f));
    f.slot = wct_unique("cs");
    f.pre = wct_unique("t");
    f.dir = wct_tmpdir();
    f.path = fmt("%s/walcast.yaml", f.dir);
    struct wc_config *cfg =
        load(&f, "",
             "  p:\n    sink: cache\n    on:\n      E:\n        - [DEL, \"{{t}}a\", \"{{t}}b\"]\n"
             "        - [DEL, \"x{payload.a}\", \"y{payload.b}\"]\n",
             &err);
    cr_expect_not_null(cfg, "%s", err.msg);
    cr_expect(cfg && cfg->sinks[0].cluster);
    wc_config_free(cfg);
    unlink(f.path);
    rmdir(f.dir);
    free(f.path);
    free(f.dir);
    free(f.slot);
    free(f.pre);
}

/* ---- parts, cursors, replay ---- */

/* Moved: a sum in customer a's slot, a counter in b's, a hash in a's: an event has one part in each of the
 * two slots (one when a and b share it). */
static const char moved[] = "  p:\n    sink: cache\n    on:\n      Moved:\n"
                            "        - [ZINCRBY, \"%1$s:{{{payload.a}}}:z\", \"{payload.n}\", m]\n"
                            "        - [INCRBY, \"%1$s:{{{payload.b}}}:c\", \"{payload.n}\"]\n"
                            "        - [HSET, \"%1$s:{{{payload.a}}}:h\", last, \"{payload.n}\"]\n";

/* Events i = from..from+n-1, one per transaction after lsn, a = i % 7, b = i % 3 + 100, n = i. */
static void moved_events(struct wc_sink *s, wc_lsn lsn, int from, int n)
{
    for (int i = from; i < from + n; i++) {
        char payload[96];
        snprintf(payload, sizeof(payload), "{\"a\": %d, \"b\": %d, \"n\": %d}", i % 7, i % 3 + 100, i);
        must_apply(s, lsn + (wc_lsn)(i - from + 1) * 0x100, 0, "Moved", payload);
    }
}

/* What the sums must be after events [0, upto). */
static void expect_moved(struct fixture *f, int upto)
{
    for (int a = 0; a < 7; a++) {
        long long sum = 0;
        for (int i = a; i < upto; i += 7)
            sum += i;
        char want[32];
        snprintf(want, sizeof(want), "%lld", sum);
        expect(cmd(f, "ZSCORE %s:{%d}:z m", f->pre, a), sum ? want : NULL, "zset sum");
    }
    for (int b = 0; b < 3; b++) {
        long long sum = 0;
        for (int i = b; i < upto; i += 3)
            sum += i;
        char want[32];
        snprintf(want, sizeof(want), "%lld", sum);
        expect(cmd(f, "GET %s:{%d}:c", f->pre, b + 100), sum ? want : NULL, "counter");
    }
}

Test(csink_live, parts_per_slot_and_replay, .timeout = 60)
{
    struct fixture f;
    struct wc_err err = {0};
    struct wc_pos c1 = {0x1000000, -1}, c2 = {0x2000000, -1};

    setup(&f, "", moved);
    struct wc_pos cur;
    int found;
    cr_assert_eq(f.sink->ops->read_cursor(f.sink, &cur, &found, &err), 0, "%s", err.msg);
    cr_expect_eq(found, 0, "a new sink has no cursor");
    moved_events(f.sink, 0x10000, 0, 60);
    must_commit(f.sink, c1);
    expect_moved(&f, 60);
    /* Each written slot has its cursor; the directory has the floor and each slot's. */
    int sa = tag_slot("0"), sb = tag_slot("100");
    char *k = wkey(&f, "cursor", sa);
    expect(cmd(&f, "HGET %s cache", k), "0/1000000:-1", "cursor of a's slot");
    free(k);
    char *dir = wkey(&f, "directory", wc_keyslot(f.slot, strlen(f.slot)));
    expect(cmd(&f, "HGET %s cache:floor", dir), "0/1000000:-1", "floor");
    expect(cmd(&f, "HGET %s cache:%d", dir, sb), "0/1000000:-1", "directory entry of b's slot");

    /* The next batch is acknowledged in every slot, but the directory write is lost (as after a crash
     * between the two): a restart streams from the first batch's floor, and every part is skipped where
     * its slot's cursor says it is there. */
    moved_events(f.sink, c1.lsn, 60, 60);
    must_commit(f.sink, c2);
    expect_moved(&f, 120);
    free(cmd(&f, "HSET %s cache:floor 0/1000000:-1", dir));
    struct wc_sink *s2 = reopen(&f);
    cr_assert_eq(s2->ops->read_cursor(s2, &cur, &found, &err), 0, "%s", err.msg);
    cr_expect(found && cur.lsn == c1.lsn, "the floor: %" PRIx64, (uint64_t)cur.lsn);
    uint64_t applied = s2->applied;
    moved_events(s2, c1.lsn, 60, 60);
    must_commit(s2, c2);
    cr_expect_eq(s2->applied, applied, "a replay queues nothing");
    expect_moved(&f, 120);
    /* And new events after it go where they belong. */
    moved_events(s2, c2.lsn, 120, 30);
    must_commit(s2, (struct wc_pos){0x3000000, -1});
    expect_moved(&f, 150);
    wc_sink_free(s2);
    free(dir);
    teardown(&f);
}

/* ---- lost writes ---- */

/*
 * A failover to a replica that had not received the last unit of a slot, planted: the slot's cursor set
 * back to the batch before. The next unit in that slot is stopped by its guard (nothing of it applied;
 * the other slots' units go through), and the next open names the slot, its master and both cursors; with
 * a rebuild action the sink says it has no cursor instead (the engine then rebuilds it).
 */
Test(csink_live, planted_loss, .timeout = 60)
{
    struct fixture f;
    struct wc_err err = {0};
    struct wc_pos c1 = {0x1000000, -1}, c2 = {0x2000000, -1}, c3 = {0x3000000, -1};

    setup(&f, "", moved);
    moved_events(f.sink, 0x10000, 0, 21);
    must_commit(f.sink, c1);
    moved_events(f.sink, c1.lsn, 21, 21);
    must_commit(f.sink, c2);
    int sa = tag_slot("0"); /* a = 0: events 0, 7, 14, ... */
    char *k = wkey(&f, "cursor", sa);
    free(cmd(&f, "HSET %s cache 0/1000000:-1", k));
    char *before = cmd(&f, "ZSCORE %s:{0}:z m", f.pre);

    moved_events(f.sink, c2.lsn, 42, 21);
    cr_assert_eq(commit(f.sink, c3, &err), -1, "the guard should have stopped the commit");
    cr_expect_eq(err.code, WC_ERR_IO, "%s", err.msg);
    char *want = fmt("redis cluster hash slot %d", sa);
    cr_expect(strstr(err.msg, want) && strstr(err.msg, "lost acknowledged writes"), "%s", err.msg);
    free(want);
    expect(cmd(&f, "ZSCORE %s:{0}:z m", f.pre), before, "nothing of the guarded unit applied");
    expect(cmd(&f, "HGET %s cache", k), "0/1000000:-1", "the guarded slot's cursor stays");
    char *kb = wkey(&f, "cursor", tag_slot("100"));
    expect(cmd(&f, "HGET %s cache", kb), "0/3000000:-1", "the other slots' units went through");
    free(kb);
    /* The sink refuses until it is opened again. */
    cr_expect_eq(apply(f.sink, c3.lsn + 0x100, 0, "Moved", "{\"a\": 1, \"b\": 101, \"n\": 1}", &err), -1);
    cr_expect_eq(err.code, WC_ERR_IO, "%s", err.msg);

    struct wc_sink *s2 = reopen(&f);
    struct wc_pos cur;
    int found;
    cr_assert_eq(s2->ops->read_cursor(s2, &cur, &found, &err), -1, "the loss should be found at open");
    cr_expect_eq(err.code, WC_ERR_DATA, "%s", err.msg);
    want = fmt("redis cluster hash slot %d (master 127.0.0.1:", sa);
    cr_expect(strstr(err.msg, want) != NULL, "%s", err.msg);
    cr_expect(strstr(err.msg, "its cursor is 0/1000000:-1, walcast had stored 0/2000000:-1 there") != NULL,
              "%s", err.msg);
    cr_expect(strstr(err.msg, "set sinks.cache.rebuild: flushdb") != NULL, "%s", err.msg);
    free(want);
    wc_sink_free(s2);

    /* With a rebuild action: no cursor (rebuild), and a warning. */
    wc_config_free(f.cfg);
    f.cfg = load(&f, "    rebuild: flushdb\n", moved, &err);
    cr_assert_not_null(f.cfg, "%s", err.msg);
    s2 = reopen(&f);
    cr_assert_eq(s2->ops->read_cursor(s2, &cur, &found, &err), 0, "%s", err.msg);
    cr_expect_eq(found, 0, "a sink that lost writes and can be rebuilt reports no cursor");
    wc_sink_free(s2);
    free(before);
    free(k);
    teardown(&f);
}

/* SCRIPT FLUSH on every master between two batches: the units are refused whole (NOSCRIPT), the scripts
 * are loaded again and the units sent again; nothing lost, nothing doubled. */
Test(csink_live, script_flush, .timeout = 60)
{
    struct fixture f;
    struct wc_err err = {0};
    const char *argv[2] = {"SCRIPT", "FLUSH"};

    setup(&f, "", moved);
    moved_events(f.sink, 0x10000, 0, 30);
    must_commit(f.sink, (struct wc_pos){0x1000000, -1});
    cr_assert_eq(redis_cluster_refresh(f.cl, &err), 0, "%s", err.msg);
    for (int i = 0; i < f.cl->map.nnode; i++) {
        redisReply *r = redis_cluster_node_command(f.cl, i, 2, argv, NULL, &err);
        cr_assert(r && r->type == REDIS_REPLY_STATUS, "SCRIPT FLUSH: %s", r ? r->str : err.msg);
        freeReplyObject(r);
    }
    moved_events(f.sink, 0x1000000, 30, 30);
    must_commit(f.sink, (struct wc_pos){0x2000000, -1});
    expect_moved(&f, 60);
    teardown(&f);
}

/* ---- dead letters ---- */

/* An action whose rendered keys fall into two slots cannot run: the event is a dead letter (in the home
 * slot), with the keys and slots in its error; `dlq list` shows it as <slot>-<stream id>. */
Test(csink_live, action_keys_in_two_slots, .timeout = 60)
{
    struct fixture f;
    struct wc_err err = {0};

    setup(&f, "",
          "  p:\n    sink: cache\n    on:\n      Pair:\n"
          "        - script: \"redis.call('SET', KEYS[1], ARGV[1]) redis.call('SET', KEYS[2], ARGV[1])\"\n"
          "          keys: [\"%1$s:{payload.x}\", \"%1$s:{payload.y}\"]\n"
          "          args: [\"{payload.v}\"]\n");
    must_apply(f.sink, 0x10100, 0, "Pair", "{\"x\": \"{t}a\", \"y\": \"{t}b\", \"v\": 1}"); /* one slot */
    must_apply(f.sink, 0x10200, 0, "Pair", "{\"x\": \"a\", \"y\": \"b\", \"v\": 2}");       /* two */
    must_commit(f.sink, (struct wc_pos){0x1000000, -1});
    expect(cmd(&f, "GET %s:{t}b", f.pre), "1", "the event whose keys share a slot");
    expect(cmd(&f, "GET %s:a", f.pre), NULL, "the event whose keys do not");
    cr_expect_eq(f.sink->dead_lettered, 1);

    char *out = NULL, *path = NULL;
    char *c = fmt("'%s' dlq list -c '%s' --json 2>&1", wct_walcast(), f.path);
    cr_assert_eq(wct_run(c, &out), 0, "%s", out);
    int home = wc_keyslot(f.slot, strlen(f.slot));
    char *id = fmt("\"id\":\"%d-", home);
    cr_expect(strstr(out, id) != NULL, "dead letter id in the home slot %d: %s", home, out);
    cr_expect(strstr(out, "are in hash slots") && strstr(out, "give the keys a common {hash tag}"), "%s",
              out);
    free(id);
    free(out);
    free(c);
    free(path);
    (void)err;
    teardown(&f);
}

/*
 * An event whose part in one slot fails its checks (a key of the wrong type there) while its part in
 * another applies: the failing part is a dead letter in its slot, with its mask. `dlq retry` after the fix
 * applies that part alone (the other is not applied twice) and removes the dead letter. A retry cut short
 * by a crash (a part applied, the dead letter not yet removed) does not apply that part again.
 */
Test(csink_live, dlq_retry_of_a_part, .timeout = 60)
{
    struct fixture f;
    struct wc_err err = {0};
    const char *two = "  p:\n    sink: cache\n    on:\n      Two:\n"
                      "        - [INCRBY, \"%1$s:{{{payload.a}}}:n\", \"1\"]\n"
                      "        - [ZINCRBY, \"%1$s:{{{payload.b}}}:z\", \"1\", m]\n";
    int retried = 0, failed = 0;

    setup(&f, "", two);
    free(cmd(&f, "SET %s:{B}:z wrongtype", f.pre));
    must_apply(f.sink, 0x10100, 0, "Two", "{\"a\": \"A\", \"b\": \"B\"}");
    must_commit(f.sink, (struct wc_pos){0x1000000, -1});
    expect(cmd(&f, "GET %s:{A}:n", f.pre), "1", "the part in A's slot applied");
    cr_expect_eq(f.sink->dead_lettered, 1);
    char *dl = wkey(&f, "dead_letters", tag_slot("B"));
    expect(cmd(&f, "XLEN %s", dl), "1", "the dead letter is in B's slot");

    /* Still failing: it stays. Fixed: B's part alone, once. */
    cr_assert_eq(wc_sink_dlq_retry(f.sink, NULL, &retried, &failed, &err), 0, "%s", err.msg);
    cr_expect(retried == 0 && failed == 1, "retried %d failed %d", retried, failed);
    expect(cmd(&f, "XLEN %s", dl), "1", "still there");
    free(cmd(&f, "DEL %s:{B}:z", f.pre));
    retried = failed = 0;
    cr_assert_eq(wc_sink_dlq_retry(f.sink, NULL, &retried, &failed, &err), 0, "%s", err.msg);
    cr_expect(retried == 1 && failed == 0, "retried %d failed %d", retried, failed);
    expect(cmd(&f, "GET %s:{A}:n", f.pre), "1", "A's part not applied again");
    expect(cmd(&f, "ZSCORE %s:{B}:z m", f.pre), "1", "B's part applied");
    expect(cmd(&f, "XLEN %s", dl), "0", "the dead letter is gone");
    free(dl);

    /* A whole event dead-lettered at queue time (its payload lacks b), retried with a configuration that
     * no longer needs b: two parts. A crash after A's part: its marker says so, the retry skips it. */
    must_apply(f.sink, 0x1000100, 0, "Two", "{\"a\": \"A2\"}");
    must_commit(f.sink, (struct wc_pos){0x2000000, -1});
    cr_expect_eq(f.sink->dead_lettered, 2);
    wc_sink_free(f.sink);
    wc_config_free(f.cfg);
    f.cfg = load(&f, "",
                 "  p:\n    sink: cache\n    on:\n      Two:\n"
                 "        - [INCRBY, \"%1$s:{{{payload.a}}}:n\", \"1\"]\n"
                 "        - [ZINCRBY, \"%1$s:{{{payload.a}}}:z\", \"1\", m]\n"
                 "        - [ZINCRBY, \"%1$s:{{C}}:z\", \"1\", m]\n",
                 &err);
    cr_assert_not_null(f.cfg, "%s", err.msg);
    f.sink = reopen(&f);
    int home = wc_keyslot(f.slot, strlen(f.slot));
    char *hl = wkey(&f, "dead_letters", home);
    redisReply *r = NULL;
    char *xr = cmd(&f, "XLEN %s", hl);
    cr_assert(xr && strcmp(xr, "1") == 0, "the queue-time dead letter is in the home slot: %s", xr);
    free(xr);
    /* its stream id */
    char *c = fmt("'%s' dlq list -c '%s' --json 2>&1 | sed -n 's/.*\"id\":\"%d-\\([^\"]*\\)\".*/\\1/p'",
                  wct_walcast(), f.path, home),
         *sid = NULL;
    cr_assert_eq(wct_run(c, &sid), 0);
    sid[strcspn(sid, "\n")] = '\0';
    cr_assert(*sid, "no dead letter listed");
    char *marker =
        fmt("walcast:retried:{%s}:%s:%d-%s", redis_cluster_slot_tag(tag_slot("A2")), f.slot, home, sid);
    free(cmd(&f, "SET %s 1", marker));
    retried = failed = 0;
    cr_assert_eq(wc_sink_dlq_retry(f.sink, NULL, &retried, &failed, &err), 0, "%s", err.msg);
    cr_expect(retried == 1 && failed == 0, "retried %d failed %d", retried, failed);
    expect(cmd(&f, "GET %s:{A2}:n", f.pre), NULL, "the part marked applied is not applied again");
    expect(cmd(&f, "ZSCORE %s:{C}:z m", f.pre), "1", "the other part applied");
    expect(cmd(&f, "XLEN %s", hl), "0", "the dead letter is gone");
    (void)r;
    free(marker);
    free(sid);
    free(c);
    free(hl);
    teardown(&f);
}

/* ---- rebuild and release ---- */

/* The owner record is claimed in the cluster; a rebuild's reset flushes every master (projections,
 * cursors, directory, owner); a reset cut short is found at the next open and done again; a release
 * removes the owner record, every slot's cursor and the directory. */
Test(csink_live, reset_and_release, .timeout = 60)
{
    struct fixture f;
    struct wc_err err = {0};
    struct wc_owner me = {"7000000000000000001", "db", ""}, was;
    struct wc_pos cur;
    int found;

    setup(&f, "    rebuild: flushdb\n", moved);
    /* The owner records of sinks named "cache" left by other tests in the shared cluster would refuse
     * this claim (a sink with a rebuild action owns the cluster): start empty. */
    const char *flushall[1] = {"FLUSHALL"};
    cr_assert_eq(redis_cluster_refresh(f.cl, &err), 0, "%s", err.msg);
    for (int i = 0; i < f.cl->map.nnode; i++)
        freeReplyObject(redis_cluster_node_command(f.cl, i, 1, flushall, NULL, &err));
    snprintf(me.slot, sizeof(me.slot), "%s", f.slot);
    cr_assert_eq(wc_sink_claim(f.sink, &me, &err), 0, "%s", err.msg);
    cr_assert_eq(f.sink->ops->read_cursor(f.sink, &cur, &found, &err), 0, "%s", err.msg);
    moved_events(f.sink, 0x10000, 0, 20);
    must_commit(f.sink, (struct wc_pos){0x1000000, -1});
    char *dir = wkey(&f, "directory", wc_keyslot(f.slot, strlen(f.slot)));

    /* A reset cut short (the mark set, not every master flushed yet): the next open says no cursor. */
    free(cmd(&f, "HSET %s cache:state rebuilding", dir));
    struct wc_sink *s2 = reopen(&f);
    cr_assert_eq(s2->ops->read_cursor(s2, &cur, &found, &err), 0, "%s", err.msg);
    cr_expect_eq(found, 0, "an interrupted reset is a sink to rebuild");
    cr_assert_eq(s2->ops->reset(s2, &err), 0, "reset: %s", err.msg);
    expect(cmd(&f, "ZSCORE %s:{0}:z m", f.pre), NULL, "projections flushed");
    expect(cmd(&f, "GET %s:{100}:c", f.pre), NULL, "on every master");
    expect(cmd(&f, "EXISTS %s", dir), "0", "the directory too");
    expect(cmd(&f, "EXISTS walcast:owner"), "0", "and the owner record");
    moved_events(s2, 0x10000, 0, 20);
    must_commit(s2, (struct wc_pos){0x1000000, -1});
    expect_moved(&f, 20);
    wc_sink_free(s2);

    /* Release: owner, cursors, directory gone; the projections stay. */
    cr_assert_eq(wc_sink_claim(f.sink, &me, &err), 0, "%s", err.msg);
    found = 0;
    cr_assert_eq(wc_sink_release(f.sink, &was, &found, &err), 0, "%s", err.msg);
    cr_expect(found && strcmp(was.slot, f.slot) == 0);
    expect(cmd(&f, "HGET walcast:owner cache"), NULL, "owner released");
    char *k = wkey(&f, "cursor", tag_slot("0"));
    expect(cmd(&f, "HGET %s cache", k), NULL, "slot cursors removed");
    expect(cmd(&f, "HGET %s cache:floor", dir), NULL, "directory entries removed");
    expect_moved(&f, 20);
    free(k);
    free(dir);
    teardown(&f);
}

/*
 * on_error: halt in a cluster: the part that fails stops its slot's unit at the event (that slot's cursor
 * stays before it, the rest of the unit is not applied), the other slots' units of the batch commit, and
 * the engine stops. Once fixed, the replay applies the rest in the halted slot and nothing again in the
 * others.
 */
Test(csink_live, halt_stops_one_slot, .timeout = 60)
{
    struct fixture f;
    struct wc_err err = {0};
    const char *two = "  p:\n    sink: cache\n    on:\n      Two:\n"
                      "        - [INCRBY, \"%1$s:{{A}}:n\", \"{payload.n}\"]\n"
                      "        - [INCRBY, \"%1$s:{{B}}:n\", \"{payload.n}\"]\n";
    struct wc_pos c1 = {0x1000000, -1}, c2 = {0x2000000, -1};

    engine_extra = "  on_error: halt\n";
    setup(&f, "", two);
    engine_extra = "";
    struct wc_pos cur;
    int found;
    cr_assert_eq(f.sink->ops->read_cursor(f.sink, &cur, &found, &err), 0, "%s", err.msg);
    must_apply(f.sink, 0x10100, 0, "Two", "{\"n\": 1}");
    must_commit(f.sink, c1);
    /* The next batch's first event fails in slot B (its counter holds no number). */
    free(cmd(&f, "SET %s:{B}:n notanumber", f.pre));
    must_apply(f.sink, c1.lsn + 0x100, 0, "Two", "{\"n\": 10}");
    must_apply(f.sink, c1.lsn + 0x200, 0, "Two", "{\"n\": 100}");
    must_apply(f.sink, c1.lsn + 0x300, 0, "Two", "{\"n\": 1000}");
    cr_assert_eq(commit(f.sink, c2, &err), -1, "the halt should stop the commit");
    cr_expect_eq(err.code, WC_ERR_DATA, "%s", err.msg);
    expect(cmd(&f, "GET %s:{A}:n", f.pre), "1111", "slot A's unit committed");
    expect(cmd(&f, "GET %s:{B}:n", f.pre), "notanumber", "nothing of slot B's unit after the halt");
    char *kb = wkey(&f, "cursor", tag_slot("B")), *ka = wkey(&f, "cursor", tag_slot("A"));
    expect(cmd(&f, "HGET %s cache", kb), "0/1000000:-1", "slot B's cursor stays before the halting event");
    expect(cmd(&f, "HGET %s cache", ka), "0/2000000:-1", "slot A's cursor moved");

    /* Fixed; the engine starts again from the floor and replays the batch. */
    free(cmd(&f, "SET %s:{B}:n 1", f.pre));
    struct wc_sink *s2 = reopen(&f);
    cr_assert_eq(s2->ops->read_cursor(s2, &cur, &found, &err), 0, "%s", err.msg);
    cr_expect(found && cur.lsn == c1.lsn);
    must_apply(s2, c1.lsn + 0x100, 0, "Two", "{\"n\": 10}");
    must_apply(s2, c1.lsn + 0x200, 0, "Two", "{\"n\": 100}");
    must_apply(s2, c1.lsn + 0x300, 0, "Two", "{\"n\": 1000}");
    must_commit(s2, c2);
    expect(cmd(&f, "GET %s:{A}:n", f.pre), "1111", "slot A: nothing again");
    expect(cmd(&f, "GET %s:{B}:n", f.pre), "1111", "slot B: the rest, once");
    wc_sink_free(s2);
    free(ka);
    free(kb);
    teardown(&f);
}

/* walcast doctor on a cluster sink: every master's settings, cluster mode OK; a sink of one Redis pointed
 * at a cluster node is a FAIL that names the fix. */
Test(csink_live, doctor, .timeout = 60)
{
    struct fixture f;
    char *out = NULL;

    setup(&f, "", moved);
    char *c = fmt("'%s' doctor -c '%s' 2>&1", wct_walcast(), f.path);
    wct_run(c, &out);
    cr_expect(strstr(out, "OK    sink:cache") && strstr(out, "redis cluster: each hash slot a batch writes"),
              "%s", out);
    cr_expect(strstr(out, "appendonly yes, appendfsync always") != NULL, "%s", out);
    free(out);
    free(c);
    /* The same node as one Redis. */
    char *first = strdup(seeds());
    first[strcspn(first, ",")] = '\0';
    char *single =
        fmt("source:\n  dsn: \"\"\n  slot: %s\nsinks:\n  cache:\n    type: redis\n    dsn: \"redis://%s\"\n",
            f.slot, first);
    FILE *fp = fopen(f.path, "w");
    fputs(single, fp);
    fclose(fp);
    c = fmt("'%s' doctor -c '%s' 2>&1", wct_walcast(), f.path);
    wct_run(c, &out);
    cr_expect(strstr(out, "FAIL  sink:cache") && strstr(out, "set sinks.NAME.cluster: true"), "%s", out);
    free(out);
    free(c);
    free(single);
    free(first);
    teardown(&f);
}
