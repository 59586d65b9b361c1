"""Synthetic text lines of any alphabet, as split JSONs that train.py and eval.py read.

    python synthetic_text.py --out data/text --train 100000 --val 2000 --test-ood 2000 \\
        --alphabet DEFAULT --min-len 1 --max-len 16 --seed 0 --workers 2
    python synthetic_text.py --preview img/text.png
    python synthetic_text.py --list-styles

Writes <out>/<split>/0000000.png ... and <out>/<split>.json in prepare_data.py's split format
({"image_dir": "<split>", "records": [{"name": ..., "text": ...}]}), for
`train.py --train-json <out>/train.json` and `eval.py --json <out>/val.json`. Texts come from
synth.text.sample_text (digits, meter readings, amounts, dates, codes, plates, pseudo-words,
random strings of the alphabet), lines from synth.line.render_line (printed labels and
receipts, plates, 7-segment displays, dot matrix, stamped/engraved/embossed codes,
handwriting). Every image is drawn from its own generator seeded by (seed, split, index), so
the output is byte-identical for any number of workers. The split test_ood draws only held-out
typefaces (synth.textfaces.HELD_OUT_FAMILIES) and, half of the time, held-out style variants
(synth.line.HELD_OUT_VARIANTS); train and val never do.
"""
import argparse
import json
import os
import sys
from multiprocessing import Pool

from tqdm import tqdm

from support.atomic import atomic_open, replacing, save_figure
from synth.line import HELD_OUT_VARIANTS, STYLES, render_line, uncovered, variants
from synth.text import ALPHABETS, parse_alphabet, sample_text
from synth.textfaces import (FONTS_ENV, HELD_OUT_FAMILIES, ROLES, describe, role_faces,
                             user_font_files)
from synthetic import image_rng

OOD_SPLIT = "test_ood"
MARKER = "SYNTHETIC_TEXT"  # in each split folder we write: safe for us to write over


def make_one(job):
    """Render and save image `index` of a split; -> its record."""
    folder, split, seed, index, alphabet, min_len, max_len = job
    rng = image_rng(seed, split, index)
    text = sample_text(rng, alphabet, min_len, max_len)
    img = render_line(rng, text, held_out=split == OOD_SPLIT)
    name = f"{index:07d}.png"
    # no fsync per image: the JSON, written last and synced, is what makes the split usable
    with replacing(os.path.join(folder, name), fsync=False) as tmp:
        img.save(tmp, format="PNG", compress_level=1)
    return {"name": name, "text": text}


def check_out(out, split):
    """FileExistsError unless <out>/<split> is absent, empty or ours (MARKER), and
    <out>/<split>.json absent or describing a folder of ours."""
    folder = os.path.join(out, split)
    ours = os.path.exists(os.path.join(folder, MARKER))
    if os.path.isdir(folder) and os.listdir(folder) and not ours:
        raise FileExistsError(f"{folder}: holds files and was not written by synthetic_text.py "
                              f"(no {MARKER} marker); refusing to write into it")
    json_path = os.path.join(out, f"{split}.json")
    if os.path.exists(json_path) and not ours:
        raise FileExistsError(f"{json_path}: exists and was not written by synthetic_text.py; "
                              "refusing to overwrite")


def check_alphabet(alphabet, held_out):
    """ValueError naming the characters that no typeface or style of the pool draws."""
    missing = uncovered(alphabet, held_out)
    if missing:
        pool = "held-out (test_ood)" if held_out else "training"
        raise ValueError(f"no installed {pool} typeface or style draws {describe(missing)}; "
                         "remove them from --alphabet or give a font that has them (--font FILE)")


def generate_split(out, split, n, alphabet, min_len, max_len, seed=0, workers=2):
    """Write <out>/<split>/NNNNNNN.png and, last, <out>/<split>.json; -> the records."""
    check_alphabet(alphabet, split == OOD_SPLIT)
    check_out(out, split)
    folder = os.path.join(out, split)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, MARKER), "w") as f:
        f.write(f"synthetic_text.py: n={n} seed={seed} lengths={min_len}-{max_len} "
                f"alphabet={alphabet!r}\n")
    json_path = os.path.join(out, f"{split}.json")
    if os.path.exists(json_path):  # an interrupted run must not leave an old index of new images
        os.remove(json_path)
    jobs = [(folder, split, seed, i, alphabet, min_len, max_len) for i in range(n)]
    bar = dict(total=n, desc=f"text {split}", unit="img", disable=None)
    if workers <= 1:
        records = [make_one(j) for j in tqdm(jobs, **bar)]
    else:
        with Pool(workers) as pool:
            records = list(tqdm(pool.imap(make_one, jobs, chunksize=32), **bar))
    with atomic_open(json_path, "w") as f:
        json.dump({"image_dir": split, "records": records}, f)
    return records


