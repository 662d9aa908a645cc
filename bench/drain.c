/* bench/drain.c - time one `walcast run` drain of a backlog (a helper of scripts/bench.sh).
 *
 *   drain --slot S --after LSN --last-idx K [--pg DSN] [--pg-sink NAME] [--redis HOST:PORT]
 *         [--redis-sink NAME] [--redis-cluster HOST:PORT --events N] [--timeout SEC] [--log FILE]
 *         -- COMMAND ARGS...
 *
 * Starts COMMAND (walcast run -c ..., possibly under valgrind), polls the sink cursors every 5 ms (the
 * PostgreSQL sink: walcast_cursor; the Redis sink: HGET walcast:cursor:<slot> <sink>) on connections
 * opened before the start, and stops when every given sink has applied the backlog's last event. The
 * last event is the K-th (index K) of the backlog's last transaction, whose commit LSN is the only one
 * above LSN (the generator takes LSN inside that transaction, after its inserts): a cursor covers it
 * when its LSN is >= LSN and its index is >= K or -1 (a finished transaction). Then it reads the peak
 * RSS (VmHWM) and CPU time of COMMAND, sends SIGTERM, waits, and prints key=value lines:
 *   elapsed_ms, rss_kib, cpu_ms, exit.
 * Exit 0 when the backlog was drained, 1 on timeout or when COMMAND died early, 2 on usage errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int parse_lsn(const char *s, uint64_t *out)
{
    unsigned hi, lo;
    if (s == NULL || sscanf(s, "%X/%X", &hi, &lo) != 2)
        return -1;
    *out = ((uint64_t)hi << 32) | lo;
    return 0;
}

static uint64_t after;
static long long last_idx;

static int covers(uint64_t lsn, long long idx)
{
    return lsn >= after && (idx == -1 || idx >= last_idx);
}

/* 1: the PostgreSQL sink's cursor covers the target, 0: not yet (or no cursor table yet). */
static int pg_done(PGconn *c, const char *slot, const char *sink)
{
    const char *p[2] = {slot, sink};
    PGresult *r = PQexecParams(c, "SELECT lsn::text, idx FROM walcast_cursor WHERE slot = $1 AND sink = $2",
                               2, NULL, p, NULL, NULL, 0);
    int done = 0;
    uint64_t lsn;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
        parse_lsn(PQgetvalue(r, 0, 0), &lsn) == 0)
        done = covers(lsn, atoll(PQgetvalue(r, 0, 1)));
    PQclear(r);
    return done;
}

/* In a Redis Cluster (--redis-cluster): a command on the key's master, following one MOVED (the connection
 * moves there). */
static redisReply *cluster_command(redisContext **c, const char *fmt, const char *key)
{
    for (int tries = 0; tries < 3; tries++) {
        redisReply *r = redisCommand(*c, fmt, key);
        char host[256];
        int slot, port;
        if (r == NULL || r->type != REDIS_REPLY_ERROR ||
            sscanf(r->str, "MOVED %d %255[^:]:%d", &slot, host, &port) != 3)
            return r;
        freeReplyObject(r);
        redisFree(*c);
        *c = redisConnect(host, port);
        if (*c == NULL || (*c)->err) {
            fprintf(stderr, "drain: redis cluster node %s:%d: %s\n", host, port,
                    *c ? (*c)->errstr : "out of memory");
            exit(2);
        }
    }
    return NULL;
}

/* The cluster sink's cursor is one per hash slot: the drain is done when the one key every event of the
 * backlog writes holds them all (ZCARD orders:status:placed). */
static long long zcard_want;
static int cluster_done(redisContext **c)
{
    redisReply *r = cluster_command(c, "ZCARD %s", "orders:status:placed");
    int done = r && r->type == REDIS_REPLY_INTEGER && r->integer >= zcard_want;
    if (r)
        freeReplyObject(r);
    return done;
}

static int redis_done(redisContext *c, const char *slot, const char *sink)
{
    redisReply *r = redisCommand(c, "HGET walcast:cursor:%s %s", slot, sink);
    int done = 0;
    uint64_t lsn;
    if (r && r->type == REDIS_REPLY_STRING && parse_lsn(r->str, &lsn) == 0) {
        const char *colon = strrchr(r->str, ':');
        done = colon && covers(lsn, atoll(colon + 1));
    }
    if (r)
        freeReplyObject(r);
    return done;
}

static long proc_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    long v = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, strlen(field)) == 0)
            v = atol(line + strlen(field) + 1);
    fclose(f);
    return v;
}

