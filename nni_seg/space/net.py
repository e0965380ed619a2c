"""The deployable network: plain PyTorch, no NNI.

``SegNet(arch, num_classes)`` builds the encoder-decoder that an architecture dict describes
(:mod:`nni_seg.space.arch`). The NNI model space (:class:`nni_seg.space.nni_space.SegSpace`) is built by the same
:func:`build_into` with NNI's choices in place of the plain ones, so a frozen sample of the space and
``SegNet`` have the same modules and the same weights' names (tested).

Input (B, in_channels, H, W) -> logits (B, num_classes, H, W), for any H, W >= 2**(levels-1).
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

import torch
from torch import nn

from .arch import Arch, validate_arch
from .blocks import CONV_BUILDERS, Upsample, make_cell, make_context, make_downsample


class Chooser(Protocol):
    """Where the builder gets its choices: plain values (``SegNet``) or NNI mutables (``SegSpace``)."""

    def value(self, label: str) -> Any:
        """A macro choice (levels, widths, joins, ...): a plain value while building."""

    def op(self, label: str, make: Callable[[str], nn.Module]) -> nn.Module:
        """A cell's first node: the chosen conv op, or an NNI ``LayerChoice`` over all of them."""

    def repeat(self, label: str, make: Callable[[int], nn.Module]) -> nn.Module:
        """``depth`` cells in series (``nn.Sequential``), or an NNI ``Repeat``."""

    def build_levels(self, levels: int) -> int:
        """How many levels to build (an NNI dry run builds all, to register every choice)."""


class PlainChooser:
    """Choices from an architecture dict: builds exactly the chosen modules."""

    def __init__(self, arch: Arch):
        self.arch = arch

    def value(self, label: str) -> Any:
        return self.arch[label]

    def op(self, label: str, make: Callable[[str], nn.Module]) -> nn.Module:
        return make(self.arch[label])

    def repeat(self, label: str, make: Callable[[int], nn.Module]) -> nn.Module:
        return nn.Sequential(*(make(i) for i in range(self.arch[label])))

    def build_levels(self, levels: int) -> int:
        return levels


def build_into(net: nn.Module, chooser: Chooser, num_classes: int, in_channels: int) -> None:
    """Create the modules of the network on ``net`` (``SegNet`` or ``SegSpace``) from ``chooser``."""
    act, up, levels = chooser.value("act"), chooser.value("up"), chooser.value("levels")
    n_levels = chooser.build_levels(levels)
    net.n_levels = n_levels
    enc = {k: chooser.value(f"enc_{k}") for k in ("op2", "join")}
    dec = {k: chooser.value(f"dec_{k}") for k in ("op2", "join")}

    def cell(label: str, c_in: int, c_out: int, side: dict) -> nn.Module:
        node1 = chooser.op(label, lambda name: CONV_BUILDERS[name](c_in, c_out, act))
        return make_cell(node1, side["op2"], side["join"], c_in, c_out, act)

    widths = [chooser.value(f"enc{i}_width") for i in range(1, n_levels + 1)]
    net.downs = nn.ModuleList()
    net.encoder = nn.ModuleList()
    c = in_channels
    for i, width in enumerate(widths, start=1):
        if i > 1:
            net.downs.append(make_downsample(chooser.value(f"down{i}"), c, act))
        c_prev = c
        net.encoder.append(chooser.repeat(f"enc{i}_depth", lambda idx, c_prev=c_prev, width=width, i=i:
                                          cell(f"enc{i}_op", c_prev if idx == 0 else width, width, enc)))
        c = width
    context = make_context(chooser.value("context"), c, act)
    if context is not None:  # absent, not an Identity: the seed's weights' names stay as they were
        net.context = context

    net.skips = []
    net.ups = nn.ModuleList()
    net.decoder = nn.ModuleList()
    for i in range(n_levels - 1, 0, -1):  # deepest decoder level first
        skip = chooser.value(f"dec{i}_skip") == "concat"
        net.skips.append(skip)
        net.ups.append(Upsample(up, c))
        c_cat = c + (widths[i - 1] if skip else 0)
        net.decoder.append(cell(f"dec{i}_op", c_cat, widths[i - 1], dec))
        c = widths[i - 1]
    net.head = nn.Conv2d(c, num_classes, 1)


def segnet_forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The forward pass shared by ``SegNet`` and ``SegSpace``."""
    feats = []
    for i, stage in enumerate(net.encoder):
        x = stage(net.downs[i - 1](x) if i else x)  # (B, w_i, ~H / 2**i, ~W / 2**i)
        feats.append(x)
    if hasattr(net, "context"):
        x = net.context(x)
    for j, (up, cell, skip) in enumerate(zip(net.ups, net.decoder, net.skips)):
        ref = feats[-2 - j]  # encoder features of the level this decoder cell works at
        x = up(x, ref.shape[-2:])
        if skip:
            x = torch.cat([x, ref], dim=1)
        x = cell(x)
    return net.head(x)  # (B, num_classes, H, W)


class SegNet(nn.Module):
    """The network of one architecture, as a plain ``nn.Module``.

    Args:
        arch: an architecture dict (validated; see :mod:`nni_seg.space.arch`).
        num_classes: output channels of the 1x1 head (logits; the loss applies the softmax).
        in_channels: input image channels.
    """

    def __init__(self, arch: Arch, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.arch = validate_arch(arch)
        build_into(self, PlainChooser(self.arch), num_classes, in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return segnet_forward(self, x)

