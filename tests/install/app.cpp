// Built only through pkg-config against an installed prefix.
#include <chrono>
#include <cstdio>
#include <stopper.hpp>

int main() {
    stopper::source s;
    bool ran = false;
    stopper::callback cb(s, [&] { ran = true; });
    s.stop_after(std::chrono::milliseconds(1));
    bool ok = s.wait(std::chrono::seconds(10)) && ran;
    std::printf("%s: installed header-only wrapper %s\n", __FILE__, ok ? "works" : "FAILED");
    return ok ? 0 : 1;
}
