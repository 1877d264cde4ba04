/* Unit tests for collectors/sensor_sanity.c: every plausibility rule with
 * exact inputs, the jump rule's handling of the first poll, long gaps,
 * confirmation of a real step, and recovery. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../collectors/sensor_sanity.h"

#define SEC 1000000ull

static struct sensor_limits limits;

static int setup(void **state)
{
        (void)state;
        sensor_limits_default(&limits);
        return 0;
}

/* Judges reading on a fresh track; returns the fault and leaves the reason. */
static enum sensor_fault check_fresh(double reading, char *reason, size_t size)
{
        struct sensor_track t;

        sensor_track_init(&t);
        return sensor_check(&t, &limits, reading, 100 * SEC, reason, size);
}

static void test_defaults(void **state)
{
        (void)state;
        assert_true(limits.min_c == -100.0);
        assert_true(limits.max_c == 250.0);
        assert_true(limits.max_jump_c_per_s == 20.0);
}

static void test_names(void **state)
{
        (void)state;
        assert_string_equal(sensor_state_to_string(SENSOR_STATE_SANE), "sane");
        assert_string_equal(sensor_state_to_string(SENSOR_STATE_FAULTY), "faulty");
        assert_string_equal(sensor_state_to_string(SENSOR_STATE_UNKNOWN), "unknown");
        assert_string_equal(sensor_state_to_string(SENSOR_STATE_MAX), "invalid");
        assert_string_equal(sensor_fault_to_string(SENSOR_FAULT_DEAD_VALUE), "dead-value");
        assert_string_equal(sensor_fault_to_string(SENSOR_FAULT_JUMP), "jump");
        assert_string_equal(sensor_fault_to_string(SENSOR_FAULT_MAX), "invalid");
        for (int f = 0; f < SENSOR_FAULT_MAX; f++)
                assert_non_null(sensor_fault_to_string((enum sensor_fault)f));
}

static void test_not_finite(void **state)
{
        char reason[SENSOR_REASON_MAX];

        (void)state;
        assert_int_equal(check_fresh(NAN, reason, sizeof reason), SENSOR_FAULT_NOT_FINITE);
        assert_string_equal(reason, "reads NaN, not a temperature");
        assert_int_equal(check_fresh(INFINITY, reason, sizeof reason), SENSOR_FAULT_NOT_FINITE);
        assert_string_equal(reason, "reads +infinity, not a temperature");
        assert_int_equal(check_fresh(-INFINITY, reason, sizeof reason), SENSOR_FAULT_NOT_FINITE);
}

static void test_range(void **state)
{
        char reason[SENSOR_REASON_MAX];

        (void)state;
        assert_int_equal(check_fresh(-101.0, reason, sizeof reason), SENSOR_FAULT_TOO_LOW);
        assert_string_equal(reason, "reads -101 °C, below the plausible -100 °C");
        assert_int_equal(check_fresh(251.0, reason, sizeof reason), SENSOR_FAULT_TOO_HIGH);
        assert_string_equal(reason, "reads 251 °C, above the plausible 250 °C");
        /* The bounds themselves are plausible. */
        assert_int_equal(check_fresh(-100.0, reason, sizeof reason), SENSOR_FAULT_NONE);
        assert_string_equal(reason, "");
        assert_int_equal(check_fresh(250.0, reason, sizeof reason), SENSOR_FAULT_NONE);
        assert_int_equal(check_fresh(-40.0, reason, sizeof reason), SENSOR_FAULT_NONE);
        assert_int_equal(check_fresh(0.0, reason, sizeof reason), SENSOR_FAULT_NONE);
}

