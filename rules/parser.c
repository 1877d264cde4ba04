/* parser: the generic block syntax shared by agent.conf and *.rules.
 *
 *   file      = { statement } ;
 *   statement = WORD { token } ( NEWLINE | "{" { statement } "}" NEWLINE ) ;
 *
 * The parser knows nothing about what the statements mean: it builds a tree
 * of statements (a keyword plus the tokens of the rest of the line) and
 * blocks, and handles `include "path"` at the top level with a file stack
 * (relative to the including file, cycles and depth checked). conf.c and
 * compile.c interpret the tree. A statement with a lexical error is kept but
 * marked bad so the interpreters skip it without a second message; the
 * parser always continues at the next line, so one run reports everything
 * (up to DIAG_MAX messages). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/xalloc.h"
#include "internal.h"

struct pstate {
        struct srcnames *names;
        const struct parse_opts *opts;
        struct diag *d;
        unsigned *n_errors;
        char *stack[CONF_INCLUDE_DEPTH + 1]; /* real paths of the files being read */
        size_t depth;
};

struct pfile {
        struct lexer lx;
        char *dir; /* directory includes are relative to */
        struct tok pushback;
        bool have_pushback;
};

static int next_tok(struct pfile *pf, struct tok *t)
{
        if (pf->have_pushback) {
                *t = pf->pushback;
                pf->have_pushback = false;
                return 0;
        }
        return lexer_next(&pf->lx, t);
}

static void push_tok(struct pfile *pf, struct tok *t)
{
        pf->pushback = *t;
        pf->have_pushback = true;
}

static void stmt_clear(struct cstmt *s)
{
        for (size_t i = 0; i < s->n_toks; i++)
                tok_clear(&s->toks[i]);
        free(s->toks);
        cblock_free(s->block);
}

void cblock_free(struct cblock *b)
{
        if (!b)
                return;
        for (size_t i = 0; i < b->n; i++)
                stmt_clear(&b->stmts[i]);
        free(b->stmts);
        free(b);
}

/* Arrays below grow by doubling; their capacity is implied by the count
 * (the next power of two), so growing happens when the count is 0 or a power
 * of two. Growing by one element made a long statement quadratic. */
static bool needs_growth(size_t n)
{
        return (n & (n - 1)) == 0;
}

static int stmt_push_tok(struct cstmt *s, struct tok *t)
{
        if (needs_growth(s->n_toks)) {
                struct tok *v = xrealloc(s->toks, (s->n_toks ? s->n_toks * 2 : 1) * sizeof *v);
                if (!v)
                        return -ENOMEM;
                s->toks = v;
        }
        s->toks[s->n_toks++] = *t;
        return 0;
}

static int block_push_stmt(struct cblock *b, struct cstmt *s)
{
        if (needs_growth(b->n)) {
                struct cstmt *v = xrealloc(b->stmts, (b->n ? b->n * 2 : 1) * sizeof *v);
                if (!v)
                        return -ENOMEM;
                b->stmts = v;
        }
        b->stmts[b->n++] = *s;
        return 0;
}

int conf_read_file(const char *path, char **ret, size_t *ret_len)
{
        struct stat st;
        char *buf = NULL;
        size_t len = 0, cap;
        int fd, r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                goto out;
        }
        if (!S_ISREG(st.st_mode)) {
                r = -EINVAL;
                goto out;
        }
        if (st.st_size > CONF_FILE_MAX) {
                r = -EFBIG;
                goto out;
        }
        /* Sized to the file, not to CONF_FILE_MAX: a 1 MiB block freed at
         * start raises glibc's mmap threshold, and the heap of a daemon that
         * should idle in 3 MiB then keeps what later large blocks leave. */
        cap = (size_t)st.st_size + 1;
        buf = xmalloc(cap + 1);
        if (!buf) {
                r = -ENOMEM;
                goto out;
        }
        for (;;) {
                ssize_t n;

                if (len == cap) { /* it grew while we read it */
                        char *nb;

                        cap = CONF_FILE_MAX + 1;
                        nb = xrealloc(buf, cap + 1);
                        if (!nb) {
                                r = -ENOMEM;
                                goto out;
                        }
                        buf = nb;
                }
                n = read(fd, buf + len, cap - len);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto out;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len > CONF_FILE_MAX) {
                        r = -EFBIG; /* grew while we read it */
                        goto out;
                }
        }
        buf[len] = '\0';
        *ret = buf;
        *ret_len = len;
        buf = NULL;
        r = 0;
out:
        free(buf);
        close(fd);
        return r;
}

static char *dir_of(const char *name)
{
        const char *slash = strrchr(name, '/');

        if (!slash)
                return xstrdup(".");
        if (slash == name)
                return xstrdup("/");
        return xstrndup(name, (size_t)(slash - name));
}

static int parse_stream(struct pstate *ps, struct pfile *pf, struct cblock *out, bool top, const struct tok *opener,
                        unsigned level);

