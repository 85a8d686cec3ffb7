/* The races of issue 2 and 3, each run thousands of times with varied interleavings. */
#include "harness.h"

#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void spin(uint32_t n) {
    for (volatile uint32_t i = 0; i < n; i++) {
    }
}

/* busy-waits `ns` nanoseconds (a delay shorter than any sleep) */
static void spin_ns(int64_t ns) {
    int64_t end = now_ns() + ns;
    while (now_ns() < end) {
    }
}

/* A start gate: each side arrives, then all leave together, so that the random delays that
   follow decide the order instead of thread start-up time. */
typedef struct gate {
    atomic_int arrived;
    int parties;
} gate;

static void gate_pass(gate *g) {
    atomic_fetch_add(&g->arrived, 1);
    while (atomic_load(&g->arrived) < g->parties) sched_yield();
}

/* ---- stop vs wait: no lost wake-up, in every kind of wait */

typedef struct race_waiter {
    stopper *s;
    stopper_chan *c;
    int pipe_rd;
    int kind;
    int64_t delay;
    gate *g;
    int32_t result;
    int64_t started;
} race_waiter;

static void *race_waiter_main(void *p) {
    race_waiter *w = p;
    gate_pass(w->g);
    spin_ns(w->delay);
    w->started = now_ns();
    const int64_t limit = SLOW_NS(MS(5000));
    const stopper *list[2] = {NULL, w->s};
    uint64_t item;
    switch (w->kind) {
    case 0: w->result = stopper_wait(w->s, -1); break;
    case 1: w->result = stopper_wait(w->s, limit); break;
    case 2: w->result = stopper_wait_any(list, 2, limit, NULL); break;
    case 3: w->result = stopper_wait_fd(w->s, w->pipe_rd, POLLIN, limit, NULL); break;
    case 4: w->result = stopper_chan_recv(w->c, &item, w->s, limit); break;
    case 5: {
        stopper *child = stopper_new_child(w->s);
        w->result = stopper_wait(child, limit);
        stopper_release(child);
        break;
    }
    }
    return NULL;
}

TEST_T(race_stop_vs_wait_no_lost_wakeup, 60) {
    int iters = ITERS(6000);
    int p[2];
    REQUIRE(pipe(p) == 0);
    stopper_chan *c = stopper_chan_new(0);
    REQUIRE(c);
    uint32_t rng = 7;
    int bad[6] = {0};
    int waited_first = 0;
    int64_t slowest = 0;
    for (int it = 0; it < iters; it++) {
        stopper *s = stopper_new();
        REQUIRE(s);
        gate g = {0, 2};
        race_waiter w = {s, c, p[0], it % 6, rng_next(&rng) % 20000, &g, -100, 0};
        pthread_t t = start_thread(race_waiter_main, &w);
        gate_pass(&g);
        spin_ns(rng_next(&rng) % 40000);
        int64_t t0 = now_ns();
        stopper_stop(s, 0);
        join_thread(t);
        int64_t el = now_ns() - t0;
        if (el > slowest) slowest = el;
        waited_first += w.started < t0;
        if (w.result != STOPPER_STOPPED || el > SLOW_NS(MS(2000))) bad[w.kind]++;
        stopper_release(s);
    }
    for (int k = 0; k < 6; k++)
        if (bad[k]) h_fail(__FILE__, __LINE__, "wait kind %d: %d lost or wrong wake-ups", k, bad[k]);
    h_note("%d iterations (the wait began first in %d), slowest stop-to-return %.2f ms", iters,
           waited_first, slowest / 1e6);
    stopper_chan_release(c);
    close(p[0]);
    close(p[1]);
}

/* Many waiters on one stopper, stopped while they arrive. */
typedef struct many_arg {
    stopper *s;
    uint32_t delay;
    int32_t result;
} many_arg;

static void *many_main(void *p) {
    many_arg *a = p;
    spin(a->delay);
    a->result = stopper_wait(a->s, SLOW_NS(MS(5000)));
    return NULL;
}

