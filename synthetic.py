"""Offline SVHN format-1 replica: house numbers in many typefaces and materials, with boxes.

    python synthetic.py --root data/synth --train 10000 --extra 0 --test 2000 --test-ood 2000
    python synthetic.py --preview img/synthetic.png

Writes <root>/<split>/1.png ... N.png and <root>/<split>/digitStruct.mat (the real MATLAB v7.3
layout, through digitstruct_write.write_digitstruct), so prepare_data.py converts it with the
same code as the official files. The sampling statistics follow the official annotations
(digits per image, image and box sizes, digit frequencies, rare boxes past the image edge), as
written out in STATS and below. Every image is drawn from its own generator seeded by
(seed, split, index): byte-identical output for any number of workers.

Glyphs come from TrueType families (matplotlib's own fonts and the openly licensed fontpkg-*
packages of requirements.txt, where installed) and from procedurally drawn digit families
(stroke, angular, brush, outline, 7-segment, stencil, dot matrix) with the glyph variants that
matter (1 with or without flag and foot, 7 with or without bar, open or closed 4, straight or
curved tails on 6 and 9). Materials: painted, plate, embossed, metal, engraved, tiles.
The split `test_ood` is drawn only from families and materials that no other split ever uses
(HELD_OUT), so accuracy on it measures reading typefaces never seen in training.
"""
import argparse
import importlib.util
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
FLAG1_CDF, FOUR_CDF = np.cumsum([0.25, 0.5, 0.25]), np.cumsum([0.5, 0.3, 0.2])
# Per-image rates of boxes leaving the image (train: 29 negative, 158 past-the-edge boxes).
EDGE_P = {"left": 0.0004, "top": 0.0002, "right": 0.0025, "bottom": 0.0008}
CLUTTER_CHARS = "ABCDEFGHKLMNPRSTUWabdehnrst0123456789#-"
LUMA = np.array([0.299, 0.587, 0.114])
GLYPH_REF = 96  # TrueType size at which glyph masks are rendered once and cached
PROC_REF = 64  # height at which procedural glyphs are drawn
INK_LEVEL = 60  # where a glyph's ink counts for its box (of 255)
SAT_LEVELS = np.array([0.0, 0.15, 0.35, 0.7])
SAT_CDF = np.cumsum([0.25, 0.35, 0.25, 0.15])

# TrueType families from fontpkg-* packages (OFL-1.1, listed in requirements.txt): the package
# names without the prefix. Families missing on this machine are skipped.
FONTPKG_FAMILIES = (
    "roboto", "roboto-condensed", "open-sans", "montserrat", "oswald", "bebas-neue",
    "barlow-condensed", "fira-sans", "ibm-plex-mono", "roboto-slab", "pt-serif", "anton",
    "archivo-black", "teko", "rajdhani", "permanent-marker", "orbitron",
    "saira-condensed", "black-ops-one", "press-start-2p", "righteous", "varela-round",
    "titan-one", "libre-baskerville", "alfa-slab-one", "luckiest-guy", "lobster",
    "cinzel", "bitter", "kalam", "russo-one", "space-mono", "league-spartan", "chakra-petch",
    "josefin-sans", "abril-fatface", "exo-2",
)
# matplotlib's bundled files, grouped into families by file-name prefix (longest match first).
MPL_FAMILIES = (("DejaVuSansMono", "dejavu-sans-mono"), ("DejaVuSans", "dejavu-sans"),
                ("DejaVuSerif", "dejavu-serif"), ("STIXGeneral", "stix"), ("cm", "computer-modern"))
PROC_FAMILIES = ("stroke", "angular", "brush", "outline", "segment7", "stencil", "dotmatrix")
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
BACKGROUNDS = ("wall", "brick", "wood", "siding", "stucco")
BACKGROUND_P = np.array([0.5, 0.12, 0.12, 0.12, 0.14])


def _lognormal(rng, median, p5, p95):
    """Split log-normal draw with the given median and 5th/95th percentiles."""
    z = rng.standard_normal()
    lo, hi = np.log(median / p5) / 1.645, np.log(p95 / median) / 1.645
    return median * np.exp(z * (hi if z > 0 else lo))


@lru_cache(maxsize=None)
def _font(path, size, weight):
    font = ImageFont.truetype(path, size)
    if weight is not None:  # a variable font: set its weight axis, others at their defaults
        values = []
        for axis in font.get_variation_axes():
            name = axis["name"]
            name = name.decode("ascii", "replace") if isinstance(name, bytes) else name
            is_weight = name.strip().lower() in ("weight", "wght")
            clipped = min(max(weight, axis["minimum"]), axis["maximum"])
            values.append(float(clipped if is_weight else axis["default"]))
        font.set_variation_by_axes(values)
    return font


