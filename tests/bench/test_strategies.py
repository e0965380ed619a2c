"""The strategy benchmark (bench/strategies.py): the tuners against random on a toy objective with a known
optimum (no training), and the equal-compute mechanics on a tiny trial (the CamVid numbers are in docs/)."""
import json
import statistics
import time

import numpy as np
import pytest

from bench import strategies as harness
from nni_seg.errors import UserError
from nni_seg.space.arch import CHOICES, seed_arch, unet_arch, validate_arch

# the benchmark harness's tests: run in CI, outside the fast suite
pytestmark = pytest.mark.slow

TUNERS = [n for n in harness.STRATEGIES if n not in ("hyperband", "enas")]
TARGET = dict(seed_arch(), levels=4, act="silu", up="bilinear", enc1_op="sep3x3", dec1_skip="concat",
              enc2_width=64, enc3_depth=2)
WEIGHTS = {label: 1.0 + (i % 3) for i, label in enumerate(CHOICES)}


def toy(arch: dict) -> float:
    """Weighted fraction of choices equal to TARGET, plus an interaction term; optimum 1.0 at TARGET."""
    s = sum(w * (arch[k] == TARGET[k]) for k, w in WEIGHTS.items()) / sum(WEIGHTS.values())
    both = arch["levels"] == TARGET["levels"] and arch["dec1_skip"] == TARGET["dec1_skip"]
    return 0.9 * s + 0.1 * both


def run_toy(name: str, trials: int, seed: int) -> harness.Trace:
    return harness.run(name, harness.Scored(toy), trials, seed, None)  # one trial-epoch per trial


def test_toy_optimum_is_known():
    assert toy(TARGET) == pytest.approx(1.0)
    assert toy(seed_arch()) < 0.8


@pytest.mark.parametrize("name", [*TUNERS, "hyperband"])
def test_each_strategy_spends_its_budget_on_valid_architectures(name):
    trace = run_toy(name, 12, 0)
    assert trace.spent == 12 and len(trace.trials) == 12
    for arch, score in trace.trials:
        validate_arch(arch)
        assert 0 <= score <= 1


SEEDS = [0, 1, 2, 3, 4]
BUDGET = 60
TARGET_SCORE = 0.6
LEARNERS = ["tpe", "evolution", "regularized_evolution", "rl"]


@pytest.fixture(scope="module")
def curves():
    """Best score so far after each trial, per strategy and seed."""
    return {name: [[best for _, best in run_toy(name, BUDGET, s).points] for s in SEEDS]
            for name in ["random", *LEARNERS]}


def trials_to(curve: list[float], target: float) -> int:
    """Trials until the best score reaches ``target`` (budget + 1 if never)."""
    return next((i + 1 for i, v in enumerate(curve) if v >= target), len(curve) + 1)


@pytest.mark.parametrize("name", LEARNERS)
def test_strategy_beats_random_at_equal_budget_on_average(curves, name):
    """Mean best-at-budget over a fixed seed set, against random's, with a margin (not one lucky run)."""
    finals = {n: [c[-1] for c in cs] for n, cs in curves.items()}
    assert statistics.mean(finals[name]) > statistics.mean(finals["random"]) + 0.02, finals


@pytest.mark.parametrize("name", LEARNERS)
def test_strategy_reaches_fixed_target_in_fewer_trials_than_random(curves, name):
    mean_trials = {n: statistics.mean(trials_to(c, TARGET_SCORE) for c in cs) for n, cs in curves.items()}
    assert mean_trials[name] < mean_trials["random"], mean_trials


def test_an_unknown_strategy_is_one_line_naming_the_valid_ones():
    with pytest.raises(UserError, match="unknown strategy 'bayes'; valid: random, tpe"):
        harness.run("bayes", harness.Scored(toy), 3, 0, None)


TRIAL = "data: {dataset: digits, size: [16, 16], num_train: 16, num_val: 8}\n" \
        "train: {epochs: 3, batch_size: 8, device: cpu, threads: 1}\nbudget: {max_mmacs_of: unet}\n"


