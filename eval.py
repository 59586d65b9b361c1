"""Evaluate a checkpoint on a prepared split: accuracy, coverage at 98%, attention localisation.

    python eval.py [--checkpoint runs/svhn/last.pt] [--json data/svhn/test.json] [--beam 1]

Everything about the model (config, vocabulary, image and crop sizes) comes from the checkpoint.
Writes a JSON report, an accuracy-coverage curve and a gallery of the most confident mistakes.
"""
import argparse
import json
import os
import sys
import time

import matplotlib
import numpy as np
import torch
from tqdm import tqdm

from support import cli, devices, figtext, inference, outputs, runs, threads
from support.atomic import ANY, atomic_open, save_figure
from formats.records import SVHN_TEST
from support.images import MAX_PIXELS
from support.tokenizer import label_ids
from support.script import run_main

matplotlib.use("Agg")  # files only: this script never opens a window
import matplotlib.pyplot as plt  # noqa: E402

# -----------------------------------------------------------------------------
# defaults (the seed's evaluation: test split, greedy decoding, exact-match metric)
BATCH_SIZE = 256  # images per decoding batch
BEAM = 1  # 1 = greedy decoding
TARGET_ACCURACY = 0.98  # Goodfellow et al. report coverage at 98% accuracy
GALLERY = 16  # most confident mistakes shown in the gallery
BEAM_ROWS = 4096  # beam search carries batch x beam rows: batches shrink to keep under this
MAX_LENGTH_ROW = 6  # SVHN numbers have 1..6 digits


# -----------------------------------------------------------------------------
# metrics: pure functions on lists of digit sequences and numpy arrays

def sequence_accuracy(preds, truths):
    """Share of images whose predicted sequence equals the truth exactly (no more, no fewer)."""
    if not truths:
        return 0.0
    return sum(list(p) == list(t) for p, t in zip(preds, truths)) / len(truths)


