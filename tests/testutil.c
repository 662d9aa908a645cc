/* testutil.c - helpers for the integration tests. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static int counter;

const char *wct_pg_dsn(void)
{
    const char *dsn = getenv("WALCAST_TEST_PG_DSN");
    if (dsn == NULL || *dsn == '\0')
        cr_fatal("WALCAST_TEST_PG_DSN is not set: run the tests through scripts/test.sh");
    return dsn;
}

char *wct_unique(const char *prefix)
{
    char *s;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* pid and counter alone repeat across runs (pids are reused): add the time. */
    if (asprintf(&s, "%s_%d_%d_%ld", prefix, (int)getpid(), ++counter, (long)(ts.tv_nsec / 1000) % 1000000) <
        0)
        abort();
    return s;
}

char *wct_create_db(const char *prefix)
{
    char *name = wct_unique(prefix), *sql, *dsn;
    if (asprintf(&sql, "CREATE DATABASE %s", name) < 0)
        abort();
    wct_sql(wct_pg_dsn(), sql);
    if (asprintf(&dsn, "%s dbname=%s", wct_pg_dsn(), name) < 0)
        abort();
    free(sql);
    free(name);
    return dsn;
}

PGconn *wct_pg_connect(const char *dsn)
{
    PGconn *c = PQconnectdb(dsn);
    if (PQstatus(c) != CONNECTION_OK)
        cr_fatal("cannot connect to %s: %s", dsn, PQerrorMessage(c));
    return c;
}

void wct_sql(const char *dsn, const char *sql)
{
    PGconn *c = wct_pg_connect(dsn);
    PGresult *r = PQexec(c, sql);
    int st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        cr_fatal("sql failed: %s\n%s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

char *wct_sql_value(const char *dsn, const char *sql)
{
    PGconn *c = wct_pg_connect(dsn);
    PGresult *r = PQexec(c, sql);
    char *v = NULL;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        cr_fatal("query failed: %s\n%s", sql, PQerrorMessage(c));
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return v;
}

int wct_redis_port(void)
{
    const char *p = getenv("WALCAST_TEST_REDIS_PORT");
    if (p == NULL)
        cr_fatal("WALCAST_TEST_REDIS_PORT is not set: run the tests through scripts/test.sh");
    return atoi(p);
}

redisContext *wct_redis(int db)
{
    redisContext *c = redisConnect("127.0.0.1", wct_redis_port());
    if (c == NULL || c->err)
        cr_fatal("cannot connect to redis: %s", c ? c->errstr : "out of memory");
    redisReply *r = redisCommand(c, "SELECT %d", db);
    cr_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    return c;
}

int wct_run(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    char chunk[65536];
    size_t n;

    if (p == NULL)
        cr_fatal("popen failed: %s", cmd);
    while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0) {
        if (out) {
            if (len + n + 1 > cap) {
                cap = (len + n + 1) * 2;
                buf = realloc(buf, cap);
            }
            memcpy(buf + len, chunk, n);
            len += n;
        }
    }
    int st = pclose(p);
    if (out) {
        if (buf == NULL)
            buf = calloc(1, 1);
        else
            buf[len] = '\0';
        *out = buf;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

const char *wct_walcast(void)
{
    return WC_BINARY;
}

const char *wct_source_dir(void)
{
    return WC_SOURCE_DIR;
}

/* Inside the servers' directory when there is one (scripts/test.sh removes it at the end): the thousands a
 * full run makes (a log and a configuration each) do not stay behind in /tmp. */
char *wct_tmpdir(void)
{
    const char *root = getenv("WALCAST_TEST_DIR");
    char *t = malloc(strlen(root ? root : "/tmp") + 32);
    sprintf(t, "%s/walcast-test-XXXXXX", root ? root : "/tmp");
    if (mkdtemp(t) == NULL)
        cr_fatal("mkdtemp %s failed", t);
    return t;
}

static void *detached_run(void *arg)
{
    struct wct_detached *d = arg;
    struct wc_commit c = {.cursor = d->pos};

    d->rc = d->s->ops->commit_detached(d->s, &c, &d->err);
    return NULL;
}

void wct_detached_start(struct wct_detached *d, struct wc_sink *s, struct wc_pos pos)
{
    memset(d, 0, sizeof(*d));
    d->s = s;
    d->pos = pos;
    cr_assert_not_null(s->ops->detach);
    cr_assert_not_null(s->ops->commit_detached);
    s->ops->detach(s);
    cr_assert_eq(pthread_create(&d->thread, NULL, detached_run, d), 0);
}

void wct_detached_join(struct wct_detached *d)
{
    pthread_join(d->thread, NULL);
}

struct wc_config *wct_config_string(const char *yaml, struct wc_err *err, char *path, size_t size)
{
    snprintf(path, size, "/tmp/walcast_test_config_XXXXXX.yaml");
    int fd = mkstemps(path, 5);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    struct wc_config *cfg = wc_config_load(path, err);
    unlink(path);
    return cfg;
}

void wct_expect_config_error(const char *yaml, const char *expected)
{
    char path[128], want[1200];
    struct wc_err err = {0};
    struct wc_config *cfg = wct_config_string(yaml, &err, path, sizeof(path));

    cr_assert_null(cfg, "loaded but expected: %s", expected);
    cr_expect_eq(err.code, WC_ERR_CONFIG);
    snprintf(want, sizeof(want), "%s:%s", path, expected);
    cr_expect_str_eq(err.msg, want);
}
