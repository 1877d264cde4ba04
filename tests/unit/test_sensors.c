/* Unit tests for collectors/sensors.c against real libsensors.
 *
 * The collector reads /sys/class/hwmon through libsensors, so the tests that
 * poll build a fake hwmon tree: the process enters a private mount namespace
 * (unshare(CLONE_NEWNS), mounts made private so nothing leaks to the host)
 * and mounts a fresh tmpfs over /sys/class for each test. That needs root;
 * without it those tests skip with a one-line reason, and under CI=true the
 * skip is a failure. Settings and status tests run anywhere. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../agent/loop.h"
#include "../../collectors/collector.h"
#include "../../lib/log.h"
#include "../../lib/xalloc.h"
#include "../../rules/conf.h"

extern const struct collector_ops sensors_collector_ops;

#define OPS (&sensors_collector_ops)
#define EVENTS_MAX 64

/* OPS->new through a pointer: clang-format reads "->new(" as C++'s new. */
static int collector_new(const struct conf_block *b, struct diag *d, void **ret_state)
{
        int (*fn)(const struct conf_block *, const struct collector_context *, struct diag *, void **) = OPS->new;
        static const struct collector_context ctx = {.base_dir = ".", .state_dir = "."};

        return fn(b, &ctx, d, ret_state);
}
#define ATTRS_MAX 16

/* ---- the fake hwmon tree ---- */

static char ns_skip_reason[256]; /* empty when the namespace is usable */
static bool class_mounted;

static void prepare_namespace(void)
{
        if (geteuid() != 0) {
                snprintf(ns_skip_reason, sizeof ns_skip_reason, "not root (a private mount namespace needs it)");
                return;
        }
        if (unshare(CLONE_NEWNS) < 0) {
                snprintf(ns_skip_reason, sizeof ns_skip_reason, "unshare(CLONE_NEWNS): %s", strerror(errno));
                return;
        }
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
                snprintf(ns_skip_reason, sizeof ns_skip_reason, "making mounts private: %s", strerror(errno));
                return;
        }
        if (access("/sys/class", F_OK) < 0)
                snprintf(ns_skip_reason, sizeof ns_skip_reason, "no /sys/class to mount over: %s", strerror(errno));
}

/* Skips (or, under CI=true, fails) the calling test without a namespace. */
static void require_namespace(void)
{
        const char *ci = getenv("CI");

        if (ns_skip_reason[0] == '\0')
                return;
        if (ci && strcmp(ci, "true") == 0)
                fail_msg("CI=true, but the fake hwmon tests cannot run: %s", ns_skip_reason);
        skip();
}

/* A fresh, empty /sys/class/hwmon on a new tmpfs. */
static void fresh_tree(void)
{
        if (class_mounted)
                assert_int_equal(umount2("/sys/class", MNT_DETACH), 0);
        assert_int_equal(mount("weibao-test", "/sys/class", "tmpfs", 0, "mode=0755"), 0);
        class_mounted = true;
        assert_int_equal(mkdir("/sys/class/hwmon", 0755), 0);
}

