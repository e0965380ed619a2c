"""The segmentation model space: an encoder-decoder written with NNI mutables.

Choices (labels are the keys of an architecture dict):

=================  ======================================  ===============================
label              values                                  mutable
=================  ======================================  ===============================
``levels``         3, 4 resolution levels (2 or 3 pools)   ``nni.choice``
``act``            relu, silu, gelu                        ``nni.choice``
``up``             nearest, bilinear, deconv               ``nni.choice``
``enc{i}_op``      conv3x3, conv5x5, sep3x3, sep5x5, dil3x3 ``LayerChoice`` (shared by the stage)
``enc{i}_width``   per level, see ``WIDTHS``               ``nni.choice``
``enc{i}_depth``   1, 2, 3 cells                           ``Repeat``
``dec{i}_op``      as ``enc{i}_op``                         ``LayerChoice``
``dec{i}_skip``    none (encoder-decoder), concat (U-Net)  ``nni.choice``
=================  ======================================  ===============================

Level ``i`` (1-based) works at 1/2**(i-1) of the input resolution. Every choice is a single
categorical, so every NNI tuner (TPE, Evolution, Random, ...) accepts the generated search space.
Choices of levels beyond ``levels`` are present in every sample but have no effect
(:func:`active_labels` lists those that do).

The seed's fixed network (cells of 64/128/256, two max-pools, two upsamplings, no skips, 1x1 head)
is :func:`seed_arch`.
"""
from __future__ import annotations

import json
import warnings
from typing import Any

# NNI 3.0 probes every torch.nn class when imported and warns about ones added after its release.
warnings.filterwarnings("ignore", message=r".*is found to be not a nn.Module", category=RuntimeWarning)

import nni  # noqa: E402
import torch  # noqa: E402
from nni.mutable import Categorical, ensure_frozen
from nni.nas.nn.pytorch import LayerChoice, ModelSpace, Repeat
from nni.nas.space import current_model, model_context
from torch import nn

from .blocks import ACTIVATIONS, OPS, UPSAMPLERS, Upsample, candidate_ops

LEVELS = (3, 4)
MAX_LEVELS = max(LEVELS)
WIDTHS = {1: (16, 32, 64), 2: (32, 64, 128), 3: (64, 128, 256), 4: (128, 256)}
DEPTHS = (1, 2, 3)
SKIPS = ("none", "concat")

Arch = dict[str, Any]

# The macro (topology / width) choices: plain ``nni.choice``s that a one-shot supernet cannot share
# weights across; ``SegSpace(fixed=...)`` pins them, leaving ops and depths to search.
MACRO_VALUES: dict[str, tuple] = {
    "levels": LEVELS, "act": tuple(ACTIVATIONS), "up": UPSAMPLERS,
    **{f"enc{i}_width": WIDTHS[i] for i in range(1, MAX_LEVELS + 1)},
    **{f"dec{i}_skip": SKIPS for i in range(1, MAX_LEVELS)},
}


