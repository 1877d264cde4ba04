/* Unit tests for condition semantics, templates, dispatch and the rule
 * engine's state machine (pending, firing, repeat, clearing, cleared,
 * "clear after"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../lib/event.h"
#include "../../lib/xalloc.h"
#include "../../rules/conf.h"
#include "../../rules/internal.h"
#include "../../rules/rules.h"

#define SEC 1000000ULL

struct hits {
        size_t n;
        struct {
                enum rule_transition t;
                char rule[64], key[300], title[600], desc[300];
                enum rule_level level;
                bool has_event;
                double value;    /* the event's value, when it has one */
                char object[64]; /* the event's object (a copy: the event may be the engine's) */
                uint64_t mono;
        } h[64];
};

static void record(const struct rule_hit *hit, void *userdata)
{
        struct hits *hs = userdata;

        assert_true(hs->n < 64);
        hs->h[hs->n].t = hit->transition;
        snprintf(hs->h[hs->n].rule, sizeof hs->h[0].rule, "%s", rule_name(hit->rule));
        snprintf(hs->h[hs->n].key, sizeof hs->h[0].key, "%s", hit->key);
        snprintf(hs->h[hs->n].title, sizeof hs->h[0].title, "%s", hit->title);
        snprintf(hs->h[hs->n].desc, sizeof hs->h[0].desc, "%s", hit->description);
        hs->h[hs->n].level = hit->level;
        hs->h[hs->n].has_event = hit->event != NULL;
        hs->h[hs->n].value = hit->event && hit->event->has_value ? hit->event->value : -1;
        snprintf(hs->h[hs->n].object, sizeof hs->h[0].object, "%s",
                 hit->event && hit->event->object ? hit->event->object : "");
        hs->h[hs->n].mono = hit->mono_usec;
        hs->n++;
}

static struct rule_engine *engine(const char *text, size_t max_states)
{
        struct diag *d = diag_new();
        struct ruleset *rs = NULL;
        struct rule_engine *re = NULL;

        if (ruleset_parse_string("t.rules", text, &rs, d) < 0) {
                diag_print(d, stderr);
                fail_msg("parse failed");
        }
        diag_free(d);
        assert_int_equal(rule_engine_new(max_states, &re), 0);
        rule_engine_set_rules(re, rs);
        return re;
}

/* A sensor temperature event at time t seconds. */
static void temp_event(struct event *e, const char *chip, const char *label, double value, uint64_t t)
{
        event_init(e, "sensor", "temperature", label);
        event_set_value(e, value, "C");
        event_add_string(e, "type", "temp");
        event_add_string(e, "chip", chip);
        event_add_string(e, "label", label);
        event_add_number(e, "max", 80);
        event_add_number(e, "crit", 100);
        event_add_number(e, "alarm", 0);
        e->mono_usec = t * SEC;
}

/* Does cond fire on e? (a rule with no "for") */
static bool matches(const char *cond, const struct event *e)
{
        char text[1024];
        struct rule_engine *re;
        struct hits hs = {0};

        snprintf(text, sizeof text, "rule r {\n when %s\n level P3\n key \"k\"\n title \"t\"\n}\n", cond);
        re = engine(text, 0);
        rule_engine_eval(re, e, record, &hs);
        rule_engine_free(re);
        return hs.n == 1 && hs.h[0].t == RULE_FIRING;
}

static void test_conditions(void **state)
{
        struct event e;

        (void)state;
        temp_event(&e, "coretemp-isa-0000", "Core 0", 85, 1);
        event_add_string(&e, "varbind[IF-MIB::ifDescr]", "eth0");
        event_add_string(&e, "empty", "");
        event_add_number(&e, "zero", 0);

        assert_true(matches("value == 85", &e));
        assert_true(matches("value != 84", &e));
        assert_true(matches("value > max and value < crit", &e));
        assert_true(matches("value >= 85 and value <= 85", &e));
        assert_true(matches("value >= crit - 15", &e));
        assert_false(matches("value >= crit - 14", &e));
        assert_true(matches("value * 2 / 4 + 1 - 0.5 == 43", &e));
        assert_true(matches("-value < 0", &e));
        assert_true(matches("source == \"sensor\" and name == \"temperature\" and unit == \"C\"", &e));
        assert_true(matches("object == \"Core 0\"", &e));
        assert_true(matches("chip < \"d\" and chip > \"c\" and chip != \"x\"", &e));
        assert_true(matches("a or value > 1", &e));
        assert_false(matches("value > 1 and not value > 1", &e));
        assert_true(matches("not (value > 100 or alarm)", &e));
        /* globs: exact, prefix, suffix and full fnmatch */
        assert_true(matches("chip ~ \"coretemp-isa-0000\"", &e));
        assert_true(matches("chip ~ \"coretemp-*\"", &e));
        assert_true(matches("chip ~ \"*-0000\"", &e));
        assert_true(matches("chip ~ \"core?emp-[i]sa-*\"", &e));
        assert_false(matches("chip ~ \"nct*\"", &e));
        assert_true(matches("chip !~ \"nct*\"", &e));
        assert_false(matches("chip !~ \"core*\"", &e));
        assert_false(matches("max ~ \"*\"", &e)); /* numbers never match a glob */
        /* truthiness */
        assert_true(matches("chip", &e));
        assert_false(matches("empty", &e));
        assert_false(matches("zero", &e));
        assert_false(matches("alarm", &e));
        assert_true(matches("value", &e));
        /* map-like fields */
        assert_true(matches("varbind[\"IF-MIB::ifDescr\"] == \"eth0\"", &e));
        assert_true(matches("exists(varbind[\"IF-MIB::ifDescr\"])", &e));
        /* missing fields: comparisons false, not true, exists false */
        assert_false(matches("nosuch == 1", &e));
        assert_false(matches("nosuch != 1", &e));
        assert_false(matches("nosuch < 1 or nosuch >= 1", &e));
        assert_true(matches("not nosuch == 1", &e));
        assert_false(matches("nosuch", &e));
        assert_true(matches("not nosuch", &e));
        assert_false(matches("exists(nosuch)", &e));
        assert_true(matches("exists(crit) and not exists(nosuch)", &e));
        assert_false(matches("value + nosuch > 0", &e));
        assert_false(matches("nosuch ~ \"*\"", &e));
        assert_false(matches("nosuch !~ \"x\"", &e));
        /* run-time type mismatch and division by zero are false, too */
        assert_false(matches("chip == 5", &e));
        assert_false(matches("chip != 5", &e));
        assert_false(matches("max == \"80\"", &e));
        assert_false(matches("value / zero > 0", &e));
        assert_false(matches("value / zero <= 0", &e));
        /* a value-less event */
        event_init(&e, "agent", "config-error", NULL);
        assert_false(matches("value == 0", &e));
        assert_false(matches("exists(value) or exists(object) or exists(unit)", &e));
        assert_true(matches("exists(name)", &e));
}

