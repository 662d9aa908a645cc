/* template_filters.c - the filters of template expressions (epoch_ms, epoch_s, number, json, lower,
 * upper, length, scale/cents) and the timestamp and number parsing they need. Nothing here allocates per
 * event. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "template_int.h"

/* Nonzero when s[0..len) is a JSON-style number (optional sign, digits, fraction, exponent). */
static int is_number_text(const char *s, size_t len)
{
    size_t i = 0, d;

    if (i < len && (s[i] == '-' || s[i] == '+'))
        i++;
    d = i;
    while (i < len && isdigit((unsigned char)s[i]))
        i++;
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && isdigit((unsigned char)s[i]))
            i++;
    }
    if (i == d || (i == d + 1 && s[d] == '.'))
        return 0;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '-' || s[i] == '+'))
            i++;
        d = i;
        while (i < len && isdigit((unsigned char)s[i]))
            i++;
        if (i == d)
            return 0;
    }
    return i == len;
}

/* Read n digits at *p into *out; 0 or -1. */
static int digits(const char **p, const char *end, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++, (*p)++) {
        if (*p >= end || !isdigit((unsigned char)**p))
            return -1;
        v = v * 10 + (**p - '0');
    }
    *out = v;
    return 0;
}

/*
 * Parse an ISO 8601 / PostgreSQL timestamp into milliseconds since the epoch: "2026-11-27T10:39:53.655523Z",
 * "2026-11-27 10:39:53.655+00", "2026-11-27T10:39:53+02:00", "2026-11-27". No zone means UTC; fractional
 * seconds are truncated to milliseconds. Returns 0 or -1.
 */
static int parse_timestamp(const char *s, size_t len, long long *ms)
{
    const char *p = s, *end = s + len;
    struct tm tm;
    int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0, off = 0;

    memset(&tm, 0, sizeof(tm));
    while (p < end && *p == ' ')
        p++;
    while (end > p && end[-1] == ' ')
        end--;
    if (digits(&p, end, 4, &y) < 0 || p >= end || *p++ != '-' || digits(&p, end, 2, &mo) < 0 || p >= end ||
        *p++ != '-' || digits(&p, end, 2, &d) < 0)
        return -1;
    if (p < end && (*p == 'T' || *p == 't' || *p == ' ')) {
        p++;
        if (digits(&p, end, 2, &h) < 0 || p >= end || *p++ != ':' || digits(&p, end, 2, &mi) < 0)
            return -1;
        if (p < end && *p == ':') {
            p++;
            if (digits(&p, end, 2, &sec) < 0)
                return -1;
            if (p < end && (*p == '.' || *p == ',')) {
                int n = 0;
                p++;
                if (p >= end || !isdigit((unsigned char)*p))
                    return -1;
                for (; p < end && isdigit((unsigned char)*p); p++, n++)
                    if (n < 3)
                        frac = frac * 10 + (*p - '0');
                for (; n < 3; n++)
                    frac *= 10;
            }
        }
        if (p < end && (*p == 'Z' || *p == 'z')) {
            p++;
        } else if (p < end && (*p == '+' || *p == '-')) {
            int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
            if (digits(&p, end, 2, &oh) < 0)
                return -1;
            if (p < end && *p == ':')
                p++;
            if (p < end && digits(&p, end, 2, &om) < 0)
                return -1;
            if (oh > 23 || om > 59)
                return -1;
            off = sign * (oh * 3600 + om * 60);
        }
    }
    if (p != end || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 24 || mi > 59 || sec > 60)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    *ms = ((long long)t - off) * 1000 + frac;
    return 0;
}

/*
 * A payload integer's value into *r: 0, or -1 when s[0..len) is a real ("1.5", "2e3"). The payload
 * passed wc_json_validate, so the digits fit in a long long.
 */
static int jnum_int(const char *s, size_t len, long long *r)
{
    unsigned long long a = 0;
    size_t i = len > 0 && s[0] == '-';

    for (size_t k = i; k < len; k++) {
        if (!isdigit((unsigned char)s[k]))
            return -1;
        a = a * 10 + (unsigned)(s[k] - '0');
    }
    *r = i ? (long long)(0ULL - a) : (long long)a;
    return 0;
}

/* A payload real's value, read from all of its digits (as jansson did). */
static double jnum_real(const char *s, size_t len)
{
    char tmp[128];

    if (len < sizeof(tmp)) {
        memcpy(tmp, s, len);
        tmp[len] = '\0';
        return strtod(tmp, NULL);
    }
    char *big = wc_xstrndup(s, len); /* a real of 128 characters or more: rare enough to allocate */
    double d = strtod(big, NULL);
    free(big);
    return d;
}

