/* decode.c - wal2json format-version 2 messages to walcast events. No I/O: tested from strings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walcast/decode.h"

const char *const wc_col_names[WC_COL_COUNT] = {
    "event_id", "aggregate_type", "aggregate_id", "event_type", "payload", "occurred_at",
};

struct wc_decoder {
    char *schema;
    char *table;
    const char *colnames[WC_COL_COUNT];
    char *prefix;

    json_t *msg;          /* the message being handed out; freed at the next call */
    json_t *payload; /* the parsed payload of the event handed out last: it dies at the next call */

    /* The transaction in progress (between B and C). */
    int in_txn;
    wc_lsn commit_lsn;
    wc_lsn end_lsn;
    int64_t next_index;
    char commit_time[48];

    char numtext[WC_COL_COUNT][48]; /* numbers rendered as text */
    char occurred_iso[WC_COL_COUNT][48];
};

struct wc_decoder *wc_decoder_new(const char *schema, const char *table, const char *const *colnames,
                                  const char *msg_prefix)
{
    struct wc_decoder *d = calloc(1, sizeof(*d));

    if (d == NULL)
        return NULL;
    d->schema = strdup(schema ? schema : "public");
    d->table = strdup(table ? table : "domain_events");
    d->prefix = msg_prefix ? strdup(msg_prefix) : NULL;
    for (int i = 0; i < WC_COL_COUNT; i++)
        d->colnames[i] = colnames && colnames[i] ? colnames[i] : wc_col_names[i];
    if (d->schema == NULL || d->table == NULL || (msg_prefix && d->prefix == NULL)) {
        wc_decoder_free(d);
        return NULL;
    }
    return d;
}

void wc_decoder_free(struct wc_decoder *d)
{
    if (d == NULL)
        return;
    json_decref(d->msg);
    json_decref(d->payload);
    free(d->schema);
    free(d->table);
    free(d->prefix);
    free(d);
}

void wc_timestamp_iso(const char *pg, char *buf, size_t bufsize)
{
    size_t n = strlen(pg), o = 0;
    size_t tz = n;

    /* The zone starts at the last '+' or '-' after the time part ("...:53.65+00", "...-05:30"). */
    for (size_t i = n; i > 10; i--) {
        if (pg[i - 1] == '+' || pg[i - 1] == '-') {
            tz = i - 1;
            break;
        }
    }
    for (size_t i = 0; i < tz && o + 1 < bufsize; i++)
        buf[o++] = (i == 10 && pg[i] == ' ') ? 'T' : pg[i];
    const char *zone = pg + tz;
    const char *suffix;
    char zbuf[16];
    if (tz == n)
        suffix = "";
    else if (strcmp(zone, "+00") == 0 || strcmp(zone, "+00:00") == 0)
        suffix = "Z";
    else if (strlen(zone) == 3) {
        snprintf(zbuf, sizeof(zbuf), "%s:00", zone);
        suffix = zbuf;
    } else
        suffix = zone;
    for (size_t i = 0; suffix[i] && o + 1 < bufsize; i++)
        buf[o++] = suffix[i];
    if (bufsize)
        buf[o < bufsize ? o : bufsize - 1] = '\0';
}

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
    if (ev->owner && ev->payload_json) {
        json_decref(ev->owner->payload);
        ev->owner->payload = ev->payload_json;
    }
    if (ev->payload_json == NULL)
        wc_err_set(err, WC_ERR_DATA, "payload is not valid JSON: %s at position %d", jerr.text, jerr.position);
    return ev->payload_json;
}

/* Read an LSN member; 0 when absent, -1 when present but not an LSN. */
static int get_lsn(json_t *msg, const char *key, wc_lsn *out)
{
    json_t *v = json_object_get(msg, key);

    *out = 0;
    if (v == NULL)
        return 0;
    if (!json_is_string(v) || wc_lsn_parse(json_string_value(v), out) < 0)
        return -1;
    return 0;
}

static int protocol_error(struct wc_err *err, wc_lsn lsn, const char *what)
{
    wc_err_set(err, WC_ERR_PROTOCOL, "malformed wal2json message at %X/%X: %s", WC_LSN_ARGS(lsn), what);
    return -1;
}

/* Fill ev's columns from a wal2json v2 "columns" array. */
static int decode_columns(struct wc_decoder *d, json_t *cols, struct wc_event *ev, wc_lsn lsn,
                          struct wc_err *err)
{
    size_t i;
    json_t *c;

