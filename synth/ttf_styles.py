"""TrueType styles of the text-line generator: printed labels and receipts, licence plates,
handwriting on paper and forms, and stamped, engraved or embossed codes. Each painter returns
the (H, W, 3) float32 image and the (H, W) ink of its text, with room around the text."""
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from synth.ink import flat, ink_box, is_wide, paint, text_mask
from synth.surfaces import apply_material, random_colour

PLATE_SCHEMES = {  # (plate, text) colours: two colours per plate
    "eu": (((235, 235, 230), (20, 20, 25)),),
    "us": (((240, 240, 235), (25, 40, 120)), ((245, 245, 240), (150, 20, 30)),
           ((235, 240, 235), (20, 90, 40)), ((30, 30, 35), (235, 235, 235))),
    "yellow": (((245, 200, 30), (15, 15, 15)),),
}
# Plates draw every character in one narrow cell (a Chinese plate's province 45 x 90 mm, as its
# letters), while a CJK face draws a full em wide: such characters are condensed to this share
# of their width. Texts without one draw no extra number, so their images stay as they were.
WIDE_ON_PLATES = (0.5, 1.0)
INKS = ((25, 45, 150), (20, 20, 30), (95, 95, 105), (150, 25, 30))  # pen blue, black, pencil, red
STAMP_INKS = ((180, 30, 40), (30, 50, 160), (100, 40, 130), (25, 25, 30))


def _smooth(rng, H, W, cells):
    """Low-frequency noise in about [-2, 2]."""
    small = Image.fromarray(rng.normal(0, 1, (cells[1], cells[0])).astype(np.float32))
    return np.asarray(small.resize((W, H), Image.BICUBIC))


def printed(rng, text, variant, face, size):
    """A label (dark on a light colour), a receipt (grey thermal print, faded in patches), or
    inverse (light on dark)."""
    tracking = rng.uniform(-0.02, 0.15) if rng.random() < 0.3 else 0.0
    ink = text_mask(rng, text, face, size, int(size * 0.5), tracking)
    H, W = ink.shape
    if variant == "receipt":
        img = flat(H, W, rng.uniform(225, 250) - rng.uniform(0, 12, 3))
        fade = np.clip(1 - 0.25 * np.abs(_smooth(rng, H, W, (4, 2))), 0.35, 1)
        paint(img, ink * fade * rng.uniform(0.6, 1.0), rng.uniform(20, 90) + rng.uniform(0, 15, 3))
    elif variant == "inverse":
        img = flat(H, W, random_colour(rng, rng.uniform(10, 90)))
        paint(img, ink, random_colour(rng, rng.uniform(190, 255)))
    else:
        img = flat(H, W, random_colour(rng, rng.uniform(160, 250)))
        paint(img, ink, random_colour(rng, rng.uniform(0, 80)))
    return img, ink


def plate(rng, text, variant, face, size):
    """A plate of two colours around the text: border, screws, and on 'eu' a blue band. Wide
    (CJK) characters are condensed to WIDE_ON_PLATES of their face's width."""
    wide = rng.uniform(*WIDE_ON_PLATES) if any(is_wide(c) for c in text) else 1.0
    ink = text_mask(rng, text, face, size, int(size * 0.8), rng.uniform(0, 0.12), wide=wide)
    H, W = ink.shape
    x0, y0, x1, y1 = ink_box(ink) or (0, 0, W, H)
    schemes = PLATE_SCHEMES[variant]
    back, fg = (np.array(c, np.float32) for c in schemes[int(rng.integers(len(schemes)))])
    img = flat(H, W, random_colour(rng))  # the car around the plate
    mx, my = size * rng.uniform(0.25, 0.6), size * rng.uniform(0.15, 0.4)
    rect = [x0 - mx, y0 - my, x1 + mx, y1 + my]
    if variant == "eu":
        rect[0] -= size * 0.55
    layer = Image.new("L", (W, H))
    draw = ImageDraw.Draw(layer)
    radius = size * rng.uniform(0.05, 0.25)
    draw.rounded_rectangle(rect, radius=radius, fill=255)
    paint(img, np.asarray(layer, np.float32) / 255, back * rng.uniform(0.85, 1.05))
    marks = Image.new("L", (W, H))
    draw = ImageDraw.Draw(marks)
    if rng.random() < 0.7:
        inset = size * 0.07
        draw.rounded_rectangle([rect[0] + inset, rect[1] + inset, rect[2] - inset,
                                rect[3] - inset], radius=radius, outline=255,
                               width=max(1, int(size * 0.05)))
    paint(img, np.asarray(marks, np.float32) / 255, fg)
    if variant == "eu":
        _eu_band(rng, img, rect, size)
    if rng.random() < 0.6:
        _screws(rng, img, rect, size)
    relief = np.roll(ink, (max(1, int(size * 0.04)),) * 2, axis=(0, 1))
    paint(img, relief * 0.35, back * 0.4)  # pressed plates: the letters cast a shadow
    paint(img, ink, fg)
    return img, ink


def _eu_band(rng, img, rect, size):
    """The blue band at a plate's left end with a ring of yellow stars."""
    x0, y0, _, y1 = (int(v) for v in rect)
    x1 = x0 + int(size * 0.45)
    img[max(y0, 0):y1, max(x0, 0):x1] = (30, 60, 170)
    cx, cy, r = (x0 + x1) / 2, y0 + (y1 - y0) * 0.35, size * 0.15
    for k in range(12):
        a = k * np.pi / 6
        sx, sy = int(cx + r * np.cos(a)), int(cy + r * np.sin(a))
        img[max(sy - 1, 0):sy + 1, max(sx - 1, 0):sx + 1] = (240, 210, 40)


