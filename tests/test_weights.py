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
