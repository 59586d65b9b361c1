"""Turn a finished run's checkpoint into the shipped weights file, with its provenance.

    python -m bench.ship_weights --checkpoint /work/runs/replica/best.pt --out weights/replica.pt \
        --data /work/data/replica --command "python train.py ..." \
        --data-command "python prepare_data.py ..." --wall "..." --machine "..."

Keeps what eval.py, play.py, predict.py, export.py and train.py --init need (format, config,
vocab, weights, epoch, step: no optimizer state, a third of the size; with --image-size, the
size its regions are resized to before the centre crop, chosen on validation), evaluates the
file so made with eval.py on the --splits under --data (the replica's test and test_ood), and
stores those figures with the command, data, wall time and machine under "provenance" (plain strings
and numbers, so the file still loads with torch.load(weights_only=True)). Written atomically;
an existing --out is never replaced without --overwrite.
"""
import argparse
import os
import sys

import eval as ev
from build_model import parse_size
from support import checkpoint

KEPT = ("format", "config", "vocab", "model", "epoch", "step")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", default="weights/replica.pt")
    p.add_argument("--data", required=True, help="folder with the --splits' JSONs")
    p.add_argument("--splits", nargs="+", default=["test", "test_ood"],
                   help="the splits under --data the file is evaluated on (<split>.json)")
    p.add_argument("--command", required=True, help="the training command, as run")
    p.add_argument("--data-command", required=True,
                   help="how the training data was made (prepare_data.py command, seed, sizes)")
    p.add_argument("--wall", required=True, help="wall time of training")
    p.add_argument("--machine", required=True, help="where it trained")
    p.add_argument("--notes", default="", help="anything else a reader must know")
    p.add_argument("--image-size", type=parse_size, default=None,
                   help="store this config image_size (the size a region is resized to before "
                        "the centre crop) instead of the run's: chosen on validation with "
                        "bench.bench_framing; None: the run's own")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    if os.path.exists(args.out) and not args.overwrite:
        sys.exit(f"ship_weights.py: error: {args.out}: exists; pass --overwrite")
    _, ckpt = checkpoint.load_checkpoint(args.checkpoint)
    shipped = {key: ckpt[key] for key in KEPT}
    if args.image_size is not None:
        shipped["config"] = {**shipped["config"], "image_size": args.image_size}
    # the figures are of the file as shipped: evaluated from a copy without its provenance
    folder = os.path.dirname(os.path.abspath(args.checkpoint))
    candidate = os.path.join(folder, "ship_candidate.pt")
    checkpoint.save_checkpoint(shipped, candidate)
    figures = {}
    for split in args.splits:
        report_path = os.path.join(folder, f"ship_{split}.json")
        report = ev.run(ev.parse_args(["--checkpoint", candidate, "--json",
                                       os.path.join(args.data, f"{split}.json"), "--report",
                                       report_path, "--device", "cpu"]))
        figures[split] = {"images": report["num_images"],
                          "sequence_accuracy": report["sequence_accuracy"],
                          "character_accuracy": report["digit_accuracy"],
                          "coverage_at_98": report["coverage_at_98"]}
    os.remove(candidate)
    shipped["provenance"] = {
        "command": args.command, "data": args.data_command,
        "wall_time": args.wall, "machine": args.machine, "notes": args.notes,
        "source_checkpoint": os.path.basename(args.checkpoint),
        "image_size": shipped["config"]["image_size"], "figures": figures}
    checkpoint.save_checkpoint(shipped, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB): {figures}")


if __name__ == "__main__":
    main()
