"""training/budget.py and train.py --max-minutes: the plan comes from a representative epoch, the
run ends within its budget, and a cut never makes the cosine schedule jump."""
import csv
import math
import time

import pytest
import torch

from support import threads
from training import budget
import train
from helpers import write_split

TINY = ["--plan", "8 M 16", "--hidden", "16", "--image-size", "32", "--crop-size", "28",
        "--val-size", "4", "--threads", "1", "--workers", "0"]


def factors(total, warmup, cuts=()):
    """The schedule's factor at every step, with each (step, new total) of `cuts` applied as
    train.py does: the plan cut, the cosine going on from its factor there."""
    plan = budget.EpochPlan(total)
    cuts = dict(cuts)
    out = []
    for step in range(plan.epochs):
        if step in cuts:
            factor = budget.cosine_factor(step, plan.epochs, warmup, plan.anchor)
            budget.cut(plan, cuts[step], step, factor)
        if step >= plan.epochs:
            break
        out.append(budget.cosine_factor(step, plan.epochs, warmup, plan.anchor))
    return out


def test_a_cut_goes_on_from_the_lr_it_was_at():
    # never cut: the warm-up, then half a cosine to 0 (the layout before --max-minutes existed)
    plain = factors(100, 0.1)
    assert plain[:3] == [0.1, 0.2, 0.3] and plain[9] == 1.0
    assert plain[99] == pytest.approx(0.5 + 0.5 * math.cos(math.pi * 89 / 90))
    for cuts in ([(5, 40)], [(30, 60)], [(5, 60), (30, 45), (40, 44)]):
        lrs = factors(100, 0.1, cuts)
        peak = lrs.index(max(lrs))
        steps = [b - a for a, b in zip(lrs, lrs[1:])]
        assert all(d > 0 for d in steps[:peak])  # warming up
        assert all(d <= 0 for d in steps[peak:])  # then monotone down, to ~0 at the new end
        assert lrs[-1] < 0.03  # the last step before 0
        assert len(lrs) == cuts[-1][1]
        # no jump at a cut: the step after it moves no more than the steps around it
        for step, _ in cuts:
            assert abs(steps[step - 1]) <= 3 * max(abs(steps[step - 2]), abs(steps[step]))


def test_the_plan_comes_from_the_median_step():
    # a first epoch whose first steps waited on a warm-up: 2 of 10 steps at 3 s, the rest 0.1 s
    assert budget.steady_epoch_seconds([3, 3] + [0.1] * 8, 0.5) == pytest.approx(1.5)
    assert budget.epoch_seconds(1.5, [9.0], []) == 1.5
    # later: the latest epoch or the median of the steady ones (the first left out), and the
    # median save after the first (which warmed matplotlib up)
    assert budget.epoch_seconds(1.5, [9.0, 2.0, 2.2, 4.0], [5, 1, 1]) == 4.0 + 1
    assert budget.epoch_seconds(1.5, [9.0, 2.0, 2.2, 1.0], [5, 1, 1]) == 2.0 + 1
    assert budget.epoch_seconds(1.5, [9.0, 2.0], [5]) == 2.0


def test_a_plan_grows_back_up_to_the_epochs_asked_only_by_a_margin():
    # 8 planned after a slow first epoch; epoch 2 took 10 s with 300 s left: 30 more fit, so
    # the plan grows, but never past the 39 asked for
    assert budget.epochs_that_fit(6, 60, 2, 10.0, 8, 39) == 32
    assert budget.epochs_that_fit(60, 60, 2, 10.0, 8, 39) == 39
    # without `asked` (the rule before) a plan is only ever cut
    assert budget.epochs_that_fit(6, 60, 2, 10.0, 8) == 8
    # growth must be worth a re-lay: at least 2 epochs and a tenth of the plan
    assert budget.epochs_that_fit(6, 60, 2, 10.0, 31, 120) == 31  # 32 fit: 1 more
    assert budget.epochs_that_fit(6, 60, 2, 10.0, 30, 120) == 30  # 2 more, a tenth of 30 is 3
    assert budget.epochs_that_fit(6, 60, 2, 10.0, 29, 120) == 32  # 3 more: a tenth, rounded up
    assert budget.epochs_that_fit(6, 0, 2, 1.0, 340, 400) == 340  # 362 fit: under 340 + 34
    assert budget.epochs_that_fit(6, 0, 2, 1.0, 320, 400) == 362  # 362 fit: 320 + 32 and more
    # a finished plan is not reopened (its lr has annealed to 0), and cuts work as before
    assert budget.epochs_that_fit(6, 60, 8, 10.0, 8, 39) == 8
    assert budget.epochs_that_fit(6, 300, 2, 10.0, 40, 40) == 8


def test_a_grown_plan_goes_on_from_the_lr_it_was_at():
    # cut early to 20, then grown to 60 and cut again to 50: warm-up, then monotone to ~0
    lrs = factors(100, 0.1, [(4, 20), (12, 60), (40, 50)])
    peak = lrs.index(max(lrs))
    steps = [b - a for a, b in zip(lrs, lrs[1:])]
    assert all(d > 0 for d in steps[:peak]) and all(d <= 0 for d in steps[peak:])
    assert len(lrs) == 50 and lrs[-1] < 0.03
    assert abs(steps[11]) <= 3 * max(abs(steps[10]), abs(steps[12]))  # no jump where it grew


