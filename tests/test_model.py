"""Invariants of cnn.py and build_model.py: shapes, attention, loss masking, decoding, checkpoints."""
import math
import os

import numpy as np
import pytest
import torch

from build_model import (DEFAULT_CONFIG, Attention, AttentionOCR, build_model,
                         masked_cross_entropy)
from support.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, make_checkpoint, save_checkpoint
from cnn import Encoder, parse_plan, pooled_size
from helpers import overfit

TINY = {"plan": "8 M 16 M 16", "hidden": 32}
PAD, EOS, BOS = 0, 2, 3


def make_tokens(numbers):
    """<s> digits </s> <pad>... with digit d stored as token 4 + d (any order would do)."""
    T = max(len(n) for n in numbers) + 2
    tokens = torch.full((len(numbers), T), PAD, dtype=torch.long)
    for i, n in enumerate(numbers):
        row = [BOS] + [4 + d for d in n] + [EOS]
        tokens[i, :len(row)] = torch.tensor(row)
    return tokens


NUMBERS = [[1], [2, 3], [4, 5, 6], [7, 8, 9, 0], [5], [6, 1], [0, 0, 7], [3, 9, 2, 8]]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine 2 threads were ~25x
    slower than 1 (threads spin waiting for each other), so this file runs on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(one_thread):
    """A tiny model trained to memorise 8 noise images of 1-4 digits (a few seconds on CPU)."""
    torch.manual_seed(0)
    model = build_model(TINY)
    images = torch.randn(len(NUMBERS), 3, 24, 24)
    tokens = make_tokens(NUMBERS)
    overfit(model, images, tokens, 60)
    # a few forwards without updates so the BatchNorm running statistics settle on this batch
    with torch.no_grad():
        for _ in range(20):
            model(images, tokens)
    return model.eval(), images


# ---- encoder --------------------------------------------------------------------------------

def test_parse_plan():
    assert parse_plan("64 64 M 128") == [64, 64, "M", 128]
    assert parse_plan(["8", 16, "m"]) == [8, 16, "M"]
    for junk in ["64 X 128", "", "M M", "64 -3", "64 1.5", None, [True, 8]]:
        with pytest.raises(ValueError):
            parse_plan(junk)


def test_encoder_default_plan_shape():
    encoder = Encoder(DEFAULT_CONFIG["plan"]).eval()
    with torch.no_grad():
        out = encoder(torch.randn(2, 3, 54, 54))
    assert out.shape == (2, 512, 7, 7)
    assert encoder.out_channels == 512 and encoder.output_size(54) == 7


def test_encoder_other_plan_and_size():
    encoder = Encoder("8 M 16 M 4", in_channels=1)
    out = encoder(torch.randn(2, 1, 33, 20))
    assert out.shape == (2, 4, 9, 5)
    assert encoder.output_size((33, 20)) == (9, 5) == (pooled_size(33, "8 M 16 M 4"), 5)


