/* conf: agent.conf interpreted from the generic block tree, collector
 * blocks and their getters, and the normalised form.
 *
 * A configuration is built into a fresh struct config and only returned
 * when no error was found, so a reload that fails keeps the running one.
 * Relative paths resolve against the directory of the config file (the
 * current directory for config_load_string). Rules files named by the
 * agent's rules globs are loaded in glob(3)'s sorted order, pattern after
 * pattern, each file once; rule blocks in the config itself come after. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <glob.h>
#include <strings.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/xalloc.h"
#include "internal.h"

#define DEFAULT_STATE_DIR "/var/lib/weibao"
#define DEFAULT_CONTROL_SOCKET "/run/weibao/control.sock"
#define DEFAULT_RULES "rules.d/*.rules"
#define DEFAULT_TIMEOUT_USEC (10ULL * 1000000)
#define DEFAULT_RETRY_USEC (30ULL * 1000000)
#define DEFAULT_OCCURRENCE_USEC (60ULL * 1000000)

struct conf_setting {
        char *key;
        struct tok val; /* type, text (owned), number, duration, position */
        bool used;
        bool repeat_reported; /* "given twice" already said for this one */
};

struct conf_block {
        char *name;
        char *file;
        unsigned line, col;
        struct conf_setting *settings;
        size_t n;
};

static void conf_block_free(struct conf_block *b)
{
        if (!b)
                return;
        for (size_t i = 0; i < b->n; i++) {
                free(b->settings[i].key);
                free(b->settings[i].val.text);
        }
        free(b->settings);
        free(b->name);
        free(b->file);
        free(b);
}

const char *conf_block_name(const struct conf_block *b)
{
        return b->name;
}

static int setting_error(const struct conf_block *b, const struct conf_setting *s, struct diag *d,
                         const char *expected);

static struct conf_setting *setting_find(const struct conf_block *b, const char *key)
{
        for (size_t i = 0; i < b->n; i++)
                if (strcmp(b->settings[i].key, key) == 0) {
                        b->settings[i].used = true;
                        return &b->settings[i];
                }
        return NULL;
}

/* The one setting named key for a single-valued getter: a repeat is an
 * error (only settings read with conf_block_get_strings may repeat). */
static int setting_single(const struct conf_block *b, const char *key, struct diag *d, const struct conf_setting **ret)
{
        struct conf_setting *first = setting_find(b, key);
        int r = 0;

        if (!first)
                return -ENOENT;
        for (struct conf_setting *s = first + 1; s < b->settings + b->n; s++)
                if (strcmp(s->key, key) == 0) {
                        s->used = true;
                        if (!s->repeat_reported)
                                diag_add(d, b->file, s->val.line, s->val.col,
                                         "duplicate setting '%s' in collector %s (first at line %u)", key, b->name,
                                         first->val.line);
                        s->repeat_reported = true;
                        r = -EINVAL;
                }
        *ret = first;
        return r;
}

int conf_block_get_strings(const struct conf_block *b, const char *key, const char ***ret, size_t *ret_n,
                           struct diag *d)
{
        const char **v;
        size_t n = 0;
        int r = 0;

