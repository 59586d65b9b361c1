"""SVHN format-1 data: JSON records -> cropped, augmented image tensors and token sequences.

prepare_data.py converts digitStruct.mat (or a labels CSV) into one JSON per split once; this file
only reads and augments. Per image: crop to the union of the digit boxes grown by 30% around its
centre, in whole pixels truncated toward zero (padding with black where the crop leaves the image;
a CSV's box is used as given, no box means the whole image), resize to 64x64, then
RandomResizedCrop(54, scale 0.7-1) and ColorJitter(0.5 x4) for training or CenterCrop(54) for
evaluation, then ToTensor: pixels in [0, 1]. (A model trained with normalize=True maps them to
[-1, 1] itself, so the data is the same for every checkpoint.)

    python data.py [--json data/synth/train.json] [--n 8] [--out img/aug.png] [--show]
saves a figure of the 64x64 crops (top row) and random augmentations of each (rows below).
"""
import argparse
import json
import math
import os
import random
import sys

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import ConcatDataset
from torchnlp.encoders.text import StaticTokenizerEncoder

from atomic import save_figure

# -----------------------------------------------------------------------------
# the recipe's constants
GROW = 1.3                    # the union box's width and height x 1.3, around its centre
SCALE = (0.7, 1.0)            # RandomResizedCrop area range (aspect ratio: torchvision's 3/4-4/3)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
JITTER = 0.5                  # ColorJitter brightness = contrast = saturation = hue
# Images (and crop boxes) above this many pixels are refused, read from the header before any
# decoding (--max-pixels raises it). SVHN's largest image is ~0.6 MP and a phone photo 12-48 MP;
# a 13,000 x 13,000 image would decode to 0.5 GB (twice that while converting to RGB) in every
# loader worker, and a 50,000 x 50,000 PNG of a few KB to 7.5 GB.
MAX_PIXELS = 50_000_000
RESERVED = ["<pad>", "<unk>", "</s>"]
PAD, UNK, EOS, BOS = 0, 1, 2, 3  # <s> is the first token of every text, so it always lands at 3
# Transforms are torchvision v1 on PIL images: measured 1.6x faster than v2 on uint8 tensors for
# this pipeline (bench/bench_data.py --compare-v2) and as fast as v2 on PIL.


def load_split(json_path):
    """Read a prepare_data.py JSON -> (absolute image folder, list of record dicts).

    ValueError naming the file and record for a malformed record, one whose name is absolute or
    climbs out of image_dir with '..' included."""
    if os.path.isdir(json_path):
        raise ValueError(f"{json_path}: is a folder, not a split JSON file")
    if not os.path.isfile(json_path):
        raise FileNotFoundError(f"{json_path}: no such file (run prepare_data.py first)")
    try:
        with open(json_path) as f:
            split = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{json_path}: not valid JSON ({e})") from None
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


# box coordinates beyond this many pixels are refused: float32 (the dataset's boxes) holds every
# integer up to it exactly, and no image is that large (1e300 overflowed to inf, with warnings)
MAX_COORD = 2 ** 24


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
    """A region (PIL) resized to the image_size square that training and evaluation both start
    from (training then crops it at random, evaluation at the centre)."""
    return TF.resize(img, [image_size, image_size], antialias=True)


def centre_input(img, crop_size):
    """Evaluation's network input from a resized region: its centre crop_size square, as a
    tensor (3, crop_size, crop_size) in [0, 1]."""
    img = TF.center_crop(img, [crop_size, crop_size])
    return TF.to_tensor(img)


def eval_input(img, image_size, crop_size):
    """The network input of one image region (PIL) at evaluation: resized, then centre-cropped.
    SVHNDataset in evaluation mode and play.py's image files both go through these steps."""
    return centre_input(resize_region(img, image_size), crop_size)


