"""Small house-number-like image sets for tests (and bench/bench_eval.py): PNGs with light digits
drawn on dark noise, and their split JSON in prepare_data.py's format."""
import json
import os

import numpy as np
from PIL import Image, ImageDraw


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


def write_split(root, n=6, seed=0, numbers=None, split="test", image_dir="imgs"):
    """write_images into <root>/<image_dir> and <root>/<split>.json beside it; the JSON's path."""
    records = write_images(os.path.join(root, image_dir), n, seed, numbers)
    path = os.path.join(root, f"{split}.json")
    with open(path, "w") as f:
        json.dump({"split": split, "image_dir": image_dir, "num_entries": len(records),
                   "num_missing_images": 0, "records": records}, f)
    return str(path)


def overfit(model, images, tokens, steps, lr=1e-2):
    """Train `model` on one fixed batch with Adam for `steps` steps (the tiny-overfit tests)."""
    import torch
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        _, loss = model(images, tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss
