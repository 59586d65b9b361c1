"""train.py on a tiny generated dataset: exact resume, checkpoints, non-finite stop, DDP smoke
run."""
import argparse
import contextlib
import csv
import errno
import json
import math
import os
import re
import shutil
import socket
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

import build_model
from support import checkpoint
from training import budget, engine, flags
import train
from helpers import write_split

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--plan", "8 M 16", "--hidden", "16", "--image-size", "32", "--crop-size", "28",
        "--batch-size", "4", "--val-size", "4", "--threads", "1"]


@pytest.fixture(scope="module")
def tiny_json(tmp_path_factory):
    """16 small PNGs of 1-3 drawn digits and their JSON, in prepare_data.py's format."""
    numbers = [[(i * 7 + k * 3) % 10 for k in range(1 + i % 3)] for i in range(16)]
    root = tmp_path_factory.mktemp("tiny")
    return write_split(str(root), numbers=numbers, split="train", image_dir="train")


def run(tiny_json, out, *extra):
    return train.main(["--train-json", tiny_json, *TINY, "--out", str(out),
                       "--plot", str(out / "copy.png"), *extra])


# loader workers (processes) only in the slow cases
@pytest.mark.parametrize("workers,dropout", [
    (0, "0"), pytest.param(2, "0", marks=pytest.mark.slow),
    (0, "0.3"), pytest.param(2, "0.2", marks=pytest.mark.slow)])
def test_resume_is_bitwise_exact(tiny_json, tmp_path, workers, dropout):
    # the milestone at epoch 1 makes the lr change exactly at the resume point; dropout draws
    # from torch's generator in the training process, so only a restored torch RNG state keeps
    # the resumed run on the straight one's path
    common = ["--workers", str(workers), "--milestones", "1", "--lr", "3e-3",
              "--dropout", dropout]
    assert run(tiny_json, tmp_path / "straight", *common, "--epochs", "2") == 0
    assert run(tiny_json, tmp_path / "split", *common, "--epochs", "1") == 0
    assert run(tiny_json, tmp_path / "split", *common, "--epochs", "2", "--resume", "auto") == 0
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"] == 6
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for k, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], b["optimizer"]["state"][k]["exp_avg"])
    assert a["scheduler"]["_last_lr"] == b["scheduler"]["_last_lr"]
    # the resumed run's log holds each step once, and the lr of each is absolute: 3 steps an
    # epoch, x0.1 from epoch 1 on (a milestone counted in steps would drop it after step 1)
    for run_dir in ("straight", "split"):
        with open(tmp_path / run_dir / "loss.csv") as f:
            rows = [line.strip().split(",") for line in f.readlines()[1:]]
        assert [int(row[0]) for row in rows] == list(range(1, 7))
        assert [float(row[3]) for row in rows] == [3e-3] * 3 + [3e-4] * 3


def schedule_args(schedule, **changes):
    """Explicit schedule flags (the defaults may change; these tests must not)."""
    values = {"schedule": schedule, "lr": 1e-3, "epochs": 4, "milestones": [2], "gamma": 0.1,
              "warmup": 0.1}
    return argparse.Namespace(**{**values, **changes})


