/* bench_timechan: deadlines and the channel, in C.
 *
 *   bench_timechan deadlines [--counts 1,1000,100000] [--probes P] [--burst N]
 *       lateness of a deadline (the time its stop callback ran minus the time it was due) while
 *       N deadlines are pending: P probe deadlines, one at a time, beside N - 1 others due much
 *       later; with the thread count and the resident-memory growth per pending deadline. Each
 *       probe is followed by the floor, the same delay slept by a bare absolute
 *       clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) on a thread with 1 ns timer slack
 *       (PR_SET_TIMERSLACK), and by the same on a thread with the default slack (50 us), so the
 *       three are sampled interleaved in one run. Then a burst: N deadlines due over one second,
 *       all firing, and the lateness of each.
 *   bench_timechan chan [--null] ITEMS PxC:CAP...
 *       channel throughput (items/s), printed as `RESULT PxC:CAP rate` (the format of
 *       crossbeam-ref). Send and receive get a running stopper, or NULL with --null.
 *   bench_timechan chanlat [--samples N] [--poll-ms MS] [--pollers K]
 *       stop-to-return latency of a thread blocked in stopper_chan_recv, interleaved with a
 *       thread blocked in stopper_wait; and the polling recipe (recv with a MS timeout, then look
 *       at a flag), K pollers at spread phases.
 * Results are JSON lines (bench_util.h); run.py prints the tables.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "bench_util.h"

#include <stopper.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/prctl.h>
#include <stdatomic.h>
#include <stdbool.h>

static void die(const char *what)
{
    fprintf(stderr, "bench_timechan: %s\n", what);
    exit(2);
}

/* ------------------------------------------------------------------ deadlines */

typedef struct {
    int64_t due;
    int64_t fired;
    int32_t reason;
} deadline_rec;

static atomic_long g_fired;

static void deadline_cb(void *user_data, int32_t reason)
{
    deadline_rec *r = (deadline_rec *)user_data;
    r->fired = bench_now_ns();
    r->reason = reason;
    atomic_fetch_add_explicit(&g_fired, 1, memory_order_release);
}

/* Arms n deadlines due at start + base + i * spread / n; returns when all fired. */
static void deadline_batch(long n, int64_t base, int64_t spread, int64_t *late, int *threads, int64_t *rss_per)
{
    stopper **ss = calloc((size_t)n, sizeof *ss);
    deadline_rec *recs = calloc((size_t)n, sizeof *recs);
    long i;
    int64_t start, rss0, last_due = 0, limit;
    if (!ss || !recs)
        die("out of memory");
    for (i = 0; i < n; i++) {
        uint64_t id;
        ss[i] = stopper_new();
        if (!ss[i])
            die("stopper_new failed");
        if (stopper_on_stop(ss[i], deadline_cb, &recs[i], &id) != STOPPER_OK)
            die("stopper_on_stop failed");
    }
    atomic_store(&g_fired, 0);
    rss0 = bench_rss_bytes();
    start = bench_now_ns();
    for (i = 0; i < n; i++) {
        int64_t due = start + base + (n > 1 ? spread * i / (n - 1) : 0);
        int64_t now = bench_now_ns();
        recs[i].due = due;
        if (stopper_stop_after(ss[i], due > now ? due - now : 0, STOPPER_REASON_DEADLINE) != STOPPER_OK)
            die("stopper_stop_after failed");
        last_due = due;
    }
    /* everything armed: sample threads and memory while they are pending */
    if (threads)
        *threads = bench_thread_count();
    if (rss_per)
        *rss_per = (bench_rss_bytes() - rss0) / n;
    if (atomic_load(&g_fired) > n / 10 && n > 1)
        fprintf(stderr, "bench_timechan: note: %ld of %ld deadlines fired while arming\n",
                (long)atomic_load(&g_fired), n);
    limit = last_due + 5000000000LL;
    while (atomic_load_explicit(&g_fired, memory_order_acquire) < n) {
        if (bench_now_ns() > limit) {
            fprintf(stderr, "bench_timechan: only %ld of %ld deadlines fired within 5 s of the last one\n",
                    (long)atomic_load(&g_fired), n);
            exit(3);
        }
        bench_sleep_ns(1000000);
    }
    for (i = 0; i < n; i++) {
        if (recs[i].reason != STOPPER_REASON_DEADLINE)
            die("a deadline stopped its stopper with another reason than STOPPER_REASON_DEADLINE");
        if (stopper_reason(ss[i]) != STOPPER_REASON_DEADLINE)
            die("stopper_reason after a deadline is not STOPPER_REASON_DEADLINE");
        late[i] = recs[i].fired - recs[i].due;
        stopper_release(ss[i]);
    }
    free(ss);
    free(recs);
}

