#!/usr/bin/env bash
# Packaging as a user meets it, from a fresh copy of the repository (its tracked files as they
# are in the working tree: no build/, no target/, nothing `make` made):
#   1. `pip install ./bindings/python` into a fresh venv of a non-default CPython builds the
#      library with cargo; the package imports (outside the tree) and a stop/wait works;
#   2. `python -m build ./bindings/python` makes one sdist (holding the crate) and one wheel
#      tagged py3-none-<platform> holding libstopper.so.0;
#   3. `pip install` of that sdist into a fresh venv of another CPython builds and works;
#   4. the wheel installed into the first venv works there;
#   5. with cargo hidden from PATH the build fails with one line saying "cargo is needed";
#   6. a broken or foreign bundled library gives an ImportError naming the file it tried, and
#      STOPPER_LIBRARY still overrides the bundled library.
# cargo's output is kept in build/cargo-python (shared with `make wheel`), so dependencies are
# built once; the stopper crate itself is rebuilt for each new source location (three times).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/packaging/common.sh"
here=$root/tests/packaging
work=$root/build/packaging
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/build/cargo-python}
unset STOPPER_LIBDIR STOPPER_LIBRARY   # build with cargo; load what the package bundles
export PIP_DISABLE_PIP_VERSION_CHECK=1

