/*
 * script.c - the Lua script generated for each event type of a Redis sink: every action of the type in
 * one script, so that an event is applied whole or not at all (redis.h tells how a batch travels).
 *
 * What a script takes, per event (queue.c formats it):
 *   KEYS[1]     the dead-letter stream;  with mode "h" also KEYS[2] the cursor hash, KEYS[3] the halt key
 *   KEYS[kb+i]  the keys of the actions, in order (kb = 3 for mode "h", else 1)
 *   ARGV[1]     the mode: "d" dead-letter, "s" skip, "h" halt (the on_error policy), "r" dlq retry
 *   ARGV[2..b]  for "d": lsn, idx, event_id, event_type, aggregate_type, aggregate_id, payload (b = 8);
 *               for "r": the same and the id of the dead letter retried (b = 9);
 *               for "h": the cursor to store when the event fails whole ("" = leave it) and the event's
 *               own position (b = 3); for "s": nothing (b = 1)
 *   ARGV[b+i]   the rendered values of the actions that are not literals (literals are in the script)
 * It returns 0 when the event was applied, {applied, error} when it was not (applied: how many of its
 * actions took effect before a write failed; 0 after a failed check), or "halted" when an earlier event
 * of the unit halted it.
 *
 * In a Redis Cluster (sinks/redis/csink.h) a script runs on one hash slot S, for the actions of the event
 * whose keys are in S (its "part"): KEYS[1..3] are always S's dead-letter stream, cursor hash (in mode "r"
 * the retry marker of the part instead) and halt key; the halt check is always made; the last ARGV is the
 * mask, one byte per action of the type, "1" for the actions of this part (the others' KEYS are S's halt
 * key, a stand-in never touched); a dead letter records the mask; in mode "r" the part is refused when its
 * marker exists ("retried") and sets the marker when it took effect (the dead letter is removed by the
 * driver once every part has).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"
#include "walcast/log.h"
#include "walcast/template.h"

/* ---- the fixed scripts ---- */

static const char dead_letter_lua[] =
    "-- walcast: a dead letter found while queueing (KEYS: stream, halt key; ARGV: maxlen, fields...)\n"
    "if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end\n"
    "local f = {'XADD', KEYS[1]}\n"
    "if ARGV[1] ~= '0' then f[3] = 'MAXLEN'; f[4] = '~'; f[5] = ARGV[1] end\n"
    "f[#f + 1] = '*'\n"
    "for i = 2, #ARGV do f[#f + 1] = ARGV[i] end\n"
    "return redis.call(unpack(f))\n";

static const char guard_lua[] =
    "-- walcast: the guard of a unit in a redis cluster (KEYS: cursor hash, halt key; ARGV: sink, the\n"
    "-- cursor walcast stored there last, \"\" for none): a slot whose cursor is not that one lost writes\n"
    "-- (a failover to a replica without them); then nothing of the unit is applied\n"
    "local c = redis.call('HGET', KEYS[1], ARGV[1]) or ''\n"
    "if c ~= ARGV[2] then redis.call('SET', KEYS[2], '1') return {'lost', c} end\n"
    "return 0\n";

static const char cursor_lua[] =
    "-- walcast: the cursor of a unit, unless an event of it halted (KEYS: cursor hash, halt key, and\n"
    "-- the applied hash (also the channel) when the position is published; ARGV: HSET or HSETNX, sink,\n"
    "-- cursor, the applied-through LSN)\n"
    "if redis.call('DEL', KEYS[2]) == 1 then return 0 end\n"
    "if KEYS[3] then\n"
    "  redis.call('HSET', KEYS[3], ARGV[2], ARGV[4])\n"
    "  redis.call('PUBLISH', KEYS[3], ARGV[2] .. ' ' .. ARGV[4])\n"
    "end\n"
    "return redis.call(ARGV[1], KEYS[1], ARGV[2], ARGV[3])\n";

const char *redis_fixed_script(int i)
{
    return i == FIXED_DEAD_LETTER ? dead_letter_lua : i == FIXED_GUARD ? guard_lua : cursor_lua;
}

/* ---- generating ---- */

