/* err.h - error details passed back to the caller, in the style of jansson's json_error_t. */
#ifndef WALCAST_ERR_H
#define WALCAST_ERR_H

enum wc_err_code {
    WC_OK = 0,
    WC_ERR_IO,          /* connection or file trouble: retryable */
    WC_ERR_PROTOCOL,    /* the server sent something we do not understand */
    WC_ERR_CONFIG,      /* bad configuration: fix the file */
    WC_ERR_DATA,        /* an event that cannot be applied (goes to the dead-letter store) */
    WC_ERR_SLOT,        /* slot missing, wrong plugin, invalidated */
    WC_ERR_SLOT_ACTIVE, /* the slot is streaming to another process */
    WC_ERR_USAGE,
    WC_ERR_INTERNAL,
};

struct wc_err {
    int code;
    char msg[1024];
};

/* Set code and a printf-style message (PostgreSQL style: lower case, quoted names, no final period). */
void wc_err_set(struct wc_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefix the existing message with "prefix: ". */
void wc_err_prefix(struct wc_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
