"""The run folder (train.py --out): what a run leaves there, and the rules that keep it whole.

- A fresh start never overwrites another run: it is an error that says how to continue that run
  (--resume auto) or to pick a new --out; --overwrite moves the old run into
  <out>/replaced-<time>/ rather than deleting it.
- Temp files of a save interrupted by a kill (last.pt.<hex>.tmp, ...) are removed at the next
  start: every write is temp-then-rename, so the real files are whole and the temps are only
  debris.
- Outputs are checked writable before the first epoch, not after it.
- best.pt is only ever replaced by a better model than the one it holds (checkpoint.saved_metric
  reads the metric it holds).
- --plot replaces only a figure of ours, and a loss.png no run drew stops a fresh start, unless
  --overwrite (outputs.py).
- One train.py at a time per --out: a second one started on the same run folder (two --resume
  auto, say) is refused while the first holds the run lock (lock_run).
"""
import csv
import fnmatch
import glob
import io
import os
import tempfile
import time

import numpy as np

from support import outputs
from support.atomic import atomic_open, save_figure
from support.inputs import read_input

try:  # the run lock; where fcntl is missing (Windows) runs go unlocked
    import fcntl
except ImportError:
    fcntl = None

# what train.py writes into --out; any of the first four (or an epoch checkpoint) means a run
RUN_FILES = ("last.pt", "best.pt", "loss.csv", "val.csv")
EPOCH_FILES = "epoch-*.pt"  # per-epoch checkpoints
PLOT = "loss.png"
# eval.py's default outputs beside a checkpoint: reports of this run, moved aside with it
REPORT_FILES = ("eval_*.json", "eval_*_coverage.png", "eval_*_mistakes.png")
LOSS_HEADER = ["step", "epoch", "loss", "lr"]  # loss.csv: one row per training step
# val.csv: one row per epoch
VAL_HEADER = ["step", "epoch", "train_loss", "val_acc", "images_per_s", "seconds"]


OUT = "runs/svhn"  # train.py's default --out
CHECKPOINT = os.path.join(OUT, "last.pt")  # its final epoch: eval.py's and play.py's default
SHIPPED = "weights/replica.pt"  # the model in the repository (weights/README.md)


def run_files(out):
    """Names of the files in folder `out` that belong to a training run, in a fixed order."""
    if not os.path.isdir(out):
        return []
    names = [n for n in RUN_FILES if os.path.exists(os.path.join(out, n))]
    epochs = glob.glob(os.path.join(glob.escape(out), EPOCH_FILES))
    return names + sorted(os.path.basename(p) for p in epochs)


def report_files(out):
    """Names of eval.py's reports and figures in folder `out` (they describe its run)."""
    paths = []
    for pattern in REPORT_FILES:
        paths += glob.glob(os.path.join(glob.escape(out), pattern))
    return sorted(set(os.path.basename(p) for p in paths))


