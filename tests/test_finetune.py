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
from support import checkpoint
import data
from training import budget, engine, flags, start
import eval as ev
import prepare_data
import train
from helpers import overfit
from formats.records import load_split, record_text
from support.tokenizer import (UNK, build_tokenizer, extend_vocab, token_text, tokenizer_from_vocab,
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
    enc = build_tokenizer(["A7", "QB", "07"])
    assert enc.vocab == ["<pad>", "<unk>", "</s>", "<s>", "A", "7", "Q", "B", "0"]
    assert enc.encode(token_text("BA07")).tolist() == [3, 7, 4, 8, 5, 2]
    assert enc.encode(token_text("A Z")).tolist() == [3, 4, 1, 1, 2]  # unknowns: <unk>
    assert tokenizer_from_vocab(enc.vocab).vocab == enc.vocab
    assert extend_vocab(enc.vocab, ["ZA", "Z1"]) == enc.vocab + ["Z", "1"]
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
    assert ckpt["vocab"] == build_tokenizer(map(record_text, load_split(lettered)[1])).vocab
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
        None, flags.FINETUNE["lr"], flags.FINETUNE["schedule"], 0)  # epochs from the data
    assert args.dropout == flags.FINETUNE["dropout"] and "dropout" in args.model_flags
    args = train.parse_args(["--init", "x.pt", "--epochs", "3", "--lr", "1e-3"])
    assert (args.epochs, args.lr) == (3, 1e-3)
    assert train.parse_args([]).epochs != flags.FINETUNE["epochs"]  # the recipe is untouched
    assert train.parse_args(["--val-json", "v.json"]).val_size == 0
    with pytest.raises(SystemExit):
        train.parse_args(["--val-json", "v.json", "--val-size", "5"])
    assert run_train(digits, tmp_path / "base", "--epochs", "1") == 0
    base = str(tmp_path / "base" / "last.pt")
    with pytest.raises(SystemExit) as e:  # the model comes from the checkpoint
        run_train(lettered, tmp_path / "a", "--init", base, "--epochs", "1", "--hidden", "32")
    assert "--init keeps the checkpoint's model" in str(e.value.code)
    long_json = write_set(str(tmp_path / "long"), ["ABCDEFGHI", "A"], max_len=0)
    with pytest.raises(SystemExit) as e:  # an explicit cap below a text: one line naming it
        run_train(long_json, tmp_path / "b", "--init", base, "--epochs", "1", "--max-len", "8")
    assert "train.json: record 1 ('0.png')" in str(e.value.code)
    assert "--max-len 8" in str(e.value.code)
    # unless given, the cap follows the data: the longest text (9) + 2
    assert run_train(long_json, tmp_path / "c", "--init", base, "--epochs", "1") == 0
    tuned = torch.load(tmp_path / "c" / "last.pt", weights_only=True)["config"]
    assert tuned["max_len"] == 9 + flags.MAX_LEN_MARGIN
    # fine-tuning keeps last.pt (and best.pt), not a file per epoch
    assert not os.path.exists(tmp_path / "c" / "epoch-001.pt")
    assert tuned["dropout"] == flags.FINETUNE["dropout"] != build_model.DEFAULT_CONFIG["dropout"]
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


# -- any shape, any length ----------------------------------------------------------------------

