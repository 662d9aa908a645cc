/* cli.c - what the walcast commands share: exit codes for errors, configuration with overrides, logging
 * and the passwords it must never show, signals. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cli.h"
#include "walcast/engine.h"
#include "walcast/log.h"
#include "walcast/probe.h"

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
    wc_error("%s", err->msg);
    return wc__cli_exit_code_for(err);
}

/* The password of a libpq conninfo or URI (new string), NULL when it has none. */
static char *pg_password(const char *dsn)
{
    char *pw = NULL;
    PQconninfoOption *opts = dsn && *dsn ? PQconninfoParse(dsn, NULL) : NULL;

    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val && *o->val)
            pw = strdup(o->val);
    PQconninfoFree(opts);
    return pw;
}

/* Every password of the configuration (and libpq's PGPASSWORD) is masked in every log line. */
static void mask_passwords(const struct wc_config *cfg)
{
    char *pw = pg_password(cfg->source_dsn);
    wc_log_add_secret(pw);
    free(pw);
    wc_log_add_secret(getenv("PGPASSWORD"));
    for (int i = 0; i < cfg->nsink; i++) {
        pw = cfg->sinks[i].type == WC_SINK_REDIS ? wc_redis_dsn_password(cfg->sinks[i].dsn)
                                                 : pg_password(cfg->sinks[i].dsn);
        wc_log_add_secret(pw);
        free(pw);
    }
}

/* Load the configuration and apply the command-line overrides, validated as the file's values are. */
struct wc_config *wc__cli_load_config(const struct options *o, struct wc_err *err)
{
    struct wc_config *cfg = wc_config_load(o->config, err);
    if (cfg == NULL)
        return NULL;
    if ((o->source && wc_config_set(cfg, "source.dsn", o->source, "--source", err) < 0) ||
        (o->slot && wc_config_set(cfg, "source.slot", o->slot, "--slot", err) < 0) ||
        (o->outbox && wc_config_set(cfg, "source.outbox.table", o->outbox, "--outbox", err) < 0)) {
        wc_config_free(cfg);
        return NULL;
    }
    const char *lvl = o->verbose ? "debug" : o->log_level ? o->log_level : cfg->log_level;
    if (lvl) {
        int l = wc_log_level_parse(lvl);
        if (l < 0) {
            wc_err_set(err, WC_ERR_USAGE, "invalid log level \"%s\": use debug, info, warning or error", lvl);
            wc_config_free(cfg);
            return NULL;
        }
        wc_log_level = l;
    }
    if (cfg->log_format)
        wc_log_format = wc_log_format_parse(cfg->log_format) == WC_LOG_JSON ? WC_LOG_JSON : WC_LOG_PLAIN;
    mask_passwords(cfg);
    if (o->source) {
        char *pw = pg_password(o->source);
        if (pw)
            wc_warning("the connection string given with --source holds a password, which every user of this "
                       "machine can read in the process list: keep it in a password file (PGPASSFILE, by "
                       "default ~/.pgpass) or in the environment (PGPASSWORD, or the whole string in "
                       "WALCAST_SOURCE_DSN)");
        free(pw);
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
