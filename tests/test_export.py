import json
import sqlite3

import pytest

from nni_seg.export import cross_check, top_architecture
from nni_seg.records import RECORD_NAME, nni_db
from nni_seg.space import seed_arch


def _record(tmp, tid, pid, dice, status="SUCCEEDED", **arch):
    rec = {"status": status, "trial_id": tid, "parameter_id": pid, "arch": dict(seed_arch(), **arch),
           "raw_parameters": dict(seed_arch(), **arch), "summary": "s", "experiment_id": "e",
           "metrics": {"default": dice, "dice": dice, "miou": dice / 2, "params": 1, "mflops": 1.0}}
    d = tmp / "environments" / "local-env" / "trials" / tid
    d.mkdir(parents=True)
    (d / RECORD_NAME).write_text(json.dumps(rec))
    return rec


def _db(tmp, rows):
    (tmp / "db").mkdir()
    con = sqlite3.connect(tmp / "db" / "nni.sqlite")
    con.execute("CREATE TABLE TrialJobEvent (timestamp, trialJobId, event, data, logPath, sequenceId, message)")
    con.execute("CREATE TABLE MetricData (timestamp, trialJobId, parameterId, type, sequence, data)")
    for i, (tid, pid_shown, params_shown, pid_final, final) in enumerate(rows):
        form = json.dumps({"parameter_id": pid_shown, "parameters": params_shown})
        con.execute("INSERT INTO TrialJobEvent VALUES (?,?,?,?,?,?,?)", (i, tid, "WAITING", form, "", i, ""))
        con.execute("INSERT INTO TrialJobEvent VALUES (?,?,?,?,?,?,?)", (i + 100, tid, "SUCCEEDED", None, "", i, ""))
        con.execute("INSERT INTO MetricData VALUES (?,?,?,?,?,?)",
                    (i, tid, str(pid_final), "FINAL", 0, json.dumps(json.dumps({"default": final}))))
    con.commit()
    con.close()


def test_top_is_best_succeeded_record_and_consistent_db_has_no_mismatch(tmp_path):
    a = _record(tmp_path, "A", 0, 0.5)
    b = _record(tmp_path, "B", 1, 0.7, enc1_width=32)
    _record(tmp_path, "C", 2, 0.9, status="FAILED")
    _record(tmp_path, "D", 3, 0.0, status="REJECTED")
    _db(tmp_path, [("A", 0, a["raw_parameters"], 0, 0.5), ("B", 1, b["raw_parameters"], 1, 0.7)])
    top = top_architecture(tmp_path)
    assert top["trial_id"] == "B" and top["arch"]["enc1_width"] == 32 and top["trials_succeeded"] == 2
    assert top["nni_cross_check"] == {"trials_checked": 2, "mismatches": []}
    assert nni_db(tmp_path)["A"]["status"] == "SUCCEEDED"


def test_nni_mixup_is_reported(tmp_path):
    """What NNI 3.0 does under concurrency unpatched: it shows B's parameters for A and vice versa."""
    a = _record(tmp_path, "A", 0, 0.5)
    b = _record(tmp_path, "B", 1, 0.7, enc1_width=32)
    _db(tmp_path, [("A", 1, b["raw_parameters"], 0, 0.5), ("B", 0, a["raw_parameters"], 1, 0.7)])
    check = cross_check([a, b], nni_db(tmp_path))
    assert check["trials_checked"] == 2 and len(check["mismatches"]) == 2
    assert "NNI shows other parameters" in check["mismatches"][0]["problems"][0]
    # a final metric carrying another parameter id is caught too
    c = dict(a, trial_id="A")
    db = nni_db(tmp_path)
    db["A"]["final_parameter_id"] = 7
    assert any("parameter_id 7" in p for m in cross_check([c], db)["mismatches"] for p in m["problems"])


def test_no_succeeded_trial_is_a_clear_error(tmp_path):
    _record(tmp_path, "C", 2, 0.9, status="FAILED")
    with pytest.raises(LookupError, match="no succeeded trial.*FAILED"):
        top_architecture(tmp_path)


def test_without_trial_records_export_falls_back_to_nni_database(tmp_path):
    """Remote training service: records stay on the SSH hosts; NNI's DB has parameters and finals."""
    a, b = dict(seed_arch(), enc1_width=32), dict(seed_arch(), act="gelu")
    _db(tmp_path, [("A", 0, a, 0, 0.3), ("B", 1, b, 1, 0.6)])
    top = top_architecture(tmp_path)
    assert top["trial_id"] == "B" and top["arch"] == b and top["metrics"]["default"] == 0.6
    assert top["source"].startswith("NNI database") and top["nni_cross_check"]["trials_checked"] == 0
