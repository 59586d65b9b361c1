"""Train the attention OCR (CNN encoder + attention GRU decoder) on SVHN digit crops.

python train.py                           # the seed's recipe: train + extra, 16 epochs, fp32 (GPU)
python train.py --preset cpu --train-json data/synth/train.json --epochs 5 \
    --schedule onecycle --lr 2e-3               # a small model on a CPU
python train.py --resume auto             # continue exactly from <out>/last.pt
python train.py --init runs/demo/best.pt --train-json mine/train.json --val-json mine/val.json
                                          # fine-tune a checkpoint on your own labelled images
torchrun --nproc_per_node 4 train.py      # DDP, one process per GPU; --batch-size is per process
"""
import argparse
import csv
import math
import os
import sys
import time
from types import SimpleNamespace

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Subset

from model import DEFAULT_CONFIG, HEADS, build_model, load_encoder, load_grown, parse_size
import data
from formats.records import SVHN_ROOT
from support import checkpoint, devices, runs, threads
from support.images import MAX_PIXELS
from support.script import run_main
from support.tokenizer import BOS, EOS, PAD
from training import augment, budget, engine, start

# -----------------------------------------------------------------------------
# defaults: the seed's recipe. `python train.py` with no flags trains exactly this.
# data
TRAIN_JSON = [f"{SVHN_ROOT}/train.json", f"{SVHN_ROOT}/extra.json"]  # by prepare_data.py
VAL_SIZE = 0          # images held out from the first JSON for validation and best.pt (0: none)
IMAGE_SIZE = DEFAULT_CONFIG["image_size"]  # the expanded crop, resized...
CROP_SIZE = DEFAULT_CONFIG["crop_size"]  # ...then cropped: at random in training,
                      # at the centre in evaluation
AUGMENT = True        # random resized crop (scale 0.7-1) + colour jitter 0.5 on training images
LOOSE = 0.0           # share of training crops widened at random toward the whole photo
AUGMENT_STYLE = "seed"  # seed: random resized crop + colour jitter; photo: augment.photo_augment
SYNTH_MIX = 0.0       # share of training images drawn by the text generator (0: none, the seed)
NORMALIZE = DEFAULT_CONFIG["normalize"]  # pixels enter the encoder in [0, 1]
# model (DEFAULT_CONFIG)
HEAD = DEFAULT_CONFIG["head"]  # attention: the seed's GRU decoder; ctc: model/heads/ctc.py
AUX_CTC = DEFAULT_CONFIG["aux_ctc"]  # weight of an auxiliary ctc loss beside attention (0: none)
PLAN = DEFAULT_CONFIG["plan"]  # VGG channel plan, M = max-pool 3/2/1
HIDDEN = DEFAULT_CONFIG["hidden"]  # GRU hidden size = embedding size
DROPOUT = DEFAULT_CONFIG["dropout"]  # between the GRU layers, before the classifier
GLIMPSE = DEFAULT_CONFIG["glimpse"]  # attend once from h0; its output feeds step 0
MAX_LEN = DEFAULT_CONFIG["max_len"]  # longest number greedy decoding will emit; unless
                      # given, raised to the longest training text + MAX_LEN_MARGIN (SVHN: 6 + 2)
MAX_LEN_MARGIN = 2
# optimisation
EPOCHS = 16           # the seed's loop is range(15 + 1): 10 epochs at LR, then 6 at LR x GAMMA
BATCH_SIZE = 64       # per process under torchrun
LR = 3e-4             # AdamW
WEIGHT_DECAY = 0.01   # torch's AdamW default; the seed never set it
SCHEDULE = "step"     # step: lr x GAMMA at each milestone epoch (recipe); cosine/onecycle:
                      # warm-up, then anneal
MILESTONES = [10]     # epochs after which the step schedule multiplies lr by GAMMA
GAMMA = 0.1
WARMUP = 0.05         # fraction of all steps spent warming up (cosine and onecycle only)
CLIP = 5.0            # gradient-norm clipping
PRECISION = "fp32"    # bf16 / fp16: autocast (fp16 with a loss scaler on CUDA)
# system
SEED = 0
MAX_MINUTES = 0.0     # time budget (0: none); the epochs are cut to what fits, planned from a
                      # steady epoch (training/budget.py)
