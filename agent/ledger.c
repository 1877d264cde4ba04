/* ledger: see ledger.h. The sign of life is one meta row ("ledger.alive":
 * JSON {t, boot, clean}) rewritten in every commit, and a timer makes sure a
 * commit happens at least every alive_interval. An outage's start is the last
 * sign of life, so its length is exact to within alive_interval. */
#include "ledger.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/event.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "loop.h"
#include "store.h"

#define ALIVE_KEY "ledger.alive"

struct ledger {
        struct loop *loop;
        struct store *st;
        uint64_t interval;
        struct loop_source *timer;
        char boot[64];
        bool clean;
        bool has_outage;
        struct store_outage outage; /* the one found at start, until written */
        char boot_before[64];
};

static void read_boot_id(char *buf, size_t size)
{
        FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

        buf[0] = '\0';
        if (f) {
                if (fgets(buf, (int)size, f))
                        buf[strcspn(buf, "\r\n")] = '\0';
                fclose(f);
        }
}

static int l_write(struct store *st, void *userdata)
{
        struct ledger *l = userdata;
        char doc[200];
        int r;

        if (l->has_outage && (r = store_put_outage(st, &l->outage)) < 0)
                return r;
        snprintf(doc, sizeof doc, "{\"t\":%" PRId64 ",\"boot\":\"%s\",\"clean\":%s}", time_wall_usec(), l->boot,
                 l->clean ? "true" : "false");
        return store_put_text(st, ALIVE_KEY, doc);
}

static void l_done(struct store *st, bool committed, void *userdata)
{
        struct ledger *l = userdata;

        (void)st;
        if (committed)
                l->has_outage = false;
}

static uint64_t on_timer(struct loop_source *s, uint64_t now, void *userdata)
{
        struct ledger *l = userdata;

        (void)s;
        (void)now;
        store_mark_dirty(l->st);
        return l->interval;
}

int ledger_new(struct loop *loop, struct store *st, uint64_t interval, struct ledger **ret)
{
        struct ledger *l = xcalloc(1, sizeof *l);
        struct store_writer w = {.write = l_write, .done = l_done};
        char *prev = NULL;
        int r;

        if (!l)
                return -ENOMEM;
        l->loop = loop;
        l->st = st;
        l->interval = interval ? interval : 60000000;
        read_boot_id(l->boot, sizeof l->boot);
        w.userdata = l;
        r = store_get_text(st, ALIVE_KEY, &prev);
        if (r < 0 && r != -ENOENT)
                goto fail;
        if (r == 0) {
                cJSON *o = cJSON_Parse(prev);
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "t");
                const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "boot");
                int64_t now = time_wall_usec();
                if (cJSON_IsNumber(t) && (int64_t)t->valuedouble < now) {
                        l->has_outage = true;
                        snprintf(l->boot_before, sizeof l->boot_before, "%s", cJSON_IsString(b) ? b->valuestring : "");
                        l->outage = (struct store_outage){
                                .start = (int64_t)t->valuedouble,
                                .end = now,
                                .clean = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "clean")),
                                .boot_before = l->boot_before,
                                .boot_after = l->boot,
                        };
                        log_notice("downtime ledger: the agent was %s for %.0f s%s",
                                   l->outage.clean ? "stopped"
                                                   : "down without a clean stop (crash, kill or power loss)",
                                   (double)(now - l->outage.start) / 1e6,
                                   strcmp(l->boot_before, l->boot) != 0 ? "; the host rebooted" : "");
                }
                cJSON_Delete(o);
        }
        free(prev);
        if ((r = store_add_writer(st, &w)) < 0 ||
            (r = loop_add_timer(loop, l->interval, 0, "ledger", on_timer, l, &l->timer)) < 0)
                goto fail;
        store_mark_dirty(st);
        *ret = l;
        return 0;
fail:
        ledger_free(l);
        return r;
}

void ledger_stop(struct ledger *l)
{
        if (!l)
                return;
        l->clean = true;
        store_mark_dirty(l->st);
}

void ledger_free(struct ledger *l)
{
        if (!l)
                return;
        store_remove_writer(l->st, l);
        loop_remove(l->timer);
        free(l);
}

