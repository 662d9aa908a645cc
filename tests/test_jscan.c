/* test_jscan.c - the JSON scanner (base/jscan.c), checked against jansson, which it stands in for. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walcast/buf.h"
#include "walcast/jscan.h"

/* jansson's verdict: 0 when json_loadb takes s[0..len) (JSON_DECODE_ANY, plus extra flags), else -1. */
static int jansson_ok(const char *s, size_t len, size_t flags)
{
    json_error_t jerr;
    json_t *j = json_loadb(s, len, JSON_DECODE_ANY | flags, &jerr);

    json_decref(j);
    return j ? 0 : -1;
}

/* jansson takes a NUL byte right after a number or literal ("1\0" is valid to it); the scanner never
 * takes a raw NUL. That is the one disagreement allowed, and only for a text holding a NUL byte. */
static int agree(const char *s, size_t len, int flags)
{
    int mine = wc_json_validate_flags(s, len, flags);
    int theirs = jansson_ok(s, len, (flags & WC_JSON_ALLOW_NUL) ? JSON_ALLOW_NUL : 0);

    return mine == theirs || (mine == -1 && theirs == 0 && memchr(s, '\0', len) != NULL);
}

static const char *show(const char *s, size_t len)
{
    static char tmp[200];
    size_t o = 0;

    for (size_t i = 0; i < len && o + 5 < sizeof(tmp); i++) {
        unsigned char c = (unsigned char)s[i];
        o += (size_t)snprintf(tmp + o, sizeof(tmp) - o, c >= 0x20 && c < 0x7F ? "%c" : "\\x%02x", c);
    }
    tmp[o] = '\0';
    return tmp;
}

#define CASE(text, want)                                                                                     \
    {                                                                                                        \
        text, sizeof(text) - 1, want                                                                         \
    }

