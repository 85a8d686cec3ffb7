# Shared helpers of the reliability checks (sourced by the other scripts in this directory).

set -euo pipefail

CHECK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="${STOPPER_ROOT:-$(cd "$CHECK_DIR/../.." && pwd)}"
CARGO="${CARGO:-cargo}"
export STOPPER_ROOT="$ROOT"
export STOPPER_LIBDIR="${STOPPER_LIBDIR:-$ROOT/build/lib}"
export STOPPER_INCDIR="${STOPPER_INCDIR:-$ROOT/include}"
NIGHTLY="${STOPPER_NIGHTLY:-nightly}"
TARGET_TRIPLE="${STOPPER_TARGET_TRIPLE:-x86_64-unknown-linux-gnu}"

say() { printf '\n== %s\n' "$*"; }
die() { printf 'check: %s\n' "$*" >&2; exit 1; }

# Runs a command, then prints how long it took: "<label>: <seconds> s".
timed() {
    local label="$1"; shift
    local t0 t1
    t0=$(date +%s.%N)
    "$@"
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" -v l="$label" 'BEGIN { printf "-- %s: %.1f s\n", l, b - a }'
}

# The nightly toolchain with the given components, installed when missing (rustup only).
need_nightly() {
    command -v rustup >/dev/null || die "rustup is needed for the nightly checks (https://rustup.rs)"
    if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1; then
        say "installing the $NIGHTLY toolchain"
        rustup toolchain install "$NIGHTLY" --profile minimal
    fi
    local have
    have="$(rustup component list --toolchain "$NIGHTLY" --installed 2>/dev/null || true)"
    local missing=()
    for c in "$@"; do
        grep -q "^$c" <<<"$have" || missing+=("$c")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "adding ${missing[*]} to $NIGHTLY"
        rustup component add --toolchain "$NIGHTLY" "${missing[@]}"
    fi
}

# A tool from the distribution, installed with apt-get only when missing and possible.
need_tool() {
    local tool="$1" pkg="${2:-$1}"
    command -v "$tool" >/dev/null && return 0
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        say "installing $pkg (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null
    fi
    command -v "$tool" >/dev/null || die "$tool is needed (install the $pkg package)"
}

# The release library in build/lib (the top Makefile's `lib` target).
need_lib() {
    make -s -C "$ROOT" lib >/dev/null
}

# The C suite's Makefile (owned by tests/c); its targets are used as they are.
c_suite() {
    [ -f "$ROOT/tests/c/Makefile" ] || die "tests/c/Makefile is missing: the C suite is needed"
    make --no-print-directory -C "$ROOT/tests/c" "$@"
}
