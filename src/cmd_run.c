/* cmd_run.c - `walcast run` (the projections) and `walcast tail` (JSON lines). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "metrics.h"
#include "walcast/engine.h"
#include "walcast/log.h"
#include "walcast/sink.h"

int wc__cmd_run(const struct options *o)
{
    struct wc_err err = {0};
    struct wc_config *cfg = wc__cli_load_config(o, &err);
    struct wc_sink **sinks;
    struct wc_engine_stats stats = {0};
    int rc = EXIT_OK;

    if (cfg == NULL)
        return wc__cli_fail(&err);
    if (cfg->nsink == 0) {
        wc_err_set(&err, WC_ERR_CONFIG,
                   "%s: no sinks configured: add a \"sinks\" section and projections (docs/configuration.md)",
                   o->config ? o->config : "configuration");
        wc_config_free(cfg);
        return wc__cli_fail(&err);
    }
    sinks = calloc((size_t)cfg->nsink, sizeof(*sinks));
    for (int i = 0; i < cfg->nsink; i++) {
        sinks[i] = wc_sink_new(cfg, &cfg->sinks[i], &err);
        if (sinks[i] == NULL) {
            rc = wc__cli_fail(&err);
            goto done;
        }
    }
    wc__cli_install_signals();
    if (wc_metrics_start(cfg, sinks, cfg->nsink, &err) < 0) {
        rc = wc__cli_fail(&err);
        goto done;
    }
    struct wc_engine_opts eo = {
        .standby = o->standby,
        .heartbeat_ms = cfg->heartbeat_interval_ms,
        .retry_base_ms = cfg->retry_base_ms,
        .retry_max_ms = cfg->retry_max_ms,
        .max_retries = cfg->retry_max_attempts,
    };
    wc_info("starting: slot \"%s\", outbox \"%s.%s\", %d sinks", cfg->slot, cfg->outbox_schema,
            cfg->outbox_table, cfg->nsink);
    if (wc_engine_run(cfg, sinks, cfg->nsink, &eo, &stats, &err) < 0)
        rc = wc__cli_fail(&err);
    wc_info("stopped: %llu events in %llu transactions, %llu sink commits, confirmed " WC_LSN_FMT,
            (unsigned long long)stats.events, (unsigned long long)stats.transactions,
            (unsigned long long)stats.commits, WC_LSN_ARGS(stats.confirmed));
    wc_metrics_stop();
done:
    for (int i = 0; i < cfg->nsink; i++)
        wc_sink_free(sinks[i]);
    free(sinks);
    wc_config_free(cfg);
    return rc;
}

int wc__cmd_tail(const struct options *o)
{
    struct wc_err err = {0};
    struct wc_config *cfg = wc__cli_load_config(o, &err);
    struct wc_sink *sink;
    char *cursor = NULL;
    int rc = EXIT_OK;

    if (cfg == NULL)
        return wc__cli_fail(&err);
    if (o->from_file) {
        sink = wc_sink_jsonl_new(cfg, o->output ? o->output : "-", NULL);
        if (wc_engine_replay_file(cfg, sink, o->from_file, &err) < 0)
            rc = wc__cli_fail(&err);
        wc_sink_free(sink);
        wc_config_free(cfg);
        return rc;
    }
    struct wc_engine_opts eo = {.unknown_ok = 1};
    if (o->endpos && wc_lsn_parse(o->endpos, &eo.endpos) < 0) {
        wc_err_set(&err, WC_ERR_USAGE, "invalid end position \"%s\": use the form X/X, e.g. 0/16B3748",
                   o->endpos);
        wc_config_free(cfg);
        return wc__cli_fail(&err);
    }
    if (!o->no_cursor) {
        if (o->cursor)
            cursor = strdup(o->cursor);
        else if (o->output && strcmp(o->output, "-") != 0) {
            if (asprintf(&cursor, "%s.cursor", o->output) < 0)
                cursor = NULL;
        } else if (asprintf(&cursor, "%s.cursor", cfg->slot) < 0)
            cursor = NULL;
    }
    sink = wc_sink_jsonl_new(cfg, o->output ? o->output : "-", cursor);
    wc__cli_install_signals();
    struct wc_sink *sinks[] = {sink};
    if (wc_engine_run(cfg, sinks, 1, &eo, NULL, &err) < 0)
        rc = wc__cli_fail(&err);
    wc_sink_free(sink);
    free(cursor);
    wc_config_free(cfg);
    return rc;
}
