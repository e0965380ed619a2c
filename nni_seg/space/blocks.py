"""The building blocks of the networks, keyed by the readable names of :mod:`nni_seg.space.arch`.

Plain PyTorch (no NNI). Every conv op maps (B, C_in, H, W) -> (B, C_out, H, W) at unchanged
resolution and ends with BatchNorm + activation, so any op can replace any other inside a cell.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "gelu": lambda: nn.GELU(),
}


def lookup(registry: dict, name: str, what: str):
    """``registry[name]`` with an error that lists the valid names."""
    try:
        return registry[name]
    except KeyError:
        raise KeyError(f"unknown {what} {name!r}; valid: {', '.join(sorted(registry))}") from None


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise conv (``groups == in_channels``) that trains in fp32 under CPU autocast when its kernel is 5x5
    or larger: oneDNN's bf16 channels-last backward for it is 2-3x slower than fp32 (docs/performance.md), while
    the pointwise conv after it gains from bf16; inference (no grad) stays bf16. Same parameters and state-dict
    names as ``nn.Conv2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.kernel_size[0] >= 5 and x.device.type == "cpu" and torch.is_grad_enabled()
                and torch.is_autocast_enabled("cpu")):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)


class ConvBNAct(nn.Sequential):
    """Conv (optionally depthwise-separable / dilated / strided) -> BatchNorm -> activation."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, *, dilation: int = 1, stride: int = 1,
                 separable: bool = False, act: str = "relu"):
        pad = dilation * (kernel - 1) // 2
        if separable:
            layers = [
                ("dw", DepthwiseConv2d(c_in, c_in, kernel, stride, pad, dilation=dilation, groups=c_in, bias=False)),
                ("pw", nn.Conv2d(c_in, c_out, 1, bias=False)),
            ]
        else:
            layers = [("conv", nn.Conv2d(c_in, c_out, kernel, stride, pad, dilation=dilation, bias=False))]
        layers += [("bn", nn.BatchNorm2d(c_out)), ("act", lookup(ACTIVATIONS, act, "activation")())]
        super().__init__(OrderedDict(layers))


class ConvBN(nn.Sequential):
    """1x1 conv -> BatchNorm: a channel projection without activation (sum joins, pooled branches)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(OrderedDict([("conv", nn.Conv2d(c_in, c_out, 1, bias=False)), ("bn", nn.BatchNorm2d(c_out))]))


CONV_BUILDERS: dict[str, Callable[[int, int, str], nn.Module]] = {
    "conv3x3": lambda c_in, c_out, act: ConvBNAct(c_in, c_out, 3, act=act),
    "conv5x5": lambda c_in, c_out, act: ConvBNAct(c_in, c_out, 5, act=act),
    "sep3x3": lambda c_in, c_out, act: ConvBNAct(c_in, c_out, 3, separable=True, act=act),
    "sep5x5": lambda c_in, c_out, act: ConvBNAct(c_in, c_out, 5, separable=True, act=act),
    "dil3x3": lambda c_in, c_out, act: ConvBNAct(c_in, c_out, 3, dilation=2, act=act),
}

# Parameter-free node ops: they keep the channel count (C_in -> C_in).
FREE_OPS: dict[str, Callable[[], nn.Module]] = {
    "maxpool3x3": lambda: nn.MaxPool2d(3, stride=1, padding=1),
    "avgpool3x3": lambda: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
    "identity": lambda: nn.Identity(),
}


class Cell(nn.Module):
    """Two nodes. ``serial``: node2(node1(x)). ``parallel_sum``: node1(x) + node2(x) (node2 projected by a
    1x1 conv-BN when it keeps C_in != C_out). ``parallel_concat``: 1x1 conv-BN-act over
    [node1(x), node2(x)]. A cell whose second node is ``none`` is not a Cell but its first node alone
    (the seed's cell; the same weights' names as the first model space)."""

    def __init__(self, node1: nn.Module, op2: str, join: str, c_in: int, c_out: int, act: str):
        super().__init__()
        self.node1 = node1
        self.join = join
        c2_in = c_out if join == "serial" else c_in
        if op2 in CONV_BUILDERS:
            self.node2, c2_out = CONV_BUILDERS[op2](c2_in, c_out, act), c_out
        else:
            self.node2, c2_out = lookup(FREE_OPS, op2, "cell op")(), c2_in
        self.proj = ConvBN(c2_out, c_out) if join == "parallel_sum" and c2_out != c_out else None
        self.fuse = ConvBNAct(c_out + c2_out, c_out, 1, act=act) if join == "parallel_concat" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.node1(x)  # (B, C_out, H, W)
        if self.join == "serial":
            return self.node2(a)
        b = self.node2(x)  # (B, C_out or C_in, H, W)
        if self.fuse is not None:
            return self.fuse(torch.cat([a, b], 1))
        return a + (self.proj(b) if self.proj is not None else b)


def make_cell(node1: nn.Module, op2: str, join: str, c_in: int, c_out: int, act: str) -> nn.Module:
    return node1 if op2 == "none" else Cell(node1, op2, join, c_in, c_out, act)


def make_downsample(kind: str, channels: int, act: str) -> nn.Module:
    """x2 downsampling: 2x2 max or average pooling, or a strided conv3x3-BN-act (C -> C)."""
    if kind == "conv":
        return ConvBNAct(channels, channels, 3, stride=2, act=act)
    return lookup({"maxpool": lambda: nn.MaxPool2d(2), "avgpool": lambda: nn.AvgPool2d(2)}, kind, "downsampling")()


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLab v3) for the small deepest feature map: a 1x1 branch, 3x3
    branches at dilations 2, 4, 6, and an image-pooling branch, each C -> C/4; concatenated, 1x1 -> C."""

    RATES = (2, 4, 6)

    def __init__(self, c: int, act: str):
        super().__init__()
        cb = max(8, c // 4)
        self.branches = nn.ModuleList([ConvBNAct(c, cb, 1, act=act)] +
                                      [ConvBNAct(c, cb, 3, dilation=r, act=act) for r in self.RATES])
        # no BatchNorm on a 1x1 map (one value per channel and image)
        self.image_pool = nn.Sequential(nn.Conv2d(c, cb, 1), lookup(ACTIVATIONS, act, "activation")())
        self.project = ConvBNAct(cb * (len(self.RATES) + 2), c, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.image_pool(x.mean((2, 3), keepdim=True)).expand(-1, -1, *x.shape[-2:])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], 1))


