/* Unit tests for collectors/proc_parse.c: /proc/PID/stat and status with
 * hostile process names, command-line joining and its cap, the watch
 * setting (every option, every error with its offset, the normalised form
 * parsing back to the same spec), process matching, the crash-loop window
 * (checked against a trivial reference model over random restart times),
 * exit wording and proc connector messages built as the kernel sends them. */
#include <errno.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../collectors/proc_parse.h"

#define SEC 1000000ull

static const char *STAT =
        "4242 (python3) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 25 0 0 20 0 3 0 987654 12345678 2048 "
        "18446744073709551615 1 1 0 0 0 0 0 16781312 2 0 0 0 17 1 0 0 0 0 0\n";

static void test_stat_plain(void **state)
{
        struct proc_stat st;

        (void)state;
        assert_int_equal(proc_stat_parse(STAT, strlen(STAT), &st), 0);
        assert_string_equal(st.comm, "python3");
        assert_int_equal(st.state, 'S');
        assert_int_equal(st.ppid, 1);
        assert_int_equal(st.utime, 150);
        assert_int_equal(st.stime, 25);
        assert_int_equal(st.num_threads, 3);
        assert_int_equal(st.starttime, 987654);
        assert_int_equal(st.rss_pages, 2048);
}

static void test_stat_hostile_comm(void **state)
{
        /* A process may call itself ") R 1 (" : the name ends at the last ')'. */
        const char *s = "7 (a) R 1 (x) y) D 99 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 42 0 10\n";
        struct proc_stat st;

        (void)state;
        assert_int_equal(proc_stat_parse(s, strlen(s), &st), 0);
        assert_string_equal(st.comm, "a) R 1 (x) y");
        assert_int_equal(st.state, 'D');
        assert_int_equal(st.ppid, 99);
        assert_int_equal(st.starttime, 42);
}

static void test_stat_malformed(void **state)
{
        struct proc_stat st;
        const char *bad[] = {
                "",
                "12 python3 S 1",
                "12 (python3 S 1 2 3",
                "12 (sixteen-bytes-xy) S 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n", /* comm over 15 */
                "12 (ok) S 1 2 3\n",                                                   /* too few fields */
                "12 (ok) S 1 2 3 4 5 6 7 8 9 10 x 12 13 14 15 16 17 18 19 20 21\n",    /* not a number */
                "12 (ok) S 1 2 3 4 5 6 7 8 9 10 99999999999999999999999 12 13 14 15 16 17 18 19 20 21\n",
        };

        (void)state;
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                assert_int_equal(proc_stat_parse(bad[i], strlen(bad[i]), &st), -EBADMSG);
        /* a length shorter than the text: fields past it are missing */
        assert_int_equal(proc_stat_parse(STAT, 40, &st), -EBADMSG);
}

static void test_status(void **state)
{
        const char *s = "Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t1000\t1000\t1000\n"
                        "VmPeak:\t  30000 kB\nVmRSS:\t   9876 kB\nThreads:\t7\n";
        struct proc_status st;

        (void)state;
        assert_int_equal(proc_status_parse(s, strlen(s), &st), 0);
        assert_int_equal(st.rss_kib, 9876);
        assert_int_equal(st.threads, 7);
        assert_int_equal(st.uid, 1000);
        /* a zombie has no VmRSS */
        assert_int_equal(proc_status_parse("Threads:\t1\n", 11, &st), 0);
        assert_int_equal(st.rss_kib, 0);
        assert_int_equal(st.uid, -1);
        assert_int_equal(proc_status_parse("VmRSS:\tlots kB\n", 15, &st), -EBADMSG);
}

static void test_cmdline(void **state)
{
        char out[16];

        (void)state;
        assert_int_equal(proc_cmdline_join("sleep\0"
                                           "10\0",
                                           9, out, sizeof out),
                         8);
        assert_string_equal(out, "sleep 10");
        assert_int_equal(proc_cmdline_join("a\tb\0", 4, out, sizeof out), 3);
        assert_string_equal(out, "a?b");
        assert_int_equal(proc_cmdline_join("", 0, out, sizeof out), 0);
        assert_string_equal(out, "");
        assert_int_equal(proc_cmdline_join("0123456789abcdefghij", 20, out, sizeof out), -E2BIG);
        assert_string_equal(out, "0123456789ab...");
}

