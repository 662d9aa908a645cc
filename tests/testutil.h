/* testutil.h - helpers for the integration tests: the private servers scripts/test.sh starts. */
#ifndef WALCAST_TESTUTIL_H
#define WALCAST_TESTUTIL_H

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <pthread.h>

#include "walcast/config.h"
#include "walcast/sink.h"

/* Criterion 2.4's cr_fatal lives in <criterion/new/assert.h>; the classic API spells it this way. */
#ifndef cr_fatal
#define cr_fatal(...) cr_assert_fail(__VA_ARGS__)
#endif

/* Server DSN from WALCAST_TEST_PG_DSN (set by scripts/services.sh); the test fails when missing. */
const char *wct_pg_dsn(void);
/* Create a fresh database named prefix_<pid>_<n> and return a new DSN for it (caller frees). */
char *wct_create_db(const char *prefix);
/* Connect (asserting success). */
PGconn *wct_pg_connect(const char *dsn);
/* Run sql (several statements allowed), assert it succeeded. */
void wct_sql(const char *dsn, const char *sql);
/* First column of the first row (new string, NULL for SQL NULL or no row). */
char *wct_sql_value(const char *dsn, const char *sql);
/* Redis on WALCAST_TEST_REDIS_PORT, SELECT db; asserts. */
redisContext *wct_redis(int db);
int wct_redis_port(void);
/* Run a shell command; returns its exit status; *out (if non-NULL) gets stdout (caller frees). */
int wct_run(const char *cmd, char **out);
/* Path of the walcast binary and the source tree. */
const char *wct_walcast(void);
const char *wct_source_dir(void);
/* A fresh temp directory (caller frees). */
char *wct_tmpdir(void);
/* Name unique in this test run: prefix_<pid>_<counter>. Caller frees. */
char *wct_unique(const char *prefix);

/* A sink's commit_detached() on a thread of its own, as the engine runs it: start, then join and read
 * rc and err. */
struct wct_detached {
    struct wc_sink *s;
    struct wc_pos pos;
    int rc;
    struct wc_err err;
    pthread_t thread;
};
void wct_detached_start(struct wct_detached *d, struct wc_sink *s, struct wc_pos pos);
void wct_detached_join(struct wct_detached *d);

/* Load yaml from a fresh temporary file (its name in path, already removed). */
struct wc_config *wct_config_string(const char *yaml, struct wc_err *err, char *path, size_t size);
/* Expect loading yaml to fail with "TMPFILE:" followed by expected. */
void wct_expect_config_error(const char *yaml, const char *expected);

#endif
