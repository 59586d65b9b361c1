"""train.py under torchrun as if each rank ran on its own node, for tests/test_train.py.

    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_node.py DIR0 DIR1 -- ARGS...

Rank r works in folder DIR<r>, so a relative --out is a node-local disk: the same path, other
files. Each rank also records, in DIR<r>/rank.pt, its BatchNorm buffers at every validation and
its own (not yet averaged) training losses.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from training import engine  # noqa: E402
import train  # noqa: E402

rank = int(os.environ["RANK"])
split = sys.argv.index("--")
os.chdir(sys.argv[1 + rank])
record = {"buffers": [], "losses": []}


def save():
    torch.save(record, "rank.pt.tmp")
    os.replace("rank.pt.tmp", "rank.pt")


real_validate = engine.validate
real_read_back = engine.read_back


def validate(model, *args, **kwargs):
    record["buffers"].append({k: v.clone() for k, v in model.named_buffers()})
    save()
    return real_validate(model, *args, **kwargs)


def read_back(pending, *args):
    record["losses"] += [row[3].item() for row in pending]
    save()
    return real_read_back(pending, *args)


engine.validate = validate
engine.read_back = read_back
sys.exit(train.main(sys.argv[split + 1:]))