static void put(const char *dir, const char *file, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Writes one attribute file of /sys/class/hwmon/dir, creating dir. */
static void put(const char *dir, const char *file, const char *fmt, ...)
{
        char path[256];
        va_list ap;
        FILE *f;

        snprintf(path, sizeof path, "/sys/class/hwmon/%s", dir);
        if (mkdir(path, 0755) < 0)
                assert_int_equal(errno, EEXIST);
        snprintf(path, sizeof path, "/sys/class/hwmon/%s/%s", dir, file);
        f = fopen(path, "we");
        assert_non_null(f);
        va_start(ap, fmt);
        vfprintf(f, fmt, ap);
        va_end(ap);
        fputc('\n', f);
        assert_int_equal(fclose(f), 0);
}

static void drop(const char *dir, const char *file)
{
        char path[256];

        snprintf(path, sizeof path, "/sys/class/hwmon/%s/%s", dir, file);
        assert_int_equal(unlink(path), 0);
}

/* Two chips: fakechip with a healthy CPU sensor (max, crit, crit_alarm) and
 * a dead one reading 127 °C; otherchip with an alarm set and an unset max
 * register (127 °C), which must not become a threshold. */
static void standard_tree(void)
{
        fresh_tree();
        put("hwmon0", "name", "fakechip");
        put("hwmon0", "temp1_input", "45000");
        put("hwmon0", "temp1_max", "80000");
        put("hwmon0", "temp1_crit", "95000");
        put("hwmon0", "temp1_label", "CPU Temp");
        put("hwmon0", "temp1_crit_alarm", "0");
        put("hwmon0", "temp2_input", "127000");
        put("hwmon0", "temp2_label", "Dead");
        put("hwmon0", "temp2_fault", "0");
        put("hwmon1", "name", "otherchip");
        put("hwmon1", "temp1_input", "30500");
        put("hwmon1", "temp1_max", "127000");
        put("hwmon1", "temp1_alarm", "1");
}

/* ---- capturing events and log lines ---- */

struct captured {
        char source[32], name[32], object[128];
        bool has_value;
        double value;
        char unit[8];
        size_t n_attrs;
        struct {
                char key[32];
                enum event_attr_type type;
                char str[256];
                double num;
        } attrs[ATTRS_MAX];
};

static struct captured events[EVENTS_MAX];
static size_t n_events;

/* Copies e: its strings are valid only during this call. */
static bool on_event(const struct event *e, void *userdata)
{
        struct captured *c;

        assert_ptr_equal(userdata, &n_events);
        assert_true(n_events < EVENTS_MAX);
        assert_true(e->n_attrs <= ATTRS_MAX);
        c = &events[n_events++];
        memset(c, 0, sizeof *c);
        snprintf(c->source, sizeof c->source, "%s", e->source);
        snprintf(c->name, sizeof c->name, "%s", e->name);
        snprintf(c->object, sizeof c->object, "%s", e->object);
        c->has_value = e->has_value;
        c->value = e->value;
        snprintf(c->unit, sizeof c->unit, "%s", e->unit ? e->unit : "");
        c->n_attrs = e->n_attrs;
        for (size_t i = 0; i < e->n_attrs; i++) {
                snprintf(c->attrs[i].key, sizeof c->attrs[i].key, "%s", e->attrs[i].key);
                c->attrs[i].type = e->attrs[i].type;
                if (e->attrs[i].type == EVENT_ATTR_STRING)
                        snprintf(c->attrs[i].str, sizeof c->attrs[i].str, "%s", e->attrs[i].str);
                else
                        c->attrs[i].num = e->attrs[i].num;
        }
        return true;
}

static const struct captured *find_event(size_t from, const char *name, const char *object)
{
        for (size_t i = from; i < n_events; i++)
                if (strcmp(events[i].name, name) == 0 && strcmp(events[i].object, object) == 0)
                        return &events[i];
        return NULL;
}

static bool has_attr(const struct captured *c, const char *key)
{
        for (size_t i = 0; i < c->n_attrs; i++)
                if (strcmp(c->attrs[i].key, key) == 0)
                        return true;
        return false;
}

static const char *attr_str(const struct captured *c, const char *key)
{
        for (size_t i = 0; i < c->n_attrs; i++)
                if (strcmp(c->attrs[i].key, key) == 0) {
                        assert_int_equal(c->attrs[i].type, EVENT_ATTR_STRING);
                        return c->attrs[i].str;
                }
        fail_msg("event %s %s has no attribute %s", c->name, c->object, key);
        return NULL;
}

static double attr_num(const struct captured *c, const char *key)
{
        for (size_t i = 0; i < c->n_attrs; i++)
                if (strcmp(c->attrs[i].key, key) == 0) {
                        assert_int_equal(c->attrs[i].type, EVENT_ATTR_NUMBER);
                        return c->attrs[i].num;
                }
        fail_msg("event %s %s has no attribute %s", c->name, c->object, key);
        return NAN;
}

static int saved_stderr = -1;
static char log_path[] = "/tmp/weibao-test-sensors-log-XXXXXX";

/* Sends stderr (where the logger writes) to a file until log_end(). */
static void log_begin(void)
{
        int fd = mkstemp(log_path);

        assert_true(fd >= 0);
        fflush(stderr);
        saved_stderr = dup(2);
        assert_true(saved_stderr >= 0);
        assert_true(dup2(fd, 2) == 2);
        close(fd);
}

/* Restores stderr and returns what was logged (static buffer). */
static const char *log_end(void)
{
        static char buf[8192];
        ssize_t n;
        int fd;

        fflush(stderr);
        assert_true(dup2(saved_stderr, 2) == 2);
        close(saved_stderr);
        saved_stderr = -1;
        fd = open(log_path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        n = read(fd, buf, sizeof buf - 1);
        assert_true(n >= 0);
        buf[n] = '\0';
        close(fd);
        unlink(log_path);
        strcpy(log_path + strlen(log_path) - 6, "XXXXXX");
        return buf;
}

/* ---- settings through the real config parser ---- */

static struct config *cfg;
static struct diag *diags; /* the latest fresh_diag(); teardown frees it */

static struct diag *fresh_diag(void)
{
        diag_free(diags);
        diags = diag_new();
        assert_non_null(diags);
        return diags;
}

/* Loads a config whose sensors block holds settings and returns the block
 * (valid until the next call or teardown). */
static const struct conf_block *sensors_block(const char *settings)
{
        struct diag *d = fresh_diag();
        const struct conf_block *b;
        char text[1024];

        config_free(cfg);
        cfg = NULL;
        snprintf(text, sizeof text,
                 "central {\n"
                 "    url \"http://127.0.0.1:9\"\n"
                 "    token_file \"/dev/null\"\n"
                 "}\n"
                 "collector sensors {\n"
                 "%s\n"
                 "}\n",
                 settings);
        if (config_load_string("test.conf", text, &cfg, d) < 0) {
                diag_print(d, stderr);
                fail_msg("loading the test config failed");
        }
        b = config_find_collector(cfg, "sensors");
        assert_non_null(b);
        return b;
}

/* ---- running the collector ---- */

/* The collector under test; teardown frees it, so a failed assertion in
 * the middle of a test does not leave libsensors initialised for the next. */
struct run {
        struct loop *loop;
        void *state;
};

static struct run cur;

static void run_start(struct run *r, const struct conf_block *block)
{
        struct diag *d = fresh_diag();

        n_events = 0;
        assert_int_equal(loop_new(&r->loop), 0);
        if (collector_new(block, d, &r->state) < 0) {
                diag_print(d, stderr);
                fail_msg("new failed");
        }
        assert_int_equal(OPS->start(r->state, r->loop, on_event, &n_events), 0);
}

/* Runs the loop until at least want events arrived in total (5 s at most). */
static void run_until(struct run *r, size_t want)
{
        for (int i = 0; i < 100 && n_events < want; i++)
                assert_true(loop_run_once(r->loop, 50000) >= 0);
        assert_true(n_events >= want);
}

static void run_finish(struct run *r)
{
        OPS->free(r->state); /* stops first */
        loop_free(r->loop);
        r->state = NULL;
        r->loop = NULL;
}

static cJSON *entry_for(cJSON *status, const char *chip, const char *label)
{
        cJSON *e;

        cJSON_ArrayForEach(e, cJSON_GetObjectItem(status, "entries"))
        {
                if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(e, "chip")), chip) == 0 &&
                    strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(e, "label")), label) == 0)
                        return e;
        }
        fail_msg("no status entry for %s/%s", chip, label);
        return NULL;
}

