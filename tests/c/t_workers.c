/* SPEC.md: "Workers, join and the current stopper", and the interrupt hook's first delivery. */
#include "harness.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TEST(thread_id_is_pthread_self) {
    CHECK(stopper_thread_id() == self_id());
    CHECK(stopper_thread_id() == stopper_thread_id());
}

static void *thread_id_main(void *p) {
    *(uint64_t *)p = stopper_thread_id();
    return NULL;
}

TEST(thread_id_differs_per_thread) {
    uint64_t other = 0;
    pthread_t t = start_thread(thread_id_main, &other);
    join_thread(t);
    CHECK(other == (uint64_t)t);
    CHECK(other != stopper_thread_id());
}

TEST(enter_exit_and_current) {
    CHECK(stopper_current() == NULL);
    CHECK(!stopper_is_set(stopper_current()));
    stopper *s = stopper_new();
    REQUIRE(s);
    CHECK_ST(stopper_enter(s, NULL), STOPPER_OK);
    CHECK(stopper_current() == s);
    CHECK(!stopper_is_set(stopper_current()));
    stopper_stop(s, 0);
    CHECK(stopper_is_set(stopper_current()));
    CHECK_ST(stopper_exit(s), STOPPER_OK);
    CHECK(stopper_current() == NULL);
    CHECK_ST(stopper_exit(s), STOPPER_EINVAL); /* not inside any more */
    stopper_release(s);
}

TEST(enter_nests_and_mismatched_exit_changes_nothing) {
    stopper *a = stopper_new(), *b = stopper_new(), *c = stopper_new();
    REQUIRE(a && b && c);
    CHECK_ST(stopper_enter(a, NULL), STOPPER_OK);
    CHECK_ST(stopper_enter(b, NULL), STOPPER_OK);
    CHECK(stopper_current() == b);
    CHECK_ST(stopper_exit(a), STOPPER_EINVAL); /* not the innermost */
    CHECK(stopper_current() == b);             /* stack unchanged */
    CHECK_ST(stopper_exit(c), STOPPER_EINVAL); /* never entered */
    CHECK_ST(stopper_exit(NULL), STOPPER_EINVAL);
    CHECK(stopper_current() == b);
    /* the same stopper twice */
    CHECK_ST(stopper_enter(a, NULL), STOPPER_OK);
    CHECK(stopper_current() == a);
    CHECK_ST(stopper_exit(b), STOPPER_EINVAL);
    CHECK_ST(stopper_exit(a), STOPPER_OK);
    CHECK(stopper_current() == b);
    CHECK_ST(stopper_exit(b), STOPPER_OK);
    CHECK(stopper_current() == a);
    CHECK_ST(stopper_exit(a), STOPPER_OK);
    CHECK(stopper_current() == NULL);
    CHECK_ST(stopper_exit(a), STOPPER_EINVAL);
    /* deep nesting */
    enum { D = 100 };
    stopper *st[D];
    for (int i = 0; i < D; i++) {
        st[i] = stopper_new();
        REQUIRE(st[i]);
        CHECK_ST(stopper_enter(st[i], NULL), STOPPER_OK);
    }
    for (int i = D - 1; i >= 0; i--) {
        CHECK(stopper_current() == st[i]);
        CHECK_ST(stopper_exit(st[i]), STOPPER_OK);
        stopper_release(st[i]);
    }
    CHECK(stopper_current() == NULL);
    stopper_release(a);
    stopper_release(b);
    stopper_release(c);
}

static void *current_elsewhere_main(void *p) {
    *(stopper **)p = stopper_current();
    return NULL;
}

TEST(current_is_per_thread) {
    stopper *s = stopper_new();
    REQUIRE(s);
    CHECK_ST(stopper_enter(s, NULL), STOPPER_OK);
    stopper *seen = (stopper *)1;
    pthread_t t = start_thread(current_elsewhere_main, &seen);
    join_thread(t);
    CHECK(seen == NULL);
    CHECK_ST(stopper_exit(s), STOPPER_OK);
    stopper_release(s);
}

TEST(enter_stopped_returns_stopped_but_is_inside) {
    stopper *s = stopper_new();
    REQUIRE(s);
    stopper_stop(s, 3);
    CHECK_ST(stopper_enter(s, NULL), STOPPER_STOPPED);
    CHECK(stopper_current() == s);
    CHECK(stopper_is_set(stopper_current()));
    CHECK_ST(stopper_exit(s), STOPPER_OK);
    CHECK(stopper_current() == NULL);
    stopper_release(s);
}

