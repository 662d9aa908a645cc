/* redis_cmds.c - the Redis commands a projection may run: an allow-list of data commands, each with the
 * shape of its arguments, checked when the configuration is loaded; and the check of a rendered value. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_int.h"
#include "template_int.h"
#include "walcast/keyslot.h"

#define WALCAST_PREFIX "walcast:"
#define WALCAST_PREFIX_LEN 8

/*
 * One allowed command. After the key (every command has one; DEL and UNLINK take only keys) come the
 * options in pre (keywords, "MAXLEN=~N": a keyword with an argument of a kind, '~' allowing "~" or "="
 * before it), then the arguments in body (kinds of enum wc_redis_arg; '*' a literal "*"; a group in
 * parentheses repeats once or more), then the options in post. excl lists groups of options that
 * exclude each other (';' between groups). A command changes its key as effect says; check names the
 * stored value that must parse before it runs.
 */
struct spec {
    const char *name;
    const char *type;
    int all_keys;
    int effect;
    int check;
    const char *pre;
    const char *body;
    const char *post;
    const char *excl;
    const char *usage;
};

#define W WC_RE_WRITE
#define D WC_RE_DELETE
#define K WC_RE_KEEP
#define EXPIRE_OPTS "NX XX GT LT", "NX XX;NX GT;NX LT;GT LT"
static const struct spec specs[] = {
    /* strings */
    {"SET", NULL, 0, W, WC_RC_NONE, "", "V", "EX=P PX=P EXAT=P PXAT=P NX XX KEEPTTL",
     "NX XX;EX PX EXAT PXAT KEEPTTL", "SET key value [EX|PX|EXAT|PXAT n] [NX|XX] [KEEPTTL]"},
    {"APPEND", "string", 0, W, WC_RC_NONE, "", "V", "", "", "APPEND key value"},
    {"INCR", "string", 0, W, WC_RC_INCR, "", "", "", "", "INCR key"},
    {"DECR", "string", 0, W, WC_RC_INCR, "", "", "", "", "DECR key"},
    {"INCRBY", "string", 0, W, WC_RC_INCR, "", "I", "", "", "INCRBY key integer"},
    {"DECRBY", "string", 0, W, WC_RC_INCR, "", "I", "", "", "DECRBY key integer"},
    {"INCRBYFLOAT", "string", 0, W, WC_RC_INCRF, "", "f", "", "", "INCRBYFLOAT key number"},
    /* keys */
    {"DEL", NULL, 1, D, WC_RC_NONE, "", "", "", "", "DEL key [key ...]"},
    {"UNLINK", NULL, 1, D, WC_RC_NONE, "", "", "", "", "UNLINK key [key ...]"},
    {"EXPIRE", NULL, 0, K, WC_RC_NONE, "", "I", EXPIRE_OPTS, "EXPIRE key seconds [NX|XX|GT|LT]"},
    {"PEXPIRE", NULL, 0, K, WC_RC_NONE, "", "I", EXPIRE_OPTS, "PEXPIRE key milliseconds [NX|XX|GT|LT]"},
    {"EXPIREAT", NULL, 0, K, WC_RC_NONE, "", "I", EXPIRE_OPTS, "EXPIREAT key unix-seconds [NX|XX|GT|LT]"},
    {"PEXPIREAT", NULL, 0, K, WC_RC_NONE, "", "I", EXPIRE_OPTS, "PEXPIREAT key unix-ms [NX|XX|GT|LT]"},
    {"PERSIST", NULL, 0, K, WC_RC_NONE, "", "", "", "", "PERSIST key"},
    /* hashes */
    {"HSET", "hash", 0, W, WC_RC_NONE, "", "(VV)", "", "", "HSET key field value [field value ...]"},
    {"HSETNX", "hash", 0, W, WC_RC_NONE, "", "VV", "", "", "HSETNX key field value"},
    {"HDEL", "hash", 0, W, WC_RC_NONE, "", "(V)", "", "", "HDEL key field [field ...]"},
    {"HINCRBY", "hash", 0, W, WC_RC_HINCR, "", "VI", "", "", "HINCRBY key field integer"},
    {"HINCRBYFLOAT", "hash", 0, W, WC_RC_HINCRF, "", "Vf", "", "", "HINCRBYFLOAT key field number"},
    /* sorted sets */
    {"ZADD", "zset", 0, W, WC_RC_NONE, "NX XX GT LT CH", "(FV)", "", "NX XX;NX GT;NX LT;GT LT",
     "ZADD key [NX|XX] [GT|LT] [CH] score member [score member ...]"},
    {"ZINCRBY", "zset", 0, W, WC_RC_NONE, "", "fV", "", "", "ZINCRBY key increment member"},
    {"ZREM", "zset", 0, W, WC_RC_NONE, "", "(V)", "", "", "ZREM key member [member ...]"},
    {"ZREMRANGEBYSCORE", "zset", 0, W, WC_RC_NONE, "", "RR", "", "", "ZREMRANGEBYSCORE key min max"},
    {"ZREMRANGEBYRANK", "zset", 0, W, WC_RC_NONE, "", "II", "", "", "ZREMRANGEBYRANK key start stop"},
    /* sets */
    {"SADD", "set", 0, W, WC_RC_NONE, "", "(V)", "", "", "SADD key member [member ...]"},
    {"SREM", "set", 0, W, WC_RC_NONE, "", "(V)", "", "", "SREM key member [member ...]"},
    /* lists */
    {"LPUSH", "list", 0, W, WC_RC_NONE, "", "(V)", "", "", "LPUSH key value [value ...]"},
    {"RPUSH", "list", 0, W, WC_RC_NONE, "", "(V)", "", "", "RPUSH key value [value ...]"},
    {"LPUSHX", "list", 0, W, WC_RC_NONE, "", "(V)", "", "", "LPUSHX key value [value ...]"},
    {"RPUSHX", "list", 0, W, WC_RC_NONE, "", "(V)", "", "", "RPUSHX key value [value ...]"},
    {"LREM", "list", 0, W, WC_RC_NONE, "", "IV", "", "", "LREM key count value"},
    {"LTRIM", "list", 0, W, WC_RC_NONE, "", "II", "", "", "LTRIM key start stop"},
    /* streams */
    {"XADD", "stream", 0, W, WC_RC_NONE, "NOMKSTREAM MAXLEN=~N", "*(VV)", "", "",
     "XADD key [NOMKSTREAM] [MAXLEN [~|=] n] * field value [field value ...]"},
};
#undef W
#undef D
#undef K

