/* proc_parse: see proc_parse.h. */
#include "proc_parse.h"

#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <math.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

/* ---- numbers ---- */

/* Parses an unsigned decimal at *p (not past end); advances *p. */
static int parse_u64(const char **p, const char *end, uint64_t *ret)
{
        const char *s = *p;
        uint64_t v = 0;

        if (s >= end || *s < '0' || *s > '9')
                return -EBADMSG;
        while (s < end && *s >= '0' && *s <= '9') {
                unsigned d = (unsigned)(*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -EBADMSG;
                v = v * 10 + d;
                s++;
        }
        *p = s;
        *ret = v;
        return 0;
}

static int parse_i64(const char **p, const char *end, int64_t *ret)
{
        bool neg = *p < end && **p == '-';
        uint64_t v;

        if (neg)
                (*p)++;
        if (parse_u64(p, end, &v) < 0 || v > (uint64_t)INT64_MAX)
                return -EBADMSG;
        *ret = neg ? -(int64_t)v : (int64_t)v;
        return 0;
}

/* ---- /proc/PID/stat ---- */

int proc_stat_parse(const char *buf, size_t len, struct proc_stat *ret)
{
        const char *end = buf + len, *open = memchr(buf, '(', len), *close = NULL, *p;
        struct proc_stat st = {0};
        size_t clen;
        int64_t v;

        /* comm may hold ')' and blanks: it ends at the last ')'. */
        for (const char *q = end; q > buf; q--)
                if (q[-1] == ')') {
                        close = q - 1;
                        break;
                }
        if (!open || !close || close < open)
                return -EBADMSG;
        clen = (size_t)(close - open - 1);
        if (clen >= sizeof st.comm)
                return -EBADMSG;
        memcpy(st.comm, open + 1, clen);
        st.comm[clen] = '\0';
        p = close + 1;
        /* field 3 on: state ppid pgrp session tty tpgid flags minflt cminflt
         * majflt cmajflt utime stime cutime cstime priority nice num_threads
         * itrealvalue starttime vsize rss */
        for (int field = 3; field <= 24; field++) {
                if (p >= end || *p != ' ')
                        return -EBADMSG;
                p++;
                if (field == 3) {
                        if (p >= end || *p < 'A' || *p > 'z')
                                return -EBADMSG;
                        st.state = *p++;
                        continue;
                }
                if (parse_i64(&p, end, &v) < 0)
                        return -EBADMSG;
                switch (field) {
                case 4:
                        st.ppid = (pid_t)v;
                        break;
                case 14:
                        st.utime = (uint64_t)(v < 0 ? 0 : v);
                        break;
                case 15:
                        st.stime = (uint64_t)(v < 0 ? 0 : v);
                        break;
                case 20:
                        st.num_threads = (long)v;
                        break;
                case 22:
                        st.starttime = (uint64_t)(v < 0 ? 0 : v);
                        break;
                case 24:
                        st.rss_pages = (uint64_t)(v < 0 ? 0 : v);
                        break;
                default:
                        break;
                }
        }
        *ret = st;
        return 0;
}

/* ---- /proc/PID/status ---- */

/* The value of "Key:\t..." lines: a number, optionally followed by " kB". */
static int status_number(const char *p, const char *end, bool first_of_several, uint64_t *ret)
{
        (void)first_of_several;
        while (p < end && (*p == ' ' || *p == '\t'))
                p++;
        return parse_u64(&p, end, ret);
}

int proc_status_parse(const char *buf, size_t len, struct proc_status *ret)
{
        struct proc_status st = {.rss_kib = 0, .threads = -1, .uid = -1};
        const char *p = buf, *end = buf + len;
        uint64_t v;

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                const char *le = nl ? nl : end;
                size_t n = (size_t)(le - p);

                if (n > 6 && memcmp(p, "VmRSS:", 6) == 0) {
                        if (status_number(p + 6, le, false, &v) < 0)
                                return -EBADMSG;
                        st.rss_kib = v;
                } else if (n > 8 && memcmp(p, "Threads:", 8) == 0) {
                        if (status_number(p + 8, le, false, &v) < 0 || v > 100000000)
                                return -EBADMSG;
                        st.threads = (long)v;
                } else if (n > 4 && memcmp(p, "Uid:", 4) == 0) {
                        if (status_number(p + 4, le, true, &v) < 0 || v > 0xffffffffu)
                                return -EBADMSG;
                        st.uid = (long)v;
                }
                p = nl ? nl + 1 : end;
        }
        *ret = st;
        return 0;
}

