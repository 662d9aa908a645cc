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
 * How a batch travels. Every action of one event type (all the projections' commands and scripts for
 * it) runs in one Lua script generated for that type when the sink opens (script.c), so that an event is
 * applied whole or not at all. apply() renders each event's keys and values and formats one EVALSHA of
 * its type's script (RESP) into one growing buffer, remembering where each event starts. commit() then
 * writes, in one pipeline and so one round trip:
 *
 *     MULTI
 *     SCRIPT LOAD <each script the batch uses>    (inside the unit: EVALSHA cannot miss a flushed cache)
 *     EVALSHA <type's script> ... for each event  (or a dead letter's, for one found while queueing)
 *     HSET walcast:applied:<slot> <sink> <lsn>    (the applied-through position, for read-your-writes,
 *     PUBLISH walcast:applied:<slot> "<sink> <lsn>" and its announcement: both skipped by dlq retry)
 *     HSET walcast:cursor:<slot> <sink> <cursor>  (on_error: halt -> a script that skips it after a halt,
 *                                                  and publishes the applied position when it stores)
 *     EXEC
 *
 * An event's script first checks what could make a write fail part way (the type each key holds, the
 * value a counter increments, by simulating the event's own earlier commands), then writes. When a
 * check fails it writes nothing of the event; by the on_error policy it adds the dead letter itself
 * (XADD ... MAXLEN ~ dead_letter_max, in the same EXEC as the cursor), does nothing (skip), or (halt)
 * stores the cursor at the event before it and makes the rest of the unit do nothing, so that the engine
 * stops before the cursor passes the event. A write that fails even so (a failure no check foresaw) ends
 * the event there: its dead letter records how many actions took effect ("applied"), and `dlq retry`
 * refuses it rather than run those again. The script's keys are all in KEYS[] (never computed in Lua).
 */

#define CONNECT_TIMEOUT_S 10
/* How long a reply may take where no sink configuration says (sinks.NAME.statement_timeout_ms, whose
 * default this is): the cluster module's connections. */
#define IO_TIMEOUT_S 30
#define DEFAULT_PORT 6379

/* A Lua script of the configuration, with its SHA1 as SCRIPT LOAD returned it (loaded at open to check
 * it: it runs inside its event type's generated script). */
struct script {
    const char *src; /* borrowed from the configuration */
    char sha[41];
};

/* One generated script: every action of one event type. how[] has one entry per argument of its actions
 * (rule by rule, action by action, argv in order): GEN_SKIP (a command name, or a literal written into
 * the script), GEN_KEY (sent in KEYS) or GEN_ARG (rendered and sent in ARGV). */
enum { GEN_SKIP, GEN_KEY, GEN_ARG };
/* One action of a generated script: its rule and command, its keys among the script's (KEYS[kb + k0 +
 * 1..nk]) and its values (ARGV[b + a0 + 1..na]): a Redis Cluster groups the actions of an event by the
 * hash slot of their keys. */
struct gen_act {
    const struct wc_rule *rule;
    const struct wc_redis_cmd *cmd;
    int k0, nk;
    int a0, na;
};
struct gen {
    char *src;
    char sha[41];
    unsigned char *how;
    int nkeys, nargs; /* sent per event, after walcast's own */
    int nact;         /* actions, in configuration order */
    struct gen_act *act;
    const char *event_type; /* borrowed from the configuration */
};

/* The fixed scripts: a dead letter found while queueing, the cursor after a halt (on_error: halt; in a
 * cluster every unit's), the guard at the start of a unit in a cluster (csink.h). */
enum { FIXED_DEAD_LETTER, FIXED_CURSOR, FIXED_GUARD, NFIXED };

/* A batch: one record per event (rec.off: where its command starts in pending, rec.n: 0 or 1 command,
 * rec.first: REC_EVENT or REC_DEAD_LETTER, what that command is). */
enum { REC_EVENT, REC_DEAD_LETTER };
struct batch {
    struct wc_recs recs;   /* the events' identities (for messages) */
    struct wc_buf pending; /* formatted commands */
    int ncmd;
    uint64_t scripts; /* the generated scripts its commands use (script_bit) */
    int fixed;        /* the fixed scripts it uses (1 << FIXED_*) */
};

/* A script's bit in batch.scripts; the 64th stands for every script from there on. */
static inline uint64_t script_bit(int i)
{
    return (uint64_t)1 << (i < 63 ? i : 63);
}

struct csink;

