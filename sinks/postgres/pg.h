/*
 * pg.h - the PostgreSQL sink's parts: the connection and its prepared statements (conn.c), the batch
 * that apply() queues (queue.c), pipelines (pipe.c), commits with their fast and slow paths (commit.c)
 * and the dead-letter table (dlq.c). Private to sinks/postgres/.
 *
 * How a batch is kept. apply() renders every parameter at once and copies it, with the event's identity
 * (a struct wc_rec), into the batch's arena (NUL-terminated strings back to back). Since the arena may
 * move when it grows, everything refers to it by offset. Growable arrays describe the batch: the event
 * records (identity, range of operations), the operations (one prepared statement execution each) and
 * the parameter offsets of all operations. After a commit the arrays and the arena are reset and keep
 * their capacity, so a steady stream of batches allocates nothing.
 *
 * There are two batches. detach() sets the queued one aside and commit_detached() sends it, on the
 * engine's commit thread, while apply() queues the next one into the other: the server executes a batch
 * while walcast decodes the next. Only the committing side uses the connection; the two share the
 * prepared statements' names (read-only while streaming) and the atomic counters, never a batch, and
 * the batch pointers are swapped only while no commit runs.
 */
#ifndef WALCAST_SINKS_PG_H
#define WALCAST_SINKS_PG_H

#include <stdint.h>

#include <libpq-fe.h>

#include "../dlq.h"
#include "../record.h"
#include "walcast/sink.h"

/* Prepared statements: walcast's own three first, then every configured statement. */
enum { PREP_CURSOR, PREP_DEAD, PREP_DL_DELETE, PREP_FIRST_RULE };

#define DEAD_NPARAMS 10
#define DEAD_NSTORED 8 /* all but slot and sink, which are the same for every dead letter */

struct pg_prep {
    char name[32];
    const char *projection; /* for messages; NULL for walcast's own statements */
    int line;
};

/* One queued execution of a prepared statement. */
struct pg_op {
    int prep;     /* index into pg->prep */
    int nparams;  /* parameters stored in the batch's offs (DEAD_NSTORED for a dead letter) */
    size_t first; /* index of the first in offs */
};

/* A batch: event records (rec.first/rec.n: their operations) and the arena, operations, parameters. */
struct pg_batch {
    struct wc_recs recs;
    struct pg_op *ops;
    int nops, capops;
    size_t *offs; /* arena offsets, WC_REC_NULL for SQL NULL */
    size_t noffs, capoffs;
    int open_ev; /* the event apply() is queueing, or -1: dead_letter() attaches to it */
};

struct pg {
    PGconn *conn;
    int wait_ms; /* how long to wait for the server without a byte from it: statement_timeout_ms + 2 s */
    struct pg_prep *prep;
    int nprep;
    int *rule_base; /* per configured rule: its first statement's index in prep */
    struct pg_batch bufs[2];
    struct pg_batch *b;  /* what apply() queues into */
    struct pg_batch *cb; /* set aside by detach(), sent by commit_detached() */
    const char **values; /* scratch of the committing side: parameter values of one execution */
    int capvalues;
    int nsent;             /* commands sent in the current pipeline */
    uint64_t dl_pruned_at; /* s->dead_lettered when the dead letters were last pruned (dlq.c) */
};

/* The outcome of a pipeline. */
struct pipe_res {
    int failed_at; /* index of the first failed command, or -1 */
    char sqlstate[6];
    char msg[512];
};

/* conn.c */
const char *pg_slot_name(const struct wc_sink *s);
/* What a failed statement's SQLSTATE means: WC_ERR_IO (retry later), WC_ERR_CONFIG (a fault of the
 * configuration or the database: retry loudly) or 0 (the event's: dead letter). */
int pg_sqlstate_kind(const char *st);
void pg_result_msg(PGresult *r, char *dst, size_t size);
/* Set err from a failed result (or the connection when r is NULL): IO or CONFIG by SQLSTATE, else
 * other_code. */
int pg_fail_result(struct wc_sink *s, PGresult *r, int other_code, const char *what, struct wc_err *err);
/* Run sql (simple protocol, several statements allowed); 0 or -1 with err. */
int pg_exec_simple(struct wc_sink *s, const char *sql, const char *what, struct wc_err *err);
/* PQexecParams / PQexecPrepared (name not NULL) with the sink's deadline: a result, or NULL with err
 * (WC_ERR_IO: the connection failed or the server stayed silent; then it must be closed). */
PGresult *pg_exec(struct wc_sink *s, const char *name, const char *sql, int nparams,
                  const char *const *params, struct wc_err *err);
/* Best effort: leave no transaction open (after a failure). */
void pg_rollback_quietly(struct pg *p);

/* queue.c */
void *pg_grow(void *p, int *cap, int need, size_t size);
void pg_batch_reset(struct pg_batch *b);
void pg_batch_free(struct pg_batch *b);
/* Queue an operation for event record ei; its nparams offsets are to be filled by the caller. */
struct pg_op *pg_op_add(struct pg_batch *b, int ei, int prep, int nparams);
int pg_apply(struct wc_sink *s, struct wc_event *ev, struct wc_err *err);
int pg_dead_letter(struct wc_sink *s, struct wc_commit *in, struct wc_event *ev, const char *error,
                   struct wc_err *err);

/* pipe.c */
int pg_pipe_begin(struct wc_sink *s, struct wc_err *err);
int pg_pipe_sql(struct wc_sink *s, const char *sql, struct wc_err *err);
int pg_pipe_op(struct wc_sink *s, const struct pg_batch *b, const struct pg_op *op, struct wc_err *err);
int pg_pipe_cursor(struct wc_sink *s, struct wc_pos cursor, struct wc_err *err);
int pg_pipe_end(struct wc_sink *s, struct pipe_res *res, struct wc_err *err);

/* commit.c */
void pg_detach(struct wc_sink *s);
int pg_commit_detached(struct wc_sink *s, struct wc_commit *c, struct wc_err *err);
int pg_commit(struct wc_sink *s, struct wc_pos cursor, struct wc_err *err);
int pg_reset(struct wc_sink *s, struct wc_err *err);

/* dlq.c */
extern const struct wc_dlq_ops pg_dlq_ops;
/* Pipe a DELETE of the sink's oldest dead letters beyond engine.dead_letter_max into the transaction
 * being sent, when enough were written since the last one (a tenth of the bound); 0 or -1 with err. */
int pg_dlq_pipe_prune(struct wc_sink *s, struct wc_err *err);

#endif
