/* collector: the one interface every event source plugs in through.
 *
 * A collector is configured from its "collector NAME { ... }" block (or with
 * defaults when the config has none), started on the agent's loop where it
 * registers its own fds and timers, and emits events (lib/event.h) through the
 * callback it was given. It reports its own status as a JSON object for
 * weibaoctl. Adding a collector is one file plus one line in registry.c. */
#pragma once

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "../lib/event.h"

struct conf_block;
struct diag;
struct loop;

/* The event is valid only during the call (see event.h). Returns whether any
 * rule's condition matched it (an unmatched event is kept in the agent's
 * recent events and counted, never silently dropped). */
typedef bool (*collector_emit_fn)(const struct event *e, void *userdata);

/* What a collector may know about the agent it runs in. */
struct collector_context {
        const char *base_dir;  /* relative paths in settings resolve against this */
        const char *state_dir; /* the agent's state directory (may not exist yet) */
        const char *agent_id;  /* the configured agent id, or NULL */
};

struct collector_ops {
        const char *name;     /* the NAME in "collector NAME { }" */
        bool default_enabled; /* runs even when the config does not mention it */
        /* Reads settings from block (NULL: all defaults) into fresh private
         * state. Returns 0 and *ret_state, or negative errno after adding
         * diagnostics to d. Must not touch the system beyond reading. */
        int (*new)(const struct conf_block *block, const struct collector_context *ctx, struct diag *d,
                   void **ret_state);
        /* Registers fds and timers on loop. Returns 0 or negative errno; on
         * error it logs nothing and leaves nothing registered. */
        int (*start)(void *state, struct loop *loop, collector_emit_fn emit, void *userdata);
        /* Removes everything start registered. Safe to call when not started. */
        void (*stop)(void *state);
        /* A fresh JSON object describing state and counters; caller frees with
         * cJSON_Delete. NULL on allocation failure. verbose adds what only a
         * close look needs (e.g. the last traps decoded). */
        cJSON *(*status)(void *state, bool verbose);
        /* Frees the state; NULL does nothing. Calls stop first if needed. */
        void (*free)(void *state);
};

/* NULL-terminated list of every collector built in (collectors/registry.c). */
extern const struct collector_ops *const collector_registry[];