def edit_distance(a, b):
    """Levenshtein distance between two sequences (insertions, deletions, substitutions)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (x != y))
    return row[-1]


def character_error_rate(preds, truths):
    """CER: the summed edit distance over the summed truth lengths (can exceed 1)."""
    total = sum(len(t) for t in truths)
    if not total:
        return 0.0
    return sum(edit_distance(p, t) for p, t in zip(preds, truths)) / total


def one_minus_ned(preds, truths):
    """1 - normalised edit distance (ICDAR 2019): the mean over images of
    1 - distance / max(len(prediction), len(truth)); 1 is perfect."""
    if not truths:
        return 0.0
    scores = [1 - edit_distance(p, t) / max(len(p), len(t), 1) for p, t in zip(preds, truths)]
    return sum(scores) / len(scores)


def accuracy_by_length(preds, truths, max_len=MAX_LENGTH_ROW):
    """{length: {"accuracy", "count"}} by true number length (1..max_len, longer ones grouped)."""
    table = {}
    for n in range(1, max_len + 1):
        pairs = [(p, t) for p, t in zip(preds, truths)
                 if (len(t) == n if n < max_len else len(t) >= n)]
        table[str(n)] = {"accuracy": sequence_accuracy(*zip(*pairs)) if pairs else None,
                         "count": len(pairs)}
    return table


def character_accuracy(preds, truths):
    """Position-wise accuracy over ground-truth characters: character k of the truth counts as
    right only if the prediction has a character k and it is equal. A missing one counts as
    wrong; extra predicted ones are not counted here (sequence accuracy punishes them)."""
    total = sum(len(t) for t in truths)
    right = sum(sum(a == b for a, b in zip(p, t)) for p, t in zip(preds, truths))
    return right / total if total else 0.0


def coverage_curve(correct, confidence):
    """Accuracy of the most confident images as the share answered grows.

    Returns (coverage, accuracy) arrays, one point per distinct confidence value: images with
    equal confidence cannot be separated by a threshold, so they enter together."""
    correct = np.asarray(correct, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    if correct.size == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-confidence, kind="stable")
    cum_right = np.cumsum(correct[order])
    counts = np.arange(1, correct.size + 1)
    sorted_conf = confidence[order]
    ends = np.append(sorted_conf[1:] != sorted_conf[:-1], True)  # last image of each tie group
    return counts[ends] / correct.size, cum_right[ends] / counts[ends]


def coverage_at(correct, confidence, target=TARGET_ACCURACY):
    """Goodfellow's coverage: the largest share of images, taken from the most confident down,
    that is answered with accuracy >= target (0.0 when no such share exists)."""
    coverage, accuracy = coverage_curve(correct, confidence)
    ok = accuracy >= target - 1e-12
    return float(coverage[ok].max()) if ok.any() else 0.0


def attention_peaks(attention, feature_hw, input_hw):
    """Input-pixel (x, y) of the attention argmax cell centre: (B, T, L) -> (B, T, 2).
    Cell (r, c) of an H' x W' map covers the H x W input (input_hw), so its centre is
    ((c + 0.5) * W / W', (r + 0.5) * H / H')."""
    h, w = feature_hw
    input_h, input_w = input_hw
    idx = attention.argmax(dim=-1)  # (B, T)
    rows, cols = idx // w, idx % w
    x = (cols.float() + 0.5) * input_w / w
    y = (rows.float() + 0.5) * input_h / h
    return torch.stack([x, y], dim=-1)  # (B, T, 2)


def attention_hits(peaks, pred_lens, boxes):
    """(hits, steps) over steps k < min(predicted length, true length): step k hits when its
    attention peak lies inside ground-truth box k (x0, y0, x1, y1 in input pixels)."""
    if not len(boxes):
        return 0, 0
    K = min(max(len(b) for b in boxes), peaks.shape[1])
    box = torch.zeros(len(boxes), K, 4)  # (B, K, 4), padded
    for b, bx in enumerate(boxes):
        box[b, : min(len(bx), K)] = torch.as_tensor(bx, dtype=torch.float32)[:K]
    n = torch.minimum(torch.as_tensor(pred_lens), torch.as_tensor([len(b) for b in boxes]))
    valid = torch.arange(K).unsqueeze(0) < n.unsqueeze(1)  # (B, K)
    x, y = peaks[:, :K, 0], peaks[:, :K, 1]  # (B, K)
    inside = (box[..., 0] <= x) & (x <= box[..., 2]) & (box[..., 1] <= y) & (y <= box[..., 3])
    return int((inside & valid).sum()), int(valid.sum())


# -----------------------------------------------------------------------------
# running the model


def truth_ids(tokens, config):
    """Digit token ids of each row of (B, T) <s> d d </s> <pad>... tokens."""
    ids = (config["pad_id"], config["eos_id"], config["bos_id"])
    return [label_ids(row, *ids) for row in tokens.tolist()]


@torch.inference_mode()
def evaluate(model, loader, config, beam=BEAM, device="cpu", progress=True, precision="fp32",
             votes=None):
    """Decode every batch (votes: model.vote's copies; None: the checkpoint's); return per-image
    results and the summed loss (model already prepared)."""
    res = {"pred": [], "truth": [], "logprob": [], "hits": 0, "steps": 0, "unboxed": 0,
           "loss_sum": 0.0, "loss_count": 0}
    bar = tqdm(loader, desc="eval", unit="batch", disable=None if progress else True)
    for images, tokens, boxes in bar:
        tokens = tokens.to(device, non_blocking=True)
        out, (features, _) = inference.decode_batch(model, images, beam, device, precision,
                                                     votes)
        pred = [list(p) for p in out["tokens"]]
        truth = truth_ids(tokens, config)
        logprob = out["logprob"].float().cpu()
        with devices.autocast(device, precision):  # the head's loss: "loss" in the report
            loss, count = model.decoder.summed_loss(features, tokens, out, truth)
        hits = steps = 0  # a head without attention (ctc) has no localisation
        if out["attention"] is not None:
            peaks = attention_peaks(out["attention"].cpu(), out["feature_hw"], images.shape[-2:])
            hits, steps = attention_hits(peaks, [len(p) for p in pred], boxes)
        res["pred"] += pred
        res["truth"] += truth
        res["logprob"] += logprob.tolist()
        res["hits"] += hits
        res["steps"] += steps
        res["unboxed"] += sum(len(b) == 0 for b in boxes)  # a labels CSV has no per-character boxes
        res["loss_sum"] += loss
        res["loss_count"] += count
    return res


def summarize(res, vocab, target=TARGET_ACCURACY, labels=None, max_len=None):
    """The report's numbers from evaluate()'s per-image results.

    Sequences are compared as lists of characters: the predicted tokens' characters against
    `labels` (the images' texts) when given, else against the truth's token ids looked up in
    `vocab`. A character the vocabulary lacks is encoded as <unk>, which never equals it: such
    images count as wrong, and the characters are counted and reported."""
    from support.tokenizer import unknown_chars
    preds = [[vocab[i] for i in ids] for ids in res["pred"]]
    if labels is None:
        labels = ["".join(vocab[i] for i in ids) for ids in res["truth"]]
    truths = [list(label) for label in labels]
    unknown = unknown_chars(labels, vocab)
    correct = np.array([p == t for p, t in zip(preds, truths)], dtype=bool)
    confidence = np.exp(np.array(res["logprob"], dtype=np.float64))
    wrong = np.flatnonzero(~correct)
    worst = wrong[np.argsort(-confidence[wrong], kind="stable")][:GALLERY]
    return {
        "num_images": len(truths),
        "loss": res["loss_sum"] / res["loss_count"] if res["loss_count"] else None,
        "sequence_accuracy": sequence_accuracy(preds, truths),
        # the seed's key, kept for the readers of eval reports (bench/, users' scripts)
        "digit_accuracy": character_accuracy(preds, truths),
        "character_error_rate": character_error_rate(preds, truths),
        "one_minus_ned": one_minus_ned(preds, truths),
        "accuracy_by_length": accuracy_by_length(preds, truths),
        f"coverage_at_{round(target * 100)}": coverage_at(correct, confidence, target),
        "attention_localisation": res["hits"] / res["steps"] if res["steps"] else None,
        "attention_steps": res["steps"],
        # images without per-character boxes (a labels CSV): left out of attention_localisation
        "attention_skipped_images": res.get("unboxed", 0),
        "unknown_characters": dict(sorted(unknown.items())),
        "images_with_unknown_characters": sum(any(c in unknown for c in t) for t in labels),
        # longer than the decoding cap: they can never be read, and count as wrong
        "images_longer_than_max_len": sum(len(t) > max_len for t in labels) if max_len else 0,
        "first_longer_than_max_len": next((i for i, t in enumerate(labels)
                                           if max_len and len(t) > max_len), None),
        "worst_mistakes": [{"index": int(i), "prediction": "".join(preds[i]),
                            "truth": labels[i], "probability": float(confidence[i])}
                           for i in worst],
    }, correct, confidence


# -----------------------------------------------------------------------------
# figures

def plot_coverage(coverage, accuracy, target, path):
    """Accuracy of the most confident share of images against that share."""
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(coverage, accuracy, lw=1.5)
    ax.axhline(target, color="grey", ls="--", lw=1, label=f"{target:.0%} accuracy")
    ax.set_xlabel("coverage (share of images answered, most confident first)")
    ax.set_ylabel("whole-sequence accuracy")
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    close_figure(fig, path)


def plot_mistakes(dataset, mistakes, path, cols=4):
    """Gallery of the most confident wrong answers: model input, prediction (probability), truth."""
    rows = max(1, -(-len(mistakes) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    font = figtext.title_font([m["prediction"] + m["truth"] for m in mistakes], "eval.py")
    for ax, m in zip(axes.flat, mistakes):
        image = dataset[m["index"]][0].permute(1, 2, 0).numpy()  # (S, S, 3) in [0, 1]
        ax.imshow(image)
        ax.set_title(f"pred {m['prediction'] or '(none)'} ({m['probability']:.3g})\n"
                     f"true {m['truth']}", fontsize=9, fontfamily=font)
    if not mistakes:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle("most confident mistakes")
    with figtext.quiet_glyphs():
        close_figure(fig, path)


def close_figure(fig, path):
    """Lay out, save atomically (the format from the extension), close."""
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def write_report(report, path, expect=ANY):
    """The report as indented JSON, atomically (expect: atomic.replacing's)."""
    with atomic_open(path, "w", expect=expect) as f:
        json.dump(report, f, indent=2)
        f.write("\n")


def print_table(report, target):
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    rows = [("images", report["num_images"]), ("loss", fmt(report["loss"])),
            ("sequence accuracy", fmt(report["sequence_accuracy"])),
            ("character accuracy", fmt(report["digit_accuracy"])),
            ("character error rate", fmt(report["character_error_rate"])),
            ("1 - NED", fmt(report["one_minus_ned"])),
            (f"coverage at {target:.0%}", fmt(report[f"coverage_at_{round(target * 100)}"])),
            ("attention localisation", fmt(report["attention_localisation"]))]
    rows += [(f"  {n} character(s), n={row['count']}", fmt(row["accuracy"]))
             for n, row in report["accuracy_by_length"].items() if row["count"]]
    rows.append(("images/s", f"{report['images_per_second']:.1f}"))
    for name, value in rows:
        print(f"{name:<28}{value}")
    if report["attention_skipped_images"]:
        print(f"attention localisation skipped {report['attention_skipped_images']} image(s) "
              f"without per-character boxes")
    if report["unknown_characters"]:
        chars = ", ".join(f"{c!r} x{n}" for c, n in report["unknown_characters"].items())
        print(f"characters the checkpoint's vocabulary lacks: {chars}, in "
              f"{report['images_with_unknown_characters']} image(s), counted as wrong "
              f"(fine-tune with train.py --init to add them)")
    if report["images_longer_than_max_len"]:
        print(f"{report['images_longer_than_max_len']} image(s) have a text longer than the "
              f"checkpoint can emit (max_len), counted as wrong; the first: "
              f"{report['first_longer_than_max_len']}")


# -----------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default=runs.CHECKPOINT,
                   help="checkpoint written by train.py (last.pt, epoch-NNN.pt or best.pt)")
    p.add_argument("--json", default=SVHN_TEST, help="prepared split to evaluate (prepare_data.py)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="images per decoding batch")
    p.add_argument("--beam", type=int, default=BEAM, help="beam width; 1 = greedy decoding")
    cli.add_vote_flag(p)
    p.add_argument("--limit", type=int, default=None,
                   help="evaluate only the first N images; None: all")
    # loading (~1.3 ms an image) needs a fraction of a core; more would steal the convolutions'
    # cores
    cli.add_inference_flags(p)
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help="an image (width x height) above this is an error, like an unreadable one")
    p.add_argument("--report", default=None,
                   help="report JSON path; None: eval_<split>.json next to the checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing --report and figure files even when they are not "
                        "eval.py's own (its earlier reports and figures are always replaced)")
    p.add_argument("--figures", default=None,
                   help="folder for the coverage curve and mistakes gallery; "
                        "None: the report's folder")
    args = p.parse_args(argv)
    cli.check_decoding(p, args)
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be >= 1")
    if args.threads < 0 or (args.workers is not None and args.workers < 0):
        p.error("--threads and --workers must be >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        return run(args)
    except (OSError, ValueError) as e:  # the messages of load_checkpoint, load_split
        # and the dataset name the file; a loader worker's error holds its traceback: keep the end
        last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        sys.exit(f"eval.py: error: {last.removeprefix(type(e).__name__ + ': ')}")


def check_outputs(report_path, figures, overwrite, inputs=()):
    """ValueError unless the report and figure paths replace only eval.py's own earlier outputs
    (--report may name the training JSON or a checkpoint; --figures a folder of photos), and
    none of them is one of `inputs` (even with --overwrite). Returns what is at the report path
    now (its write's expect: a second eval.py writing the same report meanwhile is an error)."""
    expect = outputs.check_replaceable(report_path, "--report", overwrite,
                                       outputs.is_eval_report, "an eval.py report", inputs)
    for path in figures:
        outputs.check_replaceable(path, "--figures", overwrite, outputs.is_own_figure,
                                  "a figure this repository drew", inputs)
    return expect


def run(args):
    """Evaluate args.checkpoint on args.json; writes the report and figures, returns the report."""
    from data import SVHNDataset, collate
    from formats.records import load_split
    from support.tokenizer import tokenizer_from_vocab
    # a device this machine lacks (no GPU, driver or MPS) fails here, not as a traceback later
    run = inference.start(args, "eval.py", args.workers)
    device, workers, precision = run.device, run.workers, run.precision
    model, ckpt = inference.open_model(args.checkpoint, device, args.beam)
    config, vocab = model.config, list(ckpt["vocab"])
    image_dir, records = load_split(args.json)
    records = records[: args.limit]
    if not records:
        raise ValueError(f"{args.json}: no images to evaluate")
    split = os.path.splitext(os.path.basename(args.json))[0]
    report_path = args.report or os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)),
                                              f"eval_{split}.json")
    fig_dir = args.figures or os.path.dirname(os.path.abspath(report_path))
    os.makedirs(os.path.dirname(os.path.abspath(report_path)), exist_ok=True)
    os.makedirs(fig_dir, exist_ok=True)
    coverage_png = os.path.join(fig_dir, f"eval_{split}_coverage.png")
    mistakes_png = os.path.join(fig_dir, f"eval_{split}_mistakes.png")
    expect = check_outputs(report_path, [coverage_png, mistakes_png],  # before the wait
                           args.overwrite, [args.checkpoint, args.json])

    dataset = SVHNDataset.evaluation((image_dir, records), tokenizer_from_vocab(vocab), config,
                                     args.max_pixels)
    votes = config["votes"] if args.votes is None else args.votes
    rows = args.beam * votes  # rows decoded per image: the same answers, any batch
    batch_size = min(args.batch_size, max(1, BEAM_ROWS // rows))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=workers, collate_fn=collate,
                                         pin_memory=device.type == "cuda")
    loader = threads.paced(loader, device, args.threads)  # threads re-checked between batches
    start = time.perf_counter()
    res = evaluate(model, loader, config, beam=args.beam, device=device, precision=precision,
                   votes=votes)
    seconds = time.perf_counter() - start
    report, correct, confidence = summarize(res, vocab, labels=dataset.texts,
                                            max_len=config["max_len"])
    for m in report["worst_mistakes"]:
        m["name"] = records[m["index"]]["name"]
    first = report["first_longer_than_max_len"]
    if first is not None:  # named as the file and record (1-based) that cannot be read out
        report["first_longer_than_max_len"] = f"{args.json}: record {first + 1} " \
                                              f"({records[first]['name']!r})"
    report = {"checkpoint": os.path.abspath(args.checkpoint), "json": os.path.abspath(args.json),
              "beam": args.beam, "votes": votes, "precision": precision, "device": str(device),
              "epoch": ckpt.get("epoch"), **report,
              "seconds": seconds, "images_per_second": len(records) / seconds}
    coverage, accuracy = coverage_curve(correct, confidence)
    plot_coverage(coverage, accuracy, TARGET_ACCURACY, coverage_png)
    plot_mistakes(dataset, report["worst_mistakes"], mistakes_png)
    write_report(report, report_path, expect)
    print_table(report, TARGET_ACCURACY)
    print(f"report: {report_path}")
    return report


if __name__ == "__main__":
    run_main("eval.py", main)
