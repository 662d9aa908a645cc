/*
 * test_redis_cluster.c - the Redis Cluster routing module (sinks/redis/cluster.h): hash slots, slot tags,
 * redirections, slot maps and seed DSNs from strings; then against the live cluster of scripts/services.sh
 * (start DIR --cluster; WALCAST_TEST_REDIS_CLUSTER): slots against CLUSTER KEYSLOT, the map read, pipelines
 * across the masters, a MOVED after a live reshard, an ASK during a migration set up by hand, a refresh
 * after a master's kill -9 and its replica's takeover.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../sinks/redis/cluster.h"
#include "testutil.h"
#include "walcast/buf.h"

/* ---- helpers ---- */

static int slot_of(const char *key)
{
    return redis_cluster_keyslot(key, strlen(key));
}

/* Parse RESP text into a reply (asserting it is one whole reply). */
static redisReply *resp(const char *text)
{
    redisReader *rd = redisReaderCreate();
    void *r = NULL;

    cr_assert_eq(redisReaderFeed(rd, text, strlen(text)), REDIS_OK);
    cr_assert_eq(redisReaderGetReply(rd, &r), REDIS_OK);
    cr_assert_not_null(r, "incomplete RESP: %s", text);
    redisReaderFree(rd);
    return r;
}

/* Append one command (printf-style, as redisCommand) to b; counts it in *n. */
static void cmd(struct wc_buf *b, int *n, const char *fmt, ...)
{
    va_list ap;
    char *s;
    int len;

    va_start(ap, fmt);
    len = redisvFormatCommand(&s, fmt, ap);
    va_end(ap);
    cr_assert_gt(len, 0);
    wc_buf_append(b, s, (size_t)len);
    free(s);
    (*n)++;
}

static const char *seeds(void)
{
    const char *s = getenv("WALCAST_TEST_REDIS_CLUSTER");
    if (s == NULL || *s == '\0')
        cr_fatal("WALCAST_TEST_REDIS_CLUSTER is not set: these tests need the Redis Cluster of "
                 "scripts/services.sh start DIR --cluster (scripts/test.sh starts it)");
    return s;
}

static struct redis_cluster *live(void)
{
    struct wc_err err = {0};
    char *dsn;
    struct redis_cluster *cl;

    if (asprintf(&dsn, "redis://%s", seeds()) < 0)
        abort();
    cl = redis_cluster_new("test", dsn, &err);
    cr_assert_not_null(cl, "%s", err.msg);
    free(dsn);
    cr_assert_eq(redis_cluster_refresh(cl, &err), 0, "refresh: %s", err.msg);
    return cl;
}

static redisContext *direct(const char *host, int port)
{
    redisContext *c = redisConnect(host, port);
    if (c == NULL || c->err)
        cr_fatal("cannot connect to redis cluster node %s:%d: %s", host, port,
                 c ? c->errstr : "out of memory");
    return c;
}

/* A direct connection to the master that cl's map names for slot. */
static redisContext *master_of(struct redis_cluster *cl, int slot)
{
    struct wc_err err = {0};
    const struct redis_cluster_node *n = redis_cluster_master(cl, slot, &err);
    cr_assert_not_null(n, "%s", err.msg);
    return direct(n->host, n->port);
}

/* scripts/services.sh VERB WALCAST_TEST_DIR ARGS (asserting success); its output (caller frees). */
static char *services(const char *verb, const char *args)
{
    const char *dir = getenv("WALCAST_TEST_DIR");
    char *sh, *out = NULL;
    int rc;

    cr_assert(dir != NULL && *dir, "WALCAST_TEST_DIR is not set: start the servers with scripts/services.sh");
    if (asprintf(&sh, "'%s/scripts/services.sh' %s '%s' %s 2>&1", wct_source_dir(), verb, dir, args) < 0)
        abort();
    rc = wct_run(sh, &out);
    cr_assert_eq(rc, 0, "services.sh %s %s failed (%d): %s", verb, args, rc, out);
    free(sh);
    return out;
}

/* A unique key in slot (its hash tag is the slot's tag). */
static char *key_in(int slot, const char *what)
{
    char *u = wct_unique(what), *k;
    if (asprintf(&k, "{%s}:%s", redis_cluster_slot_tag(slot), u) < 0)
        abort();
    free(u);
    return k;
}

static void expect_status(redisReply *r, const char *s)
{
    cr_assert_not_null(r);
    cr_assert(r->type == REDIS_REPLY_STATUS && strcmp(r->str, s) == 0, "expected +%s, got type %d: %s", s,
              r->type, r->str ? r->str : "");
}

/* ---- keys and slots ---- */

Test(cluster, crc16_xmodem)
{
    cr_assert_eq(redis_cluster_crc16("123456789", 9), 0x31C3);
    cr_assert_eq(redis_cluster_crc16("", 0), 0);
    cr_assert_eq(slot_of("123456789"), 0x31C3 & 16383); /* 12739, as CLUSTER KEYSLOT says */
    cr_assert_eq(slot_of("foo"), 12182);
    cr_assert_eq(slot_of("bar"), 5061);
}

