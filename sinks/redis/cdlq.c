/*
 * cdlq.c - the Redis Cluster sink's dead letters (one stream per hash slot; `walcast dlq` ids are
 * "<slot>-<stream id>"), its owner records (hash walcast:owner, as one Redis has it) and what its masters
 * say about themselves (walcast doctor, status, the metrics poller).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../owner.h"
#include "csink.h"
#include "walcast/probe.h"

#define OWNER_KEY "walcast:owner"

/* ---- dead letters ---- */

/* What fetch() hands out: the replies the texts are borrowed from, and the ids it made. */
struct hold {
    redisReply **rep;
    int nrep;
    char **ids;
    int nid;
};

static void fmt_xrange(struct wc_buf *b, int slot, void *arg)
{
    struct wc_sink *s = arg;
    char key[CS_KEYLEN];
    const char *argv[4] = {"XRANGE", key, "-", "+"};
    size_t len[4] = {6, cs_key(key, "dead_letters", slot, ((struct redis_sink *)s->priv)->cs->rs, NULL), 1,
                     1};

    cs_format(b, 4, argv, len);
}

/* The slots whose streams may hold the sink's dead letters: those it has written (it has a cursor there),
 * and the home slot. Returns how many (slots: REDIS_CLUSTER_SLOTS entries). */
static int written_slots(struct csink *cs, int *slots)
{
    int n = 0;

    for (int i = 0; i < REDIS_CLUSTER_SLOTS; i++)
        if (cs->acked[i].lsn != 0 || cs->acked[i].index != -1 || i == cs->home)
            slots[n++] = i;
    return n;
}

/* The sink's dead letters: one stream (id "<slot>-<stream id>"), or the streams of every slot it wrote. */
static int dlq_fetch(struct wc_sink *s, const char *id, struct wc_dead_letter **out, int *n, void **hold,
                     struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    struct csink *cs;
    struct hold *h;
    int *slots, nslot = 0, total = 0;

    if (p == NULL || p->cs == NULL || cs_broken(p->cs))
        return redis_not_open(s, err);
    cs = p->cs;
    slots = wc_xcalloc(REDIS_CLUSTER_SLOTS, sizeof(int));
    char sid[128] = "";
    if (id != NULL) {
        char *end;
        long slot = strtol(id, &end, 10);
        if (end == id || *end != '-' || slot < 0 || slot >= REDIS_CLUSTER_SLOTS) {
            free(slots);
            wc_err_set(
                err, WC_ERR_USAGE,
                "sink \"%s\": dead letter id \"%.64s\" is not <hash slot>-<stream id> (as walcast dlq list "
                "shows it in a redis cluster)",
                s->name, id);
            return -1;
        }
        slots[nslot++] = (int)slot;
        snprintf(sid, sizeof(sid), "%s", end + 1);
    } else {
        if (!cs->read && cs_read_cursors(s, err) < 0) {
            free(slots);
            return -1;
        }
        nslot = written_slots(cs, slots);
    }
    h = wc_xcalloc(1, sizeof(*h));
    h->rep = wc_xcalloc((size_t)nslot + 1, sizeof(*h->rep));
    h->nrep = nslot;
    if (id != NULL) {
        char key[CS_KEYLEN];
        const char *argv[4] = {"XRANGE", key, sid, sid};
        cs_key(key, "dead_letters", slots[0], cs->rs, NULL);
        if ((h->rep[0] = cs_command(s, 4, argv, NULL, err)) == NULL)
            goto fail;
    } else if (cs_per_slot(s, slots, nslot, fmt_xrange, s, h->rep, err) < 0) {
        goto fail;
    }
    for (int i = 0; i < nslot; i++) {
        if (h->rep[i]->type == REDIS_REPLY_ERROR) {
            wc_err_set(err, redis_transient_error(h->rep[i]->str) ? WC_ERR_IO : WC_ERR_DATA,
                       "sink \"%s\": could not read the dead letters of hash slot %d: %s", s->name, slots[i],
                       h->rep[i]->str);
            goto fail;
        }
        if (h->rep[i]->type == REDIS_REPLY_ARRAY)
            total += (int)h->rep[i]->elements;
    }
    *n = 0;
    *out = wc_xcalloc((size_t)total + 1, sizeof(**out));
    h->ids = wc_xcalloc((size_t)total + 1, sizeof(char *));
    for (int i = 0; i < nslot; i++)
        for (size_t j = 0; h->rep[i]->type == REDIS_REPLY_ARRAY && j < h->rep[i]->elements; j++) {
            struct wc_dead_letter *dl = &(*out)[*n];
            if (redis_dl_entry(s, h->rep[i]->element[j], dl) < 0)
                continue;
            if (asprintf(&h->ids[h->nid], "%d-%s", slots[i], dl->id) < 0)
                abort();
            dl->id = h->ids[h->nid++];
            (*n)++;
        }
    *hold = h;
    free(slots);
    return 0;

fail:
    for (int i = 0; i < h->nrep; i++)
        if (h->rep[i] != NULL)
            freeReplyObject(h->rep[i]);
    free(h->rep);
    free(h);
    free(slots);
    return -1;
}

