/* Unit tests for agent/faults.c: folding rule transitions into one fault per
 * key (level precedence, clear when the last rule clears, re-fire after clear,
 * rules removed by a reload), the reopen window, flapping, storm control,
 * maintenance holds and state that survives a restart — without a central
 * API: the sender points at a closed port and the loop is never run, so
 * nothing is delivered and the outbox shows what would be sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../agent/faults.h"
#include "../../agent/identity.h"
#include "../../agent/loop.h"
#include "../../agent/outbox.h"
#include "../../agent/store.h"
#include "../../agent/sender.h"
#include "../../lib/event.h"
#include "../../lib/xalloc.h"
#include "../../rules/conf.h"
#include "../../rules/rules.h"
#include "scratch.h"

static const char RULES[] = "rule high {\n"
                            "    when source == \"sensor\" and value >= max\n"
                            "    level P4\n"
                            "    key \"temp:{chip}\"\n"
                            "    title \"high {value}\"\n"
                            "}\n"
                            "rule critical {\n"
                            "    when source == \"sensor\" and value >= crit\n"
                            "    level P3\n"
                            "    key \"temp:{chip}\"\n"
                            "    title \"critical {value}\"\n"
                            "}\n";

struct fixture {
        struct loop *loop;
        struct sender *sender;
        struct identity *id;
        char dir[64];
        struct store *store;
        struct outbox *outbox;
        struct faults_settings set;
        struct faults *faults;
        struct ruleset *rules;
        struct event ev;
};

static int open_all(struct fixture *f)
{
        char path[128];
        struct outbox_settings os = {0};
        int r;

        snprintf(path, sizeof path, "%s/agent.db", f->dir);
        if ((r = store_open(f->loop, path, STORE_SYNC_NORMAL, &f->store, NULL)) < 0)
                return r;
        if ((r = outbox_new(f->loop, f->store, f->sender, &os, NULL, NULL, &f->outbox)) < 0)
                return r;
        return faults_new(f->loop, f->id, f->store, f->outbox, &f->set, &f->faults);
}

/* As the agent does at exit: commit, then free in reverse order. */
static void close_all(struct fixture *f)
{
        if (f->store)
                store_commit_now(f->store);
        faults_free(f->faults);
        outbox_free(f->outbox);
        store_free(f->store);
        f->faults = NULL;
        f->outbox = NULL;
        f->store = NULL;
}

static uint64_t pending(struct fixture *f)
{
        struct outbox_stats os;

        outbox_get_stats(f->outbox, &os);
        return os.opens_pending + os.updates_pending;
}

static uint64_t opens(struct fixture *f)
{
        struct outbox_stats os;

        outbox_get_stats(f->outbox, &os);
        return os.opens_pending;
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof *f);
        struct diag *d = diag_new();

        assert_non_null(f);
        f->set = (struct faults_settings){.occurrence_usec = 1000000, .case_rate = 60, .case_burst = 100};
        scratch_make(f->dir, sizeof f->dir, "faults");
        assert_int_equal(loop_new(&f->loop), 0);
        assert_int_equal(sender_new(f->loop, &f->sender), 0);
        assert_int_equal(sender_configure(f->sender, "http://127.0.0.1:9", "t", 1000000), 0);
        assert_int_equal(identity_load("unit", &f->id), 0);
        assert_int_equal(open_all(f), 0);
        assert_int_equal(ruleset_parse_string("test.rules", RULES, &f->rules, d), 0);
        diag_free(d);
        event_init(&f->ev, "sensor", "temperature", "chip0/temp1");
        event_set_value(&f->ev, 90, "C");
        event_add_string(&f->ev, "chip", "chip0");
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        close_all(f);
        sender_free(f->sender);
        identity_free(f->id);
        ruleset_free(f->rules);
        loop_free(f->loop);
        scratch_remove(f->dir);
        free(f);
        return 0;
}

static const struct rule *rule_named(const struct ruleset *rs, const char *name)
{
        for (size_t i = 0; i < ruleset_count(rs); i++)
                if (strcmp(rule_name(ruleset_get(rs, i)), name) == 0)
                        return ruleset_get(rs, i);
        fail_msg("no rule %s", name);
        return NULL;
}

