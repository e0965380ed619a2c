"""The files we write, as typed records with a format version: a trial's record, an exported top
architecture, a checkpoint's meta, a recipe's and a tune's results, a prior's samples. Loading is strict: a
file that is not valid JSON, or a field of the wrong type, fails with one line naming the file and the field.
Files written before the format version existed (version 0: ``mflops`` for multiply-accumulates,
``nni_cross_check``) still load.
"""
from __future__ import annotations

import copy
import dataclasses
import enum
import json
import math
from pathlib import Path
from typing import Any

from ._typed import Checked, FieldError, convert, setting, to_json
from ..errors import RecordError
from .settings import BudgetSettings, DataSettings, TrainSettings

FORMAT_VERSION = 1
RECORD_NAME = "nni_seg_record.json"
TOP_NAME = "top_arch.json"
META_NAME = "meta.json"
TUNE_RESULT_NAME = "tune_result.json"


class Status(str, enum.Enum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"  # over the cost budget: not trained


def _f(default: Any = None, *, required: bool = False) -> Any:
    """A record field (never a flag); list, dict and dataclass defaults are copied per record. ``required``:
    a file must give it."""
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return setting(flag=False, default_factory=lambda d=default: copy.deepcopy(d), required=required)
    return setting(default, flag=False, required=required)


@dataclasses.dataclass
class DatasetInfo(Checked):
    name: str = _f("")
    size: tuple[int, int] = _f((0, 0))
    classes: list[str] = _f([])
    num_train: int = _f(0)
    num_val: int = _f(0)
    selection: str = _f("val")  # what the trial's score was computed on: val, or held-out training images


@dataclasses.dataclass
class Rung(Checked):
    """Where a trial stands on a fidelity ladder (:mod:`nni_seg.experiment.ladder`): its rung (0: the screen), the
    epochs and image size of that rung, the candidate it trains (the ladder's number for an architecture
    with its recipe) and which of the rung's trainings of that candidate it is (``repeat``: its seed)."""
    rung: int = _f(0)
    epochs: int = _f(1)
    size: tuple[int, int] | None = _f(None)
    candidate: int = _f(0)
    repeat: int = _f(0)


@dataclasses.dataclass
class Scores(Checked):
    """Validation scores from one confusion matrix over a whole split (NaN where undefined)."""
    dice: float = _f(math.nan)  # mean foreground Dice
    miou: float = _f(math.nan)
    pixel_acc: float = _f(math.nan)
    dice_per_class: list[float | None] = _f([])
    iou_per_class: list[float | None] = _f([])


@dataclasses.dataclass
class EpochResult(Checked):
    epoch: int = _f(0)
    loss: float = _f(math.nan)
    dice: float = _f(math.nan)
    miou: float = _f(math.nan)
    pixel_acc: float | None = _f(None)
    seconds: float | None = _f(None)
    images_per_second: float | None = _f(None)


@dataclasses.dataclass
class Mismatch(Checked):
    trial_id: str = _f("")
    problems: list[str] = _f([])


@dataclasses.dataclass
class CrossCheck(Checked):
    """The export compared with NNI's own database."""
    trials_checked: int = _f(0)
    mismatches: list[Mismatch] = _f([])
    note: str | None = _f(None)


@dataclasses.dataclass
class TrialRecord(Checked):
    """``nni_seg_record.json``: one trial's own account of what it trained (the ground truth of export)."""
    status: Status = _f(Status.RUNNING, required=True)
    arch: dict[str, Any] = _f({}, required=True)
    summary: str = _f("")
    data: DataSettings = _f(DataSettings())
    train: TrainSettings = _f(TrainSettings())
    budget: BudgetSettings = _f(BudgetSettings())
    trial_id: str | None = _f(None)
    experiment_id: str | None = _f(None)
    parameter_id: int | str | None = _f(None)  # Hyperband and BOHB use strings ("0_2_5")
    sequence_id: int | None = _f(None)
    raw_parameters: dict[str, Any] | None = _f(None)
    nni_budget: float | None = _f(None)  # TRIAL_BUDGET sent by a multi-fidelity advisor (Hyperband, BOHB)
    rung: Rung | None = _f(None)  # set by nni_seg.experiment.ladder's advisor
    recipe: dict[str, Any] | None = _f(None)  # the recipe labels the tuner chose (joint search), as trained
    started: str | None = _f(None)
    finished: str | None = _f(None)
    host: str | None = _f(None)
    cuda_visible_devices: str | None = _f(None)
    device: str | None = _f(None)
    compute: str | None = _f(None)  # the arithmetic that ran: "cpu: bf16 autocast, channels-last (AMX-BF16)"
    params: int | None = _f(None)
    mmacs: float | None = _f(None)  # multiply-accumulates per image, millions, at the trial's size
    dataset: DatasetInfo | None = _f(None)
    history: list[EpochResult] = _f([])
    metrics: dict[str, float] | None = _f(None)  # the final result reported to NNI
    scores: Scores | None = _f(None)
    train_seconds: float | None = _f(None)
    images_per_second: float | None = _f(None)
    latency_ms: float | None = _f(None)
    timings: dict[str, float] = _f({})  # seconds per phase (imports, data, build, train, ...)
    reason: str | None = _f(None)  # why REJECTED
    error: str | None = _f(None)  # why FAILED / CANCELED
    traceback: str | None = _f(None)
    source: str = _f("trial record")  # or "nni-db" (rebuilt from NNI's database)
    format_version: int = _f(FORMAT_VERSION)

    def validate(self) -> None:
        if self.status == Status.SUCCEEDED:
            m = self.metrics or {}
            missing = [k for k in ("default", "dice", "miou") if k not in m]
            if missing:
                raise FieldError("metrics", f"a SUCCEEDED record needs {', '.join(missing)}")

    def score(self, metric: str = "default") -> float | None:
        """The final ``metric`` of a succeeded trial, or None."""
        if self.status != Status.SUCCEEDED or not self.metrics:
            return None
        v = self.metrics.get(metric)
        return v if isinstance(v, (int, float)) and not math.isnan(v) else None


@dataclasses.dataclass
class Candidate(Checked):
    """One of the search's top trials, trained again at the search's own settings (other training seeds)."""
    trial_id: str | None = _f(None)
    summary: str = _f("")
    mmacs: float | None = _f(None)
    scores: list[float] = _f([])  # the search trial's own first, then each repeat's
    mean: float = _f(0.0)
    records: list[str] = _f([])  # the repeats' trial records


@dataclasses.dataclass
class Confirmation(Checked):
    """How ``export --confirm`` chose among the top trials: the best mean over 1 + ``repeats`` trainings."""
    metric: str = _f("default")
    repeats: int = _f(0)
    candidates: list[Candidate] = _f([])
    best_single: str | None = _f(None)  # the trial the plain export would have taken
    seconds: float = _f(0.0)


@dataclasses.dataclass
class LadderChoice(Checked):
    """How a ladder's winner was chosen: the best mean over the top rung's trainings of each candidate."""
    rung: int = _f(0)
    epochs: int = _f(0)
    size: tuple[int, int] | None = _f(None)
    metric: str = _f("default")
    candidate: int = _f(0)
    scores: list[float] = _f([])  # the winner's trainings at that rung
    candidates: dict[str, list[float]] = _f({})  # every candidate of that rung: its scores


@dataclasses.dataclass
class TopArch(Checked):
    """``top_arch.json``: an experiment's best architecture, from its trials' own records."""
    arch: dict[str, Any] = _f({}, required=True)
    summary: str = _f("")
    experiment_id: str | None = _f(None)
    trial_id: str | None = _f(None)
    parameter_id: int | str | None = _f(None)  # Hyperband and BOHB use strings ("0_2_5")
    sequence_id: int | None = _f(None)
    metric: str = _f("default")
    metrics: dict[str, float] | None = _f(None)
    dataset: DatasetInfo | None = _f(None)
    data: DataSettings | None = _f(None)
    train: TrainSettings | None = _f(None)
    trials_succeeded: int = _f(0)
    trials_recorded: int = _f(0)
    source: str = _f("trial records")
    cross_check: CrossCheck = _f(CrossCheck())
    record: str | None = _f(None)
    strategy: str | None = _f(None)
    note: str | None = _f(None)
    warnings: list[str] = _f([])
    confirmation: Confirmation | None = _f(None)  # set when chosen by ``export --confirm``
    recipe: dict[str, Any] | None = _f(None)  # the searched training recipe (labels): retrain's defaults
    ladder: LadderChoice | None = _f(None)  # set when chosen at a ladder's top rung
    format_version: int = _f(FORMAT_VERSION)

    def recipe_settings(self) -> dict[str, Any]:
        """The searched recipe as training-settings fields (``{}`` for an architecture-only search)."""
        from ..space.arch import recipe_settings

        return recipe_settings(self.recipe or {}, "top architecture's recipe")


@dataclasses.dataclass
class CheckpointMeta(Checked):
    """``meta.json`` of a checkpoint folder: what ``evaluate``, ``predict`` and ``onnx`` need."""
    arch: dict[str, Any] = _f({}, required=True)
    summary: str = _f("")
    class_names: list[str] = _f([], required=True)
    in_channels: int = _f(3)
    ignore_index: int | None = _f(None)
    background: int | None = _f(None)
    palette: list[tuple[int, int, int]] = _f([])
    dataset: str = _f("")
    size: tuple[int, int] = _f((0, 0))
    mean: list[float] = _f([], required=True)
    std: list[float] = _f([], required=True)
    params: int = _f(0)
    mmacs: float = _f(0.0)
    data: DataSettings = _f(DataSettings())
    train: TrainSettings = _f(TrainSettings())
    epoch: int = _f(0)
    best: EpochResult | None = _f(None)
    best_scores: Scores | None = _f(None)
    compute: str | None = _f(None)  # the arithmetic the training ran (precision.ComputePath)
    format_version: int = _f(FORMAT_VERSION)

    def validate(self) -> None:
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values and len(values) != self.in_channels:
                raise FieldError(name, f"needs one value per input channel ({self.in_channels}), got {len(values)}")
        if any(not (math.isfinite(v) and v > 0) for v in self.std):
            raise FieldError("std", f"must be finite and > 0 (it divides the input), got {self.std}")
        if any(not math.isfinite(v) for v in self.mean):
            raise FieldError("mean", f"must be finite, got {self.mean}")


def _upgrade(kind: type, obj: dict) -> dict:
    """Version-0 files (before the format version) -> the current field names."""
    obj = dict(obj)
    if obj.get("format_version", 0) >= 1:
        return obj
    obj.pop("_path", None)
    if "mflops" in obj:
        obj["mmacs"] = obj.pop("mflops")
    if isinstance(obj.get("metrics"), dict):
        m = {k: v for k, v in obj["metrics"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if "mflops" in m:
            m["mmacs"] = m.pop("mflops")
        obj["metrics"] = m
    if "nni_cross_check" in obj:
        obj["cross_check"] = obj.pop("nni_cross_check")
    if kind is TrialRecord:
        dpc, ipc = obj.pop("dice_per_class", None), obj.pop("iou_per_class", None)
        m = obj.get("metrics") or {}
        if dpc is not None and "dice" in m:
            obj["scores"] = {"dice": m["dice"], "miou": m.get("miou", math.nan), "pixel_acc": m.get("pixel_acc", math.nan),
                             "dice_per_class": dpc, "iou_per_class": ipc or []}
        if "latency_ms" in m:
            obj["latency_ms"] = m["latency_ms"]
        for k in ("data", "train"):  # settings of an older version: keep the fields that still exist
            if isinstance(obj.get(k), dict):
                names = {f.name for f in dataclasses.fields(DataSettings if k == "data" else TrainSettings)}
                obj[k] = {n: v for n, v in obj[k].items() if n in names}
        obj["history"] = [{k: v for k, v in h.items() if k in {f.name for f in dataclasses.fields(EpochResult)}}
                          for h in obj.get("history") or []]
    if kind is TopArch:
        for k in ("nni_top_model_agrees", "fixed"):
            obj.pop(k, None)
        obj["dataset"] = obj.get("dataset")
    if kind is PriorSamples and isinstance(obj.get("samples"), list):  # version 0: [arch, score] pairs
        obj["samples"] = [{"arch": s[0], "score": s[1]} if isinstance(s, list) and len(s) == 2 else s
                          for s in obj["samples"]]
    if kind is CheckpointMeta and isinstance(obj.get("best"), dict):
        best = obj["best"]
        obj["best"] = {k: v for k, v in best.items() if k in {f.name for f in dataclasses.fields(EpochResult)}}
        obj["best_scores"] = {k: best[k] for k in ("dice", "miou", "pixel_acc", "dice_per_class", "iou_per_class")
                              if k in best}
    obj["format_version"] = FORMAT_VERSION
    return obj


def parse(kind: type, obj: Any, source: str) -> Any:
    """A record of type ``kind`` from JSON data; errors name ``source`` and the field."""
    if not isinstance(obj, dict):
        raise RecordError(f"{source}: expected a JSON object, got {type(obj).__name__}")
    version = obj.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise RecordError(f"{source}: format_version: expected an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise RecordError(f"{source}: written by a newer nni_seg (format {version} > {FORMAT_VERSION}); upgrade")
    try:
        return convert(kind, _upgrade(kind, obj), "")
    except FieldError as e:
        raise RecordError(f"{source}: {e}") from None


def load(kind: type, path: str | Path) -> Any:
    """Read and parse a record file; a missing, unreadable or malformed file is one line naming it."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise RecordError(f"{p}: not found") from None
    except IsADirectoryError:
        raise RecordError(f"{p}: is a folder, not a {kind.__name__} file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RecordError(f"{p}: cannot be read: {e}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(f"{p}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}; truncated?)") from None
    return parse(kind, obj, str(p))


def dumps(record: Any) -> str:
    return json.dumps(to_json(record), indent=2, default=str) + "\n"


def save(record: Any, path: str | Path) -> Path:
    """Write a record atomically (:func:`nni_seg.files.atomic_write_text`)."""
    from ..files import atomic_write_text

    return atomic_write_text(path, dumps(record))


@dataclasses.dataclass
class NetworkResult(Checked):
    """One retraining of one network in a recipe, scored on val."""
    network: str = _f("")
    run: int = _f(0)
    summary: str = _f("")
    params: int = _f(0)
    mmacs: float = _f(0.0)
    val: Scores = _f(Scores())
    best_epoch: int = _f(0)
    retrain_seconds: float = _f(0.0)
    checkpoint: str = _f("")
    train: TrainSettings | None = _f(None)  # the settings it trained with (None in results written before them)


@dataclasses.dataclass
class RecipeResult(Checked):
    """``results.json`` of ``python -m nni_seg recipe``."""
    experiment_id: str = _f("")
    search_config: str = _f("")
    search_trials: int = _f(0)
    search_succeeded: int = _f(0)
    winner_search_dice: float | None = _f(None)
    winner_chosen_by: str | None = _f(None)  # --confirm: how the winner was chosen among the top trials
    data: DataSettings = _f(DataSettings())
    train: TrainSettings = _f(TrainSettings())
    tuned_train: TrainSettings | None = _f(None)  # the searched net's own training: its recipe, then the tune's
    searched_recipe: dict[str, Any] | None = _f(None)  # the recipe labels the search chose (a joint search)
    tune_data: DataSettings | None = _f(None)  # what the tune trained on (the recipe's data unless its YAML said)
    tuned_first: dict[str, Any] | None = _f(None)  # --tune-first: the U-Net's tuned settings every search trial used
    same_as_searched: list[str] = _f([])  # baseline rows not retrained: the searched net's own training again
    split: str = _f("val")
    resolution: str = _f("")
    seconds: dict[str, float] = _f({})
    networks: list[NetworkResult] = _f([])
    class_names: list[str] = _f([])
    device: str = _f("cpu")
    format_version: int = _f(FORMAT_VERSION)


@dataclasses.dataclass
class ScoredArch(Checked):
    arch: dict[str, Any] = _f({})
    score: float = _f(0.0)


@dataclasses.dataclass
class PriorSamples(Checked):
    """The trainings a prior over the search space was read from (``bench/space_prior.py``'s
    ``samples.json``) and the test it was read with (:func:`nni_seg.workflow.prior.derive_exclusions`)."""
    source: str = _f("")  # where the scores came from (a proxy cache, with its trial settings)
    alpha: float = _f(0.05)
    min_n: int = _f(15)
    samples: list[ScoredArch] = _f([])
    format_version: int = _f(FORMAT_VERSION)

    def pairs(self) -> list[tuple[dict, float]]:
        return [(s.arch, s.score) for s in self.samples]


@dataclasses.dataclass
class TuneResult(Checked):
    """``tune_result.json`` of ``python -m nni_seg tune``: the tuned training settings and what they scored."""
    experiment_id: str = _f("")
    trial_id: str | None = _f(None)
    score: float | None = _f(None)  # the best tune trial's val Dice (at the tune trials' size and epochs)
    base_score: float | None = _f(None)  # the base settings' val Dice there (the tune's first trial; None: not run)
    tuned: dict[str, Any] = _f({})  # the tuned settings' values
    train: TrainSettings = _f(TrainSettings())  # the base training settings with the tuned values
    config: str = _f("")  # tuned_train.yml
    format_version: int = _f(FORMAT_VERSION)

    def overrides(self) -> dict:
        return dict(self.tuned)
