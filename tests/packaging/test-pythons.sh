#!/usr/bin/env bash
# The version matrix: installs the one wheel in WHEELDIR into a fresh venv of each CPython
# version given (pyenv's, or pythonX.Y on PATH) with the test requirements, and runs the Python
# suite (a copy of tests/python, run from outside the source tree) against the installed package.
# One summary line per version; a version that is not installed is skipped with a line saying so.
# Exit status 1 if any installed version fails. Logs and venvs: build/pythons/.
#   usage: tests/packaging/test-pythons.sh WHEELDIR VERSION...
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tests/packaging/common.sh"
wheeldir=${1:?usage: test-pythons.sh WHEELDIR VERSION...}
shift
wheels=("$wheeldir"/stopper-*.whl)
[ ${#wheels[@]} -eq 1 ] && [ -f "${wheels[0]}" ] ||
    { echo "test-pythons: expected one wheel in $wheeldir, found: ${wheels[*]}" >&2; exit 1; }
wheel=$(cd "$(dirname "${wheels[0]}")" && pwd)/$(basename "${wheels[0]}")
work=$root/build/pythons
mkdir -p "$work"
table=$work/matrix.md
{
    echo "| CPython | result |"
    echo "|---|---|"
} > "$table"

failed=0
echo "wheel: $(basename "$wheel")"
for v in "$@"; do
    py=$(find_python "$v") || {
        echo "python $v: SKIPPED (not installed)"
        echo "| $v | not installed |" >> "$table"
        continue
    }
    full=$(full_version "$py")
    venv=$work/venv-$v
    log=$work/$v.log
    tests=$work/tests-$v
    rm -rf "$venv" "$tests"
    cp -r "$root/tests/python" "$tests"
    rm -rf "$tests/__pycache__"
    {
        "$py" -m venv "$venv" &&
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "$wheel" -r "$root/bindings/python/requirements-dev.txt"
    } > "$log" 2>&1
    if [ $? -ne 0 ]; then
        echo "python $full: FAIL (install; log: ${log#$root/})"
        echo "| $full | install failed |" >> "$table"
        failed=1
        continue
    fi
    # From the copy's directory: nothing of the source tree is importable, only the venv's
    # installed package. STOPPER_ROOT lets the suite find the repository's files it reads.
    (cd "$tests" && env -u STOPPER_LIBRARY -u STOPPER_LIBDIR STOPPER_ROOT="$root" \
        "$venv/bin/python" -m pytest -q -p no:cacheprovider ${PYTEST_ARGS:-} .) >> "$log" 2>&1
    rc=$?
    summary=$(grep -E '^=* ?[0-9]+ (passed|failed|error)' "$log" | tail -1 | sed -E 's/=//g; s/ in [0-9.]+s.*//; s/^ *//; s/ *$//')
    [ -n "$summary" ] || summary="no pytest summary (exit $rc)"
    if [ $rc -eq 0 ]; then
        echo "python $full: ok ($summary)"
        echo "| $full | $summary |" >> "$table"
    else
        echo "python $full: FAIL ($summary; log: ${log#$root/})"
        echo "| $full | FAIL: $summary |" >> "$table"
        failed=1
    fi
done
echo "matrix table: ${table#$root/}"
exit $failed
