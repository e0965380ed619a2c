import json
import sqlite3

import pytest

from nni_seg.space.arch import seed_arch
from nni_seg.errors import RecordError, RunFailed
from nni_seg.workflow.export import cross_check, export, top_architecture
from nni_seg.experiment.records import nni_db, trial_records
from nni_seg.config.schema import RECORD_NAME

from ..fake_experiment import add_event, add_final, nni_database, write_record


def _record(tmp, tid, pid, dice, status="SUCCEEDED", **arch):
    return write_record(tmp, tid, dice, status, parameter_id=pid, arch=dict(seed_arch(), **arch),
                        raw_parameters=dict(seed_arch(), **arch), metrics={"params": 1, "mmacs": 1.0})


def _db(tmp, rows):
    con = nni_database(tmp)
    for i, (tid, pid_shown, params_shown, pid_final, final) in enumerate(rows):
        add_event(con, i, tid, "WAITING", {"parameter_id": pid_shown, "parameters": params_shown})
        add_event(con, i + 100, tid, "SUCCEEDED")
        add_final(con, i, tid, pid_final, final if isinstance(final, dict) else
                  {"default": final, "dice": final, "miou": final / 2})
    con.commit()
    con.close()


def test_top_is_best_succeeded_record_and_consistent_db_has_no_mismatch(tmp_path):
    a = _record(tmp_path, "A", 0, 0.5)
    b = _record(tmp_path, "B", 1, 0.7, enc1_width=32)
    _record(tmp_path, "C", 2, 0.9, status="FAILED")
    _record(tmp_path, "D", 3, 0.0, status="REJECTED")
    _db(tmp_path, [("A", 0, a["raw_parameters"], 0, 0.5), ("B", 1, b["raw_parameters"], 1, 0.7)])
    top = top_architecture(tmp_path)
    assert top.trial_id == "B" and top.arch["enc1_width"] == 32 and top.trials_succeeded == 2
    assert top.cross_check.trials_checked == 2 and top.cross_check.mismatches == [] and top.warnings == []
    assert nni_db(tmp_path)["A"]["status"] == "SUCCEEDED"


def test_nni_mixup_is_reported(tmp_path):
    """What NNI 3.0 does under concurrency unpatched: it shows B's parameters for A and vice versa."""
    a = _record(tmp_path, "A", 0, 0.5)
    b = _record(tmp_path, "B", 1, 0.7, enc1_width=32)
    _db(tmp_path, [("A", 1, b["raw_parameters"], 0, 0.5), ("B", 0, a["raw_parameters"], 1, 0.7)])
    loaded, _ = trial_records(tmp_path)
    check = cross_check(loaded, nni_db(tmp_path))
    assert check.trials_checked == 2 and len(check.mismatches) == 2
    assert "NNI shows other parameters" in check.mismatches[0].problems[0]
    db = nni_db(tmp_path)  # a final metric carrying another parameter id is caught too
    db["A"]["final_parameter_id"] = 7
    assert any("parameter_id 7" in p for m in cross_check(loaded, db).mismatches for p in m.problems)


def test_no_succeeded_trial_is_a_clear_error(tmp_path):
    _record(tmp_path, "C", 2, 0.9, status="FAILED")
    with pytest.raises(RunFailed, match="no succeeded trial.*FAILED"):
        top_architecture(tmp_path)


def test_without_trial_records_export_falls_back_to_nni_database(tmp_path):
    """Remote training service: records stay on the SSH hosts; NNI's DB has parameters and finals."""
    a, b = dict(seed_arch(), enc1_width=32), dict(seed_arch(), act="gelu")
    _db(tmp_path, [("A", 0, a, 0, 0.3), ("B", 1, b, 1, 0.6)])
    top = top_architecture(tmp_path)
    assert top.trial_id == "B" and top.arch == b and top.metrics["default"] == 0.6
    assert top.source.startswith("NNI database") and top.cross_check.trials_checked == 0


def test_truncated_best_record_never_exports_the_second_best(tmp_path):
    """The winner's record cut in half: NNI's DB still holds its better Dice, so export fails loudly
    (naming the trial and the file) instead of exporting the second best with '0 mismatches'."""
    a = _record(tmp_path, "A", 0, 0.5)
    b = _record(tmp_path, "B", 1, 0.8, enc1_width=32)
    _db(tmp_path, [("A", 0, a["raw_parameters"], 0, 0.5), ("B", 1, b["raw_parameters"], 1, 0.8)])
    path = tmp_path / "environments" / "local-env" / "trials" / "B" / RECORD_NAME
    path.write_text(path.read_text()[:200])
    with pytest.raises(RunFailed, match=r"trial B: .*nni_seg_record.json: not valid JSON .*truncated.*better final "
                                        r"default for it \(0.8000 > 0.5"):
        top_architecture(tmp_path)
    top = top_architecture(tmp_path, trust_db=True)  # the explicit way out: take it from NNI's DB
    assert top.trial_id == "B" and top.arch["enc1_width"] == 32 and "taken from NNI's database" in top.warnings[0]


