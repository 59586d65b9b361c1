"""Training speed under each thread rule, on an idle machine and with a core kept busy.

    python -m bench.bench_threads [--images 1536] [--threads 0 1 2] [--rounds 2]

For each round, load (idle: nothing added; busy: one more process, a pure-Python spin loop, as
a browser tab or an IDE keeps a laptop core busy) and --threads value (0 = the thread rule of
support/devices.thread_rule, train.py's default; loader workers by the rule too), it runs
`train.py --preset cpu --epochs 1 --no-augment` on the same temporary SVHN-like split in a
subprocess and reads its images/s from val.csv. Runs are interleaved, medians over rounds;
the last lines give each choice's images/s over the best fixed --threads under the same load.
Name the CPU (lscpu) beside the figures.
Never part of the test suite.
"""
import argparse
import csv
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile

from bench.image_sets import make_temp_split

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where train.py lives


def spin():
    while True:
        pass


def one_run(json_path, out, threads):
    cmd = [sys.executable, "train.py", "--preset", "cpu", "--epochs", "1", "--no-augment",
           "--train-json", json_path, "--out", out, "--overwrite", "--threads", str(threads)]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, MPLBACKEND="Agg"))
    with open(os.path.join(out, "val.csv")) as f:
        return float(list(csv.DictReader(f))[-1]["images_per_s"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", type=int, default=1536, help="training images (one epoch)")
    p.add_argument("--threads", type=int, nargs="+", default=[0, 1, 2],
                   help="--threads values to compare (0: the thread rule)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (median)")
    p.add_argument("--loads", nargs="+", choices=["idle", "busy"], default=["idle", "busy"],
                   help="idle: nothing added (the machine as it is); busy: one spinning process "
                        "added")
    args = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="bench_threads-")
    json_path = make_temp_split(work, args.images)
    results = {}
    for _ in range(args.rounds):
        for load in args.loads:
            busy = None
            if load == "busy":
                busy = multiprocessing.Process(target=spin, daemon=True)
                busy.start()
            try:
                for threads in args.threads:
                    speed = one_run(json_path, os.path.join(work, "run"), threads)
                    results.setdefault((load, threads), []).append(speed)
                    name = "rule" if threads == 0 else str(threads)
                    print(f"{load:<12} --threads {name:<5} {speed:7.1f} images/s", flush=True)
            finally:
                if busy is not None:
                    busy.terminate()
                    busy.join()
    print(f"\nmedians over {args.rounds} round(s), {os.cpu_count()} cores:")
    for load in args.loads:
        medians = {t: statistics.median(results[(load, t)]) for t in args.threads}
        fixed = [v for t, v in medians.items() if t != 0] or list(medians.values())
        best = max(fixed)
        for t, v in medians.items():
            name = "rule (0)" if t == 0 else str(t)
            print(f"{load:<12} --threads {name:<9} {v:7.1f} images/s  {v / best:5.2f}x the best "
                  f"fixed choice")


if __name__ == "__main__":
    main()