def test_encoder_init():
    # Kaiming normal, fan_out: std sqrt(2 / (out * 9)). The first conv (3 -> 64) tells it apart
    # from fan_in (sqrt(2 / 27) = 0.27), PyTorch's default (uniform, 1 / sqrt(3 * 27) = 0.11) and
    # a uniform of the right std (kurtosis 1.8, not a normal's 3); 1,728 weights pin the std to
    # about 2% and the kurtosis to about 0.12.
    torch.manual_seed(0)
    encoder = Encoder("64 M 32")
    convs = [m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        w = conv.weight.detach().double().flatten()
        std = (2 / (conv.out_channels * 9)) ** 0.5
        assert abs(w.std().item() / std - 1) < 0.1, (conv, w.std().item(), std)
        assert abs(w.mean().item()) < 0.1 * std
        kurtosis = ((w - w.mean()) ** 4).mean() / w.var(unbiased=False) ** 2
        assert 2.6 < kurtosis.item() < 3.4, kurtosis
        assert conv.bias is None  # the BatchNorm after it has the shift
    for bn in (m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


# ---- attention and loss ---------------------------------------------------------------------

def test_attention_sums_to_one():
    torch.manual_seed(0)
    attention = Attention(feature_dim=12, hidden=16, attention_dim=8)
    features = torch.randn(3, 20, 12)  # (B, L, C)
    context, alpha = attention(features, attention.project(features), torch.randn(3, 16))
    assert alpha.shape == (3, 20) and context.shape == (3, 12)
    torch.testing.assert_close(alpha.sum(dim=1), torch.ones(3))
    torch.testing.assert_close(context, torch.einsum("bl,blc->bc", alpha, features))


def test_forward_shapes_and_loss_ignores_pad():
    torch.manual_seed(0)
    model = build_model(TINY)
    tokens = make_tokens([[1, 2, 3], [4]])
    logits, loss = model(torch.randn(2, 3, 24, 24), tokens)
    assert logits.shape == (2, tokens.size(1) - 1, DEFAULT_CONFIG["vocab_size"])
    assert torch.isfinite(loss)
    targets = tokens[:, 1:]
    changed = logits.detach().clone()
    changed[targets == PAD] = torch.randn_like(changed[targets == PAD]) * 10
    torch.testing.assert_close(masked_cross_entropy(changed, targets, PAD), loss.detach())
    # the mean is over the 4 + 1 real targets, not over all positions
    by_hand = torch.nn.functional.cross_entropy(logits[targets != PAD], targets[targets != PAD])
    torch.testing.assert_close(loss, by_hand)


def test_build_model_config():
    model = build_model({"plan": "8 M 16", "hidden": 16})
    assert model.config["vocab_size"] == DEFAULT_CONFIG["vocab_size"]
    with pytest.raises(ValueError, match="unknown"):
        build_model({"hiden": 16})
    with pytest.raises(ValueError):
        build_model({"plan": "8 Q"})
    with pytest.raises(ValueError):
        build_model({"hidden": 0})


def test_autocast_and_channels_last():
    torch.manual_seed(0)
    model = build_model(TINY)
    images = torch.randn(2, 3, 24, 24).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss = model(images, make_tokens([[1, 2], [3]]))
        out = model.eval().decode(images, max_len=3)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert out["attention"].dtype == torch.float32
    torch.testing.assert_close(out["attention"][:, 0].sum(1), torch.ones(2))


# ---- decoding -------------------------------------------------------------------------------

def test_overfit_tiny_batch(trained):
    model, images = trained
    out = model.decode(images)
    assert out["tokens"] == [[4 + d for d in n] for n in NUMBERS]
    assert out["feature_hw"] == (6, 6)
    T = out["attention"].size(1)
    assert T == 5  # longest number (4 digits) + </s>, the loop stopped early
    lengths = torch.tensor([len(n) for n in NUMBERS])
    emitted = torch.arange(T)[None, :] <= lengths[:, None]  # digits and </s>
    torch.testing.assert_close(out["attention"].sum(2), emitted.float())
    assert torch.all(out["probs"][~emitted] == 0) and torch.all(out["probs"][emitted] > 0.5)
    torch.testing.assert_close(out["logprob"], out["probs"].clamp_min(1e-30).log()
                               .masked_fill(~emitted, 0).sum(1))


def test_batched_decode_equals_single(trained):
    model, images = trained
    images = torch.cat([images, torch.randn(4, 3, 24, 24)])  # plus some unseen noise
    batched = model.decode(images)
    for i in range(images.size(0)):
        single = model.decode(images[i:i + 1])
        assert single["tokens"][0] == batched["tokens"][i]
        T = single["attention"].size(1)
        torch.testing.assert_close(single["attention"][0], batched["attention"][i, :T])
        torch.testing.assert_close(single["probs"][0], batched["probs"][i, :T])
        torch.testing.assert_close(single["logprob"][0], batched["logprob"][i])
        assert torch.all(batched["attention"][i, T:] == 0)


def test_channels_last_model_decodes_the_same(trained):
    model, images = trained
    expected = model.decode(images)
    fast = build_model(model.config).eval()
    fast.load_state_dict(model.state_dict())
    fast = fast.to(memory_format=torch.channels_last)
    out = fast.decode(images.to(memory_format=torch.channels_last))
    assert out["tokens"] == expected["tokens"]
    torch.testing.assert_close(out["logprob"], expected["logprob"], rtol=1e-4, atol=1e-4)


def test_decoding_precomputed_features_uses_them(trained):
    # `encoded` must be what is decoded: given another batch's features, the answer is that
    # batch's (decoding the same images' features would pass if `encoded` were ignored)
    model, images = trained
    other = images.flip(0)
    encoded = model.encode(other)
    for run in (model.decode, lambda x, **kw: model.beam_search(x, beam=3, **kw)):
        expected, out = run(other), run(images, encoded=encoded)
        assert out["tokens"] == expected["tokens"] != run(images)["tokens"]
        torch.testing.assert_close(out["logprob"], expected["logprob"])
        torch.testing.assert_close(out["attention"], expected["attention"])


def test_max_len_cap(trained):
    model, images = trained
    out = model.decode(images, max_len=2)
    assert out["attention"].size(1) == 3
    assert [len(t) for t in out["tokens"]] == [min(len(n), 2) for n in NUMBERS]
    assert model.decode(images, max_len=0)["tokens"] == [[]] * len(NUMBERS)


def test_beam_one_equals_greedy(trained):
    model, images = trained
    images = torch.cat([images, torch.randn(4, 3, 24, 24)])
    for max_len in (None, 2):
        greedy = model.decode(images, max_len=max_len)
        beam = model.beam_search(images, beam=1, max_len=max_len)
        assert beam["tokens"] == greedy["tokens"]
        for key in ("attention", "probs", "logprob"):
            torch.testing.assert_close(beam[key], greedy[key])


def test_beam_search_valid_and_not_worse(trained):
    model, images = trained
    torch.manual_seed(1)
    images = torch.cat([images, torch.randn(8, 3, 24, 24)])
    greedy = model.decode(images)
    beam = model.beam_search(images, beam=4)
    assert torch.all(beam["logprob"] >= greedy["logprob"] - 1e-5)
    assert beam["tokens"][:len(NUMBERS)] == [[4 + d for d in n] for n in NUMBERS]
    for i, tokens in enumerate(beam["tokens"]):
        assert len(tokens) <= DEFAULT_CONFIG["max_len"]
        assert all(t not in (PAD, EOS, BOS) for t in tokens)
        n = len(tokens)
        torch.testing.assert_close(beam["attention"][i, :n + 1].sum(1), torch.ones(n + 1))
        assert torch.all(beam["attention"][i, n + 1:] == 0)
        torch.testing.assert_close(beam["probs"][i, :n + 1].log().sum(), beam["logprob"][i])
    # batched beam search equals beam search one image at a time
    for i in (0, 3, 9):
        single = model.beam_search(images[i:i + 1], beam=4)
        assert single["tokens"][0] == beam["tokens"][i]
        torch.testing.assert_close(single["logprob"][0], beam["logprob"][i])


# ---- checkpoints ----------------------------------------------------------------------------

def test_checkpoint_round_trip(trained, tmp_path):
    model, images = trained
    vocab = ["<pad>", "<unk>", "</s>", "<s>"] + [str(d) for d in range(10)]
    path = tmp_path / "model.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "config": model.config, "vocab": vocab,
                "model": model.state_dict(), "epoch": 1}, path)
    loaded, ckpt = load_checkpoint(str(path))
    assert not loaded.training and ckpt["vocab"] == vocab and ckpt["epoch"] == 1
    a, b = model.decode(images), loaded.decode(images)
    assert a["tokens"] == b["tokens"]
    torch.testing.assert_close(a["attention"], b["attention"])
    torch.testing.assert_close(a["logprob"], b["logprob"])
    # weights saved from a DDP-wrapped model ("module." prefix) load too
    wrapped = {"module." + k: v for k, v in model.state_dict().items()}
    torch.save({"format": CHECKPOINT_FORMAT, "config": model.config, "vocab": vocab,
                "model": wrapped}, path)
    assert load_checkpoint(str(path))[0].decode(images)["tokens"] == a["tokens"]


