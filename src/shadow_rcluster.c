/*
 * shadow_rcluster.c - `walcast rebuild` and `walcast verify` for a projection of a Redis Cluster sink
 * (shadow_redis.c tells the one-server way, and calls here when sh->cluster).
 *
 * The shadow's keys are the live ones under "walcast:shadow:<unit>:{T}", T the tag of the live key's hash
 * slot (the shadow sink's key_prefix_tagged): a shadow key is in the same slot as the key it replaces, on
 * the same master, and can be renamed onto it. The shadow sink is a cluster sink of its own name, with its
 * own cursor in every slot and its own floor in the directory. The hash slot is the unit of atomicity, as
 * it is for the sink's writes:
 *
 *  - swap, in rounds: the shadow has applied exactly everything up to the live floor it reached (at); a
 *    slot whose live cursor is at or before at holds what the shadow holds for it, as of the same events.
 *    Per master, scripts of up to 512 of its slots (allow-cross-slot-keys: any key of that master) check
 *    that condition for each slot inside the script, find the slot's keys (CLUSTER GETKEYSINSLOT), rename
 *    the shadow's onto their live names, unlink the live keys of the projection's patterns that none
 *    replaced, and mark the slot swapped in its cursor hash (a rebuild killed between masters and run
 *    again does not swap a slot twice). Slots whose live cursor had moved on wait for the next round,
 *    after the shadow caught up again. When every slot is swapped the marks are checked again (a failover
 *    may have lost one), the sink's record of the projections written, and the shadow's leftovers
 *    dropped. A reader sees each slot's keys all old or all new; keys of different slots may switch a
 *    moment apart, as an event's parts in different slots appear a moment apart. A script refuses, before
 *    writing, while a slot of its master migrates.
 *  - verify: writes are paused on every master (CLIENT PAUSE WRITE) and the keys compared when every
 *    slot's live cursor is at or before the live floor the shadow reached; else unpaused and tried again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "shadow.h"
#include "walcast/buf.h"
#include "walcast/keyslot.h"
#include "walcast/probe.h"

#define NSLOT WC_KEYSLOTS

/* A command on master i; an error reply is err. */
redisReply *wc_rcshadow_master_command(struct wc_shadow *sh, int i, int argc, const char **argv,
                                       struct wc_err *err)
{
    redisReply *r = wc_sink_redis_master_command(sh->rk, i, argc, argv, NULL, err);
    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\": %s on a redis cluster master: %s", sh->live->name, argv[0],
                   r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* A command on the master of argv[1] (a key). */
redisReply *wc_rcshadow_key_command(struct wc_shadow *sh, int argc, const char **argv, struct wc_err *err)
{
    int m = wc_sink_redis_key_master(sh->rk, argv[1], strlen(argv[1]));
    if (m < 0) {
        wc_err_set(err, WC_ERR_IO, "sink \"%s\": no redis cluster master serves key \"%.100s\"",
                   sh->live->name, argv[1]);
        return NULL;
    }
    return wc_rcshadow_master_command(sh, m, argc, argv, err);
}

int wc_rcshadow_masters(struct wc_shadow *sh, struct wc_err *err)
{
    return wc_sink_redis_masters(sh->rk, err);
}

/* One sink's cursor in the directory (its floor: every slot acknowledged everything up to it). */
int wc_rcshadow_cursor(struct wc_shadow *sh, const char *sink, struct wc_pos *out, int *found,
                       struct wc_err *err)
{
    char dir[300], field[256];
    wc_sink_redis_cluster_key(sh->rk, "directory", -1, dir, sizeof(dir));
    snprintf(field, sizeof(field), "%s:floor", sink);
    const char *argv[3] = {"HGET", dir, field};
    redisReply *r = wc_rcshadow_key_command(sh, 3, argv, err);
    if (r == NULL)
        return -1;
    *found = r->type == REDIS_REPLY_STRING;
    *out = WC_POS_NONE;
    int rc = *found && wc_pos_parse(r->str, out) < 0 ? -1 : 0;
    if (rc < 0)
        wc_err_set(err, WC_ERR_PROTOCOL, "sink \"%s\": invalid floor \"%.64s\" in \"%s\"", sink, r->str, dir);
    freeReplyObject(r);
    return rc;
}

/* KEYS none. ARGV: the cursor keys' pattern, the halt keys' pattern, the shadow's sink name, its keys'
 * pattern. Everything of the shadow on this master: its keys, its cursor in each slot, its halt keys. */
static const char WIPE_LUA[] =
    "#!lua flags=allow-cross-slot-keys\n" WC_LUA_EACH "local n = 0\n"
    "each(ARGV[4], function(k) n = n + redis.call('UNLINK', k) end)\n"
    "each(ARGV[1], function(k) redis.call('HDEL', k, ARGV[3], ARGV[3] .. ':swapped') end)\n"
    "each(ARGV[2], function(k) redis.call('UNLINK', k) end)\n"
    "return n\n";

int wc_rcshadow_wipe(struct wc_shadow *sh, struct wc_err *err)
{
    int n = wc_rcshadow_masters(sh, err);
    char cursors[300], halts[300], keys[200], dir[300];

    if (n < 0)
        return -1;
    /* The directory first: without the shadow's floor, a run after a wipe cut short starts afresh (it
     * would otherwise resume with slots whose shadow keys are already gone). */
    wc_sink_redis_cluster_key(sh->rk, "directory", -1, dir, sizeof(dir));
    const char *hk[2] = {"HKEYS", dir};
    redisReply *r = wc_rcshadow_key_command(sh, 2, hk, err);
    if (r == NULL)
        return -1;
    size_t plen = strlen(sh->sink_name);
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const char *f = r->element[i]->str;
        if (strncmp(f, sh->sink_name, plen) != 0 || f[plen] != ':')
            continue;
        const char *del[3] = {"HDEL", dir, f};
        redisReply *d = wc_rcshadow_key_command(sh, 3, del, err);
        if (d == NULL) {
            freeReplyObject(r);
            return -1;
        }
        freeReplyObject(d);
    }
    freeReplyObject(r);
    snprintf(cursors, sizeof(cursors), "walcast:cursor:*:%s", sh->cfg->slot);
    snprintf(halts, sizeof(halts), "walcast:halt:*:%s:%s", sh->cfg->slot, sh->sink_name);
    snprintf(keys, sizeof(keys), "%s*", sh->prefix);
    for (int i = 0; i < n; i++) {
        const char *argv[7] = {"EVAL", WIPE_LUA, "0", cursors, halts, sh->sink_name, keys};
        if ((r = wc_rcshadow_master_command(sh, i, 7, argv, err)) == NULL)
            return -1;
        freeReplyObject(r);
    }
    return 0;
}

