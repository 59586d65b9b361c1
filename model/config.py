"""The model config, in one place: its keys and defaults (the seed's model) and the checks a
config passes before any weight is made."""
from model.encoder import parse_plan
from model.heads import HEADS
from model.sizes import as_hw, check_size
from model.vote import MAX_VOTES

DEFAULT_CONFIG = {
    # encoder channel plan: ints = 3x3 conv with that many channels, M = max-pool
    "plan": "64 64 M 128 128 M 256 256 M 512 512",
    "head": "attention",  # a name in model.heads.HEADS; a checkpoint without it is the seed's
    "aux_ctc": 0.0,      # > 0: a ctc head beside the attention head, its loss added x this
    "hidden": 256,       # GRU hidden size = embedding size = attention size
    "dropout": 0.0,      # dropout between the two GRU layers and before the classifier
    "vocab_size": 14,    # <pad> <unk> </s> <s> + 10 digits
    "image_size": 64,    # the digit-region crop is resized to this (int: a square; [H, W]) ...
    "crop_size": 54,     # ... then (random or centre) cropped to this: the network input
    "max_stretch": 0.0,  # 0: every region squashed to image_size (the seed); S > 0: its own
                         # aspect widened at most S times, left-aligned, the rest padded
    "max_len": 8,        # default cap on emitted digits when decoding
    "votes": 1,          # copies of each image decoded, the surest text kept (model.vote);
                         # 1: the image alone (the seed)
    "glimpse": True,     # attend once from h0 before the first step (the seed); False: zeros
    "normalize": False,  # True: the model maps its [0, 1] input pixels to [-1, 1] (not the seed)
    "pad_id": 0,
    "eos_id": 2,
    "bos_id": 3,
}

# Bounds on a config, generous for anything this repository trains, but small enough that a
# mistyped flag or a corrupted (or hostile) checkpoint cannot make build_model allocate gigabytes:
# hidden = 10**9 alone would ask for ~10**19 bytes of GRU weights.
CONFIG_LIMITS = {"hidden": 8192, "vocab_size": 1024, "max_len": 256, "votes": MAX_VOTES}
# pixels of the network input: a 512 x 512 input already costs the seed's encoder ~1 GB of
# activations per image in training; a hostile 2048 x 2048 config would ask for 34 GB
MAX_INPUT_PIXELS = 512 * 512
MAX_CHANNELS = 8192  # per convolution of the plan
MAX_CONVS = 64  # convolutions in the plan
MAX_AUX = 10.0  # the auxiliary loss's weight
MAX_STRETCH = 64.0  # max_stretch: past this every input is squashed anyway


def check_config(config):
    """The full config (DEFAULT_CONFIG filled in) of a valid model; ValueError naming the key."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(DEFAULT_CONFIG), key=str)
    if unknown:
        raise ValueError(f"unknown model config keys: {', '.join(map(str, unknown))}")
    config = {**DEFAULT_CONFIG, **config}
    if not isinstance(config["head"], str) or config["head"] not in HEADS:
        raise ValueError(f"model config 'head' must be one of {', '.join(HEADS)}, "
                         f"got {config['head']!r}")
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
    check_aux(config)
    stretch = config["max_stretch"]
    if isinstance(stretch, bool) or not isinstance(stretch, (int, float)) or not (
            0.0 <= stretch <= MAX_STRETCH):
        raise ValueError(f"model config 'max_stretch' must be 0 (squash) or a stretch in "
                         f"(0, {MAX_STRETCH:g}], got {stretch!r}")
    check_input_shape(config)
    for key in ("pad_id", "eos_id", "bos_id"):
        value = config[key]
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if not is_int or not 0 <= value < config["vocab_size"]:
            raise ValueError(f"model config {key!r} must be a token id below vocab_size, "
                             f"got {value!r}")
    return config


def check_aux(config):
    """ValueError unless aux_ctc is a weight in [0, MAX_AUX], beside the attention head only."""
    weight = config["aux_ctc"]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
            0.0 <= weight <= MAX_AUX):
        raise ValueError(f"model config 'aux_ctc' must be a weight in [0, {MAX_AUX:g}], "
                         f"got {weight!r}")
    if weight and config["head"] != "attention":
        raise ValueError(f"model config 'aux_ctc' {weight} adds a ctc loss beside the attention "
                         f"head; the {config['head']} head takes none")


def check_input_shape(config):
    """ValueError unless image_size and crop_size are sizes, the crop fits the image and the
    input is within MAX_INPUT_PIXELS."""
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
