/* sink_postgres.c - the PostgreSQL sink: projection SQL and the cursor in one transaction per batch. */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walcast/buf.h"
#include "walcast/log.h"
#include "walcast/pgconn.h"
#include "walcast/sink.h"
#include "walcast/template.h"

/*
 * How a batch is kept. apply() renders every parameter at once and copies it, with the event's
 * identity, into one arena (a wc_buf holding NUL-terminated strings back to back). Since the arena
 * may move when it grows, everything refers to it by offset. Three growable arrays describe the batch:
 * the events (identity, range of operations), the operations (one prepared statement execution each)
 * and the parameter offsets of all operations. After a commit the arrays and the arena are reset and
 * keep their capacity, so a steady stream of batches allocates nothing.
 *
 * There are two batches. detach() sets the queued one aside and commit_detached() sends it, on the
 * engine's commit thread, while apply() queues the next one into the other: the server executes a batch
 * while walcast decodes the next. Only the committing side uses the connection; the two share the
 * prepared statements' names (read-only while streaming) and the atomic counters, never a batch, and
 * the batch pointers are swapped only while no commit runs.
 */

#define NO_OFF SIZE_MAX /* a parameter offset meaning SQL NULL */

/* Prepared statements: walcast's own two first, then every configured statement. */
enum { PREP_CURSOR, PREP_DEAD, PREP_DL_DELETE, PREP_FIRST_RULE };

#define CURSOR_SQL                                                                                           \
    "INSERT INTO walcast_cursor (slot, sink, lsn, idx, updated_at) VALUES ($1, $2, $3::pg_lsn, $4::bigint, " \
    "now()) ON CONFLICT (slot, sink) DO UPDATE SET lsn = EXCLUDED.lsn, idx = EXCLUDED.idx, "                 \
    "updated_at = now()"
#define DEAD_SQL                                                                                             \
    "INSERT INTO walcast_dead_letters (slot, sink, lsn, idx, event_id, event_type, aggregate_type, "         \
    "aggregate_id, payload, error) VALUES ($1, $2, $3::pg_lsn, $4::bigint, $5, $6, $7, $8, $9, $10)"
#define DEAD_NPARAMS 10
#define DEAD_NSTORED 8 /* all but slot and sink, which are the same for every dead letter */

/*
 * Creating the tables under an advisory lock: two sinks on the same database starting together would
 * otherwise race on CREATE TABLE IF NOT EXISTS (a unique violation in pg_type).
 */
