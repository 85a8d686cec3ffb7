/* SPEC.md: "Time, file descriptors, service thread": deadlines and the service thread. */
#include "harness.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

TEST(deadline_fires_on_time_with_its_reason) {
    const int64_t delays[] = {MS(0), MS(10), MS(50), MS(120)};
    const int32_t reasons[] = {STOPPER_REASON_DEADLINE, 77, -5, STOPPER_REASON_DEADLINE};
    for (int i = 0; i < 4; i++) {
        stopper *s = stopper_new();
        REQUIRE(s);
        int64_t t0 = now_ns();
        CHECK_ST(stopper_stop_after(s, delays[i], reasons[i]), STOPPER_OK);
        CHECK_ST(stopper_wait(s, MS(5000)), STOPPER_STOPPED);
        int64_t el = now_ns() - t0;
        if (el < delays[i])
            h_fail(__FILE__, __LINE__, "deadline of %lld ms fired early, after %.3f ms",
                   (long long)(delays[i] / 1000000), el / 1e6);
        CHECK_MS_BETWEEN(el, 0, delays[i] / 1000000 + 500);
        CHECK_EQ(stopper_reason(s), reasons[i]);
        stopper_release(s);
    }
}

TEST(deadline_reason_zero_is_deadline) {
    stopper *s = stopper_new();
    REQUIRE(s);
    CHECK_ST(stopper_stop_after(s, MS(5), 0), STOPPER_OK);
    CHECK_ST(stopper_wait(s, MS(5000)), STOPPER_STOPPED);
    CHECK_EQ(stopper_reason(s), STOPPER_REASON_DEADLINE); /* documented in stopper.h */
    stopper_release(s);
}

TEST(deadline_rearm_replaces_the_earlier_one) {
    /* later */
    stopper *s = stopper_new();
    REQUIRE(s);
    int64_t t0 = now_ns();
    CHECK_ST(stopper_stop_after(s, MS(40), 5), STOPPER_OK);
    CHECK_ST(stopper_stop_after(s, MS(250), 6), STOPPER_OK);
    CHECK_ST(stopper_wait(s, MS(150)), STOPPER_TIMEDOUT);
    CHECK_ST(stopper_wait(s, MS(5000)), STOPPER_STOPPED);
    int64_t el = now_ns() - t0;
    CHECK_MS_BETWEEN(el, 249, 1000);
    CHECK_EQ(stopper_reason(s), 6);
    stopper_release(s);
    /* earlier */
    s = stopper_new();
    REQUIRE(s);
    t0 = now_ns();
    CHECK_ST(stopper_stop_after(s, MS(10000), 5), STOPPER_OK);
    CHECK_ST(stopper_stop_after(s, MS(30), 8), STOPPER_OK);
    CHECK_ST(stopper_wait(s, MS(5000)), STOPPER_STOPPED);
    CHECK_MS_BETWEEN(now_ns() - t0, 29, 1000);
    CHECK_EQ(stopper_reason(s), 8);
    stopper_release(s);
}

TEST(deadline_disarm) {
    stopper *s = stopper_new();
    REQUIRE(s);
    CHECK_ST(stopper_stop_after(s, MS(300), 5), STOPPER_OK);
    CHECK(stopper_remaining_ns(s) > 0);
    CHECK_ST(stopper_stop_after(s, -1, 0), STOPPER_OK);
    CHECK_EQ(stopper_remaining_ns(s), -1);
    CHECK_ST(stopper_wait(s, MS(150)), STOPPER_TIMEDOUT);
    CHECK(!stopper_is_set(s));
    /* disarming with nothing armed, with any negative delay */
    CHECK_ST(stopper_stop_after(s, INT64_MIN, 0), STOPPER_OK);
    CHECK_ST(stopper_stop_after(s, -5, 0), STOPPER_OK);
    /* armed again after a disarm */
    CHECK_ST(stopper_stop_after(s, MS(10), 9), STOPPER_OK);
    CHECK_ST(stopper_wait(s, MS(5000)), STOPPER_STOPPED);
    CHECK_EQ(stopper_reason(s), 9);
    stopper_release(s);
}

