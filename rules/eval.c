/* eval: the rule engine. Evaluates events against a compiled ruleset and
 * keeps the state machine per (rule, rendered key):
 *
 *   idle -> pending (when true; "for" starts) -> firing (for elapsed) ->
 *   clearing (clear true; clear "for" starts) -> idle (cleared)
 *
 * with firing <- clearing when "when" is true again or neither condition
 * holds (the clear condition must hold continuously). A rule with "clear
 * after D" has no clear condition and no clearing state: no event clears
 * it, its firing state ends (cleared, idle) D after the last event where
 * when held, or D after it fired if that is later. The last evaluated
 * value of a condition is taken to hold until an event says otherwise, so
 * both rule_engine_tick() and a later event promote a pending, clearing or
 * "clear after" firing state whose time has come.
 *
 * Cost per event: one pass binding attributes to the ruleset's slots
 * (through a cache by the key's address, see struct ncache), one dispatch
 * lookup by source, one lookup of the entry's discriminating field (struct
 * dispatch_entry), then the when condition of each candidate rule and of
 * each rule with live states, in load order. A key is rendered only when
 * the condition is true or the rule has live states, and hashed for the
 * state table only when some state has a key with the same cheap hash
 * (kfilter). No allocation happens unless a new state is created or a saved
 * title grows. */
#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/xalloc.h"
#include "internal.h"

enum rstate_kind {
        RS_PENDING,
        RS_FIRING,
        RS_CLEARING,
};

struct rstate {
        struct rstate *next; /* hash chain */
        const struct rule *rule;
        uint64_t hash;     /* state_hash() */
        uint64_t key_hash; /* hash_words() of the key: its slot in the key filter */
        enum rstate_kind kind;
        /* pending, clearing: when it entered that state; firing: when it
         * fired or the last event where when held, whichever is later (the
         * start of a "clear after" period) */
        uint64_t since;
        char *title, *desc; /* texts of the last event, for transitions made by time */
        size_t title_cap, desc_cap;
        /* pending: a copy of the last event whose when held, so a firing that
         * time makes still reports its readings (strings in last_buf) */
        struct event *last;
        char *last_buf;
        size_t last_cap;
        size_t key_len;
        char key[];
};

/* Event strings seen before, by address: attribute keys and sources are
 * nearly always string literals of a collector, so their address finds
 * their slot (or dispatch entry) without hashing them. An address alone
 * proves nothing (a collector may build keys in a reused buffer), so a hit
 * also compares the text with a copy; names too long for the copy are
 * looked up the long way every time. */
struct ncache {
        const char *p; /* NULL: empty */
        int id;        /* slot or dispatch entry; -1: none */
        char text[52]; /* the entry fills one cache line */
};

#define KEY_CACHE_SIZE 64 /* attribute names in use at once, with room to spare; power of two */
#define SOURCE_CACHE_SIZE 16

struct rule_engine {
        struct ruleset *rs;
        size_t max_states;
        struct rstate **buckets;
        size_t n_buckets, n_states, n_firing, n_timed;
        /* states per hash_words() of their key, modulo n_kfilter (a power
         * of two): a rendered key whose count is 0 has no state in any
         * rule, which spares the FNV-1a hash and the lookup per rule */
        uint32_t *kfilter;
        size_t n_kfilter;
        size_t *rule_states; /* live states per rule index */
        uint64_t *stateful;  /* bitmap: rule_states[i] > 0 */
        const struct event_attr **slot_attr;
        uint32_t *slot_gen;
        uint32_t gen;   /* per event: stamps of the caches below */
        struct vcache { /* string values' hashes, per field index */
                uint32_t gen;
                bool str;
                bool hashed; /* hash is computed (only when a literal needs it) */
                uint64_t hash;
                const char *s;
                size_t lit; /* literal id it was found equal to, + 1 */
        } * vc;
        size_t n_vc;
        struct gcache { /* glob outcomes, per (field, pattern) */
                uint32_t gen;
                bool match;
        } * gc;
        size_t n_gc;
        struct kcache { /* rendered keys, per key template */
                uint32_t gen;
                bool ok;
                bool live;   /* some rule may have a state with this key (kfilter) */
                bool hashed; /* hash is computed (only for live keys) */
                size_t len;
                uint64_t hash;     /* FNV-1a */
                uint64_t key_hash; /* hash_words */
                char key[RULE_KEY_MAX];
        } * kc;
        size_t n_kc;
        struct ncache keys[KEY_CACHE_SIZE], sources[SOURCE_CACHE_SIZE]; /* both for rs */
        struct rule_engine_stats stats;
        char title[RULE_TITLE_MAX], desc[RULE_DESC_MAX];
};

/* ---- conditions ----
 *
 * The compiler knows which comparisons can only hold between numbers or
 * only between strings (enum cmp_type), so most are evaluated through
 * node_num() or node_str(), which return nothing larger than a register;
 * only attribute-against-attribute comparisons and truth values go through
 * the general node_val(). A missing value, a value of the other type and a
 * division by zero all make node_num()/node_str() fail, and a comparison
 * with a failed side is false, as docs/rules.md says. */

static bool node_num(const struct enode *nodes, int i, const struct eval_ctx *c, double *ret);

