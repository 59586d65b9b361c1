"""support/figtext.py: a figure's titles draw characters matplotlib's own face lacks with an
installed font that has them, and name once the ones no installed font draws, instead of a
warning per glyph."""
import os
import warnings

import matplotlib
import pytest
import torch

import eval as ev
from support import figtext
from synth.fonts import charmap

TTF = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")


@pytest.fixture
def installed(monkeypatch):
    """Stands in for the system's font files: set the list the test needs."""
    files = []
    monkeypatch.setattr(figtext, "fallback_font_files", lambda: tuple(files))
    return files


def test_latin_text_needs_no_other_font(installed):
    installed.append(os.path.join(TTF, "STIXGeneral.ttf"))
    assert figtext.families_for(["AB 12.5", "Жж"]) == (["DejaVu Sans"], "")


def test_a_character_dejavu_lacks_takes_an_installed_font_that_has_it(installed):
    stix = os.path.join(TTF, "STIXGeneral.ttf")
    extra = sorted(charmap(stix) - charmap(os.path.join(TTF, "DejaVuSans.ttf")))
    char = next(chr(c) for c in extra if chr(c).isprintable() and not chr(c).isspace())
    assert figtext.families_for(["A" + char]) == (["DejaVu Sans"], char)  # nothing installed
    installed.append(stix)
    assert figtext.families_for(["A" + char]) == (["DejaVu Sans", "STIXGeneral"], "")


def test_gallery_names_undrawable_characters_once_without_glyph_warnings(installed, tmp_path,
                                                                         capfd):
    dataset = [(torch.rand(3, 16, 48),), (torch.rand(3, 16, 48),)]
    mistakes = [{"index": 0, "prediction": "皖A123", "truth": "沪A123", "probability": 0.4},
                {"index": 1, "prediction": "", "truth": "皖B77", "probability": 0.2}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 'Glyph ... missing' warning fails the test
        ev.plot_mistakes(dataset, mistakes, str(tmp_path / "mistakes.png"))
    err = capfd.readouterr().err
    assert err.count("no installed font draws") == 1 and "'沪皖'" in err, err
    assert (tmp_path / "mistakes.png").stat().st_size > 0


def test_chinese_titles_take_the_packaged_noto_faces():
    # requirements.txt installs Noto Sans SC and its kin, so a fresh clone's figures draw a
    # Chinese plate's province instead of a box
    from synth import fonts
    if not fonts.script_font_files():
        pytest.skip("justmytype-intl-cjk is not installed")
    families, missing = figtext.families_for(["皖A12345", "鲁B0000"])
    assert missing == "" and any(f.startswith("Noto Sans") for f in families[1:]), families
