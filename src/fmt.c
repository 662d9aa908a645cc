/* fmt.c - sizes and durations for people, beside the exact figures. */
#include <stdio.h>
#include <stdlib.h>

#include "metrics.h"

/*
 * As PostgreSQL's pg_size_pretty: bytes up to 10 kB, then kB, MB, GB, TB (units of 1024), rounded half
 * away from zero, a unit up once the number reaches 10240 of the one below.
 */
const char *wc__fmt_size(int64_t bytes, char *buf, size_t size)
{
    static const char *const units[] = {"bytes", "kB", "MB", "GB", "TB", "PB"};
    long long v = bytes < 0 ? -(long long)bytes : (long long)bytes;
    int u = 0;

    while (u < 5 && v >= 10 * 1024) {
        v = (v + 512) / 1024;
        u++;
    }
    snprintf(buf, size, "%s%lld %s", bytes < 0 ? "-" : "", v, units[u]);
    return buf;
}

const char *wc__fmt_duration(double s, char *buf, size_t size)
{
    long long t = (long long)(s + 0.5);

    if (s < 0)
        snprintf(buf, size, "-");
    else if (t < 120)
        snprintf(buf, size, "%lld s", t);
    else if (t < 2 * 3600)
        snprintf(buf, size, "%lld min", (t + 30) / 60);
    else if (t < 2 * 86400)
        snprintf(buf, size, "%lld h %lld min", t / 3600, (t % 3600) / 60);
    else
        snprintf(buf, size, "%lld d %lld h", t / 86400, (t % 86400) / 3600);
    return buf;
}
