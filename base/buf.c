/* buf.c - growable byte buffer. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walcast/buf.h"

static void out_of_memory(void)
{
    fprintf(stderr, "walcast: out of memory\n");
    abort();
}

void *wc_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        out_of_memory();
    return p;
}

void *wc_xrealloc(void *p, size_t size)
{
    p = realloc(p, size ? size : 1);
    if (p == NULL)
        out_of_memory();
    return p;
}

char *wc_xstrndup(const char *s, size_t n)
{
    char *p = wc_xcalloc(n + 1, 1);
    memcpy(p, s, n);
    return p;
}

char *wc_xstrdup(const char *s)
{
    return wc_xstrndup(s, strlen(s));
}

void wc_buf_grow(struct wc_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;

    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        out_of_memory();
    b->data = p;
    b->cap = cap;
    b->data[b->len] = '\0'; /* the promise of buf.h: NUL-terminated whenever data is set */
}

void wc_buf_puts(struct wc_buf *b, const char *s)
{
    wc_buf_append(b, s, strlen(s));
}

void wc_buf_printf(struct wc_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    wc_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void wc_buf_json_string(struct wc_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";

    wc_buf_reserve(b, len + 2);
    b->data[b->len++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        }
        if (esc) {
            wc_buf_append(b, esc, 2);
        } else if (c < 0x20) {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            wc_buf_append(b, u, 6);
        } else {
            wc_buf_reserve(b, 1);
            b->data[b->len++] = (char)c;
        }
    }
    wc_buf_reserve(b, 1);
    b->data[b->len++] = '"';
    b->data[b->len] = '\0';
}

void wc_buf_free(struct wc_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void wc_buf_put_int(struct wc_buf *b, long long v)
{
    char tmp[24], *p = tmp + sizeof(tmp);
    unsigned long long a = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

    do {
        *--p = (char)('0' + a % 10);
        a /= 10;
    } while (a);
    if (v < 0)
        *--p = '-';
    wc_buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}
