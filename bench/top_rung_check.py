"""Does the ladder's top rung rank networks as the retrain does? Networks whose CamVid val retrain scores are
known (bench/results/joint_search), trained as a top-rung trial is (train minus drive 0006R0, scored on
0006R0's mean Dice, the trial's seed + repeat), at the top rung's fidelity (12 epochs at 72x96) and at the
retrain's (12 epochs at 96x128); then at the retrain's fidelity with another training drive held out instead:
0016E5 (the drive of CamVid val: 204 training frames) and 0001TP (62).

Each training is a standalone trial (``python -m nni_seg.trial``) whose record is kept in
bench/results/joint_search/top_rung_check/<name>-<size>[-<drive>]-s<seed>/; a training with a record is not
redone.
Two trainings run at a time, one core each, as a ladder's trials do.

    python -m bench.top_rung_check                 # the trainings, then the table
    python -m bench.top_rung_check --summary       # the table only
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nni_seg.config import schema
from nni_seg.config.schema import RECORD_NAME, TrialRecord

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "joint_search"
OUT = RESULTS / "top_rung_check"
NET = RESULTS / "random_cw_s2" / "top_arch.json"  # random_cw seed 2's network: +2.3 over the U-Net at the retrain
FIXED = ["--batch-size", "4", "--loss", "ce+dice", "--class-weights", "median_freq", "--scale-min", "1",
         "--scale-max", "1", "--epochs", "12"]

# name -> (architecture, the arm whose two val retrains measured it: its lr and weight decay train it here)
NETWORKS = {
    "unet": ("unet", "joint_inc_s0"),
    "unet_tuned": ("unet", "tune_cw_s2"),  # tune_cw seed 2's recipe
    "net_tuned": (str(NET), "random_cw_tuned_s2"),  # the same recipe
    "net_found": (str(NET), "random_cw_s2"),
    # joint_wide seed 1's winner: it beat the U-Net at the top rung (0006R0, 72x96), then lost on val
    "wide_s1": (str(RESULTS / "joint_wide_s1" / "top_arch.json"), "joint_wide_s1"),
}
SIZES = {"72x96": ["72", "96"], "96x128": ["96", "128"]}
HOLDOUT = "0006R0"  # the searches' selection drive
DRIVES = ("0016E5", "0001TP")  # the other training drives, each held out in turn at the retrain's fidelity
CHECKED = ("unet", "unet_tuned", "net_tuned", "net_found")  # at both fidelities on 0006R0
PLAN = ([(n, "72x96", HOLDOUT, s) for s in (0, 1) for n in CHECKED] + [(n, "96x128", HOLDOUT, 0) for n in CHECKED]
        + [(n, "96x128", d, 0) for d in DRIVES for n in ("unet", "net_tuned")]
        + [("wide_s1", "96x128", d, 0) for d in (HOLDOUT, *DRIVES)])


def folder(name: str, size: str, holdout: str, seed: int) -> Path:
    return OUT / (f"{name}-{size}-s{seed}" if holdout == HOLDOUT else f"{name}-{size}-{holdout}-s{seed}")


def recipe(arm: str) -> dict:
    """The peak lr and weight decay ``arm``'s retrains trained with (its search record's overrides)."""
    overrides = json.loads((RESULTS / arm / "search.json").read_text())["overrides"]
    return {"lr": overrides["lr"], "weight_decay": overrides["weight_decay"]}


def score(name: str, size: str, holdout: str, seed: int) -> float | None:
    path = folder(name, size, holdout, seed) / RECORD_NAME
    if not path.is_file():
        return None
    metrics = schema.load(TrialRecord, path).metrics
    return metrics["default"] if metrics else None


def train(name: str, size: str, holdout: str, seed: int) -> None:
    if score(name, size, holdout, seed) is not None:
        return
    arch, arm = NETWORKS[name]
    settings = recipe(arm)
    out = folder(name, size, holdout, seed)
    cmd = [sys.executable, "-m", "nni_seg.trial", "--config", "experiments/camvid/trial_joint_cpu.yml",
           "--arch", arch, "--size", *SIZES[size], "--holdout", holdout, "--seed", str(seed), *FIXED,
           "--lr", str(settings["lr"]), "--weight-decay", str(settings["weight_decay"]), "--out", str(out), "--force"]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".log"), "w") as log:
        subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)


def val_miou(arm: str) -> float | None:
    runs = [RESULTS / arm / f"run{k}.json" for k in (0, 1)]
    if not all(p.is_file() for p in runs):
        return None
    return sum(json.loads(p.read_text())["miou"] for p in runs) / 2 * 100


def summary() -> str:
    head = " | ".join(f"{d} Dice, 96x128 (seed 0)" for d in DRIVES)
    rows = [f"| network (recipe) | val mIoU, 2 retrains | {HOLDOUT} Dice, 72x96 (seeds 0, 1) | {HOLDOUT} Dice, 96x128 "
            f"(seed 0) | {head} |", "|---|---|---|---|" + "---|" * len(DRIVES)]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for name, (_, arm) in NETWORKS.items():
        settings = recipe(arm)
        top = [score(name, "72x96", HOLDOUT, s) for s in (0, 1)]
        mean = sum(top) / 2 if None not in top else None
        miou = val_miou(arm)
        others = " | ".join(fmt(score(name, "96x128", d, 0)) for d in DRIVES)
        rows.append(f"| {name} (lr {settings['lr']:.2g}, wd {settings['weight_decay']:.2g}) | "
                    f"{'-' if miou is None else f'{miou:.1f}'} ({arm}) | {fmt(mean)} ({fmt(top[0])}, {fmt(top[1])}) "
                    f"| {fmt(score(name, '96x128', HOLDOUT, 0))} | {others} |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--summary", action="store_true", help="print the table of what is recorded")
    args = p.parse_args()
    if not args.summary:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda job: train(*job), PLAN))
    print(summary())


if __name__ == "__main__":
    main()