static void test_templates(void **state)
{
        struct rule_engine *re =
                engine("rule r {\n when value > 0\n level P4\n key \"temp:{chip}/{label}\"\n title \"{label} at "
                       "{value}°C (max {max}, ratio {ratio}, miss {nosuch}) {{literal}}\"\n description \"{source}/"
                       "{name}/{object}/{unit}/{m[k]}\"\n}\n",
                       0);
        struct hits hs = {0};
        struct event e;

        (void)state;
        temp_event(&e, "coretemp-isa-0000", "Package id 0", 85.5, 1);
        event_add_number(&e, "ratio", 1.0 / 3);
        event_add_string(&e, "m[k]", "mv");
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 1);
        assert_string_equal(hs.h[0].key, "temp:coretemp-isa-0000/Package id 0");
        assert_string_equal(hs.h[0].title,
                            "Package id 0 at 85.5°C (max 80, ratio 0.333333333333333, miss ?) {literal}");
        assert_string_equal(hs.h[0].desc, "sensor/temperature/Package id 0/C/mv");
        assert_int_equal(hs.h[0].level, RULE_LEVEL_P4);

        /* a key field the event lacks: the rule does not apply */
        event_init(&e, "sensor", "temperature", "x");
        event_set_value(&e, 90, "C");
        event_add_string(&e, "chip", "c");
        hs.n = 0;
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 0);
        rule_engine_free(re);
}

static void test_long_keys(void **state)
{
        struct rule_engine *re =
                engine("rule r {\n when value > 0\n level P4\n key \"{long}\"\n title \"{long}\"\n}\n", 0);
        struct hits hs = {0};
        struct rule_engine_stats st;
        char a[700], b[700];
        struct event e;

        (void)state;
        memset(a, 'x', sizeof a - 1);
        a[sizeof a - 1] = '\0';
        memcpy(b, a, sizeof a);
        b[600] = 'y'; /* same 255-byte prefix, different key */
        event_init(&e, "s", "n", "o");
        event_set_value(&e, 1, NULL);
        event_add_string(&e, "long", a);
        rule_engine_eval(re, &e, record, &hs);
        event_init(&e, "s", "n", "o");
        event_set_value(&e, 1, NULL);
        event_add_string(&e, "long", b);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 2);
        assert_int_equal(hs.h[0].t, RULE_FIRING);
        assert_int_equal(hs.h[1].t, RULE_FIRING); /* not a repeat of the first */
        assert_int_equal(strlen(hs.h[0].key), 255);
        assert_string_not_equal(hs.h[0].key, hs.h[1].key);
        assert_int_equal(hs.h[0].key[255 - 17], '~');
        assert_int_equal(strlen(hs.h[0].title), 511);
        assert_string_equal(hs.h[0].title + 508, "...");
        rule_engine_get_stats(re, &st);
        assert_int_equal(st.keys_truncated, 2);
        assert_int_equal(st.states, 2);
        rule_engine_free(re);
}

static const char temp_rules[] =
        "rule high {\n when source == \"sensor\" and type == \"temp\" and value >= max\n for 10s\n clear value < max - "
        "3 for 60s\n level P4\n key \"temp:{chip}/{label}\"\n title \"high {value}\"\n}\n";

