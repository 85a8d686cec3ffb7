// Built only through pkg-config (and CMake's find_package) against an installed prefix.
#include <chrono>
#include <cstdio>
#include <stopper.hpp>

int main() {
    stopper::source s;
    stopper::source ran;  // stopped by the callback: a stop wakes waiters before callbacks run
    stopper::callback cb(s, [&] { ran.stop(); });
    s.stop_after(std::chrono::milliseconds(1));
    bool ok = s.wait(std::chrono::seconds(10)) && ran.wait(std::chrono::seconds(10));
    std::printf("%s: installed header-only wrapper %s\n", __FILE__, ok ? "works" : "FAILED");
    return ok ? 0 : 1;
}
