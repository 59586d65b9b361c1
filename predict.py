"""Read the text in a folder of photos: one CSV row per image, with the model's confidence.

python predict.py --checkpoint weights/replica.pt --csv out.csv photos/ house.jpg
python predict.py --checkpoint runs/plates/best.pt --csv plates.csv crops/ --boxes boxes.csv

Each PATH is an image file or a folder, searched recursively for image files (symbolic links
followed once; a loop is skipped and named). Photos come without boxes: the whole image is the
model's input (resized as the checkpoint's evaluation input), unless --boxes gives a labels-CSV
style file `name,left,top,width,height` (names relative to that file's folder; or the box by its
corners, `name,xmin,ymin,xmax,ymax`, as labels CSVs may give it) whose box is used as given.
The CSV has columns file,text,confidence: confidence is the probability of the whole sequence
(every character and the end), in [0, 1]. Unreadable files (not an image, 0 bytes,
truncated, above --max-pixels, a FIFO) are skipped, counted and listed at the end; the CSV holds
the readable ones and is written atomically, once, at the end. An existing CSV is never replaced
without --overwrite.
"""
import argparse
import csv
import io
import os
import sys
import time

import torch
from tqdm import tqdm

from support import cli, inference, outputs, runs, threads
from support.atomic import atomic_open
from model import as_hw
from formats.labels_csv import box_columns
from support.crops import eval_input
from support.images import MAX_PIXELS, aspect, find_images, open_image, whole_pixels
from support.inputs import csv_delimiter, is_utf8, read_input, shown
from support.script import run_main

BATCH_SIZE = 64  # images per decoding batch
FITS = ("squash", "keep-aspect")
MAX_ASPECT = 8.0  # --fit keep-aspect: inputs at most this many times wider than high


class PhotoSet(torch.utils.data.Dataset):
    """Image files -> (index, network input (3, H, W) or None, why it could not be read)."""

    def __init__(self, files, config, boxes=None, max_pixels=MAX_PIXELS, fit="squash"):
        self.files = files
        self.image_size = config["image_size"]
        self.crop_size = config["crop_size"]
        self.max_stretch = config["max_stretch"]
        self.boxes = boxes or {}
        self.max_pixels = max_pixels
        self.fit = fit

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        path = self.files[i]
        box = self.boxes.get(os.path.realpath(path))
        try:
            if os.path.getsize(path) == 0:
                return i, None, "an empty file (0 bytes)"
            img = open_image(path, box, self.max_pixels, inside=True)
        except OSError as e:  # "<path>: cannot read image (why)"
            return i, None, str(e).removeprefix(f"{path}: ")
        if self.fit == "keep-aspect":
            return i, keep_aspect_input(img, self.image_size, self.crop_size), None
        return i, eval_input(img, self.image_size, self.crop_size, self.max_stretch), None


def keep_aspect_input(img, image_size, crop_size):
    """--fit keep-aspect: the region resized to image_size's height at its own aspect (at least
    image_size's width, at most MAX_ASPECT times the height), then centre-cropped by the
    checkpoint's margins: characters keep the shape and scale the model was trained on, and a
    wide photo is read as wide. (3, H, W') in [0, 1], W' varying from image to image."""
    height, width = as_hw(image_size)
    crop_h, crop_w = as_hw(crop_size)
    aspect = img.size[0] / max(img.size[1], 1)
    wide = min(max(width, round(height * aspect)), round(MAX_ASPECT * height))
    return eval_input(img, [height, wide], [crop_h, wide - (width - crop_w)])


def collate_photos(batch):
    """([(indices, images (B, 3, H, W))] one group per input shape, [(index, reason)] of the
    unreadable ones). Inputs of different widths (--fit keep-aspect) are decoded apart, never
    padded to a common width: a photo's text must not depend on the other files."""
    groups = {}
    for i, x, _ in batch:
        if x is not None:
            groups.setdefault(tuple(x.shape), []).append((i, x))
    bad = [(i, why) for i, x, why in batch if x is None]
    stacked = []
    for members in groups.values():
        indices, images = zip(*members)
        stacked.append((list(indices), torch.stack(images)))
    return stacked, bad


