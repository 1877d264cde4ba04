/* history: see history.h.
 *
 * Each series has an open minute and an open hour in memory. A minute closes
 * when a reading of a later minute arrives or the timer finds it over; its
 * row joins the pending rows and its figures the open hour, which closes the
 * same way. Pending rows and notes are written at the next commit and kept
 * until one holds. An hour row is computed in the store from its minute
 * rows, so an hour cut by a restart holds the minutes of both runs; a clean
 * stop writes the open minutes (history_flush), and the first commit after a
 * start writes the hours the previous run left open (store_close_orphan_hours). Series ids are assigned in the commit
 * that first writes a series; a failed commit forgets the ids it assigned (they were rolled back). */
#include "history.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/event.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "loop.h"
#include "store.h"

#define SERIES_BUCKETS 1024
#define PENDING_MAX 200000 /* rows waiting for a commit; beyond, the oldest minute rows are dropped */
#define RECENT_MINUTES_USEC (24LL * 3600 * 1000000) /* the snapshot's 1-minute points: the last day */
#define DROP_CHUNK 2000
#define KEEP_NEWEST_SEC 86400  /* the last day of samples and events never goes for space */
#define HISTORY_POINTS_MAX 360 /* per series and tier in a snapshot without --minutes: what the report draws */

struct series {
        char *source, *name, *object, *unit;
        int64_t id; /* 0 until written */
        bool id_this_pass;
        int64_t minute, hour; /* start (unix s) of the open ones; -1: none */
        double mmin, mmax, msum;
        int64_t mn;
        double hmin, hmax, hsum;
        int64_t hn;
        /* the thresholds the readings come with (an event's max and crit attributes) */
        double thr_max, thr_crit;
        bool has_max, has_crit, thr_dirty;
        char state[16]; /* a link's last state ("up", "down"...), "" until seen */
        struct series *next;
};

struct row {
        struct series *s;
        enum store_tier tier;
        int64_t t;
        double min, avg, max;
        int64_t n;
};

struct note {
        int64_t t;
        char *kind, *object, *detail;
};

struct history {
        struct loop *loop;
        struct store *st;
        struct history_settings set;
        struct loop_source *timer;
        struct series *buckets[SERIES_BUCKETS];
        struct row *rows;
        size_t n_rows, cap_rows;
        struct note *notes;
        size_t n_notes, cap_notes;
        bool prune_due;
        bool orphans_due; /* hours the previous run left open are still to be written */
        bool over_cap_pending, over_cap_logged;
        history_health_fn health;
        void *health_ud;
        struct history_stats stats;
};

/* The WAL's share of the cap: an eighth, at most STORE_WAL_MAX_DEFAULT. */
static uint64_t wal_allowance(uint64_t cap)
{
        return cap / 8 < STORE_WAL_MAX_DEFAULT ? cap / 8 : STORE_WAL_MAX_DEFAULT;
}

static uint64_t hash3(const char *a, const char *b, const char *c)
{
        uint64_t h = 1469598103934665603ULL;
        const char *p[3] = {a, b, c};

        for (int i = 0; i < 3; i++) {
                for (const char *s = p[i]; *s; s++) {
                        h ^= (unsigned char)*s;
                        h *= 1099511628211ULL;
                }
                h ^= 0xff;
                h *= 1099511628211ULL;
        }
        return h;
}

static void push_row(struct history *h, struct series *s, enum store_tier tier, int64_t t, double min, double sum,
                     double max, int64_t n)
{
        if (n <= 0)
                return;
        if (h->n_rows == h->cap_rows) {
                size_t nc = h->cap_rows ? 2 * h->cap_rows : 256;
                struct row *nr = nc <= PENDING_MAX ? xrealloc(h->rows, nc * sizeof *nr) : NULL;
                if (!nr) {
                        h->stats.pruned++; /* the store has not kept up: this row is lost, counted */
                        return;
                }
                h->rows = nr;
                h->cap_rows = nc;
        }
        h->rows[h->n_rows++] = (struct row){s, tier, t, min, sum / (double)n, max, n};
        store_mark_dirty(h->st);
}

static void close_hour(struct history *h, struct series *s)
{
        push_row(h, s, STORE_TIER_HOUR, s->hour, s->hmin, s->hsum, s->hmax, s->hn);
        s->hour = -1;
        s->hn = 0;
}

