/* SPEC.md: "Time, file descriptors, service thread": stopper_fd and stopper_wait_fd. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <unistd.h>

static bool readable(int fd, int timeout_ms) {
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

TEST(fd_is_readable_from_the_stop_on_for_good) {
    stopper *s = stopper_new();
    REQUIRE(s);
    int fd = stopper_fd(s);
    REQUIRE(fd >= 0);
    CHECK_EQ(stopper_fd(s), fd); /* created once, the same descriptor every time */
    CHECK(!readable(fd, 0));
    CHECK(!readable(fd, 30));
    int flags = fcntl(fd, F_GETFD);
    CHECK(flags >= 0 && (flags & FD_CLOEXEC));
    stopper_stop(s, 0);
    CHECK(readable(fd, 0));
    /* it stays readable: polling does not consume it, nor does time */
    for (int i = 0; i < 5; i++) CHECK(readable(fd, 0));
    sleep_ns(MS(20));
    CHECK(readable(fd, 0));
    /* select and epoll see it too */
    fd_set set;
    FD_ZERO(&set);
    FD_SET(fd, &set);
    struct timeval tv = {0, 0};
    CHECK_EQ(select(fd + 1, &set, NULL, NULL, &tv), 1);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    REQUIRE(ep >= 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 7};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0);
    struct epoll_event out;
    CHECK_EQ(epoll_wait(ep, &out, 1, 1000), 1);
    CHECK_EQ(epoll_wait(ep, &out, 1, 0), 1); /* level-triggered, still readable */
    close(ep);
    stopper_release(s);
}

TEST(fd_wakes_a_poller_on_stop) {
    stopper *s = stopper_new();
    REQUIRE(s);
    int fd = stopper_fd(s);
    REQUIRE(fd >= 0);
    delayed_stop d;
    int64_t t0 = now_ns();
    delayed_stop_start(&d, s, MS(40), 0);
    CHECK(readable(fd, 5000));
    CHECK_MS_BETWEEN(now_ns() - t0, 35, 1000);
    delayed_stop_join(&d);
    stopper_release(s);
}

TEST(fd_of_a_stopped_or_child_stopper) {
    stopper *s = stopper_new();
    REQUIRE(s);
    stopper_stop(s, 0);
    int fd = stopper_fd(s); /* first created after the stop */
    REQUIRE(fd >= 0);
    CHECK(readable(fd, 0));
    stopper_release(s);

    stopper *p = stopper_new();
    REQUIRE(p);
    stopper *c = stopper_new_child(p);
    REQUIRE(c);
    int cfd = stopper_fd(c);
    REQUIRE(cfd >= 0);
    CHECK(!readable(cfd, 0));
    stopper_stop(p, 0); /* the parent's stop reaches the child's descriptor */
    CHECK(readable(cfd, 0));
    stopper_release(c);
    stopper_release(p);

    /* a deadline marks it too */
    s = stopper_new();
    REQUIRE(s);
    fd = stopper_fd(s);
    REQUIRE(fd >= 0);
    CHECK_ST(stopper_stop_after(s, MS(20), 0), STOPPER_OK);
    CHECK(readable(fd, 5000));
    stopper_release(s);
}

TEST(fd_is_closed_with_the_last_reference) {
    int base = fd_count();
    stopper *s = stopper_new();
    REQUIRE(s);
    CHECK_EQ(fd_count(), base); /* created on first use only */
    int fd = stopper_fd(s);
    REQUIRE(fd >= 0);
    CHECK_EQ(fd_count(), base + 1);
    stopper_retain(s);
    stopper_release(s);
    CHECK(fd_is_open(fd)); /* still one reference */
    stopper_release(s);
    CHECK(!fd_is_open(fd));
    CHECK_EQ(fd_count(), base);

    /* many stoppers with descriptors: none leak */
    for (int i = 0; i < 500; i++) {
        stopper *t = stopper_new();
        REQUIRE(t);
        CHECK(stopper_fd(t) >= 0);
        if (i % 2) stopper_stop(t, 0);
        stopper_release(t);
    }
    CHECK_EQ(fd_count(), base);

    /* a worker's reference counts too */
    s = stopper_new();
    REQUIRE(s);
    fd = stopper_fd(s);
    CHECK_ST(stopper_enter(s, NULL), STOPPER_OK);
    stopper_release(s);
    CHECK(fd_is_open(fd));
    CHECK_ST(stopper_exit(s), STOPPER_OK);
    CHECK(!fd_is_open(fd));
}

