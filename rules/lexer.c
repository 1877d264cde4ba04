/* lexer: turns the text of agent.conf and *.rules files into tokens.
 *
 * Assumptions: input is bytes, mostly ASCII; UTF-8 is passed through inside
 * strings and comments only. Columns count bytes from 1. A word is
 * [A-Za-z_][A-Za-z0-9_]* with '-' or '.' allowed between runs, so rule names
 * such as temperature-critical are one word; "crit-5" is therefore one word
 * too, and the rule compiler rejects it as a field with a hint to write
 * "crit - 5". A number directly followed by letters is a duration ("10s",
 * "1h30m"). A backslash at the end of a line continues the statement.
 * Lexical errors are reported here and surface as TOK_ERROR so the parser
 * can drop the statement without a second message. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/xalloc.h"
#include "internal.h"

/* Sorted by name: keyword_lookup() uses bsearch and keyword_table_check()
 * (run by the unit tests) keeps it that way. */
static const struct keyword {
        const char *name;
        enum kw kw;
} keywords[] = {
        {"agent", KW_AGENT},
        {"and", KW_AND},
        {"cases", KW_CASES},
        {"central", KW_CENTRAL},
        {"clear", KW_CLEAR},
        {"collector", KW_COLLECTOR},
        {"description", KW_DESCRIPTION},
        {"exists", KW_EXISTS},
        {"for", KW_FOR},
        {"include", KW_INCLUDE},
        {"key", KW_KEY},
        {"level", KW_LEVEL},
        {"not", KW_NOT},
        {"or", KW_OR},
        {"rule", KW_RULE},
        {"title", KW_TITLE},
        {"when", KW_WHEN},
};

static int keyword_cmp(const void *key, const void *elem)
{
        return strcmp(key, ((const struct keyword *)elem)->name);
}

enum kw keyword_lookup(const char *word)
{
        const struct keyword *k =
                bsearch(word, keywords, sizeof keywords / sizeof keywords[0], sizeof keywords[0], keyword_cmp);

        return k ? k->kw : KW_NONE;
}

const char *keyword_name(enum kw k)
{
        for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
                if (keywords[i].kw == k)
                        return keywords[i].name;
        return "?";
}

int keyword_table_check(void)
{
        size_t n = sizeof keywords / sizeof keywords[0];

        if (n != KW_MAX - 1)
                return -1;
        for (size_t i = 1; i < n; i++)
                if (strcmp(keywords[i - 1].name, keywords[i].name) >= 0)
                        return -1;
        return 0;
}

/* ---- durations and numbers ---- */

#define USEC_PER_SEC 1000000ULL
#define DURATION_LIMIT (365ULL * 24 * 3600 * USEC_PER_SEC)

/* Sorted by name too (a short table: linear search). */
static const struct unit {
        const char *name;
        uint64_t usec;
} units[] = {
        {"d", 24ULL * 3600 * USEC_PER_SEC},
        {"h", 3600ULL * USEC_PER_SEC},
        {"m", 60ULL * USEC_PER_SEC},
        {"ms", 1000ULL},
        {"s", USEC_PER_SEC},
        {"us", 1ULL},
};