/* The number a value node has for this event; false when it has none.
 * Leaves, the usual operands, are handled here without a call. */
static inline bool value_num(const struct enode *nodes, int i, const struct eval_ctx *c, double *ret)
{
        const struct enode *n = &nodes[i];
        const struct event_attr *at;

        switch (n->kind) {
        case EN_NUM:
                *ret = n->num;
                return true;
        case EN_FIELD:
                if (n->field.builtin == BUILTIN_VALUE) {
                        *ret = c->e->value;
                        return c->e->has_value;
                }
                if (n->field.builtin != BUILTIN_NONE)
                        return false; /* the other built-ins are strings */
                at = eval_slot(c, n->field.slot);
                if (!at || at->type != EVENT_ATTR_NUMBER)
                        return false;
                *ret = at->num;
                return true;
        default:
                return node_num(nodes, i, c, ret);
        }
}

/* value_num() of the inner nodes: arithmetic and negation. */
static bool node_num(const struct enode *nodes, int i, const struct eval_ctx *c, double *ret)
{
        const struct enode *n = &nodes[i];
        double a, b;

        switch (n->kind) {
        case EN_NEG:
                if (!value_num(nodes, n->a, c, &a))
                        return false;
                *ret = -a;
                return true;
        case EN_ARITH:
                if (!value_num(nodes, n->a, c, &a) || !value_num(nodes, n->b, c, &b))
                        return false;
                switch (n->op) {
                case TOK_PLUS:
                        *ret = a + b;
                        return true;
                case TOK_MINUS:
                        *ret = a - b;
                        return true;
                case TOK_STAR:
                        *ret = a * b;
                        return true;
                default:
                        if (b == 0)
                                return false; /* division by zero: missing */
                        *ret = a / b;
                        return true;
                }
        default:
                return false; /* a string literal */
        }
}

/* The string a value node has for this event, or NULL. */
static const char *node_str(const struct enode *nodes, int i, const struct eval_ctx *c)
{
        const struct enode *n = &nodes[i];
        struct val v;

        if (n->kind == EN_STR)
                return n->str;
        if (n->kind != EN_FIELD)
                return NULL; /* numbers only */
        v = field_value(c, &n->field);
        return v.type == VAL_STR ? v.str : NULL;
}

static struct val node_val(const struct enode *nodes, int i, const struct eval_ctx *c)
{
        const struct enode *n = &nodes[i];
        struct val v = {.type = VAL_MISSING};

        switch (n->kind) {
        case EN_STR:
                v.type = VAL_STR;
                v.str = n->str;
                return v;
        case EN_FIELD:
                return field_value(c, &n->field);
        case EN_NUM:
        case EN_NEG:
        case EN_ARITH:
                if (value_num(nodes, i, c, &v.num))
                        v.type = VAL_NUM;
                return v;
        default:
                /* a condition used as a value cannot compile */
                return v;
        }
}

bool glob_match(const struct enode *n, const char *s)
{
        size_t len;

        switch (n->glob) {
        case GLOB_EXACT:
                return strcmp(s, n->str) == 0;
        case GLOB_PREFIX:
                return strncmp(s, n->str, n->len - 1) == 0;
        case GLOB_SUFFIX:
                len = strlen(s);
                return len >= n->len - 1 && memcmp(s + len - (n->len - 1), n->str + 1, n->len - 1) == 0;
        case GLOB_CONTAINS:
                return memmem(s, strlen(s), n->str + 1, n->len - 2) != NULL;
        default:
                return fnmatch(n->str, s, 0) == 0;
        }
}

static bool cmp_holds(int op, int cmp)
{
        switch (op) {
        case TOK_EQ:
                return cmp == 0;
        case TOK_NE:
                return cmp != 0;
        case TOK_LT:
                return cmp < 0;
        case TOK_LE:
                return cmp <= 0;
        case TOK_GT:
                return cmp > 0;
        default:
                return cmp >= 0;
        }
}

static bool num_holds(int op, double a, double b)
{
        switch (op) {
        case TOK_EQ:
                return a == b;
        case TOK_NE:
                return a != b;
        case TOK_LT:
                return a < b;
        case TOK_LE:
                return a <= b;
        case TOK_GT:
                return a > b;
        default:
                return a >= b;
        }
}

static bool node_bool(const struct enode *nodes, int i, const struct eval_ctx *c);

/* node_bool() with the commonest conditions, exists(f) and comparisons of
 * numbers, evaluated without a call. */
static inline bool cond(const struct enode *nodes, int i, const struct eval_ctx *c)
{
        const struct enode *n = &nodes[i];
        double x, y;

        if (n->kind == EN_EXISTS)
                return field_value(c, &n->field).type != VAL_MISSING;
        if (n->kind == EN_CMP && n->cmp == CMP_NUM)
                return value_num(nodes, n->a, c, &x) && value_num(nodes, n->b, c, &y) && num_holds(n->op, x, y);
        return node_bool(nodes, i, c);
}