def test_make_checkpoint_round_trip_resumes(trained, tmp_path):
    # the dict train.py saves, made by checkpoint.make_checkpoint: loads for resuming, exactly
    model, images = trained
    vocab = ["<pad>", "<unk>", "</s>", "<s>"] + [str(d) for d in range(10)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [3])
    rng = torch.get_rng_state()
    ckpt = make_checkpoint(model, vocab, optimizer=optimizer, scheduler=scheduler, epoch=2,
                           step=6, rng={"torch": rng}, best_metric=0.25,
                           args={"epochs": 3}, steps_per_epoch=3)
    path = str(tmp_path / "m.pt")
    save_checkpoint(ckpt, path)
    assert os.listdir(tmp_path) == ["m.pt"]
    loaded, back = load_checkpoint(path, resume=True)
    assert back["format"] == CHECKPOINT_FORMAT and back["vocab"] == vocab
    assert (back["epoch"], back["step"], back["best_metric"]) == (2, 6, 0.25)
    assert back["args"] == {"epochs": 3} and back["steps_per_epoch"] == 3 and back["world"] == 1
    assert back["config"] == model.config and back["scheduler"]["milestones"] == {3: 1}
    assert back["optimizer"]["param_groups"][0]["lr"] == 1e-3
    assert torch.equal(back["rng"]["torch"], rng)
    for key, value in model.state_dict().items():
        assert torch.equal(back["model"][key], value), key
    assert loaded.decode(images)["tokens"] == model.decode(images)["tokens"]


def test_checkpoint_refuses_foreign_files(trained, tmp_path):
    model, _ = trained
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a checkpoint\n")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_checkpoint(str(text))
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.randn(3)}, other)
    with pytest.raises(ValueError, match="not an svhn-attention-ocr checkpoint"):
        load_checkpoint(str(other))
    mismatch = tmp_path / "mismatch.pt"
    vocab = [str(i) for i in range(14)]
    torch.save({"format": CHECKPOINT_FORMAT, "config": {**model.config, "hidden": 8},
                "vocab": vocab, "model": model.state_dict()}, mismatch)
    with pytest.raises(ValueError, match="do not match"):
        load_checkpoint(str(mismatch))
    no_vocab = tmp_path / "no_vocab.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "config": model.config, "model": {}}, no_vocab)
    with pytest.raises(ValueError, match="vocab"):
        load_checkpoint(str(no_vocab))
    with pytest.raises(FileNotFoundError, match="missing.pt: no such file"):
        load_checkpoint(str(tmp_path / "missing.pt"))


