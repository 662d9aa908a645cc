/*
 * poison.c - an outbox row that no projection can be given: a null event type, a configured column
 * missing from the row (renamed or dropped). It used to stop the engine on every start, while the slot
 * kept its WAL; now it is a dead letter like any event that cannot be applied: in the dead-letter sink,
 * with its position and the reason, under engine.on_error; the stream goes on.
 */
#include "engine_int.h"
#include "walcast/log.h"

int wc__route_poison(struct session *s, struct wc_sink *k, struct wc_event *ev, struct wc_err *err)
{
    if (k->conf == NULL) {
        /* tail prints every outbox row as it is. */
        wc_warning("outbox row at " WC_LSN_FMT ":%lld: %s", WC_LSN_ARGS(ev->pos.lsn),
                   (long long)ev->pos.index, ev->poison);
        return k->ops->apply(k, ev, err);
    }
    if (k != s->dead_letter_sink)
        return 0;
    return wc_sink_handle_error(k, NULL, ev, s->cfg->on_error, ev->poison, err);
}
