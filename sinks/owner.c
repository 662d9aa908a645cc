/*
 * owner.c - one owner per sink. A sink's cursor is a position in one slot's stream of one source: an
 * engine of another slot (or another source) that applied events to it would apply every event again,
 * and one that found no cursor of its own would rebuild it under the feet of the engine that owns it.
 * So each sink records its owner, and an engine refuses a sink that another owns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "owner.h"

char *wc_owner_encode(const struct wc_owner *o)
{
    json_t *j = json_pack("{s:s, s:s, s:s}", "system_identifier", o->system_id, "database", o->database,
                          "slot", o->slot);
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

    json_decref(j);
    if (text == NULL)
        abort();
    return text;
}

int wc_owner_decode(const char *text, struct wc_owner *o)
{
    json_t *j = json_loads(text, 0, NULL);
    const char *sys = json_string_value(json_object_get(j, "system_identifier"));
    const char *db = json_string_value(json_object_get(j, "database"));
    const char *slot = json_string_value(json_object_get(j, "slot"));
    int rc = -1;

    memset(o, 0, sizeof(*o));
    if (sys && db && slot) {
        snprintf(o->system_id, sizeof(o->system_id), "%s", sys);
        snprintf(o->database, sizeof(o->database), "%s", db);
        snprintf(o->slot, sizeof(o->slot), "%s", slot);
        rc = 0;
    }
    json_decref(j);
    return rc;
}

int wc_owner_same(const struct wc_owner *a, const struct wc_owner *b)
{
    return strcmp(a->system_id, b->system_id) == 0 && strcmp(a->database, b->database) == 0 &&
           strcmp(a->slot, b->slot) == 0;
}

void wc_owner_describe(const struct wc_owner *o, char *buf, size_t size)
{
    snprintf(buf, size, "replication slot \"%s\" of database \"%s\" on system %s", o->slot, o->database,
             o->system_id);
}

int wc_sink_claim(struct wc_sink *s, const struct wc_owner *me, struct wc_err *err)
{
    struct wc_owner held;
    char owner[300], mine[300];

    if (s->ops->owner == NULL)
        return 0;
    if (s->ops->owner->claim(s, me, &held, err) < 0)
        return -1;
    if (wc_owner_same(&held, me))
        return 0;
    wc_owner_describe(&held, owner, sizeof(owner));
    if (strcmp(held.system_id, me->system_id) == 0 && strcmp(held.database, me->database) == 0)
        snprintf(mine, sizeof(mine), "this engine's slot \"%s\"", me->slot);
    else
        wc_owner_describe(me, mine, sizeof(mine));
    wc_err_set(
        err, WC_ERR_CONFIG,
        "sink \"%s\" belongs to %s, not to %s: that engine applies events to it, and a second one would "
        "apply them again; to hand it over, stop that engine and run \"walcast sink release -c %s "
        "--sink %s\"",
        s->name, owner, mine, s->cfg && s->cfg->path ? s->cfg->path : "FILE", s->name);
    return -1;
}

int wc_sink_owner(struct wc_sink *s, struct wc_owner *out, int *found, struct wc_err *err)
{
    *found = 0;
    if (s->ops->owner == NULL)
        return 0;
    return s->ops->owner->read(s, out, found, err);
}

int wc_sink_release(struct wc_sink *s, struct wc_owner *was, int *found, struct wc_err *err)
{
    if (wc_sink_owner(s, was, found, err) < 0)
        return -1;
    if (!*found)
        return 0;
    return s->ops->owner->release(s, was, err);
}
