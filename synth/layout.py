"""One number's digits as glyph masks for the synthetic generator: TrueType or procedural
glyphs scaled, spaced and jittered along a line, warped together (rotation, shear, keystone),
each returned with its ink box."""
import numpy as np
from PIL import Image, ImageFilter

from synth.digits import PROC_FAMILIES, proc_glyph, proc_style
from synth.fonts import font_families, glyph

INK_LEVEL = 60  # where a glyph's ink counts for its box (of 255)


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
    return [glyph(face, str(x)) for x in digits], rng.uniform(0.45, 0.9)


def layout_number(rng, digits, family, ink_h, d):
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


def _perspective_coeffs(dst, src):
    """Coefficients for Image.transform(PERSPECTIVE) mapping output points dst to input src."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    return np.linalg.solve(np.array(rows, float), np.array(rhs, float)).tolist()
