"""The vocabulary of the model space: every choice, its values, and named reference architectures.

This table is the single source of truth: the plain network (:mod:`nni_seg.space.net`), the NNI model space
(:mod:`nni_seg.space.nni_space`) and the generated search-space JSON all read it; a drift test checks each of them.
It imports neither torch nor NNI, so validating an architecture costs nothing.

An architecture is a plain JSON dict ``label -> value``. Levels are numbered from 1 (full resolution);
level ``i`` works at 1/2**(i-1) of the input size.

=================  ==========================================================  =========================
label              values                                                      what it decides
=================  ==========================================================  =========================
``levels``         3, 4                                                        resolution levels
``act``            relu, silu, gelu                                            activation everywhere
``up``             nearest, bilinear, deconv                                   decoder x2 upsampling
``context``        none, aspp, ppm                                             block at the deepest level
``enc_op2``        none, a conv op, maxpool3x3, avgpool3x3, identity           2nd node of encoder cells
``enc_join``       serial, parallel_sum, parallel_concat                       how the two nodes combine
``dec_op2``        as ``enc_op2``                                              2nd node of decoder cells
``dec_join``       as ``enc_join``                                             same, decoder cells
``enc{i}_op``      conv3x3, conv5x5, sep3x3, sep5x5, dil3x3                    1st node of level-i cells
``enc{i}_width``   see ``WIDTHS``                                              channels of level i
``enc{i}_depth``   1, 2, 3                                                     cells at level i
``down{i}``        maxpool, avgpool, conv (i >= 2)                             how level i is reached
``dec{i}_op``      as ``enc{i}_op``                                            1st node of the decoder cell
``dec{i}_skip``    none (encoder-decoder), concat (U-Net)                      skip from encoder level i
=================  ==========================================================  =========================

A cell is one or two nodes (each conv-BN-act, a 3x3 pooling, or the identity), joined ``serial`` (node 2
reads node 1), ``parallel_sum`` (both read the cell input, outputs added: with ``identity`` this is a
residual cell) or ``parallel_concat`` (both read the input, outputs concatenated, then a 1x1 conv);
``none`` as the second node gives the seed's single-op cell. ``context``: ``aspp`` is DeepLab's atrous
spatial pyramid (a 1x1 branch, 3x3 branches at dilations 2/4/6, image pooling; concatenated, 1x1),
``ppm`` a pyramid of average poolings (strides 2, 4 and global; each 1x1, upsampled, concatenated with the
input, 1x1). Choices of levels beyond ``levels`` (and ``*_join`` when ``*_op2`` is none) have no effect
(:func:`active_labels` lists those that do).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UserError

Arch = dict[str, Any]

LEVELS = (3, 4)
MAX_LEVELS = max(LEVELS)
ACTIVATIONS = ("relu", "silu", "gelu")
UPSAMPLERS = ("nearest", "bilinear", "deconv")
CONTEXTS = ("none", "aspp", "ppm")
CONV_OPS = ("conv3x3", "conv5x5", "sep3x3", "sep5x5", "dil3x3")
NODE2_OPS = ("none", *CONV_OPS, "maxpool3x3", "avgpool3x3", "identity")
JOINS = ("serial", "parallel_sum", "parallel_concat")
DOWNSAMPLERS = ("maxpool", "avgpool", "conv")
WIDTHS = {1: (16, 32, 64), 2: (32, 64, 128), 3: (64, 128, 256), 4: (128, 256)}
DEPTHS = (1, 2, 3)
SKIPS = ("none", "concat")


def _choices() -> dict[str, tuple]:
    out: dict[str, tuple] = {"levels": LEVELS, "act": ACTIVATIONS, "up": UPSAMPLERS, "context": CONTEXTS,
                             "enc_op2": NODE2_OPS, "enc_join": JOINS, "dec_op2": NODE2_OPS, "dec_join": JOINS}
    for i in range(1, MAX_LEVELS + 1):
        out[f"enc{i}_op"] = CONV_OPS
        out[f"enc{i}_width"] = WIDTHS[i]
        out[f"enc{i}_depth"] = DEPTHS
        if i > 1:
            out[f"down{i}"] = DOWNSAMPLERS
    for i in range(MAX_LEVELS - 1, 0, -1):
        out[f"dec{i}_op"] = CONV_OPS
        out[f"dec{i}_skip"] = SKIPS
    return out


CHOICES: dict[str, tuple] = _choices()
"""label -> allowed values, in search-space order (the generated JSON keeps this order)."""

# Choices that a one-shot supernet cannot share weights across (they change the wiring or the widths):
# plain values, pinned when ENAS searches. The others (cell ops, stage depths) are LayerChoice / Repeat.
MACRO_LABELS = tuple(label for label in CHOICES if not label.endswith(("_op", "_depth")))

# Labels added after the first model space, with the value that reproduces its networks exactly:
# a top_arch.json written before them still builds the same network (same modules, same weights' names).
LEGACY_DEFAULTS: Arch = {"context": "none", "enc_op2": "none", "enc_join": "serial", "dec_op2": "none",
                         "dec_join": "serial", **{f"down{i}": "maxpool" for i in range(2, MAX_LEVELS + 1)}}


class ArchError(UserError):
    """An architecture that is not in the space; the message names the source and the label."""


def is_one_of(value: Any, values) -> bool:
    """``value`` equals one of ``values`` with the same type: ``true`` is no depth and ``64.0`` no width."""
    return any(type(value) is type(ok) and value == ok for ok in values)


def validate_arch(arch: Any, *, source: str = "architecture", fill_legacy: bool = False) -> Arch:
    """Check that ``arch`` names every choice once with an allowed value (of the exact type: ``true`` is
    no depth and ``64.0`` no width) and return it (a copy). ``fill_legacy`` fills the labels that older
    model spaces did not have with :data:`LEGACY_DEFAULTS` (for files written by them)."""
    if not isinstance(arch, dict):
        raise ArchError(f"{source}: expected a JSON object of choices, got {type(arch).__name__}")
    arch = dict(arch)
    if fill_legacy:
        for label, value in LEGACY_DEFAULTS.items():
            arch.setdefault(label, value)
    unknown = sorted(set(arch) - set(CHOICES))
    if unknown:
        raise ArchError(f"{source}: unknown choice(s) {', '.join(unknown)}; valid: {', '.join(CHOICES)}")
    missing = [label for label in CHOICES if label not in arch]
    if missing:
        raise ArchError(f"{source}: missing choice(s) {', '.join(missing)}")
    for label, values in CHOICES.items():
        v = arch[label]
        if not is_one_of(v, values):
            raise ArchError(f"{source}: {label}={v!r} is not one of {list(values)}")
    return {label: arch[label] for label in CHOICES}


def active_labels(arch: Arch) -> list[str]:
    """The labels that change the network for this architecture (the others are inert)."""
    levels = arch["levels"]
    out = ["levels", "act", "up", "context", "enc_op2"]
    if arch["enc_op2"] != "none":
        out.append("enc_join")
    out.append("dec_op2")
    if arch["dec_op2"] != "none":
        out.append("dec_join")
    for i in range(1, levels + 1):
        out += [f"enc{i}_op", f"enc{i}_width", f"enc{i}_depth"] + ([f"down{i}"] if i > 1 else [])
    for i in range(levels - 1, 0, -1):
        out += [f"dec{i}_op", f"dec{i}_skip"]
    return out


def canonical(arch: Arch) -> Arch:
    """``arch`` with every inert label set to its first value: two architectures that build the same
    network have the same canonical form (for caches and de-duplication)."""
    active = set(active_labels(arch))
    return {label: arch[label] if label in active else values[0] for label, values in CHOICES.items()}


def arch_summary(arch: Arch) -> str:
    """One line: the active choices, e.g. ``levels=3 act=relu ... dec1_skip=none``."""
    return " ".join(f"{k}={arch[k]}" for k in active_labels(arch))


def seed_arch() -> Arch:
    """The seed's fixed encoder-decoder: conv3x3-BN-ReLU cells 64/128/256, 2 max-pools, no skips."""
    arch: Arch = {"levels": 3, "act": "relu", "up": "nearest", **LEGACY_DEFAULTS}
    for i in range(1, MAX_LEVELS + 1):
        arch[f"enc{i}_op"] = "conv3x3"
        arch[f"enc{i}_width"] = {1: 64, 2: 128, 3: 256, 4: 256}[i]
        arch[f"enc{i}_depth"] = 1
    for i in range(1, MAX_LEVELS):
        arch[f"dec{i}_op"] = "conv3x3"
        arch[f"dec{i}_skip"] = "none"
    return validate_arch(arch, source="seed_arch")


