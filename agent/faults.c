/* faults: see faults.h.
 *
 * Data: a fault per key in a chained hash table. A fault knows the outbox
 * record of its case (case_ref) for as long as it may still send to it: the
 * firing period, and after the clear the reopen window. "hold" says why a
 * firing fault has no case of its own (a maintenance window, or a storm
 * summary case that stands for it). Changed faults are marked dirty and
 * written as JSON documents at the store's next commit; occurrence counts of
 * repeats mark a fault only lazily (written within a second), so a trap storm
 * costs no commit per trap.
 *
 * A cleared fault is forgotten once its reopen and flap windows are over.
 * What outlives it is the id of its last case (a "past case", in a table of
 * its own, written as a row of the fault table under the same key), so that
 * a recurrence weeks later still opens a case naming the one before it. */
#include "faults.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/event.h"
#include "../lib/hash.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "history.h"
#include "identity.h"
#include "loop.h"
#include "outbox.h"
#include "store.h"

#define FAULT_BUCKETS 4096
#define FAULT_RULES_MAX 16   /* rules firing for one key at once */
#define FAULT_EVIDENCE_MAX 8 /* events kept per fault: the first and the latest ones */
#define FLIPS_MAX 64         /* state changes remembered per fault (flap_count is capped below this) */
#define SUMMARY_KEYS_MAX 200 /* keys a summary case lists by name; the rest are counted */
#define SUMMARY_NOTE_USEC 1000000
#define OPEN_RETRY_MAX 64 /* refused case opens (and updates) tried again per walk */
#define STORM_PREFIX "storm:"
#define PAST_KEEP_USEC (90 * 86400 * 1000000LL) /* a quarter: the inspection cycle */
#define PAST_SWEEP_USEC 60000000                /* how often expired past cases are dropped */

enum fault_hold {
        HOLD_NONE,        /* has its own case, or is cleared */
        HOLD_MAINTENANCE, /* firing during a maintenance window: its case opens when the window ends */
        HOLD_SUMMARY,     /* firing, stood for by the summary case summary_key */
        HOLD_MAX,
};
static const char *const hold_names[HOLD_MAX] = {"none", "maintenance", "summary"};

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
        uint64_t occurrences, occ_reported;
        uint64_t last_occ_mono;
        struct firing_rule rules[FAULT_RULES_MAX];
        size_t n_rules;
        cJSON *readings;
        cJSON *evidence;
        int64_t case_ref;           /* the outbox record of its case; 0: none */
        char *case_id;              /* the central side's id, once known */
        char *prev_case_id;         /* the case of an earlier firing period, named by the next */
        bool case_active;           /* what the case was last told: firing (true) or cleared */
        enum rule_level case_level; /* the level the case was last told */
        bool case_owed;             /* firing, wants a case, but the outbox refused its open: the walk retries */
        bool update_owed;           /* the outbox refused an update: the walk brings the case up to date */
        enum fault_hold hold;
        char *summary_key; /* HOLD_SUMMARY */
        char *hold_why;    /* HOLD_MAINTENANCE: the window */
        /* flapping */
        int64_t flips[FLIPS_MAX]; /* wall µs of the latest state changes, a ring */
        unsigned n_flips, flip_next;
        bool flapping;
        uint64_t flap_changes; /* changes not reported one by one */
        /* summary faults ("storm:RULE") */
        bool is_summary;
        uint64_t members_total, members_active, members_unlisted;
        char **member_keys; /* listed so far; the last members_new are not yet on the case */
        size_t n_member_keys, members_new;
        uint64_t last_note_mono;
        bool dirty, lazy_dirty, in_dirty;
        struct fault *next;
};

/* The last case of a forgotten fault, for the next firing period to name. */
struct past_case {
        char *key;
        char *case_id;
        int64_t cleared_at; /* wall µs */
        bool dirty;         /* not yet written */
        struct past_case *next;
};

struct rule_storm {
        char *rule;
        uint64_t window_start;
        unsigned count;
        struct rule_storm *next;
};

struct faults {
        struct loop *loop;
        const struct identity *id;
        struct store *st;
        struct outbox *ob;
        struct faults_settings set;
        struct loop_source *timer;
        struct fault *buckets[FAULT_BUCKETS];
        size_t n_faults;
        struct fault **dirty; /* faults changed since the last commit */
        size_t n_dirty, cap_dirty;
        bool dirty_all; /* the list lost track (allocation failure): write them all */
        char **deleted; /* keys whose rows go in the next commit */
        size_t n_deleted, cap_deleted;
        struct past_case *past[FAULT_BUCKETS];
        size_t n_past, n_past_dirty;
        uint64_t past_sweep_mono;
        struct rule_storm *storms;
        double tokens;
        uint64_t tokens_mono;
        bool hold_cases;
        char *hold_why;
        bool any_lazy;
        struct history *history;
        struct faults_stats stats;
};

static const char *const fault_state_names[FAULT_STATE_MAX] = {"firing", "cleared"};

