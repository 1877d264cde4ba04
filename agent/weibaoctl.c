/* weibaoctl: the command line for a running weibao-agent, over its Unix
 * control socket (agent/control.h has the protocol). Prints status and faults
 * for people, snapshot as JSON, report as HTML. Exit codes: 0 success, 1 the agent answered
 * with an error or could not be reached, 2 invalid usage. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../lib/report.h"
#include "../lib/xalloc.h"

#define DEFAULT_SOCKET "/run/weibao/control.sock"
#define ANSWER_MAX (16 * 1024 * 1024)
#define TIMEOUT_MS 10000

static void usage(FILE *f)
{
        fprintf(f, "Usage: weibaoctl [-s SOCKET] [--json] COMMAND [ARG]\n"
                   "\n"
                   "Commands:\n"
                   "  status     collectors, rules loaded, faults and cases\n"
                   "  faults     every fault the agent holds, firing and cleared\n"
                   "  events     the last events no rule matched\n"
                   "  traps      SNMP trap counters and the last notifications decoded\n"
                   "  collector NAME  one collector's state and counters\n"
                   "  outbox [retry]  requests not yet delivered and why; retry: try parked ones again\n"
                   "  maintenance [list|start|end]  maintenance windows (faults open no case during one)\n"
                   "  snapshot [--since D] [--minutes]  the health snapshot as JSON (docs/snapshot.md; D default 90d)\n"
                   "  report [--since D]  the inspection report of this host as one HTML page (D default 90d)\n"
                   "  reload     re-read configuration and rules (like SIGHUP)\n"
                   "\n"
                   "Maintenance windows:\n"
                   "  maintenance start --for DURATION --reason TEXT  (DURATION: 90m, 2h, 1h30m; at most 30d)\n"
                   "  maintenance end [ID]  end the running window early\n"
                   "\n"
                   "  -s, --socket PATH  control socket (default $WEIBAO_CONTROL_SOCKET or " DEFAULT_SOCKET ")\n"
                   "  -j, --json         print the agent's JSON answer as it is\n"
                   "  -h, --help         show this help\n");
}

/* Sends cmd and reads the whole answer into a fresh string. */
static int ask(const char *path, const char *cmd, char **ret)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        size_t len = 0, cap = 65536;
        char *buf = NULL;
        int fd, r;

        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                r = -errno;
                goto out;
        }
        if (dprintf(fd, "%s\n", cmd) < 0) {
                r = -errno;
                goto out;
        }
        buf = xmalloc(cap);
        if (!buf) {
                r = -ENOMEM;
                goto out;
        }
        for (;;) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                ssize_t n;

                r = poll(&p, 1, TIMEOUT_MS);
                if (r == 0) {
                        r = -ETIMEDOUT;
                        goto out;
                }
                if (len + 1 >= cap) {
                        char *nb;
                        if (cap >= ANSWER_MAX) {
                                r = -EFBIG;
                                goto out;
                        }
                        nb = xrealloc(buf, cap * 2);
                        if (!nb) {
                                r = -ENOMEM;
                                goto out;
                        }
                        buf = nb;
                        cap *= 2;
                }
                n = read(fd, buf + len, cap - len - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto out;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        buf[len] = '\0';
        *ret = buf;
        buf = NULL;
        r = 0;
out:
        free(buf);
        close(fd);
        return r;
}

static const char *str(const cJSON *o, const char *key)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsString(v) ? v->valuestring : "";
}

static double num(const cJSON *o, const char *key)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void print_faults(const cJSON *faults)
{
        const cJSON *f;
        int n = 0;

        cJSON_ArrayForEach(f, faults)
        {
                const cJSON *cid = cJSON_GetObjectItemCaseSensitive(f, "case_id");
                printf("%-3s %-8s %-40s case %-6s %s (x%.0f, %s)\n", str(f, "level"), str(f, "state"), str(f, "key"),
                       cJSON_IsString(cid) ? cid->valuestring : "-", str(f, "title"), num(f, "occurrences"),
                       str(f, "delivery"));
                if (*str(f, "last_error"))
                        printf("    last delivery error: %s\n", str(f, "last_error"));
                if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(f, "update_refused")))
                        printf("    the outbox refused an update (full): the case is told once there is room\n");
                n++;
        }
        if (n == 0)
                printf("no faults\n");
}

