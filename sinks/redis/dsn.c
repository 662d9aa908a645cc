/* dsn.c - the Redis sink's connection string: one server, or the seed nodes of a Redis Cluster. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
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
 * The user info before the last '@' of [rest, slash), if any, into *user and *password (new strings);
 * *rest moves past it. NULL, or the reason it is malformed.
 */
static const char *parse_userinfo(const char **rest, const char *slash, char **user, char **password)
{
    const char *at = NULL, *q, *colon, *pw;

    for (q = *rest; q < slash; q++)
        if (*q == '@')
            at = q;
    if (at == NULL)
        return NULL;
    colon = memchr(*rest, ':', (size_t)(at - *rest));
    pw = *rest;
    if (colon != NULL) {
        if (colon > *rest) {
            *user = percent_decode(*rest, (size_t)(colon - *rest));
            if (*user == NULL)
                return "bad %-escape in the user name";
        }
        pw = colon + 1;
    }
    *password = percent_decode(pw, (size_t)(at - pw));
    if (*password == NULL)
        return "bad %-escape in the password";
    *rest = at + 1;
    return NULL;
}

/* "host[:port]" or "[v6][:port]" in [s, end) into *host (new) and *port. NULL, or why it is malformed. */
static const char *parse_hostport(const char *s, const char *end, char **host, int *port)
{
    const char *hend, *q;
    long v;

    if (*s == '[') {
        hend = memchr(s, ']', (size_t)(end - s));
        if (hend == NULL)
            return "unterminated [ in the host";
        *host = wc_xstrndup(s + 1, (size_t)(hend - s - 1));
        q = hend + 1;
    } else {
        hend = s;
        while (hend < end && *hend != ':')
            hend++;
        *host = wc_xstrndup(s, (size_t)(hend - s));
        q = hend;
    }
    if (**host == '\0')
        return "the host is missing";
    *port = DEFAULT_PORT;
    if (q < end) {
        if (*q != ':' || parse_int(q + 1, (size_t)(end - q - 1), 1, 65535, &v) < 0)
            return "the port is not a number from 1 to 65535";
        *port = (int)v;
    }
    return NULL;
}

/* The part of dsn after "redis://", or NULL with *why for an empty string or another scheme. */
static const char *skip_scheme(const char *dsn, const char **why)
{
    if (dsn == NULL || *dsn == '\0') {
        *why = "it is empty";
        return NULL;
    }
    if (strncmp(dsn, "rediss://", 9) == 0) {
        *why = "TLS (rediss://) is not supported";
        return NULL;
    }
    if (strncmp(dsn, "redis://", 8) == 0)
        dsn += 8;
    else if (strstr(dsn, "://") != NULL) {
        *why = "the scheme is not redis://";
        return NULL;
    }
    if (strpbrk(dsn, "?#") != NULL) {
        *why = "query parameters are not supported";
        return NULL;
    }
    return dsn;
}

/*
 * Parse "redis://[[user]:password@]host[:port][/db]" or "host[:port][/db]" into p. The message never
 * quotes the string: it may hold a password.
 */
int redis_parse_dsn(struct wc_sink *s, struct redis_sink *p, const char *dsn, struct wc_err *err)
{
    const char *rest, *slash;
    const char *why = NULL;
    long v;

    if ((rest = skip_scheme(dsn, &why)) == NULL)
        goto bad;
    slash = strchr(rest, '/');
    if (slash == NULL)
        slash = rest + strlen(rest);
    if ((why = parse_userinfo(&rest, slash, &p->user, &p->password)) != NULL)
        goto bad;
    if ((why = parse_hostport(rest, slash, &p->host, &p->port)) != NULL)
        goto bad;
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

/*
 * Parse "redis://[[user]:password@]host[:port][,host[:port]...][/0]", the seed nodes of a Redis Cluster.
 * The message never quotes the string: it may hold a password.
 */
int redis_parse_cluster_dsn(const char *sink, const char *dsn, struct redis_cluster_conf *conf,
                            struct wc_err *err)
{
    const char *rest, *slash, *comma;
    const char *why = NULL;

    if ((rest = skip_scheme(dsn, &why)) == NULL)
        goto bad;
    slash = strchr(rest, '/');
    if (slash == NULL)
        slash = rest + strlen(rest);
    if ((why = parse_userinfo(&rest, slash, &conf->user, &conf->password)) != NULL)
        goto bad;
    for (;;) {
        struct redis_cluster_addr *a;
        comma = memchr(rest, ',', (size_t)(slash - rest));
        if (comma == NULL)
            comma = slash;
        conf->seeds = wc_xrealloc(conf->seeds, (size_t)(conf->nseed + 1) * sizeof(*conf->seeds));
        a = &conf->seeds[conf->nseed++];
        a->host = NULL;
        if ((why = parse_hostport(rest, comma, &a->host, &a->port)) != NULL)
            goto bad;
        if (comma == slash)
            break;
        rest = comma + 1;
    }
    if (*slash == '/' && slash[1] != '\0' && strcmp(slash, "/0") != 0) {
        why = "a cluster has only database 0";
        goto bad;
    }
    return 0;

bad:
    wc_err_set(
        err, WC_ERR_CONFIG,
        "sink \"%s\": invalid redis cluster dsn (redis://[:password@]host[:port][,host[:port]...]): %s", sink,
        why);
    redis_cluster_conf_free(conf);
    return -1;
}

void redis_cluster_conf_free(struct redis_cluster_conf *conf)
{
    for (int i = 0; i < conf->nseed; i++)
        free(conf->seeds[i].host);
    free(conf->seeds);
    free(conf->user);
    if (conf->password) {
        memset(conf->password, 0, strlen(conf->password));
        free(conf->password);
    }
    memset(conf, 0, sizeof(*conf));
}
