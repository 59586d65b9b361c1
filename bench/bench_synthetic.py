"""Speed of synthetic.py against an earlier version of itself, side by side in one process.

    python -m bench.bench_synthetic [--against c36c175] [--n 200] [--rounds 5]

Each round renders and PNG-encodes --n images of the train split with the older generator (taken
from git at --against), then --n with this one, then --n of this one's test_ood split;
medians over the rounds (the machine may be shared: compare the ratio, not the absolute times).
generate_split adds only file writes and a process pool on top of this per-image cost.
"""
import argparse
import importlib.util
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time

import synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_reference(rev, folder):
    """synthetic.py as it was at git revision rev, loaded as the module synthetic_ref."""
    try:
        text = subprocess.run(["git", "-C", REPO, "show", f"{rev}:synthetic.py"], check=True,
                              capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"bench_synthetic.py: error: cannot read synthetic.py at {rev} from git ({e})")
    path = os.path.join(folder, "synthetic_ref.py")
    with open(path, "w") as f:
        f.write(text)
    spec = importlib.util.spec_from_file_location("synthetic_ref", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["synthetic_ref"] = module
    spec.loader.exec_module(module)
    return module


def timed(module, split, n, seed):
    start = time.perf_counter()
    for i in range(n):
        img, _ = module.render(module.image_rng(seed, split, i), split)
        img.save(io.BytesIO(), format="PNG", compress_level=1)
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--against", default="c36c175",
                   help="git revision of the older synthetic.py (default: before test_ood)")
    p.add_argument("--n", type=int, default=200, help="images per generator and round")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds after a warm-up")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ref = load_reference(args.against, tmp)
        runs = {"old train": (ref, "train"), "new train": (synthetic, "train")}
        if hasattr(synthetic, "OOD_SPLIT"):
            runs["new test_ood"] = (synthetic, synthetic.OOD_SPLIT)
        for module, split in runs.values():  # warm-up: fonts found and glyphs cached
            timed(module, split, max(1, args.n // 4), 10_000)
        times = {k: [] for k in runs}
        for r in range(args.rounds):
            for key, (module, split) in runs.items():
                times[key].append(timed(module, split, args.n, r))
    med = {k: statistics.median(v) for k, v in times.items()}
    for key, sec in med.items():
        print(f"{key:<14} {1000 * sec / args.n:7.2f} ms/image  ({args.n / sec:6.1f} images/s, "
              f"one process, median of {args.rounds})")
    print(f"new/old time, train split: {med['new train'] / med['old train']:.2f}")


if __name__ == "__main__":
    main()
