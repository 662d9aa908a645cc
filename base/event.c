/* event.c - the outbox event: column names, the lazily parsed payload, events built from stored texts. */
#include <string.h>

#include "walcast/err.h"
#include "walcast/event.h"

const char *const wc_col_names[WC_COL_COUNT] = {
    "event_id", "aggregate_type", "aggregate_id", "event_type", "payload", "occurred_at",
};

json_t *wc_event_payload(struct wc_event *ev, struct wc_err *err)
{
    json_error_t jerr;
    const struct wc_val *v = &ev->col[WC_COL_PAYLOAD];

    if (ev->payload_json)
        return ev->payload_json;
    if (v->kind != WC_VAL_STRING) {
        wc_err_set(err, WC_ERR_DATA, "payload is null");
        return NULL;
    }
    ev->payload_json = json_loadb(v->text, v->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (ev->payload_owner && ev->payload_json) {
        json_decref(*ev->payload_owner);
        *ev->payload_owner = ev->payload_json;
    }
    if (ev->payload_json == NULL)
        wc_err_set(err, WC_ERR_DATA, "payload is not valid JSON: %s at position %d", jerr.text,
                   jerr.position);
    return ev->payload_json;
}

void wc_event_from_texts(struct wc_event *ev, struct wc_pos pos, const char *const *text, const size_t *len,
                         const int *kind)
{
    memset(ev, 0, sizeof(*ev));
    ev->pos = pos;
    ev->commit_time = "";
    for (int c = 0; c < WC_COL_COUNT; c++) {
        struct wc_val *v = &ev->col[c];
        if (text[c] == NULL) {
            *v = (struct wc_val){WC_VAL_NULL, NULL, 0};
            continue;
        }
        *v = (struct wc_val){kind ? kind[c] : WC_VAL_STRING, text[c], len ? len[c] : strlen(text[c])};
        ev->size += v->len;
    }
}
