// stopper::source, stopper::error, wait_any, durations.
#include "harness.hpp"

#include <poll.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

using namespace std::chrono_literals;
using stopper::source;
using th::ms_since;

// ------------------------------------------------------------------ types

static_assert(std::is_nothrow_copy_constructible_v<source>);
static_assert(std::is_nothrow_move_constructible_v<source>);
static_assert(std::is_nothrow_copy_assignable_v<source>);
static_assert(std::is_nothrow_move_assignable_v<source>);
static_assert(!std::is_convertible_v<std::nullptr_t, source>, "source(nullptr) is explicit");
static_assert(std::is_base_of_v<std::runtime_error, stopper::error>);
static_assert(std::is_same_v<source::native_handle_type, stopper::stopper *>);

// source::from exists exactly when the library has std::stop_token (C++20).
template <class T, class = void>
struct has_from : std::false_type {};
#if defined(STOPPER_HPP_HAS_STOP_TOKEN)
template <class T>
struct has_from<T, std::void_t<decltype(T::from(std::declval<std::stop_token>()))>> : std::true_type {};
#endif

TEST(bridge_present_exactly_under_cpp20) {
#if defined(EXPECT_STOP_TOKEN_BRIDGE)
    CHECK(has_from<source>::value);
#if !defined(STOPPER_HPP_HAS_STOP_TOKEN)
    CHECK_MSG(false, "built as C++20 but STOPPER_HPP_HAS_STOP_TOKEN is not defined");
#endif
#else
    CHECK(!has_from<source>::value);
    CHECK(__cplusplus < 202002L);
#endif
}

// ------------------------------------------------------------------ basics

TEST(source_starts_running) {
    source s;
    CHECK(static_cast<bool>(s));
    CHECK(s.native() != nullptr);
    CHECK(!s.is_set());
    CHECK_EQ(s.reason(), 0);
    CHECK(!s.wait(0ms));
    CHECK(!s.remaining().has_value());
    // The C view agrees.
    CHECK(!stopper_is_set(s.native()));  // unqualified: found through argument-dependent lookup
    CHECK_EQ(stopper::stopper_reason(s.native()), 0);
}

TEST(source_stop_once_records_reason) {
    source s;
    CHECK(s.stop());
    CHECK(s.is_set());
    CHECK_EQ(s.reason(), STOPPER_REASON_REQUESTED);
    CHECK(!s.stop(7));  // already stopped: the first reason stays
    CHECK_EQ(s.reason(), STOPPER_REASON_REQUESTED);
    CHECK(s.wait(0ms));
    CHECK(s.wait());
    CHECK(s.remaining().has_value() && *s.remaining() == 0ns);

    source a;
    CHECK(a.stop(42));
    CHECK_EQ(a.reason(), 42);
    source b;
    CHECK(b.stop(-9));
    CHECK_EQ(b.reason(), -9);
    CHECK(stopper_is_set(b.native()));
}

TEST(source_copies_share_one_stopper) {
    source a;
    source b = a;
    CHECK(a == b);
    CHECK(!(a != b));
    CHECK(a.native() == b.native());
    source c;
    CHECK(c != a);
    CHECK(b.stop(5));
    CHECK(a.is_set());
    CHECK_EQ(a.reason(), 5);
    CHECK(!c.is_set());
    c = a;  // copy-assign: now the same stopper
    CHECK(c == a);
    CHECK(c.is_set());
    CHECK(!a.stop());
}

// The stopper's event fd is closed with its last reference: that makes the reference count
// observable from outside.
TEST(source_copy_holds_a_reference) {
    int fd;
    {
        source b(nullptr);
        {
            source a;
            fd = a.fd();
            CHECK(fd >= 0);
            CHECK_EQ(a.fd(), fd);  // one fd per stopper
            b = a;
        }
        CHECK(th::fd_is_open(fd));  // b still holds the stopper
        CHECK(!b.is_set());
    }
    CHECK(!th::fd_is_open(fd));  // last reference gone

    // Copy-assigning over a source releases what it held.
    source x;
    int fx = x.fd();
    source y;
    x = y;
    CHECK(!th::fd_is_open(fx));
    CHECK(x == y);
}

