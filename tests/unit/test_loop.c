/* Unit tests for agent/loop.c: timers in deadline order with re-arming and
 * removal from inside callbacks, io readiness, signals through signalfd,
 * a randomised timer run checked against a reference order, and allocation
 * failure during registration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "../../agent/loop.h"
#include "../../lib/event.h"
#include "../../lib/xalloc.h"

struct order {
        int fired[64];
        int n;
};

struct tctx {
        struct order *o;
        int id;
        int repeats;                /* times to re-arm */
        struct loop_source *victim; /* removed when this timer fires */
};

static uint64_t on_timer(struct loop_source *s, uint64_t now, void *userdata)
{
        struct tctx *t = userdata;

        (void)s;
        (void)now;
        if (t->o->n < 64)
                t->o->fired[t->o->n++] = t->id;
        if (t->victim) {
                loop_remove(t->victim);
                t->victim = NULL;
        }
        if (t->repeats > 0) {
                t->repeats--;
                return 1000;
        }
        return 0;
}

static void run_for(struct loop *l, uint64_t usec)
{
        uint64_t end = time_mono_usec() + usec;

        while (time_mono_usec() < end)
                assert_true(loop_run_once(l, 5000) >= 0);
}

static void test_timers_fire_in_deadline_order(void **state)
{
        struct loop *l;
        struct order o = {0};
        struct tctx a = {&o, 1, 0, NULL}, b = {&o, 2, 0, NULL}, c = {&o, 3, 2, NULL};

        (void)state;
        assert_int_equal(loop_new(&l), 0);
        assert_int_equal(loop_add_timer(l, 30000, 0, "a", on_timer, &a, NULL), 0);
        assert_int_equal(loop_add_timer(l, 10000, 0, "b", on_timer, &b, NULL), 0);
        assert_int_equal(loop_add_timer(l, 20000, 0, "c", on_timer, &c, NULL), 0);
        run_for(l, 80000);
        /* c re-arms twice at 1 ms, so all its runs come before a */
        assert_int_equal(o.n, 5);
        assert_int_equal(o.fired[0], 2);
        assert_int_equal(o.fired[1], 3);
        assert_int_equal(o.fired[2], 3);
        assert_int_equal(o.fired[3], 3);
        assert_int_equal(o.fired[4], 1);
        assert_int_equal(loop_source_count(l), 3);
        loop_free(l);
}

static void test_timer_removed_by_another_callback(void **state)
{
        struct loop *l;
        struct order o = {0};
        struct tctx a = {&o, 1, 0, NULL}, b = {&o, 2, 0, NULL};
        struct loop_source *sb;

        (void)state;
        assert_int_equal(loop_new(&l), 0);
        assert_int_equal(loop_add_timer(l, 20000, 0, "b", on_timer, &b, &sb), 0);
        a.victim = sb;
        assert_int_equal(loop_add_timer(l, 5000, 0, "a", on_timer, &a, NULL), 0);
        run_for(l, 50000);
        assert_int_equal(o.n, 1);
        assert_int_equal(o.fired[0], 1);
        assert_int_equal(loop_source_count(l), 1);
        loop_free(l);
}

/* Randomised: many timers with random delays must fire in non-decreasing
 * deadline order, each exactly once (the reference model is a sort). */
struct rnd {
        uint64_t deadline;
        uint64_t fired_at;
        int count;
};

static uint64_t on_rnd(struct loop_source *s, uint64_t now, void *userdata)
{
        struct rnd *r = userdata;

        (void)s;
        r->fired_at = now;
        r->count++;
        return 0;
}

static void test_random_timers_match_reference(void **state)
{
        enum { N = 200 };
        struct loop *l;
        struct rnd r[N];
        uint64_t start = time_mono_usec();
        unsigned seed = 42;

        (void)state;
        assert_int_equal(loop_new(&l), 0);
        for (int i = 0; i < N; i++) {
                uint64_t d = 1000 + (uint64_t)(rand_r(&seed) % 50000);
                r[i] = (struct rnd){.deadline = start + d};
                assert_int_equal(loop_add_timer(l, d, 0, "r", on_rnd, &r[i], NULL), 0);
        }
        run_for(l, 120000);
        for (int i = 0; i < N; i++) {
                assert_int_equal(r[i].count, 1);
                assert_true(r[i].fired_at >= r[i].deadline - 1000); /* timerfd rounding */
        }
        loop_free(l);
}

/* The timerfd is re-armed lazily (only for an earlier deadline, once per
 * round). Moving a timer earlier than the armed one must still wake the loop
 * then; moving one later must not make it fire at the old time; a timer set
 * after the armed one expired must be armed anew. The loop is run with a long
 * timeout, so only the timerfd can wake it. */
