"""U-Net (Ronneberger, Fischer and Brox, 2015), small enough to train on a laptop CPU.

The network is an encoder that halves the resolution and doubles the channels at each
level, a decoder that does the reverse, and *skip connections* that hand each decoder
level the encoder's features at the same resolution: the encoder knows *what* is in the
picture, the skips know *where* its edges are. Every switch the lessons notebook
compares is a constructor argument; ``model.config`` holds them all so a checkpoint can
rebuild the model from the file alone.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def conv_bn_relu(in_channels: int, out_channels: int, batchnorm: bool = True, stride: int = 1) -> list[nn.Module]:
    """3x3 convolution, optional BatchNorm, ReLU (the conv has no bias when BN follows)."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=not batchnorm)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return layers


class DoubleConv(nn.Sequential):
    """Two 3x3 conv + BN + ReLU: the basic U-Net block. Padding 1 keeps H and W."""

    def __init__(self, in_channels: int, out_channels: int, batchnorm: bool = True):
        super().__init__(*conv_bn_relu(in_channels, out_channels, batchnorm),
                         *conv_bn_relu(out_channels, out_channels, batchnorm))


class Down(nn.Sequential):
    """Encoder step: 2x2 max-pool (half the resolution), then a DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, batchnorm: bool = True):
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels, batchnorm))


def match_and_concat(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """Crop or zero-pad ``x`` to the height and width of ``skip``, then concatenate them
    along the channel axis. Needed when a size was odd: max-pooling 45 rows gives 22,
    and upsampling gives 44, one short of the 45 the skip carries."""
    dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
    if dh or dw:
        # F.pad takes (left, right, top, bottom); negative values crop.
        x = F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])
    return torch.cat([skip, x], dim=1)


class Up(nn.Module):
    """Decoder step: upsample x2 (bilinear + 1x1 conv, or a transposed conv) to half the
    channels, join the skip features (if any), then a DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, batchnorm: bool = True,
                 bilinear: bool = True, skip: bool = True):
        super().__init__()
        if bilinear:
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                    nn.Conv2d(in_channels, in_channels // 2, 1))
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)
        self.skip = skip
        joined = in_channels // 2 + (out_channels if skip else 0)
        self.conv = DoubleConv(joined, out_channels, batchnorm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if self.skip:
            x = match_and_concat(x, skip)
        else:  # still match the size, so the output has the input's height and width
            dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
            x = F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])
        return self.conv(x)


class UNet(nn.Module):
    """U-Net for ``num_classes``-way per-pixel classification.

    Args:
        in_channels: 3 for RGB, 1 for grayscale microscopy.
        num_classes: output channels (one logit per class and pixel; void is not a class).
        width: channels of the first level; level ``i`` has ``width * 2**i``.
        depth: number of down-sampling steps (the original paper uses 4).
        batchnorm: BatchNorm after every convolution (trains faster and more stably).
        bilinear: bilinear upsampling + 1x1 conv (fewer parameters) instead of a
            transposed convolution.
        skip: skip connections on (U-Net) or off (a plain encoder-decoder).
        stem_stride: 2 runs the whole network at half the input resolution behind a
            strided convolution and upsamples the logits: about 4x less compute.

    Works for any input height and width; the output has the input's spatial size.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 11, width: int = 32, depth: int = 4,
                 batchnorm: bool = True, bilinear: bool = True, skip: bool = True, stem_stride: int = 1):
        super().__init__()
        if depth < 1 or width < 2 or stem_stride not in (1, 2):
            raise ValueError(f"UNet needs depth >= 1, width >= 2 and stem_stride 1 or 2 "
                             f"(got depth={depth}, width={width}, stem_stride={stem_stride})")
        self.config = dict(in_channels=in_channels, num_classes=num_classes, width=width, depth=depth,
                           batchnorm=batchnorm, bilinear=bilinear, skip=skip, stem_stride=stem_stride)
        channels = [width * 2 ** i for i in range(depth + 1)]
        if stem_stride == 2:
            self.stem = nn.Sequential(*conv_bn_relu(in_channels, width, batchnorm, stride=2))
            self.inc = DoubleConv(width, width, batchnorm)
        else:
            self.stem = nn.Identity()
            self.inc = DoubleConv(in_channels, width, batchnorm)
        self.downs = nn.ModuleList(Down(channels[i], channels[i + 1], batchnorm) for i in range(depth))
        self.ups = nn.ModuleList(Up(channels[i + 1], channels[i], batchnorm, bilinear, skip)
                                 for i in reversed(range(depth)))
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = self.inc(self.stem(x))
        features = [x]
        for down in self.downs:
            features.append(down(features[-1]))
        x = features.pop()
        for up in self.ups:
            x = up(x, features.pop())
        logits = self.head(x)
        if logits.shape[-2:] != size:
            # In fp32 and the plain (NCHW) layout: for these few channels at full size, the
            # upsampling and its backward pass run faster than in bf16 channels_last (a training
            # step of the stride-2 model at 224x320: 155 vs 165 ms, Intel Xeon with AMX).
            logits = F.interpolate(logits.float().contiguous(), size=size, mode="bilinear", align_corners=False)
        return logits

    @classmethod
    def from_config(cls, config: dict) -> "UNet":
        """Rebuild a model from ``model.config`` (as stored in checkpoints)."""
        known = {k: config[k] for k in ("in_channels", "num_classes", "width", "depth", "batchnorm",
                                        "bilinear", "skip", "stem_stride") if k in config}
        return cls(**known)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An inference copy of ``model`` in which every BatchNorm that directly follows a
    convolution is folded into that convolution; ``model`` itself is left as it was.

    In eval mode BatchNorm is a fixed per-channel affine map, ``y = a * x + b`` with
    ``a = gamma / sqrt(running_var + eps)`` and ``b = beta - a * running_mean``. Applied
    after a convolution it can be baked into the convolution's weights (``W * a``) and bias
    (``bias * a + b``): the same logits (up to float rounding), one pass over the
    activations fewer per layer. Only for inference: a folded model has no batch
    statistics left to learn. ``benchmarks/speed.py`` measures the gain on your machine
    (figures in ``benchmarks/RESULTS.md``)."""
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for before, name in zip(names, names[1:]):
            conv, bn = module._modules[before], module._modules[name]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats
                    and bn.running_mean is not None and bn.num_features == conv.out_channels):
                continue
            module._modules[before] = fuse_conv_bn_eval(conv, bn)   # torch's own folding arithmetic
            module._modules[name] = nn.Identity()
    return folded


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
