"""Offline SVHN format-1 replica: printed house numbers with measured digit boxes.

    python synthetic.py --root data/synth --train 10000 --extra 0 --test 2000 --workers 2
    python synthetic.py --preview img/synthetic.png

Writes <root>/<split>/1.png ... N.png and <root>/<split>/digitStruct.mat (the real MATLAB v7.3
layout, through digitstruct_write.write_digitstruct), so prepare_data.py converts it with the
same code as the official files. The sampling statistics are those of the official train and test
annotations (digits per image, image and box sizes, digit frequencies, rare boxes past the image
edge), written out in STATS and below. Every image is drawn from its
own generator seeded by (seed, split, index): byte-identical output for any number of workers.
"""
import argparse
import io
import os
import sys
import zlib
from functools import lru_cache
from multiprocessing import Pool

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from tqdm import tqdm

from atomic import replacing, save_figure

# Statistics counted on the official annotations (train: 33,402 images, test: 13,068; box height
# as median, 5th and 95th percentile in pixels). "extra" follows train.
# digits per image: counts for 1..6 digits. Sizes: log-normal with a different spread on each
# side of the median, fitted to the median and the 5th/95th percentiles.
STATS = {
    "train": dict(counts=[5137, 18130, 8691, 1434, 9, 1], box_h=(29, 14, 68),
                  ctx_h=(1.6, 1.3, 2.2), ctx_w=(2.3, 1.1, 5.5)),
    "test": dict(counts=[2483, 8356, 2081, 146, 2, 0.5], box_h=(24, 15, 54),
                 ctx_h=(2.0, 1.4, 4.4), ctx_w=(3.8, 1.9, 11.0)),
}
# Leading digit (never 0, like house numbers): Benford-like; later digits: slowly falling from
# 1 to 9, 0 between. Together: 1 most common, then falling to 9, and 0 about as common as 9.
LEAD_P = np.log10(1 + 1 / np.arange(1, 10))  # sums to 1
REST_P = np.array([1.2, 1.25, 1.15, 1.08, 1.02, 0.97, 0.92, 0.87, 0.82, 0.78])
REST_P = REST_P / REST_P.sum()
# Per-image rates of boxes leaving the image (train: 29 negative, 158 past-the-edge boxes).
EDGE_P = {"left": 0.0004, "top": 0.0002, "right": 0.0025, "bottom": 0.0008}
CLUTTER_CHARS = "ABCDEFGHKLMNPRSTUWabdehnrst0123456789#-"
LUMA = np.array([0.299, 0.587, 0.114])
GLYPH_REF = 96  # font size at which glyph masks are rendered once and cached
_font = lru_cache(maxsize=None)(ImageFont.truetype)


def _lognormal(rng, median, p5, p95):
    """Split log-normal draw with the given median and 5th/95th percentiles."""
    z = rng.standard_normal()
    lo, hi = np.log(median / p5) / 1.645, np.log(p95 / median) / 1.645
    return median * np.exp(z * (hi if z > 0 else lo))


@lru_cache(maxsize=None)
def fonts():
    """Paths of the matplotlib fonts whose digits render as ten distinct lining glyphs."""
    import matplotlib
    folder = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    good = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".ttf"):
            continue
        path = os.path.join(folder, name)
        masks = [_glyph(path, ch) for ch in "0123456789"]
        heights = [m.size[1] for m in masks if m is not None]
        if len(heights) == 10 and len({m.tobytes() for m in masks}) == 10:
            good += [path] if max(heights) <= 1.12 * min(heights) else []  # no old-style figures
    if not good:
        raise RuntimeError("synthetic.py: no usable digit font found in " + folder)
    return tuple(good)


