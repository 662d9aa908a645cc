/* sink.h - the one small interface every projection sink implements; the engine calls only this. */
#ifndef WALCAST_SINK_H
#define WALCAST_SINK_H

#include <stdint.h>

#include "walcast/config.h"
#include "walcast/err.h"
#include "walcast/event.h"
#include "walcast/lsn.h"
#include "walcast/tally.h"

struct wc_sink;
struct wc_dlq_ops;
struct wc_owner_ops;

/* Who owns a sink: the engine of this source system, database and slot applies events to it. */
struct wc_owner {
    char system_id[32]; /* the source's pg_control_system().system_identifier */
    char database[128];
    char slot[64];
};

/*
 * A commit in progress. The engine's committer hands it to commit_detached(); the sink hands it on to
 * wc_sink_handle_error() (and so to its own dead_letter()) for an event it finds failing while it
 * commits, so that the dead letter joins that commit rather than the batch apply() queues meanwhile on
 * the engine's thread. Where an event fails while it is being queued, there is no commit: NULL.
 */
struct wc_commit {
    struct wc_pos cursor; /* what the commit stores with its writes */
    void *unit;           /* the sink's own: where the dead letters of this commit go */
};

/*
 * Operations. Every function returns 0 or -1 with err set. err->code WC_ERR_IO means the connection is
 * gone, timed out, or the server refused for a transient reason; WC_ERR_CONFIG from open(), read_cursor()
 * or a commit means someone must fix something (a password, a privilege, a missing table): in both cases
 * the engine closes that sink, retries it with backoff while the others go on, and catches it up from its
 * durable cursor (WC_ERR_CONFIG stops the engine only before it first streamed). Any other code stops the
 * engine. Nothing may wait on a server without a deadline (the sink's statement_timeout_ms): the engine
 * runs open, read_cursor and commit_detached on threads, and abandons them at shutdown when they hang.
 */
struct wc_sink_ops {
    const char *type; /* "postgres", "redis", "jsonl" */
    /* Connect and create walcast's own tables/keys when missing. */
    int (*open)(struct wc_sink *s, struct wc_err *err);
    /* The durable cursor; *found = 0 when the sink has none yet (then *out is WC_POS_NONE). */
    int (*read_cursor)(struct wc_sink *s, struct wc_pos *out, int *found, struct wc_err *err);
    /*
     * Queue the event's projection writes for the next commit. The event's memory is borrowed and dies
     * after the call: copy what is kept. Routing by event type, rendering templates and the error
     * policy (dead-letter, skip, halt) are the sink's: a halt returns -1 with WC_ERR_DATA.
     */
    int (*apply)(struct wc_sink *s, struct wc_event *ev, struct wc_err *err);
    /* A dead letter for ev (an unknown event type, or an error), with the error text: queued for the next
     * commit when in is NULL, or part of the commit in progress in. */
    int (*dead_letter)(struct wc_sink *s, struct wc_commit *in, struct wc_event *ev, const char *error,
                       struct wc_err *err);
    /*
     * Durably apply everything queued together with cursor, in one atomic unit (a PostgreSQL
     * transaction, a Redis MULTI/EXEC, an fsync'ed file then a renamed cursor file). Called with nothing
     * queued to move the cursor alone. On return 0 the cursor is durable.
     */
    int (*commit)(struct wc_sink *s, struct wc_pos cursor, struct wc_err *err);
    /*
     * Optional, both or neither: commit in two halves so that the next batch is queued while this one
     * commits. detach() sets everything queued aside (no I/O); commit_detached() then commits what was set
     * aside, with c->cursor, exactly as commit() would, and may run on another thread while apply() and
     * dead_letter() queue the next batch on the engine's thread. Nothing else may run meanwhile.
     */
    void (*detach)(struct wc_sink *s);
    int (*commit_detached)(struct wc_sink *s, struct wc_commit *c, struct wc_err *err);
    void (*close)(struct wc_sink *s);
    /*
     * Wipe the projections with the sink's configured rebuild action and remove its cursor, in one
     * atomic unit, before a rebuild from the outbox table. NULL or no rebuild configured: -1 with
     * WC_ERR_DATA.
     */
    int (*reset)(struct wc_sink *s, struct wc_err *err);
    /* The sink's dead-letter store, for `walcast dlq` (sinks/dlq.h); NULL when it keeps none. */
    const struct wc_dlq_ops *dlq;
    /* The sink's owner record (sinks/owner.h); NULL when it keeps none (the tail sink). */
    const struct wc_owner_ops *owner;
};

