"""eval.py: metrics on hand-made predictions, batched == one-at-a-time, beam 1 == greedy, bad
input."""
import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

import eval as ev
from build_model import build_model
from support import inference
from support.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from data import SVHNDataset
from helpers import write_split
from support.tokenizer import tokenizer_from_vocab

TINY = {"plan": "8 M 16 M", "hidden": 16, "max_len": 5}
VOCAB = ["<pad>", "<unk>", "</s>", "<s>"] + list("1234567890")


def write_checkpoint(path, config=TINY, seed=0, decoder_scale=1.0):
    """A checkpoint in train.py's format around a random tiny model.

    decoder_scale > 1 sharpens the decoder so that its answers depend on the image (at 1 a random
    tiny model reads every image alike), which comparisons of decoding paths need. The classifier
    is left alone, so that sequence probabilities stay well above float32's smallest."""
    torch.manual_seed(seed)
    model = build_model(config)
    with torch.no_grad():
        for name, p in model.decoder.named_parameters():
            if not name.startswith("classifier") and name != "h0":  # h0 is N(0, 1) already
                p.mul_(decoder_scale)
        if decoder_scale != 1.0:  # nor <unk>: such a model's answers can be labels
            model.decoder.classifier.bias[VOCAB.index("<unk>")] = -30.0
    save_checkpoint(make_checkpoint(model, VOCAB), str(path))
    return str(path)


# -----------------------------------------------------------------------------
# metrics

def test_sequence_and_character_accuracy():
    truths = [[1, 9], [2, 3], [2, 5], [7], [1, 2, 3]]
    preds = [[1, 9], [2], [2, 5, 5], [8], [1, 2, 4]]
    assert ev.sequence_accuracy(preds, truths) == pytest.approx(1 / 5)
    # right digits: 2 + 1 (missing one wrong) + 2 (extra ignored) + 0 + 2 = 7 of 10
    assert ev.character_accuracy(preds, truths) == pytest.approx(7 / 10)
    table = ev.accuracy_by_length(preds, truths)
    assert table["1"] == {"accuracy": 0.0, "count": 1}
    assert table["2"] == {"accuracy": pytest.approx(1 / 3), "count": 3}
    assert table["3"] == {"accuracy": 0.0, "count": 1}
    assert table["4"] == {"accuracy": None, "count": 0}


def test_accuracy_by_length_groups_the_longest():
    # the last row holds every number of max_len digits or more (SVHN's 6, and any longer)
    truths = [[1] * 6, [2] * 7, [3] * 9, [4] * 5]
    preds = [[1] * 6, [2] * 6, [3] * 9, [4] * 5]
    table = ev.accuracy_by_length(preds, truths)
    assert table["6"] == {"accuracy": 2 / 3, "count": 3}
    assert table["5"] == {"accuracy": 1.0, "count": 1}
    assert sorted(table) == ["1", "2", "3", "4", "5", "6"]
    assert ev.accuracy_by_length(preds, truths, max_len=8)["8"] == {"accuracy": 1.0, "count": 1}


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


