/* SPEC.md: "Channel". */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

TEST(chan_fifo_len_and_refcount) {
    stopper_chan *c = stopper_chan_new(0);
    REQUIRE(c);
    CHECK_EQ(stopper_chan_len(c), 0);
    for (uint64_t i = 0; i < 1000; i++) CHECK_ST(stopper_chan_send(c, i * 3 + 1, NULL, 0), STOPPER_OK);
    CHECK_EQ(stopper_chan_len(c), 1000);
    CHECK(stopper_chan_retain(c) == c);
    stopper_chan_release(c); /* one reference left */
    uint64_t item = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        CHECK_ST(stopper_chan_recv(c, &item, NULL, 0), STOPPER_OK);
        CHECK_EQ(item, i * 3 + 1);
    }
    CHECK_EQ(stopper_chan_len(c), 0);
    /* full 64-bit items pass intact */
    const uint64_t odd[] = {0, UINT64_MAX, 0x8000000000000000ull, 0x0123456789abcdefull};
    for (int i = 0; i < 4; i++) CHECK_ST(stopper_chan_send(c, odd[i], NULL, -1), STOPPER_OK);
    for (int i = 0; i < 4; i++) {
        CHECK_ST(stopper_chan_recv(c, &item, NULL, -1), STOPPER_OK);
        CHECK(item == odd[i]);
    }
    stopper_chan_release(c);
}

TEST(chan_unbounded_never_blocks_send) {
    stopper_chan *c = stopper_chan_new(0);
    REQUIRE(c);
    int64_t t0 = now_ns();
    const int n = ITERS(200000);
    for (int i = 0; i < n; i++)
        if (stopper_chan_send(c, (uint64_t)i, NULL, 0) != STOPPER_OK) {
            h_fail(__FILE__, __LINE__, "send %d refused", i);
            break;
        }
    CHECK_EQ(stopper_chan_len(c), n);
    CHECK_MS_BETWEEN(now_ns() - t0, 0, 5000);
    stopper_chan_release(c); /* released with items inside: freed, no leak */
}

TEST(chan_bounded_capacity_and_timeouts) {
    stopper_chan *c = stopper_chan_new(3);
    REQUIRE(c);
    for (int i = 0; i < 3; i++) CHECK_ST(stopper_chan_send(c, (uint64_t)i, NULL, 0), STOPPER_OK);
    CHECK_ST(stopper_chan_send(c, 9, NULL, 0), STOPPER_TIMEDOUT);
    int64_t t0 = now_ns();
    CHECK_ST(stopper_chan_send(c, 9, NULL, MS(40)), STOPPER_TIMEDOUT);
    CHECK_MS_BETWEEN(now_ns() - t0, 39, 1000);
    CHECK_EQ(stopper_chan_len(c), 3);
    uint64_t item = 99;
    for (int i = 0; i < 3; i++) {
        CHECK_ST(stopper_chan_recv(c, &item, NULL, 0), STOPPER_OK);
        CHECK_EQ(item, i);
    }
    item = 77;
    CHECK_ST(stopper_chan_recv(c, &item, NULL, 0), STOPPER_TIMEDOUT);
    t0 = now_ns();
    CHECK_ST(stopper_chan_recv(c, &item, NULL, MS(40)), STOPPER_TIMEDOUT);
    CHECK_MS_BETWEEN(now_ns() - t0, 39, 1000);
    CHECK_EQ(item, 77); /* written only on success */
    stopper *s = stopper_new();
    REQUIRE(s);
    t0 = now_ns();
    CHECK_ST(stopper_chan_recv(c, &item, s, MS(30)), STOPPER_TIMEDOUT);
    CHECK_MS_BETWEEN(now_ns() - t0, 29, 1000);
    stopper_release(s);
    stopper_chan_release(c);
}

