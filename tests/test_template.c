/* test_template.c - compiling and rendering templates against events. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "walcast/template.h"

/* An event with every column set and the given payload text (NULL for a null payload). */
static struct wc_event make_event(const char *payload)
{
    struct wc_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.pos.lsn = ((wc_lsn)0x1 << 32) | 0x2A3B4C;
    ev.pos.index = 3;
    ev.commit_time = "2026-11-27T10:39:53.655523Z";
    ev.col[WC_COL_EVENT_ID] = (struct wc_val){WC_VAL_STRING, "8f0e6b2c-1111-2222-3333-444455556666", 36};
    ev.col[WC_COL_AGGREGATE_TYPE] = (struct wc_val){WC_VAL_STRING, "Order", 5};
    ev.col[WC_COL_AGGREGATE_ID] = (struct wc_val){WC_VAL_NUMBER, "12345678901234567890", 20};
    ev.col[WC_COL_EVENT_TYPE] = (struct wc_val){WC_VAL_STRING, "OrderPlaced", 11};
    ev.col[WC_COL_OCCURRED_AT] = (struct wc_val){WC_VAL_STRING, "2026-11-27 10:39:53.655+00", 26};
    if (payload)
        ev.col[WC_COL_PAYLOAD] = (struct wc_val){WC_VAL_STRING, payload, strlen(payload)};
    return ev;
}

static const char *PAYLOAD =
    "{\"order_id\": 42, \"customer_id\": \"c-7\", \"total\": 19.99, \"ratio\": 0.1, \"half\": 1.5,"
    " \"whole\": 2.0, \"paid\": true, \"gift\": false, \"note\": null, \"placed_at\": "
    "\"2026-11-27T10:39:53.655523Z\","
    " \"local\": \"2026-11-27T12:39:53+02:00\", \"secs\": 1700000000, \"fsecs\": 1700000000.25,"
    " \"qty\": \" 12 \", \"name\": \"Zoë 名前 \\\"q\\\"\", \"mixed\": \"MiXeD Ünï\","
    " \"items\": [{\"sku\": \"A-1\", \"price\": 0.3}, {\"sku\": \"B-2\", \"tags\": [\"x\", \"y\"]}],"
    " \"address\": {\"city\": \"Köln\", \"zip\": \"50667\"}, \"prénom\": \"Élodie\"}";

/* Compile src (bare or not), render against ev; asserts the return code and returns the text (static). */
static const char *render_rc(const char *src, int bare, struct wc_event *ev, int want_rc, struct wc_err *err)
{
    static char result[4096];
    struct wc_err cerr = {0};
    struct wc_buf out = WC_BUF_INIT;
    struct wc_tmpl *t = wc_tmpl_compile(src, bare, &cerr);

    cr_assert_not_null(t, "compile %s: %s", src, cerr.msg);
    wc_buf_puts(&out, "<");
    int rc = wc_tmpl_render(t, ev, &out, err);
    cr_assert_eq(rc, want_rc, "render %s: rc %d (%s)", src, rc, err->msg);
    snprintf(result, sizeof(result), "%s", out.data + 1);
    cr_assert_eq(out.len, strlen(out.data), "len matches the text");
    wc_buf_free(&out);
    wc_tmpl_free(t);
    return result;
}

static const char *render(const char *src, int bare, struct wc_event *ev)
{
    struct wc_err err = {0};
    return render_rc(src, bare, ev, 0, &err);
}

static void done(struct wc_event *ev)
{
    json_decref(ev->payload_json);
    ev->payload_json = NULL;
}

Test(template, each_event_field)
{
    struct wc_event ev = make_event(PAYLOAD);

    cr_expect_str_eq(render("{event_id}", 0, &ev), "8f0e6b2c-1111-2222-3333-444455556666");
    cr_expect_str_eq(render("{aggregate_type}", 0, &ev), "Order");
    cr_expect_str_eq(render("{aggregate_id}", 0, &ev), "12345678901234567890"); /* no double on the way */
    cr_expect_str_eq(render("{event_type}", 0, &ev), "OrderPlaced");
    cr_expect_str_eq(render("{occurred_at}", 0, &ev), "2026-11-27 10:39:53.655+00");
    cr_expect_str_eq(render("{lsn}", 0, &ev), "1/2A3B4C");
    cr_expect_str_eq(render("{commit_time}", 0, &ev), "2026-11-27T10:39:53.655523Z");
    cr_expect_str_eq(render("aggregate_id", 1, &ev), "12345678901234567890");
    cr_expect_str_eq(render("lsn", 1, &ev), "1/2A3B4C");
    done(&ev);
}

Test(template, literal_text_and_braces)
{
    struct wc_event ev = make_event(PAYLOAD);

    cr_expect_str_eq(render("order:{payload.order_id}:{aggregate_type}", 0, &ev), "order:42:Order");
    cr_expect_str_eq(render("plain text", 0, &ev), "plain text");
    cr_expect_str_eq(render("", 0, &ev), "");
    cr_expect_str_eq(render("{{literal}} {payload.order_id}", 0, &ev), "{literal} 42");
    cr_expect_str_eq(render("{ payload.order_id | number }", 0, &ev), "42");
    done(&ev);
}

