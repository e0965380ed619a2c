"""Does the joint search (architecture + recipe, on a ladder, selected on a held-out drive) beat tuning
the U-Net's training with NNI, at equal compute? CamVid on this machine's CPU.

Arms, each given the same compute (epochs at 48x64's pixels: the ladder's 180; see nni_seg.experiment.ladder.plan_cost):
  joint    experiments/camvid/joint_cpu.yml without its exclude (joint space, ladder, random rung 0: the first default)
  joint_cw experiments/camvid/joint_cpu.yml as shipped (class weights fixed to median_freq)
  joint_long experiments/camvid/joint_long_cpu.yml: the ladder's top rung at the retrain's 12 epochs (72x96),
           started from the U-Net, networks of half to all of the U-Net's MMACs
  joint_lr experiments/camvid/joint_lr_cpu.yml: joint_long with the U-Net entered three times, at peak lr 1e-3,
           2e-3 and the recipe's 4.7e-3 (the rest of its recipe the defaults): the ladder compares the searched
           networks with the U-Net at more than one learning rate, the setting `tune` moves most
  joint_inc experiments/camvid/joint_inc_cpu.yml: joint_lr's rungs with the U-Net (peak lr 1e-3) an incumbent
           that trains only at the top rung: all twelve screened candidates are new, and the top rung is the
           search's best against the U-Net at 12 epochs
  arch_inc experiments/camvid/arch_inc_cpu.yml: joint_inc's ladder over the architecture alone, every trial and
           the retrain at peak lr 1e-3 (the U-Net's best measured recipe), the U-Net the incumbent
  arch_inc_runner arch_inc's searched network of the same seed that lost the top rung to the U-Net, retrained
           at lr 1e-3 (no search of its own): was the top rung's choice the retrain's?
  joint_wide experiments/camvid/joint_wide_cpu.yml: joint_inc at twice the compute (360 epochs), the extra spent on
           the screen (60 candidates, the best 8 promoted), the recipe labels narrowed to the values that held up
           at the retrain; its baseline is tune_wide
  tune_wide tune_cw at joint_wide's compute: 60 TPE trials of 6 epochs at 48x64
  joint_unet experiments/camvid/joint_unet_cpu.yml: joint_cw's ladder over the U-Net-shaped joint space (four
           levels and every skip fixed; cells, widths, depths, sampling, context and recipe searched)
  tune     `tune` of the U-Net's training: 30 TPE trials of 6 epochs at 48x64, the recipe's settings first,
           over the first tune space (class weights searched too)
  tune_cw  the same with `tune`'s shipped space (class weights kept at the recipe's median_freq)
  random   random search over the joint space: 60 trials of 3 epochs at 48x64, the best single trial
  random_cw experiments/camvid/joint_random_cpu.yml as shipped (random, 60 trials, class weights fixed)
  unet     (continuity) the U-Net with the recipe's current settings, no search
  unet_found the U-Net with the training settings random_cw's search of the same seed found (no search of its
           own): what the joint search's recipe is worth without its architecture
  random_cw_tuned random_cw's network of the same seed with the settings tune_cw's search of that seed found
           (no search of its own): what the searched architecture is worth under the tuned U-Net's recipe
  two_stage the recipe first, then the architecture, half the compute each: stage 1 `tune` of the U-Net (15
           trials, experiments/camvid/tune_first_cpu.yml's space: the loss fixed at CE + Dice), stage 2 a ladder
           over the architecture alone (experiments/camvid/arch_ladder_cpu.yml), every trial trained with stage
           1's settings and the U-Net among rung 0's: rung 0 compares networks under one recipe
  two_stage_unet the U-Net with two_stage's stage-1 settings of the same seed (no search of its own): what the
           tune alone gave, beside what the architecture stage added
  two_stage_loss, two_stage_loss_unet: the same with the loss searched in stage 1 too (tune_cw's space; the first
           variant run)
All select on CamVid train's drive 0006R0 (held out of the trials' training). Each winner is then retrained
twice (seeds 0, 1) at 96x128 for 12 epochs on all of train with the settings its arm found (the rest: the
recipe's), and scored on val at the native 360x480.

``--dataset isbi2012`` (arms random_cw, tune_cw, unet, unet_found): ISBI 2012 membranes, selected on training slices 4-9,
searches of 30 trials x 6 epochs at 128x128 (experiments/isbi2012/joint_random_cpu.yml; the tune the same),
retrains of 30 epochs at 128x128 on all 24 training slices, scored on val (slices 24-29) at the native 512x512.

Resumable: a finished search (search.json) or retrain (run<k>.json) is not redone.
  python -m bench.joint_search --seeds 0 1 2 --arms joint tune random unet
  python -m bench.joint_search --summary        # the table for docs/results.md
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import statistics
import time
from pathlib import Path

import yaml

from nni_seg.space.arch import NAMED_ARCHS
from nni_seg.config.settings import DataSettings, RunSettings, TrainSettings

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "joint_search"
ARMS = ("joint", "joint_cw", "joint_long", "joint_lr", "joint_inc", "arch_inc", "arch_inc_runner", "joint_wide",
        "joint_unet", "tune", "tune_cw", "tune_wide", "random", "random_cw", "unet", "unet_found", "random_cw_tuned",
        "two_stage", "two_stage_unet", "two_stage_loss", "two_stage_loss_unet")


@dataclasses.dataclass(frozen=True)
class Setup:
    """One dataset's measurement: its data, the trials' held-out selection, the retrain, the configs."""
    data: dict  # the trials' and the tune's data section (without size)
    holdout: str
    trial_size: list[int]
    retrain: dict  # training settings of every retrain (the searched ones override)
    retrain_size: tuple[int, int]
    tune_epochs: int  # a tune trial's epochs: 30 of them cost what the joint searches cost
    configs: str  # folder of the search configs
    results: Path


SETUPS = {
    "camvid": Setup(data={"dataset": "packed", "data_root": str(ROOT / "data" / "camvid_360x480.npz")},
                    holdout="0006R0", trial_size=[48, 64],
                    retrain=dict(epochs=12, batch_size=4, lr=4.7e-3, weight_decay=5e-5, scale_min=1.0, scale_max=1.0,
                                 loss="ce+dice", class_weights="median_freq", device="cpu"),  # run_cpu.sh's retrain
                    retrain_size=(96, 128), tune_epochs=6, configs="experiments/camvid", results=OUT),
    "isbi2012": Setup(data={"dataset": "isbi2012", "data_root": str((ROOT / ".." / "shared" / "data" /
                                                                    "isbi2012_membrane").resolve())},
                      holdout="4,5,6,7,8,9", trial_size=[128, 128],
                      retrain=dict(epochs=30, batch_size=4, lr=2e-3, loss="ce+dice", class_weights="median_freq",
                                   device="cpu"),  # experiments/isbi2012/search_cpu.yml's recipe retrain
                      retrain_size=(128, 128), tune_epochs=6, configs="experiments/isbi2012",
                      results=OUT / "isbi2012"),
}
SETUP = SETUPS["camvid"]


def _save(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def _trial_seconds(exp_dir: Path) -> dict:
    """Trials' wall seconds summed (each trial uses one core: core-seconds) and epochs at 48x64's pixels."""
    from nni_seg.experiment.records import trial_records

    secs, base_epochs, n = 0.0, 0.0, 0
    for x in trial_records(exp_dir)[0]:
        r = x.record
        if r.started and r.finished:
            secs += (dt.datetime.fromisoformat(r.finished) - dt.datetime.fromisoformat(r.started)).total_seconds()
        if r.dataset and r.train:
            h, w = r.dataset.size
            base_epochs += r.train.epochs * h * w / (SETUP.trial_size[0] * SETUP.trial_size[1])
        n += 1
    return {"trials": n, "trial_core_seconds": round(secs, 1), "base_epochs": round(base_epochs, 1)}


def _experiment(config: dict, folder: Path, name: str) -> dict:
    from nni_seg.workflow.run import run_experiment
    from nni_seg.experiment.records import experiment_dir

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    t = time.perf_counter()
    top, _ = run_experiment(path, RunSettings(out=str(folder / "top_arch.json"), timeout=7200))
    wall = time.perf_counter() - t
    return {"experiment_id": top.experiment_id, "arch": top.arch, "recipe": top.recipe or {},
            "overrides": top.recipe_settings(), "search_score": (top.metrics or {}).get("default"),
            "ladder": dataclasses.asdict(top.ladder) if top.ladder else None, "search_wall_seconds": round(wall, 1),
            **_trial_seconds(experiment_dir(top.experiment_id))}


def _search_config(base: str, seed: int, folder: Path, **changes) -> dict:
    cfg = yaml.safe_load((ROOT / base).read_text())
    here = (ROOT / base).parent
    cfg["searchSpaceFile"] = str((here / cfg["searchSpaceFile"]).resolve())
    cfg["trialCodeDirectory"] = str(ROOT)
    cfg["experimentWorkingDirectory"] = str(folder / "nni")
    cfg["tuner"]["codeDirectory"] = str(ROOT)
    cfg["tuner"]["classArgs"]["tuner_args"] = {"seed": seed}
    cfg["trialCommand"] = cfg["trialCommand"].replace("experiments/", str(ROOT / "experiments") + "/")
    if SETUP.data["dataset"] != "packed":  # the data where this machine has it
        cfg["trialCommand"] += f" --data-root {SETUP.data['data_root']}"
    cfg.update(changes)
    return cfg


def search_joint(seed: int, folder: Path) -> dict:
    """The first joint default: the shipped config with class weights searched too (no ``exclude``)."""
    cfg = _search_config("experiments/camvid/joint_cpu.yml", seed, folder)
    cfg["tuner"]["classArgs"].pop("exclude", None)
    return _experiment(cfg, folder, "joint")


def search_joint_cw(seed: int, folder: Path) -> dict:
    """The shipped joint search: class weights fixed to median_freq (``exclude``), chosen after the first
    default's seeds (docs/results.md)."""
    return _experiment(_search_config("experiments/camvid/joint_cpu.yml", seed, folder), folder, "joint")


