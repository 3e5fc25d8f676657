#!/usr/bin/env python3
"""gen_tables.py — generates the text tables under model/text/data/ from the pinned Python
packages (Unidecode 1.4.0, emoji 2.16.0, ftfy 6.3.1) and Python's html module. The C
files embed them with .incbin. The output is deterministic: same packages, same bytes.

    /work/venv-ref/bin/python tools/text/gen_tables.py [--out model/text/data]

Files (all integers little-endian):
  *.kv           key/value table: "DKV1", u32 count, u32 off[2*count+1], blob. Pair i has
                 key blob[off[2i]:off[2i+1]] and value blob[off[2i+1]:off[2i+2]]; keys are
                 sorted bytewise (a prefix sorts before its extensions). UTF-8 throughout.
  translit.bin   unidecode: "DTL1", u32 nblocks, u32 nstrings, u16 block_of[0xF00] (per
                 256-code-point section, 0xFFFF = none), u16 entry[nblocks][256] (string
                 index, 0xFFFF = "fallback"), u32 str_off[nstrings+1], blob. Fallback means:
                 compatibility decomposition with marks stripped if that is all ASCII, else
                 "" (what the C side computes with utf8proc). Code points above 0xEFFFF give "".

  emoji.kv          emoji.demojize: every emoji sequence of EMOJI_DATA -> one status byte
                    ('C' component, as skin tones; 'E' any other) + ":name:" (English).
  html5.kv          html.entities.html5: name (with or without ';') -> text.
  charref.kv        html.unescape's numeric reference exceptions: decimal number -> text
                    (_invalid_charrefs, then _invalid_codepoints -> "").
  ftfy_upper.kv     ftfy's extra upper-case entities ("&EACUTE;" style), name -> text.
  ftfy_translate.kv one character -> text: ftfy's fix_c1_controls, fix_latin_ligatures,
                    fix_character_width and uncurl_quotes composed, in that order.
"""

import argparse
import ctypes
import ctypes.util
import html
import html.entities
import os
import struct
import sys
import unicodedata
import warnings

import emoji
import ftfy
import ftfy.chardata
import ftfy.fixes
import unidecode

PINNED = {"emoji": "2.16.0", "ftfy": "6.3.1", "unidecode": "1.4.0"}
FALLBACK = 0xFFFF
SECTIONS = 0xF00  # unidecode has no data above U+EFFFF


def write_kv(path, pairs):
    """pairs: dict bytes -> bytes."""
    keys = sorted(pairs)
    offs, blob = [], bytearray()
    for k in keys:
        offs.append(len(blob))
        blob += k
        offs.append(len(blob))
        blob += pairs[k]
    offs.append(len(blob))
    with open(path, "wb") as f:
        f.write(b"DKV1" + struct.pack("<I", len(keys)))
        f.write(struct.pack(f"<{len(offs)}I", *offs))
        f.write(blob)
    return os.path.getsize(path)


def u8(s):
    return s.encode("utf-8")


def ascii_fold(cp):
    """The C fallback: NFKD, drop combining marks, keep only if all ASCII."""
    d = unicodedata.normalize("NFKD", chr(cp))
    d = "".join(c for c in d if unicodedata.category(c) not in ("Mn", "Mc", "Me"))
    return d if d.isascii() else ""


