"""Reading by vote (model/vote.py): each checkpoint read alone and by votes of 3 to 11 copies.

    python -m bench.bench_vote RUNS_OR_CHECKPOINTS... [--json test.json] [--votes 1 3 5 7 11]

A path is a checkpoint (read on --json) or a folder that bench_finetune's --work filled: every
SET/VARIANT/last.pt (best.pt where there is one) in it is read on its SET/json/test.json. Each is
read through eval.py's own dataset, batches and decoding (eval.evaluate) once per vote, on one
thread unless --threads; the table gives whole-text accuracy and the points each vote adds, then
per set the mean gain, the smallest and images/s. Never part of the test suite.
"""
import argparse
import glob
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import eval as ev  # noqa: E402
from model.vote import MAX_VOTES  # noqa: E402

VOTES = (1, 3, 5, 7, 11)


def runs_in(path, test_json):
    """[(checkpoint, test JSON, set name)] of a checkpoint or a bench_finetune work folder."""
    if os.path.isfile(path):
        if not test_json:
            sys.exit(f"bench_vote.py: error: {path}: a checkpoint needs --json")
        return [(path, test_json, set_name(test_json))]
    found = []
    for last in sorted(glob.glob(os.path.join(path, "**", "last.pt"), recursive=True)):
        run = os.path.dirname(last)
        split = os.path.join(os.path.dirname(run), "json", "test.json")
        if not os.path.exists(split):
            continue
        best = os.path.join(run, "best.pt")
        found.append((best if os.path.exists(best) else last, split,
                      set_name(split)))
    if not found:
        sys.exit(f"bench_vote.py: error: {path}: no SET/VARIANT/last.pt beside SET/json/test.json")
    return found


def set_name(test_json):
    """A test split's set: its folder's name, or the folder above bench_finetune's json/."""
    folder = os.path.dirname(os.path.abspath(test_json))
    if os.path.basename(folder) == "json":
        folder = os.path.dirname(folder)
    return os.path.basename(folder)


def read(checkpoint, test_json, votes):
    """{vote: (whole-text accuracy, images/s)} of a checkpoint read by each of `votes`, and the
    number of images; the checkpoint and the split are opened once."""
    import torch
    from data import SVHNDataset, collate
    from formats.records import load_split
    from support import inference
    from support.tokenizer import tokenizer_from_vocab
    model, ckpt = inference.open_model(checkpoint, torch.device("cpu"))
    source = load_split(test_json)
    dataset = SVHNDataset.evaluation(source, tokenizer_from_vocab(list(ckpt["vocab"])),
                                     model.config)
    loader = torch.utils.data.DataLoader(dataset, batch_size=ev.BATCH_SIZE, collate_fn=collate)
    read_by = {}
    for vote in votes:
        start = time.perf_counter()
        res = ev.evaluate(model, loader, model.config, progress=False, votes=vote)
        seconds = time.perf_counter() - start
        read_by[vote] = (ev.sequence_accuracy(res["pred"], res["truth"]), len(dataset) / seconds)
    return read_by, len(dataset)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("paths", nargs="+", help="checkpoints, or bench_finetune --work folders")
    p.add_argument("--json", default=None, help="the test split of checkpoints given directly")
    p.add_argument("--votes", type=int, nargs="+", default=list(VOTES),
                   help=f"the votes to read by (1..{MAX_VOTES}; 1: the image alone)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)
    if any(not 1 <= v <= MAX_VOTES for v in args.votes):
        p.error(f"--votes must be in 1..{MAX_VOTES}")
    import torch
    torch.set_num_threads(args.threads)
    votes = sorted(set(args.votes) | {1})
    runs = [run for path in args.paths for run in runs_in(path, args.json)]
    print(f"{'run':58s} {'n':>5s} " + " ".join(f"{'x' + str(v):>7s}" for v in votes))
    gains, speeds = {}, {}
    for checkpoint, test_json, name in runs:
        read_by, n = read(checkpoint, test_json, votes)
        alone = read_by[1][0]
        cells = [f"{100 * alone:6.1f}%"] + [f"{100 * (read_by[v][0] - alone):+6.1f}" for v in
                                             votes[1:]]
        print(f"{os.path.relpath(checkpoint)[-58:]:58s} {n:5d} " + " ".join(cells), flush=True)
        for v in votes:
            gains.setdefault(name, {}).setdefault(v, []).append(read_by[v][0] - alone)
            speeds.setdefault(name, {}).setdefault(v, []).append(read_by[v][1])
    print("\nper set: mean gain in points (smallest), median images/s on this machine")
    for name, by_vote in gains.items():
        cells = [f"x{v} {100 * statistics.mean(g):+.1f} ({100 * min(g):+.1f}) "
                 f"{statistics.median(speeds[name][v]):.0f}/s" for v, g in by_vote.items()]
        print(f"{name} ({len(by_vote[1])} runs): " + "; ".join(cells))


if __name__ == "__main__":
    main()