/* The floor: a thread blocked in an absolute clock_nanosleep, woken by the kernel's timer; its
 * lateness is the time it runs again minus the time it was due. `slack_ns` > 0 sets the thread's
 * timer slack (PR_SET_TIMERSLACK); 0 keeps the slack it inherited (the default, 50 us). The
 * thread that asks waits on a semaphore meanwhile, as a deadline's owner waits in stopper_wait. */
typedef struct {
    pthread_t th;
    sem_t go, done;
    unsigned long slack_ns;
    int64_t due, woke;
    int quit, failed;
} floor_timer;

static void *floor_loop(void *p)
{
    floor_timer *f = p;
    if (f->slack_ns > 0 && prctl(PR_SET_TIMERSLACK, f->slack_ns, 0, 0, 0) != 0)
        f->failed = 1;
    for (;;) {
        struct timespec ts;
        int rc;
        while (sem_wait(&f->go) != 0) {
        }
        if (f->quit)
            return NULL;
        ts.tv_sec = (time_t)(f->due / 1000000000LL);
        ts.tv_nsec = (long)(f->due % 1000000000LL);
        while ((rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL)) == EINTR) {
        }
        if (rc != 0)
            f->failed = 1;
        f->woke = bench_now_ns();
        sem_post(&f->done);
    }
}

static void floor_start(floor_timer *f, unsigned long slack_ns)
{
    memset(f, 0, sizeof *f);
    f->slack_ns = slack_ns;
    sem_init(&f->go, 0, 0);
    sem_init(&f->done, 0, 0);
    if (pthread_create(&f->th, NULL, floor_loop, f) != 0)
        die("pthread_create failed");
}

/* Sleeps `delay` ns on the floor thread; returns its lateness. */
static int64_t floor_sample(floor_timer *f, int64_t delay)
{
    f->due = bench_now_ns() + delay;
    sem_post(&f->go);
    while (sem_wait(&f->done) != 0) {
    }
    if (f->failed)
        die("the floor's clock_nanosleep or prctl(PR_SET_TIMERSLACK) failed");
    return f->woke - f->due;
}

static void floor_stop(floor_timer *f)
{
    f->quit = 1;
    sem_post(&f->go);
    pthread_join(f->th, NULL);
    sem_destroy(&f->go);
    sem_destroy(&f->done);
}

/* Lateness of probe deadlines (1 to 3 ms each, one at a time) while n - 1 other deadlines are
 * pending (due in 60 s; disarmed afterwards): what a timer heap of that size costs a deadline. */
