/* cluster.c - Redis Cluster on the wire: a connection per master, the slot map, pipelines with MOVED/ASK. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cluster.h"
#include "redis.h"
#include "walcast/log.h"

struct redis_cluster *redis_cluster_new(const char *name, const char *dsn, struct wc_err *err)
{
    struct redis_cluster *cl = wc_xcalloc(1, sizeof(*cl));

    cl->name = wc_xstrdup(name);
    if (redis_parse_cluster_dsn(name, dsn, &cl->conf, err) < 0) {
        redis_cluster_free(cl);
        return NULL;
    }
    redis_cluster_map_free(&cl->map); /* no slot has a master yet */
    cl->stale = 1;
    cl->connect_timeout.tv_sec = CONNECT_TIMEOUT_S;
    cl->io_timeout.tv_sec = IO_TIMEOUT_S;
    return cl;
}

void redis_cluster_free(struct redis_cluster *cl)
{
    if (cl == NULL)
        return;
    redis_cluster_map_free(&cl->map);
    redis_cluster_conf_free(&cl->conf);
    free(cl->name);
    free(cl);
}

/*
 * A new connection to host:port with the timeouts, keepalive and AUTH; NULL with err set: WC_ERR_IO when
 * the node cannot be reached or is busy, WC_ERR_CONFIG when it refuses the credentials.
 */
static redisContext *node_connect(struct redis_cluster *cl, const char *host, int port, struct wc_err *err)
{
    redisContext *c = redisConnectWithTimeout(host, port, cl->connect_timeout);
    redisReply *r;

    if (c == NULL) {
        wc_err_set(err, WC_ERR_INTERNAL, "sink \"%s\": out of memory", cl->name);
        return NULL;
    }
    if (c->err) {
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": could not connect to redis cluster node %s:%d: %s", cl->name,
                   host, port, c->errstr);
        goto fail;
    }
    if (redisSetTimeout(c, cl->io_timeout) != REDIS_OK || redisEnableKeepAlive(c) != REDIS_OK) {
        wc_err_set(err, WC_ERR_IO,
                   "sink \"%s\": could not set up the connection to redis cluster node %s:%d: %s", cl->name,
                   host, port, c->errstr);
        goto fail;
    }
    if (cl->conf.password != NULL) {
        const char *argv[3] = {"AUTH", cl->conf.user, cl->conf.password};
        size_t len[3] = {4, cl->conf.user ? strlen(cl->conf.user) : 0, strlen(cl->conf.password)};
        int argc = 3;

        if (cl->conf.user == NULL) {
            argv[1] = cl->conf.password;
            len[1] = len[2];
            argc = 2;
        }
        r = redisCommandArgv(c, argc, argv, len);
        if (r == NULL) {
            wc_err_set(err, WC_ERR_IO, "sink \"%s\": lost connection to redis cluster node %s:%d: %s",
                       cl->name, host, port, c->errstr);
            goto fail;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            wc_err_set(err, redis_transient_error(r->str) ? WC_ERR_IO : WC_ERR_CONFIG,
                       "sink \"%s\": could not authenticate to redis cluster node %s:%d: %s", cl->name, host,
                       port, r->str);
            freeReplyObject(r);
            goto fail;
        }
        freeReplyObject(r);
    }
    return c;

fail:
    redisFree(c);
    return NULL;
}

/* Lose node i's connection (gone, or out of step with its replies); the map may be out of date too. */
static void node_drop(struct redis_cluster *cl, int i)
{
    if (cl->map.nodes[i].c != NULL) {
        redisFree(cl->map.nodes[i].c);
        cl->map.nodes[i].c = NULL;
    }
    cl->map.nodes[i].ready = 0;
    cl->stale = 1;
}

