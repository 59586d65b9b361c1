"""Exported models against the checkpoint: token agreement and images/s on a split, side by side.

    python -m bench.bench_export --checkpoint weights/replica.pt --json data/synth/test.json \
        [--limit 2000] [--batch-size 64] [--threads 0]

Exports the checkpoint with export.py to ONNX and TorchScript in a temporary folder, then reads
the split's evaluation inputs (as eval.py and predict.py make them) with the checkpoint in
PyTorch (model.decode, batched, fp32) and with each exported file (onnxruntime on the CPU,
torch.jit), and prints each one's share of images whose tokens equal PyTorch's, and images/s
(decoding only, inputs prepared beforehand, batches of --batch-size). Never part of the suite.
"""
import argparse
import os
import tempfile
import time

import torch

import export
from build_model import fold_batchnorm
from data import SVHNDataset
from formats.records import load_split
from support import devices
from support.checkpoint import load_checkpoint
from support.tokenizer import tokenizer_from_vocab


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="weights/replica.pt")
    p.add_argument("--json", required=True, help="a split JSON (prepare_data.py)")
    p.add_argument("--limit", type=int, default=2000, help="images (the split's first N)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: the thread rule)")
    args = p.parse_args(argv)
    devices.apply_thread_rule(torch.device("cpu"), args.threads, 0)
    model, ckpt = load_checkpoint(args.checkpoint)
    config = model.config
    image_dir, records = load_split(args.json)
    dataset = SVHNDataset.evaluation((image_dir, records[:args.limit]),
                                     tokenizer_from_vocab(ckpt["vocab"]), config)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    batches = list(torch.split(images, args.batch_size))
    work = tempfile.mkdtemp(prefix="bench_export-")
    module = export.Greedy(fold_batchnorm(model.eval())).eval()

    def pytorch(batch):
        with torch.no_grad():
            return module(batch)[0]
    runners = [("PyTorch checkpoint", pytorch)]
    for suffix in (".onnx", ".pt"):
        path = os.path.join(work, f"model{suffix}")
        export.main(["--checkpoint", args.checkpoint, "--out", path])
        if suffix == ".onnx":
            import onnxruntime
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            session = onnxruntime.InferenceSession(path, options,
                                                   providers=["CPUExecutionProvider"])
            runners.append(("ONNX (onnxruntime)", lambda b, s=session: torch.from_numpy(
                s.run(None, {"images": b.numpy()})[0])))
        else:
            loaded = torch.jit.load(path)
            runners.append(("TorchScript", lambda b, m=loaded: m(b)[0]))
    reference = None
    print(f"{len(images)} images of {args.json}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} thread(s)")
    for name, run in runners:
        start = time.perf_counter()
        with torch.no_grad():
            tokens = torch.cat([run(b).long() for b in batches])
        seconds = time.perf_counter() - start
        if reference is None:
            reference = tokens
        agree = (tokens == reference).all(dim=1).float().mean().item()
        print(f"{name:<22} tokens equal PyTorch's on {agree:7.2%} of images, "
              f"{len(images) / seconds:7.1f} images/s")


if __name__ == "__main__":
    main()
