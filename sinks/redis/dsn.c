/* dsn.c - the Redis sink's connection string. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20;
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* A new string: s[0..len) with %XX decoded; NULL when an escape is malformed. */
static char *percent_decode(const char *s, size_t len)
{
    char *out = wc_xcalloc(1, len + 1), *o = out;

    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= len) {
                free(out);
                return NULL;
            }
            hi = hexval((unsigned char)s[i + 1]);
            lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0) {
                free(out);
                return NULL;
            }
            *o++ = (char)(hi * 16 + lo);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

/* Parse digits s[0..len) into [min, max]; -1 when not a number in range. */
static int parse_int(const char *s, size_t len, long min, long max, long *out)
{
    long v = 0;

    if (len == 0 || len > 9)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/*
 * Parse "redis://[[user]:password@]host[:port][/db]" or "host[:port][/db]" into p. The message never
 * quotes the string: it may hold a password.
 */
int redis_parse_dsn(struct wc_sink *s, struct redis_sink *p, const char *dsn, struct wc_err *err)
{
    const char *rest = dsn, *at, *slash, *hend, *q;
    const char *why = NULL;
    long v;

    if (dsn == NULL || *dsn == '\0') {
        why = "it is empty";
        goto bad;
    }
    if (strncmp(dsn, "rediss://", 9) == 0) {
        why = "TLS (rediss://) is not supported";
        goto bad;
    }
    if (strncmp(dsn, "redis://", 8) == 0)
        rest = dsn + 8;
    else if (strstr(dsn, "://") != NULL) {
        why = "the scheme is not redis://";
        goto bad;
    }
    if (strpbrk(rest, "?#") != NULL) {
        why = "query parameters are not supported";
        goto bad;
    }
    slash = strchr(rest, '/');
    if (slash == NULL)
        slash = rest + strlen(rest);

    /* user info: the last '@' before the path */
    at = NULL;
    for (q = rest; q < slash; q++)
        if (*q == '@')
            at = q;
    if (at != NULL) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        const char *pw = rest;
        if (colon != NULL) {
            if (colon > rest) {
                p->user = percent_decode(rest, (size_t)(colon - rest));
                if (p->user == NULL) {
                    why = "bad %-escape in the user name";
                    goto bad;
                }
            }
            pw = colon + 1;
        }
        p->password = percent_decode(pw, (size_t)(at - pw));
        if (p->password == NULL) {
            why = "bad %-escape in the password";
            goto bad;
        }
        rest = at + 1;
    }

    /* host, "[v6]" allowed */
    if (*rest == '[') {
        hend = memchr(rest, ']', (size_t)(slash - rest));
        if (hend == NULL) {
            why = "unterminated [ in the host";
            goto bad;
        }
        p->host = wc_xcalloc(1, (size_t)(hend - rest));
        memcpy(p->host, rest + 1, (size_t)(hend - rest - 1));
        q = hend + 1;
    } else {
        hend = rest;
        while (hend < slash && *hend != ':')
            hend++;
        p->host = wc_xcalloc(1, (size_t)(hend - rest) + 1);
        memcpy(p->host, rest, (size_t)(hend - rest));
        q = hend;
    }
    if (*p->host == '\0') {
        why = "the host is missing";
        goto bad;
    }
    p->port = DEFAULT_PORT;
    if (q < slash) {
        if (*q != ':' || parse_int(q + 1, (size_t)(slash - q - 1), 1, 65535, &v) < 0) {
            why = "the port is not a number from 1 to 65535";
            goto bad;
        }
        p->port = (int)v;
    }
    p->db = 0;
    if (*slash == '/' && slash[1] != '\0') {
        if (parse_int(slash + 1, strlen(slash + 1), 0, 1000000, &v) < 0) {
            why = "the database is not a number";
            goto bad;
        }
        p->db = (int)v;
    }
    return 0;

bad:
    wc_err_set(err, WC_ERR_CONFIG,
               "sink \"%s\": invalid redis dsn (redis://[:password@]host[:port][/db]): %s", s->name, why);
    return -1;
}
