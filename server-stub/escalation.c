/* escalation: see escalation.h. A file is checked strictly (unknown levels
 * and members are errors): a misspelt "after" would otherwise leave a level
 * silently without its clock. */
#include "escalation.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/xalloc.h"

static const struct {
        enum rule_level level;
        int64_t after_s;
        const char *step;
} default_steps[] = {
        {RULE_LEVEL_P1, 600, "Manager1 / senior engineer"},
        {RULE_LEVEL_P1, 3600, "Manager2"},
        {RULE_LEVEL_P1, 4 * 3600, "upstream vendor case"},
        {RULE_LEVEL_P1, 24 * 3600, "Manager3"},
        {RULE_LEVEL_P2, 3600, "Manager1 / senior engineer"},
        {RULE_LEVEL_P2, 4 * 3600, "Manager2"},
        {RULE_LEVEL_P2, 24 * 3600, "upstream vendor case"},
        {RULE_LEVEL_P2, 48 * 3600, "Manager3"},
        {RULE_LEVEL_P3, 4 * 3600, "Manager1 / senior engineer"},
        {RULE_LEVEL_P3, 24 * 3600, "upstream vendor case"},
        {RULE_LEVEL_P3, 48 * 3600, "Manager2"},
        {RULE_LEVEL_P4, 24 * 3600, "Manager1 / senior engineer"},
        {RULE_LEVEL_P4, 48 * 3600, "upstream vendor case"},
        {RULE_LEVEL_P4, 72 * 3600, "Manager2"},
        {RULE_LEVEL_P4, 96 * 3600, "Manager3"},
};

void escalation_default(struct escalation_matrix *ret)
{
        memset(ret, 0, sizeof *ret);
        for (size_t i = 0; i < sizeof default_steps / sizeof default_steps[0]; i++) {
                enum rule_level l = default_steps[i].level;
                struct escalation_step *s = &ret->steps[l][ret->n[l]++];

                s->after_s = default_steps[i].after_s;
                snprintf(s->step, sizeof s->step, "%s", default_steps[i].step);
        }
}

__attribute__((format(printf, 3, 4))) static int esc_fail(char *err, size_t errsize, const char *fmt, ...)
{
        va_list ap;

        if (err && errsize > 0) {
                va_start(ap, fmt);
                vsnprintf(err, errsize, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

static int parse_step(const cJSON *item, const char *level, size_t i, struct escalation_step *ret, char *err,
                      size_t errsize)
{
        const cJSON *m, *after = NULL, *step = NULL;

        if (!cJSON_IsObject(item))
                return esc_fail(err, errsize, "%s[%zu]: expected an object {\"after_s\": N, \"step\": \"...\"}", level,
                                i);
        cJSON_ArrayForEach(m, item)
        {
                if (strcmp(m->string, "after_s") == 0)
                        after = m;
                else if (strcmp(m->string, "step") == 0)
                        step = m;
                else
                        return esc_fail(err, errsize, "%s[%zu].%.64s: unknown member (expected after_s, step)", level,
                                        i, m->string);
        }
        if (!after || !cJSON_IsNumber(after) || !isfinite(after->valuedouble) ||
            after->valuedouble != floor(after->valuedouble) || after->valuedouble < 1 ||
            after->valuedouble > (double)ESCALATION_MAX_AFTER_S)
                return esc_fail(err, errsize, "%s[%zu].after_s: expected an integer 1..%lld", level, i,
                                (long long)ESCALATION_MAX_AFTER_S);
        if (!step || !cJSON_IsString(step) || !step->valuestring || !step->valuestring[0] ||
            strlen(step->valuestring) > ESCALATION_MAX_STEP_NAME)
                return esc_fail(err, errsize, "%s[%zu].step: expected a string of 1..%d bytes", level, i,
                                ESCALATION_MAX_STEP_NAME);
        for (const char *p = step->valuestring; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        return esc_fail(err, errsize, "%s[%zu].step: control characters are not allowed", level, i);
        ret->after_s = (int64_t)after->valuedouble;
        snprintf(ret->step, sizeof ret->step, "%s", step->valuestring);
        return 0;
}

int escalation_parse(const char *text, size_t len, struct escalation_matrix *ret, char *err, size_t errsize)
{
        struct escalation_matrix *m = NULL;
        const char *end = NULL;
        cJSON *root, *lv, *item;
        int r = 0;

        if (len > ESCALATION_FILE_MAX)
                return esc_fail(err, errsize, "larger than %d bytes", ESCALATION_FILE_MAX);
        root = cJSON_ParseWithLengthOpts(text, len, &end, false);
        if (!root)
                return esc_fail(err, errsize, "invalid JSON near byte %zu",
                                end && end >= text && end <= text + len ? (size_t)(end - text) : (size_t)0);
        while (end && end < text + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
                end++;
        if (end && end < text + len) {
                r = esc_fail(err, errsize, "unexpected data after the JSON value at byte %zu", (size_t)(end - text));
                goto out;
        }
        if (!cJSON_IsObject(root)) {
                r = esc_fail(err, errsize, "expected a JSON object with members P1..P5");
                goto out;
        }
        /* The matrix is 20 KiB: kept off the stack of a fuzzer's thread. */
        m = xcalloc(1, sizeof *m);
        if (!m) {
                r = -ENOMEM;
                goto out;
        }
        cJSON_ArrayForEach(lv, root)
        {
                enum rule_level level;
                size_t i = 0;

                if (rule_level_from_string(lv->string, &level) < 0) {
                        r = esc_fail(err, errsize, "%.64s: unknown level (expected P1..P5)", lv->string);
                        goto out;
                }
                if (m->n[level] > 0 || !cJSON_IsArray(lv)) {
                        r = esc_fail(err, errsize, "%s: expected one array of steps", lv->string);
                        goto out;
                }
                cJSON_ArrayForEach(item, lv)
                {
                        if (i >= ESCALATION_MAX_STEPS) {
                                r = esc_fail(err, errsize, "%s: more than %d steps", lv->string, ESCALATION_MAX_STEPS);
                                goto out;
                        }
                        r = parse_step(item, lv->string, i, &m->steps[level][i], err, errsize);
                        if (r < 0)
                                goto out;
                        if (i > 0 && m->steps[level][i].after_s <= m->steps[level][i - 1].after_s) {
                                r = esc_fail(err, errsize, "%s[%zu].after_s: must be larger than the step before",
                                             lv->string, i);
                                goto out;
                        }
                        i++;
                }
                m->n[level] = i;
        }
        *ret = *m;
out:
        free(m);
        cJSON_Delete(root);
        return r;
}

cJSON *escalation_to_json(const struct escalation_matrix *m)
{
        cJSON *root = cJSON_CreateObject(), *arr, *s;

        if (!root)
                return NULL;
        for (int l = 0; l < RULE_LEVEL_MAX; l++) {
                if (m->n[l] == 0)
                        continue;
                arr = cJSON_AddArrayToObject(root, rule_level_to_string((enum rule_level)l));
                if (!arr)
                        goto fail;
                for (size_t i = 0; i < m->n[l]; i++) {
                        s = cJSON_CreateObject();
                        if (!s)
                                goto fail;
                        if (!cJSON_AddItemToArray(arr, s)) {
                                cJSON_Delete(s);
                                goto fail;
                        }
                        if (!cJSON_AddNumberToObject(s, "after_s", (double)m->steps[l][i].after_s) ||
                            !cJSON_AddStringToObject(s, "step", m->steps[l][i].step))
                                goto fail;
                }
        }
        return root;
fail:
        cJSON_Delete(root);
        return NULL;
}
