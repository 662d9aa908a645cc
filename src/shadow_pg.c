/*
 * shadow_pg.c - a PostgreSQL rebuild unit's shadow tables (shadow.h): made beside the live ones in a schema
 * of their own, swapped in by renames in one transaction that holds the live tables and the live cursor,
 * or compared with the live ones by `walcast verify`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shadow.h"
#include "walcast/buf.h"
#include "walcast/log.h"
#include "walcast/pgconn.h"

/* Run sql; a result of the expected kind, or NULL with err (the caller's what named). */
static PGresult *q(struct wc_shadow *sh, const char *sql, int n, const char *const *params, const char *what,
                   struct wc_err *err)
{
    PGresult *r = wc_pg_exec(sh->conn, sql, n, params, sh->wait_ms, err);
    int st;

    if (r == NULL) {
        wc_err_prefix(err, "sink \"%s\": %s", sh->live->name, what);
        return NULL;
    }
    st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *hint = "", *sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        char msg[600];
        int kind = wc_pg_error_kind(sqlstate, PQresultErrorMessage(r), &hint);
        snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
        msg[strcspn(msg, "\n")] = '\0';
        wc_err_set(err, kind ? kind : WC_ERR_DATA, "sink \"%s\": %s: %s%s%s", sh->live->name, what, msg,
                   *hint ? ": " : "", hint);
        if (sqlstate != NULL && strcmp(sqlstate, "55P03") == 0)
            err->code = WC_ERR_IO; /* lock_timeout: the caller tries again */
        PQclear(r);
        return NULL;
    }
    return r;
}

static int run(struct wc_shadow *sh, const char *sql, const char *what, struct wc_err *err)
{
    PGresult *r = q(sh, sql, 0, NULL, what, err);
    PQclear(r);
    return r ? 0 : -1;
}

static void rollback(struct wc_shadow *sh)
{
    if (sh->conn && PQtransactionStatus(sh->conn) != PQTRANS_IDLE)
        PQclear(PQexec(sh->conn, "ROLLBACK"));
}

/* "schema"."table" of live table i (live 1) or of its shadow (live 0), quoted, into b. */
static void qname(struct wc_shadow *sh, struct wc_buf *b, int i, int live)
{
    const char *schema = live ? sh->live_schema[i] : sh->schema;
    char *s = PQescapeIdentifier(sh->conn, schema, strlen(schema));
    char *t = PQescapeIdentifier(sh->conn, sh->table[i], strlen(sh->table[i]));
    wc_buf_printf(b, "%s.%s", s, t);
    PQfreemem(s);
    PQfreemem(t);
}

static int unit_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 40)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

/* Add projection p's tables to the unit; -1 with err when it declares none. */
static int add_tables(struct wc_shadow *sh, const struct wc_projection *p, struct wc_err *err)
{
    if (p->ntables == 0) {
        wc_err_set(err, WC_ERR_CONFIG,
                   "projection \"%s\" declares no tables: list the tables it writes in "
                   "projections.%s.tables to rebuild it",
                   p->name, p->name);
        return -1;
    }
    sh->projections = realloc(sh->projections, (size_t)(sh->nprojection + 1) * sizeof(char *));
    sh->live_schema = realloc(sh->live_schema, (size_t)(sh->ntable + p->ntables) * sizeof(*sh->live_schema));
    sh->table = realloc(sh->table, (size_t)(sh->ntable + p->ntables) * sizeof(*sh->table));
    if (sh->projections == NULL || sh->live_schema == NULL || sh->table == NULL) {
        wc_err_set(err, WC_ERR_INTERNAL, "out of memory");
        return -1;
    }
    sh->projections[sh->nprojection++] = p->name;
    for (int i = 0; i < p->ntables; i++) {
        const char *params[1] = {p->tables[i]};
        PGresult *r = q(sh,
                        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
                        "c.relnamespace WHERE c.oid = to_regclass($1) AND c.relkind = 'r'",
                        1, params, "could not look up the projection's tables", err);
        if (r == NULL)
            return -1;
        if (PQntuples(r) == 0) {
            wc_err_set(
                err, WC_ERR_CONFIG,
                "table \"%s\" of projection \"%s\" does not exist in sink \"%s\": create it (the rebuild "
                "copies its definition) or fix projections.%s.tables",
                p->tables[i], p->name, sh->live->name, p->name);
            PQclear(r);
            return -1;
        }
        snprintf(sh->live_schema[sh->ntable], 64, "%s", PQgetvalue(r, 0, 0));
        snprintf(sh->table[sh->ntable], 64, "%s", PQgetvalue(r, 0, 1));
        sh->ntable++;
        PQclear(r);
    }
    return 0;
}