static void test_watch_parse_full(void **state)
{
        struct proc_watch_spec w, again;
        char err[200], text[1024];
        unsigned off = 99;

        (void)state;
        assert_int_equal(proc_watch_parse("  db pidfile=/run/pg.pid name=postgres critical cpu=90 rss=2G fds=1000 "
                                          "threads=50 stuck=30s crash_loop=3/5m",
                                          &w, err, sizeof err, &off),
                         0);
        assert_string_equal(w.name, "db");
        assert_int_equal(w.kind, PROC_WATCH_PIDFILE);
        assert_string_equal(w.pidfile, "/run/pg.pid");
        assert_string_equal(w.name_glob, "postgres");
        assert_true(w.critical);
        assert_true(w.cpu_max == 90);
        assert_int_equal(w.rss_max, 2ull << 30);
        assert_int_equal(w.fds_max, 1000);
        assert_int_equal(w.threads_max, 50);
        assert_int_equal(w.stuck_usec, 30 * SEC);
        assert_int_equal(w.loop_restarts, 3);
        assert_int_equal(w.loop_window_usec, 300 * SEC);
        proc_watch_format(&w, text, sizeof text);
        assert_int_equal(proc_watch_parse(text, &again, err, sizeof err, &off), 0);
        assert_memory_equal(&w, &again, sizeof w);

        assert_int_equal(proc_watch_parse("app cmdline='*java -jar app.jar*'", &w, err, sizeof err, &off), 0);
        assert_int_equal(w.kind, PROC_WATCH_PATTERN);
        assert_string_equal(w.cmdline_glob, "*java -jar app.jar*");
        proc_watch_format(&w, text, sizeof text);
        assert_int_equal(proc_watch_parse(text, &again, err, sizeof err, &off), 0);
        assert_string_equal(again.cmdline_glob, "*java -jar app.jar*");

        assert_int_equal(proc_watch_parse("web unit=nginx.service", &w, err, sizeof err, &off), 0);
        assert_int_equal(w.kind, PROC_WATCH_UNIT);
}

static void expect_error(const char *text, unsigned offset, const char *msg)
{
        struct proc_watch_spec w;
        char err[300];
        unsigned off = 9999;

        assert_int_equal(proc_watch_parse(text, &w, err, sizeof err, &off), -EINVAL);
        assert_int_equal(off, offset);
        if (!strstr(err, msg))
                fail_msg("'%s': '%s' not in '%s'", text, msg, err);
}

static void test_watch_parse_errors(void **state)
{
        (void)state;
        expect_error("", 0, "empty watch");
        expect_error("bad/name pidfile=/x", 0, "a watch starts with its name");
        expect_error("x critical", 0, "selects nothing");
        expect_error("x pidfile=rel.pid", 2, "absolute path");
        expect_error("x name=a name=b", 9, "given twice");
        expect_error("x name=a colour=red", 9, "unknown option 'colour='");
        expect_error("x name=a bogus", 9, "unknown word 'bogus'");
        expect_error("x name=a cpu=-1", 9, "cpu= needs a percentage");
        expect_error("x name=a cpu=90x", 9, "cpu= needs a percentage");
        expect_error("x name=a rss=12T", 9, "rss= needs a size");
        expect_error("x name=a fds=0", 9, "fds= needs a whole number");
        expect_error("x name=a threads=1.5", 9, "threads= needs a whole number");
        expect_error("x name=a stuck=500ms", 9, "stuck= needs a duration of at least 1s");
        expect_error("x name=a crash_loop=5", 9, "RESTARTS/WINDOW");
        expect_error("x name=a crash_loop=1/10m", 9, "2..32 restarts");
        expect_error("x name=a crash_loop=99/10m", 9, "2..32 restarts");
        expect_error("x name='a", 2, "unclosed quote");
        expect_error("x name=", 2, "needs a value");
        expect_error("x unit=a.service name=b", 0, "cannot be combined");
}

