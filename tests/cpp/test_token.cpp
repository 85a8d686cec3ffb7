// stopper::token, the std spellings of source, callbacks made from tokens and how they call their
// callable, stopper::thread passing a token, and the condition_variable_any waits.
//
// Several tests port the behaviours that libstdc++'s and libc++'s own tests check for
// std::stop_token, std::stop_callback, std::jthread and condition_variable_any's stop_token
// overloads, rewritten for stopper's types (same behaviour, our words).
#include "harness.hpp"

#include <sys/wait.h>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

using namespace std::chrono_literals;
using stopper::callback;
using stopper::source;
using stopper::token;

static_assert(std::is_nothrow_default_constructible_v<token>);
static_assert(std::is_nothrow_copy_constructible_v<token>);
static_assert(std::is_nothrow_move_constructible_v<token>);
static_assert(std::is_nothrow_copy_assignable_v<token>);
static_assert(std::is_nothrow_move_assignable_v<token>);
static_assert(std::is_nothrow_swappable_v<token>);
// A token cannot stop: it has no stop(), request_stop() or anything that changes the stopper.
template <class T, class = void>
struct has_request_stop : std::false_type {};
template <class T>
struct has_request_stop<T, std::void_t<decltype(std::declval<T &>().request_stop())>> : std::true_type {};
template <class T, class = void>
struct has_stop : std::false_type {};
template <class T>
struct has_stop<T, std::void_t<decltype(std::declval<T &>().stop())>> : std::true_type {};
static_assert(!has_request_stop<token>::value && !has_stop<token>::value);
static_assert(has_request_stop<source>::value && has_stop<source>::value);
// No conversion from a token back to something that can stop.
static_assert(!std::is_constructible_v<source, token>);

// ------------------------------------------------------------------------------------ token

TEST(token_default_has_no_stopper) {
    token t;
    CHECK(!t.stop_possible());
    CHECK(!t.stop_requested());
    CHECK_EQ(t.reason(), 0);
    CHECK(t.native() == nullptr);
    auto t0 = th::clock::now();
    CHECK(!t.wait());  // no stopper: returns at once, never blocks forever
    CHECK(!t.wait(20ms));
    CHECK(th::ms_since(t0) >= 15);
    CHECK(t == token());
}

TEST(token_sees_the_stop_of_its_source) {
    source s;
    token t = s.get_token();
    CHECK(t.stop_possible());
    CHECK(!t.stop_requested());
    CHECK(!s.stop_requested());
    CHECK(s.stop_possible());
    CHECK(t.native() == s.native());
    CHECK(s.request_stop());
    CHECK(!s.request_stop());  // only the first request stops it
    CHECK(s.stop_requested());
    CHECK(t.stop_requested());
    CHECK(t.stop_possible());
    CHECK_EQ(t.reason(), STOPPER_REASON_REQUESTED);
    CHECK(t.wait());
    CHECK(t.wait(0ms));
}

TEST(token_reason_is_the_winning_stop) {
    source s;
    token t = s.get_token();
    CHECK_EQ(t.reason(), 0);
    s.stop(42);
    s.stop(7);
    CHECK_EQ(t.reason(), 42);
}

TEST(token_of_an_empty_source_cannot_stop) {
    source e(nullptr);
    CHECK(!e.stop_possible());
    token t = e.get_token();
    CHECK(!t.stop_possible());
    CHECK(!t.stop_requested());
    CHECK(!t.wait());
    CHECK(!e.request_stop());
    CHECK(t == token());
}

// As libstdc++'s stop_token.cc: copies, moves and swaps keep or carry the shared stop state.
TEST(token_copy_move_swap_and_equality) {
    source s;
    token a = s.get_token();
    token copy(a);
    CHECK(copy == a);
    CHECK(copy.stop_possible() && a.stop_possible());
    token moved(std::move(a));
    CHECK(moved == copy);
    CHECK(moved != a);
    CHECK(!a.stop_possible());  // moved-from: no stopper
    CHECK(!a.stop_requested());
    s.request_stop();
    CHECK(moved.stop_requested() && copy.stop_requested());
    CHECK(!a.stop_requested());
    a.swap(moved);
    CHECK(a == copy);
    CHECK(!moved.stop_possible());
    CHECK(a.stop_requested());
    swap(moved, copy);
    CHECK(moved == a);
    CHECK(!copy.stop_possible());

    source s1, s2;
    token x = s1.get_token();
    token y = s2.get_token();
    CHECK(x != y);
    y = x;
    CHECK(x == y);
    y = s2.get_token();
    CHECK(x != y);
    y = std::move(x);
    CHECK(y == s1.get_token());
    CHECK(!x.stop_possible());
    token &self = y;
    y = self;  // self-assignment keeps it
    CHECK(y == s1.get_token());
}