def by_aspect(files):
    """The files ordered by width / height (from their headers), so that a batch holds few input
    widths (each decoded as one group); an unreadable header sorts first (skipped when read)."""
    def key(path):
        try:
            return aspect(path)
        except Exception:  # noqa: BLE001 (any unreadable file: the reader names it)
            return 0.0
    return sorted(files, key=key)


def read_boxes(path):
    """--boxes: ({real path of the image: (left, top, width, height)}, {real path: its line},
    [(line, name, the line that gave it first)] of the duplicates, whose first box is used);
    ValueError naming the line for a row that is no box."""
    folder = os.path.dirname(os.path.abspath(path))
    boxes = {}
    lines = {}
    duplicates = []
    try:
        text = read_input(path, "a --boxes CSV").decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=csv_delimiter(text)))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: cannot read it ({e})") from None
    header = [h.strip().lower() for h in rows[0]] if rows else []
    try:
        box_names = box_columns(header)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if "name" not in header or box_names is None:
        raise ValueError(f"{path}: the header must hold name,left,top,width,height, got "
                         f"{','.join(header)}")
    names, corners = box_names
    cols = [header.index(k) for k in ("name", *names)]
    for line, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            name, *numbers = (row[c].strip() for c in cols)
            box = [float(v) for v in numbers]
        except (IndexError, ValueError):
            raise ValueError(f"{path} line {line}: expected name,{','.join(names)}") from None
        if corners:  # x0,y0,x1,y1
            box = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
        if not all(abs(v) < 2 ** 24 for v in box) or box[2] <= 0 or box[3] <= 0:
            raise ValueError(f"{path} line {line}: a box needs finite numbers and width, "
                             f"height > 0")
        real = os.path.realpath(os.path.join(folder, name))
        if real in boxes:
            duplicates.append((line, name, lines[real]))
            continue
        boxes[real] = whole_pixels(*box)
        lines[real] = line
    return boxes, lines, duplicates


def box_notes(path, lines, duplicates, files):
    """The lines to say about --boxes `path`: its rows naming no image among `files`, and its
    duplicate names (counted, the first of each named)."""
    found = {os.path.realpath(f) for f in files}
    unknown = sorted((line, real) for real, line in lines.items() if real not in found)
    notes = []
    if unknown:
        line, real = unknown[0]
        notes.append(f"--boxes {path}: {len(unknown)} row(s) name no image read here (first: "
                     f"line {line}: {real}); not used")
    if duplicates:
        line, name, first = duplicates[0]
        notes.append(f"--boxes {path}: {len(duplicates)} duplicate row(s), each name's first box "
                     f"used (first: line {line}: {name}, given on line {first})")
    return notes


@torch.inference_mode()
def read_photos(model, loader, vocab, device, precision, beam=1, progress=True, votes=None):
    """{index: (text, confidence)} of every readable image, and [(index, reason)] of the rest
    (votes: model.vote's copies; None: the checkpoint's)."""
    from support.tokenizer import label_ids
    results = {}
    failed = []
    bar = tqdm(loader, desc="predict", unit="batch", disable=None if progress else True)
    for groups, bad in bar:
        failed += bad
        for indices, images in groups:  # one input shape each
            out, _ = inference.decode_batch(model, images, beam, device, precision, votes)
            probs = out["logprob"].float().exp().cpu().tolist()
            for i, tokens, p in zip(indices, out["tokens"], probs):
                text = "".join(vocab[t] for t in label_ids(tokens))
                results[i] = (text, min(1.0, max(0.0, p)))
    return results, failed


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--checkpoint", default=runs.SHIPPED,
                   help="a checkpoint of train.py (its input shape and vocabulary come with it)")
    p.add_argument("--csv", required=True, help="output CSV: file,text,confidence")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --csv")
    p.add_argument("--boxes", default=None,
                   help="CSV name,left,top,width,height: the box of the text in those images "
                        "(as given, no growth); others are read whole")
    p.add_argument("--fit", choices=FITS, default="squash",
                   help="squash: every image made the checkpoint's input as eval.py reads "
                        "crops (squashed to it, or padded past a --max-stretch it was trained "
                        "with); keep-aspect: resized to the input's height at its own aspect "
                        f"(up to {MAX_ASPECT:g}:1), for whole photos wider than the text "
                        "(README: Predict)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="images per batch")
    p.add_argument("--beam", type=int, default=1, help="beam width; 1 = greedy decoding")
    cli.add_vote_flag(p)
    cli.add_inference_flags(p)
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help="larger images (width x height) are skipped as unreadable")
    args = p.parse_args(argv)
    cli.check_decoding(p, args)
    if args.threads < 0 or (args.workers is not None and args.workers < 0):
        p.error("--threads and --workers must be >= 0")
    return args


