/* report: renders health snapshots as the inspection report, one HTML page
 * with inline SVG charts and print CSS (a page break per host). Assumptions:
 * snapshots follow docs/snapshot.md version 1 but come from customer
 * machines, so any member may be missing or of the wrong type (it is then
 * shown as empty, never trusted) and every string is escaped. The page needs
 * no JavaScript and loads nothing. Output grows in one bounded buffer: past
 * REPORT_HTML_MAX the render fails rather than cutting the page short. No
 * libm: the programs linking lib/ do not all link it. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "report.h"
#include "xalloc.h"

#define CHART_W 760.0
#define CHART_H 170.0
#define PAD_L 56.0
#define PAD_R 10.0
#define PAD_T 10.0
#define PAD_B 22.0

struct out {
        char *s;
        size_t len, cap;
        int err;
};

static void put_n(struct out *o, const char *s, size_t n)
{
        if (o->err)
                return;
        if (o->len + n + 1 > REPORT_HTML_MAX) {
                o->err = -EFBIG;
                return;
        }
        if (o->len + n + 1 > o->cap) {
                size_t cap = o->cap ? o->cap : 65536;
                while (cap < o->len + n + 1)
                        cap *= 2;
                if (cap > REPORT_HTML_MAX)
                        cap = REPORT_HTML_MAX;
                char *p = xrealloc(o->s, cap);
                if (!p) {
                        o->err = -ENOMEM;
                        return;
                }
                o->s = p;
                o->cap = cap;
        }
        memcpy(o->s + o->len, s, n);
        o->len += n;
        o->s[o->len] = '\0';
}

static void put(struct out *o, const char *s)
{
        put_n(o, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void putf(struct out *o, const char *fmt, ...)
{
        char buf[512];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        /* Only fixed text and numbers go through here; strings from the
         * input go through esc(), so a longer result is a programmer error. */
        if (n < 0 || (size_t)n >= sizeof buf) {
                if (!o->err)
                        o->err = -EINVAL;
                return;
        }
        put_n(o, buf, (size_t)n);
}

/* Escapes s for HTML text and attribute values; NULL prints nothing.
 * Control characters other than tab and newline are dropped. */
static void esc(struct out *o, const char *s)
{
        const char *run = s;

        if (!s)
                return;
        for (; *s; s++) {
                const char *rep = NULL;
                switch (*s) {
                case '<':
                        rep = "&lt;";
                        break;
                case '>':
                        rep = "&gt;";
                        break;
                case '&':
                        rep = "&amp;";
                        break;
                case '"':
                        rep = "&quot;";
                        break;
                case '\'':
                        rep = "&#39;";
                        break;
                default:
                        if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n')
                                rep = "";
                        break;
                }
                if (rep) {
                        put_n(o, run, (size_t)(s - run));
                        put(o, rep);
                        run = s + 1;
                }
        }
        put_n(o, run, (size_t)(s - run));
}

static const cJSON *get(const cJSON *o, const char *key)
{
        return cJSON_GetObjectItemCaseSensitive(o, key);
}

static const char *str(const cJSON *o, const char *key)
{
        const cJSON *v = get(o, key);
        return cJSON_IsString(v) && v->valuestring ? v->valuestring : "";
}

static bool num(const cJSON *o, const char *key, double *ret)
{
        const cJSON *v = get(o, key);
        /* v != v: NaN cannot come from cJSON_Parse but may from a builder. */
        if (!cJSON_IsNumber(v) || v->valuedouble != v->valuedouble)
                return false;
        *ret = v->valuedouble;
        return true;
}

static double num_or(const cJSON *o, const char *key, double dflt)
{
        double v;
        return num(o, key, &v) ? v : dflt;
}

/* RFC 3339 UTC ("2026-11-25T10:00:11.002Z") to Unix seconds; -1 if not one. */
static double parse_time(const char *s)
{
        struct tm tm = {0};
        int n = 0;

        if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                   &tm.tm_sec, &n) != 6 ||
            n == 0)
                return -1;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        return (double)timegm(&tm);
}

static void put_duration(struct out *o, double s)
{
        long long t = s < 0 ? 0 : (long long)s;
        if (t >= 86400)
                putf(o, "%lldd %lldh %lldm", t / 86400, t % 86400 / 3600, t % 3600 / 60);
        else if (t >= 3600)
                putf(o, "%lldh %lldm", t / 3600, t % 3600 / 60);
        else
                putf(o, "%lldm %llds", t / 60, t % 60);
}

