/* log.c - timestamped log lines on stderr. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "walcast/log.h"

int wc_log_level = WC_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warning", "error"};

int wc_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

void wc_log_raw(int level, const char *fmt, ...)
{
    char line[4096], ts[32];
    struct timeval tv;
    struct tm tm;
    va_list ap;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* One write per line so that lines from several processes do not interleave. */
    fprintf(stderr, "%s.%03dZ walcast %s: %s\n", ts, (int)(tv.tv_usec / 1000),
            level_names[level < 0   ? 0
                        : level > 3 ? 3
                                    : level],
            line);
}