Test(cluster, hash_tags)
{
    /* A tag: only the bytes between the first '{' and the first '}' after it count. */
    cr_assert_eq(slot_of("{user1000}.following"), slot_of("{user1000}.followers"));
    cr_assert_eq(slot_of("{bar}"), slot_of("bar"));
    cr_assert_eq(slot_of("foo{bar}{zap}"), slot_of("bar"));
    cr_assert_eq(slot_of("foo{{bar}}zap"), slot_of("{bar"), "the tag of foo{{bar}}zap is \"{bar\"");
    cr_assert_eq(slot_of("foo{{bar}}zap"), 4015);
    /* An empty first tag means the whole key, even with a tag after it: not the first non-empty tag. */
    cr_assert_eq(slot_of("{}"), redis_cluster_crc16("{}", 2) & 16383);
    cr_assert_eq(slot_of("{}"), 15257);
    cr_assert_eq(slot_of("foo{}{bar}"), redis_cluster_crc16("foo{}{bar}", 10) & 16383);
    cr_assert_eq(slot_of("foo{}{bar}"), 8363);
    cr_assert_neq(slot_of("foo{}{bar}"), slot_of("bar"));
    /* No '}' after the '{': the whole key. */
    cr_assert_eq(slot_of("foo{bar"), redis_cluster_crc16("foo{bar", 7) & 16383);
    cr_assert_eq(slot_of("}bar{"), redis_cluster_crc16("}bar{", 5) & 16383);
    cr_assert_eq(slot_of("a}{b}"), slot_of("b"));
    /* Bytes, not C strings: a NUL inside a key and inside a tag. */
    cr_assert_eq(redis_cluster_keyslot("x{a\0b}y", 7), redis_cluster_crc16("a\0b", 3) & 16383);
}

