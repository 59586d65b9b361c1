"""Display styles of the text-line generator: 7-segment LCD/LED/VFD readouts (decimal points,
dim unlit segments, glare, coloured backlights) and dot-matrix text (LED boards, printer dots)."""
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from synth.ink import flat, paint, text_mask

# Lit segments per character (a top, b top right, c bottom right, d bottom, e bottom left,
# f top left, g middle). Letters that would read as a digit (O, S, I, Z) are left out.
SEGMENTS = {
    "0": "abcdef", "1": "bc", "2": "abdeg", "3": "abcdg", "4": "bcfg", "5": "acdfg",
    "6": "acdefg", "7": "abc", "8": "abcdefg", "9": "abcdfg", "A": "abcefg", "b": "cdefg",
    "C": "adef", "c": "deg", "d": "bcdeg", "E": "adefg", "F": "aefg", "G": "acdef",
    "H": "bcefg", "h": "cefg", "J": "bcde", "L": "def", "n": "ceg", "o": "cdeg", "P": "abefg",
    "q": "abcfg", "r": "eg", "t": "defg", "U": "bcdef", "u": "cde", "y": "bcdfg", "-": "g",
    "_": "d", "=": "dg", " ": "",
}
POINTS = ".,"  # drawn as the decimal point of the cell before
SEVEN_CHARS = frozenset(SEGMENTS) | frozenset(POINTS) | {":"}
LED_COLOURS = ((255, 40, 30), (60, 255, 80), (255, 170, 20), (80, 160, 255), (255, 255, 255))
BACKLIGHTS = ((170, 190, 150), (150, 180, 200), (220, 160, 70), (130, 200, 120),
              (200, 200, 200))


def seven_segment_covers(text):
    return set(text) <= SEVEN_CHARS


def _cells(text):
    """[(segments, point, colon)] one per digit cell: '.' and ',' join the cell before."""
    cells = []
    for c in text:
        if c in POINTS and cells and not cells[-1][1] and not cells[-1][2]:
            cells[-1] = (cells[-1][0], True, False)
        elif c in POINTS:
            cells.append(("", True, False))
        elif c == ":":
            cells.append(("", False, True))
        else:
            cells.append((SEGMENTS[c], False, False))
    return cells


def _segment_polys(x, y, w, h, t, slant):
    """{name: polygon} of one cell with top left (x, y), size w x h, stroke t, italic slant."""
    g = t * 0.12
    half = h / 2

    def hseg(y0):
        return [(x + g, y0), (x + t / 2 + g, y0 - t / 2), (x + w - t / 2 - g, y0 - t / 2),
                (x + w - g, y0), (x + w - t / 2 - g, y0 + t / 2), (x + t / 2 + g, y0 + t / 2)]

    def vseg(x0, y0, y1):
        return [(x0, y0 + g), (x0 + t / 2, y0 + t / 2 + g), (x0 + t / 2, y1 - t / 2 - g),
                (x0, y1 - g), (x0 - t / 2, y1 - t / 2 - g), (x0 - t / 2, y0 + t / 2 + g)]

    polys = {"a": hseg(y + t / 2), "g": hseg(y + half), "d": hseg(y + h - t / 2),
             "f": vseg(x + t / 2, y + t / 2, y + half),
             "b": vseg(x + w - t / 2, y + t / 2, y + half),
             "e": vseg(x + t / 2, y + half, y + h - t / 2),
             "c": vseg(x + w - t / 2, y + half, y + h - t / 2)}
    base = y + h
    return {k: [(px + (base - py) * slant, py) for px, py in p] for k, p in polys.items()}


def seven_segment(rng, text, variant, size):
    """(img, ink) of a 7-segment readout of text, `size` px tall digits."""
    h = size
    w = h * rng.uniform(0.45, 0.6)
    t = h * rng.uniform(0.1, 0.17)
    slant = rng.uniform(0, 0.18)
    gap = w * rng.uniform(0.25, 0.5)
    pad = int(h * 0.8)
    cells = _cells(text)
    widths = [w * 0.35 if colon else w for _, _, colon in cells]
    W = int(sum(widths) + gap * len(cells) + 2 * pad + h * slant)
    H = int(h + 2 * pad)
    lit = Image.new("L", (W, H))
    dim = Image.new("L", (W, H))
    dl, dd = ImageDraw.Draw(lit), ImageDraw.Draw(dim)
    x = float(pad)
    r = t * 0.55
    for (segs, point, colon), cw in zip(cells, widths):
        if colon:
            for fy in (0.3, 0.7):
                cx = x + cw / 2 + (1 - fy) * h * slant
                dl.ellipse([cx - r, pad + fy * h - r, cx + r, pad + fy * h + r], fill=255)
        else:
            for name, poly in _segment_polys(x, pad, cw, h, t, slant).items():
                (dl if name in segs else dd).polygon(poly, fill=255)
            cx = x + cw + gap / 2
            (dl if point else dd).ellipse([cx - r, pad + h - 2 * r, cx + r, pad + h], fill=255)
        x += cw + gap
    lit_a = np.asarray(lit, np.float32) / 255
    dim_a = np.asarray(dim, np.float32) / 255
    return _display_colours(rng, variant, lit, lit_a, dim_a, h), lit_a


