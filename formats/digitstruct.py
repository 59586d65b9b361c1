"""Read SVHN `digitStruct.mat` files (MATLAB v7.3 = HDF5 behind a 512-byte user block).
The writer, for replicas and tests, is digitstruct_write.py.

The layout of the official files, which the code below relies on: /digitStruct/{name,bbox} are
(N,1) object references into /#refs#; a name is a (len,1) uint16 array of character codes; a bbox
is a group with datasets height, label, left, top, width: (1,1) float64 values for one digit, else
(K,1) references to (1,1) float64s. Labels are 1..10 (10 is the digit 0). Entries are
(name, [[label, left, top, width, height], ...]) with the raw values.

Why a hand-written fast reader: h5py costs tens of microseconds per dereference and SVHN extra has
~1.5M referenced objects. An old-style object reference *is* the file address of an object header,
so we map the file and parse the tiny headers ourselves (v1 headers, compact/contiguous layout,
symbol-table groups); headers of one shape are parsed once (see _Raw.dataset). Anything
unrecognised falls back, per entry, to plain h5py (slow but exact).
"""
import math
import mmap
import os
import struct

import h5py
import numpy as np
from tqdm import tqdm

from support.inputs import check_input

FIELDS = ("label", "left", "top", "width", "height")  # output order of each digit
# what one entry may hold: sizes are checked from each dataset's shape before it is read (a
# (2^38, 1) name or a (2^40, 1) field in a few KB of file would otherwise ask for TiBs)
MAX_NAME_CHARS = 4096
MAX_DIGITS = 1024
_unpack = struct.unpack_from


class DigitStructError(ValueError):
    """The file is not a valid SVHN digitStruct.mat."""


class _Unsupported(Exception):
    """The fast parser met a structure it does not handle; use h5py for that entry."""


# What a parse of an unexpected or damaged structure can raise: all mean "use h5py instead".
_PARSE_ERRORS = (_Unsupported, IndexError, KeyError, ValueError, struct.error)


def _open(path):
    """Open with h5py and check the top-level structure.
    Returns (file, name dataset, bbox dataset)."""
    try:
        check_input(path, "a digitStruct.mat", limit=None)  # h5py reads only what it needs
    except ValueError as e:
        raise DigitStructError(str(e).removeprefix(f"{path}: ")) from None
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
        _check_entry_count(path, names)
    except BaseException:
        f.close()
        raise
    return f, names, boxes


def _check_entry_count(path, names):
    """DigitStructError for a /digitStruct/name of a shape other than (N, 1) or (1, N), or of
    more entries than the file has room for (8 bytes per reference): read as addresses, a
    dataspace of 2^40 entries would allocate 8 TiB."""
    shape = names.shape
    if len(shape) != 2 or min(shape) > 1:
        raise DigitStructError(f"/digitStruct/name has shape {shape}; expected (N, 1)")
    if names.size * 8 > os.path.getsize(path):
        raise DigitStructError(f"/digitStruct/name claims {names.size:,} entries, more than the "
                               f"{os.path.getsize(path):,}-byte file can hold")


def _checked(ds, what, kinds, most):
    """`ds` if it is an h5py dataset of a dtype kind in `kinds` with at most `most` elements,
    checked from its header before any data is read; else DigitStructError saying what it is."""
    if not isinstance(ds, h5py.Dataset):
        raise DigitStructError(f"{what} is a {type(ds).__name__}, not a dataset")
    if ds.dtype.kind not in kinds or h5py.check_string_dtype(ds.dtype) is not None:
        raise DigitStructError(f"{what} has type {ds.dtype}; expected numbers")
    if ds.size > most:
        raise DigitStructError(f"{what} has shape {ds.shape} ({ds.size:,} values), more than "
                               f"the {most:,} allowed")
    return ds


def checked_entry(i, name, columns):
    """Check one entry's five field columns (dict field -> values) and build its digit list."""
    lengths = {len(columns[k]) for k in FIELDS}
    if len(lengths) != 1:
        sizes = ", ".join(f"{k}={len(columns[k])}" for k in FIELDS)
        raise DigitStructError(
            f"entry {i + 1} ({name}): bbox fields of different lengths ({sizes})")
    if lengths == {0}:
        raise DigitStructError(f"entry {i + 1} ({name}): no digits")
    digits = [list(d) for d in zip(*(columns[k] for k in FIELDS))]
    for d in digits:
        if not all(map(math.isfinite, d)):
            raise DigitStructError(f"entry {i + 1} ({name}): non-finite value in bbox {d}")
        if not (1 <= d[0] <= 10 and d[0] == int(d[0])):
            raise DigitStructError(f"entry {i + 1} ({name}): label {d[0]:g} outside 1..10")
        if d[3] <= 0 or d[4] <= 0:  # a box of no area: its crop would be made up
            raise DigitStructError(f"entry {i + 1} ({name}): box width and height must be > 0, "
                                   f"got {d[3]:g} x {d[4]:g}")
    return name, digits


