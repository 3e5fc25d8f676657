#!/usr/bin/env bash
# tools/gpu/bundle.sh — `make gpu-bundle`: run on a connected Debian machine. Fills the
# git-ignored folder .gpu-bundle/ with the .deb files that tools/gpu/check.sh unpacks on a
# bare GPU machine (CUDA toolkit and gcc present, no network, none of our libraries):
# the runtime and -dev packages of jansson, utf8proc, TurboJPEG,
# libmicrohttpd, Criterion (+ its runtime deps, so `make test` can run there too) and GNU
# make; and min-dalle 0.4.11's source (py/, for bench/gpu's side-by-side run). The device
# call carries the folder: carry [".gpu-bundle"], 64 MiB for the whole
# tree, so the script prints the size and fails above 40 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=.gpu-bundle
pkgs=(
  libjansson4 libjansson-dev
  libutf8proc2 libutf8proc-dev
  libturbojpeg0 libturbojpeg0-dev
  libmicrohttpd12 libmicrohttpd-dev
  libcriterion3 libcriterion-dev libboxfort-dev libnanomsg5 libgit2-1.5 libhttp-parser2.9
  libmbedcrypto7 libmbedtls14 libmbedx509-1 libssh2-1
  make
)
mkdir -p "$dir"
rm -f "$dir"/*.deb
(cd "$dir" && apt-get download "${pkgs[@]}" 2>&1 | grep -v 'unsandboxed as root' || true)
shopt -s nullglob
for f in "$dir"/*%3a*.deb; do mv "$f" "${f//%3a/_}"; done  # plain file names
n=$(ls "$dir"/*.deb | wc -l)
[ "$n" -eq "${#pkgs[@]}" ] || { echo "gpu-bundle: got $n of ${#pkgs[@]} packages" >&2; exit 1; }
# min-dalle for bench/gpu (its source distribution: pure Python, unpacked on PYTHONPATH there)
mkdir -p "$dir/py"
rm -f "$dir"/py/*
pip=(python3 -m pip)
"${pip[@]}" --version >/dev/null 2>&1 || pip=(pip3)
"${pip[@]}" download --no-deps --no-binary :all: -d "$dir/py" min-dalle==0.4.11 >/dev/null ||
  { echo "gpu-bundle: cannot download min-dalle 0.4.11 (pip)" >&2; exit 1; }
ls -1 "$dir"/*.deb "$dir"/py/* | sed 's|^\.gpu-bundle/||' > "$dir/MANIFEST"
kib=$(du -sk "$dir" | cut -f1)
echo "gpu-bundle: $(ls "$dir"/*.deb | wc -l) packages, $((kib / 1024)) MiB in $dir"
if [ "$kib" -gt $((40 * 1024)) ]; then
  echo "gpu-bundle: over 40 MiB — too large to carry with the tree (64 MiB limit)" >&2
  exit 1
fi
