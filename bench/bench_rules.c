/* bench_rules: events per second through rule_engine_eval with 100 rules.
 *
 * The ruleset mixes sensor rules on several chips (numeric thresholds with
 * arithmetic, globs), SNMP trap, process and heartbeat rules (string
 * equality and globs) and a few rules without a source. The events are
 * built once, before timing: mostly ordinary readings that match nothing,
 * some that keep a fault firing (repeats), some of sources without rules.
 * Runs for about three seconds on one core and prints one line:
 * "bench: rules.eval N events/s". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/event.h"
#include "../rules/conf.h"
#include "../rules/rules.h"

#define N_EVENTS 4096

static const char *const chips[] = {"coretemp-isa-0000", "nct6775-isa-0290", "acpitz-acpi-0", "nvme-pci-0100",
                                    "k10temp-pci-00c3"};
static const char *const labels[] = {"Package id 0", "Core 0", "Core 1", "Core 2", "Core 3", "SYSTIN", "Composite"};

static char *build_rules(void)
{
        size_t cap = 1 << 16, len = 0;
        char *t = malloc(cap);
        int n = 0;

#define ADD(...) len += (size_t)snprintf(t + len, cap - len, __VA_ARGS__)
        for (int c = 0; c < 5; c++)
                for (int i = 0; i < 8; i++, n++)
                        ADD("rule sensor-%d {\n when source == \"sensor\" and name == \"temperature\" and chip == "
                            "\"%s\" and value >= max - %d\n for %ds\n clear value < max - %d for 30s\n level P%d\n"
                            " key \"temp:{chip}/{label}\"\n title \"{label} on {chip} at {value} (max {max})\"\n}\n",
                            n, chips[c], i, 10 + i, i + 3, 3 + i % 2);
        for (int i = 0; i < 10; i++, n++)
                ADD("rule sensor-glob-%d {\n when source == \"sensor\" and chip ~ \"*-isa-*\" and (value * 1.8 + 32 "
                    "> %d or alarm)\n level P3\n key \"tempf:{chip}/{label}\"\n title \"{label} hot\"\n}\n",
                    n, 200 + i);
        for (int i = 0; i < 20; i++, n++)
                ADD("rule trap-%d {\n when source == \"snmptrap\" and name == \"linkDown\" and object ~ \"eth%d*\"\n"
                    " level P3\n key \"trap:{object}\"\n title \"link down on {object}\"\n}\n",
                    n, i);
        for (int i = 0; i < 15; i++, n++)
                ADD("rule process-%d {\n when source == \"process\" and name == \"exited\" and object == \"svc%d\" "
                    "and exit_status != 0\n level P2\n key \"proc:{object}\"\n title \"{object} exited with "
                    "{exit_status}\"\n}\n",
                    n, i);
        for (int i = 0; i < 10; i++, n++)
                ADD("rule heartbeat-%d {\n when source == \"heartbeat\" and object == \"link%d\" and (state == "
                    "\"down\" or loss > %d)\n for 5s\n level P3\n key \"hb:{object}\"\n title \"heartbeat {object} "
                    "{state}\"\n}\n",
                    n, i, 20 + i);
        for (int i = 0; i < 5; i++, n++)
                ADD("rule any-%d {\n when exists(critical) and critical == %d\n level P1\n key \"any:{object}\"\n"
                    " title \"critical {object}\"\n}\n",
                    n, i + 1);
#undef ADD
        return t;
}

static struct event events[N_EVENTS];
static char objects[N_EVENTS][64];

static void build_events(void)
{
        for (int i = 0; i < N_EVENTS; i++) {
                struct event *e = &events[i];
                int kind = i % 10;

                if (kind < 6) {
                        const char *chip = chips[i % 5], *label = labels[i % 7];

                        snprintf(objects[i], sizeof objects[i], "%s/%s", chip, label);
                        event_init(e, "sensor", "temperature", objects[i]);
                        /* every 50th sensor reading is hot: repeats of a firing fault */
                        event_set_value(e, i % 50 == 0 ? 95.0 : 40.0 + (i % 17), "C");
                        event_add_string(e, "type", "temp");
                        event_add_string(e, "chip", chip);
                        event_add_string(e, "label", label);
                        event_add_string(e, "feature", "temp1");
                        event_add_number(e, "max", 80);
                        event_add_number(e, "crit", 100);
                        event_add_number(e, "alarm", 0);
                } else if (kind < 8) {
                        snprintf(objects[i], sizeof objects[i], "eth%d", i % 30);
                        event_init(e, "snmptrap", i % 3 ? "linkUp" : "linkDown", objects[i]);
                        event_add_string(e, "oid", "1.3.6.1.6.3.1.1.5.3");
                        event_add_string(e, "varbind[IF-MIB::ifDescr]", objects[i]);
                } else if (kind == 8) {
                        snprintf(objects[i], sizeof objects[i], "svc%d", i % 20);
                        event_init(e, "process", "exited", objects[i]);
                        event_add_number(e, "exit_status", i % 7 == 0 ? 1 : 0);
                        event_add_number(e, "pid", 1000 + i);
                } else {
                        snprintf(objects[i], sizeof objects[i], "link%d", i % 12);
                        event_init(e, i % 4 ? "heartbeat" : "link", "status", objects[i]);
                        event_add_string(e, "state", "up");
                        event_add_number(e, "loss", i % 5);
                }
        }
}

static void on_hit(const struct rule_hit *hit, void *userdata)
{
        (*(unsigned long *)userdata) += hit->transition + 1;
}

int main(void)
{
        struct diag *d = diag_new();
        struct ruleset *rs = NULL;
        struct rule_engine *re = NULL;
        char *text = build_rules();
        unsigned long hits = 0, n = 0;
        uint64_t start, now, base;

        if (!d || !text || ruleset_parse_string("bench", text, &rs, d) < 0) {
                diag_print(d, stderr);
                return 1;
        }
        if (ruleset_count(rs) != 100) {
                fprintf(stderr, "bench: expected 100 rules, got %zu\n", ruleset_count(rs));
                return 1;
        }
        if (rule_engine_new(0, &re) < 0)
                return 1;
        rule_engine_set_rules(re, rs);
        build_events();
        base = events[0].mono_usec;
        start = time_mono_usec();
        do {
                for (int i = 0; i < N_EVENTS; i++) {
                        events[i].mono_usec = base + (n + (unsigned long)i) * 100; /* 10k events/s of event time */
                        rule_engine_eval(re, &events[i], on_hit, &hits);
                }
                n += N_EVENTS;
                now = time_mono_usec();
        } while (now - start < 3000000);
        printf("bench: rules.eval %.0f events/s\n", (double)n * 1e6 / (double)(now - start));
        fprintf(stderr, "bench_rules: %lu events, hit weight %lu\n", n, hits);
        rule_engine_free(re);
        diag_free(d);
        free(text);
        return 0;
}