TEST(deadline_on_stopped_stopper) {
    stopper *s = stopper_new();
    REQUIRE(s);
    stopper_stop(s, 4);
    CHECK_ST(stopper_stop_after(s, MS(10), 5), STOPPER_STOPPED);
    CHECK_ST(stopper_stop_after(s, -1, 5), STOPPER_STOPPED);
    CHECK_EQ(stopper_remaining_ns(s), 0);
    sleep_ns(MS(30));
    CHECK_EQ(stopper_reason(s), 4);
    stopper_release(s);
}

TEST(deadline_loses_to_an_earlier_stop) {
    stopper *s = stopper_new();
    REQUIRE(s);
    CHECK_ST(stopper_stop_after(s, MS(20), 5), STOPPER_OK);
    CHECK_EQ(stopper_stop(s, 11), 1);
    CHECK_EQ(stopper_remaining_ns(s), 0);
    sleep_ns(MS(60));
    CHECK_EQ(stopper_reason(s), 11);
    stopper_release(s);
}

TEST(remaining_ns_counts_down) {
    stopper *s = stopper_new();
    REQUIRE(s);
    CHECK_EQ(stopper_remaining_ns(s), -1);
    CHECK_ST(stopper_stop_after(s, MS(500), 0), STOPPER_OK);
    int64_t r1 = stopper_remaining_ns(s);
    CHECK(r1 > MS(300) && r1 <= MS(500));
    sleep_ns(MS(50));
    int64_t r2 = stopper_remaining_ns(s);
    CHECK(r2 < r1 - MS(40));
    CHECK(r2 > 0);
    stopper_stop(s, 0);
    CHECK_EQ(stopper_remaining_ns(s), 0);
    stopper_release(s);
}

TEST(remaining_ns_takes_the_earliest_ancestor_deadline) {
    stopper *p = stopper_new();
    REQUIRE(p);
    stopper *c = stopper_new_child(p);
    stopper *g = stopper_new_child(c);
    REQUIRE(c && g);
    CHECK_EQ(stopper_remaining_ns(g), -1);
    CHECK_ST(stopper_stop_after(p, MS(2000), 0), STOPPER_OK);
    int64_t r = stopper_remaining_ns(g);
    CHECK(r > MS(1500) && r <= MS(2000));
    CHECK_ST(stopper_stop_after(g, MS(5000), 0), STOPPER_OK);
    r = stopper_remaining_ns(g); /* the ancestor's is earlier */
    CHECK(r > MS(1500) && r <= MS(2000));
    CHECK_ST(stopper_stop_after(c, MS(800), 0), STOPPER_OK);
    r = stopper_remaining_ns(g);
    CHECK(r > MS(500) && r <= MS(800));
    CHECK_ST(stopper_stop_after(g, MS(300), 0), STOPPER_OK);
    r = stopper_remaining_ns(g);
    CHECK(r > MS(100) && r <= MS(300));
    /* the child's deadline never shows on the parent */
    r = stopper_remaining_ns(p);
    CHECK(r > MS(1500) && r <= MS(2000));
    /* the parent's deadline stops the child with the parent's reason */
    stopper_stop_after(g, -1, 0);
    stopper_stop_after(c, -1, 0);
    CHECK_ST(stopper_stop_after(p, MS(20), 91), STOPPER_OK);
    CHECK_ST(stopper_wait(g, MS(5000)), STOPPER_STOPPED);
    CHECK_EQ(stopper_reason(g), 91);
    CHECK_EQ(stopper_remaining_ns(g), 0);
    stopper_release(g);
    stopper_release(c);
    stopper_release(p);
}