static void close_minute(struct history *h, struct series *s)
{
        int64_t hour = s->minute - s->minute % 3600;

        push_row(h, s, STORE_TIER_MINUTE, s->minute, s->mmin, s->msum, s->mmax, s->mn);
        if (s->hour >= 0 && s->hour != hour)
                close_hour(h, s);
        if (s->hour < 0) {
                s->hour = hour;
                s->hmin = s->mmin;
                s->hmax = s->mmax;
                s->hsum = 0;
                s->hn = 0;
        }
        s->hmin = fmin(s->hmin, s->mmin);
        s->hmax = fmax(s->hmax, s->mmax);
        s->hsum += s->msum;
        s->hn += s->mn;
        s->minute = -1;
        s->mn = 0;
}

void history_close_minutes(struct history *h, int64_t now)
{
        int64_t t = now / 1000000, minute = t - t % 60, hour = t - t % 3600;

        if (h->health)
                h->health(h, now, h->health_ud);
        for (size_t b = 0; b < SERIES_BUCKETS; b++)
                for (struct series *s = h->buckets[b]; s; s = s->next) {
                        if (s->minute >= 0 && s->minute < minute)
                                close_minute(h, s);
                        if (s->hour >= 0 && s->hour < hour && s->minute < 0)
                                close_hour(h, s);
                }
        h->prune_due = true;
        store_mark_dirty(h->st);
}

void history_flush(struct history *h)
{
        for (size_t b = 0; b < SERIES_BUCKETS; b++)
                for (struct series *s = h->buckets[b]; s; s = s->next)
                        if (s->minute >= 0)
                                close_minute(h, s);
        store_mark_dirty(h->st);
}

static struct series *series_get(struct history *h, const char *source, const char *name, const char *obj,
                                 const char *unit)
{
        uint64_t hv = hash3(source, name, obj);
        struct series **pp = &h->buckets[hv % SERIES_BUCKETS], *s;

        for (s = *pp; s; s = s->next)
                if (strcmp(s->source, source) == 0 && strcmp(s->name, name) == 0 && strcmp(s->object, obj) == 0)
                        return s;
        if (h->stats.series >= h->set.max_series)
                return NULL;
        s = xcalloc(1, sizeof *s);
        if (!s)
                return NULL;
        s->source = xstrdup(source);
        s->name = xstrdup(name);
        s->object = xstrdup(obj);
        s->unit = xstrdup(unit ? unit : "");
        if (!s->source || !s->name || !s->object || !s->unit) {
                free(s->source);
                free(s->name);
                free(s->object);
                free(s->unit);
                free(s);
                return NULL;
        }
        s->minute = s->hour = -1;
        s->next = *pp;
        *pp = s;
        h->stats.series++;
        return s;
}

/* Counts a reading into its series' minute; e (may be NULL) gives thresholds. */
static void record(struct history *h, const char *source, const char *name, const char *object, const char *unit,
                   double value, int64_t wall_usec, const struct event *e)
{
        struct series *s = series_get(h, source, name, object, unit);
        int64_t t = wall_usec / 1000000, minute = t - t % 60;

        if (!s) {
                h->stats.series_dropped++;
                return;
        }
        if (s->minute >= 0 && s->minute != minute)
                close_minute(h, s);
        if (s->minute < 0) {
                s->minute = minute;
                s->mmin = s->mmax = value;
                s->msum = 0;
                s->mn = 0;
        }
        s->mmin = fmin(s->mmin, value);
        s->mmax = fmax(s->mmax, value);
        s->msum += value;
        s->mn++;
        h->stats.readings++;
        if (!e)
                return;
        const struct event_attr *mx = event_find(e, "max"), *cr = event_find(e, "crit");
        if (mx && mx->type == EVENT_ATTR_NUMBER && isfinite(mx->num) && (!s->has_max || s->thr_max != mx->num)) {
                s->thr_max = mx->num;
                s->has_max = s->thr_dirty = true;
        }
        if (cr && cr->type == EVENT_ATTR_NUMBER && isfinite(cr->num) && (!s->has_crit || s->thr_crit != cr->num)) {
                s->thr_crit = cr->num;
                s->has_crit = s->thr_dirty = true;
        }
}

/* Numeric attributes kept as series of their own, named "<event name>.<attribute>". */
static const struct {
        const char *source, *name, *attr, *unit;
} attr_series[] = {
        {"heartbeat", "link", "rtt_ms", "ms"},
        {"heartbeat", "link", "jitter_ms", "ms"},
        {"heartbeat", "link", "peer_loss", "%"},
        {"process", "usage", "cpu_percent", "%"},
        {"process", "usage", "rss_bytes", "bytes"},
        {"process", "usage", "threads", ""},
        {"process", "usage", "fds", ""},
};

