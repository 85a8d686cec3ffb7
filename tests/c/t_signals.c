/* SPEC.md: "The interrupt hook": stopper_install_signal, stopper_hook_signal, repeat_ns. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void foreign_handler(int sig) { (void)sig; }

TEST(install_signal_refuses_bad_signals) {
    const int bad[] = {0, -1, -100, NSIG, NSIG + 1, 1000, SIGKILL, SIGSTOP, SIGSEGV, SIGBUS,
                       SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct sigaction before, after;
        bool real = bad[i] > 0 && bad[i] < NSIG;
        if (real) sigaction(bad[i], NULL, &before);
        int32_t st = stopper_install_signal(bad[i]);
        if (st != STOPPER_EINVAL)
            h_fail(__FILE__, __LINE__, "install_signal(%d) returned %s (%d), want EINVAL", bad[i], st_name(st), st);
        if (real) { /* a refused signal keeps its disposition */
            sigaction(bad[i], NULL, &after);
            if (before.sa_handler != after.sa_handler || before.sa_flags != after.sa_flags)
                h_fail(__FILE__, __LINE__, "install_signal(%d) was refused but changed the disposition", bad[i]);
        }
    }
}

TEST(install_signal_installs_a_non_restarting_handler_once) {
    CHECK_ST(stopper_install_signal(SIGUSR1), STOPPER_OK);
    struct sigaction sa;
    REQUIRE(sigaction(SIGUSR1, NULL, &sa) == 0);
    CHECK(sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN);
    CHECK((sa.sa_flags & SA_RESTART) == 0);
    CHECK_ST(stopper_install_signal(SIGUSR1), STOPPER_OK); /* twice is fine */
    struct sigaction sa2;
    REQUIRE(sigaction(SIGUSR1, NULL, &sa2) == 0);
    CHECK((sa.sa_flags & SA_SIGINFO) ? sa2.sa_sigaction == sa.sa_sigaction : sa2.sa_handler == sa.sa_handler);
    /* the handler does nothing: the process survives the signal */
    CHECK(raise(SIGUSR1) == 0);
    CHECK_ST(stopper_install_signal(SIGUSR2), STOPPER_OK);
    CHECK_ST(stopper_install_signal(SIGRTMIN + 3), STOPPER_OK);
    CHECK(raise(SIGRTMIN + 3) == 0);
}

TEST(install_signal_refuses_a_foreign_handler_or_ignore) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = foreign_handler;
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(SIGUSR2, &sa, NULL) == 0);
    CHECK_ST(stopper_install_signal(SIGUSR2), STOPPER_EINVAL);
    struct sigaction now;
    sigaction(SIGUSR2, NULL, &now);
    CHECK(now.sa_handler == foreign_handler); /* untouched */

    sa.sa_handler = SIG_IGN;
    REQUIRE(sigaction(SIGRTMIN + 1, &sa, NULL) == 0);
    CHECK_ST(stopper_install_signal(SIGRTMIN + 1), STOPPER_EINVAL);
    sigaction(SIGRTMIN + 1, NULL, &now);
    CHECK(now.sa_handler == SIG_IGN);

    /* the library's own handler, replaced by the host afterwards: refused from then on */
    CHECK_ST(stopper_install_signal(SIGUSR1), STOPPER_OK);
    sa.sa_handler = foreign_handler;
    REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0);
    CHECK_ST(stopper_install_signal(SIGUSR1), STOPPER_EINVAL);
}

/* ---- a worker blocked in a system call, interrupted through the signal hook */

typedef struct blocked {
    stopper *s;
    int kind;             /* 0 read, 1 nanosleep, 2 poll, 3 accept */
    int fd;
    int64_t repeat_ns;
    atomic_int *gate;     /* when set: wait for it before blocking (the signal races ahead) */
    pid_t tid;
    atomic_int ready;
    long ret;
    int err;
    bool saw_stop;
    _Atomic int64_t returned_at;
    int32_t exit_status;
} blocked;

static void *blocked_main(void *p) {
    blocked *b = p;
    b->tid = gettid_();
    stopper_hook hook = {stopper_hook_signal, (void *)(intptr_t)SIGUSR1, b->repeat_ns};
    if (stopper_enter(b->s, &hook) != STOPPER_OK) h_fail(__FILE__, __LINE__, "enter");
    atomic_store(&b->ready, 1);
    if (b->gate)
        while (!atomic_load(b->gate)) { }
    char c;
    struct timespec ts = {30, 0};
    struct pollfd pfd = {b->fd, POLLIN, 0};
    switch (b->kind) {
    case 0: b->ret = read(b->fd, &c, 1); break;
    case 1: b->ret = nanosleep(&ts, NULL); break;
    case 2: b->ret = poll(&pfd, 1, 30000); break;
    case 3: b->ret = accept(b->fd, NULL, NULL); break;
    }
    b->err = errno;
    b->returned_at = now_ns();
    b->saw_stop = stopper_is_set(stopper_current());
    b->exit_status = stopper_exit(b->s);
    return NULL;
}

