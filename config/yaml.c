/* yaml.c - the YAML side of the configuration walker: nodes, lines, keys, messages, environment names,
 * and a parse that survives libfyaml's crashes on malformed input. */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config_int.h"

/* ---- YAML helpers ---- */

/*
 * The 1-based line of a node, or fallback. libfyaml 0.7 exposes marks only for scalar tokens, so a
 * collection is placed at its first scalar (a mapping's first key, a sequence's first item).
 */
int cf_line_of(struct fy_node *n, int fallback)
{
    while (n != NULL) {
        switch (fy_node_get_type(n)) {
        case FYNT_SCALAR: {
            struct fy_token *t = fy_node_get_scalar_token(n);
            const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
            return m ? m->line + 1 : fallback;
        }
        case FYNT_MAPPING: {
            void *it = NULL;
            struct fy_node_pair *p = fy_node_mapping_iterate(n, &it);
            n = p ? fy_node_pair_key(p) : NULL;
            break;
        }
        case FYNT_SEQUENCE: {
            void *it = NULL;
            n = fy_node_sequence_iterate(n, &it);
            break;
        }
        }
    }
    return fallback;
}

/*
 * The line to report for a value: a scalar's own line; for a collection or a null, the line of the key
 * that holds it (keyline), which is where the user looks for "expected a scalar, got a mapping".
 */
int cf_value_line(struct fy_node *v, int keyline)
{
    if (v != NULL && fy_node_get_type(v) == FYNT_SCALAR)
        return cf_line_of(v, keyline);
    return keyline;
}

/* The text of a scalar node, or NULL for a missing node, a collection or a scalar without text. */
const char *cf_scalar_text(struct fy_node *n)
{
    if (n == NULL || fy_node_get_type(n) != FYNT_SCALAR)
        return NULL;
    return fy_node_get_scalar0(n);
}

/* Nonzero for a YAML null: a missing or empty value, "~" or "null" written plain. */
int cf_is_null(struct fy_node *n)
{
    if (n == NULL || fy_node_is_null(n))
        return 1;
    if (fy_node_get_type(n) != FYNT_SCALAR || fy_node_get_style(n) != FYNS_PLAIN)
        return 0;
    const char *s = fy_node_get_scalar0(n);
    return s && (strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
                 strcmp(s, "NULL") == 0);
}

const char *cf_kind_name(struct fy_node *n)
{
    if (cf_is_null(n))
        return "null";
    switch (fy_node_get_type(n)) {
    case FYNT_MAPPING:
        return "a mapping";
    case FYNT_SEQUENCE:
        return "a list";
    default:
        return "a scalar";
    }
}

/* "FILE:LINE: key \"KEY\": message", or without the key part when key is NULL. */
int cf_fail(struct ctx *c, int line, const char *key, const char *fmt, ...)
{
    char msg[768];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (key)
        wc_err_set(c->err, WC_ERR_CONFIG, "%s:%d: key \"%s\": %s", c->file ? c->file : "(none)", line, key,
                   msg);
    else
        wc_err_set(c->err, WC_ERR_CONFIG, "%s:%d: %s", c->file ? c->file : "(none)", line, msg);
    return -1;
}

/* An error in a value from the environment: the variable takes the place of FILE:LINE. */
int cf_fail_env(struct ctx *c, const char *var, const char *key, const char *fmt, ...)
{
    char msg[768];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    wc_err_set(c->err, WC_ERR_CONFIG, "environment variable %s: key \"%s\": %s", var, key, msg);
    return -1;
}

int cf_fail_at(struct ctx *c, const struct src *s, const char *key, const char *fmt, ...)
{
    char msg[768];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (s->option) {
        wc_err_set(c->err, WC_ERR_USAGE, "option %s: %s", s->option, msg);
        return -1;
    }
    if (s->var)
        return cf_fail_env(c, s->var, key, "%s", msg);
    return cf_fail(c, s->line, key, "%s", msg);
}

/* Format a key path into buf (KEYLEN bytes); a longer path is cut short, which only shortens a message. */
void cf_mkkey(char *buf, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, KEYLEN, fmt, ap);
    va_end(ap);
}

