"""The lr schedule (step, cosine or onecycle, stepped once per batch) and --max-minutes: the epochs
that fit, planned from a representative epoch, and a cosine schedule that goes on without a jump
when the plan is cut.

A first epoch is a poor measure of the rest: its first steps build oneDNN's kernels, grow the
allocator and wait for loader workers to start (measured: a first epoch of 9 s at 18 images/s
planned 54 of 120 epochs, later re-planned to 49, then 46, each cut moving the whole cosine).
So the first plan takes the median step of the first epoch (slow first steps do not move a
median) times its steps, plus its validation; later epochs are timed (training and validation,
and saving apart: the first save also warms matplotlib up) and cut the plan further when the
epochs left no longer fit, or lengthen it again, up to the epochs asked for, when they run
faster than it was planned at (measured: a first epoch beside a busy loop on its core planned
11 of 39 epochs; grown to 21, CAPTCHAs read 98.8% whole against 97.6%). A plan grows by at least
GROW_MIN epochs and GROW_SHARE of itself at once, so a few percent of timing noise does not
re-lay the schedule every epoch.
"""
import math
import statistics
from dataclasses import dataclass

import torch

GROW_MIN = 2        # a plan is lengthened by at least this many epochs
GROW_SHARE = 0.1    # and this share of its epochs


@dataclass
class EpochPlan:
    """The epochs the lr schedule is laid out over: --epochs, cut by --max-minutes. anchor:
    [step, lr factor] where the last cut re-laid the cosine schedule (None: never cut); from
    there it goes on from that factor, so the lr never jumps. Both are recorded in the
    checkpoint (as --epochs and relaid)."""
    epochs: int
    anchor: list = None


def cosine_factor(step, total, warmup, anchor=None):
    """The cosine schedule's lr factor (of the peak) after `step` of `total` steps: a linear
    warm-up over max(2, warmup x total) steps, then half a cosine down to 0. From an anchor
    [s0, v0] on it starts at v0: still warming up, it climbs on to the peak by the warm-up's
    end; past it, it anneals from v0 to 0 at `total`."""
    warm = max(2, int(warmup * total))  # a warm-up of one step would divide by 0 below
    if anchor is not None and step >= anchor[0]:
        start, value = anchor
        if start >= warm:
            return value * (0.5 + 0.5 * math.cos(math.pi * (step - start) / max(1, total - start)))
        if step < warm:
            return value + (1 - value) * (step - start) / (warm - start)
    elif step < warm:
        return (step + 1) / warm
    return 0.5 + 0.5 * math.cos(math.pi * (step - warm) / max(1, total - warm))


def cut(plan, epochs, step, factor):
    """Lay the schedule out over `epochs` (fewer or more) from `step` on, starting from its
    factor there."""
    plan.epochs = epochs
    plan.anchor = [step, factor]


def steady_epoch_seconds(step_seconds, other_seconds):
    """An epoch's seconds once warmed up: the median of its steps' times x its steps, plus
    what it spent besides training (validation)."""
    return statistics.median(step_seconds) * len(step_seconds) + other_seconds


def epoch_seconds(first, work, saves):
    """The seconds an epoch is planned at. After the first epoch: its steady estimate. Later:
    training and validation as the latest epoch or the median of those after the first took
    them, whichever is longer (a machine that slows is believed at once, one that speeds up once
    it lasts), plus the median save after the first (which also imports and warms matplotlib:
    seconds on a busy core). `work` and `saves` hold every epoch's, the first's included."""
    if len(work) < 2:
        return first
    steady = max(work[-1], statistics.median(work[1:]))
    if len(saves) < 2:
        return steady
    return steady + statistics.median(saves[1:])


def epochs_that_fit(max_minutes, elapsed, epoch, seconds, planned, asked=None):
    """The epochs that fit in the budget: the `epoch` done and as many more of `seconds` as the
    time left holds. At most `planned`, unless the time left holds GROW_MIN and GROW_SHARE more
    than it: then up to `asked` (the epochs the run was given; None: never lengthened). The
    schedule is re-laid from its lr at the change either way (cut), so it never jumps."""
    if not max_minutes:
        return planned
    left = max_minutes * 60 - elapsed
    fits = epoch + int(left // seconds)
    grow = max(GROW_MIN, math.ceil(GROW_SHARE * planned))
    if asked is not None and epoch < planned and fits >= planned + grow:
        return min(asked, fits)
    return max(epoch, min(planned, fits))


def make_scheduler(args, optimizer, steps_per_epoch, plan=None):
    """All schedules step once per batch; --milestones are in epochs. The cosine schedule reads
    plan (None: an EpochPlan of --epochs) on every step: --max-minutes may cut the run."""
    plan = plan or EpochPlan(args.epochs)
    total = plan.epochs * steps_per_epoch
    if args.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, [m * steps_per_epoch for m in args.milestones], gamma=args.gamma)
    warm = max(2, int(args.warmup * total))  # OneCycleLR divides by (warm-up steps - 1)
    if args.schedule == "onecycle":  # (a short run gets a longer cycle than it will step through)
        steps = max(total, warm + 1)
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps,
                                                   pct_start=warm / steps)

    def cosine(s):
        return cosine_factor(s, plan.epochs * steps_per_epoch, args.warmup, plan.anchor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