int proc_cmdline_join(const char *buf, size_t len, char *out, size_t outsize)
{
        size_t n = 0;

        while (len > 0 && buf[len - 1] == '\0')
                len--;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)buf[i];
                if (n + 1 >= outsize) {
                        memcpy(out + outsize - 4, "...", 4);
                        return -E2BIG;
                }
                out[n++] = c == '\0' ? ' ' : (c < 0x20 || c == 0x7f) ? '?' : (char)c;
        }
        out[n] = '\0';
        return (int)n;
}

/* ---- the watch setting ---- */

static const char *const kind_names[PROC_WATCH_KIND_MAX] = {
        [PROC_WATCH_PIDFILE] = "pidfile",
        [PROC_WATCH_PATTERN] = "pattern",
        [PROC_WATCH_UNIT] = "unit",
};

const char *proc_watch_kind_to_string(enum proc_watch_kind k)
{
        return k < PROC_WATCH_KIND_MAX ? kind_names[k] : "?";
}

static int duration_usec(const char *s, uint64_t *ret)
{
        static const struct {
                const char *unit;
                uint64_t mult;
        } units[] = {{"ms", 1000}, {"s", 1000000}, {"m", 60000000}, {"h", 3600000000ull}};
        const char *p = s;
        uint64_t v;

        if (parse_u64(&p, s + strlen(s), &v) < 0 || v > 1000000)
                return -EINVAL;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
                if (strcmp(p, units[i].unit) == 0) {
                        *ret = v * units[i].mult;
                        return 0;
                }
        return -EINVAL;
}

static int size_bytes(const char *s, uint64_t *ret)
{
        const char *p = s;
        uint64_t v, mult = 1;

        if (parse_u64(&p, s + strlen(s), &v) < 0)
                return -EINVAL;
        if (strcmp(p, "K") == 0 || strcmp(p, "KiB") == 0)
                mult = 1ull << 10;
        else if (strcmp(p, "M") == 0 || strcmp(p, "MiB") == 0)
                mult = 1ull << 20;
        else if (strcmp(p, "G") == 0 || strcmp(p, "GiB") == 0)
                mult = 1ull << 30;
        else if (*p)
                return -EINVAL;
        if (v == 0 || v > (UINT64_MAX >> 31))
                return -EINVAL;
        *ret = v * mult;
        return 0;
}

static int whole(const char *s, long max, long *ret)
{
        const char *p = s;
        uint64_t v;

        if (parse_u64(&p, s + strlen(s), &v) < 0 || *p || v == 0 || v > (uint64_t)max)
                return -EINVAL;
        *ret = (long)v;
        return 0;
}

#define FAIL(off, ...)                               \
        do {                                         \
                snprintf(err, errsize, __VA_ARGS__); \
                *ret_offset = (unsigned)(off);       \
                return -EINVAL;                      \
        } while (0)

static bool name_ok(const char *s)
{
        if (!*s)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
                      *s == '-' || *s == '.' || *s == '@'))
                        return false;
        return true;
}

