/*
 * outbox.c - the check of the outbox table made before streaming it (and by `walcast slot check`): does
 * the table exist, has it every configured column with a usable type, may the role read it, and in which
 * order can a rebuild replay it. A misspelled table streams nothing and confirms the slot past the real
 * outbox's events; a misspelled column is applied as empty: both are refused here, before anything moves.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "walcast/outbox.h"
#include "walcast/pgconn.h"

#define OID_INT2 21
#define OID_INT4 23
#define OID_INT8 20
#define OID_JSON 114
#define OID_JSONB 3802

/* The configuration key of each column, for messages. */
static const char *const col_keys[WC_COL_COUNT] = {"event_id",   "aggregate_type", "aggregate_id",
                                                   "event_type", "payload",        "occurred_at"};

/* One column of the table as the catalog has it. */
struct column {
    const char *name;
    unsigned typid;
    const char *type; /* format_type with typmod */
    unsigned base;    /* the type, or a domain's base type */
    char category;    /* pg_type.typcategory of base */
    int readable;
};

static int query_failed(PGconn *c, PGresult *r, const char *what, struct wc_err *err)
{
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    char msg[512];
    size_t n;

    snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    wc_err_set(err,
               PQstatus(c) != CONNECTION_OK || st == NULL || strncmp(st, "08", 2) == 0 ? WC_ERR_IO
                                                                                       : WC_ERR_CONFIG,
               "could not check the outbox table: %s: %s", what, msg);
    PQclear(r);
    return -1;
}

/* Edit distance of two short names (for "did you mean"); large for long ones. */
static int distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int row[72];

    if (la > 63 || lb > 63)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int cost = a[i - 1] == b[j - 1] ? 0 : 1;
            int best = diag + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The closest of names to want, when close enough to be a misspelling (NULL otherwise). */
static const char *closest(const char *want, const char *const *names, int n)
{
    const char *best = NULL;
    int bestd = 99, limit = strlen(want) < 6 ? 2 : 3;

    for (int i = 0; i < n; i++) {
        int d = strcasecmp(want, names[i]) == 0 ? 0 : distance(want, names[i]);
        if (d < bestd) {
            bestd = d;
            best = names[i];
        }
    }
    return bestd <= limit ? best : NULL;
}

/* The table does not exist: say so, what it would have cost, and the likely name. */
static int no_table(PGconn *c, const struct wc_outbox *ob, struct wc_err *err)
{
    const char *params[1] = {ob->table};
    char hint[200] = "";
    PGresult *r =
        PQexecParams(c,
                     "SELECT n.nspname, c.relname, n.nspname || '.' || c.relname "
                     "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                     "WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' "
                     "AND n.nspname NOT LIKE 'pg\\_%' ORDER BY c.relname = $1 DESC, 1, 2 LIMIT 500",
                     1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return query_failed(c, r, "listing tables", err);
    int n = PQntuples(r);
    const char **names = calloc((size_t)n + 1, sizeof(*names));
    for (int i = 0; i < n && names; i++)
        names[i] = PQgetvalue(r, i, 1);
    const char *near = names ? closest(ob->table, names, n) : NULL;
    for (int i = 0; near && i < n; i++)
        if (PQgetvalue(r, i, 1) == near)
            snprintf(hint, sizeof(hint), "; did you mean \"%s\"?", PQgetvalue(r, i, 2));
    wc_err_set(
        err, WC_ERR_CONFIG,
        "outbox table \"%s.%s\" does not exist in database \"%s\" (source.outbox.table): walcast would "
        "stream nothing from it and confirm the slot past the real outbox's events%s",
        ob->schema, ob->table, PQdb(c), hint);
    free(names);
    PQclear(r);
    return -1;
}

static const struct column *find(const struct column *cols, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(cols[i].name, name) == 0)
            return &cols[i];
    return NULL;
}

