/* The header included twice in one unit, compiled as C11 and as C++17/C++20 (this same file),
 * then linked and run: the version macros agree with each other, with the library at run time
 * and with Cargo.toml (CARGO_VERSION, passed by the Makefile). */
#include "stopper.h"
#include "stopper.h"

#include <stdio.h>
#include <string.h>

#ifdef __cplusplus
#define STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

#ifndef CARGO_VERSION
#error "CARGO_VERSION must be defined (the version in Cargo.toml)"
#endif

STATIC_ASSERT(STOPPER_ABI_VERSION == ((STOPPER_VERSION_MAJOR << 16) | STOPPER_VERSION_MINOR),
              "STOPPER_ABI_VERSION is major << 16 | minor");
STATIC_ASSERT(STOPPER_VERSION_MAJOR >= 0 && STOPPER_VERSION_MINOR >= 0 && STOPPER_VERSION_PATCH >= 0,
              "version numbers");
STATIC_ASSERT(STOPPER_OK == 0 && STOPPER_STOPPED == 1 && STOPPER_TIMEDOUT == 2 && STOPPER_CLOSED == 3,
              "status codes");
STATIC_ASSERT(STOPPER_EINVAL == -1 && STOPPER_ENOMEM == -2 && STOPPER_EDEADLK == -3 &&
                  STOPPER_EOS == -4 && STOPPER_EINTERNAL == -5,
              "error codes");
STATIC_ASSERT(STOPPER_REASON_REQUESTED == 1 && STOPPER_REASON_DEADLINE == 2 && STOPPER_REASON_SIGNAL == 3,
              "reserved reasons");

/* the callback and hook types have the documented shapes */
static void cb(void *d, int32_t r) { (void)d; (void)r; }
static void hk(void *d, uint64_t t, int32_t r) { (void)d; (void)t; (void)r; }
static void body(void *a) { (void)a; }

static int failures;
#define EXPECT(c)                                                        \
    do {                                                                 \
        if (!(c)) {                                                      \
            printf("  %s:%d: failed: %s\n", __FILE__, __LINE__, #c);     \
            failures++;                                                  \
        }                                                                \
    } while (0)

int main(void) {
    stopper_callback_fn f = cb;
    stopper_interrupt_fn h = hk;
    stopper_hook hook = {h, NULL, 0};
    void (*spawn_fn)(void *) = body;
    (void)f;
    (void)hook;
    (void)spawn_fn;

    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", (int)STOPPER_VERSION_MAJOR, (int)STOPPER_VERSION_MINOR,
             (int)STOPPER_VERSION_PATCH);
    EXPECT(strcmp(STOPPER_VERSION_STRING, want) == 0);
    EXPECT(strcmp(STOPPER_VERSION_STRING, CARGO_VERSION) == 0);
    EXPECT(stopper_abi_version() == STOPPER_ABI_VERSION);
    EXPECT(stopper_version() != NULL && strcmp(stopper_version(), STOPPER_VERSION_STRING) == 0);
    EXPECT(stopper_version() != NULL && strcmp(stopper_version(), CARGO_VERSION) == 0);

    /* the inline helper reads the flag */
    stopper *s = stopper_new();
    EXPECT(s != NULL);
    const uint8_t *flag = stopper_flag(s);
    EXPECT(flag != NULL && !stopper_flag_is_set(flag));
    EXPECT(stopper_stop(s, 0) == 1);
    EXPECT(stopper_flag_is_set(flag));
    EXPECT(!stopper_flag_is_set(stopper_flag(NULL)));
    stopper_release(s);

    printf("%s: header %s, library %s, Cargo.toml %s, ABI %u: %s\n",
#ifdef __cplusplus
           "C++",
#else
           "C",
#endif
           STOPPER_VERSION_STRING, stopper_version(), CARGO_VERSION, (unsigned)stopper_abi_version(),
           failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
