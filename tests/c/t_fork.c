/* Issue 12: fork audit of the core's locks. A child forked while other threads are inside the
 * library (holding a stopper's or a channel's lock, arming deadlines, entering and exiting)
 * must be able to use the same objects and exit() without hanging. */
#include "harness.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

struct hammer {
    stopper *s;
    stopper_chan *c;
    atomic_bool quit;
};

static void nothing_cb(void *d, int32_t r) { (void)d; (void)r; }

static void *hammer_main(void *arg) {
    struct hammer *h = arg;
    while (!atomic_load(&h->quit)) {
        uint64_t id = 0;
        stopper_on_stop(h->s, nothing_cb, NULL, &id);
        stopper_unregister(h->s, id);
        stopper *c = stopper_new_child(h->s);
        stopper_enter(c, NULL);
        stopper_exit(c);
        stopper_stop_after(c, MS(60000), 0);
        stopper_stop_after(c, -1, 0);
        stopper_release(c);
        stopper_chan_send(h->c, 1, h->s, 0);
        uint64_t item;
        stopper_chan_recv(h->c, &item, h->s, 0);
    }
    return NULL;
}

static int child_uses_the_library(struct hammer *h) {
    alarm(10); /* a hang becomes SIGALRM, which the parent sees */
    uint64_t id = 0;
    if (stopper_on_stop(h->s, nothing_cb, NULL, &id) != STOPPER_OK) return 2;
    if (stopper_unregister(h->s, id) != STOPPER_OK) return 3;
    stopper *c = stopper_new_child(h->s);
    if (!c || stopper_enter(c, NULL) != STOPPER_OK || stopper_exit(c) != STOPPER_OK) return 4;
    if (stopper_stop_after(c, MS(1), 0) != STOPPER_OK) return 5;
    /* Under ASan, 1 child in ~100 saw no deadline within 5 s (open: the service thread
     * restarted in a child of a threaded parent under the sanitizer; docs/reliability.md). */
    if (stopper_wait(c, MS(5000)) != STOPPER_STOPPED && !SANITIZED) return 6;
    if (stopper_chan_send(h->c, 7, NULL, 0) != STOPPER_OK) return 7;
    uint64_t item = 0;
    /* Another thread's item may be queued: drain to ours. */
    while (stopper_chan_recv(h->c, &item, NULL, 0) == STOPPER_OK && item != 7) {
    }
    if (item != 7) return 8;
    if (stopper_stop(h->s, 0) != 1) return 9;
    stopper_release(c);
    return 0;
}

TEST_T(fork_while_other_threads_use_the_library, 120) {
    if (SANITIZED) {
        /* Under ASan some children hang: a library thread restarted in the child blocks on
         * the sanitizer allocator's lock, inherited from a parent thread allocating at the
         * fork (docs/reliability.md). */
        h_note("skipped under AddressSanitizer");
        return;
    }
    struct hammer h = {stopper_new(), stopper_chan_new(4), false};
    REQUIRE(h.s && h.c);
    pthread_t t[3];
    for (int i = 0; i < 3; i++) t[i] = start_thread(hammer_main, &h);
    /* LeakSanitizer scans each child at exit (about half a second): fewer forks under ASan. */
    int forks = SANITIZED ? 10 : ITERS(300), hung = 0, failed = 0;
    for (int i = 0; i < forks; i++) {
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) exit(child_uses_the_library(&h));
        int ws = 0;
        waitpid(pid, &ws, 0);
        if (WIFSIGNALED(ws)) {
            hung += WTERMSIG(ws) == SIGALRM;
            failed += WTERMSIG(ws) != SIGALRM;
        } else if (WEXITSTATUS(ws) == 1 && SANITIZED) {
            /* LeakSanitizer in a child of a threaded parent reports the parent threads'
             * memory (exitcode=1): not the library's doing, and not what this test checks. */
        } else if (WEXITSTATUS(ws) != 0) {
            h_note("child %d: step %d failed", i, WEXITSTATUS(ws));
            failed++;
        }
        if (hung + failed >= 3) break; /* each hang costs the child's 10 s alarm */
    }
    atomic_store(&h.quit, true);
    for (int i = 0; i < 3; i++) join_thread(t[i]);
    if (hung || failed)
        h_fail(__FILE__, __LINE__, "%d of %d forked children hung, %d failed", hung, forks, failed);
    stopper_chan_release(h.c);
    stopper_release(h.s);
}
