"""``python -m nni_seg search``: NNI's NAS strategies on the model space through ``NasExperiment``.

Strategies: ``enas`` (one-shot, weight sharing + RL controller; see :mod:`nni_seg.experiment.oneshot`),
``evolution`` (NNI's RegularizedEvolution), ``tpe`` and ``random`` (multi-trial: each trial trains
one architecture with the same code and record as ``python -m nni_seg.trial``). The NNI web UI runs
on ``--port`` while the search runs. The search ends by exporting the top architecture in the same
JSON format as ``python -m nni_seg export`` (multi-trial: from the trials' records, cross-checked with
NNI's own top model; ENAS: the controller's choice, whose honest score needs a retrain).

Config (YAML, every key optional): ``data:`` (DataSettings), ``train:`` (TrainSettings), ``search:`` (SearchSettings).
"""
from __future__ import annotations

from pathlib import Path

from ..config import schema
from ..errors import RunFailed
from ..config.schema import TopArch
from ..config.settings import DataSettings, SearchSettings, TrainSettings, load_sections

SECTIONS = {"data": DataSettings, "train": TrainSettings, "search": SearchSettings}


def load_config(path: str | None) -> tuple[DataSettings, TrainSettings, SearchSettings]:
    s = load_sections(path, SECTIONS)
    return s["data"], s["train"], s["search"]


class SearchInterrupted(KeyboardInterrupt):
    """The search was stopped before its budget was spent; ``args[0]`` is the experiment id."""


def multi_trial(data_cfg: DataSettings, train_cfg: TrainSettings, cfg: SearchSettings) -> TopArch:
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

    from ..config._typed import to_json
    from ..data import load_dataset
    from .export import export
    from ..experiment.nas_eval import evaluate_model
    from ..space.nni_space import SegSpace

    data = load_dataset(data_cfg)  # fail fast on bad data, before any trial starts
    strategy = {
        "evolution": lambda: RegularizedEvolution(population_size=cfg.population_size, sample_size=cfg.sample_size,
                                                  mutation_prob=cfg.mutation_prob, dedup=True),
        "tpe": lambda: TPE(),
        "random": lambda: Random(dedup=True),
    }[cfg.strategy]()
    evaluator = FunctionalEvaluator(evaluate_model, data=to_json(data_cfg), train=to_json(train_cfg))
    exp = NasExperiment(SegSpace(data.num_classes, data.in_channels), evaluator, strategy)
    exp.config.max_trial_number = cfg.trials
    exp.config.trial_concurrency = cfg.concurrency
    exp.config.experiment_working_directory = str(Path(cfg.working_dir).resolve())
    if not exp.run(port=cfg.port):  # interrupted: NNI has stopped the experiment
        raise SearchInterrupted(exp.id)
    try:
        top, path = export(exp.id, exp_dirs=[cfg.working_dir])
        nni_top = exp.export_top_models(top_k=1, formatter="dict")
        if not (nni_top and _among_best(nni_top[0], top, exp_dir=path.parent)):
            top.warnings.append(f"NNI's own top model differs from the best trial's record: {nni_top[:1]}")
        top.strategy = cfg.strategy
        schema.save(top, path)
    finally:
        exp.stop()
    return top


def _among_best(nni_arch: dict, top: TopArch, exp_dir: Path) -> bool:
    """NNI's top model is our export, or a trial with the very same score (tiny trials tie; export then
    takes the cheaper network, NNI whichever it met first: a tie is not a disagreement)."""
    from ..experiment.records import trial_records

    def same(arch: dict) -> bool:
        return all(arch.get(k) == v for k, v in nni_arch.items())

    if same(top.arch):
        return True
    best = (top.metrics or {}).get(top.metric)
    loaded, _ = trial_records(exp_dir)
    return best is not None and any(x.record.score(top.metric) == best and same(x.record.arch) for x in loaded)


def enas(data_cfg: DataSettings, train_cfg: TrainSettings, cfg: SearchSettings) -> TopArch:
    """NNI's one-shot ENAS over the cell ops and stage depths, the macro choices pinned (default: the
    seed's); exports the controller's choice, which must be retrained for an honest score."""
    from nni.nas.experiment import NasExperiment
    from nni.nas.strategy import ENAS

    from ..space.arch import MACRO_LABELS, arch_summary, seed_arch, validate_arch
    from ..data import load_dataset
    from ..experiment.oneshot import lightning_evaluator
    from ..space.nni_space import SegSpace

    data = load_dataset(data_cfg)
    fixed = {k: v for k, v in seed_arch().items() if k in MACRO_LABELS}
    fixed.update(cfg.fixed)
    accelerator = "gpu" if train_cfg.device.startswith("cuda") else ("cpu" if train_cfg.device == "cpu" else "auto")
    evaluator = lightning_evaluator(data, epochs=cfg.enas_epochs, batch_size=train_cfg.batch_size, lr=train_cfg.lr,
                                    loss=train_cfg.loss, max_seconds=cfg.enas_seconds, accelerator=accelerator)
    exp = NasExperiment(SegSpace(data.num_classes, data.in_channels, fixed=fixed), evaluator,
                        ENAS(reward_metric_name="default"))
    exp.config.experiment_working_directory = str(Path(cfg.working_dir).resolve())
    exp.run(port=cfg.port)
    try:
        models = exp.export_top_models(top_k=1, formatter="dict")
    finally:
        exp.stop()
    if not models:
        raise RunFailed(f"ENAS experiment {exp.id} exported no architecture")
    arch = validate_arch({**seed_arch(), **fixed, **models[0]}, source="ENAS export")
    top = TopArch(arch=arch, summary=arch_summary(arch), experiment_id=exp.id, strategy="enas", metrics=None,
                  note="ENAS exports the controller's choice; retrain it for an honest score", data=data_cfg,
                  train=train_cfg, source="ENAS controller")
    schema.save(top, Path(cfg.working_dir) / exp.id / schema.TOP_NAME)
    return top


def run_search(data_cfg: DataSettings, train_cfg: TrainSettings, cfg: SearchSettings) -> TopArch:
    """``search``: ENAS or a multi-trial NAS strategy; the exported top architecture."""
    return enas(data_cfg, train_cfg, cfg) if cfg.strategy == "enas" else multi_trial(data_cfg, train_cfg, cfg)
