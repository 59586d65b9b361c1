"""Reading by vote: each image decoded as a few copies of itself, shifted by a pixel or two and
rescaled by a few percent, and the text the copies read most surely kept (test-time
augmentation). A model fine-tuned on a few hundred photos often reads an image moved by a pixel
differently, and the copies together are right more often than the image alone: on real plates,
CAPTCHAs and receipt lines a vote of 7 read 3.5-7.4 points more whole on average, and no run
read less (README "Reading by vote").

The copies are the same network input size as the image (no pixel is added to the batch's
shape), so any head reads them, and the first copy is the image itself: a vote of 1 is the
plain decoding, bit for bit (the seed's).
"""
import torch
import torch.nn.functional as F

# the copies, in the order a vote of N takes the first N: (shift right, shift down, scale),
# shifts in input heights (1/16 of 32 pixels = 2 pixels; at least a pixel), scales about the
# centre. Leading shifts are along the text, where a column boundary falls.
COPIES = (
    (0, 0, 1.0),
    (1 / 16, 0, 1.0), (-1 / 16, 0, 1.0),
    (0, 0, 0.94), (0, 0, 1.06),
    (0, 1 / 32, 1.0), (0, -1 / 32, 1.0),
    (1 / 8, 0, 1.0), (-1 / 8, 0, 1.0),
    (0, 0, 0.9), (0, 0, 1.1),
)
MAX_VOTES = len(COPIES)


def pixels(fraction, height):
    """A shift of `fraction` input heights in whole pixels, at least one where it is not 0."""
    if not fraction:
        return 0
    step = max(1, round(abs(fraction) * height))
    return step if fraction > 0 else -step


def shifted(images, dx, dy):
    """Images (B, C, H, W) moved dx pixels right and dy down; the edge pixels fill the gap."""
    if not dx and not dy:
        return images
    p = max(abs(dx), abs(dy))
    height, width = images.shape[-2:]
    padded = F.pad(images, (p, p, p, p), mode="replicate")
    return padded[..., p - dy:p - dy + height, p - dx:p - dx + width]


def scaled(images, scale):
    """Images (B, C, H, W) rescaled by `scale` about their centre, back at H x W: a shrunk copy
    is framed by its edge pixels, a grown one cut to its centre."""
    if scale == 1.0:
        return images
    height, width = images.shape[-2:]
    h, w = round(height * scale), round(width * scale)
    resized = F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False)
    if scale < 1.0:
        top, left = (height - h) // 2, (width - w) // 2
        pad = (left, width - w - left, top, height - h - top)
        return F.pad(resized, pad, mode="replicate")
    top, left = (h - height) // 2, (w - width) // 2
    return resized[..., top:top + height, left:left + width]


def copies(images, votes):
    """The first `votes` copies of a batch (B, C, H, W), stacked copy by copy: (votes * B, C, H,
    W), rows [k * B, (k + 1) * B) the k-th copy; the first B rows are `images` themselves."""
    if not 1 <= votes <= MAX_VOTES:
        raise ValueError(f"votes must be 1..{MAX_VOTES}, got {votes}")
    height = images.shape[-2]
    made = []
    for right, down, scale in COPIES[:votes]:
        moved = shifted(images, pixels(right, height), pixels(down, height))
        made.append(scaled(moved, scale))
    return torch.cat(made)


def winners(texts, confidences, votes):
    """Which row of each image's copies to keep: texts and confidences (probabilities) of
    votes * B rows, copy by copy as copies() stacks them -> B row indices. Each text scores the
    summed probabilities of the copies that read it (a soft majority: two copies at 0.5 outvote
    one at 0.9, two at 0.3 do not), the highest wins, and the row kept is the first copy that
    read it (the image itself where it agrees)."""
    batch = len(texts) // votes
    rows = []
    for i in range(batch):
        weight, first = {}, {}
        for k in range(votes):
            row = k * batch + i
            text = tuple(texts[row])
            weight[text] = weight.get(text, 0.0) + confidences[row]
            first.setdefault(text, row)
        best = max(weight, key=weight.get)  # the first text read wins an exact tie
        rows.append(first[best])
    return rows