Test(template, payload_values)
{
    struct wc_event ev = make_event(PAYLOAD);

    cr_expect_str_eq(render("{payload.order_id}", 0, &ev), "42");
    cr_expect_str_eq(render("{payload.customer_id}", 0, &ev), "c-7");
    cr_expect_str_eq(render("{payload.total}", 0, &ev), "19.99");
    cr_expect_str_eq(render("{payload.ratio}", 0, &ev), "0.1");
    cr_expect_str_eq(render("{payload.half}", 0, &ev), "1.5");
    cr_expect_str_eq(render("{payload.whole}", 0, &ev), "2.0");
    cr_expect_str_eq(render("{payload.paid}/{payload.gift}", 0, &ev), "true/false");
    cr_expect_str_eq(render("{payload.address}", 0, &ev), "{\"city\":\"Köln\",\"zip\":\"50667\"}");
    cr_expect_str_eq(render("{payload.items[1].tags}", 0, &ev), "[\"x\",\"y\"]");
    cr_expect_str_eq(render("{payload.items[0]}", 0, &ev), "{\"sku\":\"A-1\",\"price\":0.3}");
    done(&ev);
}

Test(template, nested_paths_and_indexes)
{
    struct wc_event ev = make_event(PAYLOAD);

    cr_expect_str_eq(render("payload.address.city", 1, &ev), "Köln");
    cr_expect_str_eq(render("payload.items[0].sku", 1, &ev), "A-1");
    cr_expect_str_eq(render("payload.items[1].sku", 1, &ev), "B-2");
    cr_expect_str_eq(render("payload.items[1].tags[1]", 1, &ev), "y");
    cr_expect_str_eq(render("{payload.items[0].price}", 0, &ev), "0.3");
    done(&ev);
}

Test(template, unicode)
{
    struct wc_event ev = make_event(PAYLOAD);

    cr_expect_str_eq(render("{payload.name}", 0, &ev), "Zoë 名前 \"q\"");
    cr_expect_str_eq(render("{payload.prénom}", 0, &ev), "Élodie");
    cr_expect_str_eq(render("{payload.name|json}", 0, &ev), "\"Zoë 名前 \\\"q\\\"\"");
    done(&ev);
}

Test(template, whole_payload)
{
    struct wc_event ev = make_event("{\"big\": 123456789012345678901234567890.5, \"a\": [1]}");
    struct wc_err err = {0};
    struct wc_tmpl *t = wc_tmpl_compile("payload", 1, &err);

    cr_assert_not_null(t);
    cr_expect(wc_tmpl_is_whole_payload(t));
    wc_tmpl_free(t);
    t = wc_tmpl_compile("payload.a", 1, &err);
    cr_expect(!wc_tmpl_is_whole_payload(t));
    wc_tmpl_free(t);
    t = wc_tmpl_compile("payload|json", 1, &err);
    cr_expect(!wc_tmpl_is_whole_payload(t));
    wc_tmpl_free(t);

    /* Verbatim: the big numeric keeps every digit. */
    cr_expect_str_eq(render("payload", 1, &ev), "{\"big\": 123456789012345678901234567890.5, \"a\": [1]}");
    cr_expect_str_eq(render("{payload|json}", 0, &ev),
                     "{\"big\": 123456789012345678901234567890.5, \"a\": [1]}");
    done(&ev);
}

Test(template, filter_epoch)
{
    struct wc_event ev = make_event(PAYLOAD);

    cr_expect_str_eq(render("{payload.placed_at|epoch_ms}", 0, &ev), "1795775993655");
    cr_expect_str_eq(render("{payload.placed_at|epoch_s}", 0, &ev), "1795775993");
    cr_expect_str_eq(render("{payload.local|epoch_s}", 0, &ev), "1795775993"); /* +02:00 honoured */
    cr_expect_str_eq(render("{occurred_at|epoch_ms}", 0, &ev), "1795775993655");
    cr_expect_str_eq(render("{commit_time|epoch_ms}", 0, &ev), "1795775993655");
    cr_expect_str_eq(render("{payload.secs|epoch_ms}", 0, &ev), "1700000000000");
    cr_expect_str_eq(render("{payload.fsecs|epoch_ms}", 0, &ev), "1700000000250");
    cr_expect_str_eq(render("{payload.fsecs|epoch_s}", 0, &ev), "1700000000");
    done(&ev);

    static const struct {
        const char *in;
        const char *ms;
    } cases[] = {
        {"1970-01-01T00:00:00Z", "0"},
        {"1970-01-01", "0"},
        {"1970-01-01 00:00:01.5", "1500"},
        {"1970-01-01T01:00:00+0100", "0"},
        {"1970-01-01T00:00:00-05", "18000000"},
        {"1969-12-31T23:59:59.999Z", "-1"},
        {"2000-02-29T12:00:00.123456789Z", "951825600123"},
        {"\"1700000000\"", NULL}, /* marker: skipped below */
    };
    for (size_t i = 0; cases[i].ms; i++) {
        char payload[200];
        snprintf(payload, sizeof(payload), "{\"t\": \"%s\"}", cases[i].in);
        ev = make_event(payload);
        cr_expect_str_eq(render("payload.t|epoch_ms", 1, &ev), cases[i].ms, "%s", cases[i].in);
        done(&ev);
    }
    ev = make_event("{\"t\": \"1969-12-31T23:59:59.5Z\"}");
    cr_expect_str_eq(render("payload.t|epoch_s", 1, &ev), "-1");
    done(&ev);
}

