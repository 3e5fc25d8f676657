#!/usr/bin/env python3
"""patch_codes.py — the demo model's image tokenizer: an exact, analytic patch code.

The world (world.py) draws shapes whose centres lie on multiples of 8 pixels, so every
8×8 patch of a world image is either one flat palette colour or the pixels of one shape of
one (shape, size) over the background, cut at the same place whatever the position. A
geometry has only M such cut-outs (`Codec.masks`, enumerated from world.shape_mask in a fixed
order: 74 in the 64×64 world V1, more in the 128×128 world V2), so the code of a patch is
exact:
  * codes 0…7: a patch of one palette colour;
  * codes 8…: (shape colour f, background colour b, f ≠ b: 56 ordered pairs) × M masks,
    code = 8 + pair(f, b) · M + mask — codebook = 8 + 56 · M codes.
Every code stands for exactly one patch (`paint` is the inverse of `encode` on world
images). A patch of two colours is cut as "the colour that is not the image's background
(the border's majority) over the background"; a patch the world cannot draw (three colours,
two non-background colours, a cut-out not in the masks) is an error, not a guess.

Two analytic tables make the codes easy to learn and to compose:
  * codebook_vectors(): the VQGAN codebook, frozen — a code's 8×8×3 pixels in [-1, 1]
    and one-hots of its mask and colours (embed_dim 192 + M + 16). The decoder
    (train_vqgan.py) only learns to put those pixels in place.
  * features(): the attributes of each code as a 0/1 matrix [codebook + 1, K] (pure colour,
    shape colour, background colour, mask, start token). train_bart.py ties DalleBart's
    image-token embedding and lm_head to sums of per-attribute vectors, so a code never seen
    in training (a purple triangle's edge) still has a meaningful embedding and logit: its
    colour's and its mask's, both seen elsewhere.
`codec(res)` is the code of one world geometry; the module-level names (CODEBOOK, encode_batch,
…) are the current world's (world.GEO), which the training scripts use. Pure numpy.

    python3 tools/demo/patch_codes.py     # round-trip check on world images
"""
import functools
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
# features(): column blocks of the attribute matrix (the mask block and after depend on M)
F_PURE, F_FG, F_BG, F_MASK = 0, NC, 2 * NC, 3 * NC


_KEYS = (_PAL[:, 0] << 16) | (_PAL[:, 1] << 8) | _PAL[:, 2]
_KEY_ORDER = np.argsort(_KEYS)


def labels(imgs):
    """uint8 [..., H, W, 3] → palette index per pixel (exact colours by lookup, others nearest)"""
    imgs = np.asarray(imgs)
    key = (imgs[..., 0].astype(np.int32) << 16) | (imgs[..., 1].astype(np.int32) << 8) | imgs[..., 2]
    pos = np.minimum(np.searchsorted(_KEYS[_KEY_ORDER], key), len(_KEYS) - 1)
    lab = _KEY_ORDER[pos]
    off = _KEYS[lab] != key
    if off.any():
        d = ((imgs[off][:, None, :].astype(np.int32) - _PAL) ** 2).sum(-1)
        lab[off] = d.argmin(-1)
    return lab


