"""Small generated sets of house-number-like images, for benchmarks that must run on a fresh
clone (no data downloaded or generated beforehand) and for the tests."""
import json
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def make_temp_split(folder, n, seed=0):
    """n house-number-like PNGs (SVHN-sized, 1-4 digits) + a split JSON -> JSON path."""
    rng = np.random.default_rng(seed)
    records = []
    for k in range(1, n + 1):
        w, h = int(rng.integers(48, 300)), int(rng.integers(24, 130))
        bg = tuple(int(c) for c in rng.integers(0, 256, 3))
        img = Image.new("RGB", (w, h), bg)
        draw = ImageDraw.Draw(img)
        size = max(8, int(h * rng.uniform(0.4, 0.8)))
        font = ImageFont.load_default(size=size)
        digits = rng.integers(0, 10, int(rng.integers(1, 5))).tolist()
        x, boxes = float(rng.uniform(0, w * 0.3)), []
        for d in digits:
            y = float(rng.uniform(0, max(h - size, 1)))
            left, top, right, bottom = draw.textbbox((x, y), str(d), font=font)
            draw.text((x, y), str(d), font=font, fill=tuple(255 - c for c in bg))
            boxes.append([int(left), int(top), int(right - left), int(bottom - top)])
            x = right + size * rng.uniform(0, 0.3)
        img.save(os.path.join(folder, f"{k}.png"))
        records.append({"name": f"{k}.png", "digits": digits, "boxes": boxes})
    path = os.path.join(folder, "train.json")
    with open(path, "w") as f:
        json.dump({"split": "train", "image_dir": ".", "records": records}, f)
    return path


def write_images(folder, n=6, seed=0, numbers=None, margin=12, height=40):
    """Write 1.png..n.png into `folder`; return their records (name, digits, boxes).

    numbers: the digits of each image (then n = len(numbers)); None: random 1-3 digits.
    Digits sit 14 px apart from `margin` px on the left; each box is 12x24 at top 8."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    records = []
    if numbers is not None:
        n = len(numbers)
    for i in range(n):
        if numbers is None:
            k = int(rng.integers(1, 4))
        else:
            k = len(numbers[i])
        w = 2 * margin + 6 + 14 * k
        img = Image.fromarray(rng.integers(0, 120, (height, w, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(img)
        digits = []
        boxes = []
        for j in range(k):
            if numbers is None:
                d = int(rng.integers(0, 10))
            else:
                d = numbers[i][j]
            left = margin + 14 * j
            top = 8
            draw.text((left + 2, top + 6), str(d), fill=(255, 255, 255))
            digits.append(d)
            boxes.append([left, top, 12, 24])
        img.save(os.path.join(folder, f"{i + 1}.png"))
        records.append({"name": f"{i + 1}.png", "digits": digits, "boxes": boxes})
    return records
