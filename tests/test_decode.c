/* test_decode.c - the wal2json v2 decoder, fed from strings (no server). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "walcast/buf.h"
#include "walcast/decode.h"

static struct wc_decoder *dec;
static struct wc_decoded out;
static struct wc_err err;

static void setup(void)
{
    dec = wc_decoder_new("public", "domain_events", NULL, "walcast");
    memset(&err, 0, sizeof(err));
}

static void teardown(void)
{
    wc_decoder_free(dec);
}

TestSuite(decode, .init = setup, .fini = teardown);

static int feed(const char *msg)
{
    return wc_decode_message(dec, msg, strlen(msg), 0x1000, &out, &err);
}

#define BEGIN_MSG                                                                                            \
    "{\"action\":\"B\",\"timestamp\":\"2026-11-27 "                                                          \
    "10:39:53.655523+00\",\"lsn\":\"0/152AC20\",\"nextlsn\":\"0/152AC50\"}"
#define COMMIT_MSG                                                                                           \
    "{\"action\":\"C\",\"timestamp\":\"2026-11-27 "                                                          \
    "10:39:53.655523+00\",\"lsn\":\"0/152AC20\",\"nextlsn\":\"0/152AC50\"}"

/* An outbox insert with the given payload (a JSON string literal, quotes included) and event type. */
static char *insert_msg(const char *table, const char *type, const char *payload_literal)
{
    char *s;
    if (asprintf(
            &s,
            "{\"action\":\"I\",\"lsn\":\"0/152A8F0\",\"schema\":\"public\",\"table\":\"%s\",\"columns\":["
            "{\"name\":\"event_id\",\"type\":\"bigint\",\"value\":9223372036854775807},"
            "{\"name\":\"aggregate_type\",\"type\":\"text\",\"value\":\"order\"},"
            "{\"name\":\"aggregate_id\",\"type\":\"text\",\"value\":\"42\"},"
            "{\"name\":\"event_type\",\"type\":\"text\",\"value\":\"%s\"},"
            "{\"name\":\"payload\",\"type\":\"jsonb\",\"value\":%s},"
            "{\"name\":\"occurred_at\",\"type\":\"timestamp with time zone\",\"value\":\"2026-11-27 "
            "10:39:53.654629+00\"}]}",
            table, type, payload_literal) < 0)
        abort();
    return s;
}

Test(decode, transaction_framing_and_positions)
{
    cr_assert_eq(feed(BEGIN_MSG), 0, "%s", err.msg);
    cr_assert_eq(out.kind, WC_DECODED_BEGIN);
    cr_assert_eq(out.event.pos.lsn, 0x152AC20u, "B carries the commit LSN");
    cr_assert_eq(out.event.end_lsn, 0x152AC50u);
    for (int i = 0; i < 3; i++) {
        char *m = insert_msg("domain_events", "OrderPlaced", "\"{}\"");
        cr_assert_eq(feed(m), 0, "%s", err.msg);
        free(m);
        cr_assert_eq(out.kind, WC_DECODED_EVENT);
        cr_assert_eq(out.event.pos.lsn, 0x152AC20u, "events carry the commit LSN, not their change LSN");
        cr_assert_eq(out.event.pos.index, i);
        cr_assert_eq(out.event.end_lsn, 0x152AC50u);
        cr_assert_str_eq(out.event.commit_time, "2026-11-27T10:39:53.655523Z");
    }
    cr_assert_eq(feed(COMMIT_MSG), 0);
    cr_assert_eq(out.kind, WC_DECODED_COMMIT);
    cr_assert_eq(out.event.end_lsn, 0x152AC50u);
    cr_assert_eq(out.event.pos.index, 2, "commit reports the last index");
}

Test(decode, columns_by_name)
{
    char *m = insert_msg("domain_events", "OrderShipped", "\"{\\\"order_id\\\": 7}\"");
    cr_assert_eq(feed(BEGIN_MSG), 0);
    cr_assert_eq(feed(m), 0, "%s", err.msg);
    free(m);
    struct wc_event *ev = &out.event;
    cr_assert_eq(ev->col[WC_COL_EVENT_ID].kind, WC_VAL_NUMBER);
    cr_assert_str_eq(ev->col[WC_COL_EVENT_ID].text, "9223372036854775807", "int8 keeps every digit");
    cr_assert_str_eq(ev->col[WC_COL_AGGREGATE_TYPE].text, "order");
    cr_assert_str_eq(ev->col[WC_COL_AGGREGATE_ID].text, "42");
    cr_assert_str_eq(ev->col[WC_COL_EVENT_TYPE].text, "OrderShipped");
    cr_assert_str_eq(ev->col[WC_COL_OCCURRED_AT].text, "2026-11-27T10:39:53.654629Z");
    json_t *p = wc_event_payload(ev, &err);
    cr_assert_not_null(p, "%s", err.msg);
    cr_assert_eq(json_integer_value(json_object_get(p, "order_id")), 7);
}