TEST_T(race_stop_vs_many_waiters, 60) {
    int iters = ITERS(600);
    uint32_t rng = 99;
    int bad = 0;
    for (int it = 0; it < iters; it++) {
        stopper *s = stopper_new();
        REQUIRE(s);
        enum { N = 6 };
        many_arg a[N];
        pthread_t t[N];
        for (int i = 0; i < N; i++) {
            a[i] = (many_arg){s, rng_next(&rng) % 5000, -100};
            t[i] = start_thread(many_main, &a[i]);
        }
        spin(rng_next(&rng) % 5000);
        stopper_stop(s, 0);
        for (int i = 0; i < N; i++) {
            join_thread(t[i]);
            if (a[i].result != STOPPER_STOPPED) bad++;
        }
        stopper_release(s);
    }
    CHECK_EQ(bad, 0);
}

/* ---- concurrent stops: exactly one winner, its reason everywhere */

typedef struct stopper_race {
    stopper *s;
    int32_t reason;
    uint32_t delay;
    atomic_int *go;
    int32_t result;
} stopper_race;

static void *stop_racer(void *p) {
    stopper_race *r = p;
    while (!atomic_load(r->go)) sched_yield();
    spin(r->delay);
    r->result = stopper_stop(r->s, r->reason);
    return NULL;
}

typedef struct reason_cb {
    atomic_int calls;
    int32_t reason;
} reason_cb;

static void reason_record(void *d, int32_t r) {
    reason_cb *c = d;
    c->reason = r;
    atomic_fetch_add(&c->calls, 1);
}

TEST_T(race_concurrent_stops_exactly_one_winner, 60) {
    int iters = ITERS(3000);
    uint32_t rng = 3;
    int no_winner = 0, many = 0, wrong_reason = 0, cb_wrong = 0;
    for (int it = 0; it < iters; it++) {
        stopper *s = stopper_new();
        REQUIRE(s);
        stopper *child = stopper_new_child(s);
        reason_cb cb = {0, 0}, ccb = {0, 0};
        uint64_t id;
        stopper_on_stop(s, reason_record, &cb, &id);
        stopper_on_stop(child, reason_record, &ccb, &id);
        enum { N = 4 };
        atomic_int go = 0;
        stopper_race r[N];
        pthread_t t[N];
        for (int i = 0; i < N; i++) {
            r[i] = (stopper_race){s, 100 + i, rng_next(&rng) % 500, &go, -100};
            t[i] = start_thread(stop_racer, &r[i]);
        }
        atomic_store(&go, 1);
        int winners = 0;
        int32_t winner_reason = 0;
        for (int i = 0; i < N; i++) {
            join_thread(t[i]);
            if (r[i].result == 1) {
                winners++;
                winner_reason = r[i].reason;
            } else if (r[i].result != 0) {
                many++;
            }
        }
        if (winners == 0) no_winner++;
        if (winners > 1) many++;
        if (stopper_reason(s) != winner_reason || stopper_reason(child) != winner_reason) wrong_reason++;
        if (atomic_load(&cb.calls) != 1 || cb.reason != winner_reason) cb_wrong++;
        if (atomic_load(&ccb.calls) != 1 || ccb.reason != winner_reason) cb_wrong++;
        stopper_release(child);
        stopper_release(s);
    }
    CHECK_EQ(no_winner, 0);
    CHECK_EQ(many, 0);
    CHECK_EQ(wrong_reason, 0);
    CHECK_EQ(cb_wrong, 0);
}

/* A deadline racing a stop: one winner, reasons consistent. */
TEST_T(race_deadline_vs_stop, 60) {
    int iters = ITERS(2000);
    uint32_t rng = 5;
    int bad = 0, stop_wins = 0;
    for (int it = 0; it < iters; it++) {
        stopper *s = stopper_new();
        REQUIRE(s);
        reason_cb cb = {0, 0};
        uint64_t id;
        stopper_on_stop(s, reason_record, &cb, &id);
        CHECK_ST(stopper_stop_after(s, US(rng_next(&rng) % 100), 222), STOPPER_OK);
        spin_ns(US(rng_next(&rng) % 300));
        int32_t won = stopper_stop(s, 111);
        if (stopper_wait(s, SLOW_NS(MS(5000))) != STOPPER_STOPPED) bad++;
        int32_t want = won == 1 ? 111 : 222;
        stop_wins += won == 1;
        if (stopper_reason(s) != want) bad++;
        /* the callback runs on whichever thread won; wait for the service thread's run */
        if (!WAIT_UNTIL(atomic_load(&cb.calls) == 1, MS(2000)) || cb.reason != want) bad++;
        stopper_release(s);
    }
    CHECK_EQ(bad, 0);
    h_note("%d iterations: the explicit stop won %d times, the deadline %d times", iters, stop_wins, iters - stop_wins);
}

