"""The heads behind one interface (model/heads): the CTC head's best path read out by hand, its
loss, decoding, export, checkpoint round trip and training through the scripts; switching heads
under --init; a checkpoint without a "head" key is the seed's attention head."""
import math
import os

import pytest
import torch

import eval as ev
import export
import play
import predict
import train
from helpers import overfit, write_split
from model import build_model
from model.heads.attention import AttentionHead
from model.heads.ctc import CTCHead, collapse, fit_rows, frames_needed
from support import inference
from support.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint

BLANK, EOS = 0, 2
CTC = {"head": "ctc", "plan": "8 M 16 M 16", "hidden": 32, "image_size": 32, "crop_size": 28}
TINY = ["--plan", "8 M 16", "--hidden", "16", "--image-size", "32", "--crop-size", "28",
        "--batch-size", "4", "--threads", "1", "--workers", "0", "--val-size", "0"]


# -- the best path, read out by hand ----------------------------------------------------------

def test_collapse_merges_repeats_and_drops_blanks():
    # frames 5 5 _ 5 6 6 _: "5" (frames 0-1), a blank, "5" again (a blank between repeats keeps
    # both), "6" (frames 4-5), a blank: 3 characters, then </s> in slot 3, <pad> after
    ids = torch.tensor([[5, 5, 0, 5, 6, 6, 0]])
    logp = torch.log(torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]]))
    tokens, probs, logprob = collapse(ids, logp, BLANK, EOS)
    assert tokens.tolist() == [[5, 5, 6, EOS, 0, 0, 0, 0]]
    want = [0.9 * 0.8, 0.6, 0.5 * 0.4, 0.7 * 0.3, 0, 0, 0, 0]  # </s>: the blank frames'
    torch.testing.assert_close(probs, torch.tensor([want]))
    assert logprob.item() == pytest.approx(math.log(0.9 * 0.8 * 0.7 * 0.6 * 0.5 * 0.4 * 0.3))


def test_collapse_of_all_blanks_and_of_no_blank():
    ids = torch.tensor([[0, 0, 0], [7, 8, 7]])
    logp = torch.log(torch.tensor([[0.5, 0.5, 0.5], [0.9, 0.8, 0.7]]))
    tokens, probs, _ = collapse(ids, logp, BLANK, EOS)
    assert tokens.tolist() == [[EOS, 0, 0, 0], [7, 8, 7, EOS]]
    torch.testing.assert_close(probs, torch.tensor([[0.125, 0, 0, 0], [0.9, 0.8, 0.7, 1.0]]))


def test_texts_too_long_for_the_frames_are_counted():
    assert [frames_needed(t) for t in ("", "7", "12", "0000", "1001")] == [0, 1, 2, 7, 5]
    head = build_model(CTC).decoder  # a 28-pixel-wide input: 7 columns, 14 frames
    texts = ["12" * 7, "1" * 7, "1" * 8, "123456789012345", "5"]
    assert head.unreadable(texts) == 2  # 8 ones need 15 frames; 15 characters 15
    assert build_model({**CTC, "head": "attention"}).decoder.unreadable(texts) == 0


# -- the head ----------------------------------------------------------------------------------

def digit_batch(texts=((1, 2), (3, 3, 4), (5,), (6, 7))):
    """Images that differ by text and tokens <s> digits </s> <pad>... (ids: digit + 4)."""
    torch.manual_seed(0)
    images = torch.rand(len(texts), 3, 28, 28)
    rows = [[3] + [d + 4 for d in t] + [EOS] for t in texts]
    tokens = torch.nn.utils.rnn.pad_sequence([torch.tensor(r) for r in rows], batch_first=True)
    return images, tokens, [[d + 4 for d in t] for t in texts]


