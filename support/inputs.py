"""The input rule: every file a user names (a checkpoint, a labels file, a CSV, a JSON) is looked
at before it is opened, and every path found through a labels file or a folder stays inside it.

- Only a regular file of bounded size is opened: a FIFO would block open() forever, /dev/zero
  would be read until memory runs out, and a 40 GB file named by mistake is refused in one line
  rather than ending in a MemoryError. A file is opened without blocking and checked again on
  its descriptor (read_input), so a FIFO put in its place after the check blocks nothing either.
- A path read from a labels file, or found in a folder, is confined to that folder once links
  are followed (check_file): a link inside the data folder must not read a file outside it. The
  same check runs when prepare_data.py reads the labels as when eval.py reads the JSON.

Torch-free: formats/ and prepare_data.py use it.
"""
import io
import os
import stat

# labels files, CSVs, split JSONs, --boxes: SVHN's largest JSON (extra) is ~20 MB; read whole
# into memory, a text file takes several times its size as Python strings and lists
MAX_TEXT_BYTES = 256 * 2 ** 20
# a checkpoint: the seed's model with its optimizer state is ~100 MB
MAX_CHECKPOINT_BYTES = 8 * 2 ** 30
# the longest text a label may have: a model decodes at most build_model.CONFIG_LIMITS's
# max_len (256) characters, and train.py sets max_len to the longest text + MAX_LEN_MARGIN (2).
# prepare_data.py refuses a longer one naming file and line, records.load_split naming record.
MAX_TEXT_CHARS = 254


def _check_stat(path, st, what, limit):
    if stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{path}: is a folder, not {what}")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path}: not a regular file (a FIFO, device or socket), so not {what}; "
                         f"refusing to open it")
    if limit is not None and st.st_size > limit:
        raise ValueError(f"{path}: {st.st_size:,} bytes, more than {what} may have "
                         f"({limit:,}); refusing to read it")


def check_input(path, what="an input file", limit=MAX_TEXT_BYTES):
    """FileNotFoundError "<path>: no such file", or ValueError naming `path`, unless it is a
    regular file (links followed) of at most `limit` bytes (None: any size). `what` names the
    kind of file expected, for the message."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as e:  # a broken link, a name too long, no permission on the folder
        raise ValueError(f"{path}: cannot read it ({e.strerror or e})") from None
    _check_stat(path, st, what, limit)


def read_input(path, what="an input file", limit=MAX_TEXT_BYTES):
    """The bytes of a file check_input accepts, read without ever blocking on it."""
    check_input(path, what, limit)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror or e})") from None
    with open(fd, "rb") as f:
        _check_stat(path, os.fstat(fd), what, limit)  # what was opened, not what was looked at
        return f.read()


def is_utf8(text):
    """False for a str holding lone surrogates: bytes that were not UTF-8 (a file name read with
    surrogateescape, a JSON's "\\udce9"), which no model can be taught or show as a label."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(text):
    """text, printable whatever it holds: bytes that were not UTF-8 as backslash escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def csv_delimiter(text):
    """The CSV's field separator, read from its header line: a comma, or where the header has
    none a semicolon (Excel's CSV where the decimal mark is a comma: much of Europe, Brazil) or a
    tab. Column names hold none of them, so the header decides alone."""
    header = next((line for line in io.StringIO(text) if line.strip()), "")  # no full split
    for mark in (",", ";", "\t"):
        if mark in header:
            return mark
    return ","


def check_file(path, root=None):
    """ValueError unless `path` is a regular file, inside folder `root` (when given) once
    symbolic links are followed: a link in the data folder must not read a file outside it."""
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise ValueError("not a file: a folder")
    if not stat.S_ISREG(mode):
        raise ValueError("not a regular file (a FIFO, device or socket)")
    if root is None:
        return
    real = os.path.realpath(path)
    folder = os.path.realpath(root)
    if os.path.commonpath([real, folder]) != folder:
        raise ValueError(f"a link to {real}, outside the data folder {folder}")
