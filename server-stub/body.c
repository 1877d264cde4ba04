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
#include <strings.h>

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

/* Preferences are comma-separated, each "name[=value]" with optional
 * ";parameters"; names and this value compare case-insensitively, and the
 * value may be quoted. */
bool body_prefers_minimal(const char *p)
{
        while (p && *p) {
                size_t len = strcspn(p, ","), n;
                const char *e = p, *v;

                while (e < p + len && (*e == ' ' || *e == '\t'))
                        e++;
                n = strcspn(e, ";,");
                if (n >= 6 && strncasecmp(e, "return", 6) == 0) {
                        v = e + 6;
                        while (*v == ' ' || *v == '\t')
                                v++;
                        if (*v == '=') {
                                v++;
                                while (*v == ' ' || *v == '\t')
                                        v++;
                                if (*v == '"')
                                        v++;
                                if (strncasecmp(v, "minimal", 7) == 0 && strchr("\" \t;,", v[7]))
                                        return true;
                        }
                }
                p += len;
                if (*p == ',')
                        p++;
        }
        return false;
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

bool body_is_url_id(const char *s)
{
        size_t len;

        if (!s)
                return false;
        len = strlen(s);
        if (len == 0 || len > BODY_MAX_ID || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
                return false;
        return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == len;
}

/* Days from 1970-01-01 to year-month-day (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
        int64_t era, yoe, doy, doe;

        y -= m <= 2;
        era = (y >= 0 ? y : y - 399) / 400;
        yoe = y - era * 400;
        doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

int body_rfc3339_to_usec(const char *s, int64_t *ret)
{
        int year = 0, month = 1, day = 1, hour = 0, min = 0, sec = 0, oh = 0, om = 0;
        int64_t frac = 0, scale = 100000, t;
        const char *p = s;
        int sign = 0;

        if (!body_is_rfc3339(s))
                return -EINVAL;
        /* body_is_rfc3339 has checked the shape; the digits are read again. */
        digits(&p, 4, &year);
        p++;
        digits(&p, 2, &month);
        p++;
        digits(&p, 2, &day);
        p++;
        digits(&p, 2, &hour);
        p++;
        digits(&p, 2, &min);
        p++;
        digits(&p, 2, &sec);
        if (*p == '.') {
                for (p++; *p >= '0' && *p <= '9'; p++) {
                        frac += (*p - '0') * scale;
                        scale /= 10;
                }
        }
        if (*p == '+' || *p == '-') {
                sign = *p == '+' ? 1 : -1;
                p++;
                digits(&p, 2, &oh);
                p++;
                digits(&p, 2, &om);
        }
        t = days_from_civil(year, month, day) * 86400 + hour * 3600 + min * 60 + sec;
        t -= sign * (oh * 3600 + om * 60);
        *ret = t * 1000000 + frac;
        return 0;
}

/* An integer member in lo..hi. Returns 1 (set), 0 (absent or null) or -EINVAL. */
static int get_int_range(const cJSON *obj, const char *name, int64_t lo, int64_t hi, int64_t *ret, char *err,
                         size_t errsize)
{
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
        double v;

        if (!item || cJSON_IsNull(item))
                return 0;
        v = cJSON_IsNumber(item) ? item->valuedouble : NAN;
        if (!isfinite(v) || v != floor(v) || v < (double)lo || v > (double)hi)
                return fail(err, errsize, "%s: expected an integer %lld..%lld", name, (long long)lo, (long long)hi);
        *ret = (int64_t)v;
        return 1;
}

/* A command id as the check-in answer gives it ("3") or as a number. */
static int get_command_id(const cJSON *item, size_t index, int64_t *ret, char *err, size_t errsize)
{
        int64_t v = 0;

        if (cJSON_IsString(item) && item->valuestring) {
                const char *s = item->valuestring;
                size_t n = strlen(s);

                if (n == 0 || n > BODY_MAX_COMMAND_ID || strspn(s, "0123456789") != n)
                        return fail(err, errsize, "done[%zu]: expected a command id (a string of digits)", index);
                for (size_t i = 0; i < n; i++)
                        v = v * 10 + (s[i] - '0');
        } else if (cJSON_IsNumber(item) && isfinite(item->valuedouble) &&
                   item->valuedouble == floor(item->valuedouble) && item->valuedouble >= 0 &&
                   item->valuedouble <= (double)BODY_MAX_OCCURRENCES) {
                v = (int64_t)item->valuedouble;
        } else {
                return fail(err, errsize, "done[%zu]: expected a command id (a string of digits)", index);
        }
        *ret = v;
        return 0;
}

int body_parse_checkin(const cJSON *root, const char *path_id, struct body_checkin *ret, char *err, size_t errsize)
{
        struct body_checkin c;
        const cJSON *agent, *done, *item;
        const char *ignored;
        int r;

        memset(&c, 0, sizeof c);
        if (!cJSON_IsObject(root))
                return fail(err, errsize, "body: expected a JSON object");
        agent = cJSON_GetObjectItemCaseSensitive(root, "agent");
        if (agent && !cJSON_IsNull(agent)) {
                if (!cJSON_IsObject(agent))
                        return fail(err, errsize, "agent: expected an object");
                c.agent = agent;
                if ((r = get_string(agent, "agent.", "id", false, BODY_MAX_ID, &c.agent_id, err, errsize)) < 0 ||
                    (r = get_string(agent, "agent.", "hostname", false, BODY_MAX_ID, &c.hostname, err, errsize)) < 0 ||
                    (r = get_string(agent, "agent.", "machine_id", false, BODY_MAX_ID, &ignored, err, errsize)) < 0 ||
                    (r = get_string(agent, "agent.", "os", false, BODY_MAX_ID, &ignored, err, errsize)) < 0 ||
                    (r = get_string(agent, "agent.", "kernel", false, BODY_MAX_ID, &ignored, err, errsize)) < 0 ||
                    (r = get_string(agent, "agent.", "version", false, BODY_MAX_ID, &ignored, err, errsize)) < 0)
                        return r;
                if (c.agent_id && strcmp(c.agent_id, path_id) != 0)
                        return fail(err, errsize, "agent.id: does not match the agent id in the path");
                if (c.hostname && !*c.hostname)
                        return fail(err, errsize, "agent.hostname: must not be empty");
        }
        if ((r = get_time(root, "time", false, &c.time, err, errsize)) < 0 ||
            (r = get_int_range(root, "interval_s", 1, BODY_MAX_INTERVAL_S, &c.interval_s, err, errsize)) < 0 ||
            (r = get_object(root, "status", &c.status, err, errsize)) < 0)
                return r;
        done = cJSON_GetObjectItemCaseSensitive(root, "done");
        if (done && !cJSON_IsNull(done)) {
                if (!cJSON_IsArray(done))
                        return fail(err, errsize, "done: expected an array of command ids");
                cJSON_ArrayForEach(item, done)
                {
                        if (c.n_done >= BODY_MAX_DONE)
                                return fail(err, errsize, "done: more than %d entries", BODY_MAX_DONE);
                        if ((r = get_command_id(item, c.n_done, &c.done[c.n_done], err, errsize)) < 0)
                                return r;
                        c.n_done++;
                }
        }
        *ret = c;
        return 0;
}

static const char *const command_type_names[BODY_COMMAND_TYPE_MAX] = {
        [BODY_COMMAND_INSPECT] = "inspect",
        [BODY_COMMAND_MAINTENANCE_START] = "maintenance-start",
        [BODY_COMMAND_MAINTENANCE_END] = "maintenance-end",
};

const char *body_command_type_to_string(enum body_command_type t)
{
        return t < BODY_COMMAND_TYPE_MAX ? command_type_names[t] : "unknown";
}

static bool is_printable(const char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

int body_parse_command(const cJSON *root, struct body_command *ret, char *err, size_t errsize)
{
        struct body_command c = {0};
        const cJSON *type;
        int r;

        if (!cJSON_IsObject(root))
                return fail(err, errsize, "body: expected a JSON object");
        type = cJSON_GetObjectItemCaseSensitive(root, "type");
        if (!type || cJSON_IsNull(type))
                return fail(err, errsize, "type: required");
        if (!cJSON_IsString(type) || !type->valuestring)
                return fail(err, errsize, "type: expected maintenance-start or maintenance-end");
        if (strcmp(type->valuestring, "maintenance-start") == 0) {
                c.type = BODY_COMMAND_MAINTENANCE_START;
                r = get_int_range(root, "seconds", 1, BODY_MAX_MAINTENANCE_SECONDS, &c.seconds, err, errsize);
                if (r < 0)
                        return r;
                if (r == 0)
                        return fail(err, errsize, "seconds: required");
                if ((r = get_string(root, "", "reason", true, BODY_MAX_REASON, &c.reason, err, errsize)) < 0)
                        return r;
                if (!is_printable(c.reason))
                        return fail(err, errsize, "reason: control characters are not allowed");
        } else if (strcmp(type->valuestring, "maintenance-end") == 0) {
                c.type = BODY_COMMAND_MAINTENANCE_END;
                if (cJSON_GetObjectItemCaseSensitive(root, "seconds") ||
                    cJSON_GetObjectItemCaseSensitive(root, "reason"))
                        return fail(err, errsize, "maintenance-end: takes no seconds or reason");
        } else if (strcmp(type->valuestring, "inspect") == 0) {
                return fail(err, errsize, "type: inspect commands are queued by POST /api/v1/inspections");
        } else {
                return fail(err, errsize, "type: expected maintenance-start or maintenance-end");
        }
        *ret = c;
        return 0;
}

int body_parse_inspection(const cJSON *root, struct body_inspection *ret, char *err, size_t errsize)
{
        struct body_inspection in = {.seconds = BODY_DEFAULT_INSPECT_SECONDS};
        const cJSON *agents, *all, *item, *prev;
        size_t n = 0;
        int r;

        if (!cJSON_IsObject(root))
                return fail(err, errsize, "body: expected a JSON object");
        agents = cJSON_GetObjectItemCaseSensitive(root, "agents");
        all = cJSON_GetObjectItemCaseSensitive(root, "all");
        if (agents && cJSON_IsNull(agents))
                agents = NULL;
        if (all && cJSON_IsNull(all))
                all = NULL;
        if (all && !cJSON_IsTrue(all))
                return fail(err, errsize, "all: expected true");
        if (!agents == !all)
                return fail(err, errsize, "agents: give either \"agents\": [ids] or \"all\": true");
        if (agents) {
                if (!cJSON_IsArray(agents))
                        return fail(err, errsize, "agents: expected an array of agent ids");
                cJSON_ArrayForEach(item, agents)
                {
                        if (n >= BODY_MAX_INSPECTION_AGENTS)
                                return fail(err, errsize, "agents: more than %d entries", BODY_MAX_INSPECTION_AGENTS);
                        if (!cJSON_IsString(item) || !body_is_url_id(item->valuestring))
                                return fail(err, errsize,
                                            "agents[%zu]: expected an agent id (1..%d of A-Z a-z 0-9 . _ -)", n,
                                            BODY_MAX_ID);
                        /* Quadratic, but over at most BODY_MAX_INSPECTION_AGENTS short strings. */
                        for (prev = agents->child; prev != item; prev = prev->next)
                                if (strcmp(prev->valuestring, item->valuestring) == 0)
                                        return fail(err, errsize, "agents[%zu]: %s is listed twice", n,
                                                    item->valuestring);
                        n++;
                }
                if (n == 0)
                        return fail(err, errsize, "agents: must not be empty");
                in.agents = agents;
                in.n_agents = n;
        } else {
                in.all = true;
        }
        r = get_int_range(root, "seconds", 1, BODY_MAX_INSPECT_SECONDS, &in.seconds, err, errsize);
        if (r < 0)
                return r;
        *ret = in;
        return 0;
}

int body_check_snapshot(const cJSON *root, char *err, size_t errsize)
{
        const cJSON *v;

        if (!cJSON_IsObject(root))
                return fail(err, errsize, "body: expected a JSON object");
        v = cJSON_GetObjectItemCaseSensitive(root, "version");
        if (!v || cJSON_IsNull(v))
                return fail(err, errsize, "version: required");
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
                return fail(err, errsize, "version: expected a number");
        return 0;
}