static const char setup_sql[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(hashtext('walcast setup'));"
    "CREATE TABLE IF NOT EXISTS walcast_cursor (slot text, sink text, lsn pg_lsn NOT NULL, "
    "idx bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (slot, sink));"
    "CREATE TABLE IF NOT EXISTS walcast_dead_letters (id bigserial PRIMARY KEY, slot text, sink text, "
    "lsn pg_lsn, idx bigint, event_id text, event_type text, aggregate_type text, aggregate_id text, "
    "payload text, error text NOT NULL, created_at timestamptz DEFAULT now());"
    "COMMIT";

/* The event columns kept for dead letters, in DEAD_SQL's order ($5..$8), then the payload ($9). */
static const int dead_cols[] = {WC_COL_EVENT_ID, WC_COL_EVENT_TYPE, WC_COL_AGGREGATE_TYPE,
                                WC_COL_AGGREGATE_ID, WC_COL_PAYLOAD};

struct pg_prep {
    char name[32];
    const char *projection; /* for messages; NULL for walcast's own statements */
    int line;
};

/* One queued execution of a prepared statement. */
struct pg_op {
    int prep;     /* index into pg->prep */
    int nparams;  /* parameters stored in pg->offs (DEAD_NSTORED for a dead letter) */
    size_t first; /* index of the first in pg->offs */
};

/* One queued event: its identity (arena offsets) and its operations. */
struct pg_ev {
    struct wc_pos pos;
    size_t col[WC_COL_COUNT]; /* NO_OFF for a null column */
    int first_op;
    int nop;
    int applied; /* counted in s->applied */
};

struct pg_batch {
    struct wc_buf arena;
    struct pg_op *ops;
    int nops, capops;
    size_t *offs;
    size_t noffs, capoffs;
    struct pg_ev *evs;
    int nevs, capevs;
    int open_ev; /* the event apply() is queueing, or -1: dead_letter() attaches to it */
};

struct pg {
    PGconn *conn;
    struct pg_prep *prep;
    int nprep;
    int *rule_base; /* per configured rule: its first statement's index in prep */
    struct pg_batch bufs[2];
    struct pg_batch *b;  /* what apply() queues into */
    struct pg_batch *cb; /* set aside by detach(), sent by commit_detached() */
    const char **values; /* scratch of the committing side: parameter values of one execution */
    int capvalues;
    int nsent; /* commands sent in the current pipeline */
};

/* The outcome of a pipeline. */
struct pipe_res {
    int failed_at; /* index of the first failed command, or -1 */
    char sqlstate[6];
    char msg[512];
};

static void *grow(void *p, int *cap, int need, size_t size)
{
    if (need <= *cap)
        return p;
    int n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    p = realloc(p, (size_t)n * size);
    if (p == NULL) {
        fprintf(stderr, "walcast: out of memory\n");
        abort();
    }
    *cap = n;
    return p;
}

static size_t *grow_offs(struct pg_batch *p, size_t extra)
{
    if (p->noffs + extra > p->capoffs) {
        size_t n = p->capoffs ? p->capoffs : 256;
        while (n < p->noffs + extra)
            n *= 2;
        size_t *o = realloc(p->offs, n * sizeof(*o));
        if (o == NULL) {
            fprintf(stderr, "walcast: out of memory\n");
            abort();
        }
        p->offs = o;
        p->capoffs = n;
    }
    return p->offs + p->noffs;
}

/* Copy len bytes of text into the arena as a NUL-terminated string; returns its offset. */
static size_t arena_put(struct pg_batch *p, const char *text, size_t len)
{
    size_t off = p->arena.len;

    wc_buf_append(&p->arena, text, len);
    wc_buf_append(&p->arena, "", 1);
    return off;
}

static const char *arena_str(const struct pg_batch *p, size_t off)
{
    return off == NO_OFF ? NULL : p->arena.data + off;
}

static void batch_reset(struct pg_batch *p)
{
    wc_buf_reset(&p->arena);
    p->nops = 0;
    p->noffs = 0;
    p->nevs = 0;
    p->open_ev = -1;
}

/* Drop everything queued after the given marks (an event that could not be queued). */
static void batch_truncate(struct pg_batch *p, int nevs, int nops, size_t noffs, size_t arena_len)
{
    p->nevs = nevs;
    p->nops = nops;
    p->noffs = noffs;
    p->arena.len = arena_len;
    if (p->arena.data)
        p->arena.data[arena_len] = '\0';
}

/* Queue a new event record holding ev's identity; returns its index. */
static int ev_begin(struct pg_batch *p, const struct wc_event *ev)
{
    struct pg_ev *e;

    p->evs = grow(p->evs, &p->capevs, p->nevs + 1, sizeof(*p->evs));
    e = &p->evs[p->nevs];
    e->pos = ev->pos;
    for (int c = 0; c < WC_COL_COUNT; c++) {
        const struct wc_val *v = &ev->col[c];
        e->col[c] = NO_OFF;
        /* Only what a dead letter stores is kept. */
        if (c == WC_COL_OCCURRED_AT || v->kind == WC_VAL_NULL || v->text == NULL)
            continue;
        e->col[c] = arena_put(p, v->text, v->len);
    }
    e->first_op = p->nops;
    e->nop = 0;
    e->applied = 0;
    return p->nevs++;
}

/* Queue an operation for event ei; its nparams offsets are to be filled by the caller. */
static struct pg_op *op_add(struct pg_batch *p, int ei, int prep, int nparams)
{
    struct pg_op *op;

    p->ops = grow(p->ops, &p->capops, p->nops + 1, sizeof(*p->ops));
    op = &p->ops[p->nops++];
    op->prep = prep;
    op->nparams = nparams;
    op->first = p->noffs;
    grow_offs(p, (size_t)nparams);
    p->noffs += (size_t)nparams;
    p->evs[ei].nop++;
    return op;
}

static const char *slot_name(const struct wc_sink *s)
{
    return s->cfg && s->cfg->slot ? s->cfg->slot : "";
}

/*
 * Errors that say nothing about the event: the connection, the server going away, resources, a
 * serialization failure or deadlock, a lock timeout, a read-only server (a failover). Retrying the
 * same batch later is the right answer, so they become WC_ERR_IO. A missing SQLSTATE means libpq
 * itself gave up (the connection).
 */
static int sqlstate_transient(const char *st)
{
    if (st == NULL || strlen(st) != 5)
        return 1;
    return strncmp(st, "08", 2) == 0 || strncmp(st, "40", 2) == 0 || strncmp(st, "53", 2) == 0 ||
           strncmp(st, "57", 2) == 0 || strncmp(st, "58", 2) == 0 || strcmp(st, "55P03") == 0 ||
           strcmp(st, "25006") == 0;
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
static void result_msg(PGresult *r, char *dst, size_t size)
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

/* Set err from a failed result (or the connection when r is NULL), choosing IO or other by SQLSTATE. */
static int fail_result(struct wc_sink *s, PGresult *r, int other_code, const char *what, struct wc_err *err)
{
    struct pg *p = s->priv;
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    char text[512];

    if (r != NULL && *PQresultErrorMessage(r) != '\0')
        result_msg(r, text, sizeof(text));
    else
        copy_msg(text, sizeof(text), PQerrorMessage(p->conn));
    if (PQstatus(p->conn) == CONNECTION_BAD || sqlstate_transient(st))
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": %s: %s", s->name, what, text);
    else
        wc_err_set(err, other_code, "sink \"%s\": %s: %s", s->name, what, text);
    return -1;
}

/* Run sql (simple protocol, several statements allowed); 0 or -1 with err. */
static int exec_simple(struct wc_sink *s, const char *sql, const char *what, struct wc_err *err)
{
    struct pg *p = s->priv;
    PGresult *r = PQexec(p->conn, sql);
    int st = PQresultStatus(r);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fail_result(s, r, WC_ERR_DATA, what, err);
        PQclear(r);
        return -1;
    }
    PQclear(r);
    return 0;
}

