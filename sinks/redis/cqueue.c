/* cqueue.c - the Redis Cluster sink's batch: each event's actions grouped by the hash slot of their keys,
 * one EVALSHA of its type's script per slot (the event's part there), queued into that slot's unit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csink.h"
#include "walcast/template.h"

void cs_batch_reset(struct cbatch *b)
{
    for (int i = 0; i < b->nunit; i++) {
        b->unit_of[b->units[i].slot] = -1;
        wc_buf_reset(&b->units[i].cmds);
        b->units[i].ncmd = 0;
    }
    b->nunit = 0;
    wc_recs_reset(&b->recs);
}

void cs_batch_free(struct cbatch *b)
{
    for (int i = 0; i < b->cap; i++) {
        wc_buf_free(&b->units[i].cmds);
        free(b->units[i].rec);
    }
    free(b->units);
    b->units = NULL;
    b->nunit = b->cap = 0;
    wc_recs_free(&b->recs);
    for (int i = 0; i < REDIS_CLUSTER_SLOTS; i++)
        b->unit_of[i] = -1;
}

/* The unit of slot in b, new (from the pool) when the batch has none yet. */
static struct cunit *unit_for(struct cbatch *b, int slot)
{
    struct cunit *u;

    if (b->unit_of[slot] >= 0)
        return &b->units[b->unit_of[slot]];
    if (b->nunit == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->units = wc_xrealloc(b->units, (size_t)b->cap * sizeof(*b->units));
        memset(&b->units[b->nunit], 0, (size_t)(b->cap - b->nunit) * sizeof(*b->units));
    }
    u = &b->units[b->nunit];
    u->slot = slot;
    u->ncmd = 0;
    wc_buf_reset(&u->cmds);
    b->unit_of[slot] = (int16_t)b->nunit++;
    return u;
}

/* Append argv to slot's unit as the command of record rec. */
static void unit_add(struct cbatch *b, int slot, int rec, int argc, const char **argv, const size_t *len)
{
    struct cunit *u = unit_for(b, slot);

    if (u->ncmd == u->cap) {
        u->cap = u->cap ? u->cap * 2 : 16;
        u->rec = wc_xrealloc(u->rec, (size_t)u->cap * sizeof(*u->rec));
    }
    u->rec[u->ncmd++] = rec;
    cs_format(&u->cmds, argc, argv, len);
}

/* The batch record for ev: the last one when it is ev's, else new. */
static int rec_for(struct cbatch *b, const struct wc_event *ev)
{
    struct wc_recs *r = &b->recs;

    if (r->n > 0 && wc_pos_cmp(r->v[r->n - 1].pos, ev->pos) == 0)
        return r->n - 1;
    return wc_recs_add(r, ev, WC_REC_ALL);
}

/* Room in the scratch for an event type of nact actions, nkeys keys and nargs values (grows only). */
static void scratch(struct csink *cs, int nact, int nkeys, int nargs)
{
    if (nact > cs->actcap) {
        cs->actcap = nact + 8;
        cs->slot_of = wc_xrealloc(cs->slot_of, (size_t)cs->actcap * sizeof(int));
        cs->parts = wc_xrealloc(cs->parts, (size_t)cs->actcap * sizeof(int));
        cs->mask = wc_xrealloc(cs->mask, (size_t)cs->actcap + 1);
    }
    if (nkeys > cs->keycap) {
        cs->keycap = nkeys + 8;
        cs->keyoff = wc_xrealloc(cs->keyoff, (size_t)cs->keycap * sizeof(size_t));
        cs->keylen = wc_xrealloc(cs->keylen, (size_t)cs->keycap * sizeof(size_t));
    }
    if (nargs > cs->valcap) {
        cs->valcap = nargs + 8;
        cs->valoff = wc_xrealloc(cs->valoff, (size_t)cs->valcap * sizeof(size_t));
        cs->vallen = wc_xrealloc(cs->vallen, (size_t)cs->valcap * sizeof(size_t));
    }
}

