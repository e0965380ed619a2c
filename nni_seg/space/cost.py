"""Model cost: parameters, multiply-accumulates (counted by forward hooks) and latency."""
from __future__ import annotations

import contextlib
import time

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on a zero input of ``input_shape`` (B, C, H, W).

    Counts Conv2d, ConvTranspose2d and Linear (the ops that dominate); BN, activations, pooling
    and interpolation are not counted. Divide by B for a per-image figure.
    """
    total = 0

    def conv_hook(m: nn.Conv2d, inp, out):
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def deconv_hook(m: nn.ConvTranspose2d, inp, out):
        nonlocal total
        total += inp[0].numel() * (m.out_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m: nn.Linear, inp, out):
        nonlocal total
        total += out.numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.ConvTranspose2d):
            hooks.append(m.register_forward_hook(deconv_hook))
        elif isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    p = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(input_shape, device=p.device, dtype=p.dtype))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total


@torch.no_grad()
def measure_latency(model: nn.Module, input_shape: tuple[int, ...], repeats: int = 5, path=None) -> float:
    """Median milliseconds of one forward pass on ``input_shape`` on the model's device, in the arithmetic
    of ``path`` (a :class:`~nni_seg.training.precision.ComputePath`; default: fp32 as the model stands)."""
    p = next(model.parameters())
    x = torch.zeros(input_shape, device=p.device, dtype=p.dtype)
    if path is not None:
        x = path.input(x)
    autocast = path.autocast if path is not None else contextlib.nullcontext
    was_training = model.training
    model.eval()
    times = []
    try:
        for _ in range(repeats + 1):
            if p.is_cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            with autocast():
                model(x)
            if p.is_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    finally:
        model.train(was_training)
    return 1000 * sorted(times[1:])[len(times[1:]) // 2]


def arch_mmacs(arch: dict, num_classes: int, in_channels: int, size: tuple[int, int], device: str = "meta") -> float:
    """MMACs per image of the network of ``arch`` at ``size``, counted on ``device`` (``meta``: shapes only,
    no arithmetic; a first call in a process costs a few seconds, later ones milliseconds)."""
    from .net import SegNet

    with torch.device(device):
        model = SegNet(arch, num_classes, in_channels)
    return count_macs(model, (1, in_channels, *size)) / 1e6