def test_a_wide_input_end_to_end(tmp_path):
    # a wide 16 x 64 input: the checkpoint keeps the shape, the feature map is 2 x 8 and
    # attention runs over all 16 cells, eval.py and play.py read the shape from the checkpoint
    wide = write_set(str(tmp_path / "wide"), ["1234567890", "42", "0077", "123456789012"],
                     max_len=0)
    args = ["--train-json", wide, "--val-size", "0", "--plan", "8 M 16 M 16 M 16", "--hidden",
            "16", "--image-size", "16x64", "--crop-size", "16x64", "--epochs", "1",
            "--batch-size", "4", "--threads", "1", "--workers", "0", "--out", str(tmp_path / "r")]
    assert train.main(args) == 0
    ckpt = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert (ckpt["config"]["image_size"], ckpt["config"]["crop_size"]) == ([16, 64], [16, 64])
    assert ckpt["config"]["max_len"] == 12 + flags.MAX_LEN_MARGIN  # the longest text + 2
    model, _ = checkpoint.load_checkpoint(str(tmp_path / "r" / "last.pt"))
    out = model.eval().decode(torch.rand(2, 3, 16, 64))
    assert out["feature_hw"] == (2, 8) and out["attention"].shape[-1] == 16
    ds = data.SVHNDataset(wide, image_size=[16, 64], crop_size=[16, 64])
    assert ds[0][0].shape == (3, 16, 64)
    train_ds = data.SVHNDataset(wide, train=True, image_size=[20, 72], crop_size=[16, 64])
    assert train_ds[0][0].shape == (3, 16, 64)
    report = ev.run(ev.parse_args(["--checkpoint", str(tmp_path / "r" / "last.pt"), "--json",
                                   wide, "--workers", "0", "--report",
                                   str(tmp_path / "rep.json")]))
    assert report["num_images"] == 4
    # texts the checkpoint cannot emit: counted, and the first named by file and record
    longer = write_set(str(tmp_path / "longer"), ["42", "1234567890123456"], name="test.csv",
                       max_len=0)
    report = ev.run(ev.parse_args(["--checkpoint", str(tmp_path / "r" / "last.pt"), "--json",
                                   longer, "--workers", "0", "--report",
                                   str(tmp_path / "rep2.json")]))
    assert report["images_longer_than_max_len"] == 1
    assert report["first_longer_than_max_len"] == f"{longer}: record 2 ('1.png')"
    import play
    items, failed = play.main(["--checkpoint", str(tmp_path / "r" / "last.pt"), "--json", wide,
                               "-n", "2", "--out", str(tmp_path / "fig")])
    assert not failed and items[0]["maps"].shape[1:] == (16, 64)  # attention over the wide input
    with Image.open(tmp_path / "fig" / "attention.png") as fig:
        assert fig.size[0] > 2 * fig.size[1]  # wide panels


def test_a_stretch_capped_model_reads_its_input_alike_everywhere(tmp_path):
    # --max-stretch 1 at 16 x 64: the 2:1 photos keep their shape (32 columns, the rest padded);
    # the checkpoint keeps it, and eval.py's dataset, predict.py and play.py build the same input
    wide = write_set(str(tmp_path / "w"), ["12", "345", "67", "890"], max_len=0)
    out = tmp_path / "r"
    assert train.main(["--train-json", wide, "--plan", "8 M 16 M 16 M 16", "--hidden", "16",
                       "--image-size", "16x64", "--crop-size", "16x64", "--max-stretch", "1",
                       "--epochs", "1", "--batch-size", "4", "--threads", "1", "--workers", "0",
                       "--out", str(out)]) == 0
    model, ckpt = checkpoint.load_checkpoint(str(out / "last.pt"))
    assert ckpt["config"]["max_stretch"] == 1.0
    image_dir, records = load_split(wide)
    evaluated = data.SVHNDataset.evaluation((image_dir, records), None, model.config)
    import play
    import predict
    files = [os.path.join(image_dir, "0.png")]  # the whole image: no box
    photo = predict.PhotoSet(files, model.config)[0][1]
    assert torch.equal(photo, evaluated[0][0])
    assert torch.equal(play.load_file(files[0], None, model.config), photo)
    assert photo.shape == (3, 16, 64)
    assert torch.equal(photo[:, :, 32:], photo[:, :1, 63:].expand(3, 16, 32))  # one colour
    squashed = data.SVHNDataset((image_dir, records), image_size=[16, 64], crop_size=[16, 64])
    assert not torch.equal(squashed[0][0], photo)
    report = ev.run(ev.parse_args(["--checkpoint", str(out / "last.pt"), "--json", wide,
                                   "--workers", "0", "--report", str(tmp_path / "rep.json")]))
    assert report["num_images"] == 4
    for bad in ("-1", "nan", "100"):
        with pytest.raises(SystemExit):
            train.parse_args(["--max-stretch", bad])
    for bad in (-1, True, "4", 65):
        with pytest.raises(ValueError, match="max_stretch"):
            build_model.check_config({"plan": "8", "hidden": 8, "max_stretch": bad})