static void deadline_probes(long n, int probes, int64_t *late, int64_t *floor1, int64_t *floor_def, int *threads,
                            int64_t *rss_per)
{
    floor_timer f1, fdef;
    long nbg = n - 1, i;
    stopper **bg = calloc((size_t)(nbg > 0 ? nbg : 1), sizeof *bg);
    int64_t rss0;
    uint32_t rng = 12345;
    int p;
    if (!bg)
        die("out of memory");
    for (i = 0; i < nbg; i++)
        if (!(bg[i] = stopper_new()))
            die("stopper_new failed");
    rss0 = bench_rss_bytes();
    for (i = 0; i < nbg; i++)
        if (stopper_stop_after(bg[i], 60000000000LL, STOPPER_REASON_DEADLINE) != STOPPER_OK)
            die("stopper_stop_after failed");
    *rss_per = nbg > 0 ? (bench_rss_bytes() - rss0) / nbg : 0;
    for (p = 0; p < probes; p++) {
        deadline_rec rec;
        uint64_t id;
        int64_t delay;
        stopper *s = stopper_new();
        if (!s)
            die("stopper_new failed");
        memset(&rec, 0, sizeof rec);
        if (stopper_on_stop(s, deadline_cb, &rec, &id) != STOPPER_OK)
            die("stopper_on_stop failed");
        atomic_store(&g_fired, 0);
        rng = rng * 1103515245u + 12345u;
        delay = 1000000 + (int64_t)((rng >> 8) % 2000000); /* 1 to 3 ms */
        rec.due = bench_now_ns() + delay;
        if (stopper_stop_after(s, delay, STOPPER_REASON_DEADLINE) != STOPPER_OK)
            die("stopper_stop_after failed");
        if (p == 0) {
            *threads = bench_thread_count(); /* n deadlines pending now */
            floor_start(&f1, 1);             /* the floor's threads are not counted */
            floor_start(&fdef, 0);
        }
        if (stopper_wait(s, 5000000000LL) != STOPPER_STOPPED)
            die("a deadline did not fire within 5 s");
        /* waiters are woken before the callbacks run: wait for ours too */
        while (atomic_load_explicit(&g_fired, memory_order_acquire) == 0) {
            if (bench_now_ns() > rec.due + 5000000000LL)
                die("a deadline's callback did not run within 5 s");
            sched_yield();
        }
        if (rec.reason != STOPPER_REASON_DEADLINE || stopper_reason(s) != STOPPER_REASON_DEADLINE)
            die("a deadline stopped its stopper with another reason than STOPPER_REASON_DEADLINE");
        late[p] = rec.fired - rec.due;
        stopper_release(s);
        /* the floor, with the same delay, right after (the three interleaved) */
        floor1[p] = floor_sample(&f1, delay);
        floor_def[p] = floor_sample(&fdef, delay);
    }
    floor_stop(&f1);
    floor_stop(&fdef);
    for (i = 0; i < nbg; i++) {
        if (stopper_is_set(bg[i]))
            die("a deadline due in 60 s fired early");
        if (stopper_stop_after(bg[i], -1, 0) != STOPPER_OK)
            die("disarming a deadline (negative delay) failed");
        stopper_release(bg[i]);
    }
    free(bg);
}

static int run_deadlines(int argc, char **argv)
{
    long counts[8] = {1, 1000, 100000};
    long burst = 100000;
    int ncounts = 3, probes = 200, i;
    for (i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--counts") && i + 1 < argc) {
            char *p = argv[++i];
            ncounts = 0;
            while (*p && ncounts < 8) {
                counts[ncounts++] = strtol(p, &p, 10);
                if (*p == ',')
                    p++;
            }
        } else if (!strcmp(argv[i], "--probes") && i + 1 < argc) {
            probes = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--burst") && i + 1 < argc) {
            burst = atol(argv[++i]);
        } else {
            die("usage: deadlines [--counts a,b,c] [--probes P] [--burst N]");
        }
    }
    if (probes < 1 || burst < 2)
        die("bad arguments");
    printf("{\"kind\":\"meta\",\"program\":\"bench_timechan deadlines\",\"probes\":%d,\"burst\":%ld}\n",
           probes, burst);
    for (i = 0; i < ncounts; i++) {
        long n = counts[i];
        char id[64];
        int threads = 0;
        int64_t rss_per = 0;
        int64_t *late = calloc((size_t)probes, sizeof *late);
        int64_t *floor1 = calloc((size_t)probes, sizeof *floor1);
        int64_t *floor_def = calloc((size_t)probes, sizeof *floor_def);
        if (n < 1)
            die("bad counts");
        if (!late || !floor1 || !floor_def)
            die("out of memory");
        deadline_probes(n, probes, late, floor1, floor_def, &threads, &rss_per);
        snprintf(id, sizeof id, "deadline_late_%ld", n);
        bench_emit_samples(id, late, (size_t)probes);
        snprintf(id, sizeof id, "deadline_floor_%ld", n);
        bench_emit_samples(id, floor1, (size_t)probes);
        snprintf(id, sizeof id, "deadline_floor_default_%ld", n);
        bench_emit_samples(id, floor_def, (size_t)probes);
        free(floor1);
        free(floor_def);
        snprintf(id, sizeof id, "deadline_threads_%ld", n);
        bench_emit_value(id, "threads", threads);
        if (n > 1) {
            snprintf(id, sizeof id, "deadline_rss_per_%ld", n);
            bench_emit_value(id, "B", (double)rss_per);
        }
        fprintf(stderr, "  deadlines n=%-7ld done\n", n);
        free(late);
    }
    {
        /* a burst: `burst` deadlines due over one second (or 10 us apart), all firing */
        int64_t spread = burst * 10000 < 1000000000 ? burst * 10000 : 1000000000;
        int threads = 0;
        int64_t rss_per = 0;
        int64_t *late = calloc((size_t)burst, sizeof *late);
        if (!late)
            die("out of memory");
        deadline_batch(burst, 50000000 + burst * 1500, spread, late, &threads, &rss_per);
        bench_emit_samples("deadline_burst", late, (size_t)burst);
        bench_emit_value("deadline_burst_n", "", (double)burst);
        bench_emit_value("deadline_burst_spread", "ns", (double)spread);
        free(late);
        fprintf(stderr, "  deadlines burst of %ld done\n", burst);
    }
    return 0;
}

