"""Input sizes: an int (a square, as the seed's config stores it) or an [H, W] pair."""

MAX_SIDE = 2048  # of image_size and crop_size


def as_hw(size):
    """An image_size or crop_size as (height, width): an int is a square, a pair is [H, W]."""
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


def parse_size(text):
    """'54' -> 54 (a square, as the seed's config stores it); '32x128' -> [32, 128] (H x W)."""
    parts = str(text).lower().split("x")
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"size {text!r} must be N or HxW (e.g. 54 or 32x128)") from None
    if len(sides) == 1:
        return sides[0]
    if len(sides) != 2:
        raise ValueError(f"size {text!r} must be N or HxW (e.g. 54 or 32x128)")
    if sides[0] == sides[1]:
        return sides[0]
    return sides


def format_size(size):
    """54 -> '54', [32, 128] -> '32x128'."""
    h, w = as_hw(size)
    return str(h) if h == w else f"{h}x{w}"


def check_size(key, value):
    """ValueError unless value is an int or an [H, W] pair of ints in 1..MAX_SIDE."""
    sides = value if isinstance(value, (list, tuple)) else [value]
    ok = len(sides) in (1, 2) and all(
        isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in sides)
    if not ok:
        raise ValueError(f"model config {key!r} must be an int or [H, W] of ints in "
                         f"1..{MAX_SIDE}, got {value!r}")
