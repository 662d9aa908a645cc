/*
 * projrec.c - which projections a sink's cursor covers, each with a fingerprint of its definition
 * (wc_projection_fingerprint): a PostgreSQL sink keeps them in table walcast_projections (per slot and
 * sink), a Redis sink in hash walcast:projections:<slot>:<sink> (field: projection, value: fingerprint)
 * in its database. At start a projection the record lacks (added to the configuration) or whose
 * fingerprint differs (its statements changed) is reported with the command that rebuilds it, or rebuilt
 * right away by a `walcast rebuild` child process when it has `rebuild: auto`. A successful rebuild
 * records what it swapped in (a Redis one in its swap script: wc_rshadow_swap; a Redis Cluster's once
 * every hash slot is swapped: the key is in one slot). A Redis Cluster sink's record is read and written
 * through a cluster sink of its own (the key's master).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "shadow.h"
#include "walcast/log.h"
#include "walcast/pgconn.h"
#include "walcast/probe.h"
#include "walcast/sink.h"

#define CREATE_SQL                                                                                           \
    "DO $walcast$ BEGIN IF to_regclass('walcast_projections') IS NULL THEN "                                 \
    "CREATE TABLE walcast_projections (slot text, sink text, projection text, fingerprint text NOT NULL, "   \
    "recorded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (slot, sink, projection)); END IF; END "    \
    "$walcast$"
#define UPSERT_SQL                                                                                           \
    "INSERT INTO walcast_projections (slot, sink, projection, fingerprint) VALUES ($1, $2, $3, $4) ON "      \
    "CONFLICT "                                                                                              \
    "(slot, sink, projection) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, recorded_at = now()"

/* Nothing here waits on the server without a deadline (the engine's thread runs the check at start). */
#define WAIT_MS 5000

static PGresult *ex(PGconn *c, const char *sql, int n, const char *const *params)
{
    struct wc_err ignored;
    return wc_pg_exec(c, sql, n, params, WAIT_MS, &ignored);
}

