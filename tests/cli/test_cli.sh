#!/usr/bin/env bash
# test_cli.sh — dalle-cli's stable interface on the tiny model: JSON shapes, determinism by
# seed, image independence from -n, and one-line errors with exit status 2 for bad input.
set -u
CLI="${BUILD:-build}/dalle-cli"
M=models/tiny
fails=0
check() { # check NAME COND…
    local name=$1; shift
    if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}
py() { python3 -c "$1"; }

out=$("$CLI" tokenize --model $M --prompt "A Red bicycle, leaning!")
check "tokenize json" py "
import json,sys; d=json.loads('''$out''')
assert d['normalized'].startswith(' '), d
assert len(d['ids'])==64 and len(d['mask'])==64 and d['ids'][0]==0 and 2 in d['ids']
assert sum(d['mask'])==d['ids'].index(2)+1
assert d['clip_ids'][0]==49406 and d['clip_ids'][-1]==49407
"

a=$("$CLI" tokens --model $M --prompt "a red bicycle" --seed 7 -n 1 --top-k 50)
b=$("$CLI" tokens --model $M --prompt "a red bicycle" --seed 7 -n 3 --top-k 50)
c=$("$CLI" tokens --model $M --prompt "a red bicycle" --seed 8 -n 1 --top-k 50)
check "tokens json, seed echoed, 256 codes in range" py "
import json; d=json.loads('''$a''')
assert d['seed']==7 and len(d['tokens'])==1 and len(d['tokens'][0])==256
assert all(0<=t<16384 for t in d['tokens'][0])
assert set(d['timings_ms'])=={'text','encode','decode'}"
check "same seed: image 0 identical with -n 1 and -n 3" py "
import json; a=json.loads('''$a'''); b=json.loads('''$b''')
assert len(b['tokens'])==3 and a['tokens'][0]==b['tokens'][0]
assert b['tokens'][1]!=b['tokens'][0]"
check "different seed: different codes" py "
import json; a=json.loads('''$a'''); c=json.loads('''$c''')
assert a['tokens'][0]!=c['tokens'][0]"

