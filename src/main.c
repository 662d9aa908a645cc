/* main.c - the walcast command line: run, tail, slot create|status|drop|check, check-config. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walcast/config.h"
#include "walcast/engine.h"
#include "walcast/log.h"
#include "walcast/sink.h"
#include "walcast/slot.h"

/* Exit codes, documented in the README. */
#define EXIT_OK 0
#define EXIT_ERROR 1       /* runtime failure: connection, server, data under the halt policy */
#define EXIT_CONFIG 2      /* bad configuration or usage */
#define EXIT_SLOT 3        /* the replication slot is missing or lost */
#define EXIT_SLOT_ACTIVE 4 /* the replication slot is streaming to another process */

static const char *progname = "walcast";

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
        progname, progname, progname, progname, progname, progname);
}

static void on_signal(int sig)
{
    (void)sig;
    wc_engine_stop = 1;
}

static int exit_code_for(const struct wc_err *err)
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

static int fail(const struct wc_err *err)
{
    fprintf(stderr, "%s: error: %s\n", progname, err->msg);
    return exit_code_for(err);
}

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

static void replace(char **field, const char *value)
{
    free(*field);
    *field = strdup(value);
}

/* Load the configuration and apply the command-line overrides. */
static struct wc_config *load_config(const struct options *o, struct wc_err *err)
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

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int cmd_run(const struct options *o)
{
    struct wc_err err = {0};
    struct wc_config *cfg = load_config(o, &err);
    struct wc_sink **sinks;
    struct wc_engine_stats stats = {0};
    int rc = EXIT_OK;

    if (cfg == NULL)
        return fail(&err);
    if (cfg->nsink == 0) {
        wc_err_set(&err, WC_ERR_CONFIG, "%s: no sinks configured: add a \"sinks\" section",
                   o->config ? o->config : "configuration");
        wc_config_free(cfg);
        return fail(&err);
    }
    sinks = calloc((size_t)cfg->nsink, sizeof(*sinks));
    for (int i = 0; i < cfg->nsink; i++) {
        sinks[i] = wc_sink_new(cfg, &cfg->sinks[i], &err);
        if (sinks[i] == NULL) {
            rc = fail(&err);
            goto done;
        }
    }
    install_signals();
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
        rc = fail(&err);
    wc_info("stopped: %llu events in %llu transactions, %llu sink commits, confirmed " WC_LSN_FMT,
            (unsigned long long)stats.events, (unsigned long long)stats.transactions,
            (unsigned long long)stats.commits, WC_LSN_ARGS(stats.confirmed));
done:
    for (int i = 0; i < cfg->nsink; i++)
        wc_sink_free(sinks[i]);
    free(sinks);
    wc_config_free(cfg);
    return rc;
}

static int cmd_tail(const struct options *o)
{
    struct wc_err err = {0};
    struct wc_config *cfg = load_config(o, &err);
    struct wc_sink *sink;
    char *cursor = NULL;
    int rc = EXIT_OK;

    if (cfg == NULL)
        return fail(&err);
    if (o->from_file) {
        sink = wc_sink_jsonl_new(cfg, o->output ? o->output : "-", NULL);
        if (wc_engine_replay_file(cfg, sink, o->from_file, &err) < 0)
            rc = fail(&err);
        wc_sink_free(sink);
        wc_config_free(cfg);
        return rc;
    }
    struct wc_engine_opts eo = {.unknown_ok = 1};
    if (o->endpos && wc_lsn_parse(o->endpos, &eo.endpos) < 0) {
        wc_err_set(&err, WC_ERR_USAGE, "invalid end position \"%s\": use the form X/X, e.g. 0/16B3748",
                   o->endpos);
        wc_config_free(cfg);
        return fail(&err);
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
    install_signals();
    struct wc_sink *sinks[] = {sink};
    if (wc_engine_run(cfg, sinks, 1, &eo, NULL, &err) < 0)
        rc = fail(&err);
    wc_sink_free(sink);
    free(cursor);
    wc_config_free(cfg);
    return rc;
}

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
    int rc = fail(err);
    return rc == EXIT_SLOT || rc == EXIT_SLOT_ACTIVE ? EXIT_ERROR : rc;
}

