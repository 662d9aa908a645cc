/* csink.c - the Redis sink in a Redis Cluster: open (the map, every master's scripts), the cursors of every
 * hash slot and the loss check at start, commands routed by key or sent per slot (csink.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../owner.h"
#include "csink.h"
#include "walcast/log.h"

size_t cs_key(char *buf, const char *what, int slot, const char *rs, const char *suffix)
{
    int n = snprintf(buf, CS_KEYLEN, "walcast:%s:{%s}:%s%s%s", what, redis_cluster_slot_tag(slot), rs,
                     suffix ? ":" : "", suffix ? suffix : "");

    return n < 0 ? 0 : (size_t)n >= CS_KEYLEN ? CS_KEYLEN - 1 : (size_t)n;
}

void cs_format(struct wc_buf *b, int argc, const char **argv, const size_t *len)
{
    wc_buf_append(b, "*", 1);
    wc_buf_put_int(b, argc);
    wc_buf_append(b, "\r\n", 2);
    for (int i = 0; i < argc; i++) {
        size_t n = len ? len[i] : strlen(argv[i]);
        wc_buf_append(b, "$", 1);
        wc_buf_put_int(b, (long long)n);
        wc_buf_append(b, "\r\n", 2);
        wc_buf_append(b, argv[i], n);
        wc_buf_append(b, "\r\n", 2);
    }
}

/* The scripts every master must have before a unit goes there: the configuration's (loaded to check
 * them: they run inside the generated ones), the generated ones, the fixed ones. */
struct loadable {
    const char *src;
    char *sha; /* where the SHA goes, NULL: checked only */
    const struct wc_rule *rule;
    const struct wc_redis_cmd *cmd;
    const char *what;
};

/*
 * on_connect: load every script on a master's new connection in one MULTI/EXEC, so that its script cache
 * holds all of walcast's scripts or (after a SCRIPT FLUSH, a restart, a failover) none: a unit's EVALSHAs
 * then all run, or all fail with NOSCRIPT and the unit did nothing (loaded again, sent again).
 */
static int load_scripts(struct redis_cluster *cl, redisContext *c, const char *host, int port, void *arg,
                        struct wc_err *err)
{
    struct wc_sink *s = arg;
    struct redis_sink *p = s->priv;
    const struct wc_sink_conf *conf = s->conf;
    struct loadable *l;
    int n = 0, cap = p->ngen + NFIXED, rc = -1;
    static const char *const fixed_what[NFIXED] = {"the dead-letter script", "the cursor script",
                                                   "the guard script"};
    redisReply *r = NULL;

    (void)cl;
    for (int i = 0; i < conf->nrule; i++)
        cap += conf->rules[i].ncmd;
    l = wc_xcalloc((size_t)cap + 1, sizeof(*l));
    for (int i = 0; i < conf->nrule; i++)
        for (int j = 0; j < conf->rules[i].ncmd; j++)
            if (conf->rules[i].cmds[j].script != NULL)
                l[n++] = (struct loadable){conf->rules[i].cmds[j].script, NULL, &conf->rules[i],
                                           &conf->rules[i].cmds[j], NULL};
    for (int i = 0; i < p->ngen; i++)
        l[n++] = (struct loadable){p->gens[i].src, p->gens[i].sha, NULL, NULL, p->gens[i].event_type};
    for (int i = 0; i < NFIXED; i++)
        l[n++] = (struct loadable){redis_fixed_script(i), p->fixed_sha[i], NULL, NULL, fixed_what[i]};

