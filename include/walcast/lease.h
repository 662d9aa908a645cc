/* lease.h - one engine per slot: a lease on the source that an engine takes before it touches any sink
 * and holds for its whole session, and who the source is (the owner walcast records in each sink). */
#ifndef WALCAST_LEASE_H
#define WALCAST_LEASE_H

#include "walcast/err.h"

struct pg_conn;
struct wc_lease;

/*
 * Connect to the source (a plain SQL connection of the lease's own) and learn who it is: its system
 * identifier and database. NULL with err (WC_ERR_IO when it cannot be reached).
 */
struct wc_lease *wc_lease_open(const char *dsn, struct wc_err *err);
/*
 * Take the lease of slot: a session-level advisory lock, so it lasts while the connection does and dies
 * with it (a crashed engine's lease is gone as soon as the server notices). 1 when taken; 0 when another
 * session holds it, with *holder its backend PID and err (WC_ERR_SLOT_ACTIVE) naming it; -1 with err.
 */
int wc_lease_take(struct wc_lease *l, const char *slot, int *holder, struct wc_err *err);
const char *wc_lease_system_id(const struct wc_lease *l); /* pg_control_system().system_identifier */
const char *wc_lease_database(const struct wc_lease *l);  /* current_database() */
int wc_lease_pid(const struct wc_lease *l);               /* the source backend that holds the lease */
/* The lease's connection, for short queries of the holder (slot status, the outbox check). */
struct pg_conn *wc_lease_conn(struct wc_lease *l);
/* Give the lease back at once (not whenever the server notices the connection is gone) and close. */
void wc_lease_close(struct wc_lease *l);

#endif