/* ---- stop vs on_stop: each callback exactly once, or refused with STOPPED and run inline */

typedef struct reg_cb {
    atomic_int calls;
    uint64_t thread;
} reg_cb;

static void reg_record(void *d, int32_t r) {
    (void)r;
    reg_cb *c = d;
    c->thread = self_id();
    atomic_fetch_add(&c->calls, 1);
}

enum { REGS = 6 };

typedef struct registrar {
    stopper *s;
    gate g;
    uint32_t delay;
    reg_cb cbs[REGS];
    int32_t st[REGS];
    uint64_t id[REGS];
    uint64_t self;
} registrar;

static void *registrar_main(void *p) {
    registrar *r = p;
    r->self = self_id();
    gate_pass(&r->g);
    spin(r->delay);
    for (int i = 0; i < REGS; i++) r->st[i] = stopper_on_stop(r->s, reg_record, &r->cbs[i], &r->id[i]);
    return NULL;
}

TEST_T(race_stop_vs_on_stop_exactly_once, 60) {
    int iters = ITERS(4000);
    uint32_t rng = 11;
    int bad = 0, inline_runs = 0, stop_runs = 0;
    for (int it = 0; it < iters; it++) {
        stopper *s = stopper_new();
        REQUIRE(s);
        registrar *r = calloc(1, sizeof *r);
        REQUIRE(r);
        r->s = s;
        r->g.parties = 2;
        r->delay = rng_next(&rng) % 3000;
        pthread_t t = start_thread(registrar_main, r);
        gate_pass(&r->g);
        spin(rng_next(&rng) % 3000);
        uint64_t me = self_id();
        stopper_stop(s, 0);
        join_thread(t);
        bool seen_stopped = false;
        for (int i = 0; i < REGS; i++) {
            if (atomic_load(&r->cbs[i].calls) != 1) bad++;
            if (r->st[i] == STOPPER_OK) {
                if (seen_stopped) bad++; /* once refused, never accepted again */
                if (r->id[i] == 0 || r->cbs[i].thread != me) bad++;
                stop_runs++;
            } else if (r->st[i] == STOPPER_STOPPED) {
                seen_stopped = true;
                if (r->id[i] != 0 || r->cbs[i].thread != r->self) bad++;
                inline_runs++;
            } else {
                bad++;
            }
        }
        free(r);
        stopper_release(s);
    }
    CHECK_EQ(bad, 0);
    h_note("%d callbacks ran in stop, %d inline (refused with STOPPED)", stop_runs, inline_runs);
    CHECK(stop_runs > 0);
}

/* ---- stop vs unregister */

typedef struct unreg_cb {
    atomic_int calls;
    atomic_int done;
} unreg_cb;

static void unreg_body(void *d, int32_t r) {
    (void)r;
    unreg_cb *c = d;
    atomic_fetch_add(&c->calls, 1);
    spin(2000);
    atomic_store(&c->done, 1);
}

typedef struct unregistrar {
    stopper *s;
    gate *g;
    uint64_t id;
    uint32_t delay;
    unreg_cb *cb;
    int32_t st;
    bool done_when_returned;
} unregistrar;

static void *unregistrar_main(void *p) {
    unregistrar *u = p;
    gate_pass(u->g);
    spin(u->delay);
    u->st = stopper_unregister(u->s, u->id);
    u->done_when_returned = atomic_load(&u->cb->done);
    return NULL;
}

