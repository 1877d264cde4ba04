/* event: the one shape every collector emits and rules and cases consume
 * (DESIGN.md "Events").
 *
 * An event is a plain value record built on the emitter's stack. All strings
 * are borrowed: they are valid only for the duration of the emit call, and a
 * consumer that keeps anything copies it. Attributes are a small fixed array so
 * building and reading an event never allocates. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EVENT_ATTRS_MAX 64

enum event_attr_type {
        EVENT_ATTR_STRING,
        EVENT_ATTR_NUMBER,
        EVENT_ATTR_TYPE_MAX,
};

struct event_attr {
        const char *key;
        enum event_attr_type type;
        const char *str; /* EVENT_ATTR_STRING */
        double num;      /* EVENT_ATTR_NUMBER; booleans are 0/1 */
};

struct event {
        const char *source; /* "sensor", "snmptrap", "heartbeat", "process", "agent", ... */
        const char *name;   /* what happened: "temperature", "sensor-fault", ... */
        const char *object; /* what it is about: "coretemp-isa-0000/Package id 0" */
        bool has_value;
        double value;
        const char *unit;   /* "C", "%", ... or NULL */
        uint64_t mono_usec; /* CLOCK_MONOTONIC */
        int64_t wall_usec;  /* CLOCK_REALTIME, microseconds since the epoch */
        size_t n_attrs;
        struct event_attr attrs[EVENT_ATTRS_MAX];
};

/* Clears e and sets the three naming fields and both clocks to now. */
void event_init(struct event *e, const char *source, const char *name, const char *object);
void event_set_value(struct event *e, double value, const char *unit);
/* Append an attribute. Returns 0, or -E2BIG when the event is full (the
 * attribute is not added; callers size their events well below the cap). */
int event_add_string(struct event *e, const char *key, const char *value);
int event_add_number(struct event *e, const char *key, double value);
/* Returns the attribute named key, or NULL. Only attributes, not the
 * built-in fields above. */
const struct event_attr *event_find(const struct event *e, const char *key);

/* Monotonic and wall clocks in microseconds. */
uint64_t time_mono_usec(void);
int64_t time_wall_usec(void);
/* Formats wall time as RFC 3339 UTC with milliseconds ("2026-11-25T10:00:00.123Z")
 * into buf (at least 32 bytes). Returns buf. */
char *time_format_rfc3339(int64_t wall_usec, char *buf, size_t size);
