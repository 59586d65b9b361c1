"""Benchmark: fast digitStruct.mat reader vs the naive element-by-element h5py reader.

    python -m bench.bench_convert                  # extra-sized file: 202,353 entries
    python -m bench.bench_convert --entries 20000  # quicker

Builds (once, then reused from --cache-dir) a digitStruct.mat in the real layout with SVHN-like
digit counts (labels and boxes only, no images), reads it fully with read_digitstruct, reads the
first --naive-entries entries with read_digitstruct_naive (a full naive run takes several minutes,
so its rate is extrapolated per entry), checks both agree on that subset, and prints entries/s and
the ratio. Also times turning the entries into the JSON prepare_data.py writes. Not part of CI.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

from formats.digitstruct import read_digitstruct, read_digitstruct_naive
from formats.digitstruct_write import write_digitstruct
from prepare_data import to_records

# digits per image in the official SVHN train annotations (33,402 images): 1..6 digits
LENGTH_COUNTS = np.array([5137, 18130, 8691, 1434, 9, 1], dtype=np.float64)


def make_entries(n, seed):
    """SVHN-like (name, digits): lengths from the train table, labels 1 (common) .. 10."""
    rng = np.random.default_rng(seed)
    lengths = rng.choice(np.arange(1, 7), size=n, p=LENGTH_COUNTS / LENGTH_COUNTS.sum())
    label_p = np.r_[np.linspace(2.0, 1.0, 9), 1.0]
    entries = []
    for i, k in enumerate(lengths):
        labels = rng.choice(np.arange(1, 11), size=k, p=label_p / label_p.sum())
        height = float(rng.integers(14, 69))
        left = float(rng.integers(-3, 120))
        digits = []
        for lab in labels:
            width = float(max(3, round(height * rng.uniform(0.35, 0.6))))
            digits.append([float(lab), left, float(rng.integers(-2, 40)), width, height])
            left += width + float(rng.integers(-2, 5))
        entries.append((f"{i + 1}.png", digits))
    return entries


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--entries", type=int, default=202353,
                    help="entries in the test file (extra: 202,353)")
    ap.add_argument("--naive-entries", type=int, default=5000,
                    help="entries read by the naive reader (its rate is extrapolated)")
    ap.add_argument("--cache-dir", default=tempfile.gettempdir(),
                    help="where the test file is kept and reused")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic labels and boxes")
    args = ap.parse_args(argv)

    path = os.path.join(args.cache_dir, f"bench_digitStruct_{args.entries}_{args.seed}.mat")
    if os.path.exists(path):
        print(f"reusing {path}")
    else:
        t = time.perf_counter()
        write_digitstruct(path, make_entries(args.entries, args.seed))
        print(f"wrote {path} in {time.perf_counter() - t:.1f} s")
    print(f"file size {os.path.getsize(path) / 2**20:.1f} MiB")

    t = time.perf_counter()
    stats = {}
    fast = read_digitstruct(path, stats=stats)
    t_fast = time.perf_counter() - t
    t = time.perf_counter()
    records = to_records(fast)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as fh:
        json.dump({"records": records}, fh, separators=(",", ":"))
    t_json = time.perf_counter() - t

    m = min(args.naive_entries, len(fast))
    t = time.perf_counter()
    naive = read_digitstruct_naive(path, stop=m)
    t_naive = time.perf_counter() - t
    same = naive == fast[:m]

    n = len(fast)
    fast_rate, naive_rate = n / t_fast, m / t_naive
    print(f"entries: {n:,}, digits: {sum(len(d) for _, d in fast):,}, fast-path entries: "
          f"{stats['fast']:,}, fallback: {stats['fallback']:,}")
    print(f"fast  read_digitstruct      : {n:,} entries in {t_fast:.1f} s = "
          f"{fast_rate:,.0f} entries/s")
    print(f"naive read_digitstruct_naive: first {m:,} entries in {t_naive:.1f} s = "
          f"{naive_rate:,.0f} entries/s (extrapolated to {n:,}: {n / naive_rate / 60:.1f} min)")
    print(f"ratio fast/naive: {fast_rate / naive_rate:.1f}x")
    print(f"identical output on the first {m:,} entries: {same}")
    print(f"full conversion (fast read + JSON records + write): {t_fast + t_json:.1f} s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
