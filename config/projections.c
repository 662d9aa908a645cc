/* projections.c - the projection loader: sinks, projections and their actions (SQL statements, Redis
 * commands, Lua scripts) with compiled templates, and each sink's event type -> rules index. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "walcast/keyslot.h"

const char *const cf_sink_type_names[] = {"postgres", "redis", NULL};

/* The private index of one sink: rule pointers sorted by (event type, configuration order). */
struct rule_index {
    int n;
    struct wc_rule **rules;
};

/* ---- sinks ---- */

/* A boolean key of sink name (true or false; absent: false) into *out. */
static int cf_sink_bool(struct ctx *c, struct fy_node *v, const char *name, const char *what, int kline,
                        int *out)
{
    char key[KEYLEN], var[KEYLEN];
    const char *val;
    struct src w;

    cf_mkkey(key, "sinks.%s.%s", name, what);
    *out = 0;
    if (cf_scalar_value(c, v, what, key, kline, &val, &w, var, sizeof(var)) < 0)
        return -1;
    if (val == NULL || strcmp(val, "false") == 0)
        return 0;
    if (strcmp(val, "true") == 0) {
        *out = 1;
        return 0;
    }
    return cf_fail_at(c, &w, key, "expected true or false, got \"%s\"", val);
}

/* Load the sinks mapping in file order: name -> {type, dsn}. */
int cf_load_sinks(struct ctx *c, struct fy_node *node, int line)
{
    char key[KEYLEN], var[KEYLEN], hint[64];
    static const char *const sink_keys[] = {
        "type", "dsn", "rebuild", "cluster", "statement_timeout_ms", "lock_timeout_ms", NULL};
    struct fy_node_pair *p;
    void *it = NULL;

    if (cf_is_null(node))
        return 0;
    if (fy_node_get_type(node) != FYNT_MAPPING)
        return cf_fail(c, cf_value_line(node, line), "sinks", "expected a mapping of sink names, got %s",
                       cf_kind_name(node));
    c->cfg->sinks = wc_xcalloc((size_t)fy_node_mapping_item_count(node), sizeof(struct wc_sink_conf));
    while ((p = fy_node_mapping_iterate(node, &it)) != NULL) {
        struct fy_node *k = fy_node_pair_key(p), *v = fy_node_pair_value(p);
        const char *name = cf_scalar_text(k) ? cf_scalar_text(k) : "?";
        int kline = cf_line_of(k, line);
        struct wc_sink_conf *s = &c->cfg->sinks[c->cfg->nsink];
        const char *val;
        struct src w;

        cf_mkkey(key, "sinks.%s", name);
        if (!cf_valid_name(name, 63))
            return cf_fail(c, kline, key, "invalid sink name \"%s\" (use 1 to 63 of a-z, 0-9 and _)", name);
        if (cf_is_null(v))
            return cf_fail(c, kline, key, "missing value (expected a mapping with type and dsn)");
        if (cf_check_keys(c, v, kline, key, sink_keys, NULL) < 0)
            return -1;
        s->name = wc_xstrdup(name);
        s->line = kline;
        c->cfg->nsink++;

        cf_mkkey(key, "sinks.%s.type", name);
        if (cf_scalar_value(c, v, "type", key, kline, &val, &w, var, sizeof(var)) < 0)
            return -1;
        if (val == NULL) {
            cf_mkkey(key, "sinks.%s", name);
            return cf_fail(c, kline, key, "missing key \"type\"");
        }
        cf_list_names(cf_sink_type_names, NULL, hint, sizeof(hint));
        s->type = cf_find_name(cf_sink_type_names, 2, val);
        if (s->type < 0)
            return cf_fail_at(c, &w, key, "invalid sink type \"%s\" (expected %s)", val, hint);

        cf_mkkey(key, "sinks.%s.dsn", name);
        if (cf_scalar_value(c, v, "dsn", key, kline, &val, &w, var, sizeof(var)) < 0)
            return -1;
        /* postgres: "" lets libpq's PG* variables apply, like source.dsn. */
        if (val == NULL)
            val = s->type == WC_SINK_REDIS ? "redis://127.0.0.1:6379/0" : "";
        if (s->type == WC_SINK_REDIS && strncmp(val, "redis://", 8) != 0)
            return cf_fail_at(c, &w, key,
                              "invalid redis address (expected redis://[:password@]host[:port][/db])");
        s->dsn = wc_xstrdup(val);
        struct src dw = w;

        /* A Redis Cluster: its seed nodes in the dsn, one hash slot per atomic unit (docs/configuration.md,
         * "Redis Cluster"). */
        if (cf_sink_bool(c, v, name, "cluster", kline, &s->cluster) < 0)
            return -1;
        if (s->cluster && s->type != WC_SINK_REDIS) {
            cf_mkkey(key, "sinks.%s.cluster", name);
            return cf_fail(c, kline, key, "cluster needs a redis sink, but sink \"%s\" is postgres", name);
        }
        if (s->type == WC_SINK_REDIS && !s->cluster && strchr(s->dsn + 8, ',') != NULL) {
            cf_mkkey(key, "sinks.%s.dsn", name);
            return cf_fail_at(c, &dw, key,
                              "several redis servers: for the seed nodes of a redis cluster set "
                              "sinks.%s.cluster: true",
                              name);
        }

        /* What wipes this sink's projections before a rebuild from the outbox table. */
        cf_mkkey(key, "sinks.%s.rebuild", name);
        if (cf_scalar_value(c, v, "rebuild", key, kline, &val, &w, var, sizeof(var)) < 0)
            return -1;
        if (val != NULL && *val != '\0') {
            if (s->type == WC_SINK_REDIS && strcmp(val, "flushdb") != 0)
                return cf_fail_at(c, &w, key, "invalid rebuild \"%s\" for a redis sink (expected flushdb)",
                                  val);
            s->rebuild = wc_xstrdup(val);
        }
        if (cf_load_sink_options(c, v, kline, s) < 0)
            return -1;
    }
    /* "rebuild: flushdb" empties the whole database: a second sink there would silently lose its data. */
    for (int i = 0; i < c->cfg->nsink; i++) {
        const struct wc_sink_conf *a = &c->cfg->sinks[i];
        if (a->type != WC_SINK_REDIS || a->rebuild == NULL)
            continue;
        for (int j = 0; j < c->cfg->nsink; j++) {
            const struct wc_sink_conf *b = &c->cfg->sinks[j];
            if (j == i || b->type != WC_SINK_REDIS || strcmp(a->dsn, b->dsn) != 0)
                continue;
            cf_mkkey(key, "sinks.%s.rebuild", a->name);
            cf_fail(c, a->line, key,
                    "sink \"%s\" shares its redis database with sink \"%s\": give it a database of "
                    "its own (flushdb wipes the whole database)",
                    a->name, b->name);
            return -1;
        }
    }
    return 0;
}