TEST(remaining_ns_of_linked_takes_its_parents_deadlines) {
    stopper *ps[2] = {stopper_new(), stopper_new()};
    REQUIRE(ps[0] && ps[1]);
    stopper *l = stopper_new_linked(ps, 2);
    REQUIRE(l);
    CHECK_ST(stopper_stop_after(ps[1], MS(700), 0), STOPPER_OK);
    CHECK_ST(stopper_stop_after(ps[0], MS(3000), 0), STOPPER_OK);
    int64_t r = stopper_remaining_ns(l);
    CHECK(r > MS(400) && r <= MS(700));
    stopper_release(l);
    stopper_release(ps[0]);
    stopper_release(ps[1]);
}

typedef struct fired {
    atomic_int calls;
    atomic_int wrong_reason;
    int32_t want;
} fired;

static void fired_cb(void *d, int32_t reason) {
    fired *f = d;
    if (reason != f->want) atomic_fetch_add(&f->wrong_reason, 1);
    atomic_fetch_add(&f->calls, 1);
}

TEST(deadline_keeps_a_released_stopper_alive) {
    fired f = {0, 0, 33};
    stopper *s = stopper_new();
    REQUIRE(s);
    uint64_t id;
    CHECK_ST(stopper_on_stop(s, fired_cb, &f, &id), STOPPER_OK);
    CHECK_ST(stopper_stop_after(s, MS(30), 33), STOPPER_OK);
    stopper_release(s); /* our reference is gone; the armed deadline keeps s */
    CHECK(WAIT_UNTIL(atomic_load(&f.calls) == 1, MS(3000)));
    CHECK_EQ(atomic_load(&f.wrong_reason), 0);
}

TEST_T(twenty_thousand_deadlines_all_fire, 60) {
    const int n = ITERS(20000);
    fired *f = calloc((size_t)n, sizeof *f);
    stopper **kept = calloc((size_t)n, sizeof *kept);
    REQUIRE(f && kept);
    uint32_t rng = 12345;
    int64_t t0 = now_ns();
    for (int i = 0; i < n; i++) {
        stopper *s = stopper_new();
        REQUIRE(s);
        f[i].want = 1000 + i;
        uint64_t id;
        CHECK_ST(stopper_on_stop(s, fired_cb, &f[i], &id), STOPPER_OK);
        int64_t delay = US(rng_next(&rng) % 300000); /* 0 .. 300 ms */
        CHECK_ST(stopper_stop_after(s, delay, f[i].want), STOPPER_OK);
        if (i % 2) stopper_release(s); /* half held only by their deadline */
        else kept[i] = s;
    }
    int64_t armed = now_ns() - t0;
    bool all = WAIT_UNTIL(({
        int c = 0;
        for (int i = 0; i < n; i++) c += atomic_load(&f[i].calls);
        c == n;
    }), MS(10000));
    int64_t el = now_ns() - t0;
    int missing = 0, twice = 0, wrong = 0;
    for (int i = 0; i < n; i++) {
        int c = atomic_load(&f[i].calls);
        if (c == 0) missing++;
        if (c > 1) twice++;
        wrong += atomic_load(&f[i].wrong_reason);
    }
    CHECK(all);
    CHECK_EQ(missing, 0);
    CHECK_EQ(twice, 0);
    CHECK_EQ(wrong, 0);
    for (int i = 0; i < n; i += 2) {
        CHECK_EQ(stopper_reason(kept[i]), 1000 + i);
        stopper_release(kept[i]);
    }
    h_note("%d deadlines armed in %.0f ms, all fired %.0f ms after the first was armed; %d threads",
           n, armed / 1e6, el / 1e6, task_count());
    free(f);
    free(kept);
}

TEST(many_stoppers_share_one_service_thread) {
    CHECK_EQ(task_count(), 1);
    enum { N = 1000 };
    stopper *s[N];
    for (int i = 0; i < N; i++) {
        s[i] = stopper_new();
        REQUIRE(s[i]);
        CHECK_ST(stopper_stop_after(s[i], MS(300) + i * US(100), 0), STOPPER_OK);
    }
    sleep_ns(MS(30));
    int threads = task_count();
    CHECK(threads <= 2);
    for (int i = 0; i < N; i++) {
        stopper_stop_after(s[i], -1, 0);
        stopper_release(s[i]);
    }
    h_note("%d pending deadlines: %d threads in the process", N, threads);
}

