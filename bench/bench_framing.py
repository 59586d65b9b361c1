"""Accuracy of one checkpoint by the size its region is resized to before the centre crop.

    python -m bench.bench_framing --checkpoint runs/svhn/last.pt \
        --json data/synth/val.json data/synth/test_ood.json --image-size 54 56 58 60 62 64

The seed's recipe resizes a digit region to 64 x 64 and crops 54 x 54: at random, after a
random resized crop of 70-100% of the area, in training; at the centre in evaluation. So training
shows the digits at 0.84-1.0 times the scale evaluation does, and a model trained that way may
read more when evaluation resizes the region to less than 64 (less margin cut away, digits a
little smaller: the scale it trained on). This evaluates the checkpoint with eval.py at each
--image-size (the checkpoint's crop size kept; a copy of the checkpoint with only
config["image_size"] changed, in a temporary folder) and prints whole-sequence accuracy per JSON,
and its ratio to the checkpoint's own size. Choose on a validation split, not on the test you
report. `bench.ship_weights --image-size` stores the choice in a shipped file.
Never part of the test suite.
"""
import argparse
import os
import tempfile

import torch

import eval as ev
from build_model import parse_size
from support import checkpoint


def with_image_size(path, size, out):
    """Write to `out` a copy of checkpoint `path` whose config resizes regions to `size`."""
    _, ckpt = checkpoint.load_checkpoint(path)
    ckpt["config"] = {**ckpt["config"], "image_size": size}
    torch.save(ckpt, out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--json", nargs="+", required=True, help="prepared splits to evaluate")
    p.add_argument("--image-size", type=parse_size, nargs="+", default=[54, 56, 58, 60, 62, 64],
                   help="sizes to try, N or HxW (each at least the checkpoint's crop size)")
    p.add_argument("--limit", type=int, default=None, help="first N images of each JSON")
    p.add_argument("--threads", type=int, default=0, help="eval.py --threads")
    args = p.parse_args(argv)
    _, ckpt = checkpoint.load_checkpoint(args.checkpoint)
    own = ckpt["config"]["image_size"]
    sizes = [own] + [s for s in args.image_size if s != own]
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, size in enumerate(sizes):
            path = args.checkpoint
            if size != own:
                path = os.path.join(tmp, f"image-size-{k}.pt")
                with_image_size(args.checkpoint, size, path)
            for js in args.json:
                flags = ["--checkpoint", path, "--json", js, "--threads", str(args.threads),
                         "--report", os.path.join(tmp, "report.json"), "--overwrite"]
                if args.limit:
                    flags += ["--limit", str(args.limit)]
                table[k, js] = ev.run(ev.parse_args(flags))["sequence_accuracy"]
    print(f"\n{args.checkpoint} (its own image size: {own}, crop {ckpt['config']['crop_size']})")
    for js in args.json:
        print(f"{js}:")
        for k, size in enumerate(sizes):
            acc = table[k, js]
            mark = "  (own)" if k == 0 else ""
            print(f"  image size {str(size):>10}: {acc:7.2%}  x{acc / table[0, js]:.4f}{mark}")


if __name__ == "__main__":
    main()