/* The epoch filters: a timestamp or a number of seconds to an integer. */
int tp_filter_epoch(const struct expr *e, struct val *v, int ms, struct wc_buf *out, struct wc_err *err)
{
    char w[300];
    long long r;
    double secs;
    size_t len;
    const char *s;

    if (v->kind == V_INT || (v->kind == V_JNUM && jnum_int(v->s, v->len, &r) == 0)) {
        if (v->kind == V_INT)
            r = v->i;
        if (ms && (r > 9000000000000000LL || r < -9000000000000000LL)) {
            tp_what(e, w, sizeof(w));
            wc_err_set(err, WC_ERR_DATA, "%s is out of range for a timestamp", w);
            return -1;
        }
        r = ms ? r * 1000 : r;
        goto done;
    }
    if (v->kind == V_JNUM) {
        secs = jnum_real(v->s, v->len);
        goto real;
    }
    s = tp_text_of(v, out, &len);
    if (s == NULL) {
        tp_what(e, w, sizeof(w));
        wc_err_set(err, WC_ERR_DATA, "%s is not a timestamp", w);
        return -1;
    }
    if (is_number_text(s, len)) {
        char tmp[64];
        snprintf(tmp, sizeof(tmp), "%.*s", (int)(len < 63 ? len : 63), s);
        secs = strtod(tmp, NULL);
        goto real;
    }
    if (parse_timestamp(s, len, &r) < 0) {
        tp_what(e, w, sizeof(w));
        wc_err_set(err, WC_ERR_DATA, "%s is not a timestamp: \"%.*s\"", w, (int)(len < 64 ? len : 64), s);
        return -1;
    }
    /* Floor division, so times before 1970 round down like the seconds do. */
    if (!ms)
        r = r >= 0 ? r / 1000 : -((-r + 999) / 1000);
    goto done;

real:
    if (!isfinite(secs) || fabs(secs) > 9e15) {
        tp_what(e, w, sizeof(w));
        wc_err_set(err, WC_ERR_DATA, "%s is out of range for a timestamp", w);
        return -1;
    }
    r = ms ? llround(secs * 1000.0) : (long long)floor(secs);
done:
    if (v->kind == V_OUT)
        out->len = v->start, out->data[out->len] = '\0';
    v->kind = V_INT;
    v->i = r;
    return 0;
}

/* The "number" filter: a number stays, a numeric string becomes a number, anything else fails. */
int tp_filter_number(const struct expr *e, struct val *v, struct wc_buf *out, struct wc_err *err)
{
    char w[300];
    size_t len;
    const char *s;

    if (v->kind == V_INT || v->kind == V_NUMTEXT || v->kind == V_JNUM || (v->kind == V_OUT && v->numeric))
        return 0;
    s = tp_text_of(v, out, &len);
    if (s != NULL && v->kind != V_RAWJSON) {
        /* Tolerate surrounding blanks in a numeric string, but render it without them. */
        while (len > 0 && isspace((unsigned char)*s))
            s++, len--;
        while (len > 0 && isspace((unsigned char)s[len - 1]))
            len--;
        if (is_number_text(s, len)) {
            if (v->kind == V_OUT) {
                memmove(out->data + v->start, s, len);
                out->len = v->start + len;
                out->data[out->len] = '\0';
                v->numeric = 1;
            } else {
                v->kind = V_NUMTEXT;
                v->s = s;
                v->len = len;
            }
            return 0;
        }
    }
    tp_what(e, w, sizeof(w));
    if (s != NULL && v->kind != V_RAWJSON)
        wc_err_set(err, WC_ERR_DATA, "%s is not a number: \"%.*s\"", w, (int)(len < 64 ? len : 64), s);
    else
        wc_err_set(err, WC_ERR_DATA, "%s is not a number", w);
    return -1;
}

/*
 * The "scale(n)" filter ("cents" is scale(2)): a decimal times 10^n as an exact integer, worked out on the
 * digits (never through a double): "19.99" -> 1999, "-0.5" -> -50, "1.5e1" -> 1500, 7 -> 700. A value
 * with more decimal places than n that are not zero ("0.125" for cents) is refused, as is one beyond
 * 2^53 in magnitude (an integer a double, and so a Redis score, holds exactly). Numeric strings count.
 */