static void test_state_machine(void **state)
{
        struct rule_engine *re = engine(temp_rules, 0);
        struct hits hs = {0};
        struct rule_engine_stats st;
        struct event e;

        (void)state;
        /* pending, then back to idle on a false event */
        temp_event(&e, "c", "l", 85, 100);
        rule_engine_eval(re, &e, record, &hs);
        temp_event(&e, "c", "l", 70, 105);
        rule_engine_eval(re, &e, record, &hs);
        temp_event(&e, "c", "l", 85, 112);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 0);
        rule_engine_get_stats(re, &st);
        assert_int_equal(st.states, 1);
        assert_int_equal(st.firing, 0);
        /* the pending period restarted at 112: nothing at 121, firing at 122 */
        temp_event(&e, "c", "l", 86, 121);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 0);
        temp_event(&e, "c", "l", 87, 122);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 1);
        assert_int_equal(hs.h[0].t, RULE_FIRING);
        assert_string_equal(hs.h[0].title, "high 87");
        assert_true(hs.h[0].has_event);
        /* repeats */
        temp_event(&e, "c", "l", 88, 123);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 2);
        assert_int_equal(hs.h[1].t, RULE_REPEAT);
        /* in the hysteresis band (78): neither when nor clear, still firing */
        temp_event(&e, "c", "l", 78, 124);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 2);
        /* clearing starts at 130, is cancelled by a band reading at 150 */
        temp_event(&e, "c", "l", 70, 130);
        rule_engine_eval(re, &e, record, &hs);
        temp_event(&e, "c", "l", 78, 150);
        rule_engine_eval(re, &e, record, &hs);
        temp_event(&e, "c", "l", 70, 160);
        rule_engine_eval(re, &e, record, &hs);
        temp_event(&e, "c", "l", 70, 200);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 2);
        /* when true again while clearing: back to firing with a repeat */
        temp_event(&e, "c", "l", 90, 210);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 3);
        assert_int_equal(hs.h[2].t, RULE_REPEAT);
        /* clear held 60s from 220 */
        temp_event(&e, "c", "l", 70, 220);
        rule_engine_eval(re, &e, record, &hs);
        temp_event(&e, "c", "l", 71, 279);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 3);
        temp_event(&e, "c", "l", 72, 280);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 4);
        assert_int_equal(hs.h[3].t, RULE_CLEARED);
        assert_string_equal(hs.h[3].title, "high 72");
        assert_int_equal(hs.h[3].mono, 280 * SEC);
        rule_engine_get_stats(re, &st);
        assert_int_equal(st.states, 0);
        assert_int_equal(st.firing, 0);
        rule_engine_free(re);
}

static void test_tick_and_late_events(void **state)
{
        struct rule_engine *re = engine(temp_rules, 0);
        struct hits hs = {0};
        struct event e;

        (void)state;
        temp_event(&e, "c", "l", 85, 100);
        rule_engine_eval(re, &e, record, &hs);
        rule_engine_tick(re, 109 * SEC, record, &hs);
        assert_int_equal(hs.n, 0);
        rule_engine_tick(re, 110 * SEC, record, &hs);
        assert_int_equal(hs.n, 1);
        assert_int_equal(hs.h[0].t, RULE_FIRING);
        /* a firing time made reports the last event whose condition held, so
         * the case still carries its readings */
        assert_true(hs.h[0].has_event);
        assert_true(hs.h[0].value == 85);
        assert_string_equal(hs.h[0].object, "l");
        assert_string_equal(hs.h[0].title, "high 85"); /* the saved text of the last event */
        assert_string_equal(hs.h[0].key, "temp:c/l");
        temp_event(&e, "c", "l", 60, 120);
        rule_engine_eval(re, &e, record, &hs);
        rule_engine_tick(re, 179 * SEC, record, &hs);
        assert_int_equal(hs.n, 1);
        rule_engine_tick(re, 180 * SEC, record, &hs);
        assert_int_equal(hs.n, 2);
        assert_int_equal(hs.h[1].t, RULE_CLEARED);
        assert_int_equal(hs.h[1].mono, 180 * SEC);
        assert_string_equal(hs.h[1].title, "high 60");

        /* without ticks, a later event promotes: pending since 300, an event
         * at 320 with the condition false: fired at 310, and since the
         * reading is below the clear threshold, clearing starts */
        hs.n = 0;
        temp_event(&e, "c", "l", 85, 300);
        rule_engine_eval(re, &e, record, &hs);
        temp_event(&e, "c", "l", 60, 320);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 1);
        assert_int_equal(hs.h[0].t, RULE_FIRING);
        assert_int_equal(hs.h[0].mono, 310 * SEC);
        assert_true(hs.h[0].has_event); /* the event at 300, not the one at 320 */
        assert_true(hs.h[0].value == 85);
        /* a late event after the clear period: cleared (at 380), then the
         * event's own true condition starts a new pending state */
        temp_event(&e, "c", "l", 85, 400);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 2);
        assert_int_equal(hs.h[1].t, RULE_CLEARED);
        assert_int_equal(hs.h[1].mono, 380 * SEC);
        rule_engine_tick(re, 410 * SEC, record, &hs);
        assert_int_equal(hs.n, 3);
        assert_int_equal(hs.h[2].t, RULE_FIRING);
        rule_engine_free(re);
}

static void test_default_clear_and_immediate(void **state)
{
        struct rule_engine *re = engine("rule f {\n when source == \"agent\" and name == \"config-error\"\n level "
                                        "P5\n key \"agent:config\"\n title \"{error}\"\n}\n",
                                        0);
        struct hits hs = {0};
        struct rule_engine_stats st;
        struct event e;

        (void)state;
        event_init(&e, "agent", "config-error", NULL);
        event_add_string(&e, "error", "bad");
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 1);
        assert_int_equal(hs.h[0].t, RULE_FIRING);
        assert_string_equal(hs.h[0].title, "bad");
        assert_int_equal(hs.h[0].level, RULE_LEVEL_P5);
        /* an agent event that is not a config error clears it at once */
        event_init(&e, "agent", "collector-failed", NULL);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 2);
        assert_int_equal(hs.h[1].t, RULE_CLEARED);
        /* events of other sources never reach the rule */
        event_init(&e, "agent", "config-error", NULL);
        rule_engine_eval(re, &e, record, &hs);
        event_init(&e, "sensor", "temperature", NULL);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 3);
        rule_engine_get_stats(re, &st);
        assert_int_equal(st.events, 4);
        assert_int_equal(st.unmatched, 1);
        assert_int_equal(st.firing, 1);
        rule_engine_free(re);
}

