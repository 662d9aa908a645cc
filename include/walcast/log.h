/* log.h - leveled logging to stderr; the level is tested before the arguments are evaluated. */
#ifndef WALCAST_LOG_H
#define WALCAST_LOG_H

enum wc_log_level { WC_LOG_DEBUG, WC_LOG_INFO, WC_LOG_WARNING, WC_LOG_ERROR };
enum wc_log_format { WC_LOG_PLAIN, WC_LOG_JSON };

extern int wc_log_level;
/*
 * WC_LOG_PLAIN: "2026-11-27 10:39:53.655Z walcast info: MSG".
 * WC_LOG_JSON: {"time":"2026-11-27T10:39:53.655Z","level":"info","msg":"MSG"} (one object per line).
 */
extern int wc_log_format;

void wc_log_raw(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parse "debug", "info", "warning", "error"; -1 if unknown. */
int wc_log_level_parse(const char *s);
/* Parse "plain", "json"; -1 if unknown. */
int wc_log_format_parse(const char *s);

/*
 * A secret (a password from a connection string) that no log line may show: every line replaces it by
 * "********" before it is written. Messages are written never to hold one in the first place; this is the
 * net under them (a library message that quotes a connection string, say). Call it before threads start:
 * the list is read without a lock. Secrets shorter than 4 bytes are not masked (they would mask common
 * words); at most 32 are kept.
 */
void wc_log_add_secret(const char *secret);

#define wc_log(level, ...)                                                                                   \
    do {                                                                                                     \
        if ((level) >= wc_log_level)                                                                         \
            wc_log_raw((level), __VA_ARGS__);                                                                \
    } while (0)

#define wc_debug(...) wc_log(WC_LOG_DEBUG, __VA_ARGS__)
#define wc_info(...) wc_log(WC_LOG_INFO, __VA_ARGS__)
#define wc_warning(...) wc_log(WC_LOG_WARNING, __VA_ARGS__)
#define wc_error(...) wc_log(WC_LOG_ERROR, __VA_ARGS__)

#endif
