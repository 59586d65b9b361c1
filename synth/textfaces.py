"""TrueType faces of the text-line generator, by the role they play (printed, plate, handwriting,
stamped, dot-matrix source), the held-out families of test_ood, and coverage: which characters
each face really draws; and the user's own font files (SYNTH_FONTS), for an alphabet the
bundled faces do not draw (Chinese, Cyrillic, ...)."""
import os
from functools import lru_cache

from PIL import Image, ImageDraw

from synth.fonts import (MPL_FAMILIES, _font_files, charmap, faces_of, fallback_font_files,
                         fontpkg_files, load_font, script_font_files)

# fontpkg-* families by role (installed ones only are used). A family may serve several roles.
ROLES = {
    "printed": ("roboto", "open-sans", "montserrat", "oswald", "fira-sans", "ibm-plex-mono",
                "roboto-slab", "pt-serif", "libre-baskerville", "archivo-black", "varela-round",
                "righteous", "roboto-condensed", "barlow-condensed", "saira-condensed",
                "rajdhani", "titan-one", "alfa-slab-one", "inconsolata", "share-tech",
                "dejavu-sans", "dejavu-sans-mono", "stix", "bitter", "exo-2", "josefin-sans",
                "space-mono", "dejavu-serif", "abril-fatface"),
    "plate": ("roboto-condensed", "oswald", "bebas-neue", "barlow-condensed", "saira-condensed",
              "teko", "rajdhani", "anton", "share-tech", "dejavu-sans", "dejavu-sans-mono",
              "roboto", "russo-one", "league-spartan", "chakra-petch"),
    "handwriting": ("caveat", "indie-flower", "shadows-into-light",
                    "lobster", "kalam", "dancing-script"),
    "stamped": ("black-ops-one", "dejavu-sans-mono", "ibm-plex-mono", "inconsolata",
                "roboto-slab", "roboto-condensed", "oswald", "archivo-black", "orbitron",
                "space-mono", "russo-one"),
    "dotmatrix": ("press-start-2p", "dejavu-sans-mono", "inconsolata", "ibm-plex-mono",
                  "space-mono"),
}
# Never drawn for train/val; the only families of test_ood (handwriting, serif, mono, display).
HELD_OUT_FAMILIES = frozenset({"kalam", "dancing-script", "bitter", "exo-2", "josefin-sans",
                               "space-mono", "dejavu-serif", "russo-one", "league-spartan",
                               "chakra-petch", "abril-fatface"})
# the user's own TrueType/OpenType files (os.pathsep-separated paths): each a family of the roles
# below, in both pools (a user's only face for a script cannot be held out from itself).
# An environment variable, so that rendering processes and train.py --synth-mix see it too.
FONTS_ENV = "SYNTH_FONTS"
USER_FONT_ROLES = ("printed", "plate", "stamped", "dotmatrix")
# A text with a character that no face of the pool draws (a Chinese plate's province) is drawn
# in these roles in the packaged script fonts that draw all of it (synth/fonts.py; the same on
# every machine), or where none does, in the machine's installed fonts that do, unless this
# variable is 0. Texts the pool draws never are, so their images do not depend on the machine.
SYSTEM_FONTS_ENV = "SYNTH_SYSTEM_FONTS"
COVER_SIZE = 28  # pixel size of the coverage test renders
MISSING = "\U0010fffd"  # a private-use code point no face maps: it draws the face's .notdef


def role_faces(role, held_out):
    """The (family, (path, weight)) faces of a role in the training pool or the held-out one,
    with the user's fonts as SYNTH_FONTS names them now."""
    return _role_faces(role, held_out, os.environ.get(FONTS_ENV, ""))


@lru_cache(maxsize=None)
def _role_faces(role, held_out, user_fonts):
    names = [n for n in ROLES[role] if (n in HELD_OUT_FAMILIES) == held_out]
    files = {fam: paths for fam, paths in _font_files().items()
             if fam in dict(MPL_FAMILIES).values()}
    files.update(fontpkg_files(names))
    out = []
    for name in names:
        for path in files.get(name, ()):
            out += [(name, face) for face in faces_of(path)]
    if role in USER_FONT_ROLES:
        for path in user_font_files(user_fonts):
            name = os.path.splitext(os.path.basename(path))[0]
            out += [(name, face) for face in faces_of(path)]
    return tuple(out)


