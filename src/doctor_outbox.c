/*
 * doctor_outbox.c - `walcast doctor`, the outbox table and the event types in it.
 *
 * The outbox checks (the table, its configured columns, SELECT on it) are the doctor's own for now; they
 * are kept apart here so that a shared check of the outbox (as `walcast slot check` may grow) can take
 * their place.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "doctor.h"

#define AREA "outbox"

void wc__doctor_outbox(struct doctor *d, void *src)
{
    const struct wc_config *cfg = d->cfg;
    PGconn *c = src;
    const char *params[] = {cfg->outbox_schema, cfg->outbox_table};
    char name[300];
    PGresult *r;

    snprintf(name, sizeof(name), "%s.%s", cfg->outbox_schema, cfg->outbox_table);
    r = PQexecParams(c,
                     "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL, "
                     "CASE WHEN to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL THEN "
                     "has_table_privilege(format('%I.%I', $1::text, $2::text), 'SELECT') END",
                     2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        wc__doctor_add(d, AREA, "table", DOC_FAIL, "", "could not look up \"%s\": %s", name,
                       PQresultErrorMessage(r));
        PQclear(r);
        return;
    }
    if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
        wc__doctor_add(d, AREA, "table", DOC_FAIL,
                       "create it (examples/orders/write.sql has one) or set source.outbox.table",
                       "table \"%s\" does not exist (or role \"%s\" cannot see it)", name, PQuser(c));
        PQclear(r);
        return;
    }
    wc__doctor_add(d, AREA, "table", DOC_OK, "", "\"%s\" exists", name);
    int can_select = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    PQclear(r);
    char fix[512];
    snprintf(fix, sizeof(fix), "GRANT SELECT ON %s TO \"%s\";", name, PQuser(c));
    wc__doctor_add(d, AREA, "select", can_select ? DOC_OK : DOC_FAIL, can_select ? "" : fix,
                   can_select ? "role \"%s\" may read it (rebuilds read it)"
                              : "role \"%s\" may not SELECT it",
                   PQuser(c));

    r = PQexecParams(
        c,
        "SELECT attname FROM pg_attribute WHERE attrelid = format('%I.%I', $1::text, $2::text)::regclass "
        "AND attnum > 0 AND NOT attisdropped",
        2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return;
    }
    char missing[512] = "";
    for (int k = 0; k < WC_COL_COUNT; k++) {
        int found = 0;
        for (int i = 0; i < PQntuples(r) && !found; i++)
            found = strcmp(PQgetvalue(r, i, 0), cfg->columns[k]) == 0;
        if (!found) {
            size_t n = strlen(missing);
            snprintf(missing + n, sizeof(missing) - n, "%s\"%s\" (%s)", n ? ", " : "", cfg->columns[k],
                     wc_col_names[k]);
        }
    }
    PQclear(r);
    if (missing[0])
        wc__doctor_add(d, AREA, "columns", DOC_FAIL,
                       "name the table's columns under source.outbox.columns, or add them to the table",
                       "\"%s\" has no column %s", name, missing);
    else
        wc__doctor_add(d, AREA, "columns", DOC_OK, "", "%s, %s, %s, %s, %s, %s", cfg->columns[0],
                       cfg->columns[1], cfg->columns[2], cfg->columns[3], cfg->columns[4], cfg->columns[5]);
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
