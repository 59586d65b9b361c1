"""SVHN `digitStruct.mat` (MATLAB v7.3 = HDF5 behind a 512-byte user block): read and write.

Layout (DESIGN.md section 3): /digitStruct/{name,bbox} are (N,1) object references into /#refs#;
a name is a (len,1) uint16 array of character codes; a bbox is a group with datasets height, label,
left, top, width: (1,1) float64 values for one digit, else (K,1) references to (1,1) float64s.
Entries are (name, [[label, left, top, width, height], ...]) with the raw values.

Why a hand-written fast reader: h5py costs tens of microseconds per dereference and SVHN extra has
~1.5M referenced objects. An old-style object reference *is* the file address of an object header,
so we map the file and parse the tiny headers ourselves (v1 headers, compact/contiguous layout,
symbol-table groups); headers of one shape are parsed once (see _Raw.dataset). Anything
unrecognised falls back, per entry, to plain h5py (slow but exact).
"""
import datetime
import math
import mmap
import os
import struct

import h5py
import numpy as np
from tqdm import tqdm

FIELDS = ("label", "left", "top", "width", "height")  # output order of each digit
FILE_FIELDS = ("height", "left", "top", "width", "label")  # MATLAB's struct field order
_unpack = struct.unpack_from
F64 = h5py.h5t.IEEE_F64LE


class DigitStructError(ValueError):
    """The file is not a valid SVHN digitStruct.mat."""


class _Unsupported(Exception):
    """The fast parser met a structure it does not handle; use h5py for that entry."""


# What a parse of an unexpected or damaged structure can raise: all mean "use h5py instead".
_PARSE_ERRORS = (_Unsupported, IndexError, KeyError, ValueError, struct.error)


def _open(path):
    """Open with h5py and check the top-level structure; returns (file, name dataset, bbox dataset)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        with open(path, "rb") as fh:
            if fh.read(19) == b"MATLAB 5.0 MAT-file":
                raise DigitStructError("MATLAB v5 file; SVHN digitStruct.mat is v7.3/HDF5")
        raise DigitStructError("not an HDF5 file (SVHN digitStruct.mat is MATLAB v7.3/HDF5)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DigitStructError(f"cannot open as HDF5: {e}") from None
    try:
        group = f.get("digitStruct")
        if not isinstance(group, h5py.Group):
            raise DigitStructError("no /digitStruct group (not an SVHN digitStruct.mat)")
        names, boxes = group.get("name"), group.get("bbox")
        for key, ds in (("name", names), ("bbox", boxes)):
            if not isinstance(ds, h5py.Dataset):
                raise DigitStructError(f"no /digitStruct/{key} dataset")
            if h5py.check_dtype(ref=ds.dtype) is not h5py.Reference:
                raise DigitStructError(f"/digitStruct/{key} is not an array of object references")
        if names.size != boxes.size:
            raise DigitStructError(f"{names.size} names but {boxes.size} bboxes")
    except BaseException:
        f.close()
        raise
    return f, names, boxes


def _entry(i, name, columns):
    """Check one entry's five field columns (dict field -> values) and build its digit list."""
    lengths = {len(columns[k]) for k in FIELDS}
    if len(lengths) != 1:
        sizes = ", ".join(f"{k}={len(columns[k])}" for k in FIELDS)
        raise DigitStructError(f"entry {i + 1} ({name}): bbox fields of different lengths ({sizes})")
    if lengths == {0}:
        raise DigitStructError(f"entry {i + 1} ({name}): no digits")
    digits = [list(d) for d in zip(*(columns[k] for k in FIELDS))]
    for d in digits:
        if not all(map(math.isfinite, d)):
            raise DigitStructError(f"entry {i + 1} ({name}): non-finite value in bbox {d}")
        if not (1 <= d[0] <= 10 and d[0] == int(d[0])):
            raise DigitStructError(f"entry {i + 1} ({name}): label {d[0]:g} outside 1..10")
    return name, digits


