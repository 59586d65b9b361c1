"""The checkpoint format, in one place: what train.py saves, and what eval.py, play.py, --init and
--resume load, with the checks in between.

A checkpoint is a dict of plain values and state_dicts (no pickled objects, so it loads with
torch.load(weights_only=True)): the model config (model.build_model makes the model from it
alone), the vocabulary, the weights, and for resuming the optimizer, scheduler, scaler and RNG
states (rng_states: every RNG as plain tensors, lists and ints), epoch, step, best metric and the
run's arguments.
"""
import math
import os
import random
import re
import sys
import warnings
import zipfile

import numpy as np
import torch

from support import inputs
from support.atomic import atomic_open
from model import OCRModel, check_config

CHECKPOINT_FORMAT = "svhn-attention-ocr/2"
# format 1 had no step -1 glimpse and fed the encoder [-1, 1] pixels; such files still load, with
# both settings as they were trained
OLD_FORMATS = {"svhn-attention-ocr/1": {"glimpse": False, "normalize": True}}

# What a checkpoint must hold. Evaluating needs the model; resuming training needs the rest of
# train.py's state too (a weights-only checkpoint can be evaluated but not resumed).
EVAL_KEYS = {"config": dict, "vocab": list, "model": dict}
RESUME_KEYS = {"optimizer": dict, "scheduler": dict, "rng": dict, "args": dict, "epoch": int,
               "step": int, "best_metric": (int, float)}


def rng_states(device):
    """Every RNG as tensors, lists and ints, so the checkpoint loads with weights_only=True."""
    kind, keys, *rest = np.random.get_state()
    version, mt, gauss = random.getstate()
    cuda = []
    if device.type == "cuda":  # this GPU's only
        cuda = [torch.cuda.get_rng_state(device)]
    return {"torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), *rest],
            "python": [version, list(mt), gauss],
            "cuda": cuda}


def set_rng_states(states, device):
    """Restore what rng_states saved; ValueError "malformed RNG state (...)" for states of
    another shape or type (a damaged or hand-made checkpoint), whatever the library raised."""
    try:
        torch.set_rng_state(states["torch"])
        name, keys, *rest = states["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        version, mt, gauss = states["python"]
        random.setstate((version, tuple(mt), gauss))
        # not _all: the resuming machine may have fewer GPUs
        if device.type == "cuda" and states["cuda"]:
            torch.cuda.set_rng_state(states["cuda"][0], device)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError, RuntimeError,
            OverflowError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"malformed RNG state ({type(e).__name__}: {why})") from None


def to_cpu(obj):
    """Nested dicts/lists/tuples with every tensor copied to the CPU (loads on machines without a
    GPU)."""
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    return obj


def make_checkpoint(model, vocab, optimizer=None, scheduler=None, scaler=None, epoch=0, step=0,
                    rng=None, best_metric=0.0, args=None, world=1, steps_per_epoch=None):
    """The checkpoint dict of `model` (its config inside) and its vocabulary, plus the training
    state train.py resumes from; what is not given is saved empty ({}, 0)."""
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "config": dict(model.config),
        "vocab": list(vocab),
        "model": to_cpu(model.state_dict()),
        "optimizer": to_cpu(optimizer.state_dict()) if optimizer is not None else {},
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "scaler": scaler.state_dict() if scaler is not None else {},
        "epoch": epoch,
        "step": step,
        "rng": to_cpu(rng or {}),
        "best_metric": best_metric,
        "args": dict(args or {}),
        "world": world,
    }
    if steps_per_epoch is not None:
        ckpt["steps_per_epoch"] = steps_per_epoch
    return ckpt


def save_checkpoint(ckpt, path):
    """torch.save, atomically: a kill at any moment leaves the old file or the new one. A failed
    write (a full disk) is an OSError naming the file; the temp file is removed and the file
    there before is left whole."""
    try:
        with atomic_open(path, "wb") as f:
            torch.save(ckpt, f)
    except OSError as e:
        why = e.strerror or str(e) or type(e).__name__
        kept = "the previous file is intact" if os.path.exists(path) else "nothing was written"
        raise OSError(f"{path}: cannot save the checkpoint ({why}); {kept}") from None


