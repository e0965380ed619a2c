"""Search strategies run in-process over the model space, and the equal-budget strategy benchmark.

``STRATEGIES`` maps a name to a factory of an NNI tuner (the same classes nnictl runs): ``random``
(the baseline), ``tpe``, ``evolution`` (NNI's Evolution), ``regularized_evolution`` (NNI's
RegularizedEvolutionTuner, on the ``layer_choice`` space) and ``rl`` (our :class:`ReinforceTuner`).
:func:`run_strategy` drives one of them for a trial budget on any objective ``arch -> score``.

``python -m nni_seg bench-strategies`` runs every strategy for the same budget over several seeds on
a **proxy objective** (default: validation Dice after a very short training on tiny digit scenes; each
distinct architecture is trained once and cached in a JSON table) and writes a Markdown table and a
PNG of best-score-so-far vs trials (mean and min-max band per strategy).
"""
from __future__ import annotations

import argparse
import inspect
import json
import logging
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .space import decode_parameters, legacy_search_space

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
    from .rl_tuner import ReinforceTuner
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
        from .data import DataConfig, load_dataset

        self.cache_path = cache
        self.settings = {"size": size, "epochs": epochs, "num_train": num_train, "num_val": num_val}
        self.table: dict[str, float] = {}
        if cache.is_file():
            saved = json.loads(cache.read_text())
            if saved.get("settings") != self.settings:
                raise ValueError(f"proxy cache {cache} was built with {saved.get('settings')}, not {self.settings}; "
                                 f"use another --cache")
            self.table = saved["table"]
        self.data = load_dataset(DataConfig(size=(size, size), num_train=num_train, num_val=num_val))
        self.epochs = epochs
        self.evaluations = 0

    def __call__(self, arch: dict) -> float:
        from .space import build_model
        from .train import TrainConfig, fit

        key = json.dumps(arch, sort_keys=True)
        if key not in self.table:
            model = build_model(arch, self.data.num_classes, self.data.in_channels)
            out = fit(model, self.data, TrainConfig(epochs=self.epochs, batch_size=8, lr=3e-3, device="cpu"))
            self.table[key] = out["final"]["dice"]
            self.evaluations += 1
            if self.evaluations % 10 == 0:
                self.save()
        return self.table[key]

    def save(self) -> None:
        from .records import atomic_write_json
        atomic_write_json(self.cache_path, {"settings": self.settings, "table": self.table})


def bench(strategies: list[str], objective: Objective, budget: int, seeds: list[int]) -> dict:
    curves = {}
    for name in strategies:
        curves[name] = [best_so_far(run_strategy(name, objective, budget, seed)) for seed in seeds]
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nni_seg bench-strategies", description=__doc__.split("\n\n")[0])
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    ap.add_argument("--budget", type=int, default=20, help="trials per strategy run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    defaults = inspect.signature(CachedTrainingProxy).parameters
    ap.add_argument("--proxy-size", type=int, default=defaults["size"].default, help="proxy: image size (default %(default)s)")
    ap.add_argument("--proxy-epochs", type=int, default=defaults["epochs"].default, help="proxy: epochs (default %(default)s)")
    ap.add_argument("--proxy-train", type=int, default=defaults["num_train"].default,
                    help="proxy: training images (default %(default)s)")
    ap.add_argument("--cache", help="proxy: JSON table arch -> Dice (default: runs/proxy_<size>px_<epochs>ep_<n>.json)")
    ap.add_argument("--out", default="runs/bench_strategies", help="folder for table.md, curves.json, curves.png")
    args = ap.parse_args(argv)
    try:
        for s in args.strategies:
            lookup_strategy(s)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache or f"runs/proxy_{args.proxy_size}px_{args.proxy_epochs}ep_{args.proxy_train}.json")
    cache.parent.mkdir(parents=True, exist_ok=True)
    try:
        proxy = CachedTrainingProxy(cache, size=args.proxy_size, epochs=args.proxy_epochs, num_train=args.proxy_train)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    try:
        curves = bench(args.strategies, proxy, args.budget, args.seeds)
    finally:
        proxy.save()
    title = (f"PROXY: val Dice after {args.proxy_epochs} epochs at {args.proxy_size}px, "
             f"{args.proxy_train} digit scenes; {len(args.seeds)} seeds")
    table = summarize(curves, args.budget)
    header = (f"Strategy benchmark on a proxy objective ({title}); budget {args.budget} trials; seeds {args.seeds}; "
              f"{proxy.evaluations} new trainings, {len(proxy.table)} cached; {time.time() - t0:.0f} s\n\n")
    (out / "table.md").write_text(header + table + "\n")
    (out / "curves.json").write_text(json.dumps(curves))
    plot(curves, out / "curves.png", title)
    print(header + table)
    print(f"written: {out / 'table.md'}, {out / 'curves.png'}")
    return 0
