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

#define BODY_MAX_BYTES (1024 * 1024)               /* whole request body */
#define BODY_MAX_EVIDENCE 100                      /* entries in one "evidence" array */
#define BODY_MAX_ID 256                            /* agent fields, fault_key, rule */
#define BODY_MAX_TITLE 512                         /* title */
#define BODY_MAX_TEXT 16384                        /* description, reason, message */
#define BODY_MAX_TIME 64                           /* RFC 3339 timestamps */
#define BODY_MAX_IDEMPOTENCY_KEY 200               /* Idempotency-Key header */
#define BODY_MAX_OCCURRENCES 9007199254740991LL    /* 2^53 - 1: exact in a JSON number */
#define BODY_MAX_SNAPSHOT_BYTES (16 * 1024 * 1024) /* PUT .../snapshots/{request} body */
#define BODY_MAX_DONE 256                          /* entries in a check-in's "done" array */
#define BODY_MAX_INSPECTION_AGENTS 1024            /* entries in an inspection's "agents" array */
#define BODY_MAX_INTERVAL_S 86400                  /* a check-in's "interval_s" */
#define BODY_DEFAULT_INTERVAL_S 60
#define BODY_MAX_INSPECT_SECONDS (3660LL * 86400) /* an inspection's period (what the agent accepts) */
#define BODY_DEFAULT_INSPECT_SECONDS (90LL * 86400)
#define BODY_MAX_MAINTENANCE_SECONDS (30LL * 86400) /* a maintenance window (what the agent accepts) */
#define BODY_MAX_REASON 512                         /* a maintenance command's reason (what the agent accepts) */
#define BODY_MAX_COMMAND_ID 16                      /* digits of a command id in "done" (below 2^53) */

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

/* True when a Prefer header value (NULL: none) asks for return=minimal
 * (RFC 7240): the client needs only the id of what it creates, not the
 * whole object back. */
bool body_prefers_minimal(const char *prefer);

/* True when s can be an agent id or snapshot request in a URL path: 1..256
 * bytes of A-Z a-z 0-9 . _ -, and neither "." nor "..". */
bool body_is_url_id(const char *s);

/* Parses an RFC 3339 date-time (body_is_rfc3339) into microseconds since
 * the epoch, UTC (fractions beyond microseconds are cut). Returns 0, or
 * -EINVAL when s is not one. */
int body_rfc3339_to_usec(const char *s, int64_t *ret);

/* POST /api/v1/agents/{agent_id}/checkin. Optional members are NULL / 0. */
struct body_checkin {
        const cJSON *agent;              /* the identity object, or NULL */
        const char *agent_id, *hostname; /* from agent, NULL when not given */
        const char *time;                /* the agent's clock, RFC 3339 */
        int64_t interval_s;              /* 0: not given */
        const cJSON *status;             /* object, or NULL */
        size_t n_done;
        int64_t done[BODY_MAX_DONE]; /* command ids the agent has handled */
};

/* Validates a check-in body for the agent path_id (already checked with
 * body_is_url_id): agent.id, when given, must equal it. Returns 0 and fills
 * *ret, or -EINVAL with a message naming the field in err. */
int body_parse_checkin(const cJSON *root, const char *path_id, struct body_checkin *ret, char *err, size_t errsize);

enum body_command_type {
        BODY_COMMAND_INSPECT,
        BODY_COMMAND_MAINTENANCE_START,
        BODY_COMMAND_MAINTENANCE_END,
        BODY_COMMAND_TYPE_MAX,
};

/* "inspect", "maintenance-start", "maintenance-end". */
const char *body_command_type_to_string(enum body_command_type t);

/* POST /api/v1/agents/{agent_id}/commands: maintenance-start (seconds
 * 1..BODY_MAX_MAINTENANCE_SECONDS and a printable reason of 1..512 bytes,
 * both required) or maintenance-end (nothing else). Inspections are queued
 * by POST /api/v1/inspections only. */
struct body_command {
        enum body_command_type type;
        int64_t seconds;    /* maintenance-start */
        const char *reason; /* maintenance-start */
};

int body_parse_command(const cJSON *root, struct body_command *ret, char *err, size_t errsize);

/* POST /api/v1/inspections: {"agents": [...]} (URL-safe ids, no duplicates,
 * 1..BODY_MAX_INSPECTION_AGENTS) or {"all": true}, and "seconds"
 * 1..BODY_MAX_INSPECT_SECONDS (default 90 days). */
struct body_inspection {
        bool all;
        const cJSON *agents; /* the array when !all */
        size_t n_agents;
        int64_t seconds;
};

int body_parse_inspection(const cJSON *root, struct body_inspection *ret, char *err, size_t errsize);

/* A snapshot upload: a JSON object whose "version" is a number. Returns 0
 * or -EINVAL with a message in err. */
int body_check_snapshot(const cJSON *root, char *err, size_t errsize);