def test_size_flags_and_limits():
    assert build_model.parse_size("54") == 54 and build_model.parse_size("32x128") == [32, 128]
    assert build_model.parse_size("48X48") == 48  # a square stays an int, as the seed's config
    assert build_model.as_hw(54) == (54, 54) and build_model.as_hw([32, 128]) == (32, 128)
    for bad in ("32x", "x", "1x2x3", "wide"):
        with pytest.raises(ValueError, match="N or HxW"):
            build_model.parse_size(bad)
    with pytest.raises(SystemExit):
        train.parse_args(["--crop-size", "32by128"])
    base = {"plan": "8", "hidden": 8}
    with pytest.raises(ValueError, match="larger than 'image_size'"):
        build_model.check_config({**base, "image_size": [32, 100], "crop_size": [32, 128]})
    with pytest.raises(ValueError, match="above the limit"):  # 34 GB of activations refused
        build_model.check_config({**base, "image_size": 2048, "crop_size": 2048})
    with pytest.raises(ValueError, match="int or \\[H, W\\]"):
        build_model.check_config({**base, "image_size": [32, 0], "crop_size": 8})


def test_finetune_defaults_follow_the_data(tmp_path):
    # wide photos (3:1) of 40 images: a wide input at the checkpoint's height, none held out,
    # epochs from the number of images seen
    folder = tmp_path / "plates"
    os.makedirs(folder)
    rows = ["name,text"]
    for i in range(40):
        Image.new("RGB", (120, 40), (i, 0, 0)).save(folder / f"{i}.png")
        rows.append(f"{i}.png,AB{i}")
    (folder / "train.csv").write_text("\n".join(rows) + "\n")
    assert prepare_data.main(["--csv", str(folder / "train.csv")]) == 0
    args = train.parse_args(["--init", "x.pt", "--train-json", str(folder / "train.json")])
    chosen = start.finetune_defaults(args, {"image_size": 64, "crop_size": 54})
    assert chosen["image_size"] == chosen["crop_size"] == [54, 160]  # 54 x 3, in multiples of 8
    assert "val_size" not in chosen  # none held out: last.pt is the model
    low, high = start.FINETUNE_EPOCHS
    assert chosen["epochs"] == min(high, max(low, round(start.FINETUNE_IMAGES / 40)))
    assert chosen["augment_style"] == "seed"  # a square model keeps the seed's random crops
    assert "votes" not in chosen  # nor is a near-square model's reading by vote measured
    assert "elastic" not in chosen  # the warp bends the text style's lines only
    # a line reader (a wide input) keeps its input, whatever the images' aspect, and never
    # crops a character out of the line
    chosen = start.finetune_defaults(args, {"image_size": [32, 128], "crop_size": [32, 128]})
    assert chosen["image_size"] == chosen["crop_size"] == [32, 128]
    assert chosen["augment_style"] == "text"
    assert chosen["elastic"] == start.FINETUNE_ELASTIC  # its lines bent as another hand would
    assert "head" not in chosen  # no trained ctc head: the checkpoint's attention head
    assert chosen["votes"] == start.FINETUNE_VOTES  # its checkpoint reads by a vote
    # a reader trained with an auxiliary ctc head reads with it where every text ("AB0" to
    # "AB39") has a feature column per character at the input it widens to for that head (4
    # at most; 8:1 at its height, 32 x 256: 32 columns)
    reader = {"image_size": [32, 128], "crop_size": [32, 128], "aux_ctc": 0.5,
              "plan": "32 M 64 M 128 M 256"}
    chosen = start.finetune_defaults(args, reader)
    assert chosen["head"] == "ctc" and chosen["aux_ctc"] == 0.0
    assert chosen["image_size"] == chosen["crop_size"] == [32, 256]
    assert chosen["max_stretch"] == start.FINETUNE_LINE_STRETCH  # narrow photos keep their shape
    # 6 pools: 4 columns at the widened 32 x 256 hold the 4 characters (at 32 x 128, 2 would
    # not), 7 pools' 2 do not, and lines keep the attention head and the reader's own input
    assert start.finetune_defaults(args, {**reader, "plan": "8 M M M M M M"})["head"] == "ctc"
    lines = start.finetune_defaults(args, {**reader, "plan": "8 M M M M M M M"})
    assert "head" not in lines and lines["crop_size"] == [32, 128]
    assert "max_stretch" not in lines  # the checkpoint's own (init_from keeps it)
    # a ctc reader already wider (a fine-tuned one fine-tuned again) is never narrowed, and one
    # of another height widens at its own
    for shape, widened in (([32, 320], [32, 320]), ([40, 64], [40, 320])):
        ctc = {"image_size": shape, "crop_size": shape, "head": "ctc", "aux_ctc": 0.0}
        assert start.finetune_defaults(args, ctc)["crop_size"] == widened
    asked = train.parse_args(["--init", "x.pt", "--train-json", str(folder / "train.json"),
                              "--head", "ctc"])  # asked for: widened too
    assert start.finetune_defaults(asked, {"image_size": [32, 128], "crop_size": [32, 128]})[
        "crop_size"] == [32, 256]
    asked = train.parse_args(["--init", "x.pt", "--train-json", str(folder / "train.json"),
                              "--max-stretch", "0"])  # the squash asked for: kept
    assert "max_stretch" not in start.finetune_defaults(asked, reader)
    asked = train.parse_args(["--init", "x.pt", "--train-json", str(folder / "train.json"),
                              "--votes", "1"])  # the image alone asked for: kept
    assert "votes" not in start.finetune_defaults(asked, reader)
    asked = train.parse_args(["--init", "x.pt", "--train-json", str(folder / "train.json"),
                              "--elastic", "0"])  # no warp asked for: kept
    assert "elastic" not in start.finetune_defaults(asked, reader)
    for given in (["--head", "attention"], ["--aux-ctc", "0.5"]):  # a head asked for
        asked = train.parse_args(["--init", "x.pt", "--train-json", str(folder / "train.json"),
                                  *given])
        assert "head" not in start.finetune_defaults(asked, reader)
    # near-square images keep the checkpoint's shape; given flags are never replaced
    args = train.parse_args(["--init", "x.pt", "--train-json", str(folder / "train.json"),
                             "--crop-size", "40x120", "--image-size", "40x120", "--epochs", "3",
                             "--val-size", "0", "--augment-style", "photo", "--votes", "1"])
    assert start.finetune_defaults(args, {"image_size": 64, "crop_size": 54}) == {}
    assert start.finetune_defaults(args, {"image_size": [32, 128], "crop_size": [32, 128]}) == {}
    assert start.finetune_defaults(args, reader) == {}  # another height: the ctc weights misfit


