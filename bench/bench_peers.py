"""The peers beside our checkpoints on the same test photos: accuracy, CER and images/s.

    python -m bench.bench_peers --sets my-plates/ my-meters/ \
        [--checkpoint weights/replica.pt runs/mine/best.pt] [--ignore-case] [--threads 1]

Each set is a folder as bench.bench_finetune takes it (train.csv + test.csv, or train.json +
test.json); its test split is read by every reader, each image cropped to its labelled box
where the labels give one (else the whole image), as eval.py crops it:
  - PaddleOCR: the PP-OCRv4 recognizer of rapidocr-onnxruntime (requirements-peers.txt; its
    wheel carries the ONNX models), recognition only (no detector, no angle classifier), one
    image per call as its Python API reads one;
  - Tesseract 5, where installed: `tesseract stdin stdout --psm 7` (one text line), one process
    per image as its command line runs;
  - each --checkpoint: eval.py's dataset, batches and greedy decoding, by the checkpoint's vote.
Every reader's output is filtered to the set's alphabet (the characters of its train labels),
as a user strips a `·` or `-` the set never has, and trimmed of spaces at its ends as the labels
are; --ignore-case compares both in upper case (for sets labelled in upper case only). The
metrics are eval.py's: whole-sequence accuracy, character accuracy, CER. images/s is the reading
alone (image file to text), after each reader is loaded, on --threads threads.
Never part of the test suite.
"""
import argparse
import functools
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time

import eval as ev
from bench.bench_finetune import prepare
from formats.records import load_split, record_region, record_text

INSTALL = "python -m pip install -r requirements-peers.txt"
PADDLE = "PaddleOCR PP-OCRv4 rec"
TESSERACT = "Tesseract --psm 7"


# -----------------------------------------------------------------------------
# comparing as a user would

def fold(text, ignore_case):
    """The text as compared: upper case with --ignore-case, else as it is."""
    return text.upper() if ignore_case else text


def set_alphabet(texts, ignore_case=False):
    """The characters of a set's (train) texts, case-folded as compared."""
    return set("".join(fold(t, ignore_case) for t in texts))


def keep_alphabet(text, alphabet, ignore_case=False):
    """A reader's output as a user would keep it: case-folded, the characters outside the set's
    alphabet dropped, spaces at its ends trimmed (the labels have none)."""
    kept = "".join(c for c in fold(text, ignore_case) if c in alphabet)
    return kept.strip()


def score(preds, truths):
    """eval.py's figures for lists of strings: whole, chars (character_accuracy), cer."""
    preds = [list(p) for p in preds]
    truths = [list(t) for t in truths]
    return {"whole": ev.sequence_accuracy(preds, truths),
            "chars": ev.character_accuracy(preds, truths),
            "cer": ev.character_error_rate(preds, truths)}


# -----------------------------------------------------------------------------
# the readers: each takes (image_dir, records, threads) and returns (raw texts, seconds)

def crops(image_dir, records):
    """Each test image as RGB, cropped to its labelled region as eval.py crops it."""
    from support.crops import open_image
    for r in records:
        region = record_region(r)
        box = None
        if region is not None:
            box = (region[0], region[1], region[2] - region[0], region[3] - region[1])
        yield open_image(os.path.join(image_dir, r["name"]), box)


def paddle_engine(threads):
    """rapidocr-onnxruntime's engine on `threads` threads; a one-line exit where it is missing."""
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError:
        sys.exit(f"bench_peers: error: PaddleOCR's recognizer needs rapidocr-onnxruntime, "
                 f"which is not installed: {INSTALL}")
    return RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)


def read_paddle(engine, image_dir, records, threads):
    """rapidocr's recognizer (its threads set when the engine was made) on each crop."""
    texts = []
    start = time.perf_counter()
    for img in crops(image_dir, records):
        result, _ = engine(img, use_det=False, use_cls=False, use_rec=True)
        texts.append(result[0][0] if result else "")
    return texts, time.perf_counter() - start


def read_tesseract(image_dir, records, threads):
    """Tesseract's command line on each crop, given as a PNG on its standard input."""
    env = dict(os.environ, OMP_THREAD_LIMIT=str(threads))
    cmd = ["tesseract", "stdin", "stdout", "--psm", "7", "-l", "eng"]
    texts = []
    start = time.perf_counter()
    for img in crops(image_dir, records):
        png = io.BytesIO()
        img.save(png, format="PNG")
        run = subprocess.run(cmd, input=png.getvalue(), capture_output=True, env=env)
        texts.append(run.stdout.decode("utf-8", errors="replace").strip())
    return texts, time.perf_counter() - start


