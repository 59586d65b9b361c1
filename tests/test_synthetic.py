"""synthetic.py: determinism, SVHN statistics, box invariants, held-out typefaces, the round trip
through digitStruct.mat and JSON, the CLI."""
import json
import os

import numpy as np
import pytest

import synthetic
from formats.digitstruct import read_digitstruct


def _sample(split, n, seed=0, metas=None, **kw):
    """n renders of a split; metas (a list) receives each one's family, material and ink."""
    out = []
    for i in range(n):
        meta = {}
        out.append(synthetic.render(synthetic.image_rng(seed, split, i), split, meta=meta, **kw))
        if metas is not None:
            metas.append(meta)
    return out


@pytest.fixture(scope="module")
def train_draws():
    metas = []
    return _sample("train", 400, metas=metas), metas


@pytest.fixture(scope="module")
def train_samples(train_draws):
    return train_draws[0]


def _check_pools(metas, held_out):
    """Every draw's family and material is held out (test_ood) or never held out (the rest)."""
    for i, meta in enumerate(metas):
        assert (meta["family"] in synthetic.HELD_OUT) == held_out, (i, meta["family"])
        if not held_out:  # (test_ood also puts held-out glyphs on the training materials)
            assert meta["material"] not in synthetic.HELD_OUT, (i, meta["material"])


def test_fonts_render_ten_distinct_digits():
    fonts = synthetic.fonts()
    assert len(fonts) >= 12  # DejaVu x12, STIX x4, cm x4 on a stock matplotlib alone
    assert not any("LastResort" in p or "Display" in p for p, _ in fonts)
    for face in fonts:
        masks = [synthetic.glyph(face, ch) for ch in "0123456789"]
        assert len({m.tobytes() for m in masks}) == 10


def test_held_out_families_are_disjoint_and_cover_every_kind():
    train, ood = set(synthetic.families(False)), set(synthetic.families(True))
    assert train and ood and not train & ood
    assert ood <= synthetic.HELD_OUT and not train & synthetic.HELD_OUT
    for pool in (train, ood):  # both draw procedural and TrueType digits
        assert pool & set(synthetic.PROC_FAMILIES) and pool - set(synthetic.PROC_FAMILIES)
    assert {"stencil", "dotmatrix", "dejavu-serif"} <= ood
    assert {"stroke", "segment7", "brush", "dejavu-sans"} <= train


def test_train_never_draws_held_out_styles(train_draws):
    metas = train_draws[1]
    _check_pools(metas, held_out=False)
    seen = {m["family"] for m in metas} | {m["material"] for m in metas}
    assert len(seen & set(synthetic.PROC_FAMILIES)) == 5  # the whole training mix is drawn
    assert len(seen & set(synthetic.MATERIALS)) == 4
    assert len(seen - set(synthetic.PROC_FAMILIES) - set(synthetic.MATERIALS)) >= 4  # TrueType


def test_procedural_glyphs_and_variants_differ():
    rng = np.random.default_rng(0)
    for family in synthetic.PROC_FAMILIES:
        style = synthetic.proc_style(rng, family)
        style.update(wobble=0.0, slant=0.0)
        masks = [np.asarray(synthetic.proc_glyph(style, k, rng)) for k in range(10)]
        assert all(m.max() == 255 for m in masks), family  # every digit has ink
        assert len({m.tobytes() for m in masks}) == 10, family
    style = synthetic.proc_style(rng, "stroke")
    style.update(wobble=0.0, slant=0.0)

    def glyph(digit, **variant):
        return np.asarray(synthetic.proc_glyph(dict(style, **variant), digit, rng)).tobytes()
    assert glyph(1, flag1="none", foot1=False) != glyph(1, flag1="long", foot1=False)
    assert glyph(1, flag1="short", foot1=False) != glyph(1, flag1="short", foot1=True)
    assert glyph(7, bar7=False) != glyph(7, bar7=True)
    assert glyph(4, four="closed") != glyph(4, four="open")
    assert glyph(6, tail6=True) != glyph(6, tail6=False)
    assert glyph(9, tail9=True) != glyph(9, tail9=False)


@pytest.mark.parametrize("split", ["train", "test_ood"])
def test_boxes_cover_each_digits_ink(split):
    # Each digit's ink (before walls, blur and noise) lies inside its own box, and fills it
    # edge to edge up to the annotator's margin; one clear pixel outside a box would mean the
    # label teaches the model to look in the wrong place.
    for i in range(60):
        meta = {}
        family = synthetic.PROC_FAMILIES[i % 7] if i < 14 else None
        img, digits = synthetic.render(synthetic.image_rng(1, split, i), split, meta=meta,
                                       family=family)
        assert len(meta["ink"]) == len(digits)
        for ink, (_, left, top, width, height) in zip(meta["ink"], digits):
            ys, xs = np.nonzero(ink > 60)
            assert len(xs), (i, meta["family"])
            assert xs.min() >= left and xs.max() < left + width, (i, meta["family"])
            assert ys.min() >= top and ys.max() < top + height, (i, meta["family"])
            # and the box is not much larger than the ink: margins are a fraction of the height
            assert width <= (xs.max() - xs.min() + 1) + 0.25 * height
        rows = np.nonzero(np.max(meta["ink"], axis=0).max(axis=1) > 60)[0]
        assert digits[0][4] <= (rows.max() - rows.min() + 1) * 1.3 + 2  # one shared height


