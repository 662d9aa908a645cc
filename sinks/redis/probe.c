/* probe.c - what a Redis sink's server says about itself (settings, persistence, its dead letters). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csink.h"
#include "walcast/probe.h"

/* CONFIG GET name into out (size bytes); 0, or -1 with why filled (CONFIG renamed, an ACL). */
static int config_get(struct wc_sink *s, struct redis_sink *p, const char *name, char *out, size_t size,
                      char *why, size_t whysize, struct wc_err *err)
{
    const char *argv[3] = {"CONFIG", "GET", name};
    redisReply *r = redis_command(s, p, 3, argv, NULL, err);

    if (r == NULL)
        return -2;
    int rc = -1;
    if (r->type == REDIS_REPLY_ERROR)
        snprintf(why, whysize, "%s", r->str);
    else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->type == REDIS_REPLY_STRING) {
        snprintf(out, size, "%s", r->element[1]->str);
        rc = 0;
    }
    freeReplyObject(r);
    return rc;
}

/* The value of "field:" in an INFO reply, into out; 0 or -1 when absent. */
static int info_field(const char *info, const char *field, char *out, size_t size)
{
    size_t n = strlen(field);
    for (const char *p = info; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, field, n) == 0 && p[n] == ':') {
            size_t len = strcspn(p + n + 1, "\r\n");
            snprintf(out, size, "%.*s", (int)len, p + n + 1);
            return 0;
        }
    }
    return -1;
}

/* One server's settings into out from its INFO text. */
static void from_info(const char *info, struct wc_redis_info *out)
{
    char v[64];

    info_field(info, "redis_version", out->version, sizeof(out->version));
    if (info_field(info, "cluster_enabled", v, sizeof(v)) == 0)
        out->cluster_enabled = atoi(v);
    if (info_field(info, "aof_enabled", v, sizeof(v)) == 0)
        out->appendonly = atoi(v);
    if (info_field(info, "maxmemory", v, sizeof(v)) == 0)
        out->maxmemory = atoll(v);
    info_field(info, "maxmemory_policy", out->maxmemory_policy, sizeof(out->maxmemory_policy));
}

static void fmt_xlen(struct wc_buf *b, int slot, void *arg)
{
    struct wc_sink *s = arg;
    char key[CS_KEYLEN];
    const char *argv[2] = {"XLEN", key};
    size_t len[2] = {4, cs_key(key, "dead_letters", slot, ((struct redis_sink *)s->priv)->cs->rs, NULL)};

    cs_format(b, 2, argv, len);
}

/* A setting is worse when it may lose or evict data: the report names the weakest master's. */
static int worse_policy(const char *a, const char *b)
{
    int ra = strncmp(a, "allkeys-", 8) == 0 ? 2 : strncmp(a, "volatile-", 9) == 0 ? 1 : 0;
    int rb = strncmp(b, "allkeys-", 8) == 0 ? 2 : strncmp(b, "volatile-", 9) == 0 ? 1 : 0;
    return ra > rb;
}

int cs_info(struct wc_sink *s, struct wc_redis_info *out, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    struct csink *cs = p->cs;
    const char *info_argv[1] = {"INFO"}, *get[3] = {"CONFIG", "GET", "appendfsync"};
    int *slots, n = 0;
    redisReply **rep;

    if (redis_cluster_ready_all(cs->cl, err) < 0)
        return -1;
    for (int i = 0; i < cs->cl->map.nnode; i++) {
        struct wc_redis_info one;
        memset(&one, 0, sizeof(one));
        one.maxmemory = -1;
        one.appendonly = one.cluster_enabled = -1;
        redisReply *r = redis_cluster_node_command(cs->cl, i, 1, info_argv, NULL, err);
        if (r == NULL)
            return -1;
        if (r->type == REDIS_REPLY_STRING)
            from_info(r->str, &one);
        freeReplyObject(r);
        if ((r = redis_cluster_node_command(cs->cl, i, 3, get, NULL, err)) == NULL)
            return -1;
        if (r->type == REDIS_REPLY_ERROR)
            snprintf(out->config_error, sizeof(out->config_error), "CONFIG GET refused: %s", r->str);
        else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                 r->element[1]->type == REDIS_REPLY_STRING)
            snprintf(one.appendfsync, sizeof(one.appendfsync), "%s", r->element[1]->str);
        freeReplyObject(r);
        if (i == 0) {
            snprintf(out->version, sizeof(out->version), "%s", one.version);
            out->cluster_enabled = one.cluster_enabled;
            out->appendonly = one.appendonly;
            out->maxmemory = one.maxmemory;
            snprintf(out->maxmemory_policy, sizeof(out->maxmemory_policy), "%s", one.maxmemory_policy);
            snprintf(out->appendfsync, sizeof(out->appendfsync), "%s", one.appendfsync);
            continue;
        }
        if (one.appendonly == 0 || out->appendonly < 0)
            out->appendonly = one.appendonly;
        if (strcmp(one.appendfsync, "always") != 0 && one.appendfsync[0])
            snprintf(out->appendfsync, sizeof(out->appendfsync), "%s", one.appendfsync);
        if (worse_policy(one.maxmemory_policy, out->maxmemory_policy)) {
            snprintf(out->maxmemory_policy, sizeof(out->maxmemory_policy), "%s", one.maxmemory_policy);
            out->maxmemory = one.maxmemory;
        }
    }
    /* The dead letters: the streams of the slots the sink has written. */
    if (!cs->read && cs_read_cursors(s, err) < 0)
        return -1;
    slots = wc_xcalloc(REDIS_CLUSTER_SLOTS, sizeof(int));
    rep = wc_xcalloc(REDIS_CLUSTER_SLOTS, sizeof(*rep));
    for (int i = 0; i < REDIS_CLUSTER_SLOTS; i++)
        if (cs->acked[i].lsn != 0 || cs->acked[i].index != -1 || i == cs->home)
            slots[n++] = i;
    int rc = cs_per_slot(s, slots, n, fmt_xlen, s, rep, err);
    if (rc == 0) {
        out->dead_letters = 0;
        for (int i = 0; i < n; i++) {
            if (rep[i]->type == REDIS_REPLY_INTEGER)
                out->dead_letters += rep[i]->integer;
            freeReplyObject(rep[i]);
        }
    }
    free(rep);
    free(slots);
    return rc;
}

