"""The character tokenizer: one token per character, text <-> token ids.

The vocabulary is <pad> <unk> </s> (reserved), then <s>, then the characters in the order the data
first shows them; a checkpoint stores it, and tokenizer_from_vocab rebuilds exactly that encoder.
label_ids is the one way a token sequence becomes a label (training's validation, eval.py,
play.py).
"""
import torch
from torchnlp.encoders.text import StaticTokenizerEncoder

RESERVED = ["<pad>", "<unk>", "</s>"]
PAD, UNK, EOS, BOS = 0, 1, 2, 3  # <s> is the first token of every text, so it always lands at 3


def char_tokens(text):
    """'<s>AB1' -> ['<s>', 'A', 'B', '1']: a leading <s> is one token, every other character is
    one (spaces and letters included). Module level, so the encoder pickles into workers."""
    if text.startswith("<s>"):
        return ["<s>"] + list(text[3:])
    return list(text)


def token_text(label):
    """"19" -> "<s>19", the text the tokenizer sees (it appends </s> itself)."""
    return "<s>" + label


def _encoder(texts):
    return StaticTokenizerEncoder(texts, tokenize=char_tokens, detokenize="".join,
                                  reserved_tokens=list(RESERVED), append_eos=True)


def build_tokenizer(texts):
    """StaticTokenizerEncoder over the labels `texts` (SVHN's digits, or any characters).

    Vocabulary: <pad> <unk> </s> reserved, then tokens in the order pytorch-nlp first meets them
    (<s> first, then characters): it depends on the data, so checkpoints store `encoder.vocab`."""
    return _encoder(token_text(text) for text in texts)


def tokenizer_from_vocab(vocab):
    """Rebuild an encoder whose vocabulary is exactly `vocab` (e.g. from a checkpoint)."""
    vocab = list(vocab)
    chars = vocab[len(RESERVED) + 1:]
    if vocab[:len(RESERVED) + 1] != RESERVED + ["<s>"]:
        raise ValueError(f"vocabulary must start with {RESERVED + ['<s>']}, got {vocab[:6]}")
    if not all(isinstance(c, str) and len(c) == 1 for c in chars):
        raise ValueError(f"vocabulary {vocab}: tokens after <s> must be single characters")
    # each character once, in order: the encoder adds tokens in first-seen order
    encoder = _encoder([token_text("".join(chars))])
    if encoder.vocab != vocab:
        raise ValueError(f"vocabulary {vocab} cannot be rebuilt (duplicate tokens)")
    return encoder


def extend_vocab(vocab, texts):
    """`vocab` followed by the characters of `texts` it lacks, in first-seen order: fine-tuning
    keeps every old token's id, so the old embedding and classifier rows stay valid."""
    known = set(vocab)
    added = []
    for text in texts:
        for c in text:
            if c not in known:
                known.add(c)
                added.append(c)
    return list(vocab) + added


def unknown_chars(labels, vocab):
    """{character: count} of the characters in `labels` missing from `vocab` (encoded as <unk>)."""
    known = set(vocab)
    counts = {}
    for label in labels:
        for c in label:
            if c not in known:
                counts[c] = counts.get(c, 0) + 1
    return counts


def label_ids(ids, pad_id=PAD, eos_id=EOS, bos_id=BOS):
    """The label's token ids of one sequence: [<s>, d1, d2, </s>, <pad>, ...] -> [d1, d2].

    <s> and <pad> are skipped and the first </s> ends the sequence, so training targets and
    decoded tokens go through this one function (validation and evaluation compare its outputs).
    """
    out = []
    for t in (ids.tolist() if torch.is_tensor(ids) else ids):
        if t == eos_id:
            break
        if t in (pad_id, bos_id):
            continue
        out.append(t)
    return out


def tokens_to_text(ids, vocab):
    """Token ids -> string, stopping at </s>; skips <pad>/<s>, <unk> becomes '?'."""
    return "".join("?" if t == UNK or t >= len(vocab) else vocab[t] for t in label_ids(ids))
