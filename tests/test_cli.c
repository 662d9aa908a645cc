/* test_cli.c - the command line as PostgreSQL's tools have it: per-command help, -V, errors that name the
 * missing -c, timestamped (or JSON) log lines, validated overrides, a warning for a password on the
 * command line, private output files, one exit-code table, sizes for people, the man page. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdint.h>
#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "opsutil.h"
#include "testutil.h"
#include "walcast/log.h"
#include "walcast/lsn.h"

/* src/fmt.c (in the library the tests link). */
const char *wc__fmt_size(int64_t bytes, char *buf, size_t size);
const char *wc__fmt_duration(double seconds, char *buf, size_t size);

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char buf[256] = "";
    cr_assert_not_null(f, "%s", path);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strdup(buf);
}

/* Run walcast ARGS (stderr into the output too); exit code into *rc; the output (new string). */
static char *walcast(int *rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *walcast(int *rc, const char *fmt, ...)
{
    char *args, *cmd, *out = NULL;
    va_list ap;
    va_start(ap, fmt);
    cr_assert(vasprintf(&args, fmt, ap) > 0);
    va_end(ap);
    cr_assert(asprintf(&cmd, "%s %s 2>&1", wct_walcast(), args) > 0);
    *rc = wct_run(cmd, &out);
    free(cmd);
    free(args);
    return out;
}

Test(cli, each_command_has_its_help)
{
    int rc;
    char *out = walcast(&rc, "run --help");
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "--standby") && strstr(out, "-c, --config=FILE") && strstr(out, "Exit status:"),
              "%s", out);
    cr_assert_null(strstr(out, "--from-file"), "run's help is run's, not tail's:\n%s", out);
    free(out);

    out = walcast(&rc, "slot --help");
    cr_assert_eq(rc, 0, "slot --help is help, not an error: %s", out);
    cr_assert(strstr(out, "create") && strstr(out, "--force") && strstr(out, "--slot=NAME"), "%s", out);
    free(out);
    out = walcast(&rc, "slot status --help");
    cr_assert_eq(rc, 0, "%s", out);
    free(out);

    const char *cmds[] = {"tail", "status", "doctor", "check-config", "dlq"};
    const char *want[] = {"--endpos=LSN", "--watch", "FAIL", "-c, --config=FILE", "--sink=NAME"};
    for (int i = 0; i < 5; i++) {
        out = walcast(&rc, "%s --help", cmds[i]);
        cr_assert_eq(rc, 0, "%s --help: %s", cmds[i], out);
        cr_assert(strstr(out, want[i]), "%s --help:\n%s", cmds[i], out);
        free(out);
    }
    out = walcast(&rc, "help status");
    cr_assert(rc == 0 && strstr(out, "--watch"), "%s", out);
    free(out);
    out = walcast(&rc, "--help");
    cr_assert(rc == 0 && strstr(out, "walcast doctor") && strstr(out, "walcast status") &&
                  strstr(out, "3 replication slot missing"),
              "%s", out);
    free(out);
}

Test(cli, version)
{
    const char *forms[] = {"-V", "--version", "version", "run -V", "slot --version"};
    for (int i = 0; i < 5; i++) {
        int rc;
        char *out = walcast(&rc, "%s", forms[i]);
        cr_assert_eq(rc, 0, "%s: %s", forms[i], out);
        cr_assert(strncmp(out, "walcast 0.", 10) == 0, "%s: %s", forms[i], out);
        free(out);
    }
}

Test(cli, a_missing_config_is_named)
{
    const char *cmds[] = {"run", "status", "doctor", "check-config", "dlq list"};
    for (int i = 0; i < 5; i++) {
        int rc;
        char *out = walcast(&rc, "%s", cmds[i]);
        cr_assert_eq(rc, 2, "%s: %s", cmds[i], out);
        cr_assert(strstr(out, "needs a configuration file") && strstr(out, "-c FILE"), "%s: %s", cmds[i],
                  out);
        cr_assert_null(strstr(out, "no sinks configured"), "%s", out);
        free(out);
    }
}