static void hit_key(struct fixture *f, const char *rule, enum rule_transition t, const char *key)
{
        const struct rule *r = rule_named(f->rules, rule);
        struct rule_hit h = {
                .transition = t,
                .rule = r,
                .level = rule_get_level(r),
                .key = key,
                .title = rule,
                .description = "",
                .event = &f->ev,
                .mono_usec = time_mono_usec(),
        };
        faults_handle_hit(&h, f->faults);
}

static void hit(struct fixture *f, const char *rule, enum rule_transition t)
{
        hit_key(f, rule, t, "temp:chip0");
}

/* The one fault's JSON object (the table holds a single key in these tests). */
static const cJSON *the_fault(cJSON *arr)
{
        assert_int_equal(cJSON_GetArraySize(arr), 1);
        return cJSON_GetArrayItem(arr, 0);
}

static const char *field(const cJSON *o, const char *k)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
        assert_true(cJSON_IsString(v));
        return v->valuestring;
}

static void test_level_precedence_and_clear(void **state)
{
        struct fixture *f = *state;
        struct faults_stats st;
        cJSON *j;

        hit(f, "high", RULE_FIRING);
        j = faults_to_json(f->faults);
        assert_string_equal(field(the_fault(j), "level"), "P4");
        assert_string_equal(field(the_fault(j), "state"), "firing");
        cJSON_Delete(j);

        hit(f, "critical", RULE_FIRING); /* more urgent: the fault rises to P3 */
        j = faults_to_json(f->faults);
        assert_string_equal(field(the_fault(j), "level"), "P3");
        assert_string_equal(field(the_fault(j), "rule"), "critical");
        cJSON_Delete(j);

        hit(f, "high", RULE_REPEAT);
        hit(f, "critical", RULE_CLEARED); /* back to the rule still firing */
        j = faults_to_json(f->faults);
        assert_string_equal(field(the_fault(j), "level"), "P4");
        assert_string_equal(field(the_fault(j), "state"), "firing");
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(the_fault(j), "occurrences")->valueint, 3);
        cJSON_Delete(j);

        hit(f, "high", RULE_CLEARED);
        j = faults_to_json(f->faults);
        assert_string_equal(field(the_fault(j), "state"), "cleared");
        cJSON_Delete(j);

        faults_get_stats(f->faults, &st);
        assert_int_equal(st.firing, 0);
        assert_int_equal(st.cleared, 1);
        /* open + level(P3) + level(P4) + cleared, all undelivered */
        assert_int_equal(pending(f), 4);
}

static void test_less_urgent_rule_does_not_lower_level(void **state)
{
        struct fixture *f = *state;
        cJSON *j;

        hit(f, "critical", RULE_FIRING);
        hit(f, "high", RULE_FIRING);
        j = faults_to_json(f->faults);
        assert_string_equal(field(the_fault(j), "level"), "P3");
        cJSON_Delete(j);
        hit(f, "high", RULE_CLEARED); /* the other rule still holds the fault */
        j = faults_to_json(f->faults);
        assert_string_equal(field(the_fault(j), "state"), "firing");
        assert_string_equal(field(the_fault(j), "level"), "P3");
        cJSON_Delete(j);
}

static void test_refire_after_clear_is_a_new_period(void **state)
{
        struct fixture *f = *state;
        struct faults_stats st;
        cJSON *j;

        hit(f, "high", RULE_FIRING);
        hit(f, "high", RULE_CLEARED);
        hit(f, "high", RULE_FIRING);
        j = faults_to_json(f->faults);
        assert_string_equal(field(the_fault(j), "state"), "firing");
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(the_fault(j), "occurrences")->valueint, 1);
        cJSON_Delete(j);
        faults_get_stats(f->faults, &st);
        assert_int_equal(st.firing, 1);
        /* first period: open + cleared; second (no reopen window): open */
        assert_int_equal(pending(f), 3);
        assert_int_equal(opens(f), 2);
}

static void test_clear_of_unknown_key_is_ignored(void **state)
{
        struct fixture *f = *state;
        struct faults_stats st;

        hit(f, "high", RULE_CLEARED);
        hit(f, "high", RULE_REPEAT);
        faults_get_stats(f->faults, &st);
        assert_int_equal(st.firing, 0);
        assert_int_equal(pending(f), 0);
}

/* Reloads the engine with rules text and tells the faults; returns the
 * state of the one fault. */
