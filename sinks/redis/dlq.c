/* dlq.c - the Redis sink's dead-letter stream for `walcast dlq list|retry` (sinks/dlq.c drives). */
#include <stdlib.h>
#include <string.h>

#include "redis.h"

int redis_dl_entry(struct wc_sink *s, redisReply *entry, struct wc_dead_letter *dl)
{
    const char *sink = NULL;

    memset(dl, 0, sizeof(*dl));
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
        entry->element[0]->type != REDIS_REPLY_STRING || entry->element[1]->type != REDIS_REPLY_ARRAY)
        return -1;
    dl->id = entry->element[0]->str;
    redisReply *f = entry->element[1];
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const char *k = f->element[i]->str, *v = f->element[i + 1]->str;
        if (k == NULL || v == NULL)
            continue;
        if (strcmp(k, "sink") == 0)
            sink = v;
        else if (strcmp(k, "lsn") == 0)
            dl->lsn = v;
        else if (strcmp(k, "idx") == 0)
            dl->idx = v;
        else if (strcmp(k, "error") == 0)
            dl->error = v;
        else if (strcmp(k, "applied") == 0)
            dl->applied = v;
        else if (strcmp(k, "mask") == 0)
            dl->mask = v;
        else
            for (int c = 0; c < DL_NCOLS; c++)
                if (strcmp(k, wc_dl_col_names[c]) == 0)
                    dl->col[c] = *v ? v : NULL;
    }
    return sink && strcmp(sink, s->name) == 0 ? 0 : -1;
}

/* The sink's dead letters: XRANGE of the slot's stream, entries of this sink (id NULL = all). */
static int dlq_fetch(struct wc_sink *s, const char *id, struct wc_dead_letter **out, int *n, void **hold,
                     struct wc_err *err)
{
    struct redis_sink *p = s->priv;

    if (p == NULL)
        return redis_not_open(s, err);
    const char *argv[] = {"XRANGE", p->dead_key, id ? id : "-", id ? id : "+"};
    redisReply *r = redis_command(s, p, 4, argv, NULL, err);
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ERROR) {
        redis_reply_error(s, p, r, WC_ERR_DATA, "could not read the dead letters", err);
        freeReplyObject(r);
        return -1;
    }
    *n = 0;
    *out = wc_xcalloc(r->type == REDIS_REPLY_ARRAY ? r->elements : 1, sizeof(**out));
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        if (redis_dl_entry(s, r->element[i], &(*out)[*n]) == 0)
            (*n)++;
    *hold = r;
    return 0;
}

static void dlq_release(struct wc_dead_letter *dl, void *hold)
{
    free(dl);
    freeReplyObject(hold);
}

static void dlq_discard(struct wc_sink *s)
{
    struct redis_sink *p = s->priv;

    redis_batch_reset(p->b);
}

/* The event's script removes the dead letter it comes from when it applies (retry mode): nothing to
 * queue; prepare() tells apply() which one. */
static void dlq_prepare(struct wc_sink *s, const struct wc_dead_letter *dl)
{
    struct redis_sink *p = s->priv;

    p->retry_id = dl->id;
    p->retry_replaced = 0;
}

static void dlq_queue_removal(struct wc_sink *s, const struct wc_dead_letter *dl)
{
    (void)s;
    (void)dl;
}

/*
 * The script left a dead letter that still fails where it was (its checks failed: it wrote nothing), or
 * replaced it by one that records a partial application. A dead letter gone otherwise (removed by hand
 * meanwhile) is written back with the new error.
 */
static int dlq_still_failing(struct wc_sink *s, const struct wc_dead_letter *dl, const char *msg,
                             struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    const char *chk[] = {"XRANGE", p->dead_key, dl->id, dl->id};

    if (p->retry_replaced)
        return 0;
    redisReply *c = redis_command(s, p, 4, chk, NULL, err);
    if (c == NULL)
        return -1;
    int gone = c->type == REDIS_REPLY_ARRAY && c->elements == 0;
    freeReplyObject(c);
    if (!gone)
        return 0;
    const char *add[21] = {"XADD", p->dead_key,           "*", "sink", s->name, "lsn", dl->lsn ? dl->lsn : "",
                           "idx",  dl->idx ? dl->idx : ""};
    int argc = 9;
    for (int i = 0; i < DL_NCOLS; i++) {
        add[argc++] = wc_dl_col_names[i];
        add[argc++] = dl->col[i] ? dl->col[i] : "";
    }
    add[argc++] = "error";
    add[argc++] = msg;
    c = redis_command(s, p, argc, add, NULL, err);
    if (c == NULL)
        return -1;
    freeReplyObject(c);
    return 0;
}

const struct wc_dlq_ops redis_dlq_ops = {
    .action = "command",
    .fetch = dlq_fetch,
    .release = dlq_release,
    .prepare = dlq_prepare,
    .discard = dlq_discard,
    .queue_removal = dlq_queue_removal,
    .still_failing = dlq_still_failing,
};
