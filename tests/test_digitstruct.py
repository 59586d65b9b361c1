"""digitstruct.py: the real layout, write -> read round trips, fast reader == naive reader."""
import os

import h5py
import numpy as np
import pytest

from formats import digitstruct
from formats.digitstruct import DigitStructError, read_digitstruct, read_digitstruct_naive
from formats.digitstruct_write import write_digitstruct

ENTRIES = [
    ("1.png", [[1, 246, 77, 81, 219], [9, 323, 81, 96, 219]]),
    ("2.png", [[10, -3, -1, 12, 30]]),                                  # one digit, label 10, negative
    ("long_name_17.png", [[k, 10 * k - 5, 2, 9.5, 31] for k in range(1, 7)]),  # six digits, halves
    ("4.png", [[3, 0, 0, 1, 1], [10, 1e4, 2.25, 7, 7], [5, 5, 5, 5, 5]]),
]


def as_float(entries):
    return [(n, [[float(v) for v in d] for d in digits]) for n, digits in entries]


def write_highlevel(path, entries, chunked):
    """The same logical layout through high-level h5py with v2 headers (libver latest) and,
    optionally, chunked storage: structures the fast parser does not handle."""
    kw = dict(chunks=True) if chunked else {}
    with h5py.File(path, "w", libver="latest") as f:
        refs, names, boxes = f.create_group("#refs#"), [], []
        for i, (name, digits) in enumerate(entries):
            ds = refs.create_dataset(f"n{i}", data=np.array([[ord(c)] for c in name], np.uint16), **kw)
            names.append(ds.ref)
            g = refs.create_group(f"b{i}")
            for j, key in enumerate(("label", "left", "top", "width", "height")):
                column = [d[j] for d in digits]
                if len(column) == 1:
                    g.create_dataset(key, data=np.array([column], np.float64), **kw)
                else:
                    leaf = [refs.create_dataset(f"v{i}{key}{k}", data=np.array([[v]], np.float64)).ref
                            for k, v in enumerate(column)]
                    g.create_dataset(key, data=np.array(leaf, dtype=h5py.ref_dtype).reshape(-1, 1))
            boxes.append(g.ref)
        top = f.create_group("digitStruct")
        top.create_dataset("name", data=np.array(names, dtype=h5py.ref_dtype).reshape(-1, 1))
        top.create_dataset("bbox", data=np.array(boxes, dtype=h5py.ref_dtype).reshape(-1, 1))


def test_real_sample_fast_equals_naive(sample_dir):
    path = os.path.join(sample_dir, "digitStruct.mat")
    stats = {}
    fast = read_digitstruct(path, stats=stats)
    assert stats == {"fast": 39, "fallback": 0}  # the real file takes the fast path throughout
    assert fast == read_digitstruct_naive(path)
    assert len(fast) == 39
    assert fast[1] == ("2.png", [[2.0, 77.0, 29.0, 23.0, 32.0], [3.0, 98.0, 25.0, 26.0, 32.0]])
    assert [d[0] for d in fast[0][1]] == [1.0, 9.0] and [d[0] for d in fast[2][1]] == [2.0, 5.0]


def test_round_trip_exact(tmp_path):
    path = str(tmp_path / "digitStruct.mat")
    write_digitstruct(path, ENTRIES)
    stats = {}
    assert read_digitstruct(path, stats=stats) == as_float(ENTRIES)
    assert stats["fallback"] == 0
    assert read_digitstruct_naive(path) == as_float(ENTRIES)
    assert not os.path.exists(path + ".tmp")


def test_written_layout_matches_real(tmp_path):
    path = str(tmp_path / "digitStruct.mat")
    write_digitstruct(path, ENTRIES)
    with open(path, "rb") as fh:
        block = fh.read(512)
    assert block.startswith(b"MATLAB 7.3 MAT-file, Platform: ") and b"HDF5 schema 1.00 ." in block
    assert block[124:128] == b"\x00\x02IM"
    with h5py.File(path, "r") as f:
        assert f.userblock_size == 512 and set(f) == {"#refs#", "digitStruct"}
        assert f["digitStruct"].attrs["MATLAB_class"] == b"struct"
        names, boxes = f["digitStruct/name"], f["digitStruct/bbox"]
        assert names.shape == boxes.shape == (4, 1)
        name = f[names[0, 0]]
        assert name.dtype == np.uint16 and name.shape == (5, 1) and name.attrs["MATLAB_class"] == b"char"
        assert name.name.startswith("/#refs#/")
        one, many = f[boxes[1, 0]], f[boxes[2, 0]]
        assert one["label"].shape == (1, 1) and one["label"].dtype == np.float64
        assert one["label"][0, 0] == 10 and one["left"][0, 0] == -3
        assert many["label"].shape == (6, 1) and h5py.check_dtype(ref=many["label"].dtype)
        leaf = f[many["top"][3, 0]]
        assert leaf.shape == (1, 1) and leaf.dtype == np.float64 and leaf.attrs["MATLAB_class"] == b"double"


@pytest.mark.parametrize("chunked", [False, True])
def test_unfamiliar_structure_falls_back(tmp_path, chunked):
    path = str(tmp_path / "other.mat")
    write_highlevel(path, ENTRIES, chunked)
    stats = {}
    assert read_digitstruct(path, stats=stats) == as_float(ENTRIES)
    assert stats["fallback"] == len(ENTRIES)


