"""The model, by the name the user asked for: `from build_model import build_model` builds it.
The parts live in the model package (encoder, heads, config, the one constructor); the seed's
attention decoder is model/heads/attention.py. This file re-exports the names, so scripts,
notebooks and old imports keep working."""
from model import (CONFIG_LIMITS, DEFAULT_CONFIG, HEADS, MAX_INPUT_PIXELS, MAX_SIDE, OCRModel,
                   as_hw, build_model, check_config, check_size, fold_batchnorm, format_size,
                   load_encoder, load_grown, parse_size, vocab_rows)
from model.heads.attention import Attention, StackedGRU, masked_cross_entropy
from model.heads.attention import AttentionHead as Decoder
from support.inference import inference_model

AttentionOCR = OCRModel  # the seed's name for the model
# the weights with a row per token, of the seed's attention head
VOCAB_ROWS = ("decoder.embedding.weight", "decoder.classifier.weight", "decoder.classifier.bias")

__all__ = ["CONFIG_LIMITS", "DEFAULT_CONFIG", "HEADS", "MAX_INPUT_PIXELS", "MAX_SIDE",
           "Attention", "AttentionOCR", "Decoder", "OCRModel", "StackedGRU", "VOCAB_ROWS",
           "as_hw", "build_model", "check_config", "check_size", "fold_batchnorm", "format_size",
           "inference_model", "load_encoder", "load_grown", "masked_cross_entropy",
           "parse_size", "vocab_rows"]
