/* main.c - the walcast command line: find the command, parse its options, run it. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "metrics.h"
#include "walcast/log.h"

static const struct option longopts[] = {
    {"config", required_argument, NULL, 'c'},
    {"source", required_argument, NULL, 'd'},
    {"slot", required_argument, NULL, 'S'},
    {"outbox", required_argument, NULL, 1000 + OPT_OUTBOX},
    {"output", required_argument, NULL, 'o'},
    {"cursor", required_argument, NULL, 1000 + OPT_CURSOR},
    {"no-cursor", no_argument, NULL, 1000 + OPT_NO_CURSOR},
    {"endpos", required_argument, NULL, 'E'},
    {"from-file", required_argument, NULL, 1000 + OPT_FROM_FILE},
    {"json", no_argument, NULL, 1000 + OPT_JSON},
    {"force", no_argument, NULL, 1000 + OPT_FORCE},
    {"standby", no_argument, NULL, 1000 + OPT_STANDBY},
    {"sink", required_argument, NULL, 1000 + OPT_SINK},
    {"id", required_argument, NULL, 1000 + OPT_ID},
    {"watch", no_argument, NULL, 1000 + OPT_WATCH},
    {"timeout", required_argument, NULL, 1000 + OPT_TIMEOUT},
    {"projection", required_argument, NULL, 1000 + OPT_PROJECTION},
    {"discard", no_argument, NULL, 1000 + OPT_DISCARD},
    {"verbose", no_argument, NULL, 'v'},
    {"log-level", required_argument, NULL, 2000},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* The OPT_* of a getopt result, or -1 for an option every command takes. */
static int opt_of(int c)
{
    switch (c) {
    case 'c':
        return OPT_CONFIG;
    case 'd':
        return OPT_SOURCE;
    case 'S':
        return OPT_SLOT;
    case 'o':
        return OPT_OUTPUT;
    case 'E':
        return OPT_ENDPOS;
    default:
        return c >= 1000 && c < 1000 + OPT_COUNT ? c - 1000 : -1;
    }
}

/* An option as the command line spells it, without its value ("--json", "-x"). */
static const char *spelled(const char *arg)
{
    static char buf[64];
    size_t n = strcspn(arg, "=");
    snprintf(buf, sizeof(buf), "%.*s", (int)(n < 60 ? n : 60), arg);
    return buf;
}

/* "--json" or "-c, --config" for an option getopt returned. */
static const char *opt_name(int c)
{
    static char buf[64];
    for (const struct option *l = longopts; l->name; l++)
        if (l->val == c) {
            if (c < 128)
                snprintf(buf, sizeof(buf), "-%c/--%s", c, l->name);
            else
                snprintf(buf, sizeof(buf), "--%s", l->name);
            return buf;
        }
    return "?";
}

static int usage_error(const struct wc_command *cmd, const char *fmt, const char *arg)
{
    char msg[512];
    snprintf(msg, sizeof(msg), fmt, arg);
    wc_error("%s", msg);
    fprintf(stderr, "Try \"%s %s%s--help\" for more information.\n", wc__cli_progname, cmd ? cmd->name : "",
            cmd ? " " : "");
    return EXIT_CONFIG;
}