static void test_dispatch(void **state)
{
        /* the clear condition would hold for any event without "hot"; the
         * snmptrap event must not reach it */
        struct rule_engine *re =
                engine("rule s {\n when source == \"sensor\" and hot\n clear not hot\n level P3\n key \"{id}\"\n "
                       "title \"t\"\n}\nrule any {\n when exists(everywhere)\n level P5\n key \"{id}\"\n title "
                       "\"t\"\n}\n",
                       0);
        struct hits hs = {0};
        struct event e;

        (void)state;
        event_init(&e, "sensor", "x", NULL);
        event_add_number(&e, "hot", 1);
        event_add_string(&e, "id", "a");
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 1);
        event_init(&e, "snmptrap", "x", NULL);
        event_add_string(&e, "id", "a");
        event_add_number(&e, "everywhere", 1);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 2);
        assert_string_equal(hs.h[1].rule, "any"); /* rules without a source see everything */
        event_init(&e, "sensor", "x", NULL);
        event_add_string(&e, "id", "a");
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 4);
        assert_string_equal(hs.h[2].rule, "s");
        assert_int_equal(hs.h[2].t, RULE_CLEARED);
        assert_string_equal(hs.h[3].rule, "any"); /* its default clear: "not when" */
        assert_int_equal(hs.h[3].t, RULE_CLEARED);
        rule_engine_free(re);
}

static void test_same_key_two_rules(void **state)
{
        static const char text[] =
                "rule temperature-high {\n when source == \"sensor\" and value >= max\n level P4\n key "
                "\"temp:{chip}/{label}\"\n title \"high\"\n}\nrule temperature-critical {\n when source == \"sensor\" "
                "and (value >= crit or alarm)\n level P3\n key \"temp:{chip}/{label}\"\n title \"crit\"\n}\n";
        struct rule_engine *re = engine(text, 0);
        struct hits hs = {0};
        struct event e;

        (void)state;
        temp_event(&e, "c", "l", 90, 1);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 1);
        assert_string_equal(hs.h[0].rule, "temperature-high");
        temp_event(&e, "c", "l", 105, 2);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 3);
        assert_int_equal(hs.h[1].t, RULE_REPEAT);
        assert_int_equal(hs.h[1].level, RULE_LEVEL_P4);
        assert_int_equal(hs.h[2].t, RULE_FIRING);
        assert_string_equal(hs.h[2].rule, "temperature-critical");
        assert_int_equal(hs.h[2].level, RULE_LEVEL_P3);
        assert_string_equal(hs.h[1].key, hs.h[2].key);
        temp_event(&e, "c", "l", 50, 3);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 5);
        assert_int_equal(hs.h[3].t, RULE_CLEARED);
        assert_int_equal(hs.h[4].t, RULE_CLEARED);
        rule_engine_free(re);
}

static void test_shed(void **state)
{
        struct rule_engine *re = engine("rule r {\n when v > 0\n level P4\n key \"{id}\"\n title \"t\"\n}\n", 3);
        struct rule_engine_stats st;
        struct hits hs = {0};
        struct event e;
        char id[16];

        (void)state;
        for (int i = 0; i < 5; i++) {
                snprintf(id, sizeof id, "k%d", i);
                event_init(&e, "s", "n", NULL);
                event_add_number(&e, "v", 1);
                event_add_string(&e, "id", id);
                rule_engine_eval(re, &e, record, &hs);
        }
        assert_int_equal(hs.n, 3);
        rule_engine_get_stats(re, &st);
        assert_int_equal(st.states, 3);
        assert_int_equal(st.shed, 2);
        rule_engine_free(re);
}

static void test_set_rules_keeps_state(void **state)
{
        struct rule_engine *re = engine("rule keep {\n when v > 0\n level P4\n key \"{id}\"\n title \"t\"\n}\nrule "
                                        "drop {\n when v > 0\n level P4\n key \"{id}\"\n title \"t\"\n}\n",
                                        0);
        struct diag *d = diag_new();
        struct ruleset *rs = NULL;
        struct rule_engine_stats st;
        struct hits hs = {0};
        struct event e;

        (void)state;
        event_init(&e, "s", "n", NULL);
        event_add_number(&e, "v", 1);
        event_add_string(&e, "id", "a");
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 2);
        assert_int_equal(ruleset_parse_string("new",
                                              "rule other {\n when v > 5\n level P1\n key \"{id}\"\n title "
                                              "\"t\"\n}\nrule keep {\n when v > 0\n level P2\n key \"{id}\"\n "
                                              "title \"t2\"\n}\n",
                                              &rs, d),
                         0);
        rule_engine_set_rules(re, rs);
        rule_engine_get_stats(re, &st);
        assert_int_equal(st.states, 1);
        /* still firing: a repeat, with the new rule's level */
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 3);
        assert_int_equal(hs.h[2].t, RULE_REPEAT);
        assert_string_equal(hs.h[2].rule, "keep");
        assert_int_equal(hs.h[2].level, RULE_LEVEL_P2);
        assert_string_equal(hs.h[2].title, "t2");
        event_init(&e, "s", "n", NULL);
        event_add_number(&e, "v", 0);
        event_add_string(&e, "id", "a");
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 4);
        assert_int_equal(hs.h[3].t, RULE_CLEARED);
        rule_engine_set_rules(re, NULL);
        assert_null(rule_engine_rules(re));
        diag_free(d);
        rule_engine_free(re);
}

/* The common path (known key, no transition, or a repeat) allocates nothing. */
static void test_no_allocation(void **state)
{
        struct rule_engine *re = engine(temp_rules, 0);
        struct hits hs = {0};
        struct event e;

        (void)state;
        temp_event(&e, "c", "l", 85, 100);
        rule_engine_eval(re, &e, record, &hs);
        temp_event(&e, "c", "l", 85, 111);
        rule_engine_eval(re, &e, record, &hs);
        xalloc_fail_at(0);
        for (int i = 0; i < 100; i++) {
                temp_event(&e, "c", "l", 85 + i % 3, 112 + (uint64_t)i);
                rule_engine_eval(re, &e, record, &hs);
                hs.n = 0;
                temp_event(&e, "c2", "l", 40, 112 + (uint64_t)i);
                rule_engine_eval(re, &e, record, &hs);
        }
        assert_int_equal(xalloc_fail_at(0), 0);
        rule_engine_free(re);
}

