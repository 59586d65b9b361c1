"""One synthetic house number: `render` draws its digits, glyph family, material and sizes
from the statistics of the official SVHN annotations, lays out the glyphs on a wall in that
material, passes the image through a camera and returns it with its SVHN boxes. The split
test_ood draws only the HELD_OUT families and materials; no other split ever draws them."""
import io
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

from synth.digits import PROC_FAMILIES
from synth.fonts import font_families
from synth.layout import layout_number
from synth.random import cdf, choice, lognormal
from synth.surfaces import (LUMA, apply_lighting, apply_material, background, paint_clutter,
                            paint_plate, paint_tiles, random_colour)

# Statistics counted on the official annotations (train: 33,402 images, test: 13,068; box height
# as median, 5th and 95th percentile in pixels). "extra" follows train; both test splits test.
# digits per image: counts for 1..6 digits. Sizes: log-normal with a different spread on each
# side of the median, fitted to the median and the 5th/95th percentiles.
STATS = {
    "train": dict(counts=[5137, 18130, 8691, 1434, 9, 1], box_h=(29, 14, 68),
                  ctx_h=(1.6, 1.3, 2.2), ctx_w=(2.3, 1.1, 5.5)),
    "test": dict(counts=[2483, 8356, 2081, 146, 2, 0.5], box_h=(24, 15, 54),
                 ctx_h=(2.0, 1.4, 4.4), ctx_w=(3.8, 1.9, 11.0)),
}
OOD_SPLIT = "test_ood"
# Leading digit (never 0, like house numbers): Benford-like; later digits: slowly falling from
# 1 to 9, 0 between. Together: 1 most common, then falling to 9, and 0 about as common as 9.
LEAD_P = np.log10(1 + 1 / np.arange(1, 10))  # sums to 1
REST_P = np.array([1.2, 1.25, 1.15, 1.08, 1.02, 0.97, 0.92, 0.87, 0.82, 0.78])
REST_P = REST_P / REST_P.sum()
LEAD_CDF, REST_CDF = np.cumsum(LEAD_P), np.cumsum(REST_P)
# Per-image rates of boxes leaving the image (train: 29 negative, 158 past-the-edge boxes).
EDGE_P = {"left": 0.0004, "top": 0.0002, "right": 0.0025, "bottom": 0.0008}
MATERIALS = ("painted", "plate", "embossed", "metal", "engraved", "tiles")
# Never drawn in train/extra/test; the only families and materials of test_ood.
HELD_OUT = frozenset({
    "stencil", "dotmatrix",  # procedural
    "dejavu-serif", "bitter", "kalam", "russo-one", "space-mono", "league-spartan",
    "chakra-petch", "josefin-sans", "abril-fatface", "exo-2",  # TrueType
    "engraved", "tiles",  # materials
})
MATERIAL_P = {"painted": 0.45, "plate": 0.25, "embossed": 0.1, "metal": 0.2, "engraved": 0.5,
              "tiles": 0.5}


def families(held_out):
    """Glyph families of the training splits (held_out=False) or of test_ood (True)."""
    names = list(font_families()) + list(PROC_FAMILIES)
    return tuple(sorted(n for n in names if (n in HELD_OUT) == held_out))


def _sample_digits(rng, split, long_boost):
    counts = np.array(STATS[_stats_key(split)]["counts"], dtype=float)
    counts[4:] *= long_boost
    k = 1 + int(choice(rng, cdf(counts)))
    lead = 1 + int(choice(rng, LEAD_CDF))
    return [lead] + [int(d) for d in choice(rng, REST_CDF, k - 1)]


def _stats_key(split):
    return "test" if split.startswith("test") else "train"


def _pick(rng, items):
    return items[rng.integers(len(items))]