class Codec:
    """the exact patch code of one world geometry"""

    def __init__(self, geo):
        self.geo = geo
        self.side = geo.res // P  # codes per row
        self.masks = self._enumerate_masks()
        self.M = len(self.masks)
        self.codebook = NC + len(PAIRS) * self.M
        self.embed_dim = P * P * 3 + self.M + 2 * NC
        self.f_bos = F_MASK + self.M
        self.K = self.f_bos + 1
        keys = np.packbits(self.masks, axis=1).view(">u8")[:, 0]  # a mask's 64 bits as one number
        self._mask_order = np.argsort(keys)
        self._mask_keys = keys[self._mask_order]

    def _enumerate_masks(self):
        """every partial 8×8 cut-out of every (shape, size), in a fixed order → bool [M, 64]"""
        g = self.geo
        seen, out = set(), []
        c = g.cells[1]  # any centre on the 8-pixel lattice gives the same cut-outs
        for shape in world.SHAPES:
            for size in world.SIZE_NAMES:
                m = world.shape_mask(shape, c, c, g.sizes[size], g.xx, g.yy)
                for cy in range(self.side):
                    for cx in range(self.side):
                        p = m[cy * P:(cy + 1) * P, cx * P:(cx + 1) * P].reshape(-1)
                        if p.any() and not p.all() and p.tobytes() not in seen:
                            seen.add(p.tobytes())
                            out.append(p.copy())
        return np.array(out, dtype=bool)

    def encode_batch(self, imgs):
        """uint8 [N, R, R, 3] world images → int codes [N, side²] (raster order, row-major)"""
        imgs = np.asarray(imgs)
        N, H, W = imgs.shape[:3]
        if (H, W) != (self.geo.res, self.geo.res):
            raise ValueError(f"{H}×{W} images, this code reads {self.geo.res}×{self.geo.res}")
        lab = labels(imgs)
        border = np.concatenate([lab[:, 0], lab[:, -1], lab[:, :, 0], lab[:, :, -1]], 1)
        bg = np.array([np.bincount(b, minlength=NC).argmax() for b in border])
        pl = lab.reshape(N, H // P, P, W // P, P).transpose(0, 1, 3, 2, 4).reshape(N, -1, P * P)
        out = pl[:, :, 0].astype(np.int64)  # flat patches: their colour
        n, i = np.nonzero(pl.min(-1) != pl.max(-1))  # patches of two or more colours
        p = pl[n, i]  # [E, 64]
        b = bg[n][:, None]
        fg_lo = np.where(p == b, NC, p).min(-1)  # the non-background colours' lowest and highest
        fg_hi = np.where(p == b, -1, p).max(-1)
        two = (fg_lo == fg_hi) & (p == b).any(-1)
        if not two.all():
            e = int(np.argmin(two))
            raise ValueError(f"image {n[e]} patch {i[e]}: colours {np.unique(p[e]).tolist()} over background "
                             f"{int(bg[n[e]])}")
        keys = np.packbits(p != b, axis=1).view(">u8")[:, 0]
        at = np.minimum(np.searchsorted(self._mask_keys, keys), self.M - 1)
        if (self._mask_keys[at] != keys).any():
            e = int(np.argmax(self._mask_keys[at] != keys))
            raise ValueError(f"image {n[e]} patch {i[e]}: a cut-out no world shape makes")
        pair = fg_lo * (NC - 1) + bg[n] - (bg[n] > fg_lo)  # PAIR_INDEX[(fg, bg)]
        out[n, i] = NC + pair * self.M + self._mask_order[at]
        return out

    def encode(self, img):
        """uint8 [R, R, 3] → int codes [side²]"""
        return self.encode_batch(np.asarray(img)[None])[0]

    def decode_code(self, c):
        """code → (shape colour, background colour, mask index); a flat patch is (c, c, None)"""
        c = int(c)
        if not 0 <= c < self.codebook:
            raise ValueError(f"code {c} outside 0…{self.codebook - 1}")
        if c < NC:
            return c, c, None
        pi, g = divmod(c - NC, self.M)
        f, b = PAIRS[pi]
        return f, b, g

    def patch_pixels(self, c):
        """code → uint8 [8, 8, 3]"""
        f, b, g = self.decode_code(c)
        if g is None:
            return np.broadcast_to(_PAL[f], (P, P, 3)).astype(np.uint8)
        return np.where(self.masks[g][:, None], _PAL[f], _PAL[b]).reshape(P, P, 3).astype(np.uint8)

    def paint(self, codes):
        """codes [side²] → the uint8 image [R, R, 3] they stand for"""
        img = np.zeros((self.geo.res, self.geo.res, 3), dtype=np.uint8)
        for i, c in enumerate(codes):
            y, x = divmod(i, self.side)
            img[y * P:(y + 1) * P, x * P:(x + 1) * P] = self.patch_pixels(c)
        return img

    def codebook_vectors(self):
        """the frozen VQGAN codebook: float32 [codebook, embed_dim] = a code's pixels (y, x,
        rgb) in [-1, 1] (192), then one-hots of its mask (M; none for a flat patch), shape
        colour (8) and background colour (8; a flat patch's colour in both)"""
        pix = np.stack([self.patch_pixels(c).reshape(-1) for c in range(self.codebook)]).astype(np.float32)
        hot = np.zeros((self.codebook, self.M + 2 * NC), dtype=np.float32)
        for c in range(self.codebook):
            f, b, g = self.decode_code(c)
            if g is not None:
                hot[c, g] = 1
            hot[c, self.M + f] = hot[c, self.M + NC + b] = 1
        return np.concatenate([pix / 127.5 - 1.0, hot], 1)

    def features(self):
        """float32 [codebook + 1, K]: row c has a 1 in each attribute column of code c (row
        codebook is DalleBart's start token)."""
        phi = np.zeros((self.codebook + 1, self.K), dtype=np.float32)
        for c in range(self.codebook):
            f, b, g = self.decode_code(c)
            if g is None:
                phi[c, F_PURE + f] = 1
            else:
                phi[c, F_FG + f] = phi[c, F_BG + b] = phi[c, F_MASK + g] = 1
        phi[self.codebook, self.f_bos] = 1
        return phi


@functools.lru_cache(maxsize=None)
def codec(res):
    """the patch code of the world geometry of res × res pictures"""
    return Codec(world.geometry(res))


CURRENT = codec(world.GEO.res)
CODEBOOK, EMBED_DIM, K, SIDE = CURRENT.codebook, CURRENT.embed_dim, CURRENT.K, CURRENT.side
encode_batch, encode, paint = CURRENT.encode_batch, CURRENT.encode, CURRENT.paint
decode_code, codebook_vectors, features = CURRENT.decode_code, CURRENT.codebook_vectors, CURRENT.features


if __name__ == "__main__":
    for geo in (world.V1, world.V2):
        cd = codec(geo.res)
        scenes = [world.sample(i, train=False)[0] for i in range(300)]
        imgs = np.stack([world.render(s, geo) for s in scenes])
        codes = cd.encode_batch(imgs)
        bad = sum(not np.array_equal(cd.paint(cs), img) for img, cs in zip(imgs, codes))
        print(f"{geo.res}×{geo.res}: {cd.M} masks, {cd.codebook} codes, {cd.side ** 2} per image; round trip "
              f"{len(imgs) - bad}/{len(imgs)} world images painted back exactly; "
              f"{len(np.unique(codes))} distinct codes used")