Test(decode, renamed_columns)
{
    const char *names[WC_COL_COUNT] = {"id", "agg_type", "agg_id", "type", "body", "at"};
    struct wc_decoder *d2 = wc_decoder_new("app", "outbox", names, NULL);
    const char *m = "{\"action\":\"I\",\"lsn\":\"0/1\",\"schema\":\"app\",\"table\":\"outbox\",\"columns\":["
                    "{\"name\":\"id\",\"type\":\"uuid\",\"value\":\"3f1c\"},{\"name\":\"type\",\"type\":"
                    "\"text\",\"value\":\"T\"},"
                    "{\"name\":\"body\",\"type\":\"json\",\"value\":\"[1,2]\"},{\"name\":\"extra\",\"type\":"
                    "\"int\",\"value\":5}]}";
    cr_assert_eq(wc_decode_message(d2, m, strlen(m), 0, &out, &err), 0, "%s", err.msg);
    cr_assert_eq(out.kind, WC_DECODED_EVENT);
    cr_assert_str_eq(out.event.col[WC_COL_EVENT_ID].text, "3f1c");
    cr_assert_eq(out.event.col[WC_COL_EVENT_ID].kind, WC_VAL_STRING);
    cr_assert_str_eq(out.event.col[WC_COL_EVENT_TYPE].text, "T");
    cr_assert_eq(out.event.col[WC_COL_AGGREGATE_ID].kind, WC_VAL_NULL, "absent columns are null");
    wc_decoder_free(d2);
}

Test(decode, unicode_and_escapes)
{
    /* payload {"s":"hé\"\n\u0001 ☃ 😀"} as jsonb text inside a JSON string */
    char *m =
        insert_msg("domain_events", "T",
                   "\"{\\\"s\\\": \\\"h\\u00e9\\\\\\\"\\\\n\\\\u0001 \xe2\x98\x83 \xf0\x9f\x98\x80\\\"}\"");
    cr_assert_eq(feed(m), 0, "%s", err.msg);
    free(m);
    json_t *p = wc_event_payload(&out.event, &err);
    cr_assert_not_null(p, "%s", err.msg);
    cr_assert_str_eq(json_string_value(json_object_get(p, "s")),
                     "h\xc3\xa9\"\n\x01 \xe2\x98\x83 \xf0\x9f\x98\x80");
}

Test(decode, nulls_and_numbers)
{
    char *m = insert_msg(
        "domain_events", "T",
        "\"{\\\"n\\\": null, \\\"big\\\": 12345678901234567, \\\"amt\\\": 19.99, \\\"neg\\\": -1e3}\"");
    cr_assert_eq(feed(m), 0, "%s", err.msg);
    free(m);
    json_t *p = wc_event_payload(&out.event, &err);
    cr_assert(json_is_null(json_object_get(p, "n")));
    cr_assert_eq(json_integer_value(json_object_get(p, "big")), 12345678901234567LL);
    cr_assert_float_eq(json_real_value(json_object_get(p, "amt")), 19.99, 1e-9);
    cr_assert(strstr(out.event.col[WC_COL_PAYLOAD].text, "19.99") != NULL,
              "the raw payload text is kept verbatim");

    const char *nullpayload =
        "{\"action\":\"I\",\"lsn\":\"0/1\",\"schema\":\"public\",\"table\":\"domain_events\",\"columns\":["
        "{\"name\":\"event_type\",\"type\":\"text\",\"value\":\"T\"},{\"name\":\"payload\",\"type\":"
        "\"jsonb\",\"value\":null}]}";
    cr_assert_eq(feed(nullpayload), 0);
    cr_assert_eq(out.event.col[WC_COL_PAYLOAD].kind, WC_VAL_NULL);
    cr_assert_null(wc_event_payload(&out.event, &err));
    cr_assert_eq(err.code, WC_ERR_DATA);
}