/* ---- wait_fd */

TEST(wait_fd_data_ready) {
    stopper *s = stopper_new();
    REQUIRE(s);
    int p[2];
    REQUIRE(pipe(p) == 0);
    CHECK(write(p[1], "x", 1) == 1);
    int16_t rev = 0;
    CHECK_ST(stopper_wait_fd(s, p[0], POLLIN, -1, &rev), STOPPER_OK);
    CHECK(rev & POLLIN);
    CHECK_ST(stopper_wait_fd(s, p[0], POLLIN, 0, NULL), STOPPER_OK); /* revents may be NULL */
    /* writable */
    rev = 0;
    CHECK_ST(stopper_wait_fd(s, p[1], POLLOUT, -1, &rev), STOPPER_OK);
    CHECK(rev & POLLOUT);
    /* data arriving later, from another thread */
    char c;
    CHECK(read(p[0], &c, 1) == 1);
    close(p[1]);
    rev = 0;
    CHECK_ST(stopper_wait_fd(s, p[0], POLLIN, MS(5000), &rev), STOPPER_OK); /* hang-up */
    CHECK(rev & (POLLHUP | POLLIN));
    close(p[0]);
    stopper_release(s);
}

typedef struct late_writer {
    int fd;
    int64_t delay;
} late_writer;

static void *late_writer_main(void *p) {
    late_writer *w = p;
    sleep_ns(w->delay);
    if (write(w->fd, "y", 1) != 1) h_fail(__FILE__, __LINE__, "write");
    return NULL;
}

TEST(wait_fd_wakes_on_late_data) {
    stopper *s = stopper_new();
    REQUIRE(s);
    int p[2];
    REQUIRE(pipe(p) == 0);
    late_writer w = {p[1], MS(40)};
    int64_t t0 = now_ns();
    pthread_t t = start_thread(late_writer_main, &w);
    int16_t rev = 0;
    CHECK_ST(stopper_wait_fd(s, p[0], POLLIN, -1, &rev), STOPPER_OK);
    CHECK_MS_BETWEEN(now_ns() - t0, 35, 1000);
    CHECK(rev & POLLIN);
    join_thread(t);
    /* and with the NULL stopper (never stops) */
    char c;
    CHECK(read(p[0], &c, 1) == 1);
    t0 = now_ns();
    t = start_thread(late_writer_main, &w);
    CHECK_ST(stopper_wait_fd(NULL, p[0], POLLIN, -1, &rev), STOPPER_OK);
    CHECK_MS_BETWEEN(now_ns() - t0, 35, 1000);
    join_thread(t);
    close(p[0]);
    close(p[1]);
    stopper_release(s);
}

TEST(wait_fd_stop_wakes_and_wins_over_data) {
    stopper *s = stopper_new();
    REQUIRE(s);
    int p[2];
    REQUIRE(pipe(p) == 0);
    delayed_stop d;
    int64_t t0 = now_ns();
    delayed_stop_start(&d, s, MS(40), 0);
    int16_t rev = 12345;
    CHECK_ST(stopper_wait_fd(s, p[0], POLLIN, -1, &rev), STOPPER_STOPPED);
    CHECK_MS_BETWEEN(now_ns() - t0, 35, 1000);
    delayed_stop_join(&d);
    /* stopped and readable: STOPPED, checked first, every time */
    CHECK(write(p[1], "x", 1) == 1);
    for (int i = 0; i < 20; i++) CHECK_ST(stopper_wait_fd(s, p[0], POLLIN, -1, &rev), STOPPER_STOPPED);
    CHECK_ST(stopper_wait_fd(s, p[1], POLLOUT, 0, &rev), STOPPER_STOPPED);
    close(p[0]);
    close(p[1]);
    stopper_release(s);
}

TEST(wait_fd_times_out) {
    stopper *s = stopper_new();
    REQUIRE(s);
    int p[2];
    REQUIRE(pipe(p) == 0);
    int16_t rev = 4321;
    int64_t t0 = now_ns();
    CHECK_ST(stopper_wait_fd(s, p[0], POLLIN, MS(40), &rev), STOPPER_TIMEDOUT);
    CHECK_MS_BETWEEN(now_ns() - t0, 39, 1000);
    CHECK_EQ(rev, 4321); /* outputs are written only on success */
    CHECK_ST(stopper_wait_fd(s, p[0], POLLIN, 0, &rev), STOPPER_TIMEDOUT);
    t0 = now_ns();
    CHECK_ST(stopper_wait_fd(NULL, p[0], POLLIN, MS(30), &rev), STOPPER_TIMEDOUT);
    CHECK_MS_BETWEEN(now_ns() - t0, 29, 1000);
    /* a sub-millisecond limit is not rounded down to "no wait" forever nor up to a hang */
    t0 = now_ns();
    CHECK_ST(stopper_wait_fd(s, p[0], POLLIN, US(300), &rev), STOPPER_TIMEDOUT);
    CHECK_MS_BETWEEN(now_ns() - t0, 0, 500);
    CHECK_EQ(rev, 4321);
    close(p[0]);
    close(p[1]);
    stopper_release(s);
}

