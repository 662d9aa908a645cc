/* slot.c - create, inspect and drop wal2json replication slots over a plain SQL connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "walcast/outbox.h"
#include "walcast/pgconn.h"
#include "walcast/slot.h"

/* How long a slot command may wait for the server. */
#define QUERY_TIMEOUT_MS 30000

/* Run sql. A failure is WC_ERR_CONFIG when someone must fix something (a privilege), WC_ERR_IO when it
 * may pass (the connection, a server going away or silent), WC_ERR_SLOT otherwise. */
static PGresult *query(PGconn *c, const char *sql, int nparams, const char *const *params, struct wc_err *err)
{
    PGresult *r = wc_pg_exec(c, sql, nparams, params, QUERY_TIMEOUT_MS, err);
    if (r == NULL)
        return NULL;
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE), *hint;
        int kind = wc_pg_error_kind(state, PQresultErrorMessage(r), &hint);
        int code = kind == WC_ERR_CONFIG || kind == WC_ERR_IO ? kind : WC_ERR_SLOT;
        char msg[768];
        size_t n;
        snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
        n = strlen(msg);
        while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
            msg[--n] = '\0';
        wc_err_set(err, code, "%s%s%s", msg, code == WC_ERR_CONFIG && *hint ? ": " : "",
                   code == WC_ERR_CONFIG ? hint : "");
        PQclear(r);
        return NULL;
    }
    return r;
}

static void copy_field(char *dst, size_t size, PGresult *r, int col)
{
    snprintf(dst, size, "%s", PQgetisnull(r, 0, col) ? "" : PQgetvalue(r, 0, col));
}

static wc_lsn lsn_field(PGresult *r, int col)
{
    wc_lsn v = 0;
    if (!PQgetisnull(r, 0, col))
        wc_lsn_parse(PQgetvalue(r, 0, col), &v);
    return v;
}

static int64_t int_field(PGresult *r, int col)
{
    return PQgetisnull(r, 0, col) ? -1 : strtoll(PQgetvalue(r, 0, col), NULL, 10);
}

static int status_on(PGconn *c, const char *slot, struct wc_slot_status *st, int *found, struct wc_err *err)
{
    const char *params[] = {slot};
    PGresult *r = query(c,
                        "SELECT slot_name, plugin, slot_type, database, active, active_pid, restart_lsn, "
                        "confirmed_flush_lsn, pg_current_wal_lsn(), "
                        "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, "
                        "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, "
                        "wal_status, safe_wal_size, "
                        "(SELECT backend_type FROM pg_stat_activity a WHERE a.pid = s.active_pid) "
                        "FROM pg_replication_slots s WHERE slot_name = $1",
                        1, params, err);
    if (r == NULL)
        return -1;
    memset(st, 0, sizeof(*st));
    *found = PQntuples(r) > 0;
    if (*found) {
        copy_field(st->name, sizeof(st->name), r, 0);
        copy_field(st->plugin, sizeof(st->plugin), r, 1);
        copy_field(st->slot_type, sizeof(st->slot_type), r, 2);
        copy_field(st->database, sizeof(st->database), r, 3);
        st->active = strcmp(PQgetvalue(r, 0, 4), "t") == 0;
        st->active_pid = PQgetisnull(r, 0, 5) ? 0 : atoi(PQgetvalue(r, 0, 5));
        st->restart_lsn = lsn_field(r, 6);
        st->confirmed_flush_lsn = lsn_field(r, 7);
        st->current_wal_lsn = lsn_field(r, 8);
        st->retained_bytes = int_field(r, 9);
        st->lag_bytes = int_field(r, 10);
        copy_field(st->wal_status, sizeof(st->wal_status), r, 11);
        st->safe_wal_size = int_field(r, 12);
        /* A backend that is not a walsender holds a slot only for a moment (pg_drop_replication_slot,
         * pg_replication_slot_advance); one that is gone already has let go of it. */
        st->active_walsender =
            st->active && !PQgetisnull(r, 0, 13) && strcmp(PQgetvalue(r, 0, 13), "walsender") == 0;
    }
    PQclear(r);
    return 0;
}

