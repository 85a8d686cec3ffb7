// The Python Cookbook's "Terminating a Thread" recipe (RECIPES.md, 1), in C++ with
// stopper::thread.
//
// The recipe: a thread holding an Event and a sleep period of 1 s; its loop does one unit of
// work (prints a counter), then sleeps with event.wait(period) while the event is not set; its
// join() sets the event, then joins. The main program starts it, sleeps 10 s, and joins.
//
// Here the thread object is the recipe: the worker runs inside a stopper, its sleep is
// s.wait(period), which a stop ends at once, and the destructor is "join means stop, then
// wait". Nothing else to write.
//
//   cookbook [--run SECONDS] [--period SECONDS] [--max-latency-ms N]
// With --max-latency-ms the program fails (exit 1) when the time from the stop to the joined
// thread is N ms or more.
#include <stopper.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

using namespace std::chrono;

int main(int argc, char **argv) {
    duration<double> run(10.0), period(1.0);
    double max_latency_ms = -1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--run"))
            run = duration<double>(std::atof(argv[i + 1]));
        else if (!std::strcmp(argv[i], "--period"))
            period = duration<double>(std::atof(argv[i + 1]));
        else if (!std::strcmp(argv[i], "--max-latency-ms"))
            max_latency_ms = std::atof(argv[i + 1]);
        else {
            std::fprintf(stderr, "usage: %s [--run S] [--period S] [--max-latency-ms N]\n", argv[0]);
            return 2;
        }
    }

    steady_clock::time_point stop_at;
    {
        stopper::thread worker([period](stopper::source s) {
            for (int n = 0; !s.is_set(); n++) {
                std::printf("T-minus %d\n", n);  // one unit of work
                std::fflush(stdout);
                s.wait(period);  // the recipe's event.wait(sleep_period): a stop ends it at once
            }
            std::printf("worker: stopped (reason %d)\n", s.reason());
        });
        std::this_thread::sleep_for(run);
        stop_at = steady_clock::now();
    }  // ~thread: stop, then join
    double latency_ms = duration<double, std::milli>(steady_clock::now() - stop_at).count();
    std::printf("cookbook: stopped and joined %.3f ms after the stop (sleep period %.1f s)\n", latency_ms,
                period.count());
    if (max_latency_ms >= 0 && latency_ms >= max_latency_ms) {
        std::fprintf(stderr, "cookbook: FAIL: stop latency %.3f ms >= %.0f ms\n", latency_ms, max_latency_ms);
        return 1;
    }
    return 0;
}
