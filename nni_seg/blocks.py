"""Candidate operations of the model space, keyed by readable names.

Every op maps (B, C_in, H, W) -> (B, C_out, H, W) at unchanged resolution and ends with
BatchNorm + activation, so any op can replace any other inside a cell.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "gelu": lambda: nn.GELU(),
}

UPSAMPLERS = ("nearest", "bilinear", "deconv")


def lookup(registry: dict, name: str, what: str):
    """``registry[name]`` with an error that lists the valid names."""
    try:
        return registry[name]
    except KeyError:
        raise KeyError(f"unknown {what} {name!r}; valid: {', '.join(sorted(registry))}") from None


class ConvBNAct(nn.Sequential):
    """Conv (optionally depthwise-separable / dilated) -> BatchNorm -> activation."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, *, dilation: int = 1,
                 separable: bool = False, act: str = "relu"):
        pad = dilation * (kernel - 1) // 2
        if separable:
            layers = [
                ("dw", nn.Conv2d(c_in, c_in, kernel, padding=pad, dilation=dilation, groups=c_in, bias=False)),
                ("pw", nn.Conv2d(c_in, c_out, 1, bias=False)),
            ]
        else:
            layers = [("conv", nn.Conv2d(c_in, c_out, kernel, padding=pad, dilation=dilation, bias=False))]
        layers += [("bn", nn.BatchNorm2d(c_out)), ("act", lookup(ACTIVATIONS, act, "activation")())]
        super().__init__(OrderedDict(layers))


OPS: dict[str, Callable[..., nn.Module]] = {
    "conv3x3": lambda c_in, c_out, act: ConvBNAct(c_in, c_out, 3, act=act),
    "conv5x5": lambda c_in, c_out, act: ConvBNAct(c_in, c_out, 5, act=act),
    "sep3x3": lambda c_in, c_out, act: ConvBNAct(c_in, c_out, 3, separable=True, act=act),
    "sep5x5": lambda c_in, c_out, act: ConvBNAct(c_in, c_out, 5, separable=True, act=act),
    "dil3x3": lambda c_in, c_out, act: ConvBNAct(c_in, c_out, 3, dilation=2, act=act),
}


def candidate_ops(c_in: int, c_out: int, act: str) -> "OrderedDict[str, nn.Module]":
    """All candidate ops for one cell, in registry order (the key is the choice's value)."""
    return OrderedDict((name, make(c_in, c_out, act)) for name, make in OPS.items())


class Upsample(nn.Module):
    """x2 upsampling by interpolation or a learned transposed conv; output is resized to ``ref``.

    Resizing to the skip/reference size keeps odd input sizes working.
    """

    def __init__(self, mode: str, channels: int):
        super().__init__()
        if mode not in UPSAMPLERS:
            raise ValueError(f"unknown upsampling {mode!r}; valid: {', '.join(UPSAMPLERS)}")
        self.mode = mode
        self.deconv = nn.ConvTranspose2d(channels, channels, 2, stride=2) if mode == "deconv" else None

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.deconv is not None:
            x = self.deconv(x)
            return x if x.shape[-2:] == size else F.interpolate(x, size=size, mode="nearest")
        if self.mode == "bilinear":
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return F.interpolate(x, size=size, mode="nearest")
