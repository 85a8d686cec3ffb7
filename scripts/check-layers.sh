#!/bin/sh
# The core's layers import downward only (docs/architecture.md): base < token < ext < ffi.
# A `crate::` path in a layer that names a layer above it fails the check (comments included:
# a doc link upward is a dependency too).
set -eu
cd "$(dirname "$0")/.."
fail=0
check() {
    layer=$1
    above=$2
    hits=$(grep -rnE "crate::($above)\b" "src/$layer" || true)
    if [ -n "$hits" ]; then
        echo "check-layers: src/$layer/ reaches up into $(echo "$above" | tr '|' ' '):" >&2
        echo "$hits" >&2
        fail=1
    fi
}
check base 'token|ext|ffi'
check token 'ext|ffi'
check ext 'ffi'
# The crate root (lib.rs) only re-exports: code inside the layers names the defining module
# (doc comments may link to the public path users see).
hits=$(grep -rnE "crate::(REASON_[A-Z]+|Stopper|RawFn|Status|Channel|Hook|HookFn|Scope|Wait|VERSION|now_ns|thread_id|abi_version|install_signal|stop_on_signal|wait_any|wait_fd|current)\b" src/base src/token src/ext | grep -vE '^[^:]+:[0-9]+: *//' || true)
if [ -n "$hits" ]; then
    echo "check-layers: a layer names the crate root's re-exports (use the defining module):" >&2
    echo "$hits" >&2
    fail=1
fi
[ "$fail" = 0 ] && echo "check-layers: base < token < ext < ffi, no import upward"
exit "$fail"
