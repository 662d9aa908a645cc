/* test_base.c - the base layer's small helpers: time, events built from stored texts. */
#include <criterion/criterion.h>
#include <string.h>

#include "walcast/backoff.h"
#include "walcast/clock.h"
#include "walcast/err.h"
#include "walcast/event.h"

Test(clock, timestamps)
{
    char buf[64];
    wc_timestamp_iso("2026-11-27 10:39:53.655523+00", buf, sizeof(buf));
    cr_assert_str_eq(buf, "2026-11-27T10:39:53.655523Z");
    wc_timestamp_iso("2026-11-27 10:39:53+05:30", buf, sizeof(buf));
    cr_assert_str_eq(buf, "2026-11-27T10:39:53+05:30");
    wc_timestamp_iso("2026-11-27 10:39:53-08", buf, sizeof(buf));
    cr_assert_str_eq(buf, "2026-11-27T10:39:53-08:00");
    wc_timestamp_iso("2026-11-27 10:39:53", buf, sizeof(buf));
    cr_assert_str_eq(buf, "2026-11-27T10:39:53");
}

Test(clock, sleep_stops_early)
{
    volatile sig_atomic_t stop = 1;
    int64_t t0 = wc_now_ms();
    wc_sleep_ms(5000, &stop);
    cr_assert_lt(wc_now_ms() - t0, 1000);
    t0 = wc_now_ms();
    wc_sleep_ms(120, NULL);
    cr_assert_geq(wc_now_ms() - t0, 100);
}

Test(event, from_texts)
{
    const char *text[WC_COL_COUNT] = {"42", "order", "7", "OrderPlaced", "{\"a\":1}", NULL};
    const int kind[WC_COL_COUNT] = {WC_VAL_NUMBER, WC_VAL_STRING, WC_VAL_STRING,
                                    WC_VAL_STRING, WC_VAL_STRING, WC_VAL_STRING};
    struct wc_event ev;
    struct wc_err err = {0};

    wc_event_from_texts(&ev, (struct wc_pos){0x10, 3}, text, NULL, kind);
    cr_assert_eq(ev.pos.lsn, 0x10);
    cr_assert_eq(ev.pos.index, 3);
    cr_assert_eq(ev.col[WC_COL_EVENT_ID].kind, WC_VAL_NUMBER);
    cr_assert_str_eq(ev.col[WC_COL_EVENT_TYPE].text, "OrderPlaced");
    cr_assert_eq(ev.col[WC_COL_EVENT_TYPE].len, 11);
    cr_assert_eq(ev.col[WC_COL_OCCURRED_AT].kind, WC_VAL_NULL);
    cr_assert_str_eq(ev.commit_time, "");
    json_t *p = wc_event_payload(&ev, &err);
    cr_assert_not_null(p, "%s", err.msg);
    cr_assert_eq(json_integer_value(json_object_get(p, "a")), 1);
    json_decref(ev.payload_json);

    wc_event_from_texts(&ev, WC_POS_NONE, text, NULL, NULL);
    cr_assert_eq(ev.col[WC_COL_EVENT_ID].kind, WC_VAL_STRING);
}

/* A failure is reported at once, then quietly retried, and reported again once a minute while it lasts;
 * the delays double from the base up to the ceiling, with jitter in their upper half. */
Test(backoff, reports_once_a_minute_and_delays_double)
{
    struct wc_backoff b = {.base_ms = 100, .max_ms = 1000};
    enum wc_backoff_report rep;
    int64_t t = 5000;

    int d = wc_backoff_fail(&b, t, &rep);
    cr_assert_eq(rep, WC_BACKOFF_FIRST);
    cr_assert(d >= 50 && d <= 100, "first delay %d", d);
    d = wc_backoff_fail(&b, t += 100, &rep);
    cr_assert_eq(rep, WC_BACKOFF_QUIET);
    cr_assert(d >= 100 && d <= 200, "second delay %d", d);
    for (int i = 0; i < 10; i++)
        d = wc_backoff_fail(&b, t += 1000, &rep);
    cr_assert(d >= 500 && d <= 1000, "capped delay %d", d);
    cr_assert_eq(rep, WC_BACKOFF_QUIET, "11 s into the outage is not a minute");
    wc_backoff_fail(&b, t = 5000 + WC_BACKOFF_REPORT_MS, &rep);
    cr_assert_eq(rep, WC_BACKOFF_AGAIN, "a minute into the outage");
    wc_backoff_fail(&b, t += 1000, &rep);
    cr_assert_eq(rep, WC_BACKOFF_QUIET);
    wc_backoff_fail(&b, t += WC_BACKOFF_REPORT_MS, &rep);
    cr_assert_eq(rep, WC_BACKOFF_AGAIN, "and a minute after that");
    cr_assert_eq(wc_backoff_ok(&b, t + 500), t + 500 - 5000, "the outage lasted from its first failure");
    cr_assert_eq(wc_backoff_ok(&b, t + 600), 0, "no outage now");
    d = wc_backoff_fail(&b, t + 700, &rep);
    cr_assert_eq(rep, WC_BACKOFF_FIRST, "a new outage is reported at once");
    cr_assert(d >= 50 && d <= 100, "and starts from the base delay again: %d", d);
}
