// stopper.hpp: the C++ face of stopper, header-only, C++17 and later.
//
// RAII over the C ABI of libstopper (stopper.h), in namespace `stopper`:
//
//   stopper::source s;                     // owning; copies share one stopper (reference count)
//   stopper::token tk = s.get_token();     // read-only, like std::stop_token
//   stopper::callback cb(tk, [](int32_t reason) { ... });  // unregistered by its destructor
//   stopper::scope in(s);                  // this thread is a worker of s until the scope ends
//   stopper::thread t(s, [](stopper::token t) { while (!t.stop_requested()) t.wait(1s); });
//   stopper::wait(cv, lock, tk, pred);     // condition_variable_any wait that a stop ends
//   stopper::current_is_set();             // anywhere below a scope or inside a stopper::thread
//   stopper::source::from(std::stop_token) // C++20: stopped when the std token is
//
// Link with -lstopper. Errors from the C layer become `stopper::error` (which carries the status
// code) only where construction fails (out of memory, or a stopper that does not exist);
// waits return bool and never throw. Built with -fno-exceptions, such a failure prints the
// error's message and calls std::abort() instead. No exception ever crosses into the C library: a callback
// whose callable throws terminates the program with a message, as std::stop_callback does.
//
// The C declarations live in namespace `stopper::c_api` (a using-directive makes them visible as
// `stopper::stopper_new`, `stopper::stopper` ...): C++ cannot have a namespace `stopper` and a
// global type `stopper` in one translation unit, so a C++ file uses either this header or
// stopper.h, never both. Unqualified calls such as `stopper_join(s.native(), -1)` still work
// from anywhere through argument-dependent lookup.

#ifndef STOPPER_HPP
#define STOPPER_HPP

#if defined(STOPPER_ABI_VERSION)
#error "stopper.hpp: stopper.h was already included at global scope. In C++, include only stopper.hpp: it includes stopper.h itself, inside namespace stopper::c_api (the C type 'stopper' and the namespace 'stopper' cannot both live at global scope)."
#endif

#if !defined(__cplusplus) || __cplusplus < 201703L
#error "stopper.hpp needs C++17 or later"
#endif

// The C header's own system headers, included here at global scope first so that its nested
// #includes below are no-ops and nothing of the C library ends up inside our namespace.
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__has_include)
#if __has_include(<version>)
#include <version>
#endif
#endif

#if defined(__cpp_lib_jthread) && __cpp_lib_jthread >= 201911L
#include <stop_token>
/// Defined to 1 when `stopper::source::from(std::stop_token)` is available (C++20 libraries).
#define STOPPER_HPP_HAS_STOP_TOKEN 1
#endif

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#define STOPPER_HPP_EXCEPTIONS 1
#endif

namespace stopper {

/// The C API, exactly as stopper.h declares it (same functions, same types, same linkage).
namespace c_api {
#include "stopper.h"
}  // namespace c_api

using namespace c_api;

/// The C handle type, `stopper::stopper` (the C `stopper`).
using native_handle_type = c_api::stopper *;

// ------------------------------------------------------------------------------------ error

/// The exception thrown when a stopper object cannot be constructed (out of memory, a thread that
/// could not start, a stopper that does not exist). `code()` is the C status
/// (`STOPPER_ENOMEM`, `STOPPER_EINVAL`, `STOPPER_EOS` ...).
class error : public std::runtime_error {
public:
    /// `context` (may be NULL) says what failed; the message ends with `stopper_strerror(code)`.
    explicit error(int32_t code, const char *context = nullptr)
        : std::runtime_error(message(code, context)), code_(code) {}

