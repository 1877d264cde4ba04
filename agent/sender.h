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
        const char *error; /* transport error text when http_status == 0, else NULL */
        /* The answer's Retry-After as a delay from now (delta-seconds or an
         * HTTP-date, capped at RETRY_AFTER_MAX_SEC, agent/retry_after.h);
         * 0 when absent, unreadable, a date already past, or no answer. */
        uint64_t retry_after_usec;
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
/* Sets the TLS files for https (each may be NULL: the system CA bundle, no
 * client certificate); the strings are copied. Certificate and host name
 * verification are always on. Applies to requests started afterwards.
 * Returns 0 or -ENOMEM. */
int sender_set_tls(struct sender *s, const char *ca_file, const char *client_cert, const char *client_key);
/* Flags of a request. */
enum {
        /* "Prefer: return=minimal": the caller needs only the id of what the
         * request creates, so the server may leave the object out of the
         * answer (less to build, send and parse per case). */
        SENDER_ANSWER_MINIMAL = 1u << 0,
};
/* Starts a request: method "POST" or "PUT", path below base_url ("/api/v1/cases"),
 * body JSON text (copied), idempotency_key may be NULL, flags SENDER_*.
 * Returns 0 or negative errno. */
int sender_request(struct sender *s, const char *method, const char *path, const char *body,
                   const char *idempotency_key, unsigned flags, sender_done_fn fn, void *userdata);
size_t sender_in_flight(const struct sender *s);
