/* template_int.h - the compiled form of a template and the value that filters work on, shared by the
 * compiler (template.c), the renderer (template_render.c) and the filters (template_filters.c).
 * Private to config/. */
#ifndef WALCAST_TEMPLATE_INT_H
#define WALCAST_TEMPLATE_INT_H

#include <stddef.h>

#include "walcast/jscan.h"
#include "walcast/template.h"

/* Roots: the outbox columns keep their enum wc_col values, then the two transaction fields. */
enum { ROOT_LSN = WC_COL_COUNT, ROOT_COMMIT_TIME };

/* F_SCALE + n stands for scale(n) (cents is scale(2)): a decimal times 10^n as an exact integer. */
enum filter { F_EPOCH_MS, F_EPOCH_S, F_NUMBER, F_JSON, F_LOWER, F_UPPER, F_LENGTH, F_SCALE = 100 };
#define SCALE_MAX 18
/* The largest magnitude scale() gives: 2^53, so that the integer is exact as a double (a Redis score). */
#define SCALE_LIMIT 9007199254740992ULL

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

/* template.c */
/* The leading literal text of t (*s, *len; empty when t starts with a placeholder). Returns 1 when t is
 * nothing but that literal text. */
int tp_literal(const struct wc_tmpl *t, const char **s, size_t *len);

/* template_render.c */
/* Turn v into text appended to out (V_OUT). Null appends nothing. */
void tp_materialize(struct val *v, struct wc_buf *out);
/* Describe the expression for messages: payload field "a.b", field "occurred_at". */
void tp_what(const struct expr *e, char *buf, size_t size);
/* The text of a string-like value; *len set. NULL when v is no string (null, V_JVAL, V_INT). */
const char *tp_text_of(const struct val *v, const struct wc_buf *out, size_t *len);
/* Whether the scanner may read the payload (checked once per event). 0, or -1 with err. */
int tp_payload_valid(struct wc_event *ev, struct wc_err *err);

/* template_filters.c: each returns 0 or -1 with err (WC_ERR_DATA) naming the expression. */
int tp_filter_epoch(const struct expr *e, struct val *v, int ms, struct wc_buf *out, struct wc_err *err);
int tp_filter_number(const struct expr *e, struct val *v, struct wc_buf *out, struct wc_err *err);
int tp_filter_length(const struct expr *e, struct wc_event *ev, struct val *v, struct wc_buf *out,
                     struct wc_err *err);
void tp_filter_json(struct val *v, struct wc_buf *out);
int tp_filter_scale(const struct expr *e, struct val *v, int n, struct wc_buf *out, struct wc_err *err);
void tp_ascii_case(char *s, size_t n, int upper);

#endif
