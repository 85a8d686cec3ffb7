/* SPEC.md: "Callbacks". */
#include "harness.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct rec {
    atomic_int calls;
    atomic_int order;       /* position in the global call sequence */
    int32_t reason;
    uint64_t thread;
} rec;

static atomic_int seq;

static void rec_cb(void *d, int32_t reason) {
    rec *r = d;
    r->reason = reason;
    r->thread = self_id();
    atomic_store(&r->order, atomic_fetch_add(&seq, 1));
    atomic_fetch_add(&r->calls, 1);
}

TEST(on_stop_returns_distinct_nonzero_ids) {
    stopper *s = stopper_new();
    REQUIRE(s);
    enum { N = 200 };
    uint64_t ids[N];
    rec r[N];
    memset(r, 0, sizeof r);
    for (int i = 0; i < N; i++) {
        ids[i] = 0;
        CHECK_ST(stopper_on_stop(s, rec_cb, &r[i], &ids[i]), STOPPER_OK);
        CHECK(ids[i] != 0);
        for (int j = 0; j < i; j++)
            if (ids[j] == ids[i]) h_fail(__FILE__, __LINE__, "ids %d and %d are both %llu", j, i, (unsigned long long)ids[i]);
    }
    for (int i = 0; i < N; i++) CHECK_EQ(atomic_load(&r[i].calls), 0);
    stopper_release(s);
}

TEST(callbacks_run_once_in_order_on_the_stopping_thread) {
    stopper *s = stopper_new();
    REQUIRE(s);
    enum { N = 50 };
    rec r[N];
    memset(r, 0, sizeof r);
    atomic_store(&seq, 0);
    for (int i = 0; i < N; i++) {
        uint64_t id;
        CHECK_ST(stopper_on_stop(s, rec_cb, &r[i], &id), STOPPER_OK);
    }
    delayed_stop d;
    delayed_stop_start(&d, s, 0, 77);
    delayed_stop_join(&d); /* all callbacks ran before stopper_stop returned on that thread */
    uint64_t stopper_thread = (uint64_t)d.thread;
    CHECK_EQ(d.result, 1);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(atomic_load(&r[i].calls), 1);
        CHECK_EQ(atomic_load(&r[i].order), i);
        CHECK_EQ(r[i].reason, 77);
        CHECK(r[i].thread == stopper_thread);
    }
    /* a second stop runs nothing again */
    CHECK_EQ(stopper_stop(s, 0), 0);
    for (int i = 0; i < N; i++) CHECK_EQ(atomic_load(&r[i].calls), 1);
    stopper_release(s);
}

TEST(on_stop_after_stop_runs_inline_and_registers_nothing) {
    stopper *s = stopper_new();
    REQUIRE(s);
    stopper_stop(s, 66);
    rec r;
    memset(&r, 0, sizeof r);
    uint64_t id = 12345;
    CHECK_ST(stopper_on_stop(s, rec_cb, &r, &id), STOPPER_STOPPED);
    CHECK_EQ(id, 0);
    CHECK_EQ(atomic_load(&r.calls), 1);
    CHECK_EQ(r.reason, 66);
    CHECK(r.thread == self_id());
    CHECK_EQ(stopper_stop(s, 0), 0);
    CHECK_EQ(atomic_load(&r.calls), 1);
    stopper_release(s);
}

static void noop_cb(void *d, int32_t r) { (void)d; (void)r; }

TEST(on_stop_bad_args) {
    stopper *s = stopper_new();
    REQUIRE(s);
    uint64_t id = 999;
    CHECK_ST(stopper_on_stop(s, NULL, NULL, &id), STOPPER_EINVAL);
    CHECK_EQ(id, 999);
    CHECK_ST(stopper_on_stop(NULL, noop_cb, NULL, &id), STOPPER_EINVAL);
    CHECK_EQ(id, 999);
    /* id == NULL: accepted (the callback can never be unregistered) or refused, never a crash */
    rec r;
    memset(&r, 0, sizeof r);
    int32_t st = stopper_on_stop(s, rec_cb, &r, NULL);
    CHECK(st == STOPPER_OK || st == STOPPER_EINVAL);
    stopper_stop(s, 0);
    CHECK_EQ(atomic_load(&r.calls), st == STOPPER_OK ? 1 : 0);
    stopper_release(s);
}

