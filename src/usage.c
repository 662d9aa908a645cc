/* usage.c - the help of each command, and which options each one takes. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define CONNECTION_HELP                                                                                      \
    "Connection (a configuration file, or the source and slot directly, as pg_recvlogical's -d and -S):\n"   \
    "  -c, --config=FILE      configuration file (see docs/configuration.md)\n"                              \
    "  -d, --source=DSN       source database: libpq conninfo or URI (overrides source.dsn); keep a\n"       \
    "                         password out of it: use PGPASSFILE (~/.pgpass) or the environment\n"           \
    "  -S, --slot=NAME        replication slot (overrides source.slot)\n"                                    \
    "      --outbox=S.T       outbox table (overrides source.outbox.table)\n"

#define COMMON_HELP                                                                                          \
    "Options of every command:\n"                                                                            \
    "  -v, --verbose          log at debug level\n"                                                          \
    "      --log-level=LEVEL  debug, info, warning or error (overrides engine.log_level)\n"                  \
    "  -V, --version          print the version and exit\n"                                                  \
    "  -h, --help             show this help and exit\n"

#define EXIT_HELP                                                                                            \
    "Exit status: 0 success, 1 runtime error (wait-lsn: timed out), 2 configuration or usage error,\n"       \
    "3 replication slot missing or lost, 4 replication slot in use by another process (the same for every\n" \
    "command).\n"

#define O(x) (1u << (x))
#define CONN (O(OPT_CONFIG) | O(OPT_SOURCE) | O(OPT_SLOT) | O(OPT_OUTBOX))

static const struct wc_command commands[] = {
    {"run", "run -c FILE [--standby]",
     "Stream the slot and apply every event to the configured projections.\n",
     "Options:\n"
     "  -c, --config=FILE      configuration file (required)\n"
     "  -d, --source=DSN, -S, --slot=NAME, --outbox=S.T\n"
     "                         override source.dsn, source.slot, source.outbox.table\n"
     "      --standby          if another process streams the slot, wait and take over when it is released\n"
     "\n"
     "walcast run stops cleanly on SIGINT and SIGTERM: it commits the batch in flight, confirms and exits "
     "0.\n"
     "With metrics.listen set it serves /metrics, /healthz, /readyz, /status and /wait "
     "(docs/operations.md).\n",
     CONN | O(OPT_STANDBY), 1, NULL},
    {"tail", "tail [CONNECTION] [OPTIONS]",
     "Print each outbox event as one JSON line (event_id, aggregate_type, aggregate_id, event_type, "
     "payload,\n"
     "occurred_at, lsn, commit_time).\n",
     CONNECTION_HELP
     "\n"
     "Output:\n"
     "  -o, --output=FILE      write to FILE (mode 0600) instead of stdout: exactly once "
     "across restarts\n"
     "      --cursor=FILE      cursor file (default: OUTPUT.cursor, or SLOT.cursor for stdout)\n"
     "      --no-cursor        keep no cursor: start at the slot's position\n"
     "  -E, --endpos=LSN       stop once the stream reaches LSN\n"
     "      --from-file=FILE   decode a captured pg_recvlogical wal2json v2 stream, no server\n",
     CONN | O(OPT_OUTPUT) | O(OPT_CURSOR) | O(OPT_NO_CURSOR) | O(OPT_ENDPOS) | O(OPT_FROM_FILE), 0, NULL},
    {"slot", "slot create|status|drop|check [CONNECTION] [--json] [--force]",
     "Replication slots for DBAs:\n"
     "  create   create the logical slot with wal2json (an existing wal2json slot is fine)\n"
     "  status   slot, plugin, active pid, positions, retained WAL, lag, wal_status, safe_wal_size\n"
     "  drop     drop the slot; an active one only with --force (terminates its walsender)\n"
     "  check    is the server ready: wal_level, free slots and senders, REPLICATION, wal2json\n",
     CONNECTION_HELP "\n"
                     "Options:\n"
                     "      --json             status: one JSON object\n"
                     "      --force            drop: terminate the walsender of an active slot first\n",
     CONN | O(OPT_JSON) | O(OPT_FORCE), 0, "create, status, drop or check"},
    {"status", "status -c FILE [--json] [--watch]",
     "What the engine is doing, in one screen: per sink its cursor, lag in bytes and seconds, events/s and\n"
     "dead letters; the slot's retained WAL, wal_status, safe_wal_size and the forecast of when the server\n"
     "invalidates it; warnings. Read from the running engine's endpoint (metrics.listen) when it answers,\n"
     "from the servers otherwise.\n",
     "Options:\n"
     "  -c, --config=FILE      configuration file (required)\n"
     "  -d, --source=DSN, -S, --slot=NAME\n"
     "                         override source.dsn and source.slot\n"
     "      --json             one JSON object\n"
     "      --watch            refresh every second until interrupted\n",
     CONN | O(OPT_JSON) | O(OPT_WATCH), 1, NULL},
    {"doctor", "doctor -c FILE [--json]",
     "Check everything walcast needs, one line per check (OK, WARN or FAIL) with the exact fix: the source\n"
     "(wal_level, slots and WAL senders, REPLICATION, the outbox and its columns, wal2json,\n"
     "max_slot_wal_keep_size, wal_sender_timeout), each read database (reachable, every projection\n"
     "statement prepares, rights on walcast's tables), each Redis (reachable, maxmemory-policy, "
     "persistence,\n"
     "cluster mode), and the event types (named by a projection, seen in the outbox). Exit 0 when nothing\n"
     "FAILs, 1 otherwise.\n",
     "Options:\n"
     "  -c, --config=FILE      configuration file (required)\n"
     "  -d, --source=DSN, -S, --slot=NAME, --outbox=S.T\n"
     "                         override source.dsn, source.slot, source.outbox.table\n"
     "      --json             one JSON object\n",
     CONN | O(OPT_JSON), 1, NULL},
    {"check-config", "check-config -c FILE",
     "Validate the configuration file; every error names the file, line and key (exit 2).\n",
     "Options:\n"
     "  -c, --config=FILE      configuration file (required)\n",
     O(OPT_CONFIG), 1, NULL},
    {"dlq", "dlq list|retry -c FILE [--sink NAME] [--id ID] [--json]",
     "Dead letters:\n"
     "  list     print them, one line (or one JSON object) each\n"
     "  retry    apply them again with the current configuration; each that applies is removed with its\n"
     "           writes; one that still fails stays (exit 1)\n",
     "Options:\n"
     "  -c, --config=FILE      configuration file (required)\n"
     "      --sink=NAME        only this sink's\n"
     "      --id=ID            only this dead letter\n"
     "      --json             list: one JSON object per dead letter\n",
     O(OPT_CONFIG) | O(OPT_SINK) | O(OPT_ID) | O(OPT_JSON), 1, "list or retry"},
    {"sink", "sink owner|release -c FILE [--sink NAME] [--json] [--force]",
     "Which source owns each sink, and handing a sink over:\n"
     "  owner    print each sink's owner (system identifier, database, slot)\n"
     "  release  remove a sink's owner record and that owner's cursor, so that another slot or source may\n"
     "           take it (refused while the owner streams, unless --force)\n",
     "Options:\n"
     "  -c, --config=FILE      configuration file (required)\n"
     "  -d, --source=DSN, -S, --slot=NAME, --outbox=S.T\n"
     "                         override source.dsn, source.slot, source.outbox.table\n"
     "      --sink=NAME        only this sink\n"
     "      --json             owner: one JSON object per sink\n"
     "      --force            release: even while the owner holds its lease\n",
     CONN | O(OPT_SINK) | O(OPT_JSON) | O(OPT_FORCE), 1, "owner or release"},
    {"wait-lsn", "wait-lsn LSN -c FILE [--sink NAME] [--timeout MS]",
     "Wait until a sink has applied every transaction up to LSN, then print the position it has applied\n"
     "through (read your writes: take LSN from pg_current_wal_insert_lsn() in the writer's session right\n"
     "after its COMMIT). Asks the sink's own server (Redis: SUBSCRIBE then HGET walcast:applied:SLOT;\n"
     "PostgreSQL: LISTEN walcast_applied then walcast_cursor), so it works without the engine's endpoint.\n"
     "Exit 0 when applied, 1 when timed out (the position applied through is printed) or a server fails,\n"
     "2 for bad input (an LSN that is not X/Y, an unknown sink).\n",
     "Options:\n"
     "  -c, --config=FILE      configuration file (required)\n"
     "      --sink=NAME        the sink to wait for (optional with one sink)\n"
     "      --timeout=MS       give up after MS milliseconds (default 10000)\n",
     O(OPT_CONFIG) | O(OPT_SINK) | O(OPT_TIMEOUT), 1, "the LSN to wait for (X/Y)"},
    {"rebuild", "rebuild -c FILE --projection NAME | --sink NAME [--discard]",
     "Rebuild a projection (or every projection of a sink) from the outbox table while the engine keeps it\n"
     "live: shadow tables (Redis: shadow keys) are filled from a snapshot, caught up with the live sink, "
     "and\n"
     "swapped in at the live sink's position (renames in one transaction; Redis: one script). A stopped\n"
     "rebuild resumes at the next run; --discard drops it. A PostgreSQL sink that lost data is rebuilt with\n"
     "--sink (docs/operations.md).\n",
     "Options:\n"
     "  -c, --config=FILE      configuration file (required)\n"
     "      --projection=NAME  the projection to rebuild (its tables: projections.NAME.tables)\n"
     "      --sink=NAME        every projection of the sink\n"
     "      --discard          drop an unfinished rebuild (its shadow schema and slot) instead\n",
     O(OPT_CONFIG) | O(OPT_PROJECTION) | O(OPT_SINK) | O(OPT_DISCARD), 1, NULL},
    {"verify", "verify -c FILE --projection NAME | --sink NAME",
     "Rebuild a projection into a shadow from the outbox table and compare it with the live one at the\n"
     "same position: rows (PostgreSQL) or keys (Redis, one server) missing, extra or different, with\n"
     "examples. Exit 1 on any drift. The shadow is dropped afterwards.\n",
     "Options:\n"
     "  -c, --config=FILE      configuration file (required)\n"
     "      --projection=NAME  the projection to check\n"
     "      --sink=NAME        every projection of the sink\n",
     O(OPT_CONFIG) | O(OPT_PROJECTION) | O(OPT_SINK), 1, NULL},
    {"version", "version", "Print the version.\n", "", 0, 0, NULL},
    {NULL, NULL, NULL, NULL, 0, 0, NULL},
};

const struct wc_command *wc__cli_command(const char *name)
{
    for (const struct wc_command *c = commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

void wc__cli_usage(FILE *f)
{
    fprintf(
        f, "walcast streams a PostgreSQL outbox table through a wal2json replication slot into projections.\n"
           "\n"
           "Usage:\n");
    for (const struct wc_command *c = commands; c->name; c++)
        fprintf(f, "  %s %s\n", wc__cli_progname, c->synopsis);
    fprintf(f,
            "\n"
            "Run \"%s COMMAND --help\" for a command's options. The manual: man walcast.\n"
            "\n" COMMON_HELP "\n" EXIT_HELP,
            wc__cli_progname);
}

void wc__cli_command_usage(FILE *f, const struct wc_command *c)
{
    fprintf(f, "%s", c->what);
    fprintf(f, "\nUsage:\n  %s %s\n\n", wc__cli_progname, c->synopsis);
    if (c->options[0])
        fprintf(f, "%s\n", c->options);
    fprintf(f, COMMON_HELP "\n" EXIT_HELP);
}
