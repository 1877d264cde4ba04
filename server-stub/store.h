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
#include "escalation.h"

struct store;

/* Opens (creating if needed) the database at path and its schema. Returns 0
 * and a store (caller frees with store_free), or a negative errno with a
 * message in err: -EIO when SQLite cannot open or read the file, -EPROTO when
 * the schema is newer than this program. */
int store_open(const char *path, struct store **ret, char *err, size_t errsize);
void store_free(struct store *s);
/* SQLite's message for the last failed call; valid until the next call. */
const char *store_errmsg(struct store *s);

/* Gives back the database statements a call took and did not return (each
 * store call returns its own, so this is 0 unless the store has a bug; the
 * HTTP layer checks after every request and logs a non-zero count). */
size_t store_release_statements(struct store *s);

/* The stub's notion of now: the wall clock plus an offset that test control
 * moves forward. Every time the store writes and the central clock
 * (central.c) reads comes from here. */
int64_t store_now_usec(const struct store *s);
int64_t store_clock_offset_usec(const struct store *s);
void store_clock_advance(struct store *s, int64_t usec);

/* The central side's settings (copied): the escalation matrix case views
 * show, and after how many silent check-in intervals an agent is not
 * reporting. The defaults are the agreement's matrix and 3. */
void store_set_central(struct store *s, const struct escalation_matrix *m, int deadman_intervals);
const struct escalation_matrix *store_matrix(const struct store *s);
int store_deadman_intervals(const struct store *s);

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

/* ---- the central side: agents, commands, inspections, snapshots ---- */

/* Records a check-in of agent_id (validated body): creates the agent on its
 * first check-in, else replaces its identity (when given), interval, status
 * and last check-in time; marks the commands listed in "done" that belong to
 * this agent as done. Returns 0 and *ret_deadman_case, the id of the open
 * "not reporting" case of this agent (0 for none: the caller clears it and
 * then calls store_agent_clear_deadman), or -ENOMEM / -EIO. */
int store_agent_checkin(struct store *s, const char *agent_id, const struct body_checkin *c, int64_t *ret_deadman_case);
/* Forgets the agent's "not reporting" case (after it was cleared). */
int store_agent_clear_deadman(struct store *s, const char *agent_id);
/* Links the agent to its freshly opened "not reporting" case. */
int store_agent_set_deadman(struct store *s, const char *agent_id, int64_t case_id);

/* Returns 0 and an array of at most max commands queued for agent_id and not
 * yet done, oldest first, as the check-in answer lists them (caller frees
 * with cJSON_Delete); -ENOMEM, -EIO. */
int store_agent_pending(struct store *s, const char *agent_id, size_t max, cJSON **ret);

/* Returns 0 and an array of agent views ordered by id (caller frees with
 * cJSON_Delete), or -ENOMEM / -EIO. */
int store_agent_list(struct store *s, cJSON **ret);
/* Returns 0 and one agent view with its commands and snapshots, -ENOENT,
 * -ENOMEM or -EIO. */
int store_agent_get(struct store *s, const char *agent_id, cJSON **ret);
/* Returns 0 and an array of the agent views of agents silent for more than
 * their deadman intervals (counted from their last check-in, or from when the
 * store was opened when that is later) that have no "not reporting" case;
 * -ENOMEM, -EIO. */
int store_agent_overdue(struct store *s, cJSON **ret);

/* Queues a command for agent_id unless key was used for a command before.
 * Returns 1 (created) or 0 (known key) with *ret_id set; -ENOMEM, -EIO. */
int store_command_add(struct store *s, const char *agent_id, const char *key, const struct body_command *c,
                      int64_t *ret_id);
/* Returns 0 and the command view (caller frees with cJSON_Delete), -ENOENT,
 * -ENOMEM or -EIO. */
int store_command_get(struct store *s, int64_t id, cJSON **ret);

/* Creates an inspection and queues one inspect command per agent (all
 * agents ever seen for in->all) unless key was used before. Returns 1
 * (created) or 0 (known key) with *ret_id set; -ENOMEM, -EIO. */
int store_inspection_create(struct store *s, const char *key, const struct body_inspection *in, int64_t *ret_id);
/* Returns 0 and the inspection view with its per-agent state (caller frees
 * with cJSON_Delete), -ENOENT, -ENOMEM or -EIO. */
int store_inspection_get(struct store *s, int64_t id, cJSON **ret);
/* Returns 0 and an array of inspection views ordered by id; -ENOMEM, -EIO. */
int store_inspection_list(struct store *s, cJSON **ret);

/* Stores (or replaces) the snapshot text (len bytes of validated JSON) of
 * agent_id for request. Returns 1 (created) or 0 (replaced) and the upload's
 * view in *ret (caller frees with cJSON_Delete); -ENOMEM, -EIO. */
int store_snapshot_put(struct store *s, const char *agent_id, const char *request, const char *text, size_t len,
                       cJSON **ret);
/* Returns 0 and the snapshot as uploaded (caller frees with cJSON_Delete),
 * -ENOENT, -ENOMEM or -EIO. */
int store_snapshot_get(struct store *s, const char *agent_id, const char *request, cJSON **ret);

/* ---- the escalation clock ---- */

/* Called by store_escalation_tick for each step it records as reached. */
typedef void (*store_reached_fn)(void *arg, int64_t case_id, const char *level, const struct escalation_step *step,
                                 const char *title);
/* Records, for every open case whose fault is active, each step of its
 * current level that is due (created_at + after_s <= now) and not yet
 * recorded, and calls reached for each. Returns how many were recorded, or
 * -ENOMEM / -EIO. */
int store_escalation_tick(struct store *s, store_reached_fn reached, void *arg);