def _load_failure(path, e):
    """torch.load's reason in a few words: its own messages run to paragraphs of advice."""
    if os.path.isdir(path):
        return "a folder"
    with open(path, "rb") as f:
        head = f.read(2)
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives; a cut-off one has no index
        if not head:
            return "empty file"
        if head == b"PK":  # a zip's first entry is there, its index (at the end) is not
            return "truncated zip archive: a partial copy or an interrupted save"
        if head[:1] == b"\x80":  # pickle protocol 2+: pickle.dump, or an old torch.save
            return ("a plain pickle, not a torch.save zip archive; loading it safely "
                    "(weights_only) failed: " + _first_sentence(str(e).split("error:")[-1]))
        return "not a zip archive: another kind of file"
    text = str(e)
    if "WeightsUnpickler error:" in text:  # objects weights_only=True refuses to unpickle
        why = _first_sentence(text.split("WeightsUnpickler error:")[1])
        found = re.search(r"GLOBAL (\S+)", why)
        if found:  # torch's sentence is long and does not say why the global is refused
            why = f"it holds {found.group(1)}, a pickled object that could run code when loaded"
        return f"weights_only load refused it: {why}"
    return _first_sentence(text) or type(e).__name__


def _first_sentence(text):
    """The first sentence of a message's first non-blank line, whole ("" for none)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = " ".join(lines[0].split()) if lines else ""
    end = first.find(". ")
    return first if end < 0 else first[:end]


def _weights_mismatch(model, state):
    """How a state_dict differs from the model's own ("" if it fits), named in full."""
    own = model.state_dict()
    problems = []
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing:
        problems.append(f"{len(missing)} missing (first {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (first {unexpected[0]})")
    for key, value in state.items():
        if key not in own:
            continue
        if not torch.is_tensor(value):
            problems.append(f"{key} is a {type(value).__name__}, not a tensor")
        elif value.shape != own[key].shape:
            problems.append(f"{key} has shape {tuple(value.shape)}, the config makes "
                            f"{tuple(own[key].shape)}")
        if len(problems) >= 3:
            break
    return "; ".join(problems)


def first_non_finite(state):
    """The name of the first floating-point tensor of a state_dict holding a NaN or an infinity,
    or None."""
    for key, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            return key
    return None


def check_checkpoint(ckpt, path, resume=False):
    """ValueError naming what a loaded checkpoint lacks for evaluation (or, resume=True, for
    resuming training); a checkpoint train.py wrote passes both."""
    if not isinstance(ckpt, dict) or ckpt.get("format") not in (CHECKPOINT_FORMAT, *OLD_FORMATS):
        raise ValueError(f"{path}: not an svhn-attention-ocr checkpoint "
                         f"(expected format {CHECKPOINT_FORMAT!r})")
    for key, kind in EVAL_KEYS.items():
        if not isinstance(ckpt.get(key), kind):
            raise ValueError(f"{path}: checkpoint has no {key!r} {kind.__name__}")
    if not all(isinstance(token, str) for token in ckpt["vocab"]):
        raise ValueError(f"{path}: checkpoint 'vocab' must be a list of strings")
    if not resume:
        return
    for key, kind in RESUME_KEYS.items():
        value = ckpt.get(key)
        if isinstance(value, bool) or not isinstance(value, kind):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            names = " or ".join(k.__name__ for k in kinds)
            found = "missing" if key not in ckpt else f"a {type(value).__name__}"
            raise ValueError(f"{path}: cannot resume from it: {key!r} must be a {names}, it is "
                             f"{found} (a weights-only checkpoint can be evaluated, not resumed)")
    if ckpt["epoch"] < 0 or ckpt["step"] < 0:
        raise ValueError(f"{path}: cannot resume from it: negative epoch or step")


