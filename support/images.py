"""Image files, in one place and without torch: opened under a pixel limit (read from the header,
before decoding), turned as their EXIF says, as RGB; their size and aspect; the recipe's crop
geometry in whole pixels; image files found in folders (symbolic links followed once, loops and
FIFOs skipped and named).

formats/ and prepare_data.py read images here (no torch to import); crops.py adds the resizing
into the network's input on top of it.
"""
import contextlib
import math
import os
import stat

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from support.inputs import check_file

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".avif", ".ppm",
              ".pgm")
GROW = 1.3                    # the union box's width and height x 1.3, around its centre
# Images (and crop boxes) above this many pixels are refused, read from the header before any
# decoding (--max-pixels raises it). SVHN's largest image is ~0.6 MP and a phone photo 12-48 MP;
# a 13,000 x 13,000 image would decode to 0.5 GB (twice that while converting to RGB) in every
# loader worker, and a 50,000 x 50,000 PNG of a few KB to 7.5 GB.
MAX_PIXELS = 50_000_000
# An image (or a user's box) with a side under MIN_SIDE pixels, or longer than MAX_ASPECT times its
# other side, holds no readable text: resized to the model's input it would be a smear that the
# model reads as something, with a confidence. It is refused by name (a skip in predict.py). SVHN's
# images are at least 20 pixels high (p5) and 876:501 at most, and a receipt line is about 30:1.
MIN_SIDE = 2
MAX_ASPECT = 100.0
BACKDROP_SIDE = 256  # a transparent image's backdrop is judged on a copy this small (a side)


# -----------------------------------------------------------------------------
# image geometry

def too_thin(width, height):
    """Why a width x height image or region cannot hold text (a short reason), or None."""
    short, long = sorted((width, height))
    if short < MIN_SIDE:
        return f"{width} x {height} pixels: too thin to hold text (under {MIN_SIDE} pixels a side)"
    if long > MAX_ASPECT * short:
        return f"{width} x {height} pixels: too thin to hold text (longer than {MAX_ASPECT:g}:1)"
    return None


def whole_pixels(left, top, width, height):
    """A box in whole pixels, each number truncated toward zero by int() as the recipe does
    (a left of -3.75 becomes -3, not -4); an empty box is widened to 1 pixel."""
    return int(left), int(top), max(int(width), 1), max(int(height), 1)