static double num_item(const cJSON *o, const char *key)
{
        const cJSON *i = cJSON_GetObjectItem(o, key);

        assert_true(cJSON_IsNumber(i));
        return i->valuedouble;
}

/* ---- tests that need no namespace ---- */

static void test_defaults_without_block(void **state)
{
        void *st = NULL;
        struct diag *d = fresh_diag();
        cJSON *s;

        (void)state;
        assert_int_equal(collector_new(NULL, d, &st), 0);
        assert_int_equal(diag_count(d), 0);
        assert_string_equal(OPS->name, "sensors");
        assert_true(OPS->default_enabled);
        OPS->stop(st); /* not started: nothing to do */
        s = OPS->status(st, false);
        assert_non_null(s);
        assert_true(cJSON_IsFalse(cJSON_GetObjectItem(s, "started")));
        assert_true(num_item(s, "interval_sec") == 10);
        assert_true(num_item(s, "max_jump_c_per_s") == 20);
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(s, "chips_filter")));
        assert_true(num_item(s, "sensors") == 0);
        assert_true(num_item(s, "polls") == 0);
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(s, "last_poll")));
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(s, "entries")), 0);
        cJSON_Delete(s);
        OPS->free(st);
        OPS->free(NULL);
}

static void test_settings(void **state)
{
        const struct conf_block *b = sensors_block("interval 250ms\nmax_jump 5\nchips \"coretemp-* , nvme-*\"");
        void *st = NULL;
        cJSON *s;

        (void)state;
        assert_int_equal(collector_new(b, fresh_diag(), &st), 0);
        s = OPS->status(st, false);
        assert_true(num_item(s, "interval_sec") == 0.25);
        assert_true(num_item(s, "max_jump_c_per_s") == 5);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(s, "chips_filter")), "coretemp-* , nvme-*");
        cJSON_Delete(s);
        OPS->free(st);
}

