/* clock.c - time helpers shared by every layer. */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "walcast/clock.h"

int64_t wc_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t wc_wall_us(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

void wc_sleep_ms(int ms, const volatile sig_atomic_t *stop)
{
    while (ms > 0 && !(stop && *stop)) {
        int step = ms > 100 ? 100 : ms;
        usleep((useconds_t)step * 1000);
        ms -= step;
    }
}

void wc_timestamp_iso(const char *pg, char *buf, size_t bufsize)
{
    size_t n = strlen(pg), o = 0;
    size_t tz = n;

    /* The zone starts at the last '+' or '-' after the time part ("...:53.65+00", "...-05:30"). */
    for (size_t i = n; i > 10; i--) {
        if (pg[i - 1] == '+' || pg[i - 1] == '-') {
            tz = i - 1;
            break;
        }
    }
    for (size_t i = 0; i < tz && o + 1 < bufsize; i++)
        buf[o++] = (i == 10 && pg[i] == ' ') ? 'T' : pg[i];
    const char *zone = pg + tz;
    const char *suffix;
    char zbuf[16];
    if (tz == n)
        suffix = "";
    else if (strcmp(zone, "+00") == 0 || strcmp(zone, "+00:00") == 0)
        suffix = "Z";
    else if (strlen(zone) == 3) {
        snprintf(zbuf, sizeof(zbuf), "%s:00", zone);
        suffix = zbuf;
    } else
        suffix = zone;
    for (size_t i = 0; suffix[i] && o + 1 < bufsize; i++)
        buf[o++] = suffix[i];
    if (bufsize)
        buf[o < bufsize ? o : bufsize - 1] = '\0';
}

struct timespec wc_realtime_after_ms(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}
