/* jscan.c - validate JSON text and read values out of it in place, without building a tree. */
#include <stdint.h>
#include <string.h>

#include "walcast/jscan.h"

typedef unsigned char uchar;

/*
 * 2^1024 - 2^970, the least decimal that strtod rounds to infinity (halfway between DBL_MAX and 2^1024,
 * which wins the tie): jansson refuses a real from there up ("real number overflow"). 309 digits.
 */
static const char dbl_overflow[] =
    "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207"
    "096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764"
    "475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177"
    "904174497792";

/*
 * Byte classes, so the hot loops test one table bit per byte. Bytes from 0x80 are in none of them.
 *   C_WS      JSON whitespace
 *   C_PLAIN   stands for itself in a string: 0x20..0x7F but '"' and '\\'
 *   C_END     ends a number or literal: whitespace, ',', '}', ']'
 *   C_STRUCT  matters while skipping a container: '"', '{', '[', '}', ']'
 *   C_QB      ends a run inside a string: '"', '\\'
 */
enum { C_WS = 1, C_PLAIN = 2, C_END = 4, C_STRUCT = 8, C_QB = 16 };

static const uchar cls[256] = {
    0, 0, 0,  0, 0, 0, 0, 0, 0, 5, 5, 0,  0,  5,  0, 0, /* 0x00: '\t' '\n' '\r' */
    0, 0, 0,  0, 0, 0, 0, 0, 0, 0, 0, 0,  0,  0,  0, 0, /* 0x10 */
    7, 2, 24, 2, 2, 2, 2, 2, 2, 2, 2, 2,  6,  2,  2, 2, /* 0x20: ' ' '"' ',' */
    2, 2, 2,  2, 2, 2, 2, 2, 2, 2, 2, 2,  2,  2,  2, 2, /* 0x30 */
    2, 2, 2,  2, 2, 2, 2, 2, 2, 2, 2, 2,  2,  2,  2, 2, /* 0x40 */
    2, 2, 2,  2, 2, 2, 2, 2, 2, 2, 2, 10, 16, 14, 2, 2, /* 0x50: '[' '\\' ']' */
    2, 2, 2,  2, 2, 2, 2, 2, 2, 2, 2, 2,  2,  2,  2, 2, /* 0x60 */
    2, 2, 2,  2, 2, 2, 2, 2, 2, 2, 2, 10, 2,  14, 2, 2, /* 0x70: '{' '}' */
};

static int is_digit(uchar c)
{
    return c >= '0' && c <= '9';
}

static const uchar *skip_ws(const uchar *p, const uchar *end)
{
    while (p < end && (cls[*p] & C_WS))
        p++;
    return p;
}

int wc_json_hex4(const char *s, unsigned *out)
{
    const uchar *p = (const uchar *)s;
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        uchar c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* The length of the well-formed UTF-8 sequence at p (lead byte >= 0x80), 0 when it is not one. */
static size_t utf8_len(const uchar *p, const uchar *end)
{
    uchar c = p[0], lo = 0x80, hi = 0xBF;
    size_t n;

    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

/*
 * A string at p (on its opening quote): the byte after its closing quote, or NULL when it is not a valid
 * string. allow_nul: accept \u0000.
 */
static const uchar *check_string(const uchar *p, const uchar *end, int allow_nul)
{
    p++;
    for (;;) {
        while (p < end && (cls[*p] & C_PLAIN))
            p++;
        if (p >= end)
            return NULL;
        uchar c = *p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c >= 0x80) {
            size_t n = utf8_len(p, end);
            if (n == 0)
                return NULL;
            p += n;
            continue;
        }
        /* A backslash. */
        if (end - p < 2)
            return NULL;
        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            p += 2;
            break;
        case 'u': {
            unsigned cp, lo;
            if (end - p < 6 || wc_json_hex4((const char *)p + 2, &cp) < 0)
                return NULL;
            p += 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
                    wc_json_hex4((const char *)p + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                    return NULL;
                p += 6;
            } else if ((cp >= 0xDC00 && cp <= 0xDFFF) || (cp == 0 && !allow_nul)) {
                return NULL;
            }
            break;
        }
        default:
            return NULL;
        }
    }
}