int tp_filter_scale(const struct expr *e, struct val *v, int n, struct wc_buf *out, struct wc_err *err)
{
    char w[300];
    const char *s;
    size_t len, i = 0, ib, ie, fb, fe;
    long long ex = 0;
    int neg = 0;
    unsigned long long acc = 0;

    if (v->kind == V_INT) {
        unsigned long long a = v->i < 0 ? 0ULL - (unsigned long long)v->i : (unsigned long long)v->i;
        neg = v->i < 0;
        for (int k = 0; k < n && a <= SCALE_LIMIT; k++)
            a *= 10;
        acc = a;
        goto done;
    }
    s = v->kind == V_JVAL || v->kind == V_RAWJSON ? NULL : tp_text_of(v, out, &len);
    if (s == NULL)
        goto not_number;
    while (len > 0 && isspace((unsigned char)*s))
        s++, len--;
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    if (!is_number_text(s, len))
        goto not_number;
    if (s[i] == '-' || s[i] == '+')
        neg = s[i++] == '-';
    ib = i;
    while (i < len && isdigit((unsigned char)s[i]))
        i++;
    ie = fb = fe = i;
    if (i < len && s[i] == '.') {
        fb = ++i;
        while (i < len && isdigit((unsigned char)s[i]))
            i++;
        fe = i;
    }
    if (i < len) { /* the exponent: clamped, a zero mantissa or the range check settles it */
        int eneg = 0;
        i++;
        if (s[i] == '-' || s[i] == '+')
            eneg = s[i++] == '-';
        for (; i < len; i++)
            if (ex < 100000)
                ex = ex * 10 + (s[i] - '0');
        ex = eneg ? -ex : ex;
    }
    /* The digits d1..dm (integer then fraction) stand for D * 10^k with k = n + exponent - fraction. */
    {
        long long k = n + ex - (long long)(fe - fb);
        size_t m = (ie - ib) + (fe - fb), keep = m;
        if (k < 0) {
            /* the last -k digits go: they must be zeros */
            keep = (unsigned long long)-k >= m ? 0 : m - (size_t)-k;
            for (size_t j = keep; j < m; j++) {
                char c = j < ie - ib ? s[ib + j] : s[fb + j - (ie - ib)];
                if (c != '0') {
                    tp_what(e, w, sizeof(w));
                    wc_err_set(err, WC_ERR_DATA, "%s has more than %d decimal place%s: \"%.*s\"", w, n,
                               n == 1 ? "" : "s", (int)(len < 64 ? len : 64), s);
                    return -1;
                }
            }
            k = 0;
        }
        for (size_t j = 0; j < keep && acc <= SCALE_LIMIT; j++)
            acc = acc * 10 + (unsigned)((j < ie - ib ? s[ib + j] : s[fb + j - (ie - ib)]) - '0');
        for (long long j = 0; j < k && acc != 0 && acc <= SCALE_LIMIT; j++)
            acc *= 10;
    }
done:
    if (acc > SCALE_LIMIT) {
        tp_what(e, w, sizeof(w));
        wc_err_set(err, WC_ERR_DATA, "%s is out of range for scale(%d): more than 2^53 (%llu) once scaled", w,
                   n, SCALE_LIMIT);
        return -1;
    }
    if (v->kind == V_OUT)
        out->len = v->start, out->data[out->len] = '\0';
    v->kind = V_INT;
    v->i = neg ? -(long long)acc : (long long)acc;
    return 0;

not_number:
    tp_what(e, w, sizeof(w));
    wc_err_set(err, WC_ERR_DATA, "%s is not a number (scale and cents take a decimal)", w);
    return -1;
}

/* The "length" filter: the elements of an array, the members of an object, the characters of a string. */
int tp_filter_length(const struct expr *e, struct wc_event *ev, struct val *v, struct wc_buf *out,
                     struct wc_err *err)
{
    char w[300];
    long long n = 0;
    size_t len;
    const char *s;

    if (v->kind == V_RAWJSON && tp_payload_valid(ev, err) < 0)
        return -1;
    if (v->kind == V_RAWJSON || (v->kind == V_JVAL && (v->s[0] == '[' || v->s[0] == '{'))) {
        n = (long long)wc_json_count(v->s, v->len);
    } else if (v->kind == V_TEXT || (v->kind == V_OUT && !v->numeric)) {
        s = tp_text_of(v, out, &len);
        for (size_t i = 0; i < len; i++)
            n += ((unsigned char)s[i] & 0xC0) != 0x80; /* UTF-8: count the first byte of each character */
    } else {
        tp_what(e, w, sizeof(w));
        wc_err_set(err, WC_ERR_DATA, "%s has no length: it is no array, object or string", w);
        return -1;
    }
    if (v->kind == V_OUT)
        out->len = v->start, out->data[out->len] = '\0';
    v->kind = V_INT;
    v->i = n;
    return 0;
}

/* The "json" filter: the value as JSON text (strings quoted); result is text. */
void tp_filter_json(struct val *v, struct wc_buf *out)
{
    size_t start = out->len;

    switch (v->kind) {
    case V_NULL:
        wc_buf_puts(out, "null");
        break;
    case V_JVAL:
        wc_json_compact(out, v->s, v->len);
        break;
    case V_TEXT:
        wc_buf_json_string(out, v->s, v->len);
        break;
    case V_NUMTEXT:
    case V_JNUM:
    case V_RAWJSON:
        wc_buf_append(out, v->s, v->len);
        break;
    case V_INT:
        wc_buf_put_int(out, v->i);
        break;
    case V_OUT: {
        start = v->start;
        if (v->numeric)
            break; /* a number ("number" made it one) is its own JSON, as V_NUMTEXT is */
        /* Quote the text in place: escape it after itself, then move it down. */
        size_t n = out->len - v->start;
        wc_buf_reserve(out, n * 6 + 2);
        wc_buf_json_string(out, out->data + v->start, n);
        size_t m = out->len - v->start - n;
        memmove(out->data + v->start, out->data + v->start + n, m);
        out->len = v->start + m;
        out->data[out->len] = '\0';
        break;
    }
    }
    v->kind = V_OUT;
    v->start = start;
    v->numeric = 0;
}

void tp_ascii_case(char *s, size_t n, int upper)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (upper && c >= 'a' && c <= 'z')
            s[i] = (char)(c - 32);
        else if (!upper && c >= 'A' && c <= 'Z')
            s[i] = (char)(c + 32);
    }
}
