/* cluster_map.c - Redis Cluster's pure parts: slot tags, redirections, the slot map (CRC16 and hash slots
 * are base/keyslot.c). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "walcast/buf.h"

/* ---- slot tags ---- */

static char slot_tags[REDIS_CLUSTER_SLOTS][4];
static pthread_once_t slot_tags_once = PTHREAD_ONCE_INIT;

/* The enumeration order is part of what walcast stores (key names): never change it. */
static void make_slot_tags(void)
{
    static const char alpha[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const int n = (int)sizeof(alpha) - 1;
    int left = REDIS_CLUSTER_SLOTS;
    char s[4];

    for (int len = 1; len <= 3 && left > 0; len++) {
        int total = 1, idx[3] = {0, 0, 0};
        for (int i = 0; i < len; i++)
            total *= n;
        for (int k = 0; k < total && left > 0; k++) {
            int slot;
            /* idx counts in base n, the last character fastest: lexicographic order */
            for (int i = len - 1, v = k; i >= 0; i--, v /= n)
                idx[i] = v % n;
            for (int i = 0; i < len; i++)
                s[i] = alpha[idx[i]];
            slot = redis_cluster_crc16(s, (size_t)len) & (REDIS_CLUSTER_SLOTS - 1);
            if (slot_tags[slot][0] == '\0') {
                memcpy(slot_tags[slot], s, (size_t)len);
                left--;
            }
        }
    }
    /* Three characters cover every slot (checked by the tests): left is 0 here. */
}

const char *redis_cluster_slot_tag(int slot)
{
    if (slot < 0 || slot >= REDIS_CLUSTER_SLOTS)
        return NULL;
    pthread_once(&slot_tags_once, make_slot_tags);
    return slot_tags[slot];
}

/* ---- redirections ---- */

/* Digits s[0..len) as a number in [min, max]; -1 otherwise. */
static long parse_num(const char *s, size_t len, long min, long max)
{
    long v = 0;

    if (len == 0 || len > 9)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v < min || v > max ? -1 : v;
}

int redis_cluster_parse_redirect(const char *msg, size_t len, struct redis_cluster_redirect *out,
                                 const char **why)
{
    const char *p, *end = msg + len, *sp, *colon;
    long slot, port;
    int kind;

    memset(out, 0, sizeof(*out));
    /* The error code is the first word: "MOVED" alone is a malformed redirection, "MOVEDX" another error. */
    if (len >= 5 && memcmp(msg, "MOVED", 5) == 0 && (len == 5 || msg[5] == ' ')) {
        kind = REDIS_CLUSTER_MOVED;
        p = msg + 5;
    } else if (len >= 3 && memcmp(msg, "ASK", 3) == 0 && (len == 3 || msg[3] == ' ')) {
        kind = REDIS_CLUSTER_ASK;
        p = msg + 3;
    } else {
        return REDIS_CLUSTER_NO_REDIRECT;
    }
    if (p == end) {
        *why = "no slot";
        return -1;
    }
    p++;
    sp = memchr(p, ' ', (size_t)(end - p));
    if (sp == NULL) {
        *why = "no address after the slot";
        return -1;
    }
    if ((slot = parse_num(p, (size_t)(sp - p), 0, REDIS_CLUSTER_SLOTS - 1)) < 0) {
        *why = "the slot is not a number from 0 to 16383";
        return -1;
    }
    p = sp + 1;
    colon = NULL;
    for (const char *q = p; q < end; q++) {
        if (*q == ' ' || *q == '\r' || *q == '\n' || *q == '\0') {
            *why = "trailing text after the address";
            return -1;
        }
        if (*q == ':')
            colon = q;
    }
    if (colon == NULL) {
        *why = "the address has no port";
        return -1;
    }
    if ((port = parse_num(colon + 1, (size_t)(end - colon - 1), 1, 65535)) < 0) {
        *why = "the port is not a number from 1 to 65535";
        return -1;
    }
    if ((size_t)(colon - p) >= sizeof(out->host)) {
        *why = "the host is too long";
        return -1;
    }
    memcpy(out->host, p, (size_t)(colon - p));
    out->host[colon - p] = '\0';
    out->kind = kind;
    out->slot = (int)slot;
    out->port = (int)port;
    return kind;
}

/* ---- the slot map ---- */

void redis_cluster_map_free(struct redis_cluster_map *m)
{
    for (int i = 0; i < m->nnode; i++) {
        if (m->nodes[i].c != NULL)
            redisFree(m->nodes[i].c);
        free(m->nodes[i].host);
    }
    free(m->nodes);
    m->nodes = NULL;
    m->nnode = 0;
    m->covered = 0;
    for (int s = 0; s < REDIS_CLUSTER_SLOTS; s++)
        m->owner[s] = -1;
}

int redis_cluster_map_node(struct redis_cluster_map *m, const char *host, int port)
{
    for (int i = 0; i < m->nnode; i++)
        if (m->nodes[i].port == port && strcmp(m->nodes[i].host, host) == 0)
            return i;
    m->nodes = wc_xrealloc(m->nodes, (size_t)(m->nnode + 1) * sizeof(*m->nodes));
    memset(&m->nodes[m->nnode], 0, sizeof(*m->nodes));
    m->nodes[m->nnode].host = wc_xstrdup(host);
    m->nodes[m->nnode].port = port;
    return m->nnode++;
}

/* Give slots [lo, hi] to node i; -1 when the range is not within 0..16383. */
static int assign(struct redis_cluster_map *m, long long lo, long long hi, int i)
{
    if (lo < 0 || hi >= REDIS_CLUSTER_SLOTS || lo > hi)
        return -1;
    for (long long s = lo; s <= hi; s++) {
        if (m->owner[s] < 0)
            m->covered++;
        m->owner[s] = (int16_t)i;
    }
    return 0;
}

/* An integer element (7.0 sends integers; accept their text too). */
static int reply_int(const redisReply *r, long long *out)
{
    if (r->type == REDIS_REPLY_INTEGER) {
        *out = r->integer;
        return 0;
    }
    if (r->type == REDIS_REPLY_STRING && r->len > 0 && r->len < 10) {
        long v = parse_num(r->str, r->len, 0, 999999999);
        if (v < 0)
            return -1;
        *out = v;
        return 0;
    }
    return -1;
}

static int is_str(const redisReply *r, const char *s)
{
    return (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && r->len == strlen(s) &&
           memcmp(r->str, s, r->len) == 0;
}

/* The value of key in a RESP2 flat map (key, value, key, value...); NULL when absent. */
static const redisReply *map_get(const redisReply *r, const char *key)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0)
        return NULL;
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (is_str(r->element[i], key))
            return r->element[i + 1];
    return NULL;
}

