/* SPEC.md: "Words", "Status codes", "Core (synchronous)", "Version". */
#include "harness.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ================================================================== status codes, version */

TEST(status_code_values) {
    CHECK_EQ(STOPPER_OK, 0);
    CHECK_EQ(STOPPER_STOPPED, 1);
    CHECK_EQ(STOPPER_TIMEDOUT, 2);
    CHECK_EQ(STOPPER_CLOSED, 3);
    CHECK_EQ(STOPPER_EINVAL, -1);
    CHECK_EQ(STOPPER_ENOMEM, -2);
    CHECK_EQ(STOPPER_EDEADLK, -3);
    CHECK_EQ(STOPPER_EOS, -4);
    CHECK_EQ(STOPPER_EINTERNAL, -5);
    CHECK_EQ(STOPPER_REASON_REQUESTED, 1);
    CHECK_EQ(STOPPER_REASON_DEADLINE, 2);
    CHECK_EQ(STOPPER_REASON_SIGNAL, 3);
}

TEST(strerror_names_every_code_distinctly) {
    const char *names[9];
    for (int32_t c = -5; c <= 3; c++) {
        const char *n = stopper_strerror(c);
        REQUIRE(n != NULL);
        CHECK(strlen(n) > 0);
        names[c + 5] = n;
    }
    for (int i = 0; i < 9; i++)
        for (int j = i + 1; j < 9; j++)
            if (strcmp(names[i], names[j]) == 0)
                h_fail(__FILE__, __LINE__, "codes %d and %d share the name \"%s\"", i - 5, j - 5, names[i]);
    /* the same static string every time */
    CHECK(stopper_strerror(STOPPER_EINVAL) == stopper_strerror(STOPPER_EINVAL) ||
          strcmp(stopper_strerror(STOPPER_EINVAL), names[4]) == 0);
    /* codes the library never returns still get a string, never NULL */
    const int32_t unknown[] = {4, 5, 100, -6, -100, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
        const char *n = stopper_strerror(unknown[i]);
        REQUIRE(n != NULL);
        CHECK(strlen(n) > 0);
    }
}

TEST(version_matches_header) {
    CHECK_EQ(stopper_abi_version(), STOPPER_ABI_VERSION);
    CHECK_EQ(STOPPER_ABI_VERSION, ((uint32_t)STOPPER_VERSION_MAJOR << 16) | (uint32_t)STOPPER_VERSION_MINOR);
    const char *v = stopper_version();
    REQUIRE(v != NULL);
    CHECK(strcmp(v, STOPPER_VERSION_STRING) == 0);
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", (int)STOPPER_VERSION_MAJOR, (int)STOPPER_VERSION_MINOR,
             (int)STOPPER_VERSION_PATCH);
    if (strcmp(v, want) != 0) h_fail(__FILE__, __LINE__, "stopper_version() \"%s\" != \"%s\"", v, want);
}

/* ================================================================== words */

TEST(new_stopper_is_running) {
    stopper *s = stopper_new();
    REQUIRE(s != NULL);
    CHECK(!stopper_is_set(s));
    CHECK_EQ(stopper_reason(s), 0);
    const uint8_t *f = stopper_flag(s);
    REQUIRE(f != NULL);
    CHECK(!stopper_flag_is_set(f));
    CHECK_EQ(*f, 0);
    CHECK_EQ(stopper_remaining_ns(s), -1);
    CHECK_ST(stopper_wait(s, 0), STOPPER_TIMEDOUT);
    stopper_release(s);
}

TEST(first_stop_wins_and_stays) {
    stopper *s = stopper_new();
    REQUIRE(s);
    const uint8_t *f = stopper_flag(s);
    CHECK_EQ(stopper_stop(s, 42), 1);
    CHECK(stopper_is_set(s));
    CHECK(stopper_flag_is_set(f));
    CHECK(*f != 0);
    CHECK(stopper_flag(s) == f);
    CHECK_EQ(stopper_reason(s), 42);
    CHECK_EQ(stopper_stop(s, 7), 0);
    CHECK_EQ(stopper_stop(s, 0), 0);
    CHECK_EQ(stopper_reason(s), 42);
    CHECK(stopper_is_set(s));
    CHECK_ST(stopper_wait(s, 0), STOPPER_STOPPED);
    CHECK_ST(stopper_wait(s, -1), STOPPER_STOPPED);
    CHECK_ST(stopper_wait(s, MS(10)), STOPPER_STOPPED);
    CHECK_EQ(stopper_remaining_ns(s), 0);
    stopper_release(s);
}