/* Process events that are moments of the history, noted as "process-<name>". */
static const char *const process_moments[] = {"exited", "restarted", "crash-loop"};

static cJSON *numbers_of(const struct event *e)
{
        cJSON *d = cJSON_CreateObject();

        for (size_t i = 0; d && i < e->n_attrs; i++)
                if (e->attrs[i].type == EVENT_ATTR_NUMBER && isfinite(e->attrs[i].num) &&
                    !cJSON_AddNumberToObject(d, e->attrs[i].key, e->attrs[i].num)) {
                        cJSON_Delete(d);
                        return NULL;
                }
        return d;
}

static void note_moments(struct history *h, const struct event *e, const char *obj)
{
        char kind[64];

        if (strcmp(e->source, "process") == 0) {
                for (size_t i = 0; i < sizeof process_moments / sizeof process_moments[0]; i++)
                        if (strcmp(e->name, process_moments[i]) == 0) {
                                snprintf(kind, sizeof kind, "process-%s", e->name);
                                history_note(h, e->wall_usec, kind, obj, numbers_of(e));
                        }
                return;
        }
        if (strcmp(e->source, "heartbeat") == 0 && strcmp(e->name, "link") == 0) {
                const struct event_attr *st = event_find(e, "state");
                struct series *s;
                if (!st || st->type != EVENT_ATTR_STRING || !st->str)
                        return;
                if (!(s = series_get(h, e->source, e->name, obj, "%")))
                        return;
                /* a change, or a first state other than up */
                if (strcmp(s->state, st->str) != 0 && (s->state[0] || strcmp(st->str, "up") != 0)) {
                        cJSON *d = numbers_of(e);
                        if (d && !(cJSON_AddStringToObject(d, "from", s->state[0] ? s->state : "unknown") &&
                                   cJSON_AddStringToObject(d, "to", st->str))) {
                                cJSON_Delete(d);
                                d = NULL;
                        }
                        history_note(h, e->wall_usec, "link-state", obj, d);
                }
                snprintf(s->state, sizeof s->state, "%s", st->str);
        }
}

void history_record(struct history *h, const struct event *e)
{
        const char *obj;
        char name[128];

        if (!e->source || !e->name)
                return;
        obj = e->object ? e->object : "";
        note_moments(h, e, obj);
        for (size_t i = 0; i < sizeof attr_series / sizeof attr_series[0]; i++) {
                const struct event_attr *a;
                if (strcmp(e->source, attr_series[i].source) != 0 || strcmp(e->name, attr_series[i].name) != 0 ||
                    !(a = event_find(e, attr_series[i].attr)) || a->type != EVENT_ATTR_NUMBER || !isfinite(a->num))
                        continue;
                snprintf(name, sizeof name, "%s.%s", e->name, attr_series[i].attr);
                record(h, e->source, name, obj, attr_series[i].unit, a->num, e->wall_usec, NULL);
        }
        if (e->has_value && isfinite(e->value))
                record(h, e->source, e->name, obj, e->unit, e->value, e->wall_usec, e);
}

void history_record_value(struct history *h, const char *source, const char *name, const char *object, const char *unit,
                          double value, int64_t wall_usec)
{
        if (isfinite(value))
                record(h, source, name, object ? object : "", unit, value, wall_usec, NULL);
}

void history_set_health(struct history *h, history_health_fn fn, void *userdata)
{
        h->health = fn;
        h->health_ud = userdata;
}

void history_note(struct history *h, int64_t t, const char *kind, const char *object, cJSON *detail)
{
        struct note n = {.t = t};

        if (h->n_notes == h->cap_notes) {
                size_t nc = h->cap_notes ? 2 * h->cap_notes : 64;
                struct note *nn = nc <= PENDING_MAX ? xrealloc(h->notes, nc * sizeof *nn) : NULL;
                if (!nn) {
                        cJSON_Delete(detail);
                        h->stats.pruned++;
                        return;
                }
                h->notes = nn;
                h->cap_notes = nc;
        }
        n.kind = xstrdup(kind);
        n.object = xstrdup(object ? object : "");
        n.detail = detail ? cJSON_PrintUnformatted(detail) : NULL;
        cJSON_Delete(detail);
        if (!n.kind || !n.object) {
                free(n.kind);
                free(n.object);
                free(n.detail);
                return;
        }
        h->notes[h->n_notes++] = n;
        store_mark_dirty(h->st);
}