static bool node_bool(const struct enode *nodes, int i, const struct eval_ctx *c)
{
        const struct enode *n = &nodes[i];
        const char *s, *t;
        struct val a, b;
        double x, y;

        switch (n->kind) {
        case EN_AND:
                return cond(nodes, n->a, c) && cond(nodes, n->b, c);
        case EN_OR:
                return cond(nodes, n->a, c) || cond(nodes, n->b, c);
        case EN_NOT:
                return !cond(nodes, n->a, c);
        case EN_EXISTS:
                return field_value(c, &n->field).type != VAL_MISSING;
        case EN_TRUTHY:
                a = node_val(nodes, n->a, c);
                return a.type == VAL_NUM ? a.num != 0 : a.type == VAL_STR ? a.str[0] != '\0' : false;
        case EN_GLOB:
                s = node_str(nodes, n->a, c);
                if (!s)
                        return false; /* numbers and missing fields never match, not even with !~ */
                return glob_match(n, s) == (n->op == TOK_MATCH);
        case EN_CMP:
                switch (n->cmp) {
                case CMP_NUM:
                        return value_num(nodes, n->a, c, &x) && value_num(nodes, n->b, c, &y) && num_holds(n->op, x, y);
                case CMP_STR:
                        s = node_str(nodes, n->a, c);
                        t = s ? node_str(nodes, n->b, c) : NULL;
                        return t && cmp_holds(n->op, strcmp(s, t));
                default:
                        a = node_val(nodes, n->a, c);
                        if (a.type == VAL_MISSING)
                                return false;
                        b = node_val(nodes, n->b, c);
                        if (b.type != a.type)
                                return false; /* missing, or number against string */
                        if (a.type == VAL_NUM)
                                return num_holds(n->op, a.num, b.num);
                        return cmp_holds(n->op, strcmp(a.str, b.str));
                }
        default:
                return false;
        }
}

bool expr_eval_bool(const struct expr *x, const struct eval_ctx *c)
{
        return x->root >= 0 && cond(x->nodes, x->root, c);
}

/* ---- the engine ---- */

int rule_engine_new(size_t max_states, struct rule_engine **ret)
{
        struct rule_engine *re = xcalloc(1, sizeof *re);

        if (!re)
                return -ENOMEM;
        re->max_states = max_states ? max_states : 65536;
        re->n_buckets = 64;
        re->buckets = xcalloc(re->n_buckets, sizeof *re->buckets);
        re->n_kfilter = 2 * re->n_buckets;
        re->kfilter = xcalloc(re->n_kfilter, sizeof *re->kfilter);
        if (!re->buckets || !re->kfilter) {
                free(re->buckets);
                free(re->kfilter);
                free(re);
                return -ENOMEM;
        }
        re->gen = 1;
        *ret = re;
        return 0;
}

static void rstate_free(struct rstate *s)
{
        free(s->title);
        free(s->desc);
        free(s->last);
        free(s->last_buf);
        free(s);
}

static void forget_event(struct rstate *s)
{
        free(s->last);
        free(s->last_buf);
        s->last = NULL;
        s->last_buf = NULL;
        s->last_cap = 0;
}

static size_t str_room(const char *p)
{
        return p ? strlen(p) + 1 : 0;
}

static const char *str_copy(char **at, const char *p)
{
        size_t n;
        char *r;

        if (!p)
                return NULL;
        n = strlen(p) + 1;
        r = *at;
        memcpy(r, p, n);
        *at += n;
        return r;
}

/* Keeps a copy of e in s (on allocation failure the older copy, or none). */
static void save_event(struct rstate *s, const struct event *e)
{
        size_t need = str_room(e->source) + str_room(e->name) + str_room(e->object) + str_room(e->unit);
        char *at;

        for (size_t i = 0; i < e->n_attrs; i++)
                need += str_room(e->attrs[i].key) +
                        (e->attrs[i].type == EVENT_ATTR_STRING ? str_room(e->attrs[i].str) : 0);
        if (!s->last && !(s->last = xcalloc(1, sizeof *s->last)))
                return;
        if (need > s->last_cap) {
                char *nb = xrealloc(s->last_buf, need);
                if (!nb) {
                        forget_event(s);
                        return;
                }
                s->last_buf = nb;
                s->last_cap = need;
        }
        at = s->last_buf;
        *s->last = *e;
        s->last->source = str_copy(&at, e->source);
        s->last->name = str_copy(&at, e->name);
        s->last->object = str_copy(&at, e->object);
        s->last->unit = str_copy(&at, e->unit);
        for (size_t i = 0; i < e->n_attrs; i++) {
                s->last->attrs[i].key = str_copy(&at, e->attrs[i].key);
                if (e->attrs[i].type == EVENT_ATTR_STRING)
                        s->last->attrs[i].str = str_copy(&at, e->attrs[i].str);
        }
}

void rule_engine_free(struct rule_engine *re)
{
        if (!re)
                return;
        for (size_t b = 0; b < re->n_buckets; b++)
                for (struct rstate *s = re->buckets[b], *next; s; s = next) {
                        next = s->next;
                        rstate_free(s);
                }
        free(re->buckets);
        free(re->kfilter);
        free(re->rule_states);
        free(re->stateful);
        free(re->slot_attr);
        free(re->slot_gen);
        free(re->vc);
        free(re->kc);
        free(re->gc);
        ruleset_free(re->rs);
        free(re);
}

const struct ruleset *rule_engine_rules(const struct rule_engine *re)
{
        return re->rs;
}