    if (redisAppendCommand(c, "MULTI") != REDIS_OK)
        goto lost;
    for (int i = 0; i < n; i++) {
        const char *argv[3] = {"SCRIPT", "LOAD", l[i].src};
        size_t len[3] = {6, 4, strlen(l[i].src)};
        if (redisAppendCommandArgv(c, 3, argv, len) != REDIS_OK)
            goto lost;
    }
    if (redisAppendCommand(c, "EXEC") != REDIS_OK)
        goto lost;
    for (int i = 0; i < n + 2; i++) {
        if (r != NULL)
            freeReplyObject(r);
        r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL)
            goto lost;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)n) {
        wc_err_set(
            err, r->type == REDIS_REPLY_ERROR && redis_transient_error(r->str) ? WC_ERR_IO : WC_ERR_PROTOCOL,
            "sink \"%s\": could not load walcast's scripts on redis cluster node %s:%d: %s", s->name, host,
            port, r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply to EXEC");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_ERROR) {
            if (l[i].cmd != NULL)
                wc_err_set(err, redis_transient_error(e->str) ? WC_ERR_IO : WC_ERR_CONFIG,
                           "sink \"%s\": projection \"%s\": script at line %d: could not load it: %s",
                           s->name, l[i].rule->projection, l[i].cmd->line, e->str);
            else
                wc_err_set(err, redis_transient_error(e->str) ? WC_ERR_IO : WC_ERR_INTERNAL,
                           "sink \"%s\": could not load %s%s%s: %s", s->name,
                           i < n - NFIXED ? "the script of event type \"" : "", l[i].what,
                           i < n - NFIXED ? "\"" : "", e->str);
            goto done;
        }
        if (e->type != REDIS_REPLY_STRING || e->len != 40) {
            wc_err_set(err, WC_ERR_PROTOCOL, "sink \"%s\": unexpected reply to SCRIPT LOAD from %s:%d",
                       s->name, host, port);
            goto done;
        }
        if (l[i].sha != NULL) {
            memcpy(l[i].sha, e->str, 40);
            l[i].sha[40] = '\0';
        }
    }
    wc_debug("sink \"%s\": %d scripts loaded on redis cluster node %s:%d", s->name, n, host, port);
    rc = 0;
    goto done;
lost:
    wc_err_set(err, WC_ERR_IO, "sink \"%s\": lost connection to redis cluster node %s:%d: %s", s->name, host,
               port, c->errstr[0] ? c->errstr : "connection closed");
done:
    if (r != NULL)
        freeReplyObject(r);
    free(l);
    return rc;
}

static void cs_close(struct wc_sink *s)
{
    struct redis_sink *p = s->priv;
    struct csink *cs;

    if (p == NULL)
        return;
    cs = p->cs;
    if (cs != NULL) {
        redis_cluster_free(cs->cl);
        free(cs->dir_key);
        free(cs->skip);
        free(cs->acked);
        cs_batch_free(&cs->bufs[0]);
        cs_batch_free(&cs->bufs[1]);
        free(cs->jobs);
        free(cs->replies);
        wc_buf_free(&cs->wire);
        free(cs->slot_of);
        free(cs->parts);
        free(cs->mask);
        free(cs->keyoff);
        free(cs->keylen);
        free(cs->valoff);
        free(cs->vallen);
        for (int i = 0; cs->keys && i < REDIS_CLUSTER_SLOTS; i++)
            free(cs->keys[i]);
        free(cs->keys);
        free(cs);
        p->cs = NULL;
    }
    redis_close(s);
}

/*
 * Read the map, connect to every master and load the scripts there. A cluster that cannot be reached or
 * is not ready yet is WC_ERR_IO (retried); a dsn that is not a cluster's, bad credentials or a script that
 * does not compile is WC_ERR_CONFIG.
 */