def user_font_files(user_fonts=None):
    """The files SYNTH_FONTS names (or user_fonts, a value of it); ValueError naming one that is
    missing or no font."""
    if user_fonts is None:
        user_fonts = os.environ.get(FONTS_ENV, "")
    paths = [p for p in user_fonts.split(os.pathsep) if p]
    for path in paths:
        try:
            load_font(path, COVER_SIZE, None)
        except OSError as e:
            raise ValueError(f"{path} ({FONTS_ENV}): not a font file PIL can read ({e})") from None
    return paths


def all_families():
    return sorted({n for names in ROLES.values() for n in names})


@lru_cache(maxsize=None)
def _mask(path, ch):
    im = Image.new("L", (2 * COVER_SIZE, 2 * COVER_SIZE))
    font = load_font(path, COVER_SIZE, None)
    ImageDraw.Draw(im).text((COVER_SIZE // 2, COVER_SIZE // 2), ch, font=font, fill=255)
    return im.tobytes()


@lru_cache(maxsize=None)
def draws(path, ch):
    """True if the file draws `ch`: ink unlike its .notdef, and a lower-case letter unlike its
    capital (caps-only faces map both to one glyph, and the label would lie). Space: any face."""
    if ch == " ":
        return True
    mask = _mask(path, ch)
    if not mask.strip(b"\0") or mask == _mask(path, MISSING):
        return False
    if ch.upper() != ch and len(ch.upper()) == 1 and mask == _mask(path, ch.upper()):
        return False
    return True


def covering(role, held_out, text):
    """The faces (family, (path, weight)) of a role's pool that draw every character of text;
    where none does, the installed system fonts that do (roles of USER_FONT_ROLES only)."""
    faces = role_faces(role, held_out)
    keep = set(range(len(faces)))
    for c in set(text):
        keep &= _drawers(role, held_out, c, os.environ.get(FONTS_ENV, ""))
    if not keep and role in USER_FONT_ROLES and any(not pool_draws(c, held_out) for c in text):
        return list(system_faces(frozenset(text)))
    return [faces[i] for i in sorted(keep)]


def pool_draws(ch, held_out):
    """Whether some face of some role of the pool (bundled or SYNTH_FONTS) draws ch."""
    return _pool_draws(ch, held_out, os.environ.get(FONTS_ENV, ""))


@lru_cache(maxsize=None)
def _pool_draws(ch, held_out, user_fonts):
    return any(_drawers(role, held_out, ch, user_fonts) for role in ROLES)


def system_font_files():
    """The packaged script fonts, then the machine's installed ones, in a fixed order; none
    where SYNTH_SYSTEM_FONTS is 0."""
    if os.environ.get(SYSTEM_FONTS_ENV, "1") == "0":
        return ()
    return fallback_font_files()


@lru_cache(maxsize=4096)
def system_faces(chars):
    """(family, (path, weight)) of the fallback fonts that draw every one of chars (a frozenset):
    the faces of a text that no bundled or SYNTH_FONTS face draws, such as Chinese. The packaged
    ones where any draws it (a variable one at several weights), else the machine's."""
    need = sorted(c for c in chars if c != " ")
    packaged, machine = [], []
    for path in system_font_files():
        if all(ord(c) in charmap(path) for c in need) and all(draws(path, c) for c in need):
            name = os.path.splitext(os.path.basename(path))[0]
            into = packaged if path in script_font_files() else machine
            into += [(name, face) for face in faces_of(path)]
    return tuple(packaged or machine)


@lru_cache(maxsize=None)
def _drawers(role, held_out, ch, user_fonts):
    """Indices of the faces of role_faces(role, held_out) that draw ch (user_fonts: the
    SYNTH_FONTS the faces were listed with)."""
    faces = _role_faces(role, held_out, user_fonts)
    return frozenset(i for i, f in enumerate(faces) if draws(f[1][0], ch))


def describe(chars):
    """'x' (U+0078), ... for an error message."""
    return ", ".join(f"{c!r} (U+{ord(c):04X})" for c in chars)
