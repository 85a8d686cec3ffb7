#!/usr/bin/env bash
# Runs the whole C++ suite and ends with one line "N passed, N failed" (exit 1 on any failure):
#   the test binaries (C++17, C++20), each counting its own tests;
#   stopper.hpp compiled alone and twice in one unit, as C++17 and C++20, with strict warnings;
#   the clear #error when stopper.h was included at global scope first, and for C++14;
#   -fno-exceptions builds; no STB_GNU_UNIQUE symbol in a shared object using every class;
#   `make check` of examples/cpp and examples/plugin-host.
set -u
cd "$(dirname "$0")"
ulimit -c 0 2>/dev/null || true  # some checks abort on purpose
: "${CXX:=g++}" "${MAKE:=make}" "${OUT:=build}"
: "${STOPPER_ROOT:=$(cd ../.. && pwd)}"
: "${STOPPER_INCDIR:=$STOPPER_ROOT/include}" "${STOPPER_LIBDIR:=$STOPPER_ROOT/build/lib}"
: "${CPPFLAGS:=-I$STOPPER_ROOT/bindings/cpp -I$STOPPER_INCDIR}"

passed=0
failed=0
note() { printf '%s\n' "$*"; }
ok() { passed=$((passed + 1)); note "ok   $1"; }
ko() { failed=$((failed + 1)); note "FAIL $1"; }

# ---------------------------------------------------------------- the test binaries
for bin in test_cpp17 test_cpp20; do
    log=$(mktemp)
    timeout 120 "$OUT/$bin" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    last=$(tail -n 1 "$log")
    rm -f "$log"
    if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        passed=$((passed + BASH_REMATCH[1]))
        failed=$((failed + BASH_REMATCH[2]))
        if [[ $rc -ne 0 && ${BASH_REMATCH[2]} -eq 0 ]]; then ko "$bin exited with $rc"; fi
    else
        ko "$bin (exit $rc, no summary line: it crashed or hung)"
    fi
done

# ---------------------------------------------------------------- the header on its own
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#include <stopper.hpp>\nint main() { stopper::source s; return s.is_set() ? 1 : 0; }\n' >"$tmp/alone.cpp"
printf '#include <stopper.hpp>\n#include <stopper.hpp>\nint main() { return stopper::current_is_set() ? 1 : 0; }\n' >"$tmp/twice.cpp"
printf '#include <stopper.hpp>\n' >"$tmp/only.cpp"
printf '#include <stopper.h>\n#include <stopper.hpp>\nint main() { return 0; }\n' >"$tmp/after_c.cpp"
strict="-Wall -Wextra -Werror -Wpedantic -Wshadow -Wnon-virtual-dtor -Wundef"
for std in c++17 c++20; do
    for unit in alone twice only; do
        if $CXX -std=$std $strict $CPPFLAGS -fsyntax-only "$tmp/$unit.cpp" 2>"$tmp/err"; then
            ok "stopper.hpp compiles ($unit, $std)"
        else
            cat "$tmp/err"
            ko "stopper.hpp compiles ($unit, $std)"
        fi
    done
    if $CXX -std=$std $CPPFLAGS -fsyntax-only "$tmp/after_c.cpp" 2>"$tmp/err"; then
        ko "stopper.h then stopper.hpp is refused with a clear message ($std): it compiled"
    elif grep -q "include only stopper.hpp" "$tmp/err"; then
        ok "stopper.h then stopper.hpp is refused with a clear message ($std)"
    else
        cat "$tmp/err"
        ko "stopper.h then stopper.hpp is refused with a clear message ($std)"
    fi
done
# Without exceptions: it compiles, works, and a construction failure aborts with the message.
printf '#include <stopper.hpp>\nint main(int argc, char **) {\n  stopper::source s; stopper::callback cb(s, [] {}); stopper::callback cb2(s.get_token(), [] {});\n  stopper::thread th(s, [](stopper::token t, int) { t.wait(); }, 1);\n  s.stop(); th.join();\n  std::condition_variable_any cv; std::mutex m; std::unique_lock<std::mutex> l(m);\n  if (stopper::wait(cv, l, s.get_token(), [] { return false; })) return 1;\n  if (argc > 1) { stopper::source e(nullptr); (void)e.child(); }\n  return s.is_set() ? 0 : 1;\n}\n' >"$tmp/noexc.cpp"
for std in c++17 c++20; do
    if ! $CXX -std=$std -fno-exceptions $strict $CPPFLAGS "$tmp/noexc.cpp" -o "$tmp/noexc" \
            -L"$STOPPER_LIBDIR" -lstopper -Wl,-rpath,"$STOPPER_LIBDIR" -pthread 2>"$tmp/err"; then
        cat "$tmp/err"
        ko "stopper.hpp with -fno-exceptions ($std): does not build"
        continue
    fi
    "$tmp/noexc" && run_ok=1 || run_ok=0
    bash -c '"$1" fail 2>"$2"; exit $?' _ "$tmp/noexc" "$tmp/err" 2>/dev/null  # keeps "Aborted" quiet
    rc=$?
    if [[ $run_ok -eq 1 && $rc -eq 134 ]] && grep -q "empty source" "$tmp/err"; then
        ok "stopper.hpp with -fno-exceptions: works, a failure aborts with its message ($std)"
    else
        cat "$tmp/err"
        ko "stopper.hpp with -fno-exceptions: works, a failure aborts with its message ($std): run $run_ok, exit $rc"
    fi
done
if $CXX -std=c++14 $CPPFLAGS -fsyntax-only "$tmp/alone.cpp" 2>"$tmp/err"; then
    ko "stopper.hpp refuses C++14: it compiled"
elif grep -q "needs C++17" "$tmp/err"; then
    ok "stopper.hpp refuses C++14 with a clear message"
else
    cat "$tmp/err"
    ko "stopper.hpp refuses C++14 with a clear message"
fi

# A shared object using every class must have no STB_GNU_UNIQUE symbol: one would make a
# plugin that uses stopper.hpp impossible to unload with dlclose (examples/plugin-host).
for std in c++17 c++20; do
    if $CXX -std=$std -Wall -Wextra -Werror $CPPFLAGS -O2 -fPIC -shared -fvisibility=hidden \
            uses_everything.cpp -o "$tmp/uses_everything.so" 2>"$tmp/err"; then
        unique=$(readelf -sW "$tmp/uses_everything.so" | grep -w UNIQUE || true)
        if [[ -z $unique ]]; then
            ok "a plugin using stopper.hpp stays unloadable: no STB_GNU_UNIQUE symbol ($std)"
        else
            printf '%s\n' "$unique" | c++filt
            ko "a plugin using stopper.hpp stays unloadable: no STB_GNU_UNIQUE symbol ($std)"
        fi
    else
        cat "$tmp/err"
        ko "uses_everything.cpp compiles as a shared object ($std)"
    fi
done

# ---------------------------------------------------------------- the examples' checks
for ex in cpp plugin-host; do
    if timeout 300 $MAKE --no-print-directory -C "../../examples/$ex" check; then
        ok "examples/$ex check"
    else
        ko "examples/$ex check"
    fi
done

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