/* ---- writing ---- */

/* The cap holds on disk: the database's pages in use stay under cap minus
 * the WAL's allowance (the WAL is truncated after a commit that leaves it
 * larger, store_set_wal_max), and the pages freed go back to the file
 * system. Over it, the oldest minutes go first, then the oldest hours, then
 * the oldest events; the last day of each never goes. When only that, the
 * outbox and the rest are left, the cap is exceeded and said so. */
static int prune(struct history *h, struct store *st)
{
        int64_t now = time_wall_usec() / 1000000, keep = now - KEEP_NEWEST_SEC;
        uint64_t used = 0, limit = h->set.cap_bytes - wal_allowance(h->set.cap_bytes);
        bool over = false;
        int r;

        if ((r = store_prune_samples(st, STORE_TIER_MINUTE, now - (int64_t)h->set.minute_days * 86400)) < 0)
                return r;
        h->stats.pruned += (uint64_t)r;
        if ((r = store_prune_samples(st, STORE_TIER_HOUR, now - (int64_t)h->set.hour_days * 86400)) < 0)
                return r;
        h->stats.pruned += (uint64_t)r;
        if ((r = store_prune_events(st, (now - (int64_t)h->set.hour_days * 86400) * 1000000)) < 0)
                return r;
        for (int round = 0; round < 1000; round++) {
                if ((r = store_used_bytes(st, &used)) < 0)
                        return r;
                if (used <= limit)
                        break;
                r = store_drop_oldest_samples(st, STORE_TIER_MINUTE, DROP_CHUNK, keep);
                if (r == 0)
                        r = store_drop_oldest_samples(st, STORE_TIER_HOUR, DROP_CHUNK / 10, keep);
                if (r == 0)
                        r = store_drop_oldest_events(st, DROP_CHUNK / 10, keep * 1000000);
                if (r < 0)
                        return r;
                if (r == 0) {
                        over = true; /* nothing left that may go */
                        break;
                }
                h->stats.pruned += (uint64_t)r;
        }
        if ((r = store_release_free_pages(st)) < 0)
                return r;
        h->stats.used_bytes = used;
        h->over_cap_pending = over;
        return 0;
}

static char *thresholds_text(const struct series *s)
{
        cJSON *o = cJSON_CreateObject();
        char *t = NULL;

        if (o && (!s->has_max || cJSON_AddNumberToObject(o, "max", s->thr_max)) &&
            (!s->has_crit || cJSON_AddNumberToObject(o, "crit", s->thr_crit)))
                t = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        return t;
}

static int h_write(struct store *st, void *userdata)
{
        struct history *h = userdata;
        int r;

        if (h->orphans_due) {
                int64_t t = time_wall_usec() / 1000000;
                if ((r = store_close_orphan_hours(st, t - t % 3600)) < 0)
                        return r;
        }
        for (size_t i = 0; i < h->n_rows; i++) {
                struct row *w = &h->rows[i];
                struct series *s = w->s;
                if (!s->id) {
                        if ((r = store_series_id(st, s->source, s->name, s->object, s->unit, &s->id)) < 0)
                                return r;
                        s->id_this_pass = true;
                }
                /* an hour is made of its minutes in the store, so that the
                 * minutes written before a restart count in it */
                r = w->tier == STORE_TIER_HOUR
                            ? store_put_hour_from_minutes(st, s->id, w->t, w->min, w->avg, w->max, w->n)
                            : store_put_sample(st, w->tier, s->id, w->t, w->min, w->avg, w->max, w->n);
                if (r < 0)
                        return r;
        }
        for (size_t b = 0; b < SERIES_BUCKETS; b++)
                for (struct series *s = h->buckets[b]; s; s = s->next) {
                        if (!s->thr_dirty || !s->id)
                                continue; /* written once the series has a row */
                        char *t = thresholds_text(s);
                        r = t ? store_series_thresholds(st, s->id, t) : -ENOMEM;
                        free(t);
                        if (r < 0)
                                return r;
                }
        for (size_t i = 0; i < h->n_notes; i++)
                if ((r = store_put_event(st, h->notes[i].t, h->notes[i].kind, h->notes[i].object, h->notes[i].detail)) <
                    0)
                        return r;
        if (h->prune_due && (r = prune(h, st)) < 0)
                return r;
        return 0;
}