static int listening_socket(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 4) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void interrupt_one(int kind) {
    CHECK_ST(stopper_install_signal(SIGUSR1), STOPPER_OK);
    stopper *s = stopper_new();
    REQUIRE(s);
    int p[2] = {-1, -1};
    int fd = -1;
    if (kind == 3) {
        fd = listening_socket();
        REQUIRE(fd >= 0);
    } else {
        REQUIRE(pipe(p) == 0);
        fd = p[0];
    }
    blocked b = {s, kind, fd, 0, NULL, 0, 0, 0, 0, false, 0, -100};
    pthread_t t = start_thread(blocked_main, &b);
    REQUIRE(WAIT_UNTIL(atomic_load(&b.ready), MS(2000)));
    long sysnos[4];
    int n = 0;
    switch (kind) {
    case 0: sysnos[n++] = SYS_read; break;
    case 1:
        sysnos[n++] = SYS_clock_nanosleep;
#ifdef SYS_nanosleep
        sysnos[n++] = SYS_nanosleep;
#endif
        break;
    case 2:
        sysnos[n++] = SYS_ppoll;
#ifdef SYS_poll
        sysnos[n++] = SYS_poll;
#endif
        break;
    case 3:
        sysnos[n++] = SYS_accept4;
#ifdef SYS_accept
        sysnos[n++] = SYS_accept;
#endif
        break;
    }
    CHECK(wait_blocked_in(b.tid, sysnos, n, MS(3000)));
    int64_t t0 = now_ns();
    CHECK_EQ(stopper_stop(s, 0), 1);
    bool woke = WAIT_UNTIL(b.returned_at != 0, MS(2000));
    if (!woke) {
        h_fail(__FILE__, __LINE__, "blocked call (kind %d) was not interrupted by the stop", kind);
        if (kind == 3) shutdown(fd, SHUT_RDWR);
        else if (kind == 0) CHECK(write(p[1], "x", 1) == 1);
        else pthread_kill(t, SIGUSR1);
    }
    join_thread(t);
    if (woke) {
        CHECK_EQ(b.ret, -1);
        CHECK_EQ(b.err, EINTR);
        CHECK(b.saw_stop);
        CHECK_MS_BETWEEN(b.returned_at - t0, 0, 1000);
    }
    CHECK_ST(b.exit_status, STOPPER_OK);
    if (p[0] >= 0) { close(p[0]); close(p[1]); }
    else close(fd);
    stopper_release(s);
}

TEST(signal_hook_interrupts_read_on_a_pipe) { interrupt_one(0); }
TEST(signal_hook_interrupts_nanosleep) { interrupt_one(1); }
TEST(signal_hook_interrupts_poll) { interrupt_one(2); }
TEST(signal_hook_interrupts_accept) { interrupt_one(3); }

/* The first signal arrives before the thread blocks (lost); repeat_ns sends it again. */
TEST(repeated_signal_hook_catches_a_thread_that_blocks_late) {
    CHECK_ST(stopper_install_signal(SIGUSR1), STOPPER_OK);
    for (int round = 0; round < 3; round++) {
        stopper *s = stopper_new();
        REQUIRE(s);
        int p[2];
        REQUIRE(pipe(p) == 0);
        atomic_int gate = 0;
        blocked b = {s, 0, p[0], MS(20), &gate, 0, 0, 0, 0, false, 0, -100};
        pthread_t t = start_thread(blocked_main, &b);
        REQUIRE(WAIT_UNTIL(atomic_load(&b.ready), MS(2000)));
        int64_t t0 = now_ns();
        CHECK_EQ(stopper_stop(s, 0), 1); /* first delivery: the thread is spinning, not blocked */
        sleep_ns(MS(5));
        atomic_store(&gate, 1); /* now it blocks in read() */
        bool woke = WAIT_UNTIL(b.returned_at != 0, MS(2000));
        if (!woke) {
            h_fail(__FILE__, __LINE__, "read() that started after the stop was never interrupted");
            CHECK(write(p[1], "x", 1) == 1);
        }
        join_thread(t);
        if (woke) {
            CHECK_EQ(b.ret, -1);
            CHECK_EQ(b.err, EINTR);
            CHECK(b.saw_stop);
            CHECK_MS_BETWEEN(b.returned_at - t0, 0, 1000);
        }
        close(p[0]);
        close(p[1]);
        stopper_release(s);
    }
}

