/* bench/probe.c - commit-to-visible latency of walcast's projections under a steady load (scripts/bench.sh).
 *
 *   probe --write DSN --read DSN --redis HOST:PORT --rate N --seconds S --first-id ID [--threads T]
 *         [--label L] [--redis-zset KEY] [--wait HOST:PORT --slot SLOT [--waiters W]]
 *
 * Load: N OrderPlaced events per second for S seconds, each its own transaction (an autocommit INSERT
 * into public.domain_events with the order example's payload; order ids from ID up, so every event is a
 * new order), spread over T inserter connections on a fixed schedule (event k is due at t0 + k/N).
 * The commit time of an event is the clock when its INSERT returns (synchronous_commit = on: the commit
 * is durable and visible then).
 *
 * Two measurements of "commit to visible", reported separately:
 *  - probe: separate clients poll the projections for the committed events not seen yet, every
 *    0.2 ms: Redis with one pipelined EXISTS order:<id> per pending event (with --redis-zset KEY, for a
 *    Redis Cluster: ZSCORE KEY <id> on KEY's master, e.g. orders:status:placed), PostgreSQL with
 *    SELECT order_id FROM order_summary WHERE order_id = ANY(...). Latency = time of the reply that first
 *    shows the event - commit time (client clocks; resolution one poll round, ~0.3 ms).
 *  - commit_ts: the server's commit timestamps (track_commit_timestamp = on):
 *    PostgreSQL: pg_xact_commit_timestamp of the order_summary row (walcast's sink transaction, i.e. when
 *    it became visible) - pg_xact_commit_timestamp of the outbox row. Both from the same server clock,
 *    independent of polling. Redis has no commit timestamp: time first seen by the poller (wall clock)
 *    - the outbox row's commit timestamp.
 *
 * Read your writes (--wait, walcast's metrics endpoint): each inserter takes its consistency token right
 * after the commit (pg_current_wal_insert_lsn() in the same session) and sends GET
 * /wait?lsn=TOKEN&sink=cache itself, as a service's request handler would, on a free keep-alive connection
 * of a pool (W opened up front, default 16, more when all are busy: one wait at a time on each); one
 * thread reads every answer (epoll), as an event loop of an asynchronous HTTP client would. Alongside the
 * pollers; and a subscriber on Redis (SUBSCRIBE walcast:applied:SLOT, the recipe of a Redis-only service)
 * marks every token its messages reach. Series rw_http (commit to /wait's 200) and rw_redis (commit to the
 * message that reached the token).
 *
 * Prints key=value lines: <label>_<series>_{p50,p95,p99,max}_ms for series redis_probe, pg_probe,
 * redis_commit_ts, pg_commit_ts (and rw_http, rw_redis), plus the achieved rate and how late the inserter
 * was behind schedule.
 */
#define _GNU_SOURCE
#include <hiredis/hiredis.h>
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct sample {
    int64_t id;
    double commit_mono, commit_wall; /* when the INSERT returned */
    double redis_mono, redis_wall;   /* first poll reply that showed it */
    double pg_mono;
    double ts_event, ts_read; /* server commit timestamps (epoch s) */
    atomic_int committed;
    int redis_seen, pg_seen;
    uint64_t token;           /* pg_current_wal_insert_lsn() after the commit (--wait) */
    double rw_http, rw_redis; /* monotonic time the wait returned / the message reached the token */
    double token_mono;        /* when the token was known */
    atomic_int token_set;
};

static struct sample *S;
static long total;
static double rate, t_start, deadline;
static int nthreads = 8;
static int64_t first_id;
static const char *write_dsn, *read_dsn;
static char redis_host[256];
static int redis_port;
static atomic_long scheduled; /* events whose due time has passed */
static atomic_int inserters_done;
static double max_behind;
/* --wait: walcast's endpoint, the slot, and the pool of keep-alive connections the waits go out on */
static char wait_host[256];
static int wait_port, nwaiters = 16;
static const char *slot_name;
#define MAX_WCONN 1024
struct wconn {
    int fd; /* -1: closed (walcast's idle timeout), reopened when next used */
    long k; /* the event waited for, -1 when free */
    size_t got;
    char buf[2048];
};
static struct wconn wconns[MAX_WCONN];
static int nwconn, wfree[MAX_WCONN], nwfree; /* the free ones, a stack */
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static int wait_ep; /* the reader's epoll */
static atomic_long waits_sent, waits_answered;
static _Atomic uint64_t redis_applied; /* the newest "cache <lsn>" the subscriber heard */

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_until(double t)
{
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - ts.tv_sec) * 1e9);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
        ;
}