def search_joint_long(seed: int, folder: Path) -> dict:
    """The ladder aimed at the retrain: top rung at 12 epochs, the U-Net among rung 0's, a MACs floor."""
    return _experiment(_search_config("experiments/camvid/joint_long_cpu.yml", seed, folder), folder, "joint")


def search_joint_lr(seed: int, folder: Path) -> dict:
    """joint_long with the U-Net at three of the space's learning rates among rung 0's candidates."""
    return _experiment(_search_config("experiments/camvid/joint_lr_cpu.yml", seed, folder), folder, "joint")


def search_joint_inc(seed: int, folder: Path) -> dict:
    """joint_lr's compute with the U-Net an incumbent of the top rung instead of three of the screen's trials."""
    return _experiment(_search_config("experiments/camvid/joint_inc_cpu.yml", seed, folder), folder, "joint")


def search_arch_inc(seed: int, folder: Path) -> dict:
    """joint_inc's ladder over the architecture alone at lr 1e-3 (its trial command's flag), retrained so."""
    found = _experiment(_search_config("experiments/camvid/arch_inc_cpu.yml", seed, folder), folder, "arch")
    return {**found, "overrides": {**found["overrides"], "lr": 1e-3}}


def search_joint_wide(seed: int, folder: Path) -> dict:
    """joint_inc at twice the compute, the extra spent on the screen's breadth (60 candidates)."""
    return _experiment(_search_config("experiments/camvid/joint_wide_cpu.yml", seed, folder), folder, "joint")


