"""Atomic writes: every output file is written under a temporary name beside it, flushed to disk,
then renamed over the real name. A kill or a full disk at any moment leaves either the old file or
the new one, never half of one; the temporary file is removed when the write fails.

The temporary name is always `<path>.tmp`, in the same folder (os.replace is only atomic within
one file system); runs.py relies on that name to clear the debris of a killed save.
"""
import contextlib
import os


@contextlib.contextmanager
def replacing(path, fsync=True):
    """Yield a temporary path to write `path` through; on success it replaces `path`.

    For writers that need a file name rather than a file object (h5py, an image library).
    fsync=False skips the flush to disk, for many small files whose index is written last."""
    tmp = path + ".tmp"
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:  # failed (full disk, Ctrl-C, --out is a folder): no stray .tmp left behind
        if os.path.exists(tmp):
            os.remove(tmp)


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
    since the temporary name's extension is .tmp."""
    fmt = os.path.splitext(path)[1][1:] or "png"
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=kwargs.pop("format", fmt), **kwargs)
