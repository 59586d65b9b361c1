"""How a train.py run starts: afresh, continuing its own last.pt exactly (--resume), or from another
checkpoint's weights (--init, fine-tuning). A checkpoint resumed fixes the model, the data the run
sees and the recipe its optimizer and schedule carry (the flags given may not contradict them);
--init fixes the model's weights and lets the data choose the fine-tuning defaults train.py leaves
open (FINETUNE's None: input shape, augmentation, epochs, head). train.resolve makes the one Run
from the flags, the checkpoint (read once) and the data.
"""
import argparse
import operator
import os
from dataclasses import dataclass
from types import SimpleNamespace

from formats.records import load_split, record_text, split_median_aspect
from model import DEFAULT_CONFIG, as_hw, format_size
from model.encoder import parse_plan, pooled_size
from support import checkpoint, devices, runs

# flags stored in the checkpoint's model config
MODEL_ARGS = ("head", "aux_ctc", "plan", "hidden", "dropout", "image_size", "crop_size",
              "max_stretch", "max_len", "glimpse", "normalize", "votes")
# the data a run sees, kept on resume
DATA_ARGS = ("train_json", "val_size", "val_json", "seed", "augment", "loose", "augment_style",
             "shear", "elastic", "synth_mix")
# data flags newer than some runs, with the value those runs trained with
UNRECORDED_DATA = {"shear": 0.0, "elastic": 0.0}
# the recipe that the optimizer and scheduler states carry: kept on resume (a new --lr was
# recorded, then overridden by the restored state)
RECIPE_ARGS = ("lr", "weight_decay", "schedule", "milestones", "gamma", "warmup")
# --init: what finetune_defaults chooses from the data, and the flags --init may change
FINETUNE_IMAGES = 24_000  # images seen: epochs = this / training images, within FINETUNE_EPOCHS
FINETUNE_EPOCHS = (20, 120)
FINETUNE_MAX_ASPECT = 8.0  # the widest input fine-tuning picks, width / height
# a line reader fine-tuned with a ctc head widens to this aspect at its height: 32 x 256 from
# reader.pt's 32 x 128, twice the feature columns per character (README "Your own data")
FINETUNE_LINE_ASPECT = 8.0
# ... and keeps a region's aspect up to this stretch (model config max_stretch), padding the rest:
# reader.pt read lines of 1:1 to 10:1 squashed into 4:1, stretched up to 4x; stretched 8x, narrow
# receipt crops read less (README "Your own data")
FINETUNE_LINE_STRETCH = 4.0
WIDE = 1.25  # width / height above which an input is a line, not a near-square crop
# a line reader's fine-tuned checkpoint decodes by a vote of this many copies (model.vote): on
# real plates and CAPTCHAs it read 3-8 points more whole than the image alone (README "Reading
# by vote")
FINETUNE_VOTES = 7
# a line reader fine-tuned on texts of which at least this share hold characters its vocabulary
# lacks (a Chinese plate's province) mixes FINETUNE_SYNTH_MIX of every epoch from the text
# generator (--synth-mix), so that each new character is seen thousands of times, not a few
# (README "New characters")
NEW_CHARS_SHARE = 0.2
FINETUNE_SYNTH_MIX = 0.3
# a line reader fine-tuned with the text style and no synthetic lines warps its lines by a smooth
# field of this many input heights (--elastic), as another hand shapes a stroke otherwise: in
# pairs of runs handwriting read 2 points more on average, print, plates and displays as much;
# Chinese plates learning their provinces from the mix read less (README "Levers measured")
FINETUNE_ELASTIC = 0.03
# --init may change these: they shape no weight
FINETUNE_FLAGS = ("max_len", "dropout", "image_size", "crop_size", "max_stretch", "votes")
# --init may also switch the head (the checkpoint's encoder is kept, the new head starts afresh)
# and add or drop the auxiliary ctc loss (its head starts afresh)
SWITCHABLE = ("head", "aux_ctc")


