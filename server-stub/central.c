/* central: see central.h.
 *
 * The "not reporting" case is created through the same store function as an
 * agent's case, with an Idempotency-Key made of the agent id and the time of
 * its last check-in: a stub that dies between opening the case and linking
 * it to the agent finds the same case again on the next tick instead of
 * opening a second one. The "cleared" update's key is likewise fixed per
 * case. A later silence opens a new case (a new outage is a new incident with
 * its own escalation clock; the old case stays for people to close). */
#include "central.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/event.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "body.h"
#include "store.h"

#define CLOCK_MAX_ADVANCE_S (3660LL * 86400)

/* Opens the "not reporting" case of one overdue agent view. Returns 0 or a
 * negative errno (logged). */
static int open_not_reporting(struct store *store, const cJSON *a)
{
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "id"));
        const char *host = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "hostname"));
        const char *last = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(a, "last_checkin"));
        const cJSON *identity = cJSON_GetObjectItemCaseSensitive(a, "agent");
        double interval = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(a, "interval_s"));
        int n = store_deadman_intervals(store);
        struct body_case c = {0};
        char *fault_key = NULL, *title = NULL, *desc = NULL, *key = NULL;
        char now[32];
        cJSON *request = NULL;
        int64_t case_id = 0;
        int r = -ENOMEM;

        if (!id || !host || !last)
                return -EINVAL;
        time_format_rfc3339(store_now_usec(store), now, sizeof now);
        fault_key = xasprintf("central:not-reporting:%s", id);
        title = xasprintf("Host %s not reporting (agent %s silent since %s)", host, id, last);
        desc = xasprintf("No check-in from agent %s for more than %d check-in intervals of %.0f s; the central side"
                         " cannot tell a crashed or powered-off host from a cut network.",
                         id, n, isnan(interval) ? 0.0 : interval);
        key = xasprintf("central/not-reporting/%s/%s", id, last);
        request = cJSON_CreateObject();
        if (!fault_key || !title || !desc || !key || !request)
                goto out;
        /* The request as stored: the case's own fields, plus what the
         * switch saw (shown under "extra"). */
        if (!cJSON_AddStringToObject(request, "source", "central") ||
            !cJSON_AddStringToObject(request, "silent_since", last) ||
            !cJSON_AddNumberToObject(request, "interval_s", isnan(interval) ? 0 : interval) ||
            !cJSON_AddNumberToObject(request, "deadman_intervals", n))
                goto out;
        c.agent_id = id;
        c.hostname = host;
        c.fault_key = fault_key;
        c.level = RULE_LEVEL_P1;
        c.rule = "central-not-reporting";
        c.title = title;
        c.description = desc;
        c.first_seen = now;
        c.occurrences = 1;
        c.agent = cJSON_IsObject(identity) ? identity : NULL;
        r = store_case_create(store, key, &c, request, &case_id);
        if (r >= 0)
                r = store_agent_set_deadman(store, id, case_id);
        if (r < 0) {
                log_err("opening the not-reporting case of agent %s: %s", id,
                        r == -ENOMEM ? "out of memory" : store_errmsg(store));
                goto out;
        }
        log_notice("case %lld opened: P1 agent %s on %s not reporting (silent since %s)", (long long)case_id, id, host,
                   last);
out:
        free(fault_key);
        free(title);
        free(desc);
        free(key);
        cJSON_Delete(request);
        return r < 0 ? r : 0;
}

static void reached(void *arg, int64_t case_id, const char *level, const struct escalation_step *step,
                    const char *title)
{
        (void)arg;
        log_notice("case %lld (%s) escalation due after %llds: %s (%s)", (long long)case_id, level,
                   (long long)step->after_s, step->step, title);
}

