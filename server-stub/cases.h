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

/* Answers a store failure r with 500, logging it once with what ("creating
 * case"); shared by the other handler modules. */
void cases_reply_store_error(struct http_reply *reply, struct store *store, const char *what, int r);
/* Parses a positive decimal id path segment (1 .. 2^53-1). Returns 0 or -EINVAL. */
int cases_parse_id(const char *s, int64_t *ret);