/*
 * Nonzero when the real with integer digits ip[0..ni), fraction digits fp[0..nf) and exponent exp is at
 * least dbl_overflow (strtod gives infinity).
 */
static int real_overflows(const uchar *ip, size_t ni, const uchar *fp, size_t nf, long long exp)
{
    /* The value is 0.DDD... x 10^mag, its digits D (the first not 0) in seg[0] then seg[1]. */
    const uchar *seg[2][2] = {{ip, ip + ni}, {fp, fp + nf}};
    const size_t nt = sizeof(dbl_overflow) - 1;
    long long mag;

    if (ni == 1 && ip[0] == '0') { /* the only integer part with a leading zero */
        size_t k = 0;
        while (k < nf && fp[k] == '0')
            k++;
        if (k == nf)
            return 0; /* zero */
        mag = exp - (long long)k;
        seg[0][0] = fp + k;
        seg[0][1] = fp + nf;
        seg[1][0] = seg[1][1] = fp + nf;
    } else {
        mag = (long long)ni + exp;
    }
    if (mag != (long long)nt)
        return mag > (long long)nt;
    /* Same magnitude: compare the digits with the threshold's, as a decimal fraction. */
    int s = 0;
    const uchar *d = seg[0][0];
    for (size_t i = 0; i < nt; i++) {
        if (d == seg[s][1] && s == 0)
            d = seg[++s][0];
        uchar c = d < seg[s][1] ? *d++ : '0';
        if (c != (uchar)dbl_overflow[i])
            return c > (uchar)dbl_overflow[i];
    }
    return 1; /* the threshold's digits: the value is the threshold or above */
}

/* A number at p: the byte after it, or NULL when it is not one jansson takes (see jscan.h). */
static const uchar *check_number(const uchar *p, const uchar *end)
{
    int neg = 0;

    if (*p == '-') {
        neg = 1;
        if (++p >= end)
            return NULL;
    }
    const uchar *ip = p;
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p))
            return NULL; /* no leading zeros */
    } else if (is_digit(*p)) {
        while (p < end && is_digit(*p))
            p++;
    } else {
        return NULL;
    }
    size_t ni = (size_t)(p - ip);
    if (p >= end || (*p != '.' && *p != 'e' && *p != 'E')) {
        /* An integer: jansson reads it with strtoll and refuses what does not fit. */
        if (ni > 19 || (ni == 19 && memcmp(ip, neg ? "9223372036854775808" : "9223372036854775807", 19) > 0))
            return NULL;
        return p;
    }
    const uchar *fp = p;
    size_t nf = 0;
    if (*p == '.') {
        fp = ++p;
        while (p < end && is_digit(*p))
            p++;
        nf = (size_t)(p - fp);
        if (nf == 0)
            return NULL;
    }
    long long exp = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        int eneg = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (p >= end || !is_digit(*p))
            return NULL;
        for (; p < end && is_digit(*p); p++)
            if (exp < 100000000000000000LL) /* beyond any text's length: the value is 0 or infinite */
                exp = exp * 10 + (*p - '0');
        if (eneg)
            exp = -exp;
    }
    if (real_overflows(ip, ni, fp, nf, exp))
        return NULL;
    return p;
}

