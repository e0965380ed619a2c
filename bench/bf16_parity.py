"""Does the CPU's bf16 path cost accuracy? The U-Net and one searched net retrained on CamVid with the CPU
recipe's settings (96x128, 12 epochs, batch 4, peak lr 4.7e-3, weight decay 5e-5, no random scale, CE +
soft Dice, median-frequency weights; ``experiments/camvid/run_cpu.sh``) in fp32 NCHW (``--no-amp
--no-channels-last``) and in bf16 autocast + channels-last, ``--runs`` trainings each (training seeds 0,
1, ...), scored on val at the labels' native 360x480. Also the wall time of each training and evaluation.

    python -m bench.bf16_parity --out runs/bf16_parity            # trains what is missing, then the table
    python -m bench.bf16_parity --out runs/bf16_parity --table    # the table from results.json only

Resumable: a training whose entry is in ``<out>/results.json`` is not redone.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

from nni_seg.space.arch import unet_arch
from nni_seg.data import load_dataset
from nni_seg.deploy import evaluate, retrain
from nni_seg.config.settings import DataSettings, TrainSettings

ROOT = Path(__file__).resolve().parents[1]
# the seed-1 winner of experiments/camvid/tpe_single_op_cpu.yml (bench/results/search_vs_baselines/camvid_results.json)
SEARCHED = ("tpe_old", 1)
RECIPE = dict(epochs=12, batch_size=4, lr=4.7e-3, weight_decay=5e-5, scale_min=1.0, scale_max=1.0, loss="ce+dice",
              class_weights="median_freq", device="cpu", threads=2)
MODES = {"fp32": dict(amp=False, channels_last=False), "bf16": dict(amp=True, channels_last=True)}


def searched_arch() -> dict:
    res = json.loads((ROOT / "bench/results/search_vs_baselines/camvid_results.json").read_text())
    return next(s["arch"] for s in res["searches"] if (s["variant"], s["seed"]) == SEARCHED)


def table(results: list[dict]) -> str:
    lines = ["| network | path | val mIoU native, each run | mean | train s/run | evaluate s/run |",
             "|---|---|---|---|---|---|"]
    for net in dict.fromkeys(r["network"] for r in results):
        for mode in MODES:
            rs = [r for r in results if (r["network"], r["mode"]) == (net, mode)]
            if rs:
                mious = [100 * r["miou"] for r in rs]
                lines.append(f"| {net} | {mode} ({rs[0]['compute']}) | {', '.join(f'{m:.1f}' for m in mious)} | "
                             f"{statistics.mean(mious):.1f} | {statistics.mean(r['train_seconds'] for r in rs):.0f} | "
                             f"{statistics.mean(r['eval_seconds'] for r in rs):.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/bf16_parity")
    ap.add_argument("--data-root", default="data/camvid_360x480.npz", help="packed CamVid (nni_seg pack-data)")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.json"
    results = json.loads(res_path.read_text()) if res_path.exists() else []
    if not args.table:
        data_cfg = DataSettings(dataset="packed", data_root=args.data_root, size=(96, 128))
        data = load_dataset(data_cfg, native=True)
        nets = {"unet": unet_arch(), f"{SEARCHED[0]}_seed{SEARCHED[1]}": searched_arch()}
        for run in range(args.runs):  # run-major: a stopped bench still has every cell once
            for net, arch in nets.items():
                for mode, flags in MODES.items():
                    if any((r["network"], r["mode"], r["run"]) == (net, mode, run) for r in results):
                        continue
                    cfg = TrainSettings(**RECIPE, **flags, seed=run)
                    folder = out / f"{net}_{mode}_{run}"
                    t0 = time.perf_counter()
                    meta = retrain(arch, data_cfg, cfg, folder, force=True, data=data).meta
                    t1 = time.perf_counter()
                    rep = evaluate(folder, split="val", device="cpu", native=True, data=data)
                    t2 = time.perf_counter()
                    results.append({"network": net, "mode": mode, "run": run, "compute": meta.compute,
                                    "miou": rep.scores.miou, "dice": rep.scores.dice,
                                    "iou_per_class": rep.scores.iou_per_class, "mmacs": meta.mmacs,
                                    "train_seconds": round(t1 - t0, 1), "eval_seconds": round(t2 - t1, 2),
                                    "settings": dataclasses.asdict(cfg)})
                    res_path.write_text(json.dumps(results, indent=1))
                    print(f"{net} {mode} run {run}: val mIoU {100 * rep.scores.miou:.1f} "
                          f"({t1 - t0:.0f} s train)", flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
