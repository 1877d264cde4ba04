/* faults: see faults.h.
 *
 * Data: a fault per key (a chained hash table) and, per firing period, a
 * case record holding what must still be delivered: the open request and a
 * FIFO of updates. Records are delivered in the order they were created and,
 * within one record, strictly in order (an update needs the case id the open
 * returned). A record outlives its fault's firing period until its queue is
 * empty, so a fault that re-fires while its old "cleared" update is still
 * undelivered keeps both cases correct. */
#include "faults.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/event.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "answer.h"
#include "identity.h"
#include "loop.h"
#include "sender.h"

#define FAULT_BUCKETS 1024
#define FAULT_RULES_MAX 16   /* rules firing for one key at once */
#define FAULT_EVIDENCE_MAX 8 /* events kept per fault: the first and the latest ones */

struct update {
        char *body;
        char *idem_key;
        char type[16];
        struct update *next;
};

struct case_rec {
        struct faults *owner;
        struct fault *fault; /* NULL once the fault moved on to a newer record */
        char *fault_key;
        char *open_body;
        char *idem_key;
        char *case_id; /* set once the open is acknowledged */
        struct update *updates, *updates_tail;
        unsigned update_seq;
        uint64_t occurrences_reported;
        uint64_t last_occurrence_mono;
        bool in_flight;
        unsigned failures; /* consecutive */
        uint64_t next_try_mono;
        char *last_error;
        struct case_rec *next;
};

struct firing_rule {
        char *name;
        enum rule_level level;
};

struct fault {
        char *key;
        enum fault_state state;
        enum rule_level level;
        char *rule; /* the rule that sets the level */
        char *title;
        char *description;
        int64_t first_seen, last_seen, cleared_at; /* wall µs */
        uint64_t occurrences;
        struct firing_rule rules[FAULT_RULES_MAX];
        size_t n_rules;
        cJSON *readings;
        cJSON *evidence;
        char *last_case_id; /* of the previous firing period, for reference */
        struct case_rec *rec;
        struct fault *next;
};

struct faults {
        struct loop *loop;
        const struct identity *id;
        struct sender *sender;
        struct faults_settings set;
        struct loop_source *timer;
        struct fault *buckets[FAULT_BUCKETS];
        size_t n_faults;
        struct case_rec *recs, *recs_tail;
        struct faults_stats stats;
};

static const char *const fault_state_names[FAULT_STATE_MAX] = {"firing", "cleared"};

/* A log line about one fault, with the journal fields FAULT_KEY,
 * FAULT_LEVEL, RULE and CASE_ID (when known) for `journalctl FAULT_KEY=...`. */
