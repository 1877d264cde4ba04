/* Unit tests for the rules language front end: lexer, block parser with
 * includes and recovery, rule compilation errors and the normalised form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../lib/xalloc.h"
#include "../../rules/conf.h"
#include "../../rules/internal.h"
#include "../../rules/rules.h"

/* All diagnostics of parsing text as rules, one per line; NULL on success. */
static char *parse_errors(const char *text)
{
        struct diag *d = diag_new();
        struct ruleset *rs = NULL;
        char *out = NULL;
        size_t len = 0;
        FILE *f;
        int r;

        assert_non_null(d);
        r = ruleset_parse_string("t.rules", text, &rs, d);
        if (r == 0) {
                assert_int_equal(diag_count(d), 0);
                ruleset_free(rs);
                diag_free(d);
                return NULL;
        }
        assert_true(diag_count(d) > 0);
        f = open_memstream(&out, &len);
        diag_print(d, f);
        fclose(f);
        diag_free(d);
        return out;
}

static void expect_error(const char *text, const char *msg)
{
        char *e = parse_errors(text);

        if (!e || !strstr(e, msg))
                fail_msg("expected error containing \"%s\", got:\n%s", msg, e ? e : "(success)");
        free(e);
}

static void expect_ok(const char *text)
{
        char *e = parse_errors(text);

        if (e)
                fail_msg("unexpected errors:\n%s", e);
}

static char *format_rules(const char *text)
{
        struct diag *d = diag_new();
        struct ruleset *rs = NULL;
        char *out = NULL;
        size_t len = 0;
        FILE *f;

        if (ruleset_parse_string("t.rules", text, &rs, d) < 0) {
                diag_print(d, stderr);
                fail_msg("parse failed");
        }
        f = open_memstream(&out, &len);
        ruleset_format(rs, f);
        fclose(f);
        ruleset_free(rs);
        diag_free(d);
        return out;
}

#define RULE(when) "rule r {\n when " when "\n level P3\n key \"k\"\n title \"t\"\n}\n"

static void test_keyword_table(void **state)
{
        (void)state;
        assert_int_equal(keyword_table_check(), 0);
        assert_int_equal(keyword_lookup("rule"), KW_RULE);
        assert_int_equal(keyword_lookup("when"), KW_WHEN);
        assert_int_equal(keyword_lookup("ruler"), KW_NONE);
}

static void test_durations(void **state)
{
        static const struct {
                const char *text;
                uint64_t usec;
        } ok[] = {{"500ms", 500000},        {"10s", 10000000},       {"5m", 300000000},    {"1h", 3600000000ULL},
                  {"1h30m", 5400000000ULL}, {"2d", 172800000000ULL}, {"1s500ms", 1500000}, {"0s", 0}};
        static const char *const bad[] = {"10x", "1.5s", "10", "s", "99999999d", "1h-", ""};
        const char *why;
        char buf[64];

        (void)state;
        for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
                uint64_t v = 1, back = 2;

                assert_int_equal(duration_parse(ok[i].text, strlen(ok[i].text), &v, &why), 0);
                assert_int_equal(v, ok[i].usec);
                duration_format(v, buf, sizeof buf);
                assert_int_equal(duration_parse(buf, strlen(buf), &back, &why), 0);
                assert_int_equal(back, v);
        }
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                uint64_t v;

                assert_true(duration_parse(bad[i], strlen(bad[i]), &v, &why) < 0);
        }
        duration_format(90000000, buf, sizeof buf);
        assert_string_equal(buf, "1m30s");
        /* in rules */
        expect_error("rule r {\n when value > 1\n for ten\n level P3\n key \"k\"\n title \"t\"\n}\n",
                     "t.rules:3:6: expected duration such as 10s, got 'ten'");
        expect_error("rule r {\n when value > 1\n for 5\n level P3\n key \"k\"\n title \"t\"\n}\n",
                     "t.rules:3:6: expected duration such as 10s, got '5'");
        expect_error("rule r {\n when value > 1\n for 10y\n level P3\n key \"k\"\n title \"t\"\n}\n",
                     "t.rules:3:6: invalid duration '10y': unknown duration unit");
        expect_error("rule r {\n when value > 1\n for 400d\n level P3\n key \"k\"\n title \"t\"\n}\n",
                     "duration too large");
        expect_ok("rule r {\n when value > 1\n for 0\n level P3\n key \"k\"\n title \"t\"\n}\n");
}

