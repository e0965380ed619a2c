"""export --confirm: the top trials trained again, the best mean exported, the experiment's trials untouched."""

import pytest

from nni_seg.config import schema
from nni_seg.space.arch import seed_arch
from nni_seg.workflow.export import export
from nni_seg.experiment.records import trial_records
from nni_seg.config.schema import Status, TrialRecord

from ..fake_experiment import write_record

TINY = {"data": {"dataset": "digits", "size": [16, 16], "num_train": 16, "num_val": 8},
        "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "threads": 1}}


def _trial(exp, tid, seq, dice, width):
    write_record(exp, tid, dice, sequence_id=seq, arch=dict(seed_arch(), enc1_width=width), summary=f"w{width}",
                 mmacs=10.0 * width, **TINY)


@pytest.fixture
def exp(tmp_path):
    (tmp_path / "environments").mkdir()
    _trial(tmp_path, "A", 0, 0.90, 16)
    _trial(tmp_path, "B", 1, 0.85, 32)
    _trial(tmp_path, "A2", 2, 0.88, 16)  # A's architecture trained again by the search: one candidate, not two
    _trial(tmp_path, "C", 3, 0.50, 64)
    return tmp_path


def test_best_mean_of_the_top_trials_is_exported_and_repeats_are_kept(exp, monkeypatch):
    import nni_seg.experiment.trial

    again = {16: 0.50, 32: 0.80, 64: 0.99}
    calls = []

    def fake_run_trial(arch, data_cfg, train_cfg, out_dir, budget=None, ids=None, **kw):
        calls.append((arch["enc1_width"], train_cfg.seed))
        d = again[arch["enc1_width"]]
        return TrialRecord(status=Status.SUCCEEDED, arch=arch, data=data_cfg, train=train_cfg,
                           metrics={"default": d, "dice": d, "miou": d / 2}, **(ids or {}))

    monkeypatch.setattr(nni_seg.experiment.trial, "run_trial", fake_run_trial)
    top, path = export(str(exp), confirm=2, log=lambda s: None)
    assert calls == [(16, 1), (32, 1)]  # A and B (A2 is A's architecture; C is not in the top 2), seed + 1
    assert top.trial_id == "B" and top.arch["enc1_width"] == 32  # 0.825 against A's 0.70
    c = top.confirmation
    assert c.best_single == "A" and [x.trial_id for x in c.candidates] == ["A", "B"]
    assert c.candidates[1].scores == [0.85, 0.80] and c.candidates[1].mean == pytest.approx(0.825)
    assert "the best single trial was A" in top.note
    assert schema.load(schema.TopArch, path).confirmation == c
    # the repeats are kept apart from NNI's trials, and a second export trains nothing again
    assert len(trial_records(exp)[0]) == 4 and sorted(p.name for p in (exp / "confirm").iterdir()) == \
        ["A_r0.json", "B_r0.json"]
    calls.clear()
    top2, _ = export(str(exp), confirm=2, log=lambda s: None)
    assert calls == [] and top2.trial_id == "B"
    # more repeats: only the new ones train, with the next seeds
    export(str(exp), confirm=2, extra_trainings=2, log=lambda s: None)
    assert calls == [(16, 2), (32, 2)]


def test_bad_confirm_values_are_one_line(exp):
    from nni_seg.errors import UserError

    with pytest.raises(UserError, match="--confirm must be >= 0 and --extra-trainings >= 1, got -1 and 1"):
        export(str(exp), confirm=-1)
    with pytest.raises(UserError, match="got 1 and 0"):
        export(str(exp), confirm=1, extra_trainings=0)


def test_cli_confirm_trains_the_top_trial_again(exp, capsys):
    """Real training at the trials' own (tiny) settings, through the command line."""
    from nni_seg.cli import main

    assert main(["export", str(exp), "--confirm", "1", "--no-draw"]) == 0
    out = capsys.readouterr().out
    rec = schema.load(TrialRecord, exp / "confirm" / "A_r0.json")
    assert rec.status == Status.SUCCEEDED and rec.train.seed == 1 and rec.arch["enc1_width"] == 16
    assert f"confirm: trial A: mean {(0.90 + rec.score()) / 2:.4f}" in out and "top architecture of e" in out