def top_rung_runner_up(seed: int, folder: Path, arm: str = "arch_inc") -> dict:
    """The best searched candidate at ``arm``'s top rung of this seed (the incumbent's rival), with that arm's
    retrain settings: its architecture from the arm's kept trial records."""
    donor = _donor(arm, seed)
    lad = donor["ladder"]
    rival = max((int(c) for c in lad["candidates"] if int(c) >= 0),
                key=lambda c: sum(lad["candidates"][str(c)]) / len(lad["candidates"][str(c)]))
    for path in sorted((OUT / f"{arm}_s{seed}" / "records").glob("*.json")):
        rec = json.loads(path.read_text())
        if (rec.get("rung") or {}).get("rung") == lad["rung"] and rec["rung"].get("candidate") == rival:
            return {**no_search(seed, folder), "arch": rec["arch"], "overrides": donor["overrides"],
                    "arch_from": str(path.relative_to(ROOT)), "candidate": rival,
                    "top_rung_scores": lad["candidates"][str(rival)]}
    raise SystemExit(f"{arm}_s{seed}: no record of candidate {rival} at rung {lad['rung']}")


def search_joint_unet(seed: int, folder: Path) -> dict:
    """joint_cw's ladder with the U-Net's levels and skips fixed: the vocabulary the measured losses point at."""
    return _experiment(_search_config("experiments/camvid/joint_unet_cpu.yml", seed, folder), folder, "joint")


