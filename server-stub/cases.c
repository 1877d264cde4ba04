/* cases: see cases.h. The order of checks in a POST is: Idempotency-Key,
 * JSON syntax, body fields, then the store (which answers "known key" or
 * "no such case"). A replayed request therefore still has to be well formed;
 * a retry sends the same body, so that costs a client nothing. */
#include "cases.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "body.h"
#include "store.h"

enum {
        STATUS_OK = 200,
        STATUS_CREATED = 201,
        STATUS_BAD_REQUEST = 400,
        STATUS_NOT_FOUND = 404,
        STATUS_INTERNAL = 500,
};

/* Answers a store failure: 500 for storage errors (logged here, once). */
void cases_reply_store_error(struct http_reply *reply, struct store *store, const char *what, int r)
{
        if (r == -ENOMEM) {
                log_err("%s: out of memory", what);
                http_reply_error(reply, STATUS_INTERNAL, "out of memory");
                return;
        }
        log_err("%s: %s", what, store_errmsg(store));
        http_reply_error(reply, STATUS_INTERNAL, "internal error: storage failure");
}

/* Parses a case id path segment: decimal digits only, 1 .. 2^53-1.
 * Returns 0 or -EINVAL. */
int cases_parse_id(const char *s, int64_t *ret)
{
        int64_t v = 0;
        size_t n = 0;

        if (!s || !*s)
                return -EINVAL;
        for (; s[n]; n++) {
                if (s[n] < '0' || s[n] > '9' || n >= 16)
                        return -EINVAL;
                v = v * 10 + (s[n] - '0');
        }
        if (v < 1)
                return -EINVAL;
        *ret = v;
        return 0;
}

void cases_list(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        struct store_filter f = {.fault_active = -1};
        cJSON *arr, *obj;
        int r;

        for (size_t i = 0; i < call->n_query; i++) {
                const char *k = call->query[i].key, *v = call->query[i].value;

                if (!v || !*v) {
                        http_reply_error(reply, STATUS_BAD_REQUEST, "%s: expected a value", k);
                        return;
                }
                if (strcmp(k, "agent_id") == 0)
                        f.agent_id = v;
                else if (strcmp(k, "fault_key") == 0)
                        f.fault_key = v;
                else if (strcmp(k, "status") == 0) {
                        if (strcmp(v, "open") != 0 && strcmp(v, "closed") != 0) {
                                http_reply_error(reply, STATUS_BAD_REQUEST, "status: expected open or closed");
                                return;
                        }
                        f.status = v;
                } else if (strcmp(k, "fault_active") == 0) {
                        if (strcmp(v, "true") == 0)
                                f.fault_active = 1;
                        else if (strcmp(v, "false") == 0)
                                f.fault_active = 0;
                        else {
                                http_reply_error(reply, STATUS_BAD_REQUEST, "fault_active: expected true or false");
                                return;
                        }
                } else {
                        http_reply_error(reply, STATUS_BAD_REQUEST,
                                         "unknown query parameter %s (known: agent_id, fault_key, status, "
                                         "fault_active)",
                                         k);
                        return;
                }
        }
        r = store_case_list(store, &f, &arr);
        if (r < 0) {
                cases_reply_store_error(reply, store, "listing cases", r);
                return;
        }
        obj = cJSON_CreateObject();
        if (!obj || !cJSON_AddItemToObject(obj, "cases", arr)) {
                cJSON_Delete(obj);
                cJSON_Delete(arr);
                http_reply_error(reply, STATUS_INTERNAL, "out of memory");
                return;
        }
        http_reply_json(reply, STATUS_OK, obj);
}

/* Reads Idempotency-Key and the JSON body. Returns 0 with both, or replies
 * 400 and returns -EINVAL (-ENOMEM: replied 500). */
static int read_request(const struct http_call *call, struct http_reply *reply, const char **ret_key, cJSON **ret_body)
{
        const char *key = http_call_header(call, "Idempotency-Key");
        char err[256];
        int r;

        if (body_check_idempotency_key(key, err, sizeof err) < 0) {
                http_reply_error(reply, STATUS_BAD_REQUEST, "%s", err);
                return -EINVAL;
        }
        r = body_parse_json(call->body, call->body_len, ret_body, err, sizeof err);
        if (r < 0) {
                http_reply_error(reply, r == -ENOMEM ? STATUS_INTERNAL : STATUS_BAD_REQUEST, "%s", err);
                return r;
        }
        *ret_key = key;
        return 0;
}

