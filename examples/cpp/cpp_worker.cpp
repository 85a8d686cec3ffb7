// A C++ worker that a Python program starts in a stopper it created (see together.py).
// Built as libcppworker.so; it links the same libstopper.so that Python loads with ctypes, so
// both languages share one stopper object.
//
//   int     start_cpp_worker(stopper *s)   starts a worker thread inside s; 0, or a status code
//   int64_t cpp_worker_woke_ns(void)       CLOCK_MONOTONIC ns when the worker saw the stop (0: not yet)
//   int32_t cpp_worker_reason(void)        the reason it saw
//   uint64_t cpp_worker_units(void)        units of work done
#include <stopper.hpp>

#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdio>

namespace {
std::atomic<int64_t> g_woke_ns{0};
std::atomic<int32_t> g_reason{0};
std::atomic<uint64_t> g_units{0};

int64_t monotonic_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
}  // namespace

extern "C" __attribute__((visibility("default"))) int start_cpp_worker(stopper::stopper *s) {
    try {
        // share: Python keeps its own reference; the thread holds another one.
        stopper::thread t(stopper::source::share(s), [](stopper::source src) {
            while (!src.is_set()) {
                g_units++;                                   // one unit of work
                src.wait(std::chrono::milliseconds(100));    // sleeps, but a stop wakes it at once
            }
            g_woke_ns = monotonic_ns();
            g_reason = src.reason();
            std::printf("[C++]    worker saw the stop (reason %d) after %llu units\n", src.reason(),
                        static_cast<unsigned long long>(g_units.load()));
            std::fflush(stdout);
        });
        // The constructor returned once the thread was inside s, so Python's stopper_join(s)
        // waits for it: it can run on its own.
        t.detach();
        return 0;
    } catch (const stopper::error &e) {
        return e.code();
    } catch (...) {
        return STOPPER_EOS;
    }
}

extern "C" __attribute__((visibility("default"))) int64_t cpp_worker_woke_ns(void) { return g_woke_ns.load(); }
extern "C" __attribute__((visibility("default"))) int32_t cpp_worker_reason(void) { return g_reason.load(); }
extern "C" __attribute__((visibility("default"))) uint64_t cpp_worker_units(void) { return g_units.load(); }
