"""Average the weights of checkpoints of one model (a "model soup"), to evaluate with eval.py.

    python -m bench.average_weights --out soup.pt runs/a/epoch-006.pt runs/b/epoch-006.pt
    python eval.py --checkpoint soup.pt --json val.json

Every floating-point tensor of the models (BatchNorm's running statistics included) is the mean
of the checkpoints'; integer ones (BatchNorm's batch counters) are the first's. The checkpoints
must share their model config and vocabulary: runs fine-tuned from one start (weights/README.md
measured stage 3's variants and stage 4 averaged this way). The file written holds the weights
only (no optimizer state): eval.py, play.py, predict.py and train.py --init read it, --resume
does not. Written atomically; an existing --out is never replaced without --overwrite.
"""
import argparse
import os
import sys

from bench.ship_weights import KEPT
from support import checkpoint


def average(ckpts, names):
    """The weights-only checkpoint whose model is the mean of ckpts' models; ValueError naming
    the first checkpoint whose config or vocabulary differs from the first's."""
    first = ckpts[0]
    for ckpt, name in zip(ckpts[1:], names[1:]):
        for key in ("config", "vocab"):
            if ckpt[key] != first[key]:
                raise ValueError(f"{name}: its {key} differs from {names[0]}'s: only one "
                                 f"model's checkpoints can be averaged")
    model = {}
    for key, value in first["model"].items():
        if value.is_floating_point():
            model[key] = sum(ckpt["model"][key] for ckpt in ckpts) / len(ckpts)
        else:
            model[key] = value
    return {**{key: first[key] for key in KEPT if key != "model"}, "model": model}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+", help="checkpoints of one model (train.py's)")
    p.add_argument("--out", required=True, help="the averaged checkpoint")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    if os.path.exists(args.out) and not args.overwrite:
        sys.exit(f"average_weights.py: error: {args.out}: exists; pass --overwrite")
    try:
        ckpts = [checkpoint.load_checkpoint(path, map_location="cpu")[1]
                 for path in args.checkpoints]
        soup = average(ckpts, args.checkpoints)
    except (OSError, ValueError) as e:
        sys.exit(f"average_weights.py: error: {e}")
    checkpoint.save_checkpoint(soup, args.out)
    print(f"wrote {args.out}: the mean of {len(ckpts)} checkpoints")


if __name__ == "__main__":
    main()
