/* weibao-agent: command line. Runs in the foreground (systemd style);
 * --check validates config and every rules file without starting anything.
 * Exit codes: 0 success, 1 runtime failure, 2 invalid usage or configuration. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "../lib/xalloc.h"
#include "../rules/conf.h"
#include "../rules/rules.h"
#include "agent.h"
#include "identity.h"

#define DEFAULT_CONFIG "/etc/weibao/agent.conf"

static void usage(FILE *f)
{
        fprintf(f, "Usage: weibao-agent [OPTIONS]\n"
                   "\n"
                   "Monitoring agent: collects sensor readings and other events, maps them to the\n"
                   "fault levels of the maintenance agreement (P1..P5) with rules, and opens\n"
                   "support cases on the central ticket API.\n"
                   "\n"
                   "  -c, --config FILE        configuration file (default " DEFAULT_CONFIG ")\n"
                   "      --check              validate the configuration and all rules, print the\n"
                   "                           normalised form, start nothing; exit 0 or 2\n"
                   "      --check-rules FILE.. validate rules files alone and print them normalised\n"
                   "  -l, --log-level LEVEL    err, warning, notice, info or debug (overrides config)\n"
                   "  -h, --help               show this help\n"
                   "      --version            show the version\n");
}

static int check_rules(int argc, char **argv)
{
        int rc = 0;

        for (int i = 0; i < argc; i++) {
                struct diag *d = diag_new();
                struct ruleset *rs = NULL;

                if (!d)
                        return 1;
                if (ruleset_load_file(argv[i], &rs, d) < 0) {
                        diag_print(d, stderr);
                        rc = 2;
                } else {
                        ruleset_format(rs, stdout);
                }
                ruleset_free(rs);
                diag_free(d);
        }
        return rc;
}

static int check_config(const char *path)
{
        struct diag *d = diag_new();
        struct agent *a = NULL;
        int r;

        if (!d)
                return 1;
        /* agent_new validates collector settings too, not just the syntax. */
        r = agent_new(path, d, &a);
        if (r < 0) {
                if (diag_count(d) == 0)
                        fprintf(stderr, "%s: %s\n", path, strerror(-r));
                diag_print(d, stderr);
                fprintf(stderr, "%s: configuration is invalid\n", path);
                r = 2;
        } else {
                agent_format_config(a, stdout);
                r = 0;
        }
        agent_free(a);
        diag_free(d);
        return r;
}

int main(int argc, char **argv)
{
        enum { OPT_CHECK = 0x100, OPT_CHECK_RULES, OPT_VERSION };
        static const struct option options[] = {
                {"config", required_argument, NULL, 'c'},
                {"check", no_argument, NULL, OPT_CHECK},
                {"check-rules", no_argument, NULL, OPT_CHECK_RULES},
                {"log-level", required_argument, NULL, 'l'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, OPT_VERSION},
                {NULL, 0, NULL, 0},
        };
        const char *config_path = DEFAULT_CONFIG, *level_arg = NULL;
        int c, check = 0, check_rules_mode = 0, rc;
        enum log_level level;
        struct diag *d;
        struct agent *a = NULL;

        /* Fixed thresholds instead of glibc's dynamic ones: blocks of 64 KiB
         * and more (a snapshot, a large request) are mapped and unmapped on
         * their own rather than left in the heap, and freed heap is given
         * back sooner. An agent at rest then stays near what it uses (the
         * idle budget is 3 MiB of PSS, bench/README.md). */
        mallopt(M_MMAP_THRESHOLD, 64 * 1024);
        mallopt(M_TRIM_THRESHOLD, 128 * 1024);

        log_init("weibao-agent");
        while ((c = getopt_long(argc, argv, "c:l:h", options, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        config_path = optarg;
                        break;
                case 'l':
                        level_arg = optarg;
                        break;
                case OPT_CHECK:
                        check = 1;
                        break;
                case OPT_CHECK_RULES:
                        check_rules_mode = 1;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case OPT_VERSION:
                        printf("weibao-agent %s\n", WEIBAO_VERSION);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (check_rules_mode) {
                if (optind >= argc) {
                        fprintf(stderr, "weibao-agent: --check-rules needs at least one file\n");
                        return 2;
                }
                return check_rules(argc - optind, argv + optind);
        }
        if (optind < argc) {
                fprintf(stderr, "weibao-agent: unexpected argument '%s'\n", argv[optind]);
                usage(stderr);
                return 2;
        }
        if (level_arg && log_level_from_string(level_arg, &level) < 0) {
                fprintf(stderr, "weibao-agent: unknown log level '%s'\n", level_arg);
                return 2;
        }
        if (check)
                return check_config(config_path);

        d = diag_new();
        if (!d)
                return 1;
        rc = agent_new(config_path, d, &a);
        if (rc < 0) {
                if (diag_count(d) == 0)
                        log_err("loading %s: %s", config_path, strerror(-rc));
                for (size_t i = 0; i < diag_count(d); i++)
                        log_err("%s", diag_get(d, i));
                diag_free(d);
                return 2;
        }
        diag_free(d);
        rc = agent_start(a);
        if (rc >= 0 && level_arg)
                log_set_level(level);
        rc = rc < 0 ? 1 : agent_run(a);
        agent_free(a);
        return rc;
}
