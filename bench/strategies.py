"""The strategy benchmark: every NNI strategy given the same compute on one proxy (``python -m bench strategies``).

One harness for both proxies: the digits one (the default: tiny digit scenes, 3 epochs at 24x24, no cost
budget; a quick comparison) and the CamVid search's own trial (``--dataset camvid``, default
``experiments/camvid/trial_cpu.yml``: the search's proxy). Tests drive the same tuners on toy objectives
(:class:`Scored`). Every strategy gets the same total compute, counted in trial-epochs at the proxy's size
(a trial rejected over the cost budget costs none; one stopped early costs the epochs it ran), and each
search seed runs until that is spent. Every (architecture, epochs) trained is kept in a JSON cache with
its per-epoch val Dice, so re-running, adding seeds or strategies only trains what is new. The incumbent
is the best val Dice of an architecture trained at full proxy fidelity.

Strategies: ``random`` (NNI's Random; an over-budget draw is rejected at no compute, which in compute
terms is the same as redrawing it), ``tpe`` (NNI's TPE, guided by the budget:
:class:`~nni_seg.experiment.tuners.GuidedTuner`), ``default`` (the shipped CamVid search, read from
``experiments/camvid/search_cpu.yml``: its tuner, starting points and excluded choices, guided by the budget),
``evolution`` (NNI's Evolution, guided), ``regularized_evolution`` (NNI's RegularizedEvolutionTuner, aging evolution, over the
``layer_choice`` form of the space, guided), ``rl`` (our REINFORCE tuner, :mod:`nni_seg.experiment.rl_tuner`; over-budget
draws rejected at no compute, told 0), ``tpe_medianstop`` /
``tpe_curvefitting`` (guided TPE with NNI's Medianstop / Curvefitting assessor deciding after each epoch
from the cached curves; Curvefitting predicts the last epoch's score from the curve so far and stops a
trial predicted below 95% of the best finished one), ``hyperband`` (Hyperband's
brackets as NNI's advisor computes them, R = the proxy's epochs, eta 3, random architectures within
the budget; budgets are trained from scratch, as the trial does with NNI's TRIAL_BUDGET), ``enas`` (NNI's
one-shot ENAS given the *wall time* the compute costs the other strategies: the cache's mean seconds per
trial-epoch x the compute; its exported architecture is then scored by the proxy like any incumbent).
"""
from __future__ import annotations

import json
import math
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from typing import Callable

from nni_seg.space.arch import canonical, decode_parameters, legacy_search_space, validate_arch
from nni_seg.errors import UserError
from nni_seg.files import locked

STRATEGIES = ("random", "tpe", "default", "evolution", "regularized_evolution", "rl", "tpe_medianstop",
              "tpe_curvefitting", "hyperband", "enas")
LAYER_CHOICE = ("regularized_evolution",)  # tuners that accept only the layer_choice form of the space
# the digits proxy (``--dataset digits``): fp32 NCHW on every CPU, so its scores do not depend on the CPU's bf16
DIGITS_TRIAL = {"data": {"dataset": "digits", "size": [24, 24], "num_train": 96, "num_val": 32},
                "train": {"epochs": 3, "batch_size": 8, "lr": 3e-3, "device": "cpu", "amp": False,
                          "channels_last": False}}


@dataclass
class Evaluation:
    dice: float  # val Dice after the last epoch (0 when rejected)
    curve: list[float]  # val Dice after each epoch
    epochs: int  # compute spent: epochs trained
    rejected: bool = False


@dataclass(frozen=True)
class CachedTraining:
    """One entry of a proxy cache: an architecture trained (or rejected) for ``epochs``."""
    arch: dict
    epochs: int
    curve: list[float]  # val Dice after each epoch (empty when rejected)
    rejected: bool