/* An SNMP trap event from addr at time t seconds. */
static void trap_event(struct event *e, const char *trap, const char *addr, uint64_t t)
{
        event_init(e, "snmptrap", "trap", addr);
        event_add_string(e, "trap", trap);
        event_add_string(e, "source_addr", addr);
        e->mono_usec = t * SEC;
}

static const char reboot_rules[] =
        "rule device-rebooted {\n when source == \"snmptrap\" and (trap == \"SNMPv2-MIB::coldStart\" or trap == "
        "\"SNMPv2-MIB::warmStart\")\n clear after 1h\n level P2\n key \"snmp:reboot:{source_addr}\"\n title "
        "\"{source_addr}: {trap}\"\n}\n";

/* "clear after": fires, repeats push the deadline, the tick clears at
 * last match + duration and not before, with the last event's texts. */
static void test_clear_after_tick(void **state)
{
        struct rule_engine *re = engine(reboot_rules, 0);
        struct rule_engine_stats st;
        struct hits hs = {0};
        struct event e;

        (void)state;
        trap_event(&e, "SNMPv2-MIB::coldStart", "10.0.0.1", 1000);
        assert_true(rule_engine_eval(re, &e, record, &hs));
        assert_int_equal(hs.n, 1);
        assert_int_equal(hs.h[0].t, RULE_FIRING);
        assert_string_equal(hs.h[0].key, "snmp:reboot:10.0.0.1");
        assert_int_equal(hs.h[0].level, RULE_LEVEL_P2);
        /* another trap of the same device that is not a reboot: no clear
         * condition, nothing happens, and nothing matched */
        trap_event(&e, "IF-MIB::linkUp", "10.0.0.1", 1100);
        assert_false(rule_engine_eval(re, &e, record, &hs));
        assert_int_equal(hs.n, 1);
        rule_engine_tick(re, 4599 * SEC, record, &hs);
        assert_int_equal(hs.n, 1);
        /* a repeat at 2000 pushes the deadline from 4600 to 5600 */
        trap_event(&e, "SNMPv2-MIB::warmStart", "10.0.0.1", 2000);
        assert_true(rule_engine_eval(re, &e, record, &hs));
        assert_int_equal(hs.n, 2);
        assert_int_equal(hs.h[1].t, RULE_REPEAT);
        assert_true(hs.h[1].has_event);
        rule_engine_tick(re, 4600 * SEC, record, &hs);
        rule_engine_tick(re, 5600 * SEC - 1, record, &hs);
        assert_int_equal(hs.n, 2);
        rule_engine_get_stats(re, &st);
        assert_int_equal(st.states, 1);
        assert_int_equal(st.firing, 1);
        rule_engine_tick(re, 5600 * SEC, record, &hs);
        assert_int_equal(hs.n, 3);
        assert_int_equal(hs.h[2].t, RULE_CLEARED);
        assert_false(hs.h[2].has_event);
        assert_int_equal(hs.h[2].mono, 5600 * SEC);
        assert_string_equal(hs.h[2].key, "snmp:reboot:10.0.0.1");
        assert_string_equal(hs.h[2].title, "10.0.0.1: SNMPv2-MIB::warmStart"); /* the last event's text */
        rule_engine_get_stats(re, &st);
        assert_int_equal(st.states, 0);
        assert_int_equal(st.firing, 0);
        rule_engine_tick(re, 9000 * SEC, record, &hs);
        assert_int_equal(hs.n, 3);
        /* a new reboot after the clear fires again */
        trap_event(&e, "SNMPv2-MIB::coldStart", "10.0.0.1", 9000);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 4);
        assert_int_equal(hs.h[3].t, RULE_FIRING);
        rule_engine_free(re);
}

/* Without ticks, an event for the key after the deadline first clears (at
 * last match + duration, without an event) and then applies itself. */
static void test_clear_after_late_event(void **state)
{
        struct rule_engine *re = engine(reboot_rules, 0);
        struct hits hs = {0};
        struct event e;

        (void)state;
        trap_event(&e, "SNMPv2-MIB::coldStart", "10.0.0.2", 100);
        rule_engine_eval(re, &e, record, &hs);
        trap_event(&e, "SNMPv2-MIB::coldStart", "10.0.0.2", 200);
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 2);
        /* a late reboot: cleared at 3800, then a new firing at 5000 */
        trap_event(&e, "SNMPv2-MIB::warmStart", "10.0.0.2", 5000);
        assert_true(rule_engine_eval(re, &e, record, &hs));
        assert_int_equal(hs.n, 4);
        assert_int_equal(hs.h[2].t, RULE_CLEARED);
        assert_int_equal(hs.h[2].mono, 3800 * SEC);
        assert_false(hs.h[2].has_event);
        assert_string_equal(hs.h[2].title, "10.0.0.2: SNMPv2-MIB::coldStart");
        assert_int_equal(hs.h[3].t, RULE_FIRING);
        assert_int_equal(hs.h[3].mono, 5000 * SEC);
        assert_true(hs.h[3].has_event);
        assert_string_equal(hs.h[3].title, "10.0.0.2: SNMPv2-MIB::warmStart");
        /* a late event that does not match: only the clear */
        trap_event(&e, "IF-MIB::linkDown", "10.0.0.2", 9000);
        assert_false(rule_engine_eval(re, &e, record, &hs));
        assert_int_equal(hs.n, 5);
        assert_int_equal(hs.h[4].t, RULE_CLEARED);
        assert_int_equal(hs.h[4].mono, 8600 * SEC);
        rule_engine_tick(re, 20000 * SEC, record, &hs);
        assert_int_equal(hs.n, 5);
        rule_engine_free(re);
}

/* With "for", the period counts from the firing, and a state promoted and
 * past its deadline by one late event reports both. */
static void test_clear_after_with_for(void **state)
{
        struct rule_engine *re = engine("rule r {\n when v > 0\n for 10s\n clear after 5s\n level P3\n key "
                                        "\"{id}\"\n title \"t{v}\"\n}\n",
                                        0);
        struct hits hs = {0};
        struct event e;

        (void)state;
        event_init(&e, "s", "n", NULL);
        event_add_number(&e, "v", 1);
        event_add_string(&e, "id", "a");
        e.mono_usec = 100 * SEC;
        rule_engine_eval(re, &e, record, &hs);
        rule_engine_tick(re, 110 * SEC, record, &hs);
        assert_int_equal(hs.n, 1);
        assert_int_equal(hs.h[0].t, RULE_FIRING);
        rule_engine_tick(re, 115 * SEC - 1, record, &hs);
        assert_int_equal(hs.n, 1);
        rule_engine_tick(re, 115 * SEC, record, &hs);
        assert_int_equal(hs.n, 2);
        assert_int_equal(hs.h[1].t, RULE_CLEARED);
        assert_int_equal(hs.h[1].mono, 115 * SEC);
        assert_string_equal(hs.h[1].title, "t1");
        /* pending at 200, the next event (not matching) at 300: fired at
         * 210, cleared at 215 */
        e.mono_usec = 200 * SEC;
        rule_engine_eval(re, &e, record, &hs);
        event_init(&e, "s", "n", NULL);
        event_add_number(&e, "v", 0);
        event_add_string(&e, "id", "a");
        e.mono_usec = 300 * SEC;
        assert_false(rule_engine_eval(re, &e, record, &hs));
        assert_int_equal(hs.n, 4);
        assert_int_equal(hs.h[2].t, RULE_FIRING);
        assert_int_equal(hs.h[2].mono, 210 * SEC);
        assert_int_equal(hs.h[3].t, RULE_CLEARED);
        assert_int_equal(hs.h[3].mono, 215 * SEC);
        rule_engine_free(re);
}

static void set_rules_text(struct rule_engine *re, const char *text)
{
        struct diag *d = diag_new();
        struct ruleset *rs = NULL;

        if (ruleset_parse_string("new", text, &rs, d) < 0) {
                diag_print(d, stderr);
                fail_msg("parse failed");
        }
        diag_free(d);
        rule_engine_set_rules(re, rs);
}

/* Reload: a firing state of a rule that gains "clear after" becomes timed
 * (from its last match), one that loses it is left to the clear condition,
 * and one that keeps it keeps its deadline. */
static void test_clear_after_reload(void **state)
{
        static const char plain[] = "rule r {\n when v > 0\n clear v < 0\n level P3\n key \"{id}\"\n title "
                                    "\"t\"\n}\n";
        static const char after[] = "rule r {\n when v > 0\n clear after 1m\n level P3\n key \"{id}\"\n title "
                                    "\"t\"\n}\n";
        struct rule_engine *re = engine(plain, 0);
        struct rule_engine_stats st;
        struct hits hs = {0};
        struct event e;

        (void)state;
        event_init(&e, "s", "n", NULL);
        event_add_number(&e, "v", 1);
        event_add_string(&e, "id", "a");
        e.mono_usec = 100 * SEC;
        rule_engine_eval(re, &e, record, &hs);
        e.mono_usec = 130 * SEC;
        rule_engine_eval(re, &e, record, &hs); /* a repeat at 130 */
        assert_int_equal(hs.n, 2);
        rule_engine_tick(re, 1000 * SEC, record, &hs); /* no clear by time without "clear after" */
        assert_int_equal(hs.n, 2);

        /* gains it: the deadline counts from the last match, 130 + 60 */
        set_rules_text(re, after);
        rule_engine_tick(re, 190 * SEC - 1, record, &hs);
        assert_int_equal(hs.n, 2);
        rule_engine_tick(re, 190 * SEC, record, &hs);
        assert_int_equal(hs.n, 3);
        assert_int_equal(hs.h[2].t, RULE_CLEARED);
        assert_int_equal(hs.h[2].mono, 190 * SEC);

        /* keeps it: same deadline under the new ruleset */
        e.mono_usec = 300 * SEC;
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 4);
        set_rules_text(re, after);
        rule_engine_tick(re, 359 * SEC, record, &hs);
        assert_int_equal(hs.n, 4);
        rule_engine_tick(re, 360 * SEC, record, &hs);
        assert_int_equal(hs.n, 5);
        assert_int_equal(hs.h[4].t, RULE_CLEARED);

        /* loses it: still firing long after, until its clear condition */
        e.mono_usec = 400 * SEC;
        rule_engine_eval(re, &e, record, &hs);
        assert_int_equal(hs.n, 6);
        set_rules_text(re, plain);
        rule_engine_tick(re, 10000 * SEC, record, &hs);
        assert_int_equal(hs.n, 6);
        rule_engine_get_stats(re, &st);
        assert_int_equal(st.firing, 1);
        event_init(&e, "s", "n", NULL);
        event_add_number(&e, "v", -1);
        event_add_string(&e, "id", "a");
        e.mono_usec = 10001 * SEC;
        assert_true(rule_engine_eval(re, &e, record, &hs));
        assert_int_equal(hs.n, 7);
        assert_int_equal(hs.h[6].t, RULE_CLEARED);
        assert_true(hs.h[6].has_event);

        /* a clearing state (clear for) of a rule that gains "clear after"
         * is firing again, and times out from its own start */
        set_rules_text(re, "rule r {\n when v > 0\n clear v < 0 for 1h\n level P3\n key \"{id}\"\n title \"t\"\n}\n");
        event_init(&e, "s", "n", NULL);
        event_add_number(&e, "v", 1);
        event_add_string(&e, "id", "a");
        e.mono_usec = 20000 * SEC;
        rule_engine_eval(re, &e, record, &hs);
        event_init(&e, "s", "n", NULL);
        event_add_number(&e, "v", -1);
        event_add_string(&e, "id", "a");
        e.mono_usec = 20010 * SEC;
        rule_engine_eval(re, &e, record, &hs); /* clearing since 20010 */
        assert_int_equal(hs.n, 8);
        set_rules_text(re, after);
        rule_engine_get_stats(re, &st);
        assert_int_equal(st.firing, 1);
        rule_engine_tick(re, 20069 * SEC, record, &hs);
        assert_int_equal(hs.n, 8);
        rule_engine_tick(re, 20070 * SEC, record, &hs);
        assert_int_equal(hs.n, 9);
        assert_int_equal(hs.h[8].t, RULE_CLEARED);
        rule_engine_get_stats(re, &st);
        assert_int_equal(st.states, 0);
        assert_int_equal(st.firing, 0);
        rule_engine_free(re);
}

