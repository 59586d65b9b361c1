"""Which device and how many cores a process uses, whether it computes bf16 in hardware, and
what the processes of a torchrun job must share.

One place for train.py, eval.py and play.py, so that `torchrun` and the scripts agree on what
"cuda" means.
"""
import os
import time

import torch
import torch.distributed as dist


def default_device():
    """CUDA if present, else MPS, else the CPU."""
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def choose_device(requested=None, local_rank=0, local_world=1):
    """The torch.device this process should use; ValueError with a one-line reason otherwise.

    local_rank, local_world: torchrun's LOCAL_RANK and LOCAL_WORLD_SIZE (0 and 1 without it).
    Plain "cuda" under torchrun means this process's own GPU: cuda:LOCAL_RANK when every process
    sees all of the node's GPUs, cuda:0 when the launcher gives each process one GPU (a
    CUDA_VISIBLE_DEVICES per task, as Slurm's --gpus-per-task does). An explicit index would put
    every process of the node on that one GPU, so with several processes it is refused.
    Nothing is allocated here: check_device() does that.
    """
    device = torch.device(requested or default_device())
    if device.type != "cuda":
        return device
    if device.index is not None:
        if local_world > 1:
            raise ValueError(f"under torchrun all {local_world} processes of this node would share "
                             f"{device}; pass --device cuda (process i takes GPU i) and choose the "
                             f"GPUs with CUDA_VISIBLE_DEVICES")
        return device
    visible = torch.cuda.device_count()
    if local_world > 1 and visible == 1:  # the launcher has given this process its own GPU
        return torch.device("cuda", 0)
    if 1 < visible < local_world:
        raise ValueError(f"{local_world} processes on this node but each sees {visible} GPUs; "
                         f"give each process one GPU or all of them")
    return torch.device("cuda", local_rank)


def check_device(device):
    """Select and touch the device, so that one this machine lacks (no GPU, driver or MPS, an
    ordinal past the last GPU) fails here with one line rather than deep inside model.to."""
    if device.type not in ("cpu", "cuda", "mps", "xpu"):  # meta holds no data: nothing to read
        raise ValueError(f"{device.type} is not a device these scripts compute on (cpu, cuda, "
                         f"mps)")
    try:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:  # AssertionError: a torch built without CUDA
        raise ValueError(str(e).strip().splitlines()[0]) from None
    return device


def device_from_flag(requested=None, local_rank=0, local_world=1):
    """The device of a script's --device flag (None: default_device()), chosen and checked:
    train.py, eval.py and play.py all go through here. ValueError "--device X: reason" (one
    line) for an unknown name or a device this machine lacks."""
    try:
        return check_device(choose_device(requested, local_rank, local_world))
    except (RuntimeError, ValueError) as e:  # RuntimeError: an unknown device name
        raise ValueError(f"--device {requested}: {str(e).splitlines()[0]}") from None


def native_bf16(device):
    """Whether `device` is a GPU that computes bf16 in hardware: CUDA compute capability 8.0 on
    (A100, RTX 30xx, H100...), or any ROCm GPU.

    Not torch.cuda.is_bf16_supported(): by default it also answers yes where bf16 is emulated
    (T4, RTX 20xx: compute capability 7.5), which have fp16 tensor cores but none for bf16; and
    it asks about the current GPU, not about `device`. Its including_emulation=False
    form makes the same capability test as here, for the current GPU only.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return False
    if torch.version.hip:  # every GPU ROCm supports has bf16
        return True
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def cpu_flags(path="/proc/cpuinfo"):
    """The instruction-set flags the kernel lists for this CPU (an empty set where it does not:
    no /proc, as on macOS and Windows)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(("flags", "Features")):  # x86, ARM
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_bf16_isa(flags=None):
    """The bf16 instructions of this CPU that oneDNN computes with: 'amx' (AMX tile units: the
    large win), 'avx512_bf16' (bf16 dot products in AVX-512 registers), 'arm_bf16' (ARMv8.6
    BF16), or None. Without them torch emulates bf16 through fp32 and only adds conversions.
    Not torch.backends.cpu.get_cpu_capability() ('AVX512' on CPUs with and without bf16) nor
    torch.ops.mkldnn._is_mkldnn_bf16_supported() (true on any AVX-512 CPU, emulation included)."""
    flags = cpu_flags() if flags is None else set(flags)
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    if "bf16" in flags:  # ARM's Features line
        return "arm_bf16"
    return None


