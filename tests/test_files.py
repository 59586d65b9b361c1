"""Issue 33: never lose a file (an output replaces only what it may, whole, checked, and never
one of the run's inputs; two runs on one output cannot both succeed), never hang on a FIFO or
read /dev/zero whole, and say which file, line or record is at fault."""
import os
import threading
import time

import pytest
import torch

import export
import predict
import train
from support import atomic, outputs
from helpers import write_images, write_split
from test_eval import TINY, write_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_TINY = ["--plan", "8 M 16", "--hidden", "16", "--image-size", "32", "--crop-size", "28",
              "--batch-size", "4", "--val-size", "4", "--threads", "1", "--workers", "0"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", TINY, decoder_scale=3.0)


@pytest.fixture(scope="module")
def tiny_json(tmp_path_factory):
    numbers = [[(i * 7 + k * 3) % 10 for k in range(1 + i % 3)] for i in range(12)]
    root = tmp_path_factory.mktemp("tiny")
    return write_split(str(root), numbers=numbers, split="train", image_dir="train")


def error_of(main, args):
    """The one-line message main(args) exits with."""
    with pytest.raises(SystemExit) as e:
        main(args)
    message = str(e.value.code).strip()
    assert "\n" not in message, message
    return message


def no_temps(folder):
    return not [n for n in os.listdir(folder) if n.endswith(".tmp")]


# -----------------------------------------------------------------------------
# the output rule

def test_a_failed_export_check_keeps_the_earlier_export(ckpt, tmp_path, monkeypatch):
    out = str(tmp_path / "good.pt")
    assert export.main(["--checkpoint", ckpt, "--out", out]) == 0
    before = {n: (tmp_path / n).read_bytes() for n in ("good.pt", "good.pt.json")}
    real = export.run_exported

    def diverged(path, images, onnx=None):  # the new export answers otherwise
        tokens, probs = real(path, images, onnx)
        return tokens + 1, probs
    monkeypatch.setattr(export, "run_exported", diverged)
    message = error_of(export.main, ["--checkpoint", ckpt, "--out", out, "--overwrite"])
    assert "differ from the checkpoint's" in message
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    assert no_temps(tmp_path)


def test_export_never_writes_over_its_checkpoint(ckpt, tmp_path):
    path = tmp_path / "X.pt"
    path.write_bytes(open(ckpt, "rb").read())
    message = error_of(export.main, ["--checkpoint", str(path), "--out", str(path),
                                     "--overwrite"])
    assert "is also an input of this run" in message
    assert path.read_bytes() == open(ckpt, "rb").read()


def test_a_folder_in_the_way_of_the_sidecar_writes_neither(ckpt, tmp_path):
    out = tmp_path / "m.pt"
    (tmp_path / "m.pt.json").mkdir()
    message = error_of(export.main, ["--checkpoint", ckpt, "--out", str(out), "--overwrite"])
    assert "m.pt.json: is a folder" in message
    assert sorted(os.listdir(tmp_path)) == ["m.pt.json"]


def test_files_replaced_together_or_not_at_all(tmp_path):
    first = tmp_path / "a.onnx"
    second = tmp_path / "a.onnx.json"
    first.write_text("old a")
    expects = [atomic.fingerprint(str(first)), None]  # the second was absent when checked
    with pytest.raises(atomic.LostRace):
        with atomic.replacing_all([str(first), str(second)], expects) as (t1, t2):
            open(t1, "w").write("new a")
            open(t2, "w").write("new json")
            second.write_text("another process's")  # appears while this one works
    assert first.read_text() == "old a"  # put back
    assert second.read_text() == "another process's"
    assert no_temps(tmp_path)


def test_predict_never_writes_over_an_input_photo(ckpt, tmp_path):
    write_images(str(tmp_path), n=1)
    photo = str(tmp_path / "1.png")
    before = open(photo, "rb").read()
    message = error_of(predict.main, ["--checkpoint", ckpt, "--csv", photo, "--overwrite",
                                      "--threads", "1", photo])
    assert "is also an input of this run" in message
    assert open(photo, "rb").read() == before


def test_two_predict_runs_on_one_csv_cannot_both_succeed(ckpt, tmp_path, monkeypatch):
    write_images(str(tmp_path / "in"), n=2)
    out = tmp_path / "out.csv"
    real = predict.read_photos

    def meanwhile(*args, **kwargs):  # the other run, started seconds apart, finishes first
        out.write_text("file,text,confidence\nthe other run's,1,0.5\n")
        return real(*args, **kwargs)
    monkeypatch.setattr(predict, "read_photos", meanwhile)
    message = error_of(predict.main, ["--checkpoint", ckpt, "--csv", str(out), "--threads", "1",
                                      str(tmp_path / "in")])
    assert "appeared while this run worked" in message
    assert "the other run's" in out.read_text()
    assert no_temps(tmp_path)


def test_export_with_overwrite_loses_a_race_loudly(ckpt, tmp_path, monkeypatch):
    out = tmp_path / "m.pt"
    out.write_text("an old export")
    real = export.check

    def meanwhile(*args, **kwargs):
        out.write_text("another export, written meanwhile")
        return real(*args, **kwargs)
    monkeypatch.setattr(export, "check", meanwhile)
    message = error_of(export.main, ["--checkpoint", ckpt, "--out", str(out), "--overwrite"])
    assert "changed while this run worked" in message
    assert out.read_text() == "another export, written meanwhile"
    assert not (tmp_path / "m.pt.json").exists()


def test_train_plot_never_replaces_the_training_json(tiny_json, tmp_path):
    before = open(tiny_json, "rb").read()
    message = error_of(train.main, ["--train-json", tiny_json, *TRAIN_TINY, "--epochs", "1",
                                    "--out", str(tmp_path / "run"), "--plot", tiny_json,
                                    "--overwrite"])
    assert "--plot" in message and "is also an input of this run" in message
    assert open(tiny_json, "rb").read() == before


def test_check_replaceable_refuses_an_input_through_a_link(tmp_path):
    data = tmp_path / "data.json"
    data.write_text("{}")
    os.symlink(data, tmp_path / "link.json")
    with pytest.raises(ValueError, match="is also an input"):
        outputs.check_replaceable(str(tmp_path / "link.json"), "--out", True,
                                  inputs=[str(data)])


# -----------------------------------------------------------------------------
# the input rule

@pytest.fixture
def hostile(tmp_path):
    """make(kind) -> the path of a file no script may open: a FIFO (a thread opens it for
    writing after a few seconds, so that a reader that blocks on it fails instead of hanging
    the suite), /dev/zero, or a sparse file past the size limits (no disk used)."""
    def make(kind, name="x"):
        path = str(tmp_path / name)
        if kind == "fifo":
            os.mkfifo(path)

            def unblock():
                time.sleep(5)
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                    os.close(fd)
                except OSError:  # no reader: nothing blocked on it
                    pass
            threading.Thread(target=unblock, daemon=True).start()
            return path
        if kind == "zero":
            return "/dev/zero"
        with open(path, "wb") as f:
            f.truncate(9 * 2 ** 30)
        return path
    return make


HOSTILE = [("fifo", "not a regular file"), ("zero", "not a regular file"),
           ("huge", "bytes, more than")]


@pytest.mark.parametrize("kind, words", HOSTILE)
def test_predict_boxes_and_checkpoint_are_looked_at_before_opening(ckpt, tmp_path, hostile,
                                                                  kind, words):
    write_images(str(tmp_path / "in"), n=1)
    bad = hostile(kind, "boxes.csv")
    common = ["--csv", str(tmp_path / "o.csv"), "--threads", "1", str(tmp_path / "in")]
    message = error_of(predict.main, ["--checkpoint", ckpt, "--boxes", bad, *common])
    assert bad in message and words in message
    message = error_of(predict.main, ["--checkpoint", bad, *common])
    assert bad in message and words in message


@pytest.mark.parametrize("kind, words", HOSTILE)
def test_prepare_labels_file_is_looked_at_before_opening(tmp_path, hostile, kind, words):
    import prepare_data
    bad = hostile(kind, "gt.txt")
    message = error_of(prepare_data.main, ["--labels", bad, "--out-dir", str(tmp_path / "o")])
    assert bad in message and words in message


@pytest.mark.parametrize("kind, words", HOSTILE[:2])
def test_split_json_is_looked_at_before_opening(tmp_path, hostile, kind, words):
    from formats.records import load_split
    bad = hostile(kind, "train.json")
    with pytest.raises(ValueError, match=words):
        load_split(bad)


def outside_layout(tmp_path):
    """labels/ with a real image, a link to an image outside it and a link to a folder outside
    it; outside/ holds the targets."""
    write_images(str(tmp_path / "outside"), n=2)
    write_images(str(tmp_path / "labels"), n=1)
    os.symlink(tmp_path / "outside" / "1.png", tmp_path / "labels" / "7.png")
    os.symlink(tmp_path / "outside", tmp_path / "labels" / "sub")
    return tmp_path / "labels"


@pytest.mark.parametrize("entry", ["7.png", "sub/2.png"])
def test_prepare_labels_refuses_links_out_of_the_folder(tmp_path, entry):
    import prepare_data
    labels = outside_layout(tmp_path)
    (labels / "gt.txt").write_text(f"1.png\t1\n{entry}\t7\n")
    message = error_of(prepare_data.main, ["--labels", str(labels / "gt.txt")])
    assert "line 2" in message and "outside the data folder" in message
    assert not (labels / "gt.json").exists()


def test_prepare_labels_from_names_refuses_links_out_of_the_folder(tmp_path):
    import prepare_data
    labels = outside_layout(tmp_path)
    message = error_of(prepare_data.main, ["--labels-from-names", str(labels)])
    assert "7.png" in message and "outside the data folder" in message
    assert not (tmp_path / "labels.json").exists()


# -----------------------------------------------------------------------------
# predict.py: answers of their own, weights that are numbers, --boxes that say what they skip

def read_csv(path):
    import csv
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return {r["file"]: (r["text"], r["confidence"]) for r in csv.DictReader(f)}


def test_keep_aspect_text_does_not_depend_on_the_other_files(ckpt, tmp_path):
    from PIL import Image
    folder = tmp_path / "photos"
    write_images(str(folder), n=12, seed=3)
    for k, name in enumerate(sorted(os.listdir(folder))):  # widths 1.0 to 3.2 x the height
        img = Image.open(folder / name)
        img.resize((img.height + 8 * k, img.height)).save(folder / name)
    args = ["--checkpoint", ckpt, "--threads", "1", "--fit", "keep-aspect", "--batch-size", "16"]
    assert predict.main([*args, "--csv", str(tmp_path / "a.csv"), str(folder)]) == 0
    Image.new("RGB", (900, 60), (200, 200, 200)).save(folder / "wide.png")  # unrelated, wide
    assert predict.main([*args, "--csv", str(tmp_path / "b.csv"), str(folder)]) == 0
    before = read_csv(tmp_path / "a.csv")
    after = read_csv(tmp_path / "b.csv")
    assert {f: after[f] for f in before} == before


def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path):
    from support import checkpoint
    path = str(tmp_path / "diverged.pt")
    write_checkpoint(path, TINY)
    ckpt = torch.load(path, weights_only=True)
    name = sorted(ckpt["model"])[3]
    ckpt["model"][name] = ckpt["model"][name].float() * float("nan")
    checkpoint.save_checkpoint(ckpt, path)
    write_images(str(tmp_path / "in"), n=1)
    message = error_of(predict.main, ["--checkpoint", path, "--csv", str(tmp_path / "o.csv"),
                                      "--threads", "1", str(tmp_path / "in")])
    assert f"weight {name} holds NaN or infinite values" in message
    message = error_of(export.main, ["--checkpoint", path, "--out", str(tmp_path / "e.pt")])
    assert f"weight {name} holds NaN" in message
    assert sorted(os.listdir(tmp_path)) == ["diverged.pt", "in"]


