"""Export a checkpoint for deployment: ONNX (.onnx) or TorchScript (.pt), with its vocabulary.

python export.py --checkpoint weights/replica.pt --out replica.onnx
python export.py --checkpoint runs/plates/best.pt --out plates.pt      # TorchScript

The exported model is greedy decoding with no data-dependent branch (the attention head: all
max_len + 1 steps; the ctc head: its best path, T = 2 x the feature map's width + 1 slots):
    input   images  float32 (B, 3, H, W) in [0, 1]: the evaluation input (the region resized to
                    image_size, centre-cropped to crop_size; see FILE.json); B is dynamic
    output  tokens  int64 (B, T): token ids, the text's, then </s> (id 2), then <pad> (0)
    output  probs   float32 (B, T): each token's probability (0 after </s>)
Beside it, FILE.json: vocab (index = token id), image_size, crop_size, max_stretch (how a region
fills the input: support/crops.resize_region), input_shape, pad/eos/bos
ids, normalisation (none: pixels in [0, 1]; a --normalize model maps them itself), max_len, head,
and votes with its copies (the graph reads one copy; eval.py and predict.py vote over `votes`).
BatchNorm is folded into the convolutions first. --check (on by default) runs the exported
model against the checkpoint in PyTorch on random inputs and refuses to write on a mismatch.
FILE and FILE.json are written under temporary names, checked, and only then replace what was
there, together or not at all: a failed check keeps an earlier export whole. An existing FILE is
never replaced without --overwrite, nor the checkpoint read, even with it.
"""
import argparse
import json
import sys
import warnings

import torch

from support import inference, outputs, runs
from support.atomic import replacing_all
from model import as_hw, vote
from support.script import run_main

ONNX_OPSET = 17


class Greedy(torch.nn.Module):
    """The checkpoint's model as images -> (tokens, probs): its head's greedy decoding with no
    data-dependent branch (the attention head runs every step)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model.export_outputs(images)


def sidecar(config, vocab):
    """FILE.json's contents: what a deployment needs to feed the model and read its tokens."""
    height, width = as_hw(config["crop_size"])
    return {"vocab": list(vocab), "image_size": config["image_size"],
            "crop_size": config["crop_size"], "max_stretch": config["max_stretch"],
            "input_shape": [None, 3, height, width],
            "input": "RGB float32 in [0, 1]: the region resized to image_size, then its centre "
                     "crop_size (H x W where a pair); with max_stretch S > 0 the region keeps "
                     "its aspect at image_size's height widened at most S times (never past "
                     "the width), at the left, and the rest of the width is its mean colour",
            "normalisation": "none (pixels in [0, 1])" if not config["normalize"]
                             else "inside the model ([0, 1] -> [-1, 1])",
            "max_len": config["max_len"], "pad_id": config["pad_id"], "eos_id": config["eos_id"],
            "bos_id": config["bos_id"], "head": config["head"], "outputs": ["tokens", "probs"],
            "votes": config["votes"],
            "copies": [list(copy) for copy in vote.COPIES[:config["votes"]]],
            "voting": "eval.py and predict.py read each image as `votes` copies, each [shift "
                      "right, shift down, scale]: shifts in input heights (at least a pixel), "
                      "the gap filled with the edge pixels, scaled about the centre; the text "
                      "whose copies' probabilities sum highest wins. This graph reads one copy: "
                      "run it on each and vote to read as they do (1: the image alone)"}


def export_onnx(module, example, path):
    # the TorchScript-based exporter: the unrolled loop needs no control-flow ops, and it needs
    # neither onnxscript nor torch.export (its deprecation warning is silenced)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (example,), path, input_names=["images"],
                          output_names=["tokens", "probs"], opset_version=ONNX_OPSET,
                          dynamic_axes={"images": {0: "batch"}, "tokens": {0: "batch"},
                                        "probs": {0: "batch"}}, dynamo=False)


def export_torchscript(module, example, path):
    with warnings.catch_warnings():  # TorchScript is deprecated, and still what C++ loads
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(module, (example,), check_trace=False)
    traced.save(path)


def run_exported(path, images, onnx=None):
    """(tokens, probs) of the exported file on images (B, 3, H, W), as a deployment runs it.
    onnx: whether the file is ONNX (None: from its name)."""
    if onnx is None:
        onnx = path.endswith(".onnx")
    if onnx:
        import onnxruntime
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        tokens, probs = session.run(None, {"images": images.numpy()})
        return torch.from_numpy(tokens), torch.from_numpy(probs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(path, map_location="cpu")
    with torch.no_grad():
        return loaded(images)


def check(path, module, shape, n=8, seed=0, name=None):
    """ValueError unless the exported file gives the checkpoint's tokens on n random inputs of
    two batch sizes (the batch is dynamic). name: the output it is to become (the file checked
    is its temporary copy), for the message and the format."""
    name = name or path
    generator = torch.Generator().manual_seed(seed)
    for batch in (n, 3):
        images = torch.rand(batch, 3, *shape, generator=generator)
        with torch.no_grad():
            want, want_probs = module(images)
        got, got_probs = run_exported(path, images, onnx=name.endswith(".onnx"))
        if not torch.equal(got.long(), want) or not torch.allclose(got_probs, want_probs,
                                                                   atol=1e-4):
            raise ValueError(f"{name}: the exported model's tokens differ from the checkpoint's "
                             f"(batch {batch}); not kept")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default=runs.SHIPPED, help="a train.py checkpoint")
    p.add_argument("--out", required=True, help="FILE.onnx (ONNX) or FILE.pt (TorchScript)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing FILE")
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                   help="compare the exported model with the checkpoint before keeping it")
    args = p.parse_args(argv)
    if not args.out.endswith((".onnx", ".pt")):
        p.error(f"--out {args.out!r}: the name must end in .onnx or .pt (TorchScript)")
    return args


def main(argv=None):
    args = parse_args(argv)
    meta = args.out + ".json"
    try:
        expects = [outputs.check_replaceable(path, "--out", args.overwrite,
                                             inputs=[args.checkpoint])
                   for path in (args.out, meta)]
        outputs.check_folder(args.out, "--out")
        model, ckpt = inference.open_model(args.checkpoint, None)  # on the CPU, as saved
        config = model.config
        module = Greedy(model).eval()
        shape = as_hw(config["crop_size"])
        example = torch.rand(2, 3, *shape)
        # both files are written and checked under temporary names; only then do they replace
        # what was there, together
        with replacing_all([args.out, meta], expects) as (tmp, tmp_meta):
            if args.out.endswith(".onnx"):
                export_onnx(module, example, tmp)
            else:
                export_torchscript(module, example, tmp)
            if args.check:
                check(tmp, module, shape, name=args.out)
            with open(tmp_meta, "w") as f:
                json.dump(sidecar(config, ckpt["vocab"]), f, indent=1)
    except (OSError, ValueError, RuntimeError) as e:
        last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        sys.exit(f"export.py: error: {last}")
    print(f"export.py: wrote {args.out} and {meta} (input images (B, 3, {shape[0]}, {shape[1]}); "
          f"outputs tokens, probs){' - checked against the checkpoint' if args.check else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main("export.py", main))