int wc_sink_redis_info(struct wc_sink *s, struct wc_redis_info *out, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    char why[200] = ""; /* fits config_error with its prefix */
    redisReply *r;
    int rc;

    memset(out, 0, sizeof(*out));
    out->maxmemory = out->dead_letters = -1;
    out->appendonly = out->cluster_enabled = -1;
    if (p != NULL && p->cs != NULL)
        return cs_broken(p->cs) ? redis_not_open(s, err) : cs_info(s, out, err);
    if (p == NULL || p->c == NULL)
        return redis_not_open(s, err);
    const char *info_argv[1] = {"INFO"};
    if ((r = redis_command(s, p, 1, info_argv, NULL, err)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_STRING)
        from_info(r->str, out);
    freeReplyObject(r);
    if ((rc = config_get(s, p, "appendfsync", out->appendfsync, sizeof(out->appendfsync), why, sizeof(why),
                         err)) == -2)
        return -1;
    if (rc < 0)
        snprintf(out->config_error, sizeof(out->config_error), "CONFIG GET refused: %s", why);
    if (out->maxmemory_policy[0] == '\0' &&
        config_get(s, p, "maxmemory-policy", out->maxmemory_policy, sizeof(out->maxmemory_policy), why,
                   sizeof(why), err) == -2)
        return -1;
    const char *xlen_argv[2] = {"XLEN", p->dead_key};
    if ((r = redis_command(s, p, 2, xlen_argv, NULL, err)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_INTEGER)
        out->dead_letters = r->integer;
    freeReplyObject(r);
    return 0;
}

char *wc_redis_dsn_password(const char *dsn)
{
    struct wc_sink s = {.name = ""};
    struct redis_sink p;
    struct wc_err err;
    char *pw = NULL;

    memset(&p, 0, sizeof(p));
    if (redis_parse_dsn(&s, &p, dsn, &err) == 0) {
        pw = p.password;
        p.password = NULL;
    }
    free(p.password);
    free(p.user);
    free(p.host);
    return pw;
}

/* A connection of its own to a Redis sink's server (its DSN, AUTH and SELECT, no scripts), for a reader
 * waiting for the sink's applied position (walcast wait-lsn). */
redisContext *wc_redis_reader(const struct wc_sink_conf *conf, struct wc_err *err)
{
    struct wc_sink s = {.ops = &wc_sink_redis_ops, .conf = conf, .name = conf->name};

    if (s.ops->open(&s, err) < 0)
        return NULL;
    struct redis_sink *p = s.priv;
    redisContext *c = p->c;
    p->c = NULL;
    s.ops->close(&s);
    return c;
}

redisReply *wc_sink_redis_command(struct wc_sink *s, int argc, const char **argv, const size_t *len,
                                  struct wc_err *err)
{
    struct redis_sink *p = s->priv;

    if (p == NULL || p->c == NULL || p->cs != NULL) {
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": not open (or a cluster)", s->name);
        return NULL;
    }
    return redis_command(s, p, argc, argv, len, err);
}

int wc_sink_redis_masters(struct wc_sink *s, struct wc_err *err)
{
    struct redis_sink *p = s->priv;

    if (p == NULL || p->cs == NULL)
        return 0;
    if (redis_cluster_ready_all(p->cs->cl, err) < 0)
        return -1;
    return p->cs->cl->map.nnode;
}

redisReply *wc_sink_redis_master_command(struct wc_sink *s, int i, int argc, const char **argv,
                                         const size_t *len, struct wc_err *err)
{
    struct redis_sink *p = s->priv;

    if (p == NULL || p->cs == NULL || i < 0 || i >= p->cs->cl->map.nnode) {
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": no redis cluster master %d", s->name, i);
        return NULL;
    }
    return redis_cluster_node_command(p->cs->cl, i, argc, argv, len, err);
}

int wc_sink_redis_key_master(struct wc_sink *s, const char *key, size_t len)
{
    struct redis_sink *p = s->priv;

    if (p == NULL || p->cs == NULL)
        return -1;
    return p->cs->cl->map.owner[redis_cluster_keyslot(key, len)];
}

int wc_sink_redis_slot_master(struct wc_sink *s, int slot)
{
    struct redis_sink *p = s->priv;

    if (p == NULL || p->cs == NULL || slot < 0 || slot >= REDIS_CLUSTER_SLOTS)
        return -1;
    return p->cs->cl->map.owner[slot];
}

void wc_sink_redis_cluster_key(struct wc_sink *s, const char *what, int slot, char *buf, size_t size)
{
    struct redis_sink *p = s->priv;
    char key[CS_KEYLEN];

    if (p == NULL || p->cs == NULL) {
        snprintf(buf, size, "%s", "");
        return;
    }
    cs_key(key, what, slot < 0 ? p->cs->home : slot, p->cs->rs, NULL);
    snprintf(buf, size, "%s", key);
}