def test_render_is_deterministic_and_splits_differ():
    a, b = _sample("train", 5, seed=3), _sample("train", 5, seed=3)
    for (ia, da), (ib, db) in zip(a, b):
        assert ia.tobytes() == ib.tobytes() and da == db
    # every family draws from the image's own generator only (no global random state)
    for family in synthetic.PROC_FAMILIES + synthetic.families(False)[:3]:
        one, two = [synthetic.render(synthetic.image_rng(5, "train", 0), family=family)
                    for _ in range(2)]
        assert one[0].tobytes() == two[0].tobytes() and one[1] == two[1], family
    # and in another order (no state carried between images: caches, fonts)
    for i, (img, digits) in reversed(list(enumerate(_sample("test_ood", 8, seed=3)))):
        again = synthetic.render(synthetic.image_rng(3, "test_ood", i), "test_ood")
        assert again[0].tobytes() == img.tobytes() and again[1] == digits
    other = _sample("test", 5, seed=3)
    assert [d for _, d in other] != [d for _, d in a]
    assert [d for _, d in _sample("train", 5, seed=4)] != [d for _, d in a]


def test_boxes_are_svhn_style(train_samples):
    for img, digits in train_samples:
        assert img.mode == "RGB"
        assert 1 <= len(digits) <= 6
        if len(digits) > 1:
            assert digits[0][0] != 10  # house numbers do not start with 0
        for label, left, top, width, height in digits:
            assert 1 <= label <= 10 and label == int(label)
            assert all(v == int(v) for v in (left, top, width, height))  # whole-number floats
            assert width > 0 and height > 0
        assert len({(d[2], d[4]) for d in digits}) == 1  # one shared top and height per image
        lefts = [d[1] for d in digits]
        assert lefts == sorted(lefts)  # read left to right


def test_train_statistics_follow_design(train_samples):
    n = len(train_samples)
    k = np.bincount([len(d) for _, d in train_samples], minlength=7)[1:5] / n
    target = np.array([5137, 18130, 8691, 1434]) / 33402
    assert np.all(np.abs(k - target) < 0.07), k
    widths = [img.size[0] for img, _ in train_samples]
    heights = [img.size[1] for img, _ in train_samples]
    box_h = [d[4] for _, ds in train_samples for d in ds]
    box_w = [d[3] for _, ds in train_samples for d in ds]
    assert 85 <= np.median(widths) <= 125 and 38 <= np.median(heights) <= 58
    assert 40 <= np.percentile(widths, 5) and np.percentile(widths, 95) <= 380
    assert 25 <= np.median(box_h) <= 33 and 12 <= np.percentile(box_h, 5) <= 17
    assert 55 <= np.percentile(box_h, 95) <= 80
    assert 11 <= np.median(box_w) <= 18  # about half the height
    assert np.mean([w > h for w, h in zip(widths, heights)]) > 0.95
    counts = np.bincount([int(d[0]) % 10 for _, ds in train_samples for d in ds], minlength=10)
    assert counts.argmax() == 1 and counts[1] > counts[5] > counts[9]
    assert 0.5 < counts[0] / counts[9] < 2.0  # 0 about as common as 9


@pytest.mark.parametrize("split", ["test", "test_ood"])
def test_test_split_has_its_own_statistics(split):
    metas = []
    samples = _sample(split, 250, metas=metas)
    _check_pools(metas, held_out=split == "test_ood")
    if split == "test_ood":
        seen = {m["family"] for m in metas} | {m["material"] for m in metas}
        assert {"stencil", "dotmatrix", "engraved", "tiles"} <= seen and len(seen) >= 8
    box_h = [d[4] for _, ds in samples for d in ds]
    widths = [img.size[0] for img, _ in samples]
    assert 20 <= np.median(box_h) <= 28
    assert 110 <= np.median(widths) <= 165
    k = np.bincount([len(d) for _, d in samples], minlength=7)
    assert k[2] > k[3] > k[4] and k[2] / len(samples) > 0.55


@pytest.mark.parametrize("edge", ["left", "top", "right", "bottom"])
def test_boxes_past_the_edge(edge):
    img, digits = synthetic.render(synthetic.image_rng(0, "train", 7), "train", edge=edge)
    W, H = img.size
    if edge == "left":
        assert digits[0][1] < 0
    elif edge == "top":
        assert all(d[2] < 0 for d in digits)
    elif edge == "right":
        assert digits[-1][1] + digits[-1][3] > W
    else:
        assert all(d[2] + d[4] > H for d in digits)


