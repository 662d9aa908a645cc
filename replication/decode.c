/* decode.c - wal2json format-version 2 messages to walcast events. No I/O: tested from strings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walcast/buf.h"
#include "walcast/clock.h"
#include "walcast/decode.h"
#include "walcast/jscan.h"

struct wc_decoder {
    char *schema;
    char *table;
    const char *colnames[WC_COL_COUNT];
    unsigned want; /* the columns with a name (bit per WC_COL_*): a row without one of them is poison */
    char *prefix;

    json_t *msg;     /* the message being handed out; freed at the next call */
    json_t *payload; /* the parsed payload of the event handed out last: it dies at the next call */

    /* The transaction in progress (between B and C). */
    int in_txn;
    wc_lsn commit_lsn;
    wc_lsn end_lsn;
    int64_t next_index;
    char commit_time[48];

    char numtext[WC_COL_COUNT][48]; /* numbers rendered as text */
    char poison[256];               /* why the row handed out last cannot be routed */
    char occurred_iso[WC_COL_COUNT][48];
    struct wc_buf scratch; /* column values of the fast path, unescaped and NUL-terminated */
    int no_fast;           /* tests: always take the full parse */
};

void wc_decoder_set_fast(struct wc_decoder *d, int on)
{
    d->no_fast = !on;
}

struct wc_decoder *wc_decoder_new(const char *schema, const char *table, const char *const *colnames,
                                  const char *msg_prefix)
{
    struct wc_decoder *d = calloc(1, sizeof(*d));

    if (d == NULL)
        return NULL;
    d->schema = strdup(schema ? schema : "public");
    d->table = strdup(table ? table : "domain_events");
    d->prefix = msg_prefix ? strdup(msg_prefix) : NULL;
    for (int i = 0; i < WC_COL_COUNT; i++) {
        d->colnames[i] = colnames && colnames[i] ? colnames[i] : wc_col_names[i];
        if (d->colnames[i][0] != '\0')
            d->want |= 1u << i;
    }
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
    wc_buf_free(&d->scratch);
    free(d->schema);
    free(d->table);
    free(d->prefix);
    free(d);
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

/*
 * A row that no projection can be given is not an error of the stream: it becomes a poison event
 * (ev->poison says why) that the engine sends to the dead-letter store like any event that cannot be
 * applied, and the stream goes on. A configured column missing from the row (renamed or dropped since)
 * and an event type that is null or not text make a row poison; a null or malformed payload does not
 * (a projection that does not read it applies it; one that does dead-letters it).
 */
static void check_poison(struct wc_decoder *d, struct wc_event *ev, unsigned seen)
{
    static const char *const keys[WC_COL_COUNT] = {"event_id",   "aggregate_type", "aggregate_id",
                                                   "event_type", "payload",        "occurred_at"};
    unsigned missing = d->want & ~seen;

    ev->poison = NULL;
    if (missing) {
        int k = __builtin_ctz(missing);
        snprintf(
            d->poison, sizeof(d->poison),
            "the outbox row has no column \"%.64s\" (source.outbox.columns.%s): was it renamed or dropped?",
            d->colnames[k], keys[k]);
        ev->poison = d->poison;
    } else if (ev->col[WC_COL_EVENT_TYPE].kind == WC_VAL_NULL) {
        snprintf(d->poison, sizeof(d->poison), "the event type (column \"%.64s\") is null",
                 d->colnames[WC_COL_EVENT_TYPE]);
        ev->poison = d->poison;
    } else if (ev->col[WC_COL_EVENT_TYPE].kind != WC_VAL_STRING) {
        snprintf(d->poison, sizeof(d->poison), "the event type (column \"%.64s\") is not text",
                 d->colnames[WC_COL_EVENT_TYPE]);
        ev->poison = d->poison;
    }
}

/* Fill ev's columns from a wal2json v2 "columns" array. */
static int decode_columns(struct wc_decoder *d, json_t *cols, struct wc_event *ev, wc_lsn lsn,
                          struct wc_err *err)
{
    size_t i;
    json_t *c;
    unsigned seen = 0;

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
        seen |= 1u << k;
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
    check_poison(d, ev, seen);
    return 0;
}

/* A transaction begins: B carries its commit LSN and end (nextlsn). ts may be NULL. */
static void begin_txn(struct wc_decoder *d, wc_lsn lsn, wc_lsn nextlsn, const char *ts,
                      struct wc_decoded *out)
{
    d->in_txn = 1;
    d->commit_lsn = lsn;
    d->end_lsn = nextlsn;
    d->next_index = 0;
    if (ts && *ts)
        wc_timestamp_iso(ts, d->commit_time, sizeof(d->commit_time));
    else
        d->commit_time[0] = '\0';
    out->kind = WC_DECODED_BEGIN;
    out->event.pos = (struct wc_pos){lsn, -1};
    out->event.end_lsn = nextlsn;
    out->event.commit_time = d->commit_time;
}

/* The transaction is complete; the caller checked that one was open. */
static void commit_txn(struct wc_decoder *d, wc_lsn nextlsn, struct wc_decoded *out)
{
    d->in_txn = 0;
    out->kind = WC_DECODED_COMMIT;
    out->event.pos = (struct wc_pos){d->commit_lsn, d->next_index - 1};
    out->event.end_lsn = nextlsn ? nextlsn : d->end_lsn;
    out->event.commit_time = d->commit_time;
}

/* Give a decoded outbox row its position: the next index in the open transaction, or, without
 * include-transaction, a transaction of its own at its change LSN. ts: the message's timestamp. */
static void place_event(struct wc_decoder *d, struct wc_decoded *out, wc_lsn lsn, const char *ts, size_t len)
{
    struct wc_event *ev = &out->event;

    if (d->in_txn) {
        ev->pos = (struct wc_pos){d->commit_lsn, d->next_index++};
        ev->end_lsn = d->end_lsn;
    } else {
        if (ts && *ts)
            wc_timestamp_iso(ts, d->commit_time, sizeof(d->commit_time));
        else
            d->commit_time[0] = '\0';
        ev->pos = (struct wc_pos){lsn, 0};
        ev->end_lsn = 0;
    }
    ev->commit_time = d->commit_time;
    ev->size = len;
    ev->payload_owner = &d->payload;
    out->kind = WC_DECODED_EVENT;
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
        begin_txn(d, lsn, nextlsn, ts, out);
    } else {
        if (!d->in_txn)
            return 0; /* the full parse reports it */
        commit_txn(d, nextlsn, out);
    }
    return 1;
}

