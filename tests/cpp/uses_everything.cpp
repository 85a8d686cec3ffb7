// Compiled into a shared object by run_all.sh, which checks that it has no STB_GNU_UNIQUE
// symbol: such a symbol makes a plugin using stopper.hpp impossible to unload with dlclose.
#include <stopper.hpp>

#include <signal.h>

#include <condition_variable>
#include <mutex>

// The condition variable comes from the host (libstdc++ makes its own inside with
// std::make_shared, which is the host's business, not stopper.hpp's).
extern "C" __attribute__((visibility("default"))) int uses_everything(stopper::stopper *p,
                                                                        std::condition_variable_any *cv_any) {
    using namespace std::chrono_literals;
    try {
        stopper::source s = stopper::source::share(p);
        stopper::source c = s.child();
        stopper::source l = stopper::source::linked({s, c});
        stopper::callback cb(s, [](int32_t) {});
        stopper::callback cb2(c, [] {});
        stopper::scope in(l, stopper::signal_hook(SIGUSR2, 10ms));
        stopper::thread t(s, [](stopper::source w) { w.wait(1s); });
        stopper::thread u([] {});
        stopper::token tk = s.get_token();
        stopper::callback cb3(tk, [] {});
        stopper::thread v(s, [](stopper::token t, int) { t.wait(1s); }, 1);
        (void)s.request_stop();
        (void)s.stop_requested();
        (void)tk.reason();
        std::mutex m;
        std::unique_lock<std::mutex> lock(m);
        (void)stopper::wait(*cv_any, lock, tk, [] { return false; });
        (void)stopper::wait_for(*cv_any, lock, tk, 1ms, [] { return false; });
        (void)stopper::wait_until(*cv_any, lock, tk, std::chrono::steady_clock::now(), [] { return false; });
        s.stop_after(1s);
        s.cancel_stop_after();
        (void)s.remaining();
        (void)stopper::wait_any({s, c}, 1ms);
        (void)stopper::current_is_set();
        (void)s.fd();
#if defined(STOPPER_HPP_HAS_STOP_TOKEN)
        std::stop_source ss;
        stopper::source b = stopper::source::from(ss.get_token());
        (void)b.is_set();
#endif
        return s.wait(1ms) ? 1 : 0;
    } catch (const stopper::error &e) {
        return e.code();
    }
}
