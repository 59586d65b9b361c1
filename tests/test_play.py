"""play.py: attention figures for split images and user files of any mode; bad files skipped."""
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

import build_model
from support import checkpoint
import play
from helpers import write_split
from test_eval import VOCAB, write_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt")


def run(ckpt, out, *args):
    return play.main(["--checkpoint", ckpt, "--out", str(out), "--device", "cpu", *args])


def test_real_sample_image(ckpt, sample_dir, tmp_path):
    # 2.png is "23" with boxes left 77/98, top 29/25, width 23/26, height 32
    items, failed = run(ckpt, tmp_path, os.path.join(sample_dir, "2.png"),
                        "--crop", "77,25,47,36")
    assert not failed and len(items) == 1
    assert os.path.getsize(tmp_path / "attention_2.png") > 0
    assert os.path.getsize(tmp_path / "attention.png") > 0
    item = items[0]
    assert item["maps"].shape == (len(item["digits"]), 54, 54)
    assert len(item["probs"]) == len(item["digits"])
    assert_probabilities_are_the_models(ckpt, items)


def assert_probabilities_are_the_models(ckpt, items):
    """play.py's digits and probabilities equal the model's own decode of the same inputs (as
    play.py and eval.py decode: BatchNorm folded, channels_last; unfolded, the same digits and
    probabilities within rounding)."""
    model, _ = checkpoint.load_checkpoint(ckpt)
    images = torch.stack([it["image"] for it in items])
    unfolded = model.decode(images)
    fast = build_model.inference_model(model, "cpu")
    out = fast.decode(images.contiguous(memory_format=torch.channels_last))
    for b, item in enumerate(items):
        ids = out["tokens"][b]
        assert unfolded["tokens"][b] == ids
        assert item["probs"] == pytest.approx(unfolded["probs"][b, :len(ids)].tolist(), rel=1e-3)
        assert item["digits"] == [VOCAB[t] for t in ids]
        assert item["probs"] == pytest.approx(out["probs"][b, :len(ids)].tolist(), rel=1e-5)
        # the sequence's probability: its own row's, the product of its digits' and its </s>'s
        assert item["prob"] == pytest.approx(math.exp(out["logprob"][b].item()), rel=1e-5)
        assert item["prob"] == pytest.approx(math.prod(out["probs"][b, :len(ids) + 1].tolist()),
                                             rel=1e-5)


def test_digits_and_probabilities_are_the_models(tmp_path):
    # a sharpened model, so that images differ in digits and probabilities: a row mix-up shows
    sharp = write_checkpoint(tmp_path / "sharp.pt", decoder_scale=30.0)
    split = write_split(tmp_path, n=6)
    items, failed = run(sharp, tmp_path / "out", "--json", split, "-n", "6")
    assert len(items) == 6 and not failed
    assert len({it["prob"] for it in items}) > 2
    assert len({"".join(it["digits"]) for it in items}) > 2
    assert all(0 < it["prob"] < 1 for it in items)
    assert_probabilities_are_the_models(sharp, items)


def test_split_images_with_truth(ckpt, tmp_path):
    split = write_split(tmp_path, n=4)
    items, failed = run(ckpt, tmp_path / "out", "--json", split, "-n", "3")
    assert len(items) == 3 and not failed
    assert all(it["truth"] for it in items)
    assert sorted(os.listdir(tmp_path / "out")) == ["attention.png", "attention_1.png",
                                                    "attention_2.png", "attention_3.png"]