# model sizes; "cpu" trains at a useful speed on 2 cores
PRESETS = {"cpu": {"plan": "32 M 64 M 128 M 128", "hidden": 128}}
# fine-tuning (--init): defaults for a few hundred real photos, replacing the recipe's where not
# given (measured on real photos, README "Your own data"). None: chosen from the checkpoint and
# the data (start.finetune_defaults): the input shape and augmentation, the epochs and the
# validation images.
FINETUNE = {"epochs": None, "batch_size": 16, "lr": 2e-3, "schedule": "cosine", "warmup": 0.1,
            "dropout": 0.2, "val_size": None, "augment_style": None, "max_minutes": 9.0,
            "image_size": None, "crop_size": None, "epoch_checkpoints": False}
# -----------------------------------------------------------------------------
# --help's first line: the flags most runs give (argparse's own lists all 41 over 20 lines)
USAGE = "%(prog)s [-h] [--train-json JSON [JSON ...]] [--init CKPT] [--out DIR] " \
        "[--resume auto|CKPT] ..."


def add_data_flags(a, rare):
    """The data: which images, their input size and augmentation (rare: the advanced group)."""
    a("--train-json", nargs="+", default=TRAIN_JSON, metavar="JSON",
      help="training JSON files (prepare_data.py)")
    a("--val-size", type=int, default=VAL_SIZE,
      help="images held out from the first JSON for validation and best.pt (0: none, the seed)")
    a("--val-json", default=None, metavar="JSON",
      help="validation JSON (prepare_data.py); None: --val-size images held out")
    a("--image-size", type=size_arg, default=IMAGE_SIZE,
      help="the region is resized to this: N (a square) or HxW, e.g. 40x160")
    a("--crop-size", type=size_arg, default=CROP_SIZE,
      help="the network input, cropped from --image-size (at random in training, at the centre "
           "in evaluation): N or HxW; attention runs over its H/8 x W/8 feature map. Wide text "
           "reads better wide (plates: --image-size 48x192 --crop-size 48x192); --init picks a "
           "shape from the data")
    rare("--max-pixels", type=int, default=MAX_PIXELS, help="a larger image is an unreadable one")
    a("--augment", action=argparse.BooleanOptionalAction, default=AUGMENT,
      help="training augmentation")
    rare("--loose", type=float, default=LOOSE,
      help="probability that a training crop is widened at random toward the whole image (each "
           "side a uniform part of the way to the edge), so that the model also reads photos "
           "given without a box (predict.py); 0: always the recipe's crop")
    a("--augment-style", choices=augment.STYLES, default=AUGMENT_STYLE,
      help="seed: the recipe's random resized crop (scale 0.7-1) and colour jitter 0.5; photo: "
           "sides moved up to 6%%, a turn up to 3 degrees, milder jitter, sometimes a blur "
           "(worse than seed on real plates, README); text: for lines framed by their whole "
           "image, zooms out only, so no character is cut off")
    a("--synth-mix", type=float, default=SYNTH_MIX,
      help="share of every epoch's images drawn anew by the text generator (synth/text.py) in "
           "the training texts' characters, lengths and layouts, so that rare characters are "
           "seen often; 0: none")
    rare("--normalize", action=argparse.BooleanOptionalAction, default=NORMALIZE,
      help="map input pixels [0, 1] -> [-1, 1] inside the model (stored in the checkpoint)")


def add_model_flags(a, rare):
    """The model (stored in its checkpoint's config)."""
    rare("--preset", choices=sorted(PRESETS),
      help=f"model size preset (explicit flags win): {PRESETS}")
    a("--head", choices=sorted(HEADS), default=HEAD,
      help="attention: the seed's GRU decoder with attention; ctc: a BiLSTM over the feature "
           "map's columns, 2 frames each, read by CTC (greedy decoding only). With --init "
           "another head than the checkpoint's keeps its encoder and starts the head afresh")
    rare("--aux-ctc", type=float, default=AUX_CTC, metavar="WEIGHT",
      help="beside the attention head, a ctc head on the same features whose loss x WEIGHT is "
           "added in training (decoding reads the attention head); 0: none, the seed")
    rare("--plan", default=PLAN, help="encoder channel plan")
    rare("--hidden", type=int, default=HIDDEN, help="decoder hidden size")
    a("--dropout", type=float, default=DROPOUT, help="dropout between the GRU layers and on y")
    rare("--glimpse", action=argparse.BooleanOptionalAction, default=GLIMPSE,
      help="step -1 glimpse from h0 (the seed); --no-glimpse: zeros feed the first step")
    rare("--max-len", type=int, default=MAX_LEN,
      help="decoding length cap (characters); unless given, the longest training text + "
           f"{MAX_LEN_MARGIN} where that is more (and with --init at least the checkpoint's)")


