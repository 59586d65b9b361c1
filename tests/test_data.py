"""The data path: crop geometry and padding, mode conversion and the pixel limit (crops.py), split
files and bad records (records.py), tokenizer ids and round trip (tokenizer.py), augmentation
shapes/ranges, exact boxes, collate, worker pickling and the figure CLI (data.py)."""
import json
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, features

import data
from support import crops
from support.images import crop_box, crop_image, find_images, open_image, to_rgb
from formats.records import load_split, split_median_aspect
from training import augment, synth_lines
from support.tokenizer import (BOS, EOS, PAD, UNK, build_tokenizer, label_ids, token_text,
                       tokenizer_from_vocab, tokens_to_text)

# the real sample's three images ("19", "23", "25"); boxes of 1.png and 2.png as published with
# the sample, 3.png's read from its digitStruct.mat
SAMPLE_RECORDS = [
    {"name": "1.png", "digits": [1, 9], "boxes": [[246, 77, 81, 219], [323, 81, 96, 219]]},
    {"name": "2.png", "digits": [2, 3], "boxes": [[77, 29, 23, 32], [98, 25, 26, 32]]},
    {"name": "3.png", "digits": [2, 5], "boxes": [[17, 5, 8, 15], [25, 5, 9, 15]]},
]


def write_split(folder, records, image_dir="."):
    path = os.path.join(folder, "split.json")
    with open(path, "w") as f:
        json.dump({"split": "train", "image_dir": image_dir, "records": records}, f)
    return path


@pytest.fixture
def sample_json(sample_dir, tmp_path):
    return write_split(str(tmp_path), SAMPLE_RECORDS, image_dir=os.path.abspath(sample_dir))


# -- crop geometry -------------------------------------------------------------------------------

@pytest.mark.parametrize("boxes, expected", [
    # union x 10..41, y 20..55: 31 x 35 -> 40.3 x 45.5 around the fractional centre (25.5, 37.5);
    # left int(5.35) = 5, top int(14.75) = 14 (rounding would give 15), width 40, height 45
    ([[10, 20, 10, 30], [31, 25, 10, 30]], (5, 14, 40, 45)),
    # negative offsets: x -3..2 -> 6.5 wide around -0.5: left int(-3.75) = -3 (floor: -4);
    # y -2..5 -> 9.1 high around 1.5: top int(-3.05) = -3; width 6, height 9
    ([[-3, -2, 5, 7]], (-3, -3, 6, 9)),
    # the real sample's 2.png ("23"): x 77..124, y 25..61 -> 61.1 x 46.8 around (100.5, 43):
    # left int(69.95) = 69, top int(19.6) = 19
    ([[77, 29, 23, 32], [98, 25, 26, 32]], (69, 19, 61, 46)),
    # fractional boxes: x 0.5..3.75 -> 4.225 wide around 2.125: left int(0.0125) = 0;
    # y -7.5..-1.5 -> 7.8 high around -4.5: top int(-8.4) = -8; width 4, height 7
    ([[0.5, -7.5, 3.25, 6.0]], (0, -8, 4, 7)),
    # an empty union still gives a 1 x 1 crop
    ([[10, 10, 0, 0]], (10, 10, 1, 1)),
])
def test_crop_box_truncates_like_the_recipe(boxes, expected):
    box = crop_box(boxes)
    assert box == expected and all(type(v) is int for v in box)


def test_crop_box_needs_a_box():
    with pytest.raises(ValueError):
        crop_box([])


@pytest.mark.parametrize("box", [(-5, -3, 30, 16), (-50, -50, 10, 10), (100, 100, 30, 10),
                                 (5, 5, 1, 1), (3, 2, 4, 4)])
def test_crop_pads_black_past_every_edge_and_never_fails(box):
    img = Image.new("RGB", (20, 10), (255, 255, 255))
    out = crop_image(img, box)
    x0, y0, width, height = box
    assert out.size == (width, height)
    a = np.asarray(out)
    for y in range(a.shape[0]):
        for x in range(a.shape[1]):
            inside = 0 <= x + x0 < 20 and 0 <= y + y0 < 10
            assert (a[y, x] == (255 if inside else 0)).all()


def seed_eval_tensor(path, left, top, width, height):
    """The recipe's evaluation input built from torchvision alone: crop, Resize((64, 64)),
    CenterCrop((54, 54)), ToTensor, nothing else."""
    import torchvision.transforms as T
    pipeline = T.Compose([T.Resize((64, 64)), T.CenterCrop((54, 54)), T.ToTensor()])
    with Image.open(path) as img:
        img = img.convert("RGB")
        return pipeline(img.crop((left, top, left + width, top + height)))


def test_eval_tensor_equals_the_torchvision_pipeline(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(47, 131, 3), dtype=np.uint8)
    pixels[10:20, 10:20] = 255  # the top of the range is reached ...
    pixels[25:35, 40:50] = 0    # ... and the bottom
    Image.fromarray(pixels).save(tmp_path / "noise.png")
    records = [{"name": "noise.png", "digits": [4, 2],
                "boxes": [[8.5, 6, 30, 22], [40, 5.5, 25, 30]]},
               {"name": "noise.png", "digits": [7], "boxes": [[-4, -6, 20, 30]]}]
    ds = data.SVHNDataset((str(tmp_path), records), train=False)
    # by hand: union x 8.5..65, y 5.5..35.5: 73.45 x 39 around (36.75, 20.5): left int(0.025) = 0,
    # top int(1.0) = 1; x -4..16, y -6..24: 26 x 39 around (6, 9): left -7, top int(-10.5) = -10
    for i, box in enumerate([(0, 1, 73, 39), (-7, -10, 26, 39)]):
        x = ds[i][0]
        expected = seed_eval_tensor(tmp_path / "noise.png", *box)
        assert torch.equal(x, expected), i
        assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    assert ds[0][0].max() == 1 and ds[0][0].min() == 0  # [0, 1], not normalised to [-1, 1]


def test_eval_tensor_of_real_images_equals_the_torchvision_pipeline(sample_json, sample_dir):
    ds = data.SVHNDataset(sample_json, train=False)
    # the crops computed by hand with the recipe's arithmetic (2.png: see the crop_box test;
    # 1.png: x 246..419, y 77..300 -> 224.9 x 289.9 around (332.5, 188.5): left int(220.05),
    # top int(43.55); 3.png: x 17..34, y 5..20 -> 22.1 x 19.5 around (25.5, 12.5): int(14.45),
    # int(2.75))
    boxes = [(220, 43, 224, 289), (69, 19, 61, 46), (14, 2, 22, 19)]
    for i, box in enumerate(boxes):
        x = ds[i][0]
        assert torch.equal(x, seed_eval_tensor(os.path.join(sample_dir, f"{i + 1}.png"), *box))
        assert 0 <= x.min() and x.max() <= 1


