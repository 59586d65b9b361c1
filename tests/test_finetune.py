"""Letters end to end (labels CSV -> tokenizer -> training -> decoding -> eval report) and
train.py --init: fine-tuning keeps the old characters' rows bit for bit and adds new ones."""
import contextlib
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import build_model
import checkpoint
import data
import engine
import eval as ev
import prepare_data
import train
from helpers import overfit
from records import load_split
from tokenizer import (UNK, build_tokenizer, extend_vocab, token_text, tokenizer_from_vocab,
                       tokens_to_text, unknown_chars)

TINY = ["--plan", "8 M 16", "--hidden", "16", "--image-size", "32", "--crop-size", "28",
        "--batch-size", "4", "--threads", "1", "--workers", "0"]
LETTERED = ["A7", "QB", "0K", "ZZ9", "007", "XK", "B", "K0Q"]  # leading zeros, letters, repeats


def write_set(folder, labels, name="train.csv", seed=0, max_len=8):
    """Images with a distinct background each and their text drawn, a labels CSV, its JSON."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    rows = ["name,text,left,top,width,height"]
    for i, text in enumerate(labels):
        img = Image.new("RGB", (60, 30), tuple(int(v) for v in rng.integers(0, 160, 3)))
        ImageDraw.Draw(img).text((10, 10), text, fill=(255, 255, 255))
        img.save(os.path.join(folder, f"{i}.png"))
        box = "5,5,50,20" if i % 2 else ","  # half with a box, half the whole image
        rows.append(f"{i}.png,{text},{box}" if i % 2 else f"{i}.png,{text}")
    csv_path = os.path.join(folder, name)
    with open(csv_path, "w") as f:
        f.write("\n".join(rows) + "\n")
    assert prepare_data.main(["--csv", csv_path, "--max-len", str(max_len)]) == 0
    return csv_path[:-4] + ".json"


@pytest.fixture(scope="module")
def lettered(tmp_path_factory):
    return write_set(str(tmp_path_factory.mktemp("letters")), LETTERED)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_set(str(tmp_path_factory.mktemp("digits")), ["12", "345", "9", "60", "78"])


def run_train(json_path, out, *extra):
    return train.main(["--train-json", json_path, "--val-size", "0", *TINY, "--out", str(out),
                       "--plot", str(out / "copy.png"), *extra])


# -- letters: tokenizer, overfitting, decoding, report ------------------------------------------

def test_tokenizer_one_token_per_character():
    enc = build_tokenizer([{"text": "A7"}, {"text": "QB"}, {"digits": [0, 7]}])
    assert enc.vocab == ["<pad>", "<unk>", "</s>", "<s>", "A", "7", "Q", "B", "0"]
    assert enc.encode(token_text("BA07")).tolist() == [3, 7, 4, 8, 5, 2]
    assert enc.encode(token_text("A Z")).tolist() == [3, 4, 1, 1, 2]  # unknowns: <unk>
    assert tokenizer_from_vocab(enc.vocab).vocab == enc.vocab
    assert extend_vocab(enc.vocab, [{"text": "ZA"}, {"text": "Z1"}]) == enc.vocab + ["Z", "1"]
    assert unknown_chars(["AZ", "ZZ1"], enc.vocab) == {"Z": 3, "1": 1}


@pytest.fixture
def one_thread():
    """Two threads on a tiny model fight over a busy machine's cores; one is faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tiny_model_overfits_letters_and_the_report_reads_them(lettered, tmp_path, one_thread):
    torch.manual_seed(0)
    ds = data.SVHNDataset(lettered, image_size=32, crop_size=28)
    vocab = ds.tokenizer.vocab
    assert set("AQBKZX") <= set(vocab)
    images, tokens, _ = data.collate([ds[i] for i in range(len(ds))])
    config = {"plan": "8 M 16", "hidden": 32, "image_size": 32, "crop_size": 28,
              "vocab_size": len(vocab)}
    model = build_model.build_model(config)
    overfit(model, images, tokens, 150)
    with torch.no_grad():  # BatchNorm's running statistics settle on this batch
        for _ in range(20):
            model(images, tokens)
    out = model.eval().decode(images)
    assert [tokens_to_text(t, vocab) for t in out["tokens"]] == LETTERED
    ckpt = tmp_path / "letters.pt"
    checkpoint.save_checkpoint(checkpoint.make_checkpoint(model, vocab, epoch=1), str(ckpt))
    report = ev.run(ev.parse_args(["--checkpoint", str(ckpt), "--json", lettered, "--workers", "0",
                                   "--report", str(tmp_path / "r.json")]))
    assert report["sequence_accuracy"] == 1.0 and report["worst_mistakes"] == []
    assert report["unknown_characters"] == {} and report["attention_steps"] == 0
    assert report["attention_skipped_images"] == len(LETTERED)  # no per-character boxes
    # a test set with characters the vocabulary lacks: counted and reported, never right
    other = write_set(str(tmp_path / "other"), ["A7", "W7", "QQV"], name="test.csv")
    report = ev.run(ev.parse_args(["--checkpoint", str(ckpt), "--json", other, "--workers", "0",
                                   "--report", str(tmp_path / "r2.json")]))
    assert report["unknown_characters"] == {"V": 1, "W": 1}
    assert report["images_with_unknown_characters"] == 2
    truths = {m["truth"] for m in report["worst_mistakes"]}
    assert {"W7", "QQV"} <= truths  # the real text, not '<unk>'
    assert json.loads((tmp_path / "r2.json").read_text())["unknown_characters"] == {"V": 1, "W": 1}