TEST(stop_reason_zero_becomes_requested) {
    stopper *s = stopper_new();
    REQUIRE(s);
    CHECK_EQ(stopper_stop(s, 0), 1);
    CHECK_EQ(stopper_reason(s), STOPPER_REASON_REQUESTED);
    stopper_release(s);
}

TEST(stop_reason_recorded_as_given) {
    const int32_t reasons[] = {1, 2, 3, 4, -1, -77, 123456, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof reasons / sizeof *reasons; i++) {
        stopper *s = stopper_new();
        REQUIRE(s);
        CHECK_EQ(stopper_stop(s, reasons[i]), 1);
        CHECK_EQ(stopper_reason(s), reasons[i]);
        stopper_release(s);
    }
}

TEST(null_stopper_reads_as_never_stopping) {
    CHECK(!stopper_is_set(NULL));
    CHECK_EQ(stopper_reason(NULL), 0);
    const uint8_t *f = stopper_flag(NULL);
    REQUIRE(f != NULL);
    CHECK_EQ(*f, 0);
    CHECK(!stopper_flag_is_set(f));
    CHECK_EQ(stopper_remaining_ns(NULL), -1);
    /* stopping other stoppers never touches the NULL flag */
    stopper *s = stopper_new();
    REQUIRE(s);
    stopper_stop(s, 0);
    CHECK(!stopper_flag_is_set(stopper_flag(NULL)));
    CHECK(stopper_flag(NULL) != stopper_flag(s));
    stopper_release(s);

    int64_t t0 = now_ns();
    CHECK_ST(stopper_wait(NULL, MS(30)), STOPPER_TIMEDOUT);
    CHECK_MS_BETWEEN(now_ns() - t0, 29, 1000);
    CHECK_ST(stopper_wait(NULL, 0), STOPPER_TIMEDOUT);
    t0 = now_ns();
    CHECK_ST(stopper_wait(NULL, -1), STOPPER_EINVAL);
    CHECK_ST(stopper_wait(NULL, INT64_MIN), STOPPER_EINVAL);
    CHECK_MS_BETWEEN(now_ns() - t0, 0, 100);
}

static void noop_cb(void *d, int32_t r) { (void)d; (void)r; }
static void noop_fn(void *a) { (void)a; }

TEST(null_stopper_mutators_are_einval) {
    CHECK_ST(stopper_stop(NULL, 0), STOPPER_EINVAL);
    CHECK_ST(stopper_stop(NULL, 5), STOPPER_EINVAL);
    uint64_t id = 0xabcdef;
    CHECK_ST(stopper_on_stop(NULL, noop_cb, NULL, &id), STOPPER_EINVAL);
    CHECK_EQ(id, 0xabcdef); /* outputs are written only on success */
    CHECK_ST(stopper_unregister(NULL, 1), STOPPER_EINVAL);
    CHECK_ST(stopper_unregister(NULL, 0), STOPPER_EINVAL);
    CHECK_ST(stopper_enter(NULL, NULL), STOPPER_EINVAL);
    CHECK(stopper_current() == NULL);
    CHECK_ST(stopper_exit(NULL), STOPPER_EINVAL);
    CHECK_ST(stopper_join(NULL, 0), STOPPER_EINVAL);
    CHECK_ST(stopper_join(NULL, -1), STOPPER_EINVAL);
    CHECK_ST(stopper_spawn(NULL, noop_fn, NULL), STOPPER_EINVAL);
    CHECK_ST(stopper_stop_after(NULL, MS(1), 0), STOPPER_EINVAL);
    CHECK_ST(stopper_stop_after(NULL, -1, 0), STOPPER_EINVAL);
    CHECK_ST(stopper_fd(NULL), STOPPER_EINVAL);
    CHECK(stopper_new_child(NULL) == NULL);
    CHECK(stopper_retain(NULL) == NULL);
    stopper_release(NULL); /* NULL-safe */
}

TEST(retain_returns_same_and_counts) {
    stopper *s = stopper_new();
    REQUIRE(s);
    CHECK(stopper_retain(s) == s);
    CHECK(stopper_retain(s) == s);
    stopper_release(s);
    stopper_release(s);
    /* one reference left: still fully usable */
    CHECK(!stopper_is_set(s));
    CHECK_EQ(stopper_stop(s, 9), 1);
    CHECK_EQ(stopper_reason(s), 9);
    stopper_release(s);
}