/* A Lua string literal: bytes outside a safe set as decimal escapes. */
static void lua_str(struct wc_buf *b, const char *s, size_t len)
{
    wc_buf_append(b, "'", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr(" _-:.,/@#*+=()[]{}<>!?$%&|^~", c) != NULL)
            wc_buf_append(b, (const char *)&c, 1);
        else
            wc_buf_printf(b, "\\%03u", c);
    }
    wc_buf_append(b, "'", 1);
}

/* What every script starts with: its mode, where its keys and values start, the halt check, and the
 * type each key holds as the event's commands go (t). No closure is made unless a counter or a script
 * action needs one: a script runs once per event. */
static void gen_prologue(struct wc_buf *b, const char *sink, int counters, int hcounters, int scripts,
                         int cluster, int nargs)
{
    wc_buf_puts(b, "-- walcast: every action of one event type of sink ");
    lua_str(b, sink, strlen(sink));
    wc_buf_puts(b, " (generated: sinks/redis/script.c)\n"
                   "local m = ARGV[1]\n"
                   "local b = (m == 'd' and 8) or (m == 'r' and 9) or (m == 'h' and 3) or 1\n");
    if (cluster)
        wc_buf_printf(b,
                      "local kb = 3\n"
                      "if redis.call('EXISTS', KEYS[3]) == 1 then return 'halted' end\n"
                      "if m == 'r' and redis.call('EXISTS', KEYS[2]) == 1 then return 'retried' end\n"
                      "local mk, nd = ARGV[b + %d], 0\n",
                      nargs + 1);
    else
        wc_buf_puts(b, "local kb = (m == 'h' and 3) or 1\n"
                       "if m == 'h' and redis.call('EXISTS', KEYS[3]) == 1 then return 'halted' end\n");
    wc_buf_puts(b, "local t, why, done, x = {}, nil, 0, nil\n");
    if (scripts)
        wc_buf_puts(b, "local function emsg(e) if type(e) == 'table' then return e.err or '?' end return "
                       "tostring(e) end\n");
    if (counters || hcounters)
        wc_buf_puts(b, "local function int(x) if type(x) == 'number' then if x % 1 ~= 0 then return nil end "
                       "return x end if x == '0' then return 0 end if #x > 20 or not string.find(x, "
                       "'^%-?[1-9]%d*$') then return nil end return tonumber(x) end\n"
                       "local function add(x, d, float)\n"
                       "  if float then\n"
                       "    x = tonumber(x)\n"
                       "    if x == nil then return nil, 'ERR value is not a valid float' end\n"
                       "    x = x + d\n"
                       "    if x ~= x or x == math.huge or x == -math.huge then return nil, 'ERR increment "
                       "would produce NaN or Infinity' end\n"
                       "    return x\n"
                       "  end\n"
                       "  x = int(x)\n"
                       "  if x == nil then return nil, 'ERR value is not an integer or out of range' end\n"
                       "  x = x + d\n"
                       "  if x >= 9223372036854775807 or x < -9223372036854775808 then return nil, "
                       "'ERR increment or decrement would overflow' end\n"
                       "  return x\n"
                       "end\n"
                       "local v, gone = {}, {}\n");
    if (counters)
        wc_buf_puts(b,
                    "local function incr(k, d, float) local x = v[k] if x == nil then x = redis.call('GET', "
                    "k) or '0' end local e x, e = add(x, d, float) if x == nil then return e end v[k] = x "
                    "end\n");
    if (hcounters)
        wc_buf_puts(b,
                    "local h = {}\n"
                    "local function hincr(k, f, d, float) local i = k .. '\\0' .. f local x = h[i] if x == "
                    "nil then if gone[k] then x = '0' else x = redis.call('HGET', k, f) or '0' end end local "
                    "e x, e = add(x, d, float) if x == nil then return e end h[i] = x end\n");
}

/* The end: a failed event writes its dead letter (d, and r after a partial write), nothing (s), or the
 * cursor before it and the halt key (h); an applied one in dlq retry removes the dead letter it was. */