TEST(unregister_before_stop_means_never_runs) {
    stopper *s = stopper_new();
    REQUIRE(s);
    rec a, b, c;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    uint64_t ia, ib, ic;
    CHECK_ST(stopper_on_stop(s, rec_cb, &a, &ia), STOPPER_OK);
    CHECK_ST(stopper_on_stop(s, rec_cb, &b, &ib), STOPPER_OK);
    CHECK_ST(stopper_on_stop(s, rec_cb, &c, &ic), STOPPER_OK);
    CHECK_ST(stopper_unregister(s, ib), STOPPER_OK);
    CHECK_ST(stopper_unregister(s, ib), STOPPER_EINVAL); /* already removed, s running */
    stopper_stop(s, 0);
    CHECK_EQ(atomic_load(&a.calls), 1);
    CHECK_EQ(atomic_load(&b.calls), 0);
    CHECK_EQ(atomic_load(&c.calls), 1);
    CHECK_ST(stopper_unregister(s, ia), STOPPER_STOPPED);
    CHECK_ST(stopper_unregister(s, ic), STOPPER_STOPPED);
    CHECK_ST(stopper_unregister(s, ia), STOPPER_STOPPED); /* again */
    CHECK_ST(stopper_unregister(s, ib), STOPPER_EINVAL); /* removed: it never ran (issue 12) */
    stopper_release(s);
}

TEST(unregister_unknown_ids) {
    stopper *s = stopper_new();
    REQUIRE(s);
    uint64_t id;
    CHECK_ST(stopper_on_stop(s, noop_cb, NULL, &id), STOPPER_OK);
    CHECK_ST(stopper_unregister(s, 0), STOPPER_EINVAL);
    CHECK_ST(stopper_unregister(s, UINT64_MAX), STOPPER_EINVAL);
    CHECK_ST(stopper_unregister(s, id + 1000000), STOPPER_EINVAL);
    CHECK_ST(stopper_unregister(NULL, id), STOPPER_EINVAL);
    stopper_stop(s, 0);
    CHECK_ST(stopper_unregister(s, 0), STOPPER_EINVAL);
    CHECK_ST(stopper_unregister(s, UINT64_MAX), STOPPER_EINVAL);
    CHECK_ST(stopper_unregister(s, id), STOPPER_STOPPED);
    stopper_release(s);
}

/* ---- unregister blocks while the callback runs on another thread */

typedef struct slow_cb {
    atomic_int started;
    atomic_int finished;
} slow_cb;

static void slow_callback(void *d, int32_t r) {
    (void)r;
    slow_cb *c = d;
    atomic_store(&c->started, 1);
    sleep_ns(MS(150));
    atomic_store(&c->finished, 1);
}

TEST(unregister_blocks_while_callback_runs_elsewhere) {
    stopper *s = stopper_new();
    REQUIRE(s);
    slow_cb *c = calloc(1, sizeof *c);
    REQUIRE(c);
    uint64_t id;
    CHECK_ST(stopper_on_stop(s, slow_callback, c, &id), STOPPER_OK);
    delayed_stop d;
    delayed_stop_start(&d, s, 0, 0);
    REQUIRE(WAIT_UNTIL(atomic_load(&c->started), MS(2000)));
    int64_t t0 = now_ns();
    CHECK_ST(stopper_unregister(s, id), STOPPER_STOPPED);
    int64_t el = now_ns() - t0;
    CHECK(atomic_load(&c->finished)); /* it returned only after the callback did */
    CHECK_MS_BETWEEN(el, 50, 2000);
    free(c); /* user_data may be freed as soon as unregister returns */
    delayed_stop_join(&d);
    stopper_release(s);
}

typedef struct self_unreg {
    stopper *s;
    uint64_t id;
    int32_t result;
    int64_t took;
} self_unreg;