/* Best effort: leave no transaction open (after a failure). */
static void rollback_quietly(struct pg *p)
{
    if (PQstatus(p->conn) == CONNECTION_OK && PQtransactionStatus(p->conn) != PQTRANS_IDLE)
        PQclear(PQexec(p->conn, "ROLLBACK"));
}

static int prepare_one(struct wc_sink *s, const char *name, const char *sql, int nparams, const char *what,
                       struct wc_err *err)
{
    struct pg *p = s->priv;
    PGresult *r = PQprepare(p->conn, name, sql, nparams, NULL);

    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        /* A statement the server rejects outright is a mistake in the configuration. */
        fail_result(s, r, WC_ERR_CONFIG, what, err);
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
    if (p->conn)
        PQfinish(p->conn);
    free(p->prep);
    free(p->rule_base);
    for (int i = 0; i < 2; i++) {
        wc_buf_free(&p->bufs[i].arena);
        free(p->bufs[i].ops);
        free(p->bufs[i].offs);
        free(p->bufs[i].evs);
    }
    free(p->values);
    free(p);
    s->priv = NULL;
}

/*
 * Connect, create walcast's tables when missing and prepare every statement. The DSN may hold a
 * password, so it never appears in a message: libpq's own message names host and port only.
 */
static int pg_open(struct wc_sink *s, struct wc_err *err)
{
    struct pg *p;
    char who[128];
    struct wc_pgconn_opts co = {.dsn = s->conf ? s->conf->dsn : NULL, .who = who};

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
    s->priv = p;
    snprintf(who, sizeof(who), "sink \"%s\"", s->name);
    p->conn = wc_pgconn_open(&co, err);
    if (p->conn == NULL)
        goto error;
    PQsetNoticeProcessor(p->conn, notice_processor, s);
    if (exec_simple(s, setup_sql, "could not create walcast's tables", err) < 0) {
        rollback_quietly(p);
        goto error;
    }
    if (prepare_all(s, err) < 0)
        goto error;
    wc_debug("sink \"%s\": connected to database \"%s\" on %s:%s, %d statements prepared", s->name,
             PQdb(p->conn), PQhost(p->conn), PQport(p->conn), p->nprep);
    return 0;

error:
    pg_close(s);
    return -1;
}

