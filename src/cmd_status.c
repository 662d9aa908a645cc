/*
 * cmd_status.c - `walcast status`: what an operator wants at a terminal, in one screen. From the running
 * engine's /status when its endpoint answers (metrics.listen), from the servers otherwise: the slot and
 * the server's WAL read twice a second apart (for the rates and the forecast), each sink's cursor and
 * dead letters from its own store. --json prints the document, --watch refreshes every second.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "cli.h"
#include "metrics.h"
#include "shadow.h"
#include "walcast/clock.h"
#include "walcast/engine.h"
#include "walcast/pgconn.h"

/* Connections kept from one refresh to the next (--watch). */
struct status_ctx {
    const struct wc_config *cfg;
    PGconn *src;
    struct wc_slot_sample last;
    int have_last;
    struct wc_peek_conn *peek;
};

/* The document from the servers; NULL with err when the source cannot be read. */
static json_t *from_servers(struct status_ctx *x, const char *engine_why, int wait_for_rate,
                            struct wc_err *err)
{
    const struct wc_config *cfg = x->cfg;
    struct wc_slot_sample s, first;
    struct wc_slot_trend t;

    if (x->src && PQstatus(x->src) != CONNECTION_OK) {
        PQfinish(x->src);
        x->src = NULL;
    }
    if (x->src == NULL && (x->src = wc_pg_connect(cfg->source_dsn, NULL, err)) == NULL)
        return NULL;
    if (!x->have_last && wait_for_rate) {
        /* Rates need two readings: take one now and the next a second later. */
        if (wc__slot_sample(x->src, cfg->slot, &first, err) < 0)
            return NULL;
        x->last = first;
        x->have_last = 1;
        wc_sleep_ms(1000, &wc_engine_stop);
    }
    if (wc__slot_sample(x->src, cfg->slot, &s, err) < 0)
        return NULL;
    wc__slot_trend(x->have_last ? &x->last : NULL, &s, &t);
    x->last = s;
    x->have_last = 1;

    json_t *doc = json_object(), *sinks = json_array(), *warn = json_array();
    json_object_set_new(doc, "source", json_string("servers"));
    json_object_set_new(doc, "engine", json_null());
    json_object_set_new(doc, "engine_unreachable", json_string(engine_why));
    json_object_set_new(doc, "slot", wc__status_slot(cfg, &s, &t));
    wc__retention_warnings(cfg, &s, &t, warn);
    for (int i = 0; i < cfg->nsink; i++) {
        const struct wc_sink_conf *conf = &cfg->sinks[i];
        struct wc_peek pk;
        json_t *o = json_object();
        char pos[48];
        wc__peek(cfg, conf, &x->peek[i], &pk);
        json_object_set_new(o, "name", json_string(conf->name));
        json_object_set_new(o, "type", json_string(conf->type == WC_SINK_REDIS ? "redis" : "postgres"));
        json_object_set_new(o, "connected", json_null());
        if (!pk.ok) {
            json_object_set_new(o, "error", json_string(pk.error));
            json_array_append_new(warn, json_string(pk.error));
        }
        json_object_set_new(o, "cursor_lsn",
                            pk.found ? json_string(wc_lsn_format(pk.cursor.lsn, pos)) : json_null());
        json_object_set_new(o, "lag_bytes",
                            pk.found ? json_integer(s.current_lsn > pk.cursor.lsn
                                                        ? (json_int_t)(s.current_lsn - pk.cursor.lsn)
                                                        : 0)
                                     : json_null());
        json_object_set_new(o, "lag_seconds", json_null());
        json_object_set_new(o, "events_per_second", json_null());
        json_object_set_new(o, "dead_letters",
                            pk.dead_letters >= 0 ? json_integer(pk.dead_letters) : json_null());
        json_array_append_new(sinks, o);
    }
    json_object_set_new(doc, "sinks", sinks);
    json_object_set_new(doc, "warnings", warn);
    return doc;
}

/* The document: the engine's when its endpoint answers, else the servers'. */
static json_t *fetch(struct status_ctx *x, int wait_for_rate, struct wc_err *err)
{
    char why[300] = "no metrics endpoint configured (metrics.listen)";
    const char *listen = x->cfg->metrics_listen;

    if (listen && *listen) {
        char *body = NULL, w[256];
        if (wc__http_get(listen, "/status", 2000, &body, w, sizeof(w)) == 0) {
            json_error_t jerr;
            json_t *doc = json_loads(body, 0, &jerr);
            free(body);
            if (doc)
                return doc;
            snprintf(why, sizeof(why), "the endpoint at %s sent no JSON: %s", listen, jerr.text);
        } else
            snprintf(why, sizeof(why), "the endpoint at %s did not answer: %s", listen, w);
    }
    return from_servers(x, why, wait_for_rate, err);
}