static int cs_open(struct wc_sink *s, struct wc_err *err)
{
    struct redis_sink *p;
    struct csink *cs;
    char key[CS_KEYLEN];

    if (s->priv != NULL)
        cs_close(s);
    p = wc_xcalloc(1, sizeof(*p));
    cs = wc_xcalloc(1, sizeof(*cs));
    p->cs = cs;
    s->priv = p;
    cs->rs = s->cfg && s->cfg->slot ? s->cfg->slot : "walcast";
    cs->home = redis_cluster_keyslot(cs->rs, strlen(cs->rs));
    cs_key(key, "directory", cs->home, cs->rs, NULL);
    cs->dir_key = wc_xstrdup(key);
    cs->skip = wc_xcalloc(REDIS_CLUSTER_SLOTS, sizeof(*cs->skip));
    cs->acked = wc_xcalloc(REDIS_CLUSTER_SLOTS, sizeof(*cs->acked));
    for (int i = 0; i < REDIS_CLUSTER_SLOTS; i++)
        cs->skip[i] = cs->acked[i] = WC_POS_NONE;
    cs->floor = WC_POS_NONE;
    cs->retry_slot = -1;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < REDIS_CLUSTER_SLOTS; i++)
            cs->bufs[k].unit_of[i] = -1;
    cs->b = &cs->bufs[0];
    cs->cb = &cs->bufs[1];
    if ((cs->cl = redis_cluster_new(s->name, s->conf ? s->conf->dsn : NULL, err)) == NULL)
        goto fail;
    cs->cl->on_connect = load_scripts;
    cs->cl->on_connect_arg = s;
    if (s->conf)
        redis_gen_make(s, p);
    if (redis_cluster_ready_all(cs->cl, err) < 0)
        goto fail;
    wc_debug("sink \"%s\": connected to a redis cluster of %d masters", s->name, cs->cl->map.nnode);
    return 0;

fail:
    cs_close(s);
    return -1;
}

redisReply *cs_command_in(struct wc_sink *s, int slot, int argc, const char **argv, const size_t *len,
                          struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    struct wc_buf b = WC_BUF_INIT;
    redisReply *r = NULL;

    cs_format(&b, argc, argv, len);
    if (redis_cluster_pipeline(p->cs->cl, slot, b.data, b.len, 1, &r, err) < 0)
        r = NULL;
    wc_buf_free(&b);
    return r;
}

redisReply *cs_command(struct wc_sink *s, int argc, const char **argv, const size_t *len, struct wc_err *err)
{
    return cs_command_in(s, redis_cluster_keyslot(argv[1], len ? len[1] : strlen(argv[1])), argc, argv, len,
                         err);
}

/* Slots per round of cs_per_slot: a few hundred commands in flight per master, and little memory. */
#define PER_SLOT_CHUNK 2048

int cs_per_slot(struct wc_sink *s, const int *slots, int n,
                void (*fmt)(struct wc_buf *b, int slot, void *arg), void *arg, redisReply **replies,
                struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    struct wc_buf b = WC_BUF_INIT;
    int chunk = n < PER_SLOT_CHUNK ? n : PER_SLOT_CHUNK;
    struct redis_cluster_job *jobs = wc_xcalloc((size_t)chunk + 1, sizeof(*jobs));
    size_t *off = wc_xcalloc((size_t)chunk + 1, sizeof(*off));
    int rc = 0;

    for (int i = 0; i < n; i++)
        replies[i] = NULL;
    for (int at = 0; at < n && rc == 0; at += chunk) {
        int m = n - at < chunk ? n - at : chunk;
        wc_buf_reset(&b);
        for (int i = 0; i < m; i++) {
            off[i] = b.len;
            fmt(&b, slots[at + i], arg);
        }
        off[m] = b.len;
        for (int i = 0; i < m; i++)
            jobs[i] = (struct redis_cluster_job){.slot = slots[at + i],
                                                 .cmds = b.data + off[i],
                                                 .len = off[i + 1] - off[i],
                                                 .ncmd = 1,
                                                 .replies = &replies[at + i]};
        rc = redis_cluster_run(p->cs->cl, jobs, m, err);
    }
    if (rc < 0)
        for (int i = 0; i < n; i++)
            if (replies[i] != NULL) {
                freeReplyObject(replies[i]);
                replies[i] = NULL;
            }
    free(jobs);
    free(off);
    wc_buf_free(&b);
    return rc;
}

static void fmt_hget_cursor(struct wc_buf *b, int slot, void *arg)
{
    struct wc_sink *s = arg;
    struct redis_sink *p = s->priv;
    char key[CS_KEYLEN];
    const char *argv[3] = {"HGET", key, s->name};
    size_t len[3] = {4, cs_key(key, "cursor", slot, p->cs->rs, NULL), strlen(s->name)};

    cs_format(b, 3, argv, len);
}

void cs_remember_masters(struct csink *cs)
{
    cs->nid = 0;
    for (int i = 0; i < cs->cl->map.nnode && cs->nid < 8; i++)
        snprintf(cs->ids[cs->nid++], sizeof(cs->ids[0]), "%s", cs->cl->map.nodes[i].id);
}

