"""One synthetic text line of any alphabet: `render_line` picks a style that draws every
character of the text (a TrueType face covering them all, or a procedural display), paints it,
slants it, crops it with a margin that never cuts a character, and passes it through the
replica's light and camera. Held-out families and variants (test_ood) are listed here and in
synth.textfaces.HELD_OUT_FAMILIES, and nowhere else."""
import numpy as np
from PIL import Image

from synth.displays import dot_matrix, seven_segment, seven_segment_covers
from synth.ink import ink_box
from synth.random import cdf, choice
from synth.scene import camera
from synth.surfaces import apply_lighting
from synth.textfaces import covering, describe, draws, role_faces, system_faces
from synth.ttf_styles import handwriting, plate, printed, stamped

# style: (weight, variants, face role or None for procedural, painter)
STYLES = {
    "printed": (0.22, ("label", "receipt", "inverse"), "printed", printed),
    "handwriting": (0.2, ("plain", "ruled", "boxes", "grid"), "handwriting", handwriting),
    "plate": (0.14, ("eu", "us", "yellow"), "plate", plate),
    "display7": (0.12, ("lcd", "led", "vfd"), None, None),
    "dotmatrix": (0.12, ("led", "paper", "square"), "dotmatrix", dot_matrix),
    "stamped": (0.2, ("stamp", "engraved", "embossed"), "stamped", stamped),
}
# Style variants never drawn for train/val; test_ood draws them half of the time.
HELD_OUT_VARIANTS = frozenset({("display7", "vfd"), ("dotmatrix", "square"), ("plate", "yellow"),
                               ("handwriting", "grid"), ("printed", "inverse"),
                               ("stamped", "embossed")})
SIZE = (24, 64)  # text size in pixels (the font's em), drawn log-uniformly
MARGIN = (0.05, 0.45)  # crop margin on each side, in text sizes
MAX_ASPECT = 10.0  # wider crops get taller margins


def variants(style, held_out):
    """The variants of a style in the training pool, or the held-out ones."""
    return tuple(v for v in STYLES[style][1] if ((style, v) in HELD_OUT_VARIANTS) == held_out)


def style_faces(style, text, held_out):
    """Faces of the pool that draw all of text for a style; None: procedural and covering."""
    role = STYLES[style][2]
    if role is None:
        return None if seven_segment_covers(text) else []
    return covering(role, held_out, text)


def uncovered(text, held_out=False):
    """Characters of text that no face of the pool, no procedural style and no installed system
    font draws."""
    faces = {f[1][0] for style in STYLES if STYLES[style][2]
             for f in role_faces(STYLES[style][2], held_out)}
    return sorted({c for c in text
                   if not seven_segment_covers(c) and not any(draws(p, c) for p in faces)
                   and not system_faces(frozenset(c))})


def render_line(rng, text, held_out=False, style=None, variant=None, meta=None):
    """The line `text` as a PIL RGB image, text about 24-64 px tall, cropped with a margin.

    held_out: draw only test_ood's families (and held-out variants half of the time).
    style/variant force a choice; meta (a dict) receives style, variant, family and the ink
    box (x0, y0, x1, y1) in the image. ValueError naming characters no style draws."""
    style, variant, face = _choose(rng, text, held_out, style, variant)
    size = int(np.exp(rng.uniform(*np.log(SIZE))))
    if style == "display7":
        img, ink = seven_segment(rng, text, variant, size)
    else:
        img, ink = STYLES[style][3](rng, text, variant, face[1], size)
    img, box = _crop(rng, img, ink, size)
    apply_lighting(rng, img, 1.0)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    out = camera(rng, out, box[3] - box[1], 1.0)
    if meta is not None:
        meta.update(style=style, variant=variant, family=face[0] if face else None, box=box)
    return out


def _choose(rng, text, held_out, style, variant):
    """(style, variant, (family, face) or None) drawn among the styles that draw all of text."""
    options = {}
    for name in STYLES if style is None else [style]:
        faces = style_faces(name, text, held_out)
        if faces is None or faces:
            options[name] = faces
    if not options:
        missing = uncovered(text, held_out)
        pool = "held-out (test_ood)" if held_out else "training"
        if missing:
            raise ValueError(f"no {pool} typeface or style draws {describe(missing)}")
        raise ValueError(f"no single {pool} typeface or style draws all of {text!r}")
    names = list(options)
    style = names[int(choice(rng, cdf([STYLES[n][0] for n in names])))]
    if variant is None:
        pool = variants(style, False)
        if held_out and variants(style, True) and rng.random() < 0.5:
            pool = variants(style, True)
        variant = pool[int(rng.integers(len(pool)))]
    face = None
    if options[style]:  # a family first, then one of its faces: big families weigh no more
        families = sorted({fam for fam, _ in options[style]})
        family = families[int(rng.integers(len(families)))]
        faces = [f for f in options[style] if f[0] == family]
        face = faces[int(rng.integers(len(faces)))]
    return style, variant, face


def _crop(rng, img, ink, size):
    """The ink's box plus a random margin per side (never into the ink), at most MAX_ASPECT
    wide: -> (image (h, w, 3) float32, ink box (x0, y0, x1, y1) in it)."""
    H, W = ink.shape
    x0, y0, x1, y1 = ink_box(ink) or (0, 0, W, H)
    ml, mt, mr, mb = (int(round(m)) for m in rng.uniform(*MARGIN, 4) * size)
    ml, mt, mr, mb = max(ml, 1), max(mt, 1), max(mr, 1), max(mb, 1)
    w = x1 - x0 + ml + mr
    h = y1 - y0 + mt + mb
    if w > MAX_ASPECT * h:
        grow = int(np.ceil(w / MAX_ASPECT)) - h
        mt += grow // 2
        mb += grow - grow // 2
    top, left = y0 - mt, x0 - ml
    bottom, right = y1 + mb, x1 + mr
    # the canvas may be too small for a wide margin: extend it with its own edge pixels
    padding = ((max(0, -top), max(0, bottom - H)), (max(0, -left), max(0, right - W)), (0, 0))
    if any(p for pair in padding[:2] for p in pair):
        img = np.pad(img, padding, mode="edge")
        top, left = top + padding[0][0], left + padding[1][0]
        bottom, right = bottom + padding[0][0], right + padding[1][0]
    out = np.ascontiguousarray(img[top:bottom, left:right])
    return out, (ml, mt, ml + x1 - x0, mt + y1 - y0)
