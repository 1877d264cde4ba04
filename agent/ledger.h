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

/* A new JSON object for the snapshot, covering whole calendar quarters (UTC)
 * from the one holding since (wall µs) to the one holding now: "outages"
 * overlapping them (start, end, duration_s, clean, boot ids, host_rebooted,
 * counted), "quarters" (each with its downtime split by kind, the system
 * downtime that counts for the warranty and the warranty days it earned), the
 * totals over those quarters, and the ledger's all-time counted downtime and
 * warranty days. Counted: the host went down (boot id changed) without a clean
 * stop; warranty days are whole days of the ledger's running counted total
 * (docs/snapshot.md). NULL with *ret_err negative errno (-ENOMEM, or the
 * store's error). */
cJSON *ledger_to_json(struct ledger *l, int64_t since, int64_t now, int *ret_err);
