"""Searches guided by what we know: any NNI tuner, started from known networks, kept within the budget.

``GuidedTuner`` wraps a built-in tuner (TPE, Evolution, Random, ...):

* ``start_with``: the reference networks (``seed``, ``unet``: :data:`nni_seg.space.arch.NAMED_ARCHS`) or your
  own architectures are its first trials, so a search never ends below its baselines (at the search's own
  proxy score). In a joint space a point may also give recipe labels (``{network: unet, train_lr: 1e-3}``);
  the ones it leaves out train with :data:`~nni_seg.space.arch.RECIPE_DEFAULTS`. The tuner learns from them:
  TPE and the others through their ``import_data`` (the API ``nnictl experiment import`` uses), NNI's
  Evolution as members of its first population.
* ``budget``: proposals costlier than the trial's budget (``max_mmacs`` and/or ``max_mmacs_of`` a reference
  network, at ``size``) are not run at all: the tuner is told they score 0 (what a REJECTED trial would
  tell it) and asked again, so every trial of ``maxTrialNumber`` trains an architecture within the budget
  (MACs counted on PyTorch's meta device: shapes only, milliseconds). The trial still checks its budget.
  ``min_share`` (say 0.5) also keeps out networks under that share of the MMACs limit: the tuner's own
  floor, for ladders whose short rungs would otherwise hand the retrain the networks that learn fastest.
* ``exclude``: ``{label: [values]}`` left out of the inner tuner's search space (a prior: the choices that
  lost on measured trainings, :mod:`nni_seg.workflow.prior`); a ``start_with`` network that uses one is an error.

Use from nnictl::

    tuner:
      className: nni_seg.tuners.GuidedTuner
      codeDirectory: .
      classArgs:
        tuner: TPE
        tuner_args: {seed: 0}
        start_with: [unet]
        budget: {max_mmacs_of: unet, size: [48, 64], num_classes: 11}
        exclude: {up: [deconv]}
"""
from __future__ import annotations

import logging

from nni.tuner import Tuner

from ..space.budget import Budget
from ..space.arch import (CHOICES, NAMED_ARCHS, RECIPE_CHOICES, RECIPE_DEFAULTS, Arch, ArchError, recipe_settings,
                          split_joint, validate_arch)

_logger = logging.getLogger(__name__)


def known_archs(start_with: list, source: str = "start_with") -> list[Arch]:
    """Known points from names (``seed``, ``unet``), architecture dicts, or either with recipe labels
    (``{network: unet, train_lr: 1e-3}``, or an architecture dict with ``train_*`` labels beside its own), validated.
    A point is its architecture's labels plus the recipe labels it gives; the others train with
    :data:`~nni_seg.space.arch.RECIPE_DEFAULTS` in a joint space. ``source`` names the class argument in errors."""
    if not isinstance(start_with, list):
        raise ValueError(f"{source}: a list of networks, got {start_with!r}")
    try:
        return [_known_point(item, source) for item in start_with]
    except ArchError as e:  # the classArgs' errors are ValueErrors (the config check names the file)
        raise ValueError(str(e)) from None


def _known_point(item, source: str) -> dict:
    if isinstance(item, str):
        item = {"network": item}
    if not isinstance(item, dict):
        raise ValueError(f"{source}: a network name or a dict, got {item!r}")
    arch, recipe = split_joint(item)
    recipe_settings(recipe, source=source)  # each value checked like an architecture choice
    if "network" in arch:
        name, rest = arch.pop("network"), sorted(arch)
        if rest:
            raise ValueError(f"{source}: give network {name!r} or an architecture's labels, not both "
                             f"(also: {', '.join(rest)})")
        if name not in NAMED_ARCHS:
            raise ValueError(f"{source}: unknown network {name!r}; valid: {', '.join(NAMED_ARCHS)} or an "
                             f"architecture dict")
        arch = NAMED_ARCHS[name]()
    else:
        arch = validate_arch(arch, source=source, fill_legacy=True)
    return {**arch, **recipe}


def known_value(arch: Arch, label: str):
    """A known network's value for ``label``: its own, or for a recipe label it does not give, the recipe
    default it trains with (:data:`~nni_seg.space.arch.RECIPE_DEFAULTS`)."""
    return arch[label] if label in arch else RECIPE_DEFAULTS[label]


