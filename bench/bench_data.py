"""Throughput of data.py's pipeline (open PNG, crop, resize, augment, tokenise, collate).

    python -m bench.bench_data [--json data/synth/train.json] [--workers 0 1 2] [--compare-v2]

Images/s for DataLoader(num_workers=0, 1, 2), train and eval transforms, batch 64. Per worker
means images/s divided by max(workers, 1): 0 workers is the main process alone. Configurations
are interleaved over --repeats rounds and the medians are reported, so the ratios come from one
run (the machine may be shared; absolute numbers are noisy). Without a JSON it draws a small
temporary SVHN-like split with PIL so it runs on a fresh clone.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

import data
from bench.image_sets import make_temp_split
from training import augment


def images_per_second(dataset, workers, batch_size, batches):
    """Images/s over `batches` batches, after one warm-up batch (worker start-up excluded)."""
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True,
                                             num_samples=(batches + 1) * batch_size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                                         num_workers=workers, collate_fn=data.collate)
    it = iter(loader)
    next(it)
    t0, count = time.perf_counter(), 0
    for images, _, _ in it:
        count += images.shape[0]
    return count / (time.perf_counter() - t0)


def compare_v2(dataset, n, repeats):
    """Train transform: data.py (torchvision v1 on PIL) vs the same recipe in v2 on uint8
    tensors."""
    import torchvision.transforms.v2 as T2
    c = dataset.crop_size
    v2 = T2.Compose([T2.PILToTensor(), T2.RandomResizedCrop(c, scale=augment.SCALE, antialias=True),
                     T2.ColorJitter(*[augment.JITTER] * 4), T2.ToDtype(torch.float32, scale=True)])
    crops = [dataset.load(i % len(dataset)) for i in range(n)]
    times = {"v1 PIL (data.py)": [], "v2 tensor": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        for img, boxes in crops:
            dataset.augment(img, boxes)
        times["v1 PIL (data.py)"].append(n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for img, _ in crops:
            v2(img)
        times["v2 tensor"].append(n / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"  {k:18s} {v:8.0f} img/s (augment only, 1 thread)")
    print(f"  v1 / v2 = {med['v1 PIL (data.py)'] / med['v2 tensor']:.2f}x")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--json", default="data/synth/train.json",
                   help="split JSON; if missing, a temporary generated split is used")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="num_workers values")
    p.add_argument("--batch-size", type=int, default=64, help="batch size")
    p.add_argument("--batches", type=int, default=15, help="timed batches per configuration")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median reported)")
    p.add_argument("--temp-images", type=int, default=400, help="size of the generated split")
    p.add_argument("--compare-v2", action="store_true",
                   help="also time the train transform in torchvision v1 (PIL) vs v2 (tensors)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # what a DataLoader worker gets; keeps 0 workers comparable
    with tempfile.TemporaryDirectory() as tmp:
        json_path = args.json
        if not os.path.exists(json_path):
            print(f"{json_path} not found: generating {args.temp_images} images in {tmp}")
            json_path = make_temp_split(tmp, args.temp_images)
        try:
            sets = {mode: data.SVHNDataset(json_path, train=(mode == "train"))
                    for mode in ("eval", "train")}
        except (OSError, ValueError) as e:
            sys.exit(f"bench_data.py: error: {e}")
        print(f"{json_path}: {len(sets['train'])} images, batch {args.batch_size}, "
              f"{args.batches} batches x {args.repeats} rounds, torch threads 1, "
              f"{os.cpu_count()} CPUs")
        results = {(m, w): [] for m in sets for w in args.workers}
        for _ in range(args.repeats):
            for (mode, w) in results:
                results[(mode, w)].append(images_per_second(sets[mode], w, args.batch_size,
                                                            args.batches))
        med = {k: statistics.median(v) for k, v in results.items()}
        base = {m: med[(m, args.workers[0])] / max(args.workers[0], 1) for m in sets}
        print(f"{'mode':6s} {'workers':>7s} {'img/s':>8s} {'per worker':>10s} {'vs first':>8s}")
        for (mode, w), ips in med.items():
            per = ips / max(w, 1)
            print(f"{mode:6s} {w:7d} {ips:8.0f} {per:10.0f} {per / base[mode]:8.2f}")
        for w in args.workers:
            print(f"train / eval, {w} workers: {med[('train', w)] / med[('eval', w)]:.2f}")
        if args.compare_v2:
            compare_v2(sets["train"], n=500, repeats=args.repeats)


if __name__ == "__main__":
    main()
