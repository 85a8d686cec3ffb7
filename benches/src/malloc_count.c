/* A counting malloc for bench_mem: every allocation function forwards to glibc's own
 * (__libc_*), and while `malloc_count_on` is set, the usable size of each
 * block allocated (+) or freed (-) and the number of allocations are added up. Defined in the
 * executable, these interpose the ones libstopper.so (Rust's System allocator) calls. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

int malloc_count_on; /* bench_mem is single-threaded while it counts */
long long malloc_count_bytes;  /* live usable bytes allocated while counting */
long long malloc_count_allocs; /* allocations while counting */

static void *counted(void *p)
{
    if (p && malloc_count_on) {
        malloc_count_bytes += (long long)malloc_usable_size(p);
        malloc_count_allocs++;
    }
    return p;
}

static void uncount(void *p)
{
    if (p && malloc_count_on)
        malloc_count_bytes -= (long long)malloc_usable_size(p);
}

void *malloc(size_t n) { return counted(__libc_malloc(n)); }

void free(void *p)
{
    uncount(p);
    __libc_free(p);
}

void *calloc(size_t n, size_t m) { return counted(__libc_calloc(n, m)); }

void *realloc(void *p, size_t n)
{
    void *q;
    long long old = (p && malloc_count_on) ? (long long)malloc_usable_size(p) : 0;
    q = __libc_realloc(p, n);
    if (q && malloc_count_on) {
        malloc_count_bytes += (long long)malloc_usable_size(q) - old;
        if (!p)
            malloc_count_allocs++;
    }
    return q;
}

void *memalign(size_t align, size_t n) { return counted(__libc_memalign(align, n)); }

void *aligned_alloc(size_t align, size_t n) { return counted(__libc_memalign(align, n)); }

int posix_memalign(void **out, size_t align, size_t n)
{
    void *p;
    if (align < sizeof(void *) || (align & (align - 1)) != 0)
        return EINVAL;
    p = __libc_memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = counted(p);
    return 0;
}
