/* inject: the stub's fault injection (docs/api.md, "Test control"), active
 * only with --test-control. A FIFO queue of injections, each applied to the
 * next `count` requests whose path starts with its `match` prefix; the
 * _test endpoints themselves are never matched.
 *
 * Pure data: validation of the POST body and the queue, no HTTP and no
 * threads (http.c calls everything from libmicrohttpd's one thread), so the
 * fuzz target (tests/fuzz/fuzz_stub_body.c) can include this file alone. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define INJECT_QUEUE_MAX 64          /* injections queued at once; more is a 409 */
#define INJECT_COUNT_MAX 10000       /* "count" */
#define INJECT_MATCH_MAX 256         /* bytes of "match" */
#define INJECT_DELAY_MAX_SEC 300     /* "seconds" */
#define INJECT_RETRY_AFTER_MAX 86400 /* "retry_after" */
#define INJECT_TEST_PREFIX "/api/v1/_test/"

enum inject_action {
        INJECT_STATUS,  /* answer status with {"error":"injected"}, unprocessed */
        INJECT_DELAY,   /* process, answer after the delay */
        INJECT_DROP,    /* close the connection without an answer */
        INJECT_GARBAGE, /* answer 200 with a body that is not JSON */
        INJECT_ACTION_MAX,
};

enum inject_when {
        INJECT_BEFORE, /* instead of processing the request */
        INJECT_AFTER,  /* after processing (and storing) it */
        INJECT_WHEN_MAX,
};

struct inject_spec {
        enum inject_action action;
        enum inject_when when; /* drop and garbage; status is always before, delay always after */
        unsigned status;       /* status: 100..599 */
        int retry_after;       /* status: seconds for Retry-After, -1 for none */
        unsigned delay_ms;     /* delay: 1 ms .. INJECT_DELAY_MAX_SEC s */
        unsigned count;        /* requests it still applies to, 1..INJECT_COUNT_MAX */
        char match[INJECT_MATCH_MAX + 1];
};

struct inject_queue;

const char *inject_action_to_string(enum inject_action a);
const char *inject_when_to_string(enum inject_when w);

/* Validates a parsed POST /api/v1/_test/inject body. Returns 0 and fills
 * *ret (defaults applied), or -EINVAL with a message naming the field
 * ("status: expected an integer 100..599") in err; *ret untouched then. */
int inject_parse(const cJSON *root, struct inject_spec *ret, char *err, size_t errsize);

/* Returns a new empty queue (caller frees with inject_queue_free), or NULL. */
struct inject_queue *inject_queue_new(void);
void inject_queue_free(struct inject_queue *q);
/* Appends a copy of spec. Returns 0, or -ENOSPC when INJECT_QUEUE_MAX are queued. */
int inject_queue_push(struct inject_queue *q, const struct inject_spec *spec);
/* For a request on path: the first queued injection (FIFO) whose match is a
 * prefix of path is applied once: copied to *ret (with count 1), its count
 * decremented (removed at 0) and its action counted. Returns true when one
 * applied; paths under INJECT_TEST_PREFIX never match. */
bool inject_queue_take(struct inject_queue *q, const char *path, struct inject_spec *ret);
/* Empties the queue and resets the applied counters; returns how many
 * injections were dropped. */
size_t inject_queue_clear(struct inject_queue *q);
/* {"injections":[...remaining, in order...],"applied":{"status":N,...}};
 * NULL on allocation failure. Caller frees with cJSON_Delete. */
cJSON *inject_queue_to_json(const struct inject_queue *q);
/* One injection as JSON (as listed; count as "remaining"), or NULL. */
cJSON *inject_spec_to_json(const struct inject_spec *s);
