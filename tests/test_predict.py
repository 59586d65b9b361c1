"""predict.py (a folder of photos -> file,text,confidence) and export.py (ONNX, TorchScript): the
rows are the model's own answers, the exported models give the same tokens, and bad input is a
counted skip or a one-line error that replaces nothing."""
import csv
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from support import checkpoint
import export
import predict
from support.crops import eval_input
from support.images import open_image
from build_model import build_model
from helpers import overfit, write_images
from test_eval import TINY, VOCAB, write_checkpoint
from support.tokenizer import label_ids


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny model overfitted on whole photos like the `photos` fixture's: its answers differ
    from image to image, so agreement between two ways of running it means something."""
    folder = tmp_path_factory.mktemp("train")
    records = write_images(str(folder), n=8, seed=1)
    torch.manual_seed(0)
    images = torch.stack([eval_input(open_image(str(folder / r["name"])), 64, 54)
                          for r in records])
    texts = ["".join(map(str, r["digits"])) for r in records]
    ids = {c: VOCAB.index(c) for c in "0123456789"}
    rows = [torch.tensor([3] + [ids[c] for c in t] + [2]) for t in texts]
    tokens = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=0)
    model = build_model({**TINY, "hidden": 32, "vocab_size": len(VOCAB)})
    overfit(model, images, tokens, 120)
    with torch.no_grad():  # BatchNorm's running statistics settle on this batch
        for _ in range(20):
            model(images, tokens)
    path = str(tmp_path_factory.mktemp("ckpt") / "m.pt")
    checkpoint.save_checkpoint(checkpoint.make_checkpoint(model.eval(), VOCAB, epoch=1), path)
    return path


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    write_images(str(folder / "street"), n=5, seed=1)  # the training images' first five
    write_images(str(folder / "more"), n=3, seed=2)
    return folder


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def model_reads(ckpt_path, path):
    """The checkpoint's own greedy answer and sequence probability for one whole image."""
    model, ck = checkpoint.load_checkpoint(ckpt_path)
    x = eval_input(open_image(path), model.config["image_size"], model.config["crop_size"])
    with torch.no_grad():
        out = model.eval().decode(x[None])
    text = "".join(ck["vocab"][t] for t in label_ids(out["tokens"][0]))
    return text, float(out["logprob"][0].exp())


def test_a_row_per_readable_photo_with_the_models_answer(ckpt, photos, tmp_path, capsys):
    (photos / "empty.png").write_bytes(b"")
    (photos / "notes.jpg").write_text("not an image")
    Image.new("RGB", (4000, 1)).save(photos / "thin.png")  # read, it would be a smear's answer
    os.symlink(photos, photos / "more" / "loop")  # a directory loop: named, never followed twice
    if hasattr(os, "mkfifo"):
        os.mkfifo(photos / "pipe.png")  # would block a reader forever
    out = tmp_path / "out.csv"
    assert predict.main(["--checkpoint", ckpt, "--csv", str(out), str(photos), "--threads", "1",
                         "--batch-size", "3"]) == 0
    rows = rows_of(out)
    assert len(rows) == 8 and list(rows[0]) == ["file", "text", "confidence"]
    for row in rows:
        text, prob = model_reads(ckpt, row["file"])
        assert row["text"] == text
        assert float(row["confidence"]) == pytest.approx(prob, rel=1e-4, abs=1e-6)
        assert 0.0 <= float(row["confidence"]) <= 1.0
    err = capsys.readouterr().err
    assert "empty.png: an empty file (0 bytes)" in err
    assert "notes.jpg: cannot identify image file" in err or "notes.jpg:" in err
    assert "a directory loop" in err
    assert "thin.png: cannot read image (4000 x 1 pixels: too thin to hold text" in err
    skipped = 5 if hasattr(os, "mkfifo") else 4
    assert f"{skipped} skipped" in err


