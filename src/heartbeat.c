/*
 * heartbeat.c - a transactional logical message with walcast's prefix, every heartbeat_interval_ms. It
 * gives wal2json a transaction to send on a server whose outbox is idle (so the slot advances even where
 * empty transactions are not sent), and its round trip through the stream is the end-to-end lag.
 * Failures are logged, not fatal: the stream itself decides whether the source is down.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "engine_int.h"
#include "walcast/clock.h"
#include "walcast/log.h"
#include "walcast/pgconn.h"

void wc__heartbeat(struct session *s)
{
    char content[64], prefix_buf[128];
    struct wc_err err;

    if (s->opts->heartbeat_ms <= 0 || wc_now_ms() - s->last_hb_ms < s->opts->heartbeat_ms)
        return;
    s->last_hb_ms = wc_now_ms();
    if (s->hb_conn == NULL) {
        s->hb_conn = wc_pg_connect(s->cfg->source_dsn, NULL, &err);
        if (s->hb_conn == NULL) {
            wc_debug("heartbeat: %s", err.msg);
            return;
        }
    }
    snprintf(content, sizeof(content), "{\"heartbeat_us\":%lld}", (long long)wc_wall_us());
    snprintf(prefix_buf, sizeof(prefix_buf), "%s", s->cfg->msg_prefix ? s->cfg->msg_prefix : "walcast");
    const char *params[] = {prefix_buf, content};
    PGresult *r = PQexecParams(s->hb_conn, "SELECT pg_logical_emit_message(true, $1, $2)", 2, NULL, params,
                               NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        wc_debug("heartbeat failed: %s", PQerrorMessage(s->hb_conn));
        PQfinish(s->hb_conn);
        s->hb_conn = NULL;
    }
    PQclear(r);
}

/* A heartbeat came back through the stream: its age is the end-to-end lag. */
void wc__heartbeat_seen(struct session *s, const char *content)
{
    const char *p = content ? strstr(content, "\"heartbeat_us\":") : NULL;
    if (p == NULL)
        return;
    long long sent = atoll(p + strlen("\"heartbeat_us\":"));
    s->stats->lag_ms = (wc_wall_us() - sent) / 1000;
    wc_debug("heartbeat round trip %lld ms", (long long)s->stats->lag_ms);
}

void wc__heartbeat_close(struct session *s)
{
    if (s->hb_conn) {
        PQfinish(s->hb_conn);
        s->hb_conn = NULL;
    }
}
