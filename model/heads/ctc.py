"""A CTC head (Graves et al. 2006, as CRNN reads text): the feature map read column by column,
left to right, by a bidirectional LSTM; each column emits FRAMES frames, each frame a character
or a blank (<pad>'s id: never a target), and a text is the frames with repeats merged and blanks
dropped. No attention, no step loop: one pass whatever the text's length.

Dimension letters used in the shape comments:
    B  batch        C  encoder channels     H, W  feature-map height and width (L = H*W)
    N  frames (= FRAMES * W)                V  vocabulary size (the blank is <pad>)
    D  hidden size  S  output slots (N + 1: every frame a character, then </s>)
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from model.encoder import pooled_size
from model.sizes import as_hw

# frames per feature-map column: CTC needs a frame per character plus a blank between repeats,
# 2L - 1 frames for "0000"; the seed's 54 x 54 input has 7 columns (2 frames: 6 digits with
# repeats fit), a 48 x 384 plate 48 (96 frames for at most 48 characters)
FRAMES = 2


class CTCHead(nn.Module):
    """Columns -> a linear projection of each column (C*H) -> BiLSTM -> FRAMES frames each (a
    linear map) -> classifier. No nonlinearity before the LSTM or between it and the frames, as
    CRNN maps the feature map to its sequence: on a tiny overfit the loss fell twice as fast
    without them. The model keeps it as `decoder`."""

    BEAM = False  # best-path (greedy) decoding only
    VOCAB_ROWS = ("classifier.weight", "classifier.bias")  # one per token

    def __init__(self, config, feature_dim):
        super().__init__()
        self.config = config
        hidden = config["hidden"]
        # the height is fixed by the input's (crop_size): a column is C*H numbers
        self.rows = pooled_size(as_hw(config["crop_size"])[0], config["plan"])
        self.project = nn.Linear(feature_dim * self.rows, hidden)
        self.rnn = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
        self.frames = nn.Linear(2 * hidden, FRAMES * hidden)
        self.dropout = nn.Dropout(config["dropout"])
        self.classifier = nn.Linear(hidden, config["vocab_size"])
        # added to the log-probs before the best path is chosen: </s> and <s> are never said (an
        # addition, not an indexed write, which the ONNX exporter turns into an invalid graph)
        never = torch.zeros(config["vocab_size"])
        never[[config["eos_id"], config["bos_id"]]] = float("-inf")
        self.register_buffer("never", never, persistent=False)  # not a weight of the checkpoint

    def forward(self, features):
        """Features (B, L, C) of a map H = self.rows high -> log-probs (B, N, V), float32."""
        B, L, C = features.shape
        columns = features.reshape(B, self.rows, L // self.rows, C).permute(0, 2, 1, 3)  # (B,W,H,C)
        x = self.project(columns.flatten(2))  # (B, W, D)
        x, _ = self.rnn(x)  # (B, W, 2D)
        x = self.frames(x).view(B, -1, self.classifier.in_features)  # (B, N, D)
        logits = self.classifier(self.dropout(x))  # (B, N, V)
        return torch.log_softmax(logits.float(), dim=2)

    def loss(self, features, targets):
        """CTC loss (mean over images of the loss per target character) for targets (B, T) =
        <s> chars </s> <pad>...; returns (log-probs, loss). A text too long for the frames would
        have an infinite loss: it is zeroed (train.py counts such texts: unreadable)."""
        logp = self(features)  # (B, N, V)
        labels, lengths = self.labels(targets)
        frames = torch.full_like(lengths, logp.size(1))  # (B,)
        loss = F.ctc_loss(logp.transpose(0, 1), labels, frames, lengths,
                          blank=self.config["pad_id"], zero_infinity=True)
        return logp, loss

    def labels(self, targets):
        """(labels (B, T-1): the characters, padded; lengths (B,)) of <s> chars </s> <pad>..."""
        labels = targets[:, 1:]  # (B, T-1)
        text = (labels != self.config["pad_id"]) & (labels != self.config["eos_id"])
        return labels, text.sum(dim=1)

    def unreadable(self, texts):
        """How many of `texts` need more frames than the input's width gives (their loss would be
        infinite, and is zeroed: they teach nothing): train.py reports them."""
        width = pooled_size(as_hw(self.config["crop_size"])[1], self.config["plan"])
        return sum(frames_needed(text) > FRAMES * width for text in texts)

    def summed_loss(self, features, targets, decoded, truth):
        """(summed CTC loss, target characters) of a batch, for eval.py's report."""
        logp = self(features)
        labels, lengths = self.labels(targets)
        frames = torch.full_like(lengths, logp.size(1))
        total = F.ctc_loss(logp.transpose(0, 1), labels, frames, lengths,
                           blank=self.config["pad_id"], reduction="none", zero_infinity=True)
        return total.double().sum().item(), int(lengths.sum())

    def decode(self, features, beam=1, max_len=None):
        """Best path: {tokens: lists of ids, probs (B, S), attention None, logprob (B,)}.
        probs holds each character's probability (the product over its frames), then at </s>
        the blank frames' product: their product is the path's probability, exp(logprob).
        max_len is not needed (the frames bound the length) and is ignored."""
        if beam != 1:
            raise ValueError(f"the ctc head decodes the best path only (greedy); beam {beam} "
                             f"is not available, use --beam 1")
        tokens, probs, logprob = self.best_path(features)
        lengths = (tokens != self.config["eos_id"]).long().argmin(dim=1)  # (B,) first </s>
        rows = tokens.tolist()
        return {"tokens": [row[:n] for row, n in zip(rows, lengths.tolist())], "probs": probs,
                "attention": None, "logprob": logprob}

    def export_outputs(self, features):
        """(tokens (B, S), probs (B, S)): export.py's outputs, as decode() computes them."""
        tokens, probs, _ = self.best_path(features)
        return tokens, probs

    def best_path(self, features):
        """(tokens (B, S): characters, </s>, <pad>...; probs (B, S); logprob (B,))."""
        logp = self(features)  # (B, N, V)
        best, ids = (logp + self.never).max(dim=2)  # (B, N)
        return collapse(ids, best, self.config["pad_id"], self.config["eos_id"])