def test_long_numbers_and_difficulty_range():
    long = _sample("train", 60, long_boost=5000.0)
    assert any(len(d) >= 5 for _, d in long)
    img, digits = synthetic.render(synthetic.image_rng(0, "train", 0), digits=[1, 2, 3, 4, 5, 6, 0])
    assert [d[0] for d in digits] == [1, 2, 3, 4, 5, 6, 10]
    for difficulty in (0.0, 2.0):
        for img, digits in _sample("train", 20, difficulty=difficulty):
            assert all(d[3] > 0 and d[4] > 0 for d in digits)


def test_clean_digits_are_inside_their_boxes():
    # At difficulty 0 there is no clutter, noise or blur: the ink differs from the wall inside
    # the union of the boxes; every box column range holds some of that ink.
    for img, digits in _sample("train", 30, difficulty=0.0):
        a = np.asarray(img, np.float32)
        for _, left, top, width, height in digits:
            l, t = max(int(left), 0), max(int(top), 0)
            patch = a[t:int(top + height), l:int(left + width)]
            assert patch.size and patch.std() > 10  # glyph strokes against the background


@pytest.mark.slow
def test_generate_split_workers_and_round_trip(tmp_path):
    prepare_data = pytest.importorskip("prepare_data")
    one = synthetic.generate_split(str(tmp_path / "w1"), "train", 24, seed=1, workers=1)
    two = synthetic.generate_split(str(tmp_path / "w2"), "train", 24, seed=1, workers=2)
    assert one == two
    for name, _ in one:
        a = (tmp_path / "w1" / "train" / name).read_bytes()
        assert a == (tmp_path / "w2" / "train" / name).read_bytes()
    assert [n for n, _ in one] == [f"{i}.png" for i in range(1, 25)]
    # generator -> digitStruct.mat -> reader: exactly what was drawn
    assert read_digitstruct(str(tmp_path / "w1" / "train" / "digitStruct.mat")) == one
    # ... -> prepare_data JSON: SVHN 10 becomes 0, boxes are the same integers
    prepare_data.convert_split(str(tmp_path / "w1"), "train", str(tmp_path / "json"))
    records = json.loads((tmp_path / "json" / "train.json").read_text())["records"]
    assert len(records) == 24
    for rec, (name, digits) in zip(records, one):
        assert rec["name"] == name
        assert rec["digits"] == [int(d[0]) % 10 for d in digits]
        assert rec["boxes"] == [[int(v) for v in d[1:]] for d in digits]


def test_interrupted_run_leaves_no_lying_mat(tmp_path, monkeypatch):
    root = str(tmp_path)
    synthetic.generate_split(root, "test", 3, workers=1)
    mat = os.path.join(root, "test", "digitStruct.mat")
    assert os.path.exists(mat)
    calls = []

    def broken(*args, **kw):
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return real(*args, **kw)
    real = synthetic.render
    monkeypatch.setattr(synthetic, "render", broken)
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate_split(root, "test", 5, workers=1)
    assert not os.path.exists(mat)


def test_refuses_to_overwrite_real_data(tmp_path, capsys):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "digitStruct.mat").write_bytes(b"official")
    with pytest.raises(FileExistsError):
        synthetic.generate_split(str(tmp_path), "train", 2, workers=1)
    with pytest.raises(SystemExit) as e:
        synthetic.main(["--root", str(tmp_path), "--train", "2", "--test", "0", "--workers", "1"])
    assert "not a synthetic replica" in str(e.value)
    assert (tmp_path / "train" / "digitStruct.mat").read_bytes() == b"official"


def test_cli(tmp_path):
    synthetic.main(["--root", str(tmp_path), "--train", "4", "--extra", "2", "--test", "3",
                    "--workers", "1", "--difficulty", "0.5"])
    for split, n in (("train", 4), ("extra", 2), ("test", 3)):
        assert len(read_digitstruct(str(tmp_path / split / "digitStruct.mat"))) == n
    sheet = tmp_path / "sheet.png"
    synthetic.main(["--preview", str(sheet)])
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for bad in (["--bogus"], ["--train", "-1"], ["--difficulty", "-2"]):
        with pytest.raises(SystemExit) as e:
            synthetic.main(bad)
        assert e.value.code == 2


@pytest.mark.parametrize("flag", ["--long-boost", "--difficulty"])
def test_non_finite_knobs_are_refused(flag, tmp_path, capsys):
    with pytest.raises(SystemExit):
        synthetic.main([flag, "nan", "--train", "1", "--test", "0", "--root", str(tmp_path)])
    assert "finite numbers >= 0" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