/* walcast's keys of slot S (dead letters, cursor, halt), made at the first use and kept: apply() names
 * them for every event part. Only the engine's thread uses this cache. */
static const struct slot_keys *slot_keys(struct wc_sink *s, struct csink *cs, int S)
{
    if (cs->keys == NULL)
        cs->keys = wc_xcalloc(REDIS_CLUSTER_SLOTS, sizeof(*cs->keys));
    if (cs->keys[S] == NULL) {
        char k[3][CS_KEYLEN];
        size_t n[3] = {cs_key(k[0], "dead_letters", S, cs->rs, NULL), cs_key(k[1], "cursor", S, cs->rs, NULL),
                       cs_key(k[2], "halt", S, cs->rs, s->name)};
        struct slot_keys *sk = wc_xcalloc(1, sizeof(*sk) + n[0] + n[1] + n[2] + 3);
        char *t = sk->text;
        for (int i = 0; i < 3; i++) {
            sk->len[i] = n[i];
            memcpy(t, k[i], n[i] + 1);
            t += n[i] + 1;
        }
        cs->keys[S] = sk;
    }
    return cs->keys[S];
}

/* Whether action a is outside the dead letter retried (its mask): dlq retry runs only its part. */
static int masked_out(const struct wc_sink *s, const struct csink *cs, int a)
{
    return s->retrying && cs->retry_mask && (a >= (int)strlen(cs->retry_mask) || cs->retry_mask[a] != '1');
}

/*
 * Queue ev: render every action of its type (as one Redis does), find the hash slot of each action's keys
 * (all of one action's in one slot, else the event fails), and queue one EVALSHA per slot the event
 * touches, with the mask of the actions there, unless that slot's cursor at open already covers the event
 * (a replay after a restart: the part is there). An event whose values cannot be rendered or sent goes to
 * the on_error policy whole, in the home slot.
 */
