/* jscan.h - a strict, allocation-free scanner over JSON text: validate it, find a value by path, copy it. */
#ifndef WALCAST_JSCAN_H
#define WALCAST_JSCAN_H

#include <stddef.h>
#include <stdint.h>

#include "walcast/buf.h"

/*
 * What the validator accepts is what jansson's json_loadb(s, len, JSON_DECODE_ANY, ...) accepts: one
 * JSON value (RFC 8259) with only whitespace around it; strings of well-formed UTF-8 without raw control
 * characters, escapes as in the RFC (a \uD800-\uDBFF must be followed by a \uDC00-\uDFFF); integers
 * within 64 bits and reals that do not overflow a double (jansson refuses both); values nested at most
 * WC_JSON_MAX_DEPTH deep, scalars counting as a level (jansson's JSON_PARSER_MAX_DEPTH).
 * One difference: jansson drops a NUL byte that directly follows a number or true/false/null ("1\0" is
 * valid to it); here a raw NUL byte is never valid.
 */
#define WC_JSON_MAX_DEPTH 2048

/* Flags of wc_json_validate_flags. */
#define WC_JSON_ALLOW_NUL 0x1 /* \u0000 in string values (never in keys), like jansson's JSON_ALLOW_NUL */

/*
 * The members of a document that is an object, noted while validating it, so that looking up a member
 * does not scan the text before (and after) it again: offsets into the text, keys without the quotes.
 * n is -1 when there is no index: the document is no object, has more than WC_JSON_INDEX_MAX members,
 * or a key with an escape (lookups then scan the text, with the same result).
 */
#define WC_JSON_INDEX_MAX 16

struct wc_json_index {
    int n;
    struct {
        uint32_t key, keylen, value;
    } m[WC_JSON_INDEX_MAX];
};

/* 0 when s[0..len) is exactly one valid JSON value (whitespace around it aside), -1 otherwise. */
int wc_json_validate(const char *s, size_t len);
int wc_json_validate_flags(const char *s, size_t len, int flags);
/* The same, filling idx (valid only when this returns 0). */
int wc_json_validate_index(const char *s, size_t len, int flags, struct wc_json_index *idx);

enum wc_json_type {
    WC_JSON_OBJECT,
    WC_JSON_ARRAY,
    WC_JSON_STRING,
    WC_JSON_NUMBER,
    WC_JSON_TRUE,
    WC_JSON_FALSE,
    WC_JSON_NULL,
};

/* One step of a path: an object member (name, namelen bytes, compared with the unescaped key) or, when
 * name is NULL, an array index. */
struct wc_json_step {
    const char *name;
    size_t namelen;
    size_t index;
};

/* A value's raw text inside the document (a string's span includes its quotes) and its type. */
struct wc_json_span {
    const char *s;
    size_t len;
    int type; /* enum wc_json_type */
};

/*
 * The functions below read text that wc_json_validate*() accepted; on anything else their result is
 * undefined (they still never read outside s[0..len)).
 *
 * Find the value at path in s[0..len): 0 with *out set, or -1 when a step is missing (no such member, an
 * index past the end, or a step into a value of the other kind). With nstep 0 it is the whole value,
 * without the whitespace around it. An object with a repeated key yields the last one, as jansson does.
 */
int wc_json_lookup(const char *s, size_t len, const struct wc_json_step *path, int nstep,
                   struct wc_json_span *out);
/* The same with the index wc_json_validate_index() made of s (idx may be NULL). */
int wc_json_lookup_index(const char *s, size_t len, const struct wc_json_index *idx,
                         const struct wc_json_step *path, int nstep, struct wc_json_span *out);

/* The four hex digits at s (not NUL-terminated) as *out; -1 when one is no hex digit. */
int wc_json_hex4(const char *s, unsigned *out);
/* Encode the code point cp as UTF-8 into u (room for 4 bytes); the number of bytes. */
size_t wc_json_put_utf8(unsigned cp, char *u);
/* The number of elements of the array, or members of the object, s[0..len) (a repeated key counts each
 * time); 0 for any other value. */
size_t wc_json_count(const char *s, size_t len);
/* Nonzero when the string span s[0..len) (quotes included) holds a backslash escape. */
int wc_json_str_has_escapes(const char *s, size_t len);
/* Append the content of the string span s[0..len) (quotes included), unescaped, to b. */
void wc_json_str_unescape(struct wc_buf *b, const char *s, size_t len);
/* Append the value s[0..len) as compact JSON: whitespace outside strings dropped, strings and numbers
 * exactly as written. */
void wc_json_compact(struct wc_buf *b, const char *s, size_t len);

#endif
