/* opsutil.h - helpers for the operations tests (metrics, status, doctor, command line): servers of a
 * test's own (a Redis, a PostgreSQL with settings the shared one must not have), HTTP and metric text. */
#ifndef WALCAST_OPSUTIL_H
#define WALCAST_OPSUTIL_H

#include <sys/types.h>

/* A free TCP port on the loopback. */
int ops_free_port(void);
/* A fresh directory others (the postgres user) may enter; caller frees. */
char *ops_dir(const char *prefix);

/* A Redis of the test's own on its own port and directory. */
struct ops_redis {
    int port;
    char *dir;
    char *args; /* extra redis-server arguments, kept for a restart */
};
/* Start (asserts it answers PING within 5 s). args: extra arguments ("--maxmemory-policy allkeys-lru"). */
void ops_redis_start(struct ops_redis *r, const char *args);
/* Stop it (SHUTDOWN, waits until it is gone). The directory stays: start it again with ops_redis_restart. */
void ops_redis_stop(struct ops_redis *r);
void ops_redis_restart(struct ops_redis *r);
/* Stop and remove the directory. */
void ops_redis_free(struct ops_redis *r);

/* A PostgreSQL 15 of the test's own (tests/extra_pg.sh): settings "name=value name=value". */
struct ops_pg {
    int port;
    char *dir;
    char *dsn; /* host, port, user postgres, dbname postgres */
};
void ops_pg_start(struct ops_pg *p, const char *settings);
void ops_pg_free(struct ops_pg *p);

/* GET http://listen/path: the body (new string, NULL when nothing answered within timeout_ms) and the
 * HTTP status in *status (0 when nothing answered). */
char *ops_http(const char *listen, const char *path, int timeout_ms, int *status);

/* The sum of every sample of metric name whose labels contain each of the comma-separated label pairs
 * in match ("sink=\"readdb\"", or "" for all); -1 when there is no such sample. */
double ops_metric(const char *text, const char *name, const char *match);
/* Nonzero when text has a "# TYPE name" line. */
int ops_has_family(const char *text, const char *name);

/* Write text to path (asserts). */
void ops_write(const char *path, const char *text);
/* Start `walcast ARGS` with stdout and stderr appended to log; returns its pid. */
pid_t ops_spawn(const char *args, const char *log);
/* Wait for pid to exit within timeout_ms: its exit code, 128+signal, or -1 (then it is killed). */
int ops_wait(pid_t pid, int timeout_ms);

#endif
