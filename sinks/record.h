/*
 * record.h - the parts every batching sink shares: the record of each queued event (its identity copied
 * into the batch's arena, so that a dead letter can be written for it after the event's own memory is
 * gone), the event rebuilt from such a record, and the swap of a sink's two batches. Private to sinks/.
 */
#ifndef WALCAST_SINKS_RECORD_H
#define WALCAST_SINKS_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "walcast/buf.h"
#include "walcast/event.h"

#define WC_REC_NULL SIZE_MAX /* a column offset meaning null */

/* One queued event. first and n are the sink's: its first operation (command) and how many it has. */
struct wc_rec {
    struct wc_pos pos;
    size_t col[WC_COL_COUNT];         /* offsets of NUL-terminated copies in the arena, or WC_REC_NULL */
    size_t len[WC_COL_COUNT];         /* their lengths */
    unsigned char kind[WC_COL_COUNT]; /* enum wc_val_kind */
    unsigned char counted;            /* counted in the sink's applied counter */
    int first;
    int n;
    size_t off; /* the sink's: where the event's data starts in its own buffer */
};

/* The records of one batch, and the arena that holds their copies (and whatever else the sink puts
 * there: the arena may move as it grows, so everything in it is kept by offset). */
struct wc_recs {
    struct wc_rec *v;
    int n, cap;
    struct wc_buf arena;
};

/* Every column; every column but occurred_at (what a dead letter stores). */
#define WC_REC_ALL ((1u << WC_COL_COUNT) - 1)
#define WC_REC_DEAD_LETTER (WC_REC_ALL & ~(1u << WC_COL_OCCURRED_AT))

/* Append a record of ev copying the columns in mask (the others are null); returns its index. */
int wc_recs_add(struct wc_recs *r, const struct wc_event *ev, unsigned mask);
/* Copy len bytes of text into the arena as a NUL-terminated string; returns its offset. */
size_t wc_recs_put(struct wc_recs *r, const char *text, size_t len);
/* The string at off in the arena (NULL for WC_REC_NULL). */
static inline const char *wc_recs_str(const struct wc_recs *r, size_t off)
{
    return off == WC_REC_NULL ? NULL : r->arena.data + off;
}
/* The event a record holds: texts borrowed from the arena, valid until the batch changes. */
void wc_recs_event(const struct wc_recs *r, const struct wc_rec *rec, struct wc_event *ev);
/* Cut back to n records and an arena of arena_len bytes (an event that could not be queued whole). */
void wc_recs_truncate(struct wc_recs *r, int n, size_t arena_len);
void wc_recs_reset(struct wc_recs *r);
void wc_recs_free(struct wc_recs *r);

/*
 * A sink's two batches: apply() queues into queue while commit_detached() sends commit on the engine's
 * commit thread. Detaching (only while no commit runs) resets the batch committed last, and the two
 * trade places: what was queued is the next to commit, the other is queued into.
 */
#define WC_DETACH(queue, commit, reset)                                                                      \
    do {                                                                                                     \
        __typeof__(queue) t_ = (commit);                                                                     \
        reset(t_);                                                                                           \
        (commit) = (queue);                                                                                  \
        (queue) = t_;                                                                                        \
    } while (0)

#endif
