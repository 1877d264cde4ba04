/* log: one process-wide logger with syslog-style levels.
 *
 * Writes "weibao-agent[level]: message" lines to stderr, or, when stderr is
 * connected to the journal (JOURNAL_STREAM matches, as systemd sets it), sends
 * structured entries with a PRIORITY= through sd_journal_send. The level is
 * the one permitted process-wide global besides parsed options. */
#pragma once

#include <stdarg.h>
#include <stddef.h>

enum log_level {
        LOG_LEVEL_ERR,
        LOG_LEVEL_WARNING,
        LOG_LEVEL_NOTICE,
        LOG_LEVEL_INFO,
        LOG_LEVEL_DEBUG,
        LOG_LEVEL_MAX,
};

/* Sets the program name used as prefix; ident must stay valid. */
void log_init(const char *ident);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* "err", "warning", "notice", "info", "debug". */
const char *log_level_to_string(enum log_level level);
/* Returns 0 and sets *ret on a known name, -EINVAL otherwise. */
int log_level_from_string(const char *s, enum log_level *ret);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same with structured journal fields: fields[0..n_fields) are
 * "NAME=value" strings (NAME in capitals, digits and '_'), sent beside
 * MESSAGE when logging to the journal and left out on stderr, where the
 * message text must say it all. */
void log_fields(enum log_level level, const char *const *fields, size_t n_fields, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define log_err(...) log_msg(LOG_LEVEL_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LEVEL_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                         \
        do {                                                   \
                if (log_get_level() >= LOG_LEVEL_DEBUG)        \
                        log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__); \
        } while (0)
/* A line about one fault, carrying the journal fields FAULT_KEY and, when
 * not NULL, FAULT_LEVEL, RULE and CASE_ID (`journalctl FAULT_KEY=...`); the
 * text is prefixed "fault KEY: ". */
void log_fault(enum log_level level, const char *key, const char *fault_level, const char *rule, const char *case_id,
               const char *fmt, ...) __attribute__((format(printf, 6, 7)));
