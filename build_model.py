"""The attention model: CNN encoder + two-layer GRU decoder with additive attention.

Dimension letters used in the shape comments:
    B  batch (images; B*K rows in beam search, K = beam size)
    C  encoder channels            H, W  feature-map height and width
    L  = H*W attention positions   T     decoding steps
    V  vocabulary size             D     decoder hidden size
    A  attention size (= D)
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnn import Encoder, parse_plan
from support import devices

DEFAULT_CONFIG = {
    # encoder channel plan: ints = 3x3 conv with that many channels, M = max-pool
    "plan": "64 64 M 128 128 M 256 256 M 512 512",
    "hidden": 256,       # GRU hidden size = embedding size = attention size
    "dropout": 0.0,      # dropout between the two GRU layers and before the classifier
    "vocab_size": 14,    # <pad> <unk> </s> <s> + 10 digits
    "image_size": 64,    # the digit-region crop is resized to this (int: a square; [H, W]) ...
    "crop_size": 54,     # ... then (random or centre) cropped to this: the network input
    "max_len": 8,        # default cap on emitted digits when decoding
    "glimpse": True,     # attend once from h0 before the first step (the seed); False: zeros
    "normalize": False,  # True: the model maps its [0, 1] input pixels to [-1, 1] (not the seed)
    "pad_id": 0,
    "eos_id": 2,
    "bos_id": 3,
}


class Attention(nn.Module):
    """Additive attention: score_i = v^T relu(W f_i + U h), softmax over the L positions."""

    def __init__(self, feature_dim, hidden, attention_dim):
        super().__init__()
        self.W = nn.Linear(feature_dim, attention_dim)
        self.U = nn.Linear(hidden, attention_dim)
        self.v = nn.Linear(attention_dim, 1, bias=False)  # a bias would cancel in the softmax

    def project(self, features):
        """W f for every position; depends only on the image, so callers do it once per image."""
        return self.W(features)  # (B, L, A)

    def forward(self, features, projected, h):
        scores = self.v(torch.relu(projected + self.U(h).unsqueeze(1))).squeeze(2)  # (B, L)
        # float32 even under autocast (float64 stays float64, for exact checks)
        dtype = torch.promote_types(scores.dtype, torch.float32)
        alpha = torch.softmax(scores, dim=1, dtype=dtype)  # (B, L)
        context = torch.bmm(alpha.unsqueeze(1).to(features.dtype), features).squeeze(1)  # (B, C)
        return context, alpha


class StackedGRU(nn.Module):
    """Two GRU cells, the first one's output (with dropout) feeding the second."""

    def __init__(self, input_size, hidden, dropout=0.0):
        super().__init__()
        self.cells = nn.ModuleList([nn.GRUCell(input_size, hidden), nn.GRUCell(hidden, hidden)])
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, h):
        h1 = self.cells[0](x, h[0])  # (B, D)
        h2 = self.cells[1](self.dropout(h1), h[1])  # (B, D)
        return torch.stack([h1, h2])  # (2, B, D)