/* A Redis unit: its projections' key patterns; the shadow sink connects later. */
static int open_redis(struct wc_shadow *sh, const struct wc_projection *p, int verify, struct wc_err *err)
{
    const struct wc_config *cfg = sh->cfg;

    sh->redis = 1;
    sh->cluster = sh->live->cluster;
    snprintf(sh->prefix, sizeof(sh->prefix), "walcast:%s:%s:", verify ? "verify" : "shadow", sh->unit);
    for (int i = 0; i < cfg->nprojection; i++) {
        const struct wc_projection *q = &cfg->projections[i];
        if ((p != NULL && q != p) || &cfg->sinks[q->sink] != sh->live)
            continue;
        if (q->nkeys == 0) {
            wc_err_set(
                err, WC_ERR_CONFIG,
                "projection \"%s\" declares no keys: list the key patterns it writes in projections.%s.keys "
                "to %s it",
                q->name, q->name, verify ? "verify" : "rebuild");
            return -1;
        }
        sh->projections = realloc(sh->projections, (size_t)(sh->nprojection + 1) * sizeof(char *));
        sh->patterns = realloc(sh->patterns, (size_t)(sh->npattern + q->nkeys) * sizeof(char *));
        sh->projections[sh->nprojection++] = q->name;
        for (int k = 0; k < q->nkeys; k++)
            sh->patterns[sh->npattern++] = q->keys[k];
    }
    if (sh->nprojection == 0) {
        wc_err_set(err, WC_ERR_CONFIG, "sink \"%s\" has no projections to %s", sh->live->name,
                   verify ? "verify" : "rebuild");
        return -1;
    }
    return 0;
}

uint32_t wc_shadow_slot_hash(const char *slot)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *c = slot; c && *c; c++)
        h = (h ^ (unsigned char)*c) * 16777619u;
    return h;
}

int wc_shadow_open(struct wc_shadow *sh, const struct wc_config *cfg, const char *projection,
                   const char *sink, int verify, struct wc_err *err)
{
    const struct wc_projection *p = NULL;
    char key[300];

    memset(sh, 0, sizeof(*sh));
    sh->cfg = cfg;
    sh->verify = verify;
    if (projection != NULL) {
        if ((p = wc_config_projection(cfg, projection)) == NULL) {
            wc_err_set(err, WC_ERR_CONFIG, "projection \"%s\" is not in the configuration", projection);
            return -1;
        }
        sh->live = &cfg->sinks[p->sink];
    } else {
        for (int i = 0; i < cfg->nsink; i++)
            if (strcmp(cfg->sinks[i].name, sink) == 0)
                sh->live = &cfg->sinks[i];
        if (sh->live == NULL) {
            wc_err_set(err, WC_ERR_CONFIG, "sink \"%s\" is not in the configuration", sink);
            return -1;
        }
        sh->whole = 1;
    }
    snprintf(sh->unit, sizeof(sh->unit), "%s", projection ? projection : sink);
    if (!unit_name_ok(sh->unit)) {
        wc_err_set(err, WC_ERR_CONFIG,
                   "\"%s\" cannot name a rebuild: its shadow schema and slot take the name, which must be "
                   "[a-z0-9_], at most 40 characters",
                   sh->unit);
        return -1;
    }
    /* verify has names of its own: it never meets an unfinished rebuild of the unit. Slots are the source
     * server's, shared by its databases: the slot's name carries a hash of the engine's own slot. */
    uint32_t h = wc_shadow_slot_hash(cfg->slot);
    snprintf(sh->schema, sizeof(sh->schema), "walcast_%s_%s", verify ? "verify" : "shadow", sh->unit);
    snprintf(sh->slot, sizeof(sh->slot), "walcast_%s_%s_%08x", verify ? "vf" : "rb", sh->unit, h);
    snprintf(sh->sink_name, sizeof(sh->sink_name), "%s:%s:%s", sh->live->name, verify ? "verify" : "rebuild",
             sh->unit);
    if (sh->live->type == WC_SINK_REDIS && open_redis(sh, p, verify, err) < 0)
        return -1;
    sh->wait_ms = (sh->live->statement_timeout_ms > 0 ? sh->live->statement_timeout_ms : 30000) + 2000;
    /* A rebuild stopped (SIGSTOP, a hung host) inside its swap must not hold the live tables for long: the
     * server ends its transaction, and with it the locks. A Redis unit has no tables here: its lock is
     * taken on the source database. */
    struct wc_pgconn_opts co = {.dsn = sh->redis ? cfg->source_dsn : sh->live->dsn,
                                .who = key,
                                .options = "-c idle_in_transaction_session_timeout=10000"};
    if (sh->redis)
        snprintf(key, sizeof(key), "source");
    else
        snprintf(key, sizeof(key), "sink \"%s\"", sh->live->name);
    if ((sh->conn = wc_pgconn_open(&co, err)) == NULL)
        return -1;
    /* One rebuild of a unit at a time: a session lock, gone with a killed process. */
    snprintf(key, sizeof(key), "walcast %s %s/%s", verify ? "verify" : "rebuild", cfg->slot, sh->unit);
    const char *params[1] = {key};
    PGresult *r = q(sh, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", 1, params,
                    "could not take the rebuild's lock", err);
    if (r == NULL)
        return -1;
    int got = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (!got) {
        wc_err_set(err, WC_ERR_SLOT_ACTIVE, "a rebuild of \"%s\" is already running on sink \"%s\"", sh->unit,
                   sh->live->name);
        return -1;
    }
    if (sh->redis)
        return 0;
    if (p != NULL)
        return add_tables(sh, p, err);
    for (int i = 0; i < cfg->nprojection; i++)
        if (&cfg->sinks[cfg->projections[i].sink] == sh->live &&
            add_tables(sh, &cfg->projections[i], err) < 0)
            return -1;
    if (sh->nprojection == 0) {
        wc_err_set(err, WC_ERR_CONFIG, "sink \"%s\" has no projections to rebuild", sh->live->name);
        return -1;
    }
    return 0;
}

