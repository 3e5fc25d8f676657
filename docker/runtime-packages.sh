#!/bin/sh
# docker/runtime-packages.sh BINARY… — the Debian/Ubuntu packages that own the shared
# libraries the binaries load (ldd), one per line, sorted. Run in the build stage of an
# image; the runtime stage of the same distribution installs exactly these, so the list
# follows the Makefile's link line instead of a hand-kept list of names that differ between
# releases (libmicrohttpd12 vs libmicrohttpd12t64, libutf8proc2 vs libutf8proc3…).
# A library that no package owns (a toolchain outside dpkg) is named on stderr and skipped;
# the image build then fails on `ldd … | grep 'not found'` if the runtime image lacks it.
set -eu
[ $# -gt 0 ] || { echo "usage: $0 BINARY…" >&2; exit 2; }
for bin in "$@"; do
    ldd "$bin" | awk '/=> \// {print $3}'
done | sort -u | while read -r lib; do
    real=$(readlink -f "$lib")
    # usrmerge: dpkg may know the file under /lib or under /usr/lib
    pkg=$(dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true)
    if [ -z "$pkg" ]; then
        echo "runtime-packages: no package owns $lib ($real)" >&2
        continue
    fi
    printf '%s\n' "${pkg%%:*}"
done | sort -u
