/*
 * cluster.h - Redis Cluster routing over hiredis: key -> hash slot, the slot map, one connection per
 * master, MOVED/ASK redirections, pipelines per slot sent to every master at once. Private to
 * sinks/redis/. Debian has no hiredis cluster library (hiredis 0.14.1 in bookworm, RESP2 only); this is
 * the little of one that walcast needs, checked against Redis 7.0 (bookworm's redis-server 7.0.15).
 *
 * Pure parts (cluster_map.c, no I/O, tested from strings): CRC16 (XMODEM) and hash tags, a stable short
 * tag for every slot, MOVED/ASK parsing, the slot map from a CLUSTER SHARDS or CLUSTER SLOTS reply.
 * Network parts (cluster.c): connections, topology refresh, redis_cluster_run().
 *
 * Configuration (proposed for the sink; only the DSN parser exists yet, see redis_parse_cluster_dsn):
 *
 *     sinks:
 *       cache:
 *         type: redis
 *         cluster: true
 *         dsn: "redis://[[user]:password@]host[:port][,host[:port]...]"
 *
 * The hosts are seed nodes: any node of the cluster, master or replica; the first that answers gives
 * the map, the others are tried in order when it does not. One user and password for every node (a
 * cluster shares its ACL only by configuration, as every cluster client assumes). No database number:
 * a cluster has only database 0 ("/0" is accepted, anything else is an error).
 *
 * Hash slots: base/keyslot.c (include/walcast/keyslot.h says how hash tags count).
 *
 * Thread safety: none. One struct redis_cluster per thread (the sink's commit thread).
 */
#ifndef WALCAST_SINKS_REDIS_CLUSTER_H
#define WALCAST_SINKS_REDIS_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "walcast/err.h"
#include "walcast/keyslot.h"

#define REDIS_CLUSTER_SLOTS WC_KEYSLOTS
/* Redirections followed for one pipeline before giving up (a slot moving again and again). */
#define REDIS_CLUSTER_MAX_REDIRECTS 5

/* ---- keys and slots (cluster_map.c) ---- */

/* CRC16 and hash slots live in base/keyslot.c (the configuration checks literal keys with them too). */
static inline uint16_t redis_cluster_crc16(const char *buf, size_t len)
{
    return wc_crc16(buf, len);
}
static inline int redis_cluster_keyslot(const char *key, size_t len)
{
    return wc_keyslot(key, len);
}
/*
 * A short string (1 to 3 characters of [0-9a-zA-Z]) whose slot is slot: "{" tag "}" in a key puts the key
 * into that slot. Tags are the first of that alphabet's strings, shortest first, then in alphabet order,
 * that hash to the slot: a pure function of the slot, the same in every version and process (keys made of
 * it are stored; never change the order). Slot 0 is "06S". The table is made at the first call (73,033
 * CRCs, well under a millisecond). Borrowed, static; slot out of range: NULL.
 */
const char *redis_cluster_slot_tag(int slot);

/* ---- redirections (cluster_map.c) ---- */

enum redis_cluster_redirect_kind {
    REDIS_CLUSTER_NO_REDIRECT = 0,
    REDIS_CLUSTER_MOVED, /* the slot has a new master: refresh the map, send there */
    REDIS_CLUSTER_ASK,   /* the slot is migrating: send ASKING then the command to that node, once */
};

struct redis_cluster_redirect {
    int kind;
    int slot;
    char host[256]; /* "" when the server does not know its address ("MOVED 12 :7001"): the node asked */
    int port;
};

/*
 * Parse the text of an error reply, "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>" (the host
 * may be an IPv6 address without brackets: the port follows the last ':'). Returns the kind
 * (REDIS_CLUSTER_NO_REDIRECT for any other error) or -1 for a MOVED or ASK that does not parse (*why
 * then says what is wrong).
 */
int redis_cluster_parse_redirect(const char *msg, size_t len, struct redis_cluster_redirect *out,
                                 const char **why);

/* ---- the slot map (cluster_map.c) ---- */

