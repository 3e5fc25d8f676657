"""Shared pieces: derived (transformed) lazy tensors and the name/shape check."""
import numpy as np

from .readers import ConvertError


class View:
    """A tensor computed from a lazy source tensor when asked for (e.g. a transposed kernel)."""

    def __init__(self, src, shape, fn, what=""):
        self.src, self.shape, self.fn = src, tuple(shape), fn
        self.where = src.where + (f" ({what})" if what else "")
        self.kind = src.kind

    @property
    def is_float(self):
        return self.src.is_float

    def f32(self):
        return np.ascontiguousarray(self.fn(self.src.f32()))


def transposed(src, perm, what="transposed"):
    return View(src, tuple(src.shape[p] for p in perm), lambda a: a.transpose(perm), what)


def check_and_plan(label, src, want, implicit_one=None):
    """src: name → tensor (Lazy/View); want: name → shape. Every name in src must be wanted (or be
    an implicit LayerNorm scale listed in implicit_one that holds exactly 1, then dropped), every
    wanted name present, every shape equal. Returns the writer plan [(name, shape, produce)]."""
    errors = []
    for k, v in src.items():
        if k in want:
            if tuple(v.shape) != tuple(want[k]):
                errors.append(f"{k}: wrong shape: expected {list(want[k])}, found {list(v.shape)} "
                              f"(from {v.where})")
            elif not v.is_float:
                errors.append(f"{k}: dtype {v.kind} is not floating point (from {v.where})")
        elif implicit_one and k in implicit_one:
            a = v.f32()
            if not np.all(a == 1.0):
                errors.append(f"{k}: a bias-only LayerNorm with a scale that is not 1 (min {a.min():g}, "
                              f"max {a.max():g}; from {v.where}); the published models have none")
        else:
            errors.append(f"{k}: unknown key, shape {list(v.shape)} (from {v.where})")
    for k, s in want.items():
        if k not in src:
            errors.append(f"{k}: missing tensor (expected shape {list(s)})")
    if errors:
        shown = errors[:20] + ([f"... and {len(errors) - 20} more"] if len(errors) > 20 else [])
        raise ConvertError(f"{label}: {len(errors)} problem(s):\n  " + "\n  ".join(shown))
    return [(k, want[k], src[k].f32) for k in want]
