/* log.h - leveled logging to stderr; the level is tested before the arguments are evaluated. */
#ifndef WALCAST_LOG_H
#define WALCAST_LOG_H

enum wc_log_level { WC_LOG_DEBUG, WC_LOG_INFO, WC_LOG_WARNING, WC_LOG_ERROR };

extern int wc_log_level;

void wc_log_raw(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parse "debug", "info", "warning", "error"; -1 if unknown. */
int wc_log_level_parse(const char *s);

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