def test_boxes_unknown_outside_and_duplicate_rows_are_counted(ckpt, tmp_path, capsys):
    write_images(str(tmp_path), n=3)  # 1.png .. 3.png
    (tmp_path / "boxes.csv").write_text("name,left,top,width,height\n"
                                        "1.png,2,2,20,20\n"
                                        "nope.png,0,0,5,5\n"
                                        "1.png,4,4,10,10\n"
                                        "2.png,5000,5000,10,10\n")
    out = tmp_path / "o.csv"
    assert predict.main(["--checkpoint", ckpt, "--csv", str(out), "--threads", "1",
                         "--boxes", str(tmp_path / "boxes.csv"),
                         *(str(tmp_path / f"{k}.png") for k in (1, 2, 3))]) == 0
    err = capsys.readouterr().err
    assert "1 row(s) name no image read here (first: line 3:" in err
    assert "1 duplicate row(s), each name's first box used (first: line 4: 1.png, given on " \
           "line 2)" in err
    assert "2.png: cannot read image (its box 5000,5000,10,10 lies wholly outside" in err
    assert sorted(os.path.basename(f) for f in read_csv(out)) == ["1.png", "3.png"]


def test_a_file_name_that_is_not_utf8_is_written_as_its_bytes(ckpt, tmp_path, capsys):
    write_images(str(tmp_path / "in"), n=2)
    odd = os.path.join(os.fsencode(tmp_path / "in"), b"caf\xe9.png")
    os.rename(os.fsencode(tmp_path / "in" / "2.png"), odd)
    out = tmp_path / "o.csv"
    assert predict.main(["--checkpoint", ckpt, "--csv", str(out), "--threads", "1",
                         str(tmp_path / "in")]) == 0
    assert os.fsdecode(odd) in read_csv(out)
    assert b"caf\xe9.png," in out.read_bytes()
    assert "1 file name(s) are not UTF-8" in capsys.readouterr().err