Test(cluster, slot_tags)
{
    /* Pinned: these name stored keys; an independent (bitwise, Python) implementation found the same. */
    cr_assert_str_eq(redis_cluster_slot_tag(0), "06S");
    cr_assert_str_eq(redis_cluster_slot_tag(1), "Qi");
    cr_assert_str_eq(redis_cluster_slot_tag(12182), "9Le");
    cr_assert_str_eq(redis_cluster_slot_tag(16383), "6ZJ");
    cr_assert_null(redis_cluster_slot_tag(-1));
    cr_assert_null(redis_cluster_slot_tag(16384));
    for (int s = 0; s < REDIS_CLUSTER_SLOTS; s++) {
        const char *t = redis_cluster_slot_tag(s);
        char key[16];
        size_t n = strlen(t);

        cr_assert(n >= 1 && n <= 3, "slot %d: tag \"%s\"", s, t);
        cr_assert_eq(strspn(t, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"), n);
        cr_assert_eq(redis_cluster_keyslot(t, n), s, "slot %d: tag \"%s\" is in slot %d", s, t,
                     redis_cluster_keyslot(t, n));
        snprintf(key, sizeof(key), "x{%s}y", t);
        cr_assert_eq(slot_of(key), s);
    }
}

/* ---- redirections ---- */

Test(cluster, redirects)
{
    struct redis_cluster_redirect r;
    const char *why = NULL;

#define P(s) redis_cluster_parse_redirect((s), strlen(s), &r, &why)
    cr_assert_eq(P("MOVED 3999 127.0.0.1:6381"), REDIS_CLUSTER_MOVED);
    cr_assert_eq(r.slot, 3999);
    cr_assert_str_eq(r.host, "127.0.0.1");
    cr_assert_eq(r.port, 6381);
    cr_assert_eq(P("ASK 0 10.0.0.2:7000"), REDIS_CLUSTER_ASK);
    cr_assert_eq(r.kind, REDIS_CLUSTER_ASK);
    cr_assert_eq(r.slot, 0);
    cr_assert_str_eq(r.host, "10.0.0.2");
    cr_assert_eq(r.port, 7000);
    /* IPv6 without brackets: the port follows the last ':'. */
    cr_assert_eq(P("MOVED 16383 2001:db8::1:7002"), REDIS_CLUSTER_MOVED);
    cr_assert_str_eq(r.host, "2001:db8::1");
    cr_assert_eq(r.port, 7002);
    cr_assert_eq(r.slot, 16383);
    /* The node does not know its address (unknown-endpoint): the host is empty, the caller's to fill. */
    cr_assert_eq(P("MOVED 12 :7001"), REDIS_CLUSTER_MOVED);
    cr_assert_str_eq(r.host, "");
    cr_assert_eq(r.port, 7001);
    cr_assert_eq(P("redis.example:7001") < 0, 0);

    /* Not redirections. */
    cr_assert_eq(P("ERR unknown command"), REDIS_CLUSTER_NO_REDIRECT);
    cr_assert_eq(P("TRYAGAIN Multiple keys request during rehashing of slot"), REDIS_CLUSTER_NO_REDIRECT);
    cr_assert_eq(P("CROSSSLOT Keys in request don't hash to the same slot"), REDIS_CLUSTER_NO_REDIRECT);
    cr_assert_eq(P("MOVEDX 1 h:1"), REDIS_CLUSTER_NO_REDIRECT);
    cr_assert_eq(P("moved 1 h:1"), REDIS_CLUSTER_NO_REDIRECT);
    cr_assert_eq(P("ASKING"), REDIS_CLUSTER_NO_REDIRECT);
    cr_assert_eq(P(""), REDIS_CLUSTER_NO_REDIRECT);

    /* Malformed ones: -1 and a reason. */
    static const char *const bad[] = {
        "MOVED",           "MOVED ",
        "MOVED 1",         "MOVED 1 ",
        "MOVED x h:1",     "MOVED -1 h:1",
        "MOVED 16384 h:1", "MOVED 99999999999 h:1",
        "MOVED 1 h",       "MOVED 1 h:",
        "MOVED 1 h:0",     "MOVED 1 h:65536",
        "MOVED 1 h:12x",   "MOVED 1 h:1 trailing",
        "MOVED  1 h:1",    "ASK 1",
        "ASK 1 h",         "ASK 1 h:1\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        cr_assert_eq(P(bad[i]), -1, "\"%s\" was accepted", bad[i]);
        cr_assert_not_null(why, "\"%s\": no reason", bad[i]);
    }
    /* A host longer than the buffer is refused, not cut. */
    {
        char longer[400];
        memset(longer, 'h', sizeof(longer));
        memcpy(longer, "MOVED 1 ", 8);
        strcpy(longer + 300, ":7000");
        cr_assert_eq(P(longer), -1);
    }
#undef P
}

/* ---- slot maps from strings ---- */

/* A CLUSTER SHARDS reply of Redis 7.0.15 (three shards, a replica each); the second master's ip and
 * endpoint are left empty (a node that does not know its address), so the node asked stands in. */
/* clang-format off */
#define NODE(id, port, ep, role, health) NODE_IP(id, port, "$9\r\n127.0.0.1\r\n", ep, role, health)
#define NODE_IP(id, port, ip, ep, role, health)                                                              \
    "*14\r\n$2\r\nid\r\n$40\r\n" id "\r\n$4\r\nport\r\n:" port "\r\n$2\r\nip\r\n" ip                          \
    "$8\r\nendpoint\r\n" ep "$4\r\nrole\r\n" role                                                            \
    "$18\r\nreplication-offset\r\n:42\r\n$6\r\nhealth\r\n" health
#define MASTER "$6\r\nmaster\r\n"
#define REPLICA "$7\r\nreplica\r\n"
#define ONLINE "$6\r\nonline\r\n"
#define EP "$9\r\n127.0.0.1\r\n"
#define EMPTY "$0\r\n\r\n"
#define ID(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c

static const char shards_reply[] =
    "*3\r\n"
    "*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n*2\r\n"
        NODE(ID("a"), "7001", EP, REPLICA, ONLINE)
        NODE(ID("b"), "7000", EP, MASTER, ONLINE)
    "*4\r\n$5\r\nslots\r\n*4\r\n:5461\r\n:10000\r\n:10001\r\n:10922\r\n$5\r\nnodes\r\n*2\r\n"
        NODE_IP(ID("c"), "7002", EMPTY, EMPTY, MASTER, ONLINE)
        NODE(ID("d"), "7003", EP, REPLICA, "$7\r\nloading\r\n")
    "*4\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n"
        NODE(ID("e"), "7004", EP, MASTER, ONLINE);
/* clang-format on */

Test(cluster, map_from_shards)
{
    redisReply *r = resp(shards_reply);
    struct redis_cluster_map m = {0};
    const char *why = NULL;

    cr_assert_eq(redis_cluster_map_from_shards(r, "seed.example", &m, &why), 0, "%s", why);
    cr_assert_eq(m.nnode, 3);
    cr_assert_eq(m.covered, 16384);
    cr_assert_eq(m.nodes[m.owner[0]].port, 7000);
    cr_assert_str_eq(m.nodes[m.owner[0]].host, "127.0.0.1");
    cr_assert_str_eq(m.nodes[m.owner[0]].id, ID("b"));
    cr_assert_eq(m.nodes[m.owner[5460]].port, 7000);
    cr_assert_eq(m.nodes[m.owner[5461]].port, 7002);
    cr_assert_str_eq(m.nodes[m.owner[5461]].host, "seed.example", "an empty endpoint is the node asked");
    cr_assert_eq(m.owner[10000], m.owner[10001]);
    cr_assert_eq(m.nodes[m.owner[10922]].port, 7002);
    cr_assert_eq(m.nodes[m.owner[10923]].port, 7004);
    cr_assert_eq(m.nodes[m.owner[16383]].port, 7004);
    redis_cluster_map_free(&m);
    freeReplyObject(r);

    /* A partial map: the slots nobody serves have no owner. */
    r = resp("*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:100\r\n:199\r\n$5\r\nnodes\r\n*1\r\n" NODE(
        ID("b"), "7000", EP, MASTER, ONLINE));
    cr_assert_eq(redis_cluster_map_from_shards(r, "h", &m, &why), 0, "%s", why);
    cr_assert_eq(m.covered, 100);
    cr_assert_eq(m.owner[99], -1);
    cr_assert_eq(m.owner[100], 0);
    cr_assert_eq(m.owner[200], -1);
    redis_cluster_map_free(&m);
    freeReplyObject(r);
}

Test(cluster, map_from_slots)
{
    /* CLUSTER SLOTS of 7.0: [start, end, [ip, port, id, {hostname}], replicas...] */
    redisReply *r =
        resp("*2\r\n"
             "*4\r\n:0\r\n:8191\r\n*4\r\n$9\r\n127.0.0.1\r\n:7000\r\n$40\r\n" ID(
                 "b") "\r\n*0\r\n"
                      "*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$40\r\n" ID(
                          "a") "\r\n"
                               "*3\r\n:8192\r\n:16383\r\n*3\r\n$0\r\n\r\n:7002\r\n$40\r\n" ID("c") "\r\n");
    struct redis_cluster_map m = {0};
    const char *why = NULL;

    cr_assert_eq(redis_cluster_map_from_slots(r, "seed.example", &m, &why), 0, "%s", why);
    cr_assert_eq(m.nnode, 2);
    cr_assert_eq(m.covered, 16384);
    cr_assert_eq(m.nodes[m.owner[8191]].port, 7000);
    cr_assert_str_eq(m.nodes[m.owner[8191]].id, ID("b"));
    cr_assert_eq(m.nodes[m.owner[8192]].port, 7002);
    cr_assert_str_eq(m.nodes[m.owner[8192]].host, "seed.example");
    redis_cluster_map_free(&m);
    freeReplyObject(r);
}

Test(cluster, malformed_maps)
{
    static const char *const shards[] = {
        "+OK\r\n",
        "*1\r\n:1\r\n",
        "*1\r\n*2\r\n$5\r\nslots\r\n*2\r\n:0\r\n:1\r\n",                      /* no nodes */
        "*1\r\n*4\r\n$5\r\nslots\r\n*1\r\n:0\r\n$5\r\nnodes\r\n*0\r\n",       /* odd range list */
        "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:1\r\n$5\r\nnodes\r\n*0\r\n", /* no master */
        "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16384\r\n$5\r\nnodes\r\n*1\r\n" NODE(
            ID("b"), "7000", EP, MASTER, ONLINE), /* past 16383 */
        "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:9\r\n:8\r\n$5\r\nnodes\r\n*1\r\n" NODE(ID("b"), "7000", EP, MASTER,
                                                                                  ONLINE), /* backwards */
        "*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:1\r\n$5\r\nnodes\r\n*1\r\n" NODE(ID("b"), "0", EP, MASTER,
                                                                                  ONLINE), /* port 0 */
    };
    static const char *const slots[] = {
        "$3\r\nfoo\r\n",
        "*1\r\n*2\r\n:0\r\n:1\r\n",                                /* no master */
        "*1\r\n*3\r\n:0\r\n:1\r\n*1\r\n$1\r\nh\r\n",               /* master without a port */
        "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:7000\r\n",  /* past 16383 */
        "*1\r\n*3\r\n$1\r\nx\r\n:1\r\n*2\r\n$1\r\nh\r\n:7000\r\n", /* start not a number */
        "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:70000\r\n",     /* port out of range */
    };
    struct redis_cluster_map m = {0};

    for (size_t i = 0; i < sizeof(shards) / sizeof(shards[0]); i++) {
        redisReply *r = resp(shards[i]);
        const char *why = NULL;
        cr_assert_eq(redis_cluster_map_from_shards(r, "h", &m, &why), -1, "shards reply %zu accepted", i);
        cr_assert_not_null(why);
        cr_assert_eq(m.nnode, 0);
        cr_assert_eq(m.covered, 0);
        freeReplyObject(r);
    }
    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
        redisReply *r = resp(slots[i]);
        const char *why = NULL;
        cr_assert_eq(redis_cluster_map_from_slots(r, "h", &m, &why), -1, "slots reply %zu accepted", i);
        cr_assert_not_null(why);
        cr_assert_eq(m.nnode, 0);
        freeReplyObject(r);
    }
    redis_cluster_map_free(&m);
}