Test(decode, one_mib_payload)
{
    size_t n = 1 << 20;
    struct wc_buf payload = WC_BUF_INIT, lit = WC_BUF_INIT;
    wc_buf_puts(&payload, "{\"blob\": \"");
    for (size_t i = 0; i < n; i++)
        wc_buf_append(&payload, "abcdefghijklmnopqrstuvwxyz" + (i % 26), 1);
    wc_buf_puts(&payload, "\"}");
    wc_buf_json_string(&lit, payload.data, payload.len);
    char *m = insert_msg("domain_events", "Big", lit.data);
    cr_assert_eq(feed(m), 0, "%s", err.msg);
    json_t *p = wc_event_payload(&out.event, &err);
    cr_assert_eq(json_string_length(json_object_get(p, "blob")), n);
    cr_assert_eq(out.event.size, strlen(m));
    free(m);
    wc_buf_free(&payload);
    wc_buf_free(&lit);
}

Test(decode, malformed_json_names_the_lsn)
{
    const char *bad[] = {
        "{\"action\":\"I\",", "[1,2]", "{\"no_action\":1}", "{\"action\":\"B\",\"lsn\":\"zz\"}",
        "{\"action\":\"I\",\"lsn\":\"0/5\",\"schema\":\"public\",\"table\":\"domain_events\",\"columns\":7}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        cr_assert_eq(wc_decode_message(dec, bad[i], strlen(bad[i]), 0x16B3748, &out, &err), -1, "%s", bad[i]);
        cr_assert_eq(err.code, WC_ERR_PROTOCOL);
        cr_assert(strstr(err.msg, "malformed wal2json message at 0/") != NULL, "message: %s", err.msg);
    }
    cr_assert(strstr(err.msg, "0/5") != NULL, "an insert's own lsn is named: %s", err.msg);
    cr_assert_eq(feed(COMMIT_MSG), -1, "commit without begin is malformed");
}

Test(decode, other_table_and_actions_are_ignored)
{
    char *m = insert_msg("other_table", "T", "\"{}\"");
    cr_assert_eq(feed(m), 0);
    cr_assert_eq(out.kind, WC_DECODED_IGNORED);
    free(m);
    cr_assert_eq(feed("{\"action\":\"U\",\"lsn\":\"0/1\",\"schema\":\"public\",\"table\":\"domain_events\"}"),
                 0);
    cr_assert_eq(out.kind, WC_DECODED_IGNORED);
    cr_assert_eq(feed("{\"action\":\"D\",\"lsn\":\"0/1\",\"schema\":\"public\",\"table\":\"domain_events\"}"),
                 0);
    cr_assert_eq(out.kind, WC_DECODED_IGNORED);
}

Test(decode, logical_messages_filtered_by_prefix)
{
    cr_assert_eq(feed("{\"action\":\"M\",\"lsn\":\"0/"
                      "9\",\"transactional\":true,\"prefix\":\"walcast\",\"content\":\"hb 1\"}"),
                 0);
    cr_assert_eq(out.kind, WC_DECODED_MESSAGE);
    cr_assert_str_eq(out.content, "hb 1");
    cr_assert(out.transactional);
    cr_assert_eq(feed("{\"action\":\"M\",\"lsn\":\"0/"
                      "9\",\"transactional\":false,\"prefix\":\"other\",\"content\":\"x\"}"),
                 0);
    cr_assert_eq(out.kind, WC_DECODED_IGNORED);
}

