/* sensor_sanity: decides whether a temperature reading is physically
 * plausible, so that a broken sensor never poses as a fire.
 *
 * Pure: no libsensors, no I/O, no allocation, no logging. The caller keeps
 * one struct sensor_track per sensor, feeds it every reading with the time it
 * was taken, and gets back whether the sensor is sane or faulty and why. The
 * time must come from a clock that never goes back; the collector uses
 * CLOCK_BOOTTIME so that a suspend counts as elapsed time.
 *
 * A reading is faulty when, checked in this order, it
 *   1. is NaN or infinite;
 *   2. is one of the fixed values dead or absent sensors report: 127, 255 and
 *      511 °C (all-ones 7-, 8- and 9-bit registers) and -128 °C (0x80, the
 *      "no reading" code of 8-bit two's complement sensors; it is also below
 *      the plausible range, but naming it gives the better reason);
 *   3. lies outside [min_c, max_c] (default -100 .. 250 °C);
 *   4. differs from the last sane reading by more than max_jump_c_per_s
 *      times the time elapsed since that reading, the elapsed time being
 *      taken as at least one second: a step of a few degrees between two
 *      quick polls is quantisation, not a 100 °C/s rate.
 * The first reading of a track has no history and is judged by 1-3 only;
 * a single glitch on the first poll is the rules' "for" duration's business,
 * withholding every sensor for one interval at start would be worse.
 * Long gaps (a faulty spell, a stall) need no special case: the allowed step
 * grows with the gap, so after (max_c - min_c) / max_jump_c_per_s seconds any
 * in-range reading passes. A jump is not held against a sensor for ever:
 * when the reading after a rejected jump agrees with the jumped-to value
 * (within the same rate), the new level is confirmed and accepted, so a real
 * step change, or a glitch taken as the first baseline, costs one poll. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SENSOR_REASON_MAX 160

enum sensor_state {
        SENSOR_STATE_UNKNOWN, /* nothing judged yet */
        SENSOR_STATE_SANE,
        SENSOR_STATE_FAULTY,
        SENSOR_STATE_MAX,
};

enum sensor_fault {
        SENSOR_FAULT_NONE,
        SENSOR_FAULT_NOT_FINITE,
        SENSOR_FAULT_DEAD_VALUE,
        SENSOR_FAULT_TOO_LOW,
        SENSOR_FAULT_TOO_HIGH,
        SENSOR_FAULT_JUMP,
        SENSOR_FAULT_READ_ERROR, /* the reading could not be taken */
        SENSOR_FAULT_HARDWARE,   /* the chip itself flags the sensor as faulty */
        SENSOR_FAULT_MAX,
};

/* "unknown", "sane", "faulty". */
const char *sensor_state_to_string(enum sensor_state s);
/* "none", "not-finite", "dead-value", "too-low", "too-high", "jump",
 * "read-error", "hardware". */
const char *sensor_fault_to_string(enum sensor_fault f);

struct sensor_limits {
        double min_c;            /* lowest plausible reading */
        double max_c;            /* highest plausible reading */
        double max_jump_c_per_s; /* fastest plausible change, > 0 */
};

#define SENSOR_LIMITS_DEFAULT_MIN_C (-100.0)
#define SENSOR_LIMITS_DEFAULT_MAX_C 250.0
#define SENSOR_LIMITS_DEFAULT_MAX_JUMP 20.0

/* Fills l with the defaults above. */
void sensor_limits_default(struct sensor_limits *l);

/* Per-sensor history. Plain value record; zeroing it (or sensor_track_init)
 * gives a fresh track. */
struct sensor_track {
        enum sensor_state state;
        enum sensor_fault fault;        /* SENSOR_FAULT_NONE unless faulty */
        char reason[SENSOR_REASON_MAX]; /* empty unless faulty */

        bool has_sane; /* last sane reading and when it was taken */
        double sane_value;
        uint64_t sane_usec;

        bool has_jump; /* the reading a jump was rejected for, last poll only */
        double jump_value;
        uint64_t jump_usec;
};

void sensor_track_init(struct sensor_track *t);

/* Judges reading, taken at now_usec, against l and t's history without
 * changing t. Returns the fault (SENSOR_FAULT_NONE when sane) and, when
 * faulty, a human reason in reason (always NUL-terminated; size > 0). */
enum sensor_fault sensor_check(const struct sensor_track *t, const struct sensor_limits *l, double reading,
                               uint64_t now_usec, char *reason, size_t size);

/* Judges reading like sensor_check and records the outcome in t. Returns
 * true when t->state changed (including the first judgement from unknown). */
bool sensor_track_reading(struct sensor_track *t, const struct sensor_limits *l, double reading, uint64_t now_usec);

/* Records that no reading could be judged this poll (fault is READ_ERROR or
 * HARDWARE; reason is copied, truncated to SENSOR_REASON_MAX - 1 bytes). The
 * last sane reading is kept. Returns true when t->state changed. */
bool sensor_track_fail(struct sensor_track *t, enum sensor_fault fault, const char *reason);

/* Whether a max/crit threshold the chip reports is usable: finite, above
 * 0 °C, at most l->max_c and none of the dead-sensor values (a chip with an
 * unset limit register reports 127 or 255, sometimes -128 or 0; a rule
 * comparing against those would fire for ever or never). */
bool sensor_threshold_sane(const struct sensor_limits *l, double threshold);
