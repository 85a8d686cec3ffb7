// stopper::callback: registration, order, the destructor's blocking rule, races, exceptions.
#include "harness.hpp"

#include <sys/wait.h>

#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

using namespace std::chrono_literals;
using stopper::callback;
using stopper::source;

using fn_callback = callback<std::function<void()>>;

static_assert(!std::is_copy_constructible_v<fn_callback>);
static_assert(!std::is_move_constructible_v<fn_callback>);
static_assert(!std::is_copy_assignable_v<fn_callback>);
static_assert(!std::is_move_assignable_v<fn_callback>);

TEST(callback_runs_once_on_the_stopping_thread) {
    source s;
    std::atomic<int> runs{0};
    std::thread::id who;
    callback cb(s, [&] {
        runs++;
        who = std::this_thread::get_id();
    });
    CHECK_EQ(runs.load(), 0);
    int seen_after_stop = -1;
    std::thread::id stopper_id;
    std::thread t([&] {
        stopper_id = std::this_thread::get_id();
        s.stop();
        seen_after_stop = runs.load();  // callbacks run before stop returns
    });
    t.join();
    CHECK_EQ(seen_after_stop, 1);
    CHECK(who == stopper_id);
    s.stop();
    CHECK_EQ(runs.load(), 1);
}

static std::atomic<int32_t> g_fnptr_reason{0};
static void record_reason(int32_t r) { g_fnptr_reason = r; }

TEST(callback_receives_the_reason) {
    source s;
    int32_t got = 0;
    int got_int = 0;
    int32_t got_auto = 0;
    bool plain = false;
    callback a(s, [&](int32_t r) { got = r; });
    callback b(s, [&](int r) { got_int = r; });
    callback c(s, [&](auto r) { got_auto = r; });  // generic: gets the reason
    callback d(s, [&] { plain = true; });
    callback e(s, &record_reason);  // a function pointer
    static_assert(std::is_same_v<decltype(e), callback<void (*)(int32_t)>>);
    s.stop(33);
    CHECK_EQ(got, 33);
    CHECK_EQ(got_int, 33);
    CHECK_EQ(got_auto, 33);
    CHECK(plain);
    CHECK_EQ(g_fnptr_reason.load(), 33);
}

TEST(callback_runs_in_registration_order) {
    source s;
    std::vector<int> order;
    callback c0(s, [&] { order.push_back(0); });
    callback c1(s, [&] { order.push_back(1); });
    auto c2 = std::make_unique<fn_callback>(s, [&] { order.push_back(2); });
    callback c3(s, [&] { order.push_back(3); });
    c2.reset();  // removed: never runs
    s.stop();
    CHECK(order == (std::vector<int>{0, 1, 3}));
}

TEST(callback_destroyed_before_stop_never_runs) {
    source s;
    int runs = 0;
    {
        callback cb(s, [&] { runs++; });
    }
    s.stop();
    CHECK_EQ(runs, 0);
}

TEST(callback_on_a_stopped_source_runs_in_the_constructor) {
    source s;
    s.stop(8);
    int32_t got = 0;
    std::thread::id who;
    callback cb(s, [&](int32_t r) {
        got = r;
        who = std::this_thread::get_id();
    });
    CHECK_EQ(got, 8);
    CHECK(who == std::this_thread::get_id());
}

TEST(callback_on_an_empty_source_never_runs) {
    source e(nullptr);
    int runs = 0;
    {
        callback cb(e, [&] { runs++; });
        e.stop();
    }
    CHECK_EQ(runs, 0);
}

TEST(callback_holds_a_reference) {
    auto s = std::make_unique<source>();
    int fd = s->fd();
    bool ran = false;
    source other = *s;  // to stop it later without keeping it alive past the check
    auto cb = std::make_unique<fn_callback>(*s, [&] { ran = true; });
    s.reset();
    other = source(nullptr);
    CHECK(th::fd_is_open(fd));  // the callback alone keeps the stopper
    cb.reset();
    CHECK(!th::fd_is_open(fd));
    CHECK(!ran);
}

TEST(callback_accepts_move_only_callables_and_copies_once) {
    source s;
    int got = 0;
    callback cb(s, [p = std::make_unique<int>(5), &got]() mutable { got = *p; });
    s.stop();
    CHECK_EQ(got, 5);

    struct counter {
        int *copies;
        int *calls;
        counter(int *c, int *k) : copies(c), calls(k) {}
        counter(const counter &o) : copies(o.copies), calls(o.calls) { ++*copies; }
        counter(counter &&o) noexcept = default;
        void operator()() && { ++*calls; }  // callable as an rvalue only, as std::stop_callback calls it
    };
    int copies = 0, calls = 0;
    source t;
    counter c(&copies, &calls);
    {
        callback<counter> by_copy(t, c);
        callback<counter> by_move(t, counter(&copies, &calls));
        CHECK_EQ(copies, 1);
        t.stop();
    }
    CHECK_EQ(calls, 2);
}

// The blocking rule: destroying a callback whose callable is running on another thread waits
// for it to return.
TEST(callback_destructor_waits_for_a_running_callable) {
    for (int i = 0; i < 5; i++) {
        source s;
        std::atomic<bool> entered{false}, finished{false};
        auto cb = std::make_unique<fn_callback>(s, [&] {
            entered = true;
            th::sleep_ms(40);
            finished = true;
        });
        std::thread t([&] { s.stop(); });
        CHECK(th::eventually([&] { return entered.load(); }));
        auto t0 = th::clock::now();
        cb.reset();
        CHECK(finished.load());  // the destructor returned only after the callable did
        CHECK(th::ms_since(t0) >= 10);
        t.join();
    }
}