/* Skips a block whose nesting is too deep, without recursion. */
static int skip_block(struct pfile *pf)
{
        unsigned depth = 1;
        struct tok t;
        int r;

        while (depth > 0) {
                r = next_tok(pf, &t);
                if (r < 0)
                        return r;
                if (t.type == TOK_EOF) {
                        push_tok(pf, &t);
                        return 0;
                }
                if (t.type == TOK_LBRACE)
                        depth++;
                else if (t.type == TOK_RBRACE)
                        depth--;
                tok_clear(&t);
        }
        return 0;
}

static int do_include(struct pstate *ps, struct pfile *pf, struct cstmt *s, struct cblock *out)
{
        const struct tok *kw = &s->toks[0];
        char *path = NULL, *text = NULL, real[PATH_MAX];
        const char *iname;
        size_t len;
        struct pfile sub = {0};
        int r;

        if (s->n_toks != 2 || s->toks[1].type != TOK_STRING) {
                char what[96];

                if (s->n_toks < 2)
                        snprintf(what, sizeof what, "end of line");
                else
                        tok_describe(&s->toks[1], what, sizeof what);
                conf_error(ps->d, ps->n_errors, s->n_toks < 2 ? kw : &s->toks[1],
                           "expected a quoted path after include, such as include \"local.rules\", got %s",
                           s->n_toks == 2  ? what
                           : s->n_toks < 2 ? "end of line"
                                           : "more than one value");
                return 0;
        }
        if (!ps->opts->allow_include) {
                conf_error(ps->d, ps->n_errors, kw, "include is not allowed here");
                return 0;
        }
        if (ps->depth >= CONF_INCLUDE_DEPTH) {
                conf_error(ps->d, ps->n_errors, kw, "includes nested more than %d deep", CONF_INCLUDE_DEPTH);
                return 0;
        }
        if (s->toks[1].text[0] == '/')
                path = xstrdup(s->toks[1].text);
        else
                path = xasprintf("%s/%s", pf->dir, s->toks[1].text);
        if (!path)
                return -ENOMEM;
        if (!realpath(path, real)) {
                conf_error(ps->d, ps->n_errors, &s->toks[1], "cannot include \"%s\": %s", path, strerror(errno));
                r = 0;
                goto out;
        }
        for (size_t i = 0; i < ps->depth; i++)
                if (ps->stack[i] && strcmp(ps->stack[i], real) == 0) {
                        conf_error(ps->d, ps->n_errors, &s->toks[1], "include cycle: \"%s\" is already being read",
                                   path);
                        r = 0;
                        goto out;
                }
        r = conf_read_file(path, &text, &len);
        if (r < 0) {
                if (r == -ENOMEM)
                        goto out;
                conf_error(ps->d, ps->n_errors, &s->toks[1], "cannot include \"%s\": %s", path,
                           r == -EFBIG    ? "file larger than the 1 MiB limit"
                           : r == -EINVAL ? "not a regular file"
                                          : strerror(-r));
                r = 0;
                goto out;
        }
        iname = srcnames_intern(ps->names, path);
        sub.dir = dir_of(path);
        ps->stack[ps->depth] = xstrdup(real);
        if (!iname || !sub.dir || !ps->stack[ps->depth]) {
                free(ps->stack[ps->depth]);
                ps->stack[ps->depth] = NULL;
                r = -ENOMEM;
                goto out;
        }
        ps->depth++;
        lexer_init(&sub.lx, iname, text, len, ps->d, ps->n_errors);
        r = parse_stream(ps, &sub, out, true, NULL, 0);
        ps->depth--;
        free(ps->stack[ps->depth]);
        ps->stack[ps->depth] = NULL;
        if (sub.have_pushback)
                tok_clear(&sub.pushback);
out:
        free(sub.dir);
        free(text);
        free(path);
        return r;
}