def _display_colours(rng, variant, lit, lit_a, dim_a, h):
    """The readout's colours: LCD (dark on a backlight), LED (glowing on black), VFD (cyan)."""
    H, W = lit_a.shape
    if variant == "lcd":
        back = np.array(BACKLIGHTS[int(rng.integers(len(BACKLIGHTS)))], np.float32)
        img = flat(H, W, back * rng.uniform(0.8, 1.1))
        fg = back * rng.uniform(0.1, 0.3)
        paint(img, dim_a * rng.uniform(0.04, 0.15), fg)
        paint(img, _shadow(lit, h) * 0.3, fg)  # the segments' shadow on the reflector
        paint(img, lit_a, fg)
    else:
        colour = np.array(LED_COLOURS[int(rng.integers(len(LED_COLOURS)))], np.float32)
        if variant == "vfd":
            colour = np.array([90, 255, 210], np.float32)
        img = flat(H, W, rng.uniform(5, 40, 3))
        paint(img, dim_a * rng.uniform(0.05, 0.18), colour)
        glow = np.asarray(lit.filter(ImageFilter.GaussianBlur(h * 0.08)), np.float32) / 255
        img += glow[..., None] * colour * rng.uniform(0.2, 0.6)
        paint(img, lit_a, colour)
        if variant == "vfd":  # the grid mesh in front of a vacuum fluorescent display
            step = max(2, int(h / 10))
            img[::step] *= 0.6
            img[:, ::step] *= 0.6
    if rng.random() < 0.4:
        _glare(rng, img)
    return img


def _shadow(lit, h):
    shifted = lit.transform(lit.size, Image.AFFINE, (1, 0, -h * 0.05, 0, 1, -h * 0.05))
    return np.asarray(shifted.filter(ImageFilter.GaussianBlur(h * 0.03)), np.float32) / 255


def _glare(rng, img):
    """A soft diagonal band of reflected light across the cover glass."""
    H, W = img.shape[:2]
    yy, xx = np.ogrid[0:H, 0:W]
    t = rng.uniform(0.3, 1.2)
    d = (xx * np.cos(t) + yy * np.sin(t)) - rng.uniform(0, W)
    band = np.exp(-(d / (rng.uniform(0.1, 0.4) * H + 1)) ** 2)
    img += band[..., None].astype(np.float32) * rng.uniform(40, 120)


def dot_matrix(rng, text, variant, face, size):
    """(img, ink): text through a tiny raster of `face`, each pixel a dot `pitch` px apart."""
    small = 8 if "PressStart" in face[0] else int(rng.integers(11, 14))
    raster = text_mask(rng, text, face, small, pad=1) > 0.45
    rows = raster.shape[0]
    pitch = int(np.clip(round(size / max(rows - 3, 1)), 3, 9))
    dot = np.zeros((pitch, pitch), np.float32)
    yy, xx = np.mgrid[0:pitch, 0:pitch] + 0.5 - pitch / 2
    if variant == "square":
        dot[1:, 1:] = 1
    else:
        radius = pitch * (0.55 if variant == "paper" else rng.uniform(0.35, 0.48))
        dot = np.clip(radius + 0.5 - np.hypot(yy, xx), 0, 1).astype(np.float32)
    pad = int(size * 0.6)
    lit_a = np.pad(np.kron(raster.astype(np.float32), dot), pad)
    H, W = lit_a.shape
    if variant == "paper":  # a printer's dots: dark ink on paper, no unlit dots
        img = flat(H, W, rng.uniform(200, 250) - rng.uniform(0, 20, 3))
        paint(img, lit_a * rng.uniform(0.6, 1.0), rng.uniform(10, 70, 3))
        return img, lit_a
    every = np.pad(np.kron(np.ones(raster.shape, np.float32), dot), pad)
    lit = Image.fromarray((lit_a * 255).astype(np.uint8))
    return _display_colours(rng, "led", lit, lit_a, every, size), lit_a