int wc_slot_status_conn(struct pg_conn *conn, const char *slot, struct wc_slot_status *st, int *found,
                        struct wc_err *err)
{
    return status_on(conn, slot, st, found, err);
}

int wc_slot_status(const char *dsn, const char *slot, struct wc_slot_status *st, int *found,
                   struct wc_err *err)
{
    PGconn *c = wc_pg_connect(dsn, NULL, err);
    if (c == NULL)
        return -1;
    int rc = status_on(c, slot, st, found, err);
    PQfinish(c);
    return rc;
}

int wc_slot_create(const char *dsn, const char *slot, int *existed, wc_lsn *lsn, struct wc_err *err)
{
    struct wc_slot_status st;
    const char *params[] = {slot};
    int found, rc = -1;
    PGresult *r;
    PGconn *c = wc_pg_connect(dsn, NULL, err);

    *existed = 0;
    if (c == NULL)
        return -1;
    if (status_on(c, slot, &st, &found, err) < 0)
        goto done;
    if (found) {
        if (strcmp(st.plugin, "wal2json") != 0) {
            wc_err_set(
                err, WC_ERR_SLOT,
                "replication slot \"%s\" exists with plugin \"%s\", not \"wal2json\": drop it or choose "
                "another slot name",
                slot, st.plugin[0] ? st.plugin : "(physical)");
            goto done;
        }
        *existed = 1;
        *lsn = st.confirmed_flush_lsn;
        rc = 0;
        goto done;
    }
    r = query(c, "SELECT lsn FROM pg_create_logical_replication_slot($1, 'wal2json')", 1, params, err);
    if (r == NULL) {
        wc_err_prefix(err, "could not create replication slot \"%s\"", slot);
        goto done;
    }
    *lsn = lsn_field(r, 0);
    PQclear(r);
    rc = 0;
done:
    PQfinish(c);
    return rc;
}

int wc_slot_drop(const char *dsn, const char *slot, int force, struct wc_err *err)
{
    struct wc_slot_status st;
    const char *params[] = {slot};
    int found, rc = -1;
    PGresult *r;
    PGconn *c = wc_pg_connect(dsn, NULL, err);

    if (c == NULL)
        return -1;
    if (status_on(c, slot, &st, &found, err) < 0)
        goto done;
    if (!found) {
        wc_err_set(err, WC_ERR_SLOT, "replication slot \"%s\" does not exist", slot);
        goto done;
    }
    if (st.active) {
        if (!force) {
            wc_err_set(err, WC_ERR_SLOT_ACTIVE,
                       "replication slot \"%s\" is active for PID %d: stop that process or use --force", slot,
                       st.active_pid);
            goto done;
        }
        char pid[16];
        const char *tp[] = {pid};
        snprintf(pid, sizeof(pid), "%d", st.active_pid);
        r = query(c, "SELECT pg_terminate_backend($1::int)", 1, tp, err);
        if (r == NULL)
            goto done;
        PQclear(r);
        /* The walsender releases the slot as it exits. */
        for (int i = 0; i < 100; i++) {
            if (status_on(c, slot, &st, &found, err) < 0)
                goto done;
            if (!found || !st.active)
                break;
            usleep(50000);
        }
    }
    r = query(c, "SELECT pg_drop_replication_slot($1)", 1, params, err);
    if (r == NULL) {
        wc_err_prefix(err, "could not drop replication slot \"%s\"", slot);
        goto done;
    }
    PQclear(r);
    rc = 0;
done:
    PQfinish(c);
    return rc;
}

static void item(struct wc_check_item *items, int max, int *n, const char *name, int ok, const char *fmt,
                 const char *value)
{
    if (*n >= max)
        return;
    snprintf(items[*n].name, sizeof(items[*n].name), "%s", name);
    items[*n].ok = ok;
    snprintf(items[*n].detail, sizeof(items[*n].detail), fmt, value);
    (*n)++;
}

