/* cmd_dlq.c - `walcast dlq list|retry` and `walcast check-config`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "walcast/log.h"
#include "walcast/sink.h"

/* walcast dlq list|retry: the dead letters of every sink (or --sink NAME), or one (--id ID). */
int wc__cmd_dlq(const char *action, const struct options *o)
{
    struct wc_err err = {0};
    struct wc_config *cfg;
    int rc = EXIT_OK, matched = 0;
    int retry = strcmp(action, "retry") == 0;

    if (!retry && strcmp(action, "list") != 0) {
        wc_error("unknown dlq action \"%s\": use list or retry", action);
        return EXIT_CONFIG;
    }
    cfg = wc__cli_load_config(o, &err);
    if (cfg == NULL)
        return wc__cli_fail(&err);
    for (int i = 0; i < cfg->nsink && rc == EXIT_OK; i++) {
        if (o->sink && strcmp(o->sink, cfg->sinks[i].name) != 0)
            continue;
        matched++;
        struct wc_sink *k = wc_sink_new(cfg, &cfg->sinks[i], &err);
        int found = 0, retried = 0, failed = 0;
        if (k == NULL || k->ops->open(k, &err) < 0 || k->ops->read_cursor(k, &k->cursor, &found, &err) < 0) {
            rc = wc__cli_fail(&err);
        } else if (!retry) {
            if (wc_sink_dlq_list(k, o->id, o->json, &err) < 0)
                rc = wc__cli_fail(&err);
        } else if (!found) {
            wc_info("sink \"%s\" has not run yet: no dead letters to retry", k->name);
        } else if (wc_sink_dlq_retry(k, o->id, &retried, &failed, &err) < 0) {
            rc = wc__cli_fail(&err);
        } else {
            printf("sink \"%s\": %d dead letters applied and removed, %d still failing\n", k->name, retried,
                   failed);
            if (failed)
                rc = EXIT_ERROR;
        }
        wc_sink_free(k);
    }
    if (o->sink && matched == 0) {
        wc_error("no sink \"%s\" in the configuration", o->sink);
        rc = EXIT_CONFIG;
    }
    wc_config_free(cfg);
    return rc;
}

int wc__cmd_check_config(const struct options *o)
{
    struct wc_err err = {0};
    struct wc_config *cfg;

    cfg = wc_config_load(o->config, &err);
    if (cfg == NULL)
        return wc__cli_fail(&err);
    int nrule = 0;
    for (int i = 0; i < cfg->nsink; i++)
        nrule += cfg->sinks[i].nrule;
    printf("%s: ok (slot \"%s\", outbox \"%s.%s\", %d sinks, %d rules)\n", o->config, cfg->slot,
           cfg->outbox_schema, cfg->outbox_table, cfg->nsink, nrule);
    wc_config_free(cfg);
    return EXIT_OK;
}
