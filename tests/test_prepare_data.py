"""prepare_data.py: the real sample, synthetic-style splits, and every bad input via the CLI."""
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

import prepare_data
from formats.digitstruct_write import write_digitstruct

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRIES = [("1.png", [[1, 5, 6, 7, 20], [10, 12, 6, 8, 20]]),
           ("2.png", [[3, -2, 4, 9.5, 21.4]]),
           ("3.png", [[k, 3 * k, 1, 3, 9] for k in range(1, 7)])]


def make_split(root, split="train", entries=ENTRIES, images=True):
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    write_digitstruct(str(folder / "digitStruct.mat"), entries)
    if images:
        for name, _ in entries:
            (folder / name).write_bytes(b"png")
    return str(folder / "digitStruct.mat")


def run_main(argv, capsys):
    """main(argv) -> (exit code, stdout, stderr); SystemExit with a message means code 1."""
    try:
        code = prepare_data.main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        if not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    out, err = capsys.readouterr()
    return code, out, err


def test_real_sample(sample_dir, tmp_path):
    root = os.path.dirname(sample_dir)
    s = prepare_data.convert_split(root, "train", str(tmp_path))
    assert (s["entries"], s["kept"], s["missing"], s["digits"]) == (39, 3, 36, 6)
    data = json.loads((tmp_path / "train.json").read_text())
    assert data["num_entries"] == 39 and data["num_missing_images"] == 36
    assert data["label_note"] == "SVHN label 10 is stored as digit 0"
    assert os.path.isabs(data["image_dir"]) and os.path.samefile(data["image_dir"], sample_dir)
    recs = {r["name"]: r for r in data["records"]}
    assert sorted(recs) == ["1.png", "2.png", "3.png"]
    assert recs["1.png"]["digits"] == [1, 9] and recs["3.png"]["digits"] == [2, 5]
    assert recs["2.png"] == {"name": "2.png", "digits": [2, 3], "boxes": [[77, 29, 23, 32], [98, 25, 26, 32]]}
    assert all(isinstance(v, int) for r in data["records"] for b in r["boxes"] for v in b)


def test_cli_converts_and_reports_missing(tmp_path, capsys):
    make_split(tmp_path, "train")
    make_split(tmp_path, "test")
    os.remove(tmp_path / "test" / "2.png")
    code, out, err = run_main(["--root", str(tmp_path), "--splits", "train", "test"], capsys)
    assert code == 0, err
    assert "test: 1 of 3 images listed in digitStruct.mat are missing on disk; kept 2" in out
    train = json.loads((tmp_path / "train.json").read_text())
    assert train["image_dir"] == "train"  # relative to the JSON's folder
    assert [r["digits"] for r in train["records"]] == [[1, 0], [3], [1, 2, 3, 4, 5, 6]]
    assert train["records"][1]["boxes"] == [[-2, 4, 10, 21]]  # rounded half-up
    test = json.loads((tmp_path / "test.json").read_text())
    assert [r["name"] for r in test["records"]] == ["1.png", "3.png"] and test["num_missing_images"] == 1


def _mutate(path, how):
    with h5py.File(path, "r+") as f:
        boxes = f["digitStruct/bbox"]
        if how == "no_bbox":
            del f["digitStruct/bbox"]
        elif how == "lengths":
            short = boxes[:-1]
            del f["digitStruct/bbox"]
            f["digitStruct"].create_dataset("bbox", data=short, dtype=h5py.ref_dtype)
        elif how == "fields":
            g = f[boxes[0, 0]]
            del g["label"]
            g.create_dataset("label", data=np.array([[1.0]]))
        elif how == "label":
            f[boxes[1, 0]]["label"][0, 0] = 11.0
        elif how == "nan":
            f[boxes[1, 0]]["left"][0, 0] = np.nan
        elif how == "no_group":
            f.move("digitStruct", "somethingElse")


