/* config.h - the YAML configuration file, loaded once and read-only afterwards. */
#ifndef WALCAST_CONFIG_H
#define WALCAST_CONFIG_H

#include <stddef.h>

#include "walcast/err.h"
#include "walcast/event.h"
#include "walcast/template.h"

enum wc_policy { WC_POLICY_DEAD_LETTER, WC_POLICY_SKIP, WC_POLICY_HALT };
enum wc_sink_type { WC_SINK_POSTGRES, WC_SINK_REDIS };

/* One SQL statement of a PostgreSQL action: $1..$n bound from params (bare templates). */
struct wc_pg_stmt {
    char *sql;
    int nparams;
    struct wc_tmpl **params;
    int line;
};

/*
 * What each argument of a Redis action is, checked when the configuration is loaded (config/redis_cmds.c)
 * and again on each rendered value (wc_redis_arg_ok): the command name, a key, a keyword, any value, or a
 * number in the form Redis parses it.
 */
enum wc_redis_arg {
    WC_RA_NAME = 'C',    /* the command name (a literal from the allow-list) */
    WC_RA_KEY = 'K',     /* a key (never one of walcast's own "walcast:" names) */
    WC_RA_WORD = 'O',    /* an option keyword, or a literal such as XADD's "*" */
    WC_RA_VALUE = 'V',   /* any value */
    WC_RA_INT = 'I',     /* a 64-bit integer as Redis reads one ("-12"; no "+", blanks or leading zeros) */
    WC_RA_POSINT = 'P',  /* an integer above 0 */
    WC_RA_NATURAL = 'N', /* an integer of 0 or more */
    WC_RA_FLOAT = 'F',   /* a float as Redis reads one (inf and -inf included, nan never) */
    WC_RA_FINITE = 'f',  /* a finite float (an increment: inf could make a score nan) */
    WC_RA_RANGE = 'R',   /* a score range bound: a float, "(" then a float, -inf or +inf */
};

/* How a command changes its key, for the checks a Redis event makes before its first write. */
enum wc_redis_effect {
    WC_RE_WRITE,  /* the key holds (or comes to hold) the command's type */
    WC_RE_DELETE, /* the key is gone afterwards (DEL, UNLINK) */
    WC_RE_KEEP,   /* the key keeps whatever it holds (EXPIRE, PERSIST) */
};

/* Counters whose stored value must parse before the command runs (else it fails after other writes). */
enum wc_redis_check {
    WC_RC_NONE,
    WC_RC_INCR,   /* INCR, INCRBY, DECR, DECRBY: the string is an integer and stays in range */
    WC_RC_INCRF,  /* INCRBYFLOAT: the string is a float and the sum stays finite */
    WC_RC_HINCR,  /* HINCRBY: the field is an integer and stays in range */
    WC_RC_HINCRF, /* HINCRBYFLOAT: the field is a float and the sum stays finite */
};

/* One Redis command (argv[0] is the command name), or a Lua script; every action of an event type runs in
 * one generated script (sinks/redis/script.c). */
struct wc_redis_cmd {
    int argc;
    struct wc_tmpl **argv; /* the command and its arguments; for a script: keys then args */
    char *script;          /* Lua source, or NULL for a plain command */
    int nkeys;             /* for a script: how many of argv are keys */
    int line;
    /* Filled by the loader from its allow-list (plain commands) or the keys/args lists (scripts): */
    char *kinds;      /* one enum wc_redis_arg per argv entry */
    const char *name; /* the command in upper case (static), NULL for a script */
    const char *type; /* the type its keys must hold ("zset", "hash", ...), NULL = any (SET, DEL) */
    int effect;       /* enum wc_redis_effect */
    int check;        /* enum wc_redis_check */
};

/* Whether a rendered value fits its kind (enum wc_redis_arg); a key is checked for walcast's prefix. */
int wc_redis_arg_ok(int kind, const char *s, size_t len);

/* The actions of one projection for one event type on one sink, in configuration order. */
struct wc_rule {
    char *projection; /* the projection's name, for messages */
    char *event_type;
    int nstmt;
    struct wc_pg_stmt *stmts; /* postgres sink */
    int ncmd;
    struct wc_redis_cmd *cmds; /* redis sink */
    int line;
};

struct wc_sink_conf {
    char *name;
    int type;      /* enum wc_sink_type */
    char *dsn;     /* postgres: conninfo or URI; redis: redis://[:password@]host:port[/db], or with cluster
                      the seed nodes redis://[:password@]host:port[,host:port...] */
    int cluster;   /* redis: a Redis Cluster (sinks/redis/cluster.h); 0 = one server */
    char *rebuild; /* how to wipe the projections before a rebuild: SQL (postgres), "flushdb" (redis);
                      NULL = a sink that lost data stops the engine instead */
    int statement_timeout_ms; /* a statement (postgres) or a reply (redis) may take this long (30000) */
    int lock_timeout_ms;      /* postgres: a statement may wait this long for a lock (10000; 0 = no limit) */
    int nrule;
    struct wc_rule *rules;
    int line;
    void *index; /* private to config.c: event type -> rules */
};

/*
 * What a projection owns (config/owns.c): the tables a PostgreSQL projection writes (projections.NAME.tables)
 * or the key patterns of a Redis one (projections.NAME.keys: glob patterns with "*" and "?"). A rebuild
 * builds these beside the live ones and swaps them in; no two projections of a sink own the same.
 */
