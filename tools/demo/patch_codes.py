#!/usr/bin/env python3
"""patch_codes.py — the demo model's image tokenizer: an exact, analytic patch code.

The world (world.py) draws shapes whose centres lie on multiples of 8 pixels, so every
8×8 patch of a 64×64 world image is either one flat palette colour or the pixels of one
shape of one (shape, size) over the background, cut at the same place whatever the position.
There are only M = 74 such cut-outs (`MASKS`, enumerated from world.shape_mask in a fixed
order), so the code of a patch is exact:
  * codes 0…7: a patch of one palette colour;
  * codes 8…: (shape colour f, background colour b, f ≠ b: 56 ordered pairs) × M masks,
    code = 8 + pair(f, b) · M + mask — CODEBOOK = 8 + 56 · 74 = 4152 codes.
Every code stands for exactly one patch (`paint` is the inverse of `encode` on world
images). A patch of two colours is cut as "the colour that is not the image's background
(the border's majority) over the background"; a patch the world cannot draw (three colours,
two non-background colours, a cut-out not in MASKS) is an error, not a guess.

Two analytic tables make the codes easy to learn and to compose:
  * codebook_vectors(): the VQGAN codebook, frozen — a code's 8×8×3 pixels in [-1, 1]
    and one-hots of its mask and colours (embed_dim 282). The decoder (train_vqgan.py) only
    learns to put those pixels in place.
  * features(): the attributes of each code as a 0/1 matrix [CODEBOOK + 1, K] (pure colour,
    shape colour, background colour, mask, start token). train_bart.py ties DalleBart's
    image-token embedding and lm_head to sums of per-attribute vectors, so a code never seen
    in training (a purple triangle's edge) still has a meaningful embedding and logit: its
    colour's and its mask's, both seen elsewhere.
Pure numpy: no torch needed.

    python tools/demo/patch_codes.py     # round-trip check on world images
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import world  # noqa: E402

P = 8  # patch side
NC = len(world.COLORS)
PAIRS = [(f, b) for f in range(NC) for b in range(NC) if f != b]
PAIR_INDEX = {p: i for i, p in enumerate(PAIRS)}
_PAL = np.array([world.PALETTE[c] for c in world.COLORS], dtype=np.int32)


def _enumerate_masks():
    """every partial 8×8 cut-out of every (shape, size), in a fixed order → bool [M, 64]"""
    seen, out = set(), []
    c = world.CELL[1]  # any cell centre gives the same cut-outs (centres are multiples of 8)
    for shape in world.SHAPES:
        for size in world.SIZES:
            m = world.shape_mask(shape, c, c, world.SIZES[size])
            for cy in range(world.RES // P):
                for cx in range(world.RES // P):
                    p = m[cy * P:(cy + 1) * P, cx * P:(cx + 1) * P].reshape(-1)
                    if p.any() and not p.all() and p.tobytes() not in seen:
                        seen.add(p.tobytes())
                        out.append(p.copy())
    return np.array(out, dtype=bool)


MASKS = _enumerate_masks()
M = len(MASKS)
CODEBOOK = NC + len(PAIRS) * M
_MASK_INDEX = {m.tobytes(): i for i, m in enumerate(MASKS)}


def labels(imgs):
    """uint8 [..., H, W, 3] → palette index per pixel (exact colours by lookup, others nearest)"""
    d = ((imgs[..., None, :].astype(np.int32) - _PAL) ** 2).sum(-1)
    return d.argmin(-1)


def encode_batch(imgs):
    """uint8 [N, 64, 64, 3] world images → int codes [N, 64] (raster order, row-major 8×8)"""
    imgs = np.asarray(imgs)
    N, H, W = imgs.shape[:3]
    lab = labels(imgs)
    border = np.concatenate([lab[:, 0], lab[:, -1], lab[:, :, 0], lab[:, :, -1]], 1)
    bg = np.array([np.bincount(b, minlength=NC).argmax() for b in border])
    pl = lab.reshape(N, H // P, P, W // P, P).transpose(0, 1, 3, 2, 4).reshape(N, -1, P * P)
    out = pl[:, :, 0].astype(np.int64)  # flat patches: their colour
    for n, i in zip(*np.nonzero(pl.min(-1) != pl.max(-1))):
        p = pl[n, i]
        cols = np.unique(p)
        fg = [c for c in cols if c != bg[n]]
        if len(cols) != 2 or len(fg) != 1:
            raise ValueError(f"image {n} patch {i}: colours {cols.tolist()} over background {bg[n]}")
        g = _MASK_INDEX.get((p == fg[0]).tobytes())
        if g is None:
            raise ValueError(f"image {n} patch {i}: a cut-out no world shape makes")
        out[n, i] = NC + PAIR_INDEX[(int(fg[0]), int(bg[n]))] * M + g
    return out


def encode(img):
    """uint8 [64, 64, 3] → int codes [64]"""
    return encode_batch(np.asarray(img)[None])[0]


def decode_code(c):
    """code → (shape colour, background colour, mask index); a flat patch is (c, c, None)"""
    c = int(c)
    if not 0 <= c < CODEBOOK:
        raise ValueError(f"code {c} outside 0…{CODEBOOK - 1}")
    if c < NC:
        return c, c, None
    pi, g = divmod(c - NC, M)
    f, b = PAIRS[pi]
    return f, b, g


def patch_pixels(c):
    """code → uint8 [8, 8, 3]"""
    f, b, g = decode_code(c)
    if g is None:
        return np.broadcast_to(_PAL[f], (P, P, 3)).astype(np.uint8)
    return np.where(MASKS[g][:, None], _PAL[f], _PAL[b]).reshape(P, P, 3).astype(np.uint8)


def paint(codes, side=8):
    """codes → the uint8 image they stand for"""
    img = np.zeros((side * P, side * P, 3), dtype=np.uint8)
    for i, c in enumerate(codes):
        y, x = divmod(i, side)
        img[y * P:(y + 1) * P, x * P:(x + 1) * P] = patch_pixels(c)
    return img


def codebook_vectors():
    """the frozen VQGAN codebook: float32 [CODEBOOK, EMBED_DIM] = a code's pixels (y, x, rgb)
    in [-1, 1] (192), then one-hots of its mask (M; none for a flat patch), shape colour (8)
    and background colour (8; a flat patch's colour in both)"""
    pix = np.stack([patch_pixels(c).reshape(-1) for c in range(CODEBOOK)]).astype(np.float32) / 127.5 - 1.0
    hot = np.zeros((CODEBOOK, M + 2 * NC), dtype=np.float32)
    for c in range(CODEBOOK):
        f, b, g = decode_code(c)
        if g is not None:
            hot[c, g] = 1
        hot[c, M + f] = hot[c, M + NC + b] = 1
    return np.concatenate([pix, hot], 1)


EMBED_DIM = P * P * 3 + M + 2 * NC


# features(): column blocks of the attribute matrix
F_PURE, F_FG, F_BG, F_MASK = 0, NC, 2 * NC, 3 * NC
F_BOS = 3 * NC + M
K = F_BOS + 1


def features():
    """float32 [CODEBOOK + 1, K]: row c has a 1 in each attribute column of code c (row
    CODEBOOK is DalleBart's start token)."""
    phi = np.zeros((CODEBOOK + 1, K), dtype=np.float32)
    for c in range(CODEBOOK):
        f, b, g = decode_code(c)
        if g is None:
            phi[c, F_PURE + f] = 1
        else:
            phi[c, F_FG + f] = phi[c, F_BG + b] = phi[c, F_MASK + g] = 1
    phi[CODEBOOK, F_BOS] = 1
    return phi


if __name__ == "__main__":
    print(f"{M} masks, {CODEBOOK} codes")
    bad = 0
    scenes = [world.sample(i, train=False)[0] for i in range(500)]
    imgs = np.stack([world.render(s) for s in scenes])
    codes = encode_batch(imgs)
    for img, cs in zip(imgs, codes):
        bad += not np.array_equal(paint(cs), img)
    print(f"round trip: {len(imgs) - bad}/{len(imgs)} world images painted back exactly; "
          f"{len(np.unique(codes))} distinct codes used")
