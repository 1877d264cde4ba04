/* Unit tests for the Retry-After parser (agent/retry_after.c): both forms
 * of RFC 9110, the cap, dates in the past and what must be refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "../../agent/retry_after.h"

/* Sun, 06 Nov 1994 08:49:37 GMT */
#define T0 ((time_t)784111777)

static int parse(const char *s, time_t now, uint64_t *ret)
{
        return retry_after_parse(s, strlen(s), now, ret);
}

static void test_delta_seconds(void **state)
{
        uint64_t u = 7;

        (void)state;
        assert_int_equal(parse("120", T0, &u), 0);
        assert_int_equal(u, 120000000ULL);
        assert_int_equal(parse("0", T0, &u), 0);
        assert_int_equal(u, 0);
        assert_int_equal(parse("  2\r\n", T0, &u), 0);
        assert_int_equal(u, 2000000ULL);
        assert_int_equal(parse("3600", T0, &u), 0);
        assert_int_equal(u, 3600000000ULL);
        /* capped, also far beyond 64 bits */
        assert_int_equal(parse("3601", T0, &u), 0);
        assert_int_equal(u, (uint64_t)RETRY_AFTER_MAX_SEC * 1000000);
        assert_int_equal(parse("99999999999999999999999999999", T0, &u), 0);
        assert_int_equal(u, (uint64_t)RETRY_AFTER_MAX_SEC * 1000000);
}

static void test_http_dates(void **state)
{
        uint64_t u = 0;

        (void)state;
        assert_int_equal(parse("Sun, 06 Nov 1994 08:49:37 GMT", T0 - 30, &u), 0);
        assert_int_equal(u, 30000000ULL);
        assert_int_equal(parse("Sunday, 06-Nov-94 08:49:37 GMT", T0 - 5, &u), 0);
        assert_int_equal(u, 5000000ULL);
        assert_int_equal(parse("Sun Nov  6 08:49:37 1994", T0 - 1, &u), 0);
        assert_int_equal(u, 1000000ULL);
        assert_int_equal(parse("Mon, 07 Nov 1994 08:49:37 GMT", T0, &u), 0); /* a day ahead: capped */
        assert_int_equal(u, (uint64_t)RETRY_AFTER_MAX_SEC * 1000000);
        u = 9;
        assert_int_equal(parse("Sun, 06 Nov 1994 08:49:37 GMT", T0 + 100, &u), 0); /* past: no wait */
        assert_int_equal(u, 0);
        assert_int_equal(parse("Thu, 29 Feb 2024 23:59:59 GMT", (time_t)1709251199 - 2, &u), 0);
        assert_int_equal(u, 2000000ULL);
}

static void test_refused(void **state)
{
        static const char *const bad[] = {
                "",
                "   ",
                "-1",
                "1.5",
                "12abc",
                "soon",
                "Sun, 06 Nov 1994 08:49:37 UTC",
                "sun, 06 Nov 1994 08:49:37 GMT",
                "Sun, 6 Nov 1994 08:49:37 GMT",
                "Sun, 06 Foo 1994 08:49:37 GMT",
                "Sun, 32 Nov 1994 08:49:37 GMT",
                "Sun, 06 Nov 1994 24:49:37 GMT",
                "Sun, 06 Nov 1994 08:49:37 GMT trailing",
                "Sun Nov 6 08:49:37 1994",
                "Sunday, 06-Nov-1994 08:49:37 GMT",
                "1234567890123456789012345678901234567890123456789012345678901234567890",
        };
        uint64_t u = 42;

        (void)state;
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                if (parse(bad[i], T0, &u) != -EINVAL)
                        fail_msg("accepted '%s'", bad[i]);
                assert_int_equal(u, 42);
        }
        assert_int_equal(retry_after_parse(NULL, 0, T0, &u), -EINVAL);
        /* length-bounded: no NUL needed, nothing read past len */
        assert_int_equal(retry_after_parse("12xyz", 2, T0, &u), 0);
        assert_int_equal(u, 12000000ULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_delta_seconds),
                cmocka_unit_test(test_http_dates),
                cmocka_unit_test(test_refused),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
