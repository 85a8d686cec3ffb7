#!/usr/bin/env bash
# The docs name only functions and types that the header declares: a doc that names a function
# that is gone (renamed, removed) fails here with the list.
# usage: check-docs.sh ROOT HEADER [ALLOW_FILE]
set -u
root="$1"
header="$2"
allow="${3:-}"

known=$(grep -ohE '\bstopper_[a-z0-9_]+' "$header" | sort -u)
allowed=""
if [ -n "$allow" ] && [ -f "$allow" ]; then allowed=$(grep -vE '^\s*(#|$)' "$allow" | sort -u); fi

docs=()
[ -f "$root/README.md" ] && docs+=("$root/README.md")
for f in "$root"/docs/*.md; do [ -f "$f" ] && docs+=("$f"); done
while IFS= read -r f; do docs+=("$f"); done < <(find "$root/bindings" "$root/examples" -name README.md -type f 2>/dev/null | sort)

if [ ${#docs[@]} -eq 0 ]; then
    echo "ok   docs: no documentation files yet"
    exit 0
fi

bad=0
checked=0
for f in "${docs[@]}"; do
    while IFS=: read -r line name; do
        checked=$((checked + 1))
        base="${name%_}"
        if printf '%s\n' "$known" | grep -qxF "$name"; then continue; fi
        if printf '%s\n' "$allowed" | grep -qxF "$name"; then continue; fi
        # "stopper_chan_*": a prefix naming a family, fine when the header has that family
        if [ "$base" != "$name" ] && printf '%s\n' "$known" | grep -q "^${name}"; then continue; fi
        echo "    ${f#$root/}:$line: $name is not declared in include/stopper.h"
        bad=$((bad + 1))
    done < <(grep -noE '\bstopper_[a-z_]+' "$f" | awk -F: '{ for (i = 2; i <= NF; i++) if ($i ~ /^stopper_/) print $1 ":" $i }')
done
if [ $bad -gt 0 ]; then
    echo "FAIL docs: $bad mention(s) of stopper_ names the header does not declare (above)"
    exit 1
fi
echo "ok   docs: $checked mention(s) of stopper_ names in ${#docs[@]} file(s), all declared"