static void gen_epilogue(struct wc_buf *b, const char *sink, int max, int cluster)
{
    /* A retried part in a cluster marks itself done (KEYS[2]); the driver removes the dead letter once
     * every part has. One event alone removes its dead letter in the same script. */
    const char *retried = cluster
                              ? "if m == 'r' then redis.call('SET', KEYS[2], '1', 'PX', '604800000') end\n"
                              : "if m == 'r' then redis.call('XDEL', KEYS[1], ARGV[9]) end\n";

    wc_buf_puts(b, "if why then\n"
                   "  if m == 'd' or (m == 'r' and done > 0) then\n"
                   "    ");
    wc_buf_puts(b, retried);
    wc_buf_puts(b, "    local f = {'XADD', KEYS[1]}\n");
    if (max > 0)
        wc_buf_printf(b, "    f[3] = 'MAXLEN'; f[4] = '~'; f[5] = '%d'\n", max);
    wc_buf_puts(b, "    local v = {'*', 'sink', ");
    lua_str(b, sink, strlen(sink));
    wc_buf_puts(
        b, ", 'lsn', ARGV[2], 'idx', ARGV[3], 'event_id', ARGV[4], 'event_type', ARGV[5],\n"
           "      'aggregate_type', ARGV[6], 'aggregate_id', ARGV[7], 'payload', ARGV[8], 'error', why}\n"
           "    for i = 1, #v do f[#f + 1] = v[i] end\n"
           "    if done > 0 then f[#f + 1] = 'applied'; f[#f + 1] = tostring(done) end\n");
    if (cluster)
        wc_buf_puts(b, "    f[#f + 1] = 'mask'; f[#f + 1] = mk\n");
    wc_buf_puts(b, "    redis.call(unpack(f))\n"
                   "  elseif m == 'h' then\n"
                   "    local at = ARGV[2]\n"
                   "    if done > 0 then at = ARGV[3] end\n"
                   "    if at ~= '' then redis.call('HSET', KEYS[2], ");
    lua_str(b, sink, strlen(sink));
    wc_buf_puts(b, ", at) end\n"
                   "    redis.call('SET', KEYS[3], '1')\n"
                   "  end\n"
                   "  return {done, why}\n"
                   "end\n");
    wc_buf_puts(b, retried);
    wc_buf_puts(b, "return 0\n");
}

/* The Lua expression of argument i of cmd: KEYS[...], ARGV[...] or a literal. */
static void arg_expr(struct wc_buf *b, const struct wc_redis_cmd *cmd, int i, const unsigned char *how, int k,
                     int a)
{
    const char *lit;
    size_t len;

    if (how[i] == GEN_KEY)
        wc_buf_printf(b, "KEYS[kb + %d]", k);
    else if (how[i] == GEN_ARG)
        wc_buf_printf(b, "ARGV[b + %d]", a);
    else if (wc_tmpl_literal(cmd->argv[i], &lit, &len))
        lua_str(b, lit, len);
    else
        wc_buf_puts(b, "nil");
}

/* Expressions of every argument of cmd into ex[i] (a buffer each), given the first KEYS and ARGV numbers. */
static void cmd_exprs(struct wc_buf *ex, const struct wc_redis_cmd *cmd, const unsigned char *how, int k0,
                      int a0)
{
    int k = k0, a = a0;

    for (int i = 0; i < cmd->argc; i++) {
        wc_buf_reset(&ex[i]);
        arg_expr(&ex[i], cmd, i, how, how[i] == GEN_KEY ? ++k : k, how[i] == GEN_ARG ? ++a : a);
    }
}

/* The checks of one plain command before any write of the event (each sets why and stops the rest);
 * then what the command leaves behind, for the checks after it. */