def _naive_entry(f, i, name_ref, bbox_ref):
    """One entry through high-level h5py, one dereference per value (what public converters do)."""
    where = f"entry {i + 1}"
    try:
        codes = _checked(f[name_ref], f"{where}: its name", "ui", MAX_NAME_CHARS)[()]
        name = "".join(chr(int(c)) for c in np.asarray(codes).ravel())
        group = f[bbox_ref]
        columns = {}
        for key in FIELDS:
            ds = group[key]
            if h5py.check_dtype(ref=ds.dtype) is not None:
                refs = _checked(ds, f"{where} ({name}): bbox {key}", "O", MAX_DIGITS)[()]
                leaves = [_checked(f[r], f"{where} ({name}): a bbox {key} value", "fiu", 1)
                          for r in np.asarray(refs).ravel()]
                columns[key] = [float(np.asarray(leaf[()]).item()) for leaf in leaves]
            else:
                ds = _checked(ds, f"{where} ({name}): bbox {key}", "fiu", MAX_DIGITS)
                columns[key] = [float(v) for v in np.asarray(ds[()], dtype=np.float64).ravel()]
    except DigitStructError:
        raise
    except (KeyError, ValueError, TypeError, OSError, IndexError) as e:
        raise DigitStructError(f"{where}: malformed name/bbox ({e})") from None
    return checked_entry(i, name, columns)


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
        try:
            self._check_superblock(userblock)
        except BaseException:
            self.close()
            raise

    def _check_superblock(self, userblock):
        b = self.buf
        signature = b[self.base:self.base + 8] == b"\x89HDF\r\n\x1a\n"
        version = b[self.base + 8]
        sizes = (b[self.base + 13], b[self.base + 14])  # of file offsets and of lengths
        if not signature or version not in (0, 1) or sizes != (8, 8):
            raise _Unsupported("superblock version 0/1 with 8-byte offsets and lengths expected")
        if version == 0:
            base_field = _unpack("<Q", b, self.base + 24)[0]
        else:
            base_field = _unpack("<Q", b, self.base + 28)[0]
        if base_field not in (0, userblock):  # MATLAB writes 0, libhdf5 the user block size
            raise _Unsupported("base address")

    def close(self):
        """Unmap the file and close it."""
        self.buf.close()
        self.fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def messages(self, addr):
        """[(type, body position, body size)] of the v1 object header at addr."""
        b, p = self.buf, self.base + addr
        if p + 16 > len(b) or b[p] != 1:
            raise _Unsupported("object header version")
        blocks = [(p + 16, _unpack("<I", b, p + 8)[0])]  # (position, size) of message blocks
        out = []
        seen = 0
        while blocks:
            q, n = blocks.pop()
            end, seen = q + n, seen + 1
            if end > len(b) or seen > 64:
                raise _Unsupported("header past end of file, or a continuation loop")
            while q + 8 <= end:
                t, s = _unpack("<HH", b, q)
                if t == 0x10:  # continuation: more messages elsewhere
                    where, size = _unpack("<QQ", b, q + 8)
                    blocks.append((self.base + where, size))
                elif t:
                    out.append((t, q + 8, s))
                q += 8 + s
        return out

    def dataset(self, addr, site):
        """('f8' | 'u2' | 'ref', data position, element count). Headers written by one program
        repeat a few shapes: one whose bytes up to its compact data are known is a table lookup,
        in a table per call site (`site`: names, fields, leaves) so that one or two lookups do."""
        b = self.buf
        p = self.base + addr
        templates = self.templates.setdefault(site, {})
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
        b = self.buf
        kind = None
        count = None
        data = None
        compact = False
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
        out = {}
        nodes = [table[0]]
        seen = 0
        while nodes and seen < 100000:  # bounded: a damaged tree must not loop forever
            p, seen = self.base + nodes.pop(), seen + 1
            if b[p:p + 4] == b"TREE" and b[p + 4] == 0:
                children = _unpack("<H", b, p + 6)[0]
                nodes.extend(_unpack("<Q", b, p + 32 + 16 * k)[0] for k in range(children))
            elif b[p:p + 4] == b"SNOD":
                for k in range(_unpack("<H", b, p + 6)[0]):
                    off, obj = _unpack("<QQ", b, p + 8 + 40 * k)
                    name = b[names + off:b.find(b"\0", names + off)]
                    out[name.decode("ascii", "replace")] = obj
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


def _fast_path(path, f, names, bboxes):
    """(parser, name addresses, bbox addresses) over the mapped file, or None when the file has no
    fast path (then every entry goes through h5py). The caller closes the parser."""
    try:
        raw = _Raw(path, f.userblock_size)
    except _PARSE_ERRORS + (OSError, TypeError):
        return None
    try:
        return raw, _ref_addresses(names), _ref_addresses(bboxes)
    except _PARSE_ERRORS + (OSError, TypeError):
        raw.close()
        return None


def _read_entries(f, names, bboxes, fast):
    """All entries, each through the fast parser when it can, else h5py; and the fallback count."""
    n = names.size
    out = []
    fallback = 0
    with tqdm(total=n, desc="digitStruct", unit="entry", disable=None) as bar:
        for i in range(n):
            try:
                if fast is None:
                    raise _Unsupported("no fast path for this file")
                raw, name_addrs, bbox_addrs = fast
                name, columns = _fast_entry(raw, int(name_addrs[i]), int(bbox_addrs[i]))
                out.append(checked_entry(i, name, columns))
            except _PARSE_ERRORS:  # includes DigitStructError: h5py then says it again
                out.append(_naive_entry(f, i, names[i, 0], bboxes[i, 0]))  # slow but exact
                fallback += 1
            if i % 4096 == 4095 or i == n - 1:
                bar.update(i + 1 - bar.n)
    return out, fallback


def read_digitstruct(path, stats=None):
    """Read all entries fast: [(name, [[label, left, top, width, height], ...]), ...].
    `stats` (a dict, optional) receives how many entries took the fast and the fallback path."""
    f, names, bboxes = _open(path)
    with f:
        fast = _fast_path(path, f, names, bboxes)
        try:
            out, fallback = _read_entries(f, names, bboxes, fast)
        finally:  # also when an entry is invalid: the map and the file handle are released
            if fast is not None:
                fast[0].close()
    if stats is not None:
        stats.update(fast=len(out) - fallback, fallback=fallback)
    return out