def lrs_used(args, steps_per_epoch, resume_after=None):
    """The lr of every optimizer step of the run, as train.py steps its scheduler (once a batch).
    resume_after: an epoch after which optimizer and scheduler are rebuilt from their
    state_dicts, in train.py's order (scheduler made, then both states loaded)."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=args.lr)
    scheduler = budget.make_scheduler(args, optimizer, steps_per_epoch)
    used = []
    for step in range(args.epochs * steps_per_epoch):
        if resume_after is not None and step == resume_after * steps_per_epoch:
            states = optimizer.state_dict(), scheduler.state_dict()
            optimizer = torch.optim.AdamW([param], lr=args.lr)
            scheduler = budget.make_scheduler(args, optimizer, steps_per_epoch)
            optimizer.load_state_dict(states[0])
            scheduler.load_state_dict(states[1])
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return used


# 4 epochs of 5 steps. step: x0.1 from epoch 2 (step 10). cosine: warm-up max(2, 10% of 20) = 2
# steps, linear ((s + 1) / 2), then half a cosine from step 2 to 20. onecycle: torch's, 10% warm-up
# from lr/25 at step 0 to lr at step 1, then a cosine down to lr/25/1e4 at step 19.
EXPECTED_LR = {
    "step": {0: 1e-3, 9: 1e-3, 10: 1e-4, 19: 1e-4},
    "cosine": {0: 0.5e-3, 1: 1e-3, 2: 1e-3, 11: 0.5e-3,
               19: 1e-3 * (0.5 + 0.5 * math.cos(math.pi * 17 / 18))},
    "onecycle": {0: 4e-5, 1: 1e-3, 10: (1e-3 + 4e-9) / 2, 19: 4e-9},
}


@pytest.mark.parametrize("resume_after", [None, 1, 3])
@pytest.mark.parametrize("schedule", ["step", "cosine", "onecycle"])
def test_learning_rate_at_chosen_steps(schedule, resume_after):
    # resuming after epoch 1 crosses the step schedule's milestone (epoch 2) and the onecycle
    # peak's far side; after epoch 3 the cosine's tail
    used = lrs_used(schedule_args(schedule), 5, resume_after)
    assert len(used) == 20
    for step, lr in EXPECTED_LR[schedule].items():
        assert used[step] == pytest.approx(lr, rel=1e-9, abs=1e-15), (step, used[step], lr)
    assert used == pytest.approx(lrs_used(schedule_args(schedule), 5), rel=1e-12)
    if schedule == "step":
        assert used == [1e-3] * 10 + [pytest.approx(1e-4, rel=1e-12)] * 10


def test_step_schedule_milestones_are_epochs_and_compound():
    used = lrs_used(schedule_args("step", milestones=[1, 3], gamma=0.5), 5)
    assert used == pytest.approx([1e-3] * 5 + [5e-4] * 10 + [2.5e-4] * 5, rel=1e-12)
    # the recipe's shape: 16 epochs, x0.1 after the 10th (explicit flags, not the defaults)
    used = lrs_used(schedule_args("step", lr=3e-4, epochs=16, milestones=[10]), 2)
    assert used == pytest.approx([3e-4] * 20 + [3e-5] * 12, rel=1e-12)


def test_checkpoint_contents_and_outputs(tiny_json, tmp_path):
    assert run(tiny_json, tmp_path, "--epochs", "1", "--workers", "0") == 0
    ckpt = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=True)
    for key in ("format", "config", "vocab", "model", "optimizer", "scheduler", "epoch", "step",
                "rng", "best_metric", "args"):
        assert key in ckpt, key
    assert ckpt["format"] == checkpoint.CHECKPOINT_FORMAT
    assert ckpt["config"]["plan"] == "8 M 16" and ckpt["config"]["crop_size"] == 28
    assert ckpt["vocab"][:3] == ["<pad>", "<unk>", "</s>"]
    assert ckpt["args"]["weight_decay"] == 0.01 and 0.0 <= ckpt["best_metric"] <= 1.0
    assert set(ckpt["rng"]) >= {"torch", "numpy", "python"}
    model, _ = checkpoint.load_checkpoint(str(tmp_path / "best.pt"))
    assert model.config["hidden"] == 16
    weights = torch.load(tmp_path / "epoch-001.pt", weights_only=True)  # the epoch's weights only
    assert sorted(weights) == ["config", "epoch", "format", "model", "step", "vocab"]
    assert weights["epoch"] == 1 and weights["config"] == ckpt["config"]
    for name, tensor in ckpt["model"].items():
        assert torch.equal(weights["model"][name], tensor), name
    for name in ("loss.csv", "val.csv", "loss.png", "copy.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert not list(tmp_path.glob("*.tmp"))


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tiny_json, tmp_path, monkeypatch):
    real_build = train.build_model

    def poisoned_build(config):  # the loss turns NaN at the 5th step (epoch 2 has steps 4-6)
        model = real_build(config)
        forward, calls = model.forward, []

        def poisoned_forward(images, tokens):
            logits, loss = forward(images, tokens)
            calls.append(1)
            return logits, loss * float("nan") if len(calls) >= 5 else loss
        model.forward = poisoned_forward
        return model
    monkeypatch.setattr(train, "build_model", poisoned_build)
    with pytest.raises(SystemExit) as e:
        run(tiny_json, tmp_path, "--epochs", "3", "--workers", "0")
    message = str(e.value.code)
    assert "non-finite loss nan at step 5 (epoch 2" in message and "\n" not in message
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["step"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_huge_lr_stops_with_message(tiny_json, tmp_path):
    with pytest.raises(SystemExit) as e:
        run(tiny_json, tmp_path, "--epochs", "1", "--workers", "0", "--lr", "1e30")
    assert "non-finite" in str(e.value.code) and "at step" in str(e.value.code)
    assert not (tmp_path / "last.pt").exists()


@pytest.mark.parametrize("schedule", ["step", "cosine", "onecycle"])
def test_dry_run_writes_nothing(tiny_json, tmp_path, capsys, schedule):
    assert run(tiny_json, tmp_path / "run", "--dry-run", "--workers", "0",
               "--schedule", schedule) == 0
    assert "dry run ok" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()


def test_bad_inputs_are_one_line_errors(tiny_json, tmp_path):
    with pytest.raises(SystemExit) as e:
        train.main(["--train-json", str(tmp_path / "nope.json"), "--out", str(tmp_path)])
    assert "nope.json" in str(e.value.code) and "prepare_data.py" in str(e.value.code)
    with pytest.raises(SystemExit) as e:
        run(tiny_json, tmp_path, "--val-size", "16")
    assert "--val-size" in str(e.value.code)
    with pytest.raises(SystemExit) as e:
        run(tiny_json, tmp_path, "--resume", str(tmp_path / "missing.pt"))
    assert "missing.pt" in str(e.value.code)
    with pytest.raises(SystemExit) as e:
        train.parse_args(["--no-such-flag"])
    assert e.value.code == 2


def test_defaults_are_the_recipe_and_preset_yields_to_flags(capsys):
    args = train.parse_args([])
    assert (args.lr, args.batch_size, args.epochs, args.milestones, args.clip, args.dropout,
            args.schedule, args.augment) == (3e-4, 64, 16, [10], 5.0, 0.0, "step", True)
    # the seed holds nothing out, runs in fp32, feeds [0, 1] pixels and takes the glimpse
    assert (args.val_size, args.precision, args.normalize, args.glimpse) == (0, "fp32", False, True)
    assert args.train_json == ["data/svhn/train.json", "data/svhn/extra.json"]
    assert args.plan == "64 64 M 128 128 M 256 256 M 512 512" and args.hidden == 256
    cpu = train.parse_args(["--preset", "cpu", "--hidden", "64"])
    assert cpu.plan == "32 M 64 M 128 M 128" and cpu.hidden == 64
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    assert "(default: 0.0003)" in capsys.readouterr().out


def test_help_opens_with_the_common_flags_and_ends_with_the_advanced(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    text = capsys.readouterr().out
    common, advanced = text.split("\nadvanced: ")  # the titled group, once, and last
    for title in ("data:", "model:", "training:", "run:"):
        assert f"\n{title}\n" in common, title
    flag = re.compile(r"^  (--[a-z-]+)", re.M)  # a flag's first line, not the usage
    firsts = set(flag.findall(common))
    for name in ("--train-json", "--init", "--out", "--resume", "--max-minutes", "--synth-mix",
                 "--head", "--epochs", "--lr", "--device"):
        assert name in firsts, name
    rare = flag.findall(advanced)
    for name in ("--max-pixels", "--normalize", "--glimpse", "--milestones", "--gamma",
                 "--warmup", "--clip", "--precision", "--workers", "--threads",
                 "--epoch-checkpoints", "--plot", "--preset", "--plan", "--hidden", "--loose",
                 "--aux-ctc", "--dry-run"):
        assert name in rare, name
    every = {a.option_strings[0] for a in flags.build_parser()._actions} - {"-h"}
    assert sorted(firsts | set(rare)) == sorted(every) and not firsts & set(rare)


@pytest.mark.slow
def test_sigkill_leaves_last_checkpoint_intact_and_resumable(tiny_json, tmp_path):
    cmd = [sys.executable, "train.py", "--train-json", tiny_json, *TINY, "--epochs", "1000",
           "--workers", "0", "--out", str(tmp_path), "--plot", str(tmp_path / "copy.png")]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while (not (tmp_path / "last.pt").exists() and time.time() < deadline
               and proc.poll() is None):
            time.sleep(0.05)
        time.sleep(0.7)  # a few more epochs: the kill lands anywhere, a save included
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["epoch"] >= 1 and ckpt["step"] == 3 * ckpt["epoch"]
    done = ckpt["epoch"]
    assert run(tiny_json, tmp_path, "--epochs", str(done + 1), "--workers", "0",
               "--resume", "auto") == 0
    with open(tmp_path / "loss.csv") as f:  # rows past the checkpoint were dropped, none repeated
        steps = [int(line.split(",")[0]) for line in f.readlines()[1:]]
        assert steps == list(range(1, 3 * done + 4))


@pytest.mark.parametrize("workers", ["0", pytest.param("1", marks=pytest.mark.slow)])
def test_corrupt_image_mid_split_names_it_in_one_line(tiny_json, tmp_path, workers):
    # a DataLoader worker re-raises with its whole traceback in the message: the error must be
    # one line naming the image (workers 0 and 1 alike)
    root = tmp_path / "copy"
    shutil.copytree(os.path.dirname(tiny_json), root)
    good = (root / "train" / "9.png").read_bytes()
    (root / "train" / "9.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(SystemExit) as e:
        train.main(["--train-json", str(root / "train.json"), *TINY, "--val-size", "0",
                    "--epochs", "1", "--workers", workers, "--out", str(tmp_path / "run"),
                    "--plot", str(tmp_path / "p.png")])
    message = str(e.value.code)
    assert message.startswith("train.py: error: ") and "\n" not in message, message
    assert message.endswith("9.png: cannot read image (image file is truncated)"), message


def test_bad_numbers_and_device_are_one_line_errors(tiny_json, tmp_path, capsys):
    for flag in (["--epochs", "0"], ["--batch-size", "0"], ["--val-size", "-1"],
                 ["--workers", "-1"], ["--max-pixels", "0"]):
        # --epochs 0 would print "wrote last.pt" and write none
        with pytest.raises(SystemExit) as e:
            train.parse_args(flag)
        assert e.value.code == 2, flag
        # the message names the flag given and its value (--workers -1 named every flag but it)
        assert f"{flag[0]} must be >= " in capsys.readouterr().err, flag
    with pytest.raises(SystemExit) as e:  # not a RuntimeError traceback from torch.device
        run(tiny_json, tmp_path, "--device", "bogus", "--dry-run")
    assert str(e.value.code).startswith("train.py: error: --device bogus: ")


def test_resume_refuses_a_different_model_and_says_when_done(tiny_json, tmp_path, capsys):
    assert run(tiny_json, tmp_path, "--epochs", "1", "--workers", "0") == 0
    # an explicit model flag that disagrees with the checkpoint is refused, never replaced
    with pytest.raises(SystemExit) as e:
        run(tiny_json, tmp_path, "--epochs", "2", "--resume", "auto", "--hidden", "32")
    assert "last.pt: trained with --hidden 16, not 32" in str(e.value.code)
    sizes = TINY[TINY.index("--image-size"):]  # TINY without its --plan and --hidden
    with pytest.raises(SystemExit) as e:  # a preset counts as asked for
        train.main(["--train-json", tiny_json, *sizes, "--out", str(tmp_path), "--epochs", "2",
                    "--resume", "auto", "--preset", "cpu"])
    assert "trained with --plan '8 M 16', not '32 M 64 M 128 M 128'" in str(e.value.code)
    capsys.readouterr()
    # the same flags (spacing aside) resume; a finished run says so instead of listing files it
    # never wrote
    assert run(tiny_json, tmp_path, "--epochs", "1", "--resume", "auto", "--plan", "8  M 16") == 0
    assert "already holds epoch 1 of --epochs 1: nothing to train" in capsys.readouterr().out


def test_ctrl_c_is_one_line_not_a_traceback(tiny_json, tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(train, "train", interrupted)
    with pytest.raises(SystemExit) as e:
        run(tiny_json, tmp_path)
    # it named a --resume auto that had no last.pt to resume from
    assert str(e.value.code) == (f"\ntrain.py: interrupted before the first checkpoint "
                                 f"({tmp_path / 'last.pt'} does not exist): nothing to resume")
    (tmp_path / "last.pt").write_bytes(b"a checkpoint")
    with pytest.raises(SystemExit) as e:
        run(tiny_json, tmp_path)
    assert str(e.value.code) == (f"\ntrain.py: interrupted; continue with --resume auto --out "
                                 f"{tmp_path} (from {tmp_path / 'last.pt'})")


def test_fp16_loss_scale_is_saved_and_resumed(tiny_json, tmp_path, monkeypatch):
    # a CPU GradScaler that doubles its scale every step stands in for CUDA fp16's
    real = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: real(
        "cpu", init_scale=2.0 ** 10, growth_interval=1))
    common = ["--workers", "0", "--milestones", "1"]
    assert run(tiny_json, tmp_path / "straight", *common, "--epochs", "2") == 0
    assert run(tiny_json, tmp_path / "split", *common, "--epochs", "1") == 0
    assert run(tiny_json, tmp_path / "split", *common, "--epochs", "2", "--resume", "auto") == 0
    a, b = (torch.load(tmp_path / d / "last.pt", weights_only=True) for d in ("straight", "split"))
    assert a["scaler"]["scale"] == b["scaler"]["scale"] == 2.0 ** 16  # 6 steps, none skipped


def test_validate_counts_off_the_gpu_and_in_integers(monkeypatch):
    # MPS has no float64; only NCCL needs the counts on the device
    class Images:
        def to(self, *args, **kwargs):
            return self

    class Model:
        def eval(self):
            return self

        def decode(self, images):
            return {"tokens": [[4], [5, 6], [7]]}
    tokens = torch.tensor([[3, 4, 2, 0], [3, 5, 6, 2], [3, 8, 2, 0]])
    made = []
    real_tensor = torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: made.append(k) or real_tensor(*a, **k))
    acc = engine.validate(Model(), [(Images(), tokens, None)], torch.device("mps"),
                          contextlib.nullcontext(), torch.contiguous_format, ddp=False)
    assert acc == 2 / 3 and made
    assert all(k.get("device") == "cpu" and "dtype" not in k for k in made)


def test_cuda_rng_state_is_this_gpus_only(monkeypatch):
    # a checkpoint from a many-GPU node must resume on a machine with one GPU
    calls = []
    monkeypatch.setattr(torch.cuda, "get_rng_state",
                        lambda device: calls.append(("get", device)) or torch.zeros(4))
    monkeypatch.setattr(torch.cuda, "set_rng_state",
                        lambda state, device: calls.append(("set", device)))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all",
                        lambda: pytest.fail("saved every GPU's state"))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all",
                        lambda s: pytest.fail("restored every GPU's state"))
    device = torch.device("cuda", 1)
    states = checkpoint.rng_states(device)
    assert len(states["cuda"]) == 1
    checkpoint.set_rng_states(states, device)
    assert calls == [("get", device), ("set", device)]


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_missing_mps_is_one_line(tiny_json, tmp_path):
    with pytest.raises(SystemExit) as e:  # not a RuntimeError traceback from model.to
        run(tiny_json, tmp_path, "--device", "mps", "--dry-run")
    message = str(e.value.code)
    assert message.startswith("train.py: error: --device mps: ") and "\n" not in message


def test_resume_refuses_to_stretch_a_planned_schedule(tiny_json, tmp_path):
    # onecycle/cosine are laid out for --epochs; resuming with more would crash mid-run
    # (onecycle: "Tried to step ...") or silently reshape the schedule (cosine)
    assert run(tiny_json, tmp_path, "--epochs", "1", "--schedule", "onecycle",
               "--workers", "0") == 0
    with pytest.raises(SystemExit) as e:
        run(tiny_json, tmp_path, "--epochs", "3", "--schedule", "onecycle", "--workers", "0",
            "--resume", "auto")
    message = str(e.value.code)
    assert "onecycle schedule was laid out for --epochs 1" in message and "\n" not in message


def refused_resume(tiny_json, tmp_path, name):
    """train.py --resume tmp_path/name into a new --out must stop with one line; returns it."""
    with pytest.raises(SystemExit) as e:
        run(tiny_json, tmp_path / "b", "--epochs", "2", "--workers", "0",
            "--resume", str(tmp_path / name))
    message = str(e.value.code)
    assert message.startswith("train.py: error: ") and "\n" not in message, message
    return message


def test_resume_from_an_evaluation_only_checkpoint_is_one_line(tiny_json, tmp_path):
    # eval.py accepts format + config + vocab + model; --resume gave KeyError: 'args' on it,
    # and AttributeError on a string 'args'
    assert run(tiny_json, tmp_path / "a", "--epochs", "1", "--workers", "0") == 0
    full = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    weights = {k: full[k] for k in ("format", "config", "vocab", "model")}
    torch.save(weights, tmp_path / "weights.pt")
    torch.save({**full, "args": "--epochs 1"}, tmp_path / "string_args.pt")
    for name, why in [("weights.pt", "'optimizer' must be a dict, it is missing"),
                      ("string_args.pt", "'args' must be a dict, it is a str")]:
        message = refused_resume(tiny_json, tmp_path, name)
        assert f"{name}: cannot resume from it: {why}" in message, message


def test_absurd_box_is_one_line(tiny_json, tmp_path):
    # a JSON box of 1e12 raised PIL's DecompressionBombError as a traceback
    root = tmp_path / "copy"
    shutil.copytree(os.path.dirname(tiny_json), root)
    split = json.loads((root / "train.json").read_text())
    split["records"][5]["boxes"][0] = [0, 0, 1e7, 1e7]
    (root / "train.json").write_text(json.dumps(split))
    with pytest.raises(SystemExit) as e:
        train.main(["--train-json", str(root / "train.json"), *TINY, "--val-size", "0",
                    "--epochs", "1", "--workers", "0", "--out", str(tmp_path / "run"),
                    "--plot", str(tmp_path / "p.png")])
    message = str(e.value.code)
    assert message.startswith("train.py: error: ") and "\n" not in message, message
    assert "6.png: cannot read image (its crop box is" in message, message


def snapshot(folder):
    """{name: bytes} of the files directly in a folder."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_fresh_start_never_overwrites_a_run(tiny_json, tmp_path, capsys):
    # a forgotten --resume auto replaced best.pt with a worse model and cut loss.csv back
    out = tmp_path / "run"
    assert run(tiny_json, out, "--epochs", "1", "--workers", "0") == 0
    before = snapshot(out)
    with pytest.raises(SystemExit) as e:
        run(tiny_json, out, "--epochs", "1", "--workers", "0")
    message = str(e.value.code)
    assert message == (f"train.py: error: --out {out} already holds a run (last.pt, best.pt, "
                       f"loss.csv, val.csv, epoch-001.pt); continue it with --resume auto, or pick "
                       f"a new --out "
                       f"(--overwrite moves the old run aside)")
    assert snapshot(out) == before
    # another run's checkpoint continued here would replace this run just the same
    assert run(tiny_json, tmp_path / "other", "--epochs", "1", "--workers", "0") == 0
    with pytest.raises(SystemExit, match="already holds a run"):
        run(tiny_json, out, "--epochs", "2", "--workers", "0",
            "--resume", str(tmp_path / "other" / "last.pt"))
    assert snapshot(out) == before
    # --overwrite moves the old run aside: nothing is lost
    capsys.readouterr()
    assert run(tiny_json, out, "--epochs", "1", "--workers", "0", "--overwrite") == 0
    aside = [p for p in out.iterdir() if p.is_dir() and p.name.startswith("replaced-")]
    moved = {k: v for k, v in before.items() if k != "copy.png"}  # the --plot copy is not the run's
    assert len(aside) == 1 and snapshot(aside[0]) == moved
    assert f"moved the run that was in {out} to {aside[0]}" in capsys.readouterr().out
    assert (out / "last.pt").exists()