static const char *reload_with(struct fixture *f, struct rule_engine *re, const char *text, char *buf, size_t size)
{
        struct ruleset *rs;
        struct diag *d = diag_new();
        cJSON *j;

        assert_int_equal(ruleset_parse_string("new.rules", text, &rs, d), 0);
        diag_free(d);
        rule_engine_set_rules(re, rs);
        faults_rules_changed(f->faults, re);
        j = faults_to_json(f->faults);
        snprintf(buf, size, "%s", field(the_fault(j), "state"));
        cJSON_Delete(j);
        return buf;
}

/* A reload that keeps the fault's rule keeps the fault; one that removes
 * the rule, or changes its key template (its state could never clear
 * again), clears it. */
static void test_rules_removed_or_rekeyed_by_reload_clear_fault(void **state)
{
        struct fixture *f = *state;
        struct rule_engine *re;
        char got[32];
        char *rekeyed = strdup(RULES), *k = strstr(rekeyed, "temp:{chip}");

        assert_non_null(k);
        memcpy(k, "heat", 4); /* rule high: key "heat:{chip}" */
        struct ruleset *engine_rules;
        struct diag *d = diag_new();
        assert_int_equal(ruleset_parse_string("test.rules", RULES, &engine_rules, d), 0);
        diag_free(d);
        assert_int_equal(rule_engine_new(0, &re), 0);
        rule_engine_set_rules(re, engine_rules); /* f->rules make the hits */
        hit(f, "high", RULE_FIRING);
        faults_restore(f->faults, re); /* the engine holds (high, temp:chip0) */
        assert_true(rule_engine_has_state(re, "high", "temp:chip0"));

        assert_string_equal(reload_with(f, re, RULES, got, sizeof got), "firing");
        assert_true(rule_engine_has_state(re, "high", "temp:chip0"));
        assert_string_equal(reload_with(f, re, rekeyed, got, sizeof got), "cleared");
        assert_false(rule_engine_has_state(re, "high", "temp:chip0"));

        hit(f, "high", RULE_FIRING);
        faults_restore(f->faults, re);
        assert_string_equal(reload_with(f, re,
                                        "rule unrelated {\n when source == \"x\"\n level P5\n key \"k\"\n "
                                        "title \"t\"\n}\n",
                                        got, sizeof got),
                            "cleared");
        rule_engine_free(re);
        free(rekeyed);
}

static void reconfigure(struct fixture *f)
{
        faults_set_settings(f->faults, &f->set);
}

static void test_recurrence_within_the_reopen_window_reopens_the_case(void **state)
{
        struct fixture *f = *state;
        cJSON *o, *recs;

        f->set.reopen_window_usec = 3600000000ULL;
        reconfigure(f);
        hit(f, "high", RULE_FIRING);
        hit(f, "high", RULE_CLEARED);
        hit(f, "high", RULE_FIRING);
        /* one case: open, cleared, reopened */
        assert_int_equal(opens(f), 1);
        assert_int_equal(pending(f), 3);
        o = outbox_to_json(f->outbox);
        recs = cJSON_GetObjectItemCaseSensitive(o, "records");
        assert_int_equal(cJSON_GetArraySize(recs), 1);
        const cJSON *types = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(recs, 0), "updates");
        assert_string_equal(cJSON_GetArrayItem(types, 0)->valuestring, "cleared");
        assert_string_equal(cJSON_GetArrayItem(types, 1)->valuestring, "reopened");
        cJSON_Delete(o);
}

static void test_state_survives_a_restart(void **state)
{
        struct fixture *f = *state;
        struct rule_engine *re;
        struct faults_stats st;
        cJSON *j;

        hit(f, "critical", RULE_FIRING);
        hit(f, "critical", RULE_REPEAT);
        close_all(f);
        assert_int_equal(open_all(f), 0);

        faults_get_stats(f->faults, &st);
        assert_int_equal(st.firing, 1);
        assert_int_equal(opens(f), 1); /* the open still owed, not a second one */
        j = faults_to_json(f->faults);
        assert_string_equal(field(the_fault(j), "state"), "firing");
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(the_fault(j), "occurrences")->valueint, 2);
        cJSON_Delete(j);

        /* the engine learns the firing state, so the rule's clear ends it */
        assert_int_equal(rule_engine_new(0, &re), 0);
        rule_engine_set_rules(re, f->rules);
        faults_restore(f->faults, re);
        struct rule_engine_stats es;
        rule_engine_get_stats(re, &es);
        assert_int_equal(es.firing, 1);
        f->ev.value = 20; /* below crit: the rule's implicit clear ("not when") holds */
        rule_engine_eval(re, &f->ev, faults_handle_hit, f->faults);
        faults_get_stats(f->faults, &st);
        assert_int_equal(st.firing, 0);
        assert_int_equal(opens(f), 1);
        assert_int_equal(pending(f), 2); /* open + cleared */
        /* the engine owned the rules now */
        f->rules = NULL;
        rule_engine_free(re);
}