    /// The C status code this error carries.
    int32_t code() const noexcept { return code_; }

private:
    static std::string message(int32_t code, const char *context) {
        // snprintf, not std::to_string: libstdc++'s to_string brings a STB_GNU_UNIQUE symbol,
        // which would make a plugin using this header impossible to dlclose.
        char status[32];
        std::snprintf(status, sizeof status, " (status %d)", static_cast<int>(code));
        std::string m = context ? context : "stopper";
        m += ": ";
        m += c_api::stopper_strerror(code);
        m += status;
        return m;
    }
    int32_t code_;
};

namespace detail {

/// Reports a construction failure: throws stopper::error, or, when the program is built without
/// exceptions (-fno-exceptions), prints the same message and calls std::abort().
[[noreturn]] inline void fail(int32_t code, const char *context) {
#if defined(STOPPER_HPP_EXCEPTIONS)
    throw error(code, context);
#else
    error e(code, context);
    std::fprintf(stderr, "%s (built without exceptions: aborting)\n", e.what());
    std::fflush(stderr);
    std::abort();
#endif
}

/// A std::chrono duration as the C layer's int64_t nanoseconds, rounded up (never wake early).
/// Zero, negative and NaN durations give 0 (an immediate answer, as in
/// std::condition_variable::wait_for); durations too long for int64_t give `too_long`.
template <class Rep, class Period>
inline int64_t to_ns(const std::chrono::duration<Rep, Period> &d, int64_t too_long) noexcept {
    using namespace std::chrono;
    if (!(d > duration<Rep, Period>::zero()))
        return 0;
    if (duration<long double, std::nano>(d).count() >= static_cast<long double>(INT64_MAX))
        return too_long;
    nanoseconds ns = duration_cast<nanoseconds>(d);
    if (ns < d)
        ++ns;
    return ns.count();
}

/// steady_clock::now() + `rel`, rounded up, saturated at time_point::max() (a duration too long
/// to add waits forever instead of overflowing); zero, negative and NaN durations give now().
template <class Rep, class Period>
inline std::chrono::steady_clock::time_point deadline_after(const std::chrono::duration<Rep, Period> &rel) {
    using namespace std::chrono;
    using tp = steady_clock::time_point;
    tp now = steady_clock::now();
    if (!(rel > duration<Rep, Period>::zero()))
        return now;
    if (duration<long double>(rel) >= duration<long double>(tp::max() - now))
        return tp::max();
    return now + ceil<steady_clock::duration>(rel);
}

/// Called when a callback's callable throws: the exception must not cross into C.
[[noreturn]] inline void callable_threw(const char *what) noexcept {
    std::fprintf(stderr,
                 "stopper::callback: the callable threw an exception (%s); no exception may cross "
                 "into the C library, so std::terminate() is called, as std::stop_callback does\n",
                 what ? what : "not derived from std::exception");
    std::fflush(stderr);
    std::terminate();
}

/// The constructor of stopper::thread waits on this until the new thread has entered the
/// stopper, so that `stopper_join` (source::join) never misses a worker that is just starting.
struct start_gate {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    int32_t rc = 0;
};

}  // namespace detail

// ------------------------------------------------------------------------------------ token

class source;

/// A read-only view of a stopper, as std::stop_token is of a std::stop_source: it can see and
/// wait for the stop, register callbacks (stopper::callback) and be handed to code that must not
/// be able to stop anything, but it cannot stop. Made by source::get_token(). Copies share the
/// stopper (each holds a reference), so a token outlives the source it came from, as a
/// std::stop_token outlives its std::stop_source. A default-made token, the token of an empty
/// source (`source(nullptr)`) and a moved-from token have no stopper: `stop_possible()` is
/// false, they never stop, and their waits behave as plain waits (see source::wait).
///
/// Unlike std::stop_token, `stop_possible()` stays true once every source is gone: C code, a
/// deadline, a parent or another process may still stop the stopper.
///
/// Thread-safety: as for source (a std::shared_ptr-like handle).
class token {
public:
    using native_handle_type = ::stopper::native_handle_type;

    /// No stopper: never stops, stop_possible() is false (like std::stop_token{}).
    token() noexcept = default;

    token(const token &o) noexcept
        : s_(o.s_ ? c_api::stopper_retain(o.s_) : nullptr), flag_(o.flag_), keep_(o.keep_) {}

    token(token &&o) noexcept : s_(o.s_), flag_(o.flag_), keep_(std::move(o.keep_)) {
        o.s_ = nullptr;
        o.flag_ = empty_flag();
    }

    token &operator=(const token &o) noexcept {
        token(o).swap(*this);
        return *this;
    }

    token &operator=(token &&o) noexcept {
        token(std::move(o)).swap(*this);
        return *this;
    }

    /// Releases this handle's reference.
    ~token() {
        if (s_)
            c_api::stopper_release(s_);
    }

    void swap(token &o) noexcept {
        std::swap(s_, o.s_);
        std::swap(flag_, o.flag_);
        keep_.swap(o.keep_);
    }
    friend void swap(token &a, token &b) noexcept { a.swap(b); }

    /// Whether the stopper is stopped: one acquire load of its flag byte, inlined (what
    /// std::stop_token::stop_requested costs). False for a token without a stopper.
    [[nodiscard]] bool stop_requested() const noexcept { return c_api::stopper_flag_is_set(flag_); }

    /// False only for a token without a stopper (default-made, moved-from, or from an empty
    /// source): such a token can never be stopped.
    [[nodiscard]] bool stop_possible() const noexcept { return s_ != nullptr; }

    /// The reason recorded by the stop that won, or 0 while running (and without a stopper).
    [[nodiscard]] int32_t reason() const noexcept { return s_ ? c_api::stopper_reason(s_) : 0; }

    /// Waits until the stopper is stopped or `timeout` passes; true once stopped. Without a
    /// stopper it sleeps `timeout` and returns false, as source::wait does for an empty source.
    template <class Rep, class Period>
    bool wait(const std::chrono::duration<Rep, Period> &timeout) const noexcept {
        return c_api::stopper_wait(s_, detail::to_ns(timeout, -1)) == STOPPER_STOPPED;
    }

    /// Waits with no limit until the stopper is stopped; returns true. Without a stopper it
    /// returns false at once instead of blocking forever.
    bool wait() const noexcept { return c_api::stopper_wait(s_, -1) == STOPPER_STOPPED; }

    /// Waits until the stopper is stopped or the clock reaches `t`; true once stopped.
    template <class Clock, class Duration>
    bool wait_until(const std::chrono::time_point<Clock, Duration> &t) const noexcept {
        return wait(t - Clock::now());
    }

    /// The C handle, borrowed: valid while this token (or another reference) lives. NULL when
    /// the token has no stopper.
    native_handle_type native() const noexcept { return s_; }

    /// Two tokens are equal when they share the same stopper (or both have none), as
    /// std::stop_token's operator== says.
    friend bool operator==(const token &a, const token &b) noexcept { return a.s_ == b.s_; }
    friend bool operator!=(const token &a, const token &b) noexcept { return a.s_ != b.s_; }

private:
    friend class source;
    template <class F>
    friend class callback;

    /// The library's never-set flag byte (stopper_flag(NULL)). Not cached in a function-local
    /// static: that would be an STB_GNU_UNIQUE symbol (see error::message).
    static const uint8_t *empty_flag() noexcept { return c_api::stopper_flag(nullptr); }

    /// Takes over one reference (non-NULL) with its flag and std::stop_token link.
    token(native_handle_type s, const uint8_t *flag, std::shared_ptr<void> keep) noexcept
        : s_(s), flag_(flag), keep_(std::move(keep)) {}