@lru_cache(maxsize=16384)
def _glyph(face, ch):
    """Ink-cropped 'L' mask of one character at the reference size, with its top offset."""
    path, weight = face
    im = Image.new("L", (GLYPH_REF * 2, GLYPH_REF * 2))
    font = _font(path, GLYPH_REF, weight)
    ImageDraw.Draw(im).text((GLYPH_REF // 4, GLYPH_REF // 4), ch, font=font, fill=255)
    box = im.getbbox()
    if box is None:
        return None
    glyph = im.crop(box)
    glyph.info["top"] = box[1]  # offset from the drawing origin keeps baselines aligned
    return glyph


def _good_face(face):
    """Ten distinct lining digits (no old-style figures, no missing-glyph boxes)."""
    masks = [_glyph(face, ch) for ch in "0123456789"]
    if any(m is None for m in masks) or len({m.tobytes() for m in masks}) < 10:
        return False
    heights = [m.size[1] for m in masks]
    return max(heights) <= 1.12 * min(heights)


def _font_files():
    """{family: [ttf paths]} from matplotlib and from the fontpkg packages installed here."""
    import matplotlib
    folder = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    files = {}
    for name in sorted(os.listdir(folder)):
        family = next((fam for prefix, fam in MPL_FAMILIES if name.startswith(prefix)), None)
        if family and name.endswith(".ttf") and "Display" not in name:
            files.setdefault(family, []).append(os.path.join(folder, name))
    for family in FONTPKG_FAMILIES:
        spec = importlib.util.find_spec("fontpkg_" + family.replace("-", "_"))
        if spec is None or not spec.submodule_search_locations:
            continue
        sub = os.path.join(list(spec.submodule_search_locations)[0], "files")
        if os.path.isdir(sub):
            paths = [os.path.join(sub, n) for n in sorted(os.listdir(sub)) if n.endswith(".ttf")]
            files[family] = paths
    return files


@lru_cache(maxsize=None)
def font_families():
    """{family: ((path, weight), ...)} of usable faces; a variable font gives several weights."""
    found = {}
    for family, paths in _font_files().items():
        faces = []
        for path in paths:
            axes = []
            try:
                axes = ImageFont.truetype(path, 12).get_variation_axes()
            except (OSError, ValueError):
                pass  # not a variable font (or FreeType without variations): one face
            weights = [None]
            if any(str(a["name"]).lower().find("weight") >= 0 for a in axes):
                weights = [300, 450, 700, 900]
            faces += [(path, w) for w in weights if _good_face((path, w))]
        if faces:
            found[family] = tuple(faces)
    if not found:
        raise RuntimeError("synthetic.py: no usable digit font found")
    return found


def fonts():
    """All usable TrueType faces as (path, weight) pairs."""
    return tuple(face for faces in font_families().values() for face in faces)


def families(held_out):
    """Glyph families of the training splits (held_out=False) or of test_ood (True)."""
    names = list(font_families()) + list(PROC_FAMILIES)
    return tuple(sorted(n for n in names if (n in HELD_OUT) == held_out))


# ---- procedural digits: skeletons in a unit box (x right, y down), drawn as strokes ----------

def _arc(cx, cy, rx, ry, a0, a1, n=16):
    """Points of an elliptic arc; angles in degrees, 0 = right, 90 = down."""
    t = np.deg2rad(np.linspace(a0, a1, n))
    return list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t)))


def _bezier(p0, p1, p2, n=10):
    t = np.linspace(0, 1, n)[:, None]
    pts = (1 - t) ** 2 * np.array(p0) + 2 * (1 - t) * t * np.array(p1) + t ** 2 * np.array(p2)
    return [tuple(p) for p in pts]