static int pg_read_cursor(struct wc_sink *s, struct wc_pos *out, int *found, struct wc_err *err)
{
    struct pg *p = s->priv;
    const char *params[2] = {slot_name(s), s->name};
    PGresult *r;

    *out = WC_POS_NONE;
    *found = 0;
    r = PQexecParams(p->conn, "SELECT lsn::text, idx FROM walcast_cursor WHERE slot = $1 AND sink = $2", 2,
                     NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fail_result(s, r, WC_ERR_DATA, "could not read the cursor", err);
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

/*
 * Queue the projection statements of every rule for ev's type. All parameters are rendered before
 * anything is kept, so an event is queued whole or not at all; a rendering error goes to the on_error
 * policy with the projection named.
 */
static int pg_apply(struct wc_sink *s, struct wc_event *ev, struct wc_err *err)
{
    struct pg *pg = s->priv;
    struct pg_batch *p = pg->b;
    const char *type = ev->col[WC_COL_EVENT_TYPE].text;
    struct wc_rule *const *rules;
    int n = 0, ei, nevs = p->nevs, nops = p->nops, rc;
    size_t noffs = p->noffs, arena_len = p->arena.len, ident_len;
    char why[1200];
    struct wc_err rerr = {0};

    if (type == NULL || ev->col[WC_COL_EVENT_TYPE].kind == WC_VAL_NULL)
        return 0;
    rules = wc_config_rules(s->conf, type, &n);
    if (rules == NULL || n == 0)
        return 0;

    ei = ev_begin(p, ev);
    ident_len = p->arena.len;
    for (int i = 0; i < n; i++) {
        const struct wc_rule *rule = rules[i];
        ptrdiff_t r = rule - s->conf->rules;
        if (r < 0 || r >= s->conf->nrule) {
            batch_truncate(p, nevs, nops, noffs, arena_len);
            wc_err_set(err, WC_ERR_INTERNAL, "sink \"%s\": rule for event \"%s\" is not one of the sink's",
                       s->name, type);
            return -1;
        }
        for (int k = 0; k < rule->nstmt; k++) {
            const struct wc_pg_stmt *st = &rule->stmts[k];
            struct pg_op *op = op_add(p, ei, pg->rule_base[r] + k, st->nparams);
            size_t first = op->first;
            for (int j = 0; j < st->nparams; j++) {
                const struct wc_tmpl *t = st->params[j];
                size_t off;
                if (ev->col[WC_COL_PAYLOAD].kind == WC_VAL_STRING && wc_tmpl_is_whole_payload(t)) {
                    /* The payload's text as it came: already kept as the event's identity. */
                    off = p->evs[ei].col[WC_COL_PAYLOAD];
                } else {
                    off = p->arena.len;
                    rc = wc_tmpl_render(t, ev, &p->arena, &rerr);
                    if (rc < 0) {
                        snprintf(why, sizeof(why), "projection \"%s\": %s",
                                 rule->projection ? rule->projection : "", rerr.msg);
                        goto render_failed;
                    }
                    if (rc == 1)
                        off = NO_OFF;
                    else
                        wc_buf_append(&p->arena, "", 1);
                }
                p->offs[first + (size_t)j] = off;
            }
        }
    }
    if (p->evs[ei].nop == 0) {
        batch_truncate(p, nevs, nops, noffs, arena_len);
        return 0;
    }
    p->evs[ei].applied = 1;
    WC_COUNT_ADD(s->applied, 1);
    return 0;

render_failed:
    /* Keep the identity (a dead letter needs it), drop what was rendered. */
    batch_truncate(p, nevs + 1, nops, noffs, ident_len);
    p->evs[ei].nop = 0;
    p->open_ev = ei;
    rc = wc_sink_handle_error(s, NULL, ev, s->cfg->on_error, why, err);
    p->open_ev = -1;
    if (p->evs[ei].nop == 0 || rc < 0)
        batch_truncate(p, nevs, nops, noffs, arena_len);
    return rc < 0 ? -1 : 0;
}

/* Fill the dead-letter parameters $3..$10 from ev (texts borrowed). */
static void dead_values(const struct wc_event *ev, const char *error, char *lsn, char *idx, const char **v)
{
    wc_lsn_format(ev->pos.lsn, lsn);
    snprintf(idx, 24, "%" PRId64, ev->pos.index);
    v[0] = lsn;
    v[1] = idx;
    for (size_t c = 0; c < sizeof(dead_cols) / sizeof(dead_cols[0]); c++)
        v[2 + c] = ev->col[dead_cols[c]].kind == WC_VAL_NULL ? NULL : ev->col[dead_cols[c]].text;
    v[7] = error;
}

/*
 * A dead letter for ev. During apply() it joins the event being queued; called by the engine it
 * becomes an event of its own. Found by a commit (in, the slow path) it is written at once, inside that
 * commit's open transaction, while apply() on the engine's thread keeps queueing into the other batch.
 */
static int pg_dead_letter(struct wc_sink *s, struct wc_commit *in, struct wc_event *ev, const char *error,
                          struct wc_err *err)
{
    struct pg *pg = s->priv;
    struct pg_batch *p = pg->b;
    char lsn[WC_LSN_STRLEN], idx[24];
    const char *v[DEAD_NPARAMS];
    int ei;

    if (in != NULL) {
        PGresult *r;
        v[0] = slot_name(s);
        v[1] = s->name;
        dead_values(ev, error, lsn, idx, v + 2);
        r = PQexecPrepared(pg->conn, pg->prep[PREP_DEAD].name, DEAD_NPARAMS, v, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fail_result(s, r, WC_ERR_DATA, "could not store a dead letter", err);
            PQclear(r);
            return -1;
        }
        PQclear(r);
        return 0;
    }

    ei = p->open_ev >= 0 ? p->open_ev : ev_begin(p, ev);
    struct pg_op *op = op_add(p, ei, PREP_DEAD, DEAD_NSTORED);
    size_t *o = p->offs + op->first;
    wc_lsn_format(ev->pos.lsn, lsn);
    snprintf(idx, sizeof(idx), "%" PRId64, ev->pos.index);
    o[0] = arena_put(p, lsn, strlen(lsn));
    o[1] = arena_put(p, idx, strlen(idx));
    for (size_t c = 0; c < sizeof(dead_cols) / sizeof(dead_cols[0]); c++)
        o[2 + c] = p->evs[ei].col[dead_cols[c]];
    o[7] = arena_put(p, error ? error : "", error ? strlen(error) : 0);
    return 0;
}

/* --- pipelines ------------------------------------------------------------------------------------- */

/*
 * Write out everything libpq holds, reading whatever the server sends meanwhile: with a long pipeline
 * the server's replies fill the socket while we still send, and a blocking write would deadlock.
 */
static int pipe_flush(struct wc_sink *s, struct wc_err *err)
{
    struct pg *p = s->priv;

    for (;;) {
        int rc = PQflush(p->conn);
        if (rc == 0)
            return 0;
        if (rc < 0)
            return fail_result(s, NULL, WC_ERR_IO, "could not send", err);
        struct pollfd pfd = {.fd = PQsocket(p->conn), .events = POLLIN | POLLOUT};
        if (poll(&pfd, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            wc_err_set(err, WC_ERR_IO, "sink \"%s\": poll failed: %s", s->name, strerror(errno));
            return -1;
        }
        if ((pfd.revents & (POLLIN | POLLERR | POLLHUP)) && !PQconsumeInput(p->conn))
            return fail_result(s, NULL, WC_ERR_IO, "could not receive", err);
    }
}

static int pipe_begin(struct wc_sink *s, struct wc_err *err)
{
    struct pg *p = s->priv;

    p->nsent = 0;
    if (PQsetnonblocking(p->conn, 1) < 0 || !PQenterPipelineMode(p->conn)) {
        PQsetnonblocking(p->conn, 0);
        return fail_result(s, NULL, WC_ERR_IO, "could not start a pipeline", err);
    }
    return 0;
}

static int pipe_sent(struct wc_sink *s, int ok, struct wc_err *err)
{
    struct pg *p = s->priv;

    if (!ok)
        return fail_result(s, NULL, WC_ERR_IO, "could not send", err);
    /* Keep libpq's output buffer small (and the server's replies moving) in long batches. */
    if (++p->nsent % 128 == 0)
        return pipe_flush(s, err);
    return 0;
}

static int pipe_sql(struct wc_sink *s, const char *sql, struct wc_err *err)
{
    struct pg *p = s->priv;

    return pipe_sent(s, PQsendQueryParams(p->conn, sql, 0, NULL, NULL, NULL, NULL, 0), err);
}

/* Parameter values of op, pointing into the arena. */
static const char **op_values(struct wc_sink *s, const struct pg_batch *b, const struct pg_op *op,
                              int *nvalues)
{
    struct pg *p = s->priv;
    int n = 0;

    p->values = grow(p->values, &p->capvalues, op->nparams + 2, sizeof(*p->values));
    if (op->prep == PREP_DEAD) {
        p->values[n++] = slot_name(s);
        p->values[n++] = s->name;
    }
    for (int j = 0; j < op->nparams; j++)
        p->values[n++] = arena_str(b, b->offs[op->first + (size_t)j]);
    *nvalues = n;
    return p->values;
}

static int pipe_op(struct wc_sink *s, const struct pg_batch *b, const struct pg_op *op, struct wc_err *err)
{
    struct pg *p = s->priv;
    int n;
    const char **v = op_values(s, b, op, &n);

    return pipe_sent(s, PQsendQueryPrepared(p->conn, p->prep[op->prep].name, n, v, NULL, NULL, 0), err);
}

static int pipe_cursor(struct wc_sink *s, struct wc_pos cursor, struct wc_err *err)
{
    struct pg *p = s->priv;
    char lsn[WC_LSN_STRLEN], idx[24];
    const char *v[4] = {slot_name(s), s->name, wc_lsn_format(cursor.lsn, lsn), idx};

    /* dlq retry applies old events while an engine may be moving the cursor: it must not write it. */
    if (s->retrying)
        return pipe_sql(s, "SELECT 1", err);
    snprintf(idx, sizeof(idx), "%" PRId64, cursor.index);
    return pipe_sent(s, PQsendQueryPrepared(p->conn, p->prep[PREP_CURSOR].name, 4, v, NULL, NULL, 0), err);
}

/*
 * Sync, flush and read every result. Returns 0 with res->failed_at = the first command the server
 * rejected (-1 when none), or -1 with err (WC_ERR_IO) when the connection failed or a rejection was
 * transient. The pipeline is left in every case.
 */
static int pipe_end(struct wc_sink *s, struct pipe_res *res, struct wc_err *err)
{
    struct pg *p = s->priv;
    PGresult *r;
    int transient = 0, synced = 0;

    res->failed_at = -1;
    res->sqlstate[0] = res->msg[0] = '\0';
    if (!PQpipelineSync(p->conn)) {
        fail_result(s, NULL, WC_ERR_IO, "could not send", err);
        goto bad;
    }
    if (pipe_flush(s, err) < 0)
        goto bad;
    /* Everything is sent: waiting for results may block now. */
    PQsetnonblocking(p->conn, 0);
    for (int i = 0; i < p->nsent; i++) {
        while ((r = PQgetResult(p->conn)) != NULL) {
            if (PQresultStatus(r) == PGRES_FATAL_ERROR && res->failed_at < 0) {
                const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
                res->failed_at = i;
                snprintf(res->sqlstate, sizeof(res->sqlstate), "%s", st ? st : "");
                result_msg(r, res->msg, sizeof(res->msg));
                transient = sqlstate_transient(st);
            }
            PQclear(r);
            if (PQstatus(p->conn) == CONNECTION_BAD)
                break;
        }
        if (PQstatus(p->conn) == CONNECTION_BAD)
            break;
    }
    if (PQstatus(p->conn) == CONNECTION_OK) {
        r = PQgetResult(p->conn);
        synced = r != NULL && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
    }
    if (!synced || !PQexitPipelineMode(p->conn)) {
        if (res->failed_at >= 0)
            wc_err_set(err, WC_ERR_IO, "sink \"%s\": connection lost: %s", s->name, res->msg);
        else
            fail_result(s, NULL, WC_ERR_IO, "connection lost", err);
        goto bad;
    }
    if (res->failed_at >= 0 && transient) {
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": %s", s->name, res->msg);
        rollback_quietly(p);
        return -1;
    }
    return 0;

bad:
    err->code = WC_ERR_IO;
    if (PQpipelineStatus(p->conn) != PQ_PIPELINE_OFF && !PQexitPipelineMode(p->conn)) {
        /* Results still pending on a broken connection: nothing more can go through it. */
        PQsetnonblocking(p->conn, 0);
        return -1;
    }
    PQsetnonblocking(p->conn, 0);
    rollback_quietly(p);
    return -1;
}

/* --- commit ---------------------------------------------------------------------------------------- */

/* The fast path: the whole batch and the cursor in one pipelined transaction. *rejected is set when a
 * statement failed for a reason the slow path can sort out. */
static int commit_fast(struct wc_sink *s, const struct pg_batch *b, struct wc_pos cursor, int *rejected,
                       struct pipe_res *res, struct wc_err *err)
{
    struct pg *p = s->priv;

    *rejected = 0;
    if (pipe_begin(s, err) < 0)
        return -1;
    if (pipe_sql(s, "BEGIN", err) < 0)
        goto send_failed;
    for (int i = 0; i < b->nops; i++)
        if (pipe_op(s, b, &b->ops[i], err) < 0)
            goto send_failed;
    if (pipe_cursor(s, cursor, err) < 0 || pipe_sql(s, "COMMIT", err) < 0)
        goto send_failed;
    if (pipe_end(s, res, err) < 0)
        return -1;
    if (res->failed_at >= 0) {
        /* In a failed explicit transaction the session is left aborted at the sync. */
        rollback_quietly(p);
        *rejected = 1;
    }
    return 0;

send_failed:
    pipe_end(s, res, err);
    err->code = WC_ERR_IO;
    return -1;
}

/* Rebuild a borrowed event from a queued record (for the error policy). */
static void ev_from_record(const struct pg_batch *p, const struct pg_ev *e, struct wc_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->pos = e->pos;
    for (int c = 0; c < WC_COL_COUNT; c++) {
        const char *t = arena_str(p, e->col[c]);
        ev->col[c].kind = t ? WC_VAL_STRING : WC_VAL_NULL;
        ev->col[c].text = t;
        ev->col[c].len = t ? strlen(t) : 0;
    }
}

/*
 * The slow path, after the fast one was rejected: one transaction again, each event in a savepoint
 * (its statements pipelined). An event whose statements fail is rolled back to its savepoint and handed
 * to the on_error policy; its dead letter is written in the same transaction. Deferred constraints are
 * made immediate so that they, too, fail inside the event's savepoint rather than at COMMIT.
 */
static int commit_slow(struct wc_sink *s, const struct pg_batch *b, struct wc_commit *c, struct wc_err *err)
{
    struct pg *p = s->priv;
    struct pipe_res res;
    struct wc_event ev;
    char why[700];
    int i;

    if (exec_simple(s, "BEGIN; SET CONSTRAINTS ALL IMMEDIATE", "could not begin", err) < 0)
        goto failed;
    for (i = 0; i < b->nevs; i++) {
        const struct pg_ev *e = &b->evs[i];
        if (e->nop == 0)
            continue;
        if (pipe_begin(s, err) < 0)
            goto failed;
        int ok = pipe_sql(s, "SAVEPOINT walcast_event", err) == 0;
        for (int k = 0; ok && k < e->nop; k++)
            ok = pipe_op(s, b, &b->ops[e->first_op + k], err) == 0;
        ok = ok && pipe_sql(s, "RELEASE SAVEPOINT walcast_event", err) == 0;
        if (pipe_end(s, &res, err) < 0 || !ok) {
            err->code = WC_ERR_IO;
            goto failed;
        }
        if (res.failed_at < 0)
            continue;
        if (res.failed_at == 0 || res.failed_at > e->nop) {
            /* SAVEPOINT or RELEASE itself: not the event's fault. */
            wc_err_set(err, WC_ERR_DATA, "sink \"%s\": savepoint failed: %s", s->name, res.msg);
            goto failed;
        }
        if (exec_simple(s, "ROLLBACK TO SAVEPOINT walcast_event; RELEASE SAVEPOINT walcast_event",
                        "could not roll back to savepoint", err) < 0)
            goto failed;
        const struct pg_prep *pp = &p->prep[b->ops[e->first_op + res.failed_at - 1].prep];
        if (pp->projection)
            snprintf(why, sizeof(why), "projection \"%s\" (line %d): %s", pp->projection, pp->line, res.msg);
        else
            snprintf(why, sizeof(why), "%s", res.msg);
        if (e->applied)
            WC_COUNT_ADD(s->applied, -1);
        ev_from_record(b, e, &ev);
        if (wc_sink_handle_error(s, c, &ev, s->cfg->on_error, why, err) < 0)
            goto failed;
    }
    if (pipe_begin(s, err) < 0)
        goto failed;
    if (pipe_cursor(s, c->cursor, err) < 0 || pipe_sql(s, "COMMIT", err) < 0) {
        pipe_end(s, &res, err);
        err->code = WC_ERR_IO;
        goto failed;
    }
    if (pipe_end(s, &res, err) < 0)
        goto failed;
    if (res.failed_at >= 0) {
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\": could not commit: %s", s->name, res.msg);
        goto failed;
    }
    return 0;

failed:
    if (PQstatus(p->conn) == CONNECTION_BAD)
        err->code = WC_ERR_IO;
    rollback_quietly(p);
    return -1;
}

/* Set the queued batch aside for commit_detached(); apply() queues into the other one meanwhile. A batch
 * still set aside after a failed commit is dropped: the engine starts again from the durable cursor. */
static void pg_detach(struct wc_sink *s)
{
    struct pg *p = s->priv;
    struct pg_batch *t;

    if (p == NULL)
        return;
    batch_reset(p->cb);
    t = p->cb;
    p->cb = p->b;
    p->b = t;
}

/*
 * Apply the batch set aside and the cursor in one transaction: pipelined in one round trip, and only
 * when the server rejects something, again event by event. The batch is cleared once it is committed;
 * after a failure it stays set aside until the next detach().
 */
static int pg_commit_detached(struct wc_sink *s, struct wc_commit *c, struct wc_err *err)
{
    struct wc_pos cursor = c->cursor;
    struct pg *p = s->priv;
    struct pipe_res res;
    int rejected;

    if (p == NULL || p->conn == NULL) {
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": not connected", s->name);
        return -1;
    }
    if (PQstatus(p->conn) != CONNECTION_OK)
        return fail_result(s, NULL, WC_ERR_IO, "connection lost", err);
    if (p->cb->nops == 0) {
        /* Nothing queued: the upsert alone is its own transaction. */
        if (pipe_begin(s, err) < 0)
            return -1;
        if (pipe_cursor(s, cursor, err) < 0) {
            pipe_end(s, &res, err);
            err->code = WC_ERR_IO;
            return -1;
        }
        if (pipe_end(s, &res, err) < 0)
            return -1;
        if (res.failed_at >= 0) {
            wc_err_set(err, WC_ERR_DATA, "sink \"%s\": could not store the cursor: %s", s->name, res.msg);
            return -1;
        }
        batch_reset(p->cb);
        return 0;
    }
    if (commit_fast(s, p->cb, cursor, &rejected, &res, err) < 0)
        return -1;
    if (rejected) {
        wc_debug("sink \"%s\": batch of %d events rejected (%s), applying event by event", s->name,
                 p->cb->nevs, res.msg);
        if (commit_slow(s, p->cb, c, err) < 0)
            return -1;
    }
    batch_reset(p->cb);
    return 0;
}