    native_handle_type s_ = nullptr;
    const uint8_t *flag_ = empty_flag();  // stopper_flag(s_): valid while s_ is held
    std::shared_ptr<void> keep_;          // keeps a std::stop_token bridge alive (source::from)
};

// ------------------------------------------------------------------------------------ source

/// An owning handle to one stopper. Copies share the same stopper (each holds a reference:
/// the stopper lives until the last copy, callback, scope, thread or C reference is gone);
/// a moved-from source is empty. An empty source (also `source(nullptr)`) behaves like a NULL
/// stopper in C: it never stops, `stop` returns false, waits with a limit time out.
///
/// Thread-safety: the stopper is thread-safe. A source object is like a std::shared_ptr: copies
/// may be used from any threads; one object may be used from several threads at once for
/// everything but assignment, swap and detach (the calls that change the handle itself).
class source {
public:
    using native_handle_type = ::stopper::native_handle_type;

    /// A new running stopper. Throws stopper::error(STOPPER_ENOMEM) when out of memory.
    source() : source(c_api::stopper_new(), nullptr) {
        if (!s_)
            detail::fail(STOPPER_ENOMEM, "stopper::source");
    }

    /// An empty source: no stopper at all, like std::stop_source(std::nostopstate).
    explicit source(std::nullptr_t) noexcept : source(nullptr, nullptr) {}

    /// Takes over one reference the caller owns (NULL gives an empty source).
    static source adopt(native_handle_type s) noexcept { return source(s, nullptr); }

    /// Shares a stopper the caller only borrows: adds a reference (NULL gives an empty source).
    static source share(native_handle_type s) noexcept {
        return source(s ? c_api::stopper_retain(s) : nullptr, nullptr);
    }

    source(const source &o) noexcept
        : s_(o.s_ ? c_api::stopper_retain(o.s_) : nullptr), flag_(o.flag_), keep_(o.keep_) {}

    source(source &&o) noexcept : s_(o.s_), flag_(o.flag_), keep_(std::move(o.keep_)) {
        o.s_ = nullptr;
        o.flag_ = c_api::stopper_flag(nullptr);
    }

    source &operator=(const source &o) noexcept {
        source(o).swap(*this);
        return *this;
    }

    source &operator=(source &&o) noexcept {
        source(std::move(o)).swap(*this);
        return *this;
    }

    /// Releases this handle's reference.
    ~source() { c_api::stopper_release(s_); }

    void swap(source &o) noexcept {
        std::swap(s_, o.s_);
        std::swap(flag_, o.flag_);
        keep_.swap(o.keep_);
    }
    friend void swap(source &a, source &b) noexcept { a.swap(b); }

    /// True when this handle has a stopper (false once moved from, or for source(nullptr)).
    explicit operator bool() const noexcept { return s_ != nullptr; }

    /// Stops the stopper with `reason` (0 records STOPPER_REASON_REQUESTED): wakes every waiter,
    /// stops the children, runs the callbacks, all before it returns. True when this call
    /// stopped it; false when it was already stopped (or the source is empty).
    bool stop(int32_t reason = 0) noexcept { return c_api::stopper_stop(s_, reason) == 1; }

    /// Whether the stopper is stopped: one acquire load of its flag byte, inlined, no call into
    /// the library (what std::stop_token::stop_requested costs).
    bool is_set() const noexcept { return c_api::stopper_flag_is_set(flag_); }

    /// The reason recorded by the stop that won, or 0 while running.
    int32_t reason() const noexcept { return c_api::stopper_reason(s_); }

    /// std::stop_source's spelling of stop(): stops with STOPPER_REASON_REQUESTED; true when this
    /// call stopped it, false when it was already stopped (or the source is empty).
    bool request_stop() noexcept { return stop(0); }

    /// std::stop_source's spelling of is_set().
    [[nodiscard]] bool stop_requested() const noexcept { return is_set(); }

    /// False only for an empty source (std::stop_source's stop_possible()).
    [[nodiscard]] bool stop_possible() const noexcept { return s_ != nullptr; }

    /// A read-only token of this stopper (sharing it: a new reference). The token of an empty
    /// source has no stopper (`stop_possible() == false`).
    [[nodiscard]] token get_token() const noexcept {
        if (!s_)
            return token();
        return token(c_api::stopper_retain(s_), flag_, keep_);
    }

    /// Waits until the stopper is stopped or `timeout` passes; true once stopped. A stop wakes
    /// the waiter at once. A zero or negative timeout only looks.
    template <class Rep, class Period>
    bool wait(const std::chrono::duration<Rep, Period> &timeout) const noexcept {
        return c_api::stopper_wait(s_, detail::to_ns(timeout, -1)) == STOPPER_STOPPED;
    }

    /// Waits with no limit until the stopper is stopped; returns true. An empty source never
    /// stops: it returns false at once instead of blocking forever.
    bool wait() const noexcept { return c_api::stopper_wait(s_, -1) == STOPPER_STOPPED; }

    /// Waits until the stopper is stopped or the clock reaches `t`; true once stopped.
    template <class Clock, class Duration>
    bool wait_until(const std::chrono::time_point<Clock, Duration> &t) const noexcept {
        return wait(t - Clock::now());
    }

