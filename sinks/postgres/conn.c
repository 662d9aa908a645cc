/* conn.c - the PostgreSQL sink's connection: walcast's tables, prepared statements, the cursor, messages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../owner.h"
#include "pg.h"
#include "walcast/clock.h"
#include "walcast/log.h"
#include "walcast/pgconn.h"

/* The cursor, and the announcement of the position the sink has applied through (the cursor's LSN: every
 * transaction that ended at or before it is applied): NOTIFY walcast_applied, '<slot> <sink> <lsn>', sent
 * by the server when the transaction commits, so a listener that hears it sees the writes. One statement:
 * no round trip more per commit. */
#define CURSOR_SQL                                                                                           \
    "WITH c AS (INSERT INTO walcast_cursor (slot, sink, lsn, idx, updated_at) VALUES ($1::text, $2::text, "  \
    "$3::pg_lsn, $4::bigint, now()) ON CONFLICT (slot, sink) DO UPDATE SET lsn = EXCLUDED.lsn, "             \
    "idx = EXCLUDED.idx, updated_at = now() RETURNING lsn) "                                                 \
    "SELECT pg_notify('walcast_applied', $1 || ' ' || $2 || ' ' || c.lsn::text) FROM c"
#define DEAD_SQL                                                                                             \
    "INSERT INTO walcast_dead_letters (slot, sink, lsn, idx, event_id, event_type, aggregate_type, "         \
    "aggregate_id, payload, error) VALUES ($1, $2, $3::pg_lsn, $4::bigint, $5, $6, $7, $8, $9, $10)"

/*
 * walcast's own tables, created only when missing: a role without CREATE on the schema works with tables
 * a setup script made for it (examples/orders/read.sql; CREATE TABLE IF NOT EXISTS would need CREATE even
 * when the table exists). Under an advisory lock: two sinks on the same database starting together would
 * otherwise race on the creation (a unique violation in pg_type).
 */
static const char setup_sql[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(hashtext('walcast setup'));"
    "DO $walcast$ BEGIN "
    "IF to_regclass('walcast_cursor') IS NULL THEN "
    "CREATE TABLE walcast_cursor (slot text, sink text, lsn pg_lsn NOT NULL, "
    "idx bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (slot, sink)); "
    "END IF; "
    "IF to_regclass('walcast_dead_letters') IS NULL THEN "
    "CREATE TABLE walcast_dead_letters (id bigserial PRIMARY KEY, slot text, sink text, "
    "lsn pg_lsn, idx bigint, event_id text, event_type text, aggregate_type text, aggregate_id text, "
    "payload text, error text NOT NULL, created_at timestamptz DEFAULT now()); "
    "END IF; END $walcast$;"
    "COMMIT";

const char *pg_slot_name(const struct wc_sink *s)
{
    return s->cfg && s->cfg->slot ? s->cfg->slot : "";
}

/*
 * What a failed statement says. Errors that say nothing about the event (the connection, the server going
 * away, resources, a serialization failure or deadlock, a lock or statement timeout, a read-only server:
 * a failover) are WC_ERR_IO: retrying the same batch later is the right answer. A missing table, column or
 * function, a missing privilege, authentication: WC_ERR_CONFIG, every event would fail the same way until
 * someone fixes it, so the sink is retried (loudly) rather than every event dead-lettered. A missing
 * SQLSTATE means libpq itself gave up (the connection). The rest (a constraint, a bad value) is the
 * event's: 0.
 */
int pg_sqlstate_kind(const char *st)
{
    if (st == NULL || strlen(st) != 5)
        return WC_ERR_IO;
    return wc_pg_error_kind(st, NULL, NULL);
}

/* Make a libpq message one line: they end in a newline and may have a DETAIL or HINT line. */
static void tidy(char *msg)
{
    size_t n = strlen(msg);

    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    for (char *c = msg; *c; c++)
        if (*c == '\n')
            *c = ' ';
}

static void copy_msg(char *dst, size_t size, const char *msg)
{
    snprintf(dst, size, "%s", msg ? msg : "");
    tidy(dst);
}

/*
 * The text of a failed result for messages and dead letters: the primary message, its SQLSTATE and
 * the detail ("duplicate key value violates unique constraint "x" (SQLSTATE 23505): Key (id)=(7)
 * already exists."). Errors libpq makes itself have no fields: then its whole message, on one line.
 */
void pg_result_msg(PGresult *r, char *dst, size_t size)
{
    const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);

    if (primary == NULL) {
        copy_msg(dst, size, PQresultErrorMessage(r));
        return;
    }
    snprintf(dst, size, "%s (SQLSTATE %s)%s%s", primary, st ? st : "?????", detail ? ": " : "",
             detail ? detail : "");
    tidy(dst);
}