static void test_a_flapping_key_is_one_quiet_case(void **state)
{
        struct fixture *f = *state;
        struct faults_stats st;
        cJSON *j;

        f->set.reopen_window_usec = 3600000000ULL;
        f->set.flap_count = 3;
        f->set.flap_window_usec = 600000000ULL;
        reconfigure(f);
        for (int i = 0; i < 20; i++) {
                hit(f, "high", RULE_FIRING);
                hit(f, "high", RULE_CLEARED);
        }
        faults_get_stats(f->faults, &st);
        assert_int_equal(st.flapping, 1);
        assert_int_equal(opens(f), 1);
        /* open, then cleared/reopened until the 4th change, the flapping
         * note: nothing for the other 36 changes */
        assert_true(pending(f) <= 6);
        j = faults_to_json(f->faults);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(the_fault(j), "flapping")));
        cJSON_Delete(j);
}

static void test_many_keys_of_one_rule_make_one_summary_case(void **state)
{
        struct fixture *f = *state;
        struct faults_stats st;
        char key[32];

        f->set.storm_keys = 5;
        f->set.storm_window_usec = 60000000;
        reconfigure(f);
        for (int i = 0; i < 500; i++) {
                snprintf(key, sizeof key, "temp:chip%d", i);
                hit_key(f, "high", RULE_FIRING, key);
        }
        faults_get_stats(f->faults, &st);
        assert_int_equal(st.storm_summarised, 495);
        assert_int_equal(opens(f), 6); /* the first 5 and one summary */
        for (int i = 0; i < 500; i++) {
                snprintf(key, sizeof key, "temp:chip%d", i);
                hit_key(f, "high", RULE_CLEARED, key);
        }
        faults_get_stats(f->faults, &st);
        assert_int_equal(st.firing, 0); /* the summary clears with its last member */
}

/* The updates queued on the outbox records of fault key, oldest record
 * first, as "open" (when the record still owes its open) and update types
 * joined by spaces into buf. Returns how many records there are. */
static int records_of(struct fixture *f, const char *key, char *buf, size_t size)
{
        cJSON *o = outbox_to_json(f->outbox), *r;
        int n = 0;

        buf[0] = '\0';
        cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(o, "records"))
        {
                const cJSON *u;
                if (strcmp(cJSON_GetObjectItemCaseSensitive(r, "fault_key")->valuestring, key) != 0)
                        continue;
                n++;
                snprintf(buf + strlen(buf), size - strlen(buf), "%s[%s", n > 1 ? " " : "",
                         strcmp(cJSON_GetObjectItemCaseSensitive(r, "waiting")->valuestring, "open") == 0 ? "open"
                                                                                                          : "");
                cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(r, "updates"))
                        snprintf(buf + strlen(buf), size - strlen(buf), " %s", u->valuestring);
                snprintf(buf + strlen(buf), size - strlen(buf), "]");
        }
        cJSON_Delete(o);
        return n;
}

static void storm(struct fixture *f, enum rule_transition t, int n)
{
        char key[32];

        for (int i = 0; i < n; i++) {
                snprintf(key, sizeof key, "temp:chip%d", i);
                hit_key(f, "high", t, key);
        }
}

/* A storm after its summary case's reopen window is a new summary case
 * naming the old one, not "reopened" on the old one. */