def open_image(path, box=None, max_pixels=MAX_PIXELS, draft=None):
    """Read an image file (any PIL mode) as RGB: the one way every script opens images.

    box: (left, top, width, height) in whole pixels to crop to (outside the image: black);
    None: the whole image. draft: a (w, h) size JPEG may decode at instead (a cheap reduction).
    Anything that cannot be used is an OSError "<path>: cannot read image (<why>)": a missing,
    corrupt or truncated file, an image or box of more than max_pixels pixels (decompression
    bombs included: the size is read from the header, before decoding)."""
    old_limit = Image.MAX_IMAGE_PIXELS
    # max_pixels replaces PIL's global limit (a warning at 89 MP, an error past 179 MP), so that
    # one flag decides, in both directions
    Image.MAX_IMAGE_PIXELS = None
    try:
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
# tokenizer: one token per character

def char_tokens(text):
    """'<s>AB1' -> ['<s>', 'A', 'B', '1']: a leading <s> is one token, every other character is
    one (spaces and letters included). Module level, so the encoder pickles into workers."""
    if text.startswith("<s>"):
        return ["<s>"] + list(text[3:])
    return list(text)


def token_text(label):
    """"19" -> "<s>19", the text the tokenizer sees (it appends </s> itself)."""
    return "<s>" + label


def _encoder(texts):
    return StaticTokenizerEncoder(texts, tokenize=char_tokens, detokenize="".join,
                                  reserved_tokens=list(RESERVED), append_eos=True)


def build_tokenizer(records):
    """StaticTokenizerEncoder over the records' texts (SVHN's digits, or any characters).

    Vocabulary: <pad> <unk> </s> reserved, then tokens in the order pytorch-nlp first meets them
    (<s> first, then characters): it depends on the data, so checkpoints store `encoder.vocab`."""
    return _encoder(token_text(record_text(r)) for r in records)


def tokenizer_from_vocab(vocab):
    """Rebuild an encoder whose vocabulary is exactly `vocab` (e.g. from a checkpoint)."""
    vocab = list(vocab)
    chars = vocab[len(RESERVED) + 1:]
    if vocab[:len(RESERVED) + 1] != RESERVED + ["<s>"]:
        raise ValueError(f"vocabulary must start with {RESERVED + ['<s>']}, got {vocab[:6]}")
    if not all(isinstance(c, str) and len(c) == 1 for c in chars):
        raise ValueError(f"vocabulary {vocab}: tokens after <s> must be single characters")
    # each character once, in order: the encoder adds tokens in first-seen order
    encoder = _encoder([token_text("".join(chars))])
    if encoder.vocab != vocab:
        raise ValueError(f"vocabulary {vocab} cannot be rebuilt (duplicate tokens)")
    return encoder


def extend_vocab(vocab, records):
    """`vocab` followed by the records' characters it lacks, in first-seen order: fine-tuning
    keeps every old token's id, so the old embedding and classifier rows stay valid."""
    known = set(vocab)
    added = []
    for r in records:
        for c in record_text(r):
            if c not in known:
                known.add(c)
                added.append(c)
    return list(vocab) + added


def unknown_chars(labels, vocab):
    """{character: count} of the characters in `labels` missing from `vocab` (encoded as <unk>)."""
    known = set(vocab)
    counts = {}
    for label in labels:
        for c in label:
            if c not in known:
                counts[c] = counts.get(c, 0) + 1
    return counts


def label_ids(ids, pad_id=PAD, eos_id=EOS, bos_id=BOS):
    """The label's token ids of one sequence: [<s>, d1, d2, </s>, <pad>, ...] -> [d1, d2].

    <s> and <pad> are skipped and the first </s> ends the sequence, so training targets and
    decoded tokens go through this one function (validation and evaluation compare its outputs).
    """
    out = []
    for t in (ids.tolist() if torch.is_tensor(ids) else ids):
        if t == eos_id:
            break
        if t in (pad_id, bos_id):
            continue
        out.append(t)
    return out


def tokens_to_text(ids, vocab):
    """Token ids -> string, stopping at </s>; skips <pad>/<s>, <unk> becomes '?'."""
    return "".join("?" if t == UNK or t >= len(vocab) else vocab[t] for t in label_ids(ids))


# -----------------------------------------------------------------------------
# dataset