def _naive_entry(f, i, name_ref, bbox_ref):
    """One entry through high-level h5py, one dereference per value (what public converters do)."""
    try:
        name = "".join(chr(int(c)) for c in f[name_ref][()].ravel())
        group = f[bbox_ref]
        columns = {}
        for key in FIELDS:
            ds = group[key]
            if h5py.check_dtype(ref=ds.dtype) is not None:
                columns[key] = [float(f[ds[k, 0]][()].item()) for k in range(ds.shape[0])]
            else:
                columns[key] = [float(v) for v in np.asarray(ds[()], dtype=np.float64).ravel()]
    except (KeyError, ValueError, TypeError, OSError, IndexError) as e:
        raise DigitStructError(f"entry {i + 1}: malformed name/bbox ({e})") from None
    return _entry(i, name, columns)


def read_digitstruct_naive(path, start=0, stop=None):
    """Baseline reader: every field of every digit dereferenced one by one with h5py."""
    f, names, bboxes = _open(path)
    with f:
        stop = names.size if stop is None else min(stop, names.size)
        bar = tqdm(range(start, stop), desc="digitStruct (naive)", unit="entry", disable=None)
        return [_naive_entry(f, i, names[i, 0], bboxes[i, 0]) for i in bar]


_F64_PROPS = (0, 64, 52, 11, 0, 52, 1023)  # IEEE_F64LE: offset, precision, exponent, mantissa, bias


