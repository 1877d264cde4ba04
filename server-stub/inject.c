/* inject: see inject.h. The body is checked strictly: an unknown field or a
 * field that does not belong to the action is an error, because a test
 * with a misspelt "retry_afer" would otherwise pass for the wrong reason.
 * The queue is a fixed array: INJECT_QUEUE_MAX is small and removal keeps
 * the order with one memmove. */
#include "inject.h"
#include "../lib/xalloc.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/xalloc.h"

struct inject_queue {
        struct inject_spec items[INJECT_QUEUE_MAX];
        size_t n;
        uint64_t applied[INJECT_ACTION_MAX];
};

static const char *const action_names[INJECT_ACTION_MAX] = {
        [INJECT_STATUS] = "status",
        [INJECT_DELAY] = "delay",
        [INJECT_DROP] = "drop",
        [INJECT_GARBAGE] = "garbage",
};
static const char *const when_names[INJECT_WHEN_MAX] = {[INJECT_BEFORE] = "before", [INJECT_AFTER] = "after"};

const char *inject_action_to_string(enum inject_action a)
{
        return a < INJECT_ACTION_MAX ? action_names[a] : "unknown";
}

const char *inject_when_to_string(enum inject_when w)
{
        return w < INJECT_WHEN_MAX ? when_names[w] : "unknown";
}

__attribute__((format(printf, 3, 4))) static int inject_fail(char *err, size_t errsize, const char *fmt, ...)
{
        va_list ap;

        if (err && errsize > 0) {
                va_start(ap, fmt);
                vsnprintf(err, errsize, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

/* An integer member in lo..hi. Returns 1 (set), 0 (absent or null) or -EINVAL. */
static int get_int(const cJSON *root, const char *k, double lo, double hi, double *ret, char *err, size_t errsize)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, k);

        if (!v || cJSON_IsNull(v))
                return 0;
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble) ||
            v->valuedouble < lo || v->valuedouble > hi)
                return inject_fail(err, errsize, "%s: expected an integer %.0f..%.0f", k, lo, hi);
        *ret = v->valuedouble;
        return 1;
}

int inject_parse(const cJSON *root, struct inject_spec *ret, char *err, size_t errsize)
{
        static const char *const known[] = {"action", "count", "match", "status", "retry_after", "seconds", "when"};
        struct inject_spec s = {.retry_after = -1, .count = 1, .match = "/api/v1/"};
        const cJSON *v, *member;
        double d;
        int r, i;

        if (!cJSON_IsObject(root))
                return inject_fail(err, errsize, "body: expected a JSON object");
        cJSON_ArrayForEach(member, root)
        {
                bool ok = false;

                for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
                        ok |= member->string && strcmp(member->string, known[k]) == 0;
                if (!ok)
                        return inject_fail(err, errsize,
                                           "%.64s: unknown field (known: action, count, match, status, retry_after, "
                                           "seconds, when)",
                                           member->string ? member->string : "?");
        }
        v = cJSON_GetObjectItemCaseSensitive(root, "action");
        if (!cJSON_IsString(v))
                return inject_fail(err, errsize, "action: expected one of status, delay, drop, garbage");
        for (i = 0; i < INJECT_ACTION_MAX; i++)
                if (strcmp(v->valuestring, action_names[i]) == 0)
                        break;
        if (i == INJECT_ACTION_MAX)
                return inject_fail(err, errsize, "action: expected one of status, delay, drop, garbage");
        s.action = (enum inject_action)i;

        r = get_int(root, "count", 1, INJECT_COUNT_MAX, &d, err, errsize);
        if (r < 0)
                return r;
        if (r)
                s.count = (unsigned)d;
        v = cJSON_GetObjectItemCaseSensitive(root, "match");
        if (v && !cJSON_IsNull(v)) {
                if (!cJSON_IsString(v) || v->valuestring[0] != '/' || strlen(v->valuestring) > INJECT_MATCH_MAX)
                        return inject_fail(err, errsize,
                                           "match: expected a path prefix starting with / (at most %d bytes)",
                                           INJECT_MATCH_MAX);
                snprintf(s.match, sizeof s.match, "%s", v->valuestring);
        }

        /* Fields of one action only. */
        v = cJSON_GetObjectItemCaseSensitive(root, "status");
        if (s.action != INJECT_STATUS && v)
                return inject_fail(err, errsize, "status: only for action status");
        v = cJSON_GetObjectItemCaseSensitive(root, "retry_after");
        if (s.action != INJECT_STATUS && v)
                return inject_fail(err, errsize, "retry_after: only for action status");
        v = cJSON_GetObjectItemCaseSensitive(root, "seconds");
        if (s.action != INJECT_DELAY && v)
                return inject_fail(err, errsize, "seconds: only for action delay");
        v = cJSON_GetObjectItemCaseSensitive(root, "when");
        if (s.action != INJECT_DROP && s.action != INJECT_GARBAGE && v)
                return inject_fail(err, errsize, "when: only for actions drop and garbage");

        switch (s.action) {
        case INJECT_STATUS:
                r = get_int(root, "status", 100, 599, &d, err, errsize);
                if (r < 0)
                        return r;
                if (r == 0)
                        return inject_fail(err, errsize, "status: required for action status (an integer 100..599)");
                s.status = (unsigned)d;
                r = get_int(root, "retry_after", 0, INJECT_RETRY_AFTER_MAX, &d, err, errsize);
                if (r < 0)
                        return r;
                if (r)
                        s.retry_after = (int)d;
                break;
        case INJECT_DELAY:
                v = cJSON_GetObjectItemCaseSensitive(root, "seconds");
                if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0.001 ||
                    v->valuedouble > INJECT_DELAY_MAX_SEC)
                        return inject_fail(err, errsize, "seconds: required for action delay (a number 0.001..%d)",
                                           INJECT_DELAY_MAX_SEC);
                s.delay_ms = (unsigned)lround(v->valuedouble * 1000);
                s.when = INJECT_AFTER;
                break;
        case INJECT_DROP:
        case INJECT_GARBAGE:
                v = cJSON_GetObjectItemCaseSensitive(root, "when");
                if (v && !cJSON_IsNull(v)) {
                        if (cJSON_IsString(v) && strcmp(v->valuestring, "before") == 0)
                                s.when = INJECT_BEFORE;
                        else if (cJSON_IsString(v) && strcmp(v->valuestring, "after") == 0)
                                s.when = INJECT_AFTER;
                        else
                                return inject_fail(err, errsize, "when: expected before or after");
                }
                break;
        default:
                break;
        }
        *ret = s;
        return 0;
}