/* ================================================================== wait */

TEST(wait_times_out_not_early) {
    stopper *s = stopper_new();
    REQUIRE(s);
    const int64_t limits[] = {MS(1), MS(20), MS(60)};
    for (int i = 0; i < 3; i++) {
        int64_t t0 = now_ns();
        CHECK_ST(stopper_wait(s, limits[i]), STOPPER_TIMEDOUT);
        int64_t el = now_ns() - t0;
        if (el < limits[i]) h_fail(__FILE__, __LINE__, "wait(%lld ns) returned after %lld ns", (long long)limits[i], (long long)el);
        CHECK_MS_BETWEEN(el, 0, limits[i] / 1000000 + 500);
    }
    CHECK(!stopper_is_set(s));
    stopper_release(s);
}

TEST(wait_wakes_on_stop) {
    stopper *s = stopper_new();
    REQUIRE(s);
    delayed_stop d;
    int64_t t0 = now_ns();
    delayed_stop_start(&d, s, MS(50), 5);
    CHECK_ST(stopper_wait(s, -1), STOPPER_STOPPED);
    CHECK_MS_BETWEEN(now_ns() - t0, 45, 1000);
    CHECK_EQ(stopper_reason(s), 5);
    delayed_stop_join(&d);
    CHECK_EQ(d.result, 1);
    stopper_release(s);
}

TEST(wait_negative_and_huge_timeouts_mean_no_limit) {
    const int64_t limits[] = {-1, -2, -1000000000LL, INT64_MIN, INT64_MAX, INT64_MAX - 1};
    for (int i = 0; i < 6; i++) {
        stopper *s = stopper_new();
        REQUIRE(s);
        delayed_stop d;
        int64_t t0 = now_ns();
        delayed_stop_start(&d, s, MS(30), 0);
        CHECK_ST(stopper_wait(s, limits[i]), STOPPER_STOPPED);
        CHECK_MS_BETWEEN(now_ns() - t0, 25, 1000);
        delayed_stop_join(&d);
        stopper_release(s);
    }
}

typedef struct waiter_arg {
    stopper *s;
    int kind;
    int pipe_rd;
    stopper_chan *chan;
    int32_t result;
    int64_t woke_at;
} waiter_arg;

static void *waiter_main(void *p) {
    waiter_arg *w = p;
    const stopper *list[3] = {NULL, w->s, NULL};
    size_t which = 99;
    uint64_t item = 0;
    switch (w->kind) {
    case 0: w->result = stopper_wait(w->s, -1); break;
    case 1: w->result = stopper_wait(w->s, MS(10000)); break;
    case 2:
        w->result = stopper_wait_any(list, 3, -1, &which);
        if (w->result == STOPPER_STOPPED && which != 1) w->result = -100;
        break;
    case 3: w->result = stopper_wait_fd(w->s, w->pipe_rd, POLLIN, -1, NULL); break;
    case 4: w->result = stopper_chan_recv(w->chan, &item, w->s, -1); break;
    case 5: {
        int fd = stopper_fd(w->s);
        struct pollfd pfd = {fd, POLLIN, 0};
        int n = fd >= 0 ? poll(&pfd, 1, 10000) : -1;
        w->result = (n == 1 && (pfd.revents & POLLIN)) ? STOPPER_STOPPED : -100;
        break;
    }
    case 6: w->result = stopper_chan_send(w->chan, 1, w->s, -1); break; /* full channel */
    }
    w->woke_at = now_ns();
    return NULL;
}

TEST(stop_wakes_every_waiter) {
    stopper *s = stopper_new();
    REQUIRE(s);
    int p[2];
    REQUIRE(pipe(p) == 0);
    stopper_chan *empty = stopper_chan_new(0);
    stopper_chan *full = stopper_chan_new(1);
    REQUIRE(empty && full);
    CHECK_ST(stopper_chan_send(full, 7, NULL, 0), STOPPER_OK);
    enum { N = 14 };
    waiter_arg w[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        w[i] = (waiter_arg){s, i % 7, p[0], (i % 7) == 6 ? full : empty, -100, 0};
        t[i] = start_thread(waiter_main, &w[i]);
    }
    sleep_ns(MS(60));
    for (int i = 0; i < N; i++) CHECK_EQ(w[i].woke_at, 0);
    int64_t t0 = now_ns();
    CHECK_EQ(stopper_stop(s, 0), 1);
    for (int i = 0; i < N; i++) {
        join_thread(t[i]);
        if (w[i].result != STOPPER_STOPPED)
            h_fail(__FILE__, __LINE__, "waiter kind %d returned %s (%d)", w[i].kind, st_name(w[i].result), w[i].result);
        CHECK_MS_BETWEEN(w[i].woke_at - t0, 0, 1000);
    }
    stopper_chan_release(empty);
    stopper_chan_release(full);
    close(p[0]);
    close(p[1]);
    stopper_release(s);
}

