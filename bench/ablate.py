"""What each change to the demo's recipe buys on test_ood, the split of held-out typefaces.

    python -m bench.ablate --data data/abl --make 25000 [--device cuda] [--parallel 3]
                           [--only base noaug ...] [--deadline 420] [--out runs/ablate]

Every config trains with train.py (a subprocess, as a user runs it) for a fixed number of images
seen, then eval.py reads test and test_ood with its last.pt. The budget is counted in images, not
seconds, so the accuracies do not depend on the machine: a GPU gives what two CPU cores would
give, sooner. Each row says what it changes from `base` (the previous demo's recipe: the CPU
preset, the seed's augmentation, AdamW onecycle to 2e-3, batch 64, 4 epochs of --make images =
100,000 images seen) and its cost on a CPU, where that differs. A second phase trains the
changes that beat base on test_ood by more than --keep points, together, at 1x and 1.5x the
budget.

--make N writes the data first (prepare_data.py --synthetic: train and extra of N images each,
test and test_ood of --test-size), each split in its own process. The table is printed and
written to <out>/ablation.md and <out>/ablation.json after every finished config, so a run cut
short keeps what it measured. Never part of the test suite.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from support.atomic import atomic_open

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where train.py lives

BASE = ["--preset", "cpu", "--lr", "2e-3", "--schedule", "onecycle", "--val-size", "0"]
SEED_ARCH = ["--plan", "64 64 M 128 128 M 256 256 M 512 512", "--hidden", "256"]  # no preset
# name: (what it changes from base, training splits, epochs, train.py flags beyond BASE).
# Epochs of --make images: 4 = 100,000 images seen with the default --make 25000.
CONFIGS = {
    "base": ("the previous demo's recipe", ["train"], 4, []),
    "seen1.5x": ("1.5x images seen (6 epochs): what bf16 buys on a 2-core AVX512_BF16 CPU",
                 ["train"], 6, []),
    "data2x": ("2x distinct images (train + extra, 2 epochs); same images seen",
               ["train", "extra"], 2, []),
    "seed1": ("base with --seed 1: the noise between two runs", ["train"], 4, ["--seed", "1"]),
    "noaug": ("--no-augment (no random crop or colour jitter)", ["train"], 4, ["--no-augment"]),
    "hidden256": ("--hidden 256 (the seed's decoder width)", ["train"], 4, ["--hidden", "256"]),
    "lr1e-3": ("--lr 1e-3", ["train"], 4, ["--lr", "1e-3"]),
    "lr4e-3": ("--lr 4e-3", ["train"], 4, ["--lr", "4e-3"]),
    "dropout": ("--dropout 0.2", ["train"], 4, ["--dropout", "0.2"]),
    "batch32": ("--batch-size 32 (2x the steps)", ["train"], 4, ["--batch-size", "32"]),
    "seedarch": ("the seed's architecture, 2 epochs: 1/2 the images at 4x the CPU cost of each",
                 ["train"], 2, SEED_ARCH),
    "noaug1.5x": ("--no-augment, 1.5x images seen", ["train"], 6, ["--no-augment"]),
    "noaug-b32-1.5x": ("--no-augment --batch-size 32, 1.5x images seen", ["train"], 6,
                       ["--no-augment", "--batch-size", "32"]),
    "noaug-seed1": ("--no-augment --seed 1", ["train"], 4, ["--no-augment", "--seed", "1"]),
    "noaug2x": ("--no-augment, 2x images seen", ["train"], 8, ["--no-augment"]),
    "noaug1.5x-seed1": ("--no-augment --seed 1, 1.5x images seen", ["train"], 6,
                        ["--no-augment", "--seed", "1"]),
    "seedarch-noaug": ("the seed's architecture, --no-augment, 2 epochs", ["train"], 2,
                       [*SEED_ARCH, "--no-augment"]),
}
COMBINABLE = {"data2x", "hidden256", "lr1e-3", "lr4e-3", "dropout", "batch32", "noaug"}


def run_config(name, spec, args):
    """Train and evaluate one config; its row of the table (an 'error' row if a step failed)."""
    what, splits, epochs, flags = spec
    out = os.path.join(args.out, name)
    jsons = [os.path.join(args.data, f"{s}.json") for s in splits]
    py = sys.executable
    device = ["--device", args.device] if args.device else []  # train.py's and eval.py's
    train = [py, os.path.join(ROOT, "train.py"), "--train-json", *jsons, *BASE,
             "--epochs", str(epochs), *flags, "--out", out, "--overwrite",
             "--workers", str(args.workers), *device]
    row = {"config": name, "what": what, "epochs": epochs, "flags": " ".join(flags)}
    start = time.time()
    log = os.path.join(args.out, f"{name}.log")
    os.makedirs(args.out, exist_ok=True)
    with open(log, "w") as fh:
        if subprocess.run(train, stdout=fh, stderr=subprocess.STDOUT).returncode:
            return {**row, "error": f"train.py failed; see {log}"}
        row["train_s"] = round(time.time() - start, 1)
        for split in ("test", "test_ood"):
            evaluate = [py, os.path.join(ROOT, "eval.py"), "--checkpoint",
                        os.path.join(out, "last.pt"), "--json",
                        os.path.join(args.data, f"{split}.json"), *device]
            if subprocess.run(evaluate, stdout=fh, stderr=subprocess.STDOUT).returncode:
                return {**row, "error": f"eval.py failed on {split}; see {log}"}
            with open(os.path.join(out, f"eval_{split}.json")) as f:
                report = json.load(f)
            row[split] = report["sequence_accuracy"]
            row[f"{split}_digits"] = report["digit_accuracy"]
    images = 0
    for path in jsons:
        with open(path) as f:
            images += len(json.load(f)["records"])
    row["images_seen"] = images * epochs
    return row


def table(rows):
    base = next((r.get("test_ood") for r in rows if r["config"] == "base"), None)
    lines = ["| config | what it changes | images seen | test | test_ood | test_ood - base |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['config']} | {r['what']} | | {r['error']} | | |")
            continue
        delta = "" if base is None else f"{100 * (r['test_ood'] - base):+.1f}"
        lines.append(f"| {r['config']} | {r['what']} | {r['images_seen']:,} | "
                     f"{100 * r['test']:.1f}% | {100 * r['test_ood']:.1f}% | {delta} |")
    return "\n".join(lines)


def save(rows, args):
    with atomic_open(os.path.join(args.out, "ablation.json"), "w") as f:
        json.dump(rows, f, indent=1)
    with atomic_open(os.path.join(args.out, "ablation.md"), "w") as f:
        f.write(table(rows) + "\n")


def make_data(args):
    """train and extra (--make each), test and test_ood (--test-size each): a process per split."""
    sizes = {"train": args.make, "extra": args.make, "test": args.test_size,
             "test_ood": args.test_size}
    cores = os.cpu_count() or 2
    procs = []
    for split, n in sizes.items():  # rendering processes in proportion to the split's size
        workers = max(1, round(cores * n / sum(sizes.values())))
        cmd = [sys.executable, os.path.join(ROOT, "prepare_data.py"), "--synthetic", "--root",
               args.data, "--splits", split, "--synthetic-sizes", f"{split}={n}",
               "--workers", str(workers)]
        procs.append(subprocess.Popen(cmd))
    if any(p.wait() for p in procs):
        sys.exit("ablate.py: error: prepare_data.py failed")


def run_phase(names, specs, rows, args, start):
    """Train the named configs, --parallel at a time, while the deadline allows."""
    def job(name):
        if args.deadline and time.time() - start > args.deadline:
            return {"config": name, "what": specs[name][0], "error": "skipped: past --deadline"}
        row = run_config(name, specs[name], args)
        print(f"{name}: {row}", flush=True)
        return row

    with ThreadPoolExecutor(args.parallel) as pool:
        for row in pool.map(job, names):
            rows.append(row)
            save(rows, args)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="data/abl", help="folder of train/extra/test/test_ood.json")
    p.add_argument("--make", type=int, default=0, help="first write the data, N train images")
    p.add_argument("--test-size", type=int, default=2000, help="with --make: test, test_ood images")
    p.add_argument("--out", default="runs/ablate", help="run folders, logs and the table")
    p.add_argument("--only", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS),
                   help="configs to train (base first)")
    p.add_argument("--device", default=None, help="train.py/eval.py --device (None: theirs)")
    p.add_argument("--parallel", type=int, default=1, help="configs trained at once")
    p.add_argument("--workers", type=int, default=1, help="train.py --workers per config")
    p.add_argument("--keep", type=float, default=1.0,
                   help="points on test_ood a change must gain to join the combination")
    p.add_argument("--deadline", type=float, default=0,
                   help="seconds after which no config starts (0: none)")
    args = p.parse_args(argv)
    start = time.time()
    if args.make:
        make_data(args)
        print(f"data written in {time.time() - start:.0f} s", flush=True)
    rows = []
    run_phase(args.only, CONFIGS, rows, args, start)
    by_name = {r["config"]: r for r in rows if "error" not in r}
    if "base" in by_name:
        base = by_name["base"]["test_ood"]
        good = [n for n in COMBINABLE & set(by_name)
                if by_name[n]["test_ood"] - base > args.keep / 100]
        lrs = sorted((n for n in good if n.startswith("lr")), key=lambda n: by_name[n]["test_ood"])
        good = [n for n in good if n not in lrs[:-1]]  # of the learning rates, the best one
        if good:
            combo = [CONFIGS[n] for n in sorted(good)]
            splits = max((c[1] for c in combo), key=len)
            flags = [f for c in combo for f in c[3]]
            epochs = 4 // len(splits)  # base's 4 epochs of train = 2 of train + extra
            specs = {
                "combo": (f"together: {', '.join(sorted(good))}", splits, epochs, flags),
                "combo1.5x": (f"together, 1.5x images seen: {', '.join(sorted(good))}", splits,
                              epochs * 3 // 2, flags),
            }
            run_phase(list(specs), specs, rows, args, start)
    print(table(rows))
    print(f"wrote {os.path.join(args.out, 'ablation.md')} and ablation.json "
          f"in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
