#!/bin/sh
# gen-pc.sh PREFIX VERSION: print a pkg-config file for stopper installed under PREFIX.
set -eu
prefix=$1
version=$2
cat <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: stopper
Description: Stop threads safely and promptly: stop tokens whose waits wake at once
Version: $version
Libs: -L\${libdir} -lstopper
Libs.private: -lpthread -ldl -lm
Cflags: -I\${includedir}
PC
