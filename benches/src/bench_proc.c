/* bench_proc: shared stoppers across processes, in C.
 *
 *   bench_proc [--samples N] [--rounds R] [--scale F]
 *
 * Wake-up latency, sampled one at a time, the four kinds interleaved:
 *   proc_wake_shared    a child process blocked in stopper_wait on a shared stopper; this process
 *                       stops it. CLOCK_MONOTONIC (system-wide) just before stopper_stop here to
 *                       just after the wait returns there.
 *   proc_wake_local     the in-process reference: a thread of this process blocked in stopper_wait
 *                       on a plain stopper (what bench_core's wake-up row measures).
 *   proc_wake_shared_thread  a thread of this process blocked on a shared stopper (info).
 *   proc_wake_futex     the floor: a child process blocked in a raw FUTEX_WAIT on a word of a
 *                       MAP_SHARED page, woken by FUTEX_WAKE (not private) from here (info).
 * Every sample uses a fresh shared stopper (a stopper stops once), opened by both processes,
 * unlinked after; opening is not timed. Both processes keep one more shared stopper open for the
 * whole run, so their watcher threads live from start to end as in a program that uses shared
 * stoppers (no thread start or exit is timed). After the waiter says it is about to block, this
 * process sleeps 300 us so that it is really asleep in the kernel, then stops.
 *
 * Per-operation pairs (A = shared, B = in-process, interleaved rounds, ns/op), with a child process
 * blocked on the shared stopper meanwhile, as in real use:
 *   proc_is_set         stopper_is_set(shared) vs stopper_is_set(plain)
 *   proc_flag_check     stopper_flag_is_set(stopper_flag(shared)) vs the same on a plain stopper
 * Both sides run the same (non-inlined) loop function, so only the stopper differs.
 *
 * The child is forked before this process starts any thread. Results are JSON lines
 * (bench_util.h); run.py prints the tables.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "bench_util.h"

#include <stopper.h>

#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static void die(const char *what)
{
    fprintf(stderr, "bench_proc: %s\n", what);
    exit(2);
}

/* ------------------------------------------------------------------ parent <-> child protocol */

enum { CMD_SHARED = 1, CMD_FUTEX = 2, CMD_QUIT = 3 };

typedef struct {
    int32_t kind;
    char name[96];
} command;

typedef struct {
    int32_t rc; /* STOPPER_STOPPED, or 1 for the futex */
    int64_t t1;
} result;

static int g_cmd[2], g_ack[2]; /* parent -> child, child -> parent */
static _Atomic uint32_t *g_word; /* in a MAP_SHARED page: the raw futex */

static void write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            die("write to the other process failed");
        p += k;
        n -= (size_t)k;
    }
}

/* reads n bytes; gives up after 10 s (the other side died or hangs) */
static void read_all(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        struct pollfd pf = {fd, POLLIN, 0};
        int r = poll(&pf, 1, 10000);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("the other process did not answer within 10 s");
        ssize_t k = read(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            die("the other process closed its pipe");
        p += k;
        n -= (size_t)k;
    }
}

static long futex(_Atomic uint32_t *w, int op, uint32_t val)
{
    return syscall(SYS_futex, (uint32_t *)w, op, val, NULL, NULL, 0);
}

static void child_loop(const char *anchor_name)
{
    stopper *anchor = stopper_open_shared(anchor_name); /* keeps this process's watcher alive */
    if (!anchor)
        die("child: stopper_open_shared(anchor) failed");
    for (;;) {
        command c;
        result r;
        char armed = 'a';
        read_all(g_cmd[0], &c, sizeof c);
        if (c.kind == CMD_QUIT)
            break;
        if (c.kind == CMD_SHARED) {
            stopper *s = stopper_open_shared(c.name);
            if (!s)
                die("child: stopper_open_shared failed");
            write_all(g_ack[1], &armed, 1);
            r.rc = stopper_wait(s, -1);
            r.t1 = bench_now_ns();
            stopper_release(s);
        } else {
            write_all(g_ack[1], &armed, 1);
            while (atomic_load_explicit(g_word, memory_order_acquire) == 0)
                futex(g_word, FUTEX_WAIT, 0);
            r.t1 = bench_now_ns();
            r.rc = 1;
        }
        write_all(g_ack[1], &r, sizeof r);
    }
    stopper_release(anchor);
}

/* ------------------------------------------------------------------ an in-process waiter thread */

typedef struct {
    pthread_t th;
    sem_t go, done;
    const stopper *s;
    int32_t rc;
    int64_t t1;
    atomic_int armed;
    int quit;
} waiter;

