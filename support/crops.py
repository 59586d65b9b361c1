"""An image region -> the network's input: resized to image_size, and for evaluation
centre-cropped to crop_size, as a tensor in [0, 1]. SVHNDataset (data.py) in evaluation mode and
play.py's and predict.py's own image files share the evaluation input (eval_input).

Opening image files (the pixel limit, EXIF, RGB), the recipe's crop geometry and finding images
in folders are images.py's (torch-free); their names are also read from here by the scripts.
"""
import torchvision.transforms.functional as TF

from model import as_hw
# re-exported for code written against crops.py before images.py took these over; new code
# imports them from support.images
from support.images import (GROW, MAX_PIXELS, crop_box, crop_image, find_images,  # noqa: F401
                            open_image, overlaps, to_rgb, whole_pixels)


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