Test(template, filter_epoch_rejects_garbage)
{
    struct wc_event ev = make_event("{\"t\": \"yesterday\", \"b\": true, \"m\": \"2026-13-01\"}");
    struct wc_err err = {0};

    render_rc("payload.t|epoch_ms", 1, &ev, -1, &err);
    cr_expect_eq(err.code, WC_ERR_DATA);
    cr_expect_str_eq(err.msg, "payload field \"t\" is not a timestamp: \"yesterday\"");
    render_rc("payload.b|epoch_s", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"b\" is not a timestamp");
    render_rc("payload.m|epoch_s", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"m\" is not a timestamp: \"2026-13-01\"");
    done(&ev);
}

Test(template, filter_number)
{
    struct wc_event ev = make_event(PAYLOAD);
    struct wc_err err = {0};

    cr_expect_str_eq(render("payload.order_id|number", 1, &ev), "42");
    cr_expect_str_eq(render("payload.total|number", 1, &ev), "19.99");
    cr_expect_str_eq(render("payload.qty|number", 1, &ev), "12");
    cr_expect_str_eq(render("aggregate_id|number", 1, &ev), "12345678901234567890");
    render_rc("payload.customer_id|number", 1, &ev, -1, &err);
    cr_expect_eq(err.code, WC_ERR_DATA);
    cr_expect_str_eq(err.msg, "payload field \"customer_id\" is not a number: \"c-7\"");
    render_rc("payload.paid|number", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"paid\" is not a number");
    render_rc("event_type|number", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "field \"event_type\" is not a number: \"OrderPlaced\"");
    done(&ev);
}

Test(template, filter_json)
{
    struct wc_event ev = make_event(PAYLOAD);

    cr_expect_str_eq(render("payload.customer_id|json", 1, &ev), "\"c-7\"");
    cr_expect_str_eq(render("payload.order_id|json", 1, &ev), "42");
    cr_expect_str_eq(render("payload.total|json", 1, &ev), "19.99");
    cr_expect_str_eq(render("payload.paid|json", 1, &ev), "true");
    cr_expect_str_eq(render("payload.note|json", 1, &ev), "null");
    cr_expect_str_eq(render("payload.items[1]|json", 1, &ev), "{\"sku\":\"B-2\",\"tags\":[\"x\",\"y\"]}");
    cr_expect_str_eq(render("event_type|json", 1, &ev), "\"OrderPlaced\"");
    cr_expect_str_eq(render("aggregate_id|json", 1, &ev), "12345678901234567890");
    cr_expect_str_eq(render("x={payload.customer_id|upper|json}", 0, &ev), "x=\"C-7\"");
    cr_expect_str_eq(render("payload.placed_at|epoch_s|json", 1, &ev), "1795775993");
    /* A value "number" accepted is a JSON number, whatever filters rewrote its text before. */
    cr_expect_str_eq(render("payload.qty|number|json", 1, &ev), "12");
    cr_expect_str_eq(render("payload.qty|lower|number|json", 1, &ev), "12");
    cr_expect_str_eq(render("payload.total|upper|number|json", 1, &ev), "19.99");
    done(&ev);
}

Test(template, filter_length)
{
    struct wc_event ev = make_event(PAYLOAD);
    struct wc_err err = {0};

    cr_expect_str_eq(render("payload.items|length", 1, &ev), "2");
    cr_expect_str_eq(render("payload.items[1].tags|length", 1, &ev), "2");
    cr_expect_str_eq(render("payload.address|length", 1, &ev), "2");
    cr_expect_str_eq(render("payload|length", 1, &ev), "19");      /* the whole payload's members */
    cr_expect_str_eq(render("payload.name|length", 1, &ev), "10"); /* characters, escapes resolved */
    cr_expect_str_eq(render("payload.prénom|length", 1, &ev), "6");
    cr_expect_str_eq(render("event_type|length", 1, &ev), "11");
    cr_expect_str_eq(render("payload.customer_id|upper|length", 1, &ev), "3");
    cr_expect_str_eq(render("n={payload.items|length}", 0, &ev), "n=2");
    cr_expect_str_eq(render("payload.items|length|json", 1, &ev), "2");
    render_rc("payload.note|length", 1, &ev, 1, &err); /* null stays null */
    render_rc("payload.order_id|length", 1, &ev, -1, &err);
    cr_expect_eq(err.code, WC_ERR_DATA);
    cr_expect_str_eq(err.msg, "payload field \"order_id\" has no length: it is no array, object or string");
    render_rc("payload.paid|length", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"paid\" has no length: it is no array, object or string");
    render_rc("aggregate_id|length", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "field \"aggregate_id\" has no length: it is no array, object or string");
    done(&ev);

    /* Empty containers, and a whole payload that is not JSON: the usual error. */
    ev = make_event("{\"a\": [], \"o\": {}, \"s\": \"\"}");
    cr_expect_str_eq(render("payload.a|length", 1, &ev), "0");
    cr_expect_str_eq(render("payload.o|length", 1, &ev), "0");
    cr_expect_str_eq(render("payload.s|length", 1, &ev), "0");
    done(&ev);
    ev = make_event("[1, [2, 3], {\"x\": [4]}, \"]\"]");
    cr_expect_str_eq(render("payload|length", 1, &ev), "4");
    done(&ev);
    ev = make_event("[1, 2");
    render_rc("payload|length", 1, &ev, -1, &err);
    cr_expect(strncmp(err.msg, "payload is not valid JSON", 25) == 0, "%s", err.msg);
    done(&ev);
}