def test_boxes_are_used_as_given(ckpt, photos, tmp_path):
    first = photos / "street" / "1.png"
    (photos / "boxes.csv").write_text("name,left,top,width,height\nstreet/1.png,8,4,30,30\n")
    out = tmp_path / "out.csv"
    assert predict.main(["--checkpoint", ckpt, "--csv", str(out), str(first), "--boxes",
                         str(photos / "boxes.csv"), "--threads", "1"]) == 0
    model, ck = checkpoint.load_checkpoint(ckpt)
    x = eval_input(open_image(str(first), (8, 4, 30, 30)), model.config["image_size"],
                   model.config["crop_size"])
    with torch.no_grad():
        want = model.eval().decode(x[None])["tokens"][0]
    assert rows_of(out)[0]["text"] == "".join(ck["vocab"][t] for t in want)
    # the same box from a European Excel's CSV, fields separated by semicolons
    (photos / "semi.csv").write_text("name;left;top;width;height\nstreet/1.png;8;4;30;30\n")
    assert predict.read_boxes(str(photos / "semi.csv"))[0] == predict.read_boxes(
        str(photos / "boxes.csv"))[0]
    # and by its corners, as Pascal VOC's xmin,ymin,xmax,ymax name them
    (photos / "voc.csv").write_text("name,xmin,ymin,xmax,ymax\nstreet/1.png,8,4,38,34\n")
    assert predict.read_boxes(str(photos / "voc.csv"))[0] == predict.read_boxes(
        str(photos / "boxes.csv"))[0]


@pytest.mark.parametrize("setup, words", [
    ("no_images", "no image files in"),
    ("exists", "exists; pass --overwrite"),
    ("unreadable", "none of the 1 image file(s) could be read"),
    ("bad_boxes", "expected name,left,top,width,height"),
])
def test_bad_input_is_one_line_and_replaces_nothing(ckpt, tmp_path, setup, words):
    folder = tmp_path / "in"
    folder.mkdir()
    out = tmp_path / "out.csv"
    args = ["--checkpoint", ckpt, "--csv", str(out), str(folder), "--threads", "1"]
    if setup == "no_images":
        (folder / "readme.txt").write_text("no photos here")
    else:
        write_images(str(folder), n=1)
    if setup == "exists":
        out.write_text("the user's own results")
    if setup == "unreadable":
        os.remove(folder / "1.png")
        (folder / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    if setup == "bad_boxes":
        (tmp_path / "b.csv").write_text("name,left,top,width,height\n1.png,1,2,x,4\n")
        args += ["--boxes", str(tmp_path / "b.csv")]
    with pytest.raises(SystemExit) as e:
        predict.main(args)
    message = str(e.value.code)
    assert message.startswith("predict.py: error: ") and "\n" not in message
    assert words in message, message
    if setup == "exists":
        assert out.read_text() == "the user's own results"
    else:
        assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_exported_model_gives_the_checkpoints_tokens(ckpt, photos, tmp_path, suffix):
    pytest.importorskip("onnxruntime") if suffix == ".onnx" else None
    path = str(tmp_path / f"model{suffix}")
    assert export.main(["--checkpoint", ckpt, "--out", path]) == 0
    meta = json.loads(open(path + ".json").read())
    assert meta["vocab"] == VOCAB and meta["input_shape"] == [None, 3, 54, 54]
    assert (meta["image_size"], meta["crop_size"], meta["eos_id"]) == (64, 54, 2)
    # on real image inputs (the evaluation input of each photo), token for token
    files = sorted(str(p) for p in photos.rglob("*.png"))
    images = torch.stack([eval_input(open_image(f), 64, 54) for f in files])
    tokens, probs = export.run_exported(path, images)
    assert tokens.dtype == torch.int64 and tokens.shape[0] == len(files)
    model, _ = checkpoint.load_checkpoint(ckpt)
    with torch.no_grad():
        want = model.eval().decode(images)
    texts = set()
    for row, p, ids in zip(tokens.tolist(), probs, want["tokens"]):
        end = row.index(meta["eos_id"])  # every row ends with </s>, then <pad>
        assert row[:end] == ids and set(row[end + 1:]) <= {meta["pad_id"]}
        assert float(p[:end + 1].prod()) == pytest.approx(1.0 * np.prod(
            [float(v) for v in p[:end + 1]]))
        texts.add(tuple(ids))
    assert len(texts) > 1  # the model's answers depend on the image: the comparison means much
    # an existing file is never replaced without --overwrite
    with pytest.raises(SystemExit) as e:
        export.main(["--checkpoint", ckpt, "--out", path])
    assert "exists; pass --overwrite" in str(e.value.code)
    with pytest.raises(SystemExit):
        export.main(["--checkpoint", ckpt, "--out", str(tmp_path / "model.zip")])


def test_exported_probabilities_are_the_models(ckpt, tmp_path):
    path = str(tmp_path / "model.pt")
    assert export.main(["--checkpoint", ckpt, "--out", path]) == 0
    images = torch.rand(4, 3, 54, 54, generator=torch.Generator().manual_seed(3))
    tokens, probs = export.run_exported(path, images)
    model, _ = checkpoint.load_checkpoint(ckpt)
    with torch.no_grad():
        out = model.eval().decode(images)
    seq = probs.clamp_min(1e-30).log().where(probs > 0, torch.zeros(())).sum(1).exp()
    assert torch.allclose(seq, out["logprob"].exp(), rtol=1e-4)


def test_a_wide_model_exports_its_shape(tmp_path):
    config = {**TINY, "image_size": [16, 64], "crop_size": [16, 64]}
    ckpt = write_checkpoint(tmp_path / "wide.pt", config)
    path = str(tmp_path / "wide.pt.onnx")
    pytest.importorskip("onnxruntime")
    assert export.main(["--checkpoint", ckpt, "--out", path]) == 0
    assert json.loads(open(path + ".json").read())["input_shape"] == [None, 3, 16, 64]
    tokens, _ = export.run_exported(path, torch.rand(2, 3, 16, 64))
    assert tokens.shape == (2, config.get("max_len", 8) + 1)


def test_a_photo_image_in_any_mode(ckpt, tmp_path):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 90), dtype=np.uint8))
    img.save(tmp_path / "grey.png")
    out = tmp_path / "out.csv"
    assert predict.main(["--checkpoint", ckpt, "--csv", str(out), str(tmp_path / "grey.png"),
                         "--threads", "1"]) == 0
    assert len(rows_of(out)) == 1