@lru_cache(maxsize=4096)
def _glyph(path, ch):
    """Ink-cropped 'L' mask of one character at the reference size, with its top offset."""
    im = Image.new("L", (GLYPH_REF * 2, GLYPH_REF * 2))
    ImageDraw.Draw(im).text((GLYPH_REF // 4, GLYPH_REF // 4), ch, font=_font(path, GLYPH_REF), fill=255)
    box = im.getbbox()
    if box is None:
        return None
    glyph = im.crop(box)
    glyph.info["top"] = box[1]  # offset from the drawing origin keeps baselines aligned
    return glyph


def _sample_digits(rng, split, long_boost):
    counts = np.array(STATS["test" if split == "test" else "train"]["counts"], dtype=float)
    counts[4:] *= long_boost
    k = 1 + rng.choice(6, p=counts / counts.sum())
    return [1 + int(rng.choice(9, p=LEAD_P))] + [int(d) for d in rng.choice(10, size=k - 1, p=REST_P)]


def _perspective_coeffs(dst, src):
    """Coefficients for Image.transform(PERSPECTIVE) mapping output points dst to input src."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    return np.linalg.solve(np.array(rows, float), np.array(rhs, float)).tolist()


def _layout_number(rng, digits, font, ink_h, d):
    """Digit masks laid out and warped on one local canvas; returns the masks and ink boxes."""
    ref = [_glyph(font, str(x)) for x in digits]
    scale = ink_h / max(g.size[1] for g in ref)
    aspect = rng.uniform(0.45, 0.9)  # condensed to normal lettering (SVHN boxes: w ~ h / 2)
    weight = rng.random() < 0.2 * d and "Bold" not in font and "cmb" not in font  # heavier stroke
    track = rng.uniform(0.04, 0.32) * ink_h
    pad = int(ink_h) + 4
    pieces, x = [], pad
    for g in ref:
        g = g.filter(ImageFilter.MaxFilter(5)) if weight else g
        w, h = max(1, round(g.size[0] * scale * aspect)), max(1, round(g.size[1] * scale))
        y = pad + round(g.info["top"] * scale - min(r.info["top"] for r in ref) * scale
                        + rng.normal(0, 0.03 * d) * ink_h)
        pieces.append((g.resize((w, h), Image.BILINEAR), x, y))
        x += w + max(1, round(track * rng.uniform(1 - 0.5 * min(d, 1.5), 1 + 0.5 * d)))
    size = (x + pad, round(ink_h) + 2 * pad)
    # One warp for the whole number: rotation, shear and a mild keystone around its centre.
    ang, shear = np.deg2rad(rng.normal(0, 4 * d)), rng.normal(0, 0.12 * d)
    corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    cx, cy, hw, hh = size[0] / 2, size[1] / 2, (x - pad) / 2, ink_h / 2
    src = [(cx + sx * hw, cy + sy * hh) for sx, sy in corners]
    dst = []
    for sx, sy in corners:
        px, py = sx * hw + shear * sy * hh, sy * hh * (1 + sx * rng.normal(0, 0.04 * d))
        dst.append((cx + px * np.cos(ang) - py * np.sin(ang), cy + px * np.sin(ang) + py * np.cos(ang)))
    coeffs = _perspective_coeffs(dst, src)
    masks, boxes = [], []
    for g, gx, gy in pieces:
        layer = Image.new("L", size)
        layer.paste(g, (gx, gy))
        if d > 0:
            layer = layer.transform(size, Image.PERSPECTIVE, coeffs, Image.BILINEAR)
        masks.append(layer)
        boxes.append(layer.point(lambda v: 255 if v > 60 else 0).getbbox() or layer.getbbox())
    return masks, boxes


def _colour(rng, lum=None):
    """A random RGB colour (0..255 floats), optionally with a given luminance."""
    sat = rng.choice([0.0, 0.15, 0.35, 0.7], p=[0.25, 0.35, 0.25, 0.15])  # walls are mostly dull
    c = np.clip(rng.uniform(0, 255) + sat * (rng.uniform(0, 255, 3) - 128), 0, 255)
    if lum is not None:  # move to that luminance exactly, desaturating instead of clipping
        lum = float(np.clip(lum, 0, 255))
        dev = c - c @ LUMA
        room = np.where(dev > 0, (255 - lum) / np.maximum(dev, 1e-6), lum / np.maximum(-dev, 1e-6))
        c = lum + min(1.0, float(room.min())) * dev
    return c


def _background(rng, w, h, d):
    """Wall-like background: base colour, gradient, low-frequency texture and grain."""
    d = min(d, 1.5)  # stronger walls would hide the digits rather than make reading harder
    base = _colour(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = np.deg2rad(rng.uniform(0, 360))
    grad = ((xx * np.cos(t) + yy * np.sin(t)) / max(w, h))[..., None] * rng.uniform(-60, 60) * d
    gw, gh = rng.integers(2, 9, size=2)
    tex = np.asarray(Image.fromarray(rng.normal(0, 1, (gh, gw)).astype(np.float32))
                     .resize((w, h), Image.BICUBIC))[..., None] * rng.uniform(0, 30) * d
    return base + grad + tex + rng.standard_normal((h, w, 1), dtype=np.float32) * (4 * d)


def _stamp(img, mask, colour, x, y):
    """Alpha-blend a colour through an 'L' mask placed at (x, y), clipped to the image."""
    m = np.asarray(mask, np.float32) / 255.0
    H, W = img.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + m.shape[1], W), min(y + m.shape[0], H)
    if x1 <= x0 or y1 <= y0:
        return
    a = m[y0 - y:y1 - y, x0 - x:x1 - x, None]
    img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + np.asarray(colour, np.float32) * a


def _clutter(rng, img, union, ink_h, d, font_list):
    """Neighbouring characters, frame edges and shapes beside the number (never on it)."""
    H, W = img.shape[:2]
    x0, y0, x1, y1 = union
    for _ in range(rng.poisson(1.2 * d)):
        side = rng.choice([-1, 1])
        gap = rng.uniform(0.25, 1.2) * ink_h
        kind, colour = rng.random(), _colour(rng)
        if kind < 0.55:  # a neighbouring character, often cut by the image edge
            g = _glyph(font_list[rng.integers(len(font_list))], str(rng.choice(list(CLUTTER_CHARS))))
            s = ink_h * rng.uniform(0.6, 1.3) / g.size[1]
            g = g.resize((max(1, round(g.size[0] * s)), max(1, round(g.size[1] * s))), Image.BILINEAR)
            gx = x1 + gap if side > 0 else x0 - gap - g.size[0]
            _stamp(img, g, colour, int(gx), int(y0 + rng.normal(0, 0.3) * ink_h))
        elif kind < 0.85:  # a vertical edge: door frame, wall corner, pipe
            width = rng.uniform(2, 0.6 * W)
            xa = int(x1 + gap) if side > 0 else int(x0 - gap - width)
            img[:, max(xa, 0):max(min(int(xa + width), W), 0)] = colour
        else:  # a horizontal rail or line above or below the number
            thick = int(rng.uniform(1, 0.15 * H + 2))
            ya = int(y0 - gap - thick) if side > 0 else int(y1 + gap)
            img[max(ya, 0):max(ya + thick, 0)] = colour


def render(rng, split="train", difficulty=1.0, long_boost=1.0, digits=None, edge=None):
    """One synthetic house number: (PIL RGB image, [[label 1..10, left, top, width, height]])."""
    d = float(difficulty)
    st = STATS["test" if split == "test" else "train"]
    digits = list(digits) if digits is not None else _sample_digits(rng, split, long_boost)
    font_list = fonts()
    font = font_list[rng.integers(len(font_list))]
    box_h = float(np.clip(_lognormal(rng, *st["box_h"]), 9, 400))
    mt, mb = rng.uniform(0, 0.08, 2)
    ink_h = 0.93 * box_h / (1 + mt + mb)  # warps and rounding add the rest
    masks, inks = _layout_number(rng, digits, font, ink_h, d)
    # SVHN boxes: each encloses its glyph with a small annotator margin; one shared top/height.
    top, bottom = min(b[1] for b in inks) - mt * ink_h, max(b[3] for b in inks) + mb * ink_h
    side = rng.uniform(0, 0.06, (len(inks), 2)) * ink_h
    boxes = [[int(np.floor(b[0] - ml)), int(np.floor(top)), int(np.ceil(b[2] + mr)),
              int(np.ceil(bottom))] for b, (ml, mr) in zip(inks, side)]
    ux0, uy0 = min(b[0] for b in boxes), boxes[0][1]
    ux1, uy1 = max(b[2] for b in boxes), boxes[0][3]
    bw, bh = ux1 - ux0, uy1 - uy0
    # Image size: the number plus context, as in the official crops (almost always landscape).
    H = int(max(bh + 2, min(520, round(bh * _lognormal(rng, *st["ctx_h"])))))  # official max ~500
    W = int(max(bw + 2, min(1100, round(bw + bh * _lognormal(rng, *st["ctx_w"]))),
                round(H * rng.uniform(1.05, 1.3))))
    ox = ux0 - int(round((W - bw) * np.clip(rng.normal(0.5, 0.12), 0, 1)))
    oy = uy0 - int(round((H - bh) * np.clip(rng.normal(0.5, 0.12), 0, 1)))
    if edge is None:  # the official files hold a few boxes past the image edge
        edge = next((e for e, p in EDGE_P.items() if rng.random() < p), None)
    shift = int(rng.integers(1, 3))  # within the box margin: the ink itself stays in the image
    ox = {"left": ux0 + shift, "right": ux1 - W - shift}.get(edge, ox)
    oy = {"top": uy0 + shift, "bottom": uy1 - H - shift}.get(edge, oy)
    union = (ux0 - ox, uy0 - oy, ux1 - ox, uy1 - oy)
    img = _background(rng, W, H, d)
    # Optional plaque behind the number, sometimes with a border line.
    if rng.random() < 0.35:
        grow = rng.uniform(0.15, 0.6, 4) * bh * [-1, -1, 1, 1]
        px0, py0, px1, py1 = (np.array(union) + grow).astype(int).tolist()
        img[max(py0, 0):max(py1, 0), max(px0, 0):max(px1, 0)] = _colour(rng)
        if rng.random() < 0.4:
            plaque = Image.new("L", (W, H))
            ImageDraw.Draw(plaque).rectangle([px0 + 2, py0 + 2, px1 - 3, py1 - 3], outline=255,
                                             width=max(1, int(bh / 14)))
            _stamp(img, plaque, _colour(rng), 0, 0)
    else:
        _clutter(rng, img, union, ink_h, d, font_list)
    # Digit colour: light on dark or dark on light; at full difficulty some are low contrast.
    bg_lum = float(img[max(union[1], 0):union[3], max(union[0], 0):union[2]].mean(axis=(0, 1))
                   @ LUMA) if bh > 0 else 128.0
    contrast = rng.uniform(60, 100) if rng.random() < 0.2 * d else rng.uniform(100, 200)
    up = bg_lum < 110 or (bg_lum < 150 and rng.random() < 0.5)
    lum = bg_lum + contrast if up else bg_lum - contrast
    if not 0 <= lum <= 255:  # not reachable on this side: go as far as the other side allows
        lum = 255.0 if 255 - bg_lum > bg_lum else 0.0
    fg = _colour(rng, np.clip(lum, 0, 255))
    ink = Image.fromarray(np.max([np.asarray(m) for m in masks], axis=0))  # all digits, one layer
    if rng.random() < 0.25 * d:  # embossed / shadowed numerals
        sdx, sdy = rng.integers(-2, 3, 2) * max(1, int(bh / 25))
        _stamp(img, ink, fg * 0.35, -ox + int(sdx), -oy + int(sdy))
    _stamp(img, ink, fg, -ox, -oy)
    # Lighting: a hard shadow edge across part of the image, then global brightness.
    if rng.random() < 0.2 * d:
        yy, xx = np.mgrid[0:H, 0:W]
        t, cx, cy = rng.uniform(0, 2 * np.pi), W * rng.random(), H * rng.random()
        shade = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t) > 0
        img[shade] *= rng.uniform(0.6, 0.85)
    out = _camera(rng, Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB"), bh, d)
    return out, [[float(10 if x == 0 else x), float(b[0] - ox), float(b[1] - oy),
                  float(b[2] - b[0]), float(b[3] - b[1])] for x, b in zip(digits, boxes)]


def _camera(rng, out, bh, d):
    """Defocus, low resolution, sensor noise, compression. These saturate above difficulty 1.25:
    past that they erase digits instead of making them harder to read."""
    dc, (W, H) = min(d, 1.25), out.size
    sigma = rng.uniform(0, 0.03 * dc) * bh + rng.uniform(0, 0.4 * dc)
    if sigma > 0.2:
        out = out.filter(ImageFilter.GaussianBlur(sigma))
    f = rng.uniform(1, 1 + 1.2 * dc)
    if bh / f >= 14 and f > 1.2:
        small = (max(1, round(W / f)), max(1, round(H / f)))
        out = out.resize(small, Image.BILINEAR).resize((W, H), Image.BILINEAR)
    if d > 0:
        noise = rng.standard_normal((H, W, 1), dtype=np.float32) * rng.uniform(0, 8 * dc)
        out = Image.fromarray(np.clip(np.asarray(out, np.float32) + noise, 0, 255).astype(np.uint8))
    if rng.random() < 0.3 * dc and bh >= 18:  # tiny images would turn to mush
        out.save(buf := io.BytesIO(), "JPEG", quality=int(rng.integers(40, 90)))
        out = Image.open(buf).convert("RGB")
    return out


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


def generate_split(root, split, n, seed=0, workers=2, difficulty=1.0, long_boost=1.0):
    """Write <root>/<split>/1.png..n.png and, last, its digitStruct.mat; return the entries."""
    from digitstruct_write import write_digitstruct
    folder = os.path.join(root, split)
    mat = os.path.join(folder, "digitStruct.mat")
    marker = os.path.join(folder, "SYNTHETIC")
    if os.path.exists(mat) and not os.path.exists(marker):
        raise FileExistsError(f"{mat}: exists and is not a synthetic replica; refusing to overwrite")
    os.makedirs(folder, exist_ok=True)
    with open(marker, "w") as f:  # marks the folder as ours: safe to regenerate
        f.write(f"synthetic.py: n={n} seed={seed} difficulty={difficulty} long_boost={long_boost}\n")
    if os.path.exists(mat):  # an interrupted run must not leave an old .mat describing new images
        os.remove(mat)
    jobs = [(folder, split, seed, i, difficulty, long_boost) for i in range(n)]
    bar = dict(total=n, desc=f"synthetic {split}", unit="img", disable=None)
    if workers <= 1:
        entries = [_make_one(j) for j in tqdm(jobs, **bar)]
    else:
        with Pool(workers) as pool:
            entries = list(tqdm(pool.imap(_make_one, jobs, chunksize=32), **bar))
    write_digitstruct(mat, entries)
    return entries


def preview(path, n=32, seed=0, split="train", difficulty=1.0, long_boost=1.0):
    """Contact sheet: n samples with boxes and labels, each above its 64x64 model crop."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    cols, rows = 8, (n + 7) // 8
    fig, axes = plt.subplots(2 * rows, cols, figsize=(2.2 * cols, 2.6 * rows))
    for i in range(rows * cols):
        top, bottom = axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]
        top.axis("off"), bottom.axis("off")
        if i >= n:
            continue
        img, digits = render(image_rng(seed, split, i), split, difficulty, long_boost)
        top.imshow(img)
        for _, l, t, w, h in digits:
            top.add_patch(Rectangle((l - 0.5, t - 0.5), w, h, fill=False, ec="lime", lw=0.8))
        text = "".join(str(int(lab) % 10) for lab, *_ in digits)
        top.set_title(f"{text}  {img.size[0]}x{img.size[1]}", fontsize=8)
        # The crop the model sees: union of boxes expanded 30% around its centre, 64x64.
        x0, y0 = min(b[1] for b in digits), min(b[2] for b in digits)
        x1, y1 = max(b[1] + b[3] for b in digits), max(b[2] + b[4] for b in digits)
        cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, 0.65 * (x1 - x0), 0.65 * (y1 - y0)
        bottom.imshow(img.crop((round(cx - hw), round(cy - hh), round(cx + hw), round(cy + hh)))
                      .resize((64, 64), Image.BILINEAR))
    fig.suptitle(f"synthetic SVHN ({split}, difficulty {difficulty}): images with boxes, "
                 "and the 64x64 crops a model sees")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_figure(fig, path, format="png", dpi=80)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--root", default="data/synth", help="output folder; one subfolder per split")
    ap.add_argument("--train", type=int, default=10000, help="number of train images")
    ap.add_argument("--extra", type=int, default=0, help="number of extra images (train statistics)")
    ap.add_argument("--test", type=int, default=2000, help="number of test images")
    ap.add_argument("--seed", type=int, default=0, help="each image is seeded by (seed, split, index)")
    ap.add_argument("--workers", type=int, default=2, help="rendering processes")
    ap.add_argument("--difficulty", type=float, default=1.0,
                    help="nuisance strength: 0 clean printed digits, 1 SVHN-like, >1 harder")
    ap.add_argument("--long-boost", type=float, default=1.0,
                    help="multiplies the (tiny, official) rates of 5- and 6-digit numbers")
    ap.add_argument("--preview", metavar="PNG", default=None,
                    help="only save a contact sheet of 32 samples (with boxes and crops) to this file")
    ap.add_argument("--preview-split", default="train", help="statistics of the contact sheet")
    args = ap.parse_args(argv)
    if min(args.train, args.extra, args.test) < 0 or args.difficulty < 0 or args.long_boost < 0:
        ap.error("sizes, --difficulty and --long-boost must be >= 0")
    if args.seed < 0:  # was numpy's "expected non-negative integer", naming no flag
        ap.error(f"--seed must be >= 0, got {args.seed}")
    try:
        if args.preview:
            preview(args.preview, seed=args.seed, split=args.preview_split,
                    difficulty=args.difficulty, long_boost=args.long_boost)
            print(f"wrote {args.preview}")
            return
        for split in ("train", "extra", "test"):
            n = getattr(args, split)
            if n > 0:
                generate_split(args.root, split, n, args.seed, args.workers, args.difficulty,
                               args.long_boost)
                print(f"wrote {n} images and digitStruct.mat to {os.path.join(args.root, split)}")
    except (OSError, ValueError, RuntimeError) as e:
        sys.exit(f"synthetic.py: error: {e}")


if __name__ == "__main__":
    main()