/* ---- seed DSNs ---- */

Test(cluster, dsn)
{
    struct redis_cluster_conf c = {0};
    struct wc_err err = {0};

    cr_assert_eq(redis_parse_cluster_dsn("s", "redis://u:p%40ss@10.0.0.1:7000,[::1]:7001,node3/0", &c, &err),
                 0, "%s", err.msg);
    cr_assert_str_eq(c.user, "u");
    cr_assert_str_eq(c.password, "p@ss");
    cr_assert_eq(c.nseed, 3);
    cr_assert_str_eq(c.seeds[0].host, "10.0.0.1");
    cr_assert_eq(c.seeds[0].port, 7000);
    cr_assert_str_eq(c.seeds[1].host, "::1");
    cr_assert_eq(c.seeds[1].port, 7001);
    cr_assert_str_eq(c.seeds[2].host, "node3");
    cr_assert_eq(c.seeds[2].port, 6379);
    redis_cluster_conf_free(&c);

    cr_assert_eq(redis_parse_cluster_dsn("s", "redis://:secret@h:1", &c, &err), 0, "%s", err.msg);
    cr_assert_null(c.user);
    cr_assert_str_eq(c.password, "secret");
    cr_assert_eq(c.nseed, 1);
    redis_cluster_conf_free(&c);

    static const char *const bad[] = {
        "",
        "redis://:secret@h:1/1",
        "redis://:secret@h:1,,h:2",
        "redis://:secret@h:1,",
        "redis://:secret@h:99999",
        "rediss://:secret@h:1",
        "http://:secret@h:1",
        "redis://:secret@h:1?cluster=true",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        cr_assert_eq(redis_parse_cluster_dsn("cache", bad[i], &c, &err), -1, "\"%s\" was accepted", bad[i]);
        cr_assert_eq(err.code, WC_ERR_CONFIG);
        cr_assert(strstr(err.msg, "sink \"cache\": invalid redis cluster dsn") != NULL, "%s", err.msg);
        cr_assert_null(strstr(err.msg, "secret"), "the password is in the message: %s", err.msg);
        cr_assert_eq(c.nseed, 0);
    }
    cr_assert(strstr((redis_parse_cluster_dsn("cache", "redis://h:1/2", &c, &err), err.msg),
                     "a cluster has only database 0") != NULL,
              "%s", err.msg);
}

