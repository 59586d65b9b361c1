"""The shipped general text reader, weights/reader.pt: loads with weights_only, says where it came
from, is small, knows the text generator's whole default alphabet, and reads freshly drawn lines
of the held-out typefaces and styles at about the accuracy its provenance states."""
import math
import os

import torch

import eval as ev
import synthetic_text
from support import checkpoint
from synth.text import parse_alphabet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = os.path.join(REPO, "weights", "reader.pt")
SAMPLE = 120  # test_ood lines drawn here: the first SAMPLE of the 2,000 it was measured on


def test_loads_with_weights_only_and_holds_its_provenance():
    assert os.path.getsize(WEIGHTS) <= 10 * 1024 * 1024
    raw = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert "optimizer" not in raw
    provenance = raw["provenance"]
    for key in ("command", "data", "wall_time", "machine"):
        assert isinstance(provenance[key], str) and provenance[key]
    assert "--init weights/replica.pt" in provenance["command"]
    assert provenance["figures"]["test_ood"]["images"] == 2000
    model, ckpt = checkpoint.load_checkpoint(WEIGHTS)
    assert set(parse_alphabet("DEFAULT")) <= set(ckpt["vocab"])
    height, width = model.config["crop_size"]
    assert height == 32 and width > 2 * height  # a wide input, a small height


def test_reads_held_out_lines_at_its_stated_accuracy(tmp_path):
    # the generator is a pure function of (seed, split, index): these are the first SAMPLE lines
    # of the test_ood split the provenance was measured on (held-out faces and styles)
    out = str(tmp_path / "text")
    assert synthetic_text.main(["--out", out, "--train", "0", "--val", "0", "--test-ood",
                                str(SAMPLE), "--workers", "1"]) in (0, None)
    report = ev.run(ev.parse_args(["--checkpoint", WEIGHTS, "--json",
                                   os.path.join(out, "test_ood.json"), "--workers", "0",
                                   "--threads", "1", "--report", str(tmp_path / "r.json")]))
    stated = torch.load(WEIGHTS, weights_only=True)["provenance"]["figures"]["test_ood"]
    p = stated["sequence_accuracy"]
    se = math.sqrt(p * (1 - p) / SAMPLE)
    # four standard errors below the stated figure (a chance reader reads none of these)
    assert report["sequence_accuracy"] >= p - 4 * max(se, 0.01), (report["sequence_accuracy"], p)
    assert report["sequence_accuracy"] > 0.05