static int node_lost(struct redis_cluster *cl, int i, struct wc_err *err)
{
    const struct redis_cluster_node *n = &cl->map.nodes[i];
    const char *why = n->c && n->c->err ? n->c->errstr : "connection closed";

    if (n->c && n->c->err == REDIS_ERR_EOF)
        why = "server closed the connection";
    wc_err_set(err, WC_ERR_IO, "sink \"%s\": lost connection to redis cluster node %s:%d: %s", cl->name,
               n->host, n->port, why);
    node_drop(cl, i);
    return -1;
}

/*
 * Ask one node for the map into m: CLUSTER SHARDS, or CLUSTER SLOTS where the server has no SHARDS.
 * Returns 0, -1 with err (WC_ERR_IO: try another node), -2 with err (WC_ERR_CONFIG: stop).
 */
static int read_map(struct redis_cluster *cl, redisContext *c, const char *host, int port,
                    struct redis_cluster_map *m, struct wc_err *err)
{
    const char *why = NULL;
    redisReply *r;
    int rc;

    for (;;) {
        r = redisCommand(c, cl->no_shards ? "CLUSTER SLOTS" : "CLUSTER SHARDS");
        if (r == NULL) {
            wc_err_set(err, WC_ERR_IO, "sink \"%s\": lost connection to redis cluster node %s:%d: %s",
                       cl->name, host, port, c->errstr);
            return -1;
        }
        if (r->type == REDIS_REPLY_ERROR && !cl->no_shards &&
            strcasestr(r->str, "unknown subcommand") != NULL) {
            freeReplyObject(r);
            cl->no_shards = 1; /* Redis before 7.0 */
            continue;
        }
        break;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        int disabled = strstr(r->str, "cluster support disabled") != NULL;
        wc_err_set(err, disabled ? WC_ERR_CONFIG : WC_ERR_IO,
                   "sink \"%s\": could not read the slot map from redis cluster node %s:%d: %s%s", cl->name,
                   host, port, r->str, disabled ? " (point the dsn at a redis cluster)" : "");
        freeReplyObject(r);
        return disabled ? -2 : -1;
    }
    rc = cl->no_shards ? redis_cluster_map_from_slots(r, host, m, &why)
                       : redis_cluster_map_from_shards(r, host, m, &why);
    freeReplyObject(r);
    if (rc < 0) {
        wc_err_set(err, WC_ERR_PROTOCOL, "sink \"%s\": unexpected reply to CLUSTER %s from %s:%d: %s",
                   cl->name, cl->no_shards ? "SLOTS" : "SHARDS", host, port, why);
        return -1;
    }
    if (m->covered == 0) {
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": redis cluster node %s:%d knows no master of any slot yet",
                   cl->name, host, port);
        redis_cluster_map_free(m);
        return -1;
    }
    return 0;
}

/* Put m in place of the map, handing the connections of nodes still masters over (and c, from host:port). */
static void install_map(struct redis_cluster *cl, struct redis_cluster_map *m, redisContext *c, int ready,
                        const char *host, int port)
{
    for (int i = 0; i < cl->map.nnode; i++) {
        struct redis_cluster_node *old = &cl->map.nodes[i];
        for (int j = 0; j < m->nnode && old->c != NULL; j++) {
            if (m->nodes[j].c == NULL && m->nodes[j].port == old->port &&
                strcmp(m->nodes[j].host, old->host) == 0) {
                m->nodes[j].c = old->c;
                m->nodes[j].ready = old->ready;
                old->c = NULL;
            }
        }
    }
    for (int j = 0; j < m->nnode && c != NULL; j++) {
        if (m->nodes[j].c == NULL && m->nodes[j].port == port && strcmp(m->nodes[j].host, host) == 0) {
            m->nodes[j].c = c;
            m->nodes[j].ready = ready; /* on_connect need not run again on the same connection */
            c = NULL;
        }
    }
    if (c != NULL)
        redisFree(c);
    redis_cluster_map_free(&cl->map); /* closes the connections nobody took */
    cl->map = *m;
    memset(m, 0, sizeof(*m));
    cl->stale = 0;
    cl->stats.refreshes++;
}

