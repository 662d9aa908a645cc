/* template.c - compile "{expr}" templates once (the renderer is template_render.c, the filters
 * template_filters.c). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template_int.h"

static const char *const filter_names[] = {"epoch_ms", "epoch_s", "number", "json",
                                           "lower",    "upper",   "length"};
#define NFILTER (int)(sizeof(filter_names) / sizeof(filter_names[0]))

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

int tp_literal(const struct wc_tmpl *t, const char **s, size_t *len)
{
    if (t->npart > 0 && t->parts[0].lit != NULL) {
        *s = t->parts[0].lit;
        *len = t->parts[0].litlen;
        return t->npart == 1;
    }
    *s = "";
    *len = 0;
    return 0;
}

int wc_tmpl_literal(const struct wc_tmpl *t, const char **text, size_t *len)
{
    return !t->bare && tp_literal(t, text, len);
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
        if (p - f == 5 && memcmp(f, "cents", 5) == 0)
            which = F_SCALE + 2;
        if (p - f >= 8 && memcmp(f, "scale(", 6) == 0 && p[-1] == ')') {
            const char *d = f + 6;
            int n = 0;
            while (d < p - 1 && isdigit((unsigned char)*d) && n <= SCALE_MAX)
                n = n * 10 + (*d++ - '0');
            if (d != p - 1 || n > SCALE_MAX) {
                wc_err_set(err, WC_ERR_CONFIG, "bad filter \"%.*s\" (scale takes 0 to %d decimal places)",
                           (int)(p - f), f, SCALE_MAX);
                return -1;
            }
            which = F_SCALE + n;
        }
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
