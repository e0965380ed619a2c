"""Pictures and tables of a search, from the trials' own records (no server needed).

``python -m nni_seg report <experiment-id>`` writes into ``<experiment dir>/report/`` (or ``--out``):
``dice_vs_trial.png`` (each trial's val Dice in start order, and the best so far), ``dice_vs_mmacs.png``
(Dice against MMACs per image, the Pareto front marked), ``best_arch.png`` (the best trial's architecture),
``trials.csv`` (every trial, failed and rejected ones with their reason) and ``pareto.csv`` / ``pareto.md``
(the Pareto architectures).
"""
from __future__ import annotations

import dataclasses

import csv
import io
import math
from pathlib import Path

from ..errors import RunFailed
from ..files import atomic_write_bytes
from ..plots import save_png
from ..experiment.records import Loaded, db_records, trial_records


REPORT_FILES = ("dice_vs_trial.png", "dice_vs_mmacs.png", "trials.csv", "pareto.csv", "pareto.md", "best_arch.png")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates, cheapest first.

    ``points`` are (cost, score): lower cost and higher score are better. A point is dominated when
    another has cost <= and score >= with at least one strict. Ties (same cost and score) keep the first.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _rows(loaded: list[Loaded]) -> list[dict]:
    rows = []
    # in NNI's order of trials (the export's "earliest" among equals; start times of parallel trials interleave)
    for r in sorted((x.record for x in loaded), key=lambda r: (r.sequence_id or 0, r.started or "", r.trial_id or "")):
        m = r.metrics or {}
        rows.append({
            "trial_id": r.trial_id, "sequence_id": r.sequence_id, "status": r.status.value,
            "dice": m.get("dice"), "miou": m.get("miou"), "mmacs": r.mmacs, "params": r.params,
            "latency_ms": r.latency_ms, "device": r.device, "summary": r.summary,
            "reason": r.reason or r.error, "arch": r.arch,
        })
    return rows


def _ok(row: dict) -> bool:
    return row["status"] == "SUCCEEDED" and isinstance(row["dice"], (int, float)) and not math.isnan(row["dice"]) \
        and isinstance(row["mmacs"], (int, float))


def _csv(rows: list[dict], keys: list[str]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def _save(fig, ax, path: Path, xlabel: str, title: str) -> Path:
    """Finish a Dice plot (labels, grid, legend) and save it."""
    ax.set(xlabel=xlabel, ylabel="val mean Dice", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return save_png(fig, path)


@dataclasses.dataclass
class Report:
    """What ``make_report`` wrote and found: its files, the trials, the Pareto front (rows, cheapest first)."""
    files: list[Path]
    trials: int
    succeeded: int
    pareto: list[dict]
    best_trial: str | None
    unreadable: list[str]


def make_report(exp_dir: Path, out: Path | None = None, title: str | None = None) -> Report:
    """Write the report files (PNGs, CSV, Markdown) into ``out`` (default ``<exp dir>/report``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loaded, unreadable = trial_records(exp_dir)
    if not loaded and not unreadable:
        loaded = db_records(exp_dir)
    if not loaded:
        raise RunFailed(f"no readable trial records in {exp_dir}" + (f" ({len(unreadable)} unreadable, first: "
                                                                     f"{unreadable[0].error})" if unreadable else ""))
    rows = _rows(loaded)
    ok = [r for r in rows if _ok(r)]
    out = out or exp_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    title = title or exp_dir.name
    files = []

    # best Dice vs trial
    fig, ax = plt.subplots(figsize=(6.4, 4))
    xs = [i + 1 for i, r in enumerate(rows) if _ok(r)]
    ax.scatter(xs, [r["dice"] for r in ok], s=18, label="trial (val Dice)")
    best, run = -math.inf, []
    for r in rows:
        if _ok(r):
            best = max(best, r["dice"])
        run.append(best if best > -math.inf else math.nan)
    ax.step(range(1, len(rows) + 1), run, where="post", color="C1", label="best so far")
    bad = [i + 1 for i, r in enumerate(rows) if not _ok(r)]
    if bad:
        ax.scatter(bad, [0] * len(bad), marker="x", color="C3", label="failed / rejected")
    files.append(_save(fig, ax, out / "dice_vs_trial.png", "trial (start order)", f"{title}: Dice vs trial"))

    # Dice vs FLOPs with the Pareto front
    front = [ok[i] for i in pareto_front([(r["mmacs"], r["dice"]) for r in ok])]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.scatter([r["mmacs"] for r in ok], [r["dice"] for r in ok], s=18, alpha=0.6, label="trial")
    if front:
        ax.plot([r["mmacs"] for r in front], [r["dice"] for r in front], "o-", color="C3", label="Pareto front")
    files.append(_save(fig, ax, out / "dice_vs_mmacs.png", "MMACs per image", f"{title}: Dice vs cost"))

    keys = ["trial_id", "sequence_id", "status", "dice", "miou", "mmacs", "params", "latency_ms", "device",
            "summary", "reason"]
    atomic_write_bytes(out / "trials.csv", _csv(rows, keys))
    atomic_write_bytes(out / "pareto.csv", _csv(front, keys[:-1]))
    md = [f"# Pareto architectures of {title}", "",
          f"{len(rows)} trials, {len(ok)} succeeded; front: best val Dice for its cost (MMACs per image).", "",
          "| trial | Dice | mIoU | MMACs | params | latency ms | architecture |", "|---|---|---|---|---|---|---|"]
    fmt = lambda v, f: "-" if not isinstance(v, (int, float)) else format(v, f)  # noqa: E731
    for r in front:
        md.append(f"| {r['trial_id']} | {fmt(r['dice'], '.4f')} | {fmt(r['miou'], '.4f')} | {fmt(r['mmacs'], '.1f')} "
                  f"| {r['params']} | {fmt(r['latency_ms'], '.2f')} | `{r['summary']}` |")
    atomic_write_bytes(out / "pareto.md", ("\n".join(md) + "\n").encode())
    files += [out / "trials.csv", out / "pareto.csv", out / "pareto.md"]
    if ok:  # the best trial's architecture, drawn
        from ..space.draw import draw

        best = front[-1]  # the front's best score; a tie goes to the cheaper, then the earlier trial, as export's
        files.append(draw(best["arch"], out / "best_arch.png", f"best trial {best['trial_id']}: val Dice "
                          f"{best['dice']:.3f}, {best['mmacs']:.0f} MMACs"))
    return Report(files=files, trials=len(rows), succeeded=len(ok), pareto=front,
                  best_trial=front[-1]["trial_id"] if ok else None, unreadable=[u.error for u in unreadable])