struct wc_sink_conf *cf_find_sink(struct wc_config *cfg, const char *name)
{
    for (int i = 0; i < cfg->nsink; i++)
        if (strcmp(cfg->sinks[i].name, name) == 0)
            return &cfg->sinks[i];
    return NULL;
}

/* ---- actions ---- */

/*
 * The highest $n in sql, skipping string literals, quoted identifiers, comments and dollar-quoted
 * bodies (a "$1" in a function body is not a parameter). Returns the number, 0 when none.
 */
static int sql_max_param(const char *sql)
{
    int max = 0;
    const char *p = sql;

    while (*p) {
        int ident_before = p > sql && (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '$');
        if (*p == '\'') {
            /* E'...' strings take backslash escapes; '' is a quote in both kinds. */
            int esc = p > sql && (p[-1] == 'E' || p[-1] == 'e');
            for (p++; *p; p++) {
                if (esc && *p == '\\' && p[1]) {
                    p++;
                } else if (*p == '\'') {
                    if (p[1] != '\'')
                        break;
                    p++;
                }
            }
            if (*p)
                p++;
        } else if (*p == '"') {
            for (p++; *p && !(*p == '"' && p[1] != '"'); p += (*p == '"') ? 2 : 1)
                ;
            if (*p)
                p++;
        } else if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n')
                p++;
        } else if (p[0] == '/' && p[1] == '*') {
            int depth = 1;
            for (p += 2; *p && depth > 0; p++) {
                if (p[0] == '/' && p[1] == '*')
                    depth++, p++;
                else if (p[0] == '*' && p[1] == '/')
                    depth--, p++;
            }
        } else if (*p == '$' && !ident_before && isdigit((unsigned char)p[1])) {
            long n = strtol(p + 1, (char **)&p, 10);
            if (n > max)
                max = n > 65535 ? 65536 : (int)n;
        } else if (*p == '$' && !ident_before) {
            /* A dollar quote $tag$...$tag$ (tag possibly empty). */
            const char *t = p + 1;
            while (isalnum((unsigned char)*t) || *t == '_' || (unsigned char)*t >= 0x80)
                t++;
            if (*t != '$') {
                p++;
                continue;
            }
            size_t taglen = (size_t)(t - p + 1);
            const char *close = strstr(t + 1, "$");
            while (close && strncmp(close, p, taglen) != 0)
                close = strchr(close + 1, '$');
            p = close ? close + taglen : p + strlen(p);
        } else {
            p++;
        }
    }
    return max;
}

