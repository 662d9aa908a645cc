/*
 * owns.c - what each projection owns: the tables of a PostgreSQL projection (projections.NAME.tables),
 * the key patterns of a Redis one (projections.NAME.keys). A rebuild builds exactly these beside the live
 * ones and swaps them in, so two projections must never own the same table or overlapping key patterns.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"

/* A table name as declared: "table" or "schema.table", each part an identifier. */
static int valid_table(const char *s)
{
    const char *dot = strchr(s, '.');

    if (dot == NULL)
        return cf_valid_ident(s, strlen(s));
    return strchr(dot + 1, '.') == NULL && cf_valid_ident(s, (size_t)(dot - s)) &&
           cf_valid_ident(dot + 1, strlen(dot + 1));
}

/* A key pattern: any text but walcast's own prefix; "*" and "?" are its only wildcards. */
static const char *key_problem(const char *s)
{
    if (*s == '\0')
        return "expected a key pattern, got an empty string";
    if (strncmp(s, "walcast:", 8) == 0)
        return "keys starting with \"walcast:\" are walcast's own";
    if (strpbrk(s, "[]\\") != NULL)
        return "\"*\" and \"?\" are the only wildcards of a key pattern (no \"[\", \"]\" or \"\\\")";
    return NULL;
}

/* Load a list of scalars at key into *out (new strings); check each with ok (a message, or NULL). */
static int load_names(struct ctx *c, struct fy_node *list, int line, const char *key, char ***out, int *n,
                      const char *(*problem)(const char *))
{
    struct fy_node *it;
    void *iter = NULL;
    int i = 0;

    if (cf_is_null(list) || fy_node_get_type(list) != FYNT_SEQUENCE)
        return cf_fail(c, cf_value_line(list, line), key, "expected a list, got %s", cf_kind_name(list));
    *out = wc_xcalloc((size_t)fy_node_sequence_item_count(list) + 1, sizeof(char *));
    while ((it = fy_node_sequence_iterate(list, &iter)) != NULL) {
        const char *s = cf_scalar_text(it), *why;
        char ikey[KEYLEN];
        cf_mkkey(ikey, "%s[%d]", key, i);
        if (s == NULL || cf_is_null(it))
            return cf_fail(c, cf_line_of(it, line), ikey, "expected a name, got %s", cf_kind_name(it));
        if ((why = problem(s)) != NULL)
            return cf_fail(c, cf_line_of(it, line), ikey, "%s", why);
        (*out)[i++] = wc_xstrdup(s);
        *n = i;
    }
    return 0;
}

static const char *table_problem(const char *s)
{
    return valid_table(s) ? NULL : "expected a table name (table or schema.table, plain identifiers)";
}

