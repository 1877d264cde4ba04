/* Unit tests for agent/history.c: downsampling known readings into 1-minute
 * and 1-hour min/avg/max, ageing out, and the cap on disk with a long
 * synthetic history (the newest data stays). The store is a real SQLite file
 * in a temporary directory; the loop is never run, commits are explicit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../agent/history.h"
#include "../../agent/loop.h"
#include "../../agent/store.h"
#include "../../lib/event.h"
#include "../../lib/xalloc.h"
#include "scratch.h"

struct fixture {
        char dir[64];
        struct loop *loop;
        struct store *st;
        struct history *h;
};

static int open_history(struct fixture *f, const struct history_settings *set)
{
        char path[128];
        int r;

        snprintf(path, sizeof path, "%s/agent.db", f->dir);
        if ((r = store_open(f->loop, path, STORE_SYNC_NORMAL, &f->st, NULL)) < 0)
                return r;
        return history_new(f->loop, f->st, set, &f->h);
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof *f);
        struct history_settings set = {0};

        assert_non_null(f);
        scratch_make(f->dir, sizeof f->dir, "history");
        assert_int_equal(loop_new(&f->loop), 0);
        assert_int_equal(open_history(f, &set), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        history_free(f->h);
        store_free(f->st);
        loop_free(f->loop);
        scratch_remove(f->dir);
        free(f);
        return 0;
}

static void reading(struct fixture *f, const char *object, int64_t t_sec, double v)
{
        struct event e;

        event_init(&e, "sensor", "temperature", object);
        event_set_value(&e, v, "C");
        e.wall_usec = t_sec * 1000000;
        history_record(f->h, &e);
}

struct got {
        int64_t t[64];
        double min[64], avg[64], max[64];
        int64_t n[64];
        size_t count;
        const char *only;
};

static int collect(const struct store_sample *s, void *ud)
{
        struct got *g = ud;

        if (g->only && strcmp(s->object, g->only) != 0)
                return 0;
        assert_true(g->count < 64);
        assert_string_equal(s->source, "sensor");
        assert_string_equal(s->unit, "C");
        g->t[g->count] = s->t;
        g->min[g->count] = s->min;
        g->avg[g->count] = s->avg;
        g->max[g->count] = s->max;
        g->n[g->count] = s->n;
        g->count++;
        return 0;
}

static void test_known_readings_downsample_exactly(void **state)
{
        struct fixture *f = *state;
        int64_t now = time_wall_usec() / 1000000;
        int64_t h0 = now - now % 3600 - 2 * 3600; /* two hours ago, on the hour */
        struct got g = {.only = "cpu/temp1"};

        /* minute 0 of hour 0: 10, 20; minute 1: 30; hour 1, minute 5: 40, 50, 60 */
        reading(f, "cpu/temp1", h0 + 1, 10);
        reading(f, "cpu/temp1", h0 + 59, 20);
        reading(f, "cpu/temp1", h0 + 60, 30);
        reading(f, "cpu/temp1", h0 + 3600 + 300, 40);
        reading(f, "cpu/temp1", h0 + 3600 + 310, 50);
        reading(f, "cpu/temp1", h0 + 3600 + 359, 60);
        reading(f, "other/x", h0 + 5, 99); /* another series, kept apart */
        history_close_minutes(f->h, (h0 + 2 * 3600 + 1) * 1000000);
        assert_int_equal(store_commit_now(f->st), 0);

        assert_int_equal(store_load_samples(f->st, STORE_TIER_MINUTE, 0, collect, &g), 0);
        assert_int_equal(g.count, 3);
        assert_int_equal(g.t[0], h0);
        assert_true(g.min[0] == 10 && g.max[0] == 20 && g.avg[0] == 15 && g.n[0] == 2);
        assert_int_equal(g.t[1], h0 + 60);
        assert_true(g.min[1] == 30 && g.max[1] == 30 && g.avg[1] == 30 && g.n[1] == 1);
        assert_int_equal(g.t[2], h0 + 3600 + 300);
        assert_true(g.min[2] == 40 && g.max[2] == 60 && g.avg[2] == 50 && g.n[2] == 3);

        memset(&g, 0, sizeof g);
        g.only = "cpu/temp1";
        assert_int_equal(store_load_samples(f->st, STORE_TIER_HOUR, 0, collect, &g), 0);
        assert_int_equal(g.count, 2);
        assert_int_equal(g.t[0], h0);
        assert_true(g.min[0] == 10 && g.max[0] == 30 && g.avg[0] == 20 && g.n[0] == 3);
        assert_int_equal(g.t[1], h0 + 3600);
        assert_true(g.min[1] == 40 && g.max[1] == 60 && g.avg[1] == 50 && g.n[1] == 3);

        /* the snapshot's view: summary over the period, hourly points */
        int err = 0;
        cJSON *j = history_to_json(f->h, (h0 - 3600) * 1000000, false, &err);
        assert_non_null(j);
        const cJSON *s, *series = cJSON_GetObjectItemCaseSensitive(j, "series");
        bool seen = false;
        cJSON_ArrayForEach(s, series)
        {
                if (strcmp(cJSON_GetObjectItemCaseSensitive(s, "object")->valuestring, "cpu/temp1") != 0)
                        continue;
                seen = true;
                const cJSON *sum = cJSON_GetObjectItemCaseSensitive(s, "summary");
                assert_true(cJSON_GetObjectItemCaseSensitive(sum, "min")->valuedouble == 10);
                assert_true(cJSON_GetObjectItemCaseSensitive(sum, "max")->valuedouble == 60);
                assert_true(fabs(cJSON_GetObjectItemCaseSensitive(sum, "avg")->valuedouble - 35) < 1e-9);
                assert_int_equal(cJSON_GetObjectItemCaseSensitive(sum, "readings")->valueint, 6);
                assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(s, "hourly")), 2);
        }
        assert_true(seen);
        cJSON_Delete(j);
}

