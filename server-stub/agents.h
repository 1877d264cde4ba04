/* agents: the handlers of /api/v1/agents (docs/api.md, "Agents"): check-in
 * with its pending commands, queuing a maintenance command, the agents' read
 * side and snapshot upload and download. Each validates the request, asks
 * the store and fills the reply; storage failures are logged once, 500. */
#pragma once

#include "http.h"

#define AGENTS_ANSWER_COMMANDS 16 /* commands in one check-in answer */

/* POST /api/v1/agents/{agent_id}/checkin */
void agents_checkin(struct store *store, const struct http_call *call, struct http_reply *reply);
/* POST /api/v1/agents/{agent_id}/commands */
void agents_command_add(struct store *store, const struct http_call *call, struct http_reply *reply);
/* GET /api/v1/agents */
void agents_list(struct store *store, const struct http_call *call, struct http_reply *reply);
/* GET /api/v1/agents/{agent_id} */
void agents_get(struct store *store, const struct http_call *call, struct http_reply *reply);
/* PUT /api/v1/agents/{agent_id}/snapshots/{request} */
void agents_snapshot_put(struct store *store, const struct http_call *call, struct http_reply *reply);
/* GET /api/v1/agents/{agent_id}/snapshots/{request} */
void agents_snapshot_get(struct store *store, const struct http_call *call, struct http_reply *reply);