static void self_unregistering_cb(void *d, int32_t r) {
    (void)r;
    self_unreg *u = d;
    int64_t t0 = now_ns();
    u->result = stopper_unregister(u->s, u->id);
    u->took = now_ns() - t0;
}

TEST(unregister_from_inside_the_callback_does_not_block) {
    stopper *s = stopper_new();
    REQUIRE(s);
    self_unreg u = {s, 0, -100, 0};
    CHECK_ST(stopper_on_stop(s, self_unregistering_cb, &u, &u.id), STOPPER_OK);
    delayed_stop d; /* stopped from a helper thread; the test dies by alarm if it deadlocks */
    delayed_stop_start(&d, s, 0, 0);
    delayed_stop_join(&d);
    CHECK_ST(u.result, STOPPER_STOPPED);
    CHECK_MS_BETWEEN(u.took, 0, 500);
    stopper_release(s);
}

/* ---- a callback may call anything */

typedef struct busy_cb {
    stopper *s;          /* the stopper being stopped */
    stopper *other;      /* another stopper it stops */
    stopper *extra_ref;  /* a reference it releases */
    uint64_t self_id, later_id, earlier_id;
    int32_t st_stop_self, st_stop_other, st_reg_self, st_reg_other, st_unreg_self,
        st_unreg_later, st_unreg_earlier, st_wait;
    uint64_t reg_self_id, reg_other_id;
    rec inline_rec, other_rec, later_rec, earlier_rec;
    bool is_set_inside;
    int32_t reason_inside;
} busy_cb;

static void busy_callback(void *d, int32_t reason) {
    busy_cb *b = d;
    b->is_set_inside = stopper_is_set(b->s);
    b->reason_inside = stopper_reason(b->s);
    b->st_stop_self = stopper_stop(b->s, 1234);
    b->st_stop_other = stopper_stop(b->other, reason + 1);
    b->reg_self_id = 777;
    b->st_reg_self = stopper_on_stop(b->s, rec_cb, &b->inline_rec, &b->reg_self_id);
    b->st_reg_other = stopper_on_stop(b->other, rec_cb, &b->other_rec, &b->reg_other_id);
    b->st_unreg_self = stopper_unregister(b->s, b->self_id);
    b->st_unreg_later = stopper_unregister(b->s, b->later_id);
    b->st_unreg_earlier = stopper_unregister(b->s, b->earlier_id);
    b->st_wait = stopper_wait(b->s, -1);
    stopper_release(b->extra_ref);
    stopper *c = stopper_new_child(b->s); /* born stopped */
    if (c) {
        if (!stopper_is_set(c)) b->st_wait = -100;
        stopper_release(c);
    }
}

TEST(callback_may_stop_register_unregister_release) {
    stopper *s = stopper_new(), *other = stopper_new();
    REQUIRE(s && other);
    busy_cb *b = calloc(1, sizeof *b);
    REQUIRE(b);
    b->s = s;
    b->other = other;
    b->extra_ref = stopper_retain(s);
    CHECK_ST(stopper_on_stop(s, rec_cb, &b->earlier_rec, &b->earlier_id), STOPPER_OK);
    CHECK_ST(stopper_on_stop(s, busy_callback, b, &b->self_id), STOPPER_OK);
    CHECK_ST(stopper_on_stop(s, rec_cb, &b->later_rec, &b->later_id), STOPPER_OK);
    CHECK_EQ(stopper_stop(s, 50), 1);
    CHECK(b->is_set_inside);
    CHECK_EQ(b->reason_inside, 50);
    CHECK_EQ(b->st_stop_self, 0);
    CHECK_EQ(b->st_stop_other, 1);
    CHECK_EQ(stopper_reason(other), 51);
    CHECK_ST(b->st_reg_self, STOPPER_STOPPED);
    CHECK_EQ(b->reg_self_id, 0);
    CHECK_EQ(atomic_load(&b->inline_rec.calls), 1);
    CHECK_EQ(b->inline_rec.reason, 50);
    CHECK_ST(b->st_reg_other, STOPPER_STOPPED); /* other was stopped just before */
    CHECK_EQ(atomic_load(&b->other_rec.calls), 1);
    CHECK_ST(b->st_unreg_self, STOPPER_STOPPED);
    /* a later callback unregistered by an earlier one: OK and it never runs, or STOPPED if the
       library considers every callback of a stopped stopper as run; either way it ran iff
       STOPPED */
    CHECK(b->st_unreg_later == STOPPER_OK || b->st_unreg_later == STOPPER_STOPPED);
    CHECK_EQ(atomic_load(&b->later_rec.calls), b->st_unreg_later == STOPPER_OK ? 0 : 1);
    CHECK_ST(b->st_unreg_earlier, STOPPER_STOPPED);
    CHECK_EQ(atomic_load(&b->earlier_rec.calls), 1);
    CHECK_ST(b->st_wait, STOPPER_STOPPED);
    stopper_release(s);
    stopper_release(other);
    free(b);
}