struct redis_sink {
    struct csink *cs; /* a Redis Cluster (csink.h; c is then NULL), or NULL for one server */
    redisContext *c;
    int timeout_ms; /* how long a reply may take: sinks.NAME.statement_timeout_ms */
    char *host;
    int port;
    int db;
    char *user;     /* NULL for AUTH password */
    char *password; /* never logged */
    char *cursor_key;
    char *dead_key;
    char *halt_key; /* set by the script of an event that halts, removed in the same EXEC */
    /* walcast:applied:<slot>: the hash (a field per sink) and channel where every unit publishes the
     * position the sink has applied through (its cursor's LSN), for readers waiting for their writes */
    char *applied_key;
    struct script *scripts;
    int nscript;
    struct gen *gens; /* generated scripts (script.c) */
    int ngen;
    int *gen_of_rule; /* per configured rule: its event type's generated script, or -1 */
    char fixed_sha[NFIXED][41];
    const char *retry_id; /* dlq retry: the dead letter the event being retried comes from */
    int retry_replaced;   /* ... which its script replaced by one that records a partial application */
    /* Two batches: apply() queues into b while commit_detached() sends cb on the engine's commit thread. */
    struct batch bufs[2];
    struct batch *b, *cb;
    /* scratch for rendering one event */
    struct wc_buf arg;
    size_t *argoff;
    size_t *arglen;
    const char **argv;
    int argcap;
};

/* The result of one MULTI/EXEC unit. */
struct unit {
    int aborted;      /* EXEC refused: a command failed to queue, or the server refused the transaction */
    int transient;    /* ... for a reason that passes (OOM, LOADING...): retry later */
    char why[512];    /* the first queueing error (or EXEC's own error) */
    redisReply *exec; /* the EXEC array (owned) when not aborted */
    int nload;        /* the SCRIPT LOAD replies at the start of exec */
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
/* Format argv as one RESP command at the end of the batch, as r's command. */
void redis_queue_argv(struct batch *b, struct wc_rec *r, int argc, const char **argv, const size_t *len);
int redis_apply(struct wc_sink *s, struct wc_event *ev, struct wc_err *err);
/* The pieces of apply() the cluster's shares (csink.h): argument scratch, the script's mode, its
 * arguments. */
void redis_arg_reserve(struct redis_sink *p, int n);
void redis_arg_fixed(struct redis_sink *p, int i, const char *s, size_t len);
size_t redis_put_ll(char *buf, long long v);
const char *redis_col_text(const struct wc_event *ev, int c, size_t *len);
char redis_mode(const struct wc_sink *s);
/* Render the values an event of type g sends: GEN_KEY arguments at kpos + k, GEN_ARG ones at apos + a
 * (p->argoff/arglen into p->arg; the other slots are the caller's). 0, or -1 with why in msg. */
int redis_render(struct wc_sink *s, struct redis_sink *p, struct wc_event *ev, struct wc_rule *const *rules,
                 int n, const struct gen *g, int kpos, int apos, char *msg, size_t msgsize);
/* The mode's arguments at mpos (script.c says which): prev is the cursor before the event (mode h) or the
 * dead letter retried (mode r). Texts go to t, which must live until the command is queued. Returns how
 * many there are. */
struct redis_mode_text {
    char lsn[WC_LSN_STRLEN], idx[24], at[40];
};
int redis_mode_args(struct redis_sink *p, char mode, const struct wc_event *ev, int mpos, const char *prev,
                    struct redis_mode_text *t);
int redis_dead_letter(struct wc_sink *s, struct wc_commit *in, struct wc_event *ev, const char *error,
                      struct wc_err *err);

/* script.c */
/* Generate the script of every event type of the sink (sha not known yet). */
void redis_gen_make(struct wc_sink *s, struct redis_sink *p);
/* Generate the script of every event type of the sink and load them; 0 or -1 with err. */
int redis_gen_scripts(struct wc_sink *s, struct redis_sink *p, struct wc_err *err);
void redis_gen_free(struct redis_sink *p);
/* The source of fixed script i (FIXED_*). */
const char *redis_fixed_script(int i);

/* unit.c */
/* Write one atomic unit: MULTI, SCRIPT LOADs of b's scripts, b's commands, the cursor, EXEC; read every
 * reply. 0 with u filled (u->exec owned by the caller when not aborted), or -1 with err (WC_ERR_IO when
 * the connection is gone). */
int redis_send_unit(struct wc_sink *s, struct redis_sink *p, const struct batch *b, struct wc_pos cursor,
                    struct unit *u, struct wc_err *err);
/* What a refusal of every write means and what to do, for messages ("" when nothing is known). */
const char *redis_refusal_hint(const char *msg);

/* commit.c */
/*
 * An event (or a cluster's part of one) its script did not apply: rep is {applied, error}. By the mode it
 * ran in, the script has written its dead letter (counted here), done nothing (skip), or stored the cursor
 * before it (halt: -1 with err); in dlq retry it is an error for the driver.
 */
int redis_not_applied(struct wc_sink *s, struct redis_sink *p, const struct wc_recs *recs, struct wc_rec *r,
                      const redisReply *rep, struct wc_err *err);
void redis_detach(struct wc_sink *s);
int redis_commit_detached(struct wc_sink *s, struct wc_commit *c, struct wc_err *err);
int redis_commit(struct wc_sink *s, struct wc_pos cursor, struct wc_err *err);
int redis_reset(struct wc_sink *s, struct wc_err *err);

/* dlq.c */
extern const struct wc_dlq_ops redis_dlq_ops;
/* The fields of one XRANGE entry into dl (texts borrowed from entry); 0 when it is one of this sink's. */
int redis_dl_entry(struct wc_sink *s, redisReply *entry, struct wc_dead_letter *dl);

#endif