Test(cluster, pipeline_must_be_all_or_nothing)
{
    /* Checked before any I/O: the seed below is never connected to. */
    struct wc_err err = {0};
    struct redis_cluster *cl = redis_cluster_new("cache", "redis://127.0.0.1:1", &err);
    struct wc_buf b = WC_BUF_INIT;
    redisReply *rep[3] = {0};
    int n = 0;

    cr_assert_not_null(cl, "%s", err.msg);
    cmd(&b, &n, "SET {a}x 1");
    cmd(&b, &n, "SET {a}y 2");
    cr_assert_eq(redis_cluster_pipeline(cl, slot_of("a"), b.data, b.len, n, rep, &err), -1);
    cr_assert_eq(err.code, WC_ERR_INTERNAL);
    cr_assert(strstr(err.msg, "is not one command or MULTI ... EXEC") != NULL, "%s", err.msg);
    redis_cluster_free(cl);
    wc_buf_free(&b);
}

/* ---- the live cluster ---- */

/* Our slot of random keys, braces and all, against the cluster's own CLUSTER KEYSLOT. */
Test(cluster_live, keyslot_matches_server, .timeout = 60)
{
    struct redis_cluster *cl = live();
    redisContext *c = master_of(cl, 0);
    static const char alpha[] = "ab{}{}}{x:\0\xff 09";
    enum { N = 5000 };
    char keys[N][24];
    size_t lens[N];
    unsigned seed = (unsigned)time(NULL);

    srand(seed);
    for (int i = 0; i < N; i++) {
        lens[i] = (size_t)(rand() % 20);
        for (size_t j = 0; j < lens[i]; j++)
            keys[i][j] = alpha[rand() % (int)(sizeof(alpha) - 1)];
        redisAppendCommand(c, "CLUSTER KEYSLOT %b", keys[i], lens[i]);
    }
    for (int i = 0; i < N; i++) {
        redisReply *r;
        cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK);
        cr_assert_eq(r->type, REDIS_REPLY_INTEGER, "key %d: %s", i, r->str);
        cr_assert_eq(redis_cluster_keyslot(keys[i], lens[i]), r->integer,
                     "key %d (%zu bytes, seed %u): ours %d, the server's %lld", i, lens[i], seed,
                     redis_cluster_keyslot(keys[i], lens[i]), r->integer);
        freeReplyObject(r);
    }
    redisFree(c);
    redis_cluster_free(cl);
}

/* Every slot's tag, asked of its master per our map: served there (no MOVED), for all 16384 slots; and the
 * map read with CLUSTER SLOTS is the same. */
Test(cluster_live, map_matches_server, .timeout = 60)
{
    struct redis_cluster *cl = live(), *old = live();
    struct wc_err err = {0};
    redisContext *cs[16] = {0};

    cr_assert_eq(cl->map.covered, 16384, "the live cluster serves %d slots", cl->map.covered);
    cr_assert(cl->map.nnode >= 3 && cl->map.nnode <= 16, "%d masters", cl->map.nnode);
    cr_assert_eq(cl->no_shards, 0, "redis 7 has CLUSTER SHARDS");
    for (int i = 0; i < cl->map.nnode; i++) {
        cr_assert_eq(strlen(cl->map.nodes[i].id), 40, "node %d has no id", i);
        cs[i] = direct(cl->map.nodes[i].host, cl->map.nodes[i].port);
    }
    for (int s = 0; s < REDIS_CLUSTER_SLOTS; s++)
        redisAppendCommand(cs[cl->map.owner[s]], "EXISTS {%s}", redis_cluster_slot_tag(s));
    for (int s = 0; s < REDIS_CLUSTER_SLOTS; s++) {
        redisReply *r;
        cr_assert_eq(redisGetReply(cs[cl->map.owner[s]], (void **)&r), REDIS_OK);
        cr_assert_eq(r->type, REDIS_REPLY_INTEGER, "slot %d, asked of %s:%d: %s", s,
                     cl->map.nodes[cl->map.owner[s]].host, cl->map.nodes[cl->map.owner[s]].port, r->str);
        freeReplyObject(r);
    }
    for (int i = 0; i < cl->map.nnode; i++)
        redisFree(cs[i]);

    /* CLUSTER SLOTS, the fallback: the same owners. */
    old->no_shards = 1;
    cr_assert_eq(redis_cluster_refresh(old, &err), 0, "%s", err.msg);
    cr_assert_eq(old->map.covered, 16384);
    for (int s = 0; s < REDIS_CLUSTER_SLOTS; s++) {
        const struct redis_cluster_node *a = &cl->map.nodes[cl->map.owner[s]],
                                        *b = &old->map.nodes[old->map.owner[s]];
        cr_assert(a->port == b->port && strcmp(a->host, b->host) == 0 && strcmp(a->id, b->id) == 0,
                  "slot %d: %s:%d by CLUSTER SHARDS, %s:%d by CLUSTER SLOTS", s, a->host, a->port, b->host,
                  b->port);
    }
    redis_cluster_free(old);
    redis_cluster_free(cl);
}

