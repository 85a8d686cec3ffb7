/* The runner: forks one process per test, kills a hung test with alarm(), collects each test's
 * output, prints one line per test and `N passed, N failed` at the end. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int h_slow = 1;

typedef struct test_case {
    const char *name;
    test_fn fn;
    int timeout_s;
} test_case;

#define MAX_TESTS 1024
static test_case tests[MAX_TESTS];
static int n_tests;

void harness_register(const char *name, test_fn fn, int timeout_s) {
    if (n_tests == MAX_TESTS) {
        fprintf(stderr, "harness: too many tests\n");
        abort();
    }
    tests[n_tests++] = (test_case){name, fn, timeout_s};
}

/* ------------------------------------------------------------------ checks */

static atomic_int failures;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

int h_failures(void) { return atomic_load(&failures); }

void h_fail(const char *file, int line, const char *fmt, ...) {
    atomic_fetch_add(&failures, 1);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&out_lock);
    fprintf(stdout, "    %s:%d: %s\n", file, line, msg);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
}

void h_note(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&out_lock);
    fprintf(stdout, "    note: %s\n", msg);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
}

_Noreturn void h_abort_test(void) {
    fflush(stdout);
    exit(1);
}

const char *st_name(int32_t code) {
    switch (code) {
    case 0: return "OK";
    case 1: return "STOPPED";
    case 2: return "TIMEDOUT";
    case 3: return "CLOSED";
    case -1: return "EINVAL";
    case -2: return "ENOMEM";
    case -3: return "EDEADLK";
    case -4: return "EOS";
    case -5: return "EINTERNAL";
    default: return "?";
    }
}

/* ------------------------------------------------------------------ helpers */

