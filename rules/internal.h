/* rules/internal.h: what the files of the rules module share and nobody
 * else sees: tokens, the generic block tree, compiled expressions and
 * templates, and the ruleset layout the evaluator walks.
 *
 * Ownership: a block tree owns its tokens' text; file names in positions are
 * interned in a struct srcnames whose owner outlives everything pointing
 * into it (the config, or the ruleset). */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../lib/event.h"
#include "conf.h"
#include "rules.h"

#define CONF_FILE_MAX (1024 * 1024) /* bytes per file or string */
#define CONF_STRING_MAX 4096        /* bytes per string literal */
#define CONF_INCLUDE_DEPTH 8        /* nested includes */
#define CONF_BLOCK_DEPTH 4          /* nested blocks */
#define CONF_EXPR_DEPTH 64          /* nesting inside one condition */
#define CONF_EXPR_NODES 1024        /* terms and operators in one condition */
#define DIAG_MAX 50                 /* messages kept in one struct diag */

#define RULE_KEY_MAX 256
#define RULE_TITLE_MAX 512
#define RULE_DESC_MAX 2048

/* ---- diagnostics helpers ---- */

/* True once the diagnostic list holds DIAG_MAX messages; parsers stop then. */
bool diag_full(const struct diag *d);
void diag_vadd(struct diag *d, const char *file, unsigned line, unsigned col, const char *fmt, va_list ap)
        __attribute__((format(printf, 5, 0)));

/* Sorts the messages added since the first start of them by file (in order
 * of first appearance), line and column: the parser reports syntax errors
 * before the compiler reports meaning, a reader wants them in file order. */
void diag_sort_from(struct diag *d, size_t start);

/* ---- interned source names ---- */

struct srcnames {
        char **names;
        size_t n;
};

/* Returns the interned copy of name, or NULL on allocation failure. */
const char *srcnames_intern(struct srcnames *s, const char *name);
void srcnames_clear(struct srcnames *s);

/* ---- tokens (lexer.c) ---- */

enum tok_type {
        TOK_EOF,
        TOK_NEWLINE,
        TOK_WORD,
        TOK_STRING,
        TOK_NUMBER,
        TOK_DURATION,
        TOK_LBRACE,
        TOK_RBRACE,
        TOK_LPAREN,
        TOK_RPAREN,
        TOK_LBRACKET,
        TOK_RBRACKET,
        TOK_COMMA,
        TOK_EQ,
        TOK_NE,
        TOK_LT,
        TOK_LE,
        TOK_GT,
        TOK_GE,
        TOK_MATCH,
        TOK_NOMATCH,
        TOK_PLUS,
        TOK_MINUS,
        TOK_STAR,
        TOK_SLASH,
        TOK_ERROR, /* the lexer already reported it */
        TOK_TYPE_MAX,
};

/* Keywords, in the order of the sorted table in lexer.c. Words that are not
 * keywords are KW_NONE. Keywords are reserved only where the grammar gives
 * them a meaning (a setting may still be called "level"). */
enum kw {
        KW_NONE,
        KW_AGENT,
        KW_AND,
        KW_CASES,
        KW_CENTRAL,
        KW_CLEAR,
        KW_COLLECTOR,
        KW_DESCRIPTION,
        KW_EXISTS,
        KW_FOR,
        KW_INCLUDE,
        KW_KEY,
        KW_LEVEL,
        KW_NOT,
        KW_OR,
        KW_RULE,
        KW_TITLE,
        KW_WHEN,
        KW_MAX,
};

struct tok {
        enum tok_type type;
        enum kw kw;
        unsigned line, col;
        const char *file; /* interned */
        char *text;       /* WORD: the word; STRING: decoded contents; else NULL */
        double num;       /* NUMBER */
        uint64_t usec;    /* DURATION */
};

struct lexer {
        const char *file; /* interned */
        const char *p, *end, *line_start;
        unsigned line;
        struct diag *diag;
        unsigned *n_errors;
};

void lexer_init(struct lexer *lx, const char *file, const char *text, size_t len, struct diag *d, unsigned *n_errors);
/* Reads the next token into *t (t->text owned by the caller, freed with
 * tok_clear). Returns 0, or -ENOMEM. Lexical errors give TOK_ERROR after
 * a diagnostic. */
int lexer_next(struct lexer *lx, struct tok *t);
void tok_clear(struct tok *t);
enum kw keyword_lookup(const char *word);
const char *keyword_name(enum kw k);
/* For tests: 0 when the keyword table is sorted. */
int keyword_table_check(void);
/* "'foo'", "string \"x\"", "end of line"...: how an error names a token. */
void tok_describe(const struct tok *t, char *buf, size_t size);
const char *tok_type_name(enum tok_type t);