const char *fault_state_to_string(enum fault_state s)
{
        return s < FAULT_STATE_MAX ? fault_state_names[s] : "unknown";
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

void faults_set_history(struct faults *fs, struct history *h)
{
        fs->history = h;
}

/* A moment in the fault's life for the inspection's history. */
static void note(struct faults *fs, const struct fault *f, const char *kind, const char *why)
{
        cJSON *d;

        if (!fs->history || !(d = cJSON_CreateObject()))
                return;
        cJSON_AddStringToObject(d, "level", rule_level_to_string(f->level));
        cJSON_AddStringToObject(d, "rule", f->rule ? f->rule : "");
        cJSON_AddStringToObject(d, "title", f->title ? f->title : "");
        if (why)
                cJSON_AddStringToObject(d, "reason", why);
        if (f->case_id)
                cJSON_AddStringToObject(d, "case_id", f->case_id);
        history_note(fs->history, time_wall_usec(), kind, f->key, d);
}

/* ---- persistence ---- */

static void remember(struct faults *fs, struct fault *f)
{
        if (f->in_dirty)
                return;
        if (fs->n_dirty == fs->cap_dirty) {
                size_t nc = fs->cap_dirty ? 2 * fs->cap_dirty : 256;
                struct fault **nd = xrealloc(fs->dirty, nc * sizeof *nd);
                if (!nd) {
                        fs->dirty_all = true;
                        return;
                }
                fs->dirty = nd;
                fs->cap_dirty = nc;
        }
        fs->dirty[fs->n_dirty++] = f;
        f->in_dirty = true;
}

static void mark(struct faults *fs, struct fault *f)
{
        f->dirty = true;
        remember(fs, f);
        store_mark_dirty(fs->st);
}

/* Changes that may wait for the once-a-second walk (occurrence counts). */
static void mark_lazy(struct faults *fs, struct fault *f)
{
        f->lazy_dirty = true;
        remember(fs, f);
        fs->any_lazy = true;
}

static cJSON *fault_doc(const struct fault *f)
{
        cJSON *o = cJSON_CreateObject(), *a;

        if (!o)
                return NULL;
        cJSON_AddStringToObject(o, "state", fault_state_to_string(f->state));
        cJSON_AddStringToObject(o, "level", rule_level_to_string(f->level));
        cJSON_AddStringToObject(o, "rule", f->rule ? f->rule : "");
        cJSON_AddStringToObject(o, "title", f->title ? f->title : "");
        cJSON_AddStringToObject(o, "description", f->description ? f->description : "");
        cJSON_AddNumberToObject(o, "first_seen", (double)f->first_seen);
        cJSON_AddNumberToObject(o, "last_seen", (double)f->last_seen);
        cJSON_AddNumberToObject(o, "cleared_at", (double)f->cleared_at);
        cJSON_AddNumberToObject(o, "occurrences", (double)f->occurrences);
        cJSON_AddNumberToObject(o, "occ_reported", (double)f->occ_reported);
        if ((a = cJSON_AddArrayToObject(o, "rules")))
                for (size_t i = 0; i < f->n_rules; i++) {
                        cJSON *r = cJSON_CreateObject();
                        if (r && cJSON_AddStringToObject(r, "name", f->rules[i].name) &&
                            cJSON_AddStringToObject(r, "level", rule_level_to_string(f->rules[i].level)))
                                json_add(a, NULL, r);
                        else
                                cJSON_Delete(r);
                }
        if (f->readings)
                json_add(o, "readings", cJSON_Duplicate(f->readings, 1));
        if (f->evidence)
                json_add(o, "evidence", cJSON_Duplicate(f->evidence, 1));
        cJSON_AddNumberToObject(o, "case_ref", (double)f->case_ref);
        if (f->case_id)
                cJSON_AddStringToObject(o, "case_id", f->case_id);
        if (f->prev_case_id)
                cJSON_AddStringToObject(o, "prev_case_id", f->prev_case_id);
        cJSON_AddBoolToObject(o, "case_active", f->case_active);
        cJSON_AddStringToObject(o, "case_level", rule_level_to_string(f->case_level));
        if (f->case_owed)
                cJSON_AddBoolToObject(o, "case_owed", true);
        if (f->update_owed)
                cJSON_AddBoolToObject(o, "update_owed", true);
        cJSON_AddStringToObject(o, "hold", hold_names[f->hold]);
        if (f->summary_key)
                cJSON_AddStringToObject(o, "summary_key", f->summary_key);
        if (f->hold_why)
                cJSON_AddStringToObject(o, "hold_why", f->hold_why);
        cJSON_AddBoolToObject(o, "flapping", f->flapping);
        cJSON_AddNumberToObject(o, "flap_changes", (double)f->flap_changes);
        if ((a = cJSON_AddArrayToObject(o, "flips")))
                for (unsigned i = 0; i < f->n_flips; i++)
                        json_add(a, NULL,
                                 cJSON_CreateNumber(
                                         (double)f->flips[(f->flip_next + FLIPS_MAX - f->n_flips + i) % FLIPS_MAX]));
        if (f->is_summary) {
                cJSON_AddBoolToObject(o, "is_summary", true);
                cJSON_AddNumberToObject(o, "members_total", (double)f->members_total);
                cJSON_AddNumberToObject(o, "members_active", (double)f->members_active);
                cJSON_AddNumberToObject(o, "members_unlisted", (double)f->members_unlisted);
                cJSON_AddNumberToObject(o, "members_new", (double)f->members_new);
                if ((a = cJSON_AddArrayToObject(o, "member_keys")))
                        for (size_t i = 0; i < f->n_member_keys; i++)
                                json_add(a, NULL, cJSON_CreateString(f->member_keys[i]));
        }
        return o;
}

/* Queues the row of key for deletion at the next commit, taking key.
 * Returns 0, or -ENOMEM (key not taken). */
static int fs_queue_delete(struct faults *fs, char *key)
{
        if (fs->n_deleted == fs->cap_deleted) {
                size_t nc = fs->cap_deleted ? 2 * fs->cap_deleted : 64;
                char **nd = xrealloc(fs->deleted, nc * sizeof *nd);
                if (!nd)
                        return -ENOMEM;
                fs->deleted = nd;
                fs->cap_deleted = nc;
        }
        fs->deleted[fs->n_deleted++] = key;
        store_mark_dirty(fs->st);
        return 0;
}

/* The row of a past case: {"past": {"case_id", "cleared_at", "cleared"}}. */
static cJSON *past_doc(const struct past_case *p)
{
        cJSON *o = cJSON_CreateObject(), *x;
        char ts[40];

        if (!o || !(x = cJSON_AddObjectToObject(o, "past")) || !cJSON_AddStringToObject(x, "case_id", p->case_id) ||
            !cJSON_AddNumberToObject(x, "cleared_at", (double)p->cleared_at) ||
            !cJSON_AddStringToObject(x, "cleared", time_format_rfc3339(p->cleared_at, ts, sizeof ts))) {
                cJSON_Delete(o);
                return NULL;
        }
        return o;
}

/* Writes doc (taken; NULL: out of memory) as the row of key. */
static int put_doc(struct store *st, const char *key, cJSON *doc)
{
        char *s = doc ? cJSON_PrintUnformatted(doc) : NULL;
        int r;

        cJSON_Delete(doc);
        if (!s)
                return -ENOMEM;
        r = store_put_fault(st, key, s);
        free(s);
        return r;
}

static int fs_write(struct store *st, void *userdata)
{
        struct faults *fs = userdata;
        int r;

        /* Deletions first: a key forgotten and seen again before this commit
         * has a new row to keep. */
        for (size_t i = 0; i < fs->n_deleted; i++)
                if ((r = store_del_fault(st, fs->deleted[i])) < 0)
                        return r;
        for (size_t b = 0, i = 0; fs->dirty_all ? b < FAULT_BUCKETS : i < fs->n_dirty; b++, i++)
                for (struct fault *f = fs->dirty_all ? fs->buckets[b] : fs->dirty[i]; f;
                     f = fs->dirty_all ? f->next : NULL) {
                        if ((f->dirty || f->lazy_dirty) && (r = put_doc(st, f->key, fault_doc(f))) < 0)
                                return r;
                }
        for (size_t b = 0; fs->n_past_dirty && b < FAULT_BUCKETS; b++)
                for (const struct past_case *p = fs->past[b]; p; p = p->next)
                        if (p->dirty && (r = put_doc(st, p->key, past_doc(p))) < 0)
                                return r;
        return 0;
}

static void fs_done(struct store *st, bool committed, void *userdata)
{
        struct faults *fs = userdata;

        (void)st;
        if (!committed)
                return;
        if (fs->dirty_all)
                for (size_t b = 0; b < FAULT_BUCKETS; b++)
                        for (struct fault *f = fs->buckets[b]; f; f = f->next)
                                f->dirty = f->lazy_dirty = false;
        for (size_t i = 0; i < fs->n_dirty; i++)
                fs->dirty[i]->dirty = fs->dirty[i]->lazy_dirty = fs->dirty[i]->in_dirty = false;
        fs->n_dirty = 0;
        fs->dirty_all = false;
        for (size_t i = 0; i < fs->n_deleted; i++)
                free(fs->deleted[i]);
        fs->n_deleted = 0;
        fs->any_lazy = false;
        for (size_t b = 0; fs->n_past_dirty && b < FAULT_BUCKETS; b++)
                for (struct past_case *p = fs->past[b]; p; p = p->next)
                        if (p->dirty) {
                                p->dirty = false;
                                fs->n_past_dirty--;
                        }
}

/* ---- the fault table ---- */

static struct fault *fault_find(struct faults *fs, const char *key)
{
        struct fault *f = fs->buckets[hash_fnv_str(key) % FAULT_BUCKETS];

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
        for (size_t i = 0; i < f->n_member_keys; i++)
                free(f->member_keys[i]);
        free(f->member_keys);
        free(f->key);
        free(f->rule);
        free(f->title);
        free(f->description);
        free(f->case_id);
        free(f->prev_case_id);
        free(f->summary_key);
        free(f->hold_why);
        cJSON_Delete(f->readings);
        cJSON_Delete(f->evidence);
        free(f);
}

/* ---- past cases ---- */

static struct past_case **past_slot(struct faults *fs, const char *key)
{
        struct past_case **pp = &fs->past[hash_fnv_str(key) % FAULT_BUCKETS];

        while (*pp && strcmp((*pp)->key, key) != 0)
                pp = &(*pp)->next;
        return pp;
}

/* Unlinks *pp; its row is deleted at the next commit when drop_row (an
 * entry taken up by a new fault is overwritten by that fault's row instead). */
static void past_unlink(struct faults *fs, struct past_case **pp, bool drop_row)
{
        struct past_case *p = *pp;

        *pp = p->next;
        fs->n_past--;
        if (p->dirty)
                fs->n_past_dirty--;
        if (drop_row && fs_queue_delete(fs, p->key) == 0)
                p->key = NULL;
        free(p->key);
        free(p->case_id);
        free(p);
}

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

        return (x > y) - (x < y);
}

