/* answer: see answer.h. */
#include "answer.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../lib/xalloc.h"

int answer_parse_case_id(const char *body, size_t len, char **ret)
{
        cJSON *j = cJSON_ParseWithLength(body, len);
        const cJSON *id = j ? cJSON_GetObjectItemCaseSensitive(j, "id") : NULL;
        char *s = NULL;
        int r = -EBADMSG;

        if (cJSON_IsNumber(id) && isfinite(id->valuedouble) && id->valuedouble >= 0 &&
            id->valuedouble < 9007199254740992.0 && id->valuedouble == floor(id->valuedouble)) {
                s = xasprintf("%.0f", id->valuedouble);
                r = s ? 0 : -ENOMEM;
        } else if (cJSON_IsString(id) && id->valuestring[0] && strlen(id->valuestring) < ANSWER_ID_MAX &&
                   strspn(id->valuestring, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") ==
                           strlen(id->valuestring)) {
                /* Only characters that are safe in a URL path: the id goes into /cases/{id}/updates. */
                s = xstrdup(id->valuestring);
                r = s ? 0 : -ENOMEM;
        }
        cJSON_Delete(j);
        if (r == 0)
                *ret = s;
        return r;
}

char *answer_error_text(const char *body, size_t len, char *buf, size_t size)
{
        cJSON *j;
        const cJSON *e;
        const char *src = body;
        size_t n = len;

        if (size == 0)
                return buf;
        j = cJSON_ParseWithLength(body, len);
        e = j ? cJSON_GetObjectItemCaseSensitive(j, "error") : NULL;
        if (cJSON_IsString(e)) {
                src = e->valuestring;
                n = strlen(src);
        }
        if (n > size - 1)
                n = size - 1;
        for (size_t i = 0; i < n; i++)
                buf[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? ' ' : src[i];
        buf[n] = '\0';
        cJSON_Delete(j);
        return buf;
}

static bool url_safe(const char *s)
{
        return s[0] && strlen(s) < ANSWER_ID_MAX &&
               strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") == strlen(s) &&
               strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static bool printable(const char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

static int one_command(const cJSON *c, struct answer_command *out)
{
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(c, "type");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
        const cJSON *secs = cJSON_GetObjectItemCaseSensitive(c, "seconds");
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(c, "request");
        const cJSON *reason = cJSON_GetObjectItemCaseSensitive(c, "reason");

        memset(out, 0, sizeof *out);
        if (!cJSON_IsObject(c) || !cJSON_IsString(type))
                return -EINVAL;
        if (id && !cJSON_IsNull(id)) {
                if (cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble < 9007199254740992.0 &&
                    id->valuedouble == floor(id->valuedouble))
                        snprintf(out->id, sizeof out->id, "%.0f", id->valuedouble);
                else if (cJSON_IsString(id) && url_safe(id->valuestring))
                        snprintf(out->id, sizeof out->id, "%s", id->valuestring);
                else
                        return -EINVAL;
        }
        if (secs && !cJSON_IsNull(secs)) {
                if (!cJSON_IsNumber(secs) || !(secs->valuedouble >= 1) || secs->valuedouble > 3660.0 * 86400 ||
                    secs->valuedouble != floor(secs->valuedouble))
                        return -EINVAL;
                out->seconds = (uint64_t)secs->valuedouble;
        }
        if (strcmp(type->valuestring, "inspect") == 0) {
                out->type = ANSWER_COMMAND_INSPECT;
                if (!cJSON_IsString(req) || !url_safe(req->valuestring))
                        return -EINVAL;
                snprintf(out->request, sizeof out->request, "%s", req->valuestring);
                if (!out->seconds)
                        out->seconds = 90ULL * 86400;
                return 0;
        }
        if (strcmp(type->valuestring, "maintenance-start") == 0) {
                out->type = ANSWER_COMMAND_MAINTENANCE_START;
                if (!out->seconds || out->seconds > 30ULL * 86400 || !cJSON_IsString(reason) ||
                    !reason->valuestring[0] || strlen(reason->valuestring) > ANSWER_REASON_MAX ||
                    !printable(reason->valuestring))
                        return -EINVAL;
                snprintf(out->reason, sizeof out->reason, "%s", reason->valuestring);
                return 0;
        }
        if (strcmp(type->valuestring, "maintenance-end") == 0) {
                out->type = ANSWER_COMMAND_MAINTENANCE_END;
                return 0;
        }
        return -EINVAL;
}

int answer_parse_commands(const char *body, size_t len, struct answer_command *cmds, size_t max, size_t *ret_skipped)
{
        cJSON *j = cJSON_ParseWithLength(body, len);
        const cJSON *arr, *c;
        size_t n = 0, skipped = 0;

        if (!cJSON_IsObject(j)) {
                cJSON_Delete(j);
                return -EBADMSG;
        }
        arr = cJSON_GetObjectItemCaseSensitive(j, "commands");
        if (arr && !cJSON_IsArray(arr) && !cJSON_IsNull(arr))
                skipped++;
        if (cJSON_IsArray(arr))
                cJSON_ArrayForEach(c, arr)
                {
                        if (n < max && one_command(c, &cmds[n]) == 0)
                                n++;
                        else
                                skipped++;
                }
        cJSON_Delete(j);
        *ret_skipped = skipped;
        return (int)n;
}
