/* cmd_slot.c - `walcast slot create|status|drop|check`: replication slots for DBAs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "walcast/engine.h"
#include "walcast/outbox.h"
#include "metrics.h"
#include "walcast/log.h"
#include "walcast/slot.h"

static void fmt_lsn(wc_lsn l, char *buf)
{
    if (l == 0)
        strcpy(buf, "");
    else
        wc_lsn_format(l, buf);
}

static void json_str_or_null(const char *key, const char *v, int last)
{
    if (v && *v)
        printf("\"%s\":\"%s\"%s", key, v, last ? "" : ",");
    else
        printf("\"%s\":null%s", key, last ? "" : ",");
}

static void json_int_or_null(const char *key, long long v, int last)
{
    if (v >= 0)
        printf("\"%s\":%lld%s", key, v, last ? "" : ",");
    else
        printf("\"%s\":null%s", key, last ? "" : ",");
}

/* The exit code table is the one of every command: 3 for a slot that is missing or lost, 4 for one in use
 * by another process. A slot that exists with another plugin is a plain refusal (1). */
static int slot_fail(const struct wc_err *err)
{
    return wc__cli_fail(err);
}

/* "16777216 bytes (16 MB)": the exact figure, and one for people. */
static const char *bytes_text(long long n, char *buf, size_t size)
{
    char h[32];
    if (n < 10240)
        snprintf(buf, size, "%lld bytes", n);
    else
        snprintf(buf, size, "%lld bytes (%s)", n, wc__fmt_size(n, h, sizeof(h)));
    return buf;
}

int wc__cmd_slot(const char *action, const struct options *o)
{
    struct wc_err err = {0};
    struct wc_config *cfg = wc__cli_load_config(o, &err);
    int rc = EXIT_OK;

    if (cfg == NULL)
        return wc__cli_fail(&err);
    if (strcmp(action, "create") == 0) {
        int existed;
        wc_lsn lsn = 0;
        char l[WC_LSN_STRLEN];
        if (wc_slot_create(cfg->source_dsn, cfg->slot, &existed, &lsn, &err) < 0) {
            rc = slot_fail(&err);
            if (err.code == WC_ERR_SLOT)
                rc = EXIT_ERROR; /* it exists, with another plugin */
        } else if (existed)
            printf("replication slot \"%s\" already exists with plugin \"wal2json\" (confirmed at %s)\n",
                   cfg->slot, wc_lsn_format(lsn, l));
        else
            printf("replication slot \"%s\" created with plugin \"wal2json\" at %s\n", cfg->slot,
                   wc_lsn_format(lsn, l));
    } else if (strcmp(action, "status") == 0) {
        struct wc_slot_status st;
        int found;
        char rl[WC_LSN_STRLEN], cf[WC_LSN_STRLEN], cur[WC_LSN_STRLEN];
        if (wc_slot_status(cfg->source_dsn, cfg->slot, &st, &found, &err) < 0) {
            rc = slot_fail(&err);
        } else if (!found) {
            wc_err_set(&err, WC_ERR_SLOT,
                       "replication slot \"%s\" does not exist: create it with \"walcast slot create\"",
                       cfg->slot);
            if (o->json)
                printf("{\"slot\":\"%s\",\"exists\":false}\n", cfg->slot);
            rc = slot_fail(&err);
        } else {
            fmt_lsn(st.restart_lsn, rl);
            fmt_lsn(st.confirmed_flush_lsn, cf);
            fmt_lsn(st.current_wal_lsn, cur);
            if (o->json) {
                printf(
                    "{\"slot\":\"%s\",\"exists\":true,\"plugin\":\"%s\",\"database\":\"%s\",\"active\":%s,",
                    st.name, st.plugin, st.database, st.active ? "true" : "false");
                json_int_or_null("active_pid", st.active_pid ? st.active_pid : -1, 0);
                json_str_or_null("restart_lsn", rl, 0);
                json_str_or_null("confirmed_flush_lsn", cf, 0);
                json_str_or_null("current_wal_lsn", cur, 0);
                json_int_or_null("retained_wal_bytes", st.retained_bytes, 0);
                json_int_or_null("lag_bytes", st.lag_bytes, 0);
                json_str_or_null("wal_status", st.wal_status, 0);
                json_int_or_null("safe_wal_size", st.safe_wal_size, 1);
                printf("}\n");
            } else {
                printf("slot:                 %s\n", st.name);
                printf("plugin:               %s\n", st.plugin);
                printf("database:             %s\n", st.database);
                if (st.active)
                    printf("active pid:           %d\n", st.active_pid);
                else
                    printf("active pid:           none\n");
                printf("restart_lsn:          %s\n", rl[0] ? rl : "(invalid)");
                printf("confirmed_flush_lsn:  %s\n", cf[0] ? cf : "(invalid)");
                printf("current_wal_lsn:      %s\n", cur);
                char b1[64];
                printf("retained WAL:         %s\n", bytes_text(st.retained_bytes, b1, sizeof(b1)));
                printf("lag:                  %s\n", bytes_text(st.lag_bytes, b1, sizeof(b1)));
                printf("wal_status:           %s\n", st.wal_status);
                if (st.safe_wal_size >= 0)
                    printf("safe_wal_size:        %s\n", bytes_text(st.safe_wal_size, b1, sizeof(b1)));
                else
                    printf("safe_wal_size:        unlimited (max_slot_wal_keep_size = -1)\n");
            }
            if (strcmp(st.wal_status, "lost") == 0) {
                wc_err_set(
                    &err, WC_ERR_SLOT,
                    "replication slot \"%s\" is lost: the server removed WAL it needed; drop and recreate "
                    "it (walcast slot drop, walcast slot create) and rebuild the projections",
                    cfg->slot);
                rc = slot_fail(&err);
            }
        }
    } else if (strcmp(action, "drop") == 0) {
        if (wc_slot_drop(cfg->source_dsn, cfg->slot, o->force, &err) < 0)
            rc = slot_fail(&err);
        else
            printf("replication slot \"%s\" dropped\n", cfg->slot);
    } else if (strcmp(action, "check") == 0) {
        struct wc_check_item items[16];
        struct wc_outbox ob;
        int replay = wc_engine_outbox(cfg, &ob);
        int n = wc_slot_check(cfg->source_dsn, &ob, replay, items, 16, &err);
        if (n < 0) {
            rc = slot_fail(&err);
        } else {
            int bad = 0;
            for (int i = 0; i < n; i++) {
                printf("%-24s %-4s %s\n", items[i].name, items[i].ok ? "ok" : "FAIL", items[i].detail);
                bad += !items[i].ok;
            }
            if (bad) {
                wc_error("the server or the outbox is not ready for walcast: see the FAIL lines (and "
                         "\"walcast doctor\" for the whole setup)");
                rc = EXIT_ERROR;
            }
        }
    } else {
        wc_error("unknown slot action \"%s\": use create, status, drop or check", action);
        rc = EXIT_CONFIG;
    }
    wc_config_free(cfg);
    return rc;
}
