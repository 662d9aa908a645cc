/*
 * csink.h - the Redis sink in a Redis Cluster (sinks.NAME.cluster: true): the same projections and
 * generated scripts as one Redis (redis.h), with the hash slot as the atomic unit. Private to sinks/redis/.
 *
 * A MULTI/EXEC or a script in a cluster may only touch keys of one hash slot, so each hash slot S that a
 * batch writes gets its own unit, on S's master, with S's own cursor:
 *
 *     MULTI
 *     EVALSHA guard  cursor(S) halt(S)  <sink> <what walcast stored in S last>   (lost writes: halt)
 *     EVALSHA <type's script> dl(S) cursor(S) halt(S) <keys> ... <mask>          one per event part in S
 *     EVALSHA cursor cursor(S) halt(S)  HSET <sink> <batch cursor>                (unless halted)
 *     EXEC
 *
 * An event's actions are grouped by the slot of their keys (every key of one action must be in one slot:
 * literal keys are checked when the configuration loads, rendered ones here); each group is the event's
 * part in that slot, applied there exactly once, atomically (the mask tells the script which actions). A
 * reader may see one slot's part before another's; keys that share a {hash tag} are always consistent
 * with each other. The units go to every master at once (redis_cluster_run, MOVED/ASK followed); when
 * all are acknowledged one HSET moves the sink's floor in its directory (below), then the commit returns.
 *
 * Keys (T(S) = redis_cluster_slot_tag(S), <rs> = the replication slot, H = the slot of <rs>, "home"):
 *     walcast:cursor:{T(S)}:<rs>        hash <sink> -> cursor of S ("everything for S up to here")
 *     walcast:halt:{T(S)}:<rs>:<sink>   set by a guard or a halting event, deleted in the same EXEC
 *     walcast:dead_letters:{T(S)}:<rs>  stream: dead letters of the parts applied in S (records: mask)
 *     walcast:retried:{T(S)}:<rs>:<id>  a dlq retry's part applied in S (PX 7 days)
 *     walcast:directory:{T(H)}:<rs>     hash <sink>:floor -> the sink's start position (the cursor of the
 *                                       last batch acknowledged in every slot); <sink>:<S> -> the cursor
 *                                       S had then; <sink>:state -> "rebuilding" during a reset
 *     walcast:owner                     the owner records, as one Redis has them (sinks/owner.c)
 *
 * Start: read_cursor reads the directory and every slot's cursor (16384 HGETs, the masters side by side).
 * A slot whose cursor is behind what the directory recorded for it lost acknowledged writes (a failover
 * to a replica that had not received them): the sink is rebuilt (sinks.NAME.rebuild: flushdb; every
 * master flushed, replayed from the outbox table) or the engine stops with the slot, its master and both
 * cursors. Otherwise read_cursor returns the floor, and events between it and a slot's own cursor are
 * skipped in that slot. While running, the guard catches a slot that lost writes at its next unit (nothing
 * of that unit is applied; the sink reopens and checks as at start), and a new master (a failover: the
 * masters' node ids are compared at least once a second and after every refresh of the map) reopens the
 * sink, so that every slot is checked again.
 *
 * Scripts: loaded on every master connection before its first unit, all in one MULTI (the on_connect hook
 * of cluster.c), so that a master's script cache holds all of them or none; a unit refused for NOSCRIPT
 * (every EVALSHA of it) did nothing and is sent again after a reload. Every command of a unit is an
 * EVALSHA for that reason (the cursor too).
 */
#ifndef WALCAST_SINKS_REDIS_CSINK_H
#define WALCAST_SINKS_REDIS_CSINK_H

#include "cluster.h"
#include "redis.h"

/* One hash slot's part of a batch: the EVALSHAs of the event parts to apply there, in order, and the
 * record each belongs to. Reused from batch to batch (no allocation once warm). */
struct cunit {
    int slot;
    struct wc_buf cmds;
    int ncmd;
    int *rec; /* per command: its record's index in the batch */
    int cap;
};

struct cbatch {
    int16_t unit_of[REDIS_CLUSTER_SLOTS]; /* slot -> index into units, -1: none (reset through units) */
    struct cunit *units;
    int nunit, cap;
    struct wc_recs recs;
};

/* walcast's keys of one slot: dead letters, cursor, halt, each NUL-terminated, one after the other. */
struct slot_keys {
    size_t len[3];
    char text[];
};

