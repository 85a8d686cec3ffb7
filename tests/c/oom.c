/* Out of memory never aborts the host (SPEC, second edition: "Out of memory and bad peers").
 *
 * This program interposes malloc and its relatives: when armed, every allocation from the Nth
 * on fails (as when the host has used up its memory), or only the Nth one (a transient
 * failure). For each allocating call of the library, and for each N from 0 until the call no
 * longer meets a failure, a forked child makes the call with the failure armed and checks that
 * it returns NULL / STOPPER_ENOMEM (or, for a call that starts a thread, STOPPER_EOS), that
 * the library still works once memory is back, and that it exits normally: an abort (Rust's
 * "memory allocation of N bytes failed") is a failure of the test.
 *
 * A separate program (not part of the harness): the interposer would disturb the other tests,
 * and cannot be combined with a sanitizer's own malloc. Built and run by `make test` in tests/c.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stopper.h"

/* ---------------------------------------------------------------- the interposer */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

/* < 0: disarmed. Otherwise the number of allocations still allowed. */
static _Atomic long allowed = -1;
/* Fail only the one allocation that finds `allowed` at 0 (then disarm), or all from it on. */
static _Atomic bool transient = false;
static _Atomic long failures = 0;

static bool fail_now(void) {
    long a = atomic_load(&allowed);
    while (a > 0) {
        if (atomic_compare_exchange_weak(&allowed, &a, a - 1)) return false;
    }
    if (a < 0) return false;
    if (atomic_load(&transient)) atomic_store(&allowed, -1);
    atomic_fetch_add(&failures, 1);
    errno = ENOMEM;
    return true;
}