static void test_old_data_ages_out(void **state)
{
        struct fixture *f = *state;
        struct history_settings set = {.minute_days = 1, .hour_days = 3};
        int64_t now = time_wall_usec() / 1000000;
        struct got g = {0};

        history_free(f->h);
        assert_int_equal(history_new(f->loop, f->st, &set, &f->h), 0);
        reading(f, "a", now - 5 * 86400, 1); /* beyond both */
        reading(f, "a", now - 2 * 86400, 2); /* minutes go, the hour stays */
        reading(f, "a", now - 600, 3);       /* both stay */
        history_close_minutes(f->h, now * 1000000);
        assert_int_equal(store_commit_now(f->st), 0);
        history_close_minutes(f->h, now * 1000000); /* prunes at this commit */
        assert_int_equal(store_commit_now(f->st), 0);
        assert_int_equal(store_load_samples(f->st, STORE_TIER_MINUTE, 0, collect, &g), 0);
        assert_int_equal(g.count, 1);
        assert_true(g.avg[0] == 3);
        memset(&g, 0, sizeof g);
        assert_int_equal(store_load_samples(f->st, STORE_TIER_HOUR, 0, collect, &g), 0);
        assert_true(g.count >= 1 && g.count <= 2);
        assert_true(g.avg[0] == 2);
}

/* What the files may exceed the cap by between two prunings (a minute of
 * readings here) and the WAL of one commit before its checkpoint: 64 KiB. */
#define CAP_SLACK (64 * 1024)

static void test_a_long_history_stays_under_the_cap_on_disk_and_keeps_the_newest(void **state)
{
        struct fixture *f = *state;
        struct history_settings set = {.cap_bytes = 1024 * 1024, .minute_days = 14, .hour_days = 400};
        int64_t now = time_wall_usec() / 1000000, start = now - now % 60 - 6 * 86400;
        uint64_t disk, most = 0;
        char obj[32];
        struct got g = {0};
        bool newest = false;
        struct history_stats hs;

        history_free(f->h);
        assert_int_equal(history_new(f->loop, f->st, &set, &f->h), 0);
        /* six days of minutes for 8 sensors: about 69,000 rows, several MiB uncapped */
        for (int64_t t = start; t < now - 60; t += 60) {
                for (int s = 0; s < 8; s++) {
                        snprintf(obj, sizeof obj, "chip/temp%d", s);
                        reading(f, obj, t + 1, 40 + s + (double)(t % 7));
                }
                if ((t - start) % 3600 == 0) {
                        history_close_minutes(f->h, (t + 61) * 1000000);
                        assert_int_equal(store_commit_now(f->st), 0);
                        disk = store_disk_bytes(f->st);
                        most = disk > most ? disk : most;
                        assert_true(disk <= set.cap_bytes + CAP_SLACK);
                }
        }
        history_close_minutes(f->h, now * 1000000);
        assert_int_equal(store_commit_now(f->st), 0);
        assert_true(store_disk_bytes(f->st) <= set.cap_bytes + CAP_SLACK);
        assert_true(most > set.cap_bytes / 2); /* the cap, not the retention, bounded it */
        /* the newest minute of a sensor is still there */
        g.only = "chip/temp3";
        assert_int_equal(store_load_samples(f->st, STORE_TIER_MINUTE, now - 600, collect, &g), 0);
        for (size_t i = 0; i < g.count; i++)
                newest |= g.t[i] >= now - now % 60 - 180;
        assert_true(newest);
        history_get_stats(f->h, &hs);
        assert_true(hs.pruned > 0);
        assert_false(hs.over_cap);
}