/* ------------------------------------------------------------------ channel throughput */

typedef struct {
    stopper_chan *c;
    const stopper *s;
    pthread_barrier_t *start;
    uint64_t first, count; /* producer: items first .. first+count-1 */
    uint64_t got, sum;     /* consumer results */
    int64_t t_start, t_end; /* each thread's own clock: the main thread may not run in between */
    int failed;
} chan_arg;

static void *producer(void *p)
{
    chan_arg *a = p;
    uint64_t i;
    pthread_barrier_wait(a->start);
    a->t_start = bench_now_ns();
    for (i = 0; i < a->count; i++)
        if (stopper_chan_send(a->c, a->first + i, a->s, -1) != STOPPER_OK) {
            a->failed = 1;
            break;
        }
    a->t_end = bench_now_ns();
    return NULL;
}

static void *consumer(void *p)
{
    chan_arg *a = p;
    uint64_t v;
    int32_t rc;
    pthread_barrier_wait(a->start);
    a->t_start = bench_now_ns();
    while ((rc = stopper_chan_recv(a->c, &v, a->s, -1)) == STOPPER_OK) {
        a->got++;
        a->sum += v;
    }
    a->t_end = bench_now_ns();
    if (rc != STOPPER_CLOSED)
        a->failed = 1;
    return NULL;
}

static double chan_run(uint64_t items, int np, int nc, size_t cap, const stopper *s)
{
    stopper_chan *c = stopper_chan_new(cap);
    pthread_barrier_t start;
    pthread_t th[64];
    chan_arg args[64];
    uint64_t per = items / (uint64_t)np, total = per * (uint64_t)np, got = 0, sum = 0;
    int i, failed = 0;
    int64_t t0 = INT64_MAX, t1 = 0;
    double secs;
    if (!c)
        die("stopper_chan_new failed");
    if (np + nc > 64)
        die("too many threads");
    pthread_barrier_init(&start, NULL, (unsigned)(np + nc + 1));
    memset(args, 0, sizeof args);
    for (i = 0; i < np + nc; i++) {
        args[i].c = c;
        args[i].s = s;
        args[i].start = &start;
        if (i < np) {
            args[i].first = (uint64_t)i * per + 1;
            args[i].count = per;
        }
        if (pthread_create(&th[i], NULL, i < np ? producer : consumer, &args[i]) != 0)
            die("pthread_create failed");
    }
    pthread_barrier_wait(&start);
    for (i = 0; i < np; i++)
        pthread_join(th[i], NULL);
    stopper_chan_close(c);
    for (i = np; i < np + nc; i++)
        pthread_join(th[i], NULL);
    for (i = 0; i < np + nc; i++) {
        if (args[i].t_start < t0)
            t0 = args[i].t_start;
        if (args[i].t_end > t1)
            t1 = args[i].t_end;
    }
    secs = (double)(t1 - t0) / 1e9;
    for (i = 0; i < np + nc; i++) {
        failed |= args[i].failed;
        got += args[i].got;
        sum += args[i].sum;
    }
    pthread_barrier_destroy(&start);
    stopper_chan_release(c);
    if (failed)
        die("a channel send or receive returned an unexpected status");
    if (got != total || sum != total * (total + 1) / 2) {
        fprintf(stderr, "bench_timechan: channel lost or duplicated items: got %llu, expected %llu\n",
                (unsigned long long)got, (unsigned long long)total);
        exit(3);
    }
    return (double)total / secs;
}