struct wc_sink {
    const struct wc_sink_ops *ops;
    const struct wc_sink_conf *conf; /* borrowed; NULL for the tail (jsonl) sink */
    const struct wc_config *cfg;     /* borrowed */
    const char *name;
    struct wc_pos cursor; /* durable cursor: set by the engine once a commit has returned */
    int has_cursor;
    void *priv; /* the implementation's state */
    /* counters */
    uint64_t applied;       /* events that ran at least one projection action */
    uint64_t dead_lettered; /* events sent to the dead-letter store */
    uint64_t skipped;       /* events dropped by the skip policy */
    int retrying;           /* dlq retry: a failing event is an error, never a new dead letter */
    /* 1 while the sink is open, its cursor read and its last commit good; 0 when closed or a commit failed.
     * Set by the engine with atomic stores, read by the metrics endpoint (/readyz). */
    int connected;
    struct wc_tally *tally; /* what it did, for the metrics endpoint; NULL: not counted */
    /* Set by the engine before open(): this is the sink's one writer. open() then ends any earlier session
     * of the same slot and sink that still runs on the server (a connection given up after a timeout, or
     * left by a killed process) before the cursor is read, so that a transaction it still had in flight
     * cannot commit after the cursor was read. dlq commands leave it 0 and never disturb the engine. */
    int writer;
    /* PostgreSQL: schemas searched before the connection's own search path (a rebuild's shadow schema,
     * where the projection's statements find its shadow tables); NULL = none. Set before open(). */
    const char *search_path;
    /* Redis: prepended to every key the projections write (a verify's shadow key space); NULL = none.
     * key_prefix_tagged (a Redis Cluster): the prefix is followed by "{T}", T the tag of the hash slot of
     * the key as written without it (redis_cluster_slot_tag), so that the prefixed key is in that slot. */
    const char *key_prefix;
    int key_prefix_tagged;
    /* The engine gave up waiting for a thread still running on this sink (at shutdown): it is neither
     * closed nor freed (wc_sink_free leaves it), the process is about to exit. */
    int abandoned;
};

/* The counters are updated by the engine's thread and a commit thread: atomically. */
#define WC_COUNT_ADD(counter, n) __atomic_fetch_add(&(counter), (uint64_t)(n), __ATOMIC_RELAXED)

/* Count ev as applied (n = 1, when queued) or as not applied after all (n = -1, by the commit that found
 * it failing: in_commit 1): the sink's counter and its tally by event type. */
static inline void wc_sink_count_applied(struct wc_sink *s, int in_commit, const struct wc_event *ev, int n)
{
    WC_COUNT_ADD(s->applied, n);
    wc_tally_count(s->tally, in_commit, ev, WC_OUT_APPLIED, n);
}

extern const struct wc_sink_ops wc_sink_postgres_ops;
extern const struct wc_sink_ops wc_sink_redis_ops;
extern const struct wc_sink_ops wc_sink_redis_cluster_ops; /* sinks.NAME.cluster: true */
extern const struct wc_sink_ops wc_sink_jsonl_ops;

/* New sink for conf (postgres or redis). Returns NULL with err when the type is unknown. */
struct wc_sink *wc_sink_new(const struct wc_config *cfg, const struct wc_sink_conf *conf, struct wc_err *err);
/* The tail sink: JSON lines to path ("-" = stdout), cursor in cursor_path (NULL = no cursor). */
struct wc_sink *wc_sink_jsonl_new(const struct wc_config *cfg, const char *path, const char *cursor_path);
void wc_sink_free(struct wc_sink *s); /* closes it first; NULL is fine */

/*
 * Shared by sinks: apply the policy for a failed event, found while queueing it (in NULL) or while
 * committing in. Returns 0 when the event was dead-lettered or skipped (counters updated), -1 with err
 * when the policy is halt or the dead letter could not be written.
 */
int wc_sink_handle_error(struct wc_sink *s, struct wc_commit *in, struct wc_event *ev, int policy,
                         const char *error, struct wc_err *err);

/*
 * Ownership (sinks/owner.c). A sink belongs to the engine of one source and slot: its cursor is a
 * position in that slot's stream, meaningless in any other. An open sink with no owner recorded is
 * claimed for me (atomically: of two engines claiming at once one wins); one owned by another source or
 * slot is refused: -1 with WC_ERR_CONFIG naming the owner and `walcast sink release`. A sink without an
 * owner record (tail) is always 0.
 */
int wc_sink_claim(struct wc_sink *s, const struct wc_owner *me, struct wc_err *err);
/* The recorded owner; *found = 0 when none. */
int wc_sink_owner(struct wc_sink *s, struct wc_owner *out, int *found, struct wc_err *err);
/* Hand the sink over: remove its owner record and its cursor in that owner's slot, in one atomic unit.
 * The projections stay; the next engine to open the sink claims it. *found = 0 when it had no owner. */
int wc_sink_release(struct wc_sink *s, struct wc_owner *was, int *found, struct wc_err *err);

/* Print the sink's dead letters (id NULL = all), one line each, or one JSON object each. */
int wc_sink_dlq_list(struct wc_sink *s, const char *id, int json, struct wc_err *err);
/*
 * Apply dead letters again with the current configuration (id NULL = all). Each one that applies is
 * removed in the same atomic unit as its projection writes; one that still fails stays, with its error
 * updated. Counts go to *retried and *failed. The cursor is not moved.
 */
int wc_sink_dlq_retry(struct wc_sink *s, const char *id, int *retried, int *failed, struct wc_err *err);

#endif
