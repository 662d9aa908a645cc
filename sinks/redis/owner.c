/*
 * owner.c - the Redis sink's owner record: field <sink> of hash walcast:owner in the sink's database.
 * A sink rebuilt with FLUSHDB owns its whole database: another owner's record there is refused too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../owner.h"
#include "redis.h"

#define OWNER_KEY "walcast:owner"

static redisReply *run(struct wc_sink *s, struct redis_sink *p, int argc, const char **argv, const char *what,
                       struct wc_err *err)
{
    redisReply *r = redis_command(s, p, argc, argv, NULL, err);

    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        redis_reply_error(s, p, r, WC_ERR_DATA, what, err);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static int bad_record(struct wc_sink *s, const char *sink, struct wc_err *err)
{
    wc_err_set(err, WC_ERR_DATA,
               "sink \"%s\": field \"%s\" of hash \"" OWNER_KEY
               "\" is not an owner record written by walcast",
               s->name, sink);
    return -1;
}

static int redis_owner_read(struct wc_sink *s, struct wc_owner *out, int *found, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    const char *argv[3] = {"HGET", OWNER_KEY, s->name};
    redisReply *r;

    *found = 0;
    if (p == NULL)
        return redis_not_open(s, err);
    if ((r = run(s, p, 3, argv, "could not read the owner of the sink", err)) == NULL)
        return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_STRING) {
        *found = 1;
        if (wc_owner_decode(r->str, out) < 0)
            rc = bad_record(s, s->name, err);
    }
    freeReplyObject(r);
    return rc;
}

static int redis_owner_claim(struct wc_sink *s, const struct wc_owner *me, struct wc_owner *held,
                             struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    char *mine = wc_owner_encode(me);
    const char *set[4] = {"HSETNX", OWNER_KEY, s->name, mine};
    const char *all[2] = {"HGETALL", OWNER_KEY};
    redisReply *r;
    int rc = -1, found = 0;

    if (p == NULL) {
        free(mine);
        return redis_not_open(s, err);
    }
    if ((r = run(s, p, 4, set, "could not record the owner of the sink", err)) == NULL)
        goto done;
    freeReplyObject(r);
    if ((r = run(s, p, 2, all, "could not read the owners in the database", err)) == NULL)
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
        } else if (s->conf && s->conf->rebuild && !wc_owner_same(&o, me)) {
            /* FLUSHDB would wipe that sink's projections and cursor along with ours. */
            char other[300];
            wc_owner_describe(&o, other, sizeof(other));
            wc_err_set(err, WC_ERR_CONFIG,
                       "sink \"%s\": redis database %d at %s:%d also holds sink \"%s\" of %s, and "
                       "sinks.%s.rebuild (FLUSHDB) would wipe it: give each sink with a rebuild action a "
                       "database of its own",
                       s->name, p->db, p->host, p->port, sink, other, s->name);
            rc = -1;
        }
    }
    if (rc == 0 && !found) {
        /* Removed between the two commands (a FLUSHDB): nothing is recorded, nobody owns it; say so. */
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": its owner record vanished while it was claimed", s->name);
        rc = -1;
    }
    freeReplyObject(r);
done:
    free(mine);
    return rc;
}

static int redis_owner_release(struct wc_sink *s, const struct wc_owner *was, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    char *cursor_key = redis_xasprintf("walcast:cursor:%s", was->slot);
    char *applied_key = redis_xasprintf("walcast:applied:%s", was->slot);
    const char *multi[1] = {"MULTI"}, *exec[1] = {"EXEC"};
    const char *hdel_owner[3] = {"HDEL", OWNER_KEY, s->name};
    const char *hdel_cursor[3] = {"HDEL", cursor_key, s->name};
    /* The applied position goes with the cursor (read your writes waits again until the next owner's). */
    const char *hdel_applied[3] = {"HDEL", applied_key, s->name};
    redisReply *r;
    int rc = -1;

    if (p == NULL) {
        free(cursor_key);
        free(applied_key);
        return redis_not_open(s, err);
    }
    if ((r = run(s, p, 1, multi, "could not release the sink", err)) == NULL)
        goto done;
    freeReplyObject(r);
    if ((r = run(s, p, 3, hdel_owner, "could not release the sink", err)) == NULL)
        goto done;
    freeReplyObject(r);
    if ((r = run(s, p, 3, hdel_cursor, "could not release the sink", err)) == NULL)
        goto done;
    freeReplyObject(r);
    if ((r = run(s, p, 3, hdel_applied, "could not release the sink", err)) == NULL)
        goto done;
    freeReplyObject(r);
    if ((r = run(s, p, 1, exec, "could not release the sink", err)) == NULL)
        goto done;
    rc = r->type == REDIS_REPLY_ARRAY ? 0 : -1;
    if (rc < 0)
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\": the release was not applied", s->name);
    freeReplyObject(r);
done:
    free(cursor_key);
    free(applied_key);
    return rc;
}

const struct wc_owner_ops wc_redis_owner_ops = {
    .claim = redis_owner_claim,
    .read = redis_owner_read,
    .release = redis_owner_release,
};
