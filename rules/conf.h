/* conf: the block syntax shared by agent.conf and rules.d/ *.rules files, and the
 * agent configuration read from it (docs/rules.md has the grammar).
 *
 * Parsing never logs and never exits: every problem becomes one diagnostic
 * "file:line:col: message" in a struct diag, and the parser recovers at the
 * end of the statement so one run reports all errors. A configuration is
 * parsed into a fresh structure and only handed out when it is valid, so a
 * caller can keep the running one on error (SIGHUP reload). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../lib/log.h"

struct ruleset;

/* ---- diagnostics ---- */

struct diag; /* an ordered list of "file:line:col: message" strings */

/* Returns NULL on allocation failure. */
struct diag *diag_new(void);
void diag_free(struct diag *d);
/* Appends "file:line:col: message". Allocation failure is remembered and
 * reported as a final "out of memory" entry; never fails loudly. */
void diag_add(struct diag *d, const char *file, unsigned line, unsigned col, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
size_t diag_count(const struct diag *d);
/* The i-th message, valid until diag_free. */
const char *diag_get(const struct diag *d, size_t i);
/* Writes every message, one per line. */
void diag_print(const struct diag *d, FILE *f);

/* ---- generic blocks, used for collector settings ---- */

/* A parsed "collector NAME { key value ... }" block. Collectors read their
 * settings through the getters below; each getter marks the setting used so
 * conf_block_check_unused() can name every unknown one. */
struct conf_block;

const char *conf_block_name(const struct conf_block *b);
/* Each getter returns 0 and sets *ret when the setting is present and
 * well-formed, -ENOENT when absent (ret untouched), -EINVAL after adding a
 * diagnostic at the setting's position when malformed. Strings are valid
 * until the config is freed. */
int conf_block_get_string(const struct conf_block *b, const char *key, const char **ret, struct diag *d);
/* Settings that may be given several times ("listen", "community", ...):
 * every value of key, in file order, as a fresh array of borrowed strings
 * (caller frees the array). The single-valued getters report a repeated
 * setting as an error. */
int conf_block_get_strings(const struct conf_block *b, const char *key, const char ***ret, size_t *ret_n,
                           struct diag *d);
int conf_block_get_number(const struct conf_block *b, const char *key, double *ret, struct diag *d);
int conf_block_get_duration(const struct conf_block *b, const char *key, uint64_t *ret_usec, struct diag *d);
/* yes/no/true/false/on/off */
int conf_block_get_bool(const struct conf_block *b, const char *key, bool *ret, struct diag *d);
/* Adds a diagnostic at the position of setting key (at the block's own
 * position when key is NULL or absent): for range and consistency errors a
 * collector finds after a getter accepted the value's type. Returns -EINVAL. */
int conf_block_diag(const struct conf_block *b, const char *key, struct diag *d, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* The same at the index-th occurrence (0-based) of a repeatable setting key,
 * col_offset bytes into its value (a position inside a string value: the
 * column counts the opening quote; escapes before the offset are not
 * accounted for). Falls back to the block's position. Returns -EINVAL. */
int conf_block_diag_nth(const struct conf_block *b, const char *key, size_t index, unsigned col_offset, struct diag *d,
                        const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Adds "unknown setting 'x' in collector NAME" for each setting no getter
 * asked for. Returns 0, or -EINVAL if any was reported. */
int conf_block_check_unused(const struct conf_block *b, struct diag *d);

/* ---- the agent configuration ---- */

struct config {
        char *path;     /* the file it was read from */
        char *base_dir; /* relative paths below are resolved against this */

        /* agent { ... } */
        char *agent_id;               /* NULL: use /etc/machine-id */
        char *state_dir;              /* default "/var/lib/weibao" */
        char *control_socket;         /* default "/run/weibao/control.sock" */
        uint64_t alive_interval_usec; /* default 1m: the downtime ledger's sign of life */
        unsigned history_cap_mib;     /* default 64: the state database's history data at most */
        enum log_level log_level;     /* default info */
        char **rules_paths;           /* glob patterns, absolute after loading; default: every .rules file in rules.d */
        size_t n_rules_paths;

        /* central { ... } */
        char *central_url;             /* required, e.g. "http://127.0.0.1:8080" */
        char *token_file;              /* absolute after loading; required */
        char *ca_file;                 /* PEM CA bundle for https (NULL: the system's); absolute */
        char *client_cert;             /* PEM client certificate for mTLS (NULL: none); absolute */
        char *client_key;              /* its private key, given exactly when client_cert is; absolute */
        bool insecure_http;            /* default no: plain http:// only to a loopback address */
        uint64_t central_timeout_usec; /* default 10s */
        uint64_t retry_usec;           /* default 30s: how often failed sends are retried */
        uint64_t occurrence_usec;      /* default 60s: at most one occurrence update per case this often */
        uint64_t checkin_usec;         /* default 60s: how often the agent checks in (agent/checkin.h) */

        /* cases { ... }: the life of cases (agent/faults.h, agent/outbox.h) */
        uint64_t reopen_window_usec; /* default 1h; 0: a recurrence always opens a new case */
        unsigned flap_count;         /* default 6; 0: no flapping detection */
        uint64_t flap_window_usec;   /* default 10m */
        double case_rate;            /* new cases a minute, default 30 */
        unsigned case_burst;         /* default 10 */
        unsigned storm_keys;         /* default 10; 0: no per-rule storm summary */
        uint64_t storm_window_usec;  /* default 1m */
        unsigned outbox_max;         /* requests held at most, default 100000 */
        bool sync_full;              /* "sync full" (default) or "sync normal" */

        /* collector NAME { ... }, in file order; owned by the config */
        struct conf_block **collectors;
        size_t n_collectors;

        /* All rules: from rules_paths (in sorted file order) and rule blocks
         * in the config file itself. Owned by the config until taken with
         * config_take_rules(). */
        struct ruleset *rules;
};

/* Reads and validates path and every rules file it names. Returns 0 and a
 * fresh config (caller frees with config_free), or a negative errno with at
 * least one diagnostic in d. A missing rules glob match is not an error; a
 * named file that cannot be read is. */
int config_load(const char *path, struct config **ret, struct diag *d);
/* Same, from text in memory (tests, fuzzing); name is used in diagnostics,
 * relative paths resolve against the current directory and no rules files
 * are read. */
int config_load_string(const char *name, const char *text, struct config **ret, struct diag *d);
void config_free(struct config *c);
/* Hands the ruleset to the caller (who frees it with ruleset_free) and
 * leaves NULL in the config. */
struct ruleset *config_take_rules(struct config *c);
/* Returns the collector block named name, or NULL. */
const struct conf_block *config_find_collector(const struct config *c, const char *name);
/* Writes the normalised form: settings with their effective values, then
 * every rule. The output parses again to the same configuration. */
void config_format(const struct config *c, FILE *f);