class SVHNDataset(torch.utils.data.Dataset):
    """(image (3, S, S) in [0, 1], tokens <s> d.. </s>, boxes (K, 4) x0 y0 x1 y1 in input pixels).

    Boxes are exact in both modes: evaluation maps them through crop, resize and centre crop;
    training draws RandomResizedCrop's parameters itself and maps them through that crop too.
    They are not clipped, so a box may reach past the network input."""

    def __init__(self, source, tokenizer=None, train=False, image_size=64, crop_size=54,
                 max_pixels=MAX_PIXELS):
        if isinstance(source, (str, os.PathLike)):
            self.image_dir, records = load_split(source)
        else:
            self.image_dir, records = source
        if not 0 < crop_size <= image_size:
            raise ValueError(f"crop_size {crop_size} must be in 1..image_size ({image_size})")
        self.tokenizer = tokenizer if tokenizer is not None else build_tokenizer(records)
        self.train = train
        self.image_size = image_size
        self.crop_size = crop_size
        self.max_pixels = max_pixels
        # compact arrays instead of a list of dicts: cheap to pickle to workers (spawn)
        self.names = [r["name"] for r in records]
        self.texts = [record_text(r) for r in records]
        # the region each image is cropped to; NaN: the whole image (its size is known on opening)
        regions = [record_region(r) or (math.nan,) * 4 for r in records]
        self.regions = np.array(regions, dtype=np.float64).reshape(-1, 4)
        # per-character boxes; a record without them (a labels CSV) has none
        char_boxes = [r.get("boxes") or [] for r in records]
        counts = [len(b) for b in char_boxes]
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.boxes = np.array([b for bs in char_boxes for b in bs], dtype=np.float32).reshape(-1, 4)
        self.jitter = T.ColorJitter(JITTER, JITTER, JITTER, JITTER)

    def __len__(self):
        return len(self.names)

    def label(self, i):
        """Text of image i, e.g. "19" or "AB12"."""
        return self.texts[i]

    def load(self, i):
        """Image i cropped and resized to image_size -> (PIL RGB, boxes (K, 4) x0 y0 x1 y1 in it).
        K is 0 for a record without per-character boxes."""
        path = os.path.join(self.image_dir, self.names[i])
        ltwh = self.boxes[self.offsets[i]:self.offsets[i + 1]].astype(np.float64)
        if np.isnan(self.regions[i, 0]):  # the whole image
            img = open_image(path, None, self.max_pixels)
            x0, y0, x1, y1 = 0, 0, img.size[0], img.size[1]
        else:
            x0, y0, x1, y1 = (int(v) for v in self.regions[i])
            img = open_image(path, (x0, y0, x1 - x0, y1 - y0), self.max_pixels)
        s = self.image_size
        img = resize_region(img, s)
        sx, sy = s / (x1 - x0), s / (y1 - y0)
        right = ltwh[:, 0] + ltwh[:, 2]
        bottom = ltwh[:, 1] + ltwh[:, 3]
        boxes = np.stack([(ltwh[:, 0] - x0) * sx, (ltwh[:, 1] - y0) * sy,
                          (right - x0) * sx, (bottom - y0) * sy], 1)  # (K, 4)
        return img, boxes

    def augment(self, img, boxes):
        """Recipe transform of a load() result -> (tensor (3, S, S), boxes (K, 4) tensor)."""
        c = self.crop_size
        if self.train:
            top, left, h, w = T.RandomResizedCrop.get_params(img, SCALE, RATIO)
            img = TF.resized_crop(img, top, left, h, w, [c, c], antialias=True)
            img = self.jitter(img)
            sx, sy = c / w, c / h
            x = TF.to_tensor(img)  # (3, S, S) in [0, 1]
        else:
            # CenterCrop's own offset rule (torchvision rounds half the margin)
            top = left = int(round((self.image_size - c) / 2.0))
            sx = sy = 1.0
            x = centre_input(img, c)  # (3, S, S) in [0, 1]
        boxes = (boxes - [left, top, left, top]) * [sx, sy, sx, sy]
        return x, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)

    def __getitem__(self, i):
        img, boxes = self.load(i)
        x, boxes = self.augment(img, boxes)
        tokens = self.tokenizer.encode(token_text(self.texts[i])).long()  # (len(text) + 2,)
        return x, tokens, boxes