int redis_cluster_refresh(struct redis_cluster *cl, struct wc_err *err)
{
    struct redis_cluster_map m = {0};
    int ncand = cl->map.nnode + cl->conf.nseed, tried = 0;
    struct wc_err last = {0};

    /* The known masters first (their connections are open), then the seeds. */
    for (int k = 0; k < ncand; k++) {
        const char *host;
        int port, known = k < cl->map.nnode, rc;
        redisContext *c;

        if (known) {
            host = cl->map.nodes[k].host;
            port = cl->map.nodes[k].port;
            c = cl->map.nodes[k].c;
        } else {
            host = cl->conf.seeds[k - cl->map.nnode].host;
            port = cl->conf.seeds[k - cl->map.nnode].port;
            c = NULL;
        }
        tried++;
        if (c == NULL && (c = node_connect(cl, host, port, &last)) == NULL) {
            if (last.code == WC_ERR_CONFIG)
                break;
            continue;
        }
        if (known)
            cl->map.nodes[k].c = c; /* kept (or dropped below) with the node */
        rc = read_map(cl, c, host, port, &m, &last);
        if (rc == 0) {
            char *h = wc_xstrdup(host); /* host may die with the old map */
            int ready = known && cl->map.nodes[k].ready;
            if (known)
                cl->map.nodes[k].c = NULL; /* install_map hands it on */
            install_map(cl, &m, c, ready, h, port);
            free(h);
            wc_debug("sink \"%s\": redis cluster map read: %d masters, %d of %d slots served", cl->name,
                     cl->map.nnode, cl->map.covered, REDIS_CLUSTER_SLOTS);
            return 0;
        }
        if (known) {
            if (c->err)
                node_drop(cl, k);
        } else {
            redisFree(c);
        }
        if (rc == -2)
            break;
    }
    if (last.code == 0)
        wc_err_set(&last, WC_ERR_IO, "sink \"%s\": no redis cluster node to ask for the slot map", cl->name);
    else if (last.code == WC_ERR_IO && tried > 1)
        wc_err_prefix(&last, "no redis cluster node answered (%d tried), the last", tried);
    *err = last;
    cl->stale = 1;
    return -1;
}

const struct redis_cluster_node *redis_cluster_master(struct redis_cluster *cl, int slot, struct wc_err *err)
{
    if (slot < 0 || slot >= REDIS_CLUSTER_SLOTS) {
        wc_err_set(err, WC_ERR_INTERNAL, "sink \"%s\": hash slot %d out of range", cl->name, slot);
        return NULL;
    }
    if (cl->stale && redis_cluster_refresh(cl, err) < 0)
        return NULL;
    if (cl->map.owner[slot] < 0) {
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": no master serves hash slot %d of the redis cluster",
                   cl->name, slot);
        return NULL;
    }
    return &cl->map.nodes[cl->map.owner[slot]];
}

/* One command, or MULTI ... EXEC: a redirection then means nothing of it ran. */
static int all_or_nothing(const struct redis_cluster_job *j)
{
    static const char multi[] = "*1\r\n$5\r\nMULTI\r\n", exec[] = "*1\r\n$4\r\nEXEC\r\n";
    const size_t ml = sizeof(multi) - 1, el = sizeof(exec) - 1;
    const char *first = j->headlen ? j->head : j->cmds, *last = j->taillen ? j->tail : j->cmds;
    size_t flen = j->headlen ? j->headlen : j->len, llen = j->taillen ? j->taillen : j->len;

    if (j->ncmd == 1)
        return 1;
    return j->ncmd >= 2 && flen >= ml && llen >= el && j->headlen + j->len + j->taillen >= ml + el &&
           strncasecmp(first, multi, ml) == 0 && strncasecmp(last + llen - el, exec, el) == 0;
}

void redis_cluster_unready(struct redis_cluster *cl)
{
    for (int i = 0; i < cl->map.nnode; i++)
        cl->map.nodes[i].ready = 0;
}

/* Per job, between the send and the read of one round. */
#define REDIS_CLUSTER_FAILED (-1) /* pending.redirect: the job failed; not sent again */

