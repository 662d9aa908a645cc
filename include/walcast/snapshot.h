/* snapshot.h - the outbox table as it stands in a snapshot exported by a temporary replication slot:
 * the consistent starting point of a rebuild, read as events. */
#ifndef WALCAST_SNAPSHOT_H
#define WALCAST_SNAPSHOT_H

#include "walcast/err.h"
#include "walcast/event.h"
#include "walcast/lsn.h"
#include "walcast/outbox.h"

struct wc_snapshot;

/*
 * Create a temporary wal2json slot that exports a snapshot, check the outbox in it (outbox.h) and open a
 * cursor over its rows in replay order (ob->order_by, else an integer event_id) on a second connection.
 * *point is the slot's consistent point: transactions that committed before it are exactly the rows of
 * the snapshot, the stream brings every one after it. NULL with err: WC_ERR_CONFIG when the outbox fails
 * the check or has no replay order (the message explains the risk and the fix), WC_ERR_IO when the
 * source cannot be reached or refuses.
 */
struct wc_snapshot *wc_snapshot_open(const char *dsn, const struct wc_outbox *ob, wc_lsn *point,
                                     struct wc_err *err);
/* The same with a permanent slot of that name (slot: [a-z0-9_], must not exist): it outlives the snapshot,
 * so the stream can go on from *point on a connection of its own, and after a crash (an online rebuild,
 * src/shadow.h). Whoever creates it drops it. */
struct wc_snapshot *wc_snapshot_open_slot(const char *dsn, const struct wc_outbox *ob, const char *slot,
                                          wc_lsn *point, struct wc_err *err);
/*
 * The next row as an event, built by the stream's own decoder from the message wal2json would have sent
 * for it (replication/decode.c): the same column values, the same poison rows. Its position is (the
 * consistent point, its index in replay order), its lsn therefore the consistent point; its commit_time
 * is the commit time of the row's transaction when the server tracks it (track_commit_timestamp = on and
 * the transaction not yet frozen), else empty. Returns 1 with ev set (everything in it, payload_json
 * included, is the snapshot's until the next call), 0 after the last row, -1 with err.
 */
int wc_snapshot_next(struct wc_snapshot *s, struct wc_event *ev, struct wc_err *err);
/* Close both connections; the temporary slot goes with them. NULL is fine. */
void wc_snapshot_close(struct wc_snapshot *s);

#endif