TEST(source_move_transfers_without_a_new_reference) {
    int fd;
    {
        source a;
        fd = a.fd();
        source b(std::move(a));
        CHECK(!a);  // NOLINT: moved-from is empty, by contract
        CHECK(a.native() == nullptr);
        CHECK(b);
        CHECK(th::fd_is_open(fd));
        // A moved-from source is a NULL stopper: it never stops.
        CHECK(!a.is_set());
        CHECK(!a.stop());
        CHECK_EQ(a.reason(), 0);
        auto t0 = th::clock::now();
        CHECK(!a.wait());  // returns at once instead of blocking forever
        CHECK(ms_since(t0) < 500);
        CHECK(!b.is_set());
    }
    CHECK(!th::fd_is_open(fd));  // the move did not add a reference that would leak

    // Move-assignment releases the old stopper and takes the new one.
    source x;
    int fx = x.fd();
    source y;
    int fy = y.fd();
    x = std::move(y);
    CHECK(!th::fd_is_open(fx));
    CHECK(th::fd_is_open(fy));
    CHECK(!y);
    {
        source z = std::move(x);
    }
    CHECK(!th::fd_is_open(fy));
}

TEST(source_self_assignment) {
    source a;
    int fd = a.fd();
    source &r = a;
    a = r;
    CHECK(a);
    CHECK(th::fd_is_open(fd));
    a = std::move(r);
    CHECK(a);
    CHECK(th::fd_is_open(fd));
    CHECK(a.stop());
    CHECK(a.is_set());
    using std::swap;
    source b;
    source a2 = a;
    swap(a, b);
    CHECK(b == a2);
    CHECK(!a.is_set());
}

TEST(source_empty_is_a_null_stopper) {
    source e(nullptr);
    CHECK(!e);
    CHECK(!e.is_set());
    CHECK(!e.stop());
    CHECK_EQ(e.reason(), 0);
    auto t0 = th::clock::now();
    CHECK(!e.wait(30ms));  // sleeps the time, like stopper_wait(NULL, t)
    CHECK(ms_since(t0) >= 25);
    t0 = th::clock::now();
    CHECK(!e.wait());
    CHECK(ms_since(t0) < 500);
    CHECK(!e.stop_after(1ms));
    CHECK(!e.cancel_stop_after());
    CHECK(!e.remaining().has_value());
    CHECK(!e.join());
    CHECK_THROWS_CODE(e.child(), STOPPER_EINVAL);
    CHECK_THROWS_CODE(e.fd(), STOPPER_EINVAL);
    CHECK_THROWS_CODE(source::linked({e}), STOPPER_EINVAL);
    CHECK(e == source(nullptr));
    CHECK(!source::adopt(nullptr));
    CHECK(!source::share(nullptr));
    CHECK(e.detach() == nullptr);
}

// ------------------------------------------------------------------ waits and durations

TEST(durations_convert_safely) {
    using stopper::detail::to_ns;
    CHECK_EQ(to_ns(1ms, -1), 1000000);
    CHECK_EQ(to_ns(2s, -1), 2000000000);
    CHECK_EQ(to_ns(0ns, -1), 0);
    CHECK_EQ(to_ns(-5s, -1), 0);  // negative: an immediate answer, never "no limit"
    CHECK_EQ(to_ns(std::chrono::duration<double, std::nano>(1.2), -1), 2);  // rounded up
    CHECK_EQ(to_ns(std::chrono::duration<double>(0.25), -1), 250000000);
    CHECK_EQ(to_ns(std::chrono::duration<double>(std::nan("")), -1), 0);
    CHECK_EQ(to_ns(std::chrono::hours::max(), -1), -1);  // too long: no limit, no overflow
    CHECK_EQ(to_ns(std::chrono::hours::max(), INT64_MAX), INT64_MAX);
    CHECK_EQ(to_ns(std::chrono::duration<double>(1e300), -1), -1);
    CHECK_EQ(to_ns(std::chrono::nanoseconds::max(), -1), -1);
    CHECK_EQ(to_ns(std::chrono::duration<unsigned, std::milli>(3), -1), 3000000);
}

TEST(source_wait_times_out) {
    source s;
    auto t0 = th::clock::now();
    CHECK(!s.wait(50ms));
    double ms = ms_since(t0);
    CHECK_MSG(ms >= 45, std::to_string(ms));
    t0 = th::clock::now();
    CHECK(!s.wait(std::chrono::duration<double>(0.03)));
    CHECK(ms_since(t0) >= 25);
    t0 = th::clock::now();
    CHECK(!s.wait(-5s));  // negative: only looks
    CHECK(!s.wait(0ms));
    CHECK(ms_since(t0) < 500);
    t0 = th::clock::now();
    CHECK(!s.wait_until(std::chrono::system_clock::now() + 30ms));
    CHECK(ms_since(t0) >= 20);
    CHECK(!s.wait_until(th::clock::now() - 1s));
}

