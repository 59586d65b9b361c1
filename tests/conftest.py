"""Shared test fixtures: the repository on sys.path and the real SVHN sample (when present)."""
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