Test(jscan, validate_table)
{
    static const struct {
        const char *s;
        size_t len;
        int want; /* 0 valid, -1 not */
    } cases[] = {
        /* whitespace and nothing */
        CASE("", -1), CASE(" ", -1), CASE(" \t\r\n", -1), CASE(" \t\r\n1 \t\r\n", 0), CASE("\f1", -1),
        CASE("1\v", -1), CASE("\xef\xbb\xbf{}", -1), /* a byte order mark is not whitespace */
        /* literals */
        CASE("true", 0), CASE("false", 0), CASE("null", 0), CASE("tru", -1), CASE("truee", -1),
        CASE("True", -1), CASE("nul", -1), CASE("true false", -1), CASE("[true,false,null]", 0),
        CASE("[true1]", -1),
        /* numbers */
        CASE("0", 0), CASE("-0", 0), CASE("-", -1), CASE("+1", -1), CASE("01", -1), CASE("-01", -1),
        CASE("00", -1), CASE("1.", -1), CASE(".5", -1), CASE("-.5", -1), CASE("1.5", 0), CASE("1e", -1),
        CASE("1e+", -1), CASE("1e-5", 0), CASE("1E+05", 0), CASE("1.e5", -1), CASE("0.0e0", 0),
        CASE("1.5.3", -1), CASE("12a", -1), CASE("0x10", -1), CASE("Infinity", -1), CASE("NaN", -1),
        CASE("9223372036854775807", 0), CASE("9223372036854775808", -1), /* jansson: too big integer */
        CASE("-9223372036854775808", 0), CASE("-9223372036854775809", -1), CASE("00000000000000000001", -1),
        CASE("12345678901234567890", -1), CASE("12345678901234567890.0", 0), /* a real: fine */
        CASE("1e308", 0), CASE("1e309", -1),   /* jansson: real number overflow */
        CASE("-1e309", -1), CASE("1e-400", 0), /* underflow is not an error */
        CASE("0e999999999999999999999", 0), CASE("1.7976931348623157e308", 0),
        CASE("1.7976931348623158e308", 0), CASE("1.7976931348623159e308", -1),
        CASE("179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977"
             "587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845"
             "817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559"
             "699508093042880177904174497791.9999",
             0),
        CASE("179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977"
             "587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845"
             "817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559"
             "699508093042880177904174497792.0",
             -1),
        CASE("0.0001797693134862315807937289714053034150799341327100378269361737789804449682927647509466490"
             "179775872070963302864166928879109465555478519404026306574886715058206819089020007083836762738"
             "548458177115317644757302700698555713669596228429148198608349364752927190741684443655107043427"
             "11559699508093042880177904174497792e312",
             -1),
        CASE("0.0001797693134862315807937289714053034150799341327100378269361737789804449682927647509466490"
             "179775872070963302864166928879109465555478519404026306574886715058206819089020007083836762738"
             "548458177115317644757302700698555713669596228429148198608349364752927190741684443655107043427"
             "11559699508093042880177904174497791e312",
             0),
        /* strings */
        CASE("\"\"", 0), CASE("\"abc", -1), CASE("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", 0),
        CASE("\"\\x\"", -1), CASE("\"\\'\"", -1), CASE("\"\\\"", -1), CASE("\"\\u00e9\\u20AC\"", 0),
        CASE("\"\\u12\"", -1), CASE("\"\\u12G4\"", -1), CASE("\"\\U0041\"", -1),
        CASE("\"\\ud83d\\ude00\"", 0), /* a surrogate pair */
        CASE("\"\\ud83d\"", -1),       /* high surrogate alone */
        CASE("\"\\ud83dx\"", -1), CASE("\"\\ud83d\\n\"", -1),
        CASE("\"\\ud83d\\u0041\"", -1),                          /* high surrogate, then no low one */
        CASE("\"\\ud83d\\ud83d\"", -1), CASE("\"\\ude00\"", -1), /* low surrogate alone */
        CASE("\"\\ude00\\ud83d\"", -1),
        CASE("\"\\u0000\"", -1),                      /* jansson refuses it without JSON_ALLOW_NUL */
        CASE("\"\\u0001\"", 0), CASE("\"\x01\"", -1), /* raw control characters */
        CASE("\"\x1f\"", -1), CASE("\"a\nb\"", -1), CASE("\"\t\"", -1), CASE("\"\x7f\"", 0),
        CASE("\"\0\"", -1), CASE("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", 0), /* é € 😀 */
        CASE("\"\xc3\"", -1),                                                    /* truncated */
        CASE("\"\xc3\x28\"", -1),                                                /* bad continuation */
        CASE("\"\x80\"", -1),                                                    /* lone continuation */
        CASE("\"\xc0\xaf\"", -1),                                                /* overlong */
        CASE("\"\xe0\x80\xaf\"", -1),                                            /* overlong */
        CASE("\"\xed\xa0\x80\"", -1),                                            /* UTF-8 of a surrogate */
        CASE("\"\xef\xbf\xbf\"", 0),                                             /* U+FFFF */
        CASE("\"\xf4\x8f\xbf\xbf\"", 0),                                         /* U+10FFFF */
        CASE("\"\xf4\x90\x80\x80\"", -1),                                        /* above U+10FFFF */
        CASE("\"\xf5\x80\x80\x80\"", -1), CASE("\"\xff\"", -1),
        CASE("\xc3\xa9", -1), /* UTF-8 outside a string */
        /* arrays and objects */
        CASE("[]", 0), CASE("[ ]", 0), CASE("{}", 0), CASE("{ \n}", 0), CASE("[1,2]", 0), CASE("[1,]", -1),
        CASE("[,1]", -1), CASE("[1 2]", -1), CASE("[1", -1), CASE("]", -1), CASE("[1]]", -1),
        CASE("{\"a\":1}", 0), CASE("{\"a\":1,}", -1), CASE("{\"a\" 1}", -1), CASE("{\"a\":}", -1),
        CASE("{a:1}", -1), CASE("{1:1}", -1), CASE("{\"a\":1 \"b\":2}", -1),
        CASE("{\"a\":1,\"a\":2}", 0),                     /* duplicates: the last one counts */
        CASE("{\"\":0}", 0), CASE("{\"\\u0000\":1}", -1), /* NUL in a key: never */
        CASE("{\"a\":[1,{\"b\":null}],\"c\":\"x\"}", 0), CASE("[{]", -1), CASE("[}", -1), CASE("{]", -1),
        /* trailing garbage */
        CASE("{} {}", -1), CASE("1 2", -1), CASE("{}x", -1), CASE("\"a\"\"b\"", -1), CASE("[]\0", -1),
        CASE("1\0", -1), /* jansson takes this one (see agree()) */
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *s = cases[i].s;
        size_t len = cases[i].len;
        cr_expect_eq(wc_json_validate(s, len), cases[i].want, "case %zu: \"%s\"", i, show(s, len));
        cr_expect(agree(s, len, 0), "case %zu: \"%s\": jansson says %d", i, show(s, len),
                  jansson_ok(s, len, 0));
        cr_expect(agree(s, len, WC_JSON_ALLOW_NUL), "case %zu with NUL allowed: \"%s\"", i, show(s, len));
    }
    cr_expect_eq(wc_json_validate(NULL, 0), -1);
}

