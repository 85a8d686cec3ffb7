// A work queue whose consumers wait on a std::condition_variable_any until there is work or the
// stop comes, the C++20 `cv.wait(lock, stop_token, pred)` pattern written with stopper (C++17).
//
//   ./build/work_queue [--items N] [--max-latency-ms MS]
//
// Two consumers (stopper::thread, each given its token) take items pushed by main; once the
// items are done, main stops the stopper while both consumers are blocked in stopper::wait, and
// checks that both returned promptly. Exit status 1 when a stop took MS or more to be seen.
#include <stopper.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>

namespace {

struct work_queue {
    std::mutex m;
    std::condition_variable_any cv;
    std::deque<int> items;

    void push(int v) {
        {
            std::lock_guard<std::mutex> lock(m);
            items.push_back(v);
        }
        cv.notify_one();
    }

    // The next item, or false once `t` is stopped and nothing is left to take.
    bool pop(const stopper::token &t, int &out) {
        std::unique_lock<std::mutex> lock(m);
        if (!stopper::wait(cv, lock, t, [this] { return !items.empty(); }))
            return false;  // stopped while the queue was empty
        out = items.front();
        items.pop_front();
        return true;
    }
};

}  // namespace

int main(int argc, char **argv) {
    int n_items = 1000;
    double max_latency_ms = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--items"))
            n_items = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--max-latency-ms"))
            max_latency_ms = std::atof(argv[i + 1]);
    }

    using clock = std::chrono::steady_clock;
    work_queue q;
    std::atomic<long> sum{0};
    std::atomic<int> idle{0};
    std::atomic<clock::rep> last_exit{0};
    stopper::source s;
    {
        auto consumer = [&](stopper::token t, int id) {
            int v = 0;
            long mine = 0;
            for (;;) {
                idle++;
                bool got = q.pop(t, v);
                idle--;
                if (!got)
                    break;
                sum += v;
                mine++;
            }
            last_exit = clock::now().time_since_epoch().count();
            std::printf("consumer %d: took %ld items, saw the stop (reason %d)\n", id, mine,
                        static_cast<int>(t.reason()));
        };
        stopper::thread a(s, consumer, 1);
        stopper::thread b(s, consumer, 2);
        for (int i = 1; i <= n_items; i++)
            q.push(i);
        // Wait until every item is taken and both consumers are blocked in stopper::wait again.
        while (idle.load() < 2 || [&] { std::lock_guard<std::mutex> g(q.m); return !q.items.empty(); }())
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        auto t0 = clock::now();
        s.request_stop();
        a.join();
        b.join();
        double ms = std::chrono::duration<double, std::milli>(
                        clock::time_point(clock::duration(last_exit.load())) - t0).count();
        long want = static_cast<long>(n_items) * (n_items + 1) / 2;
        std::printf("sum %ld (want %ld); both consumers out %.2f ms after the stop\n", sum.load(), want, ms);
        if (sum.load() != want)
            return 1;
        if (max_latency_ms > 0 && ms >= max_latency_ms) {
            std::printf("FAIL: a stop took %.2f ms to be seen (limit %.0f ms)\n", ms, max_latency_ms);
            return 1;
        }
    }
    return 0;
}
