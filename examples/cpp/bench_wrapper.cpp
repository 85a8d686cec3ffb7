// Does the C++ wrapper add anything over the C calls, and how does it compare with
// std::stop_source / std::stop_callback? Single-threaded nanoseconds per operation.
//   bench_wrapper [iterations]      (C++20: needs std::stop_token)
#include <stopper.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stop_token>

using namespace std::chrono;

namespace {

template <class F>
double ns_per_op(long n, F &&f) {
    double best = 1e300;
    for (int round = 0; round < 3; round++) {  // best of three
        auto t0 = steady_clock::now();
        f(n);
        double ns = duration<double, std::nano>(steady_clock::now() - t0).count() / static_cast<double>(n);
        if (ns < best)
            best = ns;
    }
    return best;
}

volatile long g_sink;

void row(const char *what, double cpp, double c, double stdlib) {
    std::printf("%-34s %10.2f %10.2f %12.2f\n", what, cpp, c, stdlib);
}

}  // namespace

int main(int argc, char **argv) {
    long n = argc > 1 ? std::atol(argv[1]) : 2000000;
    std::printf("%-34s %10s %10s %12s   (ns/op, best of 3, %ld ops)\n", "operation", "stopper.hpp", "C ABI",
                "std::stop_*", n);

    stopper::source s;
    stopper::stopper *raw = s.native();
    std::stop_source ss;
    std::stop_token tok = ss.get_token();

    row("is_set / stop_requested",
        ns_per_op(n * 50, [&](long k) { long c = 0; for (long i = 0; i < k; i++) c += s.is_set(); g_sink = c; }),
        ns_per_op(n * 50, [&](long k) { long c = 0; for (long i = 0; i < k; i++) c += stopper::stopper_is_set(raw); g_sink = c; }),
        ns_per_op(n * 50, [&](long k) { long c = 0; for (long i = 0; i < k; i++) c += tok.stop_requested(); g_sink = c; }));

    row("copy + destroy a handle",
        ns_per_op(n, [&](long k) { for (long i = 0; i < k; i++) { stopper::source c = s; g_sink = c.is_set(); } }),
        ns_per_op(n, [&](long k) { for (long i = 0; i < k; i++) { stopper::stopper *c = stopper::stopper_retain(raw); g_sink = stopper::stopper_is_set(c); stopper::stopper_release(c); } }),
        ns_per_op(n, [&](long k) { for (long i = 0; i < k; i++) { std::stop_token c = tok; g_sink = c.stop_requested(); } }));

    row("register + unregister a callback",
        ns_per_op(n, [&](long k) { for (long i = 0; i < k; i++) { stopper::callback cb(s, [] { g_sink = 1; }); } }),
        ns_per_op(n, [&](long k) {
            for (long i = 0; i < k; i++) {
                uint64_t id = 0;
                stopper::stopper_on_stop(raw, [](void *, int32_t) { g_sink = 1; }, nullptr, &id);
                stopper::stopper_unregister(raw, id);
            }
        }),
        ns_per_op(n, [&](long k) { for (long i = 0; i < k; i++) { std::stop_callback cb(tok, [] { g_sink = 1; }); } }));

    row("create + stop + destroy",
        ns_per_op(n, [&](long k) { for (long i = 0; i < k; i++) { stopper::source t; t.stop(); } }),
        ns_per_op(n, [&](long k) { for (long i = 0; i < k; i++) { stopper::stopper *t = stopper::stopper_new(); stopper::stopper_stop(t, 0); stopper::stopper_release(t); } }),
        ns_per_op(n, [&](long k) { for (long i = 0; i < k; i++) { std::stop_source t; t.request_stop(); } }));
    return 0;
}