TEST(source_wait_wakes_on_stop) {
    // Each form of wait, woken by a stop from another thread 50 ms later.
    for (int form = 0; form < 5; form++) {
        source s;
        std::thread stopper_thread([s]() mutable {
            th::sleep_ms(50);
            s.stop(3);
        });
        auto t0 = th::clock::now();
        bool woke = false;
        switch (form) {
        case 0: woke = s.wait(10s); break;
        case 1: woke = s.wait(); break;
        case 2: woke = s.wait(std::chrono::hours::max()); break;  // no overflow into "immediate"
        case 3: woke = s.wait_until(th::clock::now() + 10s); break;
        case 4: woke = s.wait(std::chrono::duration<double>(1e300)); break;
        }
        double ms = ms_since(t0);
        stopper_thread.join();
        CHECK_MSG(woke, "form " + std::to_string(form));
        CHECK_MSG(ms >= 40 && ms < 1000, "form " + std::to_string(form) + ": " + std::to_string(ms) + " ms");
        CHECK_EQ(s.reason(), 3);
    }
}

TEST(wait_any_reports_the_stopped_index) {
    source a, b, c;
    std::thread t([b]() mutable {
        th::sleep_ms(30);
        b.stop();
    });
    auto t0 = th::clock::now();
    auto which = stopper::wait_any({a, b, c}, 5s);
    double ms = ms_since(t0);
    t.join();
    CHECK(which.has_value() && *which == 1);
    CHECK(ms >= 20 && ms < 1000);

    t0 = th::clock::now();
    CHECK(!stopper::wait_any({a, c}, 30ms).has_value());
    CHECK(ms_since(t0) >= 25);

    source e(nullptr);
    t0 = th::clock::now();
    CHECK(!stopper::wait_any({e}).has_value());  // only empty sources, no limit: at once
    CHECK(ms_since(t0) < 500);
    auto w = stopper::wait_any({e, a, b});
    CHECK(w.has_value() && *w == 2);
}

// ------------------------------------------------------------------ children, linked, deadlines

TEST(source_child_follows_parent_only) {
    source p;
    source c = p.child();
    CHECK(c != p);
    CHECK(c.stop(9));
    CHECK(!p.is_set());

    source p2;
    source c2 = p2.child();
    source g2 = c2.child();
    CHECK(p2.stop(11));
    CHECK(c2.is_set());
    CHECK(g2.is_set());
    CHECK_EQ(c2.reason(), 11);
    CHECK_EQ(g2.reason(), 11);

    source p3;
    p3.stop(5);
    source c3 = p3.child();  // born stopped
    CHECK(c3.is_set());
    CHECK_EQ(c3.reason(), 5);

    // A child keeps working after its parent handle is gone.
    source orphan = source().child();
    CHECK(!orphan.is_set());
    CHECK(orphan.stop());
}

TEST(source_linked_stops_with_any_parent) {
    source a, b;
    source l = source::linked({a, b});
    CHECK(!l.is_set());
    CHECK(b.stop(21));
    CHECK(l.is_set());
    CHECK_EQ(l.reason(), 21);
    CHECK(!a.is_set());
    source plain = source::linked({});
    CHECK(plain);
    CHECK(!plain.is_set());
}

TEST(source_stop_after) {
    source s;
    auto t0 = th::clock::now();
    CHECK(s.stop_after(60ms));
    auto left = s.remaining();
    CHECK(left.has_value() && *left > 0ns && *left <= 60ms);
    CHECK(!s.is_set());
    CHECK(s.wait(5s));
    double ms = ms_since(t0);
    CHECK_MSG(ms >= 45 && ms < 2000, std::to_string(ms));
    CHECK_EQ(s.reason(), STOPPER_REASON_DEADLINE);
    CHECK(!s.stop_after(1s));  // already stopped

    source r;
    CHECK(r.stop_after(30ms, 77));
    CHECK(r.wait(5s));
    CHECK_EQ(r.reason(), 77);

    // Re-arming replaces the earlier deadline.
    source re;
    t0 = th::clock::now();
    CHECK(re.stop_after(10s));
    CHECK(re.stop_after(30ms));
    CHECK(re.wait(5s));
    CHECK(ms_since(t0) < 2000);

    // Cancelled: never fires.
    source c;
    CHECK(c.stop_after(30ms));
    CHECK(c.cancel_stop_after());
    CHECK(!c.remaining().has_value());
    CHECK(!c.wait(100ms));

    // A negative delay means "now", not "disarm".
    source n;
    CHECK(n.stop_after(-1s));
    CHECK(n.wait(2s));

    // A child sees its ancestors' deadlines.
    source p;
    source ch = p.child();
    CHECK(p.stop_after(10s));
    auto cl = ch.remaining();
    CHECK(cl.has_value() && *cl > 9s && *cl <= 10s);
    CHECK(p.cancel_stop_after());
}

