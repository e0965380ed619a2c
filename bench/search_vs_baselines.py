"""Does the search beat what a user would pick by hand? Several search seeds, one schedule for all.

For each search seed: (a) TPE started from the U-Net in the new model space
(``experiments/camvid/tpe_unet_cpu.yml``, the default CamVid search when this was measured), (b) random
search in the new space with the same trial budget, (c) TPE in the first model space (single-op cells,
max-pools, no context block: ``experiments/camvid/tpe_single_op_cpu.yml``; the trial fills the labels added
since with the values that reproduce it), (d) ``prior_new``: the
default CamVid search since, ``experiments/camvid/search_cpu.yml`` (random search over the space without the
choices its ``exclude`` prior leaves out). Each winner is retrained once with the CPU recipe's schedule (96x128, 12 epochs, CE +
soft Dice with median-frequency weights; ``--winner-runs N``: N times), and the seed's net and the textbook
U-Net twice each (training noise; ``--baseline-runs N``); a group's mean is over its networks, each the mean of its
trainings. Every network is scored on val at the labels' native 360x480 and at 96x128. ``--dataset isbi2012``:
the same for ISBI 2012 membranes: (a) the shipped search, ``experiments/isbi2012/search_cpu.yml`` (TPE from
the U-Net), (b) random search and (c) TPE in the first space, both that config with another tuner; retrain
at 128x128 for 30 epochs; scored at the native 512x512 and at 128x128.

    python -m bench.search_vs_baselines --out runs/search_vs_baselines [--seeds 0 1 2]
    python -m bench.search_vs_baselines --dataset isbi2012 --seeds 0 --out runs/isbi_vs_baselines
    python -m bench.search_vs_baselines --out runs/search_vs_baselines --table   # markdown from results.json

Resumable: a search whose top_arch.json exists, or a training whose checkpoint exists, is not redone.
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

# per dataset: the searches (name -> config, its search-space file under experiments/), the data and the
# retrain schedule
FULL, SINGLE_OP = "search_space.json", "search_space_single_op.json"
SETUPS = {
    "camvid": {
        "variants": {"tpe_new": ("experiments/camvid/tpe_unet_cpu.yml", FULL),
                     "random_new": ("experiments/camvid/random_cpu.yml", FULL),
                     "tpe_old": ("experiments/camvid/tpe_single_op_cpu.yml", SINGLE_OP),
                     # the default since: random search over the space narrowed by the bench's prior
                     "prior_new": ("experiments/camvid/search_cpu.yml", FULL)},
        "data": dict(dataset="packed", data_root="data/camvid_360x480.npz", size=(96, 128)),
        "retrain": dict(epochs=12, batch_size=8, lr=2e-3, loss="ce+dice", class_weights="median_freq", device="cpu"),
    },
    "isbi2012": {  # one shipped config; the other searches change its tuner (same trials, trial, budget)
        "variants": {"tpe_new": ("experiments/isbi2012/search_cpu.yml", FULL),
                     "random_new": ("experiments/isbi2012/search_cpu.yml", FULL,
                                    {"tuner": "Random", "tuner_args": {}, "start_with": []}),
                     "tpe_old": ("experiments/isbi2012/search_cpu.yml", SINGLE_OP, {"start_with": []})},
        "data": dict(dataset="isbi2012", data_root="../shared/data/isbi2012_membrane", size=(128, 128)),
        "retrain": dict(epochs=30, batch_size=4, lr=2e-3, loss="ce+dice", class_weights="median_freq", device="cpu"),
    },
}
SETUP = SETUPS["camvid"]
VARIANTS = SETUP["variants"]
RETRAIN = SETUP["retrain"]


def write_config(variant: str, seed: int, out: Path) -> Path:
    """The variant's shipped config with its tuner seed set and its experiments kept under ``out``."""
    import yaml

    src, space, *changes = VARIANTS[variant]
    cfg = yaml.safe_load((ROOT / src).read_text())
    tuner = cfg["tuner"]
    if changes:  # another tuner or starting points in the shipped config (classArgs of our GuidedTuner)
        tuner["classArgs"].update(changes[0])
    if "className" in tuner:
        tuner["classArgs"]["tuner_args"]["seed"] = seed
        tuner["codeDirectory"] = str(ROOT)
    else:
        tuner.setdefault("classArgs", {})["seed"] = seed
    cfg["searchSpaceFile"] = str(ROOT / "experiments" / space)
    cfg["trialCodeDirectory"] = str(ROOT)
    cfg["experimentWorkingDirectory"] = str(out / "exps")
    cfg["experimentName"] = f"{cfg['experimentName']}-{variant}-seed{seed}"
    path = out / f"{variant}_seed{seed}.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def search(variant: str, seed: int, out: Path, port: int) -> dict:
    from nni_seg.config import schema
    from nni_seg.workflow.run import run_experiment
    from nni_seg.experiment.records import experiment_dir, trial_records
    from nni_seg.config.schema import TopArch
    from nni_seg.config.settings import RunSettings

    top_path = out / f"top_{variant}_seed{seed}.json"
    info_path = out / f"search_{variant}_seed{seed}.json"
    if not info_path.is_file():
        t0 = time.time()
        top, _ = run_experiment(write_config(variant, seed, out), RunSettings(port=port, timeout=4 * 3600,
                                                                           out=str(top_path)))
        loaded, _ = trial_records(experiment_dir(top.experiment_id, [out / "exps"]))
        statuses = [x.record.status.value for x in loaded]
        info = {"variant": variant, "seed": seed, "experiment_id": top.experiment_id, "wall_seconds": time.time() - t0,
                "trials": len(statuses), "trained": statuses.count("SUCCEEDED"), "rejected": statuses.count("REJECTED"),
                "proxy_dice": (top.metrics or {}).get("dice"), "summary": top.summary,
                "trial_seconds": sum(x.record.train_seconds or 0 for x in loaded)}
        info_path.write_text(json.dumps(info, indent=2))
    info = json.loads(info_path.read_text())
    info["arch"] = schema.load(TopArch, top_path).arch
    return info