static void dlq_release(struct wc_dead_letter *dl, void *hold)
{
    struct hold *h = hold;

    free(dl);
    for (int i = 0; i < h->nrep; i++)
        if (h->rep[i] != NULL)
            freeReplyObject(h->rep[i]);
    for (int i = 0; i < h->nid; i++)
        free(h->ids[i]);
    free(h->rep);
    free(h->ids);
    free(h);
}

static void dlq_discard(struct wc_sink *s)
{
    struct redis_sink *p = s->priv;

    if (p != NULL && p->cs != NULL)
        cs_batch_reset(p->cs->b);
}

/* apply() queues the dead letter's part (its mask) in retry mode; the commit removes it once every part has
 * taken effect. */
static void dlq_prepare(struct wc_sink *s, const struct wc_dead_letter *dl)
{
    struct redis_sink *p = s->priv;
    const char *dash = strchr(dl->id, '-');

    p->cs->retry_slot = atoi(dl->id);
    p->retry_id = dash ? dash + 1 : dl->id;
    p->cs->retry_mask = dl->mask;
    p->retry_replaced = 0;
}

static void dlq_queue_removal(struct wc_sink *s, const struct wc_dead_letter *dl)
{
    (void)s;
    (void)dl;
}

/* The dead letter failed again: it stays where it is, unless a part of it took effect part way (that part
 * left a dead letter of its own saying so) or it was removed meanwhile (it is written back). */
static int dlq_still_failing(struct wc_sink *s, const struct wc_dead_letter *dl, const char *msg,
                             struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    struct csink *cs = p->cs;
    char key[CS_KEYLEN];
    const char *sid = strchr(dl->id, '-') ? strchr(dl->id, '-') + 1 : dl->id;
    const char *chk[4] = {"XRANGE", key, sid, sid};

    if (p->retry_replaced)
        return 0;
    cs_key(key, "dead_letters", atoi(dl->id), cs->rs, NULL);
    redisReply *c = cs_command(s, 4, chk, NULL, err);
    if (c == NULL)
        return -1;
    int gone = c->type == REDIS_REPLY_ARRAY && c->elements == 0;
    freeReplyObject(c);
    if (!gone)
        return 0;
    const char *add[25] = {
        "XADD", key, "*", "sink", s->name, "lsn", dl->lsn ? dl->lsn : "", "idx", dl->idx ? dl->idx : ""};
    int argc = 9;
    for (int i = 0; i < DL_NCOLS; i++) {
        add[argc++] = wc_dl_col_names[i];
        add[argc++] = dl->col[i] ? dl->col[i] : "";
    }
    add[argc++] = "error";
    add[argc++] = msg;
    if (dl->mask) {
        add[argc++] = "mask";
        add[argc++] = dl->mask;
    }
    c = cs_command(s, argc, add, NULL, err);
    if (c == NULL)
        return -1;
    freeReplyObject(c);
    return 0;
}

const struct wc_dlq_ops cs_dlq_ops = {
    .action = "command",
    .fetch = dlq_fetch,
    .release = dlq_release,
    .prepare = dlq_prepare,
    .discard = dlq_discard,
    .queue_removal = dlq_queue_removal,
    .still_failing = dlq_still_failing,
};

/* ---- owner records ---- */