def missing(path):
    """The message for a checkpoint that does not exist; for a run's best.pt beside its last.pt,
    one that says why: a run that validates nothing (fine-tuning's default) writes no best.pt."""
    last = os.path.join(os.path.dirname(path), "last.pt")
    if os.path.basename(path) == "best.pt" and os.path.isfile(last):
        return (f"{path}: no such file (the run validated nothing, so it wrote no best.pt: its "
                f"model is {last})")
    return f"{path}: no such file"


def load_checkpoint(path, map_location="cpu", resume=False):
    """(model in eval mode, checkpoint dict) from a train.py checkpoint; ValueError otherwise.

    Everything is checked before the model is built: keys and types (resume=True: also those
    train.py --resume needs), the config within CONFIG_LIMITS, the weights' names and shapes
    against a model built on the meta device (no memory), so no file can make this allocate
    more than the weights it holds."""
    if os.path.isdir(path):
        raise ValueError(f"{path}: not a PyTorch checkpoint (a folder)")
    try:
        inputs.check_input(path, "a checkpoint", inputs.MAX_CHECKPOINT_BYTES)  # no FIFO, no device
    except FileNotFoundError:
        raise FileNotFoundError(missing(path)) from None
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error says enough
            warnings.simplefilter("ignore", UserWarning)
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except Exception as e:  # pickle, zip and torch errors all mean "not a checkpoint we can read"
        raise ValueError(f"{path}: not a PyTorch checkpoint ({_load_failure(path, e)})") from None
    check_checkpoint(ckpt, path, resume)
    if ckpt["format"] in OLD_FORMATS:
        # same weights, other function: run it the way it was trained, and say so once
        ckpt["config"] = {**ckpt["config"], **OLD_FORMATS[ckpt["format"]]}
        print(f"note: {path}: an older checkpoint ({ckpt['format']}): runs without the step -1 "
              f"glimpse and with inputs normalised to [-1, 1], as it was trained", file=sys.stderr)
    try:
        config = check_config(ckpt["config"])
    except ValueError as e:
        raise ValueError(f"{path}: bad model config in checkpoint: {e}") from None
    ckpt["config"] = config  # complete: callers may read any key (train.py --resume does)
    if len(ckpt["vocab"]) != config["vocab_size"]:
        raise ValueError(f"{path}: vocabulary has {len(ckpt['vocab'])} tokens but the config "
                         f"says vocab_size={config['vocab_size']}")
    # tolerate weights saved from a DDP- or torch.compile-wrapped model
    state = {str(k).replace("_orig_mod.", "").removeprefix("module."): v
             for k, v in ckpt["model"].items()}
    with torch.device("meta"):  # shapes only: a config that does not fit the weights costs nothing
        mismatch = _weights_mismatch(OCRModel(config), state)
    if mismatch:
        raise ValueError(f"{path}: weights do not match the model config: {mismatch}")
    bad = first_non_finite(state)
    if bad:  # a diverged run's weights would read every image as <unk> at confidence 0
        raise ValueError(f"{path}: weight {bad} holds NaN or infinite values (a diverged run?); "
                         f"refusing to use it")
    if len(set(ckpt["vocab"])) != len(ckpt["vocab"]):
        raise ValueError(f"{path}: vocabulary repeats a token")
    for key, token in (("pad_id", "<pad>"), ("eos_id", "</s>"), ("bos_id", "<s>")):
        if ckpt["vocab"][config[key]] != token:  # decoding relies on these ids
            raise ValueError(f"{path}: vocabulary token {config[key]} is "
                             f"{ckpt['vocab'][config[key]]!r}, but config {key!r} says {token}")
    model = OCRModel(config)
    model.load_state_dict(state)
    model.to(next(iter(state.values())).device if state else "cpu")
    return model.eval(), ckpt


def saved_metric(path):
    """The best_metric a checkpoint file holds; None if there is none or it cannot be read."""
    if not os.path.isfile(path):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # mmap: only the small header is read, not the weights
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # an unreadable best.pt holds nothing worth keeping over a new best
        return None
    metric = ckpt.get("best_metric") if isinstance(ckpt, dict) else None
    if isinstance(metric, bool) or not isinstance(metric, (int, float)) or math.isnan(metric):
        return None
    return float(metric)