/* One MULTI/EXEC per master, all sent before any reply is read; each lands on its own master. */
Test(cluster_live, jobs_on_every_master, .timeout = 60)
{
    struct redis_cluster *cl = live();
    struct wc_err err = {0};
    struct redis_cluster_job jobs[3];
    struct wc_buf bufs[3] = {WC_BUF_INIT, WC_BUF_INIT, WC_BUF_INIT};
    redisReply *replies[3][4];
    char *keys[3];
    int slots[3], n = 0;

    /* A slot of three different masters. */
    for (int s = 0; s < REDIS_CLUSTER_SLOTS && n < 3; s++) {
        int dup = 0;
        for (int i = 0; i < n; i++)
            dup |= cl->map.owner[slots[i]] == cl->map.owner[s];
        if (!dup)
            slots[n++] = s;
    }
    cr_assert_eq(n, 3);
    memset(jobs, 0, sizeof(jobs));
    for (int i = 0; i < 3; i++) {
        int nc = 0;
        keys[i] = key_in(slots[i], "job");
        cmd(&bufs[i], &nc, "MULTI");
        cmd(&bufs[i], &nc, "SET %s v%d", keys[i], i);
        cmd(&bufs[i], &nc, "INCR %s:n", keys[i]);
        cmd(&bufs[i], &nc, "EXEC");
        jobs[i] = (struct redis_cluster_job){
            .slot = slots[i], .cmds = bufs[i].data, .len = bufs[i].len, .ncmd = nc, .replies = replies[i]};
    }
    cr_assert_eq(redis_cluster_run(cl, jobs, 3, &err), 0, "%s", err.msg);
    for (int i = 0; i < 3; i++) {
        redisContext *c = master_of(cl, slots[i]);
        redisReply *r;

        cr_assert_eq(jobs[i].state, REDIS_CLUSTER_JOB_DONE);
        cr_assert_eq(jobs[i].redirects, 0);
        expect_status(replies[i][0], "OK");
        expect_status(replies[i][1], "QUEUED");
        cr_assert_eq(replies[i][3]->type, REDIS_REPLY_ARRAY);
        cr_assert_eq(replies[i][3]->elements, 2);
        cr_assert_eq(replies[i][3]->element[1]->integer, 1);
        for (int k = 0; k < 4; k++)
            freeReplyObject(replies[i][k]);
        /* Read back from that master directly: it is there (no MOVED). */
        r = redisCommand(c, "GET %s", keys[i]);
        cr_assert(r && r->type == REDIS_REPLY_STRING, "%s", r ? r->str : c->errstr);
        cr_assert_eq(atoi(r->str + 1), i);
        freeReplyObject(r);
        redisFree(c);
        free(keys[i]);
        wc_buf_free(&bufs[i]);
    }
    cr_assert_eq(cl->stats.moved + cl->stats.ask, 0);
    redis_cluster_free(cl);
}

/*
 * A live reshard (redis-cli --cluster reshard, through services.sh) moves one slot with a key in it; a
 * cluster object still holding the old map writes into that slot: MOVED, the map is read again, the write
 * lands on the new master and finds the migrated key there.
 */
Test(cluster_live, moved_after_reshard, .timeout = 120)
{
    struct redis_cluster *cl = live(), *now;
    struct wc_err err = {0};
    struct wc_buf b = WC_BUF_INIT;
    redisReply *rep[4] = {0};
    int from = -1, to = -1, moved_slot = -1, nmoved = 0, nc = 0, lowest = -1, from_port;
    char args[64], *out, *key;
    long refreshes;

    /* FROM: the master of slot 0; TO: another. redis-cli moves FROM's lowest slots. */
    from = cl->map.owner[0];
    for (int i = 0; i < cl->map.nnode && to < 0; i++)
        if (i != from)
            to = i;
    for (int s = 0; s < REDIS_CLUSTER_SLOTS && lowest < 0; s++)
        if (cl->map.owner[s] == from)
            lowest = s;
    from_port = cl->map.nodes[from].port; /* cl's map is replaced when it follows the MOVED */
    key = key_in(lowest, "moved");
    {
        redisContext *c = master_of(cl, lowest);
        redisReply *r = redisCommand(c, "SET %s before", key);
        expect_status(r, "OK");
        freeReplyObject(r);
        redisFree(c);
    }
    snprintf(args, sizeof(args), "1 %d %d", cl->map.nodes[from].port, cl->map.nodes[to].port);
    out = services("cluster-reshard", args);
    free(out);

    /* What moved, as a fresh map says. */
    now = live();
    for (int s = 0; s < REDIS_CLUSTER_SLOTS; s++) {
        const struct redis_cluster_node *a = &cl->map.nodes[cl->map.owner[s]],
                                        *c = &now->map.nodes[now->map.owner[s]];
        if (a->port != c->port) {
            nmoved++;
            moved_slot = s;
            cr_assert_eq(c->port, cl->map.nodes[to].port);
        }
    }
    cr_assert_eq(nmoved, 1, "%d slots moved, not 1", nmoved);
    cr_assert_eq(moved_slot, lowest, "redis-cli moved slot %d, not the lowest of the master (%d)", moved_slot,
                 lowest);

    /* The stale map sends to FROM, which answers MOVED; then to TO, where the key now is. */
    refreshes = cl->stats.refreshes;
    cmd(&b, &nc, "MULTI");
    cmd(&b, &nc, "APPEND %s +after", key);
    cmd(&b, &nc, "GET %s", key);
    cmd(&b, &nc, "EXEC");
    cr_assert_eq(redis_cluster_pipeline(cl, moved_slot, b.data, b.len, nc, rep, &err), 0, "%s", err.msg);
    cr_assert_eq(cl->stats.moved, 1, "no MOVED was followed");
    cr_assert_eq(cl->stats.refreshes, refreshes + 1);
    cr_assert_eq(rep[3]->type, REDIS_REPLY_ARRAY, "EXEC: %s", rep[3]->str);
    cr_assert_str_eq(rep[3]->element[1]->str, "before+after", "the migrated key");
    cr_assert_eq(cl->map.nodes[cl->map.owner[moved_slot]].port,
                 now->map.nodes[now->map.owner[moved_slot]].port,
                 "the refreshed map names another master for slot %d", moved_slot);
    for (int i = 0; i < nc; i++)
        freeReplyObject(rep[i]);

    /* Back the other way (TO's lowest slot is now the one it got), so that runs do not drift the layout. */
    snprintf(args, sizeof(args), "1 %d %d", now->map.nodes[now->map.owner[moved_slot]].port, from_port);
    free(services("cluster-reshard", args));
    free(key);
    wc_buf_free(&b);
    redis_cluster_free(now);
    redis_cluster_free(cl);
}

