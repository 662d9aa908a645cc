/* dlq.c - `walcast dlq list|retry` over any sink's dead-letter store (struct wc_dlq_ops). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dlq.h"
#include "walcast/buf.h"
#include "walcast/log.h"

const char *const wc_dl_col_names[DL_NCOLS] = {"event_id", "event_type", "aggregate_type", "aggregate_id",
                                               "payload"};
const int wc_dl_cols[DL_NCOLS] = {WC_COL_EVENT_ID, WC_COL_EVENT_TYPE, WC_COL_AGGREGATE_TYPE,
                                  WC_COL_AGGREGATE_ID, WC_COL_PAYLOAD};

void wc_dlq_event(struct wc_event *ev, const struct wc_dead_letter *dl)
{
    const char *text[WC_COL_COUNT] = {0};
    int kind[WC_COL_COUNT] = {0};
    struct wc_pos pos = {0, dl->idx ? strtoll(dl->idx, NULL, 10) : 0};

    if (dl->lsn)
        wc_lsn_parse(dl->lsn, &pos.lsn);
    for (int i = 0; i < DL_NCOLS; i++) {
        const char *t = dl->col[i];
        int c = wc_dl_cols[i];
        text[c] = t;
        /* The stores keep text: an all-digits event id was a number in the stream. */
        kind[c] = c == WC_COL_EVENT_ID && t && *t && strspn(t, "-0123456789") == strlen(t) ? WC_VAL_NUMBER
                                                                                           : WC_VAL_STRING;
    }
    wc_event_from_texts(ev, pos, text, NULL, kind);
}

/* Print one dead letter: a tab-separated line, or one JSON object. */
static void print_one(const struct wc_sink *s, int json, const struct wc_dead_letter *dl)
{
    struct wc_buf b = WC_BUF_INIT;
    const char *const *cols = dl->col;

    if (json) {
        wc_buf_puts(&b, "{\"sink\":");
        wc_buf_json_string(&b, s->name, strlen(s->name));
        wc_buf_puts(&b, ",\"id\":");
        wc_buf_json_string(&b, dl->id, strlen(dl->id));
        wc_buf_printf(&b, ",\"lsn\":\"%s\",\"idx\":%s", dl->lsn ? dl->lsn : "",
                      dl->idx && *dl->idx ? dl->idx : "null");
        for (int i = 0; i < DL_NCOLS; i++) {
            wc_buf_printf(&b, ",\"%s\":", wc_dl_col_names[i]);
            if (cols[i])
                wc_buf_json_string(&b, cols[i], strlen(cols[i]));
            else
                wc_buf_puts(&b, "null");
        }
        wc_buf_puts(&b, ",\"error\":");
        wc_buf_json_string(&b, dl->error ? dl->error : "", dl->error ? strlen(dl->error) : 0);
        if (dl->applied) {
            wc_buf_puts(&b, ",\"applied\":");
            wc_buf_json_string(&b, dl->applied, strlen(dl->applied));
        }
        if (dl->mask) {
            wc_buf_puts(&b, ",\"mask\":");
            wc_buf_json_string(&b, dl->mask, strlen(dl->mask));
        }
        if (dl->created) {
            wc_buf_puts(&b, ",\"created_at\":");
            wc_buf_json_string(&b, dl->created, strlen(dl->created));
        }
        wc_buf_puts(&b, "}\n");
    } else {
        wc_buf_printf(&b, "%s\t%s\t%s:%s\t%s\tevent_id=%s\t%s\n", s->name, dl->id, dl->lsn ? dl->lsn : "",
                      dl->idx ? dl->idx : "", cols[DL_EVENT_TYPE] ? cols[DL_EVENT_TYPE] : "",
                      cols[DL_EVENT_ID] ? cols[DL_EVENT_ID] : "", dl->error ? dl->error : "");
    }
    fwrite(b.data, 1, b.len, stdout);
    wc_buf_free(&b);
}

int wc_sink_dlq_list(struct wc_sink *s, const char *id, int json, struct wc_err *err)
{
    const struct wc_dlq_ops *d = s->ops->dlq;
    struct wc_dead_letter *dl;
    void *hold;
    int n;

    if (d == NULL) {
        wc_err_set(err, WC_ERR_USAGE, "sink \"%s\" keeps no dead letters", s->name);
        return -1;
    }
    if (d->fetch(s, id, &dl, &n, &hold, err) < 0)
        return -1;
    for (int i = 0; i < n; i++)
        print_one(s, json, &dl[i]);
    d->release(dl, hold);
    return 0;
}

/*
 * Apply each dead letter again with the current configuration. One that applies is removed in the same
 * atomic unit as its writes (queue_removal, then a commit that leaves the cursor alone: s->retrying);
 * one that still fails stays with its new error; a failure that is not about the event stops the run.
 */
int wc_sink_dlq_retry(struct wc_sink *s, const char *id, int *retried, int *failed, struct wc_err *err)
{
    const struct wc_dlq_ops *d = s->ops->dlq;
    struct wc_dead_letter *dl;
    void *hold;
    int n, rc = 0;

    if (d == NULL) {
        wc_err_set(err, WC_ERR_USAGE, "sink \"%s\" keeps no dead letters", s->name);
        return -1;
    }
    if (d->fetch(s, id, &dl, &n, &hold, err) < 0)
        return -1;
    s->retrying = 1;
    for (int i = 0; i < n && rc == 0; i++) {
        const char *type = dl[i].col[DL_EVENT_TYPE];
        struct wc_event ev;
        struct wc_err e2 = {0};
        int nrule = 0;

        wc_dlq_event(&ev, &dl[i]);
        d->discard(s);
        if (d->prepare)
            d->prepare(s, &dl[i]);
        uint64_t before = s->applied;
        if (dl[i].applied && atoll(dl[i].applied) > 0) {
            /* Part of it took effect when it failed: running it again would apply that part twice. */
            (*failed)++;
            wc_warning("sink \"%s\": dead letter %s was partly applied (its first %s actions took effect): "
                       "not retried; apply the rest by hand, then remove it",
                       s->name, dl[i].id, dl[i].applied);
            json_decref(ev.payload_json);
            continue;
        } else if (type == NULL || !wc_config_rules(s->conf, type, &nrule) || nrule == 0) {
            wc_err_set(&e2, WC_ERR_DATA, "no projection of sink \"%s\" handles event type \"%s\"", s->name,
                       type ? type : "");
        } else if (s->ops->apply(s, &ev, &e2) == 0 && s->applied == before) {
            wc_err_set(&e2, WC_ERR_DATA, "no %s of sink \"%s\" applies to this event", d->action, s->name);
        } else if (e2.code == 0) {
            d->queue_removal(s, &dl[i]);
            if (s->ops->commit(s, s->cursor, &e2) == 0) {
                (*retried)++;
                json_decref(ev.payload_json);
                continue;
            }
        }
        json_decref(ev.payload_json);
        d->discard(s);
        if (e2.code != WC_ERR_DATA) {
            *err = e2;
            rc = -1;
            break;
        }
        (*failed)++;
        wc_warning("sink \"%s\": dead letter %s still fails: %s", s->name, dl[i].id, e2.msg);
        if (d->still_failing(s, &dl[i], e2.msg, err) < 0)
            rc = -1;
    }
    s->retrying = 0;
    d->release(dl, hold);
    return rc;
}