/* Compile a list of templates (sequence node) onto argv at *argc. key names the list. */
static int compile_list(struct ctx *c, struct fy_node *seq, int line, const char *key, int bare,
                        struct wc_tmpl **argv, int *argc)
{
    char ikey[KEYLEN];
    struct fy_node *item;
    void *it = NULL;
    int i = 0;

    while ((item = fy_node_sequence_iterate(seq, &it)) != NULL) {
        struct wc_err terr;
        int iline = cf_line_of(item, line);
        cf_mkkey(ikey, "%s[%d]", key, i++);
        if (cf_is_null(item) || cf_scalar_text(item) == NULL)
            return cf_fail(c, iline, ikey, "expected %s, got %s", bare ? "an expression" : "a template",
                           cf_kind_name(item));
        argv[*argc] = wc_tmpl_compile(cf_scalar_text(item), bare, &terr);
        if (argv[*argc] == NULL)
            return cf_fail(c, iline, ikey, "%s", terr.msg);
        (*argc)++;
    }
    return 0;
}

/* A sequence node or null (an absent list); anything else is an error. */
static int want_list(struct ctx *c, struct fy_node *n, int line, const char *key)
{
    if (n == NULL || fy_node_get_type(n) == FYNT_SEQUENCE)
        return 0;
    return cf_fail(c, cf_value_line(n, line), key, "expected a list, got %s", cf_kind_name(n));
}

/* {sql, params} for a postgres sink. */
static int load_pg_stmt(struct ctx *c, struct fy_node *m, int line, const char *akey, struct wc_pg_stmt *st)
{
    char key[KEYLEN];
    int kline, pline;
    struct fy_node *sql = cf_lookup(m, "sql", &kline, line);
    struct fy_node *params = cf_lookup(m, "params", &pline, line);

    st->line = line;
    if (fy_node_mapping_lookup_pair_by_string(m, "sql", 3) == NULL)
        return cf_fail(c, line, akey, "missing key \"sql\"");
    cf_mkkey(key, "%s.sql", akey);
    if (cf_is_null(sql) || cf_scalar_text(sql) == NULL || cf_scalar_text(sql)[0] == '\0')
        return cf_fail(c, cf_value_line(sql, kline), key, "expected an SQL statement, got %s",
                       cf_is_null(sql) || fy_node_get_type(sql) != FYNT_SCALAR ? cf_kind_name(sql)
                                                                               : "an empty string");
    st->sql = wc_xstrdup(fy_node_get_scalar0(sql));

    cf_mkkey(key, "%s.params", akey);
    if (want_list(c, params, pline, key) < 0)
        return -1;
    int n = params ? fy_node_sequence_item_count(params) : 0;
    st->params = wc_xcalloc((size_t)n, sizeof(struct wc_tmpl *));
    if (params && compile_list(c, params, pline, key, 1, st->params, &st->nparams) < 0)
        return -1;

    /* PostgreSQL cannot prepare a statement whose $n has no value, nor infer the type of an unused one. */
    int max = sql_max_param(st->sql);
    int where = params ? pline : cf_value_line(sql, kline);
    if (max > 65535)
        return cf_fail(c, where, key, "the sql uses a parameter above $65535");
    if (max > st->nparams)
        return cf_fail(c, where, key, "the sql uses $%d but params has %d %s", max, st->nparams,
                       st->nparams == 1 ? "entry" : "entries");
    if (max < st->nparams) {
        if (max == 0)
            return cf_fail(c, where, key, "params has %d %s but the sql has no parameters", st->nparams,
                           st->nparams == 1 ? "entry" : "entries");
        return cf_fail(c, where, key, "params has %d entries but the sql uses only $1..$%d", st->nparams,
                       max);
    }
    return 0;
}

