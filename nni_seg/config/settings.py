"""One settings tree: every setting of every command, with its help, type, allowed values and range.

Each section is a :class:`~nni_seg.config._typed.Checked` dataclass, so a setting is checked once, when it is
parsed, whether it comes from a flag (:func:`add_flags` / :func:`from_flags`), a YAML file
(:func:`load_sections`) or code; ``--batch-size -4``, ``epochs: two`` or ``--loss foo`` stop before any
work with one line naming the flag or the file and key. Defaults live here and nowhere else.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any

from ._typed import Checked, FieldError, convert, from_dict, hints, setting
from ..errors import ConfigError, UserError

DATASET_NAMES = ("digits", "camvid", "isbi2012", "cityscapes", "voc2012", "folder", "packed")
LOSSES = ("ce", "ce+dice")
CLASS_WEIGHTS = ("none", "median_freq")
REFERENCE_ARCHS = ("seed", "unet")


def _device(value: str) -> str | None:
    if re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        return None
    return f"must be auto, cpu, cuda or cuda:N; got {value!r}"


@dataclasses.dataclass(frozen=True)
class DataSettings(Checked):
    """Which data to train and score on."""
    dataset: str = setting("digits", "dataset (digits is embedded: no download)", choices=DATASET_NAMES)
    data_root: str | None = setting(None, "the dataset's folder (packed: the .npz file)")
    size: tuple[int, int] | None = setting(None, "H W after resizing (default: the dataset's own)", min=8, max=8192)
    num_train: int | None = setting(None, "digits: scenes to generate; others: keep the first N training images",
                                    min=1)
    num_val: int | None = setting(None, "digits: scenes to generate; others: validation images", min=1)
    data_seed: int = setting(0, "digits: generator seed", min=0)
    holdout: str | None = setting(None, "select on these training images instead of val, and train on the rest: "
                                        "name prefixes, comma-separated (CamVid: a drive, e.g. 0006R0), or @FILE "
                                        "of names")


@dataclasses.dataclass(frozen=True)
class TrainSettings(Checked):
    """How a network is trained (the trainer knows nothing of NNI)."""
    epochs: int = setting(10, "training epochs", min=1, max=100000)
    batch_size: int = setting(16, "images per step", min=1, max=65536)
    lr: float = setting(2e-3, "peak learning rate of the one-cycle schedule (AdamW)", gt=0, max=10)
    weight_decay: float = setting(1e-4, "AdamW weight decay", min=0, max=1)
    loss: str = setting("ce", "ce: cross-entropy; ce+dice: cross-entropy + soft Dice", choices=LOSSES)
    class_weights: str = setting("none", "loss weights per class (median_freq: from the training masks)",
                                 choices=CLASS_WEIGHTS)
    augment: bool = setting(True, "random flips and scale/crop, on the device")
    scale_min: float = setting(0.75, "smallest random scale", gt=0, max=4)
    scale_max: float = setting(1.25, "largest random scale", gt=0, max=4)
    amp: bool = setting(True, "bf16 autocast where the device has native bf16 (CUDA; CPUs with AMX or AVX512-BF16)")
    channels_last: bool = setting(True, "channels-last memory format (CUDA; CPUs with native bf16)")
    compile: bool = setting(False, "torch.compile the model (pays off for long runs)")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N", check=_device)
    threads: int = setting(0, "CPU threads for torch (0: torch's default)", min=0, max=1024)
    seed: int = setting(0, "seed of initialisation, shuffling and augmentation", min=0)
    eval_batch_size: int = setting(32, "images per evaluation step", min=1, max=65536)

    def validate(self) -> None:
        if self.scale_min > self.scale_max:
            raise FieldError("scale_min", f"must be <= scale_max ({self.scale_max}), got {self.scale_min}")


@dataclasses.dataclass(frozen=True)
class BudgetSettings(Checked):
    """Per-trial cost limits: a trial over them is rejected before training (Dice 0 to the tuner)."""
    max_mmacs: float | None = setting(None, "most multiply-accumulates per image, in millions, at the trial's size",
                                      gt=0)
    max_mmacs_of: str | None = setting(None, "no more MMACs than this reference network at the trial's size",
                                       choices=REFERENCE_ARCHS)
    max_params: int | None = setting(None, "most parameters", min=1)
    latency: bool = setting(False, "also measure the forward latency (extra forward passes)")


@dataclasses.dataclass(frozen=True)
class TrialSettings(Checked):
    """One trial: what NNI runs (``python -m nni_seg.trial``), also standalone with ``--arch``."""
    arch: str | None = setting(None, "architecture JSON, or seed / unet (standalone; under NNI the tuner chooses)")
    out: str | None = setting(None, "folder for the record (default: $NNI_OUTPUT_DIR, else runs/trial-<time>)")
    hpo: bool = setting(False, "under NNI: the tuner's parameters are training settings of --arch (tune), "
                               "not an architecture")


@dataclasses.dataclass(frozen=True)
class SearchSettings(Checked):
    """``python -m nni_seg search``: NNI's NAS strategies through ``NasExperiment``."""
    strategy: str = setting("random", "NAS strategy", choices=("enas", "evolution", "tpe", "random"))
    trials: int = setting(8, "multi-trial budget", min=1, max=100000)
    concurrency: int = setting(2, "trials at once", min=1, max=1024)
    port: int = setting(8081, "web UI port", min=1, max=65535)
    working_dir: str = setting("nni-experiments", "experiment folder")
    population_size: int = setting(8, "evolution: population", min=2)
    sample_size: int = setting(4, "evolution: tournament size", min=1)
    mutation_prob: float = setting(0.05, "evolution: mutation probability", min=0, max=1)
    enas_epochs: int = setting(3, "enas: supernet epochs", min=1)
    enas_seconds: float | None = setting(None, "enas: stop training the supernet after this many seconds, "
                                               "even before enas_epochs (an equal-time budget)", gt=0)
    fixed: dict[str, Any] = setting(None, "enas: macro choices to pin (default: the seed's)", flag=False,
                                    default_factory=dict)

    def validate(self) -> None:
        if self.sample_size > self.population_size:
            raise FieldError("sample_size", f"must be <= population_size ({self.population_size}), "
                                            f"got {self.sample_size}")
        from ..space.arch import CHOICES, MACRO_LABELS, is_one_of

        for label, value in self.fixed.items():
            if label not in MACRO_LABELS:
                raise FieldError(f"fixed.{label}", f"cannot be pinned; pinnable: {', '.join(MACRO_LABELS)}")
            if not is_one_of(value, CHOICES[label]):
                raise FieldError(f"fixed.{label}", f"must be one of {list(CHOICES[label])}; got {value!r}")


