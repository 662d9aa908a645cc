/* template.c - compile "{expr}" templates once, render them per event without allocating. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "walcast/jscan.h"
#include "walcast/template.h"

/* Roots: the outbox columns keep their enum wc_col values, then the two transaction fields. */
enum { ROOT_LSN = WC_COL_COUNT, ROOT_COMMIT_TIME };

enum filter { F_EPOCH_MS, F_EPOCH_S, F_NUMBER, F_JSON, F_LOWER, F_UPPER, F_LENGTH };

static const char *const filter_names[] = {"epoch_ms", "epoch_s", "number", "json",
                                           "lower",    "upper",   "length"};
#define NFILTER (int)(sizeof(filter_names) / sizeof(filter_names[0]))

/* One expression: a root, a payload path, filters; path is its text for messages ("items[0].name"). */
struct expr {
    int root;
    int nstep;
    struct wc_json_step *steps; /* names are allocated (and NUL-terminated) */
    int nfilter;
    int *filters;
    char *path;
};

/* A template is a list of parts: literal text or an expression. */
struct part {
    char *lit; /* NULL for an expression */
    size_t litlen;
    struct expr e;
};

struct wc_tmpl {
    char *src;
    int bare;
    int npart;
    struct part *parts;
};

/*
 * A value while filters run. Borrowed values point into the event or the payload; V_OUT is text that
 * has already been appended to the output buffer at offset start (a filter that rewrites text works
 * there, so nothing is allocated).
 *   V_TEXT     a string (an event field, or a payload string without escapes)
 *   V_NUMTEXT  a number's text (a numeric column, or a numeric string after "number")
 *   V_JNUM     a payload number's source text (epoch_ms/epoch_s read integers exactly)
 *   V_JVAL     a payload object, array, true or false by its source text: renders as compact JSON and
 *              is no string to the filters
 *   V_RAWJSON  the whole payload object or array, verbatim
 */
enum vkind { V_NULL, V_TEXT, V_NUMTEXT, V_JNUM, V_JVAL, V_RAWJSON, V_INT, V_OUT };

struct val {
    int kind;
    const char *s; /* V_TEXT, V_NUMTEXT, V_JNUM, V_JVAL, V_RAWJSON */
    size_t len;
    long long i;  /* V_INT */
    size_t start; /* V_OUT */
    int numeric;  /* V_OUT: the text is a number */
};

static void expr_free(struct expr *e)
{
    for (int i = 0; i < e->nstep; i++)
        free((char *)e->steps[i].name);
    free(e->steps);
    free(e->filters);
    free(e->path);
}

void wc_tmpl_free(struct wc_tmpl *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < t->npart; i++) {
        free(t->parts[i].lit);
        expr_free(&t->parts[i].e);
    }
    free(t->parts);
    free(t->src);
    free(t);
}

const char *wc_tmpl_source(const struct wc_tmpl *t)
{
    return t->src;
}

int wc_tmpl_is_whole_payload(const struct wc_tmpl *t)
{
    return t->npart == 1 && t->parts[0].lit == NULL && t->parts[0].e.root == WC_COL_PAYLOAD &&
           t->parts[0].e.nstep == 0 && t->parts[0].e.nfilter == 0;
}

/* Characters of a member name: letters, digits, '_', '-' and any UTF-8 byte. */
static int name_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '-' || c >= 0x80;
}

static void skip_space(const char **p, const char *end)
{
    while (*p < end && (**p == ' ' || **p == '\t'))
        (*p)++;
}

/*
 * Compile the expression s[0..len) into e. Returns 0, or -1 with err naming the unknown field or
 * filter (the text as written, so the user finds it).
 */