static long proc_cpu_ms(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (long)((ut + st) * 1000 / sysconf(_SC_CLK_TCK));
}

int main(int argc, char **argv)
{
    int cluster = 0;
    const char *slot = NULL, *pg = NULL, *pg_sink = "readdb", *redis = NULL, *redis_sink = "cache",
               *log = NULL;
    const char *after_s = NULL;
    double timeout = 900;
    int i;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (i + 1 >= argc)
            goto usage;
        const char *k = argv[i], *v = argv[++i];
        if (!strcmp(k, "--slot"))
            slot = v;
        else if (!strcmp(k, "--after"))
            after_s = v;
        else if (!strcmp(k, "--last-idx"))
            last_idx = atoll(v);
        else if (!strcmp(k, "--pg"))
            pg = v;
        else if (!strcmp(k, "--pg-sink"))
            pg_sink = v;
        else if (!strcmp(k, "--redis"))
            redis = v;
        else if (!strcmp(k, "--redis-sink"))
            redis_sink = v;
        else if (!strcmp(k, "--redis-cluster"))
            redis = v, cluster = 1;
        else if (!strcmp(k, "--events"))
            zcard_want = atoll(v);
        else if (!strcmp(k, "--timeout"))
            timeout = atof(v);
        else if (!strcmp(k, "--log"))
            log = v;
        else
            goto usage;
    }
    if (i >= argc || !slot || parse_lsn(after_s, &after) < 0 || (!pg && !redis))
        goto usage;

    PGconn *pc = NULL;
    redisContext *rc = NULL;
    if (pg) {
        pc = PQconnectdb(pg);
        if (PQstatus(pc) != CONNECTION_OK) {
            fprintf(stderr, "drain: %s", PQerrorMessage(pc));
            return 2;
        }
    }
    if (redis) {
        char host[256];
        int port;
        if (sscanf(redis, "%255[^:]:%d", host, &port) != 2)
            goto usage;
        rc = redisConnect(host, port);
        if (!rc || rc->err) {
            fprintf(stderr, "drain: redis: %s\n", rc ? rc->errstr : "out of memory");
            return 2;
        }
    }

    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        if (log) {
            if (!freopen(log, "w", stdout) || dup2(fileno(stdout), 2) < 0)
                _exit(127);
        }
        execvp(argv[i], argv + i);
        perror("drain: exec");
        _exit(127);
    }
    int status = 0, ok = 0, exited = 0;
    /* Every 5 ms: fine enough for drains of seconds (+2.5 ms on average), and the poll's own queries
     * take little CPU from the servers it measures. */
    struct timespec nap = {0, 5000000};
    for (;;) {
        int d = (!pc || pg_done(pc, slot, pg_sink)) &&
                (!rc || (cluster ? cluster_done(&rc) : redis_done(rc, slot, redis_sink)));
        if (d) {
            ok = 1;
            break;
        }
        if (waitpid(pid, &status, WNOHANG) == pid) {
            exited = 1;
            fprintf(stderr, "drain: the command exited early (status %d)%s%s\n", status, log ? ", see " : "",
                    log ? log : "");
            break;
        }
        if (now_s() - t0 > timeout) {
            fprintf(stderr, "drain: timeout after %.0f s\n", timeout);
            break;
        }
        nanosleep(&nap, NULL);
    }
    double elapsed = now_s() - t0;
    long hwm = exited ? -1 : proc_kib(pid, "VmHWM:");
    long cpu = exited ? -1 : proc_cpu_ms(pid);
    if (!exited) {
        kill(pid, SIGTERM);
        double t1 = now_s();
        while (waitpid(pid, &status, WNOHANG) != pid) {
            if (now_s() - t1 > 600) { /* callgrind may take a while to write its output */
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                break;
            }
            nanosleep(&nap, NULL);
        }
    }
    printf("elapsed_ms=%.1f\nrss_kib=%ld\ncpu_ms=%ld\nexit=%d\n", elapsed * 1000, hwm, cpu,
           WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    if (pc)
        PQfinish(pc);
    if (rc)
        redisFree(rc);
    return ok ? 0 : 1;
usage:
    fprintf(
        stderr,
        "usage: drain --slot S --after LSN --last-idx K [--pg DSN] [--pg-sink NAME] [--redis HOST:PORT] "
        "[--redis-sink NAME] [--redis-cluster HOST:PORT --events N] [--timeout SEC] [--log FILE] -- COMMAND "
        "ARGS...\n");
    return 2;
}