static void test_numbers_and_strings(void **state)
{
        char *out;

        (void)state;
        out = format_rules(RULE("value > -5 and value < 1.5e3 and x == \"a\\\"b\\\\c\\n\\t\""));
        assert_non_null(strstr(out, "when value > -5 and value < 1500 and x == \"a\\\"b\\\\c\\n\\t\"\n"));
        free(out);
        expect_error(RULE("x == \"bad \\q escape\""), "t.rules:2:17: unknown escape '\\q'");
        expect_error(RULE("x == \"open"), "t.rules:2:12: unterminated string");
        expect_error(RULE("x == 1e999"), "out of range");
        expect_error(RULE("x = 1"), "t.rules:2:9: unexpected '=': use '==' to compare");
        expect_error(RULE("x ! 1"), "unexpected '!'");
        expect_error(RULE("x == $"), "t.rules:2:12: unexpected character '$'");
}

static void test_comments_and_continuation(void **state)
{
        char *out;

        (void)state;
        out = format_rules(
                "# leading comment\nrule r { # trailing\n\n  when value > 1 and \\\n   x == \"#not a comment\" "
                "# c\n level P3\n key \"k\"\n title \"t\"\n}\n");
        assert_non_null(strstr(out, "when value > 1 and x == \"#not a comment\"\n"));
        free(out);
}

static void test_rule_statement_errors(void **state)
{
        (void)state;
        expect_error("rule r {\n when x\n level P3\n key \"k\"\n title \"t\"\n colour red\n}\n",
                     "t.rules:6:2: unknown statement 'colour' in rule r; expected when, for, clear, level, key, "
                     "title or description");
        expect_error("rule r {\n when x\n when y\n level P3\n key \"k\"\n title \"t\"\n}\n",
                     "t.rules:3:2: duplicate 'when' in rule r (first at line 2)");
        expect_error("rule r {\n when x\n key \"k\"\n title \"t\"\n}\n", "t.rules:1:6: rule r has no 'level'");
        expect_error("rule r {\n level P3\n key \"k\"\n title \"t\"\n}\n", "rule r has no 'when'");
        expect_error("rule r {\n when x\n level P3\n title \"t\"\n}\n", "rule r has no 'key'");
        expect_error("rule r {\n when x\n level P3\n key \"k\"\n}\n", "rule r has no 'title'");
        expect_error("rule r {\n when x\n level P6\n key \"k\"\n title \"t\"\n}\n",
                     "t.rules:3:8: expected level P1, P2, P3, P4 or P5, got 'P6'");
        expect_error("rule r {\n when x\n level P3\n key k\n title \"t\"\n}\n",
                     "t.rules:4:6: expected a quoted template such as \"{chip}/{label}\", got 'k'");
        expect_error(RULE("x") RULE("y"), "t.rules:7:6: duplicate rule 'r' (first defined at t.rules:1)");
        expect_error("agent {\n}\n", "t.rules:1:1: expected 'rule' or 'include', got 'agent'");
        expect_error("rule {\n when x\n}\n", "t.rules:1:1: expected a rule name");
        expect_error("rule r\n", "expected '{' after rule r");
        expect_error("rule r {\n when x\n", "t.rules:3:1: expected '}' to close the 'rule' block opened at line 1");
        expect_error("}\n", "t.rules:1:1: unexpected '}' with no open block");
        expect_error("rule r {\n when x\n level P3\n key \"k\"\n title \"t\"\n} extra\n",
                     "t.rules:6:3: expected end of line after '}', got 'extra'");
        expect_error("rule r {\n when x\n clear for\n level P3\n key \"k\"\n title \"t\"\n}\n",
                     "expected duration such as 10s after 'for', got end of line");
}