def fit_rows(weight, channels, rows):
    """A trained column projection (D, H*C) -> (D, rows*C), for the same head on an input of
    another height (fine-tuning at 48 pixels from a reader trained at 32): each channel's
    weights over the column's H feature rows resampled linearly to `rows`, a weight per relative
    height in the column. A column is C*H numbers, feature row by feature row (forward's
    flatten). From reader.pt at 48 x 384, the ctc loss of 200 handwritten amounts before any
    step: 5.0 (2.0 at its own 32 x 256; 76 with a fresh head; scaled by H / rows 5.4)."""
    out_dim, size = weight.shape
    if size % channels:
        raise ValueError(f"a column projection of {size} inputs is not {channels} channels high")
    height = size // channels
    by_channel = weight.reshape(out_dim, height, channels).permute(0, 2, 1)  # (D, C, H)
    fitted = F.interpolate(by_channel, size=rows, mode="linear", align_corners=False)
    return fitted.permute(0, 2, 1).reshape(out_dim, rows * channels).contiguous()


def frames_needed(text):
    """CTC's fewest frames for a text: one per character, and a blank between two repeats."""
    return len(text) + sum(a == b for a, b in zip(text, text[1:]))


def collapse(ids, logp, blank, eos):
    """CTC's best path read out with tensor operations only (no loop, no data-dependent shape,
    so it exports to ONNX): frame ids (B, N) and their log-probs -> (tokens (B, N + 1): runs of a
    repeated id merged, blanks dropped, then </s>, then <pad> (= blank); probs (B, N + 1): each
    token's product of frame probabilities, </s> taking the blank frames'; logprob (B,))."""
    B, N = ids.shape
    previous = torch.cat([torch.full_like(ids[:, :1], blank), ids[:, :-1]], dim=1)  # (B, N)
    new = (ids != blank) & (ids != previous)  # (B, N): a character's first frame
    count = new.long().sum(dim=1, keepdim=True)  # (B, 1) characters
    # each frame's output slot: its character's place, or </s>'s (slot `count`) for a blank
    slot = torch.where(ids == blank, count, new.long().cumsum(dim=1) - 1)  # (B, N)
    slots = torch.arange(N + 1, device=ids.device)  # (S,)
    member = slot.unsqueeze(2) == slots  # (B, N, S)
    slot_logp = (logp.unsqueeze(2) * member).sum(dim=1)  # (B, S)
    first = (member & new.unsqueeze(2)).long()  # (B, N, S): the frame naming each slot
    tokens = (ids.unsqueeze(2) * first).sum(dim=1)  # (B, S), 0 where no character
    tokens = torch.where(slots == count, torch.full_like(tokens, eos), tokens)
    tokens = torch.where(slots > count, torch.full_like(tokens, blank), tokens)
    probs = torch.where(slots <= count, slot_logp.exp(), torch.zeros_like(slot_logp))
    return tokens, probs, logp.sum(dim=1)