/* Commit what is queued, here and now: both halves in a row. After a failure the outcome may be unknown
 * (the connection dropped after COMMIT was sent): the sink is opened again and the stream resumed from
 * its cursor, never committed again. */
static int pg_commit(struct wc_sink *s, struct wc_pos cursor, struct wc_err *err)
{
    struct wc_commit c = {.cursor = cursor};

    pg_detach(s);
    return pg_commit_detached(s, &c, err);
}

/* Wipe the projections with the configured SQL and drop the cursor, in one transaction. */
static int pg_reset(struct wc_sink *s, struct wc_err *err)
{
    struct pg *p = s->priv;
    char sql[512];
    const char *params[2] = {slot_name(s), s->name};

    if (s->conf == NULL || s->conf->rebuild == NULL) {
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\": no rebuild action configured (sinks.%s.rebuild)", s->name,
                   s->name);
        return -1;
    }
    batch_reset(p->b);
    batch_reset(p->cb);
    if (exec_simple(s, "BEGIN", "could not begin the rebuild", err) < 0)
        return -1;
    if (exec_simple(s, s->conf->rebuild, "rebuild statement failed", err) < 0) {
        rollback_quietly(p);
        return -1;
    }
    /* The dead letters go too: the rebuild meets the same bad events again and stores them anew. */
    PGresult *r = PQexecParams(p->conn, "DELETE FROM walcast_dead_letters WHERE slot = $1 AND sink = $2", 2,
                               NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fail_result(s, r, WC_ERR_DATA, "could not remove the dead letters", err);
        PQclear(r);
        rollback_quietly(p);
        return -1;
    }
    PQclear(r);
    snprintf(sql, sizeof(sql), "DELETE FROM walcast_cursor WHERE slot = $1 AND sink = $2");
    r = PQexecParams(p->conn, sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fail_result(s, r, WC_ERR_DATA, "could not remove the cursor", err);
        PQclear(r);
        rollback_quietly(p);
        return -1;
    }
    PQclear(r);
    return exec_simple(s, "COMMIT", "could not commit the rebuild", err);
}

