/* Unit tests for agent/snapshot.c: a snapshot built from the agent's real
 * modules (store, outbox, faults, maintenance, history, ledger) has every
 * member the schema requires, and under allocation failure at every point it
 * is NULL with -ENOMEM, never a document missing members, a crash or a leak
 * (ASan). The loop never runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../agent/faults.h"
#include "../../agent/history.h"
#include "../../agent/identity.h"
#include "../../agent/ledger.h"
#include "../../agent/loop.h"
#include "../../agent/maintenance.h"
#include "../../agent/outbox.h"
#include "../../agent/sender.h"
#include "../../agent/snapshot.h"
#include "../../agent/store.h"
#include "../../lib/event.h"
#include "../../lib/xalloc.h"
#include "../../rules/conf.h"
#include "scratch.h"

struct fixture {
        char dir[64];
        struct loop *loop;
        struct sender *sender;
        struct identity *id;
        struct config *config;
        struct store *st;
        struct outbox *outbox;
        struct faults *faults;
        struct maintenance *maint;
        struct history *h;
        struct ledger *l;
};

static void no_change(bool active, const char *why, void *userdata)
{
        (void)active;
        (void)why;
        (void)userdata;
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof *f);
        struct outbox_settings os = {0};
        struct faults_settings fs = {.occurrence_usec = 1000000, .case_rate = 60, .case_burst = 100};
        struct history_settings hs = {0};
        struct diag *d = diag_new();
        char path[128];
        struct event e;

        assert_non_null(f);
        scratch_make(f->dir, sizeof f->dir, "snapshot");
        snprintf(path, sizeof path, "%s/agent.db", f->dir);
        assert_int_equal(loop_new(&f->loop), 0);
        assert_int_equal(sender_new(f->loop, &f->sender), 0);
        assert_int_equal(identity_load("unit", &f->id), 0);
        assert_int_equal(
                config_load_string("agent.conf",
                                   "central {\n url \"https://cases.example\"\n token_file \"/nonexistent\"\n}\n",
                                   &f->config, d),
                0);
        diag_free(d);
        assert_int_equal(store_open(f->loop, path, STORE_SYNC_NORMAL, &f->st, NULL), 0);
        assert_int_equal(outbox_new(f->loop, f->st, f->sender, &os, NULL, NULL, &f->outbox), 0);
        assert_int_equal(faults_new(f->loop, f->id, f->st, f->outbox, &fs, &f->faults), 0);
        assert_int_equal(maintenance_new(f->loop, f->st, no_change, NULL, &f->maint), 0);
        assert_int_equal(history_new(f->loop, f->st, &hs, &f->h), 0);
        assert_int_equal(ledger_new(f->loop, f->st, 0, &f->l), 0);
        for (int i = 0; i < 120; i++) {
                event_init(&e, "sensor", "temperature", i % 2 ? "chip/temp1" : "chip/temp2");
                event_set_value(&e, 40 + i % 7, "C");
                event_add_number(&e, "max", 80);
                e.wall_usec -= (int64_t)(120 - i) * 60 * 1000000;
                history_record(f->h, &e);
        }
        history_note(f->h, time_wall_usec(), "agent-start", "unit", NULL);
        history_close_minutes(f->h, time_wall_usec());
        assert_int_equal(store_commit_now(f->st), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        ledger_free(f->l);
        history_free(f->h);
        maintenance_free(f->maint);
        faults_free(f->faults);
        outbox_free(f->outbox);
        store_free(f->st);
        sender_free(f->sender);
        config_free(f->config);
        identity_free(f->id);
        loop_free(f->loop);
        scratch_remove(f->dir);
        free(f);
        return 0;
}

/* nth: the allocation of snapshot_build to fail (0: none) */
static unsigned long allocations; /* by the last build */

static cJSON *build(struct fixture *f, unsigned long nth, int *err)
{
        struct snapshot_parts parts = {
                .id = f->id,
                .config = f->config,
                .collectors = cJSON_CreateArray(),
                .status = cJSON_CreateObject(),
                .faults = f->faults,
                .outbox = f->outbox,
                .maintenance = f->maint,
                .history = f->h,
                .ledger = f->l,
                .started_wall = time_wall_usec() - 1000000,
        };

        cJSON *s;

        assert_non_null(parts.collectors);
        assert_non_null(parts.status);
        assert_non_null(cJSON_AddNumberToObject(parts.status, "rules", 3));
        xalloc_fail_at(nth);
        s = snapshot_build(&parts, time_wall_usec() - 86400LL * 1000000, false, err);
        allocations = xalloc_fail_at(0);
        return s;
}

static void check_complete(const cJSON *s)
{
        static const char *const members[] = {"version", "generated_at", "since",       "agent",  "host",
                                              "config",  "collectors",   "faults",      "outbox", "maintenance",
                                              "history", "downtime",     "agent_health"};

        for (size_t i = 0; i < sizeof members / sizeof members[0]; i++)
                if (!cJSON_GetObjectItemCaseSensitive(s, members[i]))
                        fail_msg("member %s missing", members[i]);
        const cJSON *series =
                cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(s, "history"), "series");
        assert_int_equal(cJSON_GetArraySize(series), 2);
}

static void test_a_snapshot_has_every_member(void **state)
{
        struct fixture *f = *state;
        int err = 1;
        cJSON *s = build(f, 0, &err);

        assert_non_null(s);
        assert_int_equal(err, 0);
        check_complete(s);
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(s, "version")->valueint, SNAPSHOT_VERSION);
        cJSON_Delete(s);
}

/* Every allocation of a snapshot fails once, in turn. */
static void test_allocation_failures(void **state)
{
        struct fixture *f = *state;
        cJSON_Hooks hooks = {.malloc_fn = xmalloc, .free_fn = free};
        unsigned long total, failed = 0;
        int err = 0;

        cJSON_InitHooks(&hooks);
        cJSON_Delete(build(f, 0, &err));
        total = allocations;
        assert_true(total > 300);
        for (unsigned long n = 1; n <= total; n++) {
                cJSON *s = build(f, n, &err);
                if (s) {
                        assert_int_equal(err, 0);
                        check_complete(s);
                        cJSON_Delete(s);
                } else {
                        assert_int_equal(err, -ENOMEM);
                        failed++;
                }
        }
        cJSON_InitHooks(NULL);
        assert_true(failed > total / 2);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_a_snapshot_has_every_member, setup, teardown),
                cmocka_unit_test_setup_teardown(test_allocation_failures, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
