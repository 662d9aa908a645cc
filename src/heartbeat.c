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

/* How long the source may take to answer a heartbeat; the engine's thread waits for it. */
#define HEARTBEAT_TIMEOUT_MS 5000

/* A failed heartbeat: quiet when it may pass (the stream says whether the source is down), loud once a
 * minute when someone must fix it (a privilege). */
static void heartbeat_failed(struct session *s, struct wc_err *err)
{
    if (err->code == WC_ERR_CONFIG)
        wc__report(&s->hb_retry, wc_now_ms(), err, NULL);
    else
        wc_debug("%s", err->msg);
    wc__heartbeat_close(s);
}

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
            wc_err_prefix(&err, "heartbeat");
            heartbeat_failed(s, &err);
            return;
        }
    }
    snprintf(content, sizeof(content), "{\"heartbeat_us\":%lld}", (long long)wc_wall_us());
    snprintf(prefix_buf, sizeof(prefix_buf), "%s", s->cfg->msg_prefix ? s->cfg->msg_prefix : "walcast");
    const char *params[] = {prefix_buf, content};
    PGresult *r = wc_pg_exec(s->hb_conn, "SELECT pg_logical_emit_message(true, $1, $2)", 2, params,
                             HEARTBEAT_TIMEOUT_MS, &err);
    if (r == NULL) {
        wc_err_prefix(&err, "heartbeat");
        heartbeat_failed(s, &err);
        return;
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *hint;
        int kind = wc_pg_error_kind(PQresultErrorField(r, PG_DIAG_SQLSTATE), PQresultErrorMessage(r), &hint);
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
        msg[strcspn(msg, "\n")] = '\0';
        wc_err_set(&err, kind == WC_ERR_CONFIG ? WC_ERR_CONFIG : WC_ERR_IO, "heartbeat failed: %s%s%s", msg,
                   kind == WC_ERR_CONFIG ? ": " : "", kind == WC_ERR_CONFIG ? hint : "");
        PQclear(r);
        heartbeat_failed(s, &err);
        return;
    }
    PQclear(r);
    wc_backoff_ok(&s->hb_retry, wc_now_ms());
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
    wc_pg_close(s->hb_conn);
    s->hb_conn = NULL;
}
