"""prepare_data.py --csv: a labels CSV of your own images -> JSON -> the crops the model sees;
every bad input is a one-line error naming file and line, and nothing is written."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import data
import prepare_data
from formats.records import load_split, record_region
from support.tokenizer import tokens_to_text

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_images(folder):
    """Three 80x40 images: black, with a white 20x10 rectangle at (30, 12) in a.png."""
    os.makedirs(folder / "photos", exist_ok=True)
    a = np.zeros((40, 80, 3), np.uint8)
    a[12:22, 30:50] = 255
    Image.fromarray(a).save(folder / "photos" / "a.png")
    Image.new("RGB", (80, 40), (0, 0, 255)).save(folder / "photos" / "b.jpg")
    Image.new("L", (60, 30), 128).save(folder / "c.png")


GOOD = ("name,text,left,top,width,height\n"
        "photos/a.png,007,30,12,20,10\n"
        "photos/b.jpg,AB12\n"          # trailing box cells left out: whole image
        "c.png, KX 7 ,,,,\n")          # spaces around the text dropped, inside kept


def convert(tmp_path, text, capsys=None, name="train.csv", extra=()):
    csv_path = tmp_path / name
    if isinstance(text, bytes):
        csv_path.write_bytes(text)
    else:
        csv_path.write_text(text, encoding="utf-8")
    try:
        code = prepare_data.main(["--csv", str(csv_path), *extra])
    except SystemExit as e:  # sys.exit(message) prints the message and exits with 1
        code = e.code if isinstance(e.code, int) else 1
        if not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    return code, (capsys.readouterr() if capsys else None)


def test_round_trip_with_and_without_boxes(tmp_path, capsys):
    make_images(tmp_path)
    code, out = convert(tmp_path, GOOD, capsys)
    assert code == 0 and "3 images (1 with a box" in out.out
    split = json.loads((tmp_path / "train.json").read_text())
    assert split["image_dir"] == "."
    assert split["records"] == [
        {"name": "photos/a.png", "text": "007", "region": [30, 12, 20, 10]},
        {"name": "photos/b.jpg", "text": "AB12"},
        {"name": "c.png", "text": "KX 7"},
    ]
    ds = data.SVHNDataset(str(tmp_path / "train.json"), image_size=20, crop_size=20)
    assert [ds.label(i) for i in range(3)] == ["007", "AB12", "KX 7"]  # leading zeros kept
    # the box is the crop as given (no 30% growth): all white
    img, boxes = ds.load(0)
    assert np.asarray(img).min() == 255 and boxes.shape == (0, 4)
    # no box: the whole image (80x40 blue squeezed to 20x20)
    img, _ = ds.load(1)
    assert img.size == (20, 20) and np.abs(np.asarray(img)[10, 10] - [0, 0, 255]).max() < 3  # JPEG
    x, tokens, boxes = ds[2]
    vocab = ds.tokenizer.vocab
    assert tokens_to_text(tokens, vocab) == "KX 7" and len(tokens) == 6 and len(boxes) == 0
    # the JSON moves with the images: image_dir is relative
    os.rename(tmp_path, tmp_path.parent / (tmp_path.name + "_moved"))
    moved = tmp_path.parent / (tmp_path.name + "_moved")
    assert data.SVHNDataset(str(moved / "train.json")).label(0) == "007"


def test_out_dir_elsewhere_and_the_growth_is_svhns_only(tmp_path, capsys):
    make_images(tmp_path)
    (tmp_path / "train.csv").write_text(GOOD)
    assert prepare_data.main(["--csv", str(tmp_path / "train.csv"),
                              "--out-dir", str(tmp_path / "out")]) == 0
    image_dir, records = load_split(str(tmp_path / "out" / "train.json"))
    assert os.path.samefile(image_dir, tmp_path)
    assert record_region(records[0]) == (30, 12, 50, 22)
    assert record_region(records[1]) is None
    svhn = {"name": "1.png", "digits": [1], "boxes": [[30, 12, 20, 10]]}
    # 26 x 13 around the same centre (40, 17): top int(10.5) = 10, truncated as the recipe does
    assert record_region(svhn) == (27, 10, 53, 23)


BOX = "name,text,left,top,width,height\n"
BAD = [  # (CSV text, the line its error names, words in the error)
    ("", None, "empty file"),
    ("photos/a.png,1\n", 1, "header must name the columns"),
    ("name,reading\nphotos/a.png,1\n", 1, "no text"),
    ("name,text,left,top\nphotos/a.png,1,0,0\n", 1, "missing width,height"),
    ("name,text,x,y,w,h,width,height\nphotos/a.png,1,0,0,5,5,5,5\n", 1,
     "the box could be x,y,w,h or x,y,width,height"),
    ("name,text,xmin,ymin,xmax,ymax\nphotos/a.png,1,30,12,20,22\n", 2,
     "box 30,12,20,22 (xmin,ymin,xmax,ymax) must end right of and below where it starts"),
    ("name,text,xmin,ymin,xmax,ymax\nphotos/a.png,1,30,12,,22\n", 2,
     "four numbers xmin,ymin,xmax,ymax"),
    ("name,text\nphotos/a.png,\n", 2, "empty text"),
    ("name,text\nphotos/a.png,  \n", 2, "empty text"),
    ("name,text\nphotos/gone.png,12\n", 2, "'photos/gone.png': no such file"),
    ("name,text\nbroken.png,12\n", 2, "cannot read it as an image"),
    ("name,text\nphotos,12\n", 2, "not a file"),
    ("name,text\nthin.png,12\n", 2, "400 x 1 pixels: too thin to hold text"),
    ("name,text\nstrip.png,12\n", 2, "1000 x 5 pixels: too thin to hold text (longer than 100:1)"),
    (BOX + "photos/a.png,1,0,0,80,0.5\n", 2, "80 x 0.5 pixels: too thin to hold text"),
    (BOX + "photos/a.png,1,a,0,5,5\n", 2, "four numbers"),
    (BOX + "photos/a.png,1,0,0,5,\n", 2, "four numbers"),
    (BOX + "photos/a.png,1,0,0,nan,5\n", 2, "four numbers"),
    (BOX + "photos/a.png,1,0,0,0,5\n", 2, "width and height must be > 0"),
    (BOX + "photos/a.png,1,80,0,5,5\n", 2, "wholly outside the 80x40"),
    (BOX + "photos/a.png,1,-10,-10,10,5\n", 2, "wholly outside"),
    ("name,text\nphotos/a.png,1\nc.png,2\n./photos/a.png,3\n", 4, "duplicate name './photos/a.png' "
                                                             "(first on line 2)"),
    ("name,text\nphotos/a.png,1,2\n", 2, "3 fields, the header has 2"),
    ("name,text\n,12\n", 2, "empty name"),
    ("name,text\n../c.png,12\n", 2, "must be a path inside the CSV's folder"),
    ("name,text\n/etc/hosts,12\n", 2, "must be a path inside the CSV's folder"),
    (b"name,text\nphotos/a.png,12\nc.png,\xe9t\xe9\n", 3, "not UTF-8"),
]


@pytest.mark.parametrize("text,line,words", BAD, ids=[b[2] for b in BAD])
def test_bad_input_is_one_line_naming_file_and_line_and_writes_nothing(tmp_path, capsys, text,
                                                                      line, words):
    make_images(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.new("RGB", (400, 1)).save(tmp_path / "thin.png")  # one pixel high: no text to read
    Image.new("RGB", (1000, 5)).save(tmp_path / "strip.png")  # 200:1
    (tmp_path / "train.json").write_text("the user's old JSON")
    code, out = convert(tmp_path, text, capsys)
    assert code != 0
    err = out.err.strip()
    assert "\n" not in err and "Traceback" not in err
    where = f"train.csv line {line}:" if line else "train.csv:"
    assert err.startswith("prepare_data.py: error: ") and where in err and words in err, err
    assert (tmp_path / "train.json").read_text() == "the user's old JSON"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_every_problem_is_counted_and_any_length_is_accepted(tmp_path, capsys):
    make_images(tmp_path)
    text = "name,text\nphotos/a.png,\ngone.png,1\nc.png,ABCDEFGHIJ\n"
    code, out = convert(tmp_path, text, capsys, extra=["--max-len", "8"])
    assert code != 0 and "line 2: photos/a.png: empty text (and 2 more problem(s)" in out.err
    code, out = convert(tmp_path, "name,text\nc.png,ABCDEFGHIJ\n", capsys, extra=["--max-len", "8"])
    assert code != 0 and "10 characters, more than --max-len 8" in out.err
    # no cap by default: a 10-character meter reading, a 12-character code
    code, _ = convert(tmp_path, "name,text\nc.png,ABCDEFGHIJ\nphotos/a.png,0123456789AB\n", capsys)
    assert code == 0


def test_bom_and_extra_columns_are_accepted(tmp_path, capsys):
    make_images(tmp_path)
    text = "\ufeffName, Text ,notes\nc.png,é1,a comment\n"  # Excel's UTF-8 has a BOM
    code, _ = convert(tmp_path, text, capsys)
    assert code == 0
    assert json.loads((tmp_path / "train.json").read_text())["records"] == [
        {"name": "c.png", "text": "é1"}]


def test_csv_flag_conflicts_and_subprocess(tmp_path):
    make_images(tmp_path)
    (tmp_path / "train.csv").write_text(GOOD)
    run = subprocess.run([sys.executable, "prepare_data.py", "--csv", str(tmp_path / "train.csv"),
                          "--synthetic"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2 and "cannot be combined with --synthetic" in run.stderr
    run = subprocess.run([sys.executable, "prepare_data.py", "--csv", str(tmp_path / "nope.csv")],
                         cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr.strip().endswith("nope.csv: no such file")
    assert "Traceback" not in run.stderr


def test_prepare_data_has_no_length_cap_by_default():
    assert prepare_data.MAX_LEN == 0


# -- gt.txt and labels in file names --------------------------------------------------------------

def test_gt_txt_gives_the_csvs_records(tmp_path, capsys):
    make_images(tmp_path)
    (tmp_path / "gt.txt").write_text("photos/a.png\t007\nphotos/b.jpg\tAB 12\n\nc.png\tKX7\n")
    assert prepare_data.main(["--labels", str(tmp_path / "gt.txt")]) == 0
    image_dir, records = load_split(str(tmp_path / "gt.json"))
    assert records == [{"name": "photos/a.png", "text": "007"},
                       {"name": "photos/b.jpg", "text": "AB 12"},  # a space inside is kept
                       {"name": "c.png", "text": "KX7"}]
    (tmp_path / "bad.txt").write_text("photos/a.png\t007\nphotos/b.jpg 12\n")
    with pytest.raises(SystemExit) as e:
        prepare_data.main(["--labels", str(tmp_path / "bad.txt")])
    assert "bad.txt line 2: expected path<TAB>text" in str(e.value.code)
    (tmp_path / "gone.txt").write_text("photos/a.png\t007\nmissing.png\t12\n")
    with pytest.raises(SystemExit) as e:
        prepare_data.main(["--labels", str(tmp_path / "gone.txt")])
    assert "gone.txt line 2: image 'missing.png': no such file" in str(e.value.code)
    assert not (tmp_path / "bad.json").exists() and not (tmp_path / "gone.json").exists()


def test_labels_from_file_names(tmp_path):
    folder = tmp_path / "plates"
    os.makedirs(folder / "eu")
    for name in ("KX7204.jpg", "KX7204_2.jpg", "eu/B123CD.png", "notes.txt"):
        Image.new("RGB", (90, 30), (9, 9, 9)).save(folder / name, format="PNG")
    assert prepare_data.main(["--labels-from-names", str(folder)]) == 0
    image_dir, records = load_split(str(tmp_path / "plates.json"))
    assert os.path.samefile(image_dir, folder)
    assert sorted((r["name"], r["text"]) for r in records) == [
        ("KX7204.jpg", "KX7204"), ("KX7204_2.jpg", "KX7204"), ("eu/B123CD.png", "B123CD")]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as e:
        prepare_data.main(["--labels-from-names", str(empty)])
    assert "no labelled images" in str(e.value.code)


def test_a_csv_written_on_windows_finds_its_images(tmp_path, capsys):
    # Excel on Windows writes photos\a.png: read as photos/a.png where only that file exists;
    # a name that starts at the root stays as written and is a missing image
    make_images(tmp_path)
    code, _ = convert(tmp_path, "name,text\nphotos\\a.png,007\n", capsys)
    assert code == 0
    records = json.loads((tmp_path / "train.json").read_text())["records"]
    assert records == [{"name": "photos/a.png", "text": "007"}]
    img = np.asarray(data.SVHNDataset(str(tmp_path / "train.json")).load(0)[0])
    assert img.min() == 0 and img.max() == 255  # a.png: black with a white rectangle
    code, out = convert(tmp_path, "name,text\n\\etc\\hostname,1\n", capsys, name="bad.csv")
    assert code == 1 and "line 2: image '\\\\etc\\\\hostname': no such file" in out.err


def test_a_decomposed_label_is_stored_composed(tmp_path, capsys):
    # u + COMBINING DIAERESIS (as a Mac spells file names) and the keyboard's ü are one text
    make_images(tmp_path)
    code, _ = convert(tmp_path, "name,text\nc.png,Mu\u0308nchen 1\nphotos/a.png,M\u00fcnchen 2\n",
                      capsys)
    assert code == 0
    texts = [r["text"] for r in json.loads((tmp_path / "train.json").read_text())["records"]]
    assert texts == ["M\u00fcnchen 1", "M\u00fcnchen 2"] and len(texts[0]) == 9


def test_a_semicolon_csv_from_a_european_excel_is_read(tmp_path, capsys):
    # where the decimal mark is a comma, Excel separates fields with semicolons; a text may
    # then hold a comma unquoted. A tab-separated file reads alike.
    make_images(tmp_path)
    code, _ = convert(tmp_path, "name;text;left;top;width;height\n"
                                "photos/a.png;1,5;30;12;20;10\nc.png;KX 7;;;;\n", capsys)
    assert code == 0
    assert json.loads((tmp_path / "train.json").read_text())["records"] == [
        {"name": "photos/a.png", "text": "1,5", "region": [30, 12, 20, 10]},
        {"name": "c.png", "text": "KX 7"}]
    code, _ = convert(tmp_path, "name\ttext\nc.png\t0,25\n", capsys, name="tabs.csv")
    assert code == 0
    assert json.loads((tmp_path / "tabs.json").read_text())["records"] == [
        {"name": "c.png", "text": "0,25"}]


def test_other_datasets_column_names_are_read_but_never_guessed(tmp_path, capsys):
    # filename,label is a common header; with two candidates for one column nothing is guessed
    make_images(tmp_path)
    code, _ = convert(tmp_path, "Filename,Label\nc.png,42\n", capsys)
    assert code == 0
    assert json.loads((tmp_path / "train.json").read_text())["records"] == [
        {"name": "c.png", "text": "42"}]
    code, out = convert(tmp_path, "file,path,label\nc.png,c.png,42\n", capsys, name="two.csv")
    assert code == 1 and "two.csv line 1: the header must name the columns" in out.err
    assert "(no name)" in out.err and not (tmp_path / "two.json").exists()


@pytest.mark.parametrize("header, box", [
    ("xmin,ymin,xmax,ymax", "30,12,50,22"),      # Pascal VOC's corners
    ("X1,Y1,X2,Y2", "30,12,50,22"),
    ("left,top,right,bottom", "30,12,50,22"),
    ("x,y,w,h", "30,12,20,10"),
])
def test_other_datasets_box_columns_crop_as_left_top_width_height(tmp_path, capsys, header, box):
    """A CSV whose box is named another dataset's way: the same region as left,top,width,height
    (not silently the whole image)."""
    make_images(tmp_path)
    code, _ = convert(tmp_path, f"name,text,{header}\nphotos/a.png,007,{box}\nc.png,1,,,,\n",
                      capsys)
    assert code == 0
    records = json.loads((tmp_path / "train.json").read_text())["records"]
    assert records == [{"name": "photos/a.png", "text": "007", "region": [30, 12, 20, 10]},
                       {"name": "c.png", "text": "1"}]