/* The outbox: the check every engine makes before it streams, and the order a rebuild would replay. */
static void check_outbox(PGconn *c, const struct wc_outbox *ob, int need_order, struct wc_check_item *items,
                         int max, int *n)
{
    struct wc_outbox_info info;
    struct wc_err e = {0};
    char what[1600];

    if (wc_outbox_check(c, ob, &info, &e) < 0) {
        item(items, max, n, "outbox", 0, "%s", e.msg);
        return;
    }
    snprintf(what, sizeof(what), "%s.%s (", ob->schema, ob->table);
    for (int k = 0, first = 1; k < WC_COL_COUNT; k++) {
        if (info.typid[k] == 0)
            continue;
        size_t used = strlen(what);
        snprintf(what + used, sizeof(what) - used, "%s%s %s", first ? "" : ", ", ob->columns[k],
                 info.type[k]);
        first = 0;
    }
    strncat(what, "), readable", sizeof(what) - strlen(what) - 1);
    item(items, max, n, "outbox", 1, "%s", what);
    if (info.order[0] == '\0')
        snprintf(what, sizeof(what), "%s%s",
                 need_order ? "" : "none (a rebuild would need one): ", info.order_problem);
    else
        snprintf(what, sizeof(what), "%s%s%s", info.order_desc, info.order_caveat[0] ? ": " : "",
                 info.order_caveat);
    item(items, max, n, "replay_order", info.order[0] != '\0' || !need_order, "%s", what);
}

int wc_slot_check(const char *dsn, const struct wc_outbox *ob, int need_order, struct wc_check_item *items,
                  int max, struct wc_err *err)
{
    int n = 0;
    PGresult *r;
    PGconn *c = wc_pg_connect(dsn, NULL, err);

    if (c == NULL)
        return -1;
    r = query(c,
              "SELECT current_setting('wal_level'), current_setting('max_replication_slots'), "
              "current_setting('max_wal_senders'), "
              "(SELECT count(*) FROM pg_replication_slots)::text, "
              "(SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user)::text, "
              "coalesce(current_setting('max_slot_wal_keep_size'), ''), current_setting('server_version')",
              0, NULL, err);
    if (r == NULL) {
        PQfinish(c);
        return -1;
    }
    char wal_level[32]; /* kept past the PQclear below */
    snprintf(wal_level, sizeof(wal_level), "%s", PQgetvalue(r, 0, 0));
    item(items, max, &n, "server_version", 1, "%s", PQgetvalue(r, 0, 6));
    item(items, max, &n, "wal_level", strcmp(wal_level, "logical") == 0,
         strcmp(wal_level, "logical") == 0 ? "%s" : "%s (set wal_level = logical and restart the server)",
         wal_level);
    int slots = atoi(PQgetvalue(r, 0, 1)), used = atoi(PQgetvalue(r, 0, 3));
    char buf[128];
    snprintf(buf, sizeof(buf), "%d (%d in use)", slots, used);
    item(items, max, &n, "max_replication_slots", slots > used,
         slots > used ? "%s" : "%s (raise max_replication_slots)", buf);
    item(items, max, &n, "max_wal_senders", atoi(PQgetvalue(r, 0, 2)) > 0, "%s", PQgetvalue(r, 0, 2));
    int repl = strcmp(PQgetvalue(r, 0, 4), "true") == 0;
    item(items, max, &n, "replication_privilege", repl,
         repl ? "%s" : "%s (ALTER ROLE ... REPLICATION, and allow it in pg_hba.conf)", PQuser(c));
    const char *keep = PQgetvalue(r, 0, 5);
    item(items, max, &n, "max_slot_wal_keep_size", 1,
         strcmp(keep, "-1") == 0 ? "%s (unlimited: a stalled slot can fill the disk)" : "%s", keep);
    int logical = strcmp(wal_level, "logical") == 0; /* wal_level points into r */
    PQclear(r);

    /* The plugin: a temporary slot is dropped by the server at the end of the session. */
    if (repl && logical) {
        char name[64];
        const char *p[] = {name};
        snprintf(name, sizeof(name), "walcast_check_%d", (int)getpid());
        r = PQexecParams(c, "SELECT pg_create_logical_replication_slot($1, 'wal2json', true)", 1, NULL, p,
                         NULL, NULL, 0);
        int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        item(items, max, &n, "wal2json", ok, "%s",
             ok ? "installed" : "not loadable (install postgresql-15-wal2json on the server)");
        PQclear(r);
    }
    if (ob != NULL)
        check_outbox(c, ob, need_order, items, max, &n);
    PQfinish(c);
    return n;
}