/* The callback drops the last reference of the stopper being stopped: the stop must still
   finish safely (ASan/valgrind runs turn a use-after-free into a failure). */
static void release_arg_cb(void *d, int32_t r) {
    (void)r;
    stopper_release((stopper *)d);
}

TEST(callback_releasing_the_last_reference) {
    for (int i = 0; i < 100; i++) {
        stopper *s = stopper_new();
        REQUIRE(s);
        rec after;
        memset(&after, 0, sizeof after);
        uint64_t id;
        CHECK_ST(stopper_on_stop(s, release_arg_cb, s, &id), STOPPER_OK);
        CHECK_ST(stopper_on_stop(s, rec_cb, &after, &id), STOPPER_OK);
        stopper *ref = stopper_retain(s);
        stopper_release(s); /* now the only reference left is the one the callback drops */
        CHECK_EQ(stopper_stop(ref, 0), 1);
        CHECK_EQ(atomic_load(&after.calls), 1); /* later callbacks still ran */
    }
}

/* A callback on a child stopping its parent, and on a parent stopping an unrelated stopper
   whose callbacks stop the first again: no deadlock, each runs once. */
typedef struct cross {
    stopper *target;
    atomic_int calls;
} cross;

static void cross_cb(void *d, int32_t r) {
    cross *c = d;
    atomic_fetch_add(&c->calls, 1);
    stopper_stop(c->target, r);
}

TEST(callbacks_stopping_each_other) {
    stopper *p = stopper_new();
    REQUIRE(p);
    stopper *c = stopper_new_child(p);
    stopper *o = stopper_new();
    REQUIRE(c && o);
    cross to_parent = {p, 0}, to_other = {o, 0}, back = {p, 0};
    uint64_t id;
    CHECK_ST(stopper_on_stop(c, cross_cb, &to_parent, &id), STOPPER_OK);
    CHECK_ST(stopper_on_stop(p, cross_cb, &to_other, &id), STOPPER_OK);
    CHECK_ST(stopper_on_stop(o, cross_cb, &back, &id), STOPPER_OK);
    CHECK_EQ(stopper_stop(c, 88), 1);
    CHECK_EQ(stopper_reason(p), 88);
    CHECK_EQ(stopper_reason(o), 88);
    CHECK_EQ(atomic_load(&to_parent.calls), 1);
    CHECK_EQ(atomic_load(&to_other.calls), 1);
    CHECK_EQ(atomic_load(&back.calls), 1);
    stopper_release(c);
    stopper_release(o);
    stopper_release(p);
}

/* Stop reaches everything before stopper_stop returns, in the documented order: children, the
   fd, the hooks, then the callbacks. */
typedef struct order_probe {
    stopper *s, *child;
    int fd;
    atomic_int *hook_calls;
    bool child_set, fd_readable, hook_called, child_cb_ran;
    rec *child_rec;
} order_probe;

static void order_cb(void *d, int32_t r) {
    (void)r;
    order_probe *o = d;
    o->child_set = stopper_is_set(o->child);
    struct pollfd pfd = {o->fd, POLLIN, 0};
    o->fd_readable = poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN);
    o->hook_called = atomic_load(o->hook_calls) == 1;
}