static void print_event(const cJSON *e)
{
        const cJSON *a;

        printf("%s %s/%s %s [%s]\n", str(e, "time"), str(e, "source"), str(e, "name"), str(e, "object"),
               str(e, "note"));
        cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(e, "attributes"))
        {
                if (cJSON_IsNumber(a))
                        printf("    %s = %.17g\n", a->string, a->valuedouble);
                else if (cJSON_IsString(a))
                        printf("    %s = \"%s\"\n", a->string, a->valuestring);
        }
        if (num(e, "attributes_dropped") > 0)
                printf("    (%.0f more attributes not kept)\n", num(e, "attributes_dropped"));
}

static void print_events(const cJSON *events, const char *none)
{
        const cJSON *e;
        int n = 0;

        cJSON_ArrayForEach(e, events)
        {
                print_event(e);
                n++;
        }
        if (n == 0)
                printf("%s\n", none);
}

/* Every number and every object of numbers in a collector's status, then its
 * recent list when it has one. */
static void print_collector(const cJSON *c)
{
        const cJSON *x, *y;

        printf("%s: %s%s%s\n", str(c, "name"),
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "running")) ? "running" : "stopped",
               *str(c, "error") ? ": " : "", str(c, "error"));
        cJSON_ArrayForEach(x, c)
        {
                if (cJSON_IsNumber(x))
                        printf("  %-22s %.0f\n", x->string, x->valuedouble);
                else if (cJSON_IsString(x) && strcmp(x->string, "name") != 0 && strcmp(x->string, "error") != 0)
                        printf("  %-22s %s\n", x->string, x->valuestring);
                else if (cJSON_IsObject(x)) {
                        printf("  %s:\n", x->string);
                        cJSON_ArrayForEach(y, x) if (cJSON_IsNumber(y))
                                printf("    %-20s %.0f\n", y->string, y->valuedouble);
                } else if (cJSON_IsArray(x) && strcmp(x->string, "recent") != 0) {
                        /* a list of objects (the heartbeat links): one line each, its plain fields */
                        printf("  %s:\n", x->string);
                        cJSON_ArrayForEach(y, x)
                        {
                                const cJSON *z;
                                if (!cJSON_IsObject(y))
                                        continue;
                                printf("   ");
                                cJSON_ArrayForEach(z, y)
                                {
                                        if (cJSON_IsString(z))
                                                printf(" %s=%s", z->string, z->valuestring);
                                        else if (cJSON_IsNumber(z))
                                                printf(" %s=%g", z->string, z->valuedouble);
                                        else if (cJSON_IsBool(z))
                                                printf(" %s=%s", z->string, cJSON_IsTrue(z) ? "yes" : "no");
                                }
                                printf("\n");
                        }
                }
        }
        if ((x = cJSON_GetObjectItemCaseSensitive(c, "recent"))) {
                printf("recent (oldest first):\n");
                print_events(x, "  none yet");
        }
}

static void print_outbox(const cJSON *o)
{
        const cJSON *r;
        int n = 0;

        printf("%.0f opens and %.0f updates pending (%.0f not yet on disk), %.0f in flight, %.0f parked%s\n",
               num(o, "opens_pending"), num(o, "updates_pending"), num(o, "not_durable"), num(o, "in_flight"),
               num(o, "parked"),
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "central_down")) ? "; central API unreachable" : "");
        cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(o, "records"))
        {
                const cJSON *cid = cJSON_GetObjectItemCaseSensitive(r, "case_id"), *u;
                printf("  %-40s case %-6s %-9s", str(r, "fault_key"), cJSON_IsString(cid) ? cid->valuestring : "-",
                       str(r, "waiting"));
                cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(r, "updates")) printf(" %s", u->valuestring);
                printf("\n");
                if (*str(r, "parked"))
                        printf("    parked: %s\n", str(r, "parked"));
                else if (*str(r, "last_error"))
                        printf("    last error: %s (%.0f failures)\n", str(r, "last_error"), num(r, "failures"));
                n++;
        }
        if (n == 0)
                printf("  nothing owed to the central API\n");
}

