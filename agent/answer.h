/* answer: reading the central API's answers. They come from the network, so
 * this is a parser of untrusted input (fuzzed by tests/fuzz/fuzz_answer.c):
 * bounded, never aborts, never logs. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define ANSWER_ID_MAX 128

/* Extracts the case id from a create-case answer ({"id": 17, ...} or
 * {"id": "C-17", ...}). Returns 0 and a fresh string (caller frees with
 * free()), -EBADMSG when the body is not a JSON object with a usable id, or
 * -ENOMEM. */
int answer_parse_case_id(const char *body, size_t len, char **ret);
/* Copies the "error" text of an error answer into buf (at most size - 1
 * bytes, control characters replaced), or a prefix of the raw body when it
 * is not such JSON. Returns buf. */
char *answer_error_text(const char *body, size_t len, char *buf, size_t size);

#define ANSWER_COMMANDS_MAX 16
#define ANSWER_REASON_MAX 512

enum answer_command_type {
        ANSWER_COMMAND_INSPECT,           /* upload a health snapshot */
        ANSWER_COMMAND_MAINTENANCE_START, /* start a maintenance window */
        ANSWER_COMMAND_MAINTENANCE_END,   /* end the running one */
        ANSWER_COMMAND_TYPE_MAX,
};

/* One command from a check-in answer; strings are NUL-terminated copies. */
struct answer_command {
        enum answer_command_type type;
        char id[ANSWER_ID_MAX];      /* the command's id ("" when none), URL-safe */
        char request[ANSWER_ID_MAX]; /* inspect: the inspection request, URL-safe */
        uint64_t seconds;            /* inspect: the period (default 90 days); maintenance start: the duration */
        char reason[ANSWER_REASON_MAX + 1];
};

/* Reads the commands of a check-in answer ({"commands": [...]}): at most
 * ANSWER_COMMANDS_MAX into cmds. Commands of an unknown type or with bad
 * fields are skipped and counted in *ret_skipped. Returns the number read,
 * or -EBADMSG when the body is not a JSON object. */
int answer_parse_commands(const char *body, size_t len, struct answer_command *cmds, size_t max, size_t *ret_skipped);
