"""support/threads.py: torch's threads follow the free cores while a run goes (train.py between
steps and its loader workers between epochs, eval.py and predict.py between batches), read
from /proc; and a run whose threads changed mid-run still resumes bit for bit."""
import os
import subprocess
import sys
import time

import pytest
import torch

from support import devices, threads
import train
from helpers import write_split

TINY = ["--plan", "8 M 16", "--hidden", "16", "--image-size", "32", "--crop-size", "28",
        "--batch-size", "4", "--val-size", "4"]


class Machine:
    """A faked 2-core machine: `free` is what the start rule's /proc/stat look and every
    Follower window read; `flip` sets it to `then` after that many steps of this process."""

    def __init__(self):
        self.free = 1.0
        self.steps = 0
        self.flip = None
        self.then = None
        self.threads_set = []


@pytest.fixture
def machine(monkeypatch):
    fake = Machine()
    real_after_step = threads.Follower.after_step
    real_set = torch.set_num_threads

    def after_step(self):
        fake.steps += 1
        if fake.steps == fake.flip:
            fake.free = fake.then
        real_after_step(self)

    def set_threads(n):
        fake.threads_set.append(n)
        real_set(n)
    monkeypatch.setattr(devices, "cpu_cores", lambda: 2)
    monkeypatch.setattr(devices, "free_cores", lambda window=None: fake.free)
    monkeypatch.setattr(threads.Usage, "free_since", lambda self, before, processes=1: fake.free)
    monkeypatch.setattr(threads, "CHECK_SECONDS", 0.0)  # a check after every step
    monkeypatch.setattr(threads.Follower, "after_step", after_step)
    monkeypatch.setattr(torch, "set_num_threads", set_threads)
    before = torch.get_num_threads()
    yield fake
    real_set(before)


def test_threads_for_a_taken_and_a_freed_core():
    assert threads.threads_for(2.0, 2, 1) == 2  # the other core freed
    assert threads.threads_for(1.33, 2, 2) == 1  # a spinning program took one: 3 on 2 cores
    assert threads.threads_for(0.2, 4, 4) == 1  # never below one
    assert threads.threads_for(3.9, 2, 1) == 2  # never above the cores
    # between the two thresholds the count stays: a half-busy core flips nothing
    assert threads.threads_for(1.6, 2, 1) == 1
    assert threads.threads_for(1.6, 2, 2) == 2
    assert threads.threads_for(1.75, 2, 1) == 2
    assert threads.threads_for(1.45, 2, 2) == 1


def test_free_cores_are_idle_plus_own_over_the_window(monkeypatch):
    clock = {"wall": 0.0, "idle": 100.0, "own": 10.0}
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock["wall"])
    monkeypatch.setattr(threads, "idle_seconds", lambda allowed=None: clock["idle"])
    monkeypatch.setattr(threads, "own_seconds", lambda: clock["own"])
    before = threads.Usage(None)
    clock.update(wall=2.0, idle=101.0, own=12.0)  # 1 core-second idle, 2 used by this process
    after = threads.Usage(None)
    assert after.free_since(before) == pytest.approx(1.5)
    assert after.free_since(before, processes=2) == pytest.approx(1.25)  # idle shared
    clock.update(wall=2.0 + threads.MIN_SECONDS / 2)
    assert threads.Usage(None).free_since(after) is None  # too short to tell
    monkeypatch.setattr(threads, "idle_seconds", lambda allowed=None: None)  # no /proc/stat
    assert threads.Usage(None).free_since(before) is None