static int run_chan(int argc, char **argv)
{
    int i, use_null = 0;
    long long items;
    stopper *s;
    if (argc > 0 && !strcmp(argv[0], "--null")) {
        use_null = 1;
        argc--;
        argv++;
    }
    if (argc < 2 || (items = atoll(argv[0])) <= 0)
        die("usage: chan [--null] ITEMS PxC:CAP...");
    s = stopper_new();
    if (!s)
        die("stopper_new failed");
    for (i = 1; i < argc; i++) {
        int np = 0, nc = 0;
        unsigned long cap = 0;
        if (sscanf(argv[i], "%dx%d:%lu", &np, &nc, &cap) != 3 || np < 1 || nc < 1)
            die("bad config (want PxC:CAP)");
        printf("RESULT %s %.0f\n", argv[i], chan_run((uint64_t)items, np, nc, cap, use_null ? NULL : s));
        fflush(stdout);
    }
    stopper_release(s);
    return 0;
}

/* ------------------------------------------------------------------ stop-to-return latency */

/* One long-lived thread that runs jobs on demand, so no thread creation is timed. */
typedef struct {
    pthread_t th;
    sem_t go, done;
    void (*job)(void *);
    void *arg;
    int quit;
} worker;

static void *worker_loop(void *p)
{
    worker *w = p;
    for (;;) {
        while (sem_wait(&w->go) != 0) {
        }
        if (w->quit)
            return NULL;
        w->job(w->arg);
        sem_post(&w->done);
    }
}

static void worker_run(worker *w, void (*job)(void *), void *arg)
{
    w->job = job;
    w->arg = arg;
    sem_post(&w->go);
}

static void worker_finish(worker *w)
{
    while (sem_wait(&w->done) != 0) {
    }
}

typedef struct {
    stopper *s;
    stopper_chan *c;
    atomic_int armed;
    int32_t rc;
    int64_t t1;
} lat_job;

static void job_recv(void *p)
{
    lat_job *j = p;
    uint64_t item;
    atomic_store_explicit(&j->armed, 1, memory_order_release);
    j->rc = stopper_chan_recv(j->c, &item, j->s, -1);
    j->t1 = bench_now_ns();
}

static void job_wait(void *p)
{
    lat_job *j = p;
    atomic_store_explicit(&j->armed, 1, memory_order_release);
    j->rc = stopper_wait(j->s, -1);
    j->t1 = bench_now_ns();
}

static void settle(lat_job *j)
{
    int64_t limit = bench_now_ns() + 5000000000LL;
    while (!atomic_load_explicit(&j->armed, memory_order_acquire)) {
        if (bench_now_ns() > limit)
            die("waiter thread never started");
        sched_yield();
    }
    bench_sleep_ns(300000);
}

typedef struct {
    pthread_t th;
    stopper_chan *c;
    atomic_int *flag;
    int64_t poll_ns;
    int64_t t1;
    int failed;
} poller;

static void *poll_loop(void *p)
{
    poller *q = p;
    uint64_t item;
    for (;;) {
        int32_t rc = stopper_chan_recv(q->c, &item, NULL, q->poll_ns);
        if (rc != STOPPER_TIMEDOUT) {
            q->failed = 1;
            break;
        }
        if (atomic_load_explicit(q->flag, memory_order_acquire))
            break;
    }
    q->t1 = bench_now_ns();
    return NULL;
}

