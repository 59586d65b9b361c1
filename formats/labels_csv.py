"""A labels CSV (your own photos) -> JSON records in prepare_data.py's format.

The file has a header line and one row per image, its fields separated by commas (or by
semicolons or tabs, as the header line shows):

    name,text,left,top,width,height
    plates/001.jpg,KX7204,12,30,180,48
    plates/002.jpg,0042,,,,
    meter_17.png,00731

- name: the image's path, relative to the CSV's own folder;
- text: what the image shows, kept as a string (leading zeros stay, letters and any other
  characters are allowed; spaces around it are dropped; composed characters in one spelling, NFC);
- left,top,width,height (optional columns, and optional per row): the box around the whole text in
  pixels. The model sees that box as given (not grown by SVHN's 30%); no box means the whole image.
Columns other than these are ignored. Records carry no per-character boxes. Other datasets'
names for the two columns (filename, image, path...; label, transcription...) are read as them
where the header has exactly one of each and not the name itself (ALIASES), and their box
columns (xmin,ymin,xmax,ymax; x,y,w,h; ...) where it has one such set (BOX_ALIASES).
"""
import csv
import io
import math
import os
import unicodedata

from support.images import MAX_PIXELS, find_images, image_size, too_thin
from support.inputs import MAX_TEXT_CHARS, csv_delimiter, is_utf8, read_input, shown

BOX_COLUMNS = ["left", "top", "width", "height"]
# other datasets' columns for the box: by its size, or by its corners (Pascal VOC's xmin...);
# read where the header holds exactly one of these sets and not left,top,width,height
BOX_ALIASES = (
    (("x", "y", "w", "h"), False),
    (("x", "y", "width", "height"), False),
    (("xmin", "ymin", "xmax", "ymax"), True),
    (("x_min", "y_min", "x_max", "y_max"), True),
    (("left", "top", "right", "bottom"), True),
    (("x0", "y0", "x1", "y1"), True),
    (("x1", "y1", "x2", "y2"), True),
)
# other names datasets give the two columns, read as them where the header has exactly one
ALIASES = {"name": ("filename", "file", "file_name", "image", "image_path", "img", "path"),
           "text": ("label", "labels", "transcription", "words", "gt", "ground_truth")}
HELP_HEADER = "name,text[,left,top,width,height]"


class LabelsError(ValueError):
    """A problem with a labels CSV; the message names the file (and the line)."""


def _decode(path):
    """The CSV's text (UTF-8, with or without Excel's byte-order mark); LabelsError otherwise."""
    try:
        raw = read_input(path, "a labels file")
    except (OSError, ValueError) as e:  # missing, a folder, a FIFO or device, too large
        raise LabelsError(str(e)) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise LabelsError(f"{path} line {line}: not UTF-8 (byte 0x{raw[e.start]:02x}); save the "
                          f"CSV as UTF-8") from None


def _header(path, rows):
    """({column name: index}, number of columns) of the header row; LabelsError if not one."""
    if not rows:
        raise LabelsError(f"{path}: empty file; expected a header line {HELP_HEADER}")
    line, header = rows[0]
    columns = [c.strip().lower() for c in header]
    for column, others in ALIASES.items():
        found = [c for c in others if c in columns]
        if column not in columns and len(found) == 1:  # one other name for it: no guessing
            columns[columns.index(found[0])] = column
    missing = [c for c in ("name", "text") if c not in columns]
    if missing:
        raise LabelsError(f"{path} line {line}: the header must name the columns {HELP_HEADER}; "
                          f"found {','.join(header)!r} (no {' or '.join(missing)})")
    repeated = sorted({c for c in columns if c and columns.count(c) > 1})
    if repeated:
        raise LabelsError(f"{path} line {line}: column {repeated[0]!r} appears twice")
    try:
        box = box_columns(columns)
    except ValueError as e:
        raise LabelsError(f"{path} line {line}: {e}") from None
    return {c: i for i, c in enumerate(columns)}, len(columns), box


