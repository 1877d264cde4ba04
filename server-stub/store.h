/* store: the stub's SQLite database of cases and their updates.
 *
 * One connection, used by one thread at a time (the HTTP thread). The file is
 * in WAL mode; each write is one transaction, so a case and its idempotency
 * key, or an update and its effect on the case, are committed together and a
 * stub killed at any point never holds half of either. Views are returned as
 * fresh cJSON trees in the shape docs/api.md gives. The store never logs;
 * SQLite's message for the last failure is available from store_errmsg(). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "body.h"

struct store;

/* Opens (creating if needed) the database at path and its schema. Returns 0
 * and a store (caller frees with store_free), or a negative errno with a
 * message in err: -EIO when SQLite cannot open or read the file, -EPROTO when
 * the schema is newer than this program. */
int store_open(const char *path, struct store **ret, char *err, size_t errsize);
void store_free(struct store *s);
/* SQLite's message for the last failed call; valid until the next call. */
const char *store_errmsg(struct store *s);

/* Creates a case from a validated body unless key was used before. request
 * is the whole request body as sent, kept for fields the API does not know.
 * Returns 1 (created) or 0 (key known; *ret_id is that case) with *ret_id
 * set, or -ENOMEM / -EIO. */
int store_case_create(struct store *s, const char *key, const struct body_case *c, const cJSON *request,
                      int64_t *ret_id);

/* Returns 0 and the case object (caller frees with cJSON_Delete), with its
 * "updates" array when with_updates; -ENOENT for an unknown id; -ENOMEM, -EIO. */
int store_case_get(struct store *s, int64_t id, bool with_updates, cJSON **ret);

/* Filters for store_case_list; NULL / fault_active < 0 means "any". */
struct store_filter {
        const char *agent_id;
        const char *fault_key;
        const char *status;
        int fault_active; /* -1 any, 0 false, 1 true */
};

/* Returns 0 and an array of case objects ordered by id (without updates;
 * caller frees with cJSON_Delete), or -ENOMEM / -EIO. */
int store_case_list(struct store *s, const struct store_filter *f, cJSON **ret);

/* Records an update on case_id and applies its effect unless key was used
 * for an update of that case before. body is the request body as sent.
 * Returns 1 (created) or 0 (already known) with *ret_id set to the update
 * id; -ENOENT for an unknown case; -ENOMEM, -EIO. */
int store_update_add(struct store *s, int64_t case_id, const char *key, const struct body_update *u, const cJSON *body,
                     int64_t *ret_id);

/* Returns 0 and the update object (caller frees with cJSON_Delete), -ENOENT,
 * -ENOMEM or -EIO. */
int store_update_get(struct store *s, int64_t id, cJSON **ret);