static int compile_expr(const char *s, size_t len, struct expr *e, struct wc_err *err)
{
    const char *p = s, *end = s + len;
    const char *pstart, *pend, *q;

    memset(e, 0, sizeof(*e));
    skip_space(&p, end);
    pstart = p;
    while (p < end && *p != '|' && *p != ' ' && *p != '\t')
        p++;
    pend = p;
    if (pstart == pend) {
        wc_err_set(err, WC_ERR_CONFIG, "empty expression");
        return -1;
    }

    /* The root: up to the first '.' or '['. */
    q = pstart;
    while (q < pend && *q != '.' && *q != '[')
        q++;
    e->root = -1;
    for (int i = 0; i < WC_COL_COUNT; i++)
        if (strlen(wc_col_names[i]) == (size_t)(q - pstart) &&
            memcmp(wc_col_names[i], pstart, q - pstart) == 0)
            e->root = i;
    if ((size_t)(q - pstart) == 3 && memcmp(pstart, "lsn", 3) == 0)
        e->root = ROOT_LSN;
    if ((size_t)(q - pstart) == 11 && memcmp(pstart, "commit_time", 11) == 0)
        e->root = ROOT_COMMIT_TIME;
    if (e->root < 0 || (q < pend && e->root != WC_COL_PAYLOAD)) {
        wc_err_set(err, WC_ERR_CONFIG, "unknown field \"%.*s\"", (int)(pend - pstart), pstart);
        return -1;
    }

    /* The payload path. Count the steps first so one allocation holds them. */
    int nstep = 0;
    for (const char *c = q; c < pend; c++)
        if (*c == '.' || *c == '[')
            nstep++;
    e->steps = wc_xcalloc((size_t)nstep, sizeof(*e->steps));
    while (q < pend) {
        struct wc_json_step *st = &e->steps[e->nstep];
        const char *b;
        if (*q == '.') {
            b = ++q;
            while (q < pend && name_char((unsigned char)*q))
                q++;
            if (q == b || (q < pend && *q != '.' && *q != '[')) {
                wc_err_set(err, WC_ERR_CONFIG, "unknown field \"%.*s\"", (int)(pend - pstart), pstart);
                return -1;
            }
            st->name = wc_xstrndup(b, (size_t)(q - b));
            st->namelen = (size_t)(q - b);
        } else if (*q != '[') {
            /* After "]" only "." or "[" may follow ("items[0]x" is not a path). */
            wc_err_set(err, WC_ERR_CONFIG, "unknown field \"%.*s\"", (int)(pend - pstart), pstart);
            return -1;
        } else {
            b = ++q;
            while (q < pend && isdigit((unsigned char)*q))
                q++;
            if (q == b || q == pend || *q != ']' || q - b > 9) {
                wc_err_set(err, WC_ERR_CONFIG, "bad array index in \"%.*s\"", (int)(pend - pstart), pstart);
                return -1;
            }
            st->index = (size_t)strtoul(b, NULL, 10);
            q++;
        }
        e->nstep++;
    }
    /* Messages name payload fields without the "payload." prefix, like "payload field \"a.b\"". */
    if (e->root == WC_COL_PAYLOAD && e->nstep > 0)
        e->path =
            wc_xstrndup(pstart + 7 + (pstart[7] == '.'), (size_t)(pend - pstart) - 7 - (pstart[7] == '.'));
    else
        e->path = wc_xstrndup(pstart, (size_t)(pend - pstart));

    /* Filters. */
    int nf = 0;
    for (const char *c = pend; c < end; c++)
        if (*c == '|')
            nf++;
    /* Each "json" can double the text: a chain of them is a memory bomb, and no projection needs many. */
    if (nf > 8) {
        wc_err_set(err, WC_ERR_CONFIG, "too many filters in \"%.*s\" (at most 8)", (int)len, s);
        return -1;
    }
    e->filters = wc_xcalloc((size_t)nf, sizeof(int));
    skip_space(&p, end);
    while (p < end) {
        if (*p != '|') {
            wc_err_set(err, WC_ERR_CONFIG, "unexpected \"%.*s\" in expression \"%.*s\"", (int)(end - p), p,
                       (int)len, s);
            return -1;
        }
        p++;
        skip_space(&p, end);
        const char *f = p;
        while (p < end && *p != '|' && *p != ' ' && *p != '\t')
            p++;
        int which = -1;
        for (int i = 0; i < NFILTER; i++)
            if (strlen(filter_names[i]) == (size_t)(p - f) && memcmp(filter_names[i], f, p - f) == 0)
                which = i;
        if (which < 0) {
            wc_err_set(err, WC_ERR_CONFIG, "unknown filter \"%.*s\"", (int)(p - f), f);
            return -1;
        }
        e->filters[e->nfilter++] = which;
        skip_space(&p, end);
    }
    return 0;
}