Test(cli, an_option_of_another_command_is_refused)
{
    int rc;
    char *out = walcast(&rc, "run -c x.yaml --force");
    cr_assert_eq(rc, 2, "%s", out);
    cr_assert(strstr(out, "--force") && strstr(out, "walcast run") && strstr(out, "walcast run --help"), "%s",
              out);
    free(out);
    out = walcast(&rc, "run --bogus");
    cr_assert(rc == 2 && strstr(out, "unknown option \"--bogus\""), "%s", out);
    free(out);
    out = walcast(&rc, "slot");
    cr_assert(rc == 2 && strstr(out, "create, status, drop or check"), "%s", out);
    free(out);
}

/* Every line on stderr is a log line: "YYYY-MM-DD HH:MM:SS.mmmZ walcast LEVEL: ...". */
Test(cli, error_lines_have_timestamps)
{
    regex_t re;
    int rc;
    cr_assert_eq(regcomp(&re,
                         "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z walcast error: ",
                         REG_EXTENDED | REG_NEWLINE),
                 0);
    char *out = walcast(&rc, "check-config -c /nonexistent/walcast.yaml");
    cr_assert_eq(rc, 2, "%s", out);
    cr_assert_eq(regexec(&re, out, 0, NULL, 0), 0, "no timestamped error line:\n%s", out);
    free(out);
    out = walcast(&rc, "run -c x.yaml --bogus");
    cr_assert_eq(regexec(&re, out, 0, NULL, 0), 0, "usage errors too:\n%s", out);
    free(out);
    regfree(&re);
}

/* A password in --source: a warning naming PGPASSFILE and the environment; JSON log lines when asked;
 * the password itself nowhere. */
Test(cli, password_on_the_command_line)
{
    int rc;
    setenv("WALCAST_ENGINE_LOG_FORMAT", "json", 1);
    char *out =
        walcast(&rc, "slot status --source 'host=127.0.0.1 port=1 user=x password=Cl1Secret9' --slot s1");
    unsetenv("WALCAST_ENGINE_LOG_FORMAT");
    cr_assert_eq(rc, 1, "a connection refused is a runtime error: %s", out);
    cr_assert(strstr(out, "PGPASSFILE") && strstr(out, "PGPASSWORD") && strstr(out, "environment"), "%s",
              out);
    cr_assert_null(strstr(out, "Cl1Secret9"), "the password shows:\n%s", out);
    /* Each line is one JSON object with time, level and msg. */
    int lines = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        cr_assert_not_null(j, "not JSON: %s", line);
        cr_assert(json_is_string(json_object_get(j, "time")) && json_is_string(json_object_get(j, "level")) &&
                      json_is_string(json_object_get(j, "msg")),
                  "%s", line);
        json_decref(j);
        lines++;
    }
    cr_assert_geq(lines, 2, "a warning and an error");
    free(out);
}

Test(cli, slot_and_outbox_are_validated_like_the_configuration)
{
    int rc;
    char *out = walcast(&rc, "slot status --source 'host=127.0.0.1 port=1' --slot 'x\" LOGICAL 0/0 (; --'");
    cr_assert_eq(rc, 2, "%s", out);
    cr_assert(strstr(out, "option --slot: invalid slot name"), "%s", out);
    free(out);
    out = walcast(&rc, "tail --source 'host=127.0.0.1 port=1' --slot ok --outbox 'public.t;DROP'");
    cr_assert_eq(rc, 2, "%s", out);
    cr_assert(strstr(out, "option --outbox: invalid table"), "%s", out);
    free(out);
}

/* tail's output and cursor files are created 0600; the cursor's temporary file is not a predictable
 * name a symbolic link could sit on. */