def test_a_missing_best_pt_names_the_runs_model(trained, tmp_path):
    # a run that validated nothing (fine-tuning's default) leaves last.pt alone: the message
    # for its best.pt names that file instead of a bare "no such file"
    model, _ = trained
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(FileNotFoundError) as bare:
        load_checkpoint(str(run / "best.pt"))
    assert str(bare.value) == f"{run / 'best.pt'}: no such file"
    save_checkpoint(make_checkpoint(model, [str(i) for i in range(10)]), str(run / "last.pt"))
    with pytest.raises(FileNotFoundError, match="validated nothing") as named:
        load_checkpoint(str(run / "best.pt"))
    assert str(named.value).endswith(f"its model is {run / 'last.pt'})")


def test_checkpoint_errors_are_short_and_say_why(trained, tmp_path):
    # torch.load's own messages are paragraphs ("Weights only load failed. In PyTorch 2.6, ...");
    # ours are short and still give the reason
    model, _ = trained
    good = tmp_path / "good.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "config": model.config, "model": model.state_dict(),
                "vocab": ["<pad>", "<unk>", "</s>", "<s>"] + [str(d) for d in range(10)]}, good)
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:5000])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "split.json").write_text('{"image_dir": "train", "records": []}')
    torch.save({"array": np.zeros(3)}, tmp_path / "numpy.pt")
    (tmp_path / "folder.pt").mkdir()
    for name, why in [("cut.pt", "truncated zip archive"), ("empty.pt", "empty file"),
                      ("split.json", "not a zip archive"), ("folder.pt", "a folder"),
                      ("numpy.pt", "weights_only load refused it: it holds numpy.")]:
        with pytest.raises(ValueError) as e:
            load_checkpoint(str(tmp_path / name))
        message = str(e.value)
        assert message.startswith(f"{tmp_path / name}: not a PyTorch checkpoint ({why}"), message
        assert "\n" not in message and len(message) < len(str(tmp_path)) + 200


# ---- the step -1 glimpse and the decoder's function -----------------------------------------

def reference_logits(model, images, tokens):
    """Teacher-forced logits (B, T-1, V) written out from the weights with plain tensor algebra,
    independently of Decoder: GRU cells by their equations, attention by its formula."""
    dec = model.decoder
    features, _ = model.encode(images)  # (B, L, C)
    B = features.size(0)
    att = dec.attention

    def attend(h_top):
        scores = torch.relu(features @ att.W.weight.T + att.W.bias
                            + (h_top @ att.U.weight.T + att.U.bias)[:, None]) @ att.v.weight.T
        alpha = torch.softmax(scores[:, :, 0], dim=1)  # (B, L)
        context = (alpha[:, :, None] * features).sum(1)  # (B, C)
        return torch.relu(torch.cat([context, h_top], 1) @ dec.output.weight.T + dec.output.bias)

    def gru(cell, x, h):
        gi = x @ cell.weight_ih.T + cell.bias_ih  # (B, 3D): r, z, n
        gh = h @ cell.weight_hh.T + cell.bias_hh
        r = torch.sigmoid(gi[:, :dec.hidden] + gh[:, :dec.hidden])
        z = torch.sigmoid(gi[:, dec.hidden:2 * dec.hidden] + gh[:, dec.hidden:2 * dec.hidden])
        n = torch.tanh(gi[:, 2 * dec.hidden:] + r * gh[:, 2 * dec.hidden:])
        return (1 - z) * n + z * h

    h1 = dec.h0[0].expand(B, -1)
    h2 = dec.h0[1].expand(B, -1)
    y = attend(h2)  # the glimpse: h_top = h0[1], nothing classified
    logits = []
    for t in range(tokens.size(1) - 1):
        x = torch.cat([y, dec.embedding.weight[tokens[:, t]]], 1)  # (B, 2D)
        h1 = gru(dec.rnn.cells[0], x, h1)
        h2 = gru(dec.rnn.cells[1], h1, h2)
        y = attend(h2)
        logits.append(y @ dec.classifier.weight.T + dec.classifier.bias)
    return torch.stack(logits, 1)


def randomized(config=TINY, seed=0):
    """A tiny model in eval mode with every parameter random (h0 included: it starts at zero)."""
    torch.manual_seed(seed)
    model = build_model(config).eval()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return model


def test_forward_equals_the_written_out_recurrence():
    model = randomized().double()  # float64: the two orders of summation agree to ~1e-15
    images = torch.randn(3, 3, 24, 24, dtype=torch.float64)
    tokens = make_tokens([[1, 2, 3], [4], [5, 6]])
    with torch.no_grad():
        logits, _ = model(images, tokens)
        expected = reference_logits(model, images, tokens)
    torch.testing.assert_close(logits, expected, rtol=1e-10, atol=1e-10)