@dataclasses.dataclass(frozen=True)
class RunSettings(Checked):
    """``python -m nni_seg run``: an nnictl experiment from a config, followed to the end, exported."""
    port: int | None = setting(None, "web UI / REST port (default: 8080, or a free one if taken)", min=1, max=65535)
    timeout: float = setting(3600, "seconds before giving up", gt=0)
    stall: float = setting(180, "seconds without any trial before giving up", gt=0)
    keep_running: bool = setting(False, "leave the experiment (and web UI) running")
    out: str | None = setting(None, "exported JSON (default: <experiment dir>/top_arch.json)")
    no_patch: bool = setting(False, "run on an NNI without our fixes (to reproduce its defects)")


TUNERS = ("TPE", "Random", "Evolution", "Anneal")


@dataclasses.dataclass(frozen=True)
class TuneSettings(Checked):
    """``python -m nni_seg tune``: an NNI HPO experiment over the winner's training settings."""
    out: str = setting("runs/tune", "folder for the experiment config, search space and the tuned training config")
    trials: int = setting(12, "trials (training runs of the architecture)", min=1, max=100000)
    concurrency: int = setting(2, "trials at once", min=1, max=1024)
    tuner: str = setting("TPE", "NNI tuner", choices=TUNERS)
    tuner_seed: int = setting(0, "seed of the tuner", min=0)
    trial_epochs: int | None = setting(None, "epochs per tune trial (default: train.epochs); the tuned config keeps "
                                             "train.epochs", min=1)
    port: int | None = setting(None, "web UI port (default: 8080, or a free one)", min=1, max=65535)
    timeout: float = setting(7200, "seconds the tune may take", gt=0)
    force: bool = setting(False, "replace an earlier tune's files in --out")


def _names(value: str) -> str | None:
    names = [n.strip() for n in value.split(",") if n.strip()]
    bad = [n for n in names if n not in REFERENCE_ARCHS]
    if bad:
        return f"unknown network(s) {', '.join(bad)}; valid: {', '.join(REFERENCE_ARCHS)} (comma-separated)"
    if len(set(names)) != len(names):
        return "names a network twice"
    return None


