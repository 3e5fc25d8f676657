#!/usr/bin/env python3
"""plot_losses.py — loss curves of the three demo trainings as PNG (Pillow only, no matplotlib).

Reads the CSV logs the trainers write (copied to tools/demo/logs/) and draws one panel per
model into tools/demo/loss_curves.png: training loss (a light line per logged step and a
moving average) against the training step.

    .venv-demo/bin/python tools/demo/plot_losses.py [--logs tools/demo/logs]
"""
import argparse
import csv
import os

from PIL import Image, ImageDraw, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
PANELS = [("vqgan_log.csv", "VQGAN decoder: L1 + MSE", "loss"),
          ("bart_log.csv", "DalleBart: cross-entropy (nats/code)", "loss"),
          ("clip_log.csv", "CLIP: contrastive loss", "loss")]


def read(path, key):
    xs, ys = [], []
    with open(path) as f:
        for row in csv.DictReader(f):
            try:
                xs.append(float(row["step"]))
                ys.append(float(row[key]))
            except (ValueError, KeyError, TypeError):
                continue
    return xs, ys


def panel(d, box, title, xs, ys, font):
    x0, y0, x1, y1 = box
    d.rectangle(box, outline=(0, 0, 0))
    d.text((x0 + 6, y0 - 16), title, fill=(0, 0, 0), font=font)
    if not xs:
        return
    lo, hi = min(ys), max(ys)
    hi = hi if hi > lo else lo + 1
    xmax = max(xs) or 1

    def pt(x, y):
        return (x0 + 4 + (x1 - x0 - 8) * x / xmax, y1 - 4 - (y1 - y0 - 8) * (y - lo) / (hi - lo))

    d.line([pt(x, y) for x, y in zip(xs, ys)], fill=(170, 190, 230), width=1)
    k = max(1, len(ys) // 30)
    avg = [sum(ys[max(0, i - k):i + 1]) / len(ys[max(0, i - k):i + 1]) for i in range(len(ys))]
    d.line([pt(x, y) for x, y in zip(xs, avg)], fill=(20, 60, 200), width=2)
    d.text((x0 + 6, y0 + 4), f"{hi:.3g}", fill=(80, 80, 80), font=font)
    d.text((x0 + 6, y1 - 16), f"{lo:.3g}", fill=(80, 80, 80), font=font)
    d.text((x1 - 90, y1 + 4), f"step {int(xmax)}", fill=(80, 80, 80), font=font)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--logs", default=os.path.join(HERE, "logs"))
    ap.add_argument("--out", default=os.path.join(HERE, "loss_curves.png"))
    args = ap.parse_args()
    W, H = 1080, 320
    img = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    pw = (W - 40) // 3
    for i, (fname, title, key) in enumerate(PANELS):
        path = os.path.join(args.logs, fname)
        xs, ys = read(path, key) if os.path.exists(path) else ([], [])
        panel(d, (20 + i * (pw + 0), 30, 20 + i * pw + pw - 20, H - 30), title, xs, ys, font)
    img.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