static redisReply *run_in(struct wc_sink *s, int slot, int argc, const char **argv, const char *what,
                          struct wc_err *err)
{
    redisReply *r = cs_command_in(s, slot, argc, argv, NULL, err);

    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        wc_err_set(err, redis_transient_error(r->str) ? WC_ERR_IO : WC_ERR_DATA, "sink \"%s\": %s: %s",
                   s->name, what, r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static redisReply *run(struct wc_sink *s, int argc, const char **argv, const char *what, struct wc_err *err)
{
    return run_in(s, redis_cluster_keyslot(argv[1], strlen(argv[1])), argc, argv, what, err);
}

static int bad_record(struct wc_sink *s, const char *sink, struct wc_err *err)
{
    wc_err_set(err, WC_ERR_DATA,
               "sink \"%s\": field \"%s\" of hash \"" OWNER_KEY
               "\" is not an owner record written by walcast",
               s->name, sink);
    return -1;
}

static int owner_read(struct wc_sink *s, struct wc_owner *out, int *found, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    const char *argv[3] = {"HGET", OWNER_KEY, s->name};
    redisReply *r;
    int rc = 0;

    *found = 0;
    if (p == NULL || p->cs == NULL)
        return redis_not_open(s, err);
    if ((r = run(s, 3, argv, "could not read the owner of the sink", err)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_STRING) {
        *found = 1;
        if (wc_owner_decode(r->str, out) < 0)
            rc = bad_record(s, s->name, err);
    }
    freeReplyObject(r);
    return rc;
}

/* As one Redis claims (sinks/redis/owner.c), and: a sink with a rebuild action (FLUSHDB of every master)
 * refuses a cluster that holds any other sink, of any owner. */
static int owner_claim(struct wc_sink *s, const struct wc_owner *me, struct wc_owner *held,
                       struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    char *mine = wc_owner_encode(me);
    const char *set[4] = {"HSETNX", OWNER_KEY, s->name, mine};
    const char *all[2] = {"HGETALL", OWNER_KEY};
    redisReply *r;
    int rc = -1, found = 0;

    if (p == NULL || p->cs == NULL) {
        free(mine);
        return redis_not_open(s, err);
    }
    if ((r = run(s, 4, set, "could not record the owner of the sink", err)) == NULL)
        goto done;
    freeReplyObject(r);
    if ((r = run(s, 2, all, "could not read the owners in the redis cluster", err)) == NULL)
        goto done;
    rc = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements && rc == 0; i += 2) {
        const char *sink = r->element[i]->str, *text = r->element[i + 1]->str;
        struct wc_owner o;
        if (sink == NULL || text == NULL)
            continue;
        if (wc_owner_decode(text, &o) < 0) {
            rc = bad_record(s, sink, err);
        } else if (strcmp(sink, s->name) == 0) {
            *held = o;
            found = 1;
        } else if (s->conf && s->conf->rebuild) {
            char other[300];
            wc_owner_describe(&o, other, sizeof(other));
            wc_err_set(
                err, WC_ERR_CONFIG,
                "sink \"%s\": the redis cluster also holds sink \"%s\" of %s, and sinks.%s.rebuild (FLUSHDB "
                "of every master) would wipe it: give each sink with a rebuild action a cluster of its own "
                "(or remove a stale record with walcast sink release --sink %s)",
                s->name, sink, other, s->name, sink);
            rc = -1;
        }
    }
    if (rc == 0 && !found) {
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": its owner record vanished while it was claimed", s->name);
        rc = -1;
    }
    freeReplyObject(r);
done:
    free(mine);
    return rc;
}

static void fmt_hdel_cursor(struct wc_buf *b, int slot, void *arg)
{
    const char *const *a = arg; /* sink, replication slot */
    char key[CS_KEYLEN];
    const char *argv[3] = {"HDEL", key, a[0]};
    size_t len[3] = {4, cs_key(key, "cursor", slot, a[1], NULL), strlen(a[0])};

    cs_format(b, 3, argv, len);
}

/* Remove the sink's cursor in every slot and its directory entries (was->slot's keys), then its owner
 * record: not one atomic unit in a cluster, so in that order (a release cut short leaves the owner, and is
 * run again). */
static int owner_release(struct wc_sink *s, const struct wc_owner *was, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    static const char prune[] =
        "local n = 0\n"
        "for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do\n"
        "  if string.sub(f, 1, #ARGV[1]) == ARGV[1] then n = n + redis.call('HDEL', KEYS[1], f) end\n"
        "end\n"
        "return n\n";
    char dir[CS_KEYLEN], prefix[128];
    const char *names[2] = {s->name, was->slot};
    const char *ev[5] = {"EVAL", prune, "1", dir, prefix};
    const char *hdel[3] = {"HDEL", OWNER_KEY, s->name};
    int *slots, rc = -1;
    redisReply **rep, *r;

    if (p == NULL || p->cs == NULL)
        return redis_not_open(s, err);
    slots = wc_xcalloc(REDIS_CLUSTER_SLOTS, sizeof(int));
    rep = wc_xcalloc(REDIS_CLUSTER_SLOTS, sizeof(*rep));
    for (int i = 0; i < REDIS_CLUSTER_SLOTS; i++)
        slots[i] = i;
    if (cs_per_slot(s, slots, REDIS_CLUSTER_SLOTS, fmt_hdel_cursor, (void *)names, rep, err) < 0)
        goto done;
    for (int i = 0; i < REDIS_CLUSTER_SLOTS; i++)
        freeReplyObject(rep[i]);
    int home = redis_cluster_keyslot(was->slot, strlen(was->slot));
    cs_key(dir, "directory", home, was->slot, NULL);
    snprintf(prefix, sizeof(prefix), "%s:", s->name);
    if ((r = run_in(s, home, 5, ev, "could not release the sink", err)) == NULL)
        goto done;
    freeReplyObject(r);
    if ((r = run(s, 3, hdel, "could not release the sink", err)) == NULL)
        goto done;
    freeReplyObject(r);
    rc = 0;
done:
    free(slots);
    free(rep);
    return rc;
}

const struct wc_owner_ops cs_owner_ops = {
    .claim = owner_claim,
    .read = owner_read,
    .release = owner_release,
};