/* Events alone over the cap: the oldest events go, the last day of samples
 * and events stays, and the history says it is over its cap. */
static void test_over_the_cap_with_only_the_last_day_left_keeps_it_and_says_so(void **state)
{
        struct fixture *f = *state;
        struct history_settings set = {.cap_bytes = 256 * 1024};
        int64_t now = time_wall_usec() / 1000000;
        char detail[400];
        struct got g = {.only = "cpu/temp1"};
        struct history_stats hs;
        int err = 0;

        history_free(f->h);
        assert_int_equal(history_new(f->loop, f->st, &set, &f->h), 0);
        reading(f, "cpu/temp1", now - 3 * 86400, 1); /* old: may go */
        reading(f, "cpu/temp1", now - 3600, 2);      /* the last day: stays */
        memset(detail, 'x', sizeof detail);
        for (int i = 0; i < 2000; i++) {
                snprintf(detail, sizeof detail, "{\"n\":%d,\"pad\":\"%0300d\"}", i, i);
                /* half of them three days old, half within the last day */
                history_note(f->h, (now - (i % 2 ? 3 * 86400 : 3600) + i) * 1000000, "fault-firing", "k",
                             cJSON_Parse(detail));
        }
        history_close_minutes(f->h, now * 1000000);
        assert_int_equal(store_commit_now(f->st), 0);

        assert_int_equal(store_load_samples(f->st, STORE_TIER_MINUTE, 0, collect, &g), 0);
        assert_int_equal(g.count, 1);
        assert_true(g.avg[0] == 2);
        history_get_stats(f->h, &hs);
        assert_true(hs.over_cap);
        cJSON *j = history_to_json(f->h, (now - 10 * 86400) * 1000000, false, &err);
        assert_non_null(j);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "over_cap")));
        const cJSON *e;
        int recent = 0, total = 0;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(j, "events"))
        {
                int64_t n =
                        (int64_t)cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(e, "detail"), "n")
                                ->valuedouble;
                recent += n % 2 == 0;
                total++;
        }
        assert_int_equal(recent, 1000); /* every event of the last day */
        assert_true(total < 2000);      /* older ones went */
        cJSON_Delete(j);
}

static const cJSON *series_of(const cJSON *j, const char *object)
{
        const cJSON *s;

        cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(j, "series"))
        {
                if (strcmp(cJSON_GetObjectItemCaseSensitive(s, "object")->valuestring, object) == 0)
                        return s;
        }
        fail_msg("no series %s", object);
        return NULL;
}

static double summary(const cJSON *s, const char *k)
{
        return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(s, "summary"), k)->valuedouble;
}

/* Without --minutes a snapshot carries at most 360 points per series and
 * tier, merged over whole steps (the report draws no more); with it, every
 * hour. */