def test_coverage_flips_exactly_at_the_target():
    # 120 images ranked by confidence, mistakes at ranks 50, 51 and 100 (1-based). The top 50
    # are 49/50 = 0.98 right, exactly the target; no larger share reaches it (99: 97/99 = 0.9798,
    # 120: 117/120 = 0.975), and every smaller share either is 100% right (<= 49) or is none.
    correct = np.ones(120, dtype=bool)
    correct[[49, 50, 99]] = False
    confidence = np.linspace(1.0, 0.01, 120)
    assert ev.coverage_at(correct, confidence) == 50 / 120
    assert ev.coverage_at(correct, confidence, target=0.98) == 50 / 120
    # a threshold one point loose takes everything; one point strict, or '>' for '>=', only 49
    assert ev.coverage_at(correct, confidence, target=0.97) == 1.0
    assert ev.coverage_at(correct, confidence, target=0.99) == 49 / 120
    assert ev.coverage_at(correct, confidence, target=0.9797) == 99 / 120  # 97/99 = 0.97980
    # the first two mistakes one rank later (51, 52): the top 51 are 50/51 = 0.9804 right
    later = np.ones(120, dtype=bool)
    later[[50, 51, 99]] = False
    assert ev.coverage_at(later, confidence) == 51 / 120
    # with its confidence tied to the right answer above it, the mistake at 50 enters with it:
    # the share of 49 no longer exists on its own, the tie group ends at 50 (0.98)
    tied = confidence.copy()
    tied[49] = tied[48]
    assert ev.coverage_at(correct, tied, target=0.99) == 0.4  # the 48 above the tie group
    assert ev.coverage_at(correct, tied) == 50 / 120


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
    peaks = ev.attention_peaks(attention, (2, 3), (54, 54))
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
    fast = inference.inference_model(model, "cpu")
    fast = fast.decode(x.contiguous(memory_format=torch.channels_last))
    assert ref["tokens"] == fast["tokens"]
    assert torch.allclose(ref["logprob"], fast["logprob"], atol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_loss_shortcut_equals_teacher_forcing():
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    images = torch.randn(4, 3, 54, 54)
    out, (features, _) = inference.decode_batch(model, images, 1, torch.device("cpu"), "fp32")
    assert out["tokens"] == model.decode(images)["tokens"]
    # rows 0 and 2 are labelled with the model's own prediction, rows 1 and 3 with other digits
    truth = [out["tokens"][0], [5, 6, 7], out["tokens"][2], [9]]
    rows = [[3] + t + [2] for t in truth]
    tokens = torch.nn.utils.rnn.pad_sequence([torch.tensor(r) for r in rows], batch_first=True)
    total, count = model.decoder.summed_loss(features, tokens, out, truth)
    _, loss = model(images, tokens)
    assert count == sum(len(r) - 1 for r in rows)
    assert total / count == pytest.approx(loss.item(), rel=1e-4)


# -----------------------------------------------------------------------------
# the script

def run_eval(tmp_path, ckpt, split, *extra):
    return ev.main(["--checkpoint", ckpt, "--json", split, "--workers", "0", "--device", "cpu",
                    "--report", str(tmp_path / "r.json"), *extra])


# -----------------------------------------------------------------------------
# eval.py's whole loop around a decoder whose answers are known: metrics of models that are right

NUMBERS = [[1], [2, 3], [4, 5, 6], [7], [8, 9], [0, 1, 2], [3, 4], [5], [6, 7, 8, 9], [1, 0]]
CONFIDENCE = [0.99, 0.98, 0.96, 0.97, 0.5, 0.95, 0.4, 0.3, 0.94, 0.2]


def token_ids(number):
    return [VOCAB.index(str(d)) for d in number]


def cell(box, feature_hw, size, inside):
    """Index of the first feature cell whose centre lies strictly inside box (x0, y0, x1, y1),
    or (inside=False) outside it."""
    h, w = feature_hw
    for r in range(h):
        for c in range(w):
            x, y = (c + 0.5) * size / w, (r + 0.5) * size / h
            if (box[0] < x < box[2] and box[1] < y < box[3]) == inside:
                return r * w + c
    raise AssertionError(f"no cell centre {'inside' if inside else 'outside'} {box}")


class Oracle:
    """Stands in for model.decode inside eval.py's loop: image i (in split order) reads
    answers[i] with probability confidence[i]; step k looks inside true box k, except the
    (image, step) pairs in misses, which look outside it."""

    def __init__(self, model, answers, confidence, boxes, misses):
        self.model, self.answers, self.confidence = model, answers, confidence
        self.boxes, self.misses = boxes, set(misses)
        self.seen = 0

    def decode(self, images, encoded=None, max_len=None):
        hw = self.model.encode(images)[1] if encoded is None else encoded[1]
        rows = list(range(self.seen, self.seen + images.size(0)))
        self.seen += len(rows)
        T = max(len(self.answers[i]) for i in rows) + 1  # digits and </s>
        attention = torch.zeros(len(rows), T, hw[0] * hw[1])  # (B, T, L)
        probs = torch.zeros(len(rows), T)  # (B, T)
        for b, i in enumerate(rows):
            n = len(self.answers[i])
            for k in range(n + 1):
                box = self.boxes[i][min(k, len(self.boxes[i]) - 1)]
                attention[b, k, cell(box, hw, images.shape[-1], (i, k) not in self.misses)] = 1
            probs[b, : n + 1] = self.confidence[i] ** (1 / (n + 1))
        logprob = torch.tensor([math.log(self.confidence[i]) for i in rows])  # (B,)
        return {"tokens": [token_ids(self.answers[i]) for i in rows], "attention": attention,
                "probs": probs, "logprob": logprob, "feature_hw": hw}


def run_with_oracle(tmp_path, monkeypatch, answers, misses=()):
    """eval.py's main on a split of NUMBERS, its decoder replaced by an Oracle of answers."""
    split = write_split(tmp_path, numbers=NUMBERS)
    ckpt = write_checkpoint(tmp_path / "m.pt")
    dataset = SVHNDataset(split, tokenizer_from_vocab(VOCAB), train=False)
    boxes = [dataset[i][2].tolist() for i in range(len(dataset))]  # in network-input pixels
    real_prepare = inference.inference_model

    def prepare(model, device):
        model = real_prepare(model, device)
        model.decode = Oracle(model, answers, CONFIDENCE, boxes, misses).decode
        return model
    monkeypatch.setattr(inference, "inference_model", prepare)
    return run_eval(tmp_path, ckpt, split, "--batch-size", "4")  # batches of 4, 4, 2


def test_a_decoder_that_reads_the_truth_scores_one(tmp_path, monkeypatch):
    # the truth comes from the split's digits, not through eval.py's token handling, so a
    # truth that kept </s> (or lost a digit) would score 0 here
    report = run_with_oracle(tmp_path, monkeypatch, NUMBERS)
    assert report["num_images"] == 10
    assert report["sequence_accuracy"] == 1.0 and report["digit_accuracy"] == 1.0
    assert report["coverage_at_98"] == 1.0
    assert report["accuracy_by_length"] == {
        "1": {"accuracy": 1.0, "count": 3}, "2": {"accuracy": 1.0, "count": 4},
        "3": {"accuracy": 1.0, "count": 2}, "4": {"accuracy": 1.0, "count": 1},
        "5": {"accuracy": None, "count": 0}, "6": {"accuracy": None, "count": 0}}
    assert report["attention_localisation"] == 1.0 and report["attention_steps"] == 21
    assert report["worst_mistakes"] == []
    # right answers: the loss is -log p(sequence), </s> included, over 21 digits + 10 </s>
    assert report["loss"] == pytest.approx(-sum(math.log(c) for c in CONFIDENCE) / 31, rel=1e-6)


def test_a_decoder_right_on_a_known_subset(tmp_path, monkeypatch):
    answers = [[1], [2, 3], [4, 5, 7], [7], [8], [0, 1, 2], [3, 4, 4], [], [6, 7, 8, 9], [0, 1]]
    # right: images 0 1 3 5 8; wrong: 2 (last digit), 4 (short), 6 (extra), 7 (none), 9 (order)
    report = run_with_oracle(tmp_path, monkeypatch, answers, misses=[(2, 1)])
    assert report["sequence_accuracy"] == 0.5
    # right digits, position by position: 1 + 2 + 2 + 1 + 1 + 3 + 2 + 0 + 4 + 0 = 16 of 21
    assert report["digit_accuracy"] == pytest.approx(16 / 21, rel=1e-12)
    assert report["accuracy_by_length"] == {
        "1": {"accuracy": 2 / 3, "count": 3}, "2": {"accuracy": 1 / 4, "count": 4},
        "3": {"accuracy": 1 / 2, "count": 2}, "4": {"accuracy": 1.0, "count": 1},
        "5": {"accuracy": None, "count": 0}, "6": {"accuracy": None, "count": 0}}
    # by confidence: images 0 1 3 (right), 2 (wrong), ...: the top 3 are 100% right, the top 4
    # 75%, and no larger share climbs back to 98%
    assert report["coverage_at_98"] == pytest.approx(0.3, rel=1e-12)
    # steps that have both a predicted digit and a box: 1+2+3+1+1+3+2+0+4+2 = 19, one missed
    assert report["attention_steps"] == 19
    assert report["attention_localisation"] == pytest.approx(18 / 19, rel=1e-12)
    worst = [(m["index"], m["name"], m["prediction"], m["truth"]) for m in report["worst_mistakes"]]
    assert worst == [(2, "3.png", "457", "456"), (4, "5.png", "8", "89"), (6, "7.png", "344", "34"),
                     (7, "8.png", "", "5"), (9, "10.png", "01", "10")]
    assert [m["probability"] for m in report["worst_mistakes"]] == \
        pytest.approx([0.96, 0.5, 0.4, 0.3, 0.2], rel=1e-6)


def test_report_of_a_model_right_on_half_any_batch_size_and_beam(tmp_path):
    # A sharpened random model reads these images differently from each other. The labels of
    # images 0-4 are set to its greedy answer, those of 5-7 to its beam-3 answer, so eval.py must
    # find exactly the images where each decoding path agrees with them: right and wrong answers
    # both, which an untrained model (all wrong, every path alike) could not show.
    ckpt = write_checkpoint(tmp_path / "m.pt", decoder_scale=30.0)
    split = write_split(tmp_path, n=8)
    model = inference.inference_model(load_checkpoint(ckpt)[0], "cpu")
    dataset = SVHNDataset(split, tokenizer_from_vocab(VOCAB), train=False)
    images = torch.stack([dataset[i][0] for i in range(8)])  # (8, 3, 54, 54)
    greedy = model.decode(images)["tokens"]
    beam = model.beam_search(images, beam=3)["tokens"]
    assert greedy != beam and len(set(map(tuple, greedy))) > 2  # the paths and images differ
    content = json.loads(open(split).read())
    for i, record in enumerate(content["records"]):
        answer = greedy[i] if i < 5 else beam[i]
        if not answer or min(answer) < 4:
            continue  # a label needs a digit, and only digits (not <unk>)
        # every box = the union of the old ones: the crop, so the network input, stays the same
        b = np.array(record["boxes"], dtype=float)
        x0, y0 = b[:, 0].min(), b[:, 1].min()
        x1, y1 = (b[:, 0] + b[:, 2]).max(), (b[:, 1] + b[:, 3]).max()
        record["digits"] = [int(VOCAB[t]) for t in answer]
        record["boxes"] = [[x0, y0, x1 - x0, y1 - y0]] * len(answer)
    with open(split, "w") as f:
        json.dump(content, f)
    truth = [token_ids(r["digits"]) for r in content["records"]]
    relabelled = SVHNDataset(split, tokenizer_from_vocab(VOCAB), train=False)
    assert torch.equal(torch.stack([relabelled[i][0] for i in range(8)]), images)
    expected_greedy = sum(g == t for g, t in zip(greedy, truth)) / 8
    expected_beam = sum(b == t for b, t in zip(beam, truth)) / 8
    assert expected_greedy >= 0.375 and expected_beam >= 0.375 and expected_greedy != expected_beam

    batched = run_eval(tmp_path, ckpt, split, "--batch-size", "3")
    assert batched["sequence_accuracy"] == expected_greedy
    assert os.path.exists(tmp_path / "eval_test_coverage.png")
    assert os.path.exists(tmp_path / "eval_test_mistakes.png")
    assert np.isfinite(batched["loss"])
    single = run_eval(tmp_path, ckpt, split, "--batch-size", "1")
    keys = ["sequence_accuracy", "digit_accuracy", "accuracy_by_length", "coverage_at_98",
            "attention_localisation", "attention_steps"]
    assert {k: single[k] for k in keys} == {k: batched[k] for k in keys}
    assert single["loss"] == pytest.approx(batched["loss"], rel=1e-4)
    assert [m["prediction"] for m in single["worst_mistakes"]] == \
           [m["prediction"] for m in batched["worst_mistakes"]]
    assert run_eval(tmp_path, ckpt, split, "--batch-size", "3", "--beam", "3")[
        "sequence_accuracy"] == expected_beam


def test_batched_decode_equals_single_greedy_and_beam(tmp_path):
    torch.manual_seed(1)
    model = inference.inference_model(build_model(TINY), "cpu")
    x = torch.randn(5, 3, 54, 54)
    for decode in (model.decode, lambda im: model.beam_search(im, beam=3)):
        batch = decode(x)
        for i in range(5):
            one = decode(x[i:i + 1])
            assert one["tokens"][0] == batch["tokens"][i]
            assert one["logprob"][0].item() == pytest.approx(batch["logprob"][i].item(), abs=1e-4)


def test_limit_and_beam(tmp_path):
    ckpt = write_checkpoint(tmp_path / "m.pt")
    split = write_split(tmp_path, n=6)
    report = run_eval(tmp_path, ckpt, split, "--limit", "2", "--beam", "3")
    assert report["num_images"] == 2 and report["beam"] == 3


def test_bf16_precision_runs_and_is_recorded(tmp_path):
    ckpt = write_checkpoint(tmp_path / "m.pt")
    split = write_split(tmp_path, n=4)
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
    split = write_split(tmp_path, n=1)
    with pytest.raises(SystemExit) as exc:
        run_eval(tmp_path, str(path), split)
    message = str(exc.value.code)
    assert message.startswith("eval.py: error:") and "bad.pt" in message
    assert "\n" not in message
    assert not os.path.exists(tmp_path / "r.json")


def test_missing_json(tmp_path):
    ckpt = write_checkpoint(tmp_path / "m.pt")
    with pytest.raises(SystemExit) as exc:
        run_eval(tmp_path, ckpt, str(tmp_path / "nope.json"))
    assert "nope.json" in str(exc.value.code)


@pytest.mark.parametrize("workers", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_corrupt_image_mid_split_is_one_line_naming_it(tmp_path, workers):
    ckpt = write_checkpoint(tmp_path / "m.pt")
    split = write_split(tmp_path, n=6)
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
    ckpt = write_checkpoint(tmp_path / "m.pt")
    split = write_split(tmp_path, n=2)
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
    split = write_split(tmp_path, n=1)
    with pytest.raises(SystemExit) as exc:
        run_eval(tmp_path, str(tmp_path), split)
    assert "folder" in str(exc.value.code) and "\n" not in str(exc.value.code)


@pytest.mark.parametrize("device", ["cuda:99"])  # no such GPU here, nor (ordinal 99) anywhere
def test_missing_device_is_one_line(tmp_path, device):
    ckpt = write_checkpoint(tmp_path / "m.pt")
    with pytest.raises(SystemExit) as exc:
        run_eval(tmp_path, ckpt, write_split(tmp_path, n=1), "--device", device)
    message = str(exc.value.code)
    assert message.startswith(f"eval.py: error: --device {device}:") and "\n" not in message


def test_bomb_image_is_one_line(tmp_path):
    # a 50,000 x 50,000 PNG raised PIL's DecompressionBombError as a traceback
    from test_data import png_header
    ckpt = write_checkpoint(tmp_path / "m.pt")
    split = write_split(tmp_path, n=3)
    png_header(tmp_path / "imgs" / "2.png", 50_000, 50_000)
    with pytest.raises(SystemExit) as exc:
        run_eval(tmp_path, ckpt, split)
    message = str(exc.value.code)
    assert message.startswith("eval.py: error:") and "\n" not in message, message
    assert message.endswith("2.png: cannot read image (50000 x 50000 pixels, above the limit of "
                            "50,000,000 (--max-pixels))"), message


def test_defaults_are_the_seeds_evaluation():
    # the seed evaluates its last checkpoint in fp32; train.py's default run ends in last.pt
    args = ev.parse_args([])
    assert (args.checkpoint, args.precision, args.beam) == ("runs/svhn/last.pt", "fp32", 1)


def test_beam_is_capped_and_batches_shrink_with_it(tmp_path, capsys, monkeypatch):
    # batch x beam hypotheses are held at once: a huge --beam would run out of memory
    with pytest.raises(SystemExit):
        ev.parse_args(["--checkpoint", "x.pt", "--beam", "100000"])
    assert "--beam must be at most 64, got 100000" in capsys.readouterr().err
    ckpt = write_checkpoint(tmp_path / "m.pt")
    split = write_split(tmp_path, n=3)
    sizes = []
    real = torch.utils.data.DataLoader

    def spy(dataset, batch_size, **kwargs):
        sizes.append(batch_size)
        return real(dataset, batch_size=batch_size, **kwargs)
    monkeypatch.setattr(torch.utils.data, "DataLoader", spy)
    run_eval(tmp_path, ckpt, split, "--beam", "64", "--batch-size", "256")
    assert sizes == [ev.BEAM_ROWS // 64]


def test_edit_distance_cer_and_ned_against_hand_counts():
    assert ev.edit_distance("kitten", "sitting") == 3  # the textbook pair
    assert ev.edit_distance("", "abc") == 3 and ev.edit_distance("abc", "") == 3
    assert ev.edit_distance("1234", "1243") == 2  # a swap is two substitutions
    preds = [list("123"), list("45"), list("")]
    truths = [list("123"), list("456"), list("7")]
    # distances 0, 1, 1 over 3 + 3 + 1 truth characters
    assert ev.character_error_rate(preds, truths) == pytest.approx(2 / 7)
    # 1 - NED: (1 + (1 - 1/3) + (1 - 1/1)) / 3
    assert ev.one_minus_ned(preds, truths) == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert ev.character_error_rate([list("12345")], [list("1")]) == 4.0  # CER may exceed 1


def test_report_and_figures_never_replace_a_file_that_is_not_evals(tmp_path):
    # --report replaced whatever it named: the training JSON, a checkpoint; --figures a user's
    # eval_test_coverage.png
    ckpt = write_checkpoint(tmp_path / "m.pt")
    split = write_split(tmp_path, n=2)
    kept = {p: open(p, "rb").read() for p in (split, ckpt)}
    for path in (split, ckpt):
        with pytest.raises(SystemExit) as exc:
            run_eval(tmp_path, ckpt, split, "--report", path)
        message = str(exc.value.code)
        assert message == (f"eval.py: error: --report {path}: is also an input of this run "
                           f"({path}); refusing to replace or move it, even with --overwrite")
        with pytest.raises(SystemExit):  # its inputs: not even with --overwrite
            run_eval(tmp_path, ckpt, split, "--report", path, "--overwrite")
    assert {p: open(p, "rb").read() for p in kept} == kept
    figs = tmp_path / "figs"
    figs.mkdir()
    Image.new("RGB", (4, 4)).save(figs / "eval_test_coverage.png")  # a user's own image
    photo = (figs / "eval_test_coverage.png").read_bytes()
    with pytest.raises(SystemExit) as exc:
        run_eval(tmp_path, ckpt, split, "--figures", str(figs))
    assert "--figures " in str(exc.value.code) and "not a figure this repository drew" in str(
        exc.value.code)
    assert (figs / "eval_test_coverage.png").read_bytes() == photo
    assert not (tmp_path / "r.json").exists()  # refused before evaluating
    # its own report and figures are replaced by a new evaluation; --overwrite replaces any
    run_eval(tmp_path, ckpt, split)
    run_eval(tmp_path, ckpt, split)
    run_eval(tmp_path, ckpt, split, "--figures", str(figs), "--overwrite")
    assert (figs / "eval_test_coverage.png").read_bytes() != photo
