/* clock.h - time helpers: monotonic and wall clocks, interruptible sleeps, PostgreSQL timestamps. */
#ifndef WALCAST_CLOCK_H
#define WALCAST_CLOCK_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Milliseconds of the monotonic clock: for intervals and deadlines, never for wall time. */
int64_t wc_now_ms(void);
/* Microseconds since the Unix epoch (wall clock): for times that cross processes (heartbeats). */
int64_t wc_wall_us(void);
/* CLOCK_REALTIME ms milliseconds from now: the deadline pthread_cond_timedwait takes (whose clock is the
 * wall clock, while walcast's deadlines are monotonic: wait their difference from now). */
struct timespec wc_realtime_after_ms(int64_t ms);
/* Sleep ms milliseconds in steps of at most 100 ms, returning early once *stop is set (NULL: never). */
void wc_sleep_ms(int ms, const volatile sig_atomic_t *stop);

/* Turn PostgreSQL's "2026-11-27 10:39:53.655523+00" into "2026-11-27T10:39:53.655523Z" in buf. */
void wc_timestamp_iso(const char *pg, char *buf, size_t bufsize);

#endif
