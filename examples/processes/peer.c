/* One stop shared by a C process and a Python process (examples/processes).
 *
 *   peer wait NAME      opens the shared stopper NAME, prints "ready", waits on it (at most
 *                       30 s), then prints how long the stop took to reach it. The time of the
 *                       stop comes on stdin (one line: the stopping process's CLOCK_MONOTONIC,
 *                       in ns, read just before its stop call); without it, only the reason is
 *                       printed. Exits 0 when it was stopped, 1 on time-out or error.
 *   peer stop NAME REASON [DELAY_MS]
 *                       opens NAME, sleeps DELAY_MS (default 100: the other side is then surely
 *                       blocked in its wait), prints "stopping at <ns>" and stops it with REASON.
 *                       Exits 0.
 *
 * CLOCK_MONOTONIC is one clock for the whole machine, so times taken in two processes
 * compare (Python's time.monotonic_ns() reads it too).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stopper.h"

#define WAIT_LIMIT_NS (30LL * 1000000000LL) /* a hang becomes a failure, never a stuck demo */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(long ms) {
    struct timespec ts = {(time_t)(ms / 1000), (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int usage(void) {
    fprintf(stderr, "usage: peer wait NAME | peer stop NAME REASON [DELAY_MS]\n");
    return 2;
}

static stopper *open_or_die(const char *name) {
    stopper *s = stopper_open_shared(name);
    if (s == NULL) {
        int e = errno;
        fprintf(stderr, "peer: stopper_open_shared(\"%s\"): %s%s\n", name, strerror(e),
                e == EINVAL ? " (a bad name, or an object that is not a valid stopper)" : "");
        exit(1);
    }
    return s;
}

/* The stop time sent on stdin, or -1 when none comes within 5 s. */
static int64_t read_stop_time(void) {
    struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1) return -1;
    char line[64];
    if (fgets(line, sizeof line, stdin) == NULL) return -1;
    char *end;
    long long t = strtoll(line, &end, 10);
    return end == line ? -1 : (int64_t)t;
}

static int do_wait(const char *name) {
    stopper *s = open_or_die(name);
    printf("ready\n");
    fflush(stdout);
    int32_t st = stopper_wait(s, WAIT_LIMIT_NS);
    int64_t woke = now_ns();
    if (st != STOPPER_STOPPED) {
        printf("not stopped: %s\n", stopper_strerror(st));
        stopper_release(s);
        return 1;
    }
    int32_t reason = stopper_reason(s);
    int64_t t0 = read_stop_time();
    if (t0 > 0)
        printf("C woke: reason %" PRId32 ", %.1f us after the stop call\n", reason, (double)(woke - t0) / 1e3);
    else
        printf("C woke: reason %" PRId32 " (stop time unknown)\n", reason);
    stopper_release(s);
    return 0;
}

static int do_stop(const char *name, const char *reason_arg, const char *delay_arg) {
    char *end;
    long reason = strtol(reason_arg, &end, 10);
    if (*end != '\0' || reason == 0) return usage();
    long delay = 100;
    if (delay_arg != NULL) {
        delay = strtol(delay_arg, &end, 10);
        if (*end != '\0' || delay < 0) return usage();
    }
    stopper *s = open_or_die(name);
    sleep_ms(delay);
    printf("stopping at %" PRId64 "\n", now_ns());
    fflush(stdout);
    int32_t won = stopper_stop(s, (int32_t)reason);
    fprintf(stderr, "%s", won == 1 ? "" : "peer: it was already stopped\n");
    stopper_release(s);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "wait") == 0) return do_wait(argv[2]);
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "stop") == 0)
        return do_stop(argv[2], argv[3], argc == 5 ? argv[4] : NULL);
    return usage();
}