@dataclass
class Processes:
    """This process among the run's: under torchrun one per GPU (or CPU share)."""
    ddp: bool
    rank: int
    world: int
    local_rank: int  # this process among the node's
    local_world: int  # processes on this node

    @classmethod
    def from_environment(cls):
        """As torchrun's variables say; one process alone without them."""
        return cls(ddp="RANK" in os.environ, rank=int(os.getenv("RANK", 0)),
                   world=int(os.getenv("WORLD_SIZE", 1)),
                   local_rank=int(os.getenv("LOCAL_RANK", 0)),
                   local_world=int(os.getenv("LOCAL_WORLD_SIZE", 1)))

    @property
    def master(self):
        return self.rank == 0


@dataclass
class Resumed:
    """The checkpoint a run continues (--resume), read once."""
    path: str
    ckpt: dict


@dataclass
class InitFrom:
    """--init's checkpoint: where fine-tuning starts, its model (config and weights) and the
    vocabulary those weights read."""
    path: str
    model: object  # an OCRModel
    vocab: list


@dataclass
class Run:
    """One training run, resolved once from the flags, the checkpoint and the data."""
    flags: argparse.Namespace  # every flag as the run uses it: given, fixed by a checkpoint or
                               # chosen from the data (max_len included)
    resumed: Resumed | None
    init: InitFrom | None
    tokenizer: object  # the vocabulary: the resumed checkpoint's, --init's grown, or the data's
    train_set: object  # a ConcatDataset of the training JSONs' images (less those held out)
    val_set: object  # None: no validation
    json_records: list  # records in each --train-json: resuming checks the data is the same
    relaid: list | None  # a resumed run's [step, lr factor]: where --max-minutes re-laid its
                         # schedule (budget.EpochPlan.anchor)

    def recorded(self, plan):
        """ckpt["args"]: the flags, the data counts, and the epochs of the plan and where
        --max-minutes cut it (budget.EpochPlan)."""
        return {**vars(self.flags), "json_records": self.json_records, "epochs": plan.epochs,
                "relaid": plan.anchor}


def open_run(args, files, procs):
    """The checkpoint to resume (Resumed) or None: --out locked for this run, and a run already
    there refused unless it is the one resumed (or moved aside by --overwrite). Rank 0 decides
    for every rank (other nodes may lack --out)."""
    resume = files.last if args.resume == "auto" else args.resume

    def load_resume():
        if not args.dry_run:  # one train.py per --out: a second one (two --resume auto) refused
            runs.lock_run(args.out)
        if resume and (args.resume != "auto" or os.path.exists(resume)):
            return checkpoint.load_checkpoint(resume, map_location="cpu", resume=True)[1]
        return None
    ckpt = devices.from_rank0(load_resume, procs.ddp, procs.rank)

    def check_out():
        in_place = ckpt is not None and os.path.exists(files.last)
        in_place = in_place and os.path.samefile(resume, files.last)  # continuing the run in --out
        if args.dry_run or in_place:
            return None
        # a fresh start, or another run's checkpoint continued here: it must not replace a run
        return runs.check_fresh_start(args.out, args.overwrite, args.resume == "auto",
                                      [args.init, *args.train_json, args.val_json])
    aside = devices.from_rank0(check_out, procs.ddp, procs.rank)
    if aside and procs.master:
        print(f"--overwrite: moved the run that was in {args.out} to {aside}")
    if ckpt is None:
        return None
    return Resumed(resume, ckpt)


def settle(args, resumed, master):
    """(the run's flags, InitFrom or None): the flags as given, with what the checkpoint resumed
    fixes, or with --init's model config and the defaults chosen from the data."""
    init = None
    fixed = {}
    if resumed:
        fixed = adopt_resumed(args, resumed)
    elif args.init:
        init, fixed = init_from(args)
        chosen = finetune_defaults(args, init.model.config, init.vocab)
        if chosen and master:
            shown = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in chosen.items())
            print(f"fine-tuning defaults from the data: {shown}")
        fixed.update(chosen)
    return argparse.Namespace(**{**vars(args), **fixed}), init


def same_words(given, saved):
    """A model flag agrees with a config value: "32 M 64" == "32  M 64"; None (left open for
    --init's defaults) agrees with anything."""
    return given is None or str(given).split() == str(saved).split()