def preview(path, seed=0):
    """A contact sheet: every style and variant, training pool then held-out pool, one a row."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [(s, v, False) for s in STYLES for v in variants(s, False)]
    rows += [(s, v, True) for s in STYLES for v in STYLES[s][1]]
    cols = 3
    fig, axes = plt.subplots(len(rows), cols, figsize=(3.2 * cols, 0.75 * len(rows)))
    for r, (style, variant, held) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            rng = image_rng(seed, f"preview-{style}-{variant}-{held}", c)
            text = sample_text(rng, ALPHABETS["DEFAULT"], 1, 12)
            if style == "display7":
                text = f"{rng.integers(0, 10 ** 5)}.{rng.integers(0, 100):02d}"
            meta = {}
            try:
                img = render_line(rng, text, held, style, variant, meta)
            except ValueError:  # a text no face of this pool draws: another, digits only
                text = str(rng.integers(0, 10 ** 6))
                img = render_line(rng, text, held, style, variant, meta)
            ax.imshow(img)
            tag = "OOD " if held else ""
            ax.set_title(f"{text!r}  {tag}{style}/{variant} {meta['family'] or ''}", fontsize=6,
                         color="crimson" if held else "black")
    fig.suptitle("synthetic text lines: training styles, then held-out (test_ood) in red")
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # room for the title
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_figure(fig, path, format="png", dpi=80)
    plt.close(fig)


def list_styles(alphabet):
    """Print the styles, variants and faces of each pool and what they cover of alphabet."""
    for held in (False, True):
        pool = "test_ood (held out)" if held else "train/val"
        print(f"== {pool}")
        for style, (weight, names, role, _) in STYLES.items():
            chosen = [v for v in names if ((style, v) in HELD_OUT_VARIANTS) == held]
            print(f"  {style} (weight {weight}): variants {' '.join(chosen) or '-'}")
            if role:
                families = sorted({fam for fam, _ in role_faces(role, held)})
                print(f"    faces: {' '.join(families) or '-'}")
        missing = uncovered(alphabet, held)
        cover = f"all {len(alphabet)} characters" if not missing else f"not {describe(missing)}"
        print(f"  alphabet coverage: {cover}")
    print("held-out families:", " ".join(sorted(HELD_OUT_FAMILIES)))
    print("held-out variants:", " ".join(f"{s}/{v}" for s, v in sorted(HELD_OUT_VARIANTS)))
    known = {n for names in ROLES.values() for n in names}
    absent = sorted(known - {fam for r in ROLES for h in (0, 1) for fam, _ in role_faces(r, h)})
    if absent:
        print("families not installed here:", " ".join(absent))


def use_fonts(paths):
    """Add font files to SYNTH_FONTS (for this process and the ones it starts); ValueError naming
    a file that is no font."""
    if paths:
        known = [p for p in os.environ.get(FONTS_ENV, "").split(os.pathsep) if p]
        value = os.pathsep.join(known + [os.path.abspath(p) for p in paths])
        user_font_files(value)  # before the environment takes it
        os.environ[FONTS_ENV] = value


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", default="data/text", help="output folder: <split>/ and <split>.json")
    ap.add_argument("--train", type=int, default=10000, help="number of train images")
    ap.add_argument("--val", type=int, default=1000,
                    help="number of val images (the training styles and faces)")
    ap.add_argument("--test-ood", type=int, default=1000,
                    help="number of test_ood images: held-out faces only, held-out variants "
                         "half of the time")
    names = f"{', '.join(ALPHABETS)} (DEFAULT: {ALPHABETS['DEFAULT']!r})"
    ap.add_argument("--alphabet", default="DEFAULT",  # argparse formats help: % must be %%
                    help=f"the characters of the texts, or a name: {names.replace('%', '%%')}")
    ap.add_argument("--min-len", type=int, default=1, help="shortest text, in characters")
    ap.add_argument("--max-len", type=int, default=16, help="longest text, in characters")
    ap.add_argument("--seed", type=int, default=0,
                    help="each image is seeded by (seed, split, index)")
    ap.add_argument("--workers", type=int, default=2, help="rendering processes")
    ap.add_argument("--font", nargs="+", default=[], metavar="FILE",
                    help="your own TrueType/OpenType files (.ttf, .otf, .ttc), drawn in the "
                         "printed, plate, stamped and dot-matrix styles beside the bundled faces: "
                         "for characters those do not draw (Chinese, Cyrillic, ...); sets "
                         f"{FONTS_ENV} for this run (set it yourself for train.py --synth-mix)")
    ap.add_argument("--preview", metavar="PNG", default=None,
                    help="only save a contact sheet of every style (training and held-out rows)")
    ap.add_argument("--list-styles", action="store_true",
                    help="only print the styles and faces of each pool and the alphabet's coverage")
    args = ap.parse_args(argv)
    sizes = {"train": args.train, "val": args.val, OOD_SPLIT: args.test_ood}
    if min(sizes.values()) < 0:
        ap.error("--train, --val and --test-ood must be >= 0")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0, got {args.seed}")
    if not 1 <= args.min_len <= args.max_len:
        ap.error(f"need 1 <= --min-len <= --max-len, got {args.min_len} and {args.max_len}")
    try:
        use_fonts(args.font)
        alphabet = parse_alphabet(args.alphabet)
        if args.list_styles:
            list_styles(alphabet)
            return 0
        if args.preview:
            preview(args.preview, args.seed)
            print(f"wrote {args.preview}")
            return 0
        for split, n in sizes.items():  # all checks before the first image
            if n > 0:
                check_alphabet(alphabet, split == OOD_SPLIT)
                check_out(args.out, split)
        for split, n in sizes.items():
            if n > 0:
                generate_split(args.out, split, n, alphabet, args.min_len, args.max_len,
                               args.seed, args.workers)
                print(f"wrote {n} images and {os.path.join(args.out, split)}.json")
    except (OSError, ValueError) as e:
        sys.exit(f"synthetic_text.py: error: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