static void print_window(const cJSON *w)
{
        printf("  #%.0f %s .. %s%s%s: %s\n", num(w, "id"), str(w, "start"), str(w, "end"),
               *str(w, "ended_at") ? ", ended " : " (running)", str(w, "ended_at"), str(w, "reason"));
}

static void print_maintenance(const cJSON *m)
{
        const cJSON *w, *act = cJSON_GetObjectItemCaseSensitive(m, "active");

        if (cJSON_IsObject(act))
                printf("in a maintenance window: #%.0f until %s (%.0f s left): %s\n", num(act, "id"), str(act, "end"),
                       num(act, "remaining_s"), str(act, "reason"));
        else
                printf("no maintenance window running\n");
        cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(m, "windows")) print_window(w);
}

/* "90", "90s", "30m", "2h", "1h30m", "1d": seconds, or 0 when malformed. */
static unsigned long long parse_duration(const char *s)
{
        unsigned long long total = 0;

        if (!*s)
                return 0;
        while (*s) {
                char *end;
                unsigned long long v;
                if (*s < '0' || *s > '9')
                        return 0;
                errno = 0;
                v = strtoull(s, &end, 10);
                if (errno || v > 100000000ULL)
                        return 0;
                switch (*end) {
                case '\0':
                case 's':
                        break;
                case 'm':
                        v *= 60;
                        break;
                case 'h':
                        v *= 3600;
                        break;
                case 'd':
                        v *= 86400;
                        break;
                default:
                        return 0;
                }
                total += v;
                s = *end ? end + 1 : end;
        }
        return total;
}

/* Builds the control line of "maintenance ...". Returns 0, or 2 after
 * printing a usage error. */
static int maintenance_line(int argc, char **argv, char *line, size_t size)
{
        const char *sub = argc > 0 ? argv[0] : "list";

        if (strcmp(sub, "list") == 0 && argc <= 1) {
                snprintf(line, size, "maintenance list");
                return 0;
        }
        if (strcmp(sub, "end") == 0 && argc <= 2) {
                if (argc == 2 && strspn(argv[1], "0123456789") != strlen(argv[1])) {
                        fprintf(stderr, "weibaoctl: maintenance end takes a window id (a number)\n");
                        return 2;
                }
                snprintf(line, size, "maintenance end%s%s", argc == 2 ? " " : "", argc == 2 ? argv[1] : "");
                return 0;
        }
        if (strcmp(sub, "start") == 0) {
                const char *dur = NULL, *reason = NULL;
                unsigned long long secs;
                for (int i = 1; i < argc; i++) {
                        if (strcmp(argv[i], "--for") == 0 && i + 1 < argc)
                                dur = argv[++i];
                        else if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc)
                                reason = argv[++i];
                        else {
                                fprintf(stderr, "weibaoctl: maintenance start: unexpected '%s'\n", argv[i]);
                                return 2;
                        }
                }
                if (!dur || !reason || !*reason) {
                        fprintf(stderr, "weibaoctl: maintenance start needs --for DURATION and --reason TEXT\n");
                        return 2;
                }
                secs = parse_duration(dur);
                if (secs == 0 || secs > 30ULL * 86400) {
                        fprintf(stderr, "weibaoctl: --for %s: expected a duration from 1s to 30d (90m, 2h, 1h30m)\n",
                                dur);
                        return 2;
                }
                for (const char *p = reason; *p; p++)
                        if ((unsigned char)*p < 0x20) {
                                fprintf(stderr, "weibaoctl: --reason must be one line of text\n");
                                return 2;
                        }
                if ((size_t)snprintf(line, size, "maintenance start %llu %s", secs, reason) >= size) {
                        fprintf(stderr, "weibaoctl: --reason is too long\n");
                        return 2;
                }
                return 0;
        }
        fprintf(stderr, "weibaoctl: maintenance: expected list, start --for D --reason R, or end [ID]\n");
        return 2;
}