@dataclasses.dataclass(frozen=True)
class RecipeSettings(Checked):
    """``python -m nni_seg recipe``: search, then retrain the winner and reference networks alike."""
    search_config: str = setting("experiments/camvid/joint_lr_cpu.yml", "nnictl config of the search (proxy budget)")
    out: str = setting("runs/recipe", "output folder (report.md, results.json, checkpoints)")
    baselines: str = setting("seed,unet", "reference networks retrained with the same schedule (comma-separated; "
                             "empty: none)", check=_names)
    repeats: int = setting(1, "trainings of each network (different seeds; >1 shows the noise)", min=1, max=20)
    search_timeout: float = setting(3600, "seconds the search may take", gt=0)
    port: int | None = setting(None, "web UI port of the search (default: 8080 or a free one)", min=1, max=65535)
    tune_config: str | None = setting(None, "also tune the winner's training (a tune YAML) before retraining it")
    tune_first: str | None = setting(None, "tune the U-Net's training first (a tune YAML), then search the "
                                           "architecture with every trial trained at the tuned settings (an "
                                           "architecture-only search config: experiments/camvid/arch_ladder_cpu.yml)")
    confirm: int = setting(0, "train the search's top K trials once more at the search's settings and take the "
                              "best mean as the winner (export --confirm; 0: the single best trial)", min=0, max=20)
    searched_recipe: bool = setting(True, "retrain the searched net with the training recipe its search chose "
                                          "(a joint search's; the training flags are the baselines' and fill the rest)")
    baselines_searched_recipe: bool = setting(True, "also retrain each baseline with the searched net's training "
                                                    "settings, when they differ from the flags (<name>+recipe): "
                                                    "the recipe's gain apart from the architecture's")
    force: bool = setting(False, "replace the results of an earlier recipe in --out")

    @property
    def baseline_names(self) -> list[str]:
        return [n.strip() for n in self.baselines.split(",") if n.strip()]


def _is_flag(f: dataclasses.Field) -> bool:
    return f.metadata.get("flag", True)


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _flag_type(tp: Any) -> tuple[type, int | None]:
    """(element type, nargs) of a field's flag: ``int | None`` -> (int, None); ``tuple[int, int]`` -> (int, 2)."""
    args = typing.get_args(tp) if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union else ()
    if args:
        tp = next(a for a in args if a is not type(None))
    if typing.get_origin(tp) is tuple:
        return typing.get_args(tp)[0], len(typing.get_args(tp))
    return tp, None


def _parse_as(base: type):
    """argparse ``type``: the text as ``base``; the range is checked when the section is built."""
    def parse(text: str):
        try:
            return base(text)
        except ValueError:
            kind = {int: "an integer", float: "a number"}.get(base, base.__name__)
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
    return parse


def add_flags(parser: argparse.ArgumentParser, cls: type, title: str | None = None) -> None:
    """One ``--field-name`` flag per field of section ``cls``; flags left out keep the section's value."""
    group = parser.add_argument_group(title or (cls.__doc__ or cls.__name__).splitlines()[0])
    h = hints(cls)
    for f in dataclasses.fields(cls):
        if not _is_flag(f):
            continue
        meta = f.metadata
        text = meta.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else None
        # a help text that already says its default ("(default: the dataset's own)") is not told it twice
        said = "default" in text
        parts = ([] if said or default is None else [f"default: {default}"]) + \
            ([f"one of {', '.join(meta['choices'])}"] if meta.get("choices") else [])
        help_ = (f"{text} ({'; '.join(parts)})" if parts else text).replace("%", "%%")
        base, nargs = _flag_type(h[f.name])
        if base is bool and f.name.startswith("no_"):  # BooleanOptionalAction reads any "--no-..." as False
            group.add_argument(flag_name(f.name), dest=f.name, action="store_const", const=True, default=None,
                               help=help_)
        elif base is bool:
            group.add_argument(flag_name(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=help_)
        else:
            group.add_argument(flag_name(f.name), dest=f.name, type=_parse_as(base), default=None, nargs=nargs,
                               help=help_, metavar=f.name.upper() if nargs else None)


def given_flags(cls: type, ns: argparse.Namespace) -> dict[str, Any]:
    """The fields of section ``cls`` that were given as flags."""
    return {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)
            if _is_flag(f) and getattr(ns, f.name, None) is not None}