static void h_done(struct store *st, bool committed, void *userdata)
{
        struct history *h = userdata;

        (void)st;
        for (size_t b = 0; b < SERIES_BUCKETS; b++)
                for (struct series *s = h->buckets[b]; s; s = s->next) {
                        if (s->id_this_pass && !committed)
                                s->id = 0;
                        s->id_this_pass = false;
                        if (committed && s->id)
                                s->thr_dirty = false;
                }
        if (!committed)
                return;
        for (size_t i = 0; i < h->n_notes; i++) {
                free(h->notes[i].kind);
                free(h->notes[i].object);
                free(h->notes[i].detail);
        }
        h->n_rows = h->n_notes = 0;
        if (h->prune_due)
                h->stats.over_cap = h->over_cap_pending;
        h->prune_due = h->orphans_due = false;
}

static uint64_t on_timer(struct loop_source *src, uint64_t now, void *userdata)
{
        struct history *h = userdata;
        int64_t wall = time_wall_usec();

        (void)src;
        (void)now;
        if (h->stats.over_cap != h->over_cap_logged) {
                if (h->stats.over_cap)
                        log_warning("history: the state database (%.1f MiB on disk) is over its cap of %.1f MiB "
                                    "with only the last day of history and the outbox left; nothing newer is "
                                    "dropped",
                                    (double)store_disk_bytes(h->st) / 1048576, (double)h->set.cap_bytes / 1048576);
                else
                        log_notice("history: the state database is under its cap again");
                h->over_cap_logged = h->stats.over_cap;
        }
        history_close_minutes(h, wall);
        /* the next run just after the next minute starts */
        return (uint64_t)(60000000 - wall % 60000000) + 1000000;
}

int history_new(struct loop *loop, struct store *st, const struct history_settings *set, struct history **ret)
{
        struct history *h = xcalloc(1, sizeof *h);
        struct store_writer w = {.write = h_write, .done = h_done};
        int r;

        if (!h)
                return -ENOMEM;
        h->loop = loop;
        h->st = st;
        h->set = *set;
        if (!h->set.cap_bytes)
                h->set.cap_bytes = HISTORY_CAP_DEFAULT;
        if (!h->set.minute_days)
                h->set.minute_days = 14;
        if (!h->set.hour_days)
                h->set.hour_days = 400;
        if (!h->set.max_series)
                h->set.max_series = 2000;
        h->orphans_due = true;
        store_set_wal_max(st, wal_allowance(h->set.cap_bytes));
        w.userdata = h;
        if ((r = store_add_writer(st, &w)) < 0 ||
            (r = loop_add_timer(loop, (uint64_t)(60000000 - time_wall_usec() % 60000000) + 1000000, 0, "history",
                                on_timer, h, &h->timer)) < 0) {
                history_free(h);
                return r;
        }
        *ret = h;
        return 0;
}

void history_free(struct history *h)
{
        if (!h)
                return;
        store_remove_writer(h->st, h);
        loop_remove(h->timer);
        for (size_t b = 0; b < SERIES_BUCKETS; b++)
                while (h->buckets[b]) {
                        struct series *s = h->buckets[b];
                        h->buckets[b] = s->next;
                        free(s->source);
                        free(s->name);
                        free(s->object);
                        free(s->unit);
                        free(s);
                }
        for (size_t i = 0; i < h->n_notes; i++) {
                free(h->notes[i].kind);
                free(h->notes[i].object);
                free(h->notes[i].detail);
        }
        free(h->notes);
        free(h->rows);
        free(h);
}

void history_get_stats(const struct history *h, struct history_stats *ret)
{
        *ret = h->stats;
}

/* ---- reading, for the snapshot ----
 *
 * The store hands rows over ORDER BY series, t, one tier after the other, so
 * the series a row belongs to is almost always the one of the row before:
 * that one is kept at hand, others are found by binary search in an array
 * sorted by id. Summaries run in C and become JSON once per series at the
 * end. The cost is linear in the rows read. */

/* A point being merged from rows: [t, min, avg, max] over step seconds. */
struct bucket {
        int64_t t; /* -1: none */
        double min, max, sum;
        int64_t n;
};