static int ok(PGresult *r)
{
    int st = PQresultStatus(r);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

int wc_projections_record(PGconn *c, const struct wc_config *cfg, const struct wc_sink_conf *sc,
                          const char *const *names, int n, struct wc_err *err)
{
    PGresult *r = ex(c, "SELECT to_regclass('walcast_projections') IS NOT NULL", 0, NULL);
    int good = ok(r), exists = good && strcmp(PQgetvalue(r, 0, 0), "t") == 0;

    PQclear(r);
    if (good && !exists) {
        /* Made where walcast's role may (never inside the caller's transaction: a refusal would end it). */
        if (PQtransactionStatus(c) == PQTRANS_IDLE) {
            r = ex(c, CREATE_SQL, 0, NULL);
            exists = ok(r);
            PQclear(r);
        }
        if (!exists) {
            wc_debug("sink \"%s\": no walcast_projections table: its projections are not recorded", sc->name);
            return 0;
        }
    }
    for (int i = 0; good && i < cfg->nprojection; i++) {
        const struct wc_projection *p = &cfg->projections[i];
        int want = names == NULL;
        for (int k = 0; k < n && !want; k++)
            want = strcmp(names[k], p->name) == 0;
        if (!want || &cfg->sinks[p->sink] != sc)
            continue;
        char fp[17];
        wc_projection_fingerprint(cfg, p, fp);
        const char *params[4] = {cfg->slot, sc->name, p->name, fp};
        r = ex(c, UPSERT_SQL, 4, params);
        good = ok(r);
        PQclear(r);
    }
    if (!good) {
        char msg[400];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        msg[strcspn(msg, "\n")] = '\0';
        wc_err_set(err, WC_ERR_DATA,
                   "sink \"%s\": could not record its projections in walcast_projections: %s", sc->name, msg);
        return -1;
    }
    return 0;
}

/* `walcast rebuild -c FILE --projection NAME` as a child of its own (double fork: nobody waits for it). */
static void spawn_rebuild(const struct wc_config *cfg, const char *name)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (fork() == 0) {
            char exe[4096];
            ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
            if (n > 0) {
                exe[n] = '\0';
                execl(exe, "walcast", "rebuild", "-c", cfg->path, "--projection", name, (char *)NULL);
            }
            _exit(127);
        }
        _exit(0);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

typedef void (*found_fn)(const struct wc_config *, const struct wc_sink_conf *, const struct wc_projection *,
                         const char *, void *);

/* The fingerprint a record holds for projection name, or NULL (a PGresult of walcast_projections' rows,
 * or a Redis HGETALL reply). */
typedef const char *(*recorded_fn)(const void *rec, const char *name);

static const char *pg_recorded(const void *rec, const char *name)
{
    PGresult *r = (PGresult *)rec;
    for (int k = 0; k < PQntuples(r); k++)
        if (strcmp(PQgetvalue(r, k, 0), name) == 0)
            return PQgetvalue(r, k, 1);
    return NULL;
}

static const char *redis_recorded(const void *rec, const char *name)
{
    const redisReply *r = rec;
    for (size_t k = 0; k + 1 < r->elements; k += 2)
        if (strcmp(r->element[k]->str, name) == 0)
            return r->element[k + 1]->str;
    return NULL;
}

/* fn(p, had) for each projection of sink sc that the record lacks (had NULL) or has with another
 * fingerprint (had: the recorded one). */
static void diff(const struct wc_config *cfg, const struct wc_sink_conf *sc, recorded_fn recorded,
                 const void *rec, found_fn fn, void *arg)
{
    for (int i = 0; i < cfg->nprojection; i++) {
        const struct wc_projection *p = &cfg->projections[i];
        char fp[17];
        if (&cfg->sinks[p->sink] != sc)
            continue;
        wc_projection_fingerprint(cfg, p, fp);
        const char *had = recorded(rec, p->name);
        if (had == NULL || strcmp(had, fp) != 0)
            fn(cfg, sc, p, had, arg);
    }
}

/*
 * Compare sink sc's record with the configuration on c: fn(p, had) for each projection that is new (had
 * NULL) or changed (had: the recorded fingerprint). A sink without a record gets one (its first start).
 * 0, or -1 with err; a database without walcast_projections (a role that may not create it) is 0.
 */
static int compare(PGconn *c, const struct wc_config *cfg, const struct wc_sink_conf *sc, int record,
                   found_fn fn, void *arg, struct wc_err *err)
{
    const char *params[2] = {cfg->slot, sc->name};
    PGresult *r;

    if (record)
        PQclear(ex(c, CREATE_SQL, 0, NULL));
    r = ex(c, "SELECT projection, fingerprint FROM walcast_projections WHERE slot = $1 AND sink = $2", 2,
           params);
    if (!ok(r)) {
        /* No record kept here: nothing to compare with. */
        wc_debug("sink \"%s\": no record of its projections: %s", sc->name, PQerrorMessage(c));
        PQclear(r);
        return 0;
    }
    int n = PQntuples(r);
    if (n == 0) {
        /* The first start with a record (or of the sink): what it has is what the configuration says. */
        PQclear(r);
        return record ? wc_projections_record(c, cfg, sc, NULL, 0, err) : 0;
    }
    diff(cfg, sc, pg_recorded, r, fn, arg);
    PQclear(r);
    return 0;
}

/* ---- a Redis sink's record: hash walcast:projections:<slot>:<sink> ---- */

void wc_projections_redis_key(const struct wc_config *cfg, const struct wc_sink_conf *sc, char *buf,
                              size_t size)
{
    snprintf(buf, size, "walcast:projections:%s:%s", cfg->slot, sc->name);
}

/* A Redis sink's connection for its record: one server's (a reader's connection), or a Redis Cluster
 * sink of its own, whose record key goes to the master that serves it. */
struct rconn {
    redisContext *c;
    struct wc_sink *k;
};

static int rconn_open(const struct wc_config *cfg, const struct wc_sink_conf *sc, struct rconn *rc,
                      struct wc_err *err)
{
    memset(rc, 0, sizeof(*rc));
    if (!sc->cluster)
        return (rc->c = wc_redis_reader(sc, err)) != NULL ? 0 : -1;
    if ((rc->k = wc_sink_new(cfg, sc, err)) == NULL)
        return -1;
    if (rc->k->ops->open(rc->k, err) < 0) {
        wc_sink_free(rc->k);
        rc->k = NULL;
        return -1;
    }
    return 0;
}

static void rconn_close(struct rconn *rc)
{
    if (rc->c)
        redisFree(rc->c);
    wc_sink_free(rc->k);
}

static redisReply *rcmd(struct rconn *rc, const struct wc_sink_conf *sc, int argc, const char **argv,
                        struct wc_err *err)
{
    redisReply *r = NULL;
    if (rc->k != NULL) {
        int m = wc_sink_redis_masters(rc->k, err) > 0
                    ? wc_sink_redis_key_master(rc->k, argv[1], strlen(argv[1]))
                    : -1;
        if (m >= 0)
            r = wc_sink_redis_master_command(rc->k, m, argc, argv, NULL, err);
        else if (err->msg[0] == '\0')
            wc_err_set(err, WC_ERR_IO, "no redis cluster master serves it");
        if (r == NULL) {
            wc_err_prefix(err, "sink \"%s\": could not %s its record of projections (%s)", sc->name,
                          strcmp(argv[0], "HSET") == 0 ? "write" : "read", argv[1]);
            return NULL;
        }
    } else {
        r = redisCommandArgv(rc->c, argc, argv, NULL);
    }
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": could not %s its record of projections (%s): %s", sc->name,
                   strcmp(argv[0], "HSET") == 0 ? "write" : "read", argv[1],
                   r                           ? r->str
                   : rc->c && rc->c->errstr[0] ? rc->c->errstr
                                               : "connection lost");
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* HSET the projections of sink sc called names (n of them; NULL: all of the sink's) with their
 * fingerprints. */
static int redis_record(struct rconn *c, const struct wc_config *cfg, const struct wc_sink_conf *sc,
                        const char *const *names, int n, struct wc_err *err)
{
    char key[300];
    int argc = 2;
    const char **argv = calloc((size_t)(2 + 2 * cfg->nprojection), sizeof(char *));
    char(*fps)[17] = calloc((size_t)cfg->nprojection + 1, sizeof(*fps));

    wc_projections_redis_key(cfg, sc, key, sizeof(key));
    argv[0] = "HSET";
    argv[1] = key;
    for (int i = 0; i < cfg->nprojection; i++) {
        const struct wc_projection *p = &cfg->projections[i];
        int want = names == NULL;
        for (int k = 0; k < n && !want; k++)
            want = strcmp(names[k], p->name) == 0;
        if (!want || &cfg->sinks[p->sink] != sc)
            continue;
        wc_projection_fingerprint(cfg, p, fps[i]);
        argv[argc++] = p->name;
        argv[argc++] = fps[i];
    }
    redisReply *r = argc > 2 ? rcmd(c, sc, argc, argv, err) : NULL;
    int rc = argc == 2 || r != NULL ? 0 : -1;
    freeReplyObject(r);
    free(argv);
    free(fps);
    return rc;
}

int wc_projections_record_cluster(struct wc_sink *k, const struct wc_config *cfg,
                                  const struct wc_sink_conf *sc, const char *const *names, int n,
                                  struct wc_err *err)
{
    struct rconn c = {.k = k};
    return redis_record(&c, cfg, sc, names, n, err);
}

/* As compare(), on a Redis sink's own connection. */
static int redis_compare(struct rconn *c, const struct wc_config *cfg, const struct wc_sink_conf *sc,
                         int record, found_fn fn, void *arg, struct wc_err *err)
{
    char key[300];
    wc_projections_redis_key(cfg, sc, key, sizeof(key));
    const char *argv[2] = {"HGETALL", key};
    redisReply *r = rcmd(c, sc, 2, argv, err);
    if (r == NULL)
        return -1;
    int n = r->type == REDIS_REPLY_ARRAY ? (int)r->elements / 2 : 0;
    if (n == 0) {
        freeReplyObject(r);
        return record ? redis_record(c, cfg, sc, NULL, 0, err) : 0;
    }
    diff(cfg, sc, redis_recorded, r, fn, arg);
    freeReplyObject(r);
    return 0;
}

static void describe(const struct wc_config *cfg, const struct wc_sink_conf *sc,
                     const struct wc_projection *p, const char *had, char *buf, size_t size)
{
    snprintf(buf, size,
             "projection \"%s\" %s sink \"%s\": its %s hold %s; rebuild it with \"walcast rebuild -c %s "
             "--projection %s\" (or set projections.%s.rebuild: auto)",
             p->name, had == NULL ? "is new to" : "changed since it was built in", sc->name,
             sc->type == WC_SINK_REDIS ? "keys" : "tables",
             had == NULL ? "only the events applied since it was added" : "what the old definition made",
             cfg->path ? cfg->path : "FILE", p->name, p->name);
}

static void at_start(const struct wc_config *cfg, const struct wc_sink_conf *sc,
                     const struct wc_projection *p, const char *had, void *arg)
{
    char msg[1024];
    (void)arg;
    if (p->rebuild_auto && cfg->path != NULL) {
        wc_warning(
            "projection \"%s\" %s sink \"%s\": rebuilding it (rebuild: auto) with \"walcast rebuild -c %s "
            "--projection %s\"",
            p->name, had == NULL ? "is new to" : "changed since it was built in", sc->name, cfg->path,
            p->name);
        spawn_rebuild(cfg, p->name);
        return;
    }
    describe(cfg, sc, p, had, msg, sizeof(msg));
    wc_warning("%s", msg);
}

static PGconn *connect_sink(const struct wc_sink_conf *sc, struct wc_err *err)
{
    char who[200];
    struct wc_pgconn_opts co = {.dsn = sc->dsn, .who = who, .options = "-c statement_timeout=5000"};
    snprintf(who, sizeof(who), "sink \"%s\"", sc->name);
    return wc_pgconn_open(&co, err);
}

/* Sink sc's record compared with the configuration (record: and made when it has none). */
static int check(const struct wc_config *cfg, const struct wc_sink_conf *sc, int record, found_fn fn,
                 void *arg, struct wc_err *err)
{
    if (sc->type == WC_SINK_POSTGRES) {
        PGconn *c = connect_sink(sc, err);
        if (c == NULL)
            return -1;
        int rc = compare(c, cfg, sc, record, fn, arg, err);
        wc_pg_close(c);
        return rc;
    }
    if (sc->type != WC_SINK_REDIS)
        return 0; /* no record kept */
    struct rconn c;
    if (rconn_open(cfg, sc, &c, err) < 0)
        return -1;
    int rc = redis_compare(&c, cfg, sc, record, fn, arg, err);
    rconn_close(&c);
    return rc;
}

int wc_projections_check(const struct wc_config *cfg, const struct wc_sink_conf *sc, struct wc_err *err)
{
    return check(cfg, sc, 1, at_start, NULL, err);
}

int wc_projections_record_sink(const struct wc_config *cfg, const struct wc_sink_conf *sc, struct wc_err *err)
{
    if (sc->type == WC_SINK_REDIS) {
        struct rconn c;
        if (rconn_open(cfg, sc, &c, err) < 0)
            return -1;
        int rc = redis_record(&c, cfg, sc, NULL, 0, err);
        rconn_close(&c);
        return rc;
    }
    PGconn *c = connect_sink(sc, err);
    if (c == NULL)
        return -1;
    int rc = wc_projections_record(c, cfg, sc, NULL, 0, err);
    wc_pg_close(c);
    return rc;
}

static void to_json(const struct wc_config *cfg, const struct wc_sink_conf *sc, const struct wc_projection *p,
                    const char *had, void *arg)
{
    char msg[1024];
    describe(cfg, sc, p, had, msg, sizeof(msg));
    json_array_append_new(arg, json_string(msg));
}

void wc_projections_warnings(const struct wc_config *cfg, json_t *warnings)
{
    for (int i = 0; i < cfg->nsink; i++) {
        struct wc_err err = {0};
        /* A sink that cannot be reached: its own line says so. */
        check(cfg, &cfg->sinks[i], 0, to_json, warnings, &err);
    }
}
