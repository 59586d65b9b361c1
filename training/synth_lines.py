"""Synthetic lines of the training texts' own characters (train.py --synth-mix): a few hundred
photos show each character a few dozen times; drawn lines of the same alphabet, lengths and
layouts show them thousands of times, in every style the text generator has (synth/text.py).
"""
import random

import numpy as np
import torch
import torchvision.transforms as T

from support.crops import centre_input, resize_region
from support.tokenizer import token_text
from training.augment import PHOTO_JITTER, elastic_warp, text_augment

SYNTH_KEEP = 0.3   # share of a real text's characters a look-alike keeps where they are
SYNTH_RANDOM = 0.3  # share of synthetic texts drawn at random from the alphabet, not look-alikes
SYNTH_TRIES = 20  # texts drawn before falling back to one character


def char_class(c):
    """The class a look-alike text swaps a character within: digit, upper, lower, or itself."""
    if c.isdigit():
        return "digit"
    if c.isupper():
        return "upper"
    if c.islower():
        return "lower"
    return c


class SynthLines(torch.utils.data.Dataset):
    """`size` synthetic lines whose texts look like the training texts: a training text with
    most characters swapped for others of their class (digit, upper, lower; the rest kept), or
    a random string of the alphabet at a training text's length. Characters no style of the
    generator can draw are left out of them (`undrawable`; the photos still teach them). Each
    item is (image tensor, tokens, no boxes), drawn from the seeded `random` (SeededSamples)."""

    def __init__(self, texts, tokenizer, size, image_size, crop_size, max_stretch=0.0,
                 shear=0.0, elastic=0.0):
        from synth import line  # the generator's fonts load only when mixed in
        self.render = line.render_line
        alphabet = sorted({c for t in texts for c in t})
        self.undrawable = line.uncovered("".join(alphabet))
        drop = set(self.undrawable)
        self.texts = [t for t in ("".join(c for c in t if c not in drop) for t in texts) if t]
        if not self.texts:
            raise ValueError(f"no synthetic lines: the text generator draws none of "
                             f"{''.join(alphabet)!r}")
        self.alphabet = sorted({c for t in self.texts for c in t})
        self.classes = {}
        for c in self.alphabet:
            self.classes.setdefault(char_class(c), []).append(c)
        self.tokenizer = tokenizer
        self.size = size
        self.image_size = image_size
        self.crop_size = crop_size
        self.max_stretch = max_stretch
        self.shear = shear
        self.elastic = elastic
        self.jitter = T.ColorJitter(*PHOTO_JITTER)

    def __len__(self):
        return self.size

    def sample_text(self):
        """A look-alike of a random training text, or a random string at its length."""
        model = random.choice(self.texts)
        if random.random() < SYNTH_RANDOM:
            return "".join(random.choice(self.alphabet) for _ in model)
        out = []
        for c in model:
            if random.random() < SYNTH_KEEP:
                out.append(c)
            else:
                out.append(random.choice(self.classes[char_class(c)]))
        return "".join(out)

    def drawn(self):
        """(text, PIL image) of a look-alike that one style draws whole: each character has a
        style, but a mix of them may have none in common, so a few draws may be needed."""
        for _ in range(SYNTH_TRIES):
            text = self.sample_text()
            rng = np.random.default_rng(random.getrandbits(64))
            try:
                return text, self.render(rng, text)
            except ValueError:  # no single style draws this mix: draw another text
                continue
        text = random.choice(random.choice(self.texts))  # one character: some style draws it
        return text, self.render(np.random.default_rng(random.getrandbits(64)), text)

    def __getitem__(self, i):
        text, img = self.drawn()
        img = resize_region(img, self.image_size, self.max_stretch)
        x = centre_input(text_augment(img, self.jitter, self.shear), self.crop_size)  # (3, H, W)
        x = elastic_warp(x, self.elastic)
        tokens = self.tokenizer.encode(token_text(text)).long()  # (len(text) + 2,)
        return x, tokens, torch.zeros((0, 4))
