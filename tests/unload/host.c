/* A host that does not link libstopper: it dlopen()s a plugin that does, runs it, dlclose()s it.
 * When the library really goes away with the plugin, nothing of it may remain: no thread, and no
 * signal handler pointing into unmapped code (a later signal would crash the host). */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static int threads(void) {
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    while (readdir(d)) n++;
    closedir(d);
    return n - 2;
}

static int failures;
#define CHECK(cond, ...) do { if (cond) { printf("ok   " __VA_ARGS__); } else { printf("FAIL " __VA_ARGS__); failures++; } printf("\n"); } while (0)

static int cycle(const char *path, int with_deadline, int *unmapped) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) { printf("FAIL dlopen: %s\n", dlerror()); return 0; }
    int (*run)(int) = (int (*)(int))dlsym(h, "plugin_run");
    int r = run(with_deadline);
    dlclose(h);
    void *still = dlopen("libstopper.so.0", RTLD_NOW | RTLD_NOLOAD);
    *unmapped = still == NULL;
    if (still) dlclose(still);
    return r == 0;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    int unmapped = 0;
    struct sigaction a;

    /* Without a service thread the library is unloaded with the plugin. */
    CHECK(cycle(argv[1], 0, &unmapped), "plugin installed SIGUSR1");
    CHECK(unmapped, "libstopper is unmapped after dlclose");
    sigaction(SIGUSR1, NULL, &a);
    CHECK(a.sa_handler == SIG_DFL, "SIGUSR1 handler given back at unload");
    CHECK(threads() == 1, "no thread left (%d)", threads());
    /* The library registers fork handlers when it is loaded: they go with it, so a fork after
     * the unload runs none of its (unmapped) code. */
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    int st = -1;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a fork after the unload (status 0x%x)", st);

    /* With a deadline the service thread ran; whether or not glibc keeps the library mapped
     * (thread-local destructors may pin it), the host is left safe. */
    CHECK(cycle(argv[1], 1, &unmapped), "plugin installed SIGUSR1 again and waited on a deadline");
    sigaction(SIGUSR1, NULL, &a);
    CHECK(!unmapped || a.sa_handler == SIG_DFL, "no handler into unmapped code (unmapped=%d)", unmapped);
    for (int i = 0; i < 200 && threads() > 1; i++) usleep(10000);
    CHECK(threads() == 1, "no thread left (%d)", threads());

    printf("%d passed, %d failed\n", 8 - failures, failures);
    return failures != 0;
}