def utf8proc_fold():
    """The same fallback computed by the system libutf8proc (what C will run), or None."""
    name = ctypes.util.find_library("utf8proc")
    if not name:
        return None
    lib = ctypes.CDLL(name)
    lib.utf8proc_decompose_char.restype = ctypes.c_ssize_t
    lib.utf8proc_decompose_char.argtypes = [ctypes.c_int32, ctypes.POINTER(ctypes.c_int32),
                                            ctypes.c_ssize_t, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    opts = (1 << 3) | (1 << 2) | (1 << 13)  # DECOMPOSE | COMPAT | STRIPMARK
    buf = (ctypes.c_int32 * 32)()
    bound = ctypes.c_int(0)

    def fold(cp):
        n = lib.utf8proc_decompose_char(cp, buf, 32, opts, ctypes.byref(bound))
        assert 0 <= n <= 32, (hex(cp), n)
        s = "".join(chr(buf[i]) for i in range(n))
        return s if s.isascii() else ""

    return fold


def gen_translit(path):
    warnings.simplefilter("ignore")  # unidecode warns on surrogates
    c_fold = utf8proc_fold()
    if c_fold is None:
        print("note: libutf8proc not found, fallback not cross-checked", file=sys.stderr)
    strings, index = [], {}
    blocks, block_of = [], [FALLBACK] * SECTIONS
    exceptions = 0
    for sec in range(SECTIONS):
        entries, needed = [], False
        for cp in range(sec << 8, (sec + 1) << 8):
            want = "" if cp < 0x80 else (unidecode._get_repl_str(chr(cp)) or "")
            assert want.isascii(), hex(cp)
            fold = chr(cp) if cp < 0x80 else ascii_fold(cp)
            if c_fold is not None and cp >= 0x80 and c_fold(cp) != fold:
                fold = None  # Unicode versions disagree: store this code point explicitly
            if cp < 0x80 or fold == want:
                entries.append(FALLBACK)
                continue
            needed = True
            exceptions += 1
            if want not in index:
                index[want] = len(strings)
                strings.append(want)
            entries.append(index[want])
        if needed:
            block_of[sec] = len(blocks)
            blocks.append(entries)
    assert len(strings) < FALLBACK and len(blocks) < FALLBACK
    blob, offs = bytearray(), []
    for s in strings:
        offs.append(len(blob))
        blob += s.encode("ascii")
    offs.append(len(blob))
    with open(path, "wb") as f:
        f.write(b"DTL1" + struct.pack("<II", len(blocks), len(strings)))
        f.write(struct.pack(f"<{SECTIONS}H", *block_of))
        for b in blocks:
            f.write(struct.pack("<256H", *b))
        f.write(struct.pack(f"<{len(offs)}I", *offs))
        f.write(blob)
    print(f"  translit.bin: {len(blocks)} blocks, {exceptions} table code points, "
          f"{len(strings)} strings")
    return os.path.getsize(path)


def gen_emoji(path):
    component = emoji.STATUS["component"]
    pairs = {}
    for seq, data in emoji.EMOJI_DATA.items():
        name = data.get("en")
        text = ":" + name[1:-1] + ":" if name is not None else seq
        pairs[u8(seq)] = (b"C" if data["status"] == component else b"E") + u8(text)
    return write_kv(path, pairs)


def gen_html5(path):
    return write_kv(path, {u8(k): u8(v) for k, v in html.entities.html5.items()})


def gen_charref(path):
    charrefs = html._invalid_charrefs  # noqa: SLF001 — the table html.unescape uses
    codepoints = html._invalid_codepoints  # noqa: SLF001
    pairs = {}
    for num in sorted(set(charrefs) | set(codepoints)):
        assert not (0xD800 <= num <= 0xDFFF or num > 0x10FFFF)
        pairs[u8(str(num))] = u8(charrefs[num]) if num in charrefs else b""
    for num in range(0x110000):  # the table must reproduce html.unescape exactly
        want = html.unescape(f"&#{num};")
        got = pairs.get(u8(str(num)))
        if got is None:
            got = u8("\ufffd" if 0xD800 <= num <= 0xDFFF else chr(num))
        assert got == want.encode("utf-8", "surrogatepass"), num
    return write_kv(path, pairs)


def gen_ftfy_upper(path):
    pairs = {}
    for ent, text in ftfy.chardata.HTML_ENTITIES.items():
        name = ent[1:]
        if html.entities.html5.get(name) == text:
            continue
        assert name.endswith(";") and name not in html.entities.html5, ent
        pairs[u8(name)] = u8(text)
    return write_kv(path, pairs)


def gen_ftfy_translate(path):
    f = ftfy.fixes
    chars = set(range(0x80, 0xA0)) | set(ftfy.chardata.LIGATURES) | set(ftfy.chardata.WIDTH_MAP)
    chars |= {0x2BC} | set(range(0x2018, 0x2020))
    pairs = {}
    for cp in sorted(chars):
        s = chr(cp)
        out = f.uncurl_quotes(f.fix_character_width(f.fix_latin_ligatures(f.fix_c1_controls(s))))
        if out != s:
            pairs[u8(s)] = u8(out)
    for cp in range(0x110000):  # nothing outside the domain is touched by the four fixers
        if cp in chars or 0xD800 <= cp <= 0xDFFF:
            continue
        s = chr(cp)
        assert f.uncurl_quotes(f.fix_character_width(f.fix_latin_ligatures(f.fix_c1_controls(s)))) == s
    return write_kv(path, pairs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="model/text/data")
    args = ap.parse_args()
    versions = {"emoji": emoji.__version__, "ftfy": ftfy.__version__,
                "unidecode": __import__("importlib.metadata").metadata.version("Unidecode")}
    if versions != PINNED:
        raise SystemExit(f"pinned versions {PINNED} needed, found {versions}")
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for name, fn in [("translit.bin", gen_translit), ("emoji.kv", gen_emoji),
                     ("html5.kv", gen_html5), ("charref.kv", gen_charref),
                     ("ftfy_upper.kv", gen_ftfy_upper), ("ftfy_translate.kv", gen_ftfy_translate)]:
        size = fn(os.path.join(args.out, name))
        total += size
        print(f"{name:20s} {size:9d} bytes")
    print(f"{'total':20s} {total:9d} bytes")


if __name__ == "__main__":
    main()
