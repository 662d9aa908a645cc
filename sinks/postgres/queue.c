/* queue.c - the PostgreSQL sink's batch: apply() renders each statement's parameters into it, a dead
 * letter joins the event it is about. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg.h"
#include "walcast/template.h"

void *pg_grow(void *p, int *cap, int need, size_t size)
{
    if (need <= *cap)
        return p;
    int n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    p = wc_xrealloc(p, (size_t)n * size);
    *cap = n;
    return p;
}

static size_t *grow_offs(struct pg_batch *p, size_t extra)
{
    if (p->noffs + extra > p->capoffs) {
        size_t n = p->capoffs ? p->capoffs : 256;
        while (n < p->noffs + extra)
            n *= 2;
        p->offs = wc_xrealloc(p->offs, n * sizeof(*p->offs));
        p->capoffs = n;
    }
    return p->offs + p->noffs;
}

void pg_batch_reset(struct pg_batch *p)
{
    wc_recs_reset(&p->recs);
    p->nops = 0;
    p->noffs = 0;
    p->open_ev = -1;
}

void pg_batch_free(struct pg_batch *p)
{
    wc_recs_free(&p->recs);
    free(p->ops);
    free(p->offs);
    memset(p, 0, sizeof(*p));
}

/* Drop everything queued after the given marks (an event that could not be queued). */
static void batch_truncate(struct pg_batch *p, int nevs, int nops, size_t noffs, size_t arena_len)
{
    wc_recs_truncate(&p->recs, nevs, arena_len);
    p->nops = nops;
    p->noffs = noffs;
}

/* Queue a new event record holding ev's identity (what a dead letter stores); returns its index. */
static int ev_begin(struct pg_batch *p, const struct wc_event *ev)
{
    int ei = wc_recs_add(&p->recs, ev, WC_REC_DEAD_LETTER);

    p->recs.v[ei].first = p->nops;
    return ei;
}

struct pg_op *pg_op_add(struct pg_batch *p, int ei, int prep, int nparams)
{
    struct pg_op *op;

    p->ops = pg_grow(p->ops, &p->capops, p->nops + 1, sizeof(*p->ops));
    op = &p->ops[p->nops++];
    op->prep = prep;
    op->nparams = nparams;
    op->first = p->noffs;
    grow_offs(p, (size_t)nparams);
    p->noffs += (size_t)nparams;
    p->recs.v[ei].n++;
    return op;
}

/*
 * Queue the projection statements of every rule for ev's type. All parameters are rendered before
 * anything is kept, so an event is queued whole or not at all; a rendering error goes to the on_error
 * policy with the projection named.
 */
