/* process: the process-health collector. Watches processes named by a
 * pidfile or by a name/command-line pattern and reports, as they happen,
 * their exits (with the exit status or signal where the kernel tells it),
 * restarts, crash loops, absence, resource use over limits and processes
 * stuck in D or Z state.
 *
 * Settings, in "collector process { ... }" (all optional but watch):
 *   watch        repeatable, one process each:
 *                "NAME SELECTOR... [critical] [OPTION=VALUE...]" with the
 *                selectors pidfile=PATH, name=GLOB, cmdline=GLOB or
 *                unit=NAME (a systemd unit, over sd-bus) (and the
 *                options cpu=, rss=, fds=, threads=, stuck=, crash_loop=);
 *                proc_parse.h has the grammar, docs/process.md the meaning.
 *   interval     duration, default 5s, 100ms..1h: resource sampling.
 *   rescan       duration, default 5s, 10ms..1h: longest gap between looks
 *                for a watch that has no process.
 *   grace        duration, default 5s, 0s..1h: how long a watch may have no
 *                process (e.g. between an exit and the supervisor's restart)
 *                before "not-running" is reported.
 *   crash_loop_restarts  2..32, default 5, and crash_loop_window, duration,
 *                default 10m: that many restarts within the window is a
 *                crash loop; a watch running a whole window since its last
 *                restart is "stable" again.
 *   stuck_after  duration, default 60s: D or Z state for longer is "stuck".
 *   proc_connector  bool, default yes: listen to the kernel's process
 *                events for exit statuses and exec events.
 *
 * How events are seen without polling:
 * - Exit: each watched process has a pidfd on the loop; it becomes readable
 *   the moment the process has exited. The exit status of a process that
 *   is not our child is only told by the proc connector (NETLINK_CONNECTOR,
 *   CN_IDX_PROC: needs CAP_NET_ADMIN in the initial user namespace). The
 *   kernel queues that message just after it wakes pidfd pollers (do_exit
 *   calls exit_notify, then proc_exit_connector), so on another CPU the
 *   pidfd can win: a pidfd wakeup drains the connector socket, and if the
 *   status is not there yet the exit waits for it, at most EXIT_WAIT_USEC,
 *   before it is reported with the status unknown. Without the connector
 *   the status says why and events carry "exit status unknown".
 * - New process of the same watch: for pidfile watches, inotify on the
 *   pidfile's directory (a supervisor writing the new PID wakes us at
 *   once); for pattern watches, the connector's exec events (the new
 *   program is checked against the down watches when it execs). In both
 *   cases, and as the only way without connector, a rescan of the down
 *   watches starts 10 ms after an exit and backs off, doubling, to rescan.
 *   A watch finding a process again after an exit is "restarted".
 * - Units: systemd's own view over the system bus (PropertiesChanged of
 *   the unit, see "systemd units" below): Result, ExecMainCode/Status,
 *   NRestarts arrive with the state change; the main process's resources
 *   are sampled like any other.
 * - Resources (CPU %, RSS, open fds, threads) and the D/Z state are sampled
 *   every interval from /proc/PID/{stat,status,fd}.
 *
 * Assumptions: a pattern watch follows one process, the matching one that
 * started first (a master with its workers is the master); kernel threads
 * (empty command line) and the agent itself never match. A pid is paired
 * with its start time so a reused pid is not taken for the watched one.
 * All per-watch state is in one array sized at configuration. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include "../agent/loop.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "../rules/conf.h"
#include "collector.h"
#include "proc_parse.h"

#define WATCHES_MAX 256
#define CMDLINE_MAX 4096 /* bytes of /proc/PID/cmdline read; the rest is cut with "..." */
#define PROCFILE_MAX 8192
#define EXITS_MAX 64 /* exit statuses from the connector waiting for their pidfd */
/* How long an exit seen through its pidfd waits for the connector's status
 * message (normally microseconds behind; a preempted exiting task or an
 * overrun connector makes it later or never). */
#define EXIT_WAIT_USEC (100 * 1000)
#define RESCAN_FIRST_USEC 10000ull
#define HISTORY_SHOWN 10
#define SEC 1000000ull
#define CN_RCVBUF (4 << 20) /* bytes of connector receive buffer: ~80,000 events */

struct pidfile_id {
        dev_t dev;
        ino_t ino;
        struct timespec mtime;
};

struct watch {
        struct proc_watch_spec spec;
        struct process_state *st;
        uint64_t stuck_usec, loop_window_usec;
        unsigned loop_restarts;

        /* the process followed, while running */
        bool running;
        bool exit_pending; /* pidfd said it ended; waiting for its status */
        uint64_t exit_seen_mono;
        pid_t pid;
        uint64_t starttime;
        int pidfd;
        struct loop_source *src;
        char comm[16];
        char cmdline[CMDLINE_MAX];
        uint64_t since_mono;

        /* while down */
        uint64_t down_since_mono;
        bool down_reported;
        bool exited; /* down after an exit: the next process is a restart */
        pid_t last_pid;
        int last_status; /* wait status, -1 unknown */
        int64_t last_exit_wall;
        char last_cmdline[CMDLINE_MAX];

        struct proc_restart_log restarts;
        uint64_t last_restart_mono; /* 0: none since start */
        bool stable_reported;
        bool looping;

        /* sampling */
        uint64_t prev_ticks, prev_mono;
        bool has_sample;
        double cpu;
        uint64_t rss;
        long fds, threads;
        char state;
        uint64_t stuck_since_mono;
        bool stuck_reported;

        int wd; /* inotify watch on the pidfile's directory, -1 none */

        /* unit watches: systemd's view, from GetAll and PropertiesChanged */
        sd_bus_slot *match;
        bool unit_known; /* systemd answered at least once */
        char active_state[32], sub_state[32], result[32], service_type[16];
        int exec_code, exec_status;
        uint32_t main_pid, n_restarts;
        char exec_start[CMDLINE_MAX]; /* systemd's ExecStart argv, joined; "" unknown */
        char pidfile_base[256];
        pid_t stale_pid;           /* the pidfile still names the ended process's pid, now reused */
        struct pidfile_id pidfile; /* as read when the process was found */
        bool pidfile_known;
};

struct pending_exit {
        pid_t pid;
        int status;
};

struct process_state {
        /* settings */
        struct watch *watches;
        size_t n_watches;
        uint64_t interval_usec, rescan_usec, grace_usec, stuck_usec, loop_window_usec;
        unsigned loop_restarts;
        bool use_connector;

        /* running */
        bool started;
        struct loop *loop;
        collector_emit_fn emit;
        void *userdata;
        struct loop_source *sample_timer, *rescan_timer, *exit_wait_timer;
        uint64_t rescan_delay;
        int cn_fd;
        struct loop_source *cn_src;
        bool cn_listening;
        char cn_status[200];
        int in_fd;
        struct loop_source *in_src;
        struct pending_exit exits[EXITS_MAX];
        size_t exits_next;
        long ticks_per_sec;
        long page_size;
        pid_t self;

        sd_bus *bus;
        struct loop_source *bus_io, *bus_timer;
        char bus_status[200];
        size_t n_units;

        uint64_t n_exits, n_exits_known, n_status_late, n_restarts, n_scans, cn_messages, cn_bad, cn_overruns,
                fds_denied;
};

/* ---- settings ---- */

static void process_free(void *userdata);

static int get_duration(const struct conf_block *b, const char *key, uint64_t min, uint64_t max, const char *range,
                        uint64_t *val, struct diag *d)
{
        uint64_t v;
        int r = conf_block_get_duration(b, key, &v, d);

        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (v < min || v > max)
                return conf_block_diag(b, key, d, "%s must be between %s", key, range);
        *val = v;
        return 0;
}