TEST_T(race_stop_vs_unregister, 60) {
    int iters = ITERS(4000);
    uint32_t rng = 13;
    int bad = 0, removed = 0, ran = 0;
    for (int it = 0; it < iters; it++) {
        stopper *s = stopper_new();
        REQUIRE(s);
        unreg_cb *cb = calloc(1, sizeof *cb);
        REQUIRE(cb);
        uint64_t id;
        CHECK_ST(stopper_on_stop(s, unreg_body, cb, &id), STOPPER_OK);
        gate g = {0, 2};
        unregistrar u = {s, &g, id, rng_next(&rng) % 3000, cb, -100, false};
        pthread_t t = start_thread(unregistrar_main, &u);
        gate_pass(&g);
        spin(rng_next(&rng) % 3000);
        stopper_stop(s, 0);
        join_thread(t);
        if (u.st == STOPPER_OK) {
            removed++;
            if (atomic_load(&cb->calls) != 0) bad++;
        } else if (u.st == STOPPER_STOPPED) {
            ran++;
            if (atomic_load(&cb->calls) != 1 || !u.done_when_returned) bad++;
        } else {
            bad++;
        }
        free(cb); /* safe once unregister returned */
        stopper_release(s);
    }
    CHECK_EQ(bad, 0);
    h_note("removed before running %d times, ran first %d times", removed, ran);
}

/* ---- stop vs enter/exit vs join */

typedef struct ej_worker {
    stopper *s;
    atomic_int *inside_ok;  /* threads between an OK enter and their exit */
    atomic_int *hook_after_exit;
    atomic_int *hook_for_stopped_entry;
    atomic_int hook_calls;
    atomic_int state;       /* 0 outside, 1 entering/inside */
    uint32_t seed;
    int enters;
    gate *g;
} ej_worker;

static void ej_hook(void *data, uint64_t tid, int32_t reason) {
    (void)tid;
    (void)reason;
    ej_worker *w = data;
    if (atomic_load(&w->state) == 0) atomic_fetch_add(w->hook_after_exit, 1);
    atomic_fetch_add(&w->hook_calls, 1);
}

static void *ej_main(void *p) {
    ej_worker *w = p;
    stopper_hook h = {ej_hook, w, 0};
    gate_pass(w->g);
    for (int i = 0; i < 300; i++) {
        int before = atomic_load(&w->hook_calls);
        atomic_store(&w->state, 1);
        int32_t st = stopper_enter(w->s, &h);
        w->enters++;
        if (st == STOPPER_OK) {
            atomic_fetch_add(w->inside_ok, 1);
            spin(rng_next(&w->seed) % 500);
            atomic_fetch_sub(w->inside_ok, 1);
            stopper_exit(w->s);
            atomic_store(&w->state, 0);
        } else {
            stopper_exit(w->s);
            atomic_store(&w->state, 0);
            if (atomic_load(&w->hook_calls) != before) atomic_fetch_add(w->hook_for_stopped_entry, 1);
            break;
        }
    }
    return NULL;
}

TEST_T(race_stop_vs_enter_exit_vs_join, 60) {
    int iters = ITERS(1000);
    uint32_t rng = 17;
    int bad_inside = 0, bad_status = 0, total_enters = 0;
    atomic_int hook_after_exit = 0, hook_for_stopped = 0;
    for (int it = 0; it < iters; it++) {
        stopper *s = stopper_new();
        REQUIRE(s);
        atomic_int inside_ok = 0;
        enum { N = 3 };
        ej_worker w[N];
        pthread_t t[N];
        gate g = {0, N + 1};
        for (int i = 0; i < N; i++) {
            w[i] = (ej_worker){s, &inside_ok, &hook_after_exit, &hook_for_stopped, 0, 0, rng_next(&rng) | 1, 0, &g};
            t[i] = start_thread(ej_main, &w[i]);
        }
        gate_pass(&g);
        spin_ns(rng_next(&rng) % 30000);
        int32_t st = stopper_join(s, SLOW_NS(MS(5000)));
        if (st != STOPPER_OK) bad_status++;
        if (atomic_load(&inside_ok) != 0) bad_inside++;
        for (int i = 0; i < N; i++) {
            join_thread(t[i]);
            total_enters += w[i].enters;
        }
        CHECK_ST(stopper_join(s, 0), STOPPER_OK);
        stopper_release(s);
    }
    CHECK_EQ(bad_status, 0);
    CHECK_EQ(bad_inside, 0);
    h_note("%d joins; the workers entered %d times in all", iters, total_enters);
    CHECK_EQ(atomic_load(&hook_after_exit), 0);
    CHECK_EQ(atomic_load(&hook_for_stopped), 0);
}