int cs_apply(struct wc_sink *s, struct wc_event *ev, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    struct csink *cs;
    const char *type = ev->col[WC_COL_EVENT_TYPE].text;
    struct wc_rule *const *rules;
    struct cbatch *b;
    int n = 0, gi, nrec, ri;
    size_t meta_len;
    char msg[1024];

    if (p == NULL || p->cs == NULL || cs_broken(p->cs))
        return redis_not_open(s, err);
    cs = p->cs;
    if (type == NULL)
        return 0;
    rules = wc_config_rules(s->conf, type, &n);
    if (rules == NULL || n == 0 || (gi = p->gen_of_rule[rules[0] - s->conf->rules]) < 0)
        return 0;
    const struct gen *g = &p->gens[gi];
    b = cs->b;
    nrec = b->recs.n;
    meta_len = b->recs.arena.len;
    ri = rec_for(b, ev);

    /* EVALSHA sha numkeys, dl(S) cursor(S) halt(S), the event's keys, the mode's arguments, the values,
     * the mask. */
    char mode = redis_mode(s), nk[24], prev[64];
    struct redis_mode_text mt;
    int nm = mode == 'd' ? 8 : mode == 'r' ? 9 : mode == 'h' ? 3 : 1;
    int kpos = 6, mpos = kpos + g->nkeys, apos = mpos + nm, argc = apos + g->nargs + 1;
    int nparts = 0, queued = 0;

    scratch(cs, g->nact, g->nkeys, g->nargs);
    int *slot_of = cs->slot_of, *parts = cs->parts;
    char *mask = cs->mask;
    redis_arg_reserve(p, argc);
    if (redis_render(s, p, ev, rules, n, g, kpos, apos, msg, sizeof(msg)) < 0)
        goto failed;
    if (g->nkeys > 0) {
        memcpy(cs->keyoff, p->argoff + kpos, (size_t)g->nkeys * sizeof(size_t));
        memcpy(cs->keylen, p->arglen + kpos, (size_t)g->nkeys * sizeof(size_t));
    }
    if (g->nargs > 0) { /* a type whose values are all literals sends none */
        memcpy(cs->valoff, p->argoff + apos, (size_t)g->nargs * sizeof(size_t));
        memcpy(cs->vallen, p->arglen + apos, (size_t)g->nargs * sizeof(size_t));
    }
    /* The slot of each action: its keys' (one slot), or, for an action without keys, the event's first. */
    for (int a = 0; a < g->nact; a++) {
        const struct gen_act *ga = &g->act[a];
        slot_of[a] = -1;
        if (masked_out(s, cs, a))
            continue;
        for (int k = 0; k < ga->nk; k++) {
            size_t off = cs->keyoff[ga->k0 + k], len = cs->keylen[ga->k0 + k];
            int sl = redis_cluster_keyslot(p->arg.data + off, len);
            if (k == 0) {
                slot_of[a] = sl;
            } else if (sl != slot_of[a]) {
                size_t o0 = cs->keyoff[ga->k0], l0 = cs->keylen[ga->k0];
                snprintf(msg, sizeof(msg),
                         "projection \"%s\": %s at line %d: keys \"%.*s\" and \"%.*s\" are in hash slots %d "
                         "and %d: "
                         "a redis cluster runs an action in one hash slot; give the keys a common {hash tag}",
                         ga->rule->projection, ga->cmd->name ? ga->cmd->name : "script", ga->cmd->line,
                         (int)(l0 > 200 ? 200 : l0), p->arg.data + o0, (int)(len > 200 ? 200 : len),
                         p->arg.data + off, slot_of[a], sl);
                goto failed;
            }
        }
        if (slot_of[a] >= 0) {
            int j = 0;
            while (j < nparts && parts[j] != slot_of[a])
                j++;
            if (j == nparts)
                parts[nparts++] = slot_of[a];
        }
    }
    for (int a = 0; a < g->nact; a++)
        if (slot_of[a] < 0 && g->act[a].nk == 0 && !masked_out(s, cs, a)) {
            if (nparts == 0)
                parts[nparts++] = cs->home;
            slot_of[a] = parts[0];
        }

    /* Halt: failing whole, a part leaves its slot's cursor at the event queued before it in this batch (or
     * where the last commit put it). Retry: the stream id goes to the driver, not the script. */
    if (mode == 'h' && ri > 0)
        wc_pos_format(b->recs.v[ri - 1].pos, prev);
    else
        prev[0] = '\0';
    redis_arg_fixed(p, 0, "EVALSHA", 7);
    redis_arg_fixed(p, 1, g->sha, 40);
    redis_arg_fixed(p, 2, nk, redis_put_ll(nk, 3 + g->nkeys));
    redis_mode_args(p, mode, ev, mpos, prev, &mt);
    for (int j = 0; j < nparts; j++) {
        int S = parts[j];
        char retried[CS_KEYLEN];
        const char *dl, *cur, *halt;
        size_t dll, curl, haltl;

        if (!s->retrying && wc_pos_covered(cs->skip[S], ev->pos))
            continue; /* applied there before the restart */
        const struct slot_keys *sk = slot_keys(s, cs, S);
        dl = sk->text, dll = sk->len[0];
        cur = sk->text + sk->len[0] + 1, curl = sk->len[1];
        halt = cur + curl + 1, haltl = sk->len[2];
        if (s->retrying) {
            char id[128];
            snprintf(id, sizeof(id), "%d-%s", cs->retry_slot, p->retry_id ? p->retry_id : "");
            curl = cs_key(retried, "retried", S, cs->rs, id);
            cur = retried;
        }
        redis_arg_fixed(p, 3, dl, dll);
        redis_arg_fixed(p, 4, cur, curl);
        redis_arg_fixed(p, 5, halt, haltl);
        for (int a = 0; a < g->nact; a++) {
            const struct gen_act *ga = &g->act[a];
            mask[a] = slot_of[a] == S ? '1' : '0';
            for (int k = 0; k < ga->nk; k++) {
                if (slot_of[a] == S) {
                    p->argoff[kpos + ga->k0 + k] = cs->keyoff[ga->k0 + k];
                    p->arglen[kpos + ga->k0 + k] = cs->keylen[ga->k0 + k];
                } else { /* a stand-in in S, never touched: the KEYS of a script must all be in S */
                    redis_arg_fixed(p, kpos + ga->k0 + k, halt, haltl);
                }
            }
            /* The values of another slot's actions are not read here (masked out): not sent either. */
            for (int v = 0; v < ga->na; v++) {
                if (slot_of[a] == S) {
                    p->argoff[apos + ga->a0 + v] = cs->valoff[ga->a0 + v];
                    p->arglen[apos + ga->a0 + v] = cs->vallen[ga->a0 + v];
                } else {
                    redis_arg_fixed(p, apos + ga->a0 + v, "", 0);
                }
            }
        }
        mask[g->nact] = '\0';
        redis_arg_fixed(p, argc - 1, mask, (size_t)g->nact);
        for (int i = 0; i < argc; i++)
            if (p->argoff[i] != SIZE_MAX)
                p->argv[i] = p->arg.data + p->argoff[i];
        unit_add(b, S, ri, argc, p->argv, p->arglen);
        queued++;
    }
    if (queued == 0) {
        /* Every part was applied before: nothing of it is queued. */
        if (b->recs.n > nrec)
            wc_recs_truncate(&b->recs, nrec, meta_len);
        return 0;
    }
    b->recs.v[ri].first = REC_EVENT;
    b->recs.v[ri].n += queued;
    wc_sink_count_applied(s, 0, ev, 1);
    b->recs.v[ri].counted = 1;
    return 0;

failed:
    if (wc_sink_handle_error(s, NULL, ev, s->cfg->on_error, msg, err) < 0) {
        wc_recs_truncate(&b->recs, nrec, meta_len);
        return -1;
    }
    if (b->recs.n > nrec && b->recs.v[b->recs.n - 1].n == 0)
        wc_recs_truncate(&b->recs, nrec, meta_len); /* skipped: the cursor alone passes it */
    return 0;
}

