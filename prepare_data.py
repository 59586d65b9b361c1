"""Convert SVHN format-1 `<root>/<split>/digitStruct.mat` files to one JSON file per split.

    python prepare_data.py                      # data/svhn/{train,extra,test}/ -> data/svhn/{split}.json
    python prepare_data.py --synthetic          # first write the offline replica into data/synth/

Each JSON holds one record per image that exists on disk:
    {"name": "2.png", "digits": [2, 3], "boxes": [[77, 29, 23, 32], [98, 25, 26, 32]]}
- digits are ints 0..9: SVHN's label 10 (the digit zero) is stored as 0;
- boxes are [left, top, width, height] in pixels, rounded half-up to ints (the .mat holds floats,
  in practice whole numbers); left/top are 0-based and may be negative or run past the image edge.
Images listed in digitStruct.mat but missing on disk are dropped, counted and reported.
`image_dir` is relative to the JSON's own folder (absolute when not under it), so data can move.
"""
import argparse
import json
import math
import os
import sys
import time

from digitstruct import DigitStructError, read_digitstruct

PROG = "prepare_data.py"
LABEL_NOTE = "SVHN label 10 is stored as digit 0"
SYNTH_SIZES = "train=10000,extra=0,test=2000"  # same defaults as synthetic.py


def _half_up(v):
    return int(math.floor(v + 0.5))


def to_records(entries, on_disk=None):
    """read_digitstruct entries -> JSON records; names not in `on_disk` (a set) are dropped."""
    return [{"name": name,
             "digits": [int(d[0]) % 10 for d in digits],
             "boxes": [[_half_up(v) for v in d[1:]] for d in digits]}
            for name, digits in entries if on_disk is None or name in on_disk]


def build_split(root, split, out_dir):
    """Read <root>/<split>/digitStruct.mat; return (JSON object, summary). Writes nothing."""
    folder = os.path.join(root, split)
    mat = os.path.join(folder, "digitStruct.mat")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: split folder not found (download and extract "
                                f"{split}.tar.gz there, or run with --synthetic)")
    if not os.path.isfile(mat):
        raise FileNotFoundError(f"{mat}: digitStruct.mat not found")
    start = time.time()
    try:
        entries = read_digitstruct(mat)
    except DigitStructError as e:
        raise DigitStructError(f"{mat}: {e}") from None
    records = to_records(entries, set(os.listdir(folder)))
    num_digits = sum(len(r["digits"]) for r in records)
    image_dir = os.path.relpath(os.path.abspath(folder), os.path.abspath(out_dir))
    if image_dir.startswith(os.pardir):
        image_dir = os.path.abspath(folder)
    obj = {"split": split, "image_dir": image_dir, "label_note": LABEL_NOTE,
           "num_entries": len(entries), "num_missing_images": len(entries) - len(records),
           "records": records}
    summary = {"split": split, "entries": len(entries), "kept": len(records),
               "missing": len(entries) - len(records), "digits": num_digits,
               "seconds": time.time() - start, "json": os.path.join(out_dir, f"{split}.json")}
    return obj, summary


def write_json(path, obj):
    """Atomic: a half-written JSON never replaces a good one."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:  # full disk, Ctrl-C: leave no half-written .tmp behind
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def convert_split(root, split, out_dir):
    """Convert one split to <out_dir>/<split>.json; returns the summary dict."""
    obj, summary = build_split(root, split, out_dir)
    start = time.time()
    write_json(summary["json"], obj)
    summary["seconds"] += time.time() - start
    return summary


def report(s):
    if s["missing"]:
        print(f"{s['split']}: {s['missing']} of {s['entries']} images listed in digitStruct.mat "
              f"are missing on disk; kept {s['kept']}")
    print(f"{s['split']}: {s['entries']} entries, {s['kept']} images kept, {s['digits']} digits, "
          f"{s['seconds']:.1f} s -> {s['json']}")


def parse_sizes(text, splits):
    """'train=10000,extra=0,test=2000' -> {'train': 10000, ...} for the requested splits."""
    sizes = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"--synthetic-sizes: expected split=N, got {part!r}")
        sizes[key.strip()] = int(value)
    unknown = [s for s in splits if s not in sizes]
    if unknown:
        raise ValueError(f"--synthetic-sizes: no size for split(s) {', '.join(unknown)}")
    return sizes


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the docstring's layout."""


def main(argv=None):
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                 formatter_class=_HelpFormatter)
    ap.add_argument("--root", default=None,
                    help="folder holding <split>/digitStruct.mat and the images; "
                         "None means data/svhn, or data/synth with --synthetic")
    ap.add_argument("--splits", nargs="+", default=["train", "extra", "test"],
                    help="splits to convert")
    ap.add_argument("--out-dir", default=None, help="where <split>.json go; None means --root")
    ap.add_argument("--synthetic", action="store_true",
                    help="first generate the offline SVHN-format replica with synthetic.py into "
                         "--root (splits of size 0 are skipped), then convert it")
    ap.add_argument("--synthetic-sizes", default=SYNTH_SIZES,
                    help="with --synthetic: images per split, as split=N,split=N")
    ap.add_argument("--seed", type=int, default=0, help="with --synthetic: generator seed")
    ap.add_argument("--workers", type=int, default=2, help="with --synthetic: rendering processes")
    args = ap.parse_args(argv)
    root = args.root or ("data/synth" if args.synthetic else "data/svhn")
    out_dir = args.out_dir or root
    splits = list(dict.fromkeys(args.splits))
    try:
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise ValueError(f"--out-dir {out_dir}: exists and is not a folder")
        if args.synthetic:
            sizes = parse_sizes(args.synthetic_sizes, splits)
            splits = [s for s in splits if sizes[s] > 0]
            import synthetic  # only needed here: converting real data must not depend on it
            for split in splits:
                synthetic.generate_split(root, split, sizes[split], args.seed, args.workers)
        for split in splits:  # fail on a missing split before any (long) conversion
            if not os.path.isfile(os.path.join(root, split, "digitStruct.mat")):
                build_split(root, split, out_dir)  # raises the precise message
        built = [build_split(root, split, out_dir) for split in splits]
    except (DigitStructError, OSError, ValueError, ImportError) as e:
        sys.exit(f"{PROG}: error: {e}")
    for obj, summary in built:  # everything read and checked: now write
        start = time.time()
        try:
            write_json(summary["json"], obj)
        except OSError as e:  # e.g. --out-dir is a file or not writable
            sys.exit(f"{PROG}: error: {summary['json']}: cannot write ({e.strerror or e})")
        summary["seconds"] += time.time() - start
        report(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