def search_random(seed: int, folder: Path) -> dict:
    cfg = _search_config("experiments/camvid/joint_cpu.yml", seed, folder, maxTrialNumber=60)
    args = cfg["tuner"]["classArgs"]
    cfg["tuner"] = {"className": "nni_seg.tuners.GuidedTuner", "codeDirectory": str(ROOT),
                    "classArgs": {"tuner": "Random", "tuner_args": {"seed": seed}, "budget": args["budget"]}}
    cfg["experimentName"] = "nni_seg-camvid-cpu-joint-random"
    return _experiment(cfg, folder, "random")


def search_random_cw(seed: int, folder: Path) -> dict:
    """The shipped default search (run_cpu.sh, the recipe): random over the joint space, class weights fixed."""
    return _experiment(_search_config(f"{SETUP.configs}/joint_random_cpu.yml", seed, folder), folder, "random")


def search_tune(seed: int, folder: Path, first_space: bool = True, trials: int = 30, space: dict | None = None) -> dict:
    from nni_seg.experiment.records import experiment_dir
    from nni_seg.workflow.tune import TUNE_SPACE, run_tune

    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"tune": {"trials": trials, "concurrency": 2, "tuner": "TPE", "tuner_seed": seed,
                    "trial_epochs": SETUP.tune_epochs, "out": str(folder / "tune"), "timeout": 7200},
           "data": {**SETUP.data, "size": SETUP.trial_size, "holdout": SETUP.holdout},
           "train": {**SETUP.retrain, "threads": 1}}
    if first_space:  # the space the tune arm was first measured with
        cfg["space"] = {**TUNE_SPACE, "class_weights": {"_type": "choice", "_value": ["none", "median_freq"]}}
    if space is not None:
        cfg["space"] = space
    path = folder / "tune.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    t = time.perf_counter()
    res = run_tune("unet", path)
    wall = time.perf_counter() - t
    return {"experiment_id": res.experiment_id, "arch": NAMED_ARCHS["unet"](), "recipe": {}, "overrides": res.tuned,
            "search_score": res.score, "base_score": res.base_score, "search_wall_seconds": round(wall, 1),
            **_trial_seconds(experiment_dir(res.experiment_id, [str(folder / "tune" / "experiments")]))}


def no_search(seed: int, folder: Path) -> dict:
    return {"arch": NAMED_ARCHS["unet"](), "recipe": {}, "overrides": {}, "search_wall_seconds": 0, "trials": 0,
            "trial_core_seconds": 0, "base_epochs": 0}


def search_tune_cw(seed: int, folder: Path) -> dict:
    return search_tune(seed, folder, first_space=False)


def search_tune_wide(seed: int, folder: Path) -> dict:
    """tune_cw at joint_wide's 360 epochs at 48x64."""
    return search_tune(seed, folder, first_space=False, trials=60)


def _donor(arm: str, seed: int) -> dict:
    path = OUT / f"{arm}_s{seed}" / "search.json"
    if not path.is_file():
        raise SystemExit(f"{path} is not there yet; run --arms {arm} --seeds {seed} first")
    return {**json.loads(path.read_text()), "from": str(path.relative_to(ROOT))}


def found_recipe(seed: int, folder: Path) -> dict:
    """The U-Net, trained with the settings random_cw's search of this seed chose."""
    donor = _donor("random_cw", seed)
    return {**no_search(seed, folder), "overrides": donor["overrides"], "recipe_from": donor["from"]}


def random_net_tuned_recipe(seed: int, folder: Path) -> dict:
    """random_cw's network of this seed, trained with the settings tune_cw's search of this seed chose for the
    U-Net: the architecture compared with the U-Net under the same tuned recipe."""
    net, recipe = _donor("random_cw", seed), _donor("tune_cw", seed)
    return {**no_search(seed, folder), "arch": net["arch"], "overrides": recipe["overrides"],
            "arch_from": net["from"], "recipe_from": recipe["from"]}


