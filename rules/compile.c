/* compile: rule blocks of the generic tree into compiled rules, and the
 * ruleset around them (dispatch index, attribute slots, formatting).
 *
 * Conditions are compiled into a small array of nodes per rule with static
 * types, so a type error such as "abc" + 1 is reported at compile time with
 * its position, and evaluation does no parsing. Every attribute name that
 * any rule mentions gets a slot number in the ruleset; the evaluator binds
 * an event's attributes to slots once per event instead of searching the
 * attributes for every field reference of every rule.
 *
 * Dispatch: the "source == \"x\"" conjunct at the top of a when condition
 * puts the rule in the list for source x; an event only meets the rules of
 * its own source and the rules without such a conjunct. Within a source,
 * an equality on one more field narrows the candidates further (struct
 * dispatch_entry in internal.h). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/xalloc.h"
#include "internal.h"

static const char *const level_names[RULE_LEVEL_MAX] = {
        [RULE_LEVEL_P1] = "P1", [RULE_LEVEL_P2] = "P2", [RULE_LEVEL_P3] = "P3",
        [RULE_LEVEL_P4] = "P4", [RULE_LEVEL_P5] = "P5",
};

const char *rule_level_to_string(enum rule_level level)
{
        return level < RULE_LEVEL_MAX ? level_names[level] : "?";
}

int rule_level_from_string(const char *s, enum rule_level *ret)
{
        for (int i = 0; i < RULE_LEVEL_MAX; i++)
                if (strcmp(s, level_names[i]) == 0) {
                        *ret = (enum rule_level)i;
                        return 0;
                }
        return -EINVAL;
}

static const char *const transition_names[RULE_TRANSITION_MAX] = {
        [RULE_FIRING] = "firing",
        [RULE_REPEAT] = "repeat",
        [RULE_CLEARED] = "cleared",
};

const char *rule_transition_to_string(enum rule_transition t)
{
        return t < RULE_TRANSITION_MAX ? transition_names[t] : "?";
}

const char *rule_name(const struct rule *r)
{
        return r->name;
}

uint64_t rule_clear_after_usec(const struct rule *r)
{
        return r->has_clear_after ? r->clear_after_usec : 0;
}

enum rule_level rule_get_level(const struct rule *r)
{
        return r->level;
}

/* ---- attribute slots ---- */

static const char *const builtin_names[BUILTIN_MAX] = {
        [BUILTIN_SOURCE] = "source", [BUILTIN_NAME] = "name", [BUILTIN_OBJECT] = "object",
        [BUILTIN_VALUE] = "value",   [BUILTIN_UNIT] = "unit",
};

int slot_table_find(const struct slot_table *st, const char *name, uint64_t hash)
{
        size_t mask = st->index_cap - 1;

        if (st->index_cap == 0)
                return -1;
        for (size_t i = hash & mask;; i = (i + 1) & mask) {
                uint32_t v = st->index[i];

                if (v == 0)
                        return -1;
                if (st->hashes[v - 1] == hash && strcmp(st->names[v - 1], name) == 0)
                        return (int)(v - 1);
        }
}

static int slot_index_rebuild(struct slot_table *st, size_t cap)
{
        uint32_t *idx = xcalloc(cap, sizeof *idx);

        if (!idx)
                return -ENOMEM;
        for (size_t s = 0; s < st->n; s++) {
                size_t i = st->hashes[s] & (cap - 1);

                while (idx[i] != 0)
                        i = (i + 1) & (cap - 1);
                idx[i] = (uint32_t)(s + 1);
        }
        free(st->index);
        st->index = idx;
        st->index_cap = cap;
        return 0;
}

int slot_table_resolve(struct slot_table *st, const char *name, struct fieldref *ret)
{
        uint64_t h;
        int s;

        for (int b = BUILTIN_NONE + 1; b < BUILTIN_MAX; b++)
                if (strcmp(name, builtin_names[b]) == 0) {
                        ret->builtin = (enum builtin)b;
                        ret->slot = -1;
                        return 0;
                }
        h = hash_str(name);
        s = slot_table_find(st, name, h);
        if (s < 0) {
                char *copy;

                if (st->n == st->cap) {
                        size_t cap = st->cap ? st->cap * 2 : 16;
                        char **names = xrealloc(st->names, cap * sizeof *names);
                        uint64_t *hashes;

                        if (!names)
                                return -ENOMEM;
                        st->names = names;
                        hashes = xrealloc(st->hashes, cap * sizeof *hashes);
                        if (!hashes)
                                return -ENOMEM;
                        st->hashes = hashes;
                        st->cap = cap;
                }
                if ((st->n + 1) * 2 > st->index_cap &&
                    slot_index_rebuild(st, st->index_cap ? st->index_cap * 2 : 32) < 0)
                        return -ENOMEM;
                copy = xstrdup(name);
                if (!copy)
                        return -ENOMEM;
                st->names[st->n] = copy;
                st->hashes[st->n] = h;
                st->n++;
                if (slot_index_rebuild(st, st->index_cap) < 0) {
                        st->n--;
                        free(copy);
                        return -ENOMEM;
                }
                s = (int)(st->n - 1);
        }
        ret->builtin = BUILTIN_NONE;
        ret->slot = s;
        return 0;
}

void slot_table_free(struct slot_table *st)
{
        for (size_t i = 0; i < st->n; i++)
                free(st->names[i]);
        free(st->names);
        free(st->hashes);
        free(st->index);
        memset(st, 0, sizeof *st);
}

/* ---- expressions ---- */

enum vtype {
        VT_BOOL, /* a condition */
        VT_NUM,
        VT_STR,
        VT_ANY, /* an attribute: number or string, known only per event */
};

struct xparser {
        const struct tok *toks;
        size_t n, i;
        struct expr *x;
        struct slot_table *st;
        struct diag *d;
        unsigned *n_errors;
        bool failed, oom, stop_at_for;
        unsigned depth;
};

static const struct tok *xp_peek(const struct xparser *p)
{
        static const struct tok eol = {.type = TOK_NEWLINE};

        return p->i < p->n ? &p->toks[p->i] : &eol;
}

/* Position for an error at the current token (the last one at the end). */
static const struct tok *xp_pos(const struct xparser *p)
{
        return p->i < p->n ? &p->toks[p->i] : &p->toks[p->n - 1];
}

