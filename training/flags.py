"""train.py's flags: the recipe's defaults (the constants below: `python train.py` with no flags
trains exactly the seed's recipe), the presets and the fine-tuning defaults, the parser that
groups them for --help, and the checks on their values. train.py runs what parse_args returns.
"""
import argparse
import math

from formats.records import SVHN_ROOT
from model import DEFAULT_CONFIG, HEADS, parse_size
from model.config import MAX_STRETCH as MAX_STRETCH_LIMIT
from model.vote import MAX_VOTES
from support import runs
from support.images import MAX_PIXELS
from training import augment, start

# train.py --help's description
DESCRIPTION = ("Train the attention OCR (CNN encoder + attention GRU decoder) on SVHN digit "
               "crops, or fine-tune a checkpoint on your own labelled images.")

# -----------------------------------------------------------------------------
# defaults: the seed's recipe. `python train.py` with no flags trains exactly this.
# data
TRAIN_JSON = [f"{SVHN_ROOT}/train.json", f"{SVHN_ROOT}/extra.json"]  # by prepare_data.py
VAL_SIZE = 0          # images held out from the first JSON for validation and best.pt (0: none)
IMAGE_SIZE = DEFAULT_CONFIG["image_size"]  # the expanded crop, resized...
CROP_SIZE = DEFAULT_CONFIG["crop_size"]  # ...then cropped: at random in training,
                      # at the centre in evaluation
MAX_STRETCH = DEFAULT_CONFIG["max_stretch"]  # 0: the region squashed to --image-size (the seed)
AUGMENT = True        # random resized crop (scale 0.7-1) + colour jitter 0.5 on training images
LOOSE = 0.0           # share of training crops widened at random toward the whole photo
AUGMENT_STYLE = "seed"  # seed: random resized crop + colour jitter; photo: augment.photo_augment
SHEAR = 0.0           # degrees of slant the text style adds (0: none; 10 read fewer real
                      # plates, README "Levers measured")
MAX_SHEAR = 45.0
ELASTIC = 0.0         # the text style's elastic warp, in input heights (0: none)
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
VOTES = DEFAULT_CONFIG["votes"]  # copies of an image read in decoding (model.vote); 1: the seed
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
# the data (start.finetune_defaults): the input shape and augmentation, the epochs and the head
# (a trained auxiliary ctc head reads short texts). No images are held out: a validation set of
# a few dozen photos picks a worse epoch than the cosine schedule's last (README).
FINETUNE = {"epochs": None, "batch_size": 16, "lr": 2e-3, "schedule": "cosine", "warmup": 0.1,
            "dropout": 0.2, "val_size": 0, "augment_style": None, "max_minutes": 9.0,
            "image_size": None, "crop_size": None, "epoch_checkpoints": False}
# -----------------------------------------------------------------------------
# --help's first line: the flags most runs give (argparse's own would list all 45, line after line)
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
    rare("--max-stretch", type=float, default=MAX_STRETCH, metavar="S",
      help="0: every region is squashed to --image-size whatever its aspect (the seed); S > 0: "
           "it keeps its aspect at the input's height, widened at most S times, at the left, "
           "the rest of the width its mean colour, so that a short word is not stretched across "
           "a wide input. Stored in the checkpoint: eval.py, predict.py and play.py read alike. "
           f"--init picks {start.FINETUNE_LINE_STRETCH:g} where it widens a line reader for its "
           "ctc head, else keeps the checkpoint's")
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
    rare("--shear", type=degrees_arg, default=SHEAR, metavar="DEGREES",
      help="--augment-style text only: a slant of up to DEGREES either way (rows shifted in "
           "proportion to their height), capped so that no character leaves the frame; 0: none "
           "(10 read fewer real plates, README)")
    rare("--elastic", type=float, default=ELASTIC, metavar="HEIGHTS",
      help="--augment-style text only: pixels moved by a smooth random field, as different hands "
           "shape a stroke: its displacement's standard deviation in input heights (0.03: a "
           "pixel at 32 high), drawn every 8 pixels; 0: none. With --init from a line reader: "
           f"{start.FINETUNE_ELASTIC:g} (README \"Levers measured\")")
    a("--synth-mix", type=float, default=SYNTH_MIX,
      help="share of every epoch's images drawn anew by the text generator (synth/text.py) in "
           "the training texts' characters, lengths and layouts, so that rare characters are "
           "seen often; 0: none. With --init from a line reader: 0.3 where a fifth of the "
           "texts hold characters its vocabulary lacks (README \"New characters\")")
    rare("--normalize", action=argparse.BooleanOptionalAction, default=NORMALIZE,
      help="map input pixels [0, 1] -> [-1, 1] inside the model (stored in the checkpoint)")


