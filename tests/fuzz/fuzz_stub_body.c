/* libFuzzer target: the stub's request-body validation (server-stub/body.c:
 * cases, updates, check-ins, commands, inspections, snapshots), its
 * fault-injection bodies and queue (server-stub/inject.c) and the
 * --escalation matrix file (server-stub/escalation.c).
 * Any byte string must be accepted or refused with a message, without crash
 * or leak; whatever is accepted must honour the documented caps. The first
 * byte picks nothing: every input goes through both validators, the
 * Idempotency-Key check, the Prefer header check and the RFC 3339 check. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server-stub/body.c"
#include "../../server-stub/escalation.c"
#include "../../server-stub/inject.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_string(const char *s, size_t max, int required)
{
        if (!s) {
                if (required)
                        abort();
                return;
        }
        if (strlen(s) > max || (required && !*s))
                abort();
}

/* Whatever inject_parse accepts is within its documented ranges, can be
 * queued, applied and listed. */
static void check_inject(const cJSON *root)
{
        struct inject_spec s, got;
        struct inject_queue *q;
        char err[256] = "";
        cJSON *j;

        if (inject_parse(root, &s, err, sizeof err) < 0) {
                if (!err[0])
                        abort();
                return;
        }
        if (s.action >= INJECT_ACTION_MAX || s.when >= INJECT_WHEN_MAX || s.count < 1 || s.count > INJECT_COUNT_MAX ||
            s.match[0] != '/' || strlen(s.match) > INJECT_MATCH_MAX ||
            (s.action == INJECT_STATUS &&
             (s.status < 100 || s.status > 599 || s.retry_after > INJECT_RETRY_AFTER_MAX)) ||
            (s.action == INJECT_DELAY && (s.delay_ms < 1 || s.delay_ms > INJECT_DELAY_MAX_SEC * 1000)))
                abort();
        q = inject_queue_new();
        if (!q)
                return;
        if (inject_queue_push(q, &s) != 0 || inject_queue_take(q, "/api/v1/_test/inject", &got))
                abort();
        if (inject_queue_take(q, s.match, &got) != true || got.action != s.action)
                abort();
        j = inject_queue_to_json(q);
        cJSON_Delete(j);
        inject_queue_free(q);
}

static void check_evidence(const cJSON *ev)
{
        const cJSON *e;
        int n = 0;

        if (!ev)
                return;
        if (!cJSON_IsArray(ev))
                abort();
        cJSON_ArrayForEach(e, ev)
        {
                if (!cJSON_IsObject(e) || ++n > BODY_MAX_EVIDENCE)
                        abort();
        }
}

/* The central side's bodies: whatever is accepted is within its caps. */
static void check_central(const cJSON *root)
{
        struct body_checkin *ci;
        struct body_command cmd;
        struct body_inspection in;
        char err[256] = "";

        ci = malloc(sizeof *ci);
        if (!ci)
                return;
        if (body_parse_checkin(root, "agent-1", ci, err, sizeof err) == 0) {
                if (ci->n_done > BODY_MAX_DONE || ci->interval_s < 0 || ci->interval_s > BODY_MAX_INTERVAL_S ||
                    (ci->agent_id && strcmp(ci->agent_id, "agent-1") != 0) ||
                    (ci->time && !body_is_rfc3339(ci->time)) || (ci->status && !cJSON_IsObject(ci->status)) ||
                    (ci->agent && !cJSON_IsObject(ci->agent)))
                        abort();
                for (size_t i = 0; i < ci->n_done; i++)
                        if (ci->done[i] < 0)
                                abort();
                check_string(ci->hostname, BODY_MAX_ID, 0);
        } else if (!err[0]) {
                abort();
        }
        free(ci);
        err[0] = '\0';
        if (body_parse_command(root, &cmd, err, sizeof err) == 0) {
                if (cmd.type == BODY_COMMAND_MAINTENANCE_START &&
                    (cmd.seconds < 1 || cmd.seconds > BODY_MAX_MAINTENANCE_SECONDS || !cmd.reason))
                        abort();
                if (cmd.type == BODY_COMMAND_INSPECT || cmd.type >= BODY_COMMAND_TYPE_MAX)
                        abort();
                check_string(cmd.reason, BODY_MAX_REASON, cmd.type == BODY_COMMAND_MAINTENANCE_START);
        } else if (!err[0]) {
                abort();
        }
        err[0] = '\0';
        if (body_parse_inspection(root, &in, err, sizeof err) == 0) {
                const cJSON *a;
                size_t n = 0;

                if (in.seconds < 1 || in.seconds > BODY_MAX_INSPECT_SECONDS || (in.all == (in.agents != NULL)))
                        abort();
                if (in.agents) {
                        cJSON_ArrayForEach(a, in.agents)
                        {
                                if (!cJSON_IsString(a) || !body_is_url_id(a->valuestring))
                                        abort();
                                n++;
                        }
                        if (n != in.n_agents || n < 1 || n > BODY_MAX_INSPECTION_AGENTS)
                                abort();
                }
        } else if (!err[0]) {
                abort();
        }
        err[0] = '\0';
        if (body_check_snapshot(root, err, sizeof err) == 0) {
                if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(root, "version")))
                        abort();
        } else if (!err[0]) {
                abort();
        }
}

