/* config.c - load, validate and index the YAML configuration (docs/configuration.md), with env overrides. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libfyaml.h>

#include "walcast/buf.h"
#include "walcast/config.h"

#define KEYLEN 512

/* Option types of the table below. */
enum otype {
    O_STR,      /* any string */
    O_NONEMPTY, /* a non-empty string */
    O_INT,      /* an int within min..max */
    O_SIZE,     /* a size_t within min..max */
    O_POLICY,   /* dead_letter | skip | halt */
    O_LOGLEVEL, /* debug | info | warning | error */
    O_SLOT,     /* [a-z0-9_]{1,63} */
    O_TABLE,    /* table or schema.table: fills outbox_schema and outbox_table */
    O_SUB,      /* a nested mapping with its own table */
};

/* One row per option (Redis static_configs[] style): name, type, field, default, bounds. */
struct opt {
    const char *name;
    int type;
    size_t off;
    const char *def; /* NULL: no default (stays NULL) */
    long long min, max;
    const struct opt *sub; /* O_SUB: the nested table, NULL-name terminated */
};

#define F(field) offsetof(struct wc_config, field)

static const struct opt column_opts[] = {
    {"event_id", O_NONEMPTY, F(columns[WC_COL_EVENT_ID]), "event_id", 0, 0, NULL},
    {"aggregate_type", O_NONEMPTY, F(columns[WC_COL_AGGREGATE_TYPE]), "aggregate_type", 0, 0, NULL},
    {"aggregate_id", O_NONEMPTY, F(columns[WC_COL_AGGREGATE_ID]), "aggregate_id", 0, 0, NULL},
    {"event_type", O_NONEMPTY, F(columns[WC_COL_EVENT_TYPE]), "event_type", 0, 0, NULL},
    {"payload", O_NONEMPTY, F(columns[WC_COL_PAYLOAD]), "payload", 0, 0, NULL},
    {"occurred_at", O_NONEMPTY, F(columns[WC_COL_OCCURRED_AT]), "occurred_at", 0, 0, NULL},
    {NULL, 0, 0, NULL, 0, 0, NULL},
};

static const struct opt outbox_opts[] = {
    {"table", O_TABLE, 0, "public.domain_events", 0, 0, NULL},
    {"columns", O_SUB, 0, NULL, 0, 0, column_opts},
    {NULL, 0, 0, NULL, 0, 0, NULL},
};

static const struct opt source_opts[] = {
    {"dsn", O_STR, F(source_dsn), "", 0, 0, NULL},
    {"slot", O_SLOT, F(slot), "walcast", 0, 0, NULL},
    {"outbox", O_SUB, 0, NULL, 0, 0, outbox_opts},
    {"message_prefix", O_NONEMPTY, F(msg_prefix), "walcast", 0, 0, NULL},
    {"status_interval_ms", O_INT, F(status_interval_ms), "1000", 1, 3600000, NULL},
    {NULL, 0, 0, NULL, 0, 0, NULL},
};

static const struct opt engine_opts[] = {
    {"batch_max_events", O_INT, F(batch_max_events), "1000", 1, 100000, NULL},
    {"batch_max_bytes", O_SIZE, F(batch_max_bytes), "4194304", 1024, 1073741824, NULL},
    {"batch_max_delay_ms", O_INT, F(batch_max_delay_ms), "5", 0, 10000, NULL},
    {"on_unknown_event", O_POLICY, F(on_unknown_event), "dead_letter", 0, 0, NULL},
    {"on_error", O_POLICY, F(on_error), "dead_letter", 0, 0, NULL},
    {"dead_letter_sink", O_NONEMPTY, F(dead_letter_sink), NULL, 0, 0, NULL},
    {"log_level", O_LOGLEVEL, F(log_level), "info", 0, 0, NULL},
    {"heartbeat_interval_ms", O_INT, F(heartbeat_interval_ms), "10000", 0, 3600000, NULL},
    {"retry_base_ms", O_INT, F(retry_base_ms), "100", 1, 600000, NULL},
    {"retry_max_ms", O_INT, F(retry_max_ms), "10000", 1, 3600000, NULL},
    {"retry_max_attempts", O_INT, F(retry_max_attempts), "0", 0, 1000000, NULL},
    {NULL, 0, 0, NULL, 0, 0, NULL},
};

static const char *const top_keys[] = {"source", "engine", "sinks", "projections", NULL};
static const char *const policy_names[] = {"dead_letter", "skip", "halt", NULL};
static const char *const level_names[] = {"debug", "info", "warning", "error", NULL};
static const char *const sink_type_names[] = {"postgres", "redis", NULL};

/* The private index of one sink: rule pointers sorted by (event type, configuration order). */
struct rule_index {
    int n;
    struct wc_rule **rules;
};

/* Loader state: where errors go and which file they name. */
struct ctx {
    const char *file;
    struct wc_config *cfg;
    struct wc_err *err;
};

const char *wc_policy_name(int policy)
{
    if (policy < 0 || policy > WC_POLICY_HALT)
        return "unknown";
    return policy_names[policy];
}

/* ---- YAML helpers ---- */

/*
 * The 1-based line of a node, or fallback. libfyaml 0.7 exposes marks only for scalar tokens, so a
 * collection is placed at its first scalar (a mapping's first key, a sequence's first item).
 */