static void gen_check(struct wc_buf *b, const struct wc_redis_cmd *cmd, struct wc_buf *ex, int counters,
                      int hcounters)
{
    const char *name = cmd->name;

    for (int i = 1; i < cmd->argc; i++) {
        if (cmd->kinds[i] != WC_RA_KEY)
            continue;
        if (cmd->type != NULL) {
            const char *k = ex[i].data;
            wc_buf_printf(
                b,
                "if not why then x = t[%s] or redis.call('TYPE', %s).ok if x == 'none' or x == '%s' "
                "then t[%s] = '%s' else why = '%s on key \"' .. %s .. '\": WRONGTYPE Operation "
                "against a key holding the wrong kind of value (a ' .. x .. ', not a %s)' end end\n",
                k, k, cmd->type, k, cmd->type, name, k, cmd->type);
        } else if (cmd->effect == WC_RE_DELETE) {
            wc_buf_printf(b, "t[%s] = 'none'\n", ex[i].data);
            if (counters || hcounters)
                wc_buf_printf(b, "v[%s] = '0' gone[%s] = true\n", ex[i].data, ex[i].data);
        } else if (cmd->effect == WC_RE_WRITE) { /* SET: any type becomes a string */
            wc_buf_printf(b, "t[%s] = 'string'\n", ex[i].data);
            if (counters)
                wc_buf_printf(b, "v[%s] = %s\n", ex[i].data, ex[2].data);
        }
    }
    switch (cmd->check) {
    case WC_RC_INCR:
    case WC_RC_INCRF: {
        const char *d = strcmp(name, "INCR") == 0 ? "1" : strcmp(name, "DECR") == 0 ? "-1" : NULL;
        wc_buf_printf(b, "if not why then local e = incr(%s, ", ex[1].data);
        if (d)
            wc_buf_puts(b, d);
        else
            wc_buf_printf(b, "%stonumber(%s)", strcmp(name, "DECRBY") == 0 ? "-" : "", ex[2].data);
        wc_buf_printf(b, ", %s) if e then why = '%s on key \"' .. %s .. '\": ' .. e end end\n",
                      cmd->check == WC_RC_INCRF ? "true" : "false", name, ex[1].data);
        break;
    }
    case WC_RC_HINCR:
    case WC_RC_HINCRF:
        wc_buf_printf(
            b,
            "if not why then local e = hincr(%s, %s, tonumber(%s), %s) if e then why = '%s on key \"' "
            ".. %s .. '\" field \"' .. %s .. '\": ' .. e end end\n",
            ex[1].data, ex[2].data, ex[3].data, cmd->check == WC_RC_HINCRF ? "true" : "false", name,
            ex[1].data, ex[2].data);
        break;
    default:
        /* A string written otherwise (APPEND) or a hash field set: what a later counter of the event
         * reads. */
        if (counters && cmd->type && strcmp(cmd->type, "string") == 0)
            wc_buf_printf(b, "v[%s] = nil\n", ex[1].data);
        if (hcounters && (strcmp(name, "HSET") == 0 || strcmp(name, "HDEL") == 0)) {
            int pair = strcmp(name, "HSET") == 0;
            for (int i = 2; i < cmd->argc; i += pair ? 2 : 1)
                wc_buf_printf(b, "h[%s .. '\\0' .. %s] = %s\n", ex[1].data, ex[i].data,
                              pair ? ex[i + 1].data : "'0'");
        }
        break;
    }
}

/* The write of one action (number n, counted from 0: n actions took effect before it; in a cluster the
 * count nd of the part's actions that did). */
static void gen_write(struct wc_buf *b, const struct wc_rule *rule, const struct wc_redis_cmd *cmd,
                      struct wc_buf *ex, int n, int fn, int cluster)
{
    char done[40];

    if (cluster)
        snprintf(done, sizeof(done), "done = nd else nd = nd + 1");
    else
        snprintf(done, sizeof(done), "done = %d", n);
    if (cmd->script != NULL) {
        wc_buf_printf(b, "if not why then local okay, e = pcall(u%d, {", fn);
        for (int i = 0; i < cmd->nkeys; i++)
            wc_buf_printf(b, "%s%s", i ? ", " : "", ex[i].data);
        wc_buf_puts(b, "}, {");
        for (int i = cmd->nkeys; i < cmd->argc; i++)
            wc_buf_printf(b, "%s%s", i > cmd->nkeys ? ", " : "", ex[i].data);
        wc_buf_puts(b, "}) if not okay then why = ");
        lua_str(b, "projection \"", 12);
        wc_buf_puts(b, " .. ");
        lua_str(b, rule->projection, strlen(rule->projection));
        wc_buf_printf(b, " .. '\": script at line %d: ' .. emsg(e) %s end end\n", cmd->line, done);
        return;
    }
    wc_buf_printf(b, "if not why then local r = redis.pcall('%s'", cmd->name);
    for (int i = 1; i < cmd->argc; i++)
        wc_buf_printf(b, ", %s", ex[i].data);
    wc_buf_printf(b,
                  ") if type(r) == 'table' and r.err then why = '%s on key \"' .. %s .. '\": ' .. r.err "
                  "%s end end\n",
                  cmd->name, ex[1].data, done);
}

