/* template.h - templates over event fields and payload paths ("order:{payload.order_id}"). */
#ifndef WALCAST_TEMPLATE_H
#define WALCAST_TEMPLATE_H

#include "walcast/buf.h"
#include "walcast/err.h"
#include "walcast/event.h"

/*
 * Syntax. A template is literal text with placeholders "{expr}"; "{{" and "}}" are literal braces.
 * A bare expression (used for SQL parameters) is one expr without braces.
 *   expr   := path ( "|" filter )*
 *   path   := root ( "." name | "[" digits "]" )*
 *   root   := event_id | aggregate_type | aggregate_id | event_type | payload | occurred_at
 *             | lsn | commit_time
 *   filter := epoch_ms | epoch_s | number | json | lower | upper | length
 * Only payload takes a path after the root. Rendering: strings unescaped; numbers exactly as they are
 * written in the payload (12.50 stays "12.50", 1e2 stays "1e2", long integers and decimals keep every
 * digit: no trip through a double); true/false as text; objects and arrays as compact JSON (whitespace
 * dropped, strings and numbers inside as written). "json" renders any value as JSON (strings quoted and
 * escaped, numbers as written); "epoch_ms"/"epoch_s" turn an ISO 8601 timestamp (or a number of seconds)
 * into an integer; "number" insists on a number (or a numeric string) and renders it; "length" is the
 * number of elements of an array, members of an object (as written) or characters of a string.
 * Payload paths read the payload text in place (base/jscan.c): it is validated once per event, as strictly
 * as jansson parses it, and never built into a tree.
 */
struct wc_tmpl;

/* Compile src. bare: src is one expression. Returns NULL with err (WC_ERR_CONFIG, naming the unknown
 * field or filter) on a bad template. */
struct wc_tmpl *wc_tmpl_compile(const char *src, int bare, struct wc_err *err);
void wc_tmpl_free(struct wc_tmpl *t);
/* The source text, for messages. */
const char *wc_tmpl_source(const struct wc_tmpl *t);
/* Nonzero when the template is literal text without a placeholder; *text and *len are then that text
 * ("{{" and "}}" already turned into braces), borrowed from t. */
int wc_tmpl_literal(const struct wc_tmpl *t, const char **text, size_t *len);
/* Nonzero when the template is one bare placeholder "payload" (the whole payload). */
int wc_tmpl_is_whole_payload(const struct wc_tmpl *t);

/*
 * Append the rendering to out. Returns 0, 1 when a bare expression's value is JSON null or absent
 * under a "?"-less path is an error: 1 means null (out unchanged), -1 with err (WC_ERR_DATA, naming the
 * path: "payload field \"customer_id\" is missing") when a path is missing or a filter does not apply.
 */
int wc_tmpl_render(const struct wc_tmpl *t, struct wc_event *ev, struct wc_buf *out, struct wc_err *err);

#endif