struct redis_cluster_node {
    char *host;
    int port;
    char id[41];     /* "" when the reply gave none */
    redisContext *c; /* NULL until used, and after its connection was lost */
    int ready;       /* the cluster's on_connect ran on c */
};

struct redis_cluster_map {
    struct redis_cluster_node *nodes; /* the masters that serve at least one slot */
    int nnode;
    int16_t owner[REDIS_CLUSTER_SLOTS]; /* index into nodes; -1 when no master serves the slot */
    int covered;                        /* slots with an owner */
};

/*
 * Fill m (which the caller zeroed or freed) from the reply to CLUSTER SHARDS (Redis 7.0+) or CLUSTER
 * SLOTS (3.0+), RESP2. asked_host names the node asked, for endpoints the reply leaves empty. Every
 * shard's master (role "master") serves its slots; replicas are left out. Returns 0, or -1 with why
 * (static text) for a reply of another shape; then m is left empty.
 */
int redis_cluster_map_from_shards(const redisReply *r, const char *asked_host, struct redis_cluster_map *m,
                                  const char **why);
int redis_cluster_map_from_slots(const redisReply *r, const char *asked_host, struct redis_cluster_map *m,
                                 const char **why);
/* The index of host:port among m's nodes, adding it (without slots) when missing. */
int redis_cluster_map_node(struct redis_cluster_map *m, const char *host, int port);
/* Free the nodes (and close their connections); m is empty afterwards. */
void redis_cluster_map_free(struct redis_cluster_map *m);

/* ---- seeds and credentials (dsn.c) ---- */

struct redis_cluster_addr {
    char *host;
    int port;
};

struct redis_cluster_conf {
    char *user;     /* NULL: AUTH with the password alone */
    char *password; /* NULL: no AUTH; never logged */
    struct redis_cluster_addr *seeds;
    int nseed;
};

/*
 * Parse "redis://[[user]:password@]host[:port][,host[:port]...][/0]" into conf (zeroed by the caller).
 * Errors name the sink and never quote the string (it may hold a password): WC_ERR_CONFIG.
 */
int redis_parse_cluster_dsn(const char *sink, const char *dsn, struct redis_cluster_conf *conf,
                            struct wc_err *err);
void redis_cluster_conf_free(struct redis_cluster_conf *conf);

/* ---- the cluster (cluster.c) ---- */

struct redis_cluster {
    char *name; /* for messages: "sink \"<name>\": ..." */
    struct redis_cluster_conf conf;
    struct redis_cluster_map map;
    int stale;     /* refresh the map before the next run (a MOVED, a lost connection) */
    int no_shards; /* the server has no CLUSTER SHARDS (before 7.0): CLUSTER SLOTS */
    struct timeval connect_timeout, io_timeout;
    /* Optional: run on a master's connection before the first job is sent on it (the sink loads its
     * scripts there); 0, or -1 with err (the connection is then dropped, the job not sent). */
    int (*on_connect)(struct redis_cluster *cl, redisContext *c, const char *host, int port, void *arg,
                      struct wc_err *err);
    void *on_connect_arg;
    struct {
        long refreshes; /* maps read */
        long moved;     /* MOVED replies followed */
        long ask;       /* ASK replies followed */
    } stats;
};

/*
 * A new cluster for the sink name from its dsn (redis_parse_cluster_dsn); no I/O: the map is read at
 * the first run or refresh. NULL with err set (WC_ERR_CONFIG) on a bad dsn.
 */
struct redis_cluster *redis_cluster_new(const char *name, const char *dsn, struct wc_err *err);
/* Close every connection and free cl; NULL is fine. */
void redis_cluster_free(struct redis_cluster *cl);

/*
 * Read the slot map again: CLUSTER SHARDS (or SLOTS) from the first node that answers, trying the known
 * masters, then the seeds. Connections to nodes that are still masters are kept. Errors: WC_ERR_IO when
 * no node answers or none knows a slot's master yet (a cluster still forming); WC_ERR_CONFIG when a node
 * has cluster support disabled or refuses the credentials.
 */
