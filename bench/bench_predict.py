"""predict.py on photos given without boxes: accuracy by how loosely the photo frames the text.

    python -m bench.bench_predict --checkpoint weights/replica.pt --json data/synth/test.json \
        [--grow 1.3 2.0 whole] [--fit squash keep-aspect] [--limit 2000]

For each framing it writes the split's images as new photo files (the digit boxes' union grown
by that factor around its centre, black beyond the image, as the recipe crops; "whole": the
original image), runs `python predict.py` on the folder as a user would (no boxes), and scores
its CSV against the split's texts: whole-sequence accuracy and predict.py's own images/s.
Never part of the test suite.
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile

from formats.records import load_split, record_text
from support.images import crop_box, open_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where predict.py lives


def write_photos(image_dir, records, grow, folder):
    """The records' images framed at `grow` (or whole) as PNGs in folder; {file: text}."""
    os.makedirs(folder, exist_ok=True)
    truth = {}
    for i, r in enumerate(records):
        box = None if grow == "whole" else crop_box(r["boxes"], float(grow))
        img = open_image(os.path.join(image_dir, r["name"]), box)
        path = os.path.join(folder, f"{i:05d}.png")
        img.save(path)
        truth[path] = record_text(r)
    return truth


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="weights/replica.pt")
    p.add_argument("--json", required=True, help="a split JSON with digit boxes (SVHN or replica)")
    p.add_argument("--grow", nargs="+", default=["1.3", "1.6", "2.0", "whole"],
                   help="framings: box growth factors, or 'whole'")
    p.add_argument("--fit", nargs="+", default=["squash", "keep-aspect"])
    p.add_argument("--limit", type=int, default=2000)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    image_dir, records = load_split(args.json)
    records = records[:args.limit]
    work = tempfile.mkdtemp(prefix="bench_predict-")
    print(f"{len(records)} images of {args.json}, {args.checkpoint}")
    for grow in args.grow:
        truth = write_photos(image_dir, records, grow, os.path.join(work, f"grow-{grow}"))
        for fit in args.fit:
            out = os.path.join(work, f"grow-{grow}-{fit}.csv")
            cmd = [sys.executable, "predict.py", "--checkpoint", args.checkpoint, "--csv", out,
                   os.path.join(work, f"grow-{grow}"), "--fit", fit, "--threads",
                   str(args.threads)]
            run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
            speed = run.stdout.strip().splitlines()[-1].split("(")[-1].split(" ")[0]
            with open(out, newline="") as f:
                rows = list(csv.DictReader(f))
            right = sum(truth[r["file"]] == r["text"] for r in rows)
            print(f"framing {grow:<6} --fit {fit:<12} {right / len(truth):7.1%} whole-sequence "
                  f"({len(rows)} rows), {speed} images/s", flush=True)


if __name__ == "__main__":
    main()