/* "a, b, c" of the table's columns, for messages. */
static void list_columns(const struct column *cols, int n, char *buf, size_t size)
{
    size_t used = 0;

    buf[0] = '\0';
    for (int i = 0; i < n && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", cols[i].name);
}

static int no_column(const struct wc_outbox *ob, const struct column *cols, int n, const char *name,
                     const char *key, const char *usual, int optional, struct wc_err *err)
{
    const char *names[256] = {0};
    char list[300], hint[120] = "";
    int k = n < 256 ? n : 256;

    for (int i = 0; i < k; i++)
        names[i] = cols[i].name;
    const char *near = closest(name, names, k);
    if (near == NULL && usual != NULL && find(cols, n, usual) != NULL)
        near = usual;
    if (near)
        snprintf(hint, sizeof(hint), "; did you mean \"%s\"?", near);
    list_columns(cols, n, list, sizeof(list));
    wc_err_set(err, WC_ERR_CONFIG,
               "outbox table \"%s.%s\" has no column \"%s\" (%s): every event would have it empty%s (the "
               "table's columns: %s)%s",
               ob->schema, ob->table, name, key, hint, list,
               optional ? "; set the key to \"\" if the outbox has no such column" : "");
    return -1;
}

/* Can the configured column k be used? 0, or -1 with err saying what its type should be. */
static int check_type(const struct wc_outbox *ob, int k, const struct column *c, struct wc_err *err)
{
    const char *want = NULL;

    switch (k) {
    case WC_COL_EVENT_TYPE:
        if (c->category != 'S' && c->category != 'E')
            want = "the event type must be text (text, varchar or an enum)";
        break;
    case WC_COL_PAYLOAD:
        if (c->base != OID_JSON && c->base != OID_JSONB && c->category != 'S')
            want = "the payload must be jsonb, json or text holding JSON";
        break;
    case WC_COL_OCCURRED_AT:
        if (c->category != 'D' && c->category != 'S' && c->category != 'N')
            want = "occurred_at must be a timestamp (or a date, text or number)";
        break;
    default:
        break;
    }
    if (want == NULL)
        return 0;
    wc_err_set(err, WC_ERR_CONFIG,
               "column \"%s\" of the outbox table \"%s.%s\" (source.outbox.columns.%s) is of type %s: %s",
               c->name, ob->schema, ob->table, col_keys[k], c->type, want);
    return -1;
}

static int is_integer(const struct column *c)
{
    return c->base == OID_INT2 || c->base == OID_INT4 || c->base == OID_INT8;
}

/* Quote name as an identifier onto the ORDER BY list. */
static void add_order(PGconn *conn, struct wc_outbox_info *info, const char *name)
{
    char *q = PQescapeIdentifier(conn, name, strlen(name));
    size_t used = strlen(info->order);

    snprintf(info->order + used, sizeof(info->order) - used, "%s%s", used ? ", " : "", q ? q : name);
    PQfreemem(q);
}

/*
 * The replay order of a rebuild. Commit order cannot be read back from a table; a value taken from a
 * sequence at insert agrees with it for every pair of transactions where one saw the other's rows, and
 * that is the pair whose order matters (OrderConfirmed after OrderPlaced). A UUID gives no order at all;
 * occurred_at is a transaction's start time (now()), not its commit.
 */
static int resolve_order(PGconn *conn, const struct wc_outbox *ob, const struct column *cols, int n,
                         struct wc_outbox_info *info, struct wc_err *err)
{
    char table[300];

    snprintf(table, sizeof(table), "%s.%s", ob->schema, ob->table);
    if (ob->order_by && *ob->order_by) {
        const struct column *first = NULL;
        char *list = strdup(ob->order_by), *save = NULL;
        if (list == NULL) {
            wc_err_set(err, WC_ERR_INTERNAL, "out of memory");
            return -1;
        }
        for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
            while (*name == ' ')
                name++;
            for (char *e = name + strlen(name); e > name && e[-1] == ' ';)
                *--e = '\0';
            const struct column *c = find(cols, n, name);
            if (c == NULL) {
                no_column(ob, cols, n, name, "source.outbox.order_by", NULL, 0, err);
                free(list);
                return -1;
            }
            if (first == NULL) {
                first = c;
                snprintf(info->order_desc, sizeof(info->order_desc), "%s (%s)", c->name, c->type);
            }
            add_order(conn, info, name);
        }
        free(list);
        if (first == NULL) {
            wc_err_set(err, WC_ERR_CONFIG, "source.outbox.order_by names no column");
            return -1;
        }
        if (first->category == 'D')
            snprintf(info->order_caveat, sizeof(info->order_caveat),
                     "rebuilds replay the outbox in %s order: the time each transaction started, not when it "
                     "committed, so an event of a transaction that began before the one it depends on "
                     "committed (an order confirmed right after it was placed) can be replayed first and its "
                     "effect lost; an identity column follows commit order for such pairs",
                     first->name);
        else if (!is_integer(first))
            snprintf(
                info->order_caveat, sizeof(info->order_caveat),
                "rebuilds replay the outbox in the order of column \"%s\" (%s), which is not a sequence: "
                "it agrees with commit order only if its values grow with it",
                first->name, first->type);
        return 0;
    }

    const char *id = ob->columns[WC_COL_EVENT_ID];
    const struct column *c = id && *id ? find(cols, n, id) : NULL;
    if (c && is_integer(c)) {
        add_order(conn, info, c->name);
        snprintf(info->order_desc, sizeof(info->order_desc), "%s (%s)", c->name, c->type);
        return 0;
    }
    char why[200];
    if (c)
        snprintf(why, sizeof(why), "its event id, column \"%s\", is of type %s, whose values follow no order",
                 c->name, c->type);
    else
        snprintf(why, sizeof(why), "it has no event id column to order by");
    snprintf(
        info->order_problem, sizeof(info->order_problem),
        "the outbox table \"%.140s\" cannot be replayed in commit order: %s, so a rebuild would apply events "
        "in a random order (an OrderConfirmed replayed before its OrderPlaced updates nothing, and the "
        "order comes back pending); add a column filled from a sequence and name it in "
        "source.outbox.order_by: ALTER TABLE %.140s ADD COLUMN position bigint GENERATED ALWAYS AS IDENTITY "
        "(existing rows are numbered in the order the table is rewritten, about their insert order; new "
        "rows as they are inserted, which follows commit order for every event that depends on another), "
        "then set order_by: position; or set order_by: occurred_at to replay in transaction start order, "
        "which can misorder dependent events",
        table, why, table);
    return 0;
}