static void test_expression_errors(void **state)
{
        char deep[600];
        size_t n = 0;

        (void)state;
        expect_error(RULE("\"abc\" + 1 > 2"), "t.rules:2:13: '+' needs numbers on both sides, got a string");
        expect_error(RULE("value > \"x\""), "t.rules:2:13: cannot compare a number with a string");
        expect_error(RULE("chip ~ 5"), "t.rules:2:14: expected a quoted glob pattern such as \"coretemp-*\", got '5'");
        expect_error(RULE("value ~ \"x\""), "t.rules:2:7: '~' matches strings, got a number");
        expect_error(RULE("crit-5 > 1"), "t.rules:2:7: unknown field 'crit-5': field names cannot contain '-'; "
                                         "write 'crit - 5' to subtract");
        expect_error(RULE("(value > 1"), "t.rules:2:16: expected ')' to close '(' at column 7, got end of line");
        expect_error(RULE("value > 1 value"), "t.rules:2:17: expected 'and', 'or' or end of line, got 'value'");
        expect_error(RULE("value > and"), "t.rules:2:15: expected a field, number, string or '(', got 'and'");
        expect_error(RULE("value > 10s"), "a duration cannot be used in a condition");
        expect_error(RULE("(a > 1) + 2 > 1"), "'+' needs numbers on both sides, got a condition");
        expect_error(RULE("a > 1 == b"), "t.rules:2:13: expected 'and', 'or' or end of line, got '=='");
        expect_error(RULE("(a > 1) == b"), "t.rules:2:15: '==' compares values, not conditions");
        expect_error(RULE("value / 0 > 1"), "division by zero");
        expect_error(RULE("exists(5)"), "expected a field name, got '5'");
        expect_error(RULE("m[5] == 1"), "expected a quoted key such as \"IF-MIB::ifDescr\" inside '[ ]', got '5'");
        expect_error("rule r {\n when\n level P3\n key \"k\"\n title \"t\"\n}\n",
                     "t.rules:2:2: expected a condition, got end of line");
        /* nesting is capped, not a stack overflow */
        n += (size_t)snprintf(deep, sizeof deep, "rule r {\n when ");
        for (int i = 0; i < 100; i++)
                deep[n++] = '(';
        n += (size_t)snprintf(deep + n, sizeof deep - n, "x\n level P3\n key \"k\"\n title \"t\"\n}\n");
        expect_error(deep, "condition nested more than 64 deep");
}

static void test_template_errors(void **state)
{
        (void)state;
        expect_error("rule r {\n when x\n level P3\n key \"a{b\"\n title \"t\"\n}\n",
                     "t.rules:4:6: invalid template: unterminated '{' at offset 1");
        expect_error("rule r {\n when x\n level P3\n key \"a}b\"\n title \"t\"\n}\n", "single '}' at offset 1");
        expect_error("rule r {\n when x\n level P3\n key \"a{}\"\n title \"t\"\n}\n", "empty '{}'");
        expect_error("rule r {\n when x\n level P3\n key \"{a b}\"\n title \"t\"\n}\n", "invalid field name");
        expect_ok("rule r {\n when x\n level P3\n key \"{{literal}} {a} {m[IF-MIB::x]} {m[\\\"k\\\"]}\"\n title "
                  "\"t\"\n}\n");
}

static void test_recovery_and_cap(void **state)
{
        char *e, *text = malloc(200 * 40);
        size_t n = 0, lines = 0;

        (void)state;
        e = parse_errors("rule a {\n when x >\n level P9\n key \"k\"\n title \"t\"\n}\nrule b {\n when y\n for zz\n "
                         "level P1\n key \"k\"\n title \"t\"\n}\n");
        assert_non_null(e);
        assert_non_null(strstr(e, "t.rules:2:9:"));
        assert_non_null(strstr(e, "t.rules:3:8:"));
        assert_non_null(strstr(e, "t.rules:9:6:"));
        free(e);
        /* 200 errors: capped at DIAG_MAX plus one closing line */
        for (int i = 0; i < 200; i++)
                n += (size_t)sprintf(text + n, "bogus%d 1\n", i);
        e = parse_errors(text);
        for (const char *p = e; (p = strchr(p, '\n')); p++)
                lines++;
        assert_int_equal(lines, DIAG_MAX + 1);
        assert_non_null(strstr(e, "too many errors"));
        free(e);
        free(text);
}

static void test_size_cap(void **state)
{
        size_t n = CONF_FILE_MAX + 10;
        char *big = malloc(n + 1);

        (void)state;
        memset(big, '#', n);
        big[n] = '\0';
        expect_error(big, "t.rules:1:1: input is 1048586 bytes; the limit is 1048576 (1 MiB)");
        free(big);
}

static void test_nul_byte(void **state)
{
        struct srcnames names = {0};
        struct cblock *tree = NULL;
        struct diag *d = diag_new();
        const struct parse_opts opts = {0};
        unsigned errors = 0;

        (void)state;
        assert_int_equal(conf_parse_text("x", "a\0b\n", 4, &names, &opts, d, &errors, &tree), 0);
        assert_int_equal(errors, 1);
        assert_string_equal(diag_get(d, 0), "x:1:2: NUL byte in input");
        cblock_free(tree);
        srcnames_clear(&names);
        diag_free(d);
}