def read_cache(path: str | Path) -> tuple[int, list[CachedTraining]]:
    """A proxy cache file's full proxy epochs and its entries, for reading what was trained (the benches that
    analyse the cache) without the trial config :class:`ProxyCache` checks it against. A missing or
    malformed file is one line naming it."""
    p = Path(path)
    try:
        saved = json.loads(p.read_text())
        full = saved["settings"]["train"]["epochs"]
        entries = [CachedTraining(*json.loads(key), list(e["curve"]), bool(e["rejected"]))
                   for key, e in sorted(saved["table"].items())]
    except FileNotFoundError:
        raise UserError(f"{p}: not found") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{p}: not a proxy cache ({type(e).__name__}: {e})") from None
    return full, entries


class Objective:
    """What a strategy is run on: ``objective(arch, epochs=None) -> Evaluation`` (None: ``full_epochs``)."""
    full_epochs: int = 1

    def __call__(self, arch: dict, epochs: int | None = None) -> Evaluation:
        raise NotImplementedError


class Scored(Objective):
    """A plain ``arch -> score`` function as an objective whose every trial costs one trial-epoch (the
    tests' toy objectives, with a known optimum and no training)."""

    def __init__(self, fn: Callable[[dict], float]):
        self.fn = fn

    def __call__(self, arch: dict, epochs: int | None = None) -> Evaluation:
        score = float(self.fn(arch))
        return Evaluation(score, [score], 1)