static PGconn *pg_connect(const char *dsn)
{
    PGconn *c = PQconnectdb(dsn);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "probe: %s", PQerrorMessage(c));
        exit(2);
    }
    return c;
}

/* Connect to walcast's endpoint; exits on failure. */
static int wait_connect(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)wait_port)};
    inet_pton(AF_INET, wait_host, &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        fprintf(stderr, "probe: connect to %s:%d failed\n", wait_host, wait_port);
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* (Re)open connection i and watch it. Under pool_mu. */
static void wconn_open(int i)
{
    wconns[i].fd = wait_connect();
    wconns[i].got = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(wait_ep, EPOLL_CTL_ADD, wconns[i].fd, &ev);
}

static void wconn_close(int i)
{
    epoll_ctl(wait_ep, EPOLL_CTL_DEL, wconns[i].fd, NULL);
    close(wconns[i].fd);
    wconns[i].fd = -1;
}

/* Send event k's request on connection i (its request is the only one in flight there). */
static void wconn_request(int i, long k)
{
    char req[256];
    int n = snprintf(req, sizeof(req),
                     "GET /wait?lsn=%X/%X&sink=cache&timeout_ms=30000 HTTP/1.1\r\nHost: walcast\r\n\r\n",
                     (unsigned)(S[k].token >> 32), (unsigned)S[k].token);
    if (write(wconns[i].fd, req, (size_t)n) != n) { /* a few bytes into an empty send buffer */
        fprintf(stderr, "probe: /wait for event %ld: write failed\n", k);
        exit(1);
    }
}

/* The inserter's own wait: on a free connection of the pool (one more when all are busy). */
static void wait_send(long k)
{
    pthread_mutex_lock(&pool_mu);
    int i;
    if (nwfree > 0)
        i = wfree[--nwfree];
    else if (nwconn < MAX_WCONN)
        wconn_open(i = nwconn++);
    else {
        fprintf(stderr, "probe: more than %d waits at once\n", MAX_WCONN);
        exit(1);
    }
    if (wconns[i].fd < 0)
        wconn_open(i);
    wconns[i].k = k;
    atomic_fetch_add(&waits_sent, 1);
    wconn_request(i, k);
    pthread_mutex_unlock(&pool_mu);
}

/* Whole response in c->buf: its length, else 0. */
static size_t response_length(struct wconn *c)
{
    char *end = strstr(c->buf, "\r\n\r\n");
    if (end == NULL)
        return 0;
    char *cl = strcasestr(c->buf, "content-length:");
    size_t body = cl && cl < end ? (size_t)strtoul(cl + 15, NULL, 10) : 0;
    size_t len = (size_t)(end + 4 - c->buf) + body;
    return c->got >= len ? len : 0;
}

/* The event loop of the waits: reads every answer as it comes; until every wait sent is answered once
 * the inserters are done (or the deadline). */
static void *wait_reader(void *arg)
{
    (void)arg;
    struct epoll_event evs[64];
    while (mono() < deadline && !(atomic_load(&inserters_done) == nthreads &&
                                  atomic_load(&waits_answered) == atomic_load(&waits_sent))) {
        int n = epoll_wait(wait_ep, evs, 64, 50);
        double m = mono();
        pthread_mutex_lock(&pool_mu);
        for (int e = 0; e < n; e++) {
            int i = (int)evs[e].data.u32;
            struct wconn *c = &wconns[i];
            if (c->fd < 0)
                continue;
            ssize_t r = read(c->fd, c->buf + c->got, sizeof(c->buf) - 1 - c->got);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) { /* closed by walcast (its idle timeout): again on a new one if a wait was on it */
                wconn_close(i);
                if (c->k >= 0) {
                    wconn_open(i);
                    wconn_request(i, c->k);
                }
                continue;
            }
            c->got += (size_t)r;
            c->buf[c->got] = 0;
            size_t len = response_length(c);
            if (len == 0)
                continue;
            if (c->k < 0)
                fprintf(stderr, "probe: /wait: an answer nobody waited for\n");
            else if (strncmp(c->buf, "HTTP/1.1 200", 12) == 0)
                S[c->k].rw_http = m;
            else
                fprintf(stderr, "probe: /wait for event %ld: %.60s\n", c->k, c->buf);
            memmove(c->buf, c->buf + len, c->got - len + 1);
            c->got -= len;
            c->k = -1;
            wfree[nwfree++] = i;
            atomic_fetch_add(&waits_answered, 1);
        }
        pthread_mutex_unlock(&pool_mu);
    }
    return NULL;
}