# -----------------------------------------------------------------------------
# messages that name the file, line or record; runs that leave nothing behind when they fail

def test_init_resume_auto_resumes_its_own_run(ckpt, tiny_json, tmp_path, capsys):
    out = tmp_path / "ft"
    command = ["--init", ckpt, "--train-json", tiny_json, "--epochs", "1", "--batch-size", "4",
               "--threads", "1", "--workers", "0", "--out", str(out), "--resume", "auto"]
    assert train.main(command) == 0
    assert train.main(command) == 0  # the same command again: its own run, done
    assert "already holds epoch 1 of --epochs 1: nothing to train" in capsys.readouterr().out


def test_a_huge_text_is_refused_at_prepare_naming_file_and_line(tmp_path):
    import prepare_data
    write_images(str(tmp_path), n=2)
    (tmp_path / "gt.txt").write_text("1.png\t12\n2.png\t" + "7" * 10_000_000 + "\n")
    message = error_of(prepare_data.main, ["--labels", str(tmp_path / "gt.txt")])
    assert "gt.txt line 2: 2.png: text '7777" in message
    assert "10,000,000 characters, more than the 254 a model reads" in message
    assert len(message) < 400 and not (tmp_path / "gt.json").exists()


def test_a_huge_text_in_a_json_is_refused_naming_the_record(tiny_json, tmp_path):
    import json
    split = json.load(open(tiny_json))
    split["image_dir"] = os.path.join(os.path.dirname(tiny_json), split["image_dir"])
    split["records"][2] = {"name": split["records"][2]["name"], "text": "1" * 300}
    path = tmp_path / "long.json"
    path.write_text(json.dumps(split))
    out = tmp_path / "run"
    message = error_of(train.main, ["--train-json", str(path), *TRAIN_TINY, "--out", str(out)])
    assert f"{path}: record 2 has a text of 300 characters" in message
    assert not out.exists()  # no empty --out left behind