def test_glimpse_is_the_first_steps_previous_output():
    """Step 0's GRU input is [y, embed(<s>)] with the glimpse y = relu(fc([context, h0[1]])),
    context attended from h0[1]."""
    model = randomized()
    seen = []
    model.decoder.rnn.cells[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    images = torch.randn(2, 3, 24, 24)
    tokens = make_tokens([[1, 2], [3]])
    with torch.no_grad():
        model(images, tokens)
        features, _ = model.encode(images)
        dec = model.decoder
        h0 = dec.h0[:, None].expand(2, 2, dec.hidden)  # (2, B, D)
        context, _ = dec.attention(features, dec.attention.project(features), h0[1])
        glimpse = torch.relu(dec.output(torch.cat([context, h0[1]], 1)))  # (B, D)
    first = seen[0][:, :dec.hidden]  # (B, D) the "previous output" half of step 0's input
    torch.testing.assert_close(first, glimpse)
    assert first.abs().sum() > 0
    assert not torch.allclose(first[0], first[1])  # it depends on the image


def first_gru_input(model, images, tokens):
    """The "previous output" half (B, D) of the GRU input at step 0 of teacher forcing."""
    seen = []
    hook = model.decoder.rnn.cells[0].register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    with torch.no_grad():
        logits, _ = model(images, tokens)
    hook.remove()
    return seen[0][:, :model.decoder.hidden], logits[:, 0]


def test_step_zero_input_depends_on_h0_top_and_features():
    model = randomized()
    images = torch.randn(2, 3, 24, 24)
    tokens = make_tokens([[1], [2]])
    base, logits = first_gru_input(model, images, tokens)
    other_images, _ = first_gru_input(model, images.flip(0), tokens)
    torch.testing.assert_close(other_images, base.flip(0))  # row by row: no mixing in the batch
    assert not torch.allclose(other_images[0], base[0])
    with torch.no_grad():
        model.decoder.h0[1] += 0.5  # the top layer's h0 is what the glimpse attends from
    moved, _ = first_gru_input(model, images, tokens)
    assert not torch.allclose(moved, base)
    with torch.no_grad():
        model.decoder.h0[1] -= 0.5
    model.decoder.glimpse = False  # the old function: zeros, whatever the image
    zeros, old_logits = first_gru_input(model, images, tokens)
    assert torch.all(zeros == 0)
    assert not torch.allclose(old_logits, logits, atol=1e-4)


def test_dropout_before_the_classifier_only_in_training():
    torch.manual_seed(0)
    model = build_model({**TINY, "dropout": 0.5}).train()
    y = torch.ones(2, TINY["hidden"])
    kept = model.decoder.classifier(y)
    assert not torch.allclose(model.decoder.logits(y), kept)  # some of y zeroed, the rest scaled
    model.eval()
    torch.testing.assert_close(model.decoder.logits(y), kept)


def test_glimpse_config_and_old_checkpoints(trained, tmp_path, capsys):
    with pytest.raises(ValueError, match="glimpse"):
        build_model({**TINY, "glimpse": 1})
    with pytest.raises(ValueError, match="normalize"):
        build_model({**TINY, "normalize": "yes"})
    model, images = trained
    assert model.config["glimpse"] is True  # the decoding tests above run with the glimpse
    vocab = ["<pad>", "<unk>", "</s>", "<s>"] + [str(d) for d in range(10)]
    old_config = {k: v for k, v in model.config.items() if k != "glimpse"}
    path = tmp_path / "old.pt"
    torch.save({"format": "svhn-attention-ocr/1", "config": old_config, "vocab": vocab,
                "model": model.state_dict()}, path)
    loaded, ckpt = load_checkpoint(str(path))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "older checkpoint" in err and "glimpse" in err
    assert loaded.config["glimpse"] is False and ckpt["config"]["glimpse"] is False
    assert loaded.config["normalize"] is True  # format 1 fed the encoder [-1, 1]
    without = build_model({**model.config, "glimpse": False, "normalize": True}).eval()
    without.load_state_dict(model.state_dict())
    torch.testing.assert_close(loaded.decode(images)["logprob"], without.decode(images)["logprob"])
    assert CHECKPOINT_FORMAT == "svhn-attention-ocr/2"
    torch.save({"format": "svhn-attention-ocr/0", "config": old_config, "vocab": vocab,
                "model": model.state_dict()}, path)
    with pytest.raises(ValueError, match="not an svhn-attention-ocr checkpoint"):
        load_checkpoint(str(path))


def _save(path, model, **changes):
    vocab = ["<pad>", "<unk>", "</s>", "<s>"] + [str(d) for d in range(10)]
    ckpt = {"format": CHECKPOINT_FORMAT, "config": dict(model.config), "vocab": vocab,
            "model": model.state_dict()}
    ckpt.update(changes)
    torch.save(ckpt, path)
    return str(path)


def test_checkpoint_messages_are_whole_and_say_why(trained, tmp_path):
    # each message is whole and says why: a pickled object's refusal, a plain pickle (not
    # "truncated"), a weights mismatch (beyond "Error(s) in loading state_dict for AttentionOCR:")
    import pickle

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))
    model, _ = trained
    torch.save({"format": CHECKPOINT_FORMAT, "payload": Payload()}, tmp_path / "evil.pt")
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({"format": CHECKPOINT_FORMAT}, f)
    small = {**model.config, "hidden": 8}
    smaller = _save(tmp_path / "smaller.pt", model, config=small)
    cases = [("evil.pt", "weights_only load refused it: it holds print, a pickled object that "
              "could run code when loaded"),
             ("plain.pkl", "a plain pickle, not a torch.save zip archive"),
             ("smaller.pt", "weights do not match the model config: decoder.h0 has shape (2, 32), "
              "the config makes (2, 8)")]
    for name, why in cases:
        with pytest.raises(ValueError) as e:
            load_checkpoint(str(tmp_path / name))
        message = str(e.value)
        assert why in message and "\n" not in message, message
        assert "truncated" not in message and not message.endswith(":"), message
    assert smaller.endswith("smaller.pt")