def test_unk_prediction_never_matches_an_unknown_character():
    vocab = ["<pad>", "<unk>", "</s>", "<s>", "A"]
    res = {"pred": [[4, 1], [4]], "truth": [[4, 1], [4]], "logprob": [-0.1, -0.2],
           "hits": 0, "steps": 0, "loss_sum": 0.0, "loss_count": 0}
    report, correct, _ = ev.summarize(res, vocab, labels=["AW", "A"], max_len=1)
    assert correct.tolist() == [False, True] and report["sequence_accuracy"] == 0.5
    assert report["worst_mistakes"][0]["truth"] == "AW"
    assert report["images_longer_than_max_len"] == 1


def test_train_py_learns_a_lettered_vocabulary(lettered, tmp_path):
    assert run_train(lettered, tmp_path, "--epochs", "1", "--val-json", lettered) == 0
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["vocab"] == build_tokenizer(load_split(lettered)[1]).vocab
    assert 0.0 <= ckpt["best_metric"] <= 1.0  # validated on --val-json


# -- fine-tuning ---------------------------------------------------------------------------------

def test_load_grown_copies_old_rows_exactly():
    torch.manual_seed(0)
    old = build_model.build_model({"plan": "8 M", "hidden": 8, "vocab_size": 6})
    torch.manual_seed(1)
    new = build_model.build_model({"plan": "8 M", "hidden": 8, "vocab_size": 9})
    fresh = {k: v.clone() for k, v in new.state_dict().items()}
    build_model.load_grown(new, old.state_dict(), 6)
    for key, value in new.state_dict().items():
        if key in build_model.VOCAB_ROWS:
            assert torch.equal(value[:6], old.state_dict()[key])
            assert torch.equal(value[6:], fresh[key][6:])
        else:
            assert torch.equal(value, old.state_dict()[key]), key
    with pytest.raises(ValueError, match="rows"):
        build_model.load_grown(old, new.state_dict(), 9)


