/* bench_snapshot: the inspection snapshot of 90 days of history at the
 * default intervals (issue 6), and how the history store grows.
 *
 *     bench: snapshot.build_90d SECONDS s       history + ledger to JSON text
 *     bench: snapshot.size_90d MIB MiB          the JSON text
 *     bench: history.growth_day KIB KiB/day     what one day of readings adds (both tiers), measured
 *                                               between two and one days ago (afterwards, the day's
 *                                               minutes age out again after 14 days)
 *     bench: history.store_90d MIB MiB          the store after 90 days
 *     bench: history.cap MIB MiB                the default cap it stays under
 *
 * A real state database (agent/store.c, SQLite, sync normal) in a temporary
 * directory receives 90 days of synthetic readings for SERIES series (eight
 * temperatures, two links' loss and round-trip time: what a two-link HA
 * server reports), one reading every 10 s (the sensors collector's default
 * interval is 10 s), ending now; minutes are closed and committed every
 * hour of synthetic time, as the agent does each minute, so the 1-minute
 * samples age out after 14 days as they do in the field. Then the snapshot's
 * history and ledger parts are built and printed, and timed. */
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
#define SERIES 12
#define STEP 10 /* seconds between readings */

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void feed(struct history *h, int64_t t)
{
        static const char *const names[SERIES] = {"temperature", "temperature", "temperature", "temperature",
                                                  "temperature", "temperature", "temperature", "temperature",
                                                  "loss",        "rtt",         "loss",        "rtt"};
        char obj[64];
        struct event e;

        for (int s = 0; s < SERIES; s++) {
                snprintf(obj, sizeof obj, s < 8 ? "coretemp-isa-0000/Core %d" : "hb0/link%d", s < 8 ? s : (s - 8) / 2);
                event_init(&e, s < 8 ? "sensor" : "heartbeat", names[s], obj);
                event_set_value(&e, 40 + s + (double)((t / STEP + s) % 17) / 4, s < 8 ? "C" : s % 2 ? "ms" : "%");
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
        uint64_t used_a = 0, used_b = 0, used_end = 0;
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
                }
        }
        history_close_minutes(h, now * 1000000);
        store_commit_now(st);
        store_used_bytes(st, &used_end);
        store_get_stats(st, &ss);

        double t0 = now_s();
        cJSON *hj = history_to_json(h, (now - DAYS * 86400) * 1000000, false, &err);
        cJSON *lj = ledger_to_json(l, (now - DAYS * 86400) * 1000000, now * 1000000, &err);
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddItemToObject(doc, "history", hj);
        cJSON_AddItemToObject(doc, "downtime", lj);
        char *text = cJSON_PrintUnformatted(doc);
        double t1 = now_s();
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
        printf("bench: history.cap %.0f MiB\n", 64.0);
        free(text);
        cJSON_Delete(doc);
        ledger_free(l);
        history_free(h);
        store_free(st);
        loop_free(loop);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : 1;
}
