"""eval.py: metrics on hand-made predictions, batched == one-at-a-time, beam 1 == greedy, bad input."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import eval as ev
from build_model import CHECKPOINT_FORMAT, build_model

TINY = {"plan": "8 M 16 M", "hidden": 16, "max_len": 5}
VOCAB = ["<pad>", "<unk>", "</s>", "<s>"] + list("1234567890")


def make_checkpoint(path, config=TINY, seed=0):
    """A checkpoint in train.py's format around a random tiny model."""
    torch.manual_seed(seed)
    model = build_model(config)
    torch.save({"format": CHECKPOINT_FORMAT, "config": model.config, "vocab": VOCAB,
                "model": model.state_dict(), "optimizer": {}, "scheduler": {}, "epoch": 0,
                "step": 0, "rng": {}, "best_metric": 0.0, "args": {}}, path)
    return str(path)


def make_split(root, n=6, seed=0):
    """n small house-number-like PNGs and their split JSON (prepare_data.py's format)."""
    rng = np.random.default_rng(seed)
    os.makedirs(root / "imgs", exist_ok=True)
    records = []
    for i in range(n):
        k = int(rng.integers(1, 4))
        w, h = 30 + 14 * k, 40
        img = Image.fromarray(rng.integers(0, 120, (h, w, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(img)
        digits, boxes = [], []
        for j in range(k):
            d = int(rng.integers(0, 10))
            left, top = 12 + 14 * j, 8
            draw.text((left + 2, top + 6), str(d), fill=(255, 255, 255))
            digits.append(d)
            boxes.append([left, top, 12, 24])
        img.save(root / "imgs" / f"{i + 1}.png")
        records.append({"name": f"{i + 1}.png", "digits": digits, "boxes": boxes})
    path = root / "test.json"
    path.write_text(json.dumps({"split": "test", "image_dir": "imgs", "num_entries": n,
                                "num_missing_images": 0, "records": records}))
    return str(path)


# -----------------------------------------------------------------------------
# metrics

def test_sequence_and_digit_accuracy():
    truths = [[1, 9], [2, 3], [2, 5], [7], [1, 2, 3]]
    preds = [[1, 9], [2], [2, 5, 5], [8], [1, 2, 4]]
    assert ev.sequence_accuracy(preds, truths) == pytest.approx(1 / 5)
    # right digits: 2 + 1 (missing one wrong) + 2 (extra ignored) + 0 + 2 = 7 of 10
    assert ev.digit_accuracy(preds, truths) == pytest.approx(7 / 10)
    table = ev.accuracy_by_length(preds, truths)
    assert table["1"] == {"accuracy": 0.0, "count": 1}
    assert table["2"] == {"accuracy": pytest.approx(1 / 3), "count": 3}
    assert table["3"] == {"accuracy": 0.0, "count": 1}
    assert table["4"] == {"accuracy": None, "count": 0}


def test_coverage_known_answer():
    # 100 images ranked by confidence; mistakes at ranks 10, 60, 61, 70 (1-based). Accuracy of
    # the top k: 9/10 = 0.90 at k = 10 (below 98%), recovers to 58/59 = 0.983 at k = 59, then
    # never reaches 98% again (96/100 at the end). So the answer is 59 images: 0.59.
    correct = np.ones(100, dtype=bool)
    correct[[9, 59, 60, 69]] = False
    confidence = np.linspace(1.0, 0.01, 100)
    order = np.random.default_rng(0).permutation(100)  # input order must not matter
    assert ev.coverage_at(correct[order], confidence[order]) == pytest.approx(0.59)
    coverage, accuracy = ev.coverage_curve(correct, confidence)
    assert len(coverage) == 100 and accuracy[9] == pytest.approx(0.9)
    assert accuracy[-1] == pytest.approx(0.96)


def test_coverage_edges_and_ties():
    conf = np.linspace(1, 0, 20)
    assert ev.coverage_at(np.ones(20, bool), conf) == 1.0
    assert ev.coverage_at(np.zeros(20, bool), conf) == 0.0
    assert ev.coverage_at([], []) == 0.0
    # one wrong answer tied with the most confident right one: no threshold separates them,
    # so the first answerable share holds both (1 of 2 right) -> accuracy never reaches 98%
    # before the other 48 right ones lift it: 49/50 = 0.98 exactly at full coverage.
    correct = np.array([True, False] + [True] * 48)
    confidence = np.array([1.0, 1.0] + list(np.linspace(0.9, 0.1, 48)))
    assert ev.coverage_at(correct, confidence) == 1.0
    coverage, accuracy = ev.coverage_curve(correct, confidence)
    assert coverage[0] == pytest.approx(2 / 50) and accuracy[0] == pytest.approx(0.5)


def test_attention_peaks_and_hits():
    # 2x3 feature map over a 54x54 input: cell (r, c) centre = ((c+.5)*18, (r+.5)*27)
    attention = torch.zeros(2, 3, 6)
    attention[0, 0, 0] = 1  # (0, 0) -> (9, 13.5)
    attention[0, 1, 5] = 1  # (1, 2) -> (45, 40.5)
    attention[0, 2, 1] = 1  # step beyond both lengths: not counted
    attention[1, 0, 4] = 1  # (1, 1) -> (27, 40.5)
    peaks = ev.attention_peaks(attention, (2, 3), 54)
    assert peaks[0, 0].tolist() == [9.0, 13.5] and peaks[0, 1].tolist() == [45.0, 40.5]
    boxes = [torch.tensor([[0, 0, 20, 20], [0, 0, 20, 20], [0, 0, 54, 54]]),  # hit, miss
             torch.tensor([[20, 30, 30, 50]])]  # hit
    hits, steps = ev.attention_hits(peaks, [2, 3], boxes)
    assert (hits, steps) == (2, 3)
    assert ev.attention_hits(peaks[:, :1], [2, 3], boxes) == (2, 2)  # fewer steps than boxes


def test_fold_batchnorm_is_exact():
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    for m in model.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    x = torch.randn(3, 3, 54, 54)
    ref = model.decode(x)
    fast = ev.prepare_model(model, "cpu").decode(x.contiguous(memory_format=torch.channels_last))
    assert ref["tokens"] == fast["tokens"]
    assert torch.allclose(ref["logprob"], fast["logprob"], atol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_loss_shortcut_equals_teacher_forcing():
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    images = torch.randn(4, 3, 54, 54)
    out, features = ev.decode_batch(model, images)
    assert out["tokens"] == model.decode(images)["tokens"]
    # rows 0 and 2 are labelled with the model's own prediction, rows 1 and 3 with other digits
    truth = [out["tokens"][0], [5, 6, 7], out["tokens"][2], [9]]
    rows = [[3] + t + [2] for t in truth]
    tokens = torch.nn.utils.rnn.pad_sequence([torch.tensor(r) for r in rows], batch_first=True)
    total, count = ev.sequence_loss(model, features, tokens, out["tokens"], truth, out["logprob"], 0)
    _, loss = model(images, tokens)
    assert count == sum(len(r) - 1 for r in rows)
    assert total / count == pytest.approx(loss.item(), rel=1e-4)


# -----------------------------------------------------------------------------
# the script

def run_eval(tmp_path, ckpt, split, *extra):
    return ev.main(["--checkpoint", ckpt, "--json", split, "--workers", "0", "--device", "cpu",
                    "--report", str(tmp_path / "r.json"), *extra])


def test_batched_equals_single_and_beam1(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt")
    split = make_split(tmp_path, n=6)
    batched = run_eval(tmp_path, ckpt, split, "--batch-size", "4")
    assert os.path.exists(tmp_path / "eval_test_coverage.png")
    assert os.path.exists(tmp_path / "eval_test_mistakes.png")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["num_images"] == 6 and 0 <= report["sequence_accuracy"] <= 1
    assert np.isfinite(report["loss"])
    single = run_eval(tmp_path, ckpt, split, "--batch-size", "1")
    beam = run_eval(tmp_path, ckpt, split, "--batch-size", "3", "--beam", "1")
    keys = ["sequence_accuracy", "digit_accuracy", "accuracy_by_length", "coverage_at_98",
            "attention_localisation", "attention_steps"]
    for other in (single, beam):
        assert {k: other[k] for k in keys} == {k: batched[k] for k in keys}
        assert other["loss"] == pytest.approx(batched["loss"], rel=1e-4)
        assert [m["prediction"] for m in other["worst_mistakes"]] == \
               [m["prediction"] for m in batched["worst_mistakes"]]


def test_batched_decode_equals_single_greedy_and_beam(tmp_path):
    torch.manual_seed(1)
    model = ev.prepare_model(build_model(TINY), "cpu")
    x = torch.randn(5, 3, 54, 54)
    for decode in (model.decode, lambda im: model.beam_search(im, beam=3)):
        batch = decode(x)
        for i in range(5):
            one = decode(x[i:i + 1])
            assert one["tokens"][0] == batch["tokens"][i]
            assert one["logprob"][0].item() == pytest.approx(batch["logprob"][i].item(), abs=1e-4)


def test_limit_and_beam(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt")
    split = make_split(tmp_path, n=6)
    report = run_eval(tmp_path, ckpt, split, "--limit", "2", "--beam", "3")
    assert report["num_images"] == 2 and report["beam"] == 3


def test_bf16_precision_runs_and_is_recorded(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt")
    split = make_split(tmp_path, n=4)
    fp32 = run_eval(tmp_path, ckpt, split, "--precision", "fp32")
    bf16 = run_eval(tmp_path, ckpt, split, "--precision", "bf16")
    assert fp32["precision"] == "fp32" and bf16["precision"] == "bf16"
    auto = run_eval(tmp_path, ckpt, split, "--precision", "auto")  # the dtype used, not "auto"
    assert auto["precision"] == "fp32" and auto["loss"] == fp32["loss"]
    assert bf16["num_images"] == 4 and np.isfinite(bf16["loss"])
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=0.05)  # bf16 rounding, same model


@pytest.mark.parametrize("kind", ["missing", "text", "foreign"])
def test_refuses_foreign_checkpoint(tmp_path, capsys, kind):
    path = tmp_path / "bad.pt"
    if kind == "text":
        path.write_text("hello, I am not a checkpoint\n")
    elif kind == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    split = make_split(tmp_path, n=1)
    with pytest.raises(SystemExit) as exc:
        run_eval(tmp_path, str(path), split)
    message = str(exc.value.code)
    assert message.startswith("eval.py: error:") and "bad.pt" in message
    assert "\n" not in message
    assert not os.path.exists(tmp_path / "r.json")


def test_missing_json(tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt")
    with pytest.raises(SystemExit) as exc:
        run_eval(tmp_path, ckpt, str(tmp_path / "nope.json"))
    assert "nope.json" in str(exc.value.code)


@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_image_mid_split_is_one_line_naming_it(tmp_path, workers):
    ckpt = make_checkpoint(tmp_path / "m.pt")
    split = make_split(tmp_path, n=6)
    png = tmp_path / "imgs" / "4.png"
    png.write_bytes(png.read_bytes()[: len(png.read_bytes()) // 2])  # truncated mid-file
    with pytest.raises(SystemExit) as exc:
        ev.main(["--checkpoint", ckpt, "--json", split, "--workers", str(workers),
                 "--batch-size", "2", "--report", str(tmp_path / "r.json")])
    message = str(exc.value.code)
    assert message.startswith("eval.py: error:") and "4.png" in message and "\n" not in message
    assert not os.path.exists(tmp_path / "r.json")


@pytest.mark.parametrize("where", ["report", "figures"])
def test_unwritable_output_paths_are_one_line(tmp_path, where):
    ckpt = make_checkpoint(tmp_path / "m.pt")
    split = make_split(tmp_path, n=2)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    args = ["--checkpoint", ckpt, "--json", split, "--workers", "0"]
    args += (["--report", str(blocker / "r.json")] if where == "report"
             else ["--report", str(tmp_path / "r.json"), "--figures", str(blocker / "figs")])
    with pytest.raises(SystemExit) as exc:
        ev.main(args)
    message = str(exc.value.code)
    assert message.startswith("eval.py: error:") and "a_file" in message and "\n" not in message


def test_folder_as_checkpoint_says_so(tmp_path):
    split = make_split(tmp_path, n=1)
    with pytest.raises(SystemExit) as exc:
        run_eval(tmp_path, str(tmp_path), split)
    assert "folder" in str(exc.value.code) and "\n" not in str(exc.value.code)


@pytest.mark.parametrize("device", ["cuda:99"])  # no such GPU here, nor (ordinal 99) anywhere
def test_missing_device_is_one_line(tmp_path, device):
    ckpt = make_checkpoint(tmp_path / "m.pt")
    with pytest.raises(SystemExit) as exc:
        run_eval(tmp_path, ckpt, make_split(tmp_path, n=1), "--device", device)
    message = str(exc.value.code)
    assert message.startswith(f"eval.py: error: --device {device}:") and "\n" not in message


def test_bomb_image_is_one_line(tmp_path):
    # a 50,000 x 50,000 PNG raised PIL's DecompressionBombError as a traceback
    from test_data import png_header
    ckpt = make_checkpoint(tmp_path / "m.pt")
    split = make_split(tmp_path, n=3)
    png_header(tmp_path / "imgs" / "2.png", 50_000, 50_000)
    with pytest.raises(SystemExit) as exc:
        run_eval(tmp_path, ckpt, split)
    message = str(exc.value.code)
    assert message.startswith("eval.py: error:") and "\n" not in message, message
    assert message.endswith("2.png: cannot read image (50000 x 50000 pixels, above the limit of "
                            "50,000,000 (--max-pixels))"), message
