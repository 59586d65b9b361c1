"""The training augmentations, for the datasets in data.py and the synthetic lines of --synth-mix
(synth_lines.py): the recipe's parameters (random resized crop and colour jitter, applied by
data.SVHNDataset), and the photo and text styles (--augment-style): a region reframed or loosened
toward the whole image, a resized region turned, jittered and blurred, or zoomed out so that no
character is cut off.
"""
import math
import random

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image, ImageFilter

# the recipe's augmentation
SCALE = (0.7, 1.0)            # RandomResizedCrop area range (aspect ratio: torchvision's 3/4-4/3)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
JITTER = 0.5                  # ColorJitter brightness = contrast = saturation = hue
# the photo augmentation (--augment-style photo): real crops of text vary in framing, tilt, colour
# and focus; a small share of each. On real plates it read fewer than the seed's augmentation
# or the text style (README, "Your own data"), so fine-tuning never picks it.
PHOTO_FRAME = 0.06            # each side of the region moves up to this share of its size
PHOTO_ROTATE = 3.0            # degrees, either way
PHOTO_JITTER = (0.4, 0.4, 0.4, 0.05)  # brightness, contrast, saturation, hue
PHOTO_BLUR = 0.3              # share of images blurred, radius up to PHOTO_BLUR_RADIUS input pixels
PHOTO_BLUR_RADIUS = 1.2
# the text augmentation (--augment-style text): for lines of text framed by their whole image,
# where any crop inside the frame may cut the first or last character out of the picture and
# teach a label the image no longer shows. It only ever zooms out: a random margin on each side
# (edge pixels repeated), a small turn whose corners are filled the same way, colour and focus.
# Fine-tuning a line reader (a wide input, weights/reader.pt) uses it by default.
TEXT_MARGIN_Y = 0.15          # each of top and bottom grows by up to this share of the height
TEXT_MARGIN_X = 0.05          # each of left and right grows by up to this share of the width
TEXT_ROTATE = 2.0             # degrees, either way, on the grown canvas: the text stays inside
# --elastic: the text style's input warped by a smooth random field, as one hand shapes a stroke
# otherwise than another; displacements drawn every ELASTIC_CELL pixels (about a stroke's
# length at a 32-pixel height) and interpolated between them
ELASTIC_CELL = 8
MAX_ELASTIC = 0.2             # input heights: more moves characters out of their own columns
STYLES = ("seed", "photo", "text")
# Transforms are torchvision v1 on PIL images: measured 1.6x faster than v2 on uint8 tensors for
# this pipeline (python -m bench.bench_data --compare-v2) and as fast as v2 on PIL.


# -----------------------------------------------------------------------------
# the augmentation's parts, drawn from `random` (seeded per sample by data.SeededSamples)

def reframe(region):
    """A training region (x0, y0, x1, y1) with each side moved by up to PHOTO_FRAME of the
    region's width or height, in or out (black where it leaves the image): a crop as a
    person or a detector might have framed it. Draws from `random`, seeded per sample."""
    x0, y0, x1, y1 = (float(v) for v in region)
    dx = PHOTO_FRAME * (x1 - x0)
    dy = PHOTO_FRAME * (y1 - y0)
    x0 += random.uniform(-dx, dx)
    x1 += random.uniform(-dx, dx)
    y0 += random.uniform(-dy, dy)
    y1 += random.uniform(-dy, dy)
    return int(x0), int(y0), max(int(x1), int(x0) + 1), max(int(y1), int(y0) + 1)


def photo_augment(img, jitter):
    """The photo augmentation of a resized region (PIL): a small rotation, colour jitter, and
    sometimes a blur. Boxes keep their place (a 3-degree turn moves them by a pixel or two)."""
    img = TF.rotate(img, random.uniform(-PHOTO_ROTATE, PHOTO_ROTATE),
                    interpolation=T.InterpolationMode.BILINEAR)
    img = jitter(img)
    if random.random() < PHOTO_BLUR:
        img = img.filter(ImageFilter.GaussianBlur(random.uniform(0.3, PHOTO_BLUR_RADIUS)))
    return img