static void test_matches(void **state)
{
        struct proc_watch_spec w;
        char err[200];
        unsigned off;

        (void)state;
        assert_int_equal(proc_watch_parse("a name=postgres", &w, err, sizeof err, &off), 0);
        assert_true(proc_watch_matches(&w, "postgres", "/usr/lib/postgresql/15/bin/postgres -D /var/lib"));
        assert_false(proc_watch_matches(&w, "psql", "psql -U postgres"));
        /* longer than comm's 15 bytes: argv[0]'s basename */
        assert_int_equal(proc_watch_parse("a name=very-long-daemon-name", &w, err, sizeof err, &off), 0);
        assert_true(proc_watch_matches(&w, "very-long-daemo", "/usr/sbin/very-long-daemon-name --foreground"));
        assert_false(proc_watch_matches(&w, "very-long-daemo", "/usr/sbin/very-long-daemon-namex"));
        /* both globs must hold */
        assert_int_equal(proc_watch_parse("a name=python3* cmdline='python3 worker.py*'", &w, err, sizeof err, &off),
                         0);
        assert_true(proc_watch_matches(&w, "python3", "python3 worker.py --x"));
        assert_false(proc_watch_matches(&w, "python3", "python3 supervisor.py worker.py"));
        assert_false(proc_watch_matches(&w, "perl", "perl worker.py"));
}

/* ---- the crash-loop window against a reference model ---- */

static void test_restart_window(void **state)
{
        struct proc_restart_log log = {0};
        struct proc_restart r = {.wait_status = 9};
        char buf[4096];

        (void)state;
        for (int i = 0; i < 5; i++) {
                r.mono_usec = (uint64_t)(100 + i * 60) * SEC; /* one a minute */
                r.old_pid = 10 + i;
                r.new_pid = 11 + i;
                r.wall_usec = 1764626400000000 + (int64_t)i * 60000000;
                proc_restart_log_add(&log, &r);
        }
        /* at the last restart: 5 within 10 minutes, 3 within 150 s */
        assert_int_equal(proc_restart_log_count(&log, 340 * SEC, 600 * SEC), 5);
        assert_int_equal(proc_restart_log_count(&log, 340 * SEC, 150 * SEC), 3);
        /* a window later, none */
        assert_int_equal(proc_restart_log_count(&log, 940 * SEC, 600 * SEC), 0);
        proc_restart_log_format(&log, 340 * SEC, 150 * SEC, 10, buf, sizeof buf);
        assert_string_equal(buf, "22:04:00.000Z pid 14 -> 15 after killed by signal 9 (SIGKILL); "
                                 "22:03:00.000Z pid 13 -> 14 after killed by signal 9 (SIGKILL); "
                                 "22:02:00.000Z pid 12 -> 13 after killed by signal 9 (SIGKILL)");
        proc_restart_log_format(&log, 340 * SEC, 600 * SEC, 1, buf, sizeof buf);
        assert_string_equal(buf, "22:04:00.000Z pid 14 -> 15 after killed by signal 9 (SIGKILL)");
}

static void test_restart_window_random(void **state)
{
        (void)state;
        srand(4);
        for (int run = 0; run < 200; run++) {
                struct proc_restart_log log = {0};
                uint64_t times[100], t = 0, window = (uint64_t)(1 + rand() % 120) * SEC;
                int n = rand() % 100;

                for (int i = 0; i < n; i++) {
                        struct proc_restart r = {.wait_status = -1};
                        t += (uint64_t)(rand() % 20000) * 1000;
                        times[i] = r.mono_usec = t;
                        proc_restart_log_add(&log, &r);
                        /* the model: every restart so far, counted by hand; the
                         * log holds the newest PROC_RESTARTS_MAX, so it counts
                         * at most that many */
                        unsigned want = 0;
                        for (int j = i; j >= 0 && i - j < PROC_RESTARTS_MAX; j--)
                                if (t - times[j] < window)
                                        want++;
                        assert_int_equal(proc_restart_log_count(&log, t, window), want);
                }
                assert_true(log.n <= PROC_RESTARTS_MAX);
        }
}

static void test_exit_describe(void **state)
{
        char buf[96];

        (void)state;
        proc_exit_describe(-1, buf, sizeof buf);
        assert_string_equal(buf, "exit status unknown");
        proc_exit_describe(3 << 8, buf, sizeof buf);
        assert_string_equal(buf, "exited with status 3");
        proc_exit_describe(SIGKILL, buf, sizeof buf);
        assert_string_equal(buf, "killed by signal 9 (SIGKILL)");
        proc_exit_describe(SIGSEGV | 0x80, buf, sizeof buf);
        assert_string_equal(buf, "killed by signal 11 (SIGSEGV), core dumped");
        proc_signal_name(200, buf, sizeof buf);
        assert_string_equal(buf, "SIG?");
}

