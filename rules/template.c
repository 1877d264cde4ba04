/* template: the key, title and description strings of a rule.
 *
 * "{field}" is replaced by the event's field (built-in or attribute),
 * "{map[key]}" or "{map[\"key\"]}" by a map-like attribute, "{{" and "}}"
 * are literal braces. A template is split into literal and field segments
 * once at compile time; rendering copies into a caller's fixed buffer and
 * never allocates. Numbers print naturally ("85", "85.5", at most 15
 * significant digits). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/xalloc.h"
#include "internal.h"

void tmpl_free(struct tmpl *t)
{
        for (size_t i = 0; i < t->n; i++)
                free(t->segs[i].text);
        free(t->segs);
        free(t->src);
        memset(t, 0, sizeof *t);
}

static int seg_push(struct tmpl *t, const char *text, size_t len, const struct fieldref *f)
{
        struct tseg *v = xrealloc(t->segs, (t->n + 1) * sizeof *v);

        if (!v)
                return -ENOMEM;
        t->segs = v;
        memset(&v[t->n], 0, sizeof v[0]);
        if (text) {
                v[t->n].text = xstrndup(text, len);
                if (!v[t->n].text)
                        return -ENOMEM;
                v[t->n].len = len;
        } else {
                v[t->n].field = *f;
        }
        t->n++;
        return 0;
}

/* Parses the inside of "{...}" (spec, len bytes) into a field name. */
static int field_spec(const char *spec, size_t len, char **ret, char *why, size_t whysize)
{
        const char *br = memchr(spec, '[', len);
        size_t wlen = br ? (size_t)(br - spec) : len;
        char word[300];

        if (len == 0) {
                snprintf(why, whysize, "empty '{}'; write '{{' for a literal brace");
                return -EINVAL;
        }
        if (wlen == 0 || wlen >= sizeof word) {
                snprintf(why, whysize, "invalid field name '{%.*s}'", (int)(len > 40 ? 40 : len), spec);
                return -EINVAL;
        }
        memcpy(word, spec, wlen);
        word[wlen] = '\0';
        if (!word_valid(word)) {
                snprintf(why, whysize, "invalid field name '%s'", word);
                return -EINVAL;
        }
        if (!br) {
                *ret = xstrdup(word);
                return *ret ? 0 : -ENOMEM;
        }
        /* word[key] or word["key"] */
        {
                const char *k = br + 1, *end = spec + len;
                size_t klen;

                if (end[-1] != ']' || end - 1 <= k) {
                        snprintf(why, whysize, "expected '%s[key]' in '{%.*s}'", word, (int)(len > 40 ? 40 : len),
                                 spec);
                        return -EINVAL;
                }
                klen = (size_t)(end - 1 - k);
                if (klen >= 2 && k[0] == '"' && k[klen - 1] == '"') {
                        k++;
                        klen -= 2;
                }
                if (klen == 0 || memchr(k, '"', klen) || memchr(k, ']', klen) || memchr(k, '[', klen)) {
                        snprintf(why, whysize, "invalid key in '{%.*s}'", (int)(len > 40 ? 40 : len), spec);
                        return -EINVAL;
                }
                *ret = xasprintf("%s[%.*s]", word, (int)klen, k);
                return *ret ? 0 : -ENOMEM;
        }
}

int tmpl_compile(struct tmpl *t, const char *src, struct slot_table *st, char *why, size_t whysize)
{
        size_t len = strlen(src), lit = 0;
        char *buf;
        int r = 0;

        tmpl_free(t);
        t->src = xstrdup(src);
        buf = xmalloc(len + 1);
        if (!t->src || !buf) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < len; i++) {
                char c = src[i];

                if (c == '{' && i + 1 < len && src[i + 1] == '{') {
                        buf[lit++] = '{';
                        i++;
                } else if (c == '}' && i + 1 < len && src[i + 1] == '}') {
                        buf[lit++] = '}';
                        i++;
                } else if (c == '}') {
                        snprintf(why, whysize, "single '}' at offset %zu; write '}}' for a literal brace", i);
                        r = -EINVAL;
                        goto out;
                } else if (c == '{') {
                        const char *close = memchr(src + i + 1, '}', len - i - 1);
                        struct fieldref f;
                        char *name = NULL;

                        if (!close) {
                                snprintf(why, whysize, "unterminated '{' at offset %zu; write '{{' for a literal brace",
                                         i);
                                r = -EINVAL;
                                goto out;
                        }
                        r = field_spec(src + i + 1, (size_t)(close - src - i - 1), &name, why, whysize);
                        if (r < 0)
                                goto out;
                        r = slot_table_resolve(st, name, &f);
                        free(name);
                        if (r < 0)
                                goto out;
                        if (lit > 0) {
                                r = seg_push(t, buf, lit, NULL);
                                if (r < 0)
                                        goto out;
                                lit = 0;
                        }
                        r = seg_push(t, NULL, 0, &f);
                        if (r < 0)
                                goto out;
                        i = (size_t)(close - src);
                } else {
                        buf[lit++] = c;
                }
        }
        if (lit > 0)
                r = seg_push(t, buf, lit, NULL);
