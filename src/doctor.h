/* doctor.h - `walcast doctor`: the checks of each area and how they report. Private to src/. */
#ifndef WALCAST_SRC_DOCTOR_H
#define WALCAST_SRC_DOCTOR_H

#include <jansson.h>

#include "walcast/config.h"

enum { DOC_OK, DOC_WARN, DOC_FAIL };

/* The checks so far, in order: a JSON array of {area, check, status, detail, fix}. */
struct doctor {
    const struct wc_config *cfg;
    json_t *checks;
    int count[3];
};

/* Add one check. fix: the exact SQL or setting that fixes it ("" for an OK line). */
void wc__doctor_add(struct doctor *d, const char *area, const char *check, int level, const char *fix,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* The source: reachable, wal_level, slots and senders, REPLICATION, wal2json, max_slot_wal_keep_size,
 * wal_sender_timeout, the slot itself (doctor_source.c). Returns the connection for the later checks
 * (PGconn *, NULL when unreachable). */
void *wc__doctor_source(struct doctor *d);
/* The outbox table: it exists, with the configured columns, and the role may SELECT it. */
void wc__doctor_outbox(struct doctor *d, void *src);
/* Event types: every one a projection names has occurred, every one that occurred is named or ignored. */
void wc__doctor_events(struct doctor *d, void *src);
/* Each sink: read databases (reachable, statements prepare, walcast's tables) and Redis servers
 * (reachable, maxmemory-policy, persistence, cluster mode) (doctor_sinks.c). */
void wc__doctor_sinks(struct doctor *d);

#endif
