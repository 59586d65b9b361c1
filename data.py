"""SVHN format-1 data for torch: JSON records -> cropped, augmented image tensors and token
sequences, the datasets and samplers train.py, eval.py and play.py load them with, the batches,
and train.py's data (load_data; --synth-mix's lines from training/synth_lines.py mixed in).

prepare_data.py converts digitStruct.mat (or a labels CSV) into one JSON per split once; this file
only reads and augments (the augmentations' parameters and parts: training/augment.py). Per image:
crop to the region its record names (records.py; crops.py: the union of the digit boxes grown by
30% around its centre, in whole pixels, black where the crop leaves the image), resize to 64x64,
then RandomResizedCrop(54, scale 0.7-1) and ColorJitter(0.5 x4) for training or CenterCrop(54) for
evaluation, then ToTensor: pixels in [0, 1]. (A model trained with normalize=True maps them to
[-1, 1] itself, so the data is the same for every checkpoint.) The text becomes <s> characters
</s> (tokenizer.py).

    python data.py [--json data/synth/train.json] [--n 8] [--out img/aug.png] [--show]
saves a figure of the 64x64 crops (top row) and random augmentations of each (rows below).
"""
import argparse
import math
import os
import random
import sys

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from torch.utils.data import ConcatDataset

from support import figtext, outputs
from support.atomic import ANY, save_figure
from model import DEFAULT_CONFIG, as_hw
from support.crops import centre_input, fitted_width, resize_region
from support.images import MAX_PIXELS, crop_image, open_image
from support.script import run_main
from formats.records import SVHN_ROOT, SYNTH_ROOT, load_split, record_region, record_text
from support.tokenizer import (PAD, build_tokenizer, extend_vocab, token_text, tokenizer_from_vocab,
                       unknown_chars)
from training.augment import (JITTER, PHOTO_JITTER, RATIO, SCALE, STYLES, elastic_warp, loosen,
                              photo_augment, reframe, text_augment)
from training.synth_lines import SynthLines

# -----------------------------------------------------------------------------
# dataset

# A training image's loaded region (cropped and resized to image_size, before augmentation) is
# kept in memory, up to this many bytes per process: a photo of 12 megapixels takes about 150 ms
# to decode for a plate of a few hundred pixels, every epoch, where the network's step on it takes
# about 30 ms (2 AVX2 cores). Regions the augmentation moves (--loose, the photo style) are read
# each time. The region is the same image either way, so training is the same, bit for bit.
CACHE_BYTES = 256 * 2**20

