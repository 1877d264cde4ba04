/* Unit tests for agent/maintenance.c against a wall clock the test moves:
 * a window never outlives its end time, also when the wall clock moves on
 * without the monotonic clock (a suspend, a clock set forward), and a clock
 * set back does not end it early. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../agent/loop.h"
#include "../../agent/maintenance.h"
#include "../../agent/store.h"
#include "../../lib/event.h"
#include "scratch.h"

#define HOUR (3600LL * 1000000)

static int64_t fake_now;

static int64_t fake_clock(void)
{
        return fake_now;
}

struct fixture {
        char dir[64];
        struct loop *loop;
        struct store *store;
        struct maintenance *m;
        int told_active, told_released;
        char last_why[700];
};

static void on_changed(bool active, const char *why, void *userdata)
{
        struct fixture *f = userdata;

        if (active)
                f->told_active++;
        else
                f->told_released++;
        snprintf(f->last_why, sizeof f->last_why, "%s", why);
}

static void open_all(struct fixture *f)
{
        char path[128];

        snprintf(path, sizeof path, "%s/agent.db", f->dir);
        assert_int_equal(store_open(f->loop, path, STORE_SYNC_NORMAL, &f->store, NULL), 0);
        assert_int_equal(maintenance_new(f->loop, f->store, on_changed, f, &f->m), 0);
        maintenance_set_clock(f->m, fake_clock, 20000);
}

static void close_all(struct fixture *f)
{
        store_commit_now(f->store);
        maintenance_free(f->m);
        store_free(f->store);
        f->m = NULL;
        f->store = NULL;
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof *f);

        assert_non_null(f);
        scratch_make(f->dir, sizeof f->dir, "maint");
        assert_int_equal(loop_new(&f->loop), 0);
        fake_now = time_wall_usec();
        open_all(f);
        f->told_active = f->told_released = 0; /* "no maintenance window", told at start */
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        close_all(f);
        loop_free(f->loop);
        scratch_remove(f->dir);
        free(f);
        return 0;
}

/* Runs the loop for about a second, or until the window is released. */
static void run(struct fixture *f)
{
        int before = f->told_released;

        for (int i = 0; i < 20 && f->told_released == before; i++)
                assert_true(loop_run_once(f->loop, 50000) >= 0);
}

static const cJSON *active_json(cJSON *o)
{
        return cJSON_GetObjectItemCaseSensitive(o, "active");
}

static void test_a_window_runs_until_its_end(void **state)
{
        struct fixture *f = *state;
        int64_t id;
        cJSON *o;

        assert_int_equal(maintenance_start(f->m, 2 * HOUR, "disk swap", &id), 0);
        assert_int_equal(f->told_active, 1);
        assert_true(maintenance_active(f->m));
        fake_now += HOUR;
        run(f);
        assert_true(maintenance_active(f->m));
        assert_int_equal(f->told_released, 0);
        o = maintenance_to_json(f->m);
        assert_true(cJSON_IsObject(active_json(o)));
        assert_int_equal((int)cJSON_GetObjectItemCaseSensitive(active_json(o), "remaining_s")->valuedouble, 3600);
        cJSON_Delete(o);
}

/* The wall clock passes the end while the monotonic clock barely moves (a
 * suspend): at once no longer active, and the timer ends it soon after. */
static void test_a_window_never_outlives_its_end_time(void **state)
{
        struct fixture *f = *state;
        int64_t id, start = fake_now;
        cJSON *o, *w;

        assert_int_equal(maintenance_start(f->m, 2 * HOUR, "kernel upgrade", &id), 0);
        fake_now += 3 * HOUR;
        assert_false(maintenance_active(f->m));
        o = maintenance_to_json(f->m);
        assert_true(cJSON_IsNull(active_json(o)));
        cJSON_Delete(o);
        run(f);
        assert_int_equal(f->told_released, 1);
        assert_non_null(strstr(f->last_why, "ended at its end time"));
        /* it ended at its end time, not when the agent noticed */
        o = maintenance_to_json(f->m);
        w = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "windows"), 0);
        char end[40];
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(w, "ended_at")->valuestring,
                            time_format_rfc3339(start + 2 * HOUR, end, sizeof end));
        cJSON_Delete(o);
        assert_int_equal(maintenance_end(f->m, 0), -ENOENT);
}

/* The wall clock set back: the window keeps running to its real end. */
static void test_a_clock_set_back_does_not_end_it_early(void **state)
{
        struct fixture *f = *state;
        int64_t id;

        assert_int_equal(maintenance_start(f->m, HOUR, "fan", &id), 0);
        fake_now -= 5 * HOUR;
        run(f);
        assert_true(maintenance_active(f->m));
        assert_int_equal(f->told_released, 0);
        fake_now += 6 * HOUR;
        run(f);
        assert_false(maintenance_active(f->m));
        assert_int_equal(f->told_released, 1);
}

/* A window survives a restart, and one found past its end after it is
 * ended at once. */
static void test_a_window_survives_a_restart_but_not_its_end(void **state)
{
        struct fixture *f = *state;
        int64_t id;

        assert_int_equal(maintenance_start(f->m, HOUR, "psu", &id), 0);
        close_all(f);
        f->told_active = f->told_released = 0;
        open_all(f); /* the real clock: an hour has not passed */
        assert_int_equal(f->told_active, 1);
        assert_true(maintenance_active(f->m));
        close_all(f);
        f->told_active = f->told_released = 0;
        fake_now += 2 * HOUR;
        /* maintenance_new judges by the real clock (no test clock yet):
         * running; with the test clock set it is over at once */
        open_all(f);
        assert_false(maintenance_active(f->m));
        run(f);
        assert_int_equal(f->told_released, 1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_a_window_runs_until_its_end, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_window_never_outlives_its_end_time, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_clock_set_back_does_not_end_it_early, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_window_survives_a_restart_but_not_its_end, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
