/* sensor_sanity: see sensor_sanity.h for the rules and their reasons. */
#include "sensor_sanity.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Readings arrive in millidegrees divided by 1000; half a millidegree tells
 * an exact register value from a real reading. */
#define DEAD_EPSILON 0.0005
#define MIN_ELAPSED_USEC 1000000u

static const double dead_values[] = {127.0, 255.0, 511.0, -128.0};

static const char *const state_names[SENSOR_STATE_MAX] = {
        [SENSOR_STATE_UNKNOWN] = "unknown",
        [SENSOR_STATE_SANE] = "sane",
        [SENSOR_STATE_FAULTY] = "faulty",
};

static const char *const fault_names[SENSOR_FAULT_MAX] = {
        [SENSOR_FAULT_NONE] = "none",
        [SENSOR_FAULT_NOT_FINITE] = "not-finite",
        [SENSOR_FAULT_DEAD_VALUE] = "dead-value",
        [SENSOR_FAULT_TOO_LOW] = "too-low",
        [SENSOR_FAULT_TOO_HIGH] = "too-high",
        [SENSOR_FAULT_JUMP] = "jump",
        [SENSOR_FAULT_READ_ERROR] = "read-error",
        [SENSOR_FAULT_HARDWARE] = "hardware",
};

const char *sensor_state_to_string(enum sensor_state s)
{
        return s < SENSOR_STATE_MAX ? state_names[s] : "invalid";
}

const char *sensor_fault_to_string(enum sensor_fault f)
{
        return f < SENSOR_FAULT_MAX ? fault_names[f] : "invalid";
}

void sensor_limits_default(struct sensor_limits *l)
{
        l->min_c = SENSOR_LIMITS_DEFAULT_MIN_C;
        l->max_c = SENSOR_LIMITS_DEFAULT_MAX_C;
        l->max_jump_c_per_s = SENSOR_LIMITS_DEFAULT_MAX_JUMP;
}

void sensor_track_init(struct sensor_track *t)
{
        memset(t, 0, sizeof *t);
        t->state = SENSOR_STATE_UNKNOWN;
        t->fault = SENSOR_FAULT_NONE;
}

static bool is_dead_value(double v)
{
        for (size_t i = 0; i < sizeof dead_values / sizeof dead_values[0]; i++)
                if (fabs(v - dead_values[i]) < DEAD_EPSILON)
                        return true;
        return false;
}

/* Elapsed seconds from then to now, at least MIN_ELAPSED_USEC. */
static double elapsed_s(uint64_t then_usec, uint64_t now_usec)
{
        uint64_t d = now_usec > then_usec ? now_usec - then_usec : 0;

        if (d < MIN_ELAPSED_USEC)
                d = MIN_ELAPSED_USEC;
        return (double)d / 1e6;
}

/* Whether going from value at then_usec to reading at now_usec is faster
 * than l allows; *ret_dt and *ret_rate get the elapsed time and the rate. */
static bool too_fast(const struct sensor_limits *l, double value, uint64_t then_usec, double reading, uint64_t now_usec,
                     double *ret_dt, double *ret_rate)
{
        double dt = elapsed_s(then_usec, now_usec);
        double rate = fabs(reading - value) / dt;

        *ret_dt = dt;
        *ret_rate = rate;
        return rate > l->max_jump_c_per_s;
}

enum sensor_fault sensor_check(const struct sensor_track *t, const struct sensor_limits *l, double reading,
                               uint64_t now_usec, char *reason, size_t size)
{
        double dt, rate, dt2, rate2;

        reason[0] = '\0';
        if (!isfinite(reading)) {
                snprintf(reason, size, "reads %s, not a temperature",
                         isnan(reading) ? "NaN" : (reading > 0 ? "+infinity" : "-infinity"));
                return SENSOR_FAULT_NOT_FINITE;
        }
        if (is_dead_value(reading)) {
                snprintf(reason, size, "reads %g °C, a value dead sensors report", reading);
                return SENSOR_FAULT_DEAD_VALUE;
        }
        if (reading < l->min_c) {
                snprintf(reason, size, "reads %g °C, below the plausible %g °C", reading, l->min_c);
                return SENSOR_FAULT_TOO_LOW;
        }
        if (reading > l->max_c) {
                snprintf(reason, size, "reads %g °C, above the plausible %g °C", reading, l->max_c);
                return SENSOR_FAULT_TOO_HIGH;
        }
        if (!t->has_sane || !too_fast(l, t->sane_value, t->sane_usec, reading, now_usec, &dt, &rate))
                return SENSOR_FAULT_NONE;
        /* A new level confirmed by two consecutive readings is real. */
        if (t->has_jump && !too_fast(l, t->jump_value, t->jump_usec, reading, now_usec, &dt2, &rate2))
                return SENSOR_FAULT_NONE;
        snprintf(reason, size, "jumped from %g to %g °C in %.1f s (%.1f °C/s, more than the plausible %g °C/s)",
                 t->sane_value, reading, dt, rate, l->max_jump_c_per_s);
        return SENSOR_FAULT_JUMP;
}

static bool set_state(struct sensor_track *t, enum sensor_state state)
{
        bool changed = t->state != state;

        t->state = state;
        return changed;
}

bool sensor_track_reading(struct sensor_track *t, const struct sensor_limits *l, double reading, uint64_t now_usec)
{
        char reason[SENSOR_REASON_MAX];
        enum sensor_fault f = sensor_check(t, l, reading, now_usec, reason, sizeof reason);

        if (f == SENSOR_FAULT_NONE) {
                t->has_sane = true;
                t->sane_value = reading;
                t->sane_usec = now_usec;
                t->has_jump = false;
                t->fault = SENSOR_FAULT_NONE;
                t->reason[0] = '\0';
                return set_state(t, SENSOR_STATE_SANE);
        }
        /* Only the reading right after a jump can confirm it. */
        t->has_jump = f == SENSOR_FAULT_JUMP;
        if (t->has_jump) {
                t->jump_value = reading;
                t->jump_usec = now_usec;
        }
        t->fault = f;
        memcpy(t->reason, reason, sizeof t->reason);
        return set_state(t, SENSOR_STATE_FAULTY);
}

bool sensor_track_fail(struct sensor_track *t, enum sensor_fault fault, const char *reason)
{
        t->has_jump = false;
        t->fault = fault;
        snprintf(t->reason, sizeof t->reason, "%s", reason);
        return set_state(t, SENSOR_STATE_FAULTY);
}

bool sensor_threshold_sane(const struct sensor_limits *l, double threshold)
{
        return isfinite(threshold) && threshold > 0 && threshold <= l->max_c && !is_dead_value(threshold);
}
