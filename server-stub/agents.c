/* agents: see agents.h. A check-in is not idempotency-sensitive (it says
 * "I am alive, these are done"; repeating it changes nothing that matters),
 * so it takes no Idempotency-Key; a snapshot upload is a PUT, idempotent by
 * itself. Queuing a command is a POST like any other and needs one. Path ids
 * are checked before the body, so a bad one is a 400 naming agent_id. */
#include "agents.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../lib/log.h"
#include "body.h"
#include "cases.h"
#include "central.h"
#include "store.h"

enum {
        STATUS_OK = 200,
        STATUS_CREATED = 201,
        STATUS_BAD_REQUEST = 400,
        STATUS_NOT_FOUND = 404,
        STATUS_INTERNAL = 500,
};

/* Checks the path's agent id (and request when not NULL). Returns 0, or
 * replies 400 and returns -EINVAL. */
static int check_path(const struct http_call *call, struct http_reply *reply, const char *request)
{
        if (!body_is_url_id(call->params[0])) {
                http_reply_error(reply, STATUS_BAD_REQUEST, "agent_id: expected 1..%d characters of A-Z a-z 0-9 . _ -",
                                 BODY_MAX_ID);
                return -EINVAL;
        }
        if (request && !body_is_url_id(request)) {
                http_reply_error(reply, STATUS_BAD_REQUEST, "request: expected 1..%d characters of A-Z a-z 0-9 . _ -",
                                 BODY_MAX_ID);
                return -EINVAL;
        }
        return 0;
}

static int parse_body(const struct http_call *call, struct http_reply *reply, cJSON **ret)
{
        char err[256];
        int r = body_parse_json(call->body, call->body_len, ret, err, sizeof err);

        if (r < 0)
                http_reply_error(reply, r == -ENOMEM ? STATUS_INTERNAL : STATUS_BAD_REQUEST, "%s", err);
        return r;
}

void agents_checkin(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        const char *id = call->params[0];
        struct body_checkin c;
        cJSON *body = NULL, *answer = NULL, *cmds = NULL;
        int64_t deadman = 0;
        char err[256];
        int r;

        if (check_path(call, reply, NULL) < 0 || parse_body(call, reply, &body) < 0)
                return;
        if (body_parse_checkin(body, id, &c, err, sizeof err) < 0) {
                http_reply_error(reply, STATUS_BAD_REQUEST, "%s", err);
                goto out;
        }
        r = store_agent_checkin(store, id, &c, &deadman);
        if (r < 0) {
                cases_reply_store_error(reply, store, "recording a check-in", r);
                goto out;
        }
        log_debug("agent %s checked in (%zu done)", id, c.n_done);
        /* A failure here is logged and retried on the next check-in: the
         * agent's check-in itself was recorded. */
        if (deadman > 0)
                (void)central_agent_returned(store, id, deadman);
        r = store_agent_pending(store, id, AGENTS_ANSWER_COMMANDS, &cmds);
        if (r < 0) {
                cases_reply_store_error(reply, store, "listing commands", r);
                goto out;
        }
        answer = cJSON_CreateObject();
        if (!answer || !cJSON_AddStringToObject(answer, "agent_id", id) ||
            !cJSON_AddItemToObject(answer, "commands", cmds)) {
                cJSON_Delete(cmds);
                cJSON_Delete(answer);
                http_reply_error(reply, STATUS_INTERNAL, "out of memory");
                goto out;
        }
        http_reply_json(reply, STATUS_OK, answer);
out:
        cJSON_Delete(body);
}

