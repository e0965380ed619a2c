"""Proxy fidelity on CamVid: do short search trials rank architectures like their full training?

Samples architectures from the model space (within the U-Net's MMACs at 96x128, the search's budget),
adds the seed's net and the textbook U-Net, and trains each at the CPU recipe's retrain setting
(``full``: 96x128, 12 epochs) and at several cheap proxy settings (image size, epochs, training images),
all with the recipe's optimiser and loss. Every run is appended to a JSON table (resumable: runs already
in it are skipped), so later work reuses it without retraining; ``--analyse`` turns the table into
Kendall's tau / Spearman's rho per proxy against the full training's val mIoU, with the cost per trial.

    python -m bench.proxy_fidelity --data data/camvid_360x480.npz --out bench/results/proxy_fidelity.json \
        [--shard 0/2 --threads 1]          # two shards at once use both cores
    python -m bench.proxy_fidelity --out bench/results/proxy_fidelity.json --analyse   # table + CSV

Data: ``python -m nni_seg pack-data --dataset camvid --data-root ../shared/data/camvid --out
data/camvid_360x480.npz --quality 85``.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from nni_seg.files import locked  # noqa: E402 (after the path)

# name -> (H, W), epochs, training images (None: all 367)
SETTINGS = {
    "full": ((96, 128), 12, None),
    "s48e3": ((48, 64), 3, None),
    "s48e6": ((48, 64), 6, None),
    "s48e3n184": ((48, 64), 3, 184),
    "s36e4": ((36, 48), 4, None),
    "s72e4": ((72, 96), 4, None),
    "s96e3": ((96, 128), 3, None),
}
TRAIN = dict(batch_size=8, lr=2e-3, weight_decay=1e-4, loss="ce+dice", class_weights="median_freq", augment=True,
             device="cpu")
REPEATED = 4  # the first N architectures (seed, unet, a00, a01) get a second full training: repeat noise


def sample_archs(n: int, seed: int, max_mmacs: float) -> list[tuple[str, dict]]:
    """``n`` distinct architectures drawn uniformly from the space, keeping those within ``max_mmacs`` at
    96x128 (the search's budget rejects the others before training), plus the seed's net and the U-Net."""
    from nni_seg.space.arch import CHOICES, canonical, seed_arch, unet_arch
    from nni_seg.space.cost import count_macs
    from nni_seg.space.net import SegNet

    rng = random.Random(seed)
    out, seen = [("seed", seed_arch()), ("unet", unet_arch())], set()
    while len(out) < n + 2:
        arch = canonical({label: rng.choice(values) for label, values in CHOICES.items()})
        key = json.dumps(arch, sort_keys=True)
        if key in seen or count_macs(SegNet(arch, 11), (1, 3, 96, 128)) / 1e6 > max_mmacs:
            continue
        seen.add(key)
        out.append((f"a{len(out) - 2:02d}", arch))
    return out


CHEAP = ("s48e3", "s36e4", "s48e3n184", "s48e6")  # measured first; the dearer proxies last


def jobs(archs: list[tuple[str, dict]]) -> list[tuple[str, str, int]]:
    """(arch id, setting, repeat): the cheap proxies, the full trainings, their repeats, the dear proxies."""
    out = [(aid, s, 0) for s in CHEAP for aid, _ in archs]
    out += [(aid, "full", 0) for aid, _ in archs]
    out += [(aid, "full", 1) for aid, _ in archs[:REPEATED]]
    out += [(aid, s, 0) for s in SETTINGS if s != "full" and s not in CHEAP for aid, _ in archs]
    return out


class DataCache:
    def __init__(self, path: str):
        self.path, self.cache = path, {}

    def get(self, size, num_train):
        from nni_seg.data import load_dataset
        from nni_seg.config.settings import DataSettings

        key = (size, num_train)
        if key not in self.cache:
            self.cache = {}  # one at a time: 367 images at 96x128 are small, but keep memory flat
            self.cache[key] = load_dataset(DataSettings(dataset="packed", data_root=self.path, size=size,
                                                      num_train=num_train))
        return self.cache[key]


def train_one(arch: dict, setting: str, repeat: int, data_cache: DataCache, threads: int) -> dict:
    from nni_seg.space.cost import count_macs, count_params
    from nni_seg.space.net import SegNet
    from nni_seg.config.settings import TrainSettings
    from nni_seg.training.trainer import fit

    size, epochs, num_train = SETTINGS[setting]
    data = data_cache.get(size, num_train)
    model = SegNet(arch, data.num_classes, data.in_channels)
    t0 = time.perf_counter()
    res = fit(model, data, TrainSettings(epochs=epochs, seed=repeat, threads=threads, **TRAIN))
    wall = time.perf_counter() - t0
    final = res.final
    return {"setting": setting, "repeat": repeat, "val_miou": final.miou, "val_dice": final.dice,
            "best_val_miou": max(h.miou for h in res.history), "train_seconds": res.train_seconds,
            "wall_seconds": round(wall, 2), "epochs": epochs, "size": list(size), "num_train": len(data.train_images),
            "mmacs": round(count_macs(model, (1, 3, *size)) / 1e6, 3), "params": count_params(model),
            "history": [{"epoch": h.epoch, "loss": h.loss, "dice": h.dice, "miou": h.miou} for h in res.history]}


def load_table(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {"settings": {}, "train": TRAIN, "archs": {}, "runs": []}


def save_table(path: Path, table: dict) -> None:
    from nni_seg.files import atomic_write_json

    atomic_write_json(path, table)


def measure(args) -> None:
    from nni_seg.space.arch import arch_summary

    out = Path(args.out)
    if args.retrains:
        archs = import_retrains(out, Path(args.retrains))
        todo = [(aid, s, 0) for s in args.settings for aid, _ in archs]
    else:
        archs = sample_archs(args.archs, args.seed, args.max_mmacs)
        todo = jobs(archs)
    k, n = (int(v) for v in args.shard.split("/"))
    todo = todo[k::n]
    data_cache = DataCache(args.data)
    by_id = dict(archs)
    for aid, setting, repeat in todo:
        table = load_table(out)
        done = {(r["arch_id"], r["setting"], r["repeat"]) for r in table["runs"]}
        if (aid, setting, repeat) in done:
            continue
        t = time.time()
        run = train_one(by_id[aid], setting, repeat, data_cache, args.threads)
        with locked(out):  # another shard may write meanwhile
            table = load_table(out)
            table["settings"] = {s: {"size": list(v[0]), "epochs": v[1], "num_train": v[2]} for s, v in SETTINGS.items()}
            table["archs"][aid] = {"arch": by_id[aid], "summary": arch_summary(by_id[aid])}
            table["runs"].append({"arch_id": aid, **run})
            save_table(out, table)
        print(f"{aid} {setting} r{repeat}: miou {run['val_miou']:.4f} dice {run['val_dice']:.4f} "
              f"{time.time() - t:.0f}s", flush=True)


def import_retrains(out: Path, results: Path) -> list[tuple[str, dict]]:
    """The retrains in ``results`` (the --out folder of ``bench/search_vs_baselines.py``; the same full
    setting: 96x128, 12 epochs, the recipe's optimiser and loss; 2 threads) as full runs: each search winner
    becomes an architecture of the table; the seed's and the U-Net's retrains become extra repeats (``repeat`` 10 + run).
    Their score is the kept (best) epoch's val mIoU at 96x128. Returns the winners, whose proxies are then measured like
    the sampled ones'."""
    from nni_seg.config import schema
    from nni_seg.space.arch import arch_summary
    from nni_seg.config.schema import TopArch

    winners = [(p.stem[len("search_"):], schema.load(TopArch, p.with_name("top_" + p.name[len("search_"):])).arch)
               for p in sorted(results.glob("search_*_seed*.json"))]
    res = json.loads((results / "results.json").read_text()) if (results / "results.json").is_file() else {}
    with locked(out):
        table = load_table(out)
        for aid, arch in winners:
            table["archs"][aid] = {"arch": arch, "summary": arch_summary(arch)}
        done = {(r["arch_id"], r["setting"], r["repeat"]) for r in table["runs"]}
        for t in res.get("trainings", []):  # those finished so far: run again to import the rest
            aid = t["network"]
            repeat = 10 + t["run"] if aid in ("unet", "seed") else t["run"]
            if (aid, "full", repeat) in done:
                continue
            score = t.get("at_train_size") or t["at_96x128"]
            table["runs"].append({"arch_id": aid, "setting": "full", "repeat": repeat, "val_miou": score["miou"],
                                  "val_dice": score["dice"], "best_val_miou": score["miou"],
                                  "train_seconds": None, "wall_seconds": t["retrain_seconds"], "epochs": 12,
                                  "size": [96, 128], "num_train": 367, "mmacs": t["mmacs"], "params": t["params"],
                                  "source": "search_vs_baselines.py retrain (kept epoch)"})
        save_table(out, table)
    return winners


def analyse(path: Path) -> str:
    """Markdown: per proxy, Kendall's tau and Spearman's rho of its val Dice / mIoU against the full
    training's val mIoU (the kept, best epoch: what a retrain gives), over all fully trained architectures
    and over the uniformly sampled ones only (search winners were picked by a proxy: a narrower range of
    scores, harder to rank); the mean wall seconds per trial; the full runs' repeat noise."""
    table = load_table(path)
    runs = table["runs"]
    full = {r["arch_id"]: r for r in runs if r["setting"] == "full" and r["repeat"] == 0}
    sampled = sorted(a for a in full if a in ("seed", "unet") or (a[0] == "a" and a[1:].isdigit()))
    lines = []
    for title, ids in (("all", sorted(full)), ("sampled + seed + U-Net", sampled)):
        lines += [f"**{title}**: {len(ids)} architectures trained fully (96x128, 12 epochs); each proxy's val "
                  "score against their kept epoch's val mIoU at 96x128.", "", _fidelity_rows(runs, full, ids), ""]
    rep = {}
    for r in sorted(runs, key=lambda r: r["repeat"]):
        if r["setting"] == "full":
            rep.setdefault(r["arch_id"], []).append(r["best_val_miou"])
    pairs = {a: v for a, v in rep.items() if len(v) > 1}
    if pairs:
        lines += ["Repeat noise (full setting, kept epoch's val mIoU of trainings with different seeds or threads): "
                  + "; ".join(f"{a}: " + " / ".join(f"{100 * x:.1f}" for x in v) for a, v in pairs.items())]
    return "\n".join(lines)


def _fidelity_rows(runs: list[dict], full: dict, ids: list[str]) -> str:
    from scipy.stats import kendalltau, spearmanr

    lines = ["| setting | size | epochs | train images | archs | tau (proxy Dice) | tau (proxy mIoU) | "
             "rho (proxy mIoU) | s / trial (mean) |", "|---|---|---|---|---|---|---|---|---|"]
    for s, (size, epochs, n) in SETTINGS.items():
        if s == "full":
            continue
        rs = {r["arch_id"]: r for r in runs if r["setting"] == s and r["repeat"] == 0 and r["arch_id"] in full}
        common = [a for a in ids if a in rs]
        if len(common) < 3:
            continue
        y = [full[a]["best_val_miou"] for a in common]
        tau_d = kendalltau([rs[a]["val_dice"] for a in common], y)[0]
        tau_m = kendalltau([rs[a]["val_miou"] for a in common], y)[0]
        rho_m = spearmanr([rs[a]["val_miou"] for a in common], y)[0]
        secs = sum(rs[a]["wall_seconds"] for a in common) / len(common)
        lines.append(f"| {s} | {size[0]}x{size[1]} | {epochs} | {n or 367} | {len(common)} | {tau_d:.2f} | "
                     f"{tau_m:.2f} | {rho_m:.2f} | {secs:.0f} |")
    full_secs = [full[a]["wall_seconds"] for a in ids]
    lines.append(f"| full | 96x128 | 12 | 367 | {len(ids)} | 1 | 1 | 1 | {sum(full_secs) / max(len(ids), 1):.0f} |")
    return "\n".join(lines)


def write_csv(path: Path, csv_path: Path) -> None:
    import csv

    table = load_table(path)
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch_id", "setting", "repeat", "val_miou", "val_dice", "mmacs", "params", "wall_seconds", "summary"])
        for r in table["runs"]:
            w.writerow([r["arch_id"], r["setting"], r["repeat"], round(r["val_miou"], 4), round(r["val_dice"], 4),
                        r["mmacs"], r["params"], r["wall_seconds"], table["archs"][r["arch_id"]]["summary"]])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/camvid_360x480.npz")
    ap.add_argument("--out", default="bench/results/proxy_fidelity.json")
    ap.add_argument("--archs", type=int, default=12, help="sampled architectures (plus seed and U-Net)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-mmacs", type=float, default=1997, help="budget at 96x128 (the U-Net's MMACs)")
    ap.add_argument("--shard", default="0/1", help="K/N: run every N-th job from the K-th")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--analyse", action="store_true")
    ap.add_argument("--retrains", help="--out folder of bench/search_vs_baselines.py: its winners join the table "
                                       "with their retrains as the full runs, and get the proxies of --settings")
    ap.add_argument("--settings", nargs="+", default=["s48e3", "s36e4"], choices=[s for s in SETTINGS if s != "full"])
    args = ap.parse_args()
    if args.analyse:
        print(analyse(Path(args.out)))
        write_csv(Path(args.out), Path(args.out).with_suffix(".csv"))
        return 0
    measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