#define DLQ_SELECT                                                                                           \
    "SELECT id::text, lsn::text, idx::text, event_id, event_type, aggregate_type, aggregate_id, payload, "   \
    "error, created_at::text FROM walcast_dead_letters WHERE slot = $1 AND sink = $2 "                       \
    "AND ($3::bigint IS NULL OR id = $3::bigint) ORDER BY id"

static PGresult *dlq_select(struct wc_sink *s, const char *id, struct wc_err *err)
{
    struct pg *p = s->priv;
    const char *params[3] = {slot_name(s), s->name, id};
    PGresult *r = PQexecParams(p->conn, DLQ_SELECT, 3, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fail_result(s, r, WC_ERR_DATA, "could not read the dead letters", err);
        PQclear(r);
        return NULL;
    }
    return r;
}

static void dlq_cols(PGresult *r, int row, const char **cols)
{
    for (int c = 0; c < 5; c++)
        cols[c] = PQgetisnull(r, row, 3 + c) ? NULL : PQgetvalue(r, row, 3 + c);
}

static int pg_dlq_list(struct wc_sink *s, const char *id, int json, struct wc_err *err)
{
    PGresult *r = dlq_select(s, id, err);
    const char *cols[5];

    if (r == NULL)
        return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        dlq_cols(r, i, cols);
        wc_dlq_print(s, json, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), cols,
                     PQgetvalue(r, i, 8), PQgetvalue(r, i, 9));
    }
    PQclear(r);
    return 0;
}