// As libc++'s request_stop test: of many threads asking at once, exactly one is told it stopped
// the stopper, and every callback runs once, before that caller's request_stop returns.
TEST(request_stop_races_one_winner) {
    for (int round = 0; round < 100; round++) {
        source s;
        token t = s.get_token();
        std::atomic<int> runs{0};
        callback cb(t, [&] { runs++; });
        std::atomic<int> winners{0};
        std::atomic<bool> go{false};
        std::atomic<int> seen_runs_by_winner{-1};
        std::vector<std::thread> ts;
        for (int i = 0; i < 4; i++)
            ts.emplace_back([&] {
                while (!go.load())
                    std::this_thread::yield();
                if (s.request_stop()) {
                    winners++;
                    seen_runs_by_winner = runs.load();
                }
                CHECK(t.stop_requested());  // every caller sees the stop once request_stop returns
            });
        go = true;
        for (auto &x : ts)
            x.join();
        CHECK_EQ(winners.load(), 1);
        CHECK_EQ(runs.load(), 1);
        CHECK_EQ(seen_runs_by_winner.load(), 1);
    }
}

TEST(token_outlives_its_source) {
    token t;
    stopper::native_handle_type raw = nullptr;
    {
        source s;
        t = s.get_token();
        raw = s.native();
    }
    // The token holds a reference: the stopper is alive, and C code can still stop it.
    CHECK(t.stop_possible());
    CHECK(!t.stop_requested());
    CHECK_EQ(stopper::c_api::stopper_stop(raw, 9), 1);
    CHECK(t.stop_requested());
    CHECK_EQ(t.reason(), 9);
}

TEST(token_wait_wakes_on_a_stop_from_another_thread) {
    source s;
    token t = s.get_token();
    std::thread stopper_thread([s]() mutable {
        th::sleep_ms(30);
        s.request_stop();
    });
    auto t0 = th::clock::now();
    CHECK(t.wait(20s));
    CHECK(th::ms_since(t0) < 10000);
    stopper_thread.join();
    source r;
    CHECK(!r.get_token().wait(10ms));  // times out while running
    CHECK(!r.get_token().wait_until(th::clock::now() + 5ms));
}

TEST(token_of_a_child_and_a_deadline) {
    source parent;
    source child = parent.child();
    token t = child.get_token();
    parent.stop(5);
    CHECK(t.stop_requested());
    CHECK_EQ(t.reason(), 5);
    source d;
    token dt = d.get_token();
    d.stop_after(10ms, 77);
    CHECK(dt.wait(20s));
    CHECK_EQ(dt.reason(), 77);
}

TEST(tokens_copied_and_dropped_across_threads) {
    // Copies made and released from many threads at once leave the count right: the stopper
    // is alive while any token is, and stops are seen by every copy.
    for (int round = 0; round < 20; round++) {
        source s;
        token t = s.get_token();
        std::atomic<int> seen{0};
        std::vector<std::thread> ts;
        for (int i = 0; i < 4; i++)
            ts.emplace_back([t, &seen] {
                for (int k = 0; k < 200; k++) {
                    token c = t;
                    token m = std::move(c);
                    (void)m.stop_requested();
                }
                if (t.wait(20s))
                    seen++;
            });
        s = source(nullptr);  // the source goes away first
        stopper::c_api::stopper_stop(t.native(), 0);
        for (auto &x : ts)
            x.join();
        CHECK_EQ(seen.load(), 4);
    }
}

// ------------------------------------------------------------------------------------ callback

