/*
 * shadow_redis.c - `walcast rebuild` and `walcast verify` for a Redis projection (one server, not a
 * cluster): the shadow is the projection's keys written under the prefix "walcast:shadow:<unit>:" (verify:
 * "walcast:verify:<unit>:") by the same generated scripts (sinks.key_prefix), in the same database.
 *
 * verify compares at one position without touching the live sink's commits: writes are paused on the
 * server (CLIENT PAUSE WRITE: the live sink's next commit waits, reads go on) while the live cursor is read
 * and, when the shadow has applied exactly what it covers, the keys of the projection's patterns are
 * compared with the shadow's.
 *
 * rebuild swaps with one script (wc_rshadow_swap), which Redis runs with nothing in between: the live
 * sink commits a batch and its cursor in one MULTI/EXEC, so a cursor that is still the one the shadow
 * caught up with means the live keys are exactly that position's, and the shadow's keys replace them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "shadow.h"
#include "walcast/buf.h"
#include "walcast/probe.h"

/* A command on the server (a cluster: on the master of argv[1], a key). */
static redisReply *cmd(struct wc_shadow *sh, struct wc_err *err, int argc, const char **argv)
{
    if (sh->cluster)
        return wc_rcshadow_key_command(sh, argc, argv, err);
    redisReply *r = wc_sink_redis_command(sh->rk, argc, argv, NULL, err);
    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\": %s: %s", sh->live->name, argv[0], r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static char **scan_one(struct wc_shadow *sh, int master, const char *pattern, int *n, struct wc_err *err);

/* Every key matching pattern (SCAN; a cluster: on every master), into a NULL-terminated new array of new
 * strings; *n the count. */
static char **scan(struct wc_shadow *sh, const char *pattern, int *n, struct wc_err *err)
{
    if (!sh->cluster)
        return scan_one(sh, -1, pattern, n, err);
    int masters = wc_rcshadow_masters(sh, err);
    char **all = calloc(1, sizeof(char *));
    *n = 0;
    for (int i = 0; i < masters; i++) {
        int m;
        char **k = scan_one(sh, i, pattern, &m, err);
        if (k == NULL) {
            for (int j = 0; j < *n; j++)
                free(all[j]);
            free(all);
            return NULL;
        }
        all = realloc(all, (size_t)(*n + m + 1) * sizeof(char *));
        memcpy(all + *n, k, (size_t)m * sizeof(char *));
        *n += m;
        free(k);
    }
    if (masters < 0) {
        free(all);
        return NULL;
    }
    all[*n] = NULL;
    return all;
}

/* SCAN on the server, or on a cluster's master (master >= 0). */
static char **scan_one(struct wc_shadow *sh, int master, const char *pattern, int *n, struct wc_err *err)
{
    char cursor[32] = "0";
    char **keys = NULL;
    int cap = 0;

    *n = 0;
    do {
        const char *argv[6] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
        redisReply *r =
            master < 0 ? cmd(sh, err, 6, argv) : wc_rcshadow_master_command(sh, master, 6, argv, err);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            freeReplyObject(r);
            for (int i = 0; i < *n; i++)
                free(keys[i]);
            free(keys);
            return NULL;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            if (*n + 2 > cap) {
                cap = cap ? cap * 2 : 256;
                keys = realloc(keys, (size_t)cap * sizeof(char *));
            }
            keys[(*n)++] = strdup(r->element[1]->element[i]->str);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    if (keys == NULL)
        keys = calloc(1, sizeof(char *));
    keys[*n] = NULL;
    return keys;
}

static void free_keys(char **keys, int n)
{
    for (int i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
}

int wc_rshadow_wipe(struct wc_shadow *sh, struct wc_err *err)
{
    char pattern[200];
    int n;

    if (sh->cluster)
        return wc_rcshadow_wipe(sh, err);
    snprintf(pattern, sizeof(pattern), "%s*", sh->prefix);
    char **keys = scan(sh, pattern, &n, err);
    if (keys == NULL)
        return -1;
    for (int i = 0; i < n; i++) {
        const char *argv[2] = {"UNLINK", keys[i]};
        freeReplyObject(cmd(sh, err, 2, argv));
    }
    free_keys(keys, n);
    /* Its cursor, and the position it announced as applied (read-your-writes' hash: the field is the
     * shadow's own name, which no reader waits for, but it should not stay behind). */
    char ck[200], ak[200];
    snprintf(ck, sizeof(ck), "walcast:cursor:%s", sh->cfg->slot);
    snprintf(ak, sizeof(ak), "walcast:applied:%s", sh->cfg->slot);
    const char *argv[3] = {"HDEL", ck, sh->sink_name}, *argv2[3] = {"HDEL", ak, sh->sink_name};
    redisReply *r = cmd(sh, err, 3, argv);
    freeReplyObject(r);
    if (r == NULL)
        return -1;
    r = cmd(sh, err, 3, argv2);
    freeReplyObject(r);
    return r ? 0 : -1;
}

int wc_rshadow_cursor(struct wc_shadow *sh, const char *sink, struct wc_pos *out, int *found,
                      struct wc_err *err)
{
    char ck[200];

    if (sh->cluster)
        return wc_rcshadow_cursor(sh, sink, out, found, err);
    snprintf(ck, sizeof(ck), "walcast:cursor:%s", sh->cfg->slot);
    const char *argv[3] = {"HGET", ck, sink};
    redisReply *r = cmd(sh, err, 3, argv);
    if (r == NULL)
        return -1;
    *found = r->type == REDIS_REPLY_STRING;
    *out = WC_POS_NONE;
    if (sink == sh->live->name)
        snprintf(sh->live_raw, sizeof(sh->live_raw), "%s", *found ? r->str : "");
    int rc = *found && wc_pos_parse(r->str, out) < 0 ? -1 : 0;
    if (rc < 0)
        wc_err_set(err, WC_ERR_PROTOCOL, "sink \"%s\": invalid cursor \"%.64s\"", sink, r->str);
    freeReplyObject(r);
    return rc;
}

/* KEYS: the cursor hash, the applied hash, the sink's record of projections (projrec.c). ARGV: the live
 * sink, its cursor as read, the shadow's prefix and sink name, the number n of projections swapped in,
 * n pairs of projection and fingerprint, the live patterns. A key can come back twice from SCAN: each is
 * looked at once more. Keys of walcast's own (walcast:*) are never a projection's. */
static const char SWAP_LUA[] =
    "if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return -1 end\n" WC_LUA_EACH
    "local np = tonumber(ARGV[5])\n"
    "for i = 6 + 2 * np, #ARGV do\n"
    "  each(ARGV[i], function(k)\n"
    "    if string.sub(k, 1, 8) ~= 'walcast:' then redis.call('UNLINK', k) end\n"
    "  end)\n"
    "end\n"
    "local n, plen = 0, #ARGV[3]\n"
    "each(ARGV[3] .. '*', function(k)\n"
    "  if redis.call('EXISTS', k) == 1 then redis.call('RENAME', k, string.sub(k, plen + 1)); n = n + 1 end\n"
    "end)\n"
    "for i = 0, np - 1 do redis.call('HSET', KEYS[3], ARGV[6 + 2 * i], ARGV[7 + 2 * i]) end\n"
    "redis.call('HDEL', KEYS[1], ARGV[4])\n"
    "redis.call('HDEL', KEYS[2], ARGV[4])\n"
    "return n\n";

int wc_rshadow_swap(struct wc_shadow *sh, long long *keys, struct wc_err *err)
{
    if (sh->cluster)
        return wc_rcshadow_swap(sh, keys, err);
    char ck[200], ak[200], rk[300], np[16];
    int argc = 11 + 2 * sh->nprojection + sh->npattern, at = 11;
    const char **argv = calloc((size_t)argc, sizeof(char *));
    char(*fps)[17] = calloc((size_t)sh->nprojection + 1, sizeof(*fps));

    snprintf(ck, sizeof(ck), "walcast:cursor:%s", sh->cfg->slot);
    snprintf(ak, sizeof(ak), "walcast:applied:%s", sh->cfg->slot);
    wc_projections_redis_key(sh->cfg, sh->live, rk, sizeof(rk));
    snprintf(np, sizeof(np), "%d", sh->nprojection);
    argv[0] = "EVAL";
    argv[1] = SWAP_LUA;
    argv[2] = "3";
    argv[3] = ck;
    argv[4] = ak;
    argv[5] = rk;
    argv[6] = sh->live->name;
    argv[7] = sh->live_raw;
    argv[8] = sh->prefix;
    argv[9] = sh->sink_name;
    argv[10] = np;
    for (int i = 0; i < sh->nprojection; i++) {
        const struct wc_projection *p = wc_config_projection(sh->cfg, sh->projections[i]);
        if (p != NULL)
            wc_projection_fingerprint(sh->cfg, p, fps[i]);
        argv[at++] = sh->projections[i];
        argv[at++] = fps[i];
    }
    for (int i = 0; i < sh->npattern; i++)
        argv[at++] = sh->patterns[i];
    redisReply *r = cmd(sh, err, argc, argv);
    free(argv);
    free(fps);
    if (r == NULL)
        return -1;
    int rc = r->type == REDIS_REPLY_INTEGER && r->integer >= 0;
    *keys = rc ? r->integer : 0;
    freeReplyObject(r);
    return rc;
}

int wc_rshadow_pause(struct wc_shadow *sh, int pause, struct wc_err *err)
{
    if (sh->cluster)
        return wc_rcshadow_pause(sh, pause, err);
    const char *argv[4] = {"CLIENT", pause ? "PAUSE" : "UNPAUSE", "5000", "WRITE"};
    redisReply *r = cmd(sh, err, pause ? 4 : 2, argv);
    freeReplyObject(r);
    return r ? 0 : -1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A shadow key and the live name it stands for. */
struct named {
    const char *name;
    char *key;
};

static int cmp_named(const void *a, const void *b)
{
    return strcmp(((const struct named *)a)->name, ((const struct named *)b)->name);
}

/* A key's value as text that two equal values share: by type, members in a fixed order. */
static int canon(struct wc_shadow *sh, const char *key, struct wc_buf *b, struct wc_err *err)
{
    const char *targv[2] = {"TYPE", key};
    redisReply *t = cmd(sh, err, 2, targv), *r = NULL;
    if (t == NULL)
        return -1;
    wc_buf_reset(b);
    wc_buf_printf(b, "%s ", t->str);
    if (strcmp(t->str, "string") == 0) {
        const char *argv[2] = {"GET", key};
        r = cmd(sh, err, 2, argv);
    } else if (strcmp(t->str, "hash") == 0) {
        /* HGETALL's order depends on the encoding: sort field=value pairs. */
        const char *argv[2] = {"HGETALL", key};
        r = cmd(sh, err, 2, argv);
    } else if (strcmp(t->str, "zset") == 0) {
        const char *argv[5] = {"ZRANGE", key, "0", "-1", "WITHSCORES"};
        r = cmd(sh, err, 5, argv);
    } else if (strcmp(t->str, "set") == 0) {
        const char *argv[2] = {"SMEMBERS", key};
        r = cmd(sh, err, 2, argv);
    } else if (strcmp(t->str, "list") == 0) {
        const char *argv[4] = {"LRANGE", key, "0", "-1"};
        r = cmd(sh, err, 4, argv);
    } else {
        const char *argv[2] = {"DUMP", key};
        r = cmd(sh, err, 2, argv);
    }
    int hash = strcmp(t->str, "hash") == 0, set = strcmp(t->str, "set") == 0;
    freeReplyObject(t);
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_STRING) {
        wc_buf_printf(b, "%.*s", (int)r->len, r->str);
    } else if (r->type == REDIS_REPLY_ARRAY) {
        size_t n = r->elements, step = hash ? 2 : 1;
        char **items = calloc(n / step + 1, sizeof(char *));
        for (size_t i = 0; i + step <= n; i += step) {
            struct wc_buf one = WC_BUF_INIT;
            wc_buf_printf(&one, "%s", r->element[i]->str);
            if (hash)
                wc_buf_printf(&one, "=%s", r->element[i + 1]->str);
            items[i / step] = one.data ? one.data : strdup("");
        }
        if (hash || set)
            qsort(items, n / step, sizeof(char *), cmp_str);
        for (size_t i = 0; i < n / step; i++) {
            wc_buf_printf(b, "%s%s", i ? " " : "", items[i]);
            free(items[i]);
        }
        free(items);
    }
    freeReplyObject(r);
    return 0;
}

int wc_rshadow_compare(struct wc_shadow *sh, int examples, long long *drift, struct wc_err *err)
{
    struct wc_buf lv = WC_BUF_INIT, sv = WC_BUF_INIT;
    char **live = NULL, pattern[300];
    int nlive = 0, rc = -1, nshadow = 0;
    long long missing = 0, extra = 0, different = 0;
    size_t plen = strlen(sh->prefix);

    *drift = 0;
    if (sh->cluster) {
        /* Every slot's live cursor at or before the floor the shadow reached, or not now. */
        int level = wc_rcshadow_level(sh, sh->at, err);
        if (level <= 0)
            return level < 0 ? -1 : 2;
    }
    /* The live keys of the projection's patterns (walcast's own excluded). */
    for (int i = 0; i < sh->npattern; i++) {
        int n;
        char **k = scan(sh, sh->patterns[i], &n, err);
        if (k == NULL)
            goto done;
        live = realloc(live, (size_t)(nlive + n + 1) * sizeof(char *));
        for (int j = 0; j < n; j++)
            if (strncmp(k[j], "walcast:", 8) != 0)
                live[nlive++] = k[j];
            else
                free(k[j]);
        free(k);
    }
    if (live != NULL)
        qsort(live, (size_t)nlive, sizeof(char *), cmp_str);
    snprintf(pattern, sizeof(pattern), "%s*", sh->prefix);
    char **shadow = scan(sh, pattern, &nshadow, err);
    if (shadow == NULL)
        goto done;
    /* The shadow's keys by the live names they stand for (after the prefix, and a cluster's "{T}"). */
    struct named *sn = calloc((size_t)nshadow + 1, sizeof(*sn));
    for (int k = 0; k < nshadow; k++)
        sn[k] =
            (struct named){sh->cluster ? wc_rcshadow_live_name(sh, shadow[k]) : shadow[k] + plen, shadow[k]};
    qsort(sn, (size_t)nshadow, sizeof(*sn), cmp_named);
    /* Merge the two sorted lists. */
    int i = 0, j = 0;
    while (i < nlive || j < nshadow) {
        int c = i >= nlive ? 1 : j >= nshadow ? -1 : strcmp(live[i], sn[j].name);
        if (c < 0) {
            if (extra++ < examples)
                printf("  extra key (in the live keys, not in the rebuild): %s\n", live[i]);
            i++;
        } else if (c > 0) {
            if (missing++ < examples)
                printf("  missing key (in the rebuild, not in the live keys): %s\n", sn[j].name);
            j++;
        } else {
            if (canon(sh, live[i], &lv, err) < 0 || canon(sh, sn[j].key, &sv, err) < 0)
                goto done_shadow;
            if (strcmp(lv.data ? lv.data : "", sv.data ? sv.data : "") != 0 && different++ < examples)
                printf("  key %s differs:\n    live:    %.300s\n    rebuilt: %.300s\n", live[i], lv.data,
                       sv.data);
            i++;
            j++;
        }
    }
    printf("projection \"%s\": %d live keys, %d rebuilt: %lld missing, %lld extra, %lld different\n",
           sh->unit, nlive, nshadow, missing, extra, different);
    *drift = missing + extra + different;
    rc = 0;
done_shadow:
    free(sn);
    free_keys(shadow, nshadow);
done:
    free_keys(live, nlive);
    wc_buf_free(&lv);
    wc_buf_free(&sv);
    return rc;
}