class SegSpace(ModelSpace):
    """Encoder-decoder segmentation space. A frozen sample is a plain ``nn.Module``.

    Args:
        num_classes: output channels of the 1x1 head (logits, softmax is applied by the loss).
        in_channels: input image channels.
        fixed: macro choices (``MACRO_VALUES``) to pin instead of search, e.g. for a one-shot supernet.

    Input (B, in_channels, H, W) -> logits (B, num_classes, H, W); any H, W >= 2**(levels-1).
    """

    def __init__(self, num_classes: int, in_channels: int = 3, fixed: dict[str, Any] | None = None):
        super().__init__()
        fixed = dict(fixed or {})
        unknown = sorted(set(fixed) - set(MACRO_VALUES))
        if unknown:
            raise ValueError(f"cannot fix {', '.join(unknown)}; fixable: {', '.join(MACRO_VALUES)}")

        def choice(label: str):
            """A macro choice: a mutable, or the value given in ``fixed``."""
            if label in fixed:
                if fixed[label] not in MACRO_VALUES[label]:
                    raise ValueError(f"fixed {label}={fixed[label]!r} is not one of {list(MACRO_VALUES[label])}")
                return fixed[label]
            return ensure_frozen(self.add_mutable(nni.choice(label, list(MACRO_VALUES[label]))))

        # Dry run (no sample in context): build every level so that all mutables get registered.
        frozen = current_model() is not None
        levels, act, up = choice("levels"), choice("act"), choice("up")
        n_levels = levels if frozen or "levels" in fixed else MAX_LEVELS
        self.n_levels = n_levels

        widths = [choice(f"enc{i}_width") for i in range(1, n_levels + 1)]
        self.pool = nn.MaxPool2d(2)
        self.encoder = nn.ModuleList()
        c_in = in_channels
        for i, width in enumerate(widths, start=1):
            self.encoder.append(_stage(f"enc{i}", c_in, width, act))
            c_in = width

        self.skips: list[bool] = []
        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in range(n_levels - 1, 0, -1):  # deepest decoder level first
            skip = choice(f"dec{i}_skip") == "concat"
            self.skips.append(skip)
            self.ups.append(Upsample(up, c_in))
            c_cat = c_in + (widths[i - 1] if skip else 0)
            self.decoder.append(LayerChoice(candidate_ops(c_cat, widths[i - 1], act), label=f"dec{i}_op"))
            c_in = widths[i - 1]
        self.head = nn.Conv2d(c_in, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for i, stage in enumerate(self.encoder):
            x = stage(self.pool(x) if i else x)  # (B, w_i, H / 2**i, W / 2**i)
            feats.append(x)
        for j, (up, cell, skip) in enumerate(zip(self.ups, self.decoder, self.skips)):
            ref = feats[-2 - j]  # encoder features of the level this decoder cell works at
            x = up(x, ref.shape[-2:])
            if skip:
                x = torch.cat([x, ref], dim=1)
            x = cell(x)
        return self.head(x)  # (B, num_classes, H, W)

    def freeze(self, sample: Arch) -> nn.Module:
        """Rebuild the space with every choice fixed by ``sample``: a plain ``nn.Module``."""
        with model_context(sample):
            return SegSpace(*self.trace_args, **self.trace_kwargs)


def _stage(label: str, c_in: int, c_out: int, act: str) -> nn.Module:
    """``depth`` cells sharing one op choice; the first maps c_in -> c_out."""
    return Repeat(
        lambda idx: LayerChoice(candidate_ops(c_in if idx == 0 else c_out, c_out, act), label=f"{label}_op"),
        nni.choice(f"{label}_depth", list(DEPTHS)))


def search_space() -> dict[str, Categorical]:
    """label -> NNI ``Categorical`` for every choice of the space (the single source of truth)."""
    space = SegSpace(num_classes=2).simplify()
    for label, mutable in space.items():
        if not isinstance(mutable, Categorical):
            raise TypeError(f"choice {label!r} is {type(mutable).__name__}, not a single categorical")
    return dict(space)


def legacy_search_space(kind: str = "choice") -> dict[str, dict]:
    """The search-space JSON for ``nnictl`` (``searchSpaceFile``).

    ``kind="choice"`` is NNI's ``as_legacy_dict()`` output (TPE, Random, Evolution, ...);
    ``kind="layer_choice"`` is the variant NNI's ``RegularizedEvolutionTuner`` requires.
    """
    if kind not in ("choice", "layer_choice"):
        raise ValueError(f"unknown search-space kind {kind!r}; valid: choice, layer_choice")
    legacy = {label: m.as_legacy_dict() for label, m in search_space().items()}
    if kind == "layer_choice":
        legacy = {label: {"_type": "layer_choice", "_value": d["_value"]} for label, d in legacy.items()}
    return legacy


def decode_parameters(params: dict[str, Any]) -> Arch:
    """NNI trial parameters -> architecture dict.

    Accepts plain values, ``{"_value": v, "_idx": i}`` (``layer_choice``) and
    ``{"_name": v, ...}`` (nested ``choice``) forms.
    """
    arch = {}
    for label, value in params.items():
        if isinstance(value, dict):
            if "_value" in value:
                value = value["_value"]
            elif "_name" in value:
                value = value["_name"]
            else:
                raise ValueError(f"cannot decode parameter {label}={value!r}")
        arch[label] = value
    return arch


def validate_arch(arch: Arch, *, source: str = "architecture") -> Arch:
    """Check that ``arch`` names every choice once with a valid value; return it unchanged."""
    if not isinstance(arch, dict):
        raise ValueError(f"{source}: expected a JSON object of choices, got {type(arch).__name__}")
    space = search_space()
    unknown = sorted(set(arch) - set(space))
    if unknown:
        raise ValueError(f"{source}: unknown choice(s) {', '.join(unknown)}; valid: {', '.join(space)}")
    missing = [label for label in space if label not in arch]
    if missing:
        raise ValueError(f"{source}: missing choice(s) {', '.join(missing)}")
    for label, mutable in space.items():
        if arch[label] not in mutable.values:
            raise ValueError(f"{source}: {label}={arch[label]!r} is not one of {list(mutable.values)}")
    return arch


def active_labels(arch: Arch) -> list[str]:
    """The labels that change the network for this architecture (others are inert)."""
    levels = arch["levels"]
    out = ["levels", "act", "up"]
    for i in range(1, levels + 1):
        out += [f"enc{i}_op", f"enc{i}_width", f"enc{i}_depth"]
    for i in range(levels - 1, 0, -1):
        out += [f"dec{i}_op", f"dec{i}_skip"]
    return out


def seed_arch() -> Arch:
    """The seed's fixed encoder-decoder: conv3x3-BN-ReLU cells 64/128/256, 2 pools, no skips."""
    arch: Arch = {"levels": 3, "act": "relu", "up": "nearest"}
    for i in range(1, MAX_LEVELS + 1):
        arch[f"enc{i}_op"] = "conv3x3"
        arch[f"enc{i}_width"] = {1: 64, 2: 128, 3: 256, 4: 256}[i]
        arch[f"enc{i}_depth"] = 1
    for i in range(1, MAX_LEVELS):
        arch[f"dec{i}_op"] = "conv3x3"
        arch[f"dec{i}_skip"] = "none"
    return arch


def build_model(arch: Arch, num_classes: int, in_channels: int = 3) -> nn.Module:
    """A trainable ``nn.Module`` for ``arch`` (validated first)."""
    validate_arch(arch)
    return SegSpace(num_classes, in_channels).freeze(arch)


def arch_summary(arch: Arch) -> str:
    """One line: the active choices, e.g. ``levels=3 act=relu ... dec1_skip=none``."""
    return " ".join(f"{k}={arch[k]}" for k in active_labels(arch))


def dumps_space(kind: str = "choice") -> str:
    """The committed search-space file's exact text."""
    return json.dumps(legacy_search_space(kind), indent=2) + "\n"


__all__ = ["SegSpace", "search_space", "legacy_search_space", "decode_parameters", "validate_arch",
           "active_labels", "seed_arch", "build_model", "arch_summary", "dumps_space", "OPS", "MACRO_VALUES"]