def test_a_run_failing_at_its_first_batch_leaves_no_run_behind(tiny_json, tmp_path):
    import json
    import shutil
    root = tmp_path / "data"
    shutil.copytree(os.path.dirname(tiny_json), root)
    split = json.load(open(root / "train.json"))
    image = root / split["image_dir"] / split["records"][0]["name"]
    good = image.read_bytes()
    image.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "run"
    command = ["--train-json", str(root / "train.json"), *TRAIN_TINY, "--val-size", "0",
               "--epochs", "1", "--out", str(out)]
    message = error_of(train.main, command)
    assert "cannot read image" in message
    assert not out.exists()  # neither header-only loss.csv / val.csv nor an empty folder
    image.write_bytes(good)
    assert train.main(command) == 0  # the rerun with fixed data is not "already holds a run"


def test_an_input_too_small_for_the_encoder_is_refused(tiny_json, tmp_path):
    base = ["--train-json", tiny_json, "--plan", "8 M 16", "--hidden", "16", "--threads", "1",
            "--workers", "0", "--epochs", "1", "--out", str(tmp_path / "run")]
    message = error_of(train.main, [*base, "--image-size", "1x1", "--crop-size", "1"])
    assert "--crop-size 1: an input too small for the encoder's 1 max-pools" in message
    message = error_of(train.main, [*base, "--image-size", "2x2", "--crop-size", "2"])
    assert "feature map is 1x1, fewer places to attend than the longest training text's 3" \
        in message
    assert not (tmp_path / "run").exists()