static void test_long_periods_merge_hourly_points(void **state)
{
        struct fixture *f = *state;
        int64_t now = time_wall_usec() / 1000000, h0 = now - now % 7200 - 30 * 86400;
        int err = 0;

        for (int64_t t = h0; t < h0 + 30 * 86400; t += 3600) /* one reading an hour, value = hour number */
                reading(f, "cpu/temp1", t + 10, (double)((t - h0) / 3600));
        history_close_minutes(f->h, now * 1000000);
        assert_int_equal(store_commit_now(f->st), 0);

        cJSON *j = history_to_json(f->h, h0 * 1000000, false, &err);
        assert_non_null(j);
        const cJSON *s = series_of(j, "cpu/temp1"), *hourly = cJSON_GetObjectItemCaseSensitive(s, "hourly");
        assert_true(cJSON_GetObjectItemCaseSensitive(s, "hourly_step_s")->valuedouble == 7200);
        assert_int_equal(cJSON_GetArraySize(hourly), 360);
        const cJSON *p = cJSON_GetArrayItem(hourly, 1); /* hours 2 and 3 */
        assert_true(cJSON_GetArrayItem(p, 0)->valuedouble == (double)(h0 + 7200));
        assert_true(cJSON_GetArrayItem(p, 1)->valuedouble == 2);
        assert_true(cJSON_GetArrayItem(p, 2)->valuedouble == 2.5);
        assert_true(cJSON_GetArrayItem(p, 3)->valuedouble == 3);
        assert_true(summary(s, "readings") == 720);
        cJSON_Delete(j);

        j = history_to_json(f->h, h0 * 1000000, true, &err);
        assert_non_null(j);
        s = series_of(j, "cpu/temp1");
        assert_true(cJSON_GetObjectItemCaseSensitive(s, "hourly_step_s")->valuedouble == 3600);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(s, "hourly")), 720);
        assert_true(summary(s, "readings") == 720);
        cJSON_Delete(j);
}

/* A clean stop and a start within the same hour: the hour holds the minutes
 * of both runs, and the snapshot counts each reading once, before and after
 * the hour closes. A restart within one minute merges into its row. */
static void test_a_clean_restart_keeps_the_hour_whole(void **state)
{
        struct fixture *f = *state;
        struct history_settings set = {0};
        /* the current hour (later minutes of it may lie ahead: that is fine) */
        int64_t now = time_wall_usec() / 1000000, h0 = now - now % 3600;
        struct got g = {.only = "cpu/temp1"};
        int err = 0;

        for (int k = 0; k < 10; k++)
                reading(f, "cpu/temp1", h0 + 60 * k + 5, k);
        history_flush(f->h); /* the clean stop */
        assert_int_equal(store_commit_now(f->st), 0);
        history_free(f->h);
        assert_int_equal(history_new(f->loop, f->st, &set, &f->h), 0);
        reading(f, "cpu/temp1", h0 + 9 * 60 + 30, 9); /* minute 9 again, after the restart */
        for (int k = 10; k < 20; k++)
                reading(f, "cpu/temp1", h0 + 60 * k + 5, k);
        history_close_minutes(f->h, (h0 + 30 * 60) * 1000000);
        assert_int_equal(store_commit_now(f->st), 0);

        cJSON *j = history_to_json(f->h, (h0 - 3600) * 1000000, false, &err);
        assert_non_null(j);
        assert_true(summary(series_of(j, "cpu/temp1"), "readings") == 21);
        cJSON_Delete(j);

        history_close_minutes(f->h, (h0 + 3600 + 1) * 1000000);
        assert_int_equal(store_commit_now(f->st), 0);
        assert_int_equal(store_load_samples(f->st, STORE_TIER_HOUR, 0, collect, &g), 0);
        assert_int_equal(g.count, 1);
        assert_int_equal(g.t[0], h0);
        assert_int_equal(g.n[0], 21);
        assert_true(g.min[0] == 0 && g.max[0] == 19 && fabs(g.avg[0] - 199.0 / 21) < 1e-9);
        memset(&g, 0, sizeof g);
        g.only = "cpu/temp1";
        assert_int_equal(store_load_samples(f->st, STORE_TIER_MINUTE, h0 + 9 * 60, collect, &g), 0);
        assert_true(g.t[0] == h0 + 9 * 60 && g.n[0] == 2 && g.avg[0] == 9);

        j = history_to_json(f->h, (h0 - 3600) * 1000000, false, &err);
        assert_non_null(j);
        const cJSON *s = series_of(j, "cpu/temp1");
        assert_true(summary(s, "readings") == 21);
        assert_true(summary(s, "max") == 19);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(s, "hourly")), 1);
        cJSON_Delete(j);
}

/* Killed mid-hour, started in a later hour: the hour the previous run left
 * open is written from its minutes at the first commit. */
