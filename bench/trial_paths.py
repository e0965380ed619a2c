"""The default trial against ``--no-amp --no-channels-last``, side by side in one run: the real trial entry
point (``python -m nni_seg.trial``) on one architecture, the two settings alternated ``--rounds`` times so
a load that comes and goes hits both alike. Reads each trial's record: training images/s (median epoch
after the first), seconds of the per-epoch evaluations, the compute path the record names.

    python -m bench.trial_paths --arch unet --data-root data/camvid_360x480.npz --size 96 128 --epochs 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = {"default": [], "fp32 (--no-amp --no-channels-last)": ["--no-amp", "--no-channels-last"]}


def one_trial(args, flags: list[str], out: Path) -> dict:
    data = (["--dataset", "packed", "--data-root", args.data_root] if args.data_root else [])
    cmd = [sys.executable, "-m", "nni_seg.trial", "--arch", args.arch, *data, "--size", *map(str, args.size),
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--threads", str(args.threads),
           "--device", "cpu", "--out", str(out), *flags]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, NNI_SEG_FORKSERVER="0"))
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    rec = json.loads((out / "nni_seg_record.json").read_text())
    hist = rec["history"]
    train = statistics.median(h["images_per_second"] for h in hist[1:] or hist)
    evals = rec["timings"]["train"] - sum(h["seconds"] for h in hist)  # the per-epoch evaluations (and a little)
    return {"train_img_s": train, "eval_seconds_per_epoch": evals / len(hist), "compute": rec["compute"],
            "dice": rec["metrics"]["dice"], "trial_seconds": sum(rec["timings"].values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="unet")
    ap.add_argument("--data-root", help="packed dataset (default: the embedded digits)")
    ap.add_argument("--size", type=int, nargs=2, default=[96, 128])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", help="write the results as JSON")
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {name: [] for name in PATHS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, flags in PATHS.items():
                runs[name].append(one_trial(args, flags, Path(tmp) / f"{r}-{len(runs[name])}-{name[:4]}"))
                print(f"round {r + 1} {name}: {runs[name][-1]}", flush=True)
    med = {n: {k: statistics.median(x[k] for x in rs) for k in ("train_img_s", "eval_seconds_per_epoch",
                                                                  "trial_seconds")} for n, rs in runs.items()}
    base = med["fp32 (--no-amp --no-channels-last)"]
    print(f"\n{args.arch} at {args.size[0]}x{args.size[1]}, batch {args.batch_size}, {args.epochs} epochs, "
          f"{args.threads} threads, medians of {args.rounds} rounds")
    print("| trial settings | compute path (record) | train img/s | x | eval s / epoch | x | trial s |")
    print("|---|---|---|---|---|---|---|")
    for name, m in med.items():
        print(f"| {name} | {runs[name][0]['compute']} | {m['train_img_s']:.1f} | "
              f"{m['train_img_s'] / base['train_img_s']:.2f} | {m['eval_seconds_per_epoch']:.2f} | "
              f"{base['eval_seconds_per_epoch'] / m['eval_seconds_per_epoch']:.2f} | {m['trial_seconds']:.0f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "runs": runs, "medians": med}, indent=2))


if __name__ == "__main__":
    main()
