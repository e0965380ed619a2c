"""Every network of the space is a working torch module: a base test over a sample of architectures (in the
manner of smp's model tester): it builds, runs forward and backward at an odd size, and every parameter
gets a finite gradient."""
import random

import pytest
import torch

from nni_seg.space.arch import CHOICES, NAMED_ARCHS, validate_arch
from nni_seg.space.net import SegNet


def _sample(seed: int) -> dict:
    rng = random.Random(seed)
    arch = {label: rng.choice(values) for label, values in CHOICES.items()}
    for i in range(1, 5):  # small widths keep the test fast; every other choice is drawn
        arch[f"enc{i}_width"] = CHOICES[f"enc{i}_width"][0]
    return validate_arch(arch)


ARCHS = {**{name: make() for name, make in NAMED_ARCHS.items()}, **{f"sample{s}": _sample(s) for s in range(8)}}


@pytest.mark.parametrize("name", list(ARCHS))
def test_a_network_of_the_space_trains_every_parameter(name):
    torch.manual_seed(0)
    net = SegNet(ARCHS[name], num_classes=3, in_channels=3)
    x = torch.randn(2, 3, 40, 56)  # not a power of two: the decoder must match the encoder's sizes
    out = net(x)
    assert out.shape == (2, 3, 40, 56) and torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing[:5]