bad() { # bad NAME ARGS… : exit status 2 and exactly one line on stderr
    local name=$1; shift
    local err rc
    err=$("$CLI" "$@" 2>&1 >/dev/null); rc=$?
    check "$name → exit 2, one line" test "$rc" -eq 2 -a "$(printf '%s\n' "$err" | wc -l)" -eq 1
}
bad "no command"
bad "unknown command" frobnicate --model $M --prompt x
bad "missing --prompt" tokens --model $M
bad "option without value" tokens --model $M --prompt
bad "unknown option" tokens --model $M --prompt x --tempreature 1
bad "n zero" tokens --model $M --prompt x -n 0
bad "n too big" tokens --model $M --prompt x -n 65
bad "n not a number" tokens --model $M --prompt x -n 2x
bad "negative seed" tokens --model $M --prompt x --seed -1
bad "seed above 2^63-1" tokens --model $M --prompt x --seed 9223372036854775808
bad "top-k zero" tokens --model $M --prompt x --top-k 0
bad "top-k above vocab" tokens --model $M --prompt x --top-k 16385
bad "top-p zero" tokens --model $M --prompt x --top-p 0
bad "top-p above 1" tokens --model $M --prompt x --top-p 1.01
bad "temperature zero" tokens --model $M --prompt x --temperature 0
bad "temperature nan" tokens --model $M --prompt x --temperature nan
bad "cond-scale negative" tokens --model $M --prompt x --cond-scale -1
bad "cond-scale above 1000" tokens --model $M --prompt x --cond-scale 1000.5
bad "prompt over 4096 bytes" tokenize --model $M --prompt "$(head -c 4097 /dev/zero | tr '\0' a)"
bad "invalid UTF-8 prompt" tokenize --model $M --prompt "$(printf 'caf\xc3')"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
g=$("$CLI" generate --model $M --prompt "a red bicycle" -n 3 --seed 5 --out "$tmp/g")
check "generate: 3 ranked JPEGs and result.json" py "
import json,os; d=json.load(open('$tmp/g/result.json'))
assert d['seed']==5 and [i['file'] for i in d['images']]==['0.jpg','1.jpg','2.jpg']
assert sorted(i['index'] for i in d['images'])==[0,1,2]
s=[i['score'] for i in d['images']]; assert s==sorted(s, reverse=True)
assert set(d['timings_ms'])=={'text','encode','decode','vqgan','clip','jpeg','total'}
for f in ('0.jpg','1.jpg','2.jpg'): assert open('$tmp/g/'+f,'rb').read(2)==b'\xff\xd8'"
"$CLI" generate --model $M --prompt "a red bicycle" -n 3 --seed 5 --out "$tmp/g2" >/dev/null
check "generate: same seed, byte-identical files" cmp -s "$tmp/g/0.jpg" "$tmp/g2/0.jpg"
"$CLI" tokens --model $M --prompt "a red bicycle" -n 3 --seed 5 > "$tmp/t.json"
"$CLI" decode --model $M --tokens "$tmp/t.json" --out "$tmp/d" --quality 90
check "decode: one JPEG per code grid" test -s "$tmp/d/0.jpg" -a -s "$tmp/d/2.jpg" -a ! -e "$tmp/d/3.jpg"
r=$("$CLI" rank --model $M --prompt "a red bicycle" "$tmp/d/0.jpg" "$tmp/d/1.jpg" "$tmp/d/2.jpg")
check "rank: scores and a permutation" py "
import json; d=json.loads('$r')
assert len(d['scores'])==3 and sorted(d['order'])==[0,1,2]
assert d['scores'][d['order'][0]]>=d['scores'][d['order'][2]]"
# A ranking-only model directory: CLIP without VQGAN (same files, config without files.vqgan).
mkdir -p "$tmp/clip_only"
for f in models/tiny/*; do ln -s "$PWD/$f" "$tmp/clip_only/"; done
rm "$tmp/clip_only/config.json"
python3 -c "
import json; c=json.load(open('$M/config.json')); del c['files']['vqgan']; del c['vqgan']
json.dump(c, open('$tmp/clip_only/config.json', 'w'))"
r2=$("$CLI" rank --model "$tmp/clip_only" --prompt "a red bicycle" "$tmp/d/0.jpg" "$tmp/d/1.jpg" "$tmp/d/2.jpg")
check "rank with a CLIP-only model: the same scores" test "$r2" = "$r"
printf 'not a jpeg' > "$tmp/x.jpg"
echo '{"tokens": [[1,2,3]]}' > "$tmp/short.json"
python3 -c "import json; print(json.dumps({'tokens': [[16384]*256]}))" > "$tmp/range.json"
bad "generate without --out" generate --model $M --prompt x
bad "generate quality 0" generate --model $M --prompt x --out "$tmp/q" --quality 0
bad "generate subsampling 411" generate --model $M --prompt x --out "$tmp/q" --subsampling 411
bad "decode without --tokens" decode --model $M --out "$tmp/q"
bad "decode missing tokens file" decode --model $M --tokens "$tmp/none.json" --out "$tmp/q"
bad "decode short code grid" decode --model $M --tokens "$tmp/short.json" --out "$tmp/q"
bad "decode code out of range" decode --model $M --tokens "$tmp/range.json" --out "$tmp/q"
bad "rank without images" rank --model $M --prompt x
bad "rank non-JPEG file" rank --model $M --prompt x "$tmp/x.jpg"
bad "rank missing file" rank --model $M --prompt x "$tmp/none.jpg"
err=$("$CLI" tokens --model /nonexistent --prompt x 2>&1 >/dev/null); rc=$?
check "missing model dir → exit 1 naming config.json" test "$rc" -eq 1 -a -n "$(grep -F config.json <<<"$err")"
d=$("$CLI" tokenize --prompt "a red square on a blue background")
check "no --model: the bundled demo model (its 32-id text length)" py "
import json; d=json.loads('''$d'''); assert len(d['ids'])==32, d"
check "--help exits 0" eval '"$CLI" --help >/dev/null'
[ "$fails" -eq 0 ]