/* A state's counts depend on its kind and its rule: change either only
 * between state_account(-1) and state_account(+1). */
static void state_account(struct rule_engine *re, const struct rstate *s, int delta)
{
        if (s->kind == RS_FIRING || s->kind == RS_CLEARING)
                re->n_firing += (size_t)delta;
        if (s->kind == RS_PENDING || s->kind == RS_CLEARING || (s->kind == RS_FIRING && s->rule->has_clear_after))
                re->n_timed += (size_t)delta;
}

static void state_set(struct rule_engine *re, struct rstate *s, enum rstate_kind kind, uint64_t since)
{
        state_account(re, s, -1);
        s->kind = kind;
        s->since = since;
        state_account(re, s, +1);
}

/* Unlinks and frees s; pp points at the link to it. */
static void state_remove(struct rule_engine *re, struct rstate **pp)
{
        struct rstate *s = *pp;

        *pp = s->next;
        state_account(re, s, -1);
        re->n_states--;
        re->kfilter[s->key_hash & (re->n_kfilter - 1)]--;
        if (re->rule_states && s->rule->index < re->rs->n && --re->rule_states[s->rule->index] == 0)
                re->stateful[s->rule->index / 64] &= ~(1ULL << (s->rule->index % 64));
        rstate_free(s);
}

static struct rstate **state_find(struct rule_engine *re, const struct rule *r, const char *key, size_t len,
                                  uint64_t hash)
{
        struct rstate **pp = &re->buckets[hash & (re->n_buckets - 1)];

        for (; *pp; pp = &(*pp)->next) {
                const struct rstate *s = *pp;

                if (s->hash == hash && s->rule == r && s->key_len == len && memcmp(s->key, key, len) == 0)
                        return pp;
        }
        return pp;
}

static void kfilter_grow(struct rule_engine *re)
{
        size_t n = 2 * re->n_buckets;
        uint32_t *f = xcalloc(n, sizeof *f);

        if (!f)
                return; /* more false "maybe"s, still correct */
        for (size_t i = 0; i < re->n_buckets; i++)
                for (const struct rstate *s = re->buckets[i]; s; s = s->next)
                        f[s->key_hash & (n - 1)]++;
        free(re->kfilter);
        re->kfilter = f;
        re->n_kfilter = n;
}

static void buckets_grow(struct rule_engine *re)
{
        size_t n = re->n_buckets * 2;
        struct rstate **b = xcalloc(n, sizeof *b);

        if (!b)
                return; /* longer chains, still correct */
        for (size_t i = 0; i < re->n_buckets; i++)
                for (struct rstate *s = re->buckets[i], *next; s; s = next) {
                        next = s->next;
                        s->next = b[s->hash & (n - 1)];
                        b[s->hash & (n - 1)] = s;
                }
        free(re->buckets);
        re->buckets = b;
        re->n_buckets = n;
        kfilter_grow(re);
}

static struct rstate *state_new(struct rule_engine *re, const struct rule *r, const char *key, size_t len,
                                uint64_t hash, enum rstate_kind kind, uint64_t since)
{
        struct rstate *s;

        if (re->n_states >= re->max_states) {
                re->stats.shed++;
                return NULL;
        }
        s = xcalloc(1, sizeof *s + len + 1);
        if (!s) {
                re->stats.shed++;
                return NULL;
        }
        s->rule = r;
        s->hash = hash;
        s->key_hash = hash_words(key, len);
        re->kfilter[s->key_hash & (re->n_kfilter - 1)]++;
        s->kind = kind;
        s->since = since;
        s->key_len = len;
        memcpy(s->key, key, len);
        s->key[len] = '\0';
        s->next = re->buckets[hash & (re->n_buckets - 1)];
        re->buckets[hash & (re->n_buckets - 1)] = s;
        re->n_states++;
        if (re->rule_states[r->index]++ == 0)
                re->stateful[r->index / 64] |= 1ULL << (r->index % 64);
        state_account(re, s, +1);
        if (re->n_states > re->n_buckets)
                buckets_grow(re);
        return s;
}

static void render_text(const struct tmpl *t, const struct eval_ctx *c, char *buf, size_t size)
{
        size_t full;

        tmpl_render(t, c, false, buf, size, &full, NULL);
        if (full > size - 1) {
                size_t cut = utf8_cut(buf, size - 4);

                memcpy(buf + cut, "...", 4);
        }
}

static void render_texts(struct rule_engine *re, const struct rule *r, const struct eval_ctx *c)
{
        render_text(&r->title, c, re->title, sizeof re->title);
        if (r->has_desc)
                render_text(&r->desc, c, re->desc, sizeof re->desc);
        else
                re->desc[0] = '\0';
}

static void save_one(char **p, size_t *cap, const char *s)
{
        size_t len = strlen(s) + 1;

        if (len > *cap) {
                char *n = xrealloc(*p, len);

                if (!n)
                        return; /* keeps the older text */
                *p = n;
                *cap = len;
        }
        memcpy(*p, s, len);
}

static void save_texts(struct rule_engine *re, struct rstate *s)
{
        save_one(&s->title, &s->title_cap, re->title);
        save_one(&s->desc, &s->desc_cap, re->desc);
}