    /// A new stopper stopped when this one is (with this one's reason), never the other way
    /// round; born stopped when this one already is. Releasing the child unlinks it.
    /// Throws stopper::error: STOPPER_EINVAL for an empty source, STOPPER_ENOMEM.
    source child() const {
        if (!s_)
            detail::fail(STOPPER_EINVAL, "stopper::source::child: empty source");
        native_handle_type c = c_api::stopper_new_child(s_);
        if (!c)
            detail::fail(STOPPER_ENOMEM, "stopper::source::child");
        source out(c, nullptr);
        out.keep_ = keep_;  // a child of a std::stop_token bridge keeps the bridge alive
        return out;
    }

    /// A new stopper stopped as soon as any of `parents` is, recording that parent's reason.
    /// No parents gives a plain new stopper. Throws stopper::error: STOPPER_EINVAL when a parent
    /// is empty, STOPPER_ENOMEM.
    static source linked(std::initializer_list<std::reference_wrapper<const source>> parents) {
        std::vector<native_handle_type> raw;
        std::vector<std::shared_ptr<void>> keeps;
        raw.reserve(parents.size());
        for (const source &p : parents) {
            if (!p.s_)
                detail::fail(STOPPER_EINVAL, "stopper::source::linked: empty parent");
            raw.push_back(p.s_);
            if (p.keep_)
                keeps.push_back(p.keep_);
        }
        native_handle_type l = c_api::stopper_new_linked(raw.data(), raw.size());
        if (!l)
            detail::fail(STOPPER_ENOMEM, "stopper::source::linked");
        source out(l, nullptr);
        if (keeps.size() == 1)
            out.keep_ = std::move(keeps.front());
        else if (!keeps.empty())
            out.keep_ = std::shared_ptr<void>(new std::vector<std::shared_ptr<void>>(std::move(keeps)));
        return out;
    }

    /// Arms (or re-arms, replacing an earlier one) a deadline: the stopper is stopped with
    /// `reason` (0 records STOPPER_REASON_DEADLINE) once `delay` has passed. A zero or negative
    /// delay stops it as soon as the library's service thread runs. The deadline keeps the
    /// stopper alive until it fires or is cancelled. True when armed; false when the stopper
    /// is already stopped (or the source is empty).
    template <class Rep, class Period>
    bool stop_after(const std::chrono::duration<Rep, Period> &delay, int32_t reason = 0) noexcept {
        return c_api::stopper_stop_after(s_, detail::to_ns(delay, INT64_MAX), reason) == STOPPER_OK;
    }

    /// Disarms the deadline set by stop_after, if any. True unless the stopper is already
    /// stopped (or the source is empty).
    bool cancel_stop_after() noexcept { return c_api::stopper_stop_after(s_, -1, 0) == STOPPER_OK; }

    /// Time left before the earliest deadline of this stopper and its ancestors: std::nullopt
    /// when there is none, zero once stopped.
    std::optional<std::chrono::nanoseconds> remaining() const noexcept {
        int64_t ns = c_api::stopper_remaining_ns(s_);
        if (ns < 0)
            return std::nullopt;
        return std::chrono::nanoseconds(ns);
    }

    /// Stops the stopper, then waits until every worker (stopper::thread, stopper::scope, or any
    /// thread that entered it from C or Python) has exited it. True when all exited in time;
    /// false on time-out, or for an empty source. A worker joining its own stopper would wait
    /// for itself: that throws stopper::error(STOPPER_EDEADLK), as std::thread::join throws.
    template <class Rep, class Period>
    bool join(const std::chrono::duration<Rep, Period> &timeout) {
        return join_ns(detail::to_ns(timeout, -1));
    }

    /// join() with no limit.
    bool join() { return join_ns(-1); }

    /// A descriptor that polls readable from the moment of the stop (for poll, epoll, libuv...).
    /// Owned by the stopper: do not read or close it. Throws stopper::error on failure
    /// (STOPPER_EINVAL for an empty source, STOPPER_EOS with errno set).
    int fd() {
        int fd = c_api::stopper_fd(s_);
        if (fd < 0)
            detail::fail(fd, "stopper::source::fd");
        return fd;
    }

    /// The C handle, borrowed: valid while this source (or another reference) lives.
    native_handle_type native() const noexcept { return s_; }

    /// Gives this handle's reference to the caller (who must stopper_release it) and leaves the
    /// source empty. A std::stop_token link (source::from) is not carried by the bare pointer.
    native_handle_type detach() noexcept {
        native_handle_type s = s_;
        s_ = nullptr;
        flag_ = c_api::stopper_flag(nullptr);
        keep_.reset();
        return s;
    }

    /// Two sources are equal when they share the same stopper (or are both empty).
    friend bool operator==(const source &a, const source &b) noexcept { return a.s_ == b.s_; }
    friend bool operator!=(const source &a, const source &b) noexcept { return a.s_ != b.s_; }

#if defined(STOPPER_HPP_HAS_STOP_TOKEN)
    /// C++20: a new stopper that is stopped (reason STOPPER_REASON_REQUESTED) when `token` is,
    /// synchronously inside `request_stop()`. The link is a std::stop_callback owned together
    /// with the returned source: it lives as long as any copy of it, or any child()/linked()
    /// made from it, a callback, scope or thread holding one. Once the last of those is gone the
    /// link is removed (waiting, like std::stop_callback, if it is running on another thread),
    /// so a long-lived std::stop_source does not accumulate dead links. A C reference obtained
    /// through native() alone does not keep the link. The new stopper can also be stopped on its
    /// own, which does not touch `token`. A token already stopped gives a stopped stopper; a
    /// token that can never stop gives a plain running stopper.
    /// Throws stopper::error(STOPPER_ENOMEM), or std::bad_alloc.
    static source from(std::stop_token token);
#endif

private:
    source(native_handle_type s, std::nullptr_t) noexcept : s_(s), flag_(c_api::stopper_flag(s)) {}