/* Everything written before stopper_stop is visible once is_set / the flag / wait says so. */
typedef struct publish {
    stopper *s;
    long payload[8];
} publish;

static void *publisher(void *p) {
    publish *pb = p;
    for (int i = 0; i < 8; i++) pb->payload[i] = 1000 + i; /* plain stores */
    stopper_stop(pb->s, 0);
    return NULL;
}

TEST_T(stop_publishes_prior_writes, 30) {
    int iters = ITERS(3000);
    int bad = 0;
    for (int it = 0; it < iters; it++) {
        publish pb = {stopper_new(), {0}};
        REQUIRE(pb.s);
        const uint8_t *flag = stopper_flag(pb.s);
        pthread_t t = start_thread(publisher, &pb);
        switch (it % 3) {
        case 0: while (!stopper_flag_is_set(flag)) sched_yield(); break;
        case 1: while (!stopper_is_set(pb.s)) sched_yield(); break;
        case 2: if (stopper_wait(pb.s, -1) != STOPPER_STOPPED) bad++; break;
        }
        for (int i = 0; i < 8; i++)
            if (pb.payload[i] != 1000 + i) bad++;
        join_thread(t);
        stopper_release(pb.s);
    }
    CHECK_EQ(bad, 0);
}

/* ================================================================== wait_any */

TEST(wait_any_returns_index_of_stopped) {
    stopper *s[3] = {stopper_new(), stopper_new(), stopper_new()};
    REQUIRE(s[0] && s[1] && s[2]);
    const stopper *list[3] = {s[0], s[1], s[2]};
    size_t which = 99;
    delayed_stop d;
    int64_t t0 = now_ns();
    delayed_stop_start(&d, s[2], MS(40), 0);
    CHECK_ST(stopper_wait_any(list, 3, -1, &which), STOPPER_STOPPED);
    CHECK_MS_BETWEEN(now_ns() - t0, 35, 1000);
    CHECK_EQ(which, 2);
    delayed_stop_join(&d);
    /* already stopped: at once, whatever the timeout */
    which = 99;
    CHECK_ST(stopper_wait_any(list, 3, 0, &which), STOPPER_STOPPED);
    CHECK_EQ(which, 2);
    CHECK_ST(stopper_wait_any(list, 3, -1, NULL), STOPPER_STOPPED); /* which may be NULL */
    /* the stopped one first in the list */
    stopper_stop(s[0], 0);
    which = 99;
    CHECK_ST(stopper_wait_any(list, 3, 0, &which), STOPPER_STOPPED);
    CHECK(which == 0 || which == 2);
    for (int i = 0; i < 3; i++) stopper_release(s[i]);
}

TEST(wait_any_timeout_leaves_which_alone) {
    stopper *a = stopper_new(), *b = stopper_new();
    REQUIRE(a && b);
    const stopper *list[2] = {a, b};
    size_t which = 777;
    int64_t t0 = now_ns();
    CHECK_ST(stopper_wait_any(list, 2, MS(40), &which), STOPPER_TIMEDOUT);
    CHECK_MS_BETWEEN(now_ns() - t0, 39, 1000);
    CHECK_EQ(which, 777);
    CHECK_ST(stopper_wait_any(list, 2, 0, &which), STOPPER_TIMEDOUT);
    CHECK_EQ(which, 777);
    stopper_release(a);
    stopper_release(b);
}

