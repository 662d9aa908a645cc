/* queue.c - the Redis sink's batch: each event's actions rendered into one EVALSHA of its type's generated
 * script, formatted (RESP) into one buffer. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "redis.h"
#include "walcast/template.h"

void redis_batch_reset(struct batch *b)
{
    wc_recs_reset(&b->recs);
    wc_buf_reset(&b->pending);
    b->ncmd = 0;
    b->scripts = 0;
    b->fixed = 0;
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

void redis_arg_reserve(struct redis_sink *p, int n)
{
    if (n <= p->argcap)
        return;
    p->argcap = n + 8;
    p->argoff = wc_xrealloc(p->argoff, (size_t)p->argcap * sizeof(*p->argoff));
    p->arglen = wc_xrealloc(p->arglen, (size_t)p->argcap * sizeof(*p->arglen));
    p->argv = wc_xrealloc(p->argv, (size_t)p->argcap * sizeof(*p->argv));
}

/* The mode an event's script runs in (script.c): the on_error policy, or "r" for dlq retry. */
char redis_mode(const struct wc_sink *s)
{
    if (s->retrying)
        return 'r';
    switch (s->cfg ? s->cfg->on_error : WC_POLICY_DEAD_LETTER) {
    case WC_POLICY_SKIP:
        return 's';
    case WC_POLICY_HALT:
        return 'h';
    default:
        return 'd';
    }
}

/* The decimal text of v into buf (24 bytes at least); returns its length. No printf: once per event. */
size_t redis_put_ll(char *buf, long long v)
{
    char tmp[24];
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    size_t n = 0, len = 0;

    do
        tmp[n++] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        buf[len++] = '-';
    while (n > 0)
        buf[len++] = tmp[--n];
    buf[len] = '\0';
    return len;
}

/* Put a fixed (not rendered) argument at slot i. */
void redis_arg_fixed(struct redis_sink *p, int i, const char *s, size_t len)
{
    p->argoff[i] = SIZE_MAX;
    p->argv[i] = s;
    p->arglen[i] = len;
}

const char *redis_col_text(const struct wc_event *ev, int c, size_t *len)
{
    *len = ev->col[c].text ? ev->col[c].len : 0;
    return ev->col[c].text ? ev->col[c].text : "";
}

/* Why a rendered value cannot be sent, for the on_error message. */
static void bad_value(const struct wc_rule *rule, const struct wc_redis_cmd *cmd, int m, const char *v,
                      size_t len, char *msg, size_t msgsize)
{
    const char *what = cmd->name ? cmd->name : "script";

    if (cmd->kinds[m] == WC_RA_KEY)
        snprintf(
            msg, msgsize,
            "projection \"%s\": %s at line %d: key \"%.*s\" is one of walcast's own names (\"walcast:...\")",
            rule->projection, what, cmd->line, (int)(len > 200 ? 200 : len), v);
    else
        snprintf(msg, msgsize, "projection \"%s\": %s at line %d: argument %d \"%.200s\" is not %s: \"%.*s\"",
                 rule->projection, what, cmd->line, m, wc_tmpl_source(cmd->argv[m]),
                 cmd->kinds[m] == WC_RA_INT || cmd->kinds[m] == WC_RA_POSINT || cmd->kinds[m] == WC_RA_NATURAL
                     ? "an integer as redis reads one"
                     : "a number as redis reads one",
                 (int)(len > 64 ? 64 : len), v);
}

/* The key just rendered at voff..end of p->arg gets "{T}" in front of it, T the tag of its hash slot. */
static int redis_tag_key(struct redis_sink *p, size_t voff)
{
    size_t len = p->arg.len - voff;
    char stack[256], *key = len <= sizeof(stack) ? stack : malloc(len);
    if (key == NULL)
        return -1;
    memcpy(key, p->arg.data + voff, len);
    p->arg.len = voff;
    wc_buf_append(&p->arg, "{", 1);
    wc_buf_puts(&p->arg, redis_cluster_slot_tag(wc_keyslot(key, len)));
    wc_buf_append(&p->arg, "}", 1);
    wc_buf_append(&p->arg, key, len);
    if (key != stack)
        free(key);
    return 0;
}

