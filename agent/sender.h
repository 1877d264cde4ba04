/* sender: JSON requests to the central ticket API, driven by libcurl's multi
 * interface on the agent's event loop, so collection never waits on the
 * network. It knows nothing of faults or retries: a request is tried once and
 * its outcome handed to the caller's callback. The bearer token is sent but
 * never logged. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct loop;
struct sender;

struct sender_result {
        long http_status; /* 0 when no HTTP answer arrived */
        const char *body; /* the answer's body, NUL-terminated ("" if none) */
        size_t body_len;
        const char *error;         /* transport error text when http_status == 0, else NULL */
        uint64_t retry_after_usec; /* the answer's Retry-After, 0 when absent */
};

/* Called exactly once per request that was started, unless the sender is
 * freed first. result is valid only during the call. */
typedef void (*sender_done_fn)(const struct sender_result *result, void *userdata);

/* Returns 0 and a new sender (caller frees with sender_free), or negative errno. */
int sender_new(struct loop *loop, struct sender **ret);
/* Cancels requests in flight without calling their callbacks. NULL does nothing. */
void sender_free(struct sender *s);
/* Sets where and how to talk. base_url like "http://127.0.0.1:8080"; token is
 * copied. Applies to requests started afterwards. Returns 0 or -ENOMEM. */
int sender_configure(struct sender *s, const char *base_url, const char *token, uint64_t timeout_usec);
/* Starts a request: method "POST" or "PUT", path below base_url ("/api/v1/cases"),
 * body JSON text (copied), idempotency_key may be NULL. Returns 0 or negative errno. */
int sender_request(struct sender *s, const char *method, const char *path, const char *body,
                   const char *idempotency_key, sender_done_fn fn, void *userdata);
size_t sender_in_flight(const struct sender *s);
