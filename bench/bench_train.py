"""Training throughput on this machine, and where the time of a training step goes.

    python -m bench.bench_train [--json data/synth/train.json] [--configs default cpu] [--steps 3]
                                [--precision fp32 bf16] [--device cuda]

For each model size (default = the seed's architecture, cpu = train.py --preset cpu), batch 64,
54x54 crops:
  1. the real thing: train.py's DataLoader (same sampler, seeding, workers) feeding
     forward + backward + clip + AdamW; images/s from the median step after a warm-up step, with
     the time spent waiting for the next batch measured apart;
  2. the parts, on synthetic tensors in the main process, each run on its own: encoder forward
     and backward, decoder forward and backward (on fixed encoder features), clip + AdamW step;
  3. the data pipeline alone: the same dataset and sampler loaded in this process (one core).
All of them run interleaved, one call each per round; medians over --steps rounds after a warm-up
round. Each --precision is measured as train.py runs it (its autocast and channels_last), and
the last lines give each precision's images/s over fp32's. The machine may be shared: absolute
numbers are noisy, compare the ratios from one run. Never part of the test suite. Without --json
it draws a temporary SVHN-like split (bench.image_sets.make_temp_split) so it runs on a fresh clone.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

import build_model
import data
import train
from bench.image_sets import make_temp_split
from support import devices
from training import flags

CONFIGS = {"default": {"plan": flags.PLAN, "hidden": flags.HIDDEN}, **flags.PRESETS}


def forever(loader):
    while True:
        yield from loader


def make_loader(json_path, batch_size, workers, size):
    """train.py's training DataLoader (one process, epoch 0) and its tokenizer."""
    args = train.parse_args(["--train-json", json_path, "--val-size", "0",
                             "--batch-size", str(batch_size), "--crop-size", str(size)])
    tokenizer, train_set, _, _ = data.load_data(args)
    sampler = data.EpochTagged(train_set, 1, 0, shuffle=True, seed=0)
    loader = torch.utils.data.DataLoader(data.SeededSamples(train_set, 0), sampler=sampler,
                                         batch_size=batch_size, collate_fn=data.collate,
                                         num_workers=workers, persistent_workers=workers > 0)
    return tokenizer, loader