/* Commands refused by kind, so that the message says why rather than only "not allowed". */
static const struct {
    const char *why;
    const char *names;
} refused[] = {
    {"a transaction command (walcast wraps each batch in its own MULTI/EXEC)",
     " MULTI EXEC DISCARD WATCH UNWATCH "},
    {"a database command (the sink's database is its dsn's)", " SELECT SWAPDB MOVE COPY "},
    {"a key-space-wide command",
     " FLUSHALL FLUSHDB KEYS SCAN RANDOMKEY DBSIZE RENAME RENAMENX MIGRATE RESTORE SORT OBJECT WAIT "},
    {"a script-management command (write a script action instead: {script, keys, args})",
     " EVAL EVALSHA EVAL_RO EVALSHA_RO SCRIPT FUNCTION FCALL FCALL_RO "},
    {"a server command",
     " CONFIG SHUTDOWN DEBUG SAVE BGSAVE BGREWRITEAOF REPLICAOF SLAVEOF CLIENT ACL MODULE FAILOVER CLUSTER "
     "MONITOR SYNC PSYNC INFO SLOWLOG LATENCY MEMORY RESET AUTH HELLO QUIT PUBLISH SPUBLISH SUBSCRIBE "},
};

static int is_word(const char *list, const char *w, size_t n)
{
    for (const char *p = list; *p;) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ' ')
            e++;
        if ((size_t)(e - p) == n && n > 0 && strncasecmp(p, w, n) == 0)
            return 1;
        p = e;
    }
    return 0;
}

/* ---- values ---- */

/* An integer as Redis' string2ll reads it: "0", or an optional '-' and digits without a leading zero,
 * within 64 bits. */
static int int_ok(const char *s, size_t len, int *negative)
{
    size_t i = 0, nd;

    *negative = 0;
    if (len == 1 && s[0] == '0')
        return 1;
    if (len > 0 && s[0] == '-')
        *negative = 1, i = 1;
    nd = len - i;
    if (nd == 0 || nd > 19 || s[i] < '1' || s[i] > '9')
        return 0;
    for (size_t k = i; k < len; k++)
        if (!isdigit((unsigned char)s[k]))
            return 0;
    if (nd == 19) {
        const char *max = *negative ? "9223372036854775808" : "9223372036854775807";
        if (memcmp(s + i, max, 19) > 0)
            return 0;
    }
    return 1;
}

/* A float as Redis' string2d reads it: strtod over the whole text, no leading blank, no nan, no overflow
 * or underflow. *finite is set. Plain decimals are read without strtod. */
