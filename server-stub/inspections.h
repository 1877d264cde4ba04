/* inspections: the handlers of /api/v1/inspections (docs/api.md,
 * "Inspections"): a request for a health snapshot from some agents or all,
 * queued as one inspect command per agent, and its progress. */
#pragma once

#include "http.h"

/* POST /api/v1/inspections */
void inspections_create(struct store *store, const struct http_call *call, struct http_reply *reply);
/* GET /api/v1/inspections */
void inspections_list(struct store *store, const struct http_call *call, struct http_reply *reply);
/* GET /inspections/{id}/report.html: the inspection report of every host
 * whose snapshot arrived, with their open cases (lib/report.h), as one page. */
void inspections_report(struct store *store, const struct http_call *call, struct http_reply *reply);
/* GET /api/v1/inspections/{id} */
void inspections_get(struct store *store, const struct http_call *call, struct http_reply *reply);
