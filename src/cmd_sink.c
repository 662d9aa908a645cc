/* cmd_sink.c - `walcast sink owner|release`: who owns a sink, and handing a sink over to another engine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "walcast/lease.h"
#include "walcast/sink.h"

static void print_owner(const struct wc_sink *k, int found, const struct wc_owner *o, int json)
{
    if (json && found)
        printf("{\"sink\":\"%s\",\"owner\":{\"system_identifier\":\"%s\",\"database\":\"%s\",\"slot\":\"%s\"}"
               "}\n",
               k->name, o->system_id, o->database, o->slot);
    else if (json)
        printf("{\"sink\":\"%s\",\"owner\":null}\n", k->name);
    else if (found)
        printf("sink \"%s\": owned by replication slot \"%s\" of database \"%s\" on system %s\n", k->name,
               o->slot, o->database, o->system_id);
    else
        printf("sink \"%s\": no owner (the next engine to open it claims it)\n", k->name);
}

/*
 * Before a release: the owner's engine must be stopped, or it would go on applying events to a sink that
 * another engine is about to rebuild. When the owner is this configuration's source, its lease tells;
 * *lease is kept (and the slot held) until the release is done.
 */
static int owner_stopped(const struct wc_config *cfg, const struct wc_owner *o, int force,
                         struct wc_lease **lease, struct wc_err *err)
{
    int holder = 0;

    if (force)
        return 0;
    *lease = wc_lease_open(cfg->source_dsn, err);
    if (*lease == NULL) {
        wc_err_prefix(err,
                      "could not check that the owner's engine is stopped (--force releases without it)");
        return -1;
    }
    if (strcmp(wc_lease_system_id(*lease), o->system_id) != 0 ||
        strcmp(wc_lease_database(*lease), o->database) != 0) {
        fprintf(
            stderr,
            "%s: warning: the owner is not this configuration's source: make sure its engine is stopped\n",
            wc__cli_progname);
        return 0;
    }
    int r = wc_lease_take(*lease, o->slot, &holder, err);
    if (r > 0)
        return 0;
    if (r == 0)
        wc_err_prefix(err, "stop the engine that owns the sink first");
    return -1;
}

int wc__cmd_sink(const char *action, const struct options *o)
{
    struct wc_err err = {0};
    struct wc_config *cfg;
    int release = strcmp(action, "release") == 0, rc = EXIT_OK, matched = 0;

    if (!release && strcmp(action, "owner") != 0) {
        fprintf(stderr, "%s: error: unknown sink action \"%s\": use owner or release\n", wc__cli_progname,
                action);
        return EXIT_CONFIG;
    }
    if (release && o->sink == NULL) {
        fprintf(stderr, "%s: error: sink release needs --sink NAME\n", wc__cli_progname);
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
        struct wc_lease *lease = NULL;
        struct wc_owner owner;
        int found = 0;
        if (k == NULL || k->ops->open(k, &err) < 0 || wc_sink_owner(k, &owner, &found, &err) < 0) {
            rc = wc__cli_fail(&err);
        } else if (!release || !found) {
            print_owner(k, found, &owner, o->json);
        } else if (owner_stopped(cfg, &owner, o->force, &lease, &err) < 0 ||
                   wc_sink_release(k, &owner, &found, &err) < 0) {
            rc = wc__cli_fail(&err);
        } else {
            printf("sink \"%s\" released by replication slot \"%s\" of database \"%s\" on system %s: its "
                   "projections are kept and its cursor removed; %s\n",
                   k->name, owner.slot, owner.database, owner.system_id,
                   k->conf->rebuild
                       ? "the next engine to open it rebuilds it from the outbox table"
                       : "the next engine to open it applies its own slot's events on top of "
                         "what the sink holds (wipe the projections first, or set a rebuild action)");
        }
        wc_lease_close(lease);
        wc_sink_free(k);
    }
    if (o->sink && matched == 0) {
        fprintf(stderr, "%s: error: no sink \"%s\" in the configuration\n", wc__cli_progname, o->sink);
        rc = EXIT_CONFIG;
    }
    wc_config_free(cfg);
    return rc;
}