void wc_shadow_close(struct wc_shadow *sh)
{
    free(sh->patterns);
    if (sh->conn)
        wc_pg_close(sh->conn);
    free(sh->live_schema);
    free(sh->table);
    free(sh->projections);
    free(sh->swapped);
    memset(sh, 0, sizeof(*sh));
}

static int read_pos(PGresult *r, struct wc_pos *out, int *found)
{
    *found = PQntuples(r) > 0;
    *out = WC_POS_NONE;
    if (!*found)
        return 0;
    out->index = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    return wc_lsn_parse(PQgetvalue(r, 0, 0), &out->lsn);
}

static int cursor_of(struct wc_shadow *sh, const char *sink, const char *lock, struct wc_pos *out, int *found,
                     struct wc_err *err)
{
    const char *params[2] = {sh->cfg->slot, sink};
    char sql[200];
    snprintf(sql, sizeof(sql), "SELECT lsn::text, idx FROM walcast_cursor WHERE slot = $1 AND sink = $2%s",
             lock);
    PGresult *r = q(sh, sql, 2, params, "could not read a cursor", err);
    if (r == NULL)
        return -1;
    int rc = read_pos(r, out, found);
    PQclear(r);
    if (rc < 0)
        wc_err_set(err, WC_ERR_PROTOCOL, "sink \"%s\": invalid cursor in walcast_cursor", sink);
    return rc;
}

int wc_shadow_state(struct wc_shadow *sh, struct wc_pos *cursor, int *found, int *exists, struct wc_err *err)
{
    if (sh->redis) {
        /* verify starts afresh: what an earlier one left is wiped; a rebuild resumes from its cursor */
        *exists = *found = 0;
        *cursor = WC_POS_NONE;
        if (sh->verify)
            return 0;
        if (wc_rshadow_cursor(sh, sh->sink_name, cursor, found, err) < 0)
            return -1;
        *exists = *found;
        return 0;
    }
    const char *params[1] = {sh->schema};
    PGresult *r = q(sh, "SELECT 1 FROM pg_namespace WHERE nspname = $1", 1, params,
                    "could not look for the shadow schema", err);
    if (r == NULL)
        return -1;
    *exists = PQntuples(r) > 0;
    PQclear(r);
    return cursor_of(sh, sh->sink_name, "", cursor, found, err);
}

int wc_shadow_live_cursor(struct wc_shadow *sh, struct wc_pos *out, int *found, struct wc_err *err)
{
    if (sh->redis)
        return wc_rshadow_cursor(sh, sh->live->name, out, found, err);
    return cursor_of(sh, sh->live->name, "", out, found, err);
}