def from_flags(cls: type, ns: argparse.Namespace, base: Any = None) -> Any:
    """Section ``cls`` from ``base`` (default: its defaults) with the given flags on top; a bad value
    names its flag."""
    given = given_flags(cls, ns)
    try:
        if base is None:
            return cls(**given)
        return dataclasses.replace(base, **given)
    except FieldError as e:
        field = e.path.split(".")[0].split("[")[0]
        where = flag_name(field) if field in given else f"{field} (with the flags given)"
        raise ConfigError(f"{where}: {e.reason}") from None


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from ``path``; a missing file, bad YAML or a non-mapping is one line naming it."""
    import yaml

    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config {p} is a folder, not a YAML file")
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config {p} cannot be read: {e}") from None
    if len(text) > MAX_YAML_CHARS:
        raise ConfigError(f"{p}: {len(text)} characters; a config has at most {MAX_YAML_CHARS}")
    try:
        raw = _bounded_yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to be a config") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of sections, got {type(raw).__name__}")
    return _yaml_floats(raw)


MAX_YAML_CHARS = 1_000_000
MAX_YAML_DEPTH = 40  # our deepest config is 4 levels
MAX_YAML_NODES = 100_000  # values once aliases (*name) are expanded: a few KiB of aliases can mean billions


def _bounded_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses, before building anything, documents nested deeper than
    MAX_YAML_DEPTH or whose aliases expand to more than MAX_YAML_NODES values (the "billion laughs")."""
    import yaml

    class Loader(yaml.SafeLoader):
        def __init__(self, stream):
            super().__init__(stream)
            self.depth, self.weight = 0, {}

        def compose_node(self, parent, index):
            alias = self.check_event(yaml.AliasEvent)
            self.depth += 1
            if self.depth > MAX_YAML_DEPTH:
                raise yaml.YAMLError(f"nested deeper than {MAX_YAML_DEPTH} levels")
            try:
                node = super().compose_node(parent, index)
            finally:
                self.depth -= 1
            if not alias:  # an alias weighs what its anchored node weighs
                children = ([x for kv in node.value for x in kv] if isinstance(node, yaml.MappingNode)
                            else node.value if isinstance(node, yaml.SequenceNode) else [])
                self.weight[id(node)] = 1 + sum(self.weight.get(id(c), 1) for c in children)
                if self.weight[id(node)] > MAX_YAML_NODES:
                    raise yaml.YAMLError(f"aliases expand to more than {MAX_YAML_NODES} values")
            return node

    loader = Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


_YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _yaml_floats(obj: Any) -> Any:
    """PyYAML follows YAML 1.1, which reads ``3e-3`` (no dot) as a string: read it as the number meant."""
    if isinstance(obj, dict):
        return {k: _yaml_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_yaml_floats(v) for v in obj]
    if isinstance(obj, str) and _YAML11_FLOAT.fullmatch(obj):
        return float(obj)
    return obj


def load_sections(path: str | Path | None, sections: dict[str, type], other: tuple[str, ...] = ()) -> dict[str, Any]:
    """Sections of a YAML config (``data:``, ``train:``, ...), each checked as its dataclass; absent ones
    take their defaults; ``other`` names sections the caller reads itself. Relative paths in
    ``data.data_root`` are taken from the YAML's folder."""
    raw = read_yaml(path) if path else {}
    unknown = sorted(set(raw) - set(sections) - set(other))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(map(str, unknown))}; "
                          f"valid: {', '.join([*sections, *other])}")
    out = {}
    for name, cls in sections.items():
        body = raw.get(name)
        body = {} if body is None else body  # `train:` with nothing under it; but `train: 0` is an error
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: {name}: expected a mapping, got {type(body).__name__}")
        if name == "data" and isinstance(body.get("data_root"), str) and path:
            root = Path(body["data_root"]).expanduser()
            body = {**body, "data_root": str(root if root.is_absolute() else Path(path).parent / root)}
        try:
            out[name] = convert(cls, body, name)
        except FieldError as e:
            raise ConfigError(f"{path}: {e}") from None
    return out


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one :class:`UserError` line instead of usage + exit."""

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message}")


__all__ = ["DataSettings", "TrainSettings", "BudgetSettings", "TrialSettings", "SearchSettings", "RunSettings",
           "RecipeSettings", "TuneSettings",
           "add_flags", "from_flags", "given_flags", "load_sections", "read_yaml", "Parser", "from_dict",
           "DATASET_NAMES", "LOSSES", "CLASS_WEIGHTS", "REFERENCE_ARCHS"]