static void *waiter_loop(void *p)
{
    waiter *w = p;
    for (;;) {
        while (sem_wait(&w->go) != 0) {
        }
        if (w->quit)
            return NULL;
        atomic_store_explicit(&w->armed, 1, memory_order_release);
        w->rc = stopper_wait(w->s, -1);
        w->t1 = bench_now_ns();
        sem_post(&w->done);
    }
}

/* one in-process sample: a thread blocked on `s`, stopped from here */
static int64_t sample_thread(waiter *w, stopper *s)
{
    int64_t limit = bench_now_ns() + 5000000000LL, t0;
    w->s = s;
    atomic_store(&w->armed, 0);
    sem_post(&w->go);
    while (!atomic_load_explicit(&w->armed, memory_order_acquire)) {
        if (bench_now_ns() > limit)
            die("the waiter thread never started");
        sched_yield();
    }
    bench_sleep_ns(300000);
    t0 = bench_now_ns();
    stopper_stop(s, 0);
    while (sem_wait(&w->done) != 0) {
    }
    if (w->rc != STOPPER_STOPPED)
        die("an in-process stopper_wait did not return STOPPER_STOPPED");
    return w->t1 - t0;
}

/* ------------------------------------------------------------------ per-operation loops */

__attribute__((noinline)) static long loop_is_set(const stopper *s, long n)
{
    long c = 0;
    for (long i = 0; i < n; i++)
        c += stopper_is_set(s);
    return c;
}

__attribute__((noinline)) static long loop_flag(const uint8_t *flag, long n)
{
    long c = 0;
    for (long i = 0; i < n; i++)
        if (stopper_flag_is_set(flag))
            c++;
    return c;
}

static volatile long g_sink;