int redis_render(struct wc_sink *s, struct redis_sink *p, struct wc_event *ev, struct wc_rule *const *rules,
                 int n, const struct gen *g, int kpos, int apos, char *msg, size_t msgsize)
{
    int x = 0, ki = 0, ai = 0;

    wc_buf_reset(&p->arg);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < rules[i]->ncmd; j++) {
            const struct wc_redis_cmd *cmd = &rules[i]->cmds[j];
            for (int m = 0; m < cmd->argc; m++) {
                int how = g->how[x++];
                if (how == GEN_SKIP)
                    continue;
                struct wc_err terr = {0};
                size_t off = p->arg.len;
                if (how == GEN_KEY && s->key_prefix != NULL)
                    wc_buf_puts(&p->arg, s->key_prefix);
                size_t voff = p->arg.len;
                int rc = wc_tmpl_render(cmd->argv[m], ev, &p->arg, &terr);
                if (rc < 0) {
                    snprintf(msg, msgsize,
                             "projection \"%s\": %.64s at line %d: argument %d \"%.200s\": %.500s",
                             rules[i]->projection, cmd->name ? cmd->name : "script", cmd->line,
                             cmd->script ? m + 1 : m, wc_tmpl_source(cmd->argv[m]), terr.msg);
                    return -1;
                }
                if (cmd->kinds[m] != WC_RA_VALUE &&
                    !wc_redis_arg_ok(cmd->kinds[m], p->arg.data + voff, p->arg.len - voff)) {
                    bad_value(rules[i], cmd, m, p->arg.data + voff, p->arg.len - voff, msg, msgsize);
                    return -1;
                }
                if (how == GEN_KEY && s->key_prefix_tagged && redis_tag_key(p, voff) < 0) {
                    snprintf(msg, msgsize, "projection \"%s\": out of memory", rules[i]->projection);
                    return -1;
                }
                int slot = how == GEN_KEY ? kpos + ki++ : apos + ai++;
                p->argoff[slot] = off;
                p->arglen[slot] = p->arg.len - off;
            }
        }
    }
    return 0;
}

int redis_mode_args(struct redis_sink *p, char mode, const struct wc_event *ev, int mpos, const char *prev,
                    struct redis_mode_text *t)
{
    redis_arg_fixed(p, mpos, mode == 'd' ? "d" : mode == 'r' ? "r" : mode == 'h' ? "h" : "s", 1);
    if (mode == 'd' || mode == 'r') {
        static const int cols[5] = {WC_COL_EVENT_ID, WC_COL_EVENT_TYPE, WC_COL_AGGREGATE_TYPE,
                                    WC_COL_AGGREGATE_ID, WC_COL_PAYLOAD};
        wc_lsn_format(ev->pos.lsn, t->lsn);
        redis_arg_fixed(p, mpos + 1, t->lsn, strlen(t->lsn));
        redis_arg_fixed(p, mpos + 2, t->idx, redis_put_ll(t->idx, ev->pos.index));
        for (int c = 0; c < 5; c++) {
            size_t len;
            const char *txt = redis_col_text(ev, cols[c], &len);
            redis_arg_fixed(p, mpos + 3 + c, txt, len);
        }
        if (mode == 'r')
            redis_arg_fixed(p, mpos + 8, prev, strlen(prev));
        return mode == 'd' ? 8 : 9;
    }
    if (mode == 'h') {
        redis_arg_fixed(p, mpos + 1, prev, strlen(prev));
        wc_pos_format(ev->pos, t->at);
        redis_arg_fixed(p, mpos + 2, t->at, strlen(t->at));
        return 3;
    }
    return 1;
}

/*
 * Queue the event's one EVALSHA of its type's generated script: every action of every rule for the
 * type, rendered now, applied whole or not at all when the batch commits. A value that cannot be
 * rendered (a missing field) or sent (a key in walcast's names, a number Redis would refuse) rolls the
 * event back out of the batch, then the on_error policy decides.
 */
