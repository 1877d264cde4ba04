/* answer: reading the central API's answers. They come from the network, so
 * this is a parser of untrusted input (fuzzed by tests/fuzz/fuzz_answer.c):
 * bounded, never aborts, never logs. */
#pragma once

#include <stddef.h>

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
