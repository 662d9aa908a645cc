/* event.h - one decoded outbox row, as the decoder hands it to the engine and the sinks. */
#ifndef WALCAST_EVENT_H
#define WALCAST_EVENT_H

#include <jansson.h>
#include <stddef.h>

#include "walcast/jscan.h"
#include "walcast/lsn.h"

/* The outbox columns walcast knows, in the order of the configuration's column map. */
enum wc_col {
    WC_COL_EVENT_ID,
    WC_COL_AGGREGATE_TYPE,
    WC_COL_AGGREGATE_ID,
    WC_COL_EVENT_TYPE,
    WC_COL_PAYLOAD,
    WC_COL_OCCURRED_AT,
    WC_COL_COUNT
};

extern const char *const wc_col_names[WC_COL_COUNT]; /* "event_id", ... (the default column names) */

/* How a column value came in wal2json: a JSON string, a JSON number (text kept verbatim), or null. */
enum wc_val_kind { WC_VAL_NULL, WC_VAL_STRING, WC_VAL_NUMBER };

struct wc_val {
    int kind;
    const char *text; /* borrowed from the decoder; NUL-terminated; NULL when kind is WC_VAL_NULL */
    size_t len;
};

/*
 * All pointers are borrowed from the decoder and valid until its next wc_decode_message() call or
 * wc_decoder_free(). payload_json is parsed lazily by wc_event_payload(); templates read the payload
 * text in place instead (base/jscan.c) and only validate it once (payload_checked).
 */
struct wc_event {
    struct wc_pos pos;       /* (commit LSN, index in the transaction) */
    wc_lsn end_lsn;          /* end of the commit record (the transaction's nextlsn) */
    const char *commit_time; /* ISO 8601, UTC ("2026-11-27T10:39:53.655523Z") */
    struct wc_val col[WC_COL_COUNT];
    json_t *payload_json; /* NULL until parsed; the decoder frees it at its next message (events built by
                             hand: the caller json_decref()s it) */
    int payload_checked;  /* templates' check of the payload text: 0 not yet, 1 valid JSON, -1 not; an
                             event built by hand starts at 0 (memset) and goes back to 0 when its
                             payload changes */
    /* The members of an object payload, indexed when payload_checked becomes 1 (lookups skip the text). */
    struct wc_json_index payload_index;
    size_t size; /* bytes of the wal2json message, for batch accounting */
    /* Non-NULL for an outbox row no projection can be given (a null event type, a configured column
     * missing from the row): why, for its dead letter. Borrowed from the decoder like the texts. */
    const char *poison;
    /* Where the producer keeps payload_json to free it later (the decoder's slot, freed at its next
     * message); NULL for an event built by hand, whose caller json_decref()s payload_json. */
    json_t **payload_owner;
};

/*
 * The payload as a jansson value (borrowed), parsed on first use. Returns NULL and sets err
 * (WC_ERR_DATA) when the payload is null or not valid JSON.
 */
struct wc_err;
json_t *wc_event_payload(struct wc_event *ev, struct wc_err *err);

/*
 * Fill ev from stored column texts: the one way an event that does not come from the stream is made
 * (a queued record, a dead letter, a row of the outbox snapshot). text[c] is column c's value (borrowed,
 * NUL-terminated; NULL for null), len[c] its length (len NULL: strlen), kind[c] how it came
 * (WC_VAL_STRING or WC_VAL_NUMBER; kind NULL: all strings). Everything else in ev is zeroed; commit_time
 * is "" until the caller sets it.
 */
void wc_event_from_texts(struct wc_event *ev, struct wc_pos pos, const char *const *text, const size_t *len,
                         const int *kind);

#endif