def add_recipe_flags(a, rare):
    """The optimisation: epochs, batch, lr and its schedule."""
    a("--epochs", type=int, default=EPOCHS, help="epochs to train (in all, counting resumed ones)")
    a("--batch-size", type=int, default=BATCH_SIZE, help="images per step (per process)")
    a("--lr", type=float, default=LR, help="AdamW learning rate (peak lr for cosine/onecycle)")
    rare("--weight-decay", type=float, default=WEIGHT_DECAY,
      help="AdamW weight decay (torch's default)")
    a("--schedule", choices=["step", "cosine", "onecycle"], default=SCHEDULE, help="lr schedule")
    rare("--milestones", type=int, nargs="*", default=MILESTONES,
      help="epochs at which step multiplies lr")
    rare("--gamma", type=float, default=GAMMA, help="lr factor at each milestone (step)")
    rare("--warmup", type=float, default=WARMUP,
      help="warm-up fraction of all steps (cosine, onecycle)")
    rare("--clip", type=float, default=CLIP, help="gradient-norm clipping threshold")
    a("--seed", type=int, default=SEED, help="seed for init, shuffling and augmentation")


def add_system_flags(a, rare):
    """Where and how it runs: device, precision, threads, files, resume."""
    a("--device", default=None,
      help="cpu, cuda, cuda:1, mps; None: CUDA if present, else MPS, else CPU")
    rare("--precision", choices=["fp32", "bf16", "fp16"], default=PRECISION,
      help="fp32 (the seed), or autocast to bf16 / fp16 (fp16 with a loss scaler on CUDA); bf16 is "
           "fast only with bf16 hardware (GPU compute capability >= 8, a CPU with AMX)")
    rare("--workers", type=int, default=None,
      help="DataLoader processes; None: on CUDA min(8, cores / processes on the node); on a CPU "
           "by the thread rule (see --threads): 1 where two cores are free, else 0")
    rare("--threads", type=int, default=0,
      help="torch CPU threads; 0: the thread rule (README \"Shared machines\"): the idle cores "
           "this process may use, shared between the node's processes and re-checked between "
           "steps; a core another program keeps busy is left to it")
    a("--out", default=runs.OUT, metavar="DIR",
      help="run folder: last.pt (resumable), epoch-NNN.pt (weights), best.pt, loss.csv, val.csv")
    rare("--epoch-checkpoints", action=argparse.BooleanOptionalAction, default=True,
      help="keep every epoch's weights as epoch-NNN.pt, as the seed does (off when fine-tuning: "
           "a hundred short epochs would write a hundred files)")
    rare("--plot", default=None, help="also write the loss curve here (e.g. img/loss.png)")
    a("--resume", default=None, metavar="CKPT",
      help="checkpoint to continue from, or 'auto' for <out>/last.pt if present")
    a("--overwrite", action="store_true",
      help="start anew in an --out that holds a run, moving that run into <out>/replaced-<time>/")
    a("--init", default=None, metavar="CKPT",
      help="fine-tune: start from this checkpoint's weights and model config with a fresh "
           "optimizer and schedule; characters new to its vocabulary get new rows. "
           f"Defaults then become {FINETUNE} (given flags win); None is chosen from the "
           "checkpoint and the data: a line reader (a wide input, like weights/reader.pt) keeps "
           "its input and uses --augment-style text; a near-square model (replica.pt) gets the "
           "seed's augmentation and the width from the images' median width/height (up to "
           f"{start.FINETUNE_MAX_ASPECT:g}x); epochs for {start.FINETUNE_IMAGES:,} images seen "
           f"({start.FINETUNE_EPOCHS[0]}-{start.FINETUNE_EPOCHS[1]}), "
           f"{round(100 * start.FINETUNE_VAL[0])}%% held out for best.pt "
           f"({start.FINETUNE_VAL[1]}-{start.FINETUNE_VAL[2]}). Of the model flags only "
           "--max-len, --dropout, --image-size and --crop-size may change")
    a("--max-minutes", type=float, default=MAX_MINUTES,
      help="time budget in minutes (0: none): after the first epoch the epochs that fit, "
           "planned from the median step, become --epochs and the lr schedule is laid over "
           "them; later epochs cut the plan only where the rest no longer fits; cosine and "
           "step schedules only")
    rare("--dry-run", action="store_true",
      help="one training batch and one validation batch; writes nothing")