/* The address of a node to connect to: a usable endpoint, else ip, else the node asked. */
static const char *node_host(const redisReply *endpoint, const redisReply *ip, const char *asked)
{
    if (endpoint != NULL && endpoint->type == REDIS_REPLY_STRING && endpoint->len > 0 &&
        !is_str(endpoint, "?"))
        return endpoint->str;
    if (ip != NULL && ip->type == REDIS_REPLY_STRING && ip->len > 0 && !is_str(ip, "?"))
        return ip->str;
    return asked;
}

static void set_id(struct redis_cluster_node *n, const redisReply *id)
{
    if (id != NULL && id->type == REDIS_REPLY_STRING && id->len < sizeof(n->id)) {
        memcpy(n->id, id->str, id->len);
        n->id[id->len] = '\0';
    }
}

int redis_cluster_map_from_shards(const redisReply *r, const char *asked_host, struct redis_cluster_map *m,
                                  const char **why)
{
    redis_cluster_map_free(m);
    if (r->type != REDIS_REPLY_ARRAY) {
        *why = "the reply is not an array of shards";
        goto bad;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *shard = r->element[i], *slots = map_get(shard, "slots"),
                         *nodes = map_get(shard, "nodes"), *master = NULL;
        long long port;
        int n;

        if (slots == NULL || nodes == NULL || slots->type != REDIS_REPLY_ARRAY ||
            nodes->type != REDIS_REPLY_ARRAY || slots->elements % 2 != 0) {
            *why = "a shard without a list of slot ranges and nodes";
            goto bad;
        }
        if (slots->elements == 0)
            continue; /* a shard that serves nothing (yet) */
        for (size_t j = 0; j < nodes->elements && master == NULL; j++) {
            const redisReply *role = map_get(nodes->element[j], "role");
            if (role != NULL && is_str(role, "master"))
                master = nodes->element[j];
        }
        if (master == NULL) {
            *why = "a shard with slots but no master";
            goto bad;
        }
        if (map_get(master, "port") == NULL || reply_int(map_get(master, "port"), &port) < 0 || port < 1 ||
            port > 65535) {
            *why = "a master without a port from 1 to 65535 (TLS only?)";
            goto bad;
        }
        n = redis_cluster_map_node(
            m, node_host(map_get(master, "endpoint"), map_get(master, "ip"), asked_host), (int)port);
        set_id(&m->nodes[n], map_get(master, "id"));
        for (size_t j = 0; j < slots->elements; j += 2) {
            long long lo, hi;
            if (reply_int(slots->element[j], &lo) < 0 || reply_int(slots->element[j + 1], &hi) < 0 ||
                assign(m, lo, hi, n) < 0) {
                *why = "a slot range that is not two numbers from 0 to 16383";
                goto bad;
            }
        }
    }
    return 0;

bad:
    redis_cluster_map_free(m);
    return -1;
}

int redis_cluster_map_from_slots(const redisReply *r, const char *asked_host, struct redis_cluster_map *m,
                                 const char **why)
{
    redis_cluster_map_free(m);
    if (r->type != REDIS_REPLY_ARRAY) {
        *why = "the reply is not an array of slot ranges";
        goto bad;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i], *master;
        long long lo, hi, port;
        int n;

        /* [start, end, [ip, port, id, ...], replicas...] */
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || reply_int(e->element[0], &lo) < 0 ||
            reply_int(e->element[1], &hi) < 0) {
            *why = "a slot range that is not [start, end, master, ...]";
            goto bad;
        }
        master = e->element[2];
        if (master->type != REDIS_REPLY_ARRAY || master->elements < 2 ||
            master->element[0]->type != REDIS_REPLY_STRING || reply_int(master->element[1], &port) < 0 ||
            port < 1 || port > 65535) {
            *why = "a master that is not [ip, port, ...]";
            goto bad;
        }
        n = redis_cluster_map_node(m, node_host(NULL, master->element[0], asked_host), (int)port);
        if (master->elements >= 3)
            set_id(&m->nodes[n], master->element[2]);
        if (assign(m, lo, hi, n) < 0) {
            *why = "a slot range that is not two numbers from 0 to 16383";
            goto bad;
        }
    }
    return 0;

bad:
    redis_cluster_map_free(m);
    return -1;
}