/* Forget the shadow's cursor and dead letters (inside the caller's transaction). */
static int forget(struct wc_shadow *sh, struct wc_err *err)
{
    const char *params[2] = {sh->cfg->slot, sh->sink_name};
    PGresult *r = q(sh, "DELETE FROM walcast_cursor WHERE slot = $1 AND sink = $2", 2, params,
                    "could not remove the shadow's cursor", err);
    PQclear(r);
    if (r == NULL)
        return -1;
    r = q(sh, "DELETE FROM walcast_dead_letters WHERE slot = $1 AND sink = $2", 2, params,
          "could not remove the shadow's dead letters", err);
    PQclear(r);
    return r ? 0 : -1;
}

static int drop_schema(struct wc_shadow *sh, struct wc_buf *b, struct wc_err *err)
{
    char *s = PQescapeIdentifier(sh->conn, sh->schema, strlen(sh->schema));
    wc_buf_reset(b);
    wc_buf_printf(b, "DROP SCHEMA IF EXISTS %s CASCADE", s);
    PQfreemem(s);
    return run(sh, b->data, "could not drop the shadow schema", err);
}

/* Give each index of shadow table i the name of the live index with the same definition. */
static int index_names(struct wc_shadow *sh, int i, struct wc_buf *b, struct wc_err *err)
{
    const char *norm = "regexp_replace(pg_get_indexdef(%s.indexrelid), '^(CREATE (UNIQUE )?INDEX )\\S+ ON "
                       "(ONLY )?\\S+ ', '\\1')";
    wc_buf_reset(b);
    wc_buf_puts(
        b, "SELECT format('ALTER INDEX %I.%I RENAME TO %I', $1::text, n.relname, o.relname) FROM pg_index "
           "oi JOIN pg_class o ON o.oid = oi.indexrelid, pg_index ni JOIN pg_class n ON n.oid = "
           "ni.indexrelid WHERE oi.indrelid = '");
    qname(sh, b, i, 1);
    wc_buf_puts(b, "'::regclass AND ni.indrelid = '");
    qname(sh, b, i, 0);
    wc_buf_puts(b, "'::regclass AND n.relname <> o.relname AND ");
    wc_buf_printf(b, norm, "oi");
    wc_buf_puts(b, " = ");
    wc_buf_printf(b, norm, "ni");
    const char *params[1] = {sh->schema};
    PGresult *r = q(sh, b->data, 1, params, "could not name the shadow's indexes", err);
    if (r == NULL)
        return -1;
    for (int k = 0; k < PQntuples(r); k++)
        if (run(sh, PQgetvalue(r, k, 0), "could not name the shadow's indexes", err) < 0) {
            PQclear(r);
            return -1;
        }
    PQclear(r);
    return 0;
}

int wc_shadow_prepare(struct wc_shadow *sh, struct wc_err *err)
{
    if (sh->redis)
        return wc_rshadow_wipe(sh, err);
    struct wc_buf b = WC_BUF_INIT;
    char *s = PQescapeIdentifier(sh->conn, sh->schema, strlen(sh->schema));

    if (run(sh, "BEGIN", "could not begin", err) < 0 || drop_schema(sh, &b, err) < 0 || forget(sh, err) < 0)
        goto fail;
    wc_buf_reset(&b);
    wc_buf_printf(&b, "CREATE SCHEMA %s", s);
    if (run(sh, b.data,
            "could not create the shadow schema (the rebuild needs CREATE on the database: GRANT CREATE ON "
            "DATABASE ... TO walcast's role)",
            err) < 0)
        goto fail;
    for (int i = 0; i < sh->ntable; i++) {
        wc_buf_reset(&b);
        wc_buf_puts(&b, "CREATE TABLE ");
        qname(sh, &b, i, 0);
        wc_buf_puts(&b, " (LIKE ");
        qname(sh, &b, i, 1);
        wc_buf_puts(&b, " INCLUDING ALL)");
        if (run(sh, b.data, "could not create a shadow table", err) < 0 || index_names(sh, i, &b, err) < 0)
            goto fail;
    }
    if (run(sh, "COMMIT", "could not commit the shadow schema", err) < 0)
        goto fail;
    PQfreemem(s);
    wc_buf_free(&b);
    return 0;
fail:
    rollback(sh);
    PQfreemem(s);
    wc_buf_free(&b);
    return -1;
}