def build_parser():
    """train.py's flags, their defaults the recipe's (the constants above): `--help` lists the
    ones most runs set under data, model, training and run, then the rest under advanced."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], usage=USAGE,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    adds = {"data": add_data_flags, "model": add_model_flags, "training": add_recipe_flags,
            "run": add_system_flags}
    groups = {title: p.add_argument_group(title) for title in adds}
    # created last, so listed last
    advanced = p.add_argument_group("advanced: rarely needed; the defaults are the seed's recipe")
    for title, add in adds.items():
        add(groups[title].add_argument, advanced.add_argument)
    return p


def parse_args(argv=None):
    """The flags, with the defaults of --preset and --init (flags given explicitly win), and the
    names of the model, data and recipe flags given (model_flags, data_flags, recipe_flags):
    resume and --init compare those with the checkpoint's."""
    p = build_parser()
    flags = start.MODEL_ARGS + start.DATA_ARGS + start.RECIPE_ARGS
    unset = argparse.Namespace(**dict.fromkeys(flags))
    given = vars(p.parse_args(argv, unset))  # None: not given
    chosen = {**PRESETS.get(given["preset"], {}), **(FINETUNE if given["init"] else {})}
    p.set_defaults(**chosen)  # as if given
    if given["val_json"]:  # validate on it; hold nothing out of the training JSONs
        p.set_defaults(val_size=0)
    args = p.parse_args(argv)
    check_values(p, args)
    return argparse.Namespace(
        **vars(args),
        model_flags=[k for k in start.MODEL_ARGS if given[k] is not None or k in chosen],
        data_flags=[k for k in start.DATA_ARGS if given[k] is not None],
        recipe_flags=[k for k in start.RECIPE_ARGS if given[k] is not None])


def check_values(p, args):
    """p.error (exit 2) for a value no run means: out of range, nan, or two flags that clash."""
    if args.val_json and args.val_size:
        p.error("--val-json and --val-size > 0: validate on one or the other")
    lowest = {"epochs": 1, "batch_size": 1, "max_pixels": 1, "val_size": 0, "workers": 0,
              "max_minutes": 0}
    for name, low in lowest.items():
        value = getattr(args, name)
        if value is not None and value < low:
            p.error(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    # values that would train silently wrong: --clip -1 is gradient ascent, --gamma nan and
    # --warmup 5 a schedule no one meant
    for name, value, ok, want in [
            ("lr", args.lr, args.lr >= 0, ">= 0"), ("clip", args.clip, args.clip > 0, "> 0"),
            ("gamma", args.gamma, args.gamma > 0, "> 0"),
            ("weight-decay", args.weight_decay, args.weight_decay >= 0, ">= 0"),
            ("warmup", args.warmup, 0 <= args.warmup < 1, "in [0, 1)"),
            ("loose", args.loose, 0 <= args.loose <= 1, "in [0, 1]"),
            ("synth-mix", args.synth_mix, 0 <= args.synth_mix < 1, "in [0, 1)"),
            ("max-minutes", args.max_minutes, args.max_minutes >= 0, ">= 0")]:
        if not (math.isfinite(value) and ok):
            p.error(f"--{name} must be a finite number {want}, got {value}")
    if any(m < 1 for m in args.milestones):
        p.error(f"--milestones must be epochs >= 1, got {args.milestones}")
    if not 0 <= args.seed < 2 ** 32:  # torch.manual_seed takes an int64 and the seed is scaled
        p.error(f"--seed must be an integer in [0, 2^32), got {args.seed}")


def size_arg(text):
    """argparse type of --image-size / --crop-size: N or HxW."""
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv=None):
    args = parse_args(argv)
    procs = start.Processes.from_environment()
    try:  # under torchrun, plain "cuda" means this process's GPU
        device = devices.device_from_flag(args.device, procs.local_rank, procs.local_world)
    except ValueError as e:  # an unknown name, no such GPU or driver, no CUDA build
        sys.exit(f"train.py: error: {e}")
    if procs.ddp:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return train(args, procs, device)
    except (OSError, ValueError, FloatingPointError) as e:  # e.g. an unreadable image in a worker
        runs.forget_unstarted(args.out)
        # a worker's error holds its traceback: keep the last line
        last = str(e).strip().splitlines()[-1]
        sys.exit(f"train.py: error: {last.removeprefix(type(e).__name__ + ': ')}")
    except KeyboardInterrupt:  # Ctrl-C: checkpoints are written atomically, so last.pt is whole
        runs.forget_unstarted(args.out)
        sys.exit(f"\ntrain.py: {runs.interrupted_message(args.out)}")
    finally:
        runs.release_runs()
        if procs.ddp:
            dist.destroy_process_group()