static void *inserter(void *arg)
{
    int t = (int)(intptr_t)arg;
    PGconn *c = pg_connect(write_dsn);
    PGresult *r = PQprepare(
        c, "ins",
        "INSERT INTO public.domain_events (aggregate_type, aggregate_id, event_type, payload, occurred_at) "
        "VALUES ('order', $1, 'OrderPlaced', $2::jsonb, $3::timestamptz)",
        3, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "probe: prepare: %s", PQerrorMessage(c));
        exit(2);
    }
    PQclear(r);
    unsigned seed = 12345u + (unsigned)t;
    for (long k = t; k < total; k += nthreads) {
        double due = t_start + k / rate;
        double now = mono();
        if (now < due)
            sleep_until(due);
        else if (now - due > max_behind)
            max_behind = now - due; /* racy max, good enough for a report */
        long sc = atomic_load(&scheduled);
        while (sc < k + 1 && !atomic_compare_exchange_weak(&scheduled, &sc, k + 1))
            ;
        struct sample *s = &S[k];
        s->id = first_id + k;
        char id[32], payload[512], at[40];
        time_t sec = time(NULL);
        struct tm tm;
        gmtime_r(&sec, &tm);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(at + strlen(at), sizeof(at) - strlen(at), ".%03ldZ", ts.tv_nsec / 1000000);
        int qty = 1 + rand_r(&seed) % 5;
        int cents = 50 + rand_r(&seed) % 19950;
        snprintf(id, sizeof(id), "%" PRId64, s->id);
        snprintf(payload, sizeof(payload),
                 "{\"order_id\": %s, \"customer_id\": %d, \"total\": %d.%02d, \"placed_at\": \"%s\", "
                 "\"items\": [{\"sku\": \"SKU-%04d\", \"qty\": %d, \"unit_price\": %d.%02d}]}",
                 id, 1 + rand_r(&seed) % 200, qty * cents / 100, qty * cents % 100, at,
                 1 + rand_r(&seed) % 500, qty, cents / 100, cents % 100);
        const char *params[3] = {id, payload, at};
        r = PQexecPrepared(c, "ins", 3, params, NULL, NULL, 0);
        double cm = mono(), cw = wall();
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "probe: insert: %s", PQerrorMessage(c));
            exit(1);
        }
        PQclear(r);
        s->commit_mono = cm;
        s->commit_wall = cw;
        atomic_store(&s->committed, 1);
        if (wait_port) {
            /* The consistency token, in the same session right after the commit. */
            r = PQexec(c, "SELECT pg_current_wal_insert_lsn()");
            unsigned hi, lo;
            if (PQresultStatus(r) != PGRES_TUPLES_OK || sscanf(PQgetvalue(r, 0, 0), "%X/%X", &hi, &lo) != 2) {
                fprintf(stderr, "probe: token: %s", PQerrorMessage(c));
                exit(1);
            }
            PQclear(r);
            s->token = (uint64_t)hi << 32 | lo;
            s->token_mono = mono();
            atomic_store(&s->token_set, 1);
            /* Heard before the token was known: a service would see it with its HGET, at once. */
            if (s->token <= atomic_load(&redis_applied))
                s->rw_redis = mono();
            wait_send(k);
        }
    }
    PQfinish(c);
    atomic_fetch_add(&inserters_done, 1);
    return NULL;
}

/* Committed events not yet seen by this watcher, from *lo up; advances *lo past seen ones. */
static int pending(long *lo, int which, long *out, int max)
{
    long hi = atomic_load(&scheduled);
    int n = 0;
    while (*lo < hi && (which ? S[*lo].pg_seen : S[*lo].redis_seen))
        (*lo)++;
    for (long k = *lo; k < hi && n < max; k++)
        if (atomic_load(&S[k].committed) && !(which ? S[k].pg_seen : S[k].redis_seen))
            out[n++] = k;
    return n;
}

static int done_watching(long lo, double deadline)
{
    return (lo >= total && atomic_load(&inserters_done) == nthreads) || mono() > deadline;
}

static const struct timespec poll_nap = {0, 200000};

/* --redis-zset KEY (a Redis Cluster): poll ZSCORE KEY <id> on KEY's master instead of EXISTS order:<id>. */
static const char *redis_zset;