@pytest.mark.parametrize("status", ["FAILED", "RUNNING", "CANCELED"])
def test_best_trial_whose_record_disagrees_with_the_database_never_exports_the_second_best(tmp_path, status):
    """The record is readable but says FAILED / RUNNING while NNI's database has the trial SUCCEEDED with the
    better score: as with an unreadable record, the export fails naming both, or takes it with --trust-db."""
    a = _record(tmp_path, "A", 0, 0.5)
    b = _record(tmp_path, "B", 1, 0.8, status=status, enc1_width=32)
    _db(tmp_path, [("A", 0, a["raw_parameters"], 0, 0.5), ("B", 1, b["raw_parameters"], 1, 0.8)])
    with pytest.raises(RunFailed, match=rf"trial B: its record .* says {status} .*better final default "
                                        r"for it \(0.8000 > 0.5"):
        top_architecture(tmp_path)
    top = top_architecture(tmp_path, trust_db=True)
    assert top.trial_id == "B" and "taken from NNI's database" in top.warnings[0]


def test_failed_record_with_a_worse_database_score_is_a_warning(tmp_path):
    a = _record(tmp_path, "A", 0, 0.8)
    b = _record(tmp_path, "B", 1, 0.3, status="FAILED")
    _db(tmp_path, [("A", 0, a["raw_parameters"], 0, 0.8), ("B", 1, b["raw_parameters"], 1, 0.3)])
    top = top_architecture(tmp_path)
    assert top.trial_id == "A" and any("trial B left out: its record" in w for w in top.warnings)


def test_unreadable_worse_record_is_a_warning_not_a_silence(tmp_path):
    a = _record(tmp_path, "A", 0, 0.5)
    b = _record(tmp_path, "B", 1, 0.8)
    _db(tmp_path, [("A", 0, a["raw_parameters"], 0, 0.5), ("B", 1, b["raw_parameters"], 1, 0.8)])
    (tmp_path / "environments" / "local-env" / "trials" / "A" / RECORD_NAME).write_text('{"status": 5}')
    top = top_architecture(tmp_path)
    assert top.trial_id == "B" and "trial A left out" in top.warnings[0] and "status" in top.warnings[0]


def test_trials_that_never_wrote_a_record_are_said(tmp_path):
    """Trials NNI ran that died before writing a record (e.g. the venv was gone) are not a silent 'best of 2'."""
    a = _record(tmp_path, "A", 0, 0.5)
    _db(tmp_path, [("A", 0, a["raw_parameters"], 0, 0.5)])
    con = sqlite3.connect(tmp_path / "db" / "nni.sqlite")
    for i, tid in enumerate(("X", "Y")):
        con.execute("INSERT INTO TrialJobEvent VALUES (?,?,?,?,?,?,?)", (200 + i, tid, "FAILED", None, "", 5 + i, ""))
    con.commit()
    con.close()
    top = top_architecture(tmp_path)
    assert top.trial_id == "A" and len(top.warnings) == 1
    assert "2 of 3 trials left no record and no result (2 FAILED; e.g. trial X" in top.warnings[0]


def test_corrupt_nni_database_is_one_line(tmp_path):
    _record(tmp_path, "A", 0, 0.5)
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "nni.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x07" * 300)
    with pytest.raises(RecordError, match="nni.sqlite"):
        nni_db(tmp_path)
    top = top_architecture(tmp_path)  # the records are fine: exported, the missing cross-check said
    assert top.trial_id == "A" and top.warnings[0].startswith("no cross-check:")


def test_export_out_is_not_silently_replaced(tmp_path):
    (tmp_path / "exps" / "e").mkdir(parents=True)
    exp = tmp_path / "exps" / "e"
    a = _record(exp, "A", 0, 0.5)
    _db(exp, [("A", 0, a["raw_parameters"], 0, 0.5)])
    other = tmp_path / "mine.json"
    other.write_text("precious")
    from nni_seg.errors import UserError

    with pytest.raises(UserError, match="mine.json exists; not replaced without --force"):
        export("e", str(other), [str(tmp_path / "exps")])
    assert other.read_text() == "precious"
    top, path = export("e", str(tmp_path / "top.json"), [str(tmp_path / "exps")])
    assert export("e", str(path), [str(tmp_path / "exps")])[1] == path  # this experiment's own export: updated
    assert json.loads(path.read_text())["format_version"] == 1