def unet_arch() -> Arch:
    """A textbook U-Net (Ronneberger et al. 2015, bilinear variant): 4 levels, two conv3x3-BN-ReLU per
    level in the encoder and in the decoder, widths 32/64/128/256, max-pools, bilinear x2 upsampling,
    concatenated skips at every level."""
    arch = dict(seed_arch(), levels=4, up="bilinear", enc_op2="conv3x3", enc_join="serial",
                dec_op2="conv3x3", dec_join="serial", enc1_width=32, enc2_width=64, enc3_width=128, enc4_width=256)
    arch.update({f"dec{i}_skip": "concat" for i in range(1, MAX_LEVELS)})
    return validate_arch(arch, source="unet_arch")


NAMED_ARCHS = {"seed": seed_arch, "unet": unet_arch}
"""Reference points usable wherever an architecture is (``--arch seed``, ``retrain unet``)."""

# The training recipe as labels beside the architecture's (the joint vocabulary): every NNI tuner searches
# both, the trial applies both. Discrete values (``choice``) so that every tuner, Evolution's included, can
# take them; the recipe's current settings (lr 4.7e-3, wd 5e-5, batch 4, no random scale, ce+dice,
# median_freq) are one point. The number of epochs is not a label: the budget (a ladder's rung) sets it.
RECIPE_CHOICES: dict[str, tuple] = {
    "train_lr": (1e-3, 2e-3, 4.7e-3, 1e-2),
    "train_weight_decay": (5e-5, 5e-4, 5e-3),
    "train_batch_size": (4, 8),
    "train_scale": ("1.0-1.0", "0.75-1.25", "0.5-1.5"),
    "train_loss": ("ce", "ce+dice"),
    "train_class_weights": ("none", "median_freq"),
}
"""recipe label -> allowed values; :func:`recipe_settings` maps them to training settings."""