class _Raw:
    """Minimal parser of the HDF5 structures SVHN files use, over a memory map of the file."""

    def __init__(self, path, userblock):
        self.fh = open(path, "rb")
        self.buf = mmap.mmap(self.fh.fileno(), 0, access=mmap.ACCESS_READ)
        self.base = userblock
        self.templates = {}  # site -> prefix length -> {prefix bytes: (kind, count)}
        b = self.buf
        if b[self.base:self.base + 8] != b"\x89HDF\r\n\x1a\n" or b[self.base + 8] not in (0, 1) \
                or b[self.base + 13] != 8 or b[self.base + 14] != 8:
            raise _Unsupported("superblock version 0/1 with 8-byte offsets and lengths expected")
        base_field = _unpack("<Q", b, self.base + (24 if b[self.base + 8] == 0 else 28))[0]
        if base_field not in (0, userblock):  # MATLAB writes 0, libhdf5 the user block size
            raise _Unsupported("base address")

    def messages(self, addr):
        """[(type, body position, body size)] of the v1 object header at addr."""
        b, p = self.buf, self.base + addr
        if p + 16 > len(b) or b[p] != 1:
            raise _Unsupported("object header version")
        blocks, out, seen = [(p + 16, _unpack("<I", b, p + 8)[0])], [], 0
        while blocks:
            q, n = blocks.pop()
            end, seen = q + n, seen + 1
            if end > len(b) or seen > 64:
                raise _Unsupported("header past end of file, or a continuation loop")
            while q + 8 <= end:
                t, s = _unpack("<HH", b, q)
                if t == 0x10:  # continuation: more messages elsewhere
                    blocks.append((self.base + _unpack("<Q", b, q + 8)[0], _unpack("<Q", b, q + 16)[0]))
                elif t:
                    out.append((t, q + 8, s))
                q += 8 + s
        return out

    def dataset(self, addr, site):
        """('f8' | 'u2' | 'ref', data position, element count). Headers written by one program
        repeat a few shapes: one whose bytes up to its compact data are known is a table lookup,
        in a table per call site (`site`: names, fields, leaves) so that one or two lookups do."""
        b, p, templates = self.buf, self.base + addr, self.templates.setdefault(site, {})
        for end, table in templates.items():
            hit = table.get(b[p + 16:p + end])
            if hit is not None and b[p] == 1 and _unpack("<I", b, p + 8)[0] + 16 >= end:
                return hit[0], p + end, hit[1]
        kind, data, count, compact = self._parse_dataset(addr)
        if compact and 16 < data - p <= _unpack("<I", b, p + 8)[0] + 8:
            table = templates.setdefault(data - p, {})
            if len(table) < 4096:
                table[b[p + 16:data]] = (kind, count)
        return kind, data, count

    def _parse_dataset(self, addr):
        b, kind, count, data, compact = self.buf, None, None, None, False
        for t, q, s in self.messages(addr):
            if t == 0x1:  # dataspace
                nd = b[q + 1]
                count = math.prod(_unpack(f"<{nd}Q", b, q + (8 if b[q] == 1 else 4)))
            elif t == 0x3:  # datatype
                cls, size = b[q] & 0x0F, _unpack("<I", b, q + 4)[0]
                if cls == 1 and size == 8 and not b[q + 1] & 1 and \
                        _unpack("<HHBBBBI", b, q + 8) == _F64_PROPS:
                    kind = "f8"
                elif cls == 0 and size == 2 and not b[q + 1] & 1:
                    kind = "u2"
                elif cls == 7 and size == 8 and not b[q + 1] & 0x0F:
                    kind = "ref"
                else:
                    raise _Unsupported("datatype")
            elif t == 0x8:  # layout, version 3 only
                if b[q] != 3:
                    raise _Unsupported("layout version")
                if b[q + 1] == 0:
                    data, compact = q + 4, True
                elif b[q + 1] == 1:
                    a = _unpack("<Q", b, q + 2)[0]  # all ones: not allocated
                    data = self.base + a if a != 0xFFFFFFFFFFFFFFFF else None
                else:
                    raise _Unsupported("chunked layout")
            elif t == 0xB:  # filters
                raise _Unsupported("filters")
        if kind is None or count is None or data is None or data + count * 8 > len(b):
            raise _Unsupported("not a simple dataset")
        return kind, data, count, compact

    def members(self, addr):
        """{name: object header address} of a symbol-table group."""
        b, table = self.buf, None
        for t, q, s in self.messages(addr):
            if t == 0x11:
                table = _unpack("<QQ", b, q)
        if table is None:
            raise _Unsupported("group without symbol table")
        heap = self.base + table[1]
        if b[heap:heap + 4] != b"HEAP":
            raise _Unsupported("local heap")
        names = self.base + _unpack("<Q", b, heap + 24)[0]
        out, nodes, seen = {}, [table[0]], 0
        while nodes and seen < 100000:  # bounded: a damaged tree must not loop forever
            p, seen = self.base + nodes.pop(), seen + 1
            if b[p:p + 4] == b"TREE" and b[p + 4] == 0:
                nodes.extend(_unpack("<Q", b, p + 32 + 16 * k)[0] for k in range(_unpack("<H", b, p + 6)[0]))
            elif b[p:p + 4] == b"SNOD":
                for k in range(_unpack("<H", b, p + 6)[0]):
                    off, obj = _unpack("<QQ", b, p + 8 + 40 * k)
                    out[b[names + off:b.find(b"\0", names + off)].decode("ascii", "replace")] = obj
            else:
                raise _Unsupported("group B-tree")
        return out


def _fast_entry(raw, name_addr, bbox_addr):
    """(name, {field: values}) of one entry, parsed from the mapped file."""
    kind, data, count = raw.dataset(name_addr, "name")
    if kind != "u2":
        raise _Unsupported("name type")
    name = raw.buf[data:data + 2 * count].decode("utf-16-le", "replace")
    members = raw.members(bbox_addr)
    columns = {}
    for key in FIELDS:
        kind, data, count = raw.dataset(members[key], "field")
        if kind == "f8":
            columns[key] = list(_unpack(f"<{count}d", raw.buf, data))
        elif kind == "ref":  # K digits: K references to (1,1) doubles
            columns[key] = []
            for leaf in _unpack(f"<{count}Q", raw.buf, data):
                kind, data, count = raw.dataset(leaf, "leaf")
                if kind != "f8" or count != 1:
                    raise _Unsupported("leaf")
                columns[key].append(_unpack("<d", raw.buf, data)[0])
        else:
            raise _Unsupported("field type")
    return name, columns