static void test_a_storm_after_the_reopen_window_opens_a_new_summary_case(void **state)
{
        struct fixture *f = *state;
        char got[256];

        f->set.storm_keys = 2;
        f->set.reopen_window_usec = 0; /* every recurrence is a new period */
        reconfigure(f);
        storm(f, RULE_FIRING, 5);
        storm(f, RULE_CLEARED, 5);
        assert_int_equal(records_of(f, "storm:high", got, sizeof got), 1);
        assert_string_equal(got, "[open cleared]");
        storm(f, RULE_FIRING, 5); /* the storm window still counts: all 5 join the summary */
        assert_int_equal(records_of(f, "storm:high", got, sizeof got), 2);
        assert_string_equal(got, "[open cleared] [open]");
        storm(f, RULE_CLEARED, 5);
        assert_int_equal(records_of(f, "storm:high", got, sizeof got), 2);
        assert_string_equal(got, "[open cleared] [open cleared]");
}

/* Within the reopen window the storm goes back to its summary case. */
static void test_a_storm_within_the_reopen_window_reopens_its_summary_case(void **state)
{
        struct fixture *f = *state;
        char got[256];

        f->set.storm_keys = 2;
        f->set.reopen_window_usec = 3600000000ULL;
        reconfigure(f);
        storm(f, RULE_FIRING, 5);
        storm(f, RULE_CLEARED, 5);
        storm(f, RULE_FIRING, 5);
        assert_int_equal(records_of(f, "storm:high", got, sizeof got), 1);
        assert_string_equal(got, "[open cleared reopened]");
}

static void test_an_empty_case_bucket_summarises(void **state)
{
        struct fixture *f = *state;
        struct faults_stats st;
        char key[32];

        f->set.case_burst = 2;
        f->set.case_rate = 0.001;
        f->set.storm_keys = 0;
        reconfigure(f);
        /* refill() caps at the burst; the fixture's bucket started at 100 */
        hit_key(f, "high", RULE_FIRING, "temp:a");
        for (int i = 0; i < 10; i++) {
                snprintf(key, sizeof key, "temp:b%d", i);
                hit_key(f, "high", RULE_FIRING, key);
        }
        faults_get_stats(f->faults, &st);
        assert_true(st.rate_limited >= 8);
        assert_true(opens(f) <= 3);
}

static void test_maintenance_holds_cases_until_it_ends(void **state)
{
        struct fixture *f = *state;
        struct faults_stats st;

        faults_hold_cases(f->faults, true, "maintenance window #1: test");
        hit_key(f, "high", RULE_FIRING, "temp:stays");
        hit_key(f, "high", RULE_FIRING, "temp:goes");
        hit_key(f, "high", RULE_CLEARED, "temp:goes");
        assert_int_equal(opens(f), 0);
        faults_get_stats(f->faults, &st);
        assert_int_equal(st.held_maintenance, 2);
        faults_hold_cases(f->faults, false, "ended early");
        assert_int_equal(opens(f), 1); /* only the fault still firing */
        assert_int_equal(pending(f), 1);
}

/* Runs the loop (the faults' once-a-second walk among its timers) until
 * cond(f) holds or about 3 s pass. */
static bool run_until(struct fixture *f, bool (*cond)(struct fixture *))
{
        for (int i = 0; i < 60 && !cond(f); i++)
                assert_true(loop_run_once(f->loop, 50000) >= 0);
        return cond(f);
}

static bool two_opens(struct fixture *f)
{
        return opens(f) == 2;
}

/* An open the outbox refuses (full) is not forgotten: the fault stays
 * owed a case and the walk queues it once there is room, counted lost once
 * however often it was tried. */
static void test_a_refused_open_is_retried_while_the_fault_fires(void **state)
{
        struct fixture *f = *state;
        struct outbox_settings small = {.max_items = 1}, roomy = {0};
        struct faults_stats st;
        char got[256];
        cJSON *j;

        outbox_set_settings(f->outbox, &small);
        hit_key(f, "high", RULE_FIRING, "temp:a");
        hit_key(f, "high", RULE_FIRING, "temp:b"); /* the outbox is full */
        hit_key(f, "high", RULE_FIRING, "temp:c");
        hit_key(f, "high", RULE_CLEARED, "temp:c"); /* cleared before there was room: no case */
        assert_int_equal(opens(f), 1);
        faults_get_stats(f->faults, &st);
        assert_int_equal(st.lost, 2);
        j = faults_to_json(f->faults);
        for (int i = 0; i < cJSON_GetArraySize(j); i++) {
                const cJSON *x = cJSON_GetArrayItem(j, i);
                if (strcmp(field(x, "key"), "temp:b") == 0)
                        assert_string_equal(field(x, "delivery"), "refused");
        }
        cJSON_Delete(j);
        /* still full for a few walks: tried, not counted again */
        for (int i = 0; i < 30; i++)
                assert_true(loop_run_once(f->loop, 50000) >= 0);
        assert_int_equal(opens(f), 1);
        /* the owed case survives a restart */
        close_all(f);
        assert_int_equal(open_all(f), 0);
        outbox_set_settings(f->outbox, &roomy);
        assert_true(run_until(f, two_opens));
        faults_get_stats(f->faults, &st);
        assert_int_equal(st.lost, 0); /* a new process counts afresh */
        assert_int_equal(records_of(f, "temp:b", got, sizeof got), 1);
        assert_string_equal(got, "[open]");
        assert_int_equal(records_of(f, "temp:c", got, sizeof got), 0);
        hit_key(f, "high", RULE_CLEARED, "temp:b"); /* its case now hears the clear */
        assert_int_equal(records_of(f, "temp:b", got, sizeof got), 1);
        assert_string_equal(got, "[open cleared]");
}

