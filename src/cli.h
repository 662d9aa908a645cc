/* cli.h - what the walcast commands share: options, exit codes, configuration loading, signals.
 * Private to src/ (the command line). */
#ifndef WALCAST_CLI_H
#define WALCAST_CLI_H

#include <stdio.h>

#include "walcast/config.h"
#include "walcast/err.h"

/* Exit codes, documented in the README. */
#define EXIT_OK 0
#define EXIT_ERROR 1       /* runtime failure: connection, server, data under the halt policy */
#define EXIT_CONFIG 2      /* bad configuration or usage */
#define EXIT_SLOT 3        /* the replication slot is missing or lost */
#define EXIT_SLOT_ACTIVE 4 /* the replication slot is streaming to another process */

extern const char *wc__cli_progname;

struct options {
    const char *config;
    const char *source;
    const char *slot;
    const char *outbox;
    const char *output;
    const char *cursor;
    int no_cursor;
    const char *endpos;
    const char *from_file;
    const char *log_level;
    int json;
    int force;
    int standby;
    const char *sink;
    const char *id;
};

/* The exit code for an error. */
int wc__cli_exit_code_for(const struct wc_err *err);
/* Print "walcast: error: MSG" and return the error's exit code. */
int wc__cli_fail(const struct wc_err *err);
/* Load the configuration and apply the command-line overrides (and the log level). */
struct wc_config *wc__cli_load_config(const struct options *o, struct wc_err *err);
/* SIGINT and SIGTERM stop the engine cleanly; SIGPIPE is ignored. */
void wc__cli_install_signals(void);

int wc__cmd_run(const struct options *o);
int wc__cmd_tail(const struct options *o);
int wc__cmd_slot(const char *action, const struct options *o);
int wc__cmd_dlq(const char *action, const struct options *o);
int wc__cmd_sink(const char *action, const struct options *o);
int wc__cmd_check_config(const struct options *o);

#endif
