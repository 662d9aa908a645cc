/* cmd_slot.c - `walcast slot create|status|drop|check`: replication slots for DBAs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "walcast/engine.h"
#include "walcast/outbox.h"
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

/* The DBA commands exit 1 on any server-side refusal, as psql would; 2 stays for usage. */
static int slot_fail(const struct wc_err *err)
{
    int rc = wc__cli_fail(err);
    return rc == EXIT_SLOT || rc == EXIT_SLOT_ACTIVE ? EXIT_ERROR : rc;
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
        if (wc_slot_create(cfg->source_dsn, cfg->slot, &existed, &lsn, &err) < 0)
            rc = slot_fail(&err);
        else if (existed)
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
                printf("retained WAL:         %lld bytes\n", (long long)st.retained_bytes);
                printf("lag:                  %lld bytes\n", (long long)st.lag_bytes);
                printf("wal_status:           %s\n", st.wal_status);
                if (st.safe_wal_size >= 0)
                    printf("safe_wal_size:        %lld bytes\n", (long long)st.safe_wal_size);
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
                fprintf(stderr,
                        "%s: error: the server or the outbox is not ready for walcast (see the FAIL lines)\n",
                        wc__cli_progname);
                rc = EXIT_ERROR;
            }
        }
    } else {
        fprintf(stderr, "%s: error: unknown slot action \"%s\": use create, status, drop or check\n",
                wc__cli_progname, action);
        rc = EXIT_CONFIG;
    }
    wc_config_free(cfg);
    return rc;
}
