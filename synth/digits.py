"""Procedurally drawn digit families for the synthetic generator: skeletons in a unit box
(x right, y down) drawn as stroke, angular, brush, outline, stencil or dot-matrix glyphs, or
lit as seven segments, with the glyph variants that matter (1 with or without flag and foot,
7 with or without bar, open or closed 4, straight or curved tails on 6 and 9)."""
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from synth.random import choice

PROC_FAMILIES = ("stroke", "angular", "brush", "outline", "segment7", "stencil", "dotmatrix")
PROC_REF = 64  # height at which procedural glyphs are drawn
# Glyph variants drawn once per number: the flag of 1 (none, short, long) and the 4 (closed,
# open, open at the top).
FLAG1_CDF, FOUR_CDF = np.cumsum([0.25, 0.5, 0.25]), np.cumsum([0.5, 0.3, 0.2])


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
        flag1=("none", "short", "long")[choice(rng, FLAG1_CDF)],
        foot1=bool(rng.random() < 0.35), bar7=bool(rng.random() < 0.2),
        curve7=bool(rng.random() < 0.3), nose7=bool(rng.random() < 0.15),
        four=("closed", "open", "opentop")[choice(rng, FOUR_CDF)],
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