int cs_read_cursors(struct wc_sink *s, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    struct csink *cs = p->cs;
    int *slots = wc_xcalloc(REDIS_CLUSTER_SLOTS, sizeof(int));
    redisReply **rep = wc_xcalloc(REDIS_CLUSTER_SLOTS, sizeof(*rep));
    int rc = 0;

    for (int i = 0; i < REDIS_CLUSTER_SLOTS; i++)
        slots[i] = i;
    if (cs_per_slot(s, slots, REDIS_CLUSTER_SLOTS, fmt_hget_cursor, s, rep, err) < 0) {
        wc_err_prefix(err, "could not read the cursors of sink \"%s\"", s->name);
        rc = -1;
    }
    for (int i = 0; i < REDIS_CLUSTER_SLOTS && rc == 0; i++) {
        const redisReply *r = rep[i];
        cs->skip[i] = WC_POS_NONE;
        if (r->type == REDIS_REPLY_NIL)
            continue;
        if (r->type == REDIS_REPLY_ERROR) {
            wc_err_set(err, redis_transient_error(r->str) ? WC_ERR_IO : WC_ERR_DATA,
                       "sink \"%s\": could not read the cursor of redis cluster hash slot %d: %s", s->name, i,
                       r->str);
            rc = -1;
        } else if (r->type != REDIS_REPLY_STRING || wc_pos_parse(r->str, &cs->skip[i]) < 0) {
            char key[CS_KEYLEN];
            cs_key(key, "cursor", i, cs->rs, NULL);
            wc_err_set(err, WC_ERR_DATA, "sink \"%s\": invalid cursor \"%.64s\" in hash \"%s\"", s->name,
                       r->type == REDIS_REPLY_STRING ? r->str : "?", key);
            rc = -1;
        }
    }
    for (int i = 0; i < REDIS_CLUSTER_SLOTS; i++) {
        if (rep[i] != NULL)
            freeReplyObject(rep[i]);
        if (rc < 0)
            cs->skip[i] = WC_POS_NONE;
        cs->acked[i] = cs->skip[i];
    }
    free(rep);
    free(slots);
    cs->read = rc == 0;
    if (rc == 0)
        cs_remember_masters(cs);
    return rc;
}

/* "host:port" of the master of slot per the map, for messages. */
static void master_name(struct csink *cs, int slot, char *buf, size_t size)
{
    int i = cs->cl->map.owner[slot];

    if (i < 0)
        snprintf(buf, size, "no master");
    else
        snprintf(buf, size, "master %s:%d", cs->cl->map.nodes[i].host, cs->cl->map.nodes[i].port);
}

/*
 * The directory (the floor, the state, each slot's cursor as last recorded) and every slot's cursor. A slot
 * whose cursor is behind what the directory recorded lost acknowledged writes; so did the sink when its
 * directory is gone but slots have cursors; a reset left half done is finished by a rebuild. With a rebuild
 * action the sink then says it has no cursor (the engine rebuilds it); without one, WC_ERR_DATA.
 */
