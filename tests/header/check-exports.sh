#!/usr/bin/env bash
# The shared library exports stopper_* symbols only, has SONAME libstopper.so.<major>, and
# exports every function the header declares (static inline helpers excepted).
# usage: check-exports.sh LIBDIR MAJOR AUX_INFO_FILE
set -u
lib="$1/libstopper.so"
major="$2"
aux="$3"
rc=0

if [ ! -e "$lib" ]; then echo "check-exports: $lib not found"; exit 1; fi

exported=$(nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' | sort -u)
if [ -z "$exported" ]; then echo "check-exports: nm found no defined dynamic symbols in $lib"; exit 1; fi
foreign=$(printf '%s\n' "$exported" | grep -v '^stopper_' || true)
if [ -n "$foreign" ]; then
    echo "FAIL exports: $lib exports symbols outside the stopper_ namespace:"
    printf '%s\n' "$foreign" | sed 's/^/    /'
    rc=1
else
    echo "ok   exports: $(printf '%s\n' "$exported" | wc -l) symbols, all stopper_*"
fi

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$soname" != "libstopper.so.$major" ]; then
    echo "FAIL soname: got '$soname', want 'libstopper.so.$major'"
    rc=1
else
    echo "ok   soname: $soname"
fi

# every non-inline function of the header is exported (gcc -aux-info lists the prototypes)
declared=$(grep -v 'static' "$aux" | grep -oE '\bstopper_[a-z0-9_]+ \(' | sed 's/ (//' | sort -u)
if [ -z "$declared" ]; then echo "FAIL header: no function prototypes found in $aux"; exit 1; fi
missing=$(comm -23 <(printf '%s\n' "$declared") <(printf '%s\n' "$exported"))
if [ -n "$missing" ]; then
    echo "FAIL header: declared in stopper.h but not exported by $lib:"
    printf '%s\n' "$missing" | sed 's/^/    /'
    rc=1
else
    echo "ok   header: all $(printf '%s\n' "$declared" | wc -l) declared functions are exported"
fi
# and nothing exported is missing from the header
undeclared=$(comm -13 <(printf '%s\n' "$declared") <(printf '%s\n' "$exported"))
if [ -n "$undeclared" ]; then
    echo "FAIL header: exported by $lib but not declared in stopper.h:"
    printf '%s\n' "$undeclared" | sed 's/^/    /'
    rc=1
else
    echo "ok   header: every exported symbol is declared"
fi
exit $rc