TEST(chan_bad_args) {
    uint64_t item = 5;
    CHECK(stopper_chan_retain(NULL) == NULL);
    CHECK_ST(stopper_chan_send(NULL, 1, NULL, 0), STOPPER_EINVAL);
    CHECK_ST(stopper_chan_send(NULL, 1, NULL, -1), STOPPER_EINVAL);
    CHECK_ST(stopper_chan_recv(NULL, &item, NULL, 0), STOPPER_EINVAL);
    CHECK_ST(stopper_chan_recv(NULL, &item, NULL, -1), STOPPER_EINVAL);
    CHECK_EQ(item, 5);
    CHECK_EQ(stopper_chan_len(NULL), 0);
    stopper_chan_close(NULL);
    stopper_chan_release(NULL);
    stopper_chan *c = stopper_chan_new(0);
    REQUIRE(c);
    CHECK_ST(stopper_chan_send(c, 1, NULL, 0), STOPPER_OK);
    CHECK_ST(stopper_chan_recv(c, NULL, NULL, 0), STOPPER_EINVAL);
    CHECK_ST(stopper_chan_recv(c, NULL, NULL, -1), STOPPER_EINVAL);
    CHECK_EQ(stopper_chan_len(c), 1); /* the refused receive took nothing */
    stopper_chan_release(c);
}

TEST(chan_stop_is_checked_first) {
    stopper_chan *c = stopper_chan_new(4);
    REQUIRE(c);
    stopper *s = stopper_new();
    REQUIRE(s);
    CHECK_ST(stopper_chan_send(c, 1, s, 0), STOPPER_OK);
    stopper_stop(s, 0);
    uint64_t item = 42;
    CHECK_ST(stopper_chan_recv(c, &item, s, -1), STOPPER_STOPPED); /* an item waits, stop wins */
    CHECK_EQ(item, 42);
    CHECK_ST(stopper_chan_send(c, 2, s, -1), STOPPER_STOPPED);     /* room, stop wins */
    CHECK_EQ(stopper_chan_len(c), 1);
    stopper_chan_close(c);
    CHECK_ST(stopper_chan_send(c, 2, s, -1), STOPPER_STOPPED);
    CHECK_ST(stopper_chan_recv(c, &item, s, -1), STOPPER_STOPPED);
    /* without the stopper, the queued item is still there */
    CHECK_ST(stopper_chan_recv(c, &item, NULL, 0), STOPPER_OK);
    CHECK_EQ(item, 1);
    stopper_release(s);
    stopper_chan_release(c);
}

TEST(chan_close_drains_then_closed_never_blocks) {
    stopper_chan *c = stopper_chan_new(2);
    REQUIRE(c);
    CHECK_ST(stopper_chan_send(c, 10, NULL, 0), STOPPER_OK);
    CHECK_ST(stopper_chan_send(c, 11, NULL, 0), STOPPER_OK);
    stopper_chan_close(c);
    stopper_chan_close(c); /* twice is fine */
    int64_t t0 = now_ns();
    CHECK_ST(stopper_chan_send(c, 12, NULL, -1), STOPPER_CLOSED); /* closed and full: no block */
    uint64_t item = 0;
    CHECK_ST(stopper_chan_recv(c, &item, NULL, -1), STOPPER_OK);
    CHECK_EQ(item, 10);
    CHECK_ST(stopper_chan_recv(c, &item, NULL, -1), STOPPER_OK);
    CHECK_EQ(item, 11);
    item = 5;
    CHECK_ST(stopper_chan_recv(c, &item, NULL, -1), STOPPER_CLOSED);
    CHECK_ST(stopper_chan_recv(c, &item, NULL, 0), STOPPER_CLOSED);
    CHECK_EQ(item, 5);
    CHECK_ST(stopper_chan_send(c, 13, NULL, 0), STOPPER_CLOSED);
    CHECK_MS_BETWEEN(now_ns() - t0, 0, 200);
    CHECK_EQ(stopper_chan_len(c), 0);
    stopper_chan_release(c);
}

typedef struct blocked_op {
    stopper_chan *c;
    const stopper *s;
    bool send;
    int32_t result;
    uint64_t item;
    _Atomic int64_t done_at;
} blocked_op;

static void *blocked_op_main(void *p) {
    blocked_op *b = p;
    if (b->send) b->result = stopper_chan_send(b->c, 7, b->s, -1);
    else b->result = stopper_chan_recv(b->c, &b->item, b->s, -1);
    atomic_store(&b->done_at, now_ns());
    return NULL;
}