@pytest.fixture
def proxy(tmp_path):
    (tmp_path / "t.yml").write_text(TRIAL)
    return harness.ProxyCache(tmp_path / "cache.json", tmp_path / "t.yml")


def test_cache_keeps_curves_and_rejections(proxy, tmp_path):
    ev = proxy(unet_arch())
    assert len(ev.curve) == 3 and ev.epochs == 3 and ev.dice == ev.curve[-1] and not ev.rejected
    from nni_seg.space.arch import seed_arch

    assert proxy(seed_arch()).rejected  # over the U-Net's MACs: no training, no compute
    again = harness.ProxyCache(tmp_path / "cache.json", tmp_path / "t.yml")
    assert again(unet_arch()).curve == ev.curve and again.trained == 0
    assert len(again(unet_arch(), 1).curve) == 1  # another budget is another training


def test_trace_counts_compute_and_keeps_the_incumbent():
    t = harness.Trace()
    t.add(3, 0.2)
    t.add(1, None)  # stopped early: compute spent, no full-fidelity score
    t.add(3, 0.1)
    assert t.spent == 7 and t.best == 0.2 and t.at(2) == 0.0 and t.at(3) == 0.2 and t.at(100) == 0.2


def test_medianstop_stops_a_trial_below_the_median():
    from nni.algorithms.hpo.medianstop_assessor import MedianstopAssessor

    a = MedianstopAssessor("maximize", start_step=1)
    assert harness._assess(a, "good", [0.5, 0.6, 0.7]) == 0
    assert harness._assess(a, "bad", [0.1, 0.2, 0.3]) == 1


MULTI_TRIAL = [n for n in harness.STRATEGIES if n != "enas"]  # ENAS: its own (slow) test below


def test_every_strategy_spends_its_compute_and_the_table_compares_with_random(proxy, tmp_path):
    budget = {"size": [16, 16], "num_classes": 5, "max_mmacs_of": "unet"}
    traces = {n: [harness.run(n, proxy, 6, seed, budget) for seed in (0, 1)] for n in MULTI_TRIAL}
    for n, ts in traces.items():
        assert all(t.spent >= 6 for t in ts), n
        assert all(0 <= t.at(6) <= 1 for t in ts)
    table = harness.summarize(traces, 6)
    assert table.count("\n") == len(MULTI_TRIAL) + 1 and "| random | 2 |" in table


@pytest.mark.slow
def test_enas_gets_the_wall_time_of_the_compute_and_its_export_is_scored(proxy, tmp_path):
    with pytest.raises(harness.UserError, match="no training yet"):
        harness.run("enas", proxy, 3, 0, {})
    proxy(unet_arch())  # one cached training: seconds per trial-epoch
    per_epoch = proxy.seconds_per_epoch()  # before ENAS: scoring its export adds a training to the cache
    t0 = time.monotonic()
    trace = harness.run("enas", proxy, 3, 0, {})
    assert trace.about["seconds_given"] == pytest.approx(3 * per_epoch, abs=0.06)
    # the supernet stops at its time, long before its 10000 epochs (NNI's start and stop add their own)
    assert time.monotonic() - t0 < trace.about["seconds_given"] + 120
    assert trace.spent == 3 and len(trace.points) == 1 and 0 <= trace.at(3) <= 1
    assert "levels=4" in trace.about["arch"]  # the U-Net's macro choices, pinned