class ProxyCache(Objective):
    """(canonical architecture, epochs) -> per-epoch val Dice of the trial's training, in a JSON file shared
    by concurrent processes (each writes under a lock; what another process trained is read, not redone)."""

    def __init__(self, path: Path, trial_config: str | Path):
        from nni_seg.config.settings import BudgetSettings, DataSettings, TrainSettings, load_sections

        s = load_sections(trial_config, {"data": DataSettings, "train": TrainSettings, "budget": BudgetSettings},
                          other=("trial",))
        self.data_cfg, self.train_cfg, self.budget = s["data"], s["train"], s["budget"]
        self.path = Path(path)
        from nni_seg.training.precision import compute_path
        from nni_seg.training.trainer import resolve_device

        # the arithmetic too: a bf16 training and an fp32 one of the same settings are other measurements
        compute = compute_path(resolve_device(self.train_cfg.device), self.train_cfg.amp, self.train_cfg.channels_last)
        self.settings = {"trial_config": str(trial_config), "data": _plain(self.data_cfg),
                         "train": _plain(self.train_cfg), "budget": _plain(self.budget),
                         "data_file_sha256": _file_sha256(self.data_cfg.data_root), "compute": compute.key}
        self.table = self._read()
        self._data = None
        self.trained = 0

    def _read(self) -> dict:
        if not self.path.is_file():
            return {}
        saved = json.loads(self.path.read_text())
        theirs = dict(saved.get("settings") or {})
        theirs.setdefault("compute", "cpu:fp32:nchw")  # caches written before the CPU fast path
        if ("data_file_sha256" in theirs and theirs["data_file_sha256"] != self.settings["data_file_sha256"]
                and theirs.get("data") == self.settings["data"]):
            raise UserError(f"proxy cache {self.path} was made on another data file than {self.data_cfg.data_root} "
                            f"(same path, other contents: other images?); use another --cache")
        if theirs != self.settings:
            raise UserError(f"proxy cache {self.path} was made with other trial settings ({theirs}); "
                            f"use another --cache")
        return saved["table"]

    def _write(self, key: str, entry: dict) -> None:
        from nni_seg.files import atomic_write_json

        with locked(self.path):
            self.table = self._read()
            self.table[key] = entry
            atomic_write_json(self.path, {"settings": self.settings, "table": self.table})

    def import_records(self, exp_dirs: list[Path]) -> int:
        """Fill the cache from the trials of earlier searches that trained with the same settings (the data
        file's location, threads and device aside); returns how many entries were added."""
        from nni_seg.training.precision import key_of
        from nni_seg.experiment.records import trial_records
        from nni_seg.config.schema import Status

        def same(rec) -> bool:
            ignore_d, ignore_t = {"data_root"}, {"threads", "device"}
            d, t = _plain(rec.data), _plain(rec.train)
            return ({k: v for k, v in d.items() if k not in ignore_d} ==
                    {k: v for k, v in self.settings["data"].items() if k not in ignore_d}
                    and {k: v for k, v in t.items() if k not in ignore_t} ==
                    {k: v for k, v in self.settings["train"].items() if k not in ignore_t}
                    and _plain(rec.budget) == self.settings["budget"]
                    and key_of(rec.compute) == self.settings["compute"])

        added = 0
        for exp_dir in exp_dirs:
            loaded, _ = trial_records(Path(exp_dir))
            for x in loaded:
                rec = x.record
                if rec.status not in (Status.SUCCEEDED, Status.REJECTED) or not same(rec):
                    continue
                epochs = rec.train.epochs
                key = self.key(rec.arch, epochs)
                if key in self.table:
                    continue
                entry = ({"curve": [], "rejected": True, "mmacs": rec.mmacs} if rec.status == Status.REJECTED else
                         {"curve": [h.dice for h in rec.history], "rejected": False, "mmacs": rec.mmacs,
                          "seconds": rec.train_seconds, "from": x.path})
                if not entry["rejected"] and len(entry["curve"]) != epochs:
                    continue
                self._write(key, entry)
                added += 1
        return added

    @property
    def full_epochs(self) -> int:
        return self.train_cfg.epochs

    def key(self, arch: dict, epochs: int | None = None) -> str:
        return json.dumps([canonical(validate_arch(arch, fill_legacy=True)), epochs or self.full_epochs], sort_keys=True)

    def seconds_per_epoch(self) -> float | None:
        """Mean training seconds per trial-epoch of the proxy trainings cached so far: what a unit of
        compute costs in wall time (None before any)."""
        done = [e for e in self.table.values() if not e["rejected"] and e.get("seconds")]
        epochs = sum(len(e["curve"]) for e in done)
        return sum(e["seconds"] for e in done) / epochs if epochs else None

    def data(self):
        if self._data is None:
            from nni_seg.data import load_dataset

            self._data = load_dataset(self.data_cfg)
        return self._data

    def __call__(self, arch: dict, epochs: int | None = None) -> Evaluation:
        import dataclasses

        epochs = epochs or self.full_epochs
        arch = canonical(validate_arch(arch, fill_legacy=True))
        key = self.key(arch, epochs)
        if key not in self.table:
            self.table = self._read()  # another process may have trained it meanwhile
        if key not in self.table:
            from nni_seg.space.budget import over_budget
            from nni_seg.space.cost import count_macs, count_params
            from nni_seg.space.net import SegNet
            from nni_seg.training.trainer import fit

            data = self.data()
            model = SegNet(arch, data.num_classes, data.in_channels)
            mmacs = round(count_macs(model, (1, data.in_channels, *data.size)) / 1e6, 3)
            if over_budget(mmacs, count_params(model), self.budget, data.num_classes, data.in_channels, data.size):
                entry = {"curve": [], "rejected": True, "mmacs": mmacs}
            else:
                res = fit(model, data, dataclasses.replace(self.train_cfg, epochs=epochs))
                entry = {"curve": [h.dice for h in res.history], "rejected": False, "mmacs": mmacs,
                         "seconds": res.train_seconds}
                self.trained += 1
            self._write(key, entry)
        e = self.table[key]
        if e["rejected"]:
            return Evaluation(0.0, [], 0, rejected=True)
        curve = [0.0 if v is None or math.isnan(v) else v for v in e["curve"]]
        return Evaluation(curve[-1], curve, epochs)


def _file_sha256(path: str | None) -> str | None:
    """The data file's fingerprint: a cache of scores is only valid for the images it was trained on."""
    import hashlib

    if not path or not Path(path).is_file():
        return None  # generated data (digits): its settings say it all
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _plain(obj) -> dict:
    from nni_seg.config._typed import to_json

    return to_json(obj)


