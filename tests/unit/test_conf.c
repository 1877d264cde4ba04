/* Unit tests for agent.conf: defaults, validation, path resolution, rules
 * globs, collector getters and the normalised form's round trip. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../lib/xalloc.h"
#include "../../rules/conf.h"
#include "../../rules/rules.h"

#define CENTRAL "central {\n url \"https://cases.example\"\n token_file \"/etc/weibao/token\"\n}\n"

static char *errors_of(struct diag *d)
{
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);

        diag_print(d, f);
        fclose(f);
        return out;
}

static void expect_error(const char *text, const char *msg)
{
        struct diag *d = diag_new();
        struct config *c = NULL;
        char *e;

        assert_int_equal(config_load_string("agent.conf", text, &c, d), -EINVAL);
        assert_null(c);
        e = errors_of(d);
        if (!strstr(e, msg))
                fail_msg("expected \"%s\" in:\n%s", msg, e);
        free(e);
        diag_free(d);
}

static struct config *load(const char *text)
{
        struct diag *d = diag_new();
        struct config *c = NULL;

        if (config_load_string("agent.conf", text, &c, d) < 0) {
                diag_print(d, stderr);
                fail_msg("config failed");
        }
        diag_free(d);
        return c;
}

static char *format(const struct config *c)
{
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);

        config_format(c, f);
        fclose(f);
        return out;
}

static void test_defaults(void **state)
{
        struct config *c = load(CENTRAL);
        char cwd[512];

        (void)state;
        assert_non_null(getcwd(cwd, sizeof cwd));
        assert_null(c->agent_id);
        assert_string_equal(c->state_dir, "/var/lib/weibao");
        assert_string_equal(c->control_socket, "/run/weibao/control.sock");
        assert_int_equal(c->log_level, LOG_LEVEL_INFO);
        assert_int_equal(c->n_rules_paths, 1);
        assert_true(strncmp(c->rules_paths[0], cwd, strlen(cwd)) == 0);
        assert_non_null(strstr(c->rules_paths[0], "/rules.d/*.rules"));
        assert_string_equal(c->central_url, "https://cases.example");
        assert_int_equal(c->central_timeout_usec, 10000000);
        assert_int_equal(c->retry_usec, 30000000);
        assert_int_equal(c->n_collectors, 0);
        assert_int_equal(ruleset_count(c->rules), 0);
        config_free(c);
}

static void test_cases_block(void **state)
{
        struct config *c =
                load(CENTRAL "cases {\n reopen_window 0s\n flap_count 4\n flap_window 2m\n case_rate 6\n"
                             " case_burst 3\n storm_keys 0\n storm_window 30s\n outbox_max 500\n sync normal\n}\n");
        struct config *d = load(CENTRAL);
        char *text;

        (void)state;
        assert_int_equal(c->reopen_window_usec, 0);
        assert_int_equal(c->flap_count, 4);
        assert_int_equal(c->flap_window_usec, 120000000);
        assert_true(c->case_rate == 6);
        assert_int_equal(c->case_burst, 3);
        assert_int_equal(c->storm_keys, 0);
        assert_int_equal(c->storm_window_usec, 30000000);
        assert_int_equal(c->outbox_max, 500);
        assert_false(c->sync_full);
        text = format(c);
        assert_non_null(strstr(text, "reopen_window 0s"));
        assert_non_null(strstr(text, "sync normal"));
        free(text);
        /* defaults */
        assert_int_equal(d->reopen_window_usec, 3600000000ULL);
        assert_int_equal(d->flap_count, 6);
        assert_int_equal(d->storm_keys, 10);
        assert_true(d->sync_full);
        config_free(c);
        config_free(d);
        expect_error(CENTRAL "cases {\n flap_count 64\n}\n",
                     "agent.conf:6:13: 'flap_count' must be a whole number from 0 to 63");
        expect_error(CENTRAL "cases {\n case_rate 0\n}\n", "'case_rate' must be more than 0");
        expect_error(CENTRAL "cases {\n sync sometimes\n}\n", "expected full or normal, got 'sometimes'");
        expect_error(CENTRAL "cases {\n flap_window 0s\n}\n", "'flap_window' must be more than 0s");
        expect_error(CENTRAL "cases {\n storms 3\n}\n", "unknown setting 'storms' in the cases block");
        expect_error(CENTRAL "cases {\n}\ncases {\n}\n", "duplicate 'cases' block");
}

