"""Benchmark: eval.py's batched evaluation vs decoding one image at a time (images/s and ratio).

    python -m bench.bench_eval [--images 512] [--single 32] [--rounds 3] [--plan ...]

Default architecture, random weights, small synthetic house-number PNGs written to a temp folder.
  one-at-a-time: for each image, load + crop + transform (SVHNDataset[i]) and greedy decode with
                 batch size 1 on the model as loaded (what a naive evaluation loop does);
  batched:       eval.py's own path: prepared model (BN folded, channels_last), DataLoader with
                 workers, batched decode + loss + attention metrics (eval.evaluate), in fp32
                 and with --precision bf16 (fast only on CPUs with native bf16, e.g. AMX).
Rounds alternate the two so that load from other processes hits both alike; medians are reported.
A random model gets every image wrong, so eval's loss needs the teacher-forced pass on every image:
the worst case for the batched side (a trained model needs it only for its mistakes).
"""
import argparse
import copy
import json
import statistics
import tempfile
import time

import torch

import eval as ev
from bench.image_sets import write_images
from build_model import DEFAULT_CONFIG, build_model
from data import SVHNDataset, collate
from formats.records import record_text
from support import inference
from support.atomic import atomic_open
from support.tokenizer import build_tokenizer


def one_at_a_time(model, dataset, indices):
    start = time.perf_counter()
    with torch.no_grad():
        for i in indices:
            image, _, _ = dataset[i]  # load, crop, resize, centre crop, normalise
            model.decode(image.unsqueeze(0))  # (1, 3, S, S), greedy
    return len(indices) / (time.perf_counter() - start)


def batched(model, dataset, config, batch_size, workers, precision="fp32"):
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                         collate_fn=collate)
    start = time.perf_counter()
    ev.evaluate(model, loader, config, progress=False, precision=precision)
    return len(dataset) / (time.perf_counter() - start)


def decode_only(model, images, batch_size):
    start = time.perf_counter()
    with torch.inference_mode():
        for k in range(0, len(images), batch_size):
            model.decode(images[k:k + batch_size].contiguous(memory_format=torch.channels_last))
    return len(images) / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", type=int, default=512, help="images per batched round")
    p.add_argument("--single", type=int, default=32, help="images per one-at-a-time round")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (median reported)")
    p.add_argument("--batch-size", type=int, default=ev.BATCH_SIZE, help="eval batch size")
    p.add_argument("--workers", type=int, default=ev.parse_args(["--checkpoint", "-"]).workers,
                   help="DataLoader workers of the batched side (eval.py's default)")
    p.add_argument("--plan", default=DEFAULT_CONFIG["plan"], help="encoder channel plan")
    p.add_argument("--hidden", type=int, default=DEFAULT_CONFIG["hidden"], help="decoder size")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model({"plan": args.plan, "hidden": args.hidden}).eval()
    fast = inference.inference_model(copy.deepcopy(model), "cpu")
    config = model.config
    with tempfile.TemporaryDirectory() as root:
        # the tests' image sets, about the size of SVHN test images (130x55), 1-3 light digits
        records = write_images(root, args.images, margin=40, height=55)
        tokenizer = build_tokenizer(map(record_text, records))
        dataset = SVHNDataset((root, records), tokenizer, train=False)
        preloaded = torch.stack([dataset[i][0] for i in range(len(dataset))])
        # warm-up: first calls pick oneDNN kernels
        one_at_a_time(model, dataset, range(2))
        decode_only(fast, preloaded[: args.batch_size], args.batch_size)
        batched(fast, dataset, config, args.batch_size, args.workers, "bf16")  # warm-up
        single, batch, dec, bf16 = [], [], [], []
        for r in range(args.rounds):
            first = (r * args.single) % len(dataset)
            idx = range(first, first + args.single)
            single.append(one_at_a_time(model, dataset, [i % len(dataset) for i in idx]))
            batch.append(batched(fast, dataset, config, args.batch_size, args.workers))
            dec.append(decode_only(fast, preloaded, args.batch_size))
            bf16.append(batched(fast, dataset, config, args.batch_size, args.workers, "bf16"))
            print(f"round {r + 1}: one-at-a-time {single[-1]:7.1f} img/s | eval batched "
                  f"{batch[-1]:7.1f} img/s | decode only (preloaded) {dec[-1]:7.1f} img/s | "
                  f"eval batched --precision bf16 {bf16[-1]:7.1f} img/s | "
                  f"ratio {batch[-1] / single[-1]:.1f}x (bf16 {bf16[-1] / single[-1]:.1f}x)",
                  flush=True)
    ratios = [b / s for b, s in zip(batch, single)]
    result = {"plan": args.plan, "hidden": args.hidden, "threads": args.threads,
              "batch_size": args.batch_size, "workers": args.workers,
              "one_at_a_time_img_s": statistics.median(single),
              "eval_batched_img_s": statistics.median(batch),
              "decode_only_batched_img_s": statistics.median(dec),
              "ratio_median": statistics.median(ratios),
              "eval_batched_bf16_img_s": statistics.median(bf16),
              "ratio_bf16_median": statistics.median(b / s for b, s in zip(bf16, single)),
              "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    print(f"median: one-at-a-time {result['one_at_a_time_img_s']:.1f} img/s, eval batched "
          f"{result['eval_batched_img_s']:.1f} img/s, ratio {result['ratio_median']:.1f}x "
          f"(target >= 20x); batched decode alone {result['decode_only_batched_img_s']:.1f} img/s; "
          f"eval batched in bf16 {result['eval_batched_bf16_img_s']:.1f} img/s, ratio "
          f"{result['ratio_bf16_median']:.1f}x (CPU: {result['cpu_capability']})")
    if args.json:
        with atomic_open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