RECIPE_DEFAULTS: dict[str, Any] = {"train_lr": 4.7e-3, "train_weight_decay": 5e-5, "train_batch_size": 4,
                                   "train_scale": "1.0-1.0", "train_loss": "ce+dice", "train_class_weights": "median_freq"}
"""The CamVid recipe's tuned settings as recipe labels: what a known network (``start_with: [unet]``)
trains with in a joint search."""


def recipe_settings(labels: dict[str, Any], source: str = "recipe") -> dict[str, Any]:
    """Training-settings fields (``lr``, ``scale_min``, ...) from recipe labels (some or all of
    :data:`RECIPE_CHOICES`), each checked like an architecture choice."""
    out: dict[str, Any] = {}
    for label, value in labels.items():
        if label not in RECIPE_CHOICES:
            raise ArchError(f"{source}: unknown recipe label {label}; valid: {', '.join(RECIPE_CHOICES)}")
        if not is_one_of(value, RECIPE_CHOICES[label]):
            raise ArchError(f"{source}: {label}={value!r} is not one of {list(RECIPE_CHOICES[label])}")
        if label == "train_scale":
            out["scale_min"], out["scale_max"] = (float(v) for v in value.split("-"))
        else:
            out[label.removeprefix("train_")] = value
    return out


def recipe_labels(train: Any) -> dict[str, Any]:
    """The recipe labels of training settings ``train`` (a :class:`~nni_seg.config.settings.TrainSettings`) where
    each lies in :data:`RECIPE_CHOICES` (a label whose value is not a choice is left out)."""
    values = {"train_lr": train.lr, "train_weight_decay": train.weight_decay, "train_batch_size": train.batch_size,
              "train_scale": f"{float(train.scale_min)}-{float(train.scale_max)}", "train_loss": train.loss,
              "train_class_weights": train.class_weights}
    return {k: v for k, v in values.items() if is_one_of(v, RECIPE_CHOICES[k])}


