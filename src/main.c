/* main.c - the walcast command line: parse the options, run the command. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f)
{
    fprintf(
        f,
        "walcast streams a PostgreSQL outbox table through a wal2json replication slot into projections.\n"
        "\n"
        "Usage:\n"
        "  %s run -c FILE [--standby]          apply every event to the configured projections\n"
        "  %s tail [CONNECTION] [OPTIONS]      print each outbox event as one JSON line\n"
        "  %s slot create|status|drop|check [CONNECTION] [--json] [--force]\n"
        "  %s check-config -c FILE\n"
        "  %s dlq list|retry -c FILE [--sink NAME] [--id ID] [--json]\n"
        "  %s sink owner|release -c FILE [--sink NAME] [--json] [--force]\n"
        "  %s version\n"
        "\n"
        "Connection (any command):\n"
        "  -c, --config FILE     configuration file (see docs/configuration.md)\n"
        "  -d, --source DSN      source database (libpq conninfo or URI; overrides source.dsn)\n"
        "  -S, --slot NAME       replication slot (overrides source.slot)\n"
        "      --outbox S.T      outbox table (overrides source.outbox.table)\n"
        "\n"
        "tail options:\n"
        "  -o, --output FILE     write to FILE instead of stdout (exactly once across restarts)\n"
        "      --cursor FILE     cursor file (default: OUTPUT.cursor, or SLOT.cursor for stdout)\n"
        "      --no-cursor       keep no cursor: start at the slot's position\n"
        "  -E, --endpos LSN      stop once the stream reaches LSN\n"
        "      --from-file FILE  decode a captured pg_recvlogical wal2json v2 stream, no server\n"
        "\n"
        "Other:\n"
        "  -v, --log-level LVL   debug, info, warning, error\n"
        "  -h, --help\n"
        "\n"
        "run options:\n"
        "      --standby         if the slot is in use, wait and take over when it is released\n"
        "\n"
        "Exit codes: 0 ok, 1 runtime error, 2 configuration or usage error, 3 replication slot missing or\n"
        "lost, 4 replication slot in use by another process.\n",
        wc__cli_progname, wc__cli_progname, wc__cli_progname, wc__cli_progname, wc__cli_progname,
        wc__cli_progname, wc__cli_progname);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"source", required_argument, NULL, 'd'},
        {"slot", required_argument, NULL, 'S'},
        {"outbox", required_argument, NULL, 1},
        {"output", required_argument, NULL, 'o'},
        {"cursor", required_argument, NULL, 2},
        {"no-cursor", no_argument, NULL, 3},
        {"endpos", required_argument, NULL, 'E'},
        {"from-file", required_argument, NULL, 4},
        {"log-level", required_argument, NULL, 'v'},
        {"json", no_argument, NULL, 5},
        {"force", no_argument, NULL, 6},
        {"standby", no_argument, NULL, 7},
        {"sink", required_argument, NULL, 8},
        {"id", required_argument, NULL, 9},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct options o = {0};
    const char *cmd;
    int c;

    if (argc < 2) {
        usage(stderr);
        return EXIT_CONFIG;
    }
    cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("walcast 0.1.0\n");
        return EXIT_OK;
    }
    const char *action = NULL;
    int first = 2;
    if (strcmp(cmd, "slot") == 0 || strcmp(cmd, "dlq") == 0 || strcmp(cmd, "sink") == 0) {
        if (argc < 3 || argv[2][0] == '-') {
            fprintf(stderr, "%s: error: %s needs an action: %s\n", wc__cli_progname, cmd,
                    strcmp(cmd, "slot") == 0  ? "create, status, drop or check"
                    : strcmp(cmd, "dlq") == 0 ? "list or retry"
                                              : "owner or release");
            return EXIT_CONFIG;
        }
        action = argv[2];
        first = 3;
    }
    optind = first;
    while ((c = getopt_long(argc, argv, "c:d:S:o:E:v:h", longopts, NULL)) != -1) {
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
        case 1:
            o.outbox = optarg;
            break;
        case 'o':
            o.output = optarg;
            break;
        case 2:
            o.cursor = optarg;
            break;
        case 3:
            o.no_cursor = 1;
            break;
        case 'E':
            o.endpos = optarg;
            break;
        case 4:
            o.from_file = optarg;
            break;
        case 'v':
            o.log_level = optarg;
            break;
        case 5:
            o.json = 1;
            break;
        case 6:
            o.force = 1;
            break;
        case 7:
            o.standby = 1;
            break;
        case 8:
            o.sink = optarg;
            break;
        case 9:
            o.id = optarg;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        default:
            fprintf(stderr, "Try \"%s --help\" for more information.\n", wc__cli_progname);
            return EXIT_CONFIG;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: error: unexpected argument \"%s\"\n", wc__cli_progname, argv[optind]);
        return EXIT_CONFIG;
    }
    if (strcmp(cmd, "run") == 0)
        return wc__cmd_run(&o);
    if (strcmp(cmd, "tail") == 0)
        return wc__cmd_tail(&o);
    if (strcmp(cmd, "slot") == 0)
        return wc__cmd_slot(action, &o);
    if (strcmp(cmd, "check-config") == 0)
        return wc__cmd_check_config(&o);
    if (strcmp(cmd, "dlq") == 0)
        return wc__cmd_dlq(action, &o);
    if (strcmp(cmd, "sink") == 0)
        return wc__cmd_sink(action, &o);
    fprintf(stderr, "%s: error: unknown command \"%s\"\n", wc__cli_progname, cmd);
    usage(stderr);
    return EXIT_CONFIG;
}