def encode(arch: Arch, search_space: dict) -> dict:
    """``arch`` as the trial parameters of ``search_space``'s kind (``choice``: plain values;
    ``layer_choice``: ``{"_value", "_idx"}``); labels not in the space are left out. In a joint space, recipe
    labels ``arch`` does not give take :data:`~nni_seg.space.arch.RECIPE_DEFAULTS`."""
    out = {}
    for label, spec in search_space.items():
        value = known_value(arch, label)
        if spec["_type"] == "layer_choice":
            out[label] = {"_value": value, "_idx": list(spec["_value"]).index(value)}
        else:
            out[label] = value
    return out


MAX_TRIES = 500  # proposals asked for before a within-budget one is given up on


class GuidedTuner(Tuner):
    """``tuner`` (a built-in name) started from ``start_with`` and kept within ``budget``; see the module doc."""

    def __init__(self, tuner: str = "TPE", tuner_args: dict | None = None, start_with: list | None = None,
                 budget: dict | None = None, optimize_mode: str = "maximize", exclude: dict | None = None):
        from nni.tools.package_utils.tuner_factory import create_builtin_class_instance

        args = {"optimize_mode": optimize_mode, **(tuner_args or {})}
        # NNI's Evolution takes no seed and draws its first population from an unseeded RandomState: a seed
        # given here is applied after its update_search_space (see _reseed_evolution)
        self.evolution_seed = args.pop("seed", None) if str(tuner).lower() == "evolution" else None
        try:
            self.inner = create_builtin_class_instance(tuner, args, "tuners")
        except RuntimeError:
            raise ValueError(f"unknown tuner {tuner!r} for GuidedTuner (a built-in name: TPE, Evolution, Random, ...)"
                             ) from None
        self.known = known_archs(start_with if start_with is not None else [])
        self.budget = Budget(**budget) if budget else None
        self.pending: list[dict] = []
        self.served: dict[int, dict] = {}
        self.by_population = type(self.inner).__name__ == "EvolutionTuner"
        self.skipped = 0  # proposals outside the budget, never run
        self.exclude = dict(exclude or {})

    def update_search_space(self, search_space: dict) -> None:
        unknown = [label for label in search_space if label not in CHOICES and label not in RECIPE_CHOICES]
        if unknown:
            raise ValueError(f"GuidedTuner: the search space has labels of no model space here: {unknown[:5]}")
        from ..space.arch import narrow

        params = self.known_parameters(self.known, search_space)
        narrowed = narrow(search_space, self.exclude)
        self.inner.update_search_space(narrowed)
        if self.evolution_seed is not None:
            self._reseed_evolution()
        if self.by_population:
            self._seed_population(params, narrowed)
        else:
            self.pending = params
        if self.budget is not None:
            outside = [a for a in self.known if not self.budget.allows(split_joint(a)[0])]
            if outside:  # a known network is run as given: over the ceiling the trial rejects it
                _logger.warning("start_with: %d known network(s) outside the budget (the trials reject those over "
                                "its ceiling)", len(outside))

    def known_parameters(self, points: list[Arch], search_space: dict, source: str = "start_with") -> list[dict]:
        """Known points as trial parameters of ``search_space`` narrowed by ``exclude`` (what the inner tuner
        searches), each checked against it."""
        from ..space.arch import narrow

        self._check_recipes(search_space, points, source)
        space = narrow(search_space, self.exclude)
        return [encode(self._within_space(a, space, source), space) for a in points]

    @staticmethod
    def _check_recipes(search_space: dict, points: list[Arch], source: str) -> None:
        """A recipe a known point gives must be one the space can express: a label the space lacks would be
        dropped (the trial's own settings would train instead), a value it lacks could not be learned from."""
        from ..space.arch import is_one_of

        for point in points:
            for label, value in split_joint(point)[1].items():
                if label not in search_space:
                    raise ValueError(f"{source}: {label} given, but the search space has no recipe label "
                                     f"{label} (a joint space has them: experiments/search_space_joint.json)")
                if not is_one_of(value, search_space[label]["_value"]):
                    raise ValueError(f"{source}: {label}={value!r} is not one of the search space's "
                                     f"{list(search_space[label]['_value'])}")

    def _reseed_evolution(self) -> None:
        """NNI's Evolution, reproducible: its RandomState seeded and its first population drawn again from it
        (its mutations draw from Python's ``random``, seeded too: the tuner has the dispatcher's process)."""
        import random

        import numpy as np

        random.seed(self.evolution_seed)
        self.inner.random_state = np.random.RandomState(self.evolution_seed)
        self.inner.population = []
        for _ in range(self.inner.population_size):
            self.inner._random_generate_individual()  # what its update_search_space does, NNI 3.0

    def _within_space(self, arch: Arch, search_space: dict, source: str = "start_with") -> Arch:
        """A known network in the narrowed space: an inert label on an excluded value takes an allowed one
        (same network); an active one is an error, since the tuner could not learn from it."""
        from ..space.arch import active_labels

        active = set(active_labels(arch)) | set(RECIPE_CHOICES)  # a recipe setting always matters
        out = dict(arch)
        for label, values in self.exclude.items():
            value = known_value(arch, label)  # narrow() has checked the label is the space's
            if value in values:
                if label in active:
                    raise ValueError(f"{source}: a network with {label}={value!r}, which exclude leaves out")
                out[label] = search_space[label]["_value"][0]
        return out

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
        return self._within_budget(parameter_id, **kwargs)

    def _within_budget(self, parameter_id: int, **kwargs) -> dict:
        """The inner tuner's next proposal that the budget allows; those outside it score 0 for the tuner."""
        from ..space.arch import decode_parameters

        for _ in range(MAX_TRIES):
            params = self.inner.generate_parameters(parameter_id, **kwargs)
            if self.budget is None or self.budget.allows(
                    validate_arch(split_joint(decode_parameters(params))[0], fill_legacy=True)):
                return params
            self.skipped += 1
            self.inner.receive_trial_result(parameter_id, params, {"default": 0.0, "rejected": 1})
            if hasattr(self.inner, "trial_end"):
                self.inner.trial_end(parameter_id, True)
        _logger.warning("no proposal within the budget in %d tries; running one outside it", MAX_TRIES)
        return params

    def generate_multiple_parameters(self, parameter_id_list, **kwargs):
        if self.by_population and self.budget is None:  # Evolution's own credit mechanism
            return self.inner.generate_multiple_parameters(parameter_id_list, **kwargs)
        return super().generate_multiple_parameters(parameter_id_list, **kwargs)

    def receive_trial_result(self, parameter_id: int, parameters: dict, value, **kwargs) -> None:
        if parameter_id in self.served:
            self.inner.import_data([{"parameter": self.served.pop(parameter_id), "value": value}])
            return
        self.inner.receive_trial_result(parameter_id, parameters, value, **kwargs)

    def adopt(self, parameter_id: int, parameters: dict) -> None:
        """A trial this tuner did not propose (NNI reruns a resumed experiment's unfinished trials with their
        old parameters): its result reaches the inner tuner as imported data, as a known point's does."""
        self.served[parameter_id] = parameters

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


class StartedTuner(GuidedTuner):
    """Any search space (e.g. ``tune``'s training settings): ``tuner`` whose first trials are the given
    ``start_with`` points (plain parameter dicts, e.g. the training settings being tuned), so the best trial
    is never below them and the tuner learns from them. No architecture checks, no budget."""

    def __init__(self, tuner: str = "TPE", tuner_args: dict | None = None, start_with: list | None = None,
                 optimize_mode: str = "maximize"):
        super().__init__(tuner, tuner_args, None, None, optimize_mode)
        self.by_population = False  # Evolution learns of the start points through import_data like the others
        self.points = [dict(p) for p in (start_with or [])]

    def update_search_space(self, search_space: dict) -> None:
        for point in self.points:
            missing = sorted(set(search_space) - set(point))
            if missing:
                raise ValueError(f"start_with: a point lacks {', '.join(missing)} of the search space")
            for key, spec in search_space.items():
                if spec.get("_type") == "choice" and point[key] not in spec["_value"]:
                    raise ValueError(f"start_with: {key}={point[key]!r} is not one of {spec['_value']}")
        self.inner.update_search_space(search_space)
        self.pending = [{k: p[k] for k in search_space} for p in self.points]