Test(template, filter_lower_upper)
{
    struct wc_event ev = make_event(PAYLOAD);

    cr_expect_str_eq(render("{payload.mixed|lower}", 0, &ev), "mixed Ünï"); /* ASCII letters only */
    cr_expect_str_eq(render("{payload.mixed|upper}", 0, &ev), "MIXED ÜNï");
    cr_expect_str_eq(render("{event_type|lower}:{aggregate_type|upper}", 0, &ev), "orderplaced:ORDER");
    cr_expect_str_eq(render("{payload.customer_id|upper|lower}", 0, &ev), "c-7");
    cr_expect_str_eq(render("{payload.paid|upper}", 0, &ev), "TRUE");
    done(&ev);
}

Test(template, missing_field_names_the_path)
{
    struct wc_event ev = make_event(PAYLOAD);
    struct wc_err err = {0};

    render_rc("payload.customer", 1, &ev, -1, &err);
    cr_expect_eq(err.code, WC_ERR_DATA);
    cr_expect_str_eq(err.msg, "payload field \"customer\" is missing");
    render_rc("x{payload.items[5].sku}", 0, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"items[5].sku\" is missing");
    cr_expect_str_eq(render_rc("x{payload.items[0].name}y", 0, &ev, -1, &err), "", "out left unchanged");
    cr_expect_str_eq(err.msg, "payload field \"items[0].name\" is missing");
    render_rc("payload.address.city.x", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"address.city.x\" is missing");
    render_rc("payload.address[0]", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"address[0]\" is missing");
    done(&ev);
}

Test(template, null_values)
{
    struct wc_event ev = make_event(PAYLOAD);
    struct wc_err err = {0};

    cr_expect_str_eq(render_rc("payload.note", 1, &ev, 1, &err), "");
    cr_expect_str_eq(render_rc("payload.note|number", 1, &ev, 1, &err), "");
    cr_expect_str_eq(render_rc("payload.note|epoch_ms", 1, &ev, 1, &err), "");
    cr_expect_str_eq(render("note=[{payload.note}]", 0, &ev), "note=[]");
    ev.col[WC_COL_AGGREGATE_ID] = (struct wc_val){WC_VAL_NULL, NULL, 0};
    cr_expect_str_eq(render_rc("aggregate_id", 1, &ev, 1, &err), "");
    cr_expect_str_eq(render("aggregate_id|json", 1, &ev), "null");
    done(&ev);

    ev = make_event(NULL);
    cr_expect_str_eq(render_rc("payload", 1, &ev, 1, &err), "");
    render_rc("payload.x", 1, &ev, -1, &err);
    cr_expect_eq(err.code, WC_ERR_DATA);
    cr_expect_str_eq(err.msg, "payload field \"x\" is missing (the payload is null)");
}

