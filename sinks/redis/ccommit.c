/* ccommit.c - the Redis Cluster sink's commit: one MULTI/EXEC per hash slot the batch writes, on every master
 * at once, each with its slot's guard and cursor; units refused whole sent again; the directory moved once
 * all are acknowledged; the rebuild's FLUSHDB of every master; a dlq retry's parts (csink.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csink.h"
#include "walcast/clock.h"
#include "walcast/log.h"

/* How long units wait, in all, for slots that migrate (TRYAGAIN) before the commit gives up (WC_ERR_IO). */
#define TRYAGAIN_MAX_MS 30000
/* Topology checks while running: the masters' ids are compared at least this often. */
#define CHECK_INTERVAL_MS 1000

void cs_detach(struct wc_sink *s)
{
    struct redis_sink *p = s->priv;

    if (p != NULL && p->cs != NULL)
        WC_DETACH(p->cs->b, p->cs->cb, cs_batch_reset);
}

static int pos_none(struct wc_pos p)
{
    return p.lsn == 0 && p.index == -1;
}

/* What a unit's EXEC said. */
enum { U_DONE, U_NOSCRIPT, U_TRYAGAIN, U_FAILED };

/* The text of the first error among a unit's queued replies, or of EXEC's own. */
static const char *refusal(redisReply **rep, int ncmd)
{
    for (int i = 0; i < ncmd - 1; i++)
        if (rep[i] != NULL && rep[i]->type == REDIS_REPLY_ERROR)
            return rep[i]->str;
    return rep[ncmd - 1]->str;
}

