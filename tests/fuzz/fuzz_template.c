/*
 * fuzz_template.c - libFuzzer target for the template engine (config/template*.c).
 *
 * Input: the first line is a template source, the rest is a payload JSON text. The source is compiled
 * both as a template (bare=0) and as a bare expression (bare=1); whatever compiles is rendered against
 * an event built by hand whose payload column is the rest of the input. Templates read the payload in
 * place (base/jscan.c); jansson parses it only to word the error of an invalid payload, and the event's
 * payload_owner is NULL, so that parse (ev.payload_json) is ours to free.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "walcast/template.h"

#include "fuzz_util.h"

static volatile size_t sink;

/*
 * Known bugs, each with its reproducer in tests/fuzz/crashers/ (see its README; all three are fixed
 * now). FUZZ_TEMPLATE_SKIP_KNOWN=1 steps around them so that a long run can look for other bugs while
 * one is open; without it they crash.
 *  template-1: a template that renders only null placeholders into a fresh buffer leaves out.data
 *    allocated (wc_tmpl_render's final wc_buf_reserve) but not NUL-terminated, against buf.h's "always
 *    NUL-terminated when non-NULL". Skipped: that one check, for empty output only. (Fixed in bc0a1e3:
 *    wc_buf_reserve keeps the buffer NUL-terminated.)
 *  template-2: compile_expr counts path steps by '.' and '[' but after "[digits]" takes any other
 *    character as a '[' ("payload[0]x0]"): steps[] is overflowed. Skipped: sources with "]" + a character
 *    other than '.' or '[' + digits + "]". (Fixed in e24740c.)
 *  template-3: "|json" filters can be chained without limit and each one re-encodes the text before it,
 *    so the output doubles per filter (payload|json x40 asks realloc for 2 GiB, filter_json ->
 *    wc_buf_reserve). Skipped: sources with more than 10 "json". (Fixed in b071e72: 8 filters at most.)
 */
static int skip_known;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *v = getenv("FUZZ_TEMPLATE_SKIP_KNOWN");
    skip_known = v != NULL && v[0] == '1';
    return 0;
}

static void render_one(const char *src, int bare, struct wc_event *ev)
{
    struct wc_err err = {0};
    struct wc_tmpl *t = wc_tmpl_compile(src, bare, &err);

    if (t == NULL) {
        sink += strlen(err.msg);
        return;
    }
    sink += strlen(wc_tmpl_source(t));
    sink += (size_t)wc_tmpl_is_whole_payload(t);

    struct wc_buf out = WC_BUF_INIT;
    int rc = wc_tmpl_render(t, ev, &out, &err);
    if (rc < 0)
        sink += strlen(err.msg);
    /* The buffer is NUL-terminated and len is its length, whatever the outcome. */
    if (out.data != NULL) {
        if (out.data[out.len] != '\0' && !(skip_known && out.len == 0))
            abort();
        sink += out.len;
    }
    /* Render a second time into the same buffer: the payload's check is cached on the event. */
    rc = wc_tmpl_render(t, ev, &out, &err);
    sink += (size_t)(rc + 1);
    wc_buf_free(&out);

    /* As the sinks do: append to a buffer that already holds text; a failure must leave it as it was. */
    struct wc_buf acc = WC_BUF_INIT;
    wc_buf_puts(&acc, "<");
    rc = wc_tmpl_render(t, ev, &acc, &err);
    if (acc.data[acc.len] != '\0' || (rc != 0 && (acc.len != 1 || acc.data[0] != '<')))
        abort();
    wc_buf_free(&acc);
    wc_tmpl_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    const char *nl = memchr(p, '\n', size);
    size_t slen = nl ? (size_t)(nl - p) : size;
    size_t plen = nl ? size - slen - 1 : 0;
    char *src = malloc(slen + 1);
    char *payload = malloc(plen + 1);

    if (src == NULL || payload == NULL) {
        free(src);
        free(payload);
        return 0;
    }
    memcpy(src, p, slen);
    src[slen] = '\0';
    if (skip_known && (has_known_template_2(src, strlen(src)) || has_known_template_3(src, strlen(src)))) {
        free(src);
        free(payload);
        return 0;
    }
    if (plen)
        memcpy(payload, nl + 1, plen);
    payload[plen] = '\0';

    struct wc_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.pos.lsn = ((wc_lsn)0x1 << 32) | 0x2A3B4C;
    ev.pos.index = 3;
    ev.end_lsn = ((wc_lsn)0x1 << 32) | 0x2A3C00;
    ev.commit_time = "2026-11-27T10:39:53.655523Z";
    ev.col[WC_COL_EVENT_ID] = (struct wc_val){WC_VAL_STRING, "8f0e6b2c-1111-2222-3333-444455556666", 36};
    ev.col[WC_COL_AGGREGATE_TYPE] = (struct wc_val){WC_VAL_STRING, "Order", 5};
    ev.col[WC_COL_AGGREGATE_ID] = (struct wc_val){WC_VAL_NUMBER, "12345678901234567890", 20};
    ev.col[WC_COL_EVENT_TYPE] = (struct wc_val){WC_VAL_STRING, "OrderPlaced", 11};
    ev.col[WC_COL_PAYLOAD] = (struct wc_val){WC_VAL_STRING, payload, plen};
    ev.col[WC_COL_OCCURRED_AT] = (struct wc_val){WC_VAL_STRING, "2026-11-27T10:39:53.655Z", 24};
    ev.payload_json = NULL;
    ev.size = size;
    ev.payload_owner = NULL;

    render_one(src, 0, &ev);
    render_one(src, 1, &ev);

    json_decref(ev.payload_json);
    free(payload);
    free(src);
    return 0;
}
