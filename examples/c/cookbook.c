/* Recipe 1 (RECIPES.md): the Cookbook worker.
 *
 * A worker does one unit of work, then sleeps for its period, until it is told to stop; the
 * owner's "join" means "stop, then wait".
 *
 *   polling version : the sleep is a plain 1 s sleep, the stop an atomic flag checked between
 *                     sleeps: a stop is seen up to 1 s late.
 *   stopper version : the sleep is stopper_wait(s, 1 s), which returns STOPPER_STOPPED the moment
 *                     the stopper stops; the thread is started with stopper_spawn and
 *                     stopper_join(s) stops it and waits for it.
 *
 * usage: cookbook [--check] [-v]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "demo.h"
#include "stopper.h"

#define PERIOD_MS 1000
#define RUN_MS 500 /* how long the owner lets the worker run before stopping it */

static bool verbose;

/* ------------------------------------------------------------------ polling version */

typedef struct polling_worker {
    pthread_t thread;
    atomic_bool stop;
    int count;
} polling_worker;

static void *polling_run(void *arg) {
    polling_worker *w = arg;
    while (!atomic_load(&w->stop)) {
        w->count++; /* one unit of work */
        if (verbose) printf("  polling worker: %d\n", w->count);
        sleep_ms(PERIOD_MS); /* the recipe's sleep: deaf to the flag for a whole period */
    }
    return NULL;
}

static double run_polling(void) {
    polling_worker w = {.count = 0};
    atomic_init(&w.stop, false);
    pthread_create(&w.thread, NULL, polling_run, &w);
    sleep_ms(RUN_MS);
    int64_t t0 = now_ns();
    atomic_store(&w.stop, true); /* join = stop, then wait */
    pthread_join(w.thread, NULL);
    return ms_since(t0);
}

/* ------------------------------------------------------------------ stopper version */

static void stopper_run(void *arg) {
    int *count = arg;
    stopper *s = stopper_current(); /* the stopper this thread was spawned into */
    do {
        (*count)++; /* one unit of work */
        if (verbose) printf("  stopper worker: %d\n", *count);
    } while (stopper_wait(s, (int64_t)PERIOD_MS * 1000000) == STOPPER_TIMEDOUT);
}

static double run_stopper(int *count) {
    stopper *s = stopper_new();
    if (!s || stopper_spawn(s, stopper_run, count) != STOPPER_OK) {
        fprintf(stderr, "cookbook: cannot start the worker\n");
        exit(2);
    }
    sleep_ms(RUN_MS);
    int64_t t0 = now_ns();
    int32_t st = stopper_join(s, -1); /* stops s, then waits for the worker */
    double ms = ms_since(t0);
    stopper_release(s);
    return st == STOPPER_OK ? ms : -1;
}

int main(int argc, char **argv) {
    bool check = check_mode(argc, argv);
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-v") == 0) verbose = true;
    int count = 0;
    if (check) {
        double ms = run_stopper(&count);
        return report_check("cookbook", ms, count >= 1, "the worker worked");
    }
    double polling = run_polling();
    double fast = run_stopper(&count);
    print_row("1 Cookbook worker, 1 s sleep", polling, fast);
    return 0;
}