static int starts(const char *s, const char *prefix)
{
    return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

/*
 * The replies of unit u (DONE): EXEC's array has one reply per command after MULTI (first the guard unless
 * retrying, then one per part, then the cursor unless retrying). Counts and dead letters as one Redis does
 * (redis_not_applied). Returns U_*; U_FAILED with err.
 */
static int unit_result(struct wc_sink *s, struct cbatch *b, const struct cunit *u, redisReply **rep, int ncmd,
                       const char *node, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    const redisReply *exec = rep[ncmd - 1];
    int guard = !s->retrying, rc = U_DONE;
    char a[40];

    if (exec->type == REDIS_REPLY_ERROR) {
        const char *why = refusal(rep, ncmd);
        if (starts(exec->str, "TRYAGAIN") || starts(why, "TRYAGAIN"))
            return U_TRYAGAIN; /* the slot migrates: nothing ran */
        const char *hint = redis_refusal_hint(why);
        wc_err_set(err, redis_transient_error(why) ? WC_ERR_IO : WC_ERR_DATA,
                   "sink \"%s\": redis cluster node %s refused the transaction of hash slot %d: %s%s%s",
                   s->name, node, u->slot, why, *hint ? ": " : "", hint);
        return U_FAILED;
    }
    if (exec->type != REDIS_REPLY_ARRAY || exec->elements != (size_t)(u->ncmd + (guard ? 2 : 0))) {
        wc_err_set(err, WC_ERR_PROTOCOL, "sink \"%s\": unexpected reply to EXEC from redis cluster node %s",
                   s->name, node);
        return U_FAILED;
    }
    /* A flushed script cache (SCRIPT FLUSH, a restart, a failover) refuses every EVALSHA of the unit at once:
     * the cache holds all of walcast's scripts or none (loaded in one MULTI). */
    if (exec->element[0]->type == REDIS_REPLY_ERROR && starts(exec->element[0]->str, "NOSCRIPT")) {
        for (size_t i = 1; i < exec->elements; i++)
            if (!(exec->element[i]->type == REDIS_REPLY_ERROR && starts(exec->element[i]->str, "NOSCRIPT"))) {
                wc_err_set(
                    err, WC_ERR_DATA,
                    "sink \"%s\": redis cluster node %s had some of walcast's scripts but not all: hash slot "
                    "%d may have been applied in part; rebuild the sink",
                    s->name, node, u->slot);
                return U_FAILED;
            }
        return U_NOSCRIPT;
    }
    if (guard) {
        const redisReply *g = exec->element[0];
        if (g->type == REDIS_REPLY_ARRAY && g->elements == 2 && g->element[1]->type == REDIS_REPLY_STRING) {
            /* The slot's cursor is not what walcast stored: writes were lost (a failover). Nothing of the
             * unit ran; the sink reopens and checks every slot (read_cursor). */
            struct csink *cs = p->cs;
            wc_err_set(
                err, WC_ERR_IO,
                "sink \"%s\": redis cluster hash slot %d (node %s) lost acknowledged writes: its cursor is "
                "\"%s\", walcast had stored %s there; checking every hash slot",
                s->name, u->slot, node, g->element[1]->str,
                pos_none(cs->acked[u->slot]) ? "none" : wc_pos_format(cs->acked[u->slot], a));
            return U_FAILED;
        }
        if (g->type == REDIS_REPLY_ERROR) {
            wc_err_set(err, WC_ERR_DATA, "sink \"%s\": the guard of hash slot %d failed at %s: %s", s->name,
                       u->slot, node, g->str);
            return U_FAILED;
        }
    }
    for (int i = 0; i < u->ncmd; i++) {
        struct wc_rec *r = &b->recs.v[u->rec[i]];
        const redisReply *e = exec->element[i + (guard ? 1 : 0)];
        char lsn[WC_LSN_STRLEN];
        if (r->first == REC_DEAD_LETTER) {
            if (e->type == REDIS_REPLY_ERROR && rc == U_DONE) {
                wc_err_set(err, WC_ERR_DATA,
                           "sink \"%s\": could not write a dead letter in hash slot %d at %s: %s", s->name,
                           u->slot, node, e->str);
                rc = U_FAILED;
            }
            continue;
        }
        if (e->type == REDIS_REPLY_INTEGER)
            continue; /* applied */
        if (e->type == REDIS_REPLY_ARRAY) {
            struct wc_err e2 = {0};
            if (redis_not_applied(s, p, &b->recs, r, e, &e2) < 0 && rc == U_DONE) {
                *err = e2;
                rc = U_FAILED;
            }
        } else if (e->type == REDIS_REPLY_STATUS || e->type == REDIS_REPLY_STRING) {
            /* "halted" (an earlier event of the unit halted: it comes again), or "retried" (a dlq retry's
             * part applied by an earlier attempt) */
            if (r->counted && strcmp(e->str, "halted") == 0) {
                struct wc_event ev;
                wc_recs_event(&b->recs, r, &ev);
                wc_sink_count_applied(s, 1, &ev, -1);
                r->counted = 0;
            }
        } else if (rc == U_DONE) {
            /* The script itself failed: nothing a check foresaw, so its writes may be partial. */
            const char *t = wc_recs_str(&b->recs, r->col[WC_COL_EVENT_TYPE]);
            wc_err_set(err, WC_ERR_DATA,
                       "sink \"%s\": the script of event \"%s\" at %s:%" PRId64
                       " failed in hash slot %d and may have applied part of its actions there: %s",
                       s->name, t ? t : "", wc_lsn_format(r->pos.lsn, lsn), r->pos.index, u->slot,
                       e->type == REDIS_REPLY_ERROR ? e->str : "unexpected reply");
            rc = U_FAILED;
        }
    }
    if (guard) {
        const redisReply *cur = exec->element[exec->elements - 1];
        if (cur->type == REDIS_REPLY_ERROR && rc == U_DONE) {
            wc_err_set(err, WC_ERR_DATA, "sink \"%s\": could not store the cursor of hash slot %d at %s: %s",
                       s->name, u->slot, node, cur->str);
            rc = U_FAILED;
        }
    }
    return rc;
}

/* Room for n jobs and nrep replies. */
static void job_room(struct csink *cs, int n, int nrep)
{
    if (n > cs->jobcap) {
        cs->jobcap = n + 16;
        cs->jobs = wc_xrealloc(cs->jobs, (size_t)cs->jobcap * sizeof(*cs->jobs));
    }
    if (nrep > cs->repcap) {
        cs->repcap = nrep + 64;
        cs->replies = wc_xrealloc(cs->replies, (size_t)cs->repcap * sizeof(*cs->replies));
    }
}

/*
 * Send the units of b (one job each, prepared in cs->jobs), all masters at once, until each is DONE: a unit
 * refused whole (NOSCRIPT: the scripts are loaded again; TRYAGAIN: its slot migrates, sent again after a
 * backoff) did nothing and goes again. done[k] says which succeeded. 0, or -1 with the first error (the units
 * that succeeded stay so).
 */
static int run_units(struct wc_sink *s, struct cbatch *b, int *done, struct wc_err *err)
{
    struct csink *cs = ((struct redis_sink *)s->priv)->cs;
    int n = b->nunit, left = n, failed = 0, noscript = 0, backoff = 10;
    int64_t waited = 0;
    struct redis_cluster_job *run = wc_xcalloc((size_t)n + 1, sizeof(*run));
    int *idx = wc_xcalloc((size_t)n + 1, sizeof(*idx));
    struct wc_err e = {0};

    for (int k = 0; k < n; k++)
        done[k] = 0;
    while (left > 0 && !failed) {
        int nrun = 0, again = 0, tryagain = 0;
        for (int k = 0; k < n; k++)
            if (!done[k]) {
                idx[nrun] = k;
                run[nrun++] = cs->jobs[k];
            }
        if (redis_cluster_run(cs->cl, run, nrun, &e) < 0) {
            *err = e;
            failed = 1;
        }
        for (int j = 0; j < nrun; j++) {
            int k = idx[j];
            struct redis_cluster_job *jb = &run[j];
            if (jb->state == REDIS_CLUSTER_JOB_UNKNOWN)
                continue; /* the error above; its slot's cursor tells at the next open */
            if (jb->state != REDIS_CLUSTER_JOB_DONE)
                continue;
            struct wc_err e2 = {0};
            int r = unit_result(s, b, &b->units[k], jb->replies, jb->ncmd, jb->node, &e2);
            for (int i = 0; i < jb->ncmd; i++) {
                if (jb->replies[i] != NULL)
                    freeReplyObject(jb->replies[i]);
                jb->replies[i] = NULL;
            }
            if (r == U_DONE) {
                done[k] = 1;
                left--;
            } else if (r == U_NOSCRIPT) {
                again = 1;
            } else if (r == U_TRYAGAIN) {
                tryagain = 1;
            } else if (!failed) {
                *err = e2;
                failed = 1;
            }
        }
        if (failed || left == 0)
            break;
        if (again) {
            if (++noscript > 3) {
                wc_err_set(err, WC_ERR_IO, "sink \"%s\": the redis cluster keeps losing walcast's scripts",
                           s->name);
                failed = 1;
                break;
            }
            wc_debug("sink \"%s\": a redis cluster node lost walcast's scripts: loading them again", s->name);
            redis_cluster_unready(cs->cl);
        }
        if (tryagain && !again) {
            if (waited >= TRYAGAIN_MAX_MS) {
                wc_err_set(err, WC_ERR_IO,
                           "sink \"%s\": redis cluster hash slots still migrating after %d s (TRYAGAIN); "
                           "trying again",
                           s->name, TRYAGAIN_MAX_MS / 1000);
                failed = 1;
                break;
            }
            wc_sleep_ms(backoff, NULL);
            waited += backoff;
            backoff = backoff * 2 > 500 ? 500 : backoff * 2;
        }
    }
    free(run);
    free(idx);
    return failed ? -1 : 0;
}

/* Append a formatted command to cs->wire; returns its offset. */
static size_t wire_cmd(struct csink *cs, int argc, const char **argv, const size_t *len)
{
    size_t off = cs->wire.len;

    cs_format(&cs->wire, argc, argv, len);
    return off;
}

/* The failover check: every CHECK_INTERVAL_MS (and after any refresh of the map) the masters' ids are
 * compared with those of the last cursor check; a new one (a replica took over) reopens the sink, whose
 * read_cursor checks every slot. */
static int topology(struct wc_sink *s, struct wc_err *err)
{
    struct csink *cs = ((struct redis_sink *)s->priv)->cs;
    int64_t now = wc_now_ms();

    if (now - cs->checked_ms < CHECK_INTERVAL_MS && cs->cl->stats.refreshes == cs->refreshes)
        return 0;
    if (now - cs->checked_ms >= CHECK_INTERVAL_MS && redis_cluster_refresh(cs->cl, err) < 0)
        return -1;
    cs->checked_ms = now;
    cs->refreshes = cs->cl->stats.refreshes;
    for (int i = 0; i < cs->cl->map.nnode; i++) {
        int known = 0;
        for (int j = 0; j < cs->nid && !known; j++)
            known = strcmp(cs->ids[j], cs->cl->map.nodes[i].id) == 0;
        if (!known) {
            wc_err_set(
                err, WC_ERR_IO,
                "sink \"%s\": redis cluster node %s:%d is a new master (a failover?): checking every hash "
                "slot's cursor",
                s->name, cs->cl->map.nodes[i].host, cs->cl->map.nodes[i].port);
            return -1;
        }
    }
    return 0;
}

/* The units of b with their guards and cursors, then the directory: floor and each written slot's cursor. */
static int commit_units(struct wc_sink *s, struct cbatch *b, struct wc_pos cursor, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    struct csink *cs = p->cs;
    int n = b->nunit, nrep = 0, rc;
    char pos[40], exp[40], cur[CS_KEYLEN], halt[CS_KEYLEN];
    size_t *head = wc_xcalloc((size_t)n * 2 + 2, sizeof(size_t));
    int *done = wc_xcalloc((size_t)n + 1, sizeof(int));

    wc_pos_format(cursor, pos);
    for (int k = 0; k < n; k++)
        nrep += b->units[k].ncmd + 4;
    job_room(cs, n, nrep);
    wc_buf_reset(&cs->wire);
    for (int k = 0; k < n; k++) {
        const struct cunit *u = &b->units[k];
        size_t cl = cs_key(cur, "cursor", u->slot, cs->rs, NULL),
               hl = cs_key(halt, "halt", u->slot, cs->rs, s->name);
        const char *multi[1] = {"MULTI"}, *exec[1] = {"EXEC"};
        const char *g[7] = {"EVALSHA",
                            p->fixed_sha[FIXED_GUARD],
                            "2",
                            cur,
                            halt,
                            s->name,
                            pos_none(cs->acked[u->slot]) ? "" : wc_pos_format(cs->acked[u->slot], exp)};
        const char *c[8] = {"EVALSHA", p->fixed_sha[FIXED_CURSOR], "2", cur, halt, "HSET", s->name, pos};
        size_t gl[7] = {7, 40, 1, cl, hl, strlen(s->name), strlen(g[6])};
        size_t cln[8] = {7, 40, 1, cl, hl, 4, strlen(s->name), strlen(pos)};
        head[2 * k] = wire_cmd(cs, 1, multi, NULL);
        wire_cmd(cs, 7, g, gl);
        head[2 * k + 1] = wire_cmd(cs, 8, c, cln);
        wire_cmd(cs, 1, exec, NULL);
    }
    head[2 * n] =
        cs->wire.len; /* unit k: its head from head[2k], its tail from head[2k + 1] to head[2k + 2] */
    for (int k = 0, r = 0; k < n; k++) {
        const struct cunit *u = &b->units[k];
        cs->jobs[k] = (struct redis_cluster_job){.slot = u->slot,
                                                 .cmds = u->cmds.data,
                                                 .len = u->cmds.len,
                                                 .ncmd = u->ncmd + 4,
                                                 .head = cs->wire.data + head[2 * k],
                                                 .headlen = head[2 * k + 1] - head[2 * k],
                                                 .tail = cs->wire.data + head[2 * k + 1],
                                                 .taillen = head[2 * k + 2] - head[2 * k + 1],
                                                 .replies = &cs->replies[r]};
        r += u->ncmd + 4;
    }
    for (int i = 0; i < nrep; i++)
        cs->replies[i] = NULL;
    rc = run_units(s, b, done, err);
    for (int k = 0; k < n; k++)
        if (done[k])
            cs->acked[b->units[k].slot] = cursor;
    free(head);
    free(done);
    if (rc < 0)
        return -1;

    /* Every unit is acknowledged: the floor moves, and the directory records each written slot's cursor
     * (what a slot that later has less lost). One command, in the home slot. */
    struct wc_buf d = WC_BUF_INIT;
    size_t fl = strlen(s->name) + 8;
    char *fields = wc_xcalloc((size_t)n + 1, fl + 8);
    const char **argv = wc_xcalloc((size_t)n * 2 + 4, sizeof(char *));
    int argc = 0;
    argv[argc++] = "HSET";
    argv[argc++] = cs->dir_key;
    snprintf(fields, fl + 8, "%s:floor", s->name);
    argv[argc++] = fields;
    argv[argc++] = pos;
    for (int k = 0; k < n; k++) {
        char *f = fields + (size_t)(k + 1) * (fl + 8);
        snprintf(f, fl + 8, "%s:%d", s->name, b->units[k].slot);
        argv[argc++] = f;
        argv[argc++] = pos;
    }
    cs_format(&d, argc, argv, NULL);
    redisReply *r = NULL;
    rc = redis_cluster_pipeline(cs->cl, cs->home, d.data, d.len, 1, &r, err);
    if (rc == 0 && r->type == REDIS_REPLY_ERROR) {
        wc_err_set(err, redis_transient_error(r->str) ? WC_ERR_IO : WC_ERR_DATA,
                   "sink \"%s\": could not write its directory \"%s\": %s", s->name, cs->dir_key, r->str);
        rc = -1;
    }
    if (r != NULL)
        freeReplyObject(r);
    if (rc == 0)
        cs->floor = cursor;
    wc_buf_free(&d);
    free(fields);
    free(argv);
    return rc;
}

/* A dlq retry: each part of the dead letter in its slot (MULTI, the parts, EXEC: no guard, no cursor); every
 * part marks itself in its slot when it took effect, so that a retry after a crash does not apply it again.
 * When all have, the dead letter goes from its stream. */
static int commit_retry(struct wc_sink *s, struct cbatch *b, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    struct csink *cs = p->cs;
    int n = b->nunit, nrep = 0, rc;
    size_t *off = wc_xcalloc((size_t)n + 1, sizeof(size_t));
    int *done = wc_xcalloc((size_t)n + 1, sizeof(int));
    const char *multi[1] = {"MULTI"}, *exec[1] = {"EXEC"};

    for (int k = 0; k < n; k++)
        nrep += b->units[k].ncmd + 2;
    job_room(cs, n, nrep);
    wc_buf_reset(&cs->wire);
    off[0] = wire_cmd(cs, 1, multi, NULL);
    off[1] = wire_cmd(cs, 1, exec, NULL);
    size_t end = cs->wire.len;
    for (int k = 0, r = 0; k < n; k++) {
        const struct cunit *u = &b->units[k];
        cs->jobs[k] = (struct redis_cluster_job){.slot = u->slot,
                                                 .cmds = u->cmds.data,
                                                 .len = u->cmds.len,
                                                 .ncmd = u->ncmd + 2,
                                                 .head = cs->wire.data + off[0],
                                                 .headlen = off[1] - off[0],
                                                 .tail = cs->wire.data + off[1],
                                                 .taillen = end - off[1],
                                                 .replies = &cs->replies[r]};
        r += u->ncmd + 2;
    }
    for (int i = 0; i < nrep; i++)
        cs->replies[i] = NULL;
    rc = run_units(s, b, done, err);
    free(off);
    free(done);
    if (rc < 0 || p->retry_id == NULL || cs->retry_slot < 0)
        return rc;
    char dl[CS_KEYLEN];
    const char *argv[3] = {"XDEL", dl, p->retry_id};
    size_t len[3] = {4, cs_key(dl, "dead_letters", cs->retry_slot, cs->rs, NULL), strlen(p->retry_id)};
    redisReply *r = cs_command(s, 3, argv, len, err);
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ERROR) {
        wc_err_set(err, redis_transient_error(r->str) ? WC_ERR_IO : WC_ERR_DATA,
                   "sink \"%s\": could not remove dead letter %d-%s: %s", s->name, cs->retry_slot,
                   p->retry_id, r->str);
        rc = -1;
    }
    freeReplyObject(r);
    return rc;
}