def test_resume_auto_without_last_pt(tiny_json, tmp_path):
    # a run killed in its first epoch left logs and no checkpoint: --resume auto starts it anew;
    # a folder whose last.pt is gone but best.pt is there is still a run
    out = tmp_path / "run"
    out.mkdir()
    (out / "loss.csv").write_text("step,epoch,loss,lr\n1,0.3,2.0,0.0003\n")
    assert run(tiny_json, out, "--epochs", "1", "--workers", "0", "--resume", "auto") == 0
    os.remove(out / "last.pt")
    with pytest.raises(SystemExit) as e:
        run(tiny_json, out, "--epochs", "1", "--workers", "0", "--resume", "auto")
    assert "already holds a run (best.pt, epoch-001.pt); pick a new --out" in str(e.value.code)


def test_best_pt_is_never_replaced_by_a_worse_one(tiny_json, tmp_path):
    out = tmp_path / "run"
    assert run(tiny_json, out, "--epochs", "1", "--workers", "0") == 0
    # best.pt holds a better model than last.pt knows of (here: a metric no epoch can beat)
    best = torch.load(out / "best.pt", weights_only=True)
    torch.save({**best, "best_metric": 2.0}, out / "best.pt")
    last = torch.load(out / "last.pt", weights_only=True)
    torch.save({**last, "best_metric": -1.0}, out / "last.pt")  # any accuracy beats this
    kept = (out / "best.pt").read_bytes()
    assert run(tiny_json, out, "--epochs", "2", "--workers", "0", "--resume", "auto") == 0
    assert (out / "best.pt").read_bytes() == kept
    assert torch.load(out / "last.pt", weights_only=True)["best_metric"] == 2.0


