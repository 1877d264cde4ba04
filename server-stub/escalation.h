/* escalation: the diagnosis time limits of the service agreement (DESIGN.md
 * §1, "Diagnosis time limits and escalation") as a matrix: for each level
 * P1..P5 the steps a case not yet diagnosed escalates to, each after a number
 * of seconds counted from the case's created_at.
 *
 * Pure data: the default matrix, its JSON file format (docs/api.md,
 * "Escalation clock") and its parser, no I/O, no SQLite, so the fuzz target
 * (tests/fuzz/fuzz_stub_body.c) can include this file alone. Which steps a
 * case has reached is the store's business (store.c), the clock that
 * records them central.c's. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "../rules/rules.h"

#define ESCALATION_MAX_STEPS 16                /* steps of one level */
#define ESCALATION_MAX_STEP_NAME 256           /* bytes of a step's name */
#define ESCALATION_MAX_AFTER_S (366LL * 86400) /* a step's "after_s" */
#define ESCALATION_FILE_MAX (64 * 1024)        /* bytes of an --escalation file */

struct escalation_step {
        int64_t after_s; /* seconds after created_at */
        char step[ESCALATION_MAX_STEP_NAME + 1];
};

/* A plain value: steps of each level in increasing after_s. */
struct escalation_matrix {
        size_t n[RULE_LEVEL_MAX];
        struct escalation_step steps[RULE_LEVEL_MAX][ESCALATION_MAX_STEPS];
};

/* Fills *ret with the agreement's default matrix (P5 has no steps). */
void escalation_default(struct escalation_matrix *ret);

/* Parses len bytes of an escalation file: {"P1": [{"after_s": 600, "step":
 * "Manager1 / senior engineer"}, ...], ...}. The file replaces the whole
 * matrix: a level it does not name has no escalation clock. Returns 0 and
 * fills *ret, or -EINVAL with a message naming the member ("P2[1].after_s:
 * ...") in err, or -ENOMEM. */
int escalation_parse(const char *text, size_t len, struct escalation_matrix *ret, char *err, size_t errsize);

/* The matrix as JSON in the file's format (caller frees with cJSON_Delete),
 * or NULL on allocation failure. */
cJSON *escalation_to_json(const struct escalation_matrix *m);