static int read_watches(struct process_state *st, const struct conf_block *b, struct diag *d)
{
        const char **vals = NULL;
        size_t n = 0;
        int r, ret = 0;

        r = conf_block_get_strings(b, "watch", &vals, &n, d);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (n > WATCHES_MAX) {
                free(vals);
                return conf_block_diag(b, "watch", d, "at most %d 'watch' settings", WATCHES_MAX);
        }
        st->watches = xcalloc(n ? n : 1, sizeof *st->watches);
        if (!st->watches) {
                free(vals);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                struct watch *w = &st->watches[st->n_watches];
                char err[300];
                unsigned off = 0;

                if (proc_watch_parse(vals[i], &w->spec, err, sizeof err, &off) < 0) {
                        ret = conf_block_diag_nth(b, "watch", i, off, d, "watch: %s", err);
                        continue;
                }
                bool dup = false;
                for (size_t j = 0; j < st->n_watches && !dup; j++)
                        dup = strcmp(st->watches[j].spec.name, w->spec.name) == 0;
                if (dup) {
                        ret = conf_block_diag_nth(b, "watch", i, 0, d, "watch name '%s' used twice", w->spec.name);
                        continue;
                }
                st->n_watches++;
        }
        free(vals);
        return ret;
}

static int process_new(const struct conf_block *b, const struct collector_context *ctx, struct diag *d,
                       void **ret_state)
{
        struct process_state *st = xcalloc(1, sizeof *st);
        double num;
        int r = 0, q;

        (void)ctx;
        if (!st)
                return -ENOMEM;
        st->interval_usec = 5 * SEC;
        st->rescan_usec = 5 * SEC;
        st->grace_usec = 5 * SEC;
        st->stuck_usec = 60 * SEC;
        st->loop_window_usec = 600 * SEC;
        st->loop_restarts = 5;
        st->use_connector = true;
        st->cn_fd = st->in_fd = -1;
        if (b) {
                if ((q = read_watches(st, b, d)) < 0)
                        r = q;
                if ((q = get_duration(b, "interval", 100000, 3600 * SEC, "100ms and 1h", &st->interval_usec, d)) < 0)
                        r = q;
                if ((q = get_duration(b, "rescan", 10000, 3600 * SEC, "10ms and 1h", &st->rescan_usec, d)) < 0)
                        r = q;
                if ((q = get_duration(b, "grace", 0, 3600 * SEC, "0s and 1h", &st->grace_usec, d)) < 0)
                        r = q;
                if ((q = get_duration(b, "stuck_after", SEC, 86400 * SEC, "1s and 1d", &st->stuck_usec, d)) < 0)
                        r = q;
                if ((q = get_duration(b, "crash_loop_window", SEC, 86400 * SEC, "1s and 1d", &st->loop_window_usec,
                                      d)) < 0)
                        r = q;
                if ((q = conf_block_get_number(b, "crash_loop_restarts", &num, d)) == 0) {
                        if (num < 2 || num > PROC_RESTARTS_MAX || num != (double)(unsigned)num)
                                r = conf_block_diag(b, "crash_loop_restarts", d,
                                                    "crash_loop_restarts must be a whole number 2 .. %d",
                                                    PROC_RESTARTS_MAX);
                        else
                                st->loop_restarts = (unsigned)num;
                } else if (q == -EINVAL)
                        r = q;
                if ((q = conf_block_get_bool(b, "proc_connector", &st->use_connector, d)) == -EINVAL)
                        r = q;
                if ((q = conf_block_check_unused(b, d)) < 0)
                        r = q;
        }
        if (r < 0) {
                process_free(st);
                return r;
        }
        for (size_t i = 0; i < st->n_watches; i++) {
                struct watch *w = &st->watches[i];
                w->st = st;
                w->pidfd = w->wd = -1;
                w->stuck_usec = w->spec.stuck_usec ? w->spec.stuck_usec : st->stuck_usec;
                w->loop_restarts = w->spec.loop_restarts ? w->spec.loop_restarts : st->loop_restarts;
                w->loop_window_usec = w->spec.loop_restarts ? w->spec.loop_window_usec : st->loop_window_usec;
                w->last_status = -1;
        }
        *ret_state = st;
        return 0;
}

/* ---- reading /proc ---- */

/* Reads at most size - 1 bytes of path into buf (NUL-terminated). Returns
 * the length or negative errno. */
static ssize_t read_small(const char *path, char *buf, size_t size)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        ssize_t n, total = 0;

        if (fd < 0)
                return -errno;
        while ((size_t)total < size - 1) {
                n = read(fd, buf + total, size - 1 - (size_t)total);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int e = errno;
                        close(fd);
                        return -e;
                }
                if (n == 0)
                        break;
                total += n;
        }
        close(fd);
        buf[total] = '\0';
        return total;
}

static int read_stat(pid_t pid, struct proc_stat *ret)
{
        char path[64], buf[1024];
        ssize_t n;

        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        n = read_small(path, buf, sizeof buf);
        if (n < 0)
                return (int)n;
        return proc_stat_parse(buf, (size_t)n, ret);
}

static int read_cmdline(pid_t pid, char *out, size_t size)
{
        char path[64], buf[CMDLINE_MAX];
        ssize_t n;

        snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
        n = read_small(path, buf, sizeof buf);
        if (n < 0)
                return (int)n;
        (void)proc_cmdline_join(buf, (size_t)n, out, size); /* a cut command line still identifies it */
        return 0;
}