def test_resume_refuses_a_change_of_data(tiny_json, tmp_path, capsys):
    # --val-size 2 on resume trained on held-out images and compared scores of another split
    out = tmp_path / "run"
    assert run(tiny_json, out, "--epochs", "1", "--workers", "0") == 0
    other = tmp_path / "other.json"
    shutil.copy(tiny_json, other)
    for flag, saved, given in [("--val-size", "4", "2"), ("--seed", "0", "3"),
                               ("--train-json", repr([tiny_json]), repr([str(other)]))]:
        value = [str(other)] if flag == "--train-json" else [given]
        with pytest.raises(SystemExit) as e:
            run(tiny_json, out, "--epochs", "2", "--workers", "0", "--resume", "auto", flag, *value)
        message = str(e.value.code)
        assert f"last.pt: trained with {flag} {saved}, not {given}, which changes" in message
    # the JSON rewritten with other records (prepare_data.py run again) is refused too
    split = json.loads(open(tiny_json).read())
    split["records"] = split["records"][:-1]
    (tmp_path / "copy").mkdir()
    shutil.copytree(os.path.join(os.path.dirname(tiny_json), "train"), tmp_path / "copy" / "train")
    (tmp_path / "copy" / "train.json").write_text(json.dumps(split))
    moved = ["--train-json", str(tmp_path / "copy" / "train.json")]
    with pytest.raises(SystemExit) as e:  # (the flag itself is refused first: pass the old one)
        train.main([*moved, *TINY[:-4], "--out", str(out), "--plot", str(out / "copy.png"),
                    "--epochs", "2", "--workers", "0", "--resume", "auto"])
    assert "which changes the data" in str(e.value.code)
    (tmp_path / "copy" / "train.json").rename(tmp_path / "copy" / "t.json")
    os.replace(tiny_json, tiny_json + ".orig")
    try:
        shutil.copy(tmp_path / "copy" / "t.json", tiny_json)
        with pytest.raises(SystemExit) as e:
            run(tiny_json, out, "--epochs", "2", "--workers", "0", "--resume", "auto")
        message = str(e.value.code)
        assert "trained on [16] records of" in message and "now hold [15]" in message
    finally:
        os.replace(tiny_json + ".orig", tiny_json)
    # flags left out are taken from the checkpoint, as model flags are
    assert train.main(["--train-json", tiny_json, *TINY[:-4], "--out", str(out), "--epochs", "2",
                       "--workers", "0", "--resume", "auto", "--plot", str(out / "copy.png")]) == 0
    assert torch.load(out / "last.pt", weights_only=True)["args"]["val_size"] == 4