int duration_parse(const char *s, size_t len, uint64_t *ret, const char **why)
{
        const char *p = s, *end = s + len;
        uint64_t total = 0;

        if (len == 0) {
                *why = "empty duration";
                return -EINVAL;
        }
        while (p < end) {
                uint64_t n = 0, mult = 0;
                const char *u;
                size_t ulen;

                if (!isdigit((unsigned char)*p)) {
                        *why = "a duration is a number followed by a unit (ms, s, m, h, d), such as 10s or 1h30m";
                        return -EINVAL;
                }
                while (p < end && isdigit((unsigned char)*p)) {
                        n = n * 10 + (uint64_t)(*p - '0');
                        if (n > DURATION_LIMIT) {
                                *why = "duration too large (the limit is 365d)";
                                return -ERANGE;
                        }
                        p++;
                }
                if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) {
                        *why = "durations take whole numbers; use a smaller unit such as 1500ms";
                        return -EINVAL;
                }
                u = p;
                while (p < end && isalpha((unsigned char)*p))
                        p++;
                ulen = (size_t)(p - u);
                if (ulen == 0) {
                        *why = "missing unit after the number (ms, s, m, h or d)";
                        return -EINVAL;
                }
                for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
                        if (strlen(units[i].name) == ulen && memcmp(units[i].name, u, ulen) == 0)
                                mult = units[i].usec;
                if (mult == 0) {
                        *why = "unknown duration unit; use ms, s, m, h or d";
                        return -EINVAL;
                }
                if (n > DURATION_LIMIT / mult || total + n * mult > DURATION_LIMIT) {
                        *why = "duration too large (the limit is 365d)";
                        return -ERANGE;
                }
                total += n * mult;
        }
        *ret = total;
        return 0;
}

void duration_format(uint64_t usec, char *buf, size_t size)
{
        static const struct unit order[] = {
                {"d", 24ULL * 3600 * USEC_PER_SEC},
                {"h", 3600ULL * USEC_PER_SEC},
                {"m", 60ULL * USEC_PER_SEC},
                {"s", USEC_PER_SEC},
                {"ms", 1000ULL},
                {"us", 1ULL},
        };
        size_t off = 0;

        if (size == 0)
                return;
        buf[0] = '\0';
        if (usec == 0) {
                snprintf(buf, size, "0s");
                return;
        }
        for (size_t i = 0; i < sizeof order / sizeof order[0] && off < size; i++) {
                uint64_t n = usec / order[i].usec;
                int w;

                if (n == 0)
                        continue;
                usec -= n * order[i].usec;
                w = snprintf(buf + off, size - off, "%llu%s", (unsigned long long)n, order[i].name);
                if (w < 0)
                        return;
                off += (size_t)w;
        }
}

void number_format(double v, char *buf, size_t size)
{
        if (v == 0 && !signbit(v)) {
                snprintf(buf, size, "0");
                return;
        }
        if (fabs(v) < 1e15 && v == (double)(long long)v) { /* range first: the cast of a larger value is undefined */
                snprintf(buf, size, "%lld", (long long)v);
                if (signbit(v) && v == 0)
                        snprintf(buf, size, "-0");
                return;
        }
        for (int prec = 1; prec <= 17; prec++) {
                snprintf(buf, size, "%.*g", prec, v);
                if (strtod(buf, NULL) == v)
                        return;
        }
}

void string_write(FILE *f, const char *s)
{
        fputc('"', f);
        for (; *s; s++) {
                switch (*s) {
                case '"':
                        fputs("\\\"", f);
                        break;
                case '\\':
                        fputs("\\\\", f);
                        break;
                case '\n':
                        fputs("\\n", f);
                        break;
                case '\t':
                        fputs("\\t", f);
                        break;
                case '\r':
                        fputs("\\r", f);
                        break;
                default:
                        fputc(*s, f);
                }
        }
        fputc('"', f);
}

static bool word_start(int c)
{
        return isalpha(c) || c == '_';
}

static bool word_char(int c)
{
        return isalnum(c) || c == '_';
}

/* Length of the word at p (0 if none). */
static size_t word_len(const char *p, const char *end)
{
        const char *q = p;

        if (q >= end || !word_start((unsigned char)*q))
                return 0;
        while (q < end && word_char((unsigned char)*q))
                q++;
        while (q + 1 < end && (*q == '-' || *q == '.') && word_char((unsigned char)q[1])) {
                q++;
                while (q < end && word_char((unsigned char)*q))
                        q++;
        }
        return (size_t)(q - p);
}

bool word_valid(const char *s)
{
        size_t len = strlen(s);

        return len > 0 && word_len(s, s + len) == len;
}

/* ---- tokens ---- */