static long count_fds(pid_t pid)
{
        char path[64];
        struct dirent *de;
        long n = 0;
        DIR *dir;

        snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
        dir = opendir(path);
        if (!dir)
                return -errno;
        while ((de = readdir(dir)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(dir);
        return n;
}

/* The pid a pidfile names: 0 when it is missing, empty or not a pid. */
static pid_t read_pidfile(const char *path)
{
        char buf[32];
        ssize_t n = read_small(path, buf, sizeof buf);
        char *end;
        long v;

        if (n <= 0)
                return 0;
        errno = 0;
        v = strtol(buf, &end, 10);
        while (*end == '\n' || *end == ' ' || *end == '\r' || *end == '\t')
                end++;
        if (errno || end == buf || *end || v <= 0 || v > 0x3fffffff)
                return 0;
        return (pid_t)v;
}

/* Whether pid is a live candidate for w; fills stat and cmdline. */
static bool candidate(struct process_state *st, struct watch *w, pid_t pid, struct proc_stat *ps, char *cmdline,
                      size_t size)
{
        if (pid == st->self || read_stat(pid, ps) < 0 || ps->state == 'Z' || ps->state == 'X')
                return false;
        if (read_cmdline(pid, cmdline, size) < 0 || !cmdline[0])
                return false; /* kernel threads have none */
        return proc_watch_matches(&w->spec, ps->comm, cmdline);
}

/* The pidfile's identity, to tell a pidfile rewritten since from one left
 * behind. Returns false when it cannot be read. */
static bool pidfile_id(const char *path, struct pidfile_id *ret)
{
        struct stat sb;

        if (stat(path, &sb) < 0)
                return false;
        ret->dev = sb.st_dev;
        ret->ino = sb.st_ino;
        ret->mtime = sb.st_mtim;
        return true;
}

/* Whether pid, read from w's pidfile, is the pid of the process w saw end,
 * in the very pidfile it was read from then: the daemon died without
 * removing it and another program has the pid now. (A clock comparison of
 * the pidfile's mtime with the process's start would also catch a pidfile
 * already stale when the agent starts, but a wall clock stepped forward
 * since, as at boot before NTP, would make live daemons look stale.) */
static bool pidfile_left_behind(const struct watch *w, pid_t pid)
{
        struct pidfile_id now;

        return w->exited && pid == w->last_pid && w->pidfile_known && pidfile_id(w->spec.pidfile, &now) &&
               now.dev == w->pidfile.dev && now.ino == w->pidfile.ino && now.mtime.tv_sec == w->pidfile.mtime.tv_sec &&
               now.mtime.tv_nsec == w->pidfile.mtime.tv_nsec;
}

/* Finds w's process: 0 and the pid, or -ENOENT. */
static int find_process(struct process_state *st, struct watch *w, pid_t *ret_pid, struct proc_stat *ret_stat,
                        char *cmdline, size_t size)
{
        struct proc_stat ps;
        struct dirent *de;
        bool found = false;
        DIR *dir;

        if (w->spec.kind == PROC_WATCH_PIDFILE) {
                pid_t pid = read_pidfile(w->spec.pidfile);
                w->stale_pid = 0;
                if (pid <= 0 || !candidate(st, w, pid, &ps, cmdline, size))
                        return -ENOENT;
                if (pidfile_left_behind(w, pid)) {
                        w->stale_pid = pid;
                        return -ENOENT;
                }
                w->pidfile_known = pidfile_id(w->spec.pidfile, &w->pidfile);
                *ret_pid = pid;
                *ret_stat = ps;
                return 0;
        }
        st->n_scans++;
        dir = opendir("/proc");
        if (!dir)
                return -errno;
        while ((de = readdir(dir))) {
                char cl[CMDLINE_MAX];
                char *end;
                long v = strtol(de->d_name, &end, 10);

                if (*end || v <= 0 || !candidate(st, w, (pid_t)v, &ps, cl, sizeof cl))
                        continue;
                if (!found || ps.starttime < ret_stat->starttime ||
                    (ps.starttime == ret_stat->starttime && (pid_t)v < *ret_pid)) {
                        found = true;
                        *ret_pid = (pid_t)v;
                        *ret_stat = ps;
                        snprintf(cmdline, size, "%s", cl);
                }
        }
        closedir(dir);
        return found ? 0 : -ENOENT;
}

/* ---- events ---- */

static void event_common(struct event *e, const struct watch *w, const char *name)
{
        event_init(e, "process", name, w->spec.name);
        event_add_string(e, "watch", w->spec.name);
        event_add_number(e, "critical", w->spec.critical ? 1 : 0);
        event_add_string(e, "kind", proc_watch_kind_to_string(w->spec.kind));
        if (w->spec.pidfile[0])
                event_add_string(e, "pidfile", w->spec.pidfile);
        if (w->spec.kind == PROC_WATCH_UNIT) {
                event_add_string(e, "unit", w->spec.unit);
                if (w->unit_known) {
                        event_add_string(e, "active_state", w->active_state);
                        event_add_string(e, "sub_state", w->sub_state);
                        event_add_string(e, "result", w->result);
                        event_add_number(e, "n_restarts", w->n_restarts);
                }
        }
}

/* Texts an event borrows from its builder: they live as long as it. */
struct exit_text {
        char how[96], sig[24];
};

/* Adds exit, exit_code or signal/signal_name/core_dumped; the strings stay
 * in t, which must outlive the emit. */
static void event_add_exit(struct event *e, int status, struct exit_text *t)
{
        char *how = t->how, *sig = t->sig;

        proc_exit_describe(status, how, sizeof t->how);
        event_add_string(e, "exit", how);
        event_add_number(e, "exit_status_known", status >= 0 ? 1 : 0);
        if (status < 0)
                return;
        if (WIFEXITED(status))
                event_add_number(e, "exit_code", WEXITSTATUS(status));
        else if (WIFSIGNALED(status)) {
                proc_signal_name(WTERMSIG(status), sig, sizeof t->sig);
                event_add_number(e, "signal", WTERMSIG(status));
                event_add_string(e, "signal_name", sig);
                event_add_number(e, "core_dumped", WCOREDUMP(status) ? 1 : 0);
        }
}

static void emit(struct process_state *st, const struct event *e)
{
        st->emit(e, st->userdata);
}

static void emit_running(struct process_state *st, struct watch *w)
{
        struct event e;

        event_common(&e, w, "running");
        event_add_number(&e, "pid", w->pid);
        event_add_string(&e, "comm", w->comm);
        event_add_string(&e, "cmdline", w->cmdline);
        emit(st, &e);
}

static void emit_not_running(struct process_state *st, struct watch *w)
{
        struct exit_text xt;
        struct event e;
        char reason[420];

        event_common(&e, w, "not-running");
        if (w->spec.kind == PROC_WATCH_UNIT)
                snprintf(reason, sizeof reason, "unit %s is %s (%s), result %s", w->spec.unit, w->active_state,
                         w->sub_state, w->result);
        else if (w->spec.kind == PROC_WATCH_PIDFILE && w->stale_pid)
                snprintf(reason, sizeof reason,
                         "exited and not back within %.3gs; the pidfile is stale: it still names pid %d, "
                         "another program's now",
                         (double)st->grace_usec / 1e6, (int)w->stale_pid);
        else if (w->exited)
                snprintf(reason, sizeof reason, "exited and not back within %.3gs", (double)st->grace_usec / 1e6);
        else if (w->spec.kind == PROC_WATCH_PIDFILE)
                snprintf(reason, sizeof reason, "the pidfile names no running process");
        else
                snprintf(reason, sizeof reason, "no process matches");
        event_add_string(&e, "reason", reason);
        event_add_number(&e, "down_seconds", (double)(time_mono_usec() - w->down_since_mono) / 1e6);
        if (w->exited) {
                event_add_number(&e, "pid", w->last_pid);
                event_add_string(&e, "cmdline", w->last_cmdline);
                event_add_exit(&e, w->last_status, &xt);
        } else {
                event_add_string(&e, "exit", "not seen running since the agent started");
        }
        emit(st, &e);
        log_warning("process: %s: not running (%s)", w->spec.name, reason);
}

/* ---- following a process ---- */

static void arm_rescan(struct process_state *st, uint64_t delay);
static void on_pidfd(struct loop_source *s, int fd, uint32_t events, void *userdata);

static void detach(struct watch *w)
{
        loop_remove(w->src);
        w->src = NULL;
        if (w->pidfd >= 0)
                close(w->pidfd);
        w->pidfd = -1;
        w->running = false;
        w->exit_pending = false;
        w->has_sample = false;
        w->stuck_since_mono = 0;
        w->stuck_reported = false;
}

static void now_running(struct process_state *st, struct watch *w, pid_t pid, const struct proc_stat *ps,
                        const char *cmdline);

static void attach(struct process_state *st, struct watch *w, pid_t pid, const struct proc_stat *ps,
                   const char *cmdline)
{
        struct proc_stat again;
        char name[96];
        int fd;

        fd = pidfd_open(pid, 0);
        if (fd < 0)
                return; /* gone meanwhile: the next rescan looks again */
        /* The pid may have been reused between reading /proc and the pidfd. */
        if (read_stat(pid, &again) < 0 || again.starttime != ps->starttime) {
                close(fd);
                return;
        }
        (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
        snprintf(name, sizeof name, "process:%s", w->spec.name);
        if (loop_add_io(st->loop, fd, EPOLLIN, name, on_pidfd, w, &w->src) < 0) {
                close(fd);
                return;
        }
        w->pidfd = fd;
        now_running(st, w, pid, ps, cmdline);
}

/* w has a process again: "running", and "restarted" (and "crash-loop")
 * when it had one that exited. ps may be NULL (a unit's main process we
 * cannot read). */
static void now_running(struct process_state *st, struct watch *w, pid_t pid, const struct proc_stat *ps,
                        const char *cmdline)
{
        w->running = true;
        w->pid = pid;
        w->starttime = ps ? ps->starttime : 0;
        w->since_mono = time_mono_usec();
        snprintf(w->comm, sizeof w->comm, "%s", ps ? ps->comm : "");
        snprintf(w->cmdline, sizeof w->cmdline, "%s", cmdline);
        w->down_reported = false;
        emit_running(st, w);

        if (w->exited) {
                struct proc_restart r = {
                        .wall_usec = time_wall_usec(),
                        .mono_usec = w->since_mono,
                        .old_pid = w->last_pid,
                        .new_pid = pid,
                        .wait_status = w->last_status,
                };
                char history[2048];
                struct exit_text xt;
                unsigned count;
                struct event e;

                proc_restart_log_add(&w->restarts, &r);
                w->last_restart_mono = r.mono_usec;
                w->stable_reported = false;
                st->n_restarts++;
                count = proc_restart_log_count(&w->restarts, r.mono_usec, w->loop_window_usec);
                proc_restart_log_format(&w->restarts, r.mono_usec, w->loop_window_usec, HISTORY_SHOWN, history,
                                        sizeof history);
                for (int pass = 0; pass < 2; pass++) {
                        if (pass == 1 && count < w->loop_restarts)
                                break;
                        event_common(&e, w, pass == 0 ? "restarted" : "crash-loop");
                        event_add_number(&e, "pid", pid);
                        event_add_number(&e, "old_pid", w->last_pid);
                        event_add_string(&e, "cmdline", cmdline);
                        event_add_exit(&e, w->last_status, &xt);
                        event_add_number(&e, "restarts", count);
                        event_add_number(&e, "crash_loop_restarts", w->loop_restarts);
                        event_add_number(&e, "window_seconds", (double)w->loop_window_usec / 1e6);
                        event_add_string(&e, "history", history);
                        emit(st, &e);
                }
                if (count >= w->loop_restarts && !w->looping)
                        log_warning("process: %s: crash loop: %u restarts within %.0fs", w->spec.name, count,
                                    (double)w->loop_window_usec / 1e6);
                w->looping = count >= w->loop_restarts;
                log_notice("process: %s: restarted: pid %d -> %d", w->spec.name, (int)w->last_pid, (int)pid);
        } else {
                log_info("process: %s: running as pid %d", w->spec.name, (int)pid);
        }
        w->exited = false;
}

/* Looks for w's process when it has none. Returns whether it has one now. */
static bool look(struct process_state *st, struct watch *w)
{
        struct proc_stat ps;
        char cmdline[CMDLINE_MAX];
        pid_t pid = 0;

        if (w->running || w->exit_pending || w->spec.kind == PROC_WATCH_UNIT)
                return w->running; /* units: systemd tells */
        if (find_process(st, w, &pid, &ps, cmdline, sizeof cmdline) == 0)
                attach(st, w, pid, &ps, cmdline);
        return w->running;
}

static void remember_exit(struct process_state *st, pid_t pid, int status)
{
        st->exits[st->exits_next].pid = pid;
        st->exits[st->exits_next].status = status;
        st->exits_next = (st->exits_next + 1) % EXITS_MAX;
}

static void cn_drain(struct process_state *st);

static void now_exited(struct process_state *st, struct watch *w, int status);

/* Takes the connector's status for pid out of the ring: the wait status,
 * or -1 when it has not arrived. */
static int take_exit(struct process_state *st, pid_t pid)
{
        for (size_t i = 0; i < EXITS_MAX; i++)
                if (st->exits[i].pid == pid) {
                        st->exits[i].pid = 0;
                        return st->exits[i].status;
                }
        return -1;
}

/* Reports w's exit and looks for its successor at once: the new process
 * may already be there (a pidfile written before the old one died);
 * otherwise the rescan looks again soon. */
static void finish_exit(struct process_state *st, struct watch *w, int status)
{
        now_exited(st, w, status);
        if (!look(st, w))
                arm_rescan(st, RESCAN_FIRST_USEC);
}

static void on_pidfd(struct loop_source *s, int fd, uint32_t events, void *userdata)
{
        struct watch *w = userdata;
        struct process_state *st = w->st;
        int status;

        (void)s;
        (void)fd;
        (void)events;
        cn_drain(st);
        status = take_exit(st, w->pid);
        if (status < 0 && st->cn_listening) {
                /* The status is a moment behind the pidfd. Stop polling the
                 * pidfd (it stays readable) and wait for it. */
                loop_remove(w->src);
                w->src = NULL;
                close(w->pidfd);
                w->pidfd = -1;
                w->exit_pending = true;
                w->exit_seen_mono = time_mono_usec();
                loop_timer_set(st->exit_wait_timer, EXIT_WAIT_USEC);
                return;
        }
        finish_exit(st, w, status);
}

/* Exits whose status did not come within EXIT_WAIT_USEC are reported
 * without it. */
static uint64_t on_exit_wait(struct loop_source *s, uint64_t now, void *userdata)
{
        struct process_state *st = userdata;
        uint64_t next = 0;

        (void)s;
        (void)now;
        cn_drain(st); /* may finish some */
        now = time_mono_usec();
        for (size_t i = 0; i < st->n_watches; i++) {
                struct watch *w = &st->watches[i];
                uint64_t due = w->exit_seen_mono + EXIT_WAIT_USEC;

                if (!w->exit_pending)
                        continue;
                if (now >= due) {
                        st->n_status_late++;
                        finish_exit(st, w, -1);
                } else if (next == 0 || due - now < next)
                        next = due - now;
        }
        return next;
}

/* w's process ended with status (wait status, -1 unknown): "exited". */
static void now_exited(struct process_state *st, struct watch *w, int status)
{
        struct exit_text xt;
        struct event e;

        st->n_exits++;
        if (status >= 0)
                st->n_exits_known++;
        w->last_pid = w->pid;
        w->last_status = status;
        w->last_exit_wall = time_wall_usec();
        snprintf(w->last_cmdline, sizeof w->last_cmdline, "%s", w->cmdline);
        detach(w);
        w->exited = true;
        w->down_since_mono = time_mono_usec();
        w->down_reported = false;

        event_common(&e, w, "exited");
        event_add_number(&e, "pid", w->last_pid);
        event_add_string(&e, "cmdline", w->last_cmdline);
        event_add_exit(&e, status, &xt);
        event_add_number(&e, "runtime_seconds", (double)(w->down_since_mono - w->since_mono) / 1e6);
        emit(st, &e);
        {
                char how[96];
                proc_exit_describe(status, how, sizeof how);
                log_notice("process: %s: pid %d %s", w->spec.name, (int)w->last_pid, how);
        }
        if (st->grace_usec == 0) {
                w->down_reported = true;
                emit_not_running(st, w);
        }
}

/* ---- rescans ---- */

static void arm_rescan(struct process_state *st, uint64_t delay)
{
        st->rescan_delay = delay;
        loop_timer_set(st->rescan_timer, delay);
}

static uint64_t on_rescan(struct loop_source *s, uint64_t now, void *userdata)
{
        struct process_state *st = userdata;
        uint64_t next = 0;

        (void)s;
        for (size_t i = 0; i < st->n_watches; i++) {
                struct watch *w = &st->watches[i];
                uint64_t due;

                if (w->exit_pending)
                        continue; /* on_exit_wait reports it */
                if (look(st, w) || (w->spec.kind == PROC_WATCH_UNIT && !w->unit_known))
                        continue;
                now = time_mono_usec();
                due = w->down_since_mono + st->grace_usec;
                if (!w->down_reported && now >= due) {
                        w->down_reported = true;
                        emit_not_running(st, w);
                }
                if (!w->down_reported && (next == 0 || due - now < next))
                        next = due - now;
        }
        /* Any watch still down: back off towards rescan, but wake for the
         * next grace deadline. */
        for (size_t i = 0; i < st->n_watches; i++)
                if (!st->watches[i].running) {
                        uint64_t d = st->rescan_delay * 2;
                        if (d > st->rescan_usec)
                                d = st->rescan_usec;
                        if (d == 0)
                                d = RESCAN_FIRST_USEC;
                        st->rescan_delay = d;
                        return next && next < d ? next : d;
                }
        return 0;
}

/* ---- sampling ---- */

static void sample(struct process_state *st, struct watch *w, uint64_t now)
{
        char path[64], buf[PROCFILE_MAX];
        struct proc_status pst = {.threads = -1, .uid = -1};
        struct proc_stat ps;
        struct event e;
        uint64_t ticks;
        ssize_t n;
        bool stuck;

        if (read_stat(w->pid, &ps) < 0 || ps.starttime != w->starttime)
                return; /* exiting: the pidfd reports it */
        snprintf(w->comm, sizeof w->comm, "%s", ps.comm);
        (void)read_cmdline(w->pid, w->cmdline, sizeof w->cmdline);
        snprintf(path, sizeof path, "/proc/%d/status", (int)w->pid);
        n = read_small(path, buf, sizeof buf);
        if (n >= 0)
                (void)proc_status_parse(buf, (size_t)n, &pst);
        ticks = ps.utime + ps.stime;
        if (w->has_sample && now > w->prev_mono && ticks >= w->prev_ticks)
                w->cpu = (double)(ticks - w->prev_ticks) / (double)st->ticks_per_sec * 1e8 /
                         (double)(now - w->prev_mono);
        else
                w->cpu = 0;
        w->rss = pst.rss_kib ? pst.rss_kib * 1024 : ps.rss_pages * (uint64_t)st->page_size;
        w->threads = pst.threads >= 0 ? pst.threads : ps.num_threads;
        w->fds = count_fds(w->pid);
        if (w->fds < 0)
                st->fds_denied++;
        w->state = ps.state;
        stuck = ps.state == 'D' || ps.state == 'Z';
        if (!stuck) {
                w->stuck_since_mono = 0;
                w->stuck_reported = false;
        } else if (!w->stuck_since_mono)
                w->stuck_since_mono = now;

        if (w->has_sample) {
                char st_s[2] = {w->state, '\0'};

                event_common(&e, w, "usage");
                event_add_number(&e, "pid", w->pid);
                event_add_string(&e, "cmdline", w->cmdline);
                event_add_number(&e, "cpu_percent", w->cpu);
                event_add_number(&e, "rss_bytes", (double)w->rss);
                event_add_number(&e, "threads", (double)w->threads);
                if (w->fds >= 0)
                        event_add_number(&e, "fds", (double)w->fds);
                event_add_string(&e, "state", st_s);
                event_add_number(&e, "stuck", w->stuck_reported ? 1 : 0);
                if (w->spec.cpu_max > 0)
                        event_add_number(&e, "cpu_max", w->spec.cpu_max);
                if (w->spec.rss_max)
                        event_add_number(&e, "rss_max", (double)w->spec.rss_max);
                if (w->spec.fds_max)
                        event_add_number(&e, "fds_max", (double)w->spec.fds_max);
                if (w->spec.threads_max)
                        event_add_number(&e, "threads_max", (double)w->spec.threads_max);
                emit(st, &e);
        }
        if (stuck && !w->stuck_reported && now - w->stuck_since_mono >= w->stuck_usec) {
                char st_s[2] = {w->state, '\0'};

                w->stuck_reported = true;
                event_common(&e, w, "stuck");
                event_add_number(&e, "pid", w->pid);
                event_add_string(&e, "cmdline", w->cmdline);
                event_add_string(&e, "state", st_s);
                event_add_string(&e, "state_name", w->state == 'D' ? "uninterruptible sleep (D)" : "zombie (Z)");
                event_add_number(&e, "stuck_seconds", (double)(now - w->stuck_since_mono) / 1e6);
                event_add_number(&e, "stuck_after_seconds", (double)w->stuck_usec / 1e6);
                emit(st, &e);
                log_warning("process: %s: pid %d in state %c for %.0fs", w->spec.name, (int)w->pid, w->state,
                            (double)(now - w->stuck_since_mono) / 1e6);
        }
        w->prev_ticks = ticks;
        w->prev_mono = now;
        w->has_sample = true;
}

static uint64_t on_sample(struct loop_source *s, uint64_t now, void *userdata)
{
        struct process_state *st = userdata;

        (void)s;
        for (size_t i = 0; i < st->n_watches; i++) {
                struct watch *w = &st->watches[i];

                if (!w->running)
                        continue;
                sample(st, w, now);
                /* A whole window without restart: the crash loop is over. */
                if (w->last_restart_mono && !w->stable_reported && now - w->last_restart_mono >= w->loop_window_usec) {
                        struct event e;

                        w->stable_reported = true;
                        w->looping = false;
                        event_common(&e, w, "stable");
                        event_add_number(&e, "pid", w->pid);
                        event_add_number(
                                &e, "restarts",
                                proc_restart_log_count(&w->restarts, w->last_restart_mono, w->loop_window_usec));
                        event_add_number(&e, "window_seconds", (double)w->loop_window_usec / 1e6);
                        emit(st, &e);
                        log_info("process: %s: stable again (running %.0fs without restart)", w->spec.name,
                                 (double)w->loop_window_usec / 1e6);
                }
        }
        return st->interval_usec;
}

/* ---- proc connector ---- */

static void cn_event(const struct proc_cn_event *ev, void *userdata)
{
        struct process_state *st = userdata;

        switch (ev->kind) {
        case PROC_CN_ACK:
                if (ev->err) {
                        snprintf(st->cn_status, sizeof st->cn_status,
                                 "unavailable: the kernel refused the listen request (%s); exit status unknown",
                                 strerror(ev->err));
                        st->cn_listening = false;
                } else if (!st->cn_listening) {
                        st->cn_listening = true;
                        snprintf(st->cn_status, sizeof st->cn_status, "listening");
                }
                break;
        case PROC_CN_EXIT:
                st->cn_listening = true; /* events arrive: whatever the ack said */
                snprintf(st->cn_status, sizeof st->cn_status, "listening");
                if (ev->pid != ev->tid)
                        break; /* another thread; the leader's exit carries the group's status */
                for (size_t i = 0; i < st->n_watches; i++) {
                        struct watch *w = &st->watches[i];

                        if (w->pid != ev->pid)
                                continue;
                        if (w->exit_pending)
                                finish_exit(st, w, ev->wait_status);
                        else if (w->running)
                                remember_exit(st, ev->pid, ev->wait_status);
                        else
                                continue;
                        break;
                }
                break;
        case PROC_CN_EXEC:
                for (size_t i = 0; i < st->n_watches; i++) {
                        struct watch *w = &st->watches[i];
                        struct proc_stat ps;
                        char cmdline[CMDLINE_MAX];

                        /* A watched process became a new program (a
                         * supervisor's fork writes its pid before exec). */
                        if (w->running && w->pid == ev->pid) {
                                if (read_stat(w->pid, &ps) == 0)
                                        snprintf(w->comm, sizeof w->comm, "%s", ps.comm);
                                (void)read_cmdline(w->pid, w->cmdline, sizeof w->cmdline);
                                continue;
                        }
                        if (w->running || w->exit_pending || w->spec.kind != PROC_WATCH_PATTERN)
                                continue;
                        if (candidate(st, w, ev->pid, &ps, cmdline, sizeof cmdline))
                                attach(st, w, ev->pid, &ps, cmdline);
                }
                break;
        default:
                break;
        }
}

static void cn_drain(struct process_state *st)
{
        char buf[8192] __attribute__((aligned(8)));

        if (st->cn_fd < 0)
                return;
        for (int i = 0; i < 64; i++) {
                ssize_t n = recv(st->cn_fd, buf, sizeof buf, MSG_DONTWAIT);

                if (n < 0) {
                        if (errno == ENOBUFS) {
                                /* the kernel dropped events (a fork storm): the
                                 * statuses of those exits are unknown */
                                st->cn_overruns++;
                                continue;
                        }
                        return;
                }
                st->cn_messages++;
                if (proc_cn_parse(buf, (size_t)n, cn_event, st) < 0)
                        st->cn_bad++;
        }
}

static void on_cn(struct loop_source *s, int fd, uint32_t events, void *userdata)
{
        (void)s;
        (void)fd;
        (void)events;
        cn_drain(userdata);
}

/* Opens the connector socket and asks for process events. Fills cn_status
 * either way; returns 0 or negative errno (not fatal to the collector). */
static int cn_open(struct process_state *st)
{
        struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC};
        struct {
                struct nlmsghdr nh;
                struct cn_msg cn;
                enum proc_cn_mcast_op op;
        } __attribute__((packed)) req;
        int fd, e;

        fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_CONNECTOR);
        if (fd < 0) {
                e = errno;
                snprintf(st->cn_status, sizeof st->cn_status, "unavailable: socket: %s; exit status unknown",
                         strerror(e));
                return -e;
        }
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                e = errno;
                snprintf(st->cn_status, sizeof st->cn_status, "unavailable: %s%s; exit status unknown", strerror(e),
                         e == EPERM ? " (needs CAP_NET_ADMIN)" : "");
                close(fd);
                return -e;
        }
        /* Every fork, exec and exit of the machine arrives here: room for a
         * burst (FORCE works with the CAP_NET_ADMIN the connector needs). */
        {
                int want = CN_RCVBUF;
                if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof want) < 0)
                        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof want);
        }
        memset(&req, 0, sizeof req);
        req.nh.nlmsg_len = sizeof req;
        req.nh.nlmsg_type = NLMSG_DONE;
        req.nh.nlmsg_pid = (uint32_t)getpid();
        req.cn.id.idx = CN_IDX_PROC;
        req.cn.id.val = CN_VAL_PROC;
        req.cn.len = sizeof req.op;
        req.op = PROC_CN_MCAST_LISTEN;
        if (send(fd, &req, sizeof req, 0) < 0) {
                e = errno;
                snprintf(st->cn_status, sizeof st->cn_status, "unavailable: listen request: %s; exit status unknown",
                         strerror(e));
                close(fd);
                return -e;
        }
        st->cn_fd = fd;
        snprintf(st->cn_status, sizeof st->cn_status, "listen requested, no answer yet");
        return 0;
}

