/* A plugin linked against libstopper: installs the interrupt signal, optionally arms and waits
 * for a deadline (which starts the library's service thread). */
#include <signal.h>
#include <stopper.h>

int plugin_run(int with_deadline) {
    stopper *s = stopper_new();
    int r = stopper_install_signal(SIGUSR1);
    if (with_deadline) {
        stopper_stop_after(s, 1000000, 0);
        stopper_wait(s, -1);
    } else {
        stopper_stop(s, 0);
    }
    stopper_release(s);
    return r;
}