struct rseries {
        int64_t id;
        cJSON *obj, *hourly, *minutes;      /* obj is owned by the result's array */
        struct bucket hb, mb;               /* the hourly and the minute point being merged */
        const char *source, *name, *object; /* obj's own strings */
        double min, max, sum;
        int64_t n;
        int64_t hourly_start, hourly_end; /* the hourly points' span: minutes inside it are counted already */
};

struct reader {
        cJSON *series; /* array */
        struct rseries *v;
        size_t n, cap, cur;
        enum store_tier tier;
        int64_t recent_from;            /* minutes before this are counted, not listed (unless minutes) */
        int64_t hour_step, minute_step; /* seconds a point spans */
        bool minutes;
};

/* The smallest step from steps (seconds, ascending) giving at most
 * HISTORY_POINTS_MAX points over span seconds. */
static int64_t point_step(int64_t span, const int64_t *steps, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (span / steps[i] <= HISTORY_POINTS_MAX)
                        return steps[i];
        return steps[n - 1] * ((span / steps[n - 1]) / HISTORY_POINTS_MAX + 1);
}

static struct rseries *rs_find(struct reader *rd, int64_t id, size_t *ret_pos)
{
        size_t lo = 0, hi = rd->n;

        if (rd->cur < rd->n && rd->v[rd->cur].id == id)
                return &rd->v[rd->cur];
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (rd->v[mid].id < id)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *ret_pos = lo;
        if (lo < rd->n && rd->v[lo].id == id) {
                rd->cur = lo;
                return &rd->v[lo];
        }
        return NULL;
}

static const char *obj_str(const cJSON *o, const char *k)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

        return cJSON_IsString(v) ? v->valuestring : "";
}

static struct rseries *rs_add(struct reader *rd, const struct store_sample *s, size_t pos)
{
        struct rseries *e;
        cJSON *o;
        int ok = 1;

        if (rd->n == rd->cap) {
                size_t nc = rd->cap ? 2 * rd->cap : 64;
                struct rseries *nv = xrealloc(rd->v, nc * sizeof *nv);
                if (!nv)
                        return NULL;
                rd->v = nv;
                rd->cap = nc;
        }
        if (!(o = cJSON_CreateObject()) || json_add(rd->series, NULL, o) < 0)
                return NULL;
        ok &= !!cJSON_AddStringToObject(o, "source", s->source);
        ok &= !!cJSON_AddStringToObject(o, "name", s->name);
        ok &= !!cJSON_AddStringToObject(o, "object", s->object);
        ok &= !!cJSON_AddStringToObject(o, "unit", s->unit ? s->unit : "");
        if (ok && s->thresholds) {
                /* text that does not parse (or no memory to parse it) is kept as text, not lost */
                cJSON *t = cJSON_Parse(s->thresholds);
                if (cJSON_IsObject(t))
                        ok &= json_add(o, "thresholds", t) == 0;
                else {
                        cJSON_Delete(t);
                        ok &= !!cJSON_AddStringToObject(o, "thresholds_text", s->thresholds);
                }
        }
        if (!ok)
                return NULL;
        memmove(&rd->v[pos + 1], &rd->v[pos], (rd->n - pos) * sizeof *rd->v);
        rd->n++;
        rd->cur = pos;
        e = &rd->v[pos];
        *e = (struct rseries){
                .id = s->series,
                .obj = o,
                .source = obj_str(o, "source"),
                .name = obj_str(o, "name"),
                .object = obj_str(o, "object"),
                .hb.t = -1,
                .mb.t = -1,
        };
        return e;
}

static void rs_count(struct rseries *e, double min, double avg, double max, int64_t n)
{
        if (e->n == 0 || min < e->min)
                e->min = min;
        if (e->n == 0 || max > e->max)
                e->max = max;
        e->sum += avg * (double)n;
        e->n += n;
}

static int flush_point(cJSON *o, const char *key, cJSON **arr, struct bucket *b)
{
        cJSON *p;

        if (b->t < 0 || b->n <= 0)
                return 0;
        const double v[4] = {(double)b->t, b->min, round(b->sum / (double)b->n * 1000) / 1000, b->max};
        b->t = -1;
        if (!*arr && !(*arr = cJSON_AddArrayToObject(o, key)))
                return -ENOMEM;
        if (!(p = cJSON_CreateDoubleArray(v, 4)))
                return -ENOMEM;
        return json_add(*arr, NULL, p);
}

