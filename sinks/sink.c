/* sink.c - the sink registry and what every sink shares (the error policy). */
#include <stdlib.h>
#include <string.h>

#include "walcast/buf.h"
#include "walcast/log.h"
#include "walcast/sink.h"

static const struct wc_sink_ops *const sink_types[] = {
    [WC_SINK_POSTGRES] = &wc_sink_postgres_ops,
    [WC_SINK_REDIS] = &wc_sink_redis_ops,
};

struct wc_sink *wc_sink_new(const struct wc_config *cfg, const struct wc_sink_conf *conf, struct wc_err *err)
{
    struct wc_sink *s;

    if (conf->type < 0 || conf->type >= (int)(sizeof(sink_types) / sizeof(sink_types[0]))) {
        wc_err_set(err, WC_ERR_CONFIG, "sink \"%s\" has an unknown type", conf->name);
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        wc_err_set(err, WC_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    s->ops = sink_types[conf->type];
    if (conf->type == WC_SINK_REDIS && conf->cluster)
        s->ops = &wc_sink_redis_cluster_ops; /* sinks/redis/csink.h */
    s->conf = conf;
    s->cfg = cfg;
    s->name = conf->name;
    s->cursor = WC_POS_NONE;
    return s;
}

void wc_sink_jsonl_free(struct wc_sink *s);

void wc_sink_free(struct wc_sink *s)
{
    /* A thread the engine abandoned may still use it: leave it to the exit. */
    if (s == NULL || __atomic_load_n(&s->abandoned, __ATOMIC_ACQUIRE))
        return;
    if (s->ops == &wc_sink_jsonl_ops)
        wc_sink_jsonl_free(s);
    else if (s->ops && s->ops->close)
        s->ops->close(s);
    free(s);
}

int wc_sink_handle_error(struct wc_sink *s, struct wc_commit *in, struct wc_event *ev, int policy,
                         const char *error, struct wc_err *err)
{
    char lsn[WC_LSN_STRLEN];
    const char *type = ev->col[WC_COL_EVENT_TYPE].text ? ev->col[WC_COL_EVENT_TYPE].text : "";

    wc_lsn_format(ev->pos.lsn, lsn);
    if (s->retrying) {
        wc_err_set(err, WC_ERR_DATA, "%s", error);
        return -1;
    }
    switch (policy) {
    case WC_POLICY_SKIP:
        wc_warning("sink \"%s\": skipping event \"%s\" at %s:%lld: %s", s->name, type, lsn,
                   (long long)ev->pos.index, error);
        WC_COUNT_ADD(s->skipped, 1);
        wc_tally_count(s->tally, in != NULL, ev, WC_OUT_SKIPPED, 1);
        return 0;
    case WC_POLICY_HALT:
        wc_err_set(err, WC_ERR_DATA, "sink \"%s\": event \"%s\" at %s:%lld: %s", s->name, type, lsn,
                   (long long)ev->pos.index, error);
        return -1;
    default:
        wc_warning("sink \"%s\": dead-lettering event \"%s\" at %s:%lld: %s", s->name, type, lsn,
                   (long long)ev->pos.index, error);
        if (s->ops->dead_letter(s, in, ev, error, err) < 0)
            return -1;
        WC_COUNT_ADD(s->dead_lettered, 1);
        wc_tally_count(s->tally, in != NULL, ev, WC_OUT_DEAD_LETTERED, 1);
        return 0;
    }
}
