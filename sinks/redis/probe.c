/* probe.c - what a Redis sink's server says about itself (settings, persistence, its dead letters). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"
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

int wc_sink_redis_info(struct wc_sink *s, struct wc_redis_info *out, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    char v[64], why[256] = "";
    redisReply *r;
    int rc;

    memset(out, 0, sizeof(*out));
    out->maxmemory = out->dead_letters = -1;
    out->appendonly = out->cluster_enabled = -1;
    if (p == NULL || p->c == NULL)
        return redis_not_open(s, err);
    const char *info_argv[1] = {"INFO"};
    if ((r = redis_command(s, p, 1, info_argv, NULL, err)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_STRING) {
        info_field(r->str, "redis_version", out->version, sizeof(out->version));
        if (info_field(r->str, "cluster_enabled", v, sizeof(v)) == 0)
            out->cluster_enabled = atoi(v);
        if (info_field(r->str, "aof_enabled", v, sizeof(v)) == 0)
            out->appendonly = atoi(v);
        if (info_field(r->str, "maxmemory", v, sizeof(v)) == 0)
            out->maxmemory = atoll(v);
        info_field(r->str, "maxmemory_policy", out->maxmemory_policy, sizeof(out->maxmemory_policy));
    }
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
