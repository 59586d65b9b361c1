"""Everything the synthetic generator paints besides the glyphs: colours, walls (plain, brick,
wood, siding, stucco), clutter beside the number, plates and tiles behind it, the materials
its ink is made of (painted, embossed, metal, engraved) and the light on the whole image."""
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from synth.fonts import glyph
from synth.random import cdf, choice

CLUTTER_CHARS = "ABCDEFGHKLMNPRSTUWabdehnrst0123456789#-"
LUMA = np.array([0.299, 0.587, 0.114])
SAT_LEVELS = np.array([0.0, 0.15, 0.35, 0.7])
SAT_CDF = np.cumsum([0.25, 0.35, 0.25, 0.15])
BACKGROUNDS = ("wall", "brick", "wood", "siding", "stucco")
BACKGROUND_P = np.array([0.5, 0.12, 0.12, 0.12, 0.14])


def random_colour(rng, lum=None):
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


def background(rng, w, h, d, unit):
    """A wall: plain, brick, wood, siding or stucco, with gradient and grain. unit ~ box height."""
    d = min(d, 1.5)  # stronger walls would hide the digits rather than make reading harder
    base = random_colour(rng)
    kind = BACKGROUNDS[choice(rng, cdf(BACKGROUND_P))]
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


def blend(img, alpha, colour):
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


def paint_clutter(rng, img, union, ink_h, d, faces):
    """Neighbouring characters, frame edges and shapes beside the number (never on it)."""
    H, W = img.shape[:2]
    x0, y0, x1, y1 = union
    for _ in range(rng.poisson(1.2 * d)):
        side = rng.choice([-1, 1])
        gap = rng.uniform(0.25, 1.2) * ink_h
        kind, colour = rng.random(), random_colour(rng)
        if kind < 0.55:  # a neighbouring character, often cut by the image edge
            face = faces[rng.integers(len(faces))]
            g = glyph(face, str(rng.choice(list(CLUTTER_CHARS))))
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


def paint_plate(rng, img, union, bh, rounded):
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
    blend(win, np.asarray(plate, np.float32) / 255, random_colour(rng))
    if rng.random() < 0.4:
        line = Image.new("L", size)
        inset = max(2, int(bh / 10))
        ImageDraw.Draw(line).rounded_rectangle(
            [px0 + inset, py0 + inset, px1 - inset, py1 - inset], radius=radius,
            outline=255, width=max(1, int(bh / 14)))
        blend(win, np.asarray(line, np.float32) / 255, random_colour(rng))
    if rng.random() < 0.3:  # screws in the corners
        screw = Image.new("L", size)
        r, dr = max(1, bh / 16), bh / 6
        for x, y in ((px0 + dr, py0 + dr), (px1 - dr, py0 + dr), (px0 + dr, py1 - dr),
                     (px1 - dr, py1 - dr)):
            ImageDraw.Draw(screw).ellipse([x - r, y - r, x + r, y + r], fill=255)
        blend(win, np.asarray(screw, np.float32) / 255, random_colour(rng, 180))


def paint_tiles(rng, img, boxes, bh):
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
    blend(img, np.asarray(tile, np.float32) / 255, random_colour(rng, rng.uniform(190, 245)))
    blend(img, np.asarray(grout, np.float32) / 255, random_colour(rng, rng.uniform(90, 170)))


def _metal_colour(rng, H, W):
    """Brass, steel or bronze with a vertical gradient and a specular band: (H, 1, 3)."""
    tone = [np.array([200, 170, 90]), np.array([185, 190, 195]), np.array([140, 100, 60]),
            np.array([60, 60, 65])][rng.integers(4)]
    yy = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    band = np.exp(-((yy - rng.uniform(0.2, 0.8)) / rng.uniform(0.08, 0.25)) ** 2)
    shade = 0.7 + 0.5 * yy * rng.choice([-1, 1]) + rng.uniform(0.2, 0.6) * band
    return np.clip(tone * shade, 0, 255).astype(np.float32)  # (H, 1, 3): same along a row


def _under_ink(img, alpha, fg):
    """The mean colour of the wall where the ink will be (fg where there is no ink)."""
    return img[alpha > 0.5].mean(axis=0) if (alpha > 0.5).any() else fg


def apply_material(rng, img, alpha, material, fg, bh, d):
    """Ink (alpha, full image) onto the wall as the material."""
    s = max(1, int(round(bh / rng.uniform(12, 25))))
    sx, sy = rng.choice([-1, 1]) * s, rng.choice([-1, 1]) * s
    if material == "embossed":  # raised: lit edge on one side, shadow on the other, same colour
        base = _under_ink(img, alpha, fg)
        blend(img, _shifted(alpha, sx, sy) * 0.8, base * 0.45)
        blend(img, _shifted(alpha, -sx, -sy) * 0.8, np.minimum(base * 1.5 + 40, 255))
        blend(img, alpha, base + (fg - base) * rng.uniform(0.5, 0.85))
    elif material == "engraved":  # cut in: shadow inside on the lit side, dark floor
        base = _under_ink(img, alpha, fg)
        blend(img, alpha, fg)
        blend(img, alpha * _shifted(1 - alpha, sx, sy), base * 0.3)
        blend(img, _shifted(alpha, -sx, -sy) * (1 - alpha) * 0.7, np.minimum(base + 60, 255))
    elif material == "metal":  # cut-out letters off the wall: soft drop shadow, metallic face
        shadow = Image.fromarray((_shifted(alpha, 2 * sx, 2 * sy) * 255).astype(np.uint8))
        shadow = np.asarray(shadow.filter(ImageFilter.GaussianBlur(s)), np.float32) / 255
        img *= 1 - 0.55 * shadow[..., None]
        H, W = alpha.shape
        face = _metal_colour(rng, H, W)
        face += float(fg @ LUMA) - float(face.mean(axis=(0, 1)) @ LUMA)  # keep the contrast
        blend(img, alpha, np.clip(face, 0, 255))
    else:  # painted, printed, on a plate; sometimes with a hard drop shadow
        if rng.random() < 0.25 * d:
            blend(img, _shifted(alpha, sx, sy), fg * 0.35)
        blend(img, alpha, fg)


def apply_lighting(rng, img, d):
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
