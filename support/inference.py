"""One inference path for eval.py, play.py, predict.py and export.py: the start-up (device,
threads, precision), a checkpoint opened for decoding, and a batch decoded."""
import sys
from types import SimpleNamespace

from model import fold_batchnorm
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


def decode_batch(model, images, beam, device, precision):
    """A batch of images (B, 3, H, W) decoded on `device` under `precision`: (the model's decode
    dict, the batch's (features, feature_hw), for a caller that also needs them)."""
    images = images.to(device, non_blocking=True)
    images = images.contiguous(memory_format=devices.memory_format(device))
    with devices.autocast(device, precision):
        encoded = model.encode(images)  # ((B, L, C), (H, W)): the encoder runs once
        if beam == 1:
            return model.decode(images, encoded=encoded), encoded
        return model.beam_search(images, beam=beam, encoded=encoded), encoded