def test_ctrl_c_is_one_line_saying_what_was_kept(ckpt, tmp_path, monkeypatch):
    from support import script
    monkeypatch.setattr(atomic, "published", atomic.Published())
    write_images(str(tmp_path / "in"), n=1)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(predict, "read_photos", interrupted)
    args = ["--checkpoint", ckpt, "--csv", str(tmp_path / "o.csv"), "--threads", "1",
            str(tmp_path / "in")]
    message = error_of(lambda a: script.run_main("predict.py", lambda: predict.main(a)), args)
    assert message == ("predict.py: interrupted; nothing was written (outputs appear whole, at "
                       "the end, or not at all)")
    with atomic.atomic_open(str(tmp_path / "a.json")) as f:
        f.write("{}")
    message = error_of(lambda a: script.run_main("predict.py", lambda: predict.main(a)), args)
    assert message == (f"predict.py: interrupted; kept {tmp_path / 'a.json'}, each written "
                       f"whole; nothing else was written")


def test_every_figure_script_keeps_a_users_file_and_its_input(tiny_json, tmp_path):
    import data
    import synthetic
    from PIL import Image
    photo = tmp_path / "photo.png"
    Image.new("RGB", (5, 5), (200, 10, 10)).save(photo)
    kept = {p: open(p, "rb").read() for p in (tiny_json, str(photo))}
    common = ["--json", tiny_json, "--n", "2", "--rows", "1"]
    message = error_of(data.main, [*common, "--out", tiny_json, "--overwrite"])
    assert f"--out {tiny_json}: is also an input of this run" in message
    message = error_of(data.main, [*common, "--out", str(photo)])
    assert "exists and is not a figure this repository drew" in message
    message = error_of(synthetic.main, ["--preview", str(photo)])
    assert "exists and is not a figure this repository drew" in message
    assert {p: open(p, "rb").read() for p in kept} == kept
    data.main([*common, "--out", str(tmp_path / "aug.png")])
    data.main([*common, "--out", str(tmp_path / "aug.png")])  # its own figure: redrawn


# -----------------------------------------------------------------------------
# the image layer (issue 34 item 3): one torch-free module

def test_prepare_data_and_formats_import_no_torch():
    import subprocess
    import sys
    for command in (["prepare_data.py", "--help"],
                    ["-c", "import formats.records, formats.labels_csv, formats.digitstruct"]):
        done = subprocess.run([sys.executable, "-X", "importtime", *command], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-500:]
        loaded = [line.split("|")[-1].strip() for line in done.stderr.splitlines()]
        assert not [m for m in loaded if m.split(".")[0] in ("torch", "torchvision")], command


