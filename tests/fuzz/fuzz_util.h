/* fuzz_util.h - helpers shared by the fuzz targets (each target includes it once). */
#ifndef WALCAST_FUZZ_UTIL_H
#define WALCAST_FUZZ_UTIL_H

#include <stddef.h>

/* Nonzero when s[0..n) is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF). */
static inline int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            return 0;
        }
        if (i + len > n || s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return 0;
        i += len;
    }
    return 1;
}

/* template-2's trigger: "]" c digits "]" with c not '.' or '['. */
static inline int has_known_template_2(const char *s, size_t n)
{
    for (size_t i = 0; i + 3 < n; i++) {
        if (s[i] != ']' || s[i + 1] == '.' || s[i + 1] == '[')
            continue;
        size_t j = i + 2;
        while (j < n && s[j] >= '0' && s[j] <= '9')
            j++;
        if (j > i + 2 && j < n && s[j] == ']')
            return 1;
    }
    return 0;
}

/* template-3's trigger: more than 10 "json" in the text (each json filter can double the output). */
static inline int has_known_template_3(const char *s, size_t n)
{
    int k = 0;
    for (size_t i = 0; i + 4 <= n; i++)
        if (memcmp(s + i, "json", 4) == 0 && ++k > 10)
            return 1;
    return 0;
}

#endif