def train_and_score(name: str, arch: dict, run: int, out: Path, data) -> dict:
    """Retrain with the recipe's schedule (seed ``run``) unless done; val scores at native size and 96x128."""
    from nni_seg.config.settings import TrainSettings

    return {"network": name, "run": run, **retrain_scored(ckpt_folder(out, name, run), arch, data_settings(),
                                                          TrainSettings(seed=run, threads=2, **RETRAIN), data)}


def ckpt_folder(out: Path, name: str, run: int) -> Path:
    """Where the training ``run`` of network ``name`` is kept (also for tune_vs_default.py)."""
    return out / "ckpt" / f"{name}_run{run}"


def finished(folder: Path) -> bool:
    """A training has finished there (``seconds.txt`` is written after its last epoch)."""
    return (folder / "seconds.txt").is_file()


def retrain_scored(folder: Path, arch: dict, data_cfg, train, data) -> dict:
    """Train ``arch`` into ``folder`` with ``train`` unless a finished training is there (``seconds.txt``),
    then score it on val at the labels' native size and at the training size (also for tune_vs_default.py)."""
    from nni_seg.config import schema
    from nni_seg.deploy import evaluate, retrain
    from nni_seg.config.schema import CheckpointMeta

    scored = folder / "scores.json"  # a rerun (resume, --table of another selection) does not score again
    if not finished(folder):
        scored.unlink(missing_ok=True)
        t0 = time.time()
        retrain(arch, data_cfg, train, folder, data=data, force=True)
        (folder / "seconds.txt").write_text(f"{time.time() - t0:.1f}\n")
    if scored.is_file():
        return json.loads(scored.read_text())
    meta = schema.load(CheckpointMeta, folder / "meta.json")
    native = evaluate(folder, device="cpu", native=True, data=data)
    small = evaluate(folder, device="cpu", native=False, data=data)
    result = {"mmacs": meta.mmacs, "params": meta.params, "summary": meta.summary, "best_epoch": meta.epoch,
              "native": dataclasses.asdict(native.scores), "resolution": native.resolution,
              "at_train_size": dataclasses.asdict(small.scores), "train_size": list(meta.size),
              "retrain_seconds": float((folder / "seconds.txt").read_text())}
    scored.write_text(json.dumps(result, indent=2))
    return result


