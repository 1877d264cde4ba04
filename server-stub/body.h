/* body: validation of the JSON request bodies the stub accepts (docs/api.md).
 *
 * Pure functions over an already parsed cJSON tree: no I/O, no SQLite, no
 * HTTP, so the fuzz target (tests/fuzz/fuzz_stub_body.c) can include this
 * file alone. Every string and sub-tree in a result is borrowed from the
 * tree it was parsed from and valid until that tree is deleted. Excess is an
 * error, never silently truncated: each string has a byte cap below. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "../rules/rules.h"

#define BODY_MAX_BYTES (1024 * 1024)            /* whole request body */
#define BODY_MAX_EVIDENCE 100                   /* entries in one "evidence" array */
#define BODY_MAX_ID 256                         /* agent fields, fault_key, rule */
#define BODY_MAX_TITLE 512                      /* title */
#define BODY_MAX_TEXT 16384                     /* description, reason, message */
#define BODY_MAX_TIME 64                        /* RFC 3339 timestamps */
#define BODY_MAX_IDEMPOTENCY_KEY 200            /* Idempotency-Key header */
#define BODY_MAX_OCCURRENCES 9007199254740991LL /* 2^53 - 1: exact in a JSON number */

/* POST /api/v1/cases. Optional strings are NULL when absent. */
struct body_case {
        const char *agent_id;
        const char *hostname;
        const char *fault_key;
        enum rule_level level;
        const char *rule;
        const char *title;
        const char *description; /* optional */
        const char *first_seen;
        const char *last_seen; /* optional */
        int64_t occurrences;
        const cJSON *agent;    /* the whole "agent" object */
        const cJSON *readings; /* optional object */
        const cJSON *evidence; /* optional array of objects */
};

enum body_update_type {
        BODY_UPDATE_OCCURRENCE,
        BODY_UPDATE_LEVEL,
        BODY_UPDATE_CLEARED,
        BODY_UPDATE_REOPENED,
        BODY_UPDATE_NOTE,
        BODY_UPDATE_TYPE_MAX,
};

/* POST /api/v1/cases/{id}/updates. Optional fields are NULL / has_* false. */
struct body_update {
        enum body_update_type type;
        bool has_occurrences;
        int64_t occurrences; /* required for "occurrence" */
        const char *last_seen;
        bool has_level;
        enum rule_level level; /* required for "level" */
        const char *reason;
        const char *message; /* required for "note" */
        const cJSON *readings;
        const cJSON *evidence;
};

/* "occurrence", "level", "cleared", "reopened", "note". */
const char *body_update_type_to_string(enum body_update_type t);
/* Returns 0 and sets *ret on a known name, -EINVAL otherwise. */
int body_update_type_from_string(const char *s, enum body_update_type *ret);

/* Parses len bytes of JSON text that must hold one object. Returns 0 and a
 * tree (caller frees with cJSON_Delete), -EINVAL with a message in err for
 * anything else, or -ENOMEM. */
int body_parse_json(const char *text, size_t len, cJSON **ret, char *err, size_t errsize);

/* Validate a parsed case or update body. Return 0 and fill *ret, or -EINVAL
 * with a message naming the field ("level: expected one of P1..P5") in err;
 * *ret is left untouched on failure. */
int body_parse_case(const cJSON *root, struct body_case *ret, char *err, size_t errsize);
int body_parse_update(const cJSON *root, struct body_update *ret, char *err, size_t errsize);

/* True when s is an RFC 3339 date-time ("2026-11-25T10:00:00Z",
 * "2026-11-25T18:00:00.5+08:00") with plausible field ranges. */
bool body_is_rfc3339(const char *s);

/* Validate an Idempotency-Key header value (NULL: missing). Returns 0 or
 * -EINVAL with a message in err. */
int body_check_idempotency_key(const char *key, char *err, size_t errsize);