class SVHNDataset(torch.utils.data.Dataset):
    """(image (3, S, S) in [0, 1], tokens <s> d.. </s>, boxes (K, 4) x0 y0 x1 y1 in input pixels).

    Boxes are exact in both modes: evaluation maps them through crop, resize and centre crop;
    training draws RandomResizedCrop's parameters itself and maps them through that crop too.
    They are not clipped, so a box may reach past the network input."""

    def __init__(self, source, tokenizer=None, train=False,
                 image_size=DEFAULT_CONFIG["image_size"], crop_size=DEFAULT_CONFIG["crop_size"],
                 max_pixels=MAX_PIXELS, loose=0.0, style="seed", max_stretch=0.0, shear=0.0,
                 elastic=0.0):
        if isinstance(source, (str, os.PathLike)):
            self.image_dir, records = load_split(source)
        else:
            self.image_dir, records = source
        crop_hw = as_hw(crop_size)
        image_hw = as_hw(image_size)
        if not all(0 < c <= s for c, s in zip(crop_hw, image_hw)):
            raise ValueError(f"crop_size {crop_size} must be in 1..image_size ({image_size})")
        self.train = train
        self.image_size = image_size
        self.crop_size = crop_size
        self.max_stretch = max_stretch
        self.max_pixels = max_pixels
        if not 0.0 <= loose <= 1.0:
            raise ValueError(f"loose {loose} must be a probability in [0, 1]")
        self.loose = loose if train else 0.0
        if style not in STYLES:
            raise ValueError(f"augmentation style {style!r} is not one of {', '.join(STYLES)}")
        self.style = style
        if shear and style != "text":
            raise ValueError(f"--shear {shear:g} slants the text style's lines; augmentation "
                             f"style {style!r} has none (give --augment-style text)")
        self.shear = shear
        if elastic and style != "text":
            raise ValueError(f"--elastic {elastic:g} warps the text style's lines; augmentation "
                             f"style {style!r} has none (give --augment-style text)")
        self.elastic = elastic
        # compact arrays instead of a list of dicts: cheap to pickle to workers (spawn)
        self.names = [r["name"] for r in records]
        self.texts = [record_text(r) for r in records]
        self.tokenizer = tokenizer if tokenizer is not None else build_tokenizer(self.texts)
        # the region each image is cropped to; NaN: the whole image (its size is known on opening)
        regions = [record_region(r) or (math.nan,) * 4 for r in records]
        self.regions = np.array(regions, dtype=np.float64).reshape(-1, 4)
        # per-character boxes; a record without them (a labels CSV) has none
        char_boxes = [r.get("boxes") or [] for r in records]
        counts = [len(b) for b in char_boxes]
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.boxes = np.array([b for bs in char_boxes for b in bs], dtype=np.float32).reshape(-1, 4)
        self.jitter = T.ColorJitter(JITTER, JITTER, JITTER, JITTER)
        if style in ("photo", "text"):
            self.jitter = T.ColorJitter(*PHOTO_JITTER)
        self.cache_bytes = CACHE_BYTES if train else 0
        self.cache = {}  # index -> load()'s (image, boxes), per process (see CACHE_BYTES)
        self.cached_bytes = 0

    def __getstate__(self):
        """Pickled for a loader worker without the cache: each process fills its own."""
        state = dict(self.__dict__)
        state["cache"] = {}
        state["cached_bytes"] = 0
        return state

    @classmethod
    def evaluation(cls, source, tokenizer, config, max_pixels=MAX_PIXELS):
        """The evaluation set of a model: its images read as its config says (input size,
        crop, max_stretch), the one way eval.py, play.py and the benches read a checkpoint's
        test images."""
        return cls(source, tokenizer, train=False, image_size=config["image_size"],
                   crop_size=config["crop_size"], max_pixels=max_pixels,
                   max_stretch=config["max_stretch"])

    def __len__(self):
        return len(self.names)

    def label(self, i):
        """Text of image i, e.g. "19" or "AB12"."""
        return self.texts[i]

    def load(self, i):
        """Image i cropped and resized to image_size -> (PIL RGB, boxes (K, 4) x0 y0 x1 y1 in it).
        K is 0 for a record without per-character boxes."""
        whole = np.isnan(self.regions[i, 0])
        loose = not whole and self.loose and random.random() < self.loose
        moved = loose or (not whole and self.train and self.style == "photo")
        if not moved and i in self.cache:
            return self.cache[i]
        loaded = self.read_region(i, whole, loose)
        if not moved:
            self.remember(i, loaded)
        return loaded

    def remember(self, i, loaded):
        """Keep load()'s result for image i while the cache has room (CACHE_BYTES)."""
        img, boxes = loaded
        size = img.size[0] * img.size[1] * len(img.getbands()) + boxes.nbytes
        if self.cached_bytes + size <= self.cache_bytes:
            self.cache[i] = loaded
            self.cached_bytes += size

    def read_region(self, i, whole, loose):
        """load() from the file: the whole image, a loosened region (loose), or the record's
        region (moved by the photo style in training)."""
        path = os.path.join(self.image_dir, self.names[i])
        ltwh = self.boxes[self.offsets[i]:self.offsets[i + 1]].astype(np.float64)
        if whole:
            img = open_image(path, None, self.max_pixels, root=self.image_dir)
            x0, y0, x1, y1 = 0, 0, img.size[0], img.size[1]
        elif loose:
            img = open_image(path, None, self.max_pixels, root=self.image_dir)
            x0, y0, x1, y1 = loosen(self.regions[i], img.size)
            img = crop_image(img, (x0, y0, x1 - x0, y1 - y0))
        else:
            x0, y0, x1, y1 = (int(v) for v in self.regions[i])
            if self.train and self.style == "photo":
                x0, y0, x1, y1 = reframe((x0, y0, x1, y1))
            img = open_image(path, (x0, y0, x1 - x0, y1 - y0), self.max_pixels,
                             root=self.image_dir)
        height = as_hw(self.image_size)[0]
        width = fitted_width(img.size, self.image_size, self.max_stretch)  # the region's part
        img = resize_region(img, self.image_size, self.max_stretch)
        sx, sy = width / (x1 - x0), height / (y1 - y0)
        right = ltwh[:, 0] + ltwh[:, 2]
        bottom = ltwh[:, 1] + ltwh[:, 3]
        boxes = np.stack([(ltwh[:, 0] - x0) * sx, (ltwh[:, 1] - y0) * sy,
                          (right - x0) * sx, (bottom - y0) * sy], 1)  # (K, 4)
        return img, boxes

    def augment(self, img, boxes):
        """Recipe transform of a load() result -> (tensor (3, S, S), boxes (K, 4) tensor)."""
        ch, cw = as_hw(self.crop_size)
        if self.train and self.style in ("photo", "text"):
            top, left = self.centre_offsets()
            sx = sy = 1.0
            if self.style == "photo":
                img = photo_augment(img, self.jitter)
            else:
                img = text_augment(img, self.jitter, self.shear)
            x = centre_input(img, self.crop_size)  # (3, H, W)
            if self.style == "text":
                x = elastic_warp(x, self.elastic)
        elif self.train:
            # the seed's aspect range, around the input's own shape (a square: exactly the seed's)
            ratio = RATIO
            if cw != ch:
                ratio = (RATIO[0] * cw / ch, RATIO[1] * cw / ch)
            top, left, h, w = T.RandomResizedCrop.get_params(img, SCALE, ratio)
            img = TF.resized_crop(img, top, left, h, w, [ch, cw], antialias=True)
            img = self.jitter(img)
            sx, sy = cw / w, ch / h
            x = TF.to_tensor(img)  # (3, H, W) in [0, 1]
        else:
            top, left = self.centre_offsets()
            sx = sy = 1.0
            x = centre_input(img, self.crop_size)  # (3, H, W) in [0, 1]
        boxes = (boxes - [left, top, left, top]) * [sx, sy, sx, sy]
        return x, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)

    def centre_offsets(self):
        """(top, left) of the centre crop in the resized region: CenterCrop's own rule
        (torchvision rounds half the margin)."""
        height, width = as_hw(self.image_size)
        ch, cw = as_hw(self.crop_size)
        return int(round((height - ch) / 2.0)), int(round((width - cw) / 2.0))

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
    """(tokenizer, training set of all JSONs minus the held-out images, validation set or None,
    the number of records in each --train-json) from train.py's flags (--train-json, --val-json,
    --val-size, --max-len where given, --image-size, --crop-size, --max-pixels, --augment,
    --augment-style, --loose, --synth-mix). The checkpoint keeps the counts: resume checks the
    JSONs. vocab: a checkpoint's vocabulary, kept as it is, or with extend the training texts'
    characters it lacks appended (fine-tuning)."""
    splits = read_splits(args)
    val_split = splits.pop() if args.val_json else None
    json_records = [len(records) for _, records in splits]
    texts = [record_text(r) for _, records in splits for r in records]
    tokenizer = training_tokenizer(texts, vocab, extend, args.train_json)
    image_dir, first = splits[0]
    if not 0 <= args.val_size < len(first):
        raise ValueError(f"{args.train_json[0]}: holds {len(first)} images; "
                         f"--val-size {args.val_size} must be >= 0 and leave one to train on")
    held = set(random.Random(VAL_SEED).sample(range(len(first)), args.val_size))
    parts = [(image_dir, [r for i, r in enumerate(first) if i not in held])] + splits[1:]

    def dataset(source, train):
        return SVHNDataset(source, tokenizer, train=train, image_size=args.image_size,
                           crop_size=args.crop_size, max_pixels=args.max_pixels,
                           loose=args.loose, style=args.augment_style,
                           max_stretch=args.max_stretch, shear=args.shear,
                           elastic=args.elastic)
    train_sets = [dataset(part, args.augment) for part in parts]
    if args.synth_mix:
        train_sets.append(mixed_synth_lines(train_sets, tokenizer, args))
    train_set = ConcatDataset(train_sets)
    val_set = None
    if held:
        val_set = dataset((image_dir, [first[i] for i in sorted(held)]), False)
    if val_split is not None:
        val_set = dataset(val_split, False)
    return tokenizer, train_set, val_set, json_records


