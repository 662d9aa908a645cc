/*
 * verify_pg.c - `walcast verify` for a PostgreSQL projection: each live table against its shadow rebuilt
 * from the outbox at the same position (shadow.h): rows missing from the live table, extra in it, or
 * different (the same primary key, other values).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shadow.h"
#include "walcast/buf.h"

/* The primary key of live table i as "l.a = s.a AND l.b = s.b" over aliases l and s, into b; 0 when it
 * has none (then a row is only missing or extra). */
static int key_match(struct wc_shadow *sh, int i, struct wc_buf *b, struct wc_err *err)
{
    char name[200];
    snprintf(name, sizeof(name), "%s.%s", sh->live_schema[i], sh->table[i]);
    char *qs = PQescapeIdentifier(sh->conn, sh->live_schema[i], strlen(sh->live_schema[i]));
    char *qt = PQescapeIdentifier(sh->conn, sh->table[i], strlen(sh->table[i]));
    char reg[300];
    snprintf(reg, sizeof(reg), "%s.%s", qs, qt);
    PQfreemem(qs);
    PQfreemem(qt);
    const char *params[1] = {reg};
    PGresult *r =
        PQexecParams(sh->conn,
                     "SELECT string_agg(format('l.%1$I IS NOT DISTINCT FROM s.%1$I', a.attname), ' AND ') "
                     "FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = "
                     "ANY(i.indkey) WHERE i.indrelid = $1::regclass AND i.indisprimary",
                     1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        wc_err_set(err, WC_ERR_DATA, "could not read the primary key of \"%s\": %s", name,
                   PQerrorMessage(sh->conn));
        PQclear(r);
        return -1;
    }
    int has = !PQgetisnull(r, 0, 0);
    if (has)
        wc_buf_puts(b, PQgetvalue(r, 0, 0));
    PQclear(r);
    return has;
}

int wc_shadow_compare(struct wc_shadow *sh, int examples, long long *drift, struct wc_err *err)
{
    struct wc_buf b = WC_BUF_INIT, key = WC_BUF_INIT;
    int rc = -1;

    *drift = 0;
    if (sh->redis)
        return wc_rshadow_compare(sh, examples, drift, err);
    for (int i = 0; i < sh->ntable; i++) {
        char *ls, *ss, *t;
        wc_buf_reset(&key);
        int has_key = key_match(sh, i, &key, err);
        if (has_key < 0)
            goto done;
        wc_buf_reset(&b);
        /* l: live rows the shadow lacks; s: shadow rows the live table lacks. A row of l whose key is in s
         * is "different" (reported once, from l). */
        ls = PQescapeIdentifier(sh->conn, sh->live_schema[i], strlen(sh->live_schema[i]));
        ss = PQescapeIdentifier(sh->conn, sh->schema, strlen(sh->schema));
        t = PQescapeIdentifier(sh->conn, sh->table[i], strlen(sh->table[i]));
        const char *k = has_key ? key.data : "false";
        wc_buf_printf(
            &b,
            "WITH l AS (SELECT * FROM %s.%s EXCEPT ALL SELECT * FROM %s.%s), "
            "s AS (SELECT * FROM %s.%s EXCEPT ALL SELECT * FROM %s.%s), "
            "d AS (SELECT CASE WHEN EXISTS (SELECT 1 FROM s WHERE %s) THEN 'different' ELSE 'extra' END "
            "AS kind, row_to_json(l)::text AS live, (SELECT row_to_json(s)::text FROM s WHERE %s LIMIT 1) "
            "AS want FROM l UNION ALL SELECT 'missing', NULL, row_to_json(s)::text FROM s WHERE NOT "
            "EXISTS (SELECT 1 FROM l WHERE %s)) "
            "SELECT kind, count(*) OVER (PARTITION BY kind), live, want, row_number() OVER (PARTITION BY "
            "kind) FROM d ORDER BY kind",
            ls, t, ss, t, ss, t, ls, t, k, k, k);
        PQfreemem(ls);
        PQfreemem(ss);
        PQfreemem(t);
        PGresult *r = PQexec(sh->conn, b.data);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            char msg[400];
            snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
            msg[strcspn(msg, "\n")] = '\0';
            wc_err_set(err, WC_ERR_DATA, "could not compare table \"%s.%s\" with its rebuild: %s",
                       sh->live_schema[i], sh->table[i], msg);
            PQclear(r);
            goto done;
        }
        const char *last = "";
        for (int row = 0; row < PQntuples(r); row++) {
            const char *kind = PQgetvalue(r, row, 0);
            long long n = strtoll(PQgetvalue(r, row, 1), NULL, 10);
            if (strcmp(kind, last) != 0) {
                printf("table \"%s.%s\": %lld row%s %s\n", sh->live_schema[i], sh->table[i], n,
                       n == 1 ? "" : "s",
                       strcmp(kind, "missing") == 0 ? "missing (in the rebuild, not in the live table)"
                       : strcmp(kind, "extra") == 0 ? "extra (in the live table, not in the rebuild)"
                                                    : "different (the same key, other values)");
                *drift += n;
                last = kind;
            }
            if (strtoll(PQgetvalue(r, row, 4), NULL, 10) > examples)
                continue;
            if (strcmp(kind, "different") == 0)
                printf("  live:    %s\n  rebuilt: %s\n", PQgetvalue(r, row, 2), PQgetvalue(r, row, 3));
            else
                printf("  %s\n",
                       strcmp(kind, "missing") == 0 ? PQgetvalue(r, row, 3) : PQgetvalue(r, row, 2));
        }
        if (PQntuples(r) == 0)
            printf("table \"%s.%s\": equal to its rebuild from the outbox\n", sh->live_schema[i],
                   sh->table[i]);
        PQclear(r);
    }
    rc = 0;
done:
    wc_buf_free(&b);
    wc_buf_free(&key);
    return rc;
}
