/* maintenance: see maintenance.h. Windows are few (people start them), so
 * they live in a small array; the latest WINDOWS_KEPT are kept in memory and
 * listed, all of them in the store.
 *
 * Time: a window's end is a wall-clock time, the loop's timers run on
 * CLOCK_MONOTONIC, which stands still during a suspend and ignores clock
 * jumps. So the timer is never armed for more than CHECK_USEC at a time and
 * compares the wall clock when it fires (ending a window at most that late
 * after a resume or a jump forward), and maintenance_active() compares the
 * wall clock itself, so nobody is told a window runs past its end. The
 * alternative, a CLOCK_REALTIME timerfd with TFD_TIMER_CANCEL_ON_SET, would
 * need a second kind of timer in the loop for this one user. */
#include "maintenance.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/event.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "loop.h"
#include "store.h"

#define WINDOWS_KEPT 32
#define CHECK_USEC 10000000ULL /* the longest the timer sleeps without looking at the wall clock */

struct window {
        int64_t id;
        int64_t start, end, ended_at; /* wall µs; ended_at 0 while running */
        char *reason;
        bool durable;
};

struct maintenance {
        struct loop *loop;
        struct store *st;
        maintenance_changed_fn fn;
        void *userdata;
        struct loop_source *timer;
        struct window w[WINDOWS_KEPT];
        size_t n;
        int64_t last_id;
        int64_t (*clock)(void); /* the wall clock in µs (tests replace it) */
        uint64_t check_usec;    /* CHECK_USEC (tests shorten it) */
};

static struct window *running(struct maintenance *m)
{
        for (size_t i = 0; i < m->n; i++)
                if (!m->w[i].ended_at)
                        return &m->w[i];
        return NULL;
}

static void tell(struct maintenance *m, const struct window *w, bool active, const char *how)
{
        char why[MAINTENANCE_REASON_MAX + 100];

        snprintf(why, sizeof why, "maintenance window #%" PRId64 ": %s%s%s", w->id, w->reason, how ? "; " : "",
                 how ? how : "");
        if (m->fn)
                m->fn(active, why, m->userdata);
}

static int64_t wall(const struct maintenance *m)
{
        return m->clock ? m->clock() : time_wall_usec();
}

/* ended_at: when it ended (its end time, when found past it). */
static void finish(struct maintenance *m, struct window *w, int64_t ended_at, const char *how)
{
        w->ended_at = ended_at;
        w->durable = false;
        store_mark_dirty(m->st);
        loop_timer_set(m->timer, 0);
        log_notice("maintenance window #%" PRId64 " (%s) %s", w->id, w->reason, how);
        tell(m, w, false, how);
}

static void arm(struct maintenance *m, const struct window *w)
{
        int64_t left = w->end - wall(m);

        loop_timer_set(m->timer, left <= 0 ? 1 : (uint64_t)left > m->check_usec ? m->check_usec : (uint64_t)left);
}

static uint64_t on_timer(struct loop_source *s, uint64_t now, void *userdata)
{
        struct maintenance *m = userdata;
        struct window *w = running(m);

        (void)s;
        (void)now;
        if (!w)
                return 0;
        if (wall(m) < w->end) { /* not yet: a check on the way, or the wall clock was set back */
                arm(m, w);
                return 0;
        }
        finish(m, w, w->end, "ended at its end time");
        return 0;
}

static int m_write(struct store *st, void *userdata)
{
        struct maintenance *m = userdata;
        int r;

        for (size_t i = 0; i < m->n; i++) {
                struct window *w = &m->w[i];
                struct store_window sw = {
                        .id = w->id, .start = w->start, .end = w->end, .ended_at = w->ended_at, .reason = w->reason};
                if (!w->durable && (r = store_put_window(st, &sw)) < 0)
                        return r;
        }
        return store_put_counter(st, "window", m->last_id);
}

static void m_done(struct store *st, bool committed, void *userdata)
{
        struct maintenance *m = userdata;

        (void)st;
        if (committed)
                for (size_t i = 0; i < m->n; i++)
                        m->w[i].durable = true;
}

/* Appends a window, dropping the oldest from memory when full. */
static struct window *add(struct maintenance *m)
{
        if (m->n == WINDOWS_KEPT) {
                free(m->w[0].reason);
                memmove(&m->w[0], &m->w[1], (WINDOWS_KEPT - 1) * sizeof m->w[0]);
                m->n--;
        }
        memset(&m->w[m->n], 0, sizeof m->w[0]);
        return &m->w[m->n++];
}

static int load_window(const struct store_window *sw, void *ud)
{
        struct maintenance *m = ud;
        struct window *w = add(m);

        w->id = sw->id;
        w->start = sw->start;
        w->end = sw->end;
        w->ended_at = sw->ended_at;
        w->durable = true;
        w->reason = xstrdup(sw->reason ? sw->reason : "");
        if (!w->reason) {
                m->n--;
                return -ENOMEM;
        }
        if (w->id > m->last_id)
                m->last_id = w->id;
        return 0;
}

int maintenance_new(struct loop *loop, struct store *st, maintenance_changed_fn fn, void *userdata,
                    struct maintenance **ret)
{
        struct maintenance *m = xcalloc(1, sizeof *m);
        struct store_writer wr = {.write = m_write, .done = m_done};
        struct window *w;
        int64_t counter = 0;
        int r;