    for (int k = 0; k < WC_COL_COUNT; k++)
        ev->col[k] = (struct wc_val){WC_VAL_NULL, NULL, 0};
    if (!json_is_array(cols))
        return protocol_error(err, lsn, "\"columns\" is not an array");
    json_array_foreach(cols, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        json_t *val = json_object_get(c, "value");
        int k;

        if (name == NULL)
            return protocol_error(err, lsn, "a column has no \"name\"");
        for (k = 0; k < WC_COL_COUNT; k++)
            if (strcmp(name, d->colnames[k]) == 0)
                break;
        if (k == WC_COL_COUNT)
            continue;
        struct wc_val *out = &ev->col[k];
        if (val == NULL || json_is_null(val)) {
            *out = (struct wc_val){WC_VAL_NULL, NULL, 0};
        } else if (json_is_string(val)) {
            const char *type = json_string_value(json_object_get(c, "type"));
            if (k == WC_COL_OCCURRED_AT && type && strncmp(type, "timestamp", 9) == 0) {
                wc_timestamp_iso(json_string_value(val), d->occurred_iso[k], sizeof(d->occurred_iso[k]));
                *out = (struct wc_val){WC_VAL_STRING, d->occurred_iso[k], strlen(d->occurred_iso[k])};
            } else {
                *out = (struct wc_val){WC_VAL_STRING, json_string_value(val), json_string_length(val)};
            }
        } else if (json_is_integer(val)) {
            int n = snprintf(d->numtext[k], sizeof(d->numtext[k]), "%" JSON_INTEGER_FORMAT,
                             json_integer_value(val));
            *out = (struct wc_val){WC_VAL_NUMBER, d->numtext[k], (size_t)n};
        } else if (json_is_real(val)) {
            int n = snprintf(d->numtext[k], sizeof(d->numtext[k]), "%.17g", json_real_value(val));
            *out = (struct wc_val){WC_VAL_NUMBER, d->numtext[k], (size_t)n};
        } else if (json_is_boolean(val)) {
            *out = (struct wc_val){WC_VAL_STRING, json_is_true(val) ? "true" : "false",
                                   json_is_true(val) ? 4u : 5u};
        } else {
            return protocol_error(err, lsn, "a column value is an object or array");
        }
    }
    if (ev->col[WC_COL_EVENT_TYPE].kind != WC_VAL_STRING) {
        wc_err_set(err, WC_ERR_DATA,
                   "outbox row at %X/%X has no value in column \"%s\" (was the column renamed or dropped? "
                   "set source.outbox.columns.event_type)",
                   WC_LSN_ARGS(lsn), d->colnames[WC_COL_EVENT_TYPE]);
        return -1;
    }
    return 0;
}

/*
 * The value of "key":"..." in a short flat message without escapes, copied into buf; -1 when absent or
 * not of that simple form (the caller then parses the message in full).
 */
static int flat_string(const char *msg, size_t len, const char *key, char *buf, size_t size)
{
    size_t klen = strlen(key);
    const char *p = memmem(msg, len, key, klen), *end = msg + len;

    if (p == NULL)
        return -1;
    p += klen;
    const char *q = memchr(p, '"', (size_t)(end - p));
    if (q == NULL || (size_t)(q - p) >= size || memchr(p, '\\', (size_t)(q - p)) != NULL)
        return -1;
    memcpy(buf, p, (size_t)(q - p));
    buf[q - p] = '\0';
    return 0;
}

/*
 * Begin and commit messages are small and always of one shape:
 * {"action":"B","timestamp":"...","lsn":"0/1","nextlsn":"0/2"}. Decoding them without building a JSON
 * tree saves two full parses per transaction. Returns 1 when handled, 0 to fall back to the full parse.
 */
static int decode_frame(struct wc_decoder *d, const char *msg, size_t len, struct wc_decoded *out)
{
    static const char prefix[] = "{\"action\":\"";
    char lsn_text[32], next_text[32], ts[64];
    wc_lsn lsn, nextlsn;

    if (len > 400 || len < sizeof(prefix) + 1 || memcmp(msg, prefix, sizeof(prefix) - 1) != 0)
        return 0;
    char action = msg[sizeof(prefix) - 1];
    if ((action != 'B' && action != 'C') || msg[sizeof(prefix)] != '"' || msg[len - 1] != '}')
        return 0;
    if (flat_string(msg, len, "\"lsn\":\"", lsn_text, sizeof(lsn_text)) < 0 ||
        flat_string(msg, len, "\"nextlsn\":\"", next_text, sizeof(next_text)) < 0 ||
        wc_lsn_parse(lsn_text, &lsn) < 0 || wc_lsn_parse(next_text, &nextlsn) < 0)
        return 0;
    if (action == 'B') {
        if (flat_string(msg, len, "\"timestamp\":\"", ts, sizeof(ts)) < 0)
            ts[0] = '\0';
        d->in_txn = 1;
        d->commit_lsn = lsn;
        d->end_lsn = nextlsn;
        d->next_index = 0;
        if (ts[0])
            wc_timestamp_iso(ts, d->commit_time, sizeof(d->commit_time));
        else
            d->commit_time[0] = '\0';
        out->kind = WC_DECODED_BEGIN;
        out->event.pos = (struct wc_pos){lsn, -1};
        out->event.end_lsn = nextlsn;
    } else {
        if (!d->in_txn)
            return 0; /* the full parse reports it */
        d->in_txn = 0;
        out->kind = WC_DECODED_COMMIT;
        out->event.pos = (struct wc_pos){d->commit_lsn, d->next_index - 1};
        out->event.end_lsn = nextlsn ? nextlsn : d->end_lsn;
    }
    out->event.commit_time = d->commit_time;
    return 1;
}

