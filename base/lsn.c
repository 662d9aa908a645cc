/* lsn.c - parsing and printing LSNs ("16/B374D848") and cursor positions ("16/B374D848:3"). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walcast/lsn.h"

static int parse_hex32(const char *s, const char **end, uint32_t *out)
{
    uint64_t v = 0;
    const char *p = s;

    while ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')) {
        int d = *p <= '9' ? *p - '0' : (*p | 0x20) - 'a' + 10;
        v = v * 16 + (uint64_t)d;
        if (v > UINT32_MAX)
            return -1;
        p++;
    }
    if (p == s || p - s > 8)
        return -1;
    *out = (uint32_t)v;
    *end = p;
    return 0;
}

/* Parse the LSN at s; *end is set past it. */
static int parse_lsn_prefix(const char *s, const char **end, wc_lsn *out)
{
    uint32_t hi, lo;
    const char *p;

    if (s == NULL || parse_hex32(s, &p, &hi) < 0 || *p != '/' || parse_hex32(p + 1, &p, &lo) < 0)
        return -1;
    *out = ((uint64_t)hi << 32) | lo;
    *end = p;
    return 0;
}

int wc_lsn_parse(const char *s, wc_lsn *out)
{
    const char *end;
    wc_lsn v;

    if (parse_lsn_prefix(s, &end, &v) < 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

char *wc_lsn_format(wc_lsn lsn, char *buf)
{
    snprintf(buf, WC_LSN_STRLEN, WC_LSN_FMT, WC_LSN_ARGS(lsn));
    return buf;
}

int wc_pos_parse(const char *s, struct wc_pos *out)
{
    const char *end;
    char *iend;
    wc_lsn lsn;
    long long idx;

    if (parse_lsn_prefix(s, &end, &lsn) < 0 || *end != ':')
        return -1;
    idx = strtoll(end + 1, &iend, 10);
    if (iend == end + 1 || *iend != '\0' || idx < -1)
        return -1;
    out->lsn = lsn;
    out->index = idx;
    return 0;
}

char *wc_pos_format(struct wc_pos pos, char *buf)
{
    snprintf(buf, 40, WC_LSN_FMT ":%" PRId64, WC_LSN_ARGS(pos.lsn), pos.index);
    return buf;
}
