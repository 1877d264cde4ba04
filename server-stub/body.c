/* body: see body.h. The validators walk the tree once and fill a struct of
 * borrowed pointers; they never copy, so a failure needs no cleanup. Fields
 * the API does not know are ignored here (the caller stores the whole body);
 * optional fields given as JSON null count as absent, which is what a client
 * serialising an unset optional value naturally sends. */
#include "body.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const update_type_names[BODY_UPDATE_TYPE_MAX] = {
        [BODY_UPDATE_OCCURRENCE] = "occurrence", [BODY_UPDATE_LEVEL] = "level", [BODY_UPDATE_CLEARED] = "cleared",
        [BODY_UPDATE_REOPENED] = "reopened",     [BODY_UPDATE_NOTE] = "note",
};

const char *body_update_type_to_string(enum body_update_type t)
{
        return t < BODY_UPDATE_TYPE_MAX ? update_type_names[t] : "unknown";
}

int body_update_type_from_string(const char *s, enum body_update_type *ret)
{
        for (int i = 0; i < BODY_UPDATE_TYPE_MAX; i++)
                if (strcmp(s, update_type_names[i]) == 0) {
                        *ret = (enum body_update_type)i;
                        return 0;
                }
        return -EINVAL;
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errsize, const char *fmt, ...)
{
        va_list ap;

        if (err && errsize > 0) {
                va_start(ap, fmt);
                vsnprintf(err, errsize, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

static bool is_ws(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int body_parse_json(const char *text, size_t len, cJSON **ret, char *err, size_t errsize)
{
        const char *end = NULL;
        cJSON *root;

        if (len == 0)
                return fail(err, errsize, "body: expected a JSON object, got an empty body");
        root = cJSON_ParseWithLengthOpts(text, len, &end, false);
        if (!root) {
                size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
                return fail(err, errsize, "body: invalid JSON near byte %zu", at);
        }
        /* cJSON stops after the first value; anything but whitespace after it
         * is a malformed body, not something to ignore. */
        while (end && end < text + len && is_ws(*end))
                end++;
        if (end && end < text + len) {
                size_t at = (size_t)(end - text);
                cJSON_Delete(root);
                return fail(err, errsize, "body: unexpected data after the JSON value at byte %zu", at);
        }
        if (!cJSON_IsObject(root)) {
                cJSON_Delete(root);
                return fail(err, errsize, "body: expected a JSON object");
        }
        *ret = root;
        return 0;
}

/* A string member. Returns 0 with *ret set (NULL when absent and optional),
 * or -EINVAL with a message. prefix names the enclosing object ("agent."). */
static int get_string(const cJSON *obj, const char *prefix, const char *name, bool required, size_t max,
                      const char **ret, char *err, size_t errsize)
{
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
        size_t len;

        if (!item || cJSON_IsNull(item)) {
                if (required)
                        return fail(err, errsize, "%s%s: required", prefix, name);
                *ret = NULL;
                return 0;
        }
        if (!cJSON_IsString(item) || !item->valuestring)
                return fail(err, errsize, "%s%s: expected a string", prefix, name);
        len = strlen(item->valuestring);
        if (len > max)
                return fail(err, errsize, "%s%s: longer than %zu bytes", prefix, name, max);
        if (required && len == 0)
                return fail(err, errsize, "%s%s: must not be empty", prefix, name);
        *ret = item->valuestring;
        return 0;
}

static int get_time(const cJSON *obj, const char *name, bool required, const char **ret, char *err, size_t errsize)
{
        const char *s;
        int r;

        r = get_string(obj, "", name, required, BODY_MAX_TIME, &s, err, errsize);
        if (r < 0)
                return r;
        if (s && !body_is_rfc3339(s))
                return fail(err, errsize, "%s: expected an RFC 3339 date-time such as 2026-11-25T10:00:00Z", name);
        *ret = s;
        return 0;
}

static int get_level(const cJSON *obj, bool required, bool *ret_has, enum rule_level *ret, char *err, size_t errsize)
{
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, "level");
        enum rule_level level;

        if (!item || cJSON_IsNull(item)) {
                if (required)
                        return fail(err, errsize, "level: required");
                *ret_has = false;
                return 0;
        }
        if (!cJSON_IsString(item) || !item->valuestring || rule_level_from_string(item->valuestring, &level) < 0)
                return fail(err, errsize, "level: expected one of P1..P5");
        *ret_has = true;
        *ret = level;
        return 0;
}

static int get_occurrences(const cJSON *obj, bool required, bool *ret_has, int64_t *ret, char *err, size_t errsize)
{
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, "occurrences");
        double v;

        if (!item || cJSON_IsNull(item)) {
                if (required)
                        return fail(err, errsize, "occurrences: required");
                *ret_has = false;
                return 0;
        }
        if (!cJSON_IsNumber(item))
                return fail(err, errsize, "occurrences: expected an integer >= 1");
        v = item->valuedouble;
        if (!isfinite(v) || v != floor(v) || v < 1 || v > (double)BODY_MAX_OCCURRENCES)
                return fail(err, errsize, "occurrences: expected an integer >= 1");
        *ret_has = true;
        *ret = (int64_t)v;
        return 0;
}

static int get_object(const cJSON *obj, const char *name, const cJSON **ret, char *err, size_t errsize)
{
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);

        if (!item || cJSON_IsNull(item)) {
                *ret = NULL;
                return 0;
        }
        if (!cJSON_IsObject(item))
                return fail(err, errsize, "%s: expected an object", name);
        *ret = item;
        return 0;
}

static int get_evidence(const cJSON *obj, const cJSON **ret, char *err, size_t errsize)
{
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, "evidence");
        const cJSON *e;
        size_t n = 0;

        if (!item || cJSON_IsNull(item)) {
                *ret = NULL;
                return 0;
        }
        if (!cJSON_IsArray(item))
                return fail(err, errsize, "evidence: expected an array of objects");
        cJSON_ArrayForEach(e, item)
        {
                if (n >= BODY_MAX_EVIDENCE)
                        return fail(err, errsize, "evidence: more than %d entries", BODY_MAX_EVIDENCE);
                if (!cJSON_IsObject(e))
                        return fail(err, errsize, "evidence[%zu]: expected an object", n);
                n++;
        }
        *ret = item;
        return 0;
}

