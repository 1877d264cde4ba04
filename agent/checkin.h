/* checkin: the agent's periodic sign of life to the central API (POST
 * /api/v1/agents/{id}/checkin, every interval, 60 s by default) and the
 * commands its answer carries (an inspection request, a maintenance window):
 * agents behind customer firewalls never need an inbound port. A command is
 * handed to the caller once (its id is remembered) and, when it succeeded,
 * acknowledged in the next check-in's "done" list, so the central side stops
 * sending it; a failed one is reported in the next check-in instead and
 * forgotten, so that it runs again when the central side sends it again. A
 * check-in is not durable: a failed one is simply the absence the central
 * side's dead-man's switch counts. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "answer.h"

struct checkin;
struct identity;
struct loop;
struct sender;

/* Called once per new command; c valid during the call. Returns 0 when the
 * command was carried out (it is acknowledged in the next check-in's
 * "done"), or negative errno with a message in err (errsize bytes): the
 * command is not acknowledged, the next check-in reports the error in its
 * status ("command_errors"), and the command runs again when the central
 * side sends it again. */
typedef int (*checkin_command_fn)(const struct answer_command *c, char *err, size_t errsize, void *userdata);
/* A fresh JSON object of the agent's state for the check-in body (may return NULL). */
typedef cJSON *(*checkin_status_fn)(void *userdata);

/* Returns 0 and a check-in (caller frees with checkin_free), or negative
 * errno (-EINVAL: the agent id cannot be put in a URL). The first check-in
 * goes soon after the start. id and sender must outlive it. */
int checkin_new(struct loop *loop, struct sender *sender, const struct identity *id, uint64_t interval_usec,
                checkin_command_fn cmd, checkin_status_fn status, void *userdata, struct checkin **ret);
void checkin_free(struct checkin *c);
void checkin_set_interval(struct checkin *c, uint64_t interval_usec);
/* A new JSON object: interval, last success, last error, counters. */
cJSON *checkin_to_json(const struct checkin *c);