/* Parses a duration word such as "1h30m" from s; returns 0, -EINVAL with an
 * explanation in *why, or -ERANGE. */
int duration_parse(const char *s, size_t len, uint64_t *ret, const char **why);
/* Shortest text that reads back as the same double ("85", "85.5"). */
void number_format(double v, char *buf, size_t size);
/* Writes s as a double-quoted string with escapes. */
void string_write(FILE *f, const char *s);
/* True when s lexes as one WORD token. */
bool word_valid(const char *s);

/* ---- generic block tree (parser.c) ---- */

struct cblock;

struct cstmt {
        struct tok *toks; /* toks[0] is the statement's keyword word */
        size_t n_toks;
        struct cblock *block; /* the "{ ... }" that ended the statement, or NULL */
        bool bad;             /* an error was already reported; skip quietly */
};

struct cblock {
        struct cstmt *stmts;
        size_t n;
};

struct parse_opts {
        bool allow_include;
};

/* Parses text (of file name, interned in names) into a fresh tree. Includes
 * are read relative to the directory of name. Returns 0 (caller frees with
 * cblock_free) even with syntax errors (counted in *n_errors, the tree holds
 * what parsed), or -ENOMEM. */
int conf_parse_text(const char *name, const char *text, size_t len, struct srcnames *names,
                    const struct parse_opts *opts, struct diag *d, unsigned *n_errors, struct cblock **ret);
void cblock_free(struct cblock *b);
/* Reads a regular file of at most CONF_FILE_MAX bytes. Returns 0 and a
 * NUL-terminated copy (caller frees), -EFBIG, -EINVAL (not a regular file)
 * or another negative errno. */