def split_joint(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Trial parameters -> (architecture labels, recipe labels)."""
    return ({k: v for k, v in params.items() if k not in RECIPE_CHOICES},
            {k: v for k, v in params.items() if k in RECIPE_CHOICES})


def legacy_search_space(kind: str = "choice", vocabulary: str = "full") -> dict[str, dict]:
    """The search-space JSON for ``nnictl`` (``searchSpaceFile``), from :data:`CHOICES`.

    ``kind="choice"``: the form of NNI's ``as_legacy_dict()`` (TPE, Random, Evolution, ...);
    ``kind="layer_choice"``: the variant NNI's ``RegularizedEvolutionTuner`` requires.
    ``vocabulary="single_op"``: the first model space (one op per cell, max-pool down, no context block):
    the labels it had, the others left to the trial, which fills them with :data:`LEGACY_DEFAULTS`.
    ``vocabulary="joint"``: the full model space and the training recipe (:data:`RECIPE_CHOICES`).
    ``vocabulary="unet_joint"``: the joint space inside the U-Net's macro-structure: the labels of
    :data:`UNET_MACRO_LABELS` pinned to :func:`unet_arch`'s values (one-value choices, so every tuner and
    every trial reads the same file), the cells, widths, depths, sampling, context and recipe searched.
    """
    if kind not in SPACE_KINDS:
        raise ValueError(f"unknown search-space kind {kind!r}; valid: {', '.join(SPACE_KINDS)}")
    if vocabulary not in VOCABULARIES:
        raise ValueError(f"unknown vocabulary {vocabulary!r}; valid: {', '.join(VOCABULARIES)}")
    choices = {**CHOICES, **RECIPE_CHOICES} if vocabulary in ("joint", "unet_joint") else CHOICES
    if vocabulary == "unet_joint":
        unet = unet_arch()
        choices = {label: (unet[label],) if label in UNET_MACRO_LABELS else values for label, values in choices.items()}
    return {label: {"_type": kind, "_value": list(values)} for label, values in choices.items()
            if vocabulary != "single_op" or label not in LEGACY_DEFAULTS}


SPACE_KINDS = ("choice", "layer_choice")
VOCABULARIES = ("full", "single_op", "joint", "unet_joint")
UNET_MACRO_LABELS = ("levels", *(f"dec{i}_skip" for i in range(1, MAX_LEVELS)))
"""The U-Net's macro-structure: four levels and a concatenated skip at each. The joint searches that could
change it chose networks that lost to the U-Net trained with their own recipe (docs/results.md)."""


def dumps_space(kind: str = "choice", vocabulary: str = "full") -> str:
    """The committed search-space file's exact text."""
    return json.dumps(legacy_search_space(kind, vocabulary), indent=2) + "\n"


def load_arch(path: str) -> Arch:
    """A plain architecture dict, the ``arch`` of an exported top-architecture file, or a reference name
    (``seed``, ``unet``). Files written by older model spaces get today's defaults for the new choices."""
    return load_arch_recipe(path)[0]


def load_recipe(path: str) -> dict[str, Any]:
    """The training recipe an exported ``top_arch.json`` carries (a joint search's), as training-settings
    fields; ``{}`` for a reference name, a plain architecture or an export without one."""
    return load_arch_recipe(path)[1]