# -----------------------------------------------------------------------------
# deterministic sampling for training: what makes train.py --resume exact

class EpochTagged(torch.utils.data.DistributedSampler):
    """DistributedSampler that yields (epoch, index) pairs, for SeededSamples. It serves a single
    process too (num_replicas=1): its shuffle depends only on (seed, epoch), not on a running
    RNG."""

    def __iter__(self):
        return ((self.epoch, i) for i in super().__iter__())


class SeededSamples(torch.utils.data.Dataset):
    """Seeds torch, numpy and random from (seed, epoch, index) before fetching a sample. The
    augmentation of a sample then depends on nothing else: not on which worker drew it, nor on
    the number of workers, nor on whether the run was resumed. That is what makes resume exact."""

    def __init__(self, dataset, seed):
        self.dataset, self.seed = dataset, seed

    def __getitem__(self, key):
        epoch, i = key
        s = ((self.seed * 1_000_003 + epoch) * 1_000_000_007 + i) % 2**63
        saved = None
        if torch.utils.data.get_worker_info() is None:  # the main process: keep its RNG states
            saved = (torch.get_rng_state(), np.random.get_state(), random.getstate())
        torch.default_generator.manual_seed(s)
        np.random.seed(s % 2**32)
        random.seed(s)
        try:
            return self.dataset[i]
        finally:
            if saved:  # main process (no workers): leave the training RNG as it was
                torch.set_rng_state(saved[0])
                np.random.set_state(saved[1])
                random.setstate(saved[2])


def collate(batch):
    """List of dataset items -> (images (B, 3, S, S), tokens (B, T) padded with PAD, boxes list)."""
    images, tokens, boxes = zip(*batch)
    tokens = torch.nn.utils.rnn.pad_sequence(tokens, batch_first=True, padding_value=PAD)
    return torch.stack(images), tokens, list(boxes)


# -----------------------------------------------------------------------------
# train.py's data: its JSON flags -> tokenizer, training set, validation set

VAL_SEED = 0  # fixed, so that --seed never changes which images are held out


def load_data(args, vocab=None, extend=False):
    """(tokenizer, training set of all JSONs minus the held-out images, validation set or None)
    from train.py's flags (--train-json, --val-json, --val-size, --max-len, --image-size,
    --crop-size, --max-pixels, --augment); sets args.json_records, which the checkpoint keeps.
    vocab: a checkpoint's vocabulary, kept as it is, or with extend the training texts'
    characters it lacks appended (fine-tuning)."""
    paths = list(args.train_json)
    if args.val_json:
        paths.append(args.val_json)
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file; "
                                    f"make it with `python prepare_data.py` first")
    splits = [load_split(path) for path in paths]
    for path, (_, records) in zip(paths, splits):
        for r in records:  # the model could never read it out
            if len(record_text(r)) > args.max_len:
                raise ValueError(f"{path}: record {r['name']!r}: text {record_text(r)!r} is "
                                 f"longer than --max-len {args.max_len}; raise --max-len")
    val_split = splits.pop() if args.val_json else None
    args.json_records = [len(records) for _, records in splits]  # saved: resume checks the JSONs
    records = [r for _, records in splits for r in records]
    if vocab and extend:
        vocab = extend_vocab(vocab, records)
    unknown = unknown_chars((record_text(r) for r in records), vocab) if vocab else {}
    if unknown:  # resuming on data the vocabulary lacks would train those characters as <unk>
        raise ValueError(f"{' '.join(args.train_json)}: characters {''.join(sorted(unknown))!r} "
                         f"are not in the checkpoint's vocabulary; start a new --out")
    if vocab:
        tokenizer = tokenizer_from_vocab(vocab)
    else:
        tokenizer = build_tokenizer(records)
    image_dir, first = splits[0]
    if not 0 <= args.val_size < len(first):
        raise ValueError(f"{args.train_json[0]}: holds {len(first)} images; "
                         f"--val-size {args.val_size} must be >= 0 and leave one to train on")
    held = set(random.Random(VAL_SEED).sample(range(len(first)), args.val_size))
    parts = [(image_dir, [r for i, r in enumerate(first) if i not in held])] + splits[1:]

    def dataset(source, train):
        return SVHNDataset(source, tokenizer, train=train, image_size=args.image_size,
                           crop_size=args.crop_size, max_pixels=args.max_pixels)
    train_set = ConcatDataset([dataset(part, args.augment) for part in parts])
    val_set = None
    if held:
        val_set = dataset((image_dir, [first[i] for i in sorted(held)]), False)
    if val_split is not None:
        val_set = dataset(val_split, False)
    return tokenizer, train_set, val_set


