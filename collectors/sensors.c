/* sensors: the temperature collector, reading every temperature feature of
 * every chip libsensors knows (hwmon under /sys/class/hwmon, with the
 * labels and compute statements of /etc/sensors3.conf and sensors.d).
 *
 * Settings, in "collector sensors { ... }" (all optional):
 *   interval  duration, 100ms .. 1d, default 10s: how often every sensor is
 *             read (the loop adds up to interval/20, at most 500ms, of jitter);
 *   max_jump  number, °C per second, > 0, default 20: the fastest change
 *             taken as real (sensor_sanity.h explains the rule);
 *   chips     string, default all: whitespace- or comma-separated fnmatch(3)
 *             globs over the chip name as `sensors` prints it, e.g.
 *             "coretemp-* nvme-*"; a chip matching none is ignored.
 *
 * Each poll emits, for each sensor, either
 *   sensor/temperature  object "<chip>/<label>", value in "C", attributes
 *                       type "temp", chip, label, feature ("temp1"), max and
 *                       crit (only when the chip reports a sane one), alarm
 *                       (0/1: any of alarm, max_alarm, crit_alarm,
 *                       emergency_alarm set);
 * or, when the reading is not plausible (sensor_sanity.h) or cannot be
 * taken, or the chip flags the sensor faulty (tempN_fault),
 *   sensor/sensor-fault object "<chip>/<label>", attributes type "temp",
 *                       chip, label, feature, fault (sensor_fault_to_string),
 *                       reason (human text), reading (only if finite).
 * A faulty sensor's reading never reaches temperature rules. The fault event
 * repeats on every poll while the sensor stays faulty (rules deduplicate on
 * their key; a repeated event keeps a fault's last-seen time honest); the
 * state change itself is logged once.
 *
 * Assumptions: libsensors is process-wide state, so only one instance of
 * this collector runs; start calls sensors_init(NULL) and stop
 * sensors_cleanup(). The chip list is fixed at start: a driver loaded later
 * is seen after a reload. All per-sensor state lives in one array sized at
 * start; a poll does no allocation. Elapsed time for the jump rule comes
 * from CLOCK_BOOTTIME, which never goes back and counts a suspend (a machine
 * may come back from one much cooler). */
#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sensors/error.h>
#include <sensors/sensors.h>

#include "../agent/loop.h"
#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "../rules/conf.h"
#include "collector.h"
#include "sensor_sanity.h"

#define DEFAULT_INTERVAL_USEC (10 * 1000000ull)
#define MIN_INTERVAL_USEC 100000ull
#define MAX_INTERVAL_USEC (86400 * 1000000ull)
#define MAX_JITTER_USEC 500000ull
#define FIRST_POLL_USEC 1000ull
/* Hard caps on what comes from outside: the config and the machine. */
#define CHIPS_GLOBS_MAX 32
#define SENSORS_TRACKED_MAX 1024
#define ALARM_KINDS 4

static const enum sensors_subfeature_type alarm_types[ALARM_KINDS] = {
        SENSORS_SUBFEATURE_TEMP_ALARM,
        SENSORS_SUBFEATURE_TEMP_MAX_ALARM,
        SENSORS_SUBFEATURE_TEMP_CRIT_ALARM,
        SENSORS_SUBFEATURE_TEMP_EMERGENCY_ALARM,
};

struct temp_sensor {
        const sensors_chip_name *chip; /* owned by libsensors, valid until sensors_cleanup */
        const char *chip_name;         /* points into sensors_state.chip_names */
        const char *feature;           /* libsensors' feature name, "temp1" */
        char *label;
        char *object;                            /* "chip/label" */
        int nr_input, nr_max, nr_crit, nr_fault; /* subfeature numbers, -1 when absent */
        int nr_alarm[ALARM_KINDS];
        size_t n_alarm;
        struct sensor_track track;

        /* from the last poll, for status */
        bool has_reading;
        double reading;
        bool has_max, has_crit;
        double max, crit;
        bool alarm;
};