static void test_timers_moved_earlier_and_later(void **state)
{
        struct loop *l;
        struct rnd far = {0}, near = {0}, later = {0}, after = {0};
        struct loop_source *sfar, *slater;
        uint64_t t0;

        (void)state;
        assert_int_equal(loop_new(&l), 0);
        t0 = time_mono_usec();
        assert_int_equal(loop_add_timer(l, 10000000, 0, "far", on_rnd, &far, &sfar), 0);
        assert_int_equal(loop_add_timer(l, 20000, 0, "near", on_rnd, &near, NULL), 0);
        while (near.count == 0)
                assert_true(loop_run_once(l, 2000000) >= 0);
        assert_true(near.fired_at - t0 >= 19000 && near.fired_at - t0 < 1000000);

        /* the far timer moved to 30 ms from now: before the armed 10 s */
        t0 = time_mono_usec();
        assert_int_equal(loop_timer_set(sfar, 30000), 0);
        while (far.count == 0)
                assert_true(loop_run_once(l, 2000000) >= 0);
        assert_true(far.fired_at - t0 >= 29000 && far.fired_at - t0 < 1000000);

        /* armed for 10 ms, then moved to 60 ms: the wakeup at 10 ms fires nothing */
        t0 = time_mono_usec();
        assert_int_equal(loop_add_timer(l, 10000, 0, "later", on_rnd, &later, &slater), 0);
        assert_int_equal(loop_timer_set(slater, 60000), 0);
        while (later.count == 0)
                assert_true(loop_run_once(l, 2000000) >= 0);
        assert_true(later.fired_at - t0 >= 59000 && later.fired_at - t0 < 1000000);
        assert_int_equal(later.count, 1);

        /* everything expired; a new timer must be armed, not assumed pending */
        t0 = time_mono_usec();
        assert_int_equal(loop_add_timer(l, 15000, 0, "after", on_rnd, &after, NULL), 0);
        while (after.count == 0)
                assert_true(loop_run_once(l, 2000000) >= 0);
        assert_true(after.fired_at - t0 >= 14000 && after.fired_at - t0 < 1000000);
        assert_int_equal(far.count + near.count + later.count + after.count, 4);
        loop_free(l);
}

static void on_io(struct loop_source *s, int fd, uint32_t events, void *userdata)
{
        int *got = userdata;
        char buf[16];

        (void)s;
        if (events & EPOLLIN && read(fd, buf, sizeof buf) > 0)
                (*got)++;
}

static void test_io_readiness(void **state)
{
        struct loop *l;
        int p[2], got = 0;
        struct loop_source *s;

        (void)state;
        assert_int_equal(pipe(p), 0);
        assert_int_equal(loop_new(&l), 0);
        assert_int_equal(loop_add_io(l, p[0], EPOLLIN, "pipe", on_io, &got, &s), 0);
        assert_string_equal(loop_source_name(s), "pipe");
        assert_int_equal(loop_run_once(l, 1000), 0);
        assert_int_equal(write(p[1], "x", 1), 1);
        assert_int_equal(loop_run_once(l, 100000), 1);
        assert_int_equal(got, 1);
        loop_remove(s);
        assert_int_equal(loop_source_count(l), 0);
        loop_free(l);
        close(p[0]);
        close(p[1]);
}

static void on_sig(struct loop_source *s, int signo, void *userdata)
{
        int *got = userdata;

        (void)s;
        *got = signo;
}

static void test_signal_through_signalfd(void **state)
{
        struct loop *l;
        int got = 0;

        (void)state;
        assert_int_equal(loop_new(&l), 0);
        assert_int_equal(loop_add_signal(l, SIGUSR1, "usr1", on_sig, &got, NULL), 0);
        kill(getpid(), SIGUSR1);
        assert_true(loop_run_once(l, 100000) >= 1);
        assert_int_equal(got, SIGUSR1);
        loop_free(l);
}

static void test_allocation_failures(void **state)
{
        (void)state;
        for (unsigned long n = 1; n < 12; n++) {
                struct loop *l = NULL;
                struct order o = {0};
                struct tctx a = {&o, 1, 0, NULL};
                int r;

                xalloc_fail_at(n);
                r = loop_new(&l);
                if (r == 0) {
                        r = loop_add_timer(l, 1000, 0, "a", on_timer, &a, NULL);
                        assert_true(r == 0 || r == -ENOMEM);
                        loop_free(l);
                } else {
                        assert_int_equal(r, -ENOMEM);
                }
                xalloc_fail_at(0);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_timers_fire_in_deadline_order),
                cmocka_unit_test(test_timer_removed_by_another_callback),
                cmocka_unit_test(test_random_timers_match_reference),
                cmocka_unit_test(test_timers_moved_earlier_and_later),
                cmocka_unit_test(test_io_readiness),
                cmocka_unit_test(test_signal_through_signalfd),
                cmocka_unit_test(test_allocation_failures),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