TEST(wait_fd_bad_descriptors_never_hang) {
    stopper *s = stopper_new();
    REQUIRE(s);
    int16_t rev = 99;
    CHECK_ST(stopper_wait_fd(s, -1, POLLIN, -1, &rev), STOPPER_EINVAL);
    CHECK_ST(stopper_wait_fd(s, -42, POLLIN, MS(10), &rev), STOPPER_EINVAL);
    CHECK_ST(stopper_wait_fd(NULL, -1, POLLIN, -1, &rev), STOPPER_EINVAL);
    /* a descriptor that is not open: EINVAL or EOS with errno, at once. (The stopper's own
       descriptor is created first, or it would take the freed number.) */
    REQUIRE(stopper_fd(s) >= 0);
    int closed = dup(0);
    REQUIRE(closed >= 0);
    close(closed);
    int64_t t0 = now_ns();
    errno = 0;
    int32_t st = stopper_wait_fd(s, closed, POLLIN, -1, &rev);
    if (st != STOPPER_EINVAL && st != STOPPER_EOS)
        h_fail(__FILE__, __LINE__, "wait_fd on a closed fd: %s (%d)", st_name(st), st);
    if (st == STOPPER_EOS) CHECK_EQ(errno, EBADF);
    st = stopper_wait_fd(s, 100000, POLLIN, -1, &rev);
    CHECK(st == STOPPER_EINVAL || st == STOPPER_EOS);
    CHECK_MS_BETWEEN(now_ns() - t0, 0, 200);
    CHECK(!stopper_is_set(s));
    stopper_release(s);
}

TEST(wait_fd_on_its_own_stopper_fd) {
    stopper *s = stopper_new();
    REQUIRE(s);
    int fd = stopper_fd(s);
    REQUIRE(fd >= 0);
    stopper *other = stopper_new();
    REQUIRE(other);
    delayed_stop d;
    delayed_stop_start(&d, s, MS(20), 0);
    int16_t rev = 0;
    /* waiting on s's descriptor under another stopper: OK once s stops */
    CHECK_ST(stopper_wait_fd(other, fd, POLLIN, MS(5000), &rev), STOPPER_OK);
    CHECK(rev & POLLIN);
    delayed_stop_join(&d);
    stopper_release(other);
    stopper_release(s);
}

TEST(fd_creation_failure_is_eos_with_errno) {
    stopper *s = stopper_new();
    REQUIRE(s);
    int p[2];
    REQUIRE(pipe(p) == 0);
    struct rlimit old;
    REQUIRE(getrlimit(RLIMIT_NOFILE, &old) == 0);
    int highest = p[0] > p[1] ? p[0] : p[1];
    struct rlimit low = {(rlim_t)highest + 1, old.rlim_max}; /* no descriptor left to create */
    REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
    errno = 0;
    int fd = stopper_fd(s);
    int err = errno;
    int16_t rev = 77;
    errno = 0;
    int32_t st = stopper_wait_fd(s, p[0], POLLIN, MS(20), &rev);
    int err2 = errno;
    setrlimit(RLIMIT_NOFILE, &old);
    CHECK_ST(fd, STOPPER_EOS);
    CHECK_EQ(err, EMFILE);
    /* wait_fd needs the stopper's descriptor: it reports the failure (or, if it managed
       without one, times out normally); never a crash or a hang */
    CHECK(st == STOPPER_EOS || st == STOPPER_TIMEDOUT);
    if (st == STOPPER_EOS) CHECK_EQ(err2, EMFILE);
    CHECK_EQ(rev, 77);
    /* with descriptors available again, it works */
    fd = stopper_fd(s);
    CHECK(fd >= 0);
    stopper_stop(s, 0);
    CHECK_ST(stopper_wait_fd(s, p[0], POLLIN, -1, NULL), STOPPER_STOPPED);
    close(p[0]);
    close(p[1]);
    stopper_release(s);
}
