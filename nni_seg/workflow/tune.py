"""After the search: tune the winner's training with an NNI HPO experiment.

:func:`run_tune` writes an nnictl experiment into ``out`` (config, search space over training settings,
trial settings) whose trials train the fixed architecture with the tuner's settings (the same trial entry
point, ``--hpo``), runs it to the end with :func:`nni_seg.workflow.run.run_experiment`, and exports the best
trial's settings as a training config (``tuned_train.yml``) that ``retrain --config`` takes. The first trial
trains the base settings (:class:`nni_seg.experiment.tuners.StartedTuner`), so the tuned settings are never below them
at the tune trials' size and epochs, and ``tune_result.json`` says what both scored there.

What is tuned (:data:`TUNE_SPACE`): peak learning rate and weight decay (log-uniform), the loss, the
random-scale range of the augmentation and the batch size. The class weights keep the base settings'
(the recipe's median_freq): unweighted training wins the short trials and loses at the retrain, as in the
joint search (docs/results.md). The number of epochs is not tuned either (a tuned config keeps the
retrain's epochs, so default and tuned are compared at the same cost). Either can be added to the YAML's
``space:``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

from ..config import schema
from ..config._typed import to_json
from ..errors import ConfigError, UserError
from ..files import atomic_write_text, output_folder
from ..config.schema import TopArch, TuneResult
from ..config.settings import DataSettings, RunSettings, TrainSettings, TuneSettings, load_sections, read_yaml

TUNE_SPACE = {
    "lr": {"_type": "loguniform", "_value": [3e-4, 1e-2]},
    "weight_decay": {"_type": "loguniform", "_value": [1e-5, 1e-2]},
    "loss": {"_type": "choice", "_value": ["ce", "ce+dice"]},
    "scale_min": {"_type": "choice", "_value": [0.5, 0.75, 1.0]},  # <= 1 <= every scale_max: always valid
    "scale_max": {"_type": "choice", "_value": [1.0, 1.25, 1.5, 2.0]},
    "batch_size": {"_type": "choice", "_value": [4, 8, 16]},
}
SECTIONS = {"tune": TuneSettings, "data": DataSettings, "train": TrainSettings}
OUTPUTS = ("config.yml", "search_space.json", "trial.yml", "arch.json", "tuned_train.yml", "tune_result.json")


def check_space(space: dict, where: str) -> dict:
    """A tune search space: NNI entries for training settings only."""
    names = {f.name for f in dataclasses.fields(TrainSettings)}
    for key, spec in space.items():
        if key not in names:
            raise ConfigError(f"{where}: space.{key} is not a training setting; valid: {', '.join(sorted(names))}")
        if not isinstance(spec, dict) or "_type" not in spec or "_value" not in spec:
            raise ConfigError(f"{where}: space.{key}: expected {{_type: ..., _value: [...]}} (NNI's search-space form)")
    return space


def load_tune_config(path: str | Path | None) -> tuple[TuneSettings, DataSettings, TrainSettings, dict]:
    """(tune, data, train settings, search space) from a tune YAML (every section optional)."""
    space = (read_yaml(path) if path else {}).get("space")
    if space is not None and not isinstance(space, dict):
        raise ConfigError(f"{path}: space: expected a mapping of training settings to NNI search-space entries")
    s = load_sections(path, SECTIONS, other=("space",))
    return s["tune"], s["data"], s["train"], check_space(space if space is not None else dict(TUNE_SPACE), str(path))


def write_experiment(arch: dict, tune: TuneSettings, data: DataSettings, train: TrainSettings, space: dict,
                     out: Path, working_dir: Path, start: dict | None = None) -> Path:
    """The nnictl config (and its search space, trial settings, architecture) in ``out``; returns the config.
    ``start``: the first trial's point (the base settings, :func:`start_point`); None: the tuner's own draws."""
    import yaml

    code_dir = Path(__file__).resolve().parents[2]
    trial_train = dataclasses.replace(train, epochs=tune.trial_epochs) if tune.trial_epochs else train
    atomic_write_text(out / "arch.json", json.dumps(arch, indent=2) + "\n")
    atomic_write_text(out / "search_space.json", json.dumps(space, indent=2) + "\n")
    atomic_write_text(out / "trial.yml", yaml.safe_dump({"data": to_json(data), "train": to_json(trial_train)},
                                                        sort_keys=False))
    tuner_args = {} if tune.tuner == "Evolution" else {"seed": tune.tuner_seed}
    if tune.tuner == "TPE":  # NNI's TPE draws its first 20 at random: a 12-trial tune would never use its model
        tuner_args["tpe_args"] = {"n_startup_jobs": max(4, tune.trials // 3)}
    config = {
        "experimentName": "nni_seg-tune",
        "searchSpaceFile": str((out / "search_space.json").resolve()),
        "trialCommand": f"python -m nni_seg.trial --hpo --config {(out / 'trial.yml').resolve()} "
                        f"--arch {(out / 'arch.json').resolve()}",
        "trialCodeDirectory": str(code_dir),
        "trialConcurrency": tune.concurrency,
        "maxTrialNumber": tune.trials,
        "experimentWorkingDirectory": str(working_dir.resolve()),
        # the base settings are the first trial: the tuned ones are never below them at the tune's trials
        "tuner": {"className": "nni_seg.tuners.StartedTuner", "codeDirectory": str(code_dir),
                  "classArgs": {"tuner": tune.tuner, "tuner_args": tuner_args, "start_with": [start] if start else []}},
        "trainingService": {"platform": "local"},
    }
    return atomic_write_text(out / "config.yml", yaml.safe_dump(config, sort_keys=False))


def start_point(train: TrainSettings, space: dict) -> dict | None:
    """The base training settings as a point of ``space`` (None when one lies outside it: then the tune
    starts from the tuner's own draws)."""
    point = {k: getattr(train, k) for k in space}
    for key, spec in space.items():
        kind, values = spec["_type"], spec["_value"]
        if kind == "choice" and point[key] not in values:
            return None
        if kind in ("uniform", "loguniform", "quniform", "qloguniform") and not values[0] <= point[key] <= values[1]:
            return None
        if kind not in ("choice", "uniform", "loguniform", "quniform", "qloguniform", "randint"):
            return None
    return point


def base_score(exp_id: str, working_dir: Path, start: dict | None) -> float | None:
    """The val Dice of the tune trial that trained the base settings (``start``), from the trials' records."""
    from ..experiment.records import experiment_dir, trial_records
    from ..config.schema import Status

    if not start or not exp_id:
        return None
    for x in trial_records(experiment_dir(exp_id, [working_dir]))[0]:
        r = x.record
        if r.status == Status.SUCCEEDED and r.train and all(getattr(r.train, k) == v for k, v in start.items()):
            return (r.metrics or {}).get("dice")
    return None


def _fmt(score: float | None) -> str:
    return "not run" if score is None else f"{score:.4f}"


def _prepare_out(tune: TuneSettings) -> Path:
    return output_folder(tune.out, OUTPUTS, force=tune.force, what="an earlier tune", flag="tune --out")


def tuned_settings(top: TopArch, base: TrainSettings, space: dict) -> tuple[dict, TrainSettings]:
    """The winning trial's values of the tuned settings, and ``base`` with them (``base``'s epochs unless
    epochs were tuned)."""
    if top.train is None:
        raise UserError(f"tune experiment {top.experiment_id}: the best trial's record has no training settings")
    tuned = {k: getattr(top.train, k) for k in space}
    return tuned, dataclasses.replace(base, **tuned)


def tune_data_for(config: str | Path | None, d_cfg: DataSettings, data_flags: dict, base: DataSettings) -> DataSettings:
    """``base`` (a checkpoint's data) with what the tune YAML's ``data:`` section and the flags set on top."""
    in_yaml = (read_yaml(config).get("data") or {}) if config else {}
    keys = set(in_yaml) if isinstance(in_yaml, dict) else set()
    return dataclasses.replace(base, **{k: getattr(d_cfg, k) for k in keys}, **data_flags)


def run_tune(arch_source: str | Path, config: str | Path | None, out: str | Path | None = None,
             tune: TuneSettings | None = None, data: DataSettings | None = None, train: TrainSettings | None = None,
             log: Callable[[str], None] = print, data_flags: dict | None = None) -> TuneResult:
    """Tune the training of ``arch_source`` (top_arch.json, an architecture JSON, seed / unet, or a checkpoint
    folder) with the settings of ``config`` (a tune YAML; ``tune``/``data``/``train`` override its sections).
    A checkpoint folder brings its data too: the YAML's ``data:`` keys and ``data_flags`` (the data flags given)
    change it, ``data`` replaces it. Everything is checked (the data loaded once) before any file is written."""
    from ..data import load_dataset
    from ..space.arch import load_arch

    t_cfg, d_cfg, tr_cfg, space = load_tune_config(config)
    tune, train = tune or t_cfg, train or tr_cfg
    if out is not None:
        tune = dataclasses.replace(tune, out=str(out))
    src = Path(arch_source)
    if src.is_dir():  # a checkpoint folder: its architecture, and its data unless given
        meta = schema.load(schema.CheckpointMeta, src / schema.META_NAME)
        arch = meta.arch
        data = data or tune_data_for(config, d_cfg, data_flags or {}, meta.data)
    else:
        arch = load_arch(str(arch_source))
        data = data or dataclasses.replace(d_cfg, **(data_flags or {}))
    if tune.trial_epochs is not None and "epochs" in space:
        raise ConfigError(f"{config}: epochs is tuned (space.epochs): leave tune.trial_epochs unset")
    load_dataset(data)  # a bad --data-root stops here, not in every trial (and the trials then read the cache)
    out_dir = _prepare_out(tune)
    start = start_point(train, space)  # None: the base lies outside the space, the tuner draws from the start
    cfg_path = write_experiment(arch, tune, data, train, space, out_dir, out_dir / "experiments", start)
    from .run import run_experiment

    try:
        top, _ = run_experiment(cfg_path, RunSettings(port=tune.port, timeout=tune.timeout,
                                                   out=str(out_dir / "tune_top.json")), log=log)
    except UserError:  # refused before it started (a busy port, ...): leave nothing that blocks a retry
        for name in OUTPUTS:
            (out_dir / name).unlink(missing_ok=True)
        raise
    tuned, final = tuned_settings(top, train, space)
    import yaml

    path = atomic_write_text(out_dir / "tuned_train.yml",
                             f"# tuned by `python -m nni_seg tune` (experiment {top.experiment_id}, best trial "
                             f"{top.trial_id}: val Dice {(top.metrics or {}).get('dice', float('nan')):.4f} at the tune "
                             f"trials' settings); use: retrain --config this file\n"
                             + yaml.safe_dump({"train": to_json(final)}, sort_keys=False))
    base = base_score(top.experiment_id or "", out_dir / "experiments", start)
    result = TuneResult(experiment_id=top.experiment_id or "", trial_id=top.trial_id,
                        score=(top.metrics or {}).get("dice"), base_score=base, tuned=tuned, train=final,
                        config=str(path))
    log(f"tuned: {', '.join(f'{k}={v}' for k, v in tuned.items())}; val Dice at the tune trials' settings "
        f"{_fmt(result.score)} (the base settings: {_fmt(base)})")
    schema.save(result, out_dir / schema.TUNE_RESULT_NAME)
    return result