def test_many_entries_fast_equals_naive(tmp_path):
    rng = np.random.default_rng(0)
    # left and top may be negative; width and height are > 0 (the reader refuses others)
    entries = [(f"{i + 1}.png", [[float(rng.integers(1, 11))] + rng.integers(-5, 400, 2).tolist()
                                 + rng.integers(1, 400, 2).tolist()
                                 for _ in range(rng.integers(1, 5))]) for i in range(300)]
    path = str(tmp_path / "d.mat")
    write_digitstruct(path, entries)
    assert read_digitstruct(path) == read_digitstruct_naive(path) == as_float(entries)


@pytest.mark.parametrize("bad", [
    [("a.png", [[11, 1, 1, 1, 1]])],
    [("a.png", [[0, 1, 1, 1, 1]])],
    [("a.png", [[1, float("nan"), 1, 1, 1]])],
    [("a.png", [])],
    [("a.png", [[1, 1, 1, 1]])],
])
def test_writer_refuses_bad_entries_and_keeps_old_file(tmp_path, bad):
    path = str(tmp_path / "d.mat")
    write_digitstruct(path, ENTRIES)
    before = open(path, "rb").read()
    with pytest.raises(DigitStructError):
        write_digitstruct(path, ENTRIES + bad)
    assert open(path, "rb").read() == before and not os.path.exists(path + ".tmp")


def test_not_hdf5_and_matlab_v5(tmp_path):
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(DigitStructError, match="not an HDF5 file"):
        read_digitstruct(str(junk))
    v5 = tmp_path / "v5.mat"
    v5.write_bytes(b"MATLAB 5.0 MAT-file, Platform: GLNXA64".ljust(116) + bytes(12) + b"\x00" * 64)
    with pytest.raises(DigitStructError, match="MATLAB v5 file"):
        read_digitstruct_naive(str(v5))


def test_fast_reader_released_when_an_entry_is_invalid(tmp_path, monkeypatch):
    """An invalid entry raises out of read_digitstruct; the memory map and the file handle of the
    fast parser must still be closed."""
    path = str(tmp_path / "d.mat")
    write_digitstruct(path, ENTRIES)
    parsers = []

    class Recorded(digitstruct._Raw):
        def __init__(self, *args):
            super().__init__(*args)
            parsers.append(self)

    check = digitstruct.checked_entry

    def third_is_bad(i, name, columns):
        if i == 2:
            raise DigitStructError(f"entry {i + 1} ({name}): planted")
        return check(i, name, columns)

    monkeypatch.setattr(digitstruct, "_Raw", Recorded)
    monkeypatch.setattr(digitstruct, "checked_entry", third_is_bad)
    with pytest.raises(DigitStructError, match="planted"):
        read_digitstruct(path)
    assert len(parsers) == 1
    assert parsers[0].buf.closed and parsers[0].fh.closed
    # and on success too
    monkeypatch.setattr(digitstruct, "checked_entry", check)
    assert read_digitstruct(path) == as_float(ENTRIES)
    assert len(parsers) == 2 and parsers[1].buf.closed and parsers[1].fh.closed


def replace_name(path, make):
    """Point entry 1's name reference at the dataset make(refs group) returns."""
    with h5py.File(path, "r+") as f:
        ds = make(f["#refs#"])
        names = f["digitStruct"]["name"]
        refs = names[()]
        refs[0, 0] = ds.ref
        names[...] = refs


@pytest.mark.parametrize("make, why", [
    # 2^38 characters (unallocated, chunked): reading it would fill 512 GiB
    (lambda g: g.create_dataset("huge", shape=(2 ** 38, 1), dtype=np.uint16, chunks=(1024, 1)),
     "entry 1: its name has shape (274877906944, 1) (274,877,906,944 values), more than the "
     "4,096 allowed"),
    (lambda g: g.create_dataset("vlen", data="1.png", dtype=h5py.string_dtype()),
     "entry 1: its name has type object; expected numbers"),
], ids=["2^38-characters", "variable-length-string"])
def test_absurd_or_string_name_is_refused_before_reading(tmp_path, make, why):
    path = str(tmp_path / "d.mat")
    write_digitstruct(path, ENTRIES)
    replace_name(path, make)
    with pytest.raises(DigitStructError) as e:
        read_digitstruct(path)
    assert str(e.value) == why


def test_absurd_entry_count_is_refused_before_reading(tmp_path):
    # a (2^40, 1) /digitStruct/name in a few KB: its addresses would be read into 8 TiB
    path = str(tmp_path / "d.mat")
    write_highlevel(path, ENTRIES, chunked=False)
    with h5py.File(path, "r+") as f:
        top = f["digitStruct"]
        del top["name"], top["bbox"]
        for key in ("name", "bbox"):
            top.create_dataset(key, shape=(2 ** 40, 1), dtype=h5py.ref_dtype, chunks=(64, 1))
    with pytest.raises(DigitStructError, match=r"claims 1,099,511,627,776 entries, more than"):
        read_digitstruct(path)


def test_boxes_of_no_width_or_height_are_refused(tmp_path):
    # a box of no area from a .mat would go into the JSON and crop a made-up region
    path = str(tmp_path / "d.mat")
    write_highlevel(path, ENTRIES + [("5.png", [[2, 10, 10, -4, 20]])], chunked=False)
    with pytest.raises(DigitStructError) as e:
        read_digitstruct(path)
    assert str(e.value) == "entry 5 (5.png): box width and height must be > 0, got -4 x 20"
    with pytest.raises(DigitStructError, match="must be > 0, got 3 x 0"):
        write_digitstruct(path, [("a.png", [[1, 0, 0, 3, 0]])])