static void emit(enum rule_transition t, const struct rstate *s, const char *title, const char *desc,
                 const struct event *e, uint64_t mono, rule_hit_fn fn, void *userdata)
{
        struct rule_hit hit = {
                .transition = t,
                .rule = s->rule,
                .level = s->rule->level,
                .key = s->key,
                .title = title ? title : "",
                .description = desc ? desc : "",
                .event = e,
                .mono_usec = mono,
        };

        if (fn)
                fn(&hit, userdata);
}

static bool elapsed(uint64_t now, uint64_t since, uint64_t dur)
{
        return now >= since && now - since >= dur;
}

/* The event's rendering of r's key template, shared by the rules with the
 * same template; NULL when a field of the key is missing. */
static struct kcache *get_key(struct rule_engine *re, const struct rule *r, const struct eval_ctx *c)
{
        struct kcache *k = &re->kc[r->key_id];
        size_t full;
        uint64_t h;

        if (k->gen == re->gen)
                return k->ok ? k : NULL;
        k->gen = re->gen;
        k->ok = tmpl_render(&r->key, c, true, k->key, sizeof k->key, &full, &h) == 0;
        if (!k->ok)
                return NULL;
        k->len = full;
        if (full > sizeof k->key - 1) {
                /* never let two long keys collide silently: keep a prefix
                 * and append the hash of the whole key */
                size_t cut = utf8_cut(k->key, sizeof k->key - 1 - 17);

                snprintf(k->key + cut, sizeof k->key - cut, "~%016llx", (unsigned long long)h);
                re->stats.keys_truncated++;
                k->len = strlen(k->key);
        }
        k->key_hash = hash_words(k->key, k->len);
        k->live = re->kfilter[k->key_hash & (re->n_kfilter - 1)] != 0;
        k->hashed = false;
        return k;
}

/* A state's hash from its key's: FNV-1a, as it always was (the table's
 * bucket order is the order in which rule_engine_tick() reports). */
static uint64_t state_hash_with(const struct rule *r, uint64_t key_fnv)
{
        return key_fnv ^ (r->name_hash * 0x9e3779b97f4a7c15ULL);
}

static uint64_t state_hash(const struct rule *r, struct kcache *k)
{
        if (!k->hashed) {
                k->hash = hash_mem(HASH_INIT, k->key, k->len);
                k->hashed = true;
        }
        return state_hash_with(r, k->hash);
}

/* The event's value of f as the prefilters see it. */
static inline struct vcache *vcache_get(struct rule_engine *re, const struct fieldref *f, const struct eval_ctx *c)
{
        struct vcache *v = &re->vc[fieldref_index(f)];

        if (v->gen != re->gen) {
                struct val fv = field_value(c, f);

                v->gen = re->gen;
                v->str = fv.type == VAL_STR;
                v->hashed = false;
                v->lit = 0;
                if (v->str)
                        v->s = fv.str;
        }
        return v;
}

static uint64_t vcache_hash(struct vcache *v)
{
        if (!v->hashed) {
                v->hash = hash_words(v->s, strlen(v->s));
                v->hashed = true;
        }
        return v->hash;
}

static bool eval_when(struct rule_engine *re, const struct rule *r, const struct eval_ctx *c)
{
        for (size_t i = 0; i < r->n_pre; i++) {
                const struct prefilter *p = &r->pre[i];
                struct vcache *v = vcache_get(re, &p->field, c);

                if (!v->str)
                        return false; /* missing or a number: no string match either way */
                if (p->glob) {
                        struct gcache *g = &re->gc[p->id];

                        if (g->gen != re->gen) {
                                g->gen = re->gen;
                                g->match = glob_match(p->node, v->s);
                        }
                        if (g->match == p->negate)
                                return false;
                        continue;
                }
                if (v->lit == p->id + 1)
                        continue;
                if (vcache_hash(v) != p->hash || strcmp(v->s, p->lit) != 0)
                        return false;
                v->lit = p->id + 1;
        }
        for (size_t i = 0; i < r->n_rest; i++)
                if (!cond(r->when.nodes, r->rest[i], c))
                        return false;
        return true;
}

/* Starts a state for a (rule, key) that was idle and whose when is true. */
static void start_state(struct rule_engine *re, const struct rule *r, const struct eval_ctx *c, const struct kcache *k,
                        uint64_t hash, uint64_t now, rule_hit_fn fn, void *userdata)
{
        struct rstate *s;

        if (!r->has_for || r->for_usec == 0) {
                s = state_new(re, r, k->key, k->len, hash, RS_FIRING, now);
                if (!s)
                        return;
                render_texts(re, r, c);
                if (r->has_clear_after)
                        save_texts(re, s); /* for the clear that time makes */
                emit(RULE_FIRING, s, re->title, re->desc, c->e, now, fn, userdata);
                return;
        }
        s = state_new(re, r, k->key, k->len, hash, RS_PENDING, now);
        if (!s)
                return;
        render_texts(re, r, c);
        save_texts(re, s);
        save_event(s, c->e);
}

