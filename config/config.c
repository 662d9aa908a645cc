/* config.c - the configuration file: a table of options (name, type, field, default, bounds) walked over
 * the YAML document and the WALCAST_* environment, then the sinks and projections (projections.c). */
#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"

#define F(field) offsetof(struct wc_config, field)

static const struct opt column_opts[] = {
    /* "" says the outbox has no such column (its value is always null); event_type and payload are
     * required. The start of every session checks that each named column exists (replication/outbox.c). */
    {"event_id", O_STR, F(columns[WC_COL_EVENT_ID]), "event_id", 0, 0, NULL},
    {"aggregate_type", O_STR, F(columns[WC_COL_AGGREGATE_TYPE]), "aggregate_type", 0, 0, NULL},
    {"aggregate_id", O_STR, F(columns[WC_COL_AGGREGATE_ID]), "aggregate_id", 0, 0, NULL},
    {"event_type", O_NONEMPTY, F(columns[WC_COL_EVENT_TYPE]), "event_type", 0, 0, NULL},
    {"payload", O_NONEMPTY, F(columns[WC_COL_PAYLOAD]), "payload", 0, 0, NULL},
    {"occurred_at", O_STR, F(columns[WC_COL_OCCURRED_AT]), "occurred_at", 0, 0, NULL},
    {NULL, 0, 0, NULL, 0, 0, NULL},
};

static const struct opt outbox_opts[] = {
    {"table", O_TABLE, 0, "public.domain_events", 0, 0, NULL},
    {"columns", O_SUB, 0, NULL, 0, 0, column_opts},
    /* The replay order of rebuilds: columns, comma-separated; unset = event_id when it is an integer. */
    {"order_by", O_STR, F(outbox_order_by), NULL, 0, 0, NULL},
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
    {"log_format", O_LOGFORMAT, F(log_format), "plain", 0, 0, NULL},
    {"progress_interval_ms", O_INT, F(progress_interval_ms), "5000", 100, 3600000, NULL},
    {"heartbeat_interval_ms", O_INT, F(heartbeat_interval_ms), "10000", 0, 3600000, NULL},
    {"retry_base_ms", O_INT, F(retry_base_ms), "100", 1, 600000, NULL},
    {"retry_max_ms", O_INT, F(retry_max_ms), "10000", 1, 3600000, NULL},
    {"retry_max_attempts", O_INT, F(retry_max_attempts), "0", 0, 1000000, NULL},
    {"dead_letter_max", O_INT, F(dead_letter_max), "100000", 0, 1000000000, NULL},
    {NULL, 0, 0, NULL, 0, 0, NULL},
};

#define S(field) offsetof(struct wc_sink_conf, field)

/* Options of each sink (sinks.NAME.*) beside type, dsn and rebuild, which projections.c reads. */
static const struct opt sink_opts[] = {
    {"statement_timeout_ms", O_INT, S(statement_timeout_ms), "30000", 100, 3600000, NULL},
    {"lock_timeout_ms", O_INT, S(lock_timeout_ms), "10000", 0, 3600000, NULL},
    {NULL, 0, 0, NULL, 0, 0, NULL},
};

/* Operating walcast: the HTTP endpoint, the slot's figures and when retained WAL is worth a warning. */
static const struct opt metrics_opts[] = {
    {"listen", O_LISTEN, F(metrics_listen), "", 0, 0, NULL},
    {"slot_poll_interval_ms", O_INT, F(slot_poll_interval_ms), "10000", 100, 3600000, NULL},
    {"retention_warn_percent", O_INT, F(retention_warn_percent), "50", 1, 100, NULL},
    {"retention_critical_percent", O_INT, F(retention_critical_percent), "80", 1, 100, NULL},
    {"retention_warn_bytes", O_SIZE, F(retention_warn_bytes), "1073741824", 1048576, 1LL << 50, NULL},
    {"retention_critical_bytes", O_SIZE, F(retention_critical_bytes), "4294967296", 1048576, 1LL << 50, NULL},
    {"forecast_warn_seconds", O_INT, F(forecast_warn_seconds), "3600", 0, 31536000, NULL},
    {NULL, 0, 0, NULL, 0, 0, NULL},
};

