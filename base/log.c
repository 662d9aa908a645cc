/* log.c - timestamped log lines on stderr, plain or JSON, with known secrets masked. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "walcast/buf.h"
#include "walcast/log.h"

int wc_log_level = WC_LOG_INFO;
int wc_log_format = WC_LOG_PLAIN;

static const char *const level_names[] = {"debug", "info", "warning", "error"};

#define MAX_SECRETS 32
static char *secrets[MAX_SECRETS];
static int nsecrets;

int wc_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

int wc_log_format_parse(const char *s)
{
    if (strcmp(s, "plain") == 0)
        return WC_LOG_PLAIN;
    if (strcmp(s, "json") == 0)
        return WC_LOG_JSON;
    return -1;
}

void wc_log_add_secret(const char *secret)
{
    if (secret == NULL || strlen(secret) < 4 || nsecrets >= MAX_SECRETS)
        return;
    for (int i = 0; i < nsecrets; i++)
        if (strcmp(secrets[i], secret) == 0)
            return;
    secrets[nsecrets++] = wc_xstrdup(secret);
}

/* Replace every known secret in line (in place: the mask is never longer than a masked secret). */
static void mask_secrets(char *line)
{
    for (int i = 0; i < nsecrets; i++) {
        size_t n = strlen(secrets[i]);
        char *p;
        while ((p = strstr(line, secrets[i])) != NULL) {
            size_t m = n < 8 ? n : 8;
            memset(p, '*', m);
            memmove(p + m, p + n, strlen(p + n) + 1);
        }
    }
}

void wc_log_raw(int level, const char *fmt, ...)
{
    char line[4096], ts[32];
    struct timeval tv;
    struct tm tm;
    va_list ap;
    const char *name = level_names[level < 0 ? 0 : level > 3 ? 3 : level];

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (nsecrets)
        mask_secrets(line);
    if (wc_log_format == WC_LOG_JSON) {
        struct wc_buf b = WC_BUF_INIT;
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        wc_buf_printf(&b, "{\"time\":\"%s.%03dZ\",\"level\":\"%s\",\"msg\":", ts, (int)(tv.tv_usec / 1000),
                      name);
        wc_buf_json_string(&b, line, strlen(line));
        wc_buf_puts(&b, "}\n");
        /* One write per line so that lines from several threads and processes do not interleave. */
        fwrite(b.data, 1, b.len, stderr);
        wc_buf_free(&b);
        return;
    }
    strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
    fprintf(stderr, "%s.%03dZ walcast %s: %s\n", ts, (int)(tv.tv_usec / 1000), name, line);
}
