"""Texts for synthetic lines of any alphabet: `sample_text` draws the kinds of text users bring
(digit strings, meter readings, amounts, dates, codes, plate-like patterns, pseudo-words, random
strings) and keeps only those the alphabet can write, so every character of it appears often."""
import string

DEFAULT_ALPHABET = (string.digits + string.ascii_uppercase + string.ascii_lowercase
                    + " .,:;-/+#%&()'!?*$@=")
ALPHABETS = {"DEFAULT": DEFAULT_ALPHABET, "DIGITS": string.digits,
             "UPPER": string.digits + string.ascii_uppercase}
# (kind, weight): the random kind keeps rare characters frequent; the others look like real text
KINDS = (("digits", 0.12), ("meter", 0.1), ("amount", 0.08), ("date", 0.06), ("code", 0.1),
         ("plate", 0.08), ("word", 0.16), ("random", 0.3))
CONSONANTS = "bcdfghjklmnprstvwz"
VOWELS = "aeiouy"
PLATE_PATTERNS = ("LLL NNNN", "LL-NNN-LL", "NN LLL NN", "LNN LLL", "LLNN LLL", "NLLL NNN",
                  "LL NNNNN", "NNN-LLL")
DATE_PATTERNS = ("DD/MM/YYYY", "YYYY-MM-DD", "DD.MM.YY", "MM/DD/YY", "DD-MM-YYYY")
TRIES = 12  # kinds tried before a random string, which every alphabet can write


def parse_alphabet(value):
    """--alphabet: a name of ALPHABETS or the characters themselves (duplicates dropped, order
    kept). ValueError for one that cannot write a text (empty, or only spaces)."""
    chars = ALPHABETS.get(value, value)
    chars = "".join(dict.fromkeys(chars))
    if not chars.strip():
        raise ValueError(f"alphabet {value!r} has no character besides spaces")
    bad = [c for c in chars if not c.isprintable()]
    if bad:
        raise ValueError(f"alphabet holds unprintable characters {bad!r}")
    return chars


def sample_text(rng, alphabet, min_len, max_len):
    """A text of min_len..max_len characters, all from `alphabet`; a space only between others."""
    if not 1 <= min_len <= max_len:
        raise ValueError(f"lengths must satisfy 1 <= min_len <= max_len, got {min_len}, {max_len}")
    names = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    total = sum(weights)
    allowed = set(alphabet)
    for _ in range(TRIES):
        kind = names[_index(rng, [w / total for w in weights])]
        text = _KIND[kind](rng, alphabet, min_len, max_len)
        if text and min_len <= len(text) <= max_len and set(text) <= allowed:
            return text
    return _random(rng, alphabet, min_len, max_len)


def _index(rng, p):
    u = rng.random()
    for i, q in enumerate(p):
        u -= q
        if u < 0:
            return i
    return len(p) - 1


def _length(rng, min_len, max_len):
    return int(rng.integers(min_len, max_len + 1))


def _pick(rng, chars):
    return chars[int(rng.integers(len(chars)))]


def _random(rng, alphabet, min_len, max_len):
    """Uniform characters; spaces only inside, never two in a row."""
    n = _length(rng, min_len, max_len)
    solid = [c for c in alphabet if c != " "]
    out = []
    for i in range(n):
        pool = alphabet if 0 < i < n - 1 and out[-1] != " " else solid
        out.append(_pick(rng, pool))
    return "".join(out)


def _digits(rng, alphabet, min_len, max_len):
    return "".join(_pick(rng, string.digits) for _ in range(_length(rng, min_len, max_len)))


def meter_reading(rng, alphabet, min_len, max_len):
    """A reading such as 0064.40 or 12.5 (min_len..max_len digits, at least 2, and a point):
    leading zeros are common on counters. The alphabet is not consulted (sample_text checks)."""
    n = _length(rng, max(min_len, 2), max(max_len, 2))
    whole = "".join(_pick(rng, string.digits) for _ in range(n))
    point = int(rng.integers(1, n)) if n > 1 else 1
    return whole[:point] + "." + whole[point:]


def amount(rng, alphabet, min_len, max_len):
    """1,234.56 or 12.00 or $8.99; the thousands separator only above 999. The alphabet and
    lengths are not consulted (sample_text checks)."""
    value = int(10 ** rng.uniform(0, 7))
    text = f"{value:,}" if rng.random() < 0.7 else str(value)
    if rng.random() < 0.8:
        text += "." + "".join(_pick(rng, string.digits) for _ in range(2))
    if rng.random() < 0.2:
        text = _pick(rng, "$$#") + text
    return text


def _date(rng, alphabet, min_len, max_len):
    pattern = _pick(rng, DATE_PATTERNS)
    day = f"{int(rng.integers(1, 32)):02d}"
    month = f"{int(rng.integers(1, 13)):02d}"
    year = str(int(rng.integers(1950, 2040)))
    return (pattern.replace("YYYY", year).replace("YY", year[2:]).replace("DD", day)
            .replace("MM", month))


def _letters(alphabet):
    """The alphabet's letters (any script), without digits, punctuation or space."""
    return [c for c in alphabet if c.isalpha()]


def _code(rng, alphabet, min_len, max_len):
    """Letters and digits as on parts and labels: AB12X7, sometimes with one dash."""
    letters = [c for c in _letters(alphabet) if not c.islower()] or _letters(alphabet)
    digits = [c for c in alphabet if c.isdigit()]
    if not letters or not digits:
        return ""
    n = _length(rng, min_len, max_len)
    text = "".join(_pick(rng, letters if rng.random() < 0.5 else digits) for _ in range(n))
    if n >= 5 and rng.random() < 0.3:
        cut = int(rng.integers(2, n - 2))
        text = text[:cut] + "-" + text[cut + 1:]
    return text


def _plate(rng, alphabet, min_len, max_len):
    """L: a letter, N: a digit; the space becomes a dash or nothing where the alphabet has none."""
    letters = [c for c in _letters(alphabet) if not c.islower()] or _letters(alphabet)
    if not letters:
        return ""
    out = []
    for c in _pick(rng, PLATE_PATTERNS):
        if c == "L":
            c = _pick(rng, letters)
        elif c == "N":
            c = _pick(rng, string.digits)
        elif c == " " and " " not in alphabet:
            c = "-" if "-" in alphabet and rng.random() < 0.5 else ""
        out.append(c)
    return "".join(out)


def _word(rng, alphabet, min_len, max_len):
    """Pronounceable pseudo-words in lower, upper or title case, separated by spaces."""
    n = _length(rng, min_len, max_len)
    case = _pick(rng, "lut")
    words = []
    while sum(len(w) + 1 for w in words) < n:
        size = int(rng.integers(1, 5))
        syllables = [_pick(rng, CONSONANTS) + _pick(rng, VOWELS) for _ in range(size)]
        words.append("".join(syllables)[:int(rng.integers(1, 2 * size + 1))])
        if " " not in alphabet:
            break
    text = " ".join(words)[:n].strip()
    if case == "u":
        return text.upper()
    if case == "t":
        return text.title()
    return text


_KIND = {"digits": _digits, "meter": meter_reading, "amount": amount, "date": _date,
         "code": _code, "plate": _plate, "word": _word, "random": _random}