/* ---- the report ----
 *
 * Quarters are calendar quarters in UTC. The report covers whole quarters:
 * from the start of the quarter holding since up to now, so a quarter is
 * never shown with only part of its downtime; the running quarter is marked
 * incomplete. Each outage is split over the quarters it overlaps.
 *
 * An outage counts as system downtime when the host itself went down without
 * a clean stop: the boot id changed and the agent had not been stopped on
 * purpose. An agent that crashed on a running host (same boot id) left the
 * system up; such outages are listed, not counted. Warranty days follow the
 * ledger's running total C(t) of counted downtime since its first record:
 * the total is floor(C(now) / 24 h), and a quarter earns the whole days that
 * total gained inside it, floor(C(end) / 24 h) - floor(C(start) / 24 h), so
 * the quarters add up to the total exactly (a day is credited in the quarter
 * in which its 24th hour of downtime falls). The alternative, flooring each
 * quarter on its own, loses the remainders at every quarter boundary. */

#define DAY_USEC (86400LL * 1000000)
#define QUARTERS_MAX 400 /* 100 years */

struct quarter {
        int year, q;
        int64_t start, end;
        int64_t downtime, clean, unclean, counted; /* µs */
        int64_t counted_before;                    /* C(start) */
        unsigned outages;
};

struct collect {
        struct quarter *qs;
        size_t n_qs;
        int64_t from, now;
        int64_t counted_before_from; /* C(from) */
        int64_t counted_all;         /* C(now) */
        cJSON *outages;
};

static int64_t quarter_start(int64_t usec, int *ret_year, int *ret_q)
{
        time_t t = (time_t)(usec / 1000000);
        struct tm tm;

        gmtime_r(&t, &tm);
        *ret_year = tm.tm_year + 1900;
        *ret_q = tm.tm_mon / 3 + 1;
        struct tm s = {.tm_year = tm.tm_year, .tm_mon = (tm.tm_mon / 3) * 3, .tm_mday = 1};
        return (int64_t)timegm(&s) * 1000000;
}

static int64_t next_quarter(int year, int q)
{
        struct tm s = {.tm_year = year - 1900 + (q == 4), .tm_mon = q == 4 ? 0 : q * 3, .tm_mday = 1};

        return (int64_t)timegm(&s) * 1000000;
}

static int64_t overlap(int64_t a0, int64_t a1, int64_t b0, int64_t b1)
{
        int64_t s = a0 > b0 ? a0 : b0, e = a1 < b1 ? a1 : b1;

        return e > s ? e - s : 0;
}

static bool host_went_down(const struct store_outage *o)
{
        return o->boot_before && o->boot_after && o->boot_before[0] && o->boot_after[0] &&
               strcmp(o->boot_before, o->boot_after) != 0;
}

static double secs(int64_t usec)
{
        return round((double)usec / 1000) / 1000;
}

static int outage_cb(const struct store_outage *o, void *ud)
{
        struct collect *c = ud;
        bool rebooted = host_went_down(o), counted = rebooted && !o->clean;
        int64_t end = o->end < c->now ? o->end : c->now;
        cJSON *x;
        char ts[40];
        int ok = 1;

        if (end <= o->start)
                return 0;
        if (counted) {
                c->counted_all += end - o->start;
                c->counted_before_from += overlap(o->start, end, INT64_MIN, c->from);
        }
        if (end < c->from)
                return 0;
        for (size_t i = 0; i < c->n_qs; i++) {
                struct quarter *q = &c->qs[i];
                int64_t part = overlap(o->start, end, q->start, q->end);
                if (!part)
                        continue;
                q->downtime += part;
                *(o->clean ? &q->clean : &q->unclean) += part;
                if (counted)
                        q->counted += part;
                q->outages++;
        }
        if (!(x = cJSON_CreateObject()) || json_add(c->outages, NULL, x) < 0)
                return -ENOMEM;
        ok &= !!cJSON_AddStringToObject(x, "start", time_format_rfc3339(o->start, ts, sizeof ts));
        ok &= !!cJSON_AddStringToObject(x, "end", time_format_rfc3339(o->end, ts, sizeof ts));
        ok &= !!cJSON_AddNumberToObject(x, "duration_s", secs(o->end - o->start));
        ok &= !!cJSON_AddBoolToObject(x, "clean", o->clean);
        ok &= !!cJSON_AddStringToObject(x, "boot_before", o->boot_before ? o->boot_before : "");
        ok &= !!cJSON_AddStringToObject(x, "boot_after", o->boot_after ? o->boot_after : "");
        ok &= !!cJSON_AddBoolToObject(x, "host_rebooted", rebooted);
        ok &= !!cJSON_AddBoolToObject(x, "counted", counted);
        return ok ? 0 : -ENOMEM;
}

static int64_t whole_days(int64_t usec)
{
        return usec / DAY_USEC;
}