/* {script, keys, args} for a redis sink. */
static int load_redis_script(struct ctx *c, struct fy_node *m, int line, const char *akey,
                             struct wc_redis_cmd *cmd)
{
    char key[KEYLEN];
    int sline, kline, aline;
    struct fy_node *script = cf_lookup(m, "script", &sline, line);
    struct fy_node *keys = cf_lookup(m, "keys", &kline, line);
    struct fy_node *args = cf_lookup(m, "args", &aline, line);

    cmd->line = line;
    if (fy_node_mapping_lookup_pair_by_string(m, "script", 6) == NULL)
        return cf_fail(c, line, akey, "missing key \"script\"");
    cf_mkkey(key, "%s.script", akey);
    if (cf_is_null(script) || cf_scalar_text(script) == NULL || cf_scalar_text(script)[0] == '\0')
        return cf_fail(c, cf_value_line(script, sline), key, "expected a Lua script, got %s",
                       cf_is_null(script) || fy_node_get_type(script) != FYNT_SCALAR ? cf_kind_name(script)
                                                                                     : "an empty string");
    cmd->script = wc_xstrdup(fy_node_get_scalar0(script));
    cf_mkkey(key, "%s.keys", akey);
    if (want_list(c, keys, kline, key) < 0)
        return -1;
    cf_mkkey(key, "%s.args", akey);
    if (want_list(c, args, aline, key) < 0)
        return -1;
    int nk = keys ? fy_node_sequence_item_count(keys) : 0, na = args ? fy_node_sequence_item_count(args) : 0;
    cmd->argv = wc_xcalloc((size_t)(nk + na), sizeof(struct wc_tmpl *));
    cf_mkkey(key, "%s.keys", akey);
    if (keys && compile_list(c, keys, kline, key, 0, cmd->argv, &cmd->argc) < 0)
        return -1;
    cmd->nkeys = cmd->argc;
    cf_mkkey(key, "%s.args", akey);
    if (args && compile_list(c, args, aline, key, 0, cmd->argv, &cmd->argc) < 0)
        return -1;
    return cf_redis_check_script(c, cmd, akey, kline);
}

/* [COMMAND, ARG, ...] for a redis sink. */
static int load_redis_cmd(struct ctx *c, struct fy_node *seq, int line, const char *akey,
                          struct wc_redis_cmd *cmd)
{
    int n = fy_node_sequence_item_count(seq);

    cmd->line = line;
    if (n == 0)
        return cf_fail(c, line, akey, "redis command is empty");
    cmd->argv = wc_xcalloc((size_t)n, sizeof(struct wc_tmpl *));
    if (compile_list(c, seq, line, akey, 0, cmd->argv, &cmd->argc) < 0)
        return -1;
    if (wc_tmpl_source(cmd->argv[0])[0] == '\0')
        return cf_fail(c, line, akey, "redis command is empty");
    /* The line of each argument, for the allow-list's messages. */
    int *lines = wc_xcalloc((size_t)n, sizeof(int)), i = 0, rc;
    struct fy_node *item;
    void *it = NULL;
    while ((item = fy_node_sequence_iterate(seq, &it)) != NULL && i < n)
        lines[i++] = cf_line_of(item, line);
    rc = cf_redis_check_cmd(c, cmd, akey, lines);
    free(lines);
    return rc;
}

