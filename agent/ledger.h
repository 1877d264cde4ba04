/* ledger: the downtime ledger. The agreement extends the free maintenance
 * period by the days the system was down (24 h of downtime = one day), so
 * the agent measures its own absences: it records a sign of life every
 * alive_interval (and at every commit of its state), marks a clean stop when
 * it is stopped on purpose, and at start records the gap since the last sign
 * of life as an outage: clean (stopped on purpose) or not (a crash, a kill,
 * a power loss), with the boot ids before and after (a different boot id
 * means the host itself went down). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

struct ledger;
struct loop;
struct store;

/* Reads the previous run's last sign of life from st and records the outage
 * since then, if any. Returns 0 and a ledger (caller frees with
 * ledger_free), or negative errno. */
int ledger_new(struct loop *loop, struct store *st, uint64_t alive_interval_usec, struct ledger **ret);
/* Marks the stop as clean; the caller commits the store afterwards. */
void ledger_stop(struct ledger *l);
void ledger_free(struct ledger *l);

/* A new JSON object for the snapshot: "outages" since since (wall µs), each
 * with start, end, duration_s, clean and boot ids; "quarters": for every
 * calendar quarter (UTC) touched, the downtime in seconds, clean and not,
 * and the warranty days it earns (each full 24 h of unclean downtime — a
 * crash, a kill, a power loss — is one day; clean stops are planned and earn
 * none); and the totals. NULL on allocation failure, *ret_err negative errno
 * when the store could not be read. */
cJSON *ledger_to_json(struct ledger *l, int64_t since, int *ret_err);