        if (!m)
                return -ENOMEM;
        m->loop = loop;
        m->st = st;
        m->fn = fn;
        m->userdata = userdata;
        m->check_usec = CHECK_USEC;
        wr.userdata = m;
        if ((r = store_get_counter(st, "window", &counter)) < 0 || (r = store_load_windows(st, load_window, m)) < 0 ||
            (r = store_add_writer(st, &wr)) < 0 ||
            (r = loop_add_timer(loop, 0, 0, "maintenance", on_timer, m, &m->timer)) < 0) {
                maintenance_free(m);
                return r;
        }
        if (counter > m->last_id)
                m->last_id = counter;
        /* several running (a damaged store) count as one: the newest */
        for (size_t i = 0; i + 1 < m->n; i++)
                if (!m->w[i].ended_at) {
                        m->w[i].ended_at = m->w[i].end < wall(m) ? m->w[i].end : wall(m);
                        m->w[i].durable = false;
                }
        w = running(m);
        if (w && w->end <= wall(m)) {
                w->ended_at = w->end; /* it ended while the agent was not running */
                w->durable = false;
                store_mark_dirty(st);
                log_notice("maintenance window #%" PRId64 " (%s) ended while the agent was stopped", w->id, w->reason);
                tell(m, w, false, "it ended while the agent was stopped");
        } else if (w) {
                arm(m, w);
                tell(m, w, true, NULL);
        } else if (fn) {
                fn(false, "no maintenance window", userdata);
        }
        *ret = m;
        return 0;
}

void maintenance_free(struct maintenance *m)
{
        if (!m)
                return;
        store_remove_writer(m->st, m);
        loop_remove(m->timer);
        for (size_t i = 0; i < m->n; i++)
                free(m->w[i].reason);
        free(m);
}

int maintenance_start(struct maintenance *m, uint64_t duration_usec, const char *reason, int64_t *ret_id)
{
        struct window *w;
        char *copy;

        if (running(m))
                return -EBUSY;
        if (duration_usec < 1000000 || duration_usec > MAINTENANCE_MAX_USEC || !reason || !*reason ||
            strlen(reason) > MAINTENANCE_REASON_MAX)
                return -EINVAL;
        for (const char *p = reason; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        return -EINVAL;
        copy = xstrdup(reason);
        if (!copy)
                return -ENOMEM;
        w = add(m);
        w->id = ++m->last_id;
        w->start = wall(m);
        w->end = w->start + (int64_t)duration_usec;
        w->reason = copy;
        store_mark_dirty(m->st);
        arm(m, w);
        log_notice("maintenance window #%" PRId64 " started for %" PRIu64 "s: %s; faults open no case until it ends",
                   w->id, duration_usec / 1000000, reason);
        tell(m, w, true, NULL);
        *ret_id = w->id;
        return 0;
}

int maintenance_end(struct maintenance *m, int64_t id)
{
        struct window *w = running(m);

        if (!w || (id && w->id != id))
                return -ENOENT;
        finish(m, w, wall(m), "ended early");
        return 0;
}

bool maintenance_active(const struct maintenance *m)
{
        int64_t now = wall(m);

        for (size_t i = 0; i < m->n; i++)
                if (!m->w[i].ended_at && now < m->w[i].end)
                        return true;
        return false;
}

void maintenance_set_clock(struct maintenance *m, int64_t (*clock)(void), uint64_t check_usec)
{
        m->clock = clock;
        m->check_usec = check_usec ? check_usec : CHECK_USEC;
        if (running(m))
                arm(m, running(m));
}

static cJSON *window_json(const struct window *w, int64_t now)
{
        cJSON *o = cJSON_CreateObject();
        char ts[40];

        if (!o)
                return NULL;
        cJSON_AddNumberToObject(o, "id", (double)w->id);
        cJSON_AddStringToObject(o, "reason", w->reason);
        cJSON_AddStringToObject(o, "start", time_format_rfc3339(w->start, ts, sizeof ts));
        cJSON_AddStringToObject(o, "end", time_format_rfc3339(w->end, ts, sizeof ts));
        if (w->ended_at)
                cJSON_AddStringToObject(o, "ended_at", time_format_rfc3339(w->ended_at, ts, sizeof ts));
        else
                cJSON_AddNumberToObject(o, "remaining_s", w->end > now ? (double)(w->end - now) / 1e6 : 0.0);
        return o;
}

cJSON *maintenance_to_json(const struct maintenance *m)
{
        cJSON *o = cJSON_CreateObject(), *a;
        const struct window *act = NULL;
        int64_t now = wall(m);

        if (!o)
                return NULL;
        for (size_t i = 0; i < m->n; i++)
                if (!m->w[i].ended_at && now < m->w[i].end)
                        act = &m->w[i];
        if (act)
                cJSON_AddItemToObject(o, "active", window_json(act, now));
        else
                cJSON_AddNullToObject(o, "active");
        if ((a = cJSON_AddArrayToObject(o, "windows")))
                for (size_t i = 0; i < m->n; i++)
                        cJSON_AddItemToArray(a, window_json(&m->w[i], now));
        return o;
}
