/* owner.c - the PostgreSQL sink's owner record: one row per sink in table walcast_owner. */
#include <stdio.h>
#include <string.h>

#include "../owner.h"
#include "pg.h"

/* Created only when missing (a role without CREATE on the schema works with a table a setup script made
 * for it, as examples/orders/read.sql does), under the lock walcast's other tables are created under
 * (conn.c): sinks opening together. The transaction stays open for the claim. */
static const char setup_sql[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(hashtext('walcast setup'));"
    "DO $walcast$ BEGIN "
    "IF to_regclass('walcast_owner') IS NULL THEN "
    "CREATE TABLE walcast_owner (sink text PRIMARY KEY, system_identifier text NOT NULL, "
    "database text NOT NULL, slot text NOT NULL, since timestamptz NOT NULL DEFAULT now()); "
    "END IF; END $walcast$";

/* Run one statement of the open transaction; on failure roll it back and set err. */
static PGresult *step(struct wc_sink *s, const char *sql, int n, const char *const *params, const char *what,
                      struct wc_err *err)
{
    struct pg *p = s->priv;
    PGresult *r = PQexecParams(p->conn, sql, n, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_fail_result(s, r, WC_ERR_DATA, what, err);
        PQclear(r);
        pg_rollback_quietly(p);
        return NULL;
    }
    return r;
}

static void row_owner(PGresult *r, struct wc_owner *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->system_id, sizeof(o->system_id), "%s", PQgetvalue(r, 0, 0));
    snprintf(o->database, sizeof(o->database), "%s", PQgetvalue(r, 0, 1));
    snprintf(o->slot, sizeof(o->slot), "%s", PQgetvalue(r, 0, 2));
}

static int not_open(struct wc_sink *s, struct wc_err *err)
{
    wc_err_set(err, WC_ERR_IO, "sink \"%s\": not connected", s->name);
    return -1;
}

/* Read the owner inside the open transaction. */
static int read_in_txn(struct wc_sink *s, struct wc_owner *out, int *found, struct wc_err *err)
{
    const char *params[1] = {s->name};
    PGresult *r = step(s, "SELECT system_identifier, database, slot FROM walcast_owner WHERE sink = $1", 1,
                       params, "could not read the owner of the sink", err);
    if (r == NULL)
        return -1;
    *found = PQntuples(r) > 0;
    if (*found)
        row_owner(r, out);
    PQclear(r);
    return 0;
}

static int pg_owner_claim(struct wc_sink *s, const struct wc_owner *me, struct wc_owner *held,
                          struct wc_err *err)
{
    struct pg *p = s->priv;
    const char *params[4] = {s->name, me->system_id, me->database, me->slot};
    int found = 0;
    PGresult *r;

    if (p == NULL || p->conn == NULL)
        return not_open(s, err);
    if (pg_exec_simple(
            s, setup_sql,
            "could not create walcast's table walcast_owner (create it as examples/orders/read.sql "
            "does, or grant the role CREATE on the schema)",
            err) < 0) {
        pg_rollback_quietly(p);
        return -1;
    }
    r = step(s,
             "INSERT INTO walcast_owner (sink, system_identifier, database, slot) VALUES ($1, $2, $3, $4) "
             "ON CONFLICT (sink) DO NOTHING",
             4, params, "could not record the owner of the sink", err);
    if (r == NULL)
        return -1;
    PQclear(r);
    if (read_in_txn(s, held, &found, err) < 0)
        return -1;
    if (pg_exec_simple(s, "COMMIT", "could not record the owner of the sink", err) < 0)
        return -1;
    if (!found)
        *held = *me;
    return 0;
}

static int pg_owner_read(struct wc_sink *s, struct wc_owner *out, int *found, struct wc_err *err)
{
    struct pg *p = s->priv;

    *found = 0;
    if (p == NULL || p->conn == NULL)
        return not_open(s, err);
    if (pg_exec_simple(s, "BEGIN", "could not read the owner of the sink", err) < 0)
        return -1;
    PGresult *r = step(s, "SELECT to_regclass('walcast_owner') IS NOT NULL", 0, NULL,
                       "could not read the owner of the sink", err);
    if (r == NULL)
        return -1;
    int exists = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (exists && read_in_txn(s, out, found, err) < 0)
        return -1;
    return pg_exec_simple(s, "COMMIT", "could not read the owner of the sink", err);
}

static int pg_owner_release(struct wc_sink *s, const struct wc_owner *was, struct wc_err *err)
{
    struct pg *p = s->priv;
    const char *params[2] = {s->name, was->slot};
    PGresult *r;

    if (p == NULL || p->conn == NULL)
        return not_open(s, err);
    if (pg_exec_simple(s, "BEGIN", "could not release the sink", err) < 0)
        return -1;
    if ((r = step(s, "DELETE FROM walcast_owner WHERE sink = $1", 1, params, "could not release the sink",
                  err)) == NULL)
        return -1;
    PQclear(r);
    if ((r = step(s, "DELETE FROM walcast_cursor WHERE sink = $1 AND slot = $2", 2, params,
                  "could not remove the sink's cursor", err)) == NULL)
        return -1;
    PQclear(r);
    return pg_exec_simple(s, "COMMIT", "could not release the sink", err);
}

const struct wc_owner_ops wc_pg_owner_ops = {
    .claim = pg_owner_claim,
    .read = pg_owner_read,
    .release = pg_owner_release,
};