def data_settings():
    from nni_seg.config.settings import DataSettings

    d = dict(SETUP["data"])
    d["data_root"] = str((ROOT / d["data_root"]).resolve())
    return DataSettings(**d)


def spread(values: list[float]) -> str:
    vals = [100 * v for v in values]
    if len(vals) == 1:
        return f"{vals[0]:.1f}"
    return f"{statistics.mean(vals):.1f} ({min(vals):.1f}-{max(vals):.1f})"


def values(rs: list[dict], get) -> list:
    """A group's values to average: its trainings when it is one network (the U-Net's runs), else one per
    network, the mean of its trainings (a search seed's winner trained twice counts once, like the others)."""
    nets: dict[str, list] = {}
    for r in rs:
        nets.setdefault(r["network"], []).append(get(r))
    if len(nets) == 1:
        return next(iter(nets.values()))

    def mean(vs: list):
        vs = [v for v in vs if v is not None]
        return statistics.mean(vs) if vs else None
    return [mean(vs) for vs in nets.values()]


def table(results: dict) -> str:
    rows = results["trainings"]
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    for r in rows:  # results written before the key was renamed
        r.setdefault("at_train_size", r.get("at_96x128"))
        r.setdefault("train_size", [96, 128])
    size = "x".join(map(str, rows[0]["train_size"])) if rows else "?"
    native = rows[0]["resolution"] if rows else "?"
    lines = [f"| network | runs | val mIoU, {native} | val mean Dice, native | val mIoU at {size} | "
             f"MMACs ({size}) | params |", "|---|---|---|---|---|---|---|"]
    for g, rs in groups.items():
        nets = list({r["network"]: r for r in rs}.values())  # each network once, however often trained
        mmacs = " / ".join(f"{r['mmacs']:.0f}" for r in nets)
        params = " / ".join(f"{r['params'] / 1e6:.2f} M" for r in nets)
        lines.append(f"| {g} | {len(rs)} | {spread(values(rs, lambda r: r['native']['miou']))} | "
                     f"{spread(values(rs, lambda r: r['native']['dice']))} | "
                     f"{spread(values(rs, lambda r: r['at_train_size']['miou']))} | {mmacs} | {params} |")
    names = results.get("class_names") or _class_names()
    lines += ["", per_class(rows, names)]
    if rows and len(rows[0]["native"]["dice_per_class"]) <= 3:  # few classes (ISBI: membrane, cell): their Dice too
        lines += ["", per_class(rows, names, "Dice")]
    lines += ["", "| search | seed | trials | trained | rejected (over budget) | proxy Dice of the winner | wall s | "
              "winner |", "|---|---|---|---|---|---|---|---|"]
    for s in results["searches"]:
        lines.append(f"| {s['variant']} | {s['seed']} | {s['trials']} | {s['trained']} | {s['rejected']} | "
                     f"{s['proxy_dice']:.4f} | {s['wall_seconds']:.0f} | `{s['summary']}` |")
    return "\n".join(lines)


def _class_names() -> list[str] | None:
    """For a results.json written without them: the dataset's class names."""
    from nni_seg.data import CAMVID_CLASSES

    return CAMVID_CLASSES if SETUP is SETUPS["camvid"] else None


