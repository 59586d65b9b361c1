"""A labelled set of a kind the SVHN replica never draws: lettered licence plates, as a user's
own photos would arrive (image files + a labels CSV), for README's "Your own data" example.

    python -m bench.make_plates --out data/plates --train 300 --test 200

writes data/plates/{train,test}/*.png and data/plates/{train,test}.csv (name,text,left,top,
width,height; about one row in five has no box, so the model sees that whole photo). Plates read
two or three letters then three or four digits ("KX7204", "BRT512") in black on white or yellow,
with a border, tilted, on a cluttered background, blurred and noisy. Deterministic per --seed.
"""
import argparse
import csv
import os
import sys

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # no I, O, Q: plates avoid them (they look like 1, 0)
FACES = ["DejaVuSans-Bold.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSerif-Bold.ttf",
         "DejaVuSansMono.ttf"]


def plate_text(rng):
    letters = "".join(rng.choice(list(LETTERS), size=int(rng.integers(2, 4))))
    digits = "".join(str(d) for d in rng.integers(0, 10, size=int(rng.integers(3, 5))))
    return letters + digits


def draw_plate(rng, text):
    """One photo -> (PIL image, [left, top, width, height] of the plate in it)."""
    face = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", FACES[rng.integers(len(FACES))])
    font = ImageFont.truetype(face, int(rng.integers(22, 34)))
    left, top, right, bottom = font.getbbox(text)
    pad = int(rng.integers(4, 9))
    pw, ph = right - left + 2 * pad, bottom - top + 2 * pad
    paper = (255, 255, 255) if rng.random() < 0.6 else (250, 210, 40)
    plate = Image.new("RGB", (pw, ph), paper)
    d = ImageDraw.Draw(plate)
    d.rectangle([0, 0, pw - 1, ph - 1], outline=(20, 20, 20), width=2)
    ink = tuple(int(v) for v in rng.integers(0, 50, 3))
    d.text((pad - left, pad - top), text, font=font, fill=ink)
    angle = float(rng.uniform(-6, 6))
    plate = plate.rotate(angle, expand=True, resample=Image.BICUBIC)
    shape = Image.new("L", (pw, ph), 255).rotate(angle, expand=True, resample=Image.BICUBIC)
    W = plate.size[0] + int(rng.integers(10, 80))
    H = plate.size[1] + int(rng.integers(10, 50))
    bg = rng.integers(40, 200, 3)
    noise = rng.normal(0, 30, (H, W, 3)) + bg
    photo = Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))
    photo = photo.filter(ImageFilter.GaussianBlur(3))
    x = int(rng.integers(0, W - plate.size[0] + 1))
    y = int(rng.integers(0, H - plate.size[1] + 1))
    photo.paste(plate, (x, y), shape)
    photo = photo.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.2))))
    a = np.asarray(photo).astype(np.float64) + rng.normal(0, rng.uniform(2, 12), (H, W, 3))
    photo = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    return photo, [x, y, plate.size[0], plate.size[1]]


def write_split(out, split, n, rng):
    folder = os.path.join(out, split)
    os.makedirs(folder, exist_ok=True)
    rows = [["name", "text", "left", "top", "width", "height"]]
    for i in range(n):
        text = plate_text(rng)
        photo, box = draw_plate(rng, text)
        name = f"{split}/{i:04d}.png"
        photo.save(os.path.join(out, name))
        if rng.random() < 0.2:
            box = ["", "", "", ""]  # no box: the whole photo
        rows.append([name, text, *box])
    with open(os.path.join(out, f"{split}.csv"), "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="data/plates", help="folder for the images and the CSVs")
    p.add_argument("--train", type=int, default=300, help="training photos")
    p.add_argument("--test", type=int, default=200, help="test photos")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    for split, n in (("train", args.train), ("test", args.test)):
        if n > 0:
            write_split(args.out, split, n, rng)
    print(f"wrote {args.train} + {args.test} plates and train.csv, test.csv to {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
