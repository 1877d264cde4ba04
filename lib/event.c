/* event: see event.h. */
#include "event.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

uint64_t time_mono_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int64_t time_wall_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

char *time_format_rfc3339(int64_t wall_usec, char *buf, size_t size)
{
        time_t secs = (time_t)(wall_usec / 1000000);
        int ms = (int)((wall_usec % 1000000) / 1000);
        struct tm tm;
        char tmp[24];

        if (!gmtime_r(&secs, &tm) || strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
                snprintf(buf, size, "invalid");
                return buf;
        }
        snprintf(buf, size, "%s.%03dZ", tmp, ms < 0 ? 0 : ms);
        return buf;
}

void event_init(struct event *e, const char *source, const char *name, const char *object)
{
        e->source = source;
        e->name = name;
        e->object = object;
        e->has_value = false;
        e->value = 0;
        e->unit = NULL;
        e->mono_usec = time_mono_usec();
        e->wall_usec = time_wall_usec();
        e->n_attrs = 0;
}

void event_set_value(struct event *e, double value, const char *unit)
{
        e->has_value = true;
        e->value = value;
        e->unit = unit;
}

static struct event_attr *event_append(struct event *e, const char *key)
{
        struct event_attr *a;

        if (e->n_attrs >= EVENT_ATTRS_MAX)
                return NULL;
        a = &e->attrs[e->n_attrs++];
        a->key = key;
        a->str = NULL;
        a->num = 0;
        return a;
}

int event_add_string(struct event *e, const char *key, const char *value)
{
        struct event_attr *a = event_append(e, key);

        if (!a)
                return -E2BIG;
        a->type = EVENT_ATTR_STRING;
        a->str = value ? value : "";
        return 0;
}

int event_add_number(struct event *e, const char *key, double value)
{
        struct event_attr *a = event_append(e, key);

        if (!a)
                return -E2BIG;
        a->type = EVENT_ATTR_NUMBER;
        a->num = value;
        return 0;
}

const struct event_attr *event_find(const struct event *e, const char *key)
{
        for (size_t i = 0; i < e->n_attrs; i++)
                if (strcmp(e->attrs[i].key, key) == 0)
                        return &e->attrs[i];
        return NULL;
}