@pytest.mark.parametrize("key, value, why", [
    ("hidden", 10 ** 9, "'hidden' must be an int in 1..8192, got 1000000000"),
    ("plan", "64 M 1000000000", "beyond the limits"),
    ("max_len", 10 ** 12, "'max_len' must be an int in 1..256"),
    ("vocab_size", 10 ** 9, "'vocab_size' must be an int in 1..1024"),
    ("dropout", "0.1", "'dropout' must be in [0, 1)"),
    ("crop_size", 100, "'crop_size' 100 is larger than 'image_size' 64")])
def test_checkpoint_config_out_of_bounds_is_refused_before_building(trained, tmp_path, monkeypatch,
                                                                    key, value, why):
    # hidden = 10**9 made eval.py allocate 8.5 GB, then die with a RuntimeError traceback
    model, _ = trained
    path = _save(tmp_path / "big.pt", model, config={**model.config, key: value})
    built = []
    real = AttentionOCR.__init__
    monkeypatch.setattr(AttentionOCR, "__init__", lambda self, c: built.append(c) or real(self, c))
    with pytest.raises(ValueError) as e:
        load_checkpoint(path)
    assert why in str(e.value) and "bad model config" in str(e.value), str(e.value)
    assert not built


def test_weights_are_checked_on_the_meta_device_first(trained, tmp_path, monkeypatch):
    # a config that fits the limits but not the weights is found without allocating the model
    model, _ = trained
    path = _save(tmp_path / "wide.pt", model, config={**model.config, "hidden": 4096})
    real = AttentionOCR.__init__
    devices = []

    def spy(self, config):
        devices.append(torch.empty(0).device.type)  # the default device while building
        real(self, config)
    monkeypatch.setattr(AttentionOCR, "__init__", spy)
    with pytest.raises(ValueError, match="weights do not match the model config"):
        load_checkpoint(path)
    assert devices == ["meta"]


def test_resume_needs_more_than_evaluation(trained, tmp_path):
    # a checkpoint eval.py accepts (format, config, vocab, model) gave KeyError: 'args' on resume;
    # a string 'args' gave AttributeError
    model, _ = trained
    weights = _save(tmp_path / "weights.pt", model)
    load_checkpoint(weights)  # fine to evaluate
    with pytest.raises(ValueError) as e:
        load_checkpoint(weights, resume=True)
    assert "cannot resume from it: 'optimizer' must be a dict, it is missing" in str(e.value)
    full = {"optimizer": {}, "scheduler": {}, "rng": {}, "args": {}, "epoch": 1, "step": 3,
            "best_metric": 0.5}
    load_checkpoint(_save(tmp_path / "full.pt", model, **full), resume=True)
    bad_values = [("args", "--epochs 3"), ("epoch", "1"), ("epoch", True), ("best_metric", None)]
    for key, bad in bad_values:
        with pytest.raises(ValueError) as e:
            load_checkpoint(_save(tmp_path / "bad.pt", model, **{**full, key: bad}), resume=True)
        assert f"cannot resume from it: {key!r} must be a" in str(e.value), (key, str(e.value))
    with pytest.raises(ValueError, match="'vocab' must be a list of strings"):
        load_checkpoint(_save(tmp_path / "v.pt", model, vocab=[0] * 14))


