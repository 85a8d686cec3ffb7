// stopper::scope, stopper::thread, current(), current_is_set(), hooks.
#include "harness.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>

using namespace std::chrono_literals;
using stopper::source;

static_assert(!std::is_copy_constructible_v<stopper::scope>);
static_assert(!std::is_move_constructible_v<stopper::scope>);
static_assert(!std::is_copy_constructible_v<stopper::thread>);
static_assert(!std::is_copy_assignable_v<stopper::thread>);
static_assert(std::is_nothrow_move_constructible_v<stopper::thread>);
static_assert(std::is_nothrow_move_assignable_v<stopper::thread>);
static_assert(std::is_nothrow_default_constructible_v<stopper::thread>);

// ------------------------------------------------------------------ scope

TEST(scope_sets_the_current_stopper) {
    CHECK(!stopper::current());
    CHECK(!stopper::current_is_set());
    source a, b;
    {
        stopper::scope sa(a);
        CHECK(!sa.stopped_on_entry());
        CHECK(stopper::current() == a);
        CHECK(sa.get_source() == a);
        CHECK(!stopper::current_is_set());
        {
            stopper::scope sb(b);  // nests
            CHECK(stopper::current() == b);
            b.stop();
            CHECK(stopper::current_is_set());
        }
        CHECK(stopper::current() == a);
        CHECK(!stopper::current_is_set());
        a.stop();
        CHECK(stopper::current_is_set());
    }
    CHECK(!stopper::current());
    CHECK(!stopper::current_is_set());
}

TEST(scope_enters_a_stopped_stopper) {
    source s;
    s.stop();
    stopper::scope in(s);
    CHECK(in.stopped_on_entry());
    CHECK(stopper::current() == s);
    CHECK(stopper::current_is_set());
}

TEST(scope_of_an_empty_source_throws) {
    CHECK_THROWS_CODE(stopper::scope(source(nullptr)), STOPPER_EINVAL);
    CHECK(!stopper::current());
}

TEST(scope_holds_a_reference) {
    auto s = std::make_unique<source>();
    int fd = s->fd();
    auto in = std::make_unique<stopper::scope>(*s);
    s.reset();
    CHECK(th::fd_is_open(fd));
    CHECK(stopper::current());
    CHECK(!stopper::current_is_set());
    in.reset();
    CHECK(!stopper::current());
    CHECK(!th::fd_is_open(fd));
}

TEST(scope_is_waited_for_by_join) {
    for (int i = 0; i < 20; i++) {
        source s;
        std::atomic<bool> entered{false}, leaving{false};
        std::thread w([&] {
            stopper::scope in(s);
            entered = true;
            s.wait();
            th::sleep_ms(5);
            leaving = true;
        });
        CHECK(th::eventually([&] { return entered.load(); }));
        CHECK(s.join(5s));
        CHECK(leaving.load());
        w.join();
    }
}

namespace {
struct hook_record {
    std::atomic<int> calls{0};
    std::atomic<uint64_t> thread_id{0};
    std::atomic<int32_t> reason{0};
};
void record_hook(void *data, uint64_t thread_id, int32_t reason) {
    auto *r = static_cast<hook_record *>(data);
    r->thread_id = thread_id;
    r->reason = reason;
    r->calls++;
}
}  // namespace

TEST(scope_hook_is_called_on_the_stop) {
    source s;
    hook_record rec;
    stopper::stopper_hook hook{};
    hook.fn = &record_hook;
    hook.data = &rec;
    hook.repeat_ns = 0;
    std::atomic<uint64_t> worker_id{0};
    std::atomic<bool> entered{false}, release{false};
    std::thread w([&] {
        stopper::scope in(s, hook);
        worker_id = stopper::stopper_thread_id();
        entered = true;
        // Busy elsewhere, not waiting on the stopper: what hooks are for. (A worker waiting
        // on the stopper may wake and leave before the stop reaches the hooks.)
        while (!release.load())
            std::this_thread::sleep_for(1ms);
    });
    CHECK(th::eventually([&] { return entered.load(); }));
    CHECK_EQ(rec.calls.load(), 0);
    s.stop(6);
    CHECK_EQ(rec.calls.load(), 1);  // on the stopping thread, before stop returned
    CHECK_EQ(rec.reason.load(), 6);
    CHECK(rec.thread_id.load() == worker_id.load());
    release = true;
    w.join();
    CHECK(worker_id.load() != 0);
    CHECK_EQ(rec.calls.load(), 1);
}