int redis_apply(struct wc_sink *s, struct wc_event *ev, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    const char *type = ev->col[WC_COL_EVENT_TYPE].text;
    struct wc_rule *const *rules;
    struct batch *b;
    size_t pending_len, meta_len;
    int nrec, ncmd, n = 0, gi;
    struct wc_rec *r;
    char msg[1024];

    if (p == NULL)
        return redis_not_open(s, err);
    if (type == NULL)
        return 0;
    rules = wc_config_rules(s->conf, type, &n);
    if (rules == NULL || n == 0 || (gi = p->gen_of_rule[rules[0] - s->conf->rules]) < 0)
        return 0;
    const struct gen *g = &p->gens[gi];
    b = p->b;
    pending_len = b->pending.len;
    meta_len = b->recs.arena.len;
    nrec = b->recs.n;
    ncmd = b->ncmd;
    r = rec_for(b, ev);

    /* Slots: EVALSHA sha numkeys, walcast's keys, the event's keys, the mode's arguments, the values. */
    char mode = redis_mode(s), nk[24], prev[64];
    struct redis_mode_text mt;
    int nw = mode == 'h' ? 3 : 1, nm = mode == 'd' ? 8 : mode == 'r' ? 9 : mode == 'h' ? 3 : 1;
    int kpos = 3 + nw, mpos = kpos + g->nkeys, apos = mpos + nm, argc = apos + g->nargs;

    redis_arg_reserve(p, argc);
    if (redis_render(s, p, ev, rules, n, g, kpos, apos, msg, sizeof(msg)) < 0)
        goto failed;
    redis_arg_fixed(p, 0, "EVALSHA", 7);
    redis_arg_fixed(p, 1, g->sha, 40);
    redis_arg_fixed(p, 2, nk, redis_put_ll(nk, nw + g->nkeys));
    redis_arg_fixed(p, 3, p->dead_key, strlen(p->dead_key));
    if (mode == 'h') {
        redis_arg_fixed(p, 4, p->cursor_key, strlen(p->cursor_key));
        redis_arg_fixed(p, 5, p->halt_key, strlen(p->halt_key));
    }
    /* Halt: failing whole, the event leaves the cursor at the event queued before it in this batch (or
     * where the last commit put it); failing part way, at itself. Retry: the dead letter it comes from. */
    int ri = (int)(r - b->recs.v);
    if (mode == 'r')
        snprintf(prev, sizeof(prev), "%s", p->retry_id ? p->retry_id : "");
    else if (mode == 'h' && ri > 0)
        wc_pos_format(b->recs.v[ri - 1].pos, prev);
    else
        prev[0] = '\0';
    redis_mode_args(p, mode, ev, mpos, prev, &mt);
    /* pointers only now: rendering may have moved the buffer */
    for (int i = 0; i < argc; i++)
        if (p->argoff[i] != SIZE_MAX)
            p->argv[i] = p->arg.data + p->argoff[i];
    redis_queue_argv(b, r, argc, p->argv, p->arglen);
    r->first = REC_EVENT;
    b->scripts |= script_bit(gi);
    wc_sink_count_applied(s, 0, ev, 1);
    r->counted = 1;
    return 0;

failed:
    /* Drop the event's command but keep its record: a dead letter goes there. */
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

/* Queue a dead letter for ev, found while queueing (an unknown event type, a value that cannot be
 * rendered): the fixed dead-letter script, so that it too is skipped after a halt in the same unit. */
int redis_dead_letter(struct wc_sink *s, struct wc_commit *in, struct wc_event *ev, const char *error,
                      struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    struct batch *into;
    struct wc_rec *r;
    char lsn[WC_LSN_STRLEN], idx[24], max[24];
    const char *argv[24];
    size_t len[24];
    int argc = 0;

    (void)in;
    if (p == NULL)
        return redis_not_open(s, err);
    into = p->b;
    r = rec_for(into, ev);

    wc_lsn_format(ev->pos.lsn, lsn);
    snprintf(idx, sizeof(idx), "%" PRId64, ev->pos.index);
    snprintf(max, sizeof(max), "%d", s->cfg ? s->cfg->dead_letter_max : 0);
#define ARG(str, n) (argv[argc] = (str), len[argc] = (n), argc++)
#define ARGS(str) ARG((str), strlen(str))
#define ARGC(i) ARG(ev->col[i].text ? ev->col[i].text : "", ev->col[i].text ? ev->col[i].len : 0)
    ARGS("EVALSHA");
    ARG(p->fixed_sha[FIXED_DEAD_LETTER], 40);
    ARGS("2");
    ARGS(p->dead_key);
    ARGS(p->halt_key);
    ARGS(max);
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
    r->first = REC_DEAD_LETTER;
    into->fixed |= 1 << FIXED_DEAD_LETTER;
    return 0;
}
