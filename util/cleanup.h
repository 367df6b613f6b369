/* SPDX-License-Identifier: MIT */
/*
 * Scope-bound cleanup: `_cleanup_(x_freep) struct x *p = NULL;` frees p when
 * it goes out of scope, on every path.  Each type declares its own x_freep
 * beside its x_free (hsm.h, config.h, ...); this header holds the attribute
 * and the helper for plain malloc()ed memory.  A result handed to the
 * caller is moved out (`*ret = p; p = NULL;`) so the cleanup frees nothing.
 */
#ifndef UTIL_CLEANUP_H
#define UTIL_CLEANUP_H

#include <stdlib.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

/* For any pointer to malloc()ed memory: _cleanup_(freep) char *s = NULL; */
static inline void freep(void *p)
{
        free(*(void **) p);
}

/* Declares NAME##p(TYPE **p) calling FREE(*p), for a type whose destructor
 * accepts NULL. */
#define DEFINE_FREEP(type, free_fn)                     \
        static inline void free_fn##p(type **p)        \
        {                                               \
                free_fn(*p);                            \
        }

#endif
