/*
 * jsonl.c - the `walcast tail` sink: one JSON line per event, to a file or stdout, with a cursor file.
 *
 * Exactly once into a file: a batch is written and fsync'ed, then the cursor file (position and the
 * output file's size) is written to a temp file, fsync'ed and renamed over the old one. At open, an
 * output longer than the cursor says was cut short by a crash after its write and before its cursor:
 * it is truncated back, and the stream resends those events. Into a pipe the same order gives at
 * least once (a crash between the write and the rename repeats at most that batch).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "walcast/buf.h"
#include "walcast/log.h"
#include "walcast/sink.h"

struct jsonl {
    char *path;        /* "-" = stdout */
    char *cursor_path; /* NULL = no cursor */
    int fd;
    int regular;       /* output is a regular file: fsync and truncate apply */
    struct wc_buf out; /* the batch */
    int64_t size;      /* output size after the last commit */
    struct wc_pos cursor;
    int has_cursor;
    int has_size; /* a cursor file of a run that has printed nothing yet ("none SIZE"): size is known */
};

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Cursor file: "X/X:idx size\n", or "none size\n" before the first batch. */
static int read_cursor_file(struct jsonl *j, struct wc_err *err)
{
    FILE *f = fopen(j->cursor_path, "r");
    char pos[64];
    long long size = -1;

    j->has_cursor = 0;
    if (f == NULL) {
        if (errno == ENOENT)
            return 0;
        wc_err_set(err, WC_ERR_IO, "could not open cursor file \"%s\": %s", j->cursor_path, strerror(errno));
        return -1;
    }
    int n = fscanf(f, "%63s %lld", pos, &size);
    fclose(f);
    if (n == 2 && strcmp(pos, "none") == 0) {
        j->has_size = 1;
        j->size = size;
        return 0;
    }
    if (n < 1 || wc_pos_parse(pos, &j->cursor) < 0) {
        wc_err_set(err, WC_ERR_CONFIG, "cursor file \"%s\" is corrupt: remove it to start from the slot",
                   j->cursor_path);
        return -1;
    }
    j->has_cursor = 1;
    j->size = size;
    return 0;
}

