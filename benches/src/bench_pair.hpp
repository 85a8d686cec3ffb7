// Shared by the C++ benchmarks: option parsing, the interleaved A/B timing loop (run_pair) and
// the loop bodies it times (each_made, count_true, each).
#ifndef STOPPER_BENCH_PAIR_HPP
#define STOPPER_BENCH_PAIR_HPP

#include "bench_util.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace bench {

inline double g_scale = 1.0;
inline int g_rounds = 9;
inline int g_samples = 1000;
inline std::vector<std::string> g_only;

// Keeps a value or pointer alive in the eyes of the optimizer (no allocation is elided).
template <class T> inline void escape(T const &v) { asm volatile("" : : "g"(&v) : "memory"); }
inline void escape_ptr(void *p) { asm volatile("" : : "g"(p) : "memory"); }

inline long iters(double base)
{
    long n = (long)(base * g_scale);
    return n < 1 ? 1 : n;
}

[[noreturn]] inline void die(const char *prog, const char *what)
{
    std::fprintf(stderr, "%s: %s\n", prog, what);
    std::exit(2);
}

// --scale F --rounds R --samples N, then names of the benchmarks to run (default: all).
inline bool parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--scale" && i + 1 < argc)
            g_scale = std::atof(argv[++i]);
        else if (a == "--rounds" && i + 1 < argc)
            g_rounds = std::atoi(argv[++i]);
        else if (a == "--samples" && i + 1 < argc)
            g_samples = std::atoi(argv[++i]);
        else if (a.rfind("--", 0) != 0)
            g_only.push_back(a);
        else
            return false;
    }
    return g_scale > 0 && g_rounds >= 1 && g_samples >= 1;
}

inline bool want(const char *name)
{
    if (g_only.empty())
        return true;
    for (auto &o : g_only)
        if (o == name)
            return true;
    return false;
}

// A (stopper) then B (reference), n iterations each, g_rounds times after a warm-up; prints
// ns/op of every round.
template <class A, class B> void run_pair(const char *id, long n, A &&a, B &&b)
{
    std::vector<double> va, vb;
    a(n / 10 + 1);
    b(n / 10 + 1);
    for (int r = 0; r < g_rounds; r++) {
        int64_t t0 = bench_now_ns();
        a(n);
        int64_t t1 = bench_now_ns();
        b(n);
        int64_t t2 = bench_now_ns();
        va.push_back((double)(t1 - t0) / (double)n);
        vb.push_back((double)(t2 - t1) / (double)n);
    }
    bench_emit_pair(id, va.data(), vb.data(), va.size());
    std::fprintf(stderr, "  %-22s done\n", id);
}

// The timed loops run_pair takes, made from the one operation each side measures, so that a
// pair names only what is timed. Each returns a `(long n)` loop running the operation n times.

// `make()` returns a value (a constructor), kept alive to the end of the iteration (then its
// destructor): times construction + destruction. A non-movable type is fine (the value is
// built in place).
template <class Make> auto each_made(Make make)
{
    return [make](long n) {
        for (long i = 0; i < n; i++) {
            auto v = make();
            escape(v);
        }
    };
}

// `test()` returns a bool (a query); the true ones are counted, so that no call is elided.
template <class Test> auto count_true(Test test)
{
    return [test](long n) {
        long k = 0;
        for (long i = 0; i < n; i++)
            if (test())
                k++;
        escape(k);
    };
}

// `op()` does the whole operation itself (what it must keep alive, it passes to escape).
template <class Op> auto each(Op op)
{
    return [op](long n) {
        for (long i = 0; i < n; i++)
            op();
    };
}

} // namespace bench

#endif