def read_splits(args):
    """[(image folder, records)] of every --train-json, then --val-json if given: each file must
    exist, and with --max-len given every text must fit it."""
    paths = list(args.train_json)
    if args.val_json:
        paths.append(args.val_json)
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file; "
                                    f"make it with `python prepare_data.py` first")
    splits = [load_split(path) for path in paths]
    if "max_len" in args.model_flags:  # a cap given explicitly; otherwise it follows the data
        for path, (_, records) in zip(paths, splits):
            for i, r in enumerate(records):  # the model could never read it out
                if len(record_text(r)) > args.max_len:
                    raise ValueError(f"{path}: record {i + 1} ({r['name']!r}): text "
                                     f"{record_text(r)!r} is longer than --max-len "
                                     f"{args.max_len}; raise --max-len or leave it out")
    return splits


def training_tokenizer(texts, vocab, extend, train_json):
    """The tokenizer of the training `texts`: built from them, or a checkpoint's `vocab` (with
    extend: grown by their new characters); ValueError for a character a kept vocabulary lacks,
    which resuming would train as <unk>."""
    if vocab and extend:
        vocab = extend_vocab(vocab, texts)
    if not vocab:
        return build_tokenizer(texts)
    unknown = unknown_chars(texts, vocab)
    if unknown:
        raise ValueError(f"{' '.join(train_json)}: characters {''.join(sorted(unknown))!r} "
                         f"are not in the checkpoint's vocabulary; start a new --out")
    return tokenizer_from_vocab(vocab)