// As libstdc++'s stop_callback/invoke.cc (PR 92895): the callable is called with the value
// category std::stop_callback uses, std::forward<Callback>(callback)().
static int g_lvalue_calls[6];
static int g_rvalue_calls[6];
struct by_category {
    int i;
    void operator()() const & { ++g_lvalue_calls[i]; }
    void operator()() && { ++g_rvalue_calls[i]; }
};
struct by_category_reason {
    int i;
    void operator()(int32_t) const & { ++g_lvalue_calls[i]; }
    void operator()(int32_t) && { ++g_rvalue_calls[i]; }
};

TEST(callback_calls_its_callable_as_std_stop_callback_does) {
    for (int &x : g_lvalue_calls)
        x = 0;
    for (int &x : g_rvalue_calls)
        x = 0;
    source s;
    token t = s.get_token();
    by_category f3{3};
    by_category_reason f5{5};
    {
        callback<by_category> c0(t, by_category{0});
        callback<by_category> c1(s, by_category{1});
        callback c2(t, by_category{2});  // deduced: held by value
        callback<by_category &> c3(t, f3);
        callback<const by_category> c4(t, by_category{4});
        callback<by_category_reason &> c5(s, f5);
        s.request_stop();
    }
    for (int i : {0, 1, 2}) {
        CHECK_MSG(g_rvalue_calls[i] == 1 && g_lvalue_calls[i] == 0, "held by value: called as an rvalue");
    }
    CHECK_MSG(g_lvalue_calls[3] == 1 && g_rvalue_calls[3] == 0, "callback<F&>: calls the lvalue it refers to");
    CHECK_MSG(g_lvalue_calls[4] == 1 && g_rvalue_calls[4] == 0, "callback<const F>: a const rvalue takes const&");
    CHECK_MSG(g_lvalue_calls[5] == 1 && g_rvalue_calls[5] == 0, "callback<F&> with a reason: the lvalue");

    // Already stopped: the constructor calls it at once, with the same value category.
    for (int &x : g_lvalue_calls)
        x = 0;
    for (int &x : g_rvalue_calls)
        x = 0;
    callback<by_category &> late_ref(t, f3);
    callback<by_category> late_val(t, by_category{0});
    CHECK_EQ(g_lvalue_calls[3], 1);
    CHECK_EQ(g_rvalue_calls[3], 0);
    CHECK_EQ(g_rvalue_calls[0], 1);
    CHECK_EQ(g_lvalue_calls[0], 0);
}

TEST(callback_ref_calls_the_callers_object) {
    // callback<F&> neither copies nor moves from the object: the state it changes is the caller's.
    struct counter {
        int n = 0;
        void operator()() & { n++; }
    } c;
    source s;
    {
        callback<counter &> cb(s.get_token(), c);
        s.stop();
    }
    CHECK_EQ(c.n, 1);
}

TEST(callback_from_a_token_runs_and_unregisters) {
    source s;
    token t = s.get_token();
    int ran = 0;
    { callback cb(t, [&] { ran++; }); }  // unregistered before the stop: never runs
    int32_t reason = 0;
    callback cb(std::move(t), [&](int32_t r) {
        ran++;
        reason = r;
    });
    CHECK(!t.stop_possible());  // the callback took the token's reference
    s.stop(3);
    CHECK_EQ(ran, 1);
    CHECK_EQ(reason, 3);
    callback after(s.get_token(), [&] { ran += 10; });  // already stopped: runs at once
    CHECK_EQ(ran, 11);
}

TEST(callback_on_a_token_without_stopper_never_runs) {
    bool ran = false;
    {
        callback cb(token(), [&] { ran = true; });
        callback cb2(source(nullptr).get_token(), [&] { ran = true; });
    }
    CHECK(!ran);
}

TEST(callback_keeps_the_stopper_of_its_token_alive) {
    bool ran = false;
    std::unique_ptr<callback<std::function<void()>>> cb;
    stopper::native_handle_type raw = nullptr;
    {
        source s;
        raw = s.native();
        cb = std::make_unique<callback<std::function<void()>>>(s.get_token(), [&] { ran = true; });
    }
    stopper::c_api::stopper_stop(raw, 0);  // alive through the callback's reference
    CHECK(ran);
    cb.reset();
}