/* ---- repeated hooks: again until exit, never after */

typedef struct rep_log {
    atomic_int calls;
    atomic_int bad_thread;
    uint64_t worker;
    atomic_int after_exit;   /* calls seen after the worker's exit returned */
    atomic_int exited;
} rep_log;

static void rep_hook(void *data, uint64_t tid, int32_t reason) {
    (void)reason;
    rep_log *l = data;
    if (tid != l->worker) atomic_fetch_add(&l->bad_thread, 1);
    if (atomic_load(&l->exited)) atomic_fetch_add(&l->after_exit, 1);
    atomic_fetch_add(&l->calls, 1);
}

typedef struct rep_worker {
    stopper *s;
    rep_log *log;
    int64_t repeat_ns;
    atomic_int entered;
    atomic_int may_exit;
} rep_worker;

static void *rep_worker_main(void *p) {
    rep_worker *w = p;
    w->log->worker = self_id();
    stopper_hook h = {rep_hook, w->log, w->repeat_ns};
    stopper_enter(w->s, &h);
    atomic_store(&w->entered, 1);
    while (!atomic_load(&w->may_exit)) sleep_ns(US(200));
    stopper_exit(w->s);
    atomic_store(&w->log->exited, 1);
    return NULL;
}

TEST(repeated_hook_is_called_again_until_exit_and_never_after) {
    stopper *s = stopper_new();
    REQUIRE(s);
    rep_log log;
    memset(&log, 0, sizeof log);
    rep_worker w = {s, &log, MS(10), 0, 0};
    pthread_t t = start_thread(rep_worker_main, &w);
    REQUIRE(WAIT_UNTIL(atomic_load(&w.entered), MS(2000)));
    sleep_ns(MS(50));
    CHECK_EQ(atomic_load(&log.calls), 0); /* nothing before the stop */
    CHECK_EQ(stopper_stop(s, 0), 1);
    CHECK(atomic_load(&log.calls) >= 1);  /* the first one, on the stopping thread */
    sleep_ns(MS(200));
    int during = atomic_load(&log.calls);
    if (during < 4) h_fail(__FILE__, __LINE__, "only %d hook calls in 200 ms with repeat_ns = 10 ms", during);
    atomic_store(&w.may_exit, 1);
    join_thread(t);
    int at_exit = atomic_load(&log.calls);
    sleep_ns(MS(150));
    CHECK_EQ(atomic_load(&log.calls), at_exit);
    CHECK_EQ(atomic_load(&log.after_exit), 0);
    CHECK_EQ(atomic_load(&log.bad_thread), 0);
    h_note("%d hook calls in ~200 ms at repeat_ns = 10 ms", during);
    stopper_release(s);
}

TEST_T(repeated_hooks_never_called_after_exit_race, 40) {
    int iters = ITERS(200);
    int after = 0, bad = 0;
    for (int i = 0; i < iters; i++) {
        stopper *s = stopper_new();
        REQUIRE(s);
        rep_log log;
        memset(&log, 0, sizeof log);
        rep_worker w = {s, &log, US(200), 0, 0};
        pthread_t t = start_thread(rep_worker_main, &w);
        while (!atomic_load(&w.entered)) sched_yield();
        stopper_stop(s, 0);
        sleep_ns(US(100 * (i % 10)));
        atomic_store(&w.may_exit, 1);
        join_thread(t);
        sleep_ns(US(500));
        after += atomic_load(&log.after_exit);
        bad += atomic_load(&log.bad_thread);
        stopper_release(s);
    }
    CHECK_EQ(after, 0);
    CHECK_EQ(bad, 0);
}

TEST(repeated_hook_thread_goes_away) {
    CHECK_EQ(task_count(), 1);
    stopper *s = stopper_new();
    REQUIRE(s);
    rep_log log;
    memset(&log, 0, sizeof log);
    rep_worker w = {s, &log, MS(5), 0, 0};
    pthread_t t = start_thread(rep_worker_main, &w);
    REQUIRE(WAIT_UNTIL(atomic_load(&w.entered), MS(2000)));
    stopper_stop(s, 0);
    CHECK(WAIT_UNTIL(atomic_load(&log.calls) >= 3, MS(2000)));
    atomic_store(&w.may_exit, 1);
    join_thread(t);
    stopper_release(s);
    int64_t t0 = now_ns();
    bool idle = WAIT_UNTIL_RAW(task_count() == 1, MS(5000));
    if (!idle) h_fail(__FILE__, __LINE__, "%d threads still alive 5 s after the last repeated hook ended", task_count());
    else h_note("service thread gone %.0f ms after the last hook ended", (now_ns() - t0) / 1e6);
}