// A deadline keeps its stopper alive until it fires or is disarmed; once the stopper is stopped
// the deadline can never do anything, so the stop (or a disarm after it) lets it go, as .NET's
// CancellationTokenSource and Go's context release their timers on cancel. Seen through the fd,
// which closes with the stopper's last reference.
TEST(source_stop_releases_a_pending_deadline) {
    for (int how = 0; how < 3; how++) {
        int fd;
        {
            source p;
            source s = p.child();
            CHECK(s.stop_after(1h));
            fd = s.fd();
            if (how == 0)
                s.stop();
            else if (how == 1)
                p.stop();  // stopped through its parent
            else {
                s.stop();
                s.cancel_stop_after();  // the careful way: disarm after the stop too
            }
        }
        bool closed = th::eventually([&] { return !th::fd_is_open(fd); }, 1000);
        CHECK_MSG(closed, std::string("a stopped stopper is kept alive by its deadline, case ") +
                              (how == 0 ? "stop" : how == 1 ? "parent stop" : "stop then disarm"));
    }
}

// ------------------------------------------------------------------ native handles

TEST(source_adopt_share_detach) {
    int fd;
    {
        source a = source::adopt(stopper::stopper_new());  // takes the only reference
        fd = a.fd();
    }
    CHECK(!th::fd_is_open(fd));  // adopt added none

    stopper::stopper *raw = stopper::stopper_new();
    {
        source b = source::share(raw);  // adds one
        CHECK(b.native() == raw);
        fd = b.fd();
    }
    CHECK(th::fd_is_open(fd));  // raw still holds its own
    stopper_release(raw);
    CHECK(!th::fd_is_open(fd));

    source c;
    fd = c.fd();
    stopper::stopper *d = c.detach();
    CHECK(!c);
    CHECK(th::fd_is_open(fd));
    CHECK_EQ(stopper_stop(d, 4), 1);
    stopper_release(d);
    CHECK(!th::fd_is_open(fd));
}

TEST(source_fd_polls_readable_from_the_stop) {
    source s;
    int fd = s.fd();
    struct pollfd p = {fd, POLLIN, 0};
    CHECK_EQ(poll(&p, 1, 0), 0);
    s.stop();
    p.revents = 0;
    CHECK_EQ(poll(&p, 1, 1000), 1);
    CHECK(p.revents & POLLIN);
    p.revents = 0;
    CHECK_EQ(poll(&p, 1, 0), 1);  // for good
}

// ------------------------------------------------------------------ join

TEST(source_join_stops_and_waits_for_workers) {
    source s;
    std::atomic<int> inside{0}, left{0};
    std::vector<std::thread> ws;
    for (int i = 0; i < 3; i++)
        ws.emplace_back([&] {
            stopper::scope in(s);
            inside++;
            s.wait();
            th::sleep_ms(30);
            left++;
        });
    CHECK(th::eventually([&] { return inside.load() == 3; }));
    auto t0 = th::clock::now();
    CHECK(s.join(5s));
    CHECK_EQ(left.load(), 3);
    CHECK(ms_since(t0) >= 25);
    CHECK_EQ(s.reason(), STOPPER_REASON_REQUESTED);
    for (auto &w : ws)
        w.join();

    source none;
    CHECK(none.join());  // no workers: stops it, returns at once
    CHECK(none.is_set());

    // Time-out while a worker ignores the stop.
    source slow;
    std::atomic<bool> in{false};
    std::thread w([&] {
        stopper::scope sc(slow);
        in = true;
        th::sleep_ms(300);
    });
    CHECK(th::eventually([&] { return in.load(); }));
    t0 = th::clock::now();
    CHECK(!slow.join(30ms));
    CHECK(ms_since(t0) >= 25);
    CHECK(slow.join(5s));
    w.join();
}

TEST(source_join_by_own_worker_throws_edeadlk) {
    source s;
    stopper::scope in(s);
    CHECK_THROWS_CODE(s.join(), STOPPER_EDEADLK);
    CHECK_THROWS_CODE(s.join(10ms), STOPPER_EDEADLK);
}

// ------------------------------------------------------------------ error

TEST(error_carries_the_status) {
    stopper::error e(STOPPER_ENOMEM);
    CHECK_EQ(e.code(), STOPPER_ENOMEM);
    CHECK(std::strstr(e.what(), stopper::stopper_strerror(STOPPER_ENOMEM)) != nullptr);
    stopper::error f(STOPPER_EINVAL, "context here");
    CHECK(std::strncmp(f.what(), "context here: ", 14) == 0);
    CHECK(std::strstr(f.what(), "-1") != nullptr);
    try {
        throw stopper::error(STOPPER_EOS);
    } catch (const std::runtime_error &r) {  // catchable as a std exception
        CHECK(std::strlen(r.what()) > 0);
    }
}