/* The table is full: the oldest sixteenth goes (one scan and sort for many
 * insertions, so a burst of forgotten faults stays linear). Returns the
 * newest time that went: an entry no newer has no place either. */
static int64_t past_make_room(struct faults *fs)
{
        size_t n = 0, cut = fs->n_past / 16;
        size_t stop = fs->set.max_faults > cut ? fs->set.max_faults - cut : 0; /* the cap may have shrunk */
        int64_t *t = xcalloc(fs->n_past ? fs->n_past : 1, sizeof *t), limit;

        for (size_t b = 0; t && b < FAULT_BUCKETS; b++)
                for (const struct past_case *p = fs->past[b]; p; p = p->next)
                        t[n++] = p->cleared_at;
        if (t && n) {
                qsort(t, n, sizeof *t, cmp_i64);
                limit = t[cut];
        } else {
                limit = INT64_MAX; /* out of memory: make room all the same */
        }
        free(t);
        for (size_t b = 0; b < FAULT_BUCKETS && fs->n_past >= stop; b++)
                for (struct past_case **pp = &fs->past[b]; *pp;)
                        if ((*pp)->cleared_at <= limit)
                                past_unlink(fs, pp, true);
                        else
                                pp = &(*pp)->next;
        return limit;
}

/* Remembers case_id as the last case of key, taking key (freed on failure,
 * like a key queued for deletion); the oldest entries make room when there
 * are max_faults of them already (and one older than those is not kept).
 * written: loaded from its row, so nothing to write. */
static void past_remember(struct faults *fs, char *key, const char *case_id, int64_t cleared_at, bool written)
{
        struct past_case **pp = past_slot(fs, key), *p;

        if (*pp)
                past_unlink(fs, pp, false);
        p = fs->n_past >= fs->set.max_faults && cleared_at <= past_make_room(fs) ? NULL : xcalloc(1, sizeof *p);
        if (!p || !(p->case_id = xstrdup(case_id))) {
                free(p);
                if (fs_queue_delete(fs, key) < 0)
                        free(key);
                return;
        }
        p->key = key;
        p->cleared_at = cleared_at;
        pp = past_slot(fs, key);
        p->next = *pp;
        *pp = p;
        fs->n_past++;
        if (!written) {
                p->dirty = true;
                fs->n_past_dirty++;
                store_mark_dirty(fs->st);
        }
}

/* Past cases older than PAST_KEEP_USEC are dropped, once a minute. */
static void past_sweep(struct faults *fs, uint64_t mono, int64_t now)
{
        if (fs->past_sweep_mono && mono - fs->past_sweep_mono < PAST_SWEEP_USEC)
                return;
        fs->past_sweep_mono = mono;
        for (size_t b = 0; b < FAULT_BUCKETS; b++)
                for (struct past_case **pp = &fs->past[b]; *pp;)
                        if (now - (*pp)->cleared_at > PAST_KEEP_USEC)
                                past_unlink(fs, pp, true);
                        else
                                pp = &(*pp)->next;
}

/* A fresh cleared fault in the table; NULL (counted as shed) when full. */
static struct fault *fault_create(struct faults *fs, const char *key)
{
        struct fault *f;
        size_t b = hash_fnv_str(key) % FAULT_BUCKETS;

        if (fs->n_faults >= fs->set.max_faults) {
                fs->stats.shed++;
                return NULL;
        }
        f = xcalloc(1, sizeof *f);
        if (!f || !(f->key = xstrdup(key))) {
                free(f);
                fs->stats.shed++;
                return NULL;
        }
        f->state = FAULT_CLEARED;
        struct past_case **pp = past_slot(fs, key);
        if (*pp) { /* its next case names the last one */
                f->prev_case_id = (*pp)->case_id;
                (*pp)->case_id = NULL;
                past_unlink(fs, pp, false);
        }
        f->next = fs->buckets[b];
        fs->buckets[b] = f;
        fs->n_faults++;
        return f;
}

static int64_t wall_of(const struct rule_hit *hit)
{
        return hit->event ? hit->event->wall_usec : time_wall_usec();
}

/* ---- talking to the case ---- */

/* Queues an update of the given type with the fault's current figures plus
 * extra fields; takes ownership of extra (may be NULL). The fault's readings
 * go along unless extra says "readings": null (they would be stale).
 * Returns 0 (also when there is no case to tell), or negative errno when
 * the outbox refused it: the fault then owes its case an update, which the
 * walk sends once there is room (counted and logged once). */
static int queue_update(struct faults *fs, struct fault *f, const char *type, cJSON *extra)
{
        cJSON *o = extra ? extra : cJSON_CreateObject();
        char ts[40], *body = NULL;
        int r = -ENOMEM;

        if (!f->case_ref) {
                cJSON_Delete(o);
                return 0;
        }
        if (o && cJSON_AddStringToObject(o, "type", type) &&
            cJSON_AddNumberToObject(o, "occurrences", (double)(f->occurrences ? f->occurrences : 1)) &&
            cJSON_AddStringToObject(o, "last_seen", time_format_rfc3339(f->last_seen, ts, sizeof ts)) &&
            (!f->readings || cJSON_HasObjectItem(o, "readings") ||
             json_add(o, "readings", cJSON_Duplicate(f->readings, 1)) == 0))
                body = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (body)
                r = outbox_add_update(fs->ob, f->case_ref, type, body);
        free(body);
        if (r < 0) {
                if (!f->update_owed) {
                        fs->stats.lost++;
                        log_fault(LOG_LEVEL_ERR, f->key, NULL, NULL, f->case_id,
                                  "'%s' update not queued: %s; the case is brought up to date once there is room", type,
                                  r == -ENOBUFS ? "the outbox is full" : strerror(-r));
                }
                f->update_owed = true;
                mark(fs, f);
                return r;
        }
        f->occ_reported = f->occurrences;
        f->last_occ_mono = time_mono_usec();
        return 0;
}

static void queue_note(struct faults *fs, struct fault *f, const char *message, cJSON *extra)
{
        cJSON *o = extra ? extra : cJSON_CreateObject();

        if (o)
                cJSON_AddStringToObject(o, "message", message);
        queue_update(fs, f, "note", o);
}

static char *build_open_body(struct faults *fs, const struct fault *f, const char *why_late)
{
        cJSON *o = cJSON_CreateObject();
        char first[40], last[40];
        char *s = NULL;
        bool ok;

        if (!o)
                return NULL;
        ok = json_add(o, "agent", identity_to_json(fs->id)) == 0 && cJSON_AddStringToObject(o, "fault_key", f->key) &&
             cJSON_AddStringToObject(o, "level", rule_level_to_string(f->level)) &&
             cJSON_AddStringToObject(o, "rule", f->rule ? f->rule : "") &&
             cJSON_AddStringToObject(o, "title", f->title ? f->title : "") &&
             cJSON_AddStringToObject(o, "description", f->description ? f->description : "") &&
             cJSON_AddStringToObject(o, "first_seen", time_format_rfc3339(f->first_seen, first, sizeof first)) &&
             cJSON_AddStringToObject(o, "last_seen", time_format_rfc3339(f->last_seen, last, sizeof last)) &&
             cJSON_AddNumberToObject(o, "occurrences", (double)(f->occurrences ? f->occurrences : 1)) &&
             (!f->readings || json_add(o, "readings", cJSON_Duplicate(f->readings, 1)) == 0) &&
             (!f->evidence || json_add(o, "evidence", cJSON_Duplicate(f->evidence, 1)) == 0) &&
             (!why_late || cJSON_AddStringToObject(o, "held", why_late));
        if (ok && f->is_summary) {
                cJSON *k = cJSON_CreateArray();
                for (size_t i = 0; k && i < f->n_member_keys; i++)
                        json_add(k, NULL, cJSON_CreateString(f->member_keys[i]));
                ok = json_add(o, "storm_keys", k) == 0;
        }
        if (ok && f->prev_case_id)
                ok = cJSON_AddStringToObject(o, "previous_case_id", f->prev_case_id) != NULL;
        if (ok)
                s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        return s;
}

