/*
 * http.c - the metrics endpoint, served by libmicrohttpd:
 *   GET /metrics   Prometheus text format
 *   GET /healthz   200 while the engine's loop runs
 *   GET /readyz    200 while streaming with every sink connected and the confirmed position keeping up
 *   GET /status    the JSON document `walcast status` prints
 *   GET /wait      ?lsn=X/Y&sink=NAME&timeout_ms=N: 200 once the sink applied through LSN, 408 at the
 *                  timeout (long-polling: a suspended connection each, no thread; waits.c)
 *
 * libmicrohttpd runs in its external mode (epoll): a thread of this file drives it, and so does a thread
 * that has just resumed waiters (a sink's worker right after its commit, wc__http_kick), which writes
 * their answers at once instead of waking this file's thread to write them: a thread wake-up less
 * between a commit and its waiters' 200. One mutex makes sure a single thread at a time is inside
 * libmicrohttpd. Up to MAX_CONNECTIONS at once (waiters included).
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "metrics.h"
#include "walcast/log.h"

/* Connections at once: a thousand waiters and more, and the scrapes beside them. */
#define MAX_CONNECTIONS 4096

struct wc_http {
    struct MHD_Daemon *d;
    pthread_mutex_t mu; /* held by the one thread inside libmicrohttpd */
    pthread_t thread;
    int thread_started;
    int wake_fd; /* an eventfd: run the loop again */
    int stop;    /* atomic */
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type, char *body,
                             size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    enum MHD_Result rc;

    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
{
    char *body;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&body, fmt, ap);
    va_end(ap);
    if (n < 0)
        return MHD_NO;
    return reply(c, status, "text/plain; charset=utf-8", body, (size_t)n);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **state)
{
    struct wc_metrics *m = cls;
    char why[256];

    (void)version;
    (void)upload;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n");
    if (*upload_size != 0)
        return MHD_NO;
    if (strcmp(url, "/wait") == 0)
        return (enum MHD_Result)wc__waits_handle(m, c, state);
    if (strcmp(url, "/metrics") == 0) {
        struct wc_buf b = WC_BUF_INIT;
        wc__metrics_text(m, &b);
        return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    }
    if (strcmp(url, "/healthz") == 0) {
        int ok = wc__metrics_healthy(m, why, sizeof(why));
        return reply_text(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "%s\n", why);
    }
    if (strcmp(url, "/readyz") == 0) {
        int ok = wc__metrics_ready(m, why, sizeof(why));
        return reply_text(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "%s\n", why);
    }
    if (strcmp(url, "/status") == 0) {
        json_t *doc = wc__metrics_status(m);
        char *body = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        if (body == NULL)
            return MHD_NO;
        size_t n = strlen(body);
        char *nl = realloc(body, n + 2);
        if (nl == NULL) {
            free(body);
            return MHD_NO;
        }
        nl[n] = '\n';
        nl[n + 1] = '\0';
        return reply(c, MHD_HTTP_OK, "application/json", nl, n + 1);
    }
    if (strcmp(url, "/") == 0)
        return reply_text(c, MHD_HTTP_OK, "walcast %s: /metrics /healthz /readyz /status /wait\n",
                          WC_VERSION);
    return reply_text(c, MHD_HTTP_NOT_FOUND,
                      "not found: try /metrics, /healthz, /readyz, /status or /wait\n");
}

static void completed(void *cls, struct MHD_Connection *c, void **state, enum MHD_RequestTerminationCode why)
{
    (void)cls;
    (void)c;
    (void)why;
    wc__waits_completed(state);
}

/* Room for MAX_CONNECTIONS descriptors: the soft limit raised towards the hard one when it is lower. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    rlim_t want = MAX_CONNECTIONS + 256;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];

    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    wc_debug("metrics endpoint: %s", msg);
}

/* Run libmicrohttpd's loop once (it does not block): accept, read, answer, resume, time out. Under h->mu.
 * Again at once when it says it has more to do. */
static void run_locked(struct wc_http *h)
{
    MHD_UNSIGNED_LONG_LONG ms;

    MHD_run(h->d);
    if (MHD_get_timeout(h->d, &ms) == MHD_YES && ms == 0)
        wc__http_wake(h);
}

void wc__http_wake(struct wc_http *h)
{
    uint64_t one = 1;

    if (h != NULL && write(h->wake_fd, &one, sizeof(one)) < 0) {
        /* the counter is full: the loop is awake anyway */
    }
}

void wc__http_kick(struct wc_http *h)
{
    if (h == NULL)
        return;
    if (pthread_mutex_trylock(&h->mu) != 0) {
        wc__http_wake(h); /* another thread is inside: it runs the loop again */
        return;
    }
    run_locked(h);
    pthread_mutex_unlock(&h->mu);
}