@dataclass
class Trace:
    """What a strategy run did: (compute spent so far, incumbent val Dice) after each trial, and the
    architectures scored at full fidelity with their scores."""
    points: list[tuple[int, float]] = field(default_factory=list)
    spent: int = 0
    best: float = 0.0
    about: dict = field(default_factory=dict)  # what else the run file keeps (ENAS: its time and export)
    trials: list[tuple[dict, float]] = field(default_factory=list)

    def add(self, cost: int, score: float | None, arch: dict | None = None) -> None:
        self.spent += cost
        if score is not None:
            self.best = max(self.best, score)
            if arch is not None:
                self.trials.append((arch, score))
        self.points.append((self.spent, self.best))

    def at(self, compute: int) -> float:
        """The incumbent once ``compute`` trial-epochs were spent."""
        best = 0.0
        for spent, b in self.points:
            if spent > compute:
                break
            best = b
        return best


DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "camvid" / "search_cpu.yml"


def shipped_default(seed: int) -> dict:
    """The ``GuidedTuner`` arguments of the shipped CamVid search (tuner, tuner_args, start_with, exclude), its
    tuner seed set to ``seed``: the ``default`` strategy follows the config a user runs, whatever it is
    changed to (the bench gives its own ``budget``, the trial's)."""
    import yaml

    tuner = yaml.safe_load(DEFAULT_CONFIG.read_text())["tuner"]
    if tuner.get("className") != "nni_seg.tuners.GuidedTuner":
        raise UserError(f"{DEFAULT_CONFIG}: tuner: the bench knows nni_seg.tuners.GuidedTuner, got "
                        f"{tuner.get('className') or tuner.get('name')}")
    args = tuner.get("classArgs") or {}
    name, tuner_args = args.get("tuner", "TPE"), dict(args.get("tuner_args") or {})
    tuner_args["seed"] = seed  # GuidedTuner seeds NNI's Evolution too
    return {"tuner": name, "tuner_args": tuner_args, "start_with": list(args.get("start_with") or []),
            "exclude": dict(args.get("exclude") or {})}


def make_tuner(name: str, seed: int, budget: dict | None = None):
    """The NNI tuner of strategy ``name`` (the classes nnictl runs), seeded; ``budget``: the cost budget its
    proposals keep to (:class:`~nni_seg.experiment.tuners.GuidedTuner`), None for none."""
    from nni_seg.experiment.tuners import GuidedTuner

    if name == "default":
        return GuidedTuner(**shipped_default(seed), budget=budget)
    if name == "random":
        from nni.algorithms.hpo.random_tuner import RandomTuner

        return RandomTuner(seed=seed)
    if name == "rl":  # ours, not a built-in: an over-budget draw is rejected at no compute, like random's
        from nni_seg.tuners import ReinforceTuner

        return ReinforceTuner(seed=seed)
    if name not in STRATEGIES or name in ("hyperband", "enas"):
        raise UserError(f"{name!r} is not a tuner; tuners: {', '.join(n for n in STRATEGIES if n not in ('hyperband', 'enas'))}")
    # TPE's start-up: NNI's default of 20 random trials would make TPE random at these budgets
    inner, args, start = {"tpe": ("TPE", {"seed": seed, "tpe_args": {"n_startup_jobs": 4}}, []),
                          "tpe_medianstop": ("TPE", {"seed": seed, "tpe_args": {"n_startup_jobs": 4}}, []),
                          "tpe_curvefitting": ("TPE", {"seed": seed, "tpe_args": {"n_startup_jobs": 4}}, []),
                          "evolution": ("Evolution", {"population_size": 6, "seed": seed}, []),
                          # as experiments/regularized_evolution.yml; draws from the global RNG, seeded per run
                          "regularized_evolution": ("RegularizedEvolutionTuner",
                                                    {"population_size": 6, "sample_size": 3}, [])}[name]
    return GuidedTuner(inner, args, start, budget=budget)