/* Opens a case for the fault's current firing period, following its old
 * case (whose record is released). */
static void open_case(struct faults *fs, struct fault *f, const char *why_late)
{
        int64_t old = f->case_ref, ref;
        const char *prev = f->case_id ? f->case_id : old ? outbox_case_id(fs->ob, old) : NULL;
        char *body, *idem;

        /* The new case names the latest one before it, never an older one.
         * Its id unknown yet (not acknowledged), the outbox adds it to the
         * request once known (prev_ref). A period that had no case of its
         * own (held, refused) leaves the last known one standing. */
        if (prev || old) {
                free(f->prev_case_id);
                f->prev_case_id = prev ? xstrdup(prev) : NULL;
        }
        body = build_open_body(fs, f, why_late);
        idem = xasprintf("%016" PRIx64 "-%" PRId64, hash_fnv_str(fs->id->agent_id) ^ hash_fnv_str(f->key),
                         f->first_seen);
        ref = body && idem ? outbox_open_case(fs->ob, f->key, body, idem, old) : -ENOMEM;
        free(body);
        free(idem);
        if (old)
                outbox_release(fs->ob, old);
        free(f->case_id);
        f->case_id = NULL;
        if (ref < 0) {
                /* Counted and logged once; the walk tries again while the
                 * fault fires (a retry that fails says nothing more). */
                f->case_ref = 0;
                if (!f->case_owed) {
                        fs->stats.lost++;
                        log_fault(LOG_LEVEL_ERR, f->key, rule_level_to_string(f->level), f->rule, NULL,
                                  "case not queued: %s; tried again every second while the fault fires",
                                  ref == -ENOBUFS ? "the outbox is full" : strerror((int)-ref));
                }
                f->case_owed = true;
                mark(fs, f);
                return;
        }
        if (f->case_owed) {
                f->case_owed = false;
                log_fault(LOG_LEVEL_NOTICE, f->key, rule_level_to_string(f->level), f->rule, NULL,
                          "case queued now (the outbox had refused it)");
        }
        f->case_ref = ref;
        f->case_active = true;
        f->case_level = f->level;
        f->update_owed = false; /* the new case starts up to date */
        f->occ_reported = f->occurrences;
        f->last_occ_mono = time_mono_usec();
        fs->stats.cases_wanted++;
        mark(fs, f);
}

/* ---- storms ---- */

static struct rule_storm *storm_of(struct faults *fs, const char *rule)
{
        struct rule_storm *s;

        for (s = fs->storms; s; s = s->next)
                if (strcmp(s->rule, rule) == 0)
                        return s;
        s = xcalloc(1, sizeof *s);
        if (!s || !(s->rule = xstrdup(rule))) {
                free(s);
                return NULL;
        }
        s->next = fs->storms;
        fs->storms = s;
        return s;
}

static void refill(struct faults *fs, uint64_t now)
{
        double add = (double)(now - fs->tokens_mono) / 60e6 * fs->set.case_rate;

        fs->tokens_mono = now;
        fs->tokens += add;
        if (fs->tokens > fs->set.case_burst)
                fs->tokens = fs->set.case_burst;
}

static void summary_text(struct faults *fs, struct fault *s)
{
        char *t = xasprintf("Fault storm: rule %s fired for %" PRIu64 " keys (one summary case instead of a case each)",
                            s->rule, s->members_total);
        char *d = xasprintf("More new faults of rule %s than storm control lets open cases of their own "
                            "(storm_keys %u within %" PRIu64 "s, case_rate %.0f/min, case_burst %u). "
                            "%" PRIu64 " faults joined this case, %" PRIu64 " still firing; storm_keys lists "
                            "them by key%s.",
                            s->rule, fs->set.storm_keys, fs->set.storm_window_usec / 1000000, fs->set.case_rate,
                            fs->set.case_burst, s->members_total, s->members_active,
                            s->members_unlisted ? " (the first ones; the rest are counted)" : "");

        if (t) {
                free(s->title);
                s->title = t;
        }
        if (d) {
                free(s->description);
                s->description = d;
        }
}

static void summary_join(struct faults *fs, struct fault *f, const char *why)
{
        char *skey = xasprintf(STORM_PREFIX "%s", f->rule ? f->rule : "");
        struct fault *s = skey ? fault_find(fs, skey) : NULL;
        char **nk;
        bool fresh = false; /* a new storm period: a new summary case */

        if (skey && !s)
                s = fault_create(fs, skey);
        if (!s) {
                free(skey);
                open_case(fs, f, NULL); /* better a case of its own than none */
                return;
        }
        f->hold = HOLD_SUMMARY;
        free(f->summary_key);
        f->summary_key = skey;
        mark(fs, f);
        if (s->state != FAULT_FIRING) {
                int64_t now = f->last_seen;
                bool reopen = s->case_ref && fs->set.reopen_window_usec &&
                              now - s->cleared_at <= (int64_t)fs->set.reopen_window_usec;
                s->is_summary = true;
                s->state = FAULT_FIRING;
                s->level = f->level;
                set_str(&s->rule, f->rule);
                s->members_active = 0;
                if (!reopen) {
                        fresh = true;
                        s->first_seen = now;
                        s->members_total = s->members_unlisted = 0;
                        for (size_t i = 0; i < s->n_member_keys; i++)
                                free(s->member_keys[i]);
                        s->n_member_keys = s->members_new = 0;
                }
                s->last_seen = now;
                fs->stats.firing++;
                log_fault(LOG_LEVEL_WARNING, s->key, rule_level_to_string(s->level), s->rule, NULL,
                          "storm control: new faults of rule %s go into one summary case (%s)", s->rule, why);
        } else if (f->level < s->level) {
                enum rule_level old = s->level;
                cJSON *x = cJSON_CreateObject();
                s->level = f->level;
                if (x) {
                        cJSON_AddStringToObject(x, "level", rule_level_to_string(s->level));
                        cJSON_AddStringToObject(x, "previous_level", rule_level_to_string(old));
                        cJSON_AddStringToObject(x, "reason", "a more urgent fault joined the storm");
                }
                if (queue_update(fs, s, "level", x) == 0)
                        s->case_level = s->level;
        }
        s->members_total++;
        s->members_active++;
        s->occurrences = s->members_total;
        s->last_seen = f->last_seen;
        if (s->n_member_keys < SUMMARY_KEYS_MAX &&
            (nk = xrealloc(s->member_keys, (s->n_member_keys + 1) * sizeof *nk)) &&
            (s->member_keys = nk, nk[s->n_member_keys] = xstrdup(f->key))) {
                s->n_member_keys++;
                s->members_new++;
        } else {
                s->members_unlisted++;
        }
        summary_text(fs, s);
        /* Past its reopen window the old summary case is left alone, as an
         * ordinary fault's is: the new one names it (previous_case_id). */
        if (!s->case_ref || fresh || !s->case_active) {
                if (!s->case_ref || fresh) {
                        s->members_new = 0; /* the open lists them */
                        open_case(fs, s, NULL);
                } else {
                        cJSON *x = cJSON_CreateObject();
                        if (x)
                                cJSON_AddStringToObject(x, "message", "the storm started again");
                        if (queue_update(fs, s, "reopened", x) == 0)
                                s->case_active = true;
                }
        }
        mark(fs, s);
}

