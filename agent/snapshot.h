/* snapshot: the agent's health snapshot for a quarterly inspection, one JSON
 * document with a version field (docs/snapshot.md is its schema): identity
 * and inventory, host facts (uptime, disks), config and rules digests, the
 * collectors' state, history summaries, faults and cases, the downtime
 * ledger and the agent's own health. `weibaoctl snapshot [--since 90d]`
 * prints it; an inspection uploads it. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

struct config;
struct faults;
struct history;
struct identity;
struct ledger;
struct maintenance;
struct outbox;

#define SNAPSHOT_VERSION 1

struct snapshot_parts {
        const struct identity *id;
        const struct config *config;
        cJSON *collectors; /* taken over */
        cJSON *status;     /* the agent's status answer, taken over (its counters) */
        struct faults *faults;
        struct outbox *outbox;
        struct maintenance *maintenance;
        struct history *history;
        struct ledger *ledger;
        int64_t started_wall;
};

/* Builds the snapshot of the period since (wall µs). minutes: history at
 * 1-minute resolution too. Returns a new object, or NULL with *ret_err set
 * (negative errno). Takes over parts->collectors and parts->status. */
cJSON *snapshot_build(const struct snapshot_parts *parts, int64_t since, bool minutes, int *ret_err);