static char tmpdir[64];

static void write_file(const char *name, const char *text)
{
        char path[256];
        FILE *f;

        snprintf(path, sizeof path, "%s/%s", tmpdir, name);
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

static char *load_errors(const char *name, struct ruleset **ret)
{
        char path[256], *out = NULL;
        struct diag *d = diag_new();
        size_t len = 0;
        FILE *f;

        snprintf(path, sizeof path, "%s/%s", tmpdir, name);
        if (ruleset_load_file(path, ret, d) == 0) {
                diag_free(d);
                return NULL;
        }
        f = open_memstream(&out, &len);
        diag_print(d, f);
        fclose(f);
        diag_free(d);
        return out;
}

/* conf_read_file sizes its buffer to the file: exactly the content, at the
 * limit and one byte over it, an empty file, a file whose size reads 0 but
 * has content (procfs: the buffer must grow), and a directory. */
static void test_read_file_sizes(void **state)
{
        char dir[64], path[128], *buf = NULL, *big;
        size_t len = 0;
        FILE *f;

        (void)state;
        snprintf(dir, sizeof dir, "/tmp/weibao-read-XXXXXX");
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/f", dir);

        f = fopen(path, "w");
        assert_non_null(f);
        fputs("rule x {}\n", f);
        fclose(f);
        assert_int_equal(conf_read_file(path, &buf, &len), 0);
        assert_int_equal(len, 10);
        assert_string_equal(buf, "rule x {}\n");
        free(buf);

        big = malloc(CONF_FILE_MAX + 1);
        assert_non_null(big);
        memset(big, '#', CONF_FILE_MAX + 1);
        f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fwrite(big, 1, CONF_FILE_MAX, f), CONF_FILE_MAX);
        fclose(f);
        assert_int_equal(conf_read_file(path, &buf, &len), 0);
        assert_int_equal(len, CONF_FILE_MAX);
        assert_int_equal(buf[len], '\0');
        assert_memory_equal(buf, big, CONF_FILE_MAX);
        free(buf);
        f = fopen(path, "a");
        assert_non_null(f);
        fputc('#', f);
        fclose(f);
        buf = NULL;
        assert_int_equal(conf_read_file(path, &buf, &len), -EFBIG);
        assert_null(buf);
        free(big);

        f = fopen(path, "w");
        assert_non_null(f);
        fclose(f);
        assert_int_equal(conf_read_file(path, &buf, &len), 0);
        assert_int_equal(len, 0);
        assert_string_equal(buf, "");
        free(buf);

        /* st_size 0, content of its own: grows past the first guess */
        assert_int_equal(conf_read_file("/proc/self/status", &buf, &len), 0);
        assert_true(len > 100);
        assert_int_equal(strlen(buf), len);
        assert_non_null(strstr(buf, "Name:"));
        free(buf);

        assert_int_equal(conf_read_file(dir, &buf, &len), -EINVAL);
        unlink(path);
        rmdir(dir);
}