def box_columns(columns):
    """The box of a header (its lower-case column names): (the four columns' names, whether they
    are corners x0,y0,x1,y1 rather than left,top,width,height), or None where it has none.
    ValueError where some of left,top,width,height are missing, or two other sets could be it."""
    some_box = [c for c in BOX_COLUMNS if c in columns]
    whole = [(names, corners) for names, corners in BOX_ALIASES if set(names) <= set(columns)]
    if len(some_box) == 4:
        return tuple(BOX_COLUMNS), False
    if len(whole) == 1:
        return whole[0]
    if len(whole) > 1:
        raise ValueError(f"the box could be {' or '.join(','.join(n) for n, _ in whole)}; keep "
                         f"one set of box columns, or name them {','.join(BOX_COLUMNS)}")
    if some_box:
        absent = [c for c in BOX_COLUMNS if c not in columns]
        raise ValueError(f"box columns need all of {','.join(BOX_COLUMNS)}; missing "
                         f"{','.join(absent)}")
    return None


def _parse_box(cells, names=BOX_COLUMNS, corners=False):
    """Four cells (the columns `names`; corners: x0,y0,x1,y1) -> [left, top, width, height]
    floats, None when all four are empty; ValueError with a reason otherwise."""
    cells = [c.strip() for c in cells]
    if not any(cells):
        return None
    try:
        box = [float(c) for c in cells]
    except ValueError:
        box = None
    if box is None or not all(math.isfinite(v) for v in box):
        raise ValueError(f"box must be four numbers {','.join(names)}, got {','.join(cells)!r}")
    if corners:
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"box {','.join(cells)} ({','.join(names)}) must end right of and "
                             f"below where it starts")
        box = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
    if box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"box width and height must be > 0, got {box[2]:g} x {box[3]:g}")
    return [int(v) if v.is_integer() else v for v in box]


def shorten(text, keep=40):
    """repr(text), cut to its first `keep` characters: a message stays one readable line."""
    if len(text) <= keep:
        return repr(text)
    return repr(text[:keep]) + "..."


def windows_path(folder, name):
    """name with its backslashes read as folder separators, as a CSV written on Windows has
    them (plates\\001.jpg), where no file has the name as written but one has it with slashes."""
    if "\\" not in name or os.path.lexists(os.path.join(folder, name)):
        return name
    slashed = name.replace("\\", "/")
    if os.path.isabs(slashed) or not os.path.lexists(os.path.join(folder, slashed)):
        return name  # \\server\\x.jpg stays as written, and is refused as a missing file
    return slashed


def _record(row, columns, n_fields, folder, max_len, max_pixels=None, box_names=None):
    """One data row -> JSON record; ValueError naming the problem (caller adds file and line).
    box_names: box_columns()'s (names, corners), None for none."""
    if len(row) > n_fields:  # e.g. a comma inside an unquoted text
        raise ValueError(f"{len(row)} fields, the header has {n_fields} (quote a text that "
                         f"holds a comma)")
    row = row + [""] * (n_fields - len(row))  # trailing empty cells may be left out
    name = row[columns["name"]].strip()
    text = row[columns["text"]].strip()
    if not name:
        raise ValueError("empty name")
    if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
        # records.load_split refuses these too: the JSON would point outside its image folder
        raise ValueError(f"name {name!r} must be a path inside the CSV's folder (no absolute "
                         f"path, no '..'); move the CSV up or the images in")
    name = windows_path(folder, name)
    if not text:
        raise ValueError(f"{name}: empty text")
    if not is_utf8(text):  # read from a file name that is not UTF-8
        raise ValueError(f"{shown(name)}: text {shown(text)} holds bytes that are not UTF-8; "
                         f"rename the file")
    # one spelling of each character: a Mac writes file names decomposed (u + a combining
    # diaeresis for ü), a keyboard composed; a model must not learn the two as different texts
    text = unicodedata.normalize("NFC", text)
    if max_len and len(text) > max_len:
        raise ValueError(f"{name}: text {shorten(text)} has {len(text):,} characters, more than "
                         f"--max-len {max_len} (0 allows any length)")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"{name}: text {shorten(text)} has {len(text):,} characters, more than "
                         f"the {MAX_TEXT_CHARS} a model reads")
    box = None
    if box_names is not None:
        names, corners = box_names
        try:
            box = _parse_box([row[columns[c]] for c in names], names, corners)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    try:
        width, height = image_size(os.path.join(folder, name), max_pixels or MAX_PIXELS, folder)
    except ValueError as e:
        raise ValueError(f"image {name!r}: {e}") from None
    record = {"name": name, "text": text}
    if box is not None:
        left, top, w, h = box
        if left >= width or top >= height or left + w <= 0 or top + h <= 0:
            raise ValueError(f"{name}: box {left:g},{top:g},{w:g},{h:g} lies wholly outside the "
                             f"{width}x{height} image")
        thin = too_thin(w, h)
        if thin:
            raise ValueError(f"{name}: box {left:g},{top:g},{w:g},{h:g} is {thin}")
        record["region"] = box
    return record