int redis_cluster_refresh(struct redis_cluster *cl, struct wc_err *err);

/* The master of slot per the map (refreshed first when stale); NULL with err set (WC_ERR_IO) when the map
 * cannot be read or no master serves the slot. Borrowed: valid until the next refresh. */
const struct redis_cluster_node *redis_cluster_master(struct redis_cluster *cl, int slot, struct wc_err *err);

/* What became of one job of redis_cluster_run(). */
enum redis_cluster_job_state {
    REDIS_CLUSTER_JOB_NOT_APPLIED = 0, /* not sent, or refused whole (a redirection): certainly not applied */
    REDIS_CLUSTER_JOB_DONE,            /* every reply read into replies[] */
    REDIS_CLUSTER_JOB_UNKNOWN,         /* the connection was lost after sending: applied or not, read the
                                        * slot's cursor to know */
};

/*
 * A pipeline for one hash slot: ncmd commands formatted as RESP (redisFormatCommandArgv) in
 * cmds[0..len), all of whose keys are in slot. It must be all or nothing, so that a redirection means
 * nothing ran and the whole pipeline can be sent again: one command, or MULTI, commands, EXEC (a command
 * redirected while queued makes EXEC fail with EXECABORT; an EXEC redirected discards the transaction).
 */
struct redis_cluster_job {
    int slot;
    const char *cmds; /* borrowed */
    size_t len;
    int ncmd;
    /* Optional RESP sent before and after cmds (borrowed; ncmd counts their commands too): a unit's
     * MULTI and EXEC around commands queued elsewhere, without copying them. */
    const char *head, *tail;
    size_t headlen, taillen;
    /* out */
    int state;            /* enum redis_cluster_job_state */
    redisReply **replies; /* ncmd of them, by the caller: filled with new replies (free each) when DONE */
    char node[280];       /* "host:port" of the node that answered (or was being sent to), for messages */
    int redirects;        /* MOVED and ASK followed for this job */
};

/*
 * Run the jobs: each is written to its slot's master, all of them before any reply is read, so the
 * masters work side by side; then the replies are read, job by job. A job answered with MOVED (the map is
 * refreshed, the MOVED address is trusted for that slot) or ASK (ASKING, then the job, to the node named,
 * the map unchanged) is sent again, up to REDIS_CLUSTER_MAX_REDIRECTS times. Other error replies (a
 * command's own, CROSSSLOT, TRYAGAIN during a migration, CLUSTERDOWN) are the caller's: they are in
 * replies[] of a DONE job.
 *
 * Returns 0 when every job is DONE. Else -1 with err for the first failure: WC_ERR_IO for a lost
 * connection (the node's connection is closed, the map marked stale; jobs on other nodes still finish)
 * or too many redirections, WC_ERR_INTERNAL for a job that is not all or nothing or whose keys are not
 * in its slot (a MOVED for another slot). Each job's state says what became of it.
 */
int redis_cluster_run(struct redis_cluster *cl, struct redis_cluster_job *jobs, int njob, struct wc_err *err);

/* Connect to every master of the map (read first when stale) and run on_connect on each. 0, or -1 with
 * err. */
int redis_cluster_ready_all(struct redis_cluster *cl, struct wc_err *err);
/* Run one command on master i of the map (connected and readied as a job would be): its reply (new), or
 * NULL with err (WC_ERR_IO: the connection was lost and is dropped). For commands of a whole node
 * (FLUSHDB, INFO, CONFIG GET, WAIT). */
redisReply *redis_cluster_node_command(struct redis_cluster *cl, int i, int argc, const char **argv,
                                       const size_t *len, struct wc_err *err);

/* Make every connection run on_connect again before its next job (the sink's scripts were flushed). */
void redis_cluster_unready(struct redis_cluster *cl);

/* One job: redis_cluster_run() of a single pipeline for slot; replies as there. */
int redis_cluster_pipeline(struct redis_cluster *cl, int slot, const char *cmds, size_t len, int ncmd,
                           redisReply **replies, struct wc_err *err);

#endif
