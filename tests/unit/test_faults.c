/* Unit tests for agent/faults.c: folding rule transitions into one fault per
 * key (level precedence, clear when the last rule clears, re-fire after clear,
 * rules removed by a reload), without a central API: the sender points at a
 * closed port and the loop is never run, so nothing is delivered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "../../agent/faults.h"
#include "../../agent/identity.h"
#include "../../agent/loop.h"
#include "../../agent/sender.h"
#include "../../lib/event.h"
#include "../../lib/xalloc.h"
#include "../../rules/conf.h"
#include "../../rules/rules.h"

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
        struct faults *faults;
        struct ruleset *rules;
        struct event ev;
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof *f);
        struct faults_settings set = {.retry_usec = 1000000, .occurrence_usec = 1000000};
        struct diag *d = diag_new();

        assert_non_null(f);
        assert_int_equal(loop_new(&f->loop), 0);
        assert_int_equal(sender_new(f->loop, &f->sender), 0);
        assert_int_equal(sender_configure(f->sender, "http://127.0.0.1:9", "t", 1000000), 0);
        assert_int_equal(identity_load("unit", &f->id), 0);
        assert_int_equal(faults_new(f->loop, f->id, f->sender, &set, &f->faults), 0);
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

        faults_free(f->faults);
        sender_free(f->sender);
        identity_free(f->id);
        ruleset_free(f->rules);
        loop_free(f->loop);
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

static void hit(struct fixture *f, const char *rule, enum rule_transition t)
{
        const struct rule *r = rule_named(f->rules, rule);
        struct rule_hit h = {
                .transition = t,
                .rule = r,
                .level = rule_get_level(r),
                .key = "temp:chip0",
                .title = rule,
                .description = "",
                .event = &f->ev,
                .mono_usec = time_mono_usec(),
        };
        faults_handle_hit(&h, f->faults);
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
        assert_int_equal(st.sends_pending, 4);
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
        /* first period: open + cleared; second: open */
        assert_int_equal(st.sends_pending, 3);
}

static void test_clear_of_unknown_key_is_ignored(void **state)
{
        struct fixture *f = *state;
        struct faults_stats st;

        hit(f, "high", RULE_CLEARED);
        hit(f, "high", RULE_REPEAT);
        faults_get_stats(f->faults, &st);
        assert_int_equal(st.firing, 0);
        assert_int_equal(st.sends_pending, 0);
}

static void test_rules_removed_by_reload_clear_fault(void **state)
{
        struct fixture *f = *state;
        struct ruleset *other;
        struct diag *d = diag_new();
        cJSON *j;

        hit(f, "high", RULE_FIRING);
        assert_int_equal(ruleset_parse_string("new.rules",
                                              "rule unrelated {\n when source == \"x\"\n level P5\n key \"k\"\n "
                                              "title \"t\"\n}\n",
                                              &other, d),
                         0);
        faults_rules_changed(f->faults, other);
        j = faults_to_json(f->faults);
        assert_string_equal(field(the_fault(j), "state"), "cleared");
        cJSON_Delete(j);
        ruleset_free(other);
        diag_free(d);
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

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_level_precedence_and_clear, setup, teardown),
                cmocka_unit_test_setup_teardown(test_less_urgent_rule_does_not_lower_level, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refire_after_clear_is_a_new_period, setup, teardown),
                cmocka_unit_test_setup_teardown(test_clear_of_unknown_key_is_ignored, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rules_removed_by_reload_clear_fault, setup, teardown),
                cmocka_unit_test(test_allocation_failures),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