Test(jscan, allow_nul_is_for_values_only)
{
    static const char value[] = "{\"a\":\"x\\u0000y\"}", key[] = "{\"x\\u0000\":1}";

    cr_expect_eq(wc_json_validate(value, sizeof(value) - 1), -1);
    cr_expect_eq(wc_json_validate_flags(value, sizeof(value) - 1, WC_JSON_ALLOW_NUL), 0);
    cr_expect_eq(jansson_ok(value, sizeof(value) - 1, JSON_ALLOW_NUL), 0);
    cr_expect_eq(wc_json_validate_flags(key, sizeof(key) - 1, WC_JSON_ALLOW_NUL), -1);
    cr_expect_eq(jansson_ok(key, sizeof(key) - 1, JSON_ALLOW_NUL), -1);
}

/* n nested arrays (or objects) around inner. */
static void nest(struct wc_buf *b, int n, int objects, const char *inner)
{
    wc_buf_reset(b);
    for (int i = 0; i < n; i++)
        wc_buf_puts(b, objects ? "{\"k\": " : "[ ");
    wc_buf_puts(b, inner);
    for (int i = 0; i < n; i++)
        wc_buf_puts(b, objects ? "}" : "]");
}

Test(jscan, nesting_depth_is_jansson_s)
{
    struct wc_buf b = WC_BUF_INIT;

    /* jansson counts the innermost value as a level too: 2048 empty arrays deep, or 2047 around a 1. */
    for (int objects = 0; objects < 2; objects++) {
        nest(&b, WC_JSON_MAX_DEPTH, objects, objects ? "{}" : "[]");
        cr_expect_eq(wc_json_validate(b.data, b.len), -1, "2048 levels + 1");
        nest(&b, WC_JSON_MAX_DEPTH - 1, objects, objects ? "{}" : "[]");
        cr_expect_eq(wc_json_validate(b.data, b.len), 0, "2048 levels");
        nest(&b, WC_JSON_MAX_DEPTH - 1, objects, "1");
        cr_expect_eq(wc_json_validate(b.data, b.len), 0, "2047 levels and a scalar");
        nest(&b, WC_JSON_MAX_DEPTH, objects, "1");
        cr_expect_eq(wc_json_validate(b.data, b.len), -1, "2048 levels and a scalar");
        for (int n = WC_JSON_MAX_DEPTH - 3; n <= WC_JSON_MAX_DEPTH + 3; n++) {
            static const char *const inner[] = {"1", "[]", "{}", "[1]", "\"s\""};
            for (size_t k = 0; k < sizeof(inner) / sizeof(inner[0]); k++) {
                nest(&b, n, objects, inner[k]);
                cr_expect(agree(b.data, b.len, 0), "depth %d around %s", n, inner[k]);
            }
        }
    }
    /* Far deeper than the limit: refused, without using the stack for it. */
    nest(&b, 1000000, 0, "1");
    cr_expect_eq(wc_json_validate(b.data, b.len), -1);
    /* Deep but unbalanced, and wide after deep. */
    nest(&b, 100, 0, "1");
    b.data[--b.len] = '\0';
    cr_expect_eq(wc_json_validate(b.data, b.len), -1);
    wc_buf_reset(&b);
    wc_buf_puts(&b, "[");
    for (int i = 0; i < 10000; i++)
        wc_buf_puts(&b, "[[{\"a\":[]}]],");
    wc_buf_puts(&b, "0]");
    cr_expect_eq(wc_json_validate(b.data, b.len), 0);
    wc_buf_free(&b);
}

static const char DOC[] =
    " {\"order_id\": 1234567, \"items\": [ {\"qty\": 3, \"sku\": \"SKU-0042\", \"unit_price\": 19.99},"
    " {\"qty\": 1, \"sku\": \"SKU-0007\", \"unit_price\": 5.50, \"tags\": [\"x\", [], {}]}],"
    " \"total\": 65.47, \"a\": 1, \"esc\": \"a\\\"b\\\\c\\u00e9\\ud83d\\ude00\\n\","
    " \"k\\u00e9y\": \"escaped key\", \"k\\\"q\": 7, \"a\": {\"b\" : [ true , false , null ] },"
    " \"\": \"empty key\", \"big\": 123456789012345678.000000000000000000001, \"n\": null} ";

/* Look up a path written as steps "name", "#index" or '' (the empty name), separated by spaces; the
 * span's text, or NULL. */