TEST(chan_stop_wakes_blocked_senders_and_receivers) {
    stopper *s = stopper_new();
    REQUIRE(s);
    stopper_chan *empty = stopper_chan_new(0);
    stopper_chan *full = stopper_chan_new(1);
    REQUIRE(empty && full);
    CHECK_ST(stopper_chan_send(full, 1, NULL, 0), STOPPER_OK);
    enum { N = 6 };
    blocked_op ops[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        ops[i] = (blocked_op){i % 2 ? full : empty, s, i % 2 == 1, -100, 0, 0};
        t[i] = start_thread(blocked_op_main, &ops[i]);
    }
    sleep_ns(MS(50));
    for (int i = 0; i < N; i++) CHECK_EQ(atomic_load(&ops[i].done_at), 0);
    int64_t t0 = now_ns();
    stopper_stop(s, 0);
    for (int i = 0; i < N; i++) {
        join_thread(t[i]);
        CHECK_ST(ops[i].result, STOPPER_STOPPED);
        CHECK_MS_BETWEEN(atomic_load(&ops[i].done_at) - t0, 0, 1000);
    }
    CHECK_EQ(stopper_chan_len(full), 1);
    CHECK_EQ(stopper_chan_len(empty), 0);
    stopper_chan_release(empty);
    stopper_chan_release(full);
    stopper_release(s);
}

TEST(chan_close_wakes_blocked_senders_and_receivers) {
    stopper_chan *empty = stopper_chan_new(0);
    stopper_chan *full = stopper_chan_new(1);
    REQUIRE(empty && full);
    CHECK_ST(stopper_chan_send(full, 1, NULL, 0), STOPPER_OK);
    blocked_op r = {empty, NULL, false, -100, 0, 0};
    blocked_op w = {full, NULL, true, -100, 0, 0};
    pthread_t tr = start_thread(blocked_op_main, &r);
    pthread_t tw = start_thread(blocked_op_main, &w);
    sleep_ns(MS(50));
    CHECK_EQ(atomic_load(&r.done_at), 0);
    CHECK_EQ(atomic_load(&w.done_at), 0);
    stopper_chan_close(empty);
    stopper_chan_close(full);
    join_thread(tr);
    join_thread(tw);
    CHECK_ST(r.result, STOPPER_CLOSED);
    CHECK_ST(w.result, STOPPER_CLOSED);
    stopper_chan_release(empty);
    stopper_chan_release(full);
}

TEST(chan_blocked_receiver_gets_a_later_item) {
    stopper *s = stopper_new();
    REQUIRE(s);
    stopper_chan *c = stopper_chan_new(0);
    REQUIRE(c);
    blocked_op r = {c, s, false, -100, 0, 0};
    pthread_t t = start_thread(blocked_op_main, &r);
    sleep_ns(MS(30));
    CHECK_ST(stopper_chan_send(c, 4242, NULL, 0), STOPPER_OK);
    join_thread(t);
    CHECK_ST(r.result, STOPPER_OK);
    CHECK_EQ(r.item, 4242);
    /* a deadline stops a blocked receive too */
    uint64_t item;
    int64_t t0 = now_ns();
    CHECK_ST(stopper_stop_after(s, MS(30), 0), STOPPER_OK);
    CHECK_ST(stopper_chan_recv(c, &item, s, -1), STOPPER_STOPPED);
    CHECK_MS_BETWEEN(now_ns() - t0, 29, 1000);
    stopper_chan_release(c);
    stopper_release(s);
}

/* ---- MPMC: every item once, per-producer order kept */

enum { PRODUCERS = 4, CONSUMERS = 3 };

typedef struct mpmc {
    stopper_chan *c;
    uint32_t per_producer;
    atomic_uchar *seen; /* PRODUCERS * per_producer */
    atomic_int dup, order, bad, received;
} mpmc;

typedef struct producer_arg {
    mpmc *m;
    uint32_t id;
    int32_t last_status;
} producer_arg;

static void *producer_main(void *p) {
    producer_arg *a = p;
    for (uint32_t i = 0; i < a->m->per_producer; i++) {
        int32_t st = stopper_chan_send(a->m->c, ((uint64_t)a->id << 32) | i, NULL, -1);
        if (st != STOPPER_OK) {
            a->last_status = st;
            return NULL;
        }
    }
    a->last_status = STOPPER_OK;
    return NULL;
}