@pytest.fixture(scope="module")
def tiny_json(tmp_path_factory):
    numbers = [[(i * 7 + k * 3) % 10 for k in range(1 + i % 3)] for i in range(16)]
    root = tmp_path_factory.mktemp("tiny")
    return write_split(str(root), numbers=numbers, split="train", image_dir="train")


def run_slowed(tiny_json, out, monkeypatch, steps, wait, minutes):
    """train.py with a --max-minutes budget on the tiny split, its first `steps` steps each
    `wait` s longer (a warm-up, or another job on the core), 40 epochs asked for: it ends
    within its budget, its lr monotone after the warm-up. Returns last.pt."""
    slow = {"left": steps}
    after_step = threads.Follower.after_step

    def slowed(self):
        if slow["left"]:
            slow["left"] -= 1
            time.sleep(wait)
        after_step(self)
    monkeypatch.setattr(threads.Follower, "after_step", slowed)
    began = time.time()
    assert train.main(["--train-json", tiny_json, *TINY, "--batch-size", "2", "--out", str(out),
                       "--epochs", "40", "--schedule", "cosine", "--lr", "1e-2",
                       "--max-minutes", str(minutes), "--no-epoch-checkpoints"]) == 0
    took = time.time() - began
    assert took <= minutes * 60 * 1.15, took  # within the budget (the last epoch's noise aside)
    with open(out / "loss.csv") as f:
        lrs = [float(row["lr"]) for row in csv.DictReader(f)]
    peak = lrs.index(max(lrs))
    assert all(b <= a for a, b in zip(lrs[peak:], lrs[peak + 1:]))  # monotone after warm-up
    return torch.load(out / "last.pt", weights_only=True)


@pytest.mark.slow
def test_a_slowed_first_epoch_plans_the_steady_epochs(tiny_json, tmp_path, monkeypatch):
    # the first two steps wait 3 s each (as oneDNN's kernels and the loader workers warm up),
    # then 4 steps take ~0.05 s. Planned from that slow first epoch (~6 s) a 24 s budget held 4
    # epochs; planned from its median step (and then the later epochs' times, saving included:
    # ~1.5 s an epoch here) it holds more, and still ends in time
    ckpt = run_slowed(tiny_json, tmp_path / "run", monkeypatch, steps=2, wait=3, minutes=0.4)
    assert ckpt["epoch"] == ckpt["args"]["epochs"] >= 5, ckpt["epoch"]


@pytest.mark.slow
def test_a_run_cut_by_the_budget_resumes_bitwise(tiny_json, tmp_path, monkeypatch):
    # --max-minutes cuts 5 planned epochs to 3 after the first (faked: timing is not
    # repeatable); the cut's anchor is in the checkpoint, so a run stopped after that epoch
    # resumes on the same schedule as the one that went on
    monkeypatch.setattr(budget, "epochs_that_fit", lambda *args: 3)
    common = ["--train-json", tiny_json, *TINY, "--batch-size", "4", "--schedule", "cosine",
              "--lr", "3e-3", "--max-minutes", "60"]
    assert train.main([*common, "--out", str(tmp_path / "straight"), "--epochs", "5"]) == 0
    save_epoch = train.save_epoch

    def stop_after_first(run, parts, state, *args):
        save_epoch(run, parts, state, *args)
        raise KeyboardInterrupt  # Ctrl-C right after epoch 1 was saved
    monkeypatch.setattr(train, "save_epoch", stop_after_first)
    with pytest.raises(SystemExit):
        train.main([*common, "--out", str(tmp_path / "split"), "--epochs", "5"])
    monkeypatch.setattr(train, "save_epoch", save_epoch)
    first = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    assert first["epoch"] == 1 and first["args"]["epochs"] == 3 and first["args"]["relaid"]
    assert train.main([*common, "--out", str(tmp_path / "split"), "--epochs", "3",
                       "--resume", "auto"]) == 0
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    assert a["scheduler"]["_last_lr"] == b["scheduler"]["_last_lr"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


@pytest.mark.slow
def test_a_first_epoch_on_a_busy_core_does_not_cut_the_run_for_good(tiny_json, tmp_path,
                                                                   monkeypatch):
    # every step of epoch 1 waits 0.6 s (another job on the core; 12 training images, batch 2:
    # 6 steps), later ones do not: planned from epoch 1 the 30 s budget holds a few epochs; the
    # faster epochs after it grow the plan again, within the 40 asked for, in time
    plans = []
    cut = budget.cut

    def recorded(plan, epochs, step, factor):
        plans.append(epochs)
        cut(plan, epochs, step, factor)
    monkeypatch.setattr(budget, "cut", recorded)
    ckpt = run_slowed(tiny_json, tmp_path / "run", monkeypatch, steps=6, wait=0.6, minutes=0.5)
    assert len(plans) >= 2 and max(plans[1:]) > plans[0], plans  # grown after the first plan
    assert plans[0] < ckpt["epoch"] == ckpt["args"]["epochs"] <= 40, (plans, ckpt["epoch"])