int wc_outbox_check(struct pg_conn *conn, const struct wc_outbox *ob, struct wc_outbox_info *info,
                    struct wc_err *err)
{
    PGconn *c = conn;
    const char *params[2] = {ob->schema, ob->table};
    PGresult *r, *cr = NULL;
    struct column *cols = NULL;
    int n = 0, rc = -1;

    memset(info, 0, sizeof(*info));
    r = PQexecParams(c,
                     "SELECT c.oid, c.relkind, has_table_privilege(c.oid, 'SELECT'), current_user "
                     "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                     "WHERE n.nspname = $1 AND c.relname = $2",
                     2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return query_failed(c, r, "looking up the table", err);
    if (PQntuples(r) == 0) {
        PQclear(r);
        return no_table(c, ob, err);
    }
    char relkind = PQgetvalue(r, 0, 1)[0];
    if (relkind != 'r') {
        const char *what = relkind == 'p'   ? "a partitioned table: wal2json reports inserts under each "
                                              "partition's name, so walcast would see none of them"
                           : relkind == 'v' ? "a view: logical decoding sees only tables"
                                            : "not a plain table: logical decoding sees only tables";
        wc_err_set(err, WC_ERR_CONFIG,
                   "outbox \"%s.%s\" (source.outbox.table) is %s; name the table the events "
                   "are inserted into",
                   ob->schema, ob->table, what);
        PQclear(r);
        return -1;
    }
    int table_readable = strcmp(PQgetvalue(r, 0, 2), "t") == 0;
    char user[128], oid[16];
    snprintf(user, sizeof(user), "%s", PQgetvalue(r, 0, 3));
    snprintf(oid, sizeof(oid), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);

    const char *p1[1] = {oid};
    cr = PQexecParams(
        c,
        "SELECT a.attname, a.atttypid, format_type(a.atttypid, a.atttypmod), b.oid, b.typcategory, "
        "has_column_privilege(a.attrelid, a.attnum, 'SELECT') "
        "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "
        "JOIN pg_catalog.pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END "
        "WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        1, NULL, p1, NULL, NULL, 0);
    if (PQresultStatus(cr) != PGRES_TUPLES_OK)
        return query_failed(c, cr, "reading its columns", err);
    n = PQntuples(cr);
    cols = calloc((size_t)n + 1, sizeof(*cols));
    if (cols == NULL) {
        wc_err_set(err, WC_ERR_INTERNAL, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        cols[i].name = PQgetvalue(cr, i, 0);
        cols[i].typid = (unsigned)strtoul(PQgetvalue(cr, i, 1), NULL, 10);
        cols[i].type = PQgetvalue(cr, i, 2);
        cols[i].base = (unsigned)strtoul(PQgetvalue(cr, i, 3), NULL, 10);
        cols[i].category = PQgetvalue(cr, i, 4)[0];
        cols[i].readable = strcmp(PQgetvalue(cr, i, 5), "t") == 0;
    }

    int unreadable = 0;
    for (int k = 0; k < WC_COL_COUNT; k++) {
        const char *name = ob->columns[k];
        char key[64];
        if (name == NULL || *name == '\0')
            continue;
        snprintf(key, sizeof(key), "source.outbox.columns.%s", col_keys[k]);
        const struct column *col = find(cols, n, name);
        if (col == NULL) {
            no_column(ob, cols, n, name, key, col_keys[k], k != WC_COL_EVENT_TYPE && k != WC_COL_PAYLOAD,
                      err);
            goto done;
        }
        if (check_type(ob, k, col, err) < 0)
            goto done;
        unreadable |= !col->readable;
        info->typid[k] = col->typid;
        snprintf(info->type[k], sizeof(info->type[k]), "%s", col->type);
    }
    if (!table_readable && unreadable) {
        wc_err_set(
            err, WC_ERR_CONFIG,
            "role \"%s\" may not read the outbox table \"%s.%s\" (a rebuild reads it): GRANT SELECT ON "
            "%s.%s TO %s",
            user, ob->schema, ob->table, ob->schema, ob->table, user);
        goto done;
    }
    rc = resolve_order(c, ob, cols, n, info, err);
done:
    free(cols);
    PQclear(cr);
    return rc;
}

int wc_outbox_check_dsn(const char *dsn, const struct wc_outbox *ob, struct wc_outbox_info *info,
                        struct wc_err *err)
{
    PGconn *c = wc_pg_connect(dsn, NULL, err);
    if (c == NULL)
        return -1;
    int rc = wc_outbox_check(c, ob, info, err);
    PQfinish(c);
    return rc;
}