static int line_of(struct fy_node *n, int fallback)
{
    while (n != NULL) {
        switch (fy_node_get_type(n)) {
        case FYNT_SCALAR: {
            struct fy_token *t = fy_node_get_scalar_token(n);
            const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
            return m ? m->line + 1 : fallback;
        }
        case FYNT_MAPPING: {
            void *it = NULL;
            struct fy_node_pair *p = fy_node_mapping_iterate(n, &it);
            n = p ? fy_node_pair_key(p) : NULL;
            break;
        }
        case FYNT_SEQUENCE: {
            void *it = NULL;
            n = fy_node_sequence_iterate(n, &it);
            break;
        }
        }
    }
    return fallback;
}

/*
 * The line to report for a value: a scalar's own line; for a collection or a null, the line of the key
 * that holds it (keyline), which is where the user looks for "expected a scalar, got a mapping".
 */
static int value_line(struct fy_node *v, int keyline)
{
    if (v != NULL && fy_node_get_type(v) == FYNT_SCALAR)
        return line_of(v, keyline);
    return keyline;
}

/* The text of a scalar node, or NULL for a missing node, a collection or a scalar without text. */
static const char *scalar_text(struct fy_node *n)
{
    if (n == NULL || fy_node_get_type(n) != FYNT_SCALAR)
        return NULL;
    return fy_node_get_scalar0(n);
}

/* Nonzero for a YAML null: a missing or empty value, "~" or "null" written plain. */
static int is_null(struct fy_node *n)
{
    if (n == NULL || fy_node_is_null(n))
        return 1;
    if (fy_node_get_type(n) != FYNT_SCALAR || fy_node_get_style(n) != FYNS_PLAIN)
        return 0;
    const char *s = fy_node_get_scalar0(n);
    return s && (strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
                 strcmp(s, "NULL") == 0);
}

static const char *kind_name(struct fy_node *n)
{
    if (is_null(n))
        return "null";
    switch (fy_node_get_type(n)) {
    case FYNT_MAPPING:
        return "a mapping";
    case FYNT_SEQUENCE:
        return "a list";
    default:
        return "a scalar";
    }
}