        for (size_t i = 0; i < b->n; i++)
                if (strcmp(b->settings[i].key, key) == 0)
                        n++;
        if (n == 0)
                return -ENOENT;
        v = xcalloc(n, sizeof *v);
        if (!v)
                return -ENOMEM;
        n = 0;
        for (size_t i = 0; i < b->n; i++) {
                struct conf_setting *s = &b->settings[i];
                if (strcmp(s->key, key) != 0)
                        continue;
                s->used = true;
                if (s->val.type != TOK_STRING && s->val.type != TOK_WORD) {
                        r = setting_error(b, s, d, "a string such as \"text\"");
                        continue;
                }
                v[n++] = s->val.text;
        }
        if (r < 0) {
                free(v);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

int conf_block_diag(const struct conf_block *b, const char *key, struct diag *d, const char *fmt, ...)
{
        const struct conf_setting *s = NULL;
        char msg[512];
        va_list ap;

        for (size_t i = 0; key && i < b->n && !s; i++)
                if (strcmp(b->settings[i].key, key) == 0)
                        s = &b->settings[i];
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        diag_add(d, b->file, s ? s->val.line : b->line, s ? s->val.col : b->col, "collector %s: %s", b->name, msg);
        return -EINVAL;
}

int conf_block_diag_nth(const struct conf_block *b, const char *key, size_t index, unsigned col_offset, struct diag *d,
                        const char *fmt, ...)
{
        const struct conf_setting *s = NULL;
        char msg[512];
        unsigned col;
        va_list ap;

        for (size_t i = 0; key && i < b->n && !s; i++)
                if (strcmp(b->settings[i].key, key) == 0 && index-- == 0)
                        s = &b->settings[i];
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        col = s ? s->val.col + (s->val.type == TOK_STRING ? 1 : 0) + col_offset : b->col;
        diag_add(d, b->file, s ? s->val.line : b->line, col, "collector %s: %s", b->name, msg);
        return -EINVAL;
}

static int setting_error(const struct conf_block *b, const struct conf_setting *s, struct diag *d, const char *expected)
{
        char got[96];

        tok_describe(&s->val, got, sizeof got);
        diag_add(d, b->file, s->val.line, s->val.col, "expected %s for '%s' in collector %s, got %s", expected, s->key,
                 b->name, got);
        return -EINVAL;
}

int conf_block_get_string(const struct conf_block *b, const char *key, const char **ret, struct diag *d)
{
        const struct conf_setting *s;
        int r = setting_single(b, key, d, &s);

        if (r < 0)
                return r;
        if (s->val.type != TOK_STRING && s->val.type != TOK_WORD)
                return setting_error(b, s, d, "a string such as \"text\"");
        *ret = s->val.text;
        return 0;
}

int conf_block_get_number(const struct conf_block *b, const char *key, double *ret, struct diag *d)
{
        const struct conf_setting *s;
        int r = setting_single(b, key, d, &s);

        if (r < 0)
                return r;
        if (s->val.type != TOK_NUMBER)
                return setting_error(b, s, d, "a number");
        *ret = s->val.num;
        return 0;
}

int conf_block_get_duration(const struct conf_block *b, const char *key, uint64_t *ret_usec, struct diag *d)
{
        const struct conf_setting *s;
        int r = setting_single(b, key, d, &s);

        if (r < 0)
                return r;
        if (s->val.type == TOK_NUMBER && s->val.num == 0) {
                *ret_usec = 0;
                return 0;
        }
        if (s->val.type != TOK_DURATION)
                return setting_error(b, s, d, "duration such as 10s");
        *ret_usec = s->val.usec;
        return 0;
}

int conf_block_get_bool(const struct conf_block *b, const char *key, bool *ret, struct diag *d)
{
        static const char *const yes[] = {"yes", "true", "on"}, *const no[] = {"no", "false", "off"};
        const struct conf_setting *s;
        int r = setting_single(b, key, d, &s);

        if (r < 0)
                return r;
        if (s->val.type == TOK_WORD)
                for (size_t i = 0; i < 3; i++) {
                        if (strcmp(s->val.text, yes[i]) == 0) {
                                *ret = true;
                                return 0;
                        }
                        if (strcmp(s->val.text, no[i]) == 0) {
                                *ret = false;
                                return 0;
                        }
                }
        return setting_error(b, s, d, "yes or no");
}

int conf_block_check_unused(const struct conf_block *b, struct diag *d)
{
        int r = 0;

        for (size_t i = 0; i < b->n; i++)
                if (!b->settings[i].used) {
                        diag_add(d, b->file, b->settings[i].val.line, b->settings[i].val.col,
                                 "unknown setting '%s' in collector %s", b->settings[i].key, b->name);
                        r = -EINVAL;
                }
        return r;
}

/* ---- loading ---- */

struct loader {
        struct config *c;
        struct diag *d;
        unsigned n_errors;
        bool read_rules;
        const struct cstmt *agent_block, *central_block, *cases_block;
};

void config_free(struct config *c)
{
        if (!c)
                return;
        free(c->path);
        free(c->base_dir);
        free(c->agent_id);
        free(c->state_dir);
        free(c->control_socket);
        for (size_t i = 0; i < c->n_rules_paths; i++)
                free(c->rules_paths[i]);
        free(c->rules_paths);
        free(c->central_url);
        free(c->token_file);
        free(c->ca_file);
        free(c->client_cert);
        free(c->client_key);
        for (size_t i = 0; i < c->n_collectors; i++)
                conf_block_free(c->collectors[i]);
        free(c->collectors);
        ruleset_free(c->rules);
        free(c);
}

struct ruleset *config_take_rules(struct config *c)
{
        struct ruleset *rs = c->rules;

        c->rules = NULL;
        return rs;
}

const struct conf_block *config_find_collector(const struct config *c, const char *name)
{
        for (size_t i = 0; i < c->n_collectors; i++)
                if (strcmp(c->collectors[i]->name, name) == 0)
                        return c->collectors[i];
        return NULL;
}

static void lerr(struct loader *l, const struct tok *t, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void lerr(struct loader *l, const struct tok *t, const char *fmt, ...)
{
        va_list ap;

        l->n_errors++;
        va_start(ap, fmt);
        diag_vadd(l->d, t->file, t->line, t->col, fmt, ap);
        va_end(ap);
}

static char *resolve_path(const struct config *c, const char *p)
{
        if (p[0] == '/')
                return xstrdup(p);
        return xasprintf("%s/%s", c->base_dir, p);
}

/* Checks "key VALUE" with exactly one value of one of the allowed types. */
static const struct tok *one_value(struct loader *l, const struct cstmt *s, const char *expected, unsigned types)
{
        char got[96];

        if (s->n_toks < 2) {
                lerr(l, &s->toks[0], "expected %s after '%s', got end of line", expected, s->toks[0].text);
                return NULL;
        }
        if (!(types & (1u << s->toks[1].type))) {
                tok_describe(&s->toks[1], got, sizeof got);
                lerr(l, &s->toks[1], "expected %s, got %s", expected, got);
                return NULL;
        }
        if (s->n_toks > 2) {
                tok_describe(&s->toks[2], got, sizeof got);
                lerr(l, &s->toks[2], "expected end of line after the value of '%s', got %s", s->toks[0].text, got);
                return NULL;
        }
        return &s->toks[1];
}

#define T(x) (1u << (x))

static int set_string(struct loader *l, const struct cstmt *s, char **dst, bool path, const char *expected)
{
        const struct tok *v = one_value(l, s, expected, T(TOK_STRING) | (path ? 0 : T(TOK_WORD)));
        char *n;

        if (!v)
                return 0;
        if (v->text[0] == '\0') {
                lerr(l, v, "'%s' must not be empty", s->toks[0].text);
                return 0;
        }
        n = path ? resolve_path(l->c, v->text) : xstrdup(v->text);
        if (!n)
                return -ENOMEM;
        free(*dst);
        *dst = n;
        return 0;
}

static void set_duration_opt(struct loader *l, const struct cstmt *s, uint64_t *dst, bool zero_ok)
{
        const struct tok *v = one_value(l, s, "duration such as 10s", T(TOK_DURATION) | T(TOK_NUMBER));

        if (!v)
                return;
        if (zero_ok && ((v->type == TOK_NUMBER && v->num == 0) || (v->type == TOK_DURATION && v->usec == 0))) {
                *dst = 0;
                return;
        }
        if (v->type == TOK_NUMBER || v->usec == 0) {
                char got[96];

                tok_describe(v, got, sizeof got);
                lerr(l, v,
                     v->type == TOK_NUMBER && v->num != 0 ? "expected duration such as 10s, got %s"
                                                          : "'%s' must be more than 0s",
                     v->type == TOK_NUMBER && v->num != 0 ? got : s->toks[0].text);
                return;
        }
        *dst = v->usec;
}

static void set_duration(struct loader *l, const struct cstmt *s, uint64_t *dst)
{
        set_duration_opt(l, s, dst, false);
}

/* A whole number in [0, max]. */
static void set_count(struct loader *l, const struct cstmt *s, unsigned *dst, unsigned max)
{
        const struct tok *v = one_value(l, s, "a whole number", T(TOK_NUMBER));

        if (!v)
                return;
        if (v->num < 0 || v->num > max || v->num != (double)(unsigned)v->num) {
                lerr(l, v, "'%s' must be a whole number from 0 to %u", s->toks[0].text, max);
                return;
        }
        *dst = (unsigned)v->num;
}

/* Finds duplicates of non-repeatable settings in a block. */
static bool duplicate(struct loader *l, const struct cblock *b, size_t i)
{
        const struct cstmt *s = &b->stmts[i];

        for (size_t j = 0; j < i; j++)
                if (!b->stmts[j].bad && strcmp(b->stmts[j].toks[0].text, s->toks[0].text) == 0) {
                        lerr(l, &s->toks[0], "duplicate setting '%s' (first at line %u)", s->toks[0].text,
                             b->stmts[j].toks[0].line);
                        return true;
                }
        return false;
}

static bool block_header(struct loader *l, const struct cstmt *s, bool named)
{
        char got[96];

        if (named) {
                if (s->n_toks < 2 || s->toks[1].type != TOK_WORD) {
                        if (s->n_toks < 2)
                                snprintf(got, sizeof got, "%s", s->block ? "'{'" : "end of line");
                        else
                                tok_describe(&s->toks[1], got, sizeof got);
                        lerr(l, s->n_toks < 2 ? &s->toks[0] : &s->toks[1], "expected a %s name, got %s",
                             s->toks[0].text, got);
                        return false;
                }
        }
        if (s->n_toks > (named ? 2u : 1u)) {
                tok_describe(&s->toks[named ? 2 : 1], got, sizeof got);
                lerr(l, &s->toks[named ? 2 : 1], "expected '{' after '%s', got %s", s->toks[0].text, got);
                return false;
        }
        if (!s->block) {
                lerr(l, &s->toks[0], "expected '{' after '%s', got end of line", s->toks[0].text);
                return false;
        }
        return true;
}

static int load_agent(struct loader *l, const struct cstmt *blk)
{
        struct config *c = l->c;
        bool rules_seen = false;
        int r = 0;

        for (size_t i = 0; i < blk->block->n && r == 0; i++) {
                const struct cstmt *s = &blk->block->stmts[i];
                const char *k = s->toks[0].text;
                const struct tok *v;

                if (s->bad)
                        continue;
                if (s->toks[0].type != TOK_WORD || s->block) {
                        lerr(l, &s->toks[0], "expected a setting of the agent block");
                        continue;
                }
                if (strcmp(k, "rules") != 0 && duplicate(l, blk->block, i))
                        continue;
                if (strcmp(k, "id") == 0) {
                        r = set_string(l, s, &c->agent_id, false, "an agent id such as \"web-01\"");
                } else if (strcmp(k, "state_dir") == 0) {
                        r = set_string(l, s, &c->state_dir, true, "a quoted path");
                } else if (strcmp(k, "control_socket") == 0) {
                        r = set_string(l, s, &c->control_socket, true, "a quoted path");
                } else if (strcmp(k, "log_level") == 0) {
                        v = one_value(l, s, "a log level (err, warning, notice, info or debug)",
                                      T(TOK_WORD) | T(TOK_STRING));
                        if (v && log_level_from_string(v->text, &c->log_level) < 0)
                                lerr(l, v, "expected a log level (err, warning, notice, info or debug), got '%s'",
                                     v->text);
                } else if (strcmp(k, "alive_interval") == 0) {
                        set_duration(l, s, &c->alive_interval_usec);
                } else if (strcmp(k, "history_cap_mib") == 0) {
                        set_count(l, s, &c->history_cap_mib, 1 << 20);
                        if (c->history_cap_mib == 0) {
                                lerr(l, &s->toks[0], "'history_cap_mib' must be at least 1");
                                c->history_cap_mib = 1;
                        }
                } else if (strcmp(k, "rules") == 0) {
                        char *p, **n;

                        v = one_value(l, s, "a quoted glob such as \"rules.d/*.rules\"", T(TOK_STRING));
                        if (!v)
                                continue;
                        if (!rules_seen) { /* the first one replaces the default */
                                for (size_t j = 0; j < c->n_rules_paths; j++)
                                        free(c->rules_paths[j]);
                                c->n_rules_paths = 0;
                                rules_seen = true;
                        }
                        p = resolve_path(c, v->text);
                        n = p ? xrealloc(c->rules_paths, (c->n_rules_paths + 1) * sizeof *n) : NULL;
                        if (!n) {
                                free(p);
                                return -ENOMEM;
                        }
                        c->rules_paths = n;
                        c->rules_paths[c->n_rules_paths++] = p;
                } else {
                        lerr(l, &s->toks[0],
                             "unknown setting '%s' in the agent block; expected id, state_dir, control_socket, "
                             "log_level, alive_interval, history_cap_mib or rules",
                             k);
                }
        }
        return r;
}

/* True when the host of an http:// URL is a loopback one: "localhost",
 * 127.0.0.0/8 or ::1, written as the URL writes them (no name lookup: what
 * "localhost" resolves to is /etc/hosts' business, and a name that needs
 * resolving is not known to stay on this machine). */
static bool url_is_loopback(const char *url)
{
        const char *h = url + strlen("http://"), *end, *at = strchr(h, '@');
        char host[64];
        unsigned char a[16];
        size_t n;

        if (at && at < h + strcspn(h, "/?#"))
                return false; /* userinfo: refuse rather than guess where the host starts */
        if (*h == '[') {
                end = strchr(h, ']');
                if (!end)
                        return false;
                h++;
        } else {
                end = h + strcspn(h, ":/?#");
        }
        n = (size_t)(end - h);
        if (n == 0 || n >= sizeof host)
                return false;
        memcpy(host, h, n);
        host[n] = '\0';
        if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.") == 0)
                return true;
        if (inet_pton(AF_INET, host, a) == 1)
                return a[0] == 127;
        if (inet_pton(AF_INET6, host, a) == 1)
                return memcmp(a, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0;
        return false;
}

static void set_bool(struct loader *l, const struct cstmt *s, bool *dst)
{
        const struct tok *v = one_value(l, s, "yes or no", T(TOK_WORD));

        if (!v)
                return;
        if (strcmp(v->text, "yes") == 0 || strcmp(v->text, "true") == 0 || strcmp(v->text, "on") == 0)
                *dst = true;
        else if (strcmp(v->text, "no") == 0 || strcmp(v->text, "false") == 0 || strcmp(v->text, "off") == 0)
                *dst = false;
        else
                lerr(l, v, "expected yes or no for '%s', got '%s'", s->toks[0].text, v->text);
}

static int load_central(struct loader *l, const struct cstmt *blk)
{
        struct config *c = l->c;
        const struct tok *url_tok = NULL, *cert_tok = NULL, *key_tok = NULL;
        int r = 0;

        for (size_t i = 0; i < blk->block->n && r == 0; i++) {
                const struct cstmt *s = &blk->block->stmts[i];
                const char *k = s->toks[0].text;

                if (s->bad)
                        continue;
                if (s->toks[0].type != TOK_WORD || s->block) {
                        lerr(l, &s->toks[0], "expected a setting of the central block");
                        continue;
                }
                if (duplicate(l, blk->block, i))
                        continue;
                if (strcmp(k, "url") == 0) {
                        r = set_string(l, s, &c->central_url, false, "a quoted URL such as \"https://cases.example\"");
                        if (r == 0 && c->central_url && strncmp(c->central_url, "http://", 7) != 0 &&
                            strncmp(c->central_url, "https://", 8) != 0) {
                                lerr(l, &s->toks[1], "central url must start with http:// or https://, got \"%.60s\"",
                                     c->central_url);
                        } else if (c->central_url && s->n_toks == 2) {
                                url_tok = &s->toks[1];
                        }
                } else if (strcmp(k, "token_file") == 0) {
                        r = set_string(l, s, &c->token_file, true, "a quoted path");
                } else if (strcmp(k, "ca_file") == 0) {
                        r = set_string(l, s, &c->ca_file, true, "a quoted path");
                } else if (strcmp(k, "client_cert") == 0) {
                        r = set_string(l, s, &c->client_cert, true, "a quoted path");
                        cert_tok = &s->toks[0];
                } else if (strcmp(k, "client_key") == 0) {
                        r = set_string(l, s, &c->client_key, true, "a quoted path");
                        key_tok = &s->toks[0];
                } else if (strcmp(k, "insecure_http") == 0) {
                        set_bool(l, s, &c->insecure_http);
                } else if (strcmp(k, "timeout") == 0) {
                        set_duration(l, s, &c->central_timeout_usec);
                } else if (strcmp(k, "retry") == 0) {
                        set_duration(l, s, &c->retry_usec);
                } else if (strcmp(k, "occurrence_interval") == 0) {
                        set_duration(l, s, &c->occurrence_usec);
                } else if (strcmp(k, "checkin_interval") == 0) {
                        set_duration(l, s, &c->checkin_usec);
                } else {
                        lerr(l, &s->toks[0],
                             "unknown setting '%s' in the central block; expected url, token_file, ca_file, "
                             "client_cert, client_key, insecure_http, timeout, retry, occurrence_interval or "
                             "checkin_interval",
                             k);
                }
        }
        if (r < 0)
                return r;
        /* Checked once the whole block is read: insecure_http may follow url. */
        if (url_tok && strncmp(c->central_url, "http://", 7) == 0 && !c->insecure_http &&
            !url_is_loopback(c->central_url))
                lerr(l, url_tok,
                     "plain http:// to a host that is not loopback sends the token and the cases unencrypted; "
                     "use https:// or set 'insecure_http yes'");
        if (cert_tok && !key_tok && c->client_cert)
                lerr(l, cert_tok, "client_cert needs client_key (the private key of the certificate)");
        if (key_tok && !cert_tok && c->client_key)
                lerr(l, key_tok, "client_key needs client_cert (the certificate of the key)");
        return 0;
}

static int load_cases(struct loader *l, const struct cstmt *blk)
{
        struct config *c = l->c;

        for (size_t i = 0; i < blk->block->n; i++) {
                const struct cstmt *s = &blk->block->stmts[i];
                const char *k = s->toks[0].text;
                const struct tok *v;

                if (s->bad)
                        continue;
                if (s->toks[0].type != TOK_WORD || s->block) {
                        lerr(l, &s->toks[0], "expected a setting of the cases block");
                        continue;
                }
                if (duplicate(l, blk->block, i))
                        continue;
                if (strcmp(k, "reopen_window") == 0) {
                        set_duration_opt(l, s, &c->reopen_window_usec, true);
                } else if (strcmp(k, "flap_count") == 0) {
                        set_count(l, s, &c->flap_count, 63);
                } else if (strcmp(k, "flap_window") == 0) {
                        set_duration(l, s, &c->flap_window_usec);
                } else if (strcmp(k, "case_rate") == 0) {
                        v = one_value(l, s, "new cases a minute", T(TOK_NUMBER));
                        if (v && (!(v->num > 0) || v->num > 1e6))
                                lerr(l, v, "'case_rate' must be more than 0 and at most 1000000 (cases a minute)");
                        else if (v)
                                c->case_rate = v->num;
                } else if (strcmp(k, "case_burst") == 0) {
                        set_count(l, s, &c->case_burst, 1000000);
                        if (c->case_burst == 0) {
                                lerr(l, &s->toks[0], "'case_burst' must be at least 1");
                                c->case_burst = 1;
                        }
                } else if (strcmp(k, "storm_keys") == 0) {
                        set_count(l, s, &c->storm_keys, 1000000);
                } else if (strcmp(k, "storm_window") == 0) {
                        set_duration(l, s, &c->storm_window_usec);
                } else if (strcmp(k, "outbox_max") == 0) {
                        set_count(l, s, &c->outbox_max, 10000000);
                        if (c->outbox_max < 100) {
                                lerr(l, &s->toks[0], "'outbox_max' must be at least 100");
                                c->outbox_max = 100;
                        }
                } else if (strcmp(k, "sync") == 0) {
                        v = one_value(l, s, "full or normal", T(TOK_WORD));
                        if (v && strcmp(v->text, "full") != 0 && strcmp(v->text, "normal") != 0)
                                lerr(l, v, "expected full or normal, got '%s'", v->text);
                        else if (v)
                                c->sync_full = strcmp(v->text, "full") == 0;
                } else {
                        lerr(l, &s->toks[0],
                             "unknown setting '%s' in the cases block; expected reopen_window, flap_count, "
                             "flap_window, case_rate, case_burst, storm_keys, storm_window, outbox_max or sync",
                             k);
                }
        }
        return 0;
}

static int load_collector(struct loader *l, const struct cstmt *blk)
{
        struct config *c = l->c;
        struct conf_block *b, **v;

        if (config_find_collector(c, blk->toks[1].text)) {
                const struct conf_block *first = config_find_collector(c, blk->toks[1].text);

                lerr(l, &blk->toks[1], "duplicate collector '%s' (first at %s:%u)", blk->toks[1].text, first->file,
                     first->line);
                return 0;
        }
        b = xcalloc(1, sizeof *b);
        if (!b)
                return -ENOMEM;
        b->name = xstrdup(blk->toks[1].text);
        b->file = xstrdup(blk->toks[0].file);
        b->line = blk->toks[0].line;
        b->col = blk->toks[0].col;
        b->settings = xcalloc(blk->block->n + 1, sizeof *b->settings);
        if (!b->name || !b->file || !b->settings)
                goto oom;
        for (size_t i = 0; i < blk->block->n; i++) {
                const struct cstmt *s = &blk->block->stmts[i];
                const struct tok *val;
                struct conf_setting *set;
                double sign = 1;
                size_t vi = 1;

                if (s->bad)
                        continue;
                if (s->toks[0].type != TOK_WORD || s->block) {
                        lerr(l, &s->toks[0], "expected 'setting value' in collector %s", b->name);
                        continue;
                }
                if (s->n_toks == 3 && s->toks[1].type == TOK_MINUS && s->toks[2].type == TOK_NUMBER) {
                        sign = -1;
                        vi = 2;
                }
                if (s->n_toks != vi + 1 ||
                    !(T(s->toks[vi].type) & (T(TOK_STRING) | T(TOK_WORD) | T(TOK_NUMBER) | T(TOK_DURATION)))) {
                        char got[96];

                        if (s->n_toks < 2)
                                snprintf(got, sizeof got, "end of line");
                        else
                                tok_describe(&s->toks[s->n_toks > vi + 1 ? vi + 1 : vi], got, sizeof got);
                        lerr(l, s->n_toks < 2 ? &s->toks[0] : &s->toks[s->n_toks > vi + 1 ? vi + 1 : vi],
                             "expected one value (string, number, duration or word) for '%s', got %s", s->toks[0].text,
                             got);
                        continue;
                }
                val = &s->toks[vi];
                set = &b->settings[b->n];
                set->key = xstrdup(s->toks[0].text);
                set->val = *val;
                set->val.num *= sign;
                set->val.text = val->text ? xstrdup(val->text) : NULL;
                set->val.file = b->file;
                if (!s->toks[0].text || !set->key || (val->text && !set->val.text)) {
                        free(set->key);
                        free(set->val.text);
                        goto oom;
                }
                b->n++;
        }
        v = xrealloc(c->collectors, (c->n_collectors + 1) * sizeof *v);
        if (!v)
                goto oom;
        c->collectors = v;
        c->collectors[c->n_collectors++] = b;
        return 0;
oom:
        conf_block_free(b);
        return -ENOMEM;
}

static int load_tree(struct loader *l, const struct cblock *tree)
{
        int r = 0;

        for (size_t i = 0; i < tree->n && r == 0; i++) {
                const struct cstmt *s = &tree->stmts[i];
                const struct tok *k = &s->toks[0];
                const struct cstmt **seen = NULL;

                if (s->bad)
                        continue;
                switch (k->type == TOK_WORD ? k->kw : KW_NONE) {
                case KW_AGENT:
                case KW_CENTRAL:
                case KW_CASES:
                        seen = k->kw == KW_AGENT     ? &l->agent_block
                               : k->kw == KW_CENTRAL ? &l->central_block
                                                     : &l->cases_block;
                        if (*seen) {
                                lerr(l, k, "duplicate '%s' block (first at %s:%u)", k->text, (*seen)->toks[0].file,
                                     (*seen)->toks[0].line);
                                break;
                        }
                        if (!block_header(l, s, false))
                                break;
                        *seen = s;
                        r = k->kw == KW_AGENT     ? load_agent(l, s)
                            : k->kw == KW_CENTRAL ? load_central(l, s)
                                                  : load_cases(l, s);
                        break;
                case KW_COLLECTOR:
                        if (block_header(l, s, true))
                                r = load_collector(l, s);
                        break;
                case KW_RULE:
                        break; /* compiled by ruleset_add_tree */
                default: {
                        char got[96];

                        tok_describe(k, got, sizeof got);
                        lerr(l, k, "expected agent, central, cases, collector, rule or include, got %s", got);
                }
                }
        }
        return r;
}

static int load_rules_files(struct loader *l)
{
        struct config *c = l->c;
        char **done = NULL;
        size_t n_done = 0;
        int r = 0;

        for (size_t p = 0; p < c->n_rules_paths && r == 0; p++) {
                glob_t g;
                int gr = glob(c->rules_paths[p], GLOB_ERR, NULL, &g);

                if (gr == GLOB_NOMATCH) {
                        globfree(&g);
                        continue;
                }
                if (gr != 0) {
                        l->n_errors++;
                        diag_add(l->d, c->path, 0, 0, "rules \"%s\": %s", c->rules_paths[p],
                                 gr == GLOB_NOSPACE ? "out of memory" : "cannot read the directory");
                        globfree(&g);
                        if (gr == GLOB_NOSPACE)
                                r = -ENOMEM;
                        continue;
                }
                for (size_t i = 0; i < g.gl_pathc && r == 0; i++) {
                        bool seen = false;
                        char **v;

                        for (size_t j = 0; j < n_done; j++)
                                if (strcmp(done[j], g.gl_pathv[i]) == 0)
                                        seen = true;
                        if (seen)
                                continue;
                        v = xrealloc(done, (n_done + 1) * sizeof *v);
                        if (!v) {
                                r = -ENOMEM;
                                break;
                        }
                        done = v;
                        done[n_done] = xstrdup(g.gl_pathv[i]);
                        if (!done[n_done]) {
                                r = -ENOMEM;
                                break;
                        }
                        n_done++;
                        r = ruleset_add_file(c->rules, g.gl_pathv[i], l->d, &l->n_errors);
                }
                globfree(&g);
        }
        for (size_t j = 0; j < n_done; j++)
                free(done[j]);
        free(done);
        return r;
}

static int config_build(const char *name, const char *text, size_t len, bool from_file, struct config **ret,
                        struct diag *d)
{
        const struct parse_opts opts = {.allow_include = true};
        struct loader l = {.d = d, .read_rules = from_file};
        struct srcnames names = {0};
        struct cblock *tree = NULL;
        struct config *c;
        char cwd[PATH_MAX];
        size_t first_diag = diag_count(d);
        int r = -ENOMEM;

        c = l.c = xcalloc(1, sizeof *c);
        if (!c)
                goto out;
        c->path = xstrdup(name);
        if (!c->path)
                goto out;
        if (!getcwd(cwd, sizeof cwd))
                snprintf(cwd, sizeof cwd, "/");
        if (from_file) {
                const char *slash = strrchr(name, '/');

                if (name[0] == '/')
                        c->base_dir = slash == name ? xstrdup("/") : xstrndup(name, (size_t)(slash - name));
                else if (slash)
                        c->base_dir = xasprintf("%s/%.*s", cwd, (int)(slash - name), name);
                else
                        c->base_dir = xstrdup(cwd);
        } else {
                c->base_dir = xstrdup(cwd);
        }
        c->state_dir = xstrdup(DEFAULT_STATE_DIR);
        c->control_socket = xstrdup(DEFAULT_CONTROL_SOCKET);
        c->log_level = LOG_LEVEL_INFO;
        c->central_timeout_usec = DEFAULT_TIMEOUT_USEC;
        c->occurrence_usec = DEFAULT_OCCURRENCE_USEC;
        c->retry_usec = DEFAULT_RETRY_USEC;
        c->alive_interval_usec = 60ULL * 1000000;
        c->checkin_usec = 60ULL * 1000000;
        c->history_cap_mib = 64;
        c->reopen_window_usec = 3600ULL * 1000000;
        c->flap_count = 6;
        c->flap_window_usec = 600ULL * 1000000;
        c->case_rate = 30;
        c->case_burst = 10;
        c->storm_keys = 10;
        c->storm_window_usec = 60ULL * 1000000;
        c->outbox_max = 100000;
        c->sync_full = true;
        c->rules_paths = xcalloc(1, sizeof *c->rules_paths);
        c->rules = ruleset_new();
        if (!c->base_dir || !c->state_dir || !c->control_socket || !c->rules_paths || !c->rules)
                goto out;
        c->rules_paths[0] = resolve_path(c, DEFAULT_RULES);
        if (!c->rules_paths[0])
                goto out;
        c->n_rules_paths = 1;

        r = conf_parse_text(name, text, len, &names, &opts, d, &l.n_errors, &tree);
        if (r < 0)
                goto out;
        r = load_tree(&l, tree);
        if (r < 0)
                goto out;
        if (!l.central_block) {
                l.n_errors++;
                diag_add(d, name, 0, 0, "no central block: it must give at least url and token_file");
        } else {
                if (!c->central_url)
                        lerr(&l, &l.central_block->toks[0], "the central block has no url (http:// or https://)");
                if (!c->token_file)
                        lerr(&l, &l.central_block->toks[0], "the central block has no token_file");
        }
        if (from_file) {
                r = load_rules_files(&l);
                if (r < 0)
                        goto out;
        }
        r = ruleset_add_tree(c->rules, tree, false, d, &l.n_errors);
        if (r < 0)
                goto out;
        if (l.n_errors == 0) {
                r = ruleset_finish(c->rules);
                if (r < 0)
                        goto out;
        }
        r = l.n_errors > 0 ? -EINVAL : 0;
out:
        if (r == -ENOMEM)
                diag_add(d, name, 0, 0, "out of memory");
        else
                diag_sort_from(d, first_diag);
        cblock_free(tree);
        srcnames_clear(&names);
        if (r < 0) {
                config_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

int config_load(const char *path, struct config **ret, struct diag *d)
{
        char *text = NULL;
        size_t len = 0;
        int r;

        r = conf_read_file(path, &text, &len);
        if (r < 0) {
                diag_add(d, path, 0, 0, "cannot read configuration: %s",
                         r == -EFBIG    ? "file larger than the 1 MiB limit"
                         : r == -EINVAL ? "not a regular file"
                                        : strerror(-r));
                return r;
        }
        r = config_build(path, text, len, true, ret, d);
        free(text);
        return r;
}

int config_load_string(const char *name, const char *text, struct config **ret, struct diag *d)
{
        return config_build(name, text, strlen(text), false, ret, d);
}

static void setting_write(const struct tok *v, FILE *f)
{
        char buf[64];

        switch (v->type) {
        case TOK_STRING:
                string_write(f, v->text);
                break;
        case TOK_WORD:
                fputs(v->text, f);
                break;
        case TOK_NUMBER:
                number_format(v->num, buf, sizeof buf);
                fputs(buf, f);
                break;
        case TOK_DURATION:
                duration_format(v->usec, buf, sizeof buf);
                fputs(buf, f);
                break;
        default:
                break;
        }
}

void config_format(const struct config *c, FILE *f)
{
        char dur[64];

        fputs("agent {\n", f);
        if (c->agent_id) {
                fputs("        id ", f);
                string_write(f, c->agent_id);
                fputc('\n', f);
        }
        fputs("        state_dir ", f);
        string_write(f, c->state_dir);
        fputs("\n        control_socket ", f);
        string_write(f, c->control_socket);
        fprintf(f, "\n        log_level %s\n", log_level_to_string(c->log_level));
        duration_format(c->alive_interval_usec, dur, sizeof dur);
        fprintf(f, "        alive_interval %s\n        history_cap_mib %u\n", dur, c->history_cap_mib);
        for (size_t i = 0; i < c->n_rules_paths; i++) {
                fputs("        rules ", f);
                string_write(f, c->rules_paths[i]);
                fputc('\n', f);
        }
        fputs("}\n\ncentral {\n        url ", f);
        string_write(f, c->central_url ? c->central_url : "");
        fputs("\n        token_file ", f);
        string_write(f, c->token_file ? c->token_file : "");
        if (c->ca_file) {
                fputs("\n        ca_file ", f);
                string_write(f, c->ca_file);
        }
        if (c->client_cert) {
                fputs("\n        client_cert ", f);
                string_write(f, c->client_cert);
        }
        if (c->client_key) {
                fputs("\n        client_key ", f);
                string_write(f, c->client_key);
        }
        fprintf(f, "\n        insecure_http %s", c->insecure_http ? "yes" : "no");
        duration_format(c->central_timeout_usec, dur, sizeof dur);
        fprintf(f, "\n        timeout %s\n", dur);
        duration_format(c->retry_usec, dur, sizeof dur);
        fprintf(f, "        retry %s\n", dur);
        duration_format(c->occurrence_usec, dur, sizeof dur);
        fprintf(f, "        occurrence_interval %s\n", dur);
        duration_format(c->checkin_usec, dur, sizeof dur);
        fprintf(f, "        checkin_interval %s\n}\n", dur);
        fputs("\ncases {\n", f);
        duration_format(c->reopen_window_usec, dur, sizeof dur);
        fprintf(f, "        reopen_window %s\n        flap_count %u\n", dur, c->flap_count);
        duration_format(c->flap_window_usec, dur, sizeof dur);
        fprintf(f, "        flap_window %s\n", dur);
        number_format(c->case_rate, dur, sizeof dur);
        fprintf(f, "        case_rate %s\n        case_burst %u\n        storm_keys %u\n", dur, c->case_burst,
                c->storm_keys);
        duration_format(c->storm_window_usec, dur, sizeof dur);
        fprintf(f, "        storm_window %s\n        outbox_max %u\n        sync %s\n}\n", dur, c->outbox_max,
                c->sync_full ? "full" : "normal");
        for (size_t i = 0; i < c->n_collectors; i++) {
                const struct conf_block *b = c->collectors[i];

                fprintf(f, "\ncollector %s {\n", b->name);
                for (size_t j = 0; j < b->n; j++) {
                        fprintf(f, "        %s ", b->settings[j].key);
                        setting_write(&b->settings[j].val, f);
                        fputc('\n', f);
                }
                fputs("}\n", f);
        }
        if (ruleset_count(c->rules) > 0) {
                fputc('\n', f);
                ruleset_format(c->rules, f);
        }
}
