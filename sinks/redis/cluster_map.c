/* cluster_map.c - Redis Cluster's pure parts: CRC16 and hash slots, slot tags, redirections, the slot map. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "walcast/buf.h"

/* CRC16-CCITT (XMODEM) by byte: crc16_tab[b] is the CRC of the single byte b. */
static const uint16_t crc16_tab[256] = {
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7, 0x8108, 0x9129, 0xa14a, 0xb16b, 0xc18c,
    0xd1ad, 0xe1ce, 0xf1ef, 0x1231, 0x0210, 0x3273, 0x2252, 0x52b5, 0x4294, 0x72f7, 0x62d6, 0x9339, 0x8318,
    0xb37b, 0xa35a, 0xd3bd, 0xc39c, 0xf3ff, 0xe3de, 0x2462, 0x3443, 0x0420, 0x1401, 0x64e6, 0x74c7, 0x44a4,
    0x5485, 0xa56a, 0xb54b, 0x8528, 0x9509, 0xe5ee, 0xf5cf, 0xc5ac, 0xd58d, 0x3653, 0x2672, 0x1611, 0x0630,
    0x76d7, 0x66f6, 0x5695, 0x46b4, 0xb75b, 0xa77a, 0x9719, 0x8738, 0xf7df, 0xe7fe, 0xd79d, 0xc7bc, 0x48c4,
    0x58e5, 0x6886, 0x78a7, 0x0840, 0x1861, 0x2802, 0x3823, 0xc9cc, 0xd9ed, 0xe98e, 0xf9af, 0x8948, 0x9969,
    0xa90a, 0xb92b, 0x5af5, 0x4ad4, 0x7ab7, 0x6a96, 0x1a71, 0x0a50, 0x3a33, 0x2a12, 0xdbfd, 0xcbdc, 0xfbbf,
    0xeb9e, 0x9b79, 0x8b58, 0xbb3b, 0xab1a, 0x6ca6, 0x7c87, 0x4ce4, 0x5cc5, 0x2c22, 0x3c03, 0x0c60, 0x1c41,
    0xedae, 0xfd8f, 0xcdec, 0xddcd, 0xad2a, 0xbd0b, 0x8d68, 0x9d49, 0x7e97, 0x6eb6, 0x5ed5, 0x4ef4, 0x3e13,
    0x2e32, 0x1e51, 0x0e70, 0xff9f, 0xefbe, 0xdfdd, 0xcffc, 0xbf1b, 0xaf3a, 0x9f59, 0x8f78, 0x9188, 0x81a9,
    0xb1ca, 0xa1eb, 0xd10c, 0xc12d, 0xf14e, 0xe16f, 0x1080, 0x00a1, 0x30c2, 0x20e3, 0x5004, 0x4025, 0x7046,
    0x6067, 0x83b9, 0x9398, 0xa3fb, 0xb3da, 0xc33d, 0xd31c, 0xe37f, 0xf35e, 0x02b1, 0x1290, 0x22f3, 0x32d2,
    0x4235, 0x5214, 0x6277, 0x7256, 0xb5ea, 0xa5cb, 0x95a8, 0x8589, 0xf56e, 0xe54f, 0xd52c, 0xc50d, 0x34e2,
    0x24c3, 0x14a0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405, 0xa7db, 0xb7fa, 0x8799, 0x97b8, 0xe75f, 0xf77e,
    0xc71d, 0xd73c, 0x26d3, 0x36f2, 0x0691, 0x16b0, 0x6657, 0x7676, 0x4615, 0x5634, 0xd94c, 0xc96d, 0xf90e,
    0xe92f, 0x99c8, 0x89e9, 0xb98a, 0xa9ab, 0x5844, 0x4865, 0x7806, 0x6827, 0x18c0, 0x08e1, 0x3882, 0x28a3,
    0xcb7d, 0xdb5c, 0xeb3f, 0xfb1e, 0x8bf9, 0x9bd8, 0xabbb, 0xbb9a, 0x4a75, 0x5a54, 0x6a37, 0x7a16, 0x0af1,
    0x1ad0, 0x2ab3, 0x3a92, 0xfd2e, 0xed0f, 0xdd6c, 0xcd4d, 0xbdaa, 0xad8b, 0x9de8, 0x8dc9, 0x7c26, 0x6c07,
    0x5c64, 0x4c45, 0x3ca2, 0x2c83, 0x1ce0, 0x0cc1, 0xef1f, 0xff3e, 0xcf5d, 0xdf7c, 0xaf9b, 0xbfba, 0x8fd9,
    0x9ff8, 0x6e17, 0x7e36, 0x4e55, 0x5e74, 0x2e93, 0x3eb2, 0x0ed1, 0x1ef0,
};

uint16_t redis_cluster_crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;

    for (size_t i = 0; i < len; i++)
        crc = (uint16_t)(crc << 8) ^ crc16_tab[((crc >> 8) ^ (unsigned char)buf[i]) & 0xff];
    return crc;
}

int redis_cluster_keyslot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len), *close;

    if (open != NULL) {
        size_t rest = len - (size_t)(open - key) - 1;
        close = memchr(open + 1, '}', rest);
        /* Only the first '{' counts, and an empty tag means the whole key (Redis's keyHashSlot). */
        if (close != NULL && close > open + 1)
            return redis_cluster_crc16(open + 1, (size_t)(close - open - 1)) & (REDIS_CLUSTER_SLOTS - 1);
    }
    return redis_cluster_crc16(key, len) & (REDIS_CLUSTER_SLOTS - 1);
}

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
