/* opsutil.c - helpers for the operations tests (see opsutil.h). */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "opsutil.h"
#include "testutil.h"

static long long ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ops_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

char *ops_dir(const char *prefix)
{
    char *d;
    cr_assert(asprintf(&d, "/tmp/%s-XXXXXX", prefix) > 0);
    cr_assert(mkdtemp(d) != NULL);
    chmod(d, 0755);
    return d;
}

/* redis-cli's arguments for a password given with --requirepass in args (the test's own). */
static void auth_args(const struct ops_redis *r, char *buf, size_t size)
{
    const char *pw = strstr(r->args, "--requirepass ");
    buf[0] = '\0';
    if (pw)
        snprintf(buf, size, "-a %.*s --no-auth-warning", (int)strcspn(pw + 14, " "), pw + 14);
}

/*
 * Servers a test started and has not stopped yet: stopped at exit, so that a failed assertion (which ends
 * the test without its teardown) leaves no server behind.
 */
#define MAX_OWNED 8
static struct {
    char dir[256];
    int redis; /* 1 a Redis (pid file in dir), 0 a PostgreSQL (tests/extra_pg.sh) */
} owned[MAX_OWNED];

static void stop_owned(void)
{
    for (int i = 0; i < MAX_OWNED; i++) {
        char *cmd = NULL;
        int n;
        if (owned[i].dir[0] == '\0')
            continue;
        if (owned[i].redis)
            n = asprintf(&cmd, "kill $(cat %s/redis.pid 2>/dev/null) 2>/dev/null; sleep 0.2; rm -rf %s",
                         owned[i].dir, owned[i].dir);
        else
            n = asprintf(&cmd, "%s/tests/extra_pg.sh stop %s; rm -rf %s", wct_source_dir(), owned[i].dir,
                         owned[i].dir);
        if (n > 0 && system(cmd) != 0) {
            /* best effort: the process is ending */
        }
        free(cmd);
        owned[i].dir[0] = '\0';
    }
}

static void own(const char *dir, int redis)
{
    static int registered;
    if (!registered) {
        atexit(stop_owned);
        registered = 1;
    }
    for (int i = 0; i < MAX_OWNED; i++)
        if (owned[i].dir[0] == '\0') {
            snprintf(owned[i].dir, sizeof(owned[i].dir), "%s", dir);
            owned[i].redis = redis;
            return;
        }
}

static void disown(const char *dir)
{
    for (int i = 0; i < MAX_OWNED; i++)
        if (strcmp(owned[i].dir, dir) == 0)
            owned[i].dir[0] = '\0';
}

static int redis_ping(const struct ops_redis *r)
{
    char cmd[256], auth[160], *out = NULL;
    auth_args(r, auth, sizeof(auth));
    snprintf(cmd, sizeof(cmd), "redis-cli -p %d %s ping 2>/dev/null", r->port, auth);
    wct_run(cmd, &out);
    int ok = out && strncmp(out, "PONG", 4) == 0;
    free(out);
    return ok;
}

static void redis_launch(struct ops_redis *r)
{
    char *cmd;
    cr_assert(
        asprintf(&cmd,
                 "redis-server --bind 127.0.0.1 --port %d --dir %s --daemonize yes --pidfile %s/redis.pid "
                 "--logfile %s/redis.log --save '' --appendonly yes --appendfsync always %s",
                 r->port, r->dir, r->dir, r->dir, r->args) > 0);
    cr_assert_eq(wct_run(cmd, NULL), 0, "%s", cmd);
    free(cmd);
    long long deadline = ms_now() + 5000;
    while (!redis_ping(r)) {
        cr_assert(ms_now() < deadline, "redis on port %d did not start", r->port);
        usleep(20000);
    }
}

void ops_redis_start(struct ops_redis *r, const char *args)
{
    r->port = ops_free_port();
    r->dir = ops_dir("walcast-redis");
    r->args = strdup(args ? args : "");
    own(r->dir, 1);
    redis_launch(r);
}

void ops_redis_stop(struct ops_redis *r)
{
    char cmd[256], auth[160];
    auth_args(r, auth, sizeof(auth));
    snprintf(cmd, sizeof(cmd), "redis-cli -p %d %s shutdown >/dev/null 2>&1", r->port, auth);
    wct_run(cmd, NULL);
    long long deadline = ms_now() + 5000;
    while (redis_ping(r)) {
        cr_assert(ms_now() < deadline, "redis on port %d did not stop", r->port);
        usleep(20000);
    }
    /* The port is free once the process is gone. */
    char pidfile[512], *out = NULL;
    snprintf(pidfile, sizeof(pidfile), "cat %s/redis.pid 2>/dev/null", r->dir);
    wct_run(pidfile, &out);
    int pid = out ? atoi(out) : 0;
    free(out);
    while (pid > 0 && kill(pid, 0) == 0 && ms_now() < deadline)
        usleep(20000);
}