/* ---- text ---- */

static const char *str(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static int has_num(json_t *o, const char *k)
{
    return json_is_number(json_object_get(o, k));
}

static double num(json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

/* "123456 bytes (121 kB)", or just "123 bytes". */
static const char *bytes(double v, char *buf, size_t size)
{
    char h[32];
    if (fabs(v) < 10240)
        snprintf(buf, size, "%.0f bytes", v);
    else
        snprintf(buf, size, "%.0f bytes (%s)", v, wc__fmt_size((int64_t)v, h, sizeof(h)));
    return buf;
}

/* "3702 kB/s (3790473 bytes/s)", or "812 bytes/s". */
static const char *rate(double v, char *buf, size_t size)
{
    char h[32];
    if (fabs(v) < 10240)
        snprintf(buf, size, "%.0f bytes/s", v);
    else
        snprintf(buf, size, "%s/s (%.0f bytes/s)", wc__fmt_size((int64_t)v, h, sizeof(h)), v);
    return buf;
}

static void print_text(json_t *doc)
{
    json_t *eng = json_object_get(doc, "engine"), *slot = json_object_get(doc, "slot");
    json_t *sinks = json_object_get(doc, "sinks"), *warn = json_object_get(doc, "warnings");
    char a[64], b[64], c[64];
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    strftime(c, sizeof(c), "%Y-%m-%d %H:%M:%SZ", &tm);
    if (json_is_object(eng)) {
        printf("walcast status at %s, from the running engine (pid %lld, up %s)\n", c,
               (long long)num(eng, "pid"), wc__fmt_duration(num(eng, "uptime_seconds"), a, sizeof(a)));
        printf("engine     %s, %s (%s)\n",
               json_is_true(json_object_get(eng, "streaming")) ? "streaming" : "not streaming",
               json_is_true(json_object_get(eng, "ready")) ? "ready" : "NOT READY", str(eng, "ready_reason"));
        printf("           received %s, confirmed %s, server WAL %s", str(eng, "received_lsn"),
               str(eng, "confirmed_lsn"), str(eng, "server_wal_lsn"));
        if (has_num(eng, "heartbeat_lag_seconds"))
            printf(", heartbeat lag %.3f s", num(eng, "heartbeat_lag_seconds"));
        printf("\n");
    } else {
        printf("walcast status at %s, from the servers (%s)\n", c, str(doc, "engine_unreachable"));
    }
    printf("\nslot       \"%s\"", str(slot, "name"));
    if (json_object_get(slot, "error"))
        printf("  (last reading failed: %s)", str(slot, "error"));
    if (json_is_false(json_object_get(slot, "exists"))) {
        printf("  DOES NOT EXIST\n");
    } else if (json_is_true(json_object_get(slot, "exists"))) {
        printf("  wal_status %s", str(slot, "wal_status"));
        if (has_num(slot, "active_pid"))
            printf("  active pid %lld", (long long)num(slot, "active_pid"));
        else
            printf("  not active");
        printf("\n  retained WAL     %s\n", bytes(num(slot, "retained_wal_bytes"), a, sizeof(a)));
        printf("  lag              %s\n", bytes(num(slot, "lag_bytes"), a, sizeof(a)));
        int lost = strcmp(str(slot, "wal_status"), "lost") == 0;
        int limited = has_num(slot, "max_slot_wal_keep_size");
        if (has_num(slot, "safe_wal_size"))
            printf("  safe_wal_size    %s of max_slot_wal_keep_size %s\n",
                   bytes(num(slot, "safe_wal_size"), a, sizeof(a)),
                   bytes(num(slot, "max_slot_wal_keep_size"), b, sizeof(b)));
        else if (lost)
            printf("  safe_wal_size    none: the slot is lost\n");
        else
            printf("  safe_wal_size    unlimited (max_slot_wal_keep_size = -1)\n");
        if (has_num(slot, "wal_rate_bytes_per_second"))
            printf("  WAL rate         %s\n", rate(num(slot, "wal_rate_bytes_per_second"), a, sizeof(a)));
        if (has_num(slot, "retained_growth_bytes_per_second"))
            printf("  retained growth  %s\n",
                   rate(num(slot, "retained_growth_bytes_per_second"), a, sizeof(a)));
        if (has_num(slot, "forecast_seconds") && num(slot, "forecast_seconds") < 120)
            printf("  forecast         invalidated in %.0f s at the current rate\n",
                   num(slot, "forecast_seconds"));
        else if (has_num(slot, "forecast_seconds"))
            printf("  forecast         invalidated in %s (%.0f s) at the current rate\n",
                   wc__fmt_duration(num(slot, "forecast_seconds"), a, sizeof(a)),
                   num(slot, "forecast_seconds"));
        else if (lost)
            printf("  forecast         none: the slot is lost already\n");
        else if (!limited)
            printf("  forecast         none: the server keeps WAL for the slot without a limit\n");
        else
            printf("  forecast         none: the retained WAL is not growing\n");
    } else
        printf("\n");
    printf("\n%-16s %-9s %-5s %-14s %-24s %8s %10s %12s\n", "SINK", "TYPE", "STATE", "CURSOR", "LAG", "LAG S",
           "EVENTS/S", "DEAD LETTERS");
    size_t i;
    json_t *k;
    json_array_foreach(sinks, i, k)
    {
        json_t *conn = json_object_get(k, "connected");
        const char *state = json_is_true(conn) ? "up" : json_is_false(conn) ? "DOWN" : "-";
        if (json_object_get(k, "error"))
            state = "ERROR";
        char lag[64] = "-", ls[32] = "-", eps[32] = "-", dl[32] = "-";
        if (has_num(k, "lag_bytes"))
            bytes(num(k, "lag_bytes"), lag, sizeof(lag));
        if (has_num(k, "lag_seconds"))
            snprintf(ls, sizeof(ls), "%.1f", num(k, "lag_seconds"));
        if (has_num(k, "events_per_second"))
            snprintf(eps, sizeof(eps), "%.1f", num(k, "events_per_second"));
        if (has_num(k, "dead_letters"))
            snprintf(dl, sizeof(dl), "%.0f", num(k, "dead_letters"));
        printf("%-16s %-9s %-5s %-14s %-24s %8s %10s %12s\n", str(k, "name"), str(k, "type"), state,
               json_is_string(json_object_get(k, "cursor_lsn")) ? str(k, "cursor_lsn") : "(none)", lag, ls,
               eps, dl);
    }
    if (json_array_size(warn) == 0) {
        printf("\nno warnings\n");
        return;
    }
    printf("\n");
    json_array_foreach(warn, i, k) printf("WARNING: %s\n", json_string_value(k));
}

/* 3 when the slot is missing or lost, else 0. */
static int status_code(json_t *doc)
{
    json_t *slot = json_object_get(doc, "slot");
    if (json_is_false(json_object_get(slot, "exists")))
        return EXIT_SLOT;
    if (strcmp(str(slot, "wal_status"), "lost") == 0)
        return EXIT_SLOT;
    return EXIT_OK;
}

int wc__cmd_status(const struct options *o)
{
    struct wc_err err = {0};
    struct wc_config *cfg = wc__cli_load_config(o, &err);
    int rc = EXIT_OK;

    if (cfg == NULL)
        return wc__cli_fail(&err);
    struct status_ctx x = {.cfg = cfg};
    x.peek = calloc((size_t)(cfg->nsink > 0 ? cfg->nsink : 1), sizeof(*x.peek));
    if (o->watch)
        wc__cli_install_signals();
    do {
        json_t *doc = fetch(&x, !o->watch, &err);
        if (doc == NULL) {
            rc = wc__cli_fail(&err);
            if (!o->watch)
                break;
        } else {
            json_t *warn = json_object_get(doc, "warnings");
            if (json_is_array(warn))
                wc_projections_warnings(cfg, warn);
            rc = status_code(doc);
            if (o->watch)
                printf("\033[H\033[2J");
            if (o->json) {
                char *s = json_dumps(doc, JSON_INDENT(2));
                printf("%s\n", s ? s : "null");
                free(s);
            } else
                print_text(doc);
            fflush(stdout);
            json_decref(doc);
        }
        if (o->watch)
            wc_sleep_ms(1000, &wc_engine_stop);
    } while (o->watch && !wc_engine_stop);
    if (o->watch && wc_engine_stop)
        rc = EXIT_OK;
    if (x.src)
        PQfinish(x.src);
    for (int i = 0; i < cfg->nsink; i++)
        wc__peek_close(&x.peek[i]);
    free(x.peek);
    wc_config_free(cfg);
    return rc;
}