static void summary_leave(struct faults *fs, struct fault *f)
{
        struct fault *s = f->summary_key ? fault_find(fs, f->summary_key) : NULL;

        f->hold = HOLD_NONE;
        if (!s || s->state != FAULT_FIRING)
                return;
        if (s->members_active)
                s->members_active--;
        s->last_seen = time_wall_usec();
        mark(fs, s);
        if (s->members_active == 0) {
                char why[200];
                snprintf(why, sizeof why, "all %" PRIu64 " faults of the storm cleared", s->members_total);
                s->state = FAULT_CLEARED;
                s->case_owed = false;
                s->cleared_at = s->last_seen;
                fs->stats.firing--;
                fs->stats.cleared++;
                log_fault(LOG_LEVEL_NOTICE, s->key, rule_level_to_string(s->level), s->rule, s->case_id, "cleared (%s)",
                          why);
                cJSON *x = cJSON_CreateObject();
                if (x) {
                        char ts[40];
                        cJSON_AddStringToObject(x, "message", why);
                        cJSON_AddStringToObject(x, "cleared_at", time_format_rfc3339(s->cleared_at, ts, sizeof ts));
                        cJSON_AddNullToObject(x, "readings");
                }
                if (queue_update(fs, s, "cleared", x) == 0)
                        s->case_active = false;
        }
}

/* A new firing period wants a case: open it, or let the summary case of its
 * rule stand for it when storm control says so. */
static void want_case(struct faults *fs, struct fault *f, const char *why_late)
{
        uint64_t now = time_mono_usec();
        struct rule_storm *rs = f->rule ? storm_of(fs, f->rule) : NULL;

        if (rs) {
                if (now - rs->window_start > fs->set.storm_window_usec) {
                        rs->window_start = now;
                        rs->count = 0;
                }
                rs->count++;
                if (fs->set.storm_keys && rs->count > fs->set.storm_keys) {
                        fs->stats.storm_summarised++;
                        summary_join(fs, f, "more new faults of this rule than storm_keys within storm_window");
                        return;
                }
        }
        refill(fs, now);
        if (fs->tokens < 1) {
                fs->stats.rate_limited++;
                summary_join(fs, f, "more new cases than case_rate and case_burst allow");
                return;
        }
        fs->tokens -= 1;
        open_case(fs, f, why_late);
}

/* ---- state changes ---- */

static unsigned changes_within(const struct fault *f, int64_t now, uint64_t window)
{
        unsigned n = 0;

        for (unsigned i = 0; i < f->n_flips; i++) {
                int64_t t = f->flips[(f->flip_next + FLIPS_MAX - 1 - i) % FLIPS_MAX];
                if (now - t > (int64_t)window)
                        break;
                n++;
        }
        return n;
}

/* Records a change of state and starts flapping when there were too many. */
static void note_change(struct faults *fs, struct fault *f, int64_t now)
{
        unsigned n;

        f->flips[f->flip_next] = now;
        f->flip_next = (f->flip_next + 1) % FLIPS_MAX;
        if (f->n_flips < FLIPS_MAX)
                f->n_flips++;
        if (f->flapping) {
                f->flap_changes++;
                return;
        }
        if (!fs->set.flap_count || f->is_summary)
                return;
        n = changes_within(f, now, fs->set.flap_window_usec);
        if (n <= fs->set.flap_count)
                return;
        f->flapping = true;
        f->flap_changes = 0;
        fs->stats.flapping++;
        char msg[300], dur[32];
        duration_format(fs->set.flap_window_usec, dur, sizeof dur);
        snprintf(msg, sizeof msg,
                 "flapping: %u state changes within %s; further changes are not reported one by one until it keeps "
                 "one state for %s",
                 n, dur, dur);
        log_fault(LOG_LEVEL_WARNING, f->key, rule_level_to_string(f->level), f->rule, f->case_id, "%s", msg);
        cJSON *x = cJSON_CreateObject();
        if (x)
                cJSON_AddBoolToObject(x, "flapping", true);
        queue_note(fs, f, msg, x);
}

static void settle(struct faults *fs, struct fault *f)
{
        char msg[300], dur[32];
        cJSON *x = cJSON_CreateObject();

        f->flapping = false;
        fs->stats.flapping--;
        duration_format(fs->set.flap_window_usec, dur, sizeof dur);
        snprintf(msg, sizeof msg, "stopped flapping after %" PRIu64 " more changes; %s for %s now", f->flap_changes,
                 fault_state_to_string(f->state), dur);
        log_fault(LOG_LEVEL_NOTICE, f->key, rule_level_to_string(f->level), f->rule, f->case_id, "%s", msg);
        if (x)
                cJSON_AddBoolToObject(x, "flapping", false);
        queue_note(fs, f, msg, x);
        if (f->state == FAULT_FIRING && !f->case_active && f->hold == HOLD_NONE) {
                if (queue_update(fs, f, "reopened", NULL) == 0)
                        f->case_active = true;
        } else if (f->state == FAULT_CLEARED && f->case_active) {
                char ts[40];
                cJSON *c = cJSON_CreateObject();
                if (c) {
                        cJSON_AddStringToObject(c, "message", "cleared while flapping, and stayed cleared");
                        cJSON_AddStringToObject(c, "cleared_at", time_format_rfc3339(f->cleared_at, ts, sizeof ts));
                }
                if (queue_update(fs, f, "cleared", c) == 0)
                        f->case_active = false;
        }
        f->flap_changes = 0;
        mark(fs, f);
}

/* The journal priority of a fault's firing and level lines: warning for P1
 * and P2, so that `journalctl -p warning` shows them beside the agent's own
 * troubles; notice for the rest (weibao-agent(8), JOURNAL). */
static enum log_level fault_priority(enum rule_level level)
{
        return level <= RULE_LEVEL_P2 ? LOG_LEVEL_WARNING : LOG_LEVEL_NOTICE;
}

static void fault_level_changed(struct faults *fs, struct fault *f, enum rule_level old, const char *reason)
{
        cJSON *x;

        log_fault(fault_priority(f->level), f->key, rule_level_to_string(f->level), f->rule, f->case_id,
                  "level %s -> %s (%s)", rule_level_to_string(old), rule_level_to_string(f->level), reason);
        mark(fs, f);
        /* the case hears the change from the level it was last told (an
         * update the outbox refused may have left it behind) */
        if (f->hold != HOLD_NONE || !f->case_ref || f->level == f->case_level)
                return;
        x = cJSON_CreateObject();
        if (!x || !cJSON_AddStringToObject(x, "level", rule_level_to_string(f->level)) ||
            !cJSON_AddStringToObject(x, "previous_level", rule_level_to_string(f->case_level)) ||
            !cJSON_AddStringToObject(x, "reason", reason) || !cJSON_AddStringToObject(x, "title", f->title)) {
                cJSON_Delete(x);
                if (!f->update_owed) {
                        fs->stats.lost++;
                        log_fault(LOG_LEVEL_ERR, f->key, NULL, NULL, f->case_id,
                                  "out of memory queueing the level change; the case keeps level %s for now",
                                  rule_level_to_string(f->case_level));
                }
                f->update_owed = true; /* the walk tells it */
                return;
        }
        if (queue_update(fs, f, "level", x) == 0)
                f->case_level = f->level;
}

static void fault_start(struct faults *fs, struct fault *f, const struct rule_hit *hit)
{
        int64_t now = wall_of(hit);
        enum rule_level old = f->level;
        bool reopen = f->case_ref && f->hold == HOLD_NONE &&
                      (f->flapping || (fs->set.reopen_window_usec && f->cleared_at &&
                                       now - f->cleared_at <= (int64_t)fs->set.reopen_window_usec));

        note_change(fs, f, now);
        f->state = FAULT_FIRING;
        f->case_owed = false;
        f->level = hit->level;
        take_text(f, hit);
        fs->stats.firing++;
        mark(fs, f);
        note(fs, f, "fault-firing", NULL);
        if (reopen) {
                f->occurrences++;
                f->last_seen = now;
                f->cleared_at = 0;
                evidence_add(f, hit->event);
                log_fault(LOG_LEVEL_NOTICE, f->key, rule_level_to_string(f->level), rule_name(hit->rule), f->case_id,
                          "firing again at %s (rule %s), back to its case: %s", rule_level_to_string(f->level),
                          rule_name(hit->rule), hit->title);
                if (f->flapping)
                        return;
                cJSON *x = cJSON_CreateObject();
                if (x)
                        cJSON_AddStringToObject(x, "message", hit->title);
                if (queue_update(fs, f, "reopened", x) == 0)
                        f->case_active = true;
                if (old != f->level) {
                        char reason[600];
                        snprintf(reason, sizeof reason, "recurred under rule %s: %s", rule_name(hit->rule), hit->title);
                        fault_level_changed(fs, f, old, reason);
                }
                return;
        }
        f->first_seen = f->last_seen = now;
        f->cleared_at = 0;
        f->occurrences = 1;
        cJSON_Delete(f->evidence);
        f->evidence = NULL;
        evidence_add(f, hit->event);
        log_fault(fault_priority(f->level), f->key, rule_level_to_string(f->level), rule_name(hit->rule), NULL,
                  "firing at %s (rule %s): %s", rule_level_to_string(f->level), rule_name(hit->rule), hit->title);
        if (fs->hold_cases) {
                f->hold = HOLD_MAINTENANCE;
                set_str(&f->hold_why, fs->hold_why);
                fs->stats.held_maintenance++;
                log_fault(LOG_LEVEL_NOTICE, f->key, NULL, NULL, NULL, "no case now: %s", fs->hold_why);
                return;
        }
        want_case(fs, f, NULL);
}

