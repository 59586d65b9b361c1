"""Write SVHN `digitStruct.mat` files in the official layout (MATLAB v7.3: HDF5 behind a 512-byte
MATLAB header), so synthetic replicas and tests go through the same reader as the real files.
The layout is described in digitstruct.py, which reads it.
"""
import datetime

import h5py
import numpy as np
from tqdm import tqdm

from support.atomic import replacing
from formats.digitstruct import FIELDS, DigitStructError, checked_entry

FILE_FIELDS = ("height", "left", "top", "width", "label")  # MATLAB's struct field order
F64 = h5py.h5t.IEEE_F64LE


def _userblock():
    """The 512-byte MATLAB v7.3 header: text padded with spaces, version 0x0200 and 'IM' at 124."""
    now = datetime.datetime.now().strftime("%a %b %d %H:%M:%S %Y")
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {now} HDF5 schema 1.00 ."
    return text.encode("ascii").ljust(116) + bytes(8) + b"\x00\x02IM" + bytes(384)


class _Writer:
    """Creates /#refs# objects through the low-level h5py API (the high-level one is ~5x slower)."""

    def __init__(self, f):
        h5p, h5s = h5py.h5p, h5py.h5s
        self.refs = f.create_group("#refs#").id
        self.count = 0
        self.compact = h5p.create(h5p.DATASET_CREATE)
        self.compact.set_layout(h5py.h5d.COMPACT)
        self.scalar_space = h5s.create(h5s.SCALAR)
        self.one = h5s.create_simple((1, 1))
        self.strtypes = {}

    def attr(self, obj, key, value):
        """A fixed-length string attribute, as MATLAB writes them (or int32 for int values)."""
        if isinstance(value, bytes):
            t = self.strtypes.get(len(value))
            if t is None:
                t = self.strtypes[len(value)] = h5py.h5t.C_S1.copy()
                t.set_size(len(value))
                t.set_strpad(h5py.h5t.STR_NULLTERM)
            data = np.array(value, dtype=f"S{len(value)}")
        else:
            t = h5py.h5t.STD_I32LE
            data = np.array(value, dtype=np.int32)
        h5py.h5a.create(obj, key, t, self.scalar_space).write(data, mtype=t)

    def new_name(self):  # short unique names, like MATLAB's
        self.count += 1
        return np.base_repr(self.count, 36).lower()

    def dataset(self, loc, name, tid, data, path, mclass, int_decode=False):
        """A compact dataset; returns its object address (= its old-style reference)."""
        space = self.one if data.shape == (1, 1) else h5py.h5s.create_simple(data.shape)
        ds = h5py.h5d.create(loc, name.encode(), tid, space, dcpl=self.compact)
        mtype = h5py.h5t.STD_REF_OBJ if tid == h5py.h5t.STD_REF_OBJ else None
        ds.write(h5py.h5s.ALL, h5py.h5s.ALL, data, mtype=mtype)
        if mclass is not None:
            self.attr(ds, b"MATLAB_class", mclass)
            self.attr(ds, b"H5PATH", path.encode())
        if int_decode:
            self.attr(ds, b"MATLAB_int_decode", 2)
        return h5py.h5o.get_info(ds).addr

    def scalar(self, value):
        n = self.new_name()
        data = np.array([[value]], "<f8")
        return self.dataset(self.refs, n, F64, data, f"/#refs#/{n}", b"double")

    def name(self, text):
        n = self.new_name()
        codes = np.array([[ord(c)] for c in text], "<u2")
        path = f"/#refs#/{n}"
        return self.dataset(self.refs, n, h5py.h5t.STD_U16LE, codes, path, b"char", True)

    def bbox(self, digits):
        name = self.new_name()
        g = h5py.h5g.create(self.refs, name.encode())
        self.attr(g, b"H5PATH", f"/#refs#/{name}".encode())
        self.attr(g, b"MATLAB_class", b"struct")
        for key in FILE_FIELDS:
            column = [d[FIELDS.index(key)] for d in digits]
            if len(column) == 1:  # one digit: the value itself
                self.dataset(g, key, F64, np.array([column], dtype=np.float64),
                             f"/#refs#/{name}/{key}", b"double")
            else:  # K digits: K references, each to a (1,1) double
                addrs = np.array([[self.scalar(v)] for v in column], dtype=np.uint64)
                self.dataset(g, key, h5py.h5t.STD_REF_OBJ, addrs, None, None)
        return h5py.h5o.get_info(g).addr


def _check_write(i, name, digits):
    """The writer refuses what the readers would reject."""
    if not isinstance(name, str) or not name or not all(0 < ord(c) < 65536 for c in name):
        raise DigitStructError(f"entry {i + 1}: bad name {name!r}")
    if not digits or any(len(d) != 5 for d in digits):
        raise DigitStructError(
            f"entry {i + 1} ({name}): digits must be [label, left, top, width, height]")
    checked_entry(i, name, {k: [float(d[j]) for d in digits] for j, k in enumerate(FIELDS)})


def write_digitstruct(path, entries):
    """Write entries [(name, [[label, left, top, width, height], ...]), ...] as a MATLAB v7.3
    digitStruct.mat in the real SVHN layout. Atomic (atomic.replacing)."""
    entries = list(entries)
    for i, (name, digits) in enumerate(entries):
        _check_write(i, name, digits)
    with replacing(path) as tmp:
        # libver earliest: v1 object headers and symbol-table groups, as MATLAB writes them
        with h5py.File(tmp, "w", userblock_size=512, libver="earliest") as f:
            w = _Writer(f)
            n = len(entries)
            names = np.zeros((n, 1), np.uint64)
            boxes = np.zeros((n, 1), np.uint64)
            bar = tqdm(entries, desc="write digitStruct", unit="entry", disable=None)
            for i, (name, digits) in enumerate(bar):
                names[i, 0] = w.name(name)
                boxes[i, 0] = w.bbox(digits)
            group = f.create_group("digitStruct")
            w.attr(group.id, b"MATLAB_class", b"struct")
            for key, addrs in (("name", names), ("bbox", boxes)):
                ds = group.create_dataset(key, shape=(n, 1), dtype=h5py.ref_dtype)
                ds.id.write(h5py.h5s.ALL, h5py.h5s.ALL, addrs, mtype=h5py.h5t.STD_REF_OBJ)
        with open(tmp, "r+b") as fh:
            fh.write(_userblock())