static void put_day(struct out *o, double t)
{
        time_t tt = (time_t)t;
        struct tm tm;
        char buf[32];

        if (!gmtime_r(&tt, &tm) || strftime(buf, sizeof buf, "%Y-%m-%d", &tm) == 0)
                return;
        put(o, buf);
}

/* ---- charts ---- */

struct axis {
        double t0, t1, lo, hi;
};

static double x_of(const struct axis *a, double t)
{
        double f = a->t1 > a->t0 ? (t - a->t0) / (a->t1 - a->t0) : 0.5;
        if (f < 0)
                f = 0;
        if (f > 1)
                f = 1;
        return PAD_L + f * (CHART_W - PAD_L - PAD_R);
}

static double y_of(const struct axis *a, double v)
{
        double f = a->hi > a->lo ? (v - a->lo) / (a->hi - a->lo) : 0.5;
        return PAD_T + (1 - f) * (CHART_H - PAD_T - PAD_B);
}

static void chart_open(struct out *o, const char *caption_fixed, const char *caption_input, const char *caption_more,
                       const struct axis *a)
{
        put(o, "<figure><figcaption>");
        put(o, caption_fixed);
        esc(o, caption_input);
        if (*caption_more) {
                put(o, " ");
                esc(o, caption_more);
        }
        putf(o,
             "</figcaption>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
             "viewBox=\"0 0 %.0f %.0f\" role=\"img\">\n",
             CHART_W, CHART_H, CHART_W, CHART_H);
        putf(o, "<rect class=\"frame\" x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\"/>\n", PAD_L, PAD_T,
             CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B);
        putf(o, "<text class=\"tick\" x=\"%.0f\" y=\"%.0f\" text-anchor=\"start\">", PAD_L, CHART_H - 6);
        put_day(o, a->t0);
        putf(o, "</text><text class=\"tick\" x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">", CHART_W - PAD_R, CHART_H - 6);
        put_day(o, a->t1);
        put(o, "</text>\n");
}

static void chart_close(struct out *o)
{
        put(o, "</svg></figure>\n");
}

/* A point [t, min, avg, max] of a history array, false when malformed. */
static bool point(const cJSON *p, double v[4])
{
        if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) < 4)
                return false;
        for (int i = 0; i < 4; i++) {
                const cJSON *x = cJSON_GetArrayItem(p, i);
                if (!cJSON_IsNumber(x) || x->valuedouble != x->valuedouble)
                        return false;
                v[i] = x->valuedouble;
        }
        return true;
}

struct series_pts {
        double (*p)[4];
        size_t n;
};

/* Collects hourly points, then the minutes after the last hour, merged into
 * at most REPORT_CHART_POINTS buckets of equal count (min of mins, mean of
 * avgs, max of maxes). */
static int collect(const cJSON *s, double t0, struct series_pts *ret)
{
        const cJSON *hourly = get(s, "hourly"), *minutes = get(s, "minutes"), *p;
        size_t total = 0, n = 0;
        double last = -1, v[4];
        double(*all)[4];

        total = (size_t)(cJSON_IsArray(hourly) ? cJSON_GetArraySize(hourly) : 0) +
                (size_t)(cJSON_IsArray(minutes) ? cJSON_GetArraySize(minutes) : 0);
        ret->p = NULL;
        ret->n = 0;
        if (total == 0)
                return 0;
        all = xcalloc(total, sizeof *all);
        if (!all)
                return -ENOMEM;
        /* Minutes cover the last day only; drawn where no hour covers them. */
        cJSON_ArrayForEach(p, hourly)
        {
                if (point(p, v) && v[0] >= t0 && v[0] > last) {
                        memcpy(all[n++], v, sizeof v);
                        last = v[0];
                }
        }
        if (n > 0)
                last += 3599;
        cJSON_ArrayForEach(p, minutes)
        {
                if (point(p, v) && v[0] >= t0 && v[0] > last) {
                        memcpy(all[n++], v, sizeof v);
                        last = v[0];
                }
        }
        if (n > REPORT_CHART_POINTS) {
                size_t m = REPORT_CHART_POINTS;
                for (size_t b = 0; b < m; b++) {
                        size_t i0 = b * n / m, i1 = (b + 1) * n / m;
                        double r[4] = {all[i0][0], all[i0][1], 0, all[i0][3]};
                        for (size_t i = i0; i < i1; i++) {
                                r[1] = all[i][1] < r[1] ? all[i][1] : r[1];
                                r[2] += all[i][2];
                                r[3] = all[i][3] > r[3] ? all[i][3] : r[3];
                        }
                        r[2] /= (double)(i1 - i0);
                        memcpy(all[b], r, sizeof r);
                }
                n = m;
        }
        ret->p = all;
        ret->n = n;
        return 0;
}