// As libstdc++'s deadlock-mt.cc: a callback destroying another callback of the same stopper
// while the stop runs them must not deadlock, and the destroyed one is not run afterwards.
TEST(callback_destroying_another_during_the_stop) {
    for (int round = 0; round < 50; round++) {
        source s;
        token t = s.get_token();
        int late_runs = 0;
        std::unique_ptr<callback<std::function<void()>>> victim;
        auto drop_victim = [&victim] { victim.reset(); };
        callback first(t, drop_victim);
        victim = std::make_unique<callback<std::function<void()>>>(t, [&late_runs] { late_runs++; });
        callback second(t, drop_victim);
        std::thread stopping([&] { s.request_stop(); });
        stopping.join();
        CHECK_EQ(late_runs, 0);
        CHECK(!victim);
    }
}

// ------------------------------------------------------------------------------------ thread

TEST(thread_passes_a_token_first_as_jthread_does) {
    std::atomic<bool> started{false};
    std::atomic<bool> saw_stop{false};
    token kept;
    std::mutex km;
    {
        stopper::thread t([&](token tk) {
            CHECK(tk.stop_possible());
            CHECK(!tk.stop_requested());
            {
                std::lock_guard<std::mutex> g(km);
                kept = tk;
            }
            started = true;
            tk.wait();
            saw_stop = tk.stop_requested();
        });
        CHECK(th::eventually([&] { return started.load(); }));
        std::lock_guard<std::mutex> g(km);
        CHECK(kept == t.get_source().get_token());
        CHECK(!kept.stop_requested());
    }  // the destructor stops and joins
    CHECK(saw_stop);
    CHECK(kept.stop_requested());  // the token outlives the thread and its source
}

TEST(thread_token_with_arguments_and_without) {
    source s;
    std::atomic<int> sum{0};
    {
        stopper::thread a(s, [&](token tk, int x, const std::string &y) {
            sum += (tk == s.get_token()) ? x + static_cast<int>(y.size()) : -1000000;
        }, 100, std::string("abcd"));
        stopper::thread b(s, [&](const token &tk) { sum += tk.stop_possible() ? 1 : -1000000; });
        stopper::thread c(s, [&](int x) { sum += x; }, 20000);  // no token: f(args...)
        stopper::thread d(s, [&](source &ws) { sum += ws == s ? 300000 : -1000000; });
        a.join();
        b.join();
        c.join();
        d.join();
    }
    CHECK_EQ(sum.load(), 104 + 1 + 20000 + 300000);
}

TEST(thread_generic_callable_gets_the_token) {
    // As std::jthread: a callable that accepts a token first gets one, even a generic one.
    std::atomic<bool> got_token{false};
    {
        stopper::thread t([&](auto first, int) { got_token = std::is_same_v<decltype(first), token>; }, 5);
        t.join();
    }
    CHECK(got_token);
}

// What a decay-copy costs: every copy and move of these is counted.
struct counted {
    static std::atomic<int> copies, moves;
    int v = 0;
    explicit counted(int x) : v(x) {}
    counted(const counted &o) : v(o.v) { copies++; }
    counted(counted &&o) : v(o.v) { moves++; }
};
std::atomic<int> counted::copies{0};
std::atomic<int> counted::moves{0};

TEST(thread_decay_copies_callable_and_arguments_once) {
    counted arg(7);
    struct body {
        counted c;
        std::atomic<int> *out;
        void operator()(token, const counted &a) && { *out = a.v + c.v; }
    };
    std::atomic<int> out{0};
    body f{counted(100), &out};
    counted::copies = 0;
    counted::moves = 0;
    {
        stopper::thread t(f, arg);  // lvalues: one copy each, made here
        t.join();
    }
    CHECK_EQ(out.load(), 107);
    CHECK_EQ(counted::copies.load(), 2);  // the callable's member and the argument, once each
    CHECK_EQ(counted::moves.load(), 0);   // nothing moved again on the new thread
    counted::copies = 0;
    counted::moves = 0;
    {
        stopper::thread t(body{counted(1), &out}, counted(2));  // rvalues: moved once each
        t.join();
    }
    CHECK_EQ(out.load(), 3);
    CHECK_EQ(counted::copies.load(), 0);
    CHECK_EQ(counted::moves.load(), 2);
}