/* WALCAST_ + key in upper case, '.' and '-' as '_'. */
void cf_env_name(const char *key, char *buf, size_t size)
{
    size_t o = (size_t)snprintf(buf, size, "WALCAST_");

    for (const char *k = key; *k && o + 1 < size; k++)
        buf[o++] = (*k == '.' || *k == '-') ? '_' : (char)toupper((unsigned char)*k);
    buf[o] = '\0';
}

/* "one, two or three" from a NULL-terminated list, or an option table. */
void cf_list_names(const char *const *names, const struct opt *opts, char *buf, size_t size)
{
    size_t o = 0, n = 0;

    buf[0] = '\0';
    while (names ? names[n] != NULL : opts[n].name != NULL)
        n++;
    for (size_t i = 0; i < n && o < size; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
        o += (size_t)snprintf(buf + o, size - o, "%s%s", sep, names ? names[i] : opts[i].name);
    }
}

/*
 * Check that node is a mapping (a null counts as empty) whose keys are all scalars in the allowed set
 * (names or opts). Returns 0 or -1 with err naming the first unknown key.
 */
int cf_check_keys(struct ctx *c, struct fy_node *node, int line, const char *prefix, const char *const *names,
                  const struct opt *opts)
{
    char key[KEYLEN], hint[256];
    struct fy_node_pair *p;
    void *it = NULL;

    if (cf_is_null(node))
        return 0;
    if (fy_node_get_type(node) != FYNT_MAPPING)
        return cf_fail(c, cf_value_line(node, line), prefix[0] ? prefix : NULL, "expected a mapping, got %s",
                       cf_kind_name(node));
    while ((p = fy_node_mapping_iterate(node, &it)) != NULL) {
        struct fy_node *k = fy_node_pair_key(p);
        const char *ks = cf_scalar_text(k);
        int found = 0;
        for (int i = 0; ks && (names ? names[i] != NULL : opts[i].name != NULL); i++)
            if (strcmp(ks, names ? names[i] : opts[i].name) == 0)
                found = 1;
        if (found)
            continue;
        cf_mkkey(key, "%s%s%s", prefix, prefix[0] ? "." : "", ks ? ks : "?");
        cf_list_names(names, opts, hint, sizeof(hint));
        return cf_fail(c, cf_line_of(k, line), key, "unknown key (expected %s)", hint);
    }
    return 0;
}

/* The value node for key name in mapping node (NULL when absent or node is not a mapping). */
struct fy_node *cf_lookup(struct fy_node *node, const char *name, int *keyline, int fallback)
{
    struct fy_node_pair *p;

    *keyline = fallback;
    if (node == NULL || fy_node_get_type(node) != FYNT_MAPPING)
        return NULL;
    p = fy_node_mapping_lookup_pair_by_string(node, name, strlen(name));
    if (p == NULL)
        return NULL;
    *keyline = cf_line_of(fy_node_pair_key(p), fallback);
    return fy_node_pair_value(p);
}

/*
 * The text of a scalar option: the environment variable for key when set, else the node's scalar, else
 * NULL. *present says whether the file had the key. Returns 0 or -1 (a non-scalar or null value).
 */
int cf_scalar_value(struct ctx *c, struct fy_node *map, const char *name, const char *key, int fallback,
                    const char **out, struct src *where, char *var, size_t varsize)
{
    int keyline;
    struct fy_node *v = cf_lookup(map, name, &keyline, fallback);
    int present = v != NULL || (map && fy_node_mapping_lookup_pair_by_string(map, name, strlen(name)));

    cf_env_name(key, var, varsize);
    where->var = NULL;
    where->option = NULL;
    where->line = cf_value_line(v, keyline);
    *out = NULL;
    const char *env = getenv(var);
    if (env != NULL) {
        where->var = var;
        *out = env;
        return 0;
    }
    if (!present)
        return 0;
    if (cf_is_null(v))
        return cf_fail(c, where->line, key, "missing value");
    if (cf_scalar_text(v) == NULL)
        return cf_fail(c, where->line, key, "expected a scalar value, got %s", cf_kind_name(v));
    *out = cf_scalar_text(v);
    return 0;
}

