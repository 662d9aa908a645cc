/*
 * doctor_outbox.c - `walcast doctor`, the outbox table and the event types in it.
 *
 * The outbox itself is checked by replication/outbox.c, as `walcast run` checks it before streaming.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "doctor.h"
#include "walcast/engine.h"
#include "walcast/outbox.h"

#define AREA "outbox"

/* The shared check of replication/outbox.c (the one `walcast run` and `slot check` make), as doctor lines. */
void wc__doctor_outbox(struct doctor *d, void *src)
{
    const struct wc_config *cfg = d->cfg;
    struct wc_outbox ob;
    struct wc_outbox_info info;
    struct wc_err err = {0};
    char name[300], cols[1024] = "";
    int replay = wc_engine_outbox(cfg, &ob);

    snprintf(name, sizeof(name), "%s.%s", cfg->outbox_schema, cfg->outbox_table);
    if (wc_outbox_check(src, &ob, &info, &err) < 0) {
        /* The message names the problem, what it would cause and the fix. */
        wc__doctor_add(d, AREA, err.code == WC_ERR_CONFIG ? "check" : "reachable", DOC_FAIL, "", "%s",
                       err.msg);
        return;
    }
    wc__doctor_add(d, AREA, "table", DOC_OK, "", "\"%s\" exists", name);
    for (int k = 0; k < WC_COL_COUNT; k++) {
        size_t n = strlen(cols);
        if (ob.columns[k][0] == '\0')
            snprintf(cols + n, sizeof(cols) - n, "%s%s (none)", n ? ", " : "", wc_col_names[k]);
        else
            snprintf(cols + n, sizeof(cols) - n, "%s%s %s", n ? ", " : "", ob.columns[k], info.type[k]);
    }
    wc__doctor_add(d, AREA, "columns", DOC_OK, "", "%s", cols);
    wc__doctor_add(d, AREA, "select", DOC_OK, "", "role \"%s\" may read it (rebuilds read it)", PQuser(src));
    if (info.order[0] && info.order_caveat[0])
        wc__doctor_add(d, AREA, "replay_order", DOC_WARN, "", "%s: %s", info.order_desc, info.order_caveat);
    else if (info.order[0])
        wc__doctor_add(d, AREA, "replay_order", DOC_OK, "", "%s", info.order_desc);
    else
        wc__doctor_add(d, AREA, "replay_order", replay ? DOC_FAIL : DOC_WARN, "", "%s", info.order_problem);
}

/* Levenshtein distance, for "did you mean". */
static int distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 100 || m > 100)
        return 1000;
    int row[101];
    for (size_t j = 0; j <= m; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        int prev = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= m; j++) {
            int cur = row[j];
            int best = prev + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[m];
}

void wc__doctor_events(struct doctor *d, void *src)
{
    const struct wc_config *cfg = d->cfg;
    PGconn *c = src;
    char *sch = PQescapeIdentifier(c, cfg->outbox_schema, strlen(cfg->outbox_schema));
    char *tab = PQescapeIdentifier(c, cfg->outbox_table, strlen(cfg->outbox_table));
    char *col =
        PQescapeIdentifier(c, cfg->columns[WC_COL_EVENT_TYPE], strlen(cfg->columns[WC_COL_EVENT_TYPE]));
    char sql[1024];
    PGresult *r;

    if (sch == NULL || tab == NULL || col == NULL)
        goto done;
    /* A full scan of a large outbox: bounded, the doctor must not hang on it. */
    snprintf(sql, sizeof(sql),
             "BEGIN READ ONLY; SET LOCAL statement_timeout = '30s'; "
             "SELECT %s::text, count(*) FROM %s.%s GROUP BY 1 ORDER BY 1",
             col, sch, tab);
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        wc__doctor_add(d, "events", "outbox_types", DOC_WARN, "",
                       "could not list the event types in the outbox: %s", PQresultErrorMessage(r));
        PQclear(r);
        PQclear(PQexec(c, "ROLLBACK"));
        goto done;
    }
    int nseen = PQntuples(r);
    if (nseen == 0)
        wc__doctor_add(d, "events", "outbox_types", DOC_WARN, "",
                       "the outbox holds no events yet: the event types cannot be checked");
    /* Every type a projection names has occurred. */
    int named_ok = 0;
    for (int s = 0; s < cfg->nsink && nseen > 0; s++)
        for (int k = 0; k < cfg->sinks[s].nrule; k++) {
            const struct wc_rule *rule = &cfg->sinks[s].rules[k];
            int seen = 0, best = 1000;
            if (rule->nstmt == 0 && rule->ncmd == 0)
                continue; /* ignored explicitly ("Type: []"): whether it occurs does not matter */
            const char *near = NULL;
            for (int i = 0; i < nseen && !seen; i++) {
                const char *t = PQgetvalue(r, i, 0);
                seen = strcmp(t, rule->event_type) == 0;
                int dist = distance(t, rule->event_type);
                if (dist < best) {
                    best = dist;
                    near = t;
                }
            }
            if (seen) {
                named_ok++;
                continue;
            }
            char fix[512], hint[256] = "";
            if (near && best <= 2)
                snprintf(hint, sizeof(hint), " (did you mean \"%s\"?)", near);
            snprintf(fix, sizeof(fix), "check the spelling under projections.%s.on (line %d)",
                     rule->projection ? rule->projection : "?", rule->line);
            wc__doctor_add(d, "events", "named_types", DOC_WARN, fix,
                           "projection \"%s\" names event type \"%s\", which never occurred in the outbox%s",
                           rule->projection ? rule->projection : "?", rule->event_type, hint);
        }
    /* Every type that occurred is named by a projection, or ignored explicitly. */
    int unnamed = 0;
    for (int i = 0; i < nseen; i++) {
        const char *t = PQgetvalue(r, i, 0);
        if (wc_config_knows_event(cfg, t))
            continue;
        unnamed++;
        char fix[512];
        snprintf(fix, sizeof(fix),
                 "name it in a projection, or ignore it explicitly: \"%s: []\" under a projection's \"on\"",
                 t);
        wc__doctor_add(
            d, "events", "outbox_types", cfg->on_unknown_event == WC_POLICY_HALT ? DOC_FAIL : DOC_WARN, fix,
            "event type \"%s\" (%s %s in the outbox) is named by no projection: %s", t, PQgetvalue(r, i, 1),
            strcmp(PQgetvalue(r, i, 1), "1") == 0 ? "event" : "events",
            cfg->on_unknown_event == WC_POLICY_HALT   ? "walcast halts on it (on_unknown_event: halt)"
            : cfg->on_unknown_event == WC_POLICY_SKIP ? "walcast skips it (on_unknown_event: skip)"
                                                      : "walcast dead-letters it (on_unknown_event)");
    }
    if (nseen > 0 && unnamed == 0)
        wc__doctor_add(d, "events", "outbox_types", DOC_OK, "", "all %d event types in the outbox are named",
                       nseen);
    if (nseen > 0 && named_ok > 0)
        wc__doctor_add(d, "events", "named_types", DOC_OK, "", "%d of the projections' event types occurred",
                       named_ok);
    PQclear(r);
    PQclear(PQexec(c, "ROLLBACK"));
done:
    PQfreemem(sch);
    PQfreemem(tab);
    PQfreemem(col);
}