class PyramidPooling(nn.Module):
    """Pyramid pooling (after PSPNet): average poolings at strides 2 and 4 and a global one, each
    1x1 C -> C/4 and upsampled back, concatenated with the input, 1x1 -> C. Strides rather than bin
    counts keep it exportable to ONNX at any input size."""

    STRIDES = (2, 4)

    def __init__(self, c: int, act: str):
        super().__init__()
        cb = max(8, c // 4)
        self.branches = nn.ModuleList([ConvBNAct(c, cb, 1, act=act) for _ in self.STRIDES])
        self.global_branch = nn.Sequential(nn.Conv2d(c, cb, 1), lookup(ACTIVATIONS, act, "activation")())
        self.project = ConvBNAct(c + cb * (len(self.STRIDES) + 1), c, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [x]
        for s, branch in zip(self.STRIDES, self.branches):
            p = F.avg_pool2d(x, s, s, ceil_mode=True, count_include_pad=False)  # (B, C, ~H/s, ~W/s)
            outs.append(F.interpolate(branch(p), size=size, mode="bilinear", align_corners=False))
        outs.append(self.global_branch(x.mean((2, 3), keepdim=True)).expand(-1, -1, *size))
        return self.project(torch.cat(outs, 1))


def make_context(kind: str, channels: int, act: str) -> nn.Module | None:
    """The context block at the deepest level, or None for ``none``."""
    if kind == "none":
        return None
    return lookup({"aspp": ASPP, "ppm": PyramidPooling}, kind, "context block")(channels, act)


class Upsample(nn.Module):
    """x2 upsampling by interpolation or a learned transposed conv; the output is resized to ``size``
    (the skip's), which keeps odd input sizes working."""

    MODES = ("nearest", "bilinear", "deconv")

    def __init__(self, mode: str, channels: int):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"unknown upsampling {mode!r}; valid: {', '.join(self.MODES)}")
        self.mode = mode
        self.deconv = nn.ConvTranspose2d(channels, channels, 2, stride=2) if mode == "deconv" else None

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.deconv is not None:
            x = self.deconv(x)
            # an exported graph must not bake in the comparison of the size it was traced at: there the
            # resize is always in the graph (at equal sizes, nearest is an exact copy)
            exporting = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
            return x if x.shape[-2:] == size and not exporting else F.interpolate(x, size=size, mode="nearest")
        if self.mode == "bilinear":
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return F.interpolate(x, size=size, mode="nearest")