/*
 * One action of a rule. The sink's type decides which forms are allowed; a key of the other form is
 * named in the error ("sql" on a redis sink).
 */
static int load_action(struct ctx *c, struct fy_node *a, int line, const char *akey,
                       const struct wc_sink_conf *sink, struct wc_rule *r)
{
    static const char *const pg_keys[] = {"sql", "params", NULL};
    static const char *const redis_keys[] = {"script", "keys", "args", NULL};
    int redis = sink->type == WC_SINK_REDIS;
    char key[KEYLEN];

    if (!cf_is_null(a) && fy_node_get_type(a) == FYNT_MAPPING) {
        struct fy_node_pair *p;
        void *it = NULL;
        while ((p = fy_node_mapping_iterate(a, &it)) != NULL) {
            struct fy_node *k = fy_node_pair_key(p);
            const char *ks = cf_scalar_text(k) ? cf_scalar_text(k) : "?";
            cf_mkkey(key, "%s.%s", akey, ks);
            if (cf_find_name(redis ? redis_keys : pg_keys, redis ? 3 : 2, ks) >= 0)
                continue;
            if (cf_find_name(redis ? pg_keys : redis_keys, redis ? 2 : 3, ks) >= 0)
                return cf_fail(c, cf_line_of(k, line), key, "%s needs a %s sink, but sink \"%s\" is %s", ks,
                               redis ? "postgres" : "redis", sink->name, cf_sink_type_names[sink->type]);
            return cf_fail(c, cf_line_of(k, line), key, "unknown key (expected %s)",
                           redis ? "script, keys or args" : "sql or params");
        }
        if (redis) {
            r->cmds = wc_xrealloc(r->cmds, (size_t)(r->ncmd + 1) * sizeof(*r->cmds));
            memset(&r->cmds[r->ncmd], 0, sizeof(*r->cmds));
            if (load_redis_script(c, a, line, akey, &r->cmds[r->ncmd++]) < 0)
                return -1;
            return sink->cluster ? cf_redis_check_slots(c, &r->cmds[r->ncmd - 1], akey, line) : 0;
        }
        r->stmts = wc_xrealloc(r->stmts, (size_t)(r->nstmt + 1) * sizeof(*r->stmts));
        memset(&r->stmts[r->nstmt], 0, sizeof(*r->stmts));
        return load_pg_stmt(c, a, line, akey, &r->stmts[r->nstmt++]);
    }
    if (!cf_is_null(a) && fy_node_get_type(a) == FYNT_SEQUENCE) {
        if (!redis)
            return cf_fail(c, line, akey, "a command list needs a redis sink, but sink \"%s\" is postgres",
                           sink->name);
        r->cmds = wc_xrealloc(r->cmds, (size_t)(r->ncmd + 1) * sizeof(*r->cmds));
        memset(&r->cmds[r->ncmd], 0, sizeof(*r->cmds));
        if (load_redis_cmd(c, a, line, akey, &r->cmds[r->ncmd++]) < 0)
            return -1;
        return sink->cluster ? cf_redis_check_slots(c, &r->cmds[r->ncmd - 1], akey, line) : 0;
    }
    if (redis)
        return cf_fail(
            c, line, akey,
            "expected a command list [COMMAND, ARG, ...] or a mapping with script, keys and args, got %s",
            cf_kind_name(a));
    return cf_fail(c, line, akey, "expected a mapping with sql and params, got %s", cf_kind_name(a));
}

/* Append a new, zeroed rule to sink. */
static struct wc_rule *add_rule(struct wc_sink_conf *s)
{
    s->rules = wc_xrealloc(s->rules, (size_t)(s->nrule + 1) * sizeof(*s->rules));
    memset(&s->rules[s->nrule], 0, sizeof(*s->rules));
    return &s->rules[s->nrule++];
}

