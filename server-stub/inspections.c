/* inspections: see inspections.h. Agents named in a request need not have
 * checked in yet: their command waits for their first check-in, and the
 * per-agent status says "known": false so a misspelt id shows. */
#include "inspections.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "../lib/log.h"
#include "../lib/report.h"
#include "../lib/xalloc.h"
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

/* The inspection the path names, as its view (caller frees with
 * cJSON_Delete); false after answering 404 or the storage error. */
static bool inspection_of_path(struct store *store, const struct http_call *call, struct http_reply *reply,
                               int64_t *ret_id, cJSON **ret_view)
{
        int r;

        if (cases_parse_id(call->params[0], ret_id) < 0) {
                http_reply_error(reply, 404, "no inspection with id %s", call->params[0]);
                return false;
        }
        r = store_inspection_get(store, *ret_id, ret_view);
        if (r == -ENOENT) {
                http_reply_error(reply, 404, "no inspection with id %lld", (long long)*ret_id);
                return false;
        }
        if (r < 0) {
                cases_reply_store_error(reply, store, "reading an inspection", r);
                return false;
        }
        return true;
}

void inspections_get(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        cJSON *view;
        int64_t id;

        if (inspection_of_path(store, call, reply, &id, &view))
                http_reply_json(reply, 200, view);
}

void inspections_report(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        cJSON *view = NULL, *cases = NULL, *all = NULL;
        const cJSON *st, *e;
        cJSON **snaps = NULL;
        size_t n = 0, cap;
        char title[96], req[32], *html = NULL;
        int64_t id;
        int r;

        if (!inspection_of_path(store, call, reply, &id, &view))
                return;
        st = cJSON_GetObjectItemCaseSensitive(view, "status");
        cap = (size_t)cJSON_GetArraySize(st);
        snaps = xcalloc(cap ? cap : 1, sizeof *snaps);
        cases = cJSON_CreateArray();
        if (!snaps || !cases) {
                r = -ENOMEM;
                goto out;
        }
        snprintf(req, sizeof req, "%lld", (long long)id);
        /* every host whose snapshot arrived, with its open cases */
        cJSON_ArrayForEach(e, st)
        {
                const cJSON *agent = cJSON_GetObjectItemCaseSensitive(e, "agent_id");
                if (!cJSON_IsString(agent) || !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "snapshot")))
                        continue;
                cJSON *snap = NULL;
                if ((r = store_snapshot_get(store, agent->valuestring, req, &snap)) == -ENOENT)
                        continue;
                if (r < 0)
                        goto out;
                snaps[n++] = snap;
                struct store_filter f = {.agent_id = agent->valuestring, .status = "open", .fault_active = -1};
                if ((r = store_case_list(store, &f, &all)) < 0)
                        goto out;
                cJSON *c;
                while ((c = cJSON_DetachItemFromArray(all, 0)))
                        cJSON_AddItemToArray(cases, c);
                cJSON_Delete(all);
                all = NULL;
        }
        snprintf(title, sizeof title, "Inspection %lld", (long long)id);
        r = report_render_html((const cJSON *const *)snaps, n, cases, title, &html);
out:
        if (r == -EFBIG)
                http_reply_error(reply, 500, "the report would be larger than %u bytes", REPORT_HTML_MAX);
        else if (r < 0)
                cases_reply_store_error(reply, store, "building the report", r);
        else
                http_reply_html(reply, 200, html);
        for (size_t i = 0; i < n; i++)
                cJSON_Delete(snaps[i]);
        free(snaps);
        cJSON_Delete(cases);
        cJSON_Delete(all);
        cJSON_Delete(view);
}