def run_tuner(name: str, proxy: Objective, compute: int, seed: int, budget: dict | None) -> Trace:
    """Ask-and-tell with one NNI tuner until ``compute`` trial-epochs are spent (each trial sequential)."""
    import logging

    logging.getLogger("nni").setLevel(logging.WARNING)
    random.seed(seed)
    np.random.seed(seed)  # NNI's evolution tuners draw from the global RNGs
    tuner = make_tuner(name, seed, budget)
    tuner.update_search_space(legacy_search_space("layer_choice" if name in LAYER_CHOICE else "choice"))
    assessor = None
    if name == "tpe_medianstop":
        from nni.algorithms.hpo.medianstop_assessor import MedianstopAssessor

        assessor = MedianstopAssessor("maximize", start_step=2)
    elif name == "tpe_curvefitting":
        from nni.algorithms.hpo.curvefitting_assessor import CurvefittingAssessor

        assessor = CurvefittingAssessor(epoch_num=proxy.full_epochs, start_step=max(1, proxy.full_epochs - 1))
    trace, pid = Trace(), 0
    while trace.spent < compute and pid < 10000:
        params = tuner.generate_parameters(pid)
        arch = decode_parameters(params)
        ev = proxy(arch)
        if assessor is not None and not ev.rejected:
            stopped = _assess(assessor, str(pid), ev.curve)
            if stopped:  # NNI tells the tuner nothing but that the trial ended
                trace.add(stopped, None)
                tuner.trial_end(pid, False)
                pid += 1
                continue
        tuner.receive_trial_result(pid, params, {"default": ev.dice})
        if hasattr(tuner, "trial_end"):
            tuner.trial_end(pid, True)
        trace.add(ev.epochs, None if ev.rejected else ev.dice, arch)
        pid += 1
    return trace


def _assess(assessor, tid: str, curve: list[float]) -> int:
    """Epochs after which the NNI assessor stops this trial (0: it runs to the end)."""
    from nni.assessor import AssessResult

    for t in range(1, len(curve)):
        if assessor.assess_trial(tid, curve[:t]) == AssessResult.Bad:
            assessor.trial_end(tid, False)
            return t
    assessor.assess_trial(tid, curve)
    assessor.trial_end(tid, True)
    return 0


def hyperband(proxy: Objective, compute: int, seed: int, budget: dict | None, eta: int = 3) -> Trace:
    """NNI's Hyperband (``parallelism`` mode: brackets one after another) with R = the proxy's epochs:
    bracket s runs n = ceil((s_max+1) eta^s / (s+1)) random architectures for r = R / eta^s epochs, keeps the
    best 1/eta for eta times the epochs, ... up to R. Architectures are drawn at random within the budget."""
    from nni_seg.experiment.tuners import GuidedTuner

    R = proxy.full_epochs
    s_max = math.floor(math.log(R, eta) + 1e-6)
    sampler = GuidedTuner("Random", {"seed": seed}, [], budget=budget)
    sampler.update_search_space(legacy_search_space())
    trace, pid = Trace(), 0
    while trace.spent < compute:
        for s in range(s_max, -1, -1):
            n = math.ceil((s_max + 1) * eta ** s / (s + 1) - 1e-6)
            r = R / eta ** s
            configs = []
            for _ in range(n):
                configs.append(decode_parameters(sampler.generate_parameters(pid)))
                pid += 1
            for i in range(s + 1):
                n_i, r_i = math.floor(n / eta ** i + 1e-6), math.floor(r * eta ** i + 1e-6)
                scored = []
                for arch in configs[:n_i]:
                    ev = proxy(arch, max(1, r_i))
                    trace.add(ev.epochs, ev.dice if r_i >= R else None, arch)
                    scored.append((ev.dice, arch))
                    if trace.spent >= compute:
                        return trace
                scored.sort(key=lambda x: -x[0])
                configs = [a for _, a in scored[:max(1, math.floor(n_i / eta + 1e-6))]]
    return trace


