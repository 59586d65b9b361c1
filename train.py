"""Train the attention OCR (CNN encoder + attention GRU decoder) on SVHN digit crops.

python train.py                           # the seed's recipe: train + extra, 16 epochs, fp32 (GPU)
python train.py --preset cpu --train-json data/synth/train.json --epochs 5 \
    --schedule onecycle --lr 2e-3               # a small model on a CPU
python train.py --resume auto             # continue exactly from <out>/last.pt
python train.py --init runs/demo/best.pt --train-json mine/train.json --val-json mine/val.json
                                          # fine-tune a checkpoint on your own labelled images
torchrun --nproc_per_node 4 train.py      # DDP, one process per GPU; --batch-size is per process

The flags and their defaults (the recipe, the presets, the fine-tuning defaults) are in
training/flags.py; this file resolves them once into a Run and trains it.
"""
import csv
import os
import sys
import time
from types import SimpleNamespace

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Subset

from model import aux_as_head, build_model, format_size, load_encoder, load_grown
import data
from support import checkpoint, devices, runs, threads
from support.script import run_main
from support.tokenizer import BOS, EOS, PAD
from training import budget, engine, start
from training.flags import MAX_LEN_MARGIN, parse_args


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
    promoted = init and aux_as_head(model, init.model.state_dict())
    fitted = []  # ctc column weights fitted to another input height (load_grown)
    if promoted:  # --head ctc from a checkpoint trained with --aux-ctc: its ctc head reads on
        fitted = load_grown(model, promoted, len(init.vocab))
        print(f"fine-tuning {init.path}: its encoder, and its trained auxiliary ctc head as the "
              "head")
    elif init and init.model.config["head"] != config["head"]:  # the encoder only; a fresh head
        load_encoder(model, init.model.state_dict())
        print(f"fine-tuning {init.path}: its encoder, with a new {config['head']} head "
              f"(it had {init.model.config['head']})")
    elif init:  # old rows copied bit for bit
        fitted = load_grown(model, init.model.state_dict(), len(init.vocab))
        added = vocab[len(init.vocab):]
        note = f", {len(added)} added: {''.join(added)!r}" if added else ""
        print(f"fine-tuning {init.path}: {len(init.vocab)} tokens kept{note}")
    if fitted:
        print(f"fine-tuning {init.path}: its ctc column weights fitted from its "
              f"{format_size(init.model.config['crop_size'])} input to "
              f"{format_size(config['crop_size'])}")
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
    epoch's median step, then from the later epochs' times (rank 0's), never more than --epochs
    (a resumed run's: the plan it was saved with); a cut or a lengthening re-lays the cosine
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
                                       plan.epochs, run.flags.epochs), procs.ddp, procs.rank)
    if fit == plan.epochs:
        return
    if procs.master:
        print(f"--max-minutes {max_minutes:g}: {fit} epochs fit, not the {plan.epochs} "
              f"planned ({seconds:.1f} s an epoch)")
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
