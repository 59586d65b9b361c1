"""Labelled sets of kinds a user brings, as their own photos would arrive (image files + a labels
CSV): stand-ins for the meter displays and handwritten amounts of issue 31.

    python -m bench.make_lines --kind meters --out data/meters --train 300 --test 300
    python -m bench.make_lines --kind amounts --out data/amounts

write OUT/{train,test}/*.png and OUT/{train,test}.csv (name,text), drawn by the text generator
(synth/) and its camera:
- meters: 7-segment readings of 2-8 digits and one point ("0064.40", "12.5"): LCD or LED cells
  with dim unlit segments and glare; half of the test photos take the held-out VFD variant.
- amounts: handwritten amounts ("1,234.56", "12.00", "$8.99") on plain, ruled or boxed paper;
  the test photos are written in the two handwriting typefaces that weights/reader.pt never saw
  (and half of them on its held-out squared paper).
The same renderer drew the lines weights/reader.pt trained on, so these sets show whether
fine-tuning reads such text (a decimal point, a new hand), not how real photos of it read.
Deterministic per --seed.
"""
import argparse
import csv
import os
import sys

import numpy as np

from synth.line import render_line
from synth.text import amount, meter_reading

# kind: (text drawer, its lengths, style, whether every test photo is held out or every other)
KINDS = {"meters": (meter_reading, (2, 8), "display7", False),
         "amounts": (amount, (1, 12), "handwriting", True)}


def write_split(out, kind, split, n, seed):
    """n photos of `kind` and split.csv; test photos in held-out faces or variants."""
    draw, lengths, style, all_held_out = KINDS[kind]
    os.makedirs(os.path.join(out, split))
    rows = [["name", "text"]]
    for i in range(n):
        rng = np.random.default_rng([seed, split == "test", i])
        text = draw(rng, "", *lengths)
        held_out = split == "test" and (all_held_out or i % 2 == 0)
        name = f"{split}/{i:04d}.png"
        render_line(rng, text, held_out=held_out, style=style).save(os.path.join(out, name))
        rows.append([name, text])
    with open(os.path.join(out, f"{split}.csv"), "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--kind", choices=sorted(KINDS), required=True, help="what the photos show")
    p.add_argument("--out", required=True, help="a new folder for the images and CSVs")
    p.add_argument("--train", type=int, default=300, help="training photos")
    p.add_argument("--test", type=int, default=300, help="test photos")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    args = p.parse_args(argv)
    if os.path.exists(args.out) and os.listdir(args.out):
        p.error(f"{args.out}: not empty; give a new --out (nothing there is replaced)")
    for split, n in (("train", args.train), ("test", args.test)):
        write_split(args.out, args.kind, split, n, args.seed)
    print(f"wrote {args.train} + {args.test} photos of {args.kind} and train.csv, test.csv to "
          f"{args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