static void polyline(struct out *o, const char *cls, const struct axis *a, const struct series_pts *sp, int col)
{
        putf(o, "<polyline class=\"%s\" points=\"", cls);
        for (size_t i = 0; i < sp->n; i++)
                putf(o, "%s%.1f,%.1f", i ? " " : "", x_of(a, sp->p[i][0]), y_of(a, sp->p[i][col]));
        put(o, "\"/>\n");
}

/* One chart per series of the source; thresholds drawn as dashed lines. */
static int series_charts(struct out *o, const cJSON *snap, const char *source, const char *what, double t0, double t1,
                         bool *any)
{
        const cJSON *s;

        cJSON_ArrayForEach(s, get(get(snap, "history"), "series"))
        {
                struct series_pts sp;
                struct axis a = {t0, t1, 0, 0};
                double thr[2];
                bool has[2];
                const cJSON *th = get(s, "thresholds");
                int r;

                if (strcmp(str(s, "source"), source) != 0)
                        continue;
                if ((r = collect(s, t0, &sp)) < 0)
                        return r;
                has[0] = num(th, "max", &thr[0]);
                has[1] = num(th, "crit", &thr[1]);
                a.lo = 1e300;
                a.hi = -1e300;
                for (size_t i = 0; i < sp.n; i++) {
                        a.lo = sp.p[i][1] < a.lo ? sp.p[i][1] : a.lo;
                        a.hi = sp.p[i][3] > a.hi ? sp.p[i][3] : a.hi;
                }
                for (int k = 0; k < 2; k++)
                        if (has[k]) {
                                a.lo = thr[k] < a.lo ? thr[k] : a.lo;
                                a.hi = thr[k] > a.hi ? thr[k] : a.hi;
                        }
                if (a.lo > a.hi)
                        a.lo = 0, a.hi = 1;
                {
                        double pad = (a.hi - a.lo) * 0.08 + 0.5;
                        a.lo -= pad;
                        a.hi += pad;
                }
                *any = true;
                put(o, "<div class=\"chart\">");
                chart_open(o, what, str(s, "object"), str(s, "name"), &a);
                putf(o, "<text class=\"tick\" x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.1f</text>", PAD_L - 4,
                     PAD_T + 8, a.hi);
                putf(o, "<text class=\"tick\" x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.1f</text>\n", PAD_L - 4,
                     CHART_H - PAD_B, a.lo);
                for (int k = 0; k < 2; k++)
                        if (has[k]) {
                                double y = y_of(&a, thr[k]);
                                putf(o,
                                     "<line class=\"%s\" x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\"/>"
                                     "<text class=\"tick %s\" x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%s "
                                     "%.1f</text>\n",
                                     k ? "crit" : "max", PAD_L, CHART_W - PAD_R, y, y, k ? "crit" : "max",
                                     CHART_W - PAD_R - 2, y - 3, k ? "crit" : "max", thr[k]);
                        }
                if (sp.n > 0) {
                        polyline(o, "band", &a, &sp, 3);
                        polyline(o, "avg", &a, &sp, 2);
                }
                /* Few points make no visible line: mark each one as well. */
                for (size_t i = 0; sp.n <= 48 && i < sp.n; i++)
                        putf(o, "<circle class=\"pt\" cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\"/>\n", x_of(&a, sp.p[i][0]),
                             y_of(&a, sp.p[i][2]));
                free(sp.p);
                chart_close(o);
                put(o, "<p class=\"legend\">");
                esc(o, str(s, "name"));
                put(o, " on ");
                esc(o, str(s, "object"));
                put(o, " (");
                esc(o, str(s, "unit"));
                putf(o, "): min %.1f, avg %.1f, max %.1f over %.0f readings", num_or(get(s, "summary"), "min", 0),
                     num_or(get(s, "summary"), "avg", 0), num_or(get(s, "summary"), "max", 0),
                     num_or(get(s, "summary"), "readings", 0));
                if (!has[0] && !has[1])
                        put(o, "; no thresholds known");
                put(o, ". Line: average; light: maximum.</p></div>\n");
        }
        return 0;
}

