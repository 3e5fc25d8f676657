#!/usr/bin/env bash
# test_install.sh — --version of both binaries; make install PREFIX=… and the installed
# binaries run from outside the checkout on the installed demo model; a server without a
# model fails before listening with one line. make install builds the plain build (build/),
# so that part runs only there.
set -u
BUILD="${BUILD:-build}"
fails=0
check() { # check NAME COND…
    local name=$1; shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
tmp=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
pid=

describe=$(git describe --always --dirty 2>/dev/null || echo unknown)
for prog in dalle-cli dalle-server; do
    out=$("$BUILD/$prog" --version); rc=$?
    check "$prog --version: exit 0" test "$rc" = 0
    check "$prog --version: version and git describe" \
        test "$(head -1 <<<"$out")" = "$prog 0.1.0 (git $describe)"
    check "$prog --version: backends" grep -qE '^backends: cpu \(GEMM [a-z0-9 ]*portable; this CPU: [a-z0-9]+\)(, cuda)?$' <<<"$out"
done

# a missing model: one line on stderr, exit 2, nothing listens
"$BUILD/dalle-server" --port 0 --model "$tmp/none" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "missing --model: exit 2" test "$rc" = 2
check "missing --model: one line naming it, no listening" \
    test "$(cat "$tmp/err")" = "dalle-server: --model $tmp/none: not a model directory (config.json: No such file or directory)"
cp "$BUILD/dalle-server" "$tmp/lone-server"
(cd "$tmp" && ./lone-server --port 0) >"$tmp/out" 2>"$tmp/err"; rc=$?
check "no demo model next to the binary: exit 2, one line" \
    test "$rc" = 2 -a "$(wc -l <"$tmp/err")" = 1
check "no demo model: says where it looked" grep -q "no --model given and no bundled demo model at $tmp/../share/dalle-server/models/demo" "$tmp/err"

if [ "$BUILD" != build ]; then
    echo "skip make install (BUILD=$BUILD)"
    [ "$fails" = 0 ]; exit
fi
prefix="$tmp/prefix"
make --no-print-directory install PREFIX="$prefix" >"$tmp/install.log" 2>&1
check "make install PREFIX=…" test $? = 0
for f in bin/dalle-cli bin/dalle-server share/dalle-server/web/index.html \
         share/dalle-server/models/demo/config.json share/dalle-server/models/demo/decoder.safetensors; do
    check "installed $f" test -s "$prefix/$f"
done
check "installed page is web/index.html" cmp -s web/index.html "$prefix/share/dalle-server/web/index.html"

# from outside the checkout: the CLI and the server find the installed demo model
(cd "$tmp" && "$prefix/bin/dalle-cli" generate --prompt "a red square on a blue background" \
    -n 1 --seed 1 --out gen >/dev/null 2>"$tmp/cli.err")
check "installed dalle-cli generates outside the checkout" test -s "$tmp/gen/0.jpg"
ref=$("$BUILD/dalle-cli" generate --model models/demo --prompt "a red square on a blue background" \
    -n 1 --seed 1 --out "$tmp/ref" >/dev/null && echo ok)
check "same image as build/dalle-cli on models/demo" test "$ref" = ok -a -n "$(cmp "$tmp/gen/0.jpg" "$tmp/ref/0.jpg" && echo same)"

(cd "$tmp" && exec "$prefix/bin/dalle-server" --port 0 2>"$tmp/srv.err") &
pid=$!
port=
for _ in $(seq 600); do
    port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$tmp/srv.err")
    [ -n "$port" ] && curl -sf "localhost:$port/ready" >/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
info=$(curl -s "localhost:$port/info")
check "installed dalle-server outside the checkout serves the demo model" \
    grep -q '"name":"demo-shapes"' <<<"$info"
kill -TERM "$pid"; wait "$pid"; rc=$?; pid=
check "installed dalle-server stops cleanly" test "$rc" = 0
[ "$fails" = 0 ]
