#!/usr/bin/env python3
"""patch_codes.py — the demo model's image tokenizer: a fixed, analytic patch quantizer.

Each 8×8 patch of a 64×64 world image becomes one of 2048 codes (8×8 = 64 codes per image):
  * codes 0…7: a patch of one palette colour;
  * codes 8…2023: an ordered pair (majority colour A, minority colour B, A ≠ B: 56 pairs) times
    one of G = 36 edge masks (which pixels are B), the nearest (Hamming) of 36 binary masks
    found by k-means + medoids on the minority masks of world patches (fit_masks(), computed
    once from a fixed seed and stored in tools/demo/patch_masks.npy);
  * codes 2024…2047 are never produced.
Pixels are assigned to the nearest palette colour first (the world renders exact palette
colours; a third colour in one patch, which the world never draws, goes to the nearer of the
two main ones).

This replaces a learned VQGAN encoder: with the machine shared by several trainings, a learned
encoder + codebook was too slow to converge, and a deterministic tokenizer lets the BART
train at the same time as the VQGAN decoder. The decoder (taming's Decoder + codebook
embedding + post_quant_conv, trained in train_vqgan.py) learns to draw these codes;
BART learns to predict them. Pure numpy: no torch needed.
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import world  # noqa: E402

P = 8  # patch side
NC = len(world.COLORS)
G = 36
PAIRS = [(a, b) for a in range(NC) for b in range(NC) if a != b]
PAIR_INDEX = {p: i for i, p in enumerate(PAIRS)}
CODEBOOK = 2048
MASK_FILE = os.path.join(HERE, "patch_masks.npy")
_PAL = np.array([world.PALETTE[c] for c in world.COLORS], dtype=np.int32)


def labels(img):
    """uint8 [H, W, 3] → palette index per pixel [H, W]"""
    d = ((img[:, :, None, :].astype(np.int32) - _PAL[None, None]) ** 2).sum(-1)
    return d.argmin(-1)


def _patches(lab):
    H, W = lab.shape
    return lab.reshape(H // P, P, W // P, P).transpose(0, 2, 1, 3).reshape(-1, P * P)


def _split(pl):
    """one patch's labels [64] → (A, B, minority mask bool[64]) or (A, None, None)"""
    cnt = np.bincount(pl, minlength=NC)
    order = np.argsort(-cnt, kind="stable")
    a = int(order[0])
    if cnt[order[1]] == 0:
        return a, None, None
    b = int(order[1])
    m = pl == b
    if cnt[order[2]] > 0:  # a third colour: to the nearer of a and b (by palette distance)
        for c in np.nonzero(cnt)[0]:
            if c not in (a, b):
                da = ((_PAL[c] - _PAL[a]) ** 2).sum()
                db = ((_PAL[c] - _PAL[b]) ** 2).sum()
                if db < da:
                    m |= pl == c
    return a, b, m


def fit_masks(n_images=1500, seed=0, iters=25):
    """k-means (Euclidean on 0/1 masks) over the minority masks of 2-colour patches of
    n_images world images (all scenes, held-out ones too: the tokenizer is not the model),
    then each cluster's medoid (the real mask nearest its centroid)."""
    X = []
    for i in range(n_images):
        lab = labels(world.render(world.sample(90_000_000 + i, train=False)[0]))
        for pl in _patches(lab):
            a, b, m = _split(pl)
            if b is not None:
                X.append(m)
    X = np.array(X, dtype=np.float32)
    rng = np.random.default_rng(seed)
    C = X[rng.choice(len(X), G, replace=False)]

    def assign():
        return ((X ** 2).sum(1)[:, None] + (C ** 2).sum(1)[None] - 2 * X @ C.T).argmin(1)

    for _ in range(iters):
        a = assign()
        for g in range(G):
            C[g] = X[a == g].mean(0) if (a == g).any() else X[rng.integers(len(X))]
    a = assign()
    med = []
    for g in range(G):
        idx = np.nonzero(a == g)[0]
        med.append(X[idx[((X[idx] - C[g]) ** 2).sum(1).argmin()]] if len(idx) else C[g] >= 0.5)
    return np.array(med) >= 0.5


def masks():
    global _MASKS
    if _MASKS is None:
        if not os.path.exists(MASK_FILE):
            np.save(MASK_FILE, fit_masks())
        _MASKS = np.load(MASK_FILE).astype(bool)
    return _MASKS


_MASKS = None