def search_two_stage(seed: int, folder: Path, loss_searched: bool = False) -> dict:
    """Stage 1: tune of the U-Net, 15 trials over experiments/camvid/tune_first_cpu.yml's space (the loss fixed;
    ``loss_searched``: tune_cw's space, the loss searched too); stage 2: the architecture ladder, its trials
    trained with stage 1's settings (a trial config of its own: trial_joint_cpu.yml's with the retrain's settings
    and stage 1's). Stage 1 is kept (stage1.json) so a stopped run resumes at stage 2."""
    done = folder / "stage1.json"
    if not done.is_file():
        first = yaml.safe_load((ROOT / "experiments/camvid/tune_first_cpu.yml").read_text())
        space = None if loss_searched else first["space"]
        _save(done, search_tune(seed, folder / "stage1", first_space=False, trials=15, space=space))
    stage1 = json.loads(done.read_text())
    trial = yaml.safe_load((ROOT / "experiments/camvid/trial_joint_cpu.yml").read_text())
    trial["data"]["data_root"] = SETUP.data["data_root"]
    trial["train"] = {**SETUP.retrain, **stage1["overrides"], **trial["train"]}  # the ladder sets epochs and size
    (folder / "trial_stage2.yml").write_text(yaml.safe_dump(trial, sort_keys=False))
    cfg = _search_config("experiments/camvid/arch_ladder_cpu.yml", seed, folder / "stage2")
    cfg["trialCommand"] = f"python -m nni_seg.trial --config {folder / 'trial_stage2.yml'}"
    found = _experiment(cfg, folder / "stage2", "arch")
    total = {k: round(stage1[k] + found[k], 1) for k in ("trials", "trial_core_seconds", "base_epochs",
                                                         "search_wall_seconds")}
    return {**found, **total, "overrides": stage1["overrides"], "stage1": stage1,
            "stage2_experiment_id": found["experiment_id"]}


def search_two_stage_loss(seed: int, folder: Path) -> dict:
    return search_two_stage(seed, folder, loss_searched=True)


def stage1_unet(seed: int, folder: Path, arm: str = "two_stage") -> dict:
    """The U-Net with the settings two_stage's tune (stage 1) of this seed chose."""
    donor = _donor(arm, seed)
    return {**no_search(seed, folder), "overrides": donor["overrides"], "recipe_from": donor["from"]}


SEARCHES = {"joint": search_joint, "joint_cw": search_joint_cw, "joint_long": search_joint_long, "joint_lr": search_joint_lr,
            "joint_inc": search_joint_inc, "arch_inc": search_arch_inc,
            "arch_inc_runner": top_rung_runner_up, "joint_wide": search_joint_wide, "joint_unet": search_joint_unet,
            "tune": search_tune, "tune_cw": search_tune_cw, "tune_wide": search_tune_wide,
            "random": search_random, "random_cw": search_random_cw, "unet": no_search,
            "unet_found": found_recipe, "random_cw_tuned": random_net_tuned_recipe,
            "two_stage": search_two_stage, "two_stage_loss": search_two_stage_loss, "two_stage_unet": stage1_unet,
            "two_stage_loss_unet": lambda seed, folder: stage1_unet(seed, folder, "two_stage_loss")}


def retrain_run(found: dict, run: int, folder: Path) -> dict:
    from nni_seg.deploy import evaluate, retrain

    train = TrainSettings(**{**SETUP.retrain, **found["overrides"], "threads": 2, "seed": run})
    ckpt = folder / f"ckpt{run}"
    t = time.perf_counter()
    data = DataSettings(**SETUP.data, size=SETUP.retrain_size)
    meta = retrain(found["arch"], data, train, ckpt, force=True, progress=True, log=print).meta
    seconds = time.perf_counter() - t
    rep = evaluate(ckpt, split="val", device="cpu", native=True)
    return {"run": run, "miou": rep.scores.miou, "dice": rep.scores.dice, "iou_per_class": rep.scores.iou_per_class,
            "class_names": rep.class_names, "mmacs": meta.mmacs, "params": meta.params, "retrain_seconds": round(seconds, 1),
            "train": dataclasses.asdict(train), "compute": meta.compute}


def collect_records(folder: Path, found: dict) -> None:
    """The search's trial records, kept as ``records/<trial>.json`` (NNI's own folders are not kept)."""
    import shutil

    from nni_seg.experiment.records import experiment_dir, trial_records

    if not found.get("experiment_id") or (folder / "records").is_dir():
        return
    try:
        exp = experiment_dir(found["experiment_id"], [str(folder / "nni"), str(folder / "tune" / "experiments")])
    except Exception:  # noqa: BLE001 - a search run elsewhere: its records are not here to keep
        return
    (folder / "records").mkdir()
    for x in trial_records(exp)[0]:
        shutil.copy(x.path, folder / "records" / f"{x.record.trial_id or Path(x.path).parent.name}.json")