static void test_settings(void **state)
{
        struct config *c =
                load("# agent\nagent {\n id \"web-01\"\n state_dir \"/srv/weibao\"\n control_socket "
                     "\"run/ctl.sock\"\n log_level debug\n rules \"/etc/a/*.rules\"\n rules \"b/*.rules\"\n}\n"
                     "central {\n url \"http://127.0.0.1:8080\"\n token_file \"token\"\n timeout 1m30s\n "
                     "retry 500ms\n}\n");
        struct ruleset *rs;

        (void)state;
        assert_string_equal(c->agent_id, "web-01");
        assert_string_equal(c->state_dir, "/srv/weibao");
        assert_true(c->control_socket[0] == '/');
        assert_non_null(strstr(c->control_socket, "/run/ctl.sock"));
        assert_int_equal(c->log_level, LOG_LEVEL_DEBUG);
        assert_int_equal(c->n_rules_paths, 2);
        assert_string_equal(c->rules_paths[0], "/etc/a/*.rules");
        assert_true(c->rules_paths[1][0] == '/');
        assert_true(c->token_file[0] == '/');
        assert_int_equal(c->central_timeout_usec, 90000000);
        assert_int_equal(c->retry_usec, 500000);
        rs = config_take_rules(c);
        assert_null(c->rules);
        ruleset_free(rs);
        config_free(c);
}

static void test_errors(void **state)
{
        (void)state;
        expect_error("agent {\n}\ncentral {\n timeout ten\n}\n",
                     "agent.conf:4:10: expected duration such as 10s, got 'ten'");
        expect_error("agent {\n}\n", "agent.conf: no central block");
        expect_error("central {\n token_file \"t\"\n}\n", "agent.conf:1:1: the central block has no url");
        expect_error("central {\n url \"https://x\"\n}\n", "agent.conf:1:1: the central block has no token_file");
        expect_error("central {\n url \"ftp://x\"\n token_file \"t\"\n}\n",
                     "agent.conf:2:6: central url must start with http:// or https://, got \"ftp://x\"");
        expect_error(CENTRAL "central {\n}\n", "agent.conf:5:1: duplicate 'central' block (first at agent.conf:1)");
        expect_error(CENTRAL "agent {\n colour red\n}\n",
                     "agent.conf:6:2: unknown setting 'colour' in the agent block; expected id, state_dir, "
                     "control_socket, log_level, alive_interval, history_cap_mib or rules");
        expect_error(CENTRAL "agent {\n id a\n id b\n}\n", "agent.conf:7:2: duplicate setting 'id' (first at line 6)");
        expect_error(CENTRAL "agent {\n log_level loud\n}\n",
                     "agent.conf:6:12: expected a log level (err, warning, notice, info or debug), got 'loud'");
        expect_error(CENTRAL "agent {\n state_dir /var\n}\n", "agent.conf:6:12: expected a quoted path, got '/'");
        expect_error("central {\n url \"https://x\"\n token_file \"t\"\n retry 0s\n}\n",
                     "agent.conf:4:8: 'retry' must be more than 0s");
        expect_error(CENTRAL "weird {\n}\n",
                     "agent.conf:5:1: expected agent, central, cases, collector, rule or include, got 'weird'");
        expect_error(CENTRAL "collector sensors {\n}\ncollector sensors {\n}\n",
                     "agent.conf:7:11: duplicate collector 'sensors' (first at agent.conf:5)");
        expect_error(CENTRAL "collector {\n}\n", "agent.conf:5:1: expected a collector name, got '{'");
        expect_error(CENTRAL "collector x {\n a 1 2\n}\n",
                     "agent.conf:6:6: expected one value (string, number, duration or word) for 'a', got '2'");
        expect_error(CENTRAL "rule r {\n when x\n}\n", "agent.conf:5:6: rule r has no 'level'");
        /* all errors are reported, in file order */
        {
                struct diag *d = diag_new();
                struct config *c = NULL;

                assert_true(config_load_string("agent.conf",
                                               "agent {\n log_level x\n bogus 1\n}\ncentral {\n url \"x\"\n timeout "
                                               "1q\n}\n",
                                               &c, d) < 0);
                assert_int_equal(diag_count(d), 5);
                assert_string_equal(diag_get(d, 0), "agent.conf:2:12: expected a log level (err, warning, notice, "
                                                    "info or debug), got 'x'");
                assert_string_equal(diag_get(d, 4), "agent.conf:7:10: invalid duration '1q': unknown duration unit; "
                                                    "use ms, s, m, h or d");
                diag_free(d);
        }
}