def render(rng, split="train", difficulty=1.0, long_boost=1.0, digits=None, edge=None,
           family=None, material=None, meta=None):
    """One synthetic house number: (PIL RGB image, [[label 1..10, left, top, width, height]]).

    Split test_ood draws only held-out families and materials; the others never draw them.
    family/material force a choice (tests, figures); meta (a dict) receives the ones drawn and
    each digit's ink as an (H, W) uint8 array in image coordinates."""
    # Every part draws from rng in this order: reordering them changes every image.
    d = float(difficulty)
    ood = split == OOD_SPLIT
    st = STATS[_stats_key(split)]
    digits = list(digits) if digits is not None else _sample_digits(rng, split, long_boost)
    family, material = _draw_style(rng, ood, family, material)
    if meta is not None:
        meta.update(family=family, material=material)
    box_h = float(np.clip(lognormal(rng, *st["box_h"]), 9, 400))
    mt, mb = rng.uniform(0, 0.1, 2)
    ink_h = 0.93 * box_h / (1 + mt + mb)  # warps and rounding add the rest
    masks, inks = layout_number(rng, digits, family, ink_h, d)
    boxes = _svhn_boxes(rng, inks, ink_h, mt, mb)
    W, H, ox, oy = _frame(rng, boxes, st, edge)
    boxes = [[b[0] - ox, b[1] - oy, b[2] - ox, b[3] - oy] for b in boxes]  # image coordinates
    union = (min(b[0] for b in boxes), boxes[0][1], max(b[2] for b in boxes), boxes[0][3])
    bh = union[3] - union[1]
    img = _wall(rng, W, H, d, material, boxes, union, ink_h)
    fg = _digit_colour(rng, img, union, bh, d)
    alpha = _ink(masks, W, H, ox, oy, meta)
    # Materials only touch the number and its shadows: work on that window of the image.
    m = bh // 4 + 4
    x0, y0 = max(union[0] - m, 0), max(union[1] - m, 0)
    x1, y1 = min(union[2] + m, W), min(union[3] + m, H)
    apply_material(rng, img[y0:y1, x0:x1], alpha[y0:y1, x0:x1], material, fg, bh, d)
    apply_lighting(rng, img, d)
    out = camera(rng, Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB"), bh, d)
    return out, [[float(10 if x == 0 else x), float(b[0]), float(b[1]), float(b[2] - b[0]),
                  float(b[3] - b[1])] for x, b in zip(digits, boxes)]


def _draw_style(rng, ood, family, material):
    """The glyph family and the material, each drawn unless given."""
    pool = families(ood)
    if family is None:  # half procedural, half TrueType: each kind of source equally often
        proc = [f for f in pool if f in PROC_FAMILIES]
        ttf = [f for f in pool if f not in PROC_FAMILIES]
        family = _pick(rng, proc if (rng.random() < 0.45 or not ttf) else ttf)
    if material is None:
        names = [m for m in MATERIALS if (m in HELD_OUT) == ood]
        p = np.array([MATERIAL_P[m] for m in names])
        material = names[choice(rng, cdf(p))]
        if ood and rng.random() < 0.5:  # held-out glyphs also on the training materials
            material = _pick(rng, [m for m in MATERIALS if m not in HELD_OUT and m != "plate"])
    return family, material


def _svhn_boxes(rng, inks, ink_h, mt, mb):
    """SVHN boxes [x0, y0, x1, y1] around the ink boxes: each encloses its glyph with a small
    annotator margin (mt, mb above and below, in ink heights); one shared top and height."""
    top, bottom = min(b[1] for b in inks) - mt * ink_h, max(b[3] for b in inks) + mb * ink_h
    side = rng.uniform(0, 0.08, (len(inks), 2)) * ink_h
    return [[int(np.floor(b[0] - ml)), int(np.floor(top)), int(np.ceil(b[2] + mr)),
             int(np.ceil(bottom))] for b, (ml, mr) in zip(inks, side)]


def _frame(rng, boxes, st, edge):
    """Image size (W, H) and the offset (ox, oy) of its top left corner in box coordinates: the
    number plus context, as in the official crops (almost always landscape)."""
    ux0, uy0 = min(b[0] for b in boxes), boxes[0][1]
    ux1, uy1 = max(b[2] for b in boxes), boxes[0][3]
    bw, bh = ux1 - ux0, uy1 - uy0
    H = int(max(bh + 2, min(520, round(bh * lognormal(rng, *st["ctx_h"])))))  # official max ~500
    W = int(max(bw + 2, min(1100, round(bw + bh * lognormal(rng, *st["ctx_w"]))),
                round(H * rng.uniform(1.05, 1.3))))
    ox = ux0 - int(round((W - bw) * np.clip(rng.normal(0.5, 0.12), 0, 1)))
    oy = uy0 - int(round((H - bh) * np.clip(rng.normal(0.5, 0.12), 0, 1)))
    if edge is None:  # the official files hold a few boxes past the image edge
        edge = next((e for e, p in EDGE_P.items() if rng.random() < p), None)
    shift = int(rng.integers(1, 3))  # within the box margin: the ink itself stays in the image
    ox = {"left": ux0 + shift, "right": ux1 - W - shift}.get(edge, ox)
    oy = {"top": uy0 + shift, "bottom": uy1 - H - shift}.get(edge, oy)
    return W, H, ox, oy


def _wall(rng, W, H, d, material, boxes, union, ink_h):
    """The (H, W, 3) float image behind the number: a wall, and on it a plate, tiles or
    clutter beside the number."""
    bh = union[3] - union[1]
    img = background(rng, W, H, d, bh)
    if material == "plate":
        paint_plate(rng, img, union, bh, rounded=rng.random() < 0.5)
    elif material == "tiles":
        paint_tiles(rng, img, boxes, bh)
    else:
        paint_clutter(rng, img, union, ink_h, d, clutter_faces())
    return img


def _digit_colour(rng, img, union, bh, d):
    """Light on dark or dark on light; at full difficulty some are low contrast."""
    bg_lum = float(img[max(union[1], 0):union[3], max(union[0], 0):union[2]].mean(axis=(0, 1))
                   @ LUMA) if bh > 0 else 128.0
    contrast = rng.uniform(60, 100) if rng.random() < 0.2 * d else rng.uniform(100, 200)
    up = bg_lum < 110 or (bg_lum < 150 and rng.random() < 0.5)
    lum = bg_lum + contrast if up else bg_lum - contrast
    if not 0 <= lum <= 255:  # not reachable on this side: go as far as the other side allows
        lum = 255.0 if 255 - bg_lum > bg_lum else 0.0
    return random_colour(rng, np.clip(lum, 0, 255))


def _ink(masks, W, H, ox, oy, meta):
    """All digits' ink in one (H, W) layer in [0, 1]; meta["ink"] gets each digit's own."""
    ink = np.zeros((H, W), np.uint8)
    for mask, mx, my in masks:
        _paste(ink, mask, mx - ox, my - oy, np.maximum)
    if meta is not None:
        meta["ink"] = []
        for mask, mx, my in masks:
            layer = np.zeros((H, W), np.uint8)
            _paste(layer, mask, mx - ox, my - oy)
            meta["ink"].append(layer)
    return ink.astype(np.float32) / 255


def _paste(dst, src, x, y, combine=None):
    """dst[y:, x:] = src (or combine(dst, src)), clipped to dst (both 2-D)."""
    H, W = dst.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + src.shape[1], W), min(y + src.shape[0], H)
    if x1 > x0 and y1 > y0:
        part = src[y0 - y:y1 - y, x0 - x:x1 - x]
        dst[y0:y1, x0:x1] = part if combine is None else combine(dst[y0:y1, x0:x1], part)


@lru_cache(maxsize=None)
def clutter_faces():
    """Neighbouring letters come from the training TrueType faces in every split."""
    table = font_families()
    return tuple(f for fam in families(False) if fam in table for f in table[fam])


def camera(rng, out, bh, d):
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
