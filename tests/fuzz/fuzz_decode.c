/*
 * fuzz_decode.c - libFuzzer target for the wal2json decoder (replication/decode.c).
 *
 * The input is split on '\n'; each piece is one wal2json message, fed in order to one decoder (so the
 * B..I..C state machine is exercised across messages). Each message is copied into a buffer of exactly
 * its length (no NUL) so that a read past the message is caught by AddressSanitizer. For an event, the
 * payload is parsed (wc_event_payload) and every string the decoder hands out is read.
 *
 * FUZZ_DECODE_DIFF=1 adds a differential check: a second decoder with the insert fast path off
 * (wc_decoder_set_fast(d, 0): jansson's full parse) decodes the same messages, and both must agree as
 * tests/test_decode.c expects (return code, error text, kind, positions, commit time, columns; numbers
 * by value, since the fast path keeps their text verbatim and the full parse reformats reals). A
 * disagreement is printed and aborts. Off by default: inputs wal2json never writes (duplicate keys,
 * malformed numbers) are expected to find differences that do not matter in practice. Known
 * differences (reproducers tests/fuzz/crashers/diff-decode-*): a message that is not valid UTF-8 (the
 * fast scanner passes such bytes through, jansson rejects the message: "unable to decode byte 0xff");
 * an insert whose "nextlsn" is not an LSN, or whose "lsn" is not a string (the fast scanner does not
 * check them, the full parse says "lsn" or "nextlsn" is not an LSN). FUZZ_DECODE_DIFF=2 does not
 * compare messages that are not valid UTF-8.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <stdio.h>

#include "walcast/decode.h"

#include "fuzz_util.h"

static volatile size_t sink;
static int diff_mode;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *v = getenv("FUZZ_DECODE_DIFF");
    diff_mode = v != NULL && (v[0] == '1' || v[0] == '2') ? v[0] - '0' : 0;
    return 0;
}

static void differ(const char *what, const char *msg, size_t len, const char *a, const char *b)
{
    fprintf(stderr,
            "fuzz_decode: fast and full parse differ in %s\n  message: %.*s\n  fast: %s\n  full: %s\n", what,
            (int)(len < 2000 ? len : 2000), msg, a ? a : "(null)", b ? b : "(null)");
    abort();
}

static void compare(const char *msg, size_t len, int ra, const struct wc_decoded *a, const struct wc_err *ea,
                    int rb, const struct wc_decoded *b, const struct wc_err *eb)
{
    char x[64], y[64];

    if (ra != rb) {
        snprintf(x, sizeof(x), "rc %d", ra);
        snprintf(y, sizeof(y), "rc %d", rb);
        differ("return code", msg, len, ra < 0 ? ea->msg : x, rb < 0 ? eb->msg : y);
    }
    if (ra < 0) {
        if (strcmp(ea->msg, eb->msg) != 0)
            differ("error message", msg, len, ea->msg, eb->msg);
        return;
    }
    if (a->kind != b->kind) {
        snprintf(x, sizeof(x), "kind %d", a->kind);
        snprintf(y, sizeof(y), "kind %d", b->kind);
        differ("kind", msg, len, x, y);
    }
    if (a->kind != WC_DECODED_EVENT)
        return;
    if (a->event.pos.lsn != b->event.pos.lsn || a->event.pos.index != b->event.pos.index ||
        a->event.end_lsn != b->event.end_lsn) {
        snprintf(x, sizeof(x), "%llx:%lld end %llx", (unsigned long long)a->event.pos.lsn,
                 (long long)a->event.pos.index, (unsigned long long)a->event.end_lsn);
        snprintf(y, sizeof(y), "%llx:%lld end %llx", (unsigned long long)b->event.pos.lsn,
                 (long long)b->event.pos.index, (unsigned long long)b->event.end_lsn);
        differ("position", msg, len, x, y);
    }
    if (strcmp(a->event.commit_time, b->event.commit_time) != 0)
        differ("commit time", msg, len, a->event.commit_time, b->event.commit_time);
    for (int k = 0; k < WC_COL_COUNT; k++) {
        const struct wc_val *va = &a->event.col[k], *vb = &b->event.col[k];
        if (va->kind != vb->kind) {
            snprintf(x, sizeof(x), "column %d kind %d", k, va->kind);
            snprintf(y, sizeof(y), "column %d kind %d", k, vb->kind);
            differ("column kind", msg, len, x, y);
        }
        if (va->kind == WC_VAL_NULL)
            continue;
        if (va->kind == WC_VAL_NUMBER) {
            if (strtod(va->text, NULL) != strtod(vb->text, NULL))
                differ("number column", msg, len, va->text, vb->text);
        } else if (va->len != vb->len || memcmp(va->text, vb->text, va->len) != 0) {
            differ("column text", msg, len, va->text, vb->text);
        }
    }
}

static void touch(const char *s)
{
    if (s != NULL)
        sink += strlen(s);
}

static void touch_event(const struct wc_event *ev)
{
    touch(ev->commit_time);
    for (int k = 0; k < WC_COL_COUNT; k++) {
        const struct wc_val *v = &ev->col[k];
        if (v->kind != WC_VAL_NULL && v->text != NULL) {
            touch(v->text);
            if (v->len > 0)
                sink += (unsigned char)v->text[v->len - 1];
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wc_decoder *d = wc_decoder_new("public", "domain_events", NULL, "walcast");
    struct wc_decoder *full = diff_mode ? wc_decoder_new("public", "domain_events", NULL, "walcast") : NULL;
    const char *p = (const char *)data, *end = p + size;
    wc_lsn wal_lsn = 0x16B3748;

    if (d == NULL || (diff_mode && full == NULL)) {
        wc_decoder_free(d);
        wc_decoder_free(full);
        return 0;
    }
    if (full != NULL)
        wc_decoder_set_fast(full, 0);
    while (p <= end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *msg = malloc(len ? len : 1);
        struct wc_decoded out;
        struct wc_err err = {0};

        if (msg == NULL)
            break;
        memcpy(msg, p, len);
        int rc = wc_decode_message(d, msg, len, wal_lsn, &out, &err);
        if (full != NULL) {
            struct wc_decoded fout;
            struct wc_err ferr = {0};
            int frc = wc_decode_message(full, msg, len, wal_lsn, &fout, &ferr);
            if (diff_mode == 1 || valid_utf8((const unsigned char *)msg, len))
                compare(msg, len, rc, &out, &err, frc, &fout, &ferr);
        }
        if (rc == 0) {
            touch_event(&out.event);
            if (out.kind == WC_DECODED_EVENT) {
                struct wc_err perr = {0};
                json_t *j = wc_event_payload(&out.event, &perr);
                /* A second call returns the same (cached) value. */
                if (j != NULL && wc_event_payload(&out.event, &perr) != j)
                    abort();
            } else if (out.kind == WC_DECODED_MESSAGE) {
                touch(out.prefix);
                touch(out.content);
            }
        } else {
            touch(err.msg);
        }
        free(msg);
        wal_lsn += 0x30;
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    wc_decoder_free(d);
    wc_decoder_free(full);
    return 0;
}
