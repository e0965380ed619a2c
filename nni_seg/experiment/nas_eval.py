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
    from ..config._typed import convert
    from ..space.arch import validate_arch
    from .channel import Trial
    from .trial import run_trial

    nni_trial = Trial(nas=True)
    sample = getattr(nni_trial.record.get("parameters"), "sample", None)
    if not isinstance(sample, dict):
        raise RuntimeError("NNI gave this NAS trial no model sample")
    ids = {**nni_trial.ids(), "raw_parameters": None}  # NNI records a serialized model space here, not a dict
    arch = validate_arch(dict(sample), source="NAS sample", fill_legacy=True)
    run_trial(arch, convert(DataSettings, data, "data"), convert(TrainSettings, train, "train"),
              Path(os.environ.get("NNI_OUTPUT_DIR", ".")), reporter=nni_trial, ids=ids, model=model)
