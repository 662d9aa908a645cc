/* replay.c - `walcast tail --from-file`: decode a captured pg_recvlogical wal2json v2 stream, no server. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walcast/decode.h"
#include "walcast/engine.h"

int wc_engine_replay_file(const struct wc_config *cfg, struct wc_sink *sink, const char *path,
                          struct wc_err *err)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    struct wc_decoder *dec;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = -1;
    struct wc_pos pos = WC_POS_NONE;

    if (f == NULL) {
        wc_err_set(err, WC_ERR_IO, "could not open file \"%s\": %s", path, strerror(errno));
        return -1;
    }
    dec = wc_decoder_new(cfg->outbox_schema, cfg->outbox_table, (const char *const *)cfg->columns,
                         cfg->msg_prefix);
    if (sink->ops->open(sink, err) < 0)
        goto done;
    int pending = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        struct wc_decoded d;
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;
        if (wc_decode_message(dec, line, (size_t)n, 0, &d, err) < 0) {
            wc_err_prefix(err, "%s:%ld", path, lineno);
            goto done;
        }
        if (d.kind == WC_DECODED_EVENT) {
            if (sink->ops->apply(sink, &d.event, err) < 0)
                goto done;
            pos = d.event.pos;
            if (++pending >= cfg->batch_max_events) {
                if (sink->ops->commit(sink, pos, err) < 0)
                    goto done;
                pending = 0;
            }
        }
    }
    if (sink->ops->commit(sink, pos, err) < 0)
        goto done;
    rc = 0;
done:
    free(line);
    wc_decoder_free(dec);
    if (sink->ops->close)
        sink->ops->close(sink);
    if (f != stdin)
        fclose(f);
    return rc;
}
