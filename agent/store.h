/* store: the agent's durable state, one SQLite database in WAL mode under
 * the state directory (state_dir/agent.db). It holds the case outbox (cases
 * not yet fully delivered and their queued updates), the fault table, and the
 * maintenance windows, so that an agent killed at any moment comes back with
 * every case it owed the central side and no case opened twice.
 *
 * Writes are grouped: modules that own state register a writer; when one of
 * them has changed something it calls store_mark_dirty(), and at the end of
 * the current loop round (a zero-delay timer) the store opens one
 * transaction, asks every writer to write what changed, commits, then tells
 * every writer whether the commit held. A writer keeps its changes marked
 * until it hears "committed", so a failed commit (a full disk, say) loses
 * nothing: the same changes are written again at the next attempt, once a
 * second until one succeeds. Nothing may be sent before it is committed, which
 * is what the outbox waits for.
 *
 * This is the only module of the agent that includes sqlite3.h; SQLite result
 * codes become negative errno here (SQLITE_FULL → -ENOSPC, I/O → -EIO, a
 * locked or busy database → -EBUSY, a damaged one → -EBADMSG). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct store;

enum store_sync {
        STORE_SYNC_FULL,   /* fsync at every commit: a commit survives power loss (default) */
        STORE_SYNC_NORMAL, /* WAL synced at checkpoints only: survives a crash of the agent, not of the host */
        STORE_SYNC_MAX,
};
const char *store_sync_to_string(enum store_sync s);
int store_sync_from_string(const char *s, enum store_sync *ret);

/* Opens (creating it and its schema if needed) path. Returns 0 and a store
 * (caller frees with store_free), or negative errno; *ret_error (may be
 * NULL) then gets SQLite's own text for the log, valid until the next call. */
int store_open(struct loop *loop, const char *path, enum store_sync sync, struct store **ret, const char **ret_error);
/* Closes without committing (the writers may be gone by then: commit with
 * store_commit_now() first). NULL does nothing. */
void store_free(struct store *st);

/* A module with durable state. write() is called inside the transaction and
 * writes everything changed since its last successful commit (through the
 * store_put_* / store_del_* functions below), returning 0 or the first
 * negative errno; done() tells whether the transaction committed. */
struct store_writer {
        int (*write)(struct store *st, void *userdata);
        void (*done)(struct store *st, bool committed, void *userdata);
        void *userdata;
};
/* Registers w (copied). At most STORE_WRITERS_MAX. Returns 0 or -E2BIG. */
#define STORE_WRITERS_MAX 8
int store_add_writer(struct store *st, const struct store_writer *w);
/* Unregisters the writer(s) registered with userdata; a module's free calls
 * it, so the store never calls into freed state. NULL st does nothing. */
void store_remove_writer(struct store *st, void *userdata);
/* Schedules a commit at the end of this loop round. */
void store_mark_dirty(struct store *st);
/* Runs the commit now (tests, shutdown). Returns 0 or negative errno. */
int store_commit_now(struct store *st);

struct store_stats {
        uint64_t commits;
        uint64_t commit_failures; /* attempts that failed (and were retried) */
        int last_errno;           /* of the last failed attempt; 0 after a success */
        bool failing;             /* the last attempt failed: changes are held in memory only */
        uint64_t bytes;           /* size of the database and its WAL */
};
void store_get_stats(const struct store *st, struct store_stats *ret);
/* SQLite's text for the last failure ("database or disk is full"), or "". */
const char *store_last_error(const struct store *st);

/* ---- rows, for writers (inside write()) and for loading at start ---- */

/* A case the agent opened or is opening. body is the create request; case_id
 * NULL until the central side answered; parked NULL unless the open was
 * refused for good (the server's error). */
struct store_case {
        int64_t ref;
        const char *fault_key;
        const char *idem_key;
        const char *body;
        int64_t prev_ref; /* the case this one follows (0: none) */
        const char *case_id;
        const char *parked;
        unsigned update_seq; /* updates made so far (their idempotency keys count up) */
        const char *method;  /* a plain request (a snapshot upload): its method and path; NULL for a case */
        const char *path;
        bool sent; /* a plain request the central side acknowledged */
};
struct store_update {
        int64_t seq; /* global order */
        int64_t ref; /* the case */
        const char *type;
        const char *body;
        const char *idem_key;
        const char *parked;
};

int store_put_case(struct store *st, const struct store_case *c);
int store_del_case(struct store *st, int64_t ref);
int store_put_update(struct store *st, const struct store_update *u);
int store_del_update(struct store *st, int64_t seq);
/* Faults are opaque JSON text to the store. */
int store_put_fault(struct store *st, const char *key, const char *json);
int store_del_fault(struct store *st, const char *key);
/* A maintenance window: wall µs; ended_at 0 while it runs. */
struct store_window {
        int64_t id;
        int64_t start, end, ended_at;
        const char *reason;
};
int store_put_window(struct store *st, const struct store_window *w);

/* Loading at start, in order (cases by ref, updates by seq, windows by id).
 * Each callback gets borrowed strings valid during the call; a callback
 * returning negative errno stops the walk with that value. */