/*
 * ASK: a slot set MIGRATING on its master and IMPORTING on another by hand (as redis-cli does before it
 * moves the keys). A key that is not on the source any more (here: a new one) gets ASK; the job goes to
 * the target after ASKING, and the map stays as it was. A key still on the source is served there.
 */
#define ASK_SLOT 16000 /* far from the slots the reshard test moves (the lowest of a master) */

static struct {
    char host[2][256];
    int port[2];
    char *keys[3];
} ask_fx;

static void ask_cleanup(void)
{
    for (int i = 0; i < 2; i++) {
        redisContext *c;
        redisReply *r;
        if (ask_fx.port[i] == 0)
            continue;
        c = direct(ask_fx.host[i], ask_fx.port[i]);
        for (int k = 0; k < 3; k++) {
            if (ask_fx.keys[k] == NULL)
                continue;
            freeReplyObject(redisCommand(c, "ASKING"));
            freeReplyObject(redisCommand(c, "DEL %s", ask_fx.keys[k]));
        }
        r = redisCommand(c, "CLUSTER SETSLOT %d STABLE", ASK_SLOT);
        freeReplyObject(r);
        redisFree(c);
    }
    for (int k = 0; k < 3; k++)
        free(ask_fx.keys[k]);
    memset(&ask_fx, 0, sizeof(ask_fx));
}

Test(cluster_live, ask_during_migration, .timeout = 60, .fini = ask_cleanup)
{
    struct redis_cluster *cl = live();
    struct wc_err err = {0};
    struct wc_buf b = WC_BUF_INIT;
    redisReply *rep[4] = {0}, *r;
    redisContext *src, *dst;
    int a = cl->map.owner[ASK_SLOT], t = a == 0 ? 1 : 0, nc = 0;

    for (int i = 0; i < 2; i++) {
        const struct redis_cluster_node *n = &cl->map.nodes[i == 0 ? a : t];
        snprintf(ask_fx.host[i], sizeof(ask_fx.host[i]), "%s", n->host);
        ask_fx.port[i] = n->port;
    }
    for (int k = 0; k < 3; k++)
        ask_fx.keys[k] = key_in(ASK_SLOT, "ask");
    src = direct(ask_fx.host[0], ask_fx.port[0]);
    dst = direct(ask_fx.host[1], ask_fx.port[1]);
    /* keys[0] is on the source before the migration starts. */
    expect_status(r = redisCommand(src, "SET %s old", ask_fx.keys[0]), "OK");
    freeReplyObject(r);
    expect_status(r = redisCommand(dst, "CLUSTER SETSLOT %d IMPORTING %s", ASK_SLOT, cl->map.nodes[a].id),
                  "OK");
    freeReplyObject(r);
    expect_status(r = redisCommand(src, "CLUSTER SETSLOT %d MIGRATING %s", ASK_SLOT, cl->map.nodes[t].id),
                  "OK");
    freeReplyObject(r);

    /* A new key: ASK, then ASKING + SET on the target. */
    cmd(&b, &nc, "SET %s new", ask_fx.keys[1]);
    cr_assert_eq(redis_cluster_pipeline(cl, ASK_SLOT, b.data, b.len, nc, rep, &err), 0, "%s", err.msg);
    expect_status(rep[0], "OK");
    freeReplyObject(rep[0]);
    cr_assert_eq(cl->stats.ask, 1, "no ASK was followed");
    cr_assert_eq(cl->stats.moved, 0);
    cr_assert_eq(cl->map.owner[ASK_SLOT], a, "an ASK must not change the map");
    /* It is on the target: there with ASKING, not on the source. */
    freeReplyObject(redisCommand(dst, "ASKING"));
    r = redisCommand(dst, "GET %s", ask_fx.keys[1]);
    cr_assert(r->type == REDIS_REPLY_STRING && strcmp(r->str, "new") == 0, "not on the target: %d %s",
              r->type, r->str ? r->str : "");
    freeReplyObject(r);
    r = redisCommand(src, "EXISTS %s", ask_fx.keys[1]);
    cr_assert(r->type == REDIS_REPLY_ERROR && strncmp(r->str, "ASK ", 4) == 0, "on the source: %d", r->type);
    freeReplyObject(r);

    /* A one-key MULTI/EXEC: ASK at queueing, EXECABORT, sent again with ASKING: applied once, on the target.
     */
    wc_buf_reset(&b);
    nc = 0;
    cmd(&b, &nc, "MULTI");
    cmd(&b, &nc, "APPEND %s x", ask_fx.keys[2]);
    cmd(&b, &nc, "APPEND %s y", ask_fx.keys[2]);
    cmd(&b, &nc, "EXEC");
    cr_assert_eq(redis_cluster_pipeline(cl, ASK_SLOT, b.data, b.len, nc, rep, &err), 0, "%s", err.msg);
    cr_assert_eq(cl->stats.ask, 2);
    cr_assert_eq(rep[3]->type, REDIS_REPLY_ARRAY, "EXEC: %s", rep[3]->str);
    cr_assert_eq(rep[3]->element[1]->integer, 2, "appended more than once");
    for (int i = 0; i < nc; i++)
        freeReplyObject(rep[i]);

    /* The key still on the source is served there: no redirection. */
    wc_buf_reset(&b);
    nc = 0;
    cmd(&b, &nc, "GET %s", ask_fx.keys[0]);
    cr_assert_eq(redis_cluster_pipeline(cl, ASK_SLOT, b.data, b.len, nc, rep, &err), 0, "%s", err.msg);
    cr_assert_str_eq(rep[0]->str, "old");
    freeReplyObject(rep[0]);
    cr_assert_eq(cl->stats.ask, 2);

    /* Several keys in one transaction, none on the target yet: the target says TRYAGAIN at EXEC, which is
     * the caller's to retry later (nothing ran); the job is DONE with that reply. */
    wc_buf_reset(&b);
    nc = 0;
    cmd(&b, &nc, "MULTI");
    cmd(&b, &nc, "SET %s:a 1", ask_fx.keys[1]);
    cmd(&b, &nc, "SET %s:b 1", ask_fx.keys[1]);
    cmd(&b, &nc, "EXEC");
    cr_assert_eq(redis_cluster_pipeline(cl, ASK_SLOT, b.data, b.len, nc, rep, &err), 0, "%s", err.msg);
    cr_assert(rep[3]->type == REDIS_REPLY_ERROR && strncmp(rep[3]->str, "TRYAGAIN", 8) == 0, "EXEC: %d %s",
              rep[3]->type, rep[3]->str ? rep[3]->str : "");
    for (int i = 0; i < nc; i++)
        freeReplyObject(rep[i]);

    redisFree(src);
    redisFree(dst);
    wc_buf_free(&b);
    redis_cluster_free(cl);
}

