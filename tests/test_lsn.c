/* test_lsn.c - LSN and cursor position parsing and printing. */
#include <criterion/criterion.h>
#include <string.h>

#include "walcast/lsn.h"

Test(lsn, round_trip)
{
    const char *cases[] = {"0/0", "0/16B3748", "16/B374D848", "FFFFFFFF/FFFFFFFF", "1/0"};
    char buf[WC_LSN_STRLEN];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wc_lsn l;
        cr_assert_eq(wc_lsn_parse(cases[i], &l), 0, "%s", cases[i]);
        cr_assert_str_eq(wc_lsn_format(l, buf), cases[i]);
    }
}

Test(lsn, value)
{
    wc_lsn l;
    cr_assert_eq(wc_lsn_parse("16/B374D848", &l), 0);
    cr_assert_eq(l, ((uint64_t)0x16 << 32) | 0xB374D848u);
    cr_assert_eq(wc_lsn_parse("0/16b3748", &l), 0, "lower case hex is accepted");
    cr_assert_eq(l, 0x16B3748u);
}

Test(lsn, rejects)
{
    const char *bad[] = {"", "0", "/0", "0/", "G/0", "0/0/0", "123456789/0", "0/123456789", " 0/0", "0/0 "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wc_lsn l;
        cr_assert_eq(wc_lsn_parse(bad[i], &l), -1, "\"%s\" must be rejected", bad[i]);
    }
    wc_lsn l;
    cr_assert_eq(wc_lsn_parse(NULL, &l), -1);
}

Test(pos, round_trip_and_order)
{
    struct wc_pos p;
    char buf[40];
    cr_assert_eq(wc_pos_parse("0/152AC20:3", &p), 0);
    cr_assert_eq(p.lsn, 0x152AC20u);
    cr_assert_eq(p.index, 3);
    cr_assert_str_eq(wc_pos_format(p, buf), "0/152AC20:3");
    cr_assert_eq(wc_pos_parse("1/0:-1", &p), 0);
    cr_assert_eq(p.index, -1);
    cr_assert_eq(wc_pos_parse("1/0:-2", &p), -1);
    cr_assert_eq(wc_pos_parse("1/0", &p), -1);
    cr_assert_eq(wc_pos_parse("1/0:x", &p), -1);

    struct wc_pos cur = {100, 2};
    cr_assert(wc_pos_covered(cur, (struct wc_pos){99, 7}), "older transaction is covered");
    cr_assert(wc_pos_covered(cur, (struct wc_pos){100, 2}), "the cursor's own event is covered");
    cr_assert(!wc_pos_covered(cur, (struct wc_pos){100, 3}), "the next event in the transaction is not");
    cr_assert(!wc_pos_covered(cur, (struct wc_pos){101, 0}), "a later transaction is not");
    struct wc_pos done = {200, -1};
    cr_assert(wc_pos_covered(done, (struct wc_pos){199, 1000}));
    cr_assert(!wc_pos_covered(done, (struct wc_pos){200, 0}),
              "a transaction committing at the end LSN is new");
}