/* The same bytes as an --escalation file: accepted steps are in range and
 * strictly increasing. */
static void check_escalation(const uint8_t *data, size_t size)
{
        struct escalation_matrix *m = malloc(sizeof *m);
        char err[256] = "";
        cJSON *j;

        if (!m)
                return;
        if (escalation_parse((const char *)data, size, m, err, sizeof err) == 0) {
                for (int l = 0; l < RULE_LEVEL_MAX; l++) {
                        if (m->n[l] > ESCALATION_MAX_STEPS)
                                abort();
                        for (size_t i = 0; i < m->n[l]; i++)
                                if (m->steps[l][i].after_s < 1 || m->steps[l][i].after_s > ESCALATION_MAX_AFTER_S ||
                                    !m->steps[l][i].step[0] ||
                                    (i > 0 && m->steps[l][i].after_s <= m->steps[l][i - 1].after_s))
                                        abort();
                }
                j = escalation_to_json(m);
                cJSON_Delete(j);
        } else if (!err[0]) {
                abort();
        }
        free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct body_case c;
        struct body_update u;
        cJSON *root = NULL;
        char err[256], *text;

        err[0] = '\0';
        if (body_parse_json((const char *)data, size, &root, err, sizeof err) == 0) {
                if (body_parse_case(root, &c, err, sizeof err) == 0) {
                        check_string(c.agent_id, BODY_MAX_ID, 1);
                        check_string(c.hostname, BODY_MAX_ID, 1);
                        check_string(c.fault_key, BODY_MAX_ID, 1);
                        check_string(c.rule, BODY_MAX_ID, 1);
                        check_string(c.title, BODY_MAX_TITLE, 1);
                        check_string(c.description, BODY_MAX_TEXT, 0);
                        if (c.level >= RULE_LEVEL_MAX || c.occurrences < 1 || !body_is_rfc3339(c.first_seen) ||
                            (c.last_seen && !body_is_rfc3339(c.last_seen)) || !cJSON_IsObject(c.agent) ||
                            (c.readings && !cJSON_IsObject(c.readings)))
                                abort();
                        check_evidence(c.evidence);
                } else if (!err[0]) {
                        abort();
                }
                err[0] = '\0';
                if (body_parse_update(root, &u, err, sizeof err) == 0) {
                        if (u.type >= BODY_UPDATE_TYPE_MAX ||
                            (u.type == BODY_UPDATE_OCCURRENCE && (!u.has_occurrences || u.occurrences < 1)) ||
                            (u.type == BODY_UPDATE_LEVEL && (!u.has_level || u.level >= RULE_LEVEL_MAX)) ||
                            (u.type == BODY_UPDATE_NOTE && !u.message))
                                abort();
                        check_string(u.reason, BODY_MAX_TEXT, 0);
                        check_string(u.message, BODY_MAX_TEXT, u.type == BODY_UPDATE_NOTE);
                        check_evidence(u.evidence);
                } else if (!err[0]) {
                        abort();
                }
                check_inject(root);
                check_central(root);
                cJSON_Delete(root);
        } else if (!err[0]) {
                abort();
        }

        /* The same bytes as a header value and as a timestamp. */
        text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';
        (void)body_check_idempotency_key(text, err, sizeof err);
        (void)body_prefers_minimal(text);
        {
                int64_t usec;

                if (body_rfc3339_to_usec(text, &usec) == 0 && !body_is_rfc3339(text))
                        abort();
                if (body_is_url_id(text) && (strlen(text) > BODY_MAX_ID || strchr(text, '/')))
                        abort();
        }
        check_escalation(data, size);
        free(text);
        return 0;
}