/* ---- the insert fast path ----
 *
 * jansson builds a tree from every message, byte by byte; for the one message that carries each event,
 * that parse was most of walcast's CPU. wal2json writes inserts in one fixed shape:
 *   {"action":"I","timestamp":"..","lsn":"..","schema":"..","table":"..","columns":[{"name":"..",
 *    "type":"..","value":V},...]}
 * The scanner below reads exactly that shape, copying values into one scratch buffer (strings
 * unescaped, numbers as their text). Anything else it meets -- another key order it does not know, a
 * nested value, a malformed escape -- makes it give up, and the message takes the full jansson parse,
 * which also produces every error message. tests/test_decode.c checks both paths agree.
 */
struct scan {
    const char *p, *end;
};

static int scan_lit(struct scan *sc, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, lit, n) != 0)
        return -1;
    sc->p += n;
    return 0;
}

/* A JSON string at sc->p, unescaped onto b with a NUL; its offset in *off and length in *len. */
/* Bytes that end a run of plain string content: the quote, the backslash, control characters. */
static const unsigned char string_stop[256] = {
    [0 ... 0x1F] = 1,
    ['"'] = 1,
    ['\\'] = 1,
};

/* What a one-letter escape stands for (0: not one). */
static const char simple_escape[256] = {
    ['"'] = '"',  ['\\'] = '\\', ['/'] = '/',  ['b'] = '\b',
    ['f'] = '\f', ['n'] = '\n',  ['r'] = '\r', ['t'] = '\t',
};