static void *http_main(void *arg)
{
    struct wc_http *h = arg;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    struct pollfd p[2] = {{.fd = info ? info->epoll_fd : -1, .events = POLLIN},
                          {.fd = h->wake_fd, .events = POLLIN}};

    pthread_mutex_lock(&h->mu);
    while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE)) {
        MHD_UNSIGNED_LONG_LONG ms;
        int timeout = 1000;
        if (MHD_get_timeout(h->d, &ms) == MHD_YES && ms < 1000)
            timeout = (int)ms;
        pthread_mutex_unlock(&h->mu);
        if (poll(p, 2, timeout) > 0 && (p[1].revents & POLLIN)) {
            uint64_t n;
            if (read(h->wake_fd, &n, sizeof(n)) < 0) {
                /* EAGAIN: another reader took it */
            }
        }
        pthread_mutex_lock(&h->mu);
        if (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE))
            run_locked(h);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

static void http_free(struct wc_http *h)
{
    if (h->d)
        MHD_stop_daemon(h->d);
    if (h->wake_fd >= 0)
        close(h->wake_fd);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

int wc__http_start(struct wc_metrics *m, const char *listen, struct wc_err *err)
{
    char host[256], port[16];
    int p;
    struct addrinfo hints = {0}, *ai = NULL;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;

    if (wc_config_parse_listen(listen, host, sizeof(host), &p) < 0) {
        wc_err_set(err, WC_ERR_CONFIG, "metrics.listen: invalid address \"%s\"", listen);
        return -1;
    }
    snprintf(port, sizeof(port), "%d", p);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (gai != 0 || ai == NULL) {
        wc_err_set(err, WC_ERR_CONFIG, "metrics.listen: cannot resolve \"%s\": %s", host, gai_strerror(gai));
        return -1;
    }
    /* Every address when the host is empty: IPv6 with IPv4 mapped where the system has it. */
    struct addrinfo *use = ai;
    if (host[0] == '\0') {
        for (struct addrinfo *a = ai; a; a = a->ai_next)
            if (a->ai_family == AF_INET6) {
                use = a;
                flags |= MHD_USE_DUAL_STACK;
                break;
            }
    }
    if (use->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct wc_http *h = calloc(1, sizeof(*h));
    if (h == NULL || (h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        wc_err_set(err, WC_ERR_INTERNAL, "could not set up the metrics endpoint: %s", strerror(errno));
        free(h);
        freeaddrinfo(ai);
        return -1;
    }
    pthread_mutex_init(&h->mu, NULL);
    m->http = h; /* before the waits' timer starts: it wakes the loop */
    if (wc__waits_start(m, err) < 0) {
        m->http = NULL;
        http_free(h);
        freeaddrinfo(ai);
        return -1;
    }
    raise_fd_limit();
    errno = 0;
    h->d = MHD_start_daemon(flags, (uint16_t)p, NULL, NULL, handle, m, MHD_OPTION_SOCK_ADDR, use->ai_addr,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_NOTIFY_COMPLETED,
                            completed, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    int saved = errno;
    freeaddrinfo(ai);
    if (h->d == NULL) {
        wc__waits_free(m);
        m->http = NULL;
        http_free(h);
        wc_err_set(err, WC_ERR_CONFIG, "metrics.listen: could not listen on \"%s\": %s", listen,
                   saved ? strerror(saved) : "address not available");
        return -1;
    }
    if (pthread_create(&h->thread, NULL, http_main, h) != 0) {
        wc__waits_free(m);
        m->http = NULL;
        http_free(h);
        wc_err_set(err, WC_ERR_INTERNAL, "could not start the thread of the metrics endpoint");
        return -1;
    }
    h->thread_started = 1;
    wc_info("metrics endpoint on http://%s/metrics (also /healthz, /readyz, /status, /wait)", listen);
    return 0;
}

void wc__http_stop(struct wc_metrics *m)
{
    struct wc_http *h = m->http;

    /* Suspended waiters are answered first (503), in one last turn of the loop: libmicrohttpd stops only
     * without any. */
    wc__waits_release(m);
    if (h != NULL) {
        __atomic_store_n(&h->stop, 1, __ATOMIC_RELEASE);
        wc__http_wake(h);
        if (h->thread_started)
            pthread_join(h->thread, NULL);
        pthread_mutex_lock(&h->mu);
        MHD_run(h->d);
        pthread_mutex_unlock(&h->mu);
    }
    /* The waits' timer goes first: it wakes this loop (wc__http_wake) until it stops. */
    wc__waits_free(m);
    if (h != NULL)
        http_free(h);
    m->http = NULL;
}
