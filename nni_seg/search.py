"""``python -m nni_seg search``: NNI's NAS strategies on the model space through ``NasExperiment``.

Strategies: ``enas`` (one-shot, weight sharing + RL controller; see :mod:`nni_seg.oneshot`),
``evolution`` (NNI's RegularizedEvolution), ``tpe`` and ``random`` (multi-trial: each trial trains
one architecture with the same code and record as ``python -m nni_seg.trial``). The NNI web UI runs
on ``--port`` while the search runs. The search ends by exporting the top architecture in the same
JSON format as ``python -m nni_seg export`` (multi-trial: from the trials' records, cross-checked with
NNI's own top model; ENAS: the controller's choice, whose honest score needs a retrain).

Config (YAML, every key optional): ``data: {DataConfig}``, ``train: {TrainConfig}``, ``search: {SearchConfig}``.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .config import from_dict
from .data import DataConfig
from .launch import interrupt_on_signal
from .train import TrainConfig

STRATEGY_NAMES = ("enas", "evolution", "tpe", "random")


@dataclass
class SearchConfig:
    strategy: str = "random"
    trials: int = 8  # multi-trial budget
    concurrency: int = 2
    port: int = 8081
    working_dir: str = "nni-experiments"
    population_size: int = 8  # evolution
    sample_size: int = 4  # evolution
    mutation_prob: float = 0.05  # evolution
    enas_epochs: int = 3  # enas: supernet epochs
    fixed: dict = field(default_factory=dict)  # enas: macro choices (default: the seed's)


def load_config(path: str | None) -> tuple[DataConfig, TrainConfig, SearchConfig]:
    raw: dict = {}
    if path:
        import yaml

        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config not found: {p}")
        raw = yaml.safe_load(p.read_text()) or {}
        unknown = sorted(set(raw) - {"data", "train", "search"})
        if unknown:
            raise ValueError(f"{p}: unknown section(s) {', '.join(unknown)}; valid: data, train, search")
    return (from_dict(DataConfig, raw.get("data") or {}, source=f"{path}: data"),
            from_dict(TrainConfig, raw.get("train") or {}, source=f"{path}: train"),
            from_dict(SearchConfig, raw.get("search") or {}, source=f"{path}: search"))


class SearchInterrupted(KeyboardInterrupt):
    """The search was stopped before its budget was spent; ``args[0]`` is the experiment id."""


def multi_trial(data_cfg: DataConfig, train_cfg: TrainConfig, cfg: SearchConfig) -> dict:
    """Run a multi-trial NAS experiment and export its top architecture.

    Ctrl-C / SIGTERM stop it (:class:`SearchInterrupted`); finished trials and their records stay,
    and ``python -m nni_seg export`` works on the stopped experiment. NNI 3.0 cannot resume a NAS
    experiment (measured: its NAS command channel rejects the ``ImportData`` command that the
    manager sends on resume); long searches that must survive restarts belong on the nnictl path
    (``python -m nni_seg run``, ``--resume``).
    """
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperiment
    from nni.nas.strategy import TPE, Random, RegularizedEvolution

    from .data import load_dataset
    from .export import export
    from .nas_eval import evaluate_model
    from .space import SegSpace

    data = load_dataset(data_cfg)  # fail fast on bad data, before any trial starts
    strategy = {
        "evolution": lambda: RegularizedEvolution(population_size=cfg.population_size, sample_size=cfg.sample_size,
                                                  mutation_prob=cfg.mutation_prob, dedup=True),
        "tpe": lambda: TPE(),
        "random": lambda: Random(dedup=True),
    }[cfg.strategy]()
    evaluator = FunctionalEvaluator(evaluate_model, data=asdict(data_cfg), train=asdict(train_cfg))
    exp = NasExperiment(SegSpace(data.num_classes, data.in_channels), evaluator, strategy)
    exp.config.max_trial_number = cfg.trials
    exp.config.trial_concurrency = cfg.concurrency
    exp.config.experiment_working_directory = str(Path(cfg.working_dir).resolve())
    if not exp.run(port=cfg.port):  # interrupted: NNI has stopped the experiment
        raise SearchInterrupted(exp.id)
    try:
        top, path = export(exp.id, exp_dirs=[cfg.working_dir])
        nni_top = exp.export_top_models(top_k=1, formatter="dict")
        top["nni_top_model_agrees"] = bool(nni_top) and nni_top[0] == top["arch"]
        top["strategy"] = cfg.strategy
        from .records import atomic_write_json
        atomic_write_json(path, top)
    finally:
        exp.stop()
    return top


def enas(data_cfg: DataConfig, train_cfg: TrainConfig, cfg: SearchConfig) -> dict:
    from nni.nas.experiment import NasExperiment
    from nni.nas.strategy import ENAS

    from .data import load_dataset
    from .oneshot import lightning_evaluator
    from .records import atomic_write_json
    from .space import MACRO_VALUES, SegSpace, arch_summary, seed_arch, validate_arch

    data = load_dataset(data_cfg)
    fixed = {k: v for k, v in seed_arch().items() if k in MACRO_VALUES}
    fixed.update(cfg.fixed)
    evaluator = lightning_evaluator(data, epochs=cfg.enas_epochs, batch_size=train_cfg.batch_size, lr=train_cfg.lr,
                                    loss=train_cfg.loss, accelerator="gpu" if train_cfg.device.startswith("cuda") else
                                    ("cpu" if train_cfg.device == "cpu" else "auto"))
    exp = NasExperiment(SegSpace(data.num_classes, data.in_channels, fixed=fixed), evaluator,
                        ENAS(reward_metric_name="default"))
    exp.config.experiment_working_directory = str(Path(cfg.working_dir).resolve())
    exp.run(port=cfg.port)
    try:
        chosen = exp.export_top_models(top_k=1, formatter="dict")[0]
    finally:
        exp.stop()
    arch = validate_arch({**seed_arch(), **fixed, **chosen}, source="ENAS export")
    top = {"experiment_id": exp.id, "strategy": "enas", "arch": arch, "summary": arch_summary(arch),
           "metrics": None, "note": "ENAS exports the controller's choice; retrain it for an honest score",
           "data": asdict(data_cfg), "train": asdict(train_cfg), "fixed": fixed}
    path = Path(cfg.working_dir) / exp.id / "top_arch.json"
    atomic_write_json(path, top)
    top["_path"] = str(path)
    return top


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nni_seg search", description=__doc__.split("\n\n")[0])
    ap.add_argument("--strategy", help=f"one of {', '.join(STRATEGY_NAMES)} (overrides the config)")
    ap.add_argument("--config", help="YAML with data/train/search sections")
    ap.add_argument("--trials", type=int)
    ap.add_argument("--port", type=int)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt_on_signal)  # kill/timeout: NNI stops the experiment, trials' records stay
    try:
        data_cfg, train_cfg, cfg = load_config(args.config)
        for k in ("strategy", "trials", "port"):
            if getattr(args, k) is not None:
                setattr(cfg, k, getattr(args, k))
        if cfg.strategy not in STRATEGY_NAMES:
            raise ValueError(f"unknown strategy {cfg.strategy!r}; valid: {', '.join(STRATEGY_NAMES)}")
        top = enas(data_cfg, train_cfg, cfg) if cfg.strategy == "enas" else multi_trial(data_cfg, train_cfg, cfg)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    except SearchInterrupted as e:
        print(f"search {e.args[0]} stopped before its budget; finished trials are kept: "
              f"python -m nni_seg export {e.args[0]} --exp-dir {cfg.working_dir} (NNI 3.0 cannot resume "
              f"NAS experiments; use `python -m nni_seg run` for searches that must resume)", file=sys.stderr)
        return 130
    print(json.dumps(top["arch"], indent=2))
    m = top.get("metrics")
    score = f"dice={m['dice']:.4f}" if m else "not scored (one-shot; retrain it)"
    print(f"{cfg.strategy}: top architecture of {top['experiment_id']}: {score} | {top['summary']}")
    return 0