/* fresh: f->readings are those of the event that cleared it; otherwise
 * (cleared by time passing, or by a reload) they are the firing ones and
 * the update says null rather than repeat them. */
static void fault_clear(struct faults *fs, struct fault *f, const char *why, bool fresh)
{
        char ts[40];
        cJSON *x;

        f->state = FAULT_CLEARED;
        f->cleared_at = time_wall_usec();
        fs->stats.firing--;
        if (f->case_owed) {
                f->case_owed = false;
                log_fault(LOG_LEVEL_ERR, f->key, NULL, NULL, NULL,
                          "cleared before the outbox took its case: this firing period has none");
        }
        fs->stats.cleared++;
        note_change(fs, f, f->cleared_at);
        mark(fs, f);
        note(fs, f, "fault-cleared", why);
        log_fault(LOG_LEVEL_NOTICE, f->key, rule_level_to_string(f->level), f->rule, f->case_id, "cleared (%s)", why);
        if (f->hold == HOLD_MAINTENANCE) {
                f->hold = HOLD_NONE;
                log_fault(LOG_LEVEL_NOTICE, f->key, NULL, NULL, NULL,
                          "cleared within the maintenance window: no case opened");
                return;
        }
        if (f->hold == HOLD_SUMMARY) {
                summary_leave(fs, f);
                return;
        }
        if (f->flapping || !f->case_ref)
                return;
        x = cJSON_CreateObject();
        if (x) {
                cJSON_AddStringToObject(x, "message", why);
                cJSON_AddStringToObject(x, "cleared_at", time_format_rfc3339(f->cleared_at, ts, sizeof ts));
                if (!fresh)
                        cJSON_AddNullToObject(x, "readings");
        }
        if (queue_update(fs, f, "cleared", x) == 0)
                f->case_active = false;
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
                        f->last_seen = wall_of(hit);
                        evidence_add(f, hit->event);
                        snprintf(reason, sizeof reason, "rule %s fired: %s", name, hit->title);
                        fault_level_changed(fs, f, old, reason);
                } else {
                        /* also the first firing after a restart of a fault already firing */
                        f->occurrences++;
                        f->last_seen = wall_of(hit);
                        mark(fs, f);
                }
                break;
        case RULE_REPEAT:
                if (!f || f->state != FAULT_FIRING)
                        return;
                f->occurrences++;
                f->last_seen = wall_of(hit);
                if (f->rule && strcmp(f->rule, name) == 0)
                        fault_set_readings(f, hit->event);
                /* nothing to send now: the once-a-second walk batches
                 * occurrences, so a storm costs no write per event */
                mark_lazy(fs, f);
                return;
        case RULE_CLEARED:
                if (!f || (i = fault_rule_index(f, name)) < 0)
                        return;
                fault_drop_rule(f, (size_t)i);
                mark(fs, f);
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
                                fault_level_changed(fs, f, old, reason);
                        }
                }
                break;
        default:
                return;
        }
}

void faults_rules_changed(struct faults *fs, struct rule_engine *re)
{
        for (size_t b = 0; b < FAULT_BUCKETS; b++)
                for (struct fault *f = fs->buckets[b]; f; f = f->next) {
                        size_t before = f->n_rules;
                        for (size_t i = 0; i < f->n_rules;) {
                                if (rule_engine_has_state(re, f->rules[i].name, f->key))
                                        i++;
                                else
                                        fault_drop_rule(f, i);
                        }
                        if (f->n_rules != before)
                                mark(fs, f);
                        if (f->state == FAULT_FIRING && f->n_rules == 0 && !f->is_summary)
                                fault_clear(fs, f, "its rules were removed, or their key changed, by a reload", false);
                }
}

void faults_restore(struct faults *fs, struct rule_engine *re)
{
        uint64_t now = time_mono_usec();

        for (size_t b = 0; b < FAULT_BUCKETS; b++)
                for (struct fault *f = fs->buckets[b]; f; f = f->next) {
                        if (f->state != FAULT_FIRING || f->is_summary)
                                continue;
                        for (size_t i = 0; i < f->n_rules;) {
                                int r = rule_engine_restore(re, f->rules[i].name, f->key, f->title, now);
                                if (r == -ENOENT) {
                                        fault_drop_rule(f, i);
                                        mark(fs, f);
                                        continue;
                                }
                                if (r < 0)
                                        log_fault(LOG_LEVEL_WARNING, f->key, NULL, f->rules[i].name, f->case_id,
                                                  "rule state not restored (%s): it clears only by a reload",
                                                  strerror(-r));
                                i++;
                        }
                        if (f->n_rules == 0)
                                fault_clear(fs, f, "its rules are no longer loaded", false);
                }
}

void faults_hold_cases(struct faults *fs, bool hold, const char *why)
{
        fs->hold_cases = hold;
        set_str(&fs->hold_why, why);
        if (hold)
                return;
        for (size_t b = 0; b < FAULT_BUCKETS; b++)
                for (struct fault *f = fs->buckets[b]; f; f = f->next) {
                        if (f->hold != HOLD_MAINTENANCE)
                                continue;
                        f->hold = HOLD_NONE;
                        if (f->state != FAULT_FIRING)
                                continue;
                        char *late = xasprintf("detected during a maintenance window (%s); opened when it ended (%s)",
                                               f->hold_why ? f->hold_why : "", why ? why : "");
                        log_fault(LOG_LEVEL_NOTICE, f->key, rule_level_to_string(f->level), f->rule, NULL,
                                  "maintenance over, still firing: opening its case");
                        want_case(fs, f, late);
                        free(late);
                        mark(fs, f);
                }
}

/* ---- the walk: batched updates, settling, ageing out ---- */

/* The outbox refused an update of f's case (it was full): what the case
 * missed is told now in as few updates as bring it to where the fault
 * stands (its state, then its level; else its figures). The notes it
 * missed are not repeated. */