static const char *find(const char *doc, const char *path, int *type)
{
    static char text[1024];
    struct wc_json_step steps[8];
    char names[8][32];
    int n = 0;
    struct wc_json_span sp;

    for (const char *p = path; *p; n++) {
        size_t l = strcspn(p, " ");
        cr_assert_lt(n, 8);
        if (p[0] == '#') {
            steps[n] = (struct wc_json_step){NULL, 0, (size_t)strtoul(p + 1, NULL, 10)};
        } else if (l == 2 && memcmp(p, "''", 2) == 0) {
            steps[n] = (struct wc_json_step){"", 0, 0};
        } else {
            snprintf(names[n], sizeof(names[n]), "%.*s", (int)l, p);
            steps[n] = (struct wc_json_step){names[n], l, 0};
        }
        p += l;
        p += *p == ' ';
    }
    /* With and without the index of the document's members: the same answer. */
    struct wc_json_index idx;
    struct wc_json_span sp2;
    cr_assert_eq(wc_json_validate_index(doc, strlen(doc), WC_JSON_ALLOW_NUL, &idx), 0, "%s", doc);
    int rc = wc_json_lookup_index(doc, strlen(doc), &idx, steps, n, &sp2);
    if (wc_json_lookup(doc, strlen(doc), steps, n, &sp) < 0) {
        cr_assert_eq(rc, -1, "%s: found with the index only", path);
        return NULL;
    }
    cr_assert_eq(rc, 0, "%s: found without the index only", path);
    cr_assert(sp2.s == sp.s && sp2.len == sp.len && sp2.type == sp.type, "%s: the index finds another value",
              path);
    cr_assert(sp.s >= doc && sp.s + sp.len <= doc + strlen(doc), "the span lies inside the text");
    if (type)
        *type = sp.type;
    snprintf(text, sizeof(text), "%.*s", (int)sp.len, sp.s);
    return text;
}

Test(jscan, lookup)
{
    int type = -1;

    cr_assert_eq(wc_json_validate(DOC, strlen(DOC)), 0);
    cr_expect_str_eq(find(DOC, "order_id", &type), "1234567");
    cr_expect_eq(type, WC_JSON_NUMBER);
    cr_expect_str_eq(find(DOC, "items #0 sku", &type), "\"SKU-0042\"");
    cr_expect_eq(type, WC_JSON_STRING);
    cr_expect_str_eq(find(DOC, "items #1 unit_price", NULL), "5.50");
    cr_expect_str_eq(find(DOC, "items #1 tags #0", NULL), "\"x\"");
    cr_expect_str_eq(find(DOC, "items #1 tags #1", &type), "[]");
    cr_expect_eq(type, WC_JSON_ARRAY);
    cr_expect_str_eq(find(DOC, "items #1 tags #2", &type), "{}");
    cr_expect_eq(type, WC_JSON_OBJECT);
    cr_expect_str_eq(find(DOC, "total", NULL), "65.47");
    cr_expect_str_eq(find(DOC, "big", NULL), "123456789012345678.000000000000000000001");
    cr_expect_str_eq(find(DOC, "n", &type), "null");
    cr_expect_eq(type, WC_JSON_NULL);
    cr_expect_str_eq(find(DOC, "''", &type), "\"empty key\"");
    /* The last duplicate wins, as in jansson. */
    cr_expect_str_eq(find(DOC, "a", &type), "{\"b\" : [ true , false , null ] }");
    cr_expect_eq(type, WC_JSON_OBJECT);
    cr_expect_str_eq(find(DOC, "a b #0", &type), "true");
    cr_expect_eq(type, WC_JSON_TRUE);
    cr_expect_str_eq(find(DOC, "a b #1", &type), "false");
    cr_expect_eq(type, WC_JSON_FALSE);
    cr_expect_str_eq(find(DOC, "a b #2", &type), "null");
    /* Keys are compared unescaped. */
    cr_expect_str_eq(find(DOC, "k\xc3\xa9y", NULL), "\"escaped key\"");
    cr_expect_str_eq(find(DOC, "k\"q", NULL), "7");
    cr_expect_null(find(DOC, "k\\u00e9y", NULL));
    cr_expect_null(find(DOC, "k\\\"q", NULL));
    /* The whole document, without the whitespace around it. */
    struct wc_json_span sp;
    cr_assert_eq(wc_json_lookup(DOC, strlen(DOC), NULL, 0, &sp), 0);
    cr_expect_eq(sp.s, DOC + 1);
    cr_expect_eq(sp.len, strlen(DOC) - 2);
    cr_expect_eq(sp.type, WC_JSON_OBJECT);
    /* Missing: no such key, index past the end, a step into the wrong kind of value. */
    cr_expect_null(find(DOC, "missing", NULL));
    cr_expect_null(find(DOC, "order", NULL));
    cr_expect_null(find(DOC, "order_idx", NULL));
    cr_expect_null(find(DOC, "items #2", NULL));
    cr_expect_null(find(DOC, "items sku", NULL));
    cr_expect_null(find(DOC, "#0", NULL));
    cr_expect_null(find(DOC, "total x", NULL));
    cr_expect_null(find(DOC, "items #1 tags #1 #0", NULL));
    cr_expect_null(find(DOC, "items #1 tags #2 x", NULL));
    cr_expect_null(find(DOC, "esc #0", NULL));
    cr_expect_null(find("[]", "#0", NULL));
    cr_expect_str_eq(find("[ 7 ]", "#0", NULL), "7");
    cr_expect_str_eq(find("\"s\"", "", NULL), "\"s\"");
    cr_expect_str_eq(find(" -1.5e3 ", "", &type), "-1.5e3");
    cr_expect_eq(type, WC_JSON_NUMBER);
}

