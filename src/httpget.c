/*
 * httpget.c - `walcast status` asking a running engine for its /status: a plain HTTP/1.0 GET to the
 * metrics endpoint on this machine's loopback or a configured address, with a short timeout (an engine
 * that is stopped, say by SIGSTOP, must not hang the command: it then reads the servers instead).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "walcast/buf.h"
#include "walcast/clock.h"

/* Wait until fd is ready for events or the deadline passes; 1, 0 on timeout, -1 on error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - wc_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {fd, events, 0};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 ? -1 : r > 0;
    }
}

int wc__http_get(const char *listen, const char *path, int timeout_ms, char **body, char *why, size_t whysize)
{
    char host[256], port[16], req[512];
    int p, fd = -1, rc = -1;
    struct addrinfo hints = {0}, *ai = NULL;
    struct wc_buf b = WC_BUF_INIT;
    int64_t deadline = wc_now_ms() + timeout_ms;

    *body = NULL;
    if (wc_config_parse_listen(listen, host, sizeof(host), &p) < 0) {
        snprintf(why, whysize, "invalid address \"%s\"", listen);
        return -1;
    }
    /* An endpoint on every address answers on the loopback. */
    if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    else if (strcmp(host, "::") == 0)
        snprintf(host, sizeof(host), "::1");
    snprintf(port, sizeof(port), "%d", p);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0) {
        snprintf(why, whysize, "cannot resolve \"%s\": %s", host, gai_strerror(gai));
        return -1;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS)) {
        snprintf(why, whysize, "%s", strerror(errno));
        goto done;
    }
    if (wait_fd(fd, POLLOUT, deadline) <= 0) {
        snprintf(why, whysize, "no answer within %d ms", timeout_ms);
        goto done;
    }
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
    if (soerr) {
        snprintf(why, whysize, "%s", strerror(soerr));
        goto done;
    }
    int n =
        snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n", path, listen);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        snprintf(why, whysize, "could not send the request: %s", strerror(errno));
        goto done;
    }
    for (;;) {
        int w = wait_fd(fd, POLLIN, deadline);
        if (w <= 0) {
            snprintf(why, whysize, w == 0 ? "no answer within %d ms" : "read failed", timeout_ms);
            goto done;
        }
        char chunk[8192];
        ssize_t got = recv(fd, chunk, sizeof(chunk), 0);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got < 0) {
            snprintf(why, whysize, "%s", strerror(errno));
            goto done;
        }
        if (got == 0)
            break;
        wc_buf_append(&b, chunk, (size_t)got);
        if (b.len > (16u << 20)) {
            snprintf(why, whysize, "answer too long");
            goto done;
        }
    }
    const char *sep = b.data ? strstr(b.data, "\r\n\r\n") : NULL;
    if (sep == NULL || strncmp(b.data, "HTTP/1.", 7) != 0) {
        snprintf(why, whysize, "not an HTTP answer");
        goto done;
    }
    if (atoi(b.data + 9) != 200) {
        snprintf(why, whysize, "HTTP status %d", atoi(b.data + 9));
        goto done;
    }
    *body = strdup(sep + 4);
    rc = 0;
done:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    wc_buf_free(&b);
    return rc;
}
