"""bench.bench_peers without the peers' packages: the alphabet filter, the table's arithmetic
(eval.py's metrics), a set read end to end with a stand-in reader, our checkpoint's row, and the
one-line message where rapidocr-onnxruntime is missing. PaddleOCR itself only where installed."""
import json
import os
import sys

import pytest
from PIL import Image, ImageDraw, ImageFont

from bench import bench_peers as bp
from formats.records import load_split

PLATES = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def write_set(folder, texts, boxes):
    """Images of `texts` (white on grey, 90 x 30) and train.json and test.json (as
    prepare_data.py writes them from a labels CSV) with every text in both; a record's region
    from `boxes` where it is not None."""
    os.makedirs(folder, exist_ok=True)
    records = []
    for i, (text, box) in enumerate(zip(texts, boxes)):
        img = Image.new("RGB", (90, 30), (90, 90, 90))
        ImageDraw.Draw(img).text((5, 8), text, fill=(255, 255, 255))
        img.save(os.path.join(folder, f"{i}.png"))
        records.append({"name": f"{i}.png", "text": text})
        if box:
            records[-1]["region"] = list(box)
    for split in ("train", "test"):
        with open(os.path.join(folder, f"{split}.json"), "w") as f:
            json.dump({"split": split, "image_dir": ".", "records": records}, f)


def test_filter_keeps_the_sets_characters_as_a_user_would():
    alphabet = bp.set_alphabet(["AYO9034", "GWT2180"])
    assert alphabet == set("AYO9034GWT218")
    # PaddleOCR's plate readings: the dash and the degree sign are not characters of the set
    assert bp.keep_alphabet("AYO-9034", set(PLATES)) == "AYO9034"
    assert bp.keep_alphabet("JSC-7486°", set(PLATES)) == "JSC7486"
    # a space inside stays where the set has spaces; at the ends it goes, as the labels' does
    receipt = set(PLATES + " ")
    assert bp.keep_alphabet(" TAN WOON-YANN. ", receipt) == "TAN WOONYANN"
    # case: as labelled, lower-case output is not the set's; --ignore-case folds both sides
    assert bp.keep_alphabet("tan woon", receipt) == ""
    folded = bp.set_alphabet(["TAN WOON"], ignore_case=True)
    assert bp.keep_alphabet("tan woon", folded, ignore_case=True) == "TAN WOON"
    assert bp.set_alphabet(["ab"], ignore_case=True) == {"A", "B"}


def test_table_arithmetic_matches_hand_computed_values():
    preds = ["AB12", "AB1", "XY", "", "Q1"]
    truths = ["AB12", "AB13", "XZ", "Q", "1"]
    figures = bp.score(preds, truths)
    # whole: only the first; chars, position by position: 4 + 3 + 1 + 0 + 0 of 4+4+2+1+1 = 12;
    # CER: edit distances 0 + 1 + 1 + 1 + 1 over the 12 true characters
    assert figures["whole"] == pytest.approx(1 / 5)
    assert figures["chars"] == pytest.approx(8 / 12)
    assert figures["cer"] == pytest.approx(4 / 12)
    text = bp.table("plates", [("reader", figures, 12.5)], ["5 test images"])
    assert text.splitlines()[1] == "plates: 5 test images"
    assert text.splitlines()[-1].split() == ["reader", "20.0%", "66.7%", "0.333", "12.5"]


def test_a_set_end_to_end_with_a_stand_in_reader(tmp_path):
    texts = ["AB1", "C2", "ab1C"]
    write_set(tmp_path / "set", texts, [None, (5, 5, 50, 20), None])
    seen = []

    def reader(image_dir, records, threads):
        seen.extend(img.size for img in bp.crops(image_dir, records))
        return ["a-b·1", "C2", "AB1c"], 2.0

    args = bp.argparse.Namespace(ignore_case=False, threads=1)
    text = bp.bench_set(str(tmp_path / "set"), str(tmp_path / "work"), [("stand-in", reader)],
                        args)
    assert seen == [(90, 30), (50, 20), (90, 30)]  # the labelled box is the crop
    assert "3 test images" in text
    assert "the 7 characters of the train labels" in text
    # as labelled, kept: "ab1", "C2", "AB1" against "AB1", "C2", "ab1C": whole 1/3;
    # chars (1 + 2 + 1) / 9; CER (2 + 0 + 3) / 9; 3 images in 2 s
    assert text.splitlines()[-1].split() == ["stand-in", "33.3%", "44.4%", "0.556", "1.5"]
    args.ignore_case = True  # "AB1", "C2", "AB1C" against the same, folded: all read
    text = bp.bench_set(str(tmp_path / "set"), str(tmp_path / "work"), [("stand-in", reader)],
                        args)
    assert "the 5 characters of the train labels" in text
    assert text.splitlines()[-1].split()[1:4] == ["100.0%", "100.0%", "0.000"]


def test_our_checkpoint_reads_through_eval_machinery(tmp_path):
    repo = os.path.dirname(os.path.abspath(bp.ev.__file__))
    weights = os.path.join(repo, "weights", "replica.pt")
    if not os.path.exists(weights):
        pytest.skip("weights/replica.pt not found")
    write_set(tmp_path, ["17", "305"], [None, None])
    image_dir, records = load_split(str(tmp_path / "test.json"))
    texts, seconds = bp.read_checkpoint(weights, image_dir, records, 1)
    assert len(texts) == 2 and seconds > 0
    assert all(t and t.isdigit() for t in texts)  # the replica's vocabulary: digits


def test_missing_rapidocr_is_one_line_saying_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # import fails as if absent
    with pytest.raises(SystemExit) as e:
        bp.paddle_engine(1)
    message = str(e.value.code)
    assert "\n" not in message
    assert "rapidocr-onnxruntime" in message
    assert "pip install -r requirements-peers.txt" in message


def test_paddle_reads_a_clear_number_where_installed(tmp_path):
    pytest.importorskip("rapidocr_onnxruntime")
    img = Image.new("RGB", (240, 64), (255, 255, 255))
    ImageDraw.Draw(img).text((12, 8), "4721", fill=(0, 0, 0), font=ImageFont.load_default(44))
    img.save(tmp_path / "n.png")
    texts, _ = bp.read_paddle(bp.paddle_engine(1), str(tmp_path), [{"name": "n.png",
                                                                    "text": "4721"}], 1)
    assert bp.keep_alphabet(texts[0], set("0123456789")) == "4721"