static int pg_dlq_retry(struct wc_sink *s, const char *id, int *retried, int *failed, struct wc_err *err)
{
    struct pg *p = s->priv;
    PGresult *r = dlq_select(s, id, err);
    const char *cols[5];
    int rc = 0;

    if (r == NULL)
        return -1;
    s->retrying = 1;
    for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
        struct wc_event ev;
        struct wc_err e2 = {0};
        const char *dl_id = PQgetvalue(r, i, 0);
        int n = 0;

        dlq_cols(r, i, cols);
        wc_dlq_event(&ev, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), cols);
        batch_reset(p->b);
        if (ev.col[WC_COL_EVENT_TYPE].kind == WC_VAL_NULL ||
            !wc_config_rules(s->conf, ev.col[WC_COL_EVENT_TYPE].text, &n) || n == 0) {
            wc_err_set(&e2, WC_ERR_DATA, "no projection of sink \"%s\" handles event type \"%s\"", s->name,
                       cols[1] ? cols[1] : "");
        } else if (pg_apply(s, &ev, &e2) == 0 && p->b->nevs == 0) {
            wc_err_set(&e2, WC_ERR_DATA, "no statement of sink \"%s\" applies to this event", s->name);
        } else if (e2.code == 0 && p->b->nevs > 0) {
            struct pg_op *op = op_add(p->b, p->b->nevs - 1, PREP_DL_DELETE, 1);
            p->b->offs[op->first] = arena_put(p->b, dl_id, strlen(dl_id));
            if (pg_commit(s, s->cursor, &e2) == 0) {
                (*retried)++;
                json_decref(ev.payload_json);
                continue;
            }
        }
        json_decref(ev.payload_json);
        batch_reset(p->b);
        rollback_quietly(p);
        if (e2.code != WC_ERR_DATA) {
            *err = e2;
            rc = -1;
            break;
        }
        (*failed)++;
        const char *up[2] = {e2.msg, dl_id};
        PGresult *u =
            PQexecParams(p->conn, "UPDATE walcast_dead_letters SET error = $1 WHERE id = $2::bigint", 2, NULL,
                         up, NULL, NULL, 0);
        PQclear(u);
        wc_warning("sink \"%s\": dead letter %s still fails: %s", s->name, dl_id, e2.msg);
    }
    s->retrying = 0;
    PQclear(r);
    return rc;
}

const struct wc_sink_ops wc_sink_postgres_ops = {
    .dlq_list = pg_dlq_list,
    .dlq_retry = pg_dlq_retry,
    .reset = pg_reset,
    .type = "postgres",
    .open = pg_open,
    .read_cursor = pg_read_cursor,
    .apply = pg_apply,
    .dead_letter = pg_dead_letter,
    .commit = pg_commit,
    .detach = pg_detach,
    .commit_detached = pg_commit_detached,
    .close = pg_close,
};
