/* record.c - queued-event records: identities copied into a batch's arena, events rebuilt from them. */
#include <string.h>
#include <stdlib.h>

#include "record.h"

size_t wc_recs_put(struct wc_recs *r, const char *text, size_t len)
{
    size_t off = r->arena.len;

    wc_buf_reserve(&r->arena, len + 1);
    if (len)
        memcpy(r->arena.data + off, text, len);
    r->arena.data[off + len] = '\0';
    r->arena.len += len + 1;
    r->arena.data[r->arena.len] = '\0';
    return off;
}

int wc_recs_add(struct wc_recs *r, const struct wc_event *ev, unsigned mask)
{
    struct wc_rec *e;

    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->v = wc_xrealloc(r->v, (size_t)r->cap * sizeof(*r->v));
    }
    e = &r->v[r->n];
    e->pos = ev->pos;
    for (int c = 0; c < WC_COL_COUNT; c++) {
        const struct wc_val *v = &ev->col[c];
        if (!(mask & (1u << c)) || v->kind == WC_VAL_NULL || v->text == NULL) {
            e->col[c] = WC_REC_NULL;
            e->len[c] = 0;
            e->kind[c] = WC_VAL_NULL;
            continue;
        }
        e->col[c] = wc_recs_put(r, v->text, v->len);
        e->len[c] = v->len;
        e->kind[c] = (unsigned char)v->kind;
    }
    e->counted = 0;
    e->first = 0;
    e->n = 0;
    e->off = 0;
    return r->n++;
}

void wc_recs_event(const struct wc_recs *r, const struct wc_rec *rec, struct wc_event *ev)
{
    const char *text[WC_COL_COUNT];
    int kind[WC_COL_COUNT];

    for (int c = 0; c < WC_COL_COUNT; c++) {
        text[c] = wc_recs_str(r, rec->col[c]);
        kind[c] = rec->kind[c];
    }
    wc_event_from_texts(ev, rec->pos, text, rec->len, kind);
}

void wc_recs_truncate(struct wc_recs *r, int n, size_t arena_len)
{
    r->n = n;
    r->arena.len = arena_len;
    if (r->arena.data)
        r->arena.data[arena_len] = '\0';
}

void wc_recs_reset(struct wc_recs *r)
{
    r->n = 0;
    wc_buf_reset(&r->arena);
}

void wc_recs_free(struct wc_recs *r)
{
    free(r->v);
    wc_buf_free(&r->arena);
    memset(r, 0, sizeof(*r));
}