def fixed_by(path, args, given, saved, keys, why, same=operator.eq):
    """{key: value} for each of `keys` the checkpoint at `path` recorded in `saved` (its config
    or args; None: not recorded). The one check of a flag that contradicts a checkpoint:
    ValueError for one given explicitly (in `given`) with another value; `why` ends the
    message."""
    fixed = {}
    for key in keys:
        value = saved.get(key)
        if value is None:  # a checkpoint that did not record it
            continue
        mine = getattr(args, key)
        if key in given and not same(mine, value):
            raise ValueError(f"{path}: trained with --{key.replace('_', '-')} {value!r}, "
                             f"not {mine!r}{why}")
        fixed[key] = value
    return fixed


def adopt_resumed(args, resumed):
    """{flag: value} that the checkpoint to resume from fixes: its model flags (the model and its
    input size), the data it sees (held-out images, order, augmentation) and the recipe its
    optimizer and scheduler states carry. ValueError for an explicit flag that differs, or an
    --epochs its schedule was not made for."""
    path, ckpt = resumed.path, resumed.ckpt
    again = "drop the flag to resume, or use a new --out"
    # a config without a key is a model from before it, with its default (as check_config reads)
    flags = fixed_by(path, args, args.model_flags, {**DEFAULT_CONFIG, **ckpt["config"]},
                     MODEL_ARGS, f"; {again}", same_words)
    flags.update(fixed_by(path, args, args.data_flags, {**UNRECORDED_DATA, **ckpt["args"]},
                          DATA_ARGS, f", which changes the data it sees; {again}"))
    # rather than record a value that is not applied
    flags.update(fixed_by(path, args, args.recipe_flags, ckpt["args"], RECIPE_ARGS,
                          f"; its optimizer and lr schedule resume as saved: drop the flag to "
                          f"resume, or start a new --out (--init {path} fine-tunes it with a new "
                          f"recipe)"))
    planned = ckpt["args"].get("epochs")
    epochs = args.epochs
    if epochs is None:  # a fine-tuning run's epochs came from its data: keep them
        epochs = flags["epochs"] = planned
    schedule = ckpt["args"].get("schedule")
    annealing = schedule in ("cosine", "onecycle")
    if annealing and epochs > ckpt["epoch"] and epochs != planned:
        raise ValueError(f"{path}: its {schedule} schedule was laid out for --epochs {planned}; "
                         f"resume with that, or start a new --out")
    return flags


def init_from(args):
    """--init: (InitFrom, {flag: value} of its model config). The config replaces the flags,
    which may differ only where they shape no weight (FINETUNE_FLAGS) or switch a head
    (SWITCHABLE)."""
    model, ckpt = checkpoint.load_checkpoint(args.init, map_location="cpu")
    open_flags = FINETUNE_FLAGS + SWITCHABLE
    keys = [k for k in MODEL_ARGS if not (k in open_flags and k in args.model_flags)]
    flags = fixed_by(args.init, args, args.model_flags, model.config, keys,
                     "; --init keeps the checkpoint's model", same_words)
    head = args.head if "head" in args.model_flags else model.config["head"]
    if head != "attention" and "aux_ctc" not in args.model_flags:  # an attention head's extra
        flags["aux_ctc"] = 0.0
    return InitFrom(args.init, model, list(ckpt["vocab"])), flags


def check_same_data(resumed, train_json, json_records):
    """ValueError where the training JSONs a resumed run reads hold other numbers of records than
    when it started: the held-out images and the order would silently change."""
    saved = resumed.ckpt["args"].get("json_records")
    if saved not in (None, json_records):
        raise ValueError(f"{resumed.path}: trained on {saved} records of {' '.join(train_json)}, "
                         f"which now hold {json_records}; the data changed: use a new --out")