/* Server notices ("relation ... already exists, skipping") are only worth a debug line. */
static void notice_processor(void *arg, const char *message)
{
    const struct wc_sink *s = arg;
    char text[512];

    copy_msg(text, sizeof(text), message);
    wc_debug("sink \"%s\": %s", s->name, text);
}

/* Set err from a failed result (or the connection when r is NULL), choosing IO, CONFIG or other by
 * SQLSTATE. */
int pg_fail_result(struct wc_sink *s, PGresult *r, int other_code, const char *what, struct wc_err *err)
{
    struct pg *p = s->priv;
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL, *hint = "";
    char text[512];
    int kind;

    if (r != NULL && *PQresultErrorMessage(r) != '\0')
        pg_result_msg(r, text, sizeof(text));
    else
        copy_msg(text, sizeof(text), PQerrorMessage(p->conn));
    kind = PQstatus(p->conn) == CONNECTION_BAD ? WC_ERR_IO : pg_sqlstate_kind(st);
    if (kind == WC_ERR_CONFIG)
        wc_pg_error_kind(st, text, &hint);
    wc_err_set(err, kind ? kind : other_code, "sink \"%s\": %s: %s%s%s", s->name, what, text,
               *hint ? ": " : "", hint);
    return -1;
}

PGresult *pg_exec(struct wc_sink *s, const char *name, const char *sql, int nparams,
                  const char *const *params, struct wc_err *err)
{
    struct pg *p = s->priv;
    int ok = name ? PQsendQueryPrepared(p->conn, name, nparams, params, NULL, NULL, 0)
                  : PQsendQueryParams(p->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    PGresult *r = ok ? wc_pg_collect(p->conn, p->wait_ms, err) : NULL;

    if (!ok)
        pg_fail_result(s, NULL, WC_ERR_IO, "could not send", err);
    else if (r == NULL)
        wc_err_prefix(err, "sink \"%s\"", s->name);
    return r;
}

/* Run sql (simple protocol, several statements allowed); 0 or -1 with err. */
int pg_exec_simple(struct wc_sink *s, const char *sql, const char *what, struct wc_err *err)
{
    struct pg *p = s->priv;
    PGresult *r = wc_pg_exec(p->conn, sql, 0, NULL, p->wait_ms, err);
    int st;

    if (r == NULL) {
        wc_err_prefix(err, "sink \"%s\": %s", s->name, what);
        return -1;
    }
    st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        pg_fail_result(s, r, WC_ERR_DATA, what, err);
        PQclear(r);
        return -1;
    }
    PQclear(r);
    return 0;
}

/* Best effort: leave no transaction open (after a failure). */
void pg_rollback_quietly(struct pg *p)
{
    struct wc_err ignored;

    if (PQstatus(p->conn) == CONNECTION_OK &&
        (PQtransactionStatus(p->conn) == PQTRANS_INTRANS || PQtransactionStatus(p->conn) == PQTRANS_INERROR))
        PQclear(wc_pg_exec(p->conn, "ROLLBACK", 0, NULL, p->wait_ms, &ignored));
}

