/* answer: see answer.h. */
#include "answer.h"

#include <errno.h>
#include <math.h>
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