static void test_dead_values(void **state)
{
        char reason[SENSOR_REASON_MAX];

        (void)state;
        assert_int_equal(check_fresh(127.0, reason, sizeof reason), SENSOR_FAULT_DEAD_VALUE);
        assert_string_equal(reason, "reads 127 °C, a value dead sensors report");
        assert_int_equal(check_fresh(255.0, reason, sizeof reason), SENSOR_FAULT_DEAD_VALUE);
        assert_string_equal(reason, "reads 255 °C, a value dead sensors report");
        assert_int_equal(check_fresh(511.0, reason, sizeof reason), SENSOR_FAULT_DEAD_VALUE);
        assert_int_equal(check_fresh(-128.0, reason, sizeof reason), SENSOR_FAULT_DEAD_VALUE);
        assert_string_equal(reason, "reads -128 °C, a value dead sensors report");
        /* Near but not at a dead value is a real (if hot) reading. */
        assert_int_equal(check_fresh(127.001, reason, sizeof reason), SENSOR_FAULT_NONE);
        assert_int_equal(check_fresh(126.999, reason, sizeof reason), SENSOR_FAULT_NONE);
        assert_int_equal(check_fresh(127.0001, reason, sizeof reason), SENSOR_FAULT_DEAD_VALUE);
}

static void test_first_reading(void **state)
{
        struct sensor_track t;

        (void)state;
        sensor_track_init(&t);
        assert_int_equal(t.state, SENSOR_STATE_UNKNOWN);
        /* No history: any plausible first value is sane, however hot. */
        assert_true(sensor_track_reading(&t, &limits, 180.0, 5 * SEC));
        assert_int_equal(t.state, SENSOR_STATE_SANE);
        assert_int_equal(t.fault, SENSOR_FAULT_NONE);
        assert_string_equal(t.reason, "");
        assert_true(t.has_sane);
        assert_true(t.sane_value == 180.0);
        assert_int_equal(t.sane_usec, 5 * SEC);
        /* The same state again is no change. */
        assert_false(sensor_track_reading(&t, &limits, 181.0, 15 * SEC));

        /* A first reading that is dead is a change from unknown to faulty. */
        sensor_track_init(&t);
        assert_true(sensor_track_reading(&t, &limits, 127.0, 5 * SEC));
        assert_int_equal(t.state, SENSOR_STATE_FAULTY);
        assert_false(t.has_sane);
}

static void test_jump_fast_vs_slow(void **state)
{
        struct sensor_track t;
        char reason[SENSOR_REASON_MAX];

        (void)state;
        sensor_track_init(&t);
        sensor_track_reading(&t, &limits, 40.0, 100 * SEC);
        /* 40 °C in 1 s is 40 °C/s: no chip does that. */
        assert_int_equal(sensor_check(&t, &limits, 80.0, 101 * SEC, reason, sizeof reason), SENSOR_FAULT_JUMP);
        assert_string_equal(reason, "jumped from 40 to 80 °C in 1.0 s (40.0 °C/s, more than the plausible 20 °C/s)");
        /* Downwards counts the same. */
        assert_int_equal(sensor_check(&t, &limits, 0.0, 101 * SEC, reason, sizeof reason), SENSOR_FAULT_JUMP);
        /* The same 40 °C over 60 s is 0.67 °C/s. */
        assert_int_equal(sensor_check(&t, &limits, 80.0, 160 * SEC, reason, sizeof reason), SENSOR_FAULT_NONE);
        /* Exactly the limit passes. */
        assert_int_equal(sensor_check(&t, &limits, 60.0, 101 * SEC, reason, sizeof reason), SENSOR_FAULT_NONE);
        assert_int_equal(sensor_check(&t, &limits, 60.5, 101 * SEC, reason, sizeof reason), SENSOR_FAULT_JUMP);
}

static void test_jump_quick_polls(void **state)
{
        struct sensor_track t;
        char reason[SENSOR_REASON_MAX];

        (void)state;
        sensor_track_init(&t);
        sensor_track_reading(&t, &limits, 40.0, 100 * SEC);
        /* 5 °C in 10 ms would be 500 °C/s, but elapsed time counts as at
         * least 1 s: quantisation between quick polls is no jump. */
        assert_int_equal(sensor_check(&t, &limits, 45.0, 100 * SEC + 10000, reason, sizeof reason), SENSOR_FAULT_NONE);
        /* Same time, or a clock that went back, is treated the same way. */
        assert_int_equal(sensor_check(&t, &limits, 45.0, 100 * SEC, reason, sizeof reason), SENSOR_FAULT_NONE);
        assert_int_equal(sensor_check(&t, &limits, 45.0, 99 * SEC, reason, sizeof reason), SENSOR_FAULT_NONE);
        assert_int_equal(sensor_check(&t, &limits, 61.0, 100 * SEC + 10000, reason, sizeof reason), SENSOR_FAULT_JUMP);
}