static const char *const tok_names[TOK_TYPE_MAX] = {
        [TOK_EOF] = "end of file", [TOK_NEWLINE] = "end of line",
        [TOK_WORD] = "word",       [TOK_STRING] = "string",
        [TOK_NUMBER] = "number",   [TOK_DURATION] = "duration",
        [TOK_LBRACE] = "'{'",      [TOK_RBRACE] = "'}'",
        [TOK_LPAREN] = "'('",      [TOK_RPAREN] = "')'",
        [TOK_LBRACKET] = "'['",    [TOK_RBRACKET] = "']'",
        [TOK_COMMA] = "','",       [TOK_EQ] = "'=='",
        [TOK_NE] = "'!='",         [TOK_LT] = "'<'",
        [TOK_LE] = "'<='",         [TOK_GT] = "'>'",
        [TOK_GE] = "'>='",         [TOK_MATCH] = "'~'",
        [TOK_NOMATCH] = "'!~'",    [TOK_PLUS] = "'+'",
        [TOK_MINUS] = "'-'",       [TOK_STAR] = "'*'",
        [TOK_SLASH] = "'/'",       [TOK_ERROR] = "invalid input",
};

const char *tok_type_name(enum tok_type t)
{
        return t < TOK_TYPE_MAX ? tok_names[t] : "?";
}

void tok_describe(const struct tok *t, char *buf, size_t size)
{
        char tmp[40];

        switch (t->type) {
        case TOK_WORD:
                snprintf(buf, size, "'%.60s'", t->text);
                break;
        case TOK_STRING:
                snprintf(buf, size, "string \"%.40s%s\"", t->text, strlen(t->text) > 40 ? "..." : "");
                break;
        case TOK_NUMBER:
                number_format(t->num, tmp, sizeof tmp);
                snprintf(buf, size, "'%s'", tmp);
                break;
        case TOK_DURATION:
                duration_format(t->usec, tmp, sizeof tmp);
                snprintf(buf, size, "'%s'", tmp);
                break;
        default:
                snprintf(buf, size, "%s", tok_type_name(t->type));
        }
}

void tok_clear(struct tok *t)
{
        free(t->text);
        t->text = NULL;
}

void lexer_init(struct lexer *lx, const char *file, const char *text, size_t len, struct diag *d, unsigned *n_errors)
{
        lx->file = file;
        lx->p = text;
        lx->end = text + len;
        lx->line_start = text;
        lx->line = 1;
        lx->diag = d;
        lx->n_errors = n_errors;
}

static unsigned lx_col(const struct lexer *lx, const char *at)
{
        return (unsigned)(at - lx->line_start) + 1;
}