static void *consumer_main(void *p) {
    mpmc *m = p;
    int64_t last[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) last[i] = -1;
    uint64_t item;
    int32_t st;
    while ((st = stopper_chan_recv(m->c, &item, NULL, -1)) == STOPPER_OK) {
        uint32_t prod = (uint32_t)(item >> 32), seq = (uint32_t)item;
        if (prod >= PRODUCERS || seq >= m->per_producer) {
            atomic_fetch_add(&m->bad, 1);
            continue;
        }
        if ((int64_t)seq <= last[prod]) atomic_fetch_add(&m->order, 1);
        last[prod] = seq;
        if (atomic_exchange(&m->seen[(size_t)prod * m->per_producer + seq], 1)) atomic_fetch_add(&m->dup, 1);
        atomic_fetch_add(&m->received, 1);
    }
    if (st != STOPPER_CLOSED) atomic_fetch_add(&m->bad, 1);
    return NULL;
}

static void run_mpmc(size_t capacity, uint32_t per_producer) {
    mpmc m;
    memset(&m, 0, sizeof m);
    m.c = stopper_chan_new(capacity);
    REQUIRE(m.c);
    m.per_producer = per_producer;
    m.seen = calloc((size_t)PRODUCERS * per_producer, sizeof *m.seen);
    REQUIRE(m.seen);
    producer_arg pa[PRODUCERS];
    pthread_t pt[PRODUCERS], ct[CONSUMERS];
    int64_t t0 = now_ns();
    for (int i = 0; i < CONSUMERS; i++) ct[i] = start_thread(consumer_main, &m);
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        pa[i] = (producer_arg){&m, i, -100};
        pt[i] = start_thread(producer_main, &pa[i]);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        join_thread(pt[i]);
        CHECK_ST(pa[i].last_status, STOPPER_OK);
    }
    stopper_chan_close(m.c); /* consumers drain what is left, then see CLOSED */
    for (int i = 0; i < CONSUMERS; i++) join_thread(ct[i]);
    int64_t el = now_ns() - t0;
    size_t total = (size_t)PRODUCERS * per_producer;
    size_t missing = 0;
    for (size_t i = 0; i < total; i++) missing += !atomic_load(&m.seen[i]);
    CHECK_EQ(missing, 0);
    CHECK_EQ(atomic_load(&m.dup), 0);
    CHECK_EQ(atomic_load(&m.order), 0);
    CHECK_EQ(atomic_load(&m.bad), 0);
    CHECK_EQ(atomic_load(&m.received), total);
    CHECK_EQ(stopper_chan_len(m.c), 0);
    h_note("capacity %zu: %zu items through %d producers / %d consumers in %.0f ms", capacity, total,
           PRODUCERS, CONSUMERS, el / 1e6);
    free(m.seen);
    stopper_chan_release(m.c);
}

TEST_T(chan_mpmc_unbounded, 40) { run_mpmc(0, (uint32_t)ITERS(100000)); }
TEST_T(chan_mpmc_bounded, 40) { run_mpmc(16, (uint32_t)ITERS(50000)); }
TEST_T(chan_mpmc_capacity_one, 40) { run_mpmc(1, (uint32_t)ITERS(5000)); }

/* Consumers stopped mid-stream: each item received at most once, the rest stays queued. */
typedef struct stop_consumer {
    stopper_chan *c;
    stopper *s;
    atomic_int *count;
    int32_t end;
} stop_consumer;

static void *stop_consumer_main(void *p) {
    stop_consumer *a = p;
    uint64_t item;
    int32_t st;
    while ((st = stopper_chan_recv(a->c, &item, a->s, -1)) == STOPPER_OK) atomic_fetch_add(a->count, 1);
    a->end = st;
    return NULL;
}

TEST(chan_stopped_consumers_lose_nothing) {
    stopper_chan *c = stopper_chan_new(0);
    stopper *s = stopper_new();
    REQUIRE(c && s);
    atomic_int count = 0;
    stop_consumer a[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        a[i] = (stop_consumer){c, s, &count, -100};
        t[i] = start_thread(stop_consumer_main, &a[i]);
    }
    const int n = ITERS(100000);
    for (int i = 0; i < n; i++) {
        CHECK_ST(stopper_chan_send(c, (uint64_t)i, NULL, -1), STOPPER_OK);
        if (i == n / 2) stopper_stop(s, 0);
    }
    for (int i = 0; i < 3; i++) {
        join_thread(t[i]);
        CHECK_ST(a[i].end, STOPPER_STOPPED);
    }
    CHECK_EQ((size_t)atomic_load(&count) + stopper_chan_len(c), (size_t)n);
    stopper_chan_release(c);
    stopper_release(s);
}
