/*
 * shadow.h - a PostgreSQL projection's shadow (shadow_pg.c) and the online rebuild that fills it and
 * swaps it in (reshadow.c), for `walcast rebuild` and `walcast verify`. Private to src/.
 *
 * A rebuild unit is one projection (--projection) or every projection of a sink (--sink). Its shadow is
 * a schema walcast_shadow_<unit> in the sink's database with a copy of each table the unit owns
 * (projections.NAME.tables), made LIKE the live one INCLUDING ALL with the live indexes' names; its
 * cursor is the walcast_cursor row of sink "<sink>:rebuild:<unit>", its dead letters go under that name
 * too. The source side is a replication slot walcast_rb_<unit> created with an exported snapshot.
 */
#ifndef WALCAST_SHADOW_H
#define WALCAST_SHADOW_H

#include <stdint.h>

#include <libpq-fe.h>

#include "walcast/config.h"
#include "walcast/err.h"
#include "walcast/lsn.h"

struct wc_shadow {
    PGconn *conn; /* walcast's role on the sink's database: the unit's lock, the DDL, the swap */
    const struct wc_config *cfg;
    const struct wc_sink_conf *live;
    char unit[64];
    char schema[128];    /* walcast_shadow_<unit> */
    char slot[128];      /* walcast_rb_<unit>, on the source */
    char sink_name[200]; /* <sink>:rebuild:<unit>: the shadow's cursor row and dead letters */
    int whole;           /* the unit is the whole sink */
    int verify;          /* walcast verify's shadow, not a rebuild's */
    int ntable;
    char (*live_schema)[64]; /* each owned table as it resolves in the sink's search path */
    char (*table)[64];
    const char **projections; /* the unit's projection names (borrowed from cfg) */
    int nprojection;
    int wait_ms;
    /* A Redis unit (shadow_redis.c): the shadow sink whose connection it uses, the prefix of its keys, the
     * live keys' patterns (projections.NAME.keys), the live cursor as last read (the swap's condition). */
    int redis;
    struct wc_sink *rk;
    char prefix[120];
    char live_raw[64];
    const char **patterns;
    int npattern;
    /* A Redis Cluster unit (shadow_rcluster.c): the position the shadow reached (the swap's and the
     * comparison's), the slots swapped so far, keys moved in, rounds tried. */
    int cluster;
    struct wc_pos at;
    unsigned char *swapped;
    long long moved;
    int rounds;
};

/* The hash of the engine's slot that a rebuild's slot name ends with: walcast_rb_<unit>_<%08x>
 * (verify: walcast_vf_). */
uint32_t wc_shadow_slot_hash(const char *slot);

/* Connect, take the unit's lock (one rebuild of a unit at a time) and resolve its tables. -1 with err:
 * WC_ERR_CONFIG for a projection that declares no tables, a table that does not exist, another
 * rebuild of the unit running. */
int wc_shadow_open(struct wc_shadow *sh, const struct wc_config *cfg, const char *projection,
                   const char *sink, int verify, struct wc_err *err);
void wc_shadow_close(struct wc_shadow *sh);
/* The shadow's cursor (*found 0: none) and whether its schema exists. */
int wc_shadow_state(struct wc_shadow *sh, struct wc_pos *cursor, int *found, int *exists, struct wc_err *err);
/* Start afresh: drop any earlier shadow, make the schema and the empty copies, forget its cursor and dead
 * letters. */
int wc_shadow_prepare(struct wc_shadow *sh, struct wc_err *err);
/* Drop the shadow, its cursor and dead letters (not the slot). */
int wc_shadow_drop(struct wc_shadow *sh, struct wc_err *err);
/* The live sink's cursor. */
int wc_shadow_live_cursor(struct wc_shadow *sh, struct wc_pos *out, int *found, struct wc_err *err);
/* The swap's first half: in one transaction, lock the unit's live tables (share: against writers only, for
 * verify), then the live cursor row; *at is the live cursor, frozen until wc_shadow_swap_end. 1 when locked,
 * 0 when a lock could not be had in time (readers or the live engine: try again later), -1 with err. */
int wc_shadow_swap_begin(struct wc_shadow *sh, int share, struct wc_pos *at, int *found, struct wc_err *err);
/* The second half: move the live tables out and the shadow's in (grants copied, owner kept), drop the
 * old ones, move the shadow's dead letters to the live sink; with set_cursor, store *set_cursor as the live
 * cursor (a whole sink rebuilt after it lost data); commit. */
int wc_shadow_swap_end(struct wc_shadow *sh, const struct wc_pos *set_cursor, struct wc_err *err);
void wc_shadow_swap_abort(struct wc_shadow *sh);

/* verify: rows of each live table missing from its shadow, extra, different (same key, other values);
 * prints a summary with up to `examples` examples per table; *drift the total. Run with the live tables
 * locked (between swap_begin and swap_abort). */
int wc_shadow_compare(struct wc_shadow *sh, int examples, long long *drift, struct wc_err *err);

/* shadow_redis.c: the Redis side of the above (sh->redis). */
int wc_rshadow_wipe(struct wc_shadow *sh, struct wc_err *err);
int wc_rshadow_cursor(struct wc_shadow *sh, const char *sink, struct wc_pos *out, int *found,
                      struct wc_err *err);