int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void sleep_ns(int64_t ns) {
    if (ns <= 0) return;
    struct timespec ts = {(time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

pthread_t start_thread(void *(*fn)(void *), void *arg) {
    pthread_t t;
    int e = pthread_create(&t, NULL, fn, arg);
    if (e != 0) {
        h_fail(__FILE__, __LINE__, "pthread_create: %s", strerror(e));
        h_abort_test();
    }
    return t;
}

void join_thread(pthread_t t) {
    int e = pthread_join(t, NULL);
    if (e != 0) h_fail(__FILE__, __LINE__, "pthread_join: %s", strerror(e));
}

long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    long size = 0, res = 0;
    int n = fscanf(f, "%ld %ld", &size, &res);
    fclose(f);
    if (n != 2) return -1;
    return res * sysconf(_SC_PAGESIZE);
}

static int count_dir(const char *path) {
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

int task_count(void) { return count_dir("/proc/self/task"); }

int fd_count(void) { return count_dir("/proc/self/fd") - 1; /* minus the DIR's own fd */ }

bool fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

bool wait_blocked_in(pid_t tid, const long *sysnos, int n, int64_t timeout_ns) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    int64_t end = now_ns() + SLOW_NS(timeout_ns);
    while (now_ns() < end) {
        FILE *f = fopen(path, "r");
        if (f) {
            long nr = -1;
            int got = fscanf(f, "%ld", &nr);
            fclose(f);
            if (got == 1)
                for (int i = 0; i < n; i++)
                    if (nr == sysnos[i]) {
                        sleep_ns(MS(2)); /* well inside the call, not on its way in */
                        return true;
                    }
        }
        sleep_ns(US(200));
    }
    return false;
}

uint64_t self_id(void) { return (uint64_t)pthread_self(); }

uint32_t rng_next(uint32_t *state) {
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x ? x : 0x9e3779b9u;
}

static void *delayed_stop_main(void *arg) {
    delayed_stop *d = arg;
    sleep_ns(d->delay_ns);
    d->result = stopper_stop(d->s, d->reason);
    return NULL;
}

void delayed_stop_start(delayed_stop *d, stopper *s, int64_t delay_ns, int32_t reason) {
    d->s = s;
    d->delay_ns = delay_ns;
    d->reason = reason;
    d->result = -100;
    d->thread = start_thread(delayed_stop_main, d);
}

void delayed_stop_join(delayed_stop *d) { join_thread(d->thread); }

/* ------------------------------------------------------------------ runner */

typedef struct running {
    pid_t pid;
    int idx;
    int out_fd;
    int64_t t0;
} running;

static running *run;

static int64_t wall_limit_ns(const test_case *t) { return (int64_t)t->timeout_s * h_slow * 1000000000LL; }

static void run_child(const test_case *t, int out_fd) {
    if (out_fd >= 0) {
        dup2(out_fd, 1);
        dup2(out_fd, 2);
        close(out_fd);
    }
    /* a test starts with descriptors 0-2 only (not the output files of tests running beside it) */
    for (int fd = 3; fd < 1024; fd++) {
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) close(fd);
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    alarm((unsigned)(t->timeout_s * h_slow));
    t->fn();
    exit(h_failures() ? 1 : 0);
}

static void dump(int fd) {
    char buf[4096];
    ssize_t n;
    lseek(fd, 0, SEEK_SET);
    while ((n = read(fd, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)n, stdout);
    close(fd);
}

static bool matches(const char *name, int argc, char **argv, int first) {
    if (first >= argc) return true;
    for (int i = first; i < argc; i++)
        if (strstr(name, argv[i])) return true;
    return false;
}

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [-l] [-n] [-j N] [NAME-SUBSTRING...]\n"
            "  -l    list the tests\n"
            "  -n    no fork: run the selected tests in this process (debugging)\n"
            "  -j N  run N tests at a time (default 1)\n",
            argv0);
}

int main(int argc, char **argv) {
    const char *slow = getenv("STOPPER_TEST_SLOW");
    if (slow && atoi(slow) > 1) h_slow = atoi(slow);
    bool list = false, nofork = false;
    int jobs = 1, first = 1;
    for (; first < argc && argv[first][0] == '-'; first++) {
        if (!strcmp(argv[first], "-l")) list = true;
        else if (!strcmp(argv[first], "-n")) nofork = true;
        else if (!strcmp(argv[first], "-j") && first + 1 < argc) jobs = atoi(argv[++first]);
        else { usage(argv[0]); return 2; }
    }
    if (jobs < 1) jobs = 1;
    if (list) {
        for (int i = 0; i < n_tests; i++) printf("%s\n", tests[i].name);
        return 0;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int passed = 0, failed = 0;
    int64_t suite_t0 = now_ns();

    if (nofork) {
        for (int i = 0; i < n_tests; i++) {
            if (!matches(tests[i].name, argc, argv, first)) continue;
            int before = h_failures();
            int64_t t0 = now_ns();
            tests[i].fn();
            bool ok = h_failures() == before;
            printf("%s %s (%.0f ms)\n", ok ? "ok  " : "FAIL", tests[i].name, (now_ns() - t0) / 1e6);
            ok ? passed++ : failed++;
        }
        printf("%d passed, %d failed\n", passed, failed);
        return failed ? 1 : 0;
    }

    run = calloc((size_t)jobs, sizeof *run); /* a static: still reachable in the children */
    int active = 0, next = 0;
    for (;;) {
        while (active < jobs && next < n_tests) {
            int i = next++;
            if (!matches(tests[i].name, argc, argv, first)) continue;
            char tmpl[] = "/tmp/stopper-ctest-XXXXXX";
            int fd = mkstemp(tmpl);
            if (fd < 0) { perror("mkstemp"); return 2; }
            unlink(tmpl);
            fflush(stdout);
            pid_t pid = fork();
            if (pid < 0) { perror("fork"); return 2; }
            if (pid == 0) run_child(&tests[i], fd);
            int slot = 0;
            while (run[slot].pid) slot++;
            run[slot] = (running){pid, i, fd, now_ns()};
            active++;
        }
        if (active == 0) break;
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            perror("waitpid");
            return 2;
        }
        int slot = 0;
        while (slot < jobs && run[slot].pid != pid) slot++;
        if (slot == jobs) continue;
        running r = run[slot];
        run[slot].pid = 0;
        active--;
        const test_case *t = &tests[r.idx];
        double ms = (now_ns() - r.t0) / 1e6;
        bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        printf("%s %s (%.0f ms)\n", ok ? "ok  " : "FAIL", t->name, ms);
        dump(r.out_fd);
        if (!ok) {
            if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
                printf("    timed out after %.0f s: a hang (lost wake-up, deadlock?)\n",
                       wall_limit_ns(t) / 1e9);
            else if (WIFSIGNALED(status))
                printf("    killed by signal %d (%s)\n", WTERMSIG(status), strsignal(WTERMSIG(status)));
            else if (WIFEXITED(status) && WEXITSTATUS(status) != 1)
                printf("    exited with status %d\n", WEXITSTATUS(status));
        }
        ok ? passed++ : failed++;
    }
    free(run);
    printf("suite time %.1f s\n", (now_ns() - suite_t0) / 1e9);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
