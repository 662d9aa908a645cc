/* buf.h - a growable byte buffer (sds-like, but a plain struct). */
#ifndef WALCAST_BUF_H
#define WALCAST_BUF_H

#include <stddef.h>
#include <string.h>

struct wc_buf {
    char *data; /* always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
};

#define WC_BUF_INIT                                                                                          \
    {                                                                                                        \
        NULL, 0, 0                                                                                           \
    }

/* Make room for extra more bytes (and the NUL); aborts on out of memory, like sds. */
void wc_buf_grow(struct wc_buf *b, size_t extra);
/* Inline: the per-event path appends many small pieces, mostly into room that is already there. */
static inline void wc_buf_reserve(struct wc_buf *b, size_t extra)
{
    if (b->len + extra + 1 > b->cap)
        wc_buf_grow(b, extra);
}
static inline void wc_buf_append(struct wc_buf *b, const void *data, size_t len)
{
    wc_buf_reserve(b, len);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}
void wc_buf_puts(struct wc_buf *b, const char *s);
void wc_buf_printf(struct wc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append the decimal text of v (no printf: this is on the per-event path). */
void wc_buf_put_int(struct wc_buf *b, long long v);
/* Append s as a JSON string literal, quotes included. */
void wc_buf_json_string(struct wc_buf *b, const char *s, size_t len);
static inline void wc_buf_reset(struct wc_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}
void wc_buf_free(struct wc_buf *b);

/* Allocation that aborts on out of memory (as wc_buf_reserve does): for configuration and batch
 * bookkeeping, where there is nothing sensible to do without memory. Zero sizes allocate one byte. */
void *wc_xcalloc(size_t n, size_t size);
void *wc_xrealloc(void *p, size_t size);
char *wc_xstrndup(const char *s, size_t n);
char *wc_xstrdup(const char *s);

#endif