def test_many_texts_with_new_characters_mix_in_synthetic_lines(tmp_path):
    # a line reader's vocabulary lacks a Chinese plate's province: where a fifth of the texts or
    # more hold such a character, every epoch mixes in the generator's lines; a few stray
    # symbols (a receipt's '<') do not; neither does a near-square model, nor a given value
    folder = tmp_path / "cn"
    os.makedirs(folder)
    reader = {"image_size": [32, 128], "crop_size": [32, 128]}
    vocab = list("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ")
    for new, mixed in ((10, True), (8, True), (7, False), (0, False)):  # of 40 texts
        rows = ["name,text"]
        for i in range(40):
            Image.new("RGB", (120, 40), (i, 0, 0)).save(folder / f"{i}.png")
            rows.append(f"{i}.png,{'皖' if i < new else 'A'}B{i:02d}")
        (folder / "train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        assert prepare_data.main(["--csv", str(folder / "train.csv")]) == 0
        args = train.parse_args(["--init", "x.pt", "--train-json", str(folder / "train.json")])
        chosen = start.finetune_defaults(args, reader, vocab)
        assert chosen.get("synth_mix") == (start.FINETUNE_SYNTH_MIX if mixed else None), new
        # the warp read fewer Chinese plates with the mix: it bends only lines without it
        assert chosen.get("elastic") == (None if mixed else start.FINETUNE_ELASTIC), new
    assert "synth_mix" not in start.finetune_defaults(args, {"image_size": 64, "crop_size": 54},
                                                      vocab[1:])  # "0" new to all, no reader
    given = train.parse_args(["--init", "x.pt", "--train-json", str(folder / "train.json"),
                              "--synth-mix", "0"])
    assert "synth_mix" not in start.finetune_defaults(given, reader, vocab[1:])


def test_max_minutes_cuts_the_epochs_and_records_it(digits, tmp_path):
    # a budget that the first epoch already uses up: one epoch, recorded as --epochs 1
    assert run_train(digits, tmp_path / "r", "--epochs", "50", "--schedule", "cosine",
                     "--max-minutes", "0.0001") == 0
    ckpt = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["args"]["epochs"] == 1
    assert not os.path.exists(tmp_path / "r" / "epoch-002.pt")
    # the rule: the epochs that fit in what is left, at the planned seconds an epoch
    assert budget.epochs_that_fit(10, 59.5, 1, 60.0, 50) == 1 + 9  # 9 more minutes
    assert budget.epochs_that_fit(10, 700, 3, 60.0, 50) == 3  # over: stop, keep the done
    assert budget.epochs_that_fit(10, 10, 1, 1.0, 50) == 50  # never above the plan
    assert budget.epochs_that_fit(0, 1e6, 1, 60.0, 50) == 50  # 0: no budget
    # a cut re-lays the cosine from its lr at the cut: it anneals to 0 by the new end
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1.0)
    args = train.parse_args(["--epochs", "10", "--schedule", "cosine", "--warmup", "0"])
    plan = budget.EpochPlan(args.epochs)
    sched = budget.make_scheduler(args, opt, steps_per_epoch=10, plan=plan)
    for _ in range(10):
        opt.step()
        sched.step()
    before = opt.param_groups[0]["lr"]
    budget.cut(plan, 2, 10, budget.cosine_factor(10, 100, 0, None))  # after the first epoch
    opt.step()
    sched.step()
    assert 0.95 * before < opt.param_groups[0]["lr"] < before  # no jump: 1 - cos(pi / 10)
    for _ in range(8):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] < 0.03 * before  # one step before 0
    with pytest.raises(SystemExit):
        train.parse_args(["--max-minutes", "-1"])


