"""Export the top architecture of an NNI experiment, from the trials' own records.

Works while the experiment runs and after ``nnictl stop`` (reads files, needs no server). When the
trials ran on other machines (NNI's remote training service) their records are not here, and the
export falls back to NNI's database (parameters + final metrics). Otherwise each
trial's record says which architecture it trained and with which NNI ``parameter_id``; the export is
cross-checked against NNI's database (the final metric's parameter id and value, and the parameters
NNI says it gave that trial) and every disagreement is reported.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from .records import atomic_write_json, experiment_dir, load_records, nni_db

TOP_NAME = "top_arch.json"


def cross_check(records: list[dict], db: dict[str, dict]) -> dict:
    """Compare each trial's record with NNI's database; returns counts and the mismatching trials."""
    checked, mismatches = 0, []
    for rec in records:
        row = db.get(rec.get("trial_id"))
        if row is None:
            continue
        checked += 1
        problems = []
        if "final_parameter_id" in row and row["final_parameter_id"] != rec.get("parameter_id"):
            problems.append(f"final metric parameter_id {row['final_parameter_id']} != record {rec.get('parameter_id')}")
        final = row.get("final")
        if isinstance(final, dict) and rec.get("metrics") and not _close(final.get("default"), rec["metrics"]["default"]):
            problems.append(f"final Dice {final.get('default')} != record {rec['metrics']['default']}")
        if "parameters" in row and rec.get("raw_parameters") is not None and row["parameters"] != rec["raw_parameters"]:
            problems.append("NNI shows other parameters for this trial than it trained")
        if problems:
            mismatches.append({"trial_id": rec["trial_id"], "problems": problems})
    return {"trials_checked": checked, "mismatches": mismatches}


def _close(a, b) -> bool:
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def top_architecture(exp_dir: Path, metric: str = "default") -> dict:
    """The best SUCCEEDED trial by ``metric`` (higher is better), with the cross-check attached."""
    records, source = load_records(exp_dir)
    done = [r for r in records if r.get("status") == "SUCCEEDED" and isinstance(r.get("metrics", {}).get(metric), (int, float))
            and not math.isnan(r["metrics"][metric])]
    if not done:
        states = {}
        for r in records:
            states[r.get("status")] = states.get(r.get("status"), 0) + 1
        raise LookupError(f"no succeeded trial with metric {metric!r} in {exp_dir} (trial records: {states or 'none'})")
    best = max(done, key=lambda r: r["metrics"][metric])
    if source == "trial records":
        check = cross_check(records, nni_db(exp_dir))
    else:  # one source only: nothing to cross-check against
        check = {"trials_checked": 0, "mismatches": [], "note": "exported from NNI's database: no trial records here"}
    return {
        "experiment_id": best.get("experiment_id"),
        "trial_id": best.get("trial_id"),
        "parameter_id": best.get("parameter_id"),
        "sequence_id": best.get("sequence_id"),
        "metric": metric,
        "arch": best["arch"],
        "summary": best.get("summary"),
        "metrics": best["metrics"],
        "dataset": best.get("dataset"),
        "data": best.get("data"),
        "train": best.get("train"),
        "trials_succeeded": len(done),
        "trials_recorded": len(records),
        "source": source,
        "nni_cross_check": check,
        "record": best.get("_path"),
    }


def export(exp_id: str, out: str | None = None, exp_dirs: list[str] | None = None, metric: str = "default") -> tuple[dict, Path]:
    d = experiment_dir(exp_id, exp_dirs)
    top = top_architecture(d, metric)
    path = atomic_write_json(Path(out) if out else d / TOP_NAME, top)
    return top, path


def one_line(top: dict) -> str:
    m = top["metrics"]
    return (f"top architecture of {top['experiment_id']}: trial {top['trial_id']} (parameter {top['parameter_id']}) "
            f"dice={m['dice']:.4f} miou={m['miou']:.4f} params={m['params']} mflops={m['mflops']} | {top['summary']}")


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m nni_seg export", description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment_id")
    ap.add_argument("--out", help=f"output JSON (default: <experiment dir>/{TOP_NAME})")
    ap.add_argument("--exp-dir", action="append", help="experimentWorkingDirectory to search (repeatable)")
    ap.add_argument("--metric", default="default", help="final-result key to maximise (default: default = Dice)")
    ap.add_argument("--print-json", action="store_true", help="also print the exported architecture JSON")
    args = ap.parse_args(argv)
    try:
        top, path = export(args.experiment_id, args.out, args.exp_dir, args.metric)
    except (FileNotFoundError, LookupError) as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    bad = top["nni_cross_check"]["mismatches"]
    if bad:
        print(f"warning: NNI's records disagree with {len(bad)} trial record(s) (exported from the trials' "
              f"own records; run `python -m nni_seg patch-nni`): {bad[:3]}", file=sys.stderr)
    if args.print_json:
        print(json.dumps(top["arch"], indent=2))
    print(one_line(top))
    print(f"written: {path}")
    return 0