TEST(wait_any_null_entries_and_bad_args) {
    size_t which = 555;
    /* list NULL with n > 0 */
    CHECK_ST(stopper_wait_any(NULL, 2, 0, &which), STOPPER_EINVAL);
    CHECK_ST(stopper_wait_any(NULL, 1, -1, &which), STOPPER_EINVAL);
    CHECK_EQ(which, 555);
    /* all NULL / empty with no limit: EINVAL at once instead of blocking forever */
    const stopper *nulls[3] = {NULL, NULL, NULL};
    int64_t t0 = now_ns();
    CHECK_ST(stopper_wait_any(nulls, 3, -1, &which), STOPPER_EINVAL);
    CHECK_ST(stopper_wait_any(nulls, 0, -1, &which), STOPPER_EINVAL);
    CHECK_ST(stopper_wait_any(NULL, 0, -1, &which), STOPPER_EINVAL);
    CHECK_MS_BETWEEN(now_ns() - t0, 0, 100);
    /* all NULL / empty with a limit: sleeps it, TIMEDOUT */
    t0 = now_ns();
    CHECK_ST(stopper_wait_any(nulls, 3, MS(30), &which), STOPPER_TIMEDOUT);
    CHECK_MS_BETWEEN(now_ns() - t0, 29, 1000);
    t0 = now_ns();
    CHECK_ST(stopper_wait_any(NULL, 0, MS(20), &which), STOPPER_TIMEDOUT);
    CHECK_MS_BETWEEN(now_ns() - t0, 19, 1000);
    CHECK_ST(stopper_wait_any(nulls, 3, 0, &which), STOPPER_TIMEDOUT);
    CHECK_EQ(which, 555);
    /* NULL entries never stop; the real one is found */
    stopper *s = stopper_new();
    REQUIRE(s);
    const stopper *mixed[4] = {NULL, NULL, s, NULL};
    delayed_stop d;
    delayed_stop_start(&d, s, MS(20), 0);
    CHECK_ST(stopper_wait_any(mixed, 4, -1, &which), STOPPER_STOPPED);
    CHECK_EQ(which, 2);
    delayed_stop_join(&d);
    stopper_release(s);
}

TEST(wait_any_large_list) {
    enum { N = 300 };
    stopper *s[N];
    const stopper *list[N];
    for (int i = 0; i < N; i++) {
        s[i] = stopper_new();
        REQUIRE(s[i]);
        list[i] = s[i];
    }
    delayed_stop d;
    delayed_stop_start(&d, s[217], MS(30), 0);
    size_t which = 0;
    CHECK_ST(stopper_wait_any(list, N, MS(5000), &which), STOPPER_STOPPED);
    CHECK_EQ(which, 217);
    delayed_stop_join(&d);
    for (int i = 0; i < N; i++) stopper_release(s[i]);
}

/* ================================================================== children, linked */

TEST(child_stops_with_parent_and_its_reason) {
    stopper *p = stopper_new();
    REQUIRE(p);
    stopper *c = stopper_new_child(p);
    REQUIRE(c);
    CHECK(c != p);
    CHECK(!stopper_is_set(c));
    CHECK_EQ(stopper_stop(p, 31), 1);
    CHECK(stopper_is_set(c)); /* before stopper_stop returned */
    CHECK_EQ(stopper_reason(c), 31);
    CHECK_EQ(stopper_stop(c, 5), 0); /* already stopped by the parent */
    CHECK_EQ(stopper_reason(c), 31);
    stopper_release(c);
    stopper_release(p);
}

TEST(child_never_stops_parent) {
    stopper *p = stopper_new();
    REQUIRE(p);
    stopper *c = stopper_new_child(p);
    stopper *sib = stopper_new_child(p);
    REQUIRE(c && sib);
    CHECK_EQ(stopper_stop(c, 4), 1);
    CHECK(!stopper_is_set(p));
    CHECK(!stopper_is_set(sib));
    CHECK_EQ(stopper_reason(p), 0);
    CHECK_EQ(stopper_stop(p, 6), 1);
    CHECK_EQ(stopper_reason(c), 4);
    CHECK_EQ(stopper_reason(sib), 6);
    stopper_release(c);
    stopper_release(sib);
    stopper_release(p);
}

TEST(child_of_stopped_parent_is_born_stopped) {
    stopper *p = stopper_new();
    REQUIRE(p);
    stopper_stop(p, 17);
    stopper *c = stopper_new_child(p);
    REQUIRE(c);
    CHECK(stopper_is_set(c));
    CHECK_EQ(stopper_reason(c), 17);
    CHECK_EQ(stopper_stop(c, 3), 0);
    stopper *g = stopper_new_child(c);
    REQUIRE(g);
    CHECK(stopper_is_set(g));
    CHECK_EQ(stopper_reason(g), 17);
    stopper_release(g);
    stopper_release(c);
    stopper_release(p);
}