def mixed_synth_lines(train_sets, tokenizer, args):
    """--synth-mix: SynthLines drawing that share of every epoch's images, in the training texts'
    characters, lengths and layouts."""
    texts = [t for part in train_sets for t in part.texts]
    size = round(len(texts) * args.synth_mix / (1 - args.synth_mix))
    synth = SynthLines(texts, tokenizer, size, args.image_size, args.crop_size, args.max_stretch,
                       args.shear, args.elastic)
    if synth.undrawable:
        print(f"--synth-mix: no style draws {''.join(synth.undrawable)!r}: only the photos "
              f"teach them (a font that draws them, installed or named by SYNTH_FONTS, would "
              f"draw them; README \"New characters\")")
    return synth


def longest_text(dataset):
    """Characters in the longest text of a training set (a ConcatDataset of SVHNDatasets)."""
    return max(len(t) for part in dataset.datasets for t in part.texts)


# -----------------------------------------------------------------------------
# python data.py: a figure of the augmentation

def default_json():
    for path in (f"{SVHN_ROOT}/train.json", f"{SYNTH_ROOT}/train.json"):
        if os.path.exists(path):
            return path
    return None


def plot_augmentations(dataset, indices, rows, out, show=False, expect=ANY):
    import matplotlib
    if not show:
        matplotlib.use("Agg")
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows + 1, len(indices), figsize=(1.4 * len(indices), 1.5 * (rows + 1)),
                             squeeze=False)
    font = figtext.title_font([dataset.label(i) for i in indices], "data.py")
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
        axes[0, col].set_title(dataset.label(i), fontsize=9, fontfamily=font)
    axes[0, 0].set_ylabel(f"crop {dataset.image_size}", fontsize=8)
    for row in range(1, rows + 1):
        axes[row, 0].set_ylabel(f"train {dataset.crop_size}", fontsize=8)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with figtext.quiet_glyphs():
        fig.tight_layout()
        save_figure(fig, out, expect=expect, dpi=120)  # --out a folder: an error, no stray .tmp
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
    p.add_argument("--image-size", type=int, default=DEFAULT_CONFIG["image_size"],
                   help="resize of the crop")
    p.add_argument("--crop-size", type=int, default=DEFAULT_CONFIG["crop_size"],
                   help="random/centre crop size")
    p.add_argument("--seed", type=int, default=0, help="random seed for picks and augmentations")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help="larger images (width x height) are refused as unreadable")
    p.add_argument("--out", default="img/aug.png", help="output figure")
    p.add_argument("--show", action="store_true", help="also open a window with the figure")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an --out that is not a figure of ours")
    args = p.parse_args(argv)
    for name, low in (("n", 1), ("rows", 0), ("max_pixels", 1)):
        if getattr(args, name) < low:
            p.error(f"--{name.replace('_', '-')} must be >= {low}")
    if args.json is None:
        sys.exit("data.py: error: no data/svhn/train.json or data/synth/train.json; run "
                 "prepare_data.py (or prepare_data.py --synthetic) first, or pass --json")
    try:  # a figure of ours is redrawn; the JSON read, or a user's photo, is not replaced
        expect = outputs.check_replaceable(args.out, "--out", args.overwrite,
                                           outputs.is_own_figure,
                                           "a figure this repository drew", [args.json])
        ds = SVHNDataset(args.json, train=True, image_size=args.image_size,
                         crop_size=args.crop_size, max_pixels=args.max_pixels)
        if len(ds) == 0:
            raise ValueError(f"{args.json}: no records")
        torch.manual_seed(args.seed)
        rng = np.random.default_rng(args.seed)
        indices = sorted(rng.choice(len(ds), size=min(args.n, len(ds)), replace=False).tolist())
        plot_augmentations(ds, indices, args.rows, args.out, args.show, expect)
    except (OSError, ValueError) as e:
        sys.exit(f"data.py: error: {e}")
    print(f"saved {args.out} ({len(indices)} images, {args.rows} augmentations each)")


if __name__ == "__main__":
    run_main("data.py", main)
