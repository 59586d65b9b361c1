"""devices.py on a faked machine: which GPU each torchrun process takes, which GPUs have bf16."""
import os
import types

import pytest
import torch

from support import devices


@pytest.fixture
def gpus(monkeypatch):
    """A fake node: cuda:0 is a T4 (sm75, bf16 emulated only), cuda:1 an A100 (sm80);
    torch.cuda answers as it would there, emulation included."""
    capability = {0: (7, 5), 1: (8, 0)}
    current = [0]

    def index(device):
        device = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
        return current[0] if device.index is None else device.index

    def properties(device):
        major, minor = capability[index(device)]
        return types.SimpleNamespace(major=major, minor=minor)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(capability))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current[0])
    monkeypatch.setattr(torch.cuda, "get_device_properties", properties)
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)
    monkeypatch.setattr(torch.version, "hip", None)
    return capability


def test_bf16_only_where_native(gpus, monkeypatch):
    assert not devices.native_bf16("cuda:0")  # sm75: torch.cuda.is_bf16_supported() says True
    assert torch.cuda.is_bf16_supported()  # (the emulation the old check counted)
    assert devices.native_bf16("cuda:1")
    assert devices.native_bf16(torch.device("cuda", 1))
    assert not devices.native_bf16("cpu")
    assert not devices.native_bf16("mps")
    gpus[0] = (9, 0)  # an H100 as cuda:0
    assert devices.native_bf16("cuda")
    gpus[0] = (7, 0)
    monkeypatch.setattr(torch.version, "hip", "6.2")  # ROCm: bf16 on every supported GPU
    assert devices.native_bf16("cuda:0")


def test_native_bf16_asks_about_the_given_gpu_not_the_current_one(gpus):
    # eval.py --device cuda:1 on a node whose cuda:0 is older: the answer is cuda:1's
    assert torch.cuda.current_device() == 0
    assert devices.native_bf16("cuda:1") and not devices.native_bf16("cuda:0")


def test_plain_cuda_is_this_processs_gpu(gpus, monkeypatch):
    assert devices.choose_device("cuda") == torch.device("cuda", 0)  # no torchrun
    assert devices.choose_device(None) == torch.device("cuda", 0)
    assert devices.choose_device("cuda", local_rank=1, local_world=2) == torch.device("cuda", 1)
    assert devices.choose_device("cuda:1") == torch.device("cuda", 1)  # one process: as asked
    assert devices.choose_device("cpu", 1, 2) == torch.device("cpu")
    # a launcher that gives each of 4 processes one GPU (CUDA_VISIBLE_DEVICES per task):
    # each rank uses cuda:0, its only visible device (cuda:LOCAL_RANK: "invalid device ordinal")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for rank in range(4):
        chosen = devices.choose_device("cuda", local_rank=rank, local_world=4)
        assert chosen == torch.device("cuda", 0)


def test_ambiguous_gpu_choices_are_refused(gpus, monkeypatch):
    with pytest.raises(ValueError, match="would share cuda:1; pass --device cuda"):
        devices.choose_device("cuda:1", local_rank=0, local_world=2)  # every rank on one GPU
    with pytest.raises(ValueError, match="4 processes on this node but each sees 2 GPUs"):
        devices.choose_device("cuda", local_rank=3, local_world=4)


def test_default_device_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert devices.choose_device(None, 1, 2) == torch.device("cpu")


def test_check_device_is_one_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError) as e:
        devices.check_device(torch.device("cuda", 0))
    assert "\n" not in str(e.value) and str(e.value)
    assert devices.check_device(torch.device("cpu")) == torch.device("cpu")


def test_eval_auto_precision_is_bf16_only_on_native_gpus(gpus):
    assert devices.resolve_precision(torch.device("cuda", 1), "auto") == "bf16"
    # bf16 would be emulated on this one
    assert devices.resolve_precision(torch.device("cuda", 0), "auto") == "fp32"
    assert devices.resolve_precision(torch.device("cpu"), "auto") == "fp32"
    # asked for: honoured
    assert devices.resolve_precision(torch.device("cuda", 0), "bf16") == "bf16"


def test_bf16_asked_for_on_an_emulating_gpu_gets_a_note(gpus):
    note = devices.emulated_bf16_note("cuda:0", "bf16")
    assert note.startswith("note: cuda:0 (compute capability 7.5) has no bf16 hardware")
    assert devices.emulated_bf16_note("cuda:1", "bf16") is None  # sm80
    assert devices.emulated_bf16_note("cuda:0", "fp16") is None