static int scan_string(struct scan *sc, struct wc_buf *b, size_t *off, size_t *len)
{
    if (sc->p >= sc->end || *sc->p != '"')
        return -1;
    sc->p++;
    *off = b->len;
    for (;;) {
        const char *q = sc->p;
        while (q < sc->end && !string_stop[(unsigned char)*q])
            q++;
        wc_buf_append(b, sc->p, (size_t)(q - sc->p));
        sc->p = q;
        if (q >= sc->end || (unsigned char)*q < 0x20)
            return -1;
        if (*q == '"')
            break;
        if (sc->end - q < 2)
            return -1;
        char c = q[1];
        if (simple_escape[(unsigned char)c]) {
            /* The common case: wal2json escapes every quote of a json/jsonb value. */
            wc_buf_append(b, &simple_escape[(unsigned char)c], 1);
            sc->p = q + 2;
        } else if (c == 'u' && sc->end - q >= 6) {
            unsigned cp, lo;
            if (wc_json_hex4(q + 2, &cp) < 0)
                return -1;
            sc->p = q + 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (sc->end - sc->p < 6 || sc->p[0] != '\\' || sc->p[1] != 'u' ||
                    wc_json_hex4(sc->p + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                    return -1;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                sc->p += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return -1;
            }
            if (cp == 0)
                return -1; /* a NUL inside a value: let jansson decide */
            char u[4];
            wc_buf_append(b, u, wc_json_put_utf8(cp, u));
        } else {
            return -1;
        }
    }
    sc->p++;
    *len = b->len - *off;
    wc_buf_append(b, "", 1);
    return 0;
}

/* A JSON number's text (kept verbatim), or null/true/false. kind: WC_VAL_NUMBER, WC_VAL_NULL, or
 * WC_VAL_STRING for a boolean (rendered "true"/"false" as the full parse does). */
static int scan_scalar(struct scan *sc, struct wc_buf *b, int *kind, size_t *off, size_t *len)
{
    const char *q = sc->p;
    if (scan_lit(sc, "null") == 0) {
        *kind = WC_VAL_NULL;
        return 0;
    }
    if (scan_lit(sc, "true") == 0 || scan_lit(sc, "false") == 0) {
        *kind = WC_VAL_STRING;
        *off = b->len;
        *len = (size_t)(sc->p - q);
        wc_buf_append(b, q, *len);
        wc_buf_append(b, "", 1);
        return 0;
    }
    if (q < sc->end && *q == '-')
        q++;
    if (q >= sc->end || *q < '0' || *q > '9')
        return -1;
    while (q < sc->end &&
           ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E' || *q == '+' || *q == '-'))
        q++;
    *kind = WC_VAL_NUMBER;
    *off = b->len;
    *len = (size_t)(q - sc->p);
    /* Kept as text whatever its length: a numeric(45) column must not stop the stream (jansson refuses
     * integers beyond 64 bits). */
    wc_buf_append(b, sc->p, *len);
    wc_buf_append(b, "", 1);
    sc->p = q;
    return 0;
}

/* Returns 1 when the insert was decoded into out, 0 to take the full parse. */
static int decode_insert_fast(struct wc_decoder *d, const char *msg, size_t len, wc_lsn wal_lsn,
                              struct wc_decoded *out)
{
    struct scan sc = {msg, msg + len};
    struct wc_buf *b = &d->scratch;
    size_t off, l, schema_off = 0, table_off = 0, lsn_off = 0, ts_off = 0;
    size_t coff[WC_COL_COUNT];
    int ckind[WC_COL_COUNT], have_schema = 0, have_table = 0, have_lsn = 0, have_ts = 0;
    unsigned seen = 0;
    struct wc_event *ev = &out->event;

    if (d->no_fast || scan_lit(&sc, "{\"action\":\"I\"") < 0)
        return 0;
    wc_buf_reset(b);
    for (int k = 0; k < WC_COL_COUNT; k++)
        ckind[k] = WC_VAL_NULL;
    while (scan_lit(&sc, ",\"") == 0) {
        const char *key = sc.p;
        const char *q = memchr(sc.p, '"', (size_t)(sc.end - sc.p));
        if (q == NULL)
            return 0;
        size_t klen = (size_t)(q - key);
        sc.p = q + 1;
        if (scan_lit(&sc, ":") < 0)
            return 0;
        if (klen == 7 && memcmp(key, "columns", 7) == 0) {
            if (scan_lit(&sc, "[") < 0)
                return 0;
            if (scan_lit(&sc, "]") == 0)
                continue;
            do {
                size_t noff, nlen, toff, tlen, voff = 0, vlen = 0;
                int vkind;
                if (scan_lit(&sc, "{\"name\":") < 0 || scan_string(&sc, b, &noff, &nlen) < 0 ||
                    scan_lit(&sc, ",\"type\":") < 0 || scan_string(&sc, b, &toff, &tlen) < 0 ||
                    scan_lit(&sc, ",\"value\":") < 0)
                    return 0;
                if (sc.p < sc.end && *sc.p == '"') {
                    vkind = WC_VAL_STRING;
                    if (scan_string(&sc, b, &voff, &vlen) < 0)
                        return 0;
                } else if (scan_scalar(&sc, b, &vkind, &voff, &vlen) < 0) {
                    return 0;
                }
                if (scan_lit(&sc, "}") < 0)
                    return 0;
                for (int k = 0; k < WC_COL_COUNT; k++) {
                    if (strcmp(b->data + noff, d->colnames[k]) != 0)
                        continue;
                    seen |= 1u << k;
                    ckind[k] = vkind;
                    coff[k] = voff;
                    /* occurred_at: the timestamp types are rewritten to ISO 8601 below. */
                    if (k == WC_COL_OCCURRED_AT && vkind == WC_VAL_STRING &&
                        strncmp(b->data + toff, "timestamp", 9) == 0)
                        ckind[k] = -1;
                    break;
                }
            } while (scan_lit(&sc, ",") == 0);
            if (scan_lit(&sc, "]") < 0)
                return 0;
            continue;
        }
        if (sc.p < sc.end && *sc.p == '"') {
            if (scan_string(&sc, b, &off, &l) < 0)
                return 0;
        } else {
            int kind;
            if (scan_scalar(&sc, b, &kind, &off, &l) < 0)
                return 0;
            continue;
        }
        if (klen == 3 && memcmp(key, "lsn", 3) == 0)
            lsn_off = off, have_lsn = 1;
        else if (klen == 6 && memcmp(key, "schema", 6) == 0)
            schema_off = off, have_schema = 1;
        else if (klen == 5 && memcmp(key, "table", 5) == 0)
            table_off = off, have_table = 1;
        else if (klen == 9 && memcmp(key, "timestamp", 9) == 0)
            ts_off = off, have_ts = 1;
    }
    if (scan_lit(&sc, "}") < 0 || sc.p != sc.end || !have_schema || !have_table)
        return 0;
    /* Pointers only now: the scratch buffer may have moved while it grew. */
    const char *base = b->data;
    wc_lsn lsn = 0;
    if (have_lsn && wc_lsn_parse(base + lsn_off, &lsn) < 0)
        return 0;
    if (lsn == 0)
        lsn = wal_lsn;
    if (strcmp(base + schema_off, d->schema) != 0 || strcmp(base + table_off, d->table) != 0) {
        out->kind = WC_DECODED_IGNORED;
        return 1;
    }
    if (ckind[WC_COL_EVENT_TYPE] != WC_VAL_STRING || (d->want & ~seen) != 0)
        return 0; /* a poison row: the full parse words why */
    for (int k = 0; k < WC_COL_COUNT; k++) {
        struct wc_val *v = &ev->col[k];
        if (ckind[k] == WC_VAL_NULL) {
            *v = (struct wc_val){WC_VAL_NULL, NULL, 0};
        } else if (ckind[k] == -1) {
            wc_timestamp_iso(base + coff[k], d->occurred_iso[k], sizeof(d->occurred_iso[k]));
            *v = (struct wc_val){WC_VAL_STRING, d->occurred_iso[k], strlen(d->occurred_iso[k])};
        } else {
            *v = (struct wc_val){ckind[k], base + coff[k], strlen(base + coff[k])};
        }
    }
    place_event(d, out, lsn, have_ts ? base + ts_off : NULL, len);
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
    if (decode_frame(d, msg, len, out) || decode_insert_fast(d, msg, len, wal_lsn, out))
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
    case 'B':
        begin_txn(d, lsn, nextlsn, json_string_value(json_object_get(d->msg, "timestamp")), out);
        return 0;
    case 'C':
        if (!d->in_txn)
            return protocol_error(err, wal_lsn, "commit without begin");
        commit_txn(d, nextlsn, out);
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
        place_event(d, out, lsn, json_string_value(json_object_get(d->msg, "timestamp")), len);
        return 0;
    }
    default:
        return 0;
    }
}
