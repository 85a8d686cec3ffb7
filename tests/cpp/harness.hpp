// A small test runner for the C++ suite: TEST(name) registers a test, CHECK* record failures
// (from any thread), main() runs everything under a per-test alarm and ends with the line
// "N passed, N failed".
#pragma once

#include <stopper.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace th {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct test_case {
    const char *name;
    void (*fn)();
};

std::vector<test_case> &registry();

struct registrar {
    registrar(const char *name, void (*fn)()) { registry().push_back({name, fn}); }
};

/// Records a failure of the running test (thread-safe) and prints where.
void fail(const char *file, int line, const std::string &what);

/// Milliseconds since `t0`.
inline double ms_since(clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock::now() - t0).count();
}

inline void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

/// Whether `fd` is an open descriptor of this process.
bool fd_is_open(int fd);

/// Spins (yielding) until `pred` holds or `ms` pass; returns pred().
template <class P>
bool eventually(P pred, int ms = 2000) {
    auto t0 = clock::now();
    while (!pred()) {
        if (ms_since(t0) > ms)
            return pred();
        std::this_thread::yield();
    }
    return true;
}

/// Runs this test binary again with `arg` (a child mode handled in main), stderr captured.
/// Returns the raw wait status; `err` gets the child's stderr.
int run_self(const char *arg, std::string &err);

/// Child modes: main() calls these for "--child=<name>".
struct child_mode {
    const char *name;
    int (*fn)();
};
std::vector<child_mode> &child_modes();
struct child_registrar {
    child_registrar(const char *name, int (*fn)()) { child_modes().push_back({name, fn}); }
};

}  // namespace th

#define TH_CAT2(a, b) a##b
#define TH_CAT(a, b) TH_CAT2(a, b)

#define TEST(name)                                                    \
    static void name();                                               \
    static const th::registrar TH_CAT(name, _registrar)(#name, name); \
    static void name()

#define CHILD_MODE(name)                                                              \
    static int TH_CAT(child_, name)();                                                \
    static const th::child_registrar TH_CAT(name, _child_registrar)(#name, TH_CAT(child_, name)); \
    static int TH_CAT(child_, name)()

#define CHECK(cond)                                 \
    do {                                            \
        if (!(cond))                                \
            th::fail(__FILE__, __LINE__, #cond);    \
    } while (0)

#define CHECK_MSG(cond, msg)                                            \
    do {                                                                \
        if (!(cond))                                                    \
            th::fail(__FILE__, __LINE__, std::string(#cond) + ": " + (msg)); \
    } while (0)

#define CHECK_EQ(a, b)                                                                        \
    do {                                                                                      \
        auto th_a_ = (a);                                                                     \
        auto th_b_ = (b);                                                                     \
        if (!(th_a_ == th_b_))                                                                \
            th::fail(__FILE__, __LINE__,                                                      \
                     std::string(#a " == " #b ": ") + std::to_string(th_a_) + " != " + std::to_string(th_b_)); \
    } while (0)

// Checks that `expr` throws stopper::error with status `code`.
#define CHECK_THROWS_CODE(expr, expected_code)                                                        \
    do {                                                                                     \
        bool th_thrown_ = false;                                                             \
        try {                                                                                \
            (void)(expr);                                                                    \
        } catch (const stopper::error &th_e_) {                                              \
            th_thrown_ = true;                                                               \
            if (th_e_.code() != (expected_code))                                                      \
                th::fail(__FILE__, __LINE__,                                                 \
                         std::string(#expr " threw code ") + std::to_string(th_e_.code()));  \
        }                                                                                    \
        if (!th_thrown_)                                                                     \
            th::fail(__FILE__, __LINE__, std::string(#expr " did not throw stopper::error")); \
    } while (0)
