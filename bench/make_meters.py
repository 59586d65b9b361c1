"""A labelled set of meter displays: 7-segment readings with a decimal point, as a user's own
photos would arrive (image files + a labels CSV), a stand-in for the meters of issue 31.

    python -m bench.make_meters --out data/meters --train 300 --test 300

writes data/meters/{train,test}/*.png and data/meters/{train,test}.csv (name,text). Readings
hold 2-8 digits and one point ("0064.40", "12.5"), drawn by the text generator's 7-segment
style (synth/displays.py: LCD or LED cells, dim unlit segments, glare, the camera's blur and
noise). Test photos take the held-out VFD variant half of the time. The same renderer drew the
displays weights/reader.pt trained on, so this set shows whether fine-tuning's plumbing reads
decimal points, not how real meters read. Deterministic per --seed.
"""
import argparse
import csv
import os
import sys

import numpy as np

from synth.line import render_line
from synth.text import meter_reading

DIGITS = (2, 8)  # digits of a reading; the point makes it 3-9 characters


def write_split(out, split, n, seed):
    """n photos and split.csv; every other test photo in a held-out variant."""
    folder = os.path.join(out, split)
    os.makedirs(folder)
    rows = [["name", "text"]]
    for i in range(n):
        rng = np.random.default_rng([seed, split == "test", i])
        text = meter_reading(rng, "0123456789.", *DIGITS)
        held_out = split == "test" and i % 2 == 0
        name = f"{split}/{i:04d}.png"
        render_line(rng, text, held_out=held_out, style="display7").save(os.path.join(out, name))
        rows.append([name, text])
    with open(os.path.join(out, f"{split}.csv"), "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="data/meters", help="a new folder for the images and CSVs")
    p.add_argument("--train", type=int, default=300, help="training photos")
    p.add_argument("--test", type=int, default=300, help="test photos")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    args = p.parse_args(argv)
    if os.path.exists(args.out) and os.listdir(args.out):
        p.error(f"{args.out}: not empty; give a new --out (nothing there is replaced)")
    for split, n in (("train", args.train), ("test", args.test)):
        write_split(args.out, split, n, args.seed)
    print(f"wrote {args.train} + {args.test} meter photos and train.csv, test.csv to {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
