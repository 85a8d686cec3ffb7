// bench_cpp: the C++ wrapper (bindings/cpp/stopper.hpp) against std::stop_source /
// std::stop_callback / std::stop_token, and against the C calls it wraps.
//
//   bench_cpp [--scale F] [--rounds R] [is_set|source|callback|token...]
//
// A separate program from bench_core because a C++ file includes either stopper.hpp or
// stopper.h, never both (the wrapper's namespace `stopper` and the C type `stopper` would
// collide); the C calls are reached here as stopper::c_api::*. Built only when the header
// exists and compiles (see the Makefile).

#include "bench_pair.hpp"

#include "stopper.hpp"

#include <stop_token>
#include <thread>
#include <utility>

namespace {

using bench::count_true;
using bench::each;
using bench::each_made;
using bench::escape_ptr;
using bench::iters;
using bench::run_pair;
namespace c = stopper::c_api;

[[noreturn]] void die(const char *what) { bench::die("bench_cpp", what); }

void count_cb(void *user_data, int32_t) { ++*static_cast<long *>(user_data); }

struct CountFn {
    long *p;
    void operator()() const noexcept { ++*p; }
};

// The C calls of a callback that never runs: stopper_on_stop + stopper_unregister on `cs`
// (`failed` is set if either does not return OK).
auto c_register_unregister(c::stopper *cs, long &counter, bool &failed)
{
    return each([cs, &counter, &failed] {
        uint64_t id = 0;
        if (c::stopper_on_stop(cs, count_cb, &counter, &id) != STOPPER_OK ||
            c::stopper_unregister(cs, id) != STOPPER_OK)
            failed = true;
    });
}

void bench_is_set()
{
    stopper::source s;
    std::stop_source src;
    std::stop_token tok = src.get_token();
    run_pair("cpp_is_set", iters(2e7), count_true([&] { return s.is_set(); }),
             count_true([&] { return tok.stop_requested(); }));
}

void bench_source()
{
    auto wrapper = each_made([] { return stopper::source(); });
    run_pair("cpp_source", iters(1e6), wrapper, each_made([] { return std::stop_source(); }));
    run_pair("cpp_source_vs_c", iters(1e6), wrapper, each([] {
                 c::stopper *s = c::stopper_new();
                 escape_ptr(s);
                 c::stopper_release(s);
             }));
}

void bench_callback()
{
    long counter = 0;
    stopper::source s;
    std::stop_source src;
    std::stop_token tok = src.get_token();
    auto wrapper = each_made([&] { return stopper::callback(s, CountFn{&counter}); });
    run_pair("cpp_callback", iters(2e6), wrapper,
             each_made([&] { return std::stop_callback(tok, CountFn{&counter}); }));
    c::stopper *cs = s.native();
    bool failed = false;
    run_pair("cpp_callback_vs_c", iters(2e6), wrapper, c_register_unregister(cs, counter, failed));
    // The same wrapper against every C call it makes: it holds a reference to the stopper for
    // its lifetime (shared ownership, as std::stop_callback holds its stop state), so
    // stopper_retain + stopper_on_stop + stopper_unregister + stopper_release.
    run_pair("cpp_callback_vs_c_calls", iters(2e6), wrapper, each([&] {
                 c::stopper *r = c::stopper_retain(cs);
                 uint64_t id = 0;
                 if (c::stopper_on_stop(r, count_cb, &counter, &id) != STOPPER_OK ||
                     c::stopper_unregister(r, id) != STOPPER_OK)
                     failed = true;
                 c::stopper_release(r);
             }));
    if (failed || counter != 0)
        die("callback register/unregister misbehaved");
    // and one that runs: the wrapper's callback must fire on stop
    {
        stopper::source t;
        stopper::callback cb(t, CountFn{&counter});
        t.stop();
        if (counter != 1)
            die("a stopper::callback did not run on stop");
    }
}

void bench_token()
{
    stopper::source s;
    stopper::token t = s.get_token();
    std::stop_source src;
    std::stop_token tok = src.get_token();
    c::stopper *cs = s.native();
    const uint8_t *flag = c::stopper_flag(cs);
    auto stop_requested = count_true([&] { return t.stop_requested(); });
    run_pair("cpp_token_stop_requested", iters(2e7), stop_requested,
             count_true([&] { return tok.stop_requested(); }));
    run_pair("cpp_token_stop_requested_vs_c", iters(2e7), stop_requested,
             count_true([&] { return c::stopper_flag_is_set(flag); }));
    // get_token() and the token's destructor: one reference taken and given back.
    auto get_token = each_made([&] { return s.get_token(); });
    run_pair("cpp_get_token_vs_c", iters(5e6), get_token, each([&] {
                 c::stopper *r = c::stopper_retain(cs);
                 escape_ptr(r);
                 c::stopper_release(r);
             }));
    run_pair("cpp_get_token", iters(5e6), get_token, each_made([&] { return src.get_token(); }));
    long counter = 0;
    bool failed = false;
    run_pair("cpp_callback_token_vs_c", iters(2e6),
             each_made([&] { return stopper::callback(t, CountFn{&counter}); }),
             c_register_unregister(cs, counter, failed));
    if (failed || counter != 0)
        die("token callback register/unregister misbehaved");
}

} // namespace

int main(int argc, char **argv)
{
    if (!bench::parse_args(argc, argv)) {
        std::fprintf(stderr, "usage: bench_cpp [--scale F] [--rounds R] [is_set|source|callback|token...]\n");
        return 2;
    }
    std::printf("{\"kind\":\"meta\",\"program\":\"bench_cpp\",\"rounds\":%d,\"scale\":%g}\n", bench::g_rounds,
                bench::g_scale);
    // a threaded process, like bench_core
    std::thread([] {}).join();
    const std::pair<const char *, void (*)()> benches[] = {
        {"is_set", bench_is_set}, {"source", bench_source}, {"callback", bench_callback}, {"token", bench_token},
    };
    for (auto [name, run] : benches)
        if (bench::want(name))
            run();
    return 0;
}
