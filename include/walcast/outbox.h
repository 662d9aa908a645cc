/* outbox.h - the outbox table as the source side needs it (where it is, which column holds what, the
 * order a rebuild replays it in) and the check made before streaming it. */
#ifndef WALCAST_OUTBOX_H
#define WALCAST_OUTBOX_H

#include "walcast/err.h"
#include "walcast/event.h"

struct pg_conn;

/* Where the outbox is and how to read it; every string borrowed. */
struct wc_outbox {
    const char *schema;
    const char *table;
    const char *const *columns; /* WC_COL_COUNT names; "" = the outbox has no such column (always null) */
    const char *order_by;       /* replay order: column names, comma-separated; NULL or "" = event_id when
                                   it is an integer column, else none */
};

/* What the check found. */
struct wc_outbox_info {
    unsigned typid[WC_COL_COUNT]; /* pg_attribute.atttypid of each configured column; 0 when absent ("") */
    char type[WC_COL_COUNT][64];  /* its type as wal2json names it: format_type(atttypid, atttypmod) */
    char order[512];              /* ORDER BY list (quoted identifiers) of a rebuild; "" when none is safe */
    char order_desc[160];         /* the order for messages: "position (bigint)" */
    char order_caveat[512];       /* set when the order may disagree with commit order: why */
    char order_problem[1536];     /* set when there is no order (order is ""): the risk and the fix */
};

/*
 * Check on conn (a plain SQL connection to the source) that the outbox is a table that exists, that every
 * configured column exists with a type walcast can use (the event type text, the payload JSON or text,
 * occurred_at a time, text or number), that the current role may SELECT them (a rebuild reads them),
 * and resolve the replay order (source.outbox.order_by; else event_id when it is an integer).
 * Returns 0 with info filled: an outbox without a safe replay order is no error here (only a rebuild
 * needs one; info->order_problem says why and how to fix it). -1 with err: WC_ERR_CONFIG naming the
 * problem, what it would cause and the fix; WC_ERR_IO when the server could not be asked.
 */
int wc_outbox_check(struct pg_conn *conn, const struct wc_outbox *ob, struct wc_outbox_info *info,
                    struct wc_err *err);

/* The same on a connection of its own to dsn (`walcast slot check`, `walcast doctor`). */
int wc_outbox_check_dsn(const char *dsn, const struct wc_outbox *ob, struct wc_outbox_info *info,
                        struct wc_err *err);

#endif
