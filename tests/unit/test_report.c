/* Unit tests for lib/report.c: a synthetic snapshot with 90 days of hourly
 * history for 12 sensor series and a hostile fault title renders as one page
 * holding the host, one <svg> per chart, the title escaped, no script and a
 * bounded size; malformed members are shown empty, never trusted; allocation
 * failures return -ENOMEM without leaking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../lib/report.h"
#include "../../lib/xalloc.h"

#define SERIES 12
#define DAYS 90

static const char hostile[] = "<script>alert(1)</script> & \"fan\"";

static void iso(time_t t, char *buf, size_t size)
{
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A snapshot as agent/snapshot.c makes one, with hourly points for DAYS days
 * and one day of minutes per series; the first series has thresholds. */
static cJSON *make_snapshot(time_t now, bool heartbeat)
{
        cJSON *s = cJSON_CreateObject(), *ag, *hist, *series, *events, *faults, *dt, *outages, *o, *q;
        char buf[64];

        assert_non_null(s);
        cJSON_AddNumberToObject(s, "version", 1);
        iso(now, buf, sizeof buf);
        cJSON_AddStringToObject(s, "generated_at", buf);
        iso(now - DAYS * 86400, buf, sizeof buf);
        cJSON_AddStringToObject(s, "since", buf);
        ag = cJSON_AddObjectToObject(s, "agent");
        cJSON_AddStringToObject(ag, "id", "agent-0001");
        cJSON_AddStringToObject(ag, "hostname", "db01.example");
        cJSON_AddStringToObject(ag, "os", "Debian GNU/Linux 12 (bookworm)");
        cJSON_AddStringToObject(ag, "kernel", "6.1.0-18-amd64");
        cJSON_AddStringToObject(ag, "hw_vendor", "Dell Inc.");
        cJSON_AddStringToObject(ag, "hw_model", "<b>R650</b>");
        cJSON_AddNumberToObject(ag, "cpus", 8);
        cJSON_AddNumberToObject(ag, "memory_bytes", 34359738368.0);
        cJSON_AddNumberToObject(cJSON_AddObjectToObject(s, "host"), "uptime_s", 86400 * 3 + 5);
        cJSON_AddStringToObject(cJSON_AddObjectToObject(s, "config"), "digest", "fnv1a64:0123456789abcdef");
        hist = cJSON_AddObjectToObject(s, "history");
        series = cJSON_AddArrayToObject(hist, "series");
        for (int k = 0; k < SERIES + (heartbeat ? 1 : 0); k++) {
                cJSON *x = cJSON_CreateObject(), *hourly, *minutes, *sum;
                cJSON_AddItemToArray(series, x);
                cJSON_AddStringToObject(x, "source", k < SERIES ? "sensor" : "heartbeat");
                snprintf(buf, sizeof buf, "temp%d", k + 1);
                cJSON_AddStringToObject(x, "name", k < SERIES ? buf : "loss");
                cJSON_AddStringToObject(x, "object", "coretemp-isa-0000");
                cJSON_AddStringToObject(x, "unit", k < SERIES ? "C" : "%");
                sum = cJSON_AddObjectToObject(x, "summary");
                cJSON_AddNumberToObject(sum, "min", 30);
                cJSON_AddNumberToObject(sum, "avg", 45);
                cJSON_AddNumberToObject(sum, "max", 70);
                cJSON_AddNumberToObject(sum, "readings", DAYS * 24 * 60);
                if (k == 0) {
                        cJSON *th = cJSON_AddObjectToObject(x, "thresholds");
                        cJSON_AddNumberToObject(th, "max", 80);
                        cJSON_AddNumberToObject(th, "crit", 95);
                }
                hourly = cJSON_AddArrayToObject(x, "hourly");
                for (int h = 0; h < DAYS * 24; h++) {
                        double t = (double)(now - DAYS * 86400 + h * 3600), v = 40 + (h % 24);
                        double p[4] = {t, v - 2, v, v + 3};
                        cJSON_AddItemToArray(hourly, cJSON_CreateDoubleArray(p, 4));
                }
                minutes = cJSON_AddArrayToObject(x, "minutes");
                for (int m = 0; m < 24 * 60; m++) {
                        double p[4] = {(double)(now - 86400 + m * 60), 40, 41, 42};
                        cJSON_AddItemToArray(minutes, cJSON_CreateDoubleArray(p, 4));
                }
        }
        events = cJSON_AddArrayToObject(hist, "events");
        for (int i = 0; i < 3; i++) {
                o = cJSON_CreateObject();
                iso(now - (i + 1) * 86400 * 20, buf, sizeof buf);
                cJSON_AddStringToObject(o, "time", buf);
                cJSON_AddStringToObject(o, "kind", i == 1 ? "fault-cleared" : "fault-firing");
                cJSON_AddStringToObject(o, "object", "eth1");
                cJSON_AddItemToArray(events, o);
        }
        faults = cJSON_AddArrayToObject(s, "faults");
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "state", "firing");
        cJSON_AddStringToObject(o, "level", "P2");
        cJSON_AddStringToObject(o, "rule", "link-down");
        cJSON_AddStringToObject(o, "title", hostile);
        cJSON_AddItemToArray(faults, o);
        dt = cJSON_AddObjectToObject(s, "downtime");
        outages = cJSON_AddArrayToObject(dt, "outages");
        o = cJSON_CreateObject();
        iso(now - 86400 * 30, buf, sizeof buf);
        cJSON_AddStringToObject(o, "start", buf);
        iso(now - 86400 * 30 + 7200, buf, sizeof buf);
        cJSON_AddStringToObject(o, "end", buf);
        cJSON_AddFalseToObject(o, "clean");
        cJSON_AddItemToArray(outages, o);
        cJSON_AddNumberToObject(dt, "downtime_s", 7200);
        cJSON_AddNumberToObject(dt, "unclean_s", 7200);
        cJSON_AddNumberToObject(dt, "clean_s", 0);
        q = cJSON_CreateObject();
        cJSON_AddStringToObject(q, "quarter", "2026-Q4");
        cJSON_AddNumberToObject(q, "warranty_days", 0);
        cJSON_AddItemToArray(cJSON_AddArrayToObject(dt, "quarters"), q);
        return s;
}

