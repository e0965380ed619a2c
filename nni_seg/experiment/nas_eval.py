"""Evaluator function for NNI's NAS experiments (``NasExperiment`` + multi-trial strategies).

NNI rebuilds the sampled model in each trial process and calls :func:`evaluate_model` with it; we
train it with the same code as ``python -m nni_seg.trial`` and write the same record, so ``export``
works on NAS experiments too.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..config.settings import DataSettings, TrainSettings


def evaluate_model(model, data: dict, train: dict) -> None:
    import nni
    import nni.trial

    from ..config._typed import convert
    from ..space.arch import validate_arch
    from .trial import NniReporter, run_trial

    params = nni.trial._params or {}
    sample = getattr(params.get("parameters"), "sample", None)
    if not isinstance(sample, dict):
        raise RuntimeError("NNI gave this NAS trial no model sample")
    extra = {"trial_id": nni.get_trial_id(), "experiment_id": nni.get_experiment_id(),
             "parameter_id": params.get("parameter_id"), "sequence_id": nni.get_sequence_id(),
             "raw_parameters": None}  # NNI records a serialized model space here, not a dict
    arch = validate_arch(dict(sample), source="NAS sample", fill_legacy=True)
    run_trial(arch, convert(DataSettings, data, "data"), convert(TrainSettings, train, "train"),
              Path(os.environ.get("NNI_OUTPUT_DIR", ".")), reporter=NniReporter(), ids=extra, model=model)
