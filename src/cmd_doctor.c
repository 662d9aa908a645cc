/*
 * cmd_doctor.c - `walcast doctor`: every check of the setup, one line each (OK, WARN or FAIL) with the
 * exact fix; --json; exit 0 only when nothing FAILs.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cli.h"
#include "doctor.h"

static const char *const level_names[] = {"OK", "WARN", "FAIL"};

void wc__doctor_add(struct doctor *d, const char *area, const char *check, int level, const char *fix,
                    const char *fmt, ...)
{
    char detail[1200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    /* Server messages end in a newline and may have more lines: one line per check. */
    for (char *p = detail; *p; p++)
        if (*p == '\n')
            *p = ' ';
    size_t n = strlen(detail);
    while (n > 0 && detail[n - 1] == ' ')
        detail[--n] = '\0';
    json_t *o = json_object();
    json_object_set_new(o, "area", json_string(area));
    json_object_set_new(o, "check", json_string(check));
    json_object_set_new(o, "status", json_string(level_names[level]));
    json_object_set_new(o, "detail", json_string(detail));
    json_object_set_new(o, "fix", fix && *fix ? json_string(fix) : json_null());
    json_array_append_new(d->checks, o);
    d->count[level]++;
}

int wc__cmd_doctor(const struct options *o)
{
    struct wc_err err = {0};
    struct wc_config *cfg = wc__cli_load_config(o, &err);

    if (cfg == NULL)
        return wc__cli_fail(&err);
    struct doctor d = {.cfg = cfg, .checks = json_array()};
    PGconn *src = wc__doctor_source(&d);
    if (src) {
        wc__doctor_outbox(&d, src);
        wc__doctor_events(&d, src);
        PQfinish(src);
    }
    wc__doctor_sinks(&d);

    if (o->json) {
        json_t *doc = json_object();
        json_object_set_new(doc, "ok", json_integer(d.count[DOC_OK]));
        json_object_set_new(doc, "warn", json_integer(d.count[DOC_WARN]));
        json_object_set_new(doc, "fail", json_integer(d.count[DOC_FAIL]));
        json_object_set(doc, "checks", d.checks);
        char *s = json_dumps(doc, JSON_INDENT(2));
        printf("%s\n", s ? s : "null");
        free(s);
        json_decref(doc);
    } else {
        size_t i;
        json_t *c;
        json_array_foreach(d.checks, i, c)
        {
            const char *fix = json_string_value(json_object_get(c, "fix"));
            printf("%-4s  %-14s %-24s %s%s%s\n", json_string_value(json_object_get(c, "status")),
                   json_string_value(json_object_get(c, "area")),
                   json_string_value(json_object_get(c, "check")),
                   json_string_value(json_object_get(c, "detail")), fix ? "; fix: " : "", fix ? fix : "");
        }
        printf("\n%d OK, %d WARN, %d FAIL\n", d.count[DOC_OK], d.count[DOC_WARN], d.count[DOC_FAIL]);
    }
    json_decref(d.checks);
    wc_config_free(cfg);
    return d.count[DOC_FAIL] ? EXIT_ERROR : EXIT_OK;
}
