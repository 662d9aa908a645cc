/* queue.c - the Redis sink's batch: each event's commands rendered and formatted (RESP) into one buffer. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"
#include "walcast/template.h"

void redis_batch_reset(struct batch *b)
{
    wc_recs_reset(&b->recs);
    wc_buf_reset(&b->pending);
    b->ncmd = 0;
    b->scripts = 0;
}

/* Cut the batch back to an earlier state. */
static void batch_truncate(struct batch *b, int nrec, size_t meta_len, size_t pending_len, int ncmd)
{
    wc_recs_truncate(&b->recs, nrec, meta_len);
    b->ncmd = ncmd;
    b->pending.len = pending_len;
    if (b->pending.data)
        b->pending.data[pending_len] = '\0';
}

void redis_batch_free(struct batch *b)
{
    wc_recs_free(&b->recs);
    wc_buf_free(&b->pending);
    memset(b, 0, sizeof(*b));
}

/* The batch record for ev: the last one when it is ev's (a dead letter after a failed apply), else new. */
static struct wc_rec *rec_for(struct batch *b, const struct wc_event *ev)
{
    struct wc_recs *r = &b->recs;
    int i;

    if (r->n > 0 && wc_pos_cmp(r->v[r->n - 1].pos, ev->pos) == 0)
        return &r->v[r->n - 1];
    i = wc_recs_add(r, ev, WC_REC_ALL);
    r->v[i].off = b->pending.len;
    return &r->v[i];
}

/* Format argv as one RESP command at the end of the batch. */
void redis_queue_argv(struct batch *b, struct wc_rec *r, int argc, const char **argv, const size_t *len)
{
    /* RESP written straight into the batch: hiredis' formatter allocates and sprintf()s every length. */
    wc_buf_append(&b->pending, "*", 1);
    wc_buf_put_int(&b->pending, argc);
    wc_buf_append(&b->pending, "\r\n", 2);
    for (int i = 0; i < argc; i++) {
        size_t n = len ? len[i] : strlen(argv[i]);
        wc_buf_append(&b->pending, "$", 1);
        wc_buf_put_int(&b->pending, (long long)n);
        wc_buf_append(&b->pending, "\r\n", 2);
        wc_buf_append(&b->pending, argv[i], n);
        wc_buf_append(&b->pending, "\r\n", 2);
    }
    r->n++;
    b->ncmd++;
}

static void arg_reserve(struct redis_sink *p, int n)
{
    if (n <= p->argcap)
        return;
    p->argcap = n + 8;
    p->argoff = wc_xrealloc(p->argoff, (size_t)p->argcap * sizeof(*p->argoff));
    p->arglen = wc_xrealloc(p->arglen, (size_t)p->argcap * sizeof(*p->arglen));
    p->argv = wc_xrealloc(p->argv, (size_t)p->argcap * sizeof(*p->argv));
}

static void arg_push(struct redis_sink *p, int i, const char *s, size_t len)
{
    p->argoff[i] = p->arg.len;
    wc_buf_append(&p->arg, s, len);
    p->arglen[i] = len;
}

/*
 * Render one command of a rule for ev and queue it. Returns 0, or -1 with msg filled (the event cannot be
 * applied: a missing or null value, a filter that does not apply).
 */
static int queue_cmd(struct wc_sink *s, struct redis_sink *p, const struct wc_rule *rule,
                     const struct wc_redis_cmd *cmd, struct wc_event *ev, struct wc_rec *r, char *msg,
                     size_t msgsize)
{
    struct script *sc = NULL;
    int argc = 0, total = cmd->argc + (cmd->script ? 3 : 0);
    const char *what = "script";

    arg_reserve(p, total);
    wc_buf_reset(&p->arg);
    if (cmd->script != NULL) {
        char nkeys[16];
        int n = snprintf(nkeys, sizeof(nkeys), "%d", cmd->nkeys);

        sc = redis_find_script(p, cmd->script);
        if (sc == NULL) {
            snprintf(msg, msgsize, "projection \"%s\": script at line %d was not loaded", rule->projection,
                     cmd->line);
            return -1;
        }
        arg_push(p, argc++, "EVALSHA", 7);
        arg_push(p, argc++, sc->sha, 40);
        arg_push(p, argc++, nkeys, (size_t)n);
    } else if (cmd->argc > 0) {
        what = wc_tmpl_source(cmd->argv[0]);
    }
    for (int i = 0; i < cmd->argc; i++) {
        struct wc_err terr = {0};
        size_t off = p->arg.len;
        int rc = wc_tmpl_render(cmd->argv[i], ev, &p->arg, &terr);

        if (rc != 0) {
            snprintf(msg, msgsize, "projection \"%s\": %.64s at line %d: argument %d \"%.200s\": %.500s",
                     rule->projection, what, cmd->line, i + 1, wc_tmpl_source(cmd->argv[i]),
                     rc > 0 ? "value is null" : terr.msg);
            return -1;
        }
        p->argoff[argc] = off;
        p->arglen[argc] = p->arg.len - off;
        argc++;
    }
    if (argc == 0)
        return 0;
    /* pointers only now: rendering may have moved the buffer */
    for (int i = 0; i < argc; i++)
        p->argv[i] = p->arg.data + p->argoff[i];
    redis_queue_argv(p->b, r, argc, p->argv, p->arglen);
    if (sc != NULL)
        p->b->scripts |= script_bit((int)(sc - p->scripts));
    return 0;
}