static struct ncache *ncache_entry(struct ncache *tab, size_t size, const char *p)
{
        return &tab[(((uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ULL) >> 32) & (size - 1)];
}

static bool ncache_get(const struct ncache *nc, const char *p, int *ret)
{
        if (nc->p != p || strcmp(nc->text, p) != 0)
                return false;
        *ret = nc->id;
        return true;
}

static void ncache_put(struct ncache *nc, const char *p, int id)
{
        size_t len = strlen(p);

        if (len >= sizeof nc->text)
                return;
        memcpy(nc->text, p, len + 1);
        nc->p = p;
        nc->id = id;
}

static void bind_event(struct rule_engine *re, const struct event *e)
{
        const struct slot_table *st = &re->rs->slots;

        if (++re->gen == 0) {
                memset(re->slot_gen, 0, st->n * sizeof *re->slot_gen);
                memset(re->vc, 0, re->n_vc * sizeof *re->vc);
                memset(re->kc, 0, re->n_kc * sizeof *re->kc);
                memset(re->gc, 0, re->n_gc * sizeof *re->gc);
                re->gen = 1;
        }
        if (st->n == 0)
                return;
        for (size_t i = 0; i < e->n_attrs && i < EVENT_ATTRS_MAX; i++) {
                const struct event_attr *a = &e->attrs[i];
                struct ncache *nc;
                int s;

                if (!a->key)
                        continue;
                nc = ncache_entry(re->keys, KEY_CACHE_SIZE, a->key);
                if (!ncache_get(nc, a->key, &s)) {
                        s = slot_table_find(st, a->key, hash_str(a->key));
                        ncache_put(nc, a->key, s);
                }
                if (s >= 0 && re->slot_gen[s] != re->gen) { /* the first of duplicates wins */
                        re->slot_gen[s] = re->gen;
                        re->slot_attr[s] = a;
                }
        }
}

static int dispatch_lookup(const struct ruleset *rs, const char *source)
{
        uint64_t h = hash_str(source);
        size_t mask = rs->disp_cap - 1;

        for (size_t i = h & mask;; i = (i + 1) & mask) {
                uint32_t v = rs->disp_index[i];

                if (v == 0)
                        return -1;
                if (rs->disp[v - 1].hash == h && strcmp(rs->disp[v - 1].source, source) == 0)
                        return (int)(v - 1);
        }
}

static const struct dispatch_entry *dispatch_find(struct rule_engine *re, const char *source)
{
        const struct ruleset *rs = re->rs;
        struct ncache *nc;
        int id;

        if (!source || rs->disp_cap == 0)
                return NULL;
        nc = ncache_entry(re->sources, SOURCE_CACHE_SIZE, source);
        if (!ncache_get(nc, source, &id)) {
                id = dispatch_lookup(rs, source);
                ncache_put(nc, source, id);
        }
        return id >= 0 ? &rs->disp[id] : NULL;
}

/* Applies one event to one rule. Returns true when its when or clear held. */
static bool eval_rule(struct rule_engine *re, const struct rule *r, const struct eval_ctx *c, rule_hit_fn fn,
                      void *userdata)
{
        const struct event *e = c->e;
        uint64_t now = e->mono_usec, hash;
        struct kcache *k;
        struct rstate **pp, *s;
        bool w, cl;

        w = eval_when(re, r, c);
        if (!w && re->rule_states[r->index] == 0)
                return false;
        k = get_key(re, r, c);
        if (!k)
                return false; /* the rule does not apply to events without its key fields */
        if (!k->live) {       /* no rule has a state with this key */
                if (w) {
                        start_state(re, r, c, k, state_hash(r, k), now, fn, userdata);
                        k->live = true;
                }
                return w;
        }
        hash = state_hash(r, k);
        pp = state_find(re, r, k->key, k->len, hash);
        s = *pp;
        if (!s) {
                if (w)
                        start_state(re, r, c, k, hash, now, fn, userdata);
                return w;
        }
        /* "clear after" has no clear condition: only time ends the fault */
        cl = w || r->has_clear_after ? false : r->clear.root >= 0 ? expr_eval_bool(&r->clear, c) : true;

        /* transitions that time made since the previous event */
        if (s->kind == RS_PENDING && elapsed(now, s->since, r->for_usec)) {
                if (w) {
                        state_set(re, s, RS_FIRING, now);
                        render_texts(re, r, c);
                        if (r->has_clear_after)
                                save_texts(re, s);
                        emit(RULE_FIRING, s, re->title, re->desc, e, now, fn, userdata);
                        return true;
                }
                uint64_t at = s->since + r->for_usec;

                state_set(re, s, RS_FIRING, at);
                emit(RULE_FIRING, s, s->title, s->desc, s->last, at, fn, userdata);
                forget_event(s);
                /* and its "clear after" may have passed since, too */
        }
        if (s->kind == RS_FIRING && r->has_clear_after && elapsed(now, s->since, r->clear_after_usec)) {
                emit(RULE_CLEARED, s, s->title, s->desc, NULL, s->since + r->clear_after_usec, fn, userdata);
                state_remove(re, pp);
                if (w)
                        start_state(re, r, c, k, hash, now, fn, userdata);
                return w;
        } else if (s->kind == RS_CLEARING && elapsed(now, s->since, r->clear_for_usec)) {
                if (cl) {
                        render_texts(re, r, c);
                        emit(RULE_CLEARED, s, re->title, re->desc, e, now, fn, userdata);
                } else {
                        emit(RULE_CLEARED, s, s->title, s->desc, NULL, s->since + r->clear_for_usec, fn, userdata);
                }
                state_remove(re, pp);
                if (w)
                        start_state(re, r, c, k, hash, now, fn, userdata);
                return w || cl;
        }

        switch (s->kind) {
        case RS_PENDING:
                if (w) {
                        render_texts(re, r, c);
                        save_texts(re, s);
                        save_event(s, e);
                } else {
                        state_remove(re, pp);
                }
                break;
        case RS_FIRING:
                if (w) {
                        s->since = now > s->since ? now : s->since; /* pushes a "clear after" out */
                        render_texts(re, r, c);
                        if (r->has_clear_after)
                                save_texts(re, s);
                        emit(RULE_REPEAT, s, re->title, re->desc, e, now, fn, userdata);
                } else if (cl) {
                        render_texts(re, r, c);
                        if (!r->has_clear_for || r->clear_for_usec == 0) {
                                emit(RULE_CLEARED, s, re->title, re->desc, e, now, fn, userdata);
                                state_remove(re, pp);
                        } else {
                                state_set(re, s, RS_CLEARING, now);
                                save_texts(re, s);
                        }
                }
                break;
        case RS_CLEARING:
                if (w) {
                        state_set(re, s, RS_FIRING, now > s->since ? now : s->since);
                        render_texts(re, r, c);
                        emit(RULE_REPEAT, s, re->title, re->desc, e, now, fn, userdata);
                } else if (cl) {
                        render_texts(re, r, c);
                        save_texts(re, s);
                } else {
                        state_set(re, s, RS_FIRING, s->since); /* clear must hold continuously */
                }
                break;
        }
        return w || cl;
}

/* The rules of de whose when can hold for this event (struct
 * dispatch_entry): a bitmap over rule indices. */
static const uint64_t *candidates(struct rule_engine *re, const struct dispatch_entry *de, const struct eval_ctx *c)
{
        struct vcache *v;
        uint64_t h;
        size_t mask;

        if (!de->has_disc)
                return de->rules;
        v = vcache_get(re, &de->disc, c);
        if (!v->str)
                return de->undisc; /* no equality with a literal can hold */
        h = vcache_hash(v);
        mask = de->lit_cap - 1;
        for (size_t i = h & mask;; i = (i + 1) & mask) {
                uint32_t l = de->lit_index[i];

                if (l == 0)
                        return de->undisc;
                if (de->lits[l - 1].hash == h && strcmp(de->lits[l - 1].lit, v->s) == 0) {
                        v->lit = de->lits[l - 1].id + 1; /* the rules' prefilters need not compare again */
                        return de->lits[l - 1].cand;
                }
        }
}

bool rule_engine_eval(struct rule_engine *re, const struct event *e, rule_hit_fn fn, void *userdata)
{
        const struct ruleset *rs = re->rs;
        const struct dispatch_entry *de;
        const uint64_t *cand;
        struct eval_ctx c;
        bool matched = false;

        re->stats.events++;
        if (!rs || rs->n == 0) {
                re->stats.unmatched++;
                return false;
        }
        bind_event(re, e);
        c.e = e;
        c.slot_attr = re->slot_attr;
        c.slot_gen = re->slot_gen;
        c.gen = re->gen;
        de = dispatch_find(re, e->source);
        if (!de)
                de = &rs->wild;
        cand = candidates(re, de, &c);
        /* the candidates, and the rules with live states whatever the event
         * says; in load order. eval_rule changes at most its own rule's bit
         * of stateful, which this word no longer holds. */
        for (size_t w = 0; w < rs->n_words; w++) {
                uint64_t bits = cand[w] | (de->rules[w] & re->stateful[w]);

                while (bits) {
                        size_t i = w * 64 + (size_t)__builtin_ctzll(bits);

                        bits &= bits - 1;
                        matched |= eval_rule(re, rs->rules[i], &c, fn, userdata);
                }
        }
        if (!matched)
                re->stats.unmatched++;
        return matched;
}

void rule_engine_tick(struct rule_engine *re, uint64_t now, rule_hit_fn fn, void *userdata)
{
        if (re->n_timed == 0)
                return;
        for (size_t b = 0; b < re->n_buckets; b++) {
                struct rstate **pp = &re->buckets[b];

                while (*pp) {
                        struct rstate *s = *pp;
                        const struct rule *r = s->rule;

                        if (s->kind == RS_PENDING && elapsed(now, s->since, r->for_usec)) {
                                state_set(re, s, RS_FIRING, s->since + r->for_usec);
                                emit(RULE_FIRING, s, s->title, s->desc, s->last, s->since, fn, userdata);
                                forget_event(s);
                        }
                        if (s->kind == RS_FIRING && r->has_clear_after && elapsed(now, s->since, r->clear_after_usec)) {
                                emit(RULE_CLEARED, s, s->title, s->desc, NULL, s->since + r->clear_after_usec, fn,
                                     userdata);
                                state_remove(re, pp);
                                continue;
                        } else if (s->kind == RS_CLEARING && elapsed(now, s->since, r->clear_for_usec)) {
                                emit(RULE_CLEARED, s, s->title, s->desc, NULL, s->since + r->clear_for_usec, fn,
                                     userdata);
                                state_remove(re, pp);
                                continue;
                        }
                        pp = &s->next;
                }
        }
}

void rule_engine_set_rules(struct rule_engine *re, struct ruleset *rs)
{
        size_t n_slots = rs ? rs->slots.n : 0, n_rules = rs ? rs->n : 0;
        const struct event_attr **slot_attr = xcalloc(n_slots + 1, sizeof *slot_attr);
        uint32_t *slot_gen = xcalloc(n_slots + 1, sizeof *slot_gen);
        size_t *rule_states = xcalloc(n_rules + 1, sizeof *rule_states);
        uint64_t *stateful = xcalloc((rs ? rs->n_words : 0) + 1, sizeof *stateful);
        size_t n_vc = BUILTIN_MAX + n_slots, n_kc = rs ? rs->n_keys : 0;
        struct vcache *vc = xcalloc(n_vc, sizeof *vc);
        struct kcache *kc = xcalloc(n_kc + 1, sizeof *kc);
        size_t n_gc = rs ? rs->n_globs : 0;
        struct gcache *gc = xcalloc(n_gc + 1, sizeof *gc);

        if (!slot_attr || !slot_gen || !rule_states || !stateful || !vc || !kc || !gc) {
                free(stateful);
                free(gc);
                free(slot_attr);
                free(slot_gen);
                free(rule_states);
                free(vc);
                free(kc);
                ruleset_free(rs);
                return;
        }
        for (size_t b = 0; b < re->n_buckets; b++) {
                struct rstate **pp = &re->buckets[b];

                while (*pp) {
                        struct rstate *s = *pp;
                        const struct rule *nr = rs ? ruleset_find(rs, s->rule->name, s->rule->name_hash) : NULL;

                        /* A rule whose key template changed makes other keys
                         * now: its old states would never clear. */
                        if (nr && strcmp(nr->key.src, s->rule->key.src) != 0)
                                nr = NULL;
                        if (!nr) {
                                *pp = s->next;
                                state_account(re, s, -1);
                                re->n_states--;
                                re->kfilter[s->key_hash & (re->n_kfilter - 1)]--;
                                rstate_free(s);
                                continue;
                        }
                        /* same name hash: the state stays in its bucket. Its
                         * counts follow the new rule: gaining "clear after"
                         * makes a firing state timed (from its since: when it
                         * fired or last repeated), and a clearing one, which
                         * such a rule cannot have, firing again; losing it
                         * leaves a firing state to the new clear condition. */
                        state_account(re, s, -1);
                        s->rule = nr;
                        if (nr->has_clear_after && s->kind == RS_CLEARING)
                                s->kind = RS_FIRING;
                        state_account(re, s, +1);
                        rule_states[nr->index]++;
                        stateful[nr->index / 64] |= 1ULL << (nr->index % 64);
                        pp = &s->next;
                }
        }
        ruleset_free(re->rs);
        free(re->slot_attr);
        free(re->slot_gen);
        free(re->rule_states);
        free(re->stateful);
        re->rs = rs;
        re->stateful = stateful;
        re->slot_attr = slot_attr;
        re->slot_gen = slot_gen;
        re->rule_states = rule_states;
        free(re->vc);
        free(re->kc);
        re->vc = vc;
        re->n_vc = n_vc;
        re->kc = kc;
        re->n_kc = n_kc;
        free(re->gc);
        re->gc = gc;
        re->n_gc = n_gc;
        memset(re->keys, 0, sizeof re->keys);
        memset(re->sources, 0, sizeof re->sources);
        re->gen = 1;
}

void rule_engine_get_stats(const struct rule_engine *re, struct rule_engine_stats *ret)
{
        *ret = re->stats;
        ret->states = re->n_states;
        ret->firing = re->n_firing;
}

static const struct rule *rule_by_name(const struct rule_engine *re, const char *rule)
{
        for (size_t i = 0; re->rs && i < re->rs->n; i++)
                if (strcmp(re->rs->rules[i]->name, rule) == 0)
                        return re->rs->rules[i];
        return NULL;
}

bool rule_engine_has_state(struct rule_engine *re, const char *rule, const char *key)
{
        const struct rule *r = rule_by_name(re, rule);
        size_t len = strlen(key);

        if (!r || len == 0 || len >= RULE_KEY_MAX)
                return false;
        return *state_find(re, r, key, len, state_hash_with(r, hash_mem(HASH_INIT, key, len)));
}

int rule_engine_restore(struct rule_engine *re, const char *rule, const char *key, const char *title,
                        uint64_t now_mono_usec)
{
        const struct rule *r = rule_by_name(re, rule);
        size_t len = strlen(key);
        struct rstate **pp, *s;
        uint64_t hash;

        if (!r)
                return -ENOENT;
        if (len == 0 || len >= RULE_KEY_MAX)
                return -EINVAL;
        hash = state_hash_with(r, hash_mem(HASH_INIT, key, len));
        pp = state_find(re, r, key, len, hash);
        if (*pp)
                return 0;
        s = state_new(re, r, key, len, hash, RS_FIRING, now_mono_usec);
        if (!s)
                return -ENOSPC;
        save_one(&s->title, &s->title_cap, title ? title : "");
        save_one(&s->desc, &s->desc_cap, "");
        return 0;
}
