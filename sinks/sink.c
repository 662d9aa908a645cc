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
    s->conf = conf;
    s->cfg = cfg;
    s->name = conf->name;
    s->cursor = WC_POS_NONE;
    return s;
}

void wc_sink_jsonl_free(struct wc_sink *s);

void wc_sink_free(struct wc_sink *s)
{
    if (s == NULL)
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
        return 0;
    }
}

void wc_dlq_print(const struct wc_sink *s, int json, const char *id, const char *lsn, const char *idx,
                  const char *const *cols, const char *error, const char *created)
{
    /* cols: event_id, event_type, aggregate_type, aggregate_id, payload (any may be NULL). */
    static const char *const names[] = {"event_id", "event_type", "aggregate_type", "aggregate_id",
                                        "payload"};
    struct wc_buf b = WC_BUF_INIT;

    if (json) {
        wc_buf_puts(&b, "{\"sink\":");
        wc_buf_json_string(&b, s->name, strlen(s->name));
        wc_buf_puts(&b, ",\"id\":");
        wc_buf_json_string(&b, id, strlen(id));
        wc_buf_printf(&b, ",\"lsn\":\"%s\",\"idx\":%s", lsn ? lsn : "", idx && *idx ? idx : "null");
        for (int i = 0; i < 5; i++) {
            wc_buf_printf(&b, ",\"%s\":", names[i]);
            if (cols[i])
                wc_buf_json_string(&b, cols[i], strlen(cols[i]));
            else
                wc_buf_puts(&b, "null");
        }
        wc_buf_puts(&b, ",\"error\":");
        wc_buf_json_string(&b, error ? error : "", error ? strlen(error) : 0);
        if (created) {
            wc_buf_puts(&b, ",\"created_at\":");
            wc_buf_json_string(&b, created, strlen(created));
        }
        wc_buf_puts(&b, "}\n");
    } else {
        wc_buf_printf(&b, "%s\t%s\t%s:%s\t%s\tevent_id=%s\t%s\n", s->name, id, lsn ? lsn : "", idx ? idx : "",
                      cols[1] ? cols[1] : "", cols[0] ? cols[0] : "", error ? error : "");
    }
    fwrite(b.data, 1, b.len, stdout);
    wc_buf_free(&b);
}

void wc_dlq_event(struct wc_event *ev, const char *lsn, const char *idx, const char *const *cols)
{
    memset(ev, 0, sizeof(*ev));
    if (lsn)
        wc_lsn_parse(lsn, &ev->pos.lsn);
    ev->pos.index = idx ? strtoll(idx, NULL, 10) : 0;
    ev->commit_time = "";
    static const int map[] = {WC_COL_EVENT_ID, WC_COL_EVENT_TYPE, WC_COL_AGGREGATE_TYPE, WC_COL_AGGREGATE_ID,
                              WC_COL_PAYLOAD};
    for (int i = 0; i < 5; i++) {
        const char *t = cols[i];
        struct wc_val *v = &ev->col[map[i]];
        if (t == NULL) {
            *v = (struct wc_val){WC_VAL_NULL, NULL, 0};
            continue;
        }
        int number = map[i] == WC_COL_EVENT_ID && *t && strspn(t, "-0123456789") == strlen(t);
        *v = (struct wc_val){number ? WC_VAL_NUMBER : WC_VAL_STRING, t, strlen(t)};
    }
}