def check_fresh_start(out, overwrite, auto_resume=False, inputs=()):
    """Before a run that resumes nothing: ValueError if `out` holds another run; with
    `overwrite`, move that run aside instead and return the folder it went to (else None), unless
    one of its files is one of the run's `inputs` (--init's checkpoint: it would be moved away
    before it is read).

    auto_resume: --resume auto found no last.pt. Logs of a run killed before its first save
    may then be restarted, but checkpoints (best.pt, epoch-*.pt) still stop it."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out}: exists and is not a folder")
    names = run_files(out)
    if auto_resume:
        names = [n for n in names if n.endswith(".pt")]
    plot = os.path.join(out, PLOT)
    if not names and os.path.lexists(plot) and not outputs.is_own_figure(plot):
        if not overwrite:  # e.g. the user's own figure: plot_curves would replace it
            raise ValueError(f"--out {out} holds {PLOT}, which no train.py drew; pick a new --out "
                             f"(--overwrite moves it aside)")
        names = [PLOT]
    if not names:
        return None
    if not overwrite:
        hint = "" if auto_resume else "continue it with --resume auto, or "
        raise ValueError(f"--out {out} already holds a run ({', '.join(names)}); {hint}"
                         f"pick a new --out (--overwrite moves the old run aside)")
    for name in run_files(out) + [PLOT] + report_files(out):
        outputs.check_not_input(os.path.join(out, name), "--overwrite would move", inputs)
    aside = os.path.join(out, time.strftime("replaced-%Y%m%d-%H%M%S"))
    suffix = 2
    while os.path.exists(aside):  # two overwrites within a second
        aside = os.path.join(out, time.strftime("replaced-%Y%m%d-%H%M%S") + f"-{suffix}")
        suffix += 1
    os.makedirs(aside)
    # the logs and eval.py's reports go too: they describe the old run
    for name in run_files(out) + [PLOT] + report_files(out):
        if os.path.exists(os.path.join(out, name)):
            os.replace(os.path.join(out, name), os.path.join(aside, name))
    return aside


def remove_stale_temps(out, plot):
    """Delete the temp files an interrupted save left (only names train.py itself writes). The
    --plot copy's is removed only inside --out: elsewhere <plot>.tmp may be a user's own file."""
    targets = [os.path.join(out, n) for n in RUN_FILES + (PLOT,)]
    if plot and os.path.realpath(os.path.dirname(plot) or ".") == os.path.realpath(out):
        targets.append(plot)
    paths = []
    for target in targets:  # atomic.temp_name's <name>.<hex>.tmp, and the older <name>.tmp
        paths += [target + ".tmp"] + glob.glob(glob.escape(target) + ".*.tmp")
    for pattern in (EPOCH_FILES + ".tmp", EPOCH_FILES + ".*.tmp"):
        paths += glob.glob(os.path.join(glob.escape(out), pattern))
    removed = []
    for path in paths:
        if os.path.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed


def check_writable(outputs):
    """Make the folder of each (flag, path) and write a probe file beside the path: ValueError
    naming the flag now, rather than after an epoch of training."""
    for flag, path in outputs:
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            if os.path.isdir(path):
                raise IsADirectoryError(21, "is a folder")
            # a probe of a name no one else uses (path.tmp may be the user's own file)
            with tempfile.NamedTemporaryFile(dir=os.path.dirname(path) or ".",
                                             prefix=".write-probe-"):
                pass
        except OSError as e:
            raise ValueError(f"{flag} {path}: cannot write there ({e.strerror or e})") from None


def check_plot(plot, out, overwrite, inputs=()):
    """--plot: never one of the run's own files nor of its `inputs` (the training JSONs, the
    checkpoint it starts from), and an existing file only if it is a figure of ours (or with
    --overwrite): it may name another run's last.pt or a user's photo."""
    if not plot:
        return
    real = os.path.realpath(plot)
    name = os.path.basename(real)
    in_out = os.path.dirname(real) == os.path.realpath(out)
    if in_out and (name in RUN_FILES or fnmatch.fnmatch(name, EPOCH_FILES)):
        raise ValueError(f"--plot {plot}: is one of the run's own files in --out {out}")
    outputs.check_replaceable(plot, "--plot", overwrite, outputs.is_own_figure,
                              "a figure this repository drew", inputs)


_locked = []  # file descriptors of the run folders this process holds the lock of
# the --out folder this process made and the logs it started afresh: a run that ends before its
# first checkpoint takes them back (forget_unstarted)
_started = []


def lock_run(out):
    """Make --out and take its run lock (an exclusive flock on the folder itself: no lock file to
    go stale, the kernel drops it when the process ends, even on SIGKILL). ValueError while
    another process holds it. release_runs() gives it back."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out}: exists and is not a folder")
    try:
        if not os.path.isdir(out):
            os.makedirs(out)
            _started.append(out)
        fd = os.open(out, os.O_RDONLY)
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    if fcntl is None:
        os.close(fd)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ValueError(f"--out {out}: another train.py is training in this folder now (it holds "
                         f"the run lock); wait for it to finish, or pick a new --out") from None
    except OSError:  # a file system without flock (some network mounts): run unlocked
        os.close(fd)
        return
    _locked.append(fd)