int wc_decode_message(struct wc_decoder *d, const char *msg, size_t len, wc_lsn wal_lsn,
                      struct wc_decoded *out, struct wc_err *err)
{
    json_error_t jerr;
    const char *action;
    wc_lsn lsn, nextlsn;

    json_decref(d->msg);
    d->msg = NULL;
    json_decref(d->payload);
    d->payload = NULL;
    memset(out, 0, sizeof(*out));
    out->kind = WC_DECODED_IGNORED;
    if (decode_frame(d, msg, len, out))
        return 0;

    d->msg = json_loadb(msg, len, JSON_ALLOW_NUL, &jerr);
    if (d->msg == NULL) {
        char what[200];
        snprintf(what, sizeof(what), "%s at position %d", jerr.text, jerr.position);
        return protocol_error(err, wal_lsn, what);
    }
    if (!json_is_object(d->msg))
        return protocol_error(err, wal_lsn, "not a JSON object");
    action = json_string_value(json_object_get(d->msg, "action"));
    if (action == NULL || action[0] == '\0' || action[1] != '\0')
        return protocol_error(err, wal_lsn, "no \"action\"");
    if (get_lsn(d->msg, "lsn", &lsn) < 0 || get_lsn(d->msg, "nextlsn", &nextlsn) < 0)
        return protocol_error(err, wal_lsn, "\"lsn\" or \"nextlsn\" is not an LSN");
    if (lsn == 0)
        lsn = wal_lsn;

    switch (action[0]) {
    case 'B': {
        const char *ts = json_string_value(json_object_get(d->msg, "timestamp"));
        d->in_txn = 1;
        d->commit_lsn = lsn;
        d->end_lsn = nextlsn;
        d->next_index = 0;
        if (ts)
            wc_timestamp_iso(ts, d->commit_time, sizeof(d->commit_time));
        else
            d->commit_time[0] = '\0';
        out->kind = WC_DECODED_BEGIN;
        out->event.pos = (struct wc_pos){lsn, -1};
        out->event.end_lsn = nextlsn;
        out->event.commit_time = d->commit_time;
        return 0;
    }
    case 'C':
        if (!d->in_txn)
            return protocol_error(err, wal_lsn, "commit without begin");
        d->in_txn = 0;
        out->kind = WC_DECODED_COMMIT;
        out->event.pos = (struct wc_pos){d->commit_lsn, d->next_index - 1};
        out->event.end_lsn = nextlsn ? nextlsn : d->end_lsn;
        out->event.commit_time = d->commit_time;
        return 0;
    case 'M': {
        const char *prefix = json_string_value(json_object_get(d->msg, "prefix"));
        if (prefix == NULL)
            return protocol_error(err, wal_lsn, "a logical message has no \"prefix\"");
        if (d->prefix == NULL || strcmp(prefix, d->prefix) != 0)
            return 0;
        out->kind = WC_DECODED_MESSAGE;
        out->prefix = prefix;
        out->content = json_string_value(json_object_get(d->msg, "content"));
        out->transactional = json_is_true(json_object_get(d->msg, "transactional"));
        out->event.pos = (struct wc_pos){d->in_txn ? d->commit_lsn : lsn, -1};
        out->event.end_lsn = d->in_txn ? d->end_lsn : 0;
        return 0;
    }
    case 'I': {
        const char *schema = json_string_value(json_object_get(d->msg, "schema"));
        const char *table = json_string_value(json_object_get(d->msg, "table"));
        if (schema == NULL || table == NULL)
            return protocol_error(err, lsn, "an insert has no \"schema\" or \"table\"");
        if (strcmp(schema, d->schema) != 0 || strcmp(table, d->table) != 0)
            return 0;
        struct wc_event *ev = &out->event;
        if (decode_columns(d, json_object_get(d->msg, "columns"), ev, lsn, err) < 0)
            return -1;
        if (d->in_txn) {
            ev->pos = (struct wc_pos){d->commit_lsn, d->next_index++};
            ev->end_lsn = d->end_lsn;
            ev->commit_time = d->commit_time;
        } else {
            /* Without include-transaction each change stands alone at its own LSN. */
            const char *ts = json_string_value(json_object_get(d->msg, "timestamp"));
            if (ts)
                wc_timestamp_iso(ts, d->commit_time, sizeof(d->commit_time));
            else
                d->commit_time[0] = '\0';
            ev->pos = (struct wc_pos){lsn, 0};
            ev->end_lsn = 0;
            ev->commit_time = d->commit_time;
        }
        ev->size = len;
        ev->owner = d;
        out->kind = WC_DECODED_EVENT;
        return 0;
    }
    default:
        return 0;
    }
}
