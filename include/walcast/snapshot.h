/* snapshot.h - the outbox table as it stands in a snapshot exported by a temporary replication slot:
 * the consistent starting point of a rebuild, read as events. */
#ifndef WALCAST_SNAPSHOT_H
#define WALCAST_SNAPSHOT_H

#include "walcast/err.h"
#include "walcast/event.h"
#include "walcast/lsn.h"

/* Where the outbox is: schema, table and its column names (borrowed, WC_COL_COUNT of them). */
struct wc_outbox {
    const char *schema;
    const char *table;
    const char *const *columns;
};

struct wc_snapshot;

/*
 * Create a temporary wal2json slot that exports a snapshot, and open a cursor over the outbox rows
 * visible in it (in event_id order) on a second connection. *point is the slot's consistent point:
 * transactions that committed before it are exactly the rows of the snapshot, the stream brings every
 * one after it. NULL with err (WC_ERR_IO) when the source cannot be reached or refuses.
 */
struct wc_snapshot *wc_snapshot_open(const char *dsn, const struct wc_outbox *ob, wc_lsn *point,
                                     struct wc_err *err);
/*
 * The next row as an event at position (0, its index among the rows). Returns 1 with ev set (its texts
 * are valid until the next call; ev->payload_json, when parsed, is the caller's to json_decref), 0 after
 * the last row, -1 with err.
 */
int wc_snapshot_next(struct wc_snapshot *s, struct wc_event *ev, struct wc_err *err);
/* Close both connections; the temporary slot goes with them. NULL is fine. */
void wc_snapshot_close(struct wc_snapshot *s);

#endif
