"""A split JSON's records (prepare_data.py's format): the file read and every record checked, and
what a record says: the text its image shows and the region of the image the model sees (and a
split's median region aspect, from which --init picks a fine-tuning input shape).

prepare_data.py writes one JSON per split once (from digitStruct.mat or a labels CSV); the
datasets (data.py), training/start.py, eval.py and play.py read it here.
"""
import json
import math
import os

from support.images import crop_box, median_aspect, whole_pixels
from support.inputs import MAX_TEXT_CHARS, is_utf8, read_input, shown

SVHN_ROOT = "data/svhn"  # prepare_data.py's folder for SVHN's splits ({split}.json)
SYNTH_ROOT = "data/synth"  # ... and for the synthetic replica's (--synthetic)
SVHN_TEST = f"{SVHN_ROOT}/test.json"  # the split eval.py and play.py read by default

# box coordinates beyond this many pixels are refused: float32 (the dataset's boxes) holds every
# integer up to it exactly, and no image is that large (a 1e300 would be inf in float32)
MAX_COORD = 2 ** 24


def load_split(json_path):
    """Read a prepare_data.py JSON -> (absolute image folder, list of record dicts).

    ValueError naming the file and record for a malformed record, one whose name is absolute or
    climbs out of image_dir with '..' included."""
    if os.path.isdir(json_path):
        raise ValueError(f"{json_path}: is a folder, not a split JSON file")
    if not os.path.exists(json_path):
        raise FileNotFoundError(f"{json_path}: no such file (run prepare_data.py first)")
    try:
        split = json.loads(read_input(json_path, "a split JSON"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{json_path}: not valid JSON ({e})") from None
    except ValueError as e:  # e.g. a 5000-digit integer: past Python's int conversion limit
        raise ValueError(f"{json_path}: not a split file ({e})") from None
    except RecursionError:  # [[[[...]]]] thousands deep
        raise ValueError(f"{json_path}: not a split file (nested too deeply)") from None
    if (not isinstance(split, dict) or not isinstance(split.get("image_dir"), str)
            or not isinstance(split.get("records"), list)):
        raise ValueError(f"{json_path}: not a split file (needs 'image_dir', a path, and "
                         f"'records', a list)")
    records = split["records"]
    for k, r in enumerate(records):
        problem = record_problem(r)
        if problem:
            raise ValueError(f"{json_path}: record {k} {problem}")
    # image_dir is relative to the JSON's own folder (join keeps it if it is absolute)
    image_dir = os.path.join(os.path.dirname(os.path.abspath(json_path)), split["image_dir"])
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"{json_path}: image_dir {image_dir} is not a folder (moved or "
                                f"deleted? run prepare_data.py again)")
    return image_dir, records


def _is_box(b):
    return (isinstance(b, list) and len(b) == 4
            and all(type(v) in (int, float) and math.isfinite(v) and abs(v) <= MAX_COORD
                    for v in b))


def _name_problem(name):
    """Why an image name is not a path inside image_dir, or None. Such records are refused, the
    whole file with them (not skipped): prepare_data.py never writes one, so the file was edited
    or made elsewhere, and reading ../../anything would draw files that are not the data."""
    if not name or "\0" in name:
        return "has an empty 'name', or one holding a NUL character"
    drive = len(name) > 2 and name[0].isalpha() and name[1] == ":" and name[2] in "/\\"
    if os.path.isabs(name) or name.startswith("\\") or drive:  # C:/ and \\server too
        return f"'name' {name!r} is an absolute path; names are relative to image_dir"
    if ".." in name.replace("\\", "/").split("/"):
        return f"'name' {name!r} climbs out of image_dir with '..'"
    return None


def _huge_coordinate(r):
    """The first finite number beyond MAX_COORD in a record's boxes or region, else None."""
    boxes = r.get("boxes") if isinstance(r.get("boxes"), list) else []
    for b in boxes + [r.get("region")]:
        if not isinstance(b, list):
            continue
        for v in b:
            if type(v) in (int, float) and math.isfinite(v) and abs(v) > MAX_COORD:
                return v
    return None


def record_problem(r):
    """None for a valid record, else what is wrong with it (the caller names file and record).

    Two kinds of record share one file format:
      SVHN's   {"name", "digits": [ints 0..9], "boxes": [[left, top, width, height], ...]}
      a CSV's  {"name", "text": "AB12", "region": [l, t, w, h] (optional: whole image),
                "boxes": [one box per character] (optional)}"""
    if not isinstance(r, dict) or not isinstance(r.get("name"), str):
        return "needs a 'name'"
    problem = _name_problem(r["name"])
    if problem:
        return problem
    label = r.get("text", r.get("digits"))
    if isinstance(label, (str, list)) and len(label) > MAX_TEXT_CHARS:
        return (f"has a text of {len(label):,} characters, more than the {MAX_TEXT_CHARS} a "
                f"model reads")
    huge = _huge_coordinate(r)
    if huge is not None:
        return (f"has a box value {huge:g}, beyond +-2^24 = {MAX_COORD:,} pixels (boxes are held "
                f"as float32, exact only up to 2^24, and no image is that large)")
    if "text" not in r:
        ok = (isinstance(r.get("digits"), list) and isinstance(r.get("boxes"), list)
              and 0 < len(r["digits"]) == len(r["boxes"])
              # ints 0..9 (SVHN's 10 must already be 0: a 10 would become an 11th class)
              and all(type(d) is int and 0 <= d <= 9 for d in r["digits"])
              and all(_is_box(b) for b in r["boxes"]))
        if not ok:
            return ("needs 'name', digits 0..9 and as many boxes [left, top, width, height] of "
                    f"finite numbers within +-{MAX_COORD:,} (at least one), or a 'text'")
        return None
    if not isinstance(r["text"], str) or not r["text"]:
        return "needs a non-empty 'text' string"
    if not is_utf8(r["text"]):
        return f"has a 'text' {shown(r['text'])} holding bytes that are not UTF-8"
    if "region" in r and not (_is_box(r["region"]) and r["region"][2] > 0 and r["region"][3] > 0):
        return "'region' must be [left, top, width, height], finite, width and height > 0"
    boxes = r.get("boxes")
    if boxes is not None and not (isinstance(boxes, list) and len(boxes) == len(r["text"])
                                  and all(_is_box(b) for b in boxes)):
        return "'boxes', when given, must hold one [left, top, width, height] per character"
    return None


def record_text(r):
    """The string a record's image shows: its 'text', or SVHN's digits joined ("19")."""
    if "text" in r:
        return r["text"]
    return "".join(str(int(d)) for d in r["digits"])


def record_region(r):
    """The region the model sees, (x0, y0, x1, y1) in whole pixels, or None for the whole image.

    SVHN records: the union of the digit boxes grown by GROW (the recipe). Records with a
    'region' (from a labels CSV): that box as given, no growth: a user's box is taken to be the
    crop they want. Neither: the whole image."""
    if "text" in r and "region" not in r:
        return None
    if "text" in r:
        left, top, width, height = whole_pixels(*r["region"])
    else:
        left, top, width, height = crop_box(r["boxes"])
    return left, top, left + width, top + height


def split_median_aspect(image_dir, records, sample=200):
    """Median width / height of the regions a split's images are read from, over up to `sample`
    records spread over it (support.images.median_aspect: image headers only, for records without a
    region)."""
    step = max(1, len(records) // sample)
    return median_aspect(image_dir, [(r["name"], record_region(r))
                                     for r in records[::step]])