int store_load_cases(struct store *st, int (*fn)(const struct store_case *c, void *ud), void *ud);
int store_load_updates(struct store *st, int (*fn)(const struct store_update *u, void *ud), void *ud);
int store_load_faults(struct store *st, int (*fn)(const char *key, const char *json, void *ud), void *ud);
int store_load_windows(struct store *st, int (*fn)(const struct store_window *w, void *ud), void *ud);
/* Named counters that never go back (the last case ref, update seq, window
 * id handed out), so that an id is never reused even after its row is gone.
 * get: 0 and *ret (0 when never set), or negative errno. */
int store_get_counter(struct store *st, const char *name, int64_t *ret);
int store_put_counter(struct store *st, const char *name, int64_t value);

/* ---- history (agent/history.h) and the downtime ledger (agent/ledger.h) ---- */

enum store_tier {
        STORE_TIER_MINUTE, /* 1-minute min/avg/max */
        STORE_TIER_HOUR,   /* 1-hour min/avg/max */
        STORE_TIER_MAX,
};

/* A time series: what a numeric reading is about. Returns 0 and its id
 * (creating it), or negative errno. Outside write() too (it is one row). */
int store_series_id(struct store *st, const char *source, const char *name, const char *object, const char *unit,
                    int64_t *ret_id);
/* One aggregated sample; t is the start of its minute or hour (unix s). A
 * minute row already there merges with it (min of minima, weighted mean, max
 * of maxima, counts added); an hour row is replaced. */
int store_put_sample(struct store *st, enum store_tier tier, int64_t series, int64_t t, double min, double avg,
                     double max, int64_t n);
/* The hour starting at t (unix s) of series from its minute rows (those
 * written before a restart included), or from min/avg/max/n when none are
 * left. Returns 0 or negative errno. */
int store_put_hour_from_minutes(struct store *st, int64_t series, int64_t t, double min, double avg, double max,
                                int64_t n);
/* Writes the hour rows that minute rows before before (unix s) lack, hours
 * an agent stopped or killed mid-hour never closed; existing rows stay.
 * Returns the number written or negative errno. */
int store_close_orphan_hours(struct store *st, int64_t before);
/* Deletes samples of tier older than before (unix s). Returns the number
 * deleted or negative errno. */
int store_prune_samples(struct store *st, enum store_tier tier, int64_t before);
/* Deletes the oldest rows of tier older than keep_from (unix s), about n:
 * whole minutes (hours) at a time. Returns the number deleted or negative errno. */
int store_drop_oldest_samples(struct store *st, enum store_tier tier, int n, int64_t keep_from);
/* Deletes the oldest history events older than keep_from (unix µs), at most n. */
int store_drop_oldest_events(struct store *st, int n, int64_t keep_from);
/* Gives the free pages back to the file system (the database is created
 * with auto_vacuum=INCREMENTAL; one made before that keeps its free pages
 * for reuse). Returns 0 or negative errno. */
int store_release_free_pages(struct store *st);
/* Bytes of the database holding data (pages in use, not free ones). */
int store_used_bytes(struct store *st, uint64_t *ret);
/* Bytes on disk: the database file and its WAL. */
uint64_t store_disk_bytes(const struct store *st);
/* After a commit that left the WAL larger than bytes, it is checkpointed and
 * truncated (default STORE_WAL_MAX_DEFAULT). */
#define STORE_WAL_MAX_DEFAULT (4ULL << 20)
void store_set_wal_max(struct store *st, uint64_t bytes);

struct store_sample {
        int64_t series;
        const char *source, *name, *object, *unit;
        int64_t t;
        double min, avg, max;
        int64_t n;
        const char *thresholds; /* the series' thresholds as JSON text, or NULL */
};
/* The thresholds the readings of a series are compared with ({"max": 80,
 * "crit": 95}), as JSON text; NULL clears them. */
int store_series_thresholds(struct store *st, int64_t series, const char *json);
/* Samples of tier since (unix s), by series then time. */
int store_load_samples(struct store *st, enum store_tier tier, int64_t since,
                       int (*fn)(const struct store_sample *s, void *ud), void *ud);

/* A history event (a fault firing or clearing, a case opened, a restart of
 * the agent...): t unix µs, detail JSON text or NULL. */
int store_put_event(struct store *st, int64_t t, const char *kind, const char *object, const char *detail);
int store_prune_events(struct store *st, int64_t before);
int store_load_events(struct store *st, int64_t since,
                      int (*fn)(int64_t t, const char *kind, const char *object, const char *detail, void *ud),
                      void *ud);

/* An outage of the agent: wall µs; clean when it was stopped on purpose. */
struct store_outage {
        int64_t start, end;
        bool clean;
        const char *boot_before, *boot_after;
};
int store_put_outage(struct store *st, const struct store_outage *o);
int store_load_outages(struct store *st, int64_t since, int (*fn)(const struct store_outage *o, void *ud), void *ud);
/* Small named strings (the ledger's last sign of life). get: 0 and a fresh
 * string in *ret (caller frees), -ENOENT when unset. */
int store_get_text(struct store *st, const char *name, char **ret);
int store_put_text(struct store *st, const char *name, const char *value);
