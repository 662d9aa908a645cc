/* orders_env.h - the order example (examples/orders) as a test fixture, shared by test_orders.c and
 * test_faults.c: a write database (source instance) and a read database (the read instance that
 * scripts/services.sh starts, WALCAST_TEST_READ_PG_DSN), a slot, a Redis database, `walcast run` as a
 * child process, workload drivers and the check.sh oracle. */
#ifndef WALCAST_ORDERS_ENV_H
#define WALCAST_ORDERS_ENV_H

#include <sys/types.h>

#include "testutil.h"

struct redis_cluster;

struct orders_env {
    char *write_dsn; /* as postgres: write side and outbox */
    char *read_dsn;  /* as postgres: projections */
    char *config;
    char *dir;
    char *log;
    char *slot;
    int db; /* Redis database number */
    pid_t pid;
    int supervise; /* restart walcast when it exits (the kill -9 test); otherwise an exit fails */
    int restarts;
    PGconn *w, *r;
    redisContext *redis;
    struct redis_cluster *cl; /* setup_env_cluster: the Redis Cluster (rv routes by key), else NULL */
};

long long now_ms(void);
void sleep_ms(int ms);
char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *read_text(const char *path);
void load_sql(const char *dsn, const char *file);

/* First column of the first row on an open connection (new string; NULL for NULL or no row). */
char *qv(PGconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
long long qll(PGconn *c, const char *sql);
/* A Redis reply as a string (NULL for nil). */
char *rv(struct orders_env *e, const char *fmt, ...);

/* A fresh database on the read instance (WALCAST_TEST_READ_PG_DSN; the source instance when that is
 * not set, with a warning): a new DSN for it (caller frees). */
char *create_read_db(const char *prefix);

void start_walcast(struct orders_env *e);
void dump_log(struct orders_env *e);
/* Is walcast still running? Restarts it when supervising, fails the test otherwise. */
void ensure_running(struct orders_env *e);
/* Signal walcast and wait up to 5 s for it (then SIGKILL); returns its wait status, or -1 when it
 * needed the SIGKILL (or was not running). */
int stop_walcast(struct orders_env *e, int sig);
/* Fresh databases, slot, Redis db, environment for walcast and check.sh; starts walcast. */
void setup_env(struct orders_env *e, int db);
/* The same without starting walcast (start_walcast). */
void setup_env_unstarted(struct orders_env *e, int db);
/* The same with examples/orders/walcast-cluster.yaml into the Redis Cluster of scripts/services.sh (every
 * master flushed first): rv() and wait_order() read keys where the cluster keeps them. */
void setup_env_cluster(struct orders_env *e);
/* FLUSHALL on every master of the test cluster (WALCAST_TEST_REDIS_CLUSTER). */
void flush_cluster(void);
void teardown_env(struct orders_env *e);
/* Reconnect the test's own connections (write, read, Redis) after a server restart; waits up to
 * timeout_ms for each server to accept connections again. */
void reconnect_env(struct orders_env *e, int timeout_ms);

/* Wait until order id shows status in order_summary and in Redis order:<id>, supervising walcast. */
void wait_order(struct orders_env *e, long long id, const char *status, int timeout_ms);
long long place(struct orders_env *e, long long customer, const char *items);
void command(struct orders_env *e, const char *sql);
char *command_error(struct orders_env *e, const char *sql);
void expect_str(const char *what, char *got, const char *want);
void expect_nil(const char *what, char *got);
void expect_num(const char *what, char *got, double want);
char *w_iso(struct orders_env *e, long long id, const char *col);
char *w_ms(struct orders_env *e, long long id, const char *col);
char *r_iso(struct orders_env *e, long long id, const char *col);
/* Both sinks hold order id exactly as the write side has it (status-dependent Redis sets included). */
void expect_order(struct orders_env *e, long long id);
void expect_ltv(struct orders_env *e, long long customer, const char *value, const char *orders);
/* examples/orders/check.sh must pass and have checked at least min_orders orders. */
void run_check(struct orders_env *e, long long min_orders);
/* Place a marker order after everything else and wait until both sinks hold it. */
void wait_caught_up(struct orders_env *e, int timeout_ms);
/* One `CALL shop.run_workload(n, seed)` in a psql child; finish_workload waits for it. */
pid_t start_workload(struct orders_env *e, int n, double seed);
void finish_workload(struct orders_env *e, pid_t wl, int timeout_ms);

/* A workload that survives server restarts: a child process runs shop.run_workload in chunks of
 * `chunk` commands, pausing pause_ms after each (a steady load), until the outbox holds `events` rows.
 * A chunk whose connection fails is not counted as such: the child reconnects (for up to 60 s per
 * outage) and reads how many commands committed (one outbox row each) before it goes on. Exits 0 when
 * done, 1 when the source stayed away. Its stderr goes to DIR/workload.log. */
pid_t start_resilient_workload(struct orders_env *e, long long events, int chunk, int pause_ms);
/* Outbox rows committed so far (reconnects the write connection when it was lost). */
long long outbox_events(struct orders_env *e);

/* A workload that commits rate commands (outbox rows) per second until stop_workload() (SIGTERM, then
 * reaped); it reconnects when the source goes away. Its stderr goes to DIR/workload.log. */
pid_t start_paced_workload(struct orders_env *e, int rate);
void stop_workload(pid_t wl);
/* After a workload's client was stopped or killed: wait for its last CALL to end on the server. A
 * procedure that commits as it goes runs on after its client is gone, until it ends: a check that starts
 * before would compare the projections with a write side still moving. */
void wait_workload_ended(struct orders_env *e);

/* scripts/services.sh CMD WALCAST_TEST_DIR [ARG]; returns how long it took (ms). */
long long services_run(const char *cmd, const char *arg);
/* Lines of walcast's log that contain text (and b, when not NULL). */
int log_count(struct orders_env *e, const char *text);
int log_has_line(struct orders_env *e, const char *a, const char *b);
/* WALCAST_TEST_SANITIZED is set (the ASan pass): hold faults shorter. */
int sanitized_pass(void);
/* A sink's cursor as walcast stored it ("X/X:index" for readdb, "X/X:index" for cache), NULL when none. */
char *sink_cursor(struct orders_env *e, const char *sink);
/* Connect, retrying until timeout_ms has passed; NULL then. */
PGconn *connect_retry(const char *dsn, int timeout_ms);

#endif
