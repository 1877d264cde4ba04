/* xalloc: see xalloc.h. The failure counter is a test hook only; in the
 * daemon it stays 0 and costs one branch per allocation. */
#include "xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long fail_countdown;
static unsigned long alloc_count;

static int should_fail(void)
{
        alloc_count++;
        if (fail_countdown == 0)
                return 0;
        return --fail_countdown == 0;
}

unsigned long xalloc_fail_at(unsigned long nth)
{
        unsigned long n = alloc_count;

        alloc_count = 0;
        fail_countdown = nth;
        return n;
}

void *xmalloc(size_t size)
{
        if (should_fail())
                return NULL;
        return malloc(size ? size : 1);
}

void *xcalloc(size_t n, size_t size)
{
        if (should_fail())
                return NULL;
        return calloc(n ? n : 1, size ? size : 1);
}

void *xrealloc(void *p, size_t size)
{
        if (should_fail())
                return NULL;
        return realloc(p, size ? size : 1);
}

char *xstrndup(const char *s, size_t n)
{
        char *r;
        size_t len;

        if (!s)
                return NULL;
        len = strnlen(s, n);
        r = xmalloc(len + 1);
        if (!r)
                return NULL;
        memcpy(r, s, len);
        r[len] = '\0';
        return r;
}

char *xstrdup(const char *s)
{
        return s ? xstrndup(s, strlen(s)) : NULL;
}

char *xasprintf(const char *fmt, ...)
{
        va_list ap;
        int n;
        char *r;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return NULL;
        r = xmalloc((size_t)n + 1);
        if (!r)
                return NULL;
        va_start(ap, fmt);
        vsnprintf(r, (size_t)n + 1, fmt, ap);
        va_end(ap);
        return r;
}