static void expect_bad(const char *settings, const char *message)
{
        const struct conf_block *b = sensors_block(settings);
        struct diag *d = fresh_diag();
        void *st = NULL;
        bool found = false;

        assert_non_null(b);
        assert_true(collector_new(b, d, &st) < 0);
        assert_null(st);
        for (size_t i = 0; i < diag_count(d); i++)
                if (strstr(diag_get(d, i), message))
                        found = true;
        if (!found) {
                diag_print(d, stderr);
                fail_msg("no diagnostic containing '%s'", message);
        }
}

static void test_bad_settings(void **state)
{
        (void)state;
        expect_bad("interval 10ms", "interval must be between 100ms and 1d");
        expect_bad("interval 2d", "interval must be between 100ms and 1d");
        expect_bad("max_jump 0", "max_jump must be a positive number");
        expect_bad("max_jump -3", "max_jump must be a positive number");
        expect_bad("chips \" , \"", "chips: no pattern given");
        expect_bad("chips \"a b c d e f g h i j k l m n o p q r s t u v w x y z 1 2 3 4 5 6 7\"",
                   "chips: more than 32 patterns");
        expect_bad("colour blue", "colour");
}

/* ---- tests on a fake hwmon tree ---- */

static void test_no_chips(void **state)
{
        const char *log;
        cJSON *s;

        (void)state;
        require_namespace();
        fresh_tree();
        log_begin();
        run_start(&cur, NULL);
        log = log_end();
        assert_non_null(strstr(log, "sensors: no temperature sensors found (libsensors saw 0 chips)"));
        /* Nothing to poll: no timer either. */
        assert_int_equal(loop_source_count(cur.loop), 0);
        s = OPS->status(cur.state, false);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(s, "started")));
        assert_true(num_item(s, "chips_seen") == 0);
        assert_true(num_item(s, "sensors") == 0);
        cJSON_Delete(s);
        run_finish(&cur);

        /* A chip without temperatures counts as seen, not as a sensor. */
        put("hwmon0", "name", "fanchip");
        put("hwmon0", "fan1_input", "1200");
        log_begin();
        run_start(&cur, NULL);
        log = log_end();
        assert_non_null(strstr(log, "sensors: no temperature sensors found (libsensors saw 1 chips)"));
        run_finish(&cur);
}