static void test_collector_getters(void **state)
{
        struct config *c = load(CENTRAL "collector sensors {\n interval 5s\n enabled yes\n offset -2.5\n chip "
                                        "\"coretemp-*\"\n mode fast\n limit ten\n flag maybe\n}\n");
        const struct conf_block *b = config_find_collector(c, "sensors");
        struct diag *d = diag_new();
        const char *s;
        uint64_t u;
        double n;
        bool yes;
        char *e;

        (void)state;
        assert_non_null(b);
        assert_null(config_find_collector(c, "nope"));
        assert_string_equal(conf_block_name(b), "sensors");
        assert_int_equal(conf_block_get_duration(b, "interval", &u, d), 0);
        assert_int_equal(u, 5000000);
        assert_int_equal(conf_block_get_bool(b, "enabled", &yes, d), 0);
        assert_true(yes);
        assert_int_equal(conf_block_get_number(b, "offset", &n, d), 0);
        assert_true(n == -2.5);
        assert_int_equal(conf_block_get_string(b, "chip", &s, d), 0);
        assert_string_equal(s, "coretemp-*");
        assert_int_equal(conf_block_get_string(b, "mode", &s, d), 0);
        assert_string_equal(s, "fast");
        assert_int_equal(conf_block_get_string(b, "absent", &s, d), -ENOENT);
        assert_int_equal(diag_count(d), 0);
        assert_int_equal(conf_block_get_duration(b, "limit", &u, d), -EINVAL);
        assert_int_equal(conf_block_get_bool(b, "flag", &yes, d), -EINVAL);
        assert_int_equal(conf_block_get_number(b, "chip", &n, d), -EINVAL);
        assert_int_equal(conf_block_check_unused(b, d), 0);
        e = errors_of(d);
        assert_string_equal(e, "agent.conf:11:8: expected duration such as 10s for 'limit' in collector sensors, got "
                               "'ten'\n"
                               "agent.conf:12:7: expected yes or no for 'flag' in collector sensors, got 'maybe'\n"
                               "agent.conf:9:7: expected a number for 'chip' in collector sensors, got string "
                               "\"coretemp-*\"\n");
        free(e);
        diag_free(d);
        config_free(c);

        c = load(CENTRAL "collector x {\n used 1\n typo 2\n}\n");
        d = diag_new();
        assert_int_equal(conf_block_get_number(config_find_collector(c, "x"), "used", &n, d), 0);
        assert_int_equal(conf_block_check_unused(config_find_collector(c, "x"), d), -EINVAL);
        assert_string_equal(diag_get(d, 0), "agent.conf:7:7: unknown setting 'typo' in collector x");
        diag_free(d);
        config_free(c);
}

static void test_round_trip(void **state)
{
        static const char text[] =
                "agent {\n id node-7\n log_level warning\n rules \"/x/*.rules\"\n}\n" CENTRAL
                "collector sensors {\n interval 90s\n enabled no\n offset -1\n name \"a \\\"b\\\"\"\n"
                "}\ncollector snmptrap {\n port 162\n}\n"
                "rule r {\n when source == \"s\" and (a or b)\n for 1h30m\n clear for 5s\n level "
                "P2\n key \"k:{a}\"\n title \"t\"\n}\n";
        struct config *c = load(text), *c2;
        char *once, *twice;

        (void)state;
        once = format(c);
        assert_non_null(strstr(once, "        id \"node-7\"\n"));
        assert_non_null(strstr(once, "        timeout 10s\n"));
        assert_non_null(strstr(once, "collector sensors {\n        interval 1m30s\n        enabled no\n        offset "
                                     "-1\n        name \"a \\\"b\\\"\"\n}\n"));
        assert_non_null(strstr(once, "rule r {\n        when source == \"s\" and (a or b)\n        for 1h30m\n"));
        c2 = load(once);
        twice = format(c2);
        assert_string_equal(once, twice);
        free(once);
        free(twice);
        config_free(c);
        config_free(c2);
}

