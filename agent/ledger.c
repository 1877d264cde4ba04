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

/* ---- the report ---- */

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

struct collect {
        cJSON *outages, *quarters;
        double clean_s, unclean_s;
        int64_t since;
};

static cJSON *quarter_obj(cJSON *arr, int year, int q)
{
        char name[32];
        cJSON *x;

        snprintf(name, sizeof name, "%d-Q%d", year, q);
        cJSON_ArrayForEach(x, arr)
        {
                const cJSON *n = cJSON_GetObjectItemCaseSensitive(x, "quarter");
                if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0)
                        return x;
        }
        if (!(x = cJSON_CreateObject()))
                return NULL;
        cJSON_AddStringToObject(x, "quarter", name);
        cJSON_AddNumberToObject(x, "downtime_s", 0);
        cJSON_AddNumberToObject(x, "unclean_s", 0);
        cJSON_AddNumberToObject(x, "clean_s", 0);
        cJSON_AddNumberToObject(x, "outages", 0);
        cJSON_AddNumberToObject(x, "warranty_days", 0);
        json_add(arr, NULL, x);
        return x;
}

static void bump(cJSON *o, const char *k, double by)
{
        cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

        if (v)
                cJSON_SetNumberValue(v, v->valuedouble + by);
}

static int outage_cb(const struct store_outage *o, void *ud)
{
        struct collect *c = ud;
        cJSON *x = cJSON_CreateObject();
        char ts[40];
        int64_t start = o->start > c->since ? o->start : c->since, t;
        double dur = (double)(o->end - o->start) / 1e6;

        if (!x)
                return -ENOMEM;
        cJSON_AddStringToObject(x, "start", time_format_rfc3339(o->start, ts, sizeof ts));
        cJSON_AddStringToObject(x, "end", time_format_rfc3339(o->end, ts, sizeof ts));
        cJSON_AddNumberToObject(x, "duration_s", round(dur * 1000) / 1000);
        cJSON_AddBoolToObject(x, "clean", o->clean);
        cJSON_AddStringToObject(x, "boot_before", o->boot_before ? o->boot_before : "");
        cJSON_AddStringToObject(x, "boot_after", o->boot_after ? o->boot_after : "");
        cJSON_AddBoolToObject(x, "host_rebooted",
                              o->boot_before && o->boot_after && strcmp(o->boot_before, o->boot_after) != 0);
        json_add(c->outages, NULL, x);
        /* split across quarters: a quarter earns the downtime inside it */
        for (t = start; t < o->end;) {
                int year, q;
                quarter_start(t, &year, &q);
                int64_t end = next_quarter(year, q);
                if (end > o->end)
                        end = o->end;
                double part = (double)(end - t) / 1e6;
                cJSON *qo = quarter_obj(c->quarters, year, q);
                if (qo) {
                        bump(qo, "downtime_s", part);
                        bump(qo, o->clean ? "clean_s" : "unclean_s", part);
                        bump(qo, "outages", t == start ? 1 : 0);
                }
                t = end;
        }
        if (o->clean)
                c->clean_s += (double)(o->end - start) / 1e6;
        else
                c->unclean_s += (double)(o->end - start) / 1e6;
        return 0;
}

cJSON *ledger_to_json(struct ledger *l, int64_t since, int *ret_err)
{
        cJSON *o = cJSON_CreateObject(), *x;
        struct collect c = {.since = since};
        int r = 0;

        *ret_err = 0;
        if (!o || !(c.outages = cJSON_AddArrayToObject(o, "outages")) ||
            !(c.quarters = cJSON_AddArrayToObject(o, "quarters")))
                goto fail;
        if ((r = store_load_outages(l->st, since, outage_cb, &c)) < 0)
                goto fail;
        cJSON_ArrayForEach(x, c.quarters)
        {
                const cJSON *u = cJSON_GetObjectItemCaseSensitive(x, "unclean_s");
                cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(x, "warranty_days"),
                                     floor(u->valuedouble / 86400));
        }
        cJSON_AddNumberToObject(o, "downtime_s", round((c.clean_s + c.unclean_s) * 1000) / 1000);
        cJSON_AddNumberToObject(o, "unclean_s", round(c.unclean_s * 1000) / 1000);
        cJSON_AddNumberToObject(o, "clean_s", round(c.clean_s * 1000) / 1000);
        cJSON_AddNumberToObject(o, "warranty_days", floor(c.unclean_s / 86400));
        cJSON_AddStringToObject(o, "boot_id", l->boot);
        return o;
fail:
        *ret_err = r < 0 ? r : -ENOMEM;
        cJSON_Delete(o);
        return NULL;
}