// A type that can only be copied (its move constructor is deleted), as std::thread accepts.
struct copy_only {
    int v;
    explicit copy_only(int x) : v(x) {}
    copy_only(const copy_only &) = default;
    copy_only(copy_only &&) = delete;
};
struct copy_only_fn {
    std::atomic<int> *out;
    copy_only_fn(std::atomic<int> *o) : out(o) {}
    copy_only_fn(const copy_only_fn &) = default;
    copy_only_fn(copy_only_fn &&) = delete;
    void operator()(const copy_only &a) const { *out += a.v; }
    void operator()(token, const copy_only &a, int b) const { *out += a.v * b; }
};

TEST(thread_accepts_copy_only_callable_and_arguments) {
    std::atomic<int> out{0};
    copy_only_fn f(&out);
    copy_only a(5);
    {
        stopper::thread t(f, a);
        t.join();
    }
    {
        stopper::thread t(source(), f, a, 3);
        t.join();
    }
    CHECK_EQ(out.load(), 5 + 15);
}

// A type whose move throws: std::thread never moves it on the new thread, so a call that takes
// it by reference never terminates the program. Run in a child so a regression is a failure,
// not the end of the suite.
struct throwing_move {
    int v;
    explicit throwing_move(int x) : v(x) {}
    throwing_move(const throwing_move &) = default;
    throwing_move(throwing_move &&) noexcept(false) { throw std::runtime_error("moved"); }
};
struct throwing_move_fn {
    std::atomic<int> *out;
    throwing_move_fn(std::atomic<int> *o) : out(o) {}
    throwing_move_fn(const throwing_move_fn &) = default;
    throwing_move_fn(throwing_move_fn &&) noexcept(false) { throw std::runtime_error("moved"); }
    void operator()(token t, const throwing_move &a) const { *out += t.stop_possible() ? a.v : -1; }
};

CHILD_MODE(thread_throwing_move) {
    std::atomic<int> out{0};
    throwing_move_fn f(&out);
    throwing_move a(42);
    {
        stopper::thread t(f, a);
        t.join();
    }
    return out.load() == 42 ? 0 : 3;
}

TEST(thread_never_moves_on_the_new_thread) {
    std::string err;
    int st = th::run_self("thread_throwing_move", err);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: " + err);
}

TEST(thread_copy_that_throws_is_thrown_by_the_constructor) {
    struct bad_copy {
        bad_copy() = default;
        bad_copy(const bad_copy &) { throw std::runtime_error("no copy"); }
        bad_copy(bad_copy &&) = default;
    };
    bad_copy b;
    bool thrown = false;
    source s;
    try {
        stopper::thread t(s, [](const bad_copy &) {}, b);
    } catch (const std::runtime_error &) {
        thrown = true;
    }
    CHECK(thrown);
    CHECK(s.join(5s));  // no worker was left inside
}

// As libstdc++'s and libc++'s jthread tests: the thread's token and source are the worker's.
TEST(thread_get_token_and_std_spellings) {
    CHECK(stopper::thread::hardware_concurrency() == std::thread::hardware_concurrency());
    stopper::thread none;
    CHECK(!none.get_token().stop_possible());
    CHECK(!none.get_stop_source());
    token seen;
    std::mutex m;
    std::atomic<bool> ready{false};
    stopper::thread t([&](token tk) {
        {
            std::lock_guard<std::mutex> g(m);
            seen = tk;
        }
        ready = true;
        tk.wait();
    });
    CHECK(th::eventually([&] { return ready.load(); }));
    {
        std::lock_guard<std::mutex> g(m);
        CHECK(seen == t.get_token());
        CHECK(seen == t.get_stop_token());
        CHECK(t.get_stop_source() == t.get_source());
    }
    token kept = t.get_stop_token();
    CHECK(!kept.stop_requested());
    CHECK(t.get_stop_source().request_stop());
    CHECK(!t.request_stop());  // already stopped
    t.join();
    CHECK(kept.stop_requested());
}

