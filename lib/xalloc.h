/* xalloc: the one allocator wrapper. Every allocation in weibao goes through
 * it so that unit tests can make the Nth call fail ("torture" runs) and check
 * that no path leaks or crashes. Failure returns NULL like malloc; nothing
 * here aborts. */
#pragma once

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
/* On failure the old block is untouched and still owned by the caller. */
void *xrealloc(void *p, size_t size);
/* Returns NULL for s == NULL or on failure; caller frees with free(). */
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a fresh string; caller frees with free(). NULL on failure. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Test hook: make the nth allocation from now fail (1 = the next one);
 * 0 disables. Returns how many allocations happened since the last call. */
unsigned long xalloc_fail_at(unsigned long nth);
