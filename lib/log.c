/* log: see log.h. The journal is used only when stderr really is the
 * journal stream systemd gave us, so a foreground run in a terminal under
 * systemd-run still prints plainly. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>
#include <systemd/sd-journal.h>

static enum log_level log_level = LOG_LEVEL_INFO;
static const char *log_ident = "weibao";
static int log_to_journal = -1; /* -1: not yet decided */

static const char *const level_names[LOG_LEVEL_MAX] = {
        [LOG_LEVEL_ERR] = "err",   [LOG_LEVEL_WARNING] = "warning", [LOG_LEVEL_NOTICE] = "notice",
        [LOG_LEVEL_INFO] = "info", [LOG_LEVEL_DEBUG] = "debug",
};

static const int level_priorities[LOG_LEVEL_MAX] = {
        [LOG_LEVEL_ERR] = LOG_ERR,   [LOG_LEVEL_WARNING] = LOG_WARNING, [LOG_LEVEL_NOTICE] = LOG_NOTICE,
        [LOG_LEVEL_INFO] = LOG_INFO, [LOG_LEVEL_DEBUG] = LOG_DEBUG,
};

/* stderr is the journal when JOURNAL_STREAM names the device:inode of fd 2. */
static int stderr_is_journal(void)
{
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return 0;
        if (fstat(2, &st) < 0)
                return 0;
        return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_init(const char *ident)
{
        log_ident = ident;
        log_to_journal = stderr_is_journal();
}

void log_set_level(enum log_level level)
{
        if (level < LOG_LEVEL_MAX)
                log_level = level;
}

enum log_level log_get_level(void)
{
        return log_level;
}

const char *log_level_to_string(enum log_level level)
{
        return level < LOG_LEVEL_MAX ? level_names[level] : "unknown";
}

int log_level_from_string(const char *s, enum log_level *ret)
{
        for (int i = 0; i < LOG_LEVEL_MAX; i++)
                if (strcmp(s, level_names[i]) == 0) {
                        *ret = (enum log_level)i;
                        return 0;
                }
        return -EINVAL;
}

#define LOG_FIELDS_MAX 8

static void log_write(enum log_level level, const char *const *fields, size_t n_fields, const char *fmt, va_list ap)
{
        char buf[2048], prio[16], ident[80];
        struct iovec iov[3 + LOG_FIELDS_MAX];
        size_t n = 0;

        if (level >= LOG_LEVEL_MAX || level > log_level)
                return;
        vsnprintf(buf, sizeof buf, fmt, ap);
        if (log_to_journal < 0)
                log_to_journal = stderr_is_journal();
        if (log_to_journal) {
                /* MESSAGE= is written in front of the text in place */
                char msg[sizeof buf + 8];
                snprintf(msg, sizeof msg, "MESSAGE=%s", buf);
                snprintf(prio, sizeof prio, "PRIORITY=%d", level_priorities[level]);
                snprintf(ident, sizeof ident, "SYSLOG_IDENTIFIER=%s", log_ident);
                iov[n++] = (struct iovec){.iov_base = msg, .iov_len = strlen(msg)};
                iov[n++] = (struct iovec){.iov_base = prio, .iov_len = strlen(prio)};
                iov[n++] = (struct iovec){.iov_base = ident, .iov_len = strlen(ident)};
                for (size_t i = 0; i < n_fields && i < LOG_FIELDS_MAX; i++)
                        if (fields[i])
                                iov[n++] = (struct iovec){.iov_base = (void *)(uintptr_t)fields[i],
                                                          .iov_len = strlen(fields[i])};
                /* If journald cannot take it (not running, socket full), stderr
                 * still reaches the journal through the stream systemd connected. */
                if (sd_journal_sendv(iov, (int)n) >= 0)
                        return;
        }
        fprintf(stderr, "%s[%s]: %s\n", log_ident, level_names[level], buf);
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
        log_write(level, NULL, 0, fmt, ap);
}

void log_fields(enum log_level level, const char *const *fields, size_t n_fields, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        log_write(level, fields, n_fields, fmt, ap);
        va_end(ap);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        log_vmsg(level, fmt, ap);
        va_end(ap);
}

/* A log line about one fault, with the journal fields FAULT_KEY,
 * FAULT_LEVEL, RULE and CASE_ID (when known) for `journalctl FAULT_KEY=...`. */
void log_fault(enum log_level level, const char *key, const char *fault_level, const char *rule, const char *case_id,
               const char *fmt, ...)
{
        char f_key[300], f_level[32], f_rule[200], f_case[100], msg[1600];
        const char *fields[4];
        size_t n = 0;
        va_list ap;

        if (level > log_get_level())
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(f_key, sizeof f_key, "FAULT_KEY=%s", key);
        fields[n++] = f_key;
        if (fault_level) {
                snprintf(f_level, sizeof f_level, "FAULT_LEVEL=%s", fault_level);
                fields[n++] = f_level;
        }
        if (rule) {
                snprintf(f_rule, sizeof f_rule, "RULE=%s", rule);
                fields[n++] = f_rule;
        }
        if (case_id) {
                snprintf(f_case, sizeof f_case, "CASE_ID=%s", case_id);
                fields[n++] = f_case;
        }
        log_fields(level, fields, n, "fault %s: %s", key, msg);
}