/* Merges s into the point of its step; the point before it is written when s starts a new one. */
static int add_point(cJSON *o, const char *key, cJSON **arr, struct bucket *b, int64_t step,
                     const struct store_sample *s)
{
        int64_t t = s->t - s->t % step;
        int r;

        if (b->t != t) {
                if ((r = flush_point(o, key, arr, b)) < 0)
                        return r;
                *b = (struct bucket){.t = t, .min = s->min, .max = s->max};
        }
        b->min = fmin(b->min, s->min);
        b->max = fmax(b->max, s->max);
        b->sum += s->avg * (double)s->n;
        b->n += s->n;
        return 0;
}

static int sample_cb(const struct store_sample *s, void *ud)
{
        struct reader *rd = ud;
        size_t pos = 0;
        struct rseries *e = rs_find(rd, s->series, &pos);

        if (!e && !(e = rs_add(rd, s, pos)))
                return -ENOMEM;
        if (rd->tier == STORE_TIER_HOUR) {
                rs_count(e, s->min, s->avg, s->max, s->n);
                if (!e->hourly_end)
                        e->hourly_start = s->t;
                e->hourly_end = s->t + 3600;
                return add_point(e->obj, "hourly", &e->hourly, &e->hb, rd->hour_step, s);
        }
        if (!e->hourly_end || s->t < e->hourly_start || s->t >= e->hourly_end)
                rs_count(e, s->min, s->avg, s->max, s->n);
        if (!rd->minutes && s->t < rd->recent_from)
                return 0;
        return add_point(e->obj, "minutes", &e->minutes, &e->mb, rd->minute_step, s);
}

static int event_cb(int64_t t, const char *kind, const char *object, const char *detail, void *ud)
{
        cJSON *arr = ud, *o = cJSON_CreateObject();
        char ts[40];
        int ok = 1;

        if (!o || json_add(arr, NULL, o) < 0)
                return -ENOMEM;
        ok &= !!cJSON_AddStringToObject(o, "time", time_format_rfc3339(t, ts, sizeof ts));
        ok &= !!cJSON_AddStringToObject(o, "kind", kind);
        ok &= !!cJSON_AddStringToObject(o, "object", object);
        if (ok && detail) {
                cJSON *d = cJSON_Parse(detail);
                if (cJSON_IsObject(d))
                        ok &= json_add(o, "detail", d) == 0;
                else { /* kept as text, not lost */
                        cJSON_Delete(d);
                        ok &= !!cJSON_AddStringToObject(o, "detail_text", detail);
                }
        }
        return ok ? 0 : -ENOMEM;
}

/* The minutes still open in memory count too, so a fresh agent's snapshot is not empty. */
static int open_minutes(struct history *h, struct reader *rd, int64_t since_s)
{
        int r;

        rd->tier = STORE_TIER_MINUTE;
        for (size_t b = 0; b < SERIES_BUCKETS; b++)
                for (struct series *sr = h->buckets[b]; sr; sr = sr->next) {
                        if (sr->minute < 0 || sr->mn == 0 || sr->minute < since_s)
                                continue;
                        struct store_sample smp = {
                                .series = sr->id ? sr->id : -(int64_t)((uintptr_t)sr >> 4), /* unique while unwritten */
                                .source = sr->source,
                                .name = sr->name,
                                .object = sr->object,
                                .unit = sr->unit,
                                .t = sr->minute,
                                .min = sr->mmin,
                                .avg = sr->msum / (double)sr->mn,
                                .max = sr->mmax,
                                .n = sr->mn,
                        };
                        if (!sr->id) /* not written yet: read already under its id if a commit since wrote it */
                                for (size_t i = 0; i < rd->n; i++)
                                        if (strcmp(rd->v[i].source, sr->source) == 0 &&
                                            strcmp(rd->v[i].name, sr->name) == 0 &&
                                            strcmp(rd->v[i].object, sr->object) == 0)
                                                smp.series = rd->v[i].id;
                        char *thr = (sr->has_max || sr->has_crit) ? thresholds_text(sr) : NULL;
                        smp.thresholds = thr;
                        r = (sr->has_max || sr->has_crit) && !thr ? -ENOMEM : sample_cb(&smp, rd);
                        free(thr);
                        if (r < 0)
                                return r;
                }
        return 0;
}