def encode(img):
    """uint8 [64, 64, 3] → int codes [64] (raster order, row-major 8×8)"""
    M = masks()
    out = np.empty((img.shape[0] // P) * (img.shape[1] // P), dtype=np.int64)
    for i, pl in enumerate(_patches(labels(img))):
        a, b, m = _split(pl)
        if b is None:
            out[i] = a
        else:
            g = int((M != m[None]).sum(1).argmin())
            out[i] = NC + PAIR_INDEX[(a, b)] * G + g
    return out


_KEYS = _PAL[:, 0] * 65536 + _PAL[:, 1] * 256 + _PAL[:, 2]
_KORDER = np.argsort(_KEYS)


def _labels_fast(imgs):
    """labels() for a batch: exact palette colours by lookup, the rest by nearest colour."""
    k = imgs[..., 0].astype(np.int64) * 65536 + imgs[..., 1].astype(np.int64) * 256 + imgs[..., 2]
    pos = np.clip(np.searchsorted(_KEYS[_KORDER], k), 0, NC - 1)
    lab = _KORDER[pos]
    miss = _KEYS[lab] != k
    if miss.any():
        px = imgs[miss].astype(np.int32)
        lab[miss] = ((px[:, None, :] - _PAL[None]) ** 2).sum(-1).argmin(-1)
    return lab


def encode_batch(imgs):
    """uint8 [N, 64, 64, 3] → int codes [N, 64]; the same as encode() image by image,
    vectorised (patches with a third colour fall back to encode's per-patch rule)."""
    imgs = np.asarray(imgs)
    N, H, W = imgs.shape[:3]
    lab = _labels_fast(imgs)  # [N, H, W]
    pl = lab.reshape(N, H // P, P, W // P, P).transpose(0, 1, 3, 2, 4).reshape(-1, P * P)
    cnt = np.zeros((len(pl), NC), dtype=np.int32)
    for c in range(NC):
        cnt[:, c] = (pl == c).sum(1)
    order = np.argsort(-cnt, axis=1, kind="stable")
    a, b = order[:, 0], order[:, 1]
    two = cnt[np.arange(len(pl)), b] > 0
    m = pl == b[:, None]
    M = masks()
    mf, Mf = m.astype(np.float32), M.astype(np.float32)
    ham = mf.sum(1, keepdims=True) + Mf.sum(1)[None] - 2 * mf @ Mf.T  # Hamming distances
    g = ham.argmin(1)
    pair = np.array([[PAIR_INDEX.get((i, j), 0) for j in range(NC)] for i in range(NC)])
    out = np.where(two, NC + pair[a, b] * G + g, a)
    three = cnt[np.arange(len(pl)), order[:, 2]] > 0
    for i in np.nonzero(three)[0]:
        aa, bb, mm = _split(pl[i])
        out[i] = NC + PAIR_INDEX[(aa, bb)] * G + int((M != mm[None]).sum(1).argmin())
    return out.reshape(N, -1)


def paint(codes, side=8):
    """codes → the uint8 image the codes stand for (the quantizer's own reconstruction)."""
    M = masks()
    img = np.zeros((side * P, side * P, 3), dtype=np.uint8)
    for i, c in enumerate(codes):
        y, x = divmod(i, side)
        c = int(c)
        if c < NC:
            patch = np.broadcast_to(_PAL[c], (P * P, 3))
        elif c < NC + len(PAIRS) * G:
            pi, g = divmod(c - NC, G)
            a, b = PAIRS[pi]
            patch = np.where(M[g][:, None], _PAL[b], _PAL[a])
        else:
            patch = np.broadcast_to(np.array([128, 128, 128]), (P * P, 3))
        img[y * P:(y + 1) * P, x * P:(x + 1) * P] = np.asarray(patch).reshape(P, P, 3)
    return img


if __name__ == "__main__":
    M = masks()
    print(f"{G} masks, minority pixels per mask: {M.sum(1).tolist()}")
    errs, ok = [], 0
    for i in range(300):
        sc, cap, spec = world.sample(i, train=False)
        img = world.render(sc)
        rec = paint(encode(img))
        errs.append(np.abs(rec.astype(int) - img).mean() / 255)
        ok += world.truth_matches(sc, world.classify(rec))
    print(f"painted reconstruction: mean abs error {np.mean(errs):.4f}, classifier agrees {ok / 300:.3f}")
    # (with G = 36 every attribute of 99.3 % of 300 scenes survives painting; G = 18 gave 65 %)
