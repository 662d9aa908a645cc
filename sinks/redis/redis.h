/*
 * redis.h - the Redis sink's parts: the DSN (dsn.c), the connection, scripts and cursor (conn.c), the
 * batch that apply() queues (queue.c), one MULTI/EXEC unit on the wire (unit.c), commits with their fast
 * and slow paths (commit.c) and the dead-letter stream (dlq.c). Private to sinks/redis/.
 */
#ifndef WALCAST_SINKS_REDIS_H
#define WALCAST_SINKS_REDIS_H

#include <stdint.h>

#include <hiredis/hiredis.h>

#include "../dlq.h"
#include "../record.h"
#include "walcast/sink.h"

/*
 * How a batch travels. apply() renders each event's commands and formats them (RESP) into one growing
 * buffer, remembering where each event starts, how many commands it has and a copy of the event's
 * columns (for a dead letter written later). commit() then writes, in one pipeline and so one round trip:
 *
 *     SCRIPT LOAD <each script the batch uses>    (cheap when cached; survives a SCRIPT FLUSH)
 *     MULTI
 *     <every queued command>
 *     HSET walcast:cursor:<slot> <sink> <cursor>
 *     EXEC
 *
 * Redis queues the commands and runs them all at EXEC, or runs none when one failed to queue (unknown
 * command, wrong number of arguments: EXECABORT). Then the batch is redone event by event, each event in
 * its own MULTI/EXEC with the cursor at that event, and an event that still fails to queue goes through
 * the on_error policy in a unit of its own (its dead letter written with the cursor at that event).
 *
 * Limitation: an error while EXEC runs a command (WRONGTYPE, a failing script) does not roll the
 * transaction back; Redis has no rollback. The other commands and the cursor are applied. Such an event is
 * reported with a warning naming the command and its key, and its dead letter (per on_error) is written
 * right after the EXEC, best effort, outside the atomic unit. With on_error: halt the engine stops there,
 * but the cursor is already past the event: the next start does not meet it again (the warning and the
 * error name it).
 */

#define CONNECT_TIMEOUT_S 10
/* How long a reply may take where no sink configuration says (sinks.NAME.statement_timeout_ms, whose
 * default this is): the cluster module's connections. */
#define IO_TIMEOUT_S 30
#define DEFAULT_PORT 6379

/* A Lua script of the configuration, with its SHA1 as SCRIPT LOAD returned it. */
struct script {
    const char *src; /* borrowed from the configuration */
    char sha[41];
};

/* A batch: one record per event (rec.off: where its commands start in pending, rec.n: how many). */
struct batch {
    struct wc_recs recs;   /* the events' identities (for a dead letter written later) */
    struct wc_buf pending; /* formatted commands */
    int ncmd;
    uint64_t scripts; /* the scripts its commands use (script_bit): loaded again before its MULTI */
};

/* A script's bit in batch.scripts; the 64th stands for every script from there on. */
static inline uint64_t script_bit(int i)
{
    return (uint64_t)1 << (i < 63 ? i : 63);
}

struct redis_sink {
    redisContext *c;
    int timeout_ms; /* how long a reply may take: sinks.NAME.statement_timeout_ms */
    char *host;
    int port;
    int db;
    char *user;     /* NULL for AUTH password */
    char *password; /* never logged */
    char *cursor_key;
    char *dead_key;
    struct script *scripts;
    int nscript;
    /* Two batches: apply() queues into b while commit_detached() sends cb on the engine's commit thread.
     * Dead letters written by a commit (after the fact, outside its unit) go into loose. */
    struct batch bufs[2];
    struct batch *b, *cb;
    struct batch loose;
    /* scratch for rendering one command */
    struct wc_buf arg;
    size_t *argoff;
    size_t *arglen;
    const char **argv;
    int argcap;
};

/* The result of one MULTI/EXEC unit. */
struct unit {
    int aborted;      /* EXEC refused: a command failed to queue */
    int transient;    /* ... for a reason that passes (OOM, LOADING...): retry later, do not dead-letter */
    char why[512];    /* the first queueing error (or EXEC's own error) */
    redisReply *exec; /* the EXEC array (owned) when not aborted */
};

/* dsn.c: "redis://[[user]:password@]host[:port][/db]" into p; never quotes the string (a password). */
int redis_parse_dsn(struct wc_sink *s, struct redis_sink *p, const char *dsn, struct wc_err *err);

/* conn.c */
char *redis_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Errors that say "try again later" rather than "this command is wrong". */
int redis_transient_error(const char *msg);
/* err for a lost connection (WC_ERR_IO); returns -1. */
int redis_io_error(struct wc_sink *s, struct redis_sink *p, struct wc_err *err);
/* An operation on a sink that is not open: retryable (WC_ERR_IO); returns -1. */
int redis_not_open(struct wc_sink *s, struct wc_err *err);
/* Run one command and return its reply (NULL with err set on a lost connection). */
redisReply *redis_command(struct wc_sink *s, struct redis_sink *p, int argc, const char **argv,
                          const size_t *len, struct wc_err *err);
/* err for an error reply of a one-off command: WC_ERR_IO when transient, else code; returns -1. */
int redis_reply_error(struct wc_sink *s, struct redis_sink *p, redisReply *r, int code, const char *what,
                      struct wc_err *err);
struct script *redis_find_script(struct redis_sink *p, const char *src);
int redis_load_scripts(struct wc_sink *s, struct redis_sink *p, struct wc_err *err);
void redis_close(struct wc_sink *s);

/* queue.c */
void redis_batch_reset(struct batch *b);
void redis_batch_free(struct batch *b);
/* Format argv as one RESP command at the end of the batch, as one of r's commands. */
void redis_queue_argv(struct batch *b, struct wc_rec *r, int argc, const char **argv, const size_t *len);
int redis_apply(struct wc_sink *s, struct wc_event *ev, struct wc_err *err);
int redis_dead_letter(struct wc_sink *s, struct wc_commit *in, struct wc_event *ev, const char *error,
                      struct wc_err *err);

/* unit.c */
/* Describe the command at buf[*off] for a message ("ZADD on key \"k\"") and advance *off past it. */
void redis_describe_cmd(const char *buf, size_t *off, char *out, size_t outsize);
int redis_send_unit(struct wc_sink *s, struct redis_sink *p, const char *cmds, size_t len, int ncmd,
                    uint64_t scripts, struct wc_pos cursor, struct unit *u, struct wc_err *err);
int redis_send_loose(struct wc_sink *s, struct redis_sink *p, struct wc_err *err);

/* commit.c */
void redis_detach(struct wc_sink *s);
int redis_commit_detached(struct wc_sink *s, struct wc_commit *c, struct wc_err *err);
int redis_commit(struct wc_sink *s, struct wc_pos cursor, struct wc_err *err);
int redis_reset(struct wc_sink *s, struct wc_err *err);

/* dlq.c */
extern const struct wc_dlq_ops redis_dlq_ops;

#endif