static void catch_up(struct faults *fs, struct fault *f)
{
        static const char late[] = "sent late: the outbox was full when it changed";
        char ts[40];
        cJSON *x;
        int r = 0;

        /* still owed while trying: a refusal is not counted or logged again */
        if (f->state == FAULT_FIRING && !f->case_active) {
                if ((x = cJSON_CreateObject()))
                        cJSON_AddStringToObject(x, "message", late);
                if ((r = queue_update(fs, f, "reopened", x)) == 0)
                        f->case_active = true;
        } else if (f->state == FAULT_CLEARED && f->case_active) {
                if ((x = cJSON_CreateObject())) {
                        cJSON_AddStringToObject(x, "message", late);
                        cJSON_AddStringToObject(x, "cleared_at", time_format_rfc3339(f->cleared_at, ts, sizeof ts));
                }
                if ((r = queue_update(fs, f, "cleared", x)) == 0)
                        f->case_active = false;
        }
        if (r == 0 && f->state == FAULT_FIRING && f->level != f->case_level) {
                if ((x = cJSON_CreateObject())) {
                        cJSON_AddStringToObject(x, "level", rule_level_to_string(f->level));
                        cJSON_AddStringToObject(x, "previous_level", rule_level_to_string(f->case_level));
                        cJSON_AddStringToObject(x, "reason", late);
                        cJSON_AddStringToObject(x, "title", f->title ? f->title : "");
                }
                if ((r = queue_update(fs, f, "level", x)) == 0)
                        f->case_level = f->level;
        } else if (r == 0 && f->occurrences != f->occ_reported) { /* nothing sent yet */
                if ((x = cJSON_CreateObject()))
                        cJSON_AddStringToObject(x, "message", late);
                r = queue_update(fs, f, "occurrence", x);
        }
        if (r < 0)
                return;
        f->update_owed = false;
        mark(fs, f);
        log_fault(LOG_LEVEL_NOTICE, f->key, rule_level_to_string(f->level), f->rule, f->case_id,
                  "case brought up to date (the outbox had refused an update)");
}

/* Forgets a cleared fault whose windows are over; its last case, if it had
 * one, is remembered as a past case (which takes over its row). */
static void forget(struct faults *fs, struct fault **pp)
{
        struct fault *f = *pp;
        const char *last = f->case_id    ? f->case_id
                           : f->case_ref ? outbox_case_id(fs->ob, f->case_ref)
                                         : f->prev_case_id;

        if (last)
                past_remember(fs, f->key, last, f->cleared_at, false);
        else if (fs_queue_delete(fs, f->key) < 0)
                return; /* kept; tried again at the next walk */
        f->key = NULL;
        if (f->in_dirty)
                for (size_t i = 0; i < fs->n_dirty; i++)
                        if (fs->dirty[i] == f) {
                                fs->dirty[i] = fs->dirty[--fs->n_dirty];
                                break;
                        }
        if (f->case_ref)
                outbox_release(fs->ob, f->case_ref);
        *pp = f->next;
        fs->n_faults--;
        fault_free(f);
        store_mark_dirty(fs->st);
}

static void walk(struct faults *fs)
{
        uint64_t mono = time_mono_usec();
        int64_t now = time_wall_usec();
        past_sweep(fs, mono, now);
        uint64_t keep = fs->set.reopen_window_usec > fs->set.flap_window_usec ? fs->set.reopen_window_usec
                                                                              : fs->set.flap_window_usec;
        unsigned retries = 0;
        bool refused = false;

        for (size_t b = 0; b < FAULT_BUCKETS; b++) {
                struct fault **pp = &fs->buckets[b];
                while (*pp) {
                        struct fault *f = *pp;
                        /* A copy for logs and views, not written: the outbox
                         * record keeps the id durably while case_ref names it,
                         * and after a restart this walk copies it again.
                         * (Writing it rewrote every fault acknowledged in the
                         * last second in one commit: a stall in a burst.) */
                        if (f->case_ref && !f->case_id) {
                                const char *id = outbox_case_id(fs->ob, f->case_ref);
                                if (id)
                                        f->case_id = xstrdup(id);
                        }
                        if (f->case_owed && f->state == FAULT_FIRING && f->hold == HOLD_NONE && !refused &&
                            retries < OPEN_RETRY_MAX) {
                                retries++;
                                if (f->is_summary)
                                        f->members_new = 0; /* the open lists them */
                                open_case(fs, f, NULL);
                                refused = f->case_owed; /* still no room: the rest wait for the next walk */
                        }
                        if (f->flapping && f->n_flips &&
                            now - f->flips[(f->flip_next + FLIPS_MAX - 1) % FLIPS_MAX] >=
                                    (int64_t)fs->set.flap_window_usec)
                                settle(fs, f);
                        bool idle = f->case_ref && outbox_case_idle(fs->ob, f->case_ref);
                        if (f->is_summary && f->members_new && idle && f->case_active &&
                            mono - f->last_note_mono >= SUMMARY_NOTE_USEC) {
                                cJSON *x = cJSON_CreateObject(), *k = cJSON_CreateArray();
                                char msg[300];
                                for (size_t i = f->n_member_keys - f->members_new; k && i < f->n_member_keys; i++)
                                        json_add(k, NULL, cJSON_CreateString(f->member_keys[i]));
                                snprintf(msg, sizeof msg,
                                         "%zu more faults joined the storm: %" PRIu64 " in all, %" PRIu64
                                         " firing, %" PRIu64 " not listed by key",
                                         f->members_new, f->members_total, f->members_active, f->members_unlisted);
                                if (x) {
                                        json_add(x, "storm_keys", k);
                                        cJSON_AddNumberToObject(x, "storm_members", (double)f->members_total);
                                        cJSON_AddNumberToObject(x, "storm_unlisted", (double)f->members_unlisted);
                                } else {
                                        cJSON_Delete(k);
                                }
                                queue_note(fs, f, msg, x);
                                f->members_new = 0;
                                f->last_note_mono = mono;
                                mark(fs, f);
                        } else if (f->state == FAULT_FIRING && idle && f->hold == HOLD_NONE && f->case_active &&
                                   f->occurrences != f->occ_reported &&
                                   mono - f->last_occ_mono >= fs->set.occurrence_usec) {
                                queue_update(fs, f, "occurrence", NULL);
                                mark(fs, f);
                        }
                        if (f->update_owed && f->case_ref && !f->flapping && f->hold == HOLD_NONE && !refused &&
                            retries < OPEN_RETRY_MAX) {
                                retries++;
                                catch_up(fs, f);
                                refused = f->update_owed;
                        }
                        if (f->state == FAULT_CLEARED && !f->flapping && f->hold == HOLD_NONE && !f->update_owed &&
                            now - f->cleared_at > (int64_t)keep && (!f->case_ref || idle)) {
                                forget(fs, pp);
                                if (*pp == f)
                                        pp = &f->next; /* could not be forgotten now */
                                continue;
                        }
                        pp = &f->next;
                }
        }
        if (fs->any_lazy)
                store_mark_dirty(fs->st);
}

static uint64_t on_timer(struct loop_source *s, uint64_t now, void *userdata)
{
        (void)s;
        (void)now;
        walk(userdata);
        return 1000000;
}

/* ---- loading ---- */

static int64_t num_of(const cJSON *o, const char *k)
{
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);

        return cJSON_IsNumber(x) ? (int64_t)x->valuedouble : 0;
}

static const char *str_of(const cJSON *o, const char *k)
{
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);

        return cJSON_IsString(x) ? x->valuestring : NULL;
}