static void test_include(void **state)
{
        struct ruleset *rs = NULL;
        char *e, expect[512];

        (void)state;
        snprintf(tmpdir, sizeof tmpdir, "/tmp/weibao-test-XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
        {
                char sub[128];

                snprintf(sub, sizeof sub, "%s/sub", tmpdir);
                assert_int_equal(mkdir(sub, 0700), 0);
        }
        write_file("main.rules", "include \"sub/one.rules\"\n" RULE("x"));
        write_file("sub/one.rules",
                   "include \"two.rules\"\nrule one {\n when a\n level P1\n key \"k\"\n title \"t\"\n}\n");
        write_file("sub/two.rules", "rule two {\n when b\n level P2\n key \"k\"\n title \"t\"\n}\n");
        e = load_errors("main.rules", &rs);
        if (e)
                fail_msg("%s", e);
        assert_int_equal(ruleset_count(rs), 3);
        assert_string_equal(rule_name(ruleset_get(rs, 0)), "two");
        assert_string_equal(rule_name(ruleset_get(rs, 2)), "r");
        ruleset_free(rs);

        /* a cycle */
        write_file("a.rules", "include \"b.rules\"\n");
        write_file("b.rules", "include \"a.rules\"\n");
        e = load_errors("a.rules", &rs);
        snprintf(expect, sizeof expect, "%s/b.rules:1:9: include cycle: \"%s/./a.rules\" is already being read", tmpdir,
                 tmpdir);
        assert_non_null(e);
        if (!strstr(e, "include cycle"))
                fail_msg("%s", e);
        free(e);

        /* a file including itself through a chain deeper than the cap */
        write_file("self.rules", "include \"self.rules\"\n");
        e = load_errors("self.rules", &rs);
        assert_non_null(strstr(e, "include cycle"));
        free(e);
        for (int i = 0; i < 12; i++) {
                char name[32], text[64];

                snprintf(name, sizeof name, "d%d.rules", i);
                snprintf(text, sizeof text, "include \"d%d.rules\"\n", i + 1);
                write_file(name, text);
        }
        write_file("d12.rules", "");
        e = load_errors("d0.rules", &rs);
        assert_non_null(e);
        assert_non_null(strstr(e, "includes nested more than 8 deep"));
        free(e);

        /* missing file, and a duplicate across files naming the first */
        write_file("m.rules", "include \"nope.rules\"\n");
        e = load_errors("m.rules", &rs);
        assert_non_null(strstr(e, "m.rules:1:9: cannot include"));
        assert_non_null(strstr(e, "No such file or directory"));
        free(e);
        write_file("dup.rules", "include \"sub/two.rules\"\nrule two {\n when b\n level P2\n key \"k\"\n title "
                                "\"t\"\n}\n");
        e = load_errors("dup.rules", &rs);
        snprintf(expect, sizeof expect, "dup.rules:2:6: duplicate rule 'two' (first defined at %s/./sub/two.rules:1)",
                 tmpdir);
        if (!strstr(e, "duplicate rule 'two' (first defined at") || !strstr(e, "sub/two.rules:1)"))
                fail_msg("%s", e);
        free(e);
        /* include inside a block */
        expect_error("rule r {\n include \"x\"\n}\n", "t.rules:2:2: include is only allowed outside blocks");
        /* not a regular file */
        expect_error("include \"/dev/null\"\n", "not a regular file");
        {
                char cmd[128];

                snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
                assert_int_equal(system(cmd), 0);
        }
}

static void test_format_round_trip(void **state)
{
        static const char *const cases[][2] = {
                {"a or b and c", "a or b and c"},
                {"(a or b) and c", "(a or b) and c"},
                {"not (a and b)", "not (a and b)"},
                {"not a == 1", "not a == 1"},
                {"value >= crit - 5", "value >= crit - 5"},
                {"value - (a - b) > 0", "value - (a - b) > 0"},
                {"(value - a) - b > 0", "value - a - b > 0"},
                {"value * (a + 2) / 4 > 1", "value * (a + 2) / 4 > 1"},
                {"-(a + b) < -3", "-(a + b) < -3"},
                {"--a > 0", "--a > 0"},
                {"a - -2 > 0", "a - -2 > 0"},
                {"2 * 60 < value", "120 < value"},
                {"(((a)))", "a"},
                {"chip ~ \"coretemp-*\" and chip !~ \"*x\"", "chip ~ \"coretemp-*\" and chip !~ \"*x\""},
                {"exists(crit) and varbind[\"IF-MIB::ifDescr\"] == \"eth0\"",
                 "exists(crit) and varbind[\"IF-MIB::ifDescr\"] == \"eth0\""},
                {"a and (b and c)", "a and (b and c)"},
                {"(value + 1) and x", "value + 1 and x"},
        };

        (void)state;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                char text[512], want[512], *once, *twice;

                snprintf(text, sizeof text,
                         "rule r {\n when %s\n for 90s\n clear value < 3 for 1500ms\n level P2\n"
                         " key \"k:{a}\"\n title \"t {{x}}\"\n description \"d\\n\"\n}\n",
                         cases[i][0]);
                once = format_rules(text);
                snprintf(want, sizeof want, "        when %s\n", cases[i][1]);
                if (!strstr(once, want))
                        fail_msg("case %zu: want \"%s\" in\n%s", i, want, once);
                assert_non_null(strstr(once, "for 1m30s\n        clear value < 3 for 1s500ms\n"));
                twice = format_rules(once);
                assert_string_equal(once, twice);
                free(once);
                free(twice);
        }
}