    bool join_ns(int64_t ns) {
        int32_t rc = c_api::stopper_join(s_, ns);
        if (rc == STOPPER_EDEADLK)
            detail::fail(rc, "stopper::source::join: called by a worker of this stopper");
        return rc == STOPPER_OK;
    }

    native_handle_type s_ = nullptr;
    const uint8_t *flag_ = nullptr;  // stopper_flag(s_): valid while s_ is held
    std::shared_ptr<void> keep_;     // keeps a std::stop_token bridge alive (source::from)
};

#if defined(STOPPER_HPP_HAS_STOP_TOKEN)
namespace detail {

/// The link made by source::from: a std::stop_callback that stops the stopper, and the
/// reference that keeps the stopper alive while the std::stop_callback can still fire. Members
/// are destroyed in reverse order: the std::stop_callback is removed first (waiting for a run in
/// progress on another thread), then the reference is released.
struct std_stop_link {
    struct stop_it {
        native_handle_type s;
        void operator()() const noexcept { c_api::stopper_stop(s, STOPPER_REASON_REQUESTED); }
    };
    struct reference {
        native_handle_type s;
        ~reference() { c_api::stopper_release(s); }
    };

    std_stop_link(native_handle_type s, std::stop_token token)
        : held{c_api::stopper_retain(s)}, link(std::move(token), stop_it{s}) {}

    reference held;
    std::stop_callback<stop_it> link;
};

}  // namespace detail

inline source source::from(std::stop_token token) {
    source out;
    if (token.stop_requested()) {
        out.stop(STOPPER_REASON_REQUESTED);
        return out;
    }
    if (!token.stop_possible())
        return out;
    // Not std::make_shared: in libstdc++ it brings a STB_GNU_UNIQUE symbol (see error::message).
    out.keep_ = std::shared_ptr<void>(new detail::std_stop_link(out.s_, std::move(token)));
    return out;
}
#endif

// ------------------------------------------------------------------------------------ free functions

/// The calling thread's innermost entered stopper (shared: a new reference), or an empty source.
inline source current() noexcept { return source::share(c_api::stopper_current()); }

/// Whether the calling thread's innermost entered stopper is stopped (false outside any):
/// code deep inside a worker can check for a stop without a stopper passed down to it.
inline bool current_is_set() noexcept { return c_api::stopper_is_set(c_api::stopper_current()); }

namespace detail {
inline std::optional<std::size_t> wait_any_ns(std::initializer_list<std::reference_wrapper<const source>> list,
                                              int64_t ns) {
    std::vector<const c_api::stopper *> raw;
    raw.reserve(list.size());
    for (const source &s : list)
        raw.push_back(s.native());
    std::size_t which = 0;
    if (c_api::stopper_wait_any(raw.data(), raw.size(), ns, &which) == STOPPER_STOPPED)
        return which;
    return std::nullopt;
}
}  // namespace detail

/// Waits until any of `list` is stopped or `timeout` passes. The index of a stopped entry, or
/// std::nullopt on time-out. Empty sources never stop; only empty sources with no limit give
/// std::nullopt at once instead of blocking forever.
template <class Rep, class Period>
inline std::optional<std::size_t> wait_any(std::initializer_list<std::reference_wrapper<const source>> list,
                                           const std::chrono::duration<Rep, Period> &timeout) {
    return detail::wait_any_ns(list, detail::to_ns(timeout, -1));
}

/// wait_any with no limit.
inline std::optional<std::size_t> wait_any(std::initializer_list<std::reference_wrapper<const source>> list) {
    return detail::wait_any_ns(list, -1);
}

/// Installs, once, the library's do-nothing, non-SA_RESTART handler for `signo`, so the signal
/// interrupts a blocking system call with EINTR. False when refused (a signal the host already
/// handles or ignores, SIGKILL, a synchronous signal, out of range).
inline bool install_signal(int signo) noexcept { return c_api::stopper_install_signal(signo) == STOPPER_OK; }

/// A hook for scope that sends `signo` to the worker thread on a stop (see install_signal),
/// and again every `repeat` while it is still inside (zero: once).
template <class Rep = int64_t, class Period = std::nano>
inline c_api::stopper_hook signal_hook(int signo,
                                       const std::chrono::duration<Rep, Period> &repeat = std::chrono::nanoseconds(0)) noexcept {
    c_api::stopper_hook h{};
    h.fn = &c_api::stopper_hook_signal;
    h.data = reinterpret_cast<void *>(static_cast<intptr_t>(signo));
    h.repeat_ns = detail::to_ns(repeat, INT64_MAX);
    return h;
}

// ------------------------------------------------------------------------------------ callback

/// Runs a callable once when a stopper stops, on the stopping thread, like std::stop_callback:
/// registered by the constructor (run at once, on the constructing thread, when the stopper is
/// already stopped), unregistered by the destructor. When the callable is running on another
/// thread at that moment, the destructor waits for it to return, so whatever the callable uses
/// may be destroyed right after; from inside the callable itself it does not wait.
///
/// Made from a token or a source. The callable takes `(int32_t reason)` or nothing; it is
/// called once, as std::stop_callback calls it: `std::forward<F>(f)(...)`, so a callable held
/// by value is called as an rvalue and a `callback<G&>` calls the lvalue it refers to. It must
/// not throw: an exception leaving it calls std::terminate with a message (no exception crosses
/// into the C library). Holds a reference to the stopper. Not copyable, not movable (its address
/// is registered). With a token that has no stopper nothing is registered and the callable never
/// runs.
///
///     stopper::callback cb(s, [&] { cv.notify_all(); });          // class template argument
///     stopper::callback<std::function<void(int32_t)>> cb2(t, f);  // deduction, or name it
template <class F>
class callback {
    static_assert(std::is_invocable_v<F, int32_t> || std::is_invocable_v<F>,
                  "stopper::callback: the callable must accept (int32_t reason) or no argument");

public:
    using callback_type = F;

