"""One fake NNI experiment folder for tests that read experiments without running one: trial records where
NNI puts them, and NNI's sqlite database with the two tables export and settle read (one copy of its schema)."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from nni_seg.config.schema import RECORD_NAME
from nni_seg.space.arch import seed_arch


def write_record(exp: Path, tid: str, score: float | None = None, status: str = "SUCCEEDED", *,
                 env: str = "local-env", **fields) -> dict:
    """A trial record under ``exp/environments/<env>/trials/<tid>/``: the seed's net unless ``arch`` is given,
    metrics from ``score`` (``default`` and ``dice`` = score, ``miou`` = score / 2); ``fields`` go in as given."""
    rec = {"status": status, "trial_id": tid, "arch": seed_arch(), "summary": "s", "experiment_id": "e",
           "format_version": 1, **fields}
    if score is not None:
        rec["metrics"] = {"default": score, "dice": score, "miou": score / 2, **rec.get("metrics", {})}
    d = exp / "environments" / env / "trials" / tid
    d.mkdir(parents=True, exist_ok=True)
    (d / RECORD_NAME).write_text(json.dumps(rec))
    return rec


def nni_database(exp: Path) -> sqlite3.Connection:
    """``exp/db/nni.sqlite`` with NNI 3.0's TrialJobEvent and MetricData tables (empty)."""
    (exp / "db").mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(exp / "db" / "nni.sqlite")
    con.execute("CREATE TABLE TrialJobEvent (timestamp, trialJobId, event, data, logPath, sequenceId, message)")
    con.execute("CREATE TABLE MetricData (timestamp, trialJobId, parameterId, type, sequence, data)")
    return con


def add_event(con: sqlite3.Connection, i: int, tid: str, event: str, form: dict | None = None) -> None:
    con.execute("INSERT INTO TrialJobEvent VALUES (?,?,?,?,?,?,?)",
                (i, tid, event, json.dumps(form) if form is not None else None, "", i, ""))


def add_final(con: sqlite3.Connection, i: int, tid: str, parameter_id, final: dict) -> None:
    """A FINAL metric as NNI stores it (JSON encoded twice)."""
    con.execute("INSERT INTO MetricData VALUES (?,?,?,?,?,?)",
                (i, tid, str(parameter_id), "FINAL", 0, json.dumps(json.dumps(final))))