/* The answer to "Prefer: return=minimal": {"id": id} (and case_id for an
 * update), marked with Preference-Applied. */
static void reply_minimal(struct http_reply *reply, unsigned status, int64_t id, int64_t case_id)
{
        cJSON *o = cJSON_CreateObject();

        if (!o || !cJSON_AddNumberToObject(o, "id", (double)id) ||
            (case_id && !cJSON_AddNumberToObject(o, "case_id", (double)case_id))) {
                cJSON_Delete(o);
                http_reply_error(reply, STATUS_INTERNAL, "out of memory");
                return;
        }
        reply->preference_applied = "return=minimal";
        http_reply_json(reply, status, o);
}

void cases_create(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        struct body_case c;
        const char *key;
        cJSON *body = NULL, *view = NULL;
        char err[256];
        int64_t id;
        int r, created;

        if (read_request(call, reply, &key, &body) < 0)
                return;
        if (body_parse_case(body, &c, err, sizeof err) < 0) {
                http_reply_error(reply, STATUS_BAD_REQUEST, "%s", err);
                goto out;
        }
        r = store_case_create(store, key, &c, body, &id);
        if (r < 0) {
                cases_reply_store_error(reply, store, "creating case", r);
                goto out;
        }
        created = r;
        if (created)
                log_notice("case %lld opened: %s %s on %s: %s", (long long)id, rule_level_to_string(c.level),
                           c.fault_key, c.hostname, c.title);
        else
                log_debug("case %lld: Idempotency-Key %s seen before, not duplicated", (long long)id, key);
        if (body_prefers_minimal(http_call_header(call, "Prefer"))) {
                reply_minimal(reply, created ? STATUS_CREATED : STATUS_OK, id, 0);
                goto out;
        }
        r = store_case_get(store, id, false, &view);
        if (r < 0) {
                cases_reply_store_error(reply, store, "reading case", r);
                goto out;
        }
        http_reply_json(reply, created ? STATUS_CREATED : STATUS_OK, view);
out:
        cJSON_Delete(body);
}

void cases_get(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        cJSON *view;
        int64_t id;
        int r;

        if (cases_parse_id(call->params[0], &id) < 0) {
                http_reply_error(reply, STATUS_NOT_FOUND, "no case with id %s", call->params[0]);
                return;
        }
        r = store_case_get(store, id, true, &view);
        if (r == -ENOENT) {
                http_reply_error(reply, STATUS_NOT_FOUND, "no case with id %lld", (long long)id);
                return;
        }
        if (r < 0) {
                cases_reply_store_error(reply, store, "reading case", r);
                return;
        }
        http_reply_json(reply, STATUS_OK, view);
}

void cases_update(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        struct body_update u;
        const char *key;
        cJSON *body = NULL, *view = NULL;
        char err[256];
        int64_t case_id, id;
        int r, created;

        if (cases_parse_id(call->params[0], &case_id) < 0) {
                http_reply_error(reply, STATUS_NOT_FOUND, "no case with id %s", call->params[0]);
                return;
        }
        if (read_request(call, reply, &key, &body) < 0)
                return;
        if (body_parse_update(body, &u, err, sizeof err) < 0) {
                http_reply_error(reply, STATUS_BAD_REQUEST, "%s", err);
                goto out;
        }
        r = store_update_add(store, case_id, key, &u, body, &id);
        if (r == -ENOENT) {
                http_reply_error(reply, STATUS_NOT_FOUND, "no case with id %lld", (long long)case_id);
                goto out;
        }
        if (r < 0) {
                cases_reply_store_error(reply, store, "adding update", r);
                goto out;
        }
        created = r;
        if (created)
                log_notice("case %lld: %s update %lld", (long long)case_id, body_update_type_to_string(u.type),
                           (long long)id);
        else
                log_debug("case %lld: update Idempotency-Key %s seen before, not applied again", (long long)case_id,
                          key);
        if (body_prefers_minimal(http_call_header(call, "Prefer"))) {
                reply_minimal(reply, created ? STATUS_CREATED : STATUS_OK, id, case_id);
                goto out;
        }
        r = store_update_get(store, id, &view);
        if (r < 0) {
                cases_reply_store_error(reply, store, "reading update", r);
                goto out;
        }
        http_reply_json(reply, created ? STATUS_CREATED : STATUS_OK, view);
out:
        cJSON_Delete(body);
}