def test_ctc_loss_is_finite_falls_and_the_overfit_batch_is_read():
    images, tokens, truth = digit_batch()
    torch.manual_seed(0)
    model = build_model(CTC)
    assert isinstance(model.decoder, CTCHead)
    _, first = model(images, tokens)
    for _ in range(6):  # read within 600 steps (about 200 on this seed and machine)
        last = overfit(model, images, tokens, 100, lr=3e-3)
        out = model.eval().decode(images)
        if out["tokens"] == truth:
            break
    assert math.isfinite(first.item()) and last.item() < 0.1 * first.item()
    assert out["tokens"] == truth  # "334": a repeat, read through a blank
    assert out["attention"] is None
    # each row's probabilities (characters, then </s>) multiply to the path's
    for row, ids, logprob in zip(out["probs"], out["tokens"], out["logprob"]):
        assert torch.log(row[: len(ids) + 1]).sum().item() == pytest.approx(logprob.item(),
                                                                            abs=1e-4)


def test_ctc_head_decodes_greedily_only():
    model = build_model(CTC).eval()
    images = torch.rand(2, 3, 28, 28)
    with pytest.raises(ValueError, match="best path only"):
        model.decode(images, beam=3)
    with pytest.raises(ValueError, match="--beam 1"):
        inference.check_beam_for_head(model, 3)
    attention = build_model({**CTC, "head": "attention"})
    inference.check_beam_for_head(attention, 3)  # attention: any beam


def test_unknown_head_is_refused():
    with pytest.raises(ValueError, match="'head' must be one of attention, ctc"):
        build_model({**CTC, "head": "transformer"})


@pytest.fixture
def ctc_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_model({**CTC, "vocab_size": 14})
    vocab = ["<pad>", "<unk>", "</s>", "<s>"] + [str(d) for d in range(10)]
    path = str(tmp_path / "ctc.pt")
    save_checkpoint(make_checkpoint(model, vocab), path)
    return path, model.eval()


def test_ctc_checkpoint_round_trip(ctc_checkpoint):
    path, model = ctc_checkpoint
    loaded, ckpt = load_checkpoint(path)
    assert ckpt["config"]["head"] == "ctc" and isinstance(loaded.decoder, CTCHead)
    images = torch.rand(3, 3, 28, 28)
    want, got = model.decode(images), loaded.decode(images)
    assert want["tokens"] == got["tokens"] and torch.equal(want["logprob"], got["logprob"])
    # batched decoding equals one image at a time
    alone = [model.decode(images[i:i + 1]) for i in range(3)]
    assert [a["tokens"][0] for a in alone] == want["tokens"]
    torch.testing.assert_close(torch.cat([a["logprob"] for a in alone]), want["logprob"])


def test_a_checkpoint_without_a_head_key_is_the_attention_head(tmp_path):
    model = build_model({**CTC, "head": "attention"})
    ckpt = make_checkpoint(model, ["<pad>", "<unk>", "</s>", "<s>"] + list("0123456789"))
    del ckpt["config"]["head"]  # as every checkpoint written before heads were parts
    save_checkpoint(ckpt, str(tmp_path / "old.pt"))
    loaded, ckpt = load_checkpoint(str(tmp_path / "old.pt"))
    assert isinstance(loaded.decoder, AttentionHead) and ckpt["config"]["head"] == "attention"


