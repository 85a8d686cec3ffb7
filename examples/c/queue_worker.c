/* Recipe 4 (RECIPES.md): the QueueWorker.
 *
 * A worker takes tasks from a queue pre-filled with 5 tasks and processes each; the owner stops
 * it a while after the queue ran dry. (The recipe's tasks take 1 s and the stop comes after
 * 4 s; here everything is ten times shorter so the demo stays short. The queue's 0.5 s poll
 * is kept as it is: it is what the recipe's stop latency comes from.)
 *
 *   polling version : get(timeout = 0.5 s) in a loop; on a timeout look at the stop flag and
 *                     go round again: a stop is seen up to 0.5 s late, and an idle worker
 *                     wakes twice a second for nothing.
 *   stopper version : the queue is a stopper_chan; stopper_chan_recv(c, &task, s, -1) blocks
 *                     with no timeout and returns STOPPER_STOPPED the moment s stops. The task
 *                     itself "works" with stopper_wait, so a stop mid-task is seen at once too.
 *
 * usage: queue_worker [--check]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "demo.h"
#include "stopper.h"

#define TASKS 5
#define TASK_MS 100
#define GET_TIMEOUT_MS 500
#define STOP_AFTER_MS 750

/* ------------------------------------------------------------------ polling version */

/* the queue the recipe uses: a mutex, a condition variable and a get() with a timeout */
typedef struct polling_queue {
    pthread_mutex_t lock;
    pthread_cond_t nonempty;
    uint64_t items[64];
    int head, len;
} polling_queue;

static void pq_put(polling_queue *q, uint64_t item) {
    pthread_mutex_lock(&q->lock);
    q->items[(q->head + q->len++) % 64] = item;
    pthread_cond_signal(&q->nonempty);
    pthread_mutex_unlock(&q->lock);
}

/* false on timeout (the recipe's queue.Empty) */
static bool pq_get(polling_queue *q, uint64_t *item, int timeout_ms) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&q->lock);
    while (q->len == 0)
        if (pthread_cond_timedwait(&q->nonempty, &q->lock, &until) != 0) break;
    bool got = q->len > 0;
    if (got) {
        *item = q->items[q->head];
        q->head = (q->head + 1) % 64;
        q->len--;
    }
    pthread_mutex_unlock(&q->lock);
    return got;
}

typedef struct polling_worker {
    polling_queue q;
    atomic_bool stop;
    int done;
    int idle_wakeups;
} polling_worker;

static void *polling_run(void *arg) {
    polling_worker *w = arg;
    while (!atomic_load(&w->stop)) {
        uint64_t task;
        if (!pq_get(&w->q, &task, GET_TIMEOUT_MS)) {
            w->idle_wakeups++;
            continue; /* queue.Empty: look at the flag, then wait again */
        }
        sleep_ms(TASK_MS); /* process the task */
        w->done++;
    }
    return NULL;
}

static double run_polling(void) {
    polling_worker *w = calloc(1, sizeof *w);
    if (!w) exit(2);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->q.lock, NULL);
    pthread_cond_init(&w->q.nonempty, &ca);
    atomic_init(&w->stop, false);
    for (uint64_t i = 1; i <= TASKS; i++) pq_put(&w->q, i);
    pthread_t t;
    pthread_create(&t, NULL, polling_run, w);
    sleep_ms(STOP_AFTER_MS);
    int64_t t0 = now_ns();
    atomic_store(&w->stop, true);
    pthread_join(t, NULL);
    double ms = ms_since(t0);
    pthread_cond_destroy(&w->q.nonempty);
    pthread_mutex_destroy(&w->q.lock);
    free(w);
    return ms;
}

/* ------------------------------------------------------------------ stopper version */

typedef struct stopper_worker {
    stopper_chan *tasks;
    int done;
} stopper_worker;

static void stopper_run(void *arg) {
    stopper_worker *w = arg;
    stopper *s = stopper_current();
    uint64_t task;
    while (stopper_chan_recv(w->tasks, &task, s, -1) == STOPPER_OK) {
        /* process the task; its own waiting is stoppable too */
        if (stopper_wait(s, (int64_t)TASK_MS * 1000000) == STOPPER_STOPPED) break;
        w->done++;
    }
}

static double run_stopper(int *done) {
    stopper_worker w = {stopper_chan_new(0), 0};
    stopper *s = stopper_new();
    if (!s || !w.tasks) exit(2);
    for (uint64_t i = 1; i <= TASKS; i++) stopper_chan_send(w.tasks, i, NULL, -1);
    if (stopper_spawn(s, stopper_run, &w) != STOPPER_OK) exit(2);
    sleep_ms(STOP_AFTER_MS);
    int64_t t0 = now_ns();
    int32_t st = stopper_join(s, -1);
    double ms = ms_since(t0);
    *done = w.done;
    stopper_release(s);
    stopper_chan_release(w.tasks);
    return st == STOPPER_OK ? ms : -1;
}

int main(int argc, char **argv) {
    int done = 0;
    if (check_mode(argc, argv)) {
        double ms = run_stopper(&done);
        return report_check("queue_worker", ms, done == TASKS, "all 5 tasks processed");
    }
    double polling = run_polling();
    double fast = run_stopper(&done);
    print_row("4 QueueWorker, get(timeout=0.5 s)", polling, fast);
    return 0;
}