int cf_load_owns(struct ctx *c, const char *name, struct fy_node *v, int pline, int sink)
{
    struct wc_config *cfg = c->cfg;
    const struct wc_sink_conf *sc = &cfg->sinks[sink];
    struct fy_node *tables, *keys;
    int tline, kline;
    char key[KEYLEN];
    struct wc_projection *p;

    cfg->projections = wc_xrealloc(cfg->projections, (size_t)(cfg->nprojection + 1) * sizeof(*p));
    p = &cfg->projections[cfg->nprojection++];
    memset(p, 0, sizeof(*p));
    p->name = wc_xstrdup(name);
    p->sink = sink;
    p->line = pline;
    tables = cf_lookup(v, "tables", &tline, pline);
    keys = cf_lookup(v, "keys", &kline, pline);
    if (fy_node_mapping_lookup_pair_by_string(v, "tables", 6) != NULL) {
        cf_mkkey(key, "projections.%s.tables", name);
        if (sc->type != WC_SINK_POSTGRES)
            return cf_fail(c, tline, key,
                           "sink \"%s\" is not a PostgreSQL sink: a Redis projection declares keys",
                           sc->name);
        if (load_names(c, tables, tline, key, &p->tables, &p->ntables, table_problem) < 0)
            return -1;
    }
    if (fy_node_mapping_lookup_pair_by_string(v, "rebuild", 7) != NULL) {
        int rline;
        struct fy_node *r = cf_lookup(v, "rebuild", &rline, pline);
        const char *val = cf_scalar_text(r);
        cf_mkkey(key, "projections.%s.rebuild", name);
        if (val == NULL || (strcmp(val, "auto") != 0 && strcmp(val, "manual") != 0))
            return cf_fail(c, cf_value_line(r, rline), key, "expected auto or manual, got %s",
                           val ? val : cf_kind_name(r));
        p->rebuild_auto = strcmp(val, "auto") == 0;
        int redis = sc->type == WC_SINK_REDIS;
        if (p->rebuild_auto &&
            fy_node_mapping_lookup_pair_by_string(v, redis ? "keys" : "tables", redis ? 4 : 6) == NULL)
            return cf_fail(c, rline, key, "rebuild: auto needs projections.%s.%s (what the rebuild swaps in)",
                           name, redis ? "keys" : "tables");
    }
    if (fy_node_mapping_lookup_pair_by_string(v, "keys", 4) != NULL) {
        cf_mkkey(key, "projections.%s.keys", name);
        if (sc->type != WC_SINK_REDIS)
            return cf_fail(c, kline, key,
                           "sink \"%s\" is not a Redis sink: a PostgreSQL projection declares tables",
                           sc->name);
        if (load_names(c, keys, kline, key, &p->keys, &p->nkeys, key_problem) < 0)
            return -1;
    }
    return 0;
}

/* The table part of "schema.table". */
static const char *table_part(const char *s)
{
    const char *dot = strchr(s, '.');
    return dot ? dot + 1 : s;
}

/* Two declared tables are the same table when their names are, or when one has no schema and the other's
 * table part is its name (which table a schema-less name means depends on the search path). */
static int same_table(const char *a, const char *b)
{
    if (strcmp(a, b) == 0)
        return 1;
    if (strchr(a, '.') != NULL && strchr(b, '.') != NULL)
        return 0;
    return strcmp(table_part(a), table_part(b)) == 0;
}

/* Whether some key matches both glob patterns a[i..] and b[j..] ("*" any run, "?" one character). seen
 * memoizes the pairs already found not to overlap. */
static int overlap(const char *a, size_t i, size_t na, const char *b, size_t j, size_t nb,
                   unsigned char *seen)
{
    unsigned char *m = &seen[i * (nb + 1) + j];

    if (*m)
        return 0;
    if (i == na && j == nb)
        return 1;
    if (i < na && a[i] == '*' &&
        (overlap(a, i + 1, na, b, j, nb, seen) || (j < nb && overlap(a, i, na, b, j + 1, nb, seen))))
        return 1;
    if (j < nb && b[j] == '*' &&
        (overlap(a, i, na, b, j + 1, nb, seen) || (i < na && overlap(a, i + 1, na, b, j, nb, seen))))
        return 1;
    if (i < na && j < nb && a[i] != '*' && b[j] != '*' && (a[i] == b[j] || a[i] == '?' || b[j] == '?') &&
        overlap(a, i + 1, na, b, j + 1, nb, seen))
        return 1;
    *m = 1;
    return 0;
}

int wc_key_patterns_overlap(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    unsigned char *seen = wc_xcalloc((na + 1) * (nb + 1), 1);
    int r = overlap(a, 0, na, b, 0, nb, seen);

    free(seen);
    return r;
}