def test_keep_aspect_reads_wide_photos_at_the_models_scale(ckpt, photos, tmp_path):
    # a 3:1 photo: its input keeps the aspect at the input's height (64 -> 192 wide, minus the
    # checkpoint's 10-pixel crop margin), where squash would make it 54 x 54
    img = Image.new("RGB", (300, 100), (10, 20, 30))
    x = predict.keep_aspect_input(img, 64, 54)
    assert x.shape == (3, 54, 182)
    assert predict.keep_aspect_input(Image.new("RGB", (10, 100)), 64, 54).shape == (3, 54, 54)
    assert predict.keep_aspect_input(Image.new("RGB", (5000, 10)), 64, 54).shape[-1] == 8 * 64 - 10
    # inputs of several widths are decoded in groups of one shape, never padded to a common one
    groups, bad = predict.collate_photos([(0, torch.ones(3, 54, 60), None),
                                          (1, torch.ones(3, 54, 54), None),
                                          (2, None, "broken"), (3, torch.zeros(3, 54, 60), None)])
    assert [(indices, tuple(x.shape)) for indices, x in groups] == [([0, 3], (2, 3, 54, 60)),
                                                                    ([1], (1, 3, 54, 54))]
    assert bad == [(2, "broken")] and groups[1][1].min() == 1
    out = tmp_path / "out.csv"
    assert predict.main(["--checkpoint", ckpt, "--csv", str(out), str(photos), "--threads", "1",
                         "--fit", "keep-aspect"]) == 0
    rows = rows_of(out)
    assert len(rows) == 8 and [r["file"] for r in rows] == sorted(r["file"] for r in rows)