Test(cli, tail_files_are_private, .timeout = 60)
{
    char *dsn = wct_create_db("clitail"), *slot = wct_unique("clitail"), *dir = wct_tmpdir(), *sql;
    wct_sql(dsn, "CREATE TABLE domain_events (event_id bigserial PRIMARY KEY, aggregate_type text NOT NULL, "
                 "aggregate_id text NOT NULL, event_type text NOT NULL, payload jsonb NOT NULL, "
                 "occurred_at timestamptz NOT NULL DEFAULT now())");
    cr_assert(asprintf(&sql, "SELECT pg_create_logical_replication_slot('%s', 'wal2json')", slot) > 0);
    wct_sql(dsn, sql);
    free(sql);
    wct_sql(dsn, "INSERT INTO domain_events (aggregate_type, aggregate_id, event_type, payload) "
                 "VALUES ('o', '1', 'X', '{}')");
    char *end = wct_sql_value(dsn, "SELECT pg_current_wal_lsn()");
    /* A symbolic link where the old code put its temporary cursor file. */
    char victim[512], link[512], outp[512], cur[512];
    snprintf(victim, sizeof(victim), "%s/victim", dir);
    snprintf(link, sizeof(link), "%s/out.jsonl.cursor.tmp", dir);
    snprintf(outp, sizeof(outp), "%s/out.jsonl", dir);
    snprintf(cur, sizeof(cur), "%s/out.jsonl.cursor", dir);
    ops_write(victim, "untouched\n");
    cr_assert_eq(symlink(victim, link), 0);
    mode_t old = umask(0022);
    int rc;
    char *out = walcast(&rc, "tail --source '%s' --slot %s -o %s -E %s", dsn, slot, outp, end);
    umask(old);
    cr_assert_eq(rc, 0, "%s", out);
    struct stat st;
    cr_assert_eq(stat(outp, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "output mode %o", st.st_mode & 0777);
    cr_assert_eq(stat(cur, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "cursor mode %o", st.st_mode & 0777);
    char *v = read_file(victim);
    cr_assert_str_eq(v, "untouched\n", "the symbolic link was written through");
    free(v);
    DIR *d = opendir(dir);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *ok[] = {".", "..", "victim", "out.jsonl", "out.jsonl.cursor", "out.jsonl.cursor.tmp"};
        int known = 0;
        for (int i = 0; i < 6; i++)
            known |= strcmp(de->d_name, ok[i]) == 0;
        cr_assert(known, "left behind: %s", de->d_name);
    }
    closedir(d);
    free(out);
    cr_assert(asprintf(&sql, "SELECT pg_drop_replication_slot('%s')", slot) > 0);
    wct_sql(dsn, sql);
    free(sql);
    free(end);
    free(dsn);
    free(slot);
    free(dir);
}

/* One table for every command: a missing slot is 3 in slot status and slot drop, as in run. */
Test(cli, exit_codes_are_one_table, .timeout = 60)
{
    int rc;
    char *out = walcast(&rc, "slot status --source '%s' --slot no_such_slot_here", wct_pg_dsn());
    cr_assert_eq(rc, 3, "%s", out);
    cr_assert(strstr(out, "does not exist") && strstr(out, "walcast slot create"), "%s", out);
    free(out);
    out = walcast(&rc, "slot drop --source '%s' --slot no_such_slot_here", wct_pg_dsn());
    cr_assert_eq(rc, 3, "%s", out);
    free(out);
    out = walcast(&rc, "slot status --source 'host=127.0.0.1 port=1' --slot s");
    cr_assert_eq(rc, 1, "a server that cannot be reached: %s", out);
    free(out);
    char *dir = wct_tmpdir(), *cfg, *text;
    cr_assert(asprintf(&cfg, "%s/walcast.yaml", dir) > 0);
    cr_assert(asprintf(&text, "source:\n  dsn: \"%s\"\n  slot: no_such_slot_here\n", wct_pg_dsn()) > 0);
    ops_write(cfg, text);
    out = walcast(&rc, "status -c %s", cfg);
    cr_assert_eq(rc, 3, "status of a missing slot: %s", out);
    cr_assert(strstr(out, "DOES NOT EXIST") && strstr(out, "walcast slot create"), "%s", out);
    free(out);
    out = walcast(&rc, "doctor -c %s", cfg);
    cr_assert_eq(rc, 1, "doctor: a missing slot is a FAIL: %s", out);
    cr_assert(strstr(out, "FAIL  source         slot") && strstr(out, "walcast slot create -c"), "%s", out);
    free(out);
    unlink(cfg);
    rmdir(dir);
    free(text);
    free(cfg);
    free(dir);
}

Test(cli, sizes_for_people)
{
    char b[32];
    cr_assert_str_eq(wc__fmt_size(0, b, sizeof(b)), "0 bytes");
    cr_assert_str_eq(wc__fmt_size(10239, b, sizeof(b)), "10239 bytes");
    cr_assert_str_eq(wc__fmt_size(10240, b, sizeof(b)), "10 kB");
    cr_assert_str_eq(wc__fmt_size(4294967296L, b, sizeof(b)), "4096 MB");
    cr_assert_str_eq(wc__fmt_size(64L << 30, b, sizeof(b)), "64 GB");
    cr_assert_str_eq(wc__fmt_duration(42, b, sizeof(b)), "42 s");
    cr_assert_str_eq(wc__fmt_duration(3600, b, sizeof(b)), "60 min");
    cr_assert_str_eq(wc__fmt_duration(3 * 3600 + 20 * 60, b, sizeof(b)), "3 h 20 min");
    int rc;
    char *dsn = wct_create_db("clisize"), *slot = wct_unique("clisize"), *sql;
    cr_assert(asprintf(&sql, "SELECT pg_create_logical_replication_slot('%s', 'wal2json')", slot) > 0);
    wct_sql(dsn, sql);
    free(sql);
    char *out = walcast(&rc, "slot status --source '%s' --slot %s", dsn, slot);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "safe_wal_size:") && strstr(out, " bytes (") && strstr(out, " MB)"),
              "a size for people beside the bytes:\n%s", out);
    free(out);
    cr_assert(asprintf(&sql, "SELECT pg_drop_replication_slot('%s')", slot) > 0);
    wct_sql(dsn, sql);
    free(sql);
    free(slot);
    free(dsn);
}