/* The live key a shadow key stands for: after the prefix and its "{T}". */
const char *wc_rcshadow_live_name(const struct wc_shadow *sh, const char *shadow_key)
{
    const char *k = shadow_key + strlen(sh->prefix);
    const char *close = *k == '{' ? strchr(k, '}') : NULL;
    return close ? close + 1 : k;
}

/* A glob of projections.NAME.keys ("*" and "?" its only wildcards) as an anchored Lua pattern. */
static void lua_pattern(const char *glob, struct wc_buf *out)
{
    wc_buf_reset(out);
    wc_buf_puts(out, "^");
    for (const char *c = glob; *c; c++) {
        if (*c == '*')
            wc_buf_puts(out, ".*");
        else if (*c == '?')
            wc_buf_puts(out, ".");
        else {
            if (strchr("^$()%.[]*+-?", *c) != NULL)
                wc_buf_append(out, "%", 1);
            wc_buf_append(out, c, 1);
        }
    }
    wc_buf_puts(out, "$");
}

/* KEYS none. ARGV: the live sink, the position the shadow reached as three numbers (LSN high and low
 * halves, index), the shadow's prefix, the number of patterns, the projection's key patterns (Lua), the
 * field that marks a slot swapped, then pairs of hash slot and its cursor key. Refused whole, before any
 * write, while a slot of this master migrates (a resharding: a key renamed there could land on another
 * node). For each slot not marked whose live cursor is at or before that position: each shadow key is
 * renamed onto its live name (after the prefix and its "{T}"), then the live keys of the patterns that no
 * shadow key replaced are unlinked, and the slot is marked in its cursor hash (a rebuild killed between
 * masters, run again, must not swap a slot twice: the shadow no longer has its keys). Returns the slots
 * swapped (now or before), then the number of keys moved in. */
