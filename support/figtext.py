"""Fonts for the texts a figure shows. matplotlib's own face (DejaVu Sans) draws Latin, Greek and
Cyrillic; a title with other characters (a Chinese plate's province) takes, behind it, the
packaged and installed fonts that draw them (synth/fonts.fallback_font_files), and the
characters no such font draws are named once instead of matplotlib's warning per glyph."""
import contextlib
import functools
import logging
import sys
import warnings

from synth.fonts import charmap, fallback_font_files

DEFAULT = "DejaVu Sans"


def families_for(texts):
    """(font families, characters none draws): DejaVu Sans, then one fallback font for each
    character it lacks, for matplotlib's per-glyph fallback (fontfamily=families)."""
    from matplotlib import font_manager
    wanted = {ord(c) for t in texts for c in t if not c.isspace()}
    missing = wanted - charmap(font_manager.findfont(DEFAULT))
    families = [DEFAULT]
    for path in fallback_font_files():
        if not missing:
            break
        drawn = missing & charmap(path)
        if drawn:
            name = _registered(path)
            if name not in families:
                families.append(name)
            missing -= drawn
    return families, "".join(sorted(chr(c) for c in missing))


@functools.lru_cache(maxsize=None)
def _registered(path):
    """The family name of a font file, added to matplotlib's fonts once per process."""
    from matplotlib import font_manager
    font_manager.fontManager.addfont(path)
    return font_manager.FontProperties(fname=path).get_name()


def title_font(texts, who):
    """fontfamily= for titles showing texts; prints once to stderr which characters no
    installed font draws (they show as boxes), naming the script `who`."""
    families, missing = families_for(texts)
    if missing:
        print(f"{who}: no installed font draws {missing!r}: the figure shows them as boxes "
              "(install a font that does; Chinese, Japanese and Korean come with setup.sh)",
              file=sys.stderr)
    return families


@contextlib.contextmanager
def quiet_glyphs():
    """Within: matplotlib's 'Glyph ... missing from font(s)' warnings are silent (title_font
    named those characters once), and so is its note on a fallback font's nearest weight."""
    log = logging.getLogger("matplotlib.font_manager")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from")
            yield
    finally:
        log.setLevel(level)