int wc_shadow_drop(struct wc_shadow *sh, struct wc_err *err)
{
    if (sh->redis)
        return sh->rk != NULL ? wc_rshadow_wipe(sh, err) : 0;
    struct wc_buf b = WC_BUF_INIT;
    int rc = run(sh, "BEGIN", "could not begin", err) == 0 && drop_schema(sh, &b, err) == 0 &&
                     forget(sh, err) == 0 && run(sh, "COMMIT", "could not commit", err) == 0
                 ? 0
                 : -1;
    if (rc < 0)
        rollback(sh);
    wc_buf_free(&b);
    return rc;
}

int wc_shadow_swap_begin(struct wc_shadow *sh, int share, struct wc_pos *at, int *found, struct wc_err *err)
{
    if (sh->redis) {
        /* Writes wait (the live sink's next commit among them), reads go on: the live cursor holds still. */
        if (wc_rshadow_pause(sh, 1, err) < 0)
            return -1;
        if (wc_rshadow_cursor(sh, sh->live->name, at, found, err) < 0) {
            wc_rshadow_pause(sh, 0, err);
            return -1;
        }
        return 1;
    }
    struct wc_buf b = WC_BUF_INIT;
    int rc = -1;

    /* The tables first, then the cursor row: the order the live sink's commit takes them in (its
     * statements, then its cursor), so neither waits on the other in a circle. Once both are held the
     * live sink cannot commit: its cursor is the position the shadow must reach. Readers wait too, for
     * as long as the swap lasts: a short lock_timeout gives up rather than queue them behind a long one. */
    wc_buf_puts(&b, "LOCK TABLE ");
    for (int i = 0; i < sh->ntable; i++) {
        if (i)
            wc_buf_puts(&b, ", ");
        qname(sh, &b, i, 1);
    }
    wc_buf_puts(&b, share ? " IN SHARE MODE" : " IN ACCESS EXCLUSIVE MODE");
    if (run(sh, "BEGIN; SET LOCAL lock_timeout = 1000", "could not begin the swap", err) < 0)
        goto done;
    if (run(sh, b.data, "could not lock the live tables", err) < 0) {
        rc = err->code == WC_ERR_IO ? 0 : -1;
        goto done;
    }
    if (cursor_of(sh, sh->live->name, " FOR UPDATE", at, found, err) < 0) {
        rc = err->code == WC_ERR_IO ? 0 : -1;
        goto done;
    }
    wc_buf_free(&b);
    return 1;
done:
    rollback(sh);
    wc_buf_free(&b);
    return rc;
}

void wc_shadow_swap_abort(struct wc_shadow *sh)
{
    if (sh->redis) {
        struct wc_err ignored;
        wc_rshadow_pause(sh, 0, &ignored);
        return;
    }
    rollback(sh);
}

/* Grants of live table i again on its shadow (LIKE copies none), and the live table's owner. */
static int copy_grants(struct wc_shadow *sh, int i, struct wc_buf *b, struct wc_err *err)
{
    wc_buf_reset(b);
    wc_buf_puts(
        b, "SELECT format('GRANT %s ON TABLE %s TO %s%s', a.privilege_type, $1::text, CASE WHEN "
           "a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END, CASE WHEN "
           "a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) FROM pg_class c, aclexplode(c.relacl) a "
           "WHERE c.oid = $2::regclass AND a.grantee <> c.relowner UNION ALL SELECT format('ALTER TABLE %s "
           "OWNER TO %I', $1::text, pg_get_userbyid(c.relowner)) FROM pg_class c WHERE c.oid = $2::regclass "
           "AND c.relowner <> (SELECT relowner FROM pg_class WHERE oid = $1::regclass)");
    struct wc_buf sn = WC_BUF_INIT, ln = WC_BUF_INIT;
    qname(sh, &sn, i, 0);
    qname(sh, &ln, i, 1);
    const char *params[2] = {sn.data, ln.data};
    PGresult *r = q(sh, b->data, 2, params, "could not read the live table's grants", err);
    int rc = r ? 0 : -1;
    for (int k = 0; r && k < PQntuples(r) && rc == 0; k++)
        rc = run(sh, PQgetvalue(r, k, 0), "could not copy a grant of the live table", err);
    PQclear(r);
    wc_buf_free(&sn);
    wc_buf_free(&ln);
    return rc;
}