/* Queue a dead letter for ev found while queueing (an unknown event type, a value that cannot be rendered):
 * the fixed dead-letter script in the home slot (in the cluster a dead letter is applied once as a part
 * is: skipped when that slot's cursor covers the event). */
int cs_dead_letter(struct wc_sink *s, struct wc_commit *in, struct wc_event *ev, const char *error,
                   struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    struct csink *cs;
    struct cbatch *b;
    char lsn[WC_LSN_STRLEN], idx[24], max[24], dl[CS_KEYLEN], halt[CS_KEYLEN];
    const char *argv[24];
    size_t len[24];
    int argc = 0, ri;

    (void)in;
    if (p == NULL || p->cs == NULL || cs_broken(p->cs))
        return redis_not_open(s, err);
    cs = p->cs;
    b = cs->b;
    if (wc_pos_covered(cs->skip[cs->home], ev->pos))
        return 0;
    ri = rec_for(b, ev);
    wc_lsn_format(ev->pos.lsn, lsn);
    redis_put_ll(idx, ev->pos.index);
    redis_put_ll(max, s->cfg ? s->cfg->dead_letter_max : 0);
#define ARG(str, n) (argv[argc] = (str), len[argc] = (n), argc++)
#define ARGS(str) ARG((str), strlen(str))
#define ARGC(i) ARG(ev->col[i].text ? ev->col[i].text : "", ev->col[i].text ? ev->col[i].len : 0)
    ARGS("EVALSHA");
    ARG(p->fixed_sha[FIXED_DEAD_LETTER], 40);
    ARGS("2");
    ARG(dl, cs_key(dl, "dead_letters", cs->home, cs->rs, NULL));
    ARG(halt, cs_key(halt, "halt", cs->home, cs->rs, s->name));
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
    unit_add(b, cs->home, ri, argc, argv, len);
    b->recs.v[ri].first = REC_DEAD_LETTER;
    b->recs.v[ri].n++;
    return 0;
}
