/* backoff.h - retrying something that failed: exponential backoff with jitter, and when an ongoing
 * failure is worth a log line (at once, then once a minute while it lasts). No I/O: the caller passes
 * the time, so it is tested without waiting. */
#ifndef WALCAST_BACKOFF_H
#define WALCAST_BACKOFF_H

#include <stdint.h>

#define WC_BACKOFF_REPORT_MS 60000 /* an ongoing failure is reported again this often */

struct wc_backoff {
    int base_ms, max_ms; /* first delay and ceiling; 0 takes 100 and 10000 */
    int attempt;         /* failures in this outage (0: none) */
    int64_t since_ms;    /* when the outage began */
    int64_t reported_ms; /* when it was last reported */
    int kind;            /* the caller's: what kind of failure was last reported (e.g. an error code) */
};

/* What a failure is worth saying. */
enum wc_backoff_report {
    WC_BACKOFF_QUIET, /* a retry like the last ones: a debug line at most */
    WC_BACKOFF_FIRST, /* the first failure of an outage */
    WC_BACKOFF_AGAIN, /* the outage goes on: a minute (WC_BACKOFF_REPORT_MS) since the last report */
};

/*
 * Count a failure at now. Returns the delay before the next attempt (exponential from base_ms, capped
 * at max_ms, the upper half randomized so that retries of many clients spread), and in *report whether
 * to say so.
 */
int wc_backoff_fail(struct wc_backoff *b, int64_t now, enum wc_backoff_report *report);
/* The thing works again: the outage is over. Returns how long it lasted (ms), 0 when there was none. */
int64_t wc_backoff_ok(struct wc_backoff *b, int64_t now);

#endif
