/* faults: the per-key fault table and the case each fault opens.
 *
 * The rule engine reports transitions per (rule, key); this module folds all
 * rules of one key into one fault: firing while any of them fires, at the most
 * urgent level among them, cleared when the last one clears (DESIGN.md: a
 * fault is pending → firing (case opened) → cleared (case told, not closed)).
 * Each firing period is one case on the central API: opened once (with an
 * Idempotency-Key, so a retried request never makes a second case), then told
 * of level changes, batched occurrence counts and the clear. A fault that
 * fires again after it cleared opens a new case that names the previous one.
 *
 * Delivery is kept in memory and retried every retry interval until the
 * central side accepts it; the durable outbox replaces this later. */
#pragma once

#include <stdint.h>

#include <cjson/cJSON.h>

#include "../rules/rules.h"

struct faults;
struct identity;
struct loop;
struct ruleset;
struct sender;

enum fault_state {
        FAULT_FIRING,
        FAULT_CLEARED,
        FAULT_STATE_MAX,
};

const char *fault_state_to_string(enum fault_state s);

struct faults_settings {
        uint64_t retry_usec;      /* how long to wait after a failed send */
        uint64_t occurrence_usec; /* at most one occurrence update per case this often */
        size_t max_faults;        /* cap on keys held; beyond it new faults are counted as shed */
};

/* Returns 0 and an empty table (caller frees with faults_free), or negative
 * errno. identity and sender must outlive the table; a retry timer is added
 * to loop. */
int faults_new(struct loop *loop, const struct identity *id, struct sender *sender,
               const struct faults_settings *settings, struct faults **ret);
void faults_free(struct faults *f);
void faults_set_settings(struct faults *f, const struct faults_settings *settings);

/* Applies one rule transition (the rule_hit_fn of rule_engine_eval) and
 * starts whatever sends it needs. Logs state changes. */
void faults_handle_hit(const struct rule_hit *hit, void *faults);
/* After a reload: rules named by faults but absent from rs no longer hold
 * their faults; a fault left with no rule clears ("rule removed"). */
void faults_rules_changed(struct faults *f, const struct ruleset *rs);
/* Starts every send that is due now. */
void faults_flush(struct faults *f);

struct faults_stats {
        uint64_t firing;
        uint64_t cleared;
        uint64_t cases_opened;  /* acknowledged by the central side */
        uint64_t sends_pending; /* opens and updates not yet acknowledged */
        uint64_t send_failures; /* failed attempts so far */
        uint64_t shed;          /* faults refused because the table was full */
};
void faults_get_stats(const struct faults *f, struct faults_stats *ret);
/* A new JSON array describing every fault; NULL on allocation failure. */
cJSON *faults_to_json(const struct faults *f);