def _skeleton(digit, v, n):
    """Strokes (lists of points) of one digit under glyph variants v; n points per full arc."""
    if digit == 0:
        if v["boxy"]:
            return [_arc(0.5, 0.2, 0.5, 0.2, 180, 360, n // 3) + _arc(0.5, 0.8, 0.5, 0.2, 0, 180,
                                                                      n // 3) + [(0.0, 0.2)]]
        return [_arc(0.5, 0.5, 0.5, 0.5, 0, 360, n + 1)]
    if digit == 1:
        x = 0.5 if v["flag1"] == "none" else 0.6
        strokes = [[(x, 0.0), (x, 1.0)]]
        if v["flag1"] == "short":
            strokes[0] = [(x - 0.35, 0.2), (x, 0.0), (x, 1.0)]
        elif v["flag1"] == "long":
            strokes[0] = [(x - 0.5, 0.38), (x, 0.0), (x, 1.0)]
        if v["foot1"]:
            strokes.append([(0.15, 1.0), (0.95, 1.0)])
        return strokes
    if digit == 2:
        top = _arc(0.5, 0.27, 0.47, 0.27, 195, 380, n // 2)
        if v["curve2"]:
            return [top + _bezier(top[-1], (0.35, 0.7), (0.0, 1.0))[1:] + [(1.0, 1.0)]]
        return [top + [(0.0, 1.0), (1.0, 1.0)]]
    if digit == 3:
        bottom = _arc(0.5, 0.71, 0.5, 0.29, 265, 515, n // 2)
        if v["flat3"]:
            return [[(0.05, 0.0), (0.95, 0.0), (0.42, 0.42)] + bottom]
        return [_arc(0.5, 0.24, 0.43, 0.24, 205, 450, n // 2) + bottom[1:]]
    if digit == 4:
        if v["four"] == "closed":
            return [[(0.72, 1.0), (0.72, 0.0), (0.0, 0.7), (1.0, 0.7)]]
        if v["four"] == "open":
            return [[(0.55, 0.0), (0.0, 0.7), (1.0, 0.7)], [(0.72, 0.3), (0.72, 1.0)]]
        return [[(0.08, 0.0), (0.03, 0.7), (1.0, 0.7)], [(0.72, 0.25), (0.72, 1.0)]]
    if digit == 5:
        bowl = _arc(0.5, 0.67, 0.48, 0.33, 222, 510, n * 3 // 4)
        return [[(0.92, 0.0), (0.16, 0.0), bowl[0]] + bowl[1:]]
    if digit in (6, 9):
        straight = v["tail6"] if digit == 6 else v["tail9"]
        loop = _arc(0.5, 0.68, 0.48, 0.32, 0, 360, n + 1)
        tail = [(0.78, 0.0), (0.04, 0.64)] if straight else _bezier((0.88, 0.04), (0.05, 0.05),
                                                                  (0.03, 0.68))
        strokes = [loop, tail]
        if digit == 9:  # the 6 turned half a turn (its tail independently straight or curved)
            strokes = [[(1 - x, 1 - y) for x, y in s] for s in strokes]
        return strokes
    if digit == 7:
        stem = [(1.0, 0.0), (0.35, 1.0)] if not v["curve7"] else _bezier((1.0, 0.0), (0.45, 0.4),
                                                                        (0.4, 1.0))
        top = [(0.0, 0.16), (0.0, 0.0)] if v["nose7"] else [(0.0, 0.0)]
        strokes = [top + stem]
        if v["bar7"]:
            strokes.append([(0.3, 0.52), (0.9, 0.52)])
        return strokes
    return [_arc(0.5, 0.24, 0.42, 0.24, 0, 360, n + 1), _arc(0.5, 0.72, 0.5, 0.28, 0, 360, n + 1)]


# seven segments a..g as (x0, y0, x1, y1) in the unit box; which segments each digit lights
SEGMENTS = {"a": (0, 0, 1, 0), "b": (1, 0, 1, 0.5), "c": (1, 0.5, 1, 1), "d": (0, 1, 1, 1),
            "e": (0, 0.5, 0, 1), "f": (0, 0, 0, 0.5), "g": (0, 0.5, 1, 0.5)}
SEG_DIGITS = ["abcdef", "bc", "abdeg", "abcdg", "bcfg", "acdfg", "acdefg", "abc", "abcdefg",
              "abcdfg"]
# stencil bridges: short cuts (unit coordinates) that open closed counters, per digit
STENCIL_CUTS = {0: [(0.5, -0.1, 0.5, 0.12), (0.5, 0.88, 0.5, 1.1)],
                4: [(0.5, 0.55, 0.5, 0.85)], 6: [(0.5, 0.3, 0.5, 0.45)], 9: [(0.5, 0.55, 0.5, 0.7)],
                8: [(0.5, -0.1, 0.5, 0.1), (0.5, 0.9, 0.5, 1.1)], 3: [(0.62, 0.4, 0.62, 0.55)],
                5: [(0.2, -0.1, 0.2, 0.12)], 2: [(0.3, 0.9, 0.3, 1.1)],
                7: [(0.45, -0.1, 0.45, 0.12)],
                1: []}


def proc_style(rng, family):
    """One number's procedural style: weight, proportions, slant, caps and glyph variants."""
    light = {"segment7": (0.08, 0.16), "dotmatrix": (0.1, 0.16), "outline": (0.14, 0.24),
             "brush": (0.08, 0.18)}.get(family, (0.05, 0.22))
    return dict(
        family=family, weight=rng.uniform(*light), aspect=rng.uniform(0.38, 0.72),
        slant=rng.normal(0, 0.12) if rng.random() < 0.35 else 0.0,
        round_caps=bool(rng.random() < 0.6) and family != "angular",
        wobble=rng.uniform(0.01, 0.035) if family == "brush" else 0.0,
        flag1=("none", "short", "long")[_choice(rng, FLAG1_CDF)],
        foot1=bool(rng.random() < 0.35), bar7=bool(rng.random() < 0.2),
        curve7=bool(rng.random() < 0.3), nose7=bool(rng.random() < 0.15),
        four=("closed", "open", "opentop")[_choice(rng, FOUR_CDF)],
        tail6=bool(rng.random() < 0.4), tail9=bool(rng.random() < 0.4),
        flat3=bool(rng.random() < 0.25), curve2=bool(rng.random() < 0.5),
        boxy=family == "angular" and rng.random() < 0.6,
        seg_a6=bool(rng.random() < 0.8), seg_d9=bool(rng.random() < 0.8),
        seg_f7=bool(rng.random() < 0.25), seg_gap=rng.uniform(0.02, 0.08),
        dot_square=bool(rng.random() < 0.3),
    )


def _to_px(style, pts, mx, my):
    """Unit-box points -> canvas pixels, with the style's proportions and slant."""
    R, gw = PROC_REF, style["aspect"] * PROC_REF
    return [(mx + x * gw + style["slant"] * (1 - y) * R, my + y * R) for x, y in pts]


def _draw_strokes(draw, style, strokes, w, mx, my, rng):
    for pts in strokes:
        if style["wobble"] > 0:  # hand-painted: smooth wander of the brush and varying pressure
            dense = []
            for p, q in zip(pts[:-1], pts[1:]):
                k = max(2, int(np.hypot(q[0] - p[0], q[1] - p[1]) / 0.08))
                dense += [(p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t)
                          for t in np.arange(k) / k]
            dense.append(pts[-1])
            drift = np.cumsum(rng.normal(0, style["wobble"], (len(dense), 2)), axis=0)
            drift -= drift.mean(axis=0)
            pts = [(x + dx, y + dy) for (x, y), (dx, dy) in zip(dense, drift)]
        px = _to_px(style, pts, mx, my)
        width = max(1, round(w * (rng.uniform(0.8, 1.2) if style["wobble"] else 1.0)))
        draw.line(px, fill=255, width=width, joint="curve")
        if style["round_caps"]:
            r = width / 2
            for x, y in (px[0], px[-1]):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
        else:  # square caps: extend each open end by half the width along the stroke
            for a, b in ((px[1], px[0]), (px[-2], px[-1])):
                step = np.subtract(b, a)
                step = step / max(float(np.hypot(*step)), 1e-6) * width / 2
                draw.line([tuple(b), tuple(np.add(b, step))], fill=255, width=width)


def _segment7(draw, style, digit, w, mx, my):
    lit = SEG_DIGITS[digit]
    lit = lit.replace("a", "") if digit == 6 and not style["seg_a6"] else lit
    lit = lit.replace("d", "") if digit == 9 and not style["seg_d9"] else lit
    lit = lit + "f" if digit == 7 and style["seg_f7"] else lit
    gap = style["seg_gap"] + style["weight"] / 2
    for s in lit:
        x0, y0, x1, y1 = SEGMENTS[s]
        # shorten each segment at both ends so that neighbours stay apart
        gx, gy = (gap, 0) if y0 == y1 else (0, gap / 2 + 0.02)
        pts = _to_px(style, [(x0 + gx, y0 + gy), (x1 - gx, y1 - gy)], mx, my)
        draw.line(pts, fill=255, width=max(1, round(w)))


def _dotmatrix(draw, style, strokes, mx, my):
    """The skeleton sampled onto a 5x7 grid of dots."""
    t = np.linspace(0, 1, 12)[None, :, None]
    samples = []
    for pts in strokes:
        p = np.asarray(pts, float)  # (n, 2)
        samples.append((p[:-1, None] + (p[1:, None] - p[:-1, None]) * t).reshape(-1, 2))
    grid = np.rint(np.concatenate(samples) * [4, 6]).astype(int)  # column 0..4, row 0..6
    cells = [tuple(c) for c in np.unique(grid, axis=0)]
    r = 0.42 * min(style["aspect"] * PROC_REF / 4, PROC_REF / 6)
    for cx, cy in cells:
        (x, y), = _to_px(style, [(cx / 4, cy / 6)], mx, my)
        box = [x - r, y - r, x + r, y + r]
        if style["dot_square"]:
            draw.rectangle(box, fill=255)
        else:
            draw.ellipse(box, fill=255)


def proc_glyph(style, digit, rng):
    """'L' mask of one procedurally drawn digit (height PROC_REF plus margins)."""
    family, R = style["family"], PROC_REF
    w = max(1.0, style["weight"] * R)
    my = int(w) + 2
    mx = my - min(style["slant"], 0.0) * R  # a back-slanted glyph stays on the canvas
    size = (int(style["aspect"] * R + abs(style["slant"]) * R) + 2 * my, R + 2 * my)
    im = Image.new("L", size)
    draw = ImageDraw.Draw(im)
    if family == "segment7":
        _segment7(draw, style, digit, w, mx, my)
        return im
    strokes = _skeleton(digit, style, 8 if family == "angular" else 28)
    if family == "dotmatrix":
        _dotmatrix(draw, style, strokes, mx, my)
        return im
    _draw_strokes(draw, style, strokes, w, mx, my, rng)
    if family == "stencil":
        for x0, y0, x1, y1 in STENCIL_CUTS[digit]:
            draw.line(_to_px(style, [(x0, y0), (x1, y1)], mx, my), fill=0,
                      width=max(1, round(0.35 * w)))
    if family == "outline":  # hollow letters: only the rim of a thick stroke
        inner = np.asarray(im.filter(ImageFilter.MinFilter(2 * max(1, int(w / 5)) + 1)))
        im = Image.fromarray(np.asarray(im) - np.minimum(np.asarray(im), inner))
    return im


# ---- layout: glyph masks of one number, warped together ---------------------------------------

def _number_glyphs(rng, digits, family):
    """Masks of the number's digits at their reference size, each with info['top']."""
    if family in PROC_FAMILIES:
        style = proc_style(rng, family)
        out = []
        for x in digits:
            im = proc_glyph(style, x, rng)
            box = im.getbbox() or (0, 0, 1, 1)
            g = im.crop(box)
            g.info["top"] = box[1]
            out.append(g)
        return out, 1.0
    faces = font_families()[family]
    face = faces[rng.integers(len(faces))]
    return [_glyph(face, str(x)) for x in digits], rng.uniform(0.45, 0.9)


def _layout_number(rng, digits, family, ink_h, d):
    """Digit masks laid out and warped on one local canvas; returns the masks and ink boxes."""
    ref, aspect = _number_glyphs(rng, digits, family)
    scale = ink_h / max(g.size[1] for g in ref)
    heavy = family not in PROC_FAMILIES and rng.random() < 0.15 * d
    track = rng.uniform(0.04, 0.32) * ink_h
    pad = int(ink_h) + 4
    pieces, x = [], pad
    top0 = min(r.info["top"] for r in ref)
    for g in ref:
        g = g.filter(ImageFilter.MaxFilter(5)) if heavy else g  # a heavier stroke
        w, h = max(1, round(g.size[0] * scale * aspect)), max(1, round(g.size[1] * scale))
        y = pad + round((g.info["top"] - top0) * scale + rng.normal(0, 0.03 * d) * ink_h)
        pieces.append((g.resize((w, h), Image.BILINEAR), x, y))
        x += w + max(1, round(track * rng.uniform(1 - 0.5 * min(d, 1.5), 1 + 0.5 * d)))
    size = (x + pad, round(ink_h) + 2 * pad)
    # One warp for the whole number: rotation, shear and a keystone (a camera at an angle).
    ang, shear = np.deg2rad(rng.normal(0, 4 * d)), rng.normal(0, 0.12 * d)
    keystone = rng.normal(0, 0.04 * d) if rng.random() < 0.7 else rng.normal(0, 0.12 * d)
    corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    cx, cy, hw, hh = size[0] / 2, size[1] / 2, (x - pad) / 2, ink_h / 2
    src = [(cx + sx * hw, cy + sy * hh) for sx, sy in corners]
    dst = []
    for sx, sy in corners:
        px, py = sx * hw + shear * sy * hh, sy * hh * (1 + sx * keystone)
        dst.append((cx + px * np.cos(ang) - py * np.sin(ang),
                    cy + px * np.sin(ang) + py * np.cos(ang)))
    back = _perspective_coeffs(dst, src)  # output canvas -> input canvas
    ahead = _perspective_coeffs(src, dst)  # input canvas -> output canvas
    masks, boxes = [], []
    for g, gx, gy in pieces:
        x0, y0 = gx, gy
        if d > 0:  # warp only the window the glyph lands in, not the whole canvas (5-10x less)
            framed = Image.new("L", (g.size[0] + 4, g.size[1] + 4))  # ink-cropped: give the
            framed.paste(g, (2, 2))  # sampler zeros beyond the edge, as the canvas had
            g, gx, gy = framed, gx - 2, gy - 2
            w, h = g.size
            u, v = _project(ahead, [gx, gx + w, gx, gx + w], [gy, gy, gy + h, gy + h])
            x0, y0 = int(np.floor(u.min())) - 2, int(np.floor(v.min())) - 2
            out = (int(np.ceil(u.max())) + 2 - x0, int(np.ceil(v.max())) + 2 - y0)
            g = g.transform(out, Image.PERSPECTIVE, _window(back, x0, y0, gx, gy), Image.BILINEAR)
        a = np.asarray(g)
        box = _ink_box(a > INK_LEVEL) or _ink_box(a > 0) or (0, 0, 1, 1)
        masks.append((a, x0, y0))
        boxes.append((box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0))
    return masks, boxes


def _ink_box(mask):
    """(left, top, right, bottom) of the True pixels of a 2-D mask, or None."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if not len(rows):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _cdf(p):
    p = np.asarray(p, float)
    return np.cumsum(p / p.sum())


def _choice(rng, cdf, size=None):
    """Index drawn with the probabilities whose cumulative sums are cdf (rng.choice(p=) is
    ~20x slower for one draw)."""
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def _project(c, x, y):
    """Points (x, y) through the homography with PIL's coefficients c."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    w = c[6] * x + c[7] * y + 1
    return (c[0] * x + c[1] * y + c[2]) / w, (c[3] * x + c[4] * y + c[5]) / w


def _window(c, x0, y0, gx, gy):
    """PIL coefficients of homography c seen from an output window at (x0, y0) and an input
    image placed at (gx, gy): window pixel -> input image pixel."""
    a, b, cc, d, e, f, g, h = c
    k = g * x0 + h * y0 + 1
    c0 = a * x0 + b * y0 + cc
    f0 = d * x0 + e * y0 + f
    return [(a - gx * g) / k, (b - gx * h) / k, (c0 - gx * k) / k,
            (d - gy * g) / k, (e - gy * h) / k, (f0 - gy * k) / k, g / k, h / k]


def _sample_digits(rng, split, long_boost):
    counts = np.array(STATS[_stats_key(split)]["counts"], dtype=float)
    counts[4:] *= long_boost
    k = 1 + int(_choice(rng, _cdf(counts)))
    lead = 1 + int(_choice(rng, LEAD_CDF))
    return [lead] + [int(d) for d in _choice(rng, REST_CDF, k - 1)]


def _stats_key(split):
    return "test" if split.startswith("test") else "train"


def _perspective_coeffs(dst, src):
    """Coefficients for Image.transform(PERSPECTIVE) mapping output points dst to input src."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    return np.linalg.solve(np.array(rows, float), np.array(rhs, float)).tolist()


# ---- colour, walls, materials, light ----------------------------------------------------------

def _colour(rng, lum=None):
    """A random RGB colour (0..255 floats), optionally with a given luminance."""
    sat = SAT_LEVELS[np.searchsorted(SAT_CDF, rng.random())]  # walls are mostly dull
    c = np.clip(rng.uniform(0, 255) + sat * (rng.uniform(0, 255, 3) - 128), 0, 255)
    if lum is not None:  # move to that luminance exactly, desaturating instead of clipping
        lum = float(np.clip(lum, 0, 255))
        dev = c - c @ LUMA
        room = np.where(dev > 0, (255 - lum) / np.maximum(dev, 1e-6), lum / np.maximum(-dev, 1e-6))
        c = lum + min(1.0, float(room.min())) * dev
    return c


def _smooth_noise(rng, w, h, cells):
    """Low-frequency noise in about [-2, 2]: a few random values upsampled bicubically."""
    gw, gh = max(2, int(cells[0])), max(2, int(cells[1]))
    small = Image.fromarray(rng.normal(0, 1, (gh, gw)).astype(np.float32))
    return np.asarray(small.resize((w, h), Image.BICUBIC))


def _background(rng, w, h, d, unit):
    """A wall: plain, brick, wood, siding or stucco, with gradient and grain. unit ~ box height."""
    d = min(d, 1.5)  # stronger walls would hide the digits rather than make reading harder
    base = _colour(rng)
    kind = BACKGROUNDS[_choice(rng, _cdf(BACKGROUND_P))]
    yy, xx = np.ogrid[0:h, 0:w]  # (h, 1) and (1, w): broadcast, never materialised
    yy, xx = yy.astype(np.float32), xx.astype(np.float32)
    t = np.deg2rad(rng.uniform(0, 360))
    grad = ((xx * np.cos(t) + yy * np.sin(t)) / max(w, h)) * rng.uniform(-60, 60) * d
    tex = _smooth_noise(rng, w, h, rng.integers(2, 9, size=2)) * rng.uniform(0, 30) * d
    amp = rng.uniform(0.3, 1.0) * d
    if kind == "brick":
        bh = max(4.0, unit * rng.uniform(0.3, 0.9))
        bw = bh * rng.uniform(2.0, 3.2)
        row = np.floor(yy / bh)
        xs = xx + (row % 2) * bw / 2
        mortar_w = max(1.0, bh * rng.uniform(0.08, 0.18))
        mortar = ((yy % bh) < mortar_w) | ((xs % bw) < mortar_w)
        jitter = rng.normal(0, 18, 64)[((row * 7 + np.floor(xs / bw)) % 64).astype(int)]
        tex = tex + (jitter + np.where(mortar, rng.uniform(-70, 70), 0)) * amp
    elif kind == "wood":
        period = unit * rng.uniform(0.15, 0.5)
        warp = _smooth_noise(rng, w, h, (3, 2)) * period
        tex = tex + np.sin((yy + warp) / period * 2 * np.pi) * rng.uniform(8, 25) * amp
        base = base * np.array([1.0, 0.8, 0.6]) + np.array([30, 10, 0])  # wood is warm
    elif kind == "siding":
        period = unit * rng.uniform(0.5, 1.5)
        frac = (yy % period) / period
        tex = tex + (np.where(frac < 0.12, -45, 0) + frac * 20) * amp
    elif kind == "stucco":
        grain = rng.standard_normal((h, w)).astype(np.float32)
        grain = (grain + np.roll(grain, 1, axis=0) + np.roll(grain, 1, axis=1)) / 1.7  # 2px grain
        tex = tex + grain * 25 * amp
    noise = rng.standard_normal((h, w), dtype=np.float32) * (4 * d)
    return base.astype(np.float32) + (grad + tex + noise)[..., None]


def _shifted(a, dx, dy):
    """a (H, W) moved by whole pixels, zero fill."""
    out = np.zeros_like(a)
    H, W = a.shape
    dx, dy = int(dx), int(dy)
    if abs(dx) >= W or abs(dy) >= H:
        return out
    out[max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = \
        a[max(-dy, 0):H + min(-dy, 0), max(-dx, 0):W + min(-dx, 0)]
    return out


def _blend(img, alpha, colour):
    """img (H, W, 3) <- colour (3,) or (H, W, 3) through alpha (H, W) in [0, 1]."""
    a = alpha[..., None]
    img *= 1 - a
    img += a * colour


def _stamp(img, mask, colour, x, y):
    """Alpha-blend a colour through an 'L' mask placed at (x, y), clipped to the image."""
    m = np.asarray(mask, np.float32) / 255.0
    H, W = img.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + m.shape[1], W), min(y + m.shape[0], H)
    if x1 <= x0 or y1 <= y0:
        return
    a = m[y0 - y:y1 - y, x0 - x:x1 - x, None]
    img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + np.asarray(colour, np.float32) * a


def _clutter(rng, img, union, ink_h, d, faces):
    """Neighbouring characters, frame edges and shapes beside the number (never on it)."""
    H, W = img.shape[:2]
    x0, y0, x1, y1 = union
    for _ in range(rng.poisson(1.2 * d)):
        side = rng.choice([-1, 1])
        gap = rng.uniform(0.25, 1.2) * ink_h
        kind, colour = rng.random(), _colour(rng)
        if kind < 0.55:  # a neighbouring character, often cut by the image edge
            face = faces[rng.integers(len(faces))]
            g = _glyph(face, str(rng.choice(list(CLUTTER_CHARS))))
            if g is None:
                continue
            s = ink_h * rng.uniform(0.6, 1.3) / g.size[1]
            g = g.resize((max(1, round(g.size[0] * s)), max(1, round(g.size[1] * s))),
                         Image.BILINEAR)
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


def _plate(rng, img, union, bh, rounded):
    """A plaque behind the number, sometimes with a border line and screws."""
    H, W = img.shape[:2]
    grow = rng.uniform(0.15, 0.6, 4) * bh * [-1, -1, 1, 1]
    px0, py0, px1, py1 = (np.array(union) + grow).astype(int).tolist()
    radius = int(rng.uniform(0, 0.4) * bh) if rounded else 0
    wx0, wy0, wx1, wy1 = max(px0, 0), max(py0, 0), min(px1 + 1, W), min(py1 + 1, H)
    if wx1 <= wx0 or wy1 <= wy0:
        return
    win = img[wy0:wy1, wx0:wx1]  # everything below lies on the plate: draw on its window
    size = (wx1 - wx0, wy1 - wy0)
    px0, py0, px1, py1 = px0 - wx0, py0 - wy0, px1 - wx0, py1 - wy0
    plate = Image.new("L", size)
    ImageDraw.Draw(plate).rounded_rectangle([px0, py0, px1, py1], radius=radius, fill=255)
    _blend(win, np.asarray(plate, np.float32) / 255, _colour(rng))
    if rng.random() < 0.4:
        line = Image.new("L", size)
        inset = max(2, int(bh / 10))
        ImageDraw.Draw(line).rounded_rectangle(
            [px0 + inset, py0 + inset, px1 - inset, py1 - inset], radius=radius,
            outline=255, width=max(1, int(bh / 14)))
        _blend(win, np.asarray(line, np.float32) / 255, _colour(rng))
    if rng.random() < 0.3:  # screws in the corners
        screw = Image.new("L", size)
        r, dr = max(1, bh / 16), bh / 6
        for x, y in ((px0 + dr, py0 + dr), (px1 - dr, py0 + dr), (px0 + dr, py1 - dr),
                     (px1 - dr, py1 - dr)):
            ImageDraw.Draw(screw).ellipse([x - r, y - r, x + r, y + r], fill=255)
        _blend(win, np.asarray(screw, np.float32) / 255, _colour(rng, 180))


def _tiles(rng, img, boxes, bh):
    """Each digit on its own square ceramic tile, tiles side by side."""
    H, W = img.shape[:2]
    tile = Image.new("L", (W, H))
    grout = Image.new("L", (W, H))
    cy = (boxes[0][1] + boxes[0][3]) / 2
    side = bh * rng.uniform(1.25, 1.6)
    draw, gdraw = ImageDraw.Draw(tile), ImageDraw.Draw(grout)
    for x0, _, x1, _ in boxes:
        cx = (x0 + x1) / 2
        half = max(side / 2, (x1 - x0) * 0.7)
        rect = [cx - half, cy - side / 2, cx + half, cy + side / 2]
        draw.rectangle(rect, fill=255)
        gdraw.rectangle(rect, outline=255, width=max(1, int(bh / 12)))
    _blend(img, np.asarray(tile, np.float32) / 255, _colour(rng, rng.uniform(190, 245)))
    _blend(img, np.asarray(grout, np.float32) / 255, _colour(rng, rng.uniform(90, 170)))


def _metal_colour(rng, H, W):
    """Brass, steel or bronze with a vertical gradient and a specular band: (H, 1, 3)."""
    tone = [np.array([200, 170, 90]), np.array([185, 190, 195]), np.array([140, 100, 60]),
            np.array([60, 60, 65])][rng.integers(4)]
    yy = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    band = np.exp(-((yy - rng.uniform(0.2, 0.8)) / rng.uniform(0.08, 0.25)) ** 2)
    shade = 0.7 + 0.5 * yy * rng.choice([-1, 1]) + rng.uniform(0.2, 0.6) * band
    return np.clip(tone * shade, 0, 255).astype(np.float32)  # (H, 1, 3): same along a row


def _apply_material(rng, img, alpha, material, fg, bh, d):
    """Ink (alpha, full image) onto the wall as the material."""
    s = max(1, int(round(bh / rng.uniform(12, 25))))
    sx, sy = rng.choice([-1, 1]) * s, rng.choice([-1, 1]) * s
    if material == "embossed":  # raised: lit edge on one side, shadow on the other, same colour
        base = img[alpha > 0.5].mean(axis=0) if (alpha > 0.5).any() else fg
        _blend(img, _shifted(alpha, sx, sy) * 0.8, base * 0.45)
        _blend(img, _shifted(alpha, -sx, -sy) * 0.8, np.minimum(base * 1.5 + 40, 255))
        _blend(img, alpha, base + (fg - base) * rng.uniform(0.5, 0.85))
    elif material == "engraved":  # cut in: shadow inside on the lit side, dark floor
        base = img[alpha > 0.5].mean(axis=0) if (alpha > 0.5).any() else fg
        _blend(img, alpha, fg)
        _blend(img, alpha * _shifted(1 - alpha, sx, sy), base * 0.3)
        _blend(img, _shifted(alpha, -sx, -sy) * (1 - alpha) * 0.7, np.minimum(base + 60, 255))
    elif material == "metal":  # cut-out letters off the wall: soft drop shadow, metallic face
        shadow = Image.fromarray((_shifted(alpha, 2 * sx, 2 * sy) * 255).astype(np.uint8))
        shadow = np.asarray(shadow.filter(ImageFilter.GaussianBlur(s)), np.float32) / 255
        img *= 1 - 0.55 * shadow[..., None]
        H, W = alpha.shape
        face = _metal_colour(rng, H, W)
        face += float(fg @ LUMA) - float(face.mean(axis=(0, 1)) @ LUMA)  # keep the contrast
        _blend(img, alpha, np.clip(face, 0, 255))
    else:  # painted, printed, on a plate; sometimes with a hard drop shadow
        if rng.random() < 0.25 * d:
            _blend(img, _shifted(alpha, sx, sy), fg * 0.35)
        _blend(img, alpha, fg)


def _lighting(rng, img, d):
    """Hard shadow edges, a specular spot and a colour cast."""
    H, W = img.shape[:2]
    if rng.random() < 0.2 * d:
        yy, xx = np.ogrid[0:H, 0:W]
        t, cx, cy = rng.uniform(0, 2 * np.pi), W * rng.random(), H * rng.random()
        shade = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t) > 0
        img[shade] *= rng.uniform(0.55, 0.85)
    if rng.random() < 0.15 * d:
        yy, xx = np.ogrid[0:H, 0:W]
        r = rng.uniform(0.2, 0.6) * max(H, W)
        spot = np.exp(-((xx - W * rng.random()) ** 2 + (yy - H * rng.random()) ** 2) / r ** 2)
        img += spot[..., None] * rng.uniform(40, 130)
    if rng.random() < 0.3 * d:
        img *= 1 + rng.normal(0, 0.07, 3)


# ---- one image ---------------------------------------------------------------------------------

def _pick(rng, items):
    return items[rng.integers(len(items))]


def render(rng, split="train", difficulty=1.0, long_boost=1.0, digits=None, edge=None,
           family=None, material=None, meta=None):
    """One synthetic house number: (PIL RGB image, [[label 1..10, left, top, width, height]]).

    Split test_ood draws only held-out families and materials; the others never draw them.
    family/material force a choice (tests, figures); meta (a dict) receives the ones drawn and
    each digit's ink as an (H, W) uint8 array in image coordinates."""
    d = float(difficulty)
    ood = split == OOD_SPLIT
    st = STATS[_stats_key(split)]
    digits = list(digits) if digits is not None else _sample_digits(rng, split, long_boost)
    pool = families(ood)
    if family is None:  # half procedural, half TrueType: each kind of source equally often
        proc = [f for f in pool if f in PROC_FAMILIES]
        ttf = [f for f in pool if f not in PROC_FAMILIES]
        family = _pick(rng, proc if (rng.random() < 0.45 or not ttf) else ttf)
    if material is None:
        names = [m for m in MATERIALS if (m in HELD_OUT) == ood]
        p = np.array([MATERIAL_P[m] for m in names])
        material = names[_choice(rng, _cdf(p))]
        if ood and rng.random() < 0.5:  # held-out glyphs also on the training materials
            material = _pick(rng, [m for m in MATERIALS if m not in HELD_OUT and m != "plate"])
    if meta is not None:
        meta.update(family=family, material=material)
    box_h = float(np.clip(_lognormal(rng, *st["box_h"]), 9, 400))
    mt, mb = rng.uniform(0, 0.1, 2)
    ink_h = 0.93 * box_h / (1 + mt + mb)  # warps and rounding add the rest
    masks, inks = _layout_number(rng, digits, family, ink_h, d)
    # SVHN boxes: each encloses its glyph with a small annotator margin; one shared top/height.
    top, bottom = min(b[1] for b in inks) - mt * ink_h, max(b[3] for b in inks) + mb * ink_h
    side = rng.uniform(0, 0.08, (len(inks), 2)) * ink_h
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
    img = _background(rng, W, H, d, bh)
    if material == "plate":
        _plate(rng, img, union, bh, rounded=rng.random() < 0.5)
    elif material == "tiles":
        _tiles(rng, img, [[b[0] - ox, b[1] - oy, b[2] - ox, b[3] - oy] for b in boxes], bh)
    else:
        _clutter(rng, img, union, ink_h, d, _clutter_faces())
    # Digit colour: light on dark or dark on light; at full difficulty some are low contrast.
    bg_lum = float(img[max(union[1], 0):union[3], max(union[0], 0):union[2]].mean(axis=(0, 1))
                   @ LUMA) if bh > 0 else 128.0
    contrast = rng.uniform(60, 100) if rng.random() < 0.2 * d else rng.uniform(100, 200)
    up = bg_lum < 110 or (bg_lum < 150 and rng.random() < 0.5)
    lum = bg_lum + contrast if up else bg_lum - contrast
    if not 0 <= lum <= 255:  # not reachable on this side: go as far as the other side allows
        lum = 255.0 if 255 - bg_lum > bg_lum else 0.0
    fg = _colour(rng, np.clip(lum, 0, 255))
    ink = np.zeros((H, W), np.uint8)  # all digits, one layer
    for mask, mx, my in masks:
        _paste(ink, mask, mx - ox, my - oy, np.maximum)
    alpha = ink.astype(np.float32) / 255
    if meta is not None:
        meta["ink"] = []
        for mask, mx, my in masks:
            layer = np.zeros((H, W), np.uint8)
            _paste(layer, mask, mx - ox, my - oy)
            meta["ink"].append(layer)
    # Materials only touch the number and its shadows: work on that window of the image.
    m = bh // 4 + 4
    x0, y0 = max(union[0] - m, 0), max(union[1] - m, 0)
    x1, y1 = min(union[2] + m, W), min(union[3] + m, H)
    _apply_material(rng, img[y0:y1, x0:x1], alpha[y0:y1, x0:x1], material, fg, bh, d)
    _lighting(rng, img, d)
    out = _camera(rng, Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB"), bh, d)
    return out, [[float(10 if x == 0 else x), float(b[0] - ox), float(b[1] - oy),
                  float(b[2] - b[0]), float(b[3] - b[1])] for x, b in zip(digits, boxes)]


def _paste(dst, src, x, y, combine=None):
    """dst[y:, x:] = src (or combine(dst, src)), clipped to dst (both 2-D)."""
    H, W = dst.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + src.shape[1], W), min(y + src.shape[0], H)
    if x1 > x0 and y1 > y0:
        part = src[y0 - y:y1 - y, x0 - x:x1 - x]
        dst[y0:y1, x0:x1] = part if combine is None else combine(dst[y0:y1, x0:x1], part)


@lru_cache(maxsize=None)
def _clutter_faces():
    """Neighbouring letters come from the training TrueType faces in every split."""
    table = font_families()
    return tuple(f for fam in families(False) if fam in table for f in table[fam])


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
        raise FileExistsError(f"{mat}: exists and is not a synthetic replica; "
                              "refusing to overwrite")
    os.makedirs(folder, exist_ok=True)
    with open(marker, "w") as f:  # marks the folder as ours: safe to regenerate
        f.write(f"synthetic.py: n={n} seed={seed} difficulty={difficulty} "
                f"long_boost={long_boost}\n")
    if os.path.exists(mat):  # an interrupted run must not leave an old .mat describing new images
        os.remove(mat)
    _clutter_faces()  # find and check the fonts once, before the workers fork
    jobs = [(folder, split, seed, i, difficulty, long_boost) for i in range(n)]
    bar = dict(total=n, desc=f"synthetic {split}", unit="img", disable=None)
    if workers <= 1:
        entries = [_make_one(j) for j in tqdm(jobs, **bar)]
    else:
        with Pool(workers) as pool:
            entries = list(tqdm(pool.imap(_make_one, jobs, chunksize=32), **bar))
    write_digitstruct(mat, entries)
    return entries


def preview(path, n=40, seed=0, split="train", difficulty=1.0, long_boost=1.0, ood_rows=1):
    """Contact sheet: samples with boxes, labels, family and material, each above its 64x64
    model crop; the last ood_rows rows come from the held-out split test_ood."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    import data  # torch and torchvision: only the figure needs them, not the generator
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
        # The region the model sees, through data.py's own crop and resize (not a copy of them)
        boxes = [box for _, *box in digits]
        region = data.crop_image(img, data.crop_box(boxes))
        bottom.imshow(data.resize_region(region, 64))
    fig.suptitle(f"synthetic SVHN ({split}, last {ood_rows} row(s) {OOD_SPLIT}, difficulty "
                 f"{difficulty}): images with boxes, and the 64x64 crops a model sees")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_figure(fig, path, format="png", dpi=80)
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
    ap.add_argument("--list-families", action="store_true",
                    help="only print the glyph families of training and of test_ood")
    args = ap.parse_args(argv)
    sizes = {"train": args.train, "extra": args.extra, "test": args.test,
             OOD_SPLIT: args.test_ood}
    if min(sizes.values()) < 0 or args.difficulty < 0 or args.long_boost < 0:
        ap.error("sizes, --difficulty and --long-boost must be >= 0")
    if args.seed < 0:  # was numpy's "expected non-negative integer", naming no flag
        ap.error(f"--seed must be >= 0, got {args.seed}")
    try:
        if args.list_families:
            print("training families:", " ".join(families(False)))
            print(f"{OOD_SPLIT} families:", " ".join(families(True)))
            print("held-out materials:", " ".join(m for m in MATERIALS if m in HELD_OUT))
            return
        if args.preview:
            preview(args.preview, seed=args.seed, split=args.preview_split,
                    difficulty=args.difficulty, long_boost=args.long_boost)
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
    main()