static size_t count(const char *hay, const char *needle)
{
        size_t n = 0;
        for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
                n++;
        return n;
}

static void test_page(void **state)
{
        (void)state;
        cJSON *s = make_snapshot(time(NULL), true);
        const cJSON *snaps[] = {s};
        char *html = NULL;

        assert_int_equal(report_render_html(snaps, 1, NULL, "Q4 <inspection>", &html), 0);
        assert_non_null(strstr(html, "<!DOCTYPE html>"));
        assert_non_null(strstr(html, "db01.example"));
        assert_non_null(strstr(html, "agent-0001"));
        assert_non_null(strstr(html, "Q4 &lt;inspection&gt;"));
        /* 12 temperatures, 1 heartbeat, outages, faults. */
        assert_int_equal(count(html, "<svg"), SERIES + 1 + 2);
        assert_int_equal(count(html, "</svg>"), SERIES + 1 + 2);
        assert_non_null(strstr(html, "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;fan&quot;"));
        assert_non_null(strstr(html, "&lt;b&gt;R650&lt;/b&gt;"));
        assert_null(strstr(html, "<script"));
        assert_null(strstr(html, "<b>"));
        /* Nothing loaded from elsewhere. */
        assert_null(strstr(html, "src="));
        assert_null(strstr(html, "href="));
        assert_null(strstr(html, "url("));
        /* The thresholds of the first series are drawn. */
        assert_int_equal(count(html, "<line class=\"crit\""), 1);
        assert_int_equal(count(html, "<line class=\"max\""), 1);
        assert_int_equal(count(html, "<rect class=\"unclean\""), 1);
        assert_int_equal(count(html, "<line class=\"firing\""), 2);
        assert_int_equal(count(html, "<line class=\"cleared\""), 1);
        /* Bounded: 2 lines of at most REPORT_CHART_POINTS points per series. */
        assert_true(count(html, ",") < (SERIES + 1) * 2 * (REPORT_CHART_POINTS + 1) + 200);
        print_message("page of %d series over %d days: %zu bytes\n", SERIES + 1, DAYS, strlen(html));
        assert_true(strlen(html) < 1024 * 1024);
        free(html);
        cJSON_Delete(s);
}

