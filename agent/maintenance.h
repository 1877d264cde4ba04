/* maintenance: service windows during which faults are still detected and
 * recorded but open no case (`weibaoctl maintenance start --for 2h --reason
 * "..."`). A window is persisted (agent/store.h), listed, may be ended early,
 * and never outlives its end time: a timer ends it on the loop, checking the
 * wall clock at least every 10 s (a suspend or a clock jump forward), and a
 * window found past its end at start is ended then. One window runs at a
 * time. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

struct loop;
struct maintenance;
struct store;

#define MAINTENANCE_MAX_USEC (30ULL * 24 * 3600 * 1000000) /* a window lasts at most 30 days */
#define MAINTENANCE_REASON_MAX 512

/* Told whenever cases become held (active) or released; why is a sentence
 * for the log and the cases ("maintenance window #3: disk swap"). */
typedef void (*maintenance_changed_fn)(bool active, const char *why, void *userdata);

/* Loads the windows the store holds and tells fn the current state once.
 * Returns 0 and a handle (caller frees with maintenance_free), or negative
 * errno. loop and st must outlive it. */
int maintenance_new(struct loop *loop, struct store *st, maintenance_changed_fn fn, void *userdata,
                    struct maintenance **ret);
void maintenance_free(struct maintenance *m);
/* Starts a window of duration_usec (1 s .. MAINTENANCE_MAX_USEC) now.
 * Returns 0 and its id, -EBUSY when one runs already, -EINVAL for a bad
 * duration or reason (empty, too long, control characters), -ENOMEM. */
int maintenance_start(struct maintenance *m, uint64_t duration_usec, const char *reason, int64_t *ret_id);
/* Ends the running window early (id 0: whichever runs). Returns 0, -ENOENT
 * when no such window runs. */
int maintenance_end(struct maintenance *m, int64_t id);
/* Whether a window runs now: started, not ended, and the wall clock before
 * its end (also in the moments after a suspend or a clock jump forward,
 * before the timer has noticed and ended it). */
bool maintenance_active(const struct maintenance *m);
/* Tests: the wall clock in µs that windows are measured against (NULL: the
 * real one), and how often at least the timer looks at it while a window
 * runs (0: every 10 s). */
void maintenance_set_clock(struct maintenance *m, int64_t (*clock)(void), uint64_t check_usec);
/* A new JSON object: "active" (the running window or null) and "windows"
 * (the latest, newest last). NULL on allocation failure. */
cJSON *maintenance_to_json(const struct maintenance *m);