static void log_fault(enum log_level level, const char *key, const char *fault_level, const char *rule,
                      const char *case_id, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void log_fault(enum log_level level, const char *key, const char *fault_level, const char *rule,
                      const char *case_id, const char *fmt, ...)
{
        char f_key[300], f_level[32], f_rule[200], f_case[100], msg[1600];
        const char *fields[4];
        size_t n = 0;
        va_list ap;

        if (level > log_get_level())
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(f_key, sizeof f_key, "FAULT_KEY=%s", key);
        fields[n++] = f_key;
        if (fault_level) {
                snprintf(f_level, sizeof f_level, "FAULT_LEVEL=%s", fault_level);
                fields[n++] = f_level;
        }
        if (rule) {
                snprintf(f_rule, sizeof f_rule, "RULE=%s", rule);
                fields[n++] = f_rule;
        }
        if (case_id) {
                snprintf(f_case, sizeof f_case, "CASE_ID=%s", case_id);
                fields[n++] = f_case;
        }
        log_fields(level, fields, n, "fault %s: %s", key, msg);
}

const char *fault_state_to_string(enum fault_state s)
{
        return s < FAULT_STATE_MAX ? fault_state_names[s] : "unknown";
}

static uint64_t hash_str(const char *s)
{
        uint64_t h = 1469598103934665603ULL; /* FNV-1a */

        for (; *s; s++) {
                h ^= (unsigned char)*s;
                h *= 1099511628211ULL;
        }
        return h;
}

/* ---- JSON of events ---- */

static cJSON *event_readings_json(const struct event *e)
{
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        if (e->has_value && isfinite(e->value))
                cJSON_AddNumberToObject(o, "value", e->value);
        if (e->unit)
                cJSON_AddStringToObject(o, "unit", e->unit);
        for (size_t i = 0; i < e->n_attrs; i++) {
                const struct event_attr *a = &e->attrs[i];
                if (a->type == EVENT_ATTR_NUMBER) {
                        if (isfinite(a->num))
                                cJSON_AddNumberToObject(o, a->key, a->num);
                } else {
                        cJSON_AddStringToObject(o, a->key, a->str);
                }
        }
        return o;
}

static cJSON *event_json(const struct event *e)
{
        cJSON *o = cJSON_CreateObject();
        char ts[40];

        if (!o)
                return NULL;
        cJSON_AddStringToObject(o, "time", time_format_rfc3339(e->wall_usec, ts, sizeof ts));
        cJSON_AddStringToObject(o, "source", e->source ? e->source : "");
        cJSON_AddStringToObject(o, "name", e->name ? e->name : "");
        cJSON_AddStringToObject(o, "object", e->object ? e->object : "");
        json_add(o, "attributes", event_readings_json(e));
        return o;
}

/* Keeps the first event and the latest FAULT_EVIDENCE_MAX - 1. */
static void evidence_add(struct fault *f, const struct event *e)
{
        cJSON *j;

        if (!e)
                return;
        if (!f->evidence && !(f->evidence = cJSON_CreateArray()))
                return;
        if (!(j = event_json(e)))
                return;
        if (cJSON_GetArraySize(f->evidence) >= FAULT_EVIDENCE_MAX)
                cJSON_DeleteItemFromArray(f->evidence, 1);
        json_add(f->evidence, NULL, j);
}

/* ---- case records ---- */

static void update_free(struct update *u)
{
        if (!u)
                return;
        free(u->body);
        free(u->idem_key);
        free(u);
}

static void rec_free(struct case_rec *r)
{
        if (!r)
                return;
        while (r->updates) {
                struct update *u = r->updates;
                r->updates = u->next;
                update_free(u);
        }
        free(r->fault_key);
        free(r->open_body);
        free(r->idem_key);
        free(r->case_id);
        free(r->last_error);
        free(r);
}

static void rec_unlink_free(struct faults *fs, struct case_rec *r)
{
        struct case_rec **pp = &fs->recs, *prev = NULL;

        for (; *pp; prev = *pp, pp = &(*pp)->next)
                if (*pp == r) {
                        *pp = r->next;
                        if (fs->recs_tail == r)
                                fs->recs_tail = prev;
                        break;
                }
        if (r->fault && r->fault->rec == r)
                r->fault->rec = NULL;
        rec_free(r);
}

static bool rec_done(const struct case_rec *r)
{
        return r->case_id && !r->updates && !r->in_flight;
}

/* The create-case request. NULL on allocation failure: a case missing a
 * required field would only be refused by the central side. */
static char *build_open_body(struct faults *fs, const struct fault *f)
{
        cJSON *o = cJSON_CreateObject();
        char first[40], last[40];
        char *s = NULL;
        bool ok;

        if (!o)
                return NULL;
        ok = json_add(o, "agent", identity_to_json(fs->id)) == 0 && cJSON_AddStringToObject(o, "fault_key", f->key) &&
             cJSON_AddStringToObject(o, "level", rule_level_to_string(f->level)) &&
             cJSON_AddStringToObject(o, "rule", f->rule) && cJSON_AddStringToObject(o, "title", f->title) &&
             cJSON_AddStringToObject(o, "description", f->description) &&
             cJSON_AddStringToObject(o, "first_seen", time_format_rfc3339(f->first_seen, first, sizeof first)) &&
             cJSON_AddStringToObject(o, "last_seen", time_format_rfc3339(f->last_seen, last, sizeof last)) &&
             cJSON_AddNumberToObject(o, "occurrences", (double)f->occurrences) &&
             (!f->readings || json_add(o, "readings", cJSON_Duplicate(f->readings, 1)) == 0) &&
             (!f->evidence || json_add(o, "evidence", cJSON_Duplicate(f->evidence, 1)) == 0) &&
             (!f->last_case_id || cJSON_AddStringToObject(o, "previous_case_id", f->last_case_id));
        if (ok)
                s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        return s;
}

static struct case_rec *rec_new(struct faults *fs, struct fault *f)
{
        struct case_rec *r = xcalloc(1, sizeof *r);

        if (!r)
                return NULL;
        r->owner = fs;
        r->fault = f;
        r->fault_key = xstrdup(f->key);
        r->open_body = build_open_body(fs, f);
        r->idem_key =
                xasprintf("%016" PRIx64 "-%" PRId64, hash_str(fs->id->agent_id) ^ hash_str(f->key), f->first_seen);
        r->occurrences_reported = f->occurrences;
        r->last_occurrence_mono = time_mono_usec();
        if (!r->fault_key || !r->open_body || !r->idem_key) {
                rec_free(r);
                return NULL;
        }
        if (fs->recs_tail)
                fs->recs_tail->next = r;
        else
                fs->recs = r;
        fs->recs_tail = r;
        return r;
}

/* Queues an update of the given type with the fault's current figures plus
 * extra fields; takes ownership of extra (may be NULL). The fault's readings
 * go along unless extra says "readings": null (they would be stale). */
static void rec_queue_update(struct case_rec *r, const struct fault *f, const char *type, cJSON *extra)
{
        cJSON *o = extra ? extra : cJSON_CreateObject();
        struct update *u = NULL;
        char ts[40];

        if (!o || !cJSON_AddStringToObject(o, "type", type) ||
            !cJSON_AddNumberToObject(o, "occurrences", (double)f->occurrences) ||
            !cJSON_AddStringToObject(o, "last_seen", time_format_rfc3339(f->last_seen, ts, sizeof ts)) ||
            (f->readings && !cJSON_HasObjectItem(o, "readings") &&
             json_add(o, "readings", cJSON_Duplicate(f->readings, 1)) < 0))
                goto fail;
        u = xcalloc(1, sizeof *u);
        if (!u)
                goto fail;
        snprintf(u->type, sizeof u->type, "%s", type);
        u->body = cJSON_PrintUnformatted(o);
        u->idem_key = xasprintf("%s-u%u", r->idem_key, ++r->update_seq);
        if (!u->body || !u->idem_key)
                goto fail;
        cJSON_Delete(o);
        if (r->updates_tail)
                r->updates_tail->next = u;
        else
                r->updates = u;
        r->updates_tail = u;
        r->occurrences_reported = f->occurrences;
        return;
fail:
        log_err("fault %s: out of memory queueing '%s' update; it is lost", f->key, type);
        cJSON_Delete(o);
        update_free(u);
}

/* ---- the fault table ---- */

static struct fault *fault_find(struct faults *fs, const char *key)
{
        struct fault *f = fs->buckets[hash_str(key) % FAULT_BUCKETS];

        for (; f; f = f->next)
                if (strcmp(f->key, key) == 0)
                        return f;
        return NULL;
}

static void fault_free(struct fault *f)
{
        if (!f)
                return;
        for (size_t i = 0; i < f->n_rules; i++)
                free(f->rules[i].name);
        free(f->key);
        free(f->rule);
        free(f->title);
        free(f->description);
        free(f->last_case_id);
        cJSON_Delete(f->readings);
        cJSON_Delete(f->evidence);
        if (f->rec)
                f->rec->fault = NULL;
        free(f);
}

static struct fault *fault_create(struct faults *fs, const char *key)
{
        struct fault *f;
        size_t b = hash_str(key) % FAULT_BUCKETS;

        if (fs->n_faults >= fs->set.max_faults) {
                fs->stats.shed++;
                return NULL;
        }
        f = xcalloc(1, sizeof *f);
        if (!f || !(f->key = xstrdup(key))) {
                free(f);
                return NULL;
        }
        f->state = FAULT_CLEARED;
        f->next = fs->buckets[b];
        fs->buckets[b] = f;
        fs->n_faults++;
        return f;
}

static int set_str(char **dst, const char *s)
{
        char *n = xstrdup(s ? s : "");

        if (!n)
                return -ENOMEM;
        free(*dst);
        *dst = n;
        return 0;
}

static ssize_t fault_rule_index(const struct fault *f, const char *name)
{
        for (size_t i = 0; i < f->n_rules; i++)
                if (strcmp(f->rules[i].name, name) == 0)
                        return (ssize_t)i;
        return -1;
}

static void fault_drop_rule(struct fault *f, size_t i)
{
        free(f->rules[i].name);
        f->rules[i] = f->rules[--f->n_rules];
}

/* The most urgent rule still firing, or -1. */
static ssize_t fault_top_rule(const struct fault *f)
{
        ssize_t best = -1;

        for (size_t i = 0; i < f->n_rules; i++)
                if (best < 0 || f->rules[i].level < f->rules[best].level)
                        best = (ssize_t)i;
        return best;
}

/* Replaces the fault's readings with those of e (kept on allocation failure). */
static void fault_set_readings(struct fault *f, const struct event *e)
{
        cJSON *r = e ? event_readings_json(e) : NULL;

        if (!r)
                return;
        cJSON_Delete(f->readings);
        f->readings = r;
}

static void take_text(struct fault *f, const struct rule_hit *hit)
{
        set_str(&f->rule, rule_name(hit->rule));
        set_str(&f->title, hit->title);
        set_str(&f->description, hit->description);
        fault_set_readings(f, hit->event);
}

static void fault_start(struct faults *fs, struct fault *f, const struct rule_hit *hit)
{
        int64_t now = hit->event ? hit->event->wall_usec : time_wall_usec();

        if (f->rec && f->rec->case_id)
                set_str(&f->last_case_id, f->rec->case_id);
        if (f->rec)
                f->rec->fault = NULL; /* the old record finishes delivering alone */
        f->rec = NULL;
        f->state = FAULT_FIRING;
        f->level = hit->level;
        f->first_seen = f->last_seen = now;
        f->cleared_at = 0;
        f->occurrences = 1;
        cJSON_Delete(f->evidence);
        f->evidence = NULL;
        take_text(f, hit);
        evidence_add(f, hit->event);
        f->rec = rec_new(fs, f);
        if (!f->rec)
                log_err("fault %s: out of memory preparing its case; it will not be opened", f->key);
        fs->stats.firing++;
        log_fault(LOG_LEVEL_NOTICE, f->key, rule_level_to_string(f->level), rule_name(hit->rule), NULL,
                  "firing at %s (rule %s): %s", rule_level_to_string(f->level), rule_name(hit->rule), hit->title);
}

/* fresh: f->readings are those of the event that cleared it; otherwise
 * (cleared by time passing, or by a reload) they are the firing ones and
 * the update says null rather than repeat them. */
static void fault_clear(struct faults *fs, struct fault *f, const char *why, bool fresh)
{
        char ts[40];
        cJSON *extra = cJSON_CreateObject();

        f->state = FAULT_CLEARED;
        f->cleared_at = time_wall_usec();
        fs->stats.firing--;
        fs->stats.cleared++;
        log_fault(LOG_LEVEL_NOTICE, f->key, rule_level_to_string(f->level), f->rule, f->rec ? f->rec->case_id : NULL,
                  "cleared (%s)", why);
        if (extra) {
                cJSON_AddStringToObject(extra, "message", why);
                cJSON_AddStringToObject(extra, "cleared_at", time_format_rfc3339(f->cleared_at, ts, sizeof ts));
                if (!fresh)
                        cJSON_AddNullToObject(extra, "readings");
        }
        if (f->rec)
                rec_queue_update(f->rec, f, "cleared", extra);
        else
                cJSON_Delete(extra);
}

static void fault_level_changed(struct fault *f, enum rule_level old, const char *reason)
{
        cJSON *extra;

        log_fault(LOG_LEVEL_NOTICE, f->key, rule_level_to_string(f->level), f->rule, f->rec ? f->rec->case_id : NULL,
                  "level %s -> %s (%s)", rule_level_to_string(old), rule_level_to_string(f->level), reason);
        if (!f->rec)
                return;
        extra = cJSON_CreateObject();
        if (!extra || !cJSON_AddStringToObject(extra, "level", rule_level_to_string(f->level)) ||
            !cJSON_AddStringToObject(extra, "previous_level", rule_level_to_string(old)) ||
            !cJSON_AddStringToObject(extra, "reason", reason) || !cJSON_AddStringToObject(extra, "title", f->title)) {
                log_err("fault %s: out of memory queueing the level change; the case keeps level %s", f->key,
                        rule_level_to_string(old));
                cJSON_Delete(extra);
                return;
        }
        rec_queue_update(f->rec, f, "level", extra);
}

void faults_handle_hit(const struct rule_hit *hit, void *userdata)
{
        struct faults *fs = userdata;
        struct fault *f = fault_find(fs, hit->key);
        const char *name = rule_name(hit->rule);
        ssize_t i;
        char reason[600];

        switch (hit->transition) {
        case RULE_FIRING:
                if (!f && !(f = fault_create(fs, hit->key))) {
                        log_warning("fault %s: not recorded (fault table full or out of memory)", hit->key);
                        return;
                }
                i = fault_rule_index(f, name);
                if (i < 0) {
                        if (f->n_rules == FAULT_RULES_MAX) {
                                log_warning("fault %s: more than %d rules firing; ignoring rule %s", f->key,
                                            FAULT_RULES_MAX, name);
                                return;
                        }
                        f->rules[f->n_rules].name = xstrdup(name);
                        if (!f->rules[f->n_rules].name)
                                return;
                        f->rules[f->n_rules++].level = hit->level;
                } else {
                        f->rules[i].level = hit->level;
                }
                if (f->state != FAULT_FIRING) {
                        fault_start(fs, f, hit);
                } else if (hit->level < f->level) {
                        enum rule_level old = f->level;
                        f->level = hit->level;
                        take_text(f, hit);
                        f->occurrences++;
                        f->last_seen = hit->event ? hit->event->wall_usec : time_wall_usec();
                        evidence_add(f, hit->event);
                        snprintf(reason, sizeof reason, "rule %s fired: %s", name, hit->title);
                        fault_level_changed(f, old, reason);
                } else {
                        f->occurrences++;
                        f->last_seen = hit->event ? hit->event->wall_usec : time_wall_usec();
                }
                break;
        case RULE_REPEAT:
                if (!f || f->state != FAULT_FIRING)
                        return;
                f->occurrences++;
                f->last_seen = hit->event ? hit->event->wall_usec : time_wall_usec();
                if (f->rule && strcmp(f->rule, name) == 0)
                        fault_set_readings(f, hit->event);
                /* Nothing to send now: the once-a-second walk batches
                 * occurrences, so a storm costs no walk per event. */
                return;
        case RULE_CLEARED:
                if (!f || (i = fault_rule_index(f, name)) < 0)
                        return;
                fault_drop_rule(f, (size_t)i);
                if (f->state != FAULT_FIRING)
                        return;
                if (f->n_rules == 0) {
                        evidence_add(f, hit->event);
                        /* The "cleared" update carries the reading that cleared it; a
                         * clear found by the timer names it through the title the
                         * engine rendered from the last event. */
                        fault_set_readings(f, hit->event);
                        if (hit->event)
                                snprintf(reason, sizeof reason, "clear condition of rule %s held", name);
                        else if (hit->rule && rule_clear_after_usec(hit->rule)) {
                                char dur[32];
                                duration_format(rule_clear_after_usec(hit->rule), dur, sizeof dur);
                                snprintf(reason, sizeof reason, "no further event for %s (rule %s; last: %.400s)", dur,
                                         name, hit->title);
                        } else
                                snprintf(reason, sizeof reason, "clear condition of rule %s held (last: %.400s)", name,
                                         hit->title);
                        fault_clear(fs, f, reason, hit->event != NULL);
                } else if (f->rule && strcmp(f->rule, name) == 0) {
                        ssize_t top = fault_top_rule(f);
                        enum rule_level old = f->level;
                        f->level = f->rules[top].level;
                        set_str(&f->rule, f->rules[top].name);
                        if (f->level != old) {
                                snprintf(reason, sizeof reason, "rule %s cleared; rule %s still firing", name,
                                         f->rules[top].name);
                                fault_level_changed(f, old, reason);
                        }
                }
                break;
        default:
                return;
        }
        faults_flush(fs);
}

void faults_rules_changed(struct faults *fs, const struct ruleset *rs)
{
        for (size_t b = 0; b < FAULT_BUCKETS; b++)
                for (struct fault *f = fs->buckets[b]; f; f = f->next) {
                        for (size_t i = 0; i < f->n_rules;) {
                                bool found = false;
                                for (size_t j = 0; j < ruleset_count(rs) && !found; j++)
                                        found = strcmp(rule_name(ruleset_get(rs, j)), f->rules[i].name) == 0;
                                if (found)
                                        i++;
                                else
                                        fault_drop_rule(f, i);
                        }
                        if (f->state == FAULT_FIRING && f->n_rules == 0)
                                fault_clear(fs, f, "its rules were removed by a reload", false);
                }
        faults_flush(fs);
}

/* ---- delivery ---- */

static void rec_failed(struct case_rec *r, const char *what, const struct sender_result *res)
{
        struct faults *fs = r->owner;
        char msg[512];

        if (res->http_status) {
                char text[300];
                snprintf(msg, sizeof msg, "HTTP %ld: %s", res->http_status,
                         answer_error_text(res->body, res->body_len, text, sizeof text));
        } else {
                snprintf(msg, sizeof msg, "%s", res->error ? res->error : "unknown error");
        }
        r->failures++;
        fs->stats.send_failures++;
        r->next_try_mono = time_mono_usec() + fs->set.retry_usec;
        if (res->http_status == 401)
                log_err("fault %s: central API refused the bearer token (HTTP 401) on %s; check token_file "
                        "(retrying every %" PRIu64 "s)",
                        r->fault_key, what, fs->set.retry_usec / 1000000);
        else if (r->failures == 1 || !r->last_error || strcmp(r->last_error, msg) != 0)
                log_fault(LOG_LEVEL_WARNING, r->fault_key, NULL, NULL, r->case_id,
                          "%s failed: %s (retrying every %" PRIu64 "s)", what, msg, fs->set.retry_usec / 1000000);
        set_str(&r->last_error, msg);
}

static void on_open_done(const struct sender_result *res, void *userdata)
{
        struct case_rec *r = userdata;

        r->in_flight = false;
        if (res->http_status == 200 || res->http_status == 201) {
                int q = answer_parse_case_id(res->body, res->body_len, &r->case_id);
                if (q == 0) {
                        r->owner->stats.cases_opened++;
                        log_fault(LOG_LEVEL_NOTICE, r->fault_key,
                                  r->fault ? rule_level_to_string(r->fault->level) : NULL,
                                  r->fault ? r->fault->rule : NULL, r->case_id, "case %s %s%s", r->case_id,
                                  res->http_status == 201 ? "opened" : "already open (idempotent retry)",
                                  r->failures ? " after failed attempts" : "");
                        r->failures = 0;
                        faults_flush(r->owner);
                        return;
                }
                struct sender_result bad = *res;
                bad.http_status = 0;
                bad.error = q == -ENOMEM ? "out of memory reading the answer" : "answer carries no usable case id";
                rec_failed(r, "opening the case", &bad);
                return;
        }
        rec_failed(r, "opening the case", res);
}

static void on_update_done(const struct sender_result *res, void *userdata)
{
        struct case_rec *r = userdata;
        struct update *u = r->updates;

        r->in_flight = false;
        if (res->http_status == 200 || res->http_status == 201) {
                log_fault(LOG_LEVEL_INFO, r->fault_key, NULL, NULL, r->case_id, "case %s told '%s'", r->case_id,
                          u->type);
                r->updates = u->next;
                if (!r->updates)
                        r->updates_tail = NULL;
                update_free(u);
                r->failures = 0;
                faults_flush(r->owner);
                return;
        }
        rec_failed(r, "updating the case", res);
}

static void rec_send(struct faults *fs, struct case_rec *r, uint64_t now)
{
        char path[200];
        int ret;

        if (r->in_flight || now < r->next_try_mono)
                return;
        if (!r->case_id) {
                ret = sender_request(fs->sender, "POST", "/api/v1/cases", r->open_body, r->idem_key, on_open_done, r);
        } else if (r->updates) {
                snprintf(path, sizeof path, "/api/v1/cases/%s/updates", r->case_id);
                ret = sender_request(fs->sender, "POST", path, r->updates->body, r->updates->idem_key, on_update_done,
                                     r);
        } else {
                return;
        }
        if (ret < 0) {
                char why[200];
                struct sender_result res = {.body = "", .error = why};
                snprintf(why, sizeof why, "cannot start the request: %s%s", strerror(-ret),
                         ret == -ENOENT ? " (is weibao-sender installed beside weibao-agent or in libexec?)" : "");
                rec_failed(r, r->case_id ? "updating the case" : "opening the case", &res);
                return;
        }
        r->in_flight = true;
}

void faults_flush(struct faults *fs)
{
        uint64_t now = time_mono_usec();
        struct case_rec *r, *next;

        for (r = fs->recs; r; r = next) {
                next = r->next;
                /* Batched occurrence counts: at most one update per interval. */
                if (r->fault && r->fault->state == FAULT_FIRING && r->case_id &&
                    r->fault->occurrences != r->occurrences_reported &&
                    now - r->last_occurrence_mono >= fs->set.occurrence_usec && !r->updates) {
                        r->last_occurrence_mono = now;
                        rec_queue_update(r, r->fault, "occurrence", NULL);
                }
                if (rec_done(r)) {
                        if (!r->fault)
                                rec_unlink_free(fs, r);
                        continue;
                }
                rec_send(fs, r, now);
        }
}

static uint64_t on_retry_timer(struct loop_source *s, uint64_t now, void *userdata)
{
        struct faults *fs = userdata;

        (void)s;
        (void)now;
        faults_flush(fs);
        return 1000000; /* a cheap walk once a second; each record keeps its own retry time */
}

int faults_new(struct loop *loop, const struct identity *id, struct sender *sender,
               const struct faults_settings *settings, struct faults **ret)
{
        struct faults *fs = xcalloc(1, sizeof *fs);
        int r;

        if (!fs)
                return -ENOMEM;
        fs->loop = loop;
        fs->id = id;
        fs->sender = sender;
        faults_set_settings(fs, settings);
        r = loop_add_timer(loop, 1000000, 100000, "fault-delivery", on_retry_timer, fs, &fs->timer);
        if (r < 0) {
                free(fs);
                return r;
        }
        *ret = fs;
        return 0;
}

void faults_set_settings(struct faults *fs, const struct faults_settings *settings)
{
        fs->set = *settings;
        if (fs->set.retry_usec == 0)
                fs->set.retry_usec = 30000000;
        if (fs->set.max_faults == 0)
                fs->set.max_faults = 10000;
}

void faults_free(struct faults *fs)
{
        if (!fs)
                return;
        loop_remove(fs->timer);
        for (size_t b = 0; b < FAULT_BUCKETS; b++)
                while (fs->buckets[b]) {
                        struct fault *f = fs->buckets[b];
                        fs->buckets[b] = f->next;
                        fault_free(f);
                }
        while (fs->recs) {
                struct case_rec *r = fs->recs;
                fs->recs = r->next;
                rec_free(r);
        }
        free(fs);
}

void faults_get_stats(const struct faults *fs, struct faults_stats *ret)
{
        *ret = fs->stats;
        ret->sends_pending = 0;
        for (const struct case_rec *r = fs->recs; r; r = r->next) {
                if (!r->case_id)
                        ret->sends_pending++;
                for (const struct update *u = r->updates; u; u = u->next)
                        ret->sends_pending++;
        }
}

cJSON *faults_to_json(const struct faults *fs)
{
        cJSON *a = cJSON_CreateArray();
        char ts[40];

        if (!a)
                return NULL;
        for (size_t b = 0; b < FAULT_BUCKETS; b++)
                for (const struct fault *f = fs->buckets[b]; f; f = f->next) {
                        cJSON *o = cJSON_CreateObject();
                        if (!o)
                                break;
                        cJSON_AddStringToObject(o, "key", f->key);
                        cJSON_AddStringToObject(o, "state", fault_state_to_string(f->state));
                        cJSON_AddStringToObject(o, "level", rule_level_to_string(f->level));
                        cJSON_AddStringToObject(o, "rule", f->rule ? f->rule : "");
                        cJSON_AddStringToObject(o, "title", f->title ? f->title : "");
                        cJSON_AddNumberToObject(o, "occurrences", (double)f->occurrences);
                        cJSON_AddStringToObject(o, "first_seen", time_format_rfc3339(f->first_seen, ts, sizeof ts));
                        cJSON_AddStringToObject(o, "last_seen", time_format_rfc3339(f->last_seen, ts, sizeof ts));
                        if (f->state == FAULT_CLEARED && f->cleared_at)
                                cJSON_AddStringToObject(o, "cleared_at",
                                                        time_format_rfc3339(f->cleared_at, ts, sizeof ts));
                        if (f->rec && f->rec->case_id)
                                cJSON_AddStringToObject(o, "case_id", f->rec->case_id);
                        else if (f->rec)
                                cJSON_AddNullToObject(o, "case_id");
                        else if (f->last_case_id)
                                cJSON_AddStringToObject(o, "case_id", f->last_case_id);
                        const char *delivery = !f->rec            ? "none"
                                               : !f->rec->case_id ? "opening"
                                               : f->rec->updates  ? "updating"
                                                                  : "delivered";
                        cJSON_AddStringToObject(o, "delivery", delivery);
                        if (f->rec && f->rec->last_error && f->rec->failures)
                                cJSON_AddStringToObject(o, "last_error", f->rec->last_error);
                        if (f->readings)
                                json_add(o, "readings", cJSON_Duplicate(f->readings, 1));
                        json_add(a, NULL, o);
                }
        return a;
}
