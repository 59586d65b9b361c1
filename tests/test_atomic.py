"""atomic.py: an output appears whole or not at all, and a failed write leaves no temp behind."""
import os

import pytest

from support.atomic import atomic_open, replacing, save_figure


def test_write_replaces_and_leaves_no_temp(tmp_path):
    path = str(tmp_path / "out.json")
    with atomic_open(path, "w") as f:
        f.write("new")
        assert not os.path.exists(path)  # nothing at the real name until the write is complete
    assert open(path).read() == "new"
    assert os.listdir(tmp_path) == ["out.json"]


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path):
    path = str(tmp_path / "out.bin")
    with open(path, "wb") as f:
        f.write(b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(path, "wb") as f:
            f.write(b"half of the new")
            raise RuntimeError("disk full")
    assert open(path, "rb").read() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]
    with pytest.raises(RuntimeError):
        with replacing(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"x")
            raise RuntimeError("killed")
    assert open(path, "rb").read() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_target_is_a_folder(tmp_path):
    folder = tmp_path / "figs"
    folder.mkdir()
    with pytest.raises(OSError):
        with atomic_open(str(folder), "w") as f:
            f.write("x")
    assert sorted(os.listdir(tmp_path)) == ["figs"]


def test_save_figure_format_from_extension(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [1, 0])
    save_figure(fig, str(tmp_path / "a.png"))
    save_figure(fig, str(tmp_path / "a.pdf"))
    save_figure(fig, str(tmp_path / "noext"))
    save_figure(fig, str(tmp_path / "forced.pdf"), format="png")
    plt.close(fig)
    assert open(tmp_path / "a.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert open(tmp_path / "a.pdf", "rb").read(5) == b"%PDF-"
    assert open(tmp_path / "noext", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert open(tmp_path / "forced.pdf", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_every_tracked_figure_is_one_the_scripts_may_replace():
    # demo.sh and the scripts redraw img/*.png in place; a figure without the mark is refused as
    # "not a figure this repository drew", which stopped ./demo.sh on a fresh clone
    import glob
    from PIL import Image
    from support.atomic import FIGURE_MARK
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    figures = sorted(glob.glob(os.path.join(repo, "img", "**", "*.png"), recursive=True))
    assert figures
    for path in figures:
        with Image.open(path) as img:
            assert img.info.get("Software", "").startswith(FIGURE_MARK), path