int cs_commit_detached(struct wc_sink *s, struct wc_commit *c, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    struct csink *cs;
    int rc;

    if (p == NULL || p->cs == NULL || cs_broken(p->cs))
        return redis_not_open(s, err);
    cs = p->cs;
    if (s->retrying) {
        rc = commit_retry(s, cs->cb, err);
        if (rc == 0)
            cs_batch_reset(cs->cb);
        return rc;
    }
    if (!cs->read && cs_read_cursors(s, err) < 0)
        return -1;
    rc = topology(s, err);
    if (rc == 0)
        rc = commit_units(s, cs->cb, c->cursor, err);
    if (rc == 0)
        cs_batch_reset(cs->cb);
    else /* what each slot holds now is known again only by reading it: reopen */
        __atomic_store_n(&cs->broken, 1, __ATOMIC_RELEASE);
    return rc;
}

int cs_commit(struct wc_sink *s, struct wc_pos cursor, struct wc_err *err)
{
    struct wc_commit c = {.cursor = cursor};

    cs_detach(s);
    return cs_commit_detached(s, &c, err);
}

/*
 * Wipe the sink before a rebuild: FLUSHDB on every master. Not atomic across masters, so the directory is
 * marked first ("rebuilding": an open that finds it rebuilds again) and the home slot's master, which holds
 * the mark, is flushed last.
 */
