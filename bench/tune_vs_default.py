"""Does tuning the winner's training pay? Default vs tuned settings, same epochs, several runs each.

Runs ``python -m nni_seg tune`` (the library call behind it) on a searched architecture with a tune YAML
(default: ``experiments/camvid/tune_cpu.yml``: 15 TPE trials of 6 epochs at 48x64, selected on drive 0006R0;
the results in docs/results.md ran with 12 trials selected on val), then retrains the architecture with the
YAML's ``train`` settings (the CPU recipe's: 96x128, 12 epochs, CE + soft Dice, median-frequency weights) and
with the tuned settings (the same epochs), ``--runs`` times each (training
seeds 0..runs-1), and scores every run on val at the labels' native resolution and at the training size.

    python -m bench.tune_vs_default --arch runs/search/top_arch.json --out runs/tune_vs_default
    python -m bench.tune_vs_default --out runs/tune_vs_default --table      # markdown from results.json
    python -m bench.tune_vs_default --arch ... --tune-result runs/tune/tune_result.json --out ...  # no new tune

Resumable: the tune is not rerun when its ``tune_result.json`` exists, nor a finished training.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from search_vs_baselines import ckpt_folder, retrain_scored, spread  # noqa: E402 (after the path)


def tune(arch: str, config: Path, out: Path, port: int | None, given: Path | None = None) -> dict:
    """The tune experiment's result (run once; read back afterwards), or that of an earlier tune (``given``)."""
    from nni_seg.config import schema
    from nni_seg.config._typed import to_json
    from nni_seg.workflow.tune import load_tune_config, run_tune

    def read(path: Path) -> dict:  # a typed record (older files without a format version load too)
        return to_json(schema.load(schema.TuneResult, path))

    if given is not None:
        info = read(given)
        seconds = given.parent / "seconds.txt"
        return info | {"wall_seconds": float(seconds.read_text()) if seconds.is_file() else None, "from": str(given)}
    result_path = out / "tune" / "tune_result.json"
    if not result_path.is_file():
        t0 = time.time()
        t_cfg, _, _, _ = load_tune_config(config)
        changes = {"out": str(out / "tune")} | ({"port": port} if port else {})
        run_tune(arch, config, tune=dataclasses.replace(t_cfg, **changes))
        (out / "tune" / "seconds.txt").write_text(f"{time.time() - t0:.1f}\n")
    info = read(result_path)
    info["wall_seconds"] = float((out / "tune" / "seconds.txt").read_text())
    return info


def train_and_score(name: str, arch: dict, train, run: int, out: Path, data_cfg, data) -> dict:
    return {"settings": name, "run": run, **retrain_scored(ckpt_folder(out, name, run), arch, data_cfg,
                                                           dataclasses.replace(train, seed=run, threads=2), data)}


def table(results: dict) -> str:
    rows = results["trainings"]
    size = "x".join(map(str, rows[0]["train_size"])) if rows else "?"
    native = rows[0]["resolution"] if rows else "?"
    lines = [f"| training settings | runs | val mIoU, {native} | val mean Dice, native | val mIoU at {size} | "
             "retrain s |", "|---|---|---|---|---|---|"]
    for name in ("default", "tuned"):
        rs = [r for r in rows if r["settings"] == name]
        if rs:
            lines.append(f"| {name} | {len(rs)} | {spread([r['native']['miou'] for r in rs])} | "
                         f"{spread([r['native']['dice'] for r in rs])} | "
                         f"{spread([r['at_train_size']['miou'] for r in rs])} | "
                         f"{statistics.mean(r['retrain_seconds'] for r in rs):.0f} |")
    t = results["tune"]
    base = f"{t['base_score']:.4f}" if t.get("base_score") is not None else "not run in that tune"
    wall = f"{t['wall_seconds']:.0f} s" if t.get("wall_seconds") else "?"
    lines += ["", f"Tuned values (tune experiment {t['experiment_id']}, best trial {t['trial_id']}, its val Dice "
                  f"{t['score']:.4f} at the tune trials' size and epochs, the base settings' {base}; tune wall time "
                  f"{wall}): " + ", ".join(f"{k}={v}" for k, v in t["tuned"].items()),
              "Default values: " + ", ".join(f"{k}={results['default'][k]}" for k in t["tuned"])]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", help="the searched architecture (top_arch.json, an arch JSON, seed or unet)")
    ap.add_argument("--config", default=str(ROOT / "experiments" / "camvid" / "tune_cpu.yml"), help="tune YAML")
    ap.add_argument("--size", type=int, nargs=2, default=[96, 128], help="retrain size (the tune trials' is the "
                                                                         "YAML's)")
    ap.add_argument("--runs", type=int, default=2, help="retrains per settings (training seeds 0..runs-1)")
    ap.add_argument("--out", default="runs/tune_vs_default")
    ap.add_argument("--port", type=int, help="web UI port of the tune experiment (default: the YAML's)")
    ap.add_argument("--tune-result", help="the tune_result.json of an earlier tune: retrain its settings, run no tune")
    ap.add_argument("--table", action="store_true", help="only print the table of results.json")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    if args.table:
        print(table(json.loads((out / "results.json").read_text())))
        return 0
    if not args.arch:
        ap.error("--arch is required (unless --table)")
    out.mkdir(parents=True, exist_ok=True)
    from nni_seg.config._typed import to_json
    from nni_seg.data import load_dataset
    from nni_seg.files import atomic_write_json
    from nni_seg.space.arch import load_arch
    from nni_seg.workflow.tune import load_tune_config

    arch = load_arch(args.arch)
    _, data_cfg, default, _ = load_tune_config(args.config)
    data_cfg = dataclasses.replace(data_cfg, size=tuple(args.size))
    info = tune(args.arch, Path(args.config), out, args.port, Path(args.tune_result) if args.tune_result else None)
    tuned = dataclasses.replace(default, **info["tuned"])  # the retrain's epochs: tuned_train.yml keeps them too
    if tuned == default:  # the tune kept the base settings: nothing to compare
        print(f"the tune kept the base settings (best trial {info['trial_id']}); no retrain needed")
        return 0
    data = load_dataset(data_cfg, native=True)
    trainings = []
    for run in range(args.runs):  # alternate, so a drift in machine load touches both alike
        for name, settings in (("default", default), ("tuned", tuned)):
            trainings.append(train_and_score(name, arch, settings, run, out, data_cfg, data))
            atomic_write_json(out / "results.json", {"arch_source": args.arch, "arch": arch, "data": to_json(data_cfg),
                                                     "default": to_json(default), "tuned": to_json(tuned),
                                                     "tune": info, "trainings": trainings})
    print(table(json.loads((out / "results.json").read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