// A callback asking for the stop again (re-entrantly, from inside the stop) gets false and does
// not deadlock; a callback stopping another stopper runs that one's callbacks in turn.
TEST(callback_requesting_the_stop_again) {
    source s, other;
    bool again = true;
    bool chained = false;
    callback on_other(other.get_token(), [&] { chained = true; });
    callback cb(s.get_token(), [&] {
        again = s.request_stop();
        other.request_stop();
    });
    CHECK(s.request_stop());
    CHECK(!again);
    CHECK(chained);
}

// As libstdc++'s jthread.cc: a detached worker keeps running until its token is stopped.
TEST(thread_detached_worker_stops_through_its_token) {
    std::atomic<bool> finished{false};
    source kept;
    {
        stopper::thread t([&](token tk) {
            tk.wait();
            finished = true;
        });
        kept = t.get_source();
        t.detach();
        CHECK(!t.joinable());
    }
    CHECK(!finished);
    kept.request_stop();
    CHECK(kept.join(20s));
    CHECK(finished);
}

// ------------------------------------------------------------------------------------ cv waits

struct cv_fixture {
    std::mutex m;
    std::condition_variable_any cv;
    bool ready = false;
};

TEST(cv_wait_returns_true_when_pred_becomes_true) {
    cv_fixture f;
    source s;
    std::thread setter([&] {
        th::sleep_ms(20);
        std::lock_guard<std::mutex> g(f.m);
        f.ready = true;
        f.cv.notify_all();
    });
    std::unique_lock<std::mutex> lk(f.m);
    CHECK(stopper::wait(f.cv, lk, s.get_token(), [&] { return f.ready; }));
    CHECK(lk.owns_lock());
    lk.unlock();
    setter.join();
    CHECK(!s.stop_requested());
}

// As libstdc++'s condition_variable_any/stop_token/wait_on.cc: a stop wakes the wait, which
// returns false (pred() is still false) with the token stopped.
TEST(cv_wait_wakes_on_a_stop) {
    cv_fixture f;
    source s;
    token t = s.get_token();
    std::atomic<bool> waiting{false};
    bool res = true;
    bool stopped_seen = false;
    std::thread waiter([&] {
        std::unique_lock<std::mutex> lk(f.m);
        waiting = true;
        res = stopper::wait(f.cv, lk, t, [&] { return f.ready; });
        stopped_seen = t.stop_requested();
        CHECK(lk.owns_lock());
    });
    CHECK(th::eventually([&] { return waiting.load(); }));
    th::sleep_ms(20);
    auto t0 = th::clock::now();
    s.request_stop();
    waiter.join();
    CHECK(th::ms_since(t0) < 10000);
    CHECK(!res);
    CHECK(stopped_seen);
}

TEST(cv_wait_after_a_stop_returns_pred) {
    cv_fixture f;
    source s;
    s.request_stop();
    std::unique_lock<std::mutex> lk(f.m);
    int calls = 0;
    CHECK(!stopper::wait(f.cv, lk, s.get_token(), [&] { calls++; return false; }));
    CHECK_EQ(calls, 1);
    CHECK(stopper::wait(f.cv, lk, s.get_token(), [&] { return true; }));
    CHECK(stopper::wait_for(f.cv, lk, s.get_token(), 1h, [&] { return true; }));
    CHECK(!stopper::wait_until(f.cv, lk, s.get_token(), std::chrono::system_clock::now() + 1h, [] { return false; }));
}

TEST(cv_wait_reevaluates_pred_after_the_stop) {
    // The standard's wait returns pred() after the stop: a predicate made true by the same
    // stopping thread (before it stopped) is reported true.
    cv_fixture f;
    source s;
    std::atomic<bool> waiting{false};
    bool res = false;
    std::thread waiter([&] {
        std::unique_lock<std::mutex> lk(f.m);
        waiting = true;
        res = stopper::wait(f.cv, lk, s.get_token(), [&] { return f.ready; });
    });
    CHECK(th::eventually([&] { return waiting.load(); }));
    {
        std::lock_guard<std::mutex> g(f.m);
        f.ready = true;  // no notify: only the stop wakes it
        s.request_stop();  // stopped while this thread holds the caller's lock: no deadlock
    }
    waiter.join();
    CHECK(res);
}

