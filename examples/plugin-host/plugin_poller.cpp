// A plugin written in C++ with stopper.hpp: an event-loop worker that waits in poll() on its
// own descriptor and on the stopper's fd, so a stop ends its wait at once. It uses the RAII
// classes inside the worker; they are all gone before the worker returns.
#include "plugin_api.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>

namespace {

std::atomic<uint64_t> g_units{0};

struct own_pipe {
    int fd[2] = {-1, -1};
    own_pipe() {
        if (pipe2(fd, O_CLOEXEC) != 0)
            fd[0] = fd[1] = -1;
    }
    ~own_pipe() {
        for (int f : fd)
            if (f >= 0)
                close(f);
    }
};

void work() {
    stopper::source s = stopper::current();  // the stopper this thread was spawned in
    own_pipe p;                              // the plugin's own descriptor, closed on return
    if (p.fd[0] < 0)
        return;
    // A callback into plugin code: it also pokes the loop through the pipe (how a loop that
    // does not poll the stopper's fd would learn of the stop). Unregistered before we return.
    stopper::callback cb(s, [&p] {
        char c = 1;
        ssize_t r = write(p.fd[1], &c, 1);
        (void)r;
    });
    pollfd fds[2] = {{p.fd[0], POLLIN, 0}, {s.fd(), POLLIN, 0}};
    while (!s.is_set()) {
        int n = poll(fds, 2, 1);  // 1 ms: one unit of work per idle tick
        if (n == 0)
            g_units++;
    }
}

// Called by libstopper's thread: no exception may leave it.
void worker(void *) {
    try {
        work();
    } catch (...) {
    }
}

int32_t start(stopper::stopper *s) { return stopper::stopper_spawn(s, &worker, nullptr); }

uint64_t progress() { return g_units.load(); }

const plugin_v1 api = {PLUGIN_ABI, "poller (C++)", &start, &progress};

}  // namespace

extern "C" __attribute__((visibility("default"))) const plugin_v1 *plugin_entry(void) { return &api; }