def load_arch_recipe(path: str) -> tuple[Arch, dict[str, Any]]:
    """:func:`load_arch` and :func:`load_recipe` of ``path`` from one reading of the file."""
    if path in NAMED_ARCHS:
        return NAMED_ARCHS[path](), {}
    p = Path(path)
    if not p.exists():
        raise ArchError(f"architecture file not found: {path} (or one of {', '.join(NAMED_ARCHS)})")
    if p.is_dir():
        raise ArchError(f"architecture {path} is a folder; give a JSON file (top_arch.json)")
    try:
        obj = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ArchError(f"architecture file {path} cannot be read: {e}") from None
    except json.JSONDecodeError as e:
        raise ArchError(f"architecture file {path} is not valid JSON: {e}") from None
    recipe = obj.get("recipe") if isinstance(obj, dict) and isinstance(obj.get("arch"), dict) else None
    if recipe is not None and not isinstance(recipe, dict):
        raise ArchError(f"{path}: recipe: expected an object of recipe labels, got {type(recipe).__name__}")
    if isinstance(obj, dict) and isinstance(obj.get("arch"), dict):
        obj = obj["arch"]
    arch = validate_arch(obj, source=path, fill_legacy=True)
    return arch, recipe_settings(recipe, f"{path}: recipe") if recipe else {}


def check_search_space(space: Any, source: str = "search space") -> None:
    """A search space our trial can train: every entry a label of :data:`CHOICES` as a ``choice`` /
    ``layer_choice`` over some of its values, and every label there unless the trial fills it
    (:data:`LEGACY_DEFAULTS`); recipe labels (:data:`RECIPE_CHOICES`) may be there too (the trial's own
    settings give the others). NNI would accept anything and every trial would fail: say it before."""
    if not isinstance(space, dict) or not space:
        raise ArchError(f"{source}: expected a non-empty mapping of labels to {{_type, _value}}")
    known = {**CHOICES, **RECIPE_CHOICES}
    unknown = sorted(set(space) - set(known))
    if unknown:
        raise ArchError(f"{source}: unknown label(s) {', '.join(map(str, unknown))}; valid: {', '.join(known)}")
    missing = [label for label in CHOICES if label not in space and label not in LEGACY_DEFAULTS]
    if missing:
        raise ArchError(f"{source}: missing label(s) {', '.join(missing)} (python -m nni_seg space writes a full one)")
    for label, spec in space.items():
        if not isinstance(spec, dict) or spec.get("_type") not in SPACE_KINDS or not isinstance(spec.get("_value"), list) \
                or not spec["_value"]:
            raise ArchError(f"{source}: {label}: expected {{_type: choice or layer_choice, _value: [values]}}, "
                            f"got {spec!r}")
        bad = [v for v in spec["_value"] if not is_one_of(v, known[label])]
        if bad:
            raise ArchError(f"{source}: {label}: {bad[0]!r} is not one of {list(known[label])}")


def decode_parameters(params: dict[str, Any]) -> Arch:
    """NNI trial parameters -> architecture dict.

    Accepts plain values, ``{"_value": v, "_idx": i}`` (``layer_choice``) and ``{"_name": v, ...}``
    (nested ``choice``) forms.
    """
    if not isinstance(params, dict):
        raise ArchError(f"trial parameters: expected a JSON object, got {type(params).__name__}")
    arch = {}
    for label, value in params.items():
        if isinstance(value, dict):
            if "_value" in value:
                value = value["_value"]
            elif "_name" in value:
                value = value["_name"]
            else:
                raise ArchError(f"cannot decode parameter {label}={value!r}")
        arch[label] = value
    return arch


def narrow(search_space: dict, exclude: dict[str, list]) -> dict:
    """``search_space`` (NNI's ``choice`` or ``layer_choice`` form) without the excluded values; a label or
    value it does not have, or a label left with no value, is a ValueError naming it."""
    for label, values in exclude.items():
        if label not in search_space:
            raise ValueError(f"exclude: unknown label {label!r}; valid: {', '.join(search_space)}")
        valid = list(search_space[label]["_value"])
        if not isinstance(values, list):
            raise ValueError(f"exclude.{label}: a list of values, got {values!r}")
        bad = [v for v in values if not is_one_of(v, valid)]  # exact types: true is no depth, 64.0 no width
        if bad:
            raise ValueError(f"exclude.{label}: {bad[0]!r} is not one of {valid}")
        if all(is_one_of(v, values) for v in valid):
            raise ValueError(f"exclude.{label}: leaves no value of {valid}")
    return {label: {**spec, "_value": [v for v in spec["_value"] if not is_one_of(v, exclude.get(label, []))]}
            for label, spec in search_space.items()}