def test_outputs_checked_before_training_and_stale_temps_removed(tiny_json, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for out, plot, flag in [(tmp_path / "r1", blocker / "loss.png", "--plot"),
                            (tmp_path / "r2", tmp_path, "--plot"),
                            (blocker / "run", tmp_path / "p.png", "--out")]:
        with pytest.raises(SystemExit) as e:
            train.main(["--train-json", tiny_json, *TINY, "--epochs", "1", "--workers", "0",
                        "--out", str(out), "--plot", str(plot)])
        message = str(e.value.code)
        assert message.startswith(f"train.py: error: {flag} ") and "\n" not in message, message
        assert not os.path.exists(out / "last.pt")  # found before the first epoch, not after it
    with pytest.raises(SystemExit, match=f"--out {blocker}: exists and is not a folder"):
        train.main(["--train-json", tiny_json, *TINY, "--out", str(blocker)])
    # a kill during a save leaves NAME.tmp: the next start removes it
    out = tmp_path / "run"
    assert run(tiny_json, out, "--epochs", "1", "--workers", "0") == 0
    for name in ("last.pt.tmp", "best.pt.tmp", "loss.csv.tmp", "epoch-001.pt.tmp", "copy.png.tmp"):
        (out / name).write_bytes(b"half a file")
    (out / "notes.tmp").write_text("the user's own: kept")
    assert run(tiny_json, out, "--epochs", "2", "--workers", "0", "--resume", "auto") == 0
    assert [p.name for p in out.glob("*.tmp")] == ["notes.tmp"]


def torchrun(tiny_json, nodes, *extra):
    """train.py in two gloo processes, rank r in folder nodes[r] with --out run (node-local)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for node in nodes:
        os.makedirs(node, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(port),
           os.path.join(REPO, "tests", "ddp_node.py"), *map(str, nodes), "--",
           "--train-json", tiny_json, *TINY, "--workers", "0", "--device", "cpu", "--out", "run",
           *extra]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return [torch.load(os.path.join(node, "rank.pt"), weights_only=True) for node in nodes]


@pytest.mark.slow
def test_torchrun_resume_on_node_local_disks_and_shared_batchnorm(tiny_json, tmp_path):
    # --out on node-local disks: only rank 0's node holds last.pt. --resume auto was decided per
    # rank: rank 1 started afresh, the ranks ran different numbers of steps and hung
    common = ["--milestones", "1", "--lr", "3e-3"]
    straight = [tmp_path / "a0", tmp_path / "a1"]
    split = [tmp_path / "b0", tmp_path / "b1"]
    ranks = torchrun(tiny_json, straight, *common, "--epochs", "2")
    torchrun(tiny_json, split, *common, "--epochs", "1")
    assert not os.path.exists(split[1] / "run")  # rank 1 wrote nothing: its node has no run
    # one process x 4 images would take 3 steps an epoch, not 2: the lr schedule would drop at
    # epoch 1.33 instead of 1 (and onecycle would crash later); refused, nothing touched
    with pytest.raises(SystemExit) as e:
        run(tiny_json, split[0] / "run", *common, "--epochs", "2", "--resume", "auto",
            "--workers", "0")
    message = str(e.value.code)
    assert "2 process(es) x --batch-size 4 took 2 steps an epoch, 1 x 4 would take 3" in message
    assert "\n" not in message and not os.path.exists(split[0] / "run" / "copy.png")
    torchrun(tiny_json, split, *common, "--epochs", "2", "--resume", "auto")
    a = torch.load(straight[0] / "run" / "last.pt", weights_only=True)
    b = torch.load(split[0] / "run" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"] == 4  # 12 images / 2 ranks / 4
    assert not any(k.startswith("module.") for k in a["model"])
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    # every rank validated with the BatchNorm statistics rank 0 saved (they differed by 0.04)
    for epoch in range(2):
        for name, value in ranks[0]["buffers"][epoch].items():
            assert torch.equal(value, ranks[1]["buffers"][epoch][name]), (epoch, name)
    assert all(torch.equal(v, a["model"][k]) for k, v in ranks[0]["buffers"][1].items())
    # the logged training loss is the mean over the ranks, not rank 0's shard
    with open(straight[0] / "run" / "loss.csv") as f:
        logged = [float(line.split(",")[2]) for line in f.readlines()[1:]]
    mean = [(x + y) / 2 for x, y in zip(ranks[0]["losses"], ranks[1]["losses"])]
    assert logged == pytest.approx(mean, abs=2e-6) and ranks[0]["losses"] != ranks[1]["losses"]


def test_resume_keeps_the_steps_per_epoch(tiny_json, tmp_path):
    # the scheduler counts steps: another --batch-size that changes the steps of an epoch is
    # refused; one that keeps them (another number of processes with as many images per step) is not
    assert run(tiny_json, tmp_path, "--epochs", "1", "--workers", "0", "--batch-size", "8") == 0
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["steps_per_epoch"] == 2 and ckpt["world"] == 1
    with pytest.raises(SystemExit) as e:
        run(tiny_json, tmp_path, "--epochs", "2", "--workers", "0", "--resume", "auto")
    message = str(e.value.code)
    assert "1 process(es) x --batch-size 8 took 2 steps an epoch, 1 x 4 would take 3" in message
    assert "\n" not in message
    # (no --milestones 2 here: the restored scheduler state would ignore it, so it is refused)
    assert run(tiny_json, tmp_path, "--epochs", "3", "--workers", "0",
               "--resume", "auto", "--batch-size", "7") == 0  # 12 images: still 2 steps
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["step"] == 6
    with open(tmp_path / "loss.csv") as f:  # the epoch column counts on: it ran backwards
        epochs = [float(line.split(",")[1]) for line in f.readlines()[1:]]
    assert epochs == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]


def test_no_copy_of_the_curve_unless_asked(tiny_json, tmp_path, monkeypatch):
    # --plot defaulted to img/loss.png, a figure the repository tracks: any run dirtied the clone
    monkeypatch.chdir(tmp_path)
    assert train.main(["--train-json", tiny_json, *TINY, "--epochs", "1", "--workers", "0",
                       "--out", "run"]) == 0
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_loader_workers_share_the_cores_this_process_may_use(monkeypatch):
    # were min(8, cpu_count) per process: 8 GPUs x 8 workers (x2 with validation's) on a node,
    # whatever cores taskset or Slurm granted
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(12)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 96)
    gpu = torch.device("cuda", 0)
    assert train.default_workers(gpu, 1, 0) == 8
    assert train.default_workers(gpu, 4, 0) == 3
    assert train.default_workers(gpu, 16, 0) == 1
    assert train.default_workers(torch.device("cpu"), 1, 0) == 0  # the thread rule's choice
    assert train.default_workers(torch.device("cpu"), 1, 1) == 1


def test_one_gpu_index_for_every_rank_is_one_line(tiny_json, tmp_path, monkeypatch):
    # torchrun with --device cuda:1 put every process of the node on GPU 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(SystemExit) as e:
        run(tiny_json, tmp_path, "--device", "cuda:1", "--dry-run")
    message = str(e.value.code)
    assert message.startswith("train.py: error: --device cuda:1: under torchrun all 2 processes")
    assert "CUDA_VISIBLE_DEVICES" in message and "\n" not in message


@pytest.mark.slow
def test_default_recipe_epochs_lr_and_epoch_checkpoints(tiny_json, tmp_path, capsys):
    # no recipe flag at all: only the model's size (tiny) and the data
    out = tmp_path / "run"
    sizes = ["--plan", "8 M 16", "--hidden", "16", "--image-size", "32", "--crop-size", "28",
             "--batch-size", "4", "--threads", "1", "--workers", "0"]
    assert train.main(["--train-json", tiny_json, *sizes, "--out", str(out)]) == 0
    assert "16 training images, 0 validation" in capsys.readouterr().out  # nothing held out
    with open(out / "loss.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16 * 4  # 16 epochs of 16 images in batches of 4
    for row in rows:
        epoch = math.ceil(float(row["epoch"]) - 1e-9)  # 0.25 .. 1.0 is epoch 1
        expected = 3e-4 if epoch <= 10 else 3e-5  # x0.1 after the 10th epoch
        assert float(row["lr"]) == pytest.approx(expected, rel=1e-5), (row, epoch)
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["epoch"] == 16 and last["step"] == 64
    assert last["config"]["glimpse"] is True and last["config"]["normalize"] is False
    assert last["args"]["precision"] == "fp32" and last["scaler"] == {}  # no loss scaling
    assert not (out / "best.pt").exists()  # no validation, so no best
    names = sorted(p.name for p in out.glob("epoch-*.pt"))
    assert names == [f"epoch-{e:03d}.pt" for e in range(1, 17)]
    for e in (1, 10, 16):
        weights = torch.load(out / f"epoch-{e:03d}.pt", weights_only=True)
        assert weights["epoch"] == e and "optimizer" not in weights
        model, _ = checkpoint.load_checkpoint(str(out / f"epoch-{e:03d}.pt"))
    for name, tensor in last["model"].items():  # the last epoch's file is last.pt's weights
        assert torch.equal(model.state_dict()[name], tensor), name


def test_precision_flag(tiny_json, tmp_path, capsys):
    for precision in ("bf16", "fp16"):  # autocast on the CPU too; a loss scaler only on CUDA
        assert run(tiny_json, tmp_path, "--epochs", "1", "--workers", "0", "--dry-run",
                   "--precision", precision) == 0
        assert "dry run ok" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        train.parse_args(["--amp"])  # replaced by --precision: fp32 unless asked
    assert e.value.code == 2


def test_bf16_on_an_emulating_gpu_is_noted(tiny_json, tmp_path, monkeypatch, capsys):
    # --precision bf16 on a T4 (sm75) runs, emulated: say so (devices' test covers the check)
    asked = []
    monkeypatch.setattr(train.devices, "emulated_bf16_note",
                        lambda device, precision: asked.append(precision) or "note: emulated")
    assert run(tiny_json, tmp_path, "--precision", "bf16", "--workers", "0", "--dry-run") == 0
    assert asked == ["bf16"] and "train.py: note: emulated" in capsys.readouterr().out


@pytest.mark.parametrize("flag, value, why", [
    ("--clip", "-1", "--clip must be a finite number > 0, got -1.0"),
    ("--clip", "nan", "--clip must be a finite number > 0, got nan"),
    ("--gamma", "nan", "--gamma must be a finite number > 0"),
    ("--lr", "inf", "--lr must be a finite number >= 0"),
    ("--weight-decay", "-0.1", "--weight-decay must be a finite number >= 0"),
    ("--warmup", "5", "--warmup must be a finite number in [0, 1), got 5.0"),
    ("--milestones", "-3", "--milestones must be epochs >= 1, got [-3]"),
    ("--elastic", "-0.01", "--elastic must be a finite number in [0, 0.2] (input heights)"),
    ("--elastic", "nan", "--elastic must be a finite number in [0, 0.2]")])
def test_nonsense_optimiser_flags_are_refused(capsys, flag, value, why):
    # these trained silently: --clip -1 scaled every gradient by a negative factor (ascent)
    with pytest.raises(SystemExit) as e:
        train.parse_args([flag, value])
    assert e.value.code == 2 and why in capsys.readouterr().err


def test_resume_with_state_or_vocabulary_that_does_not_fit(tiny_json, tmp_path):
    # a malformed rng state must be a one-line error, not a TypeError traceback; a vocabulary
    # lacking the data's digits would train every one of them as <unk>
    assert run(tiny_json, tmp_path / "a", "--epochs", "1", "--workers", "0") == 0
    full = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    vocab = full["vocab"][:4] + list("abcdefghijklmnop")[:len(full["vocab"]) - 4]
    torch.save({**full, "rng": {"torch": 5}}, tmp_path / "rng.pt")
    numpy_list = ["MT19937", [1, 2, 3], 0, 0, 0.0]  # a list where a tensor belongs
    torch.save({**full, "rng": {**full["rng"], "numpy": numpy_list}}, tmp_path / "np.pt")
    torch.save({**full, "optimizer": {"state": {}, "param_groups": []}}, tmp_path / "opt.pt")
    torch.save({**full, "vocab": vocab}, tmp_path / "letters.pt")
    for name, why in [("rng.pt", "rng.pt: cannot restore its training state (malformed RNG state"),
                      ("np.pt", "np.pt: cannot restore its training state (malformed RNG "
                                "state (AttributeError"),
                      ("opt.pt", "opt.pt: cannot restore its training state (loaded state dict"),
                      ("letters.pt", "are not in the checkpoint's vocabulary; start a new --out")]:
        message = refused_resume(tiny_json, tmp_path, name)
        assert why in message, message


def one_line_exit(*argv):
    """train.main(argv) must stop with one line "train.py: error: ..."; returns it."""
    with pytest.raises(SystemExit) as e:
        train.main([str(a) for a in argv])
    message = str(e.value.code)
    assert message.startswith("train.py: error: ") and "\n" not in message, message
    return message


def test_plot_never_replaces_a_file_that_is_not_a_figure_of_ours(tiny_json, tmp_path):
    # --plot replaced whatever it named: another run's last.pt, the training JSON, a photo
    other = tmp_path / "other"
    assert run(tiny_json, other, "--epochs", "1", "--workers", "0") == 0
    photo = tmp_path / "photo.png"
    Image.new("RGB", (5, 5), (200, 10, 10)).save(photo)
    common = ["--train-json", tiny_json, *TINY, "--epochs", "1", "--workers", "0"]
    for plot in (other / "last.pt", photo, tiny_json):
        kept = open(plot, "rb").read()
        message = one_line_exit(*common, "--out", tmp_path / "new", "--plot", plot)
        if plot == tiny_json:  # one of the run's inputs: not even with --overwrite
            assert f"--plot {plot}: is also an input of this run" in message
        else:
            assert f"--plot {plot}: exists and is not a figure this repository drew" in message
            assert "--overwrite" in message
        assert open(plot, "rb").read() == kept
    # nor one of the run's own files (it would write a PNG over its loss log)
    message = one_line_exit(*common, "--out", tmp_path / "new", "--plot",
                            tmp_path / "new" / "loss.csv")
    assert "is one of the run's own files" in message
    # a figure of ours is replaced (the copy from an earlier run); --overwrite replaces anything
    assert train.main([*common, "--out", str(tmp_path / "third"),
                       "--plot", str(other / "copy.png")]) == 0
    assert train.main([*common, "--out", str(tmp_path / "fourth"), "--plot", str(photo),
                       "--overwrite"]) == 0
    assert Image.open(photo).size != (5, 5)


def test_a_users_tmp_file_beside_an_output_is_kept(tiny_json, tmp_path):
    # a user's own <path>.tmp beside an output is never the write probe (created, deleted)
    figs = tmp_path / "figs"
    figs.mkdir()
    (figs / "curve.png.tmp").write_text("the user's notes")
    out = tmp_path / "run"
    out.mkdir()
    assert train.main(["--train-json", tiny_json, *TINY, "--epochs", "1", "--workers", "0",
                       "--out", str(out), "--plot", str(figs / "curve.png")]) == 0
    assert (figs / "curve.png.tmp").read_text() == "the user's notes"
    assert sorted(p.name for p in figs.iterdir()) == ["curve.png", "curve.png.tmp"]


def test_an_out_holding_only_a_users_loss_png_is_not_overwritten(tiny_json, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    Image.new("RGB", (7, 7), (1, 2, 3)).save(out / "loss.png")
    kept = (out / "loss.png").read_bytes()
    message = one_line_exit("--train-json", tiny_json, *TINY, "--epochs", "1", "--workers", "0",
                            "--out", out)
    assert f"--out {out} holds loss.png, which no train.py drew" in message
    assert (out / "loss.png").read_bytes() == kept and not (out / "last.pt").exists()
    assert run(tiny_json, out, "--epochs", "1", "--workers", "0", "--overwrite") == 0
    aside = [p for p in out.iterdir() if p.name.startswith("replaced-")]
    assert (aside[0] / "loss.png").read_bytes() == kept


def test_overwrite_moves_the_old_runs_reports_aside(tiny_json, tmp_path):
    # eval.py's reports beside the old checkpoints go with them: they describe the old model
    out = tmp_path / "run"
    assert run(tiny_json, out, "--epochs", "1", "--workers", "0") == 0
    for name in ("eval_test.json", "eval_test_coverage.png", "eval_test_mistakes.png"):
        (out / name).write_text("old run's report")
    (out / "notes.txt").write_text("the user's: stays")
    assert run(tiny_json, out, "--epochs", "1", "--workers", "0", "--overwrite") == 0
    aside = [p for p in out.iterdir() if p.name.startswith("replaced-")][0]
    assert sorted(p.name for p in aside.iterdir()) == [
        "best.pt", "epoch-001.pt", "eval_test.json", "eval_test_coverage.png",
        "eval_test_mistakes.png", "last.pt", "loss.csv", "loss.png", "val.csv"]
    assert not list(out.glob("eval_*")) and (out / "notes.txt").exists()


def test_a_second_training_on_the_same_out_is_refused(tiny_json, tmp_path):
    # two train.py --resume auto on one --out both wrote last.pt, loss.csv and val.csv
    import fcntl
    out = tmp_path / "run"
    assert run(tiny_json, out, "--epochs", "1", "--workers", "0") == 0
    before = snapshot(out)
    fd = os.open(out, os.O_RDONLY)  # what the first train.py holds while it trains
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        message = one_line_exit("--train-json", tiny_json, *TINY, "--epochs", "2", "--workers",
                                "0", "--out", out, "--resume", "auto")
        assert f"--out {out}: another train.py is training in this folder now" in message
        assert snapshot(out) == before
    finally:
        os.close(fd)  # the kernel drops the lock with the process: none goes stale
    assert run(tiny_json, out, "--epochs", "2", "--workers", "0", "--resume", "auto") == 0


def test_resume_keeps_the_recipe_its_state_carries(tiny_json, tmp_path):
    # the checkpoint records the recipe the restored optimizer runs: not --resume --lr 1e-2
    # while the optimizer keeps 2e-3, nor the default 3e-4 on a resume without the flag
    out = tmp_path / "run"
    assert run(tiny_json, out, "--epochs", "1", "--workers", "0", "--lr", "2e-3",
               "--milestones", "5") == 0
    for flag, value in [("--lr", "1e-2"), ("--milestones", "3"), ("--weight-decay", "0.1")]:
        message = one_line_exit("--train-json", tiny_json, *TINY, "--epochs", "2", "--workers",
                                "0", "--out", out, "--resume", "auto", flag, value)
        assert f"last.pt: trained with {flag} " in message and "resume as saved" in message
    assert run(tiny_json, out, "--epochs", "2", "--workers", "0", "--resume", "auto",
               "--lr", "2e-3") == 0
    assert run(tiny_json, out, "--epochs", "3", "--workers", "0", "--resume", "auto") == 0
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["args"]["lr"] == 2e-3 and ckpt["args"]["milestones"] == [5]
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2e-3)


def test_disk_full_while_saving_a_checkpoint(tiny_json, tmp_path, monkeypatch):
    # ENOSPC's own message, "[Errno 28] No space left on device", names no file: ours does
    out = tmp_path / "run"
    assert run(tiny_json, out, "--epochs", "1", "--workers", "0") == 0
    kept = (out / "last.pt").read_bytes()
    save = torch.save

    def full(obj, f, *args, **kwargs):  # the disk fills up while last.pt is written
        if os.path.basename(getattr(f, "name", "")).startswith("last.pt."):
            f.write(b"the first bytes")
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(obj, f, *args, **kwargs)
    monkeypatch.setattr(torch, "save", full)
    message = one_line_exit("--train-json", tiny_json, *TINY, "--epochs", "2", "--workers", "0",
                            "--out", out, "--plot", out / "copy.png", "--resume", "auto")
    assert message == (f"train.py: error: {out / 'last.pt'}: cannot save the checkpoint (No "
                       f"space left on device); the previous file is intact")
    assert (out / "last.pt").read_bytes() == kept and not list(out.glob("*.tmp"))


def test_end_of_run_names_only_files_that_exist(tiny_json, tmp_path, capsys):
    # a resumed run listed epoch-001.pt .. epoch-002.pt when the first part kept no epoch files
    out = tmp_path / "run"
    assert run(tiny_json, out, "--epochs", "1", "--workers", "0", "--no-epoch-checkpoints") == 0
    capsys.readouterr()
    assert run(tiny_json, out, "--epochs", "2", "--workers", "0", "--resume", "auto") == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("wrote ") and f"{out / 'epoch-002.pt'}, " in last
    assert "epoch-001.pt" not in last
    for path in last.removeprefix("wrote ").replace(" and ", ", ").split(", "):
        assert os.path.exists(path.split(" .. ")[0]), path


def test_a_seed_beyond_int64_arithmetic_is_an_argparse_error(capsys):
    # --seed 10^20 parsed, then torch.manual_seed said "Overflow when unpacking long long"
    for value in ("100000000000000000000", "-1", "1e20"):
        with pytest.raises(SystemExit) as e:
            train.parse_args(["--seed", value])
        assert e.value.code == 2 and "--seed" in capsys.readouterr().err