static void test_clear_forms(void **state)
{
        char *out;

        (void)state;
        out = format_rules("rule r {\n when x\n clear for 30s\n level P2\n key \"k\"\n title \"t\"\n}\n");
        assert_non_null(strstr(out, "        clear for 30s\n"));
        free(out);
        out = format_rules("rule r {\n when x\n for 0s\n level P2\n key \"k\"\n title \"t\"\n}\n");
        assert_non_null(strstr(out, "        for 0s\n"));
        assert_null(strstr(out, "clear"));
        free(out);
}

#define CLEAR(stmt) "rule r {\n when x\n " stmt "\n level P2\n key \"k\"\n title \"t\"\n}\n"

/* "clear after DURATION": its normalised form, its errors, and a clear
 * condition that begins with an attribute named "after". */
static void test_clear_after(void **state)
{
        static const char *const round[][2] = {
                {"clear after 1h", "        clear after 1h\n"},
                {"clear after 90s", "        clear after 1m30s\n"},
                {"clear after 3600000ms", "        clear after 1h\n"},
                {"clear (after == 1)", "        clear (after == 1)\n"},
                {"clear (after > 1 or y) and z", "        clear ((after > 1 or y) and z)\n"},
                {"clear (after) for 5s", "        clear (after) for 5s\n"},
                {"clear y or after", "        clear y or after\n"},
                {"clear after.x", "        clear after.x\n"},
        };
        char text[256], *once, *twice;

        (void)state;
        for (size_t i = 0; i < sizeof round / sizeof round[0]; i++) {
                snprintf(text, sizeof text, CLEAR("%s"), round[i][0]);
                once = format_rules(text);
                if (!strstr(once, round[i][1]))
                        fail_msg("case %zu: want \"%s\" in\n%s", i, round[i][1], once);
                twice = format_rules(once);
                assert_string_equal(once, twice);
                free(once);
                free(twice);
        }
        expect_error(CLEAR("clear after"), "t.rules:3:8: expected duration such as 10s after 'clear after', got end "
                                           "of line");
        expect_error(CLEAR("clear after 0s"), "t.rules:3:14: 'clear after' needs a duration over 0s, such as 1h");
        expect_error(CLEAR("clear after 0"), "t.rules:3:14: 'clear after' needs a duration over 0s");
        expect_error(CLEAR("clear after ten"), "t.rules:3:14: expected duration such as 10s, got 'ten'");
        expect_error(CLEAR("clear x == 1 after 5m"),
                     "t.rules:3:15: 'after' cannot follow a clear condition: write either 'clear after DURATION' "
                     "alone or 'clear [CONDITION] [for DURATION]'");
        expect_error(CLEAR("clear after 5m for 1m"),
                     "t.rules:3:17: expected end of line after the duration, got 'for': write either 'clear after "
                     "DURATION' alone or 'clear [CONDITION] [for DURATION]'");
        expect_error(CLEAR("clear for 1m after 5m"),
                     "t.rules:3:15: expected end of line after the duration, got 'after': write either");
        expect_error(CLEAR("clear x for 1m after 5m"), "t.rules:3:17: expected end of line after the duration, got "
                                                       "'after': write either");
        expect_error(CLEAR("clear after 5m x == 1"),
                     "t.rules:3:17: expected end of line after the duration, got 'x': write either");
        expect_error(CLEAR("clear after 5m") "rule s {\n when x\n clear after 1m\n clear after 2m\n level P2\n "
                                             "key \"k\"\n title \"t\"\n}\n",
                     "t.rules:11:2: duplicate 'clear' in rule s (first at line 10)");
        /* "after" elsewhere is an ordinary attribute */
        expect_ok("rule r {\n when after > 1\n clear x == after\n level P2\n key \"{after}\"\n title "
                  "\"t\"\n}\n");
}

static void test_levels(void **state)
{
        enum rule_level l;

        (void)state;
        for (int i = 0; i < RULE_LEVEL_MAX; i++) {
                assert_int_equal(rule_level_from_string(rule_level_to_string((enum rule_level)i), &l), 0);
                assert_int_equal(l, i);
        }
        assert_int_equal(rule_level_from_string("P0", &l), -EINVAL);
        assert_string_equal(rule_transition_to_string(RULE_CLEARED), "cleared");
}