class Decoder(nn.Module):
    """One digit per step: GRU on [previous output, embedding(previous token)], attend, classify.

    Before the first step a glimpse (step -1) attends from the initial state h0 alone, and its
    output y, which depends on the image, is the "previous output" of step 0."""

    def __init__(self, vocab_size, feature_dim, hidden, dropout=0.0, glimpse=True):
        super().__init__()
        self.hidden = hidden
        self.glimpse = glimpse
        # learned initial state of both layers, drawn from N(0, 1) as the seed's is: from zeros the
        # glimpse would start from the same query for every run
        self.h0 = nn.Parameter(torch.randn(2, hidden))
        self.embedding = nn.Embedding(vocab_size, hidden)
        self.rnn = StackedGRU(2 * hidden, hidden, dropout)
        self.attention = Attention(feature_dim, hidden, hidden)
        self.output = nn.Linear(feature_dim + hidden, hidden)
        self.dropout = nn.Dropout(dropout)  # on y before the classifier, never on the y fed back
        self.classifier = nn.Linear(hidden, vocab_size)

    def attend(self, h, features, projected):
        """y = relu(fc([context, h_top])) for states h (2, B, D) -> (y (B, D), alpha (B, L))."""
        context, alpha = self.attention(features, projected, h[1])  # (B, C), (B, L)
        y = torch.relu(self.output(torch.cat([context, h[1].to(context.dtype)], dim=1)))  # (B, D)
        return y, alpha

    def init_state(self, features, projected):
        """(hidden (2, B, D) = h0, previous output y (B, D)) for features (B, L, C).

        y comes from the glimpse: attention from h0's top layer, before any token is read.
        Nothing is classified there, so its attention is not returned."""
        B = features.size(0)
        h = self.h0.unsqueeze(1).expand(2, B, self.hidden).contiguous()  # (2, B, D)
        if not self.glimpse:  # format-1 checkpoints were trained with zeros here
            return h, features.new_zeros(B, self.hidden, dtype=self.h0.dtype)  # (B, D)
        y, _ = self.attend(h, features, projected)  # (B, D)
        return h, y

    def step(self, tokens, state, features, projected):
        """One step for the previous tokens (B,) -> (y (B, D), state, alpha (B, L))."""
        h, y = state
        x = torch.cat([y, self.embedding(tokens).to(y.dtype)], dim=1)  # (B, 2D)
        h = self.rnn(x, h)  # (2, B, D)
        y, alpha = self.attend(h, features, projected)  # (B, D), (B, L)
        return y, (h, y), alpha

    def logits(self, y):
        """classifier(dropout(y)): (..., D) -> (..., V)."""
        return self.classifier(self.dropout(y))

    def forward(self, features, inputs):
        """Teacher forcing over inputs (B, T); returns logits (B, T, V) and attention (B, T, L)."""
        projected = self.attention.project(features)  # (B, L, A), once per image
        state = self.init_state(features, projected)
        outs, alphas = [], []
        for t in range(inputs.size(1)):
            y, state, alpha = self.step(inputs[:, t], state, features, projected)
            outs.append(y)
            alphas.append(alpha)
        logits = self.logits(torch.stack(outs, dim=1))  # (B, T, V)
        return logits, torch.stack(alphas, dim=1)  # (B, T, V), (B, T, L)


