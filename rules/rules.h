/* rules: compiled rules and the evaluator that turns events into fault
 * transitions (DESIGN.md "Rules and configuration", docs/rules.md).
 *
 * A ruleset is compiled once and immutable. A rule engine holds the per
 * (rule, key) state machine — idle → pending → firing → clearing → idle —
 * and can swap rulesets while keeping the state of rules whose name stays.
 * Evaluating an event does no parsing and, for keys already known, no
 * allocation. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../lib/event.h"

struct diag;

enum rule_level {
        RULE_LEVEL_P1, /* emergency */
        RULE_LEVEL_P2, /* severe */
        RULE_LEVEL_P3, /* normal */
        RULE_LEVEL_P4, /* other */
        RULE_LEVEL_P5, /* information */
        RULE_LEVEL_MAX,
};

/* "P1".."P5" */
const char *rule_level_to_string(enum rule_level level);
/* Accepts "P1".."P5"; returns 0 or -EINVAL. */
int rule_level_from_string(const char *s, enum rule_level *ret);

struct rule;
struct ruleset;

/* Parses rule blocks (and only rule blocks) from text; name is used in
 * diagnostics. Returns 0 and a ruleset (caller frees with ruleset_free), or
 * a negative errno with diagnostics in d. */
int ruleset_parse_string(const char *name, const char *text, struct ruleset **ret, struct diag *d);
/* Same, reading path (regular file, at most 1 MiB); includes resolve
 * relative to its directory and diagnostics carry its name. */
int ruleset_load_file(const char *path, struct ruleset **ret, struct diag *d);
void ruleset_free(struct ruleset *rs);
size_t ruleset_count(const struct ruleset *rs);
/* The i-th rule in load order, valid until ruleset_free. */
const struct rule *ruleset_get(const struct ruleset *rs, size_t i);
/* Writes every rule in normalised form; the output parses to the same rules. */
void ruleset_format(const struct ruleset *rs, FILE *f);

const char *rule_name(const struct rule *r);
/* Writes a duration as the rules language does ("1m30s", "0s"). */
void duration_format(uint64_t usec, char *buf, size_t size);
/* The D of "clear after D", or 0 when the rule has a clear condition. */
uint64_t rule_clear_after_usec(const struct rule *r);
enum rule_level rule_get_level(const struct rule *r);

enum rule_transition {
        RULE_FIRING,  /* the (rule, key) became firing: open or raise a fault */
        RULE_REPEAT,  /* another matching event while firing */
        RULE_CLEARED, /* the clear condition held long enough, or "clear after" passed with no match */
        RULE_TRANSITION_MAX,
};
const char *rule_transition_to_string(enum rule_transition t);

/* What the engine reports. All pointers are valid only during the callback. */
struct rule_hit {
        enum rule_transition transition;
        const struct rule *rule;
        enum rule_level level;
        const char *key;         /* rendered key template */
        const char *title;       /* rendered from the triggering event */
        const char *description; /* rendered; "" when the rule has none */
        /* the triggering event; for a firing that time made (the "for" ran
         * out between events), the last event whose when held; NULL for
         * other transitions time made (clears, "clear after") */
        const struct event *event;
        uint64_t mono_usec; /* when the transition happened */
};

typedef void (*rule_hit_fn)(const struct rule_hit *hit, void *userdata);

struct rule_engine_stats {
        uint64_t events;         /* events evaluated */
        uint64_t unmatched;      /* events that matched no rule's when or clear */
        uint64_t states;         /* (rule, key) states held now */
        uint64_t firing;         /* of which firing or clearing */
        uint64_t shed;           /* new states refused because the state table was full */
        uint64_t keys_truncated; /* rendered keys over 255 bytes, cut and suffixed with a hash */
};

struct rule_engine;

/* Returns 0 and a new engine with no rules, or -ENOMEM. Caller frees with
 * rule_engine_free. max_states caps the (rule, key) state table (0: 65536). */
int rule_engine_new(size_t max_states, struct rule_engine **ret);
void rule_engine_free(struct rule_engine *re);
/* Takes ownership of rs and frees the previous ruleset. State of rules that
 * keep their name is kept; state of rules that disappeared is dropped. If
 * memory for the new rules' scratch space cannot be had, the old ruleset
 * stays in place and rs is freed (rule_engine_rules() tells which). */
void rule_engine_set_rules(struct rule_engine *re, struct ruleset *rs);
const struct ruleset *rule_engine_rules(const struct rule_engine *re);
/* Evaluates e against every rule of its source (and the rules that do not
 * name a source) and calls fn for each transition. fn must not call back
 * into the engine. Returns true when the when or clear condition of at least
 * one rule held for e, false when e matched nothing (and was counted in
 * stats.unmatched); a clear found by time alone does not count. */
bool rule_engine_eval(struct rule_engine *re, const struct event *e, rule_hit_fn fn, void *userdata);
/* Promotes pending states whose "for" has elapsed, clearing states whose
 * clear "for" has elapsed and firing states of "clear after" rules whose
 * last matching event is that long ago, as of now_mono_usec (the last
 * evaluated value of a condition is taken to hold until an event says
 * otherwise). */
void rule_engine_tick(struct rule_engine *re, uint64_t now_mono_usec, rule_hit_fn fn, void *userdata);
/* Whether the engine holds a state (firing, or on its way to clear) of
 * (rule, key). A reload drops the states of rules removed or whose key
 * template changed. */
bool rule_engine_has_state(struct rule_engine *re, const char *rule, const char *key);
/* Re-creates the firing state of (rule, key) as a previous run of the agent
 * left it, without reporting a transition, so that the rule's clear
 * condition (or "clear after") can end it. title is what time-made
 * transitions report until an event renders a new one. Returns 0 (also when
 * the state exists), -ENOENT when no rule has that name, -EINVAL for a bad
 * key, -ENOSPC when the state table is full. */
int rule_engine_restore(struct rule_engine *re, const char *rule, const char *key, const char *title,
                        uint64_t now_mono_usec);
void rule_engine_get_stats(const struct rule_engine *re, struct rule_engine_stats *ret);
