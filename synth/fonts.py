"""TrueType digit faces for the synthetic generator: the font files found here (matplotlib's
own and the fontpkg-* packages), the faces that draw ten distinct lining digits, and their
glyph masks, rendered once and cached; and the fonts for other scripts (the packaged ones of
requirements.txt, then the machine's) with the code points each maps: the text generator's and
the figures' fallback."""
import importlib.util
import os
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

GLYPH_REF = 96  # TrueType size at which glyph masks are rendered once and cached

# TrueType families from fontpkg-* packages (OFL-1.1, listed in requirements.txt): the package
# names without the prefix. Families missing on this machine are skipped.
FONTPKG_FAMILIES = (
    "roboto", "roboto-condensed", "open-sans", "montserrat", "oswald", "bebas-neue",
    "barlow-condensed", "fira-sans", "ibm-plex-mono", "roboto-slab", "pt-serif", "anton",
    "archivo-black", "teko", "rajdhani", "permanent-marker", "orbitron",
    "saira-condensed", "black-ops-one", "press-start-2p", "righteous", "varela-round",
    "titan-one", "libre-baskerville", "alfa-slab-one", "luckiest-guy", "lobster",
    "cinzel", "bitter", "kalam", "russo-one", "space-mono", "league-spartan", "chakra-petch",
    "josefin-sans", "abril-fatface", "exo-2",
)
# Packages of openly licensed (OFL-1.1) fonts for scripts the fontpkg faces lack, installed from
# requirements.txt like them: justmytype-intl-cjk holds Noto Sans SC, TC, JP and KR, so Chinese,
# Japanese and Korean draw on every machine set up by setup.sh. Missing packages are skipped.
SCRIPT_FONT_PACKAGES = ("justmytype_intl_cjk",)
# matplotlib's bundled files, grouped into families by file-name prefix (longest match first).
MPL_FAMILIES = (("DejaVuSansMono", "dejavu-sans-mono"), ("DejaVuSans", "dejavu-sans"),
                ("DejaVuSerif", "dejavu-serif"), ("STIXGeneral", "stix"), ("cm", "computer-modern"))


@lru_cache(maxsize=None)
def load_font(path, size, weight):
    """A FreeTypeFont at `size` pixels; a variable font set to `weight` (None: one face)."""
    font = ImageFont.truetype(path, size)
    if weight is not None:  # a variable font: set its weight axis, others at their defaults
        values = []
        for axis in font.get_variation_axes():
            name = axis["name"]
            name = name.decode("ascii", "replace") if isinstance(name, bytes) else name
            is_weight = name.strip().lower() in ("weight", "wght")
            clipped = min(max(weight, axis["minimum"]), axis["maximum"])
            values.append(float(clipped if is_weight else axis["default"]))
        font.set_variation_by_axes(values)
    return font


@lru_cache(maxsize=16384)
def glyph(face, ch):
    """Ink-cropped 'L' mask of one character at the reference size, with its top offset."""
    path, weight = face
    im = Image.new("L", (GLYPH_REF * 2, GLYPH_REF * 2))
    font = load_font(path, GLYPH_REF, weight)
    ImageDraw.Draw(im).text((GLYPH_REF // 4, GLYPH_REF // 4), ch, font=font, fill=255)
    box = im.getbbox()
    if box is None:
        return None
    mask = im.crop(box)
    mask.info["top"] = box[1]  # offset from the drawing origin keeps baselines aligned
    return mask


def _good_face(face):
    """Ten distinct lining digits (no old-style figures, no missing-glyph boxes)."""
    masks = [glyph(face, ch) for ch in "0123456789"]
    if any(m is None for m in masks) or len({m.tobytes() for m in masks}) < 10:
        return False
    heights = [m.size[1] for m in masks]
    return max(heights) <= 1.12 * min(heights)


def _font_files():
    """{family: [ttf paths]} from matplotlib and from the fontpkg packages installed here."""
    import matplotlib
    folder = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    files = {}
    for name in sorted(os.listdir(folder)):
        family = next((fam for prefix, fam in MPL_FAMILIES if name.startswith(prefix)), None)
        if family and name.endswith(".ttf") and "Display" not in name:
            files.setdefault(family, []).append(os.path.join(folder, name))
    files.update(fontpkg_files(FONTPKG_FAMILIES))
    return files


def fontpkg_files(families):
    """{family: [ttf paths]} of those fontpkg-* families that are installed here."""
    files = {}
    for family in families:
        spec = importlib.util.find_spec("fontpkg_" + family.replace("-", "_"))
        if spec is None or not spec.submodule_search_locations:
            continue
        sub = os.path.join(list(spec.submodule_search_locations)[0], "files")
        if os.path.isdir(sub):
            paths = [os.path.join(sub, n) for n in sorted(os.listdir(sub)) if n.endswith(".ttf")]
            files[family] = paths
    return files


def faces_of(path):
    """The faces of one file as (path, weight): four weights of a variable font, else one."""
    axes = []
    try:
        axes = ImageFont.truetype(path, 12).get_variation_axes()
    except (OSError, ValueError):
        pass  # not a variable font (or FreeType without variations): one face
    weights = [None]
    if any(str(a["name"]).lower().find("weight") >= 0 for a in axes):
        weights = [300, 450, 700, 900]
    return [(path, w) for w in weights]


@lru_cache(maxsize=None)
def font_families():
    """{family: ((path, weight), ...)} of usable faces; a variable font gives several weights."""
    found = {}
    for family, paths in _font_files().items():
        faces = []
        for path in paths:
            faces += [face for face in faces_of(path) if _good_face(face)]
        if faces:
            found[family] = tuple(faces)
    if not found:
        raise RuntimeError("synthetic.py: no usable digit font found")
    return found


def fonts():
    """All usable TrueType faces as (path, weight) pairs."""
    return tuple(face for faces in font_families().values() for face in faces)


@lru_cache(maxsize=None)
def script_font_files():
    """The font files of the SCRIPT_FONT_PACKAGES installed here, in a fixed order."""
    files = []
    for package in SCRIPT_FONT_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder, _, names in sorted(os.walk(list(spec.submodule_search_locations)[0])):
            files += [os.path.join(folder, n) for n in sorted(names)
                      if n.lower().endswith((".ttf", ".otf"))]
    return tuple(files)


def fallback_font_files():
    """The fonts for characters no bundled face draws: the packaged script fonts, then the
    machine's installed ones."""
    return script_font_files() + installed_font_files()


@lru_cache(maxsize=None)
def installed_font_files():
    """The font files installed on this machine (fontconfig's folders, as matplotlib lists them),
    in a fixed order."""
    from matplotlib import font_manager
    return tuple(sorted(font_manager.findSystemFonts()))


@lru_cache(maxsize=None)
def charmap(path):
    """The code points a font file maps (an unreadable file: none)."""
    from matplotlib import ft2font
    try:
        return frozenset(ft2font.FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()