void central_tick(struct store *store)
{
        cJSON *overdue = NULL, *a;
        int r;

        r = store_agent_overdue(store, &overdue);
        if (r < 0)
                log_err("dead-man's switch: listing agents: %s", r == -ENOMEM ? "out of memory" : store_errmsg(store));
        else {
                cJSON_ArrayForEach(a, overdue)
                {
                        (void)open_not_reporting(store, a);
                }
                cJSON_Delete(overdue);
        }
        r = store_escalation_tick(store, reached, NULL);
        if (r < 0)
                log_err("escalation clock: %s", r == -ENOMEM ? "out of memory" : store_errmsg(store));
}

int central_agent_returned(struct store *store, const char *agent_id, int64_t case_id)
{
        struct body_update u = {.type = BODY_UPDATE_CLEARED};
        char key[64], now[32];
        cJSON *body = NULL;
        int64_t update_id;
        char *msg = NULL;
        int r = -ENOMEM;

        time_format_rfc3339(store_now_usec(store), now, sizeof now);
        snprintf(key, sizeof key, "central/reporting-again/%lld", (long long)case_id);
        msg = xasprintf("agent %s checked in again at %s", agent_id, now);
        body = cJSON_CreateObject();
        if (!msg || !body || !cJSON_AddStringToObject(body, "type", "cleared") ||
            !cJSON_AddStringToObject(body, "message", msg) || !cJSON_AddStringToObject(body, "source", "central"))
                goto out;
        u.message = msg;
        r = store_update_add(store, case_id, key, &u, body, &update_id);
        if (r == -ENOENT)
                r = 0; /* the case is gone (a database edited by hand): nothing left to clear */
        if (r >= 0)
                r = store_agent_clear_deadman(store, agent_id);
        if (r >= 0)
                log_notice("case %lld: agent %s reporting again, cleared", (long long)case_id, agent_id);
out:
        if (r < 0)
                log_err("clearing the not-reporting case %lld of agent %s: %s", (long long)case_id, agent_id,
                        r == -ENOMEM ? "out of memory" : store_errmsg(store));
        free(msg);
        cJSON_Delete(body);
        return r < 0 ? r : 0;
}

static cJSON *clock_view(struct store *store)
{
        cJSON *j = cJSON_CreateObject();
        char now[32];

        time_format_rfc3339(store_now_usec(store), now, sizeof now);
        if (j && (!cJSON_AddNumberToObject(j, "offset_s", (double)store_clock_offset_usec(store) / 1e6) ||
                  !cJSON_AddStringToObject(j, "now", now))) {
                cJSON_Delete(j);
                j = NULL;
        }
        return j;
}

void central_clock_get(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        (void)call;
        http_reply_json(reply, 200, clock_view(store));
}

void central_clock_advance(struct store *store, const struct http_call *call, struct http_reply *reply)
{
        const cJSON *adv, *m;
        cJSON *body = NULL;
        char err[256];
        double v;
        int r;

        r = body_parse_json(call->body, call->body_len, &body, err, sizeof err);
        if (r < 0) {
                http_reply_error(reply, r == -ENOMEM ? 500 : 400, "%s", err);
                return;
        }
        cJSON_ArrayForEach(m, body)
        {
                if (strcmp(m->string, "advance_s") != 0) {
                        http_reply_error(reply, 400, "%.64s: unknown field (expected advance_s)", m->string);
                        goto out;
                }
        }
        adv = cJSON_GetObjectItemCaseSensitive(body, "advance_s");
        v = cJSON_IsNumber(adv) ? adv->valuedouble : NAN;
        if (!isfinite(v) || v <= 0 || v > (double)CLOCK_MAX_ADVANCE_S) {
                http_reply_error(reply, 400, "advance_s: expected a number of seconds > 0 and <= %lld",
                                 (long long)CLOCK_MAX_ADVANCE_S);
                goto out;
        }
        store_clock_advance(store, (int64_t)llround(v * 1e6));
        log_notice("test clock advanced by %.3f s (offset now %.3f s)", v,
                   (double)store_clock_offset_usec(store) / 1e6);
        central_tick(store);
        http_reply_json(reply, 200, clock_view(store));
out:
        cJSON_Delete(body);
}