int wc_json_validate_index(const char *s, size_t len, int flags, struct wc_json_index *idx)
{
    const uchar *p = (const uchar *)s, *end = p + len;
    uchar objects[WC_JSON_MAX_DEPTH / 8]; /* bit per open container: 1 for an object */
    const uchar *k;
    size_t depth = 0;
    int in_object = 0;

    if (idx != NULL)
        idx->n = -1;
    if (s == NULL)
        return -1;
    if (len > UINT32_MAX)
        idx = NULL; /* offsets are 32 bits */

value:
    p = skip_ws(p, end);
    /* jansson counts every value, scalars too, and refuses one deeper than its maximum. */
    if (p >= end || depth >= WC_JSON_MAX_DEPTH)
        return -1;
    switch (*p) {
    case '{':
    case '[': {
        int obj = *p == '{';
        if (idx != NULL && depth == 0 && obj)
            idx->n = 0; /* the document is an object: index its members */
        p = skip_ws(p + 1, end);
        if (p < end && *p == (obj ? '}' : ']')) {
            p++;
            goto after;
        }
        if (obj)
            objects[depth / 8] |= (uchar)(1u << (depth % 8));
        else
            objects[depth / 8] &= (uchar) ~(1u << (depth % 8));
        depth++;
        in_object = obj;
        if (obj)
            goto key;
        goto value;
    }
    case '"':
        p = check_string(p, end, flags & WC_JSON_ALLOW_NUL);
        break;
    case 't':
        p = end - p >= 4 && memcmp(p, "true", 4) == 0 ? p + 4 : NULL;
        break;
    case 'f':
        p = end - p >= 5 && memcmp(p, "false", 5) == 0 ? p + 5 : NULL;
        break;
    case 'n':
        p = end - p >= 4 && memcmp(p, "null", 4) == 0 ? p + 4 : NULL;
        break;
    default:
        p = *p == '-' || is_digit(*p) ? check_number(p, end) : NULL;
        break;
    }
    if (p == NULL)
        return -1;

after:
    p = skip_ws(p, end);
    if (depth == 0)
        return p == end ? 0 : -1;
    if (p >= end)
        return -1;
    if (*p == ',') {
        p++;
        if (!in_object)
            goto value;
        p = skip_ws(p, end);
        goto key;
    }
    if (*p != (in_object ? '}' : ']'))
        return -1;
    p++;
    depth--;
    in_object = depth > 0 && (objects[(depth - 1) / 8] >> ((depth - 1) % 8) & 1);
    goto after;

key:
    if (p >= end || *p != '"')
        return -1;
    k = p++;
    /* Most keys are printable ASCII without escapes: no need for check_string. */
    while (p < end && (cls[*p] & C_PLAIN))
        p++;
    if (p < end && *p == '"') {
        p++;
    } else {
        /* Keys never hold a NUL, whatever the flags: jansson refuses them. */
        if ((p = check_string(k, end, 0)) == NULL)
            return -1;
        if (idx != NULL && memchr(k + 1, '\\', (size_t)(p - k - 2)) != NULL)
            idx->n = -1; /* a key with an escape: no index (lookups scan the text) */
    }
    if (depth == 1 && idx != NULL && idx->n >= 0) {
        if (idx->n == WC_JSON_INDEX_MAX) {
            idx->n = -1; /* too many members: no index either */
        } else {
            idx->m[idx->n].key = (uint32_t)(k + 1 - (const uchar *)s);
            idx->m[idx->n].keylen = (uint32_t)(p - k - 2);
        }
    }
    p = skip_ws(p, end);
    if (p >= end || *p != ':')
        return -1;
    p = skip_ws(p + 1, end);
    if (depth == 1 && idx != NULL && idx->n >= 0)
        idx->m[idx->n++].value = (uint32_t)(p - (const uchar *)s);
    goto value;
}

int wc_json_validate_flags(const char *s, size_t len, int flags)
{
    return wc_json_validate_index(s, len, flags, NULL);
}

int wc_json_validate(const char *s, size_t len)
{
    return wc_json_validate_index(s, len, 0, NULL);
}

/* ---- reading validated text ---- */

/* Past the string whose opening quote is at p. */
static const uchar *skip_string(const uchar *p, const uchar *end)
{
    p++;
    for (;;) {
        while (p < end && !(cls[*p] & C_QB))
            p++;
        if (p >= end)
            return end;
        if (*p == '"')
            return p + 1;
        if (end - p < 2)
            return end;
        p += 2; /* a backslash and the byte it escapes */
    }
}

