"""Shared test fixtures: the repository on sys.path, the real SVHN sample (when present), and
the text generator without this machine's own fonts."""
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# The official digitStruct.mat cut to 39 entries plus 3 images. It lives outside the repository
# (a user's clone has no ../shared), so tests that need it skip cleanly without it.
SAMPLE_DIR = os.path.join(REPO, "..", "shared", "svhn-sample", "train")


@pytest.fixture
def sample_dir():
    if not os.path.exists(os.path.join(SAMPLE_DIR, "digitStruct.mat")):
        pytest.skip("real SVHN sample not found at ../shared/svhn-sample/train")
    return SAMPLE_DIR


@pytest.fixture
def no_system_fonts(monkeypatch):
    """The text generator sees none of the machine's installed fonts (a Chinese one would draw
    what a test means to be undrawable); its cache cleared before and after."""
    from synth import textfaces
    monkeypatch.setattr(textfaces, "system_font_files", lambda: ())
    textfaces.system_faces.cache_clear()
    yield
    textfaces.system_faces.cache_clear()
