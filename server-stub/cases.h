/* cases: the handlers of /api/v1/cases (docs/api.md). Each validates the
 * request, asks the store and fills the reply; storage failures are logged
 * here, once, and answered with 500. */
#pragma once

#include "http.h"

/* GET /api/v1/cases?agent_id=&fault_key=&status=&fault_active= */
void cases_list(struct store *store, const struct http_call *call, struct http_reply *reply);
/* POST /api/v1/cases */
void cases_create(struct store *store, const struct http_call *call, struct http_reply *reply);
/* GET /api/v1/cases/{id} */
void cases_get(struct store *store, const struct http_call *call, struct http_reply *reply);
/* POST /api/v1/cases/{id}/updates */
void cases_update(struct store *store, const struct http_call *call, struct http_reply *reply);