static void test_jump_after_long_gap(void **state)
{
        struct sensor_track t;

        (void)state;
        sensor_track_init(&t);
        sensor_track_reading(&t, &limits, 30.0, 100 * SEC);
        /* Faulty for an hour: the baseline stays the last sane reading. */
        assert_true(sensor_track_reading(&t, &limits, 127.0, 110 * SEC));
        assert_false(sensor_track_reading(&t, &limits, 127.0, 3700 * SEC));
        assert_true(t.sane_value == 30.0);
        /* Any plausible value after such a gap is accepted. */
        assert_true(sensor_track_reading(&t, &limits, 95.0, 3710 * SEC));
        assert_int_equal(t.state, SENSOR_STATE_SANE);
        assert_true(t.sane_value == 95.0);
}

static void test_jump_glitch_then_back(void **state)
{
        struct sensor_track t;

        (void)state;
        sensor_track_init(&t);
        sensor_track_reading(&t, &limits, 45.0, 100 * SEC);
        assert_true(sensor_track_reading(&t, &limits, 180.0, 101 * SEC));
        assert_int_equal(t.state, SENSOR_STATE_FAULTY);
        assert_int_equal(t.fault, SENSOR_FAULT_JUMP);
        assert_true(t.sane_value == 45.0);
        /* Back to normal: recovery, judged against the last sane value. */
        assert_true(sensor_track_reading(&t, &limits, 46.0, 102 * SEC));
        assert_int_equal(t.state, SENSOR_STATE_SANE);
        assert_int_equal(t.fault, SENSOR_FAULT_NONE);
        assert_string_equal(t.reason, "");
        assert_false(t.has_jump);
}

static void test_jump_confirmed(void **state)
{
        struct sensor_track t;

        (void)state;
        sensor_track_init(&t);
        sensor_track_reading(&t, &limits, 45.0, 100 * SEC);
        assert_true(sensor_track_reading(&t, &limits, 110.0, 101 * SEC));
        assert_int_equal(t.fault, SENSOR_FAULT_JUMP);
        /* Still 65 °C away from 45 after 2 s (32.5 °C/s), but the second
         * reading at the new level confirms it. */
        assert_true(sensor_track_reading(&t, &limits, 111.0, 102 * SEC));
        assert_int_equal(t.state, SENSOR_STATE_SANE);
        assert_true(t.sane_value == 111.0);

        /* Two jumps that disagree with each other confirm nothing. */
        sensor_track_init(&t);
        sensor_track_reading(&t, &limits, 45.0, 100 * SEC);
        assert_true(sensor_track_reading(&t, &limits, 180.0, 101 * SEC));
        assert_false(sensor_track_reading(&t, &limits, -20.0, 102 * SEC));
        assert_int_equal(t.fault, SENSOR_FAULT_JUMP);
        /* A dead value in between breaks the chain. */
        sensor_track_init(&t);
        sensor_track_reading(&t, &limits, 45.0, 100 * SEC);
        sensor_track_reading(&t, &limits, 110.0, 101 * SEC);
        sensor_track_reading(&t, &limits, 127.0, 102 * SEC);
        assert_false(t.has_jump);
        assert_false(sensor_track_reading(&t, &limits, 110.0, 103 * SEC));
        assert_int_equal(t.fault, SENSOR_FAULT_JUMP);
}

