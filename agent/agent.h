/* agent: the daemon assembled — config, event loop, collectors, rule engine,
 * fault table, case sender and control socket — and the reload that swaps
 * config and rules atomically. main.c only parses options and calls this. */
#pragma once

#include <stdio.h>

struct agent;
struct diag;

/* Loads and validates config_path. Returns 0 and an agent that is not yet
 * running (caller frees with agent_free), or negative errno; on a config
 * error (-EINVAL) the reasons are in d. Logs nothing. */
int agent_new(const char *config_path, struct diag *d, struct agent **ret);
/* Writes the loaded configuration in normalised form (config_format); for
 * --check, before agent_start took the rules out of it. */
void agent_format_config(const struct agent *a, FILE *f);
/* Opens the control socket, starts collectors and timers. Returns 0 or
 * negative errno after logging what failed. */
int agent_start(struct agent *a);
/* Runs the loop until SIGTERM/SIGINT; returns the exit code for main. */
int agent_run(struct agent *a);
/* Re-reads config and rules; on any error logs every diagnostic and keeps
 * the running config and rules. Fault state is kept either way. Returns 0
 * or negative errno. */
int agent_reload(struct agent *a);
/* Stops everything in reverse order of start. NULL does nothing. */
void agent_free(struct agent *a);