def test_labels_from_names_walks_folders_as_predict_does(tmp_path):
    from formats.labels_csv import read_names
    from support.images import find_images
    folder = tmp_path / "plates"
    write_images(str(folder / "b"), n=1)
    (folder / "b" / "1.png").rename(folder / "b" / "KX7_1.png")
    write_images(str(folder), n=1)
    (folder / "1.png").rename(folder / "AB12.png")
    os.symlink(folder, folder / "b" / "loop")  # a loop: skipped, its files listed once
    records = read_names(str(folder))
    assert [(r["name"], r["text"]) for r in records] == [("AB12.png", "AB12"),
                                                          (os.path.join("b", "KX7_1.png"), "KX7")]
    files, skipped = find_images([str(folder)])
    assert len(files) == 2 and "a directory loop" in skipped[0][1]
    os.mkfifo(folder / "b" / "pipe.png")
    with pytest.raises(ValueError, match="pipe.png: not a regular file"):
        read_names(str(folder))


def test_a_photo_found_twice_gets_one_answer(ckpt, tmp_path, capsys):
    write_images(str(tmp_path / "in"), n=2)
    os.symlink(tmp_path / "in" / "1.png", tmp_path / "in" / "same.png")
    out = tmp_path / "o.csv"
    assert predict.main(["--checkpoint", ckpt, "--csv", str(out), "--threads", "1",
                         str(tmp_path / "in"), str(tmp_path / "in" / "2.png")]) == 0
    assert sorted(os.path.basename(f) for f in read_csv(out)) == ["1.png", "2.png"]
    err = capsys.readouterr().err
    assert "2 skipped" in err and "same.png: the same file as" in err


def test_a_label_that_is_not_utf8_is_refused_naming_it(tmp_path):
    import json
    import prepare_data
    from formats.records import load_split
    write_images(str(tmp_path / "in"), n=2)
    os.rename(os.fsencode(tmp_path / "in" / "2.png"),
              os.path.join(os.fsencode(tmp_path / "in"), b"caf\xe9.png"))
    message = error_of(prepare_data.main, ["--labels-from-names", str(tmp_path / "in")])
    assert "caf\\xe9.png: text caf\\xe9 holds bytes that are not UTF-8" in message
    assert not (tmp_path / "in.json").exists()
    split = {"image_dir": "in", "records": [{"name": "1.png", "text": "caf\udce9"}]}
    (tmp_path / "s.json").write_text(json.dumps(split))  # "\\udce9" in the file
    with pytest.raises(ValueError, match="s.json: record 0 has a 'text' caf.xe9 holding"):
        load_split(str(tmp_path / "s.json"))


def test_an_output_in_a_missing_folder_is_named_before_the_work(ckpt, tmp_path):
    for suffix in (".pt", ".onnx"):
        out = tmp_path / "nodir" / f"x{suffix}"
        message = error_of(export.main, ["--checkpoint", ckpt, "--out", str(out)])
        assert message == f"export.py: error: --out {out}: no folder {tmp_path / 'nodir'}"


def test_a_resume_into_a_new_out_failing_at_once_leaves_no_run(tiny_json, tmp_path):
    import json
    import shutil
    root = tmp_path / "data"
    shutil.copytree(os.path.dirname(tiny_json), root)
    first = tmp_path / "first"
    base = ["--train-json", str(root / "train.json"), *TRAIN_TINY, "--val-size", "0"]
    assert train.main([*base, "--epochs", "1", "--out", str(first)]) == 0
    split = json.load(open(root / "train.json"))
    image = root / split["image_dir"] / split["records"][0]["name"]
    good = image.read_bytes()
    image.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "second"
    command = ["--resume", str(first / "last.pt"), "--epochs", "2", "--batch-size", "4",
               "--threads", "1", "--workers", "0", "--out", str(out)]
    assert "cannot read image" in error_of(train.main, command)
    assert not out.exists()
    image.write_bytes(good)
    assert train.main(command) == 0


def test_overwrite_never_moves_away_the_checkpoint_the_run_starts_from(ckpt, tiny_json,
                                                                        tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(open(ckpt, "rb").read())  # an earlier run's, to fine-tune
    message = error_of(train.main, ["--init", str(out / "last.pt"), "--train-json", tiny_json,
                                    "--epochs", "1", "--batch-size", "4", "--threads", "1",
                                    "--workers", "0", "--out", str(out), "--overwrite"])
    assert f"--overwrite would move {out / 'last.pt'}: is also an input of this run" in message
    assert os.listdir(out) == ["last.pt"]