/* Parses statements until end of file (top) or the closing brace. */
static int parse_stream(struct pstate *ps, struct pfile *pf, struct cblock *out, bool top, const struct tok *opener,
                        unsigned level)
{
        struct tok t;
        int r;

        for (;;) {
                struct cstmt s = {0};
                bool ended_by_rbrace = false;

                if (diag_full(ps->d))
                        return 0;
                r = next_tok(pf, &t);
                if (r < 0)
                        return r;
                if (t.type == TOK_NEWLINE)
                        continue;
                if (t.type == TOK_EOF) {
                        if (!top) {
                                conf_error(ps->d, ps->n_errors, &t,
                                           "expected '}' to close the '%s' block opened at line %u, got end of file",
                                           opener->text ? opener->text : "?", opener->line);
                                push_tok(pf, &t);
                        }
                        return 0;
                }
                if (t.type == TOK_RBRACE) {
                        if (!top)
                                return 0;
                        conf_error(ps->d, ps->n_errors, &t, "unexpected '}' with no open block");
                        continue;
                }
                if (t.type != TOK_WORD) {
                        if (t.type != TOK_ERROR) {
                                char what[96];

                                tok_describe(&t, what, sizeof what);
                                conf_error(ps->d, ps->n_errors, &t,
                                           "expected a statement keyword such as rule, collector or include, got %s",
                                           what);
                        }
                        s.bad = true;
                }
                /* the statement: tokens up to the end of the line or a brace */
                for (;;) {
                        if (t.type == TOK_ERROR) {
                                s.bad = true;
                        } else if (s.bad) {
                                tok_clear(&t);
                        } else {
                                r = stmt_push_tok(&s, &t);
                                if (r < 0) {
                                        tok_clear(&t);
                                        stmt_clear(&s);
                                        return r;
                                }
                        }
                        r = next_tok(pf, &t);
                        if (r < 0) {
                                stmt_clear(&s);
                                return r;
                        }
                        if (t.type == TOK_NEWLINE || t.type == TOK_EOF || t.type == TOK_LBRACE || t.type == TOK_RBRACE)
                                break;
                }
                if (t.type == TOK_EOF)
                        push_tok(pf, &t);
                if (t.type == TOK_RBRACE)
                        ended_by_rbrace = true;
                if (t.type == TOK_LBRACE) {
                        struct tok *opener_tok = s.n_toks > 0 ? &s.toks[0] : &t;

                        if (level + 1 >= CONF_BLOCK_DEPTH) {
                                conf_error(ps->d, ps->n_errors, &t, "blocks nested more than %d deep",
                                           CONF_BLOCK_DEPTH - 1);
                                s.bad = true;
                                r = skip_block(pf);
                        } else {
                                s.block = xcalloc(1, sizeof *s.block);
                                r = s.block ? parse_stream(ps, pf, s.block, false, opener_tok, level + 1) : -ENOMEM;
                        }
                        if (r < 0) {
                                stmt_clear(&s);
                                return r;
                        }
                        /* after the closing brace: end of line */
                        r = next_tok(pf, &t);
                        if (r < 0) {
                                stmt_clear(&s);
                                return r;
                        }
                        if (t.type == TOK_RBRACE) {
                                ended_by_rbrace = true;
                        } else if (t.type == TOK_EOF) {
                                push_tok(pf, &t);
                        } else if (t.type != TOK_NEWLINE) {
                                char what[96];

                                tok_describe(&t, what, sizeof what);
                                if (t.type != TOK_ERROR)
                                        conf_error(ps->d, ps->n_errors, &t, "expected end of line after '}', got %s",
                                                   what);
                                tok_clear(&t);
                                while (t.type != TOK_NEWLINE && t.type != TOK_EOF) {
                                        r = next_tok(pf, &t);
                                        if (r < 0) {
                                                stmt_clear(&s);
                                                return r;
                                        }
                                        tok_clear(&t);
                                }
                                if (t.type == TOK_EOF)
                                        push_tok(pf, &t);
                        }
                }
                if (s.n_toks > 0 && s.toks[0].type == TOK_WORD && s.toks[0].kw == KW_INCLUDE && !s.block) {
                        if (!top) {
                                if (!s.bad)
                                        conf_error(ps->d, ps->n_errors, &s.toks[0],
                                                   "include is only allowed outside blocks");
                                r = 0;
                        } else {
                                r = s.bad ? 0 : do_include(ps, pf, &s, out);
                        }
                        stmt_clear(&s);
                        if (r < 0)
                                return r;
                } else if (s.n_toks == 0) {
                        stmt_clear(&s);
                } else {
                        r = block_push_stmt(out, &s);
                        if (r < 0) {
                                stmt_clear(&s);
                                return r;
                        }
                }
                if (ended_by_rbrace) {
                        if (!top)
                                return 0;
                        conf_error(ps->d, ps->n_errors, &t, "unexpected '}' with no open block");
                }
        }
}

int conf_parse_text(const char *name, const char *text, size_t len, struct srcnames *names,
                    const struct parse_opts *opts, struct diag *d, unsigned *n_errors, struct cblock **ret)
{
        struct pstate ps = {.names = names, .opts = opts, .d = d, .n_errors = n_errors};
        struct pfile pf = {0};
        struct cblock *tree;
        const char *iname;
        char real[PATH_MAX];
        int r;

        iname = srcnames_intern(names, name);
        tree = xcalloc(1, sizeof *tree);
        pf.dir = dir_of(name);
        if (!iname || !tree || !pf.dir) {
                r = -ENOMEM;
                goto fail;
        }
        if (len > CONF_FILE_MAX) {
                (*n_errors)++;
                diag_add(d, iname, 1, 1, "input is %zu bytes; the limit is %d (1 MiB)", len, CONF_FILE_MAX);
                *ret = tree;
                free(pf.dir);
                return 0;
        }
        if (realpath(name, real)) {
                ps.stack[0] = xstrdup(real);
                if (!ps.stack[0]) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        ps.depth = 1;
        lexer_init(&pf.lx, iname, text, len, d, n_errors);
        r = parse_stream(&ps, &pf, tree, true, NULL, 0);
        if (pf.have_pushback)
                tok_clear(&pf.pushback);
        free(ps.stack[0]);
        if (r < 0)
                goto fail;
        free(pf.dir);
        *ret = tree;
        return 0;
fail:
        free(pf.dir);
        cblock_free(tree);
        return r;
}