static void run_pairs(stopper *shared, stopper *plain, int rounds, double scale)
{
    long n_is = (long)(2e7 * scale), n_flag = (long)(5e7 * scale);
    double *a = calloc((size_t)rounds, sizeof *a), *b = calloc((size_t)rounds, sizeof *b);
    const uint8_t *fs = stopper_flag(shared), *fp = stopper_flag(plain);
    if (n_is < 1)
        n_is = 1;
    if (n_flag < 1)
        n_flag = 1;
    if (!a || !b)
        die("out of memory");
    g_sink = loop_is_set(shared, n_is / 10 + 1) + loop_is_set(plain, n_is / 10 + 1);
    for (int r = 0; r < rounds; r++) {
        int64_t t0 = bench_now_ns();
        g_sink = loop_is_set(shared, n_is);
        int64_t t1 = bench_now_ns();
        g_sink = loop_is_set(plain, n_is);
        int64_t t2 = bench_now_ns();
        a[r] = (double)(t1 - t0) / (double)n_is;
        b[r] = (double)(t2 - t1) / (double)n_is;
    }
    bench_emit_pair("proc_is_set", a, b, (size_t)rounds);
    g_sink = loop_flag(fs, n_flag / 10 + 1) + loop_flag(fp, n_flag / 10 + 1);
    for (int r = 0; r < rounds; r++) {
        int64_t t0 = bench_now_ns();
        g_sink = loop_flag(fs, n_flag);
        int64_t t1 = bench_now_ns();
        g_sink = loop_flag(fp, n_flag);
        int64_t t2 = bench_now_ns();
        a[r] = (double)(t1 - t0) / (double)n_flag;
        b[r] = (double)(t2 - t1) / (double)n_flag;
    }
    bench_emit_pair("proc_flag_check", a, b, (size_t)rounds);
    if (g_sink != 0)
        die("a running stopper read as stopped");
    free(a);
    free(b);
    fprintf(stderr, "  proc is_set / flag pairs done\n");
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    int samples = 1000, rounds = 15;
    double scale = 1.0;
    char anchor[96], name[96];
    pid_t child;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--samples") && i + 1 < argc)
            samples = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--scale") && i + 1 < argc)
            scale = atof(argv[++i]);
        else
            die("usage: bench_proc [--samples N] [--rounds R] [--scale F]");
    }
    if (samples < 1 || rounds < 1 || scale <= 0)
        die("bad arguments");
    printf("{\"kind\":\"meta\",\"program\":\"bench_proc\",\"samples\":%d,\"rounds\":%d}\n", samples, rounds);

    g_word = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_word == MAP_FAILED)
        die("mmap failed");
    if (pipe(g_cmd) != 0 || pipe(g_ack) != 0)
        die("pipe failed");
    snprintf(anchor, sizeof anchor, "bench-proc-%d-anchor", (int)getpid());
    stopper_unlink_shared(anchor);
    fflush(stdout);
    child = fork(); /* while this process has one thread */
    if (child < 0)
        die("fork failed");
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        child_loop(anchor);
        _exit(0);
    }
    stopper *anchor_s = stopper_open_shared(anchor);
    if (!anchor_s)
        die("stopper_open_shared(anchor) failed");

    waiter w;
    memset(&w, 0, sizeof w);
    sem_init(&w.go, 0, 0);
    sem_init(&w.done, 0, 0);
    if (pthread_create(&w.th, NULL, waiter_loop, &w) != 0)
        die("pthread_create failed");

    int64_t *ls = calloc((size_t)samples, sizeof *ls), *ll = calloc((size_t)samples, sizeof *ll);
    int64_t *lt = calloc((size_t)samples, sizeof *lt), *lf = calloc((size_t)samples, sizeof *lf);
    if (!ls || !ll || !lt || !lf)
        die("out of memory");
    for (int i = 0; i < samples; i++) {
        command c;
        result r;
        char armed;
        int64_t t0;
        memset(&c, 0, sizeof c);
        /* a child process blocked on a shared stopper */
        snprintf(name, sizeof name, "bench-proc-%d-%d", (int)getpid(), i);
        stopper *s = stopper_open_shared(name);
        if (!s)
            die("stopper_open_shared failed");
        c.kind = CMD_SHARED;
        memcpy(c.name, name, sizeof c.name);
        write_all(g_cmd[1], &c, sizeof c);
        read_all(g_ack[0], &armed, 1);
        bench_sleep_ns(300000);
        t0 = bench_now_ns();
        stopper_stop(s, 0);
        read_all(g_ack[0], &r, sizeof r);
        if (r.rc != STOPPER_STOPPED)
            die("the child's stopper_wait did not return STOPPER_STOPPED");
        ls[i] = r.t1 - t0;
        stopper_release(s);
        stopper_unlink_shared(name);

        /* a thread of this process blocked on a plain stopper */
        s = stopper_new();
        if (!s)
            die("stopper_new failed");
        ll[i] = sample_thread(&w, s);
        stopper_release(s);

        /* a thread of this process blocked on a shared stopper */
        s = stopper_open_shared(name);
        if (!s)
            die("stopper_open_shared failed");
        lt[i] = sample_thread(&w, s);
        stopper_release(s);
        stopper_unlink_shared(name);

        /* a child process blocked in a raw FUTEX_WAIT on a shared page */
        atomic_store(g_word, 0);
        c.kind = CMD_FUTEX;
        write_all(g_cmd[1], &c, sizeof c);
        read_all(g_ack[0], &armed, 1);
        bench_sleep_ns(300000);
        t0 = bench_now_ns();
        atomic_store_explicit(g_word, 1, memory_order_release);
        futex(g_word, FUTEX_WAKE, 1);
        read_all(g_ack[0], &r, sizeof r);
        lf[i] = r.t1 - t0;
    }
    bench_emit_samples("proc_wake_shared", ls, (size_t)samples);
    bench_emit_samples("proc_wake_local", ll, (size_t)samples);
    bench_emit_samples("proc_wake_shared_thread", lt, (size_t)samples);
    bench_emit_samples("proc_wake_futex", lf, (size_t)samples);
    fprintf(stderr, "  proc wake latency done\n");

    /* is_set and the flag on a shared stopper the child is blocked on, vs a plain one */
    {
        command c;
        result r;
        char armed;
        memset(&c, 0, sizeof c);
        snprintf(name, sizeof name, "bench-proc-%d-flag", (int)getpid());
        stopper *shared = stopper_open_shared(name);
        stopper *plain = stopper_new();
        if (!shared || !plain)
            die("stopper_open_shared / stopper_new failed");
        c.kind = CMD_SHARED;
        memcpy(c.name, name, sizeof c.name);
        write_all(g_cmd[1], &c, sizeof c);
        read_all(g_ack[0], &armed, 1);
        run_pairs(shared, plain, rounds, scale);
        stopper_stop(shared, 0);
        read_all(g_ack[0], &r, sizeof r);
        if (r.rc != STOPPER_STOPPED)
            die("the child's stopper_wait did not return STOPPER_STOPPED");
        stopper_release(shared);
        stopper_release(plain);
        stopper_unlink_shared(name);
    }

    {
        command c;
        int status = 0;
        memset(&c, 0, sizeof c);
        c.kind = CMD_QUIT;
        write_all(g_cmd[1], &c, sizeof c);
        if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            die("the child process failed");
    }
    w.quit = 1;
    sem_post(&w.go);
    pthread_join(w.th, NULL);
    stopper_release(anchor_s);
    stopper_unlink_shared(anchor);
    free(ls);
    free(ll);
    free(lt);
    free(lf);
    return 0;
}
