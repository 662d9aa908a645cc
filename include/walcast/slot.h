/* slot.h - replication slots for DBAs: create, status, drop, and a check of the server's settings. */
#ifndef WALCAST_SLOT_H
#define WALCAST_SLOT_H

#include <stdint.h>

#include "walcast/err.h"
#include "walcast/lsn.h"

struct wc_slot_status {
    char name[64];
    char plugin[64];
    char slot_type[16];
    char database[64];
    int active;
    int active_pid;       /* 0 when none */
    int active_walsender; /* the active pid is a walsender (not a backend dropping or advancing the slot) */
    wc_lsn restart_lsn;   /* 0 when invalid */
    wc_lsn confirmed_flush_lsn;
    wc_lsn current_wal_lsn;
    int64_t retained_bytes; /* WAL held back by the slot: current - restart_lsn; -1 when unknown */
    int64_t lag_bytes;      /* current - confirmed_flush_lsn; -1 when unknown */
    char wal_status[16];    /* reserved, extended, unreserved, lost */
    int64_t safe_wal_size;  /* -1 when NULL (no max_slot_wal_keep_size) */
};

/* Create a wal2json logical slot. *existed = 1 when a wal2json slot of that name was already there.
 * A slot with another plugin: -1 with WC_ERR_SLOT. */
int wc_slot_create(const char *dsn, const char *slot, int *existed, wc_lsn *lsn, struct wc_err *err);
/* *found = 0 when there is no such slot. */
int wc_slot_status(const char *dsn, const char *slot, struct wc_slot_status *st, int *found,
                   struct wc_err *err);
/* The same on an open connection (a plain SQL one). */
struct pg_conn;
int wc_slot_status_conn(struct pg_conn *conn, const char *slot, struct wc_slot_status *st, int *found,
                        struct wc_err *err);
/* Drop; an active slot is refused (WC_ERR_SLOT) unless force, which terminates its walsender first.
 * A missing slot: -1 with WC_ERR_SLOT. */
int wc_slot_drop(const char *dsn, const char *slot, int force, struct wc_err *err);

/* One line of `walcast slot check`. */
struct wc_check_item {
    char name[64];
    int ok;
    char detail[1600];
};
/*
 * Check wal_level, slots and senders, REPLICATION privilege, the wal2json plugin and, when ob is not
 * NULL, the outbox (outbox.h: table, columns, types, privilege) and its replay order, which is a failure
 * only when need_order (a sink may be rebuilt). Returns the number of items written to items (at most
 * max), or -1 with err when the server cannot be reached.
 */
struct wc_outbox;
int wc_slot_check(const char *dsn, const struct wc_outbox *ob, int need_order, struct wc_check_item *items,
                  int max, struct wc_err *err);

#endif