/* Past the value at p. */
static const uchar *skip_value(const uchar *p, const uchar *end)
{
    size_t depth = 0;

    if (p >= end)
        return end;
    if (*p == '"')
        return skip_string(p, end);
    if (*p != '{' && *p != '[') {
        while (p < end && !(cls[*p] & C_END))
            p++;
        return p;
    }
    while (p < end) {
        while (p < end && !(cls[*p] & C_STRUCT))
            p++;
        if (p >= end)
            break;
        uchar c = *p;
        if (c == '"') {
            p = skip_string(p, end);
            continue;
        }
        p++;
        if (c == '{' || c == '[')
            depth++;
        else if ((c == '}' || c == ']') && --depth == 0)
            return p;
    }
    return end;
}

size_t wc_json_count(const char *s, size_t len)
{
    const uchar *p = (const uchar *)s, *end = p + len;
    size_t n = 0;
    int object;

    p = skip_ws(p, end);
    if (p >= end || (*p != '[' && *p != '{'))
        return 0;
    object = *p == '{';
    p = skip_ws(p + 1, end);
    while (p < end && *p != ']' && *p != '}') {
        if (object) {
            p = skip_ws(skip_string(p, end), end);
            if (p < end && *p == ':')
                p = skip_ws(p + 1, end);
        }
        p = skip_ws(skip_value(p, end), end);
        n++;
        if (p >= end || *p != ',')
            break;
        p = skip_ws(p + 1, end);
    }
    return n;
}

size_t wc_json_put_utf8(unsigned cp, char *u)
{
    if (cp < 0x80) {
        u[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    u[0] = (char)(0xF0 | (cp >> 18));
    u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * Decode the escape at p (on its backslash) into u: the number of bytes written, *next past it. A bad
 * escape (only in text that was not validated) decodes to nothing.
 */
static size_t unescape_one(const uchar *p, const uchar *end, const uchar **next, char *u)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    unsigned cp, lo;

    if (end - p < 2) {
        *next = end;
        return 0;
    }
    if (p[1] != 'u') {
        const char *f = memchr(from, p[1], sizeof(from) - 1);
        *next = p + 2;
        if (f == NULL)
            return 0;
        u[0] = to[f - from];
        return 1;
    }
    if (end - p < 6 || wc_json_hex4((const char *)p + 2, &cp) < 0) {
        *next = p + 2;
        return 0;
    }
    *next = p + 6;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || wc_json_hex4((const char *)p + 8, &lo) < 0 ||
            lo < 0xDC00 || lo > 0xDFFF)
            return 0;
        *next = p + 12;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        return 0;
    }
    return wc_json_put_utf8(cp, u);
}

/* Nonzero when the key whose opening quote is at p reads name[0..n) once unescaped; *next is past it. */
static int key_is(const uchar *p, const uchar *end, const char *name, size_t n, const uchar **next)
{
    const uchar *q = p + 1, *r = q;
    size_t i = 0;
    int same = 1;

    /* Most keys hold no escape: their bytes are the key. */
    while (r < end && !(cls[*r] & C_QB))
        r++;
    if (r < end && *r == '"') {
        *next = r + 1;
        return (size_t)(r - q) == n && memcmp(q, name, n) == 0;
    }
    while (q < end && *q != '"') {
        char u[4];
        size_t k;
        if (*q == '\\') {
            k = unescape_one(q, end, &q, u);
        } else {
            u[0] = (char)*q++;
            k = 1;
        }
        if (same && (k > n - i || memcmp(name + i, u, k) != 0))
            same = 0;
        i += same ? k : 0;
    }
    *next = q < end ? q + 1 : end;
    return same && i == n;
}

static int type_of(uchar c)
{
    switch (c) {
    case '{':
        return WC_JSON_OBJECT;
    case '[':
        return WC_JSON_ARRAY;
    case '"':
        return WC_JSON_STRING;
    case 't':
        return WC_JSON_TRUE;
    case 'f':
        return WC_JSON_FALSE;
    case 'n':
        return WC_JSON_NULL;
    default:
        return WC_JSON_NUMBER;
    }
}