struct wc_projection {
    char *name;
    int sink; /* index into cfg->sinks */
    int ntables;
    char **tables; /* "table" or "schema.table" */
    int nkeys;
    char **keys;
    int rebuild_auto; /* projections.NAME.rebuild: auto (new or changed: rebuilt at start); 0 = manual */
    int line;
};

struct wc_config {
    char *path;
    /* source */
    char *source_dsn; /* may be "" : libpq's PG* environment variables then apply */
    char *slot;
    char *outbox_schema;
    char *outbox_table;
    char *columns[WC_COL_COUNT]; /* "" = the outbox has no such column */
    char *outbox_order_by;  /* rebuilds replay in this order (columns, comma-separated); NULL = event_id */
    char *msg_prefix;       /* logical-message prefix (default "walcast") */
    int status_interval_ms; /* standby status updates at least this often (default 1000) */
    /* engine */
    int batch_max_events;   /* default 1000 */
    size_t batch_max_bytes; /* default 4 MiB */
    int batch_max_delay_ms; /* default 5 */
    int on_unknown_event;   /* enum wc_policy, default dead_letter */
    int on_error;           /* enum wc_policy, default dead_letter */
    char *dead_letter_sink; /* the sink whose store takes unknown events (default: the first) */
    char *log_level;
    char *log_format;          /* engine.log_format: plain | json (default plain) */
    int progress_interval_ms;  /* engine.progress_interval_ms: progress lines while behind (5000) */
    int heartbeat_interval_ms; /* engine.heartbeat_interval_ms: 0 = off (default 10000) */
    int retry_base_ms;         /* engine.retry_base_ms: first reconnect delay (default 100) */
    int retry_max_ms;          /* engine.retry_max_ms: reconnect delay ceiling (default 10000) */
    int retry_max_attempts;    /* engine.retry_max_attempts: per outage, 0 = forever (default 0) */
    int dead_letter_max;       /* engine.dead_letter_max: dead letters kept per sink, 0 = all (100000) */
    /* metrics: the HTTP endpoint and the slot's WAL retention (docs/operations.md) */
    char *metrics_listen;            /* metrics.listen: host:port of /metrics, /healthz, /readyz; "" = off */
    int slot_poll_interval_ms;       /* metrics.slot_poll_interval_ms: slot figures this often (10000) */
    int retention_warn_percent;      /* share of max_slot_wal_keep_size retained: a warning (50) */
    int retention_critical_percent;  /* ... and a critical warning (80) */
    size_t retention_warn_bytes;     /* with max_slot_wal_keep_size = -1: a warning above this (1 GiB) */
    size_t retention_critical_bytes; /* ... and a critical warning (4 GiB) */
    int forecast_warn_seconds;       /* a warning when the slot would be lost within this (3600; 0 = off) */
    int nsink;
    struct wc_sink_conf *sinks;
    int nprojection; /* in file order */
    struct wc_projection *projections;
};

/*
 * Load and validate FILE, then apply WALCAST_* environment overrides. Returns a new config (free with
 * wc_config_free) or NULL with err: WC_ERR_CONFIG, "FILE:LINE: key \"a.b\": what is wrong".
 * path may be NULL: an empty configuration filled only from defaults and the environment.
 */
struct wc_config *wc_config_load(const char *path, struct wc_err *err);
void wc_config_free(struct wc_config *cfg);

/* The rules of sink for event_type (borrowed array of pointers), *n set; NULL and 0 when none. */
struct wc_rule *const *wc_config_rules(const struct wc_sink_conf *sink, const char *event_type, int *n);
/* Nonzero when any sink has a rule for event_type. */
int wc_config_knows_event(const struct wc_config *cfg, const char *event_type);

const char *wc_policy_name(int policy);

/* A fingerprint of projection p's definition (its event types and actions, in order): 16 hex digits. */
void wc_projection_fingerprint(const struct wc_config *cfg, const struct wc_projection *p, char out[17]);
/* The projection called name (borrowed), or NULL. */
const struct wc_projection *wc_config_projection(const struct wc_config *cfg, const char *name);
/*
 * A sink of its own for a rebuild: a copy of sink sc named name whose rules are only those of the
 * projections in names (n of them), in configuration order, with its own index. The rules' statements,
 * commands and templates are sc's (borrowed: sc must outlive it). Free with wc_sink_conf_subset_free.
 */
struct wc_sink_conf *wc_sink_conf_subset(const struct wc_sink_conf *sc, const char *name,
                                         const char *const *names, int n);
void wc_sink_conf_subset_free(struct wc_sink_conf *sub);
/* Nonzero when some key matches both glob patterns ("*" any run of characters, "?" one character). */
int wc_key_patterns_overlap(const char *a, const char *b);

/*
 * Set one scalar key ("source.slot", "source.outbox.table", "source.dsn") from a command-line option,
 * validated as the file's value would be. Returns 0, or -1 with err (WC_ERR_USAGE) "option OPTION: ...".
 */
int wc_config_set(struct wc_config *cfg, const char *key, const char *value, const char *option,
                  struct wc_err *err);
/* Parse "host:port", "[ipv6]:port" or ":port" (host "" = every address). 0, or -1 when malformed. */
int wc_config_parse_listen(const char *s, char *host, size_t hostsize, int *port);

#endif
