"""Atomic writes: every output file is written under a temporary name beside it, flushed to disk,
then renamed over the real name. A kill or a full disk at any moment leaves either the old file or
the new one, never half of one; the temporary file is removed when the write fails.

The temporary name is `<path>.<8 hex digits>.tmp` (temp_name), in the same folder (os.replace
is only atomic within one file system): unique, so that a user's own `<path>.tmp` is never
written over or removed; runs.py relies on the pattern to clear the debris of a killed save.
"""
import contextlib
import os
import secrets

# the Software text of every PNG save_figure writes: outputs.is_own_figure recognises our own
# figures by it, so that a script replaces them but never a user's image of the same name
FIGURE_MARK = "svhn-attention-ocr"


@contextlib.contextmanager
def replacing(path, fsync=True):
    """Yield a temporary path to write `path` through; on success it replaces `path`.

    For writers that need a file name rather than a file object (h5py, an image library).
    fsync=False skips the flush to disk, for many small files whose index is written last."""
    tmp = temp_name(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:  # failed (full disk, Ctrl-C, --out is a folder): no stray .tmp left behind
        if os.path.exists(tmp):
            os.remove(tmp)


def temp_name(path):
    """A temporary name beside `path` that no file has: <path>.<8 hex digits>.tmp."""
    while True:
        tmp = f"{path}.{secrets.token_hex(4)}.tmp"
        if not os.path.lexists(tmp):
            return tmp


@contextlib.contextmanager
def atomic_open(path, mode="w", fsync=True, **kwargs):
    """open() whose file appears at `path` only once the `with` block has finished writing it."""
    with replacing(path, fsync=False) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())


def save_figure(fig, path, **kwargs):
    """fig.savefig atomically. The format comes from the extension of `path` (png without one),
    since the temporary name's extension is .tmp. A PNG is stamped with FIGURE_MARK."""
    fmt = kwargs.pop("format", os.path.splitext(path)[1][1:] or "png")
    if fmt == "png":
        kwargs.setdefault("metadata", {"Software": FIGURE_MARK})
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=fmt, **kwargs)
