/* Recipes 3 and 4 (RECIPES.md) for native code: a worker blocked in read() on a pipe, where no
 * flag is ever checked while it waits.
 *
 *   polling version : "use a timeout on the blocking call and check the flag": poll() the pipe
 *                     with a 1 s timeout, look at an atomic flag, poll again.
 *   stopper version : the worker blocks in a plain read() for as long as it likes. It entered
 *                     its stopper with the signal hook (stopper_install_signal(SIGUSR1) +
 *                     stopper_hook_signal), so the stop sends SIGUSR1 to the thread, read()
 *                     returns EINTR, and the worker sees the stop. repeat_ns re-sends the
 *                     signal every 50 ms in case the first one arrived just before read().
 *
 * usage: blocked_read [--check]
 */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "demo.h"
#include "stopper.h"

#define POLL_TIMEOUT_MS 1000
#define RUN_MS 500

/* ------------------------------------------------------------------ polling version */

typedef struct polling_reader {
    int fd;
    atomic_bool stop;
    long bytes;
} polling_reader;

static void *polling_run(void *arg) {
    polling_reader *r = arg;
    char buf[256];
    while (!atomic_load(&r->stop)) {
        struct pollfd p = {r->fd, POLLIN, 0};
        if (poll(&p, 1, POLL_TIMEOUT_MS) <= 0) continue; /* timeout: look at the flag again */
        ssize_t n = read(r->fd, buf, sizeof buf);
        if (n <= 0) break;
        r->bytes += n;
    }
    return NULL;
}

static double run_polling(void) {
    int p[2];
    if (pipe(p) != 0) exit(2);
    polling_reader r = {.fd = p[0], .bytes = 0};
    atomic_init(&r.stop, false);
    pthread_t t;
    pthread_create(&t, NULL, polling_run, &r);
    sleep_ms(RUN_MS);
    int64_t t0 = now_ns();
    atomic_store(&r.stop, true);
    pthread_join(t, NULL);
    double ms = ms_since(t0);
    close(p[0]);
    close(p[1]);
    return ms;
}

/* ------------------------------------------------------------------ stopper version */

typedef struct stopper_reader {
    stopper *s;
    int fd;
    long bytes;
    bool interrupted; /* read() returned EINTR and the worker saw the stop */
} stopper_reader;

static void *stopper_run(void *arg) {
    stopper_reader *r = arg;
    stopper_hook hook = {stopper_hook_signal, (void *)(intptr_t)SIGUSR1, 50 * 1000000LL};
    if (stopper_enter(r->s, &hook) == STOPPER_OK) {
        char buf[256];
        for (;;) {
            ssize_t n = read(r->fd, buf, sizeof buf); /* blocks; no timeout, no flag */
            if (n < 0 && errno == EINTR) {
                if (stopper_is_set(r->s)) {
                    r->interrupted = true;
                    break;
                }
                continue; /* some other signal: carry on */
            }
            if (n <= 0) break;
            r->bytes += n;
        }
    }
    stopper_exit(r->s);
    return NULL;
}

static double run_stopper(bool *interrupted) {
    /* once per process: a do-nothing handler without SA_RESTART, so read() returns EINTR */
    if (stopper_install_signal(SIGUSR1) != STOPPER_OK) {
        fprintf(stderr, "blocked_read: SIGUSR1 already has a handler\n");
        exit(2);
    }
    int p[2];
    if (pipe(p) != 0) exit(2);
    stopper_reader r = {stopper_new(), p[0], 0, false};
    if (!r.s) exit(2);
    pthread_t t;
    pthread_create(&t, NULL, stopper_run, &r);
    sleep_ms(RUN_MS);
    int64_t t0 = now_ns();
    int32_t st = stopper_join(r.s, -1); /* stop: the hook signals the reader; wait for its exit */
    double ms = ms_since(t0);
    pthread_join(t, NULL);
    *interrupted = r.interrupted;
    stopper_release(r.s);
    close(p[0]);
    close(p[1]);
    return st == STOPPER_OK ? ms : -1;
}

int main(int argc, char **argv) {
    bool interrupted = false;
    if (check_mode(argc, argv)) {
        double ms = run_stopper(&interrupted);
        return report_check("blocked_read", ms, interrupted, "read() interrupted by the hook");
    }
    double polling = run_polling();
    double fast = run_stopper(&interrupted);
    print_row("3/4 worker blocked in read(), 1 s poll", polling, fast);
    return 0;
}
