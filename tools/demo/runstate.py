"""runstate.py — what the three demo trainers (train_bart.py, train_vqgan.py, train_clip.py)
share so that a run can be killed at any moment and continued with --resume exactly where
its last checkpoint left it: a learning-rate schedule over planned steps (not wall time),
checkpoints written atomically (a kill during the write leaves the previous one), and a CSV
log that a resumed run continues (rows past the checkpoint are dropped).
"""
import csv
import math
import os
import time

import torch


def lr_at(base, step, steps, warmup, floor):
    """linear warm-up over `warmup` steps, then a cosine from base down to floor · base at `steps`"""
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, step / steps)))
    return base * min(1.0, (step + 1) / warmup) * (floor + (1 - floor) * cos)


def save(obj, path):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def last(out, name):
    """the run's checkpoint (out/NAME_last.pt), or None when it has none yet"""
    path = os.path.join(out, f"{name}_last.pt")
    return load(path) if os.path.exists(path) else None


class Run:
    """a training run's clock, log and checkpoint cadence. `start` is the step it begins at
    (the checkpoint's on resume), `seconds` the time already spent before it."""

    def __init__(self, out, name, header, ckpt_min, resume_ck=None):
        self.path = os.path.join(out, f"{name}_last.pt")
        self.start = resume_ck["step"] if resume_ck else 0
        self.t0 = time.time() - (resume_ck["seconds"] if resume_ck else 0.0)
        self.ckpt_s, self.last_ckpt = ckpt_min * 60, time.time()
        self.cpu0, self.step0_cpu = time.process_time(), None
        log_path = os.path.join(out, f"{name}_log.csv")
        rows = []
        if resume_ck and os.path.exists(log_path):
            with open(log_path, newline="") as f:
                rows = [r for r in list(csv.reader(f))[1:] if int(r[0]) < self.start]
        self.log = open(log_path, "w", newline="")
        self.w = csv.writer(self.log)
        self.w.writerow(header)
        self.w.writerows(rows)

    def seconds(self):
        return round(time.time() - self.t0, 1)

    def done(self, step):
        """the closing line: steps, wall time, and CPU seconds a step since the first step
        (what sizes a run on a machine of its own: wall time counts other programs' load)"""
        cpu = time.process_time() - (self.step0_cpu if self.step0_cpu is not None else self.cpu0)
        steps = max(1, step - self.start - 1)
        return f"done: {step} steps, {self.seconds():.0f}s wall in all, {cpu / steps:.3f} CPU s/step this sitting"

    def row(self, values):
        self.w.writerow(values)
        self.log.flush()

    def due(self):
        """time for a checkpoint? (called after each step)"""
        if self.step0_cpu is None:
            self.step0_cpu = time.process_time()  # the first step's warm-up left out
        if time.time() - self.last_ckpt < self.ckpt_s:
            return False
        self.last_ckpt = time.time()
        return True

    def checkpoint(self, state, step):
        """state (a dict) + step + seconds → NAME_last.pt, atomically"""
        save(dict(state, step=step, seconds=time.time() - self.t0), self.path)