# /proc/cpuinfo flags lines, cut to what matters, of three real CPUs
EPYC_GENOA = "fpu avx2 avx512f avx512bw avx512_vnni avx512_bf16 avx512_vpopcntdq"
SAPPHIRE_RAPIDS = "fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8"
ICE_LAKE = "fpu avx2 avx512f avx512bw avx512_vnni avx512_vbmi2"  # AVX-512 without bf16


def test_cpu_bf16_from_the_flags_not_from_avx512(tmp_path, monkeypatch):
    assert devices.cpu_bf16_isa(SAPPHIRE_RAPIDS.split()) == "amx"
    assert devices.cpu_bf16_isa(EPYC_GENOA.split()) == "avx512_bf16"
    assert devices.cpu_bf16_isa(ICE_LAKE.split()) is None
    assert devices.cpu_bf16_isa("fp asimd bf16 i8mm".split()) == "arm_bf16"
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {EPYC_GENOA}\n\n")
    assert "avx512_bf16" in devices.cpu_flags(str(info))
    assert devices.cpu_flags(str(tmp_path / "absent")) == set()
    for flags, noted in ((ICE_LAKE, True), (EPYC_GENOA, False), (SAPPHIRE_RAPIDS, False)):
        monkeypatch.setattr(devices, "cpu_flags", lambda flags=flags: set(flags.split()))
        note = devices.emulated_bf16_note("cpu", "bf16")
        assert (note is not None) == noted, flags
        assert devices.emulated_bf16_note("cpu", "fp32") is None
    monkeypatch.setattr(devices, "cpu_flags", lambda: set(ICE_LAKE.split()))
    assert "no bf16 instructions" in devices.emulated_bf16_note("cpu", "bf16")


def fake_stat(monkeypatch, samples, cpus=(0, 1)):
    """/proc/stat as two samples: per CPU (idle jiffies, busy jiffies) in each."""
    import builtins
    import io
    texts = []
    for sample in samples:
        lines = ["cpu  1 2 3 4 5 6 7 8"]
        for cpu, (idle, busy) in zip(cpus, sample):
            lines.append(f"cpu{cpu} {busy} 0 0 {idle} 0 0 0 0 0 0")
        texts.append("\n".join(lines) + "\n")
    real_open = builtins.open
    calls = iter(texts)

    def fake_open(path, *a, **k):
        if path == "/proc/stat":
            return io.StringIO(next(calls))
        return real_open(path, *a, **k)
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(devices.time, "sleep", lambda s: None)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(cpus), raising=False)


def test_thread_rule_leaves_a_busy_core_to_its_program(monkeypatch):
    # cpu0 busy all the window, cpu1 idle: one thread, no loader worker
    fake_stat(monkeypatch, [[(0, 0), (0, 0)], [(0, 100), (100, 0)]])
    assert devices.thread_rule() == (1, 0)
    # both idle: both cores, one loader worker (the default before the rule, on 2 cores)
    fake_stat(monkeypatch, [[(0, 0), (0, 0)], [(95, 5), (100, 0)]])
    assert devices.thread_rule() == (2, 1)
    # both busy: still one thread
    fake_stat(monkeypatch, [[(0, 0), (0, 0)], [(10, 90), (5, 95)]])
    assert devices.thread_rule() == (1, 0)
    # 2 processes on 2 free cores: one thread each
    fake_stat(monkeypatch, [[(0, 0), (0, 0)], [(100, 0), (100, 0)]])
    assert devices.thread_rule(processes=2) == (1, 1)


def test_free_cores_counts_only_the_cores_this_process_may_use(monkeypatch):
    # cpus 2 and 3 granted (taskset); cpu 3 half busy
    fake_stat(monkeypatch, [[(0, 0), (0, 0)], [(100, 0), (50, 50)]], cpus=(2, 3))
    assert devices.free_cores() == pytest.approx(1.5)
    real = devices.free_cores  # and on this machine it answers with a number of cores
    monkeypatch.undo()
    free = real(window=0.05)
    assert free is None or 0 <= free <= devices.cpu_cores() + 0.01


def test_meta_is_refused_with_one_line():
    with pytest.raises(ValueError, match="--device meta: meta is not a device"):
        devices.device_from_flag("meta")