Test(template, invalid_payload)
{
    struct wc_event ev = make_event("{not json");
    struct wc_err err = {0};

    render_rc("payload.x", 1, &ev, -1, &err);
    cr_expect_eq(err.code, WC_ERR_DATA);
    cr_expect_str_eq(err.msg, "payload is not valid JSON: string or '}' expected near 'not' at position 4");
    cr_expect_eq(ev.payload_checked, -1, "the verdict is kept on the event");
    render_rc("{payload.y}", 0, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload is not valid JSON: string or '}' expected near 'not' at position 4");
    done(&ev);
}

/* The error of an invalid payload is jansson's, word for word, as before the scanner (dead letters keep
 * their text). */
Test(template, invalid_payload_errors_are_jansson_s)
{
    static const char *const bad[] = {
        "{\"a\": 01}",
        "{\"a\": 1,}",
        "{\"a\": 12345678901234567890}",
        "{\"a\": 1e400}",
        "{\"a\": \"\\ud800\"}",
        "{\"a\": \"\xc3\"}",
        "{\"a\": \"tab\there\"}",
        "{\"\\u0000\": 1}",
        "{\"a\": 1} {}",
        "",
        "   ",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct wc_event ev = make_event(bad[i]);
        struct wc_err err = {0};
        json_error_t jerr;
        char want[300];

        cr_assert_null(json_loadb(bad[i], strlen(bad[i]), JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr));
        snprintf(want, sizeof(want), "payload is not valid JSON: %s at position %d", jerr.text,
                 jerr.position);
        render_rc("payload.a", 1, &ev, -1, &err);
        cr_expect_eq(err.code, WC_ERR_DATA);
        cr_expect_str_eq(err.msg, want, "%s", bad[i]);
        done(&ev);
    }

    /* jansson takes a NUL byte right after a number; the scanner does not. */
    struct wc_event ev = make_event("{\"a\": 1}");
    struct wc_err err = {0};
    static const char nul[] = "{\"a\": 1\0}";
    ev.col[WC_COL_PAYLOAD].text = nul;
    ev.col[WC_COL_PAYLOAD].len = sizeof(nul) - 1;
    render_rc("payload.a", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload is not valid JSON: a NUL byte in the text");
    done(&ev);
}

/* Numbers render as they are written in the payload: no trip through a double. */
Test(template, numbers_keep_their_source_text)
{
    struct wc_event ev =
        make_event("{\"price\": 12.50, \"hundred\": 1e2, \"e\": -1.5E+3, \"zero\": -0,"
                   " \"max\": 9223372036854775807, \"min\": -9223372036854775808,"
                   " \"odd\": 9007199254740993, \"long\": 0.1000000000000000055511151231257827,"
                   " \"huge\": 123456789012345678901234567890.5, \"tiny\": 1e-400}");
    struct wc_err err = {0};

    cr_expect_str_eq(render("{payload.price}", 0, &ev), "12.50");
    cr_expect_str_eq(render("payload.price|number", 1, &ev), "12.50");
    cr_expect_str_eq(render("payload.price|json", 1, &ev), "12.50");
    cr_expect_str_eq(render("payload.hundred", 1, &ev), "1e2");
    cr_expect_str_eq(render("payload.e", 1, &ev), "-1.5E+3");
    cr_expect_str_eq(render("payload.e|lower", 1, &ev), "-1.5e+3");
    cr_expect_str_eq(render("payload.zero", 1, &ev), "-0");
    cr_expect_str_eq(render("payload.max", 1, &ev), "9223372036854775807");
    cr_expect_str_eq(render("payload.min|number", 1, &ev), "-9223372036854775808");
    cr_expect_str_eq(render("payload.odd", 1, &ev), "9007199254740993");
    cr_expect_str_eq(render("payload.long", 1, &ev), "0.1000000000000000055511151231257827");
    cr_expect_str_eq(render("payload.huge|json", 1, &ev), "123456789012345678901234567890.5");
    cr_expect_str_eq(render("payload.tiny", 1, &ev), "1e-400");
    /* Numbers as timestamps: integers exactly, reals from all their digits. */
    cr_expect_str_eq(render("payload.max|epoch_s", 1, &ev), "9223372036854775807");
    cr_expect_str_eq(render("payload.min|epoch_s", 1, &ev), "-9223372036854775808");
    cr_expect_str_eq(render("payload.odd|epoch_s", 1, &ev), "9007199254740993");
    cr_expect_str_eq(render("payload.hundred|epoch_ms", 1, &ev), "100000");
    cr_expect_str_eq(render("payload.e|epoch_s", 1, &ev), "-1500");
    cr_expect_str_eq(render("payload.zero|epoch_ms", 1, &ev), "0");
    cr_expect_str_eq(render("payload.long|epoch_ms", 1, &ev), "100");
    render_rc("payload.max|epoch_ms", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"max\" is out of range for a timestamp");
    render_rc("payload.huge|epoch_ms", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"huge\" is out of range for a timestamp");
    done(&ev);

    /* A real of 128 characters or more still reads whole. */
    char payload[400];
    snprintf(payload, sizeof(payload), "{\"t\": 1.%0150de9}", 0);
    ev = make_event(payload);
    cr_expect_str_eq(render("payload.t|epoch_s", 1, &ev), "1000000000");
    done(&ev);
}

Test(template, escaped_strings)
{
    struct wc_event ev =
        make_event("{\"q\": \"a\\\"b\\\\c\\/d\\n\", \"u\": \"\\u00e9\\u20ac\\ud83d\\ude00 x\","
                   " \"num\": \" 1\\u0032 \", \"when\": \"2026-11-27T10:39:53.655523\\u005a\","
                   " \"ctl\": \"\\u0001\\t\", \"plain\": \"no escapes\", \"nul\": \"a\\u0000b\"}");
    struct wc_err err = {0};

    cr_expect_str_eq(render("payload.q", 1, &ev), "a\"b\\c/d\n");
    cr_expect_str_eq(render("payload.q|json", 1, &ev), "\"a\\\"b\\\\c/d\\n\"");
    cr_expect_str_eq(render("<{payload.q|upper}>", 0, &ev), "<A\"B\\C/D\n>");
    cr_expect_str_eq(render("payload.u", 1, &ev), "é€😀 x");
    cr_expect_str_eq(render("payload.u|upper", 1, &ev), "é€😀 X");
    cr_expect_str_eq(render("payload.u|json", 1, &ev), "\"é€😀 x\"");
    cr_expect_str_eq(render("payload.num", 1, &ev), " 12 ");
    cr_expect_str_eq(render("payload.num|number", 1, &ev), "12");
    cr_expect_str_eq(render("payload.num|number|json", 1, &ev), "12");
    cr_expect_str_eq(render("payload.num|upper|number|json", 1, &ev), "12");
    cr_expect_str_eq(render("payload.when|epoch_ms", 1, &ev), "1795775993655");
    cr_expect_str_eq(render("payload.ctl|json", 1, &ev), "\"\\u0001\\t\"");
    cr_expect_str_eq(render("payload.plain|json", 1, &ev), "\"no escapes\"");
    render_rc("payload.u|number", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"u\" is not a number: \"é€😀 x\"");
    render_rc("x{payload.u|epoch_s}", 0, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"u\" is not a timestamp: \"é€😀 x\"");

    /* \u0000 is allowed in a payload string (as jansson's JSON_ALLOW_NUL did): a NUL byte comes out. */
    struct wc_buf out = WC_BUF_INIT;
    struct wc_tmpl *t = wc_tmpl_compile("payload.nul", 1, &err);
    cr_assert_eq(wc_tmpl_render(t, &ev, &out, &err), 0, "%s", err.msg);
    cr_expect_eq(out.len, 3);
    cr_expect(memcmp(out.data, "a\0b", 4) == 0);
    wc_tmpl_free(t);
    wc_buf_free(&out);
    cr_expect_str_eq(render("payload.nul|json", 1, &ev), "\"a\\u0000b\"");
    done(&ev);
}

Test(template, objects_arrays_and_literals)
{
    struct wc_event ev =
        make_event("{\"o\": { \"b\" : [ 1 , 2.50 , \"x y\" , true ], \"c\": \"\\u00e9\\n\", \"e\": {} },"
                   " \"arr\": [ 10 , \"s\" , {\"k\": null} , [ ] ], \"dup\": 1, \"dup\": {\"d\": 2},"
                   " \"k\\u0065y\": \"escaped key\", \"t\": true, \"f\": false}");
    struct wc_err err = {0};

    /* Compact JSON, strings and numbers as written. */
    cr_expect_str_eq(render("payload.o", 1, &ev),
                     "{\"b\":[1,2.50,\"x y\",true],\"c\":\"\\u00e9\\n\",\"e\":{}}");
    cr_expect_str_eq(render("payload.o|json", 1, &ev),
                     "{\"b\":[1,2.50,\"x y\",true],\"c\":\"\\u00e9\\n\",\"e\":{}}");
    cr_expect_str_eq(render("payload.o.b|json", 1, &ev), "[1,2.50,\"x y\",true]");
    cr_expect_str_eq(render("payload.o.e", 1, &ev), "{}");
    cr_expect_str_eq(render("payload.o.b|upper", 1, &ev), "[1,2.50,\"X Y\",TRUE]");
    cr_expect_str_eq(render("payload.o.b|json|json", 1, &ev), "\"[1,2.50,\\\"x y\\\",true]\"");
    /* Arrays by index. */
    cr_expect_str_eq(render("payload.arr[0]", 1, &ev), "10");
    cr_expect_str_eq(render("payload.arr[1]", 1, &ev), "s");
    cr_expect_str_eq(render("payload.arr[2]", 1, &ev), "{\"k\":null}");
    cr_expect_str_eq(render_rc("payload.arr[2].k", 1, &ev, 1, &err), "");
    cr_expect_str_eq(render("payload.arr[3]|json", 1, &ev), "[]");
    cr_expect_str_eq(render("payload.o.b[3]", 1, &ev), "true");
    render_rc("payload.arr[4]", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"arr[4]\" is missing");
    render_rc("payload.arr.k", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"arr.k\" is missing");
    render_rc("payload.o[0]", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"o[0]\" is missing");
    render_rc("payload.arr[1][0]", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"arr[1][0]\" is missing");
    /* The last of duplicate keys, and keys compared unescaped. */
    cr_expect_str_eq(render("payload.dup", 1, &ev), "{\"d\":2}");
    cr_expect_str_eq(render("payload.dup.d", 1, &ev), "2");
    cr_expect_str_eq(render("payload.key", 1, &ev), "escaped key");
    /* true and false are text, not numbers, and not timestamps. */
    cr_expect_str_eq(render("{payload.t}/{payload.f}/{payload.t|json}", 0, &ev), "true/false/true");
    render_rc("payload.f|number", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"f\" is not a number");
    render_rc("payload.t|epoch_ms", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"t\" is not a timestamp");
    render_rc("payload.o|number", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"o\" is not a number");
    render_rc("payload.arr|epoch_s", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"arr\" is not a timestamp");
    render_rc("payload.o|upper|number", 1, &ev, -1, &err);
    cr_expect(strstr(err.msg, "payload field \"o\" is not a number: \"{\"B\":[1,2.50,") == err.msg, "%s",
              err.msg);
    done(&ev);
}

/* A payload that is no object: the whole of it is the value. */
Test(template, scalar_payloads)
{
    static const struct {
        const char *payload, *tmpl, *want;
    } cases[] = {
        {"\"just a string\"", "payload", "just a string"},
        {"\"just a string\"", "payload|json", "\"just a string\""},
        {"\"\\u00e9t\\u00e9\"", "payload|upper", "éTé"},
        {"  12.50 ", "payload", "12.50"},
        {"  12.50 ", "payload|number", "12.50"},
        {"1700000000", "payload|epoch_ms", "1700000000000"},
        {"true", "payload", "true"},
        {" [1, 2] ", "payload", " [1, 2] "}, /* objects and arrays: verbatim, as before */
        {" [1, 2] ", "payload|json", " [1, 2] "},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct wc_event ev = make_event(cases[i].payload);
        cr_expect_str_eq(render(cases[i].tmpl, 1, &ev), cases[i].want, "%s on %s", cases[i].tmpl,
                         cases[i].payload);
        done(&ev);
    }
    struct wc_event ev = make_event("null");
    struct wc_err err = {0};
    cr_expect_str_eq(render_rc("payload", 1, &ev, 1, &err), "");
    render_rc("payload.a", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"a\" is missing");
    done(&ev);
}

/* The example's templates (examples/orders/walcast.yaml) on a typical payload. */
Test(template, orders_example)
{
    struct wc_event ev = make_event(
        "{\"items\": [{\"qty\": 3, \"sku\": \"SKU-0042\", \"unit_price\": 19.99}, {\"qty\": 1, \"sku\": "
        "\"SKU-0007\", \"unit_price\": 5.50}], \"total\": 65.47, \"order_id\": 1234567, \"placed_at\": "
        "\"2026-11-27T13:08:03.123Z\", \"customer_id\": 42}");

    cr_expect_str_eq(render("customer:{payload.customer_id}:orders", 0, &ev), "customer:42:orders");
    cr_expect_str_eq(render("{payload.placed_at|epoch_ms}", 0, &ev), "1795784883123");
    cr_expect_str_eq(render("order:{payload.order_id}", 0, &ev), "order:1234567");
    cr_expect_str_eq(render("{payload.total}", 0, &ev), "65.47");
    cr_expect_str_eq(render("payload.items[1].unit_price", 1, &ev), "5.50");
    cr_expect_str_eq(render("payload.items[0]", 1, &ev),
                     "{\"qty\":3,\"sku\":\"SKU-0042\",\"unit_price\":19.99}");
    cr_expect_eq(ev.payload_checked, 1, "validated once, then read in place");
    cr_expect_null(ev.payload_json, "no jansson tree was built");
    done(&ev);
}

Test(template, compile_errors)
{
    static const struct {
        const char *src;
        int bare;
        const char *msg;
    } cases[] = {
        {"paylod.x", 1, "unknown field \"paylod.x\""},
        {"{customer}", 0, "unknown field \"customer\""},
        {"{event_id.x}", 0, "unknown field \"event_id.x\""},
        {"{payload.}", 0, "unknown field \"payload.\""},
        {"{payload.a..b}", 0, "unknown field \"payload.a..b\""},
        {"{payload.a|lowr}", 0, "unknown filter \"lowr\""},
        {"payload.a|", 1, "unknown filter \"\""},
        {"{payload.items[x]}", 0, "bad array index in \"payload.items[x]\""},
        {"{payload.items[1}", 0, "bad array index in \"payload.items[1\""},
        {"{}", 0, "empty expression"},
        {"", 1, "empty expression"},
        {"a{payload.x", 0, "unterminated \"{\" in template (write \"{{\" for a literal brace)"},
        {"a}b", 0, "unmatched \"}\" in template (write \"}}\" for a literal brace)"},
        {"{payload.x} trailing", 1, "a parameter is a bare expression: write it without braces"},
        {"payload.x y", 1, "unexpected \"y\" in expression \"payload.x y\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct wc_err err = {0};
        struct wc_tmpl *t = wc_tmpl_compile(cases[i].src, cases[i].bare, &err);
        cr_expect_null(t, "%s compiled", cases[i].src);
        cr_expect_eq(err.code, WC_ERR_CONFIG);
        cr_expect_str_eq(err.msg, cases[i].msg, "%s", cases[i].src);
        wc_tmpl_free(t);
    }
}

Test(template, source_is_kept)
{
    struct wc_err err = {0};
    struct wc_tmpl *t = wc_tmpl_compile("order:{payload.order_id}", 0, &err);

    cr_assert_not_null(t);
    cr_expect_str_eq(wc_tmpl_source(t), "order:{payload.order_id}");
    wc_tmpl_free(t);
    wc_tmpl_free(NULL);
}

Test(template, render_appends_and_reuses_buffer)
{
    struct wc_event ev = make_event(PAYLOAD);
    struct wc_err err = {0};
    struct wc_buf out = WC_BUF_INIT;
    struct wc_tmpl *t = wc_tmpl_compile("{payload.order_id},", 0, &err);

    for (int i = 0; i < 3; i++)
        cr_assert_eq(wc_tmpl_render(t, &ev, &out, &err), 0);
    cr_expect_str_eq(out.data, "42,42,42,");
    wc_buf_free(&out);
    wc_tmpl_free(t);
    done(&ev);
}

/* Found by fuzz_config: text after "]" other than "." or "[" overran the step array. */
Test(template, junk_after_an_index_is_rejected)
{
    const char *bad[] = {"payload[0]x0]", "payload.items[1]y", "payload[0][", "payload[0]]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct wc_err err = {0};
        struct wc_tmpl *t = wc_tmpl_compile(bad[i], 1, &err);
        cr_assert_null(t, "\"%s\" must be rejected", bad[i]);
        cr_assert_eq(err.code, WC_ERR_CONFIG);
        cr_assert(strstr(err.msg, bad[i]) != NULL, "the message names the expression: %s", err.msg);
    }
}

/* Found by fuzz_template: a long chain of |json grew the output exponentially. */
Test(template, filter_chains_are_bounded)
{
    struct wc_err err = {0};
    struct wc_tmpl *t = wc_tmpl_compile("payload|json|json|json|json|json|json|json|json|json", 1, &err);
    cr_assert_null(t);
    cr_assert(strstr(err.msg, "too many filters"), "%s", err.msg);
    t = wc_tmpl_compile("payload.a|json|json", 1, &err);
    cr_assert_not_null(t, "%s", err.msg);
    wc_tmpl_free(t);
}

/* cents / scale(n): a decimal as exact integer minor units, worked out on the digits (never a double). */
Test(template, filter_cents_and_scale)
{
    struct wc_event ev = make_event(
        "{\"a\": 19.99, \"b\": \"2450.20\", \"c\": 7, \"d\": -0.5, \"e\": 1.5e1, \"f\": 0.125, \"g\": "
        "\"12.500\","
        " \"h\": 90071992547409.92, \"i\": 90071992547409.93, \"j\": 0.1, \"k\": 12e-1, \"l\": -0.00,"
        " \"m\": \"abc\", \"n\": [1], \"o\": 1e-3, \"p\": \" 3.10 \", \"q\": 0.30000000000000004,"
        " \"r\": 9223372036854775807, \"s\": \"5e400000\", \"t\": 0e999999, \"u\": null}");
    struct wc_err err = {0};

    cr_expect_str_eq(render("payload.a|cents", 1, &ev), "1999");
    cr_expect_str_eq(render("{payload.b|cents}", 0, &ev), "245020");
    cr_expect_str_eq(render("payload.c|cents", 1, &ev), "700");
    cr_expect_str_eq(render("payload.d|cents", 1, &ev), "-50");
    cr_expect_str_eq(render("payload.e|cents", 1, &ev), "1500");
    cr_expect_str_eq(render("payload.f|scale(3)", 1, &ev), "125");
    cr_expect_str_eq(render("payload.g|cents", 1, &ev), "1250", "trailing zeros are no decimals");
    cr_expect_str_eq(render("payload.h|cents", 1, &ev), "9007199254740992", "2^53 fits");
    render_rc("payload.j|scale(0)", 1, &ev, -1, &err);
    cr_expect_str_eq(render("payload.j|scale(15)", 1, &ev), "100000000000000");
    cr_expect_str_eq(render("payload.k|cents", 1, &ev), "120");
    cr_expect_str_eq(render("payload.l|cents", 1, &ev), "0");
    cr_expect_str_eq(render("payload.p|cents", 1, &ev), "310");
    cr_expect_str_eq(render("payload.t|cents", 1, &ev), "0");
    cr_expect_str_eq(render("{payload.u|cents}", 0, &ev), "", "null passes through");
    cr_expect_str_eq(render("-{payload.a|cents}", 0, &ev), "-1999");
    render_rc("aggregate_id|scale(0)", 1, &ev, -1, &err); /* a numeric column, beyond 2^53 */
    cr_expect_str_eq(err.msg, "field \"aggregate_id\" is out of range for scale(0): more than 2^53 "
                              "(9007199254740992) once scaled");

    render_rc("payload.f|cents", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"f\" has more than 2 decimal places: \"0.125\"");
    render_rc("payload.q|cents", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"q\" has more than 2 decimal places: \"0.30000000000000004\"");
    render_rc("payload.o|cents", 1, &ev, -1, &err);
    cr_expect_eq(err.code, WC_ERR_DATA);
    render_rc("payload.i|cents", 1, &ev, -1, &err);
    cr_expect_str_eq(
        err.msg,
        "payload field \"i\" is out of range for scale(2): more than 2^53 (9007199254740992) once scaled");
    render_rc("payload.r|cents", 1, &ev, -1, &err);
    render_rc("payload.s|cents", 1, &ev, -1, &err);
    cr_expect_eq(err.code, WC_ERR_DATA);
    render_rc("payload.m|cents", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"m\" is not a number (scale and cents take a decimal)");
    render_rc("payload.n|cents", 1, &ev, -1, &err);
    cr_expect_str_eq(err.msg, "payload field \"n\" is not a number (scale and cents take a decimal)");
    done(&ev);

    struct wc_err cerr = {0};
    cr_expect_null(wc_tmpl_compile("payload.a|scale(19)", 1, &cerr));
    cr_expect_str_eq(cerr.msg, "bad filter \"scale(19)\" (scale takes 0 to 18 decimal places)");
    cr_expect_null(wc_tmpl_compile("payload.a|scale()", 1, &cerr));
    cr_expect_null(wc_tmpl_compile("payload.a|scale(x)", 1, &cerr));
    cr_expect_null(wc_tmpl_compile("payload.a|cent", 1, &cerr));
    cr_expect_str_eq(cerr.msg, "unknown filter \"cent\"");
}