def train(args, procs, device):
    """Resolve the run (flags, checkpoint, data), build the model and what the loop steps, then
    train epoch by epoch, saving the checkpoints and logs after each."""
    started = time.time()
    workers = set_threads(args, device, procs.local_world)
    files = run_paths(args)
    run = resolve(args, files, procs)
    model = build(run, device)
    unreadable = model.decoder.unreadable(t for part in run.train_set.datasets for t in part.texts)
    if unreadable and procs.master:  # e.g. the ctc head: a text longer than the input's frames
        print(f"train.py: {unreadable} training text(s) are too long for the {run.flags.head} "
              f"head at --crop-size {run.flags.crop_size}: they count for nothing in the loss (a "
              f"wider input reads them)", file=sys.stderr)
    parts = make_parts(run, model, workers, procs, device, files)
    state = start.restore(run.resumed, parts, files, procs, device)
    if state.epoch >= parts.plan.epochs:  # say so, rather than list files as written
        if procs.master:
            print(f"{run.resumed.path} already holds epoch {state.epoch} of --epochs "
                  f"{parts.plan.epochs}: nothing to train")
        return 0
    if procs.ddp:  # after restoring: rank 0's weights are broadcast to the others here
        parts.model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if procs.master and not run.flags.dry_run:
        prepare_outputs(run, files, state)
        print(f"{len(run.train_set)} training images, {len(run.val_set or [])} validation, "
              f"{procs.world} process(es) on {device}, {workers} loader workers, "
              f"{sum(p.numel() for p in model.parameters()):,} parameters, {origin(run, state)}")
    try:
        return run_epochs(run, parts, state, files, procs, started)
    finally:  # dropped, the loaders stop their persistent workers (which hold the run lock too)
        parts.loader = parts.val_loader = None


def resolve(args, files, procs):
    """The run, made once (start.Run): the checkpoint resumed (read once) or --init's, the flags
    they fix or the data chooses, the vocabulary, the data, and the decoding cap."""
    resumed = start.open_run(args, files, procs)
    flags, init = start.settle(args, resumed, procs.master)
    vocab = None
    if resumed:
        vocab = resumed.ckpt["vocab"]
    elif init:
        vocab = init.vocab
    tokenizer, train_set, val_set, json_records = data.load_data(flags, vocab, extend=bool(init))
    longest = data.longest_text(train_set)
    relaid = None
    if resumed:  # its cap and input were set and checked when it started
        start.check_same_data(resumed, flags.train_json, json_records)
        relaid = resumed.ckpt["args"].get("relaid")  # where --max-minutes cut the plan
    else:
        if "max_len" not in flags.model_flags:  # the cap follows the data
            flags.max_len = max(flags.max_len, longest + MAX_LEN_MARGIN)
        start.check_input_shape(flags, longest)
    return start.Run(flags, resumed, init, tokenizer, train_set, val_set, json_records, relaid)


def origin(run, state):
    """Where the run's weights start, for the line before the first epoch."""
    if run.resumed:
        return f"resuming {run.resumed.path} after epoch {state.epoch} (step {state.step})"
    if run.init:
        return f"fine-tuning {run.init.path}"
    return "from scratch"


# -- set-up ---------------------------------------------------------------------------------------

