/* Shared by the examples: a clock, a sleep, the table row, and the --check mode. */
#ifndef STOPPER_EXAMPLES_DEMO_H
#define STOPPER_EXAMPLES_DEMO_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* A stopper version must stop within this in --check mode (it takes microseconds; the bound
   is generous so that a loaded machine never fails it). */
#define CHECK_BOUND_MS 200.0

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline double ms_since(int64_t t0) { return (double)(now_ns() - t0) / 1e6; }

static inline void sleep_ms(int64_t ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* --check: run only the stopper version and assert it stopped within CHECK_BOUND_MS */
static inline bool check_mode(int argc, char **argv) {
    return argc > 1 && strcmp(argv[1], "--check") == 0;
}

static inline void print_row(const char *recipe, double polling_ms, double stopper_ms) {
    printf("%-46s | %17.1f ms | %17.3f ms\n", recipe, polling_ms, stopper_ms);
    fflush(stdout);
}

/* prints the verdict of --check mode and returns the exit status */
static inline int report_check(const char *name, double stopper_ms, bool worked, const char *what) {
    bool ok = worked && stopper_ms >= 0 && stopper_ms < CHECK_BOUND_MS;
    printf("%s %-14s stopper version stopped in %.3f ms (bound %.0f ms); %s: %s\n", ok ? "ok  " : "FAIL",
           name, stopper_ms, CHECK_BOUND_MS, what, worked ? "yes" : "NO");
    return ok ? 0 : 1;
}

#endif