static void test_cases_and_hosts(void **state)
{
        (void)state;
        time_t now = time(NULL);
        cJSON *a = make_snapshot(now, false), *b = make_snapshot(now, false);
        cJSON *cases = cJSON_CreateArray(), *c = cJSON_CreateObject();
        const cJSON *snaps[] = {a, b};
        char *html = NULL;

        cJSON_ReplaceItemInObject(cJSON_GetObjectItem(b, "agent"), "hostname", cJSON_CreateString("web02"));
        cJSON_ReplaceItemInObject(cJSON_GetObjectItem(b, "agent"), "id", cJSON_CreateString("agent-0002"));
        cJSON_AddNumberToObject(c, "id", 4711);
        cJSON_AddStringToObject(c, "agent_id", "agent-0002");
        cJSON_AddStringToObject(c, "title", "Disk </td> failing");
        cJSON_AddStringToObject(c, "status", "open");
        cJSON_AddItemToArray(cases, c);
        assert_int_equal(report_render_html(snaps, 2, cases, NULL, &html), 0);
        assert_int_equal(count(html, "<section class=\"host\">"), 2);
        assert_int_equal(count(html, "4711"), 1);
        assert_int_equal(count(html, "Disk &lt;/td&gt; failing"), 1);
        assert_non_null(strstr(html, "web02"));
        /* With cases given, the snapshot's faults are not listed instead. */
        assert_null(strstr(html, "&lt;script&gt;"));
        free(html);
        cJSON_Delete(cases);
        cJSON_Delete(a);
        cJSON_Delete(b);
}

static void test_malformed(void **state)
{
        (void)state;
        cJSON *s = cJSON_Parse("{\"agent\":{\"hostname\":7},\"history\":{\"series\":[{\"source\":\"sensor\","
                               "\"hourly\":[[1,\"x\"],3,[2,1,2,3]],\"thresholds\":\"hot\"}],\"events\":{}},"
                               "\"downtime\":{\"outages\":[{\"start\":\"never\"}]},\"since\":\"x\"}");
        const cJSON *snaps[] = {s, NULL};
        char *html = NULL;

        assert_non_null(s);
        assert_int_equal(report_render_html(snaps, 1, NULL, NULL, &html), 0);
        assert_int_equal(count(html, "<svg"), 3);
        free(html);
        html = NULL;
        assert_int_equal(report_render_html(snaps, 2, NULL, NULL, &html), -EINVAL);
        assert_null(html);
        cJSON_Delete(s);
}

static void test_alloc_failure(void **state)
{
        (void)state;
        cJSON *s = make_snapshot(time(NULL), true);
        const cJSON *snaps[] = {s};
        int ok = 0;

        for (unsigned long nth = 1; nth < 40 && !ok; nth++) {
                char *html = NULL;
                xalloc_fail_at(nth);
                int r = report_render_html(snaps, 1, NULL, NULL, &html);
                xalloc_fail_at(0);
                if (r == 0) {
                        ok = 1;
                        free(html);
                } else {
                        assert_int_equal(r, -ENOMEM);
                        assert_null(html);
                }
        }
        assert_true(ok);
        cJSON_Delete(s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_page),
                cmocka_unit_test(test_cases_and_hosts),
                cmocka_unit_test(test_malformed),
                cmocka_unit_test(test_alloc_failure),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