def run(arms: list[str], seeds: list[int], runs: int) -> None:
    for seed in seeds:
        for arm in arms:
            if arm == "unet" and seed != seeds[0]:
                continue  # no search: one set of retrains
            folder = OUT / f"{arm}_s{seed}"
            found_path = folder / "search.json"
            if not found_path.exists():
                print(f"=== search {arm} seed {seed}", flush=True)
                _save(found_path, SEARCHES[arm](seed, folder))
            found = json.loads(found_path.read_text())
            collect_records(folder, found)
            for r in range(runs):
                p = folder / f"run{r}.json"
                if not p.exists():
                    print(f"=== retrain {arm} seed {seed} run {r}: {found['overrides']}", flush=True)
                    _save(p, retrain_run(found, r, folder))


def summary() -> str:
    rows = []
    for arm in ARMS:
        for folder in sorted(OUT.glob(f"{arm}_s*")):
            runs = [json.loads(p.read_text()) for p in sorted(folder.glob("run*.json"))]
            if not (folder / "search.json").exists() or not runs:
                continue
            s = json.loads((folder / "search.json").read_text())
            rows.append({"arm": arm, "seed": int(folder.name.rsplit("_s", 1)[1]), "search": s, "runs": runs,
                         "miou": statistics.mean(r["miou"] for r in runs)})
    (rh, rw), (th, tw) = SETUP.retrain_size, SETUP.trial_size
    out = [f"| arm | seed | val mIoU, retrains (mean: each) | MMACs at {rh}x{rw} | search wall s | trial core-s | "
           f"epochs at {th}x{tw} | retrain wall s | retrain precision | found |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["search"]
        found = ", ".join(f"{k}={_short(v)}" for k, v in s["overrides"].items()) or "recipe's settings"
        out.append(f"| {r['arm']} | {r['seed']} | {100 * r['miou']:.1f}: "
                   + ", ".join(f"{100 * x['miou']:.1f}" for x in r["runs"])
                   + f" | {r['runs'][0]['mmacs']:.0f} | {s['search_wall_seconds']:.0f} | {s['trial_core_seconds']:.0f} | "
                     f"{s['base_epochs']:.0f} | {', '.join(str(round(x['retrain_seconds'])) for x in r['runs'])} | "
                     f"{_precision(r['runs'][0])} | {found} |")
    out += ["", "| arm | seeds | mean val mIoU over seeds (min-max of the seeds' means) |", "|---|---|---|"]
    for arm in ARMS:
        ms = [r["miou"] for r in rows if r["arm"] == arm]
        if ms:
            out.append(f"| {arm} | {len(ms)} | {100 * statistics.mean(ms):.1f} ({100 * min(ms):.1f}-{100 * max(ms):.1f}) |")
    best = {arm: max((x for r in rows if r["arm"] == arm for x in r["runs"]), key=lambda x: x["miou"])
            for arm in ARMS if any(r["arm"] == arm for r in rows)}
    if best:
        names = next(iter(best.values()))["class_names"]
        out += ["", "| val IoU per class, the best retrain of each arm | " + " | ".join(names) + " |",
                "|---|" + "---|" * len(names)]
        for arm, x in best.items():
            out.append(f"| {arm} ({100 * x['miou']:.1f}) | "
                       + " | ".join("-" if v is None else f"{100 * v:.1f}" for v in x["iou_per_class"]) + " |")
    return "\n".join(out)


def _precision(run: dict) -> str:
    """bf16 or fp32: the machines these ran on differ (one with AMX-BF16, one without)."""
    return "bf16" if "bf16 autocast" in run.get("compute", "") else "fp32"


def _short(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def main() -> None:
    global OUT, SETUP
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=list(SETUPS), default="camvid")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--runs", type=int, default=2, help="retrains of each winner")
    p.add_argument("--summary", action="store_true")
    p.add_argument("--results", type=Path, help="results folder (default: bench/results/joint_search[/isbi2012])")
    a = p.parse_args()
    SETUP = SETUPS[a.dataset]
    OUT = a.results or SETUP.results
    if a.summary:
        print(summary())
        return
    run(a.arms, a.seeds, a.runs)
    print(summary())


if __name__ == "__main__":
    main()