def crop_box(boxes, grow=GROW):
    """[left, top, width, height] digit boxes -> the crop (left, top, width, height) in pixels:
    the union of the boxes, its width and height times `grow` around its centre, in exactly the
    recipe's arithmetic (the order of the operations decides the last bit, then int())."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(b) == 0:
        raise ValueError("crop_box: no boxes")
    x0 = b[:, 0].min()
    y0 = b[:, 1].min()
    x1 = (b[:, 0] + b[:, 2]).max()
    y1 = (b[:, 1] + b[:, 3]).max()
    w = (x1 - x0) * grow
    h = (y1 - y0) * grow
    cx = (x1 + x0) / 2
    cy = (y1 + y0) / 2
    return whole_pixels(cx - w / 2, cy - h / 2, w, h)


def crop_image(img, box):
    """Crop a PIL image to box (left, top, width, height); parts outside the image come back
    black."""
    # PIL's crop fills outside the image with zeros: no clamping, so digit boxes keep their
    # place relative to the crop and the crop's aspect ratio is the one the recipe asked for.
    left, top, width, height = box
    return img.crop((left, top, left + width, top + height))


# -----------------------------------------------------------------------------
# opening image files

# formats a phone or camera writes that Pillow cannot decode, and what to do about them
UNREADABLE_FORMATS = {".heic": "an HEIC photo", ".heif": "an HEIF photo",
                      ".dng": "a camera RAW file", ".cr2": "a camera RAW file",
                      ".nef": "a camera RAW file", ".arw": "a camera RAW file", ".pdf": "a PDF",
                      ".svg": "an SVG drawing"}


def unreadable_format(path):
    """What to do with a file of a format Pillow cannot read, judged by its extension (an
    iPhone's HEIC photos, camera RAW); None for any other file."""
    kind = UNREADABLE_FORMATS.get(os.path.splitext(str(path))[1].lower())
    if kind is None:
        return None
    return f"{kind}, which Pillow cannot decode: convert it to JPEG or PNG first"


def _open(path):
    """Image.open(path); a file of a format Pillow cannot read says what to do with it."""
    try:
        return Image.open(path)
    except UnidentifiedImageError as e:
        advice = unreadable_format(path)
        if advice is None:
            raise
        raise ValueError(advice) from e


@contextlib.contextmanager
def _header(path, max_pixels, root=None):
    """Yield the image at `path` opened (its header read, nothing decoded), once it is a regular
    file (inside `root` when given) of at most max_pixels pixels. max_pixels replaces PIL's
    global limit (a warning at 89 MP, an error past 179 MP), so that one flag decides, in both
    directions."""
    old_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        check_file(path, root)
        with _open(path) as img:  # reads the header only
            width, height = img.size
            if width * height > max_pixels:
                raise ValueError(f"{width} x {height} pixels, above the limit of {max_pixels:,} "
                                 f"(--max-pixels)")
            thin = too_thin(width, height)
            if thin:
                raise ValueError(thin)
            yield img
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit


def open_image(path, box=None, max_pixels=MAX_PIXELS, draft=None, root=None, inside=False):
    """Read an image file (any PIL mode) as RGB: the one way every script opens images.

    box: (left, top, width, height) in whole pixels to crop to (outside the image: black);
    None: the whole image. draft: a (w, h) size JPEG may decode at instead (a cheap reduction).
    Anything that cannot be used is an OSError "<path>: cannot read image (<why>)": a missing,
    corrupt or truncated file, an image or box of more than max_pixels pixels (decompression
    bombs included: the size is read from the header, before decoding), anything but a regular
    file (a FIFO would block the reader forever), and with `root` (the data folder of a split)
    a file that is not inside it once links are followed; with `inside`, a box that lies wholly
    outside the image (a user's box for another photo: the crop would be all black)."""
    try:
        if box is not None and box[2] * box[3] > max_pixels:
            raise ValueError(f"its crop box is {box[2]:,} x {box[3]:,} pixels, above the limit of "
                             f"{max_pixels:,} (--max-pixels)")
        with _header(path, max_pixels, root) as img:
            if draft is not None:
                img.draft("RGB", draft)
            # a phone photo's pixels are stored sideways with an EXIF note to turn them: read it
            # as it is shown (boxes are given in that frame too)
            img = ImageOps.exif_transpose(img)
            img = to_rgb(img)
            if inside and box is not None and not overlaps(box, img.size):
                raise ValueError(f"its box {','.join(map(str, box))} lies wholly outside the "
                                 f"{img.size[0]}x{img.size[1]} image")
            if box is not None:
                img = crop_image(img, box)
            img.load()
            return img
    except Exception as e:  # PIL's decoders raise OSError, SyntaxError, struct.error, EOFError...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OSError(f"{path}: cannot read image ({reason})") from None


def overlaps(box, size):
    """True if box (left, top, width, height) shares a pixel with an image of size (w, h)."""
    left, top, width, height = box
    return left < size[0] and top < size[1] and left + width > 0 and top + height > 0


def to_rgb(img):
    """Any PIL mode -> RGB. Transparency is composited on a background the visible pixels stand
    out from (backdrop): black ink drawn on a transparent sheet stays readable."""
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I") or img.mode == "F":  # 16/32-bit integer or float grey
        a = np.asarray(img, dtype=np.float64)
        a = a * (255.0 / grey_full_scale(a, img.mode == "F"))
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        sheet = Image.new("RGBA", rgba.size, backdrop(rgba))
        return Image.alpha_composite(sheet, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, ...


def grey_full_scale(a, floats):
    """The value that stands for white in a deep grey image: for integers, the largest value of
    the fewest bits (8 or more) that hold its brightest pixel, since industrial cameras store 10
    or 12 bits in 16-bit files (a 12-bit photo scaled as 16 bits would come out nearly black);
    for floats, the brightest pixel (at least 255)."""
    top = float(a.max()) if a.size else 0.0
    if not math.isfinite(top):
        return 255.0
    if floats:
        return max(top, 255.0)
    bits = max(8, math.ceil(math.log2(top + 1))) if top > 0 else 8
    return 2.0 ** bits - 1


def backdrop(rgba):
    """The opaque colour to put behind an RGBA image: white where its visible pixels are dark on
    average (their grey weighted by their opacity, under half of 255), else black (also where
    nothing is visible), the colour of the crop padding. Judged on a copy of at most
    BACKDROP_SIDE pixels a side: a 50-megapixel photo needs no gigabyte of floats for a mean."""
    scale = BACKDROP_SIDE / max(rgba.size)
    if scale < 1:  # a reduced copy, never a full-size one
        size = [max(1, round(side * scale)) for side in rgba.size]
        rgba = rgba.resize(size, Image.BOX)
    a = np.asarray(rgba, dtype=np.float32)
    opacity = a[..., 3]
    if opacity.sum() == 0:
        return (0, 0, 0, 255)
    grey = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    dark = (grey * opacity).sum() / opacity.sum() < 127.5
    return (255, 255, 255, 255) if dark else (0, 0, 0, 255)


def image_size(path, max_pixels=MAX_PIXELS, root=None):
    """(width, height) of a readable image as it is shown (EXIF turned); ValueError with a short
    reason otherwise. The whole image is decoded, so that a truncated file fails here (when
    labels are converted), not mid-training."""
    if not os.path.exists(path):
        raise ValueError("no such file")
    check_file(path, root)
    try:
        with _header(path, max_pixels, root) as img:
            img.load()
            return ImageOps.exif_transpose(img).size  # as shown: the frame boxes are given in
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"cannot read it as an image ({reason})") from None


def aspect(path, root=None):
    """Width / height of an image file from its header (nothing decoded; EXIF not applied);
    OSError or ValueError when it cannot be read."""
    check_file(path, root)  # a FIFO would block Image.open
    with Image.open(path) as img:
        return img.size[0] / max(img.size[1], 1)


def median_aspect(folder, regions):
    """Median width / height over (name, region or None) pairs: a region (left, top, right,
    bottom) its own, None the whole image in `folder` (its header). Unreadable images are left
    out (the reader names them later); 1.0 if none."""
    aspects = []
    for name, region in regions:
        if region is None:
            try:
                aspects.append(aspect(os.path.join(folder, name), folder))
            except (OSError, ValueError):
                pass
            continue
        x0, y0, x1, y1 = region
        aspects.append((x1 - x0) / max(y1 - y0, 1))
    return float(np.median(aspects)) if aspects else 1.0


# -----------------------------------------------------------------------------
# finding image files

def find_images(paths, unique=True):
    """(image files, skipped) from files and folders: folders are searched recursively (symbolic
    links followed, each real folder once: a link back up is a loop, skipped and named) for
    files with an image extension, sorted; a file given by name is kept whatever its extension.
    skipped: (path, reason) for what cannot be an image file (missing, a FIFO or device, a loop),
    so that nothing ever blocks on opening it; for a photo in a folder of a format Pillow cannot
    read (an iPhone's .heic: named, never silently passed over); and for a file found a second
    time (given twice, or a link to one found already), so that no file gets two answers;
    unique=False keeps it (labels read from file names: each name is a label of its own)."""
    files = []
    skipped = []
    seen = set()
    first = {}  # real path of each file kept: the path it was first found as

    def walk(folder):
        real = os.path.realpath(folder)
        if real in seen:
            skipped.append((folder, f"a directory loop (already searched as {real})"))
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            skipped.append((folder, f"cannot list it ({e.strerror or e})"))
            return
        for entry in entries:
            path = os.path.join(folder, entry.name)
            if entry.is_dir():
                walk(path)
            elif entry.name.lower().endswith(IMAGE_EXTS):
                add(path)
            elif advice := unreadable_format(path):  # a photo that would vanish unannounced
                skipped.append((path, advice))

    def add(path):
        try:
            mode = os.stat(path).st_mode
        except OSError as e:
            skipped.append((path, e.strerror or "cannot stat it"))
            return
        if not stat.S_ISREG(mode):  # a FIFO would block the reader forever
            skipped.append((path, "not a regular file"))
            return
        real = os.path.realpath(path)
        if unique and real in first:  # given twice, or a link to one found: one answer each
            skipped.append((path, f"the same file as {first[real]}"))
            return
        first[real] = path
        files.append(path)

    for path in paths:
        if os.path.isdir(path):
            walk(path)
        else:
            add(path)
    return files, skipped
