/* event_ring: the last N events, copied, for people to look at
 * (`weibaoctl traps`, `weibaoctl events`).
 *
 * Events borrow their strings (event.h), so each slot keeps a flat copy of
 * one event in a fixed-size buffer: pushing never allocates after a slot's
 * first use, and the ring never holds more than n * EVENT_RING_SLOT_BYTES.
 * Attributes that do not fit are left out and counted in the copy. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "event.h"

#define EVENT_RING_SLOT_BYTES 4096

struct event_ring;

/* Returns a ring for the last n events (n >= 1), or NULL on allocation
 * failure. Slots are allocated when first used. */
struct event_ring *event_ring_new(size_t n);
void event_ring_free(struct event_ring *r);
/* Copies e into the ring, with a short note (e.g. "accepted", "community";
 * may be NULL), replacing the oldest when full. */
void event_ring_push(struct event_ring *r, const struct event *e, const char *note);
/* Events pushed since the ring was made. */
uint64_t event_ring_pushed(const struct event_ring *r);
/* A new JSON array of the kept events, oldest first, each an object with
 * time, source, name, object, value/unit when set, note, attributes and
 * attributes_dropped when any were left out. NULL on allocation failure. */
cJSON *event_ring_to_json(const struct event_ring *r);