# ---- reference values: a hand-set model computed by hand -------------------------------------
# Every weight is set by a formula (no random init), the encoder's convolution is summed term by
# term and every step of the decoder is written out from the equations, in float64. forward
# (logits, loss) and decode (tokens, probabilities, attention) must agree with it, and the loss
# with a pinned number. Whatever in the decoder's wiring changes (GRU layers' states swapped,
# attention queried with the lower layer, zeros for the glimpse, an input concatenated the other
# way round, positions flattened column by column), the numbers move.

HAND = {"plan": "2", "hidden": 3, "vocab_size": 6, "max_len": 3}  # tokens 4 and 5 are digits


def hand_set(config=HAND):
    """The model of HAND with weights 0.6 * sin(offset + 0.7 k) (k = flat index; one offset per
    tensor), BatchNorm an identity up to its eps, classifier biases chosen so that greedy
    decoding reads different digits in each image (every choice won by at least 0.08 nats)
    and that <pad> and <s>, which it must never choose, score highest."""
    model = build_model(config).double().eval()
    with torch.no_grad():
        for offset, (name, p) in enumerate(sorted(model.named_parameters())):
            k = torch.arange(p.numel(), dtype=torch.float64)
            p.copy_((0.6 * torch.sin(offset + 0.7 * k)).view_as(p))
        bn = model.encoder.features[1]
        bn.weight.fill_(1.0)
        bn.bias.fill_(0.0)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
        model.decoder.classifier.bias.copy_(torch.tensor([3.0, -2.0, 0.0, 3.0, 0.0, 0.75]))
    return model


def hand_images():
    """Two 3-channel 3x4 images, values by formula (3 rows, 4 columns: 12 positions)."""
    k = torch.arange(2 * 3 * 3 * 4, dtype=torch.float64)
    return torch.cos(0.3 * k).view(2, 3, 3, 4)


class ByHand:
    """The model's function written out term by term from its weights (one image at a time)."""

    def __init__(self, model, image):
        p = {name: t.detach() for name, t in model.named_parameters()}
        self.p = p
        conv = p["encoder.features.0.weight"]  # (2, 3, 3, 3)
        eps = model.encoder.features[1].eps
        C, H, W = 2, image.shape[1], image.shape[2]
        self.features = []  # L = H * W positions, row by row, each a list of C numbers
        for i in range(H):
            for j in range(W):
                f = []
                for o in range(C):
                    total = 0.0
                    for c in range(3):
                        for di in range(3):
                            for dj in range(3):
                                y, x = i + di - 1, j + dj - 1  # padding 1: zero outside
                                if 0 <= y < H and 0 <= x < W:
                                    total += float(conv[o, c, di, dj] * image[c, y, x])
                    f.append(max(total / math.sqrt(1.0 + eps), 0.0))  # BatchNorm, ReLU
                self.features.append(torch.tensor(f, dtype=torch.float64))
        self.F = torch.stack(self.features)  # (L, C)

    def linear(self, name, x):
        return self.p[name + ".weight"] @ x + self.p[name + ".bias"]

    def attend(self, h_top):
        """score_i = v . relu(W f_i + U h_top); softmax; context; y = relu(fc([context, h_top]))."""
        u = self.linear("decoder.attention.U", h_top)
        scores = torch.stack([self.p["decoder.attention.v.weight"][0]
                              @ torch.relu(self.linear("decoder.attention.W", f) + u)
                              for f in self.features])
        alpha = torch.exp(scores - scores.max())
        alpha = alpha / alpha.sum()
        context = (alpha[:, None] * self.F).sum(0)
        y = torch.relu(self.linear("decoder.output", torch.cat([context, h_top])))
        return y, alpha

    def gru(self, layer, x, h):
        """r = s(Wir x + bir + Whr h + bhr), z likewise, n = tanh(Win x + bin + r (Whn h + bhn)),
        h' = (1 - z) n + z h."""
        name = f"decoder.rnn.cells.{layer}"
        D = h.numel()
        gi = self.p[name + ".weight_ih"] @ x + self.p[name + ".bias_ih"]
        gh = self.p[name + ".weight_hh"] @ h + self.p[name + ".bias_hh"]
        r = torch.sigmoid(gi[:D] + gh[:D])
        z = torch.sigmoid(gi[D:2 * D] + gh[D:2 * D])
        n = torch.tanh(gi[2 * D:] + r * gh[2 * D:])
        return (1 - z) * n + z * h

    def start(self):
        """The glimpse: h = h0; attend from h0's top layer; its y is step 0's previous output."""
        h0 = self.p["decoder.h0"]
        y, _ = self.attend(h0[1])
        return (h0[0], h0[1], y)

    def step(self, token, state):
        h1, h2, y = state
        x = torch.cat([y, self.p["decoder.embedding.weight"][token]])  # [y, embed(token)]
        h1 = self.gru(0, x, h1)
        h2 = self.gru(1, h1, h2)
        y, alpha = self.attend(h2)
        logits = self.linear("decoder.classifier", y)
        return logits, alpha, (h1, h2, y)