/*
 * kill -9 of a master (services.sh waits until its replica has taken over): the next job on its slot
 * fails with WC_ERR_IO and is not DONE; the one after reads the map again and lands on the new master,
 * which has the data.
 */
Test(cluster_live, refresh_after_failover, .timeout = 120)
{
    struct redis_cluster *cl = live();
    struct wc_err err = {0};
    struct wc_buf b = WC_BUF_INIT;
    redisReply *rep[1] = {0};
    int slot = 8000, nc = 0, port = cl->map.nodes[cl->map.owner[slot]].port;
    char *key = key_in(slot, "failover"), args[32];
    struct redis_cluster_job j;

    signal(SIGPIPE, SIG_IGN); /* as walcast's main: a write to a dead node is an error, not a signal */
    cmd(&b, &nc, "INCR %s", key);
    cr_assert_eq(redis_cluster_pipeline(cl, slot, b.data, b.len, nc, rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep[0]->integer, 1);
    freeReplyObject(rep[0]);
    {
        /* On the replica before the kill (replication is asynchronous). */
        struct wc_buf w = WC_BUF_INIT;
        int nw = 0;
        cmd(&w, &nw, "WAIT 1 5000");
        cr_assert_eq(redis_cluster_pipeline(cl, slot, w.data, w.len, nw, rep, &err), 0, "%s", err.msg);
        cr_assert_eq(rep[0]->integer, 1, "the replica did not get the write");
        freeReplyObject(rep[0]);
        wc_buf_free(&w);
    }
    snprintf(args, sizeof(args), "%d", port);
    free(services("cluster-kill", args));

    j = (struct redis_cluster_job){.slot = slot, .cmds = b.data, .len = b.len, .ncmd = nc, .replies = rep};
    cr_assert_eq(redis_cluster_run(cl, &j, 1, &err), -1, "a job on the killed master's connection succeeded");
    cr_assert_eq(err.code, WC_ERR_IO, "%s", err.msg);
    cr_assert(strstr(err.msg, "redis cluster node") != NULL, "%s", err.msg);
    cr_assert_neq(j.state, REDIS_CLUSTER_JOB_DONE);
    cr_assert_eq(cl->stale, 1);

    cr_assert_eq(redis_cluster_run(cl, &j, 1, &err), 0, "after the failover: %s", err.msg);
    cr_assert_eq(j.state, REDIS_CLUSTER_JOB_DONE);
    cr_assert_eq(rep[0]->integer, 2, "the new master has the write, and the failed job did not run");
    freeReplyObject(rep[0]);
    cr_assert_neq(cl->map.nodes[cl->map.owner[slot]].port, port);

    /* The old master comes back (as a replica), so the cluster has a replica per master again. */
    free(services("cluster-restart", args));
    free(key);
    wc_buf_free(&b);
    redis_cluster_free(cl);
}