/* Append a part to t (literal when e is NULL). */
static struct part *add_part(struct wc_tmpl *t, int *cap)
{
    if (t->npart == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        struct part *np = realloc(t->parts, (size_t)*cap * sizeof(*np));
        if (np == NULL) {
            fprintf(stderr, "walcast: out of memory\n");
            abort();
        }
        t->parts = np;
    }
    struct part *p = &t->parts[t->npart++];
    memset(p, 0, sizeof(*p));
    return p;
}

/*
 * Compile src: a template with "{expr}" placeholders, or (bare) one expression. Returns a new template
 * (free with wc_tmpl_free) or NULL with err (WC_ERR_CONFIG).
 */
struct wc_tmpl *wc_tmpl_compile(const char *src, int bare, struct wc_err *err)
{
    struct wc_tmpl *t = wc_xcalloc(1, sizeof(*t));
    struct wc_buf lit = WC_BUF_INIT;
    int cap = 0;

    t->src = wc_xstrndup(src, strlen(src));
    t->bare = bare;
    if (bare) {
        struct part *p = add_part(t, &cap);
        if (src[0] == '{') {
            wc_err_set(err, WC_ERR_CONFIG, "a parameter is a bare expression: write it without braces");
            goto error;
        }
        if (compile_expr(src, strlen(src), &p->e, err) < 0)
            goto error;
        return t;
    }

    for (const char *c = src; *c;) {
        if ((c[0] == '{' && c[1] == '{') || (c[0] == '}' && c[1] == '}')) {
            wc_buf_append(&lit, c, 1);
            c += 2;
        } else if (*c == '}') {
            wc_err_set(err, WC_ERR_CONFIG, "unmatched \"}\" in template (write \"}}\" for a literal brace)");
            goto error;
        } else if (*c == '{') {
            const char *close = strchr(c + 1, '}');
            if (close == NULL) {
                wc_err_set(err, WC_ERR_CONFIG,
                           "unterminated \"{\" in template (write \"{{\" for a literal brace)");
                goto error;
            }
            if (lit.len) {
                struct part *lp = add_part(t, &cap);
                lp->lit = wc_xstrndup(lit.data, lit.len);
                lp->litlen = lit.len;
                wc_buf_reset(&lit);
            }
            struct part *p = add_part(t, &cap);
            if (memchr(c + 1, '{', (size_t)(close - c - 1)) != NULL) {
                wc_err_set(err, WC_ERR_CONFIG, "nested \"{\" in template");
                goto error;
            }
            if (compile_expr(c + 1, (size_t)(close - c - 1), &p->e, err) < 0)
                goto error;
            c = close + 1;
        } else {
            wc_buf_append(&lit, c, 1);
            c++;
        }
    }
    if (lit.len || t->npart == 0) {
        struct part *lp = add_part(t, &cap);
        lp->lit = wc_xstrndup(lit.data ? lit.data : "", lit.len);
        lp->litlen = lit.len;
    }
    wc_buf_free(&lit);
    return t;

error:
    wc_buf_free(&lit);
    wc_tmpl_free(t);
    return NULL;
}

/* ---- rendering ---- */