static void *redis_watcher(void *arg)
{
    (void)arg;
    redisContext *c = redisConnect(redis_host, redis_port);
    if (!c || c->err) {
        fprintf(stderr, "probe: redis connect failed\n");
        exit(2);
    }
    if (redis_zset != NULL) { /* find the key's master: follow a MOVED */
        redisReply *r = redisCommand(c, "ZCARD %s", redis_zset);
        int slot;
        if (r && r->type == REDIS_REPLY_ERROR &&
            sscanf(r->str, "MOVED %d %255[^:]:%d", &slot, redis_host, &redis_port) == 3) {
            redisFree(c);
            c = redisConnect(redis_host, redis_port);
            if (!c || c->err) {
                fprintf(stderr, "probe: redis connect failed\n");
                exit(2);
            }
        }
        if (r)
            freeReplyObject(r);
    }
    long lo = 0, *ks = malloc(sizeof(long) * 100000);
    while (!done_watching(lo, deadline)) {
        int n = pending(&lo, 0, ks, 100000);
        for (int i = 0; i < n; i++)
            if (redis_zset)
                redisAppendCommand(c, "ZSCORE %s %lld", redis_zset, (long long)S[ks[i]].id);
            else
                redisAppendCommand(c, "EXISTS order:%lld", (long long)S[ks[i]].id);
        for (int i = 0; i < n; i++) {
            redisReply *r;
            if (redisGetReply(c, (void **)&r) != REDIS_OK) {
                fprintf(stderr, "probe: redis: %s\n", c->errstr);
                exit(1);
            }
            if ((r->type == REDIS_REPLY_INTEGER && r->integer == 1) || r->type == REDIS_REPLY_STRING) {
                S[ks[i]].redis_mono = mono();
                S[ks[i]].redis_wall = wall();
                S[ks[i]].redis_seen = 1;
            }
            freeReplyObject(r);
        }
        nanosleep(&poll_nap, NULL);
    }
    free(ks);
    redisFree(c);
    return NULL;
}

static void *pg_watcher(void *arg)
{
    (void)arg;
    PGconn *c = pg_connect(read_dsn);
    PGresult *r =
        PQprepare(c, "q", "SELECT order_id FROM order_summary WHERE order_id = ANY($1::bigint[])", 1, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "probe: prepare: %s", PQerrorMessage(c));
        exit(2);
    }
    PQclear(r);
    long lo = 0, *ks = malloc(sizeof(long) * 100000);
    size_t cap = 64;
    char *arr = malloc(cap);
    while (!done_watching(lo, deadline)) {
        int n = pending(&lo, 1, ks, 20000);
        if (n > 0) {
            size_t len = 0;
            for (int i = 0; i < n; i++) {
                if (len + 32 > cap) {
                    cap = cap * 2 + 64;
                    arr = realloc(arr, cap);
                }
                len += (size_t)sprintf(arr + len, "%c%lld", i ? ',' : '{', (long long)S[ks[i]].id);
            }
            arr[len++] = '}';
            arr[len] = 0;
            const char *p[1] = {arr};
            r = PQexecPrepared(c, "q", 1, p, NULL, NULL, 0);
            double m = mono();
            if (PQresultStatus(r) != PGRES_TUPLES_OK) {
                fprintf(stderr, "probe: poll: %s", PQerrorMessage(c));
                exit(1);
            }
            for (int j = 0; j < PQntuples(r); j++) {
                long k = atol(PQgetvalue(r, j, 0)) - (long)first_id;
                if (k >= 0 && k < total && !S[k].pg_seen) {
                    S[k].pg_mono = m;
                    S[k].pg_seen = 1;
                }
            }
            PQclear(r);
        }
        nanosleep(&poll_nap, NULL);
    }
    free(arr);
    free(ks);
    PQfinish(c);
    return NULL;
}

