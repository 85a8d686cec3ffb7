/* A plugin written in C: its worker does small units of work until the stopper it runs in stops.
 * It never receives the stopper as an argument: code deep inside finds it with
 * stopper_current(). Each unit of work is a sub-task with its own child stopper and a 5 s
 * deadline (a stuck unit gives up on its own; a stop of the host's stopper ends it at once). */
#include "plugin_api.h"

#include <stdatomic.h>

static atomic_uint_fast64_t units;
static atomic_int callbacks_run;

static void on_unit_stopped(void *data, int32_t reason) {
    (void)data;
    (void)reason;
    atomic_fetch_add(&callbacks_run, 1);
}

/* One unit of work: about 1 ms, unless the stop comes first. */
static void do_unit(void) {
    stopper *task = stopper_new_child(stopper_current());
    if (!task)
        return;
    stopper_stop_after(task, 5000000000LL, 0); /* this unit must end within 5 s */
    uint64_t id = 0;
    int32_t registered = stopper_on_stop(task, on_unit_stopped, NULL, &id);
    if (stopper_wait(task, 1000000) == STOPPER_TIMEDOUT) /* the "work" */
        atomic_fetch_add(&units, 1);
    if (registered == STOPPER_OK)
        stopper_unregister(task, id); /* nothing of this plugin stays registered */
    stopper_stop_after(task, -1, 0);  /* disarm the deadline */
    stopper_release(task);
}

static void worker(void *arg) {
    (void)arg;
    while (!stopper_is_set(stopper_current()))
        do_unit();
}

static int32_t start(stopper *s) { return stopper_spawn(s, worker, NULL); }

static uint64_t progress(void) { return atomic_load(&units); }

static const plugin_v1 api = {PLUGIN_ABI, "counter (C)", start, progress};

__attribute__((visibility("default"))) const plugin_v1 *plugin_entry(void) { return &api; }
