"""Search strategies run in-process over the model space, and the equal-budget strategy benchmark.

``STRATEGIES`` maps a name to a factory of an NNI tuner (the same classes nnictl runs): ``random``
(the baseline), ``tpe``, ``evolution`` (NNI's Evolution), ``regularized_evolution`` (NNI's
RegularizedEvolutionTuner, on the ``layer_choice`` space) and ``rl`` (our :class:`ReinforceTuner`).
:func:`run_strategy` drives one of them for a trial budget on any objective ``arch -> score``.

``python -m bench strategies`` runs every strategy for the same budget over several seeds on
a **proxy objective** (default: validation Dice after a very short training on tiny digit scenes; each
distinct architecture is trained once and cached in a JSON table) and writes a Markdown table and a
PNG of best-score-so-far vs trials (mean and min-max band per strategy).
"""
from __future__ import annotations

import json
import logging
import random
import statistics
from pathlib import Path
from typing import Callable

import numpy as np

from nni_seg.space.arch import decode_parameters, legacy_search_space
from nni_seg.errors import UserError

Objective = Callable[[dict], float]


def _random(seed):
    from nni.algorithms.hpo.random_tuner import RandomTuner
    return RandomTuner(seed=seed)


def _tpe(seed, n_startup_jobs=10):
    # NNI's default of 20 random start-up trials would make TPE identical to random at small budgets
    from nni.algorithms.hpo.tpe_tuner import TpeTuner
    return TpeTuner(optimize_mode="maximize", seed=seed, tpe_args={"n_startup_jobs": n_startup_jobs})


def _evolution(seed, population_size=6):
    from nni.algorithms.hpo.evolution_tuner import EvolutionTuner
    return EvolutionTuner(optimize_mode="maximize", population_size=population_size)


def _regularized_evolution(seed, population_size=6, sample_size=3):
    from nni.algorithms.hpo.regularized_evolution_tuner import RegularizedEvolutionTuner
    return RegularizedEvolutionTuner(optimize_mode="maximize", population_size=population_size,
                                     sample_size=sample_size)


def _rl(seed):
    from nni_seg.experiment.rl_tuner import ReinforceTuner
    return ReinforceTuner(seed=seed)


# name -> (tuner factory(seed), search-space kind it needs)
STRATEGIES: dict[str, tuple[Callable, str]] = {
    "random": (_random, "choice"),
    "tpe": (_tpe, "choice"),
    "evolution": (_evolution, "choice"),
    "regularized_evolution": (_regularized_evolution, "layer_choice"),
    "rl": (_rl, "choice"),
}


