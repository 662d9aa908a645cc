/*
 * fuzz_jscan.c - libFuzzer target for the JSON scanner (base/jscan.c), with jansson as the reference.
 *
 * The input is one JSON text, copied into a buffer of exactly its length (no NUL after it) so that a read
 * past the text is caught by AddressSanitizer. Checks, each an abort when it fails:
 *  - wc_json_validate agrees with json_loadb(JSON_DECODE_ANY), and with WC_JSON_ALLOW_NUL with
 *    json_loadb(JSON_DECODE_ANY | JSON_ALLOW_NUL). The one disagreement allowed is documented in jscan.h:
 *    jansson takes a NUL byte right after a number or literal ("1\0"), the scanner takes no raw NUL.
 *  - On a valid text, every value of jansson's tree (up to 32 levels down, 2000 values) is found by
 *    wc_json_lookup at its path, as a span inside the text that jansson reads back as the same value;
 *    strings unescape to jansson's string, objects and arrays compact to text that reads the same; a
 *    member or index that is not there is missing.
 *    Lookups with the index wc_json_validate_index made (the document's members) give the same spans.
 *  - On any text, valid or not, lookups, compact and unescape stay inside the buffer (ASan).
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walcast/jscan.h"

static volatile size_t sink;

static void fail(const char *what, const char *s, size_t len)
{
    fprintf(stderr, "fuzz_jscan: %s\n  text (%zu bytes): %.*s\n", what, len, (int)(len < 2000 ? len : 2000),
            s);
    abort();
}

static int jansson_ok(const char *s, size_t len, size_t flags)
{
    json_t *j = json_loadb(s, len, JSON_DECODE_ANY | flags, NULL);

    json_decref(j);
    return j ? 0 : -1;
}

static void agree(const char *s, size_t len, int flags)
{
    int mine = wc_json_validate_flags(s, len, flags);
    int theirs = jansson_ok(s, len, (flags & WC_JSON_ALLOW_NUL) ? JSON_ALLOW_NUL : 0);

    if (mine == theirs || (mine == -1 && theirs == 0 && memchr(s, '\0', len) != NULL))
        return;
    fail(mine == 0 ? "the scanner takes a text jansson refuses" : "the scanner refuses a text jansson takes",
         s, len);
}

/* The span must lie in the text; its reading is compared when j is given. */
static void check_span(const char *s, size_t len, const struct wc_json_span *sp, json_t *j)
{
    struct wc_buf b = WC_BUF_INIT;

    if (sp->s < s || sp->len > len || sp->s > s + len - sp->len)
        fail("a span outside the text", s, len);
    if (j == NULL) {
        /* Not validated: only exercise the readers. */
        wc_json_compact(&b, sp->s, sp->len);
        if (sp->type == WC_JSON_STRING)
            wc_json_str_unescape(&b, sp->s, sp->len);
        sink += b.len + (size_t)wc_json_str_has_escapes(sp->s, sp->len);
        wc_buf_free(&b);
        return;
    }
    json_t *v = json_loadb(sp->s, sp->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (v == NULL || !json_equal(v, j))
        fail("a span that is not the value at its path", s, len);
    json_decref(v);
    switch (json_typeof(j)) {
    case JSON_STRING:
        if (sp->type != WC_JSON_STRING)
            fail("a string of another type", s, len);
        wc_json_str_unescape(&b, sp->s, sp->len);
        if (b.len != json_string_length(j) || (b.len && memcmp(b.data, json_string_value(j), b.len) != 0))
            fail("a string that unescapes differently", s, len);
        if (wc_json_str_has_escapes(sp->s, sp->len) != (memchr(sp->s, '\\', sp->len) != NULL))
            fail("escapes misreported", s, len);
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        if (sp->type != WC_JSON_NUMBER)
            fail("a number of another type", s, len);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
    case JSON_NULL:
        if (sp->type != (json_is_true(j) ? WC_JSON_TRUE : json_is_false(j) ? WC_JSON_FALSE : WC_JSON_NULL))
            fail("a literal of another type", s, len);
        break;
    case JSON_OBJECT:
    case JSON_ARRAY: {
        if (sp->type != (json_is_object(j) ? WC_JSON_OBJECT : WC_JSON_ARRAY))
            fail("a container of another type", s, len);
        wc_json_compact(&b, sp->s, sp->len);
        json_t *c = json_loadb(b.data, b.len, JSON_ALLOW_NUL, NULL);
        if (c == NULL || !json_equal(c, j))
            fail("compact text that reads differently", s, len);
        json_decref(c);
        for (size_t i = 0; i < b.len; i++) {
            if (b.data[i] == '"') {
                /* skip the string */
                for (i++; i < b.len && b.data[i] != '"'; i++)
                    i += b.data[i] == '\\';
            } else if (b.data[i] == ' ' || b.data[i] == '\n' || b.data[i] == '\r' || b.data[i] == '\t') {
                fail("whitespace left in compact text", s, len);
            }
        }
        break;
    }
    }
    wc_buf_free(&b);
}

static int budget;
static struct wc_json_index idx;

/* A lookup with and without the index of the document's members: the same answer. */
static int lookup2(const char *s, size_t len, const struct wc_json_step *path, int n, struct wc_json_span *sp)
{
    struct wc_json_span sp2;
    int rc = wc_json_lookup(s, len, path, n, sp);

    if (wc_json_lookup_index(s, len, &idx, path, n, &sp2) != rc ||
        (rc == 0 && (sp2.s != sp->s || sp2.len != sp->len || sp2.type != sp->type)))
        fail("the index finds another value", s, len);
    return rc;
}

static void walk(const char *s, size_t len, json_t *j, struct wc_json_step *path, int n)
{
    struct wc_json_span sp;

    if (--budget < 0)
        return;
    if (lookup2(s, len, path, n, &sp) < 0)
        fail("a path of the tree is missing", s, len);
    check_span(s, len, &sp, j);
    if (n >= 32)
        return;
    if (json_is_object(j)) {
        const char *key;
        json_t *m;
        json_object_foreach(j, key, m)
        {
            path[n] = (struct wc_json_step){key, strlen(key), 0};
            walk(s, len, m, path, n + 1);
        }
        path[n] = (struct wc_json_step){"\0missing", 8, 0}; /* keys never hold a NUL */
        if (lookup2(s, len, path, n + 1, &sp) == 0)
            fail("a missing member is found", s, len);
        path[n] = (struct wc_json_step){NULL, 0, 0};
        if (lookup2(s, len, path, n + 1, &sp) == 0)
            fail("an index into an object is found", s, len);
    } else if (json_is_array(j)) {
        size_t i;
        json_t *m;
        json_array_foreach(j, i, m)
        {
            path[n] = (struct wc_json_step){NULL, 0, i};
            walk(s, len, m, path, n + 1);
        }
        path[n] = (struct wc_json_step){NULL, 0, json_array_size(j)};
        if (lookup2(s, len, path, n + 1, &sp) == 0)
            fail("an index past the end is found", s, len);
        path[n] = (struct wc_json_step){"a", 1, 0};
        if (lookup2(s, len, path, n + 1, &sp) == 0)
            fail("a member of an array is found", s, len);
    }
}

/* Paths made of the input's own bytes, on any text: only memory safety is checked. */
static void probe(const char *s, size_t len)
{
    struct wc_json_step path[4];
    struct wc_json_span sp;

    for (int n = 0; n <= 4; n++) {
        for (int i = 0; i < n; i++) {
            size_t at = len ? (size_t)(i * 7919) % len : 0;
            if (len && ((unsigned char)s[at] & 1))
                path[i] = (struct wc_json_step){s + at, (len - at) < 3 ? len - at : 3, 0};
            else
                path[i] = (struct wc_json_step){NULL, 0, len ? (unsigned char)s[at] % 4 : 0};
        }
        if (wc_json_lookup(s, len, path, n, &sp) == 0)
            check_span(s, len, &sp, NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size ? size : 1);

    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    agree(s, size, 0);
    agree(s, size, WC_JSON_ALLOW_NUL);
    probe(s, size);
    if (wc_json_validate_index(s, size, WC_JSON_ALLOW_NUL, &idx) == 0) {
        json_t *j = json_loadb(s, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        struct wc_json_step path[33];
        if (j == NULL)
            fail("jansson refuses a valid text", s, size);
        if (idx.n > WC_JSON_INDEX_MAX || (idx.n >= 0 && !json_is_object(j)))
            fail("an index of no object", s, size);
        for (int i = 0; i < idx.n; i++)
            if (idx.m[i].key + (size_t)idx.m[i].keylen >= size || idx.m[i].value >= size ||
                s[idx.m[i].key - 1] != '"' || s[idx.m[i].key + idx.m[i].keylen] != '"')
                fail("an index entry outside the text", s, size);
        budget = 2000;
        walk(s, size, j, path, 0);
        json_decref(j);
    }
    free(s);
    return 0;
}
