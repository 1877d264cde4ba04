/* proc_parse: the pure parts of the process collector, kept apart so unit
 * tests and the fuzzer reach them without a running system: /proc/PID/stat
 * and status, the "watch" setting's small language, process matching, the
 * crash-loop window, wait-status wording and proc connector messages.
 *
 * Nothing here allocates, logs or touches the system. /proc contents are
 * semi-trusted (a process chooses its own comm and command line), so every
 * parser takes a length, never reads past it and rejects what it cannot
 * account for. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROC_WATCH_NAME_MAX 64
#define PROC_PATTERN_MAX 256
#define PROC_PATH_MAX 512
#define PROC_RESTARTS_MAX 32 /* restarts remembered per watch (crash-loop counts are capped here) */

/* ---- /proc/PID/stat and status ---- */

struct proc_stat {
        char comm[16]; /* as the kernel keeps it: at most 15 bytes */
        char state;    /* R S D Z T t X I P ... */
        pid_t ppid;
        uint64_t utime, stime; /* clock ticks */
        long num_threads;
        uint64_t starttime; /* clock ticks after boot: with the pid, identifies a process */
        uint64_t rss_pages;
};

/* Parses the text of /proc/PID/stat (buf need not be NUL-terminated).
 * Returns 0 and *ret, or -EBADMSG when a field is missing or malformed. */
int proc_stat_parse(const char *buf, size_t len, struct proc_stat *ret);

struct proc_status {
        uint64_t rss_kib; /* VmRSS; 0 for kernel threads and zombies */
        long threads;     /* -1 when absent */
        long uid;         /* real uid, -1 when absent */
};

/* Parses /proc/PID/status. Returns 0 and *ret, -EBADMSG on a malformed
 * line of the fields it reads. */
int proc_status_parse(const char *buf, size_t len, struct proc_status *ret);

/* Joins /proc/PID/cmdline's NUL-separated arguments with spaces into out
 * (outsize >= 4), dropping trailing NULs and writing '?' for control
 * bytes. Returns the length written; when the command line does not fit,
 * it ends in "..." and -E2BIG is returned instead (out is still valid). */
int proc_cmdline_join(const char *buf, size_t len, char *out, size_t outsize);

/* ---- the watch setting ---- */

enum proc_watch_kind {
        PROC_WATCH_PIDFILE, /* pidfile=PATH, optionally checked by name= / cmdline= */
        PROC_WATCH_PATTERN, /* name= and/or cmdline= over every process */
        PROC_WATCH_UNIT,    /* unit=NAME: a systemd unit, watched over sd-bus */
        PROC_WATCH_KIND_MAX,
};

struct proc_watch_spec {
        char name[PROC_WATCH_NAME_MAX + 1];
        enum proc_watch_kind kind;
        char pidfile[PROC_PATH_MAX + 1];
        char name_glob[PROC_PATTERN_MAX + 1];    /* "" when not given */
        char cmdline_glob[PROC_PATTERN_MAX + 1]; /* "" when not given */
        char unit[PROC_PATTERN_MAX + 1];
        bool critical;
        double cpu_max;         /* percent of one CPU; 0: no limit */
        uint64_t rss_max;       /* bytes; 0: no limit */
        long fds_max;           /* 0: no limit */
        long threads_max;       /* 0: no limit */
        uint64_t stuck_usec;    /* 0: the collector's stuck_after */
        unsigned loop_restarts; /* 0: the collector's crash_loop_restarts */
        uint64_t loop_window_usec;
};

/* Parses one watch value: "NAME SELECTOR... [OPTION...]", words separated
 * by blanks, a value with blanks in single quotes (cmdline='a b*').
 * Returns 0 and *ret, or -EINVAL with a message in err and the byte offset
 * of the offending word in *ret_offset. */
int proc_watch_parse(const char *text, struct proc_watch_spec *ret, char *err, size_t errsize, unsigned *ret_offset);
/* Writes the normalised form of spec (parses again to the same spec). */
void proc_watch_format(const struct proc_watch_spec *spec, char *buf, size_t size);

const char *proc_watch_kind_to_string(enum proc_watch_kind k);

/* Whether a process with this comm and joined command line is one the spec's
 * name= and cmdline= globs select (both must hold when both are given;
 * name= matches comm or the basename of argv[0], so names longer than the
 * kernel's 15 bytes work). True when the spec has neither. */
bool proc_watch_matches(const struct proc_watch_spec *spec, const char *comm, const char *cmdline);

/* ---- restarts and the crash-loop window ---- */

struct proc_restart {
        int64_t wall_usec;
        uint64_t mono_usec;
        pid_t old_pid, new_pid;
        int wait_status; /* -1: unknown */
};

/* The last PROC_RESTARTS_MAX restarts of one watch, oldest first. */
struct proc_restart_log {
        struct proc_restart r[PROC_RESTARTS_MAX];
        size_t n;
};

void proc_restart_log_add(struct proc_restart_log *log, const struct proc_restart *r);
/* Restarts in (now - window, now]. */
unsigned proc_restart_log_count(const struct proc_restart_log *log, uint64_t now_mono, uint64_t window_usec);
/* The restarts of the window, newest first, as one line
 * ("22:01:02.345 pid 10 -> 11 after killed by signal 9 (SIGKILL); ...")
 * at most max entries. */
void proc_restart_log_format(const struct proc_restart_log *log, uint64_t now_mono, uint64_t window_usec, size_t max,
                             char *buf, size_t size);

/* ---- exit status ---- */

/* "exited with status 3", "killed by signal 9 (SIGKILL)", "killed by signal
 * 11 (SIGSEGV), core dumped", or "exit status unknown" for -1. */
void proc_exit_describe(int wait_status, char *buf, size_t size);
/* Signal abbreviation with "SIG" ("SIGKILL"), or "SIG?" for unknown numbers. */
void proc_signal_name(int sig, char *buf, size_t size);

/* ---- proc connector (NETLINK_CONNECTOR, CN_IDX_PROC) ---- */

enum proc_cn_kind {
        PROC_CN_ACK,  /* answer to our listen request: err is its errno */
        PROC_CN_EXEC, /* pid (thread group) has exec'd */
        PROC_CN_EXIT, /* a thread exited: pid, tid and wait_status */
        PROC_CN_OTHER,
        PROC_CN_KIND_MAX,
};

struct proc_cn_event {
        enum proc_cn_kind kind;
        pid_t pid, tid;
        int wait_status;
        int err;
};

typedef void (*proc_cn_fn)(const struct proc_cn_event *ev, void *userdata);

/* Parses one datagram from the connector socket (one or more netlink
 * messages) and calls fn for each process event. Returns the number of
 * events, or -EBADMSG at the first malformed message (events before it
 * were delivered). */
int proc_cn_parse(const void *buf, size_t len, proc_cn_fn fn, void *userdata);
