/* Unit tests for the downtime ledger's arithmetic (agent/ledger.c): outages
 * split over calendar quarters (UTC), whole quarters even when since cuts
 * one, which outages count as system downtime (the host went down without a
 * clean stop), and warranty days as whole days of the running total, per
 * quarter and in total. Outages are written straight into a real store; the
 * loop never runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../agent/ledger.h"
#include "../../agent/loop.h"
#include "../../agent/store.h"
#include "../../lib/xalloc.h"
#include "scratch.h"

#define H (3600LL * 1000000)
#define OUTAGES_MAX 16

struct fixture {
        char dir[64];
        struct loop *loop;
        struct store *st;
        struct ledger *l;
        struct store_outage o[OUTAGES_MAX];
        size_t n;
};

static int put_outages(struct store *st, void *userdata)
{
        struct fixture *f = userdata;
        int r;

        for (size_t i = 0; i < f->n; i++)
                if ((r = store_put_outage(st, &f->o[i])) < 0)
                        return r;
        return 0;
}

static void outages_done(struct store *st, bool committed, void *userdata)
{
        struct fixture *f = userdata;

        (void)st;
        if (committed)
                f->n = 0;
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof *f);
        struct store_writer w = {.write = put_outages, .done = outages_done};
        char path[128];

        assert_non_null(f);
        w.userdata = f;
        scratch_make(f->dir, sizeof f->dir, "ledger");
        snprintf(path, sizeof path, "%s/agent.db", f->dir);
        assert_int_equal(loop_new(&f->loop), 0);
        assert_int_equal(store_open(f->loop, path, STORE_SYNC_NORMAL, &f->st, NULL), 0);
        assert_int_equal(store_add_writer(f->st, &w), 0);
        assert_int_equal(ledger_new(f->loop, f->st, 0, &f->l), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        ledger_free(f->l);
        store_free(f->st);
        loop_free(f->loop);
        scratch_remove(f->dir);
        free(f);
        return 0;
}

/* UTC wall µs of a date and time */
static int64_t utc(int y, int mon, int d, int h, int m)
{
        struct tm tm = {.tm_year = y - 1900, .tm_mon = mon - 1, .tm_mday = d, .tm_hour = h, .tm_min = m};

        return (int64_t)timegm(&tm) * 1000000;
}

/* kind: 'h' the host went down (new boot id, unclean), 'a' the agent alone
 * crashed (same boot id), 'c' a clean stop with a host reboot */
static void outage(struct fixture *f, int64_t start, int64_t end, char kind)
{
        assert_true(f->n < OUTAGES_MAX);
        f->o[f->n++] = (struct store_outage){
                .start = start,
                .end = end,
                .clean = kind == 'c',
                .boot_before = "boot-1",
                .boot_after = kind == 'a' ? "boot-1" : "boot-2",
        };
}

static cJSON *report(struct fixture *f, int64_t since, int64_t now)
{
        int err = 1;
        cJSON *j;

        assert_int_equal(store_commit_now(f->st), 0);
        j = ledger_to_json(f->l, since, now, &err);
        assert_non_null(j);
        assert_int_equal(err, 0);
        return j;
}

static double num(const cJSON *o, const char *k)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

        assert_true(cJSON_IsNumber(v));
        return v->valuedouble;
}

static const cJSON *quarter(const cJSON *j, const char *name)
{
        const cJSON *q;

        cJSON_ArrayForEach(q, cJSON_GetObjectItemCaseSensitive(j, "quarters"))
        {
                if (strcmp(cJSON_GetObjectItemCaseSensitive(q, "quarter")->valuestring, name) == 0)
                        return q;
        }
        fail_msg("no quarter %s", name);
        return NULL;
}

/* The quarters' warranty days add up to the total, and each is whole. */
static void check_sums(const cJSON *j)
{
        const cJSON *q;
        double days = 0, down = 0;

        cJSON_ArrayForEach(q, cJSON_GetObjectItemCaseSensitive(j, "quarters"))
        {
                days += num(q, "warranty_days");
                down += num(q, "downtime_s");
        }
        assert_true(days == num(j, "warranty_days"));
        assert_true(down == num(j, "downtime_s"));
}