def test_cli_writes_table_and_curves(tmp_path, monkeypatch, capsys):
    from bench.__main__ import main

    (tmp_path / "t.yml").write_text(TRIAL)
    monkeypatch.chdir(tmp_path)
    args = ["strategies", "--dataset", "camvid", "--trial-config", "t.yml", "--compute", "3", "--seeds", "0",
            "--strategies", "random", "default", "--out", "b"]
    assert main(args) == 0
    assert (tmp_path / "b" / "curves.png").is_file() and "| default |" in (tmp_path / "b" / "table.md").read_text()
    points = json.loads((tmp_path / "b" / "traces.json").read_text())["default"][0]
    assert points[0][0] == 3  # the U-Net first: one full-fidelity trial of 3 epochs
    # a strategy whose seeds are not all done is left out of the table, and said so; --table-only trains nothing
    (tmp_path / "b" / "table.md").unlink()
    assert main([*args[:7], "--seeds", "0", "1", "--strategies", "random", "default", "--out", "b",
                 "--table-only"]) == 0
    assert not (tmp_path / "b" / "runs" / "random_seed1.json").exists()
    assert "no strategy has all its seeds yet" in capsys.readouterr().out
    (tmp_path / "b" / "runs" / "random_seed1.json").write_text((tmp_path / "b" / "runs" / "random_seed0.json").read_text())
    assert main([*args[:7], "--seeds", "0", "1", "--strategies", "random", "default", "--out", "b",
                 "--table-only"]) == 0
    table = (tmp_path / "b" / "table.md").read_text()
    assert "| random | 2 |" in table and "| default |" not in table and "(left out): default" in table


def test_the_default_strategy_is_the_shipped_search():
    import yaml

    tuner = yaml.safe_load(harness.DEFAULT_CONFIG.read_text())["tuner"]["classArgs"]
    args = harness.shipped_default(7)
    assert args["tuner"] == tuner["tuner"] and args["start_with"] == tuner.get("start_with", [])
    assert args["exclude"] == tuner.get("exclude", {}) and args["tuner_args"]["seed"] == 7


def test_cache_reuses_the_trials_of_earlier_searches(tmp_path):
    """A search's records with the same trial settings fill the cache: nothing is trained twice."""
    from nni_seg.cli import main

    (tmp_path / "t.yml").write_text(TRIAL)
    trial = ["--config", str(tmp_path / "t.yml"), "--arch", "unet"]
    assert main(["trial", *trial, "--out", str(tmp_path / "exp" / "trials" / "a")]) == 0
    proxy = harness.ProxyCache(tmp_path / "cache.json", tmp_path / "t.yml")
    assert proxy.import_records([tmp_path / "exp"]) == 1
    rec = json.loads((tmp_path / "exp" / "trials" / "a" / "nni_seg_record.json").read_text())
    assert proxy(unet_arch()).curve == [h["dice"] for h in rec["history"]] and proxy.trained == 0
    other = tmp_path / "o.yml"
    other.write_text(TRIAL.replace("epochs: 3", "epochs: 2"))
    assert harness.ProxyCache(tmp_path / "c2.json", other).import_records([tmp_path / "exp"]) == 0


def test_table_says_where_a_curve_falls_below_random():
    """Random reaches 0.5 at 3 trial-epochs; `late` only at 6 (below random over half the budget, reaching
    its final mean at 100% of its compute); `early` is ahead from the start."""
    def trace(*points):
        t = harness.Trace()
        for cost, score in points:
            t.add(cost, score)
        return t

    table = harness.summarize({"random": [trace((3, 0.5), (3, 0.5))], "late": [trace((3, 0.1), (3, 0.5))],
                                     "early": [trace((1, 0.6), (5, 0.6))]}, 6)
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert rows["late"].endswith("| 6 | 100% | 50% |")
    assert rows["early"].endswith("| 1 | 17% | 100% |") and rows["random"].endswith("| 3 | 50% | 100% |")


def test_cache_of_other_images_in_the_same_file_is_refused(tmp_path):
    """The same path and settings with other contents (another copy of the dataset) must not reuse scores."""
    npz = tmp_path / "d.npz"
    np.savez(npz, x=np.zeros(3))
    (tmp_path / "t.yml").write_text(TRIAL.replace("dataset: digits,", f"dataset: digits, data_root: {npz},"))
    harness.ProxyCache(tmp_path / "cache.json", tmp_path / "t.yml")._write("k", {"curve": [], "rejected": True})
    assert harness.ProxyCache(tmp_path / "cache.json", tmp_path / "t.yml").table  # same file: read
    np.savez(npz, x=np.ones(3))
    with pytest.raises(harness.UserError, match="another data file than .*d.npz"):
        harness.ProxyCache(tmp_path / "cache.json", tmp_path / "t.yml")
