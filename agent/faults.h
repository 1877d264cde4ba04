/* faults: the per-key fault table and the life of the case each fault opens.
 *
 * The rule engine reports transitions per (rule, key); this module folds all
 * rules of one key into one fault: firing while any of them fires, at the most
 * urgent level among them, cleared when the last one clears (DESIGN.md: a
 * fault is pending → firing (case opened) → cleared (case told, not closed)).
 *
 * Lifecycle (docs/rules.md "From transitions to faults and cases"):
 * - one case per fault key while the fault is active; repeats raise the
 *   occurrence count and last-seen, sent as at most one update per interval;
 *   a more urgent rule raises the case's level with the reason; the clear
 *   sends "cleared";
 * - a recurrence within the reopen window goes back to the same case
 *   ("reopened"); a later one opens a new case naming the old one, even
 *   after the cleared fault itself was forgotten (its last case id is kept
 *   90 days, for at most max_faults keys);
 * - a key that changes state more than flap_count times within flap_window
 *   is "flapping": one note on its case, no update per change, and a final
 *   note with the state it settled in once it stays put for flap_window;
 * - storm control: new cases take a token from a bucket (case_burst, refilled
 *   at case_rate a minute), and more than storm_keys new faults of one rule
 *   within storm_window go into one summary case of that rule instead of a
 *   case each; what was summarised is counted and listed in that case;
 * - during a maintenance window faults are detected and recorded but open no
 *   case; those still firing when it ends open their cases then.
 *
 * State is durable (agent/store.h): faults survive restarts, and a fault
 * that was firing takes up its old case again rather than opening another.
 * Delivery itself belongs to agent/outbox.h. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "../rules/rules.h"

struct faults;
struct identity;
struct loop;
struct outbox;
struct rule_engine;
struct ruleset;
struct store;

enum fault_state {
        FAULT_FIRING,
        FAULT_CLEARED,
        FAULT_STATE_MAX,
};

const char *fault_state_to_string(enum fault_state s);

struct faults_settings {
        uint64_t occurrence_usec;    /* at most one occurrence update per case this often (default 60 s) */
        size_t max_faults;           /* cap on keys held; beyond it new faults are counted as shed (10000) */
        uint64_t reopen_window_usec; /* a recurrence this soon after the clear reopens the case (1 h; 0: never) */
        unsigned flap_count;         /* more state changes than this within flap_window: flapping (6; 0: off) */
        uint64_t flap_window_usec;   /* (10 min) */
        double case_rate;            /* new cases a minute, refilling the bucket (30) */
        unsigned case_burst;         /* bucket size (10) */
        unsigned storm_keys;         /* more new faults of one rule within storm_window: summary case (10) */
        uint64_t storm_window_usec;  /* (1 min) */
};

/* Returns 0 and a table holding the faults the store kept from a previous
 * run (caller frees with faults_free), or negative errno. identity, outbox
 * and store must outlive it; it registers as a writer of st and adds a timer
 * to loop. */
int faults_new(struct loop *loop, const struct identity *id, struct store *st, struct outbox *ob,
               const struct faults_settings *settings, struct faults **ret);
void faults_free(struct faults *f);
void faults_set_settings(struct faults *f, const struct faults_settings *settings);
/* Hands the firing states of restored faults to the rule engine (so their
 * clear conditions can end them) and drops rules no longer loaded, clearing
 * faults left with none. Call once after the engine has its rules. */
void faults_restore(struct faults *f, struct rule_engine *re);

struct history;
/* Faults firing and clearing are noted in h (may be NULL: not noted). */
void faults_set_history(struct faults *f, struct history *h);

/* Applies one rule transition (the rule_hit_fn of rule_engine_eval). Logs
 * state changes. */
void faults_handle_hit(const struct rule_hit *hit, void *faults);
/* After a reload: rules of a fault whose state the engine no longer holds
 * (the rule was removed, or its key template changed) no longer hold the
 * fault; a fault left with no rule clears. */
void faults_rules_changed(struct faults *f, struct rule_engine *re);

/* Maintenance: while held, new faults open no case. Releasing opens the
 * cases of faults still firing that were held; why says what ended it. */
void faults_hold_cases(struct faults *f, bool hold, const char *why);

struct faults_stats {
        uint64_t firing;
        uint64_t cleared;
        uint64_t cases_wanted;     /* new cases decided on (each goes to the outbox) */
        uint64_t held_maintenance; /* faults held back by a maintenance window so far */
        uint64_t rate_limited;     /* new faults summarised because the case bucket was empty */
        uint64_t storm_summarised; /* new faults summarised because their rule stormed */
        uint64_t flapping;         /* faults flapping now */
        uint64_t shed;             /* faults refused because the table was full */
        uint64_t lost;             /* cases or updates the outbox refused (full, out of memory) */
        uint64_t remembered;       /* forgotten keys whose last case a recurrence will name */
};
void faults_get_stats(const struct faults *f, struct faults_stats *ret);
/* A new JSON array describing every fault; NULL on allocation failure. */
cJSON *faults_to_json(const struct faults *f);
