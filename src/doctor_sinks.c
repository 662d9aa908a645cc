/*
 * doctor_sinks.c - `walcast doctor`, the sinks. A read database: reachable, every projection statement
 * prepares (PREPARE without executing: a misspelled table or column shows before the first event), and
 * walcast's own tables can be written (or created). A Redis server: reachable (AUTH, SELECT), a
 * maxmemory-policy that never evicts projection keys, persistence that keeps the cursor across a crash,
 * cluster mode only with sinks.NAME.cluster (a cluster sink: every master's settings, the weakest named).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "doctor.h"
#include "walcast/pgconn.h"
#include "walcast/probe.h"
#include "walcast/sink.h"

static void one_line(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
    for (char *p = s; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

/* walcast's tables: writable when they exist, creatable when they do not. */
static void pg_tables(struct doctor *d, const struct wc_sink_conf *k, PGconn *c, const char *area)
{
    PGresult *r =
        PQexec(c, "SELECT to_regclass('walcast_cursor') IS NOT NULL, "
                  "to_regclass('walcast_dead_letters') IS NOT NULL, "
                  "has_schema_privilege(current_schema(), 'CREATE'), current_schema(), "
                  "CASE WHEN to_regclass('walcast_cursor') IS NOT NULL THEN "
                  "has_table_privilege('walcast_cursor', 'SELECT, INSERT, UPDATE, DELETE') END, "
                  "CASE WHEN to_regclass('walcast_dead_letters') IS NOT NULL THEN "
                  "has_table_privilege('walcast_dead_letters', 'SELECT, INSERT, UPDATE, DELETE') END");
    char fix[600];

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        wc__doctor_add(d, area, "walcast_tables", DOC_WARN, "", "could not check: %s",
                       PQresultErrorMessage(r));
        PQclear(r);
        return;
    }
    int cursor = strcmp(PQgetvalue(r, 0, 0), "t") == 0, dead = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    int create = strcmp(PQgetvalue(r, 0, 2), "t") == 0;
    const char *schema = PQgetvalue(r, 0, 3);
    if (cursor && dead) {
        int ok = strcmp(PQgetvalue(r, 0, 4), "t") == 0 && strcmp(PQgetvalue(r, 0, 5), "t") == 0;
        snprintf(fix, sizeof(fix),
                 "GRANT SELECT, INSERT, UPDATE, DELETE ON walcast_cursor, walcast_dead_letters TO \"%s\"; "
                 "GRANT USAGE ON SEQUENCE walcast_dead_letters_id_seq TO \"%s\";",
                 PQuser(c), PQuser(c));
        wc__doctor_add(d, area, "walcast_tables", ok ? DOC_OK : DOC_FAIL, ok ? "" : fix,
                       ok ? "role \"%s\" may write walcast_cursor and walcast_dead_letters"
                          : "role \"%s\" may not write walcast_cursor and walcast_dead_letters",
                       PQuser(c));
    } else {
        snprintf(fix, sizeof(fix),
                 "GRANT CREATE ON SCHEMA \"%s\" TO \"%s\"; or create walcast_cursor and walcast_dead_letters "
                 "ahead as their owner (docs/operations.md)",
                 schema, PQuser(c));
        wc__doctor_add(d, area, "walcast_tables", create ? DOC_OK : DOC_FAIL, create ? "" : fix,
                       create ? "not there yet: sink \"%s\" creates them in schema \"%s\""
                              : "not there yet, and sink \"%s\" may not create them in schema \"%s\"",
                       k->name, schema);
    }
    PQclear(r);
}

static void check_postgres(struct doctor *d, const struct wc_sink_conf *k, const char *area)
{
    struct wc_err err = {0};
    char who[128];
    struct wc_pgconn_opts o = {.dsn = k->dsn, .who = who};
    PGconn *c;
    int nstmt = 0, bad = 0;

    snprintf(who, sizeof(who), "sink \"%s\"", k->name);
    if ((c = wc_pgconn_open(&o, &err)) == NULL) {
        wc__doctor_add(d, area, "reachable", DOC_FAIL,
                       "check the sink's dsn, listen_addresses and pg_hba.conf", "%s", err.msg);
        return;
    }
    char where[256];
    wc_pg_describe(c, where, sizeof(where));
    wc__doctor_add(d, area, "reachable", DOC_OK, "", "%s", where);
    for (int i = 0; i < k->nrule; i++) {
        const struct wc_rule *rule = &k->rules[i];
        for (int s = 0; s < rule->nstmt; s++) {
            const struct wc_pg_stmt *st = &rule->stmts[s];
            PGresult *r = PQprepare(c, "", st->sql, st->nparams, NULL);
            nstmt++;
            if (PQresultStatus(r) != PGRES_COMMAND_OK) {
                char msg[700], fix[300];
                snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
                one_line(msg);
                snprintf(fix, sizeof(fix), "correct the statement in %s, line %d",
                         d->cfg->path ? d->cfg->path : "the configuration", st->line);
                wc__doctor_add(d, area, "statement", DOC_FAIL, fix,
                               "projection \"%s\", event \"%s\", statement %d does not prepare: %s",
                               rule->projection ? rule->projection : "?", rule->event_type, s + 1, msg);
                bad++;
            }
            PQclear(r);
        }
    }
    if (bad == 0)
        wc__doctor_add(d, area, "statements", DOC_OK, "", "all %d projection statements prepare", nstmt);
    pg_tables(d, k, c, area);
    PQfinish(c);
}