/* ---- inotify on pidfile directories ---- */

static void on_inotify(struct loop_source *s, int fd, uint32_t events, void *userdata)
{
        struct process_state *st = userdata;
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

        (void)s;
        (void)events;
        for (;;) {
                ssize_t n = read(fd, buf, sizeof buf);

                if (n <= 0)
                        return;
                for (char *p = buf; p < buf + n;) {
                        const struct inotify_event *ie = (const struct inotify_event *)p;

                        for (size_t i = 0; i < st->n_watches; i++) {
                                struct watch *w = &st->watches[i];
                                if (w->wd == ie->wd && !w->running &&
                                    (ie->len == 0 || strcmp(ie->name, w->pidfile_base) == 0))
                                        (void)look(st, w);
                        }
                        p += sizeof *ie + ie->len;
                }
        }
}

/* ---- systemd units over sd-bus ----
 *
 * One connection to the system bus ($DBUS_SYSTEM_BUS_ADDRESS when set), its
 * fd and timeout on the loop. Manager.Subscribe makes systemd send unit
 * signals; a match per unit on org.freedesktop.DBus.Properties.
 * PropertiesChanged brings ActiveState/SubState (Unit) and MainPID, Result,
 * ExecMainCode/ExecMainStatus, NRestarts (Service) as they change (systemd
 * sends the values, so nothing is polled); one GetAll per interface at
 * start gives the initial state. The unit's object path is the escaped unit
 * name under /org/freedesktop/systemd1/unit, as systemd names it, so no
 * LoadUnit round trip is needed (a unit systemd has not loaded answers
 * GetAll with an error and is reported as the bus said). */

