"""Convert SVHN format-1 `<root>/<split>/digitStruct.mat` files to one JSON file per split.

    python prepare_data.py                      # data/svhn/{train,extra,test}/ ->
                                                # data/svhn/{split}.json
    python prepare_data.py --synthetic          # first write the offline replica into data/synth/
                                                # (train, test and test_ood: held-out typefaces)
    python prepare_data.py --csv DIR/train.csv  # your own labelled images -> DIR/train.json

Each JSON holds one record per image that exists on disk:
    {"name": "2.png", "digits": [2, 3], "boxes": [[77, 29, 23, 32], [98, 25, 26, 32]]}
- digits are ints 0..9: SVHN's label 10 (the digit zero) is stored as 0;
- boxes are [left, top, width, height] in pixels, rounded half-up to ints (the .mat holds floats,
  in practice whole numbers); left/top are 0-based and may be negative or run past the image edge.
Images listed in digitStruct.mat but missing on disk are dropped, counted and reported.

A labels CSV (header name,text and optionally left,top,width,height; see labels_csv.py) gives
    {"name": "plates/001.jpg", "text": "KX7204", "region": [12, 30, 180, 48]}
- text is a string (leading zeros kept, letters allowed); no per-character boxes, so eval.py's
  attention localisation skips (and counts) these records;
- region is the box around the whole text, used as given: the 30% growth applies only to SVHN's
  union of digit boxes. Without a box the model sees the whole image.
Every row is checked first (image readable, box inside it, no duplicate names, text not empty,
and not longer than --max-len where one is given); a bad row is a one-line error naming the file
and line, and nothing is written. --labels (gt.txt) and --labels-from-names go the same way.
`image_dir` is relative to the JSON's own folder (absolute when not under it), so data can move.
"""
import argparse
import json
import math
import os
import sys
import time

from support import outputs
from support.inputs import check_input
from support.atomic import ANY, LostRace, atomic_open
from formats.digitstruct import DigitStructError, read_digitstruct
from formats.labels_csv import LabelsError, read_gt, read_labels, read_names
from formats.records import SVHN_ROOT, SYNTH_ROOT
from support.script import run_main

PROG = "prepare_data.py"
LABEL_NOTE = "SVHN label 10 is stored as digit 0"
SYNTH_SIZES = "train=10000,extra=0,test=2000,test_ood=2000"
REAL_SPLITS = ["train", "extra", "test"]
SYNTH_SPLITS = REAL_SPLITS + ["test_ood"]  # test_ood: typefaces and materials train never has
MAX_LEN = 0  # no cap: texts of any length (train.py's decoding cap follows the data)


def half_up(v):
    """v to the nearest integer, halves rounded up (round() sends 2.5 to 2)."""
    return int(math.floor(v + 0.5))


def to_records(entries, on_disk=None):
    """read_digitstruct entries -> JSON records; names not in `on_disk` (a set) are dropped."""
    return [{"name": name,
             "digits": [int(d[0]) % 10 for d in digits],
             "boxes": [[half_up(v) for v in d[1:]] for d in digits]}
            for name, digits in entries if on_disk is None or name in on_disk]


def build_split(root, split, out_dir):
    """Read <root>/<split>/digitStruct.mat; return (JSON object, summary). Writes nothing."""
    folder = os.path.join(root, split)
    mat = os.path.join(folder, "digitStruct.mat")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: split folder not found (download and extract "
                                f"{split}.tar.gz there, or run with --synthetic)")
    if not os.path.exists(mat):
        raise FileNotFoundError(f"{mat}: digitStruct.mat not found")
    check_input(mat, "a digitStruct.mat", limit=None)  # a FIFO would block h5py
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


def build_csv(csv_path, out_dir, max_len, kind="csv", max_pixels=None):
    """Read your labels -> (JSON object, summary) for <out_dir>/<stem>.json. Writes nothing.
    kind: csv (a labels CSV), gt (a gt.txt, path<TAB>text) or names (a folder whose file names
    are the texts: <folder>.json beside the folder)."""
    start = time.time()
    reader = {"csv": read_labels, "gt": read_gt, "names": read_names}[kind]
    records = reader(csv_path, max_len, max_pixels)
    if kind == "names":
        folder = os.path.abspath(csv_path)
        split = os.path.basename(os.path.normpath(folder))
        out_dir = out_dir or os.path.dirname(folder)
    else:
        folder = os.path.dirname(os.path.abspath(csv_path))
        split = os.path.splitext(os.path.basename(csv_path))[0]
        out_dir = out_dir or os.path.dirname(csv_path)
    image_dir = os.path.relpath(folder, os.path.abspath(out_dir or "."))
    if image_dir.startswith(os.pardir):
        image_dir = folder
    boxed = sum("region" in r for r in records)
    obj = {"split": split, "image_dir": image_dir, "source": os.path.basename(csv_path),
           "label_note": f"text as written in the labels ({kind}); region = its box, used as "
                         f"given",
           "num_entries": len(records), "num_missing_images": 0, "records": records}
    summary = {"split": split, "entries": len(records), "kept": len(records), "missing": 0,
               "digits": sum(len(r["text"]) for r in records), "boxed": boxed,
               "seconds": time.time() - start, "json": os.path.join(out_dir, f"{split}.json")}
    return obj, summary