static int run_chanlat(int argc, char **argv)
{
    int samples = 300, pollers = 8, i;
    int64_t poll_ms = 500;
    int64_t *lr, *lw, *lp, t0;
    worker w;
    poller *ps;
    atomic_int flag;
    for (i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--samples") && i + 1 < argc)
            samples = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--poll-ms") && i + 1 < argc)
            poll_ms = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--pollers") && i + 1 < argc)
            pollers = atoi(argv[++i]);
        else
            die("usage: chanlat [--samples N] [--poll-ms MS] [--pollers K]");
    }
    if (samples < 1 || pollers < 1 || poll_ms < 1)
        die("bad arguments");
    printf("{\"kind\":\"meta\",\"program\":\"bench_timechan chanlat\",\"samples\":%d,\"poll_ms\":%lld}\n",
           samples, (long long)poll_ms);
    lr = calloc((size_t)samples, sizeof *lr);
    lw = calloc((size_t)samples, sizeof *lw);
    lp = calloc((size_t)pollers, sizeof *lp);
    ps = calloc((size_t)pollers, sizeof *ps);
    if (!lr || !lw || !lp || !ps)
        die("out of memory");
    memset(&w, 0, sizeof w);
    sem_init(&w.go, 0, 0);
    sem_init(&w.done, 0, 0);
    if (pthread_create(&w.th, NULL, worker_loop, &w) != 0)
        die("pthread_create failed");
    for (i = 0; i < samples; i++) {
        lat_job j;
        /* a receive blocked on an empty channel */
        memset(&j, 0, sizeof j);
        j.s = stopper_new();
        j.c = stopper_chan_new(16);
        if (!j.s || !j.c)
            die("stopper_new / stopper_chan_new failed");
        worker_run(&w, job_recv, &j);
        settle(&j);
        t0 = bench_now_ns();
        stopper_stop(j.s, 0);
        worker_finish(&w);
        if (j.rc != STOPPER_STOPPED)
            die("a blocked stopper_chan_recv did not return STOPPER_STOPPED on stop");
        lr[i] = j.t1 - t0;
        stopper_chan_release(j.c);
        stopper_release(j.s);
        /* a plain stopper_wait, for the same-run comparison */
        memset(&j, 0, sizeof j);
        j.s = stopper_new();
        if (!j.s)
            die("stopper_new failed");
        worker_run(&w, job_wait, &j);
        settle(&j);
        t0 = bench_now_ns();
        stopper_stop(j.s, 0);
        worker_finish(&w);
        if (j.rc != STOPPER_STOPPED)
            die("stopper_wait did not return STOPPER_STOPPED");
        lw[i] = j.t1 - t0;
        stopper_release(j.s);
    }
    w.quit = 1;
    sem_post(&w.go);
    pthread_join(w.th, NULL);
    bench_emit_samples("chan_recv_stop", lr, (size_t)samples);
    bench_emit_samples("chan_wait_stop", lw, (size_t)samples);
    fprintf(stderr, "  chan recv latency done\n");

    /* the polling recipe: pollers started at phases spread over one poll period */
    atomic_store(&flag, 0);
    for (i = 0; i < pollers; i++) {
        ps[i].c = stopper_chan_new(16);
        ps[i].flag = &flag;
        ps[i].poll_ns = poll_ms * 1000000;
        if (!ps[i].c)
            die("stopper_chan_new failed");
        if (pthread_create(&ps[i].th, NULL, poll_loop, &ps[i]) != 0)
            die("pthread_create failed");
        bench_sleep_ns(poll_ms * 1000000 / pollers);
    }
    bench_sleep_ns(poll_ms * 1000000 / (2 * pollers) + 1);
    t0 = bench_now_ns();
    atomic_store_explicit(&flag, 1, memory_order_release);
    for (i = 0; i < pollers; i++) {
        pthread_join(ps[i].th, NULL);
        if (ps[i].failed)
            die("a polling receive returned something other than TIMEDOUT");
        lp[i] = ps[i].t1 - t0;
        stopper_chan_release(ps[i].c);
    }
    bench_emit_samples("chan_poll_recipe", lp, (size_t)pollers);
    fprintf(stderr, "  chan poll recipe done\n");
    free(lr);
    free(lw);
    free(lp);
    free(ps);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "deadlines"))
        return run_deadlines(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "chan"))
        return run_chan(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "chanlat"))
        return run_chanlat(argc - 2, argv + 2);
    fprintf(stderr, "usage: bench_timechan deadlines|chan|chanlat ...\n");
    return 2;
}