def test_precision_flag_reaches_the_decoder(ckpt, tmp_path, monkeypatch):
    """--precision decides the dtype the model computes in: fp32 by default, bf16 when asked
    (the encoder's features come out of autocast's convolutions in bf16)."""
    split = write_split(tmp_path, n=2)
    seen = []
    encode = build_model.AttentionOCR.encode

    def spy(self, images):
        features, hw = encode(self, images)
        seen.append(features.dtype)
        return features, hw

    monkeypatch.setattr(build_model.AttentionOCR, "encode", spy)
    run(ckpt, tmp_path / "a", "--json", split, "-n", "2")
    items, _ = run(ckpt, tmp_path / "b", "--json", split, "-n", "2", "--precision", "bf16")
    assert seen == [torch.float32, torch.bfloat16]
    assert all(0 < it["prob"] <= 1 for it in items)


def test_modes_sizes_and_unreadable(ckpt, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (30, 70, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("L").save(folder / "grey.png")
    rgba = np.dstack([rgb, rng.integers(0, 255, (30, 70), dtype=np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE).save(folder / "palette.gif")
    Image.fromarray(rgb[:5, :5]).save(folder / "tiny.png")
    Image.new("RGB", (4000, 3000), (90, 40, 10)).save(folder / "huge.jpg")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    items, failed = run(ckpt, tmp_path / "out", str(folder), str(bad))
    assert len(items) == 5
    assert sorted(failed) == sorted([str(folder / "broken.png"), str(bad)])
    err = capsys.readouterr().err
    assert "broken.png" in err and "bad.jpg" in err and "cannot read image" in err
    for stem in ("grey", "rgba", "palette", "tiny", "huge"):
        assert os.path.exists(tmp_path / "out" / f"attention_{stem}.png")


def test_nothing_readable_exits(ckpt, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    with pytest.raises(SystemExit) as exc:
        run(ckpt, tmp_path / "out", str(bad))
    assert "no readable images" in str(exc.value.code)


def test_bad_checkpoint_and_crop(tmp_path):
    text = tmp_path / "x.pt"
    text.write_text("hello")
    with pytest.raises(SystemExit) as exc:
        run(str(text), tmp_path, "whatever.png")
    assert str(exc.value.code).startswith("play.py: error:") and "x.pt" in str(exc.value.code)
    with pytest.raises(SystemExit):
        play.parse_args(["--checkpoint", "m.pt", "--crop", "1,2,3"])


def test_bad_out_folder_and_non_finite_crop(ckpt, tmp_path, capsys):
    image = tmp_path / "in.png"
    Image.new("RGB", (60, 30), (90, 90, 90)).save(image)
    (tmp_path / "taken").write_text("user file")
    with pytest.raises(SystemExit) as exc:  # --out is a file: an argparse error, no traceback
        run(ckpt, tmp_path / "taken", str(image))
    message = str(exc.value.code)
    assert message.startswith("play.py: error: --out") and "taken" in message
    assert "\n" not in message
    assert (tmp_path / "taken").read_text() == "user file"
    # were accepted, then every image skipped with a NaN error
    for crop in ("1,2,nan,4", "1,2,inf,4"):
        with pytest.raises(SystemExit) as exc:
            play.parse_args(["--checkpoint", "m.pt", "--crop", crop])
        assert exc.value.code == 2
    assert "finite" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # a folder given as checkpoint: not "no such file"
        run(str(tmp_path), tmp_path / "out", str(image))
    assert "not a PyTorch checkpoint (a folder)" in str(exc.value.code)


def test_beam_search_on_several_images_matches_one_at_a_time(ckpt, tmp_path):
    # beam_search's attention is a slice of a gathered tensor (not contiguous): with two or more
    # images a .view() of it raised a RuntimeError; one image happened to be contiguous
    split = write_split(tmp_path, n=5)
    items, failed = run(ckpt, tmp_path / "out", "--json", split, "-n", "5", "--beam", "3")
    assert len(items) == 5 and not failed
    model, _ = checkpoint.load_checkpoint(ckpt)
    for item in items:
        assert item["maps"].shape == (len(item["digits"]), 54, 54)
        alone = play.decode_items(model, [{"image": item["image"]}], VOCAB, beam=3)[0]
        assert alone["digits"] == item["digits"]
        np.testing.assert_allclose(alone["maps"], item["maps"], atol=1e-5)


def test_bombs_and_absurd_crops_are_counted_skips(ckpt, tmp_path, capsys):
    # PIL's DecompressionBombError escaped play.py --crop (only OSError/ValueError were caught)
    from test_data import png_header
    Image.new("RGB", (40, 20), (90, 40, 10)).save(tmp_path / "small.png")
    png_header(tmp_path / "bomb.png", 50_000, 50_000)
    with pytest.raises(SystemExit) as exc:
        run(ckpt, tmp_path / "out", str(tmp_path / "small.png"), "--crop", "0,0,1e7,1e7")
    assert "no readable images (1 skipped)" in str(exc.value.code)
    assert "small.png: cannot read image (its crop box is" in capsys.readouterr().err
    items, failed = run(ckpt, tmp_path / "out", str(tmp_path / "small.png"),
                        str(tmp_path / "bomb.png"))
    assert len(items) == 1 and failed == [str(tmp_path / "bomb.png")]
    assert "50000 x 50000 pixels, above the limit" in capsys.readouterr().err


def test_max_pixels_flag(ckpt, tmp_path, capsys):
    Image.new("RGB", (40, 20), (90, 40, 10)).save(tmp_path / "small.png")
    with pytest.raises(SystemExit):
        run(ckpt, tmp_path / "out", str(tmp_path / "small.png"), "--max-pixels", "799")
    assert "40 x 20 pixels, above the limit of 799" in capsys.readouterr().err
    items, _ = run(ckpt, tmp_path / "out", str(tmp_path / "small.png"), "--max-pixels", "800")
    assert len(items) == 1


def test_missing_device_is_one_line(ckpt, tmp_path):
    # play.py's --device goes through devices.device_from_flag, like train.py's and eval.py's
    with pytest.raises(SystemExit) as exc:
        play.main(["--checkpoint", ckpt, "--out", str(tmp_path), "--device", "cuda:99"])
    message = str(exc.value.code)
    assert message.startswith("play.py: error: --device cuda:99:") and "\n" not in message


def test_default_checkpoint_is_the_final_one():
    assert play.parse_args([]).checkpoint == "runs/svhn/last.pt"


def test_out_never_replaces_a_users_png(ckpt, tmp_path, capsys):
    # --out wrote attention_<name>.png and attention.png over whatever files had those names
    image = tmp_path / "house.png"
    Image.new("RGB", (60, 30), (90, 90, 90)).save(image)
    out = tmp_path / "figs"
    out.mkdir()
    Image.new("RGB", (3, 3), (1, 2, 3)).save(out / "attention_house.png")  # the user's
    kept = (out / "attention_house.png").read_bytes()
    with pytest.raises(SystemExit) as exc:
        run(ckpt, out, str(image))
    message = str(exc.value.code)
    assert message == (f"play.py: error: --out {out / 'attention_house.png'}: exists and is not "
                       f"a figure this repository drew; refusing to replace it (pass "
                       f"--overwrite to replace it, or choose another path)")
    assert (out / "attention_house.png").read_bytes() == kept
    assert not (out / "attention.png").exists()
    # figures of its own are redrawn; with --overwrite the user's file is replaced too
    run(ckpt, tmp_path / "mine", str(image))
    run(ckpt, tmp_path / "mine", str(image))
    run(ckpt, out, str(image), "--overwrite")
    assert (out / "attention_house.png").read_bytes() != kept


def test_crop_beyond_float32_is_an_argparse_error(capsys):
    # 1e308 is finite but overflows to inf in the crop arithmetic: every image would be
    # skipped with "cannot convert float NaN to integer"
    with pytest.raises(SystemExit) as exc:
        play.parse_args(["--crop", "1e308,0,1e308,5"])
    assert exc.value.code == 2
    assert "within +-2^24 = 16,777,216 pixels" in capsys.readouterr().err