def add_model_flags(a, rare):
    """The model (stored in its checkpoint's config)."""
    rare("--preset", choices=sorted(PRESETS),
      help=f"model size preset (explicit flags win): {PRESETS}")
    a("--head", choices=sorted(HEADS), default=HEAD,
      help="attention: the seed's GRU decoder with attention; ctc: a BiLSTM over the feature "
           "map's columns, 2 frames each, read by CTC (greedy decoding only). With --init "
           "another head than the checkpoint's keeps its encoder and starts the head afresh; "
           "--head ctc from a checkpoint trained with --aux-ctc starts from that trained head")
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
    rare("--votes", type=int, default=VOTES, metavar="N",
      help=f"eval.py, predict.py and play.py read each image as N copies, shifted by a pixel or "
           f"two and rescaled by a few percent, and keep the text they read most surely "
           f"(the highest summed probability; 1..{MAX_VOTES}; "
           f"stored in the checkpoint; their --votes overrides it). 1: the image alone (the "
           f"seed); --init picks {start.FINETUNE_VOTES} for a line reader (README \"Reading by "
           f"vote\"). Validation during training reads the image alone")


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
           "its input and uses --augment-style text with --elastic "
           f"{start.FINETUNE_ELASTIC:g} (0 where synthetic lines are mixed in; with a ctc head: "
           "its height, widened to "
           f"{start.FINETUNE_LINE_ASPECT:g}:1); a near-square model (replica.pt) gets the "
           "seed's augmentation and the width from the images' median width/height (up to "
           f"{start.FINETUNE_MAX_ASPECT:g}x); a checkpoint trained with --aux-ctc reads with "
           "that ctc head where every training text has a feature column per character of "
           "the input it reads; "
           f"epochs for {start.FINETUNE_IMAGES:,} images seen "
           f"({start.FINETUNE_EPOCHS[0]}-{start.FINETUNE_EPOCHS[1]}); no images held out: "
           f"last.pt is the model (--val-size or --val-json to validate); a line reader's "
           f"checkpoint decodes by a vote of {start.FINETUNE_VOTES} copies (--votes). Of the "
           f"model flags only --max-len, --dropout, --image-size, --crop-size, --max-stretch and "
           f"--votes may change")
    a("--max-minutes", type=float, default=MAX_MINUTES,
      help="time budget in minutes (0: none): after the first epoch the epochs that fit, "
           "planned from the median step, become --epochs and the lr schedule is laid over "
           "them; later epochs cut the plan where the rest no longer fits, or lengthen it "
           "again (up to --epochs) where they run faster; cosine and step schedules only")
    rare("--dry-run", action="store_true",
      help="one training batch and one validation batch; writes nothing")


def build_parser():
    """train.py's flags, their defaults the recipe's (the constants above): `--help` lists the
    ones most runs set under data, model, training and run, then the rest under advanced."""
    p = argparse.ArgumentParser(description=DESCRIPTION, usage=USAGE,
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
            ("elastic", args.elastic, 0 <= args.elastic <= augment.MAX_ELASTIC,
             f"in [0, {augment.MAX_ELASTIC:g}] (input heights)"),
            ("max-stretch", args.max_stretch, 0 <= args.max_stretch <= MAX_STRETCH_LIMIT,
             f"in [0, {MAX_STRETCH_LIMIT:g}] (0: squash)"),
            ("max-minutes", args.max_minutes, args.max_minutes >= 0, ">= 0")]:
        if not (math.isfinite(value) and ok):
            p.error(f"--{name} must be a finite number {want}, got {value}")
    if not 1 <= args.votes <= MAX_VOTES:
        p.error(f"--votes must be in 1..{MAX_VOTES}, got {args.votes}")
    if any(m < 1 for m in args.milestones):
        p.error(f"--milestones must be epochs >= 1, got {args.milestones}")
    if not 0 <= args.seed < 2 ** 32:  # torch.manual_seed takes an int64 and the seed is scaled
        p.error(f"--seed must be an integer in [0, 2^32), got {args.seed}")


def degrees_arg(text):
    """argparse type of --shear: degrees in [0, MAX_SHEAR)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < MAX_SHEAR:  # nan fails too
        raise argparse.ArgumentTypeError(f"must be degrees in [0, {MAX_SHEAR:g}), got {text!r}")
    return value


def size_arg(text):
    """argparse type of --image-size / --crop-size: N or HxW."""
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
