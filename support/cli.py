"""The command-line flags eval.py, play.py and predict.py share: where and how a model decodes
(--device, --precision, --threads, --workers) and the beam's limit."""

MAX_BEAM = 64  # wider beams find nothing greedy-plus-a-few cannot, and cost K x the memory


def add_inference_flags(p, workers=True):
    """--device, --precision, --threads and (where the script loads in worker processes)
    --workers on the argparse parser p."""
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:1, mps; None: CUDA if present, else MPS, else CPU")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="fp32",
                   help="fp32 (the seed); auto: bf16 autocast on a GPU with bf16 hardware "
                        "(compute capability >= 8: A100, RTX 30xx, H100), fp32 elsewhere; "
                        "bf16 on a CPU is fast only where it has native bf16 (AMX, "
                        "AVX512_BF16), and may change a few answers")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads; 0: the thread rule (train.py --help): the cores "
                        "idle at start, leaving a core another program keeps busy to it")
    if workers:
        p.add_argument("--workers", type=int, default=None,
                       help="DataLoader worker processes (0 = load in the main process); None: "
                            "on a GPU min(8, cores / 2), on a CPU the thread rule's (1 where "
                            "two cores are free, else 0)")


def check_decoding(p, args):
    """p.error (exit 2) for --batch-size or --max-pixels below 1, or a --beam check_beam
    refuses."""
    for name in ("batch_size", "max_pixels"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    check_beam(p, args.beam)


def check_beam(p, beam):
    """p.error (exit 2) for a beam no run can use: below 1, or above MAX_BEAM (batch x beam rows
    are decoded at once: --beam 100000 runs out of memory)."""
    if beam < 1:
        p.error(f"--beam must be >= 1, got {beam}")
    if beam > MAX_BEAM:
        p.error(f"--beam must be at most {MAX_BEAM}, got {beam}")