void ops_redis_restart(struct ops_redis *r)
{
    redis_launch(r);
}

void ops_redis_free(struct ops_redis *r)
{
    char *cmd;
    if (r->dir == NULL)
        return;
    ops_redis_stop(r);
    disown(r->dir);
    cr_assert(asprintf(&cmd, "rm -rf %s", r->dir) > 0);
    wct_run(cmd, NULL);
    free(cmd);
    free(r->dir);
    free(r->args);
    r->dir = NULL;
}

void ops_pg_start(struct ops_pg *p, const char *settings)
{
    char *cmd, *out = NULL;
    p->port = ops_free_port();
    p->dir = ops_dir("walcast-pg");
    own(p->dir, 0);
    cr_assert(asprintf(&cmd, "%s/tests/extra_pg.sh start %s %d %s 2>&1", wct_source_dir(), p->dir, p->port,
                       settings ? settings : "") > 0);
    int rc = wct_run(cmd, &out);
    cr_assert_eq(rc, 0, "extra PostgreSQL did not start: %s", out);
    free(out);
    free(cmd);
    cr_assert(asprintf(&p->dsn, "host=127.0.0.1 port=%d user=postgres dbname=postgres", p->port) > 0);
}

void ops_pg_free(struct ops_pg *p)
{
    char *cmd;
    if (p->dir == NULL)
        return;
    cr_assert(asprintf(&cmd, "%s/tests/extra_pg.sh stop %s; rm -rf %s", wct_source_dir(), p->dir, p->dir) >
              0);
    wct_run(cmd, NULL);
    disown(p->dir);
    free(cmd);
    free(p->dir);
    free(p->dsn);
    p->dir = NULL;
}

char *ops_http(const char *listen, const char *path, int timeout_ms, int *status)
{
    const char *colon = strrchr(listen, ':');
    struct sockaddr_in a = {.sin_family = AF_INET};
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    char req[256], buf[65536];
    size_t len = 0;
    int fd;

    *status = 0;
    a.sin_port = htons((uint16_t)atoi(colon + 1));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return NULL;
    }
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, listen);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return NULL;
    }
    char *all = NULL;
    size_t cap = 0;
    ssize_t got;
    while ((got = recv(fd, buf, sizeof(buf), 0)) > 0) {
        if (len + (size_t)got + 1 > cap) {
            cap = (len + (size_t)got + 1) * 2;
            all = realloc(all, cap);
        }
        memcpy(all + len, buf, (size_t)got);
        len += (size_t)got;
    }
    close(fd);
    if (all == NULL)
        return NULL;
    all[len] = '\0';
    char *body = strstr(all, "\r\n\r\n");
    if (strncmp(all, "HTTP/1.", 7) != 0 || body == NULL) {
        free(all);
        return NULL;
    }
    *status = atoi(all + 9);
    char *out = strdup(body + 4);
    free(all);
    return out;
}

double ops_metric(const char *text, const char *name, const char *match)
{
    double sum = 0;
    int found = 0;
    size_t n = strlen(name);
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, name, n) != 0 || (line[n] != '{' && line[n] != ' '))
            continue;
        const char *end = strchr(line, '\n');
        size_t llen = end ? (size_t)(end - line) : strlen(line);
        char *l = strndup(line, llen);
        int ok = 1;
        char *m = strdup(match ? match : ""), *save = NULL;
        for (char *tok = strtok_r(m, ",", &save); tok && ok; tok = strtok_r(NULL, ",", &save)) {
            const char *close = strchr(l, '}');
            char *at = strstr(l, tok);
            ok = at != NULL && close != NULL && at < close;
        }
        free(m);
        if (ok) {
            const char *v = l[n] == '{' ? strchr(l, '}') + 1 : l + n;
            sum += strtod(v, NULL);
            found = 1;
        }
        free(l);
    }
    return found ? sum : -1;
}

int ops_has_family(const char *text, const char *name)
{
    char *pat;
    cr_assert(asprintf(&pat, "# TYPE %s ", name) > 0);
    int ok = strstr(text, pat) != NULL;
    free(pat);
    return ok;
}

void ops_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

pid_t ops_spawn(const char *args, const char *log)
{
    char *cmd;
    cr_assert(asprintf(&cmd, "exec %s %s >>%s 2>&1", wct_walcast(), args, log) > 0);
    fflush(NULL);
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

int ops_wait(pid_t pid, int timeout_ms)
{
    int st;
    long long deadline = ms_now() + timeout_ms;
    while (ms_now() < deadline) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}