/* Allocation failure at every point of a fault's life (cJSON allocates
 * through xalloc too here) must neither crash nor leak; ASan checks leaks. */
static void test_allocation_failures(void **state)
{
        (void)state;
        cJSON_Hooks hooks = {.malloc_fn = xmalloc, .free_fn = free};

        cJSON_InitHooks(&hooks);
        for (unsigned long n = 1; n < 400; n++) {
                void *st = NULL;
                struct fixture *f;
                struct faults_stats stats;

                assert_int_equal(setup(&st), 0);
                f = st;
                xalloc_fail_at(n);
                hit(f, "high", RULE_FIRING);
                hit(f, "critical", RULE_FIRING);
                hit(f, "high", RULE_REPEAT);
                hit(f, "critical", RULE_CLEARED);
                hit(f, "high", RULE_CLEARED);
                hit(f, "high", RULE_FIRING);
                cJSON_Delete(faults_to_json(f->faults));
                xalloc_fail_at(0);
                faults_get_stats(f->faults, &stats);
                assert_true(stats.firing <= 1);
                teardown(&st);
        }
        cJSON_InitHooks(NULL);
}

/* Runs the loop until key's outbox records read want (records_of), or
 * about 3 s pass; returns whether they do. */
static bool run_until_records(struct fixture *f, const char *key, const char *want)
{
        char got[256];

        for (int i = 0; i < 60; i++) {
                records_of(f, key, got, sizeof got);
                if (strcmp(got, want) == 0)
                        return true;
                assert_true(loop_run_once(f->loop, 50000) >= 0);
        }
        fprintf(stderr, "records of %s: %s (want %s)\n", key, got, want);
        return false;
}

/* Lets the outbox take room more items than it holds now. */
static void outbox_room(struct fixture *f, size_t room)
{
        struct outbox_settings os = {.max_items = pending(f) + room};

        outbox_set_settings(f->outbox, &os);
}

/* An update the outbox refuses (full) is owed, not lost: once there is
 * room the walk tells the case where its fault stands now, in as few
 * updates as that takes, and the debt survives a restart. */
