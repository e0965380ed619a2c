import json

import pytest

from nni_seg.errors import ConfigError
from nni_seg.workflow.search import load_config
from nni_seg.config.settings import TrainSettings

from ..nni_helpers import free_port, run_cli

TINY = """
data: {size: [16, 16], num_train: 16, num_val: 8}
train: {epochs: 1, batch_size: 8, device: cpu, threads: 1}
search: {trials: 3, concurrency: 2, working_dir: WD, enas_epochs: 1, population_size: 2, sample_size: 2}
"""


def test_config_sections_and_typos_are_checked(tmp_path):
    p = tmp_path / "s.yml"
    p.write_text("data: {size: [16, 16]}\nsearch: {trails: 3}\n")
    with pytest.raises(ConfigError, match="search: unknown key\\(s\\) trails; valid: strategy, trials"):
        load_config(str(p))
    p.write_text("model: {}\n")
    with pytest.raises(ConfigError, match="unknown section\\(s\\) model"):
        load_config(str(p))
    d, t, s = load_config(None)
    assert s.strategy == "random" and t.epochs == TrainSettings().epochs


@pytest.mark.parametrize("body,msg", [
    ("data: {size: 16}", "data.size: expected a list, got 16"),
    ("train: {epochs: two}", "train.epochs: expected an integer, got 'two'"),
    ("search: {port: notaport}", "search.port: expected an integer, got 'notaport'"),
    ("search: {port: 70000}", "search.port: must be <= 65535, got 70000"),
    ("search: {fixed: {enc1_op: conv3x3}}", "search.fixed.enc1_op: cannot be pinned"),
    ("search: {fixed: {levels: 5}}", "search.fixed.levels: must be one of [3, 4]; got 5"),
    ("train: [1, 2]", "train: expected a mapping, got list"),
])
def test_config_values_are_checked_with_file_and_key(tmp_path, body, msg):
    p = tmp_path / "s.yml"
    p.write_text(body + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(p))
    assert str(e.value) == f"{p}: {msg}" or str(e.value).startswith(f"{p}: {msg}")


def test_unknown_strategy_is_one_clear_error(tmp_path):
    out = run_cli(["search", "--strategy", "darts"], tmp_path)
    assert out.returncode == 2 and "--strategy: must be one of enas, evolution, tpe, random; got 'darts'" in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["evolution", "enas"])
def test_search_runs_nas_experiment_and_exports(tmp_path, strategy):
    cfg = tmp_path / "s.yml"
    cfg.write_text(TINY.replace("WD", str(tmp_path / "exps")))
    out = run_cli(["search", "--strategy", strategy, "--config", str(cfg), "--port", str(free_port())], tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    tops = [p for p in (tmp_path / "exps").glob("*/top_arch.json") if p.parent.name != "_latest"]
    assert len(tops) == 1
    top = json.loads(tops[0].read_text())
    assert top["strategy"] == strategy and f"{strategy}: top architecture of {top['experiment_id']}" in out.stdout
    if strategy == "evolution":
        assert top["warnings"] == []  # NNI's own top model is the best trial's record
        assert top["cross_check"]["trials_checked"] == 3 and top["cross_check"]["mismatches"] == []
        assert top["trials_succeeded"] == 3
    else:
        assert top["metrics"] is None and top["arch"]["levels"] == 3 and top["source"] == "ENAS controller"


def test_shipped_search_config_loads():
    from pathlib import Path

    d, t, s = load_config(str(Path(__file__).resolve().parents[2] / "experiments" / "search_digits.yml"))
    assert d.size == (32, 32) and t.epochs == 4 and s.trials == 8 and s.population_size == 4


@pytest.mark.slow
def test_interrupted_nas_search_keeps_finished_trials_and_exports(tmp_path):
    """SIGTERM stops the NAS experiment (exit 130, one clear message); finished trials stay exportable."""
    import signal
    import subprocess
    import sys
    import time

    from nni_seg.experiment.records import trial_records

    from ..nni_helpers import env_for

    cfg = tmp_path / "s.yml"
    cfg.write_text(TINY.replace("WD", str(tmp_path / "wd")).replace("trials: 3", "trials: 12").replace(
        "epochs: 1", "epochs: 3"))
    proc = subprocess.Popen([sys.executable, "-m", "nni_seg", "search", "--strategy", "random", "--config", str(cfg),
                             "--port", str(free_port())], cwd=tmp_path, env=env_for(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while time.time() - t0 < 240:
        done = [x for x in trial_records(tmp_path / "wd")[0] if x.record.status.value == "SUCCEEDED"]
        if len(done) >= 2:
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "stopped before its budget; finished trials are kept" in err
    exp_id = err.split("search ")[-1].split(" stopped")[0]
    records = [x.record for x in trial_records(tmp_path / "wd" / exp_id)[0]]
    finished = [r for r in records if r.status.value == "SUCCEEDED"]
    assert 2 <= len(finished) < 12 and all(r.status.value in ("SUCCEEDED", "CANCELED") for r in records)
    exp = run_cli(["export", exp_id, "--exp-dir", str(tmp_path / "wd"), "--out", str(tmp_path / "top.json")], tmp_path)
    assert exp.returncode == 0, exp.stderr
    # export's rule: ties (tiny trials of 3 epochs can score alike) go to the cheaper network, then the earliest
    best = max(finished, key=lambda r: (r.metrics["dice"], -r.mmacs, -(r.sequence_id or 0)))
    assert json.loads((tmp_path / "top.json").read_text())["trial_id"] == best.trial_id


def test_nni_top_model_tied_with_the_export_is_no_disagreement(tmp_path):
    """Tiny trials tie: export takes the cheaper of two equal scores, NNI the one it met first (a CI run
    warned on that); a tie is accepted, another trial with a lower score is not."""
    from nni_seg.config import schema
    from nni_seg.space.arch import seed_arch, unet_arch
    from nni_seg.experiment.records import RECORD_NAME
    from nni_seg.config.schema import Status, TopArch, TrialRecord
    from nni_seg.workflow.search import _among_best

    other = dict(unet_arch(), act="silu")
    for name, arch, score in (("a", seed_arch(), 0.4), ("b", unet_arch(), 0.4), ("c", other, 0.1)):
        (tmp_path / name).mkdir()
        schema.save(TrialRecord(status=Status.SUCCEEDED, arch=arch,
                                metrics={"default": score, "dice": score, "miou": score / 2}),
                    tmp_path / name / RECORD_NAME)
    top = TopArch(arch=seed_arch(), metrics={"default": 0.4})
    assert _among_best(seed_arch(), top, tmp_path) and _among_best(unet_arch(), top, tmp_path)
    assert not _among_best(other, top, tmp_path)