static int prepare_one(struct wc_sink *s, const char *name, const char *sql, int nparams, const char *what,
                       struct wc_err *err)
{
    struct pg *p = s->priv;
    PGresult *r =
        PQsendPrepare(p->conn, name, sql, nparams, NULL) ? wc_pg_collect(p->conn, p->wait_ms, err) : NULL;

    if (r == NULL) {
        wc_err_prefix(err, "sink \"%s\": %s", s->name, what);
        if (err->code != WC_ERR_INTERNAL)
            err->code = WC_ERR_IO;
        return -1;
    }
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        /* A statement the server rejects outright is a mistake in the configuration. */
        pg_fail_result(s, r, WC_ERR_CONFIG, what, err);
        PQclear(r);
        return -1;
    }
    PQclear(r);
    return 0;
}

/* Name every statement, then prepare them all on the (new) connection. */
static int prepare_all(struct wc_sink *s, struct wc_err *err)
{
    struct pg *p = s->priv;
    const struct wc_sink_conf *conf = s->conf;
    int n = PREP_FIRST_RULE;
    char what[256];

    for (int r = 0; r < conf->nrule; r++)
        n += conf->rules[r].nstmt;
    p->prep = calloc((size_t)n, sizeof(*p->prep));
    p->rule_base = calloc((size_t)conf->nrule + 1, sizeof(*p->rule_base));
    if (p->prep == NULL || p->rule_base == NULL) {
        wc_err_set(err, WC_ERR_INTERNAL, "out of memory");
        return -1;
    }
    p->nprep = n;
    snprintf(p->prep[PREP_CURSOR].name, sizeof(p->prep[0].name), "wc_cursor");
    snprintf(p->prep[PREP_DEAD].name, sizeof(p->prep[0].name), "wc_dead_letter");
    snprintf(p->prep[PREP_DL_DELETE].name, sizeof(p->prep[0].name), "wc_dl_delete");
    if (prepare_one(s, "wc_cursor", CURSOR_SQL, 4, "could not prepare the cursor statement", err) < 0 ||
        prepare_one(s, "wc_dead_letter", DEAD_SQL, DEAD_NPARAMS,
                    "could not prepare the dead-letter statement", err) < 0 ||
        prepare_one(s, "wc_dl_delete", "DELETE FROM walcast_dead_letters WHERE id = $1::bigint", 1,
                    "could not prepare the dead-letter removal", err) < 0)
        return -1;
    n = PREP_FIRST_RULE;
    for (int r = 0; r < conf->nrule; r++) {
        const struct wc_rule *rule = &conf->rules[r];
        p->rule_base[r] = n;
        for (int k = 0; k < rule->nstmt; k++, n++) {
            const struct wc_pg_stmt *st = &rule->stmts[k];
            struct pg_prep *pp = &p->prep[n];
            snprintf(pp->name, sizeof(pp->name), "wc_%d_%d", r, k);
            pp->projection = rule->projection;
            pp->line = st->line;
            snprintf(what, sizeof(what),
                     "projection \"%s\", event \"%s\", statement %d (line %d): could not prepare",
                     rule->projection ? rule->projection : "", rule->event_type ? rule->event_type : "",
                     k + 1, st->line);
            if (prepare_one(s, pp->name, st->sql, st->nparams, what, err) < 0)
                return -1;
        }
    }
    p->rule_base[conf->nrule] = n;
    return 0;
}

static void pg_close(struct wc_sink *s)
{
    struct pg *p = s->priv;

    if (p == NULL)
        return;
    wc_pg_close(p->conn);
    free(p->prep);
    free(p->rule_base);
    for (int i = 0; i < 2; i++)
        pg_batch_free(&p->bufs[i]);
    free(p->values);
    free(p);
    s->priv = NULL;
}