static char *unescaped(const char *doc, const char *path, size_t *len)
{
    static char text[256];
    struct wc_buf b = WC_BUF_INIT;
    const char *span = find(doc, path, NULL);

    cr_assert_not_null(span, "%s", path);
    wc_buf_puts(&b, "<");
    wc_json_str_unescape(&b, span, strlen(span));
    cr_assert_lt(b.len, sizeof(text));
    memcpy(text, b.data + 1, b.len - 1);
    text[b.len - 1] = '\0';
    *len = b.len - 1;
    wc_buf_free(&b);
    return text;
}

Test(jscan, strings)
{
    size_t len;
    const char *s;

    s = find(DOC, "items #0 sku", NULL);
    cr_expect(!wc_json_str_has_escapes(s, strlen(s)));
    cr_expect_str_eq(unescaped(DOC, "items #0 sku", &len), "SKU-0042");
    s = find(DOC, "esc", NULL);
    cr_expect(wc_json_str_has_escapes(s, strlen(s)));
    cr_expect_str_eq(unescaped(DOC, "esc", &len), "a\"b\\c\xc3\xa9\xf0\x9f\x98\x80\n");
    cr_expect(!wc_json_str_has_escapes("\"\"", 2));
    cr_expect_str_eq(unescaped("{\"e\":\"\"}", "e", &len), "");

    static const char all[] = "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\u00e9\\u20ac\\uD83D\\uDE00\\u0001x\"]";
    cr_assert_eq(wc_json_validate(all, strlen(all)), 0);
    cr_expect_str_eq(unescaped(all, "#0", &len), "\"\\/\b\f\n\r\tA\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x01x");

    /* With NUL allowed, \u0000 unescapes to a NUL byte. */
    static const char nul[] = "[\"a\\u0000b\"]";
    cr_assert_eq(wc_json_validate_flags(nul, strlen(nul), WC_JSON_ALLOW_NUL), 0);
    s = unescaped(nul, "#0", &len);
    cr_expect_eq(len, 3);
    cr_expect(memcmp(s, "a\0b", 3) == 0);
}

/* (Unescaping agrees with jansson's json_string_value for every string of the generated texts too.) */

static const char *compact(const char *doc, const char *path)
{
    static char text[1024];
    struct wc_buf b = WC_BUF_INIT;
    const char *span = find(doc, path, NULL);

    cr_assert_not_null(span, "%s", path);
    wc_json_compact(&b, span, strlen(span));
    snprintf(text, sizeof(text), "%s", b.data ? b.data : "");
    wc_buf_free(&b);
    return text;
}

Test(jscan, compact)
{
    cr_expect_str_eq(compact(DOC, "a"), "{\"b\":[true,false,null]}");
    cr_expect_str_eq(compact(DOC, "items #1"),
                     "{\"qty\":1,\"sku\":\"SKU-0007\",\"unit_price\":5.50,\"tags\":[\"x\",[],{}]}");
    cr_expect_str_eq(compact("[ \" a , b \" , 1.50e+3 , \"\\u00e9 \\\" }\" ]", ""),
                     "[\" a , b \",1.50e+3,\"\\u00e9 \\\" }\"]");
    cr_expect_str_eq(compact("\n\t{ \r\n \"k\" \t:\n[ ] }\n", ""), "{\"k\":[]}");
    cr_expect_str_eq(compact("true", ""), "true");
    cr_expect_str_eq(compact(DOC, "big"), "123456789012345678.000000000000000000001");
    /* The whole document: no whitespace left outside strings, and it still reads the same. */
    const char *c = compact(DOC, "");
    json_t *a = json_loads(DOC, 0, NULL), *b = json_loads(c, 0, NULL);
    cr_assert_not_null(b, "%s", c);
    cr_expect(json_equal(a, b));
    cr_expect_null(strstr(c, "\": "));
    cr_expect_null(strstr(c, ", "));
    json_decref(a);
    json_decref(b);
}