struct pending {
    int node;     /* index into the map's nodes; -1 when not sent this round */
    int ask;      /* sent after ASKING */
    int redirect; /* the redirection to follow next round (kind, slot, address) */
    struct redis_cluster_redirect to;
};

/* Free replies[0..n) of a job and clear them. */
static void drop_replies(struct redis_cluster_job *j, int n)
{
    for (int i = 0; i < n; i++) {
        if (j->replies[i] != NULL)
            freeReplyObject(j->replies[i]);
        j->replies[i] = NULL;
    }
}

/* After a refresh: a MOVED names the slot's master, whatever the node asked for the map believed. */
static void trust_moved(struct redis_cluster *cl, const struct redis_cluster_redirect *to)
{
    int i = redis_cluster_map_node(&cl->map, to->host, to->port);

    if (cl->map.owner[to->slot] < 0)
        cl->map.covered++;
    cl->map.owner[to->slot] = (int16_t)i;
}

/* Write job j to its node (its slot's master, or the ASK target). 0, or -1 with err (job not applied). */
static int send_job(struct redis_cluster *cl, struct redis_cluster_job *j, struct pending *pd,
                    struct wc_err *err)
{
    struct redis_cluster_node *n;
    int i;

    /* No refresh here: the jobs already written hold on to the map's connections until their replies are
     * read. The map is refreshed between rounds. */
    if (pd->redirect == REDIS_CLUSTER_ASK) {
        i = redis_cluster_map_node(&cl->map, pd->to.host, pd->to.port);
    } else if ((i = cl->map.owner[j->slot]) < 0) {
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": no master serves hash slot %d of the redis cluster",
                   cl->name, j->slot);
        cl->stale = 1;
        return -1;
    }
    n = &cl->map.nodes[i];
    snprintf(j->node, sizeof(j->node), "%s:%d", n->host, n->port);
    if (n->c == NULL && (n->c = node_connect(cl, n->host, n->port, err)) == NULL) {
        cl->stale = 1;
        return -1;
    }
    if (!n->ready && cl->on_connect != NULL) {
        /* Nothing is queued on this connection yet in this round: the hook may talk on it. */
        if (cl->on_connect(cl, n->c, n->host, n->port, cl->on_connect_arg, err) < 0) {
            node_drop(cl, i);
            return -1;
        }
    }
    n->ready = 1;
    pd->ask = pd->redirect == REDIS_CLUSTER_ASK;
    pd->redirect = REDIS_CLUSTER_NO_REDIRECT;
    if ((pd->ask && redisAppendCommand(n->c, "ASKING") != REDIS_OK) ||
        (j->headlen && redisAppendFormattedCommand(n->c, j->head, j->headlen) != REDIS_OK) ||
        (j->len && redisAppendFormattedCommand(n->c, j->cmds, j->len) != REDIS_OK) ||
        (j->taillen && redisAppendFormattedCommand(n->c, j->tail, j->taillen) != REDIS_OK)) {
        wc_err_set(err, WC_ERR_INTERNAL, "sink \"%s\": out of memory", cl->name);
        return -1;
    }
    pd->node = i;
    return 0;
}

/*
 * Read job j's replies (after an ASKING's). Returns 0 (DONE, or a redirection recorded in pd), -1 with err
 * when the connection is lost (the job and every later one on that node are UNKNOWN) or a redirection is
 * wrong or one too many.
 */
static int read_job(struct redis_cluster *cl, struct redis_cluster_job *j, struct pending *pd,
                    struct wc_err *err)
{
    struct redis_cluster_node *n = &cl->map.nodes[pd->node];
    redisReply *r;
    const char *why = NULL;
    int first = -1;

