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

/* One Redis command (argv[0] is the command name), or a Lua script run with EVALSHA. */
struct wc_redis_cmd {
    int argc;
    struct wc_tmpl **argv; /* the command and its arguments; for a script: keys then args */
    char *script;          /* Lua source, or NULL for a plain command */
    int nkeys;             /* for a script: how many of argv are keys */
    int line;
};

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
    char *dsn;     /* postgres: conninfo or URI; redis: redis://[:password@]host:port[/db] */
    char *rebuild; /* how to wipe the projections before a rebuild: SQL (postgres), "flushdb" (redis);
                      NULL = a sink that lost data stops the engine instead */
    int nrule;
    struct wc_rule *rules;
    int line;
    void *index; /* private to config.c: event type -> rules */
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
    int heartbeat_interval_ms; /* engine.heartbeat_interval_ms: 0 = off (default 10000) */
    int retry_base_ms;         /* engine.retry_base_ms: first reconnect delay (default 100) */
    int retry_max_ms;          /* engine.retry_max_ms: reconnect delay ceiling (default 10000) */
    int retry_max_attempts;    /* engine.retry_max_attempts: per outage, 0 = forever (default 0) */
    int nsink;
    struct wc_sink_conf *sinks;
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

#endif
