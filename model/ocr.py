"""The model: the encoder and a head (model.heads.HEADS, named by the config's "head"), built
from a config dict by build_model, the one constructor."""
import torch
import torch.nn as nn

from model.config import check_config
from model.encoder import Encoder
from model.heads import HEADS
from model.heads.ctc import CTCHead, fit_rows


class OCRModel(nn.Module):
    """Encoder + head. The head is `decoder` (the seed's weight names). Build it with
    build_model(config)."""

    def __init__(self, config):
        super().__init__()
        self.config = dict(config)
        self.encoder = Encoder(config["plan"])
        self.decoder = HEADS[config["head"]](self.config, self.encoder.out_channels)
        if config["aux_ctc"]:  # built only when on: the seed's weights and random draws stay
            self.aux = HEADS["ctc"](self.config, self.encoder.out_channels)

    def encode(self, images):
        """Images (B, 3, H, W) in [0, 1] -> features (B, L, C) and the feature-map size (H', W')."""
        if self.config["normalize"]:
            images = (images - 0.5) / 0.5  # (B, 3, H, W) in [-1, 1], as Normalize(0.5, 0.5)
        fmap = self.encoder(images)  # (B, C, H', W')
        features = fmap.flatten(2).transpose(1, 2)  # (B, L, C)
        return features, tuple(fmap.shape[2:])

    def forward(self, images, tokens):
        """Training: tokens (B, T) = <s> chars </s> <pad>...; returns (the head's scores, loss)."""
        features, _ = self.encode(images)  # (B, L, C)
        scores, loss = self.decoder.loss(features, tokens)
        if self.config["aux_ctc"]:  # training only: decoding reads the head alone
            loss = loss + self.config["aux_ctc"] * self.aux.loss(features, tokens)[1]
        return scores, loss

    @torch.no_grad()
    def decode(self, images, max_len=None, encoded=None, beam=1):
        """The head's decoding of a batch (greedy for beam 1): {tokens (lists of ids), probs,
        attention (B, T, L) or None, logprob (B,), feature_hw}.

        encoded: this batch's (features, feature_hw) from encode(), for callers that also need
        the features (eval.py's loss), so the encoder, most of the cost, runs once.
        Call model.eval() first: in train mode BatchNorm and dropout make rows depend on the batch.
        """
        features, feature_hw = encoded or self.encode(images)  # (B, L, C)
        return {**self.decoder.decode(features, beam, max_len), "feature_hw": feature_hw}

    @torch.no_grad()
    def beam_search(self, images, beam=4, max_len=None, encoded=None):
        """decode() with a beam (the attention head; beam=1 runs the search with one beam)."""
        features, feature_hw = encoded or self.encode(images)  # as decode()
        if not self.decoder.BEAM:
            return self.decode(images, max_len, (features, feature_hw), beam)
        return {**self.decoder.beam_search(features, beam, max_len), "feature_hw": feature_hw}

    def greedy_steps(self, images, max_len=None, encoded=None, early_exit=True):
        """The attention head's greedy tensors (tokens, attention, probs, logprob, feature_hw)."""
        features, feature_hw = encoded or self.encode(images)
        return (*self.decoder.greedy_steps(features, max_len, early_exit), feature_hw)

    def export_outputs(self, images):
        """(tokens, probs) of fixed shape, with no data-dependent branch: export.py's graph."""
        features, _ = self.encode(images)
        return self.decoder.export_outputs(features)


def build_model(config=None):
    """OCRModel from a plain dict; missing keys come from DEFAULT_CONFIG, unknown keys fail."""
    return OCRModel(check_config(config))


def vocab_rows(model):
    """The state_dict keys of `model` with one row per token (its heads' VOCAB_ROWS)."""
    rows = tuple(f"decoder.{name}" for name in model.decoder.VOCAB_ROWS)
    if hasattr(model, "aux"):
        rows += tuple(f"aux.{name}" for name in model.aux.VOCAB_ROWS)
    return rows


def column_projections(model):
    """The state_dict keys of `model`'s ctc column projections, which depend on the input's
    height (a ctc decoder's and an auxiliary ctc head's)."""
    return [f"{name}.project.weight" for name, module in model.named_children()
            if isinstance(module, CTCHead)]


def load_grown(model, state, old_vocab_size):
    """Load weights trained with a vocabulary of old_vocab_size tokens into `model`, whose
    vocabulary extends that one (fine-tuning): every weight, and the old tokens' rows, are copied
    exactly; the rows of the added tokens keep `model`'s own initialisation. An auxiliary head
    (aux.*) that only one side has is dropped from `state`, or kept as `model` made it. A ctc
    column projection trained at another input height is fitted to this one's (fit_rows).
    Returns the keys so fitted."""
    own = model.state_dict()
    state = {key: value for key, value in state.items()
             if not key.startswith("aux.") or key in own}
    fresh = {key: value for key, value in own.items() if key.startswith("aux.")
             and key not in state}
    state.update(fresh)
    fitted = [key for key in column_projections(model)
              if key not in fresh and state[key].shape != own[key].shape]
    for key in fitted:  # trained at another input height
        head = model.get_submodule(key.removesuffix(".project.weight"))
        state[key] = fit_rows(state[key], own[key].shape[1] // head.rows, head.rows)
    for key in vocab_rows(model):
        if key in fresh:
            continue
        if state[key].shape[0] != old_vocab_size or own[key].shape[0] < old_vocab_size:
            raise ValueError(f"{key}: {state[key].shape[0]} rows, expected {old_vocab_size} "
                             f"(and at most {own[key].shape[0]})")
        grown = own[key].clone()
        grown[:old_vocab_size] = state[key]
        state[key] = grown
    model.load_state_dict(state)
    return fitted


def load_encoder(model, state):
    """Another head's checkpoint: its encoder's weights copied exactly into `model`, whose head
    keeps its own (fresh) initialisation: fine-tuning that switches heads."""
    own = model.state_dict()
    for key, value in state.items():
        if key.startswith("encoder."):
            own[key] = value
    model.load_state_dict(own)
    return model


def aux_as_head(model, state):
    """A checkpoint trained with an auxiliary ctc head (--aux-ctc) for `model`, which reads with a
    ctc head: its encoder, with that trained head as `model`'s head (decoder.*), for load_grown.
    None where `model` reads with another head, the checkpoint has no auxiliary head, or its head
    has other shapes than `model`'s (another hidden size; another input height is fitted)."""
    if model.config["head"] != "ctc":
        return None
    head = {"decoder." + key.removeprefix("aux."): value for key, value in state.items()
            if key.startswith("aux.")}
    own = model.state_dict()
    if not head or set(head) != {key for key in own if key.startswith("decoder.")}:
        return None
    rows = vocab_rows(model)
    columns = column_projections(model)
    for key, value in head.items():
        have, want = value.shape, own[key].shape
        if key in rows:  # a row per token: the vocabulary may have grown
            have, want = have[1:], want[1:]
        if key in columns:  # another input height: load_grown fits it
            have, want = have[:1], want[:1]
        if have != want:
            return None
    return {**{k: v for k, v in state.items() if k.startswith("encoder.")}, **head}


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