def set_threads(args, device, local_world):
    """torch's CPU threads (--threads, or the thread rule: the free cores shared between the
    node's processes); returns the DataLoader workers each process gets."""
    rule_threads, rule_workers = 1, 1
    if device.type == "cpu" and not (args.threads and args.workers is not None):
        rule_threads, rule_workers = devices.thread_rule(local_world)  # samples /proc/stat
    if device.type == "cpu":
        torch.set_num_threads(max(1, args.threads // local_world) if args.threads else rule_threads)
    torch.backends.cudnn.benchmark = True
    if args.workers is not None:
        return args.workers
    return default_workers(device, local_world, rule_workers)


def default_workers(device, local_world, cpu_workers):
    """Loader processes for each of the node's local_world training processes: on a GPU up to 8,
    within this process's share of the cores it may run on; on a CPU cpu_workers (the thread
    rule's: one where a core is free beside the compute, else none)."""
    if device.type != "cuda":
        return cpu_workers
    return max(1, min(8, devices.cpu_cores() // local_world))


def run_paths(args):
    """The files of the run in --out, and the loss curve's copies."""
    plots = [os.path.join(args.out, runs.PLOT)]
    if args.plot:  # only when asked: the repository's tracked figure stays as it is
        plots.append(args.plot)
    return SimpleNamespace(last=os.path.join(args.out, "last.pt"),
                           best=os.path.join(args.out, "best.pt"),
                           loss_csv=os.path.join(args.out, "loss.csv"),
                           val_csv=os.path.join(args.out, "val.csv"), plots=plots)


def build(run, device):
    """The model of the run's config on `device`, seeded alike on every rank; with --init its
    weights copied in (new characters' rows keep the fresh initialisation)."""
    vocab = run.tokenizer.vocab
    config = {key: getattr(run.flags, key) for key in start.MODEL_ARGS}
    config.update(vocab_size=len(vocab), pad_id=PAD, eos_id=EOS, bos_id=BOS)
    torch.manual_seed(run.flags.seed)  # the same initial weights on every rank
    model = build_model(config)
    init = run.init
    if init and init.model.config["head"] != config["head"]:  # the encoder only; a fresh head
        load_encoder(model, init.model.state_dict())
        print(f"fine-tuning {init.path}: its encoder, with a new {config['head']} head "
              f"(it had {init.model.config['head']})")
    elif init:  # old rows copied bit for bit
        load_grown(model, init.model.state_dict(), len(init.vocab))
        added = vocab[len(init.vocab):]
        note = f", {len(added)} added: {''.join(added)!r}" if added else ""
        print(f"fine-tuning {init.path}: {len(init.vocab)} tokens kept{note}")
    return model.to(device, memory_format=devices.memory_format(device))


def make_loaders(run, sampler, workers, procs, device):
    """(training loader, validation loader or None) with `workers` loader processes each. Each
    has a generator of its own: a loader draws its workers' base seed from it when it starts
    them (each epoch, or once with persistent workers), which from torch's global generator
    would move dropout's random stream by a draw that a resumed run or another worker count
    makes at another epoch. SeededSamples seeds every sample itself."""
    loader_kw = dict(batch_size=run.flags.batch_size, collate_fn=data.collate,
                     num_workers=workers, pin_memory=device.type == "cuda",
                     persistent_workers=workers > 0)
    loader = DataLoader(data.SeededSamples(run.train_set, run.flags.seed), sampler=sampler,
                        generator=torch.Generator(), **loader_kw)
    val_set = run.val_set
    if not val_set:
        return loader, None
    # validation's workers start for each pass: kept alive, they would double the processes
    val_kw = {**loader_kw, "persistent_workers": False}
    shard = Subset(val_set, range(procs.rank, len(val_set), procs.world))
    return loader, DataLoader(shard, generator=torch.Generator(), **val_kw)


def make_parts(run, model, workers, procs, device, files):
    """What the loop steps: the model (model: wrapped by DDP under torchrun once restored;
    raw_model: the module itself), its optimizer, lr schedule and its EpochPlan, loss scaler,
    sampler, loaders, and the fixed settings engine.train_one_epoch reads (with the Follower
    that keeps the threads in line with the load)."""
    flags = run.flags
    optimizer = torch.optim.AdamW(model.parameters(), lr=flags.lr,
                                  weight_decay=flags.weight_decay)
    sampler = data.EpochTagged(run.train_set, procs.world, procs.rank, shuffle=True,
                               seed=flags.seed)
    loader, val_loader = make_loaders(run, sampler, workers, procs, device)
    plan = budget.EpochPlan(flags.epochs, run.relaid)
    autocast = devices.autocast(device, flags.precision)
    note = devices.emulated_bf16_note(device, flags.precision)  # e.g. a T4: right, but slow
    if note and procs.master:
        print(f"train.py: {note}")
    settings = SimpleNamespace(device=device, autocast=autocast,
                               memory_format=devices.memory_format(device), clip=flags.clip,
                               world=procs.world, ddp=procs.ddp, epochs=flags.epochs,
                               dry_run=flags.dry_run, last_path=files.last,
                               show_bar=procs.master,
                               follow=threads.follower(device, flags.threads, procs.local_world))
    return SimpleNamespace(model=model, raw_model=model, optimizer=optimizer,
                           scheduler=budget.make_scheduler(flags, optimizer, len(loader), plan),
                           scaler=devices.loss_scaler(device, flags.precision), plan=plan,
                           sampler=sampler, loader=loader, val_loader=val_loader,
                           settings=settings, workers=workers,
                           loaders=lambda n: make_loaders(run, sampler, n, procs, device))


def prepare_outputs(run, files, state):
    """Rank 0, before the first epoch: temp files of a killed save removed, every output checked
    writable (now, not after an epoch) and never another run's or a user's file, the logs cut
    back to the checkpoint's step."""
    flags = run.flags
    runs.remove_stale_temps(flags.out, flags.plot)  # left by a kill during a save
    outputs = [("--out", files.last)]
    inputs = [*flags.train_json, flags.val_json, flags.init, flags.resume]
    runs.check_plot(flags.plot, flags.out, flags.overwrite, inputs)
    if flags.plot:
        outputs.append(("--plot", flags.plot))
    runs.check_writable(outputs)
    last_step = state.step if run.resumed else None
    runs.trim_csv(files.loss_csv, runs.LOSS_HEADER, last_step)
    runs.trim_csv(files.val_csv, runs.VAL_HEADER, last_step)


# -- the loop -------------------------------------------------------------------------------------

def run_epochs(run, parts, state, files, procs, started):
    """Train, validate and save epoch by epoch until the EpochPlan's epochs are done."""
    timing = SimpleNamespace(first=None, work=[], saves=[])  # for --max-minutes
    while state.epoch < parts.plan.epochs:
        follow_load(run, parts, procs)
        epoch_start = time.time()
        trained = train_epoch(run, parts, state, files, procs)
        if procs.ddp:  # every rank validates the BatchNorm statistics that rank 0 saves
            devices.broadcast_buffers(parts.raw_model)
        acc = None
        if parts.val_loader is not None:
            settings = parts.settings
            acc = engine.validate(parts.raw_model, parts.val_loader, settings.device,
                                  settings.autocast, settings.memory_format, procs.ddp,
                                  1 if run.flags.dry_run else None)
        if run.flags.dry_run:
            print(f"rank {procs.rank}: dry run ok: one batch, loss {trained.last_loss:.4f}, "
                  f"val acc {acc or 0:.4f}")
            return 0
        state.epoch += 1
        timing.work.append(time.time() - epoch_start)
        plan_budget(run, parts, state, procs, started, timing, trained)
        if procs.master:
            save_start = time.time()
            save_epoch(run, parts, state, files, trained, acc)
            timing.saves.append(time.time() - save_start)
    if procs.master:  # the files that exist: a resumed run may lack early epochs' checkpoints
        print(f"wrote {runs.written(run.flags.out, run.flags.plot)}")
    return 0


def follow_load(run, parts, procs):
    """Before an epoch: the threads re-checked against the load, and the loaders rebuilt where
    the loader workers those threads imply changed (unless --workers was given). The data
    order and every sample's augmentation do not depend on the workers (SeededSamples)."""
    follow = parts.settings.follow
    follow.check()
    if run.flags.workers is not None:
        return
    workers = follow.workers(parts.workers)
    if workers == parts.workers:
        return
    parts.loader = parts.val_loader = None  # their persistent workers stop first
    parts.loader, parts.val_loader = parts.loaders(workers)
    if procs.master:
        print(f"{follow.threads} threads: {workers} loader workers from this epoch on")
    parts.workers = workers


def plan_budget(run, parts, state, procs, started, timing, trained):
    """--max-minutes, after an epoch's validation: the epochs that fit, planned from the first
    epoch's median step, then from the later epochs' times (rank 0's); a cut re-lays the cosine
    from its lr at this step (no jump) and is recorded in this epoch's checkpoint."""
    max_minutes = run.flags.max_minutes
    if not max_minutes:
        return
    now = time.time()
    if timing.first is None:  # from the median step: a warm-up's slow first steps do not count
        timing.first = budget.steady_epoch_seconds(trained.step_seconds,
                                                   timing.work[-1] - trained.seconds)
    seconds = budget.epoch_seconds(timing.first, timing.work, timing.saves)
    plan = parts.plan
    fit = devices.from_rank0(
        lambda: budget.epochs_that_fit(max_minutes, now - started, state.epoch, seconds,
                                       plan.epochs), procs.ddp, procs.rank)
    if fit == plan.epochs:
        return
    if procs.master:
        print(f"--max-minutes {max_minutes:g}: {fit} of {plan.epochs} epochs fit "
              f"({seconds:.1f} s an epoch)")
    steps = plan.epochs * len(parts.loader)  # the cosine's factor now, where the cut starts
    budget.cut(plan, fit, state.step,
               budget.cosine_factor(state.step, steps, run.flags.warmup, plan.anchor))


def train_epoch(run, parts, state, files, procs):
    """One pass over the training loader (engine.train_one_epoch), its steps logged to
    loss.csv by rank 0; state.step moves on. Every source of randomness in the epoch is derived
    from (seed, epoch, rank): resume is exact."""
    torch.manual_seed((run.flags.seed * 1000 + state.epoch) * 1000 + procs.rank)
    parts.sampler.set_epoch(state.epoch)
    log = None
    if procs.master and not run.flags.dry_run:
        log = open(files.loss_csv, "a", newline="", buffering=1)  # line-buffered
    try:
        trained = engine.train_one_epoch(parts.model, parts.loader, parts.optimizer,
                                         parts.scheduler, parts.scaler, parts.settings,
                                         state.epoch, state.step, log)
    finally:
        if log is not None:
            log.close()
    state.step = trained.step
    return trained


# -- saving ---------------------------------------------------------------------------------------

def save_epoch(run, parts, state, files, trained, acc):
    """After each epoch (rank 0): epoch-NNN.pt (weights), best.pt when validation improved,
    last.pt (resumable), a row of val.csv, the loss curves and a line on the console."""
    improved = acc is not None and acc > state.best
    if improved:
        state.best = acc
    device = parts.settings.device
    ckpt = checkpoint.make_checkpoint(
        parts.raw_model, run.tokenizer.vocab, optimizer=parts.optimizer,
        scheduler=parts.scheduler, scaler=parts.scaler, epoch=state.epoch, step=state.step,
        rng=checkpoint.rng_states(device), best_metric=state.best,
        args=run.recorded(parts.plan),
        world=parts.settings.world, steps_per_epoch=len(parts.loader))
    # the epoch's weights, as the seed keeps a file per epoch: enough to evaluate, not to resume
    kept_keys = ("format", "config", "vocab", "model", "epoch", "step")
    if run.flags.epoch_checkpoints:
        weights = {key: ckpt[key] for key in kept_keys}
        checkpoint.save_checkpoint(weights, os.path.join(run.flags.out, epoch_name(state.epoch)))
    # epoch-N.pt and best.pt before last.pt: a kill between them leaves last.pt behind
    # (resume redoes the epoch), never the others
    if improved:
        checkpoint.save_checkpoint(ckpt, files.best)
    checkpoint.save_checkpoint(ckpt, files.last)
    images_per_s = trained.seen / trained.seconds
    val_acc = "" if acc is None else round(acc, 6)
    with open(files.val_csv, "a", newline="") as f:
        row = [state.step, state.epoch, round(trained.mean_loss, 6), val_acc,
               round(images_per_s, 1), round(trained.seconds, 1)]
        csv.writer(f).writerow(row)
    runs.plot_curves(run.flags.out, files.plots)  # redrawn after every epoch
    val = "" if acc is None else f", val acc {acc:.4f} (best {state.best:.4f})"
    cpu = f", {torch.get_num_threads()} threads at the end" if device.type == "cpu" else ""
    print(f"epoch {state.epoch}: train loss {trained.mean_loss:.4f}{val}, "
          f"{images_per_s:.0f} images/s, {trained.seconds:.0f} s{cpu}")


def epoch_name(epoch):
    """epoch-001.pt for the weights after the first epoch."""
    return f"epoch-{epoch:03d}.pt"


if __name__ == "__main__":
    sys.exit(run_main("train.py", main))
