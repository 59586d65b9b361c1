"""The model as parts: the encoder (encoder.py), the heads behind one interface (heads/, the
HEADS table), the config and its checks (config.py), input sizes (sizes.py), build_model, the
one constructor (ocr.py), and reading by vote (vote.py)."""
from model.config import CONFIG_LIMITS, DEFAULT_CONFIG, MAX_INPUT_PIXELS, check_config
from model.heads import HEADS
from model.ocr import (OCRModel, aux_as_head, build_model, fold_batchnorm, load_encoder,
                       load_grown, vocab_rows)
from model.sizes import MAX_SIDE, as_hw, check_size, format_size, parse_size

__all__ = ["CONFIG_LIMITS", "DEFAULT_CONFIG", "HEADS", "MAX_INPUT_PIXELS", "MAX_SIDE",
           "OCRModel", "as_hw", "aux_as_head", "build_model", "check_config", "check_size",
           "fold_batchnorm", "format_size", "load_encoder", "load_grown", "parse_size",
           "vocab_rows"]