TEST(grandchildren_follow_the_chain) {
    stopper *p = stopper_new();
    stopper *c = stopper_new_child(p);
    stopper *g = stopper_new_child(c);
    REQUIRE(p && c && g);
    CHECK_EQ(stopper_stop(c, 8), 1);
    CHECK(stopper_is_set(g));
    CHECK_EQ(stopper_reason(g), 8);
    CHECK(!stopper_is_set(p));
    stopper_release(g);
    stopper_release(c);

    /* a deep chain, stopped from the top */
    enum { D = 200 };
    stopper *chain[D];
    chain[0] = p;
    for (int i = 1; i < D; i++) {
        chain[i] = stopper_new_child(chain[i - 1]);
        REQUIRE(chain[i]);
    }
    CHECK_EQ(stopper_stop(p, 12), 1);
    for (int i = 0; i < D; i++) CHECK_EQ(stopper_reason(chain[i]), 12);
    for (int i = D - 1; i >= 0; i--) stopper_release(chain[i]);
}

TEST(child_released_early_or_parent_released_first) {
    stopper *p = stopper_new();
    REQUIRE(p);
    for (int i = 0; i < 100; i++) {
        stopper *c = stopper_new_child(p);
        REQUIRE(c);
        stopper_release(c);
    }
    stopper *kept = stopper_new_child(p);
    REQUIRE(kept);
    CHECK_EQ(stopper_stop(p, 3), 1);
    CHECK_EQ(stopper_reason(kept), 3);
    stopper_release(kept);
    stopper_release(p);

    /* the parent's last reference goes first: the child lives on, running (releasing is not
       stopping), and can still be stopped on its own */
    p = stopper_new();
    stopper *c = stopper_new_child(p);
    REQUIRE(p && c);
    stopper_release(p);
    CHECK(!stopper_is_set(c));
    CHECK_ST(stopper_wait(c, MS(5)), STOPPER_TIMEDOUT);
    CHECK_EQ(stopper_stop(c, 0), 1);
    CHECK_EQ(stopper_reason(c), STOPPER_REASON_REQUESTED);
    stopper_release(c);
}

TEST(linked_with_no_parents_is_plain) {
    stopper *s = stopper_new_linked(NULL, 0);
    REQUIRE(s);
    CHECK(!stopper_is_set(s));
    CHECK_EQ(stopper_stop(s, 0), 1);
    CHECK_EQ(stopper_reason(s), 1);
    stopper_release(s);
    stopper *one[1] = {NULL};
    s = stopper_new_linked(one, 0); /* n == 0 ignores the list */
    REQUIRE(s);
    stopper_release(s);
}

TEST(linked_bad_args_return_null) {
    stopper *a = stopper_new();
    REQUIRE(a);
    CHECK(stopper_new_linked(NULL, 1) == NULL);
    CHECK(stopper_new_linked(NULL, 3) == NULL);
    stopper *with_null[3] = {a, NULL, a};
    CHECK(stopper_new_linked(with_null, 3) == NULL);
    stopper *only_null[1] = {NULL};
    CHECK(stopper_new_linked(only_null, 1) == NULL);
    /* a failed call did not link anything to a: a still stops alone, cleanly */
    CHECK_EQ(stopper_stop(a, 0), 1);
    stopper_release(a);
}

TEST(linked_stops_with_any_parent_and_its_reason) {
    for (int which = 0; which < 3; which++) {
        stopper *ps[3] = {stopper_new(), stopper_new(), stopper_new()};
        REQUIRE(ps[0] && ps[1] && ps[2]);
        stopper *l = stopper_new_linked(ps, 3);
        REQUIRE(l);
        CHECK(!stopper_is_set(l));
        CHECK_EQ(stopper_stop(ps[which], 40 + which), 1);
        CHECK(stopper_is_set(l));
        CHECK_EQ(stopper_reason(l), 40 + which);
        for (int i = 0; i < 3; i++)
            if (i != which) CHECK(!stopper_is_set(ps[i]));
        /* a second parent stopping later changes nothing */
        stopper_stop(ps[(which + 1) % 3], 99);
        CHECK_EQ(stopper_reason(l), 40 + which);
        stopper_release(l);
        for (int i = 0; i < 3; i++) stopper_release(ps[i]);
    }
}