def text_augment(img, jitter, shear=0.0):
    """The text augmentation of a resized region (PIL, its size kept): margins grown at random
    by repeating the edge pixels, a small turn, with shear > 0 a slant of up to that many
    degrees, colour jitter, sometimes a blur. Every pixel of the input stays in the picture, so
    no character is cut. Draws from `random` (shear 0 draws as before it existed)."""
    width, height = img.size
    top = round(random.uniform(0, TEXT_MARGIN_Y) * height)
    bottom = round(random.uniform(0, TEXT_MARGIN_Y) * height)
    left = round(random.uniform(0, TEXT_MARGIN_X) * width)
    right = round(random.uniform(0, TEXT_MARGIN_X) * width)
    # a turn of a degrees moves a corner of a w x h line by up to w/2 * sin(a) vertically:
    # the vertical margin must hold it, so the angle is capped by the margins drawn
    room = min(top, bottom) / max(1.0, width / 2)
    limit = min(TEXT_ROTATE, math.degrees(math.asin(min(1.0, room))))
    pixels = np.pad(np.asarray(img), ((top, bottom), (left, right), (0, 0)), mode="edge")
    grown = Image.fromarray(pixels)
    fill = None  # the colour uncovered corners take: the canvas's median, found once if needed
    if limit > 0 or shear > 0:
        fill = tuple(int(v) for v in np.median(pixels.reshape(-1, 3), axis=0))
    if limit > 0:
        angle = random.uniform(-limit, limit)
        grown = grown.rotate(angle, resample=Image.BILINEAR, fillcolor=fill)
    if shear > 0:
        grown = slant(grown, fill, shear, min(left, right))
    img = jitter(grown.resize((width, height), Image.BILINEAR))
    if random.random() < PHOTO_BLUR:
        img = img.filter(ImageFilter.GaussianBlur(random.uniform(0.3, PHOTO_BLUR_RADIUS)))
    return img


def slant(img, fill, degrees, margin):
    """--shear: img with its rows shifted sideways in proportion to their distance from the
    middle row (a shear about the centre, as a camera off to one side or an italic hand leaves
    text; the gaps `fill`ed): up to `degrees` either way, and at most `margin` pixels at the top
    and bottom rows, so no character leaves the frame. Draws from `random`."""
    width, height = img.size
    limit = min(math.tan(math.radians(degrees)), margin / max(1.0, height / 2))
    if limit <= 0:
        return img
    k = random.uniform(-limit, limit)  # x_in = x_out + k * (y_out - height / 2)
    return img.transform((width, height), Image.AFFINE, (1, k, -k * height / 2, 0, 1, 0),
                         resample=Image.BILINEAR, fillcolor=fill)


def elastic_warp(x, amount):
    """--elastic: x (3, H, W) in [0, 1] with its pixels moved by a smooth random field whose
    displacements have a standard deviation of `amount` input heights where they are drawn
    (every ELASTIC_CELL pixels, bicubic between); edge pixels fill what moves in. amount 0
    returns x itself and draws nothing. Draws from torch's generator (seeded per sample)."""
    if amount <= 0:
        return x
    height, width = x.shape[-2:]
    coarse = torch.randn(1, 2, max(2, height // ELASTIC_CELL), max(2, width // ELASTIC_CELL))
    shift = F.interpolate(coarse * (amount * height), size=(height, width), mode="bicubic",
                          align_corners=True)[0]  # (2, H, W): pixels right, pixels down
    ys, xs = torch.meshgrid(torch.arange(height, dtype=x.dtype), torch.arange(width, dtype=x.dtype),
                            indexing="ij")
    grid = torch.stack([(xs + shift[0]) * (2 / max(1, width - 1)) - 1,
                        (ys + shift[1]) * (2 / max(1, height - 1)) - 1], -1)  # (H, W, 2)
    warped = F.grid_sample(x[None], grid[None], mode="bilinear", padding_mode="border",
                           align_corners=True)[0]
    return warped.clamp(0, 1)


def loosen(region, size):
    """A training region (x0, y0, x1, y1) widened at random toward the image's edges: each side
    moves a uniform fraction of its distance to the edge, so crops range from the recipe's tight
    one to the whole photo, framed off centre. It teaches the model to read photos that come
    without a box (predict.py reads the whole image). Draws from `random`, seeded per sample."""
    x0, y0, x1, y1 = (int(v) for v in region)
    width, height = size
    x0 = int(x0 - random.random() * max(0, x0))
    y0 = int(y0 - random.random() * max(0, y0))
    x1 = int(x1 + random.random() * max(0, width - x1))
    y1 = int(y1 + random.random() * max(0, height - y1))
    return x0, y0, x1, y1