int cf_check_owns(struct ctx *c)
{
    const struct wc_config *cfg = c->cfg;

    for (int i = 0; i < cfg->nprojection; i++) {
        const struct wc_projection *p = &cfg->projections[i];
        for (int j = 0; j < i; j++) {
            const struct wc_projection *q = &cfg->projections[j];
            char key[KEYLEN];
            if (p->sink != q->sink)
                continue;
            for (int a = 0; a < p->ntables; a++)
                for (int b = 0; b < q->ntables; b++)
                    if (same_table(p->tables[a], q->tables[b])) {
                        cf_mkkey(key, "projections.%s.tables", p->name);
                        return cf_fail(
                            c, p->line, key,
                            "table \"%s\" is already owned by projection \"%s\" (line %d): a table "
                            "belongs to one projection",
                            p->tables[a], q->name, q->line);
                    }
            for (int a = 0; a < p->nkeys; a++)
                for (int b = 0; b < q->nkeys; b++)
                    if (wc_key_patterns_overlap(p->keys[a], q->keys[b])) {
                        cf_mkkey(key, "projections.%s.keys", p->name);
                        return cf_fail(
                            c, p->line, key,
                            "key pattern \"%s\" overlaps \"%s\" of projection \"%s\" (line %d): a key "
                            "belongs to one projection",
                            p->keys[a], q->keys[b], q->name, q->line);
                    }
        }
    }
    return 0;
}

const struct wc_projection *wc_config_projection(const struct wc_config *cfg, const char *name)
{
    for (int i = 0; i < cfg->nprojection; i++)
        if (strcmp(cfg->projections[i].name, name) == 0)
            return &cfg->projections[i];
    return NULL;
}

void cf_free_owns(struct wc_config *cfg)
{
    for (int i = 0; i < cfg->nprojection; i++) {
        struct wc_projection *p = &cfg->projections[i];
        for (int k = 0; k < p->ntables; k++)
            free(p->tables[k]);
        for (int k = 0; k < p->nkeys; k++)
            free(p->keys[k]);
        free(p->tables);
        free(p->keys);
        free(p->name);
    }
    free(cfg->projections);
}

struct wc_sink_conf *wc_sink_conf_subset(const struct wc_sink_conf *sc, const char *name,
                                         const char *const *names, int n)
{
    struct wc_sink_conf *sub = wc_xcalloc(1, sizeof(*sub));

    *sub = *sc;
    sub->name = wc_xstrdup(name);
    sub->rules = wc_xcalloc((size_t)sc->nrule + 1, sizeof(*sub->rules));
    sub->nrule = 0;
    sub->index = NULL;
    for (int r = 0; r < sc->nrule; r++)
        for (int i = 0; i < n; i++)
            if (strcmp(sc->rules[r].projection, names[i]) == 0) {
                sub->rules[sub->nrule++] = sc->rules[r];
                break;
            }
    cf_index_sink(sub);
    return sub;
}

void wc_sink_conf_subset_free(struct wc_sink_conf *sub)
{
    if (sub == NULL)
        return;
    cf_free_index(sub);
    free(sub->rules);
    free(sub->name);
    free(sub);
}

/* FNV-1a, 64 bits, over each string and a separator. */
static void fnv(uint64_t *h, const char *s)
{
    for (; s != NULL && *s; s++) {
        *h ^= (unsigned char)*s;
        *h *= 1099511628211ULL;
    }
    *h ^= 0xff;
    *h *= 1099511628211ULL;
}

void wc_projection_fingerprint(const struct wc_config *cfg, const struct wc_projection *p, char out[17])
{
    const struct wc_sink_conf *sc = &cfg->sinks[p->sink];
    uint64_t h = 14695981039346656037ULL;

    for (int r = 0; r < sc->nrule; r++) {
        const struct wc_rule *rule = &sc->rules[r];
        if (strcmp(rule->projection, p->name) != 0)
            continue;
        fnv(&h, rule->event_type);
        for (int i = 0; i < rule->nstmt; i++) {
            fnv(&h, rule->stmts[i].sql);
            for (int j = 0; j < rule->stmts[i].nparams; j++)
                fnv(&h, wc_tmpl_source(rule->stmts[i].params[j]));
        }
        for (int i = 0; i < rule->ncmd; i++) {
            fnv(&h, rule->cmds[i].script);
            for (int j = 0; j < rule->cmds[i].argc; j++)
                fnv(&h, wc_tmpl_source(rule->cmds[i].argv[j]));
        }
    }
    for (int i = 0; i < p->ntables; i++)
        fnv(&h, p->tables[i]);
    for (int i = 0; i < p->nkeys; i++)
        fnv(&h, p->keys[i]);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}