/* ---- children created, released and stopped concurrently with their parent */

typedef struct child_maker {
    stopper *p;
    uint32_t delay;
    int bad;
    gate *g;
} child_maker;

static void *child_maker_main(void *arg) {
    child_maker *m = arg;
    gate_pass(m->g);
    spin(m->delay);
    stopper *kept[16];
    for (int i = 0; i < 16; i++) {
        kept[i] = stopper_new_child(m->p);
        stopper *gone = stopper_new_child(m->p);
        stopper_release(gone);
    }
    for (int i = 0; i < 16; i++) {
        if (!kept[i]) { m->bad++; continue; }
        /* the parent is stopped by now, so every child must be too, with its reason */
        if (stopper_wait(kept[i], SLOW_NS(MS(5000))) != STOPPER_STOPPED || stopper_reason(kept[i]) != 64) m->bad++;
    }
    for (int i = 0; i < 16; i++) stopper_release(kept[i]);
    return NULL;
}

TEST_T(race_child_creation_vs_parent_stop, 60) {
    int iters = ITERS(2000);
    uint32_t rng = 19;
    int bad = 0;
    for (int it = 0; it < iters; it++) {
        stopper *p = stopper_new();
        REQUIRE(p);
        gate g = {0, 3};
        child_maker m[2] = {{p, rng_next(&rng) % 3000, 0, &g}, {p, rng_next(&rng) % 3000, 0, &g}};
        pthread_t t0 = start_thread(child_maker_main, &m[0]);
        pthread_t t1 = start_thread(child_maker_main, &m[1]);
        gate_pass(&g);
        spin(rng_next(&rng) % 6000);
        stopper_stop(p, 64);
        join_thread(t0);
        join_thread(t1);
        bad += m[0].bad + m[1].bad;
        stopper_release(p);
    }
    CHECK_EQ(bad, 0);
}

/* ---- callback ids are unique across threads */

typedef struct id_taker {
    stopper *s;
    uint64_t ids[2000];
    int n;
} id_taker;

static void nop(void *d, int32_t r) { (void)d; (void)r; }

static void *id_taker_main(void *p) {
    id_taker *t = p;
    for (int i = 0; i < t->n; i++) {
        uint64_t id = 0;
        if (stopper_on_stop(t->s, nop, NULL, &id) != STOPPER_OK) id = 0;
        t->ids[i] = id;
        if (i % 3 == 0) stopper_unregister(t->s, id);
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

TEST(race_concurrent_registration_ids_unique) {
    stopper *s = stopper_new();
    REQUIRE(s);
    enum { N = 4 };
    id_taker *t = calloc(N, sizeof *t);
    REQUIRE(t);
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        t[i].s = s;
        t[i].n = 2000;
        th[i] = start_thread(id_taker_main, &t[i]);
    }
    for (int i = 0; i < N; i++) join_thread(th[i]);
    uint64_t *all = malloc(sizeof(uint64_t) * N * 2000);
    REQUIRE(all);
    for (int i = 0; i < N; i++) memcpy(all + i * 2000, t[i].ids, sizeof t[i].ids);
    qsort(all, N * 2000, sizeof *all, cmp_u64);
    int zero = 0, dup = 0;
    for (int i = 0; i < N * 2000; i++) {
        if (all[i] == 0) zero++;
        if (i && all[i] == all[i - 1]) dup++;
    }
    CHECK_EQ(zero, 0);
    CHECK_EQ(dup, 0);
    free(all);
    free(t);
    stopper_release(s);
}
