/* cmd_rebuild.c - `walcast rebuild` and `walcast verify` (shadow.h). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "shadow.h"

int wc__cmd_rebuild(const struct options *o)
{
    struct wc_err err = {0};
    struct wc_config *cfg;
    struct wc_rebuild_opts ro = {o->projection, o->sink, o->discard, strcmp(o->command->name, "verify") == 0};
    int rc;

    if ((o->projection == NULL) == (o->sink == NULL)) {
        fprintf(stderr, "%s: error: %s needs --projection NAME or --sink NAME (one of them)\n",
                wc__cli_progname, o->command->name);
        return EXIT_CONFIG;
    }
    cfg = wc__cli_load_config(o, &err);
    if (cfg == NULL)
        return wc__cli_fail(&err);
    wc__cli_install_signals();
    rc = wc_rebuild_run(cfg, &ro, &err);
    wc_config_free(cfg);
    if (rc < 0)
        return wc__cli_fail(&err);
    if (ro.verify)
        printf("verify: %s\n", rc == 0 ? "the projection equals its rebuild from the outbox" : "drift found");
    return rc == 0 ? EXIT_OK : EXIT_ERROR;
}