/* A row that cannot be routed is not an error of the stream: it is an event marked poison, with why. */
Test(decode, poison_rows_are_events_with_a_reason)
{
    const char *m =
        "{\"action\":\"I\",\"lsn\":\"0/AB\",\"schema\":\"public\",\"table\":\"domain_events\",\"columns\":["
        "{\"name\":\"kind\",\"type\":\"text\",\"value\":\"T\"}]}";
    cr_assert_eq(feed(m), 0, "%s", err.msg);
    cr_assert_eq(out.kind, WC_DECODED_EVENT);
    cr_assert_eq(out.event.pos.lsn, 0xAB, "the poison row keeps its position");
    cr_assert_not_null(out.event.poison);
    cr_assert(strstr(out.event.poison, "no column \"event_id\"") &&
                  strstr(out.event.poison, "renamed or dropped"),
              "%s", out.event.poison);

    char *ok = insert_msg("domain_events", "OrderPlaced", "\"{}\"");
    cr_assert_eq(feed(ok), 0, "%s", err.msg);
    cr_assert_null(out.event.poison, "every column there, an event type: a good row");
    free(ok);

    /* Null event type (the fast scanner hands it to the full parse, which says why). */
    const char *nt =
        "{\"action\":\"I\",\"lsn\":\"0/AD\",\"schema\":\"public\",\"table\":\"domain_events\",\"columns\":["
        "{\"name\":\"event_id\",\"type\":\"bigint\",\"value\":1},"
        "{\"name\":\"aggregate_type\",\"type\":\"text\",\"value\":\"order\"},"
        "{\"name\":\"aggregate_id\",\"type\":\"text\",\"value\":\"42\"},"
        "{\"name\":\"event_type\",\"type\":\"text\",\"value\":null},"
        "{\"name\":\"payload\",\"type\":\"jsonb\",\"value\":\"{}\"},"
        "{\"name\":\"occurred_at\",\"type\":\"timestamp with time zone\",\"value\":null}]}";
    cr_assert_eq(feed(nt), 0, "%s", err.msg);
    cr_assert_not_null(out.event.poison, "%s", nt);
    cr_assert(strstr(out.event.poison, "event type (column \"event_type\") is null"), "%s", out.event.poison);

    /* A column the configuration says the outbox does not have ("") is never missing. */
    const char *cols[WC_COL_COUNT] = {"", "", "", "kind", "payload", ""};
    struct wc_decoder *d2 = wc_decoder_new("public", "domain_events", cols, NULL);
    const char *two =
        "{\"action\":\"I\",\"lsn\":\"0/AC\",\"schema\":\"public\",\"table\":\"domain_events\",\"columns\":["
        "{\"name\":\"kind\",\"type\":\"text\",\"value\":\"T\"},{\"name\":\"payload\",\"type\":\"jsonb\","
        "\"value\":\"{}\"}]}";
    cr_assert_eq(wc_decode_message(d2, two, strlen(two), 0, &out, &err), 0, "%s", err.msg);
    cr_assert_null(out.event.poison);
    cr_assert_str_eq(out.event.col[WC_COL_EVENT_TYPE].text, "T");
    cr_assert_eq(out.event.col[WC_COL_OCCURRED_AT].kind, WC_VAL_NULL);
    wc_decoder_free(d2);
}

/* Each tests/fixtures/decode/NAME.jsonl decoded by `walcast tail --from-file` equals NAME.expected. */
Test(decode, fixtures_through_tail_from_file)
{
    const char *names[] = {"capture_v2", "mixed"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char *cmd, *got, *want;
        if (asprintf(&cmd, "%s tail --from-file %s/tests/fixtures/decode/%s.jsonl", wct_walcast(),
                     wct_source_dir(), names[i]) < 0)
            abort();
        cr_assert_eq(wct_run(cmd, &got), 0, "%s", cmd);
        free(cmd);
        if (asprintf(&cmd, "cat %s/tests/fixtures/decode/%s.expected", wct_source_dir(), names[i]) < 0)
            abort();
        cr_assert_eq(wct_run(cmd, &want), 0);
        free(cmd);
        cr_assert_str_eq(got, want, "fixture %s", names[i]);
        free(got);
        free(want);
    }
}

/* Decode every line with the fast insert scanner and with jansson's full parse: same events. */
static void compare_paths(const char *const *lines, size_t n)
{
    struct wc_decoder *fast = wc_decoder_new("public", "domain_events", NULL, "walcast");
    struct wc_decoder *full = wc_decoder_new("public", "domain_events", NULL, "walcast");
    wc_decoder_set_fast(full, 0);
    for (size_t i = 0; i < n; i++) {
        struct wc_decoded a, b;
        struct wc_err ea = {0}, eb = {0};
        int ra = wc_decode_message(fast, lines[i], strlen(lines[i]), 0x99, &a, &ea);
        int rb = wc_decode_message(full, lines[i], strlen(lines[i]), 0x99, &b, &eb);
        cr_assert_eq(ra, rb, "line %zu: %s / %s", i, ea.msg, eb.msg);
        if (ra < 0) {
            cr_assert_str_eq(ea.msg, eb.msg);
            continue;
        }
        cr_assert_eq(a.kind, b.kind, "line %zu", i);
        if (a.kind != WC_DECODED_EVENT)
            continue;
        cr_assert_eq(a.event.pos.lsn, b.event.pos.lsn);
        cr_assert_eq(a.event.pos.index, b.event.pos.index);
        cr_assert_eq(a.event.end_lsn, b.event.end_lsn);
        cr_assert_str_eq(a.event.commit_time, b.event.commit_time);
        cr_assert_eq(a.event.poison == NULL, b.event.poison == NULL, "line %zu: poison", i);
        if (a.event.poison)
            cr_assert_str_eq(a.event.poison, b.event.poison);
        for (int k = 0; k < WC_COL_COUNT; k++) {
            cr_assert_eq(a.event.col[k].kind, b.event.col[k].kind, "line %zu column %d", i, k);
            if (a.event.col[k].kind == WC_VAL_NULL)
                continue;
            cr_assert_eq(a.event.col[k].len, b.event.col[k].len, "line %zu column %d", i, k);
            cr_assert(memcmp(a.event.col[k].text, b.event.col[k].text, a.event.col[k].len) == 0,
                      "line %zu column %d: \"%s\" vs \"%s\"", i, k, a.event.col[k].text, b.event.col[k].text);
        }
    }
    wc_decoder_free(fast);
    wc_decoder_free(full);
}

