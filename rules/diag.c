/* diag: the ordered list of "file:line:col: message" diagnostics every
 * parser of the rules module writes into, plus the small shared helpers
 * (interned file names, string hashing).
 *
 * The list is capped at DIAG_MAX messages so a file of garbage cannot make
 * a check run print megabytes; one closing line says that more were
 * dropped. Allocation failure is remembered and shown as a final entry
 * rather than returned, so reporting an error can never itself fail. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/xalloc.h"
#include "internal.h"

struct diag {
        char **msgs;
        struct dpos {
                const char *file; /* points into msgs[i]: the prefix before ':' is not kept separately */
                size_t file_len;
                unsigned line, col;
        } * pos;
        size_t n;
        bool oom;
        bool overflow;
};

static const char diag_oom_msg[] = "out of memory while reporting errors";

struct diag *diag_new(void)
{
        return xcalloc(1, sizeof(struct diag));
}

void diag_free(struct diag *d)
{
        if (!d)
                return;
        for (size_t i = 0; i < d->n; i++)
                free(d->msgs[i]);
        free(d->msgs);
        free(d->pos);
        free(d);
}

/* True once a message beyond DIAG_MAX was refused (and the closing "too
 * many errors" line added): parsing further is pointless. */
bool diag_full(const struct diag *d)
{
        return d && d->overflow;
}

static void diag_push(struct diag *d, char *msg, size_t file_len, unsigned line, unsigned col)
{
        struct dpos *p;
        char **m;

        if (!msg) {
                d->oom = true;
                return;
        }
        m = xrealloc(d->msgs, (d->n + 1) * sizeof *m);
        if (!m) {
                free(msg);
                d->oom = true;
                return;
        }
        d->msgs = m;
        p = xrealloc(d->pos, (d->n + 1) * sizeof *p);
        if (!p) {
                free(msg);
                d->oom = true;
                return;
        }
        d->pos = p;
        d->msgs[d->n] = msg;
        d->pos[d->n] = (struct dpos){.file = msg, .file_len = file_len, .line = line, .col = col};
        d->n++;
}

/* Rank of an entry's file: the index of the first entry in [start, n) with
 * the same file, so files keep the order in which they were reported. */
static size_t file_rank(const struct diag *d, size_t start, size_t i)
{
        for (size_t j = start; j < i; j++)
                if (d->pos[j].file_len == d->pos[i].file_len && memcmp(d->msgs[j], d->msgs[i], d->pos[i].file_len) == 0)
                        return j;
        return i;
}

void diag_sort_from(struct diag *d, size_t start)
{
        size_t n;

        if (!d || start >= d->n)
                return;
        if (d->overflow)
                n = d->n - 1; /* the closing "too many errors" line stays last */
        else
                n = d->n;
        /* insertion sort: stable, and lists are at most DIAG_MAX long */
        for (size_t i = start + 1; i < n; i++) {
                for (size_t j = i; j > start; j--) {
                        size_t ra = file_rank(d, start, j - 1), rb = file_rank(d, start, j);
                        const struct dpos *a = &d->pos[j - 1], *b = &d->pos[j];
                        bool swap =
                                rb < ra || (rb == ra && (b->line < a->line || (b->line == a->line && b->col < a->col)));
                        char *tm;
                        struct dpos tp;

                        if (!swap)
                                break;
                        tm = d->msgs[j - 1];
                        d->msgs[j - 1] = d->msgs[j];
                        d->msgs[j] = tm;
                        tp = d->pos[j - 1];
                        d->pos[j - 1] = d->pos[j];
                        d->pos[j] = tp;
                }
        }
}

void diag_vadd(struct diag *d, const char *file, unsigned line, unsigned col, const char *fmt, va_list ap)
{
        char body[1024];

        if (!d)
                return;
        if (d->n >= DIAG_MAX) {
                if (!d->overflow) {
                        d->overflow = true;
                        diag_push(d,
                                  xasprintf("%s: too many errors; only the first %d are shown", file ? file : "<input>",
                                            DIAG_MAX),
                                  0, 0, 0);
                }
                return;
        }
        vsnprintf(body, sizeof body, fmt, ap);
        if (!file)
                file = "<input>";
        if (line == 0) /* about the whole file: it could not be read */
                diag_push(d, xasprintf("%s: %s", file, body), strlen(file), 0, 0);
        else
                diag_push(d, xasprintf("%s:%u:%u: %s", file, line, col, body), strlen(file), line, col);
}

void diag_add(struct diag *d, const char *file, unsigned line, unsigned col, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        diag_vadd(d, file, line, col, fmt, ap);
        va_end(ap);
}

size_t diag_count(const struct diag *d)
{
        if (!d)
                return 0;
        return d->n + (d->oom ? 1 : 0);
}

const char *diag_get(const struct diag *d, size_t i)
{
        if (!d)
                return NULL;
        if (i < d->n)
                return d->msgs[i];
        if (i == d->n && d->oom)
                return diag_oom_msg;
        return NULL;
}

void diag_print(const struct diag *d, FILE *f)
{
        for (size_t i = 0; i < diag_count(d); i++)
                fprintf(f, "%s\n", diag_get(d, i));
}

void conf_error(struct diag *d, unsigned *n_errors, const struct tok *t, const char *fmt, ...)
{
        va_list ap;

        (*n_errors)++;
        va_start(ap, fmt);
        diag_vadd(d, t->file, t->line, t->col, fmt, ap);
        va_end(ap);
}

const char *srcnames_intern(struct srcnames *s, const char *name)
{
        char **v, *copy;

        for (size_t i = 0; i < s->n; i++)
                if (strcmp(s->names[i], name) == 0)
                        return s->names[i];
        copy = xstrdup(name);
        if (!copy)
                return NULL;
        v = xrealloc(s->names, (s->n + 1) * sizeof *v);
        if (!v) {
                free(copy);
                return NULL;
        }
        s->names = v;
        s->names[s->n++] = copy;
        return copy;
}

void srcnames_clear(struct srcnames *s)
{
        for (size_t i = 0; i < s->n; i++)
                free(s->names[i]);
        free(s->names);
        s->names = NULL;
        s->n = 0;
}

uint64_t hash_mem(uint64_t h, const void *p, size_t n)
{
        const unsigned char *c = p;

        for (size_t i = 0; i < n; i++) {
                h ^= c[i];
                h *= 1099511628211ULL;
        }
        return h;
}

uint64_t hash_str(const char *s)
{
        uint64_t h = HASH_INIT;

        for (; *s; s++) {
                h ^= (unsigned char)*s;
                h *= 1099511628211ULL;
        }
        return h;
}