def test_dataset_survives_boxes_outside_image_and_zero_size(tmp_path):
    Image.new("RGB", (40, 20), (200, 100, 50)).save(tmp_path / "a.png")
    records = [{"name": "a.png", "digits": [1, 2], "boxes": [[-10, -5, 8, 30], [35, 2, 20, 25]]},
               {"name": "a.png", "digits": [3], "boxes": [[-500, -500, 10, 10]]},
               {"name": "a.png", "digits": [4], "boxes": [[10, 10, 0, 0]]}]
    for train in (False, True):
        ds = data.SVHNDataset((str(tmp_path), records), train=train)
        for i in range(len(ds)):
            x, tokens, boxes = ds[i]
            assert x.shape == (3, 54, 54)
            assert torch.isfinite(x).all() and torch.isfinite(boxes).all()
    x, _, _ = data.SVHNDataset((str(tmp_path), records), train=False)[1]
    assert (x == 0).all()  # fully outside: all padding, black


# -- image modes ---------------------------------------------------------------------------------

def test_to_rgb_converts_every_mode():
    grey = Image.new("L", (4, 3), 128)
    assert np.asarray(to_rgb(grey)).tolist() == [[[128] * 3] * 4] * 3
    rgba = Image.new("RGBA", (4, 3), (255, 255, 0, 255))
    rgba.putpixel((0, 0), (255, 255, 255, 0))  # fully transparent behind light yellow: black
    a = np.asarray(to_rgb(rgba))
    assert a[0, 0].tolist() == [0, 0, 0] and a[1, 1].tolist() == [255, 255, 0]
    pal = Image.new("P", (4, 3), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    assert np.asarray(to_rgb(pal))[0, 0].tolist() == [10, 200, 30]
    pal.info["transparency"] = 1
    assert np.asarray(to_rgb(pal))[0, 0].tolist() == [0, 0, 0]
    deep = Image.fromarray(np.full((3, 4), 65535, dtype=np.uint16))
    assert deep.mode.startswith("I;16")
    assert np.asarray(to_rgb(deep))[0, 0].tolist() == [255, 255, 255]
    for img in (grey, rgba, pal, deep, Image.new("1", (4, 3), 1), Image.new("LA", (4, 3)),
                Image.new("CMYK", (4, 3)), Image.new("F", (4, 3), 3.0), Image.new("I", (4, 3), 7)):
        out = to_rgb(img)
        assert out.mode == "RGB" and out.size == (4, 3)


def test_a_12_bit_camera_image_in_a_16_bit_file_is_not_black(tmp_path):
    # an industrial camera's 12-bit grey (0..4095) saved as a 16-bit PNG: white is 4095, not
    # 65535; scaled as 16 bits the paper (4000) would read 15 of 255, a black picture
    pixels = np.full((6, 10), 4000, dtype=np.uint16)
    pixels[2:4, 3:7] = 100  # the ink
    Image.fromarray(pixels).save(tmp_path / "cam.png")
    grey = np.asarray(open_image(str(tmp_path / "cam.png")))[..., 0]
    assert grey[0, 0] == int(4000 * 255 / 4095) and grey[3, 4] == int(100 * 255 / 4095)
    # a full-range 16-bit file keeps its scale, and 8-bit values in a deep mode stay as they are
    full = np.full((2, 3), 65535, dtype=np.uint16)
    full[0, 0] = 32896  # 128 x 257 (Pillow may open it as I;16 or I)
    out = np.asarray(to_rgb(Image.fromarray(full)))[..., 0]
    assert out[0, 0] == 128 and out[1, 1] == 255
    assert np.asarray(to_rgb(Image.new("I", (2, 2), 200)))[0, 0, 0] == 200


def test_dark_ink_on_a_transparent_sheet_stays_readable():
    # a handwritten amount saved as black strokes on a transparent sheet (the pixels under the
    # transparency black too, as many exporters leave them): on a black backdrop the strokes
    # would vanish; they must stand out on white, and light strokes on black
    for ink, paper in ((0, 255), (255, 0)):
        sheet = np.zeros((8, 12, 4), dtype=np.uint8)
        sheet[..., :3] = ink
        sheet[2:6, 3:5, 3] = 255  # the stroke: opaque; the rest fully transparent
        sheet[6, 8, 3] = 128  # an anti-aliased edge: half the ink, half the paper
        grey = np.asarray(to_rgb(Image.fromarray(sheet, "RGBA")))[..., 0]
        assert grey[3, 4] == ink and grey[0, 0] == paper
        assert abs(int(grey[6, 8]) - 128) <= 1
    empty = Image.new("RGBA", (4, 3), (0, 0, 0, 0))  # nothing visible: the padding's black
    assert np.asarray(to_rgb(empty)).max() == 0


def test_grayscale_and_rgba_files_load(tmp_path):
    Image.new("L", (30, 20), 90).save(tmp_path / "g.png")
    Image.new("RGBA", (30, 20), (0, 255, 0, 128)).save(tmp_path / "t.png")
    Image.new("P", (30, 20), 0).save(tmp_path / "p.png")
    records = [{"name": n, "digits": [7], "boxes": [[5, 5, 10, 10]]}
               for n in ("g.png", "t.png", "p.png")]
    ds = data.SVHNDataset((str(tmp_path), records), train=False)
    assert all(ds[i][0].shape == (3, 54, 54) for i in range(3))


# -- augmentation --------------------------------------------------------------------------------

@pytest.mark.parametrize("train", [False, True])
def test_augmentation_shapes_and_range_on_real_sample(sample_json, train):
    ds = data.SVHNDataset(sample_json, train=train)
    assert [ds.label(i) for i in range(3)] == ["19", "23", "25"]
    for i in range(len(ds)):
        x, tokens, boxes = ds[i]
        assert x.shape == (3, 54, 54) and x.dtype == torch.float32
        assert x.min() >= 0 and x.max() <= 1
        assert tokens.dtype == torch.long and tokens[0] == BOS and tokens[-1] == EOS
        assert boxes.shape == (2, 4)
    small = data.SVHNDataset(sample_json, train=train, image_size=32, crop_size=28)
    assert small[0][0].shape == (3, 28, 28)
    with pytest.raises(ValueError):
        data.SVHNDataset(sample_json, train=train, image_size=32, crop_size=40)


def bright_square_dataset(folder, train):
    """A 200x100 black image with one white 40x40 'digit' at (80, 30)."""
    img = Image.new("RGB", (200, 100))
    ImageDraw.Draw(img).rectangle([80, 30, 119, 69], fill=(255, 255, 255))
    img.save(os.path.join(folder, "sq.png"))
    record = {"name": "sq.png", "digits": [5], "boxes": [[80, 30, 40, 40]]}
    return data.SVHNDataset((folder, [record]), train=train)


def test_eval_boxes_land_exactly_on_the_digit(tmp_path):
    x, _, boxes = bright_square_dataset(str(tmp_path), train=False)[0]
    # crop (74, 24)-(126, 76), 52 px -> 64 px, then centre crop offset 5
    s = 64 / 52
    expected = [6 * s - 5, 6 * s - 5, 46 * s - 5, 46 * s - 5]
    assert boxes[0].tolist() == pytest.approx(expected, abs=1e-4)
    img = x[0]  # (54, 54)
    lo, hi = int(np.ceil(expected[0])) + 1, int(np.floor(expected[2])) - 1
    assert img[lo:hi, lo:hi].min() > 0.95  # inside the box: white
    assert img[:lo - 2, :].max() < 0.05 and img[hi + 2:, :].max() < 0.05  # outside: black


def test_train_boxes_follow_the_random_crop(tmp_path):
    torch.manual_seed(0)
    ds = bright_square_dataset(str(tmp_path), train=True)
    for _ in range(10):
        x, _, boxes = ds[0]
        img = x[0]
        x0, y0, x1, y1 = boxes[0].clamp(0, 54).tolist()  # the crop may cut the square
        inside = img[int(np.ceil(y0)) + 1:int(y1) - 1, int(np.ceil(x0)) + 1:int(x1) - 1]
        mask = torch.ones_like(img, dtype=torch.bool)
        rows = slice(max(int(y0) - 1, 0), int(np.ceil(y1)) + 1)
        cols = slice(max(int(x0) - 1, 0), int(np.ceil(x1)) + 1)
        mask[rows, cols] = False
        assert inside.numel() > 0
        if not mask.any():
            continue  # the square fills the whole crop
        assert inside.min() > img[mask].max()  # jitter changes values, not where the digit is


def wide_number_dataset(folder, train):
    """A 300x100 black image with two white 'digits' of a wide number, as SVHN's are: box A at
    x 100-120, y 30-70 and box B at x 130-160, y 35-65 (left, top, width, height below)."""
    img = Image.new("RGB", (300, 100))
    draw = ImageDraw.Draw(img)
    draw.rectangle([100, 30, 119, 69], fill=(255, 255, 255))  # PIL's corners are inclusive
    draw.rectangle([130, 35, 159, 64], fill=(255, 255, 255))
    img.save(os.path.join(folder, "wide.png"))
    record = {"name": "wide.png", "digits": [1, 7], "boxes": [[100, 30, 20, 40], [130, 35, 30, 30]]}
    return data.SVHNDataset((folder, [record]), train=train)


# Union x 100-160, y 30-70, centre (130, 50), grown 30%: 78 x 52 from (91, 24), whole pixels by
# either rounding rule. Resized to 64 x 64: x scales by 64/78, y by 64/52 (not the same).
SX, SY = 64 / 78, 64 / 52
WIDE_BOXES = [[(100 - 91) * SX, (30 - 24) * SY, (120 - 91) * SX, (70 - 24) * SY],
              [(130 - 91) * SX, (35 - 24) * SY, (160 - 91) * SX, (65 - 24) * SY]]  # in the 64 x 64


def test_eval_boxes_of_a_wide_number_are_exact(tmp_path):
    x, _, boxes = wide_number_dataset(str(tmp_path), train=False)[0]
    expected = np.array(WIDE_BOXES) - 5  # the centre crop 54 of 64 starts at (5, 5)
    # e.g. box A: x 2.385 .. 18.795, y 2.385 .. 51.615; box B: x 27.000 .. 51.615, y 8.538 .. 45.462
    np.testing.assert_allclose(boxes.numpy(), expected, atol=1e-4)
    img = x[0]  # (54, 54), red channel
    for x0, y0, x1, y1 in expected:
        assert img[int(y0) + 2:int(y1) - 1, int(x0) + 2:int(x1) - 1].min() > 0.9  # the digit
    gap = img[:, int(expected[0][2]) + 2:int(expected[1][0]) - 1]  # between the digits
    assert gap.numel() and gap.max() < 0.1
    # eval.py's localisation with these boxes: on a 7 x 7 map, cell (row 2, col 1) has its
    # centre (11.6, 19.3) in A, cell (row 1, col 4) its centre (34.7, 11.6) in B
    import eval as ev
    attention = torch.zeros(1, 3, 49)
    attention[0, 0, 2 * 7 + 1] = 1
    attention[0, 1, 1 * 7 + 4] = 1
    peaks = ev.attention_peaks(attention, (7, 7), (54, 54))
    np.testing.assert_allclose(peaks[0, :2].numpy(), [[1.5 * 54 / 7, 2.5 * 54 / 7],
                                                      [4.5 * 54 / 7, 1.5 * 54 / 7]], rtol=1e-6)
    assert ev.attention_hits(peaks, [2], [boxes]) == (2, 2)
    assert ev.attention_hits(peaks.flip(1)[:, 1:], [2], [boxes]) == (0, 2)  # B's peak for A


def test_a_stretch_cap_keeps_the_regions_shape_and_pads_the_rest(tmp_path):
    # the wide number's region (78 x 52, aspect 1.5) into a 32 x 256 input: squashed it fills
    # all 256 columns; with max_stretch 4 it is 4 x 1.5 x 32 = 192 wide at the left, and the
    # other 64 columns are its mean colour
    wide_number_dataset(str(tmp_path), train=False)
    record = {"name": "wide.png", "digits": [1, 7], "boxes": [[100, 30, 20, 40], [130, 35, 30, 30]]}
    shape = [32, 256]
    ds = data.SVHNDataset((str(tmp_path), [record]), image_size=shape, crop_size=shape,
                          max_stretch=4.0)
    x, _, boxes = ds[0]
    with Image.open(tmp_path / "wide.png") as img:
        region = img.convert("RGB").crop((91, 24, 169, 76))
    content = np.asarray(region.resize((192, 32), Image.BILINEAR), dtype=np.float64)  # PIL alone
    pixels = x.permute(1, 2, 0).numpy() * 255
    np.testing.assert_allclose(pixels[:, :192], content, atol=1e-3)
    mean = np.round(content.reshape(-1, 3).mean(axis=0))
    assert 0 < mean[0] < 255  # black and white mixed: a grey, neither side's colour
    np.testing.assert_allclose(pixels[:, 192:], np.broadcast_to(mean, (32, 64, 3)), atol=1e-3)
    sx, sy = 192 / 78, 32 / 52  # the boxes follow the region's own scale, not the input's
    expected = [[(100 - 91) * sx, (30 - 24) * sy, (120 - 91) * sx, (70 - 24) * sy],
                [(130 - 91) * sx, (35 - 24) * sy, (160 - 91) * sx, (65 - 24) * sy]]
    np.testing.assert_allclose(boxes.numpy(), expected, atol=1e-4)
    squashed = data.SVHNDataset((str(tmp_path), [record]), image_size=shape, crop_size=shape)[0]
    assert squashed[0][0, 16, 250] == 0  # squashed, the last columns are the image's black


@pytest.mark.parametrize("size, expected", [
    ((78, 52), 192),    # 1.5:1 -> 4 x 1.5 x 32
    ((400, 40), 256),   # 10:1 would be 1,280 wide: squashed into the input like the seed
    ((1, 4000), 1),     # a hair: one column, never none
    ((64, 32), 256),    # exactly 8:1 at 4x fills the input
])
def test_fitted_width(size, expected):
    assert crops.fitted_width(size, [32, 256], 4.0) == expected
    assert crops.fitted_width(size, [32, 256], 0.0) == 256  # 0: the seed's squash
    img = crops.resize_region(Image.new("RGB", size, (9, 99, 199)), [32, 256], 4.0)
    assert img.size == (256, 32) and img.getpixel((255, 31)) == (9, 99, 199)


def test_train_boxes_of_a_wide_number_follow_a_known_crop(tmp_path, monkeypatch):
    # RandomResizedCrop's draw fixed to a 50 wide, 40 high window at (left 2, top 4) of the
    # 64 x 64: x scales by 54/50, y by 54/40
    monkeypatch.setattr(data.T.RandomResizedCrop, "get_params",
                        staticmethod(lambda img, scale, ratio: (4, 2, 40, 50)))
    torch.manual_seed(0)
    x, _, boxes = wide_number_dataset(str(tmp_path), train=True)[0]
    expected = [[(bx0 - 2) * 54 / 50, (by0 - 4) * 54 / 40, (bx1 - 2) * 54 / 50, (by1 - 4) * 54 / 40]
                for bx0, by0, bx1, by1 in WIDE_BOXES]
    # e.g. box A: x 5.815 .. 23.56, y 4.569 .. 67.27 (past the crop's bottom edge: not clipped)
    np.testing.assert_allclose(boxes.numpy(), expected, atol=1e-4)
    img = x.mean(0)  # (54, 54); colour jitter changes values, not places
    a, b = expected
    digit_a = img[int(a[1]) + 2:, int(a[0]) + 2:int(a[2]) - 1]
    digit_b = img[int(b[1]) + 2:int(b[3]) - 1, int(b[0]) + 2:int(b[2]) - 1]
    gap = img[:, int(a[2]) + 2:int(b[0]) - 1]
    left = img[:, :int(a[0]) - 1]
    assert gap.numel() and left.numel()
    assert min(digit_a.min(), digit_b.min()) > max(gap.max(), left.max())


def test_the_seeds_augmentation_parameters_are_the_ones_applied(tmp_path, monkeypatch):
    # pinned through the calls torchvision receives, not the constants: a move of the data code
    # that passed another scale, ratio or jitter would train a different model silently
    crops, jitters = [], []
    get_crop = data.T.RandomResizedCrop.get_params
    get_jitter = data.T.ColorJitter.get_params

    def record_crop(img, scale, ratio):
        crops.append((tuple(scale), tuple(ratio)))
        return get_crop(img, scale, ratio)

    def record_jitter(brightness, contrast, saturation, hue):
        jitters.append((brightness, contrast, saturation, hue))
        return get_jitter(brightness, contrast, saturation, hue)
    monkeypatch.setattr(data.T.RandomResizedCrop, "get_params", staticmethod(record_crop))
    monkeypatch.setattr(data.T.ColorJitter, "get_params", staticmethod(record_jitter))
    torch.manual_seed(0)
    x, _, _ = wide_number_dataset(str(tmp_path), train=True)[0]
    assert x.shape == (3, 54, 54)
    assert crops == [((0.7, 1.0), (3.0 / 4.0, 4.0 / 3.0))]
    # ColorJitter(0.5, 0.5, 0.5, 0.5): factors in [0.5, 1.5], hue shifted by up to half a turn
    assert [tuple(map(tuple, j)) for j in jitters] == [((0.5, 1.5), (0.5, 1.5), (0.5, 1.5),
                                                       (-0.5, 0.5))]
    crops.clear()
    jitters.clear()
    wide_number_dataset(str(tmp_path), train=False)[0]  # evaluation: a centre crop, no jitter
    assert crops == [] and jitters == []


# -- tokenizer -----------------------------------------------------------------------------------

def test_tokenizer_ids_and_vocab_round_trip():
    enc = build_tokenizer(["19", "23", "015"])
    assert enc.vocab[:4] == ["<pad>", "<unk>", "</s>", "<s>"]
    assert (PAD, UNK, EOS, BOS) == (0, 1, 2, 3)
    assert sorted(enc.vocab[4:]) == ["0", "1", "2", "3", "5", "9"]
    ids = enc.encode(token_text("19"))
    assert ids.tolist() == [3, enc.vocab.index("1"), enc.vocab.index("9"), 2]
    assert tokens_to_text(ids, enc.vocab) == "19"
    assert tokens_to_text([3, enc.vocab.index("5"), 1, 2, 4], enc.vocab) == "5?"
    # a checkpoint's vocabulary, in an order no data set would give, comes back exactly
    vocab = ["<pad>", "<unk>", "</s>", "<s>"] + list("7402968153")
    rebuilt = tokenizer_from_vocab(vocab)
    assert rebuilt.vocab == vocab
    assert rebuilt.encode("<s>73").tolist() == [3, 4, 13, 2]
    again = tokenizer_from_vocab(pickle.loads(pickle.dumps(enc)).vocab)
    assert again.vocab == enc.vocab
    assert again.encode("<s>015").tolist() == enc.encode("<s>015").tolist()
    for bad in (["<s>", "1"], vocab + ["7"], ["<pad>", "<unk>", "</s>", "1"]):
        with pytest.raises(ValueError):
            tokenizer_from_vocab(bad)


def test_label_ids_strips_start_stops_at_end():
    # one function turns training targets and decoded tokens into digits for validation, eval.py
    # and play.py: keeping </s> or <s> would make every right answer count as wrong
    assert label_ids([3, 5, 6, 2, 0, 0]) == [5, 6]  # a padded target row
    assert label_ids(torch.tensor([3, 5, 6, 2])) == [5, 6]
    assert label_ids([5, 6]) == [5, 6]  # decoded tokens come without <s> and </s>
    assert label_ids([5, 2, 7, 2]) == [5]  # the first </s> ends it
    assert label_ids([3, 2]) == [] and label_ids([]) == []
    assert label_ids([3, 1, 4]) == [1, 4]  # <unk> is kept: a wrong answer, not a gap
    # another model's reserved ids (eval.py passes its checkpoint's)
    assert label_ids([9, 4, 5, 8, 7], pad_id=7, eos_id=8, bos_id=9) == [4, 5]


def test_validation_and_evaluation_read_targets_alike():
    import eval as ev
    import contextlib

    from training import engine
    tokens = torch.tensor([[3, 4, 2, 0], [3, 5, 6, 2], [3, 8, 2, 0], [3, 9, 9, 2]])
    config = {"pad_id": PAD, "eos_id": EOS, "bos_id": BOS}
    assert ev.truth_ids(tokens, config) == [[4], [5, 6], [8], [9, 9]]

    class Model:  # right on rows 0 and 1, one digit short on row 2, one too many on row 3
        def eval(self):
            return self

        def decode(self, images):
            return {"tokens": [[4], [5, 6], [], [9, 9, 9]]}
    acc = engine.validate(Model(), [(torch.zeros(4, 3, 2, 2), tokens, None)], torch.device("cpu"),
                          contextlib.nullcontext(), torch.contiguous_format, ddp=False)
    assert acc == 0.5


# -- batching ------------------------------------------------------------------------------------

def test_collate_pads_with_zero():
    batch = [(torch.zeros(3, 8, 8), torch.tensor([3, 5, 2]), torch.zeros(1, 4)),
             (torch.ones(3, 8, 8), torch.tensor([3, 5, 6, 7, 2]), torch.zeros(3, 4))]
    images, tokens, boxes = data.collate(batch)
    assert images.shape == (2, 3, 8, 8)
    assert tokens.tolist() == [[3, 5, 2, 0, 0], [3, 5, 6, 7, 2]]
    assert [b.shape[0] for b in boxes] == [1, 3]


@pytest.mark.slow
def test_dataloader_with_two_workers(sample_json):
    ds = data.SVHNDataset(sample_json, train=True)
    clone = pickle.loads(pickle.dumps(ds))  # what a spawn worker receives
    assert clone[2][1].tolist() == ds[2][1].tolist()
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=data.collate)
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [2, 1]
    assert batches[0][1].shape == (2, 4)