TEST(callback_destroyed_inside_its_own_callable_does_not_block) {
    for (int i = 0; i < 50; i++) {
        source s;
        std::optional<fn_callback> opt;
        std::atomic<bool> done{false};
        opt.emplace(s, [&opt, &done] {
            std::atomic<bool> *d = &done;  // nothing of the closure is used after reset()
            opt.reset();
            d->store(true);
        });
        std::thread t([&] { s.stop(); });
        t.join();  // would hang (then the alarm fails the test) if the destructor waited for itself
        CHECK(done.load());
        CHECK(!opt.has_value());
    }
}

TEST(callback_may_stop_and_register_from_inside) {
    source a, b;
    int32_t b_reason = 0;
    callback on_b(b, [&](int32_t r) { b_reason = r; });
    callback chain(a, [&](int32_t r) { b.stop(r + 1); });  // a callback calling the library
    a.stop(10);
    CHECK_EQ(b_reason, 11);
}

// Many iterations of: one thread stops while another destroys the callback. After the
// destructor returns, the callable is not running and never runs again; the memory it uses is
// poisoned right after the destructor, so a late run is seen. A feedback loop on the timing
// keeps the two threads at the tipping point (and a few sleeps force each order), so some
// callbacks are removed before the stop, some have run, and some are running while their
// destructor is called (it must then wait).
namespace {
inline void spin(int n) {
    for (int k = 0; k < n; k++)
        std::atomic_signal_fence(std::memory_order_seq_cst);
}
template <class P>
inline void spin_until(P pred) {
    for (int k = 0; !pred(); k++)
        if (k > 2000)
            std::this_thread::yield();
}
}  // namespace

TEST(callback_unregistered_while_another_thread_stops) {
    constexpr int iterations = 4000;
    constexpr uint64_t alive = 0xA11CE;
    struct probe {
        std::atomic<uint64_t> magic{0};
        std::atomic<int> running{0};
    };
    probe p;
    std::atomic<int> violations{0}, ran{0}, overlapped{0};
    std::atomic<int> generation{0}, arrived{0}, done_generation{0};
    std::atomic<int> bias{0};  // > 0: the stop waits that long; < 0: the destructor does
    std::atomic<bool> quit{false};
    source current(nullptr);
    std::mutex current_m;

    std::thread stopper_thread([&] {
        int seen = 0;
        while (!quit.load()) {
            int g = generation.load();
            if (g == seen) {
                std::this_thread::yield();
                continue;
            }
            seen = g;
            source s;
            {
                std::lock_guard<std::mutex> lock(current_m);
                s = current;
            }
            arrived.store(g);
            if (g % 20 == 1)
                th::sleep_ms(1);  // now and then, surely after the destructor
            spin(bias.load() > 0 ? bias.load() : 0);
            s.stop();
            done_generation.store(g);
        }
    });

    for (int i = 1; i <= iterations; i++) {
        source s;
        p.magic = alive;
        int ran_before = ran.load();
        auto cb = std::make_unique<fn_callback>(s, [&p, &violations, &ran, i] {
            p.running = 1;
            if (p.magic.load() != alive)
                violations++;
            spin((i % 4) * 1500);
            if (p.magic.load() != alive)
                violations++;
            ran++;
            p.running = 0;
        });
        {
            std::lock_guard<std::mutex> lock(current_m);
            current = s;
        }
        generation.store(i);
        spin_until([&] { return arrived.load() == i; });
        if (i % 20 == 0)
            th::sleep_ms(1);  // now and then, surely after the stop
        spin(bias.load() < 0 ? -bias.load() : 0);
        if (p.running.load())
            overlapped++;
        cb.reset();
        p.magic = 0;  // "freed"
        if (p.running.load() != 0)
            violations++;
        spin_until([&] { return done_generation.load() == i; });
        int step = 10 + (i * 7) % 40;
        bias.store(ran.load() != ran_before ? bias.load() + step : bias.load() - step);
    }
    quit = true;
    stopper_thread.join();
    CHECK_EQ(violations.load(), 0);
    std::printf("    (%d callbacks ran before or during their destructor (%d during), %d were removed first)\n",
                ran.load(), overlapped.load(), iterations - ran.load());
    // The race must really have been run both ways, else this test tested nothing.
    CHECK_MSG(ran.load() > 0 && ran.load() < iterations, "the timing never mixed the two outcomes");
}

// ------------------------------------------------------------------ a throwing callable

CHILD_MODE(throw_on_stop) {
    source s;
    callback cb(s, [] { throw std::runtime_error("boom from the callable"); });
    std::thread t([&] { s.stop(); });
    t.join();
    return 0;  // not reached
}

CHILD_MODE(throw_in_constructor) {
    source s;
    s.stop();
    callback cb(s, [](int32_t) { throw 42; });  // runs at once, in the constructor
    return 0;  // not reached
}

TEST(callback_that_throws_terminates_with_a_message) {
    std::string err;
    int st = th::run_self("throw_on_stop", err);
    CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status " + std::to_string(st));
    CHECK_MSG(err.find("stopper::callback") != std::string::npos, err);
    CHECK_MSG(err.find("boom from the callable") != std::string::npos, err);

    err.clear();
    st = th::run_self("throw_in_constructor", err);
    CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status " + std::to_string(st));
    CHECK_MSG(err.find("stopper::callback") != std::string::npos, err);
    CHECK_MSG(err.find("not derived from std::exception") != std::string::npos, err);
}
