"""Small house-number-like image sets for tests: bench.image_sets.write_images (PNGs with light
digits drawn on dark noise, the images bench_eval.py reads too) and their split JSON in
prepare_data.py's format; the tiny-overfit loop."""
import json
import os

from bench.image_sets import write_images


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