/* rule_engine_eval() tells whether any rule's when or clear held, exactly
 * when the event is not counted as unmatched. */
static void test_eval_return(void **state)
{
        struct rule_engine *re = engine(temp_rules, 0);
        struct rule_engine_stats st;
        struct hits hs = {0};
        struct event e;

        (void)state;
        temp_event(&e, "c", "l", 85, 100);
        assert_true(rule_engine_eval(re, &e, record, &hs)); /* when: pending */
        temp_event(&e, "c", "l", 78, 101);
        assert_false(rule_engine_eval(re, &e, record, &hs)); /* neither (pending dropped) */
        temp_event(&e, "c", "l", 70, 102);
        assert_false(rule_engine_eval(re, &e, record, &hs)); /* no state: the clear is not evaluated */
        temp_event(&e, "c", "l", 85, 200);
        rule_engine_eval(re, &e, record, &hs);
        rule_engine_tick(re, 210 * SEC, record, &hs);
        temp_event(&e, "c", "l", 70, 220);
        assert_true(rule_engine_eval(re, &e, record, &hs)); /* clear held: clearing */
        event_init(&e, "other", "x", NULL);
        assert_false(rule_engine_eval(re, &e, record, &hs)); /* no rule of that source */
        rule_engine_get_stats(re, &st);
        assert_int_equal(st.events, 6);
        assert_int_equal(st.unmatched, 3);
        rule_engine_set_rules(re, NULL);
        assert_false(rule_engine_eval(re, &e, record, &hs)); /* no rules */
        rule_engine_get_stats(re, &st);
        assert_int_equal(st.unmatched, 4);
        rule_engine_free(re);
}

/* Repeats of a "clear after" rule save their texts without allocating once
 * the buffers are large enough. */
static void test_clear_after_no_allocation(void **state)
{
        struct rule_engine *re = engine(reboot_rules, 0);
        struct hits hs = {0};
        struct event e;

        (void)state;
        trap_event(&e, "SNMPv2-MIB::coldStart", "10.0.0.1", 100);
        rule_engine_eval(re, &e, record, &hs);
        xalloc_fail_at(0);
        for (int i = 0; i < 100; i++) {
                hs.n = 0;
                trap_event(&e, i % 2 ? "SNMPv2-MIB::coldStart" : "SNMPv2-MIB::warmStart", "10.0.0.1",
                           101 + (uint64_t)i);
                rule_engine_eval(re, &e, record, &hs);
                assert_int_equal(hs.n, 1);
        }
        assert_int_equal(xalloc_fail_at(0), 0);
        rule_engine_free(re);
}

/* Randomised run against a trivial model of one rule with for and clear for
 * and a handful of keys: the engine must report exactly the model's
 * transitions. */