struct sensors_state {
        /* settings */
        uint64_t interval_usec;
        struct sensor_limits limits;
        char *chips_setting; /* the "chips" value as given, or NULL */
        char *globs_buf;     /* chips_setting split in place */
        const char *globs[CHIPS_GLOBS_MAX];
        size_t n_globs;

        /* while started */
        bool started;
        struct loop_source *timer;
        collector_emit_fn emit;
        void *userdata;
        unsigned chips_seen; /* every chip libsensors reported */
        char **chip_names;   /* chips that passed the filter and have temperature sensors */
        size_t n_chips;
        struct temp_sensor *sensors;
        size_t n_sensors;
        size_t n_ignored; /* beyond SENSORS_TRACKED_MAX */
        uint64_t polls;
        int64_t last_poll_wall_usec;
};

static uint64_t boottime_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_BOOTTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- settings ---- */

static int parse_globs(struct sensors_state *st, const struct conf_block *block, const char *value, struct diag *d)
{
        char *save = NULL, *tok;

        st->chips_setting = xstrdup(value);
        st->globs_buf = xstrdup(value);
        if (!st->chips_setting || !st->globs_buf) {
                conf_block_diag(block, "chips", d, "chips: out of memory");
                return -ENOMEM;
        }
        for (tok = strtok_r(st->globs_buf, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
                if (st->n_globs == CHIPS_GLOBS_MAX) {
                        return conf_block_diag(block, "chips", d, "chips: more than %d patterns", CHIPS_GLOBS_MAX);
                }
                st->globs[st->n_globs++] = tok;
        }
        if (st->n_globs == 0) {
                return conf_block_diag(block, "chips", d, "chips: no pattern given (leave it out to watch all chips)");
        }
        return 0;
}

static int read_settings(struct sensors_state *st, const struct conf_block *block, struct diag *d)
{
        const char *chips;
        double jump;
        int r, ret = 0;

        if (!block)
                return 0;
        r = conf_block_get_duration(block, "interval", &st->interval_usec, d);
        if (r == -EINVAL)
                ret = r;
        else if (r == 0 && (st->interval_usec < MIN_INTERVAL_USEC || st->interval_usec > MAX_INTERVAL_USEC)) {
                ret = conf_block_diag(block, "interval", d, "interval must be between 100ms and 1d");
        }
        r = conf_block_get_number(block, "max_jump", &jump, d);
        if (r == -EINVAL)
                ret = r;
        else if (r == 0 && !(jump > 0 && isfinite(jump))) {
                ret = conf_block_diag(block, "max_jump", d, "max_jump must be a positive number of °C per second");
        } else if (r == 0)
                st->limits.max_jump_c_per_s = jump;
        r = conf_block_get_string(block, "chips", &chips, d);
        if (r == -EINVAL)
                ret = r;
        else if (r == 0) {
                r = parse_globs(st, block, chips, d);
                if (r < 0)
                        ret = r;
        }
        r = conf_block_check_unused(block, d);
        if (r < 0)
                ret = r;
        return ret;
}

static void sensors_state_free(void *userdata);

static int sensors_state_new(const struct conf_block *block, const struct collector_context *ctx, struct diag *d,
                             void **ret_state)
{
        struct sensors_state *st = xcalloc(1, sizeof *st);
        int r;

        (void)ctx;
        if (!st)
                return -ENOMEM;
        st->interval_usec = DEFAULT_INTERVAL_USEC;
        sensor_limits_default(&st->limits);
        r = read_settings(st, block, d);
        if (r < 0) {
                sensors_state_free(st);
                return r;
        }
        *ret_state = st;
        return 0;
}

/* ---- discovery ---- */

static bool chip_wanted(const struct sensors_state *st, const char *name)
{
        if (st->n_globs == 0)
                return true;
        for (size_t i = 0; i < st->n_globs; i++)
                if (fnmatch(st->globs[i], name, 0) == 0)
                        return true;
        return false;
}

/* Sets *ret to the chip's printed name in a fresh string (caller frees with
 * free()). Returns 0, -EINVAL when libsensors cannot print it, or -ENOMEM. */
static int chip_name_dup(const sensors_chip_name *chip, char **ret)
{
        int n = sensors_snprintf_chip_name(NULL, 0, chip);
        char *s;

        if (n < 0)
                return -EINVAL;
        s = xmalloc((size_t)n + 1);
        if (!s)
                return -ENOMEM;
        if (sensors_snprintf_chip_name(s, (size_t)n + 1, chip) != n) {
                free(s);
                return -EINVAL;
        }
        *ret = s;
        return 0;
}

static int subfeature_nr(const sensors_chip_name *chip, const sensors_feature *f, enum sensors_subfeature_type t)
{
        const sensors_subfeature *sf = sensors_get_subfeature(chip, f, t);

        return sf && (sf->flags & SENSORS_MODE_R) ? sf->number : -1;
}

/* Calls fn for every temperature feature with a readable input of every
 * wanted chip, in libsensors' order. Counts chips_seen on the way. */
static int for_each_temp(struct sensors_state *st,
                         int (*fn)(struct sensors_state *st, const sensors_chip_name *chip, const char *chip_name,
                                   bool first_of_chip, const sensors_feature *f))
{
        const sensors_chip_name *chip;
        int chip_nr = 0, r = 0;

        st->chips_seen = 0;
        while ((chip = sensors_get_detected_chips(NULL, &chip_nr))) {
                const sensors_feature *f;
                char *name;
                bool first = true;
                int feat_nr = 0;

                st->chips_seen++;
                r = chip_name_dup(chip, &name);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        r = 0;
                        continue; /* an unprintable name: libsensors' own tools skip it too */
                }
                if (!chip_wanted(st, name)) {
                        free(name);
                        continue;
                }
                while ((f = sensors_get_features(chip, &feat_nr))) {
                        if (f->type != SENSORS_FEATURE_TEMP ||
                            subfeature_nr(chip, f, SENSORS_SUBFEATURE_TEMP_INPUT) < 0)
                                continue;
                        r = fn(st, chip, name, first, f);
                        first = false;
                        if (r < 0)
                                break;
                }
                free(name);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int count_one(struct sensors_state *st, const sensors_chip_name *chip, const char *chip_name, bool first_of_chip,
                     const sensors_feature *f)
{
        (void)chip;
        (void)chip_name;
        (void)f;
        if (st->n_sensors == SENSORS_TRACKED_MAX) {
                st->n_ignored++;
                return 0;
        }
        if (first_of_chip)
                st->n_chips++;
        st->n_sensors++;
        return 0;
}

static int add_one(struct sensors_state *st, const sensors_chip_name *chip, const char *chip_name, bool first_of_chip,
                   const sensors_feature *f)
{
        struct temp_sensor *s;
        char *label;

        if (st->n_sensors == SENSORS_TRACKED_MAX)
                return 0;
        if (first_of_chip) {
                st->chip_names[st->n_chips] = xstrdup(chip_name);
                if (!st->chip_names[st->n_chips])
                        return -ENOMEM;
                st->n_chips++;
        }
        /* Counted at once: a half-filled entry is freed with the rest. */
        s = &st->sensors[st->n_sensors++];
        s->chip = chip;
        s->chip_name = st->chip_names[st->n_chips - 1];
        s->feature = f->name;
        label = sensors_get_label(chip, f);
        if (!label)
                return -ENOMEM;
        s->label = xstrdup(label);
        free(label);
        if (!s->label)
                return -ENOMEM;
        s->object = xasprintf("%s/%s", s->chip_name, s->label);
        if (!s->object)
                return -ENOMEM;
        s->nr_input = subfeature_nr(chip, f, SENSORS_SUBFEATURE_TEMP_INPUT);
        s->nr_max = subfeature_nr(chip, f, SENSORS_SUBFEATURE_TEMP_MAX);
        s->nr_crit = subfeature_nr(chip, f, SENSORS_SUBFEATURE_TEMP_CRIT);
        s->nr_fault = subfeature_nr(chip, f, SENSORS_SUBFEATURE_TEMP_FAULT);
        for (size_t i = 0; i < ALARM_KINDS; i++) {
                int nr = subfeature_nr(chip, f, alarm_types[i]);

                if (nr >= 0)
                        s->nr_alarm[s->n_alarm++] = nr;
        }
        sensor_track_init(&s->track);
        return 0;
}

/* Frees what discovery built; copes with a half-built state (counts set by
 * the first pass, arrays not allocated). */
static void forget_sensors(struct sensors_state *st)
{
        for (size_t i = 0; st->sensors && i < st->n_sensors; i++) {
                free(st->sensors[i].label);
                free(st->sensors[i].object);
        }
        free(st->sensors);
        st->sensors = NULL;
        st->n_sensors = 0;
        for (size_t i = 0; st->chip_names && i < st->n_chips; i++)
                free(st->chip_names[i]);
        free(st->chip_names);
        st->chip_names = NULL;
        st->n_chips = 0;
}

/* ---- polling ---- */

static void emit_fault(struct sensors_state *st, const struct temp_sensor *s)
{
        struct event e;

        event_init(&e, "sensor", "sensor-fault", s->object);
        event_add_string(&e, "type", "temp");
        event_add_string(&e, "chip", s->chip_name);
        event_add_string(&e, "label", s->label);
        event_add_string(&e, "feature", s->feature);
        event_add_string(&e, "fault", sensor_fault_to_string(s->track.fault));
        event_add_string(&e, "reason", s->track.reason);
        if (s->has_reading && isfinite(s->reading))
                event_add_number(&e, "reading", s->reading);
        st->emit(&e, st->userdata);
}

static void emit_temperature(struct sensors_state *st, const struct temp_sensor *s)
{
        struct event e;

        event_init(&e, "sensor", "temperature", s->object);
        event_set_value(&e, s->reading, "C");
        event_add_string(&e, "type", "temp");
        event_add_string(&e, "chip", s->chip_name);
        event_add_string(&e, "label", s->label);
        event_add_string(&e, "feature", s->feature);
        if (s->has_max)
                event_add_number(&e, "max", s->max);
        if (s->has_crit)
                event_add_number(&e, "crit", s->crit);
        event_add_number(&e, "alarm", s->alarm ? 1 : 0);
        st->emit(&e, st->userdata);
}

/* Reads a threshold; false when absent, unreadable or not sane. */
static bool read_threshold(const struct sensors_state *st, const struct temp_sensor *s, int nr, double *ret)
{
        double v;

        if (nr < 0 || sensors_get_value(s->chip, nr, &v) < 0 || !sensor_threshold_sane(&st->limits, v))
                return false;
        *ret = v;
        return true;
}

/* Takes one reading into s->track; returns the state before it. */
static enum sensor_state take_reading(struct sensors_state *st, struct temp_sensor *s, uint64_t now_usec)
{
        enum sensor_state before = s->track.state;
        char reason[SENSOR_REASON_MAX];
        double v, flag;
        int r;

        r = sensors_get_value(s->chip, s->nr_input, &v);
        s->has_reading = r == 0;
        s->reading = r == 0 ? v : NAN;
        /* The chip's own verdict first: an open diode may still read a
         * plausible number. */
        if (s->nr_fault >= 0 && sensors_get_value(s->chip, s->nr_fault, &flag) == 0 && flag != 0) {
                snprintf(reason, sizeof reason, "the chip flags the sensor as faulty (%s_fault = %g)", s->feature,
                         flag);
                sensor_track_fail(&s->track, SENSOR_FAULT_HARDWARE, reason);
        } else if (r < 0) {
                snprintf(reason, sizeof reason, "cannot read %s_input: %s", s->feature, sensors_strerror(r));
                sensor_track_fail(&s->track, SENSOR_FAULT_READ_ERROR, reason);
        } else
                sensor_track_reading(&s->track, &st->limits, v, now_usec);
        return before;
}

static void poll_one(struct sensors_state *st, struct temp_sensor *s, uint64_t now_usec)
{
        enum sensor_state before = take_reading(st, s, now_usec);
        enum sensor_state after = s->track.state;
        double v;

        s->has_max = read_threshold(st, s, s->nr_max, &s->max);
        s->has_crit = read_threshold(st, s, s->nr_crit, &s->crit);
        s->alarm = false;
        for (size_t i = 0; i < s->n_alarm; i++)
                if (sensors_get_value(s->chip, s->nr_alarm[i], &v) == 0 && v != 0)
                        s->alarm = true;

        /* A sensor found sane on the first poll is the normal case, not news. */
        if (after == SENSOR_STATE_FAULTY && before != SENSOR_STATE_FAULTY)
                log_warning("sensors: %s: %s -> faulty (%s)", s->object, sensor_state_to_string(before),
                            s->track.reason);
        else if (after == SENSOR_STATE_SANE && before == SENSOR_STATE_FAULTY)
                log_notice("sensors: %s: faulty -> sane (reads %g °C)", s->object, s->reading);

        if (after == SENSOR_STATE_SANE)
                emit_temperature(st, s);
        else
                emit_fault(st, s);
}

static uint64_t poll_timer(struct loop_source *src, uint64_t now_mono_usec, void *userdata)
{
        struct sensors_state *st = userdata;
        uint64_t now = boottime_usec();

        (void)src;
        (void)now_mono_usec;
        for (size_t i = 0; i < st->n_sensors; i++)
                poll_one(st, &st->sensors[i], now);
        st->polls++;
        st->last_poll_wall_usec = time_wall_usec();
        return st->interval_usec;
}

/* ---- collector_ops ---- */

static void parse_error(const char *err, const char *filename, int lineno)
{
        log_warning("sensors: %s:%d: %s", filename ? filename : "libsensors configuration", lineno, err);
}

static int errno_from_sensors(int r)
{
        switch (abs(r)) {
        case SENSORS_ERR_PARSE:
                return -EINVAL;
        case SENSORS_ERR_KERNEL:
                return -ENODEV;
        default:
                return -EIO;
        }
}

static void sensors_state_stop(void *userdata)
{
        struct sensors_state *st = userdata;

        if (!st || !st->started)
                return;
        loop_remove(st->timer);
        st->timer = NULL;
        forget_sensors(st);
        sensors_cleanup();
        st->started = false;
}

static int sensors_state_start(void *userdata, struct loop *loop, collector_emit_fn emit, void *emit_userdata)
{
        struct sensors_state *st = userdata;
        uint64_t jitter;
        int r;

        if (st->started)
                return -EALREADY;
        sensors_parse_error_wfn = parse_error;
        r = sensors_init(NULL);
        if (r != 0)
                return errno_from_sensors(r);

        st->n_chips = st->n_sensors = st->n_ignored = 0;
        r = for_each_temp(st, count_one);
        if (r < 0)
                goto fail;
        st->sensors = xcalloc(st->n_sensors, sizeof *st->sensors);
        st->chip_names = xcalloc(st->n_chips, sizeof *st->chip_names);
        st->n_chips = st->n_sensors = 0;
        if (!st->sensors || !st->chip_names) {
                r = -ENOMEM;
                goto fail;
        }
        r = for_each_temp(st, add_one);
        if (r < 0)
                goto fail;

        st->emit = emit;
        st->userdata = emit_userdata;
        st->polls = 0;
        st->last_poll_wall_usec = 0;
        if (st->n_sensors > 0) {
                jitter = st->interval_usec / 20;
                if (jitter > MAX_JITTER_USEC)
                        jitter = MAX_JITTER_USEC;
                r = loop_add_timer(loop, FIRST_POLL_USEC, jitter, "sensors", poll_timer, st, &st->timer);
                if (r < 0)
                        goto fail;
        }
        st->started = true;

        if (st->n_sensors == 0 && st->n_globs == 0)
                log_info("sensors: no temperature sensors found (libsensors saw %u chips)", st->chips_seen);
        else if (st->n_sensors == 0)
                log_info("sensors: no temperature sensors found (libsensors saw %u chips, none matching '%s')",
                         st->chips_seen, st->chips_setting);
        else
                log_info("sensors: watching %zu temperature sensors on %zu chips every %.3gs", st->n_sensors,
                         st->n_chips, (double)st->interval_usec / 1e6);
        if (st->n_ignored > 0)
                log_warning("sensors: more than %d temperature sensors, ignoring the last %zu", SENSORS_TRACKED_MAX,
                            st->n_ignored);
        return 0;

fail:
        forget_sensors(st);
        sensors_cleanup();
        return r;
}

static cJSON *sensor_status(const struct temp_sensor *s)
{
        cJSON *o = cJSON_CreateObject();
        bool ok;

        if (!o)
                return NULL;
        ok = cJSON_AddStringToObject(o, "chip", s->chip_name) && cJSON_AddStringToObject(o, "label", s->label) &&
             cJSON_AddStringToObject(o, "feature", s->feature) &&
             (s->has_reading && isfinite(s->reading) ? cJSON_AddNumberToObject(o, "reading", s->reading)
                                                     : cJSON_AddNullToObject(o, "reading")) &&
             (s->has_max ? cJSON_AddNumberToObject(o, "max", s->max) : cJSON_AddNullToObject(o, "max")) &&
             (s->has_crit ? cJSON_AddNumberToObject(o, "crit", s->crit) : cJSON_AddNullToObject(o, "crit")) &&
             cJSON_AddBoolToObject(o, "alarm", s->alarm) &&
             cJSON_AddStringToObject(o, "state", sensor_state_to_string(s->track.state)) &&
             (s->track.state == SENSOR_STATE_FAULTY ? cJSON_AddStringToObject(o, "reason", s->track.reason)
                                                    : cJSON_AddNullToObject(o, "reason"));
        if (!ok) {
                cJSON_Delete(o);
                return NULL;
        }
        return o;
}

static cJSON *sensors_state_status(void *userdata, bool verbose)
{
        const struct sensors_state *st = userdata;
        cJSON *o = cJSON_CreateObject(), *list;
        size_t faulty = 0;

        (void)verbose;
        char when[32];
        bool ok;

        if (!o)
                return NULL;
        for (size_t i = 0; i < st->n_sensors; i++)
                if (st->sensors[i].track.state == SENSOR_STATE_FAULTY)
                        faulty++;
        ok = cJSON_AddBoolToObject(o, "started", st->started) &&
             cJSON_AddNumberToObject(o, "interval_sec", (double)st->interval_usec / 1e6) &&
             cJSON_AddNumberToObject(o, "max_jump_c_per_s", st->limits.max_jump_c_per_s) &&
             (st->chips_setting ? cJSON_AddStringToObject(o, "chips_filter", st->chips_setting)
                                : cJSON_AddNullToObject(o, "chips_filter")) &&
             cJSON_AddNumberToObject(o, "chips_seen", st->chips_seen) &&
             cJSON_AddNumberToObject(o, "chips", (double)st->n_chips) &&
             cJSON_AddNumberToObject(o, "sensors", (double)st->n_sensors) &&
             cJSON_AddNumberToObject(o, "sensors_ignored", (double)st->n_ignored) &&
             cJSON_AddNumberToObject(o, "faulty", (double)faulty) &&
             cJSON_AddNumberToObject(o, "polls", (double)st->polls) &&
             (st->polls > 0 ? cJSON_AddStringToObject(o, "last_poll",
                                                      time_format_rfc3339(st->last_poll_wall_usec, when, sizeof when))
                            : cJSON_AddNullToObject(o, "last_poll"));
        list = ok ? cJSON_AddArrayToObject(o, "entries") : NULL;
        if (!list)
                goto fail;
        for (size_t i = 0; i < st->n_sensors; i++) {
                cJSON *e = sensor_status(&st->sensors[i]);

                if (!e || !cJSON_AddItemToArray(list, e)) {
                        cJSON_Delete(e);
                        goto fail;
                }
        }
        return o;

fail:
        cJSON_Delete(o);
        return NULL;
}

static void sensors_state_free(void *userdata)
{
        struct sensors_state *st = userdata;

        if (!st)
                return;
        sensors_state_stop(st);
        free(st->chips_setting);
        free(st->globs_buf);
        free(st);
}

const struct collector_ops sensors_collector_ops = {
        .name = "sensors",
        .default_enabled = true,
        .new = sensors_state_new,
        .start = sensors_state_start,
        .stop = sensors_state_stop,
        .status = sensors_state_status,
        .free = sensors_state_free,
};