static int cs_read_cursor(struct wc_sink *s, struct wc_pos *out, int *found, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    struct csink *cs;
    const char *argv[2];
    redisReply *r;
    struct wc_pos *dir = NULL;
    size_t sl = strlen(s->name);
    int rebuilding = 0, have_floor = 0, rc = -1, lost = 0, first = -1, any = 0;
    char why[1024] = "", a[40], b[40], m[300];

    *out = WC_POS_NONE;
    *found = 0;
    if (p == NULL || p->cs == NULL || cs_broken(p->cs))
        return redis_not_open(s, err);
    cs = p->cs;
    argv[0] = "HGETALL";
    argv[1] = cs->dir_key;
    if ((r = cs_command(s, 2, argv, NULL, err)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ERROR) {
        wc_err_set(err, redis_transient_error(r->str) ? WC_ERR_IO : WC_ERR_DATA,
                   "sink \"%s\": could not read its directory \"%s\": %s", s->name, cs->dir_key, r->str);
        goto done;
    }
    dir = wc_xcalloc(REDIS_CLUSTER_SLOTS, sizeof(*dir));
    for (int i = 0; i < REDIS_CLUSTER_SLOTS; i++)
        dir[i] = WC_POS_NONE;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const char *f = r->element[i]->str, *v = r->element[i + 1]->str;
        struct wc_pos pos;
        if (f == NULL || v == NULL || strncmp(f, s->name, sl) != 0 || f[sl] != ':')
            continue;
        f += sl + 1;
        if (strcmp(f, "state") == 0) {
            rebuilding = strcmp(v, "rebuilding") == 0;
            continue;
        }
        if (wc_pos_parse(v, &pos) < 0) {
            wc_err_set(err, WC_ERR_DATA,
                       "sink \"%s\": invalid position \"%.64s\" in field \"%s:%s\" of hash \"%s\"", s->name,
                       v, s->name, f, cs->dir_key);
            goto done;
        }
        if (strcmp(f, "floor") == 0) {
            cs->floor = pos;
            have_floor = 1;
        } else {
            char *end;
            long slot = strtol(f, &end, 10);
            if (*f != '\0' && *end == '\0' && slot >= 0 && slot < REDIS_CLUSTER_SLOTS)
                dir[slot] = pos;
        }
    }
    if (cs_read_cursors(s, err) < 0)
        goto done;
    for (int i = 0; i < REDIS_CLUSTER_SLOTS; i++) {
        any |= cs->acked[i].index != WC_POS_NONE.index || cs->acked[i].lsn != 0;
        if (dir[i].lsn == 0 && dir[i].index == -1)
            continue;
        if (wc_pos_cmp(cs->acked[i], dir[i]) < 0) {
            if (lost++ == 0)
                first = i;
        }
    }
    if (rebuilding) {
        snprintf(
            why, sizeof(why),
            "sink \"%s\": a rebuild of the redis cluster was interrupted before every master was flushed",
            s->name);
    } else if (lost > 0) {
        master_name(cs, first, m, sizeof(m));
        snprintf(why, sizeof(why),
                 "sink \"%s\": redis cluster hash slot %d (%s) lost acknowledged writes: its cursor is %s, "
                 "walcast had "
                 "stored %s there (a failover to a replica that had not received them?)%s",
                 s->name, first, m,
                 cs->acked[first].lsn || cs->acked[first].index != -1 ? wc_pos_format(cs->acked[first], a)
                                                                      : "none",
                 wc_pos_format(dir[first], b), lost > 1 ? "" : "");
        if (lost > 1) {
            size_t n = strlen(why);
            snprintf(why + n, sizeof(why) - n, "; %d hash slots in all", lost);
        }
    } else if (!have_floor && any) {
        snprintf(why, sizeof(why),
                 "sink \"%s\": its directory \"%s\" is gone while hash slots have cursors (lost by the "
                 "master of hash "
                 "slot %d?)",
                 s->name, cs->dir_key, cs->home);
    }
    if (why[0] != '\0') {
        if (s->conf && s->conf->rebuild) {
            wc_warning("%s: rebuilding it", why);
            rc = 0; /* no cursor: the engine rebuilds it */
            goto done;
        }
        wc_err_set(err, WC_ERR_DATA,
                   "%s; set sinks.%s.rebuild: flushdb to rebuild it from the outbox table, or "
                   "rebuild it by hand",
                   why, s->name);
        goto done;
    }
    if (have_floor) {
        *out = cs->floor;
        *found = 1;
    }
    rc = 0;
done:
    free(dir);
    freeReplyObject(r);
    return rc;
}

const struct wc_sink_ops wc_sink_redis_cluster_ops = {
    .type = "redis",
    .open = cs_open,
    .read_cursor = cs_read_cursor,
    .apply = cs_apply,
    .dead_letter = cs_dead_letter,
    .commit = cs_commit,
    .detach = cs_detach,
    .commit_detached = cs_commit_detached,
    .close = cs_close,
    .reset = cs_reset,
    .dlq = &cs_dlq_ops,
    .owner = &cs_owner_ops,
};