TEST(entered_stopper_is_kept_alive) {
    stopper *s = stopper_new();
    REQUIRE(s);
    CHECK_ST(stopper_enter(s, NULL), STOPPER_OK);
    stopper_release(s); /* the worker's own reference keeps it */
    stopper *cur = stopper_current();
    REQUIRE(cur == s);
    CHECK(!stopper_is_set(cur));
    CHECK_EQ(stopper_stop(cur, 0), 1);
    CHECK_ST(stopper_wait(cur, -1), STOPPER_STOPPED);
    CHECK_ST(stopper_exit(cur), STOPPER_OK); /* drops the last reference */
    CHECK(stopper_current() == NULL);
}

/* ---- join */

typedef struct worker_arg {
    stopper *s;
    int64_t linger_ns;   /* keeps running this long after seeing the stop */
    atomic_int entered;
    atomic_int done;
    int32_t enter_status;
    bool skip_exit;      /* end the thread while still inside */
} worker_arg;

static void *worker_main(void *p) {
    worker_arg *w = p;
    w->enter_status = stopper_enter(w->s, NULL);
    atomic_store(&w->entered, 1);
    stopper_wait(stopper_current(), -1);
    sleep_ns(w->linger_ns);
    atomic_store(&w->done, 1);
    if (!w->skip_exit) stopper_exit(w->s);
    return NULL;
}

TEST(join_stops_then_waits_for_workers) {
    stopper *s = stopper_new();
    REQUIRE(s);
    enum { N = 4 };
    worker_arg w[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        w[i] = (worker_arg){s, MS(20 * (i + 1)), 0, 0, -100, false};
        t[i] = start_thread(worker_main, &w[i]);
    }
    for (int i = 0; i < N; i++) REQUIRE(WAIT_UNTIL(atomic_load(&w[i].entered), MS(2000)));
    for (int i = 0; i < N; i++) CHECK_ST(w[i].enter_status, STOPPER_OK);
    int64_t t0 = now_ns();
    CHECK_ST(stopper_join(s, -1), STOPPER_OK);
    CHECK_MS_BETWEEN(now_ns() - t0, 75, 2000);
    CHECK(stopper_is_set(s));
    CHECK_EQ(stopper_reason(s), STOPPER_REASON_REQUESTED);
    for (int i = 0; i < N; i++) CHECK(atomic_load(&w[i].done));
    for (int i = 0; i < N; i++) join_thread(t[i]);
    stopper_release(s);
}

TEST(join_keeps_an_earlier_reason) {
    stopper *s = stopper_new();
    REQUIRE(s);
    stopper_stop(s, 71);
    CHECK_ST(stopper_join(s, 0), STOPPER_OK);
    CHECK_EQ(stopper_reason(s), 71);
    stopper_release(s);
}

TEST(join_without_workers_returns_at_once) {
    stopper *s = stopper_new();
    REQUIRE(s);
    int64_t t0 = now_ns();
    CHECK_ST(stopper_join(s, -1), STOPPER_OK);
    CHECK_MS_BETWEEN(now_ns() - t0, 0, 200);
    CHECK(stopper_is_set(s));
    CHECK_EQ(stopper_reason(s), STOPPER_REASON_REQUESTED);
    CHECK_ST(stopper_join(s, 0), STOPPER_OK);
    stopper_release(s);
}

TEST(join_times_out_on_a_slow_worker) {
    stopper *s = stopper_new();
    REQUIRE(s);
    worker_arg w = {s, MS(400), 0, 0, -100, false};
    pthread_t t = start_thread(worker_main, &w);
    REQUIRE(WAIT_UNTIL(atomic_load(&w.entered), MS(2000)));
    int64_t t0 = now_ns();
    CHECK_ST(stopper_join(s, MS(50)), STOPPER_TIMEDOUT);
    CHECK_MS_BETWEEN(now_ns() - t0, 49, 390);
    CHECK(stopper_is_set(s)); /* the stop happened anyway */
    CHECK(!atomic_load(&w.done));
    CHECK_ST(stopper_join(s, 0), STOPPER_TIMEDOUT);
    CHECK_ST(stopper_join(s, MS(5000)), STOPPER_OK);
    CHECK(atomic_load(&w.done));
    join_thread(t);
    stopper_release(s);
}