Test(jscan, index_of_members)
{
    struct wc_json_index idx;
    struct wc_buf b = WC_BUF_INIT;

    cr_assert_eq(wc_json_validate_index(DOC, strlen(DOC), 0, &idx), 0);
    cr_expect_eq(idx.n, -1, "DOC has a key with an escape: no index");

    static const char doc[] = "{ \"a\" : 1, \"bb\": [2], \"\": \"e\", \"a\": {\"x\": 3}, \"\xc3\xa9\": 4 }";
    cr_assert_eq(wc_json_validate_index(doc, strlen(doc), 0, &idx), 0);
    cr_assert_eq(idx.n, 5);
    cr_expect_eq(idx.m[1].keylen, 2);
    cr_expect(memcmp(doc + idx.m[1].key, "bb", 2) == 0);
    cr_expect_eq(doc[idx.m[1].value], '[');
    cr_expect_eq(idx.m[2].keylen, 0);
    cr_expect_str_eq(find(doc, "a x", NULL), "3"); /* the last "a" */
    cr_expect_str_eq(find(doc, "bb #0", NULL), "2");
    cr_expect_str_eq(find(doc, "''", NULL), "\"e\"");
    cr_expect_str_eq(find(doc, "\xc3\xa9", NULL), "4");
    cr_expect_null(find(doc, "b", NULL));
    cr_expect_null(find(doc, "#0", NULL));

    /* No index for a document that is no object; none to use when the text is not valid. */
    cr_expect_eq(wc_json_validate_index("[1]", 3, 0, &idx), 0);
    cr_expect_eq(idx.n, -1, "an array: no index");
    cr_expect_eq(wc_json_validate_index("{}", 2, 0, &idx), 0);
    cr_expect_eq(idx.n, 0, "an empty object: an empty index");
    cr_expect_eq(
        wc_json_lookup_index("{}", 2, &idx, &(struct wc_json_step){"a", 1, 0}, 1, &(struct wc_json_span){0}),
        -1);
    cr_expect_eq(wc_json_validate_index("{\"a\":1", 6, 0, &idx), -1);

    /* As many members as the index holds, then one more (no index, same answers). */
    for (int extra = 0; extra < 2; extra++) {
        wc_buf_reset(&b);
        wc_buf_puts(&b, "{");
        for (int i = 0; i < WC_JSON_INDEX_MAX + extra; i++)
            wc_buf_printf(&b, "%s\"k%d\": {\"v\": %d}", i ? ", " : "", i, i);
        wc_buf_puts(&b, "}");
        cr_assert_eq(wc_json_validate_index(b.data, b.len, 0, &idx), 0);
        cr_expect_eq(idx.n, extra ? -1 : WC_JSON_INDEX_MAX);
        cr_expect_str_eq(find(b.data, "k0 v", NULL), "0");
        cr_expect_str_eq(find(b.data, "k15 v", NULL), "15");
        if (extra)
            cr_expect_str_eq(find(b.data, "k16 v", NULL), "16");
        else
            cr_expect_null(find(b.data, "k16 v", NULL));
    }
    /* Nested objects are not indexed, only the document's own members. */
    cr_assert_eq(wc_json_validate_index("{\"o\": {\"i\": 1}}", 15, 0, &idx), 0);
    cr_expect_eq(idx.n, 1);
    wc_buf_free(&b);
}