static int cmd_slot(const char *action, const struct options *o)
{
    struct wc_err err = {0};
    struct wc_config *cfg = load_config(o, &err);
    int rc = EXIT_OK;

    if (cfg == NULL)
        return fail(&err);
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
        int n = wc_slot_check(cfg->source_dsn, items, 16, &err);
        if (n < 0) {
            rc = slot_fail(&err);
        } else {
            int bad = 0;
            for (int i = 0; i < n; i++) {
                printf("%-24s %-4s %s\n", items[i].name, items[i].ok ? "ok" : "FAIL", items[i].detail);
                bad += !items[i].ok;
            }
            if (bad) {
                fprintf(stderr, "%s: error: the server is not ready for logical replication with wal2json\n",
                        progname);
                rc = EXIT_ERROR;
            }
        }
    } else {
        fprintf(stderr, "%s: error: unknown slot action \"%s\": use create, status, drop or check\n",
                progname, action);
        rc = EXIT_CONFIG;
    }
    wc_config_free(cfg);
    return rc;
}

/* walcast dlq list|retry: the dead letters of every sink (or --sink NAME), or one (--id ID). */
static int cmd_dlq(const char *action, const struct options *o)
{
    struct wc_err err = {0};
    struct wc_config *cfg;
    int rc = EXIT_OK, matched = 0;
    int retry = strcmp(action, "retry") == 0;

    if (!retry && strcmp(action, "list") != 0) {
        fprintf(stderr, "%s: error: unknown dlq action \"%s\": use list or retry\n", progname, action);
        return EXIT_CONFIG;
    }
    cfg = load_config(o, &err);
    if (cfg == NULL)
        return fail(&err);
    for (int i = 0; i < cfg->nsink && rc == EXIT_OK; i++) {
        if (o->sink && strcmp(o->sink, cfg->sinks[i].name) != 0)
            continue;
        matched++;
        struct wc_sink *k = wc_sink_new(cfg, &cfg->sinks[i], &err);
        int found = 0, retried = 0, failed = 0;
        if (k == NULL || k->ops->open(k, &err) < 0 || k->ops->read_cursor(k, &k->cursor, &found, &err) < 0) {
            rc = fail(&err);
        } else if (!retry) {
            if (wc_sink_dlq_list(k, o->id, o->json, &err) < 0)
                rc = fail(&err);
        } else if (!found) {
            fprintf(stderr, "%s: sink \"%s\" has not run yet: no dead letters to retry\n", progname, k->name);
        } else if (wc_sink_dlq_retry(k, o->id, &retried, &failed, &err) < 0) {
            rc = fail(&err);
        } else {
            printf("sink \"%s\": %d dead letters applied and removed, %d still failing\n", k->name, retried,
                   failed);
            if (failed)
                rc = EXIT_ERROR;
        }
        wc_sink_free(k);
    }
    if (o->sink && matched == 0) {
        fprintf(stderr, "%s: error: no sink \"%s\" in the configuration\n", progname, o->sink);
        rc = EXIT_CONFIG;
    }
    wc_config_free(cfg);
    return rc;
}

static int cmd_check_config(const struct options *o)
{
    struct wc_err err = {0};
    struct wc_config *cfg;

    if (o->config == NULL) {
        fprintf(stderr, "%s: error: check-config needs -c FILE\n", progname);
        return EXIT_CONFIG;
    }
    cfg = wc_config_load(o->config, &err);
    if (cfg == NULL)
        return fail(&err);
    int nrule = 0;
    for (int i = 0; i < cfg->nsink; i++)
        nrule += cfg->sinks[i].nrule;
    printf("%s: ok (slot \"%s\", outbox \"%s.%s\", %d sinks, %d rules)\n", o->config, cfg->slot,
           cfg->outbox_schema, cfg->outbox_table, cfg->nsink, nrule);
    wc_config_free(cfg);
    return EXIT_OK;
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
    if (strcmp(cmd, "slot") == 0 || strcmp(cmd, "dlq") == 0) {
        if (argc < 3 || argv[2][0] == '-') {
            fprintf(stderr, "%s: error: %s needs an action: %s\n", progname, cmd,
                    cmd[0] == 's' ? "create, status, drop or check" : "list or retry");
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
            fprintf(stderr, "Try \"%s --help\" for more information.\n", progname);
            return EXIT_CONFIG;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: error: unexpected argument \"%s\"\n", progname, argv[optind]);
        return EXIT_CONFIG;
    }
    if (strcmp(cmd, "run") == 0)
        return cmd_run(&o);
    if (strcmp(cmd, "tail") == 0)
        return cmd_tail(&o);
    if (strcmp(cmd, "slot") == 0)
        return cmd_slot(action, &o);
    if (strcmp(cmd, "check-config") == 0)
        return cmd_check_config(&o);
    if (strcmp(cmd, "dlq") == 0)
        return cmd_dlq(action, &o);
    fprintf(stderr, "%s: error: unknown command \"%s\"\n", progname, cmd);
    usage(stderr);
    return EXIT_CONFIG;
}