def read_checkpoint(path, image_dir, records, threads):
    """A checkpoint through eval.py's machinery: its dataset, batches and greedy decoding (by
    its vote)."""
    import torch
    from data import SVHNDataset, collate
    from support import inference
    from support.tokenizer import tokenizer_from_vocab
    torch.set_num_threads(threads)
    model, ckpt = inference.open_model(path, torch.device("cpu"))
    config = model.config
    vocab = list(ckpt["vocab"])
    dataset = SVHNDataset.evaluation((image_dir, records), tokenizer_from_vocab(vocab), config)
    loader = torch.utils.data.DataLoader(dataset, batch_size=ev.BATCH_SIZE, collate_fn=collate)
    start = time.perf_counter()
    res = ev.evaluate(model, loader, config, progress=False)
    seconds = time.perf_counter() - start
    return ["".join(vocab[i] for i in ids) for ids in res["pred"]], seconds


def readers(args):
    """[(row name, read function)] in the table's order: PaddleOCR (loaded once, here, so a
    missing package stops the bench before any work), Tesseract where installed, checkpoints."""
    chosen = [(PADDLE, functools.partial(read_paddle, paddle_engine(args.threads)))]
    if shutil.which("tesseract"):
        chosen.append((TESSERACT, read_tesseract))
    else:
        print("bench_peers: Tesseract is not installed (apt-get install tesseract-ocr): "
              "its row is left out", file=sys.stderr)
    for path in args.checkpoint:
        chosen.append((path, functools.partial(read_checkpoint, path)))
    return chosen


# -----------------------------------------------------------------------------

def table(name, rows, notes):
    """One set's table: a title, its notes, a row per reader (name, figures, images/s)."""
    lines = [f"\n{name}: " + "; ".join(notes)]
    width = max(len(r[0]) for r in rows)
    lines.append(f"{'reader':<{width}} {'whole':>7} {'chars':>7} {'CER':>6} {'images/s':>9}")
    for reader, figures, speed in rows:
        lines.append(f"{reader:<{width}} {figures['whole']:7.1%} {figures['chars']:7.1%} "
                     f"{figures['cer']:6.3f} {speed:9.1f}")
    return "\n".join(lines)


def bench_set(set_dir, work, chosen, args):
    """Every reader on one set's test split; its table."""
    name = os.path.basename(os.path.normpath(set_dir))
    train_json, test_json = prepare(set_dir, os.path.join(work, name))
    _, train = load_split(train_json)
    image_dir, records = load_split(test_json)
    alphabet = set_alphabet([record_text(r) for r in train], args.ignore_case)
    truths = [fold(record_text(r), args.ignore_case) for r in records]
    outside = sum(any(c not in alphabet for c in t) for t in truths)
    case = "upper case (--ignore-case)" if args.ignore_case else "case as labelled"
    notes = [f"{len(records)} test images",
             f"outputs filtered to the {len(alphabet)} characters of the train labels",
             case, f"{outside} test texts hold characters outside them"]
    rows = []
    for reader, read in chosen:
        texts, seconds = read(image_dir, records, args.threads)
        preds = [keep_alphabet(t, alphabet, args.ignore_case) for t in texts]
        rows.append((reader, score(preds, truths), len(records) / seconds))
        print(f"{name} {reader}: done in {seconds:.1f} s", file=sys.stderr, flush=True)
    return table(name, rows, notes)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sets", nargs="+", required=True,
                   help="folders with train.csv + test.csv (or train.json + test.json)")
    p.add_argument("--checkpoint", nargs="+", default=[],
                   help="our checkpoints to add as rows (e.g. weights/replica.pt, a best.pt)")
    p.add_argument("--ignore-case", action="store_true",
                   help="compare in upper case (a set labelled in upper case only)")
    p.add_argument("--threads", type=int, default=1, help="threads of every reader")
    p.add_argument("--work", default=None, help="keep converted JSONs here (default: a temp dir)")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be >= 1")
    missing = [path for path in args.checkpoint if not os.path.isfile(path)]
    if missing:
        p.error(f"--checkpoint {missing[0]}: no such file")
    missing = [path for path in args.sets if not os.path.isdir(path)]
    if missing:
        p.error(f"--sets {missing[0]}: no such folder")
    chosen = readers(args)
    work = args.work or tempfile.mkdtemp(prefix="bench_peers-")
    try:
        tables = [bench_set(set_dir, work, chosen, args) for set_dir in args.sets]
    except subprocess.CalledProcessError:  # prepare_data.py has said what is wrong, in one line
        sys.exit(1)
    except (OSError, ValueError) as e:  # an unreadable image or checkpoint, named by the message
        sys.exit(f"bench_peers: error: {e}")
    print("\n".join(tables))


if __name__ == "__main__":
    main()