/* ---- randomized comparison with jansson ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)((rng_state >> 11) % n);
}

static void gen_ws(struct wc_buf *b)
{
    static const char ws[] = " \t\n\r";
    if (rnd(4) == 0)
        for (uint32_t n = rnd(3) + 1; n > 0; n--)
            wc_buf_append(b, &ws[rnd(4)], 1);
}

static void gen_string(struct wc_buf *b)
{
    static const char *const pieces[] = {
        "a",
        "Z",
        "order_id",
        " ",
        "-",
        "\\\"",
        "\\\\",
        "\\/",
        "\\b",
        "\\f",
        "\\n",
        "\\r",
        "\\t",
        "\\u0041",
        "\\u00e9",
        "\\u20AC",
        "\\u001f",
        "\\ud83d\\ude00",
        "\xc3\xa9",
        "\xe2\x82\xac",
        "\xf0\x9f\x98\x80",
        "\x7f",
        "\\u0000",
        "{",
        "]",
        ":",
        ",",
        "\\uDBFF\\uDFFF",
    };
    size_t n = rnd(6);

    wc_buf_puts(b, "\"");
    for (size_t i = 0; i < n; i++)
        wc_buf_puts(b, pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))]);
    wc_buf_puts(b, "\"");
}

static void gen_number(struct wc_buf *b)
{
    static const char *const special[] = {
        "0",
        "-0",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "1e308",
        "1e309",
        "1.7976931348623158e308",
        "1.7976931348623159e308",
        "2.2250738585072014e-308",
        "4.9e-324",
        "1e-400",
        "0.000000000000000000000000000001",
        "123456789012345678901234567890",
        "123456789012345678901234567890.5",
    };
    if (rnd(5) == 0) {
        wc_buf_puts(b, special[rnd(sizeof(special) / sizeof(special[0]))]);
        return;
    }
    if (rnd(3) == 0)
        wc_buf_puts(b, "-");
    if (rnd(4) == 0) {
        wc_buf_puts(b, "0");
    } else {
        wc_buf_put_int(b, 1 + rnd(9));
        for (uint32_t n = rnd(20); n > 0; n--)
            wc_buf_put_int(b, rnd(10));
    }
    if (rnd(2)) {
        wc_buf_puts(b, ".");
        for (uint32_t n = rnd(6) + 1; n > 0; n--)
            wc_buf_put_int(b, rnd(10));
    }
    if (rnd(3) == 0) {
        static const char *const e[] = {"e", "E", "e+", "e-", "E-0"};
        wc_buf_puts(b, e[rnd(5)]);
        wc_buf_put_int(b, rnd(4) == 0 ? rnd(400) : rnd(20));
    }
}

static void gen_value(struct wc_buf *b, int depth)
{
    /* A container at the top (mostly), scalars only from depth 5. */
    uint32_t k = depth == 0 && rnd(8) ? 5 + rnd(3) : rnd(depth > 5 ? 5 : 8);

    gen_ws(b);
    switch (k) {
    case 0:
        gen_string(b);
        break;
    case 1:
        gen_number(b);
        break;
    case 2:
        wc_buf_puts(b, rnd(2) ? "true" : "false");
        break;
    case 3:
        wc_buf_puts(b, "null");
        break;
    case 4:
        gen_number(b);
        break;
    case 5:
    case 6: {
        wc_buf_puts(b, "{");
        for (uint32_t n = rnd(5), i = 0; i < n; i++) {
            if (i)
                wc_buf_puts(b, ",");
            gen_ws(b);
            if (rnd(4) == 0)
                wc_buf_puts(b, rnd(2) ? "\"dup\"" : "\"d\\u0075p\"");
            else
                gen_string(b);
            gen_ws(b);
            wc_buf_puts(b, ":");
            gen_value(b, depth + 1);
        }
        gen_ws(b);
        wc_buf_puts(b, "}");
        break;
    }
    default: {
        wc_buf_puts(b, "[");
        for (uint32_t n = rnd(5), i = 0; i < n; i++) {
            if (i)
                wc_buf_puts(b, ",");
            gen_value(b, depth + 1);
        }
        gen_ws(b);
        wc_buf_puts(b, "]");
        break;
    }
    }
    gen_ws(b);
}

/* Change the text a little: the mutations that make texts almost valid. */
static void mutate(struct wc_buf *b)
{
    static const char bytes[] = {'\0', '\x01', '\x1f', '"', '\\', ',',    ':',    '{',    '}',    '[',
                                 ']',  '0',    '-',    '.', 'e',  '\x80', '\xc3', '\xed', '\xf4', '\xff',
                                 'u',  ' ',    '\n',   'd', '1',  't',    'n',    'E',    '+',    '/'};
    for (uint32_t m = rnd(3) + 1; m > 0 && b->len > 0; m--) {
        size_t at = rnd((uint32_t)b->len);
        char c = bytes[rnd(sizeof(bytes))];
        switch (rnd(5)) {
        case 0: /* replace */
            b->data[at] = c;
            break;
        case 1: /* delete */
            memmove(b->data + at, b->data + at + 1, b->len - at - 1);
            b->len--;
            break;
        case 2: /* insert */
            wc_buf_reserve(b, 1);
            memmove(b->data + at + 1, b->data + at, b->len - at);
            b->data[at] = c;
            b->len++;
            break;
        case 3: /* truncate */
            b->len = at;
            break;
        default: { /* repeat a slice */
            size_t n = rnd(8) + 1;
            if (n > b->len - at)
                n = b->len - at;
            wc_buf_reserve(b, n);
            memmove(b->data + at + n, b->data + at, b->len - at);
            b->len += n;
            break;
        }
        }
        b->data[b->len] = '\0';
    }
}