static void test_recovery_and_reasons(void **state)
{
        struct sensor_track t;

        (void)state;
        sensor_track_init(&t);
        assert_true(sensor_track_reading(&t, &limits, 50.0, 10 * SEC));
        assert_true(sensor_track_reading(&t, &limits, 255.0, 20 * SEC));
        assert_int_equal(t.fault, SENSOR_FAULT_DEAD_VALUE);
        assert_string_equal(t.reason, "reads 255 °C, a value dead sensors report");
        /* Faulty for another reason: no state change, new reason. */
        assert_false(sensor_track_reading(&t, &limits, NAN, 30 * SEC));
        assert_int_equal(t.fault, SENSOR_FAULT_NOT_FINITE);
        assert_false(sensor_track_fail(&t, SENSOR_FAULT_READ_ERROR, "cannot read temp1_input: Kernel interface error"));
        assert_int_equal(t.fault, SENSOR_FAULT_READ_ERROR);
        assert_string_equal(t.reason, "cannot read temp1_input: Kernel interface error");
        assert_true(t.sane_value == 50.0);
        assert_true(sensor_track_reading(&t, &limits, 51.0, 40 * SEC));
        assert_int_equal(t.state, SENSOR_STATE_SANE);
        assert_string_equal(t.reason, "");

        /* A failure on a sane track is a change; the reason is truncated,
         * not overflowed. */
        char long_reason[400];
        memset(long_reason, 'x', sizeof long_reason - 1);
        long_reason[sizeof long_reason - 1] = '\0';
        assert_true(sensor_track_fail(&t, SENSOR_FAULT_HARDWARE, long_reason));
        assert_int_equal(strlen(t.reason), SENSOR_REASON_MAX - 1);
}

static void test_custom_limits(void **state)
{
        struct sensor_limits l = {.min_c = -20, .max_c = 120, .max_jump_c_per_s = 2};
        struct sensor_track t;
        char reason[SENSOR_REASON_MAX];

        (void)state;
        sensor_track_init(&t);
        assert_int_equal(sensor_check(&t, &l, 121, 0, reason, sizeof reason), SENSOR_FAULT_TOO_HIGH);
        assert_int_equal(sensor_check(&t, &l, -21, 0, reason, sizeof reason), SENSOR_FAULT_TOO_LOW);
        sensor_track_reading(&t, &l, 40, 0);
        assert_int_equal(sensor_check(&t, &l, 61, 10 * SEC, reason, sizeof reason), SENSOR_FAULT_JUMP);
        assert_int_equal(sensor_check(&t, &l, 60, 10 * SEC, reason, sizeof reason), SENSOR_FAULT_NONE);
}

static void test_thresholds(void **state)
{
        (void)state;
        assert_true(sensor_threshold_sane(&limits, 80.0));
        assert_true(sensor_threshold_sane(&limits, 105.0));
        assert_true(sensor_threshold_sane(&limits, 250.0));
        assert_false(sensor_threshold_sane(&limits, 127.0));
        assert_false(sensor_threshold_sane(&limits, 255.0));
        assert_false(sensor_threshold_sane(&limits, -128.0));
        assert_false(sensor_threshold_sane(&limits, 0.0));
        assert_false(sensor_threshold_sane(&limits, -5.0));
        assert_false(sensor_threshold_sane(&limits, 251.0));
        assert_false(sensor_threshold_sane(&limits, NAN));
        assert_false(sensor_threshold_sane(&limits, INFINITY));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_defaults, setup),
                cmocka_unit_test_setup(test_names, setup),
                cmocka_unit_test_setup(test_not_finite, setup),
                cmocka_unit_test_setup(test_range, setup),
                cmocka_unit_test_setup(test_dead_values, setup),
                cmocka_unit_test_setup(test_first_reading, setup),
                cmocka_unit_test_setup(test_jump_fast_vs_slow, setup),
                cmocka_unit_test_setup(test_jump_quick_polls, setup),
                cmocka_unit_test_setup(test_jump_after_long_gap, setup),
                cmocka_unit_test_setup(test_jump_glitch_then_back, setup),
                cmocka_unit_test_setup(test_jump_confirmed, setup),
                cmocka_unit_test_setup(test_recovery_and_reasons, setup),
                cmocka_unit_test_setup(test_custom_limits, setup),
                cmocka_unit_test_setup(test_thresholds, setup),
        };

        return cmocka_run_group_tests_name("sensor_sanity", tests, NULL, NULL);
}
