/* json: small helpers over cJSON for building documents whose every
 * allocation may fail (the tests make them fail on purpose). */
#pragma once

#include <cjson/cJSON.h>

/* Adds item under key to object o (or to array o when key is NULL), taking
 * ownership of item: on any failure, including item == NULL, item is
 * deleted. Returns 0 or -ENOMEM. */
int json_add(cJSON *o, const char *key, cJSON *item);