struct inject_queue *inject_queue_new(void)
{
        return xcalloc(1, sizeof(struct inject_queue));
}

void inject_queue_free(struct inject_queue *q)
{
        free(q);
}

int inject_queue_push(struct inject_queue *q, const struct inject_spec *spec)
{
        if (q->n >= INJECT_QUEUE_MAX)
                return -ENOSPC;
        q->items[q->n++] = *spec;
        return 0;
}

bool inject_queue_take(struct inject_queue *q, const char *path, struct inject_spec *ret)
{
        if (strncmp(path, INJECT_TEST_PREFIX, strlen(INJECT_TEST_PREFIX)) == 0)
                return false;
        for (size_t i = 0; i < q->n; i++) {
                struct inject_spec *s = &q->items[i];

                if (strncmp(path, s->match, strlen(s->match)) != 0)
                        continue;
                *ret = *s;
                ret->count = 1;
                q->applied[s->action]++;
                if (--s->count == 0) {
                        memmove(s, s + 1, (q->n - i - 1) * sizeof *s);
                        q->n--;
                }
                return true;
        }
        return false;
}

size_t inject_queue_clear(struct inject_queue *q)
{
        size_t n = q->n;

        q->n = 0;
        memset(q->applied, 0, sizeof q->applied);
        return n;
}

cJSON *inject_spec_to_json(const struct inject_spec *s)
{
        cJSON *o = cJSON_CreateObject();
        bool ok = o && cJSON_AddStringToObject(o, "action", inject_action_to_string(s->action));

        switch (s->action) {
        case INJECT_STATUS:
                ok = ok && cJSON_AddNumberToObject(o, "status", s->status) &&
                     (s->retry_after < 0 ? cJSON_AddNullToObject(o, "retry_after") != NULL
                                         : cJSON_AddNumberToObject(o, "retry_after", s->retry_after) != NULL);
                break;
        case INJECT_DELAY:
                ok = ok && cJSON_AddNumberToObject(o, "seconds", s->delay_ms / 1000.0);
                break;
        default:
                ok = ok && cJSON_AddStringToObject(o, "when", inject_when_to_string(s->when));
                break;
        }
        ok = ok && cJSON_AddStringToObject(o, "match", s->match) && cJSON_AddNumberToObject(o, "remaining", s->count);
        if (!ok) {
                cJSON_Delete(o);
                return NULL;
        }
        return o;
}

cJSON *inject_queue_to_json(const struct inject_queue *q)
{
        cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "injections"),
              *applied = cJSON_AddObjectToObject(o, "applied");

        if (!o || !arr || !applied)
                goto fail;
        for (size_t i = 0; i < q->n; i++) {
                cJSON *item = inject_spec_to_json(&q->items[i]);

                if (!item || !cJSON_AddItemToArray(arr, item)) {
                        cJSON_Delete(item);
                        goto fail;
                }
        }
        for (int a = 0; a < INJECT_ACTION_MAX; a++)
                if (!cJSON_AddNumberToObject(applied, action_names[a], (double)q->applied[a]))
                        goto fail;
        return o;
fail:
        cJSON_Delete(o);
        return NULL;
}
