/* A tiny test harness for the stopper C suite.
 *
 * Every test runs in its own forked process (fresh signal dispositions, no service thread,
 * one thread at start) under an alarm(): a hang becomes a failure with a message instead of a
 * stuck suite. The runner prints one line per test and ends with `N passed, N failed`.
 *
 * Environment:
 *   STOPPER_TEST_SLOW=k   multiply time limits and upper time bounds by k, divide the
 *                         iteration counts of the stress tests by k (sanitizers, valgrind).
 */
#ifndef STOPPER_TEST_HARNESS_H
#define STOPPER_TEST_HARNESS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stopper.h"

typedef void (*test_fn)(void);

void harness_register(const char *name, test_fn fn, int timeout_s);

#define TEST_T(name, secs)                                                        \
    static void name(void);                                                       \
    __attribute__((constructor)) static void register_##name(void) {              \
        harness_register(#name, name, (secs));                                    \
    }                                                                             \
    static void name(void)

#define TEST(name) TEST_T(name, 20)

/* ------------------------------------------------------------------ checks */

void h_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void h_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void h_abort_test(void);
const char *st_name(int32_t code);
int h_failures(void);

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) h_fail(__FILE__, __LINE__, "CHECK(%s)", #c);                    \
    } while (0)

#define REQUIRE(c)                                                                \
    do {                                                                          \
        if (!(c)) {                                                               \
            h_fail(__FILE__, __LINE__, "REQUIRE(%s)", #c);                        \
            h_abort_test();                                                       \
        }                                                                         \
    } while (0)

#define CHECK_EQ(a, b)                                                            \
    do {                                                                          \
        long long h_a_ = (long long)(a), h_b_ = (long long)(b);                   \
        if (h_a_ != h_b_)                                                         \
            h_fail(__FILE__, __LINE__, "%s == %s: got %lld, want %lld", #a, #b,   \
                   h_a_, h_b_);                                                   \
    } while (0)

/* a status code, printed by name */
#define CHECK_ST(expr, want)                                                      \
    do {                                                                          \
        int32_t h_g_ = (int32_t)(expr), h_w_ = (int32_t)(want);                   \
        if (h_g_ != h_w_)                                                         \
            h_fail(__FILE__, __LINE__, "%s: got %s (%d), want %s (%d)", #expr,    \
                   st_name(h_g_), h_g_, st_name(h_w_), h_w_);                     \
    } while (0)

/* elapsed time within [lo, hi] milliseconds (hi is scaled by the slow factor) */
#define CHECK_MS_BETWEEN(ns, lo_ms, hi_ms)                                        \
    do {                                                                          \
        int64_t h_n_ = (ns);                                                      \
        int64_t h_lo_ = (int64_t)(lo_ms) * 1000000, h_hi_ = SLOW_NS((int64_t)(hi_ms) * 1000000); \
        if (h_n_ < h_lo_ || h_n_ > h_hi_)                                         \
            h_fail(__FILE__, __LINE__, "%s: %.3f ms, want between %.3f and %.3f ms", \
                   #ns, h_n_ / 1e6, h_lo_ / 1e6, h_hi_ / 1e6);                    \
    } while (0)

/* ------------------------------------------------------------------ scaling */

extern int h_slow; /* >= 1 */
#define ITERS(n) ((n) / h_slow > 0 ? (n) / h_slow : 1)
#define SLOW_NS(ns) ((int64_t)(ns) * h_slow)

/* ------------------------------------------------------------------ helpers */

#define MS(x) ((int64_t)(x) * 1000000LL)
#define US(x) ((int64_t)(x) * 1000LL)

int64_t now_ns(void);
void sleep_ns(int64_t ns);
pthread_t start_thread(void *(*fn)(void *), void *arg);
void join_thread(pthread_t t);
/* polls `expr` every 200 us until it holds or `timeout_ns` (scaled) passes; true if it held */
#define WAIT_UNTIL(expr, timeout_ns) WAIT_UNTIL_RAW(expr, SLOW_NS(timeout_ns))
/* the same with an unscaled limit (for waits whose length must not grow under valgrind) */
#define WAIT_UNTIL_RAW(expr, timeout_ns)                                          \
    __extension__({                                                               \
        int64_t h_end_ = now_ns() + (timeout_ns);                                 \
        bool h_ok_ = false;                                                       \
        for (;;) {                                                                \
            if (expr) { h_ok_ = true; break; }                                    \
            if (now_ns() > h_end_) break;                                         \
            sleep_ns(US(200));                                                    \
        }                                                                         \
        h_ok_;                                                                    \
    })

long rss_bytes(void);   /* resident set size, from /proc/self/statm */
int task_count(void);   /* entries of /proc/self/task */
int fd_count(void);     /* entries of /proc/self/fd */
bool fd_is_open(int fd);
pid_t gettid_(void);
/* true once thread `tid` of this process is blocked in one of the given system calls */
bool wait_blocked_in(pid_t tid, const long *sysnos, int n, int64_t timeout_ns);
uint64_t self_id(void); /* (uint64_t)pthread_self() */
uint32_t rng_next(uint32_t *state);

/* a one-shot "stop this stopper after a delay" helper thread */
typedef struct delayed_stop {
    stopper *s;
    int64_t delay_ns;
    int32_t reason;
    int32_t result;
    pthread_t thread;
} delayed_stop;
void delayed_stop_start(delayed_stop *d, stopper *s, int64_t delay_ns, int32_t reason);
void delayed_stop_join(delayed_stop *d);

#endif
