"""Image files -> the region the network sees: opened as RGB with a pixel limit, cropped in whole
pixels (black where the crop leaves the image), resized, and centre-cropped for evaluation.

Every script opens images through open_image; SVHNDataset (data.py) and play.py's own image files
share the evaluation input (eval_input). The recipe's crop is the union of the digit boxes grown
by 30% around its centre, in whole pixels truncated toward zero (crop_box).
"""
import os
import stat

import numpy as np
import torchvision.transforms.functional as TF
from PIL import Image, ImageOps

from model import as_hw
from formats.labels_csv import IMAGE_EXTS

GROW = 1.3                    # the union box's width and height x 1.3, around its centre
# Images (and crop boxes) above this many pixels are refused, read from the header before any
# decoding (--max-pixels raises it). SVHN's largest image is ~0.6 MP and a phone photo 12-48 MP;
# a 13,000 x 13,000 image would decode to 0.5 GB (twice that while converting to RGB) in every
# loader worker, and a 50,000 x 50,000 PNG of a few KB to 7.5 GB.
MAX_PIXELS = 50_000_000


# -----------------------------------------------------------------------------
# image geometry

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


def resize_region(img, image_size):
    """A region (PIL) resized to image_size (a square side, or [H, W]) that training and
    evaluation both start from (training then crops it at random, evaluation at the centre)."""
    return TF.resize(img, list(as_hw(image_size)), antialias=True)


def centre_input(img, crop_size):
    """Evaluation's network input from a resized region: its centre crop_size (side or [H, W]),
    as a tensor (3, H, W) in [0, 1]."""
    img = TF.center_crop(img, list(as_hw(crop_size)))
    return TF.to_tensor(img)


def eval_input(img, image_size, crop_size):
    """The network input of one image region (PIL) at evaluation: resized, then centre-cropped.
    SVHNDataset in evaluation mode and play.py's image files both go through these steps."""
    return centre_input(resize_region(img, image_size), crop_size)


# -----------------------------------------------------------------------------
# opening image files

def open_image(path, box=None, max_pixels=MAX_PIXELS, draft=None, root=None):
    """Read an image file (any PIL mode) as RGB: the one way every script opens images.

    box: (left, top, width, height) in whole pixels to crop to (outside the image: black);
    None: the whole image. draft: a (w, h) size JPEG may decode at instead (a cheap reduction).
    Anything that cannot be used is an OSError "<path>: cannot read image (<why>)": a missing,
    corrupt or truncated file, an image or box of more than max_pixels pixels (decompression
    bombs included: the size is read from the header, before decoding), anything but a regular
    file (a FIFO would block the reader forever), and with `root` (the data folder of a split)
    a file that is not inside it once links are followed."""
    old_limit = Image.MAX_IMAGE_PIXELS
    # max_pixels replaces PIL's global limit (a warning at 89 MP, an error past 179 MP), so that
    # one flag decides, in both directions
    Image.MAX_IMAGE_PIXELS = None
    try:
        check_file(path, root)
        if box is not None and box[2] * box[3] > max_pixels:
            raise ValueError(f"its crop box is {box[2]:,} x {box[3]:,} pixels, above the limit of "
                             f"{max_pixels:,} (--max-pixels)")
        with Image.open(path) as img:  # reads the header only
            width, height = img.size
            if width * height > max_pixels:
                raise ValueError(f"{width} x {height} pixels, above the limit of {max_pixels:,} "
                                 f"(--max-pixels)")
            if draft is not None:
                img.draft("RGB", draft)
            # a phone photo's pixels are stored sideways with an EXIF note to turn them: read it
            # as it is shown (boxes are given in that frame too)
            img = ImageOps.exif_transpose(img)
            img = to_rgb(img)
            if box is not None:
                img = crop_image(img, box)
            img.load()
            return img
    except Exception as e:  # PIL's decoders raise OSError, SyntaxError, struct.error, EOFError...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OSError(f"{path}: cannot read image ({reason})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit


def check_file(path, root=None):
    """ValueError unless `path` is a regular file, inside folder `root` (when given) once
    symbolic links are followed: a link in the data folder must not read a file outside it."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError("not a regular file (a FIFO, device or folder)")
    if root is None:
        return
    real = os.path.realpath(path)
    folder = os.path.realpath(root)
    if os.path.commonpath([real, folder]) != folder:
        raise ValueError(f"a link to {real}, outside the data folder {folder}")


def to_rgb(img):
    """Any PIL mode -> RGB. Transparency is composited on black, the colour of the crop padding."""
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I") or img.mode == "F":  # 16/32-bit integer or float grey
        a = np.asarray(img, dtype=np.float64)
        a = a / 257.0 if img.mode.startswith("I;16") else a * (255.0 / max(a.max(), 255.0))
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, ...


# -----------------------------------------------------------------------------
# finding image files

def find_images(paths):
    """(image files, skipped) from files and folders: folders are searched recursively (symbolic
    links followed, each real folder once: a link back up is a loop, skipped and named) for
    files with an image extension, sorted; a file given by name is kept whatever its extension.
    skipped: (path, reason) for what cannot be an image file (missing, a FIFO or device, a loop),
    so that nothing ever blocks on opening it."""
    files = []
    skipped = []
    seen = set()

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

    def add(path):
        try:
            mode = os.stat(path).st_mode
        except OSError as e:
            skipped.append((path, e.strerror or "cannot stat it"))
            return
        if not stat.S_ISREG(mode):  # a FIFO would block the reader forever
            skipped.append((path, "not a regular file"))
            return
        files.append(path)

    for path in paths:
        if os.path.isdir(path):
            walk(path)
        else:
            add(path)
    return files, skipped
