/* retry_after: the value of an HTTP Retry-After header (RFC 9110 10.2.3),
 * read by weibao-sender from the central API's answers and handed to the
 * agent as a delay.
 *
 * A pure function: no I/O, no clock (the caller passes "now"), no
 * allocation, so the unit tests and the fuzz target (tests/fuzz/fuzz_answer.c)
 * reach it without libcurl. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define RETRY_AFTER_MAX_SEC 3600 /* longer requests are cut to this: a support case must not wait a day */
#define RETRY_AFTER_MAX_LEN 64   /* a longer header value is refused, not parsed */

/* Parses len bytes of a Retry-After value: delta-seconds ("120") or an
 * HTTP-date in any of the three forms ("Sun, 06 Nov 1994 08:49:37 GMT",
 * "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"), with
 * optional surrounding whitespace. now is the current wall-clock time in
 * seconds. Returns 0 and the delay in *ret_usec (0 for a date not in the
 * future, at most RETRY_AFTER_MAX_SEC seconds), or -EINVAL for anything
 * else (*ret_usec untouched). */
int retry_after_parse(const char *value, size_t len, time_t now, uint64_t *ret_usec);