    /// Registers `f` (moved or copied into the callback) to run when `t` stops. Throws
    /// stopper::error(STOPPER_ENOMEM) when registration fails, and whatever copying `f` throws.
    template <class G, std::enable_if_t<std::is_constructible_v<F, G>, int> = 0>
    explicit callback(const token &t, G &&f) : f_(std::forward<G>(f)), t_(t) {
        attach();
    }

    /// The same, taking over the token's reference.
    template <class G, std::enable_if_t<std::is_constructible_v<F, G>, int> = 0>
    explicit callback(token &&t, G &&f) : f_(std::forward<G>(f)), t_(std::move(t)) {
        attach();
    }

    /// Registers `f` to run when `s` stops (as with `s.get_token()`).
    template <class G, std::enable_if_t<std::is_constructible_v<F, G>, int> = 0>
    explicit callback(const source &s, G &&f) : f_(std::forward<G>(f)), t_(s.get_token()) {
        attach();
    }

    /// Unregisters the callable: afterwards it is neither running nor will it ever run.
    ~callback() {
        if (id_ != 0)
            c_api::stopper_unregister(t_.s_, id_);
    }

    callback(const callback &) = delete;
    callback &operator=(const callback &) = delete;
    callback(callback &&) = delete;
    callback &operator=(callback &&) = delete;

private:
    void attach() {
        if (!t_.s_)
            return;  // a token without a stopper never stops
        uint64_t id = 0;
        int32_t rc = c_api::stopper_on_stop(t_.s_, &callback::trampoline, this, &id);
        if (rc == STOPPER_OK)
            id_ = id;
        else if (rc != STOPPER_STOPPED)  // STOPPED: it already ran, here, on this thread
            detail::fail(rc, "stopper::callback");
    }

    static void trampoline(void *self, int32_t reason) noexcept {
#if defined(STOPPER_HPP_EXCEPTIONS)
        try {
            invoke(self, reason);
        } catch (const std::exception &e) {
            detail::callable_threw(e.what());
        } catch (...) {
            detail::callable_threw(nullptr);
        }
#else
        invoke(self, reason);
#endif
    }

    static void invoke(void *self, int32_t reason) {
        callback *cb = static_cast<callback *>(self);
        // Nothing of *cb is touched after the call: the callable may destroy its callback.
        if constexpr (std::is_invocable_v<F, int32_t>)
            std::forward<F>(cb->f_)(reason);
        else
            std::forward<F>(cb->f_)();
    }

    F f_;
    token t_;
    uint64_t id_ = 0;  // 0 when nothing is registered
};

template <class F>
callback(const source &, F) -> callback<F>;
template <class F>
callback(token, F) -> callback<F>;

// ------------------------------------------------------------------------------------ scope

/// Makes the calling thread a worker of a stopper for the scope's lifetime (stopper_enter /
/// stopper_exit): source::join waits for it, current() and current_is_set() see it, and a hook
/// (for example signal_hook) interrupts it on a stop. Entering a stopped stopper is allowed
/// (the thread is inside all the same; stopped_on_entry() says so). Must end on the thread that
/// made it, innermost first (automatic for a local variable). Not copyable, not movable.
class scope {
public:
    /// Enters `s` without a hook. Throws stopper::error: STOPPER_EINVAL for an empty source,
    /// STOPPER_ENOMEM.
    explicit scope(const source &s) : scope(s, nullptr) {}

    /// Enters `s` with an interrupt hook (copied by the library).
    scope(const source &s, const c_api::stopper_hook &hook) : scope(s, &hook) {}

    ~scope() { c_api::stopper_exit(s_.native()); }

    /// True when the stopper was already stopped when this scope entered it.
    bool stopped_on_entry() const noexcept { return stopped_on_entry_; }

    /// The stopper this scope entered.
    const source &get_source() const noexcept { return s_; }

    scope(const scope &) = delete;
    scope &operator=(const scope &) = delete;
    scope(scope &&) = delete;
    scope &operator=(scope &&) = delete;

private:
    scope(const source &s, const c_api::stopper_hook *hook) : s_(s) {
        if (!s_)
            detail::fail(STOPPER_EINVAL, "stopper::scope: empty source");
        int32_t rc = c_api::stopper_enter(s_.native(), hook);
        if (rc < 0)
            detail::fail(rc, "stopper::scope");
        stopped_on_entry_ = (rc == STOPPER_STOPPED);
    }

    source s_;
    bool stopped_on_entry_ = false;
};

// ------------------------------------------------------------------------------------ thread

namespace detail {

/// What stopper::thread hands its new thread: the decay-copies of the callable and of the
/// arguments (made on the constructing thread) and the stopper, owned by the new thread.
template <class G, class... A>
struct thread_state {
    // std::conjunction stops at the first false: a generic callable is not instantiated with
    // a source once it accepted a token.
    static constexpr bool token_first = std::is_invocable_v<G, token, A...>;
    static constexpr bool source_first =
        std::conjunction_v<std::bool_constant<!token_first>, std::is_invocable<G, source &, A...>>;
    static constexpr bool args_only =
        std::conjunction_v<std::bool_constant<!token_first && !source_first>, std::is_invocable<G, A...>>;