/* The member name of the object at p (on its '{'): the start of its value, NULL when absent. */
static const uchar *member(const uchar *p, const uchar *end, const char *name, size_t n)
{
    const uchar *found = NULL;

    p = skip_ws(p + 1, end);
    while (p < end && *p == '"') {
        int hit = key_is(p, end, name, n, &p);
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return found;
        p = skip_ws(p + 1, end);
        if (hit)
            found = p; /* and go on: a later duplicate wins */
        p = skip_ws(skip_value(p, end), end);
        if (p >= end || *p != ',')
            break;
        p = skip_ws(p + 1, end);
    }
    return found;
}

/* Element index of the array at p (on its '['): its start, NULL when the array is shorter. */
static const uchar *element(const uchar *p, const uchar *end, size_t index)
{
    p = skip_ws(p + 1, end);
    if (p >= end || *p == ']')
        return NULL;
    for (size_t i = 0; i < index; i++) {
        p = skip_ws(skip_value(p, end), end);
        if (p >= end || *p != ',')
            return NULL;
        p = skip_ws(p + 1, end);
    }
    return p < end ? p : NULL;
}

int wc_json_lookup(const char *s, size_t len, const struct wc_json_step *path, int nstep,
                   struct wc_json_span *out)
{
    return wc_json_lookup_index(s, len, NULL, path, nstep, out);
}

int wc_json_lookup_index(const char *s, size_t len, const struct wc_json_index *idx,
                         const struct wc_json_step *path, int nstep, struct wc_json_span *out)
{
    const uchar *end = (const uchar *)s + len;
    const uchar *p = skip_ws((const uchar *)s, end);
    int i = 0;

    if (idx != NULL && idx->n >= 0 && nstep > 0 && path[0].name != NULL) {
        /* The first step from the index, the last of equal keys first (it is the one that counts). */
        const char *name = path[0].name;
        size_t n = path[0].namelen;
        p = NULL;
        for (int k = idx->n - 1; k >= 0 && p == NULL; k--)
            if (idx->m[k].keylen == n && memcmp(s + idx->m[k].key, name, n) == 0)
                p = (const uchar *)s + idx->m[k].value;
        i = 1;
    }
    for (; i < nstep && p != NULL; i++) {
        if (p >= end)
            return -1;
        if (path[i].name != NULL)
            p = *p == '{' ? member(p, end, path[i].name, path[i].namelen) : NULL;
        else
            p = *p == '[' ? element(p, end, path[i].index) : NULL;
    }
    if (p == NULL || p >= end)
        return -1;
    out->s = (const char *)p;
    out->len = (size_t)(skip_value(p, end) - p);
    out->type = type_of(*p);
    return 0;
}

int wc_json_str_has_escapes(const char *s, size_t len)
{
    return len > 2 && memchr(s + 1, '\\', len - 2) != NULL;
}

void wc_json_str_unescape(struct wc_buf *b, const char *s, size_t len)
{
    const uchar *p, *end;

    if (len < 2)
        return;
    p = (const uchar *)s + 1;
    end = (const uchar *)s + len - 1; /* the closing quote */
    wc_buf_reserve(b, len);           /* never longer than the escaped text */
    while (p < end) {
        const uchar *q = memchr(p, '\\', (size_t)(end - p));
        if (q == NULL)
            q = end;
        wc_buf_append(b, p, (size_t)(q - p));
        if (q == end)
            break;
        char u[4];
        size_t k = unescape_one(q, end, &p, u);
        wc_buf_append(b, u, k);
    }
}

void wc_json_compact(struct wc_buf *b, const char *s, size_t len)
{
    const uchar *p = (const uchar *)s, *end = p + len;

    wc_buf_reserve(b, len);
    while (p < end) {
        const uchar *q = p;
        /* A run to copy: anything but whitespace, strings whole. */
        while (q < end && !(cls[*q] & C_WS))
            q = *q == '"' ? skip_string(q, end) : q + 1;
        wc_buf_append(b, p, (size_t)(q - p));
        p = skip_ws(q, end);
    }
}