static const char SWAP_LUA[] =
    "#!lua flags=allow-cross-slot-keys\n"
    "for line in string.gmatch(redis.call('CLUSTER', 'NODES'), '[^\\n]+') do\n"
    "  if string.find(line, 'myself', 1, true) and string.find(line, '[', 1, true) then\n"
    "    return redis.error_reply('MIGRATING a hash slot of this master is migrating')\n"
    "  end\n"
    "end\n"
    "local fh, fl, fx = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local prefix, np = ARGV[5], tonumber(ARGV[6])\n"
    "local plen = #prefix\n"
    "local function behind(c)\n"
    "  if not c then return true end\n"
    "  local h, l, x = string.match(c, '^(%x+)/(%x+):(-?%d+)$')\n"
    "  if not h then return false end\n"
    "  h, l, x = tonumber(h, 16), tonumber(l, 16), tonumber(x)\n"
    "  if h ~= fh then return h < fh end\n"
    "  if l ~= fl then return l < fl end\n"
    "  return x <= fx\n"
    "end\n"
    "local function live(k)\n"
    "  if string.sub(k, 1, 8) == 'walcast:' then return false end\n"
    "  for i = 7, 6 + np do if string.find(k, ARGV[i]) then return true end end\n"
    "  return false\n"
    "end\n"
    "local out, moved, done = {}, 0, ARGV[7 + np]\n"
    "for i = 8 + np, #ARGV, 2 do\n"
    "  if redis.call('HEXISTS', ARGV[i + 1], done) == 1 then\n"
    "    out[#out + 1] = tonumber(ARGV[i])\n"
    "  elseif behind(redis.call('HGET', ARGV[i + 1], ARGV[1])) then\n"
    "    local keys = redis.call('CLUSTER', 'GETKEYSINSLOT', ARGV[i], 2147483647)\n"
    "    local replaced, old = {}, {}\n"
    "    for _, k in ipairs(keys) do\n"
    "      if string.sub(k, 1, plen) == prefix then\n"
    "        if redis.call('EXISTS', k) == 1 then\n"
    "          local name = (string.gsub(string.sub(k, plen + 1), '^{%w*}', '', 1))\n"
    "          redis.call('RENAME', k, name)\n"
    "          replaced[name] = true\n"
    "          moved = moved + 1\n"
    "        end\n"
    "      elseif live(k) then old[#old + 1] = k end\n"
    "    end\n"
    "    for _, k in ipairs(old) do if not replaced[k] then redis.call('UNLINK', k) end end\n"
    "    redis.call('HSET', ARGV[i + 1], done, '1')\n"
    "    out[#out + 1] = tonumber(ARGV[i])\n"
    "  end\n"
    "end\n"
    "out[#out + 1] = moved\n"
    "return out\n";

/* Slots per script: each script blocks its master while it runs (every key of its slots is renamed or
 * unlinked); a few hundred slots at a time let the master serve others in between. */
#define SLOTS_PER_SCRIPT 512