def read_labels(path, max_len=None, max_pixels=None):
    """Read a labels CSV -> list of records. Every row is checked; LabelsError names the file, the
    first bad line and its problem, and counts the others. Images are opened (and fully decoded)
    to check they can be read and to check boxes against their size."""
    rows = []
    text = _decode(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=csv_delimiter(text))
    try:
        for row in reader:
            if any(cell.strip() for cell in row):  # blank lines are not records
                rows.append((reader.line_num, row))
    except csv.Error as e:  # e.g. a quote left open at the end of the file
        raise LabelsError(f"{path} line {reader.line_num}: not a valid CSV ({e})") from None
    columns, n_fields, box = _header(path, rows)
    folder = os.path.dirname(os.path.abspath(path))
    located = [(f"{path} line {line}", row) for line, row in rows[1:]]
    return _check_rows(path, located, columns, n_fields, folder, max_len, max_pixels, box)


def _check_rows(path, located, columns, n_fields, folder, max_len, max_pixels=None, box=None):
    """Records of (where, row) pairs, every row checked; LabelsError names the first bad row's
    place (file and line) and counts the others. box: box_columns()'s answer."""
    records = []
    problems = []
    first_seen = {}
    for where, row in located:
        try:
            record = _record(row, columns, n_fields, folder, max_len, max_pixels, box)
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        key = os.path.normpath(record["name"])
        if key in first_seen:
            problems.append(f"{where}: duplicate name {record['name']!r} "
                            f"(first on {first_seen[key]})")
            continue
        first_seen[key] = where.removeprefix(f"{path} ")
        records.append(record)
    if problems:
        more = ""
        if len(problems) > 1:
            more = f" (and {len(problems) - 1} more problem(s) in this file)"
        raise LabelsError(problems[0] + more)
    if not records:
        raise LabelsError(f"{path}: no rows after the header" if located else
                          f"{path}: no labelled images")
    return records


def read_gt(path, max_len=None, max_pixels=None):
    """A gt.txt (deep-text-recognition's and PaddleOCR's convention): one `path<TAB>text` line
    per image, no header, paths relative to the file's folder -> records, checked as a CSV's."""
    located = []
    for line, text in enumerate(_decode(path).splitlines(), 1):
        if not text.strip():
            continue
        if "\t" not in text:
            raise LabelsError(f"{path} line {line}: expected path<TAB>text, found no tab")
        located.append((f"{path} line {line}", text.split("\t", 1)))
    folder = os.path.dirname(os.path.abspath(path))
    return _check_rows(path, located, {"name": 0, "text": 1}, 2, folder, max_len, max_pixels)


def read_names(folder, max_len=None, max_pixels=None):
    """A folder whose image file names are the texts (LPRNet's convention): `KX7204.jpg` reads
    KX7204, and `KX7204_2.jpg` too (from the first `_` on, a name only tells files apart).
    Searched recursively (images.find_images: links followed once, loops and FIFOs named), in
    os.walk's order (a folder's files before its subfolders); records checked as a CSV's."""
    if not os.path.isdir(folder):
        raise LabelsError(f"{folder}: not a folder")
    files, skipped = find_images([folder], unique=False)
    located = []
    for path in sorted(files, key=lambda p: _walk_order(os.path.relpath(p, folder))):
        relative = os.path.relpath(path, folder)
        text = os.path.splitext(os.path.basename(relative))[0].split("_")[0]
        located.append((f"{folder}: {shown(relative)}", [relative, text]))
    # a loop's files were listed once already; anything else skipped (a FIFO) is a bad entry
    bad = [(path, why) for path, why in skipped if not why.startswith("a directory loop")]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise LabelsError(f"{folder}: {os.path.relpath(bad[0][0], folder)}: {bad[0][1]}{more}")
    return _check_rows(folder, located, {"name": 0, "text": 1}, 2, os.path.abspath(folder),
                       max_len, max_pixels)


def _walk_order(relative):
    """A sort key that lists a folder's files before its subfolders, each by name."""
    parts = relative.split(os.sep)
    return [(1, p) for p in parts[:-1]] + [(0, parts[-1])]