passed=0
failed=0
ok() { echo "test-packaging: ok: $*"; passed=$((passed + 1)); }
bad() { echo "test-packaging: FAIL: $*"; failed=$((failed + 1)); }
finish() {
    echo "test-packaging: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}
# run LOG CMD...: runs CMD with its output in LOG; on failure shows the log's tail.
run() {
    local log=$1
    shift
    if "$@" > "$log" 2>&1; then return 0; fi
    echo "--- last lines of ${log#$root/}:"
    tail -25 "$log"
    return 1
}

# ---- the interpreters: two CPython versions other than the default one, oldest and newest.
default=$("${PYTHON:-python3}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
others=()
for v in 3.8 3.9 3.10 3.11 3.12 3.13; do
    [ "$v" = "$default" ] && continue
    find_python "$v" > /dev/null && others+=("$v")
done
if [ ${#others[@]} -eq 0 ]; then
    echo "test-packaging: no CPython besides $default found; using $default"
    others=("$default")
fi
py_a=$(find_python "${others[0]}" || command -v "${PYTHON:-python3}")
py_b=$(find_python "${others[${#others[@]}-1]}" || echo "$py_a")
echo "test-packaging: building with cargo on $(full_version "$py_a") and $(full_version "$py_b") (default python: $default)"

# ---- a fresh copy of the repository
rm -rf "$work"
mkdir -p "$work/src" "$work/outside"
src=$work/src
(cd "$root" && git ls-files -z | tar --null --files-from=- --ignore-failed-read -cf - 2> /dev/null) |
    tar -xf - -C "$src" || { bad "copying the repository's tracked files"; finish; }
if [ -e "$src/build" ] || ls "$src"/bindings/python/src/stopper/libstopper.so* > /dev/null 2>&1; then
    bad "the fresh copy already holds a built library"
fi
tools_venv "$root/build/pytools" || { bad "making the tools venv (build, auditwheel)"; finish; }

# smoke VENV [EXPECTED_LIBRARY]: imports the installed package from outside the tree.
smoke() {
    local venv=$1
    shift
    (cd "$work/outside" && "$venv/bin/python" "$here/smoke.py" "$@")
}

# ---- 1. pip install ./bindings/python, no make first
venv_a=$work/venv-a
if run "$work/1-install-tree.log" "$py_a" -m venv "$venv_a" &&
    run "$work/1-install-tree.log" "$venv_a/bin/pip" install "$src/bindings/python"; then
    if out=$(smoke "$venv_a" 2>&1); then
        ok "pip install ./bindings/python on $(full_version "$py_a") (no make): $out"
    else
        bad "import after pip install ./bindings/python on $(full_version "$py_a"): $out"
    fi
else
    bad "pip install ./bindings/python on $(full_version "$py_a") (log: ${work#$root/}/1-install-tree.log)"
fi

# ---- 2. python -m build: one sdist, one wheel py3-none-<platform>
dist=$work/dist
plat=$("$py_a" -c 'import sysconfig; print(sysconfig.get_platform().replace("-", "_").replace(".", "_"))')
version=$(crate_version "$src")
if run "$work/2-build.log" "$root/build/pytools/bin/python" -m build --outdir "$dist" "$src/bindings/python"; then
    wheels=("$dist"/*.whl)
    sdists=("$dist"/*.tar.gz)
    want=stopper-$version-py3-none-$plat.whl
    if [ ${#wheels[@]} -eq 1 ] && [ "$(basename "${wheels[0]}")" = "$want" ]; then
        ok "python -m build made one wheel: $want"
    else
        bad "python -m build: expected one wheel $want, got: $(cd "$dist" && echo *.whl)"
    fi
    if "$py_a" - "${wheels[0]}" <<'PY'; then
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = z.namelist()
wheel = z.read(next(n for n in names if n.endswith(".dist-info/WHEEL"))).decode()
assert "stopper/libstopper.so.0" in names, names
assert "Root-Is-Purelib: false" in wheel, wheel
tags = [l.split(": ", 1)[1] for l in wheel.splitlines() if l.startswith("Tag: ")]
assert len(tags) == 1 and tags[0].startswith("py3-none-"), tags
assert not any("/rust/" in n or n.startswith("rust/") for n in names), names
PY
        ok "the wheel holds stopper/libstopper.so.0 and one tag py3-none-$plat"
    else
        bad "the wheel's contents or WHEEL tags"
    fi
    if [ ${#sdists[@]} -eq 1 ] && "$py_a" - "${sdists[0]}" <<'PY'; then
import sys, tarfile
names = {n.split("/", 1)[1] for n in tarfile.open(sys.argv[1]).getnames() if "/" in n}
need = ["setup.py", "pyproject.toml", "src/stopper/__init__.py", "rust/Cargo.toml",
        "rust/Cargo.lock", "rust/build.rs", "rust/cbindgen.toml", "rust/include/stopper.h",
        "rust/src/lib.rs"]
missing = [n for n in need if n not in names]
assert not missing, missing
assert not any(".so" in n for n in names), names
PY
        ok "the sdist holds the package and the crate (rust/: Cargo.toml, Cargo.lock, build.rs, cbindgen.toml, include/, src/)"
    else
        bad "the sdist's contents"
    fi
else
    bad "python -m build ./bindings/python (log: ${work#$root/}/2-build.log)"
fi

# ---- 3. pip install of the sdist, another Python
venv_b=$work/venv-b
if [ -f "${sdists[0]:-}" ] && run "$work/3-install-sdist.log" "$py_b" -m venv "$venv_b" &&
    run "$work/3-install-sdist.log" "$venv_b/bin/pip" install "${sdists[0]}"; then
    if out=$(smoke "$venv_b" 2>&1); then
        ok "pip install of the sdist on $(full_version "$py_b"): $out"
    else
        bad "import after pip install of the sdist on $(full_version "$py_b"): $out"
    fi
else
    bad "pip install of the sdist on $(full_version "$py_b") (log: ${work#$root/}/3-install-sdist.log)"
fi

# ---- 4. the wheel (built by the default Python) in the first venv
if [ -f "${wheels[0]:-}" ] && run "$work/4-install-wheel.log" "$venv_a/bin/pip" install --force-reinstall --no-deps "${wheels[0]}"; then
    if out=$(smoke "$venv_a" 2>&1); then
        ok "the wheel on $(full_version "$py_a"): $out"
    else
        bad "import of the wheel on $(full_version "$py_a"): $out"
    fi
else
    bad "pip install of the wheel on $(full_version "$py_a") (log: ${work#$root/}/4-install-wheel.log)"
fi

# ---- 5. no cargo on PATH: one line that says so
nocargo_path=
IFS=: read -r -a dirs <<< "$PATH"
for d in "${dirs[@]}"; do
    [ -n "$d" ] && { [ -e "$d/cargo" ] || [ -e "$d/rustc" ]; } && continue
    nocargo_path=${nocargo_path:+$nocargo_path:}$d
done
log=$work/5-no-cargo.log
if env -u CARGO PATH="$nocargo_path" "$venv_a/bin/pip" wheel --no-deps -w "$work/no-cargo" "$src/bindings/python" > "$log" 2>&1; then
    bad "the build succeeded with cargo hidden (log: ${log#$root/})"
else
    lines=$(grep -c "cargo is needed" "$log")
    line=$(grep "cargo is needed" "$log" | head -1 | sed 's/^ *//')
    if [ "$lines" -eq 1 ]; then
        ok "without cargo the build fails with one line: $line"
    else
        bad "without cargo: expected one line saying \"cargo is needed\", found $lines (log: ${log#$root/})"
    fi
fi

# ---- 6. a broken or foreign bundled library; STOPPER_LIBRARY overrides it
site_lib=$("$venv_a/bin/python" -c 'import os, sysconfig; print(os.path.join(sysconfig.get_paths()["purelib"], "stopper", "libstopper.so.0"))')
good=$work/good-libstopper.so.0
cp "$site_lib" "$good"
for kind in garbage foreign; do
    if [ $kind = garbage ]; then
        printf 'not a shared library\n' > "$site_lib"
    else
        # The real library with its ELF machine field set to aarch64: a wheel of another platform.
        "$py_a" -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[18:20] = (183).to_bytes(2, "little"); open(sys.argv[2], "wb").write(b)' "$good" "$site_lib"
    fi
    err=$(cd "$work/outside" && "$venv_a/bin/python" -c 'import stopper' 2>&1)
    rc=$?
    if [ $rc -ne 0 ] && grep -q "^ImportError" <<< "$err" && grep -qF "$site_lib" <<< "$err"; then
        ok "a $kind bundled library: ImportError naming $(basename "$site_lib") beside the package"
    else
        bad "a $kind bundled library: expected an ImportError naming $site_lib; got (status $rc): $err"
    fi
done
if out=$(STOPPER_LIBRARY=$good smoke "$venv_a" "$good" 2>&1); then
    ok "STOPPER_LIBRARY overrides the (broken) bundled library"
else
    bad "STOPPER_LIBRARY did not override the bundled library: $out"
fi

finish