/* Generate the script of one event type: rules[0..n) are its rules in configuration order. */
static void gen_one(struct wc_sink *s, struct gen *g, struct wc_rule *const *rules, int n)
{
    struct wc_buf b = WC_BUF_INIT;
    int nargv = 0, counters = 0, hcounters = 0, maxargc = 1, k = 0, a = 0, fn = 0, act = 0;
    int cluster = ((struct redis_sink *)s->priv)->cs != NULL;

    for (int i = 0; i < n; i++)
        for (int j = 0; j < rules[i]->ncmd; j++) {
            const struct wc_redis_cmd *cmd = &rules[i]->cmds[j];
            nargv += cmd->argc;
            maxargc = cmd->argc > maxargc ? cmd->argc : maxargc;
            counters |= cmd->check == WC_RC_INCR || cmd->check == WC_RC_INCRF;
            hcounters |= cmd->check == WC_RC_HINCR || cmd->check == WC_RC_HINCRF;
        }
    /* What each argument is: a key, a value to render, or a literal written into the script. */
    g->how = wc_xcalloc((size_t)nargv + 1, 1);
    for (int i = 0; i < n; i++)
        g->nact += rules[i]->ncmd;
    g->act = wc_xcalloc((size_t)g->nact + 1, sizeof(*g->act));
    for (int i = 0, x = 0; i < n; i++)
        for (int j = 0; j < rules[i]->ncmd; j++, act++) {
            const struct wc_redis_cmd *cmd = &rules[i]->cmds[j];
            g->act[act] = (struct gen_act){rules[i], cmd, g->nkeys, 0, g->nargs, 0};
            for (int m = 0; m < cmd->argc; m++, x++) {
                const char *lit;
                size_t len;
                if (cmd->kinds[m] == WC_RA_NAME)
                    g->how[x] = GEN_SKIP;
                else if (cmd->kinds[m] == WC_RA_KEY)
                    g->how[x] = GEN_KEY, g->nkeys++;
                else if (wc_tmpl_literal(cmd->argv[m], &lit, &len))
                    g->how[x] = GEN_SKIP;
                else
                    g->how[x] = GEN_ARG, g->nargs++;
            }
            g->act[act].nk = g->nkeys - g->act[act].k0;
            g->act[act].na = g->nargs - g->act[act].a0;
        }

    int nscript = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < rules[i]->ncmd; j++)
            nscript += rules[i]->cmds[j].script != NULL;
    /* The configuration's scripts first, each a function of its own keys and args, so that none sees
     * (or assigns) the generated script's locals. */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < rules[i]->ncmd; j++)
            if (rules[i]->cmds[j].script != NULL)
                wc_buf_printf(&b, "local function u%d(KEYS, ARGV, ...)\n%s\nend\n", ++fn,
                              rules[i]->cmds[j].script);
    gen_prologue(&b, s->name, counters, hcounters, nscript > 0, cluster, g->nargs);

    struct wc_buf *ex = wc_xcalloc((size_t)maxargc, sizeof(*ex));
    /* First every check, then every write. */
    for (int pass = 0; pass < 2; pass++) {
        int x = 0;
        k = a = fn = act = 0;
        wc_buf_puts(&b, pass == 0 ? "-- checks\n" : "-- writes\n");
        for (int i = 0; i < n; i++)
            for (int j = 0; j < rules[i]->ncmd; j++, act++) {
                const struct wc_redis_cmd *cmd = &rules[i]->cmds[j];
                const unsigned char *how = g->how + x;
                cmd_exprs(ex, cmd, how, k, a);
                for (int m = 0; m < cmd->argc; m++) {
                    k += how[m] == GEN_KEY;
                    a += how[m] == GEN_ARG;
                }
                x += cmd->argc;
                if (cmd->script != NULL)
                    fn++;
                /* In a cluster only the actions of the part (the mask) run. */
                if (cluster && (pass == 1 || cmd->script == NULL))
                    wc_buf_printf(&b, "if string.byte(mk, %d) == 49 then\n", act + 1);
                if (pass == 0 && cmd->script == NULL)
                    gen_check(&b, cmd, ex, counters, hcounters);
                else if (pass == 1)
                    gen_write(&b, rules[i], cmd, ex, act, fn, cluster);
                if (cluster && (pass == 1 || cmd->script == NULL))
                    wc_buf_puts(&b, "end\n");
            }
    }
    gen_epilogue(&b, s->name, s->cfg ? s->cfg->dead_letter_max : 0, cluster);
    for (int i = 0; i < maxargc; i++)
        wc_buf_free(&ex[i]);
    free(ex);
    g->src = wc_xstrndup(b.data, b.len);
    wc_buf_free(&b);
}

