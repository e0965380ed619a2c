"""Searches that start from what we know: any NNI tuner, with known architectures as its first trials.

``SeededTuner`` wraps a built-in tuner (TPE, Evolution, Random, ...) and makes the reference networks
(``seed``, ``unet``: :data:`nni_seg.arch.NAMED_ARCHS`) or your own architectures its first trials, so
a search never ends below its baselines (at the search's own proxy score) and the tuner learns from them:

* TPE and the others take the known points' results through their ``import_data`` (the API that
  ``nnictl experiment import`` uses);
* NNI's Evolution gets them as members of its first population, which it then mutates.

Under a cost budget a reference network over it is rejected before training like any other (so
``start_with: [unet]`` suits a budget of the U-Net's MMACs). Use from nnictl::

    tuner:
      className: nni_seg.tuners.SeededTuner
      codeDirectory: .
      classArgs: {tuner: TPE, tuner_args: {optimize_mode: maximize, seed: 0}, start_with: [unet]}
"""
from __future__ import annotations

import logging

from nni.tuner import Tuner

from .arch import CHOICES, NAMED_ARCHS, Arch, validate_arch

_logger = logging.getLogger(__name__)


def known_archs(start_with: list) -> list[Arch]:
    """Architectures from names (``seed``, ``unet``) or architecture dicts, validated."""
    out = []
    for item in start_with:
        if isinstance(item, str):
            if item not in NAMED_ARCHS:
                raise ValueError(f"start_with: unknown network {item!r}; valid: {', '.join(NAMED_ARCHS)} or an "
                                 f"architecture dict")
            out.append(NAMED_ARCHS[item]())
        else:
            out.append(validate_arch(item, source="start_with", fill_legacy=True))
    return out


def encode(arch: Arch, search_space: dict) -> dict:
    """``arch`` as the trial parameters of ``search_space``'s kind (``choice``: plain values;
    ``layer_choice``: ``{"_value", "_idx"}``); labels not in the space are left out."""
    out = {}
    for label, spec in search_space.items():
        value = arch[label]
        if spec["_type"] == "layer_choice":
            out[label] = {"_value": value, "_idx": list(spec["_value"]).index(value)}
        else:
            out[label] = value
    return out


class SeededTuner(Tuner):
    """``tuner`` (a built-in name) with ``start_with`` as its first trials; see the module doc."""

    def __init__(self, tuner: str = "TPE", tuner_args: dict | None = None, start_with: list | None = None,
                 optimize_mode: str = "maximize"):
        from nni.tools.package_utils.tuner_factory import create_builtin_class_instance

        args = {"optimize_mode": optimize_mode, **(tuner_args or {})}
        try:
            self.inner = create_builtin_class_instance(tuner, args, "tuners")
        except RuntimeError:
            raise ValueError(f"unknown tuner {tuner!r} for SeededTuner (a built-in name: TPE, Evolution, Random, ...)")
        self.known = known_archs(start_with if start_with is not None else ["seed", "unet"])
        self.pending: list[dict] = []
        self.served: dict[int, dict] = {}
        self.by_population = type(self.inner).__name__ == "EvolutionTuner"

    def update_search_space(self, search_space: dict) -> None:
        unknown = [label for label in search_space if label not in CHOICES]
        if unknown:
            raise ValueError(f"SeededTuner: the search space has labels of no model space here: {unknown[:5]}")
        self.inner.update_search_space(search_space)
        params = [encode(a, search_space) for a in self.known]
        if self.by_population:
            self._seed_population(params, search_space)
        else:
            self.pending = params

    def _seed_population(self, params: list[dict], search_space: dict) -> None:
        """Evolution: the known architectures replace its first random (not yet run) individuals."""
        from nni.algorithms.hpo.evolution_tuner import Individual

        fresh = [i for i, ind in enumerate(self.inner.population) if ind.result is None]
        for slot, p in zip(fresh, params):
            config = {k: {"_index": list(search_space[k]["_value"]).index(v), "_value": v} for k, v in p.items()}
            self.inner.population[slot] = Individual(config=config)

    def generate_parameters(self, parameter_id: int, **kwargs) -> dict:
        if self.pending:
            params = self.pending.pop(0)
            self.served[parameter_id] = params
            return params
        return self.inner.generate_parameters(parameter_id, **kwargs)

    def generate_multiple_parameters(self, parameter_id_list, **kwargs):
        if self.by_population:
            return self.inner.generate_multiple_parameters(parameter_id_list, **kwargs)
        return super().generate_multiple_parameters(parameter_id_list, **kwargs)

    def receive_trial_result(self, parameter_id: int, parameters: dict, value, **kwargs) -> None:
        if parameter_id in self.served:
            self.inner.import_data([{"parameter": self.served.pop(parameter_id), "value": value}])
            return
        self.inner.receive_trial_result(parameter_id, parameters, value, **kwargs)

    def trial_end(self, parameter_id: int, success: bool, **kwargs) -> None:
        if self.served.pop(parameter_id, None) is not None:
            return
        if hasattr(self.inner, "trial_end"):
            self.inner.trial_end(parameter_id, success, **kwargs)

    def import_data(self, data: list) -> None:
        """Resumed experiments: the known points already run are not served again."""
        done = [d.get("parameter") for d in data if isinstance(d, dict)]
        self.pending = [p for p in self.pending if p not in done]
        self.inner.import_data(data)
