"""The shipped model, weights/replica.pt: loads with weights_only, says where it came from, is
small, and reads freshly drawn replica test images at about the accuracy its provenance states."""
import math
import os

import pytest
import torch

from support import checkpoint
import eval as ev
import prepare_data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = os.path.join(REPO, "weights", "replica.pt")
SAMPLE = 150  # replica test images drawn here (the first SAMPLE of the 2,000 it was measured on)


def test_loads_with_weights_only_and_holds_its_provenance():
    assert os.path.getsize(WEIGHTS) <= 10 * 1024 * 1024
    raw = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert "optimizer" not in raw  # weights only: nothing a user would resume
    provenance = raw["provenance"]
    for key in ("command", "data", "wall_time", "machine"):
        assert isinstance(provenance[key], str) and provenance[key]
    assert "train.py" in provenance["command"]
    figures = provenance["figures"]
    assert figures["test"]["images"] == figures["test_ood"]["images"] == 2000
    model, ckpt = checkpoint.load_checkpoint(WEIGHTS)
    assert ckpt["vocab"][:4] == ["<pad>", "<unk>", "</s>", "<s>"]
    assert sorted(ckpt["vocab"][4:]) == list("0123456789")


def test_reads_the_replicas_test_images_at_its_stated_accuracy(tmp_path):
    # the replica is a pure function of (seed, split, index): these are the first SAMPLE images
    # of the test split the provenance was measured on
    root = str(tmp_path / "synth")
    assert prepare_data.main(["--synthetic", "--root", root, "--splits", "test",
                              "--synthetic-sizes", f"test={SAMPLE}", "--workers", "1"]) == 0
    report = ev.run(ev.parse_args(["--checkpoint", WEIGHTS, "--json",
                                   os.path.join(root, "test.json"), "--workers", "0",
                                   "--threads", "1", "--report", str(tmp_path / "r.json")]))
    stated = torch.load(WEIGHTS, weights_only=True)["provenance"]["figures"]["test"]
    p = stated["sequence_accuracy"]
    se = math.sqrt(p * (1 - p) / SAMPLE)
    # four standard errors below the stated figure (and the binomial SE is not below 1 point)
    assert report["sequence_accuracy"] >= p - 4 * max(se, 0.01), (report["sequence_accuracy"], p)


@pytest.mark.parametrize("script", ["eval.py", "play.py", "predict.py", "export.py"])
def test_every_script_defaults_or_takes_it(script):
    import subprocess
    import sys
    run = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True,
                         text=True)
    assert run.returncode == 0 and "--checkpoint" in run.stdout


def test_average_weights_is_the_mean_of_floats_and_keeps_the_first_counters(tmp_path, capsys):
    from bench import average_weights
    _, shipped = checkpoint.load_checkpoint(WEIGHTS)
    shifted = {**shipped, "model": {k: v + 2 if v.is_floating_point() else v + 5
                                    for k, v in shipped["model"].items()}}
    paths = [str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]
    checkpoint.save_checkpoint(shipped, paths[0])
    checkpoint.save_checkpoint(shifted, paths[1])
    out = str(tmp_path / "soup.pt")
    average_weights.main([*paths, "--out", out])
    soup = torch.load(out, map_location="cpu", weights_only=True)
    assert "optimizer" not in soup and soup["vocab"] == shipped["vocab"]
    for key, value in shipped["model"].items():
        if value.is_floating_point():  # (x + (x + 2)) / 2
            assert torch.allclose(soup["model"][key], value + 1, atol=1e-5), key
        else:  # BatchNorm's batch counters: the first checkpoint's
            assert torch.equal(soup["model"][key], value), key
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        average_weights.main([*paths, "--out", out])
    checkpoint.save_checkpoint({**shifted, "vocab": shipped["vocab"][:-1] + ["A"]}, paths[1])
    with pytest.raises(SystemExit, match=r"b\.pt: its vocab differs"):
        average_weights.main([*paths, "--out", str(tmp_path / "other.pt")])