def resolve_precision(device, precision):
    """The precision an evaluation's --precision means on `device` (eval.py, play.py): auto is
    bf16 on a GPU with bf16 hardware (not one that only emulates it, such as a T4), fp32
    elsewhere."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(device, precision):
    """The autocast of --precision on `device`, shared by training and evaluation: bf16 or fp16
    (auto resolved as resolve_precision says); fp32 a no-op."""
    precision = resolve_precision(device, precision)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(torch.device(device).type, dtype=dtype or torch.bfloat16,
                          enabled=dtype is not None)


def loss_scaler(device, precision):
    """fp16's narrow range needs loss scaling in training (on CUDA); bf16 has fp32's range."""
    enabled = torch.device(device).type == "cuda" and precision == "fp16"
    return torch.amp.GradScaler("cuda", enabled=enabled)


def memory_format(device):
    """channels_last where convolutions are faster with it: CUDA (tensor cores) and CPU (oneDNN:
    1.4x for the CPU preset's compute alone); the default layout elsewhere (MPS)."""
    if torch.device(device).type in ("cuda", "cpu"):
        return torch.channels_last
    return torch.contiguous_format


def emulated_bf16_note(device, precision):
    """A one-line note where bf16 was asked for on a device that only emulates it (else None):
    a GPU before compute capability 8.0, or a CPU without bf16 instructions. The run is right
    but slow there: fp32 (or fp16, loss-scaled in training, on such a GPU) is the fast type."""
    device = torch.device(device)
    if precision != "bf16":
        return None
    if device.type == "cpu":
        if cpu_bf16_isa() is not None:
            return None
        return ("note: this CPU has no bf16 instructions (AMX, AVX512_BF16 or ARM BF16): bf16 is "
                "emulated through fp32 and slower than fp32 here")
    if device.type != "cuda" or native_bf16(device):
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return (f"note: {device} (compute capability {major}.{minor}) has no bf16 hardware: "
            f"bf16 is emulated and slow there; fp16 or fp32 is faster")


def cpu_cores():
    """Cores this process may run on: its CPU affinity (taskset, Slurm, containers), not the
    machine's core count, where the system tells it."""
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


FREE_WINDOW = 0.25  # seconds of /proc/stat sampled to see how busy this process's cores are


def free_cores(window=FREE_WINDOW):
    """How many of the cores this process may run on are idle now: the sum of their idle shares
    over `window` seconds of /proc/stat (Linux); None where the system does not tell."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None

    def sample():
        times = {}
        with open("/proc/stat") as f:
            for line in f:
                name, *fields = line.split()
                if not name.startswith("cpu") or name == "cpu":
                    continue
                cpu = int(name[3:])
                if allowed is None or cpu in allowed:
                    values = [int(v) for v in fields[:8]]
                    times[cpu] = (values[3] + values[4], sum(values))  # idle + iowait, all
        return times
    try:
        before = sample()
        time.sleep(window)
        after = sample()
    except (OSError, ValueError):
        return None
    free = 0.0
    for cpu, (idle, total) in after.items():
        if cpu in before and total > before[cpu][1]:
            free += (idle - before[cpu][0]) / (total - before[cpu][1])
    return free


def thread_rule(processes=1):
    """(torch threads, CPU loader workers) for each of `processes` processes, from one look at
    how busy the cores are at start: threads = the cores this process may use that are idle
    (free_cores, rounded, at least 1), shared between the processes; one loader worker where a
    second core is free, else none (loading then runs between steps instead of fighting the
    compute for the core). A core kept busy by another program is left to it: two threads on
    one free core wait on each other at every parallel region (10x slower: python -m
    bench.bench_threads)."""
    cores = cpu_cores()
    free = free_cores()
    if free is None:
        free = cores
    free = min(cores, int(free + 0.5))
    threads = max(1, free // processes)
    workers = 1 if free >= 2 else 0
    return threads, workers


def apply_thread_rule(device, threads=0, workers=None):
    """eval.py's, play.py's and predict.py's threads and loader workers: --threads (0: the thread
    rule's) set for torch on a CPU; returns the loader workers (--workers, or None: on a GPU
    min(8, cores / 2), on a CPU the rule's)."""
    if device.type != "cpu":
        return workers if workers is not None else min(8, max(1, cpu_cores() // 2))
    if threads and workers is not None:  # both given: no need to look at the cores
        return workers
    rule_threads, rule_workers = thread_rule()  # samples /proc/stat for 0.25 s
    torch.set_num_threads(threads or rule_threads)
    return workers if workers is not None else rule_workers


def from_rank0(load, ddp, rank):
    """load() run by rank 0 alone, and its result, or the OSError/ValueError it raised, handed to
    every rank. Every process then acts on one decision (resume or not, from which checkpoint),
    whatever files its own node can see; an error stops all of them alike instead of leaving the
    others waiting in a collective."""
    result, error = None, None
    if rank == 0:
        try:
            result = load()
        except (OSError, ValueError) as e:
            error = e
    if ddp:  # pickled, and sent to the GPU under NCCL: torch.cuda.set_device must come first
        box = [(result, error)]
        dist.broadcast_object_list(box, src=0)
        result, error = box[0]
    if error is not None:
        raise error
    return result


def broadcast_buffers(model):
    """Rank 0's buffers (BatchNorm running statistics) on every rank. DDP broadcasts them before
    each training forward, but that forward then updates each rank's copy with its own shard's
    batch: after an epoch the ranks' statistics differ by one update, and each rank would
    validate a slightly different model from the one rank 0 saves."""
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)