    if (pd->ask) {
        if (redisGetReply(n->c, (void **)&r) != REDIS_OK || r == NULL)
            return node_lost(cl, pd->node, err);
        freeReplyObject(r); /* an error here shows again in the job's own replies */
    }
    for (int i = 0; i < j->ncmd; i++) {
        if (redisGetReply(n->c, (void **)&r) != REDIS_OK || r == NULL) {
            drop_replies(j, i);
            return node_lost(cl, pd->node, err);
        }
        j->replies[i] = r;
        if (first < 0 && r->type == REDIS_REPLY_ERROR &&
            redis_cluster_parse_redirect(r->str, r->len, &pd->to, &why) != REDIS_CLUSTER_NO_REDIRECT)
            first = i;
    }
    if (first < 0) {
        j->state = REDIS_CLUSTER_JOB_DONE;
        return 0;
    }
    /* Redirected: nothing of the job ran (all_or_nothing). */
    j->state = REDIS_CLUSTER_JOB_NOT_APPLIED;
    if (why != NULL) {
        wc_err_set(err, WC_ERR_PROTOCOL,
                   "sink \"%s\": malformed redirection from redis cluster node %s:%d: %s: %.200s", cl->name,
                   n->host, n->port, why, j->replies[first]->str);
        drop_replies(j, j->ncmd);
        return -1;
    }
    drop_replies(j, j->ncmd);
    if (pd->to.slot != j->slot) {
        wc_err_set(
            err, WC_ERR_INTERNAL,
            "sink \"%s\": a key of the pipeline for hash slot %d is in hash slot %d (redirected by %s:%d)",
            cl->name, j->slot, pd->to.slot, n->host, n->port);
        return -1;
    }
    if (pd->to.host[0] == '\0') /* the node does not know its own address: the one we used */
        snprintf(pd->to.host, sizeof(pd->to.host), "%s", n->host);
    if (++j->redirects > REDIS_CLUSTER_MAX_REDIRECTS) {
        wc_err_set(err, WC_ERR_IO,
                   "sink \"%s\": hash slot %d redirected %d times, the last to %s:%d: the cluster is "
                   "resharding or failing over; try again",
                   cl->name, j->slot, REDIS_CLUSTER_MAX_REDIRECTS, pd->to.host, pd->to.port);
        return -1;
    }
    pd->redirect = pd->to.kind;
    if (pd->to.kind == REDIS_CLUSTER_MOVED) {
        cl->stats.moved++;
        cl->stale = 1;
    } else {
        cl->stats.ask++;
    }
    wc_debug("sink \"%s\": hash slot %d: %s to %s:%d", cl->name, j->slot,
             pd->to.kind == REDIS_CLUSTER_MOVED ? "moved" : "ask", pd->to.host, pd->to.port);
    return 0;
}

/* Keep the first error: it is the one the caller hears of. */
static void keep_first(struct wc_err *err, const struct wc_err *e, int *failed)
{
    if (!*failed)
        *err = *e;
    *failed = 1;
}