int body_parse_case(const cJSON *root, struct body_case *ret, char *err, size_t errsize)
{
        struct body_case c = {0};
        const cJSON *agent;
        const char *ignored;
        bool has;
        int r;

        if (!cJSON_IsObject(root))
                return fail(err, errsize, "body: expected a JSON object");
        agent = cJSON_GetObjectItemCaseSensitive(root, "agent");
        if (!agent || cJSON_IsNull(agent))
                return fail(err, errsize, "agent: required");
        if (!cJSON_IsObject(agent))
                return fail(err, errsize, "agent: expected an object");
        c.agent = agent;
        if ((r = get_string(agent, "agent.", "id", true, BODY_MAX_ID, &c.agent_id, err, errsize)) < 0 ||
            (r = get_string(agent, "agent.", "hostname", true, BODY_MAX_ID, &c.hostname, err, errsize)) < 0 ||
            (r = get_string(agent, "agent.", "machine_id", false, BODY_MAX_ID, &ignored, err, errsize)) < 0 ||
            (r = get_string(agent, "agent.", "os", false, BODY_MAX_ID, &ignored, err, errsize)) < 0 ||
            (r = get_string(agent, "agent.", "kernel", false, BODY_MAX_ID, &ignored, err, errsize)) < 0 ||
            (r = get_string(agent, "agent.", "version", false, BODY_MAX_ID, &ignored, err, errsize)) < 0)
                return r;
        if ((r = get_string(root, "", "fault_key", true, BODY_MAX_ID, &c.fault_key, err, errsize)) < 0 ||
            (r = get_level(root, true, &has, &c.level, err, errsize)) < 0 ||
            (r = get_string(root, "", "rule", true, BODY_MAX_ID, &c.rule, err, errsize)) < 0 ||
            (r = get_string(root, "", "title", true, BODY_MAX_TITLE, &c.title, err, errsize)) < 0 ||
            (r = get_string(root, "", "description", false, BODY_MAX_TEXT, &c.description, err, errsize)) < 0 ||
            (r = get_time(root, "first_seen", true, &c.first_seen, err, errsize)) < 0 ||
            (r = get_time(root, "last_seen", false, &c.last_seen, err, errsize)) < 0 ||
            (r = get_occurrences(root, true, &has, &c.occurrences, err, errsize)) < 0 ||
            (r = get_object(root, "readings", &c.readings, err, errsize)) < 0 ||
            (r = get_evidence(root, &c.evidence, err, errsize)) < 0)
                return r;
        *ret = c;
        return 0;
}

