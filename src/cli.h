/* cli.h - what the walcast commands share: options, exit codes, configuration loading, signals.
 * Private to src/ (the command line). */
#ifndef WALCAST_CLI_H
#define WALCAST_CLI_H

#include <stdio.h>

#include "walcast/config.h"
#include "walcast/err.h"

/* Exit codes, one table for every command (README, walcast(1)). */
#define EXIT_OK 0
#define EXIT_ERROR 1  /* runtime failure: connection, server, data under the halt policy, a doctor FAIL */
#define EXIT_CONFIG 2 /* bad configuration or usage */
#define EXIT_SLOT 3   /* the replication slot is missing or lost */
#define EXIT_SLOT_ACTIVE 4 /* the replication slot is streaming to another process */

/* Options, as bits of struct wc_command.accepts. */
enum {
    OPT_CONFIG,
    OPT_SOURCE,
    OPT_SLOT,
    OPT_OUTBOX,
    OPT_OUTPUT,
    OPT_CURSOR,
    OPT_NO_CURSOR,
    OPT_ENDPOS,
    OPT_FROM_FILE,
    OPT_JSON,
    OPT_FORCE,
    OPT_STANDBY,
    OPT_SINK,
    OPT_ID,
    OPT_WATCH,
    OPT_TIMEOUT,
    OPT_PROJECTION,
    OPT_DISCARD,
    OPT_COUNT
};

/* One command: its help and the options it takes (beyond -v, --log-level, -V and -h, which all take). */
struct wc_command {
    const char *name;
    const char *synopsis; /* after the program name */
    const char *what;     /* what it does */
    const char *options;  /* its options, as help text */
    unsigned accepts;     /* 1 << OPT_* */
    int needs_config;     /* -c FILE is required */
    const char *actions;  /* the actions that come after the command ("list or retry"), or NULL */
};

const struct wc_command *wc__cli_command(const char *name);
void wc__cli_usage(FILE *f);
void wc__cli_command_usage(FILE *f, const struct wc_command *c);

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
    int watch;
    const char *timeout;
    const char *projection;
    int discard;
    int verbose;
    const struct wc_command *command;
};

/* The exit code for an error. */
int wc__cli_exit_code_for(const struct wc_err *err);
/* Log MSG as an error line (timestamped like every log line) and return the error's exit code. */
int wc__cli_fail(const struct wc_err *err);
/* Load the configuration and apply the command-line overrides (and the log level). */
struct wc_config *wc__cli_load_config(const struct options *o, struct wc_err *err);
/* SIGINT and SIGTERM stop the engine cleanly; SIGPIPE is ignored. */
void wc__cli_install_signals(void);

/* GET path from the endpoint at listen (metrics.listen form), within timeout_ms: 0 with *body (new
 * string) on HTTP 200, -1 with why. */
int wc__http_get(const char *listen, const char *path, int timeout_ms, char **body, char *why,
                 size_t whysize);

int wc__cmd_run(const struct options *o);
int wc__cmd_tail(const struct options *o);
int wc__cmd_slot(const char *action, const struct options *o);
int wc__cmd_dlq(const char *action, const struct options *o);
int wc__cmd_sink(const char *action, const struct options *o);
int wc__cmd_check_config(const struct options *o);
int wc__cmd_status(const struct options *o);
int wc__cmd_doctor(const struct options *o);
int wc__cmd_wait_lsn(const char *lsn, const struct options *o);
int wc__cmd_rebuild(const struct options *o); /* rebuild and verify */

#endif
