/* run_env.c - `walcast run` as a child process against an outbox of the test's own making. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "orders_env.h"
#include "run_env.h"
#include "walcast/lsn.h"

static const char default_outbox[] =
    "CREATE TABLE domain_events (event_id bigserial PRIMARY KEY, aggregate_type text NOT NULL, "
    "aggregate_id text NOT NULL, event_type text, payload jsonb, occurred_at timestamptz NOT NULL DEFAULT "
    "now())";

void renv_setup(struct renv *e, int redis_db, const char *outbox_sql)
{
    memset(e, 0, sizeof(*e));
    e->slot = wct_unique("eo");
    e->src = wct_create_db("eosrc");
    e->read = create_read_db("eoread");
    e->redis_db = redis_db;
    e->dir = wct_tmpdir();
    e->config = xprintf("%s/walcast.yaml", e->dir);
    e->log = xprintf("%s/walcast.log", e->dir);
    wct_sql(e->src, outbox_sql ? outbox_sql : default_outbox);
    char *sql = xprintf("SELECT pg_create_logical_replication_slot('%s', 'wal2json')", e->slot);
    wct_sql(e->src, sql);
    free(sql);
    setenv("WALCAST_SOURCE_DSN", e->src, 1);
    setenv("WALCAST_SOURCE_SLOT", e->slot, 1);
    setenv("WALCAST_SINKS_READDB_DSN", e->read, 1);
    char *url = xprintf("redis://127.0.0.1:%d/%d", wct_redis_port(), redis_db);
    setenv("WALCAST_SINKS_CACHE_DSN", url, 1);
    free(url);
    redisContext *r = wct_redis(redis_db);
    freeReplyObject(redisCommand(r, "FLUSHDB"));
    redisFree(r);
}

void renv_config(struct renv *e, const char *fmt, ...)
{
    va_list ap;
    FILE *f = fopen(e->config, "w");
    cr_assert_not_null(f);
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

pid_t renv_start(struct renv *e, const char *extra)
{
    char *cmd = xprintf("exec %s run -c %s %s 2>>%s", wct_walcast(), e->config, extra ? extra : "", e->log);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    free(cmd);
    return pid;
}

static int status_code(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int renv_stop(pid_t pid, int sig, int timeout_ms)
{
    int st;
    kill(pid, sig);
    long long deadline = now_ms() + timeout_ms;
    while (now_ms() < deadline) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return status_code(st);
        sleep_ms(20);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

int renv_wait_exit(pid_t pid, int timeout_ms)
{
    int st;
    long long deadline = now_ms() + timeout_ms;
    while (now_ms() < deadline) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return status_code(st);
        sleep_ms(20);
    }
    renv_stop(pid, SIGKILL, 1000);
    return -1;
}

int renv_running(pid_t pid)
{
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    /* WNOWAIT: leave the exit status for renv_wait_exit. */
    return waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == 0;
}

char *renv_log(struct renv *e)
{
    return access(e->log, R_OK) == 0 ? read_text(e->log) : strdup("");
}

int renv_wait_log(struct renv *e, const char *text, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    do {
        char *log = renv_log(e);
        int found = strstr(log, text) != NULL;
        free(log);
        if (found)
            return 1;
        sleep_ms(20);
    } while (now_ms() < deadline);
    return 0;
}

char *renv_redis(struct renv *e, const char *fmt, ...)
{
    va_list ap;
    redisContext *r = wct_redis(e->redis_db);
    va_start(ap, fmt);
    redisReply *x = redisvCommand(r, fmt, ap);
    va_end(ap);
    cr_assert_not_null(x, "redis: %s", r->errstr);
    char *v = NULL;
    if (x->type == REDIS_REPLY_STRING || x->type == REDIS_REPLY_STATUS || x->type == REDIS_REPLY_ERROR)
        v = strndup(x->str, x->len);
    else if (x->type == REDIS_REPLY_INTEGER)
        v = xprintf("%lld", x->integer);
    freeReplyObject(x);
    redisFree(r);
    return v;
}

void renv_src(struct renv *e, const char *fmt, ...)
{
    va_list ap;
    char *sql;
    va_start(ap, fmt);
    if (vasprintf(&sql, fmt, ap) < 0)
        abort();
    va_end(ap);
    wct_sql(e->src, sql);
    free(sql);
}

static int cursor_at(struct renv *e, const char *sink, wc_lsn target)
{
    wc_lsn cur = 0;
    char *v = NULL;
    if (strcmp(sink, "readdb") == 0) {
        char *t = wct_sql_value(e->read, "SELECT to_regclass('walcast_cursor')::text");
        if (t) {
            char *sql = xprintf("SELECT lsn::text FROM walcast_cursor WHERE slot = '%s' AND sink = 'readdb'",
                                e->slot);
            v = wct_sql_value(e->read, sql);
            free(sql);
        }
        free(t);
    } else {
        v = renv_redis(e, "HGET walcast:cursor:%s %s", e->slot, sink);
        if (v && strchr(v, ':'))
            *strchr(v, ':') = '\0';
    }
    int ok = v && wc_lsn_parse(v, &cur) == 0 && cur >= target;
    free(v);
    return ok;
}

int renv_wait_applied(struct renv *e, const char *sink, int timeout_ms)
{
    char *end = wct_sql_value(e->src, "SELECT pg_current_wal_insert_lsn()");
    wc_lsn target = 0;
    wc_lsn_parse(end, &target);
    free(end);
    long long deadline = now_ms() + timeout_ms;
    do {
        if (cursor_at(e, sink, target))
            return 1;
        sleep_ms(20);
    } while (now_ms() < deadline);
    return 0;
}

void renv_drop_slot(struct renv *e, const char *slot)
{
    char *sql = xprintf(
        "DO $$ BEGIN FOR i IN 1..100 LOOP BEGIN PERFORM pg_terminate_backend(active_pid) FROM "
        "pg_replication_slots "
        "WHERE slot_name = '%s' AND active_pid IS NOT NULL; PERFORM pg_drop_replication_slot(slot_name) FROM "
        "pg_replication_slots WHERE slot_name = '%s'; RETURN; EXCEPTION WHEN object_in_use THEN PERFORM "
        "pg_sleep(0.02); END; END LOOP; END $$",
        slot, slot);
    wct_sql(e->src, sql);
    free(sql);
}