int main(int argc, char **argv)
{
    struct options o = {0};
    const struct wc_command *cmd;
    const char *action = NULL;
    int c, first = 2, idx;

    if (argc < 2) {
        wc__cli_usage(stderr);
        return EXIT_CONFIG;
    }
    const char *name = argv[1];
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "help") == 0) {
        if (strcmp(name, "help") == 0 && argc > 2 && (cmd = wc__cli_command(argv[2])) != NULL)
            wc__cli_command_usage(stdout, cmd);
        else
            wc__cli_usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(name, "-V") == 0 || strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("walcast %s\n", WC_VERSION);
        return EXIT_OK;
    }
    cmd = wc__cli_command(name);
    if (cmd == NULL) {
        if (name[0] == '-')
            return usage_error(NULL,
                               "a command comes first, before \"%s\": run, tail, slot, status, doctor, "
                               "check-config, dlq, sink, wait-lsn, rebuild or verify",
                               name);
        return usage_error(NULL,
                           "unknown command \"%s\": use run, tail, slot, status, doctor, check-config, dlq, "
                           "sink, wait-lsn, rebuild or verify",
                           name);
    }
    o.command = cmd;
    if (cmd->actions) {
        /* The action comes next; --help is fine in its place. */
        if (argc > 2 && argv[2][0] != '-') {
            action = argv[2];
            first = 3;
        }
    }
    optind = first;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:d:S:o:E:vVh", longopts, &idx)) != -1) {
        if (c == '?')
            return usage_error(cmd, "unknown option \"%s\"", spelled(argv[optind - 1]));
        if (c == ':')
            return usage_error(cmd, "option \"%s\" needs a value", spelled(argv[optind - 1]));
        int opt = opt_of(c);
        if (opt >= 0 && !(cmd->accepts & (1u << opt))) {
            char msg[160];
            snprintf(msg, sizeof(msg), "option \"%%s\" does not apply to \"%s %s\"", wc__cli_progname,
                     cmd->name);
            return usage_error(cmd, msg, opt_name(c));
        }
        switch (c) {
        case 'c':
            o.config = optarg;
            break;
        case 'd':
            o.source = optarg;
            break;
        case 'S':
            o.slot = optarg;
            break;
        case 'o':
            o.output = optarg;
            break;
        case 'E':
            o.endpos = optarg;
            break;
        case 'v':
            o.verbose = 1;
            break;
        case 'V':
            printf("walcast %s\n", WC_VERSION);
            return EXIT_OK;
        case 'h':
            wc__cli_command_usage(stdout, cmd);
            return EXIT_OK;
        case 2000:
            o.log_level = optarg;
            break;
        case 1000 + OPT_OUTBOX:
            o.outbox = optarg;
            break;
        case 1000 + OPT_CURSOR:
            o.cursor = optarg;
            break;
        case 1000 + OPT_NO_CURSOR:
            o.no_cursor = 1;
            break;
        case 1000 + OPT_FROM_FILE:
            o.from_file = optarg;
            break;
        case 1000 + OPT_JSON:
            o.json = 1;
            break;
        case 1000 + OPT_FORCE:
            o.force = 1;
            break;
        case 1000 + OPT_STANDBY:
            o.standby = 1;
            break;
        case 1000 + OPT_SINK:
            o.sink = optarg;
            break;
        case 1000 + OPT_ID:
            o.id = optarg;
            break;
        case 1000 + OPT_WATCH:
            o.watch = 1;
            break;
        case 1000 + OPT_TIMEOUT:
            o.timeout = optarg;
            break;
        case 1000 + OPT_PROJECTION:
            o.projection = optarg;
            break;
        case 1000 + OPT_DISCARD:
            o.discard = 1;
            break;
        }
    }
    /* The action may also come after the options (walcast wait-lsn --sink NAME 0/16B3748). */
    if (action == NULL && cmd->actions && optind < argc)
        action = argv[optind++];
    if (optind < argc)
        return usage_error(cmd, "unexpected argument \"%s\"", argv[optind]);
    if (action == NULL && cmd->actions) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%s needs %s%s", cmd->name,
                 strcmp(cmd->name, "wait-lsn") == 0 ? "" : "an action: ", cmd->actions);
        return usage_error(cmd, "%s", msg);
    }
    if (cmd->needs_config && o.config == NULL) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%s %s needs a configuration file: add -c FILE (--config=FILE)",
                 wc__cli_progname, cmd->name);
        return usage_error(cmd, "%s", msg);
    }
    if (strcmp(cmd->name, "run") == 0)
        return wc__cmd_run(&o);
    if (strcmp(cmd->name, "tail") == 0)
        return wc__cmd_tail(&o);
    if (strcmp(cmd->name, "slot") == 0)
        return wc__cmd_slot(action, &o);
    if (strcmp(cmd->name, "check-config") == 0)
        return wc__cmd_check_config(&o);
    if (strcmp(cmd->name, "dlq") == 0)
        return wc__cmd_dlq(action, &o);
    if (strcmp(cmd->name, "sink") == 0)
        return wc__cmd_sink(action, &o);
    if (strcmp(cmd->name, "status") == 0)
        return wc__cmd_status(&o);
    if (strcmp(cmd->name, "doctor") == 0)
        return wc__cmd_doctor(&o);
    if (strcmp(cmd->name, "wait-lsn") == 0)
        return wc__cmd_wait_lsn(action, &o);
    if (strcmp(cmd->name, "rebuild") == 0 || strcmp(cmd->name, "verify") == 0)
        return wc__cmd_rebuild(&o);
    printf("walcast %s\n", WC_VERSION);
    return EXIT_OK;
}
