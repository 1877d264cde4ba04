/* event_ring: see event_ring.h.
 *
 * Slot layout: a header, then NUL-terminated strings packed one after the
 * other in text[]: source, name, object, unit, note, then per attribute its
 * key and (for strings) its value; numbers live in the attribute table. */
#include "event_ring.h"

#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "xalloc.h"

struct slot_attr {
        uint16_t key; /* offset in text */
        uint16_t str; /* offset in text, strings only */
        uint8_t is_num;
        double num;
};

#define SLOT_ATTRS_MAX 48

struct slot {
        int64_t wall_usec;
        double value;
        uint8_t has_value;
        uint16_t source, name, object, unit, note; /* offsets in text; 0xffff: none */
        uint16_t n_attrs, dropped;
        struct slot_attr attrs[SLOT_ATTRS_MAX];
        size_t used;
        char text[EVENT_RING_SLOT_BYTES];
};

struct event_ring {
        struct slot **slots;
        size_t n, next;
        uint64_t pushed;
};

#define NONE 0xffff

struct event_ring *event_ring_new(size_t n)
{
        struct event_ring *r = xcalloc(1, sizeof *r);

        if (!r)
                return NULL;
        r->n = n ? n : 1;
        r->slots = xcalloc(r->n, sizeof *r->slots);
        if (!r->slots) {
                free(r);
                return NULL;
        }
        return r;
}

void event_ring_free(struct event_ring *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->n; i++)
                free(r->slots[i]);
        free(r->slots);
        free(r);
}

static uint16_t put(struct slot *s, const char *str)
{
        size_t len;

        if (!str)
                return NONE;
        len = strlen(str);
        if (s->used + len + 1 > sizeof s->text || s->used >= NONE)
                return NONE;
        memcpy(s->text + s->used, str, len + 1);
        s->used += len + 1;
        return (uint16_t)(s->used - len - 1);
}

void event_ring_push(struct event_ring *r, const struct event *e, const char *note)
{
        struct slot *s = r->slots[r->next];

        if (!s) {
                s = r->slots[r->next] = xmalloc(sizeof *s);
                if (!s)
                        return;
        }
        r->next = (r->next + 1) % r->n;
        r->pushed++;
        s->used = 0;
        s->wall_usec = e->wall_usec;
        s->has_value = e->has_value;
        s->value = e->value;
        s->source = put(s, e->source);
        s->name = put(s, e->name);
        s->object = put(s, e->object);
        s->unit = put(s, e->unit);
        s->note = put(s, note);
        s->n_attrs = s->dropped = 0;
        for (size_t i = 0; i < e->n_attrs; i++) {
                const struct event_attr *a = &e->attrs[i];
                struct slot_attr *sa = &s->attrs[s->n_attrs];
                size_t mark = s->used;

                if (s->n_attrs >= SLOT_ATTRS_MAX || (sa->key = put(s, a->key)) == NONE) {
                        s->dropped++;
                        continue;
                }
                sa->is_num = a->type == EVENT_ATTR_NUMBER;
                sa->num = a->num;
                sa->str = NONE;
                if (!sa->is_num && (sa->str = put(s, a->str ? a->str : "")) == NONE) {
                        s->used = mark;
                        s->dropped++;
                        continue;
                }
                s->n_attrs++;
        }
}

uint64_t event_ring_pushed(const struct event_ring *r)
{
        return r->pushed;
}

static void add_text(cJSON *o, const char *key, const struct slot *s, uint16_t off)
{
        if (off != NONE)
                cJSON_AddStringToObject(o, key, s->text + off);
}

cJSON *event_ring_to_json(const struct event_ring *r)
{
        cJSON *arr = cJSON_CreateArray();
        char ts[40];

        for (size_t k = 0; arr && k < r->n; k++) {
                const struct slot *s = r->slots[(r->next + k) % r->n];
                cJSON *o, *attrs;

                if (!s)
                        continue;
                if (!(o = cJSON_CreateObject()))
                        break;
                cJSON_AddStringToObject(o, "time", time_format_rfc3339(s->wall_usec, ts, sizeof ts));
                add_text(o, "source", s, s->source);
                add_text(o, "name", s, s->name);
                add_text(o, "object", s, s->object);
                if (s->has_value) {
                        cJSON_AddNumberToObject(o, "value", s->value);
                        add_text(o, "unit", s, s->unit);
                }
                add_text(o, "note", s, s->note);
                if ((attrs = cJSON_AddObjectToObject(o, "attributes")))
                        for (size_t i = 0; i < s->n_attrs; i++) {
                                const struct slot_attr *a = &s->attrs[i];
                                if (a->is_num)
                                        cJSON_AddNumberToObject(attrs, s->text + a->key, a->num);
                                else
                                        cJSON_AddStringToObject(attrs, s->text + a->key, s->text + a->str);
                        }
                if (s->dropped)
                        cJSON_AddNumberToObject(o, "attributes_dropped", s->dropped);
                json_add(arr, NULL, o);
        }
        return arr;
}
