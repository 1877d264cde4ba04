/* outbox: every request the agent owes the central ticket API — case opens
 * and their updates — kept durably (agent/store.h) and delivered exactly
 * once, in order per fault key.
 *
 * A case record holds the open request and a FIFO of updates for one case.
 * Nothing is sent before the store has committed it; an item leaves the
 * outbox only when the central side acknowledged it, and its Idempotency-Key
 * is stored with it, so a retry after a lost answer never makes a second case
 * or applies an update twice. Records of one fault key are delivered one
 * after the other (the "cleared" of an old case before the open of the next),
 * different keys in parallel up to a cap of requests in flight.
 *
 * Failures: transport errors and 5xx answers are retried with exponential
 * backoff and jitter, per record; a transport error or a 429/503 also holds
 * back every record for a while (the central side is down or asked us to
 * wait: Retry-After is honoured), probing with one request at a time. Other
 * 4xx answers (except 408 and 429) are not retried blindly: the item is
 * parked with the server's error text, reported in the log and status, and
 * retried only after a reload (when the token or URL may have been fixed) or
 * `weibaoctl outbox retry`. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

struct loop;
struct outbox;
struct sender;
struct store;

struct outbox_settings {
        uint64_t retry_max_usec; /* backoff ceiling (default 30 s); it starts at 1 s (or this, if smaller) */
        size_t max_items;        /* opens and updates held at most (default 100000) */
        size_t max_in_flight;    /* requests at once (default 32) */
};

/* Told when a case's open was acknowledged (case_id valid during the call). */
typedef void (*outbox_opened_fn)(int64_t ref, const char *fault_key, const char *case_id, void *userdata);

/* Returns 0 and an outbox (caller frees with outbox_free), or negative
 * errno. Loads what the store holds (the records of a previous run) and
 * registers as a writer of st; loop, st and sender must outlive it. */
int outbox_new(struct loop *loop, struct store *st, struct sender *sender, const struct outbox_settings *set,
               outbox_opened_fn opened, void *userdata, struct outbox **ret);
void outbox_free(struct outbox *ob);
void outbox_set_settings(struct outbox *ob, const struct outbox_settings *set);

/* Queues the opening of a case. body is the create request (JSON text,
 * copied); idem_key its Idempotency-Key (copied); prev_ref the case this one
 * follows (0: none): its id is added to the body as previous_case_id before
 * sending. Returns the new case's ref (> 0), or -ENOBUFS when the outbox is
 * full, -ENOMEM. */
int64_t outbox_open_case(struct outbox *ob, const char *fault_key, const char *body, const char *idem_key,
                         int64_t prev_ref);
/* Queues a plain request that is not a case (a snapshot upload): method
 * ("PUT", "POST"), path below the base URL, body and Idempotency-Key are
 * copied; key orders it like a fault key. It is durable, retried and parked
 * like a case's open, and forgotten once acknowledged. Returns 0, -ENOBUFS,
 * -ENOMEM. */
int outbox_add_request(struct outbox *ob, const char *key, const char *method, const char *path, const char *body,
                       const char *idem_key);
/* Queues an update (body JSON text, copied) to case ref. Returns 0,
 * -ENOENT (no such record), -ENOBUFS, -ENOMEM. */
int outbox_add_update(struct outbox *ob, int64_t ref, const char *type, const char *body);
/* Whether case ref has nothing queued or in flight (open acknowledged, no
 * update waiting). */
bool outbox_case_idle(const struct outbox *ob, int64_t ref);
/* The central side's id of case ref, or NULL while unknown (valid until the
 * next outbox call). */
const char *outbox_case_id(const struct outbox *ob, int64_t ref);
/* How far case ref is: "opening", "updating", "parked", "delivered" (all
 * acknowledged), "none" (no record). *ret_error (may be NULL) gets the last
 * failure's text while one is pending, else NULL. */
const char *outbox_case_delivery(const struct outbox *ob, int64_t ref, const char **ret_error);
/* A fault loaded at start takes back its case record; false when the
 * record is gone (the fault then has no case to send to). Records no fault
 * claims are dropped once delivered. */
bool outbox_claim(struct outbox *ob, int64_t ref);
/* The fault no longer needs case ref: the record goes once delivered. */
void outbox_release(struct outbox *ob, int64_t ref);
/* Parked items are tried again (after a reload, or on request). Returns how many. */
size_t outbox_unpark(struct outbox *ob);
/* Starts every send that is due. */
void outbox_kick(struct outbox *ob);

struct outbox_stats {
        uint64_t opens_pending;    /* cases not yet acknowledged */
        uint64_t updates_pending;  /* updates not yet acknowledged */
        uint64_t requests_pending; /* plain requests (snapshot uploads) not yet acknowledged */
        uint64_t not_durable;      /* of those, not yet committed to disk */
        uint64_t in_flight;
        uint64_t parked;
        uint64_t cases_opened; /* acknowledged, since start */
        uint64_t updates_sent;
        uint64_t send_failures; /* failed attempts */
        uint64_t shed;          /* items refused because the outbox was full */
        bool central_down;      /* holding back after transport errors or Retry-After */
};
void outbox_get_stats(const struct outbox *ob, struct outbox_stats *ret);
/* A new JSON object: stats, and the records that still owe something (at
 * most 200, oldest first) with their last error. NULL on allocation failure. */
cJSON *outbox_to_json(const struct outbox *ob);
