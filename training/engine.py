"""One epoch of training and one pass of validation, apart from train.py's set-up (as DETR keeps
engine.py's train_one_epoch apart from main.py). Both work under DDP: the model passed to
train_one_epoch may be DDP-wrapped; validate takes the bare model and shards by the loader.
"""
import csv
import itertools
import math
import time

import torch
import torch.distributed as dist
from tqdm import tqdm

from support import tokenizer

LOG_EVERY = 50  # steps between reads of the loss to the host (each read waits for the GPU)


class Epoch:
    """What an epoch of training reports: its last step, summed loss over its batches, images
    seen (over all ranks), batches run, seconds taken and each step's seconds."""

    def __init__(self, step):
        self.step = step
        self.loss_sum = 0.0
        self.last_loss = math.nan
        self.seen = 0
        self.batches = 0
        self.seconds = 0.0
        self.step_seconds = []

    @property
    def mean_loss(self):
        return self.loss_sum / max(1, self.batches)


def train_one_epoch(model, loader, optimizer, scheduler, scaler, settings, epoch, step, log=None):
    """Train `model` over `loader` once; returns an Epoch.

    settings: the run's fixed choices (device, autocast, memory_format, clip, world, ddp, epochs,
    dry_run, last_path, show_bar; follow: a support.threads.Follower, or None). log: an open
    loss.csv (or None) that gets one row per step.
    The loss and gradient norm stay on the device and are read back every LOG_EVERY steps in one
    sync (and before the epoch ends), then checked for non-finite values and logged."""
    s = settings
    model.train()
    result = Epoch(step)
    start = time.time()
    step_start = time.perf_counter()
    pending = []  # (step, epoch, lr, loss, gradient norm) of steps not yet read to the host
    desc = f"epoch {epoch + 1}/{s.epochs}"
    bar = tqdm(loader, desc=desc, disable=None if s.show_bar else True)
    for batch, (images, tokens, _) in enumerate(bar):
        images = images.to(s.device, non_blocking=True,
                           memory_format=s.memory_format)  # (B, 3, S, S)
        tokens = tokens.to(s.device, non_blocking=True)  # (B, T)
        with s.autocast:
            _, loss = model(images, tokens)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        # a () tensor: reading it here would wait for the GPU every step
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), s.clip)
        lr = optimizer.param_groups[0]["lr"]
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        if s.follow is not None:  # between steps: torch's threads may change here
            s.follow.after_step()
        now = time.perf_counter()
        result.step_seconds.append(now - step_start)
        step_start = now
        result.step += 1
        result.batches = batch + 1
        result.seen += images.size(0) * s.world
        position = epoch + (batch + 1) / len(loader)  # in epochs, for the log
        pending.append((result.step, position, lr, loss.detach(), norm.detach()))
        last_batch = batch + 1 == len(loader)
        if len(pending) < LOG_EVERY and not last_batch and not s.dry_run:
            continue
        # read back, checked and logged every LOG_EVERY steps, and always before a save
        for row in read_back(pending, s.ddp, s.world):
            check_finite(row, not scaler.is_enabled(), epoch, s.last_path)
            result.last_loss = row[3]
            result.loss_sum += row[3]
            if log is not None:
                fields = [row[0], f"{row[1]:.4f}", f"{row[3]:.6f}", f"{row[2]:.6g}"]
                csv.writer(log).writerow(fields)
        pending = []
        rate = result.seen / (time.time() - start)
        bar.set_postfix(loss=f"{result.last_loss:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.0f}",
                        refresh=False)
        if s.dry_run:
            break
    result.seconds = time.time() - start
    return result


@torch.no_grad()
def validate(model, loader, device, autocast, memory_format, ddp, max_batches=None):
    """Whole-sequence accuracy with greedy decoding (sharded over ranks under DDP)."""
    model.eval()
    correct = total = 0
    for images, tokens, _ in itertools.islice(loader, max_batches):
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        with autocast:
            predictions = model.decode(images)["tokens"]
        for predicted, target in zip(predictions, tokens.tolist()):
            target = tokenizer.label_ids(target)
            # a character the vocabulary lacks (<unk>, from --val-json) is never read right
            correct += tokenizer.UNK not in target and predicted == target
            total += 1
    # int64 (MPS has no float64), on the GPU only for NCCL (gloo and a lone process want the CPU)
    counts = torch.tensor([correct, total], device=device if device.type == "cuda" else "cpu")
    if ddp:
        dist.all_reduce(counts)
    return counts[0].item() / max(1, counts[1].item())


def read_back(pending, ddp, world):
    """(step, epoch, lr, loss, gradient norm) rows with their tensors read to the host in one sync.
    Under DDP the loss is averaged over the ranks (each computed it on its own shard); the norm,
    taken after the gradients' all-reduce, is the same on every rank."""
    losses = torch.stack([row[3] for row in pending]).float()  # (N,)
    norms = torch.stack([row[4] for row in pending]).float()  # (N,)
    if ddp:
        dist.all_reduce(losses)
        losses /= world
    values = zip(pending, losses.tolist(), norms.tolist())
    return [(*row[:3], value, norm) for row, value, norm in values]


def check_finite(row, check_norm, epoch, last_path):
    """FloatingPointError for a read-back row with a non-finite loss, or gradient norm (unless
    fp16's loss scaling is on: it skips those steps itself). Every rank reads the same values,
    so under DDP all stop together; the check comes before any save, so no checkpoint is hurt."""
    step, _, _, value, norm = row
    if math.isfinite(value) and (math.isfinite(norm) or not check_norm):
        return
    what = f"loss {value}" if not math.isfinite(value) else f"gradient norm {norm}"
    kept = f"{last_path} (epoch {epoch}) is the last good checkpoint" if epoch else "none saved"
    raise FloatingPointError(f"non-finite {what} at step {step} (epoch {epoch + 1}); "
                             f"stopped without saving; {kept}")


