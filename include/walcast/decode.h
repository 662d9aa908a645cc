/* decode.h - wal2json format-version 2 messages to events; no I/O, so it is tested from strings. */
#ifndef WALCAST_DECODE_H
#define WALCAST_DECODE_H

#include <stddef.h>

#include "walcast/err.h"
#include "walcast/event.h"

struct wc_decoder;

enum wc_decoded_kind {
    WC_DECODED_BEGIN,   /* "B": a transaction starts; out->event.pos.lsn = commit LSN, end_lsn = nextlsn */
    WC_DECODED_EVENT,   /* "I" on the outbox: out->event is filled */
    WC_DECODED_COMMIT,  /* "C": the transaction is complete */
    WC_DECODED_MESSAGE, /* "M" with the configured prefix: prefix and content are set */
    WC_DECODED_IGNORED, /* another table, action or prefix */
};

struct wc_decoded {
    int kind;
    struct wc_event event;
    const char *prefix;  /* WC_DECODED_MESSAGE only */
    const char *content; /* WC_DECODED_MESSAGE only */
    int transactional;   /* WC_DECODED_MESSAGE only */
};

/*
 * New decoder for table schema.table whose columns are named colnames[WC_COL_*] (borrowed, must
 * outlive the decoder; NULL = defaults; "" = the outbox has no such column, its value is always null).
 * msg_prefix: the logical-message prefix to report (others are ignored); may be NULL.
 */
struct wc_decoder *wc_decoder_new(const char *schema, const char *table, const char *const *colnames,
                                  const char *msg_prefix);
void wc_decoder_free(struct wc_decoder *d);

/*
 * Decode one wal2json message (not NUL-terminated necessarily). wal_lsn: the dataStart of the XLogData
 * that carried it, used in error messages when the message itself has no lsn. Returns 0 and fills out
 * (whose pointers stay valid until the next call), or -1 with err (WC_ERR_PROTOCOL: malformed message,
 * the message names the LSN). An outbox row that cannot be routed (a configured column missing from it,
 * a null event type) is no error: it is an event whose poison member says why.
 * Events outside a B..C pair are numbered as if in their own transaction.
 */
int wc_decode_message(struct wc_decoder *d, const char *msg, size_t len, wc_lsn wal_lsn,
                      struct wc_decoded *out, struct wc_err *err);

/* Tests: on = 1 (default) lets inserts take the fast scanner, 0 forces jansson's full parse. */
void wc_decoder_set_fast(struct wc_decoder *d, int on);

#endif
