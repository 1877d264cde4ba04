/* libFuzzer target: the stub's request-body validation (server-stub/body.c)
 * and its fault-injection bodies and queue (server-stub/inject.c).
 * Any byte string must be accepted or refused with a message, without crash
 * or leak; whatever is accepted must honour the documented caps. The first
 * byte picks nothing: every input goes through both validators, the
 * Idempotency-Key check and the RFC 3339 check. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server-stub/body.c"
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
        (void)body_is_rfc3339(text);
        free(text);
        return 0;
}