static int finish_series(struct reader *rd)
{
        for (size_t i = 0; i < rd->n; i++) {
                struct rseries *e = &rd->v[i];
                cJSON *sum;
                int ok = flush_point(e->obj, "hourly", &e->hourly, &e->hb) == 0 &&
                         flush_point(e->obj, "minutes", &e->minutes, &e->mb) == 0;
                ok &= (sum = cJSON_AddObjectToObject(e->obj, "summary")) != NULL;
                ok &= !!cJSON_AddNumberToObject(sum, "min", e->min);
                ok &= !!cJSON_AddNumberToObject(sum, "avg", e->n ? e->sum / (double)e->n : 0);
                ok &= !!cJSON_AddNumberToObject(sum, "max", e->max);
                ok &= !!cJSON_AddNumberToObject(sum, "readings", (double)e->n);
                ok &= e->hourly || cJSON_AddArrayToObject(e->obj, "hourly");
                ok &= e->minutes || cJSON_AddArrayToObject(e->obj, "minutes");
                ok &= !!cJSON_AddNumberToObject(e->obj, "hourly_step_s", (double)rd->hour_step);
                ok &= !!cJSON_AddNumberToObject(e->obj, "minutes_step_s", (double)rd->minute_step);
                if (!ok)
                        return -ENOMEM;
        }
        return 0;
}

cJSON *history_to_json(struct history *h, int64_t since, bool minutes, int *ret_err)
{
        cJSON *o = cJSON_CreateObject(), *x;
        int64_t now_s = time_wall_usec() / 1000000, from = since / 1000000;
        struct reader rd = {.minutes = minutes, .recent_from = now_s - RECENT_MINUTES_USEC / 1000000};
        int r = -ENOMEM, ok = 1;

        *ret_err = 0;
        if (minutes) {
                rd.hour_step = 3600;
                rd.minute_step = 60;
        } else {
                static const int64_t hs[] = {3600, 7200, 10800, 14400, 21600, 28800, 43200, 86400};
                static const int64_t ms[] = {60, 120, 180, 240, 300, 360, 600, 720, 900, 1200, 1800, 3600};
                int64_t span = now_s - from, day = RECENT_MINUTES_USEC / 1000000;
                rd.hour_step = point_step(span, hs, sizeof hs / sizeof hs[0]);
                rd.minute_step = point_step(span < day ? span : day, ms, sizeof ms / sizeof ms[0]);
        }
        if (!o || !(rd.series = cJSON_AddArrayToObject(o, "series")))
                goto fail;
        rd.tier = STORE_TIER_HOUR;
        if ((r = store_load_samples(h->st, STORE_TIER_HOUR, from, sample_cb, &rd)) < 0)
                goto fail;
        /* minutes older than a day are covered by their hours already (every
         * closed hour is written): only the last day's are read, unless asked */
        rd.tier = STORE_TIER_MINUTE;
        rd.cur = 0;
        if (!minutes && from < rd.recent_from)
                from = rd.recent_from - rd.recent_from % 3600;
        if ((r = store_load_samples(h->st, STORE_TIER_MINUTE, from, sample_cb, &rd)) < 0)
                goto fail;
        if ((r = open_minutes(h, &rd, since / 1000000)) < 0 || (r = finish_series(&rd)) < 0)
                goto fail;
        r = -ENOMEM;
        if (!(x = cJSON_AddArrayToObject(o, "events")))
                goto fail;
        if ((r = store_load_events(h->st, since, event_cb, x)) < 0)
                goto fail;
        store_used_bytes(h->st, &h->stats.used_bytes);
        ok &= !!cJSON_AddNumberToObject(o, "used_bytes", (double)store_disk_bytes(h->st));
        ok &= !!cJSON_AddNumberToObject(o, "data_bytes", (double)h->stats.used_bytes);
        ok &= !!cJSON_AddBoolToObject(o, "over_cap", h->stats.over_cap);
        ok &= !!cJSON_AddNumberToObject(o, "cap_bytes", (double)h->set.cap_bytes);
        ok &= !!cJSON_AddNumberToObject(o, "minute_days", h->set.minute_days);
        ok &= !!cJSON_AddNumberToObject(o, "hour_days", h->set.hour_days);
        ok &= !!cJSON_AddNumberToObject(o, "series_dropped", (double)h->stats.series_dropped);
        ok &= !!cJSON_AddNumberToObject(o, "pruned", (double)h->stats.pruned);
        if (!ok) {
                r = -ENOMEM;
                goto fail;
        }
        free(rd.v);
        return o;
fail:
        *ret_err = r < 0 ? r : -ENOMEM;
        free(rd.v);
        cJSON_Delete(o);
        return NULL;
}