/* The sink's writer lock: a session-level advisory lock on "slot/sink" in its database. */
#define WRITER_KEY "hashtextextended($1, 0)"
#define WRITER_HOLDERS                                                                                       \
    "SELECT l.pid, pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted " \
    "AND l.objsubid = 1 AND l.pid <> pg_backend_pid() "                                                      \
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "                     \
    "AND l.classid = ((" WRITER_KEY " >> 32) & 4294967295)::oid "                                            \
    "AND l.objid = (" WRITER_KEY " & 4294967295)::oid"

/*
 * Become the sink's one writer before its cursor is read. A session that still holds the writer lock is
 * an earlier connection of this sink that walcast gave up (a timeout, a server that was stopped) or that
 * a killed walcast left behind: its server process may still be working through a transaction it had
 * received in full, and could commit it after the cursor was read (the batch would then be applied
 * twice). It is terminated, and waited for: once the lock is ours, that transaction has committed or
 * never will, and the cursor tells which.
 */
static int take_writer_lock(struct wc_sink *s, struct wc_err *err)
{
    struct pg *p = s->priv;
    char key[200];
    const char *params[1] = {key};
    int64_t deadline = wc_now_ms() + p->wait_ms;
    int told = 0;

    snprintf(key, sizeof(key), "walcast sink %s/%s", pg_slot_name(s), s->name);
    for (;;) {
        PGresult *r = pg_exec(s, NULL, "SELECT pg_try_advisory_lock(" WRITER_KEY ")", 1, params, err);
        if (r == NULL)
            return -1;
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            pg_fail_result(s, r, WC_ERR_IO, "could not take the sink's writer lock", err);
            PQclear(r);
            return -1;
        }
        int got = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        PQclear(r);
        if (got)
            return 0;
        if (wc_now_ms() > deadline) {
            wc_err_set(
                err, WC_ERR_IO,
                "sink \"%s\": an earlier session of this sink still holds its writer lock and does not "
                "end",
                s->name);
            return -1;
        }
        r = pg_exec(s, NULL, WRITER_HOLDERS, 1, params, err);
        if (r == NULL)
            return -1;
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            pg_fail_result(s, r, WC_ERR_IO, "could not end an earlier session of this sink", err);
            PQclear(r);
            return -1;
        }
        if (!told && PQntuples(r) > 0) {
            wc_warning(
                "sink \"%s\": ending an earlier session of this sink (server process %s) before reading "
                "the cursor: a connection given up after a timeout, or left by a stopped walcast",
                s->name, PQgetvalue(r, 0, 0));
            told = 1;
        }
        PQclear(r);
        wc_sleep_ms(50, NULL);
    }
}

/* Put the sink's search_path before the connection's: after walcast's own tables were found or made
 * (they stay where they are), before the statements are prepared (they resolve names through it). */
static int shadow_path(struct wc_sink *s, struct wc_err *err)
{
    const char *params[1] = {s->search_path};
    PGresult *r = pg_exec(s, NULL,
                          "SELECT set_config('search_path', quote_ident($1) || ', ' || "
                          "current_setting('search_path'), false)",
                          1, params, err);

    if (r == NULL)
        return -1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_fail_result(s, r, WC_ERR_DATA, "could not set the search path", err);
        PQclear(r);
        return -1;
    }
    PQclear(r);
    return 0;
}

/*
 * Connect, create walcast's tables when missing and prepare every statement. The DSN may hold a
 * password, so it never appears in a message: libpq's own message names host and port only. The
 * session's statement and lock timeouts are set at connect time, with the settings every connection
 * pins (TimeZone UTC, DateStyle ISO...: how $1::timestamptz reads a value must not depend on the
 * server's defaults).
 */
