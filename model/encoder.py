"""VGG-style convolutional encoder: a cropped image in, a spatial feature map out.

The channel plan is a list of ints (a 3x3 conv with that many output channels, padding 1,
then BatchNorm and ReLU) and 'M' (max-pool, kernel 3, stride 2, padding 1). The default plan
"64 64 M 128 128 M 256 256 M 512 512" turns a 54x54 crop into a 7x7x512 map.
"""
import torch
import torch.nn as nn

DEFAULT_PLAN = "64 64 M 128 128 M 256 256 M 512 512"


def parse_plan(plan):
    """Turn "64 64 M 128" (or ["64", 64, "M", 128]) into [64, 64, 'M', 128]; ValueError on junk."""
    if isinstance(plan, str):
        items = plan.replace(",", " ").split()
    elif isinstance(plan, (list, tuple)):
        items = list(plan)
    else:
        raise ValueError(f"channel plan must be a string or a list, got {type(plan).__name__}")
    parsed = []
    for item in items:
        if isinstance(item, str) and item.strip().upper() == "M":
            parsed.append("M")
            continue
        # bool is an int subclass; True is not a channel count
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise ValueError(f"channel plan item {item!r} is neither a channel count nor 'M'")
        try:
            channels = int(item)
        except ValueError:
            message = f"channel plan item {item!r} is neither a channel count nor 'M'"
            raise ValueError(message) from None
        if channels <= 0:
            raise ValueError(f"channel plan item {item!r}: channel counts must be positive")
        parsed.append(channels)
    if not any(isinstance(item, int) for item in parsed):
        raise ValueError(f"channel plan {plan!r} has no convolution")
    return parsed


def pooled_size(size, plan):
    """Side length of the feature map for an input side `size`
    (a conv with padding 1 keeps it; M halves it)."""
    for item in parse_plan(plan):
        if item == "M":
            size = (size + 2 * 1 - 3) // 2 + 1
    return size


class Encoder(nn.Module):
    """Conv3x3-BN-ReLU blocks with max-pools, as the plan says. (B, 3, H, W) -> (B, C, H', W')."""

    def __init__(self, plan=DEFAULT_PLAN, in_channels=3):
        super().__init__()
        self.plan = parse_plan(plan)
        layers = []
        channels = in_channels
        for item in self.plan:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
            else:
                # no conv bias: the BatchNorm that follows has its own shift
                layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1, bias=False),
                           nn.BatchNorm2d(item),
                           nn.ReLU(inplace=True)]
                channels = item
        self.features = nn.Sequential(*layers)
        self.out_channels = channels
        self.reset_parameters()

    def reset_parameters(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def output_size(self, size):
        """Feature-map size for an input size: an int side (54 -> 7) or an (H, W) pair."""
        if isinstance(size, int):
            return pooled_size(size, self.plan)
        height, width = size
        return pooled_size(height, self.plan), pooled_size(width, self.plan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, C, H', W')