int proc_watch_parse(const char *text, struct proc_watch_spec *ret, char *err, size_t errsize, unsigned *ret_offset)
{
        struct proc_watch_spec w = {0};
        const char *p = text;
        size_t words = 0;
        bool has_unit = false, has_pidfile = false;

        for (;;) {
                char word[PROC_PATH_MAX + 32];
                size_t n = 0, start;
                bool quoted = false;
                const char *eq;
                char *val;

                while (*p == ' ' || *p == '\t')
                        p++;
                if (!*p)
                        break;
                start = (size_t)(p - text);
                while (*p && (quoted || (*p != ' ' && *p != '\t'))) {
                        if (*p == '\'') {
                                quoted = !quoted;
                                p++;
                                continue;
                        }
                        if (n + 1 >= sizeof word)
                                FAIL(start, "word too long (at most %zu bytes)", sizeof word - 1);
                        word[n++] = *p++;
                }
                if (quoted)
                        FAIL(start, "unclosed quote (')");
                word[n] = '\0';
                if (words++ == 0) {
                        if (n > PROC_WATCH_NAME_MAX || !name_ok(word))
                                FAIL(start,
                                     "'%s': a watch starts with its name: letters, digits, '_', '-', '.', '@', at "
                                     "most %d bytes",
                                     word, PROC_WATCH_NAME_MAX);
                        memcpy(w.name, word, n + 1);
                        continue;
                }
                if (strcmp(word, "critical") == 0) {
                        w.critical = true;
                        continue;
                }
                eq = strchr(word, '=');
                if (!eq)
                        FAIL(start,
                             "unknown word '%s' (expected pidfile=, name=, cmdline=, unit=, critical, cpu=, rss=, "
                             "fds=, threads=, stuck= or crash_loop=)",
                             word);
                word[eq - word] = '\0';
                val = word + (eq - word) + 1;
                if (!*val)
                        FAIL(start, "%s= needs a value", word);
                if (strcmp(word, "pidfile") == 0) {
                        if (has_pidfile)
                                FAIL(start, "pidfile= given twice");
                        if (val[0] != '/' || strlen(val) > PROC_PATH_MAX)
                                FAIL(start, "pidfile= needs an absolute path (at most %d bytes)", PROC_PATH_MAX);
                        strcpy(w.pidfile, val);
                        has_pidfile = true;
                } else if (strcmp(word, "name") == 0 || strcmp(word, "cmdline") == 0) {
                        char *dst = word[0] == 'n' ? w.name_glob : w.cmdline_glob;
                        if (*dst)
                                FAIL(start, "%s= given twice", word);
                        if (strlen(val) > PROC_PATTERN_MAX)
                                FAIL(start, "%s= pattern longer than %d bytes", word, PROC_PATTERN_MAX);
                        strcpy(dst, val);
                } else if (strcmp(word, "unit") == 0) {
                        if (has_unit)
                                FAIL(start, "unit= given twice");
                        if (strlen(val) > PROC_PATTERN_MAX || !name_ok(val))
                                FAIL(start, "unit= needs a unit name such as nginx.service");
                        strcpy(w.unit, val);
                        has_unit = true;
                } else if (strcmp(word, "cpu") == 0) {
                        char *e;
                        double v = strtod(val, &e);
                        if (e == val || (*e && strcmp(e, "%") != 0) || !isfinite(v) || v <= 0 || v > 100000)
                                FAIL(start, "cpu= needs a percentage of one CPU, e.g. cpu=90 (more than 100 on "
                                            "several CPUs)");
                        w.cpu_max = v;
                } else if (strcmp(word, "rss") == 0) {
                        if (size_bytes(val, &w.rss_max) < 0)
                                FAIL(start, "rss= needs a size such as 512M, 2G or 800000K");
                } else if (strcmp(word, "fds") == 0) {
                        if (whole(val, 100000000, &w.fds_max) < 0)
                                FAIL(start, "fds= needs a whole number of open files, more than 0");
                } else if (strcmp(word, "threads") == 0) {
                        if (whole(val, 100000000, &w.threads_max) < 0)
                                FAIL(start, "threads= needs a whole number of threads, more than 0");
                } else if (strcmp(word, "stuck") == 0) {
                        if (duration_usec(val, &w.stuck_usec) < 0 || w.stuck_usec < 1000000)
                                FAIL(start, "stuck= needs a duration of at least 1s, such as 30s or 5m");
                } else if (strcmp(word, "crash_loop") == 0) {
                        char *slash = strchr(val, '/');
                        long n_r;
                        if (!slash)
                                FAIL(start, "crash_loop= needs RESTARTS/WINDOW, e.g. crash_loop=5/10m");
                        *slash = '\0';
                        if (whole(val, PROC_RESTARTS_MAX, &n_r) < 0 || n_r < 2 ||
                            duration_usec(slash + 1, &w.loop_window_usec) < 0 || w.loop_window_usec < 1000000)
                                FAIL(start,
                                     "crash_loop= needs RESTARTS/WINDOW with 2..%d restarts and a window of "
                                     "at least 1s, e.g. crash_loop=5/10m",
                                     PROC_RESTARTS_MAX);
                        w.loop_restarts = (unsigned)n_r;
                } else {
                        FAIL(start, "unknown option '%s='", word);
                }
        }
        if (words == 0)
                FAIL(0, "empty watch (expected NAME and pidfile=, name=, cmdline= or unit=)");
        if (has_unit && (has_pidfile || w.name_glob[0] || w.cmdline_glob[0]))
                FAIL(0, "watch %s: unit= cannot be combined with pidfile=, name= or cmdline=", w.name);
        if (has_unit)
                w.kind = PROC_WATCH_UNIT;
        else if (has_pidfile)
                w.kind = PROC_WATCH_PIDFILE;
        else if (w.name_glob[0] || w.cmdline_glob[0])
                w.kind = PROC_WATCH_PATTERN;
        else
                FAIL(0, "watch %s selects nothing: give pidfile=, name=, cmdline= or unit=", w.name);
        *ret = w;
        return 0;
}

