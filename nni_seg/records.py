"""Trial records (``nni_seg_record.json``, written by each trial into its own output dir) and
reading NNI's experiment folders without a running server."""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Iterator

RECORD_NAME = "nni_seg_record.json"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temp file name beside ``path``; on success it is renamed to ``path`` (atomic on one
    filesystem), on error removed. A reader never sees a half-written file; an old file survives a failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, default=str) + "\n")
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)


def nni_home() -> Path:
    return Path(os.environ.get("NNI_HOME_DIR", Path.home() / "nni-experiments"))


def registered_experiments() -> dict[str, dict]:
    """nnictl's registry of this $HOME's experiments: id -> {logDir, port, status, ...}."""
    reg = nni_home() / ".experiment"
    if not reg.is_file():
        return {}
    try:
        return json.loads(reg.read_text())
    except json.JSONDecodeError:
        return {}


def experiment_dir(exp_id: str, search: list[str | os.PathLike] | None = None) -> Path:
    """The folder of experiment ``exp_id``: from ``search`` dirs, nnictl's registry, or ~/nni-experiments."""
    candidates = [Path(p) for p in (search or [])]
    info = registered_experiments().get(exp_id)
    if info and info.get("logDir"):
        candidates.append(Path(info["logDir"]))
    candidates.append(nni_home())
    for d in (base / exp_id for base in candidates):
        if (d / "db").is_dir() or (d / "environments").is_dir():
            return d
    known = ", ".join(sorted(registered_experiments())) or "none"
    raise FileNotFoundError(f"experiment {exp_id!r} not found (looked in {', '.join(map(str, candidates))}); "
                            f"known experiments: {known}")


def trial_records(exp_dir: Path) -> list[dict]:
    """Every trial record under the experiment folder (each trial's own account of what it trained)."""
    out = []
    for p in sorted(exp_dir.rglob(RECORD_NAME)):
        try:
            rec = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a record being written is replaced atomically; anything else is not ours
        rec["_path"] = str(p)
        out.append(rec)
    return out


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

    Returns ``{trial_id: {"status", "parameter_id", "parameters", "final", "final_parameter_id", "sequence_id"}}``;
    ``parameters`` is what NNI *says* the trial got (wrong under NNI 3.0's concurrency bug unless patched),
    ``final_parameter_id`` is the parameter id carried by the trial's own final metric.
    """
    db = exp_dir / "db" / "nni.sqlite"
    if not db.is_file():
        return {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
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
    finally:
        con.close()


def db_records(exp_dir: Path) -> list[dict]:
    """Trial records rebuilt from NNI's database, for trials whose own records are on other machines
    (remote or cluster training services): architecture from the parameters NNI gave the trial
    (reliable once ``patch-nni`` is applied), metrics from its final result."""
    from .space import arch_summary, decode_parameters, validate_arch

    out = []
    for tid, row in nni_db(exp_dir).items():
        params = row.get("parameters")
        if not isinstance(params, dict):
            continue
        try:
            arch = validate_arch(decode_parameters(params), source=f"NNI parameters of trial {tid}")
        except (ValueError, KeyError):
            continue
        final = row.get("final") if isinstance(row.get("final"), dict) else None
        status = row.get("status")
        if status == "SUCCEEDED" and final and final.get("rejected"):
            status = "REJECTED"
        out.append({"trial_id": tid, "experiment_id": exp_dir.name, "status": status, "parameter_id": row.get("parameter_id"),
                    "sequence_id": row.get("sequence_id"), "arch": arch, "summary": arch_summary(arch),
                    "raw_parameters": params, "metrics": final, "params": (final or {}).get("params"),
                    "mflops": (final or {}).get("mflops"), "source": "nni-db", "_path": str(exp_dir / "db" / "nni.sqlite")})
    return out


def load_records(exp_dir: Path) -> tuple[list[dict], str]:
    """(records, source): the trials' own records when this machine has them, else NNI's database."""
    records = trial_records(exp_dir)
    if records:
        return records, "trial records"
    return db_records(exp_dir), "NNI database (no trial records here: remote training service?)"
