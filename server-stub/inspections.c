/* inspections: see inspections.h. Agents named in a request need not have
 * checked in yet: their command waits for their first check-in, and the
 * per-agent status says "known": false so a misspelt id shows. */
#include "inspections.h"

#include <errno.h>
#include <stdio.h>

#include "../lib/log.h"
#include "body.h"
#include "cases.h"
#include "store.h"

void inspections_create(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        const char *key = http_call_header(call, "Idempotency-Key");
        struct body_inspection in;
        cJSON *body = NULL, *view;
        char err[256];
        int64_t id;
        int r;

        if (body_check_idempotency_key(key, err, sizeof err) < 0) {
                http_reply_error(reply, 400, "%s", err);
                return;
        }
        r = body_parse_json(call->body, call->body_len, &body, err, sizeof err);
        if (r < 0) {
                http_reply_error(reply, r == -ENOMEM ? 500 : 400, "%s", err);
                return;
        }
        if (body_parse_inspection(body, &in, err, sizeof err) < 0) {
                http_reply_error(reply, 400, "%s", err);
                goto out;
        }
        r = store_inspection_create(store, key, &in, &id);
        if (r < 0) {
                cases_reply_store_error(reply, store, "creating an inspection", r);
                goto out;
        }
        if (store_inspection_get(store, id, &view) < 0) {
                cases_reply_store_error(reply, store, "reading an inspection", -EIO);
                goto out;
        }
        if (r > 0)
                log_notice("inspection %lld requested from %d agent(s), period %lld s", (long long)id,
                           cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(view, "agents")), (long long)in.seconds);
        http_reply_json(reply, r > 0 ? 201 : 200, view);
out:
        cJSON_Delete(body);
}

void inspections_list(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        cJSON *arr, *obj;
        int r;

        if (call->n_query > 0) {
                http_reply_error(reply, 400, "unknown query parameter %s (this endpoint takes none)",
                                 call->query[0].key);
                return;
        }
        r = store_inspection_list(store, &arr);
        if (r < 0) {
                cases_reply_store_error(reply, store, "listing inspections", r);
                return;
        }
        obj = cJSON_CreateObject();
        if (!obj || !cJSON_AddItemToObject(obj, "inspections", arr)) {
                cJSON_Delete(obj);
                cJSON_Delete(arr);
                http_reply_error(reply, 500, "out of memory");
                return;
        }
        http_reply_json(reply, 200, obj);
}

void inspections_get(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        cJSON *view;
        int64_t id;
        int r;

        if (cases_parse_id(call->params[0], &id) < 0) {
                http_reply_error(reply, 404, "no inspection with id %s", call->params[0]);
                return;
        }
        r = store_inspection_get(store, id, &view);
        if (r == -ENOENT) {
                http_reply_error(reply, 404, "no inspection with id %lld", (long long)id);
                return;
        }
        if (r < 0) {
                cases_reply_store_error(reply, store, "reading an inspection", r);
                return;
        }
        http_reply_json(reply, 200, view);
}