static cJSON *quarter_json(const struct quarter *q, int64_t now)
{
        cJSON *x = cJSON_CreateObject();
        char name[32], ts[40];
        int ok = 1;

        if (!x)
                return NULL;
        snprintf(name, sizeof name, "%d-Q%d", q->year, q->q);
        ok &= !!cJSON_AddStringToObject(x, "quarter", name);
        ok &= !!cJSON_AddStringToObject(x, "start", time_format_rfc3339(q->start, ts, sizeof ts));
        ok &= !!cJSON_AddStringToObject(x, "end", time_format_rfc3339(q->end, ts, sizeof ts));
        ok &= !!cJSON_AddBoolToObject(x, "complete", q->end <= now);
        ok &= !!cJSON_AddNumberToObject(x, "downtime_s", secs(q->downtime));
        ok &= !!cJSON_AddNumberToObject(x, "unclean_s", secs(q->unclean));
        ok &= !!cJSON_AddNumberToObject(x, "clean_s", secs(q->clean));
        ok &= !!cJSON_AddNumberToObject(x, "system_down_s", secs(q->counted));
        ok &= !!cJSON_AddNumberToObject(x, "outages", q->outages);
        ok &= !!cJSON_AddNumberToObject(
                x, "warranty_days",
                (double)(whole_days(q->counted_before + q->counted) - whole_days(q->counted_before)));
        if (!ok) {
                cJSON_Delete(x);
                return NULL;
        }
        return x;
}

cJSON *ledger_to_json(struct ledger *l, int64_t since, int64_t now, int *ret_err)
{
        cJSON *o = cJSON_CreateObject(), *qa;
        struct collect c = {.now = now};
        int64_t t, sum_down = 0, sum_clean = 0, sum_unclean = 0, sum_counted = 0, days = 0;
        char ts[40];
        int r = -ENOMEM, ok = 1;

        *ret_err = 0;
        if (since > now)
                since = now;
        c.from = quarter_start(since, &(int){0}, &(int){0});
        if (!(c.qs = xcalloc(QUARTERS_MAX, sizeof *c.qs)))
                goto fail;
        for (t = c.from; t <= now && c.n_qs < QUARTERS_MAX; t = c.qs[c.n_qs - 1].end) {
                struct quarter *q = &c.qs[c.n_qs++];
                q->start = quarter_start(t, &q->year, &q->q);
                q->end = next_quarter(q->year, q->q);
        }
        if (!o || !(c.outages = cJSON_AddArrayToObject(o, "outages")))
                goto fail;
        if ((r = store_load_outages(l->st, 0, outage_cb, &c)) < 0)
                goto fail;
        r = -ENOMEM;
        if (!(qa = cJSON_AddArrayToObject(o, "quarters")))
                goto fail;
        for (size_t i = 0; i < c.n_qs; i++) {
                struct quarter *q = &c.qs[i];
                q->counted_before = i ? c.qs[i - 1].counted_before + c.qs[i - 1].counted : c.counted_before_from;
                if (json_add(qa, NULL, quarter_json(q, now)) < 0)
                        goto fail;
                sum_down += q->downtime;
                sum_clean += q->clean;
                sum_unclean += q->unclean;
                sum_counted += q->counted;
                days += whole_days(q->counted_before + q->counted) - whole_days(q->counted_before);
        }
        ok &= !!cJSON_AddStringToObject(o, "from", time_format_rfc3339(c.from, ts, sizeof ts));
        ok &= !!cJSON_AddNumberToObject(o, "downtime_s", secs(sum_down));
        ok &= !!cJSON_AddNumberToObject(o, "unclean_s", secs(sum_unclean));
        ok &= !!cJSON_AddNumberToObject(o, "clean_s", secs(sum_clean));
        ok &= !!cJSON_AddNumberToObject(o, "system_down_s", secs(sum_counted));
        ok &= !!cJSON_AddNumberToObject(o, "warranty_days", (double)days);
        ok &= !!cJSON_AddNumberToObject(o, "system_down_all_time_s", secs(c.counted_all));
        ok &= !!cJSON_AddNumberToObject(o, "warranty_days_all_time", (double)whole_days(c.counted_all));
        ok &= !!cJSON_AddStringToObject(o, "boot_id", l->boot);
        if (!ok)
                goto fail;
        free(c.qs);
        return o;
fail:
        *ret_err = r < 0 ? r : -ENOMEM;
        free(c.qs);
        cJSON_Delete(o);
        return NULL;
}
