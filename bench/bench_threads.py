"""Training speed under each thread rule: on an idle machine, with a core kept busy, and with a
core taken or freed mid-run.

    python -m bench.bench_threads [--images 1536] [--threads 0 1 2] [--rounds 2]
    python -m bench.bench_threads --cases taken freed [--images 2048] [--epochs 3]

steady (the default case): for each round, load (idle: nothing added; busy: one more process, a
pure-Python spin loop, as a browser tab or an IDE keeps a laptop core busy) and --threads value
(0 = the thread rule of support/devices.thread_rule, train.py's default; loader workers by the
rule too), it runs `train.py --preset cpu --epochs 1 --no-augment` on the same temporary
SVHN-like split in a subprocess and reads its images/s from val.csv. Runs are interleaved,
medians over rounds; the last lines give each choice's images/s over the best fixed --threads
under the same load.

taken: the spinning process starts once epoch 1 is saved and runs to the end; the default
(threads that follow the load, support/threads.py) against `--threads 1` under the same load.
freed: the spinning process runs from the start (the rule picks 1 thread, no loader worker) and
stops once epoch 1 is saved; the default against the default on a machine left as it is.
Each prints the training images/s of the epochs after the first and their ratio.
Name the CPU (lscpu) and what else ran beside the figures. Never part of the test suite.
"""
import argparse
import csv
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench.image_sets import make_temp_split

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where train.py lives


def spin():
    while True:
        pass


def start_spinner():
    busy = multiprocessing.Process(target=spin, daemon=True)
    busy.start()
    return busy


def stop_spinner(busy):
    if busy is not None:
        busy.terminate()
        busy.join()


def epochs_logged(out):
    """The rows of val.csv (one per saved epoch) so far."""
    try:
        with open(os.path.join(out, "val.csv")) as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def one_run(json_path, out, threads, epochs=1, change=None):
    """images/s of each epoch of one train.py run. change: None; "taken": a spinner from the
    end of epoch 1 on; "freed": a spinner until the end of epoch 1."""
    cmd = [sys.executable, "train.py", "--preset", "cpu", "--epochs", str(epochs), "--no-augment",
           "--train-json", json_path, "--out", out, "--overwrite", "--threads", str(threads)]
    busy = start_spinner() if change == "freed" else None
    try:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                                env=dict(os.environ, MPLBACKEND="Agg"))
        while change and proc.poll() is None and not epochs_logged(out):
            time.sleep(0.1)
        if change == "taken":
            busy = start_spinner()
        if change == "freed":
            stop_spinner(busy)
            busy = None
        if proc.wait() != 0:
            raise SystemExit(f"bench_threads: {' '.join(cmd)} failed")
    finally:
        stop_spinner(busy)
    return [float(row["images_per_s"]) for row in epochs_logged(out)]


def steady(args, work, json_path):
    """The --loads x --threads grid, one epoch a run."""
    results = {}
    for _ in range(args.rounds):
        for load in args.loads:
            busy = start_spinner() if load == "busy" else None
            try:
                for threads in args.threads:
                    speed = one_run(json_path, os.path.join(work, "run"), threads)[0]
                    results.setdefault((load, threads), []).append(speed)
                    name = "rule" if threads == 0 else str(threads)
                    print(f"{load:<12} --threads {name:<5} {speed:7.1f} images/s", flush=True)
            finally:
                stop_spinner(busy)
    print(f"\nmedians over {args.rounds} round(s), {os.cpu_count()} cores:")
    for load in args.loads:
        medians = {t: statistics.median(results[(load, t)]) for t in args.threads}
        fixed = [v for t, v in medians.items() if t != 0] or list(medians.values())
        best = max(fixed)
        for t, v in medians.items():
            name = "rule (0)" if t == 0 else str(t)
            print(f"{load:<12} --threads {name:<9} {v:7.1f} images/s  {v / best:5.2f}x the best "
                  f"fixed choice")


def mid_run(args, work, json_path, case):
    """A core taken or freed after epoch 1: the default against its reference, in images/s of
    the later epochs (medians over rounds)."""
    reference = {"taken": ("--threads 1, core taken", 1, "taken"),
                 "freed": ("default, nothing changed", 0, None)}[case]
    speeds = {"default": [], "reference": []}
    for _ in range(args.rounds):
        for name, threads, change in (("default", 0, case), ("reference", *reference[1:])):
            per_epoch = one_run(json_path, os.path.join(work, "run"), threads, args.epochs, change)
            later = statistics.mean(per_epoch[1:])
            speeds[name].append(later)
            shown = " ".join(f"{v:.1f}" for v in per_epoch)
            print(f"{case:<6} {name:<10} epochs' images/s: {shown}", flush=True)
    default = statistics.median(speeds["default"])
    ref = statistics.median(speeds["reference"])
    print(f"{case}: epochs 2-{args.epochs}: the default {default:.1f} images/s, "
          f"{reference[0]} {ref:.1f}: ratio {default / ref:.2f}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cases", nargs="+", choices=["steady", "taken", "freed"],
                   default=["steady"], help="steady: the --loads x --threads grid; taken / "
                                            "freed: a core taken or freed after epoch 1")
    p.add_argument("--images", type=int, default=1536, help="training images (one epoch)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of a taken / freed run")
    p.add_argument("--threads", type=int, nargs="+", default=[0, 1, 2],
                   help="steady: --threads values to compare (0: the thread rule)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (median)")
    p.add_argument("--loads", nargs="+", choices=["idle", "busy"], default=["idle", "busy"],
                   help="steady: idle: nothing added (the machine as it is); busy: one spinning "
                        "process added")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be >= 2: the cases compare the epochs after the first")
    work = tempfile.mkdtemp(prefix="bench_threads-")
    json_path = make_temp_split(work, args.images)
    for case in args.cases:
        if case == "steady":
            steady(args, work, json_path)
        else:
            mid_run(args, work, json_path, case)


if __name__ == "__main__":
    main()