/* One projection: {sink: NAME, on: {EventType: [action, ...]}}. */
static int load_projection(struct ctx *c, const char *name, struct fy_node *v, int pline)
{
    static const char *const keys[] = {"sink", "on", "tables", "keys", "rebuild", NULL};
    char key[KEYLEN], akey[KEYLEN];
    struct fy_node *sn, *on;
    int sline, oline;

    cf_mkkey(key, "projections.%s", name);
    if (cf_is_null(v))
        return cf_fail(c, pline, key, "missing value (expected a mapping with sink and on)");
    if (cf_check_keys(c, v, pline, key, keys, NULL) < 0)
        return -1;
    sn = cf_lookup(v, "sink", &sline, pline);
    on = cf_lookup(v, "on", &oline, pline);
    if (fy_node_mapping_lookup_pair_by_string(v, "sink", 4) == NULL)
        return cf_fail(c, pline, key, "missing key \"sink\"");
    if (fy_node_mapping_lookup_pair_by_string(v, "on", 2) == NULL)
        return cf_fail(c, pline, key, "missing key \"on\"");

    cf_mkkey(key, "projections.%s.sink", name);
    if (cf_is_null(sn) || cf_scalar_text(sn) == NULL)
        return cf_fail(c, cf_value_line(sn, sline), key, "expected a sink name, got %s", cf_kind_name(sn));
    struct wc_sink_conf *sink = cf_find_sink(c->cfg, fy_node_get_scalar0(sn));
    if (sink == NULL)
        return cf_fail(c, cf_line_of(sn, sline), key, "unknown sink \"%s\"", fy_node_get_scalar0(sn));
    if (cf_load_owns(c, name, v, pline, (int)(sink - c->cfg->sinks)) < 0)
        return -1;

    cf_mkkey(key, "projections.%s.on", name);
    if (cf_is_null(on) || fy_node_get_type(on) != FYNT_MAPPING)
        return cf_fail(c, cf_value_line(on, oline), key,
                       "expected a mapping of event types to actions, got %s", cf_kind_name(on));

    struct fy_node_pair *p;
    void *it = NULL;
    while ((p = fy_node_mapping_iterate(on, &it)) != NULL) {
        struct fy_node *k = fy_node_pair_key(p), *acts = fy_node_pair_value(p);
        const char *type = cf_scalar_text(k);
        int kline = cf_line_of(k, oline);

        cf_mkkey(key, "projections.%s.on.%s", name, type ? type : "?");
        if (type == NULL || type[0] == '\0' || cf_is_null(k))
            return cf_fail(c, kline, key, "expected an event type name");
        if (cf_is_null(acts) || fy_node_get_type(acts) != FYNT_SEQUENCE)
            return cf_fail(c, cf_value_line(acts, kline), key, "expected a list of actions, got %s",
                           cf_kind_name(acts));

        struct wc_rule *r = add_rule(sink);
        r->projection = wc_xstrdup(name);
        r->event_type = wc_xstrdup(type);
        r->line = kline;
        struct fy_node *a;
        void *ait = NULL;
        int i = 0;
        while ((a = fy_node_sequence_iterate(acts, &ait)) != NULL) {
            cf_mkkey(akey, "%s[%d]", key, i++);
            if (load_action(c, a, cf_line_of(a, kline), akey, sink, r) < 0)
                return -1;
        }
    }
    return 0;
}

int cf_load_projections(struct ctx *c, struct fy_node *node, int line)
{
    struct fy_node_pair *p;
    void *it = NULL;

    if (cf_is_null(node))
        return 0;
    if (fy_node_get_type(node) != FYNT_MAPPING)
        return cf_fail(c, cf_value_line(node, line), "projections",
                       "expected a mapping of projection names, got %s", cf_kind_name(node));
    while ((p = fy_node_mapping_iterate(node, &it)) != NULL) {
        struct fy_node *k = fy_node_pair_key(p);
        const char *name = cf_scalar_text(k);
        if (name == NULL || name[0] == '\0' || cf_is_null(k))
            return cf_fail(c, cf_line_of(k, line), "projections", "expected a projection name");
        if (load_projection(c, name, fy_node_pair_value(p), cf_line_of(k, line)) < 0)
            return -1;
    }
    return 0;
}