def enas(proxy: ProxyCache, compute: int, seed: int) -> Trace:
    """NNI's ENAS with the wall time ``compute`` costs the other strategies (the cache's seconds per
    trial-epoch x ``compute``, on the proxy's data, threads and optimiser settings), over the cell ops and
    depths with the budget's reference network's macro choices pinned (its widths, levels and skips) and one
    op per cell; the controller's export is scored by the proxy, 0 if it is over the budget (ENAS knows no
    cost). Its whole compute is spent before its one result, so its curve is a single step at the end."""
    import tempfile

    import torch

    from nni_seg.space.arch import MACRO_LABELS, NAMED_ARCHS, arch_summary
    from nni_seg.experiment.lifecycle import free_port
    from nni_seg.workflow.search import enas as run_enas
    from nni_seg.config.settings import SearchSettings

    per_epoch = proxy.seconds_per_epoch()
    if per_epoch is None:
        raise UserError("enas: the cache holds no training yet to turn compute into wall time; run another "
                        "strategy first (--strategies random enas)")
    ref = NAMED_ARCHS[proxy.budget.max_mmacs_of or "unet"]()
    # single-op cells: with the U-Net's two-op cells only 11% of ENAS's choices fit the U-Net's MACs, with
    # one op per cell 66% (sampled at 48x64), and ENAS itself never looks at a cost
    fixed = {k: v for k, v in ref.items() if k in MACRO_LABELS} | {"enc_op2": "none", "dec_op2": "none"}
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(proxy.train_cfg.threads)
    seconds = round(compute * per_epoch, 1)
    try:
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as wd:
            top = run_enas(proxy.data_cfg, proxy.train_cfg, SearchSettings(
                strategy="enas", enas_epochs=10000, enas_seconds=seconds, fixed=fixed, port=free_port(), working_dir=wd))
    finally:
        torch.set_num_threads(threads)
    ev = proxy(top.arch)
    trace = Trace(about={"seconds_given": seconds, "seconds_per_trial_epoch": round(per_epoch, 2),
                         "arch": arch_summary(top.arch), "rejected": ev.rejected,
                         "mmacs": proxy.table[proxy.key(top.arch)]["mmacs"]})
    trace.add(compute, None if ev.rejected else ev.dice)
    return trace


def run(name: str, proxy: Objective, compute: int, seed: int, budget: dict | None) -> Trace:
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}")
    if name == "enas":
        return enas(proxy, compute, seed)
    if name == "hyperband":
        return hyperband(proxy, compute, seed, budget)
    return run_tuner(name, proxy, compute, seed, budget)


def summarize(traces: dict[str, list[Trace]], compute: int) -> str:
    """Markdown: per strategy the incumbent at the full compute (mean, min, max over seeds), the compute at
    which its mean curve reaches random's final mean, and the share of the budget over which its mean curve
    is at or above random's (the two halves of the bar a default strategy must clear)."""
    grid = list(range(1, compute + 1))
    mean_curve = {n: [statistics.mean(t.at(c) for t in ts) for c in grid] for n, ts in traces.items()}
    rand = mean_curve.get("random")
    target = rand[-1] if rand is not None else None
    lines = ["| strategy | seeds | incumbent at full compute, mean | min | max | compute to reach random's final "
             "mean (trial-epochs) | share of random's compute | mean curve >= random's, share of the budget |",
             "|---|---|---|---|---|---|---|---|"]
    for n, ts in traces.items():
        finals = [t.at(compute) for t in ts]
        reach = next((c for c, v in zip(grid, mean_curve[n]) if target is not None and v >= target), None)
        share = f"{reach / compute:.0%}" if reach is not None else "never"
        above = f"{sum(v >= r for v, r in zip(mean_curve[n], rand)) / len(grid):.0%}" if rand is not None else "-"
        lines.append(f"| {n} | {len(ts)} | {statistics.mean(finals):.4f} | {min(finals):.4f} | {max(finals):.4f} | "
                     f"{reach if reach is not None else 'never'} | {share} | {above} |")
    return "\n".join(lines)