static void downtime_chart(struct out *o, const cJSON *snap, double t0, double t1)
{
        const cJSON *dt = get(snap, "downtime"), *x;
        struct axis a = {t0, t1, 0, 1};
        size_t drawn = 0;

        put(o, "<div class=\"chart\">");
        chart_open(o, "Restarts and outages of the agent", "", "", &a);
        cJSON_ArrayForEach(x, get(dt, "outages"))
        {
                double s = parse_time(str(x, "start")), e = parse_time(str(x, "end"));
                bool clean = cJSON_IsTrue(get(x, "clean"));
                if (s < 0 || e < s || drawn >= REPORT_CHART_POINTS)
                        continue;
                double x0 = x_of(&a, s), x1 = x_of(&a, e);
                putf(o, "<rect class=\"%s\" x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"%.0f\"/>\n",
                     clean ? "clean" : "unclean", x0, PAD_T + 20, x1 - x0 < 2 ? 2 : x1 - x0,
                     CHART_H - PAD_T - PAD_B - 40);
                drawn++;
        }
        chart_close(o);
        put(o, "<p class=\"legend\">");
        putf(o, "Outages: %zu (red: unclean, grey: clean stop). Downtime ", drawn);
        put_duration(o, num_or(dt, "downtime_s", 0));
        put(o, ", unclean ");
        put_duration(o, num_or(dt, "unclean_s", 0));
        put(o, ", clean ");
        put_duration(o, num_or(dt, "clean_s", 0));
        putf(o, "; warranty days earned: %.0f.</p></div>\n", num_or(dt, "warranty_days", 0));
}

static void faults_chart(struct out *o, const cJSON *snap, double t0, double t1)
{
        const cJSON *x;
        struct axis a = {t0, t1, 0, 1};
        size_t firing = 0, cleared = 0;

        put(o, "<div class=\"chart\">");
        chart_open(o, "Faults over time", "", "", &a);
        cJSON_ArrayForEach(x, get(get(snap, "history"), "events"))
        {
                const char *kind = str(x, "kind");
                bool f = strcmp(kind, "fault-firing") == 0;
                double t = parse_time(str(x, "time"));
                if ((!f && strcmp(kind, "fault-cleared") != 0) || t < 0)
                        continue;
                if (firing + cleared < 4 * REPORT_CHART_POINTS) {
                        double xx = x_of(&a, t);
                        putf(o, "<line class=\"%s\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\"/>\n",
                             f ? "firing" : "cleared", xx, xx, f ? PAD_T + 10 : CHART_H / 2,
                             f ? CHART_H / 2 : CHART_H - PAD_B - 10);
                }
                f ? firing++ : cleared++;
        }
        chart_close(o);
        putf(o,
             "<p class=\"legend\">Faults fired: %zu (red, upper half); cleared: %zu (green, lower half).</p></div>\n",
             firing, cleared);
}

/* ---- the page ---- */

static const char style[] =
        "<style>\n"
        "body{font-family:sans-serif;margin:1.5em;color:#222}\n"
        "h1{font-size:1.5em}h2{border-bottom:2px solid #444;margin-top:1.5em}\n"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #999;padding:2px 8px;"
        "text-align:left;vertical-align:top}\n"
        "th{background:#eee}figure{margin:0.8em 0 0 0}figcaption{font-weight:bold}\n"
        ".legend{font-size:0.85em;margin:0.2em 0 0.8em 0}\n"
        "svg{border:0;background:#fff}.frame{fill:none;stroke:#888}.tick{font-size:10px;fill:#444}\n"
        ".avg{fill:none;stroke:#1f5fa8;stroke-width:1.5}.pt{fill:#1f5fa8}.band{fill:none;stroke:#9dbde0;stroke-width:1}"
        "\n"
        "line.max{stroke:#d08000;stroke-dasharray:6 3}line.crit{stroke:#c00000;stroke-dasharray:6 3}\n"
        "text.max{fill:#d08000}text.crit{fill:#c00000}\n"
        ".unclean{fill:#c00000}.clean{fill:#999}.firing{stroke:#c00000;stroke-width:2}"
        ".cleared{stroke:#2a8a2a;stroke-width:2}\n"
        ".host{page-break-before:always;break-before:page}.host:first-of-type{page-break-before:auto}\n"
        ".chart{page-break-inside:avoid;break-inside:avoid}\n"
        "@media print{body{margin:0}.host{page-break-before:always;break-before:page}}\n"
        "</style>\n";