TEST(linked_never_stops_upward_and_born_stopped) {
    stopper *ps[2] = {stopper_new(), stopper_new()};
    REQUIRE(ps[0] && ps[1]);
    stopper *l = stopper_new_linked(ps, 2);
    REQUIRE(l);
    CHECK_EQ(stopper_stop(l, 5), 1);
    CHECK(!stopper_is_set(ps[0]));
    CHECK(!stopper_is_set(ps[1]));
    stopper_release(l);
    stopper_stop(ps[1], 23);
    l = stopper_new_linked(ps, 2);
    REQUIRE(l);
    CHECK(stopper_is_set(l));
    CHECK_EQ(stopper_reason(l), 23);
    stopper_release(l);
    /* the same parent twice is still one stop */
    stopper *dup[2] = {ps[0], ps[0]};
    l = stopper_new_linked(dup, 2);
    REQUIRE(l);
    CHECK_EQ(stopper_stop(ps[0], 29), 1);
    CHECK_EQ(stopper_reason(l), 29);
    stopper_release(l);
    stopper_release(ps[0]);
    stopper_release(ps[1]);
}

TEST(linked_to_children_and_children_of_linked) {
    stopper *root = stopper_new();
    stopper *other = stopper_new();
    REQUIRE(root && other);
    stopper *c = stopper_new_child(root);
    stopper *ps[2] = {c, other};
    stopper *l = stopper_new_linked(ps, 2);
    REQUIRE(c && l);
    stopper *lc = stopper_new_child(l);
    REQUIRE(lc);
    CHECK_EQ(stopper_stop(root, 61), 1);
    CHECK_EQ(stopper_reason(lc), 61);
    CHECK_EQ(stopper_reason(l), 61);
    CHECK(!stopper_is_set(other));
    stopper_release(lc);
    stopper_release(l);
    stopper_release(c);
    stopper_release(other);
    stopper_release(root);
}

/* ================================================================== memory */

TEST_T(parent_stays_flat_over_a_million_children, 60) {
    stopper *p = stopper_new();
    REQUIRE(p);
    const int warm = ITERS(100000), total = ITERS(1000000);
    for (int i = 0; i < warm; i++) stopper_release(stopper_new_child(p));
    long before = rss_bytes();
    int64_t t0 = now_ns();
    for (int i = 0; i < total; i++) {
        stopper *c = stopper_new_child(p);
        if (!c) { h_fail(__FILE__, __LINE__, "new_child returned NULL at %d", i); break; }
        stopper_release(c);
    }
    long after = rss_bytes();
    h_note("%d children created and released in %.0f ms; RSS %ld KiB -> %ld KiB", total,
           (now_ns() - t0) / 1e6, before / 1024, after / 1024);
    if (h_slow == 1) /* sanitizers keep freed memory in quarantine: only bound it natively */
        CHECK(after - before < 4L * 1024 * 1024);
    /* the parent still works and has no phantom children left */
    stopper *c = stopper_new_child(p);
    REQUIRE(c);
    CHECK_EQ(stopper_stop(p, 2), 1);
    CHECK(stopper_is_set(c));
    stopper_release(c);
    stopper_release(p);
}

TEST_T(parents_stay_flat_over_linked_children, 60) {
    stopper *ps[2] = {stopper_new(), stopper_new()};
    REQUIRE(ps[0] && ps[1]);
    const int warm = ITERS(50000), total = ITERS(300000);
    for (int i = 0; i < warm; i++) stopper_release(stopper_new_linked(ps, 2));
    long before = rss_bytes();
    for (int i = 0; i < total; i++) stopper_release(stopper_new_linked(ps, 2));
    long after = rss_bytes();
    h_note("%d linked children: RSS %ld KiB -> %ld KiB", total, before / 1024, after / 1024);
    if (h_slow == 1) CHECK(after - before < 4L * 1024 * 1024);
    stopper_release(ps[0]);
    stopper_release(ps[1]);
}

TEST_T(callback_churn_stays_flat, 60) {
    stopper *s = stopper_new();
    REQUIRE(s);
    const int warm = ITERS(50000), total = ITERS(500000);
    uint64_t id;
    for (int i = 0; i < warm; i++) {
        stopper_on_stop(s, noop_cb, NULL, &id);
        stopper_unregister(s, id);
    }
    long before = rss_bytes();
    int bad = 0;
    for (int i = 0; i < total; i++) {
        if (stopper_on_stop(s, noop_cb, NULL, &id) != STOPPER_OK || id == 0) bad++;
        if (stopper_unregister(s, id) != STOPPER_OK) bad++;
    }
    long after = rss_bytes();
    CHECK_EQ(bad, 0);
    h_note("%d register+unregister: RSS %ld KiB -> %ld KiB", total, before / 1024, after / 1024);
    if (h_slow == 1) CHECK(after - before < 4L * 1024 * 1024);
    stopper_release(s);
}