struct csink {
    struct redis_cluster *cl;
    const char *rs; /* the replication slot: in every key's name (borrowed from the configuration) */
    int home;       /* H: the slot of rs, where the directory is */
    char *dir_key;
    /* Per slot, WC_POS_NONE for none. skip: the cursors read at open (apply() skips the events they
     * cover; only the engine's thread reads them). acked: what walcast stored in each slot last (the
     * guards expect it; only the commit thread touches it after open). */
    struct wc_pos *skip, *acked;
    struct wc_pos floor;
    int read; /* the cursors were read since open */
    /* A commit failed part way: operations refuse (WC_ERR_IO) until the sink reopens. Set on the commit
     * thread, read on the engine's: cs_broken(). */
    int broken;
    /* Two batches: apply() queues into b while commit_detached() sends cb on the commit thread. */
    struct cbatch bufs[2], *b, *cb;
    /* commit scratch */
    struct redis_cluster_job *jobs;
    int jobcap;
    redisReply **replies;
    int repcap;
    struct wc_buf wire; /* the heads and tails of the units, the directory HSET */
    char ids[8][41];    /* the masters' node ids when the cursors were checked (failover detection) */
    int nid;
    int64_t checked_ms;      /* when the topology was last compared with ids */
    long refreshes;          /* the map's refreshes then */
    struct slot_keys **keys; /* per slot, made at its first use by apply() */
    /* apply() scratch: per action its slot, the slots of the event, the mask; the rendered keys */
    int *slot_of, *parts;
    char *mask;
    int actcap;
    size_t *keyoff, *keylen, *valoff, *vallen;
    int keycap, valcap;
    /* dlq retry: the slot and stream id of the dead letter retried, and its mask (NULL: every action) */
    int retry_slot;
    const char *retry_mask;
};

/* A key of walcast's for slot: "walcast:<what>:{T(slot)}:<rs>" and ":<suffix>" when suffix is not NULL,
 * into buf (at least CS_KEYLEN bytes). Returns its length. */
#define CS_KEYLEN 256
size_t cs_key(char *buf, const char *what, int slot, const char *rs, const char *suffix);

/* csink.c: open, cursors, close; one command routed by its key; one command per slot for many slots. */
extern const struct wc_sink_ops wc_sink_redis_cluster_ops;
int cs_read_cursors(struct wc_sink *s, struct wc_err *err);
/* Remember the masters' node ids (the cursors were just checked): a commit that finds another master
 * reopens the sink, which checks every slot again (a failover). */
void cs_remember_masters(struct csink *cs);
redisReply *cs_command(struct wc_sink *s, int argc, const char **argv, const size_t *len, struct wc_err *err);
/* One command in slot (its keys are there), routed to the slot's master: its reply (new), or NULL with err.
 */
redisReply *cs_command_in(struct wc_sink *s, int slot, int argc, const char **argv, const size_t *len,
                          struct wc_err *err);
/* For each of slots[0..n) the command fmt(buf, slot, arg) appends (RESP, keys in that slot), all sent at
 * once; replies[i] (new) for slots[i]. 0, or -1 with err. */
int cs_per_slot(struct wc_sink *s, const int *slots, int n,
                void (*fmt)(struct wc_buf *b, int slot, void *arg), void *arg, redisReply **replies,
                struct wc_err *err);
/* Format one command as RESP onto b. */
void cs_format(struct wc_buf *b, int argc, const char **argv, const size_t *len);

/* cqueue.c: batches and apply() */
void cs_batch_reset(struct cbatch *b);
void cs_batch_free(struct cbatch *b);
int cs_apply(struct wc_sink *s, struct wc_event *ev, struct wc_err *err);
int cs_dead_letter(struct wc_sink *s, struct wc_commit *in, struct wc_event *ev, const char *error,
                   struct wc_err *err);

/* ccommit.c */
void cs_detach(struct wc_sink *s);
int cs_commit_detached(struct wc_sink *s, struct wc_commit *c, struct wc_err *err);
int cs_commit(struct wc_sink *s, struct wc_pos cursor, struct wc_err *err);
int cs_reset(struct wc_sink *s, struct wc_err *err);

/* cdlq.c: dead letters and owner records */
extern const struct wc_dlq_ops cs_dlq_ops;
extern const struct wc_owner_ops cs_owner_ops;
struct wc_redis_info;
/* What the masters say about themselves (walcast/probe.h): the weakest setting of any master; the dead
 * letters of every slot the sink has written. */
int cs_info(struct wc_sink *s, struct wc_redis_info *out, struct wc_err *err);

static inline int cs_broken(const struct csink *cs)
{
    return __atomic_load_n(&cs->broken, __ATOMIC_ACQUIRE);
}

#endif