    template <class F, class... Args>
    explicit thread_state(const source &src, F &&f, Args &&...a)
        : s(src), g(std::forward<F>(f)), args(std::forward<Args>(a)...) {}

    /// The call, on the new thread: the copies are passed as rvalues, never copied or moved
    /// again here (a parameter taken by value is of course constructed from them).
    void call() { call(std::index_sequence_for<A...>{}); }

    template <std::size_t... I>
    void call(std::index_sequence<I...>) {
        if constexpr (token_first)
            std::invoke(std::move(g), s.get_token(), std::get<I>(std::move(args))...);
        else if constexpr (source_first)
            std::invoke(std::move(g), s, std::get<I>(std::move(args))...);
        else
            std::invoke(std::move(g), std::get<I>(std::move(args))...);
    }

    source s;
    G g;
    std::tuple<A...> args;
};

}  // namespace detail

/// A std::jthread whose worker runs inside a stopper: the new thread enters the stopper before
/// the constructor returns (so source::join and stopper_join wait for it), runs the callable,
/// and exits the stopper when the callable returns. The destructor stops the stopper and joins
/// the thread.
///
/// The callable is called as std::jthread calls it: `f(token, args...)` when it accepts a
/// stopper::token first (as std::jthread passes a std::stop_token), else `f(source&, args...)`
/// when it accepts a stopper::source first, else `f(args...)`. The callable and the arguments
/// are decay-copied once, on the constructing thread, as by std::thread (so a type that can only
/// be copied works, and whatever copying throws is thrown by the constructor), then passed to
/// the call as rvalues. An exception leaving the callable calls std::terminate, as with
/// std::thread.
///
/// Several threads may share one source; then stopping any of them stops them all.
class thread {
public:
    using id = std::thread::id;
    using native_handle_type = std::thread::native_handle_type;

    /// No thread.
    thread() noexcept : s_(nullptr) {}

    /// A new thread with its own new stopper, like std::jthread. Throws stopper::error
    /// (out of memory) or std::system_error (the thread could not start).
    template <class F, class... Args,
              std::enable_if_t<!std::is_same_v<std::decay_t<F>, source> && !std::is_same_v<std::decay_t<F>, thread>, int> = 0>
    explicit thread(F &&f, Args &&...args) : thread(source(), std::forward<F>(f), std::forward<Args>(args)...) {}

    /// A new thread that is a worker of `s`. Throws stopper::error (STOPPER_EINVAL for an empty
    /// source, or the status of a failed enter), std::system_error (the thread could not
    /// start), or whatever decay-copying the callable or an argument throws.
    template <class F, class... Args>
    thread(const source &s, F &&f, Args &&...args) : s_(s) {
        using state = detail::thread_state<std::decay_t<F>, std::decay_t<Args>...>;
        static_assert(state::token_first || state::source_first || state::args_only,
                      "stopper::thread: the callable must accept (stopper::token, args...), "
                      "(stopper::source, args...) or (args...)");
        if (!s_)
            detail::fail(STOPPER_EINVAL, "stopper::thread: empty source");
        // The decay-copies, made here on the calling thread; the new thread only borrows them.
        std::unique_ptr<state> st(new state(s_, std::forward<F>(f), std::forward<Args>(args)...));
        detail::start_gate gate;
        t_ = std::thread(&thread::run<state>, st.get(), &gate);
        st.release();  // the new thread owns it now
        std::unique_lock<std::mutex> lock(gate.m);
        gate.cv.wait(lock, [&gate] { return gate.done; });
        if (gate.rc < 0) {
            lock.unlock();
            t_.join();
            detail::fail(gate.rc, "stopper::thread: could not enter the stopper");
        }
    }

    /// Stops the stopper and joins the thread, if it is joinable.
    ~thread() { stop_and_join(); }

    thread(const thread &) = delete;
    thread &operator=(const thread &) = delete;

    thread(thread &&o) noexcept = default;

    /// Stops and joins the thread this one held (if joinable), then takes `o`'s.
    thread &operator=(thread &&o) noexcept {
        if (this != &o) {
            stop_and_join();
            s_ = std::move(o.s_);
            t_ = std::move(o.t_);
        }
        return *this;
    }

    void swap(thread &o) noexcept {
        s_.swap(o.s_);
        t_.swap(o.t_);
    }
    friend void swap(thread &a, thread &b) noexcept { a.swap(b); }

    bool joinable() const noexcept { return t_.joinable(); }

    /// Waits for the thread to finish (without stopping it). Throws std::system_error as
    /// std::thread::join does (not joinable, or called by the thread itself).
    void join() { t_.join(); }

    /// Lets the thread run on its own; it stays a worker of the stopper until it returns, so
    /// source::join still waits for it.
    void detach() { t_.detach(); }

    /// Stops the stopper (reason STOPPER_REASON_REQUESTED). True when this call stopped it.
    bool request_stop() noexcept { return s_.stop(); }

    /// The stopper this thread works in (a shared copy; empty for a default-made thread).
    source get_source() const noexcept { return s_; }

    /// A read-only token of the thread's stopper (without a stopper for a default-made thread).
    token get_token() const noexcept { return s_.get_token(); }

    /// std::jthread's spellings of get_source() and get_token().
    source get_stop_source() const noexcept { return get_source(); }
    token get_stop_token() const noexcept { return get_token(); }

    /// std::thread::hardware_concurrency().
    static unsigned int hardware_concurrency() noexcept { return std::thread::hardware_concurrency(); }

    id get_id() const noexcept { return t_.get_id(); }
    native_handle_type native_handle() { return t_.native_handle(); }

private:
    void stop_and_join() noexcept {
        if (t_.joinable()) {
            s_.stop();
            t_.join();
        }
    }

