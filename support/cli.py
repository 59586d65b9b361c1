"""The command-line flags eval.py, play.py and predict.py share: where and how a model decodes
(--device, --precision, --threads, --workers), the beam's limit and the vote (--votes)."""
from model.vote import MAX_VOTES

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


def add_vote_flag(p):
    """--votes on the argparse parser p (model.vote; check_votes checks it)."""
    p.add_argument("--votes", type=int, default=None,
                   help=f"read each image as this many copies, shifted by a pixel or two and "
                        f"rescaled by a few percent, and keep the text they read most surely "
                        f"(1..{MAX_VOTES}; 1: the image alone); None: the checkpoint's own "
                        f"(1 for the seed's and the shipped models; train.py --votes, which "
                        f"fine-tuning a line reader sets: README \"Reading by vote\")")


def check_decoding(p, args):
    """p.error (exit 2) for --batch-size or --max-pixels below 1, or a --beam or --votes that
    check_beam or check_votes refuses."""
    for name in ("batch_size", "max_pixels"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    check_beam(p, args.beam)
    check_votes(p, args.votes)


def check_votes(p, votes):
    """p.error (exit 2) for a --votes outside 1..MAX_VOTES (None, the checkpoint's, passes)."""
    if votes is not None and not 1 <= votes <= MAX_VOTES:
        p.error(f"--votes must be in 1..{MAX_VOTES}, got {votes}")


def check_beam(p, beam):
    """p.error (exit 2) for a beam no run can use: below 1, or above MAX_BEAM (batch x beam rows
    are decoded at once: --beam 100000 runs out of memory)."""
    if beam < 1:
        p.error(f"--beam must be >= 1, got {beam}")
    if beam > MAX_BEAM:
        p.error(f"--beam must be at most {MAX_BEAM}, got {beam}")