def test_init_keeps_old_rows_bit_identical_and_adds_new_ones(digits, lettered, tmp_path, capsys):
    assert run_train(digits, tmp_path / "base", "--epochs", "1") == 0
    base = torch.load(tmp_path / "base" / "last.pt", weights_only=True)
    # lr 0: the fine-tuning run's weights are exactly where --init put them
    assert run_train(lettered, tmp_path / "ft", "--init", str(tmp_path / "base" / "last.pt"),
                     "--epochs", "1", "--lr", "0") == 0
    assert "tokens kept, " in capsys.readouterr().out
    ft = torch.load(tmp_path / "ft" / "last.pt", weights_only=True)
    old = len(base["vocab"])
    assert ft["vocab"][:old] == base["vocab"]
    assert ft["vocab"][old:] == [c for c in "A7QB0KZX" if c not in base["vocab"]]
    assert ft["config"]["vocab_size"] == len(ft["vocab"])
    assert ft["config"]["plan"] == "8 M 16" and ft["epoch"] == 1
    for key, value in base["model"].items():
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # BatchNorm statistics follow the new images even at lr 0
        if key in build_model.VOCAB_ROWS:
            assert torch.equal(ft["model"][key][:old], value), key
            assert ft["model"][key].shape[0] == len(ft["vocab"])
        else:
            assert torch.equal(ft["model"][key], value), key
    # a fresh optimizer and schedule: one epoch's steps, not the base run's plus these
    assert ft["step"] == 2 and ft["args"]["init"].endswith("last.pt")
    # with a learning rate it trains, and eval.py reads its letters
    assert run_train(lettered, tmp_path / "ft2", "--init", str(tmp_path / "base" / "last.pt"),
                     "--epochs", "2", "--lr", "3e-3") == 0
    ft2 = torch.load(tmp_path / "ft2" / "last.pt", weights_only=True)
    assert not torch.equal(ft2["model"]["decoder.classifier.weight"][:old],
                           base["model"]["decoder.classifier.weight"])


def test_init_defaults_and_refusals(digits, lettered, tmp_path):
    args = train.parse_args(["--init", "x.pt"])
    assert (args.epochs, args.lr, args.schedule, args.val_size) == (
        train.FINETUNE["epochs"], train.FINETUNE["lr"], train.FINETUNE["schedule"], 0)
    assert args.dropout == train.FINETUNE["dropout"] and "dropout" in args.model_flags
    args = train.parse_args(["--init", "x.pt", "--epochs", "3", "--lr", "1e-3"])
    assert (args.epochs, args.lr) == (3, 1e-3)
    assert train.parse_args([]).epochs != train.FINETUNE["epochs"]  # the recipe is untouched
    assert train.parse_args(["--val-json", "v.json"]).val_size == 0
    with pytest.raises(SystemExit):
        train.parse_args(["--val-json", "v.json", "--val-size", "5"])
    assert run_train(digits, tmp_path / "base", "--epochs", "1") == 0
    base = str(tmp_path / "base" / "last.pt")
    with pytest.raises(SystemExit) as e:  # the model comes from the checkpoint
        run_train(lettered, tmp_path / "a", "--init", base, "--epochs", "1", "--hidden", "32")
    assert "--init keeps the checkpoint's model" in str(e.value.code)
    long_json = write_set(str(tmp_path / "long"), ["ABCDEFGHI", "A"], max_len=9)
    with pytest.raises(SystemExit) as e:  # longer than max_len 8: one line naming the record
        run_train(long_json, tmp_path / "b", "--init", base, "--epochs", "1")
    assert "train.json: record '0.png'" in str(e.value.code) and "--max-len 8" in str(e.value.code)
    # max_len shapes no weight: --init may raise it
    assert run_train(long_json, tmp_path / "c", "--init", base, "--epochs", "1",
                     "--max-len", "9") == 0
    tuned = torch.load(tmp_path / "c" / "last.pt", weights_only=True)["config"]
    assert tuned["max_len"] == 9
    assert tuned["dropout"] == train.FINETUNE["dropout"] != build_model.DEFAULT_CONFIG["dropout"]
    # nor does the input size (a wide text may want more columns): the weights carry over
    assert run_train(digits, tmp_path / "d", "--init", base, "--epochs", "1", "--lr", "0",
                     "--image-size", "40", "--crop-size", "36") == 0
    grown = torch.load(tmp_path / "d" / "last.pt", weights_only=True)
    assert (grown["config"]["image_size"], grown["config"]["crop_size"]) == (40, 36)
    weight = "encoder.features.0.weight"
    assert torch.equal(grown["model"][weight], torch.load(base, weights_only=True)["model"][weight])


def test_validation_never_counts_an_unknown_character_as_read():
    class Model:
        def eval(self):
            return self

        def decode(self, images):
            return {"tokens": [[4, UNK], [4]]}  # <unk> "predicted" where the truth has one
    tokens = torch.tensor([[3, 4, UNK, 2], [3, 4, 2, 0]])
    acc = engine.validate(Model(), [(torch.zeros(2, 3, 4, 4), tokens, None)], torch.device("cpu"),
                          contextlib.nullcontext(), torch.contiguous_format, ddp=False)
    assert acc == 0.5
