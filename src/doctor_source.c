/*
 * doctor_source.c - `walcast doctor`, the source: what `walcast slot check` (replication/slot.c) reads,
 * each with its severity and its fix, then what only the doctor checks (WAL senders in use, a replication
 * connection, wal_sender_timeout, the slot itself).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "doctor.h"
#include "walcast/pgconn.h"
#include "walcast/slot.h"

#define AREA "source"

static const struct wc_check_item *item(const struct wc_check_item *items, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(items[i].name, name) == 0)
            return &items[i];
    return NULL;
}

static PGresult *one_row(PGconn *c, const char *sql, int nparams, const char *const *params)
{
    PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        PQclear(r);
        return NULL;
    }
    return r;
}

/* What only a replication connection tells: pg_hba.conf lets this role open one. */
static void replication_connection(struct doctor *d)
{
    struct wc_err err = {0};
    PGconn *c = wc_pg_connect(d->cfg->source_dsn, "database", &err);

    if (c == NULL) {
        wc__doctor_add(d, AREA, "replication_connection", DOC_FAIL,
                       "allow it in pg_hba.conf: host replication ROLE ADDRESS scram-sha-256 (or the "
                       "\"database\" keyword of your version), then SELECT pg_reload_conf()",
                       "%s", err.msg);
        return;
    }
    PGresult *r = PQexec(c, "IDENTIFY_SYSTEM");
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        wc__doctor_add(d, AREA, "replication_connection", DOC_OK, "", "opens (system %s, timeline %s)",
                       PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
    else
        wc__doctor_add(d, AREA, "replication_connection", DOC_FAIL, "ALTER ROLE ... REPLICATION",
                       "IDENTIFY_SYSTEM failed: %s", PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
}

void *wc__doctor_source(struct doctor *d)
{
    const struct wc_config *cfg = d->cfg;
    struct wc_err err = {0};
    struct wc_check_item items[16];
    const struct wc_check_item *it;
    PGconn *c;
    PGresult *r;

    c = wc_pg_connect(cfg->source_dsn, NULL, &err);
    if (c == NULL) {
        wc__doctor_add(
            d, AREA, "reachable", DOC_FAIL,
            "check source.dsn (or WALCAST_SOURCE_DSN, PG* variables), the server's listen_addresses "
            "and pg_hba.conf",
            "%s", err.msg);
        return NULL;
    }
    char where[256];
    wc_pg_describe(c, where, sizeof(where));
    wc__doctor_add(d, AREA, "reachable", DOC_OK, "", "%s", where);

    /* The checks of `walcast slot check`, with severities and fixes. */
    int n = wc_slot_check(cfg->source_dsn, NULL, 0, items, 16, &err);
    if (n < 0) {
        wc__doctor_add(d, AREA, "settings", DOC_FAIL, "", "could not read the server's settings: %s",
                       err.msg);
        return c;
    }
    if ((it = item(items, n, "server_version")))
        wc__doctor_add(d, AREA, "server_version", DOC_OK, "", "%s", it->detail);
    if ((it = item(items, n, "wal_level")))
        wc__doctor_add(d, AREA, "wal_level", it->ok ? DOC_OK : DOC_FAIL,
                       it->ok ? "" : "ALTER SYSTEM SET wal_level = logical; then restart the server", "%s",
                       it->ok ? it->detail : "is not \"logical\": logical decoding is off");
    if ((it = item(items, n, "max_replication_slots"))) {
        /* Our own slot, once created, takes one of them: that is no shortage. */
        const char *params[] = {cfg->slot};
        PGresult *mine =
            one_row(c, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", 1, params);
        int exists = mine && strcmp(PQgetvalue(mine, 0, 0), "0") != 0;
        PQclear(mine);
        int ok = it->ok || exists;
        wc__doctor_add(d, AREA, "max_replication_slots", ok ? DOC_OK : DOC_FAIL,
                       ok ? "" : "ALTER SYSTEM SET max_replication_slots = <more>; then restart the server",
                       "%s", it->detail);
    }
    r = one_row(c,
                "SELECT current_setting('max_wal_senders')::int, "
                "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender')::int",
                0, NULL);
    if (r) {
        int max = atoi(PQgetvalue(r, 0, 0)), used = atoi(PQgetvalue(r, 0, 1));
        wc__doctor_add(d, AREA, "max_wal_senders", max > used ? DOC_OK : DOC_FAIL,
                       max > used ? "" : "ALTER SYSTEM SET max_wal_senders = <more>; then restart the server",
                       "%d (%d in use)", max, used);
        PQclear(r);
    }
    if ((it = item(items, n, "replication_privilege"))) {
        char fix[256];
        snprintf(fix, sizeof(fix), "ALTER ROLE \"%s\" REPLICATION;", PQuser(c));
        wc__doctor_add(d, AREA, "replication_privilege", it->ok ? DOC_OK : DOC_FAIL, it->ok ? "" : fix,
                       it->ok ? "role \"%s\" has REPLICATION" : "role \"%s\" has no REPLICATION attribute",
                       PQuser(c));
        if (it->ok)
            replication_connection(d);
    }
    if ((it = item(items, n, "wal2json")) == NULL)
        wc__doctor_add(d, AREA, "wal2json", DOC_WARN, "fix the FAIL lines above first",
                       "not checked: loading it needs wal_level = logical and the REPLICATION attribute");
    else
        wc__doctor_add(d, AREA, "wal2json", it->ok ? DOC_OK : DOC_FAIL,
                       it->ok ? ""
                              : "install the wal2json package of the server's major version on the server "
                                "(Debian: postgresql-15-wal2json)",
                       "%s", it->ok ? "loads (a temporary slot was created and dropped)" : "does not load");
    r = one_row(c,
                "SELECT current_setting('max_slot_wal_keep_size'), current_setting('wal_sender_timeout'), "
                "pg_size_bytes(current_setting('max_slot_wal_keep_size')), "
                "extract(epoch FROM current_setting('wal_sender_timeout')::interval)::float8",
                0, NULL);
    if (r) {
        if (strcmp(PQgetvalue(r, 0, 2), "-1") == 0)
            wc__doctor_add(
                d, AREA, "max_slot_wal_keep_size", DOC_WARN,
                "ALTER SYSTEM SET max_slot_wal_keep_size = '<size>'; SELECT pg_reload_conf(); (choosing "
                "the size: docs/operations.md)",
                "-1: unlimited, a stalled slot keeps WAL until the disk is full");
        else
            wc__doctor_add(d, AREA, "max_slot_wal_keep_size", DOC_OK, "", "%s", PQgetvalue(r, 0, 0));
        double wst = atof(PQgetvalue(r, 0, 3));
        if (wst == 0)
            wc__doctor_add(d, AREA, "wal_sender_timeout", DOC_WARN,
                           "ALTER SYSTEM SET wal_sender_timeout = '60s'; SELECT pg_reload_conf();",
                           "0: a dead replication connection keeps the slot active until TCP gives up");
        else if (wst * 1000 < 3.0 * cfg->status_interval_ms)
            wc__doctor_add(d, AREA, "wal_sender_timeout", DOC_WARN,
                           "ALTER SYSTEM SET wal_sender_timeout = '60s'; SELECT pg_reload_conf(); (or lower "
                           "source.status_interval_ms)",
                           "%s: less than three of walcast's status intervals (%d ms)", PQgetvalue(r, 0, 1),
                           cfg->status_interval_ms);
        else
            wc__doctor_add(d, AREA, "wal_sender_timeout", DOC_OK, "", "%s", PQgetvalue(r, 0, 1));
        PQclear(r);
    }

    /* The slot itself. */
    struct wc_slot_status st;
    int found;
    char fix[256];
    if (wc_slot_status(cfg->source_dsn, cfg->slot, &st, &found, &err) == 0) {
        snprintf(fix, sizeof(fix), "walcast slot create -c %s", cfg->path ? cfg->path : "FILE");
        if (!found)
            wc__doctor_add(d, AREA, "slot", DOC_FAIL, fix, "replication slot \"%s\" does not exist",
                           cfg->slot);
        else if (strcmp(st.plugin, "wal2json") != 0)
            wc__doctor_add(d, AREA, "slot", DOC_FAIL,
                           "choose another source.slot, or drop this one (walcast slot drop) and create it",
                           "replication slot \"%s\" uses plugin \"%s\", not wal2json", cfg->slot, st.plugin);
        else if (strcmp(st.wal_status, "lost") == 0)
            wc__doctor_add(d, AREA, "slot", DOC_FAIL,
                           "walcast slot drop, walcast slot create, then rebuild the projections",
                           "replication slot \"%s\" is lost (the server removed WAL it needed)", cfg->slot);
        else
            wc__doctor_add(d, AREA, "slot", DOC_OK, "", "\"%s\", wal_status %s, %s", cfg->slot, st.wal_status,
                           st.active ? "active" : "not active");
    }
    return c;
}
