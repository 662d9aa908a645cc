/* template_render.c - render a compiled template for an event: look each expression up (payload paths
 * read in place from the payload text), run its filters, append the text. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "template_int.h"

/* Turn v into text appended to out (V_OUT). Null appends nothing. */
void tp_materialize(struct val *v, struct wc_buf *out)
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

/* Describe the expression for messages: payload field "a.b", field "occurred_at". */
void tp_what(const struct expr *e, char *buf, size_t size)
{
    snprintf(buf, size, "%sfield \"%s\"", e->root == WC_COL_PAYLOAD && e->nstep ? "payload " : "", e->path);
}

/* The text of a string-like value; *len set. NULL when v is no string (null, V_JVAL, V_INT). */
const char *tp_text_of(const struct val *v, const struct wc_buf *out, size_t *len)
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
 * Whether the scanner may read the payload: checked once per event (ev->payload_checked), which also
 * indexes the members of an object payload (ev->payload_index). Returns 0, or
 * -1 with err worded as wc_event_payload() words it (jansson's message), so dead letters read as before.
 */
int tp_payload_valid(struct wc_event *ev, struct wc_err *err)
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
    if (tp_payload_valid(ev, err) < 0)
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
            if (tp_filter_epoch(e, &v, e->filters[i] == F_EPOCH_MS, out, err) < 0)
                goto fail;
            break;
        case F_NUMBER:
            if (tp_filter_number(e, &v, out, err) < 0)
                goto fail;
            break;
        case F_JSON:
            tp_filter_json(&v, out);
            break;
        case F_LENGTH:
            if (tp_filter_length(e, ev, &v, out, err) < 0)
                goto fail;
            break;
        case F_LOWER:
        case F_UPPER:
            tp_materialize(&v, out);
            tp_ascii_case(out->data + v.start, out->len - v.start, e->filters[i] == F_UPPER);
            v.numeric = 0;
            break;
        default: /* F_SCALE + n */
            if (tp_filter_scale(e, &v, e->filters[i] - F_SCALE, out, err) < 0)
                goto fail;
            break;
        }
    }
    if (v.kind == V_NULL)
        return 1;
    tp_materialize(&v, out);
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