static void print_status(const cJSON *o)
{
        const cJSON *agent = cJSON_GetObjectItemCaseSensitive(o, "agent");
        const cJSON *rules = cJSON_GetObjectItemCaseSensitive(o, "rules");
        const cJSON *faults = cJSON_GetObjectItemCaseSensitive(o, "faults");
        const cJSON *cases = cJSON_GetObjectItemCaseSensitive(o, "cases");
        const cJSON *c;

        printf("agent:      %s on %s (weibao-agent %s), up %.0f s\n", str(agent, "id"), str(agent, "hostname"),
               str(agent, "version"), num(o, "uptime_s"));
        printf("config:     %s\n", str(o, "config"));
        printf("central:    %s\n", str(o, "central"));
        printf("rules:      %.0f loaded at %s (%.0f reloads, %.0f failed); %.0f events, %.0f unmatched\n",
               num(rules, "loaded"), str(rules, "loaded_at"), num(rules, "reloads"), num(rules, "reload_failures"),
               num(rules, "events"), num(rules, "unmatched_events"));
        printf("faults:     %.0f firing, %.0f cleared, %.0f forgotten keys remembered by their last case\n",
               num(faults, "firing"), num(faults, "cleared"), num(faults, "remembered"));
        printf("cases:      %.0f opened, %.0f sends pending (%.0f not yet on disk), %.0f parked, %.0f failed "
               "attempts%s\n",
               num(cases, "opened"), num(cases, "sends_pending"), num(cases, "not_durable"), num(cases, "parked"),
               num(cases, "send_failures"),
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cases, "central_down")) ? "; central API unreachable"
                                                                                     : "");
        printf("storms:     %.0f faults summarised (storm), %.0f (case rate), %.0f held by maintenance, %.0f lost, "
               "%.0f flapping%s\n",
               num(cases, "storm_summarised"), num(cases, "rate_limited"), num(cases, "held_maintenance"),
               num(cases, "lost"), num(faults, "flapping"),
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cases, "maintenance")) ? "; in a maintenance window" : "");
        {
                const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "state");
                printf("state:      %s, %.0f bytes, %.0f commits, %.0f failed%s%s\n", str(st, "dir"), num(st, "bytes"),
                       num(st, "commits"), num(st, "commit_failures"),
                       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "failing")) ? "; NOT SAVING: " : "",
                       str(st, "error"));
        }
        printf("collectors:\n");
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(o, "collectors"))
        {
                const cJSON *running = cJSON_GetObjectItemCaseSensitive(c, "running");
                printf("  %-10s %s%s%s\n", str(c, "name"), cJSON_IsTrue(running) ? "running" : "stopped",
                       *str(c, "error") ? ": " : "", str(c, "error"));
        }
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                {"socket", required_argument, NULL, 's'},
                {"json", no_argument, NULL, 'j'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0},
        };
        const char *path = getenv("WEIBAO_CONTROL_SOCKET");
        const char *cmd;
        char *answer = NULL;
        cJSON *o;
        int c, json = 0, r, rc;

        if (!path || !*path)
                path = DEFAULT_SOCKET;
        while ((c = getopt_long(argc, argv, "+s:jh", options, NULL)) >= 0) {
                switch (c) {
                case 's':
                        path = optarg;
                        break;
                case 'j':
                        json = 1;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind >= argc) {
                fprintf(stderr, "weibaoctl: expected a command (try --help)\n");
                return 2;
        }
        cmd = argv[optind];
        static const char *const one[] = {"status", "faults", "reload", "events", "traps"};
        bool known = false;
        char line[1024];
        for (size_t i = 0; i < sizeof one / sizeof one[0]; i++)
                known |= strcmp(cmd, one[i]) == 0;
        if (strcmp(cmd, "snapshot") == 0 || strcmp(cmd, "report") == 0) {
                unsigned long long secs = 90ULL * 86400;
                bool minutes = false;
                for (int i = optind + 1; i < argc; i++) {
                        if (strcmp(argv[i], "--since") == 0 && i + 1 < argc) {
                                secs = parse_duration(argv[++i]);
                                if (secs == 0 || secs > 3660ULL * 86400) {
                                        fprintf(stderr, "weibaoctl: --since %s: expected a duration such as 90d\n",
                                                argv[i]);
                                        return 2;
                                }
                        } else if (strcmp(argv[i], "--minutes") == 0 && strcmp(cmd, "snapshot") == 0) {
                                minutes = true;
                        } else {
                                fprintf(stderr, "weibaoctl: %s: unexpected '%s'\n", cmd, argv[i]);
                                return 2;
                        }
                }
                snprintf(line, sizeof line, "snapshot %llu%s", secs, minutes ? " minutes" : "");
                goto send;
        }
        if (strcmp(cmd, "maintenance") == 0 || strcmp(cmd, "outbox") == 0) {
                if (strcmp(cmd, "outbox") == 0) {
                        if (optind + 1 < argc && (strcmp(argv[optind + 1], "retry") != 0 || optind + 2 < argc)) {
                                fprintf(stderr, "weibaoctl: outbox takes nothing or 'retry'\n");
                                return 2;
                        }
                        snprintf(line, sizeof line, "outbox%s", optind + 1 < argc ? " retry" : "");
                } else if ((r = maintenance_line(argc - optind - 1, argv + optind + 1, line, sizeof line)) != 0) {
                        return r;
                }
                goto send;
        }
        if (!known && strcmp(cmd, "collector") != 0) {
                fprintf(stderr, "weibaoctl: unknown command '%s' (try --help)\n", cmd);
                return 1;
        }
        if ((known && optind != argc - 1) || (!known && optind != argc - 2)) {
                fprintf(stderr, "weibaoctl: %s takes %s (try --help)\n", cmd,
                        known ? "no argument" : "one argument, the collector's name");
                return 2;
        }
        if (!known) {
                if (strspn(argv[optind + 1], "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(argv[optind + 1])) {
                        fprintf(stderr, "weibaoctl: '%s' is not a collector name\n", argv[optind + 1]);
                        return 2;
                }
                snprintf(line, sizeof line, "collector %.200s", argv[optind + 1]);
        } else {
                snprintf(line, sizeof line, "%s", cmd);
        }
send:
        r = ask(path, line, &answer);
        if (r < 0) {
                fprintf(stderr, "weibaoctl: cannot talk to the agent at %s: %s (is weibao-agent running?)\n", path,
                        strerror(-r));
                return 1;
        }
        o = cJSON_Parse(answer);
        if (!o) {
                fprintf(stderr, "weibaoctl: the agent's answer is not JSON\n");
                free(answer);
                return 1;
        }
        rc = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "ok")) ? 0 : 1;
        if (rc != 0) {
                fprintf(stderr, "weibaoctl: %s\n", str(o, "error"));
        } else if (json) {
                fputs(answer, stdout);
        } else if (strcmp(cmd, "status") == 0) {
                print_status(o);
        } else if (strcmp(cmd, "faults") == 0) {
                print_faults(cJSON_GetObjectItemCaseSensitive(o, "faults"));
        } else if (strcmp(cmd, "events") == 0) {
                print_events(cJSON_GetObjectItemCaseSensitive(o, "unmatched"), "no unmatched events");
        } else if (strcmp(cmd, "traps") == 0 || strcmp(cmd, "collector") == 0) {
                print_collector(cJSON_GetObjectItemCaseSensitive(o, "collector"));
        } else if (strcmp(cmd, "outbox") == 0) {
                if (cJSON_GetObjectItemCaseSensitive(o, "unparked"))
                        printf("%.0f parked requests are tried again\n", num(o, "unparked"));
                else
                        print_outbox(cJSON_GetObjectItemCaseSensitive(o, "outbox"));
        } else if (strcmp(cmd, "maintenance") == 0) {
                print_maintenance(cJSON_GetObjectItemCaseSensitive(o, "maintenance"));
        } else if (strcmp(cmd, "snapshot") == 0) {
                char *s = cJSON_Print(cJSON_GetObjectItemCaseSensitive(o, "snapshot"));
                if (s)
                        printf("%s\n", s);
                free(s);
        } else if (strcmp(cmd, "report") == 0) {
                const cJSON *snap = cJSON_GetObjectItemCaseSensitive(o, "snapshot");
                char *html = NULL;
                r = cJSON_IsObject(snap) ? report_render_html(&snap, 1, NULL, NULL, &html) : -EBADMSG;
                if (r < 0) {
                        fprintf(stderr, "weibaoctl: rendering the report: %s\n", strerror(-r));
                        rc = 1;
                } else {
                        fputs(html, stdout);
                        free(html);
                }
        } else {
                printf("reloaded: %.0f rules\n", num(o, "rules"));
        }
        cJSON_Delete(o);
        free(answer);
        return rc;
}