TEST(no_thread_left_when_idle) {
    CHECK_EQ(task_count(), 1);
    stopper *s = stopper_new();
    REQUIRE(s);
    CHECK_ST(stopper_stop_after(s, MS(20), 0), STOPPER_OK);
    CHECK_ST(stopper_wait(s, MS(5000)), STOPPER_STOPPED);
    stopper_release(s);
    int64_t t0 = now_ns();
    bool idle = WAIT_UNTIL_RAW(task_count() == 1, MS(5000));
    if (!idle) h_fail(__FILE__, __LINE__, "%d threads 5 s after the last deadline fired", task_count());
    else h_note("service thread gone %.0f ms after the last deadline fired", (now_ns() - t0) / 1e6);
    /* ... and it comes back when needed */
    s = stopper_new();
    REQUIRE(s);
    CHECK_ST(stopper_stop_after(s, MS(20), 0), STOPPER_OK);
    CHECK_ST(stopper_wait(s, MS(5000)), STOPPER_STOPPED);
    stopper_release(s);
    CHECK(WAIT_UNTIL_RAW(task_count() == 1, MS(5000)));
    /* a disarmed deadline leaves nothing pending either */
    s = stopper_new();
    REQUIRE(s);
    CHECK_ST(stopper_stop_after(s, MS(3600000), 0), STOPPER_OK);
    CHECK_ST(stopper_stop_after(s, -1, 0), STOPPER_OK);
    CHECK(WAIT_UNTIL_RAW(task_count() == 1, MS(5000)));
    /* and a deadline that a stop beat */
    CHECK_ST(stopper_stop_after(s, MS(3600000), 0), STOPPER_OK);
    stopper_stop(s, 0);
    CHECK(WAIT_UNTIL_RAW(task_count() == 1, MS(5000)));
    stopper_release(s);
}

static int child_uses_deadlines(void) {
    alarm((unsigned)(10 * h_slow)); /* a hang in the child must not outlive the test */
    /* only the forking thread exists in a forked child */
    if (task_count() != 1) return 10;
    int64_t t0 = now_ns();
    stopper *s = stopper_new();
    if (!s) return 11;
    if (stopper_stop_after(s, MS(40), 55) != STOPPER_OK) return 12;
    if (stopper_wait(s, SLOW_NS(MS(5000))) != STOPPER_STOPPED) return 13;
    int64_t el = now_ns() - t0;
    if (el < MS(40) || el > SLOW_NS(MS(1000))) return 14;
    if (stopper_reason(s) != 55) return 15;
    stopper_release(s);
    /* a waiter woken by another thread's stop, in the child */
    s = stopper_new();
    stopper *c = stopper_new_child(s);
    if (!c) return 16;
    if (stopper_stop_after(s, MS(10), 0) != STOPPER_OK) return 17;
    if (stopper_wait(c, SLOW_NS(MS(5000))) != STOPPER_STOPPED) return 18;
    stopper_release(c);
    stopper_release(s);
    return 0;
}