def per_class(rows: list[dict], names: list[str] | None, kind: str = "IoU") -> str:
    """Per-class val IoU or Dice (native resolution) of the best single network and of each group's mean."""
    if not rows:
        return ""
    key = {"IoU": "iou_per_class", "Dice": "dice_per_class"}[kind]
    best = max(rows, key=lambda r: r["native"]["miou"])
    k = len(best["native"][key])
    names = names or [f"class {i}" for i in range(k)]
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)

    def cell(values: list) -> str:  # None: the class is absent from val and never predicted
        values = [v for v in values if v is not None]
        return f"{100 * statistics.mean(values):.1f}" if values else "-"

    lines = [f"| val {kind} per class, native | " + " | ".join(names) + " |", "|---|" + "---|" * k,
             f"| best single network ({best['network']} run {best['run']}: {100 * best['native']['miou']:.1f} mIoU) | "
             + " | ".join(cell([v]) for v in best["native"][key]) + " |"]
    for g, rs in groups.items():
        lines.append(f"| {g} (mean of {len(values(rs, lambda r: r['run']))}) | " + " | ".join(
            cell(values(rs, lambda r: r["native"][key][i])) for i in range(k)) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/search_vs_baselines")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--dataset", choices=list(SETUPS), default="camvid")
    ap.add_argument("--variants", nargs="+", help="searches to run (default: all of the dataset's)")
    ap.add_argument("--port", type=int, help="web UI port of the searches (default: 8080 or a free one)")
    ap.add_argument("--train-only", nargs="+", metavar="GROUP",
                    help="train only these networks (unet, seed, a variant, or one winner: tpe_old_seed0); the "
                         "others' finished trainings are still scored, unfinished ones left for a later run")
    ap.add_argument("--baseline-runs", type=int, default=2, metavar="N",
                    help="trainings of the U-Net and of the seed's net, training seeds 0..N-1 (default 2)")
    ap.add_argument("--winner-runs", type=int, default=1, metavar="N",
                    help="trainings of each search's winner, training seeds 0..N-1 (default 1; more tell a "
                         "winner's margin from training noise)")
    ap.add_argument("--table", action="store_true", help="only print the table of results.json")
    args = ap.parse_args()
    global SETUP, VARIANTS, RETRAIN
    SETUP = SETUPS[args.dataset]
    VARIANTS, RETRAIN = SETUP["variants"], SETUP["retrain"]
    args.variants = args.variants or list(VARIANTS)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.table:
        print(table(json.loads((out / "results.json").read_text())))
        return 0
    from nni_seg.space.arch import seed_arch, unet_arch
    from nni_seg.data import load_dataset

    searches = [search(v, s, out, args.port) for s in args.seeds for v in args.variants]
    data = load_dataset(data_settings(), native=True)
    # the order puts the comparisons the claim rests on first (U-Net, the default search, random search), so
    # a run cut short still answers them: then the first model space, then the seed's net
    # (search seed by search seed, so that every variant has as many winners retrained as any other)
    jobs = [("unet", "unet", unet_arch(), r) for r in range(args.baseline_runs)]
    winners = [(s["variant"], f"{s['variant']}_seed{s['seed']}", s["arch"]) for s in searches]
    jobs += [(*w, r) for r in range(args.winner_runs) for w in winners]
    jobs += [("seed", "seed", seed_arch(), r) for r in range(args.baseline_runs)]
    # trainings beyond the asked runs, made by an earlier call, stay in the table
    asked = {name: (group, arch, run + 1) for group, name, arch, run in jobs}  # the last asked run wins
    jobs += [(group, name, arch, r) for name, (group, arch, runs) in asked.items() for r in range(runs, 10)
             if finished(ckpt_folder(out, name, r))]
    jobs.sort(key=lambda j: (j[0] == "seed", j[0] == "tpe_old"))  # stable: the searches' seed order stays
    if args.train_only:
        jobs = [j for j in jobs if j[0] in args.train_only or j[1] in args.train_only
                or finished(ckpt_folder(out, j[1], j[3]))]
    trainings = []
    for group, name, arch, run in jobs:
        trainings.append({"group": group, **train_and_score(name, arch, run, out, data)})
        _save(out, searches, trainings, data.class_names)
    print(table(json.loads((out / "results.json").read_text())))
    return 0


def _save(out: Path, searches: list[dict], trainings: list[dict], class_names: list[str]) -> None:
    from nni_seg.files import atomic_write_json

    atomic_write_json(out / "results.json", {"retrain": RETRAIN, "class_names": class_names, "searches": [
        {k: v for k, v in s.items() if k != "arch"} | {"arch": s["arch"]} for s in searches], "trainings": trainings})


if __name__ == "__main__":
    sys.exit(main())