/* Every allocation failing in turn: no crash, no leak (run under ASan). */
static void test_alloc_failures(void **state)
{
        const char *text = "rule temperature-critical {\n when source == \"sensor\" and (value >= crit or alarm) and "
                           "chip ~ \"c*\"\n for 10s\n clear value < crit - 5 for 60s\n level P3\n key "
                           "\"temp:{chip}/{label}\"\n title \"at {value} ({crit})\"\n description \"d\"\n}\n"
                           "rule b {\n when source == \"x\" and m[\"k\"] == \"v\"\n level P5\n key \"b\"\n title "
                           "\"t\"\n}\n";
        unsigned long total;
        struct ruleset *rs = NULL;
        struct diag *d;

        (void)state;
        xalloc_fail_at(0);
        d = diag_new();
        assert_int_equal(ruleset_parse_string("t", text, &rs, d), 0);
        ruleset_free(rs);
        diag_free(d);
        total = xalloc_fail_at(0);
        assert_true(total > 10);
        for (unsigned long n = 1; n <= total + 5; n++) {
                int r;

                d = diag_new();
                if (!d)
                        continue;
                rs = NULL;
                xalloc_fail_at(n);
                r = ruleset_parse_string("t", text, &rs, d);
                xalloc_fail_at(0);
                assert_true(r == 0 || r == -ENOMEM);
                if (r == 0)
                        ruleset_free(rs);
                diag_free(d);
        }
}

/* Hostile sizes: a condition of 100000 "and"-ed terms (no nesting) once
 * overflowed the stack of every recursive pass; now it is an error. */
static void test_condition_length_is_capped(void **state)
{
        static const char *const ops[] = {" and ", " + "};

        (void)state;
        for (size_t k = 0; k < 2; k++) {
                size_t cap = 100000 * 8 + 200, len = 0;
                char *t = malloc(cap);

                assert_non_null(t);
                len += (size_t)snprintf(t + len, cap - len, "rule big {\n when x");
                for (int i = 0; i < 100000; i++)
                        len += (size_t)snprintf(t + len, cap - len, "%sx", ops[k]);
                snprintf(t + len, cap - len, "%s\n level P3\n key \"k\"\n title \"t\"\n}\n", k == 1 ? " > 1" : "");
                expect_error(t, "condition longer than 1024 terms and operators");
                free(t);
        }
}

/* "too many errors" closes the list only when an error was really dropped. */
static void test_error_cap_is_exact(void **state)
{
        char text[2048];
        size_t len = 0;
        char *e;

        (void)state;
        for (int i = 1; i <= 50; i++)
                len += (size_t)snprintf(text + len, sizeof text - len, "bogus%d\n", i);
        e = parse_errors(text);
        assert_non_null(e);
        assert_null(strstr(e, "too many errors"));
        free(e);
        snprintf(text + len, sizeof text - len, "bogus51\n");
        e = parse_errors(text);
        assert_non_null(strstr(e, "too many errors; only the first 50 are shown"));
        free(e);
}

static void test_nul_byte_in_comment(void **state)
{
        static const char text[] = "rule a {\n when x # c\0mment\n level P3\n key \"k\"\n title \"t\"\n}\n";
        char path[] = "/tmp/weibao-nul-XXXXXX";
        int fd = mkstemp(path);
        struct diag *d = diag_new();
        struct ruleset *rs = NULL;

        (void)state;
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
        close(fd);
        assert_true(ruleset_load_file(path, &rs, d) < 0);
        assert_non_null(strstr(diag_get(d, 0), ":2:12: NUL byte in input"));
        diag_free(d);
        unlink(path);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_keyword_table),
                cmocka_unit_test(test_durations),
                cmocka_unit_test(test_numbers_and_strings),
                cmocka_unit_test(test_comments_and_continuation),
                cmocka_unit_test(test_rule_statement_errors),
                cmocka_unit_test(test_expression_errors),
                cmocka_unit_test(test_template_errors),
                cmocka_unit_test(test_recovery_and_cap),
                cmocka_unit_test(test_size_cap),
                cmocka_unit_test(test_nul_byte),
                cmocka_unit_test(test_include),
                cmocka_unit_test(test_format_round_trip),
                cmocka_unit_test(test_clear_forms),
                cmocka_unit_test(test_clear_after),
                cmocka_unit_test(test_levels),
                cmocka_unit_test(test_alloc_failures),
                cmocka_unit_test(test_condition_length_is_capped),
                cmocka_unit_test(test_error_cap_is_exact),
                cmocka_unit_test(test_nul_byte_in_comment),
                cmocka_unit_test(test_read_file_sizes),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