TEST(join_from_a_worker_is_edeadlk) {
    stopper *s = stopper_new(), *other = stopper_new();
    REQUIRE(s && other);
    CHECK_ST(stopper_enter(s, NULL), STOPPER_OK);
    CHECK_ST(stopper_join(s, MS(10)), STOPPER_EDEADLK);
    CHECK_ST(stopper_join(s, -1), STOPPER_EDEADLK);
    CHECK(!stopper_is_set(s)); /* refused without stopping (stopper.h) */
    /* nested: still a worker of s while inside another */
    CHECK_ST(stopper_enter(other, NULL), STOPPER_OK);
    CHECK_ST(stopper_join(s, -1), STOPPER_EDEADLK);
    CHECK_ST(stopper_exit(other), STOPPER_OK);
    CHECK_ST(stopper_exit(s), STOPPER_OK);
    CHECK_ST(stopper_join(s, -1), STOPPER_OK);
    CHECK_ST(stopper_join(other, -1), STOPPER_OK);
    stopper_release(s);
    stopper_release(other);
}

TEST(thread_ending_inside_is_exited_automatically) {
    stopper *s = stopper_new();
    REQUIRE(s);
    worker_arg w = {s, 0, 0, 0, -100, true};
    pthread_t t = start_thread(worker_main, &w);
    REQUIRE(WAIT_UNTIL(atomic_load(&w.entered), MS(2000)));
    stopper_stop(s, 0);
    join_thread(t); /* the thread is gone, still "inside" */
    int64_t t0 = now_ns();
    CHECK_ST(stopper_join(s, MS(3000)), STOPPER_OK);
    CHECK_MS_BETWEEN(now_ns() - t0, 0, 1000);
    stopper_release(s);
}

static void *enter_nested_and_vanish(void *p) {
    stopper **ss = p;
    stopper_enter(ss[0], NULL);
    stopper_enter(ss[1], NULL);
    stopper_enter(ss[0], NULL);
    return NULL; /* three entries left open */
}

TEST(thread_ending_with_nested_entries_releases_all) {
    stopper *ss[2] = {stopper_new(), stopper_new()};
    REQUIRE(ss[0] && ss[1]);
    pthread_t t = start_thread(enter_nested_and_vanish, ss);
    join_thread(t);
    CHECK_ST(stopper_join(ss[0], MS(3000)), STOPPER_OK);
    CHECK_ST(stopper_join(ss[1], MS(3000)), STOPPER_OK);
    stopper_release(ss[0]);
    stopper_release(ss[1]);
}

/* ---- spawn */

typedef struct spawn_arg {
    stopper *expect;
    atomic_int ran;
    bool saw_current;
    bool saw_stop;
    uint64_t thread;
    int64_t linger_ns;
} spawn_arg;

static void spawned(void *p) {
    spawn_arg *a = p;
    a->thread = stopper_thread_id();
    a->saw_current = stopper_current() == a->expect;
    a->saw_stop = stopper_wait(stopper_current(), MS(5000)) == STOPPER_STOPPED;
    sleep_ns(a->linger_ns);
    atomic_store(&a->ran, 1);
}

TEST(spawn_runs_a_worker_that_join_waits_for) {
    stopper *s = stopper_new();
    REQUIRE(s);
    enum { N = 8 };
    spawn_arg a[N];
    for (int i = 0; i < N; i++) {
        a[i] = (spawn_arg){s, 0, false, false, 0, MS(30)};
        CHECK_ST(stopper_spawn(s, spawned, &a[i]), STOPPER_OK);
    }
    sleep_ns(MS(20));
    CHECK_ST(stopper_join(s, MS(5000)), STOPPER_OK);
    for (int i = 0; i < N; i++) {
        CHECK(atomic_load(&a[i].ran));
        CHECK(a[i].saw_current);
        CHECK(a[i].saw_stop);
        CHECK(a[i].thread != self_id());
    }
    stopper_release(s);
}

TEST(spawn_on_a_stopped_stopper_still_runs) {
    stopper *s = stopper_new();
    REQUIRE(s);
    stopper_stop(s, 0);
    spawn_arg a = {s, 0, false, false, 0, 0};
    CHECK_ST(stopper_spawn(s, spawned, &a), STOPPER_OK);
    CHECK_ST(stopper_join(s, MS(5000)), STOPPER_OK);
    /* join waits for a spawned thread even if it had not started running yet */
    CHECK(atomic_load(&a.ran));
    CHECK(WAIT_UNTIL(atomic_load(&a.ran), MS(3000)));
    CHECK(a.saw_current);
    CHECK(a.saw_stop);
    stopper_release(s);
}

static void spawned_counter(void *p) {
    sleep_ns(US(500));
    atomic_fetch_add((atomic_int *)p, 1);
}