def check_output(path, overwrite, inputs=()):
    """What is at `path` now (the write's `expect`), or ValueError unless `path` may be written:
    not a folder, not one of `inputs`, not an existing file (without --overwrite), in a folder
    that exists."""
    expect = outputs.check_replaceable(path, "--csv", overwrite, inputs=inputs)
    outputs.check_folder(path, "--csv")
    return expect


def run(args):
    check_output(args.csv, args.overwrite)  # before the search: a mistake fails at once
    files, skipped = find_images(args.paths)
    expect = check_output(args.csv, args.overwrite, files + [args.checkpoint, args.boxes])
    if args.fit == "keep-aspect":
        files = by_aspect(files)
    if not files:
        why = f" ({len(skipped)} skipped: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise ValueError(f"no image files in {' '.join(args.paths)}{why}")
    boxes = None
    notes = []
    if args.boxes:
        boxes, lines, duplicates = read_boxes(args.boxes)
        notes = box_notes(args.boxes, lines, duplicates, files)
    setup = inference.start(args, "predict.py", args.workers)
    device, workers, precision = setup.device, setup.workers, setup.precision
    model, ckpt = inference.open_model(args.checkpoint, device, args.beam)
    vocab = list(ckpt["vocab"])
    config = model.config
    photos = PhotoSet(files, config, boxes, args.max_pixels, args.fit)
    loader = torch.utils.data.DataLoader(photos,
                                         batch_size=args.batch_size, num_workers=workers,
                                         collate_fn=collate_photos)
    loader = threads.paced(loader, device, args.threads)  # threads re-checked between batches
    start = time.time()
    results, failed = read_photos(model, loader, vocab, device, precision, args.beam,
                                  votes=args.votes)
    seconds = time.time() - start
    failed = [(files[i], why) for i, why in failed] + skipped
    if not results:
        raise ValueError(f"none of the {len(files)} image file(s) could be read "
                         f"(first: {failed[0][0]}: {failed[0][1]}); nothing written")
    notes += write_csv(args.csv, files, results, expect)
    print(f"predict.py: {len(results)} image(s) read in {seconds:.1f} s "
          f"({len(results) / max(seconds, 1e-9):.1f} images/s) -> {args.csv}")
    for note in notes:
        print(f"predict.py: {note}", file=sys.stderr)
    if failed:
        print(f"predict.py: {len(failed)} skipped:", file=sys.stderr)
        for path, why in failed:
            print(f"  {path}: {why}", file=sys.stderr)
    return results, failed


def write_csv(path, files, results, expect):
    """The CSV file,text,confidence, sorted by file, written atomically (expect: atomic's).
    A file name that is not UTF-8 (bytes the file system allows) is written as those bytes, so
    that it still names the file; returns the line that says how many there were."""
    odd = []
    with atomic_open(path, "w", expect=expect, newline="", encoding="utf-8",
                     errors="surrogateescape") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "text", "confidence"])
        for i in sorted(results, key=lambda i: files[i]):
            text, confidence = results[i]
            writer.writerow([files[i], text, f"{confidence:.6f}"])
            if not is_utf8(files[i]):
                odd.append(files[i])
    if not odd:
        return []
    return [f"{len(odd)} file name(s) are not UTF-8, written to {path} as their bytes on disk "
            f"(first: {shown(odd[0])})"]



def main(argv=None):
    args = parse_args(argv)
    try:
        run(args)
    except (OSError, ValueError) as e:
        last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        sys.exit(f"predict.py: error: {last.removeprefix(type(e).__name__ + ': ')}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main("predict.py", main))