static void test_first_poll(void **state)
{
        const struct captured *c;
        const char *log;
        cJSON *s, *e;

        (void)state;
        require_namespace();
        standard_tree();
        log_begin();
        run_start(&cur, NULL);
        run_until(&cur, 3);
        log = log_end();
        assert_int_equal(n_events, 3);
        assert_non_null(strstr(log, "sensors: watching 3 temperature sensors on 2 chips every 10s"));
        assert_non_null(
                strstr(log, "sensors: fakechip-virtual-0/Dead: unknown -> faulty (reads 127 °C, a value dead sensors "
                            "report)"));
        assert_null(strstr(log, "CPU Temp")); /* sane at start is not news */

        c = find_event(0, "temperature", "fakechip-virtual-0/CPU Temp");
        assert_non_null(c);
        assert_string_equal(c->source, "sensor");
        assert_true(c->has_value);
        assert_true(c->value == 45.0);
        assert_string_equal(c->unit, "C");
        assert_string_equal(attr_str(c, "type"), "temp");
        assert_string_equal(attr_str(c, "chip"), "fakechip-virtual-0");
        assert_string_equal(attr_str(c, "label"), "CPU Temp");
        assert_string_equal(attr_str(c, "feature"), "temp1");
        assert_true(attr_num(c, "max") == 80.0);
        assert_true(attr_num(c, "crit") == 95.0);
        assert_true(attr_num(c, "alarm") == 0);

        c = find_event(0, "sensor-fault", "fakechip-virtual-0/Dead");
        assert_non_null(c);
        assert_string_equal(c->source, "sensor");
        assert_false(c->has_value);
        assert_string_equal(attr_str(c, "type"), "temp");
        assert_string_equal(attr_str(c, "chip"), "fakechip-virtual-0");
        assert_string_equal(attr_str(c, "label"), "Dead");
        assert_string_equal(attr_str(c, "feature"), "temp2");
        assert_string_equal(attr_str(c, "fault"), "dead-value");
        assert_string_equal(attr_str(c, "reason"), "reads 127 °C, a value dead sensors report");
        assert_true(attr_num(c, "reading") == 127.0);
        assert_null(find_event(0, "temperature", "fakechip-virtual-0/Dead"));

        /* No label file: libsensors names it after the feature. An unset
         * max register (127 °C) is no threshold; the alarm flag is. */
        c = find_event(0, "temperature", "otherchip-virtual-0/temp1");
        assert_non_null(c);
        assert_true(c->value == 30.5);
        assert_false(has_attr(c, "max"));
        assert_false(has_attr(c, "crit"));
        assert_true(attr_num(c, "alarm") == 1);

        s = OPS->status(cur.state, false);
        assert_non_null(s);
        assert_true(num_item(s, "chips_seen") == 2);
        assert_true(num_item(s, "chips") == 2);
        assert_true(num_item(s, "sensors") == 3);
        assert_true(num_item(s, "faulty") == 1);
        assert_true(num_item(s, "polls") == 1);
        assert_true(cJSON_IsString(cJSON_GetObjectItem(s, "last_poll")));
        e = entry_for(s, "fakechip-virtual-0", "CPU Temp");
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(e, "state")), "sane");
        assert_true(num_item(e, "reading") == 45);
        assert_true(num_item(e, "max") == 80);
        assert_true(num_item(e, "crit") == 95);
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(e, "reason")));
        e = entry_for(s, "fakechip-virtual-0", "Dead");
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(e, "state")), "faulty");
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(e, "reason")),
                            "reads 127 °C, a value dead sensors report");
        e = entry_for(s, "otherchip-virtual-0", "temp1");
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(e, "max")));
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(e, "alarm")));
        cJSON_Delete(s);
        run_finish(&cur);
}

