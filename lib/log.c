/* log: see log.h. The journal is used only when stderr really is the
 * journal stream systemd gave us, so a foreground run in a terminal under
 * systemd-run still prints plainly. */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
        char buf[2048];

        if (level >= LOG_LEVEL_MAX || level > log_level)
                return;
        vsnprintf(buf, sizeof buf, fmt, ap);
        if (log_to_journal < 0)
                log_to_journal = stderr_is_journal();
        /* If journald cannot take it (not running, socket full), stderr still
         * reaches the journal through the stream systemd connected. */
        if (log_to_journal && sd_journal_send("MESSAGE=%s", buf, "PRIORITY=%d", level_priorities[level],
                                              "SYSLOG_IDENTIFIER=%s", log_ident, NULL) >= 0)
                return;
        fprintf(stderr, "%s[%s]: %s\n", log_ident, level_names[level], buf);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        log_vmsg(level, fmt, ap);
        va_end(ap);
}