def lookup_strategy(name: str) -> tuple[Callable, str]:
    if name not in STRATEGIES:
        raise KeyError(f"unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def run_strategy(name: str, objective: Objective, budget: int, seed: int = 0) -> list[tuple[dict, float]]:
    """Ask the tuner for ``budget`` architectures one at a time, feed back ``objective``; returns the trace."""
    factory, kind = lookup_strategy(name)
    logging.getLogger("nni").setLevel(logging.WARNING)  # NNI's tuners log every trial at INFO
    random.seed(seed)
    np.random.seed(seed)  # NNI's evolution tuners draw from the global RNGs
    tuner = factory(seed)
    tuner.update_search_space(legacy_search_space(kind))
    trace = []
    for pid in range(budget):
        params = tuner.generate_parameters(pid)
        arch = decode_parameters(params)
        score = float(objective(arch))
        tuner.receive_trial_result(pid, params, {"default": score})
        if hasattr(tuner, "trial_end"):
            tuner.trial_end(pid, True)
        trace.append((arch, score))
    return trace


def best_so_far(trace: list[tuple[dict, float]]) -> list[float]:
    out, best = [], -np.inf
    for _, s in trace:
        best = max(best, s)
        out.append(best)
    return out


# --------------------------------------------------------------------------- proxy objective
class CachedTrainingProxy:
    """Validation Dice after a very short training at low resolution, cached per architecture.

    A **proxy** for the real objective, cheap enough to run hundreds of trials on CPU. The cache
    (a JSON table arch -> Dice) makes re-evaluations free and is reusable across runs.
    """

    def __init__(self, cache: Path, size: int = 24, epochs: int = 3, num_train: int = 96, num_val: int = 32):
        from nni_seg.data import load_dataset
        from nni_seg.config.settings import DataSettings

        self.cache_path = cache
        self.settings = {"size": size, "epochs": epochs, "num_train": num_train, "num_val": num_val}
        self.table: dict[str, float] = {}
        if cache.is_file():
            saved = json.loads(cache.read_text())
            if saved.get("settings") != self.settings:
                raise UserError(f"proxy cache {cache} was built with {saved.get('settings')}, not {self.settings}; "
                            f"use another --cache")
            self.table = saved["table"]
        self.data = load_dataset(DataSettings(size=(size, size), num_train=num_train, num_val=num_val))
        self.epochs = epochs
        self.evaluations = 0

    def __call__(self, arch: dict) -> float:
        from nni_seg.space.net import SegNet
        from nni_seg.config.settings import TrainSettings
        from nni_seg.training.trainer import fit

        key = json.dumps(arch, sort_keys=True)
        if key not in self.table:
            model = SegNet(arch, self.data.num_classes, self.data.in_channels)
            # fp32 NCHW on every CPU: the proxy's scores (and the tests' margins) must not depend on the CPU's bf16
            out = fit(model, self.data, TrainSettings(epochs=self.epochs, batch_size=8, lr=3e-3, device="cpu",
                                                      amp=False, channels_last=False))
            self.table[key] = out.final.dice
            self.evaluations += 1
            if self.evaluations % 10 == 0:
                self.save()
        return self.table[key]

    def save(self) -> None:
        from nni_seg.files import atomic_write_json
        atomic_write_json(self.cache_path, {"settings": self.settings, "table": self.table})


def bench(strategies: list[str], objective: Objective, budget: int, seeds: list[int]) -> dict:
    from nni_seg.progress import Progress

    curves = {}
    with Progress(len(strategies) * len(seeds), "bench-strategies", "run") as bar:
        for name in strategies:
            curves[name] = []
            for seed in seeds:
                curves[name].append(best_so_far(run_strategy(name, objective, budget, seed)))
                bar.update()
    return curves


def summarize(curves: dict, budget: int) -> str:
    rand = curves.get("random")
    lines = ["| strategy | best at budget, mean | min | max | vs random (mean) | trials to random's final mean |",
             "|---|---|---|---|---|---|"]
    target = statistics.mean(c[-1] for c in rand) if rand else None
    for name, cs in curves.items():
        finals = [c[-1] for c in cs]
        reach = []
        for c in cs:
            hit = next((i + 1 for i, v in enumerate(c) if target is not None and v >= target), None)
            reach.append(hit if hit is not None else float("inf"))
        reach_s = f"{statistics.median(reach):.0f} (median)" if target is not None else "-"
        diff = f"{statistics.mean(finals) - target:+.4f}" if target is not None else "-"
        lines.append(f"| {name} | {statistics.mean(finals):.4f} | {min(finals):.4f} | {max(finals):.4f} | {diff} | {reach_s} |")
    return "\n".join(lines)


def plot(curves: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, cs in curves.items():
        a = np.array(cs)
        x = np.arange(1, a.shape[1] + 1)
        ax.plot(x, a.mean(0), label=name)
        ax.fill_between(x, a.min(0), a.max(0), alpha=0.15)
    ax.set_xlabel("trials")
    ax.set_ylabel("best score so far")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_bench(strategies: list[str], budget: int, seeds: list[int], proxy_size: int, proxy_epochs: int,
              proxy_train: int, cache: str | None, out: Path) -> str:
    """Every strategy for ``budget`` trials per seed on the cached digits proxy; writes ``table.md``,
    ``curves.json`` and ``curves.png`` into ``out`` and returns the table."""
    import time

    from nni_seg.files import atomic_write_text

    cache_path = Path(cache or f"runs/proxy_{proxy_size}px_{proxy_epochs}ep_{proxy_train}.json")
    proxy = CachedTrainingProxy(cache_path, size=proxy_size, epochs=proxy_epochs, num_train=proxy_train)
    t0 = time.time()
    try:
        curves = bench(strategies, proxy, budget, seeds)
    finally:
        proxy.save()
    title = (f"PROXY: val Dice after {proxy_epochs} epochs at {proxy_size}px, "
             f"{proxy_train} digit scenes; {len(seeds)} seeds")
    header = (f"Strategy benchmark on a proxy objective ({title}); budget {budget} trials; seeds {seeds}; "
              f"{proxy.evaluations} new trainings, {len(proxy.table)} cached; {time.time() - t0:.0f} s\n\n")
    text = header + summarize(curves, budget)
    atomic_write_text(out / "table.md", text + "\n")
    atomic_write_text(out / "curves.json", json.dumps(curves))
    plot(curves, out / "curves.png", title)
    return text + f"\nwritten: {out / 'table.md'}, {out / 'curves.png'}"