static int float_ok(const char *s, size_t len, int *finite)
{
    size_t i = 0, d;
    char tmp[512], *end;
    double v;

    *finite = 1;
    if (len > 0 && s[0] == '-')
        i = 1;
    d = i;
    while (i < len && isdigit((unsigned char)s[i]))
        i++;
    if (i > d && i - d <= 300) {
        if (i == len)
            return 1;
        if (s[i] == '.') {
            size_t f = ++i;
            while (i < len && isdigit((unsigned char)s[i]))
                i++;
            if (i == len && i > f)
                return 1;
        }
    }
    if (len == 0 || len >= sizeof(tmp) || isspace((unsigned char)s[0]))
        return 0;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    errno = 0;
    v = strtod(tmp, &end);
    if ((size_t)(end - tmp) != len || isnan(v) ||
        (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL || fpclassify(v) == FP_ZERO)))
        return 0;
    *finite = isfinite(v);
    return 1;
}

int wc_redis_arg_ok(int kind, const char *s, size_t len)
{
    int neg, fin;

    switch (kind) {
    case WC_RA_KEY:
        return !(len >= WALCAST_PREFIX_LEN && memcmp(s, WALCAST_PREFIX, WALCAST_PREFIX_LEN) == 0);
    case WC_RA_INT:
        return int_ok(s, len, &neg);
    case WC_RA_POSINT:
        return int_ok(s, len, &neg) && !neg && !(len == 1 && s[0] == '0');
    case WC_RA_NATURAL:
        return int_ok(s, len, &neg) && !neg;
    case WC_RA_FLOAT:
        return float_ok(s, len, &fin);
    case WC_RA_FINITE:
        return float_ok(s, len, &fin) && fin;
    case WC_RA_RANGE:
        if (len > 0 && s[0] == '(')
            s++, len--;
        return float_ok(s, len, &fin);
    default:
        return 1;
    }
}

/* For messages: what a kind of argument must be. */
static const char *kind_name(int kind)
{
    switch (kind) {
    case WC_RA_INT:
        return "an integer";
    case WC_RA_POSINT:
        return "an integer above 0";
    case WC_RA_NATURAL:
        return "an integer of 0 or more";
    case WC_RA_FLOAT:
        return "a number";
    case WC_RA_FINITE:
        return "a finite number";
    case WC_RA_RANGE:
        return "a score bound (a number, \"(\" and a number, -inf or +inf)";
    default:
        return "a value";
    }
}

/* ---- loading ---- */

/*
 * A key template may not name walcast's own keys (its cursor, dead letters): one that starts with text
 * of that namespace ("walcast:x", "wal{payload.k}") is refused here; one that starts with a placeholder
 * is checked on each rendered key (wc_redis_arg_ok).
 */
static int check_key(struct ctx *c, const struct wc_tmpl *t, int line, const char *ikey)
{
    const char *s;
    size_t n;

    tp_literal(t, &s, &n);
    if (n == 0)
        return 0;
    if ((n >= WALCAST_PREFIX_LEN && memcmp(s, WALCAST_PREFIX, WALCAST_PREFIX_LEN) == 0) ||
        (n < WALCAST_PREFIX_LEN && memcmp(s, WALCAST_PREFIX, n) == 0))
        return cf_fail(
            c, line, ikey,
            "key \"%s\" could fall into walcast's own names (\"walcast:...\": cursor, dead letters): "
            "choose another prefix",
            wc_tmpl_source(t));
    return 0;
}

/* The literal text of argument i (NULL when it has a placeholder). */
static const char *literal(const struct wc_redis_cmd *cmd, int i, size_t *n)
{
    const char *s;

    return tp_literal(cmd->argv[i], &s, n) ? s : NULL;
}

/* Match keyword option i against list ("EX=P MAXLEN=~N"); returns the number of arguments it takes (1 for
 * a bare keyword, 2 or 3 with its argument), 0 when it is none of them. kinds are filled. */