TEST(join_right_after_spawn_waits_for_it) {
    int iters = ITERS(300);
    int early = 0;
    for (int i = 0; i < iters; i++) {
        stopper *s = stopper_new();
        REQUIRE(s);
        atomic_int ran = 0;
        CHECK_ST(stopper_spawn(s, spawned_counter, &ran), STOPPER_OK);
        CHECK_ST(stopper_spawn(s, spawned_counter, &ran), STOPPER_OK);
        CHECK_ST(stopper_join(s, MS(5000)), STOPPER_OK);
        if (atomic_load(&ran) != 2) early++;
        /* the threads are gone after join: safe to reuse `ran`'s memory */
        CHECK(WAIT_UNTIL(atomic_load(&ran) == 2, MS(2000)));
        stopper_release(s);
    }
    CHECK_EQ(early, 0);
}

static void noop_fn(void *a) { (void)a; }

TEST(spawn_bad_args) {
    stopper *s = stopper_new();
    REQUIRE(s);
    CHECK_ST(stopper_spawn(NULL, noop_fn, NULL), STOPPER_EINVAL);
    CHECK_ST(stopper_spawn(s, NULL, NULL), STOPPER_EINVAL);
    CHECK_ST(stopper_join(s, MS(1000)), STOPPER_OK);
    stopper_release(s);
}

static void spawned_release(void *p) {
    (void)p;
    sleep_ns(MS(30));
}

TEST(spawned_worker_keeps_its_stopper_alive) {
    stopper *s = stopper_new();
    REQUIRE(s);
    CHECK_ST(stopper_spawn(s, spawned_release, NULL), STOPPER_OK);
    stopper_release(s); /* the worker's reference keeps s alive until it exits */
    sleep_ns(MS(100));
    CHECK(WAIT_UNTIL_RAW(task_count() == 1, MS(5000)));
}

/* ---- hooks: the first delivery */

typedef struct hook_log {
    atomic_int calls;
    uint64_t thread_arg;    /* thread_id the hook received */
    uint64_t caller;        /* the thread the hook ran on */
    int32_t reason;
    atomic_int in_progress;
    int64_t sleep_ns;
    atomic_int finished;
} hook_log;

static void log_hook(void *data, uint64_t tid, int32_t reason) {
    hook_log *h = data;
    h->thread_arg = tid;
    h->caller = self_id();
    h->reason = reason;
    atomic_store(&h->in_progress, 1);
    sleep_ns(h->sleep_ns);
    atomic_fetch_add(&h->calls, 1);
    atomic_store(&h->finished, 1);
}

typedef struct hooked_worker {
    stopper *s;
    stopper_hook hook;
    bool use_hook;
    uint64_t self;
    atomic_int entered;
    atomic_int may_exit;
    atomic_int exited;
    int32_t enter_status;
    int64_t exit_returned_at;
    bool hook_done_at_exit;
    hook_log *log;
} hooked_worker;

static void *hooked_worker_main(void *p) {
    hooked_worker *w = p;
    w->self = self_id();
    w->enter_status = stopper_enter(w->s, w->use_hook ? &w->hook : NULL);
    atomic_store(&w->entered, 1);
    while (!atomic_load(&w->may_exit)) {
        if (w->log && atomic_load(&w->log->in_progress)) break;
        sleep_ns(US(100));
    }
    stopper_exit(w->s);
    w->exit_returned_at = now_ns();
    if (w->log) w->hook_done_at_exit = atomic_load(&w->log->finished) || !atomic_load(&w->log->in_progress);
    atomic_store(&w->exited, 1);
    return NULL;
}

TEST(hook_gets_worker_thread_and_runs_once_on_stopping_thread) {
    stopper *s = stopper_new();
    REQUIRE(s);
    enum { N = 3 };
    hook_log logs[N];
    hooked_worker w[N];
    pthread_t t[N];
    memset(logs, 0, sizeof logs);
    for (int i = 0; i < N; i++) {
        w[i] = (hooked_worker){s, {log_hook, &logs[i], 0}, true, 0, 0, 0, 0, -100, 0, false, NULL};
        t[i] = start_thread(hooked_worker_main, &w[i]);
    }
    /* a worker without a hook gets no call */
    hook_log none;
    memset(&none, 0, sizeof none);
    hooked_worker plain = {s, {log_hook, &none, 0}, false, 0, 0, 0, 0, -100, 0, false, NULL};
    pthread_t tp = start_thread(hooked_worker_main, &plain);
    for (int i = 0; i < N; i++) REQUIRE(WAIT_UNTIL(atomic_load(&w[i].entered), MS(2000)));
    REQUIRE(WAIT_UNTIL(atomic_load(&plain.entered), MS(2000)));
    delayed_stop d;
    delayed_stop_start(&d, s, 0, 45);
    delayed_stop_join(&d);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(atomic_load(&logs[i].calls), 1); /* before stop returned */
        CHECK(logs[i].thread_arg == w[i].self);
        CHECK(logs[i].thread_arg == (uint64_t)t[i]);
        CHECK(logs[i].caller == (uint64_t)d.thread);
        CHECK_EQ(logs[i].reason, 45);
    }
    sleep_ns(MS(100)); /* repeat_ns == 0: once, never again */
    for (int i = 0; i < N; i++) CHECK_EQ(atomic_load(&logs[i].calls), 1);
    CHECK_EQ(atomic_load(&none.calls), 0);
    for (int i = 0; i < N; i++) atomic_store(&w[i].may_exit, 1);
    atomic_store(&plain.may_exit, 1);
    for (int i = 0; i < N; i++) join_thread(t[i]);
    join_thread(tp);
    stopper_release(s);
}