TEST(cv_wait_for_times_out_with_pred) {
    cv_fixture f;
    source s;
    std::unique_lock<std::mutex> lk(f.m);
    auto t0 = th::clock::now();
    CHECK(!stopper::wait_for(f.cv, lk, s.get_token(), 30ms, [&] { return f.ready; }));
    CHECK(th::ms_since(t0) >= 25);
    CHECK(lk.owns_lock());
    // Time-out with pred true (changed without a notify): true, as the standard's pred() says.
    bool flip = false;
    CHECK(stopper::wait_for(f.cv, lk, s.get_token(), 20ms, [&] {
        bool r = flip;
        flip = true;
        return r;
    }));
    // Zero and negative durations only look.
    CHECK(!stopper::wait_for(f.cv, lk, s.get_token(), 0ms, [] { return false; }));
    CHECK(!stopper::wait_for(f.cv, lk, s.get_token(), -5s, [] { return false; }));
    CHECK(!s.stop_requested());
}

TEST(cv_wait_until_times_out_and_wakes_on_a_stop) {
    cv_fixture f;
    source s;
    token t = s.get_token();
    {
        std::unique_lock<std::mutex> lk(f.m);
        auto t0 = th::clock::now();
        CHECK(!stopper::wait_until(f.cv, lk, t, std::chrono::steady_clock::now() + 30ms, [&] { return f.ready; }));
        CHECK(th::ms_since(t0) >= 25);
        CHECK(!stopper::wait_until(f.cv, lk, t, std::chrono::system_clock::now() + 10ms, [&] { return f.ready; }));
    }
    std::atomic<bool> waiting{false};
    bool res = true;
    std::thread waiter([&] {
        std::unique_lock<std::mutex> lk(f.m);
        waiting = true;
        res = stopper::wait_until(f.cv, lk, t, std::chrono::steady_clock::now() + 60s, [&] { return f.ready; });
    });
    CHECK(th::eventually([&] { return waiting.load(); }));
    auto t0 = th::clock::now();
    s.request_stop();
    waiter.join();
    CHECK(!res);
    CHECK(th::ms_since(t0) < 10000);
    // A wait_for too long to add to now() waits (and is woken) instead of overflowing.
    std::unique_lock<std::mutex> lk(f.m);
    CHECK(!stopper::wait_for(f.cv, lk, t, std::chrono::hours::max(), [] { return false; }));
}

TEST(cv_wait_with_a_token_without_stopper_is_a_plain_wait) {
    cv_fixture f;
    token none = source(nullptr).get_token();
    CHECK(!none.stop_possible());
    std::thread setter([&] {
        th::sleep_ms(20);
        std::lock_guard<std::mutex> g(f.m);
        f.ready = true;
        f.cv.notify_all();
    });
    std::unique_lock<std::mutex> lk(f.m);
    CHECK(stopper::wait(f.cv, lk, none, [&] { return f.ready; }));  // returns when pred does
    lk.unlock();
    setter.join();
    lk.lock();
    f.ready = false;
    CHECK(!stopper::wait_for(f.cv, lk, token(), 10ms, [&] { return f.ready; }));
    CHECK(!stopper::wait_until(f.cv, lk, token(), std::chrono::steady_clock::now() + 5ms, [&] { return f.ready; }));
}

TEST(cv_wait_stop_from_inside_pred) {
    // pred() itself stops the token: no deadlock (the wake-up callback runs on this thread,
    // which holds the caller's lock), and the wait returns pred() evaluated after the stop.
    cv_fixture f;
    source s;
    std::unique_lock<std::mutex> lk(f.m);
    int calls = 0;
    CHECK(!stopper::wait(f.cv, lk, s.get_token(), [&] {
        calls++;
        s.request_stop();
        return false;
    }));
    CHECK_EQ(calls, 2);
    CHECK(s.stop_requested());
    CHECK(lk.owns_lock());
}