static const char *const top_keys[] = {"source", "engine", "sinks", "projections", "metrics", NULL};
static const char *const policy_names[] = {"dead_letter", "skip", "halt", NULL};
static const char *const level_names[] = {"debug", "info", "warning", "error", NULL};
static const char *const format_names[] = {"plain", "json", NULL};

const char *wc_policy_name(int policy)
{
    if (policy < 0 || policy > WC_POLICY_HALT)
        return "unknown";
    return policy_names[policy];
}

/* Convert and store one option's text value. */
static int store_opt(struct ctx *c, void *base, const struct opt *o, const char *val, const char *key,
                     const struct src *w)
{
    char *field = (char *)base + o->off;
    char hint[128];
    long long n;
    int i;

    switch (o->type) {
    case O_STR:
    case O_NONEMPTY:
        if (o->type == O_NONEMPTY && val[0] == '\0')
            return cf_fail_at(c, w, key, "must not be empty");
        free(*(char **)field);
        *(char **)field = wc_xstrdup(val);
        return 0;
    case O_INT:
    case O_SIZE:
        if (cf_parse_int(val, &n) < 0)
            return cf_fail_at(c, w, key, "expected an integer, got \"%s\"", val);
        if (n < o->min || n > o->max)
            return cf_fail_at(c, w, key, "value %lld is out of range (%lld..%lld)", n, o->min, o->max);
        if (o->type == O_INT)
            *(int *)field = (int)n;
        else
            *(size_t *)field = (size_t)n;
        return 0;
    case O_POLICY:
    case O_LOGLEVEL:
    case O_LOGFORMAT: {
        const char *const *names = o->type == O_POLICY     ? policy_names
                                   : o->type == O_LOGLEVEL ? level_names
                                                           : format_names;
        int count = o->type == O_POLICY ? 3 : o->type == O_LOGLEVEL ? 4 : 2;
        if ((i = cf_find_name(names, count, val)) < 0) {
            cf_list_names(names, NULL, hint, sizeof(hint));
            return cf_fail_at(c, w, key, "invalid value \"%s\" (expected %s)", val, hint);
        }
        if (o->type == O_POLICY) {
            *(int *)field = i;
        } else {
            free(*(char **)field);
            *(char **)field = wc_xstrdup(val);
        }
        return 0;
    }
    case O_LISTEN: {
        char host[256];
        int port;
        if (val[0] != '\0' && wc_config_parse_listen(val, host, sizeof(host), &port) < 0)
            return cf_fail_at(c, w, key,
                              "invalid address \"%s\" (expected host:port, [ipv6]:port or :port, e.g. "
                              "127.0.0.1:9187; empty for none)",
                              val);
        free(*(char **)field);
        *(char **)field = wc_xstrdup(val);
        return 0;
    }
    case O_SLOT:
        if (!cf_valid_name(val, 63))
            return cf_fail_at(c, w, key, "invalid slot name \"%s\" (use 1 to 63 of a-z, 0-9 and _)", val);
        free(*(char **)field);
        *(char **)field = wc_xstrdup(val);
        return 0;
    case O_TABLE: {
        const char *dot = strchr(val, '.');
        const char *tab = dot ? dot + 1 : val;
        if ((dot && !cf_valid_ident(val, (size_t)(dot - val))) || !cf_valid_ident(tab, strlen(tab)))
            return cf_fail_at(c, w, key, "invalid table \"%s\" (expected table or schema.table)", val);
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
 * environment and the defaults, into the fields of base. prefix is the section's key path ("source",
 * "source.outbox"). check: also fail on keys the table does not have.
 */
static int load_options(struct ctx *c, void *base, struct fy_node *node, int line, const char *prefix,
                        const struct opt *opts, int check)
{
    char key[KEYLEN], var[KEYLEN];

    if (check && cf_check_keys(c, node, line, prefix, NULL, opts) < 0)
        return -1;
    for (const struct opt *o = opts; o->name; o++) {
        cf_mkkey(key, "%s.%s", prefix, o->name);
        if (o->type == O_SUB) {
            int keyline;
            struct fy_node *sub = cf_lookup(node, o->name, &keyline, line);
            if (load_options(c, base, sub, keyline, key, o->sub, 1) < 0)
                return -1;
            continue;
        }
        const char *val;
        struct src w;
        if (cf_scalar_value(c, node, o->name, key, line, &val, &w, var, sizeof(var)) < 0)
            return -1;
        if (val == NULL)
            val = o->def;
        if (val != NULL && store_opt(c, base, o, val, key, &w) < 0)
            return -1;
    }
    return 0;
}

static int load_section(struct ctx *c, struct fy_node *node, int line, const char *prefix,
                        const struct opt *opts)
{
    return load_options(c, c->cfg, node, line, prefix, opts, 1);
}

int cf_load_sink_options(struct ctx *c, struct fy_node *node, int line, struct wc_sink_conf *s)
{
    char prefix[KEYLEN];

    cf_mkkey(prefix, "sinks.%s", s->name);
    return load_options(c, s, node, line, prefix, sink_opts, 0);
}

/* Report an error about SECTION.NAME where its value came from: the environment or the file's line. */
static int fail_section_key(struct ctx *c, struct fy_node *root, const char *section, const char *name,
                            const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int fail_section_key(struct ctx *c, struct fy_node *root, const char *section, const char *name,
                            const char *fmt, ...)
{
    char key[KEYLEN], var[KEYLEN], msg[768];
    int line, kline;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cf_mkkey(key, "%s.%s", section, name);
    cf_env_name(key, var, sizeof(var));
    if (getenv(var) != NULL)
        return cf_fail_env(c, var, key, "%s", msg);
    struct fy_node *e = cf_lookup(root, section, &line, 1);
    struct fy_node *v = cf_lookup(e, name, &kline, line);
    return cf_fail(c, cf_value_line(v, kline), key, "%s", msg);
}

void wc_config_free(struct wc_config *cfg)
{
    if (cfg == NULL)
        return;
    cf_free_sinks(cfg);
    cf_free_owns(cfg);
    for (int i = 0; i < WC_COL_COUNT; i++)
        free(cfg->columns[i]);
    free(cfg->path);
    free(cfg->source_dsn);
    free(cfg->slot);
    free(cfg->outbox_schema);
    free(cfg->outbox_table);
    free(cfg->outbox_order_by);
    free(cfg->msg_prefix);
    free(cfg->dead_letter_sink);
    free(cfg->log_level);
    free(cfg->log_format);
    free(cfg->metrics_listen);
    free(cfg);
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
        if (cf_parse_yaml(&c, path, &doc) < 0)
            goto error;
        root = doc ? fy_document_root(doc) : NULL;
        if (!cf_is_null(root) && fy_node_get_type(root) != FYNT_MAPPING) {
            cf_fail(&c, cf_line_of(root, 1), NULL, "expected a mapping at the top level, got %s",
                    cf_kind_name(root));
            goto error;
        }
        if (cf_is_null(root))
            root = NULL;
        if (cf_check_keys(&c, root, 1, "", top_keys, NULL) < 0)
            goto error;
    }

    struct fy_node *n = cf_lookup(root, "source", &line, 1);
    if (load_section(&c, n, line, "source", source_opts) < 0)
        goto error;
    n = cf_lookup(root, "engine", &line, 1);
    if (load_section(&c, n, line, "engine", engine_opts) < 0)
        goto error;
    n = cf_lookup(root, "metrics", &line, 1);
    if (load_section(&c, n, line, "metrics", metrics_opts) < 0)
        goto error;
    n = cf_lookup(root, "sinks", &line, 1);
    if (cf_load_sinks(&c, n, line) < 0)
        goto error;
    n = cf_lookup(root, "projections", &line, 1);
    if (cf_load_projections(&c, n, line) < 0 || cf_check_owns(&c) < 0)
        goto error;

    /* Checks across keys, made once everything is loaded. The dead-letter sink must exist. */
    if (cfg->dead_letter_sink != NULL && cf_find_sink(cfg, cfg->dead_letter_sink) == NULL) {
        fail_section_key(&c, root, "engine", "dead_letter_sink", "unknown sink \"%s\"",
                         cfg->dead_letter_sink);
        goto error;
    }
    if (cfg->retry_base_ms > cfg->retry_max_ms) {
        fail_section_key(&c, root, "engine", "retry_base_ms", "value %d is above engine.retry_max_ms (%d)",
                         cfg->retry_base_ms, cfg->retry_max_ms);
        goto error;
    }
    if (cfg->retention_warn_percent > cfg->retention_critical_percent) {
        fail_section_key(&c, root, "metrics", "retention_warn_percent",
                         "value %d is above metrics.retention_critical_percent (%d)",
                         cfg->retention_warn_percent, cfg->retention_critical_percent);
        goto error;
    }
    if (cfg->retention_warn_bytes > cfg->retention_critical_bytes) {
        fail_section_key(&c, root, "metrics", "retention_warn_bytes",
                         "value %zu is above metrics.retention_critical_bytes (%zu)",
                         cfg->retention_warn_bytes, cfg->retention_critical_bytes);
        goto error;
    }
    if (cfg->dead_letter_sink == NULL && cfg->nsink > 0)
        cfg->dead_letter_sink = wc_xstrdup(cfg->sinks[0].name);

    cf_build_index(cfg);
    if (doc)
        fy_document_destroy(doc);
    return cfg;

error:
    if (doc)
        fy_document_destroy(doc);
    wc_config_free(cfg);
    return NULL;
}

/* The option row for a dotted key ("source.slot", "source.outbox.table"), or NULL. */
static const struct opt *find_opt(const char *key)
{
    static const struct {
        const char *name;
        const struct opt *opts;
    } sections[] = {{"source", source_opts}, {"engine", engine_opts}, {"metrics", metrics_opts}};
    const struct opt *opts = NULL;
    const char *p = key;

    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]) && opts == NULL; i++) {
        size_t n = strlen(sections[i].name);
        if (strncmp(key, sections[i].name, n) == 0 && key[n] == '.') {
            opts = sections[i].opts;
            p = key + n + 1;
        }
    }
    while (opts != NULL) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        const struct opt *o = opts;
        while (o->name && (strlen(o->name) != n || strncmp(o->name, p, n) != 0))
            o++;
        if (o->name == NULL)
            return NULL;
        if (dot == NULL)
            return o->type == O_SUB ? NULL : o;
        if (o->type != O_SUB)
            return NULL;
        opts = o->sub;
        p = dot + 1;
    }
    return NULL;
}

int wc_config_set(struct wc_config *cfg, const char *key, const char *value, const char *option,
                  struct wc_err *err)
{
    struct ctx c = {cfg->path, cfg, err};
    struct src w = {NULL, option, 0};
    const struct opt *o = find_opt(key);

    if (o == NULL) {
        wc_err_set(err, WC_ERR_INTERNAL, "no configuration key \"%s\"", key);
        return -1;
    }
    return store_opt(&c, cfg, o, value, key, &w);
}

int wc_config_parse_listen(const char *s, char *host, size_t hostsize, int *port)
{
    const char *colon, *h = s;
    size_t hlen;
    char *end;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
            return -1; /* a bare IPv6 address needs its brackets */
        hlen = (size_t)(colon - s);
    }
    if (hlen + 1 > hostsize)
        return -1;
    for (size_t i = 0; i < hlen; i++)
        if (isspace((unsigned char)h[i]) || h[i] == '/' || h[i] == '@')
            return -1;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || p < 1 || p > 65535)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return 0;
}