TEST(no_hook_after_exit_or_when_entering_stopped) {
    stopper *s = stopper_new();
    REQUIRE(s);
    hook_log log;
    memset(&log, 0, sizeof log);
    stopper_hook h = {log_hook, &log, 0};
    CHECK_ST(stopper_enter(s, &h), STOPPER_OK);
    CHECK_ST(stopper_exit(s), STOPPER_OK);
    stopper_stop(s, 0);
    CHECK_EQ(atomic_load(&log.calls), 0);
    CHECK_ST(stopper_enter(s, &h), STOPPER_STOPPED);
    sleep_ns(MS(30));
    CHECK_ST(stopper_exit(s), STOPPER_OK);
    CHECK_EQ(atomic_load(&log.calls), 0);
    /* a repeating hook entering a stopped stopper: no call either */
    stopper_hook hr = {log_hook, &log, MS(5)};
    CHECK_ST(stopper_enter(s, &hr), STOPPER_STOPPED);
    sleep_ns(MS(60));
    CHECK_ST(stopper_exit(s), STOPPER_OK);
    CHECK_EQ(atomic_load(&log.calls), 0);
    stopper_release(s);
}

TEST(hook_with_null_fn_is_harmless) {
    stopper *s = stopper_new();
    REQUIRE(s);
    stopper_hook h = {NULL, NULL, 0};
    int32_t st = stopper_enter(s, &h);
    CHECK(st == STOPPER_OK || st == STOPPER_EINVAL);
    if (st == STOPPER_OK) {
        CHECK_EQ(stopper_stop(s, 0), 1); /* no crash */
        CHECK_ST(stopper_exit(s), STOPPER_OK);
    } else {
        CHECK(stopper_current() == NULL); /* a refused enter leaves the thread outside */
    }
    stopper_release(s);
}

TEST(hooks_reach_workers_of_children) {
    stopper *p = stopper_new();
    REQUIRE(p);
    stopper *c = stopper_new_child(p);
    REQUIRE(c);
    hook_log log;
    memset(&log, 0, sizeof log);
    hooked_worker w = {c, {log_hook, &log, 0}, true, 0, 0, 0, 0, -100, 0, false, NULL};
    pthread_t t = start_thread(hooked_worker_main, &w);
    REQUIRE(WAIT_UNTIL(atomic_load(&w.entered), MS(2000)));
    CHECK_EQ(stopper_stop(p, 14), 1);
    CHECK_EQ(atomic_load(&log.calls), 1);
    CHECK(log.thread_arg == (uint64_t)t);
    CHECK_EQ(log.reason, 14);
    atomic_store(&w.may_exit, 1);
    join_thread(t);
    stopper_release(c);
    stopper_release(p);
}

TEST(exit_waits_for_a_hook_in_progress) {
    stopper *s = stopper_new();
    REQUIRE(s);
    hook_log log;
    memset(&log, 0, sizeof log);
    log.sleep_ns = MS(150);
    hooked_worker w = {s, {log_hook, &log, 0}, true, 0, 0, 0, 0, -100, 0, false, &log};
    pthread_t t = start_thread(hooked_worker_main, &w);
    REQUIRE(WAIT_UNTIL(atomic_load(&w.entered), MS(2000)));
    delayed_stop d;
    delayed_stop_start(&d, s, 0, 0);
    /* the worker calls stopper_exit as soon as it sees the hook running */
    join_thread(t);
    CHECK(w.hook_done_at_exit);
    delayed_stop_join(&d);
    CHECK_EQ(atomic_load(&log.calls), 1);
    stopper_release(s);
}