static void test_random_model(void **state)
{
        struct rule_engine *re = engine("rule m {\n when v >= 10\n for 5s\n clear v < 5 for 3s\n level P3\n key "
                                        "\"{id}\"\n title \"t\"\n}\n",
                                        0);
        enum { IDLE, PENDING, FIRING, CLEARING } model[4] = {0};
        uint64_t since[4] = {0}, now = 1000 * SEC;
        unsigned seed = 12345;

        (void)state;
        for (int step = 0; step < 5000; step++) {
                struct hits hs = {0};
                struct event e;
                char id[8];
                int k, v, expect_firing = 0, expect_repeat = 0, expect_cleared = 0, got[3] = {0};
                bool w, cl;

                seed = seed * 1103515245 + 12345;
                k = (int)((seed >> 16) % 4);
                v = (int)((seed >> 8) % 15);
                now += ((seed >> 4) % 3) * SEC;
                w = v >= 10;
                cl = !w && v < 5;
                /* the model */
                if (model[k] == PENDING && now - since[k] >= 5 * SEC) {
                        if (w) {
                                model[k] = FIRING;
                                expect_firing++;
                                goto done;
                        }
                        model[k] = FIRING;
                        expect_firing++;
                } else if (model[k] == CLEARING && now - since[k] >= 3 * SEC) {
                        expect_cleared++;
                        model[k] = IDLE;
                        if (w) {
                                model[k] = PENDING;
                                since[k] = now;
                        }
                        goto done;
                }
                switch (model[k]) {
                case IDLE:
                        if (w) {
                                model[k] = PENDING;
                                since[k] = now;
                        }
                        break;
                case PENDING:
                        if (!w)
                                model[k] = IDLE;
                        break;
                case FIRING:
                        if (w)
                                expect_repeat++;
                        else if (cl) {
                                model[k] = CLEARING;
                                since[k] = now;
                        }
                        break;
                case CLEARING:
                        if (w) {
                                model[k] = FIRING;
                                expect_repeat++;
                        } else if (!cl)
                                model[k] = FIRING;
                        break;
                }
        done:
                snprintf(id, sizeof id, "k%d", k);
                event_init(&e, "s", "n", NULL);
                event_add_number(&e, "v", v);
                event_add_string(&e, "id", id);
                e.mono_usec = now;
                rule_engine_eval(re, &e, record, &hs);
                for (size_t i = 0; i < hs.n; i++)
                        got[hs.h[i].t]++;
                assert_int_equal(got[RULE_FIRING], expect_firing);
                assert_int_equal(got[RULE_REPEAT], expect_repeat);
                assert_int_equal(got[RULE_CLEARED], expect_cleared);
        }
        rule_engine_free(re);
}

/* Randomised run of a "clear after" rule against a trivial model, with
 * ticks between events: the engine must report exactly the model's
 * transitions, and clears at last match + 5s. */
static void test_clear_after_random_model(void **state)
{
        struct rule_engine *re = engine("rule m {\n when v >= 10\n clear after 5s\n level P3\n key \"{id}\"\n title "
                                        "\"t\"\n}\n",
                                        0);
        bool firing[4] = {0};
        uint64_t last[4] = {0}, now = 1000 * SEC;
        unsigned seed = 4321;

        (void)state;
        for (int step = 0; step < 5000; step++) {
                struct hits hs = {0};
                struct rule_engine_stats st;
                size_t expect_n = 0;
                struct {
                        enum rule_transition t;
                        uint64_t mono;
                        int k;
                } expect[8];
                int k, v;
                bool w;

                seed = seed * 1103515245 + 12345;
                k = (int)((seed >> 16) % 4);
                v = (int)((seed >> 8) % 15);
                now += ((seed >> 4) % 4) * SEC + ((seed >> 2) % 2) * (SEC / 4);
                w = v >= 10;
                if ((seed >> 24) % 3 == 0) {
                        /* a tick: every expired key clears, in no set order */
                        for (int i = 0; i < 4; i++)
                                if (firing[i] && now - last[i] >= 5 * SEC) {
                                        expect[expect_n].t = RULE_CLEARED;
                                        expect[expect_n].mono = last[i] + 5 * SEC;
                                        expect[expect_n++].k = i;
                                        firing[i] = false;
                                }
                        rule_engine_tick(re, now, record, &hs);
                        assert_int_equal(hs.n, expect_n);
                        for (size_t i = 0; i < hs.n; i++) {
                                size_t j = 0;

                                while (j < expect_n && (int)(hs.h[i].key[1] - '0') != expect[j].k)
                                        j++;
                                assert_true(j < expect_n);
                                assert_int_equal(hs.h[i].t, RULE_CLEARED);
                                assert_int_equal(hs.h[i].mono, expect[j].mono);
                        }
                } else {
                        struct event e;
                        char id[8];

                        if (firing[k] && now - last[k] >= 5 * SEC) {
                                expect[expect_n].t = RULE_CLEARED;
                                expect[expect_n++].mono = last[k] + 5 * SEC;
                                firing[k] = false;
                        }
                        if (w) {
                                expect[expect_n].t = firing[k] ? RULE_REPEAT : RULE_FIRING;
                                expect[expect_n++].mono = now;
                                firing[k] = true;
                                last[k] = now;
                        }
                        snprintf(id, sizeof id, "k%d", k);
                        event_init(&e, "s", "n", NULL);
                        event_add_number(&e, "v", v);
                        event_add_string(&e, "id", id);
                        e.mono_usec = now;
                        assert_int_equal(rule_engine_eval(re, &e, record, &hs), w);
                        assert_int_equal(hs.n, expect_n);
                        for (size_t i = 0; i < hs.n; i++) {
                                assert_int_equal(hs.h[i].t, expect[i].t);
                                assert_int_equal(hs.h[i].mono, expect[i].mono);
                        }
                }
                rule_engine_get_stats(re, &st);
                assert_int_equal(st.firing, firing[0] + firing[1] + firing[2] + firing[3]);
        }
        rule_engine_free(re);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_conditions),
                cmocka_unit_test(test_templates),
                cmocka_unit_test(test_long_keys),
                cmocka_unit_test(test_state_machine),
                cmocka_unit_test(test_tick_and_late_events),
                cmocka_unit_test(test_default_clear_and_immediate),
                cmocka_unit_test(test_dispatch),
                cmocka_unit_test(test_same_key_two_rules),
                cmocka_unit_test(test_shed),
                cmocka_unit_test(test_set_rules_keeps_state),
                cmocka_unit_test(test_no_allocation),
                cmocka_unit_test(test_random_model),
                cmocka_unit_test(test_clear_after_tick),
                cmocka_unit_test(test_clear_after_late_event),
                cmocka_unit_test(test_clear_after_with_for),
                cmocka_unit_test(test_clear_after_reload),
                cmocka_unit_test(test_eval_return),
                cmocka_unit_test(test_clear_after_no_allocation),
                cmocka_unit_test(test_clear_after_random_model),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