// The signal hook: a worker blocked in read() on a pipe that never gets data is interrupted with
// EINTR, sees the stop and leaves. With repeat, a signal that arrives just before read() blocks
// is sent again.
TEST(scope_signal_hook_interrupts_a_blocking_read) {
    CHECK(stopper::install_signal(SIGUSR1));
    CHECK(stopper::install_signal(SIGUSR1));  // twice is fine
    CHECK(!stopper::install_signal(SIGKILL));
    CHECK(!stopper::install_signal(SIGSEGV));
    for (int i = 0; i < 5; i++) {
        int p[2];
        CHECK(pipe(p) == 0);
        source s;
        std::atomic<int> eintr{0};
        std::atomic<bool> entered{false};
        std::thread w([&] {
            stopper::scope in(s, stopper::signal_hook(SIGUSR1, 20ms));
            entered = true;
            char c;
            while (!stopper::current_is_set()) {
                ssize_t n = read(p[0], &c, 1);
                if (n < 0 && errno == EINTR)
                    eintr++;
            }
        });
        CHECK(th::eventually([&] { return entered.load(); }));
        th::sleep_ms(i * 5);
        auto t0 = th::clock::now();
        s.stop();
        w.join();
        double ms = th::ms_since(t0);
        CHECK_MSG(ms < 1000, std::to_string(ms));
        CHECK(eintr.load() >= 1);
        close(p[0]);
        close(p[1]);
    }
}

// ------------------------------------------------------------------ thread

TEST(thread_worker_runs_inside_its_stopper) {
    source s;
    std::atomic<bool> inside{false}, looked{false}, finished{false};
    {
        stopper::thread t(s, [&](source ws) {
            inside = stopper::current() == ws && ws == s && !stopper::current_is_set();
            looked = true;
            ws.wait();
            th::sleep_ms(20);
            finished = true;
        });
        CHECK(t.joinable());
        CHECK(t.get_source() == s);
        CHECK(th::eventually([&] { return looked.load(); }));
    }  // the destructor stops and joins
    CHECK(finished.load());
    CHECK(inside.load());
    CHECK(s.is_set());
    CHECK_EQ(s.reason(), STOPPER_REASON_REQUESTED);
}

TEST(thread_destructor_joins_every_time) {
    for (int i = 0; i < 200; i++) {
        std::atomic<bool> finished{false};
        {
            stopper::thread t([&](const source &ws) {
                ws.wait();
                finished = true;
            });
        }
        CHECK(finished.load());
        if (!finished.load())
            break;
    }
}

TEST(thread_callable_forms) {
    std::atomic<int> sum{0};
    {
        stopper::thread a([&] { sum += 1; });
        stopper::thread b([&](source) { sum += 10; });
        stopper::thread c([&](int x, std::string y) { sum += x + static_cast<int>(y.size()); }, 100, std::string("abc"));
        stopper::thread d([&](const source &s, std::unique_ptr<int> p) { sum += s ? *p : 0; }, std::make_unique<int>(1000));
        source s;
        stopper::thread e(s, [&](source &ws, int x) { sum += ws == s ? x : 0; }, 10000);
        // Workers that do not wait for the stop simply finish; the destructors join them.
    }
    CHECK_EQ(sum.load(), 1 + 10 + 103 + 1000 + 10000);
}