/* The Redis-only recipe: one subscriber marks every token its "cache <lsn>" messages reach. */
static void *redis_subscriber(void *arg)
{
    (void)arg;
    redisContext *c = redisConnect(redis_host, redis_port);
    if (!c || c->err) {
        fprintf(stderr, "probe: redis connect failed\n");
        exit(2);
    }
    redisReply *r = redisCommand(c, "SUBSCRIBE walcast:applied:%s", slot_name);
    if (r)
        freeReplyObject(r);
    struct timeval tv = {0, 100000};
    redisSetTimeout(c, tv);
    long lo = 0;
    while (lo < total && mono() < deadline) {
        if (redisGetReply(c, (void **)&r) != REDIS_OK) {
            if (c->err == REDIS_ERR_IO) { /* the read timed out: nothing published */
                c->err = 0;
                continue;
            }
            fprintf(stderr, "probe: subscriber: %s\n", c->errstr);
            exit(1);
        }
        double m = mono();
        unsigned hi, lo32;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[2]->str &&
            sscanf(r->element[2]->str, "cache %X/%X", &hi, &lo32) == 2) {
            uint64_t applied = (uint64_t)hi << 32 | lo32;
            if (applied > atomic_load(&redis_applied))
                atomic_store(&redis_applied, applied);
            /* Tokens come in commit order per inserter, not overall: mark every one reached. */
            for (long k = lo; k < total && k < atomic_load(&scheduled); k++)
                if (S[k].rw_redis == 0 && atomic_load(&S[k].token_set) && S[k].token <= applied)
                    S[k].rw_redis = m;
            while (lo < total && S[lo].rw_redis != 0)
                lo++;
        }
        freeReplyObject(r);
    }
    redisFree(c);
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *label, const char *series, double *v, long n, long expected)
{
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    printf("%s_%s_n=%ld\n", label, series, n);
    if (n == 0) {
        printf("%s_%s_p50_ms=nan\n%s_%s_p95_ms=nan\n%s_%s_p99_ms=nan\n%s_%s_max_ms=nan\n", label, series,
               label, series, label, series, label, series);
        return;
    }
    double pct[3] = {0.50, 0.95, 0.99};
    const char *name[3] = {"p50", "p95", "p99"};
    for (int i = 0; i < 3; i++) {
        long idx = (long)(pct[i] * n + 0.999999) - 1; /* nearest rank */
        if (idx < 0)
            idx = 0;
        printf("%s_%s_%s_ms=%.2f\n", label, series, name[i], v[idx] * 1000);
    }
    printf("%s_%s_max_ms=%.2f\n", label, series, v[n - 1] * 1000);
    if (n < expected)
        printf("%s_%s_missing=%ld\n", label, series, expected - n);
}