def finetune_defaults(args, config, vocab=None):
    """--init's data-driven defaults (FINETUNE's None): the input shape and the augmentation from
    the checkpoint's input, the epochs from the data's size, the head from the checkpoint's
    heads and the longest text (reads_with_ctc), and for a line reader whose vocab lacks the
    characters of many texts, synthetic lines (NEW_CHARS_SHARE). Returns {flag: value} for those
    not given.

    A line reader (a checkpoint with a wide input, like weights/reader.pt) has read lines of
    every aspect squashed into that input: it keeps it, and fine-tunes with the text style, which
    never crops a character out of the line, and warps the lines a little where it mixes in no
    synthetic ones (FINETUNE_ELASTIC); reading with a ctc head, it keeps its height and widens to
    FINETUNE_LINE_ASPECT (twice the columns per character for CTC's alignment; the attention
    head read fewer lines so), where a region keeps its aspect stretched at most
    FINETUNE_LINE_STRETCH times and the rest is padded (max_stretch); its checkpoint decodes by
    a vote of FINETUNE_VOTES copies (model.vote). A model of near-square crops (replica.pt, the
    seed's) gets an input as wide as the images and the seed's random resized crops."""
    image_dir, records = load_split(args.train_json[0])
    others = [record for path in args.train_json[1:] for record in load_split(path)[1]]
    n = len(records) + len(others)
    chosen = {}
    if args.epochs is None:
        low, high = FINETUNE_EPOCHS
        seen = n - args.val_size
        chosen["epochs"] = min(high, max(low, round(FINETUNE_IMAGES / max(1, seen))))
    height, checkpoint_width = as_hw(config["crop_size"])
    reads_lines = checkpoint_width > WIDE * height
    if args.augment_style is None:
        chosen["augment_style"] = "text" if reads_lines else "seed"
    if args.crop_size is None or args.image_size is None:
        shape = (config["image_size"], config["crop_size"])  # a line reader's, or near square
        # a line reader keeps its shape: only a near-square model reads the images' aspect
        aspect = 1.0 if reads_lines else split_median_aspect(image_dir, records)
        if aspect > WIDE:  # wide text: as wide as the images, no margin
            width = width_at(height, min(aspect, FINETUNE_MAX_ASPECT))
            shape = ([height, width], [height, width])
        if args.image_size is None:
            chosen["image_size"] = shape[0]
        if args.crop_size is None:
            chosen["crop_size"] = shape[1]
    texts = [record_text(r) for r in records + others]
    longest = max(map(len, texts), default=0)
    shape_given = args.crop_size is not None or args.image_size is not None
    # never narrower than the checkpoint, so a second fine-tuning keeps its input
    line = [height, max(checkpoint_width, width_at(height, FINETUNE_LINE_ASPECT))]
    ctc_input = chosen.get("crop_size", args.crop_size)
    if reads_lines and not shape_given:  # the input a ctc head widens it to
        ctc_input = line
    if reads_with_ctc(args, config, ctc_input, longest):
        chosen.update(head="ctc", aux_ctc=0.0)
    head = chosen.get("head", args.head if "head" in args.model_flags else config.get("head"))
    widen = reads_lines and head == "ctc" and not shape_given
    if widen:
        chosen["image_size"], chosen["crop_size"] = line, list(line)
    if widen and "max_stretch" not in args.model_flags:  # else the checkpoint's (init_from)
        chosen["max_stretch"] = FINETUNE_LINE_STRETCH
    if reads_lines and "votes" not in args.model_flags:  # else the checkpoint's (init_from)
        chosen["votes"] = FINETUNE_VOTES
    if reads_lines and vocab is not None and "synth_mix" not in args.data_flags:
        if new_chars_share(texts, vocab) >= NEW_CHARS_SHARE:
            chosen["synth_mix"] = FINETUNE_SYNTH_MIX
    style = chosen.get("augment_style", args.augment_style)
    mixed = chosen.get("synth_mix", args.synth_mix) > 0
    if reads_lines and style == "text" and not mixed and "elastic" not in args.data_flags:
        chosen["elastic"] = FINETUNE_ELASTIC
    return chosen


def new_chars_share(texts, vocab):
    """The share of texts holding a character that vocab lacks."""
    known = set(vocab)
    return sum(1 for t in texts if set(t) - known) / max(1, len(texts))