static int load(struct wc_sink *s, struct redis_sink *p, const char *src, char *sha, const char *what,
                struct wc_err *err)
{
    const char *argv[3] = {"SCRIPT", "LOAD", src};
    size_t len[3] = {6, 4, strlen(src)};
    redisReply *r = redis_command(s, p, 3, argv, len, err);

    if (r == NULL)
        return -1;
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        if (r->type == REDIS_REPLY_ERROR)
            wc_err_set(err, redis_transient_error(r->str) ? WC_ERR_IO : WC_ERR_INTERNAL,
                       "sink \"%s\": could not load %s: %s", s->name, what, r->str);
        else
            wc_err_set(err, WC_ERR_PROTOCOL, "sink \"%s\": unexpected reply to SCRIPT LOAD", s->name);
        freeReplyObject(r);
        return -1;
    }
    memcpy(sha, r->str, 40);
    sha[40] = '\0';
    freeReplyObject(r);
    return 0;
}

void redis_gen_free(struct redis_sink *p)
{
    for (int i = 0; i < p->ngen; i++) {
        free(p->gens[i].src);
        free(p->gens[i].how);
        free(p->gens[i].act);
    }
    free(p->gens);
    free(p->gen_of_rule);
    p->gens = NULL;
    p->gen_of_rule = NULL;
    p->ngen = 0;
}

void redis_gen_make(struct wc_sink *s, struct redis_sink *p)
{
    const struct wc_sink_conf *conf = s->conf;

    redis_gen_free(p);
    p->gen_of_rule = wc_xcalloc((size_t)conf->nrule + 1, sizeof(int));
    for (int i = 0; i < conf->nrule; i++)
        p->gen_of_rule[i] = -1;
    p->gens = wc_xcalloc((size_t)conf->nrule + 1, sizeof(*p->gens));
    for (int i = 0; i < conf->nrule; i++) {
        int n = 0, ncmd = 0;
        struct wc_rule *const *rules = wc_config_rules(conf, conf->rules[i].event_type, &n);
        if (rules == NULL || rules[0] != &conf->rules[i])
            continue; /* not the first rule of its type */
        for (int j = 0; j < n; j++)
            ncmd += rules[j]->ncmd;
        if (ncmd == 0)
            continue;
        struct gen *g = &p->gens[p->ngen];
        gen_one(s, g, rules, n);
        g->event_type = conf->rules[i].event_type;
        for (int j = 0; j < n; j++)
            p->gen_of_rule[rules[j] - conf->rules] = p->ngen;
        p->ngen++;
    }
}

int redis_gen_scripts(struct wc_sink *s, struct redis_sink *p, struct wc_err *err)
{
    redis_gen_make(s, p);
    for (int i = 0; i < p->ngen; i++) {
        struct gen *g = &p->gens[i];
        char what[300];
        snprintf(what, sizeof(what), "the script of event type \"%.200s\"", g->event_type);
        if (load(s, p, g->src, g->sha, what, err) < 0)
            return -1;
        wc_debug("sink \"%s\": %s (%.8s):\n%s", s->name, what, g->sha, g->src);
    }
    if (load(s, p, dead_letter_lua, p->fixed_sha[FIXED_DEAD_LETTER], "the dead-letter script", err) < 0 ||
        load(s, p, cursor_lua, p->fixed_sha[FIXED_CURSOR], "the cursor script", err) < 0)
        return -1;
    return 0;
}
