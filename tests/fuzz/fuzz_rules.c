/* fuzz_rules: libFuzzer target for the rules and config language.
 *
 * The first byte picks the entry point (rules or agent.conf); the rest is
 * the text. Properties checked beyond "no crash, no leak": a text that
 * parses prints a normalised form that parses again to the very same text,
 * and a parsed ruleset survives a few evaluated events. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/event.h"
#include "../../rules/conf.h"
#include "../../rules/rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_hit(const struct rule_hit *hit, void *userdata)
{
        (void)userdata;
        if (!hit->key || !hit->title || !hit->description)
                abort();
}

static char *rules_text(const struct ruleset *rs)
{
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);

        if (!f)
                abort();
        ruleset_format(rs, f);
        fclose(f);
        return out;
}

static char *config_text(const struct config *c)
{
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);

        if (!f)
                abort();
        config_format(c, f);
        fclose(f);
        return out;
}

static void exercise(struct ruleset *rs)
{
        struct rule_engine *re = NULL;
        struct event e;

        if (rule_engine_new(16, &re) < 0) {
                ruleset_free(rs);
                return;
        }
        rule_engine_set_rules(re, rs);
        for (int i = 0; i < 4; i++) {
                event_init(&e, i % 2 ? "sensor" : "agent", i < 2 ? "temperature" : "config-error", "c/l");
                event_set_value(&e, 40.0 + i * 30, "C");
                event_add_string(&e, "chip", "coretemp-isa-0000");
                event_add_string(&e, "label", "Core 0");
                event_add_string(&e, "type", "temp");
                event_add_number(&e, "max", 80);
                event_add_number(&e, "crit", 100);
                event_add_number(&e, "alarm", i == 3);
                e.mono_usec = (uint64_t)i * 20000000;
                rule_engine_eval(re, &e, on_hit, NULL);
        }
        rule_engine_tick(re, 1000000000, on_hit, NULL);
        rule_engine_free(re);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct diag *d;
        char *text;

        if (size < 1 || size > 65536)
                return 0;
        text = malloc(size);
        if (!text)
                return 0;
        memcpy(text, data + 1, size - 1);
        text[size - 1] = '\0';
        d = diag_new();
        if (!d) {
                free(text);
                return 0;
        }
        if (data[0] & 1) {
                struct config *c = NULL, *c2 = NULL;

                if (config_load_string("fuzz.conf", text, &c, d) == 0) {
                        char *once = config_text(c), *twice;

                        if (config_load_string("fuzz2.conf", once, &c2, d) != 0)
                                abort(); /* the normalised form must parse */
                        twice = config_text(c2);
                        if (strcmp(once, twice) != 0)
                                abort();
                        free(once);
                        free(twice);
                        config_free(c2);
                        exercise(config_take_rules(c));
                        config_free(c);
                }
        } else {
                struct ruleset *rs = NULL, *rs2 = NULL;

                if (ruleset_parse_string("fuzz.rules", text, &rs, d) == 0) {
                        char *once = rules_text(rs), *twice;

                        if (ruleset_parse_string("fuzz2.rules", once, &rs2, d) != 0)
                                abort();
                        twice = rules_text(rs2);
                        if (strcmp(once, twice) != 0)
                                abort();
                        free(once);
                        free(twice);
                        ruleset_free(rs2);
                        exercise(rs);
                }
        }
        for (size_t i = 0; i < diag_count(d); i++)
                if (!diag_get(d, i))
                        abort();
        diag_free(d);
        free(text);
        return 0;
}