static void test_polls_follow_the_tree(void **state)
{
        const struct conf_block *b;
        const struct captured *c;
        const char *log;
        size_t mark;

        (void)state;
        require_namespace();
        standard_tree();
        b = sensors_block("interval 200ms");
        assert_non_null(b);
        run_start(&cur, b);
        run_until(&cur, 3);

        /* Poll 2: the CPU crosses crit with the alarm raised, the dead
         * sensor comes back, otherchip's input disappears. */
        put("hwmon0", "temp1_input", "56000");
        put("hwmon0", "temp1_crit_alarm", "1");
        put("hwmon0", "temp2_input", "41000");
        drop("hwmon1", "temp1_input");
        mark = n_events;
        log_begin();
        run_until(&cur, mark + 3);
        log = log_end();
        c = find_event(mark, "temperature", "fakechip-virtual-0/CPU Temp");
        assert_non_null(c);
        assert_true(c->value == 56.0);
        assert_true(attr_num(c, "alarm") == 1);
        c = find_event(mark, "temperature", "fakechip-virtual-0/Dead");
        assert_non_null(c);
        assert_true(c->value == 41.0);
        assert_false(has_attr(c, "max"));
        c = find_event(mark, "sensor-fault", "otherchip-virtual-0/temp1");
        assert_non_null(c);
        assert_string_equal(attr_str(c, "fault"), "read-error");
        assert_non_null(strstr(attr_str(c, "reason"), "cannot read temp1_input: "));
        assert_false(has_attr(c, "reading"));
        assert_non_null(strstr(log, "sensors: fakechip-virtual-0/Dead: faulty -> sane (reads 41 °C)"));
        assert_non_null(strstr(log, "sensors: otherchip-virtual-0/temp1: sane -> faulty (cannot read temp1_input"));

        /* Poll 3: a 50 °C step within a fraction of a second is no real
         * temperature; the fault repeats, but is logged once. */
        put("hwmon0", "temp1_input", "106000");
        mark = n_events;
        log_begin();
        run_until(&cur, mark + 3);
        c = find_event(mark, "sensor-fault", "fakechip-virtual-0/CPU Temp");
        assert_non_null(c);
        assert_string_equal(attr_str(c, "fault"), "jump");
        assert_true(attr_num(c, "reading") == 106.0);
        assert_null(find_event(mark, "temperature", "fakechip-virtual-0/CPU Temp"));
        assert_non_null(find_event(mark, "sensor-fault", "otherchip-virtual-0/temp1"));
        log = log_end();
        assert_non_null(strstr(log, "sensors: fakechip-virtual-0/CPU Temp: sane -> faulty (jumped from 56 to 106 °C"));
        assert_null(strstr(log, "otherchip"));

        /* Poll 4: the same 106 °C again confirms the step as real; the
         * hardware fault flag wins over a plausible reading. */
        put("hwmon0", "temp2_fault", "1");
        mark = n_events;
        log_begin();
        run_until(&cur, mark + 3);
        log = log_end();
        c = find_event(mark, "temperature", "fakechip-virtual-0/CPU Temp");
        assert_non_null(c);
        assert_true(c->value == 106.0);
        assert_non_null(strstr(log, "sensors: fakechip-virtual-0/CPU Temp: faulty -> sane (reads 106 °C)"));
        c = find_event(mark, "sensor-fault", "fakechip-virtual-0/Dead");
        assert_non_null(c);
        assert_string_equal(attr_str(c, "fault"), "hardware");
        assert_string_equal(attr_str(c, "reason"), "the chip flags the sensor as faulty (temp2_fault = 1)");
        assert_true(attr_num(c, "reading") == 41.0);
        assert_non_null(strstr(log, "sensors: fakechip-virtual-0/Dead: sane -> faulty (the chip flags"));
}