/* ---- index ---- */

static int cmp_rule(const void *a, const void *b)
{
    const struct wc_rule *x = *(struct wc_rule *const *)a, *y = *(struct wc_rule *const *)b;
    int d = strcmp(x->event_type, y->event_type);

    /* Rules of one sink sit in one array in configuration order: the address breaks ties stably. */
    if (d != 0)
        return d;
    return (x > y) - (x < y);
}

/* Build each sink's event type -> rules index (a sorted array searched by bisection). */
void cf_index_sink(struct wc_sink_conf *s)
{
    struct rule_index *idx = wc_xcalloc(1, sizeof(*idx));
    idx->n = s->nrule;
    idx->rules = wc_xcalloc((size_t)s->nrule + 1, sizeof(*idx->rules));
    for (int j = 0; j < s->nrule; j++)
        idx->rules[j] = &s->rules[j];
    qsort(idx->rules, (size_t)idx->n, sizeof(*idx->rules), cmp_rule);
    s->index = idx;
}

void cf_free_index(struct wc_sink_conf *s)
{
    struct rule_index *idx = s->index;
    if (idx)
        free(idx->rules);
    free(idx);
    s->index = NULL;
}

void cf_build_index(struct wc_config *cfg)
{
    for (int i = 0; i < cfg->nsink; i++)
        cf_index_sink(&cfg->sinks[i]);
}

/*
 * The rules of sink for event_type, in configuration order: a borrowed slice of the sink's index.
 * *n gets the count; NULL and 0 when there are none.
 */
struct wc_rule *const *wc_config_rules(const struct wc_sink_conf *sink, const char *event_type, int *n)
{
    const struct rule_index *idx = sink->index;
    int lo = 0, hi, first;

    *n = 0;
    if (idx == NULL || event_type == NULL)
        return NULL;
    hi = idx->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (strcmp(idx->rules[mid]->event_type, event_type) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    first = lo;
    while (lo < idx->n && strcmp(idx->rules[lo]->event_type, event_type) == 0)
        lo++;
    *n = lo - first;
    return *n ? &idx->rules[first] : NULL;
}

int wc_config_knows_event(const struct wc_config *cfg, const char *event_type)
{
    int n;

    for (int i = 0; i < cfg->nsink; i++)
        if (wc_config_rules(&cfg->sinks[i], event_type, &n) != NULL)
            return 1;
    return 0;
}

/* ---- load and free ---- */

static void cf_free_rule(struct wc_rule *r)
{
    for (int i = 0; i < r->nstmt; i++) {
        for (int j = 0; j < r->stmts[i].nparams; j++)
            wc_tmpl_free(r->stmts[i].params[j]);
        free(r->stmts[i].params);
        free(r->stmts[i].sql);
    }
    free(r->stmts);
    for (int i = 0; i < r->ncmd; i++) {
        for (int j = 0; j < r->cmds[i].argc; j++)
            wc_tmpl_free(r->cmds[i].argv[j]);
        free(r->cmds[i].argv);
        free(r->cmds[i].script);
        free(r->cmds[i].kinds);
    }
    free(r->cmds);
    free(r->projection);
    free(r->event_type);
}

/* Free every sink's name, DSN, rules and index (the sinks array itself too). */
void cf_free_sinks(struct wc_config *cfg)
{
    for (int i = 0; i < cfg->nsink; i++) {
        struct wc_sink_conf *s = &cfg->sinks[i];
        for (int j = 0; j < s->nrule; j++)
            cf_free_rule(&s->rules[j]);
        free(s->rules);
        cf_free_index(s);
        free(s->name);
        free(s->dsn);
        free(s->rebuild);
    }
    free(cfg->sinks);
}