/* One round on master i: every slot it serves that is not swapped yet, SLOTS_PER_SCRIPT at a time. */
static int swap_master(struct wc_shadow *sh, int i, struct wc_err *err)
{
    int rc = -1, fixed = 0;
    size_t cap = 10 + (size_t)sh->npattern + 2 * SLOTS_PER_SCRIPT;
    const char **argv = calloc(cap, sizeof(char *));
    char **pat = calloc((size_t)sh->npattern + 1, sizeof(char *));
    char(*num)[12] = calloc(SLOTS_PER_SCRIPT, sizeof(*num)),
    (*ckey)[300] = calloc(SLOTS_PER_SCRIPT, sizeof(*ckey));
    char at[3][24], np[16], done_field[256];
    struct wc_buf lp = WC_BUF_INIT;

    snprintf(done_field, sizeof(done_field), "%s:swapped", sh->sink_name);
    snprintf(at[0], sizeof(at[0]), "%u", (unsigned)(sh->at.lsn >> 32));
    snprintf(at[1], sizeof(at[1]), "%u", (unsigned)sh->at.lsn);
    snprintf(at[2], sizeof(at[2]), "%lld", (long long)sh->at.index);
    snprintf(np, sizeof(np), "%d", sh->npattern);
    argv[fixed++] = "EVAL";
    argv[fixed++] = SWAP_LUA;
    argv[fixed++] = "0";
    argv[fixed++] = sh->live->name;
    argv[fixed++] = at[0];
    argv[fixed++] = at[1];
    argv[fixed++] = at[2];
    argv[fixed++] = sh->prefix;
    argv[fixed++] = np;
    for (int p = 0; p < sh->npattern; p++) {
        lua_pattern(sh->patterns[p], &lp);
        pat[p] = strdup(lp.data);
        argv[fixed++] = pat[p];
    }
    argv[fixed++] = done_field;
    for (int s = 0; s < NSLOT;) {
        int argc = fixed, nslot = 0;
        for (; s < NSLOT && nslot < SLOTS_PER_SCRIPT; s++) {
            if (sh->swapped[s] || wc_sink_redis_slot_master(sh->rk, s) != i)
                continue;
            snprintf(num[nslot], sizeof(num[nslot]), "%d", s);
            wc_sink_redis_cluster_key(sh->rk, "cursor", s, ckey[nslot], sizeof(ckey[nslot]));
            argv[argc++] = num[nslot];
            argv[argc++] = ckey[nslot];
            nslot++;
        }
        if (nslot == 0)
            continue;
        redisReply *r = wc_rcshadow_master_command(sh, i, argc, argv, err);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
            if (r != NULL)
                wc_err_set(err, WC_ERR_PROTOCOL, "sink \"%s\": unexpected reply to the swap", sh->live->name);
            else if (strstr(err->msg, "MIGRATING") != NULL)
                wc_err_set(
                    err, WC_ERR_IO,
                    "sink \"%s\": a hash slot of redis cluster master %d is migrating (a resharding): "
                    "nothing of its slots was swapped; run the rebuild again when the resharding is over",
                    sh->live->name, i);
            freeReplyObject(r);
            goto done;
        }
        for (size_t k = 0; k + 1 < r->elements; k++)
            if (r->element[k]->integer >= 0 && r->element[k]->integer < NSLOT)
                sh->swapped[r->element[k]->integer] = 1;
        sh->moved += r->element[r->elements - 1]->integer;
        freeReplyObject(r);
    }
    rc = 0;
done:
    wc_buf_free(&lp);
    for (int p = 0; p < sh->npattern; p++)
        free(pat[p]);
    free(pat);
    free(argv);
    free(num);
    free(ckey);
    return rc;
}

/* Every slot still marked swapped on the masters that serve it now (a master that failed over to a
 * replica which had not received a swap has lost it)? *lost: the first slot without, or -1. -1 with err
 * when a master cannot be asked. */
static int swaps_kept(struct wc_shadow *sh, int masters, long long *lost_slot, struct wc_err *err)
{
    static const char CHECK_LUA[] = "#!lua flags=allow-cross-slot-keys,no-writes\n"
                                    "for i = 2, #ARGV, 2 do\n"
                                    "  if redis.call('HEXISTS', ARGV[i + 1], ARGV[1]) == 0 then\n"
                                    "    return tonumber(ARGV[i])\n"
                                    "  end\n"
                                    "end\n"
                                    "return -1\n";
    char done_field[256];
    const char **argv = calloc(4 + 2 * (size_t)NSLOT, sizeof(char *));
    char(*num)[12] = calloc(NSLOT, sizeof(*num)), (*ckey)[300] = calloc(NSLOT, sizeof(*ckey));
    long long lost = -1;

    snprintf(done_field, sizeof(done_field), "%s:swapped", sh->sink_name);
    for (int i = 0; i < masters && lost < 0; i++) {
        int argc = 0;
        argv[argc++] = "EVAL";
        argv[argc++] = CHECK_LUA;
        argv[argc++] = "0";
        argv[argc++] = done_field;
        for (int s = 0; s < NSLOT; s++) {
            if (wc_sink_redis_slot_master(sh->rk, s) != i)
                continue;
            snprintf(num[s], sizeof(num[s]), "%d", s);
            wc_sink_redis_cluster_key(sh->rk, "cursor", s, ckey[s], sizeof(ckey[s]));
            argv[argc++] = num[s];
            argv[argc++] = ckey[s];
        }
        redisReply *r = wc_rcshadow_master_command(sh, i, argc, argv, err);
        if (r == NULL) {
            lost = -2;
            break;
        }
        if (r->type == REDIS_REPLY_INTEGER)
            lost = r->integer;
        freeReplyObject(r);
    }
    free(argv);
    free(num);
    free(ckey);
    *lost_slot = lost;
    return lost == -2 ? -1 : 0;
}

