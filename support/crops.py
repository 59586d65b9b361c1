"""An image region -> the network's input: resized to image_size (squashed to it, or with a
model's max_stretch at its own aspect and padded), and for evaluation centre-cropped to
crop_size, as a tensor in [0, 1]. SVHNDataset (data.py) in evaluation mode and
play.py's and predict.py's own image files share the evaluation input (eval_input).

Opening image files (the pixel limit, EXIF, RGB), the recipe's crop geometry and finding images
in folders are images.py's (torch-free); their names are also read from here by the scripts.
"""
import numpy as np
import torchvision.transforms.functional as TF
from PIL import Image

from model import as_hw
# re-exported for code written against crops.py before images.py took these over; new code
# imports them from support.images
from support.images import (GROW, MAX_PIXELS, crop_box, crop_image, find_images,  # noqa: F401
                            open_image, overlaps, to_rgb, whole_pixels)


def fitted_width(size, image_size, max_stretch=0.0):
    """Width in pixels that a region of `size` (width, height) takes in the resized input: all
    of image_size's width (max_stretch 0: squashed, the seed), or with max_stretch S > 0 its
    own aspect at the input's height widened by at most S (at least 1 pixel, at most the
    input's width): a narrow region is never stretched past S times its shape."""
    height, width = as_hw(image_size)
    if not max_stretch:
        return width
    aspect = size[0] / max(1, size[1])
    return max(1, min(width, round(max_stretch * aspect * height)))


def resize_region(img, image_size, max_stretch=0.0):
    """A region (PIL) resized to image_size (a square side, or [H, W]) that training and
    evaluation both start from (training then crops it at random, evaluation at the centre).
    With max_stretch the region fills fitted_width at the left and the rest of the width is
    its own mean colour."""
    height, width = as_hw(image_size)
    wide = fitted_width(img.size, image_size, max_stretch)
    img = TF.resize(img, [height, wide], antialias=True)
    if wide == width:
        return img
    img = img.convert("RGB")
    pixels = np.asarray(img, dtype=np.float64)
    colour = tuple(int(round(v)) for v in pixels.reshape(-1, 3).mean(axis=0))
    padded = Image.new("RGB", (width, height), colour)
    padded.paste(img, (0, 0))
    return padded


def centre_input(img, crop_size):
    """Evaluation's network input from a resized region: its centre crop_size (side or [H, W]),
    as a tensor (3, H, W) in [0, 1]."""
    img = TF.center_crop(img, list(as_hw(crop_size)))
    return TF.to_tensor(img)


def eval_input(img, image_size, crop_size, max_stretch=0.0):
    """The network input of one image region (PIL) at evaluation: resized, then centre-cropped.
    SVHNDataset in evaluation mode and play.py's image files both go through these steps."""
    return centre_input(resize_region(img, image_size, max_stretch), crop_size)
