/* bench_snapshot: the inspection snapshot of 90 days of history at the
 * default intervals (issue 6), and how the history store grows.
 *
 *     bench: snapshot.build_90d SECONDS s       history + ledger to JSON text
 *     bench: snapshot.size_90d MIB MiB          the JSON text
 *     bench: history.growth_day KIB KiB/day     what one day of readings adds (both tiers), measured
 *                                               between two and one days ago (afterwards, the day's
 *                                               minutes age out again after 14 days)
 *     bench: history.store_90d MIB MiB          the store after 90 days
 *     bench: history.cap MIB MiB                the default cap it stays under (HISTORY_CAP_DEFAULT)
 *     bench: history.days_to_cap DAYS days      when the store, growing by its hourly rows once the 14 days of minutes
 * are full, reaches the cap
 *
 * A real state database (agent/store.c, SQLite, sync normal) in a temporary
 * directory receives 90 days of synthetic readings for SERIES series (sensors,
 * heartbeat links, processes and the agent's health: see series_of()), one reading every 10 s (the sensors collector's
 * default interval is 10 s), ending now; minutes are closed and committed every hour of synthetic time, as the agent
 * does each minute, so the 1-minute samples age out after 14 days as they do in the field. Then the snapshot's history
 * and ledger parts are built and printed, and timed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../agent/history.h"
#include "../agent/ledger.h"
#include "../agent/loop.h"
#include "../agent/store.h"
#include "../lib/event.h"

#define DAYS 90
#define SERIES 60
#define STEP 10 /* seconds between readings */

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Series i: 16 temperatures, 4 fans and 4 voltages (sensors), loss, RTT and
 * jitter of two heartbeat links, CPU and memory of 12 watched processes, and
 * the agent's own health (outbox depth, errors, dropped events, history
 * series dropped, database bytes, commits): 60 series. */
static void series_of(int i, struct event *e)
{
        static char obj[64];
        static const char *const hb[] = {"loss", "rtt_ms", "jitter_ms"};
        static const char *const hb_unit[] = {"%", "ms", "ms"};
        static const char *const health[] = {"outbox_depth",   "errors",   "events_dropped",
                                             "series_dropped", "db_bytes", "commits"};

        if (i < 16) {
                snprintf(obj, sizeof obj, "coretemp-isa-0000/Core %d", i);
                event_init(e, "sensor", "temperature", obj);
                e->unit = "C";
        } else if (i < 24) {
                snprintf(obj, sizeof obj, "nct6775-isa-0290/%s%d", i < 20 ? "fan" : "in", i % 4);
                event_init(e, "sensor", i < 20 ? "fan" : "voltage", obj);
                e->unit = i < 20 ? "RPM" : "V";
        } else if (i < 30) {
                snprintf(obj, sizeof obj, "hb0/link%d", (i - 24) / 3);
                event_init(e, "heartbeat", hb[(i - 24) % 3], obj);
                e->unit = hb_unit[(i - 24) % 3];
        } else if (i < 54) {
                snprintf(obj, sizeof obj, "service%d", (i - 30) / 2);
                event_init(e, "process", i % 2 ? "rss" : "cpu", obj);
                e->unit = i % 2 ? "bytes" : "%";
        } else {
                event_init(e, "agent", health[i - 54], "weibao-agent");
                e->unit = "";
        }
}

static void feed(struct history *h, int64_t t)
{
        struct event e;

        for (int s = 0; s < SERIES; s++) {
                const char *unit;
                series_of(s, &e);
                unit = e.unit;
                event_set_value(&e, 40 + s + (double)((t / STEP + s) % 17) / 4, unit);
                e.wall_usec = t * 1000000;
                history_record(h, &e);
        }
}

int main(void)
{
        char dir[] = "/var/tmp/weibao-bench-snapshot-XXXXXX", path[128], cmd[160];
        struct loop *loop;
        struct store *st;
        struct history *h;
        struct ledger *l;
        struct history_settings set = {0};
        struct store_stats ss;
        uint64_t used_a = 0, used_b = 0, used_end = 0, used_75 = 0, used_15 = 0;
        int64_t now = time_wall_usec() / 1000000, start = now - DAYS * 86400;
        int err = 0;

        if (!mkdtemp(dir) || loop_new(&loop) < 0)
                return 1;
        snprintf(path, sizeof path, "%s/agent.db", dir);
        if (store_open(loop, path, STORE_SYNC_NORMAL, &st, NULL) < 0 || history_new(loop, st, &set, &h) < 0 ||
            ledger_new(loop, st, 0, &l) < 0)
                return 1;
        fprintf(stderr, "bench_snapshot: writing %d days of %d series every %d s into %s\n", DAYS, SERIES, STEP, path);
        for (int64_t t = start; t < now; t += STEP) {
                feed(h, t);
                if ((t - start) % 3600 == 0) {
                        history_close_minutes(h, (t + 1) * 1000000);
                        if (store_commit_now(st) < 0)
                                return 1;
                        /* a day of both tiers, inside the 14 days the minutes are kept */
                        if (now - t <= 2 * 86400 && !used_a)
                                store_used_bytes(st, &used_a);
                        if (now - t <= 86400 && !used_b)
                                store_used_bytes(st, &used_b);
                        /* hours only (minutes older than 14 days before now age out at once) */
                        if (now - t <= 75 * 86400 && !used_75)
                                store_used_bytes(st, &used_75);
                        if (now - t <= 15 * 86400 && !used_15)
                                store_used_bytes(st, &used_15);
                }
        }
        history_close_minutes(h, now * 1000000);
        store_commit_now(st);
        store_used_bytes(st, &used_end);
        store_get_stats(st, &ss);

        double t0 = now_s();
        cJSON *hj = history_to_json(h, (now - DAYS * 86400) * 1000000, false, &err);
        double th = now_s();
        cJSON *lj = ledger_to_json(l, (now - DAYS * 86400) * 1000000, now * 1000000, &err);
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddItemToObject(doc, "history", hj);
        cJSON_AddItemToObject(doc, "downtime", lj);
        double tl = now_s();
        char *text = cJSON_PrintUnformatted(doc);
        double t1 = now_s();
        fprintf(stderr, "bench_snapshot: history %.3f s, ledger %.3f s, printing %.3f s\n", th - t0, tl - th, t1 - tl);
        if (!hj || !lj || !text) {
                fprintf(stderr, "bench_snapshot: building failed (%d)\n", err);
                return 1;
        }
        fprintf(stderr, "bench_snapshot: %zu series in the snapshot, store file %.1f MiB with its WAL\n",
                (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(hj, "series")), (double)ss.bytes / 1048576);
        printf("bench: snapshot.build_90d %.3f s\n", t1 - t0);
        printf("bench: snapshot.size_90d %.2f MiB\n", (double)strlen(text) / 1048576);
        printf("bench: history.growth_day %.0f KiB/day\n", (double)(used_b - used_a) / 1024);
        printf("bench: history.store_90d %.1f MiB\n", (double)used_end / 1048576);
        printf("bench: history.cap %.0f MiB\n", (double)HISTORY_CAP_DEFAULT / 1048576);
        /* once the 14 days of minutes are full, a day adds its hourly rows only */
        double per_day = (double)(used_15 - used_75) / 60;
        if (per_day > 0)
                printf("bench: history.days_to_cap %.0f days\n",
                       DAYS + ((double)HISTORY_CAP_DEFAULT - (double)used_end) / per_day);
        free(text);
        cJSON_Delete(doc);
        ledger_free(l);
        history_free(h);
        store_free(st);
        loop_free(loop);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : 1;
}
