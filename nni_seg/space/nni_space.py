"""The NNI model space: :class:`SegSpace`, the plain network of :mod:`nni_seg.space.net` with NNI's choices.

NNI appears only here (and in the search and trial edges). The vocabulary lives in
:mod:`nni_seg.space.arch`; this module turns it into NNI mutables and writes the nnictl search-space JSON.
Cell ops are ``LayerChoice`` s (one label shared by the cells of a level), stage depths ``Repeat`` s,
every other choice a plain ``nni.choice`` (a one-shot supernet cannot share weights across them; ENAS
pins them with ``fixed``). Every choice is a single categorical, so every NNI tuner accepts the JSON.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

# NNI 3.0 probes every torch.nn class when imported and warns about ones added after its release.
warnings.filterwarnings("ignore", message=r".*is found to be not a nn.Module", category=RuntimeWarning)

import nni  # noqa: E402
import torch  # noqa: E402
from nni.mutable import Categorical, ensure_frozen  # noqa: E402
from nni.nas.nn.pytorch import LayerChoice, ModelSpace, Repeat  # noqa: E402
from nni.nas.space import current_model, model_context  # noqa: E402
from torch import nn  # noqa: E402

from .arch import CHOICES, CONV_OPS, MACRO_LABELS, MAX_LEVELS, Arch  # noqa: E402
from .net import SegNet, build_into, segnet_forward  # noqa: E402


class _NniChooser:
    """Choices as NNI mutables registered on ``space`` (or the values pinned in ``fixed``)."""

    def __init__(self, space: ModelSpace, fixed: dict[str, Any], frozen: bool):
        self.space, self.fixed, self.frozen = space, fixed, frozen

    def value(self, label: str) -> Any:
        if label in self.fixed:
            return self.fixed[label]
        return ensure_frozen(self.space.add_mutable(nni.choice(label, list(CHOICES[label]))))

    def op(self, label: str, make: Callable[[str], nn.Module]) -> nn.Module:
        return LayerChoice({name: make(name) for name in CONV_OPS}, label=label)

    def repeat(self, label: str, make: Callable[[int], nn.Module]) -> nn.Module:
        return Repeat(make, nni.choice(label, list(CHOICES[label])))

    def build_levels(self, levels: int) -> int:
        # a dry run (no sample in context) builds every level so that all choices get registered
        return levels if self.frozen or "levels" in self.fixed else MAX_LEVELS


class SegSpace(ModelSpace):
    """Encoder-decoder segmentation space; a frozen sample is the plain :class:`~nni_seg.space.net.SegNet`.

    Args:
        num_classes: output channels of the 1x1 head.
        in_channels: input image channels.
        fixed: macro choices (:data:`~nni_seg.space.arch.MACRO_LABELS`) to pin instead of search, e.g. for
            a one-shot supernet.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, fixed: dict[str, Any] | None = None):
        super().__init__()
        fixed = dict(fixed or {})
        unknown = sorted(set(fixed) - set(MACRO_LABELS))
        if unknown:
            raise ValueError(f"cannot fix {', '.join(unknown)}; fixable: {', '.join(MACRO_LABELS)}")
        for label, value in fixed.items():
            if value not in CHOICES[label]:
                raise ValueError(f"fixed {label}={value!r} is not one of {list(CHOICES[label])}")
        self.build_args = (num_classes, in_channels, fixed)
        build_into(self, _NniChooser(self, fixed, current_model() is not None), num_classes, in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return segnet_forward(self, x)

    def freeze(self, sample: Arch) -> nn.Module:
        """The plain network of ``sample`` (what NNI's multi-trial strategies train)."""
        num_classes, in_channels, fixed = self.build_args
        return SegNet({**sample, **fixed}, num_classes, in_channels)

    def nni_freeze(self, sample: Arch) -> nn.Module:
        """The sample as NNI itself freezes a model space (its LayerChoice/Repeat resolved): for tests."""
        num_classes, in_channels, fixed = self.build_args
        with model_context(sample):
            return SegSpace(num_classes, in_channels, fixed)


def search_space() -> dict[str, Categorical]:
    """label -> NNI ``Categorical`` for every choice the model space registers."""
    space = SegSpace(num_classes=2).simplify()
    for label, mutable in space.items():
        if not isinstance(mutable, Categorical):
            raise TypeError(f"choice {label!r} is {type(mutable).__name__}, not a single categorical")
    return dict(space)


__all__ = ["SegSpace", "search_space"]
