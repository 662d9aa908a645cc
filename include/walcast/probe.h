/*
 * probe.h - read-only looks at a Redis sink's server through the sink's own connection code (its DSN,
 * AUTH and SELECT), for `walcast doctor`, `walcast status` and the metrics poller.
 */
#ifndef WALCAST_PROBE_H
#define WALCAST_PROBE_H

#include "walcast/err.h"
#include "walcast/sink.h"

struct wc_redis_info {
    char version[32];          /* "" when unknown */
    long long maxmemory;       /* bytes, 0 = no limit; -1 unknown */
    char maxmemory_policy[32]; /* "" when unknown */
    int appendonly;            /* 1 yes, 0 no, -1 unknown */
    char appendfsync[16];      /* always, everysec, no; "" when unknown */
    int cluster_enabled;       /* 1, 0, -1 unknown */
    long long dead_letters;    /* entries in the slot's dead-letter stream; -1 unknown */
    char config_error[256];    /* why CONFIG GET failed (renamed or refused), "" when it worked */
};

/* What the server of an opened Redis sink says about itself. 0, or -1 with err (the connection). */
int wc_sink_redis_info(struct wc_sink *s, struct wc_redis_info *out, struct wc_err *err);
/* A connection of its own to the server of a single-server Redis sink (its DSN's host, AUTH and SELECT;
 * replies may take the sink's statement_timeout_ms), for a reader: walcast wait-lsn. NULL with err. The
 * caller frees it with redisFree(). */
struct redisContext;
struct redisContext *wc_redis_reader(const struct wc_sink_conf *conf, struct wc_err *err);
/* The password of a Redis DSN (new string), NULL when it has none or does not parse. */
char *wc_redis_dsn_password(const char *dsn);
/* A command on a (single-node) Redis sink's own connection: its reply (free with freeReplyObject), or NULL
 * with err (not open, a cluster sink, the connection failed). */
struct redisReply;
struct redisReply *wc_sink_redis_command(struct wc_sink *s, int argc, const char **argv, const size_t *len,
                                         struct wc_err *err);

/*
 * A Redis Cluster sink, opened (walcast rebuild and verify): its masters (0 for one server; -1 with err
 * when they cannot be reached), a command on master i (its reply, or NULL with err), the master that
 * serves a key's hash slot (-1: none), and the name of walcast's key what ("cursor", "directory", ...) of
 * hash slot slot, walcast:<what>:{T(slot)}:<replication slot> (slot -1: the slot's "home", where the
 * directory is).
 */
int wc_sink_redis_masters(struct wc_sink *s, struct wc_err *err);
struct redisReply *wc_sink_redis_master_command(struct wc_sink *s, int i, int argc, const char **argv,
                                                const size_t *len, struct wc_err *err);
int wc_sink_redis_key_master(struct wc_sink *s, const char *key, size_t len);
int wc_sink_redis_slot_master(struct wc_sink *s, int slot);
void wc_sink_redis_cluster_key(struct wc_sink *s, const char *what, int slot, char *buf, size_t size);

#endif
