// bench_core: the stopper C ABI against the C++20 standard library, interleaved in one process.
//
//   bench_core [--scale F] [--rounds R] [--samples N]
//
// Each pair runs A (stopper) then B (the std reference) for the same number of iterations,
// R rounds in a row (A, B, A, B, ...), after one warm-up round; it prints ns/op per round as JSON
// lines (see bench_util.h) and run.py turns them into medians and ratios. Wake-up latencies are
// sampled one at a time, the three kinds interleaved (stopper, condition_variable_any, futex).
// --scale multiplies every iteration count (bench-smoke uses a tiny one).

#include "bench_pair.hpp"

#include <stopper.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <semaphore>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>


namespace {

using bench::escape;
using bench::escape_ptr;
using bench::iters;
using bench::run_pair;

[[noreturn]] void die(const char *what) { bench::die("bench_core", what); }

void count_cb(void *user_data, int32_t) { ++*static_cast<long *>(user_data); }

struct CountFn {
    long *p;
    void operator()() const noexcept { ++*p; }
};

// ------------------------------------------------------------------ per-operation pairs

void bench_flag()
{
    stopper *s = stopper_new();
    if (!s)
        die("stopper_new failed");
    const uint8_t *flag = stopper_flag(s);
    std::stop_source src;
    std::stop_token tok = src.get_token();
    run_pair(
        "flag_check", iters(2e7),
        [&](long n) {
            long c = 0;
            for (long i = 0; i < n; i++)
                if (stopper_flag_is_set(flag))
                    c++;
            escape(c);
        },
        [&](long n) {
            long c = 0;
            for (long i = 0; i < n; i++)
                if (tok.stop_requested())
                    c++;
            escape(c);
        });
    stopper_release(s);
}

void bench_is_set()
{
    stopper *s = stopper_new();
    if (!s)
        die("stopper_new failed");
    run_pair(
        "is_set_call", iters(1e7),
        [&](long n) {
            long c = 0;
            for (long i = 0; i < n; i++)
                c += stopper_is_set(s);
            escape(c);
        },
        [&](long n) {
            unsigned long c = 0;
            for (long i = 0; i < n; i++)
                c += stopper_abi_version();
            escape(c);
        });
    stopper_release(s);
}

void bench_new_release()
{
    run_pair(
        "new_release", iters(1e6),
        [&](long n) {
            for (long i = 0; i < n; i++) {
                stopper *s = stopper_new();
                escape_ptr(s);
                stopper_release(s);
            }
        },
        [&](long n) {
            for (long i = 0; i < n; i++) {
                std::stop_source src;
                escape(src);
            }
        });
}

void bench_callback()
{
    stopper *s = stopper_new();
    if (!s)
        die("stopper_new failed");
    std::stop_source src;
    std::stop_token tok = src.get_token();
    long counter = 0;
    bool failed = false;
    run_pair(
        "callback_reg_unreg", iters(2e6),
        [&](long n) {
            for (long i = 0; i < n; i++) {
                uint64_t id = 0;
                if (stopper_on_stop(s, count_cb, &counter, &id) != STOPPER_OK ||
                    stopper_unregister(s, id) != STOPPER_OK)
                    failed = true;
            }
        },
        [&](long n) {
            for (long i = 0; i < n; i++) {
                std::stop_callback cb(tok, CountFn{&counter});
                escape(cb);
            }
        });
    if (failed || counter != 0)
        die("callback register/unregister misbehaved");
    stopper_release(s);
}

// Stop with 1000 registered callbacks: time of the stop itself, per callback.
void bench_stop_many()
{
    constexpr int K = 1000;
    using CB = std::stop_callback<CountFn>;
    long reps = iters(30);
    std::vector<double> va, vb;
    auto one_stopper = [&]() -> double {
        long counter = 0;
        stopper *s = stopper_new();
        if (!s)
            die("stopper_new failed");
        for (int i = 0; i < K; i++) {
            uint64_t id;
            if (stopper_on_stop(s, count_cb, &counter, &id) != STOPPER_OK)
                die("stopper_on_stop failed");
        }
        int64_t t0 = bench_now_ns();
        stopper_stop(s, 0);
        int64_t t1 = bench_now_ns();
        if (counter != K)
            die("stopper_stop did not run every callback once");
        stopper_release(s);
        return (double)(t1 - t0) / K;
    };
    auto one_std = [&]() -> double {
        long counter = 0;
        std::stop_source src;
        std::stop_token tok = src.get_token();
        std::unique_ptr<std::optional<CB>[]> cbs(new std::optional<CB>[K]);
        for (int i = 0; i < K; i++)
            cbs[i].emplace(tok, CountFn{&counter});
        int64_t t0 = bench_now_ns();
        src.request_stop();
        int64_t t1 = bench_now_ns();
        if (counter != K)
            die("request_stop did not run every callback once");
        return (double)(t1 - t0) / K;
    };
    one_stopper();
    one_std();
    for (int r = 0; r < bench::g_rounds; r++) {
        std::vector<double> ra, rb;
        for (long i = 0; i < reps; i++) {
            ra.push_back(one_stopper());
            rb.push_back(one_std());
        }
        va.push_back(bench_median(ra.data(), ra.size()));
        vb.push_back(bench_median(rb.data(), rb.size()));
    }
    bench_emit_pair("stop_1000_callbacks", va.data(), vb.data(), va.size());
    std::fprintf(stderr, "  %-22s done\n", "stop_1000_callbacks");
}

// ------------------------------------------------------------------ wake-up latency

// One long-lived thread that runs jobs on demand, so that thread creation is never timed.
class Worker {
  public:
    Worker() : th_([this] { loop(); }) {}
    ~Worker()
    {
        quit_ = true;
        go_.release();
        th_.join();
    }
    void start(std::function<void()> job)
    {
        job_ = std::move(job);
        go_.release();
    }
    void finish() { done_.acquire(); }

