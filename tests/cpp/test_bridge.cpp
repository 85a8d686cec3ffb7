// C++20: stopper::source::from(std::stop_token).
#include "harness.hpp"

#if defined(STOPPER_HPP_HAS_STOP_TOKEN)

#include <memory>
#include <stop_token>

using namespace std::chrono_literals;
using stopper::source;

TEST(bridge_stops_when_the_std_token_stops) {
    std::stop_source ss;
    source s = source::from(ss.get_token());
    CHECK(!s.is_set());
    CHECK(ss.request_stop());
    CHECK(s.is_set());  // synchronously, inside request_stop
    CHECK_EQ(s.reason(), STOPPER_REASON_REQUESTED);
}

TEST(bridge_wakes_a_waiter) {
    std::stop_source ss;
    source s = source::from(ss.get_token());
    std::thread t([ss]() mutable {
        th::sleep_ms(50);
        ss.request_stop();
    });
    auto t0 = th::clock::now();
    CHECK(s.wait(10s));
    double ms = th::ms_since(t0);
    CHECK(ms >= 40 && ms < 1000);
    t.join();
}

TEST(bridge_from_a_stopped_token_is_born_stopped) {
    std::stop_source ss;
    ss.request_stop();
    source s = source::from(ss.get_token());
    CHECK(s.is_set());
    CHECK_EQ(s.reason(), STOPPER_REASON_REQUESTED);
}

TEST(bridge_from_a_token_that_cannot_stop) {
    source s = source::from(std::stop_token{});
    CHECK(s);
    CHECK(!s.is_set());
    CHECK(s.stop(4));
    CHECK_EQ(s.reason(), 4);
}

TEST(bridge_is_one_way) {
    std::stop_source ss;
    source s = source::from(ss.get_token());
    CHECK(s.stop());
    CHECK(!ss.stop_requested());
}

// The link must survive as long as anything made from the returned source: here the source
// itself is a temporary, gone at the end of each full-expression.
TEST(bridge_link_lives_with_everything_made_from_it) {
    {
        std::stop_source ss;
        source c = source::from(ss.get_token()).child();
        ss.request_stop();
        CHECK(c.is_set());
    }
    {
        std::stop_source ss;
        source other;
        source l(nullptr);
        {
            source f = source::from(ss.get_token());
            l = source::linked({f, other});
        }
        ss.request_stop();
        CHECK(l.is_set());
    }
    {
        std::stop_source ss;
        bool ran = false;
        stopper::callback cb(source::from(ss.get_token()), [&] { ran = true; });
        ss.request_stop();
        CHECK(ran);
    }
    {
        std::stop_source ss;
        stopper::scope in(source::from(ss.get_token()));
        CHECK(!stopper::current_is_set());
        ss.request_stop();
        CHECK(stopper::current_is_set());
    }
    {
        std::stop_source ss;
        std::atomic<bool> done{false};
        stopper::thread t(source::from(ss.get_token()), [&](source s) {
            s.wait();
            done = true;
        });
        ss.request_stop();
        t.join();
        CHECK(done.load());
    }
}

// Once every source is gone, the link is removed and lets go of the stopper (its fd closes),
// so a long-lived std::stop_source does not collect dead links; a later request_stop touches
// nothing freed.
TEST(bridge_link_is_released_with_the_last_source) {
    std::stop_source ss;
    int fd;
    {
        source s = source::from(ss.get_token());
        fd = s.fd();
        source copy = s;
    }
    CHECK(!th::fd_is_open(fd));
    for (int i = 0; i < 20000; i++) {
        source s = source::from(ss.get_token());
        (void)s;
    }
    auto t0 = th::clock::now();
    CHECK(ss.request_stop());
    CHECK(th::ms_since(t0) < 1000);
}

// request_stop on one thread while the last source (and so the link) is destroyed on another:
// the link's removal waits for a run in progress, and a removed link is never run. A C
// reference (which does not keep the link) lets the test see which came first. A feedback loop
// on the timing keeps the two at the tipping point, and a few sleeps force each order.
TEST(bridge_destroyed_while_the_std_token_stops) {
    constexpr int iterations = 2000;
    std::atomic<int> generation{0}, done{0}, bias{0};
    std::atomic<bool> quit{false};
    std::stop_source *current = nullptr;
    int reached = 0;
    std::thread stopper_thread([&] {
        int seen = 0;
        while (!quit.load()) {
            int g = generation.load();
            if (g == seen) {
                std::this_thread::yield();
                continue;
            }
            seen = g;
            if (g % 20 == 1)
                th::sleep_ms(1);
            for (int k = 0; k < bias.load(); k++)
                std::atomic_signal_fence(std::memory_order_seq_cst);
            current->request_stop();
            done.store(g);
        }
    });
    for (int i = 1; i <= iterations; i++) {
        std::stop_source ss;
        current = &ss;
        auto s = std::make_unique<source>(source::from(ss.get_token()));
        stopper::stopper *watch = stopper_retain(s->native());
        generation.store(i);
        if (i % 20 == 0)
            th::sleep_ms(1);
        for (int k = 0; k < -bias.load(); k++)
            std::atomic_signal_fence(std::memory_order_seq_cst);
        s.reset();
        for (int k = 0; done.load() != i; k++)
            if (k > 2000)
                std::this_thread::yield();
        bool stopped = stopper_is_set(watch);
        reached += stopped;
        stopper_release(watch);
        int step = 10 + (i * 7) % 40;
        bias.store(stopped ? bias.load() + step : bias.load() - step);
    }
    quit = true;
    stopper_thread.join();
    std::printf("    (%d of %d std stops reached the stopper before its last source was gone)\n", reached,
                iterations);
    CHECK_MSG(reached > 0 && reached < iterations, "the timing never mixed the two orders");
}

TEST(bridge_with_std_jthread) {
    std::atomic<bool> done{false};
    auto t0 = th::clock::now();
    {
        std::jthread jt([&](std::stop_token st) {
            source s = source::from(st);
            stopper::scope in(s);
            s.wait();  // a blocking wait that the std token wakes
            done = stopper::current_is_set();
        });
        th::sleep_ms(30);
    }  // request_stop + join
    CHECK(done.load());
    CHECK(th::ms_since(t0) < 1000);
}

#endif