def bench_config(name, cfg, precision, tokenizer, loader, args):
    """One model size at one precision: time the real step and its parts, print where the time
    goes; returns the real step's images/s."""
    device = torch.device(args.device)
    # as train.py runs it, less fp16's loss scaler (a multiply and a check: not what is timed)
    autocast = devices.autocast(device, precision)
    memory_format = devices.memory_format(device)
    config = {**cfg, "vocab_size": len(tokenizer.vocab), "crop_size": args.size}
    model = build_model.build_model(config).to(device, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    images, tokens, features = fixed_batch(model, loader, autocast, memory_format, args)
    waits = []
    fns = {"real": real_step(model, optimizer, autocast, memory_format, loader, waits),
           **part_steps(model, optimizer, autocast, images, tokens, features),
           "data": serial_loader(loader)}
    t = time_rounds(fns, optimizer, device, args.steps)
    return report(name, cfg, precision, device, model, t, waits, args)


def fixed_batch(model, loader, autocast, memory_format, args):
    """Noise images, a real batch's tokens (real lengths) and the encoder's features of the
    images: the decoder's input, so that the decoder is timed on its own."""
    device = torch.device(args.device)
    B, S = args.batch_size, args.size
    _, tokens, _ = next(iter(loader))
    images = torch.randn(B, 3, S, S).to(device, memory_format=memory_format)
    tokens = tokens[:B].to(device)
    with torch.no_grad(), autocast:
        features, _ = model.encode(images)  # (B, L, C)
    features = features.float()
    features.requires_grad_(True)  # so the decoder's backward reaches the features, as in training
    return images, tokens, features


def clip_and_step(model, optimizer):
    """train.py's update: gradient norm clipped to 5, then AdamW."""
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()


def real_step(model, optimizer, autocast, memory_format, loader, waits):
    """train.py's step as a function of nothing: DataLoader (worker processes prefetch) ->
    forward/backward -> clip -> AdamW. Each wait for a batch is appended to waits."""
    batches = forever(loader)
    device = next(model.parameters()).device

    def step():
        t0 = time.perf_counter()
        imgs, toks, _ = next(batches)
        waits.append(time.perf_counter() - t0)
        imgs = imgs.to(device, non_blocking=True, memory_format=memory_format)
        toks = toks.to(device, non_blocking=True)
        with autocast:
            _, loss = model(imgs, toks)
        loss.backward()
        clip_and_step(model, optimizer)
        optimizer.zero_grad(set_to_none=True)
    return step


def part_steps(model, optimizer, autocast, images, tokens, features):
    """The parts of a step on fixed tensors, each timed on its own: {key: function}.
    backward = (forward + backward) - no-grad forward."""
    pad = model.config["pad_id"]

    def encoder_forward():
        with torch.no_grad(), autocast:
            model.encoder(images)

    def encoder_forward_backward():
        with autocast:
            out = model.encoder(images)
        out.backward(torch.ones_like(out))

    def decoder_loss():
        with autocast:
            logits, _ = model.decoder(features, tokens[:, :-1])
            return build_model.masked_cross_entropy(logits, tokens[:, 1:], pad)

    def decoder_forward():
        with torch.no_grad():
            decoder_loss()

    def decoder_forward_backward():
        decoder_loss().backward()

    return {"enc_f": encoder_forward, "enc_fb": encoder_forward_backward,
            "dec_f": decoder_forward, "dec_fb": decoder_forward_backward,
            "opt": lambda: clip_and_step(model, optimizer)}


def serial_loader(loader):
    """The same dataset and sampler loaded in this process alone: one batch per call."""
    batches = forever(torch.utils.data.DataLoader(
        loader.dataset, sampler=loader.sampler, batch_size=loader.batch_size,
        collate_fn=data.collate))
    return lambda: next(batches)


def time_rounds(fns, optimizer, device, steps):
    """{key: [seconds]} of each function over `steps` rounds after a warm-up round. Rounds are
    interleaved (one call of each per round), so that a burst of load on the shared machine
    hits every part alike."""
    t = {k: [] for k in fns}
    for r in range(steps + 1):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            if device.type == "cuda":  # CUDA runs asynchronously: a timer must wait for the GPU
                torch.cuda.synchronize(device)
            if r:  # round 0 is a warm-up (workers start, allocator settles)
                t[k].append(time.perf_counter() - t0)
        optimizer.zero_grad(set_to_none=True)
    return t


def report(name, cfg, precision, device, model, times, waits, args):
    """Print one configuration's rates and the share of each part; return images/s."""
    B, S = args.batch_size, args.size
    fastest = min(times["real"])  # the least disturbed step: a bound on what a quiet machine gives
    t = {k: statistics.median(v) for k, v in times.items()}
    step, wait, data_alone = t["real"], statistics.median(waits[1:]), t["data"]
    parts = {"encoder forward": t["enc_f"], "encoder backward": t["enc_fb"] - t["enc_f"],
             "decoder forward": t["dec_f"], "decoder backward": t["dec_fb"] - t["dec_f"],
             "clip + AdamW step": t["opt"]}
    compute = sum(parts.values())

    params = sum(p.numel() for p in model.parameters())
    print(f"\n== {name}, {precision} on {device}: plan '{cfg['plan']}', hidden {cfg['hidden']}, "
          f"{params / 1e6:.2f} M parameters, batch {B}, {S}x{S}, "
          f"{torch.get_num_threads()} threads, {args.workers} loader workers")
    print(f"training (real loader): {B / step:7.1f} images/s   ({step:.3f} s/step, of which "
          f"{wait:.3f} s waiting for data = {wait / step:.0%}); "
          f"fastest step {B / fastest:.1f} images/s")
    print(f"compute only (synthetic): {B / compute:5.1f} images/s   ({compute:.3f} s/step)")
    print(f"data pipeline alone:     {B / data_alone:7.1f} images/s   "
          f"({data_alone:.3f} s/batch, one process)")
    print(f"{'part':<20}{'s/step':>9}{'share':>8}")
    for part, sec in parts.items():
        print(f"{part:<20}{sec:9.3f}{sec / compute:8.1%}")
    encoder, decoder = t["enc_fb"], t["dec_fb"]
    print(f"encoder : decoder (forward + backward) = {encoder / decoder:.2f} : 1; "
          f"loading a batch alone takes {data_alone / step:.0%} of a real step")
    return B / step


def machine(device):
    """One line naming what was measured: the GPU, or the CPU's cores and bf16 instructions."""
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    isa = devices.cpu_bf16_isa() or "none (bf16 emulated)"
    return f"CPU: {os.cpu_count()} cores, {torch.get_num_threads()} threads, bf16 ISA: {isa}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--json", default=None, help="a split JSON; None: a temporary generated split")
    p.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["default", "cpu"],
                   help="model sizes to measure")
    p.add_argument("--precision", nargs="+", choices=["fp32", "bf16", "fp16"], default=["fp32"],
                   help="train.py --precision values to measure (ratios against the first)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--batch-size", type=int, default=64, help="images per step")
    p.add_argument("--size", type=int, default=54, help="crop size (network input side)")
    p.add_argument("--steps", type=int, default=5, help="timed rounds (after one warm-up round)")
    p.add_argument("--workers", type=int, default=1,
                   help="DataLoader workers (train.py's CPU default: 1)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--images", type=int, default=512,
                   help="size of the temporary split (without --json)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        json_path = args.json or make_temp_split(tmp, args.images)
        if not os.path.exists(json_path):
            sys.exit(f"bench_train.py: error: {json_path}: no such file")
        tokenizer, loader = make_loader(json_path, args.batch_size, args.workers, args.size)
        rates = {}
        for name in args.configs:
            for precision in args.precision:
                rates[name, precision] = bench_config(name, CONFIGS[name], precision, tokenizer,
                                                      loader, args)
    print(f"\n{machine(torch.device(args.device))}")
    for name in args.configs:
        first = args.precision[0]
        line = ", ".join(f"{prec} {rates[name, prec]:.1f} images/s "
                         f"({rates[name, prec] / rates[name, first]:.2f}x {first})"
                         for prec in args.precision)
        print(f"{name}: {line}")


if __name__ == "__main__":
    main()