static int write_cursor_line(struct jsonl *j, const char *pos, struct wc_err *err)
{
    char tmp[4096], line[128];
    int fd, n;

    /* A temporary file of an unpredictable name in the cursor's folder (rename stays within one file
     * system), created 0600 with O_EXCL: an existing file or symbolic link there is never written through. */
    if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", j->cursor_path) >= (int)sizeof(tmp)) {
        wc_err_set(err, WC_ERR_IO, "cursor file name \"%s\" is too long", j->cursor_path);
        return -1;
    }
    n = snprintf(line, sizeof(line), "%s %" PRId64 "\n", pos, j->regular ? j->size : (int64_t)-1);
    fd = mkstemp(tmp);
    if (fd < 0) {
        wc_err_set(err, WC_ERR_IO, "could not create a temporary file beside cursor file \"%s\": %s",
                   j->cursor_path, strerror(errno));
        return -1;
    }
    if (write_all(fd, line, (size_t)n) < 0 || fsync(fd) < 0) {
        wc_err_set(err, WC_ERR_IO, "could not write cursor file \"%s\": %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, j->cursor_path) < 0) {
        wc_err_set(err, WC_ERR_IO, "could not rename \"%s\" to \"%s\": %s", tmp, j->cursor_path,
                   strerror(errno));
        unlink(tmp);
        return -1;
    }
    /* The rename itself is durable once the directory is synced. */
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", j->cursor_path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

static int write_cursor_file(struct jsonl *j, struct wc_pos pos, struct wc_err *err)
{
    char p[40];
    return write_cursor_line(j, wc_pos_format(pos, p), err);
}

static int jsonl_open(struct wc_sink *s, struct wc_err *err)
{
    struct jsonl *j = s->priv;
    struct stat st;

    if (j->cursor_path && read_cursor_file(j, err) < 0)
        return -1;
    if (strcmp(j->path, "-") == 0) {
        j->fd = STDOUT_FILENO;
    } else {
        /* Events are data someone may not want every user to read: only the owner, as for the cursor. */
        j->fd = open(j->path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (j->fd < 0) {
            wc_err_set(err, WC_ERR_IO, "could not open output file \"%s\": %s", j->path, strerror(errno));
            return -1;
        }
    }
    j->regular = fstat(j->fd, &st) == 0 && S_ISREG(st.st_mode);
    if (j->regular) {
        if ((j->has_cursor || j->has_size) && j->size >= 0 && st.st_size > j->size) {
            wc_info("output file \"%s\": dropping %lld bytes written after the last cursor", j->path,
                    (long long)(st.st_size - j->size));
            if (ftruncate(j->fd, j->size) < 0) {
                wc_err_set(err, WC_ERR_IO, "could not truncate \"%s\": %s", j->path, strerror(errno));
                return -1;
            }
        } else {
            j->size = st.st_size;
        }
        /* Nothing printed by this output's stream yet: record where its output starts before the first
         * batch, or a crash between that batch and its cursor would leave it there to be printed again. */
        if (j->cursor_path && !j->has_cursor && !j->has_size) {
            if (write_cursor_line(j, "none", err) < 0)
                return -1;
            j->has_size = 1;
        }
    }
    return 0;
}

static int jsonl_read_cursor(struct wc_sink *s, struct wc_pos *out, int *found, struct wc_err *err)
{
    struct jsonl *j = s->priv;
    *found = j->has_cursor;
    *out = j->has_cursor ? j->cursor : WC_POS_NONE;
    return 0;
}

static void put_val(struct wc_buf *b, const struct wc_val *v)
{
    if (v->kind == WC_VAL_NULL)
        wc_buf_puts(b, "null");
    else if (v->kind == WC_VAL_NUMBER)
        wc_buf_append(b, v->text, v->len);
    else
        wc_buf_json_string(b, v->text, v->len);
}

static int jsonl_apply(struct wc_sink *s, struct wc_event *ev, struct wc_err *err)
{
    struct jsonl *j = s->priv;
    struct wc_buf *b = &j->out;
    struct wc_err perr;
    char lsn[WC_LSN_STRLEN];
    static const char *const keys[WC_COL_COUNT] = {
        "{\"event_id\":",   ",\"aggregate_type\":", ",\"aggregate_id\":",
        ",\"event_type\":", ",\"payload\":",        ",\"occurred_at\":",
    };

    for (int k = 0; k < WC_COL_COUNT; k++) {
        wc_buf_puts(b, keys[k]);
        if (k == WC_COL_PAYLOAD && ev->col[k].kind == WC_VAL_STRING && wc_event_payload(ev, &perr) != NULL) {
            /* jsonb text from the server is JSON already: keep it verbatim (numbers keep their digits).
             * A json (not jsonb) column keeps its author's line breaks: those would split the line. */
            if (memchr(ev->col[k].text, '\n', ev->col[k].len) == NULL &&
                memchr(ev->col[k].text, '\r', ev->col[k].len) == NULL) {
                wc_buf_append(b, ev->col[k].text, ev->col[k].len);
            } else {
                char *compact = json_dumps(ev->payload_json, JSON_COMPACT | JSON_ENCODE_ANY);
                wc_buf_puts(b, compact ? compact : "null");
                free(compact);
            }
        } else
            put_val(b, &ev->col[k]);
    }
    wc_buf_printf(b, ",\"lsn\":\"%s\",\"commit_time\":", wc_lsn_format(ev->pos.lsn, lsn));
    if (ev->commit_time && *ev->commit_time)
        wc_buf_json_string(b, ev->commit_time, strlen(ev->commit_time));
    else
        wc_buf_puts(b, "null");
    wc_buf_puts(b, "}\n");
    s->applied++;
    return 0;
}

static int jsonl_dead_letter(struct wc_sink *s, struct wc_commit *in, struct wc_event *ev, const char *error,
                             struct wc_err *err)
{
    wc_warning("tail: event at " WC_LSN_FMT ":%lld: %s", WC_LSN_ARGS(ev->pos.lsn), (long long)ev->pos.index,
               error);
    return 0;
}

static int jsonl_commit(struct wc_sink *s, struct wc_pos cursor, struct wc_err *err)
{
    struct jsonl *j = s->priv;

    if (j->out.len > 0) {
        if (write_all(j->fd, j->out.data, j->out.len) < 0) {
            wc_err_set(err, WC_ERR_INTERNAL, "could not write to \"%s\": %s", j->path, strerror(errno));
            return -1;
        }
        if (j->regular && j->cursor_path && fdatasync(j->fd) < 0) {
            wc_err_set(err, WC_ERR_INTERNAL, "could not fsync \"%s\": %s", j->path, strerror(errno));
            return -1;
        }
        j->size += (int64_t)j->out.len;
        wc_buf_reset(&j->out);
    }
    if (j->cursor_path && write_cursor_file(j, cursor, err) < 0) {
        err->code = WC_ERR_INTERNAL;
        return -1;
    }
    j->cursor = cursor;
    j->has_cursor = 1;
    return 0;
}

static void jsonl_close(struct wc_sink *s)
{
    struct jsonl *j = s->priv;
    if (j == NULL)
        return;
    if (j->fd > STDERR_FILENO)
        close(j->fd);
    j->fd = -1;
    wc_buf_reset(&j->out); /* an uncommitted batch is dropped: the stream sends it again */
}

const struct wc_sink_ops wc_sink_jsonl_ops = {
    .type = "jsonl",
    .open = jsonl_open,
    .read_cursor = jsonl_read_cursor,
    .apply = jsonl_apply,
    .dead_letter = jsonl_dead_letter,
    .commit = jsonl_commit,
    .close = jsonl_close,
};

struct wc_sink *wc_sink_jsonl_new(const struct wc_config *cfg, const char *path, const char *cursor_path)
{
    struct wc_sink *s = calloc(1, sizeof(*s));
    struct jsonl *j = calloc(1, sizeof(*j));

    if (s == NULL || j == NULL) {
        free(s);
        free(j);
        return NULL;
    }
    j->path = strdup(path ? path : "-");
    j->cursor_path = cursor_path ? strdup(cursor_path) : NULL;
    j->fd = -1;
    s->ops = &wc_sink_jsonl_ops;
    s->cfg = cfg;
    s->name = "tail";
    s->priv = j;
    s->cursor = WC_POS_NONE;
    return s;
}

/* Called by wc_sink_free through a type check: the jsonl sink owns more than its ops' close frees. */
void wc_sink_jsonl_free(struct wc_sink *s);
void wc_sink_jsonl_free(struct wc_sink *s)
{
    struct jsonl *j = s->priv;
    jsonl_close(s);
    free(j->path);
    free(j->cursor_path);
    wc_buf_free(&j->out);
    free(j);
    s->priv = NULL;
}