out:
        free(buf);
        if (r < 0)
                tmpl_free(t);
        return r;
}

void number_format_natural(double v, char *buf, size_t size)
{
        if (v == 0) {
                snprintf(buf, size, "0");
                return;
        }
        if (v > -1e15 && v < 1e15 && v == (double)(long long)v && size >= 24) {
                /* integers, the common reading: no printf */
                char tmp[24];
                long long n = (long long)v;
                unsigned long long u = n < 0 ? (unsigned long long)-n : (unsigned long long)n;
                size_t i = sizeof tmp, k = 0;

                do {
                        tmp[--i] = (char)('0' + u % 10);
                        u /= 10;
                } while (u > 0);
                if (n < 0)
                        buf[k++] = '-';
                memcpy(buf + k, tmp + i, sizeof tmp - i);
                buf[k + sizeof tmp - i] = '\0';
                return;
        }
        snprintf(buf, size, "%.15g", v);
}

size_t utf8_cut(const char *s, size_t len)
{
        size_t j, need;
        unsigned char lead;

        if (len == 0)
                return 0;
        j = len - 1;
        while (j > 0 && ((unsigned char)s[j] & 0xc0) == 0x80 && len - j < 4)
                j--;
        lead = (unsigned char)s[j];
        if (lead < 0x80)
                return len;
        need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
        return j + need > len ? j : len;
}

struct out {
        char *buf;
        size_t size, len, full;
        uint64_t hash;
        bool want_hash; /* the caller asked for the hash of a cut text */
        bool hashing;   /* only once the text overflows: the common case hashes nothing */
};

static void out_put(struct out *o, const char *s, size_t n)
{
        size_t room = o->size > o->len + 1 ? o->size - 1 - o->len : 0;
        size_t k = n < room ? n : room;

        if (k > 0) {
                memcpy(o->buf + o->len, s, k);
                o->len += k;
        }
        o->full += n;
        if (k < n && !o->hashing && o->want_hash) {
                o->hashing = true;
                o->hash = hash_mem(HASH_INIT, o->buf, o->len);
        }
        if (o->hashing)
                o->hash = hash_mem(o->hash, s + k, n - k);
}

int tmpl_render(const struct tmpl *t, const struct eval_ctx *c, bool strict, char *buf, size_t size,
                size_t *ret_full_len, uint64_t *ret_hash)
{
        struct out o = {.buf = buf, .size = size, .hash = HASH_INIT, .want_hash = ret_hash != NULL};
        char num[40];

        for (size_t i = 0; i < t->n; i++) {
                const struct tseg *s = &t->segs[i];
                struct val v;

                if (s->text) {
                        out_put(&o, s->text, s->len);
                        continue;
                }
                v = field_value(c, &s->field);
                switch (v.type) {
                case VAL_NUM:
                        number_format_natural(v.num, num, sizeof num);
                        out_put(&o, num, strlen(num));
                        break;
                case VAL_STR:
                        out_put(&o, v.str, strlen(v.str));
                        break;
                default:
                        if (strict) {
                                if (size > 0)
                                        buf[0] = '\0';
                                return -ENOENT;
                        }
                        out_put(&o, "?", 1);
                }
        }
        if (size > 0)
                buf[o.len] = '\0';
        if (ret_full_len)
                *ret_full_len = o.full;
        if (o.hashing)
                *ret_hash = o.hash;
        return 0;
}
