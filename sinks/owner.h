/*
 * owner.h - the owner record each sink keeps (table walcast_owner in a PostgreSQL sink's database, hash
 * walcast:owner in a Redis sink's database, one entry per sink name), and what every store provides to
 * the shared claim and release of sinks/owner.c. Private to sinks/.
 */
#ifndef WALCAST_SINKS_OWNER_H
#define WALCAST_SINKS_OWNER_H

#include "walcast/sink.h"

struct wc_owner_ops {
    /* Record me as the sink's owner when none is recorded (atomically), then read the owner back into
     * *held: me when the claim took or was already mine, another one otherwise. */
    int (*claim)(struct wc_sink *s, const struct wc_owner *me, struct wc_owner *held, struct wc_err *err);
    /* The recorded owner; *found = 0 when none. */
    int (*read)(struct wc_sink *s, struct wc_owner *out, int *found, struct wc_err *err);
    /* Remove the owner record and the sink's cursor in was->slot, in one atomic unit. */
    int (*release)(struct wc_sink *s, const struct wc_owner *was, struct wc_err *err);
};

extern const struct wc_owner_ops wc_pg_owner_ops;
extern const struct wc_owner_ops wc_redis_owner_ops;

/* The record as stored: {"system_identifier":..,"database":..,"slot":..} (new string, caller frees). */
char *wc_owner_encode(const struct wc_owner *o);
/* Parse a stored record; -1 when it is not one. */
int wc_owner_decode(const char *text, struct wc_owner *o);
int wc_owner_same(const struct wc_owner *a, const struct wc_owner *b);
/* 'replication slot "s" of database "d" on system N', for messages. */
void wc_owner_describe(const struct wc_owner *o, char *buf, size_t size);

#endif