static void test_a_refused_update_brings_the_case_up_to_date_later(void **state)
{
        struct fixture *f = *state;
        struct outbox_settings roomy = {0};
        struct faults_stats st;
        char got[256];
        cJSON *j;

        f->set.reopen_window_usec = 3600000000ULL;
        reconfigure(f);
        outbox_room(f, 1);
        hit_key(f, "high", RULE_FIRING, "temp:a");      /* its open fills the outbox */
        hit_key(f, "critical", RULE_FIRING, "temp:a");  /* P4 -> P3: refused */
        hit_key(f, "critical", RULE_CLEARED, "temp:a"); /* back to P4: refused */
        hit_key(f, "high", RULE_CLEARED, "temp:a");     /* cleared: refused */
        faults_get_stats(f->faults, &st);
        assert_int_equal(st.lost, 1); /* one debt, counted once */
        for (int i = 0; i < 25; i++)
                assert_true(loop_run_once(f->loop, 50000) >= 0);
        assert_int_equal(records_of(f, "temp:a", got, sizeof got), 1);
        assert_string_equal(got, "[open]"); /* still full: still owed */
        faults_get_stats(f->faults, &st);
        assert_int_equal(st.lost, 1); /* tried at every walk, counted once */
        j = faults_to_json(f->faults);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(the_fault(j), "update_refused")));
        cJSON_Delete(j);
        close_all(f);
        assert_int_equal(open_all(f), 0);
        outbox_set_settings(f->outbox, &roomy);
        /* up and down again: only the clear is news now */
        assert_true(run_until_records(f, "temp:a", "[open cleared]"));
        j = faults_to_json(f->faults);
        assert_null(cJSON_GetObjectItemCaseSensitive(the_fault(j), "update_refused"));
        cJSON_Delete(j);

        outbox_room(f, 1);
        hit_key(f, "high", RULE_FIRING, "temp:b");
        hit_key(f, "critical", RULE_FIRING, "temp:b"); /* refused */
        outbox_set_settings(f->outbox, &roomy);
        assert_true(run_until_records(f, "temp:b", "[open level]"));

        outbox_room(f, 2);
        hit_key(f, "high", RULE_FIRING, "temp:c");
        hit_key(f, "high", RULE_CLEARED, "temp:c");
        hit_key(f, "critical", RULE_FIRING, "temp:c"); /* reopened at P3: refused */
        outbox_set_settings(f->outbox, &roomy);
        assert_true(run_until_records(f, "temp:c", "[open cleared reopened level]"));

        outbox_room(f, 1);
        hit_key(f, "high", RULE_FIRING, "temp:d");
        hit_key(f, "high", RULE_CLEARED, "temp:d"); /* refused, then it fires again, still full */
        hit_key(f, "high", RULE_FIRING, "temp:d");
        outbox_set_settings(f->outbox, &roomy);
        /* the case never heard of the clear: it hears the count */
        assert_true(run_until_records(f, "temp:d", "[open occurrence]"));
        faults_get_stats(f->faults, &st);
        assert_int_equal(st.lost, 3);
}

/* Rows as a forgotten fault leaves them: its last case, cleared days_ago. */
static void put_past_rows(struct fixture *f, const char *const *keys, const char *const *ids, const int *days_ago,
                          size_t n)
{
        char path[128], doc[200];
        struct store *st;

        close_all(f);
        snprintf(path, sizeof path, "%s/agent.db", f->dir);
        assert_int_equal(store_open(f->loop, path, STORE_SYNC_NORMAL, &st, NULL), 0);
        for (size_t i = 0; i < n; i++) {
                if (ids[i])
                        snprintf(doc, sizeof doc, "{\"past\":{\"case_id\":\"%s\",\"cleared_at\":%lld}}", ids[i],
                                 (long long)(time_wall_usec() - days_ago[i] * 86400LL * 1000000));
                else
                        snprintf(doc, sizeof doc, "{\"past\":{}}");
                assert_int_equal(store_put_fault(st, keys[i], doc), 0);
        }
        store_free(st);
        assert_int_equal(open_all(f), 0);
}

static uint64_t remembered(struct fixture *f)
{
        struct faults_stats st;

        faults_get_stats(f->faults, &st);
        return st.remembered;
}

static bool none_remembered(struct fixture *f)
{
        return remembered(f) == 0;
}

struct open_body {
        const char *key;
        char body[2048];
};

static int find_open_body(const struct store_case *c, void *ud)
{
        struct open_body *b = ud;

        if (c->fault_key && strcmp(c->fault_key, b->key) == 0)
                snprintf(b->body, sizeof b->body, "%s", c->body);
        return 0;
}

/* The stored open of key's case (committed first). */
static const char *open_body_of(struct fixture *f, const char *key, struct open_body *b)
{
        b->key = key;
        b->body[0] = '\0';
        assert_int_equal(store_commit_now(f->store), 0);
        assert_int_equal(store_load_cases(f->store, find_open_body, b), 0);
        return b->body;
}

/* A key forgotten after its windows still names its last case when it
 * fires again; past cases older than 90 days go at the walk, and a taken-up
 * or expired one leaves no row behind. */