void agents_command_add(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        const char *key = http_call_header(call, "Idempotency-Key");
        struct body_command c;
        cJSON *body = NULL, *view;
        int64_t id;
        char err[256];
        int r;

        if (check_path(call, reply, NULL) < 0)
                return;
        if (body_check_idempotency_key(key, err, sizeof err) < 0) {
                http_reply_error(reply, STATUS_BAD_REQUEST, "%s", err);
                return;
        }
        if (parse_body(call, reply, &body) < 0)
                return;
        if (body_parse_command(body, &c, err, sizeof err) < 0) {
                http_reply_error(reply, STATUS_BAD_REQUEST, "%s", err);
                goto out;
        }
        r = store_command_add(store, call->params[0], key, &c, &id);
        if (r < 0) {
                cases_reply_store_error(reply, store, "queuing a command", r);
                goto out;
        }
        if (r > 0)
                log_notice("command %lld queued for agent %s: %s", (long long)id, call->params[0],
                           body_command_type_to_string(c.type));
        r = r > 0 ? STATUS_CREATED : STATUS_OK;
        if (store_command_get(store, id, &view) < 0) {
                cases_reply_store_error(reply, store, "reading a command", -EIO);
                goto out;
        }
        http_reply_json(reply, (unsigned)r, view);
out:
        cJSON_Delete(body);
}

static int no_query(const struct http_call *call, struct http_reply *reply)
{
        if (call->n_query == 0)
                return 0;
        http_reply_error(reply, STATUS_BAD_REQUEST, "unknown query parameter %s (this endpoint takes none)",
                         call->query[0].key);
        return -EINVAL;
}

void agents_list(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        cJSON *arr, *obj;
        int r;

        if (no_query(call, reply) < 0)
                return;
        r = store_agent_list(store, &arr);
        if (r < 0) {
                cases_reply_store_error(reply, store, "listing agents", r);
                return;
        }
        obj = cJSON_CreateObject();
        if (!obj || !cJSON_AddItemToObject(obj, "agents", arr)) {
                cJSON_Delete(obj);
                cJSON_Delete(arr);
                http_reply_error(reply, STATUS_INTERNAL, "out of memory");
                return;
        }
        http_reply_json(reply, STATUS_OK, obj);
}

void agents_get(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        cJSON *view;
        int r;

        if (no_query(call, reply) < 0 || check_path(call, reply, NULL) < 0)
                return;
        r = store_agent_get(store, call->params[0], &view);
        if (r == -ENOENT) {
                http_reply_error(reply, STATUS_NOT_FOUND, "no agent with id %s", call->params[0]);
                return;
        }
        if (r < 0) {
                cases_reply_store_error(reply, store, "reading an agent", r);
                return;
        }
        http_reply_json(reply, STATUS_OK, view);
}

void agents_snapshot_put(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        cJSON *body = NULL, *view = NULL;
        char err[256];
        int r;

        if (check_path(call, reply, call->params[1]) < 0 || parse_body(call, reply, &body) < 0)
                return;
        if (body_check_snapshot(body, err, sizeof err) < 0) {
                http_reply_error(reply, STATUS_BAD_REQUEST, "%s", err);
                goto out;
        }
        /* Stored as sent, byte for byte: the parse was only the check. */
        r = store_snapshot_put(store, call->params[0], call->params[1], call->body, call->body_len, &view);
        if (r < 0) {
                cases_reply_store_error(reply, store, "storing a snapshot", r);
                goto out;
        }
        log_notice("snapshot %s of agent %s %s (%zu bytes)", call->params[1], call->params[0],
                   r ? "stored" : "replaced", call->body_len);
        http_reply_json(reply, r ? STATUS_CREATED : STATUS_OK, view);
out:
        cJSON_Delete(body);
}

void agents_snapshot_get(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        cJSON *snap;
        int r;

        if (no_query(call, reply) < 0 || check_path(call, reply, call->params[1]) < 0)
                return;
        r = store_snapshot_get(store, call->params[0], call->params[1], &snap);
        if (r == -ENOENT) {
                http_reply_error(reply, STATUS_NOT_FOUND, "no snapshot %s of agent %s", call->params[1],
                                 call->params[0]);
                return;
        }
        if (r < 0) {
                cases_reply_store_error(reply, store, "reading a snapshot", r);
                return;
        }
        http_reply_json(reply, STATUS_OK, snap);
}
