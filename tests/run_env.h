/* run_env.h - `walcast run` as a child process against an outbox of the test's own making: a source
 * database and slot, a read database and a Redis database, a configuration written by the test. Shared by
 * test_outbox.c, test_replay.c and test_owner.c. */
#ifndef WALCAST_RUN_ENV_H
#define WALCAST_RUN_ENV_H

#include <sys/types.h>

#include "testutil.h"

struct renv {
    char *src;  /* source database DSN (the outbox) */
    char *read; /* read database DSN (sink readdb) */
    char *slot;
    int redis_db; /* sink cache */
    char *dir;
    char *config;
    char *log;
};

/*
 * Fresh source and read databases, the outbox made by outbox_sql (NULL: walcast's default outbox with
 * bigserial ids), a wal2json slot, an empty Redis database, and WALCAST_SOURCE_DSN, WALCAST_SOURCE_SLOT,
 * WALCAST_SINKS_READDB_DSN and WALCAST_SINKS_CACHE_DSN in the environment for the children.
 */
void renv_setup(struct renv *e, int redis_db, const char *outbox_sql);
/* Write the configuration file (printf format). */
void renv_config(struct renv *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* `walcast run -c CONFIG EXTRA`, its stderr appended to the log; dies with the test process. */
pid_t renv_start(struct renv *e, const char *extra);
/* Signal and wait up to timeout_ms (then SIGKILL): its exit code, 128+signal, or -1 when killed. */
int renv_stop(pid_t pid, int sig, int timeout_ms);
/* Wait for it to exit on its own: its exit code, or -1 (then it is killed) after timeout_ms. */
int renv_wait_exit(pid_t pid, int timeout_ms);
/* Is it still running? */
int renv_running(pid_t pid);
char *renv_log(struct renv *e);
/* Wait until the log contains text; 1 when it did within timeout_ms. */
int renv_wait_log(struct renv *e, const char *text, int timeout_ms);
/* Wait until sink's cursor in the read database (sink "readdb") or Redis (any other name) reaches the
 * source's current WAL insert position; 1 when it did. */
int renv_wait_applied(struct renv *e, const char *sink, int timeout_ms);
/* A Redis reply as a new string (integers printed, nil NULL). */
char *renv_redis(struct renv *e, const char *fmt, ...);
/* Run sql on the source. */
void renv_src(struct renv *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop the slot (terminating its walsender) so slots do not pile up. */
void renv_drop_slot(struct renv *e, const char *slot);

#endif