int wc_rcshadow_swap(struct wc_shadow *sh, long long *keys, struct wc_err *err)
{
    int n = wc_rcshadow_masters(sh, err), left = 0;

    if (n < 0)
        return -1;
    if (sh->swapped == NULL)
        sh->swapped = calloc(NSLOT, 1);
    for (int s = 0; s < NSLOT; s++)
        if (wc_sink_redis_slot_master(sh->rk, s) < 0) {
            wc_err_set(err, WC_ERR_IO, "sink \"%s\": no redis cluster master serves hash slot %d",
                       sh->live->name, s);
            return -1;
        }
    for (int i = 0; i < n; i++) {
        if (swap_master(sh, i, err) < 0)
            return -1;
        if (i == 0 && n > 1)
            wc_rebuild_failpoint("cluster-swap"); /* one master swapped, the others not */
    }
    sh->rounds++;
    for (int s = 0; s < NSLOT; s++)
        left += !sh->swapped[s];
    if (left > 0)
        return 0; /* slots whose live cursor moved on: after the shadow caught up again */
    long long lost;
    if (swaps_kept(sh, n, &lost, err) < 0)
        return -1;
    if (lost >= 0) {
        /* The shadow has written into the slots it swapped since: it cannot swap one again. */
        struct wc_err e2 = {0};
        char what[160];
        snprintf(what, sizeof(what),
                 "hash slot %lld lost its swap (a failover to a replica that had not received it?)", lost);
        if (wc_rcshadow_wipe(sh, &e2) < 0)
            wc_err_set(
                err, WC_ERR_IO,
                "sink \"%s\": %s, and dropping the shadow failed (%s): run the rebuild with --discard, "
                "then again",
                sh->live->name, what, e2.msg);
        else
            wc_err_set(err, WC_ERR_IO,
                       "sink \"%s\": %s: the shadow is dropped; run the rebuild again, it starts afresh",
                       sh->live->name, what);
        return -1;
    }
    *keys = sh->moved;
    /* The sink's record: these projections are built by their current definitions (projrec.c). */
    if (wc_projections_record_cluster(sh->rk, sh->cfg, sh->live, sh->projections, sh->nprojection, err) < 0)
        return -1;
    /* What the shadow wrote into slots already swapped, its cursors and floor: gone. */
    return wc_rcshadow_wipe(sh, err) < 0 ? -1 : 1;
}

int wc_rcshadow_pause(struct wc_shadow *sh, int pause, struct wc_err *err)
{
    int n = wc_rcshadow_masters(sh, err), rc = 0;
    const char *argv[4] = {"CLIENT", pause ? "PAUSE" : "UNPAUSE", "5000", "WRITE"};

    if (n < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        redisReply *r = wc_rcshadow_master_command(sh, i, pause ? 4 : 2, argv, err);
        if (r == NULL)
            rc = -1;
        freeReplyObject(r);
    }
    return rc;
}

/* verify, paused: is every slot's live cursor at or before at (nothing applied past the floor)? 1 yes, 0
 * no (a commit between its slots and its floor: try again), -1 with err. */
int wc_rcshadow_level(struct wc_shadow *sh, struct wc_pos at, struct wc_err *err)
{
    static const char MAX_LUA[] = "#!lua flags=allow-cross-slot-keys,no-writes\n"
                                  "local out, cur = {}, '0'\n"
                                  "repeat\n"
                                  "  local r = redis.call('SCAN', cur, 'MATCH', ARGV[1], 'COUNT', 1000)\n"
                                  "  cur = r[1]\n"
                                  "  for _, k in ipairs(r[2]) do\n"
                                  "    local v = redis.call('HGET', k, ARGV[2])\n"
                                  "    if v then out[#out + 1] = v end\n"
                                  "  end\n"
                                  "until cur == '0'\n"
                                  "return out\n";
    int n = wc_rcshadow_masters(sh, err);
    char pattern[300];

    if (n < 0)
        return -1;
    snprintf(pattern, sizeof(pattern), "walcast:cursor:*:%s", sh->cfg->slot);
    for (int i = 0; i < n; i++) {
        const char *argv[5] = {"EVAL", MAX_LUA, "0", pattern, sh->live->name};
        redisReply *r = wc_rcshadow_master_command(sh, i, 5, argv, err);
        if (r == NULL)
            return -1;
        int level = 1;
        for (size_t k = 0; r->type == REDIS_REPLY_ARRAY && k < r->elements && level; k++) {
            struct wc_pos c;
            level = wc_pos_parse(r->element[k]->str, &c) == 0 && wc_pos_cmp(c, at) <= 0;
        }
        freeReplyObject(r);
        if (!level)
            return 0;
    }
    return 1;
}
