"""The VGG-style encoder, by the name the user asked for: model/encoder.py holds it (a package may
not import a top-level script), and this file keeps `from cnn import Encoder` working."""
from model.encoder import DEFAULT_PLAN, Encoder, parse_plan, pooled_size

__all__ = ["DEFAULT_PLAN", "Encoder", "parse_plan", "pooled_size"]