# -----------------------------------------------------------------------------
# python data.py: a figure of the augmentation

def default_json():
    for path in ("data/svhn/train.json", "data/synth/train.json"):
        if os.path.exists(path):
            return path
    return None


def plot_augmentations(dataset, indices, rows, out, show=False):
    import matplotlib
    if not show:
        matplotlib.use("Agg")
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows + 1, len(indices), figsize=(1.4 * len(indices), 1.5 * (rows + 1)),
                             squeeze=False)
    for col, i in enumerate(indices):
        img, boxes = dataset.load(i)
        panels = [(np.asarray(img), boxes)]
        for _ in range(rows):
            x, b = dataset.augment(img, boxes)
            panels.append((x.permute(1, 2, 0).numpy(), b.numpy()))
        for row, (pixels, bxs) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(pixels)
            for x0, y0, x1, y1 in bxs:
                ax.add_patch(patches.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                               edgecolor="lime", linewidth=0.6))
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, col].set_title(dataset.label(i), fontsize=9)
    axes[0, 0].set_ylabel(f"crop {dataset.image_size}", fontsize=8)
    for row in range(1, rows + 1):
        axes[row, 0].set_ylabel(f"train {dataset.crop_size}", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_figure(fig, out, dpi=120)  # e.g. --out is a folder: an error, and no stray .tmp
    if show:
        plt.show()
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description="Save a figure of original vs augmented SVHN crops.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--json", default=default_json(),
                   help="split JSON written by prepare_data.py; default data/svhn/train.json if it "
                        "exists, else data/synth/train.json (found: %(default)s)")
    p.add_argument("--n", type=int, default=8, help="number of images (columns)")
    p.add_argument("--rows", type=int, default=3, help="random augmentations per image (rows)")
    p.add_argument("--image-size", type=int, default=64, help="resize of the crop")
    p.add_argument("--crop-size", type=int, default=54, help="random/centre crop size")
    p.add_argument("--seed", type=int, default=0, help="random seed for picks and augmentations")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help="larger images (width x height) are refused as unreadable")
    p.add_argument("--out", default="img/aug.png", help="output figure")
    p.add_argument("--show", action="store_true", help="also open a window with the figure")
    args = p.parse_args(argv)
    for name, low in (("n", 1), ("rows", 0), ("max_pixels", 1)):
        if getattr(args, name) < low:
            p.error(f"--{name.replace('_', '-')} must be >= {low}")
    if args.json is None:
        sys.exit("data.py: error: no data/svhn/train.json or data/synth/train.json; run "
                 "prepare_data.py (or prepare_data.py --synthetic) first, or pass --json")
    try:
        ds = SVHNDataset(args.json, train=True, image_size=args.image_size,
                         crop_size=args.crop_size, max_pixels=args.max_pixels)
        if len(ds) == 0:
            raise ValueError(f"{args.json}: no records")
        torch.manual_seed(args.seed)
        rng = np.random.default_rng(args.seed)
        indices = sorted(rng.choice(len(ds), size=min(args.n, len(ds)), replace=False).tolist())
        plot_augmentations(ds, indices, args.rows, args.out, args.show)
    except (OSError, ValueError) as e:
        sys.exit(f"data.py: error: {e}")
    print(f"saved {args.out} ({len(indices)} images, {args.rows} augmentations each)")


if __name__ == "__main__":
    main()