def width_at(height, aspect):
    """The input width for `height` at `aspect` (width / height), in multiples of 8."""
    return 8 * round(height * aspect / 8)


def reads_with_ctc(args, config, crop_size, longest):
    """Whether fine-tuning switches to the ctc head when no head is given: where the checkpoint
    was trained with an auxiliary ctc head (--aux-ctc), that head is past CTC's blank plateau,
    and read by a vote it reads more than the attention head does, short texts and lines of up
    to 24 characters alike (README "Your own data"). It takes over where its weights fit the
    input (the checkpoint's height) and every training text has a feature column per character
    of `crop_size`, the input it would read (2 frames each, room for the blanks between
    repeats; a line reader's widened one): longer lines keep the attention head."""
    if "head" in args.model_flags or "aux_ctc" in args.model_flags or not config.get("aux_ctc"):
        return False
    height, width = as_hw(crop_size)
    return height == as_hw(config["crop_size"])[0] and longest <= pooled_size(width, config["plan"])


def check_input_shape(run, longest):
    """ValueError unless the network input (--crop-size) is large enough for the encoder: each
    side at least 2^(max-pools), so that no pool reads padding alone, and a feature map with at
    least as many cells (rows x columns: attention runs over all of them) as the longest training
    text has characters. --image-size 1x1 would otherwise train a model that cannot read its
    data."""
    height, width = as_hw(run.crop_size)
    pools = parse_plan(run.plan).count("M")
    columns = pooled_size(width, run.plan)
    rows = pooled_size(height, run.plan)
    shown = format_size(run.crop_size)
    if min(height, width) < 2 ** pools:
        raise ValueError(f"--crop-size {shown}: an input too small for the encoder's {pools} "
                         f"max-pools (each side at least {2 ** pools}); give a larger "
                         f"--image-size and --crop-size")
    if rows * columns < longest:
        raise ValueError(f"--crop-size {shown}: the encoder's feature map is {rows}x{columns}, "
                         f"fewer places to attend than the longest training text's {longest} "
                         f"characters; give a larger --image-size and --crop-size")


def restore(resumed, parts, files, procs, device):
    """The loop's state (epoch, step, best validation accuracy): zeros on a fresh start; on
    resume the checkpoint's, with the model, optimizer, schedule, loss scale and random states
    restored from it."""
    state = SimpleNamespace(epoch=0, step=0, best=-1.0)
    if not resumed:
        return state
    ckpt, resume = resumed.ckpt, resumed.path
    state = SimpleNamespace(epoch=ckpt["epoch"], step=ckpt["step"], best=ckpt["best_metric"])
    kept = checkpoint.saved_metric(files.best) if procs.master else None
    if kept is not None:  # best.pt is never replaced by a worse one
        state.best = max(state.best, kept)
    if state.epoch >= parts.plan.epochs:
        return state
    check_steps_per_epoch(ckpt, resume, procs.world, parts.loader.batch_size, len(parts.loader))
    try:  # the dicts are checked for type only: their insides may still not fit
        parts.raw_model.load_state_dict(ckpt["model"])
        parts.optimizer.load_state_dict(ckpt["optimizer"])
        parts.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):  # fp16's loss scale ({} when the scaler is off: bf16, CPU)
            parts.scaler.load_state_dict(ckpt["scaler"])
        checkpoint.set_rng_states(ckpt["rng"], device)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{resume}: cannot restore its training state ({why})") from None
    return state


def check_steps_per_epoch(ckpt, resume, world, batch_size, steps):
    """The schedule counts steps, so it holds only while an epoch takes as many steps: another
    number of processes is fine with a --batch-size that keeps the images per step."""
    before = ckpt.get("steps_per_epoch", ckpt["step"] // max(1, ckpt["epoch"]))
    if before == steps:
        return
    was = f"{ckpt.get('world', '?')} process(es) x --batch-size {ckpt['args'].get('batch_size')}"
    now = f"{world} x {batch_size}"
    raise ValueError(f"{resume}: {was} took {before} steps an epoch, {now} would take "
                     f"{steps} and shift the lr schedule; resume with as many images "
                     f"per step, or start a new --out")
