/* history: what the agent saw, kept for the quarterly inspection (issue 6,
 * docs/snapshot.md): every numeric reading an event carries (temperatures,
 * link loss and round-trip times, process CPU and memory...) downsampled to
 * 1-minute and 1-hour min/avg/max, and the notable moments (faults firing and
 * clearing, cases opened, agent starts) as events.
 *
 * Readings are aggregated in memory and written at the store's commits
 * (agent/store.h), a minute at a time. Old data ages out (1-minute samples
 * after minute_days, 1-hour samples and events after hour_days), and the
 * database on disk (file and WAL) is kept under cap_bytes: the oldest
 * samples go first, minute samples before hour samples, then the oldest
 * events; the last day is never dropped for space (when only it and the
 * outbox are left, over_cap says so).
 * Times are the events' wall clock. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

struct event;
struct history;
struct loop;
struct store;

#define HISTORY_CAP_DEFAULT (64ULL << 20)

struct history_settings {
        uint64_t cap_bytes;   /* default HISTORY_CAP_DEFAULT */
        unsigned minute_days; /* default 14 */
        unsigned hour_days;   /* default 400 */
        size_t max_series;    /* readings of more series than this are counted, not kept (default 2000) */
};

/* Returns 0 and a history writing to st (caller frees with history_free), or
 * negative errno. A timer on loop closes minutes that saw no reading. */
int history_new(struct loop *loop, struct store *st, const struct history_settings *set, struct history **ret);
void history_free(struct history *h);
/* Counts e's value (when it has a finite one) into its series' minute, and
 * the numeric attributes that matter into series of their own ("link.rtt_ms",
 * "link.jitter_ms", "usage.cpu_percent"...); notes process exits, restarts
 * and crash loops ("process-exited"...) and link state changes
 * ("link-state", with from and to). */
void history_record(struct history *h, const struct event *e);
/* Counts one reading of the series (source, name, object) at wall_usec. */
void history_record_value(struct history *h, const char *source, const char *name, const char *object, const char *unit,
                          double value, int64_t wall_usec);
/* fn is called each minute (from history_close_minutes) to record the
 * agent's own health with history_record_value. */
typedef void (*history_health_fn)(struct history *h, int64_t wall_usec, void *userdata);
void history_set_health(struct history *h, history_health_fn fn, void *userdata);
/* Notes a moment: t wall µs, kind ("fault-firing", "case-opened", ...),
 * object (a fault key...), detail (takes ownership; may be NULL). */
void history_note(struct history *h, int64_t t, const char *kind, const char *object, cJSON *detail);
/* Writes the minutes ended before now_wall_usec (the timer does this each
 * minute; tests call it). */
void history_close_minutes(struct history *h, int64_t now_wall_usec);

/* Writes the minutes still open (a clean stop calls it before the last
 * commit). The open hours are not written: the next start completes them
 * from their minutes in the store (or, when it starts within the same hour,
 * that hour's close does). */
void history_flush(struct history *h);

/* A new JSON object for the snapshot: "series" (each with source, name,
 * object, unit, the min/avg/max over the period and its hourly points, or
 * 1-minute points when minutes is true), "events", and the store's size and
 * cap. since is wall µs. NULL on allocation failure; *ret_err gets negative
 * errno when the store could not be read. */
cJSON *history_to_json(struct history *h, int64_t since, bool minutes, int *ret_err);

struct history_stats {
        uint64_t series;         /* series seen since start */
        uint64_t readings;       /* readings counted */
        uint64_t series_dropped; /* readings of series beyond max_series */
        uint64_t pruned;         /* samples aged out or dropped for the cap */
        uint64_t used_bytes;     /* the database's data, at the last check */
        bool over_cap;           /* at the last pruning only the newest day and the outbox were left, over the cap */
};
void history_get_stats(const struct history *h, struct history_stats *ret);