/* Every value in the tree of j at the path so far: the scanner finds the same value (by jansson). */
static int check_tree(const char *doc, size_t len, json_t *j, struct wc_json_step *path, int n)
{
    struct wc_json_span sp;
    int checked = 1;

    cr_assert_eq(wc_json_lookup(doc, len, path, n, &sp), 0, "%s: a path the tree has", show(doc, len));
    cr_assert(sp.s >= doc && sp.s + sp.len <= doc + len);
    struct wc_json_index idx;
    struct wc_json_span sp2;
    cr_assert_eq(wc_json_validate_index(doc, len, WC_JSON_ALLOW_NUL, &idx), 0);
    cr_assert_eq(wc_json_lookup_index(doc, len, &idx, path, n, &sp2), 0, "%s: with the index",
                 show(doc, len));
    cr_assert(sp2.s == sp.s && sp2.len == sp.len && sp2.type == sp.type, "%s: the index finds another value",
              show(doc, len));
    json_t *v = json_loadb(sp.s, sp.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    cr_assert_not_null(v, "the span reads back: %s", show(sp.s, sp.len));
    cr_assert(json_equal(v, j), "%s: the span is the value", show(sp.s, sp.len));
    json_decref(v);

    struct wc_buf b = WC_BUF_INIT;
    switch (json_typeof(j)) {
    case JSON_STRING:
        cr_assert_eq(sp.type, WC_JSON_STRING);
        wc_json_str_unescape(&b, sp.s, sp.len);
        cr_assert_eq(b.len, json_string_length(j));
        cr_assert(b.len == 0 || memcmp(b.data, json_string_value(j), b.len) == 0, "%s", show(sp.s, sp.len));
        cr_assert_eq(wc_json_str_has_escapes(sp.s, sp.len), memchr(sp.s, '\\', sp.len) != NULL);
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        cr_assert_eq(sp.type, WC_JSON_NUMBER);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
    case JSON_NULL:
        cr_assert_eq(sp.type, json_is_true(j)    ? WC_JSON_TRUE
                              : json_is_false(j) ? WC_JSON_FALSE
                                                 : WC_JSON_NULL);
        break;
    case JSON_OBJECT:
    case JSON_ARRAY: {
        cr_assert_eq(sp.type, json_is_object(j) ? WC_JSON_OBJECT : WC_JSON_ARRAY);
        wc_json_compact(&b, sp.s, sp.len);
        json_t *c = json_loadb(b.data, b.len, JSON_ALLOW_NUL, NULL);
        cr_assert(c != NULL && json_equal(c, j), "compact reads the same: %s", show(b.data, b.len));
        json_decref(c);
        cr_assert_eq(wc_json_validate_flags(b.data, b.len, WC_JSON_ALLOW_NUL), 0);
        /* Elements exactly; members as written (a repeated key counts each time, jansson keeps one). */
        if (json_is_array(j))
            cr_assert_eq(wc_json_count(sp.s, sp.len), json_array_size(j), "%s", show(sp.s, sp.len));
        else
            cr_assert_geq(wc_json_count(sp.s, sp.len), json_object_size(j), "%s", show(sp.s, sp.len));
        if (n >= 6)
            break;
        if (json_is_object(j)) {
            const char *key;
            json_t *m;
            json_object_foreach(j, key, m)
            {
                path[n] = (struct wc_json_step){key, strlen(key), 0};
                checked += check_tree(doc, len, m, path, n + 1);
            }
            path[n] = (struct wc_json_step){"no such key", 11, 0};
            cr_assert_eq(wc_json_lookup(doc, len, path, n + 1, &sp), -1);
            cr_assert_eq(wc_json_lookup_index(doc, len, &idx, path, n + 1, &sp), -1);
        } else {
            size_t i;
            json_t *m;
            json_array_foreach(j, i, m)
            {
                path[n] = (struct wc_json_step){NULL, 0, i};
                checked += check_tree(doc, len, m, path, n + 1);
            }
            path[n] = (struct wc_json_step){NULL, 0, json_array_size(j)};
            cr_assert_eq(wc_json_lookup(doc, len, path, n + 1, &sp), -1);
        }
        break;
    }
    }
    wc_buf_free(&b);
    return checked;
}

Test(jscan, random_texts_agree_with_jansson)
{
    struct wc_buf b = WC_BUF_INIT;
    int valid = 0, invalid = 0, values = 0;

    for (int i = 0; i < 20000; i++) {
        wc_buf_reset(&b);
        gen_value(&b, 0);
        if (i % 2)
            mutate(&b);
        for (int flags = 0; flags <= WC_JSON_ALLOW_NUL; flags++)
            cr_assert(agree(b.data, b.len, flags), "text %d (flags %d): \"%s\": jansson %d", i, flags,
                      show(b.data, b.len), jansson_ok(b.data, b.len, flags ? JSON_ALLOW_NUL : 0));
        if (wc_json_validate_flags(b.data, b.len, WC_JSON_ALLOW_NUL) < 0) {
            invalid++;
            continue;
        }
        valid++;
        struct wc_json_step path[8];
        json_t *j = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        cr_assert_not_null(j);
        values += check_tree(b.data, b.len, j, path, 0);
        json_decref(j);
    }
    cr_log_info("jscan: %d valid, %d invalid texts, %d values looked up", valid, invalid, values);
    cr_expect_gt(valid, 5000, "the generator makes valid texts");
    cr_expect_gt(invalid, 5000, "and invalid ones");
    wc_buf_free(&b);
}
