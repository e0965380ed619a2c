"""The search space's prior: choices that lose on measured trainings are left out of a search."""
import json
import random
from pathlib import Path

import pytest
import yaml

from nni_seg.space.arch import CHOICES, active_labels, decode_parameters, legacy_search_space, seed_arch, unet_arch
from nni_seg.config import schema
from bench.strategies import read_cache
from nni_seg.errors import RecordError, UserError
from nni_seg.space.arch import narrow
from nni_seg.workflow.prior import choice_evidence, derive_exclusions
from nni_seg.config.schema import PriorSamples

ROOT = Path(__file__).resolve().parents[2]


def _samples(n: int, score, seed: int = 0) -> list[tuple[dict, float]]:
    """``n`` random architectures scored by ``score(arch, rng)``."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        arch = {label: rng.choice(values) for label, values in CHOICES.items()}
        out.append((arch, score(arch, rng)))
    return out


def test_a_choice_that_loses_is_excluded_and_noise_is_not():
    # deconv costs 0.05 on average under noise of sd 0.03; every other label is noise only
    samples = _samples(240, lambda a, rng: 0.4 - 0.05 * (a["up"] == "deconv") + rng.gauss(0, 0.03))
    assert derive_exclusions(samples) == {"up": ["deconv"]}
    ev = {(e.label, e.value): e for e in choice_evidence(samples)}
    assert ev[("up", "deconv")].excluded and ev[("up", "deconv")].z > 3.3
    assert ev[("up", "nearest")].z < 0 and not ev[("up", "nearest")].excluded


def test_picking_the_best_value_is_not_evidence():
    """Pure noise over 37 labels: comparing each value with the label's best excluded some (the best of five
    is high by chance: the first version did); against the rest, Bonferroni-corrected, nothing is excluded."""
    for seed in range(3):
        samples = _samples(240, lambda a, rng: 0.4 + rng.gauss(0, 0.03), seed=seed)
        assert derive_exclusions(samples) == {}


def test_only_trainings_where_the_label_is_active_count():
    # enc_join changes nothing when enc_op2 is none; there a (fake) penalty must not be read as enc_join's
    def score(a, rng):
        inert = "enc_join" not in active_labels(a)
        return 0.4 - (0.1 if inert and a["enc_join"] == "serial" else 0.0) + rng.gauss(0, 0.01)

    samples = _samples(300, score, seed=1)
    assert "enc_join" not in derive_exclusions(samples)


def test_too_few_trainings_exclude_nothing():
    samples = _samples(240, lambda a, rng: 0.4 - 0.2 * (a["up"] == "deconv") + rng.gauss(0, 0.01))
    n_deconv = sum(a["up"] == "deconv" for a, _ in samples)
    assert derive_exclusions(samples, min_n=n_deconv) == {"up": ["deconv"]}
    assert derive_exclusions(samples, min_n=n_deconv + 1) == {}


def test_narrow_refuses_what_the_space_has_not_and_an_empty_label():
    space = legacy_search_space()
    assert narrow(space, {"up": ["deconv"]})["up"]["_value"] == ["bilinear", "nearest"] or \
        "deconv" not in narrow(space, {"up": ["deconv"]})["up"]["_value"]
    with pytest.raises(ValueError, match="unknown label 'upsample'; valid: levels"):
        narrow(space, {"upsample": ["deconv"]})
    with pytest.raises(ValueError, match=r"exclude.up: 'transposed' is not one of \["):
        narrow(space, {"up": ["transposed"]})
    with pytest.raises(ValueError, match="exclude.up: leaves no value"):
        narrow(space, {"up": list(CHOICES["up"])})
    with pytest.raises(ValueError, match="exclude.up: a list of values"):
        narrow(space, {"up": "deconv"})


def test_the_shipped_camvid_search_excludes_what_the_bench_derivation_says():
    """experiments/camvid/search_cpu.yml's exclude is bench/space_prior.py's output on its saved samples."""
    saved = schema.load(PriorSamples, ROOT / "bench/results/strategies_camvid/prior/samples.json")
    derived = derive_exclusions(saved.pairs(), saved.alpha, saved.min_n)
    cfg = yaml.safe_load((ROOT / "experiments/camvid/search_cpu.yml").read_text())
    assert cfg["tuner"]["classArgs"]["exclude"] == derived
    assert derived  # the evidence does exclude something; if not, the config should say so instead


def test_guided_tuner_proposes_nothing_excluded_and_checks_its_known_networks():
    from nni_seg.experiment.tuners import GuidedTuner

    exclude = {"up": ["deconv"], "enc1_width": [16], "enc_join": ["serial"]}
    t = GuidedTuner("TPE", {"seed": 0, "tpe_args": {"n_startup_jobs": 3}}, ["seed"], exclude=exclude)
    t.update_search_space(legacy_search_space())
    archs = []
    for pid in range(10):
        params = t.generate_parameters(pid)
        archs.append(decode_parameters(params))
        t.receive_trial_result(pid, params, {"default": 0.5 if archs[-1]["act"] == "relu" else 0.3})
        t.trial_end(pid, True)
    # the seed's net has enc_op2 none: its enc_join (serial, excluded) is inert and takes an allowed value
    assert {k: v for k, v in archs[0].items() if k in active_labels(seed_arch())} == \
        {k: v for k, v in seed_arch().items() if k in active_labels(seed_arch())}
    assert archs[0]["enc_join"] != "serial"
    for arch in archs:
        assert arch["up"] != "deconv" and arch["enc1_width"] != 16 and arch["enc_join"] != "serial"
    # the U-Net's cells are two serial convs: a prior that excludes them cannot start from it
    with pytest.raises(ValueError, match="start_with: a network with enc_join='serial', which exclude leaves out"):
        GuidedTuner("TPE", {}, ["unet"], exclude=exclude).update_search_space(legacy_search_space())
    with pytest.raises(ValueError, match="unknown label 'upp'"):
        GuidedTuner("Random", {}, [], exclude={"upp": ["deconv"]}).update_search_space(legacy_search_space())
    assert unet_arch()["enc_join"] == "serial"


def test_prior_samples_are_a_typed_record_and_the_first_form_still_loads(tmp_path):
    arch = unet_arch()
    old = tmp_path / "old.json"  # version 0: {alpha, min_n, samples: [[arch, score], ...]}
    old.write_text(json.dumps({"alpha": 0.01, "min_n": 3, "samples": [[arch, 0.5]]}))
    rec = schema.load(PriorSamples, old)
    assert rec.pairs() == [(arch, 0.5)] and rec.alpha == 0.01 and rec.format_version == schema.FORMAT_VERSION
    schema.save(rec, tmp_path / "new.json")
    assert schema.load(PriorSamples, tmp_path / "new.json") == rec
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"samples": [{"arch": arch, "score": "high"}]}))
    with pytest.raises(RecordError, match=r"bad.json: samples\[0\].score: expected a number"):
        schema.load(PriorSamples, bad)


def test_a_proxy_cache_reads_as_typed_entries_and_a_bad_one_is_one_line(tmp_path):
    arch = unet_arch()
    cache = tmp_path / "cache.json"
    cache.write_text(json.dumps({"settings": {"train": {"epochs": 3}}, "table": {
        json.dumps([arch, 3]): {"curve": [0.1, 0.2, 0.3], "rejected": False},
        json.dumps([seed_arch(), 1]): {"curve": [], "rejected": True}}}))
    full, entries = read_cache(cache)
    assert full == 3 and {(e.epochs, e.rejected) for e in entries} == {(3, False), (1, True)}
    assert [e.curve for e in entries if e.arch == arch] == [[0.1, 0.2, 0.3]]
    with pytest.raises(UserError, match="missing.json: not found"):
        read_cache(tmp_path / "missing.json")
    cache.write_text('{"table": {}}')
    with pytest.raises(UserError, match="cache.json: not a proxy cache"):
        read_cache(cache)