static void test_an_outage_across_a_quarter_boundary_is_split(void **state)
{
        struct fixture *f = *state;

        /* 2025-03-31T20:00Z -> 2025-04-02T00:00Z: 4 h in Q1, 24 h in Q2 */
        outage(f, utc(2025, 3, 31, 20, 0), utc(2025, 4, 2, 0, 0), 'h');
        cJSON *j = report(f, utc(2025, 3, 1, 0, 0), utc(2025, 5, 1, 0, 0));
        const cJSON *q1 = quarter(j, "2025-Q1"), *q2 = quarter(j, "2025-Q2");

        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "quarters")), 2);
        assert_true(num(q1, "downtime_s") == 4 * 3600);
        assert_true(num(q1, "system_down_s") == 4 * 3600);
        assert_true(num(q2, "downtime_s") == 24 * 3600);
        assert_true(num(q1, "warranty_days") == 0);
        assert_true(num(q2, "warranty_days") == 1); /* 28 h in all: the 24th hour falls in Q2 */
        assert_true(num(q1, "outages") == 1 && num(q2, "outages") == 1);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(q1, "complete")));
        assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(q2, "complete")));
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(q2, "start")->valuestring, "2025-04-01T00:00:00.000Z");
        assert_true(num(j, "warranty_days") == 1);
        assert_true(num(j, "downtime_s") == 28 * 3600);
        check_sums(j);
        cJSON_Delete(j);
}

static void test_since_inside_a_quarter_counts_the_whole_quarter(void **state)
{
        struct fixture *f = *state;

        outage(f, utc(2025, 1, 10, 0, 0), utc(2025, 1, 10, 6, 0), 'h');
        outage(f, utc(2025, 3, 31, 20, 0), utc(2025, 4, 2, 0, 0), 'h');
        /* since falls after the first outage and in the middle of the second */
        cJSON *j = report(f, utc(2025, 3, 31, 22, 0), utc(2025, 5, 1, 0, 0));
        const cJSON *q1 = quarter(j, "2025-Q1");

        assert_true(num(q1, "downtime_s") == 10 * 3600); /* 6 h + 4 h: the whole quarter, not 2 h */
        assert_true(num(q1, "outages") == 2);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "outages")), 2);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "from")->valuestring, "2025-01-01T00:00:00.000Z");
        assert_true(num(j, "warranty_days") == 1); /* 34 h */
        check_sums(j);
        cJSON_Delete(j);
}

static void test_day_thresholds(void **state)
{
        struct fixture *f = *state;

        /* 23 h 59 m: no day */
        outage(f, utc(2025, 7, 1, 0, 0), utc(2025, 7, 1, 23, 59), 'h');
        cJSON *j = report(f, utc(2025, 7, 1, 0, 0), utc(2025, 9, 1, 0, 0));
        assert_true(num(j, "warranty_days") == 0);
        assert_true(num(j, "system_down_s") == 23 * 3600 + 59 * 60);
        cJSON_Delete(j);

        /* one more minute elsewhere in the quarter: 24 h exactly, one day */
        outage(f, utc(2025, 8, 1, 0, 0), utc(2025, 8, 1, 0, 1), 'h');
        j = report(f, utc(2025, 7, 1, 0, 0), utc(2025, 9, 1, 0, 0));
        assert_true(num(j, "warranty_days") == 1);
        assert_true(num(quarter(j, "2025-Q3"), "warranty_days") == 1);
        cJSON_Delete(j);

        /* a single outage of 49 h: two days */
        outage(f, utc(2025, 8, 10, 0, 0), utc(2025, 8, 12, 1, 0), 'h');
        j = report(f, utc(2025, 7, 1, 0, 0), utc(2025, 9, 1, 0, 0));
        assert_true(num(j, "warranty_days") == 3); /* 24 h + 49 h = 73 h */
        assert_true(num(j, "warranty_days_all_time") == 3);
        check_sums(j);
        cJSON_Delete(j);
}

