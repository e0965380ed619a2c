"""Where a trial's time goes outside training: before/after commits side by side, in one run.

For each version (a git revision checked out into a temporary worktree, and the working tree), runs the
default job (``config.yml``) and the CamVid CPU search (``experiments/camvid/search_cpu.yml``, its trial
count capped) through ``python -m nni_seg run`` with a fresh HOME, then reads per trial NNI's own
RUNNING -> SUCCEEDED time (``db/nni.sqlite``) and the trial's record: training seconds, and (records that
have them) the seconds of each phase (process start, settings, imports, data, build, cost, train = the
epochs with their evaluations, report). Prints a Markdown table per version and the ratio of medians.

    python -m bench.trial_overhead --before 628db5c [--trials 8] [--camvid-trials 6]

Needs data/camvid_360x480.npz for the CamVid rows (python -m nni_seg pack-data ...). Run it on a quiet
machine: two trials share the 2 cores, and anything else running distorts the seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nni_intervals(exp_dir: Path) -> dict[str, float]:
    """trial id -> seconds from NNI's RUNNING event to its SUCCEEDED event."""
    con = sqlite3.connect(f"file:{exp_dir / 'db' / 'nni.sqlite'}?mode=ro", uri=True)
    try:
        ev: dict[str, dict[str, float]] = {}
        for tid, event, ts in con.execute("SELECT trialJobId, event, timestamp FROM TrialJobEvent"):
            ev.setdefault(tid, {})[event] = ts / 1000.0
    finally:
        con.close()
    return {t: e["SUCCEEDED"] - e["RUNNING"] for t, e in ev.items() if "RUNNING" in e and "SUCCEEDED" in e}


def run_version(repo: Path, config: str, trials: int, work: Path, python: str) -> tuple[list[dict], float]:
    """Run ``config`` of the checkout ``repo`` (its own code) and return one row per succeeded trial."""
    cfg = yaml.safe_load((repo / config).read_text())
    base = (repo / config).parent
    cfg["maxTrialNumber"] = trials
    for key in ("searchSpaceFile",):
        cfg[key] = str((base / cfg[key]).resolve())
    cfg["trialCodeDirectory"] = str((base / cfg["trialCodeDirectory"]).resolve())
    cfg["experimentWorkingDirectory"] = str(work / "exps")
    if "codeDirectory" in cfg.get("tuner", {}):
        cfg["tuner"]["codeDirectory"] = str(repo)
    path = work / "config.yml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, HOME=str(work), PYTHONPATH=str(repo), PYTHONUNBUFFERED="1")
    env["PATH"] = os.pathsep.join([str(Path(python).parent), env["PATH"]])
    t0 = time.time()
    proc = subprocess.run([python, "-m", "nni_seg", "run", str(path), "--port", str(free_port()), "--timeout", "3600"],
                          cwd=repo, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{repo} {config}: run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    exp_dir = next(p for p in (work / "exps").iterdir() if (p / "db").is_dir())
    spans = nni_intervals(exp_dir)
    rows = []
    for rec_path in exp_dir.rglob("nni_seg_record.json"):
        rec = json.loads(rec_path.read_text())
        tid = rec.get("trial_id")
        if rec.get("status") != "SUCCEEDED" or tid not in spans:
            continue
        timings = rec.get("timings") or {}
        fit_total = timings.get("train")  # epochs with their evaluations (new records)
        train = rec.get("train_seconds") or 0.0
        rows.append({"trial": tid, "nni_seconds": spans[tid], "train_seconds": train, "fit_seconds": fit_total,
                     "outside_training": spans[tid] - train,
                     "outside_training_and_eval": spans[tid] - fit_total if fit_total is not None else None,
                     "timings": timings})
    return rows, wall


def summary(rows: list[dict]) -> dict:
    def med(key):
        vals = [r[key] for r in rows if r[key] is not None]
        return statistics.median(vals) if vals else None
    phases = {}
    for r in rows:
        for k, v in r["timings"].items():
            phases.setdefault(k, []).append(v)
    return {"trials": len(rows), "nni_median": med("nni_seconds"), "outside_training_median": med("outside_training"),
            "outside_training_and_eval_median": med("outside_training_and_eval"),
            "phases_median": {k: statistics.median(v) for k, v in phases.items()}}


def fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="git revision to compare with (checked out in a temp worktree)")
    ap.add_argument("--trials", type=int, default=8, help="trials of the default job")
    ap.add_argument("--camvid-trials", type=int, default=6, help="trials of the CamVid search (0: skip it)")
    ap.add_argument("--out", help="JSON with every trial's numbers")
    args = ap.parse_args()
    python = sys.executable
    jobs = [("default job", "config.yml", args.trials)]
    if args.camvid_trials and (ROOT / "data" / "camvid_360x480.npz").is_file():
        jobs.append(("CamVid CPU search", "experiments/camvid/search_cpu.yml", args.camvid_trials))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before], check=True,
                       capture_output=True)
        try:
            (before / "data").symlink_to(ROOT / "data")
            for name, config, trials in jobs:
                for label, repo in (("before", before), ("after", ROOT)):
                    work = Path(tmp) / f"{label}-{config.replace('/', '_')}"
                    work.mkdir()
                    rows, wall = run_version(repo, config, trials, work, python)
                    results[(name, label)] = {"rows": rows, "wall": wall, **summary(rows)}
                    print(f"{name} {label}: {len(rows)} trials, {wall:.0f} s", file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], capture_output=True)
    lines = [f"Before: {args.before}; after: the working tree. Median seconds per succeeded trial (two trials at "
             f"once on 2 CPU cores); 'outside training' = NNI's RUNNING -> SUCCEEDED minus the record's training "
             f"seconds (its evaluations included); 'outside training and evaluation' needs the record's phase "
             f"times (after only).", "",
             "| job | version | trials | job wall s | NNI RUNNING->SUCCEEDED | outside training | outside training "
             "and evaluation |", "|---|---|---|---|---|---|---|"]
    for (name, label), r in results.items():
        lines.append(f"| {name} | {label} | {r['trials']} | {r['wall']:.0f} | {fmt(r['nni_median'])} | "
                     f"{fmt(r['outside_training_median'])} | {fmt(r['outside_training_and_eval_median'])} |")
    for name, _, _ in jobs:
        b, a = results[(name, "before")], results[(name, "after")]
        lines.append(f"\n{name}: outside training {fmt(b['outside_training_median'])} -> "
                     f"{fmt(a['outside_training_median'])} s "
                     f"(x{a['outside_training_median'] / b['outside_training_median']:.2f}); "
                     f"job wall {b['wall']:.0f} -> {a['wall']:.0f} s. After, median seconds per phase: "
                     + ", ".join(f"{k} {v:.2f}" for k, v in a["phases_median"].items()))
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps({f"{k[0]} / {k[1]}": v for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