def write_json(path, obj, expect=ANY):
    """Atomic: a half-written JSON never replaces a good one (expect: atomic.replacing's)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    # full disk, Ctrl-C: no half-written .tmp left behind
    with atomic_open(path, "w", expect=expect) as fh:
        json.dump(obj, fh, separators=(",", ":"))


def check_outputs(outputs_and_folders, overwrite, inputs=()):
    """{JSON path: what is there now (the write's expect)}; ValueError unless each JSON path
    replaces only a split JSON of the same image folder (a rerun of the same conversion), or
    --overwrite: --out-dir may hold the training JSON of other images, or a JSON that is no
    split at all. None of `inputs` (the labels files) is ever replaced."""
    expects = {}
    for path, folder in outputs_and_folders:
        expects[path] = outputs.check_replaceable(path, "output", overwrite,
                                                  lambda p: outputs.is_split_of(p, folder),
                                                  f"a split JSON of the images in {folder}",
                                                  inputs)
    return expects


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
    if "boxed" in s:  # from a labels CSV
        print(f"{s['split']}: {s['kept']} images ({s['boxed']} with a box, the others whole), "
              f"{s['digits']} characters, {s['seconds']:.1f} s -> {s['json']}")
        return
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


def add_safety_flags(ap):
    """--max-pixels and --overwrite, as the other scripts have them."""
    ap.add_argument("--max-pixels", type=int, default=None,
                    help="with --csv, --labels, --labels-from-names: an image (width x height) "
                         "above this is refused, read from its header; None: the other scripts' "
                         "limit (support/images.py MAX_PIXELS)")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace an existing <split>.json even when it is not a split JSON of "
                         "the same images (a rerun of the same conversion always replaces it)")


def build_parser():
    """prepare_data.py's flags."""
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                 formatter_class=_HelpFormatter)
    ap.add_argument("--root", default=None,
                    help="folder holding <split>/digitStruct.mat and the images; "
                         "None means data/svhn, or data/synth with --synthetic")
    ap.add_argument("--splits", nargs="+", default=None,
                    help=f"splits to convert; None means {' '.join(REAL_SPLITS)}, "
                         f"and also test_ood with --synthetic")
    ap.add_argument("--out-dir", default=None,
                    help="where <split>.json go; None means --root (with --csv: the CSV's folder)")
    ap.add_argument("--csv", nargs="+", default=None, metavar="CSV",
                    help="labels CSV(s) of your own images, header name,text[,left,top,width,"
                         "height]; each DIR/NAME.csv becomes DIR/NAME.json. A box is used as "
                         "given (no 30%% growth, which is SVHN's only); no box: the whole image")
    ap.add_argument("--labels", nargs="+", default=None, metavar="GT_TXT",
                    help="gt.txt file(s): one path<TAB>text line per image (deep-text-recognition"
                         ", PaddleOCR), paths relative to the file; DIR/NAME.txt -> DIR/NAME.json")
    ap.add_argument("--labels-from-names", nargs="+", default=None, metavar="DIR",
                    help="folder(s) whose image file names are the texts (LPRNet): KX7204.jpg "
                         "and KX7204_2.jpg read KX7204; DIR -> DIR.json beside it")
    ap.add_argument("--max-len", type=int, default=MAX_LEN,
                    help="with --csv: refuse texts longer than this (0: any length; train.py's "
                         "decoding cap follows the longest training text)")
    ap.add_argument("--synthetic", action="store_true",
                    help="first generate the offline SVHN-format replica with synthetic.py into "
                         "--root (splits of size 0 are skipped), then convert it")
    ap.add_argument("--synthetic-sizes", default=SYNTH_SIZES,
                    help="with --synthetic: images per split, as split=N,split=N")
    ap.add_argument("--seed", type=int, default=0, help="with --synthetic: generator seed")
    ap.add_argument("--workers", type=int, default=2, help="with --synthetic: rendering processes")
    add_safety_flags(ap)
    return ap


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.max_pixels is not None and args.max_pixels < 1:
        ap.error(f"--max-pixels must be >= 1, got {args.max_pixels}")
    if args.csv is not None or args.labels is not None or args.labels_from_names is not None:
        return main_csv(ap, args)
    root = args.root or (SYNTH_ROOT if args.synthetic else SVHN_ROOT)
    out_dir = args.out_dir or root
    splits = list(dict.fromkeys(args.splits or (SYNTH_SPLITS if args.synthetic else REAL_SPLITS)))
    for split in splits:  # a folder name under --root: "../../x" wrote outside it
        if split in ("", ".", "..") or "/" in split or os.sep in split:
            ap.error(f"--splits: {split!r} is not a plain folder name")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0, got {args.seed}")
    try:
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise ValueError(f"--out-dir {out_dir}: exists and is not a folder")
        if args.synthetic:
            sizes = parse_sizes(args.synthetic_sizes, splits)
            splits = [s for s in splits if sizes[s] > 0]
            import synthetic  # only needed here: converting real data must not depend on it
            for split in splits:  # every split checked before any is generated
                synthetic.check_folder(root, split)
        pairs = [(os.path.join(out_dir, f"{s}.json"), os.path.join(root, s)) for s in splits]
        if args.synthetic:
            check_outputs(pairs, args.overwrite)  # before the generation: a JSON may be another's
            for split in splits:
                synthetic.generate_split(root, split, sizes[split], args.seed, args.workers)
        for split in splits:  # fail on a missing split before any (long) conversion
            if not os.path.isfile(os.path.join(root, split, "digitStruct.mat")):
                build_split(root, split, out_dir)  # raises the precise message
        built = [build_split(root, split, out_dir) for split in splits]
        expects = check_outputs(pairs, args.overwrite)
    except (DigitStructError, OSError, ValueError, ImportError) as e:
        sys.exit(f"{PROG}: error: {e}")
    write_all(built, [expects[summary["json"]] for _, summary in built])
    return 0


def write_all(built, expects):
    """Write each (JSON object, summary), everything read and checked, and report it (expects:
    check_outputs's, in the same order); one line and exit on a failure."""
    for (obj, summary), expect in zip(built, expects):
        start = time.time()
        try:
            write_json(summary["json"], obj, expect)
        except LostRace as e:  # another process wrote it meanwhile: the message says so
            sys.exit(f"{PROG}: error: {e}")
        except OSError as e:  # e.g. --out-dir is a file or not writable
            sys.exit(f"{PROG}: error: {summary['json']}: cannot write ({e.strerror or e})")
        summary["seconds"] += time.time() - start
        report(summary)


def main_csv(ap, args):
    """prepare_data.py --csv: check every CSV before writing any JSON."""
    if args.synthetic or args.root:
        ap.error("--csv, --labels and --labels-from-names cannot be combined with --synthetic or "
                 "--root")
    sources = [("csv", p) for p in args.csv or []] + [("gt", p) for p in args.labels or []]
    sources += [("names", p) for p in args.labels_from_names or []]
    if args.max_len < 0:
        ap.error("--max-len must be >= 0 (0: any length)")
    try:
        if args.out_dir and os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
            raise ValueError(f"--out-dir {args.out_dir}: exists and is not a folder")
        for kind, path in sources:
            if os.path.splitext(path)[1].lower() == ".json":  # would be overwritten by its output
                raise ValueError(f"{path}: give the labels file, not a JSON")
        built = [build_csv(path, args.out_dir, args.max_len, kind, args.max_pixels)
                 for kind, path in sources]
        jsons = [os.path.abspath(summary["json"]) for _, summary in built]
        if len(set(jsons)) < len(jsons):
            raise ValueError("two labels files would write the same JSON (same name, same "
                             "folder)")
        folders = [os.path.join(os.path.dirname(p), obj["image_dir"])
                   for p, (obj, _) in zip(jsons, built)]
        expects = check_outputs(zip(jsons, folders), args.overwrite,
                                [path for _, path in sources])
    except (LabelsError, ValueError) as e:
        sys.exit(f"{PROG}: error: {e}")
    write_all(built, [expects[path] for path in jsons])
    return 0


if __name__ == "__main__":
    sys.exit(run_main(PROG, main))
