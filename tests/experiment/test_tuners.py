"""Our tuners: GuidedTuner (known networks first, the cost budget, seeding) and ReinforceTuner."""
import numpy as np
import pytest

from nni_seg.space.arch import legacy_search_space, seed_arch, unet_arch
from nni_seg.tuners import ReinforceTuner


def test_rl_distribution_moves_toward_reward():
    t = ReinforceTuner(seed=0)
    t.update_search_space(legacy_search_space())
    before = [t.decode(t.sample())["act"] for _ in range(400)].count("silu") / 400
    for pid in range(150):
        p = t.generate_parameters(pid)
        t.receive_trial_result(pid, p, {"default": float(p["act"] == "silu")})
    # marginal probability of the rewarded option, estimated by sampling
    picks = [t.decode(t.sample())["act"] for _ in range(400)]
    assert picks.count("silu") / 400 > 0.8
    assert t.most_likely()["act"] == "silu"
    assert before < 0.5  # about 1/3 before any reward: the move is learnt


def test_rl_survives_failures_and_concurrency():
    t = ReinforceTuner(seed=1)
    t.update_search_space(legacy_search_space("layer_choice"))
    params = {pid: t.generate_parameters(pid) for pid in range(6)}  # 6 in flight at once
    assert all("_idx" in v for v in params[0].values())
    t.trial_end(3, False)  # fails before any reward: "worst" is unknown, nothing learnt
    for pid in (5, 0, 2):  # results out of order
        t.receive_trial_result(pid, params[pid], 0.5 + 0.1 * pid)
        t.trial_end(pid, True)
    t.trial_end(1, False)  # scored as the worst reward seen
    t.receive_trial_result(4, params[4], float("nan"))  # ignored, not a crash
    assert t.updates == 4 and not t.pending
    assert all(np.isfinite(b).all() for b in t.bias)


def _drive(tuner, space_kind, n, score):
    tuner.update_search_space(legacy_search_space(space_kind))
    out = []
    for pid in range(n):
        params = tuner.generate_parameters(pid)
        from nni_seg.space.arch import decode_parameters

        arch = decode_parameters(params)
        tuner.receive_trial_result(pid, params, {"default": score(arch)})
        tuner.trial_end(pid, True)
        out.append(arch)
    return out


def test_seeded_tpe_starts_from_the_known_networks_and_learns_from_them():
    from nni_seg.experiment.tuners import GuidedTuner

    t = GuidedTuner("TPE", {"seed": 0, "tpe_args": {"n_startup_jobs": 2}}, ["unet", "seed"])
    assert t.budget is None
    archs = _drive(t, "choice", 6, lambda a: 1.0 if a["levels"] == 4 else 0.1)
    assert archs[0] == unet_arch() and archs[1] == seed_arch()
    assert len({str(a) for a in archs}) == 6  # then its own proposals
    history = t.inner._history  # TPE's own record of what it has seen: the known points are in it
    assert {len(records) for records in history.values()} == {6}


def test_seeded_evolution_has_the_known_networks_in_its_population():
    from nni_seg.experiment.tuners import GuidedTuner

    t = GuidedTuner("Evolution", {"population_size": 4}, ["unet"])
    t.update_search_space(legacy_search_space())
    firsts = [ind.config for ind in t.inner.population if ind.result is None]
    assert {k: v["_value"] for k, v in firsts[0].items()} == unet_arch()


def test_seeded_tuner_resumed_does_not_rerun_known_points_and_refuses_bad_names():
    from nni_seg.experiment.tuners import GuidedTuner, encode

    t = GuidedTuner("Random", {"seed": 0}, ["unet", "seed"])
    t.update_search_space(legacy_search_space())
    t.import_data([{"parameter": encode(unet_arch(), legacy_search_space()), "value": 0.5}])
    from nni_seg.space.arch import decode_parameters

    assert decode_parameters(t.generate_parameters(0)) == seed_arch()
    with pytest.raises(ValueError, match="unknown network 'resnet'"):
        GuidedTuner("TPE", {}, ["resnet"])
    with pytest.raises(ValueError, match="unknown tuner 'TPEE'"):
        GuidedTuner("TPEE", {}, [])


@pytest.mark.parametrize("inner", ["TPE", "Random", "Evolution"])
def test_guided_tuner_never_proposes_over_the_budget_and_teaches_the_tuner(inner):
    from nni_seg.space.cost import arch_mmacs
    from nni_seg.experiment.tuners import GuidedTuner

    args = {"population_size": 4, "seed": 0} if inner == "Evolution" else {"seed": 0}
    t = GuidedTuner(inner, args, ["unet"], budget={"max_mmacs_of": "unet", "size": [32, 32], "num_classes": 5})
    archs = _drive(t, "choice", 8, lambda a: 0.5)
    limit = arch_mmacs(unet_arch(), 5, 3, (32, 32))
    assert archs[0] == unet_arch()
    assert all(arch_mmacs(a, 5, 3, (32, 32)) <= limit + 1e-3 for a in archs)
    assert t.skipped > 0  # about half of a random draw is over the U-Net's MACs: those were never run
    if inner == "TPE":  # what the tuner was told: 8 trials plus every skipped proposal
        assert {len(r) for r in t.inner._history.values()} == {8 + t.skipped}


def test_guided_tuner_with_a_floor_proposes_only_between_the_floor_and_the_limit():
    from nni_seg.space.cost import arch_mmacs
    from nni_seg.experiment.tuners import GuidedTuner

    t = GuidedTuner("Random", {"seed": 0}, [],
                    budget={"max_mmacs_of": "unet", "size": [32, 32], "num_classes": 5, "min_share": 0.6})
    mmacs = [arch_mmacs(a, 5, 3, (32, 32)) for a in _drive(t, "choice", 8, lambda a: 0.5)]
    assert all(t.budget.floor - 1e-3 <= m <= t.budget.limit + 1e-3 for m in mmacs), mmacs


def test_guided_evolution_is_reproducible_from_its_seed():
    """NNI's Evolution takes no seed (an unseeded RandomState draws its first population); GuidedTuner's does."""
    from nni_seg.experiment.tuners import GuidedTuner

    def run(seed):
        return _drive(GuidedTuner("Evolution", {"population_size": 4, "seed": seed}, []), "choice", 8,
                      lambda a: 1.0 if a["act"] == "relu" else 0.2)

    first = run(3)
    assert run(3) == first and run(4) != first


def test_shipped_guided_configs_budget_as_their_trials():
    """The tuner's budget (size, reference) must be the one the trial enforces, or trials get rejected."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    for cfg_path in [*root.glob("experiments/*.yml"), *root.glob("experiments/*/*.yml")]:
        cfg = yaml.safe_load(cfg_path.read_text())
        if not isinstance(cfg, dict) or "GuidedTuner" not in str(cfg.get("tuner", {}).get("className")):
            continue
        budget = cfg["tuner"]["classArgs"].get("budget")
        trial_yml = cfg["trialCommand"].split("--config ")[1].split()[0]
        trial = yaml.safe_load((root / trial_yml).read_text())
        if budget is None:
            assert "budget" not in trial, cfg_path
            continue
        assert budget["size"] == trial["data"]["size"], cfg_path
        assert budget["max_mmacs_of"] == trial["budget"]["max_mmacs_of"], cfg_path
