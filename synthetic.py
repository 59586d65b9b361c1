"""Offline SVHN format-1 replica: house numbers in many typefaces and materials, with boxes.

    python synthetic.py --root data/synth --train 10000 --extra 0 --test 2000 --test-ood 2000
    python synthetic.py --preview img/synthetic.png

Writes <root>/<split>/1.png ... N.png and <root>/<split>/digitStruct.mat (the real MATLAB v7.3
layout, through digitstruct_write.write_digitstruct), so prepare_data.py converts it with the
same code as the official files. The sampling statistics follow the official annotations
(digits per image, image and box sizes, digit frequencies, rare boxes past the image edge), as
written out in synth.scene.STATS. Every image is drawn from its own generator seeded by
(seed, split, index): byte-identical output for any number of workers.

Glyphs come from TrueType families (synth/fonts.py: matplotlib's own fonts and the openly
licensed fontpkg-* packages of requirements.txt, where installed) and from procedurally drawn
digit families (synth/digits.py: stroke, angular, brush, outline, 7-segment, stencil, dot
matrix) with the glyph variants that matter (1 with or without flag and foot, 7 with or without
bar, open or closed 4, straight or curved tails on 6 and 9). Materials (synth/surfaces.py):
painted, plate, embossed, metal, engraved, tiles. synth/layout.py lays out and warps a number's
glyphs; synth/scene.py renders one image. This file writes the splits, draws the contact sheet
and is the command line.
The split `test_ood` is drawn only from families and materials that no other split ever uses
(HELD_OUT), so accuracy on it measures reading typefaces never seen in training.
"""
import argparse
import math
import os
import sys
import zlib
from multiprocessing import Pool

import numpy as np
from tqdm import tqdm

from support import outputs
from support.atomic import ANY, replacing, save_figure
# Also re-exported: tests and callers use the generator's parts as synthetic.<name>.
from synth.digits import PROC_FAMILIES, proc_glyph, proc_style  # noqa: F401
from synth.fonts import fonts, glyph  # noqa: F401
from synth.scene import HELD_OUT, MATERIALS, OOD_SPLIT, clutter_faces, families, render
from support.script import run_main


def image_rng(seed, split, index):
    """The generator of one image: independent of worker count and of the other splits."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(split.encode()), index]))


def _make_one(job):
    folder, split, seed, index, difficulty, long_boost = job
    img, digits = render(image_rng(seed, split, index), split, difficulty, long_boost)
    name = f"{index + 1}.png"
    # No fsync per image (thousands of small files): the digitStruct.mat, written last and
    # synced, is what makes the folder a replica; a rerun regenerates the images.
    with replacing(os.path.join(folder, name), fsync=False) as tmp:
        img.save(tmp, format="PNG", compress_level=1)  # 3x faster than 6, files ~equal
    return name, digits


def check_folder(root, split):
    """FileExistsError unless <root>/<split> is absent, empty or a replica of ours (its SYNTHETIC
    marker): images 1.png..n.png are written there, over a user's files of those names."""
    folder = os.path.join(root, split)
    mat = os.path.join(folder, "digitStruct.mat")
    if os.path.exists(os.path.join(folder, "SYNTHETIC")):
        return
    if os.path.exists(mat):
        raise FileExistsError(f"{mat}: exists and is not a synthetic replica; "
                              "refusing to overwrite")
    if os.path.isdir(folder) and os.listdir(folder):
        raise FileExistsError(f"{folder}: holds files and is not a synthetic replica (no "
                              f"SYNTHETIC marker); refusing to write images into it")


def generate_split(root, split, n, seed=0, workers=2, difficulty=1.0, long_boost=1.0):
    """Write <root>/<split>/1.png..n.png and, last, its digitStruct.mat; return the entries."""
    from formats.digitstruct_write import write_digitstruct
    folder = os.path.join(root, split)
    mat = os.path.join(folder, "digitStruct.mat")
    marker = os.path.join(folder, "SYNTHETIC")
    check_folder(root, split)
    os.makedirs(folder, exist_ok=True)
    with open(marker, "w") as f:  # marks the folder as ours: safe to regenerate
        f.write(f"synthetic.py: n={n} seed={seed} difficulty={difficulty} "
                f"long_boost={long_boost}\n")
    if os.path.exists(mat):  # an interrupted run must not leave an old .mat describing new images
        os.remove(mat)
    clutter_faces()  # find and check the fonts once, before the workers fork
    jobs = [(folder, split, seed, i, difficulty, long_boost) for i in range(n)]
    bar = dict(total=n, desc=f"synthetic {split}", unit="img", disable=None)
    if workers <= 1:
        entries = [_make_one(j) for j in tqdm(jobs, **bar)]
    else:
        with Pool(workers) as pool:
            entries = list(tqdm(pool.imap(_make_one, jobs, chunksize=32), **bar))
    write_digitstruct(mat, entries)
    return entries


