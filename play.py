"""Attention figures: where the model looks for each digit it reads.

    python play.py                                   # runs/svhn/last.pt on 8 test images
    python play.py --checkpoint runs/svhn/epoch-010.pt photo.jpg my_folder/ [--crop 40,10,90,60]

For every image: the network's input crop, then one panel per predicted digit with that step's
attention upsampled (bilinear) over the crop, titled with the digit and its probability. Also a
grid of several images, <out>/attention.png (the figure the README shows).
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from support import cli, figtext, inference, outputs, runs
from support.atomic import save_figure
from formats.records import MAX_COORD, SVHN_TEST
from support.images import MAX_PIXELS
from support.tokenizer import label_ids
from support.script import run_main

# -----------------------------------------------------------------------------
# defaults
N_IMAGES = 8  # images taken from the split
OUT_DIR = "img"  # where the PNGs go
GRID_ROWS = 8  # images in the grid figure
BATCH = 64  # images per decoding batch


# -----------------------------------------------------------------------------
# inputs: each becomes {"name", "image" (3, S, S) in [0, 1], "truth" (str or None)}

def parse_crop(text):
    """'left,top,width,height' -> [l, t, w, h] floats (ValueError otherwise)."""
    parts = text.replace(" ", "").split(",")
    try:
        box = [float(p) for p in parts]
    except ValueError:
        box = []
    if len(box) != 4 or not all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"--crop {text!r}: expected left,top,width,height (finite numbers) "
                         f"with width, height > 0")
    if max(abs(v) for v in box) > MAX_COORD:  # float32 boxes: 1e308 would be inf
        raise ValueError(f"--crop {text!r}: each number must be within +-2^24 = {MAX_COORD:,} "
                         f"pixels (boxes are float32, exact only up to 2^24)")
    return box


def crop_arg(text):
    """argparse type of --crop: parse_crop's box, its ValueError an argparse error."""
    try:
        return parse_crop(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def load_file(path, crop, config, max_pixels=MAX_PIXELS):
    """One image file -> network input (3, crop_size, crop_size), as data.py prepares eval crops:
    region (the whole image, or the --crop box grown by 30% like training crops), resize to
    image_size (and its max_stretch), centre crop, by the model's config. Any PIL mode;
    ValueError with a reason when it cannot be read."""
    from model import as_hw
    from support.crops import eval_input
    from support.images import crop_box, open_image
    box = None
    if crop is not None:
        box = crop_box([crop])
    # JPEG decodes at a reduced scale for free; the crop needs a few pixels, not 12 MP
    height, width = as_hw(config["image_size"])
    draft = (4 * width, 4 * height) if crop is None else None
    try:
        img = open_image(path, box, max_pixels, draft)
    except OSError as e:  # "<path>: cannot read image (...)": the caller names the path
        raise ValueError(str(e).removeprefix(f"{path}: ")) from None
    return eval_input(img, config["image_size"], config["crop_size"],
                      config["max_stretch"])  # (3, H, W) in [0, 1]


def inputs_from_files(paths, crop, config, max_pixels=MAX_PIXELS):
    from support.images import find_images
    items, failed = [], []
    files, skipped = find_images(paths)  # missing files, FIFOs, directory loops
    for path, reason in skipped:
        print(f"play.py: skipping {path}: {reason}", file=sys.stderr)
        failed.append(path)
    for path in files:
        try:
            image = load_file(path, crop, config, max_pixels)
        except ValueError as e:
            print(f"play.py: skipping {path}: {e}", file=sys.stderr)
            failed.append(path)
            continue
        items.append({"name": path, "image": image, "truth": None})
    return items, failed


def inputs_from_split(json_path, n, vocab, config, max_pixels=MAX_PIXELS):
    from data import SVHNDataset
    from formats.records import load_split
    from support.tokenizer import tokenizer_from_vocab
    image_dir, records = load_split(json_path)
    dataset = SVHNDataset.evaluation((image_dir, records[:n]), tokenizer_from_vocab(vocab),
                                     config, max_pixels)
    items, failed = [], []
    for i in range(len(dataset)):
        try:
            image, _, _ = dataset[i]
        except (OSError, ValueError) as e:
            print(f"play.py: skipping {records[i]['name']}: {e}", file=sys.stderr)
            failed.append(records[i]["name"])
            continue
        items.append({"name": records[i]["name"], "image": image, "truth": dataset.label(i)})
    return items, failed


# -----------------------------------------------------------------------------
# decoding and drawing

@torch.inference_mode()
def decode_items(model, items, vocab, beam=1, device="cpu", precision="fp32", votes=None):
    """Adds "digits", "probs" (per digit), "prob" (sequence) and "maps" (K, S, S), or None for a
    head without attention (ctc), to each item (votes: model.vote's copies; None: the
    checkpoint's; the maps are those of the copy the vote kept)."""
    for start in range(0, len(items), BATCH):
        chunk = items[start:start + BATCH]
        images = torch.stack([it["image"] for it in chunk])  # (B, 3, S, S)
        out, _ = inference.decode_batch(model, images, beam, device, precision, votes)
        maps = None
        if out["attention"] is not None:
            maps = attention_maps(out["attention"], out["feature_hw"], images.shape[-2:])
        for b, it in enumerate(chunk):
            ids = label_ids(out["tokens"][b])
            it["digits"] = [vocab[t] for t in ids]
            it["probs"] = out["probs"][b, : len(ids)].float().cpu().tolist()
            it["prob"] = float(out["logprob"][b].float().exp())
            it["maps"] = None if maps is None else maps[b, : len(ids)].numpy()  # (K, H, W)
    return items


def attention_maps(attention, feature_hw, size):
    """Attention (B, T, h*w) over the feature map -> (B, T, H, W) over the input, bilinear."""
    h, w = feature_hw
    B, T, _ = attention.shape
    # reshape, not view: beam search's attention is a slice of a larger tensor (not contiguous)
    flat = attention.float().reshape(B * T, 1, h, w)  # (B*T, 1, h, w)
    maps = F.interpolate(flat, size=tuple(size), mode="bilinear",
                         align_corners=False)  # (B*T, 1, H, W)
    return maps.view(B, T, *size).cpu()  # (B, T, H, W)


def draw_row(axes, item, font):
    """The crop, then one attention panel per predicted digit, on a row of axes; titles in the
    font families `font`."""
    image = item["image"].permute(1, 2, 0).numpy()  # (H, W, 3) in [0, 1]
    grey = image.mean(axis=2)
    for ax in axes:
        ax.axis("off")
    title = f"pred {''.join(item['digits']) or '(none)'} ({item['prob']:.2f})"
    if item["truth"] is not None:
        title += f"\ntrue {item['truth']}"
    axes[0].imshow(image)
    axes[0].set_title(title, fontsize=8, fontfamily=font)
    if item["maps"] is None:  # a head without attention: the input and the text only
        return
    for ax, digit, p, amap in zip(axes[1:], item["digits"], item["probs"], item["maps"]):
        ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
        ax.imshow(amap / max(float(amap.max()), 1e-12), cmap="jet", alpha=0.5, vmin=0, vmax=1)
        ax.set_title(f"{digit} ({p:.2f})", fontsize=8, fontfamily=font)


def figure(items, path, show=False):
    """One row per item; saved atomically to path."""
    import matplotlib.pyplot as plt
    cols = 1 + max(max(len(it["digits"]) for it in items), 1)
    if all(it["maps"] is None for it in items):
        cols = 1
    height, width = items[0]["image"].shape[-2:]
    panel = 1.6 * min(width / height, 2.5)  # a wide input gets wide panels (up to 4 inches)
    fig, axes = plt.subplots(len(items), cols, figsize=(panel * cols, 1.9 * len(items)),
                             squeeze=False)
    font = figtext.title_font(["".join(it["digits"]) + (it["truth"] or "") for it in items],
                              "play.py")
    for row, item in zip(axes, items):
        draw_row(row, item, font)
    with figtext.quiet_glyphs():
        fig.tight_layout()
        save_figure(fig, path, dpi=110)
    if not show:
        plt.close(fig)


def figure_name(name, taken):
    """attention_<file stem>.png, unique within this run."""
    stem = os.path.splitext(os.path.basename(name))[0] or "image"
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    candidate, k = f"attention_{stem}.png", 2
    while candidate in taken or candidate == "attention.png":
        candidate, k = f"attention_{stem}_{k}.png", k + 1
    taken.add(candidate)
    return candidate


# -----------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("images", nargs="*",
                   help="image files or folders; none given: -n images of --json")
    p.add_argument("--checkpoint", default=runs.CHECKPOINT,
                   help="checkpoint written by train.py (last.pt, epoch-NNN.pt or best.pt)")
    p.add_argument("--json", default=SVHN_TEST, help="prepared split used when no images are given")
    p.add_argument("-n", type=int, default=N_IMAGES, help="images taken from the split")
    p.add_argument("--crop", type=crop_arg, default=None,
                   help="left,top,width,height box around the digits in each image file "
                        "(grown by 30%% like training crops); None: the whole image")
    p.add_argument("--beam", type=int, default=1, help="beam width; 1 = greedy decoding")
    cli.add_vote_flag(p)
    p.add_argument("--out", default=OUT_DIR, help="folder for the PNGs")
    p.add_argument("--overwrite", action="store_true",
                   help="replace files in --out that are not figures of ours (its own earlier "
                        "figures are always redrawn)")
    cli.add_inference_flags(p, workers=False)
    p.add_argument("--show", action="store_true", help="also open a window with the figures")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help="larger images (width x height) are skipped as unreadable")
    args = p.parse_args(argv)
    for flag, value in (("-n", args.n), ("--max-pixels", args.max_pixels)):
        if value < 1:
            p.error(f"{flag} must be >= 1, got {value}")
    if args.threads < 0:
        p.error(f"--threads must be >= 0, got {args.threads}")
    cli.check_beam(p, args.beam)
    cli.check_votes(p, args.votes)
    return args


