/* config_int.h - what the configuration walker (config.c), its YAML helpers (yaml.c) and the projection
 * loader (projections.c) share. Private to config/. */
#ifndef WALCAST_CONFIG_INT_H
#define WALCAST_CONFIG_INT_H

#include <stddef.h>

#include <libfyaml.h>

#include "walcast/buf.h"
#include "walcast/config.h"

#define KEYLEN 512

/* Option types of the table below. */
enum otype {
    O_STR,       /* any string */
    O_NONEMPTY,  /* a non-empty string */
    O_INT,       /* an int within min..max */
    O_SIZE,      /* a size_t within min..max */
    O_POLICY,    /* dead_letter | skip | halt */
    O_LOGLEVEL,  /* debug | info | warning | error */
    O_LOGFORMAT, /* plain | json */
    O_LISTEN,    /* "" (off) or host:port, [v6]:port, :port */
    O_SLOT,      /* [a-z0-9_]{1,63} */
    O_TABLE,     /* table or schema.table: fills outbox_schema and outbox_table */
    O_SUB,       /* a nested mapping with its own table */
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

/* Loader state: where errors go and which file they name. */
struct ctx {
    const char *file;
    struct wc_config *cfg;
    struct wc_err *err;
};

/* Where a value came from, so one validation routine reports both kinds of error. */
struct src {
    const char *var;    /* the environment variable, or NULL */
    const char *option; /* the command-line option (wc_config_set), or NULL */
    int line;
};

extern const char *const cf_sink_type_names[];

/* ---- yaml.c: nodes and lines ---- */

/*
 * The 1-based line of a node, or fallback. libfyaml 0.7 exposes marks only for scalar tokens, so a
 * collection is placed at its first scalar (a mapping's first key, a sequence's first item).
 */
int cf_line_of(struct fy_node *n, int fallback);
/* The line to report for a value: a scalar's own line; for a collection or a null, the key's. */
int cf_value_line(struct fy_node *v, int keyline);
/* The text of a scalar node, or NULL for a missing node, a collection or a scalar without text. */
const char *cf_scalar_text(struct fy_node *n);
/* Nonzero for a YAML null: a missing or empty value, "~" or "null" written plain. */
int cf_is_null(struct fy_node *n);
/* "null", "a mapping", "a list" or "a scalar", for messages. */
const char *cf_kind_name(struct fy_node *n);
/* The value node for key name in mapping node (NULL when absent); *keyline the key's line. */
struct fy_node *cf_lookup(struct fy_node *node, const char *name, int *keyline, int fallback);
/*
 * Check that node is a mapping (a null counts as empty) whose keys are all in the allowed set (names, or
 * the option table opts). Returns 0 or -1 with err naming the first unknown key.
 */
int cf_check_keys(struct ctx *c, struct fy_node *node, int line, const char *prefix, const char *const *names,
                  const struct opt *opts);
/*
 * The text of a scalar option: the environment variable for key when set, else the node's scalar, else
 * NULL. Returns 0 or -1 (a non-scalar or null value). var receives the variable's name.
 */
int cf_scalar_value(struct ctx *c, struct fy_node *map, const char *name, const char *key, int fallback,
                    const char **out, struct src *where, char *var, size_t varsize);
/* Parse path into a document: 0 with *doc (NULL for an empty file) or -1 with err naming file and line. */
int cf_parse_yaml(struct ctx *c, const char *path, struct fy_document **doc);

/* ---- yaml.c: messages and names ---- */

/* "FILE:LINE: key \"KEY\": message", or without the key part when key is NULL. Returns -1. */
int cf_fail(struct ctx *c, int line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An error in a value from the environment: the variable takes the place of FILE:LINE. Returns -1. */
int cf_fail_env(struct ctx *c, const char *var, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* cf_fail or cf_fail_env, as s says. Returns -1. */
int cf_fail_at(struct ctx *c, const struct src *s, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Format a key path into buf (KEYLEN bytes); a longer path is cut short, which only shortens a message. */
void cf_mkkey(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* WALCAST_ + key in upper case, '.' and '-' as '_'. */
void cf_env_name(const char *key, char *buf, size_t size);
/* "one, two or three" from a NULL-terminated list, or an option table. */
void cf_list_names(const char *const *names, const struct opt *opts, char *buf, size_t size);
/* Index of s among the n names, or -1. */
int cf_find_name(const char *const *names, int n, const char *s);
/* Nonzero when s is a slot or sink name: [a-z0-9_]{1,max}. */
int cf_valid_name(const char *s, size_t max);
/* An identifier part of a table name: letters, digits, '_', '$' and UTF-8. */
int cf_valid_ident(const char *s, size_t n);
/* Parse a decimal integer; 0 or -1 when s is not one. */
int cf_parse_int(const char *s, long long *out);

/* ---- config.c ---- */

/* The options of sink s (sinks.NAME.statement_timeout_ms, lock_timeout_ms) from its mapping node, the
 * environment and the defaults. The caller checks the mapping's keys. */
int cf_load_sink_options(struct ctx *c, struct fy_node *node, int line, struct wc_sink_conf *s);

/* ---- projections.c ---- */

/* Load the sinks mapping in file order: name -> {type, dsn, rebuild}. */
int cf_load_sinks(struct ctx *c, struct fy_node *node, int line);
/* Load the projections mapping: each one's rules go to its sink. */
int cf_load_projections(struct ctx *c, struct fy_node *node, int line);
struct wc_sink_conf *cf_find_sink(struct wc_config *cfg, const char *name);
/* Build each sink's event type -> rules index. */
void cf_build_index(struct wc_config *cfg);
/* Build (free) one sink's index. */
void cf_index_sink(struct wc_sink_conf *s);
void cf_free_index(struct wc_sink_conf *s);
/* Free the sinks, their rules and indexes. */
void cf_free_sinks(struct wc_config *cfg);

/* ---- owns.c ---- */

/* Record projection name (of sink index sink) and what its mapping v declares it owns (tables, keys). */
int cf_load_owns(struct ctx *c, const char *name, struct fy_node *v, int pline, int sink);
/* No two projections of a sink own the same table or overlapping key patterns: 0 or -1 with err. */
int cf_check_owns(struct ctx *c);
void cf_free_owns(struct wc_config *cfg);

/* ---- redis_cmds.c ---- */

/* Check a redis command action against the allow-list and fill its kinds (lines[i]: argument i's line). */
int cf_redis_check_cmd(struct ctx *c, struct wc_redis_cmd *cmd, const char *akey, const int *lines);
/* Check a script action's keys (kline: the line of its keys list) and fill its kinds. */
int cf_redis_check_script(struct ctx *c, struct wc_redis_cmd *cmd, const char *akey, int kline);
/* In a Redis Cluster an action runs in one hash slot: the literal keys of cmd (the others are checked as
 * they are rendered) must share one. 0, or -1 with the error at line. */
int cf_redis_check_slots(struct ctx *c, const struct wc_redis_cmd *cmd, const char *akey, int line);

#endif