TEST(thread_own_source_and_request_stop) {
    stopper::thread t([](source s) { s.wait(); });
    source g = t.get_source();
    CHECK(g);
    CHECK(!g.is_set());
    CHECK(t.request_stop());
    CHECK(!t.request_stop());
    t.join();
    CHECK(!t.joinable());
    CHECK(g.is_set());

    stopper::thread none;
    CHECK(!none.joinable());
    CHECK(!none.get_source());
    CHECK(!none.request_stop());
}

// The constructor returns only once the thread is a worker, so join on the source (which waits
// for workers, not for this thread object) never misses one that is just starting.
TEST(thread_is_a_worker_when_the_constructor_returns) {
    for (int i = 0; i < 30; i++) {
        source s;
        std::atomic<bool> done{false};
        stopper::thread t(s, [&] {
            th::sleep_ms(5);  // ignores the stop on purpose
            done = true;
        });
        t.detach();
        CHECK(s.join(5s));
        CHECK(done.load());
        if (!done.load())
            th::sleep_ms(100);  // let the detached thread finish before its captures go
    }
}

TEST(thread_move) {
    source s1;
    std::atomic<bool> f1{false}, f2{false};
    stopper::thread a(s1, [&](source ws) {
        ws.wait();
        f1 = true;
    });
    auto id = a.get_id();
    stopper::thread b(std::move(a));
    CHECK(!a.joinable());
    CHECK(!a.get_source());
    CHECK(b.joinable());
    CHECK(b.get_id() == id);
    CHECK(!s1.is_set());

    // Assigning over a running thread stops and joins it first.
    source s2;
    b = stopper::thread(s2, [&](source ws) {
        ws.wait();
        f2 = true;
    });
    CHECK(s1.is_set());
    CHECK(f1.load());
    CHECK(!s2.is_set());
    CHECK(b.get_source() == s2);

    stopper::thread c;
    swap(b, c);
    CHECK(!b.joinable());
    CHECK(c.joinable());
    c = stopper::thread();
    CHECK(f2.load());
    CHECK(s2.is_set());
}

TEST(thread_shared_source_stops_all) {
    source s;
    std::atomic<int> finished{0};
    std::vector<stopper::thread> ts;
    for (int i = 0; i < 4; i++)
        ts.emplace_back(s, [&](source ws) {
            ws.wait();
            finished++;
        });
    CHECK(ts[2].request_stop());
    CHECK(s.join(5s));  // all four are workers of s
    CHECK_EQ(finished.load(), 4);
    ts.clear();
}

TEST(thread_on_a_stopped_source_still_runs) {
    source s;
    s.stop();
    std::atomic<bool> ran{false}, saw{false};
    {
        stopper::thread t(s, [&](source ws) {
            ran = true;
            saw = ws.is_set() && stopper::current_is_set();
        });
    }
    CHECK(ran.load());
    CHECK(saw.load());
}

TEST(thread_of_an_empty_source_throws) {
    bool ran = false;
    CHECK_THROWS_CODE(stopper::thread(source(nullptr), [&] { ran = true; }), STOPPER_EINVAL);
    CHECK(!ran);
}

TEST(thread_worker_joining_its_own_stopper_gets_edeadlk) {
    std::atomic<int32_t> code{0};
    {
        stopper::thread t([&](source s) {
            try {
                s.join();
            } catch (const stopper::error &e) {
                code = e.code();
            }
        });
    }
    CHECK_EQ(code.load(), STOPPER_EDEADLK);
}

// Code deep inside a worker looks at the current stopper with nothing passed down.
static int deep_inside_a_library() {
    int rounds = 0;
    while (!stopper::current_is_set()) {
        rounds++;
        std::this_thread::sleep_for(1ms);
    }
    return rounds;
}

TEST(current_is_set_reaches_deep_code) {
    std::atomic<int> rounds{-1};
    auto t0 = th::clock::now();
    {
        stopper::thread t([&] { rounds = deep_inside_a_library(); });
        th::sleep_ms(30);
    }
    CHECK(rounds.load() >= 1);
    CHECK(th::ms_since(t0) < 1000);
}
