"""Fine-tuning a checkpoint on labelled sets of real photos: accuracy and wall time side by side.

    python -m bench.bench_finetune --checkpoint weights/reader.pt \
        --sets my-plates/ my-meters/ [--variant NAME "FLAGS" ...] [--threads 2]

Each set is a folder with train.csv and test.csv (prepare_data.py's labels CSV) or train.json
and test.json. For each set and each variant, it runs exactly what a user runs:
    python train.py --init CKPT --train-json train.json --out RUN [FLAGS]
    python eval.py --checkpoint RUN/best.pt (last.pt without validation) --json test.json
as subprocesses, and prints whole-sequence accuracy, character accuracy, CER and the wall time of
training. The variant "defaults" (no flags) comes first (--no-defaults leaves it out): the
recipe as a user gets it.
JSONs and runs go to a temporary folder (--work to keep them); nothing is written into the sets.
Never part of the test suite.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def prepare(set_dir, work):
    """(train.json, test.json) of a set folder; CSVs are converted into `work`."""
    jsons = [os.path.join(set_dir, f"{split}.json") for split in ("train", "test")]
    if all(os.path.exists(p) for p in jsons):
        return jsons
    csvs = [os.path.join(set_dir, f"{split}.csv") for split in ("train", "test")]
    missing = [p for p in csvs if not os.path.exists(p)]
    if missing:
        sys.exit(f"bench_finetune.py: error: {set_dir}: no train/test .json or .csv "
                 f"({', '.join(missing)} missing)")
    os.makedirs(work, exist_ok=True)
    run([sys.executable, "prepare_data.py", "--csv", *csvs, "--out-dir", work], set_dir)
    return [os.path.join(work, f"{split}.json") for split in ("train", "test")]


def run(cmd, what, env=None):
    """Run one of the repository's scripts; where it fails (it has said why on stderr), stop
    with one line naming the step and what it ran on."""
    done = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    if done.returncode:
        sys.exit(f"bench_finetune.py: error: {os.path.basename(cmd[1])} failed on {what} "
                 f"(exit status {done.returncode}; its message is above)")


def finetune(checkpoint, train_json, test_json, out, flags, threads):
    """Train and evaluate one variant; its figures."""
    env = dict(os.environ, MPLBACKEND="Agg")
    cmd = [sys.executable, "train.py", "--init", checkpoint, "--train-json", train_json,
           "--out", out, *flags]
    if threads:
        cmd += ["--threads", str(threads)]
    start = time.time()
    run(cmd, train_json, env)
    seconds = time.time() - start
    best = os.path.join(out, "best.pt")
    ckpt = best if os.path.exists(best) else os.path.join(out, "last.pt")
    report_path = os.path.join(out, "eval.json")
    cmd = [sys.executable, "eval.py", "--checkpoint", ckpt, "--json", test_json, "--report",
           report_path]
    if threads:
        cmd += ["--threads", str(threads)]
    run(cmd, test_json, env)
    with open(report_path) as f:
        report = json.load(f)
    return {"seconds": seconds, "checkpoint": os.path.basename(ckpt),
            "accuracy": report["sequence_accuracy"], "chars": report["digit_accuracy"],
            "cer": report["character_error_rate"], "images": report["num_images"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default="weights/reader.pt",
                   help="the model to start from: the general text reader")
    p.add_argument("--sets", nargs="+", required=True,
                   help="folders with train.csv + test.csv (or train.json + test.json)")
    p.add_argument("--variant", nargs=2, action="append", default=[], metavar=("NAME", "FLAGS"),
                   help="also fine-tune with these train.py flags (quoted), e.g. "
                        "--variant square '--image-size 64 --crop-size 54'")
    p.add_argument("--no-defaults", action="store_true",
                   help="leave out the defaults variant (e.g. already measured)")
    p.add_argument("--threads", type=int, default=0, help="train.py/eval.py --threads (0: theirs)")
    p.add_argument("--work", default=None, help="keep JSONs and runs here (default: a temp dir)")
    args = p.parse_args(argv)
    variants = [] if args.no_defaults else [("defaults", [])]
    variants += [(name, shlex.split(flags)) for name, flags in args.variant]
    work = args.work or tempfile.mkdtemp(prefix="bench_finetune-")
    rows = []
    for set_dir in args.sets:
        name = os.path.basename(os.path.normpath(set_dir))
        train_json, test_json = prepare(set_dir, os.path.join(work, name, "json"))
        for variant, flags in variants:
            out = os.path.join(work, name, variant)
            result = finetune(args.checkpoint, train_json, test_json, out, flags, args.threads)
            rows.append((name, variant, result))
            print(f"{name:<24} {variant:<16} {result['accuracy']:7.1%} {result['chars']:7.1%} "
                  f"{result['cer']:6.3f} {result['seconds']:7.0f} s  ({result['images']} test "
                  f"images, {result['checkpoint']})", flush=True)
    print(f"\n{'set':<24} {'variant':<16} {'whole':>7} {'chars':>7} {'CER':>6} {'train':>9}")
    for name, variant, r in rows:
        print(f"{name:<24} {variant:<16} {r['accuracy']:7.1%} {r['chars']:7.1%} {r['cer']:6.3f} "
              f"{r['seconds']:7.0f} s")
    print(f"runs in {work}")


if __name__ == "__main__":
    main()