static void test_an_hour_left_open_by_a_crash_is_completed_at_the_next_start(void **state)
{
        struct fixture *f = *state;
        struct history_settings set = {0};
        int64_t now = time_wall_usec() / 1000000, h0 = now - now % 3600 - 3 * 3600;
        struct got g = {.only = "cpu/temp1"};

        for (int k = 0; k < 10; k++)
                reading(f, "cpu/temp1", h0 + 60 * k + 5, 10 + k);
        history_close_minutes(f->h, (h0 + 10 * 60) * 1000000); /* the timer, each minute */
        assert_int_equal(store_commit_now(f->st), 0);
        history_free(f->h); /* no flush: killed */
        assert_int_equal(store_load_samples(f->st, STORE_TIER_HOUR, 0, collect, &g), 0);
        assert_int_equal(g.count, 0);

        assert_int_equal(history_new(f->loop, f->st, &set, &f->h), 0);
        assert_int_equal(store_commit_now(f->st), 0);
        assert_int_equal(store_load_samples(f->st, STORE_TIER_HOUR, 0, collect, &g), 0);
        assert_int_equal(g.count, 1);
        assert_true(g.t[0] == h0 && g.n[0] == 10 && g.min[0] == 10 && g.max[0] == 19 && g.avg[0] == 14.5);
}

/* history_to_json with each of its allocations failing in turn: NULL and
 * -ENOMEM, or a whole document (a detail it could not parse kept as text),
 * never a crash or a leak (ASan). */
static void test_snapshot_json_allocation_failures(void **state)
{
        struct fixture *f = *state;
        int64_t now = time_wall_usec() / 1000000, h0 = now - now % 3600 - 2 * 3600;
        cJSON_Hooks hooks = {.malloc_fn = xmalloc, .free_fn = free};
        unsigned long failed = 0;
        struct event e;

        for (int k = 0; k < 90; k++) {
                reading(f, "cpu/temp1", h0 + 60 * k, k);
                reading(f, "cpu/temp2", h0 + 60 * k, k);
        }
        event_init(&e, "sensor", "temperature", "cpu/temp3"); /* thresholds, still open */
        event_set_value(&e, 50, "C");
        event_add_number(&e, "max", 80);
        e.wall_usec = now * 1000000;
        history_record(f->h, &e);
        history_close_minutes(f->h, (h0 + 2 * 3600) * 1000000);
        history_note(f->h, now * 1000000, "fault-firing", "cpu/temp1", cJSON_Parse("{\"level\":\"P3\"}"));
        assert_int_equal(store_commit_now(f->st), 0);
        cJSON_InitHooks(&hooks);
        int err = 0;
        xalloc_fail_at(0);
        cJSON_Delete(history_to_json(f->h, 0, false, &err));
        unsigned long total = xalloc_fail_at(0);
        assert_true(total > 100);
        for (unsigned long n = 1; n <= total; n++) { /* every allocation fails once, in turn */
                xalloc_fail_at(n);
                cJSON *j = history_to_json(f->h, 0, false, &err);
                xalloc_fail_at(0);
                if (j) {
                        assert_int_equal(err, 0);
                        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "series")), 3);
                        const cJSON *ev = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "events"), 0);
                        assert_non_null(ev);
                        /* a detail it could not parse is there as text */
                        assert_true(cJSON_HasObjectItem(ev, "detail") || cJSON_HasObjectItem(ev, "detail_text"));
                        const cJSON *t3 = series_of(j, "cpu/temp3");
                        assert_true(cJSON_HasObjectItem(t3, "thresholds") ||
                                    cJSON_HasObjectItem(t3, "thresholds_text"));
                        cJSON_Delete(j);
                } else {
                        assert_int_equal(err, -ENOMEM);
                        failed++;
                }
        }
        cJSON_InitHooks(NULL);
        assert_true(failed > total / 2);
}

static void link_event(struct fixture *f, int64_t t, const char *state, double loss, double rtt, double jitter)
{
        struct event e;

        event_init(&e, "heartbeat", "link", "ha/eth1");
        event_set_value(&e, loss, "%");
        event_add_string(&e, "state", state);
        event_add_number(&e, "rtt_ms", rtt);
        event_add_number(&e, "jitter_ms", jitter);
        event_add_number(&e, "flaps", 1);
        e.wall_usec = t * 1000000;
        history_record(f->h, &e);
}

static int health_calls;

static void health(struct history *h, int64_t wall, void *userdata)
{
        (void)userdata;
        health_calls++;
        history_record_value(h, "agent", "outbox_depth", "me", "", 3 * health_calls, wall);
}