static int pg_open(struct wc_sink *s, struct wc_err *err)
{
    struct pg *p;
    char who[128], options[200];
    int stmt = s->conf && s->conf->statement_timeout_ms > 0 ? s->conf->statement_timeout_ms : 30000;
    int lock = s->conf ? s->conf->lock_timeout_ms : 10000;
    struct wc_pgconn_opts co = {.dsn = s->conf ? s->conf->dsn : NULL, .who = who, .options = options};

    if (s->priv)
        pg_close(s);
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        wc_err_set(err, WC_ERR_INTERNAL, "out of memory");
        return -1;
    }
    p->b = &p->bufs[0];
    p->cb = &p->bufs[1];
    p->b->open_ev = p->cb->open_ev = -1;
    /* The server gives up at statement_timeout; walcast 2 s later, when the server did not even do that
     * (stopped, or the network dropped without a reset). */
    p->wait_ms = stmt + 2000;
    s->priv = p;
    snprintf(who, sizeof(who), "sink \"%s\"", s->name);
    /* An idle transaction can only be one whose walcast went away: end it rather than hold its locks. */
    snprintf(options, sizeof(options),
             "-c statement_timeout=%d -c lock_timeout=%d -c idle_in_transaction_session_timeout=%d", stmt,
             lock, stmt + 30000);
    p->conn = wc_pgconn_open(&co, err);
    if (p->conn == NULL)
        goto error;
    PQsetNoticeProcessor(p->conn, notice_processor, s);
    if (pg_exec_simple(s, setup_sql,
                       "could not create walcast's tables walcast_cursor and walcast_dead_letters (create "
                       "them as examples/orders/read.sql does, or grant the role CREATE on the schema)",
                       err) < 0) {
        pg_rollback_quietly(p);
        goto error;
    }
    if (s->writer && take_writer_lock(s, err) < 0)
        goto error;
    if (s->search_path != NULL && shadow_path(s, err) < 0)
        goto error;
    if (prepare_all(s, err) < 0)
        goto error;
    wc_debug("sink \"%s\": connected to database \"%s\" on %s:%s (server process %d), %d statements prepared",
             s->name, PQdb(p->conn), PQhost(p->conn), PQport(p->conn), PQbackendPID(p->conn), p->nprep);
    return 0;

error:
    pg_close(s);
    return -1;
}

static int pg_read_cursor(struct wc_sink *s, struct wc_pos *out, int *found, struct wc_err *err)
{
    struct pg *p = s->priv;
    const char *params[2] = {pg_slot_name(s), s->name};
    PGresult *r;

    *out = WC_POS_NONE;
    *found = 0;
    if (p == NULL || p->conn == NULL) {
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": not connected", s->name);
        return -1;
    }
    r = pg_exec(s, NULL, "SELECT lsn::text, idx FROM walcast_cursor WHERE slot = $1 AND sink = $2", 2, params,
                err);
    if (r == NULL)
        return -1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_fail_result(s, r, WC_ERR_DATA, "could not read the cursor", err);
        PQclear(r);
        return -1;
    }
    if (PQntuples(r) > 0) {
        const char *lsn = PQgetvalue(r, 0, 0), *idx = PQgetvalue(r, 0, 1);
        char *end;
        long long i = strtoll(idx, &end, 10);
        if (wc_lsn_parse(lsn, &out->lsn) < 0 || end == idx || *end != '\0') {
            wc_err_set(err, WC_ERR_PROTOCOL, "sink \"%s\": invalid cursor \"%s:%s\" in walcast_cursor",
                       s->name, lsn, idx);
            PQclear(r);
            return -1;
        }
        out->index = i;
        *found = 1;
    }
    PQclear(r);
    return 0;
}

const struct wc_sink_ops wc_sink_postgres_ops = {
    .type = "postgres",
    .open = pg_open,
    .read_cursor = pg_read_cursor,
    .apply = pg_apply,
    .dead_letter = pg_dead_letter,
    .commit = pg_commit,
    .detach = pg_detach,
    .commit_detached = pg_commit_detached,
    .close = pg_close,
    .reset = pg_reset,
    .dlq = &pg_dlq_ops,
    .owner = &wc_pg_owner_ops,
};