int redis_cluster_run(struct redis_cluster *cl, struct redis_cluster_job *jobs, int njob, struct wc_err *err)
{
    struct pending *pd = wc_xcalloc((size_t)(njob > 0 ? njob : 1), sizeof(*pd));
    struct wc_err e = {0};
    int failed = 0, again = njob;

    for (int k = 0; k < njob; k++) {
        jobs[k].state = REDIS_CLUSTER_JOB_NOT_APPLIED;
        jobs[k].node[0] = '\0';
        jobs[k].redirects = 0;
        if (jobs[k].slot < 0 || jobs[k].slot >= REDIS_CLUSTER_SLOTS || !all_or_nothing(&jobs[k])) {
            wc_err_set(err, WC_ERR_INTERNAL,
                       "sink \"%s\": pipeline for hash slot %d is not one command or MULTI ... EXEC",
                       cl->name, jobs[k].slot);
            free(pd);
            return -1;
        }
    }
    /* Each round sends every job still to do (all before any reply is read), then reads them. */
    while (again > 0) {
        if (cl->stale) {
            if (redis_cluster_refresh(cl, &e) < 0) {
                keep_first(err, &e, &failed);
                break;
            }
            for (int k = 0; k < njob; k++)
                if (pd[k].redirect == REDIS_CLUSTER_MOVED)
                    trust_moved(cl, &pd[k].to);
        }
        for (int k = 0; k < njob; k++)
            pd[k].node = -1;
        /* A job that cannot be sent (its master is down) does not hold the others back. */
        for (int k = 0; k < njob; k++)
            if (jobs[k].state == REDIS_CLUSTER_JOB_NOT_APPLIED && pd[k].redirect != REDIS_CLUSTER_FAILED &&
                send_job(cl, &jobs[k], &pd[k], &e) < 0) {
                pd[k].redirect = REDIS_CLUSTER_FAILED;
                keep_first(err, &e, &failed);
            }
        /* Everything out to every master before waiting for the first reply: they work side by side. */
        for (int i = 0; i < cl->map.nnode; i++) {
            redisContext *c = cl->map.nodes[i].c;
            int done = 0;
            while (c != NULL && !done) {
                if (redisBufferWrite(c, &done) != REDIS_OK) {
                    node_lost(cl, i, &e);
                    keep_first(err, &e, &failed);
                    break;
                }
            }
        }
        again = 0;
        for (int k = 0; k < njob; k++) {
            if (pd[k].node < 0)
                continue;
            if (cl->map.nodes[pd[k].node].c == NULL) {
                jobs[k].state = REDIS_CLUSTER_JOB_UNKNOWN; /* its node went away after it was written */
                continue;
            }
            if (read_job(cl, &jobs[k], &pd[k], &e) < 0) {
                if (cl->map.nodes[pd[k].node].c == NULL)
                    jobs[k].state = REDIS_CLUSTER_JOB_UNKNOWN;
                pd[k].redirect = REDIS_CLUSTER_FAILED;
                keep_first(err, &e, &failed);
                continue;
            }
            if (pd[k].redirect != REDIS_CLUSTER_NO_REDIRECT)
                again++;
        }
    }
    free(pd);
    return failed ? -1 : 0;
}

int redis_cluster_pipeline(struct redis_cluster *cl, int slot, const char *cmds, size_t len, int ncmd,
                           redisReply **replies, struct wc_err *err)
{
    struct redis_cluster_job j = {.slot = slot, .cmds = cmds, .len = len, .ncmd = ncmd, .replies = replies};

    return redis_cluster_run(cl, &j, 1, err);
}

/* Connect to master i when not connected, and run on_connect there when it has not run. 0, or -1 with err
 * (the connection dropped). */
static int node_ready(struct redis_cluster *cl, int i, struct wc_err *err)
{
    struct redis_cluster_node *n = &cl->map.nodes[i];

    if (n->c == NULL && (n->c = node_connect(cl, n->host, n->port, err)) == NULL) {
        cl->stale = 1;
        return -1;
    }
    if (!n->ready && cl->on_connect != NULL &&
        cl->on_connect(cl, n->c, n->host, n->port, cl->on_connect_arg, err) < 0) {
        node_drop(cl, i);
        return -1;
    }
    n->ready = 1;
    return 0;
}

int redis_cluster_ready_all(struct redis_cluster *cl, struct wc_err *err)
{
    if (cl->stale && redis_cluster_refresh(cl, err) < 0)
        return -1;
    for (int i = 0; i < cl->map.nnode; i++)
        if (node_ready(cl, i, err) < 0)
            return -1;
    return 0;
}

redisReply *redis_cluster_node_command(struct redis_cluster *cl, int i, int argc, const char **argv,
                                       const size_t *len, struct wc_err *err)
{
    redisReply *r;

    if (i < 0 || i >= cl->map.nnode) {
        wc_err_set(err, WC_ERR_INTERNAL, "sink \"%s\": no redis cluster master %d", cl->name, i);
        return NULL;
    }
    if (node_ready(cl, i, err) < 0)
        return NULL;
    r = redisCommandArgv(cl->map.nodes[i].c, argc, argv, len);
    if (r == NULL)
        node_lost(cl, i, err);
    return r;
}