    template <class State>
    static void run(State *raw, detail::start_gate *gate) noexcept {
        int32_t rc = c_api::stopper_enter(raw->s.native(), nullptr);
        {
            std::lock_guard<std::mutex> lock(gate->m);
            gate->rc = rc;
            gate->done = true;
            gate->cv.notify_one();
        }  // the constructor may return from here on: gate is gone
        if (rc < 0) {
            delete raw;
            return;
        }
        // Declared first, destroyed last: the callable and the arguments are destroyed before
        // the thread leaves the stopper, so a join sees their destructors done.
        struct exit_at_end {
            source s;
            ~exit_at_end() { c_api::stopper_exit(s.native()); }
        } guard{raw->s};
        std::unique_ptr<State> st(raw);
        st->call();
    }

    source s_;
    std::thread t_;
};

// ------------------------------------------------------------------------------------ waits on a condition variable

namespace detail {

/// The lock a token-aware wait hands to std::condition_variable_any: the caller's lock plus a
/// mutex of the wait's own (`gate`). The stop callback takes `gate` before it notifies. A waiter
/// holds `gate` from its check of the stop flag until the condition variable has released the
/// combined lock, which it does atomically with starting to block; so a stop that comes after
/// the check notifies a thread that is already blocked, never one about to block: no lost
/// wake-up, and the callback never needs the caller's lock (which the stopping thread may hold).
/// Lock order: the caller's lock, then `gate`.
template <class Lock>
struct gated_lock {
    Lock &user;
    std::mutex &gate;
    void lock() {
        user.lock();
        gate.lock();
    }
    void unlock() {
        gate.unlock();
        user.unlock();
    }
};

/// The stop callback of a token-aware wait: passes through the gate, then wakes the waiters.
struct notify_on_stop {
    std::mutex *gate;
    std::condition_variable_any *cv;
    void operator()() const noexcept {
        { std::lock_guard<std::mutex> pass(*gate); }
        cv->notify_all();
    }
};

/// One round of a token-aware wait: true when the token is stopped (checked under the gate),
/// else blocks once through `block(gated_lock&)` and returns false.
template <class Lock, class Block>
bool stopped_or_block(Lock &lock, std::mutex &gate, const token &t, Block block) {
    gated_lock<Lock> both{lock, gate};
    gate.lock();
    // Unlocked on every way out, an exception from the block too (a user clock's now() may
    // throw; the condition variable has taken both locks again by then).
    struct release_gate {
        std::mutex &g;
        ~release_gate() { g.unlock(); }
    } release{gate};
    if (t.stop_requested())
        return true;
    block(both);  // returns with `lock` and `gate` held again
    return false;
}

}  // namespace detail

/// Waits on `cv` until `pred()` is true or `t` is stopped, as
/// std::condition_variable_any::wait(lock, std::stop_token, pred) does: the stop wakes the wait
/// at once. Returns `pred()` as last evaluated: true when the predicate became true, else (on a
/// stop) `pred()` evaluated once more after the stop. `lock` must be locked by the caller (it is,
/// again, on return); every change to what `pred` reads must be made under the same lock and
/// followed by a notify, as for any condition variable wait. A token without a stopper
/// (`stop_possible() == false`) gives a plain `cv.wait(lock, pred)`. Throws what `pred` throws,
/// and stopper::error(STOPPER_ENOMEM) when the stop callback cannot be registered.
template <class Lock, class Pred>
bool wait(std::condition_variable_any &cv, Lock &lock, const token &t, Pred pred) {
    if (t.stop_requested())
        return pred();
    if (!t.stop_possible()) {
        cv.wait(lock, pred);
        return true;
    }
    std::mutex gate;
    callback<detail::notify_on_stop> wake(t, detail::notify_on_stop{&gate, &cv});
    while (!pred()) {
        if (detail::stopped_or_block(lock, gate, t, [&cv](auto &both) { cv.wait(both); }))
            return pred();
    }
    return true;
}

/// As wait(cv, lock, t, pred), also ending when the clock reaches `abs`: then returns `pred()`,
/// as std::condition_variable_any::wait_until(lock, std::stop_token, abs_time, pred) does.
template <class Lock, class Clock, class Duration, class Pred>
bool wait_until(std::condition_variable_any &cv, Lock &lock, const token &t,
                const std::chrono::time_point<Clock, Duration> &abs, Pred pred) {
    if (t.stop_requested())
        return pred();
    if (!t.stop_possible())
        return cv.wait_until(lock, abs, pred);
    std::mutex gate;
    callback<detail::notify_on_stop> wake(t, detail::notify_on_stop{&gate, &cv});
    while (!pred()) {
        bool timed_out = false;
        if (detail::stopped_or_block(lock, gate, t, [&](auto &both) {
                timed_out = cv.wait_until(both, abs) == std::cv_status::timeout;
            }))
            return pred();
        if (timed_out)
            return pred();
    }
    return true;
}

/// As wait(cv, lock, t, pred), also ending after `rel` has passed (measured on
/// std::chrono::steady_clock): then returns `pred()`, as
/// std::condition_variable_any::wait_for(lock, std::stop_token, rel_time, pred) does.
template <class Lock, class Rep, class Period, class Pred>
bool wait_for(std::condition_variable_any &cv, Lock &lock, const token &t,
              const std::chrono::duration<Rep, Period> &rel, Pred pred) {
    return wait_until(cv, lock, t, detail::deadline_after(rel), std::move(pred));
}

}  // namespace stopper

#endif  // STOPPER_HPP