def test_this_machines_clocks_count_own_and_child_time():
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc (not Linux)")
    idle = threads.idle_seconds()
    assert idle is not None and idle > 0
    own = threads.own_seconds()
    end = time.process_time() + 0.2
    while time.process_time() < end:  # 0.2 s of CPU in this process
        pass
    assert threads.own_seconds() - own >= 0.15
    spin = "import time\nt = time.process_time() + 0.3\nwhile time.process_time() < t: pass\n" \
           "time.sleep(30)"
    own = threads.own_seconds()
    child = subprocess.Popen([sys.executable, "-c", spin])
    try:
        deadline = time.time() + 20
        while threads.children_seconds(os.getpid()) < 0.25 and time.time() < deadline:
            time.sleep(0.1)
        assert threads.children_seconds(os.getpid()) >= 0.25  # a live loader worker's time...
        assert threads.own_seconds() - own >= 0.25  # ...counted as this process's own
    finally:
        child.kill()
        child.wait()


def test_follower_changes_threads_between_steps(machine):
    torch.set_num_threads(1)
    follow = threads.follower("cpu")
    machine.free = 2.0  # the other core freed
    follow.after_step()
    assert torch.get_num_threads() == 2 and follow.workers(0) == 1
    machine.free = 1.3  # taken again
    follow.after_step()
    assert torch.get_num_threads() == 1 and follow.workers(1) == 0
    # --threads 1, or a GPU: nothing followed
    for fixed in (threads.follower("cpu", threads=1), threads.follower("cuda")):
        machine.free = 2.0
        fixed.after_step()
        assert torch.get_num_threads() == 1 and fixed.workers(0) == 0


def test_a_step_far_from_the_median_checks_at_once(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(threads.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(devices, "cpu_cores", lambda: 2)
    checks = []
    monkeypatch.setattr(threads.Follower, "check", lambda self: checks.append(now[0]))
    follow = threads.Follower(1)
    for _ in range(8):  # steady 0.1 s steps: no check within CHECK_SECONDS
        now[0] += 0.1
        follow.after_step()
    assert checks == []
    now[0] += 0.1 * threads.DEPART * 1.5  # a step 3x the median: a core was taken
    follow.after_step()
    assert len(checks) == 1


def test_eval_and_predict_batches_are_paced(machine):
    torch.set_num_threads(1)
    paced = threads.paced([1, 2, 3], "cpu")
    assert len(paced) == 3
    machine.free = 2.0
    assert list(paced) == [1, 2, 3] and torch.get_num_threads() == 2
    loader = [1, 2]
    assert threads.paced(loader, "cpu", threads=1) is loader  # --threads N: the loader as is


@pytest.fixture(scope="module")
def tiny_json(tmp_path_factory):
    numbers = [[(i * 7 + k * 3) % 10 for k in range(1 + i % 3)] for i in range(16)]
    root = tmp_path_factory.mktemp("tiny")
    return write_split(str(root), numbers=numbers, split="train", image_dir="train")


def test_a_run_whose_threads_changed_resumes_bitwise(machine, tiny_json, tmp_path, capsys):
    # one core free at start (1 thread, no loader worker); the other frees after step 2: 2
    # threads from step 3 on, a loader worker from epoch 2. The resumed run starts on 2 free
    # cores, as the uninterrupted one ran its second epoch. Dropout draws from the training
    # RNG, which rebuilding the loader must leave alone.
    common = ["--train-json", tiny_json, *TINY, "--threads", "0", "--dropout", "0.2",
              "--lr", "3e-3"]
    runs = {}
    for name, stops in (("straight", [2]), ("split", [1, 2])):
        machine.free, machine.steps, machine.flip, machine.then = 1.0, 0, 2, 2.0
        machine.threads_set.clear()
        for epochs in stops:
            resume = ["--resume", "auto"] if epochs == 2 and name == "split" else []
            out = tmp_path / name
            assert train.main([*common, "--out", str(out), "--epochs", str(epochs),
                               *resume]) == 0
        runs[name] = torch.load(tmp_path / name / "last.pt", weights_only=True)
        if name == "straight":
            assert machine.threads_set[:2] == [1, 2]  # the rule's 1 at start, then 2
            assert "2 threads: 1 loader workers from this epoch on" in capsys.readouterr().out
    a, b = runs["straight"], runs["split"]
    assert a["step"] == b["step"] == 6
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for k, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], b["optimizer"]["state"][k]["exp_avg"])
