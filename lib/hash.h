/* hash: FNV-1a, 64 bits, for hash tables and change digests (not for
 * security). One definition for every module that needs one. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV_INIT 1469598103934665603ULL

static inline uint64_t hash_fnv_mem(uint64_t h, const void *p, size_t n)
{
        const unsigned char *c = p;

        for (size_t i = 0; i < n; i++) {
                h ^= c[i];
                h *= 1099511628211ULL;
        }
        return h;
}

static inline uint64_t hash_fnv_str(const char *s)
{
        uint64_t h = HASH_FNV_INIT;

        for (; *s; s++) {
                h ^= (unsigned char)*s;
                h *= 1099511628211ULL;
        }
        return h;
}