def test_odd_photos_train_and_read(tmp_path, capsys):
    # an 800 x 10 strip, a 2 x 2 dot, a grey+alpha and a 16-bit photo: training, eval.py and
    # predict.py read them all (the aspect a fine-tuning input takes is capped at 8:1); a
    # 100,000 x 10 strip or a 1 x 1 dot holds no text: prepare_data.py names it, predict.py
    # skips and counts it
    folder = tmp_path / "odd"
    folder.mkdir()
    Image.new("RGB", (800, 10), (200, 200, 200)).save(folder / "strip.png")
    Image.new("RGB", (2, 2), (0, 0, 0)).save(folder / "dot.png")
    Image.new("LA", (40, 20), (120, 255)).save(folder / "grey.png")
    Image.fromarray(np.full((20, 60), 40000, np.uint16)).save(folder / "deep.png")
    (folder / "train.csv").write_text("name,text\nstrip.png,12345678901\ndot.png,1\n"
                                      "grey.png,AB\ndeep.png,7\n")
    assert prepare_data.main(["--csv", str(folder / "train.csv")]) == 0
    assert train.main(["--train-json", str(folder / "train.json"), "--val-size", "0", *TINY,
                       "--epochs", "1", "--out", str(tmp_path / "base")]) == 0
    args = train.parse_args(["--init", str(tmp_path / "base" / "last.pt"), "--train-json",
                             str(folder / "train.json")])
    chosen = start.finetune_defaults(args, {"image_size": 32, "crop_size": 28})
    assert chosen["crop_size"][1] <= 8 * 28 + 8
    Image.new("RGB", (100_000, 10), (200, 200, 200)).save(folder / "thin.png")
    Image.new("RGB", (1, 1), (0, 0, 0)).save(folder / "pixel.png")
    (folder / "more.csv").write_text("name,text\nthin.png,1\npixel.png,2\n")
    with pytest.raises(SystemExit) as refused:
        prepare_data.main(["--csv", str(folder / "more.csv")])
    err = str(refused.value)
    assert "more.csv line 2: image 'thin.png'" in err and "too thin to hold text" in err
    assert "(and 1 more problem(s) in this file)" in err and not (folder / "more.json").exists()
    import predict
    out = tmp_path / "p.csv"
    assert predict.main(["--checkpoint", str(tmp_path / "base" / "last.pt"), "--csv", str(out),
                         str(folder), "--threads", "1", "--fit", "keep-aspect"]) == 0
    assert len(out.read_text().splitlines()) == 1 + 4
    assert "2 skipped" in capsys.readouterr().err