Test(decode, fast_insert_path_agrees_with_full_parse)
{
    const char *fixtures[] = {"capture_v2", "mixed"};
    for (size_t f = 0; f < 2; f++) {
        char *path, *text;
        if (asprintf(&path, "cat %s/tests/fixtures/decode/%s.jsonl", wct_source_dir(), fixtures[f]) < 0)
            abort();
        cr_assert_eq(wct_run(path, &text), 0);
        const char *lines[64];
        size_t n = 0;
        for (char *save = NULL, *l = strtok_r(text, "\n", &save); l && n < 64;
             l = strtok_r(NULL, "\n", &save))
            lines[n++] = l;
        compare_paths(lines, n);
        free(text);
        free(path);
    }
    const char *edge[] = {
        BEGIN_MSG,
        /* escapes of every kind, a surrogate pair, a control character escape */
        "{\"action\":\"I\",\"lsn\":\"0/1\",\"schema\":\"public\",\"table\":\"domain_events\",\"columns\":["
        "{\"name\":\"event_type\",\"type\":\"text\",\"value\":\"a\\\"b\\\\c\\/"
        "d\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\\u0001\"},"
        "{\"name\":\"payload\",\"type\":\"jsonb\",\"value\":\"{\\\"k\\\": [1, 2.5, null]}\"},"
        "{\"name\":\"event_id\",\"type\":\"bigint\",\"value\":-42},"
        "{\"name\":\"aggregate_id\",\"type\":\"boolean\",\"value\":true},"
        "{\"name\":\"occurred_at\",\"type\":\"timestamp without time zone\",\"value\":\"2026-01-01 "
        "00:00:00\"}]}",
        /* no columns, other table, unknown key order: fall back or ignore alike */
        "{\"action\":\"I\",\"lsn\":\"0/2\",\"schema\":\"public\",\"table\":\"other\",\"columns\":[]}",
        "{\"action\":\"I\",\"table\":\"domain_events\",\"schema\":\"public\",\"columns\":[{\"name\":\"event_"
        "type\",\"type\":\"text\",\"value\":\"X\"}]}",
        /* malformed: a lone surrogate, a bad escape, a raw newline, truncated */
        "{\"action\":\"I\",\"lsn\":\"0/"
        "3\",\"schema\":\"public\",\"table\":\"domain_events\",\"columns\":[{\"name\":\"event_type\","
        "\"type\":\"text\",\"value\":\"\\ud800\"}]}",
        "{\"action\":\"I\",\"lsn\":\"0/"
        "3\",\"schema\":\"public\",\"table\":\"domain_events\",\"columns\":[{\"name\":\"event_type\","
        "\"type\":\"text\",\"value\":\"\\x\"}]}",
        "{\"action\":\"I\",\"lsn\":\"0/"
        "3\",\"schema\":\"public\",\"table\":\"domain_events\",\"columns\":[{\"name\":\"event_type\","
        "\"type\":\"text\",\"value\":\"a\nb\"}]}",
        "{\"action\":\"I\",\"lsn\":\"0/"
        "3\",\"schema\":\"public\",\"table\":\"domain_events\",\"columns\":[{\"name\":\"event_type\"",
        "{\"action\":\"I\",\"lsn\":\"0/"
        "4\",\"schema\":\"public\",\"table\":\"domain_events\",\"columns\":[{\"name\":\"kind\",\"type\":"
        "\"text\",\"value\":\"X\"}]}",
        COMMIT_MSG,
    };
    compare_paths(edge, sizeof(edge) / sizeof(edge[0]));
}