static void test_a_forgotten_key_still_names_its_last_case(void **state)
{
        struct fixture *f = *state;
        static const char *const keys[] = {"temp:chip0", "temp:old", "temp:junk"};
        static const char *const ids[] = {"77", "12", NULL};
        static const int days[] = {1, 100, 1};
        struct open_body b;
        cJSON *j;

        put_past_rows(f, keys, ids, days, 3);
        assert_int_equal(remembered(f), 2); /* the row without a case id is not one */
        j = faults_to_json(f->faults);
        assert_int_equal(cJSON_GetArraySize(j), 0); /* and none is a fault */
        cJSON_Delete(j);

        hit(f, "high", RULE_FIRING);
        assert_int_equal(remembered(f), 1);
        assert_non_null(strstr(open_body_of(f, "temp:chip0", &b), "\"previous_case_id\":\"77\""));
        hit_key(f, "high", RULE_FIRING, "temp:new");
        assert_null(strstr(open_body_of(f, "temp:new", &b), "previous_case_id"));

        assert_true(run_until(f, none_remembered)); /* 100 days: expired */
        close_all(f);
        assert_int_equal(open_all(f), 0);
        assert_int_equal(remembered(f), 0);
        j = faults_to_json(f->faults);
        assert_int_equal(cJSON_GetArraySize(j), 2); /* the faults of chip0 and new, firing */
        cJSON_Delete(j);
}

/* No more past cases than max_faults: the oldest make room. */
static void test_past_cases_are_capped_oldest_first(void **state)
{
        struct fixture *f = *state;
        static const char *const keys[] = {"temp:b", "temp:a", "temp:c"};
        static const char *const ids[] = {"2", "1", "3"};
        static const int days[] = {2, 3, 1};
        struct open_body b;

        f->set.max_faults = 2;
        put_past_rows(f, keys, ids, days, 3);
        assert_int_equal(remembered(f), 2);
        hit_key(f, "high", RULE_FIRING, "temp:a");
        assert_null(strstr(open_body_of(f, "temp:a", &b), "previous_case_id"));
        hit_key(f, "high", RULE_FIRING, "temp:b");
        assert_non_null(strstr(open_body_of(f, "temp:b", &b), "\"previous_case_id\":\"2\""));
        assert_int_equal(remembered(f), 1);

        /* many more than fit: the newest stay */
        enum { N = 100 };
        char names[N][24], ids_buf[N][16];
        const char *many_keys[N], *many_ids[N];
        int many_days[N];
        for (int i = 0; i < N; i++) {
                snprintf(names[i], sizeof names[i], "temp:r%03d", i);
                snprintf(ids_buf[i], sizeof ids_buf[i], "%d", 1000 + i);
                many_keys[i] = names[i];
                many_ids[i] = ids_buf[i];
                many_days[i] = i; /* r000 is the newest */
        }
        f->set.max_faults = 64;
        put_past_rows(f, many_keys, many_ids, many_days, N);
        assert_in_range(remembered(f), 64 - 64 / 16 - 1, 64);
        hit_key(f, "high", RULE_FIRING, "temp:r000");
        assert_non_null(strstr(open_body_of(f, "temp:r000", &b), "\"previous_case_id\":\"1000\""));
        hit_key(f, "high", RULE_FIRING, "temp:r099");
        assert_null(strstr(open_body_of(f, "temp:r099", &b), "previous_case_id"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_level_precedence_and_clear, setup, teardown),
                cmocka_unit_test_setup_teardown(test_less_urgent_rule_does_not_lower_level, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refire_after_clear_is_a_new_period, setup, teardown),
                cmocka_unit_test_setup_teardown(test_clear_of_unknown_key_is_ignored, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rules_removed_or_rekeyed_by_reload_clear_fault, setup, teardown),
                cmocka_unit_test_setup_teardown(test_recurrence_within_the_reopen_window_reopens_the_case, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_state_survives_a_restart, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_flapping_key_is_one_quiet_case, setup, teardown),
                cmocka_unit_test_setup_teardown(test_many_keys_of_one_rule_make_one_summary_case, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_storm_after_the_reopen_window_opens_a_new_summary_case, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_a_storm_within_the_reopen_window_reopens_its_summary_case, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_an_empty_case_bucket_summarises, setup, teardown),
                cmocka_unit_test_setup_teardown(test_maintenance_holds_cases_until_it_ends, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_refused_open_is_retried_while_the_fault_fires, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_refused_update_brings_the_case_up_to_date_later, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_a_forgotten_key_still_names_its_last_case, setup, teardown),
                cmocka_unit_test_setup_teardown(test_past_cases_are_capped_oldest_first, setup, teardown),
                cmocka_unit_test(test_allocation_failures),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