/* Turn v into text appended to out (V_OUT). Null appends nothing. */
static void materialize(struct val *v, struct wc_buf *out)
{
    size_t start = out->len;
    int numeric = 0;

    switch (v->kind) {
    case V_OUT:
        return;
    case V_NULL:
        break;
    case V_TEXT:
    case V_RAWJSON:
        wc_buf_append(out, v->s, v->len);
        break;
    case V_NUMTEXT:
    case V_JNUM:
        wc_buf_append(out, v->s, v->len);
        numeric = 1;
        break;
    case V_JVAL:
        wc_json_compact(out, v->s, v->len);
        break;
    case V_INT:
        wc_buf_put_int(out, v->i);
        numeric = 1;
        break;
    }
    wc_buf_reserve(out, 0); /* out->data is never NULL after this */
    v->kind = V_OUT;
    v->start = start;
    v->numeric = numeric;
}

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

/* Describe the expression for messages: payload field "a.b", field "occurred_at". */
static void what(const struct expr *e, char *buf, size_t size)
{
    snprintf(buf, size, "%sfield \"%s\"", e->root == WC_COL_PAYLOAD && e->nstep ? "payload " : "", e->path);
}

/* The text of a string-like value; *len set. NULL when v is no string (null, V_JVAL, V_INT). */
static const char *text_of(const struct val *v, const struct wc_buf *out, size_t *len)
{
    switch (v->kind) {
    case V_TEXT:
    case V_NUMTEXT:
    case V_JNUM:
    case V_RAWJSON:
        *len = v->len;
        return v->s;
    case V_OUT:
        *len = out->len - v->start;
        return out->data + v->start;
    }
    return NULL;
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
static int filter_epoch(const struct expr *e, struct val *v, int ms, struct wc_buf *out, struct wc_err *err)
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
            what(e, w, sizeof(w));
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
    s = text_of(v, out, &len);
    if (s == NULL) {
        what(e, w, sizeof(w));
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
        what(e, w, sizeof(w));
        wc_err_set(err, WC_ERR_DATA, "%s is not a timestamp: \"%.*s\"", w, (int)(len < 64 ? len : 64), s);
        return -1;
    }
    /* Floor division, so times before 1970 round down like the seconds do. */
    if (!ms)
        r = r >= 0 ? r / 1000 : -((-r + 999) / 1000);
    goto done;

real:
    if (!isfinite(secs) || fabs(secs) > 9e15) {
        what(e, w, sizeof(w));
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
static int filter_number(const struct expr *e, struct val *v, struct wc_buf *out, struct wc_err *err)
{
    char w[300];
    size_t len;
    const char *s;

    if (v->kind == V_INT || v->kind == V_NUMTEXT || v->kind == V_JNUM || (v->kind == V_OUT && v->numeric))
        return 0;
    s = text_of(v, out, &len);
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
    what(e, w, sizeof(w));
    if (s != NULL && v->kind != V_RAWJSON)
        wc_err_set(err, WC_ERR_DATA, "%s is not a number: \"%.*s\"", w, (int)(len < 64 ? len : 64), s);
    else
        wc_err_set(err, WC_ERR_DATA, "%s is not a number", w);
    return -1;
}

static int payload_valid(struct wc_event *ev, struct wc_err *err);

/* The "length" filter: the elements of an array, the members of an object, the characters of a string. */
static int filter_length(const struct expr *e, struct wc_event *ev, struct val *v, struct wc_buf *out,
                         struct wc_err *err)
{
    char w[300];
    long long n = 0;
    size_t len;
    const char *s;

    if (v->kind == V_RAWJSON && payload_valid(ev, err) < 0)
        return -1;
    if (v->kind == V_RAWJSON || (v->kind == V_JVAL && (v->s[0] == '[' || v->s[0] == '{'))) {
        n = (long long)wc_json_count(v->s, v->len);
    } else if (v->kind == V_TEXT || (v->kind == V_OUT && !v->numeric)) {
        s = text_of(v, out, &len);
        for (size_t i = 0; i < len; i++)
            n += ((unsigned char)s[i] & 0xC0) != 0x80; /* UTF-8: count the first byte of each character */
    } else {
        what(e, w, sizeof(w));
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
static void filter_json(struct val *v, struct wc_buf *out)
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

/*
 * Whether the scanner may read the payload: checked once per event (ev->payload_checked), which also
 * indexes the members of an object payload (ev->payload_index). Returns 0, or
 * -1 with err worded as wc_event_payload() words it (jansson's message), so dead letters read as before.
 */
static int payload_valid(struct wc_event *ev, struct wc_err *err)
{
    const struct wc_val *c = &ev->col[WC_COL_PAYLOAD];

    if (ev->payload_checked == 0) {
        /* JSON_ALLOW_NUL: wc_event_payload() let "\u0000" through, and so does the scanner. */
        int ok = c->kind == WC_VAL_STRING &&
                 wc_json_validate_index(c->text, c->len, WC_JSON_ALLOW_NUL, &ev->payload_index) == 0;
        ev->payload_checked = ok ? 1 : -1;
    }
    if (ev->payload_checked > 0)
        return 0;
    /* Only jansson's quirk gets here with a parse: it takes a NUL byte right after a number ("1\0"). */
    if (wc_event_payload(ev, err) != NULL)
        wc_err_set(err, WC_ERR_DATA, "payload is not valid JSON: a NUL byte in the text");
    return -1;
}

/*
 * Look up the expression's value in the event. Returns 0 with *v set (borrowed, or V_OUT: a payload
 * string with escapes is unescaped onto out), or -1 with err when a payload path is missing or the
 * payload is not valid JSON.
 */
static int lookup(const struct expr *e, struct wc_event *ev, struct val *v, char *lsnbuf, struct wc_buf *out,
                  struct wc_err *err)
{
    struct wc_json_span sp;

    memset(v, 0, sizeof(*v));
    if (e->root == ROOT_LSN) {
        v->kind = V_TEXT;
        v->s = wc_lsn_format(ev->pos.lsn, lsnbuf);
        v->len = strlen(v->s);
        return 0;
    }
    if (e->root == ROOT_COMMIT_TIME) {
        v->kind = ev->commit_time ? V_TEXT : V_NULL;
        v->s = ev->commit_time;
        v->len = ev->commit_time ? strlen(ev->commit_time) : 0;
        return 0;
    }

    const struct wc_val *c = &ev->col[e->root];
    if (c->kind == WC_VAL_NULL || c->text == NULL) {
        /* A path into a null payload is a missing field; the payload itself is just null. */
        if (e->nstep > 0) {
            wc_err_set(err, WC_ERR_DATA, "payload field \"%s\" is missing (the payload is null)", e->path);
            return -1;
        }
        v->kind = V_NULL;
        return 0;
    }
    if (e->root != WC_COL_PAYLOAD) {
        v->kind = c->kind == WC_VAL_NUMBER ? V_NUMTEXT : V_TEXT;
        v->s = c->text;
        v->len = c->len;
        return 0;
    }

    if (e->nstep == 0) {
        /* The whole payload: an object or array goes out verbatim, numbers keep their digits. */
        size_t i = 0;
        while (i < c->len && isspace((unsigned char)c->text[i]))
            i++;
        if (i < c->len && (c->text[i] == '{' || c->text[i] == '[')) {
            v->kind = V_RAWJSON;
            v->s = c->text;
            v->len = c->len;
            return 0;
        }
    }
    /* Read the value in place: no tree of the payload is built (that was most of walcast's CPU). */
    if (payload_valid(ev, err) < 0)
        return -1;
    if (wc_json_lookup_index(c->text, c->len, &ev->payload_index, e->steps, e->nstep, &sp) < 0) {
        wc_err_set(err, WC_ERR_DATA, "payload field \"%s\" is missing", e->path);
        return -1;
    }
    switch (sp.type) {
    case WC_JSON_NULL:
        v->kind = V_NULL;
        break;
    case WC_JSON_STRING:
        if (wc_json_str_has_escapes(sp.s, sp.len)) {
            v->kind = V_OUT;
            v->start = out->len;
            wc_json_str_unescape(out, sp.s, sp.len);
            wc_buf_reserve(out, 0); /* out->data is never NULL after this */
        } else {
            v->kind = V_TEXT; /* the string's bytes are its value: no copy */
            v->s = sp.s + 1;
            v->len = sp.len - 2;
        }
        break;
    case WC_JSON_NUMBER:
        v->kind = V_JNUM;
        v->s = sp.s;
        v->len = sp.len;
        break;
    default: /* objects, arrays, true, false */
        v->kind = V_JVAL;
        v->s = sp.s;
        v->len = sp.len;
        break;
    }
    return 0;
}

static void ascii_case(char *s, size_t n, int upper)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (upper && c >= 'a' && c <= 'z')
            s[i] = (char)(c - 32);
        else if (!upper && c >= 'A' && c <= 'Z')
            s[i] = (char)(c + 32);
    }
}

/* Evaluate one expression and append it. Returns 0, 1 for null (nothing appended), or -1 with err. */
static int render_expr(const struct expr *e, struct wc_event *ev, struct wc_buf *out, struct wc_err *err)
{
    char lsnbuf[WC_LSN_STRLEN + 2];
    struct val v;

    if (lookup(e, ev, &v, lsnbuf, out, err) < 0)
        return -1;
    for (int i = 0; i < e->nfilter; i++) {
        /* Null passes through every filter but json, as SQL NULL does through functions. */
        if (v.kind == V_NULL && e->filters[i] != F_JSON)
            continue;
        switch (e->filters[i]) {
        case F_EPOCH_MS:
        case F_EPOCH_S:
            if (filter_epoch(e, &v, e->filters[i] == F_EPOCH_MS, out, err) < 0)
                goto fail;
            break;
        case F_NUMBER:
            if (filter_number(e, &v, out, err) < 0)
                goto fail;
            break;
        case F_JSON:
            filter_json(&v, out);
            break;
        case F_LENGTH:
            if (filter_length(e, ev, &v, out, err) < 0)
                goto fail;
            break;
        case F_LOWER:
        case F_UPPER:
            materialize(&v, out);
            ascii_case(out->data + v.start, out->len - v.start, e->filters[i] == F_UPPER);
            v.numeric = 0;
            break;
        }
    }
    if (v.kind == V_NULL)
        return 1;
    materialize(&v, out);
    return 0;

fail:
    /* Leave out as it was: drop whatever a filter already wrote. */
    if (v.kind == V_OUT) {
        out->len = v.start;
        out->data[out->len] = '\0';
    }
    return -1;
}

/*
 * Render t for ev, appending to out. Returns 0; 1 when a bare expression is null (out unchanged); -1 with
 * err (WC_ERR_DATA) when a payload field is missing or a filter does not apply. In a template a null
 * value renders as nothing.
 */
int wc_tmpl_render(const struct wc_tmpl *t, struct wc_event *ev, struct wc_buf *out, struct wc_err *err)
{
    size_t start = out->len;

    for (int i = 0; i < t->npart; i++) {
        const struct part *p = &t->parts[i];
        if (p->lit != NULL) {
            wc_buf_append(out, p->lit, p->litlen);
            continue;
        }
        int rc = render_expr(&p->e, ev, out, err);
        if (rc < 0) {
            if (out->data != NULL) {
                out->len = start;
                out->data[start] = '\0';
            }
            return -1;
        }
        if (rc == 1 && t->bare)
            return 1;
    }
    wc_buf_reserve(out, 0);
    return 0;
}