def main(argv=None):
    args = parse_args(argv)
    import matplotlib
    if not args.show:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    try:
        run = inference.start(args, "play.py", 0)
        device, precision = run.device, run.precision
        model, ckpt = inference.open_model(args.checkpoint, device, args.beam)
    except (ValueError, OSError, RuntimeError) as e:
        sys.exit(f"play.py: error: {e}")
    config, vocab = model.config, list(ckpt["vocab"])
    if args.images:
        items, failed = inputs_from_files(args.images, args.crop, config, args.max_pixels)
    else:
        try:
            items, failed = inputs_from_split(args.json, args.n, vocab, config, args.max_pixels)
        except (ValueError, OSError) as e:
            sys.exit(f"play.py: error: {e} (give image files, or --json of a prepared split)")
    if not items:
        sys.exit(f"play.py: error: no readable images ({len(failed)} skipped)")
    try:  # before decoding: a bad --out should not cost the user the wait
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        sys.exit(f"play.py: error: --out {args.out}: cannot make the folder ({e.strerror or e})")
    taken, grid = set(), os.path.join(args.out, "attention.png")
    paths = [os.path.join(args.out, figure_name(item["name"], taken)) for item in items]
    # what the figures must never replace, even with --overwrite: every file read
    inputs = [args.checkpoint, args.json] + [item["name"] for item in items if args.images]
    try:  # a figure of ours is redrawn; a user's attention_x.png is not replaced
        for path in paths + [grid]:
            outputs.check_replaceable(path, "--out", args.overwrite, outputs.is_own_figure,
                                      "a figure this repository drew", inputs)
    except ValueError as e:
        sys.exit(f"play.py: error: {e}")
    decode_items(model, items, vocab, args.beam, device, precision, args.votes)
    try:
        for item, path in zip(items, paths):
            figure([item], path, args.show)
        figure(items[:GRID_ROWS], grid, args.show)
    except OSError as e:
        sys.exit(f"play.py: error: cannot write a figure in {args.out}: {e.strerror or e}")
    for item in items:
        truth = f"  (true {item['truth']})" if item["truth"] is not None else ""
        print(f"{item['name']}: {''.join(item['digits']) or '-'}  p={item['prob']:.3f}{truth}")
    print(f"play.py: {len(items)} image(s) drawn to {args.out}/ (grid: {grid}), "
          f"{len(failed)} unreadable")
    if args.show:
        plt.show()
    return items, failed


if __name__ == "__main__":
    run_main("play.py", main)