/* ================================================================== bad input, Processes section
   (only argument checking here: the behaviour of these functions is tested elsewhere) */

TEST(process_functions_bad_args) {
    const char *bad_names[] = {"", ".", "..", "a/b", "/abs", "sp ace", "t\xc3\xa9st", "new\nline"};
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++) {
        errno = 0;
        stopper *s = stopper_open_shared(bad_names[i]);
        if (s != NULL || errno != EINVAL)
            h_fail(__FILE__, __LINE__, "open_shared(\"%s\"): %p errno %d, want NULL/EINVAL", bad_names[i], (void *)s, errno);
        if (s) stopper_release(s);
        CHECK_ST(stopper_unlink_shared(bad_names[i]), STOPPER_EINVAL);
    }
    char longname[202];
    memset(longname, 'a', 201);
    longname[201] = 0;
    errno = 0;
    CHECK(stopper_open_shared(longname) == NULL);
    CHECK_EQ(errno, EINVAL);
    CHECK_ST(stopper_unlink_shared(longname), STOPPER_EINVAL);
    errno = 0;
    CHECK(stopper_open_shared(NULL) == NULL);
    CHECK_EQ(errno, EINVAL);
    CHECK_ST(stopper_unlink_shared(NULL), STOPPER_EINVAL);
    char missing[64];
    snprintf(missing, sizeof missing, "stopper-ctest-missing-%d", (int)getpid());
    errno = 0;
    CHECK_ST(stopper_unlink_shared(missing), STOPPER_EOS);
    CHECK_EQ(errno, ENOENT);

    stopper *s = stopper_new();
    REQUIRE(s);
    CHECK_ST(stopper_watch_process(NULL, (int32_t)getpid(), 0), STOPPER_EINVAL);
    CHECK_ST(stopper_watch_process(s, 0, 0), STOPPER_EINVAL);
    CHECK_ST(stopper_watch_process(s, -1, 0), STOPPER_EINVAL);
    CHECK_ST(stopper_watch_process(s, INT32_MIN, -1), STOPPER_EINVAL);
    CHECK_ST(stopper_stop_on_signal(NULL, SIGUSR2), STOPPER_EINVAL);
    const int bad_signals[] = {0, -1, NSIG, 1000, SIGKILL, SIGSTOP};
    for (size_t i = 0; i < sizeof bad_signals / sizeof *bad_signals; i++) {
        int32_t st = stopper_stop_on_signal(s, bad_signals[i]);
        if (st != STOPPER_EINVAL)
            h_fail(__FILE__, __LINE__, "stop_on_signal(s, %d): %s (%d), want EINVAL", bad_signals[i], st_name(st), st);
    }
    CHECK(!stopper_is_set(s)); /* nothing above stopped it */
    stopper_release(s);
}

/* Issue 12: a chain of 10^5 nested children stops and is released on the main thread's stack
 * (8 MiB), in both orders: the stop and the release are loops, not recursion. */
static void chain_cb(void *d, int32_t r) { *(int32_t *)d = r; }

TEST(a_deep_chain_stops_and_releases_without_recursion) {
    enum { DEPTH = 100000 };
    stopper **v = calloc(DEPTH, sizeof *v);
    REQUIRE(v);
    for (int order = 0; order < 3; order++) { /* 0, 1: stopped first; 2: never stopped */
        stopper *root = stopper_new();
        REQUIRE(root);
        for (int i = 0; i < DEPTH; i++) {
            v[i] = stopper_new_child(i ? v[i - 1] : root);
            REQUIRE(v[i]);
        }
        int32_t seen = 0;
        CHECK_ST(stopper_on_stop(v[DEPTH - 1], chain_cb, &seen, NULL), STOPPER_OK);
        if (order < 2) {
            CHECK_EQ(stopper_stop(root, 12), 1);
            CHECK_EQ(seen, 12);
            CHECK_EQ(stopper_reason(v[DEPTH / 2]), 12);
        }
        if (order != 1) { /* root first, leaf last: the leaf holds the whole chain */
            stopper_release(root);
            for (int i = 0; i < DEPTH; i++) stopper_release(v[i]);
        } else { /* leaf first */
            for (int i = DEPTH - 1; i >= 0; i--) stopper_release(v[i]);
            stopper_release(root);
        }
    }
    free(v);
}