static void write_file(const char *dir, const char *name, const char *text)
{
        char path[512];
        FILE *f;

        snprintf(path, sizeof path, "%s/%s", dir, name);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

static void test_load_files(void **state)
{
        char dir[] = "/tmp/weibao-conf-XXXXXX", path[64], sub[64], cmd[400], *e, *once, *twice;
        struct diag *d = diag_new();
        struct config *c = NULL, *c2 = NULL;

        (void)state;
        assert_non_null(mkdtemp(dir));
        snprintf(sub, sizeof sub, "%s/rules.d", dir);
        assert_int_equal(mkdir(sub, 0700), 0);
        write_file(dir, "agent.conf",
                   "central {\n url \"https://c\"\n token_file \"token\"\n}\nrule local {\n when "
                   "x\n level P5\n key \"k\"\n title \"t\"\n}\n");
        write_file(sub, "20-b.rules", "rule b {\n when x\n level P4\n key \"k\"\n title \"t\"\n}\n");
        write_file(sub, "10-a.rules",
                   "include \"../extra.inc\"\nrule a {\n when x\n level P3\n key \"k\"\n title "
                   "\"t\"\n}\n");
        write_file(dir, "extra.inc", "rule extra {\n when x\n level P3\n key \"k\"\n title \"t\"\n}\n");
        write_file(sub, "ignored.txt", "garbage");
        snprintf(path, sizeof path, "%s/agent.conf", dir);
        if (config_load(path, &c, d) < 0) {
                diag_print(d, stderr);
                fail_msg("load failed");
        }
        snprintf(cmd, sizeof cmd, "%s/token", dir);
        assert_string_equal(c->token_file, cmd);
        assert_int_equal(ruleset_count(c->rules), 4);
        assert_string_equal(rule_name(ruleset_get(c->rules, 0)), "extra");
        assert_string_equal(rule_name(ruleset_get(c->rules, 1)), "a");
        assert_string_equal(rule_name(ruleset_get(c->rules, 2)), "b");
        assert_string_equal(rule_name(ruleset_get(c->rules, 3)), "local");
        /* the normalised form holds every rule and parses to the same */
        once = format(c);
        assert_int_equal(config_load_string("check", once, &c2, d), 0);
        twice = format(c2);
        assert_string_equal(once, twice);
        free(once);
        free(twice);
        config_free(c);
        config_free(c2);

        /* an error in a rules file is reported with that file's name, and a
         * duplicate across files names the first */
        write_file(sub, "30-bad.rules",
                   "rule c {\n when x >\n level P4\n key \"k\"\n title \"t\"\n}\nrule b {\n when "
                   "x\n level P4\n key \"k\"\n title \"t\"\n}\nagent {\n}\n");
        c = NULL;
        assert_int_equal(config_load(path, &c, d), -EINVAL);
        assert_null(c);
        e = errors_of(d);
        snprintf(cmd, sizeof cmd, "%s/30-bad.rules:2:9: expected a field, number, string or '(', got end of line", sub);
        if (!strstr(e, cmd))
                fail_msg("%s", e);
        snprintf(cmd, sizeof cmd, "%s/30-bad.rules:7:6: duplicate rule 'b' (first defined at %s/20-b.rules:1)", sub,
                 sub);
        if (!strstr(e, cmd))
                fail_msg("%s", e);
        snprintf(cmd, sizeof cmd, "%s/30-bad.rules:13:1: expected 'rule' or 'include', got 'agent'", sub);
        if (!strstr(e, cmd))
                fail_msg("%s", e);
        free(e);
        diag_free(d);

        d = diag_new();
        snprintf(path, sizeof path, "%s/missing.conf", dir);
        assert_int_equal(config_load(path, &c, d), -ENOENT);
        e = errors_of(d);
        assert_non_null(strstr(e, "missing.conf: cannot read configuration: No such file or directory"));
        free(e);
        diag_free(d);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
}

static void test_alloc_failures(void **state)
{
        static const char text[] = "agent {\n id x\n rules \"r/*.rules\"\n}\n" CENTRAL
                                   "collector s {\n a 1\n b \"x\"\n}\nrule r {\n when a > 1\n level P1\n key \"{a}\"\n "
                                   "title \"t\"\n}\n";
        unsigned long total;
        struct config *c = NULL;
        struct diag *d;

        (void)state;
        xalloc_fail_at(0);
        d = diag_new();
        assert_int_equal(config_load_string("a", text, &c, d), 0);
        config_free(c);
        diag_free(d);
        total = xalloc_fail_at(0);
        for (unsigned long n = 1; n <= total + 3; n++) {
                int r;

                d = diag_new();
                if (!d)
                        continue;
                c = NULL;
                xalloc_fail_at(n);
                r = config_load_string("a", text, &c, d);
                xalloc_fail_at(0);
                assert_true(r == 0 || r == -ENOMEM);
                config_free(c);
                diag_free(d);
        }
}

static void test_transport_security(void **state)
{
        static const char *const loopback[] = {"http://127.0.0.1:8080", "http://127.9.8.7",
                                               "http://localhost/x",    "http://LOCALHOST:1",
                                               "http://[::1]:8080/api", "https://cases.example"};
        static const char *const remote[] = {"http://10.0.0.1:8080", "http://cases.example",
                                             "http://[::2]:1",       "http://127.0.0.1@evil.example/",
                                             "http://128.0.0.1",     "http://localhost.evil.example"};
        struct config *c;
        char text[512], msg[512], *out;

        (void)state;
        for (size_t i = 0; i < sizeof loopback / sizeof loopback[0]; i++) {
                snprintf(text, sizeof text, "central {\n url \"%s\"\n token_file \"t\"\n}\n", loopback[i]);
                c = load(text);
                assert_false(c->insecure_http);
                config_free(c);
        }
        for (size_t i = 0; i < sizeof remote / sizeof remote[0]; i++) {
                snprintf(text, sizeof text, "central {\n url \"%s\"\n token_file \"t\"\n}\n", remote[i]);
                expect_error(text, "agent.conf:2:6: plain http:// to a host that is not loopback sends the token and "
                                   "the cases unencrypted; use https:// or set 'insecure_http yes'");
                /* insecure_http after the url still counts */
                snprintf(text, sizeof text, "central {\n url \"%s\"\n token_file \"t\"\n insecure_http yes\n}\n",
                         remote[i]);
                c = load(text);
                assert_true(c->insecure_http);
                config_free(c);
        }
        c = load("central {\n url \"https://cases.example\"\n token_file \"t\"\n ca_file \"/etc/ca.pem\"\n "
                 "client_cert \"c.pem\"\n client_key \"/etc/k.pem\"\n}\n");
        assert_string_equal(c->ca_file, "/etc/ca.pem");
        assert_true(c->client_cert[0] == '/' && strstr(c->client_cert, "/c.pem"));
        assert_string_equal(c->client_key, "/etc/k.pem");
        out = format(c);
        assert_non_null(strstr(out, "        ca_file \"/etc/ca.pem\"\n"));
        assert_non_null(strstr(out, "        client_key \"/etc/k.pem\"\n"));
        assert_non_null(strstr(out, "        insecure_http no\n"));
        free(out);
        config_free(c);
        expect_error("central {\n url \"https://x\"\n token_file \"t\"\n client_cert \"c\"\n}\n",
                     "agent.conf:4:2: client_cert needs client_key (the private key of the certificate)");
        expect_error("central {\n url \"https://x\"\n token_file \"t\"\n client_key \"k\"\n}\n",
                     "agent.conf:4:2: client_key needs client_cert (the certificate of the key)");
        expect_error("central {\n url \"https://x\"\n token_file \"t\"\n insecure_http maybe\n}\n",
                     "agent.conf:4:16: expected yes or no for 'insecure_http', got 'maybe'");
        snprintf(msg, sizeof msg, "agent.conf:4:10: expected a quoted path, got 'ca'");
        expect_error("central {\n url \"https://x\"\n token_file \"t\"\n ca_file ca\n}\n", msg);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),           cmocka_unit_test(test_settings),
                cmocka_unit_test(test_cases_block),        cmocka_unit_test(test_errors),
                cmocka_unit_test(test_collector_getters),  cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_load_files),         cmocka_unit_test(test_alloc_failures),
                cmocka_unit_test(test_transport_security),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