static void cell(struct out *o, const char *s)
{
        put(o, "<td>");
        esc(o, s);
        put(o, "</td>");
}

static void row(struct out *o, const char *label, const char *value)
{
        putf(o, "<tr><th>%s</th>", label);
        cell(o, value);
        put(o, "</tr>\n");
}

static size_t count_firing(const cJSON *snap)
{
        const cJSON *f;
        size_t n = 0;
        cJSON_ArrayForEach(f, get(snap, "faults")) n += strcmp(str(f, "state"), "firing") == 0;
        return n;
}

static size_t count_events(const cJSON *snap, const char *kind)
{
        const cJSON *e;
        size_t n = 0;
        cJSON_ArrayForEach(e, get(get(snap, "history"), "events")) n += strcmp(str(e, "kind"), kind) == 0;
        return n;
}

static double outbox_pending(const cJSON *snap)
{
        const cJSON *ob = get(snap, "outbox");
        return num_or(ob, "opens_pending", 0) + num_or(ob, "updates_pending", 0) + num_or(ob, "parked", 0);
}

static void summary_table(struct out *o, const cJSON *const *snaps, size_t n)
{
        put(o, "<h2>Summary</h2>\n<table class=\"summary\"><tr><th>host</th><th>faults firing</th>"
               "<th>cases opened in the period</th><th>downtime (clean / unclean)</th>"
               "<th>warranty days per quarter</th><th>outbox pending</th></tr>\n");
        for (size_t i = 0; i < n; i++) {
                const cJSON *dt = get(snaps[i], "downtime"), *q;
                put(o, "<tr>");
                cell(o, str(get(snaps[i], "agent"), "hostname"));
                putf(o, "<td>%zu</td><td>%zu</td><td>", count_firing(snaps[i]), count_events(snaps[i], "case-opened"));
                put_duration(o, num_or(dt, "clean_s", 0));
                put(o, " / ");
                put_duration(o, num_or(dt, "unclean_s", 0));
                put(o, "</td><td>");
                size_t nq = 0;
                cJSON_ArrayForEach(q, get(dt, "quarters"))
                {
                        esc(o, str(q, "quarter"));
                        putf(o, ": %.0f<br>", num_or(q, "warranty_days", 0));
                        nq++;
                }
                if (nq == 0)
                        put(o, "no downtime");
                putf(o, "</td><td>%.0f</td></tr>\n", outbox_pending(snaps[i]));
        }
        put(o, "</table>\n");
}

static void case_rows(struct out *o, const cJSON *snap, const cJSON *cases)
{
        const char *id = str(get(snap, "agent"), "id");
        const cJSON *c;
        size_t n = 0;
        bool have_cases = cJSON_IsArray(cases) && cJSON_GetArraySize(cases) > 0;

        if (have_cases) {
                put(o, "<h3>Open cases</h3>\n<table class=\"cases\"><tr><th>case</th><th>level</th><th>title</th>"
                       "<th>status</th><th>opened</th><th>last seen</th></tr>\n");
                cJSON_ArrayForEach(c, cases)
                {
                        const cJSON *cid = get(c, "id");
                        if (strcmp(str(c, "agent_id"), id) != 0 && strcmp(str(get(c, "agent"), "id"), id) != 0)
                                continue;
                        if (cJSON_IsNumber(cid))
                                putf(o, "<tr><td>%.0f</td>", cid->valuedouble);
                        else
                                cell(o, str(c, "id"));
                        cell(o, str(c, "level"));
                        cell(o, str(c, "title"));
                        cell(o, str(c, "status"));
                        cell(o, str(c, "created_at"));
                        cell(o, str(c, "last_seen"));
                        put(o, "</tr>\n");
                        n++;
                }
        } else {
                put(o, "<h3>Faults firing now</h3>\n<table class=\"cases\"><tr><th>case</th><th>level</th>"
                       "<th>title</th><th>rule</th><th>first seen</th><th>last seen</th></tr>\n");
                cJSON_ArrayForEach(c, get(snap, "faults"))
                {
                        if (strcmp(str(c, "state"), "firing") != 0)
                                continue;
                        cell(o, str(c, "case_id"));
                        cell(o, str(c, "level"));
                        cell(o, str(c, "title"));
                        cell(o, str(c, "rule"));
                        cell(o, str(c, "first_seen"));
                        cell(o, str(c, "last_seen"));
                        put(o, "</tr>\n");
                        n++;
                }
        }
        if (n == 0)
                put(o, "<tr><td colspan=\"6\">none</td></tr>\n");
        put(o, "</table>\n");
}

