// Built only through CMake's find_package(stopper) against an installed prefix: a worker that
// takes a token, and a condition_variable_any wait that a stop ends.
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <stopper.hpp>

int main() {
    std::mutex m;
    std::condition_variable_any cv;
    bool woken_by_stop = false;
    stopper::source s;
    {
        stopper::thread worker(s, [&](stopper::token t) {
            std::unique_lock<std::mutex> lock(m);
            woken_by_stop = !stopper::wait(cv, lock, t, [] { return false; }) && t.stop_requested();
        });
        s.request_stop();
    }
    bool ok = woken_by_stop && s.get_token().stop_requested();
    std::printf("%s: token, thread and cv wait %s\n", __FILE__, ok ? "work" : "FAILED");
    return ok ? 0 : 1;
}