def test_forward_and_loss_equal_the_model_computed_by_hand():
    model = hand_set()
    images = hand_images()
    tokens = torch.tensor([[3, 4, 5, 2], [3, 5, 2, 0]])  # <s> 4 5 </s>, <s> 5 </s> <pad>
    with torch.no_grad():
        logits, loss = model(images, tokens)
    terms = []
    for b in range(2):
        hand = ByHand(model, images[b])
        state = hand.start()
        for t in range(3):
            expected, _, state = hand.step(int(tokens[b, t]), state)
            torch.testing.assert_close(logits[b, t], expected, rtol=1e-12, atol=1e-12)
            target = int(tokens[b, t + 1])
            if target != 0:
                terms.append(torch.logsumexp(expected, 0) - expected[target])
    assert len(terms) == 5  # 3 + 2 targets; the <pad> target is not counted
    torch.testing.assert_close(loss, torch.stack(terms).mean().float(), rtol=1e-6, atol=1e-7)
    assert loss.item() == pytest.approx(LOSS_BY_HAND, rel=1e-6)


def test_decode_equals_greedy_by_hand():
    model = hand_set()
    images = hand_images()
    out = model.decode(images)
    assert out["feature_hw"] == (3, 4)
    for b in range(2):
        hand = ByHand(model, images[b])
        state, token, logprob, tokens = hand.start(), 3, 0.0, []
        for t in range(HAND["max_len"] + 1):
            logits, alpha, state = hand.step(token, state)
            logp = torch.log_softmax(logits, 0)
            allowed = [2] if t == HAND["max_len"] else [1, 2, 4, 5]  # never <pad> or <s>
            token = max(allowed, key=lambda v: float(logp[v]))
            torch.testing.assert_close(out["attention"][b, t].double(), alpha, rtol=1e-5, atol=1e-6)
            assert out["probs"][b, t].item() == pytest.approx(math.exp(logp[token]), rel=1e-5)
            logprob += float(logp[token])
            if token == 2:
                break
            tokens.append(token)
        assert out["tokens"][b] == tokens
        assert out["logprob"][b].item() == pytest.approx(logprob, rel=1e-5)
    assert out["tokens"] == DECODED_BY_HAND


LOSS_BY_HAND = 3.8732332527899955  # ByHand's, in float64 (it pins the by-hand code too)
DECODED_BY_HAND = [[4, 5, 5], [5, 5, 5]]


def test_normalize_flag_maps_inputs_inside_the_model():
    plain = randomized()
    norm = build_model({**TINY, "normalize": True}).eval()
    norm.load_state_dict(plain.state_dict())
    images = torch.rand(2, 3, 24, 24)  # [0, 1], as data.py gives every model
    tokens = make_tokens([[1, 2], [3]])
    with torch.no_grad():
        expected, _ = plain((images - 0.5) / 0.5, tokens)
        logits, _ = norm(images, tokens)
        unchanged, _ = plain(images, tokens)
    torch.testing.assert_close(logits, expected)
    assert not torch.allclose(logits, unchanged)
    assert DEFAULT_CONFIG["normalize"] is False


def test_h0_starts_from_a_standard_normal():
    # the seed draws its initial state with torch.randn; from zeros the glimpse would query the
    # image with the same (zero) state in every run
    torch.manual_seed(0)
    h0 = build_model().decoder.h0.detach()  # (2, 256)
    assert h0.shape == (2, 256)
    assert abs(h0.mean().item()) < 0.15 and 0.85 < h0.std().item() < 1.15


def test_loaded_config_is_complete(trained, tmp_path):
    # a checkpoint whose config predates a key (here: max_len) gave train.py --resume a KeyError
    model, _ = trained
    config = {k: v for k, v in model.config.items() if k != "max_len"}
    _, ckpt = load_checkpoint(_save(tmp_path / "old.pt", model, config=config))
    assert ckpt["config"]["max_len"] == DEFAULT_CONFIG["max_len"]


def test_vocabulary_must_fit_the_special_ids(trained, tmp_path):
    # decoding relies on vocab[eos_id] == "</s>": a shuffled vocabulary decoded garbage
    model, _ = trained
    vocab = ["<pad>", "<unk>", "</s>", "<s>"] + [str(d) for d in range(10)]
    swapped = [vocab[2], vocab[1], vocab[0]] + vocab[3:]
    with pytest.raises(ValueError, match="vocabulary token 0 is '</s>', but config 'pad_id'"):
        load_checkpoint(_save(tmp_path / "a.pt", model, vocab=swapped))
    with pytest.raises(ValueError, match="vocabulary repeats a token"):
        load_checkpoint(_save(tmp_path / "b.pt", model, vocab=vocab[:-1] + ["8"]))