/* "FILE:LINE: key \"KEY\": message", or without the key part when key is NULL. */
static int fail(struct ctx *c, int line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(struct ctx *c, int line, const char *key, const char *fmt, ...)
{
    char msg[768];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (key)
        wc_err_set(c->err, WC_ERR_CONFIG, "%s:%d: key \"%s\": %s", c->file ? c->file : "(none)", line, key,
                   msg);
    else
        wc_err_set(c->err, WC_ERR_CONFIG, "%s:%d: %s", c->file ? c->file : "(none)", line, msg);
    return -1;
}

/* An error in a value from the environment: the variable takes the place of FILE:LINE. */
static int fail_env(struct ctx *c, const char *var, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_env(struct ctx *c, const char *var, const char *key, const char *fmt, ...)
{
    char msg[768];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    wc_err_set(c->err, WC_ERR_CONFIG, "environment variable %s: key \"%s\": %s", var, key, msg);
    return -1;
}

/* Where a value came from, so one validation routine reports both kinds of error. */
struct src {
    const char *var; /* the environment variable, or NULL */
    int line;
};

static int fail_at(struct ctx *c, const struct src *s, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_at(struct ctx *c, const struct src *s, const char *key, const char *fmt, ...)
{
    char msg[768];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (s->var)
        return fail_env(c, s->var, key, "%s", msg);
    return fail(c, s->line, key, "%s", msg);
}

/* Format a key path into buf (KEYLEN bytes); a longer path is cut short, which only shortens a message. */
static void mkkey(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mkkey(char *buf, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, KEYLEN, fmt, ap);
    va_end(ap);
}

/* WALCAST_ + key in upper case, '.' and '-' as '_'. */
static void env_name(const char *key, char *buf, size_t size)
{
    size_t o = (size_t)snprintf(buf, size, "WALCAST_");

    for (const char *k = key; *k && o + 1 < size; k++)
        buf[o++] = (*k == '.' || *k == '-') ? '_' : (char)toupper((unsigned char)*k);
    buf[o] = '\0';
}

/* "one, two or three" from a NULL-terminated list, or an option table. */
static void list_names(const char *const *names, const struct opt *opts, char *buf, size_t size)
{
    size_t o = 0, n = 0;

    buf[0] = '\0';
    while (names ? names[n] != NULL : opts[n].name != NULL)
        n++;
    for (size_t i = 0; i < n && o < size; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
        o += (size_t)snprintf(buf + o, size - o, "%s%s", sep, names ? names[i] : opts[i].name);
    }
}

/*
 * Check that node is a mapping (a null counts as empty) whose keys are all scalars in the allowed set
 * (names or opts). Returns 0 or -1 with err naming the first unknown key.
 */
static int check_keys(struct ctx *c, struct fy_node *node, int line, const char *prefix,
                      const char *const *names, const struct opt *opts)
{
    char key[KEYLEN], hint[256];
    struct fy_node_pair *p;
    void *it = NULL;

    if (is_null(node))
        return 0;
    if (fy_node_get_type(node) != FYNT_MAPPING)
        return fail(c, value_line(node, line), prefix[0] ? prefix : NULL, "expected a mapping, got %s",
                    kind_name(node));
    while ((p = fy_node_mapping_iterate(node, &it)) != NULL) {
        struct fy_node *k = fy_node_pair_key(p);
        const char *ks = scalar_text(k);
        int found = 0;
        for (int i = 0; ks && (names ? names[i] != NULL : opts[i].name != NULL); i++)
            if (strcmp(ks, names ? names[i] : opts[i].name) == 0)
                found = 1;
        if (found)
            continue;
        mkkey(key, "%s%s%s", prefix, prefix[0] ? "." : "", ks ? ks : "?");
        list_names(names, opts, hint, sizeof(hint));
        return fail(c, line_of(k, line), key, "unknown key (expected %s)", hint);
    }
    return 0;
}

/* The value node for key name in mapping node (NULL when absent or node is not a mapping). */
static struct fy_node *lookup(struct fy_node *node, const char *name, int *keyline, int fallback)
{
    struct fy_node_pair *p;

    *keyline = fallback;
    if (node == NULL || fy_node_get_type(node) != FYNT_MAPPING)
        return NULL;
    p = fy_node_mapping_lookup_pair_by_string(node, name, strlen(name));
    if (p == NULL)
        return NULL;
    *keyline = line_of(fy_node_pair_key(p), fallback);
    return fy_node_pair_value(p);
}

/*
 * The text of a scalar option: the environment variable for key when set, else the node's scalar, else
 * NULL. *present says whether the file had the key. Returns 0 or -1 (a non-scalar or null value).
 */
static int scalar_value(struct ctx *c, struct fy_node *map, const char *name, const char *key, int fallback,
                        const char **out, struct src *where, char *var, size_t varsize)
{
    int keyline;
    struct fy_node *v = lookup(map, name, &keyline, fallback);
    int present = v != NULL || (map && fy_node_mapping_lookup_pair_by_string(map, name, strlen(name)));

    env_name(key, var, varsize);
    where->var = NULL;
    where->line = value_line(v, keyline);
    *out = NULL;
    const char *env = getenv(var);
    if (env != NULL) {
        where->var = var;
        *out = env;
        return 0;
    }
    if (!present)
        return 0;
    if (is_null(v))
        return fail(c, where->line, key, "missing value");
    if (scalar_text(v) == NULL)
        return fail(c, where->line, key, "expected a scalar value, got %s", kind_name(v));
    *out = scalar_text(v);
    return 0;
}

/* Index of s in a NULL-terminated list, or -1. */
static int find_name(const char *const *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

/* Nonzero when s is a slot or sink name: [a-z0-9_]{1,max}. */
static int valid_name(const char *s, size_t max)
{
    size_t n = strlen(s);

    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    return 1;
}

/* An identifier part of a table name: letters, digits, '_', '$' and UTF-8. */
static int valid_ident(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!(isalnum(ch) || ch == '_' || ch == '$' || ch >= 0x80))
            return 0;
    }
    return 1;
}

/* Parse a decimal integer; 0 or -1 when s is not one. */
static int parse_int(const char *s, long long *out)
{
    char *end;

    if (*s == '\0' || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    *out = strtoll(s, &end, 10);
    return (errno || *end != '\0') ? -1 : 0;
}

/* Convert and store one option's text value. */
static int store_opt(struct ctx *c, const struct opt *o, const char *val, const char *key,
                     const struct src *w)
{
    char *field = (char *)c->cfg + o->off;
    char hint[128];
    long long n;
    int i;

    switch (o->type) {
    case O_STR:
    case O_NONEMPTY:
        if (o->type == O_NONEMPTY && val[0] == '\0')
            return fail_at(c, w, key, "must not be empty");
        free(*(char **)field);
        *(char **)field = wc_xstrdup(val);
        return 0;
    case O_INT:
    case O_SIZE:
        if (parse_int(val, &n) < 0)
            return fail_at(c, w, key, "expected an integer, got \"%s\"", val);
        if (n < o->min || n > o->max)
            return fail_at(c, w, key, "value %lld is out of range (%lld..%lld)", n, o->min, o->max);
        if (o->type == O_INT)
            *(int *)field = (int)n;
        else
            *(size_t *)field = (size_t)n;
        return 0;
    case O_POLICY:
    case O_LOGLEVEL: {
        const char *const *names = o->type == O_POLICY ? policy_names : level_names;
        int count = o->type == O_POLICY ? 3 : 4;
        if ((i = find_name(names, count, val)) < 0) {
            list_names(names, NULL, hint, sizeof(hint));
            return fail_at(c, w, key, "invalid value \"%s\" (expected %s)", val, hint);
        }
        if (o->type == O_POLICY) {
            *(int *)field = i;
        } else {
            free(*(char **)field);
            *(char **)field = wc_xstrdup(val);
        }
        return 0;
    }
    case O_SLOT:
        if (!valid_name(val, 63))
            return fail_at(c, w, key, "invalid slot name \"%s\" (use 1 to 63 of a-z, 0-9 and _)", val);
        free(*(char **)field);
        *(char **)field = wc_xstrdup(val);
        return 0;
    case O_TABLE: {
        const char *dot = strchr(val, '.');
        const char *tab = dot ? dot + 1 : val;
        if ((dot && !valid_ident(val, (size_t)(dot - val))) || !valid_ident(tab, strlen(tab)))
            return fail_at(c, w, key, "invalid table \"%s\" (expected table or schema.table)", val);
        free(c->cfg->outbox_schema);
        free(c->cfg->outbox_table);
        c->cfg->outbox_schema = dot ? strndup(val, (size_t)(dot - val)) : wc_xstrdup("public");
        c->cfg->outbox_table = wc_xstrdup(tab);
        if (c->cfg->outbox_schema == NULL)
            abort();
        return 0;
    }
    }
    return 0;
}

/*
 * Fill the options of one section from node (a mapping, or NULL when the file has none), the
 * environment and the defaults. prefix is the section's key path ("source", "source.outbox").
 */
static int load_section(struct ctx *c, struct fy_node *node, int line, const char *prefix,
                        const struct opt *opts)
{
    char key[KEYLEN], var[KEYLEN];

    if (check_keys(c, node, line, prefix, NULL, opts) < 0)
        return -1;
    for (const struct opt *o = opts; o->name; o++) {
        mkkey(key, "%s.%s", prefix, o->name);
        if (o->type == O_SUB) {
            int keyline;
            struct fy_node *sub = lookup(node, o->name, &keyline, line);
            if (load_section(c, sub, keyline, key, o->sub) < 0)
                return -1;
            continue;
        }
        const char *val;
        struct src w;
        if (scalar_value(c, node, o->name, key, line, &val, &w, var, sizeof(var)) < 0)
            return -1;
        if (val == NULL)
            val = o->def;
        if (val != NULL && store_opt(c, o, val, key, &w) < 0)
            return -1;
    }
    return 0;
}

/* ---- sinks ---- */

/* Load the sinks mapping in file order: name -> {type, dsn}. */
static int load_sinks(struct ctx *c, struct fy_node *node, int line)
{
    char key[KEYLEN], var[KEYLEN], hint[64];
    static const char *const sink_keys[] = {"type", "dsn", "rebuild", NULL};
    struct fy_node_pair *p;
    void *it = NULL;

    if (is_null(node))
        return 0;
    if (fy_node_get_type(node) != FYNT_MAPPING)
        return fail(c, value_line(node, line), "sinks", "expected a mapping of sink names, got %s",
                    kind_name(node));
    c->cfg->sinks = wc_xcalloc((size_t)fy_node_mapping_item_count(node), sizeof(struct wc_sink_conf));
    while ((p = fy_node_mapping_iterate(node, &it)) != NULL) {
        struct fy_node *k = fy_node_pair_key(p), *v = fy_node_pair_value(p);
        const char *name = scalar_text(k) ? scalar_text(k) : "?";
        int kline = line_of(k, line);
        struct wc_sink_conf *s = &c->cfg->sinks[c->cfg->nsink];
        const char *val;
        struct src w;

        mkkey(key, "sinks.%s", name);
        if (!valid_name(name, 63))
            return fail(c, kline, key, "invalid sink name \"%s\" (use 1 to 63 of a-z, 0-9 and _)", name);
        if (is_null(v))
            return fail(c, kline, key, "missing value (expected a mapping with type and dsn)");
        if (check_keys(c, v, kline, key, sink_keys, NULL) < 0)
            return -1;
        s->name = wc_xstrdup(name);
        s->line = kline;
        c->cfg->nsink++;

        mkkey(key, "sinks.%s.type", name);
        if (scalar_value(c, v, "type", key, kline, &val, &w, var, sizeof(var)) < 0)
            return -1;
        if (val == NULL) {
            mkkey(key, "sinks.%s", name);
            return fail(c, kline, key, "missing key \"type\"");
        }
        list_names(sink_type_names, NULL, hint, sizeof(hint));
        s->type = find_name(sink_type_names, 2, val);
        if (s->type < 0)
            return fail_at(c, &w, key, "invalid sink type \"%s\" (expected %s)", val, hint);

        mkkey(key, "sinks.%s.dsn", name);
        if (scalar_value(c, v, "dsn", key, kline, &val, &w, var, sizeof(var)) < 0)
            return -1;
        /* postgres: "" lets libpq's PG* variables apply, like source.dsn. */
        if (val == NULL)
            val = s->type == WC_SINK_REDIS ? "redis://127.0.0.1:6379/0" : "";
        if (s->type == WC_SINK_REDIS && strncmp(val, "redis://", 8) != 0)
            return fail_at(c, &w, key,
                           "invalid redis address (expected redis://[:password@]host[:port][/db])");
        s->dsn = wc_xstrdup(val);

        /* What wipes this sink's projections before a rebuild from the outbox table. */
        mkkey(key, "sinks.%s.rebuild", name);
        if (scalar_value(c, v, "rebuild", key, kline, &val, &w, var, sizeof(var)) < 0)
            return -1;
        if (val != NULL && *val != '\0') {
            if (s->type == WC_SINK_REDIS && strcmp(val, "flushdb") != 0)
                return fail_at(c, &w, key, "invalid rebuild \"%s\" for a redis sink (expected flushdb)", val);
            s->rebuild = wc_xstrdup(val);
        }
    }
    return 0;
}

static struct wc_sink_conf *find_sink(struct wc_config *cfg, const char *name)
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
        int iline = line_of(item, line);
        mkkey(ikey, "%s[%d]", key, i++);
        if (is_null(item) || scalar_text(item) == NULL)
            return fail(c, iline, ikey, "expected %s, got %s", bare ? "an expression" : "a template",
                        kind_name(item));
        argv[*argc] = wc_tmpl_compile(scalar_text(item), bare, &terr);
        if (argv[*argc] == NULL)
            return fail(c, iline, ikey, "%s", terr.msg);
        (*argc)++;
    }
    return 0;
}

/* A sequence node or null (an absent list); anything else is an error. */
static int want_list(struct ctx *c, struct fy_node *n, int line, const char *key)
{
    if (n == NULL || fy_node_get_type(n) == FYNT_SEQUENCE)
        return 0;
    return fail(c, value_line(n, line), key, "expected a list, got %s", kind_name(n));
}

/* {sql, params} for a postgres sink. */
static int load_pg_stmt(struct ctx *c, struct fy_node *m, int line, const char *akey, struct wc_pg_stmt *st)
{
    char key[KEYLEN];
    int kline, pline;
    struct fy_node *sql = lookup(m, "sql", &kline, line);
    struct fy_node *params = lookup(m, "params", &pline, line);

    st->line = line;
    if (fy_node_mapping_lookup_pair_by_string(m, "sql", 3) == NULL)
        return fail(c, line, akey, "missing key \"sql\"");
    mkkey(key, "%s.sql", akey);
    if (is_null(sql) || scalar_text(sql) == NULL || scalar_text(sql)[0] == '\0')
        return fail(c, value_line(sql, kline), key, "expected an SQL statement, got %s",
                    is_null(sql) || fy_node_get_type(sql) != FYNT_SCALAR ? kind_name(sql)
                                                                         : "an empty string");
    st->sql = wc_xstrdup(fy_node_get_scalar0(sql));

    mkkey(key, "%s.params", akey);
    if (want_list(c, params, pline, key) < 0)
        return -1;
    int n = params ? fy_node_sequence_item_count(params) : 0;
    st->params = wc_xcalloc((size_t)n, sizeof(struct wc_tmpl *));
    if (params && compile_list(c, params, pline, key, 1, st->params, &st->nparams) < 0)
        return -1;

    /* PostgreSQL cannot prepare a statement whose $n has no value, nor infer the type of an unused one. */
    int max = sql_max_param(st->sql);
    int where = params ? pline : value_line(sql, kline);
    if (max > 65535)
        return fail(c, where, key, "the sql uses a parameter above $65535");
    if (max > st->nparams)
        return fail(c, where, key, "the sql uses $%d but params has %d %s", max, st->nparams,
                    st->nparams == 1 ? "entry" : "entries");
    if (max < st->nparams) {
        if (max == 0)
            return fail(c, where, key, "params has %d %s but the sql has no parameters", st->nparams,
                        st->nparams == 1 ? "entry" : "entries");
        return fail(c, where, key, "params has %d entries but the sql uses only $1..$%d", st->nparams, max);
    }
    return 0;
}

/* {script, keys, args} for a redis sink. */
static int load_redis_script(struct ctx *c, struct fy_node *m, int line, const char *akey,
                             struct wc_redis_cmd *cmd)
{
    char key[KEYLEN];
    int sline, kline, aline;
    struct fy_node *script = lookup(m, "script", &sline, line);
    struct fy_node *keys = lookup(m, "keys", &kline, line);
    struct fy_node *args = lookup(m, "args", &aline, line);

    cmd->line = line;
    if (fy_node_mapping_lookup_pair_by_string(m, "script", 6) == NULL)
        return fail(c, line, akey, "missing key \"script\"");
    mkkey(key, "%s.script", akey);
    if (is_null(script) || scalar_text(script) == NULL || scalar_text(script)[0] == '\0')
        return fail(c, value_line(script, sline), key, "expected a Lua script, got %s",
                    is_null(script) || fy_node_get_type(script) != FYNT_SCALAR ? kind_name(script)
                                                                               : "an empty string");
    cmd->script = wc_xstrdup(fy_node_get_scalar0(script));
    mkkey(key, "%s.keys", akey);
    if (want_list(c, keys, kline, key) < 0)
        return -1;
    mkkey(key, "%s.args", akey);
    if (want_list(c, args, aline, key) < 0)
        return -1;
    int nk = keys ? fy_node_sequence_item_count(keys) : 0, na = args ? fy_node_sequence_item_count(args) : 0;
    cmd->argv = wc_xcalloc((size_t)(nk + na), sizeof(struct wc_tmpl *));
    mkkey(key, "%s.keys", akey);
    if (keys && compile_list(c, keys, kline, key, 0, cmd->argv, &cmd->argc) < 0)
        return -1;
    cmd->nkeys = cmd->argc;
    mkkey(key, "%s.args", akey);
    if (args && compile_list(c, args, aline, key, 0, cmd->argv, &cmd->argc) < 0)
        return -1;
    return 0;
}

/* [COMMAND, ARG, ...] for a redis sink. */
static int load_redis_cmd(struct ctx *c, struct fy_node *seq, int line, const char *akey,
                          struct wc_redis_cmd *cmd)
{
    int n = fy_node_sequence_item_count(seq);

    cmd->line = line;
    if (n == 0)
        return fail(c, line, akey, "redis command is empty");
    cmd->argv = wc_xcalloc((size_t)n, sizeof(struct wc_tmpl *));
    if (compile_list(c, seq, line, akey, 0, cmd->argv, &cmd->argc) < 0)
        return -1;
    if (wc_tmpl_source(cmd->argv[0])[0] == '\0')
        return fail(c, line, akey, "redis command is empty");
    return 0;
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

    if (!is_null(a) && fy_node_get_type(a) == FYNT_MAPPING) {
        struct fy_node_pair *p;
        void *it = NULL;
        while ((p = fy_node_mapping_iterate(a, &it)) != NULL) {
            struct fy_node *k = fy_node_pair_key(p);
            const char *ks = scalar_text(k) ? scalar_text(k) : "?";
            mkkey(key, "%s.%s", akey, ks);
            if (find_name(redis ? redis_keys : pg_keys, redis ? 3 : 2, ks) >= 0)
                continue;
            if (find_name(redis ? pg_keys : redis_keys, redis ? 2 : 3, ks) >= 0)
                return fail(c, line_of(k, line), key, "%s needs a %s sink, but sink \"%s\" is %s", ks,
                            redis ? "postgres" : "redis", sink->name, sink_type_names[sink->type]);
            return fail(c, line_of(k, line), key, "unknown key (expected %s)",
                        redis ? "script, keys or args" : "sql or params");
        }
        if (redis) {
            r->cmds = wc_xrealloc(r->cmds, (size_t)(r->ncmd + 1) * sizeof(*r->cmds));
            memset(&r->cmds[r->ncmd], 0, sizeof(*r->cmds));
            return load_redis_script(c, a, line, akey, &r->cmds[r->ncmd++]);
        }
        r->stmts = wc_xrealloc(r->stmts, (size_t)(r->nstmt + 1) * sizeof(*r->stmts));
        memset(&r->stmts[r->nstmt], 0, sizeof(*r->stmts));
        return load_pg_stmt(c, a, line, akey, &r->stmts[r->nstmt++]);
    }
    if (!is_null(a) && fy_node_get_type(a) == FYNT_SEQUENCE) {
        if (!redis)
            return fail(c, line, akey, "a command list needs a redis sink, but sink \"%s\" is postgres",
                        sink->name);
        r->cmds = wc_xrealloc(r->cmds, (size_t)(r->ncmd + 1) * sizeof(*r->cmds));
        memset(&r->cmds[r->ncmd], 0, sizeof(*r->cmds));
        return load_redis_cmd(c, a, line, akey, &r->cmds[r->ncmd++]);
    }
    if (redis)
        return fail(
            c, line, akey,
            "expected a command list [COMMAND, ARG, ...] or a mapping with script, keys and args, got %s",
            kind_name(a));
    return fail(c, line, akey, "expected a mapping with sql and params, got %s", kind_name(a));
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
    static const char *const keys[] = {"sink", "on", NULL};
    char key[KEYLEN], akey[KEYLEN];
    struct fy_node *sn, *on;
    int sline, oline;

    mkkey(key, "projections.%s", name);
    if (is_null(v))
        return fail(c, pline, key, "missing value (expected a mapping with sink and on)");
    if (check_keys(c, v, pline, key, keys, NULL) < 0)
        return -1;
    sn = lookup(v, "sink", &sline, pline);
    on = lookup(v, "on", &oline, pline);
    if (fy_node_mapping_lookup_pair_by_string(v, "sink", 4) == NULL)
        return fail(c, pline, key, "missing key \"sink\"");
    if (fy_node_mapping_lookup_pair_by_string(v, "on", 2) == NULL)
        return fail(c, pline, key, "missing key \"on\"");

    mkkey(key, "projections.%s.sink", name);
    if (is_null(sn) || scalar_text(sn) == NULL)
        return fail(c, value_line(sn, sline), key, "expected a sink name, got %s", kind_name(sn));
    struct wc_sink_conf *sink = find_sink(c->cfg, fy_node_get_scalar0(sn));
    if (sink == NULL)
        return fail(c, line_of(sn, sline), key, "unknown sink \"%s\"", fy_node_get_scalar0(sn));

    mkkey(key, "projections.%s.on", name);
    if (is_null(on) || fy_node_get_type(on) != FYNT_MAPPING)
        return fail(c, value_line(on, oline), key, "expected a mapping of event types to actions, got %s",
                    kind_name(on));

    struct fy_node_pair *p;
    void *it = NULL;
    while ((p = fy_node_mapping_iterate(on, &it)) != NULL) {
        struct fy_node *k = fy_node_pair_key(p), *acts = fy_node_pair_value(p);
        const char *type = scalar_text(k);
        int kline = line_of(k, oline);

        mkkey(key, "projections.%s.on.%s", name, type ? type : "?");
        if (type == NULL || type[0] == '\0' || is_null(k))
            return fail(c, kline, key, "expected an event type name");
        if (is_null(acts) || fy_node_get_type(acts) != FYNT_SEQUENCE)
            return fail(c, value_line(acts, kline), key, "expected a list of actions, got %s",
                        kind_name(acts));

        struct wc_rule *r = add_rule(sink);
        r->projection = wc_xstrdup(name);
        r->event_type = wc_xstrdup(type);
        r->line = kline;
        struct fy_node *a;
        void *ait = NULL;
        int i = 0;
        while ((a = fy_node_sequence_iterate(acts, &ait)) != NULL) {
            mkkey(akey, "%s[%d]", key, i++);
            if (load_action(c, a, line_of(a, kline), akey, sink, r) < 0)
                return -1;
        }
    }
    return 0;
}

static int load_projections(struct ctx *c, struct fy_node *node, int line)
{
    struct fy_node_pair *p;
    void *it = NULL;

    if (is_null(node))
        return 0;
    if (fy_node_get_type(node) != FYNT_MAPPING)
        return fail(c, value_line(node, line), "projections",
                    "expected a mapping of projection names, got %s", kind_name(node));
    while ((p = fy_node_mapping_iterate(node, &it)) != NULL) {
        struct fy_node *k = fy_node_pair_key(p);
        const char *name = scalar_text(k);
        if (name == NULL || name[0] == '\0' || is_null(k))
            return fail(c, line_of(k, line), "projections", "expected a projection name");
        if (load_projection(c, name, fy_node_pair_value(p), line_of(k, line)) < 0)
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
static void build_index(struct wc_config *cfg)
{
    for (int i = 0; i < cfg->nsink; i++) {
        struct wc_sink_conf *s = &cfg->sinks[i];
        struct rule_index *idx = wc_xcalloc(1, sizeof(*idx));
        idx->n = s->nrule;
        idx->rules = wc_xcalloc((size_t)s->nrule, sizeof(*idx->rules));
        for (int j = 0; j < s->nrule; j++)
            idx->rules[j] = &s->rules[j];
        qsort(idx->rules, (size_t)idx->n, sizeof(*idx->rules), cmp_rule);
        s->index = idx;
    }
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

static void free_rule(struct wc_rule *r)
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
    }
    free(r->cmds);
    free(r->projection);
    free(r->event_type);
}

void wc_config_free(struct wc_config *cfg)
{
    if (cfg == NULL)
        return;
    for (int i = 0; i < cfg->nsink; i++) {
        struct wc_sink_conf *s = &cfg->sinks[i];
        struct rule_index *idx = s->index;
        for (int j = 0; j < s->nrule; j++)
            free_rule(&s->rules[j]);
        free(s->rules);
        if (idx)
            free(idx->rules);
        free(idx);
        free(s->name);
        free(s->dsn);
        free(s->rebuild);
    }
    free(cfg->sinks);
    for (int i = 0; i < WC_COL_COUNT; i++)
        free(cfg->columns[i]);
    free(cfg->path);
    free(cfg->source_dsn);
    free(cfg->slot);
    free(cfg->outbox_schema);
    free(cfg->outbox_table);
    free(cfg->msg_prefix);
    free(cfg->dead_letter_sink);
    free(cfg->log_level);
    free(cfg);
}

static void quiet_diag(struct fy_diag *diag, void *user, const char *buf, size_t len) {}

/*
 * libfyaml 0.7.12 (Debian bookworm) dies with SIGSEGV on some malformed input (found by fuzz_config,
 * e.g. "? e:<TAB>?": fy_parse_cleanup -> fy_indent_vacuum_internal). A configuration file with a typo
 * must get an error, not a crash: the file is parsed once in a child process first, and a child that
 * does not come back normally means the parser cannot be trusted with this file.
 */
static int parse_preflight(struct ctx *c, const char *path)
{
    pid_t pid;
    int status;

    fflush(NULL);
    pid = fork();
    if (pid < 0)
        return 0; /* no child to spare: parse directly */
    if (pid == 0) {
        signal(SIGALRM, SIG_DFL); /* an inherited handler (a fuzzer's, say) must not keep it alive */
        alarm(10); /* and some inputs make it spin: a configuration file parses in milliseconds */
        struct fy_parse_cfg pcfg;
        struct fy_diag_cfg dcfg;
        fy_diag_cfg_default(&dcfg);
        dcfg.fp = NULL;
        dcfg.output_fn = quiet_diag;
        memset(&pcfg, 0, sizeof(pcfg));
        pcfg.flags = FYPCF_QUIET | FYPCF_RESOLVE_DOCUMENT | FYPCF_JSON_NONE;
        pcfg.diag = fy_diag_create(&dcfg);
        fy_document_destroy(fy_document_build_from_file(&pcfg, path));
        fy_diag_destroy(pcfg.diag);
        _exit(0);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    wc_err_set(c->err, WC_ERR_CONFIG,
               "%s: the YAML parser failed on this file (libfyaml %s): check its syntax, e.g. stray "
               "\"?\" or tabs in indentation",
               path, WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM ? "did not finish" : "crashed");
    return -1;
}

/*
 * Parse path into a document. Returns 0 with *doc (NULL for an empty file) or -1 with err naming the
 * file and line of the first YAML error.
 */
static int parse_yaml(struct ctx *c, const char *path, struct fy_document **doc)
{
    struct fy_diag_cfg dcfg;
    struct fy_parse_cfg pcfg;
    struct fy_diag *diag;
    FILE *fp;

    *doc = NULL;
    fp = fopen(path, "r");
    if (fp == NULL) {
        wc_err_set(c->err, WC_ERR_CONFIG, "could not open configuration file \"%s\": %s", path,
                   strerror(errno));
        return -1;
    }
    if (parse_preflight(c, path) < 0) {
        fclose(fp);
        return -1;
    }
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = quiet_diag;
    diag = fy_diag_create(&dcfg);
    if (diag == NULL) {
        fclose(fp);
        wc_err_set(c->err, WC_ERR_CONFIG, "%s: could not create the YAML parser", path);
        return -1;
    }
    fy_diag_set_collect_errors(diag, true);
    memset(&pcfg, 0, sizeof(pcfg));
    pcfg.flags = FYPCF_QUIET | FYPCF_RESOLVE_DOCUMENT | FYPCF_JSON_NONE;
    pcfg.diag = diag;
    *doc = fy_document_build_from_fp(&pcfg, fp);
    fclose(fp);
    if (*doc == NULL) {
        void *it = NULL;
        struct fy_diag_error *e = fy_diag_errors_iterate(diag, &it);
        if (e != NULL) {
            fail(c, e->line, NULL, "invalid YAML: %s", e->msg);
            fy_diag_destroy(diag);
            return -1;
        }
        /* No document and no error: the file is empty or holds only comments. */
    }
    fy_diag_destroy(diag);
    return 0;
}

/* Report an error about engine.NAME where its value came from: the environment or the file's line. */
static int fail_engine_key(struct ctx *c, struct fy_node *root, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_engine_key(struct ctx *c, struct fy_node *root, const char *name, const char *fmt, ...)
{
    char key[KEYLEN], var[KEYLEN], msg[768];
    int line, kline;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    mkkey(key, "engine.%s", name);
    env_name(key, var, sizeof(var));
    if (getenv(var) != NULL)
        return fail_env(c, var, key, "%s", msg);
    struct fy_node *e = lookup(root, "engine", &line, 1);
    struct fy_node *v = lookup(e, name, &kline, line);
    return fail(c, value_line(v, kline), key, "%s", msg);
}

/*
 * Load and validate path (or only defaults and the environment when path is NULL). Returns a new
 * config or NULL with err (WC_ERR_CONFIG).
 */
struct wc_config *wc_config_load(const char *path, struct wc_err *err)
{
    struct wc_config *cfg = wc_xcalloc(1, sizeof(*cfg));
    struct fy_document *doc = NULL;
    struct fy_node *root = NULL;
    struct ctx c = {path, cfg, err};
    int line;

    if (path != NULL) {
        cfg->path = wc_xstrdup(path);
        if (parse_yaml(&c, path, &doc) < 0)
            goto error;
        root = doc ? fy_document_root(doc) : NULL;
        if (!is_null(root) && fy_node_get_type(root) != FYNT_MAPPING) {
            fail(&c, line_of(root, 1), NULL, "expected a mapping at the top level, got %s", kind_name(root));
            goto error;
        }
        if (is_null(root))
            root = NULL;
        if (check_keys(&c, root, 1, "", top_keys, NULL) < 0)
            goto error;
    }

    struct fy_node *n = lookup(root, "source", &line, 1);
    if (load_section(&c, n, line, "source", source_opts) < 0)
        goto error;
    n = lookup(root, "engine", &line, 1);
    if (load_section(&c, n, line, "engine", engine_opts) < 0)
        goto error;
    n = lookup(root, "sinks", &line, 1);
    if (load_sinks(&c, n, line) < 0)
        goto error;
    /* "rebuild: flushdb" empties the whole database: a second sink there would silently lose its data. */
    for (int i = 0; i < c.cfg->nsink; i++) {
        const struct wc_sink_conf *a = &c.cfg->sinks[i];
        if (a->type != WC_SINK_REDIS || a->rebuild == NULL)
            continue;
        for (int j = 0; j < c.cfg->nsink; j++) {
            const struct wc_sink_conf *b = &c.cfg->sinks[j];
            char key[KEYLEN];
            if (j == i || b->type != WC_SINK_REDIS || strcmp(a->dsn, b->dsn) != 0)
                continue;
            mkkey(key, "sinks.%s.rebuild", a->name);
            fail(&c, a->line, key,
                 "sink \"%s\" shares its redis database with sink \"%s\": give it a database of "
                 "its own (flushdb wipes the whole database)",
                 a->name, b->name);
            goto error;
        }
    }
    n = lookup(root, "projections", &line, 1);
    if (load_projections(&c, n, line) < 0)
        goto error;

    /* Checks across keys, made once everything is loaded. The dead-letter sink must exist. */
    if (cfg->dead_letter_sink != NULL && find_sink(cfg, cfg->dead_letter_sink) == NULL) {
        fail_engine_key(&c, root, "dead_letter_sink", "unknown sink \"%s\"", cfg->dead_letter_sink);
        goto error;
    }
    if (cfg->retry_base_ms > cfg->retry_max_ms) {
        fail_engine_key(&c, root, "retry_base_ms", "value %d is above engine.retry_max_ms (%d)",
                        cfg->retry_base_ms, cfg->retry_max_ms);
        goto error;
    }
    if (cfg->dead_letter_sink == NULL && cfg->nsink > 0)
        cfg->dead_letter_sink = wc_xstrdup(cfg->sinks[0].name);

    build_index(cfg);
    if (doc)
        fy_document_destroy(doc);
    return cfg;

error:
    if (doc)
        fy_document_destroy(doc);
    wc_config_free(cfg);
    return NULL;
}