static void lx_error(struct lexer *lx, const char *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void lx_error(struct lexer *lx, const char *at, const char *fmt, ...)
{
        va_list ap;

        (*lx->n_errors)++;
        va_start(ap, fmt);
        diag_vadd(lx->diag, lx->file, lx->line, lx_col(lx, at), fmt, ap);
        va_end(ap);
}

static void skip_blank(struct lexer *lx)
{
        for (;;) {
                while (lx->p < lx->end && (*lx->p == ' ' || *lx->p == '\t' || *lx->p == '\r'))
                        lx->p++;
                if (lx->p < lx->end && *lx->p == '#') {
                        while (lx->p < lx->end && *lx->p != '\n') {
                                if (*lx->p == '\0')
                                        lx_error(lx, lx->p, "NUL byte in input");
                                lx->p++;
                        }
                        continue;
                }
                /* backslash-newline joins lines */
                if (lx->p < lx->end && *lx->p == '\\') {
                        const char *q = lx->p + 1;

                        while (q < lx->end && (*q == ' ' || *q == '\t' || *q == '\r'))
                                q++;
                        if (q < lx->end && *q == '\n') {
                                lx->p = q + 1;
                                lx->line++;
                                lx->line_start = lx->p;
                                continue;
                        }
                }
                return;
        }
}

static int lex_string(struct lexer *lx, struct tok *t)
{
        const char *start = lx->p;
        char *buf;
        size_t n = 0;
        bool bad = false;

        buf = xmalloc(CONF_STRING_MAX + 1);
        if (!buf)
                return -ENOMEM;
        lx->p++; /* opening quote */
        for (;;) {
                unsigned char c;

                if (lx->p >= lx->end || *lx->p == '\n') {
                        lx_error(lx, start, "unterminated string: expected '\"' before the end of the line");
                        bad = true;
                        break;
                }
                c = (unsigned char)*lx->p;
                if (c == '"') {
                        lx->p++;
                        break;
                }
                if (c == '\\') {
                        const char *esc = lx->p;
                        char out;

                        lx->p++;
                        if (lx->p >= lx->end || *lx->p == '\n') {
                                lx_error(lx, start, "unterminated string: expected '\"' before the end of the line");
                                bad = true;
                                break;
                        }
                        switch (*lx->p) {
                        case '"':
                                out = '"';
                                break;
                        case '\\':
                                out = '\\';
                                break;
                        case 'n':
                                out = '\n';
                                break;
                        case 't':
                                out = '\t';
                                break;
                        case 'r':
                                out = '\r';
                                break;
                        default:
                                if (!bad)
                                        lx_error(lx, esc,
                                                 "unknown escape '\\%c' in string; use \\\\, \\\", \\n, \\t or \\r",
                                                 isprint((unsigned char)*lx->p) ? *lx->p : '?');
                                bad = true;
                                out = '?';
                        }
                        lx->p++;
                        c = (unsigned char)out;
                } else {
                        if ((c < 0x20 && c != '\t') || c == 0x7f) {
                                if (!bad)
                                        lx_error(lx, lx->p, "control character 0x%02x in string; use \\n or \\t", c);
                                bad = true;
                        }
                        lx->p++;
                }
                if (n >= CONF_STRING_MAX) {
                        if (!bad)
                                lx_error(lx, start, "string longer than %d bytes", CONF_STRING_MAX);
                        bad = true;
                        continue;
                }
                buf[n++] = (char)c;
        }
        buf[n] = '\0';
        if (bad) {
                free(buf);
                t->type = TOK_ERROR;
                return 0;
        }
        t->type = TOK_STRING;
        t->text = buf;
        return 0;
}

static void lex_number(struct lexer *lx, struct tok *t)
{
        const char *start = lx->p, *q = lx->p;
        bool fraction = false;
        char tmp[64];
        size_t len;

        while (q < lx->end && isdigit((unsigned char)*q))
                q++;
        if (q + 1 < lx->end && *q == '.' && isdigit((unsigned char)q[1])) {
                fraction = true;
                q++;
                while (q < lx->end && isdigit((unsigned char)*q))
                        q++;
        }
        if (q < lx->end && (*q == 'e' || *q == 'E')) {
                const char *r = q + 1;

                if (r < lx->end && (*r == '+' || *r == '-'))
                        r++;
                if (r < lx->end && isdigit((unsigned char)*r)) {
                        fraction = true;
                        q = r;
                        while (q < lx->end && isdigit((unsigned char)*q))
                                q++;
                }
        }
        if (q < lx->end && (word_char((unsigned char)*q) || *q == '.')) {
                /* a duration such as 10s or 1h30m: the whole alphanumeric run */
                const char *why = NULL;
                uint64_t usec;

                (void)fraction;
                q = start;
                while (q < lx->end && (word_char((unsigned char)*q) || *q == '.'))
                        q++;
                lx->p = q;
                if (duration_parse(start, (size_t)(q - start), &usec, &why) < 0) {
                        lx_error(lx, start, "invalid duration '%.*s': %s", (int)((q - start) > 40 ? 40 : q - start),
                                 start, why);
                        t->type = TOK_ERROR;
                        return;
                }
                t->type = TOK_DURATION;
                t->usec = usec;
                return;
        }
        lx->p = q;
        len = (size_t)(q - start);
        if (len >= sizeof tmp) {
                lx_error(lx, start, "number too long");
                t->type = TOK_ERROR;
                return;
        }
        memcpy(tmp, start, len);
        tmp[len] = '\0';
        t->num = strtod(tmp, NULL);
        if (!isfinite(t->num)) {
                lx_error(lx, start, "number '%s' out of range", tmp);
                t->type = TOK_ERROR;
                return;
        }
        t->type = TOK_NUMBER;
}

int lexer_next(struct lexer *lx, struct tok *t)
{
        const char *p;
        unsigned char c;

        memset(t, 0, sizeof *t);
        t->file = lx->file;
        skip_blank(lx);
        t->line = lx->line;
        t->col = lx_col(lx, lx->p);
        if (lx->p >= lx->end) {
                t->type = TOK_EOF;
                return 0;
        }
        p = lx->p;
        c = (unsigned char)*p;
        if (c == '\n') {
                lx->p++;
                lx->line++;
                lx->line_start = lx->p;
                t->type = TOK_NEWLINE;
                return 0;
        }
        if (c == '"')
                return lex_string(lx, t);
        if (isdigit(c)) {
                lex_number(lx, t);
                return 0;
        }
        if (word_start(c)) {
                size_t len = word_len(p, lx->end);

                if (len > 256) {
                        lx_error(lx, p, "word longer than 256 bytes");
                        lx->p += len;
                        t->type = TOK_ERROR;
                        return 0;
                }
                t->text = xstrndup(p, len);
                if (!t->text)
                        return -ENOMEM;
                lx->p += len;
                t->type = TOK_WORD;
                t->kw = keyword_lookup(t->text);
                return 0;
        }
        lx->p++;
        switch (c) {
        case '{':
                t->type = TOK_LBRACE;
                return 0;
        case '}':
                t->type = TOK_RBRACE;
                return 0;
        case '(':
                t->type = TOK_LPAREN;
                return 0;
        case ')':
                t->type = TOK_RPAREN;
                return 0;
        case '[':
                t->type = TOK_LBRACKET;
                return 0;
        case ']':
                t->type = TOK_RBRACKET;
                return 0;
        case ',':
                t->type = TOK_COMMA;
                return 0;
        case '+':
                t->type = TOK_PLUS;
                return 0;
        case '-':
                t->type = TOK_MINUS;
                return 0;
        case '*':
                t->type = TOK_STAR;
                return 0;
        case '/':
                t->type = TOK_SLASH;
                return 0;
        case '~':
                t->type = TOK_MATCH;
                return 0;
        case '=':
                if (lx->p < lx->end && *lx->p == '=') {
                        lx->p++;
                        t->type = TOK_EQ;
                        return 0;
                }
                lx_error(lx, p, "unexpected '=': use '==' to compare");
                t->type = TOK_ERROR;
                return 0;
        case '!':
                if (lx->p < lx->end && *lx->p == '=') {
                        lx->p++;
                        t->type = TOK_NE;
                        return 0;
                }
                if (lx->p < lx->end && *lx->p == '~') {
                        lx->p++;
                        t->type = TOK_NOMATCH;
                        return 0;
                }
                lx_error(lx, p, "unexpected '!': use 'not', '!=' or '!~'");
                t->type = TOK_ERROR;
                return 0;
        case '<':
        case '>':
                if (lx->p < lx->end && *lx->p == '=') {
                        lx->p++;
                        t->type = c == '<' ? TOK_LE : TOK_GE;
                } else {
                        t->type = c == '<' ? TOK_LT : TOK_GT;
                }
                return 0;
        case '\\':
                lx_error(lx, p, "unexpected '\\': a continuation backslash must end the line");
                t->type = TOK_ERROR;
                return 0;
        default:
                break;
        }
        if (c == 0)
                lx_error(lx, p, "NUL byte in input");
        else if (isprint(c))
                lx_error(lx, p, "unexpected character '%c'", c);
        else
                lx_error(lx, p, "unexpected byte 0x%02x (text outside strings must be ASCII)", c);
        /* skip the rest of a UTF-8 sequence so one character gives one error */
        while (lx->p < lx->end && ((unsigned char)*lx->p & 0xc0) == 0x80)
                lx->p++;
        t->type = TOK_ERROR;
        return 0;
}