static void test_chips_filter(void **state)
{
        const struct conf_block *b;
        const char *log;

        (void)state;
        require_namespace();
        standard_tree();
        b = sensors_block("chips \"other*\"");
        assert_non_null(b);
        run_start(&cur, b);
        run_until(&cur, 1);
        assert_int_equal(loop_run_once(cur.loop, 100000), 0); /* the next poll is 10 s away */
        assert_int_equal(n_events, 1);
        assert_string_equal(events[0].object, "otherchip-virtual-0/temp1");
        run_finish(&cur);

        b = sensors_block("chips \"nvme-* coretemp-*\"");
        assert_non_null(b);
        log_begin();
        run_start(&cur, b);
        log = log_end();
        assert_non_null(strstr(
                log,
                "sensors: no temperature sensors found (libsensors saw 2 chips, none matching 'nvme-* coretemp-*')"));
        run_finish(&cur);
}

/* Start and stop leave libsensors as they found it: a restart sees a new tree. */
static void test_restart(void **state)
{

        (void)state;
        require_namespace();
        standard_tree();
        run_start(&cur, NULL);
        assert_int_equal(OPS->start(cur.state, cur.loop, on_event, &n_events), -EALREADY);
        run_until(&cur, 3);
        OPS->stop(cur.state);
        OPS->stop(cur.state);
        assert_int_equal(loop_source_count(cur.loop), 0);
        put("hwmon2", "name", "thirdchip");
        put("hwmon2", "temp1_input", "20000");
        n_events = 0;
        assert_int_equal(OPS->start(cur.state, cur.loop, on_event, &n_events), 0);
        run_until(&cur, 4);
        assert_non_null(find_event(0, "temperature", "thirdchip-virtual-0/temp1"));
        run_finish(&cur);
}

/* Every allocation in start may fail: start then returns -ENOMEM, leaves
 * nothing registered and leaks nothing (ASan builds check the latter). */
static void test_start_allocation_failures(void **state)
{
        unsigned long n;
        int r = -ENOMEM;

        (void)state;
        require_namespace();
        standard_tree();
        assert_int_equal(loop_new(&cur.loop), 0);
        assert_int_equal(collector_new(NULL, NULL, &cur.state), 0);
        for (n = 1; n < 200 && r < 0; n++) {
                xalloc_fail_at(n);
                r = OPS->start(cur.state, cur.loop, on_event, &n_events);
                xalloc_fail_at(0);
                if (r < 0) {
                        assert_int_equal(r, -ENOMEM);
                        assert_int_equal(loop_source_count(cur.loop), 0);
                        OPS->stop(cur.state);
                }
        }
        assert_int_equal(r, 0);
        /* Two chips and three sensors take well over ten allocations. */
        assert_true(n > 10);
        n_events = 0;
        run_until(&cur, 3);
        assert_int_equal(n_events, 3);
}

/* Undoes whatever a failed test left behind. */
static int teardown(void **state)
{
        (void)state;
        if (saved_stderr >= 0)
                log_end();
        run_finish(&cur);
        config_free(cfg);
        cfg = NULL;
        diag_free(diags);
        diags = NULL;
        return 0;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_teardown(test_defaults_without_block, teardown),
                cmocka_unit_test_teardown(test_settings, teardown),
                cmocka_unit_test_teardown(test_bad_settings, teardown),
                cmocka_unit_test_teardown(test_no_chips, teardown),
                cmocka_unit_test_teardown(test_first_poll, teardown),
                cmocka_unit_test_teardown(test_polls_follow_the_tree, teardown),
                cmocka_unit_test_teardown(test_chips_filter, teardown),
                cmocka_unit_test_teardown(test_restart, teardown),
                cmocka_unit_test_teardown(test_start_allocation_failures, teardown),
        };

        log_init("test_sensors");
        prepare_namespace();
        if (ns_skip_reason[0])
                printf("test_sensors: fake hwmon tests skip: %s\n", ns_skip_reason);
        return cmocka_run_group_tests_name("sensors", tests, NULL, NULL);
}
