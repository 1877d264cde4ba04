/* central: what the central side does by itself, on its clock rather than on
 * a request — the dead-man's switch (an agent silent for more than its
 * deadman intervals gets a P1 "not reporting" case, cleared when it checks in
 * again) and the escalation clock (each open case with an active fault
 * records the steps of its level's matrix as they become due). Also the
 * test-control clock endpoints that move the stub's notion of now.
 *
 * Everything runs with the HTTP server's lock held (http_server_locked), so
 * the store still sees one caller at a time. Logs here, once per event. */
#pragma once

#include <stdint.h>

#include "http.h"

/* One pass of the dead-man's switch and the escalation clock at the store's
 * now. Storage failures are logged and retried on the next tick. */
void central_tick(struct store *store);

/* An agent with an open "not reporting" case (case_id) has checked in:
 * adds a "cleared" update to that case and forgets the link. Returns 0, or
 * a negative errno (logged here). */
int central_agent_returned(struct store *store, const char *agent_id, int64_t case_id);

/* Test control: GET /api/v1/_test/clock and POST {"advance_s": N}; the POST
 * runs a tick at once, so a test sees its effects in the answer's wake. */
void central_clock_get(struct store *store, const struct http_call *call, struct http_reply *reply);
void central_clock_advance(struct store *store, const struct http_call *call, struct http_reply *reply);