/*
 * Queue the commands of every rule for ev's type. All of an event's commands or none: a failure rolls
 * the event back out of the batch, then the on_error policy decides.
 */
int redis_apply(struct wc_sink *s, struct wc_event *ev, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    const char *type = ev->col[WC_COL_EVENT_TYPE].text;
    struct wc_rule *const *rules;
    struct batch *b;
    size_t pending_len, meta_len;
    int nrec, ncmd, n = 0;
    struct wc_rec *r;
    char msg[1024];

    if (p == NULL)
        return redis_not_open(s, err);
    if (type == NULL)
        return 0;
    b = p->b;
    pending_len = b->pending.len;
    meta_len = b->recs.arena.len;
    nrec = b->recs.n;
    ncmd = b->ncmd;
    rules = wc_config_rules(s->conf, type, &n);
    if (rules == NULL || n == 0)
        return 0;
    r = rec_for(b, ev);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < rules[i]->ncmd; j++) {
            if (queue_cmd(s, p, rules[i], &rules[i]->cmds[j], ev, r, msg, sizeof(msg)) < 0)
                goto failed;
        }
    }
    if (r->n > 0) {
        wc_sink_count_applied(s, 0, ev, 1);
        r->counted = 1;
    } else
        batch_truncate(b, nrec, meta_len, pending_len, ncmd); /* nothing to remember */
    return 0;

failed:
    /* Drop the event's commands but keep its record: a dead letter goes there. */
    batch_truncate(b, b->recs.n, b->recs.arena.len, pending_len, ncmd);
    r->n = 0;
    if (wc_sink_handle_error(s, NULL, ev, s->cfg->on_error, msg, err) < 0) {
        batch_truncate(b, nrec, meta_len, pending_len, ncmd);
        return -1;
    }
    if (b->recs.n > nrec && b->recs.v[b->recs.n - 1].n == 0)
        batch_truncate(b, nrec, meta_len, pending_len, ncmd); /* skipped: the cursor alone passes it */
    return 0;
}

/* Queue an XADD to the dead-letter stream for ev: into the batch being queued, or, found by a commit
 * (in), into that commit's unit (the loose batch its commit sends after the EXEC). */
int redis_dead_letter(struct wc_sink *s, struct wc_commit *in, struct wc_event *ev, const char *error,
                      struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    struct batch *into;
    struct wc_rec *r;
    char lsn[WC_LSN_STRLEN], idx[24];
    const char *argv[21];
    size_t len[21];
    int argc = 0;

    if (p == NULL)
        return redis_not_open(s, err);
    into = in != NULL ? in->unit : p->b;
    r = rec_for(into, ev);

    wc_lsn_format(ev->pos.lsn, lsn);
    snprintf(idx, sizeof(idx), "%" PRId64, ev->pos.index);
#define ARG(str, n) (argv[argc] = (str), len[argc] = (n), argc++)
#define ARGS(str) ARG((str), strlen(str))
#define ARGC(i) ARG(ev->col[i].text ? ev->col[i].text : "", ev->col[i].text ? ev->col[i].len : 0)
    ARGS("XADD");
    ARGS(p->dead_key);
    ARGS("*");
    ARGS("sink");
    ARGS(s->name);
    ARGS("lsn");
    ARGS(lsn);
    ARGS("idx");
    ARGS(idx);
    ARGS("event_id");
    ARGC(WC_COL_EVENT_ID);
    ARGS("event_type");
    ARGC(WC_COL_EVENT_TYPE);
    ARGS("aggregate_type");
    ARGC(WC_COL_AGGREGATE_TYPE);
    ARGS("aggregate_id");
    ARGC(WC_COL_AGGREGATE_ID);
    ARGS("payload");
    ARGC(WC_COL_PAYLOAD);
    ARGS("error");
    ARGS(error ? error : "");
#undef ARGC
#undef ARGS
#undef ARG
    redis_queue_argv(into, r, argc, argv, len);
    return 0;
}