static void xp_error(struct xparser *p, const struct tok *at, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void xp_error(struct xparser *p, const struct tok *at, const char *fmt, ...)
{
        va_list ap;

        if (p->failed)
                return;
        p->failed = true;
        (*p->n_errors)++;
        va_start(ap, fmt);
        diag_vadd(p->d, at->file, at->line, at->col, fmt, ap);
        va_end(ap);
}

static void xp_expected(struct xparser *p, const char *what)
{
        char got[96];

        tok_describe(xp_peek(p), got, sizeof got);
        xp_error(p, xp_pos(p), "expected %s, got %s", what, got);
}

static bool at_end(const struct xparser *p)
{
        const struct tok *t = xp_peek(p);

        return t->type == TOK_NEWLINE || (p->stop_at_for && t->type == TOK_WORD && t->kw == KW_FOR);
}

static int node_new(struct xparser *p, enum enode_kind kind)
{
        struct expr *x = p->x;
        struct enode *n;

        if (p->failed)
                return -1;
        /* Chains of "and" or "+" grow without nesting; every pass over the
         * tree recurses per node, so its size is capped, not just its depth. */
        if (x->n >= CONF_EXPR_NODES) {
                xp_error(p, xp_pos(p), "condition longer than %d terms and operators", CONF_EXPR_NODES);
                return -1;
        }
        if (x->n == x->cap) {
                size_t cap = x->cap ? x->cap * 2 : 8;
                struct enode *v = xrealloc(x->nodes, cap * sizeof *v);

                if (!v) {
                        p->oom = p->failed = true;
                        return -1;
                }
                x->nodes = v;
                x->cap = cap;
        }
        n = &x->nodes[x->n];
        memset(n, 0, sizeof *n);
        n->kind = kind;
        n->a = n->b = -1;
        n->field.slot = -1;
        return (int)x->n++;
}

static const char *vtype_name(enum vtype t)
{
        switch (t) {
        case VT_BOOL:
                return "a condition";
        case VT_NUM:
                return "a number";
        case VT_STR:
                return "a string";
        default:
                return "a field";
        }
}

static int parse_or(struct xparser *p, enum vtype *ret_type);

static int to_cond(struct xparser *p, int idx, enum vtype t)
{
        int n;

        if (idx < 0 || t == VT_BOOL)
                return idx;
        n = node_new(p, EN_TRUTHY);
        if (n >= 0)
                p->x->nodes[n].a = idx;
        return n;
}

static int parse_field(struct xparser *p, enum vtype *ret_type, int kind)
{
        const struct tok *t = xp_peek(p);
        struct fieldref f;
        char *full = NULL, *key = NULL;
        int n;

        if (t->type != TOK_WORD) {
                xp_expected(p, "a field name");
                return -1;
        }
        if (strchr(t->text, '-')) {
                const char *dash = strchr(t->text, '-');

                xp_error(p, t, "unknown field '%s': field names cannot contain '-'; write '%.*s - %s' to subtract",
                         t->text, (int)(dash - t->text), t->text, dash + 1);
                return -1;
        }
        p->i++;
        if (xp_peek(p)->type == TOK_LBRACKET) {
                p->i++;
                if (xp_peek(p)->type != TOK_STRING) {
                        xp_expected(p, "a quoted key such as \"IF-MIB::ifDescr\" inside '[ ]'");
                        return -1;
                }
                key = xp_peek(p)->text;
                p->i++;
                if (xp_peek(p)->type != TOK_RBRACKET) {
                        xp_expected(p, "']'");
                        return -1;
                }
                p->i++;
                full = xasprintf("%s[%s]", t->text, key);
        } else {
                full = xstrdup(t->text);
        }
        if (!full || slot_table_resolve(p->st, full, &f) < 0) {
                free(full);
                p->oom = p->failed = true;
                return -1;
        }
        free(full);
        n = node_new(p, (enum enode_kind)kind);
        if (n < 0)
                return -1;
        p->x->nodes[n].field = f;
        p->x->nodes[n].field_text = xstrdup(t->text);
        if (key)
                p->x->nodes[n].str = xstrdup(key);
        if (!p->x->nodes[n].field_text || (key && !p->x->nodes[n].str)) {
                p->oom = p->failed = true;
                return -1;
        }
        if (f.builtin == BUILTIN_VALUE)
                *ret_type = VT_NUM;
        else if (f.builtin != BUILTIN_NONE)
                *ret_type = VT_STR;
        else
                *ret_type = VT_ANY;
        return n;
}

static int parse_primary(struct xparser *p, enum vtype *ret_type)
{
        const struct tok *t = xp_peek(p);
        int n;

        switch (t->type) {
        case TOK_NUMBER:
                n = node_new(p, EN_NUM);
                if (n < 0)
                        return -1;
                p->x->nodes[n].num = t->num;
                p->i++;
                *ret_type = VT_NUM;
                return n;
        case TOK_STRING:
                n = node_new(p, EN_STR);
                if (n < 0)
                        return -1;
                p->x->nodes[n].str = xstrdup(t->text);
                if (!p->x->nodes[n].str) {
                        p->oom = p->failed = true;
                        return -1;
                }
                p->x->nodes[n].len = strlen(t->text);
                p->i++;
                *ret_type = VT_STR;
                return n;
        case TOK_DURATION:
                xp_error(p, t, "a duration cannot be used in a condition; durations go after 'for'");
                return -1;
        case TOK_LPAREN: {
                const struct tok *open = t;

                if (++p->depth > CONF_EXPR_DEPTH) {
                        xp_error(p, t, "condition nested more than %d deep", CONF_EXPR_DEPTH);
                        return -1;
                }
                p->i++;
                n = parse_or(p, ret_type);
                if (n < 0)
                        return -1;
                if (xp_peek(p)->type != TOK_RPAREN) {
                        char got[96], what[64];

                        tok_describe(xp_peek(p), got, sizeof got);
                        snprintf(what, sizeof what, "')' to close '(' at column %u", open->col);
                        xp_error(p, xp_pos(p), "expected %s, got %s", what, got);
                        return -1;
                }
                p->i++;
                p->depth--;
                return n;
        }
        case TOK_WORD:
                if (t->kw == KW_EXISTS && p->i + 1 < p->n && p->toks[p->i + 1].type == TOK_LPAREN) {
                        enum vtype ft = VT_ANY;

                        p->i += 2;
                        n = parse_field(p, &ft, EN_EXISTS);
                        if (n < 0)
                                return -1;
                        if (xp_peek(p)->type != TOK_RPAREN) {
                                xp_expected(p, "')' after the field of exists(");
                                return -1;
                        }
                        p->i++;
                        *ret_type = VT_BOOL;
                        return n;
                }
                if (t->kw == KW_AND || t->kw == KW_OR || t->kw == KW_NOT || t->kw == KW_FOR) {
                        xp_expected(p, "a field, number, string or '('");
                        return -1;
                }
                return parse_field(p, ret_type, EN_FIELD);
        default:
                xp_expected(p, "a field, number, string or '('");
                return -1;
        }
}

static bool is_numeric(enum vtype t)
{
        return t == VT_NUM || t == VT_ANY;
}

static int parse_unary(struct xparser *p, enum vtype *ret_type)
{
        const struct tok *t = xp_peek(p);
        enum vtype vt = VT_ANY;
        int a, n;

        if (t->type != TOK_MINUS)
                return parse_primary(p, ret_type);
        if (++p->depth > CONF_EXPR_DEPTH) {
                xp_error(p, t, "condition nested more than %d deep", CONF_EXPR_DEPTH);
                return -1;
        }
        p->i++;
        a = parse_unary(p, &vt);
        p->depth--;
        if (a < 0)
                return -1;
        if (!is_numeric(vt)) {
                xp_error(p, t, "'-' needs a number, got %s", vtype_name(vt));
                return -1;
        }
        *ret_type = VT_NUM;
        if (p->x->nodes[a].kind == EN_NUM) {
                p->x->nodes[a].num = -p->x->nodes[a].num;
                return a;
        }
        n = node_new(p, EN_NEG);
        if (n >= 0)
                p->x->nodes[n].a = a;
        return n;
}

static int arith(struct xparser *p, int l, enum vtype lt, const struct tok *op, int r, enum vtype rt)
{
        struct enode *nodes;
        int n;

        if (!is_numeric(lt) || !is_numeric(rt)) {
                xp_error(p, op, "%s needs numbers on both sides, got %s", tok_type_name(op->type),
                         vtype_name(is_numeric(lt) ? rt : lt));
                return -1;
        }
        nodes = p->x->nodes;
        if (op->type == TOK_SLASH && nodes[r].kind == EN_NUM && nodes[r].num == 0) {
                xp_error(p, op, "division by zero");
                return -1;
        }
        if (nodes[l].kind == EN_NUM && nodes[r].kind == EN_NUM) {
                double a = nodes[l].num, b = nodes[r].num, v;

                v = op->type == TOK_PLUS    ? a + b
                    : op->type == TOK_MINUS ? a - b
                    : op->type == TOK_STAR  ? a * b
                                            : (b != 0 ? a / b : NAN);
                if (isfinite(v)) {
                        /* the right node stays behind unused; harmless */
                        nodes[l].num = v;
                        return l;
                }
                if (op->type == TOK_SLASH && b == 0) {
                        xp_error(p, op, "division by zero");
                        return -1;
                }
        }
        n = node_new(p, EN_ARITH);
        if (n < 0)
                return -1;
        p->x->nodes[n].op = op->type;
        p->x->nodes[n].a = l;
        p->x->nodes[n].b = r;
        return n;
}

static int parse_product(struct xparser *p, enum vtype *ret_type)
{
        enum vtype lt = VT_ANY, rt = VT_ANY;
        int l = parse_unary(p, &lt);

        while (l >= 0 && (xp_peek(p)->type == TOK_STAR || xp_peek(p)->type == TOK_SLASH)) {
                const struct tok *op = xp_peek(p);
                int r;

                p->i++;
                r = parse_unary(p, &rt);
                if (r < 0)
                        return -1;
                l = arith(p, l, lt, op, r, rt);
                lt = VT_NUM;
        }
        *ret_type = lt;
        return l;
}

static int parse_sum(struct xparser *p, enum vtype *ret_type)
{
        enum vtype lt = VT_ANY, rt = VT_ANY;
        int l = parse_product(p, &lt);

        while (l >= 0 && (xp_peek(p)->type == TOK_PLUS || xp_peek(p)->type == TOK_MINUS)) {
                const struct tok *op = xp_peek(p);
                int r;

                p->i++;
                r = parse_product(p, &rt);
                if (r < 0)
                        return -1;
                l = arith(p, l, lt, op, r, rt);
                lt = VT_NUM;
        }
        *ret_type = lt;
        return l;
}

static enum glob_kind glob_classify(const char *pat)
{
        size_t len = strlen(pat);
        size_t specials = strcspn(pat, "*?[\\");

        if (specials == len)
                return GLOB_EXACT;
        if (len > 0 && pat[len - 1] == '*' && specials == len - 1)
                return GLOB_PREFIX;
        if (pat[0] == '*' && strcspn(pat + 1, "*?[\\") == len - 1)
                return GLOB_SUFFIX;
        if (len >= 2 && pat[0] == '*' && pat[len - 1] == '*' && strcspn(pat + 1, "*?[\\") == len - 2)
                return GLOB_CONTAINS;
        return GLOB_FNMATCH;
}

static int parse_cmp(struct xparser *p, enum vtype *ret_type)
{
        const struct tok *op, *lstart = xp_peek(p);
        enum vtype lt = VT_ANY, rt = VT_ANY;
        int l, r, n;

        l = parse_sum(p, &lt);
        if (l < 0)
                return -1;
        op = xp_peek(p);
        switch (op->type) {
        case TOK_EQ:
        case TOK_NE:
        case TOK_LT:
        case TOK_LE:
        case TOK_GT:
        case TOK_GE:
                p->i++;
                r = parse_sum(p, &rt);
                if (r < 0)
                        return -1;
                if (lt == VT_BOOL || rt == VT_BOOL) {
                        xp_error(p, op, "%s compares values, not conditions", tok_type_name(op->type));
                        return -1;
                }
                if ((lt == VT_NUM && rt == VT_STR) || (lt == VT_STR && rt == VT_NUM)) {
                        xp_error(p, op, "cannot compare a number with a string");
                        return -1;
                }
                n = node_new(p, EN_CMP);
                if (n < 0)
                        return -1;
                p->x->nodes[n].op = op->type;
                p->x->nodes[n].a = l;
                p->x->nodes[n].b = r;
                p->x->nodes[n].cmp = lt == VT_NUM || rt == VT_NUM   ? CMP_NUM
                                     : lt == VT_STR || rt == VT_STR ? CMP_STR
                                                                    : CMP_ANY;
                *ret_type = VT_BOOL;
                return n;
        case TOK_MATCH:
        case TOK_NOMATCH: {
                const struct tok *pat;

                p->i++;
                pat = xp_peek(p);
                if (pat->type != TOK_STRING) {
                        xp_expected(p, "a quoted glob pattern such as \"coretemp-*\"");
                        return -1;
                }
                if (lt == VT_BOOL || lt == VT_NUM) {
                        xp_error(p, lstart, "%s matches strings, got %s", tok_type_name(op->type), vtype_name(lt));
                        return -1;
                }
                p->i++;
                n = node_new(p, EN_GLOB);
                if (n < 0)
                        return -1;
                p->x->nodes[n].op = op->type;
                p->x->nodes[n].a = l;
                p->x->nodes[n].str = xstrdup(pat->text);
                if (!p->x->nodes[n].str) {
                        p->oom = p->failed = true;
                        return -1;
                }
                p->x->nodes[n].len = strlen(pat->text);
                p->x->nodes[n].glob = glob_classify(pat->text);
                *ret_type = VT_BOOL;
                return n;
        }
        default:
                *ret_type = lt;
                return l;
        }
}

static int parse_not(struct xparser *p, enum vtype *ret_type)
{
        const struct tok *t = xp_peek(p);
        enum vtype vt = VT_ANY;
        int a, n;

        if (!(t->type == TOK_WORD && t->kw == KW_NOT))
                return parse_cmp(p, ret_type);
        if (++p->depth > CONF_EXPR_DEPTH) {
                xp_error(p, t, "condition nested more than %d deep", CONF_EXPR_DEPTH);
                return -1;
        }
        p->i++;
        a = parse_not(p, &vt);
        a = to_cond(p, a, vt);
        p->depth--;
        if (a < 0)
                return -1;
        n = node_new(p, EN_NOT);
        if (n >= 0)
                p->x->nodes[n].a = a;
        *ret_type = VT_BOOL;
        return n;
}

static int parse_logic(struct xparser *p, enum vtype *ret_type, enum kw kw)
{
        enum vtype lt = VT_ANY, rt = VT_ANY;
        int l = kw == KW_OR ? parse_logic(p, &lt, KW_AND) : parse_not(p, &lt);

        while (l >= 0 && xp_peek(p)->type == TOK_WORD && xp_peek(p)->kw == kw) {
                int r, n;

                p->i++;
                r = kw == KW_OR ? parse_logic(p, &rt, KW_AND) : parse_not(p, &rt);
                l = to_cond(p, l, lt);
                r = to_cond(p, r, rt);
                if (l < 0 || r < 0)
                        return -1;
                n = node_new(p, kw == KW_OR ? EN_OR : EN_AND);
                if (n < 0)
                        return -1;
                p->x->nodes[n].a = l;
                p->x->nodes[n].b = r;
                l = n;
                lt = VT_BOOL;
        }
        *ret_type = lt;
        return l;
}

static int parse_or(struct xparser *p, enum vtype *ret_type)
{
        return parse_logic(p, ret_type, KW_OR);
}

static void expr_free(struct expr *x)
{
        for (size_t i = 0; i < x->n; i++) {
                free(x->nodes[i].str);
                free(x->nodes[i].field_text);
        }
        free(x->nodes);
        memset(x, 0, sizeof *x);
        x->root = -1;
}

/* "after" is not in the keyword table: it has a meaning only as the word
 * right after "clear" (rule_clear), so it stays free as an attribute name
 * everywhere else. */
static bool tok_is_after(const struct tok *t)
{
        return t->type == TOK_WORD && t->text && strcmp(t->text, "after") == 0;
}

/* What a misplaced "after", "for" or condition in a clear statement is told
 * to write: the two forms do not combine. */
#define CLEAR_FORMS "write either 'clear after DURATION' alone or 'clear [CONDITION] [for DURATION]'"

/* Compiles toks[*i..n) (up to a 'for' when stop_at_for) into x. Returns 0,
 * -EINVAL (reported) or -ENOMEM. */
static int expr_compile(struct expr *x, const struct tok *toks, size_t n, size_t *i, bool stop_at_for,
                        struct slot_table *st, struct diag *d, unsigned *n_errors)
{
        struct xparser p = {.toks = toks,
                            .n = n,
                            .i = *i,
                            .x = x,
                            .st = st,
                            .d = d,
                            .n_errors = n_errors,
                            .stop_at_for = stop_at_for};
        enum vtype t = VT_ANY;
        int root;

        x->root = -1;
        if (at_end(&p)) {
                xp_expected(&p, "a condition");
                return -EINVAL;
        }
        root = parse_or(&p, &t);
        root = to_cond(&p, root, t);
        if (root >= 0 && !at_end(&p)) {
                if (stop_at_for && tok_is_after(xp_peek(&p)))
                        xp_error(&p, xp_pos(&p), "'after' cannot follow a clear condition: " CLEAR_FORMS);
                else
                        xp_expected(&p,
                                    stop_at_for ? "'and', 'or', 'for' or end of line" : "'and', 'or' or end of line");
        }
        if (p.oom)
                return -ENOMEM;
        if (p.failed || root < 0)
                return -EINVAL;
        x->root = root;
        *i = p.i;
        return 0;
}

/* Precedence levels for printing with the fewest parentheses. */
static int node_prec(const struct expr *x, int i)
{
        const struct enode *n = &x->nodes[i];

        switch (n->kind) {
        case EN_OR:
                return 1;
        case EN_AND:
                return 2;
        case EN_NOT:
                return 3;
        case EN_CMP:
        case EN_GLOB:
                return 4;
        case EN_TRUTHY:
                return node_prec(x, n->a);
        case EN_ARITH:
                return n->op == TOK_PLUS || n->op == TOK_MINUS ? 5 : 6;
        case EN_NEG:
                return 7;
        default:
                return 8;
        }
}

static const char *op_text(int op)
{
        switch (op) {
        case TOK_EQ:
                return "==";
        case TOK_NE:
                return "!=";
        case TOK_LT:
                return "<";
        case TOK_LE:
                return "<=";
        case TOK_GT:
                return ">";
        case TOK_GE:
                return ">=";
        case TOK_MATCH:
                return "~";
        case TOK_NOMATCH:
                return "!~";
        case TOK_PLUS:
                return "+";
        case TOK_MINUS:
                return "-";
        case TOK_STAR:
                return "*";
        case TOK_SLASH:
                return "/";
        default:
                return "?";
        }
}

static void node_format(const struct expr *x, int i, int min_prec, FILE *f)
{
        const struct enode *n = &x->nodes[i];
        int prec = node_prec(x, i);
        bool paren = prec < min_prec;
        char num[40];

        if (paren)
                fputc('(', f);
        switch (n->kind) {
        case EN_OR:
                node_format(x, n->a, 1, f);
                fputs(" or ", f);
                node_format(x, n->b, 2, f);
                break;
        case EN_AND:
                node_format(x, n->a, 2, f);
                fputs(" and ", f);
                node_format(x, n->b, 3, f);
                break;
        case EN_NOT:
                fputs("not ", f);
                node_format(x, n->a, 3, f);
                break;
        case EN_CMP:
                node_format(x, n->a, 5, f);
                fprintf(f, " %s ", op_text(n->op));
                node_format(x, n->b, 5, f);
                break;
        case EN_GLOB:
                node_format(x, n->a, 5, f);
                fprintf(f, " %s ", op_text(n->op));
                string_write(f, n->str);
                break;
        case EN_TRUTHY:
                node_format(x, n->a, min_prec, f);
                break;
        case EN_ARITH:
                node_format(x, n->a, prec, f);
                fprintf(f, " %s ", op_text(n->op));
                node_format(x, n->b, prec + 1, f);
                break;
        case EN_NEG:
                fputc('-', f);
                node_format(x, n->a, 7, f);
                break;
        case EN_NUM:
                number_format(n->num, num, sizeof num);
                fputs(num, f);
                break;
        case EN_STR:
                string_write(f, n->str);
                break;
        case EN_EXISTS:
        case EN_FIELD:
                if (n->kind == EN_EXISTS)
                        fputs("exists(", f);
                fputs(n->field_text, f);
                if (n->str) {
                        fputc('[', f);
                        string_write(f, n->str);
                        fputc(']', f);
                }
                if (n->kind == EN_EXISTS)
                        fputc(')', f);
                break;
        default:
                break;
        }
        if (paren)
                fputc(')', f);
}

void expr_format(const struct expr *x, FILE *f)
{
        if (x->root >= 0)
                node_format(x, x->root, 0, f);
}

/* The string s in "source == s" among the top-level conjuncts, or NULL. */
static const char *find_dispatch(const struct expr *x, int i)
{
        const struct enode *n = &x->nodes[i];
        const struct enode *a, *b;
        const char *s;

        if (n->kind == EN_AND) {
                s = find_dispatch(x, n->a);
                return s ? s : find_dispatch(x, n->b);
        }
        if (n->kind != EN_CMP || n->op != TOK_EQ)
                return NULL;
        a = &x->nodes[n->a];
        b = &x->nodes[n->b];
        if (a->kind == EN_FIELD && a->field.builtin == BUILTIN_SOURCE && b->kind == EN_STR)
                return b->str;
        if (b->kind == EN_FIELD && b->field.builtin == BUILTIN_SOURCE && a->kind == EN_STR)
                return a->str;
        return NULL;
}

/* ---- rules ---- */

static void rule_free(struct rule *r)
{
        if (!r)
                return;
        free(r->name);
        expr_free(&r->when);
        expr_free(&r->clear);
        tmpl_free(&r->key);
        tmpl_free(&r->title);
        tmpl_free(&r->desc);
        free(r->dispatch_source);
        free(r->pre);
        free(r->rest);
        free(r);
}

static void disp_entry_free(struct dispatch_entry *de)
{
        free(de->source);
        free(de->rules);
        free(de->undisc);
        for (size_t i = 0; i < de->n_lits; i++)
                free(de->lits[i].cand);
        free(de->lits);
        free(de->lit_index);
}

struct ruleset *ruleset_new(void)
{
        return xcalloc(1, sizeof(struct ruleset));
}

void ruleset_free(struct ruleset *rs)
{
        if (!rs)
                return;
        for (size_t i = 0; i < rs->n; i++)
                rule_free(rs->rules[i]);
        free(rs->rules);
        srcnames_clear(&rs->names);
        slot_table_free(&rs->slots);
        for (size_t i = 0; i < rs->n_disp; i++)
                disp_entry_free(&rs->disp[i]);
        free(rs->disp);
        free(rs->disp_index);
        disp_entry_free(&rs->wild);
        free(rs->name_index);
        for (size_t i = 0; i < rs->n_rejected; i++)
                free(rs->rejected[i].name);
        free(rs->rejected);
        free(rs);
}

size_t ruleset_count(const struct ruleset *rs)
{
        return rs ? rs->n : 0;
}

const struct rule *ruleset_get(const struct ruleset *rs, size_t i)
{
        return rs && i < rs->n ? rs->rules[i] : NULL;
}

static int name_index_rebuild(struct ruleset *rs, size_t cap)
{
        uint32_t *idx = xcalloc(cap, sizeof *idx);

        if (!idx)
                return -ENOMEM;
        for (size_t r = 0; r < rs->n; r++) {
                size_t i = rs->rules[r]->name_hash & (cap - 1);

                while (idx[i] != 0)
                        i = (i + 1) & (cap - 1);
                idx[i] = (uint32_t)(r + 1);
        }
        free(rs->name_index);
        rs->name_index = idx;
        rs->name_cap = cap;
        return 0;
}

const struct rule *ruleset_find(const struct ruleset *rs, const char *name, uint64_t hash)
{
        size_t mask = rs->name_cap - 1;

        if (rs->name_cap == 0)
                return NULL;
        for (size_t i = hash & mask;; i = (i + 1) & mask) {
                uint32_t v = rs->name_index[i];

                if (v == 0)
                        return NULL;
                if (rs->rules[v - 1]->name_hash == hash && strcmp(rs->rules[v - 1]->name, name) == 0)
                        return rs->rules[v - 1];
        }
}

static int ruleset_append(struct ruleset *rs, struct rule *r)
{
        if (rs->n == rs->cap) {
                size_t cap = rs->cap ? rs->cap * 2 : 16;
                struct rule **v = xrealloc(rs->rules, cap * sizeof *v);

                if (!v)
                        return -ENOMEM;
                rs->rules = v;
                rs->cap = cap;
        }
        if ((rs->n + 1) * 2 > rs->name_cap && name_index_rebuild(rs, rs->name_cap ? rs->name_cap * 2 : 32) < 0)
                return -ENOMEM;
        r->index = rs->n;
        rs->rules[rs->n++] = r;
        /* insert into the name index */
        {
                size_t mask = rs->name_cap - 1, i = r->name_hash & mask;

                while (rs->name_index[i] != 0)
                        i = (i + 1) & mask;
                rs->name_index[i] = (uint32_t)rs->n;
        }
        return 0;
}

static const char stmt_list[] = "when, for, clear, level, key, title or description";

/* Reads the duration toks[i] that ends statement s; after names what it
 * follows ("'for'"), hint is appended to the message about a token after
 * the duration ("" or ": write ..."). */
static int rule_duration(const struct cstmt *s, size_t i, uint64_t *ret, const char *after, const char *hint,
                         struct diag *d, unsigned *n_errors)
{
        char got[96];

        if (i >= s->n_toks) {
                conf_error(d, n_errors, &s->toks[s->n_toks - 1],
                           "expected duration such as 10s after %s, got end of line", after);
                return -EINVAL;
        }
        if (s->toks[i].type == TOK_DURATION || (s->toks[i].type == TOK_NUMBER && s->toks[i].num == 0)) {
                if (i + 1 < s->n_toks) {
                        tok_describe(&s->toks[i + 1], got, sizeof got);
                        conf_error(d, n_errors, &s->toks[i + 1], "expected end of line after the duration, got %s%s",
                                   got, hint);
                        return -EINVAL;
                }
                *ret = s->toks[i].type == TOK_DURATION ? s->toks[i].usec : 0;
                return 0;
        }
        tok_describe(&s->toks[i], got, sizeof got);
        conf_error(d, n_errors, &s->toks[i], "expected duration such as 10s, got %s", got);
        return -EINVAL;
}

/* Compiles "clear [COND] [for D]" or "clear after D" into r. Returns 0,
 * -EINVAL (reported) or -ENOMEM. */
static int rule_clear(struct rule *r, const struct cstmt *s, struct slot_table *st, struct diag *d, unsigned *n_errors)
{
        static const char hint[] = ": " CLEAR_FORMS;
        size_t pos = 1;
        int ret = 0;

        if (pos < s->n_toks && tok_is_after(&s->toks[pos])) {
                ret = rule_duration(s, pos + 1, &r->clear_after_usec, "'clear after'", hint, d, n_errors);
                if (ret < 0)
                        return ret;
                if (r->clear_after_usec == 0) {
                        conf_error(d, n_errors, &s->toks[pos + 1],
                                   "'clear after' needs a duration over 0s, such as 1h");
                        return -EINVAL;
                }
                r->has_clear_after = true;
                return 0;
        }
        if (!(pos < s->n_toks && s->toks[pos].type == TOK_WORD && s->toks[pos].kw == KW_FOR))
                ret = expr_compile(&r->clear, s->toks, s->n_toks, &pos, true, st, d, n_errors);
        if (ret == 0 && pos < s->n_toks) {
                ret = rule_duration(s, pos + 1, &r->clear_for_usec, "'for'",
                                    pos + 2 < s->n_toks && tok_is_after(&s->toks[pos + 2]) ? hint : "", d, n_errors);
                r->has_clear_for = ret == 0;
        }
        return ret;
}

static int rule_template(const struct cstmt *s, struct tmpl *t, struct slot_table *st, struct diag *d,
                         unsigned *n_errors)
{
        char why[160], got[96];
        int r;

        if (s->n_toks != 2 || s->toks[1].type != TOK_STRING) {
                if (s->n_toks < 2) {
                        conf_error(d, n_errors, &s->toks[0], "expected a quoted template after '%s', got end of line",
                                   s->toks[0].text);
                } else if (s->toks[1].type != TOK_STRING) {
                        tok_describe(&s->toks[1], got, sizeof got);
                        conf_error(d, n_errors, &s->toks[1],
                                   "expected a quoted template such as \"{chip}/{label}\", got %s", got);
                } else {
                        tok_describe(&s->toks[2], got, sizeof got);
                        conf_error(d, n_errors, &s->toks[2], "expected end of line after the template, got %s", got);
                }
                return -EINVAL;
        }
        r = tmpl_compile(t, s->toks[1].text, st, why, sizeof why);
        if (r == -EINVAL)
                conf_error(d, n_errors, &s->toks[1], "invalid template: %s", why);
        return r;
}

/* Compiles one "rule NAME { ... }" statement. Returns 0 (also after
 * reported errors) or -ENOMEM. */
static int rule_compile(struct ruleset *rs, const struct cstmt *rs_stmt, struct diag *d, unsigned *n_errors)
{
        const struct tok *kw = &rs_stmt->toks[0];
        const struct cstmt *seen[KW_MAX] = {0};
        unsigned errors_before = *n_errors;
        struct rule *r = NULL;
        const struct rule *dup;
        char got[96];
        int ret = 0;

        if (rs_stmt->n_toks < 2 || rs_stmt->toks[1].type != TOK_WORD || rs_stmt->n_toks > 2) {
                const struct tok *at = rs_stmt->n_toks < 2 ? kw : &rs_stmt->toks[rs_stmt->n_toks > 2 ? 2 : 1];

                if (rs_stmt->n_toks < 2)
                        snprintf(got, sizeof got, "%s", rs_stmt->block ? "'{'" : "end of line");
                else
                        tok_describe(at, got, sizeof got);
                conf_error(d, n_errors, at,
                           rs_stmt->n_toks > 2 ? "expected '{' after the rule name, got %s"
                                               : "expected a rule name such as temperature-high, got %s",
                           got);
                return 0;
        }
        if (!rs_stmt->block) {
                conf_error(d, n_errors, &rs_stmt->toks[1], "expected '{' after rule %s, got end of line",
                           rs_stmt->toks[1].text);
                return 0;
        }
        r = xcalloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->when.root = r->clear.root = -1;
        r->name = xstrdup(rs_stmt->toks[1].text);
        r->file = srcnames_intern(&rs->names, kw->file);
        if (!r->name || !r->file) {
                ret = -ENOMEM;
                goto out;
        }
        r->name_hash = hash_str(r->name);
        r->line = kw->line;
        r->col = kw->col;
        dup = ruleset_find(rs, r->name, r->name_hash);
        if (dup) {
                conf_error(d, n_errors, &rs_stmt->toks[1], "duplicate rule '%s' (first defined at %s:%u)", r->name,
                           dup->file, dup->line);
        } else {
                for (size_t i = 0; i < rs->n_rejected; i++)
                        if (strcmp(rs->rejected[i].name, r->name) == 0) {
                                conf_error(d, n_errors, &rs_stmt->toks[1],
                                           "duplicate rule '%s' (first defined at %s:%u)", r->name,
                                           rs->rejected[i].file, rs->rejected[i].line);
                                break;
                        }
        }

        for (size_t i = 0; i < rs_stmt->block->n; i++) {
                const struct cstmt *s = &rs_stmt->block->stmts[i];
                const struct tok *k = &s->toks[0];
                enum kw which = k->type == TOK_WORD ? k->kw : KW_NONE;
                size_t pos = 1;

                if (s->bad) {
                        /* reported already; do not also call it missing */
                        if (which > KW_NONE && which < KW_MAX)
                                seen[which] = s;
                        continue;
                }
                if (which != KW_WHEN && which != KW_FOR && which != KW_CLEAR && which != KW_LEVEL && which != KW_KEY &&
                    which != KW_TITLE && which != KW_DESCRIPTION) {
                        tok_describe(k, got, sizeof got);
                        conf_error(d, n_errors, k, "unknown statement %s in rule %s; expected %s", got, r->name,
                                   stmt_list);
                        continue;
                }
                if (s->block) {
                        conf_error(d, n_errors, k, "'%s' takes no block", k->text);
                        continue;
                }
                if (seen[which]) {
                        conf_error(d, n_errors, k, "duplicate '%s' in rule %s (first at line %u)", k->text, r->name,
                                   seen[which]->toks[0].line);
                        continue;
                }
                seen[which] = s;
                switch (which) {
                case KW_WHEN:
                        ret = expr_compile(&r->when, s->toks, s->n_toks, &pos, false, &rs->slots, d, n_errors);
                        break;
                case KW_FOR:
                        ret = rule_duration(s, 1, &r->for_usec, "'for'", "", d, n_errors);
                        r->has_for = ret == 0;
                        break;
                case KW_CLEAR:
                        ret = rule_clear(r, s, &rs->slots, d, n_errors);
                        break;
                case KW_LEVEL:
                        if (s->n_toks != 2 || s->toks[1].type != TOK_WORD ||
                            rule_level_from_string(s->toks[1].text, &r->level) < 0) {
                                const struct tok *at = s->n_toks >= 2 ? &s->toks[s->n_toks > 2 ? 2 : 1] : k;

                                if (s->n_toks < 2)
                                        snprintf(got, sizeof got, "end of line");
                                else
                                        tok_describe(at, got, sizeof got);
                                conf_error(d, n_errors, at, "expected level P1, P2, P3, P4 or P5, got %s", got);
                        }
                        break;
                case KW_KEY:
                        ret = rule_template(s, &r->key, &rs->slots, d, n_errors);
                        break;
                case KW_TITLE:
                        ret = rule_template(s, &r->title, &rs->slots, d, n_errors);
                        break;
                case KW_DESCRIPTION:
                        ret = rule_template(s, &r->desc, &rs->slots, d, n_errors);
                        r->has_desc = ret == 0;
                        break;
                default:
                        break;
                }
                if (ret == -ENOMEM)
                        goto out;
                ret = 0;
        }
        {
                static const enum kw required[] = {KW_WHEN, KW_LEVEL, KW_KEY, KW_TITLE};
                static const char *const hint[] = {"a condition", "P1..P5", "a key template", "a title template"};

                for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
                        if (!seen[required[i]])
                                conf_error(d, n_errors, &rs_stmt->toks[1], "rule %s has no '%s' (%s)", r->name,
                                           keyword_name(required[i]), hint[i]);
        }
        if (*n_errors != errors_before) {
                /* reported; remember the name for duplicate checks and go on */
                struct rejected *v;

                if (dup)
                        goto out;
                v = xrealloc(rs->rejected, (rs->n_rejected + 1) * sizeof *v);
                if (!v) {
                        ret = -ENOMEM;
                        goto out;
                }
                rs->rejected = v;
                v[rs->n_rejected] = (struct rejected){.name = r->name, .file = r->file, .line = r->line};
                rs->n_rejected++;
                r->name = NULL;
                goto out;
        }
        if (r->when.root >= 0) {
                const char *src = find_dispatch(&r->when, r->when.root);

                if (src) {
                        r->dispatch_source = xstrdup(src);
                        if (!r->dispatch_source) {
                                ret = -ENOMEM;
                                goto out;
                        }
                }
        }
        ret = ruleset_append(rs, r);
        if (ret == 0)
                r = NULL;
out:
        rule_free(r);
        return ret;
}

int ruleset_add_tree(struct ruleset *rs, const struct cblock *tree, bool rules_only, struct diag *d, unsigned *n_errors)
{
        for (size_t i = 0; i < tree->n; i++) {
                const struct cstmt *s = &tree->stmts[i];
                int r;

                if (s->bad)
                        continue;
                if (s->toks[0].type == TOK_WORD && s->toks[0].kw == KW_RULE) {
                        r = rule_compile(rs, s, d, n_errors);
                        if (r < 0)
                                return r;
                } else if (rules_only) {
                        char got[96];

                        tok_describe(&s->toks[0], got, sizeof got);
                        conf_error(d, n_errors, &s->toks[0],
                                   "expected 'rule' or 'include', got %s (a rules file holds only rule blocks)", got);
                }
                if (diag_full(d))
                        break;
        }
        return 0;
}

static int disp_add(struct ruleset *rs, const char *source)
{
        uint64_t h = hash_str(source);
        struct dispatch_entry *v;

        for (size_t i = 0; i < rs->n_disp; i++)
                if (rs->disp[i].hash == h && strcmp(rs->disp[i].source, source) == 0)
                        return 0;
        v = xrealloc(rs->disp, (rs->n_disp + 1) * sizeof *v);
        if (!v)
                return -ENOMEM;
        rs->disp = v;
        memset(&v[rs->n_disp], 0, sizeof v[0]);
        v[rs->n_disp].source = xstrdup(source);
        if (!v[rs->n_disp].source)
                return -ENOMEM;
        v[rs->n_disp].hash = h;
        rs->n_disp++;
        return 0;
}

static int plan_conjuncts(struct rule *r, int i)
{
        const struct enode *n = &r->when.nodes[i];

        if (n->kind == EN_AND) {
                int ret = plan_conjuncts(r, n->a);

                return ret < 0 ? ret : plan_conjuncts(r, n->b);
        }
        if (n->kind == EN_CMP && n->op == TOK_EQ) {
                const struct enode *a = &r->when.nodes[n->a], *b = &r->when.nodes[n->b];
                const struct enode *f = a->kind == EN_FIELD ? a : b, *lit = a->kind == EN_FIELD ? b : a;

                if (f->kind == EN_FIELD && lit->kind == EN_STR) {
                        if (f->field.builtin == BUILTIN_SOURCE && r->dispatch_source &&
                            strcmp(lit->str, r->dispatch_source) == 0)
                                return 0; /* guaranteed by dispatch */
                        r->pre[r->n_pre++] = (struct prefilter){
                                .field = f->field, .hash = hash_words(lit->str, lit->len), .lit = lit->str};
                        return 0;
                }
        }
        if (n->kind == EN_GLOB && r->when.nodes[n->a].kind == EN_FIELD) {
                r->pre[r->n_pre++] = (struct prefilter){.field = r->when.nodes[n->a].field,
                                                        .glob = true,
                                                        .negate = n->op == TOK_NOMATCH,
                                                        .hash = hash_words(n->str, n->len),
                                                        .lit = n->str,
                                                        .node = n};
                return 0;
        }
        r->rest[r->n_rest++] = i;
        return 0;
}

static int rule_plan(struct ruleset *rs, struct rule *r)
{
        r->pre = xcalloc(r->when.n + 1, sizeof *r->pre);
        r->rest = xcalloc(r->when.n + 1, sizeof *r->rest);
        if (!r->pre || !r->rest)
                return -ENOMEM;
        if (r->when.root >= 0)
                plan_conjuncts(r, r->when.root);
        /* number the distinct literals and (field, pattern) pairs so the
         * evaluator can cache their outcome once per event */
        for (size_t p = 0; p < r->n_pre; p++) {
                struct prefilter *pf = &r->pre[p];
                bool found = false;

                for (size_t i = 0; i <= r->index && !found; i++) {
                        const struct rule *o = rs->rules[i];

                        for (size_t q = 0; q < (o == r ? p : o->n_pre); q++) {
                                const struct prefilter *op = &o->pre[q];

                                if (op->glob == pf->glob && op->hash == pf->hash && strcmp(op->lit, pf->lit) == 0 &&
                                    (!pf->glob ||
                                     (op->field.builtin == pf->field.builtin && op->field.slot == pf->field.slot))) {
                                        pf->id = op->id;
                                        found = true;
                                        break;
                                }
                        }
                }
                if (!found)
                        pf->id = pf->glob ? rs->n_globs++ : rs->n_lits++;
        }
        r->key_id = rs->n_keys;
        for (size_t i = 0; i < r->index; i++)
                if (strcmp(rs->rules[i]->key.src, r->key.src) == 0) {
                        r->key_id = rs->rules[i]->key_id;
                        return 0;
                }
        rs->n_keys++;
        return 0;
}

static bool same_field(const struct fieldref *a, const struct fieldref *b)
{
        return a->builtin == b->builtin && a->slot == b->slot;
}

/* r's first equality prefilter on f, or NULL. */
static const struct prefilter *rule_eq_on(const struct rule *r, const struct fieldref *f)
{
        for (size_t i = 0; i < r->n_pre; i++)
                if (!r->pre[i].glob && same_field(&r->pre[i].field, f))
                        return &r->pre[i];
        return NULL;
}

static bool bit_get(const uint64_t *bits, size_t i)
{
        return bits[i / 64] >> (i % 64) & 1;
}

static void bit_set(uint64_t *bits, size_t i)
{
        bits[i / 64] |= 1ULL << (i % 64);
}

/* Scratch space of ruleset_finish, sized by literal ids and field indices. */
struct disc_scratch {
        size_t *counts; /* literal id -> rules */
        size_t *lit_of; /* literal id -> lits entry + 1 */
        bool *tried;    /* field index -> already scored */
        size_t n_fields;
};

/* Chooses de->disc: the field that, compared with the commonest of its
 * literals, still rules out the most rules of the entry. Returns false when
 * no field rules out any rule. */
static bool choose_disc(const struct ruleset *rs, const struct dispatch_entry *de, struct disc_scratch *sc,
                        struct fieldref *ret)
{
        size_t best = 0, *counts = sc->counts;

        memset(sc->tried, 0, sc->n_fields * sizeof *sc->tried);
        for (size_t i = 0; i < rs->n; i++) {
                const struct rule *r = rs->rules[i];

                if (!bit_get(de->rules, i))
                        continue;
                for (size_t p = 0; p < r->n_pre; p++) {
                        const struct fieldref *f = &r->pre[p].field;
                        size_t with = 0, most = 0;

                        if (r->pre[p].glob || sc->tried[fieldref_index(f)])
                                continue;
                        sc->tried[fieldref_index(f)] = true;
                        memset(counts, 0, rs->n_lits * sizeof *counts);
                        for (size_t j = i; j < rs->n; j++) {
                                const struct prefilter *q = bit_get(de->rules, j) ? rule_eq_on(rs->rules[j], f) : NULL;

                                if (!q)
                                        continue;
                                with++;
                                if (++counts[q->id] > most)
                                        most = counts[q->id];
                        }
                        if (with - most > best) {
                                best = with - most;
                                *ret = *f;
                        }
                }
        }
        return best > 0;
}

static int disc_lit_add(struct dispatch_entry *de, const struct prefilter *q, size_t n_words)
{
        struct disc_lit *v = xrealloc(de->lits, (de->n_lits + 1) * sizeof *v);

        if (!v)
                return -ENOMEM;
        de->lits = v;
        v[de->n_lits] = (struct disc_lit){.lit = q->lit, .hash = q->hash, .id = q->id};
        v[de->n_lits].cand = xcalloc(n_words, sizeof *v[de->n_lits].cand);
        if (!v[de->n_lits].cand)
                return -ENOMEM;
        memcpy(v[de->n_lits].cand, de->undisc, n_words * sizeof *de->undisc);
        de->n_lits++;
        return 0;
}

/* Builds the candidate index of de, whose rules bitmap is filled in. */
static int disp_index_build(const struct ruleset *rs, struct dispatch_entry *de, struct disc_scratch *sc)
{
        size_t cap = 8, *lit_of = sc->lit_of;

        if (!choose_disc(rs, de, sc, &de->disc))
                return 0;
        de->has_disc = true;
        de->undisc = xcalloc(rs->n_words, sizeof *de->undisc);
        if (!de->undisc)
                return -ENOMEM;
        for (size_t i = 0; i < rs->n; i++)
                if (bit_get(de->rules, i) && !rule_eq_on(rs->rules[i], &de->disc))
                        bit_set(de->undisc, i);
        /* lit_of: literal id -> lits entry + 1 */
        memset(lit_of, 0, rs->n_lits * sizeof *lit_of);
        for (size_t i = 0; i < rs->n; i++) {
                const struct prefilter *q = bit_get(de->rules, i) ? rule_eq_on(rs->rules[i], &de->disc) : NULL;

                if (!q)
                        continue;
                if (lit_of[q->id] == 0) {
                        if (disc_lit_add(de, q, rs->n_words) < 0)
                                return -ENOMEM;
                        lit_of[q->id] = de->n_lits;
                }
                bit_set(de->lits[lit_of[q->id] - 1].cand, i);
        }
        while (cap < de->n_lits * 2)
                cap *= 2;
        de->lit_index = xcalloc(cap, sizeof *de->lit_index);
        if (!de->lit_index)
                return -ENOMEM;
        de->lit_cap = cap;
        for (size_t l = 0; l < de->n_lits; l++) {
                size_t i = de->lits[l].hash & (cap - 1);

                while (de->lit_index[i] != 0)
                        i = (i + 1) & (cap - 1);
                de->lit_index[i] = (uint32_t)(l + 1);
        }
        return 0;
}

int ruleset_finish(struct ruleset *rs)
{
        struct disc_scratch sc = {.n_fields = BUILTIN_MAX + rs->slots.n};
        size_t cap = 8;
        int ret = -ENOMEM;

        for (size_t i = 0; i < rs->n; i++)
                if (rule_plan(rs, rs->rules[i]) < 0)
                        return -ENOMEM;

        for (size_t i = 0; i < rs->n; i++)
                if (rs->rules[i]->dispatch_source && disp_add(rs, rs->rules[i]->dispatch_source) < 0)
                        return -ENOMEM;
        rs->n_words = (rs->n + 63) / 64;
        sc.counts = xcalloc(rs->n_lits + 1, sizeof *sc.counts);
        sc.lit_of = xcalloc(rs->n_lits + 1, sizeof *sc.lit_of);
        sc.tried = xcalloc(sc.n_fields, sizeof *sc.tried);
        rs->wild.rules = xcalloc(rs->n_words + 1, sizeof *rs->wild.rules);
        if (!sc.counts || !sc.lit_of || !sc.tried || !rs->wild.rules)
                goto out;
        for (size_t i = 0; i < rs->n; i++)
                if (!rs->rules[i]->dispatch_source)
                        bit_set(rs->wild.rules, i);
        if (disp_index_build(rs, &rs->wild, &sc) < 0)
                goto out;
        for (size_t e = 0; e < rs->n_disp; e++) {
                struct dispatch_entry *de = &rs->disp[e];

                de->rules = xcalloc(rs->n_words + 1, sizeof *de->rules);
                if (!de->rules)
                        goto out;
                for (size_t i = 0; i < rs->n; i++) {
                        const char *s = rs->rules[i]->dispatch_source;

                        if (!s || strcmp(s, de->source) == 0)
                                bit_set(de->rules, i);
                }
                if (disp_index_build(rs, de, &sc) < 0)
                        goto out;
        }
        while (cap < rs->n_disp * 2)
                cap *= 2;
        rs->disp_index = xcalloc(cap, sizeof *rs->disp_index);
        if (!rs->disp_index)
                goto out;
        rs->disp_cap = cap;
        for (size_t e = 0; e < rs->n_disp; e++) {
                size_t i = rs->disp[e].hash & (cap - 1);

                while (rs->disp_index[i] != 0)
                        i = (i + 1) & (cap - 1);
                rs->disp_index[i] = (uint32_t)(e + 1);
        }
        ret = 0;
out:
        free(sc.counts);
        free(sc.lit_of);
        free(sc.tried);
        return ret;
}

int ruleset_add_file(struct ruleset *rs, const char *path, struct diag *d, unsigned *n_errors)
{
        const struct parse_opts opts = {.allow_include = true};
        struct cblock *tree = NULL;
        char *text = NULL;
        size_t len = 0;
        int r;

        r = conf_read_file(path, &text, &len);
        if (r < 0) {
                if (r == -ENOMEM)
                        return r;
                (*n_errors)++;
                diag_add(d, path, 0, 0, "cannot read rules file: %s",
                         r == -EFBIG    ? "file larger than the 1 MiB limit"
                         : r == -EINVAL ? "not a regular file"
                                        : strerror(-r));
                return 0;
        }
        r = conf_parse_text(path, text, len, &rs->names, &opts, d, n_errors, &tree);
        if (r == 0)
                r = ruleset_add_tree(rs, tree, true, d, n_errors);
        cblock_free(tree);
        free(text);
        return r;
}

static int ruleset_parse(const char *name, const char *text, size_t len, const char *path, struct ruleset **ret,
                         struct diag *d)
{
        const struct parse_opts opts = {.allow_include = true};
        struct ruleset *rs = ruleset_new();
        struct cblock *tree = NULL;
        unsigned n_errors = 0;
        size_t first_diag = diag_count(d);
        int r;

        if (!rs)
                goto oom;
        if (path)
                r = ruleset_add_file(rs, path, d, &n_errors);
        else {
                r = conf_parse_text(name, text, len, &rs->names, &opts, d, &n_errors, &tree);
                if (r == 0)
                        r = ruleset_add_tree(rs, tree, true, d, &n_errors);
                cblock_free(tree);
        }
        if (r == 0 && n_errors == 0)
                r = ruleset_finish(rs);
        if (r < 0)
                goto oom;
        if (n_errors > 0) {
                diag_sort_from(d, first_diag);
                ruleset_free(rs);
                return -EINVAL;
        }
        *ret = rs;
        return 0;
oom:
        ruleset_free(rs);
        diag_add(d, path ? path : name, 0, 0, "out of memory");
        return -ENOMEM;
}

int ruleset_parse_string(const char *name, const char *text, struct ruleset **ret, struct diag *d)
{
        return ruleset_parse(name, text, strlen(text), NULL, ret, d);
}

int ruleset_load_file(const char *path, struct ruleset **ret, struct diag *d)
{
        return ruleset_parse(path, NULL, 0, path, ret, d);
}

/* True when c, printed, would begin with the word "after", which right
 * after "clear" reads as "clear after": the leftmost leaf is printed first
 * unless something on the way needs parentheses, and then wrapping it once
 * more is harmless (parentheses make no nodes, so the form stays stable). */
static bool starts_with_after(const struct expr *c)
{
        for (int i = c->root; i >= 0;) {
                const struct enode *n = &c->nodes[i];

                switch (n->kind) {
                case EN_AND:
                case EN_OR:
                case EN_CMP:
                case EN_GLOB:
                case EN_TRUTHY:
                case EN_ARITH:
                        i = n->a;
                        break;
                case EN_FIELD:
                        return strcmp(n->field_text, "after") == 0;
                default:
                        return false;
                }
        }
        return false;
}

static void rule_format(const struct rule *r, FILE *f)
{
        char dur[64];

        fprintf(f, "rule %s {\n", r->name);
        fputs("        when ", f);
        expr_format(&r->when, f);
        fputc('\n', f);
        if (r->has_for) {
                duration_format(r->for_usec, dur, sizeof dur);
                fprintf(f, "        for %s\n", dur);
        }
        if (r->has_clear_after) {
                duration_format(r->clear_after_usec, dur, sizeof dur);
                fprintf(f, "        clear after %s\n", dur);
        } else if (r->clear.root >= 0 || r->has_clear_for) {
                bool paren = starts_with_after(&r->clear);

                fputs("        clear", f);
                if (r->clear.root >= 0) {
                        fputs(paren ? " (" : " ", f);
                        expr_format(&r->clear, f);
                        if (paren)
                                fputc(')', f);
                }
                if (r->has_clear_for) {
                        duration_format(r->clear_for_usec, dur, sizeof dur);
                        fprintf(f, " for %s", dur);
                }
                fputc('\n', f);
        }
        fprintf(f, "        level %s\n", rule_level_to_string(r->level));
        fputs("        key ", f);
        string_write(f, r->key.src);
        fputs("\n        title ", f);
        string_write(f, r->title.src);
        fputc('\n', f);
        if (r->has_desc) {
                fputs("        description ", f);
                string_write(f, r->desc.src);
                fputc('\n', f);
        }
        fputs("}\n", f);
}

void ruleset_format(const struct ruleset *rs, FILE *f)
{
        for (size_t i = 0; rs && i < rs->n; i++) {
                if (i > 0)
                        fputc('\n', f);
                rule_format(rs->rules[i], f);
        }
}