def masked_cross_entropy(logits, targets, pad_id):
    """Mean cross-entropy over the non-pad targets; logits (B, T, V), targets (B, T)."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=pad_id)


class AttentionOCR(nn.Module):
    """Encoder + attention decoder. Build it with build_model(config)."""

    def __init__(self, config):
        super().__init__()
        self.config = dict(config)
        self.encoder = Encoder(config["plan"])
        self.decoder = Decoder(config["vocab_size"], self.encoder.out_channels,
                               config["hidden"], config["dropout"], config["glimpse"])

    def encode(self, images):
        """Images (B, 3, S, S) in [0, 1] -> features (B, L, C) and the feature-map size (H, W)."""
        if self.config["normalize"]:
            images = (images - 0.5) / 0.5  # (B, 3, S, S) in [-1, 1], as Normalize(0.5, 0.5)
        fmap = self.encoder(images)  # (B, C, H, W)
        features = fmap.flatten(2).transpose(1, 2)  # (B, L, C)
        return features, tuple(fmap.shape[2:])

    def forward(self, images, tokens):
        """Teacher forcing: tokens (B, T) = <s> digits </s> <pad>...; returns (logits, loss)."""
        features, _ = self.encode(images)  # (B, L, C)
        logits, _ = self.decoder(features, tokens[:, :-1])  # (B, T-1, V)
        loss = masked_cross_entropy(logits, tokens[:, 1:], self.config["pad_id"])
        return logits, loss

    def _next_logprobs(self, tokens, state, features, projected, last_step):
        """Log-probs (B, V) of one step, plus the scores used to choose the next token.

        <pad> and <s> are never chosen (they are never targets). At the last step only </s> may
        be chosen, so every sequence ends with </s> and its log-prob always includes that term.
        """
        y, state, alpha = self.decoder.step(tokens, state, features, projected)
        logp = torch.log_softmax(self.decoder.logits(y).float(), dim=1)  # (B, V)
        if last_step:
            choice = torch.full_like(logp, float("-inf"))  # (B, V)
            choice[:, self.config["eos_id"]] = logp[:, self.config["eos_id"]]
        else:
            choice = logp.clone()  # (B, V)
            choice[:, [self.config["pad_id"], self.config["bos_id"]]] = float("-inf")
        return logp, choice, state, alpha

    def _result(self, steps, attention, probs, logprob, feature_hw):
        """Turn per-step tensors (B, T) into the decode() dict; token lists are built once, at
        the end."""
        pad, eos = self.config["pad_id"], self.config["eos_id"]
        lengths = ((steps != pad) & (steps != eos)).sum(dim=1)  # (B,)
        rows = steps.tolist()
        tokens = [row[:n] for row, n in zip(rows, lengths.tolist())]
        return {"tokens": tokens, "attention": attention, "probs": probs, "logprob": logprob,
                "feature_hw": feature_hw}

    @torch.no_grad()
    def decode(self, images, max_len=None, encoded=None):
        """Batched greedy decoding from <s> to </s>, at most max_len digits (+ </s>).

        encoded: this batch's (features, feature_hw) from encode(), for callers that also need
        the features (eval.py's loss), so the encoder, most of the cost, runs once.

        Rows that have emitted </s> keep being computed (cheaper than compacting the batch) but
        stop contributing: their tokens are frozen as <pad>, attention rows and probs are zero.
        Call model.eval() first: in train mode BatchNorm and dropout make rows depend on the batch.
        """
        return self._result(*self.greedy_steps(images, max_len, encoded))

    def decoding_ids(self, max_len=None):
        """(the length cap: max_len, or the config's; the <pad>, </s> and <s> ids)."""
        max_len = self.config["max_len"] if max_len is None else max_len
        return max_len, self.config["pad_id"], self.config["eos_id"], self.config["bos_id"]

    def greedy_steps(self, images, max_len=None, encoded=None, early_exit=True):
        """decode()'s tensors: (tokens (B, T), attention (B, T, L), probs (B, T), logprob (B,),
        feature_hw); tokens end with </s>, then <pad>. early_exit=False always runs max_len + 1
        steps, with no data-dependent branch: the graph export.py traces."""
        max_len, pad, eos, bos = self.decoding_ids(max_len)
        features, feature_hw = encoded or self.encode(images)  # (B, L, C)
        projected = self.decoder.attention.project(features)  # (B, L, A)
        state = self.decoder.init_state(features, projected)  # after the glimpse
        tokens = torch.full_like(features[:, 0, 0], bos, dtype=torch.long)  # (B,)
        done = torch.zeros_like(tokens, dtype=torch.bool)  # (B,)
        logprob = torch.zeros_like(tokens, dtype=torch.float32)  # (B,)
        steps = []
        attention = []
        probs = []
        for t in range(max_len + 1):
            logp, choice, state, alpha = self._next_logprobs(tokens, state, features, projected,
                                                              t == max_len)
            # argmax of (score so far + step log-prob): the same arithmetic as beam_search with
            # beam=1, so the two agree even on near-ties
            tokens = (logprob.unsqueeze(1) + choice).argmax(dim=1)  # (B,)
            lp = logp.gather(1, tokens.unsqueeze(1)).squeeze(1)  # (B,)
            tokens = tokens.masked_fill(done, pad)  # (B,)
            lp = lp.masked_fill(done, 0.0)  # (B,)
            logprob = logprob + lp  # (B,)
            steps.append(tokens)
            attention.append(alpha.masked_fill(done.unsqueeze(1), 0.0))  # (B, L)
            probs.append(lp.exp().masked_fill(done, 0.0))  # (B,)
            done = done | (tokens == eos)  # (B,)
            if early_exit and bool(done.all()):  # one sync per step, not per image
                break
        return (torch.stack(steps, dim=1), torch.stack(attention, dim=1),
                torch.stack(probs, dim=1), logprob, feature_hw)

    @torch.no_grad()
    def beam_search(self, images, beam=4, max_len=None, encoded=None):
        """Batched beam search over B*K rows; same dict as decode() for the best hypothesis.

        Scores are plain sums of log-probs (no length normalisation), the quantity decode()
        reports, so beam=1 is greedy. A finished hypothesis is carried along with <pad> at zero
        cost; the search stops once every image's best hypothesis is finished, since extending
        an unfinished one can only lower its score.
        """
        if beam < 1:
            raise ValueError(f"beam size must be >= 1, got {beam}")
        max_len, pad, eos, bos = self.decoding_ids(max_len)
        K = beam
        features, feature_hw = encoded or self.encode(images)  # (B, L, C), see decode()
        B, L, _ = features.shape
        device = features.device
        features = features.repeat_interleave(K, dim=0)  # (B*K, L, C)
        projected = self.decoder.attention.project(features)  # (B*K, L, A)
        h, out = self.decoder.init_state(features, projected)  # (2, B*K, D), (B*K, D)
        tokens = torch.full((B * K,), bos, dtype=torch.long, device=device)  # (B*K,)
        scores = torch.full((B, K), float("-inf"), device=device)  # (B, K)
        scores[:, 0] = 0.0  # all beams start identical: expand only the first
        done = torch.zeros(B, K, dtype=torch.bool, device=device)  # (B, K)
        steps = torch.zeros(B, K, 0, dtype=torch.long, device=device)  # (B, K, T)
        attention = torch.zeros(B, K, 0, L, device=device)  # (B, K, T, L)
        probs = torch.zeros(B, K, 0, device=device)  # (B, K, T)
        rows = torch.arange(B, device=device).unsqueeze(1) * K  # (B, 1)
        for t in range(max_len + 1):
            logp, choice, (h, out), alpha = self._next_logprobs(
                tokens, (h, out), features, projected, t == max_len)
            V = logp.size(1)
            logp, choice = logp.view(B, K, V), choice.view(B, K, V)  # (B, K, V)
            # a finished hypothesis may only continue with <pad>, at no cost
            choice = choice.masked_fill(done.unsqueeze(2), float("-inf"))  # (B, K, V)
            choice[..., pad] = choice[..., pad].masked_fill(done, 0.0)  # (B, K)
            total = (scores.unsqueeze(2) + choice).view(B, K * V)  # (B, K*V)
            scores, index = total.topk(K, dim=1)  # (B, K), sorted best first
            origin, tokens = index // V, index % V  # (B, K) source beam and chosen token
            was_done = done.gather(1, origin)  # (B, K)
            lp = logp.view(B, K * V).gather(1, index).masked_fill(was_done, 0.0)  # (B, K)
            alpha = alpha.view(B, K, L).gather(1, origin.unsqueeze(2).expand(B, K, L))  # (B, K, L)
            steps = torch.cat([steps.gather(1, origin.unsqueeze(2).expand_as(steps)),
                               tokens.unsqueeze(2)], dim=2)  # (B, K, T)
            attention = torch.cat([
                attention.gather(1, origin[:, :, None, None].expand_as(attention)),
                alpha.masked_fill(was_done.unsqueeze(2), 0.0).unsqueeze(2)], dim=2)  # (B, K, T, L)
            new_probs = lp.exp().masked_fill(was_done, 0.0).unsqueeze(2)  # (B, K, 1)
            probs = torch.cat([probs.gather(1, origin.unsqueeze(2).expand_as(probs)),
                               new_probs], dim=2)  # (B, K, T)
            done = was_done | (tokens == eos)  # (B, K)
            flat = (rows + origin).view(-1)  # (B*K,) rows to carry forward
            h, out = h[:, flat], out[flat]  # (2, B*K, D), (B*K, D)
            tokens = tokens.view(-1)  # (B*K,)
            if bool(done[:, 0].all()):
                break
        # best hypothesis = beam 0 (topk is sorted); its score is the sum of emitted log-probs
        return self._result(steps[:, 0], attention[:, 0], probs[:, 0], scores[:, 0], feature_hw)


# Bounds on a config, generous for anything this repository trains, but small enough that a
# mistyped flag or a corrupted (or hostile) checkpoint cannot make build_model allocate gigabytes:
# hidden = 10**9 alone would ask for ~10**19 bytes of GRU weights.
CONFIG_LIMITS = {"hidden": 8192, "vocab_size": 1024, "max_len": 256}
MAX_SIDE = 2048  # of image_size and crop_size
# pixels of the network input: a 512 x 512 input already costs the seed's encoder ~1 GB of
# activations per image in training; a hostile 2048 x 2048 config would ask for 34 GB
MAX_INPUT_PIXELS = 512 * 512


def as_hw(size):
    """An image_size or crop_size as (height, width): an int is a square, a pair is [H, W]."""
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


def parse_size(text):
    """'54' -> 54 (a square, as the seed's config stores it); '32x128' -> [32, 128] (H x W)."""
    parts = str(text).lower().split("x")
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"size {text!r} must be N or HxW (e.g. 54 or 32x128)") from None
    if len(sides) == 1:
        return sides[0]
    if len(sides) != 2:
        raise ValueError(f"size {text!r} must be N or HxW (e.g. 54 or 32x128)")
    if sides[0] == sides[1]:
        return sides[0]
    return sides


def format_size(size):
    """54 -> '54', [32, 128] -> '32x128'."""
    h, w = as_hw(size)
    return str(h) if h == w else f"{h}x{w}"


def check_size(key, value):
    """ValueError unless value is an int or an [H, W] pair of ints in 1..MAX_SIDE."""
    sides = value if isinstance(value, (list, tuple)) else [value]
    ok = len(sides) in (1, 2) and all(
        isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in sides)
    if not ok:
        raise ValueError(f"model config {key!r} must be an int or [H, W] of ints in "
                         f"1..{MAX_SIDE}, got {value!r}")
MAX_CHANNELS = 8192  # per convolution of the plan
MAX_CONVS = 64  # convolutions in the plan

def check_config(config):
    """The full config (DEFAULT_CONFIG filled in) of a valid model; ValueError naming the key."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(DEFAULT_CONFIG), key=str)
    if unknown:
        raise ValueError(f"unknown model config keys: {', '.join(map(str, unknown))}")
    config = {**DEFAULT_CONFIG, **config}
    plan = parse_plan(config["plan"])  # ValueError on a bad plan
    convs = [c for c in plan if c != "M"]
    if len(convs) > MAX_CONVS or max(convs) > MAX_CHANNELS:
        raise ValueError(f"model config 'plan' {config['plan']!r} is beyond the limits of "
                         f"{MAX_CONVS} convolutions of at most {MAX_CHANNELS} channels")
    for key, limit in CONFIG_LIMITS.items():
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise ValueError(f"model config {key!r} must be an int in 1..{limit}, got {value!r}")
    for key in ("glimpse", "normalize"):
        if not isinstance(config[key], bool):
            raise ValueError(f"model config {key!r} must be true or false, got {config[key]!r}")
    if (isinstance(config["dropout"], bool) or not isinstance(config["dropout"], (int, float))
            or not 0.0 <= config["dropout"] < 1.0):
        raise ValueError(f"model config 'dropout' must be in [0, 1), got {config['dropout']!r}")
    for key in ("image_size", "crop_size"):
        check_size(key, config[key])
    crop = as_hw(config["crop_size"])
    image = as_hw(config["image_size"])
    if crop[0] > image[0] or crop[1] > image[1]:
        raise ValueError(f"model config 'crop_size' {config['crop_size']} is larger than "
                         f"'image_size' {config['image_size']}")
    if crop[0] * crop[1] > MAX_INPUT_PIXELS:
        raise ValueError(f"model config 'crop_size' {config['crop_size']} is an input of "
                         f"{crop[0] * crop[1]:,} pixels, above the limit of {MAX_INPUT_PIXELS:,}")
    for key in ("pad_id", "eos_id", "bos_id"):
        value = config[key]
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if not is_int or not 0 <= value < config["vocab_size"]:
            raise ValueError(f"model config {key!r} must be a token id below vocab_size, "
                             f"got {value!r}")
    return config


def build_model(config=None):
    """AttentionOCR from a plain dict; missing keys come from DEFAULT_CONFIG, unknown keys fail."""
    return AttentionOCR(check_config(config))


VOCAB_ROWS = ("decoder.embedding.weight", "decoder.classifier.weight", "decoder.classifier.bias")


def load_grown(model, state, old_vocab_size):
    """Load weights trained with a vocabulary of old_vocab_size tokens into `model`, whose
    vocabulary extends that one (fine-tuning): every weight, and the old tokens' embedding and
    classifier rows, are copied exactly; the rows of the added tokens keep `model`'s own
    initialisation."""
    state = dict(state)
    own = model.state_dict()
    for key in VOCAB_ROWS:
        if state[key].shape[0] != old_vocab_size or own[key].shape[0] < old_vocab_size:
            raise ValueError(f"{key}: {state[key].shape[0]} rows, expected {old_vocab_size} "
                             f"(and at most {own[key].shape[0]})")
        grown = own[key].clone()
        grown[:old_vocab_size] = state[key]
        state[key] = grown
    model.load_state_dict(state)
    return model


def inference_model(model, device):
    """The model as eval.py, play.py and predict.py decode with it: eval mode, BatchNorm folded
    into the convolutions (the same answers, faster), on `device` in its fast memory layout
    (devices.memory_format: channels_last on CPU and CUDA)."""
    model = fold_batchnorm(model.eval())
    return model.to(device=device, memory_format=devices.memory_format(device))


def fold_batchnorm(module):
    """Fold every BatchNorm2d that directly follows a Conv2d (in an nn.Sequential) into the conv.
    Exact in eval mode up to rounding and saves a full pass over each feature map."""
    for child in module.children():
        fold_batchnorm(child)
    if isinstance(module, nn.Sequential):
        layers = list(module)
        for i in range(len(layers) - 1):
            conv, bn = layers[i], layers[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module[i] = nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
                module[i + 1] = nn.Identity()
    return module