/* The swap of a Redis rebuild, one script: if the live cursor is still sh->live_raw, unlink the live keys
 * of the unit's patterns, rename the shadow's keys to their live names and forget the shadow's cursor. 1
 * swapped (*keys: how many moved in), 0 the live sink committed meanwhile (try again), -1 with err. */
int wc_rshadow_swap(struct wc_shadow *sh, long long *keys, struct wc_err *err);
/* CLIENT PAUSE WRITE (pause 1) or CLIENT UNPAUSE (0). */
int wc_rshadow_pause(struct wc_shadow *sh, int pause, struct wc_err *err);
int wc_rshadow_compare(struct wc_shadow *sh, int examples, long long *drift, struct wc_err *err);

/* Lua for the scripts of shadow_redis.c and shadow_rcluster.c: each(pattern, f) calls f on every key of
 * the server (a cluster's master) that matches pattern, by SCAN (a key may come twice). */
#define WC_LUA_EACH                                                                                          \
    "local function each(pattern, f)\n"                                                                      \
    "  local cur = '0'\n"                                                                                    \
    "  repeat\n"                                                                                             \
    "    local r = redis.call('SCAN', cur, 'MATCH', pattern, 'COUNT', 1000)\n"                               \
    "    cur = r[1]\n"                                                                                       \
    "    for _, k in ipairs(r[2]) do f(k) end\n"                                                             \
    "  until cur == '0'\n"                                                                                   \
    "end\n"

/* shadow_rcluster.c: the same on a Redis Cluster (sh->cluster), called by shadow_redis.c. The swap goes
 * in rounds: 1 every slot swapped, 0 some slots' live cursors had moved past sh->at (again later). The
 * comparison is made only when wc_rcshadow_level says every slot's live cursor is at or before at. */
struct redisReply;
struct redisReply *wc_rcshadow_key_command(struct wc_shadow *sh, int argc, const char **argv,
                                           struct wc_err *err);
int wc_rcshadow_masters(struct wc_shadow *sh, struct wc_err *err);
struct redisReply *wc_rcshadow_master_command(struct wc_shadow *sh, int i, int argc, const char **argv,
                                              struct wc_err *err);
const char *wc_rcshadow_live_name(const struct wc_shadow *sh, const char *shadow_key);
int wc_rcshadow_cursor(struct wc_shadow *sh, const char *sink, struct wc_pos *out, int *found,
                       struct wc_err *err);
int wc_rcshadow_wipe(struct wc_shadow *sh, struct wc_err *err);
int wc_rcshadow_swap(struct wc_shadow *sh, long long *keys, struct wc_err *err);
int wc_rcshadow_pause(struct wc_shadow *sh, int pause, struct wc_err *err);
int wc_rcshadow_level(struct wc_shadow *sh, struct wc_pos at, struct wc_err *err);

/* Tests: WALCAST_REBUILD_FAILPOINT=replay|catchup|swap makes the process kill itself (SIGKILL) at that
 * point: in the middle of the replay, once caught up with the stream, or inside the swap's transaction
 * just before its COMMIT. */
void wc_rebuild_failpoint(const char *name);

/* The online rebuild (reshadow.c). verify: build the shadow, compare it at the live position, drop it. */
struct wc_rebuild_opts {
    const char *projection; /* or */
    const char *sink;
    int discard;
    int verify;
};
/* 0 done (verify: no drift), 1 verify found drift, -1 with err. */
int wc_rebuild_run(const struct wc_config *cfg, const struct wc_rebuild_opts *o, struct wc_err *err);

/* projrec.c: record which projections of sink sc (names: n of them; NULL = all of the sink's) with their
 * fingerprints, on c (inside the caller's transaction, when it has one). */
int wc_projections_record(PGconn *c, const struct wc_config *cfg, const struct wc_sink_conf *sc,
                          const char *const *names, int n, struct wc_err *err);
/* Hash walcast:projections:<slot>:<sink>: a Redis sink's record (field: projection, value: fingerprint). */
void wc_projections_redis_key(const struct wc_config *cfg, const struct wc_sink_conf *sc, char *buf,
                              size_t size);
/* Record projections names (n) of Redis Cluster sink sc through k, an open cluster sink of its. */
struct wc_sink;
int wc_projections_record_cluster(struct wc_sink *k, const struct wc_config *cfg,
                                  const struct wc_sink_conf *sc, const char *const *names, int n,
                                  struct wc_err *err);
/* At start: report (or with rebuild: auto, rebuild) the projections of sink sc (PostgreSQL, or one Redis
 * server) that are new or changed since the sink's record; a sink without a record gets one. */
int wc_projections_check(const struct wc_config *cfg, const struct wc_sink_conf *sc, struct wc_err *err);
/* The same on a connection of its own, for every projection of the sink (after a rebuild at start; PostgreSQL
 * or Redis). */
int wc_projections_record_sink(const struct wc_config *cfg, const struct wc_sink_conf *sc,
                               struct wc_err *err);
/* `walcast status`: the same report, as warnings appended to the JSON array warnings. */
struct json_t;
void wc_projections_warnings(const struct wc_config *cfg, struct json_t *warnings);

#endif