def _ref_addresses(ds):
    """An (N,1) old-style object reference dataset read as raw uint64 file addresses."""
    out = np.empty(ds.shape, dtype=np.uint64)
    ds.id.read(h5py.h5s.ALL, h5py.h5s.ALL, out, mtype=h5py.h5t.STD_REF_OBJ)
    return out.ravel()


def read_digitstruct(path, stats=None):
    """Read all entries fast: [(name, [[label, left, top, width, height], ...]), ...].
    `stats` (a dict, optional) receives how many entries took the fast and the fallback path."""
    f, names, bboxes = _open(path)
    with f:
        n = names.size
        try:
            raw = _Raw(path, f.userblock_size)
            name_addrs, bbox_addrs = _ref_addresses(names), _ref_addresses(bboxes)
        except _PARSE_ERRORS + (OSError, TypeError):
            raw = name_addrs = bbox_addrs = None  # every entry goes through h5py
        out, fallback = [], 0
        with tqdm(total=n, desc="digitStruct", unit="entry", disable=None) as bar:
            for i in range(n):
                try:
                    if raw is None:
                        raise _Unsupported("no fast path for this file")
                    name, columns = _fast_entry(raw, int(name_addrs[i]), int(bbox_addrs[i]))
                    out.append(_entry(i, name, columns))
                except _PARSE_ERRORS:  # includes DigitStructError: h5py then says it again
                    out.append(_naive_entry(f, i, names[i, 0], bboxes[i, 0]))  # slow but exact
                    fallback += 1
                if i % 4096 == 4095 or i == n - 1:
                    bar.update(i + 1 - bar.n)
        if raw is not None:
            raw.buf.close(), raw.fh.close()
    if stats is not None:
        stats.update(fast=len(out) - fallback, fallback=fallback)
    return out


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
        self.scalar_space, self.one = h5s.create(h5s.SCALAR), h5s.create_simple((1, 1))
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
            t, data = h5py.h5t.STD_I32LE, np.array(value, dtype=np.int32)
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
        return self.dataset(self.refs, n, F64, np.array([[value]], "<f8"), f"/#refs#/{n}", b"double")

    def name(self, text):
        n, codes = self.new_name(), np.array([[ord(c)] for c in text], "<u2")
        return self.dataset(self.refs, n, h5py.h5t.STD_U16LE, codes, f"/#refs#/{n}", b"char", True)

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
        raise DigitStructError(f"entry {i + 1} ({name}): digits must be [label, left, top, width, height]")
    _entry(i, name, {k: [float(d[j]) for d in digits] for j, k in enumerate(FIELDS)})


def write_digitstruct(path, entries):
    """Write entries [(name, [[label, left, top, width, height], ...]), ...] as a MATLAB v7.3
    digitStruct.mat in the real SVHN layout. Atomic: a temporary file, then os.replace."""
    entries = list(entries)
    for i, (name, digits) in enumerate(entries):
        _check_write(i, name, digits)
    tmp = f"{path}.tmp"
    try:
        with h5py.File(tmp, "w", userblock_size=512, libver="earliest") as f:
            w, n = _Writer(f), len(entries)
            names, boxes = np.zeros((n, 1), np.uint64), np.zeros((n, 1), np.uint64)
            for i, (name, digits) in enumerate(tqdm(entries, desc="write digitStruct",
                                                    unit="entry", disable=None)):
                names[i, 0], boxes[i, 0] = w.name(name), w.bbox(digits)
            group = f.create_group("digitStruct")
            w.attr(group.id, b"MATLAB_class", b"struct")
            for key, addrs in (("name", names), ("bbox", boxes)):
                ds = group.create_dataset(key, shape=(n, 1), dtype=h5py.ref_dtype)
                ds.id.write(h5py.h5s.ALL, h5py.h5s.ALL, addrs, mtype=h5py.h5t.STD_REF_OBJ)
        with open(tmp, "r+b") as fh:
            fh.write(_userblock())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
