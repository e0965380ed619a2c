"""Search, then retrain and evaluate: the whole path from data to a report, in one command.

``python -m nni_seg recipe --search-config experiments/camvid/search_gpu.yml --dataset packed
--data-root data/camvid_360x480.npz --epochs 150 --out runs/camvid`` runs

1. the nnictl search of ``--search-config`` (its own proxy budget: reduced size and epochs, an
   assessor stopping weak trials early, a FLOPs budget), then exports the top architecture;
2. a report of the search (Dice vs trial, Dice vs FLOPs with the Pareto front);
3. the winner's full retraining with the data / training flags given here, and the seed's fixed
   network with exactly the same schedule (``--no-baseline`` skips it);
4. val evaluation of both: per-class IoU and Dice, confusion matrices;
5. ``report.md`` + ``results.json`` in ``--out`` with the wall time of each phase.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import add_dataclass_args, from_args
from .data import DataConfig
from .records import atomic_write_bytes, atomic_write_json
from .report import make_report, save_png
from .train import TrainConfig


@dataclass
class RecipeConfig:
    search_config: str = "experiments/camvid/search_cpu.yml"  # nnictl config of the search (proxy budget)
    out: str = "runs/recipe"
    baseline: bool = True  # also retrain the seed's fixed network with the same schedule
    search_timeout: float = 3600  # seconds
    port: int | None = None  # web UI port of the search (default: 8080 or a free one)


def confusion_png(confusion: list[list[float]], names: list[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix (true class rows, predicted columns) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cm = np.asarray(confusion, dtype=float)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), names, rotation=60, ha="right")
    ax.set_yticks(range(n), names)
    for i in range(n):
        for j in range(n):
            if norm[i, j] >= 0.01:
                ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return save_png(fig, path)


def _row(name: str, res: dict, meta: dict, seconds: float) -> dict:
    return {"network": name, "summary": meta["summary"], "params": meta["params"], "mflops": meta["mflops"],
            "val_miou": res["miou"], "val_dice": res["dice"], "pixel_acc": res["pixel_acc"],
            "iou_per_class": res["iou_per_class"], "dice_per_class": res["dice_per_class"],
            "best_epoch": meta.get("epoch"), "retrain_seconds": round(seconds, 1)}


def run(rc: RecipeConfig, data_cfg: DataConfig, train_cfg: TrainConfig, log=print) -> dict:
    from . import deploy, launch
    from .data import load_dataset
    from .records import experiment_dir

    out = Path(rc.out)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    t_all = time.perf_counter()

    # 1. search
    t = time.perf_counter()
    top_path = out / "top_arch.json"
    args = [rc.search_config, "--out", str(top_path), "--timeout", str(rc.search_timeout)]
    if rc.port:
        args += ["--port", str(rc.port)]
    if launch.main(args) != 0:
        raise RuntimeError(f"the search of {rc.search_config} failed (see above); nothing retrained")
    times["search"] = time.perf_counter() - t
    top = json.loads(top_path.read_text())
    exp_dir = experiment_dir(top["experiment_id"])

    # 2. search report
    t = time.perf_counter()
    search_report = make_report(exp_dir, out / "search", title=f"search {top['experiment_id']}")
    times["search_report"] = time.perf_counter() - t

    # 3. retrain winner (+ seed) with the same schedule; 4. evaluate (the data loaded once for all four)
    data = load_dataset(data_cfg)
    rows, results = [], {}
    for name, arch in (("searched", str(top_path)), ("seed", "seed")):
        if name == "seed" and not rc.baseline:
            continue
        log(f"--- retrain {name} ---")
        t = time.perf_counter()
        deploy.retrain(arch, data_cfg, train_cfg, out / name, data=data)
        times[f"retrain_{name}"] = time.perf_counter() - t
        t = time.perf_counter()
        res = deploy.evaluate(str(out / name), None, "val", train_cfg.device, confusion=True, data=data)
        times[f"eval_{name}"] = time.perf_counter() - t
        meta = json.loads((out / name / "meta.json").read_text())
        confusion_png(res["confusion"], res["class_names"], out / f"confusion_{name}.png",
                      f"{name}: val confusion (% of true class)")
        rows.append(_row(name, res, meta, times[f"retrain_{name}"]))
        results[name] = res
    times["total"] = time.perf_counter() - t_all

    summary = {"experiment_id": top["experiment_id"], "search_config": rc.search_config,
               "search_trials": search_report["trials"], "search_succeeded": search_report["succeeded"],
               "winner_search_dice": top["metrics"]["dice"], "data": asdict(data_cfg), "train": asdict(train_cfg),
               "seconds": {k: round(v, 1) for k, v in times.items()}, "networks": rows,
               "class_names": results["searched"]["class_names"], "device": _device(train_cfg.device)}
    atomic_write_json(out / "results.json", summary)
    atomic_write_bytes(out / "report.md", markdown(summary).encode())
    return summary


def _device(name: str) -> str:
    import torch

    from .train import resolve_device

    dev = resolve_device(name)
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def markdown(s: dict) -> str:
    sec = s["seconds"]
    lines = [f"# Recipe report: search {s['experiment_id']} + retrain", "",
             f"Device: {s['device']}. Search config: `{s['search_config']}` ({s['search_trials']} trials, "
             f"{s['search_succeeded']} succeeded). Retrain: {s['train']['epochs']} epochs, batch "
             f"{s['train']['batch_size']}, loss {s['train']['loss']}, class weights {s['train']['class_weights']}, "
             f"data {s['data']['dataset']} at {s['data']['size'] or 'its own size'}.", "",
             "## Wall time (s)", "", "| phase | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sec.items()]
    lines += ["", "## Val results (same schedule for both)", "",
              "| network | val mIoU | val mean Dice | params | MMACs / image | best epoch |", "|---|---|---|---|---|---|"]
    for r in s["networks"]:
        lines.append(f"| {r['network']} | {100 * r['val_miou']:.1f} | {100 * r['val_dice']:.1f} | {r['params']:,} "
                     f"| {r['mflops']:.0f} | {r['best_epoch']} |")
    lines += ["", "## Per-class val IoU (%)", "", "| class | " + " | ".join(r["network"] for r in s["networks"]) + " |",
              "|---|" + "---|" * len(s["networks"])]
    for i, name in enumerate(s["class_names"]):
        vals = [r["iou_per_class"][i] for r in s["networks"]]
        lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{100 * v:.1f}" for v in vals) + " |")
    lines += ["", "Architectures:", ""] + [f"- {r['network']}: `{r['summary']}`" for r in s["networks"]]
    lines += ["", "Pictures: `search/dice_vs_trial.png`, `search/dice_vs_flops.png`, "
              + ", ".join(f"`confusion_{r['network']}.png`" for r in s["networks"]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nni_seg recipe", description=__doc__.split("\n\n")[0])
    add_dataclass_args(ap, RecipeConfig, "recipe")
    add_dataclass_args(ap, DataConfig, "retrain data")
    add_dataclass_args(ap, TrainConfig, "retrain")
    args = ap.parse_args(argv)
    rc, data_cfg, train_cfg = from_args(RecipeConfig, args), from_args(DataConfig, args), from_args(TrainConfig, args)
    if not Path(rc.search_config).is_file():
        print(f"error: search config not found: {rc.search_config}", file=sys.stderr)
        return 2
    try:
        s = run(rc, data_cfg, train_cfg)
    except (RuntimeError, ValueError, FileNotFoundError, LookupError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 1
    print(markdown(s))
    print(f"written: {Path(rc.out) / 'report.md'}")
    return 0
