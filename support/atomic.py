"""Atomic writes: every output file is written under a temporary name beside it, flushed to disk,
checked, then renamed over the real name. A kill or a full disk at any moment leaves either the
old file or the new one, never half of one; the temporary file is removed when the write fails,
and the file there before is never touched until the new one is complete.

The temporary name is `<path>.<8 hex digits>.tmp` (temp_name), in the same folder (os.replace
is only atomic within one file system): unique, so that a user's own `<path>.tmp` is never
written over or removed; runs.py relies on the pattern to clear the debris of a killed save.

Two processes writing one output must not both succeed silently. A script checks its outputs
when it starts (outputs.check_replaceable) and passes what it saw there (fingerprint) as
`expect`: a path that was absent is then created only if it is still absent (os.link of the
finished temp file: atomic create-if-absent), and a file that was there is replaced only if it
is still the same file; otherwise the write fails with a line saying that another process
wrote it. ANY (the default) replaces whatever is there: a run's own files, under its run lock.
"""
import contextlib
import os
import secrets
import shutil

# the Software text of every PNG save_figure writes: outputs.is_own_figure recognises our own
# figures by it, so that a script replaces them but never a user's image of the same name
FIGURE_MARK = "svhn-attention-ocr"
ANY = "any"  # expect=ANY: replace whatever is at the path when the write ends


class Published:
    """The files this process has written (the first few named, all counted): what an
    interrupted script says it kept."""
    NAMED = 5

    def __init__(self):
        self.names = []
        self.count = 0

    def add(self, path):
        self.count += 1
        if len(self.names) < self.NAMED:
            self.names.append(path)


published = Published()


def fingerprint(path):
    """What is at `path` now, for `expect`: None when nothing is, else the file's identity
    (device, inode, size, modification time); a link is not followed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class LostRace(FileExistsError):
    """Another process wrote the output while this one worked: nothing of ours replaced it."""


def _lost(path, expect):
    what = "appeared" if expect is None else "changed"
    return LostRace(f"{path}: {what} while this run worked (another process wrote "
                                  f"it?); left as it is, this run's output is discarded")


def _publish(tmp, path, expect):
    """tmp becomes path, as `expect` allows (see the module's docstring)."""
    if expect is None:  # absent when checked: create it only if it still is
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise _lost(path, expect) from None
        except OSError:  # a file system without hard links: claim the name, then fill it
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                raise _lost(path, expect) from None
            os.replace(tmp, path)
        else:
            os.remove(tmp)
        return
    if expect != ANY and fingerprint(path) != expect:
        raise _lost(path, expect)
    os.replace(tmp, path)


def _keep_copy(path):
    """A temp-named copy of the file at path (a hard link where possible), or None if none."""
    if not os.path.lexists(path):
        return None
    copy = temp_name(path)
    try:
        os.link(path, copy)
    except OSError:
        shutil.copy2(path, copy)
    return copy


def publish_together(pairs, expects):
    """Each (tmp, path) of `pairs` renamed over its path, all or none: a failure part way (a
    race lost, a folder in the way) puts back the files that were there before."""
    for (_, path), expect in zip(pairs, expects):  # what can be known before touching anything
        if os.path.isdir(path):
            raise IsADirectoryError(f"{path}: is a folder, not a file")
        if expect not in (ANY, None) and fingerprint(path) != expect:
            raise _lost(path, expect)
    done = []  # (path, the copy of the file it held before, or None)
    try:
        for (tmp, path), expect in zip(pairs, expects):
            before = _keep_copy(path) if len(pairs) > 1 else None
            try:
                _publish(tmp, path, expect)
            except BaseException:  # this one was not replaced: its copy is not needed
                if before is not None:
                    os.remove(before)
                raise
            done.append((path, before))
    except BaseException:
        for path, before in reversed(done):
            if before is None:
                os.remove(path)
            else:
                os.replace(before, path)
        raise
    finally:
        for _, before in done:
            if before is not None and os.path.lexists(before):
                os.remove(before)
    for _, path in pairs:
        published.add(path)


@contextlib.contextmanager
def replacing_all(paths, expects=None, fsync=True):
    """Yield temporary paths for several outputs written as one (a file and its sidecar): once
    the `with` block ends without an error (every check passed), they replace `paths` together;
    on an error none of them does. expects: one fingerprint (or ANY) per path."""
    expects = list(expects) if expects is not None else [ANY] * len(paths)
    tmps = [temp_name(path) for path in paths]
    try:
        yield tmps
        if fsync:
            for tmp in tmps:
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
        publish_together(list(zip(tmps, paths)), expects)
    finally:  # failed (full disk, Ctrl-C, --out is a folder): no stray .tmp left behind
        for tmp in tmps:
            if os.path.lexists(tmp):
                os.remove(tmp)


@contextlib.contextmanager
def replacing(path, fsync=True, expect=ANY):
    """Yield a temporary path to write `path` through; on success it replaces `path`.

    For writers that need a file name rather than a file object (h5py, an image library).
    fsync=False skips the flush to disk, for many small files whose index is written last."""
    with replacing_all([path], [expect], fsync) as (tmp,):
        yield tmp


def temp_name(path):
    """A temporary name beside `path` that no file has: <path>.<8 hex digits>.tmp."""
    while True:
        tmp = f"{path}.{secrets.token_hex(4)}.tmp"
        if not os.path.lexists(tmp):
            return tmp


@contextlib.contextmanager
def atomic_open(path, mode="w", fsync=True, expect=ANY, **kwargs):
    """open() whose file appears at `path` only once the `with` block has finished writing it."""
    with replacing(path, fsync=False, expect=expect) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())


def save_figure(fig, path, expect=ANY, **kwargs):
    """fig.savefig atomically. The format comes from the extension of `path` (png without one),
    since the temporary name's extension is .tmp. A PNG is stamped with FIGURE_MARK."""
    fmt = kwargs.pop("format", os.path.splitext(path)[1][1:] or "png")
    if fmt == "png":
        kwargs.setdefault("metadata", {"Software": FIGURE_MARK})
    with atomic_open(path, "wb", expect=expect) as f:
        fig.savefig(f, format=fmt, **kwargs)