static void test_several_short_outages_add_up_across_quarters(void **state)
{
        struct fixture *f = *state;

        /* 10 h in Q1, 10 h in Q2, 10 h in Q3: each quarter alone is under a
         * day, together 30 h: one day, credited in Q3 where the 24th hour falls */
        outage(f, utc(2025, 2, 1, 0, 0), utc(2025, 2, 1, 10, 0), 'h');
        outage(f, utc(2025, 5, 1, 0, 0), utc(2025, 5, 1, 10, 0), 'h');
        outage(f, utc(2025, 8, 1, 0, 0), utc(2025, 8, 1, 10, 0), 'h');
        cJSON *j = report(f, utc(2025, 1, 1, 0, 0), utc(2025, 9, 1, 0, 0));
        assert_true(num(quarter(j, "2025-Q1"), "warranty_days") == 0);
        assert_true(num(quarter(j, "2025-Q2"), "warranty_days") == 0);
        assert_true(num(quarter(j, "2025-Q3"), "warranty_days") == 1);
        assert_true(num(j, "warranty_days") == 1);
        check_sums(j);
        cJSON_Delete(j);

        /* a later inspection of Q3 alone still credits the day there: the
         * running total includes the quarters before the period */
        j = report(f, utc(2025, 8, 15, 0, 0), utc(2025, 9, 1, 0, 0));
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "quarters")), 1);
        assert_true(num(j, "warranty_days") == 1);
        assert_true(num(j, "system_down_all_time_s") == 30 * 3600);
        cJSON_Delete(j);
}

static void test_agent_crashes_and_clean_stops_are_listed_not_counted(void **state)
{
        struct fixture *f = *state;
        const cJSON *o;
        int counted = 0;

        outage(f, utc(2025, 10, 1, 0, 0), utc(2025, 10, 2, 6, 0), 'a'); /* 30 h, agent alone */
        outage(f, utc(2025, 10, 5, 0, 0), utc(2025, 10, 6, 6, 0), 'c'); /* 30 h, planned reboot */
        outage(f, utc(2025, 10, 9, 0, 0), utc(2025, 10, 9, 1, 0), 'h'); /* 1 h, host down */
        cJSON *j = report(f, utc(2025, 10, 1, 0, 0), utc(2025, 12, 1, 0, 0));
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "outages")), 3);
        cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(j, "outages")) counted +=
                cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "counted"));
        assert_int_equal(counted, 1);
        assert_true(num(j, "downtime_s") == 61 * 3600);
        assert_true(num(j, "unclean_s") == 31 * 3600);
        assert_true(num(j, "clean_s") == 30 * 3600);
        assert_true(num(j, "system_down_s") == 3600);
        assert_true(num(j, "warranty_days") == 0);
        cJSON_Delete(j);
}

static void test_allocation_failures(void **state)
{
        struct fixture *f = *state;
        cJSON_Hooks hooks = {.malloc_fn = xmalloc, .free_fn = free};
        bool ok = false;

        outage(f, utc(2025, 3, 31, 20, 0), utc(2025, 4, 2, 0, 0), 'h');
        outage(f, utc(2025, 5, 1, 0, 0), utc(2025, 5, 1, 10, 0), 'a');
        assert_int_equal(store_commit_now(f->st), 0);
        cJSON_InitHooks(&hooks);
        int err = 0;
        xalloc_fail_at(0);
        cJSON_Delete(ledger_to_json(f->l, utc(2025, 1, 1, 0, 0), utc(2025, 6, 1, 0, 0), &err));
        unsigned long total = xalloc_fail_at(0);
        assert_true(total > 30);
        for (unsigned long n = 1; n <= total; n++) { /* every allocation fails once, in turn */
                xalloc_fail_at(n);
                cJSON *j = ledger_to_json(f->l, utc(2025, 1, 1, 0, 0), utc(2025, 6, 1, 0, 0), &err);
                xalloc_fail_at(0);
                if (j) {
                        ok = true;
                        cJSON_Delete(j);
                } else {
                        assert_int_equal(err, -ENOMEM);
                }
        }
        cJSON_InitHooks(NULL);
        assert_false(ok); /* every allocation is needed */
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_an_outage_across_a_quarter_boundary_is_split, setup, teardown),
                cmocka_unit_test_setup_teardown(test_since_inside_a_quarter_counts_the_whole_quarter, setup, teardown),
                cmocka_unit_test_setup_teardown(test_day_thresholds, setup, teardown),
                cmocka_unit_test_setup_teardown(test_several_short_outages_add_up_across_quarters, setup, teardown),
                cmocka_unit_test_setup_teardown(test_agent_crashes_and_clean_stops_are_listed_not_counted, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_allocation_failures, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