static void counting_hook(void *data, uint64_t tid, int32_t reason) {
    (void)tid;
    (void)reason;
    atomic_fetch_add((atomic_int *)data, 1);
}

typedef struct inside_arg {
    stopper *s;
    stopper_hook hook;
    atomic_int entered;
    atomic_int go;
} inside_arg;

static void *inside_main(void *p) {
    inside_arg *a = p;
    if (stopper_enter(a->s, &a->hook) != STOPPER_OK) h_fail(__FILE__, __LINE__, "enter failed");
    atomic_store(&a->entered, 1);
    while (!atomic_load(&a->go)) sleep_ns(US(100));
    stopper_exit(a->s);
    return NULL;
}

TEST(stop_completes_everything_before_returning) {
    stopper *s = stopper_new();
    REQUIRE(s);
    stopper *child = stopper_new_child(s);
    REQUIRE(child);
    int fd = stopper_fd(s);
    REQUIRE(fd >= 0);
    atomic_int hook_calls = 0;
    inside_arg ia = {s, {counting_hook, &hook_calls, 0}, 0, 0};
    pthread_t t = start_thread(inside_main, &ia);
    REQUIRE(WAIT_UNTIL(atomic_load(&ia.entered), MS(2000)));
    rec child_rec;
    memset(&child_rec, 0, sizeof child_rec);
    uint64_t id;
    CHECK_ST(stopper_on_stop(child, rec_cb, &child_rec, &id), STOPPER_OK);
    order_probe o = {s, child, fd, &hook_calls, false, false, false, false, &child_rec};
    CHECK_ST(stopper_on_stop(s, order_cb, &o, &id), STOPPER_OK);
    CHECK_EQ(stopper_stop(s, 0), 1);
    /* by the time stop returned: */
    CHECK(o.child_set);
    CHECK(o.fd_readable);
    CHECK(o.hook_called);
    CHECK_EQ(atomic_load(&child_rec.calls), 1); /* the child's own callbacks too */
    CHECK_EQ(atomic_load(&hook_calls), 1);
    atomic_store(&ia.go, 1);
    join_thread(t);
    stopper_release(child);
    stopper_release(s);
}

/* Issue 12: STOPPED means "it ran". An id removed before it ran (earlier, or by a callback
 * during the stop) gives EINVAL, before and after the stop. */
struct unreg_other { stopper *s; uint64_t victim; int32_t got; };
static void unregister_other_cb(void *d, int32_t r) {
    (void)r;
    struct unreg_other *u = d;
    u->got = stopper_unregister(u->s, u->victim);
}
static void count_cb(void *d, int32_t r) { (void)r; atomic_fetch_add((atomic_int *)d, 1); }

TEST(unregister_of_a_removed_id_is_einval_also_once_stopped) {
    stopper *s = stopper_new();
    REQUIRE(s);
    atomic_int runs = 0;
    uint64_t early = 0, victim = 0, kept = 0, first = 0;
    struct unreg_other u = {s, 0, 99};
    CHECK_ST(stopper_on_stop(s, count_cb, &runs, &early), STOPPER_OK);
    CHECK_ST(stopper_unregister(s, early), STOPPER_OK);
    CHECK_ST(stopper_on_stop(s, unregister_other_cb, &u, &first), STOPPER_OK);
    CHECK_ST(stopper_on_stop(s, count_cb, &runs, &victim), STOPPER_OK);
    CHECK_ST(stopper_on_stop(s, count_cb, &runs, &kept), STOPPER_OK);
    u.victim = victim;
    CHECK_ST(stopper_unregister(s, early), STOPPER_EINVAL);
    CHECK_EQ(stopper_stop(s, 0), 1);
    CHECK_ST(u.got, STOPPER_OK);
    CHECK_EQ(atomic_load(&runs), 1);
    CHECK_ST(stopper_unregister(s, early), STOPPER_EINVAL);
    CHECK_ST(stopper_unregister(s, victim), STOPPER_EINVAL);
    CHECK_ST(stopper_unregister(s, kept), STOPPER_STOPPED);
    CHECK_ST(stopper_unregister(s, first), STOPPER_STOPPED);
    stopper_release(s);
}