def release_runs():
    """Give back every run lock this process holds (and forget what its runs started)."""
    while _locked:
        os.close(_locked.pop())
    _started.clear()


def written(out, plot=None):
    """The end-of-run list of what is in --out (and the --plot copy): only files that exist, so
    that a resumed run does not list epoch checkpoints an earlier part of it never wrote."""
    names = [n for n in ("last.pt",) if os.path.exists(os.path.join(out, n))]
    epochs = [n for n in run_files(out) if fnmatch.fnmatch(n, EPOCH_FILES)]
    if epochs:
        names.append(epochs[0] if len(epochs) == 1 else f"{epochs[0]} .. {epochs[-1]}")
    names += [n for n in ("best.pt", "loss.csv", "val.csv", PLOT)
              if os.path.exists(os.path.join(out, n))]
    copy = f" and {plot}" if plot and os.path.exists(plot) else ""
    return ", ".join(os.path.join(out, n) for n in names) + copy


def forget_unstarted(out):
    """After a run stopped (an error, Ctrl-C) before its first checkpoint: remove the logs it
    started and the --out folder it made (if empty), so that no header-only loss.csv blocks the
    rerun as "already holds a run". Nothing is removed once <out>/last.pt exists."""
    if os.path.exists(os.path.join(out, "last.pt")):
        return
    for path in reversed(_started):
        if os.path.realpath(out) not in (os.path.realpath(path),
                                         os.path.realpath(os.path.dirname(path))):
            continue  # another run's (a test runs several in one process)
        if os.path.isfile(path):
            os.remove(path)
        elif os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)
    _started.clear()


def interrupted_message(out):
    """What to say on Ctrl-C: how to continue, naming a last.pt only where there is one."""
    last = os.path.join(out, "last.pt")
    if os.path.isfile(last):
        return f"interrupted; continue with --resume auto --out {out} (from {last})"
    return f"interrupted before the first checkpoint ({last} does not exist): nothing to resume"


def trim_csv(path, header, last_step):
    """Start a log, or on resume keep only the rows up to the checkpoint's step (a kill mid-epoch
    leaves rows past it)."""
    rows = []
    if not os.path.exists(path):  # started by this run: taken back if it stops before a save
        _started.append(path)
    if last_step is not None and os.path.exists(path):
        text = read_input(path, "a training log").decode()
        rows = [r for r in list(csv.reader(io.StringIO(text, newline="")))[1:]
                if r and int(r[0]) <= last_step]
    with atomic_open(path, "w", newline="") as f:
        csv.writer(f).writerows([header] + rows)


def plot_curves(out, copies):
    """loss.png: training loss per batch (and its moving mean), validation accuracy per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with open(os.path.join(out, "loss.csv"), newline="") as f:
        loss = [(float(r["epoch"]), float(r["loss"])) for r in csv.DictReader(f)]
    with open(os.path.join(out, "val.csv"), newline="") as f:
        val = [(int(r["epoch"]), float(r["val_acc"])) for r in csv.DictReader(f) if r["val_acc"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    if loss:
        x, y = zip(*loss)
        k = max(1, len(y) // 100)  # moving average over ~1% of the run
        ax1.plot(x, y, lw=0.5, alpha=0.4, label="batch")
        ax1.plot(x[k - 1:], np.convolve(y, np.ones(k) / k, mode="valid"), label=f"mean of {k}")
        ax1.legend()
    ax1.set(xlabel="epoch", ylabel="training loss (cross-entropy)", yscale="log")
    if val:
        ax2.plot(*zip(*val), marker="o")
    ax2.set(xlabel="epoch", ylabel="validation whole-sequence accuracy")
    fig.tight_layout()
    for path in copies:  # atomically, like everything else; PNG whatever the name's extension
        save_figure(fig, path, format="png", dpi=100)
    plt.close(fig)