def test_ctc_export_matches_torch(ctc_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    path, model = ctc_checkpoint
    out = str(tmp_path / "ctc.onnx")
    assert export.main(["--checkpoint", path, "--out", out]) == 0  # --check: on random inputs
    images = torch.rand(5, 3, 28, 28)
    tokens, probs = export.run_exported(out, images)
    want = model.decode(images)
    assert tokens.shape == (5, 2 * 7 + 1)  # 7 columns of 2 frames, + </s>
    for row, ids in zip(tokens.tolist(), want["tokens"]):
        assert row[: row.index(EOS)] == ids
    torch.testing.assert_close(probs, want["probs"], atol=1e-5, rtol=1e-4)


# -- through the scripts -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_json(tmp_path_factory):
    numbers = [[(i * 7 + k * 3) % 10 for k in range(1 + i % 3)] for i in range(12)]
    return write_split(str(tmp_path_factory.mktemp("tiny")), numbers=numbers, split="train",
                       image_dir="train")


def run_train(tiny_json, out, *extra):
    return train.main(["--train-json", tiny_json, *TINY, "--out", str(out),
                       "--plot", str(out / "copy.png"), *extra])


def test_ctc_trains_and_reads_through_eval_predict_and_play(tiny_json, tmp_path):
    assert run_train(tiny_json, tmp_path / "run", "--head", "ctc", "--epochs", "2") == 0
    ckpt = str(tmp_path / "run" / "last.pt")
    assert load_checkpoint(ckpt)[1]["config"]["head"] == "ctc"
    report = ev.main(["--checkpoint", ckpt, "--json", tiny_json, "--workers", "0",
                      "--report", str(tmp_path / "r.json")])
    assert report["num_images"] == 12 and math.isfinite(report["loss"])
    assert report["attention_localisation"] is None
    images = os.path.join(os.path.dirname(tiny_json), "train")
    results, failed = predict.run(predict.parse_args([images, "--checkpoint", ckpt, "--csv",
                                                      str(tmp_path / "p.csv"), "--workers", "0"]))
    assert len(results) == 12 and not failed
    with pytest.raises(SystemExit, match="best path only"):
        predict.main([images, "--checkpoint", ckpt, "--csv", str(tmp_path / "q.csv"),
                      "--beam", "2"])
    items, _ = play.main(["--checkpoint", ckpt, "--out", str(tmp_path / "fig"),
                          os.path.join(images, os.listdir(images)[0])])
    assert items[0]["maps"] is None and os.path.exists(tmp_path / "fig" / "attention.png")


@pytest.mark.parametrize("first,then", [("attention", "ctc"), ("ctc", "attention")])
def test_init_switches_the_head_and_keeps_the_encoder(tiny_json, tmp_path, capsys, first, then):
    assert run_train(tiny_json, tmp_path / "a", "--head", first, "--epochs", "1") == 0
    base = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    # lr 0: the fine-tuning run's weights are where --init put them
    assert run_train(tiny_json, tmp_path / "b", "--init", str(tmp_path / "a" / "last.pt"),
                     "--head", then, "--epochs", "1", "--lr", "0") == 0
    assert f"with a new {then} head (it had {first})" in capsys.readouterr().out
    ft = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert ft["config"]["head"] == then
    encoder = [k for k in base["model"] if k.startswith("encoder.") and k.endswith("weight")]
    assert encoder and all(torch.equal(ft["model"][k], base["model"][k]) for k in encoder)
    head = {k for k in ft["model"] if k.startswith("decoder.")}
    assert head and head != {k for k in base["model"] if k.startswith("decoder.")}


# -- the auxiliary ctc loss beside the attention head ----------------------------------------

def test_aux_ctc_adds_a_weighted_ctc_loss_and_nothing_when_off():
    images, tokens, _ = digit_batch()
    attention = {**CTC, "head": "attention"}
    torch.manual_seed(0)
    plain = build_model(attention)
    assert not any(k.startswith("aux.") for k in plain.state_dict())  # off: the seed's weights
    torch.manual_seed(0)
    model = build_model({**attention, "aux_ctc": 0.5})
    assert isinstance(model.aux, CTCHead)
    features, _ = model.encode(images)
    want = model.decoder.loss(features, tokens)[1] + 0.5 * model.aux.loss(features, tokens)[1]
    torch.testing.assert_close(model(images, tokens)[1], want)
    with pytest.raises(ValueError, match="'aux_ctc' 0.5 adds a ctc loss beside the attention"):
        build_model({**CTC, "aux_ctc": 0.5})


def test_init_adds_and_drops_the_aux_ctc_head(tiny_json, tmp_path):
    assert run_train(tiny_json, tmp_path / "a", "--epochs", "1") == 0
    base = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert run_train(tiny_json, tmp_path / "b", "--init", str(tmp_path / "a" / "last.pt"),
                     "--aux-ctc", "0.5", "--epochs", "1", "--lr", "0") == 0
    ft = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert ft["config"]["aux_ctc"] == 0.5 and any(k.startswith("aux.") for k in ft["model"])
    kept = [k for k in base["model"] if k.endswith("weight")]  # BatchNorm statistics move
    assert all(torch.equal(ft["model"][k], base["model"][k]) for k in kept)
    assert run_train(tiny_json, tmp_path / "c", "--init", str(tmp_path / "b" / "last.pt"),
                     "--aux-ctc", "0", "--epochs", "1", "--lr", "0") == 0
    back = torch.load(tmp_path / "c" / "last.pt", weights_only=True)
    assert set(back["model"]) == set(base["model"])


def test_init_with_head_ctc_reads_on_with_the_trained_aux_head(tiny_json, tmp_path, capsys):
    # a reader trained with --aux-ctc has a ctc head past CTC's blank plateau: --head ctc from it
    # starts from that head, where a fresh one emits only blanks for hundreds of steps
    assert run_train(tiny_json, tmp_path / "a", "--aux-ctc", "0.5", "--epochs", "1") == 0
    base = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    assert run_train(tiny_json, tmp_path / "b", "--init", str(tmp_path / "a" / "last.pt"),
                     "--head", "ctc", "--epochs", "1", "--lr", "0") == 0
    assert "its trained auxiliary ctc head as the head" in capsys.readouterr().out
    ft = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert ft["config"]["head"] == "ctc" and ft["config"]["aux_ctc"] == 0.0
    head = {k for k in ft["model"] if k.startswith("decoder.")}
    assert head == {"decoder." + k.removeprefix("aux.") for k in base if k.startswith("aux.")}
    assert all(torch.equal(ft["model"][k], base["aux." + k.removeprefix("decoder.")])
               for k in head)
    # another input height (28 -> 40 pixels: 14 -> 20 feature rows under one pooling): the same
    # trained head, its column projection fitted to the new height
    assert run_train(tiny_json, tmp_path / "c", "--init", str(tmp_path / "a" / "last.pt"),
                     "--head", "ctc", "--image-size", "40", "--crop-size", "40", "--epochs", "1",
                     "--lr", "0") == 0
    out = capsys.readouterr().out
    assert "its trained auxiliary ctc head as the head" in out
    assert "its ctc column weights fitted from its 28 input to 40" in out
    tall = torch.load(tmp_path / "c" / "last.pt", weights_only=True)["model"]
    assert torch.equal(tall["decoder.project.weight"],
                       fit_rows(base["aux.project.weight"], 16, 20))
    assert torch.equal(tall["decoder.rnn.weight_hh_l0"], base["aux.rnn.weight_hh_l0"])


def test_init_at_another_height_keeps_the_aux_head(tiny_json, tmp_path):
    # the attention head with its auxiliary ctc head, fine-tuned at a taller input: the aux
    # head's projection depends on the height, and is fitted, not a crash inside load_state_dict
    assert run_train(tiny_json, tmp_path / "a", "--aux-ctc", "0.5", "--epochs", "1") == 0
    base = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    assert run_train(tiny_json, tmp_path / "b", "--init", str(tmp_path / "a" / "last.pt"),
                     "--image-size", "40", "--crop-size", "40", "--epochs", "1", "--lr", "0") == 0
    tall = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert tall["aux.project.weight"].shape == (16, 16 * 20)
    assert torch.equal(tall["aux.project.weight"], fit_rows(base["aux.project.weight"], 16, 20))


def test_fit_rows_resamples_each_channels_weights_over_the_column():
    # 2 channels, 2 feature rows; a column is laid out row by row: [r0c0, r0c1, r1c0, r1c1]
    weight = torch.tensor([[1.0, 10.0, 3.0, 30.0]])
    # to 4 rows, linear with half-pixel centres: a, 3/4 a + 1/4 b, 1/4 a + 3/4 b, b
    expected = torch.tensor([[1.0, 10.0, 1.5, 15.0, 2.5, 25.0, 3.0, 30.0]])
    assert torch.allclose(fit_rows(weight, 2, 4), expected)
    assert torch.equal(fit_rows(weight, 2, 2), weight)
    with pytest.raises(ValueError, match="not 3 channels high"):
        fit_rows(weight, 3, 4)