#define UNIT_PATH_PREFIX "/org/freedesktop/systemd1/unit"
#define UNIT_IFACE "org.freedesktop.systemd1.Unit"
#define SERVICE_IFACE "org.freedesktop.systemd1.Service"

static void bus_close(struct process_state *st, const char *why);

/* ExecMainCode (CLD_*) and ExecMainStatus as a wait status, -1 unknown. */
static int unit_wait_status(const struct watch *w)
{
        if (w->exec_code == CLD_EXITED)
                return (w->exec_status & 0xff) << 8;
        if (w->exec_code == CLD_KILLED)
                return w->exec_status & 0x7f;
        if (w->exec_code == CLD_DUMPED)
                return (w->exec_status & 0x7f) | 0x80;
        return -1;
}

/* ExecStart, a(sasbttttuii): the first command's argv, joined by blanks. */
static int unit_read_exec_start(sd_bus_message *m, char *dst, size_t size)
{
        const char *path, *arg;
        size_t n = 0;
        int r;

        dst[0] = '\0';
        if ((r = sd_bus_message_enter_container(m, 'v', "a(sasbttttuii)")) < 0 ||
            (r = sd_bus_message_enter_container(m, 'a', "(sasbttttuii)")) < 0)
                return r;
        r = sd_bus_message_enter_container(m, 'r', "sasbttttuii");
        if (r > 0) {
                if ((r = sd_bus_message_read(m, "s", &path)) < 0 ||
                    (r = sd_bus_message_enter_container(m, 'a', "s")) < 0)
                        return r;
                while ((r = sd_bus_message_read(m, "s", &arg)) > 0) {
                        int k = snprintf(dst + n, size - n, "%s%s", n ? " " : "", arg);
                        if (k < 0 || (size_t)k >= size - n)
                                break; /* cut: a command line this long still identifies it */
                        n += (size_t)k;
                }
                if (r < 0 || (r = sd_bus_message_skip(m, NULL)) < 0 || (r = sd_bus_message_exit_container(m)) < 0 ||
                    (r = sd_bus_message_skip(m, "bttttuii")) < 0 || (r = sd_bus_message_exit_container(m)) < 0)
                        return r;
        }
        if (r < 0)
                return r;
        if ((r = sd_bus_message_skip(m, NULL)) < 0 || (r = sd_bus_message_exit_container(m)) < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static void unit_copy_string(sd_bus_message *m, char *dst, size_t size, int *r)
{
        const char *v;

        *r = sd_bus_message_read(m, "v", "s", &v);
        if (*r >= 0)
                snprintf(dst, size, "%s", v);
}

/* Reads an a{sv} of Unit or Service properties into w. Returns 0 or a
 * negative errno from sd-bus (malformed message). */
static int unit_read_props(struct watch *w, sd_bus_message *m)
{
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key;
                int32_t i32;
                uint32_t u32;

                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        return r;
                if (strcmp(key, "ActiveState") == 0)
                        unit_copy_string(m, w->active_state, sizeof w->active_state, &r);
                else if (strcmp(key, "SubState") == 0)
                        unit_copy_string(m, w->sub_state, sizeof w->sub_state, &r);
                else if (strcmp(key, "Result") == 0)
                        unit_copy_string(m, w->result, sizeof w->result, &r);
                else if (strcmp(key, "Type") == 0)
                        unit_copy_string(m, w->service_type, sizeof w->service_type, &r);
                else if (strcmp(key, "ExecStart") == 0)
                        r = unit_read_exec_start(m, w->exec_start, sizeof w->exec_start);
                else if (strcmp(key, "ExecMainCode") == 0 && (r = sd_bus_message_read(m, "v", "i", &i32)) >= 0)
                        w->exec_code = i32;
                else if (strcmp(key, "ExecMainStatus") == 0 && (r = sd_bus_message_read(m, "v", "i", &i32)) >= 0)
                        w->exec_status = i32;
                else if (strcmp(key, "MainPID") == 0 && (r = sd_bus_message_read(m, "v", "u", &u32)) >= 0)
                        w->main_pid = u32;
                else if (strcmp(key, "NRestarts") == 0 && (r = sd_bus_message_read(m, "v", "u", &u32)) >= 0)
                        w->n_restarts = u32;
                else if (strcmp(key, "ExecMainCode") != 0 && strcmp(key, "ExecMainStatus") != 0 &&
                         strcmp(key, "ExecStart") != 0 && strcmp(key, "MainPID") != 0 && strcmp(key, "NRestarts") != 0)
                        r = sd_bus_message_skip(m, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

/* Applies systemd's view: running means ActiveState active or reloading
 * and, for a service with a main process, a MainPID (systemd sends MainPID
 * 0 before the Unit's ActiveState leaves active). A oneshot service (or a
 * unit of another type) has no main process: active is running. */
static void unit_update(struct process_state *st, struct watch *w)
{
        bool is_service = strstr(w->spec.unit, ".service") != NULL;
        bool no_main = !is_service || strcmp(w->service_type, "oneshot") == 0;
        bool running = (strcmp(w->active_state, "active") == 0 || strcmp(w->active_state, "reloading") == 0) &&
                       (w->main_pid != 0 || no_main);
        pid_t pid = (pid_t)w->main_pid;

        if (w->running && running && w->pid == 0 && pid) {
                /* the Service properties came after the Unit ones: adopt the main pid */
                struct proc_stat ps;
                w->pid = pid;
                if (read_stat(pid, &ps) == 0) {
                        w->starttime = ps.starttime;
                        snprintf(w->comm, sizeof w->comm, "%s", ps.comm);
                        (void)read_cmdline(pid, w->cmdline, sizeof w->cmdline);
                }
                return;
        }
        /* systemd sends the Service interface's changes (MainPID 0, Result,
         * ExecMain*) before the Unit's (ActiveState), so an exit is seen
         * with its status either way */
        if (w->running && (!running || (w->pid && pid != w->pid))) {
                now_exited(st, w, unit_wait_status(w));
                arm_rescan(st, RESCAN_FIRST_USEC); /* the grace clock */
        }
        if (!w->running && running) {
                struct proc_stat ps;
                char cmdline[CMDLINE_MAX] = "";
                bool have = pid > 0 && read_stat(pid, &ps) == 0;

                /* The command line systemd runs: the new main process may
                 * not have exec'd yet when systemd announces it (samples read
                 * /proc later). */
                if (w->exec_start[0])
                        snprintf(cmdline, sizeof cmdline, "%s", w->exec_start);
                else if (have)
                        (void)read_cmdline(pid, cmdline, sizeof cmdline);
                now_running(st, w, pid, have ? &ps : NULL, cmdline);
        } else if (!w->running && !w->down_since_mono) {
                w->down_since_mono = time_mono_usec();
                arm_rescan(st, RESCAN_FIRST_USEC);
        }
}

static int on_unit_props(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct watch *w = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);
        int r;

        (void)ret_error;
        if (e) {
                log_warning("process: %s: systemd: %s", w->spec.unit, e->message ? e->message : e->name);
                return 0;
        }
        r = unit_read_props(w, m);
        if (r < 0) {
                log_warning("process: %s: malformed properties from systemd: %s", w->spec.unit, strerror(-r));
                return 0;
        }
        w->unit_known = true;
        unit_update(w->st, w);
        return 0;
}

static int on_unit_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        struct watch *w = userdata;
        const char *iface;
        int r;

        (void)ret_error;
        r = sd_bus_message_read(m, "s", &iface);
        if (r < 0 || (strcmp(iface, UNIT_IFACE) != 0 && strcmp(iface, SERVICE_IFACE) != 0))
                return 0;
        r = unit_read_props(w, m);
        if (r < 0) {
                log_warning("process: %s: malformed PropertiesChanged: %s", w->spec.unit, strerror(-r));
                return 0;
        }
        w->unit_known = true;
        unit_update(w->st, w);
        return 0;
}

static uint64_t bus_timeout(struct process_state *st)
{
        uint64_t when = UINT64_MAX, now = time_mono_usec();

        if (!st->bus || sd_bus_get_timeout(st->bus, &when) < 0 || when == UINT64_MAX)
                return 0;
        return when > now ? when - now : 1;
}

static void bus_run(struct process_state *st)
{
        int r = 0;

        while (st->bus && (r = sd_bus_process(st->bus, NULL)) > 0)
                ;
        if (st->bus && r < 0) {
                char why[160];
                snprintf(why, sizeof why, "disconnected: %s", strerror(-r));
                bus_close(st, why);
                return;
        }
        if (st->bus) {
                r = sd_bus_get_events(st->bus);
                if (r >= 0)
                        (void)loop_io_set_events(st->bus_io, (uint32_t)r);
        }
}

static void on_bus_io(struct loop_source *s, int fd, uint32_t events, void *userdata)
{
        struct process_state *st = userdata;

        (void)s;
        (void)fd;
        (void)events;
        bus_run(st);
        if (st->bus)
                loop_timer_set(st->bus_timer, bus_timeout(st));
}

static uint64_t on_bus_timer(struct loop_source *s, uint64_t now, void *userdata)
{
        struct process_state *st = userdata;

        (void)s;
        (void)now;
        bus_run(st);
        return bus_timeout(st);
}

static void bus_close(struct process_state *st, const char *why)
{
        for (size_t i = 0; i < st->n_watches; i++) {
                st->watches[i].match = sd_bus_slot_unref(st->watches[i].match);
                st->watches[i].unit_known = false;
        }
        loop_remove(st->bus_io);
        loop_remove(st->bus_timer);
        st->bus_io = st->bus_timer = NULL;
        st->bus = sd_bus_flush_close_unref(st->bus);
        if (why) {
                snprintf(st->bus_status, sizeof st->bus_status, "%s", why);
                log_err("process: system bus %s; unit watches are not watched until a reload", why);
        }
}

/* Connects and subscribes. Fills bus_status either way; returns 0 or a
 * negative errno (the collector runs on without its unit watches). */
static int bus_open(struct process_state *st)
{
        int r, fd;

        r = sd_bus_open_system(&st->bus);
        if (r < 0)
                goto fail;
        r = sd_bus_call_method_async(st->bus, NULL, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                     "org.freedesktop.systemd1.Manager", "Subscribe", NULL, NULL, "");
        for (size_t i = 0; r >= 0 && i < st->n_watches; i++) {
                struct watch *w = &st->watches[i];
                char *path = NULL;

                if (w->spec.kind != PROC_WATCH_UNIT)
                        continue;
                r = sd_bus_path_encode(UNIT_PATH_PREFIX, w->spec.unit, &path);
                if (r >= 0)
                        r = sd_bus_match_signal_async(st->bus, &w->match, "org.freedesktop.systemd1", path,
                                                      "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                                      on_unit_changed, NULL, w);
                if (r >= 0)
                        r = sd_bus_call_method_async(st->bus, NULL, "org.freedesktop.systemd1", path,
                                                     "org.freedesktop.DBus.Properties", "GetAll", on_unit_props, w, "s",
                                                     UNIT_IFACE);
                if (r >= 0 && strstr(w->spec.unit, ".service"))
                        r = sd_bus_call_method_async(st->bus, NULL, "org.freedesktop.systemd1", path,
                                                     "org.freedesktop.DBus.Properties", "GetAll", on_unit_props, w, "s",
                                                     SERVICE_IFACE);
                free(path);
        }
        if (r < 0)
                goto fail;
        fd = sd_bus_get_fd(st->bus);
        r = fd < 0 ? fd
                   : loop_add_io(st->loop, fd, EPOLLIN | EPOLLOUT, "process-systemd-bus", on_bus_io, st, &st->bus_io);
        if (r >= 0)
                r = loop_add_timer(st->loop, 0, 0, "process-systemd-bus-timeout", on_bus_timer, st, &st->bus_timer);
        if (r < 0)
                goto fail;
        snprintf(st->bus_status, sizeof st->bus_status, "connected");
        return 0;
fail:
        bus_close(st, NULL);
        snprintf(st->bus_status, sizeof st->bus_status, "unavailable: %s", strerror(-r));
        return r;
}

/* ---- collector_ops ---- */

static void process_stop(void *userdata)
{
        struct process_state *st = userdata;

        if (!st || !st->started)
                return;
        for (size_t i = 0; i < st->n_watches; i++) {
                detach(&st->watches[i]);
                st->watches[i].wd = -1;
        }
        bus_close(st, NULL);
        loop_remove(st->sample_timer);
        loop_remove(st->rescan_timer);
        loop_remove(st->exit_wait_timer);
        loop_remove(st->cn_src);
        loop_remove(st->in_src);
        st->sample_timer = st->rescan_timer = st->exit_wait_timer = st->cn_src = st->in_src = NULL;
        if (st->cn_fd >= 0)
                close(st->cn_fd);
        if (st->in_fd >= 0)
                close(st->in_fd);
        st->cn_fd = st->in_fd = -1;
        st->started = false;
}

static int process_start(void *userdata, struct loop *loop, collector_emit_fn emit_fn, void *emit_userdata)
{
        struct process_state *st = userdata;
        int r;

        if (st->started)
                return -EALREADY;
        st->loop = loop;
        st->emit = emit_fn;
        st->userdata = emit_userdata;
        st->self = getpid();
        st->ticks_per_sec = sysconf(_SC_CLK_TCK);
        st->page_size = sysconf(_SC_PAGESIZE);
        if (st->ticks_per_sec <= 0)
                st->ticks_per_sec = 100;
        if (st->page_size <= 0)
                st->page_size = 4096;
        st->started = true; /* from here, process_stop undoes what is done */

        r = loop_add_timer(loop, 0, 0, "process-rescan", on_rescan, st, &st->rescan_timer);
        if (r < 0)
                goto fail;
        loop_timer_set(st->rescan_timer, 0);
        r = loop_add_timer(loop, 0, 0, "process-exit-status", on_exit_wait, st, &st->exit_wait_timer);
        if (r < 0)
                goto fail;
        loop_timer_set(st->exit_wait_timer, 0);
        r = loop_add_timer(loop, st->interval_usec, st->interval_usec / 20, "process-sample", on_sample, st,
                           &st->sample_timer);
        if (r < 0)
                goto fail;
        if (!st->use_connector)
                snprintf(st->cn_status, sizeof st->cn_status, "disabled (proc_connector no); exit status unknown");
        else if (cn_open(st) == 0) {
                r = loop_add_io(loop, st->cn_fd, EPOLLIN, "process-connector", on_cn, st, &st->cn_src);
                if (r < 0)
                        goto fail;
        }
        st->in_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (st->in_fd < 0) {
                r = -errno;
                goto fail;
        }
        r = loop_add_io(loop, st->in_fd, EPOLLIN, "process-pidfiles", on_inotify, st, &st->in_src);
        if (r < 0)
                goto fail;
        for (size_t i = 0; i < st->n_watches; i++) {
                struct watch *w = &st->watches[i];
                char dir[PROC_PATH_MAX + 1], base[PROC_PATH_MAX + 1];

                w->running = w->exited = w->down_reported = false;
                if (w->spec.kind != PROC_WATCH_PIDFILE)
                        continue;
                snprintf(dir, sizeof dir, "%s", w->spec.pidfile);
                snprintf(base, sizeof base, "%s", w->spec.pidfile);
                snprintf(w->pidfile_base, sizeof w->pidfile_base, "%s", basename(base));
                w->wd = inotify_add_watch(st->in_fd, dirname(dir),
                                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY);
                if (w->wd < 0)
                        log_info("process: %s: cannot watch %s for changes (%m); it is rescanned every %.3gs",
                                 w->spec.name, dir, (double)st->rescan_usec / 1e6);
        }
        for (size_t i = 0; i < st->n_watches; i++)
                if (st->watches[i].spec.kind == PROC_WATCH_UNIT)
                        st->n_units++;
        if (st->n_units > 0 && bus_open(st) < 0)
                log_err("process: cannot watch %zu systemd unit(s): system bus %s", st->n_units, st->bus_status);
        /* The first look happens now, so "not running at start" is known
         * within grace of the start. */
        for (size_t i = 0; i < st->n_watches; i++) {
                struct watch *w = &st->watches[i];
                w->down_since_mono = 0;
                if (!look(st, w) && w->spec.kind != PROC_WATCH_UNIT)
                        w->down_since_mono = time_mono_usec();
        }
        arm_rescan(st, RESCAN_FIRST_USEC);
        log_info("process: watching %zu process(es); proc connector: %s", st->n_watches, st->cn_status);
        return 0;
fail:
        process_stop(st);
        return r;
}

static cJSON *watch_status(const struct process_state *st, const struct watch *w)
{
        cJSON *o = cJSON_CreateObject();
        char spec[1024], how[96];

        if (!o)
                return NULL;
        proc_watch_format(&w->spec, spec, sizeof spec);
        cJSON_AddStringToObject(o, "name", w->spec.name);
        cJSON_AddStringToObject(o, "watch", spec);
        cJSON_AddStringToObject(o, "kind", proc_watch_kind_to_string(w->spec.kind));
        cJSON_AddBoolToObject(o, "critical", w->spec.critical);
        cJSON_AddStringToObject(o, "state", w->running ? "running" : w->down_reported ? "not running" : "looking");
        if (w->running) {
                cJSON_AddNumberToObject(o, "pid", w->pid);
                cJSON_AddStringToObject(o, "cmdline", w->cmdline);
                cJSON_AddNumberToObject(o, "running_seconds", (double)(time_mono_usec() - w->since_mono) / 1e6);
                if (w->has_sample) {
                        char s[2] = {w->state, '\0'};
                        cJSON_AddNumberToObject(o, "cpu_percent", w->cpu);
                        cJSON_AddNumberToObject(o, "rss_bytes", (double)w->rss);
                        cJSON_AddNumberToObject(o, "threads", (double)w->threads);
                        if (w->fds >= 0)
                                cJSON_AddNumberToObject(o, "fds", (double)w->fds);
                        else
                                cJSON_AddStringToObject(o, "fds", "unreadable (other user: needs CAP_SYS_PTRACE)");
                        cJSON_AddStringToObject(o, "proc_state", s);
                }
        }
        if (w->spec.kind == PROC_WATCH_UNIT) {
                cJSON_AddStringToObject(o, "unit", w->spec.unit);
                cJSON_AddStringToObject(o, "active_state", w->unit_known ? w->active_state : "unknown");
                cJSON_AddStringToObject(o, "sub_state", w->unit_known ? w->sub_state : "unknown");
                cJSON_AddStringToObject(o, "result", w->unit_known ? w->result : "unknown");
                cJSON_AddNumberToObject(o, "n_restarts", w->n_restarts);
        }
        if (w->last_pid) {
                proc_exit_describe(w->last_status, how, sizeof how);
                cJSON_AddNumberToObject(o, "last_exit_pid", w->last_pid);
                cJSON_AddStringToObject(o, "last_exit", how);
        }
        cJSON_AddNumberToObject(o, "restarts_in_window",
                                proc_restart_log_count(&w->restarts, time_mono_usec(), w->loop_window_usec));
        cJSON_AddBoolToObject(o, "crash_loop", w->looping);
        (void)st;
        return o;
}

static cJSON *process_status(void *userdata, bool verbose)
{
        struct process_state *st = userdata;
        cJSON *o = cJSON_CreateObject(), *list;

        (void)verbose;
        if (!o)
                return NULL;
        if (st->started)
                cn_drain(st);
        cJSON_AddBoolToObject(o, "started", st->started);
        cJSON_AddStringToObject(o, "proc_connector", st->cn_status[0] ? st->cn_status : "not started");
        cJSON_AddStringToObject(o, "exit_status",
                                st->cn_listening ? "from the proc connector" : "unknown (no proc connector)");
        if (st->n_units > 0)
                cJSON_AddStringToObject(o, "systemd_bus", st->bus_status);
        cJSON_AddNumberToObject(o, "interval_sec", (double)st->interval_usec / 1e6);
        cJSON_AddNumberToObject(o, "grace_sec", (double)st->grace_usec / 1e6);
        cJSON_AddNumberToObject(o, "rescan_sec", (double)st->rescan_usec / 1e6);
        cJSON_AddNumberToObject(o, "exits", (double)st->n_exits);
        cJSON_AddNumberToObject(o, "exits_with_status", (double)st->n_exits_known);
        cJSON_AddNumberToObject(o, "exits_status_late", (double)st->n_status_late);
        cJSON_AddNumberToObject(o, "restarts", (double)st->n_restarts);
        cJSON_AddNumberToObject(o, "scans", (double)st->n_scans);
        cJSON_AddNumberToObject(o, "connector_messages", (double)st->cn_messages);
        cJSON_AddNumberToObject(o, "connector_errors", (double)st->cn_bad);
        cJSON_AddNumberToObject(o, "connector_overruns", (double)st->cn_overruns);
        list = cJSON_AddArrayToObject(o, "watches");
        for (size_t i = 0; list && i < st->n_watches; i++) {
                cJSON *w = watch_status(st, &st->watches[i]);
                if (w && !cJSON_AddItemToArray(list, w))
                        cJSON_Delete(w);
        }
        return o;
}

static void process_free(void *userdata)
{
        struct process_state *st = userdata;

        if (!st)
                return;
        process_stop(st);
        free(st->watches);
        free(st);
}

const struct collector_ops process_collector_ops = {
        .name = "process",
        .default_enabled = false,
        .new = process_new,
        .start = process_start,
        .stop = process_stop,
        .status = process_status,
        .free = process_free,
};