int pg_apply(struct wc_sink *s, struct wc_event *ev, struct wc_err *err)
{
    struct pg *pg = s->priv;
    struct pg_batch *p = pg->b;
    const char *type = ev->col[WC_COL_EVENT_TYPE].text;
    struct wc_rule *const *rules;
    int n = 0, ei, nevs = p->recs.n, nops = p->nops, rc;
    size_t noffs = p->noffs, arena_len = p->recs.arena.len, ident_len;
    char why[1200];
    struct wc_err rerr = {0};

    if (type == NULL || ev->col[WC_COL_EVENT_TYPE].kind == WC_VAL_NULL)
        return 0;
    rules = wc_config_rules(s->conf, type, &n);
    if (rules == NULL || n == 0)
        return 0;

    ei = ev_begin(p, ev);
    ident_len = p->recs.arena.len;
    for (int i = 0; i < n; i++) {
        const struct wc_rule *rule = rules[i];
        ptrdiff_t r = rule - s->conf->rules;
        if (r < 0 || r >= s->conf->nrule) {
            batch_truncate(p, nevs, nops, noffs, arena_len);
            wc_err_set(err, WC_ERR_INTERNAL, "sink \"%s\": rule for event \"%s\" is not one of the sink's",
                       s->name, type);
            return -1;
        }
        for (int k = 0; k < rule->nstmt; k++) {
            const struct wc_pg_stmt *st = &rule->stmts[k];
            struct pg_op *op = pg_op_add(p, ei, pg->rule_base[r] + k, st->nparams);
            size_t first = op->first;
            for (int j = 0; j < st->nparams; j++) {
                const struct wc_tmpl *t = st->params[j];
                size_t off;
                if (ev->col[WC_COL_PAYLOAD].kind == WC_VAL_STRING && wc_tmpl_is_whole_payload(t)) {
                    /* The payload's text as it came: already kept as the event's identity. */
                    off = p->recs.v[ei].col[WC_COL_PAYLOAD];
                } else {
                    off = p->recs.arena.len;
                    rc = wc_tmpl_render(t, ev, &p->recs.arena, &rerr);
                    if (rc < 0) {
                        snprintf(why, sizeof(why), "projection \"%s\": %s",
                                 rule->projection ? rule->projection : "", rerr.msg);
                        goto render_failed;
                    }
                    if (rc == 1)
                        off = WC_REC_NULL;
                    else
                        wc_buf_append(&p->recs.arena, "", 1);
                }
                p->offs[first + (size_t)j] = off;
            }
        }
    }
    if (p->recs.v[ei].n == 0) {
        batch_truncate(p, nevs, nops, noffs, arena_len);
        return 0;
    }
    p->recs.v[ei].counted = 1;
    wc_sink_count_applied(s, 0, ev, 1);
    return 0;

render_failed:
    /* Keep the identity (a dead letter needs it), drop what was rendered. */
    batch_truncate(p, nevs + 1, nops, noffs, ident_len);
    p->recs.v[ei].n = 0;
    p->open_ev = ei;
    rc = wc_sink_handle_error(s, NULL, ev, s->cfg->on_error, why, err);
    p->open_ev = -1;
    if (p->recs.v[ei].n == 0 || rc < 0)
        batch_truncate(p, nevs, nops, noffs, arena_len);
    return rc < 0 ? -1 : 0;
}

/* Fill the dead-letter parameters $3..$10 from ev (texts borrowed). */
static void dead_values(const struct wc_event *ev, const char *error, char *lsn, char *idx, const char **v)
{
    wc_lsn_format(ev->pos.lsn, lsn);
    snprintf(idx, 24, "%" PRId64, ev->pos.index);
    v[0] = lsn;
    v[1] = idx;
    for (int c = 0; c < DL_NCOLS; c++)
        v[2 + c] = ev->col[wc_dl_cols[c]].kind == WC_VAL_NULL ? NULL : ev->col[wc_dl_cols[c]].text;
    v[7] = error;
}

/*
 * A dead letter for ev. During apply() it joins the event being queued; called by the engine it
 * becomes an event of its own. Found by a commit (in, the slow path) it is written at once, inside that
 * commit's open transaction, while apply() on the engine's thread keeps queueing into the other batch.
 */
int pg_dead_letter(struct wc_sink *s, struct wc_commit *in, struct wc_event *ev, const char *error,
                   struct wc_err *err)
{
    struct pg *pg = s->priv;
    struct pg_batch *p = pg->b;
    char lsn[WC_LSN_STRLEN], idx[24];
    const char *v[DEAD_NPARAMS];
    int ei;

    if (in != NULL) {
        PGresult *r;
        v[0] = pg_slot_name(s);
        v[1] = s->name;
        dead_values(ev, error, lsn, idx, v + 2);
        r = pg_exec(s, pg->prep[PREP_DEAD].name, NULL, DEAD_NPARAMS, v, err);
        if (r == NULL)
            return -1;
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            pg_fail_result(s, r, WC_ERR_DATA, "could not store a dead letter", err);
            PQclear(r);
            return -1;
        }
        PQclear(r);
        return 0;
    }

    ei = p->open_ev >= 0 ? p->open_ev : ev_begin(p, ev);
    struct pg_op *op = pg_op_add(p, ei, PREP_DEAD, DEAD_NSTORED);
    size_t *o = p->offs + op->first;
    wc_lsn_format(ev->pos.lsn, lsn);
    snprintf(idx, sizeof(idx), "%" PRId64, ev->pos.index);
    o[0] = wc_recs_put(&p->recs, lsn, strlen(lsn));
    o[1] = wc_recs_put(&p->recs, idx, strlen(idx));
    for (int c = 0; c < DL_NCOLS; c++)
        o[2 + c] = p->recs.v[ei].col[wc_dl_cols[c]];
    o[7] = wc_recs_put(&p->recs, error ? error : "", error ? strlen(error) : 0);
    return 0;
}