static int match_option(const struct wc_redis_cmd *cmd, int i, const char *list, char *used, size_t usedsize)
{
    size_t n;
    const char *w = literal(cmd, i, &n);

    if (w == NULL)
        return 0;
    for (const char *p = list; *p;) {
        while (*p == ' ')
            p++;
        const char *e = p, *eq;
        while (*e && *e != ' ')
            e++;
        eq = memchr(p, '=', (size_t)(e - p));
        size_t kl = eq ? (size_t)(eq - p) : (size_t)(e - p);
        if (kl > 0 && kl == n && strncasecmp(p, w, n) == 0) {
            int k = i + 1;
            cmd->kinds[i] = WC_RA_WORD;
            snprintf(used + strlen(used), usedsize - strlen(used), " %.*s ", (int)kl, p);
            if (eq == NULL)
                return 1;
            const char *a = eq + 1;
            if (*a == '~') {
                size_t tl;
                const char *t = k < cmd->argc ? literal(cmd, k, &tl) : NULL;
                if (t && tl == 1 && (t[0] == '~' || t[0] == '='))
                    cmd->kinds[k++] = WC_RA_WORD;
                a++;
            }
            if (k >= cmd->argc)
                return -1;
            cmd->kinds[k] = *a;
            return k - i + 1;
        }
        p = e;
    }
    return 0;
}

/* Two options of one exclusive group among the used ones ("NX XX;EX PX"); names them into a and b. */
static int excluded(const char *excl, const char *used, char *a, char *b)
{
    char grp[128];

    for (const char *p = excl; *p;) {
        const char *e = strchr(p, ';');
        size_t gl = e ? (size_t)(e - p) : strlen(p);
        int found = 0;
        snprintf(grp, sizeof(grp), "%.*s", (int)gl, p);
        for (char *w = strtok(grp, " "); w; w = strtok(NULL, " ")) {
            char pat[40];
            snprintf(pat, sizeof(pat), " %s ", w);
            if (strstr(used, pat) == NULL)
                continue;
            snprintf(found++ ? b : a, 40, "%s", w);
            if (found == 2)
                return 1;
        }
        p += gl + (e != NULL);
    }
    return 0;
}

static int count_wrong(struct ctx *c, const struct spec *sp, int line, const char *akey)
{
    return cf_fail(c, line, akey, "wrong number of arguments for %s (expected %s)", sp->name, sp->usage);
}

/*
 * Check a command action against the allow-list: the name is a literal of it; the arguments fit its
 * shape; literal keys and numbers are valid. lines[i] is the line of argument i. Fills cmd's kinds,
 * name, type, effect and check. 0, or -1 with the error naming file, line and key.
 */