def test_a_fine_tuning_run_resumes_with_its_data_chosen_defaults(digits, lettered, tmp_path,
                                                                 capsys):
    # resumed as it was started (--init, no --epochs): its epochs, shape and held-out images
    # come back from the checkpoint (with --epochs left None)
    assert run_train(digits, tmp_path / "base", "--epochs", "1") == 0
    base = str(tmp_path / "base" / "last.pt")
    assert run_train(lettered, tmp_path / "ft", "--init", base, "--epochs", "2") == 0
    ckpt = torch.load(tmp_path / "ft" / "last.pt", weights_only=True)
    assert run_train(lettered, tmp_path / "ft", "--init", base, "--resume", "auto") == 0
    assert "already holds epoch 2 of --epochs 2" in capsys.readouterr().out
    again = torch.load(tmp_path / "ft" / "last.pt", weights_only=True)
    assert again["epoch"] == 2 and again["config"] == ckpt["config"]


def test_a_run_from_before_a_flag_resumes_as_it_trained():
    # a checkpoint that recorded no --shear, --elastic or max_stretch trained without them: resuming
    # keeps that, and refuses any of them asked for, which would change the run halfway
    ckpt = {"config": {}, "args": {"epochs": 16, "schedule": "step"}, "epoch": 1}
    resumed = start.Resumed("old.pt", ckpt)
    fixed = start.adopt_resumed(train.parse_args(["--resume", "old.pt"]), resumed)
    assert fixed["shear"] == 0.0 and fixed["max_stretch"] == 0.0 and fixed["elastic"] == 0.0
    for flag, value in (("--shear", "10"), ("--max-stretch", "4"), ("--elastic", "0.1")):
        args = train.parse_args(["--resume", "old.pt", flag, value])
        why = f"old.pt: trained with {flag} 0.0, not {float(value)}"
        with pytest.raises(ValueError, match=why):
            start.adopt_resumed(args, resumed)


def test_bench_finetune_stops_with_one_line_where_a_step_fails(tmp_path, capfd):
    """A set whose photo went missing: train.py says which, and the bench stops with one line
    naming the step and the set's JSON, not a CalledProcessError traceback."""
    from bench import bench_finetune
    set_dir = tmp_path / "set"
    write_set(str(set_dir), ["12", "34"], "train.csv")
    os.rename(set_dir / "train.json", tmp_path / "train.json")
    write_set(str(set_dir), ["56", "78"], "test.csv")  # the same file names: its own images
    os.rename(tmp_path / "train.json", set_dir / "train.json")
    os.remove(set_dir / "1.png")
    with pytest.raises(SystemExit) as e:
        bench_finetune.main(["--checkpoint", "weights/reader.pt", "--sets", str(set_dir),
                             "--work", str(tmp_path / "work"), "--threads", "1"])
    assert e.value.code == (f"bench_finetune.py: error: train.py failed on {set_dir}/train.json "
                            f"(exit status 1; its message is above)")
    err = capfd.readouterr().err
    assert "1.png" in err and "Traceback" not in err