BAD = {
    "garbage": "not an HDF5 file",
    "matlab5": "MATLAB v5 file; SVHN digitStruct.mat is v7.3/HDF5",
    "no_group": "no /digitStruct group",
    "no_bbox": "no /digitStruct/bbox dataset",
    "lengths": "3 names but 2 bboxes",
    "fields": "bbox fields of different lengths",
    "label": "label 11 outside 1..10",
    "nan": "non-finite value",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_one_line_error_and_old_json_kept(tmp_path, capsys, case):
    mat = make_split(tmp_path, "train")
    if case == "garbage":
        open(mat, "wb").write(b"this is not hdf5\n" * 40)
    elif case == "matlab5":
        open(mat, "wb").write(b"MATLAB 5.0 MAT-file, Platform: GLNXA64".ljust(116) + bytes(140))
    else:
        _mutate(mat, case)
    (tmp_path / "train.json").write_text('{"old": true}')
    code, out, err = run_main(["--root", str(tmp_path), "--splits", "train"], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prepare_data.py: error: ") and mat in lines[0]
    assert BAD[case] in lines[0]
    assert (tmp_path / "train.json").read_text() == '{"old": true}'  # untouched
    assert not os.path.exists(tmp_path / "train.json.tmp")


def test_missing_folder_or_file_and_nothing_written(tmp_path, capsys):
    make_split(tmp_path, "train")
    code, _, err = run_main(["--root", str(tmp_path), "--splits", "train", "extra"], capsys)
    assert code != 0 and "extra: split folder not found" in err
    assert not (tmp_path / "train.json").exists()  # all splits are checked before writing any
    (tmp_path / "test").mkdir()
    code, _, err = run_main(["--root", str(tmp_path), "--splits", "test"], capsys)
    assert code != 0 and "digitStruct.mat not found" in err


def test_bad_split_aborts_before_any_write(tmp_path, capsys):
    make_split(tmp_path, "train")
    bad = make_split(tmp_path, "test")
    _mutate(bad, "label")
    code, _, err = run_main(["--root", str(tmp_path), "--splits", "train", "test"], capsys)
    assert code != 0 and "label 11" in err
    assert not (tmp_path / "train.json").exists()


def test_unwritable_out_dir_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    make_split(tmp_path, "train")
    (tmp_path / "file").write_text("user data")
    code, _, err = run_main(["--root", str(tmp_path), "--splits", "train",
                             "--out-dir", str(tmp_path / "file")], capsys)
    assert code != 0 and err.count("\n") == 1 and "is not a folder" in err
    assert (tmp_path / "file").read_text() == "user data"

    def refuse(*args, **kwargs):  # a read-only or full disk (root ignores chmod, so simulate it)
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(prepare_data.json, "dump", refuse)
    code, _, err = run_main(["--root", str(tmp_path), "--splits", "train"], capsys)
    assert code != 0 and err.count("\n") == 1  # one line, not a traceback from os/json
    assert "train.json: cannot write (Permission denied)" in err
    assert not os.path.exists(tmp_path / "train.json.tmp")


def test_subprocess_exit_code_and_unknown_flag(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "prepare_data.py", *a], cwd=REPO,
                                    capture_output=True, text=True)
    r = run("--root", str(tmp_path / "nowhere"), "--splits", "train")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "split folder not found" in r.stderr
    assert "Traceback" not in r.stderr
    assert run("--bogus").returncode == 2
    assert "label 10" in run("--help").stdout.replace("\n", " ")


def test_synthetic_flag_round_trip(tmp_path, capsys):
    """--synthetic generates the replica with synthetic.py, then converts it with the same code:
    the JSON must hold exactly the digits and (rounded) boxes the generator drew."""
    synthetic = pytest.importorskip("synthetic")
    root = tmp_path / "synth"
    code, out, err = run_main(["--synthetic", "--root", str(root), "--splits", "train", "test",
                               "--synthetic-sizes", "train=6,test=0", "--workers", "1"], capsys)
    assert code == 0, err
    assert not (root / "test.json").exists()  # size 0: skipped
    drawn = synthetic.generate_split(str(tmp_path / "again"), "train", 6, 0, 1)
    data = json.loads((root / "train.json").read_text())
    assert data["num_missing_images"] == 0
    assert [(r["name"], r["digits"], r["boxes"]) for r in data["records"]] == [
        (name, [int(d[0]) % 10 for d in digits],
         [[prepare_data.half_up(v) for v in d[1:]] for d in digits])
        for name, digits in drawn]


def test_split_names_and_seed_are_checked(tmp_path, capsys):
    # --splits ../../x with --synthetic wrote images and x.json outside --root
    root = tmp_path / "deep" / "root"
    for argv, why in [(["--splits", "../../x"], "--splits: '../../x' is not a plain folder name"),
                      (["--splits", "a/b"], "is not a plain folder name"),
                      (["--seed", "-1"], "--seed must be >= 0, got -1")]:
        with pytest.raises(SystemExit) as e:
            prepare_data.main(["--synthetic", "--root", str(root), "--synthetic-sizes",
                               "../../x=2,a/b=2,train=2", "--workers", "1", *argv])
        assert e.value.code == 2 and why in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x") and not os.path.exists(tmp_path / "x.json")


def test_synthetic_default_splits_include_test_ood(tmp_path, capsys):
    """--synthetic with no --splits writes the held-out-typeface split beside train and test."""
    pytest.importorskip("synthetic")
    root = tmp_path / "synth"
    code, out, err = run_main(["--synthetic", "--root", str(root), "--workers", "1",
                               "--synthetic-sizes", "train=2,extra=0,test=2,test_ood=3"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in root.glob("*.json")) == ["test.json", "test_ood.json",
                                                           "train.json"]
    data = json.loads((root / "test_ood.json").read_text())
    assert data["split"] == "test_ood" and len(data["records"]) == 3
    # real data: the official splits only (there is no test_ood to look for)
    code, _, err = run_main(["--root", str(tmp_path / "none")], capsys)
    assert code != 0 and "train" in err and "test_ood" not in err


def test_synthetic_never_replaces_another_json_or_a_users_images(tmp_path, capsys):
    # --synthetic --out-dir data/svhn replaced the real training JSON; --root over a folder of
    # the user's own 1.png, 2.png... wrote the replica's images over them
    pytest.importorskip("synthetic")
    real = tmp_path / "svhn"
    make_split(real)
    assert run_main(["--root", str(real), "--splits", "train"], capsys)[0] == 0
    # a rerun of the same conversion replaces its own JSON
    assert run_main(["--root", str(real), "--splits", "train"], capsys)[0] == 0
    kept = (real / "train.json").read_bytes()
    argv = ["--synthetic", "--root", str(tmp_path / "synth"), "--out-dir", str(real),
            "--splits", "train", "--synthetic-sizes", "train=2", "--workers", "1"]
    code, _, err = run_main(argv, capsys)
    assert code == 1 and err.strip() == (
        f"prepare_data.py: error: output {real / 'train.json'}: exists and is not a split JSON "
        f"of the images in {tmp_path / 'synth' / 'train'}; refusing to replace it (pass "
        f"--overwrite to replace it, or choose another path)")
    assert (real / "train.json").read_bytes() == kept and not (tmp_path / "synth").exists()
    assert run_main(argv + ["--overwrite"], capsys)[0] == 0
    assert (real / "train.json").read_bytes() != kept
    assert run_main(argv, capsys)[0] == 0  # now its own: a rerun needs no --overwrite
    photos = tmp_path / "mine" / "train"
    photos.mkdir(parents=True)
    (photos / "1.png").write_bytes(b"the user's photo")
    code, _, err = run_main(["--synthetic", "--root", str(tmp_path / "mine"), "--splits", "train",
                             "--synthetic-sizes", "train=2", "--workers", "1"], capsys)
    assert code == 1 and "holds files and is not a synthetic replica" in err
    assert (photos / "1.png").read_bytes() == b"the user's photo"


def test_max_pixels_flag_for_labelled_images(tmp_path, capsys):
    # prepare_data.py had no --max-pixels, though every other script has one
    from PIL import Image
    Image.new("RGB", (40, 20)).save(tmp_path / "a.png")
    (tmp_path / "labels.csv").write_text("name,text\na.png,12\n")
    code, _, err = run_main(["--csv", str(tmp_path / "labels.csv"), "--max-pixels", "100"],
                            capsys)
    assert code == 1 and "40 x 20 pixels, above the limit of 100 (--max-pixels)" in err
    assert not (tmp_path / "labels.json").exists()
    assert run_main(["--csv", str(tmp_path / "labels.csv"), "--max-pixels", "800"], capsys)[0] == 0
    with pytest.raises(SystemExit) as e:
        prepare_data.main(["--csv", str(tmp_path / "labels.csv"), "--max-pixels", "0"])
    assert e.value.code == 2 and "--max-pixels must be >= 1" in capsys.readouterr().err
