"""Reading an NNI experiment's folder without a server: the trials' own records and NNI's database."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

from ..config import schema
from ..space.arch import arch_summary, decode_parameters, split_joint, validate_arch
from ..errors import RecordError, UserError
from ..config._typed import convert
from ..config.schema import RECORD_NAME, Rung, Status, TrialRecord


def nni_home() -> Path:
    return Path(os.environ.get("NNI_HOME_DIR", Path.home() / "nni-experiments"))


def registered_experiments() -> dict[str, dict]:
    """nnictl's registry of this $HOME's experiments: id -> {logDir, port, status, ...}."""
    reg = nni_home() / ".experiment"
    if not reg.is_file():
        return {}
    try:
        data = json.loads(reg.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def experiment_dir(exp_id: str, search: list[str | os.PathLike] | None = None) -> Path:
    """The folder of experiment ``exp_id`` (or the folder itself): from ``search`` dirs, nnictl's
    registry, or ~/nni-experiments."""
    given = Path(exp_id)
    if given.is_dir() and ((given / "db").is_dir() or (given / "environments").is_dir()):
        return given
    candidates = [Path(p) for p in (search or [])]
    info = registered_experiments().get(exp_id)
    if isinstance(info, dict) and info.get("logDir"):
        candidates.append(Path(info["logDir"]))
    candidates.append(nni_home())
    for d in (base / exp_id for base in candidates):
        if (d / "db").is_dir() or (d / "environments").is_dir():
            return d
    known = ", ".join(sorted(registered_experiments())) or "none"
    raise UserError(f"experiment {exp_id!r} not found (looked in {', '.join(map(str, candidates))}); "
                    f"known experiments: {known}")


@dataclasses.dataclass
class Unreadable:
    """A record file that exists but cannot be read as a record: an error for that trial."""
    path: str
    trial_id: str  # from the folder NNI gave the trial (``trials/<id>/``)
    error: str


@dataclasses.dataclass
class Loaded:
    """A record with the file it came from."""
    record: TrialRecord
    path: str


def trial_records(exp_dir: Path) -> tuple[list[Loaded], list[Unreadable]]:
    """Every trial record under the experiment folder, and those that could not be read."""
    ok, bad = [], []
    for p in sorted(exp_dir.rglob(RECORD_NAME)):
        try:
            ok.append(Loaded(schema.load(TrialRecord, p), str(p)))
        except RecordError as e:
            bad.append(Unreadable(str(p), p.parent.name, str(e)))
    return ok, bad


def _loads(s: Any) -> Any:
    """NNI stores metrics as JSON strings, sometimes JSON-encoded twice."""
    while isinstance(s, str):
        try:
            s = json.loads(s)
        except json.JSONDecodeError:
            break
    return s


def nni_db(exp_dir: Path) -> dict[str, dict]:
    """What NNI itself recorded per trial, from ``db/nni.sqlite`` (no server needed).

    ``{trial_id: {"status", "parameter_id", "parameters", "final", "final_parameter_id", "sequence_id"}}``;
    ``parameters`` is what NNI *says* the trial got (wrong under NNI 3.0's concurrency defect unless
    patched), ``final_parameter_id`` the parameter id carried by the trial's own final metric.
    """
    db = exp_dir / "db" / "nni.sqlite"
    if not db.is_file():
        return {}
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise RecordError(f"{db}: cannot be opened as NNI's database: {e}") from None
    try:
        trials: dict[str, dict] = {}
        for tid, event, data, seq in con.execute(
                "SELECT trialJobId, event, data, sequenceId FROM TrialJobEvent ORDER BY timestamp"):
            t = trials.setdefault(tid, {})
            t["status"] = event
            if seq is not None:
                t["sequence_id"] = seq
            d = _loads(data)
            if isinstance(d, dict) and "parameter_id" in d:
                t["parameter_id"] = d["parameter_id"]
                t["parameters"] = d.get("parameters")
        for tid, pid, mtype, data in con.execute(
                "SELECT trialJobId, parameterId, type, data FROM MetricData ORDER BY timestamp"):
            if mtype == "FINAL":
                t = trials.setdefault(tid, {})
                t["final"] = _loads(data)
                t["final_parameter_id"] = int(pid) if str(pid).lstrip("-").isdigit() else pid
        return trials
    except sqlite3.Error as e:
        raise RecordError(f"{db}: NNI's database is unreadable ({e}); a damaged or foreign file") from None
    finally:
        con.close()


def db_score(row: dict, metric: str = "default") -> float | None:
    """A trial's final ``metric`` as NNI's database holds it (a number, or the key of a dict)."""
    final = row.get("final")
    v = final.get(metric) if isinstance(final, dict) else (final if metric == "default" else None)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
        return None
    if isinstance(final, dict) and final.get("rejected"):
        return None
    return float(v)


_NNI_STATUS = {"SUCCEEDED": Status.SUCCEEDED, "FAILED": Status.FAILED, "SYS_CANCELED": Status.CANCELED,
               "USER_CANCELED": Status.CANCELED, "EARLY_STOPPED": Status.CANCELED}


def db_records(exp_dir: Path) -> list[Loaded]:
    """Trial records rebuilt from NNI's database, for trials whose own records are elsewhere (remote
    training services): the architecture, a joint search's recipe and a ladder's rung from the parameters
    NNI gave the trial (reliable once ``patch-nni`` is applied), read as the trial reads them; the metrics
    from its final result."""
    out = []
    db_path = str(exp_dir / "db" / "nni.sqlite")
    for tid, row in nni_db(exp_dir).items():
        params = row.get("parameters")
        if not isinstance(params, dict):
            continue
        try:
            arch_labels, recipe = split_joint(decode_parameters(
                {k: v for k, v in params.items() if k not in ("TRIAL_BUDGET", "LADDER")}))
            arch = validate_arch(arch_labels, source=f"NNI parameters of trial {tid}", fill_legacy=True)
            rung = convert(Rung, params["LADDER"], "LADDER") if "LADDER" in params else None
        except ValueError:
            continue
        final = row.get("final") if isinstance(row.get("final"), dict) else None
        metrics = {k: float(v) for k, v in (final or {}).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if "mflops" in metrics:
            metrics["mmacs"] = metrics.pop("mflops")
        status = _NNI_STATUS.get(row.get("status"), Status.RUNNING)
        if status == Status.SUCCEEDED and metrics.get("rejected"):
            status = Status.REJECTED
        if status == Status.SUCCEEDED and not all(k in metrics for k in ("default", "dice", "miou")):
            status = Status.FAILED
        rec = TrialRecord(status=status, arch=arch, summary=arch_summary(arch), trial_id=tid,
                          experiment_id=exp_dir.name, parameter_id=row.get("parameter_id"),
                          sequence_id=row.get("sequence_id"), raw_parameters=params, metrics=metrics or None,
                          rung=rung, recipe=recipe or None,
                          params=int(metrics["params"]) if "params" in metrics else None,
                          mmacs=metrics.get("mmacs"), source="nni-db")
        out.append(Loaded(rec, db_path))
    return out


def end_record(record: TrialRecord, path: str | Path, status: Status | None = None, error: str | None = None) -> None:
    """The one place a trial record gets its end: ``status`` and ``error`` when given, the finish time (a
    record that has one keeps it), written atomically. The trial ends its own record (``run_trial``); one
    killed before it could is ended for it by :func:`settle_unfinished`."""
    if status is not None:
        record.status = status
    if error is not None:
        record.error = error
    record.finished = record.finished or time.strftime("%Y-%m-%dT%H:%M:%S")
    schema.save(record, path)


def settle_unfinished(path: str | Path, status: Status, reason: str) -> bool:
    """Mark a record that still says RUNNING although its trial process has ended (killed before it could
    write its own end: NNI escalates a slow stop to SIGKILL; the kernel's OOM killer) as ``status``: the
    fork server's supervisor when its trial dies, :func:`settle_experiment` when the experiment ends.
    A record that already has an end keeps it. Returns whether the record was changed."""
    try:
        record = schema.load(TrialRecord, path)
    except (RecordError, OSError):
        return False  # an unreadable record is reported as such by export; nothing to settle
    if record.status != Status.RUNNING:
        return False
    end_record(record, path, status, reason)
    return True


def settle_experiment(exp_dir: Path) -> list[str]:
    """After an experiment has ended: records still RUNNING whose trial NNI saw end are given NNI's end
    (CANCELED for a stopped trial, FAILED for one that died). Returns the settled trial ids."""
    db = nni_db(exp_dir)
    settled = []
    for x in trial_records(exp_dir)[0]:
        if x.record.status != Status.RUNNING:
            continue
        tid = x.record.trial_id or Path(x.path).parent.name
        nni_status = (db.get(tid) or {}).get("status")
        status = _NNI_STATUS.get(nni_status)
        if status not in (Status.CANCELED, Status.FAILED):  # still running, or an end the record contradicts
            continue
        reason = (f"the trial process ended before writing its own end (NNI: {nni_status}; "
                  + ("stopped, then killed when it did not exit in time)" if status == Status.CANCELED
                     else "killed, e.g. out of memory?)"))
        if settle_unfinished(x.path, status, reason):
            settled.append(tid)
    return settled


def rank(metric: str) -> Callable[[Loaded], tuple]:
    """Export's order of trials, best last: the score; ties (tiny trials can score alike) go to the cheaper
    network, then to the earliest trial, whatever order the records came in (the report's Pareto front
    makes the same choice)."""
    def key(x: Loaded) -> tuple:
        mmacs = x.record.mmacs if x.record.mmacs is not None else math.inf
        return x.record.score(metric), -mmacs, -(x.record.sequence_id or 0)

    return key
