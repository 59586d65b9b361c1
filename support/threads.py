"""The thread rule re-checked while a run goes: torch's CPU threads follow the cores that other
programs leave free, changed between steps; the loader workers they imply follow between epochs.

support/devices.thread_rule looks once, at start. A program that starts or ends later would
otherwise keep two threads fighting over one core (4x slower) or leave a freed core idle.

How the load is read, and why: over the window since the last check, the cores this process may
use were idle for I core-seconds (/proc/stat) and this process and its loader workers used U
(getrusage and /proc/PID/stat). The rest went to other programs, so this process may count on
(I + U) / window cores. Neither half works alone, nor does the load average. os.getloadavg is
the kernel's exponential average over a minute, sampled every 5 s: it lags a change by tens of
seconds. /proc/stat's idle alone reads 0 whenever our own threads fill the cores, so it cannot
tell our load from another program's (measured, a one-thread matrix loop on one shared core,
2 s windows: idle 0.00 with and without a spinning process beside it). CPU time / wall time
alone fell when the spinner came (0.25 -> 0.13 there) but cannot see a freed core: with one
thread it stays at most 1 whether the other core is busy or idle.
"""
import os
import resource
import statistics
import time
from collections import deque

import torch

from support import devices

CHECK_SECONDS = 3.0  # a check every this many seconds of steps: /proc reads cost ~0.2 ms
MIN_SECONDS = 0.5  # a shorter window is mostly tick rounding (/proc/stat counts 10 ms ticks)
DEPART = 2.0  # a step this many times slower or faster than the recent median: check now
RECENT = 16  # steps in that median
UP_AT = 0.7  # a further thread once this share of a further core is free...
DOWN_BELOW = 0.5  # ...and one thread less once less than this share of its core is left
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc's time unit


def idle_seconds(allowed=None):
    """Idle (+ iowait) seconds of the cores in `allowed` (all where None) since boot, from
    /proc/stat; None where it cannot be read (not Linux)."""
    total = 0
    try:
        with open("/proc/stat") as f:
            for line in f:
                name, *fields = line.split()
                if not name.startswith("cpu") or name == "cpu":
                    continue
                if allowed is None or int(name[3:]) in allowed:
                    total += int(fields[3]) + int(fields[4])
    except (OSError, ValueError, IndexError):
        return None
    return total / TICK


def children_seconds(pid):
    """CPU seconds used so far by the live child processes of `pid` (the loader workers), from
    /proc; 0 where the system does not tell."""
    seconds = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids = f.read().split()
        except OSError:
            continue
        for kid in kids:
            try:
                with open(f"/proc/{kid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()  # the name may hold spaces
            except (OSError, IndexError):
                continue  # ended meanwhile: getrusage's RUSAGE_CHILDREN counts it once reaped
            seconds += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return seconds / TICK


def own_seconds():
    """CPU seconds used by this process, its finished children and its live ones."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = me.ru_utime + me.ru_stime + done.ru_utime + done.ru_stime
    return used + children_seconds(os.getpid())


class Usage:
    """One reading of the clocks that free cores are measured between."""

    def __init__(self, allowed):
        self.wall = time.monotonic()
        self.idle = idle_seconds(allowed)
        self.own = own_seconds()

    def free_since(self, before, processes=1):
        """Cores this process may count on over the window from `before` to this reading: what
        stood idle (shared between the node's `processes`) plus what it used itself; None where
        /proc/stat cannot be read or the window is too short to tell."""
        window = self.wall - before.wall
        if self.idle is None or before.idle is None or window < MIN_SECONDS:
            return None
        idle = max(0.0, self.idle - before.idle)
        own = max(0.0, self.own - before.own)
        return (idle / processes + own) / window


def threads_for(free, cores, current):
    """Threads for `free` cores (this process's share) now that it runs `current`: one more per
    further core free for at least UP_AT of the time, one less per core of which less than
    DOWN_BELOW is left; within 1 and `cores`. Two thresholds, so that a core another program
    half uses does not flip the count at every check."""
    target = current
    while target < cores and free >= target + UP_AT:
        target += 1
    while target > 1 and free < target - 1 + DOWN_BELOW:
        target -= 1
    return target


class Follower:
    """torch's threads kept in line with the free cores while a loop runs: call after_step()
    between steps (cheap: a clock read; every CHECK_SECONDS, or at once when a step's time
    departs DEPART-fold from the recent median, a check reads /proc); check() re-checks now
    (train.py: at every epoch). workers(): the loader workers the threads imply (the thread
    rule's: one where two cores are free), for the caller to apply between epochs.

    Where the threads or workers were given (--threads N, or not a CPU) it changes nothing."""

    def __init__(self, threads, processes=1, follow=True):
        self.threads = threads
        self.processes = processes
        self.follow = follow
        self.allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        self.cores = max(1, devices.cpu_cores() // processes)
        self.steps = deque(maxlen=RECENT)
        self.changes = []  # (seconds since start, threads): what was chosen and when
        self.started = time.monotonic()
        self.mark = Usage(self.allowed) if follow else None
        self.step_start = time.monotonic()

    def after_step(self):
        """Between two steps: the step's time noted; a check where one is due."""
        if not self.follow:
            return
        now = time.monotonic()
        seconds = now - self.step_start
        self.step_start = now
        departed = False
        if len(self.steps) >= 4:
            median = statistics.median(self.steps)
            departed = seconds > DEPART * median or seconds * DEPART < median
        self.steps.append(seconds)
        if departed or now - self.mark.wall >= CHECK_SECONDS:
            self.check()

    def check(self):
        """Re-check the free cores over the window since the last check and set torch's
        threads to match; returns the threads."""
        if not self.follow:
            return self.threads
        now = Usage(self.allowed)
        free = now.free_since(self.mark, self.processes)
        self.step_start = time.monotonic()  # the check's own time is no step's
        if free is None:  # too short a window to tell: keep the mark, try again later
            return self.threads
        self.mark = now
        threads = threads_for(free, self.cores, self.threads)
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads
            self.steps.clear()  # the old steps' times no longer describe this thread count
            self.changes.append((round(now.wall - self.started, 1), threads))
        return self.threads

    def workers(self, current):
        """The loader workers for the next epoch: the thread rule's (one where this process's
        share of free cores, over the node's processes, reaches two, else none); `current` where
        the threads are not followed."""
        if not self.follow:
            return current
        return 1 if self.threads * self.processes >= 2 else 0


def follower(device, threads=0, processes=1):
    """The Follower of a script's --threads on `device`: following (from torch's current thread
    count, set by the thread rule) only on a CPU with --threads 0."""
    follow = torch.device(device).type == "cpu" and not threads
    return Follower(torch.get_num_threads(), processes, follow=follow)


class Paced:
    """A loader whose batches come with a Follower's check between them (eval.py, predict.py):
    `for batch in Paced(loader, follower)`, with len() as the loader's."""

    def __init__(self, loader, follow):
        self.loader = loader
        self.follow = follow

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield batch
            self.follow.after_step()


def paced(loader, device, threads=0):
    """`loader` with its batches paced by a Follower where the threads follow the load (a CPU,
    --threads 0); the loader itself elsewhere."""
    follow = follower(device, threads)
    if not follow.follow:
        return loader
    return Paced(loader, follow)