def test_equal_scores_go_to_the_cheaper_network_then_the_earliest_trial(tmp_path):
    """Tiny trials can tie; the export and the report's Pareto front must name the same trial."""
    from nni_seg.workflow.report import pareto_front

    for tid, seq, mmacs, width in (("A", 0, 300.0, 64), ("B", 1, 100.0, 16), ("C", 2, 100.0, 32), ("D", 3, 50.0, 8)):
        rec = _record(tmp_path, tid, seq, 0.8 if tid != "D" else 0.4, enc1_width=width)
        rec.update(sequence_id=seq, mmacs=mmacs)
        (tmp_path / "environments" / "local-env" / "trials" / tid / RECORD_NAME).write_text(json.dumps(rec))
    top = top_architecture(tmp_path)
    assert top.trial_id == "B"  # 0.8 at 100 MMACs, before C
    points = [(300.0, 0.8), (100.0, 0.8), (100.0, 0.8), (50.0, 0.4)]  # in trial order, as the report lists them
    assert pareto_front(points) == [3, 1]


def test_records_left_running_by_killed_trials_take_the_end_nni_saw(tmp_path):
    """A trial SIGKILLed before it could write its end (NNI escalates a slow stop) must not stay RUNNING."""
    from nni_seg.experiment.records import settle_experiment

    for tid, status in (("S", "RUNNING"), ("K", "RUNNING"), ("F", "RUNNING"), ("L", "RUNNING"), ("C", "CANCELED")):
        _record(tmp_path, tid, 0, 0.5, status=status)
    con = nni_database(tmp_path)
    for i, (tid, event) in enumerate([("S", "EARLY_STOPPED"), ("K", "USER_CANCELED"), ("F", "FAILED"),
                                      ("L", "RUNNING"), ("C", "USER_CANCELED")]):
        add_event(con, i, tid, event)
    con.commit()
    con.close()
    assert sorted(settle_experiment(tmp_path)) == ["F", "K", "S"]
    got = {x.record.trial_id: x.record for x in trial_records(tmp_path)[0]}
    assert {t: r.status.value for t, r in got.items()} == {"S": "CANCELED", "K": "CANCELED", "F": "FAILED",
                                                           "L": "RUNNING", "C": "CANCELED"}
    assert "EARLY_STOPPED" in got["S"].error and got["S"].finished and got["C"].error is None
    assert settle_experiment(tmp_path) == []  # an end once written is kept


def test_a_ladder_exported_from_nni_database_alone_keeps_its_rungs_and_recipes(tmp_path):
    """Remote trials of a joint ladder: NNI's DB holds LADDER and the recipe labels; the export chooses at
    the top rung by the mean, as from the trials' own records, and carries the winner's recipe."""
    a, b = dict(seed_arch(), enc1_width=32), dict(seed_arch(), act="gelu")
    ra, rb = {"train_lr": 1e-3, "train_loss": "ce"}, {"train_lr": 1e-2, "train_loss": "ce+dice"}

    def ladder(rung, candidate, repeat=0):
        return {"rung": rung, "epochs": 3 * (rung + 1), "size": [24, 24], "candidate": candidate, "repeat": repeat}

    _db(tmp_path, [("A0", 0, {**a, **ra, "LADDER": ladder(0, 0)}, 0, 0.3),
                   ("B0", 1, {**b, **rb, "LADDER": ladder(0, 1)}, 1, 0.2),
                   ("A1", 2, {**a, **ra, "LADDER": ladder(1, 0, 0)}, 2, 0.9),  # one lucky training
                   ("A2", 3, {**a, **ra, "LADDER": ladder(1, 0, 1)}, 3, 0.1),
                   ("B1", 4, {**b, **rb, "LADDER": ladder(1, 1, 0)}, 4, 0.6),
                   ("B2", 5, {**b, **rb, "LADDER": ladder(1, 1, 1)}, 5, 0.6)])
    top = top_architecture(tmp_path)
    assert top.source.startswith("NNI database") and top.arch == b and top.ladder.rung == 1
    assert top.ladder.scores == [0.6, 0.6] and top.ladder.candidate == 1 and top.recipe == rb