/* Index of s in a NULL-terminated list, or -1. */
int cf_find_name(const char *const *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

/* Nonzero when s is a slot or sink name: [a-z0-9_]{1,max}. */
int cf_valid_name(const char *s, size_t max)
{
    size_t n = strlen(s);

    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    return 1;
}

/* An identifier part of a table name: letters, digits, '_', '$' and UTF-8. */
int cf_valid_ident(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!(isalnum(ch) || ch == '_' || ch == '$' || ch >= 0x80))
            return 0;
    }
    return 1;
}

/* Parse a decimal integer; 0 or -1 when s is not one. */
int cf_parse_int(const char *s, long long *out)
{
    char *end;

    if (*s == '\0' || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    *out = strtoll(s, &end, 10);
    return (errno || *end != '\0') ? -1 : 0;
}

static void cf_quiet_diag(struct fy_diag *diag, void *user, const char *buf, size_t len) {}

/*
 * libfyaml 0.7.12 (Debian bookworm) dies with SIGSEGV on some malformed input (found by fuzz_config,
 * e.g. "? e:<TAB>?": fy_parse_cleanup -> fy_indent_vacuum_internal). A configuration file with a typo
 * must get an error, not a crash: the file is parsed once in a child process first, and a child that
 * does not come back normally means the parser cannot be trusted with this file.
 */
static int cf_parse_preflight(struct ctx *c, const char *path)
{
    pid_t pid;
    int status;

    fflush(NULL);
    pid = fork();
    if (pid < 0)
        return 0; /* no child to spare: parse directly */
    if (pid == 0) {
        signal(SIGALRM, SIG_DFL); /* an inherited handler (a fuzzer's, say) must not keep it alive */
        alarm(10); /* and some inputs make it spin: a configuration file parses in milliseconds */
        struct fy_parse_cfg pcfg;
        struct fy_diag_cfg dcfg;
        fy_diag_cfg_default(&dcfg);
        dcfg.fp = NULL;
        dcfg.output_fn = cf_quiet_diag;
        memset(&pcfg, 0, sizeof(pcfg));
        pcfg.flags = FYPCF_QUIET | FYPCF_RESOLVE_DOCUMENT | FYPCF_JSON_NONE;
        pcfg.diag = fy_diag_create(&dcfg);
        fy_document_destroy(fy_document_build_from_file(&pcfg, path));
        fy_diag_destroy(pcfg.diag);
        _exit(0);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    wc_err_set(c->err, WC_ERR_CONFIG,
               "%s: the YAML parser failed on this file (libfyaml %s): check its syntax, e.g. stray "
               "\"?\" or tabs in indentation",
               path, WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM ? "did not finish" : "crashed");
    return -1;
}

/*
 * Parse path into a document. Returns 0 with *doc (NULL for an empty file) or -1 with err naming the
 * file and line of the first YAML error.
 */
int cf_parse_yaml(struct ctx *c, const char *path, struct fy_document **doc)
{
    struct fy_diag_cfg dcfg;
    struct fy_parse_cfg pcfg;
    struct fy_diag *diag;
    FILE *fp;

    *doc = NULL;
    fp = fopen(path, "r");
    if (fp == NULL) {
        wc_err_set(c->err, WC_ERR_CONFIG, "could not open configuration file \"%s\": %s", path,
                   strerror(errno));
        return -1;
    }
    if (cf_parse_preflight(c, path) < 0) {
        fclose(fp);
        return -1;
    }
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = cf_quiet_diag;
    diag = fy_diag_create(&dcfg);
    if (diag == NULL) {
        fclose(fp);
        wc_err_set(c->err, WC_ERR_CONFIG, "%s: could not create the YAML parser", path);
        return -1;
    }
    fy_diag_set_collect_errors(diag, true);
    memset(&pcfg, 0, sizeof(pcfg));
    pcfg.flags = FYPCF_QUIET | FYPCF_RESOLVE_DOCUMENT | FYPCF_JSON_NONE;
    pcfg.diag = diag;
    *doc = fy_document_build_from_fp(&pcfg, fp);
    fclose(fp);
    if (*doc == NULL) {
        void *it = NULL;
        struct fy_diag_error *e = fy_diag_errors_iterate(diag, &it);
        if (e != NULL) {
            cf_fail(c, e->line, NULL, "invalid YAML: %s", e->msg);
            fy_diag_destroy(diag);
            return -1;
        }
        /* No document and no error: the file is empty or holds only comments. */
    }
    fy_diag_destroy(diag);
    return 0;
}