/* ---- proc connector ---- */

struct cn_record {
        struct proc_cn_event ev[8];
        int n;
};

static void record(const struct proc_cn_event *ev, void *userdata)
{
        struct cn_record *r = userdata;

        if (r->n < 8)
                r->ev[r->n++] = *ev;
}

/* One message as the kernel builds it (cn_netlink_send: type NLMSG_DONE). */
static size_t build(unsigned char *buf, const struct proc_event *pe)
{
        struct nlmsghdr nh = {0};
        struct cn_msg cn = {0};
        size_t len = NLMSG_LENGTH(sizeof cn + sizeof *pe);

        nh.nlmsg_len = (uint32_t)len;
        nh.nlmsg_type = NLMSG_DONE;
        cn.id.idx = CN_IDX_PROC;
        cn.id.val = CN_VAL_PROC;
        cn.len = sizeof *pe;
        memcpy(buf, &nh, sizeof nh);
        memcpy(buf + sizeof nh, &cn, sizeof cn);
        memcpy(buf + sizeof nh + sizeof cn, pe, sizeof *pe);
        return NLMSG_ALIGN(len);
}

static void test_cn_parse(void **state)
{
        unsigned char buf[1024] __attribute__((aligned(8)));
        struct proc_event pe;
        struct cn_record rec = {0};
        size_t len = 0;

        (void)state;
        memset(&pe, 0, sizeof pe);
        pe.what = PROC_EVENT_NONE;
        pe.event_data.ack.err = 0;
        len += build(buf + len, &pe);
        memset(&pe, 0, sizeof pe);
        pe.what = PROC_EVENT_EXIT;
        pe.event_data.exit.process_pid = 500;
        pe.event_data.exit.process_tgid = 500;
        pe.event_data.exit.exit_code = SIGKILL;
        pe.event_data.exit.exit_signal = SIGCHLD; /* to the parent: not the killing signal */
        len += build(buf + len, &pe);
        memset(&pe, 0, sizeof pe);
        pe.what = PROC_EVENT_EXEC;
        pe.event_data.exec.process_pid = 501;
        pe.event_data.exec.process_tgid = 501;
        len += build(buf + len, &pe);
        memset(&pe, 0, sizeof pe);
        pe.what = PROC_EVENT_FORK;
        len += build(buf + len, &pe);

        assert_int_equal(proc_cn_parse(buf, len, record, &rec), 4);
        assert_int_equal(rec.ev[0].kind, PROC_CN_ACK);
        assert_int_equal(rec.ev[0].err, 0);
        assert_int_equal(rec.ev[1].kind, PROC_CN_EXIT);
        assert_int_equal(rec.ev[1].pid, 500);
        assert_int_equal(rec.ev[1].wait_status, SIGKILL);
        assert_int_equal(rec.ev[2].kind, PROC_CN_EXEC);
        assert_int_equal(rec.ev[2].pid, 501);
        assert_int_equal(rec.ev[3].kind, PROC_CN_OTHER);

        /* cut anywhere inside a message: an error, and nothing read past the end */
        for (size_t cut = 1; cut < len; cut++) {
                unsigned char *copy = malloc(cut);
                struct cn_record r2 = {0};
                int n;

                memcpy(copy, buf, cut);
                n = proc_cn_parse(copy, cut, record, &r2);
                assert_true(n == -EBADMSG || (n >= 0 && n <= 4));
                free(copy);
        }
        /* a length field larger than the datagram */
        {
                struct nlmsghdr nh;
                memcpy(&nh, buf, sizeof nh);
                nh.nlmsg_len = 4000;
                memcpy(buf, &nh, sizeof nh);
                assert_int_equal(proc_cn_parse(buf, len, record, &rec), -EBADMSG);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_stat_plain),
                cmocka_unit_test(test_stat_hostile_comm),
                cmocka_unit_test(test_stat_malformed),
                cmocka_unit_test(test_status),
                cmocka_unit_test(test_cmdline),
                cmocka_unit_test(test_watch_parse_full),
                cmocka_unit_test(test_watch_parse_errors),
                cmocka_unit_test(test_matches),
                cmocka_unit_test(test_restart_window),
                cmocka_unit_test(test_restart_window_random),
                cmocka_unit_test(test_exit_describe),
                cmocka_unit_test(test_cn_parse),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
