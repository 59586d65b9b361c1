"""Which existing files a script may replace: its own earlier outputs, nothing else.

A figure path, a report path or a JSON path given on the command line may name anything: another
run's last.pt, the training JSON, a user's photo. Before writing, each script checks its outputs
here: a file that is absent, or that this repository wrote itself (a figure stamped by
atomic.save_figure, an eval.py report, a split JSON of the same images), is replaced as before;
anything else is a one-line error that names the file and suggests --overwrite.
"""
import json
import os
import stat

from PIL import Image

from support.atomic import FIGURE_MARK, fingerprint

# an own report or split JSON is read to recognise it; past this size it is not read (and so is
# not taken for one): a stray 40 GB file must not be loaded to be refused
MAX_READ_BYTES = 200_000_000
REPORT_KEYS = ("checkpoint", "json", "sequence_accuracy")  # what every eval.py report holds


def is_regular_file(path):
    """True for an existing regular file (not a folder, FIFO or device: never opened to look)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def is_own_figure(path):
    """True if `path` is a PNG that atomic.save_figure wrote (its Software text names us)."""
    if not is_regular_file(path):
        return False
    try:
        with Image.open(path) as img:  # the header and text chunks only, no pixels
            software = str(img.info.get("Software", ""))
    except Exception:  # not an image PIL knows, or a damaged one: not ours
        return False
    return software.startswith(FIGURE_MARK)


def read_small_json(path):
    """The JSON object in `path`, or None when it is no regular file, too large or not JSON."""
    if not is_regular_file(path) or os.path.getsize(path) > MAX_READ_BYTES:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError, RecursionError):  # ValueError: bad JSON, UTF-8, huge integers
        return None


def is_eval_report(path):
    """True if `path` holds a report eval.py wrote (a JSON object with its keys)."""
    report = read_small_json(path)
    return isinstance(report, dict) and all(key in report for key in REPORT_KEYS)


def is_split_of(path, image_dir):
    """True if `path` is a split JSON (prepare_data.py's) of the images in folder image_dir: a
    rerun of the same conversion may replace it."""
    split = read_small_json(path)
    if not isinstance(split, dict) or not isinstance(split.get("image_dir"), str):
        return False
    if not isinstance(split.get("records"), list):
        return False
    folder = os.path.join(os.path.dirname(os.path.abspath(path)), split["image_dir"])
    return os.path.realpath(folder) == os.path.realpath(image_dir)


def check_replaceable(path, flag, overwrite, own=None, what="", inputs=()):
    """What is at `path` now (atomic.fingerprint: pass it to the write as `expect`), or
    ValueError unless writing `path` (given as `flag`) replaces nothing but our own output: it
    is absent, own(path) is true, or --overwrite was given (own None: nothing is ours). `what`
    names the kind of file that may be replaced, for the message. A folder is never replaced,
    nor one of `inputs` (the files the script reads), even with --overwrite."""
    if not os.path.lexists(path):
        return None
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path}: is a folder, not a file")
    check_not_input(path, flag, inputs)
    if overwrite or (own is not None and own(path)):
        return fingerprint(path)
    if own is None:
        raise ValueError(f"{flag} {path}: exists; pass --overwrite to replace it (or choose "
                         f"another path)")
    raise ValueError(f"{flag} {path}: exists and is not {what}; refusing to replace it "
                     f"(pass --overwrite to replace it, or choose another path)")


def check_folder(path, flag):
    """ValueError unless the folder `path` would be written into exists (for scripts that do not
    make it): said now, not as a temporary file's name after the work."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{flag} {path}: no folder {folder}")


def check_not_input(path, flag, inputs):
    """ValueError if the existing file `path` is one of `inputs` (the same file, through any
    link): an output that replaced it would destroy what the script reads."""
    try:
        out = os.stat(path)
    except OSError:
        return
    for source in inputs:
        if not source:
            continue
        try:
            st = os.stat(source)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (out.st_dev, out.st_ino):
            raise ValueError(f"{flag} {path}: is also an input of this run ({source}); refusing "
                             f"to replace or move it, even with --overwrite")
