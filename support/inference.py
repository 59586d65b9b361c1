"""One inference path for eval.py, play.py, predict.py and export.py: the start-up (device,
threads, precision), a checkpoint opened for decoding, and a batch decoded."""
import sys
from types import SimpleNamespace

import torch

from model import fold_batchnorm, vote
from support import devices
from support.checkpoint import load_checkpoint


def inference_model(model, device):
    """The model as the scripts decode with it: eval mode, BatchNorm folded into the convolutions
    (the same answers, faster), on `device` in its fast memory layout (devices.memory_format:
    channels_last on CPU and CUDA)."""
    model = fold_batchnorm(model.eval())
    return model.to(device=device, memory_format=devices.memory_format(device))


def check_beam_for_head(model, beam):
    """ValueError for a beam wider than 1 where the checkpoint's head decodes greedily only."""
    if beam > 1 and not model.decoder.BEAM:
        raise ValueError(f"--beam {beam}: this checkpoint's {model.config['head']} head decodes "
                         f"the best path only; use --beam 1")


def start(args, script, workers=None):
    """The run's device, loader workers and precision from the shared flags (support.cli), with
    the thread rule applied; a note for bf16 emulated on this device goes to stderr."""
    device = devices.device_from_flag(args.device)
    workers = devices.apply_thread_rule(device, args.threads, workers)
    precision = devices.resolve_precision(device, args.precision)  # this GPU, not cuda:0
    note = devices.emulated_bf16_note(device, precision)
    if note:
        print(f"{script}: {note}", file=sys.stderr)
    return SimpleNamespace(device=device, workers=workers, precision=precision)


def open_model(path, device, beam=1):
    """(model ready to decode on `device`, checkpoint dict); ValueError for a file that is not a
    checkpoint, or a beam its head cannot search. device None: on the CPU in the default memory
    layout, BatchNorm folded (what export.py traces)."""
    model, ckpt = load_checkpoint(path, map_location="cpu")
    check_beam_for_head(model, beam)
    if device is None:
        return fold_batchnorm(model.eval()), ckpt
    return inference_model(model, device), ckpt


def decode_batch(model, images, beam, device, precision, votes=None):
    """A batch of images (B, 3, H, W) decoded on `device` under `precision`: (the model's decode
    dict, the batch's (features, feature_hw), for a caller that also needs them). votes: copies
    of each image read and voted on (model.vote); None: the checkpoint's (its config's
    "votes"; 1, the image alone, for the seed's). The features are always the image's own."""
    votes = model.config["votes"] if votes is None else votes
    images = images.to(device, non_blocking=True)
    batch = images.shape[0]
    if votes > 1:
        images = vote.copies(images, votes)  # (votes * B, 3, H, W)
    images = images.contiguous(memory_format=devices.memory_format(device))
    with devices.autocast(device, precision):
        features, feature_hw = model.encode(images)  # ((votes * B, L, C), (H, W)): once
        encoded = (features, feature_hw)
        if beam == 1:
            out = model.decode(images, encoded=encoded)
        else:
            out = model.beam_search(images, beam=beam, encoded=encoded)
    if votes == 1:
        return out, encoded
    confidences = out["logprob"].float().exp().tolist()
    rows = vote.winners(out["tokens"], confidences, votes)
    return voted(out, rows), (features[:batch], feature_hw)


def voted(out, rows):
    """A decode dict of votes * B rows cut to the B rows the vote kept."""
    index = torch.tensor(rows, device=out["logprob"].device)
    kept = {"tokens": [out["tokens"][r] for r in rows], "feature_hw": out["feature_hw"]}
    for key in ("probs", "attention", "logprob"):
        value = out[key]
        kept[key] = None if value is None else value.index_select(0, index.to(value.device))
    return kept
