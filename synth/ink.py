"""Drawing a line of text in a TrueType face as an ink mask (optionally with per-character
jitter, as handwriting, or with wide characters condensed, as a plate draws them), and the small
painting helpers the line styles share."""
import unicodedata
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from synth.fonts import load_font
from synth.surfaces import blend


def is_wide(c):
    """A character East Asian faces draw a full em wide (a Chinese, Japanese or Korean one)."""
    return unicodedata.east_asian_width(c) in ("W", "F")


def text_mask(rng, text, face, size, pad, tracking=0.0, jitter=0.0, slant=0.0, wide=1.0):
    """(H, W) float32 ink in [0, 1] of `text` at `size` px with `pad` px all round.

    tracking: extra advance per character, in sizes; jitter (0..1): per-character rotation,
    scale and baseline wobble, and per-character tracking noise, as handwriting has; slant:
    the mean italic shear (x per y) of a random slant and a small rotation; wide: the width of
    each wide character (is_wide) as a share of its face's."""
    im = _line(rng, text, face, size, pad, tracking, jitter, wide)
    if slant or rng.random() < 0.5:  # shear and rotate the ink only: cheaper than the image
        shear = rng.normal(slant, 0.12 if slant else 0.06)
        angle = np.deg2rad(rng.normal(0, 1.5))
        c, s = np.cos(angle), np.sin(angle)
        cx, cy = im.size[0] / 2, im.size[1] / 2
        a, b, d, e = c, s + shear, -s, c  # output (x, y) -> input, about the centre
        im = im.transform(im.size, Image.AFFINE, (a, b, cx - a * cx - b * cy, d, e,
                                                  cy - d * cx - e * cy), Image.BILINEAR)
    return np.asarray(im, np.float32) / 255


def _line(rng, text, face, size, pad, tracking, jitter, wide=1.0):
    """The 'L' image of the line, upright."""
    path, weight = face
    font = load_font(path, size, weight)
    ascent, descent = font.getmetrics()
    H = ascent + descent + 2 * pad
    if tracking == 0 and jitter == 0 and wide == 1:  # one call: the face's own kerning
        W = int(np.ceil(font.getlength(text))) + 2 * pad
        im = Image.new("L", (W, H))
        ImageDraw.Draw(im).text((pad, pad + ascent), text, font=font, fill=255, anchor="ls")
        return im
    squeezes = [wide if is_wide(c) else 1.0 for c in text]
    advances = [font.getlength(c) * q + tracking * size for c, q in zip(text, squeezes)]
    if jitter:
        advances = [a + rng.normal(0, 0.04 * jitter) * size for a in advances]
    W = int(np.ceil(sum(advances) + (1 + 0.5 * jitter) * size)) + 2 * pad
    ink = np.zeros((H, W), np.float32)
    wobble = rng.uniform(0, 2 * np.pi)
    period = rng.uniform(4, 12)
    x = float(pad)
    for i, (c, adv, squeeze) in enumerate(zip(text, advances, squeezes)):
        if c != " ":
            dy = jitter * size * (0.05 * np.sin(wobble + i / period * 2 * np.pi)
                                  + rng.normal(0, 0.02))
            _char(rng, ink, c, face, size, x, pad + ascent + dy, jitter, squeeze)
        x += adv
    return Image.fromarray((ink * 255).astype(np.uint8))


@lru_cache(maxsize=32768)
def _glyph(path, weight, size, c):
    """One character's 'L' image cropped to its box, and the box's (left, top) from the
    drawing origin (baseline): cached, since handwriting draws every character on its own."""
    font = load_font(path, size, weight)
    left, top, right, bottom = font.getbbox(c, anchor="ls")
    im = Image.new("L", (max(right - left, 1), max(bottom - top, 1)))
    ImageDraw.Draw(im).text((-left, -top), c, font=font, fill=255, anchor="ls")
    return im, left, top


def _char(rng, ink, c, face, size, x, baseline, jitter, squeeze=1.0):
    """One character into ink at (x, baseline), rotated and scaled by up to jitter's amount,
    its width times squeeze."""
    im, left, top = _glyph(face[0], face[1], size, c)
    if squeeze != 1:  # about the origin, as the advance that places it was
        im = im.resize((max(1, round(im.size[0] * squeeze)), im.size[1]), Image.BILINEAR)
        left = left * squeeze
    cx, cy = left + im.size[0] / 2, top + im.size[1] / 2  # its centre, from the origin
    if jitter:
        scale = 1 + rng.normal(0, 0.06 * jitter)
        angle = rng.normal(0, 6 * jitter)
        if abs(scale - 1) > 0.02:  # about the origin: the baseline stays where it is
            size_ = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
            im = im.resize(size_, Image.BILINEAR)
            cx, cy = cx * scale, cy * scale
        im = im.rotate(angle, resample=Image.BILINEAR, expand=True)  # about its centre
    a = np.asarray(im, np.float32) / 255
    left = int(round(x + cx - a.shape[1] / 2))
    paste_max(ink, a, left, int(round(baseline + cy - a.shape[0] / 2)))


def paste_max(dst, src, x, y):
    """dst = max(dst, src placed at (x, y)), clipped to dst (both 2-D)."""
    H, W = dst.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + src.shape[1], W), min(y + src.shape[0], H)
    if x1 > x0 and y1 > y0:
        part = src[y0 - y:y1 - y, x0 - x:x1 - x]
        np.maximum(dst[y0:y1, x0:x1], part, out=dst[y0:y1, x0:x1])


def flat(H, W, colour):
    """An (H, W, 3) float32 canvas of one colour (the camera adds the sensor's grain)."""
    img = np.empty((H, W, 3), np.float32)
    img[:] = np.asarray(colour, np.float32)
    return img


def paint(img, alpha, colour):
    """surfaces.blend within the box where alpha > 0, the colour as float32 (a float64 colour
    doubles the cost): most masks (lines, frames, screws) cover little of the image."""
    box = ink_box(alpha, 0)
    if box is not None:
        x0, y0, x1, y1 = box
        blend(img[y0:y1, x0:x1], alpha[y0:y1, x0:x1], np.asarray(colour, np.float32))


def ink_box(ink, level=0.1):
    """(x0, y0, x1, y1) of the pixels above level, or None when there are none."""
    rows = np.flatnonzero((ink > level).any(axis=1))
    cols = np.flatnonzero((ink > level).any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
