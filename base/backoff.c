/* backoff.c - exponential backoff with jitter, and when an ongoing failure is worth a log line. */
#include <stdlib.h>

#include "walcast/backoff.h"

int wc_backoff_fail(struct wc_backoff *b, int64_t now, enum wc_backoff_report *report)
{
    int base = b->base_ms > 0 ? b->base_ms : 100;
    int ceiling = b->max_ms > 0 ? b->max_ms : 10000;
    int delay = base;

    if (b->attempt++ == 0) {
        b->since_ms = b->reported_ms = now;
        *report = WC_BACKOFF_FIRST;
    } else if (now - b->reported_ms >= WC_BACKOFF_REPORT_MS) {
        b->reported_ms = now;
        *report = WC_BACKOFF_AGAIN;
    } else {
        *report = WC_BACKOFF_QUIET;
    }
    for (int i = 1; i < b->attempt && delay < ceiling; i++)
        delay *= 2;
    if (delay > ceiling)
        delay = ceiling;
    return delay / 2 + rand() % (delay / 2 + 1);
}

int64_t wc_backoff_ok(struct wc_backoff *b, int64_t now)
{
    int64_t lasted = b->attempt > 0 ? now - b->since_ms : 0;

    b->attempt = 0;
    return lasted;
}