// As libc++'s condition_variable_any stop_token tests: an exception from pred() leaves the wait
// with the lock held again, and the wake-up callback gone (a later stop touches nothing of it).
TEST(cv_wait_pred_throws) {
    source s;
    std::condition_variable_any cv;
    std::mutex m;
    std::unique_lock<std::mutex> lk(m);
    int calls = 0;
    bool thrown = false;
    try {
        stopper::wait(cv, lk, s.get_token(), [&]() -> bool {
            calls++;
            throw std::runtime_error("pred");
        });
    } catch (const std::runtime_error &) {
        thrown = true;
    }
    CHECK(thrown);
    CHECK_EQ(calls, 1);
    CHECK(lk.owns_lock());
    bool later = false;
    callback after(s.get_token(), [&] { later = true; });
    CHECK(s.request_stop());  // runs only the callbacks still registered
    CHECK(later);
}

// A clock whose now() throws (armed on demand): the exception leaves wait_until with the lock
// held again, and the wait's own state released (a stop afterwards does not deadlock).
struct throwing_clock {
    using duration = std::chrono::steady_clock::duration;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::time_point<throwing_clock>;
    static constexpr bool is_steady = true;
    static std::atomic<bool> armed;
    static time_point now() {
        if (armed)
            throw std::runtime_error("clock");
        return time_point(std::chrono::steady_clock::now().time_since_epoch());
    }
};
std::atomic<bool> throwing_clock::armed{false};

TEST(cv_wait_until_clock_throws) {
    source s;
    std::condition_variable_any cv;
    std::mutex m;
    std::unique_lock<std::mutex> lk(m);
    auto deadline = throwing_clock::now() + 10s;
    throwing_clock::armed = true;
    bool thrown = false;
    try {
        stopper::wait_until(cv, lk, s.get_token(), deadline, [] { return false; });
    } catch (const std::runtime_error &) {
        thrown = true;
    }
    throwing_clock::armed = false;
    CHECK(thrown);
    CHECK(lk.owns_lock());
    std::thread stopping([&] { s.request_stop(); });  // must not block on anything the wait left
    stopping.join();
    CHECK(s.stop_requested());
}

TEST(cv_wait_with_other_lock_types) {
    // Any BasicLockable works, as for condition_variable_any: a std::mutex itself, a
    // recursive_mutex's unique_lock.
    std::mutex m;
    std::condition_variable_any cv;
    source s;
    m.lock();
    s.request_stop();
    CHECK(!stopper::wait(cv, m, s.get_token(), [] { return false; }));
    m.unlock();
    source r;
    std::recursive_mutex rm;
    std::unique_lock<std::recursive_mutex> lk(rm);
    std::thread stopping([&] {
        th::sleep_ms(10);
        r.request_stop();
    });
    CHECK(!stopper::wait(cv, lk, r.get_token(), [] { return false; }));
    stopping.join();
}

TEST(cv_wait_no_lost_wakeup_race) {
    // A stop at any moment of the wait's entry (before the check, between the check and the
    // block, while blocked) always ends it. Repeated with the stop racing the waiter; a lost
    // wake-up would hang (the harness's alarm ends the run).
    for (int round = 0; round < 400; round++) {
        cv_fixture f;
        source s;
        token t = s.get_token();
        std::atomic<bool> go{false};
        std::thread waiter([&] {
            while (!go.load())
                std::this_thread::yield();
            std::unique_lock<std::mutex> lk(f.m);
            bool r = round % 2 ? stopper::wait(f.cv, lk, t, [&] { return f.ready; })
                               : stopper::wait_for(f.cv, lk, t, 60s, [&] { return f.ready; });
            CHECK(!r);
        });
        go = true;
        for (int spin = 0; spin < round % 50; spin++)
            std::this_thread::yield();
        s.request_stop();
        waiter.join();
    }
}

TEST(cv_wait_many_waiters_one_stop) {
    cv_fixture f;
    source s;
    std::atomic<int> woke{0};
    std::vector<std::thread> ws;
    for (int i = 0; i < 6; i++)
        ws.emplace_back([&] {
            std::unique_lock<std::mutex> lk(f.m);
            if (!stopper::wait(f.cv, lk, s.get_token(), [&] { return f.ready; }))
                woke++;
        });
    th::sleep_ms(20);
    s.request_stop();
    for (auto &w : ws)
        w.join();
    CHECK_EQ(woke.load(), 6);
}