int body_parse_update(const cJSON *root, struct body_update *ret, char *err, size_t errsize)
{
        struct body_update u = {0};
        const cJSON *type;
        int r;

        if (!cJSON_IsObject(root))
                return fail(err, errsize, "body: expected a JSON object");
        type = cJSON_GetObjectItemCaseSensitive(root, "type");
        if (!type || cJSON_IsNull(type))
                return fail(err, errsize, "type: required");
        if (!cJSON_IsString(type) || !type->valuestring || body_update_type_from_string(type->valuestring, &u.type) < 0)
                return fail(err, errsize, "type: expected one of occurrence, level, cleared, reopened, note");
        if ((r = get_occurrences(root, u.type == BODY_UPDATE_OCCURRENCE, &u.has_occurrences, &u.occurrences, err,
                                 errsize)) < 0 ||
            (r = get_time(root, "last_seen", false, &u.last_seen, err, errsize)) < 0 ||
            (r = get_level(root, u.type == BODY_UPDATE_LEVEL, &u.has_level, &u.level, err, errsize)) < 0 ||
            (r = get_string(root, "", "reason", false, BODY_MAX_TEXT, &u.reason, err, errsize)) < 0 ||
            (r = get_string(root, "", "message", u.type == BODY_UPDATE_NOTE, BODY_MAX_TEXT, &u.message, err, errsize)) <
                    0 ||
            (r = get_object(root, "readings", &u.readings, err, errsize)) < 0 ||
            (r = get_evidence(root, &u.evidence, err, errsize)) < 0)
                return r;
        *ret = u;
        return 0;
}

/* Reads exactly n digits at *p into *ret and advances *p. */
static bool digits(const char **p, int n, int *ret)
{
        int v = 0;

        for (int i = 0; i < n; i++) {
                char c = (*p)[i];
                if (c < '0' || c > '9')
                        return false;
                v = v * 10 + (c - '0');
        }
        *p += n;
        *ret = v;
        return true;
}

static int days_in_month(int year, int month)
{
        static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

        return month == 2 && leap ? 29 : days[month - 1];
}

bool body_is_rfc3339(const char *s)
{
        int year, month, day, hour, min, sec, oh, om;
        const char *p = s;

        if (!s)
                return false;
        if (!digits(&p, 4, &year) || *p++ != '-' || !digits(&p, 2, &month) || *p++ != '-' || !digits(&p, 2, &day))
                return false;
        if (*p != 'T' && *p != 't')
                return false;
        p++;
        if (!digits(&p, 2, &hour) || *p++ != ':' || !digits(&p, 2, &min) || *p++ != ':' || !digits(&p, 2, &sec))
                return false;
        if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) || hour > 23 || min > 59 || sec > 60)
                return false;
        if (*p == '.') {
                p++;
                if (*p < '0' || *p > '9')
                        return false;
                while (*p >= '0' && *p <= '9')
                        p++;
        }
        if (*p == 'Z' || *p == 'z')
                return p[1] == '\0';
        if (*p != '+' && *p != '-')
                return false;
        p++;
        if (!digits(&p, 2, &oh) || *p++ != ':' || !digits(&p, 2, &om))
                return false;
        return *p == '\0' && oh <= 23 && om <= 59;
}

int body_check_idempotency_key(const char *key, char *err, size_t errsize)
{
        size_t len;

        if (!key)
                return fail(err, errsize, "Idempotency-Key: header required");
        len = strlen(key);
        if (len == 0)
                return fail(err, errsize, "Idempotency-Key: must not be empty");
        if (len > BODY_MAX_IDEMPOTENCY_KEY)
                return fail(err, errsize, "Idempotency-Key: longer than %d bytes", BODY_MAX_IDEMPOTENCY_KEY);
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e)
                        return fail(err, errsize, "Idempotency-Key: only printable ASCII is allowed");
        return 0;
}