static void check_redis(struct doctor *d, const struct wc_sink_conf *k, const char *area)
{
    struct wc_err err = {0};
    struct wc_redis_info in;
    struct wc_sink *s = wc_sink_new(d->cfg, k, &err);

    if (s == NULL || s->ops->open(s, &err) < 0 || wc_sink_redis_info(s, &in, &err) < 0) {
        wc__doctor_add(d, area, "reachable", DOC_FAIL,
                       "check the sink's dsn (host, port, password, database) and that Redis runs", "%s",
                       err.msg);
        wc_sink_free(s);
        return;
    }
    wc__doctor_add(d, area, "reachable", DOC_OK, "", "redis %s",
                   in.version[0] ? in.version : "(version unknown)");

    const char *pol = in.maxmemory_policy;
    if (pol[0] == '\0')
        wc__doctor_add(d, area, "maxmemory_policy", DOC_WARN,
                       "allow CONFIG GET to walcast's user, or check by hand", "could not read it: %s",
                       in.config_error);
    else if (strncmp(pol, "allkeys-", 8) == 0)
        wc__doctor_add(
            d, area, "maxmemory_policy", DOC_FAIL,
            "CONFIG SET maxmemory-policy noeviction (and maxmemory-policy noeviction in redis.conf)",
            "%s: under memory pressure Redis evicts projection keys and walcast's cursor%s", pol,
            in.maxmemory == 0 ? " (once a maxmemory is set)" : "");
    else if (strncmp(pol, "volatile-", 9) == 0)
        wc__doctor_add(d, area, "maxmemory_policy", DOC_WARN,
                       "CONFIG SET maxmemory-policy noeviction (and in redis.conf)",
                       "%s: keys with a TTL can be evicted under memory pressure", pol);
    else
        wc__doctor_add(d, area, "maxmemory_policy", DOC_OK, "", "%s", pol);

    if (in.appendonly == 0)
        wc__doctor_add(d, area, "persistence", DOC_WARN,
                       "CONFIG SET appendonly yes; CONFIG SET appendfsync always (and in redis.conf)",
                       "appendonly no: a crash loses the projections and the cursor%s",
                       k->rebuild ? " (walcast then rebuilds the sink from the outbox)"
                                  : " (walcast then stops: set rebuild: flushdb to rebuild)");
    else if (in.appendonly == 1 && strcmp(in.appendfsync, "always") != 0)
        wc__doctor_add(
            d, area, "persistence", DOC_WARN, "CONFIG SET appendfsync always (and in redis.conf)",
            "appendfsync %s: a crash can lose the last acknowledged writes and the cursor with them",
            in.appendfsync[0] ? in.appendfsync : "(unknown)");
    else if (in.appendonly == 1)
        wc__doctor_add(d, area, "persistence", DOC_OK, "", "appendonly yes, appendfsync always");
    else
        wc__doctor_add(d, area, "persistence", DOC_WARN, "check appendonly and appendfsync by hand",
                       "could not read the persistence settings");

    if (in.cluster_enabled == 1 && !k->cluster)
        wc__doctor_add(d, area, "cluster", DOC_FAIL,
                       "set sinks.NAME.cluster: true and list the cluster's nodes in the dsn",
                       "the server is a redis cluster node, but the sink is not in cluster mode: its "
                       "MULTI/EXEC spans keys "
                       "of several hash slots (CROSSSLOT)");
    else if (k->cluster)
        wc__doctor_add(
            d, area, "cluster", DOC_OK, "",
            "redis cluster: each hash slot a batch writes is applied atomically with its own cursor");
    else
        wc__doctor_add(d, area, "cluster", DOC_OK, "", "standalone");
    wc_sink_free(s);
}

void wc__doctor_sinks(struct doctor *d)
{
    for (int i = 0; i < d->cfg->nsink; i++) {
        const struct wc_sink_conf *k = &d->cfg->sinks[i];
        char area[96];
        snprintf(area, sizeof(area), "sink:%s", k->name);
        if (k->type == WC_SINK_POSTGRES)
            check_postgres(d, k, area);
        else if (k->type == WC_SINK_REDIS)
            check_redis(d, k, area);
    }
}
