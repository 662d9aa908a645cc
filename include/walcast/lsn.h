/* lsn.h - WAL positions (LSNs) and event positions, as in PostgreSQL's xlogdefs.h. */
#ifndef WALCAST_LSN_H
#define WALCAST_LSN_H

#include <stdint.h>

typedef uint64_t wc_lsn; /* 0 = invalid */

#define WC_LSN_FMT "%X/%X"
#define WC_LSN_ARGS(l) (unsigned)((uint64_t)(l) >> 32), (unsigned)(l)
#define WC_LSN_STRLEN 18 /* "FFFFFFFF/FFFFFFFF" plus NUL */

/* Parse "hi/lo" hexadecimal; 0 on success, -1 when s is not an LSN. */
int wc_lsn_parse(const char *s, wc_lsn *out);
/* Format into buf (at least WC_LSN_STRLEN bytes); returns buf. */
char *wc_lsn_format(wc_lsn lsn, char *buf);

/*
 * A position in the stream. An event's position is (commit LSN of its transaction, its index among the
 * transaction's outbox rows, from 0). A cursor is a position with the meaning "everything at or below
 * this has been applied": an event (c, i) is covered by cursor (l, j) when c < l, or c == l and i <= j.
 * A finished transaction (or a quiet stretch of WAL) is recorded as (end LSN, -1): every transaction
 * that commits before that LSN is done and nothing of the next one is.
 */
struct wc_pos {
    wc_lsn lsn;
    int64_t index;
};

#define WC_POS_NONE ((struct wc_pos){0, -1})

static inline int wc_pos_cmp(struct wc_pos a, struct wc_pos b)
{
    if (a.lsn != b.lsn)
        return a.lsn < b.lsn ? -1 : 1;
    if (a.index != b.index)
        return a.index < b.index ? -1 : 1;
    return 0;
}

/* Nonzero when the event at position ev is already covered by cursor. */
static inline int wc_pos_covered(struct wc_pos cursor, struct wc_pos ev)
{
    return wc_pos_cmp(ev, cursor) <= 0;
}

/* Cursor text form "X/X:index" (index -1 for none), used by the Redis and file cursors. */
int wc_pos_parse(const char *s, struct wc_pos *out);
char *wc_pos_format(struct wc_pos pos, char *buf); /* buf: at least 40 bytes */

#endif