  private:
    void loop()
    {
        for (;;) {
            go_.acquire();
            if (quit_)
                return;
            job_();
            done_.release();
        }
    }
    std::binary_semaphore go_{0}, done_{0};
    std::function<void()> job_;
    bool quit_ = false;
    std::thread th_;
};

// Lets the waiter get from "armed" into its blocking call before the stop is sent.
void settle(std::atomic<int> &armed)
{
    int64_t limit = bench_now_ns() + 5000000000LL;
    while (!armed.load(std::memory_order_acquire)) {
        if (bench_now_ns() > limit)
            die("waiter thread never started");
        std::this_thread::yield();
    }
    bench_sleep_ns(300000);
}

long futex(std::atomic<uint32_t> *w, int op, uint32_t val)
{
    return syscall(SYS_futex, reinterpret_cast<uint32_t *>(w), op, val, nullptr, nullptr, 0);
}

void bench_wake()
{
    Worker w;
    int n = bench::g_samples;
    std::vector<int64_t> ls, lc, lf;
    for (int i = 0; i < n; i++) {
        // stopper_wait
        {
            stopper *s = stopper_new();
            if (!s)
                die("stopper_new failed");
            std::atomic<int> armed{0};
            int64_t t1 = 0;
            int32_t rc = 0;
            w.start([&] {
                armed.store(1, std::memory_order_release);
                rc = stopper_wait(s, -1);
                t1 = bench_now_ns();
            });
            settle(armed);
            int64_t t0 = bench_now_ns();
            stopper_stop(s, 0);
            w.finish();
            if (rc != STOPPER_STOPPED)
                die("stopper_wait did not return STOPPED");
            ls.push_back(t1 - t0);
            stopper_release(s);
        }
        // condition_variable_any with a stop_token
        {
            std::stop_source src;
            std::mutex m;
            std::condition_variable_any cv;
            std::atomic<int> armed{0};
            int64_t t1 = 0;
            w.start([&] {
                std::unique_lock<std::mutex> lk(m);
                armed.store(1, std::memory_order_release);
                cv.wait(lk, src.get_token(), [] { return false; });
                t1 = bench_now_ns();
            });
            settle(armed);
            int64_t t0 = bench_now_ns();
            src.request_stop();
            w.finish();
            lc.push_back(t1 - t0);
        }
        // raw futex wait / wake
        {
            std::atomic<uint32_t> word{0};
            std::atomic<int> armed{0};
            int64_t t1 = 0;
            w.start([&] {
                armed.store(1, std::memory_order_release);
                while (word.load(std::memory_order_acquire) == 0)
                    futex(&word, FUTEX_WAIT_PRIVATE, 0);
                t1 = bench_now_ns();
            });
            settle(armed);
            int64_t t0 = bench_now_ns();
            word.store(1, std::memory_order_release);
            futex(&word, FUTEX_WAKE_PRIVATE, 1);
            w.finish();
            lf.push_back(t1 - t0);
        }
    }
    bench_emit_samples("wake_stopper_wait", ls.data(), ls.size());
    bench_emit_samples("wake_cv_any", lc.data(), lc.size());
    bench_emit_samples("wake_futex", lf.data(), lf.size());
    std::fprintf(stderr, "  %-22s done\n", "wake_latency");
}

} // namespace

int main(int argc, char **argv)
{
    if (!bench::parse_args(argc, argv)) {
        std::fprintf(stderr, "usage: bench_core [--scale F] [--rounds R] [--samples N] "
                             "[flag|is_set|new|callback|stop_many|wake...]\n");
        return 2;
    }
    if (stopper_abi_version() != STOPPER_ABI_VERSION)
        die("the loaded libstopper has another ABI version than the header");

    // A threaded process, as the stop-with-callbacks comparison requires: this thread stays
    // blocked until the end.
    std::binary_semaphore quit{0};
    std::thread idle([&] { quit.acquire(); });

    std::printf("{\"kind\":\"meta\",\"program\":\"bench_core\",\"rounds\":%d,\"scale\":%g,\"samples\":%d,"
                "\"version\":\"%s\"}\n",
                bench::g_rounds, bench::g_scale, bench::g_samples, stopper_version());
    if (bench::want("flag"))
        bench_flag();
    if (bench::want("is_set"))
        bench_is_set();
    if (bench::want("new"))
        bench_new_release();
    if (bench::want("callback"))
        bench_callback();
    if (bench::want("stop_many"))
        bench_stop_many();
    if (bench::want("wake"))
        bench_wake();

    quit.release();
    idle.join();
    return 0;
}