int conf_read_file(const char *path, char **ret, size_t *ret_len);
/* Adds an error at t's position and counts it. */
void conf_error(struct diag *d, unsigned *n_errors, const struct tok *t, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* ---- compiled expressions (compile.c, eval.c) ---- */

enum builtin {
        BUILTIN_NONE,
        BUILTIN_SOURCE,
        BUILTIN_NAME,
        BUILTIN_OBJECT,
        BUILTIN_VALUE,
        BUILTIN_UNIT,
        BUILTIN_MAX,
};

enum enode_kind {
        /* conditions */
        EN_AND,
        EN_OR,
        EN_NOT,
        EN_CMP,
        EN_GLOB,
        EN_TRUTHY,
        EN_EXISTS,
        /* values */
        EN_NUM,
        EN_STR,
        EN_FIELD,
        EN_ARITH,
        EN_NEG,
        EN_KIND_MAX,
};

enum glob_kind {
        GLOB_EXACT,    /* no wildcard: strcmp */
        GLOB_PREFIX,   /* "abc*" */
        GLOB_SUFFIX,   /* "*abc" */
        GLOB_CONTAINS, /* "*abc*": strstr */
        GLOB_FNMATCH,
};

/* What an EN_CMP compares, known at compile time from its operands' types:
 * when one side can only be a number (or missing), the comparison holds only
 * if both sides are numbers, so it needs no value of the other type. */
enum cmp_type {
        CMP_ANY, /* attribute against attribute: the types meet per event */
        CMP_NUM,
        CMP_STR,
};

/* A field reference: a built-in, or an attribute slot of the ruleset. */
struct fieldref {
        enum builtin builtin;
        int slot; /* -1 for built-ins */
};

/* What evaluation reads comes first: the first 40 of 64 bytes. */
struct enode {
        enum enode_kind kind;
        int op;                /* EN_CMP: TOK_EQ..TOK_GE; EN_ARITH: TOK_PLUS..TOK_SLASH; EN_GLOB: TOK_MATCH/NOMATCH */
        int a, b;              /* children (node indices), -1 if none */
        enum cmp_type cmp;     /* EN_CMP */
        enum glob_kind glob;   /* EN_GLOB */
        struct fieldref field; /* EN_FIELD, EN_EXISTS */
        double num;            /* EN_NUM */
        char *str;             /* EN_STR, EN_GLOB pattern */
        size_t len;            /* EN_STR/EN_GLOB: strlen(str) */
        char *field_text;      /* EN_FIELD, EN_EXISTS: as written: "chip", "varbind[\"x\"]" */
};

struct expr {
        struct enode *nodes;
        size_t n, cap;
        int root;
};

/* ---- templates (template.c) ---- */

struct tseg {
        char *text; /* literal text, or NULL for a field */
        size_t len;
        struct fieldref field;
};

struct tmpl {
        char *src; /* as written (decoded), for formatting */
        struct tseg *segs;
        size_t n;
};

struct slot_table; /* attribute name -> slot, built while compiling */

/* Resolves a field name to a built-in or a slot (added if new). Returns 0,
 * -ENOMEM. */
int slot_table_resolve(struct slot_table *st, const char *name, struct fieldref *ret);

/* Compiles src; on error returns -EINVAL with a message in *why (static or
 * in whybuf), or -ENOMEM. */
int tmpl_compile(struct tmpl *t, const char *src, struct slot_table *st, char *whybuf, size_t whysize);
void tmpl_free(struct tmpl *t);

/* The event an expression or template is evaluated against, with its
 * attributes bound to the ruleset's slots. */
struct eval_ctx {
        const struct event *e;
        const struct event_attr **slot_attr;
        uint32_t *slot_gen;
        uint32_t gen;
};

static inline const struct event_attr *eval_slot(const struct eval_ctx *c, int slot)
{
        return c->slot_gen[slot] == c->gen ? c->slot_attr[slot] : NULL;
}

/* Renders t into buf (size bytes, always NUL-terminated). Missing fields
 * render as "?" unless strict, in which case it returns -ENOENT. Over-long
 * text is cut at a UTF-8 boundary; *ret_full_len gets the untruncated length.
 * Only when the text was cut (full length >= size) and ret_hash is not NULL,
 * *ret_hash gets the FNV-1a hash of the whole text, which the caller can no
 * longer compute; a text that fits is not hashed here. */
int tmpl_render(const struct tmpl *t, const struct eval_ctx *c, bool strict, char *buf, size_t size,
                size_t *ret_full_len, uint64_t *ret_hash);

/* ---- rules and rulesets ---- */

struct rule {
        /* evaluation plan (ruleset_finish), first so that it shares cache
         * lines: the when condition is the conjunction of the string
         * equalities and globs in pre (outcomes cached per event) and the
         * nodes in rest; the dispatch conjunct is left out, dispatch already
         * guarantees it */
        struct prefilter {
                struct fieldref field;
                bool glob;                /* field ~ pattern (or !~) rather than field == lit */
                bool negate;              /* !~ */
                uint64_t hash;            /* hash of lit */
                const char *lit;          /* literal or pattern, owned by the node */
                const struct enode *node; /* the glob node */
                size_t id;                /* distinct (lit) or (field, pattern) number in the ruleset */
        } * pre;
        size_t n_pre;
        int *rest;
        size_t n_rest;
        size_t index;
        size_t key_id; /* rules with the same key template share one rendering per event */
        struct expr when;
        uint64_t name_hash;

        char *name;
        const char *file; /* interned in the ruleset */
        unsigned line, col;
        struct expr clear; /* root -1: "not when", immediately; also -1 with has_clear_after */
        bool has_for, has_clear_for;
        bool has_clear_after; /* "clear after D": no clear condition, the fault ends D after the last when */
        uint64_t for_usec, clear_for_usec, clear_after_usec;
        enum rule_level level;
        struct tmpl key, title, desc;
        bool has_desc;
        char *dispatch_source; /* the "source == x" conjunct, or NULL */
};

/* Index of a field in per-event caches: built-ins first, then slots. */
static inline size_t fieldref_index(const struct fieldref *f)
{
        return f->builtin != BUILTIN_NONE ? (size_t)f->builtin : (size_t)BUILTIN_MAX + (size_t)f->slot;
}

/* The rules an event of one source is evaluated against, as bitmaps over
 * rule indices (bit i of word i / 64), so that visiting the set bits in
 * order visits rules in load order.
 *
 * Most rules of one source also differ by an equality on one more field
 * (chip == "...", object == "..."). ruleset_finish picks, per entry, the
 * field whose literals rule out the most rules even for the commonest value
 * (disc), and keeps for each of its literals the rules whose when can still
 * hold when the event's field has that value: the rules without an
 * equality on disc, and those whose first equality on it names that
 * literal. Every other rule's when is false for such an event; the
 * evaluator still visits those that have live states, whose clear must see
 * every event of their source. */
struct disc_lit {
        const char *lit; /* owned by a rule's node */
        uint64_t hash;   /* hash_words */
        size_t id;       /* the literal's prefilter id */
        uint64_t *cand;
};

struct dispatch_entry {
        char *source; /* NULL for the entry of unknown sources */
        uint64_t hash;
        uint64_t *rules; /* the source's rules and all undispatched ones */
        bool has_disc;   /* else every rule is a candidate */
        struct fieldref disc;
        uint64_t *undisc; /* candidates when disc is none of the literals */
        struct disc_lit *lits;
        size_t n_lits, lit_cap; /* lit_cap: power of two, table in lit_index */
        uint32_t *lit_index;    /* open addressing: lits entry + 1 */
};

struct slot_table {
        char **names;
        uint64_t *hashes;
        size_t n, cap;
        uint32_t *index; /* open addressing: slot + 1, 0 empty */
        size_t index_cap;
};

struct ruleset {
        struct rule **rules;
        size_t n, cap;
        struct srcnames names;
        struct slot_table slots;
        struct dispatch_entry *disp;
        size_t n_disp, disp_cap;    /* disp_cap: power of two, table of n_disp entries in disp_index */
        uint32_t *disp_index;       /* open addressing: entry + 1 */
        struct dispatch_entry wild; /* rules without a dispatch source, for unknown sources */
        size_t n_words;             /* of each bitmap over rule indices */
        uint32_t *name_index;       /* open addressing over rules by name: index + 1 */
        size_t name_cap;
        struct rejected { /* rules that had errors, for duplicate-name checks */
                char *name;
                const char *file;
                unsigned line;
        } * rejected;
        size_t n_rejected;
        size_t n_keys;  /* distinct key templates */
        size_t n_lits;  /* distinct literals of equality prefilters */
        size_t n_globs; /* distinct (field, pattern) of glob prefilters */
};

uint64_t hash_str(const char *s);
uint64_t hash_mem(uint64_t h, const void *p, size_t n);
#define HASH_INIT 1469598103934665603ULL

/* A hash for the evaluator's own lookups (equality prefilters, the
 * literals of dispatch entries, the key filter in front of the state
 * table): eight bytes per multiply where FNV-1a needs one per byte. Its
 * values depend on the byte order and never leave the process. What is
 * shown (the suffix of a cut key) or orders output (the state table's
 * buckets, which rule_engine_tick() walks) stays FNV-1a. */
static inline uint64_t hash_words(const char *s, size_t len)
{
        uint64_t h = (uint64_t)len * 0x9e3779b97f4a7c15ULL, w;

        for (; len >= 8; s += 8, len -= 8) {
                memcpy(&w, s, 8);
                h = (h ^ w) * 0xff51afd7ed558ccdULL;
                h ^= h >> 32;
        }
        w = 0;
        memcpy(&w, s, len);
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
        return h ^ (h >> 33);
}

/* Slot of an attribute name in a finished ruleset, or -1. */
int slot_table_find(const struct slot_table *st, const char *name, uint64_t hash);
void slot_table_free(struct slot_table *st);

/* ---- building a ruleset from trees (compile.c) ---- */

struct ruleset *ruleset_new(void);
/* Compiles every "rule" statement of tree into rs; other statements are
 * reported as errors unless rules_only is false, in which case they are
 * skipped (the config interprets them). Returns 0 or -ENOMEM; errors are
 * counted in *n_errors. */
int ruleset_add_tree(struct ruleset *rs, const struct cblock *tree, bool rules_only, struct diag *d,
                     unsigned *n_errors);
/* Builds the dispatch and name indices. Returns 0 or -ENOMEM. */
int ruleset_finish(struct ruleset *rs);
/* Parses a file of rules into rs (include allowed). */
int ruleset_add_file(struct ruleset *rs, const char *path, struct diag *d, unsigned *n_errors);
/* The rule named name, or NULL (after ruleset_finish). */
const struct rule *ruleset_find(const struct ruleset *rs, const char *name, uint64_t hash);

void expr_format(const struct expr *x, FILE *f);
bool expr_eval_bool(const struct expr *x, const struct eval_ctx *c);
/* fnmatch semantics, with the pattern's shape classified at compile time. */
bool glob_match(const struct enode *n, const char *s);

/* ---- values seen by conditions and templates ---- */

enum val_type {
        VAL_MISSING,
        VAL_NUM,
        VAL_STR,
};

struct val {
        enum val_type type;
        double num;
        const char *str;
};

static inline struct val field_value(const struct eval_ctx *c, const struct fieldref *f)
{
        struct val v = {.type = VAL_MISSING};
        const struct event *e = c->e;
        const struct event_attr *a;

        switch (f->builtin) {
        case BUILTIN_SOURCE:
                v.str = e->source;
                break;
        case BUILTIN_NAME:
                v.str = e->name;
                break;
        case BUILTIN_OBJECT:
                v.str = e->object;
                break;
        case BUILTIN_UNIT:
                v.str = e->unit;
                break;
        case BUILTIN_VALUE:
                if (e->has_value) {
                        v.type = VAL_NUM;
                        v.num = e->value;
                }
                return v;
        default:
                a = eval_slot(c, f->slot);
                if (!a)
                        return v;
                if (a->type == EVENT_ATTR_NUMBER) {
                        v.type = VAL_NUM;
                        v.num = a->num;
                } else {
                        v.str = a->str;
                }
        }
        if (v.str)
                v.type = VAL_STR;
        return v;
}

/* The largest length <= len that does not split a UTF-8 sequence of s. */
size_t utf8_cut(const char *s, size_t len);
/* Numbers as templates print them: "85", "85.5", at most 15 digits. */
void number_format_natural(double v, char *buf, size_t size);