void *malloc(size_t n) { return fail_now() ? NULL : __libc_malloc(n); }
void *calloc(size_t a, size_t b) { return fail_now() ? NULL : __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { return fail_now() ? NULL : __libc_realloc(p, n); }
void *memalign(size_t al, size_t n) { return fail_now() ? NULL : __libc_memalign(al, n); }
void *aligned_alloc(size_t al, size_t n) { return fail_now() ? NULL : __libc_memalign(al, n); }
int posix_memalign(void **out, size_t al, size_t n) {
    if (fail_now()) return ENOMEM;
    void *p = __libc_memalign(al, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

static void arm(long n, bool once) {
    atomic_store(&failures, 0);
    atomic_store(&transient, once);
    atomic_store(&allowed, n);
}
static void disarm(void) { atomic_store(&allowed, -1); }

/* ---------------------------------------------------------------- checks (after disarm) */

static int bad = 0;
#define EXPECT(c, ...)                                                              \
    do {                                                                            \
        if (!(c)) {                                                                 \
            fprintf(stderr, "  %s:%d: %s: ", __FILE__, __LINE__, #c);              \
            fprintf(stderr, __VA_ARGS__);                                           \
            fputc('\n', stderr);                                                    \
            bad = 1;                                                                \
        }                                                                           \
    } while (0)

static void noop_cb(void *d, int32_t r) { (void)r; atomic_fetch_add((atomic_int *)d, 1); }
static void body(void *d) { atomic_fetch_add((atomic_int *)d, 1); }

/* Each case makes its call with `n` armed (set by the caller right before), disarms, checks.
 * Returns true when the call met no failure (the sweep is over). */
typedef bool (*case_fn)(long n, bool once);

static bool c_new(long n, bool once) {
    arm(n, once);
    errno = 0;
    stopper *s = stopper_new();
    int e = errno;
    long f = failures;
    disarm();
    if (!s) {
        EXPECT(e == ENOMEM, "stopper_new: NULL with errno %d", e);
        EXPECT(f > 0, "stopper_new: NULL without a failed allocation");
        s = stopper_new();
        EXPECT(s != NULL, "stopper_new once memory is back");
    }
    stopper_stop(s, 0);
    stopper_release(s);
    return f == 0;
}

static bool c_child(long n, bool once) {
    stopper *p = stopper_new();
    stopper *q = stopper_new();
    stopper *both[2] = {p, q};
    arm(n, once);
    stopper *c = stopper_new_child(p);
    stopper *l = c ? stopper_new_linked(both, 2) : NULL;
    long f = failures;
    disarm();
    if (c && l) {
        EXPECT(stopper_stop(p, 7) == 1, "stop");
        EXPECT(stopper_reason(c) == 7 && stopper_reason(l) == 7, "children stopped");
    } else {
        EXPECT(f > 0, "NULL without a failed allocation");
        /* Nothing half linked: the parents still stop, and the new ones still work. */
        stopper *c2 = stopper_new_child(p);
        EXPECT(c2 != NULL, "child once memory is back");
        EXPECT(stopper_stop(p, 7) == 1, "stop");
        EXPECT(stopper_reason(c2) == 7, "child of the parent stopped");
        stopper_release(c2);
    }
    stopper_release(c);
    stopper_release(l);
    stopper_release(p);
    stopper_release(q);
    return f == 0;
}

static bool c_chan(long n, bool once) {
    arm(n, once);
    stopper_chan *big = stopper_chan_new(STOPPER_CHAN_MAX_CAPACITY);
    int32_t st = big ? stopper_chan_send(big, 1, NULL, 0) : STOPPER_OK;
    int32_t st2 = big ? stopper_chan_send(big, 2, NULL, 0) : STOPPER_OK;
    long f = failures;
    disarm();
    if (!big) {
        EXPECT(f > 0, "NULL without a failed allocation");
    } else {
        EXPECT(st == STOPPER_OK || st == STOPPER_ENOMEM, "send: %d", st);
        EXPECT(st2 == STOPPER_OK || st2 == STOPPER_ENOMEM, "send: %d", st2);
        size_t want = (size_t)(st == STOPPER_OK) + (size_t)(st2 == STOPPER_OK);
        EXPECT(stopper_chan_len(big) == want, "len %zu, want %zu", stopper_chan_len(big), want);
        EXPECT(stopper_chan_send(big, 3, NULL, 0) == STOPPER_OK, "send once memory is back");
        stopper_chan_release(big);
    }
    return f == 0;
}

static bool c_on_stop(long n, bool once) {
    stopper *s = stopper_new();
    atomic_int runs = 0;
    uint64_t id = 99;
    int32_t sts[4];
    arm(n, once);
    for (int i = 0; i < 4; i++) sts[i] = stopper_on_stop(s, noop_cb, &runs, &id);
    long f = failures;
    disarm();
    int ok = 0;
    for (int i = 0; i < 4; i++) {
        EXPECT(sts[i] == STOPPER_OK || sts[i] == STOPPER_ENOMEM, "on_stop: %d", sts[i]);
        ok += sts[i] == STOPPER_OK;
    }
    EXPECT(atomic_load(&runs) == 0, "a callback ran before the stop");
    stopper_stop(s, 0);
    EXPECT(atomic_load(&runs) == ok, "%d callbacks ran, %d registered", atomic_load(&runs), ok);
    stopper_release(s);
    return f == 0;
}

static bool c_deadline(long n, bool once) {
    stopper *s = stopper_new();
    arm(n, once);
    int32_t st = stopper_stop_after(s, 60LL * 1000000000LL, 0);
    int32_t now = stopper_stop_after(s, 0, 9);
    long f = failures;
    disarm();
    EXPECT(st == STOPPER_OK || st == STOPPER_ENOMEM, "stop_after: %d", st);
    EXPECT(now == STOPPER_OK || now == STOPPER_ENOMEM, "stop_after(0): %d", now);
    if (now == STOPPER_OK) EXPECT(stopper_reason(s) == 9, "reason %d", stopper_reason(s));
    stopper_stop(s, 0);
    stopper_release(s);
    return f == 0;
}

static bool c_workers(long n, bool once) {
    stopper *s = stopper_new();
    atomic_int ran = 0;
    arm(n, once);
    int32_t e = stopper_enter(s, NULL);
    int32_t x = e == STOPPER_OK ? stopper_exit(s) : STOPPER_OK;
    int32_t sp = stopper_spawn(s, body, &ran);
    long f = failures;
    disarm();
    EXPECT(e == STOPPER_OK || e == STOPPER_ENOMEM, "enter: %d", e);
    EXPECT(x == STOPPER_OK, "exit: %d", x);
    EXPECT(stopper_current() == NULL, "left inside after a failed enter");
    EXPECT(sp == STOPPER_OK || sp == STOPPER_ENOMEM || sp == STOPPER_EOS, "spawn: %d", sp);
    EXPECT(stopper_join(s, 10LL * 1000000000LL) == STOPPER_OK, "join");
    EXPECT(atomic_load(&ran) == (sp == STOPPER_OK), "body ran %d times", atomic_load(&ran));
    stopper_release(s);
    return f == 0;
}

static bool c_fd_and_wait_any(long n, bool once) {
    enum { N = 300 };
    stopper *list[N];
    for (int i = 0; i < N; i++) list[i] = stopper_new();
    arm(n, once);
    int32_t fd = stopper_fd(list[0]);
    size_t which = 7;
    int32_t w = stopper_wait_any((const stopper *const *)list, N, 1000000, &which);
    long f = failures;
    disarm();
    EXPECT(fd >= 0 || fd == STOPPER_ENOMEM || fd == STOPPER_EOS, "fd: %d", fd);
    EXPECT(w == STOPPER_TIMEDOUT || w == STOPPER_ENOMEM, "wait_any: %d", w);
    stopper_stop(list[N - 1], 0);
    EXPECT(stopper_wait_any((const stopper *const *)list, N, -1, &which) == STOPPER_STOPPED &&
               which == N - 1,
           "wait_any once memory is back");
    for (int i = 0; i < N; i++) stopper_release(list[i]);
    return f == 0;
}

static bool c_stop_tree(long n, bool once) {
    /* The stop itself must not abort when memory is short: it walks children, runs callbacks. */
    stopper *root = stopper_new();
    stopper *kids[50];
    atomic_int runs = 0;
    stopper *prev = root;
    for (int i = 0; i < 50; i++) {
        kids[i] = stopper_new_child(i % 2 ? prev : root);
        stopper_on_stop(kids[i], noop_cb, &runs, NULL);
        prev = kids[i];
    }
    arm(n, once);
    int32_t r = stopper_stop(root, 5);
    long f = failures;
    disarm();
    EXPECT(r == 1, "stop: %d", r);
    for (int i = 0; i < 50; i++) EXPECT(stopper_reason(kids[i]) == 5, "child %d", i);
    EXPECT(atomic_load(&runs) == 50, "%d callbacks ran", atomic_load(&runs));
    for (int i = 0; i < 50; i++) stopper_release(kids[i]);
    stopper_release(root);
    return f == 0;
}

static const struct {
    const char *name;
    case_fn fn;
} cases[] = {
    {"stopper_new", c_new},
    {"stopper_new_child/new_linked", c_child},
    {"stopper_chan_new(MAX)/send", c_chan},
    {"stopper_on_stop", c_on_stop},
    {"stopper_stop_after", c_deadline},
    {"stopper_enter/spawn", c_workers},
    {"stopper_fd/wait_any", c_fd_and_wait_any},
    {"stopper_stop of a tree", c_stop_tree},
};

/* Runs one case with allocation `n` failing, in a forked child: 0 ok and done, 1 ok and more
 * to do, -1 failed. */
static stopper *keep;

static int run_one(case_fn fn, long n, bool once) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(20);
        /* A wait restarts, in the child, the service thread the parent had; a deadline it
         * fires shows that it is running (its start, with std's own thread-local set-up, is
         * not an allocation this test sweeps) before anything is armed. */
        stopper_wait(keep, 0);
        stopper *probe = stopper_new();
        stopper_stop_after(probe, 1000000, 0);
        stopper_wait(probe, -1);
        stopper_release(probe);
        bool done = fn(n, once);
        fflush(NULL);
        _exit(bad ? 3 : done ? 0 : 1);
    }
    int ws = 0;
    waitpid(pid, &ws, 0);
    if (WIFSIGNALED(ws)) {
        fprintf(stderr, "  allocation %ld failing%s: killed by signal %d (%s)\n", n,
                once ? " (once)" : "", WTERMSIG(ws), strsignal(WTERMSIG(ws)));
        return -1;
    }
    int code = WEXITSTATUS(ws);
    if (code == 3) {
        fprintf(stderr, "  allocation %ld failing%s: wrong results (above)\n", n,
                once ? " (once)" : "");
        return -1;
    }
    return code;
}

int main(void) {
    /* The service thread, started before any failure is armed: starting a thread is not an
     * allocation this test sweeps (std's thread spawn allocates infallibly). */
    keep = stopper_new();
    stopper_stop_after(keep, 3600LL * 1000000000LL, 0);
    int failed = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int once = 0; once < 2; once++) {
            long n = 0;
            int r;
            while ((r = run_one(cases[c].fn, n, once)) == 1 && n < 5000) n++;
            printf("%s %s (%s, %ld allocations swept)\n", r == 0 ? "ok  " : "FAIL",
                   cases[c].name, once ? "one failure" : "all from N on", n);
            failed += r != 0;
        }
    }
    stopper_release(keep);
    printf("%d failed\n", failed);
    return failed ? 1 : 0;
}