int cf_redis_check_cmd(struct ctx *c, struct wc_redis_cmd *cmd, const char *akey, const int *lines)
{
    char ikey[KEYLEN], used[256] = " ";
    const struct spec *sp = NULL;
    size_t n;
    const char *name = literal(cmd, 0, &n);
    int i;

    cf_mkkey(ikey, "%s[0]", akey);
    if (name == NULL)
        return cf_fail(c, lines[0], ikey,
                       "the redis command must be written out, not a template (\"%s\"): a payload must not "
                       "choose the command",
                       wc_tmpl_source(cmd->argv[0]));
    for (size_t k = 0; k < sizeof(specs) / sizeof(specs[0]) && sp == NULL; k++)
        if (strlen(specs[k].name) == n && strncasecmp(specs[k].name, name, n) == 0)
            sp = &specs[k];
    if (sp == NULL) {
        char list[1024] = "";
        for (size_t k = 0; k < sizeof(specs) / sizeof(specs[0]); k++)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", k ? " " : "", specs[k].name);
        for (size_t k = 0; k < sizeof(refused) / sizeof(refused[0]); k++)
            if (is_word(refused[k].names, name, n))
                return cf_fail(c, lines[0], ikey,
                               "redis command \"%s\" is not allowed in a projection: it is %s", name,
                               refused[k].why);
        return cf_fail(c, lines[0], ikey,
                       "redis command \"%s\" is not one of the data commands walcast runs (%s)", name, list);
    }
    cmd->name = sp->name;
    cmd->type = sp->type;
    cmd->effect = sp->effect;
    cmd->check = sp->check;
    cmd->kinds = wc_xcalloc((size_t)cmd->argc + 1, 1);
    memset(cmd->kinds, WC_RA_VALUE, (size_t)cmd->argc);
    cmd->kinds[0] = WC_RA_NAME;
    if (cmd->argc < 2)
        return count_wrong(c, sp, lines[0], akey);
    cmd->kinds[1] = WC_RA_KEY;
    i = 2;
    if (sp->all_keys) {
        for (; i < cmd->argc; i++)
            cmd->kinds[i] = WC_RA_KEY;
    } else {
        /* options before the body */
        for (int m; i < cmd->argc && (m = match_option(cmd, i, sp->pre, used, sizeof(used))) != 0; i += m)
            if (m < 0)
                return count_wrong(c, sp, lines[0], akey);
        /* the body: fixed arguments, then a group repeated once or more */
        const char *g = strchr(sp->body, '(');
        size_t fixed = g ? (size_t)(g - sp->body) : strlen(sp->body);
        for (size_t k = 0; k < fixed; k++, i++) {
            if (i >= cmd->argc)
                return count_wrong(c, sp, lines[0], akey);
            if (sp->body[k] == '*') {
                const char *t = literal(cmd, i, &n);
                cf_mkkey(ikey, "%s[%d]", akey, i);
                if (t == NULL || n != 1 || t[0] != '*')
                    return cf_fail(c, lines[i], ikey,
                                   "%s takes \"*\" here (walcast lets redis choose the id): %s", sp->name,
                                   sp->usage);
                cmd->kinds[i] = WC_RA_WORD;
            } else {
                cmd->kinds[i] = sp->body[k];
            }
        }
        if (g != NULL) {
            size_t glen = strlen(g) - 2; /* "(FV)" */
            int rest = cmd->argc - i;
            if (rest <= 0 || (size_t)rest % glen != 0)
                return count_wrong(c, sp, lines[0], akey);
            for (int k = 0; i < cmd->argc; i++, k++)
                cmd->kinds[i] = g[1 + (size_t)k % glen];
        }
        /* options after it */
        while (i < cmd->argc) {
            int m = match_option(cmd, i, sp->post, used, sizeof(used));
            cf_mkkey(ikey, "%s[%d]", akey, i);
            if (m == 0)
                return literal(cmd, i, &n) == NULL || sp->post[0] == '\0'
                           ? count_wrong(c, sp, lines[0], akey)
                           : cf_fail(c, lines[i], ikey, "unknown option \"%s\" for %s (expected %s)",
                                     wc_tmpl_source(cmd->argv[i]), sp->name, sp->usage);
            if (m < 0)
                return count_wrong(c, sp, lines[0], akey);
            i += m;
        }
    }
    char a[40], b[40];
    if (sp->excl[0] && excluded(sp->excl, used, a, b))
        return cf_fail(c, lines[0], akey, "%s options %s and %s exclude each other", sp->name, a, b);
    /* keys, and literal numbers, now */
    for (i = 1; i < cmd->argc; i++) {
        const char *t = literal(cmd, i, &n);
        cf_mkkey(ikey, "%s[%d]", akey, i);
        if (cmd->kinds[i] == WC_RA_KEY && check_key(c, cmd->argv[i], lines[i], ikey) < 0)
            return -1;
        if (t != NULL && cmd->kinds[i] != WC_RA_KEY && !wc_redis_arg_ok(cmd->kinds[i], t, n))
            return cf_fail(c, lines[i], ikey, "argument %d of %s must be %s, got \"%s\"", i, sp->name,
                           kind_name(cmd->kinds[i]), wc_tmpl_source(cmd->argv[i]));
    }
    return 0;
}

/* A script action: its keys are keys (never walcast's), its args any value. kline/aline: the lines of its
 * keys and args lists. */
int cf_redis_check_script(struct ctx *c, struct wc_redis_cmd *cmd, const char *akey, int kline)
{
    char ikey[KEYLEN];

    cmd->kinds = wc_xcalloc((size_t)cmd->argc + 1, 1);
    memset(cmd->kinds, WC_RA_VALUE, (size_t)cmd->argc);
    for (int i = 0; i < cmd->nkeys; i++) {
        cmd->kinds[i] = WC_RA_KEY;
        cf_mkkey(ikey, "%s.keys[%d]", akey, i);
        if (check_key(c, cmd->argv[i], kline, ikey) < 0)
            return -1;
    }
    cmd->effect = WC_RE_KEEP;
    return 0;
}

int cf_redis_check_slots(struct ctx *c, const struct wc_redis_cmd *cmd, const char *akey, int line)
{
    const char *first = NULL, *t;
    size_t flen = 0, n;
    int slot = -1;

    for (int i = 0; i < cmd->argc; i++) {
        if (cmd->kinds[i] != WC_RA_KEY || !wc_tmpl_literal(cmd->argv[i], &t, &n))
            continue;
        int s = wc_keyslot(t, n);
        if (first == NULL) {
            first = t, flen = n, slot = s;
        } else if (s != slot) {
            return cf_fail(c, line, akey,
                           "%s keys \"%.*s\" and \"%.*s\" are in hash slots %d and %d: a redis cluster runs "
                           "an action in one hash slot; give the keys a common {hash tag}",
                           cmd->name ? cmd->name : "script", (int)flen, first, (int)n, t, slot, s);
        }
    }
    return 0;
}