int main(int argc, char **argv)
{
    const char *redis = NULL, *label = "lat";
    double seconds = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--write"))
            write_dsn = v;
        else if (!strcmp(k, "--read"))
            read_dsn = v;
        else if (!strcmp(k, "--redis"))
            redis = v;
        else if (!strcmp(k, "--redis-zset"))
            redis_zset = v;
        else if (!strcmp(k, "--rate"))
            rate = atof(v);
        else if (!strcmp(k, "--seconds"))
            seconds = atof(v);
        else if (!strcmp(k, "--first-id"))
            first_id = atoll(v);
        else if (!strcmp(k, "--threads"))
            nthreads = atoi(v);
        else if (!strcmp(k, "--label"))
            label = v;
        else if (!strcmp(k, "--wait")) {
            if (sscanf(v, "%255[^:]:%d", wait_host, &wait_port) != 2)
                return 2;
        } else if (!strcmp(k, "--slot"))
            slot_name = v;
        else if (!strcmp(k, "--waiters"))
            nwaiters = atoi(v);
        else {
            fprintf(stderr, "probe: unknown option %s\n", k);
            return 2;
        }
    }
    if (!write_dsn || !read_dsn || !redis || rate <= 0 || seconds <= 0 || first_id <= 0 || nthreads < 1 ||
        sscanf(redis, "%255[^:]:%d", redis_host, &redis_port) != 2) {
        fprintf(stderr,
                "usage: probe --write DSN --read DSN --redis HOST:PORT --rate N --seconds S --first-id ID "
                "[--threads T] [--label L]\n");
        return 2;
    }
    total = (long)(rate * seconds);
    S = calloc((size_t)total, sizeof(*S));
    if (wait_port && (slot_name == NULL || nwaiters < 1)) {
        fprintf(stderr, "probe: --wait needs --slot SLOT (and --waiters W >= 1)\n");
        return 2;
    }

    PGconn *w = pg_connect(write_dsn);
    PGresult *r = PQexec(w, "SELECT coalesce(max(event_id), 0) FROM public.domain_events");
    long long first_event = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);

    pthread_t ins[256], rw, pw;
    if (nthreads > 256)
        nthreads = 256;
    t_start = mono() + 0.2;
    deadline = t_start + seconds + 30;
    pthread_create(&rw, NULL, redis_watcher, NULL);
    pthread_create(&pw, NULL, pg_watcher, NULL);
    pthread_t reader, sub;
    if (nwaiters > MAX_WCONN)
        nwaiters = MAX_WCONN;
    if (wait_port) {
        wait_ep = epoll_create1(0);
        for (; nwconn < nwaiters; nwconn++) {
            wconn_open(nwconn);
            wconns[nwconn].k = -1;
            wfree[nwfree++] = nwaiters - 1 - nwconn;
        }
        pthread_create(&sub, NULL, redis_subscriber, NULL);
        pthread_create(&reader, NULL, wait_reader, NULL);
    }
    for (int t = 0; t < nthreads; t++)
        pthread_create(&ins[t], NULL, inserter, (void *)(intptr_t)t);
    for (int t = 0; t < nthreads; t++)
        pthread_join(ins[t], NULL);
    double t_end = mono();
    pthread_join(rw, NULL);
    pthread_join(pw, NULL);
    if (wait_port) {
        pthread_join(reader, NULL);
        pthread_join(sub, NULL);
        if (atomic_load(&waits_answered) < atomic_load(&waits_sent))
            fprintf(stderr, "probe: %ld waits unanswered at the deadline\n",
                    atomic_load(&waits_sent) - atomic_load(&waits_answered));
    }

    /* Server commit timestamps of the outbox rows and of the projection rows. */
    char q[256];
    snprintf(q, sizeof(q),
             "SELECT aggregate_id::bigint, extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM "
             "public.domain_events "
             "WHERE event_id > %lld",
             first_event);
    r = PQexec(w, q);
    int have_ts = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!have_ts)
        fprintf(stderr, "probe: commit timestamps: %s", PQerrorMessage(w));
    for (int j = 0; have_ts && j < PQntuples(r); j++) {
        long k = atol(PQgetvalue(r, j, 0)) - (long)first_id;
        if (k >= 0 && k < total && !PQgetisnull(r, j, 1))
            S[k].ts_event = atof(PQgetvalue(r, j, 1));
    }
    PQclear(r);
    PGconn *rd = pg_connect(read_dsn);
    snprintf(q, sizeof(q),
             "SELECT order_id, extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM order_summary "
             "WHERE order_id >= %lld AND order_id < %lld",
             (long long)first_id, (long long)(first_id + total));
    r = PQexec(rd, q);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "probe: commit timestamps: %s", PQerrorMessage(rd));
        have_ts = 0;
    }
    for (int j = 0; have_ts && j < PQntuples(r); j++) {
        long k = atol(PQgetvalue(r, j, 0)) - (long)first_id;
        if (k >= 0 && k < total && !PQgetisnull(r, j, 1))
            S[k].ts_read = atof(PQgetvalue(r, j, 1));
    }
    PQclear(r);
    PQfinish(rd);
    PQfinish(w);

    double *v = malloc(sizeof(double) * (size_t)total);
    long n;
    printf("%s_events=%ld\n%s_rate_achieved=%.0f\n%s_max_behind_schedule_ms=%.1f\n", label, total, label,
           total / (t_end - t_start), label, max_behind * 1000);
    /* Each series: the samples that have both ends, end - start (seconds). */
#define SERIES(name, has, end, start)                                                                        \
    do {                                                                                                     \
        n = 0;                                                                                               \
        for (long k = 0; k < total; k++)                                                                     \
            if (has)                                                                                         \
                v[n++] = (end) - (start);                                                                    \
        report(label, name, v, n, total);                                                                    \
    } while (0)
    SERIES("redis_probe", S[k].redis_seen, S[k].redis_mono, S[k].commit_mono);
    SERIES("pg_probe", S[k].pg_seen, S[k].pg_mono, S[k].commit_mono);
    SERIES("redis_commit_ts", S[k].redis_seen && S[k].ts_event > 0, S[k].redis_wall, S[k].ts_event);
    SERIES("pg_commit_ts", S[k].ts_read > 0 && S[k].ts_event > 0, S[k].ts_read, S[k].ts_event);
    if (wait_port) {
        SERIES("rw_http", S[k].rw_http > 0, S[k].rw_http, S[k].commit_mono);
        SERIES("rw_redis", S[k].rw_redis > 0, S[k].rw_redis, S[k].commit_mono);
        /* Where the time goes: commit to the token known (the extra round trip), and /wait's answer after
         * the poller first saw the event (negative: before it). */
        SERIES("rw_token", S[k].token_mono > 0, S[k].token_mono, S[k].commit_mono);
        SERIES("rw_http_after_seen", S[k].rw_http > 0 && S[k].redis_seen, S[k].rw_http, S[k].redis_mono);
    }
#undef SERIES
    free(v);
    free(S);
    return 0;
}
