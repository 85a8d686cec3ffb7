/* Linked into the ThreadSanitizer build of libstopper.so only (scripts/check/sanitizer.sh).
 * Newer LLVM instruments memory intrinsics as calls to __tsan_memcpy/__tsan_memmove/
 * __tsan_memset, which GCC 12's libtsan does not export; the C suite is linked with that
 * libtsan. Forwarding them to the libc functions keeps them checked: in a process linked
 * with libtsan, memcpy/memmove/memset are libtsan's interceptors, which record the accesses. */
#include <string.h>

void *__tsan_memcpy(void *dst, const void *src, size_t n) { return memcpy(dst, src, n); }
void *__tsan_memmove(void *dst, const void *src, size_t n) { return memmove(dst, src, n); }
void *__tsan_memset(void *dst, int c, size_t n) { return memset(dst, c, n); }