int cs_reset(struct wc_sink *s, struct wc_err *err)
{
    struct redis_sink *p = s->priv;
    struct csink *cs;
    char field[128];
    const char *mark[4] = {"HSET", NULL, field, "rebuilding"};
    const char *flush[1] = {"FLUSHDB"};
    redisReply *r;
    int home;

    if (s->conf == NULL || s->conf->rebuild == NULL) {
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\": no rebuild action configured (sinks.%s.rebuild: flushdb)",
                   s->name, s->name);
        return -1;
    }
    if (p == NULL || p->cs == NULL)
        return redis_not_open(s, err);
    cs = p->cs;
    cs_batch_reset(cs->b);
    cs_batch_reset(cs->cb);
    mark[1] = cs->dir_key;
    snprintf(field, sizeof(field), "%s:state", s->name);
    if ((r = cs_command(s, 4, mark, NULL, err)) == NULL)
        return -1;
    freeReplyObject(r);
    if (redis_cluster_ready_all(cs->cl, err) < 0)
        return -1;
    home = cs->cl->map.owner[cs->home];
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < cs->cl->map.nnode; i++) {
            if ((pass == 0) == (i == home))
                continue;
            if ((r = redis_cluster_node_command(cs->cl, i, 1, flush, NULL, err)) == NULL)
                return -1;
            if (r->type == REDIS_REPLY_ERROR) {
                wc_err_set(err, redis_transient_error(r->str) ? WC_ERR_IO : WC_ERR_DATA,
                           "sink \"%s\": FLUSHDB failed at redis cluster node %s:%d: %s", s->name,
                           cs->cl->map.nodes[i].host, cs->cl->map.nodes[i].port, r->str);
                freeReplyObject(r);
                return -1;
            }
            freeReplyObject(r);
        }
    for (int i = 0; i < REDIS_CLUSTER_SLOTS; i++)
        cs->skip[i] = cs->acked[i] = WC_POS_NONE;
    cs->floor = WC_POS_NONE;
    cs->read = 1;
    __atomic_store_n(&cs->broken, 0, __ATOMIC_RELEASE);
    cs_remember_masters(cs);
    return 0;
}
