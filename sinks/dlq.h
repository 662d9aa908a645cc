/*
 * dlq.h - dead letters as the sinks store them, and the `walcast dlq list|retry` drivers that work the
 * same over every store: a sink provides its struct wc_dlq_ops (in its ops table), the drivers in dlq.c
 * do the rest. Private to sinks/ (the commands call wc_sink_dlq_list/retry of sink.h).
 */
#ifndef WALCAST_SINKS_DLQ_H
#define WALCAST_SINKS_DLQ_H

#include "walcast/sink.h"

/* The columns a dead letter keeps, in the order the stores and `dlq list` show them. */
enum { DL_EVENT_ID, DL_EVENT_TYPE, DL_AGGREGATE_TYPE, DL_AGGREGATE_ID, DL_PAYLOAD, DL_NCOLS };
extern const char *const wc_dl_col_names[DL_NCOLS]; /* "event_id", "event_type", ... */
extern const int wc_dl_cols[DL_NCOLS];              /* their WC_COL_* */

/* One stored dead letter; every text is borrowed from the store's reply (NULL when absent). */
struct wc_dead_letter {
    const char *id;
    const char *lsn;
    const char *idx;
    const char *col[DL_NCOLS];
    const char *error;
    const char *created; /* NULL when the store keeps no time */
    const char *applied; /* how many of the event's actions took effect before it failed (Redis), or NULL */
    const char *mask;    /* Redis Cluster: the actions of the event's part in the dead letter's hash slot, one
                          * byte each ("1": in it), or NULL: every action */
};

struct wc_dlq_ops {
    const char *action; /* what a projection runs, for messages: "statement", "command" */
    /* The sink's dead letters (id NULL = all) into *out (n of them), valid until release(hold). */
    int (*fetch)(struct wc_sink *s, const char *id, struct wc_dead_letter **out, int *n, void **hold,
                 struct wc_err *err);
    void (*release)(struct wc_dead_letter *dl, void *hold);
    /* Optional: dl is about to be applied again (before apply()). */
    void (*prepare)(struct wc_sink *s, const struct wc_dead_letter *dl);
    /* Drop whatever is queued (and any open transaction): the start and the end of each retry. */
    void (*discard)(struct wc_sink *s);
    /* Queue dl's removal into the event apply() has just queued, so that it commits with its writes. */
    void (*queue_removal)(struct wc_sink *s, const struct wc_dead_letter *dl);
    /* dl failed again with msg: it stays, with msg as its error. 0, or -1 with err. */
    int (*still_failing)(struct wc_sink *s, const struct wc_dead_letter *dl, const char *msg,
                         struct wc_err *err);
};

/* The event a dead letter holds (texts borrowed from dl; occurred_at and commit_time are empty). */
void wc_dlq_event(struct wc_event *ev, const struct wc_dead_letter *dl);

#endif
