/* cli.c - what the walcast commands share: exit codes for errors, configuration with overrides, signals. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "walcast/engine.h"
#include "walcast/log.h"

const char *wc__cli_progname = "walcast";

static void on_signal(int sig)
{
    (void)sig;
    wc_engine_stop = 1;
}

int wc__cli_exit_code_for(const struct wc_err *err)
{
    switch (err->code) {
    case WC_ERR_CONFIG:
    case WC_ERR_USAGE:
        return EXIT_CONFIG;
    case WC_ERR_SLOT:
        return EXIT_SLOT;
    case WC_ERR_SLOT_ACTIVE:
        return EXIT_SLOT_ACTIVE;
    default:
        return EXIT_ERROR;
    }
}

int wc__cli_fail(const struct wc_err *err)
{
    fprintf(stderr, "%s: error: %s\n", wc__cli_progname, err->msg);
    return wc__cli_exit_code_for(err);
}

static void replace(char **field, const char *value)
{
    free(*field);
    *field = strdup(value);
}

/* Load the configuration and apply the command-line overrides. */
struct wc_config *wc__cli_load_config(const struct options *o, struct wc_err *err)
{
    struct wc_config *cfg = wc_config_load(o->config, err);
    if (cfg == NULL)
        return NULL;
    if (o->source)
        replace(&cfg->source_dsn, o->source);
    if (o->slot)
        replace(&cfg->slot, o->slot);
    if (o->outbox) {
        const char *dot = strchr(o->outbox, '.');
        if (dot) {
            char *schema = strndup(o->outbox, (size_t)(dot - o->outbox));
            replace(&cfg->outbox_schema, schema);
            free(schema);
            replace(&cfg->outbox_table, dot + 1);
        } else {
            replace(&cfg->outbox_schema, "public");
            replace(&cfg->outbox_table, o->outbox);
        }
    }
    const char *lvl = o->log_level ? o->log_level : cfg->log_level;
    if (lvl) {
        int l = wc_log_level_parse(lvl);
        if (l < 0) {
            wc_err_set(err, WC_ERR_USAGE, "invalid log level \"%s\": use debug, info, warning or error", lvl);
            wc_config_free(cfg);
            return NULL;
        }
        wc_log_level = l;
    }
    return cfg;
}

void wc__cli_install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}