static const cJSON *event_of(const cJSON *j, const char *kind, int nth)
{
        const cJSON *e;

        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(j, "events"))
        {
                if (strcmp(cJSON_GetObjectItemCaseSensitive(e, "kind")->valuestring, kind) == 0 && nth-- == 0)
                        return e;
        }
        return NULL;
}

/* R1: a link's RTT and jitter are series of their own, its state changes
 * and a process's restarts are moments, and the agent's health is read
 * once a minute; the snapshot shows them. */
static void test_link_process_and_agent_health_are_recorded(void **state)
{
        struct fixture *f = *state;
        int64_t now = time_wall_usec() / 1000000, t0 = now - now % 60 - 600;
        struct event e;
        int err = 0;

        history_set_health(f->h, health, NULL);
        link_event(f, t0 + 1, "up", 0, 1.5, 0.25);
        link_event(f, t0 + 2, "up", 0, 2.5, 0.75);
        link_event(f, t0 + 70, "down", 100, 0, 0);
        link_event(f, t0 + 130, "up", 0, 1, 0.5);
        event_init(&e, "process", "restarted", "nginx");
        event_add_number(&e, "pid", 4242);
        event_add_number(&e, "old_pid", 4000);
        event_add_string(&e, "cmdline", "nginx -g daemon off;");
        e.wall_usec = (t0 + 100) * 1000000;
        history_record(f->h, &e);
        history_close_minutes(f->h, (t0 + 180) * 1000000);
        history_close_minutes(f->h, (t0 + 240) * 1000000);
        assert_int_equal(health_calls, 2);
        assert_int_equal(store_commit_now(f->st), 0);

        cJSON *j = history_to_json(f->h, (t0 - 3600) * 1000000, false, &err);
        assert_non_null(j);
        assert_non_null(series_of(j, "ha/eth1")); /* the loss, the link events' value */
        const cJSON *s, *rtt_s = NULL, *jit_s = NULL, *hl = NULL;
        cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(j, "series"))
        {
                const char *name = cJSON_GetObjectItemCaseSensitive(s, "name")->valuestring;
                if (strcmp(name, "link.rtt_ms") == 0)
                        rtt_s = s;
                else if (strcmp(name, "link.jitter_ms") == 0)
                        jit_s = s;
                else if (strcmp(name, "outbox_depth") == 0)
                        hl = s;
        }
        assert_non_null(rtt_s);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(rtt_s, "source")->valuestring, "heartbeat");
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(rtt_s, "unit")->valuestring, "ms");
        assert_true(summary(rtt_s, "readings") == 4);
        assert_true(summary(rtt_s, "max") == 2.5);
        assert_true(summary(rtt_s, "avg") == 1.25);
        assert_non_null(jit_s);
        assert_true(summary(jit_s, "max") == 0.75);
        assert_non_null(hl);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(hl, "source")->valuestring, "agent");
        assert_true(summary(hl, "readings") == 2 && summary(hl, "max") == 6);

        const cJSON *down = event_of(j, "link-state", 0), *up = event_of(j, "link-state", 1);
        assert_non_null(down);
        assert_non_null(up);
        assert_null(event_of(j, "link-state", 2)); /* the first "up" is no change */
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(down, "object")->valuestring, "ha/eth1");
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(down, "detail");
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(d, "from")->valuestring, "up");
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(d, "to")->valuestring, "down");
        assert_string_equal(
                cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(up, "detail"), "to")->valuestring,
                "up");
        const cJSON *r = event_of(j, "process-restarted", 0);
        assert_non_null(r);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(r, "object")->valuestring, "nginx");
        assert_true(
                cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "detail"), "pid")->valuedouble ==
                4242);
        cJSON_Delete(j);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_known_readings_downsample_exactly, setup, teardown),
                cmocka_unit_test_setup_teardown(test_old_data_ages_out, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_long_history_stays_under_the_cap_on_disk_and_keeps_the_newest,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_over_the_cap_with_only_the_last_day_left_keeps_it_and_says_so,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_long_periods_merge_hourly_points, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_clean_restart_keeps_the_hour_whole, setup, teardown),
                cmocka_unit_test_setup_teardown(test_an_hour_left_open_by_a_crash_is_completed_at_the_next_start, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_snapshot_json_allocation_failures, setup, teardown),
                cmocka_unit_test_setup_teardown(test_link_process_and_agent_health_are_recorded, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