TEST(forked_child_uses_deadlines) {
    /* the service thread is busy in the parent when it forks */
    stopper *pending = stopper_new();
    REQUIRE(pending);
    CHECK_ST(stopper_stop_after(pending, MS(3600000), 0), STOPPER_OK);
    stopper *s = stopper_new();
    REQUIRE(s);
    CHECK_ST(stopper_stop_after(s, MS(10), 0), STOPPER_OK);
    CHECK_ST(stopper_wait(s, MS(5000)), STOPPER_STOPPED);
    stopper_release(s);
    for (int round = 0; round < 3; round++) {
        fflush(stdout);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) _exit(child_uses_deadlines());
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            h_fail(__FILE__, __LINE__, "forked child failed: %s %d (see child_uses_deadlines)",
                   WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    /* the parent's deadlines still work after the forks */
    s = stopper_new();
    REQUIRE(s);
    CHECK_ST(stopper_stop_after(s, MS(10), 0), STOPPER_OK);
    CHECK_ST(stopper_wait(s, MS(5000)), STOPPER_STOPPED);
    stopper_release(s);
    stopper_stop_after(pending, -1, 0);
    stopper_release(pending);
}

/* A process that forks while idle, then uses deadlines in the child. */
TEST(forked_child_of_an_idle_process) {
    stopper *s = stopper_new();
    REQUIRE(s);
    CHECK_ST(stopper_stop_after(s, MS(5), 0), STOPPER_OK);
    CHECK_ST(stopper_wait(s, MS(5000)), STOPPER_STOPPED);
    stopper_release(s);
    CHECK(WAIT_UNTIL_RAW(task_count() == 1, MS(5000)));
    fflush(stdout);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) _exit(child_uses_deadlines());
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (WIFEXITED(status) && WEXITSTATUS(status)) h_note("child exit %d", WEXITSTATUS(status));
}

#ifndef STOPPER_STATIC
/* A plugin host loading the library, using deadlines, and unloading it: no stray thread. */
TEST(dlopen_use_dlclose_leaves_no_thread) {
    char path[4096];
    snprintf(path, sizeof path, "%s/libstopper.so", STOPPER_LIBDIR_STR);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    REQUIRE(h != NULL);
    stopper *(*new_)(void) = (stopper * (*)(void)) dlsym(h, "stopper_new");
    int32_t (*after)(stopper *, int64_t, int32_t) = (int32_t(*)(stopper *, int64_t, int32_t))dlsym(h, "stopper_stop_after");
    int32_t (*wait_)(const stopper *, int64_t) = (int32_t(*)(const stopper *, int64_t))dlsym(h, "stopper_wait");
    void (*rel)(stopper *) = (void (*)(stopper *))dlsym(h, "stopper_release");
    REQUIRE(new_ && after && wait_ && rel);
    stopper *s = new_();
    REQUIRE(s);
    CHECK_ST(after(s, MS(10), 0), STOPPER_OK);
    CHECK_ST(wait_(s, MS(5000)), STOPPER_STOPPED);
    rel(s);
    CHECK(WAIT_UNTIL_RAW(task_count() == 1, MS(5000)));
    CHECK(dlclose(h) == 0);
    CHECK_EQ(task_count(), 1);
}
#endif

/* Issue 12: a zero delay is a deadline already passed, as Go's WithDeadline and .NET's
 * CancellationTokenSource(0): stopped with its reason before the call returns. */
static void zero_delay_cb(void *d, int32_t r) { *(int32_t *)d = r; }

TEST(deadline_zero_stops_before_returning) {
    for (int i = 0; i < 500; i++) {
        stopper *s = stopper_new();
        REQUIRE(s);
        int32_t seen = 0;
        CHECK_ST(stopper_on_stop(s, zero_delay_cb, &seen, NULL), STOPPER_OK);
        CHECK_ST(stopper_stop_after(s, 0, 41), STOPPER_OK);
        REQUIRE(stopper_is_set(s));
        CHECK_EQ(seen, 41);
        CHECK_EQ(stopper_stop(s, 5), 0);
        CHECK_EQ(stopper_reason(s), 41);
        CHECK_ST(stopper_stop_after(s, 0, 0), STOPPER_STOPPED);
        stopper_release(s);
    }
    stopper *s = stopper_new();
    REQUIRE(s);
    CHECK_ST(stopper_stop_after(s, MS(60000), 0), STOPPER_OK);
    CHECK_ST(stopper_stop_after(s, 0, 0), STOPPER_OK);
    CHECK_EQ(stopper_reason(s), STOPPER_REASON_DEADLINE);
    stopper_release(s);
}