def plot(traces: dict[str, list[Trace]], compute: int, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nni_seg.plots import save_png

    grid = list(range(1, compute + 1))
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    styles = ["-", "--", "-.", ":"]  # strategies that draw alike overlap: the line style tells them apart
    lowest = []
    for i, (n, ts) in enumerate(traces.items()):
        a = np.array([[t.at(c) for c in grid] for t in ts])
        ax.plot(grid, a.mean(0), styles[i % len(styles)], label=n, lw=1.6)
        ax.fill_between(grid, a.min(0), a.max(0), alpha=0.10)
        lowest += [v for v in a.min(0) if v > 0]
    if lowest:  # before its first full-fidelity result a strategy's incumbent is 0: not worth the axis
        ax.set_ylim(bottom=max(0.0, min(lowest) - 0.03))
    ax.set(xlabel="compute spent (trial-epochs at the proxy size)", ylabel="incumbent val Dice (full proxy)",
           title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, path)


def bench(strategies: list[str], seeds: list[int], compute: int, trial_config: str, cache: Path, out: Path,
          shard: tuple[int, int] = (0, 1), reuse: list[Path] | None = None, table_only: bool = False) -> str:
    """Run every (strategy, seed) of this shard, then write table.md, traces.json, curves.png over the
    strategies with every seed done. ``reuse``: experiment folders whose trials (same trial settings) fill
    the cache first; ``table_only``: run nothing, only the table of what is done."""
    from nni_seg.files import atomic_write_json, atomic_write_text

    proxy = ProxyCache(cache, trial_config)
    if reuse:
        proxy.import_records(reuse)
    b = proxy.budget
    budget = None  # a trial without a cost budget (the digits proxy): the tuners propose freely
    if b.max_mmacs is not None or b.max_mmacs_of is not None:
        budget = {"size": list(proxy.data_cfg.size), "num_classes": proxy.data().num_classes,
                  "in_channels": proxy.data().in_channels}
        budget.update({k: v for k, v in (("max_mmacs", b.max_mmacs), ("max_mmacs_of", b.max_mmacs_of)) if v is not None})
    from nni_seg.progress import Progress

    runs = [(n, s) for n in strategies for s in seeds]
    k, n_shards = shard
    mine = [] if table_only else runs[k::n_shards]
    with Progress(len(mine), "bench-strategies", "run") as bar:
        for name, seed in mine:
            path = out / "runs" / f"{name}_seed{seed}.json"
            if not path.is_file():
                trace = run(name, proxy, compute, seed, budget)
                atomic_write_json(path, {"points": trace.points, **trace.about})
                bar.note(f"{name} seed {seed}: incumbent {trace.at(compute):.4f} after {trace.spent} trial-epochs "
                         f"({proxy.trained} trainings in this process)")
            bar.update()
    done = {(n, s): out / "runs" / f"{n}_seed{s}.json" for n, s in runs}
    # the table covers the strategies whose every seed is done (random first: the others are read against it)
    complete = [n for n in strategies if all(done[(n, s)].is_file() for s in seeds)]
    missing = [n for n in strategies if n not in complete]
    if not complete:
        return f"shard {k}/{n_shards} done; no strategy has all its seeds yet"
    traces: dict[str, list[Trace]] = {}
    for n in sorted(complete, key=lambda n: n != "random"):
        traces[n] = [Trace(points=[tuple(x) for x in json.loads(done[(n, s)].read_text())["points"]]) for s in seeds]
    title = (f"{proxy.data_cfg.dataset} proxy ({proxy.data_cfg.size[0]}x{proxy.data_cfg.size[1]}, {proxy.full_epochs} "
             f"epochs); {len(seeds)} seeds")
    table = summarize(traces, compute)
    if missing:
        table += f"\n\nNot all seeds done yet (left out): {', '.join(missing)}"
    atomic_write_text(out / "table.md", f"{title}; compute per run {compute} trial-epochs\n\n{table}\n")
    atomic_write_json(out / "traces.json", {f"{n}": [t.points for t in ts] for n, ts in traces.items()})
    plot(traces, compute, out / "curves.png", title)
    return table