int wc_shadow_swap_end(struct wc_shadow *sh, const struct wc_pos *set_cursor, struct wc_err *err)
{
    struct wc_buf b = WC_BUF_INIT;
    char retired[100];
    snprintf(retired, sizeof(retired), "walcast_retired_%s", sh->unit);
    char *rs = PQescapeIdentifier(sh->conn, retired, strlen(retired));
    const char *params[4] = {sh->cfg->slot, sh->sink_name, sh->live->name, NULL};
    char lsn[WC_LSN_STRLEN], idx[32];

    wc_buf_printf(&b, "CREATE SCHEMA %s", rs);
    if (run(sh, b.data, "could not create a schema for the retired tables", err) < 0)
        goto fail;
    for (int i = 0; i < sh->ntable; i++) {
        char *ls = PQescapeIdentifier(sh->conn, sh->live_schema[i], strlen(sh->live_schema[i]));
        char *t = PQescapeIdentifier(sh->conn, sh->table[i], strlen(sh->table[i]));
        int ok = copy_grants(sh, i, &b, err) == 0;
        wc_buf_reset(&b);
        /* Out with the live table, in with its shadow under the same name; the old one goes. Its
         * dependents (a view, a foreign key) stop the swap rather than go with it: DROP without CASCADE. */
        wc_buf_printf(&b, "ALTER TABLE %s.%s SET SCHEMA %s", ls, t, rs);
        ok = ok && run(sh, b.data, "could not move the live table out", err) == 0;
        wc_buf_reset(&b);
        qname(sh, &b, i, 0);
        struct wc_buf c = WC_BUF_INIT;
        wc_buf_printf(&c, "ALTER TABLE %s SET SCHEMA %s", b.data, ls);
        ok = ok && run(sh, c.data, "could not move the shadow table in", err) == 0;
        wc_buf_reset(&c);
        wc_buf_printf(&c, "DROP TABLE %s.%s", rs, t);
        ok = ok &&
             run(sh, c.data, "could not drop the retired table (does a view or a foreign key depend on it?)",
                 err) == 0;
        wc_buf_free(&c);
        PQfreemem(ls);
        PQfreemem(t);
        if (!ok)
            goto fail;
    }
    wc_buf_reset(&b);
    wc_buf_printf(&b, "DROP SCHEMA %s", rs);
    if (run(sh, b.data, "could not drop the retired tables' schema", err) < 0 || drop_schema(sh, &b, err) < 0)
        goto fail;
    /* The rebuild met the bad events again: its dead letters are the live sink's now (all of them when the
     * whole sink was rebuilt). */
    PGresult *r;
    if (sh->whole) {
        const char *lp[2] = {sh->cfg->slot, sh->live->name};
        r = q(sh, "DELETE FROM walcast_dead_letters WHERE slot = $1 AND sink = $2", 2, lp,
              "could not remove the sink's dead letters", err);
        PQclear(r);
        if (r == NULL)
            goto fail;
    }
    r = q(sh, "UPDATE walcast_dead_letters SET sink = $3 WHERE slot = $1 AND sink = $2", 3, params,
          "could not move the rebuild's dead letters", err);
    PQclear(r);
    if (r == NULL)
        goto fail;
    r = q(sh, "DELETE FROM walcast_cursor WHERE slot = $1 AND sink = $2", 2, params,
          "could not remove the shadow's cursor", err);
    PQclear(r);
    if (r == NULL)
        goto fail;
    if (set_cursor != NULL) {
        wc_lsn_format(set_cursor->lsn, lsn);
        snprintf(idx, sizeof(idx), "%lld", (long long)set_cursor->index);
        const char *cp[4] = {sh->cfg->slot, sh->live->name, lsn, idx};
        r = q(
            sh,
            "INSERT INTO walcast_cursor (slot, sink, lsn, idx) VALUES ($1, $2, $3::pg_lsn, $4::bigint) ON "
            "CONFLICT (slot, sink) DO UPDATE SET lsn = EXCLUDED.lsn, idx = EXCLUDED.idx, updated_at = now()",
            4, cp, "could not store the sink's cursor", err);
        PQclear(r);
        if (r == NULL)
            goto fail;
    }
    if (wc_projections_record(sh->conn, sh->cfg, sh->live, sh->whole ? NULL : sh->projections,
                              sh->whole ? 0 : sh->nprojection, err) < 0)
        goto fail;
    wc_rebuild_failpoint("swap");
    if (run(sh, "COMMIT", "could not commit the swap", err) < 0)
        goto fail;
    PQfreemem(rs);
    wc_buf_free(&b);
    return 0;
fail:
    rollback(sh);
    PQfreemem(rs);
    wc_buf_free(&b);
    return -1;
}