static void append(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void append(char *buf, size_t size, const char *fmt, ...)
{
        size_t n = strlen(buf);
        va_list ap;

        if (n >= size)
                return;
        va_start(ap, fmt);
        vsnprintf(buf + n, size - n, fmt, ap);
        va_end(ap);
}

static void append_value(char *buf, size_t size, const char *key, const char *v)
{
        bool q = strpbrk(v, " \t'") != NULL;

        if (!q) {
                append(buf, size, " %s=%s", key, v);
                return;
        }
        /* a value with a quote is written in pieces: it'sx -> 'it'\''s' is
         * not the language; blanks are quoted, quotes joined outside */
        append(buf, size, " %s=", key);
        for (const char *s = v; *s; s++) {
                if (*s == '\'')
                        continue; /* cannot occur: quotes are syntax, never part of a value */
                if (*s == ' ' || *s == '\t')
                        append(buf, size, "'%c'", *s);
                else
                        append(buf, size, "%c", *s);
        }
}

static void format_duration(uint64_t usec, char *buf, size_t size)
{
        if (usec % (uint64_t)3600000000ull == 0)
                snprintf(buf, size, "%" PRIu64 "h", usec / (uint64_t)3600000000ull);
        else if (usec % 60000000 == 0)
                snprintf(buf, size, "%" PRIu64 "m", usec / 60000000);
        else if (usec % 1000000 == 0)
                snprintf(buf, size, "%" PRIu64 "s", usec / 1000000);
        else
                snprintf(buf, size, "%" PRIu64 "ms", usec / 1000);
}

void proc_watch_format(const struct proc_watch_spec *w, char *buf, size_t size)
{
        char d[32];

        if (size == 0)
                return;
        buf[0] = '\0';
        append(buf, size, "%s", w->name);
        if (w->pidfile[0])
                append_value(buf, size, "pidfile", w->pidfile);
        if (w->name_glob[0])
                append_value(buf, size, "name", w->name_glob);
        if (w->cmdline_glob[0])
                append_value(buf, size, "cmdline", w->cmdline_glob);
        if (w->unit[0])
                append_value(buf, size, "unit", w->unit);
        if (w->critical)
                append(buf, size, " critical");
        if (w->cpu_max > 0)
                append(buf, size, " cpu=%g", w->cpu_max);
        if (w->rss_max) {
                static const char *const suffix[] = {"", "K", "M", "G"};
                uint64_t v = w->rss_max;
                int u = 0;
                while (u < 3 && v % 1024 == 0) {
                        v /= 1024;
                        u++;
                }
                append(buf, size, " rss=%" PRIu64 "%s", v, suffix[u]);
        }
        if (w->fds_max)
                append(buf, size, " fds=%ld", w->fds_max);
        if (w->threads_max)
                append(buf, size, " threads=%ld", w->threads_max);
        if (w->stuck_usec) {
                format_duration(w->stuck_usec, d, sizeof d);
                append(buf, size, " stuck=%s", d);
        }
        if (w->loop_restarts) {
                format_duration(w->loop_window_usec, d, sizeof d);
                append(buf, size, " crash_loop=%u/%s", w->loop_restarts, d);
        }
}

bool proc_watch_matches(const struct proc_watch_spec *w, const char *comm, const char *cmdline)
{
        if (w->name_glob[0]) {
                char argv0[PROC_PATTERN_MAX + 1];
                const char *sp = strchr(cmdline, ' '), *base;
                size_t n = sp ? (size_t)(sp - cmdline) : strlen(cmdline);

                if (n > PROC_PATTERN_MAX)
                        n = PROC_PATTERN_MAX;
                memcpy(argv0, cmdline, n);
                argv0[n] = '\0';
                base = strrchr(argv0, '/');
                base = base ? base + 1 : argv0;
                if (fnmatch(w->name_glob, comm, 0) != 0 && (!*base || fnmatch(w->name_glob, base, 0) != 0))
                        return false;
        }
        if (w->cmdline_glob[0] && fnmatch(w->cmdline_glob, cmdline, 0) != 0)
                return false;
        return true;
}

/* ---- restarts ---- */

void proc_restart_log_add(struct proc_restart_log *log, const struct proc_restart *r)
{
        if (log->n == PROC_RESTARTS_MAX) {
                memmove(&log->r[0], &log->r[1], (PROC_RESTARTS_MAX - 1) * sizeof log->r[0]);
                log->n--;
        }
        log->r[log->n++] = *r;
}

static bool in_window(const struct proc_restart *r, uint64_t now, uint64_t window)
{
        return r->mono_usec <= now && now - r->mono_usec < window;
}

unsigned proc_restart_log_count(const struct proc_restart_log *log, uint64_t now_mono, uint64_t window_usec)
{
        unsigned c = 0;

        for (size_t i = 0; i < log->n; i++)
                if (in_window(&log->r[i], now_mono, window_usec))
                        c++;
        return c;
}

void proc_restart_log_format(const struct proc_restart_log *log, uint64_t now_mono, uint64_t window_usec, size_t max,
                             char *buf, size_t size)
{
        size_t shown = 0;

        if (size == 0)
                return;
        buf[0] = '\0';
        for (size_t i = log->n; i-- > 0 && shown < max;) {
                const struct proc_restart *r = &log->r[i];
                char how[96];
                time_t t = (time_t)(r->wall_usec / 1000000);
                struct tm tm;

                if (!in_window(r, now_mono, window_usec))
                        continue;
                gmtime_r(&t, &tm);
                proc_exit_describe(r->wait_status, how, sizeof how);
                append(buf, size, "%s%02d:%02d:%02d.%03dZ pid %d -> %d after %s", shown ? "; " : "", tm.tm_hour,
                       tm.tm_min, tm.tm_sec, (int)(r->wall_usec % 1000000 / 1000), (int)r->old_pid, (int)r->new_pid,
                       how);
                shown++;
        }
}

/* ---- exit status ---- */

void proc_signal_name(int sig, char *buf, size_t size)
{
        const char *abbr = sig > 0 && sig < 65 ? sigabbrev_np(sig) : NULL;

        snprintf(buf, size, "SIG%s", abbr ? abbr : "?");
}

void proc_exit_describe(int status, char *buf, size_t size)
{
        char sig[24];

        if (status < 0)
                snprintf(buf, size, "exit status unknown");
        else if (WIFEXITED(status))
                snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
        else if (WIFSIGNALED(status)) {
                proc_signal_name(WTERMSIG(status), sig, sizeof sig);
                snprintf(buf, size, "killed by signal %d (%s)%s", WTERMSIG(status), sig,
                         WCOREDUMP(status) ? ", core dumped" : "");
        } else
                snprintf(buf, size, "ended with wait status 0x%x", (unsigned)status);
}

/* ---- proc connector ---- */

int proc_cn_parse(const void *buf, size_t len, proc_cn_fn fn, void *userdata)
{
        const unsigned char *p = buf;
        int count = 0;

        while (len > 0) {
                struct nlmsghdr nh;
                struct cn_msg cn;
                struct proc_event pe;
                struct proc_cn_event ev = {.kind = PROC_CN_OTHER, .wait_status = -1};
                size_t msglen, payload;

                if (len < sizeof nh)
                        return -EBADMSG;
                memcpy(&nh, p, sizeof nh);
                if (nh.nlmsg_len < sizeof nh || nh.nlmsg_len > len)
                        return -EBADMSG;
                msglen = NLMSG_ALIGN(nh.nlmsg_len);
                if (msglen > len)
                        msglen = len;
                /* the connector sends its messages as NLMSG_DONE */
                if (nh.nlmsg_type == NLMSG_NOOP || nh.nlmsg_type == NLMSG_ERROR || nh.nlmsg_type == NLMSG_OVERRUN) {
                        if (nh.nlmsg_type == NLMSG_ERROR) {
                                ev.kind = PROC_CN_ACK;
                                ev.err = EIO;
                                fn(&ev, userdata);
                                count++;
                        }
                        p += msglen;
                        len -= msglen;
                        continue;
                }
                payload = nh.nlmsg_len - sizeof nh;
                if (payload < sizeof cn)
                        return -EBADMSG;
                memcpy(&cn, p + sizeof nh, sizeof cn);
                if (cn.len > payload - sizeof cn)
                        return -EBADMSG;
                if (cn.id.idx != CN_IDX_PROC || cn.id.val != CN_VAL_PROC) {
                        p += msglen;
                        len -= msglen;
                        continue;
                }
                /* Older kernels send shorter events; the header and the
                 * part of the union we read must be there. */
                memset(&pe, 0, sizeof pe);
                if (cn.len < offsetof(struct proc_event, event_data))
                        return -EBADMSG;
                memcpy(&pe, p + sizeof nh + sizeof cn, cn.len < sizeof pe ? cn.len : sizeof pe);
                switch (pe.what) {
                case PROC_EVENT_NONE:
                        ev.kind = PROC_CN_ACK;
                        ev.err = (int)pe.event_data.ack.err;
                        break;
                case PROC_EVENT_EXEC:
                        if (cn.len < offsetof(struct proc_event, event_data) + sizeof pe.event_data.exec)
                                return -EBADMSG;
                        ev.kind = PROC_CN_EXEC;
                        ev.pid = pe.event_data.exec.process_tgid;
                        ev.tid = pe.event_data.exec.process_pid;
                        break;
                case PROC_EVENT_EXIT:
                        if (cn.len <
                            offsetof(struct proc_event, event_data) + offsetof(struct exit_proc_event, parent_pid))
                                return -EBADMSG;
                        ev.kind = PROC_CN_EXIT;
                        ev.pid = pe.event_data.exit.process_tgid;
                        ev.tid = pe.event_data.exit.process_pid;
                        ev.wait_status = (int)(pe.event_data.exit.exit_code & 0xffff);
                        break;
                default:
                        break;
                }
                if (ev.pid < 0 || ev.tid < 0)
                        return -EBADMSG;
                fn(&ev, userdata);
                count++;
                p += msglen;
                len -= msglen;
        }
        return count;
}