def _screws(rng, img, rect, size):
    """Two screw heads, on the plate's top edge or at its ends."""
    H, W = img.shape[:2]
    layer = Image.new("L", (W, H))
    draw = ImageDraw.Draw(layer)
    r = size * rng.uniform(0.06, 0.1)
    if rng.random() < 0.5:
        ys = [rect[1] + size * 0.12] * 2
        xs = [rect[0] + (rect[2] - rect[0]) * 0.25, rect[0] + (rect[2] - rect[0]) * 0.75]
    else:
        ys = [(rect[1] + rect[3]) / 2] * 2
        xs = [rect[0] + size * 0.15, rect[2] - size * 0.15]
    for x, y in zip(xs, ys):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
    paint(img, np.asarray(layer, np.float32) / 255, rng.uniform(120, 200, 3))


def handwriting(rng, text, variant, face, size):
    """Handwriting with per-character jitter on paper: plain, ruled, a form's boxes, a grid."""
    ink = text_mask(rng, text, face, size, int(size * 0.5), rng.uniform(0, 0.08),
                    rng.uniform(0.4, 1.0), slant=0.12)
    width = rng.random()
    if width < 0.3:  # a broad pen
        ink = _filtered(ink, ImageFilter.MaxFilter(3))
    elif width < 0.45:  # a fine pen
        ink = np.minimum(ink, _filtered(ink, ImageFilter.GaussianBlur(0.7)) * 1.3)
    H, W = ink.shape
    img = flat(H, W, rng.uniform(225, 252) - rng.uniform(0, 20, 3) * [0, 0.3, 1])
    lines = Image.new("L", (W, H))
    draw = ImageDraw.Draw(lines)
    box = ink_box(ink) or (0, 0, W, H)
    if variant == "ruled":
        step = size * rng.uniform(1.0, 1.5)
        y = box[3] - size * rng.uniform(0.0, 0.3)
        for k in range(-3, 4):
            draw.line([(0, y + k * step), (W, y + k * step)], fill=255, width=1)
    elif variant == "boxes":
        m = size * rng.uniform(0.15, 0.4)
        cells = max(1, len(text))
        left, right = box[0] - m, box[2] + m
        for k in range(cells + 1):
            x = left + (right - left) * k / cells
            draw.line([(x, box[3] + m), (x, box[3] + m - size * 0.3)], fill=255, width=1)
        draw.rectangle([left, box[1] - m, right, box[3] + m], outline=255, width=1)
    elif variant == "grid":
        step = max(4, int(size * rng.uniform(0.4, 0.7)))
        for v in range(int(rng.integers(step)), max(W, H), step):
            draw.line([(v, 0), (v, H)], fill=255)
            draw.line([(0, v), (W, v)], fill=255)
    line_colour = (120, 150, 215) if rng.random() < 0.7 else (200, 120, 120)
    paint(img, np.asarray(lines, np.float32) / 255 * rng.uniform(0.4, 0.9), line_colour)
    colour = np.array(INKS[int(rng.integers(len(INKS)))], np.float32)
    paint(img, ink * rng.uniform(0.75, 1.0), colour)
    return img, ink


def _filtered(ink, flt):
    im = Image.fromarray((ink * 255).astype(np.uint8)).filter(flt)
    return np.asarray(im, np.float32) / 255


def stamped(rng, text, variant, face, size):
    """A rubber stamp (patchy ink, often in a frame) or a code engraved in / embossed on metal."""
    ink = text_mask(rng, text, face, size, int(size * 0.5), rng.uniform(0, 0.1))
    H, W = ink.shape
    if variant == "stamp":
        img = flat(H, W, rng.uniform(200, 250) - rng.uniform(0, 30, 3))
        if rng.random() < 0.6:
            x0, y0, x1, y1 = ink_box(ink) or (0, 0, W, H)
            m = size * rng.uniform(0.2, 0.5)
            frame = Image.new("L", (W, H))
            ImageDraw.Draw(frame).rectangle([x0 - m, y0 - m, x1 + m, y1 + m], outline=255,
                                            width=max(1, int(size * 0.06)))
            ink_all = np.maximum(ink, np.asarray(frame, np.float32) / 255)
        else:
            ink_all = ink
        patchy = np.clip(0.8 + 0.25 * _smooth(rng, H, W, (8, 3)), 0.3, 1)
        speckle = rng.random((H, W), dtype=np.float32) > rng.uniform(0.02, 0.15)
        colour = STAMP_INKS[int(rng.integers(len(STAMP_INKS)))]
        paint(img, ink_all * patchy * speckle, colour)
        return img, ink
    tone = np.array(((185, 190, 195), (200, 170, 90), (120, 125, 130), (60, 60, 65))
                    [int(rng.integers(4))], np.float32)
    streaks = _smooth(rng, H, W, (2, max(2, H // 3))) * 8
    img = flat(H, W, tone) + streaks[..., None]
    fg = tone * rng.uniform(0.3, 0.6) if variant == "engraved" else tone * rng.uniform(0.9, 1.2)
    apply_material(rng, img, ink, variant, fg, size, 1.0)
    return img, ink