static int load_fault(const char *key, const char *json, void *ud)
{
        struct faults *fs = ud;
        cJSON *o = cJSON_Parse(json), *a, *x;
        struct fault *f;
        const char *s;

        if (!o) {
                log_warning("fault %s: stored state is not readable JSON; forgotten", key);
                return 0;
        }
        if ((x = cJSON_GetObjectItemCaseSensitive(o, "past"))) {
                char *k = (s = str_of(x, "case_id")) ? xstrdup(key) : NULL;
                if (k)
                        past_remember(fs, k, s, num_of(x, "cleared_at"), true);
                cJSON_Delete(o);
                return 0;
        }
        f = fault_find(fs, key) ? NULL : fault_create(fs, key);
        if (!f) {
                cJSON_Delete(o);
                return 0;
        }
        f->state = (s = str_of(o, "state")) && strcmp(s, "firing") == 0 ? FAULT_FIRING : FAULT_CLEARED;
        if (!(s = str_of(o, "level")) || rule_level_from_string(s, &f->level) < 0)
                f->level = RULE_LEVEL_P3;
        set_str(&f->rule, str_of(o, "rule"));
        set_str(&f->title, str_of(o, "title"));
        set_str(&f->description, str_of(o, "description"));
        f->first_seen = num_of(o, "first_seen");
        f->last_seen = num_of(o, "last_seen");
        f->cleared_at = num_of(o, "cleared_at");
        f->occurrences = (uint64_t)num_of(o, "occurrences");
        f->occ_reported = (uint64_t)num_of(o, "occ_reported");
        cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(o, "rules"))
        {
                const char *n = str_of(x, "name"), *l = str_of(x, "level");
                if (!n || !l || f->n_rules == FAULT_RULES_MAX ||
                    rule_level_from_string(l, &f->rules[f->n_rules].level) < 0 ||
                    !(f->rules[f->n_rules].name = xstrdup(n)))
                        continue;
                f->n_rules++;
        }
        if ((x = cJSON_GetObjectItemCaseSensitive(o, "readings")) && cJSON_IsObject(x))
                f->readings = cJSON_Duplicate(x, 1);
        if ((x = cJSON_GetObjectItemCaseSensitive(o, "evidence")) && cJSON_IsArray(x))
                f->evidence = cJSON_Duplicate(x, 1);
        f->case_ref = num_of(o, "case_ref");
        if (f->case_ref && !outbox_claim(fs->ob, f->case_ref))
                f->case_ref = 0; /* delivered and gone: the case id below still names it */
        if ((s = str_of(o, "case_id")))
                f->case_id = xstrdup(s);
        if ((s = str_of(o, "prev_case_id")))
                f->prev_case_id = xstrdup(s);
        f->case_active = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "case_active"));
        f->case_owed = !f->case_ref && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "case_owed"));
        f->update_owed = f->case_ref && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "update_owed"));
        if (!(s = str_of(o, "case_level")) || rule_level_from_string(s, &f->case_level) < 0)
                f->case_level = f->level;
        s = str_of(o, "hold");
        f->hold = s && strcmp(s, "maintenance") == 0 ? HOLD_MAINTENANCE
                  : s && strcmp(s, "summary") == 0   ? HOLD_SUMMARY
                                                     : HOLD_NONE;
        if ((s = str_of(o, "summary_key")))
                f->summary_key = xstrdup(s);
        if ((s = str_of(o, "hold_why")))
                f->hold_why = xstrdup(s);
        f->flapping = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "flapping"));
        f->flap_changes = (uint64_t)num_of(o, "flap_changes");
        cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(o, "flips"))
        {
                if (!cJSON_IsNumber(x))
                        continue;
                f->flips[f->flip_next] = (int64_t)x->valuedouble;
                f->flip_next = (f->flip_next + 1) % FLIPS_MAX;
                if (f->n_flips < FLIPS_MAX)
                        f->n_flips++;
        }
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "is_summary"))) {
                f->is_summary = true;
                f->members_total = (uint64_t)num_of(o, "members_total");
                f->members_active = (uint64_t)num_of(o, "members_active");
                f->members_unlisted = (uint64_t)num_of(o, "members_unlisted");
                f->members_new = (size_t)num_of(o, "members_new");
                a = cJSON_GetObjectItemCaseSensitive(o, "member_keys");
                size_t n = (size_t)cJSON_GetArraySize(a);
                if (n > SUMMARY_KEYS_MAX)
                        n = SUMMARY_KEYS_MAX;
                f->member_keys = n ? xcalloc(n, sizeof *f->member_keys) : NULL;
                cJSON_ArrayForEach(x, a)
                {
                        if (f->member_keys && f->n_member_keys < n && cJSON_IsString(x) &&
                            (f->member_keys[f->n_member_keys] = xstrdup(x->valuestring)))
                                f->n_member_keys++;
                }
                if (f->members_new > f->n_member_keys)
                        f->members_new = f->n_member_keys;
        }
        if (f->state == FAULT_FIRING)
                fs->stats.firing++;
        else
                fs->stats.cleared++;
        if (f->flapping)
                fs->stats.flapping++;
        cJSON_Delete(o);
        return 0;
}

/* ---- interface ---- */

int faults_new(struct loop *loop, const struct identity *id, struct store *st, struct outbox *ob,
               const struct faults_settings *settings, struct faults **ret)
{
        struct faults *fs = xcalloc(1, sizeof *fs);
        struct store_writer w = {.write = fs_write, .done = fs_done};
        int r;

        if (!fs)
                return -ENOMEM;
        fs->loop = loop;
        fs->id = id;
        fs->st = st;
        fs->ob = ob;
        faults_set_settings(fs, settings);
        fs->tokens = fs->set.case_burst;
        fs->tokens_mono = time_mono_usec();
        w.userdata = fs;
        if ((r = store_load_faults(st, load_fault, fs)) < 0 || (r = store_add_writer(st, &w)) < 0 ||
            (r = loop_add_timer(loop, 1000000, 100000, "faults", on_timer, fs, &fs->timer)) < 0) {
                faults_free(fs);
                return r;
        }
        *ret = fs;
        return 0;
}

void faults_set_settings(struct faults *fs, const struct faults_settings *settings)
{
        fs->set = *settings;
        if (fs->set.occurrence_usec == 0)
                fs->set.occurrence_usec = 60000000;
        if (fs->set.max_faults == 0)
                fs->set.max_faults = 10000;
        if (fs->set.flap_count >= FLIPS_MAX)
                fs->set.flap_count = FLIPS_MAX - 1;
        if (fs->set.flap_window_usec == 0)
                fs->set.flap_window_usec = 600000000;
        if (fs->set.case_burst == 0)
                fs->set.case_burst = 1;
        if (fs->set.storm_window_usec == 0)
                fs->set.storm_window_usec = 60000000;
}

void faults_free(struct faults *fs)
{
        if (!fs)
                return;
        store_remove_writer(fs->st, fs);
        loop_remove(fs->timer);
        for (size_t b = 0; b < FAULT_BUCKETS; b++)
                while (fs->buckets[b]) {
                        struct fault *f = fs->buckets[b];
                        fs->buckets[b] = f->next;
                        fault_free(f);
                }
        for (size_t i = 0; i < fs->n_deleted; i++)
                free(fs->deleted[i]);
        free(fs->deleted);
        free(fs->dirty);
        for (size_t b = 0; b < FAULT_BUCKETS; b++)
                while (fs->past[b])
                        past_unlink(fs, &fs->past[b], false);
        while (fs->storms) {
                struct rule_storm *s = fs->storms;
                fs->storms = s->next;
                free(s->rule);
                free(s);
        }
        free(fs->hold_why);
        free(fs);
}

void faults_get_stats(const struct faults *fs, struct faults_stats *ret)
{
        *ret = fs->stats;
        ret->remembered = fs->n_past;
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
                        const char *err = NULL, *id = f->case_id;
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
                        if (!id && f->case_ref)
                                id = outbox_case_id(fs->ob, f->case_ref);
                        if (id)
                                cJSON_AddStringToObject(o, "case_id", id);
                        else if (f->case_ref)
                                cJSON_AddNullToObject(o, "case_id");
                        else if (f->prev_case_id)
                                cJSON_AddStringToObject(o, "case_id", f->prev_case_id);
                        cJSON_AddStringToObject(o, "delivery",
                                                f->case_ref    ? outbox_case_delivery(fs->ob, f->case_ref, &err)
                                                : f->case_owed ? "refused"
                                                               : "none");
                        if (err)
                                cJSON_AddStringToObject(o, "last_error", err);
                        if (f->update_owed)
                                cJSON_AddBoolToObject(o, "update_refused", true);
                        if (f->hold != HOLD_NONE)
                                cJSON_AddStringToObject(o, "held", hold_names[f->hold]);
                        if (f->hold == HOLD_SUMMARY && f->summary_key)
                                cJSON_AddStringToObject(o, "summary", f->summary_key);
                        if (f->flapping)
                                cJSON_AddBoolToObject(o, "flapping", true);
                        if (f->is_summary) {
                                cJSON_AddNumberToObject(o, "storm_members", (double)f->members_total);
                                cJSON_AddNumberToObject(o, "storm_firing", (double)f->members_active);
                        }
                        if (f->readings)
                                json_add(o, "readings", cJSON_Duplicate(f->readings, 1));
                        json_add(a, NULL, o);
                }
        return a;
}