def preview(path, n=40, seed=0, split="train", difficulty=1.0, long_boost=1.0, ood_rows=1,
            expect=ANY):
    """Contact sheet: samples with boxes, labels, family and material, each above its 64x64
    model crop; the last ood_rows rows come from the held-out split test_ood."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    # torch and torchvision: only the figure needs them, not the generator
    from support.crops import resize_region
    from support.images import crop_box, crop_image
    cols, rows = 8, (n + 7) // 8
    fig, axes = plt.subplots(2 * rows, cols, figsize=(2.2 * cols, 2.7 * rows))
    for i in range(rows * cols):
        top, bottom = axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]
        top.axis("off")
        bottom.axis("off")
        if i >= n:
            continue
        held = i // cols >= rows - ood_rows
        name = OOD_SPLIT if held else split
        meta = {}
        img, digits = render(image_rng(seed, name, i), name, difficulty, long_boost, meta=meta)
        top.imshow(img)
        for _, left, t, w, h in digits:
            top.add_patch(Rectangle((left - 0.5, t - 0.5), w, h, fill=False, ec="lime", lw=0.8))
        text = "".join(str(int(lab) % 10) for lab, *_ in digits)
        tag = "OOD " if held else ""
        top.set_title(f"{text}  {img.size[0]}x{img.size[1]}\n{tag}{meta['family']}, "
                      f"{meta['material']}", fontsize=7, color="crimson" if held else "black")
        # The region the model sees, through crops.py's own crop and resize (not a copy of them)
        boxes = [box for _, *box in digits]
        region = crop_image(img, crop_box(boxes))
        bottom.imshow(resize_region(region, 64))
    fig.suptitle(f"synthetic SVHN ({split}, last {ood_rows} row(s) {OOD_SPLIT}, difficulty "
                 f"{difficulty}): images with boxes, and the 64x64 crops a model sees")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_figure(fig, path, expect=expect, format="png", dpi=80)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--root", default="data/synth", help="output folder; one subfolder per split")
    ap.add_argument("--train", type=int, default=10000, help="number of train images")
    ap.add_argument("--extra", type=int, default=0,
                    help="number of extra images (train statistics)")
    ap.add_argument("--test", type=int, default=2000, help="number of test images")
    ap.add_argument("--test-ood", type=int, default=0,
                    help="number of test_ood images: test statistics, held-out families only")
    ap.add_argument("--seed", type=int, default=0,
                    help="each image is seeded by (seed, split, index)")
    ap.add_argument("--workers", type=int, default=2, help="rendering processes")
    ap.add_argument("--difficulty", type=float, default=1.0,
                    help="nuisance strength: 0 clean printed digits, 1 SVHN-like, >1 harder")
    ap.add_argument("--long-boost", type=float, default=1.0,
                    help="multiplies the (tiny, official) rates of 5- and 6-digit numbers")
    ap.add_argument("--preview", metavar="PNG", default=None,
                    help="only save a contact sheet of 40 samples (with boxes and crops)")
    ap.add_argument("--preview-split", default="train", help="statistics of the contact sheet")
    ap.add_argument("--overwrite", action="store_true",
                    help="let --preview replace a file that is not a figure of ours")
    ap.add_argument("--list-families", action="store_true",
                    help="only print the glyph families of training and of test_ood")
    args = ap.parse_args(argv)
    sizes = {"train": args.train, "extra": args.extra, "test": args.test,
             OOD_SPLIT: args.test_ood}
    knobs = (args.difficulty, args.long_boost)
    if min(sizes.values()) < 0 or not all(math.isfinite(v) and v >= 0 for v in knobs):
        ap.error("sizes, --difficulty and --long-boost must be finite numbers >= 0")
    if args.seed < 0:  # numpy's own refusal would not name the flag
        ap.error(f"--seed must be >= 0, got {args.seed}")
    try:
        if args.list_families:
            print("training families:", " ".join(families(False)))
            print(f"{OOD_SPLIT} families:", " ".join(families(True)))
            print("held-out materials:", " ".join(m for m in MATERIALS if m in HELD_OUT))
            return
        if args.preview:  # a figure of ours is redrawn; a user's file of that name is not replaced
            expect = outputs.check_replaceable(args.preview, "--preview", args.overwrite,
                                               outputs.is_own_figure,
                                               "a figure this repository drew")
            preview(args.preview, seed=args.seed, split=args.preview_split,
                    difficulty=args.difficulty, long_boost=args.long_boost, expect=expect)
            print(f"wrote {args.preview}")
            return
        for split, n in sizes.items():
            if n > 0:
                generate_split(args.root, split, n, args.seed, args.workers, args.difficulty,
                               args.long_boost)
                print(f"wrote {n} images and digitStruct.mat to {os.path.join(args.root, split)}")
    except (OSError, ValueError, RuntimeError) as e:
        sys.exit(f"synthetic.py: error: {e}")


if __name__ == "__main__":
    run_main("synthetic.py", main)
