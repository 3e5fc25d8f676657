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

  ftfy_charmaps.bin the single-byte encodings ftfy's fix_encoding tries, in its order, then
                    strict windows-1252: "DCM1", u32 count, then per encoding: char name[24]
                    (NUL-padded), u32 flags (1 sloppy, 2 no restore_byte_a0), u32 decode[256]
                    (0xFFFFFFFF = undefined), u32 npairs, (u32 cp, u32 byte)[npairs] sorted by
                    cp: the characters the encoding can encode (possible_encoding's set).
  ftfy_regex.bin    ftfy's regular expressions compiled from their Python source (re._parser)
                    into programs for a small backtracking VM with Python's match priority:
                    "DRX1", u32 nprog, u32 prog_off[nprog] (word offsets into code),
                    u32 nclass, u32 class_off[nclass + 1] (pair offsets into ranges),
                    u32 ncode, u32 code[ncode], u32 nranges, (u32 lo, u32 hi)[nranges].
                    Instructions (opcode in the low 8 bits, argument above): CLASS k, NCLASS k
                    (negated), ANY (not '\n'), BOL (\A or ^), EOL ($: end, or before a final
                    '\n'), EOS (\Z), SPLIT a, b (2 words; a first), JMP a, NOT_AHEAD end,
                    NOT_BEHIND width end (sub-program follows, ends with MATCH), MATCH.
                    Programs, in order: badness, utf8_detector, altered_utf8, lossy_utf8,
                    a_grave_word.
"""

import argparse
import ctypes
import ctypes.util
import html
import html.entities
import os
import re
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


CHARMAP_NAME_LEN = 24


def gen_charmaps(path):
    import ftfy.bad_codecs  # noqa: F401 — registers the sloppy codecs

    order = ftfy.chardata.CHARMAP_ENCODINGS
    assert order[:2] == ["latin-1", "sloppy-windows-1252"] and len(order) == 10  # ftfy_encoding.c
    encs = [(e, (1 if e.startswith("sloppy") else 0) | (2 if e == "macroman" else 0))
            for e in order] + [("windows-1252", 0)]
    out = bytearray(b"DCM1" + struct.pack("<I", len(encs)))
    for enc, flags in encs:
        decode = []
        for b in range(256):
            try:
                decode.append(ord(bytes([b]).decode(enc)))
            except UnicodeDecodeError:
                decode.append(0xFFFFFFFF)
        pairs = {}
        if enc != "windows-1252":  # the strict codec is only ever used to decode
            allowed = ftfy.chardata.ENCODING_REGEXES[enc]
            for cp in range(0x110000):
                if 0xD800 <= cp <= 0xDFFF or not allowed.match(chr(cp)):
                    continue
                byte = chr(cp).encode(enc)
                assert len(byte) == 1, (enc, cp)
                pairs[cp] = byte[0]
        out += enc.encode().ljust(CHARMAP_NAME_LEN, b"\0") + struct.pack("<I", flags)
        out += struct.pack("<256I", *decode) + struct.pack("<I", len(pairs))
        for cp in sorted(pairs):
            out += struct.pack("<II", cp, pairs[cp])
    with open(path, "wb") as f:
        f.write(out)
    return os.path.getsize(path)


OP = {name: i for i, name in enumerate(
    ["CLASS", "NCLASS", "ANY", "BOL", "EOL", "EOS", "SPLIT", "JMP", "NOT_AHEAD", "NOT_BEHIND",
     "MATCH"])}


class RegexCompiler:
    """sre parse tree -> VM code (see the file format above). Only the constructs ftfy's
    patterns use are accepted; anything else is an error, never a silent approximation."""

    def __init__(self):
        self.code, self.classes, self.class_index = [], [], {}

    def category_ranges(self, cat, is_bytes):
        import re._constants as C

        probe = {C.CATEGORY_SPACE: r"\s", C.CATEGORY_WORD: r"\w", C.CATEGORY_DIGIT: r"\d"}[cat]
        top = 256 if is_bytes else 0x110000
        rx = re.compile(probe.encode() if is_bytes else probe)
        return [cp for cp in range(top) if not 0xD800 <= cp <= 0xDFFF
                and rx.match(bytes([cp]) if is_bytes else chr(cp))]

    def add_class(self, items, is_bytes):
        import re._constants as C

        cps, negate = set(), False
        for op, av in items:
            if op is C.NEGATE:
                negate = True
            elif op is C.LITERAL:
                cps.add(av)
            elif op is C.RANGE:
                cps.update(range(av[0], av[1] + 1))
            elif op is C.CATEGORY:
                cps.update(self.category_ranges(av, is_bytes))
            else:
                raise SystemExit(f"unsupported class item {op}")
        ranges, cur = [], None
        for cp in sorted(cps):
            if cur and cp == cur[1] + 1:
                cur[1] = cp
            else:
                cur = [cp, cp]
                ranges.append(cur)
        key = tuple(map(tuple, ranges))
        if key not in self.class_index:
            self.class_index[key] = len(self.classes)
            self.classes.append(key)
        return (OP["NCLASS"] if negate else OP["CLASS"]) | self.class_index[key] << 8

    def emit(self, word):
        self.code.append(word)
        return len(self.code) - 1

    def compile_seq(self, seq, is_bytes):
        import re._constants as C

        for op, av in seq:
            if op is C.LITERAL:
                self.emit(self.add_class([(C.LITERAL, av)], is_bytes))
            elif op is C.NOT_LITERAL:
                self.emit(self.add_class([(C.NEGATE, None), (C.LITERAL, av)], is_bytes))
            elif op is C.IN:
                self.emit(self.add_class(av, is_bytes))
            elif op is C.ANY:
                self.emit(OP["ANY"])
            elif op is C.AT:
                at = {C.AT_BEGINNING: "BOL", C.AT_BEGINNING_STRING: "BOL", C.AT_END: "EOL",
                      C.AT_END_STRING: "EOS"}[av]
                self.emit(OP[at])
            elif op is C.SUBPATTERN:
                self.compile_seq(av[3], is_bytes)
            elif op is C.BRANCH:
                jumps, alts = [], av[1]
                for i, alt in enumerate(alts):
                    split = None
                    if i < len(alts) - 1:
                        split = self.emit(OP["SPLIT"])
                        self.emit(0)
                    self.compile_seq(alt, is_bytes)
                    if split is not None:
                        jumps.append(self.emit(OP["JMP"]))
                        self.code[split] = OP["SPLIT"] | (split + 2) << 8
                        self.code[split + 1] = len(self.code)
                for j in jumps:
                    self.code[j] = OP["JMP"] | len(self.code) << 8
            elif op is C.MAX_REPEAT:
                lo, hi, sub = av
                for _ in range(lo):
                    self.compile_seq(sub, is_bytes)
                if hi == C.MAXREPEAT:
                    loop = self.emit(OP["SPLIT"])
                    self.emit(0)
                    self.compile_seq(sub, is_bytes)
                    self.emit(OP["JMP"] | loop << 8)
                    self.code[loop] = OP["SPLIT"] | (loop + 2) << 8
                    self.code[loop + 1] = len(self.code)
                else:
                    for _ in range(hi - lo):
                        split = self.emit(OP["SPLIT"])
                        self.emit(0)
                        self.compile_seq(sub, is_bytes)
                        self.code[split] = OP["SPLIT"] | (split + 2) << 8
                        self.code[split + 1] = len(self.code)
            elif op is C.ASSERT_NOT:
                direction, sub = av
                at = self.emit(OP["NOT_AHEAD"] if direction == 1 else OP["NOT_BEHIND"])
                if direction != 1:
                    lo, hi = sub.getwidth()
                    assert lo == hi, "lookbehind must have a fixed width"
                    self.emit(lo)
                self.compile_seq(sub, is_bytes)
                self.emit(OP["MATCH"])
                self.code[at] |= len(self.code) << 8
            else:
                raise SystemExit(f"unsupported regex construct {op}")

    def compile(self, pattern):
        import re._parser as P

        if pattern.flags & ~(re.UNICODE | re.VERBOSE):
            raise SystemExit(f"unsupported flags {pattern.flags:#x}")
        start = len(self.code)
        self.compile_seq(P.parse(pattern.pattern, pattern.flags), isinstance(pattern.pattern, bytes))
        self.emit(OP["MATCH"])
        return start


def gen_regex(path):
    import ftfy.badness

    chd = ftfy.chardata
    patterns = [ftfy.badness.BADNESS_RE, chd.UTF8_DETECTOR_RE, chd.ALTERED_UTF8_RE,
                chd.LOSSY_UTF8_RE, ftfy.fixes.A_GRAVE_WORD_RE]
    rc = RegexCompiler()
    starts = [rc.compile(p) for p in patterns]
    class_off, ranges = [0], []
    for cls in rc.classes:
        ranges += cls
        class_off.append(len(ranges))
    out = bytearray(b"DRX1")
    out += struct.pack(f"<I{len(starts)}I", len(starts), *starts)
    out += struct.pack(f"<I{len(class_off)}I", len(rc.classes), *class_off)
    out += struct.pack(f"<I{len(rc.code)}I", len(rc.code), *rc.code)
    out += struct.pack("<I", len(ranges)) + b"".join(struct.pack("<II", lo, hi) for lo, hi in ranges)
    with open(path, "wb") as f:
        f.write(out)
    print(f"  ftfy_regex.bin: {len(rc.code)} instructions, {len(rc.classes)} classes, "
          f"{len(ranges)} ranges")
    return os.path.getsize(path)


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
                     ("ftfy_upper.kv", gen_ftfy_upper), ("ftfy_translate.kv", gen_ftfy_translate),
                     ("ftfy_charmaps.bin", gen_charmaps), ("ftfy_regex.bin", gen_regex)]:
        size = fn(os.path.join(args.out, name))
        total += size
        print(f"{name:20s} {size:9d} bytes")
    print(f"{'total':20s} {total:9d} bytes")


if __name__ == "__main__":
    main()