/* cmake --install puts the man page where man finds it; it documents every command and exit code. */
Test(cli, man_page_is_installed, .timeout = 120)
{
    char *build = strdup(wct_walcast()), *dir = wct_tmpdir(), *cmd, *out = NULL;
    *strrchr(build, '/') = '\0';
    cr_assert(asprintf(&cmd, "cmake --install %s --prefix %s 2>&1", build, dir) > 0);
    int rc = wct_run(cmd, &out);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    free(cmd);
    cr_assert(asprintf(&cmd, "%s/share/man/man1/walcast.1", dir) > 0);
    char *page = NULL, *cat;
    cr_assert(asprintf(&cat, "cat %s", cmd) > 0);
    cr_assert_eq(wct_run(cat, &page), 0, "not installed: %s", cmd);
    const char *want[] = {".TH WALCAST 1",  "run", "tail",        "slot",          "status", "doctor",
                          "check\\-config", "dlq", "EXIT STATUS", "metrics.listen"};
    for (int i = 0; i < 10; i++)
        cr_assert(strstr(page, want[i]), "the man page lacks \"%s\"", want[i]);
    free(page);
    free(cat);
    free(cmd);
    cr_assert(asprintf(&cmd, "rm -rf %s", dir) > 0);
    wct_run(cmd, NULL);
    free(cmd);
    free(dir);
    free(build);
}

/* The net under the messages: a secret registered from the configuration is masked in every line. */
Test(cli, log_lines_mask_secrets)
{
    char path[] = "/tmp/walcast-log-XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    cr_assert(fd >= 0 && saved >= 0);
    fflush(stderr);
    dup2(fd, 2);
    wc_log_add_secret("hunter2-Secret");
    wc_log_raw(WC_LOG_ERROR, "could not connect with \"password=hunter2-Secret host=x\"");
    wc_log_format = WC_LOG_JSON;
    wc_log_raw(WC_LOG_DEBUG, "again hunter2-Secret and hunter2-Secret");
    wc_log_format = WC_LOG_PLAIN;
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char *text = read_file(path);
    unlink(path);
    close(fd);
    cr_assert_null(strstr(text, "hunter2"), "%s", text);
    cr_assert(strstr(text, "password=******** host=x") && strstr(text, "\"again ******** and ********\""),
              "%s", text);
    free(text);
}