static int host_section(struct out *o, const cJSON *snap, const cJSON *cases)
{
        const cJSON *ag = get(snap, "agent"), *host = get(snap, "host"), *cfg = get(snap, "config"), *d;
        double t1 = parse_time(str(snap, "generated_at")), t0 = parse_time(str(snap, "since"));
        char buf[160];
        bool any = false;
        int r;

        if (t1 < 0)
                t1 = (double)time(NULL);
        if (t0 < 0 || t0 >= t1)
                t0 = t1 - 90.0 * 86400;
        put(o, "<section class=\"host\">\n<h2>");
        esc(o, str(ag, "hostname"));
        put(o, "</h2>\n<table class=\"identity\">\n");
        row(o, "agent id", str(ag, "id"));
        row(o, "machine id", str(ag, "machine_id"));
        row(o, "OS", str(ag, "os"));
        row(o, "kernel", str(ag, "kernel"));
        row(o, "agent version", str(ag, "version"));
        put(o, "<tr><th>hardware</th><td>");
        esc(o, str(ag, "hw_vendor"));
        put(o, " ");
        esc(o, str(ag, "hw_model"));
        if (!*str(ag, "hw_vendor") && !*str(ag, "hw_model"))
                put(o, "not reported (no DMI data)");
        put(o, "</td></tr>\n<tr><th>CPU / memory</th><td>");
        putf(o, "%.0f &times; ", num_or(ag, "cpus", 0));
        esc(o, str(ag, "cpu_model"));
        putf(o, ", %.1f GiB</td></tr>\n", num_or(ag, "memory_bytes", 0) / (1024.0 * 1024 * 1024));
        put(o, "<tr><th>disks</th><td>");
        cJSON_ArrayForEach(d, get(host, "disks"))
        {
                esc(o, str(d, "name"));
                putf(o, " %.0f GB ", num_or(d, "size_bytes", 0) / 1e9);
                esc(o, str(d, "model"));
                put(o, "<br>");
        }
        put(o, "</td></tr>\n<tr><th>uptime</th><td>");
        put_duration(o, num_or(host, "uptime_s", 0));
        put(o, "</td></tr>\n");
        row(o, "config digest", str(cfg, "digest"));
        row(o, "rules digest", str(cfg, "rules_digest"));
        snprintf(buf, sizeof buf, "%s", str(snap, "since"));
        put(o, "<tr><th>period</th><td>");
        esc(o, buf);
        put(o, " to ");
        esc(o, str(snap, "generated_at"));
        put(o, "</td></tr>\n</table>\n");

        put(o, "<h3>Temperatures</h3>\n");
        if ((r = series_charts(o, snap, "sensor", "Temperature: ", t0, t1, &any)) < 0)
                return r;
        if (!any)
                put(o, "<p>No sensor readings in the period.</p>\n");
        any = false;
        put(o, "<h3>Heartbeat</h3>\n");
        if ((r = series_charts(o, snap, "heartbeat", "Heartbeat: ", t0, t1, &any)) < 0)
                return r;
        if (!any)
                put(o, "<p>No heartbeat readings in the period.</p>\n");
        put(o, "<h3>Restarts, outages and faults</h3>\n");
        downtime_chart(o, snap, t0, t1);
        faults_chart(o, snap, t0, t1);
        case_rows(o, snap, cases);
        put(o, "</section>\n");
        return 0;
}

int report_render_html(const cJSON *const *snapshots, size_t n, const cJSON *cases, const char *title, char **ret_html)
{
        struct out o = {0};
        int r = 0;

        if (!ret_html || (n > 0 && !snapshots))
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (!cJSON_IsObject(snapshots[i]))
                        return -EINVAL;
        if (!title)
                title = "Inspection report";
        put(&o, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>");
        esc(&o, title);
        put(&o, "</title>\n");
        put(&o, style);
        put(&o, "</head><body>\n<h1>");
        esc(&o, title);
        putf(&o, "</h1>\n<p>%zu host%s.</p>\n", n, n == 1 ? "" : "s");
        summary_table(&o, snapshots, n);
        for (size_t i = 0; i < n && r == 0; i++)
                r = host_section(&o, snapshots[i], cases);
        put(&o, "</body></html>\n");
        if (r == 0)
                r = o.err;
        if (r < 0) {
                free(o.s);
                return r;
        }
        *ret_html = o.s;
        return 0;
}
