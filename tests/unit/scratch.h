/* scratch.h: a private directory under /tmp for a unit test's files (an
 * agent state database, say), made with a name that says which test made
 * it and removed with everything in it. Include after <cmocka.h>. */
#ifndef WEIBAO_TEST_SCRATCH_H
#define WEIBAO_TEST_SCRATCH_H

#include <stdio.h>
#include <stdlib.h>

/* Makes /tmp/weibao-test-NAME-XXXXXX; dir receives its path. */
static inline void scratch_make(char *dir, size_t size, const char *name)
{
        snprintf(dir, size, "/tmp/weibao-test-%s-XXXXXX", name);
        assert_non_null(mkdtemp(dir));
}

/* Removes dir and everything in it. */
static inline void scratch_remove(const char *dir)
{
        char cmd[256];

        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
}

#endif