# -- bad inputs ----------------------------------------------------------------------------------

def test_load_split_errors_name_the_file(tmp_path):
    missing = str(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_split(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json.*not valid JSON"):
        load_split(str(bad))
    bad.write_text(json.dumps({"records": []}))
    with pytest.raises(ValueError, match="bad.json.*image_dir"):
        load_split(str(bad))
    bad.write_text(json.dumps({"image_dir": ".", "records": [{"name": "1.png", "digits": [1],
                                                               "boxes": []}]}))
    with pytest.raises(ValueError, match="bad.json: record 0"):
        load_split(str(bad))
    os.makedirs(tmp_path / "train")
    image_dir, records = load_split(write_split(str(tmp_path), SAMPLE_RECORDS, "train"))
    assert image_dir == os.path.join(str(tmp_path), "train") and records == SAMPLE_RECORDS


@pytest.mark.parametrize("change", [
    {"digits": [10, 9]},            # SVHN's raw label 10: silently became an 11th class
    {"digits": ["1", 9]},           # strings: int() failed later without naming the file
    {"digits": [True, 9]},
    {"boxes": [["a", 1, 2, 3], [1, 2, 3, 4]]},  # numpy's error, no file name
    {"boxes": [[float("nan"), 1, 2, 3], [1, 2, 3, 4]]},  # NaN crop at the first __getitem__
])
def test_load_split_rejects_bad_digits_and_boxes(tmp_path, change):
    record = dict(SAMPLE_RECORDS[0], **change)
    path = write_split(str(tmp_path), [SAMPLE_RECORDS[1], record])
    with pytest.raises(ValueError, match=r"split.json: record 1 needs .*digits 0\.\.9"):
        load_split(path)
    with pytest.raises(ValueError, match="split.json"):  # the Dataset goes through the same check
        data.SVHNDataset(path)


def test_load_split_checks_image_dir_and_folder_paths(tmp_path):
    # an image_dir that is gone is named when the split loads, not at the first image read
    path = write_split(str(tmp_path), SAMPLE_RECORDS, image_dir="moved_away")
    gone = "split.json: image_dir .*moved_away is not a folder"
    with pytest.raises(FileNotFoundError, match=gone):
        load_split(path)
    path = write_split(str(tmp_path), SAMPLE_RECORDS, image_dir=5)  # not a TypeError from os.path
    with pytest.raises(ValueError, match="split.json: not a split file"):
        load_split(path)
    with pytest.raises(ValueError, match="is a folder, not a split JSON"):
        load_split(str(tmp_path))


def test_missing_or_broken_image_names_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    records = [{"name": n, "digits": [1], "boxes": [[0, 0, 5, 5]]}
               for n in ("gone.png", "broken.png")]
    ds = data.SVHNDataset((str(tmp_path), records))
    for i, name in enumerate(("gone.png", "broken.png")):
        with pytest.raises(OSError, match=name):
            ds[i]


def test_cli_writes_figure_and_fails_cleanly(sample_json, tmp_path, capsys):
    out = str(tmp_path / "img" / "aug.png")
    data.main(["--json", sample_json, "--n", "3", "--rows", "2", "--out", out])
    assert Image.open(out).size[0] > 100
    with pytest.raises(SystemExit, match="data.py: error: .*nope.json"):
        data.main(["--json", str(tmp_path / "nope.json"), "--out", out])
    with pytest.raises(SystemExit):
        data.main(["--json", sample_json, "--bogus"])
    for flag in (["--n", "0"], ["--rows", "-1"]):  # were matplotlib's errors, naming no flag
        with pytest.raises(SystemExit) as e:
            data.main(["--json", sample_json, "--out", out, *flag])
        assert e.value.code == 2
    assert "--n must be >= 1" in capsys.readouterr().err
    folder = tmp_path / "taken"
    folder.mkdir()
    with pytest.raises(SystemExit, match="data.py: error: .*taken"):  # --out is a folder
        data.main(["--json", sample_json, "--n", "1", "--rows", "1", "--out", str(folder)])
    assert not os.path.exists(str(folder) + ".tmp")  # no temporary file left behind


# -- one way to open images, with a pixel limit ------------------------------------------------

def png_header(path, width, height):
    """A PNG whose header claims width x height (8-bit grey) and holds no pixels: how a
    decompression bomb looks before decoding, written without allocating it."""
    import struct
    import zlib

    def chunk(kind, body):
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [13_000, 50_000])
def test_huge_images_are_unreadable_images_not_tracebacks(tmp_path, side):
    # 50,000^2 would raise PIL's DecompressionBombError out of every script; 13,000^2 (169 MP,
    # under PIL's error threshold) would be decoded, ~0.5 GB a worker, doubled by the RGB
    # conversion: both are one-line errors above --max-pixels
    png_header(tmp_path / "big.png", side, side)
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(OSError) as e:
        open_image(str(tmp_path / "big.png"))
    assert str(e.value) == (f"{tmp_path / 'big.png'}: cannot read image ({side} x {side} pixels, "
                            f"above the limit of 50,000,000 (--max-pixels))")
    assert Image.MAX_IMAGE_PIXELS == before  # PIL's global limit is restored
    records = [{"name": "big.png", "digits": [1], "boxes": [[0, 0, 5, 5]]}]
    with pytest.raises(OSError, match="big.png: cannot read image .* above the limit"):
        data.SVHNDataset((str(tmp_path), records))[0]


def test_absurd_box_and_the_limit_flag(tmp_path):
    # a JSON box of 1e12 made PIL allocate (DecompressionBombError) for a crop of 10^24 pixels:
    # beyond 2^24 it is a bad record; below, a crop above the pixel limit is an unreadable image
    Image.new("RGB", (20, 10), (200, 100, 50)).save(tmp_path / "a.png")
    records = [{"name": "a.png", "digits": [1], "boxes": [[0, 0, 1e7, 1e7]]},
               {"name": "a.png", "digits": [1], "boxes": [[2, 2, 5, 5]]}]
    huge = [{"name": "a.png", "digits": [1], "boxes": [[0, 0, 1e12, 1e12]]}]
    with pytest.raises(ValueError, match=r"split.json: record 0 has a box value 1e\+12, beyond "
                                         r"\+-2\^24 = 16,777,216 pixels \(boxes are held as "
                                         r"float32, exact only up to 2\^24"):
        load_split(write_split(str(tmp_path), huge))
    ds = data.SVHNDataset((str(tmp_path), records))
    refused = (r"a.png: cannot read image \(its crop box is 13,000,000 x 13,000,000 pixels, above "
               r"the limit of 50,000,000 \(--max-pixels\)\)")
    with pytest.raises(OSError, match=refused):
        ds[0]
    assert ds[1][0].shape == (3, 54, 54)
    # the limit is a parameter: 200 pixels is the whole image, 199 refuses it
    assert open_image(str(tmp_path / "a.png"), max_pixels=200).size == (20, 10)
    with pytest.raises(OSError, match="20 x 10 pixels, above the limit of 199"):
        open_image(str(tmp_path / "a.png"), max_pixels=199)
    with pytest.raises(SystemExit):
        data.main(["--json", write_split(str(tmp_path), records), "--max-pixels", "0"])

def test_the_limit_replaces_pils_own(tmp_path, monkeypatch):
    # --max-pixels above PIL's global threshold (an error past 179 MP) is honoured: here PIL's
    # threshold is lowered to 50 pixels so that a 200-pixel image stands in for a 200 MP one
    Image.new("RGB", (20, 10)).save(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    assert open_image(str(tmp_path / "a.png"), max_pixels=1000).size == (20, 10)
    assert Image.MAX_IMAGE_PIXELS == 50


def test_open_image_modes_and_odd_files(tmp_path):
    # every PIL mode a user may hand in comes back RGB; odd files are "cannot read image"
    for mode in ("P", "LA", "I;16", "CMYK", "1", "I", "F", "RGBA", "L"):
        name = f"m.{'png' if mode in ('P', 'LA', '1', 'RGBA', 'L') else 'tiff'}"
        Image.new(mode, (3, 2)).save(tmp_path / name)
        img = open_image(str(tmp_path / name), box=(-1, -1, 4, 4))
        assert img.mode == "RGB" and img.size == (4, 4), mode
    Image.new("RGB", (2, 2), (9, 9, 9)).save(tmp_path / "two.png")
    assert open_image(str(tmp_path / "two.png")).size == (2, 2)
    Image.new("RGB", (1, 1), (9, 9, 9)).save(tmp_path / "one.png")  # no text fits in a pixel
    with pytest.raises(OSError, match="one.png: cannot read image .1 x 1 pixels: too thin"):
        open_image(str(tmp_path / "one.png"))
    os.symlink(tmp_path / "loop_b.png", tmp_path / "loop_a.png")
    os.symlink(tmp_path / "loop_a.png", tmp_path / "loop_b.png")
    for name in ("loop_a.png", "missing.png", "."):
        with pytest.raises(OSError, match="cannot read image"):
            open_image(str(tmp_path / name))


def test_a_phone_format_pillow_cannot_read_says_what_to_do(tmp_path):
    # an iPhone's HEIC photo: opened by name, or found in a folder, it is named with the way out
    # (convert it), never a bare "cannot identify" nor silently left out of the folder's images
    (tmp_path / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(32))
    Image.new("RGB", (8, 4)).save(tmp_path / "ok.png")
    with pytest.raises(OSError, match="IMG_0001.HEIC: cannot read image .an HEIC photo, which "
                                      "Pillow cannot decode: convert it to JPEG or PNG first"):
        open_image(str(tmp_path / "IMG_0001.HEIC"))
    avif = features.check("avif")  # a phone format Pillow reads where built with libavif
    if avif:
        Image.new("RGB", (8, 4)).save(tmp_path / "pixel.avif")
    files, skipped = find_images([str(tmp_path)])
    assert [os.path.basename(f) for f in files] == ["ok.png"] + ["pixel.avif"] * avif
    assert [(os.path.basename(p), why.split(",")[0]) for p, why in skipped] == [
        ("IMG_0001.HEIC", "an HEIC photo")]


@pytest.mark.parametrize("name, why", [
    ("/etc/passwd", "is an absolute path"), ("../../run/loss.png", "climbs out of image_dir"),
    ("imgs/../../x.png", "climbs out of image_dir"), ("..\\\\x.png", "climbs out of image_dir"),
    ("C:/x.png", "is an absolute path"), ("", "empty 'name'"), ("a\x00.png", "NUL")])
def test_record_names_stay_inside_image_dir(tmp_path, name, why):
    # absolute names and ones climbing out with .. were read (and drawn in eval's gallery)
    good = {"name": "sub/a.png", "digits": [1], "boxes": [[0, 0, 5, 5]]}
    path = write_split(str(tmp_path), [good, {**good, "name": name}])
    with pytest.raises(ValueError) as e:
        load_split(path)
    assert str(e.value).startswith(f"{path}: record 1 ") and why in str(e.value), str(e.value)
    assert load_split(write_split(str(tmp_path), [good, {**good, "name": "a..b.png"}]))


# -- loose crops (train.py --loose) --------------------------------------------------------------

def test_loosen_reaches_from_the_tight_crop_to_the_whole_image():
    import random
    random.seed(0)
    region = (40, 10, 60, 30)  # x0 y0 x1 y1 inside a 100 x 50 image
    seen = [augment.loosen(region, (100, 50)) for _ in range(2000)]
    for x0, y0, x1, y1 in seen:  # always holds the tight crop, never leaves the image
        assert 0 <= x0 <= 40 and 0 <= y0 <= 10 and 60 <= x1 <= 100 and 30 <= y1 <= 50
    lefts = [s[0] for s in seen]
    rights = [s[2] for s in seen]
    assert min(lefts) <= 1 and max(lefts) >= 39  # uniform over the whole way to the edge
    assert min(rights) <= 61 and max(rights) >= 99
    # a region already past the image edge is never shrunk on that side
    for _ in range(100):
        x0, y0, x1, y1 = augment.loosen((-5, -3, 120, 30), (100, 50))
        assert x0 == -5 and y0 == -3 and x1 == 120 and 30 <= y1 <= 50


def test_loose_training_crops_keep_the_boxes_exact(tmp_path):
    import random
    # a bright box drawn where the record says: wherever the loose crop puts it, the mapped box
    # must still frame the bright pixels in the network input
    img = np.zeros((60, 200, 3), np.uint8)
    img[20:40, 90:110] = 255
    Image.fromarray(img).save(tmp_path / "a.png")
    path = write_split(str(tmp_path), [{"name": "a.png", "digits": [1],
                                        "boxes": [[90, 20, 20, 20]]}])
    ds = data.SVHNDataset(path, train=True, image_size=64, crop_size=64, loose=1.0)
    ds.augment = lambda im, b: (torch.from_numpy(np.array(im)).permute(2, 0, 1) / 255.0,
                                torch.tensor(b, dtype=torch.float32))
    widths = set()
    for seed in range(20):
        random.seed(seed)
        x, _, (box,) = ds[0]
        x0, y0, x1, y1 = box.tolist()
        inside = x[0, int(y0) + 2:int(y1) - 2, int(x0) + 2:int(x1) - 2]
        assert inside.min() > 0.9
        widths.add(round(x1 - x0))
    assert len(widths) > 5  # the crops differ: the boxes do too
    assert data.SVHNDataset(path, train=False, loose=1.0).loose == 0.0  # evaluation: never loose


def test_photo_augmentation_keeps_the_shape_and_varies(tmp_path):
    img = np.zeros((40, 120, 3), np.uint8)
    img[10:30, 20:100] = 200
    Image.fromarray(img).save(tmp_path / "a.png")
    path = write_split(str(tmp_path), [{"name": "a.png", "text": "AB12",
                                        "region": [10, 5, 100, 30]}])
    ds = data.SVHNDataset(path, train=True, image_size=[32, 96], crop_size=[32, 96],
                          style="photo")
    import random
    outs = []
    for seed in range(6):
        random.seed(seed)
        torch.manual_seed(seed)
        x, tokens, boxes = ds[0]
        assert x.shape == (3, 32, 96) and 0 <= x.min() and x.max() <= 1
        outs.append(x)
    assert len({round(float(o.sum()), 3) for o in outs}) == 6  # framing, turn, colour differ
    with pytest.raises(ValueError, match="augmentation style"):
        data.SVHNDataset(path, style="fancy")


def test_exif_orientation_is_applied(tmp_path):
    # a phone photo stored sideways: 40 wide x 20 high in pixels, EXIF orientation 6 (turn 90
    # degrees clockwise to show): it must be read as shown, 20 wide x 40 high
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    shown = open_image(str(tmp_path / "phone.jpg"))
    assert shown.size == (20, 40)
    top = np.asarray(shown)[:5].mean(axis=(0, 1))  # the stored left edge is now on top
    assert top[2] > 200 and top[0] < 60


def test_deeply_nested_json_is_one_line(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="deep.json: not"):
        load_split(str(path))


def test_a_fifo_named_in_a_split_is_unreadable_not_a_hang(tmp_path):
    # open() on a FIFO blocks until a writer comes: training and eval.py hung on it
    Image.new("RGB", (20, 10)).save(tmp_path / "a.png")
    os.mkfifo(tmp_path / "pipe.png")
    records = [{"name": "pipe.png", "digits": [1], "boxes": [[0, 0, 5, 5]]},
               {"name": "a.png", "digits": [1], "boxes": [[0, 0, 5, 5]]}]
    ds = data.SVHNDataset((str(tmp_path), records))
    with pytest.raises(OSError, match=r"pipe.png: cannot read image \(not a regular file"):
        ds[0]
    assert ds[1][0].shape == (3, 54, 54)
    whole = [{"name": "pipe.png", "text": "1"}, {"name": "a.png", "text": "2"}]
    assert split_median_aspect(str(tmp_path), whole) == 2.0  # the FIFO skipped, not waited on


def test_a_link_out_of_the_data_folder_is_refused(tmp_path):
    # a symbolic link inside image_dir read (and eval.py drew) a file outside it
    outside = tmp_path / "private.png"
    Image.new("RGB", (20, 10), (255, 0, 0)).save(outside)
    folder = tmp_path / "data"
    folder.mkdir()
    os.symlink(outside, folder / "1.png")
    Image.new("RGB", (20, 10)).save(folder / "2.png")
    os.symlink(folder / "2.png", folder / "3.png")  # a link that stays inside: fine
    records = [{"name": n, "digits": [1], "boxes": [[0, 0, 5, 5]]} for n in ("1.png", "3.png")]
    ds = data.SVHNDataset((str(folder), records))
    with pytest.raises(OSError) as e:
        ds[0]
    assert str(e.value) == (f"{folder / '1.png'}: cannot read image (a link to {outside}, "
                            f"outside the data folder {folder})")
    assert ds[1][0].shape == (3, 54, 54)


def test_json_errors_name_the_file(tmp_path):
    # a 5000-digit integer raised Python's int-conversion ValueError without the file's name
    path = tmp_path / "split.json"
    path.write_text('{"image_dir": ".", "records": [{"name": "a.png", "digits": [' + "7" * 5000
                    + '], "boxes": [[0, 0, 1, 1]]}]}')
    with pytest.raises(ValueError) as e:
        load_split(str(path))
    assert str(e.value).startswith(f"{path}: not a split file (Exceeds the limit")
    huge = [{"name": "a.png", "digits": [1], "boxes": [[0, 0, 1e20, 5]]}]
    with pytest.raises(ValueError, match=r"record 0 has a box value 1e\+20, beyond \+-2\^24"):
        load_split(write_split(str(tmp_path), huge))


@pytest.mark.parametrize("shear", [0.0, 10.0, 40.0])
def test_text_augmentation_never_cuts_the_first_or_last_character(tmp_path, shear):
    # a line framed by its whole image: dark strokes touch the left and right edges; any crop
    # inside the frame (the seed's random resized crop) loses one of them in some draws; a
    # slant, however steep, is capped by the margins drawn
    img = np.full((30, 150, 3), 230, np.uint8)
    img[5:25, 0:5] = 10
    img[5:25, 145:150] = 10
    Image.fromarray(img).save(tmp_path / "a.png")
    path = write_split(str(tmp_path), [{"name": "a.png", "text": "1I"}])
    import random
    ds = data.SVHNDataset(path, train=True, image_size=[32, 160], crop_size=[32, 160],
                          style="text", shear=shear)
    shapes = set()
    for seed in range(60):
        random.seed(seed)
        torch.manual_seed(seed)
        x, _, _ = ds[0]
        shapes.add(round(float(x.sum()), 2))
        grey = x.mean(0)  # (H, W)
        dark = grey < grey.median() - 0.25  # the strokes, under any colour jitter
        columns = dark.any(0).nonzero().flatten()
        assert len(columns) > 0, seed
        # both strokes are still in the picture, one in each outer eighth
        assert columns.min() < 20 and columns.max() >= 140, seed
    assert len(shapes) > 50  # margins, turns and colours vary


def stroke_lean(shear, seed):
    """Columns the middle of a vertical stroke moves between rows 8 and 32 of a 40 x 200
    line after the text augmentation (colours kept) with `shear` degrees."""
    import random
    import torchvision.transforms as T
    img = np.full((40, 200, 3), 230, np.uint8)
    img[:, 98:103] = 10
    random.seed(seed)
    out = np.asarray(augment.text_augment(Image.fromarray(img), T.ColorJitter(), shear))
    dark = out[..., 0] < 120
    top, bottom = (np.flatnonzero(dark[row]).mean() for row in (8, 32))
    return bottom - top


def test_shear_slants_the_text_within_its_limit():
    leans = [stroke_lean(10.0, seed) for seed in range(40)]
    # 24 rows apart, up to 24 x 1.3 = 31 rows of the canvas grown by up to 15% at the top and
    # bottom: at most tan(10 degrees) x 31 = 5.5 columns, a 2-degree turn's 0.8 and a pixel
    assert max(abs(v) for v in leans) > 2  # it slants ...
    assert max(abs(v) for v in leans) < 5.5 + 0.8 + 0.5  # ... within the limit
    assert min(leans) < -1 and max(leans) > 1  # both ways
    assert max(abs(stroke_lean(0.0, seed)) for seed in range(40)) < 1.5  # no shear: the turn's
    with pytest.raises(ValueError, match="--shear 10 slants the text style"):
        data.SVHNDataset((".", []), style="seed", shear=10.0)


def test_synthetic_lines_look_like_the_training_texts(monkeypatch):
    import random
    texts = ["AB12.5", "XY90.1", "KM33.0"]
    tokenizer = build_tokenizer(texts)
    ds = synth_lines.SynthLines(texts, tokenizer, 40, [32, 96], [32, 96])
    assert len(ds) == 40 and ds.undrawable == []
    pattern = ["upper", "upper", "digit", "digit", ".", "digit"]
    monkeypatch.setattr(synth_lines, "SYNTH_RANDOM", 0.0)  # look-alikes only
    seen = set()
    for i in range(40):
        random.seed(i)
        text = ds.sample_text()
        # every character swapped within its class (digit, upper) or kept ('.')
        assert [synth_lines.char_class(c) for c in text] == pattern
        seen |= set(text)
    assert seen == set("".join(texts))  # all 14 characters, in new places
    monkeypatch.setattr(synth_lines, "SYNTH_RANDOM", 1.0)  # random strings at a training length
    patterns = set()
    for i in range(40):
        random.seed(i)
        text = ds.sample_text()
        assert len(text) == 6 and set(text) <= set("".join(texts))
        patterns.add(tuple(synth_lines.char_class(c) for c in text))
    assert len(patterns) > 30
    samples = data.SeededSamples(ds, seed=3)  # as training draws them: seeded by (epoch, index)
    x, tokens, boxes = samples[(1, 7)]
    again, tokens_again, _ = samples[(1, 7)]
    other, _, _ = samples[(2, 7)]
    assert x.shape == (3, 32, 96) and boxes.shape == (0, 4)
    assert torch.equal(x, again) and torch.equal(tokens, tokens_again)
    assert not torch.equal(x, other)  # a fresh line every epoch
    assert tokens[0] == BOS and tokens[-1] == EOS and UNK not in tokens.tolist()


def test_synthetic_lines_leave_out_what_no_style_draws(no_system_fonts):
    import random
    texts = ["12\u4eac5", "7\u4eac"]  # a CJK province character no typeface here draws
    tokenizer = build_tokenizer(texts)
    ds = synth_lines.SynthLines(texts, tokenizer, 8, [32, 64], [32, 64])
    assert ds.undrawable == ["\u4eac"]
    for i in range(8):
        random.seed(i)
        assert "\u4eac" not in ds.sample_text()
    with pytest.raises(ValueError, match="draws none"):
        synth_lines.SynthLines(["\u4eac"], tokenizer, 8, [32, 64], [32, 64])


def test_a_training_region_is_decoded_once_and_trains_the_same(tmp_path, monkeypatch):
    """A large photo with a box is decoded once per process, not every epoch (150 ms each for 12
    megapixels): the samples are the same tensors as from the file, regions the augmentation
    moves (--loose) are read each time, the cache holds no more than its limit, and a loader
    worker gets none of the main process's."""
    img = np.zeros((300, 400, 3), np.uint8)
    img[100:140, 120:280] = 220
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(255 - img).save(tmp_path / "b.png")
    records = [{"name": "a.png", "text": "A1", "region": [110, 90, 180, 60]},
               {"name": "b.png", "text": "B2"}]  # the whole image
    path = write_split(str(tmp_path), records)
    opened = []
    real_open = data.open_image
    monkeypatch.setattr(data, "open_image", lambda p, *a, **k: opened.append(p) or real_open(
        p, *a, **k))

    def draws(ds):
        out = []
        for epoch in range(3):
            for i in range(len(ds)):
                out.append(data.SeededSamples(ds, 0)[(epoch, i)][0])
        return out

    kw = dict(train=True, image_size=[32, 128], crop_size=[32, 128], style="text",
              max_stretch=4)
    cached = data.SVHNDataset(path, **kw)
    first = draws(cached)
    assert len(opened) == 2  # two images, three epochs
    assert cached.cached_bytes == 2 * 32 * 128 * 3
    assert pickle.loads(pickle.dumps(cached)).cache == {}

    opened.clear()
    monkeypatch.setattr(data, "CACHE_BYTES", 32 * 128 * 3)  # room for one region
    one = data.SVHNDataset(path, **kw)
    for a, b in zip(first, draws(one)):
        assert torch.equal(a, b)
    assert len(opened) == 1 + 3  # a.png cached, b.png read every epoch

    opened.clear()
    loose = data.SVHNDataset(path, loose=1.0, **kw)
    draws(loose)
    assert sum(p.endswith("a.png") for p in opened) == 3  # moved: read each time
    assert data.SVHNDataset(path, train=False).cache_bytes == 0  # evaluation reads once anyway


def test_elastic_warp_moves_pixels_by_about_its_amount_and_smoothly():
    """A vertical ramp (value = row / (H - 1)) read back after the warp gives each pixel's own
    downward move in rows (bilinear sampling of a ramp is exact): about amount x H at the drawn
    points, a field that changes little from one pixel to the next, and nothing drawn at 0."""
    height, width = 32, 256
    ramp = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width) / (height - 1)
    x = torch.stack([ramp] * 3) * 0.5 + 0.25  # inside [0, 1]: the clamp leaves it alone
    state = torch.get_rng_state()
    assert augment.elastic_warp(x, 0.0) is x and torch.equal(torch.get_rng_state(), state)
    moves = []
    for seed in range(20):
        torch.manual_seed(seed)
        out = augment.elastic_warp(x, 0.03)
        assert out.shape == x.shape and torch.equal(out[0], out[2])
        dy = ((out[0] - 0.25) / 0.5 * (height - 1) - torch.arange(height)[:, None])[4:-4]
        moves.append(dy)  # rows away from the edges, where the border's repeat stops a move
    moves = torch.stack(moves)
    spread = moves.std().item()
    assert 0.4 * 0.03 * height < spread < 1.2 * 0.03 * height, spread
    # smooth: a pixel moves nearly as its neighbour does (a field drawn pixel by pixel would
    # differ by 1.4 times the spread)
    assert (moves[..., 1:] - moves[..., :-1]).abs().mean() < 0.2 * spread
    torch.manual_seed(0)
    again = augment.elastic_warp(x, 0.03)
    torch.manual_seed(0)
    assert torch.equal(again, augment.elastic_warp(x, 0.03))  # per-sample seeding repeats it


def test_elastic_is_the_text_styles_and_changes_only_the_pixels(tmp_path):
    img = np.full((30, 120, 3), 230, np.uint8)
    img[8:22, 10:110:12] = 20  # strokes
    Image.fromarray(img).save(tmp_path / "a.png")
    path = write_split(str(tmp_path), [{"name": "a.png", "text": "AB12"}])
    kw = dict(train=True, image_size=[32, 128], crop_size=[32, 128], style="text")
    plain, warped = data.SVHNDataset(path, **kw), data.SVHNDataset(path, elastic=0.05, **kw)
    for seed in range(3):
        x0, t0, _ = data.SeededSamples(plain, seed)[(0, 0)]
        x1, t1, _ = data.SeededSamples(warped, seed)[(0, 0)]
        assert torch.equal(t0, t1) and not torch.equal(x0, x1)
        assert (x0 - x1).abs().mean() < 0.1  # the same line, moved a little
    with pytest.raises(ValueError, match="--elastic 0.05 warps the text style"):
        data.SVHNDataset(path, train=True, style="seed", elastic=0.05)
